// The metrology engine (seed 002 H2-3/H2-4) in two fidelities over one set of registers:
// waveform mode computes RMS, P, Q, S, PF and frequency from V/I samples; interval mode takes per-second
// RMS/phasor values from a load profile. Both feed the same integer energy accumulators, which carry
// their remainders so no energy is lost to rounding however small the steps (no drift).

/** 1 Wh expressed in the accumulators' unit, milliwatt-milliseconds. */
const MILLIWATT_MS_PER_WH = 3_600_000_000;

/** One harmonic of the load current, relative to the fundamental. */
export interface Harmonic {
  readonly order: number;
  /** RMS of this harmonic as a fraction of the fundamental's RMS. */
  readonly ratio: number;
  readonly phaseDeg: number;
}

/** What a load draws over an interval: the phasor view of interval mode. */
export interface PhasorSample {
  readonly vRms: number;
  /** RMS of the fundamental current. */
  readonly i1Rms: number;
  /** Current lags voltage by this angle (positive = inductive/lagging, negative = capacitive/leading). */
  readonly phiDeg: number;
  readonly frequencyHz: number;
  readonly harmonics: readonly Harmonic[];
  /**
   * Neutral-channel RMS as a fraction of the line channel's (default 1: healthy wiring, the same current
   * goes out and back). Below 1 the return bypasses the neutral (missing neutral, earth return); above 1
   * the line CT is shunted (bypass). seed 004: a mismatch beyond 10 % is a tamper claim.
   */
  readonly neutralRatio?: number;
}

export interface Measurement {
  readonly vRms: number;
  /** Line-channel current RMS (fundamental and harmonics). */
  readonly iRms: number;
  /** Neutral-channel current RMS (seed 004 INSTANTANEOUS_NEUTRAL_CURRENT). */
  readonly neutralCurrentA: number;
  readonly activePowerW: number;
  /** Fundamental reactive power (var), positive when inductive. */
  readonly reactivePowerVar: number;
  readonly apparentPowerVa: number;
  readonly powerFactor: number;
  readonly frequencyHz: number;
  readonly thdPercent: number;
}

/** Import/export active and reactive energy registers (OBIS 1.8.0, 2.8.0, 3.8.0, 4.8.0). */
export interface EnergyRegisters {
  importActiveWh: number;
  exportActiveWh: number;
  importReactiveVarh: number;
  exportReactiveVarh: number;
}

export class EnergyAccumulator {
  readonly registers: EnergyRegisters;
  // Remainders below one register unit, in mW·ms (or mvar·ms).
  private readonly remainders = [0, 0, 0, 0];

  constructor(initial?: EnergyRegisters, remainders?: readonly number[]) {
    this.registers = initial
      ? { ...initial }
      : { importActiveWh: 0, exportActiveWh: 0, importReactiveVarh: 0, exportReactiveVarh: 0 };
    if (remainders !== undefined) for (let i = 0; i < 4; i++) this.remainders[i] = remainders[i] ?? 0;
  }

  get carried(): readonly number[] {
    return [...this.remainders];
  }

  /** Adds `powerW` (and `reactiveVar`) held for `durationMs`; rounding to mW is the only approximation. */
  add(powerW: number, reactiveVar: number, durationMs: number): void {
    const milliWatts = Math.round(powerW * 1000);
    const milliVar = Math.round(reactiveVar * 1000);
    if (milliWatts >= 0) this.carry(0, milliWatts * durationMs);
    else this.carry(1, -milliWatts * durationMs);
    if (milliVar >= 0) this.carry(2, milliVar * durationMs);
    else this.carry(3, -milliVar * durationMs);
  }

  /** Exact energy including the carried remainder, in Wh, for accuracy checks. */
  exactWh(register: 0 | 1 | 2 | 3): number {
    const whole = [
      this.registers.importActiveWh,
      this.registers.exportActiveWh,
      this.registers.importReactiveVarh,
      this.registers.exportReactiveVarh,
    ][register]!;
    return whole + this.remainders[register]! / MILLIWATT_MS_PER_WH;
  }

  private carry(index: number, amount: number): void {
    let total = this.remainders[index]! + amount;
    if (total >= MILLIWATT_MS_PER_WH) {
      const whole = Math.floor(total / MILLIWATT_MS_PER_WH);
      total -= whole * MILLIWATT_MS_PER_WH;
      if (index === 0) this.registers.importActiveWh += whole;
      else if (index === 1) this.registers.exportActiveWh += whole;
      else if (index === 2) this.registers.importReactiveVarh += whole;
      else this.registers.exportReactiveVarh += whole;
    }
    this.remainders[index] = total;
  }
}

const DEG = Math.PI / 180;

/** Interval mode: the measurement a phasor sample implies (voltage is a pure sinusoid). */
export function measurePhasor(sample: PhasorSample): Measurement {
  // A loop, not reduce(): this runs once per meter-second of a fleet.
  let harmonicPower = 0;
  const harmonics = sample.harmonics;
  for (let k = 0; k < harmonics.length; k++) harmonicPower += harmonics[k]!.ratio * harmonics[k]!.ratio;
  const iRms = sample.i1Rms * Math.sqrt(1 + harmonicPower);
  const phi = sample.phiDeg * DEG;
  const p = sample.vRms * sample.i1Rms * Math.cos(phi);
  const q = sample.vRms * sample.i1Rms * Math.sin(phi);
  const s = sample.vRms * iRms;
  return {
    vRms: sample.vRms,
    iRms,
    neutralCurrentA: iRms * (sample.neutralRatio ?? 1),
    activePowerW: p,
    reactivePowerVar: q,
    apparentPowerVa: s,
    powerFactor: s === 0 ? 1 : p / s,
    frequencyHz: sample.frequencyHz,
    thdPercent: Math.sqrt(harmonicPower) * 100,
  };
}

/** Calibration applied by the engine (gain, offset, phase; temperature segments adjust the gain). */
export interface AppliedCalibration {
  readonly voltageGain: number;
  readonly currentGain: number;
  readonly currentOffsetA: number;
  readonly phaseDeg: number;
}

export const IDENTITY_CALIBRATION: AppliedCalibration = {
  voltageGain: 1,
  currentGain: 1,
  currentOffsetA: 0,
  phaseDeg: 0,
};

/** Sampled channels of waveform mode: voltage, line current and neutral current. */
export interface Waveform {
  readonly v: Float64Array;
  readonly i: Float64Array;
  /** Neutral current channel; absent when the meter has no neutral sensor (then taken as `i`). */
  readonly n?: Float64Array;
  readonly sampleRateHz: number;
}

/**
 * Synthesises the sampled voltage, line and neutral current of a phasor sample (waveform-mode input);
 * `startIndex` keeps the phase continuous across consecutive windows.
 */
export function synthesize(
  sample: PhasorSample,
  sampleRateHz: number,
  samples: number,
  startIndex = 0,
): Waveform & { readonly n: Float64Array } {
  const v = new Float64Array(samples);
  const i = new Float64Array(samples);
  const neutral = new Float64Array(samples);
  const neutralRatio = sample.neutralRatio ?? 1;
  const w = 2 * Math.PI * sample.frequencyHz;
  const vPeak = sample.vRms * Math.SQRT2;
  const iPeak = sample.i1Rms * Math.SQRT2;
  for (let n = 0; n < samples; n++) {
    const t = (startIndex + n) / sampleRateHz;
    v[n] = vPeak * Math.sin(w * t);
    let current = iPeak * Math.sin(w * t - sample.phiDeg * DEG);
    for (const h of sample.harmonics) {
      current += iPeak * h.ratio * Math.sin(h.order * w * t - h.phaseDeg * DEG);
    }
    i[n] = current;
    neutral[n] = current * neutralRatio;
  }
  return { v, i, n: neutral, sampleRateHz };
}

/**
 * Waveform mode over a window of whole cycles: RMS and active power by sample sums, the fundamental
 * phasors (reactive power, THD) by a single-bin DFT, frequency from the voltage's zero crossings (both
 * directions, interpolated: half-period resolution, so one cycle is enough). A window with fewer than two
 * crossings cannot time a half period: the frequency is then `frequencyHintHz` (the meter passes the last
 * one it measured), or 0 when no hint is given.
 */
export function measureWaveform(
  v: Float64Array,
  i: Float64Array,
  sampleRateHz: number,
  calibration: AppliedCalibration = IDENTITY_CALIBRATION,
  neutral?: Float64Array,
  frequencyHintHz = 0,
): Measurement {
  const n = v.length;
  if (n === 0 || i.length !== n || (neutral !== undefined && neutral.length !== n)) {
    throw new RangeError(
      `waveform channels must be non-empty and equally long: v ${n}, i ${i.length}, n ${neutral?.length ?? "-"}`,
    );
  }
  let sumVV = 0;
  let sumII = 0;
  let sumVI = 0;
  let crossings = 0;
  let firstCrossing = -1;
  let lastCrossing = -1;
  for (let k = 0; k < n; k++) {
    const vk = v[k]! * calibration.voltageGain;
    const ik = i[k]! * calibration.currentGain + calibration.currentOffsetA;
    sumVV += vk * vk;
    sumII += ik * ik;
    sumVI += vk * ik;
    if (k > 0 && v[k - 1]! < 0 !== v[k]! < 0) {
      // Linear interpolation of the zero crossing between the two samples.
      const at = k - 1 + v[k - 1]! / (v[k - 1]! - v[k]!);
      if (firstCrossing < 0) firstCrossing = at;
      lastCrossing = at;
      crossings++;
    }
  }
  const frequencyHz =
    crossings >= 2 && lastCrossing > firstCrossing
      ? ((crossings - 1) * sampleRateHz) / (2 * (lastCrossing - firstCrossing))
      : frequencyHintHz;
  const vRms = Math.sqrt(sumVV / n);
  const iRms = Math.sqrt(sumII / n);
  const p = sumVI / n;
  // Fundamental phasors by a single-bin DFT at the measured frequency (the window holds whole cycles):
  // Q1 = Im(V1·conj(I1)), and the current's harmonic content is what its RMS holds beyond I1.
  let vRe = 0;
  let vIm = 0;
  let iRe = 0;
  let iIm = 0;
  if (frequencyHz > 0) {
    const w = (2 * Math.PI * frequencyHz) / sampleRateHz;
    for (let k = 0; k < n; k++) {
      const c = Math.cos(w * k);
      const sn = Math.sin(w * k);
      const vk = v[k]! * calibration.voltageGain;
      const ik = i[k]! * calibration.currentGain + calibration.currentOffsetA;
      vRe += vk * c;
      vIm -= vk * sn;
      iRe += ik * c;
      iIm -= ik * sn;
    }
  }
  // Phasor RMS = |X| · √2 / n; V1·conj(I1) then scales by 2 / n².
  const scale = 2 / (n * n);
  const q = (vIm * iRe - vRe * iIm) * scale;
  const i1Rms = (Math.hypot(iRe, iIm) * Math.SQRT2) / n;
  const s = vRms * iRms;
  const pf = s === 0 ? 1 : p / s;
  const thd = i1Rms > 0 && iRms > i1Rms ? Math.sqrt((iRms * iRms) / (i1Rms * i1Rms) - 1) * 100 : 0;
  let neutralCurrentA = iRms;
  if (neutral !== undefined) {
    let sumNN = 0;
    for (let k = 0; k < n; k++) {
      const nk = neutral[k]! * calibration.currentGain + calibration.currentOffsetA;
      sumNN += nk * nk;
    }
    neutralCurrentA = Math.sqrt(sumNN / n);
  }
  return {
    vRms,
    iRms,
    neutralCurrentA,
    activePowerW: p,
    reactivePowerVar: q,
    apparentPowerVa: s,
    powerFactor: pf,
    frequencyHz,
    thdPercent: thd,
  };
}

/** A displacement-angle jump beyond this, against the slow baseline, is a PF/phase anomaly. */
export const PF_ANOMALY_PHASE_DEG = 10;
/** The anomaly flag stays up this long after the last jump: "aligned in time" with a field reading. */
export const PF_ANOMALY_HOLD_MS = 10_000;
/** Time constant of the phase baseline: slow enough that a saturating sensor stands out against it. */
export const PHASE_BASELINE_TAU_MS = 60_000;
/** Below this apparent power the phase angle is noise: the watch neither judges nor learns. */
export const PHASE_WATCH_VA_MIN = 50;

/**
 * The metrology side of the magnet correlation gate (seed 002 H2-6 "B-field high + PF/phase anomaly
 * aligned in time"; H2-3 "PF instability often indicates phase error"): a current sensor driven into
 * saturation by an external field shifts the measured displacement angle. The watch keeps a slow baseline
 * of the angle and flags a departure beyond PF_ANOMALY_PHASE_DEG for PF_ANOMALY_HOLD_MS. A load change
 * can flag it too: alone it claims nothing; the rule engine needs it together with a field above 50 mT.
 */
export class PhaseWatch {
  private baselineDeg = 0;
  private learned = false;
  private lastMs = 0;
  private anomalyUntilMs = Number.NEGATIVE_INFINITY;

  /** Feeds one measurement; returns the anomaly flag at `nowMs`. */
  update(nowMs: number, activePowerW: number, reactivePowerVar: number, apparentPowerVa: number): boolean {
    if (apparentPowerVa >= PHASE_WATCH_VA_MIN) {
      const phiDeg = Math.atan2(reactivePowerVar, activePowerW) / DEG;
      if (!this.learned) {
        this.baselineDeg = phiDeg;
        this.learned = true;
      } else {
        const delta = wrapDeg(phiDeg - this.baselineDeg);
        if (Math.abs(delta) > PF_ANOMALY_PHASE_DEG) this.anomalyUntilMs = nowMs + PF_ANOMALY_HOLD_MS;
        // First-order low-pass, linearised: the step is far below the time constant in every caller.
        const weight = Math.min(1, Math.max(0, nowMs - this.lastMs) / PHASE_BASELINE_TAU_MS);
        this.baselineDeg = wrapDeg(this.baselineDeg + weight * delta);
      }
      this.lastMs = nowMs;
    }
    return nowMs < this.anomalyUntilMs;
  }
}

function wrapDeg(deg: number): number {
  return deg - 360 * Math.floor((deg + 180) / 360);
}
