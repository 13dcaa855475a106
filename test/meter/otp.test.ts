import assert from "node:assert/strict";
import { test } from "node:test";
import { parseObis } from "../../src/dlms/index.ts";
import {
  computeRollbackOtp,
  decodeRollbackResult,
  encodeRollbackCommand,
  type FirmwareAction,
  MemorySecureElement,
  type RollbackCommandWire,
  toHex,
} from "../../src/evidence/index.ts";
import {
  type FirmwareImage,
  Meter,
  meterObjectModel,
  OTP_COUNTER_NAME,
  ROLLBACK_COMMAND_CLASS,
  ROLLBACK_COMMAND_METHOD,
  ROLLBACK_COMMAND_OBIS,
  RollbackCommandHandler,
  withRollbackCommand,
} from "../../src/meter/index.ts";
import { GOLDEN_APP, GOLDEN_COMMS, HW, image, pki } from "./firmware-harness.ts";

// The meter's OTP-checked rollback command (src/meter/rollback-command.ts): seed 000 "all rollback commands
// must be signed via a One-Time Password", "repeatedly sending the rollback command transitions the meter
// only once to the stable state".

const T0 = Date.UTC(2026, 5, 1);
const KEY = new Uint8Array(32).fill(0x42);
const GOLDEN = toHex(GOLDEN_APP.checksum);

function install(firmware: ReturnType<Meter["attachFirmware"]>, update: FirmwareImage): void {
  firmware.initiateTransfer(update.component as "app", update.bytes.length, 512);
  for (let n = 0; n * 512 < update.bytes.length; n++)
    firmware.receiveBlock(n, update.bytes.subarray(n * 512, (n + 1) * 512));
  firmware.verify();
  firmware.activate();
  firmware.boot();
  firmware.confirm(update.component as "app");
}

function setup() {
  const clock = { now: T0 };
  const se = new MemorySecureElement("MTR-OTP", Uint8Array.of(1, 2, 3));
  const meter = Meter.open({ id: "MTR-OTP", secureElement: se, factoryTimeMs: T0 }, T0);
  meter.step(T0 + 1000, { vRms: 230, i1Rms: 5, phiDeg: 5, frequencyHz: 50, harmonics: [] });
  const firmware = meter.attachFirmware({ caCertificateDer: pki.ca.certificateDer }, HW, () => clock.now);
  firmware.provision(GOLDEN_APP, GOLDEN_COMMS);
  firmware.boot();
  const appUpdate = image("app", 1_001_000);
  const commsUpdate = image("comms", 1_001_000);
  install(firmware, appUpdate);
  install(firmware, commsUpdate);
  const handler = new RollbackCommandHandler({
    meterId: "MTR-OTP",
    otpKey: KEY,
    firmware,
    secureElement: se,
    nowMs: () => clock.now,
    sealRefusal: (_reason, snapshot) => meter.reportFirmwareIncident(clock.now, "SIG_FAIL", snapshot),
  });
  let counter = 100;
  const command = (
    action: FirmwareAction = "rollback_full",
    overrides: Partial<RollbackCommandWire> = {},
  ): RollbackCommandWire => {
    const input = {
      meterId: "MTR-OTP",
      action,
      targetChecksum: GOLDEN,
      expiresMs: clock.now + 3_600_000,
      counter: ++counter,
    };
    return { ...input, otp: computeRollbackOtp(KEY, input), ...overrides };
  };
  const sigFails = () => meter.eventLog().filter((r) => r.type === "SIG_FAIL");
  return { clock, se, meter, firmware, handler, command, sigFails, appUpdate, commsUpdate };
}

test("a valid OTP rolls the meter back to golden; the same OTP again is refused as a replay and sealed", () => {
  const { firmware, handler, command, sigFails, se, meter } = setup();
  const registers = meter.registers;
  const cmd = command();
  const result = handler.execute(cmd);
  assert.deepEqual(result, { outcome: "applied", reason: "", runningChecksum: GOLDEN });
  assert.deepEqual(firmware.runningChecksum("app"), GOLDEN_APP.checksum);
  assert.deepEqual(firmware.runningChecksum("comms"), GOLDEN_COMMS.checksum);
  assert.equal(se.readCounter(OTP_COUNTER_NAME), cmd.counter, "the OTP is consumed in the secure element");
  assert.ok(
    meter.eventLog().some((r) => r.type === "FW_ROLLED_BACK" && r.snapshot.reason === "FORCED_ROLLBACK"),
  );
  const replay = handler.execute(cmd);
  assert.equal(replay.outcome, "refused");
  assert.equal(replay.reason, "OTP_REPLAY");
  assert.equal(sigFails().length, 1);
  assert.equal(sigFails()[0]!.snapshot.reason, "OTP_REPLAY");
  assert.equal(sigFails()[0]!.snapshot.error_code, "0xF2");
  assert.equal(handler.refused, 1);
  assert.deepEqual(meter.registers, registers, "billing registers untouched");
});

test("repeating the rollback with a fresh OTP changes nothing (idempotent, no new record)", () => {
  const { firmware, handler, command, meter } = setup();
  assert.equal(handler.execute(command()).outcome, "applied");
  const records = meter.eventLog().length;
  const banks = JSON.stringify(firmware.banks());
  for (let i = 0; i < 3; i++) {
    assert.deepEqual(handler.execute(command()), {
      outcome: "already_golden",
      reason: "",
      runningChecksum: GOLDEN,
    });
  }
  assert.equal(meter.eventLog().length, records);
  assert.equal(JSON.stringify(firmware.banks()), banks);
});

test("expired, forged, misdirected and older OTPs are refused, each sealed, nothing changes", () => {
  const { clock, firmware, handler, command, sigFails, appUpdate } = setup();
  const before = JSON.stringify(firmware.banks());
  const expired = command("rollback_full", {});
  clock.now = expired.expiresMs + 1;
  assert.equal(handler.execute(expired).reason, "OTP_EXPIRED");
  clock.now = T0;
  assert.equal(
    handler.execute(command("rollback_full", { targetChecksum: "00".repeat(32) })).reason,
    "OTP_INVALID",
  );
  assert.equal(handler.execute(command("rollback_full", { meterId: "MTR-OTHER" })).reason, "OTP_WRONG_METER");
  const forgedAction = command("rollback_app");
  assert.equal(handler.execute({ ...forgedAction, action: "rollback_full" }).reason, "OTP_INVALID");
  assert.deepEqual(firmware.runningChecksum("app"), appUpdate.checksum, "refusals change nothing");
  assert.equal(JSON.stringify(firmware.banks()), before);
  const newer = command();
  const older = command();
  // Issue order is not use order: once the newer counter is used, the older one is refused.
  assert.equal(
    handler.execute({
      ...newer,
      counter: older.counter + 1,
      otp: computeRollbackOtp(KEY, { ...newer, counter: older.counter + 1 }),
    }).outcome,
    "applied",
  );
  assert.equal(handler.execute(older).reason, "OTP_REPLAY");
  assert.deepEqual(
    sigFails().map((r) => r.snapshot.reason),
    ["OTP_EXPIRED", "OTP_INVALID", "OTP_WRONG_METER", "OTP_INVALID", "OTP_REPLAY"],
  );
});

test("partial rollback: the application returns to golden, the comms stack stays current", () => {
  const { firmware, handler, command, commsUpdate } = setup();
  assert.equal(handler.execute(command("rollback_app")).outcome, "applied");
  assert.deepEqual(firmware.runningChecksum("app"), GOLDEN_APP.checksum);
  assert.deepEqual(firmware.runningChecksum("comms"), commsUpdate.checksum);
  assert.equal(handler.execute(command("rollback_app")).outcome, "already_golden");
});

test("on DLMS: the management client may call the command; the public client may not; malformed parameters are refused", () => {
  const { clock, meter, firmware, handler, command, appUpdate } = setup();
  const model = withRollbackCommand(
    meterObjectModel({ meter, firmware, trueNowMs: () => clock.now }),
    handler,
  );
  const obis = parseObis(ROLLBACK_COMMAND_OBIS);
  const parameters = { type: "octet-string" as const, value: encodeRollbackCommand(command()) };
  const denied = model.action("public", ROLLBACK_COMMAND_CLASS, obis, ROLLBACK_COMMAND_METHOD, parameters);
  assert.equal(denied.result, 3);
  assert.deepEqual(firmware.runningChecksum("app"), appUpdate.checksum, "nothing happened");
  const bad = model.action("management", ROLLBACK_COMMAND_CLASS, obis, ROLLBACK_COMMAND_METHOD, {
    type: "octet-string",
    value: Uint8Array.of(1, 2, 3),
  });
  assert.equal(bad.result, 12);
  const ok = model.action("management", ROLLBACK_COMMAND_CLASS, obis, ROLLBACK_COMMAND_METHOD, parameters);
  assert.equal(ok.result, 0);
  assert.ok(ok.data?.type === "octet-string");
  assert.equal(decodeRollbackResult(ok.data.value).outcome, "applied");
  // Everything else still reaches the meter's own model.
  assert.deepEqual(model.get("public", 1, parseObis("0.0.96.1.0.255"), 2, null), {
    type: "visible-string",
    value: "MTR-OTP",
  });
});
