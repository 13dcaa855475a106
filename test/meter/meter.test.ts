import assert from "node:assert/strict";
import { test } from "node:test";
import { MemorySecureElement, SeededRandom, verifyEventChain } from "../../src/evidence/index.ts";
import {
  crystalPpm,
  DEFAULT_RTC_CONFIG,
  FACTORY_CALIBRATION,
  HouseholdLoad,
  Meter,
  meterNvmLayout,
  type PhasorSample,
} from "../../src/meter/index.ts";

const T0 = Date.UTC(2026, 5, 1);
const LOAD: PhasorSample = { vRms: 230, i1Rms: 10, phiDeg: 20, frequencyHz: 50, harmonics: [] };

function freshMeter(id = "MTR-T1", seed = 1, eventLogSectors?: number) {
  return Meter.open(
    {
      id,
      secureElement: new MemorySecureElement(id, Uint8Array.of(seed)),
      factoryTimeMs: T0,
      ...(eventLogSectors === undefined ? {} : { layout: meterNvmLayout({ eventLogSectors }) }),
    },
    T0,
  );
}

/** Steps the meter every `stepMs` from `fromMs` for `durationMs`. */
function run(meter: Meter, fromMs: number, durationMs: number, stepMs = 1000, sample = LOAD, sensors = {}) {
  for (let t = fromMs + stepMs; t <= fromMs + durationMs; t += stepMs) meter.step(t, sample, sensors);
  return fromMs + durationMs;
}

test("time never goes backwards across 1,000 random power cycles; every step is a sealed TIME_STEP with its cause", () => {
  // A 4-sector event log: each power-up's recovery verifies every retained signature, so a small ring
  // keeps 1,000 cycles quick. The ring wraps many times, so the log is audited as it grows: after every
  // sync and every power cycle, the clock's new steps must be exactly the new TIME_STEP records.
  const meter = freshMeter("MTR-T1", 1, 4);
  const rng = new SeededRandom(7);
  let trueMs = T0;
  let lastMeterMs = meter.meterTimeMs(trueMs);
  let backwardSyncs = 0;
  let exhaustedHoldovers = 0;
  let stepsAudited = 0;
  let seqAudited = meter.eventLog().at(-1)!.seq;
  let previous = meter.eventLog().at(-1)!;
  const audit = (where: string) => {
    const fresh = meter.eventsFrom(seqAudited + 1);
    assert.equal(
      fresh[0]?.seq ?? seqAudited + 1,
      seqAudited + 1,
      `${where}: the ring wrapped past unaudited records`,
    );
    const sealed = fresh.filter((r) => r.type === "TIME_STEP");
    const taken = meter.timeSteps.slice(stepsAudited);
    assert.deepEqual(
      sealed.map((r) => [r.snapshot.from_ms, r.snapshot.to_ms, r.snapshot.cause]),
      taken.map((step) => [step.fromMs, step.toMs, step.cause]),
      `${where}: every clock step is one sealed TIME_STEP with its cause`,
    );
    const stepsBack = (r: (typeof fresh)[number] | undefined) =>
      r?.type === "TIME_STEP" && r.snapshot.cause === "SYNC_STEP_BACK";
    for (const [k, r] of fresh.entries()) {
      // Sealed timestamps never decrease, except across a TIME_STEP that stepped the clock back (and the
      // LOG_WRAP the ring seals just before it, stamped with the time of the record it makes room for).
      const next = fresh[k + 1];
      const steppedBack =
        stepsBack(r) || (r.type === "LOG_WRAP" && stepsBack(next) && next!.timestampMs === r.timestampMs);
      assert.ok(steppedBack || r.timestampMs >= previous.timestampMs, `${where}: seq ${r.seq} stamped early`);
      previous = r;
    }
    stepsAudited = meter.timeSteps.length;
    seqAudited = fresh.at(-1)?.seq ?? seqAudited;
  };
  for (let cycle = 0; cycle < 1000; cycle++) {
    trueMs = run(meter, trueMs, rng.intBetween(1, 20) * 1000, 1000);
    if (rng.chance(0.2)) {
      // A time source: mostly small corrections (slewed), sometimes large ones (stepped), both directions.
      const offset = rng.chance(0.5) ? rng.intBetween(-1500, 1500) : rng.intBetween(-600_000, 600_000);
      const before = meter.meterTimeMs(trueMs);
      const step = meter.timeSync(trueMs, trueMs + offset);
      if (step !== null && step.toMs < before) backwardSyncs++;
      lastMeterMs = meter.meterTimeMs(trueMs);
      audit(`cycle ${cycle} sync`);
    }
    const beforeOutage = meter.meterTimeMs(trueMs);
    assert.ok(beforeOutage >= lastMeterMs, `cycle ${cycle}: clock ran backwards while powered`);
    meter.powerFail(trueMs);
    // Outages from a second to beyond the 7-day holdover capacity.
    const longOutage = rng.chance(0.05);
    trueMs += longOutage ? 8 * 86_400_000 : rng.intBetween(1, 3_600) * 1000;
    if (longOutage) exhaustedHoldovers++;
    meter.powerRestore(trueMs);
    const after = meter.meterTimeMs(trueMs);
    assert.ok(
      after >= beforeOutage,
      `cycle ${cycle}: time went back across a power cycle (${after} < ${beforeOutage})`,
    );
    lastMeterMs = after;
    audit(`cycle ${cycle} power-up`);
  }
  assert.ok(backwardSyncs > 0, "the run exercised backward steps too");
  assert.ok(exhaustedHoldovers > 0, "and outages beyond the holdover capacity");
  const causes = new Set(meter.timeSteps.map((step) => step.cause));
  assert.deepEqual([...causes].sort(), ["HOLDOVER_EXHAUSTED", "SYNC_STEP", "SYNC_STEP_BACK"]);
  assert.deepEqual(verifyEventChain(meter.eventLog(), meter.eventPublicKey).problems, []);
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

test("the RTC drifts with the sensed temperature: a cold meter loses what the crystal's parabola says", () => {
  const warm = freshMeter("MTR-T5", 5);
  const cold = freshMeter("MTR-T6", 6);
  const dayMs = 86_400_000;
  run(warm, T0, dayMs, 60_000, LOAD, { temperatureC: 25 });
  run(cold, T0, dayMs, 60_000, LOAD, { temperatureC: -15 });
  const expectedMs =
    ((crystalPpm(DEFAULT_RTC_CONFIG, -15) - crystalPpm(DEFAULT_RTC_CONFIG, 25)) * dayMs) / 1e6;
  assert.ok(expectedMs < -4_000, `a tuning-fork crystal at -15 °C loses seconds a day (${expectedMs} ms)`);
  const differenceMs = cold.meterTimeMs(T0 + dayMs) - warm.meterTimeMs(T0 + dayMs);
  // The first minute ran at the factory's 25 °C before the cold reading arrived.
  assert.ok(Math.abs(differenceMs - expectedMs) < 10, `${differenceMs} ms vs ${expectedMs} ms`);
});

test("calibration temperature segments: the gain of the segment holding the sensed temperature applies", () => {
  const segments = [
    { upToC: 0, gainAdjust: 1.01 },
    { upToC: 85, gainAdjust: 1 },
  ];
  const cold = freshMeter("MTR-T7", 7);
  const mild = freshMeter("MTR-T8", 8);
  for (const meter of [cold, mild])
    meter.installCalibration(T0, { ...FACTORY_CALIBRATION, version: 2, segments });
  run(cold, T0, 3_600_000, 1000, LOAD, { temperatureC: -10 });
  run(mild, T0, 3_600_000, 1000, LOAD, { temperatureC: 20 });
  const ratio = cold.exactImportWh() / mild.exactImportWh();
  assert.ok(Math.abs(ratio - 1.01) < 1e-4, `cold/mild energy ratio ${ratio}`);
});

test("time quality: SYNCED after a sync, HOLDOVER once the sync ages past 25 h (sealed once), SYNCED again on the next", () => {
  const meter = freshMeter("MTR-T9", 9);
  assert.equal(meter.timeQuality, "RTC_ONLY");
  meter.timeSync(T0 + 1_000, T0 + 1_500);
  assert.equal(meter.timeQuality, "SYNCED");
  let t = run(meter, T0 + 1_000, 24 * 3_600_000, 60_000);
  assert.equal(meter.timeQuality, "SYNCED", "a day-old sync still vouches");
  t = run(meter, t, 2 * 3_600_000, 60_000);
  assert.equal(meter.timeQuality, "HOLDOVER");
  t = run(meter, t, 3_600_000, 60_000);
  const syncRecords = () =>
    meter
      .eventLog()
      .filter((r) => r.type === "TIME_SYNC")
      .map((r) => [r.snapshot.event, r.timeQuality]);
  assert.deepEqual(syncRecords(), [
    ["SYNC_ACQUIRED", "RTC_ONLY"],
    ["SYNC_LOST", "HOLDOVER"],
  ]);
  meter.timeSync(t, t);
  meter.timeSync(t + 60_000, t + 60_000);
  assert.equal(meter.timeQuality, "SYNCED");
  assert.equal(syncRecords().length, 3, "a sync that keeps a synced clock synced seals nothing");
  assert.deepEqual(
    { ...meter.timeEvidence(), last_sync_age_ms: null },
    {
      sync_acquired_cnt: 2,
      sync_lost_cnt: 1,
      holdover_enter_cnt: 1,
      step_adjust_cnt: 0,
      last_sync_age_ms: null,
    },
  );
});
