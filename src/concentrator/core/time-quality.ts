import type { TimeQuality } from "../../evidence/index.ts";

// seed 003 H2-8: RTC baseline, network time as an input, holdover continuity; every record carries a
// time_quality, every adjustment is a time_adjust_event, sync loss is visible. "Do not step blindly:
// only perform step adjustments beyond a threshold; otherwise apply gradual correction and log it."

/** An offset at or above this is stepped; below it is slewed. */
export const TIME_STEP_THRESHOLD_MS = 1_000;
/** Slew rate bound: 500 ppm = 0.5 ms of correction per second of RTC time. */
export const TIME_SLEW_PPM_MAX = 500;
/** No sync sample for this long: SYNCED → HOLDOVER (sync_lost). */
export const TIME_SYNC_LOSS_AFTER_MS = 5 * 60_000;
/** Holdover longer than this has spent its drift budget: HOLDOVER → RTC_ONLY. */
export const TIME_HOLDOVER_MAX_MS = 24 * 3_600_000;
/** time_adjust_event / transition log kept in memory (counts stay exact beyond it). */
export const TIME_EVENTS_MAX = 64;
/** Reference times outside 2000-01-01 … 2200-01-01 are refused as BAD_TIME. */
const REFERENCE_MS_MIN = 946_684_800_000;
const REFERENCE_MS_MAX = 7_258_118_400_000;

export type TimeSource = "HES" | "NTP";

export interface TimeAdjustEvent {
  readonly atMs: number;
  readonly kind: "STEP" | "SLEW";
  /** reference − local clock at the sample, ms (positive: the local clock was behind). */
  readonly offsetMs: number;
  readonly magnitudeBucket: string;
  readonly reason: "SYNC_ACQUIRED" | "SYNC_UPDATE";
  readonly source: TimeSource;
}

export interface TimeTransition {
  readonly atMs: number;
  readonly from: TimeQuality;
  readonly to: TimeQuality;
  readonly reason: "SYNC_ACQUIRED" | "SYNC_LOST" | "HOLDOVER_EXPIRED";
}

const MAGNITUDE_BUCKETS: readonly [number, string][] = [
  [10, "<10ms"],
  [100, "<100ms"],
  [1_000, "<1s"],
  [10_000, "<10s"],
  [60_000, "<60s"],
  [3_600_000, "<1h"],
];

export function magnitudeBucket(offsetMs: number): string {
  const size = Math.abs(offsetMs);
  for (const [limit, name] of MAGNITUDE_BUCKETS) if (size < limit) return name;
  return ">=1h";
}

export interface TimeQualityCounters {
  syncAcquiredCount: number;
  syncLostCount: number;
  holdoverEnterCount: number;
  holdoverExpiredCount: number;
  stepAdjustCount: number;
  slewAdjustCount: number;
  badTimeCount: number;
  rtcBackwardsCount: number;
}

/**
 * The concentrator's clock: RTC (the injected clock) plus a correction learnt from time samples.
 * Pure: every method takes the RTC reading; nothing here reads a clock.
 */
export class TimeKeeper {
  private state: TimeQuality = "RTC_ONLY";
  private correctionMs = 0;
  private slewRemainingMs = 0;
  private lastRtcMs: number;
  private lastSyncRtcMs: number | null = null;
  private holdoverSinceRtcMs: number | null = null;
  readonly counters: TimeQualityCounters = {
    syncAcquiredCount: 0,
    syncLostCount: 0,
    holdoverEnterCount: 0,
    holdoverExpiredCount: 0,
    stepAdjustCount: 0,
    slewAdjustCount: 0,
    badTimeCount: 0,
    rtcBackwardsCount: 0,
  };
  readonly adjustEvents: TimeAdjustEvent[] = [];
  readonly transitions: TimeTransition[] = [];

  constructor(rtcMs: number) {
    this.lastRtcMs = rtcMs;
  }

  /** The corrected time at RTC reading `rtcMs`; applies the pending slew and the state timers. */
  nowMs(rtcMs: number): number {
    this.advance(rtcMs);
    // Slew below 1 ms per ms never makes this go backwards; only a logged STEP can.
    return Math.round(rtcMs + this.correctionMs);
  }

  quality(rtcMs: number): TimeQuality {
    this.advance(rtcMs);
    return this.state;
  }

  lastSyncAgeMs(rtcMs: number): number | null {
    return this.lastSyncRtcMs === null ? null : Math.max(0, rtcMs - this.lastSyncRtcMs);
  }

  /** A reference time arrived (head-end time message, NTP): step or slew, and become SYNCED. */
  onSample(rtcMs: number, referenceMs: number, source: TimeSource): TimeAdjustEvent | null {
    if (
      !Number.isSafeInteger(referenceMs) ||
      referenceMs < REFERENCE_MS_MIN ||
      referenceMs > REFERENCE_MS_MAX
    ) {
      this.counters.badTimeCount++;
      return null;
    }
    this.advance(rtcMs);
    const offsetMs = Math.round(referenceMs - (rtcMs + this.correctionMs));
    const reason = this.state === "SYNCED" ? "SYNC_UPDATE" : "SYNC_ACQUIRED";
    let event: TimeAdjustEvent | null = null;
    if (Math.abs(offsetMs) >= TIME_STEP_THRESHOLD_MS) {
      this.correctionMs += offsetMs;
      this.slewRemainingMs = 0;
      this.counters.stepAdjustCount++;
      event = {
        atMs: referenceMs,
        kind: "STEP",
        offsetMs,
        magnitudeBucket: magnitudeBucket(offsetMs),
        reason,
        source,
      };
    } else if (offsetMs !== 0) {
      // The newest measurement supersedes whatever was still being slewed in.
      this.slewRemainingMs = offsetMs;
      this.counters.slewAdjustCount++;
      event = {
        atMs: referenceMs,
        kind: "SLEW",
        offsetMs,
        magnitudeBucket: magnitudeBucket(offsetMs),
        reason,
        source,
      };
    }
    if (event !== null) pushBounded(this.adjustEvents, event);
    if (this.state !== "SYNCED") {
      this.counters.syncAcquiredCount++;
      this.transition(this.state, "SYNCED", "SYNC_ACQUIRED", referenceMs);
    }
    this.lastSyncRtcMs = rtcMs;
    this.holdoverSinceRtcMs = null;
    return event;
  }

  private advance(rtcMs: number): void {
    let elapsed = rtcMs - this.lastRtcMs;
    if (elapsed < 0) {
      // The RTC itself went backwards (host clock stepped under us): counted, no slew credit taken.
      this.counters.rtcBackwardsCount++;
      elapsed = 0;
    }
    this.lastRtcMs = rtcMs;
    if (this.slewRemainingMs !== 0 && elapsed > 0) {
      const budget = (elapsed * TIME_SLEW_PPM_MAX) / 1_000_000;
      const applied = Math.sign(this.slewRemainingMs) * Math.min(Math.abs(this.slewRemainingMs), budget);
      this.correctionMs += applied;
      this.slewRemainingMs -= applied;
      if (Math.abs(this.slewRemainingMs) < 1e-6) this.slewRemainingMs = 0;
    }
    if (
      this.state === "SYNCED" &&
      this.lastSyncRtcMs !== null &&
      rtcMs - this.lastSyncRtcMs > TIME_SYNC_LOSS_AFTER_MS
    ) {
      this.counters.syncLostCount++;
      this.counters.holdoverEnterCount++;
      this.holdoverSinceRtcMs = this.lastSyncRtcMs + TIME_SYNC_LOSS_AFTER_MS;
      this.transition("SYNCED", "HOLDOVER", "SYNC_LOST", this.holdoverSinceRtcMs + this.correctionMs);
    }
    if (
      this.state === "HOLDOVER" &&
      this.holdoverSinceRtcMs !== null &&
      rtcMs - this.holdoverSinceRtcMs > TIME_HOLDOVER_MAX_MS
    ) {
      this.counters.holdoverExpiredCount++;
      this.transition(
        "HOLDOVER",
        "RTC_ONLY",
        "HOLDOVER_EXPIRED",
        this.holdoverSinceRtcMs + TIME_HOLDOVER_MAX_MS + this.correctionMs,
      );
      this.holdoverSinceRtcMs = null;
    }
  }

  private transition(
    from: TimeQuality,
    to: TimeQuality,
    reason: TimeTransition["reason"],
    atMs: number,
  ): void {
    this.state = to;
    pushBounded(this.transitions, { atMs: Math.round(atMs), from, to, reason });
  }
}

function pushBounded<T>(list: T[], item: T): void {
  list.push(item);
  if (list.length > TIME_EVENTS_MAX) list.shift();
}
