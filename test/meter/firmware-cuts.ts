// Power-cut campaigns over the firmware manager (acceptance 1 of the firmware issue), shared by
// firmware-power.test.ts (every operation boundary, fast) and firmware.crash.ts (random bytes, long).
// For each sequence: cut power at a chosen point, reset, and check that a verified, known image boots,
// the billing registers are bit-identical, every transition has its records exactly once; then the
// operator retries and the intended end state and the seed's error string are reached.
import assert from "node:assert/strict";
import { bytesEqual, EvidenceError, type Rng, SeededRandom } from "../../src/evidence/index.ts";
import {
  DualCopyRecord,
  encodeIntegers,
  FirmwareError,
  type FirmwareImage,
  rollbackLog,
} from "../../src/meter/index.ts";
import {
  assertEvidenceComplete,
  billingBytes,
  factoryRig,
  GOLDEN_APP,
  GOLDEN_COMMS,
  identifierOf,
  image,
  layout,
  type Rig,
  reset,
  transfer,
} from "./firmware-harness.ts";

const NEW_APP = image("app", 1_001_000);
const NEW_COMMS = image("comms", 1_001_000);
const NEWER_APP = image("app", 1_002_000);
const FORGED_APP = (() => {
  const bytes = image("app", 1_003_000).bytes.slice();
  bytes[bytes.length - 3]! ^= 0x40;
  return bytes;
})();
const KNOWN: readonly FirmwareImage[] = [GOLDEN_APP, GOLDEN_COMMS, NEW_APP, NEW_COMMS, NEWER_APP];
/** Bound on the operator's retries of one step after a reset (a trial boot may need a few). */
const RETRIES_MAX = 8;

export interface Sequence {
  readonly name: string;
  prepare(rig: Rig): void;
  /** The steps power is cut in. */
  run(rig: Rig): void;
  /** The operator (or the next resets) drives a recovered meter to the intended end state. */
  finish(rig: Rig): void;
  check(rig: Rig): void;
  /** The seed 000 rollback.log string this scenario must leave, if any. */
  readonly logString?: string;
}

function updated(rig: Rig): void {
  for (const img of [NEW_COMMS, NEW_APP]) {
    transfer(rig, img);
    rig.fw.boot();
    rig.fw.kick();
  }
}

/** Completes an update of `img` from whatever state a cut left: resume, verify, activate, boot, kick. */
function completeUpdate(rig: Rig, img: FirmwareImage): void {
  const component = img.component as "app" | "comms";
  for (let i = 0; i < RETRIES_MAX; i++) {
    const booted = rig.fw.boot();
    if (booted[component].version === img.version) {
      if (booted[component].trial) rig.fw.kick();
      return;
    }
    transfer(rig, img);
  }
  throw new Error(`update of ${identifierOf(img)} did not complete in ${RETRIES_MAX} resets`);
}

function refuseForged(rig: Rig): void {
  rig.fw.initiateTransfer("app", FORGED_APP.length, 1024, "forged");
  for (let n = 0; n * 1024 < FORGED_APP.length; n++)
    rig.fw.receiveBlock(n, FORGED_APP.subarray(n * 1024, (n + 1) * 1024));
  expectRefusal(() => rig.fw.verify(), "SIGN_AUTH_FAIL");
}

/** The refusal, or the power cut that interrupted it (rethrown for the campaign to catch). */
function expectRefusal(action: () => unknown, code: string): void {
  try {
    action();
  } catch (error) {
    if (error instanceof FirmwareError && error.code === code) return;
    throw error;
  }
  assert.fail(`expected ${code}`);
}

export const SEQUENCES: readonly Sequence[] = [
  {
    name: "update, activation and confirmation",
    prepare: () => {},
    run: (rig) => {
      transfer(rig, NEW_APP);
      rig.fw.boot();
      rig.fw.kick();
    },
    finish: (rig) => completeUpdate(rig, NEW_APP),
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
      rig.fw.boot();
      rig.fw.forceRollback("full");
      rig.fw.boot();
    },
    check: (rig) => {
      const r = rig.fw.boot();
      assert.equal(r.app.slot, "GOLDEN");
      assert.equal(r.comms.slot, "GOLDEN");
      assert.equal(rig.log.records().filter((x) => x.snapshot.reason === "FORCED_ROLLBACK").length, 1);
    },
  },
  {
    name: "partial rollback",
    prepare: updated,
    run: (rig) => {
      rig.fw.partialRollback();
      rig.fw.boot();
    },
    finish: (rig) => {
      rig.fw.boot();
      rig.fw.partialRollback();
      rig.fw.boot();
    },
    check: (rig) => {
      const r = rig.fw.boot();
      assert.equal(r.app.slot, "GOLDEN");
      assert.deepEqual(r.comms, { slot: "B", version: NEW_COMMS.version, trial: false });
      assert.equal(rig.log.records().filter((x) => x.snapshot.reason === "PARTIAL_ROLLBACK").length, 1);
    },
  },
  {
    name: "watchdog rollback of a trial that never kicks",
    prepare: (rig) => {
      updated(rig);
      transfer(rig, NEWER_APP);
    },
    run: (rig) => {
      for (let i = 0; i < 4; i++) rig.fw.boot("watchdog");
    },
    finish: (rig) => {
      for (let i = 0; i < RETRIES_MAX && rig.fw.boot("watchdog").app.trial; i++);
    },
    check: (rig) => {
      assert.deepEqual(rig.fw.boot().app, { slot: "B", version: NEW_APP.version, trial: false });
      assert.equal(rig.log.records().filter((x) => x.type === "WDT_REBOOT_LOOP").length, 1);
    },
    logString: "WDT_REBOOT_LOOP",
  },
  {
    name: "rollback refused: the golden image is compromised",
    prepare: (rig) => {
      updated(rig);
      rig.nvm.tamper(layout.firmwareRecovery.offset + 400, Uint8Array.of(0, 0, 0, 0));
    },
    run: (rig) => {
      rig.fw.forceRollback("full");
      rig.fw.boot();
    },
    finish: (rig) => {
      rig.fw.boot();
      if (!rig.log.records().some((r) => r.snapshot.stage === "rollback")) {
        rig.fw.forceRollback("full");
        rig.fw.boot();
      }
    },
    check: (rig) => {
      const r = rig.fw.boot();
      assert.deepEqual(r.app, { slot: "B", version: NEW_APP.version, trial: false });
      assert.deepEqual(r.comms, { slot: "B", version: NEW_COMMS.version, trial: false });
    },
    logString: "ERROR_CRC_MISMATCH",
  },
  {
    name: "refusals: a forged image and a write to the recovery partition",
    prepare: () => {},
    run: (rig) => {
      refuseForged(rig);
      expectRefusal(() => rig.fw.writeRecovery(new Uint8Array(16)), "MEM_ACCESS_VIOLATION");
    },
    finish: (rig) => {
      rig.fw.boot();
      if (!rig.log.records().some((r) => r.type === "SIG_FAIL")) refuseForged(rig);
      if (!rig.log.records().some((r) => r.snapshot.reason === "MEM_ACCESS_VIOLATION"))
        expectRefusal(() => rig.fw.writeRecovery(new Uint8Array(16)), "MEM_ACCESS_VIOLATION");
    },
    check: (rig) => {
      const r = rig.fw.boot();
      assert.deepEqual(r.app, { slot: "A", version: GOLDEN_APP.version, trial: false });
      assert.match(rollbackLog(rig.log.records()).join("\n"), /MEM_ACCESS_VIOLATION/);
    },
    logString: "SIGN_AUTH_FAIL",
  },
];

const BILLING = encodeIntegers([987_654, 321, 55, 0]);

export function prepared(sequence: Sequence, seed: number): { rig: Rig; billing: Uint8Array } {
  const rig = factoryRig(seed);
  new DualCopyRecord(rig.nvm, layout.billing).write(BILLING);
  sequence.prepare(rig);
  return { rig, billing: billingBytes(rig.nvm) };
}

function operations(rig: Rig): number {
  const w = rig.nvm.wear();
  return w.pagePrograms + w.sectorErases.reduce((a, b) => a + b, 0);
}

/** NVM operations and programmed bytes the sequence's run takes without a cut. */
export function measure(sequence: Sequence): { operations: number; bytes: number } {
  const { rig } = prepared(sequence, 1);
  const ops = operations(rig);
  const bytes = rig.nvm.wear().bytesProgrammed;
  sequence.run(rig);
  return { operations: operations(rig) - ops, bytes: rig.nvm.wear().bytesProgrammed - bytes };
}

export type CutPoint = { readonly afterOps: number } | { readonly afterBytes: number };

/** One cut, then reset and all the checks. Returns true when the cut landed inside the run. */
export function cutAndCheck(sequence: Sequence, cut: CutPoint, seed: number): boolean {
  const { rig, billing } = prepared(sequence, seed);
  const where = `${sequence.name}, cut ${JSON.stringify(cut)}, seed ${seed}`;
  rig.nvm.armPowerCut(cut);
  let landed = false;
  try {
    sequence.run(rig);
  } catch (error) {
    if (!(error instanceof EvidenceError && error.code === "POWER_LOST")) throw error;
    landed = true;
  }
  const back = reset(rig);
  const booted = back.fw.boot(); // NOT_BOOTABLE would throw: the meter must never brick
  for (const component of ["app", "comms"] as const) {
    const checksum = back.fw.runningChecksum(component);
    assert.ok(
      checksum !== null && KNOWN.some((k) => k.component === component && bytesEqual(k.checksum, checksum)),
      `${where}: ${component} runs an image that is not one of the signed releases (${booted[component].slot})`,
    );
  }
  assert.deepEqual(billingBytes(back.nvm), billing, `${where}: billing registers changed`);
  assertEvidenceComplete(back, where);
  sequence.finish(back);
  sequence.check(back);
  assertEvidenceComplete(back, `${where}, after the retry`);
  if (sequence.logString !== undefined) {
    assert.match(rollbackLog(back.log.records()).join("\n"), new RegExp(sequence.logString), where);
  }
  assert.deepEqual(billingBytes(back.nvm), billing, `${where}: billing registers changed by the retry`);
  return landed;
}

/** Random cut points (a byte inside a write, or an operation boundary) over many seeds. */
export function randomCuts(sequence: Sequence, count: number, rng: Rng, baseSeed: number): number {
  const size = measure(sequence);
  let landed = 0;
  for (let i = 0; i < count; i++) {
    const cut: CutPoint = rng.chance(0.75)
      ? { afterBytes: rng.nextInt(size.bytes) }
      : { afterOps: rng.nextInt(size.operations + 1) };
    if (cutAndCheck(sequence, cut, baseSeed + i)) landed++;
  }
  return landed;
}

export { SeededRandom };
