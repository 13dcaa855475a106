import type { TimeQuality } from "../evidence/index.ts";

// The meter's real-time clock (seed 002 H2-5): a crystal that drifts with temperature, a holdover supply
// that keeps it running through outages up to its capacity, and a monotonic floor persisted at every
// power-down so the clock never runs backwards across power cycles, even when the holdover is exhausted.
// Corrections from a time source: small offsets are slewed, large ones stepped, and every step is reported
// (the meter seals a TIME_STEP record with its cause).

/**
 * A sync older than this (meter time) no longer vouches for the clock: SYNCED becomes HOLDOVER (seed 003
 * H2-8 "sync loss must be visible"). A daily sync from the concentrator plus an hour of slack.
 */
export const SYNC_VALID_MS = 25 * 3_600_000;
/** Offsets up to this are slewed, larger ones stepped. */
export const TIME_SLEW_THRESHOLD_MS = 2_000;
/** Slew rate bound: 500 ppm, i.e. 0.5 ms per second. */
export const TIME_SLEW_PPM_MAX = 500;
/** Tuning-fork crystal: about −0.034 ppm/°C² around its 25 °C turnover. */
const CRYSTAL_PPM_PER_C2 = -0.034;
const CRYSTAL_TURNOVER_C = 25;

export interface RtcConfig {
  /** How long the holdover supply keeps the RTC alive without mains. */
  readonly holdoverCapacityMs: number;
  /** Static frequency error of this crystal, ppm. */
  readonly offsetPpm: number;
}

export const DEFAULT_RTC_CONFIG: RtcConfig = { holdoverCapacityMs: 7 * 86_400_000, offsetPpm: 5 };

export type TimeStepCause = "SYNC_STEP" | "SYNC_STEP_BACK" | "HOLDOVER_EXHAUSTED";

export interface TimeStep {
  readonly fromMs: number;
  readonly toMs: number;
  readonly cause: TimeStepCause;
}

export function crystalPpm(config: RtcConfig, temperatureC: number): number {
  const d = temperatureC - CRYSTAL_TURNOVER_C;
  return config.offsetPpm + CRYSTAL_PPM_PER_C2 * d * d;
}

/**
 * State that a meter keeps in NVM for its clock: the last meter time persisted (the monotonic floor) and
 * the time quality. Everything else is recomputed.
 */
export interface RtcAnchor {
  readonly floorMs: number;
  readonly quality: TimeQuality;
}

/** seed 003 H2-8 time evidence: sync_acquired_cnt, sync_lost_cnt, holdover_enter_cnt, step_adjust_cnt. */
export interface RtcCounters {
  sync_acquired_cnt: number;
  sync_lost_cnt: number;
  holdover_enter_cnt: number;
  step_adjust_cnt: number;
}

export class Rtc {
  /** Meter time at the last update, and the true (environment) time it was taken at. */
  private meterMs: number;
  private trueMs: number;
  private slewRemainingMs = 0;
  private qualityValue: TimeQuality;
  private running = true;
  private downSinceTrueMs = 0;
  /** Meter time of the last sync (meaningful while SYNCED). */
  private lastSyncMeterMs = 0;
  readonly counters: RtcCounters = {
    sync_acquired_cnt: 0,
    sync_lost_cnt: 0,
    holdover_enter_cnt: 0,
    step_adjust_cnt: 0,
  };

  constructor(
    readonly config: RtcConfig,
    trueNowMs: number,
    initialMeterMs: number,
    quality: TimeQuality = "RTC_ONLY",
  ) {
    this.meterMs = initialMeterMs;
    this.trueMs = trueNowMs;
    this.qualityValue = quality;
  }

  get quality(): TimeQuality {
    return this.qualityValue;
  }

  /** Meter time at true time `trueNowMs` (advances the model; true time must not go backwards). */
  now(trueNowMs: number, temperatureC = 25): number {
    if (!this.running) return this.meterMs;
    const elapsed = Math.max(0, trueNowMs - this.trueMs);
    let advance = elapsed * (1 + crystalPpm(this.config, temperatureC) / 1e6);
    if (this.slewRemainingMs !== 0) {
      const slewBound = (elapsed * TIME_SLEW_PPM_MAX) / 1e6;
      const slew = Math.max(-slewBound, Math.min(slewBound, this.slewRemainingMs));
      this.slewRemainingMs -= slew;
      advance += slew;
    }
    // Never backwards: a negative slew only slows the clock.
    this.meterMs += Math.max(0, advance);
    this.trueMs = Math.max(this.trueMs, trueNowMs);
    if (this.qualityValue === "SYNCED" && this.meterMs - this.lastSyncMeterMs > SYNC_VALID_MS) {
      this.counters.sync_lost_cnt++;
      this.enterHoldover();
    }
    return Math.floor(this.meterMs);
  }

  /** Mains lost: the RTC runs on its holdover supply. */
  powerDown(trueNowMs: number, temperatureC = 25): number {
    const at = this.now(trueNowMs, temperatureC);
    this.downSinceTrueMs = trueNowMs;
    return at;
  }

  /**
   * Mains back. Within the holdover capacity the RTC kept running (time is HOLDOVER-quality until the
   * next sync); beyond it the RTC stopped when the supply died and restarts from the persisted floor.
   */
  powerUp(trueNowMs: number, floorMs: number, temperatureC = 25): TimeStep | null {
    const outage = trueNowMs - this.downSinceTrueMs;
    if (outage <= this.config.holdoverCapacityMs) {
      this.now(trueNowMs, temperatureC);
      if (this.qualityValue === "SYNCED") this.enterHoldover();
      this.meterMs = Math.max(this.meterMs, floorMs);
      return null;
    }
    // The RTC ran until the holdover supply died, then stopped; it resumes from where it stopped,
    // never below the persisted floor.
    this.now(this.downSinceTrueMs + this.config.holdoverCapacityMs, temperatureC);
    const stoppedAt = Math.max(Math.floor(this.meterMs), floorMs);
    this.meterMs = stoppedAt;
    this.trueMs = trueNowMs;
    this.slewRemainingMs = 0;
    this.qualityValue = "RTC_ONLY";
    return { fromMs: stoppedAt, toMs: stoppedAt, cause: "HOLDOVER_EXHAUSTED" };
  }

  /** A time source says the true time is `sourceMs`: slew small offsets, step large ones (reported). */
  sync(trueNowMs: number, sourceMs: number, temperatureC = 25): TimeStep | null {
    const current = this.now(trueNowMs, temperatureC);
    const offset = sourceMs - current;
    if (this.qualityValue !== "SYNCED") this.counters.sync_acquired_cnt++;
    this.qualityValue = "SYNCED";
    if (Math.abs(offset) <= TIME_SLEW_THRESHOLD_MS) {
      this.slewRemainingMs = offset;
      this.lastSyncMeterMs = current;
      return null;
    }
    this.slewRemainingMs = 0;
    this.meterMs = sourceMs;
    this.lastSyncMeterMs = sourceMs;
    this.counters.step_adjust_cnt++;
    return { fromMs: current, toMs: sourceMs, cause: offset > 0 ? "SYNC_STEP" : "SYNC_STEP_BACK" };
  }

  /** Sync lost for good (e.g. the concentrator says its own source is gone). */
  markUnsynced(): void {
    if (this.qualityValue === "SYNCED") {
      this.counters.sync_lost_cnt++;
      this.enterHoldover();
    }
  }

  /** Meter time elapsed since the last sync; null when the clock is not SYNCED. */
  lastSyncAgeMs(): number | null {
    return this.qualityValue === "SYNCED" ? Math.floor(this.meterMs - this.lastSyncMeterMs) : null;
  }

  private enterHoldover(): void {
    this.qualityValue = "HOLDOVER";
    this.counters.holdover_enter_cnt++;
  }
}
