import type { ReadingValue } from "../../evidence/index.ts";
import {
  isMbusError,
  MBUS_REQUEST_RETRIES_DEFAULT,
  MBUS_REQUEST_RETRIES_MAX,
  MBUS_RESPONSE_TIMEOUT_MS,
  type MbusDataRecord,
  MbusDecodeStats,
  type MbusDecodeStatsJson,
  type MbusErrorCode,
  MbusMaster,
  type MbusReadout,
  type MbusTransport,
  type SecondaryAddress,
} from "../../mbus/index.ts";
import { ConcentratorError, type ConcentratorErrorCode } from "../errors.ts";
import type { Clock, MeterConfig, MeterReader, MeterReading } from "./ports.ts";

// M-Bus slaves as the concentrator's MeterReader (seed 003 H2-3 "Multi-Meter Interfaces"). Each read is a
// full EN 13757-3 readout (SND_NKE + REQ_UD2 chain, or selection by secondary address), mapped to OBIS
// reading values. Interface evidence is kept per meter (iface_err_by_meter: timeouts, frame CRC, error
// classes) and per bus (port_err_cnt), and one bad meter never stalls or corrupts the others
// (seed 003 H2-11: "per-meter error buckets; no global stall; no cross-meter corruption"):
//  - a bus is half duplex: reads on one bus are serialised by a bounded queue; buses run independently;
//  - every read is bounded in time by the master's response timeout × attempts × telegrams (no timers here:
//    the transport implements the timeout), and a meter failing QUARANTINE_AFTER_FAILURES times in a row
//    is read with a single attempt until it answers again, so a dead meter costs the bus one timeout;
//  - every answer must come from the addressed meter (RSP_UD address field, identification in the long
//    header): a late answer of another slave is refused as IFACE_PROTOCOL, never mapped into this meter.
//
// seq: M-Bus has no capture counter. The access number (8 bits) counts transmissions, not captures (a
// multi-telegram readout or a repeat advances it), so it is kept as evidence only. seq is the number of
// successful readouts of this meter, continued after a restart from the concentrator's durable cursors
// (`resume(readingCursors)`); a failed poll is therefore never a SEQ gap — it is in iface_err_by_meter.
// The register values are cumulative, so nothing is lost by a failed poll.
//
// OBIS mapping (IEC 62056-6-1 / EN 13757-1 value groups; only current values: storage number 0, function
// instantaneous, subunit 0; tariff → value group E; F = 255):
//   medium (EN 13757-3 Table 3) → group A: 0x02 electricity → 1; 0x03 gas → 7; 0x04/0x0C/0x0D heat → 6;
//   0x0A/0x0B cooling → 5; 0x06 warm water, 0x15 hot water → 9; 0x07 water, 0x16 cold water → 8.
//   A=1: energy → 1.8 (1.0.1.8.E.255), power → 1.7, voltage → 12.7, current → 11.7.
//   A=5/6: energy → 1.0, volume → 2.0, power → 8.0, volume flow → 9.0, flow temperature → 10.0,
//          return temperature → 11.0, temperature difference → 12.0.
//   A=7: volume → 3.0 (7.0.3.0.E.255).   A=8/9: volume → 1.0, volume flow → 2.0, flow temperature → 3.0.
// The value is the meter's integer with its VIF exponent as the scaler and the IEC 62056-6-2 unit
// (Wh 30, J 25, m³ 13, W 27, J/h 26, m³/h 15, °C 9, K 52, bar 24, V 35, A 33); MWh/GJ shift the scaler,
// m³/min and m³/s are multiplied into m³/h. Everything else is counted as unmapped, never guessed.

/** Consecutive failed reads after which a meter is read with a single attempt (no retries). */
export const MBUS_QUARANTINE_AFTER_FAILURES = 3;
/** Reads waiting for one bus; more are refused at once (IFACE_TIMEOUT) instead of queueing without bound. */
export const MBUS_BUS_QUEUE_MAX = 64;
/** Telegrams one meter's readout may span (bounds the bus time a meter can take). */
export const MBUS_SOURCE_TELEGRAMS_MAX = 8;
/** Meters one source serves. */
export const MBUS_SOURCE_METERS_MAX = 250 * 16;

export type MbusMeterAddress =
  | {
      readonly kind: "primary";
      readonly primary: number;
      /** Expected 8-digit identification: a swapped meter at the same address is refused. */
      readonly identification?: string;
    }
  | { readonly kind: "secondary"; readonly secondary: SecondaryAddress };

export interface MbusMeterConfig {
  readonly meterId: string;
  readonly busId: string;
  readonly address: MbusMeterAddress;
  /** EN 13757-3 medium to map with when the telegram carries none (short header, fixed structure). */
  readonly medium?: number;
  /** This meter's response timeout (a slow or low-baud meter), instead of the source's. */
  readonly responseTimeoutMs?: number;
}

export interface MbusBusConfig {
  readonly busId: string;
  readonly transport: MbusTransport;
}

export interface MbusSourceOptions {
  readonly responseTimeoutMs?: number;
  readonly retries?: number;
  readonly telegramsMax?: number;
  readonly quarantineAfterFailures?: number;
}

export type MbusMeterErrorKind =
  | "timeout"
  | "frame_crc"
  | "protocol"
  | "unreachable"
  | "wrong_meter"
  | "bad_reading";
export const MBUS_METER_ERROR_KINDS: readonly MbusMeterErrorKind[] = [
  "timeout",
  "frame_crc",
  "protocol",
  "unreachable",
  "wrong_meter",
  "bad_reading",
];

export interface MbusMeterEvidence {
  bus: string;
  reads_ok: number;
  reads_failed: number;
  consecutive_failures: number;
  quarantined: boolean;
  /** Failed reads by class (one per failed poll). */
  errors: Record<MbusMeterErrorKind, number>;
  /** Frame-level counts of this meter's answers (every attempt): frame_crc_fail, port_err_cnt, by_code. */
  frames: MbusDecodeStatsJson;
  records_unmapped: number;
  readouts_incomplete: number;
  last_access_number: number | null;
  seq: number;
}

export interface MbusSourceEvidence {
  iface_err_by_meter: Record<string, MbusMeterEvidence>;
  port_err_cnt: Record<string, number>;
  frame_crc_fail: number;
  bus_queue_refused: Record<string, number>;
}

interface MeterState {
  readonly config: MbusMeterConfig;
  readonly stats: MbusDecodeStats;
  readonly errors: Record<MbusMeterErrorKind, number>;
  readsOk: number;
  readsFailed: number;
  consecutiveFailures: number;
  recordsUnmapped: number;
  readoutsIncomplete: number;
  lastAccessNumber: number | null;
  seq: number;
}

interface BusLane {
  transport: MbusTransport;
  tail: Promise<void>;
  waiting: number;
  refused: number;
}

const IDENTIFICATION = /^[0-9]{8}$/;

export class MbusMeterSource implements MeterReader {
  private readonly buses = new Map<string, BusLane>();
  private readonly meters = new Map<string, MeterState>();
  private readonly responseTimeoutMs: number | undefined;
  private readonly retries: number | undefined;
  private readonly telegramsMax: number;
  private readonly quarantineAfter: number;

  constructor(
    buses: readonly MbusBusConfig[],
    meters: readonly MbusMeterConfig[],
    private readonly clock: Clock,
    options: MbusSourceOptions = {},
  ) {
    for (const bus of buses) {
      if (this.buses.has(bus.busId))
        throw new ConcentratorError("BAD_CONFIG", `bus ${bus.busId} configured twice`);
      this.buses.set(bus.busId, {
        transport: bus.transport,
        tail: Promise.resolve(),
        waiting: 0,
        refused: 0,
      });
    }
    if (meters.length > MBUS_SOURCE_METERS_MAX) {
      throw new ConcentratorError(
        "BAD_CONFIG",
        `${meters.length} M-Bus meters, at most ${MBUS_SOURCE_METERS_MAX}`,
      );
    }
    for (const meter of meters) {
      checkMeterConfig(meter, this.buses, this.meters);
      this.meters.set(meter.meterId, {
        config: meter,
        stats: new MbusDecodeStats(),
        errors: Object.fromEntries(MBUS_METER_ERROR_KINDS.map((k) => [k, 0])) as Record<
          MbusMeterErrorKind,
          number
        >,
        readsOk: 0,
        readsFailed: 0,
        consecutiveFailures: 0,
        recordsUnmapped: 0,
        readoutsIncomplete: 0,
        lastAccessNumber: null,
        seq: 0,
      });
    }
    this.responseTimeoutMs = options.responseTimeoutMs;
    this.retries = options.retries;
    this.telegramsMax = Math.min(
      options.telegramsMax ?? MBUS_SOURCE_TELEGRAMS_MAX,
      MBUS_SOURCE_TELEGRAMS_MAX,
    );
    this.quarantineAfter = options.quarantineAfterFailures ?? MBUS_QUARANTINE_AFTER_FAILURES;
  }

  /** The concentrator's MeterConfig list: port = "mbus:<busId>" so port_err_cnt is bucketed per bus. */
  meterConfigs(): MeterConfig[] {
    return [...this.meters.values()].map((m) => ({
      meterId: m.config.meterId,
      port: `mbus:${m.config.busId}`,
    }));
  }

  /** Continue seq after the concentrator's durable cursors (DcuPersistentState.readingCursors). */
  resume(cursors: Readonly<Record<string, number>>): void {
    for (const [meterId, seq] of Object.entries(cursors)) {
      const meter = this.meters.get(meterId);
      if (meter !== undefined && Number.isSafeInteger(seq) && seq > meter.seq) meter.seq = seq;
    }
  }

  /** The shell reconnected a bus (e.g. a new TCP bridge connection after TRANSPORT errors). */
  replaceTransport(busId: string, transport: MbusTransport): void {
    const lane = this.buses.get(busId);
    if (lane === undefined) throw new ConcentratorError("BAD_CONFIG", `no bus ${busId}`);
    lane.transport = transport;
  }

  async readRegisters(meterId: string): Promise<MeterReading> {
    const meter = this.meters.get(meterId);
    if (meter === undefined) {
      throw new ConcentratorError("IFACE_UNREACHABLE", "no M-Bus meter configured under this id", meterId);
    }
    const lane = this.buses.get(meter.config.busId) as BusLane;
    try {
      const readout = await this.onBus(lane, meterId, (transport) => this.readout(meter, transport));
      const reading = this.toReading(meter, readout);
      meter.readsOk++;
      meter.consecutiveFailures = 0;
      return reading;
    } catch (error) {
      const failure = this.classify(meterId, error);
      meter.readsFailed++;
      meter.consecutiveFailures++;
      meter.errors[failure.kind]++;
      throw failure.error;
    }
  }

  /** M-Bus slaves keep no seq-addressed profile: a gap stays a SEQ gap (attributed by the concentrator). */
  async readProfile(_meterId: string, _fromSeq: number, _limit: number): Promise<MeterReading[]> {
    return [];
  }

  /** M-Bus slaves have no sealed event log. */
  async readEvents(_meterId: string, _fromSeq: number, _limit: number): Promise<Uint8Array[]> {
    return [];
  }

  /** Serialises reads on one bus; the queue is bounded and a refused read costs no bus time. */
  private async onBus<T>(
    lane: BusLane,
    meterId: string,
    run: (transport: MbusTransport) => Promise<T>,
  ): Promise<T> {
    if (lane.waiting >= MBUS_BUS_QUEUE_MAX) {
      lane.refused++;
      throw new ConcentratorError(
        "IFACE_TIMEOUT",
        `bus queue holds ${MBUS_BUS_QUEUE_MAX} reads already`,
        meterId,
      );
    }
    lane.waiting++;
    const previous = lane.tail;
    let release!: () => void;
    lane.tail = new Promise<void>((resolve) => {
      release = resolve;
    });
    try {
      await previous;
      return await run(lane.transport);
    } finally {
      lane.waiting--;
      release();
    }
  }

  private async readout(meter: MeterState, transport: MbusTransport): Promise<MbusReadout> {
    const master = new MbusMaster(transport, {
      stats: meter.stats,
      telegramsMax: this.telegramsMax,
      responseTimeoutMs: this.timeoutMs(meter),
      retries: this.attempts(meter) - 1,
    });
    const address = meter.config.address;
    // A new selection deselects every slave that does not match it (EN 13757-3), so no deselect is sent.
    if (address.kind === "secondary") return master.readoutSecondary(address.secondary);
    return master.readout(address.primary);
  }

  private timeoutMs(meter: MeterState): number {
    return meter.config.responseTimeoutMs ?? this.responseTimeoutMs ?? MBUS_RESPONSE_TIMEOUT_MS;
  }

  private attempts(meter: MeterState): number {
    if (meter.consecutiveFailures >= this.quarantineAfter) return 1;
    return 1 + Math.min(this.retries ?? MBUS_REQUEST_RETRIES_DEFAULT, MBUS_REQUEST_RETRIES_MAX);
  }

  /**
   * The longest a read of this meter can hold its bus: every request (SND_NKE or selection, then one
   * REQ_UD2 per telegram) times out on every attempt. A poll scheduler sizes its cycle with it.
   */
  worstCaseReadMs(meterId: string): number {
    const meter = this.meters.get(meterId);
    if (meter === undefined) throw new ConcentratorError("BAD_CONFIG", `no M-Bus meter ${meterId}`);
    return (1 + this.telegramsMax) * this.attempts(meter) * this.timeoutMs(meter);
  }

  private toReading(meter: MeterState, readout: MbusReadout): MeterReading {
    const meterId = meter.config.meterId;
    const address = meter.config.address;
    let medium = meter.config.medium ?? null;
    let identification: string | null = null;
    for (const { frame, telegram } of readout.telegrams) {
      if (address.kind === "primary" && frame.kind === "long" && frame.address !== address.primary) {
        throw wrongMeter(
          `answer from primary address ${frame.address}, expected ${address.primary}`,
          meterId,
        );
      }
      if (telegram === null)
        throw new ConcentratorError("IFACE_PROTOCOL", "readout without application data", meterId);
      if (telegram.structure === "application_error") {
        throw new ConcentratorError(
          "IFACE_PROTOCOL",
          `slave reports application error: ${telegram.applicationError?.text ?? "unknown"}`,
          meterId,
        );
      }
      const header = telegram.header;
      if (header?.kind === "long") {
        if (identification !== null && header.identification !== identification) {
          throw wrongMeter(
            `telegrams from ${identification} and ${header.identification} in one readout`,
            meterId,
          );
        }
        identification = header.identification;
        const expected = expectedIdentity(address);
        if (expected !== null && !identityMatches(header, expected)) {
          throw wrongMeter(
            `answer from meter ${header.identification}, expected ${expected.identification}`,
            meterId,
          );
        }
        if (meter.config.medium === undefined) medium = header.medium;
      }
      if (header !== null && header.kind !== "fixed") meter.lastAccessNumber = header.accessNumber;
    }
    if (identification === null && expectedIdentity(address) !== null) {
      throw wrongMeter("no long header: the identification cannot be checked", meterId);
    }
    if (!readout.complete) meter.readoutsIncomplete++;
    if (medium === null) {
      throw new ConcentratorError("BAD_READING", "no medium in the telegram and none configured", meterId);
    }
    const mapped = mbusRecordsToValues(readout.records, medium);
    meter.recordsUnmapped += mapped.unmapped;
    if (mapped.values.length === 0) {
      throw new ConcentratorError(
        "BAD_READING",
        `none of ${readout.records.length} record(s) maps to an OBIS value for medium 0x${medium.toString(16)}`,
        meterId,
      );
    }
    if (meter.seq >= 0xffff_ffff) {
      throw new ConcentratorError("BAD_READING", "seq would pass 2^32-1", meterId);
    }
    meter.seq++;
    return { seq: meter.seq, timestampMs: this.clock.nowMs(), values: mapped.values };
  }

  private classify(meterId: string, error: unknown): { kind: MbusMeterErrorKind; error: unknown } {
    if (error instanceof ConcentratorError) {
      const kind: MbusMeterErrorKind = isWrongMeter(error)
        ? "wrong_meter"
        : error.code === "IFACE_TIMEOUT"
          ? "timeout"
          : error.code === "IFACE_FRAME_CRC"
            ? "frame_crc"
            : error.code === "IFACE_UNREACHABLE"
              ? "unreachable"
              : error.code === "BAD_READING"
                ? "bad_reading"
                : "protocol";
      return { kind, error };
    }
    if (isMbusError(error)) {
      const code = ifaceCode(error.code);
      const kind: MbusMeterErrorKind =
        code === "IFACE_TIMEOUT"
          ? "timeout"
          : code === "IFACE_FRAME_CRC"
            ? "frame_crc"
            : code === "IFACE_UNREACHABLE"
              ? "unreachable"
              : "protocol";
      return { kind, error: new ConcentratorError(code, error.message, meterId) };
    }
    // Not an interface failure: a bug; let it surface unchanged (the concentrator counts it as protocol).
    return { kind: "protocol", error };
  }

  meterEvidence(meterId: string): MbusMeterEvidence {
    const meter = this.meters.get(meterId);
    if (meter === undefined) throw new ConcentratorError("BAD_CONFIG", `no M-Bus meter ${meterId}`);
    return {
      bus: meter.config.busId,
      reads_ok: meter.readsOk,
      reads_failed: meter.readsFailed,
      consecutive_failures: meter.consecutiveFailures,
      quarantined: meter.consecutiveFailures >= this.quarantineAfter,
      errors: { ...meter.errors },
      frames: meter.stats.toJSON(),
      records_unmapped: meter.recordsUnmapped,
      readouts_incomplete: meter.readoutsIncomplete,
      last_access_number: meter.lastAccessNumber,
      seq: meter.seq,
    };
  }

  /** The interface pack of seed 003 H2-10 for this source: per meter, per bus (port), frame CRC total. */
  evidence(): MbusSourceEvidence {
    const byMeter: Record<string, MbusMeterEvidence> = {};
    const portErr: Record<string, number> = {};
    const refused: Record<string, number> = {};
    let frameCrcFail = 0;
    for (const [busId, lane] of this.buses) {
      portErr[busId] = 0;
      refused[busId] = lane.refused;
    }
    for (const [meterId, meter] of this.meters) {
      byMeter[meterId] = this.meterEvidence(meterId);
      portErr[meter.config.busId] = (portErr[meter.config.busId] ?? 0) + meter.stats.portErrCnt;
      frameCrcFail += meter.stats.frameCrcFail;
    }
    return {
      iface_err_by_meter: byMeter,
      port_err_cnt: portErr,
      frame_crc_fail: frameCrcFail,
      bus_queue_refused: refused,
    };
  }
}

// ───────────────────────────── errors and identity ─────────────────────────────

const WRONG_METER = "wrong meter: ";

function wrongMeter(message: string, meterId: string): ConcentratorError {
  return new ConcentratorError("IFACE_PROTOCOL", WRONG_METER + message, meterId);
}

function isWrongMeter(error: ConcentratorError): boolean {
  return error.code === "IFACE_PROTOCOL" && error.message.startsWith(`IFACE_PROTOCOL: ${WRONG_METER}`);
}

/** MbusError → the concentrator's IFACE_* codes (seed 003 frame_crc_fail is the checksum failure only). */
export function ifaceCode(code: MbusErrorCode): ConcentratorErrorCode {
  if (code === "BAD_CHECKSUM") return "IFACE_FRAME_CRC";
  if (code === "TIMEOUT") return "IFACE_TIMEOUT";
  if (code === "TRANSPORT") return "IFACE_UNREACHABLE";
  return "IFACE_PROTOCOL";
}

function expectedIdentity(address: MbusMeterAddress): SecondaryAddress | null {
  if (address.kind === "secondary") return address.secondary;
  if (address.identification === undefined) return null;
  return { identification: address.identification, manufacturerCode: 0xffff, version: 0xff, medium: 0xff };
}

function identityMatches(
  header: { identification: string; manufacturerCode: number; version: number; medium: number },
  expected: SecondaryAddress,
): boolean {
  return (
    header.identification === expected.identification &&
    (expected.manufacturerCode === 0xffff || header.manufacturerCode === expected.manufacturerCode) &&
    (expected.version === 0xff || header.version === expected.version) &&
    (expected.medium === 0xff || header.medium === expected.medium)
  );
}

function checkMeterConfig(
  meter: MbusMeterConfig,
  buses: ReadonlyMap<string, BusLane>,
  seen: ReadonlyMap<string, MeterState>,
): void {
  const where = meter.meterId;
  if (seen.has(meter.meterId)) throw new ConcentratorError("BAD_CONFIG", "meter configured twice", where);
  if (!buses.has(meter.busId)) throw new ConcentratorError("BAD_CONFIG", `unknown bus ${meter.busId}`, where);
  const address = meter.address;
  if (address.kind === "primary") {
    if (!Number.isInteger(address.primary) || address.primary < 1 || address.primary > 250) {
      // EN 13757-2: 0 is the unconfigured address every new slave answers on; 1..250 identify one slave.
      throw new ConcentratorError(
        "BAD_CONFIG",
        `primary address must be 1..250, got ${address.primary}`,
        where,
      );
    }
    if (address.identification !== undefined && !IDENTIFICATION.test(address.identification)) {
      throw new ConcentratorError("BAD_CONFIG", "identification must be 8 decimal digits", where);
    }
  } else if (!IDENTIFICATION.test(address.secondary.identification)) {
    // A wildcard could select several slaves; a meter is read by its full identification.
    throw new ConcentratorError(
      "BAD_CONFIG",
      "secondary identification must be 8 decimal digits (no wildcards)",
      where,
    );
  }
  if (
    meter.responseTimeoutMs !== undefined &&
    (!Number.isSafeInteger(meter.responseTimeoutMs) || meter.responseTimeoutMs < 1)
  ) {
    throw new ConcentratorError(
      "BAD_CONFIG",
      `response timeout must be a positive ms, got ${meter.responseTimeoutMs}`,
      where,
    );
  }
  if (
    meter.medium !== undefined &&
    (!Number.isInteger(meter.medium) || meter.medium < 0 || meter.medium > 0xff)
  ) {
    throw new ConcentratorError("BAD_CONFIG", `medium must be a byte, got ${meter.medium}`, where);
  }
}

// ───────────────────────────── records → OBIS reading values ─────────────────────────────

/** EN 13757-3 medium → OBIS value group A. */
export const MBUS_MEDIUM_OBIS_A: Readonly<Record<number, number>> = {
  2: 1, // electricity
  3: 7, // gas
  4: 6, // heat (outlet)
  12: 6, // heat (inlet)
  13: 6, // heat / cooling load meter
  10: 5, // cooling load meter (outlet)
  11: 5, // cooling load meter (inlet)
  6: 9, // warm water (30–90 °C)
  21: 9, // hot water (≥ 90 °C)
  7: 8, // water
  22: 8, // cold water
};

/** Per OBIS group A: M-Bus quantity → value groups C and D. */
const QUANTITY_CD: Readonly<Record<number, Readonly<Record<string, readonly [number, number]>>>> = {
  1: { energy: [1, 8], power: [1, 7], voltage: [12, 7], current: [11, 7] },
  5: {
    energy: [1, 0],
    volume: [2, 0],
    power: [8, 0],
    volume_flow: [9, 0],
    flow_temperature: [10, 0],
    return_temperature: [11, 0],
    temperature_difference: [12, 0],
  },
  6: {
    energy: [1, 0],
    volume: [2, 0],
    power: [8, 0],
    volume_flow: [9, 0],
    flow_temperature: [10, 0],
    return_temperature: [11, 0],
    temperature_difference: [12, 0],
  },
  7: { volume: [3, 0] },
  8: { volume: [1, 0], volume_flow: [2, 0], flow_temperature: [3, 0] },
  9: { volume: [1, 0], volume_flow: [2, 0], flow_temperature: [3, 0] },
};

/** The unit as the meter sends it → IEC 62056-6-2 unit, decimal shift, integer factor. */
const UNITS: Readonly<Record<string, readonly [unit: number, shift: number, factor: number]>> = {
  Wh: [30, 0, 1],
  MWh: [30, 6, 1],
  J: [25, 0, 1],
  GJ: [25, 9, 1],
  m3: [13, 0, 1],
  W: [27, 0, 1],
  MW: [27, 6, 1],
  "J/h": [26, 0, 1],
  "GJ/h": [26, 9, 1],
  "m3/h": [15, 0, 1],
  "m3/min": [15, 0, 60],
  "m3/s": [15, 0, 3600],
  "°C": [9, 0, 1],
  K: [52, 0, 1],
  bar: [24, 0, 1],
  V: [35, 0, 1],
  A: [33, 0, 1],
};

/** Decimal places kept when a real32 value becomes an integer. */
const REAL_DIGITS = 3;

export interface MappedValues {
  readonly values: ReadingValue[];
  /** Records that carry data but have no mapping (other quantity, stored value, error state, duplicate…). */
  readonly unmapped: number;
}

/** Maps decoded records of one readout to reading values; at most READING_VALUES_MAX (16) are kept. */
export function mbusRecordsToValues(records: readonly MbusDataRecord[], medium: number): MappedValues {
  const groupA = MBUS_MEDIUM_OBIS_A[medium];
  const quantities = groupA === undefined ? undefined : QUANTITY_CD[groupA];
  const values: ReadingValue[] = [];
  const seen = new Set<string>();
  let unmapped = 0;
  for (const record of records) {
    if (record.dataField === "none" || record.dataField === "selection") continue;
    const value =
      groupA === undefined || quantities === undefined ? null : mapRecord(record, groupA, quantities);
    if (value === null) {
      unmapped++;
      continue;
    }
    const key = value.obis.join(".");
    if (seen.has(key) || values.length >= 16) {
      unmapped++;
      continue;
    }
    seen.add(key);
    values.push(value);
  }
  return { values, unmapped };
}

function mapRecord(
  record: MbusDataRecord,
  groupA: number,
  quantities: Readonly<Record<string, readonly [number, number]>>,
): ReadingValue | null {
  const { vib } = record;
  if (
    record.function !== "instantaneous" ||
    record.storageNumber !== 0 ||
    record.subunit !== 0 ||
    record.tariff > 255 ||
    record.manufacturerSpecific ||
    record.valueError !== null ||
    vib.errorCode !== null ||
    vib.kind !== "number" ||
    // Multiplicative VIFEs are already folded into the exponent; any other note changes the meaning.
    vib.notes.some((note) => !note.startsWith("multiplicative correction factor"))
  ) {
    return null;
  }
  const cd = quantities[vib.quantity];
  const unit = UNITS[vib.rawUnit];
  if (cd === undefined || unit === undefined) return null;
  const [unitCode, shift, factor] = unit;
  let integer: bigint;
  let scaler = vib.exponent + shift;
  const raw = record.rawValue;
  if (typeof raw === "bigint") integer = raw;
  else if (typeof raw === "number" && Number.isSafeInteger(raw)) integer = BigInt(raw);
  else if (typeof raw === "number" && Number.isFinite(raw) && record.dataField === "real32") {
    integer = BigInt(Math.round(raw * 10 ** REAL_DIGITS));
    scaler -= REAL_DIGITS;
  } else return null;
  integer *= BigInt(factor);
  if (integer > BigInt(Number.MAX_SAFE_INTEGER) || integer < BigInt(Number.MIN_SAFE_INTEGER)) return null;
  if (scaler < -128 || scaler > 127) return null;
  return {
    obis: [groupA, 0, cd[0], cd[1], record.tariff, 255],
    value: Number(integer),
    scaler,
    unit: unitCode,
  };
}
