import assert from "node:assert/strict";
import { test } from "node:test";
import { NORMAL_INPUTS, type TamperEffect, type TamperInputs, TamperRules } from "../../src/meter/index.ts";

/** Feeds `inputs` every `stepMs` for `durationMs`, collecting effects. */
function hold(
  rules: TamperRules,
  fromMs: number,
  durationMs: number,
  inputs: Partial<TamperInputs>,
  stepMs = 100,
) {
  const effects: TamperEffect[] = [];
  for (let t = fromMs; t <= fromMs + durationMs; t += stepMs)
    effects.push(...rules.evaluate(t, { ...NORMAL_INPUTS, ...inputs }));
  return effects;
}
const types = (effects: TamperEffect[]) => effects.map((e) => e.type);

test("MAG_TAMPER: 49 mT sustained → nothing; 51 mT without PF anomaly → suspicion only; 51 mT + PF anomaly past the gate → confirmed 0x09", () => {
  const below = new TamperRules();
  assert.deepEqual(hold(below, 0, 60_000, { fieldMilliTesla: 49, pfAnomaly: true }), []);
  const uncorrelated = new TamperRules();
  const suspicion = hold(uncorrelated, 0, 60_000, { fieldMilliTesla: 51 });
  assert.deepEqual(types(suspicion), ["MAG_SUSPECT"], "the field alone is the lower evidence level, once");
  assert.equal(suspicion[0]!.level, "MINOR");
  assert.equal(suspicion[0]!.snapshot.error_code, "0x09");
  assert.deepEqual(uncorrelated.active(), [], "a suspicion is no tamper claim");
  assert.equal(uncorrelated.counters.mag_suspect_cnt, 1);
  const shortOnly = new TamperRules();
  assert.deepEqual(
    hold(shortOnly, 0, 1_500, { fieldMilliTesla: 51, pfAnomaly: true }),
    [],
    "inside the 2 s time gate",
  );
  const confirmed = new TamperRules();
  const effects = hold(confirmed, 0, 3_000, { fieldMilliTesla: 51, pfAnomaly: true });
  assert.deepEqual(types(effects), ["MAG_TAMPER"], "confirmed at once: no separate suspicion record");
  assert.equal(effects[0]!.level, "CRITICAL");
  assert.equal(effects[0]!.snapshot.error_code, "0x09");
  assert.equal(effects[0]!.startMs, 0);
});

test("MAG_SUSPECT escalates to MAG_TAMPER when the PF anomaly arrives later; each level clears once", () => {
  const rules = new TamperRules();
  const effects = [
    ...hold(rules, 0, 10_000, { fieldMilliTesla: 70 }),
    ...hold(rules, 10_100, 10_000, { fieldMilliTesla: 70, pfAnomaly: true }),
    ...hold(rules, 20_200, 20_000, { fieldMilliTesla: 45 }), // between off (40) and on (50): still held
    ...hold(rules, 40_300, 10_000, { fieldMilliTesla: 1 }),
  ];
  assert.deepEqual(types(effects), ["MAG_SUSPECT", "MAG_TAMPER", "TAMPER_CLEARED", "TAMPER_CLEARED"]);
  assert.equal(effects[1]!.startMs, 10_100, "the claim starts when the correlation started");
  assert.deepEqual(
    effects.slice(2).map((e) => e.snapshot.tamper),
    ["MAG_SUSPECT", "MAG_TAMPER"],
  );
  assert.deepEqual(rules.active(), []);
  assert.equal(rules.magSuspected, false);
});

test("a repeated state does not grow the log: one record at start, one at clear (hysteresis 50/40 mT)", () => {
  const rules = new TamperRules();
  const effects = [
    ...hold(rules, 0, 30_000, { fieldMilliTesla: 60, pfAnomaly: true }),
    ...hold(rules, 30_100, 30_000, { fieldMilliTesla: 45, pfAnomaly: false }), // above the 40 mT off threshold
    ...hold(rules, 60_200, 10_000, { fieldMilliTesla: 10 }),
  ];
  assert.deepEqual(types(effects), ["MAG_TAMPER", "TAMPER_CLEARED"]);
  assert.deepEqual(rules.active(), []);
});

test("NEUTRAL_MISS above 10 % line/neutral mismatch (0x04), not at 9 %; BYPASS_SUS the other way round", () => {
  const ok = new TamperRules();
  assert.deepEqual(hold(ok, 0, 20_000, { lineCurrentA: 10, neutralCurrentA: 9.1 }), []);
  const miss = new TamperRules();
  const effects = hold(miss, 0, 20_000, { lineCurrentA: 10, neutralCurrentA: 8.5 });
  assert.deepEqual(types(effects), ["NEUTRAL_MISS"]);
  assert.equal(effects[0]!.snapshot.error_code, "0x04");
  const bypass = new TamperRules();
  assert.deepEqual(types(hold(bypass, 0, 20_000, { lineCurrentA: 6, neutralCurrentA: 10 })), ["BYPASS_SUS"]);
  const tiny = new TamperRules();
  assert.deepEqual(
    hold(tiny, 0, 20_000, { lineCurrentA: 0.2, neutralCurrentA: 0.05 }),
    [],
    "below the current floor",
  );
});

test("REV_CURRENT needs sustained reverse flow past its gate, and never fires for a PV prosumer", () => {
  const brief = new TamperRules();
  assert.deepEqual(hold(brief, 0, 5_000, { activePowerW: -500, apparentPowerVa: 520 }), []);
  const sustained = new TamperRules();
  assert.deepEqual(types(hold(sustained, 0, 15_000, { activePowerW: -500, apparentPowerVa: 520 })), [
    "REV_CURRENT",
  ]);
  const prosumer = new TamperRules({ ...new TamperRules().config, exportAllowed: true });
  assert.deepEqual(hold(prosumer, 0, 60_000, { activePowerW: -3000, apparentPowerVa: 3050 }), []);
});

test("COVER_OPEN: a 30 ms bounce is filtered, a 60 ms open is an edge; an interrupt storm raises debounce 50 → 100 ms", () => {
  const rules = new TamperRules();
  rules.coverEdge(1000, true);
  rules.coverEdge(1030, false);
  assert.deepEqual(types(hold(rules, 1000, 200, {}, 10)), []);
  rules.coverEdge(2000, true);
  const opened = hold(rules, 2000, 100, {}, 10);
  assert.deepEqual(types(opened), ["COVER_OPEN"]);
  assert.equal(opened[0]!.startMs, 2000);
  // Holding it open adds nothing; closing records the duration once.
  assert.deepEqual(hold(rules, 2100, 5_000, {}, 100), []);
  rules.coverEdge(8000, false);
  assert.deepEqual(types(hold(rules, 8000, 200, {}, 10)), ["TAMPER_CLEARED"]);

  const storm = new TamperRules();
  for (let i = 0; i < 10; i++) storm.coverEdge(i * 20, i % 2 === 0);
  assert.equal(storm.coverDebounceMs, 100);
  storm.coverEdge(300, true);
  assert.deepEqual(types(hold(storm, 300, 80, {}, 10)), [], "75 ms is under the storm debounce");
  assert.deepEqual(types(hold(storm, 390, 40, {}, 10)), ["COVER_OPEN"]);
  assert.equal(storm.counters.cover_storm_cnt, 1);
});

test("TILT: 300 ms of vibration at 20° → nothing (seismic shock); 600 ms at 20° → TILT; 600 ms at 60° → nothing", () => {
  const shock = new TamperRules();
  assert.deepEqual(hold(shock, 0, 300, { tiltDeg: 20, vibrating: true }, 50), []);
  assert.deepEqual(hold(shock, 350, 2_000, {}, 50), []);
  const pry = new TamperRules();
  assert.deepEqual(types(hold(pry, 0, 600, { tiltDeg: 20, vibrating: true }, 50)), ["TILT"]);
  const outside = new TamperRules();
  assert.deepEqual(hold(outside, 0, 600, { tiltDeg: 60, vibrating: true }, 50), []);
});

test("INJECT_SUS: physically impossible combinations past 1 s, not plausible ones", () => {
  const plausible = new TamperRules();
  assert.deepEqual(hold(plausible, 0, 5_000, { powerFactor: 0.99, thdPercent: 40 }), []);
  const pfAboveOne = new TamperRules();
  assert.deepEqual(types(hold(pfAboveOne, 0, 2_000, { powerFactor: 1.3 })), ["INJECT_SUS"]);
  const pBeyondS = new TamperRules();
  assert.deepEqual(types(hold(pBeyondS, 0, 2_000, { activePowerW: 900, apparentPowerVa: 500 })), [
    "INJECT_SUS",
  ]);
  const cleanButDistorted = new TamperRules();
  assert.deepEqual(types(hold(cleanButDistorted, 0, 2_000, { powerFactor: 0.995, thdPercent: 120 })), [
    "INJECT_SUS",
  ]);
  const brief = new TamperRules();
  assert.deepEqual(hold(brief, 0, 500, { frequencyHz: 80 }), []);
});
