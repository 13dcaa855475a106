import {
  type EventLevel,
  type EventRecord,
  type EventType,
  genesisDigest,
  MemorySecureElement,
  type ReadingValue,
  type Snapshot,
  sealEventRecord,
  sha256,
} from "../evidence/index.ts";
import type { RandomSource } from "./core/backoff.ts";
import type { Clock, MeterReader, MeterReading } from "./core/ports.ts";
import { ConcentratorError } from "./errors.ts";

// In-process simulated meters for tests, the lab and `amiproof dcu --sim-meters N`, until the DLMS
// client reads real ones. Readings are a pure function of (meter, seq) and seq a pure function of the
// clock, so a concentrator killed and restarted finds its meters exactly where real ones would be: the
// profile kept advancing while it was down. Faults (timeouts, frame CRC, offline, lost or malformed
// readings) are injected from a seeded random source, so every run replays.

/** Readings a simulated meter keeps in its load profile (older ones are gone: a later read is a SEQ_GAP). */
export const SIM_PROFILE_ENTRIES_MAX = 4096;
/** Sealed events a simulated meter keeps. */
export const SIM_EVENT_LOG_MAX = 1024;

export const OBIS_ACTIVE_ENERGY_IMPORT = [1, 0, 1, 8, 0, 255] as const;
export const OBIS_VOLTAGE_L1 = [1, 0, 32, 7, 0, 255] as const;
export const OBIS_CURRENT_L1 = [1, 0, 31, 7, 0, 255] as const;
// IEC 62056-6-2 unit enumeration: 30 = Wh, 35 = V, 33 = A.
const UNIT_WH = 30;
const UNIT_V = 35;
const UNIT_A = 33;

export interface SimFaults {
  /** Probability per read that the meter does not answer (IFACE_TIMEOUT). */
  readonly timeoutRate?: number;
  /** Probability per read that the frame arrives corrupted (IFACE_FRAME_CRC). */
  readonly frameCrcRate?: number;
}

export interface SimMeterOptions {
  /** A new reading every this many ms. */
  readonly readingIntervalMs: number;
  /** Time of seq 1 (before each meter's own phase offset). */
  readonly anchorMs: number;
  readonly profileEntriesMax?: number;
  readonly faults?: SimFaults;
  /** Port label per meter (port_err_cnt buckets); default "sim:<index % 4>". */
  readonly portOf?: (meterId: string, index: number) => string;
  /** Seed of the meters' event_seal keys (MemorySecureElement), so sealed events are reproducible. */
  readonly keySeed?: Uint8Array;
}

interface SimMeter {
  readonly meterId: string;
  readonly index: number;
  readonly phaseMs: number;
  readonly baseWh: number;
  offline: boolean;
  readonly lost: Set<number>;
  readonly malformed: Set<number>;
  readonly events: EventRecord[];
  eventSeq: number;
  lastDigest: Uint8Array;
  readonly secureElement: MemorySecureElement;
}

export class SimMeterFleet implements MeterReader {
  private readonly meters = new Map<string, SimMeter>();
  private readonly profileEntriesMax: number;
  /** Reads served, by method: the lab's load figures. */
  readonly reads = { registers: 0, profile: 0, events: 0 };

  constructor(
    meterIds: readonly string[],
    private readonly clock: Clock,
    private readonly random: RandomSource & { nextFloat(): number },
    private readonly options: SimMeterOptions,
  ) {
    if (!(options.readingIntervalMs > 0))
      throw new ConcentratorError("BAD_CONFIG", "reading interval must be positive");
    this.profileEntriesMax = options.profileEntriesMax ?? SIM_PROFILE_ENTRIES_MAX;
    meterIds.forEach((meterId, index) => {
      const digest = sha256(new TextEncoder().encode(`sim/${meterId}`));
      const word = ((digest[0] as number) << 16) | ((digest[1] as number) << 8) | (digest[2] as number);
      this.meters.set(meterId, {
        meterId,
        index,
        phaseMs: word % options.readingIntervalMs,
        baseWh: (word % 100_000) * 1000,
        offline: false,
        lost: new Set(),
        malformed: new Set(),
        events: [],
        eventSeq: 0,
        lastDigest: genesisDigest(meterId),
        secureElement: new MemorySecureElement(meterId, options.keySeed ?? new Uint8Array([0x51, 0x4d])),
      });
    });
  }

  meterIds(): string[] {
    return [...this.meters.keys()];
  }

  portOf(meterId: string): string {
    const meter = this.meter(meterId);
    return this.options.portOf?.(meterId, meter.index) ?? `sim:${meter.index % 4}`;
  }

  /** The meter's event_seal public key (what a head-end needs to verify its alerts). */
  eventPublicKey(meterId: string): Uint8Array {
    return this.meter(meterId).secureElement.publicKey("event_seal");
  }

  /** The newest seq at `nowMs` (0 before the first reading). */
  newestSeq(meterId: string, nowMs = this.clock.nowMs()): number {
    const meter = this.meter(meterId);
    const since = nowMs - (this.options.anchorMs + meter.phaseMs);
    return since < 0 ? 0 : Math.floor(since / this.options.readingIntervalMs) + 1;
  }

  /** The reading with this seq, as the meter recorded it. */
  reading(meterId: string, seq: number): MeterReading {
    const meter = this.meter(meterId);
    const timestampMs = this.options.anchorMs + meter.phaseMs + (seq - 1) * this.options.readingIntervalMs;
    if (meter.malformed.has(seq)) return { seq, timestampMs, values: [] };
    // Energy strictly increases: a fixed step plus a per-seq wobble smaller than the step.
    const wobble = mix32(meter.phaseMs ^ Math.imul(seq, 0x9e3779b1)) % 97;
    const values: ReadingValue[] = [
      { obis: OBIS_ACTIVE_ENERGY_IMPORT, value: meter.baseWh + seq * 100 + wobble, scaler: 0, unit: UNIT_WH },
      { obis: OBIS_VOLTAGE_L1, value: 2250 + (wobble % 100), scaler: -1, unit: UNIT_V },
      { obis: OBIS_CURRENT_L1, value: 100 + wobble * 3, scaler: -2, unit: UNIT_A },
    ];
    return { seq, timestampMs, values };
  }

  // ───────────── fault injection ─────────────

  setOffline(meterId: string, offline: boolean): void {
    this.meter(meterId).offline = offline;
  }

  /** The meter's profile never held these readings (capture did not happen): a later read sees a gap. */
  loseReadings(meterId: string, seqs: readonly number[]): void {
    for (const seq of seqs) this.meter(meterId).lost.add(seq);
  }

  /** The meter reports these readings malformed (no values): the concentrator must reject them. */
  malformReadings(meterId: string, seqs: readonly number[]): void {
    for (const seq of seqs) this.meter(meterId).malformed.add(seq);
  }

  /** The meter seals an event into its log (tamper detection, power events…). */
  raiseEvent(meterId: string, type: EventType, level: EventLevel, snapshot: Snapshot = {}): EventRecord {
    const meter = this.meter(meterId);
    const now = this.clock.nowMs();
    meter.eventSeq++;
    const record = sealEventRecord(
      {
        meterId,
        seq: meter.eventSeq,
        type,
        level,
        timestampMs: now,
        startMs: now,
        endMs: null,
        timeQuality: "SYNCED",
        snapshot,
        prevDigest: meter.lastDigest,
      },
      (message) => meter.secureElement.sign("event_seal", message),
    );
    meter.lastDigest = record.digest;
    meter.events.push(record);
    if (meter.events.length > SIM_EVENT_LOG_MAX) meter.events.shift();
    return record;
  }

  // ───────────── MeterReader ─────────────

  async readRegisters(meterId: string): Promise<MeterReading> {
    this.reads.registers++;
    this.answer(meterId);
    const seq = this.newestSeq(meterId);
    if (seq === 0) throw new ConcentratorError("IFACE_PROTOCOL", "meter has no reading yet", meterId);
    return this.reading(meterId, seq);
  }

  async readProfile(meterId: string, fromSeq: number, limit: number): Promise<MeterReading[]> {
    this.reads.profile++;
    const meter = this.answer(meterId);
    const newest = this.newestSeq(meterId);
    const oldestKept = Math.max(1, newest - this.profileEntriesMax + 1);
    const out: MeterReading[] = [];
    for (let seq = Math.max(fromSeq, oldestKept); seq <= newest && out.length < limit; seq++) {
      if (!meter.lost.has(seq)) out.push(this.reading(meterId, seq));
    }
    return out;
  }

  async readEvents(meterId: string, fromSeq: number, limit: number): Promise<Uint8Array[]> {
    this.reads.events++;
    const meter = this.answer(meterId);
    return meter.events
      .filter((e) => e.seq >= fromSeq)
      .slice(0, limit)
      .map((e) => e.bytes);
  }

  private answer(meterId: string): SimMeter {
    const meter = this.meter(meterId);
    if (meter.offline) throw new ConcentratorError("IFACE_TIMEOUT", "no answer (meter offline)", meterId);
    const faults = this.options.faults;
    if (faults !== undefined) {
      if (this.random.nextFloat() < (faults.timeoutRate ?? 0)) {
        throw new ConcentratorError("IFACE_TIMEOUT", "no answer within the deadline", meterId);
      }
      if (this.random.nextFloat() < (faults.frameCrcRate ?? 0)) {
        throw new ConcentratorError("IFACE_FRAME_CRC", "frame check sequence mismatch", meterId);
      }
    }
    return meter;
  }

  private meter(meterId: string): SimMeter {
    const meter = this.meters.get(meterId);
    if (meter === undefined)
      throw new ConcentratorError("IFACE_UNREACHABLE", "no such meter on this bus", meterId);
    return meter;
  }
}

/** A cheap 32-bit integer mix (murmur3 finaliser): readings must be deterministic, not secret. */
function mix32(x: number): number {
  let h = x | 0;
  h = Math.imul(h ^ (h >>> 16), 0x85ebca6b);
  h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35);
  return (h ^ (h >>> 16)) >>> 0;
}

/** Meter ids of a simulated fleet: MTR-<dcu>-00001 … */
export function simMeterIds(dcuId: string, count: number): string[] {
  return Array.from({ length: count }, (_, i) => `MTR-${dcuId}-${String(i + 1).padStart(5, "0")}`);
}
