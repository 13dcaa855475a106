import assert from "node:assert/strict";
import { test } from "node:test";
import { cutAndCheck, measure, SEQUENCES, SeededRandom } from "./firmware-cuts.ts";

// Acceptance 1 of the firmware issue: cut power at every NVM operation boundary of an update and its
// activation, a forced rollback, a partial rollback, a watchdog rollback, a refused rollback and the
// refusals — plus, for each boundary, one random byte inside the writes. Every time: a verified signed
// image boots, billing registers are bit-identical, every transition has its records exactly once, and
// the retry reaches the intended state with the seed's rollback.log string. (The long random-byte
// campaign is firmware.crash.ts.)

for (const sequence of SEQUENCES) {
  test(`power cut at every operation boundary of ${sequence.name}`, () => {
    const size = measure(sequence);
    assert.ok(size.operations > 3, `${size.operations} operations`);
    const rng = new SeededRandom(sequence.name);
    let landed = 0;
    for (let k = 0; k <= size.operations; k++) {
      if (cutAndCheck(sequence, { afterOps: k }, 1)) landed++;
      if (cutAndCheck(sequence, { afterBytes: rng.nextInt(size.bytes) }, 2)) landed++;
    }
    assert.ok(landed >= size.operations, `${landed} cuts landed for ${size.operations} operation boundaries`);
  });
}
