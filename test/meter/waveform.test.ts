import assert from "node:assert/strict";
import { test } from "node:test";
import { MemorySecureElement } from "../../src/evidence/index.ts";
import {
  HouseholdLoad,
  Meter,
  type MeterSensors,
  type PhasorSample,
  synthesize,
} from "../../src/meter/index.ts";

// Waveform mode through the whole meter: the sampled channels feed the same calibration, registers and
// tamper rules as interval mode, and the tamper signals (phase shift of a saturating sensor, a missing
// neutral, an injected off-grid signal) come out of the metrology, not out of a test's sensor flags.

const T0 = Date.UTC(2026, 6, 1);
const RATE_HZ = 4000;
/** One 50 Hz cycle per step: the window the meter measures and holds for the step. */
const CYCLE_SAMPLES = RATE_HZ / 50;
const LOAD: PhasorSample = { vRms: 230, i1Rms: 8, phiDeg: 25.8, frequencyHz: 50, harmonics: [] };

function freshMeter(id: string, seed: number): Meter {
  return Meter.open(
    { id, secureElement: new MemorySecureElement(id, Uint8Array.of(seed)), factoryTimeMs: T0 },
    T0,
  );
}

/** Steps `meter` once a second in waveform mode from `fromS` to `toS` (exclusive). */
function runWaveform(
  meter: Meter,
  fromS: number,
  toS: number,
  sample: PhasorSample,
  sensors: Partial<MeterSensors> = {},
): void {
  for (let s = fromS; s < toS; s++) {
    const waveform = synthesize(sample, RATE_HZ, CYCLE_SAMPLES, s * RATE_HZ);
    meter.stepWaveform(T0 + (s + 1) * 1000, waveform, sensors);
  }
}

const claims = (meter: Meter) =>
  meter
    .eventLog()
    .filter((r) => !["POWER_UP", "RECOVERY", "TAMPER_CLEARED"].includes(r.type))
    .map((r) => r.type);

/** A magnet saturating the current transformer: the current reads low and its phase advances. */
const SATURATED: PhasorSample = { ...LOAD, i1Rms: LOAD.i1Rms * 0.7, phiDeg: LOAD.phiDeg - 15 };

test("waveform mode: 51 mT with the phase shift of a saturating CT → MAG_TAMPER confirmed (0x09), alert queued", () => {
  const meter = freshMeter("MTR-W1", 1);
  runWaveform(meter, 0, 120, LOAD);
  runWaveform(meter, 120, 130, SATURATED, { fieldMilliTesla: 51 });
  const mags = meter.eventLog().filter((r) => r.type === "MAG_TAMPER");
  assert.deepEqual(claims(meter), ["MAG_TAMPER"]);
  assert.equal(mags[0]!.snapshot.pf_anomaly, true, "the correlation came from the metrology");
  assert.equal(mags[0]!.snapshot.error_code, "0x09");
  assert.ok(mags[0]!.timestampMs - (T0 + 121_000) <= 2_000 + 1_000, "within the 2 s time gate + one step");
  assert.deepEqual(
    meter.takeAlerts().map((r) => r.type),
    ["MAG_TAMPER"],
  );
});

test("waveform mode: 49 mT with the same phase shift → nothing; 51 mT without a phase shift → MAG_SUSPECT only, no alert", () => {
  const below = freshMeter("MTR-W2", 2);
  runWaveform(below, 0, 120, LOAD);
  runWaveform(below, 120, 200, SATURATED, { fieldMilliTesla: 49 });
  assert.deepEqual(claims(below), []);

  const uncorrelated = freshMeter("MTR-W3", 3);
  runWaveform(uncorrelated, 0, 120, LOAD);
  runWaveform(uncorrelated, 120, 300, LOAD, { fieldMilliTesla: 51 });
  assert.deepEqual(claims(uncorrelated), ["MAG_SUSPECT"], "one record for the whole field episode");
  assert.deepEqual(uncorrelated.takeAlerts(), [], "a suspicion travels with the log, not the alert lane");
  assert.deepEqual(uncorrelated.status(T0 + 300_000).tamper, []);
});

test("waveform mode: the neutral channel drives NEUTRAL_MISS (0x04) beyond a 10 % mismatch, not at 5 %", () => {
  const healthy = freshMeter("MTR-W4", 4);
  runWaveform(healthy, 0, 30, { ...LOAD, neutralRatio: 0.95 });
  assert.deepEqual(claims(healthy), []);

  const missing = freshMeter("MTR-W5", 5);
  runWaveform(missing, 0, 30, { ...LOAD, neutralRatio: 0.85 });
  const records = missing.eventLog().filter((r) => r.type === "NEUTRAL_MISS");
  assert.deepEqual(claims(missing), ["NEUTRAL_MISS"]);
  assert.equal(records[0]!.snapshot.error_code, "0x04");
  assert.equal(records[0]!.snapshot.mismatch_pct, 15);
  const m = missing.status(T0 + 30_000).lastMeasurement!;
  assert.ok(Math.abs(m.neutralCurrentA / m.iRms - 0.85) < 1e-9, "neutral current is a metrology output");
});

test("waveform mode: an injected off-grid signal (75 Hz) is physically impossible → INJECT_SUS past its 1 s gate", () => {
  const meter = freshMeter("MTR-W6", 6);
  runWaveform(meter, 0, 10, LOAD);
  for (let s = 10; s < 15; s++) {
    const waveform = synthesize({ ...LOAD, frequencyHz: 75 }, RATE_HZ, (RATE_HZ / 75) * 3, s * RATE_HZ);
    meter.stepWaveform(T0 + (s + 1) * 1000, waveform);
  }
  const inject = meter.eventLog().filter((r) => r.type === "INJECT_SUS");
  assert.equal(inject.length, 1);
  assert.ok(Math.abs(Number(inject[0]!.snapshot.freq_hz) - 75) < 0.5);
});

test("one engine: a meter in waveform mode and one in interval mode agree within 0.1 % over an hour of a house", () => {
  // Both meters see the same seeded house, one step per second; the waveform meter measures one sampled
  // mains cycle per second (4 kHz) and holds it for the second, the interval meter takes the phasor values.
  const house = new HouseholdLoad({ seed: "house-7", pvPeakW: 3000 });
  const waveformMeter = freshMeter("MTR-W7", 7);
  const intervalMeter = freshMeter("MTR-W8", 8);
  for (let s = 0; s < 3600; s++) {
    const sample = house.at(11 * 3600 + s);
    waveformMeter.stepWaveform(T0 + (s + 1) * 1000, synthesize(sample, RATE_HZ, CYCLE_SAMPLES, s * RATE_HZ));
    intervalMeter.step(T0 + (s + 1) * 1000, sample);
  }
  const a = intervalMeter.registers;
  const b = waveformMeter.registers;
  for (const key of ["importActiveWh", "exportActiveWh"] as const) {
    const total = a.importActiveWh + a.exportActiveWh;
    assert.ok(total > 500, `${total} Wh metered`);
    assert.ok(Math.abs(a[key] - b[key]) <= Math.max(1, 0.001 * total), `${key}: ${a[key]} vs ${b[key]}`);
  }
});
