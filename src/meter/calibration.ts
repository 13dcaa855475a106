import { EvidenceError, type NvmDevice, type NvmRegion, type SecureElement } from "../evidence/index.ts";
import type { Measurement } from "./metrology.ts";
import { DualCopyRecord, decodeIntegers, encodeIntegers } from "./nvm-layout.ts";

// Calibration coefficient sets (seed 002 H2-4): gain, offset, phase and temperature segments, versioned,
// stored as a dual-copy record (atomic update) and guarded by a monotonic anti-rollback counter in the
// secure element: an older set is refused, so nobody can "recalibrate" a meter back into under-reading.

export const CALIBRATION_COUNTER = "cal_version";
const SCALE = 1_000_000;
const SEGMENTS_MAX = 4;

export interface TemperatureSegment {
  /** The segment applies up to this temperature (inclusive), °C. */
  readonly upToC: number;
  readonly gainAdjust: number;
}

export interface CalibrationSet {
  readonly version: number;
  readonly voltageGain: number;
  readonly currentGain: number;
  readonly currentOffsetA: number;
  readonly phaseDeg: number;
  readonly segments: readonly TemperatureSegment[];
}

export const FACTORY_CALIBRATION: CalibrationSet = {
  version: 1,
  voltageGain: 1,
  currentGain: 1,
  currentOffsetA: 0,
  phaseDeg: 0,
  segments: [],
};

export class CalibrationStore {
  private current: CalibrationSet = FACTORY_CALIBRATION;
  private readonly record: DualCopyRecord;

  constructor(
    nvm: NvmDevice,
    region: NvmRegion,
    private readonly se: SecureElement,
  ) {
    this.record = new DualCopyRecord(nvm, region);
  }

  get version(): number {
    return this.current.version;
  }

  get set(): CalibrationSet {
    return this.current;
  }

  load(): void {
    const payload = this.record.read();
    if (payload === null) return;
    const count = payload.length / 8;
    const values = decodeIntegers(payload, count);
    if (values === null || count < 6) return;
    const segmentCount = values[5]!;
    const segments: TemperatureSegment[] = [];
    for (let i = 0; i < segmentCount && i < SEGMENTS_MAX; i++) {
      segments.push({ upToC: values[6 + 2 * i]! / SCALE, gainAdjust: values[7 + 2 * i]! / SCALE });
    }
    this.current = {
      version: values[0]!,
      voltageGain: values[1]! / SCALE,
      currentGain: values[2]! / SCALE,
      currentOffsetA: values[3]! / SCALE,
      phaseDeg: values[4]! / SCALE,
      segments,
    };
  }

  /**
   * Installs a newer set: refused (typed error) unless its version is above both the installed one and
   * the anti-rollback counter. The counter advances only after the set is durable.
   */
  install(next: CalibrationSet): void {
    const floor = Math.max(this.current.version, this.se.readCounter(CALIBRATION_COUNTER));
    if (!Number.isSafeInteger(next.version) || next.version <= floor) {
      throw new EvidenceError(
        "COUNTER_DECREASE",
        `calibration version ${next.version} is not newer than ${floor}: refused`,
      );
    }
    if (next.segments.length > SEGMENTS_MAX) {
      throw new EvidenceError("BAD_FIELD", `at most ${SEGMENTS_MAX} temperature segments`);
    }
    this.record.write(
      encodeIntegers([
        next.version,
        Math.round(next.voltageGain * SCALE),
        Math.round(next.currentGain * SCALE),
        Math.round(next.currentOffsetA * SCALE),
        Math.round(next.phaseDeg * SCALE),
        next.segments.length,
        ...next.segments.flatMap((s) => [Math.round(s.upToC * SCALE), Math.round(s.gainAdjust * SCALE)]),
      ]),
    );
    this.se.advanceCounter(CALIBRATION_COUNTER, next.version);
    this.current = next;
  }

  /** Applies the coefficients to a raw measurement (interval mode) at `temperatureC`. */
  apply(raw: Measurement, temperatureC = 25): Measurement {
    const c = this.current;
    if (c === FACTORY_CALIBRATION) return raw;
    const segment = c.segments.find((s) => temperatureC <= s.upToC);
    const iGain = c.currentGain * (segment?.gainAdjust ?? 1);
    const vRms = raw.vRms * c.voltageGain;
    const iRms = raw.iRms * iGain + c.currentOffsetA;
    const neutralCurrentA = raw.neutralCurrentA * iGain + c.currentOffsetA;
    const phi = Math.atan2(raw.reactivePowerVar, raw.activePowerW) + (c.phaseDeg * Math.PI) / 180;
    const fundamental = Math.hypot(raw.activePowerW, raw.reactivePowerVar) * c.voltageGain * iGain;
    const p = fundamental * Math.cos(phi);
    const q = fundamental * Math.sin(phi);
    const s = vRms * iRms;
    return {
      ...raw,
      vRms,
      iRms,
      neutralCurrentA,
      activePowerW: p,
      reactivePowerVar: q,
      apparentPowerVa: s,
      powerFactor: s === 0 ? 1 : p / s,
    };
  }
}
