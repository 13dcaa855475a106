import assert from "node:assert/strict";
import { test } from "node:test";
import { EvidenceError, SeededRandom } from "../../src/evidence/index.ts";
import { DualCopyRecord, encodeIntegers } from "../../src/meter/index.ts";
import { attach, billingBytes, factoryRig, image, layout, type Rig, transfer } from "./firmware-harness.ts";

// Acceptance 1 of the firmware issue: cut power at every NVM operation boundary of an update, its
// activation, a forced rollback and a partial rollback (plus random bytes inside writes): the meter always
// boots a verified image, billing registers stay bit-identical, and retrying reaches the intended state.

const NEW_APP = image("app", 1_001_000);
const NEW_COMMS = image("comms", 1_001_000);

interface Sequence {
  readonly name: string;
  prepare(rig: Rig): void;
  run(rig: Rig): void;
  /** Drives a recovered meter to the intended end state (the operator retries). */
  finish(rig: Rig): void;
  check(rig: Rig): void;
}

function updated(rig: Rig): void {
  transfer(rig, NEW_COMMS);
  rig.fw.boot();
  rig.fw.confirm("comms");
  transfer(rig, NEW_APP);
  rig.fw.boot();
  rig.fw.confirm("app");
}

const SEQUENCES: Sequence[] = [
  {
    name: "update + activation + confirmation",
    prepare: () => {},
    run: (rig) => {
      transfer(rig, NEW_APP);
      rig.fw.boot();
      rig.fw.confirm("app");
    },
    finish: (rig) => {
      const booted = rig.fw.boot();
      if (booted.app.version === NEW_APP.version) {
        if (booted.app.trial) rig.fw.confirm("app");
        return;
      }
      transfer(rig, NEW_APP);
      rig.fw.boot();
      rig.fw.confirm("app");
    },
    check: (rig) =>
      assert.deepEqual(rig.fw.boot().app, { slot: "B", version: NEW_APP.version, trial: false }),
  },
  {
    name: "forced (full) rollback",
    prepare: updated,
    run: (rig) => {
      rig.fw.forceRollback("full");
      rig.fw.boot();
    },
    finish: (rig) => {
      rig.fw.forceRollback("full");
      rig.fw.boot();
    },
    check: (rig) => {
      const r = rig.fw.boot();
      assert.equal(r.app.slot, "GOLDEN");
      assert.equal(r.comms.slot, "GOLDEN");
    },
  },
  {
    name: "partial rollback",
    prepare: updated,
    run: (rig) => {
      rig.fw.forceRollback("partial");
      rig.fw.boot();
    },
    finish: (rig) => {
      rig.fw.forceRollback("partial");
      rig.fw.boot();
    },
    check: (rig) => {
      const r = rig.fw.boot();
      assert.equal(r.app.slot, "GOLDEN");
      assert.deepEqual(r.comms, { slot: "B", version: NEW_COMMS.version, trial: false });
    },
  },
];

function operations(rig: Rig): number {
  const w = rig.nvm.wear();
  return w.pagePrograms + w.sectorErases.reduce((a, b) => a + b, 0);
}

function bytesProgrammed(rig: Rig): number {
  return rig.nvm.wear().bytesProgrammed;
}

function prepared(sequence: Sequence, seed: number): { rig: Rig; billing: Uint8Array } {
  const rig = factoryRig(seed);
  new DualCopyRecord(rig.nvm, layout.billing).write(encodeIntegers([987_654, 321, 55, 0]));
  sequence.prepare(rig);
  return { rig, billing: billingBytes(rig.nvm) };
}

for (const sequence of SEQUENCES) {
  test(`power cut at every operation boundary of ${sequence.name}: a verified image always boots`, () => {
    const dry = prepared(sequence, 1).rig;
    const before = operations(dry);
    const bytesBefore = bytesProgrammed(dry);
    sequence.run(dry);
    const total = operations(dry) - before;
    const totalBytes = bytesProgrammed(dry) - bytesBefore;
    assert.ok(total > 5, `${total} operations`);
    const rng = new SeededRandom(sequence.name);
    let cuts = 0;
    for (let k = 0; k <= total; k++) {
      for (const mode of ["ops", "bytes"] as const) {
        const { rig, billing } = prepared(sequence, 1);
        rig.nvm.armPowerCut(mode === "ops" ? { afterOps: k } : { afterBytes: rng.nextInt(totalBytes) });
        try {
          sequence.run(rig);
        } catch (error) {
          if (!(error instanceof EvidenceError && error.code === "POWER_LOST")) throw error;
          cuts++;
        }
        rig.nvm.disarmPowerCut();
        rig.nvm.powerOn();
        const rebooted = attach(rig.nvm, rig.se);
        const booted = rebooted.fw.boot(); // throws NOT_BOOTABLE if nothing verifies
        assert.ok(booted.app.version >= 1_000_000 && booted.comms.version >= 1_000_000);
        assert.deepEqual(billingBytes(rig.nvm), billing, `cut ${mode} ${k}: billing registers changed`);
        sequence.finish(rebooted);
        sequence.check(rebooted);
      }
    }
    assert.ok(cuts >= total, `${cuts} cuts landed for ${total} operation boundaries`);
  });
}
