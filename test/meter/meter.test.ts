import assert from "node:assert/strict";
import { test } from "node:test";
import { MemorySecureElement, SeededRandom, verifyEventChain } from "../../src/evidence/index.ts";
import { FACTORY_CALIBRATION, HouseholdLoad, Meter, type PhasorSample } from "../../src/meter/index.ts";

const T0 = Date.UTC(2026, 5, 1);
const LOAD: PhasorSample = { vRms: 230, i1Rms: 10, phiDeg: 20, frequencyHz: 50, harmonics: [] };

function freshMeter(id = "MTR-T1", seed = 1) {
  return Meter.open(
    { id, secureElement: new MemorySecureElement(id, Uint8Array.of(seed)), factoryTimeMs: T0 },
    T0,
  );
}

/** Steps the meter every `stepMs` from `fromMs` for `durationMs`. */
function run(meter: Meter, fromMs: number, durationMs: number, stepMs = 1000, sample = LOAD, sensors = {}) {
  for (let t = fromMs + stepMs; t <= fromMs + durationMs; t += stepMs) meter.step(t, sample, sensors);
  return fromMs + durationMs;
}

test("time never goes backwards across 1,000 random power cycles; every step is a sealed TIME_STEP with its cause", () => {
  const meter = freshMeter();
  const rng = new SeededRandom(7);
  let trueMs = T0;
  let lastMeterMs = meter.meterTimeMs(trueMs);
  let backwardSyncs = 0;
  for (let cycle = 0; cycle < 1000; cycle++) {
    trueMs = run(meter, trueMs, rng.intBetween(1, 20) * 1000, 1000);
    if (rng.chance(0.2)) {
      // A time source: mostly small corrections (slewed), sometimes large ones (stepped), both directions.
      const offset = rng.chance(0.5) ? rng.intBetween(-1500, 1500) : rng.intBetween(-600_000, 600_000);
      const before = meter.meterTimeMs(trueMs);
      const step = meter.timeSync(trueMs, trueMs + offset);
      if (step !== null && step.toMs < before) backwardSyncs++;
      lastMeterMs = meter.meterTimeMs(trueMs);
    }
    const beforeOutage = meter.meterTimeMs(trueMs);
    assert.ok(beforeOutage >= lastMeterMs, `cycle ${cycle}: clock ran backwards while powered`);
    meter.powerFail(trueMs);
    // Outages from a second to beyond the 7-day holdover capacity.
    trueMs += rng.chance(0.05) ? 8 * 86_400_000 : rng.intBetween(1, 3_600) * 1000;
    meter.powerRestore(trueMs);
    const after = meter.meterTimeMs(trueMs);
    assert.ok(
      after >= beforeOutage,
      `cycle ${cycle}: time went back across a power cycle (${after} < ${beforeOutage})`,
    );
    lastMeterMs = after;
  }
  const log = meter.eventLog();
  const steps = log.filter((r) => r.type === "TIME_STEP");
  assert.ok(steps.length > 0);
  for (const r of steps)
    assert.ok(["SYNC_STEP", "SYNC_STEP_BACK", "HOLDOVER_EXHAUSTED"].includes(String(r.snapshot.cause)));
  // Every step the clock took is in the log with its cause (the log keeps the newest window).
  const sealedSteps = meter.timeSteps.slice(-steps.length);
  assert.deepEqual(
    steps.map((r) => [r.snapshot.from_ms, r.snapshot.to_ms, r.snapshot.cause]),
    sealedSteps.map((s) => [s.fromMs, s.toMs, s.cause]),
  );
  // Between steps, sealed timestamps never decrease.
  for (let i = 1; i < log.length; i++) {
    if (log[i]!.type === "TIME_STEP" && log[i]!.snapshot.cause === "SYNC_STEP_BACK") continue;
    assert.ok(
      log[i]!.timestampMs >= log[i - 1]!.timestampMs,
      `record seq ${log[i]!.seq} stamped before its predecessor`,
    );
  }
  assert.ok(backwardSyncs > 0, "the run exercised backward steps too");
  assert.deepEqual(verifyEventChain(log, meter.eventPublicKey).problems, []);
});

test("billing registers survive power cycles bit for bit; the load profile keeps 15-minute entries", () => {
  const meter = freshMeter();
  let t = run(meter, T0, 3_600_000, 10_000, new HouseholdLoad({ seed: 3 }).at(40_000));
  const before = meter.registers;
  assert.ok(before.importActiveWh > 100);
  meter.powerFail(t);
  t += 60_000;
  meter.powerRestore(t);
  assert.deepEqual(meter.registers, before);
  const profile = meter.loadProfile();
  assert.ok(profile.length >= 4, `${profile.length} profile entries`);
  for (let i = 1; i < profile.length; i++) assert.equal(profile[i]!.seq, profile[i - 1]!.seq + 1);
  // A fresh meter object over the same NVM (a process restart) reads the same registers back.
  const restarted = Meter.open(
    { id: "MTR-T1", secureElement: new MemorySecureElement("MTR-T1", Uint8Array.of(1)), nvm: meter.nvm },
    t,
  );
  assert.deepEqual(restarted.registers, before);
});

test("a magnet held across a power cycle is one MAG_TAMPER record, queued ahead as an alert and pushed on restore", () => {
  const meter = freshMeter("MTR-T2", 2);
  meter.setComms(false);
  const magnet = { fieldMilliTesla: 80, pfAnomaly: true };
  let t = run(meter, T0, 30_000, 500, LOAD, magnet);
  meter.powerFail(t);
  t += 10_000;
  meter.powerRestore(t);
  t = run(meter, t, 30_000, 500, LOAD, magnet);
  const mags = meter.eventLog().filter((r) => r.type === "MAG_TAMPER");
  assert.equal(mags.length, 1, "the persisted tamper state is restored, not re-claimed");
  assert.equal(mags[0]!.snapshot.error_code, "0x09");
  assert.deepEqual(meter.takeAlerts(), [], "comms down: nothing pushed");
  meter.setComms(true);
  const pushed = meter.takeAlerts();
  assert.deepEqual(
    pushed.map((r) => [r.type, r.timestampMs]),
    [["MAG_TAMPER", mags[0]!.timestampMs]],
    "pushed on restore with its original timestamp",
  );
  t = run(meter, t, 10_000, 500, LOAD, { fieldMilliTesla: 0 });
  assert.equal(meter.eventLog().filter((r) => r.type === "TAMPER_CLEARED").length, 1);
});

test("tamper detected while power fails: the TAMPER_PENDING marker is committed first, the evidence on resume", () => {
  const meter = freshMeter("MTR-T3", 3);
  let t = run(meter, T0, 5_000);
  meter.supply(t, 0.8); // PF detect: TX frozen
  t = run(meter, t, 4_000, 500, LOAD, { lineCurrentA: 10, neutralCurrentA: 5 });
  t = run(meter, t, 4_000, 500, LOAD, { lineCurrentA: 10, neutralCurrentA: 5 });
  const types = meter.eventLog().map((r) => r.type);
  assert.ok(types.includes("TAMPER_PENDING"));
  assert.ok(!types.includes("NEUTRAL_MISS"));
  meter.supply(t, 1);
  const after = meter.eventLog().map((r) => r.type);
  assert.ok(after.indexOf("NEUTRAL_MISS") > after.indexOf("TAMPER_PENDING"));
});

test("calibration: a newer set installs atomically and survives restart; an older or equal set is refused", () => {
  const se = new MemorySecureElement("MTR-T4", Uint8Array.of(4));
  const meter = Meter.open({ id: "MTR-T4", secureElement: se, factoryTimeMs: T0 }, T0);
  const record = meter.installCalibration(T0, { ...FACTORY_CALIBRATION, version: 3, currentGain: 1.002 });
  assert.equal(record.type, "CAL_UPDATE");
  assert.deepEqual([record.snapshot.from_version, record.snapshot.to_version], [1, 3]);
  assert.throws(() => meter.installCalibration(T0, { ...FACTORY_CALIBRATION, version: 2 }), {
    code: "COUNTER_DECREASE",
  });
  assert.throws(() => meter.installCalibration(T0, { ...FACTORY_CALIBRATION, version: 3 }), {
    code: "COUNTER_DECREASE",
  });
  assert.equal(meter.eventLog().filter((r) => r.type === "CAL_UPDATE").length, 1);
  const restarted = Meter.open({ id: "MTR-T4", secureElement: se, nvm: meter.nvm }, T0 + 1000);
  assert.equal(restarted.calibration.version, 3);
  assert.equal(restarted.calibration.set.currentGain, 1.002);
});
