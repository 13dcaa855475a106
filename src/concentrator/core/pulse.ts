import type { ReadingValue } from "../../evidence/index.ts";
import { ConcentratorError } from "../errors.ts";
import type { Clock, MeterReader, MeterReading } from "./ports.ts";

// Pulse / DI inputs of seed 003 H2-3: "Set debounce using measured glitch width statistics (not guesswork)",
// "Use atomic snapshots for counters; log overflow and reset events with timestamps", evidence counters
// debounce_reject_cnt and glitch_cnt. The input is a stream of edge timestamps in µs from a monotonic
// timer (the lab or a GPIO capture shell generates them); nothing here reads a clock of its own.
//
// Model, in three parts:
//  1. PulseInput: the debounce filter. A level counts only after it held for `windowUs`; a shorter
//     excursion from the debounced level is rejected (debounce_reject_cnt). Rejected excursions that end
//     with the old level holding again were glitches (glitch_cnt); those that end in an accepted
//     transition were contact bounce (bounce_cnt). A pulse is an accepted low → high transition.
//  2. HardwarePulseCounter + CounterExtender: the filtered pulses drive a fixed-width hardware register
//     (16 bits by default) that wraps; software reads it and extends it to a total. A wrap between two
//     reads is unwrapped by modular subtraction; more than one wrap is impossible when the longest
//     possible pulse count in the read interval is below 2^bits, and is flagged otherwise.
//  3. Snapshots: count and capture time taken in one step from one state, seq-numbered, converted into
//     reading values through the meter's pulse constant (imp/kWh or imp/m³).
//
// Adaptive debounce rule:
//  - Every excursion shorter than the meter's specified minimum pulse width (or minimum pause, for low
//    excursions) is by specification not a real pulse: its width goes into a glitch-width histogram
//    (quarter-octave buckets), whether the current window rejected it or not. So the histogram sees the
//    whole sub-spec population even when the window is too small.
//  - Every DEBOUNCE_ADAPT_EVERY_SAMPLES samples, the target window is the upper bound of the widest
//    non-empty bucket × DEBOUNCE_MARGIN ("above the glitch population"), clamped to
//    [windowMinUs, ceiling], ceiling = min(pulseWidthMin, pauseMin) / 2 so a pulse within the meter's
//    specification is never rejected ("missed counts when debounce is too aggressive").
//  - Fast attack, slow release: the window rises to the target at once, falls by at most
//    DEBOUNCE_RELEASE per adaptation. When the target exceeds the ceiling, the glitch population
//    overlaps real pulses: the window stays at the ceiling and debounce_saturated_cnt counts it (the seed's
//    answer is electrical — bonding, shield, return path — not a longer window).
//  - The histogram halves every bucket when it holds WIDTH_HISTOGRAM_SAMPLES_MAX samples: bounded memory
//    and old storms fade (a single old outlier disappears after one halving).

/** IEC 62053-31 (S0 pulse output): a pulse lasts at least 30 ms. The same minimum pause is assumed. */
export const S0_PULSE_WIDTH_MIN_US = 30_000;
export const S0_PAUSE_MIN_US = 30_000;
/** Narrowest debounce window the adaptive rule may choose (below it the input RC filter already acts). */
export const DEBOUNCE_WINDOW_MIN_US_DEFAULT = 500;
/** Glitch-width samples between two adaptations of the window. */
export const DEBOUNCE_ADAPT_EVERY_SAMPLES = 32;
/** Target window = widest glitch bucket's upper bound × 5/4. */
export const DEBOUNCE_MARGIN_NUM = 5;
export const DEBOUNCE_MARGIN_DEN = 4;
/** The window falls by at most 3/4 per adaptation (it rises to the target at once). */
export const DEBOUNCE_RELEASE_NUM = 3;
export const DEBOUNCE_RELEASE_DEN = 4;
/** Quarter-octave buckets over 1 µs … 2^32 µs. */
export const WIDTH_HISTOGRAM_SUBBUCKETS = 4;
export const WIDTH_HISTOGRAM_BUCKETS = 32 * WIDTH_HISTOGRAM_SUBBUCKETS;
/** A width histogram halves all its buckets when it holds this many samples. */
export const WIDTH_HISTOGRAM_SAMPLES_MAX = 4096;
/** Overflow / reset / jump events kept verbatim per input (the counts beside them stay exact). */
export const PULSE_EVENT_LOG_MAX = 64;
export const PULSE_COUNTER_BITS_DEFAULT = 16;
/** Extended totals stay exact below 2^53; registers wider than 32 bits are not modelled. */
export const PULSE_COUNTER_BITS_MAX = 32;
/** Decimal digits a pulse-constant conversion may add to keep the value exact (scaler down to -9). */
export const PULSE_SCALER_DIGITS_MAX = 9;

// IEC 62056-6-2 unit enumeration.
export const DLMS_UNIT_WH = 30;
export const DLMS_UNIT_M3 = 13;

export type Level = 0 | 1;

function checkMicros(value: number, what: string): void {
  if (!Number.isSafeInteger(value) || value < 0) {
    throw new ConcentratorError("BAD_READING", `${what} must be a non-negative integer µs, got ${value}`);
  }
}

function checkPositiveInteger(value: number, what: string): void {
  if (!Number.isSafeInteger(value) || value < 1) {
    throw new ConcentratorError("BAD_CONFIG", `${what} must be a positive integer, got ${value}`);
  }
}

// ───────────────────────────── width histogram ─────────────────────────────

function bucketOf(widthUs: number): number {
  const w = Math.min(Math.max(1, Math.floor(widthUs)), 0xffff_ffff);
  const octave = 31 - Math.clz32(w);
  const sub = Math.floor(((w - 2 ** octave) * WIDTH_HISTOGRAM_SUBBUCKETS) / 2 ** octave);
  return octave * WIDTH_HISTOGRAM_SUBBUCKETS + sub;
}

/** Exclusive upper bound (µs) of a bucket: every width in it is below this. */
function bucketUpperUs(index: number): number {
  const octave = Math.floor(index / WIDTH_HISTOGRAM_SUBBUCKETS);
  const sub = index % WIDTH_HISTOGRAM_SUBBUCKETS;
  return Math.ceil((2 ** octave * (WIDTH_HISTOGRAM_SUBBUCKETS + sub + 1)) / WIDTH_HISTOGRAM_SUBBUCKETS);
}

function bucketLowerUs(index: number): number {
  const octave = Math.floor(index / WIDTH_HISTOGRAM_SUBBUCKETS);
  const sub = index % WIDTH_HISTOGRAM_SUBBUCKETS;
  return Math.ceil((2 ** octave * (WIDTH_HISTOGRAM_SUBBUCKETS + sub)) / WIDTH_HISTOGRAM_SUBBUCKETS);
}

/** Pulse or glitch widths in quarter-octave buckets: fixed memory, integer-exact bucket bounds. */
export class WidthHistogram {
  private readonly buckets = new Uint32Array(WIDTH_HISTOGRAM_BUCKETS);
  /** Samples currently held (after halvings). */
  held = 0;
  /** Samples ever added. */
  added = 0;

  add(widthUs: number): void {
    const index = bucketOf(widthUs);
    this.buckets[index] = (this.buckets[index] as number) + 1;
    this.held++;
    this.added++;
    if (this.held >= WIDTH_HISTOGRAM_SAMPLES_MAX) {
      this.held = 0;
      for (let i = 0; i < this.buckets.length; i++) {
        const halved = (this.buckets[i] as number) >>> 1;
        this.buckets[i] = halved;
        this.held += halved;
      }
    }
  }

  /** Exclusive upper bound of the widest non-empty bucket, null when empty. */
  maxUpperUs(): number | null {
    for (let i = this.buckets.length - 1; i >= 0; i--)
      if ((this.buckets[i] as number) > 0) return bucketUpperUs(i);
    return null;
  }

  /** Lower bound of the narrowest non-empty bucket, null when empty. */
  minLowerUs(): number | null {
    for (let i = 0; i < this.buckets.length; i++)
      if ((this.buckets[i] as number) > 0) return bucketLowerUs(i);
    return null;
  }

  /** Non-empty buckets as [lower µs, upper µs, count], for the evidence pack (TP_PULSE_IN histogram). */
  toJSON(): [number, number, number][] {
    const out: [number, number, number][] = [];
    this.buckets.forEach((count, i) => {
      if (count > 0) out.push([bucketLowerUs(i), bucketUpperUs(i), count]);
    });
    return out;
  }
}

// ───────────────────────────── hardware counter ─────────────────────────────

/** A fixed-width hardware pulse register: counts modulo 2^bits, reads back the register only. */
export class HardwarePulseCounter {
  readonly bits: number;
  readonly modulus: number;
  private value = 0;

  constructor(bits = PULSE_COUNTER_BITS_DEFAULT) {
    if (!Number.isInteger(bits) || bits < 2 || bits > PULSE_COUNTER_BITS_MAX) {
      throw new ConcentratorError(
        "BAD_CONFIG",
        `counter width must be 2..${PULSE_COUNTER_BITS_MAX} bits, got ${bits}`,
      );
    }
    this.bits = bits;
    this.modulus = 2 ** bits;
  }

  increment(n = 1): void {
    this.value = (this.value + n) % this.modulus;
  }

  read(): number {
    return this.value;
  }

  /** Power-on / reset: the register restarts at 0. */
  reset(): void {
    this.value = 0;
  }
}

export type CounterReadStatus =
  | "ok"
  | "overflow_ambiguous" // two or more wraps fit in the interval: the smallest delta was kept
  | "rate_exceeded" // more pulses than the rate bound allows (phantom pulses or a wrong specification)
  | "counter_reset" // the register restarted from 0 (inferred, or notified by the shell)
  | "counter_jump"; // a value no wrap or restart explains: refused

export interface CounterEvent {
  readonly kind: "overflow" | CounterReadStatus;
  readonly atUs: number;
  readonly raw: number;
  readonly previousRaw: number;
}

export interface CounterReadResult {
  /** Pulses attributed to this read interval. */
  readonly delta: number;
  readonly total: number;
  /** The register wrapped once between the two reads (and that was unwrapped). */
  readonly wrapped: boolean;
  readonly status: CounterReadStatus;
}

/**
 * Extends a wrapping register into a total. `pulsePeriodMinUs` is the shortest time between two pulses
 * (the meter's maximum pulse rate), so a read interval of Δt holds at most floor(Δt / period) + 1 pulses:
 * below 2^bits only one unwrap is possible; at or above it the read is flagged overflow_ambiguous (read
 * more often: readIntervalMaxUs()). A delta above the bound is, with `inferResets`, a register restart
 * when the raw value itself fits the bound (the pulses since 0), else a jump that is refused; without it
 * (resets are notified explicitly) the delta is kept and flagged rate_exceeded.
 */
export class CounterExtender {
  readonly modulus: number;
  readonly pulsePeriodMinUs: number;
  total = 0;
  overflowCount = 0;
  overflowAmbiguousCount = 0;
  counterResetCount = 0;
  counterJumpCount = 0;
  rateExceededCount = 0;
  readonly inferResets: boolean;
  readonly events: CounterEvent[] = [];
  private lastRaw: number;
  private lastReadUs: number | null;

  constructor(
    bits: number,
    pulsePeriodMinUs: number,
    options: { initialRaw?: number; startUs?: number; inferResets?: boolean } = {},
  ) {
    if (!Number.isInteger(bits) || bits < 2 || bits > PULSE_COUNTER_BITS_MAX) {
      throw new ConcentratorError(
        "BAD_CONFIG",
        `counter width must be 2..${PULSE_COUNTER_BITS_MAX} bits, got ${bits}`,
      );
    }
    checkPositiveInteger(pulsePeriodMinUs, "minimum pulse period (µs)");
    this.modulus = 2 ** bits;
    this.pulsePeriodMinUs = pulsePeriodMinUs;
    this.lastRaw = options.initialRaw ?? 0;
    this.lastReadUs = options.startUs ?? null;
    this.inferResets = options.inferResets ?? true;
  }

  /** Most pulses that fit in `elapsedUs`: one at the start, then one per minimum period. */
  maxPulsesIn(elapsedUs: number): number {
    return Math.floor(elapsedUs / this.pulsePeriodMinUs) + 1;
  }

  /** The longest read interval whose unwrap is unique: fewer than 2^bits pulses can fit in it. */
  readIntervalMaxUs(): number {
    return (this.modulus - 1) * this.pulsePeriodMinUs - 1;
  }

  /** The register restarted at 0 (the shell saw a reset_reason); the next read counts from 0. */
  notifyReset(atUs: number): void {
    this.counterResetCount++;
    this.log({ kind: "counter_reset", atUs, raw: 0, previousRaw: this.lastRaw });
    this.lastRaw = 0;
  }

  read(raw: number, nowUs: number): CounterReadResult {
    if (!Number.isInteger(raw) || raw < 0 || raw >= this.modulus) {
      throw new ConcentratorError("BAD_READING", `counter register ${raw} outside 0..${this.modulus - 1}`);
    }
    checkMicros(nowUs, "read time");
    if (this.lastReadUs !== null && nowUs < this.lastReadUs) {
      throw new ConcentratorError(
        "BAD_READING",
        `counter read at ${nowUs} µs before the previous read at ${this.lastReadUs} µs`,
      );
    }
    // Without a previous read time nothing bounds the interval: the first read is taken as at most one wrap.
    const maxPulses = this.lastReadUs === null ? this.modulus - 1 : this.maxPulsesIn(nowUs - this.lastReadUs);
    const previousRaw = this.lastRaw;
    let delta = (raw - previousRaw + this.modulus) % this.modulus;
    let wrapped = raw < previousRaw;
    let status: CounterReadStatus = "ok";
    if (maxPulses >= this.modulus) {
      // Two or more wraps fit in this interval: delta + k·2^bits are all possible. Keep the smallest, flag it.
      status = "overflow_ambiguous";
      this.overflowAmbiguousCount++;
      this.log({ kind: status, atUs: nowUs, raw, previousRaw });
    } else if (delta > maxPulses && !this.inferResets) {
      status = "rate_exceeded";
      this.rateExceededCount++;
      this.log({ kind: status, atUs: nowUs, raw, previousRaw });
    } else if (delta > maxPulses) {
      if (raw <= maxPulses) {
        // More pulses than the rate allows, but the register value itself fits: it restarted from 0.
        status = "counter_reset";
        this.counterResetCount++;
        delta = raw;
        wrapped = false;
      } else {
        // Neither a wrap nor a restart explains the value: refuse it rather than invent pulses.
        status = "counter_jump";
        this.counterJumpCount++;
        delta = 0;
        wrapped = false;
      }
      this.log({ kind: status, atUs: nowUs, raw, previousRaw });
    }
    if (wrapped) {
      this.overflowCount++;
      this.log({ kind: "overflow", atUs: nowUs, raw, previousRaw });
    }
    this.total += delta;
    this.lastRaw = raw;
    this.lastReadUs = nowUs;
    return { delta, total: this.total, wrapped, status };
  }

  private log(event: CounterEvent): void {
    this.events.push(event);
    if (this.events.length > PULSE_EVENT_LOG_MAX) this.events.shift();
  }
}

// ───────────────────────────── debounce filter + snapshots ─────────────────────────────

export interface PulseInputConfig {
  /** The meter's minimum pulse (high) width; default S0's 30 ms. */
  readonly pulseWidthMinUs?: number;
  /** The meter's minimum pause (low) between pulses; default 30 ms. */
  readonly pauseMinUs?: number;
  readonly windowMinUs?: number;
  /** Window before the first adaptation; default the ceiling (reject everything sub-spec). */
  readonly windowInitialUs?: number;
  /** false: a fixed window (windowInitialUs), statistics still collected. */
  readonly adaptive?: boolean;
  readonly counterBits?: number;
  /** Shortest time between two pulses the meter may produce; default pulseWidthMin + pauseMin. */
  readonly pulsePeriodMinUs?: number;
  /** Debounced level at start. */
  readonly initialLevel?: Level;
}

export type SnapshotFlag = "overflow" | Exclude<CounterReadStatus, "ok">;

/** Count and time taken together from one state (seed 003 H2-3 "atomic snapshots"). */
export interface PulseSnapshot {
  /** 1, 2, 3… per input: a missing seq is a lost snapshot. */
  readonly seq: number;
  readonly captureUs: number;
  /** Pulses confirmed (debounce window elapsed) at or before captureUs, extended from the register. */
  readonly count: number;
  /** Rising-edge time of the newest counted pulse. */
  readonly lastPulseUs: number | null;
  readonly windowUs: number;
  readonly flags: readonly SnapshotFlag[];
}

export interface PulseInputEvidence {
  pulses: number;
  debounce_reject_cnt: number;
  glitch_cnt: number;
  bounce_cnt: number;
  short_pulse_cnt: number;
  debounce_saturated_cnt: number;
  edge_order_err_cnt: number;
  overflow_cnt: number;
  overflow_ambiguous_cnt: number;
  counter_reset_cnt: number;
  counter_jump_cnt: number;
  rate_exceeded_cnt: number;
  window_us: number;
  window_changes: number;
  glitch_width_histogram: [number, number, number][];
  pulse_width_histogram: [number, number, number][];
  overflow_log: { kind: string; at_us: number; raw: number; previous_raw: number }[];
  snapshot_seq: number;
}

/**
 * One pulse / DI input: edges in, debounced pulses into a fixed-width hardware register, snapshots out.
 * Edges must come in time order; an edge older than the previous edge or snapshot is refused and
 * counted (edge_order_err_cnt), never reordered.
 */
export class PulseInput {
  readonly pulseWidthMinUs: number;
  readonly pauseMinUs: number;
  readonly windowMinUs: number;
  readonly windowCeilingUs: number;
  readonly adaptive: boolean;
  readonly register: HardwarePulseCounter;
  readonly extender: CounterExtender;
  readonly glitchWidths = new WidthHistogram();
  readonly pulseWidths = new WidthHistogram();
  private window: number;
  private stableLevel: Level;
  private rawLevel: Level;
  private rawSinceUs = 0;
  private lastEdgeUs = 0;
  private lastCaptureUs = 0;
  private lastRiseUs: number | null = null;
  private lastFallUs: number | null = null;
  private lastPulseUs: number | null = null;
  /** Rejected excursions since the debounced level last held for a window: glitch or bounce, not yet known. */
  private pendingExcursions = 0;
  private samplesSinceAdapt = 0;
  private seq = 0;
  // evidence
  pulses = 0;
  debounceRejectCount = 0;
  glitchCount = 0;
  bounceCount = 0;
  shortPulseCount = 0;
  debounceSaturatedCount = 0;
  edgeOrderErrorCount = 0;
  windowChanges = 0;

  constructor(config: PulseInputConfig = {}) {
    this.pulseWidthMinUs = config.pulseWidthMinUs ?? S0_PULSE_WIDTH_MIN_US;
    this.pauseMinUs = config.pauseMinUs ?? S0_PAUSE_MIN_US;
    checkPositiveInteger(this.pulseWidthMinUs, "minimum pulse width (µs)");
    checkPositiveInteger(this.pauseMinUs, "minimum pause (µs)");
    this.windowCeilingUs = Math.floor(Math.min(this.pulseWidthMinUs, this.pauseMinUs) / 2);
    this.windowMinUs = config.windowMinUs ?? Math.min(DEBOUNCE_WINDOW_MIN_US_DEFAULT, this.windowCeilingUs);
    checkPositiveInteger(this.windowMinUs, "minimum debounce window (µs)");
    if (this.windowMinUs > this.windowCeilingUs) {
      throw new ConcentratorError(
        "BAD_CONFIG",
        `minimum debounce window ${this.windowMinUs} µs above the ceiling ${this.windowCeilingUs} µs (half the shortest pulse or pause)`,
      );
    }
    this.window = config.windowInitialUs ?? this.windowCeilingUs;
    if (
      !Number.isSafeInteger(this.window) ||
      this.window < this.windowMinUs ||
      this.window > this.windowCeilingUs
    ) {
      throw new ConcentratorError(
        "BAD_CONFIG",
        `initial debounce window must be ${this.windowMinUs}..${this.windowCeilingUs} µs, got ${this.window}`,
      );
    }
    this.adaptive = config.adaptive ?? true;
    this.stableLevel = config.initialLevel ?? 0;
    this.rawLevel = this.stableLevel;
    this.register = new HardwarePulseCounter(config.counterBits ?? PULSE_COUNTER_BITS_DEFAULT);
    // The meter's maximum pulse rate bounds the pulses between two snapshots (the overflow check); resets
    // of this register are notified by resetRegister(), so a delta above the bound is phantom pulses
    // (rate_exceeded), never guessed to be a restart.
    this.extender = new CounterExtender(
      this.register.bits,
      config.pulsePeriodMinUs ?? this.pulseWidthMinUs + this.pauseMinUs,
      { initialRaw: 0, startUs: 0, inferResets: false },
    );
  }

  get windowUs(): number {
    return this.window;
  }

  get snapshotSeq(): number {
    return this.seq;
  }

  get level(): Level {
    return this.stableLevel;
  }

  /** One raw edge: the input is at `level` from `tUs` on. Repeated levels are ignored. */
  edge(tUs: number, level: Level): void {
    checkMicros(tUs, "edge time");
    if (tUs < this.lastEdgeUs || tUs < this.lastCaptureUs) {
      this.edgeOrderErrorCount++;
      return;
    }
    this.lastEdgeUs = tUs;
    if (level === this.rawLevel) return;
    this.advance(tUs);
    const widthUs = tUs - this.rawSinceUs;
    if (this.rawLevel !== this.stableLevel) {
      // The segment ended before the window elapsed (advance() would have accepted it otherwise).
      this.debounceRejectCount++;
      this.pendingExcursions++;
      this.sampleGlitch(widthUs);
    }
    this.rawLevel = level;
    this.rawSinceUs = tUs;
  }

  /** Applies what the passage of time to `nowUs` decides: acceptance of a held level, glitch verdicts. */
  private advance(nowUs: number): void {
    if (nowUs - this.rawSinceUs < this.window) return;
    if (this.rawLevel !== this.stableLevel) {
      this.stableLevel = this.rawLevel;
      // Rejected excursions that ended in a real transition were contact bounce around that edge.
      this.bounceCount += this.pendingExcursions;
      this.pendingExcursions = 0;
      const atUs = this.rawSinceUs;
      if (this.rawLevel === 1) {
        this.pulses++;
        this.register.increment();
        if (this.lastFallUs !== null && atUs - this.lastFallUs < this.pauseMinUs) {
          // A pause shorter than the meter can produce: a dropout that split one pulse in two.
          this.sampleGlitch(atUs - this.lastFallUs);
        }
        this.lastRiseUs = atUs;
        this.lastPulseUs = atUs;
      } else {
        if (this.lastRiseUs !== null) {
          const widthUs = atUs - this.lastRiseUs;
          this.pulseWidths.add(widthUs);
          if (widthUs < this.pulseWidthMinUs) {
            // Counted, but narrower than the meter can produce: a phantom that got through the window.
            this.shortPulseCount++;
            this.sampleGlitch(widthUs);
          }
        }
        this.lastFallUs = atUs;
      }
    } else if (this.pendingExcursions > 0) {
      // The debounced level held again for a whole window: the excursions were glitches (EMI, crosstalk).
      this.glitchCount += this.pendingExcursions;
      this.pendingExcursions = 0;
    }
  }

  private sampleGlitch(widthUs: number): void {
    this.glitchWidths.add(widthUs);
    this.samplesSinceAdapt++;
    if (this.adaptive && this.samplesSinceAdapt >= DEBOUNCE_ADAPT_EVERY_SAMPLES) {
      this.samplesSinceAdapt = 0;
      this.adapt();
    }
  }

  private adapt(): void {
    const widest = this.glitchWidths.maxUpperUs();
    if (widest === null) return;
    let target = Math.ceil((widest * DEBOUNCE_MARGIN_NUM) / DEBOUNCE_MARGIN_DEN);
    if (target > this.windowCeilingUs) {
      this.debounceSaturatedCount++;
      target = this.windowCeilingUs;
    }
    target = Math.max(target, this.windowMinUs);
    let next = target;
    if (target < this.window) {
      next = Math.max(target, Math.floor((this.window * DEBOUNCE_RELEASE_NUM) / DEBOUNCE_RELEASE_DEN));
    }
    if (next !== this.window) {
      this.window = next;
      this.windowChanges++;
    }
  }

  /**
   * The atomic snapshot: decides everything time has decided up to `captureUs`, reads the register once
   * and returns count, time and seq together. Later edges may not be older than captureUs.
   */
  snapshot(captureUs: number): PulseSnapshot {
    checkMicros(captureUs, "capture time");
    if (captureUs < this.lastEdgeUs || captureUs < this.lastCaptureUs) {
      throw new ConcentratorError(
        "BAD_READING",
        `snapshot at ${captureUs} µs is older than the last edge (${this.lastEdgeUs} µs) or snapshot (${this.lastCaptureUs} µs)`,
      );
    }
    this.advance(captureUs);
    this.lastCaptureUs = captureUs;
    const read = this.extender.read(this.register.read(), captureUs);
    const flags: SnapshotFlag[] = [];
    if (read.wrapped) flags.push("overflow");
    if (read.status !== "ok") flags.push(read.status);
    this.seq++;
    return {
      seq: this.seq,
      captureUs,
      count: read.total,
      lastPulseUs: this.lastPulseUs,
      windowUs: this.window,
      flags,
    };
  }

  /** The register restarted (power cycle of the input hardware) at `atUs`; logged with its time. */
  resetRegister(atUs: number): void {
    this.register.reset();
    this.extender.notifyReset(atUs);
  }

  evidence(): PulseInputEvidence {
    return {
      pulses: this.pulses,
      debounce_reject_cnt: this.debounceRejectCount,
      glitch_cnt: this.glitchCount,
      bounce_cnt: this.bounceCount,
      short_pulse_cnt: this.shortPulseCount,
      debounce_saturated_cnt: this.debounceSaturatedCount,
      edge_order_err_cnt: this.edgeOrderErrorCount,
      overflow_cnt: this.extender.overflowCount,
      overflow_ambiguous_cnt: this.extender.overflowAmbiguousCount,
      counter_reset_cnt: this.extender.counterResetCount,
      counter_jump_cnt: this.extender.counterJumpCount,
      rate_exceeded_cnt: this.extender.rateExceededCount,
      window_us: this.window,
      window_changes: this.windowChanges,
      glitch_width_histogram: this.glitchWidths.toJSON(),
      pulse_width_histogram: this.pulseWidths.toJSON(),
      overflow_log: this.extender.events.map((e) => ({
        kind: e.kind,
        at_us: e.atUs,
        raw: e.raw,
        previous_raw: e.previousRaw,
      })),
      snapshot_seq: this.seq,
    };
  }
}

/**
 * Snapshots of several inputs at one capture time (seed 003 H2-3: "Multi-channel pulses cannot be
 * reconciled because timing alignment is missing"): every count in the result covers the same instant.
 */
export function snapshotAligned(inputs: readonly PulseInput[], captureUs: number): PulseSnapshot[] {
  return inputs.map((input) => input.snapshot(captureUs));
}

// ───────────────────────────── pulse constant → reading value ─────────────────────────────

/** The meter's pulse constant as printed on it. */
export type PulseConstant =
  | { readonly kind: "energy"; readonly impPerKwh: number }
  | { readonly kind: "volume"; readonly impPerM3: number };

export interface PulseValue {
  readonly value: ReadingValue;
  /** false when the constant has no exact decimal expansion within PULSE_SCALER_DIGITS_MAX digits (rounded). */
  readonly exact: boolean;
}

/**
 * count / constant as an integer with a decimal scaler (IEC 62056-6-2 scaler_unit): energy in Wh (unit 30),
 * volume in m³ (unit 13). The smallest scaler that keeps the value exact is chosen: 800 imp/kWh gives
 * 1.25 Wh per pulse → value = count × 125, scaler −2.
 */
export function pulseReadingValue(
  count: number,
  constant: PulseConstant,
  obis: ReadingValue["obis"],
): PulseValue {
  if (!Number.isSafeInteger(count) || count < 0) {
    throw new ConcentratorError(
      "BAD_READING",
      `pulse count must be a non-negative safe integer, got ${count}`,
    );
  }
  // quantity per pulse = numerator / impulses, in the reading's unit.
  const [impulses, numerator, unit] =
    constant.kind === "energy"
      ? [constant.impPerKwh, 1000n, DLMS_UNIT_WH] // 1 kWh = 1000 Wh
      : [constant.impPerM3, 1n, DLMS_UNIT_M3];
  checkPositiveInteger(impulses, "pulse constant");
  const imp = BigInt(impulses);
  let digits = 0;
  while (digits < PULSE_SCALER_DIGITS_MAX && (numerator * 10n ** BigInt(digits)) % imp !== 0n) digits++;
  const scaled = numerator * 10n ** BigInt(digits);
  const exact = scaled % imp === 0n;
  const total = BigInt(count) * scaled;
  const value = exact ? total / imp : (total * 2n + imp) / (2n * imp); // round half up
  if (value > BigInt(Number.MAX_SAFE_INTEGER)) {
    throw new ConcentratorError("BAD_READING", `pulse value ${value} exceeds a safe integer`);
  }
  return { value: { obis, value: Number(value), scaler: digits === 0 ? 0 : -digits, unit }, exact };
}

// ───────────────────────────── MeterReader over pulse inputs ─────────────────────────────

export interface PulseMeterConfig {
  readonly meterId: string;
  readonly input: PulseInput;
  readonly constant: PulseConstant;
  /** e.g. 1.0.1.8.0.255 (electricity import), 8.0.1.0.0.255 (cold water), 7.0.3.0.0.255 (gas volume). */
  readonly obis: ReadingValue["obis"];
}

/**
 * Pulse inputs as the concentrator's MeterReader: a reading is a snapshot (seq = snapshot seq, shifted by
 * `resume`). Edge times and the clock share one timeline: captureUs = clock.nowMs() × 1000.
 * Pulse meters have no profile or event log: readProfile and readEvents return nothing, so a failed poll
 * shows as a SEQ gap attributed NOT_COLLECTED (the count itself is cumulative and loses nothing).
 */
export class PulseMeterReader implements MeterReader {
  private readonly meters = new Map<string, PulseMeterConfig>();
  private readonly seqOffset = new Map<string, number>();

  constructor(
    meters: readonly PulseMeterConfig[],
    private readonly clock: Clock,
  ) {
    for (const meter of meters) {
      if (this.meters.has(meter.meterId)) {
        throw new ConcentratorError("BAD_CONFIG", `pulse meter ${meter.meterId} configured twice`);
      }
      this.meters.set(meter.meterId, meter);
    }
  }

  /** Continue seq after the concentrator's durable cursors (its readingCursors) after a restart. */
  resume(cursors: Readonly<Record<string, number>>): void {
    for (const [meterId, seq] of Object.entries(cursors)) {
      const meter = this.meters.get(meterId);
      if (meter === undefined) continue;
      const offset = Math.max(0, seq - meter.input.snapshotSeq);
      this.seqOffset.set(meterId, Math.max(this.seqOffset.get(meterId) ?? 0, offset));
    }
  }

  async readRegisters(meterId: string): Promise<MeterReading> {
    const meter = this.meters.get(meterId);
    if (meter === undefined)
      throw new ConcentratorError("IFACE_UNREACHABLE", "no pulse input for this meter", meterId);
    const nowMs = this.clock.nowMs();
    const snapshot = meter.input.snapshot(nowMs * 1000);
    const { value } = pulseReadingValue(snapshot.count, meter.constant, meter.obis);
    return { seq: snapshot.seq + (this.seqOffset.get(meterId) ?? 0), timestampMs: nowMs, values: [value] };
  }

  async readProfile(_meterId: string, _fromSeq: number, _limit: number): Promise<MeterReading[]> {
    return [];
  }

  async readEvents(_meterId: string, _fromSeq: number, _limit: number): Promise<Uint8Array[]> {
    return [];
  }

  evidence(): Record<string, PulseInputEvidence> {
    return Object.fromEntries([...this.meters].map(([id, m]) => [id, m.input.evidence()]));
  }
}
