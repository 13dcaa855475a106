import type { EventLevel, EventType, Snapshot } from "../evidence/index.ts";
import type { Measurement } from "./metrology.ts";

// Tamper rules (seed 002 H2-6/H2-7, seed 004): each threat maps to sensors and a rule with debounce,
// hysteresis (on/off thresholds), a time gate and, for high-impact claims, a correlation gate. A rule's
// state is persistent and idempotent: a condition that stays true is one record at its start and one at
// its end, never a flood.

export type TamperType =
  | "MAG_TAMPER"
  | "NEUTRAL_MISS"
  | "REV_CURRENT"
  | "COVER_OPEN"
  | "BYPASS_SUS"
  | "INJECT_SUS"
  | "TILT";

/**
 * The lower evidence level of the magnet threat: the field alone crossed 50 mT past the time gate, with no
 * supporting metrology anomaly (seed 002 Case 4/6: log the magnetic peak even when severity stays low;
 * claim MAG_TAMPER only with a second evidence anchor). Sealed (MINOR) but not pushed as an alert.
 */
export const MAG_SUSPECT = "MAG_SUSPECT";
export type TamperLevelName = TamperType | typeof MAG_SUSPECT;

/** Error codes of seed 004's troubleshooting matrix (0x09: the Hall sensor registers above 50 mT). */
export const TAMPER_ERROR_CODES: Partial<Record<EventType, string>> = {
  NEUTRAL_MISS: "0x04",
  MAG_SUSPECT: "0x09",
  MAG_TAMPER: "0x09",
  SIG_FAIL: "0xF2",
};

/** What the sensors and the metrology engine say at one instant. */
export interface TamperInputs {
  readonly fieldMilliTesla: number;
  /** Metrology's PF/phase consistency flag: the correlation gate of a magnet claim. */
  readonly pfAnomaly: boolean;
  readonly lineCurrentA: number;
  readonly neutralCurrentA: number;
  readonly voltageV: number;
  readonly activePowerW: number;
  readonly apparentPowerVa: number;
  readonly powerFactor: number;
  readonly frequencyHz: number;
  /** Total harmonic distortion of the current, in percent. */
  readonly thdPercent: number;
  readonly tiltDeg: number;
  readonly vibrating: boolean;
}

/**
 * Writes one measurement's metrology observables into a reused input record (the rules run every
 * meter-second and must not allocate). Shared by the meter and the lab's compact meters.
 */
export function setMetrologyInputs(
  x: { -readonly [K in keyof TamperInputs]: TamperInputs[K] },
  m: Measurement,
): void {
  x.lineCurrentA = m.iRms;
  x.neutralCurrentA = m.neutralCurrentA;
  x.voltageV = m.vRms;
  x.activePowerW = m.activePowerW;
  x.apparentPowerVa = m.apparentPowerVa;
  x.powerFactor = m.powerFactor;
  x.frequencyHz = m.frequencyHz;
  x.thdPercent = m.thdPercent;
}

export const NORMAL_INPUTS: TamperInputs = {
  fieldMilliTesla: 0.05,
  pfAnomaly: false,
  lineCurrentA: 2,
  neutralCurrentA: 2,
  voltageV: 230,
  activePowerW: 440,
  apparentPowerVa: 460,
  powerFactor: 0.957,
  frequencyHz: 50,
  thdPercent: 5,
  tiltDeg: 0,
  vibrating: false,
};

export interface TamperConfig {
  /** seed 004: flux density above 50 mT. */
  readonly magOnMilliTesla: number;
  readonly magOffMilliTesla: number;
  readonly magTimeGateMs: number;
  /** The correlation gate: a magnet claim needs a PF/phase anomaly (seed 002 H2-6). */
  readonly magRequiresPfAnomaly: boolean;
  /** seed 004: line/neutral differential above 10 %. */
  readonly currentMismatchOnRatio: number;
  readonly currentMismatchOffRatio: number;
  readonly currentMinA: number;
  readonly mismatchTimeGateMs: number;
  readonly reverseOnW: number;
  readonly reverseTimeGateMs: number;
  /** A PV prosumer exports by design: reverse flow is then no tamper claim. */
  readonly exportAllowed: boolean;
  /** seed 004: software debounce 50 ms, 100 ms during an interrupt storm. */
  readonly coverDebounceMs: number;
  readonly coverStormDebounceMs: number;
  readonly coverStormEdges: number;
  readonly coverStormWindowMs: number;
  readonly injectTimeGateMs: number;
  /** seed 004: tilt between 15° and 45°. */
  readonly tiltMinDeg: number;
  readonly tiltMaxDeg: number;
  /** seed 004: vibration must last beyond 500 ms (seismic shocks are shorter). */
  readonly tiltTimeGateMs: number;
}

export const DEFAULT_TAMPER_CONFIG: TamperConfig = {
  magOnMilliTesla: 50,
  magOffMilliTesla: 40,
  magTimeGateMs: 2_000,
  magRequiresPfAnomaly: true,
  currentMismatchOnRatio: 0.1,
  currentMismatchOffRatio: 0.05,
  currentMinA: 0.5,
  mismatchTimeGateMs: 5_000,
  reverseOnW: 20,
  reverseTimeGateMs: 10_000,
  exportAllowed: false,
  coverDebounceMs: 50,
  coverStormDebounceMs: 100,
  coverStormEdges: 8,
  coverStormWindowMs: 1_000,
  injectTimeGateMs: 1_000,
  tiltMinDeg: 15,
  tiltMaxDeg: 45,
  tiltTimeGateMs: 500,
};

/** Below this voltage the line is dead: no bypass claim, no frequency plausibility check. */
const BYPASS_VOLTAGE_MIN_V = 100;

/** A record the rule engine asks the meter to seal. */
export interface TamperEffect {
  readonly type: EventType;
  readonly tamper: TamperLevelName;
  readonly level: EventLevel;
  readonly startMs: number;
  readonly endMs: number | null;
  readonly snapshot: Snapshot;
}

/** What evaluate() returns when no rule changed state (shared, never mutated). */
export const NO_TAMPER_EFFECTS: readonly TamperEffect[] = Object.freeze([]);

interface GateState {
  /** When the raw condition became true (null while false). */
  trueSinceMs: number | null;
  /** When the raw condition became false while active (null while true). */
  falseSinceMs: number | null;
  activeSinceMs: number | null;
  peak: number;
}

/** Debounce + hysteresis + time gate around one boolean condition. */
class Gate {
  private readonly state: GateState = { trueSinceMs: null, falseSinceMs: null, activeSinceMs: null, peak: 0 };

  constructor(
    private readonly onDelayMs: number,
    private readonly offDelayMs: number,
  ) {}

  get active(): boolean {
    return this.state.activeSinceMs !== null;
  }

  get activeSinceMs(): number | null {
    return this.state.activeSinceMs;
  }

  get peak(): number {
    return this.state.peak;
  }

  force(sinceMs: number): void {
    this.state.activeSinceMs = sinceMs;
    this.state.trueSinceMs = sinceMs;
  }

  /** Returns "start" / "end" at the transitions, null otherwise. */
  update(nowMs: number, condition: boolean, magnitude: number): "start" | "end" | null {
    const s = this.state;
    if (condition) {
      s.falseSinceMs = null;
      s.trueSinceMs ??= nowMs;
      if (s.activeSinceMs === null) {
        if (nowMs - s.trueSinceMs >= this.onDelayMs) {
          s.activeSinceMs = s.trueSinceMs;
          s.peak = magnitude;
          return "start";
        }
      } else {
        s.peak = Math.max(s.peak, magnitude);
      }
      return null;
    }
    s.trueSinceMs = null;
    if (s.activeSinceMs === null) return null;
    s.falseSinceMs ??= nowMs;
    if (nowMs - s.falseSinceMs >= this.offDelayMs) {
      s.activeSinceMs = null;
      s.falseSinceMs = null;
      return "end";
    }
    return null;
  }
}

/** Debounced cover switch with the storm rule of seed 004 (50 → 100 ms). */
class CoverSwitch {
  private stableOpen = false;
  private rawOpen = false;
  private rawSinceMs = 0;
  private edges: number[] = [];
  private openSinceMs: number | null = null;
  stormActive = false;
  edgesSeen = 0;

  constructor(private readonly config: TamperConfig) {}

  get open(): boolean {
    return this.stableOpen;
  }

  force(sinceMs: number): void {
    this.stableOpen = true;
    this.rawOpen = true;
    this.rawSinceMs = sinceMs;
    this.openSinceMs = sinceMs;
  }

  get debounceMs(): number {
    return this.stormActive ? this.config.coverStormDebounceMs : this.config.coverDebounceMs;
  }

  edge(nowMs: number, open: boolean): void {
    if (open === this.rawOpen) return;
    this.rawOpen = open;
    this.rawSinceMs = nowMs;
    this.edgesSeen++;
    this.edges.push(nowMs);
    const windowStart = nowMs - this.config.coverStormWindowMs;
    while (this.edges.length > 0 && this.edges[0]! < windowStart) this.edges.shift();
    if (this.edges.length >= this.config.coverStormEdges) this.stormActive = true;
  }

  /** Settles the debounced level; returns the transition if one happened. */
  settle(nowMs: number): { opened: number } | { closedAfterMs: number; openedAt: number } | null {
    const windowStart = nowMs - this.config.coverStormWindowMs;
    while (this.edges.length > 0 && this.edges[0]! < windowStart) this.edges.shift();
    if (this.stormActive && this.edges.length === 0) this.stormActive = false;
    if (this.rawOpen === this.stableOpen || nowMs - this.rawSinceMs < this.debounceMs) return null;
    this.stableOpen = this.rawOpen;
    if (this.stableOpen) {
      this.openSinceMs = this.rawSinceMs;
      return { opened: this.rawSinceMs };
    }
    const openedAt = this.openSinceMs ?? this.rawSinceMs;
    this.openSinceMs = null;
    return { closedAfterMs: this.rawSinceMs - openedAt, openedAt };
  }
}

export interface TamperCounters {
  mag_suspect_cnt: number;
  cover_edge_cnt: number;
  cover_storm_cnt: number;
  detections: number;
}

/** The rule engine: feed it samples (and cover edges), collect the effects. */
export class TamperRules {
  private readonly mag: Gate;
  private readonly magSuspect: Gate;
  private readonly neutral: Gate;
  private readonly bypass: Gate;
  private readonly reverse: Gate;
  private readonly inject: Gate;
  private readonly tilt: Gate;
  private readonly cover: CoverSwitch;
  private wasStorm = false;
  /** A MAG_SUSPECT record was sealed for the current field episode (so its end is sealed too). */
  private suspectRecorded = false;
  readonly counters: TamperCounters = {
    mag_suspect_cnt: 0,
    cover_edge_cnt: 0,
    cover_storm_cnt: 0,
    detections: 0,
  };

  constructor(readonly config: TamperConfig = DEFAULT_TAMPER_CONFIG) {
    this.mag = new Gate(config.magTimeGateMs, config.magTimeGateMs);
    this.magSuspect = new Gate(config.magTimeGateMs, config.magTimeGateMs);
    this.neutral = new Gate(config.mismatchTimeGateMs, config.mismatchTimeGateMs);
    this.bypass = new Gate(config.mismatchTimeGateMs, config.mismatchTimeGateMs);
    this.reverse = new Gate(config.reverseTimeGateMs, config.reverseTimeGateMs);
    this.inject = new Gate(config.injectTimeGateMs, config.injectTimeGateMs);
    this.tilt = new Gate(config.tiltTimeGateMs, config.tiltTimeGateMs);
    this.cover = new CoverSwitch(config);
  }

  /** A recorded magnet suspicion (field only, not confirmed) is active. */
  get magSuspected(): boolean {
    return this.suspectRecorded;
  }

  /** The tamper conditions currently active (persistent state). */
  active(): TamperType[] {
    const out: TamperType[] = [];
    if (this.mag.active) out.push("MAG_TAMPER");
    if (this.neutral.active) out.push("NEUTRAL_MISS");
    if (this.bypass.active) out.push("BYPASS_SUS");
    if (this.reverse.active) out.push("REV_CURRENT");
    if (this.inject.active) out.push("INJECT_SUS");
    if (this.tilt.active) out.push("TILT");
    if (this.cover.open) out.push("COVER_OPEN");
    return out;
  }

  /** Restores persisted active states after a power cycle, so a condition still present is not re-claimed. */
  restoreActive(types: readonly TamperLevelName[], sinceMs: number): void {
    for (const type of types) {
      if (type === MAG_SUSPECT) {
        this.magSuspect.force(sinceMs);
        this.suspectRecorded = true;
        continue;
      }
      const gate = this.gateOf(type);
      if (gate !== null) gate.force(sinceMs);
      else if (type === "COVER_OPEN") this.cover.force(sinceMs);
    }
  }

  private gateOf(type: TamperType): Gate | null {
    switch (type) {
      case "MAG_TAMPER":
        return this.mag;
      case "NEUTRAL_MISS":
        return this.neutral;
      case "BYPASS_SUS":
        return this.bypass;
      case "REV_CURRENT":
        return this.reverse;
      case "INJECT_SUS":
        return this.inject;
      case "TILT":
        return this.tilt;
      default:
        return null;
    }
  }

  get coverDebounceMs(): number {
    return this.cover.debounceMs;
  }

  /**
   * A cover switch interrupt (GPIO edge): the level held until this edge settles first (it may have
   * outlasted the debounce), then the new raw level starts its own debounce.
   */
  coverEdge(nowMs: number, open: boolean): TamperEffect[] {
    this.counters.cover_edge_cnt++;
    const effects = this.coverEffects(this.cover.settle(nowMs));
    this.cover.edge(nowMs, open);
    if (this.cover.stormActive && !this.wasStorm) this.counters.cover_storm_cnt++;
    this.wasStorm = this.cover.stormActive;
    return effects;
  }

  private coverEffects(
    transition: { opened: number } | { closedAfterMs: number; openedAt: number } | null,
  ): TamperEffect[] {
    if (transition === null) return [];
    if ("opened" in transition) {
      this.counters.detections++;
      return [
        {
          type: "COVER_OPEN",
          tamper: "COVER_OPEN",
          level: "MAJOR",
          startMs: transition.opened,
          endMs: null,
          snapshot: { debounce_ms: this.cover.debounceMs, storm: this.cover.stormActive },
        },
      ];
    }
    return [
      {
        type: "TAMPER_CLEARED",
        tamper: "COVER_OPEN",
        level: "INFO",
        startMs: transition.openedAt,
        endMs: transition.openedAt + transition.closedAfterMs,
        snapshot: { tamper: "COVER_OPEN", open_ms: transition.closedAfterMs },
      },
    ];
  }

  /**
   * One evaluation of every rule at `nowMs` (the meter calls it at its sampling period). Runs every
   * meter-second of a fleet: no closures, no allocation unless a rule changes state (then a fresh array;
   * otherwise the shared empty NO_TAMPER_EFFECTS).
   */
  evaluate(nowMs: number, x: TamperInputs): readonly TamperEffect[] {
    const c = this.config;
    let effects: TamperEffect[] | null = null;

    // Magnet, two evidence levels over one field episode (each with its own 50/40 mT hysteresis): the
    // field alone past the time gate is a suspicion (MAG_SUSPECT, MINOR); with a PF/phase anomaly aligned
    // in time it is the confirmed claim (MAG_TAMPER, CRITICAL) — seed 002 H2-6 correlation gate.
    const magOn = this.mag.active
      ? x.fieldMilliTesla > c.magOffMilliTesla
      : x.fieldMilliTesla > c.magOnMilliTesla;
    const suspectOn = this.magSuspect.active
      ? x.fieldMilliTesla > c.magOffMilliTesla
      : x.fieldMilliTesla > c.magOnMilliTesla;
    const suspectStartMs = this.magSuspect.activeSinceMs;
    const suspectTransition = this.magSuspect.update(nowMs, suspectOn, x.fieldMilliTesla);
    const magStartMs = this.mag.activeSinceMs;
    const magTransition = this.mag.update(
      nowMs,
      magOn && (x.pfAnomaly || this.mag.active || !c.magRequiresPfAnomaly),
      x.fieldMilliTesla,
    );
    if (suspectTransition === "start") {
      this.counters.mag_suspect_cnt++;
      // Confirmed in the same instant: the claim carries the evidence, no separate suspicion record.
      if (magTransition !== "start" && !this.mag.active) {
        this.suspectRecorded = true;
        effects = this.transition(effects, nowMs, MAG_SUSPECT, "start", this.magSuspect, {
          field_mt_peak: round2(this.magSuspect.peak),
          pf_anomaly: false,
        });
      }
    } else if (suspectTransition === "end" && this.suspectRecorded) {
      this.suspectRecorded = false;
      effects = this.transition(effects, nowMs, MAG_SUSPECT, "end", this.magSuspect, {
        field_mt_peak: round2(this.magSuspect.peak),
        ...(suspectStartMs === null ? {} : { duration_ms: nowMs - suspectStartMs }),
      });
    }
    if (magTransition !== null) {
      effects = this.transition(effects, nowMs, "MAG_TAMPER", magTransition, this.mag, {
        field_mt_peak: round2(this.mag.peak),
        pf_anomaly: x.pfAnomaly,
        pf: round2(x.powerFactor),
        ...(magTransition === "end" && magStartMs !== null ? { duration_ms: nowMs - magStartMs } : {}),
      });
    }

    // seed 004: line/neutral differential beyond 10 %. Line above neutral: the return path bypasses the
    // neutral (missing neutral, earth return); neutral above line: the line CT is shunted (bypass).
    const larger = Math.max(x.lineCurrentA, x.neutralCurrentA);
    const enough = larger >= c.currentMinA;
    const lineExcess = enough ? (x.lineCurrentA - x.neutralCurrentA) / larger : 0;
    const neutralExcess = enough ? (x.neutralCurrentA - x.lineCurrentA) / larger : 0;
    const neutralOn =
      lineExcess > (this.neutral.active ? c.currentMismatchOffRatio : c.currentMismatchOnRatio);
    const neutralTransition = this.neutral.update(nowMs, neutralOn, lineExcess);
    if (neutralTransition !== null) {
      effects = this.transition(effects, nowMs, "NEUTRAL_MISS", neutralTransition, this.neutral, {
        line_a: round2(x.lineCurrentA),
        neutral_a: round2(x.neutralCurrentA),
        mismatch_pct: round2(lineExcess * 100),
      });
    }
    const bypassOn =
      neutralExcess > (this.bypass.active ? c.currentMismatchOffRatio : c.currentMismatchOnRatio);
    const bypassTransition = this.bypass.update(
      nowMs,
      bypassOn && x.voltageV > BYPASS_VOLTAGE_MIN_V,
      neutralExcess,
    );
    if (bypassTransition !== null) {
      effects = this.transition(effects, nowMs, "BYPASS_SUS", bypassTransition, this.bypass, {
        line_a: round2(x.lineCurrentA),
        neutral_a: round2(x.neutralCurrentA),
        mismatch_pct: round2(neutralExcess * 100),
      });
    }

    if (!c.exportAllowed) {
      // Hysteresis: on beyond reverseOnW of export, off only once export falls below half of it.
      const reverseOn = x.activePowerW < -(this.reverse.active ? c.reverseOnW / 2 : c.reverseOnW);
      const reverseTransition = this.reverse.update(nowMs, reverseOn, -x.activePowerW);
      if (reverseTransition !== null) {
        effects = this.transition(effects, nowMs, "REV_CURRENT", reverseTransition, this.reverse, {
          power_w: Math.round(x.activePowerW),
        });
      }
    }

    // Physically impossible combinations: PF beyond 1, P beyond S, frequency off the grid, a "clean" PF
    // with a distortion no real load can have.
    const impossible =
      Math.abs(x.powerFactor) > 1.02 ||
      Math.abs(x.activePowerW) > x.apparentPowerVa * 1.02 + 1 ||
      (x.voltageV > BYPASS_VOLTAGE_MIN_V && (x.frequencyHz < 45 || x.frequencyHz > 65)) ||
      (x.thdPercent > 80 && Math.abs(x.powerFactor) > 0.98);
    const injectTransition = this.inject.update(nowMs, impossible, x.thdPercent);
    if (injectTransition !== null) {
      effects = this.transition(effects, nowMs, "INJECT_SUS", injectTransition, this.inject, {
        pf: round2(x.powerFactor),
        p_w: Math.round(x.activePowerW),
        s_va: Math.round(x.apparentPowerVa),
        freq_hz: round2(x.frequencyHz),
        thd_pct: round2(x.thdPercent),
      });
    }

    const tilted = x.tiltDeg >= c.tiltMinDeg && x.tiltDeg <= c.tiltMaxDeg;
    const tiltTransition = this.tilt.update(nowMs, tilted && x.vibrating, x.tiltDeg);
    if (tiltTransition !== null) {
      effects = this.transition(effects, nowMs, "TILT", tiltTransition, this.tilt, {
        tilt_deg_peak: round2(this.tilt.peak),
      });
    }

    const cover = this.cover.settle(nowMs);
    if (cover !== null) {
      effects ??= [];
      effects.push(...this.coverEffects(cover));
    }
    return effects ?? NO_TAMPER_EFFECTS;
  }

  private transition(
    effects: TamperEffect[] | null,
    nowMs: number,
    tamper: TamperLevelName,
    transition: "start" | "end",
    gate: Gate,
    snapshot: Snapshot,
  ): TamperEffect[] {
    const out = effects ?? [];
    const startMs = gate.activeSinceMs ?? nowMs;
    if (transition === "start") {
      if (tamper !== MAG_SUSPECT) this.counters.detections++;
      const code = TAMPER_ERROR_CODES[tamper];
      out.push({
        type: tamper,
        tamper,
        level:
          tamper === MAG_SUSPECT
            ? "MINOR"
            : tamper === "MAG_TAMPER" || tamper === "BYPASS_SUS"
              ? "CRITICAL"
              : "MAJOR",
        startMs,
        endMs: null,
        snapshot: code === undefined ? snapshot : { ...snapshot, error_code: code },
      });
    } else {
      out.push({
        type: "TAMPER_CLEARED",
        tamper,
        level: "INFO",
        startMs,
        endMs: nowMs,
        snapshot: { tamper, ...snapshot },
      });
    }
    return out;
  }
}

function round2(value: number): number {
  return Math.round(value * 100) / 100;
}
