import assert from "node:assert/strict";
import { test } from "node:test";
import {
  BOOT_ATTEMPTS_MAX,
  DualCopyRecord,
  encodeIntegers,
  FirmwareError,
  type FirmwareImage,
  rollbackLog,
  WATCHDOG_WINDOW_MS,
  WDT_RESETS_MAX,
} from "../../src/meter/index.ts";
import {
  assertEvidenceComplete,
  billingBytes,
  deviceCertPki,
  expiredPki,
  factoryRig,
  GOLDEN_APP,
  GOLDEN_COMMS,
  identifierOf,
  image,
  layout,
  otherPki,
  type Rig,
  reset,
  shortPki,
  transfer,
  types,
} from "./firmware-harness.ts";

const fwTypes = (rig: Rig) => types(rig.log.records()).filter((t) => t.startsWith("FW_") || t === "SIG_FAIL");
const count = (rig: Rig, type: string) => rig.log.records().filter((r) => r.type === type).length;

/** Every firmware bank and the boot configuration, byte for byte. */
function firmwareBytes(rig: Rig): Uint8Array[] {
  const l = layout;
  return [l.firmwareBankA, l.firmwareBankB, l.commsBankA, l.commsBankB, l.firmwareRecovery].map((r) =>
    rig.nvm.read(r.offset, r.length),
  );
}

function updated(rig: Rig, app: FirmwareImage, comms?: FirmwareImage): void {
  for (const img of comms === undefined ? [app] : [comms, app]) {
    transfer(rig, img);
    rig.fw.boot();
    assert.equal(rig.fw.kick(), true);
  }
}

test("update: blocks, verify, activate, trial boot, watchdog kick confirms; one record per transition; counter advances; billing untouched", () => {
  const rig = factoryRig();
  new DualCopyRecord(rig.nvm, layout.billing).write(encodeIntegers([123456, 7, 8, 9]));
  const billing = billingBytes(rig.nvm);
  transfer(rig, image("app", 1_001_000));
  const trial = rig.fw.boot();
  assert.deepEqual(trial.app, { slot: "B", version: 1_001_000, trial: true });
  assert.equal(rig.fw.counters().fw_app_version, 1_000_000, "no counter move before confirmation");
  assert.equal(rig.fw.kick(), true);
  assert.equal(rig.fw.counters().fw_app_version, 1_001_000);
  assert.deepEqual(rig.fw.boot().app, { slot: "B", version: 1_001_000, trial: false });
  assert.deepEqual(billingBytes(rig.nvm), billing);
  assert.deepEqual(fwTypes(rig), ["FW_UPDATE_RECEIVED", "FW_VERIFIED", "FW_ACTIVATED", "FW_CONFIRMED"]);
  assert.deepEqual(
    rig.log
      .records()
      .flatMap((r) => (typeof r.snapshot.fw_transition === "number" ? [r.snapshot.fw_transition] : [])),
    [1, 2, 3, 4],
  );
  assertEvidenceComplete(rig, "update");
});

test("an interrupted transfer resumes after a reset from the first not transferred block; another image restarts it", () => {
  let rig = factoryRig();
  const img = image("comms", 1_000_500);
  assert.equal(rig.fw.initiateTransfer("comms", img.bytes.length, 256, identifierOf(img)), false);
  for (const n of [0, 1, 2, 4]) rig.fw.receiveBlock(n, img.bytes.subarray(n * 256, (n + 1) * 256));
  assert.equal(rig.fw.firstNotTransferredBlock(), 3);
  assert.throws(() => rig.fw.verify(), { code: "BAD_STATE" });
  rig = reset(rig);
  rig.fw.boot();
  assert.equal(rig.fw.firstNotTransferredBlock(), 3, "the bitmap survives the reset");
  assert.equal(rig.fw.initiateTransfer("comms", img.bytes.length, 256, identifierOf(img)), true);
  assert.deepEqual(rig.fw.transferredBlocks().slice(0, 5), [true, true, true, false, true]);
  for (let n = 3; n * 256 < img.bytes.length; n++)
    rig.fw.receiveBlock(n, img.bytes.subarray(n * 256, Math.min((n + 1) * 256, img.bytes.length)));
  rig.fw.verify();
  rig.fw.activate();
  assert.equal(rig.fw.boot().comms.version, 1_000_500);
  assert.equal(count(rig, "FW_UPDATE_RECEIVED"), 1, "a resumed transfer is not a new transition");

  const other = image("comms", 1_000_600);
  rig.fw.kick();
  rig.fw.initiateTransfer("comms", other.bytes.length, 256, identifierOf(other));
  rig.fw.receiveBlock(0, other.bytes.subarray(0, 256));
  const third = image("comms", 1_000_700);
  assert.equal(rig.fw.initiateTransfer("comms", third.bytes.length, 256, identifierOf(third)), false);
  assert.equal(rig.fw.firstNotTransferredBlock(), 0, "another identifier starts afresh");
  assertEvidenceComplete(rig, "resume");
});

test("refusals: each bad image gets its own error, cause and one record; nothing changes in the banks or the boot configuration", () => {
  const good = image("app", 1_002_000);
  const badCrc = good.bytes.slice();
  badCrc[200]! ^= 0xff;
  const badSig = good.bytes.slice();
  badSig[badSig.length - 5]! ^= 0x01;
  const cases = [
    { name: "bad CRC", bytes: badCrc, code: "ERROR_CRC_MISMATCH", record: "FW_REFUSED", cause: undefined },
    {
      name: "bad signature",
      bytes: badSig,
      code: "SIGN_AUTH_FAIL",
      record: "SIG_FAIL",
      cause: "BAD_SIGNATURE",
    },
    {
      name: "expired certificate",
      bytes: image("app", 1_002_000, { signer: expiredPki }).bytes,
      code: "SIGN_AUTH_FAIL",
      record: "SIG_FAIL",
      cause: "CERT_EXPIRED",
    },
    {
      name: "untrusted CA",
      bytes: image("app", 1_002_000, { signer: otherPki }).bytes,
      code: "SIGN_AUTH_FAIL",
      record: "SIG_FAIL",
      cause: "UNTRUSTED_ISSUER",
    },
    {
      name: "a meter's certificate from the same CA",
      bytes: image("app", 1_002_000, { signer: deviceCertPki }).bytes,
      code: "SIGN_AUTH_FAIL",
      record: "SIG_FAIL",
      cause: "NOT_CODE_SIGNING",
    },
    {
      name: "older than the anti-rollback counter",
      bytes: image("app", 999_000).bytes,
      code: "VERSION_ROLLBACK_REFUSED",
      record: "FW_ROLLBACK",
      cause: undefined,
    },
    {
      name: "wrong hardware",
      bytes: image("app", 1_002_000, { hwTarget: "OTHER" }).bytes,
      code: "HW_TARGET_MISMATCH",
      record: "FW_REFUSED",
      cause: undefined,
    },
    {
      name: "metrology image offered as application",
      bytes: image("metrology", 1_002_000).bytes,
      code: "COMPONENT_NOT_UPDATABLE",
      record: "FW_REFUSED",
      cause: undefined,
    },
    {
      name: "expired image",
      bytes: image("app", 1_002_000, { expiresMs: Date.UTC(2026, 0, 1) }).bytes,
      code: "IMAGE_EXPIRED",
      record: "FW_REFUSED",
      cause: undefined,
    },
  ];
  for (const c of cases) {
    const rig = factoryRig(3);
    const before = rig.fw.boot();
    const config = rig.fw.bootConfig();
    const banks = firmwareBytes(rig);
    const recordsBefore = rig.log.records().length;
    rig.fw.initiateTransfer("app", c.bytes.length, 1024, c.name);
    for (let n = 0; n * 1024 < c.bytes.length; n++)
      rig.fw.receiveBlock(n, c.bytes.subarray(n * 1024, (n + 1) * 1024));
    assert.throws(
      () => rig.fw.verify(),
      (e: unknown) => e instanceof FirmwareError && e.code === c.code && e.detail === c.cause,
      c.name,
    );
    assert.throws(() => rig.fw.activate(), { code: "BAD_STATE" }, `${c.name}: nothing to activate`);
    const added = rig.log.records().slice(recordsBefore);
    assert.deepEqual(types(added), ["FW_UPDATE_RECEIVED", c.record], c.name);
    assert.equal(added[1]!.snapshot.reason, c.code, c.name);
    assert.equal(added[1]!.snapshot.cause, c.cause, c.name);
    // The staged bank (B) took the bytes; the running banks, golden and the running choice did not.
    const after = firmwareBytes(rig);
    assert.deepEqual(
      [after[0], after[2], after[3], after[4]],
      [banks[0], banks[2], banks[3], banks[4]],
      c.name,
    );
    assert.deepEqual({ ...rig.fw.bootConfig()!, last: null }, { ...config!, last: null }, c.name);
    assert.deepEqual(rig.fw.boot(), before, `${c.name}: active bank unchanged`);
    assertEvidenceComplete(rig, c.name);
  }
  for (const component of ["metrology", "bootloader"] as const) {
    const rig = factoryRig(4);
    const banks = firmwareBytes(rig);
    assert.throws(() => rig.fw.initiateTransfer(component, 3000, 512), { code: "COMPONENT_NOT_UPDATABLE" });
    assert.equal(rig.log.records().at(-1)!.snapshot.reason, "COMPONENT_NOT_UPDATABLE");
    assert.deepEqual(firmwareBytes(rig), banks);
  }
});

test("watchdog: the trial must kick within its window; a late kick is refused; unconfirmed boots end in WDT_REBOOT_LOOP", () => {
  const rig = factoryRig();
  transfer(rig, image("app", 1_003_000));
  assert.equal(rig.fw.boot().app.trial, true);
  assert.equal(rig.fw.watchdogState(), "RUNNING");
  rig.clock.nowMs += WATCHDOG_WINDOW_MS + 1;
  assert.equal(rig.fw.watchdogState(), "EXPIRED");
  assert.equal(rig.fw.kick(), false, "too late: the watchdog already fired");
  for (let boot = 2; boot <= BOOT_ATTEMPTS_MAX; boot++) assert.equal(rig.fw.boot("watchdog").app.trial, true);
  assert.deepEqual(rig.fw.boot("watchdog").app, { slot: "A", version: 1_000_000, trial: false });
  assert.equal(count(rig, "WDT_REBOOT_LOOP"), 1);
  assert.match(rollbackLog(rig.log.records()).join("\n"), /WDT_REBOOT_LOOP/);
  assert.equal(rig.fw.counters().fw_app_version, 1_000_000, "an unconfirmed image never moves the counter");
  assert.equal(rig.fw.kick(), true);
  assert.equal(count(rig, "FW_CONFIRMED"), 0);
  assertEvidenceComplete(rig, "watchdog");
});

test("watchdog: a confirmed image reset by the watchdog again and again goes back to golden (WDT_REBOOT_LOOP); a kick in time clears the count", () => {
  const rig = factoryRig();
  updated(rig, image("app", 1_004_000));
  for (let i = 0; i < WDT_RESETS_MAX; i++) rig.fw.boot("watchdog");
  rig.fw.kick();
  for (let i = 0; i < WDT_RESETS_MAX; i++) assert.equal(rig.fw.boot("watchdog").app.slot, "B");
  rig.fw.boot("power_on");
  assert.equal(rig.fw.bootConfig()!.wdtResets, WDT_RESETS_MAX, "a power-on reset proves nothing either way");
  assert.equal(count(rig, "WDT_REBOOT_LOOP"), 0);
  const result = rig.fw.boot("watchdog");
  assert.deepEqual(result.app, { slot: "GOLDEN", version: 1_000_000, trial: false });
  assert.equal(result.comms.slot, "A", "the application is reverted first");
  assert.equal(count(rig, "WDT_REBOOT_LOOP"), 1);
  assertEvidenceComplete(rig, "reboot loop");
});

for (const times of [1, 2, 10]) {
  test(`forced rollback sent ${times} time(s): same final state, exactly one transition record`, () => {
    const rig = factoryRig();
    updated(rig, image("app", 1_004_000), image("comms", 1_004_000));
    for (let i = 0; i < times; i++) rig.fw.forceRollback("full");
    const result = rig.fw.boot();
    for (let i = 0; i < times; i++) assert.equal(rig.fw.forceRollback("full"), false);
    assert.deepEqual(rig.fw.boot(), result);
    assert.deepEqual(result, {
      app: { slot: "GOLDEN", version: 1_000_000, trial: false },
      comms: { slot: "GOLDEN", version: 1_000_000, trial: false },
    });
    const rolledBack = rig.log.records().filter((r) => r.type === "FW_ROLLED_BACK");
    assert.equal(rolledBack.length, 1);
    assert.deepEqual(
      { ...rolledBack[0]!.snapshot, fw_transition: 0 },
      {
        fw_transition: 0,
        component: "app+comms",
        reason: "FORCED_ROLLBACK",
        app_from: "B",
        comms_from: "B",
        to_bank: "GOLDEN",
      },
    );
    assert.deepEqual(
      { ...rig.fw.bootConfig()!, last: null },
      {
        app: { slot: "GOLDEN", trial: null, attempts: 0 },
        comms: { slot: "GOLDEN", trial: null, attempts: 0 },
        rollbackFlag: "NONE",
        wdtResets: 0,
        staging: null,
        last: null,
      },
    );
    assertEvidenceComplete(rig, `forced ×${times}`);
  });
}

test("a watchdog rollback followed by a forced rollback does not oscillate", () => {
  const rig = factoryRig();
  updated(rig, image("app", 1_004_000));
  transfer(rig, image("app", 1_005_000));
  for (let i = 0; i <= BOOT_ATTEMPTS_MAX; i++) rig.fw.boot("watchdog");
  assert.deepEqual(rig.fw.runningImages!.app, { slot: "B", version: 1_004_000, trial: false });
  assert.equal(rig.fw.forceRollback("full"), true);
  const seen = [rig.fw.boot().app.slot];
  for (let i = 0; i < 5; i++) {
    rig.fw.forceRollback("full");
    seen.push(rig.fw.boot(i % 2 === 0 ? "watchdog" : "power_on").app.slot);
    rig.fw.kick();
  }
  assert.deepEqual(seen, ["GOLDEN", "GOLDEN", "GOLDEN", "GOLDEN", "GOLDEN", "GOLDEN"]);
  assert.equal(count(rig, "WDT_REBOOT_LOOP"), 1);
  assert.equal(count(rig, "FW_ROLLED_BACK"), 2, "one for the watchdog, one for the command");
  assertEvidenceComplete(rig, "watchdog then forced");
});

test("partial rollback reverts the application only; the comms stack stays current; repeating it changes nothing", () => {
  const rig = factoryRig();
  updated(rig, image("app", 1_001_000), image("comms", 1_001_000));
  assert.equal(rig.fw.partialRollback(), true);
  assert.equal(rig.fw.partialRollback(), false);
  const result = rig.fw.boot();
  assert.deepEqual(result.app, { slot: "GOLDEN", version: 1_000_000, trial: false });
  assert.deepEqual(result.comms, { slot: "B", version: 1_001_000, trial: false });
  assert.equal(rig.fw.partialRollback(), false);
  assert.deepEqual(rig.fw.boot(), result);
  assert.equal(count(rig, "FW_ROLLED_BACK"), 1);
  assert.equal(rig.log.records().at(-1)!.snapshot.reason, "PARTIAL_ROLLBACK");
  // A full rollback afterwards still moves the comms stack, once.
  assert.equal(rig.fw.forceRollback("full"), true);
  assert.equal(rig.fw.boot().comms.slot, "GOLDEN");
  assert.equal(rig.log.records().at(-1)!.snapshot.component, "comms");
});

test("seed 000 ERROR_CRC_MISMATCH: a rollback to a compromised golden image is refused; the meter stays on its verified image", () => {
  const rig = factoryRig();
  updated(rig, image("app", 1_001_000));
  rig.nvm.tamper(layout.firmwareRecovery.offset + 500, Uint8Array.of(0x00, 0x00, 0x00));
  assert.equal(rig.fw.forceRollback("full"), true);
  assert.deepEqual(rig.fw.boot().app, { slot: "B", version: 1_001_000, trial: false });
  assert.deepEqual(rig.fw.boot().app, { slot: "B", version: 1_001_000, trial: false });
  const refused = rig.log.records().filter((r) => r.type === "FW_REFUSED");
  assert.equal(refused.length, 1, "refused once: the flag is cleared, not retried every boot");
  assert.equal(refused[0]!.snapshot.reason, "ERROR_CRC_MISMATCH");
  assert.equal(refused[0]!.snapshot.stage, "rollback");
  assert.match(rollbackLog(rig.log.records()).join("\n"), /FW_REFUSED ERROR_CRC_MISMATCH .*stage=rollback/);
});

test("seed 000 SIGN_AUTH_FAIL: a rollback image whose certificate expired is refused at the meter's time; it still boots when nothing else does", () => {
  const goldenApp = image("app", 1_000_000, { signer: shortPki });
  let rig = factoryRig(5, { goldenApp });
  updated(rig, image("app", 1_001_000));
  rig.clock.nowMs = Date.UTC(2027, 5, 1);
  assert.equal(rig.fw.forceRollback("full"), true);
  assert.equal(rig.fw.boot().app.slot, "B");
  const refused = rig.log.records().filter((r) => r.type === "SIG_FAIL");
  assert.equal(refused.length, 1);
  assert.equal(refused[0]!.snapshot.cause, "CERT_EXPIRED");
  assert.equal(refused[0]!.snapshot.error_code, "0xF2");
  assert.match(rollbackLog(rig.log.records()).join("\n"), /SIG_FAIL SIGN_AUTH_FAIL/);
  // Never bricked over a date: bank B corrupt, golden (expired) is what runs.
  rig.nvm.tamper(layout.firmwareBankB.offset + 700, Uint8Array.of(0, 0));
  rig = reset(rig);
  assert.deepEqual(rig.fw.boot().app, { slot: "GOLDEN", version: 1_000_000, trial: false });
});

test("seed 000 MEM_ACCESS_VIOLATION: the recovery partition is locked after provisioning", () => {
  const rig = factoryRig();
  const before = firmwareBytes(rig);
  assert.throws(() => rig.fw.writeRecovery(GOLDEN_APP.bytes), { code: "MEM_ACCESS_VIOLATION" });
  assert.throws(() => rig.fw.provision(GOLDEN_APP, GOLDEN_COMMS), { code: "MEM_ACCESS_VIOLATION" });
  assert.equal(count(rig, "FW_REFUSED"), 2);
  assert.ok(
    rig.log.records().every((r) => r.type !== "FW_REFUSED" || r.snapshot.reason === "MEM_ACCESS_VIOLATION"),
  );
  assert.deepEqual(firmwareBytes(rig), before);
});

test("rollback.log: every seed string from its own scenario, one line per firmware record, derived from the sealed records", () => {
  const rig = factoryRig();
  const bad = image("app", 1_005_000).bytes.slice();
  bad[100]! ^= 1;
  rig.fw.initiateTransfer("app", bad.length, 4096, "bad");
  rig.fw.receiveBlock(0, bad);
  assert.throws(() => rig.fw.verify(), { code: "ERROR_CRC_MISMATCH" });
  const forged = image("app", 1_005_000).bytes.slice();
  forged[forged.length - 1]! ^= 1;
  rig.fw.initiateTransfer("app", forged.length, 4096, "forged");
  rig.fw.receiveBlock(0, forged);
  assert.throws(() => rig.fw.verify(), { code: "SIGN_AUTH_FAIL" });
  transfer(rig, image("app", 1_006_000));
  for (let i = 0; i <= BOOT_ATTEMPTS_MAX; i++) rig.fw.boot("watchdog");
  assert.throws(() => rig.fw.writeRecovery(new Uint8Array(1)), { code: "MEM_ACCESS_VIOLATION" });
  const lines = rollbackLog(rig.log.records());
  const firmwareRecords = rig.log
    .records()
    .filter((r) => r.type.startsWith("FW_") || r.type === "SIG_FAIL" || r.type === "WDT_REBOOT_LOOP");
  assert.equal(lines.length, firmwareRecords.length);
  for (const [i, line] of lines.entries()) {
    assert.match(line, new RegExp(`seq=${firmwareRecords[i]!.seq} ${firmwareRecords[i]!.type} `));
  }
  const text = lines.join("\n");
  assert.match(text, /FW_REFUSED ERROR_CRC_MISMATCH/);
  assert.match(text, /SIG_FAIL SIGN_AUTH_FAIL .*cause=BAD_SIGNATURE/);
  assert.match(text, /WDT_REBOOT_LOOP WDT_REBOOT_LOOP/);
  assert.match(text, /FW_ROLLED_BACK WDT_REBOOT_LOOP/);
  assert.match(text, /FW_REFUSED MEM_ACCESS_VIOLATION/);
});

test("verify before execute: a corrupted running bank is never executed; the bootloader falls back to golden and says why", () => {
  const rig = factoryRig();
  rig.nvm.tamper(layout.firmwareBankA.offset + 300, Uint8Array.of(0x00, 0x00));
  const result = rig.fw.boot();
  assert.deepEqual(result.app, { slot: "GOLDEN", version: 1_000_000, trial: false });
  const record = rig.log.records().at(-1)!;
  assert.equal(record.type, "FW_ROLLED_BACK");
  assert.equal(record.snapshot.reason, "ERROR_CRC_MISMATCH");
  assert.equal(record.snapshot.app_from, "A");
});

test("last resort: with the confirmed bank and golden both corrupt, the newest authentic bank runs rather than nothing; with none, NOT_BOOTABLE", () => {
  const rig = factoryRig();
  updated(rig, image("app", 1_001_000)); // B: 1.1.0 confirmed
  updated(rig, image("app", 1_002_000)); // A: 1.2.0 confirmed, B still holds 1.1.0
  rig.nvm.tamper(layout.firmwareBankA.offset + 300, Uint8Array.of(0, 0));
  rig.nvm.tamper(layout.firmwareRecovery.offset + 300, Uint8Array.of(0, 0));
  const back = reset(rig);
  assert.deepEqual(back.fw.boot().app, { slot: "B", version: 1_001_000, trial: false });
  assert.equal(back.log.records().at(-1)!.snapshot.reason, "ERROR_CRC_MISMATCH");
  assert.equal(back.fw.counters().fw_app_version, 1_002_000, "the counter never goes back");
  rig.nvm.tamper(layout.firmwareBankB.offset + 300, Uint8Array.of(0, 0));
  assert.throws(() => reset(rig).fw.boot(), { code: "NOT_BOOTABLE" });
});

test("a boot configuration lost to corruption (both copies) falls back to golden, recorded", () => {
  const rig = factoryRig();
  updated(rig, image("app", 1_001_000));
  for (let copy = 0; copy < 2; copy++) {
    const at = layout.bootConfig.offset + copy * layout.geometry.sectorBytes + 10;
    rig.nvm.tamper(at, Uint8Array.of(rig.nvm.read(at, 1)[0]! ^ 0x5a));
  }
  const fresh = reset(rig);
  const result = fresh.fw.boot();
  assert.equal(result.app.slot, "GOLDEN");
  assert.equal(result.comms.slot, "GOLDEN");
  const record = fresh.log.records().at(-1)!;
  assert.equal(record.type, "FW_ROLLED_BACK");
  assert.equal(record.snapshot.component, "app+comms");
  assert.equal(record.snapshot.reason, "ERROR_CRC_MISMATCH");
  assertEvidenceComplete(fresh, "config lost");
  assert.throws(
    () => fresh.fw.writeRecovery(new Uint8Array(4)),
    { code: "MEM_ACCESS_VIOLATION" },
    "still locked",
  );
});

test("a record a power cut prevented is sealed at the next boot, once", () => {
  const rig = factoryRig();
  transfer(rig, image("app", 1_001_000));
  rig.fw.boot();
  // The confirmation's configuration write is an erase and a program; the cut hits the record after it.
  rig.nvm.armPowerCut({ afterOps: 2 });
  assert.throws(() => rig.fw.kick(), { code: "POWER_LOST" });
  assert.equal(count(rig, "FW_CONFIRMED"), 0);
  const back = reset(rig);
  assert.deepEqual(back.fw.boot().app, { slot: "B", version: 1_001_000, trial: false });
  const confirmed = back.log.records().filter((r) => r.type === "FW_CONFIRMED");
  assert.equal(confirmed.length, 1);
  assert.equal(confirmed[0]!.snapshot.recovered, true);
  assert.equal(back.fw.counters().fw_app_version, 1_001_000);
  back.fw.boot();
  const again = reset(back);
  again.fw.boot();
  assert.equal(count(again, "FW_CONFIRMED"), 1, "never twice");
  assertEvidenceComplete(again, "recovered record");
});
