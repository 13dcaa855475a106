import { loopScenario } from "../loop/scenario.ts";
import { predicate } from "../scenario.ts";

// seed 003 H2-8 and H2-11 "Time — drift, sync loss, holdover": the concentrator's RTC drifts, the
// network time source is removed for a while and restored, and an upstream time server is wrong by tens
// of seconds for a few minutes before it is corrected. Require: time_quality transitions
// (SYNCED → HOLDOVER → SYNCED) logged with their reasons, holdover readings labelled HOLDOVER, every step
// of the concentrator's time a logged step_adjust_event with its cause, no silent step.

const START_MS = Date.UTC(2026, 8, 1, 0);
const MINUTE = 60_000;

export const timeSyncLoss = loopScenario({
  name: "time-sync-loss",
  description: "RTC drift, time source removed then restored, a wrong upstream step; every step has a cause",
  source: "seed 003 H2-8 and H2-11 Time; H2-9 time is broken",
  defaultMeters: 6,
  safeguards: [],
  startMs: START_MS,
  durationMs: 90 * MINUTE,
  options: (ctx) => ({
    rtcDriftPpm: ctx.rng.fork("drift").intBetween(-120, 120),
    timeSyncPeriodMs: 60_000,
    config: { batchAgeMaxMs: 20_000 },
  }),
  faults(world, ctx) {
    const rng = ctx.rng.fork("time");
    const lossAt = START_MS + rng.intBetween(10, 25) * MINUTE;
    world.sim.at(lossAt, () => {
      world.timeSourceUp = false;
    });
    world.sim.at(lossAt + rng.intBetween(15, 35) * MINUTE, () => {
      world.timeSourceUp = true;
    });
    const wrongAt = START_MS + rng.intBetween(65, 75) * MINUTE;
    const errorMs = rng.pick([-1, 1]) * rng.intBetween(5_000, 60_000);
    world.sim.at(wrongAt, () => {
      world.timeSourceErrorMs = errorMs;
    });
    world.sim.at(wrongAt + rng.intBetween(2, 6) * MINUTE, () => {
      world.timeSourceErrorMs = 0;
    });
  },
  extra(world, view) {
    const transitions = world.dcu.time.transitions;
    const path = transitions.map((t) => `${t.from}→${t.to}(${t.reason})`);
    const lost = transitions.findIndex(
      (t) => t.from === "SYNCED" && t.to === "HOLDOVER" && t.reason === "SYNC_LOST",
    );
    const back = transitions.findIndex((t, i) => i > lost && t.from === "HOLDOVER" && t.to === "SYNCED");
    let holdoverReadings = 0;
    for (const rows of view.byMeter.values())
      holdoverReadings += rows.filter((r) => r.timeQuality === "HOLDOVER").length;
    const steps = world.dcu.time.adjustEvents.filter((e) => e.kind === "STEP");
    return [
      predicate(
        "time_quality_transitions_logged",
        lost >= 0 && back > lost,
        `transitions ${path.join(", ") || "none"}`,
      ),
      predicate(
        "holdover_labelled",
        holdoverReadings > 0,
        `${holdoverReadings} readings committed during holdover carry HOLDOVER`,
      ),
      predicate(
        "wrong_upstream_step_logged",
        steps.length >= 2,
        `${steps.length} STEP events: ${steps.map((s) => `${s.offsetMs} ms (${s.reason}, ${s.source})`).join("; ")}`,
      ),
    ];
  },
  figures(world) {
    const t = world.dcu.time.counters;
    return {
      step_adjust_cnt: t.stepAdjustCount,
      slew_adjust_cnt: t.slewAdjustCount,
      sync_lost_cnt: t.syncLostCount,
    };
  },
});
