// Crash suite (npm run test:crash): the firmware manager through thousands of random power cuts — torn
// bytes inside page programs, cuts mid-erase, cuts between operations — over every sequence of
// firmware-cuts.ts (update and activation, forced, partial and watchdog rollbacks, a refused rollback,
// refusals). Each cut: a signed image boots, billing registers bit-identical, every transition has its
// records exactly once, and the retry reaches the intended state with the seed's rollback.log string.
// AMIPROOF_CRASH_CUTS sets the number of cuts, AMIPROOF_CRASH_SEED the base seed (a failure names its seed).
import assert from "node:assert/strict";
import { test } from "node:test";
import { randomCuts, SEQUENCES, SeededRandom } from "./firmware-cuts.ts";

const CUTS = Number(process.env.AMIPROOF_CRASH_CUTS ?? 3_000);
const BASE_SEED = Number(process.env.AMIPROOF_CRASH_SEED ?? 4_000_000);

test("firmware survives random power cuts at any byte of every update and rollback sequence", () => {
  const perSequence = Math.ceil(CUTS / SEQUENCES.length);
  let cutPoints = 0;
  let landed = 0;
  const detail: string[] = [];
  SEQUENCES.forEach((sequence, i) => {
    const rng = new SeededRandom(BASE_SEED + i);
    const n = randomCuts(sequence, perSequence, rng, BASE_SEED + i * 100_000);
    cutPoints += perSequence;
    landed += n;
    detail.push(`${sequence.name}: ${perSequence} (${n} inside the run)`);
  });
  assert.ok(landed > cutPoints / 2, `${landed} of ${cutPoints} cuts landed inside the sequences`);
  console.log(`firmware cut points: ${cutPoints}`);
  console.log(`firmware detail: ${detail.join("; ")}`);
});
