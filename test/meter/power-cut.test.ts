import assert from "node:assert/strict";
import { test } from "node:test";
import { isEvidenceError, MemoryNvm, MemorySecureElement, SeededRandom } from "../../src/evidence/index.ts";
import { CALIBRATION_COUNTER, FACTORY_CALIBRATION, Meter, meterNvmLayout } from "../../src/meter/index.ts";

// Power cut at every NVM operation of the meter's two small atomic updates (seed 002 H2-4 "dual-copy
// atomic update", H2-10 commit-only): the calibration set with its CAL_UPDATE record, and the billing
// registers at power-down. After power returns the meter holds the old or the new value, never a mix,
// and its log audits exactly what it holds.

const T0 = Date.UTC(2026, 8, 1);
const layout = meterNvmLayout();
/** Bound on the cut points tried; each update takes far fewer NVM operations. */
const CUT_POINTS_MAX = 60;
const LOAD = { vRms: 230, i1Rms: 9, phiDeg: 15, frequencyHz: 50, harmonics: [] };

function rig(seed: number) {
  const nvm = new MemoryNvm(layout.geometry, { rng: new SeededRandom(seed) });
  const se = new MemorySecureElement("MTR-PC", Uint8Array.of(seed & 0xff));
  const meter = Meter.open({ id: "MTR-PC", secureElement: se, nvm, layout, factoryTimeMs: T0 }, T0);
  return { nvm, se, meter };
}

test("calibration install cut at every NVM operation: old or new set, never a mix; exactly one CAL_UPDATE for what is installed", () => {
  const next = { ...FACTORY_CALIBRATION, version: 2, currentGain: 1.0015, phaseDeg: 0.12 };
  let completedAt = -1;
  const outcomes = new Set<string>();
  for (let cut = 0; cut < CUT_POINTS_MAX && completedAt < 0; cut++) {
    const { nvm, se, meter } = rig(cut + 1);
    nvm.armPowerCut({ afterOps: cut });
    try {
      meter.installCalibration(T0 + 1_000, next);
      completedAt = cut;
    } catch (error) {
      assert.ok(isEvidenceError(error, "POWER_LOST"), `cut ${cut}: ${String(error)}`);
      meter.crashed(T0 + 1_000);
    }
    nvm.disarmPowerCut();
    nvm.powerOn();
    const after = Meter.open({ id: "MTR-PC", secureElement: se, nvm, layout }, T0 + 60_000);
    const version = after.calibration.version;
    assert.ok(version === 1 || version === 2, `cut ${cut}: version ${version}`);
    if (version === 2) assert.deepEqual(after.calibration.set, next, `cut ${cut}: the whole new set`);
    assert.ok(se.readCounter(CALIBRATION_COUNTER) <= version, `cut ${cut}: counter ahead of the durable set`);
    const audits = after.eventLog().filter((r) => r.type === "CAL_UPDATE" && r.snapshot.to_version === 2);
    assert.equal(audits.length, version === 2 ? 1 : 0, `cut ${cut}: CAL_UPDATE records for version 2`);
    outcomes.add(
      version === 1 ? "old" : audits[0]!.snapshot.recovered === true ? "new, audit recovered" : "new",
    );
    assert.throws(() => after.installCalibration(T0 + 61_000, { ...FACTORY_CALIBRATION, version: 1 }), {
      code: "COUNTER_DECREASE",
    });
  }
  assert.ok(completedAt > 0, "the cut points covered the whole update");
  assert.deepEqual([...outcomes].sort(), ["new", "new, audit recovered", "old"]);
});

test("billing registers cut at every NVM operation of the power-down commit: the last persisted or the new value", () => {
  let completedAt = -1;
  const outcomes = new Set<string>();
  for (let cut = 0; cut < CUT_POINTS_MAX && completedAt < 0; cut++) {
    const { nvm, se, meter } = rig(100 + cut);
    // 20 minutes of load: one periodic persist at 15 min, then more energy until the power-down commit.
    for (let s = 1; s <= 1_200; s++) meter.step(T0 + s * 1000, LOAD);
    const atFail = meter.registers;
    const persistedAt15Min = Meter.open(
      { id: "MTR-PC", secureElement: new MemorySecureElement("X"), nvm: cloneNvm(nvm), layout },
      T0,
    ).registers;
    assert.notDeepEqual(persistedAt15Min, atFail);
    nvm.armPowerCut({ afterOps: cut });
    try {
      meter.powerFail(T0 + 1_200_000);
      completedAt = cut;
    } catch (error) {
      assert.ok(isEvidenceError(error, "POWER_LOST"), `cut ${cut}: ${String(error)}`);
      meter.crashed(T0 + 1_200_000);
    }
    nvm.disarmPowerCut();
    nvm.powerOn();
    const after = Meter.open({ id: "MTR-PC", secureElement: se, nvm, layout }, T0 + 1_260_000).registers;
    assert.ok(
      JSON.stringify(after) === JSON.stringify(atFail) ||
        JSON.stringify(after) === JSON.stringify(persistedAt15Min),
      `cut ${cut}: ${JSON.stringify(after)}`,
    );
    outcomes.add(JSON.stringify(after) === JSON.stringify(atFail) ? "new" : "old");
  }
  assert.deepEqual([...outcomes].sort(), ["new", "old"]);
  assert.ok(completedAt > 0, "the cut points covered the whole commit");
});

function cloneNvm(nvm: MemoryNvm): MemoryNvm {
  const copy = new MemoryNvm(layout.geometry);
  copy.tamper(0, nvm.image());
  return copy;
}
