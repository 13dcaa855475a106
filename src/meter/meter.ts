import {
  AtomicRingLog,
  type EventLevel,
  type EventRecord,
  type EventType,
  EvidenceError,
  MemoryNvm,
  type NvmDevice,
  type SecureElement,
  type Snapshot,
  type TimeQuality,
  verifyEventSignature,
} from "../evidence/index.ts";
import { type CalibrationSet, CalibrationStore } from "./calibration.ts";
import { FirmwareManager } from "./firmware/manager.ts";
import type { TrustAnchor } from "./firmware/pki.ts";
import { type LoadProfileEntry, LoadProfileRing } from "./load-profile.ts";
import {
  EnergyAccumulator,
  type EnergyRegisters,
  IDENTITY_CALIBRATION,
  type Measurement,
  measurePhasor,
  measureWaveform,
  PhaseWatch,
  type PhasorSample,
  type Waveform,
} from "./metrology.ts";
import {
  DualCopyRecord,
  decodeIntegers,
  encodeIntegers,
  type MeterNvmLayout,
  meterNvmLayout,
} from "./nvm-layout.ts";
import { DEFAULT_RTC_CONFIG, Rtc, type RtcConfig, type RtcCounters, type TimeStep } from "./rtc.ts";
import {
  DEFAULT_TAMPER_CONFIG,
  MAG_SUSPECT,
  NORMAL_INPUTS,
  setMetrologyInputs,
  type TamperConfig,
  type TamperEffect,
  type TamperInputs,
  type TamperLevelName,
  TamperRules,
  type TamperType,
} from "./tamper.ts";

// The virtual meter: a deterministic state machine driven by the environment's true time, a load, sensor
// inputs and power events, holding its truth in an NvmDevice. It never reads a clock of its own.

/** Billing registers persisted at least this often, and at every power-down. */
export const BILLING_PERSIST_PERIOD_MS = 15 * 60_000;
/** Load-profile capture period (one entry per 15 minutes, seq-numbered). */
export const LOAD_PROFILE_PERIOD_MS = 15 * 60_000;
/** The grid frequency assumed until a waveform window has timed one (IEC 50 Hz grids). */
export const NOMINAL_FREQUENCY_HZ = 50;
/** Sealed alerts waiting for comms: beyond it the oldest are left to the log (read back by range). */
export const ALERT_QUEUE_MAX = 256;

/** seed 002 H2-10: Normal → PF detect → Commit-only → (off) → Resume. */
export type PowerLevel = "NORMAL" | "PF_DETECT" | "COMMIT_ONLY" | "OFF" | "RESUME";

/** Rail thresholds as a fraction of nominal supply. */
const PF_DETECT_BELOW = 0.85;
const COMMIT_ONLY_BELOW = 0.7;
const OFF_BELOW = 0.5;

/** Bit positions of the persisted tamper states in the clock anchor (append only: stored masks stay valid). */
const PERSISTED_TAMPER: readonly TamperLevelName[] = [
  "MAG_TAMPER",
  "NEUTRAL_MISS",
  "REV_CURRENT",
  "COVER_OPEN",
  "BYPASS_SUS",
  "INJECT_SUS",
  "TILT",
  MAG_SUSPECT,
];

/** The clock anchor record: the monotonic time floor and the tamper states that survive a power cycle. */
interface ClockAnchor {
  readonly floorMs: number;
  readonly tamper: TamperLevelName[];
}

/** seed 002 H2-9: comms evidence counters. */
export interface CommsEvidence {
  retry_count: number;
  fail_code: number;
  rssi: number;
  snr: number;
  rail_min: number;
  tx_I_peak: number;
}

/** What the meter senses besides its metrology channels: the tamper sensors and the board temperature. */
export interface MeterSensors extends TamperInputs {
  readonly temperatureC: number;
}

export const NORMAL_SENSORS: MeterSensors = { ...NORMAL_INPUTS, temperatureC: 25 };
/** The default "nothing to add" sensor record (compared by identity: skips the copy in the hot path). */
const NO_SENSORS: Partial<MeterSensors> = Object.freeze({});

export interface MeterOptions {
  readonly id: string;
  readonly secureElement: SecureElement;
  readonly nvm?: NvmDevice;
  readonly layout?: MeterNvmLayout;
  readonly tamper?: TamperConfig;
  readonly rtc?: RtcConfig;
  /** Meter time at first power-up of a factory-fresh meter (the factory sets the clock). */
  readonly factoryTimeMs?: number;
  /** Skip the secure element's seq counter of the event log (the lab's big fleets); default on. */
  readonly logSeqCounter?: boolean;
  /** Safeguard switch for the lab's mutation checks only: false leaves clock steps unrecorded. */
  readonly sealTimeSteps?: boolean;
  /** Load-profile capture period; default LOAD_PROFILE_PERIOD_MS (demos and `amiproof up` shorten it). */
  readonly profilePeriodMs?: number;
}

export interface MeterStatus {
  readonly id: string;
  readonly powerLevel: PowerLevel;
  readonly meterTimeMs: number;
  readonly timeQuality: TimeQuality;
  readonly registers: EnergyRegisters;
  readonly lastMeasurement: Measurement | null;
  readonly tamper: TamperType[];
  readonly eventSeq: number;
  readonly alertsQueued: number;
  /** Alerts pushed out of the full queue (still in the sealed log, to be read back by range). */
  readonly alertsOverflowed: number;
  readonly commsUp: boolean;
}

export class Meter {
  readonly id: string;
  readonly nvm: NvmDevice;
  readonly layout: MeterNvmLayout;
  readonly tamper: TamperRules;
  readonly calibration: CalibrationStore;
  private readonly se: SecureElement;
  private readonly rtcConfig: RtcConfig;
  private readonly billing: DualCopyRecord;
  private readonly anchor: DualCopyRecord;
  private readonly profile: LoadProfileRing;
  private readonly useSeqCounter: boolean;
  private readonly sealTimeSteps: boolean;
  private readonly profilePeriodMs: number;
  /** Sensor readings forced by a lab/admin injection (a magnet held to the meter) until a true time. */
  private injected: { sensors: Partial<MeterSensors>; untilTrueMs: number } | null = null;
  private log!: AtomicRingLog;
  private rtc!: Rtc;
  private energy!: EnergyAccumulator;
  private level: PowerLevel = "OFF";
  private lastStepTrueMs = 0;
  private lastBillingPersistMs = 0;
  private nextProfileMs = 0;
  private measurement: Measurement | null = null;
  /** Last sensed board temperature: drives the RTC's crystal drift and the calibration segments. */
  private temperatureC = NORMAL_SENSORS.temperatureC;
  private readonly phaseWatch = new PhaseWatch();
  private readonly inputs: { -readonly [K in keyof MeterSensors]: MeterSensors[K] } = { ...NORMAL_SENSORS };
  private readonly alertQueue: EventRecord[] = [];
  private alertsOverflowed = 0;
  /** RTC sync losses already sealed as TIME_SYNC records. */
  private syncLossesSealed = 0;
  private readonly pendingEvidence: TamperEffect[] = [];
  private commsUp = true;
  readonly comms: CommsEvidence = {
    retry_count: 0,
    fail_code: 0,
    rssi: -70,
    snr: 20,
    rail_min: 1,
    tx_I_peak: 0,
  };
  readonly timeSteps: TimeStep[] = [];

  private constructor(options: MeterOptions) {
    this.id = options.id;
    this.se = options.secureElement;
    this.layout = options.layout ?? meterNvmLayout();
    this.nvm = options.nvm ?? new MemoryNvm(this.layout.geometry);
    this.tamper = new TamperRules(options.tamper ?? DEFAULT_TAMPER_CONFIG);
    this.rtcConfig = options.rtc ?? DEFAULT_RTC_CONFIG;
    this.billing = new DualCopyRecord(this.nvm, this.layout.billing);
    this.anchor = new DualCopyRecord(this.nvm, this.layout.clockAnchor);
    this.calibration = new CalibrationStore(this.nvm, this.layout.calibration, this.se);
    this.profile = new LoadProfileRing(this.nvm, this.layout.loadProfile);
    this.useSeqCounter = options.logSeqCounter ?? true;
    this.sealTimeSteps = options.sealTimeSteps ?? true;
    this.profilePeriodMs = options.profilePeriodMs ?? LOAD_PROFILE_PERIOD_MS;
    if (!(this.profilePeriodMs >= 1000))
      throw new EvidenceError("BAD_FIELD", "load-profile period must be at least 1000 ms", this.id);
  }

  /** Powers a meter up for the first time (or from a stored NVM image) at true time `trueNowMs`. */
  static open(options: MeterOptions, trueNowMs: number): Meter {
    const meter = new Meter(options);
    const anchor = meter.readAnchor();
    meter.rtc = new Rtc(
      meter.rtcConfig,
      trueNowMs,
      anchor?.floorMs ?? options.factoryTimeMs ?? trueNowMs,
      "RTC_ONLY",
    );
    meter.rtc.powerDown(trueNowMs);
    meter.boot(trueNowMs, anchor);
    return meter;
  }

  // ───────────────────────────── reads ─────────────────────────────

  get powerLevel(): PowerLevel {
    return this.level;
  }

  get registers(): EnergyRegisters {
    return { ...this.energy.registers };
  }

  exactImportWh(): number {
    return this.energy.exactWh(0);
  }

  meterTimeMs(trueNowMs: number): number {
    return this.clockNow(trueNowMs);
  }

  get timeQuality(): TimeQuality {
    return this.rtc.quality;
  }

  eventLog(): EventRecord[] {
    return this.log.records();
  }

  eventsFrom(seq: number): EventRecord[] {
    return this.log.readFrom(seq);
  }

  get eventPublicKey(): Uint8Array {
    return this.log.publicKey;
  }

  loadProfile(): LoadProfileEntry[] {
    return this.profile.entries();
  }

  status(trueNowMs: number): MeterStatus {
    return {
      id: this.id,
      powerLevel: this.level,
      meterTimeMs: this.level === "OFF" ? 0 : this.clockNow(trueNowMs),
      timeQuality: this.rtc.quality,
      registers: this.registers,
      lastMeasurement: this.measurement,
      tamper: this.tamper.active(),
      eventSeq: this.level === "OFF" ? 0 : this.log.lastSeq,
      alertsQueued: this.alertQueue.length,
      alertsOverflowed: this.alertsOverflowed,
      commsUp: this.commsUp,
    };
  }

  // ───────────────────────────── inputs ─────────────────────────────

  /**
   * Interval mode: the load `sample` was drawn from the last step until `trueNowMs`; sensors say
   * `sensors` now. Accumulates energy, captures the load profile, evaluates the tamper rules.
   */
  step(trueNowMs: number, sample: PhasorSample, sensors: Partial<MeterSensors> = NO_SENSORS): void {
    if (this.level === "OFF") return;
    this.checkTrueTime(trueNowMs);
    this.ingest(trueNowMs, measurePhasor(sample), this.withInjected(trueNowMs, sensors));
  }

  /**
   * Holds `sensors` on the meter's inputs until `untilTrueMs` (the lab's and `amiproof up`'s tamper
   * injection: a magnet held to a meter whose caller steps it without sensor data). The tamper rules see
   * them exactly as real sensor readings; nothing else is bypassed.
   */
  injectSensors(sensors: Partial<MeterSensors>, untilTrueMs: number): void {
    this.injected = { sensors: { ...sensors }, untilTrueMs };
  }

  private withInjected(trueNowMs: number, sensors: Partial<MeterSensors>): Partial<MeterSensors> {
    const injected = this.injected;
    if (injected === null) return sensors;
    if (trueNowMs >= injected.untilTrueMs) {
      this.injected = null;
      return sensors;
    }
    return sensors === NO_SENSORS ? injected.sensors : { ...injected.sensors, ...sensors };
  }

  /**
   * Waveform mode: the sampled `waveform` (whole mains cycles) is representative of the load since the
   * last step. Same calibration, registers, tamper rules and profile as interval mode: one engine.
   */
  stepWaveform(trueNowMs: number, waveform: Waveform, sensors: Partial<MeterSensors> = NO_SENSORS): void {
    if (this.level === "OFF") return;
    this.checkTrueTime(trueNowMs);
    this.ingest(
      trueNowMs,
      measureWaveform(
        waveform.v,
        waveform.i,
        waveform.sampleRateHz,
        IDENTITY_CALIBRATION,
        waveform.n,
        this.measurement?.frequencyHz || NOMINAL_FREQUENCY_HZ,
      ),
      this.withInjected(trueNowMs, sensors),
    );
  }

  private checkTrueTime(trueNowMs: number): void {
    if (!(trueNowMs >= this.lastStepTrueMs)) {
      throw new EvidenceError(
        "BAD_FIELD",
        `true time went backwards (${trueNowMs} < ${this.lastStepTrueMs})`,
        this.id,
      );
    }
  }

  private ingest(trueNowMs: number, raw: Measurement, sensors: Partial<MeterSensors>): void {
    const dt = trueNowMs - this.lastStepTrueMs;
    const temperatureC = sensors.temperatureC ?? this.temperatureC;
    // The interval just ended ran at the previous temperature; the new reading applies from now on.
    const meterNow = this.clockNow(trueNowMs);
    if (this.rtc.counters.sync_lost_cnt !== this.syncLossesSealed) this.noteSyncLoss(meterNow);
    this.temperatureC = temperatureC;
    this.inputs.temperatureC = temperatureC;
    const m = this.calibration.apply(raw, temperatureC);
    this.measurement = m;
    this.energy.add(m.activePowerW, m.reactivePowerVar, dt);
    this.lastStepTrueMs = trueNowMs;
    // One reused input record: the rule engine runs every meter-second and must not allocate.
    const x = this.inputs;
    x.fieldMilliTesla = NORMAL_INPUTS.fieldMilliTesla;
    // Derived from the metrology unless the sensors record says otherwise (a test or the lab forcing it).
    x.pfAnomaly = this.phaseWatch.update(meterNow, m.activePowerW, m.reactivePowerVar, m.apparentPowerVa);
    x.tiltDeg = NORMAL_INPUTS.tiltDeg;
    x.vibrating = false;
    setMetrologyInputs(x, m);
    if (sensors !== NO_SENSORS) Object.assign(x, sensors);
    const effects = this.tamper.evaluate(meterNow, x);
    if (effects.length > 0) this.applyTamper(effects, meterNow);
    if (this.level !== "NORMAL") return;
    while (meterNow >= this.nextProfileMs) {
      this.profile.append({
        timestampMs: this.nextProfileMs,
        importWh: this.energy.registers.importActiveWh,
        exportWh: this.energy.registers.exportActiveWh,
        timeQuality: this.rtc.quality,
      });
      this.nextProfileMs += this.profilePeriodMs;
    }
    if (trueNowMs - this.lastBillingPersistMs >= BILLING_PERSIST_PERIOD_MS) this.persistBilling(trueNowMs);
  }

  /** A cover switch interrupt. */
  coverEdge(trueNowMs: number, open: boolean): void {
    if (this.level === "OFF") return;
    const meterNow = this.clockNow(trueNowMs);
    this.applyTamper(this.tamper.coverEdge(meterNow, open), meterNow);
  }

  /** The supply rail as a fraction of nominal: drives the brownout levels. */
  supply(trueNowMs: number, railFraction: number): void {
    this.comms.rail_min = Math.min(this.comms.rail_min, railFraction);
    if (this.level === "OFF") {
      if (railFraction >= PF_DETECT_BELOW) this.resume(trueNowMs);
      return;
    }
    if (railFraction < OFF_BELOW) {
      if (this.level === "NORMAL" || this.level === "PF_DETECT") this.commitOnly(trueNowMs, railFraction);
      this.level = "OFF";
      this.rtc.powerDown(trueNowMs, this.temperatureC);
      return;
    }
    if (railFraction < COMMIT_ONLY_BELOW) {
      if (this.level !== "COMMIT_ONLY") this.commitOnly(trueNowMs, railFraction);
      return;
    }
    if (railFraction < PF_DETECT_BELOW) {
      if (this.level === "NORMAL") this.level = "PF_DETECT"; // freeze TX, prepare the commit
      return;
    }
    if (this.level !== "NORMAL") {
      this.level = "NORMAL";
      this.flushPendingEvidence(trueNowMs);
    }
  }

  powerFail(trueNowMs: number): void {
    this.supply(trueNowMs, 0.8);
    this.supply(trueNowMs, 0.6);
    this.supply(trueNowMs, 0);
  }

  powerRestore(trueNowMs: number): void {
    this.supply(trueNowMs, 1);
  }

  /** The NVM died under the meter (a cut mid-write): the meter is off until power returns. */
  crashed(trueNowMs: number): void {
    this.level = "OFF";
    this.rtc.powerDown(trueNowMs, this.temperatureC);
  }

  /** A time source (concentrator, head-end) gives the true time. */
  timeSync(trueNowMs: number, sourceMs: number): TimeStep | null {
    if (this.level === "OFF") return null;
    const before = this.clockNow(trueNowMs);
    this.noteSyncLoss(before);
    if (this.rtc.quality !== "SYNCED") {
      // seed 003 H2-8: acquiring (and losing) the time source are events on the record's timeline. Sealed
      // before the correction, in the clock's old time and quality; a step follows as its TIME_STEP.
      this.seal("TIME_SYNC", "INFO", before, before, before, {
        event: "SYNC_ACQUIRED",
        offset_ms: Math.round(sourceMs - before),
      });
    }
    const step = this.rtc.sync(trueNowMs, sourceMs, this.temperatureC);
    if (step !== null) this.recordTimeStep(step);
    return step;
  }

  /** Time evidence counters (seed 003 H2-8) and the age of the last sync (null when not SYNCED). */
  timeEvidence(): RtcCounters & { last_sync_age_ms: number | null } {
    return { ...this.rtc.counters, last_sync_age_ms: this.rtc.lastSyncAgeMs() };
  }

  /** Installs a newer calibration set (older ones are refused) and seals a CAL_UPDATE record. */
  installCalibration(trueNowMs: number, set: CalibrationSet): EventRecord {
    const previous = this.calibration.version;
    this.calibration.install(set);
    const meterNow = this.clockNow(trueNowMs);
    return this.seal("CAL_UPDATE", "MINOR", meterNow, meterNow, meterNow, {
      from_version: previous,
      to_version: set.version,
    });
  }

  /**
   * The meter's A/B firmware manager over its own NVM, secure element and sealed log (seed 000/001).
   * `trueNowMs` gives the meter clock for certificate validity.
   */
  attachFirmware(trust: TrustAnchor, hwTarget: string, trueNowMs: () => number): FirmwareManager {
    return new FirmwareManager({
      nvm: this.nvm,
      layout: this.layout,
      secureElement: this.se,
      trust,
      hwTarget,
      nowMs: () => this.clockNow(trueNowMs()),
      // boot() seals a firmware transition record a power cut prevented (firmware/manager.ts).
      records: () => this.log.records(),
      seal: (type, level, snapshot) => {
        const now = this.clockNow(trueNowMs());
        const record = this.seal(type, level, now, now, null, snapshot);
        // seed 002 H2-6 FW_ROLLBACK and seed 004 0xF2: firmware threats are tamper claims, pushed as alerts.
        if (type === "FW_ROLLBACK" || type === "SIG_FAIL") this.queueAlert(record);
        return record;
      },
    });
  }

  setComms(up: boolean): void {
    this.commsUp = up;
  }

  reportComms(evidence: Partial<CommsEvidence>): void {
    Object.assign(this.comms, evidence);
  }

  /** Alerts to push now: only with comms up and TX not frozen; the oldest first, original timestamps. */
  takeAlerts(): EventRecord[] {
    if (!this.commsUp || this.level !== "NORMAL") return [];
    return this.alertQueue.splice(0);
  }

  /** Firmware reports an anti-rollback refusal or a signature failure (seed 002 FW_ROLLBACK, seed 004 0xF2). */
  reportFirmwareIncident(
    trueNowMs: number,
    type: "FW_ROLLBACK" | "SIG_FAIL",
    snapshot: Snapshot,
  ): EventRecord | null {
    if (this.level === "OFF") return null;
    const meterNow = this.clockNow(trueNowMs);
    const record = this.seal(type, "CRITICAL", meterNow, meterNow, meterNow, {
      ...snapshot,
      ...(type === "SIG_FAIL" ? { error_code: "0xF2" } : {}),
    });
    this.queueAlert(record);
    return record;
  }

  // ───────────────────────────── internals ─────────────────────────────

  /** Seals the sync loss the RTC noticed (its last sync aged out) once, when next convenient. */
  private noteSyncLoss(meterNow: number): void {
    if (this.rtc.counters.sync_lost_cnt === this.syncLossesSealed) return;
    this.syncLossesSealed = this.rtc.counters.sync_lost_cnt;
    this.seal("TIME_SYNC", "MINOR", meterNow, meterNow, meterNow, {
      event: "SYNC_LOST",
      reason: "SYNC_AGED",
      holdover_enter_cnt: this.rtc.counters.holdover_enter_cnt,
    });
  }

  /** Meter time: the RTC at the last sensed temperature (its crystal drifts with it). */
  private clockNow(trueNowMs: number): number {
    return this.rtc.now(trueNowMs, this.temperatureC);
  }

  private boot(trueNowMs: number, anchor: ClockAnchor | null): void {
    const saved = decodeIntegers(this.billing.read() ?? new Uint8Array(0), 8);
    this.energy =
      saved === null
        ? new EnergyAccumulator()
        : new EnergyAccumulator(
            {
              importActiveWh: saved[0]!,
              exportActiveWh: saved[1]!,
              importReactiveVarh: saved[2]!,
              exportReactiveVarh: saved[3]!,
            },
            saved.slice(4),
          );
    this.calibration.load();
    const step = this.rtc.powerUp(trueNowMs, anchor?.floorMs ?? 0, this.temperatureC);
    const meterNow = this.clockNow(trueNowMs);
    // RESUME: scan the log (recovery), verify continuity of its newest record, then restore comms.
    this.level = "RESUME";
    this.log = AtomicRingLog.open({
      nvm: this.nvm,
      region: this.layout.eventLog,
      meterId: this.id,
      secureElement: this.se,
      nowMs: meterNow,
      timeQuality: this.rtc.quality,
      ...(this.useSeqCounter ? {} : { seqCounter: null }),
    });
    const newest = this.log.records().at(-1);
    if (newest !== undefined && !verifyEventSignature(newest, this.log.publicKey)) {
      throw new EvidenceError("BAD_SIGNATURE", "newest log record does not verify after recovery", this.id);
    }
    if (anchor !== null) this.tamper.restoreActive(anchor.tamper, meterNow);
    this.lastStepTrueMs = trueNowMs;
    this.lastBillingPersistMs = trueNowMs;
    const lastProfile = this.profile.entries().at(-1);
    this.nextProfileMs =
      lastProfile === undefined
        ? Math.ceil(meterNow / this.profilePeriodMs) * this.profilePeriodMs
        : Math.max(
            lastProfile.timestampMs + this.profilePeriodMs,
            Math.ceil(meterNow / this.profilePeriodMs) * this.profilePeriodMs,
          );
    // seed 002 H2-4 "every coefficient update writes a time-stamped event": a cut between the durable
    // set and its CAL_UPDATE record would leave an unaudited change; the newest record naming the version
    // (CAL_UPDATE or POWER_UP) tells, and the missing record is sealed now, marked recovered.
    const loggedVersion = lastLoggedCalibration(this.log.records());
    if (loggedVersion !== null && loggedVersion !== this.calibration.version) {
      this.seal("CAL_UPDATE", "MINOR", meterNow, meterNow, meterNow, {
        from_version: loggedVersion,
        to_version: this.calibration.version,
        recovered: true,
      });
    }
    this.seal("POWER_UP", "INFO", meterNow, meterNow, null, {
      holdover_exhausted: step !== null,
      import_wh: this.energy.registers.importActiveWh,
      cal_version: this.calibration.version,
    });
    if (step !== null) this.recordTimeStep(step);
    this.level = "NORMAL";
    this.flushPendingEvidence(trueNowMs);
  }

  private resume(trueNowMs: number): void {
    try {
      this.boot(trueNowMs, this.readAnchor());
    } catch (error) {
      if (error instanceof EvidenceError && error.code === "POWER_LOST") {
        this.crashed(trueNowMs);
        return;
      }
      throw error;
    }
  }

  private commitOnly(trueNowMs: number, railFraction: number): void {
    this.level = "COMMIT_ONLY";
    const meterNow = this.clockNow(trueNowMs);
    this.persistBilling(trueNowMs);
    this.writeAnchor(meterNow);
    this.seal("POWER_DOWN", "INFO", meterNow, meterNow, null, {
      rail_min: Math.round(railFraction * 1000) / 1000,
      import_wh: this.energy.registers.importActiveWh,
      retry_count: this.comms.retry_count,
      fail_code: this.comms.fail_code,
    });
  }

  private applyTamper(effects: readonly TamperEffect[], meterNow: number): void {
    for (const effect of effects) {
      if (this.level === "NORMAL") {
        this.sealTamper(effect, meterNow);
      } else {
        // Power is failing: commit the minimal marker now, the evidence when power allows.
        // The marker names the record it stands for: a claim, or the end of one (TAMPER_CLEARED).
        this.seal("TAMPER_PENDING", "MAJOR", meterNow, effect.startMs, null, {
          tamper: effect.tamper,
          pending_type: effect.type,
        });
        this.pendingEvidence.push(effect);
      }
    }
    if (effects.length > 0) this.writeAnchor(meterNow);
  }

  private flushPendingEvidence(trueNowMs: number): void {
    const meterNow = this.clockNow(trueNowMs);
    for (const effect of this.pendingEvidence.splice(0)) this.sealTamper(effect, meterNow);
  }

  private sealTamper(effect: TamperEffect, meterNow: number): void {
    const record = this.seal(
      effect.type,
      effect.level,
      meterNow,
      effect.startMs,
      effect.endMs,
      effect.snapshot,
    );
    // Claims are alerts; a suspicion and an end of condition travel with the log (read by range).
    if (effect.type !== "TAMPER_CLEARED" && effect.type !== MAG_SUSPECT) this.queueAlert(record);
  }

  private queueAlert(record: EventRecord): void {
    if (this.alertQueue.length >= ALERT_QUEUE_MAX) {
      // At the bound the oldest alert leaves the queue, counted; its sealed record stays in the log.
      this.alertQueue.shift();
      this.alertsOverflowed++;
    }
    this.alertQueue.push(record);
  }

  private recordTimeStep(step: TimeStep): void {
    this.timeSteps.push(step);
    if (!this.sealTimeSteps) return;
    this.seal("TIME_STEP", "MINOR", step.toMs, step.fromMs, step.toMs, {
      cause: step.cause,
      from_ms: step.fromMs,
      to_ms: step.toMs,
    });
    this.writeAnchor(step.toMs);
  }

  private seal(
    type: EventType,
    level: EventLevel,
    timestampMs: number,
    startMs: number,
    endMs: number | null,
    snapshot: Snapshot,
  ): EventRecord {
    return this.log.append({
      type,
      level,
      timestampMs,
      startMs: Math.min(startMs, timestampMs),
      endMs: endMs === null ? null : Math.max(endMs, Math.min(startMs, timestampMs)),
      timeQuality: this.rtc.quality,
      snapshot,
    });
  }

  private persistBilling(trueNowMs: number): void {
    const r = this.energy.registers;
    this.billing.write(
      encodeIntegers([
        r.importActiveWh,
        r.exportActiveWh,
        r.importReactiveVarh,
        r.exportReactiveVarh,
        ...this.energy.carried,
      ]),
    );
    this.lastBillingPersistMs = trueNowMs;
  }

  private readAnchor(): ClockAnchor | null {
    const values = decodeIntegers(this.anchor.read() ?? new Uint8Array(0), 2);
    if (values === null) return null;
    const mask = values[1]!;
    return { floorMs: values[0]!, tamper: PERSISTED_TAMPER.filter((_, i) => (mask & (1 << i)) !== 0) };
  }

  private writeAnchor(meterNow: number): void {
    const active: TamperLevelName[] = this.tamper.active();
    if (this.tamper.magSuspected) active.push(MAG_SUSPECT);
    const mask = PERSISTED_TAMPER.reduce((m, type, i) => (active.includes(type) ? m | (1 << i) : m), 0);
    this.anchor.write(encodeIntegers([meterNow, mask]));
  }
}

/** The calibration version the newest CAL_UPDATE or POWER_UP record names; null when none is retained. */
function lastLoggedCalibration(records: readonly EventRecord[]): number | null {
  for (let k = records.length - 1; k >= 0; k--) {
    const r = records[k]!;
    const version =
      r.type === "CAL_UPDATE" ? r.snapshot.to_version : r.type === "POWER_UP" ? r.snapshot.cal_version : null;
    if (typeof version === "number") return version;
  }
  return null;
}
