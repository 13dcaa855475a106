import assert from "node:assert/strict";
import { test } from "node:test";
import fc from "fast-check";
import {
  DualCopyRecord,
  decodeFirmwareImage,
  encodeIntegers,
  FirmwareError,
  rollbackLog,
} from "../../src/meter/index.ts";
import {
  billingBytes,
  expiredPki,
  factoryRig,
  GOLDEN_APP,
  image,
  layout,
  transfer,
  types,
} from "./firmware-harness.ts";

test("update: transfer in blocks, verify, activate, trial boot, confirm; counters advance; billing untouched", () => {
  const rig = factoryRig();
  new DualCopyRecord(rig.nvm, layout.billing).write(encodeIntegers([123456, 7, 8, 9]));
  const billing = billingBytes(rig.nvm);
  transfer(rig, image("app", 1_001_000));
  const trial = rig.fw.boot();
  assert.deepEqual(trial.app, { slot: "B", version: 1_001_000, trial: true });
  rig.fw.confirm("app");
  assert.equal(rig.fw.counters().fw_app_version, 1_001_000);
  assert.deepEqual(rig.fw.boot().app, { slot: "B", version: 1_001_000, trial: false });
  assert.deepEqual(billingBytes(rig.nvm), billing);
  assert.deepEqual(
    types(rig.log.records()).filter((t) => t.startsWith("FW_")),
    ["FW_UPDATE_RECEIVED", "FW_VERIFIED", "FW_ACTIVATED", "FW_CONFIRMED"],
  );
});

test("an interrupted transfer resumes from the first not transferred block", () => {
  const rig = factoryRig();
  const img = image("comms", 1_000_500);
  rig.fw.initiateTransfer("comms", img.bytes.length, 256);
  for (const n of [0, 1, 2, 4]) rig.fw.receiveBlock(n, img.bytes.subarray(n * 256, (n + 1) * 256));
  assert.equal(rig.fw.firstNotTransferredBlock(), 3);
  assert.throws(() => rig.fw.verify(), { code: "BAD_STATE" });
  for (let n = 3; n * 256 < img.bytes.length; n++)
    rig.fw.receiveBlock(n, img.bytes.subarray(n * 256, Math.min((n + 1) * 256, img.bytes.length)));
  rig.fw.verify();
  rig.fw.activate();
  assert.equal(rig.fw.boot().comms.version, 1_000_500);
});

test("refusals: bad CRC, bad signature, expired certificate, older version, metrology and bootloader images — each its own error and record, active bank unchanged", () => {
  const cases: { name: string; bytes: Uint8Array; code: string; record: string }[] = [];
  const good = image("app", 1_002_000);
  const badCrc = good.bytes.slice();
  badCrc[200]! ^= 0xff;
  cases.push({ name: "bad CRC", bytes: badCrc, code: "ERROR_CRC_MISMATCH", record: "FW_REFUSED" });
  const badSig = good.bytes.slice();
  badSig[badSig.length - 5]! ^= 0x01;
  cases.push({ name: "bad signature", bytes: badSig, code: "SIGN_AUTH_FAIL", record: "SIG_FAIL" });
  cases.push({
    name: "expired certificate",
    bytes: image("app", 1_002_000, { signer: expiredPki }).bytes,
    code: "SIGN_AUTH_FAIL",
    record: "SIG_FAIL",
  });
  cases.push({
    name: "older version",
    bytes: image("app", 999_000).bytes,
    code: "VERSION_ROLLBACK_REFUSED",
    record: "FW_ROLLBACK",
  });
  cases.push({
    name: "wrong hardware",
    bytes: image("app", 1_002_000, { hwTarget: "OTHER" }).bytes,
    code: "HW_TARGET_MISMATCH",
    record: "FW_REFUSED",
  });
  for (const c of cases) {
    const rig = factoryRig(3);
    const before = rig.fw.boot();
    rig.fw.initiateTransfer("app", c.bytes.length, 1024);
    for (let n = 0; n * 1024 < c.bytes.length; n++)
      rig.fw.receiveBlock(n, c.bytes.subarray(n * 1024, (n + 1) * 1024));
    assert.throws(
      () => rig.fw.verify(),
      (e: unknown) => e instanceof FirmwareError && e.code === c.code,
      c.name,
    );
    assert.throws(() => rig.fw.activate(), { code: "BAD_STATE" }, `${c.name}: nothing to activate`);
    assert.deepEqual(rig.fw.boot(), before, `${c.name}: active bank unchanged`);
    assert.ok(types(rig.log.records()).includes(c.record), `${c.name}: ${c.record} sealed`);
  }
  for (const component of ["metrology", "bootloader"] as const) {
    const rig = factoryRig(4);
    assert.throws(() => rig.fw.initiateTransfer(component, 3000, 512), { code: "COMPONENT_NOT_UPDATABLE" });
    assert.ok(rig.log.records().some((r) => r.snapshot.reason === "COMPONENT_NOT_UPDATABLE"));
  }
});

test("watchdog: a trial that never kicks loops into WDT_REBOOT_LOOP and rolls back; a forced rollback after it does not oscillate", () => {
  const rig = factoryRig();
  transfer(rig, image("app", 1_003_000));
  for (let boot = 0; boot < 3; boot++) assert.equal(rig.fw.boot().app.trial, true);
  assert.deepEqual(rig.fw.boot().app, { slot: "A", version: 1_000_000, trial: false });
  assert.ok(types(rig.log.records()).includes("WDT_REBOOT_LOOP"));
  assert.equal(rig.fw.counters().fw_app_version, 1_000_000, "an unconfirmed image never moves the counter");
  assert.equal(rig.fw.forceRollback("full"), true);
  const after = rig.fw.boot();
  assert.equal(after.app.slot, "GOLDEN");
  for (let i = 0; i < 5; i++) {
    rig.fw.forceRollback("full");
    assert.deepEqual(rig.fw.boot(), after);
  }
});

for (const times of [1, 2, 10]) {
  test(`forced rollback sent ${times} time(s): same final state, exactly one transition record per component`, () => {
    const rig = factoryRig();
    transfer(rig, image("app", 1_004_000));
    rig.fw.boot();
    rig.fw.confirm("app");
    for (let i = 0; i < times; i++) rig.fw.forceRollback("full");
    const result = rig.fw.boot();
    for (let i = 0; i < times; i++) rig.fw.forceRollback("full");
    assert.deepEqual(rig.fw.boot(), result);
    assert.equal(result.app.slot, "GOLDEN");
    assert.equal(result.comms.slot, "GOLDEN");
    assert.equal(rig.log.records().filter((r) => r.type === "FW_ROLLED_BACK").length, 2);
  });
}

test("partial rollback reverts the application only; the comms stack stays current", () => {
  const rig = factoryRig();
  transfer(rig, image("comms", 1_001_000));
  rig.fw.boot();
  rig.fw.confirm("comms");
  transfer(rig, image("app", 1_001_000));
  rig.fw.boot();
  rig.fw.confirm("app");
  rig.fw.forceRollback("partial");
  const result = rig.fw.boot();
  assert.deepEqual(result.app, { slot: "GOLDEN", version: 1_000_000, trial: false });
  assert.deepEqual(result.comms, { slot: "B", version: 1_001_000, trial: false });
});

test("the recovery partition is locked: MEM_ACCESS_VIOLATION, recorded", () => {
  const rig = factoryRig();
  assert.throws(() => rig.fw.writeRecovery(GOLDEN_APP.bytes), { code: "MEM_ACCESS_VIOLATION" });
  assert.throws(() => rig.fw.provision(GOLDEN_APP, GOLDEN_APP), { code: "MEM_ACCESS_VIOLATION" });
  assert.ok(rig.log.records().some((r) => r.snapshot.reason === "MEM_ACCESS_VIOLATION"));
});

test("rollback.log carries the seed's strings, each produced by its scenario, derived from the sealed records", () => {
  const rig = factoryRig();
  const bad = image("app", 1_005_000).bytes.slice();
  bad[100]! ^= 1;
  rig.fw.initiateTransfer("app", bad.length, 4096);
  rig.fw.receiveBlock(0, bad);
  assert.throws(() => rig.fw.verify());
  const forged = image("app", 1_005_000).bytes.slice();
  forged[forged.length - 1]! ^= 1;
  rig.fw.initiateTransfer("app", forged.length, 4096);
  rig.fw.receiveBlock(0, forged);
  assert.throws(() => rig.fw.verify());
  transfer(rig, image("app", 1_006_000));
  for (let i = 0; i < 4; i++) rig.fw.boot();
  assert.throws(() => rig.fw.writeRecovery(new Uint8Array(1)));
  const log = rollbackLog(rig.log.records()).join("\n");
  for (const text of ["ERROR_CRC_MISMATCH", "SIGN_AUTH_FAIL", "WDT_REBOOT_LOOP", "MEM_ACCESS_VIOLATION"]) {
    assert.match(log, new RegExp(text));
  }
});

test("fuzz: the image decoder throws only FirmwareError", () => {
  const valid = image("app", 1_000_001).bytes;
  fc.assert(
    fc.property(
      fc.oneof(
        fc.uint8Array({ maxLength: 500 }),
        fc.tuple(fc.nat(), fc.nat(255), fc.nat()).map(([at, v, cut]) => {
          const b = valid.slice();
          b[at % b.length] = v;
          return b.subarray(0, 1 + (cut % b.length));
        }),
      ),
      (bytes) => {
        try {
          decodeFirmwareImage(bytes);
        } catch (error) {
          assert.ok(error instanceof FirmwareError, String(error));
        }
      },
    ),
    { numRuns: Number(process.env.AMIPROOF_FUZZ_RUNS ?? 300) },
  );
});

test("verify before execute: a corrupted running bank is never executed; the bootloader falls back to golden and says why", () => {
  const rig = factoryRig();
  rig.nvm.tamper(layout.firmwareBankA.offset + 300, Uint8Array.of(0x00, 0x00));
  const result = rig.fw.boot();
  assert.deepEqual(result.app, { slot: "GOLDEN", version: 1_000_000, trial: false });
  assert.ok(
    rig.log.records().some((r) => r.type === "FW_ROLLED_BACK" && r.snapshot.reason === "ERROR_CRC_MISMATCH"),
  );
  assert.match(rollbackLog(rig.log.records()).join("\n"), /ERROR_CRC_MISMATCH/);
});
