import assert from "node:assert/strict";
import { test } from "node:test";
import fc from "fast-check";
import {
  TIME_HOLDOVER_MAX_MS,
  TIME_SLEW_PPM_MAX,
  TIME_STEP_THRESHOLD_MS,
  TIME_SYNC_LOSS_AFTER_MS,
  TimeKeeper,
} from "../../src/concentrator/index.ts";

const RUNS = Number(process.env.AMIPROOF_FUZZ_RUNS ?? 300);
const T0 = 1_767_225_600_000;

test("RTC_ONLY at boot → SYNCED on the first sample → HOLDOVER on sync loss → SYNCED again → RTC_ONLY when holdover expires", () => {
  const clock = new TimeKeeper(T0);
  assert.equal(clock.quality(T0), "RTC_ONLY");
  clock.onSample(T0 + 1_000, T0 + 1_000 + 5, "HES");
  assert.equal(clock.quality(T0 + 1_000), "SYNCED");
  assert.equal(clock.quality(T0 + 1_000 + TIME_SYNC_LOSS_AFTER_MS), "SYNCED");
  assert.equal(clock.quality(T0 + 1_001 + TIME_SYNC_LOSS_AFTER_MS), "HOLDOVER");
  clock.onSample(T0 + 2 * TIME_SYNC_LOSS_AFTER_MS, T0 + 2 * TIME_SYNC_LOSS_AFTER_MS, "HES");
  assert.equal(clock.quality(T0 + 2 * TIME_SYNC_LOSS_AFTER_MS), "SYNCED");
  const lostAt = T0 + 3 * TIME_SYNC_LOSS_AFTER_MS;
  assert.equal(clock.quality(lostAt + 1), "HOLDOVER");
  assert.equal(clock.quality(lostAt + TIME_HOLDOVER_MAX_MS + 2), "RTC_ONLY");
  assert.deepEqual(
    clock.transitions.map((t) => `${t.from}>${t.to}:${t.reason}`),
    [
      "RTC_ONLY>SYNCED:SYNC_ACQUIRED",
      "SYNCED>HOLDOVER:SYNC_LOST",
      "HOLDOVER>SYNCED:SYNC_ACQUIRED",
      "SYNCED>HOLDOVER:SYNC_LOST",
      "HOLDOVER>RTC_ONLY:HOLDOVER_EXPIRED",
    ],
  );
  assert.equal(clock.counters.syncLostCount, 2);
  assert.equal(clock.counters.holdoverEnterCount, 2);
  assert.equal(clock.counters.holdoverExpiredCount, 1);
});

test("an offset at or above the threshold is stepped at once, with a STEP time_adjust_event", () => {
  const clock = new TimeKeeper(T0);
  const event = clock.onSample(T0, T0 + 90_000, "HES");
  assert.equal(event?.kind, "STEP");
  assert.equal(event?.offsetMs, 90_000);
  assert.equal(event?.magnitudeBucket, "<1h");
  assert.equal(event?.reason, "SYNC_ACQUIRED");
  assert.equal(clock.nowMs(T0 + 10), T0 + 90_010);
  assert.equal(clock.counters.stepAdjustCount, 1);
  const back = clock.onSample(T0 + 20, T0 + 20 + 90_000 - TIME_STEP_THRESHOLD_MS, "NTP");
  assert.equal(back?.kind, "STEP");
  assert.equal(back?.reason, "SYNC_UPDATE");
});

test("an offset below the threshold is slewed at no more than TIME_SLEW_PPM_MAX, never backwards", () => {
  fc.assert(
    fc.property(
      fc
        .integer({ min: -(TIME_STEP_THRESHOLD_MS - 1), max: TIME_STEP_THRESHOLD_MS - 1 })
        .filter((x) => x !== 0),
      fc.array(fc.integer({ min: 1, max: 600_000 }), { minLength: 1, maxLength: 30 }),
      (offset, steps) => {
        const clock = new TimeKeeper(T0);
        const event = clock.onSample(T0, T0 + offset, "HES");
        assert.equal(event?.kind, "SLEW");
        let rtc = T0;
        let previous = clock.nowMs(rtc);
        for (const step of steps) {
          rtc += step;
          const now = clock.nowMs(rtc);
          assert.ok(now >= previous, "slewed time went backwards");
          const applied = now - rtc;
          const budget = ((rtc - T0) * TIME_SLEW_PPM_MAX) / 1_000_000;
          assert.ok(
            Math.abs(applied) <= Math.min(Math.abs(offset), budget) + 1,
            `applied ${applied}, budget ${budget}`,
          );
          previous = now;
        }
        // Given enough time the whole offset is absorbed.
        const done = rtc + (Math.abs(offset) * 1_000_000) / TIME_SLEW_PPM_MAX + 1_000;
        assert.equal(clock.nowMs(done) - done, offset);
      },
    ),
    { numRuns: RUNS },
  );
});

test("nonsense reference times are refused and counted, not applied", () => {
  const clock = new TimeKeeper(T0);
  assert.equal(clock.onSample(T0, 5, "HES"), null);
  assert.equal(clock.onSample(T0, Number.NaN, "HES"), null);
  assert.equal(clock.counters.badTimeCount, 2);
  assert.equal(clock.quality(T0), "RTC_ONLY");
  assert.equal(clock.nowMs(T0), T0);
});

test("an RTC that runs backwards is counted and never credited to the slew", () => {
  const clock = new TimeKeeper(T0);
  clock.onSample(T0, T0 + 500, "HES");
  clock.nowMs(T0 - 60_000);
  assert.equal(clock.counters.rtcBackwardsCount, 1);
});
