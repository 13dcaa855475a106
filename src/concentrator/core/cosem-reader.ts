import {
  type Data,
  DlmsError,
  dateTimeToMs,
  decodeDateTimeBytes,
  formatObis,
  type Obis,
  parseObis,
} from "../../dlms/index.ts";
import { ConcentratorError, isConcentratorError } from "../errors.ts";
import type { MeterReader, MeterReading } from "./ports.ts";

// The pure half of reading a DLMS/COSEM meter (IEC 62056-6-2 object model): what to ask for, and how
// the answers — profile generic buffers described by their capture objects — become MeterReadings and
// sealed event records. No sockets here; runtime/dlms-reader.ts does the IO.

/** The objects the concentrator reads (wire format shared with the meter; roles never import each other). */
export const COSEM_OBIS = {
  clock: "0.0.1.0.0.255",
  deviceId: "0.0.96.1.0.255",
  loadProfile: "1.0.99.1.0.255",
  standardEventLog: "0.0.99.98.0.255",
  /** Manufacturer-specific (value group D = 128): the meter's own load-profile entry seq. */
  profileSeq: "0.0.96.128.0.255",
  /** Manufacturer-specific: a sealed event record's seq. */
  eventSeq: "0.0.96.128.1.255",
  /** Manufacturer-specific: the sealed event record (encodeEventRecord bytes with its signature). */
  eventRecord: "0.0.96.128.2.255",
} as const;

export const CLASS_DATA = 1;
export const CLASS_REGISTER = 3;
export const CLASS_EXTENDED_REGISTER = 4;
export const CLASS_PROFILE_GENERIC = 7;
export const CLASS_CLOCK = 8;

/** Capture objects accepted in one profile (a meter cannot make us track unbounded columns). */
export const CAPTURE_OBJECTS_MAX = 64;

/** One capture_object_definition (class 7 attribute 3). */
export interface CaptureObject {
  readonly classId: number;
  readonly obis: string;
  readonly attributeId: number;
  readonly dataIndex: number;
}

export interface ScalerUnit {
  readonly scaler: number;
  readonly unit: number;
}

/** Where the readings live in a load profile's rows. */
export interface ProfileLayout {
  readonly columns: readonly CaptureObject[];
  readonly clockIndex: number;
  readonly seqIndex: number;
  /** Register columns (class 3/4, attribute 2): the reading's values, in column order. */
  readonly values: readonly { readonly index: number; readonly obis: string }[];
}

/** Where the seq and the sealed record live in an event log's rows. */
export interface EventLogLayout {
  readonly columns: readonly CaptureObject[];
  readonly seqIndex: number;
  readonly recordIndex: number;
}

function protocol(message: string, where: string): ConcentratorError {
  return new ConcentratorError("IFACE_PROTOCOL", message, where);
}

export function decodeCaptureObjects(data: Data, where: string): CaptureObject[] {
  if (data.type !== "array") throw protocol(`capture_objects is ${data.type}, expected array`, where);
  if (data.value.length > CAPTURE_OBJECTS_MAX)
    throw protocol(`${data.value.length} capture objects, at most ${CAPTURE_OBJECTS_MAX}`, where);
  return data.value.map((item, i) => {
    const [classId, obis, attributeId, dataIndex] = item.type === "structure" ? item.value : [];
    if (
      classId?.type !== "long-unsigned" ||
      obis?.type !== "octet-string" ||
      obis.value.length !== 6 ||
      attributeId?.type !== "integer" ||
      dataIndex?.type !== "long-unsigned"
    ) {
      throw protocol(`capture object ${i} is not a capture_object_definition`, where);
    }
    return {
      classId: classId.value,
      obis: formatObis(Array.from(obis.value) as unknown as Obis),
      attributeId: attributeId.value,
      dataIndex: dataIndex.value,
    };
  });
}

function columnOf(columns: readonly CaptureObject[], classId: number, obis: string): number {
  return columns.findIndex((c) => c.classId === classId && c.obis === obis && c.attributeId === 2);
}

export function profileLayout(columns: readonly CaptureObject[], where: string): ProfileLayout {
  const clockIndex = columnOf(columns, CLASS_CLOCK, COSEM_OBIS.clock);
  const seqIndex = columnOf(columns, CLASS_DATA, COSEM_OBIS.profileSeq);
  if (clockIndex < 0 || seqIndex < 0)
    throw protocol("the load profile captures no clock or no seq column: readings cannot be proven", where);
  const values = columns
    .map((c, index) => ({ index, c }))
    .filter(
      ({ c }) =>
        (c.classId === CLASS_REGISTER || c.classId === CLASS_EXTENDED_REGISTER) && c.attributeId === 2,
    )
    .map(({ index, c }) => ({ index, obis: c.obis }));
  if (values.length === 0) throw protocol("the load profile captures no register", where);
  return { columns, clockIndex, seqIndex, values };
}

export function eventLogLayout(columns: readonly CaptureObject[], where: string): EventLogLayout {
  const seqIndex = columnOf(columns, CLASS_DATA, COSEM_OBIS.eventSeq);
  const recordIndex = columnOf(columns, CLASS_DATA, COSEM_OBIS.eventRecord);
  if (seqIndex < 0 || recordIndex < 0)
    throw protocol("the event log captures no seq or no sealed record column", where);
  return { columns, seqIndex, recordIndex };
}

/** Selective access by range (selector 1) on a seq column, inclusive, all columns. */
export function seqRangeSelection(
  column: CaptureObject,
  fromSeq: number,
  toSeq: number,
): { selector: number; parameters: Data } {
  return {
    selector: 1,
    parameters: {
      type: "structure",
      value: [
        {
          type: "structure",
          value: [
            { type: "long-unsigned", value: column.classId },
            { type: "octet-string", value: Uint8Array.from(parseObis(column.obis)) },
            { type: "integer", value: column.attributeId },
            { type: "long-unsigned", value: column.dataIndex },
          ],
        },
        { type: "double-long-unsigned", value: clampU32(fromSeq) },
        { type: "double-long-unsigned", value: clampU32(toSeq) },
        { type: "array", value: [] },
      ],
    },
  };
}

function clampU32(n: number): number {
  return Math.max(0, Math.min(0xffff_ffff, Math.floor(n)));
}

export function decodeScalerUnit(data: Data, where: string): ScalerUnit {
  const [scaler, unit] = data.type === "structure" ? data.value : [];
  if (scaler?.type !== "integer" || unit?.type !== "enum")
    throw protocol("scaler_unit is not structure { integer, enum }", where);
  return { scaler: scaler.value, unit: unit.value };
}

/** An integer COSEM value (any of the integer types), or null. */
export function integerValue(data: Data | undefined): number | null {
  switch (data?.type) {
    case "integer":
    case "long":
    case "double-long":
    case "unsigned":
    case "long-unsigned":
    case "double-long-unsigned":
      return data.value;
    case "long64":
    case "long64-unsigned":
      return Number.isSafeInteger(Number(data.value)) ? Number(data.value) : null;
    default:
      return null;
  }
}

/** A date-time column (octet-string of 12 or a date-time) in ms, or null when not specified. */
export function dateTimeMs(data: Data | undefined): number | null {
  if (data?.type === "date-time") return dateTimeToMs(data.value);
  if (data?.type !== "octet-string" || data.value.length !== 12) return null;
  try {
    return dateTimeToMs(decodeDateTimeBytes(data.value));
  } catch (error) {
    if (error instanceof DlmsError) return null;
    throw error;
  }
}

function rowsOf(buffer: Data, width: number, where: string): Data[][] {
  if (buffer.type !== "array") throw protocol(`buffer is ${buffer.type}, expected array`, where);
  return buffer.value.map((row, i) => {
    if (row.type !== "structure" || row.value.length !== width)
      throw protocol(`buffer row ${i} does not have the ${width} captured columns`, where);
    return row.value;
  });
}

/**
 * Load-profile rows → readings, oldest first. A row whose seq or clock is unusable becomes a reading the
 * concentrator's validation rejects (counted as bad_reading, its seq remembered as REJECTED) rather than
 * vanishing; a buffer that does not match its capture objects at all is a protocol error.
 */
export function readingsFromProfile(
  buffer: Data,
  layout: ProfileLayout,
  scalers: ReadonlyMap<string, ScalerUnit>,
  where: string,
): MeterReading[] {
  return rowsOf(buffer, layout.columns.length, where).map((row) => {
    const seq = integerValue(row[layout.seqIndex]);
    if (seq === null) throw protocol("a profile row carries no integer seq", where);
    const timestampMs = dateTimeMs(row[layout.clockIndex]) ?? Number.NaN;
    const values = layout.values.flatMap(({ index, obis }) => {
      const value = integerValue(row[index]);
      const su = scalers.get(obis);
      // A column without a value or a scaler_unit leaves the reading short: validation rejects it.
      if (value === null || su === undefined) return [];
      return [{ obis: parseObis(obis), value, scaler: su.scaler, unit: su.unit }];
    });
    return {
      seq,
      timestampMs,
      values: values.length === layout.values.length ? values : [],
    };
  });
}

/** Event-log rows → the sealed records, oldest first (the concentrator decodes and checks them). */
export function eventRecordsFromLog(buffer: Data, layout: EventLogLayout, where: string): Uint8Array[] {
  return rowsOf(buffer, layout.columns.length, where).map((row) => {
    const record = row[layout.recordIndex];
    if (record?.type !== "octet-string") throw protocol("an event row carries no sealed record", where);
    return record.value;
  });
}

const UNREACHABLE_NODE_CODES = new Set([
  "ECONNREFUSED",
  "EHOSTUNREACH",
  "ENETUNREACH",
  "ENOTFOUND",
  "EAI_AGAIN",
  "EADDRNOTAVAIL",
]);

/**
 * Any failure of a DLMS exchange → the concentrator's interface error codes, so it lands in the right
 * iface_err_by_meter bucket: no answer → IFACE_TIMEOUT; the port cannot be opened → IFACE_UNREACHABLE;
 * a corrupted frame (HDLC FCS/HCS, GMAC tag) → IFACE_FRAME_CRC; anything else on the wire → IFACE_PROTOCOL.
 */
export function ifaceErrorOf(error: unknown, where: string): ConcentratorError {
  if (isConcentratorError(error)) return error;
  if (error instanceof DlmsError) {
    if (error.code === "TIMEOUT" || error.code === "LINK_DOWN")
      return new ConcentratorError("IFACE_TIMEOUT", error.message, where);
    if (error.code === "BAD_FCS" || error.code === "BAD_HCS" || error.code === "DECRYPT_FAILED")
      return new ConcentratorError("IFACE_FRAME_CRC", error.message, where);
    return new ConcentratorError("IFACE_PROTOCOL", error.message, where);
  }
  const code = (error as { code?: unknown } | null)?.code;
  const message = error instanceof Error ? error.message : String(error);
  if (typeof code === "string" && UNREACHABLE_NODE_CODES.has(code))
    return new ConcentratorError("IFACE_UNREACHABLE", message, where);
  if (code === "ECONNRESET" || code === "EPIPE" || code === "ETIMEDOUT")
    return new ConcentratorError("IFACE_TIMEOUT", message, where);
  return new ConcentratorError("IFACE_PROTOCOL", message, where);
}

/** Several readers behind one (simulated meters beside DLMS meters): each meter id goes to its own. */
export class RoutingMeterReader implements MeterReader {
  private readonly routes = new Map<string, MeterReader>();

  route(meterId: string, reader: MeterReader): void {
    this.routes.set(meterId, reader);
  }

  async readRegisters(meterId: string): Promise<MeterReading> {
    return this.reader(meterId).readRegisters(meterId);
  }

  async readProfile(meterId: string, fromSeq: number, limit: number): Promise<MeterReading[]> {
    return this.reader(meterId).readProfile(meterId, fromSeq, limit);
  }

  async readEvents(meterId: string, fromSeq: number, limit: number): Promise<Uint8Array[]> {
    return this.reader(meterId).readEvents(meterId, fromSeq, limit);
  }

  private reader(meterId: string): MeterReader {
    const reader = this.routes.get(meterId);
    if (reader === undefined)
      throw new ConcentratorError("IFACE_UNREACHABLE", "no interface serves this meter", meterId);
    return reader;
  }
}
