import { bytesEqual, sha256, type TimeQuality } from "../evidence/index.ts";
import {
  DEFAULT_RTC_CONFIG,
  DEFAULT_TAMPER_CONFIG,
  EnergyAccumulator,
  type HouseholdLoad,
  measurePhasor,
  NORMAL_INPUTS,
  PhaseWatch,
  Rtc,
  setMetrologyInputs,
  type TamperConfig,
  type TamperInputs,
  TamperRules,
  type TimeStep,
} from "../meter/index.ts";

// A compact meter for fleet-scale runs (`lab run fleet-day --meters 100000`). A full `Meter` carries an
// NVM image (~90 KiB), an ECDSA key and signs every sealed record: 100 000 of them do not fit in memory
// nor in two minutes. The compact meter runs the meter's own time and energy code — the real `Rtc`
// (drift, holdover, monotonic floor, slew vs step), `EnergyAccumulator`, `measurePhasor` and the
// `HouseholdLoad` profile, the `PhaseWatch` and the `TamperRules` engine fed from its own metrology —
// under the same fault schedule, and keeps its records in a SHA-256 hash chain instead of a signed NVM
// ring log. What it does not model (NVM wear and power cuts mid-write, signatures, calibration) is
// covered by the representative sample of full meters that runs beside it.

/** Tamper claims a compact meter keeps (the predicate needs the first; the count stays exact). */
const CLAIMS_KEPT_MAX = 4;

/** Bytes per encoded compact record (seq, type, meter time, quality, cause). */
const RECORD_BYTES = 4 + 1 + 8 + 1 + 1;

export type CompactRecordType = "POWER_FAIL" | "POWER_RESTORE" | "TIME_STEP";
const TYPE_CODE: Record<CompactRecordType, number> = { POWER_FAIL: 1, POWER_RESTORE: 2, TIME_STEP: 3 };
const QUALITY_CODE: Record<TimeQuality, number> = { RTC_ONLY: 0, SYNCED: 1, HOLDOVER: 2 };
const CAUSE_CODE: Record<TimeStep["cause"], number> = {
  SYNC_STEP: 1,
  SYNC_STEP_BACK: 2,
  HOLDOVER_EXHAUSTED: 3,
};

export interface CompactRecord {
  readonly seq: number;
  readonly type: CompactRecordType;
  readonly meterTimeMs: number;
  readonly timeQuality: TimeQuality;
  readonly cause: TimeStep["cause"] | null;
  readonly digest: Uint8Array;
}

function encode(r: Omit<CompactRecord, "digest">): Uint8Array {
  const bytes = new Uint8Array(RECORD_BYTES);
  const view = new DataView(bytes.buffer);
  view.setUint32(0, r.seq);
  bytes[4] = TYPE_CODE[r.type];
  view.setFloat64(5, r.meterTimeMs);
  bytes[13] = QUALITY_CODE[r.timeQuality];
  bytes[14] = r.cause === null ? 0 : CAUSE_CODE[r.cause];
  return bytes;
}

export class CompactMeter {
  readonly records: CompactRecord[] = [];
  readonly timeSteps: TimeStep[] = [];
  up = true;
  /** Tamper claims its rules raised (a claim on an untampered fleet is a false positive). */
  readonly claims: string[] = [];
  claimCount = 0;
  private readonly rtc: Rtc;
  private readonly tamper: TamperRules;
  private readonly phase = new PhaseWatch();
  private readonly inputs: { -readonly [K in keyof TamperInputs]: TamperInputs[K] } = { ...NORMAL_INPUTS };
  private readonly energy = new EnergyAccumulator();
  private lastStepMs: number;
  private floorMs = 0;
  private head: Uint8Array;

  constructor(
    readonly id: string,
    private readonly house: HouseholdLoad,
    private readonly startMs: number,
    factoryTimeMs: number,
    /** Safeguard switch of the lab's mutation check: false leaves clock steps unrecorded. */
    private readonly sealTimeSteps = true,
    tamperConfig: TamperConfig = DEFAULT_TAMPER_CONFIG,
  ) {
    this.tamper = new TamperRules(tamperConfig);
    this.rtc = new Rtc(DEFAULT_RTC_CONFIG, startMs, factoryTimeMs, "RTC_ONLY");
    this.lastStepMs = startMs;
    this.head = sha256(new TextEncoder().encode(`compact/${id}`));
  }

  get importActiveWh(): number {
    return this.energy.registers.importActiveWh;
  }

  meterTimeMs(trueNowMs: number): number {
    return this.rtc.now(trueNowMs);
  }

  /** Interval mode: the load since the last step, drawn at `trueNowMs`. */
  step(trueNowMs: number): void {
    if (!this.up) return;
    const m = measurePhasor(this.house.at(Math.floor((trueNowMs - this.startMs) / 1000)));
    this.energy.add(m.activePowerW, m.reactivePowerVar, trueNowMs - this.lastStepMs);
    this.lastStepMs = trueNowMs;
    const meterNow = this.rtc.now(trueNowMs);
    const x = this.inputs;
    x.pfAnomaly = this.phase.update(meterNow, m.activePowerW, m.reactivePowerVar, m.apparentPowerVa);
    setMetrologyInputs(x, m);
    for (const effect of this.tamper.evaluate(meterNow, x)) {
      if (effect.endMs !== null) continue;
      this.claimCount++;
      if (this.claims.length < CLAIMS_KEPT_MAX) this.claims.push(`${effect.type} at meter time ${meterNow}`);
    }
  }

  powerFail(trueNowMs: number): void {
    this.step(trueNowMs);
    this.floorMs = this.rtc.powerDown(trueNowMs);
    this.seal("POWER_FAIL", this.floorMs, null);
    this.up = false;
  }

  powerRestore(trueNowMs: number): void {
    const stepped = this.rtc.powerUp(trueNowMs, this.floorMs);
    this.up = true;
    this.lastStepMs = trueNowMs;
    const now = this.rtc.now(trueNowMs);
    this.seal("POWER_RESTORE", now, null);
    if (stepped !== null) this.noteStep(stepped, now);
  }

  timeSync(trueNowMs: number, sourceMs: number): void {
    if (!this.up) return;
    const stepped = this.rtc.sync(trueNowMs, sourceMs);
    if (stepped !== null) this.noteStep(stepped, this.rtc.now(trueNowMs));
  }

  /** Recomputes the hash chain; returns the first broken seq, or null. */
  chainProblem(): string | null {
    let head = sha256(new TextEncoder().encode(`compact/${this.id}`));
    for (const r of this.records) {
      head = sha256(head, encode(r));
      if (!bytesEqual(head, r.digest)) return `${this.id}: record seq ${r.seq} does not chain`;
    }
    return null;
  }

  private noteStep(step: TimeStep, meterTimeMs: number): void {
    this.timeSteps.push(step);
    if (this.sealTimeSteps) this.seal("TIME_STEP", meterTimeMs, step.cause);
  }

  private seal(type: CompactRecordType, meterTimeMs: number, cause: TimeStep["cause"] | null): void {
    const fields = {
      seq: this.records.length + 1,
      type,
      meterTimeMs,
      timeQuality: this.rtc.quality,
      cause,
    };
    this.head = sha256(this.head, encode(fields));
    this.records.push({ ...fields, digest: this.head });
  }
}
