import { MbusError } from "./errors.ts";
import { decodeFrame, hexByte, type MbusFrame } from "./frame.ts";
import {
  DIF_IDLE_FILLER,
  DIF_MANUFACTURER_DATA,
  DIF_MORE_RECORDS_FOLLOW,
  decodeRecords,
  encodeRecord,
  type MbusDataRecord,
  type RecordSpec,
  scaleToSi,
} from "./records.ts";
import {
  applicationErrorName,
  CI_ALARM,
  CI_APPLICATION_ERROR,
  CI_APPLICATION_RESET,
  CI_DATA_SEND,
  CI_FIXED,
  CI_FIXED_MSB,
  CI_SELECTION,
  CI_VARIABLE_LONG,
  CI_VARIABLE_LONG_MSB,
  CI_VARIABLE_NONE,
  CI_VARIABLE_SHORT,
  ciName,
  decodeManufacturer,
  decodeStatus,
  encodeManufacturer,
  fixedMediumName,
  type MbusStatus,
  mediumName,
} from "./tables.ts";
import type { SiConversion, ValueInfo } from "./vif.ts";

// EN 13757-3 §5: what follows the CI field.

export const LONG_HEADER_BYTES = 12;
export const SHORT_HEADER_BYTES = 4;
export const FIXED_DATA_BYTES = 16;
export const SELECTION_BYTES = 8;

export interface MbusLongHeader {
  kind: "long";
  /** 8 BCD digits as sent (MSB first in the string); non-decimal nibbles (wildcards) stay as hex digits. */
  identification: string;
  manufacturer: string;
  manufacturerCode: number;
  version: number;
  medium: number;
  mediumName: string;
  accessNumber: number;
  status: number;
  statusFlags: MbusStatus;
  signature: number;
}

export interface MbusShortHeader {
  kind: "short";
  accessNumber: number;
  status: number;
  statusFlags: MbusStatus;
  signature: number;
}

/** EN 1434-3 fixed data structure header (CI 0x73/0x77). */
export interface MbusFixedHeader {
  kind: "fixed";
  identification: string;
  accessNumber: number;
  status: number;
  statusFlags: MbusStatus;
  medium: number;
  mediumName: string;
  /** Status bit 7: counters coded binary (else BCD). */
  countersBinary: boolean;
  /** Status bit 6: counters stored at a fixed date (else actual values). */
  countersStored: boolean;
}

export type MbusHeader = MbusLongHeader | MbusShortHeader | MbusFixedHeader;

export interface MbusTelegram {
  ci: number;
  ciName: string;
  structure: "variable" | "fixed" | "application_error" | "alarm" | "selection" | "application_reset";
  /** Mode 2: multi-byte fields MSB first (CI 0x76/0x77). */
  msbFirst: boolean;
  header: MbusHeader | null;
  records: MbusDataRecord[];
  manufacturerData: Uint8Array | null;
  /** DIF 0x1F ended the records: the slave has more in its next telegram. */
  moreRecordsFollow: boolean;
  applicationError: { code: number | null; text: string } | null;
  alarm: number | null;
  /** CI 0x52: the secondary address mask the master selects with. */
  selection: SecondaryAddress | null;
}

/** The secondary address of EN 13757-3 §5 (selection): ID, manufacturer, version, medium; F/FF are wildcards. */
export interface SecondaryAddress {
  identification: string;
  manufacturerCode: number;
  version: number;
  medium: number;
}

function identificationDigits(bytes: Uint8Array, msbFirst: boolean): string {
  let digits = "";
  if (msbFirst) for (let i = 0; i < bytes.length; i += 1) digits += hexByte(bytes[i]!);
  else for (let i = bytes.length - 1; i >= 0; i -= 1) digits += hexByte(bytes[i]!);
  return digits;
}

function u16(bytes: Uint8Array, at: number, msbFirst: boolean): number {
  return msbFirst ? (bytes[at]! << 8) | bytes[at + 1]! : bytes[at]! | (bytes[at + 1]! << 8);
}

function requireBytes(data: Uint8Array, length: number, what: string): void {
  if (data.length < length) {
    throw new MbusError(
      "TRUNCATED",
      `${what} needs ${length} bytes after the CI field, got ${data.length}`,
      "byte 0",
    );
  }
}

export function decodeLongHeader(data: Uint8Array, msbFirst = false): MbusLongHeader {
  requireBytes(data, LONG_HEADER_BYTES, "long header");
  const manufacturerCode = u16(data, 4, msbFirst);
  const medium = data[7]!;
  const status = data[9]!;
  return {
    kind: "long",
    identification: identificationDigits(data.subarray(0, 4), msbFirst),
    manufacturer: decodeManufacturer(manufacturerCode),
    manufacturerCode,
    version: data[6]!,
    medium,
    mediumName: mediumName(medium),
    accessNumber: data[8]!,
    status,
    statusFlags: decodeStatus(status),
    signature: u16(data, 10, msbFirst),
  };
}

export function decodeSecondaryAddress(data: Uint8Array): SecondaryAddress {
  requireBytes(data, SELECTION_BYTES, "secondary address");
  return {
    identification: identificationDigits(data.subarray(0, 4), false),
    manufacturerCode: u16(data, 4, false),
    version: data[6]!,
    medium: data[7]!,
  };
}

function decodeShortHeader(data: Uint8Array, msbFirst: boolean): MbusShortHeader {
  requireBytes(data, SHORT_HEADER_BYTES, "short header");
  return {
    kind: "short",
    accessNumber: data[0]!,
    status: data[1]!,
    statusFlags: decodeStatus(data[1]!),
    signature: u16(data, 2, msbFirst),
  };
}

function emptyTelegram(ci: number, structure: MbusTelegram["structure"], msbFirst: boolean): MbusTelegram {
  return {
    ci,
    ciName: ciName(ci),
    structure,
    msbFirst,
    header: null,
    records: [],
    manufacturerData: null,
    moreRecordsFollow: false,
    applicationError: null,
    alarm: null,
    selection: null,
  };
}

/** Decodes the application layer of a long or control frame: `data` is what follows the CI field. */
export function decodeApplicationLayer(ci: number, data: Uint8Array): MbusTelegram {
  switch (ci) {
    case CI_VARIABLE_LONG:
    case CI_VARIABLE_LONG_MSB: {
      const msbFirst = ci === CI_VARIABLE_LONG_MSB;
      const telegram = emptyTelegram(ci, "variable", msbFirst);
      telegram.header = decodeLongHeader(data, msbFirst);
      return withRecords(telegram, data, LONG_HEADER_BYTES);
    }
    case CI_VARIABLE_SHORT: {
      const telegram = emptyTelegram(ci, "variable", false);
      telegram.header = decodeShortHeader(data, false);
      return withRecords(telegram, data, SHORT_HEADER_BYTES);
    }
    case CI_VARIABLE_NONE:
    case CI_DATA_SEND:
      return withRecords(emptyTelegram(ci, "variable", false), data, 0);
    case CI_FIXED:
    case CI_FIXED_MSB:
      return decodeFixed(ci, data);
    case CI_APPLICATION_ERROR: {
      const telegram = emptyTelegram(ci, "application_error", false);
      const code = data.length > 0 ? data[0]! : null;
      telegram.applicationError = {
        code,
        text: code === null ? "unspecified error" : applicationErrorName(code),
      };
      return telegram;
    }
    case CI_ALARM: {
      const telegram = emptyTelegram(ci, "alarm", false);
      telegram.alarm = data.length > 0 ? data[0]! : null;
      return telegram;
    }
    case CI_SELECTION: {
      const telegram = emptyTelegram(ci, "selection", false);
      telegram.selection = decodeSecondaryAddress(data);
      return telegram;
    }
    case CI_APPLICATION_RESET:
      return emptyTelegram(ci, "application_reset", false);
    default:
      throw new MbusError(
        "UNSUPPORTED_CI",
        `CI 0x${hexByte(ci)} (${ciName(ci)}) is not an application structure this decoder reads`,
        "CI field",
      );
  }
}

function withRecords(telegram: MbusTelegram, data: Uint8Array, headerBytes: number): MbusTelegram {
  const decoded = decodeRecords(data.subarray(headerBytes), {
    msbFirst: telegram.msbFirst,
    baseOffset: headerBytes,
  });
  telegram.records = decoded.records;
  telegram.manufacturerData = decoded.manufacturerData;
  telegram.moreRecordsFollow = decoded.moreRecordsFollow;
  return telegram;
}

// EN 1434-3 fixed-structure units (6 bits per counter); 0x3E "same but historic", 0x3F "without units".
interface FixedUnit {
  quantity: string;
  raw: string;
  unit: string;
  exponent: number;
  si: SiConversion;
}
function fixedUnit(code: number): FixedUnit | null {
  const r = (num: number, den = 1): SiConversion => ({ kind: "ratio", num, den });
  if (code >= 0x02 && code <= 0x0a)
    return { quantity: "energy", raw: "Wh", unit: "J", exponent: code - 0x02, si: r(3600) };
  if (code >= 0x0b && code <= 0x13)
    return { quantity: "energy", raw: "J", unit: "J", exponent: code - 0x0b + 3, si: r(1) };
  if (code >= 0x14 && code <= 0x1c)
    return { quantity: "power", raw: "W", unit: "W", exponent: code - 0x14, si: r(1) };
  if (code >= 0x1d && code <= 0x25) {
    return { quantity: "power", raw: "J/h", unit: "W", exponent: code - 0x1d + 3, si: r(1, 3600) };
  }
  if (code >= 0x26 && code <= 0x2e)
    return { quantity: "volume", raw: "m3", unit: "m3", exponent: code - 0x26 - 6, si: r(1) };
  if (code >= 0x2f && code <= 0x37) {
    return { quantity: "volume_flow", raw: "m3/h", unit: "m3/s", exponent: code - 0x2f - 6, si: r(1, 3600) };
  }
  if (code === 0x38) return { quantity: "temperature", raw: "°C", unit: "°C", exponent: -3, si: r(1) };
  if (code === 0x39) return { quantity: "hca_units", raw: "", unit: "", exponent: 0, si: r(1) };
  if (code === 0x3f) return { quantity: "dimensionless", raw: "", unit: "", exponent: 0, si: r(1) };
  if (code === 0x00) return { quantity: "time", raw: "h,min,s", unit: "", exponent: 0, si: r(1) };
  if (code === 0x01) return { quantity: "date", raw: "D,M,Y", unit: "", exponent: 0, si: r(1) };
  return null;
}

function decodeFixed(ci: number, data: Uint8Array): MbusTelegram {
  const msbFirst = ci === CI_FIXED_MSB;
  requireBytes(data, FIXED_DATA_BYTES, "fixed data structure");
  const telegram = emptyTelegram(ci, "fixed", msbFirst);
  const status = data[5]!;
  const unit1 = data[6]!;
  const unit2 = data[7]!;
  const medium = ((unit1 >> 6) & 0x03) | (((unit2 >> 6) & 0x03) << 2);
  const header: MbusFixedHeader = {
    kind: "fixed",
    identification: identificationDigits(data.subarray(0, 4), msbFirst),
    accessNumber: data[4]!,
    status,
    statusFlags: decodeStatus(status),
    medium,
    mediumName: fixedMediumName(medium),
    countersBinary: (status & 0x80) !== 0,
    countersStored: (status & 0x40) !== 0,
  };
  telegram.header = header;
  const code1 = unit1 & 0x3f;
  let code2 = unit2 & 0x3f;
  let historic2 = header.countersStored;
  if (code2 === 0x3e) {
    code2 = code1;
    historic2 = true;
  }
  telegram.records = [
    fixedCounter(0, 8, data.subarray(8, 12), code1, header.countersStored, header.countersBinary, msbFirst),
    fixedCounter(1, 12, data.subarray(12, 16), code2, historic2, header.countersBinary, msbFirst),
  ];
  if (data.length > FIXED_DATA_BYTES) telegram.manufacturerData = data.slice(FIXED_DATA_BYTES);
  return telegram;
}

function fixedCounter(
  index: number,
  offset: number,
  bytes: Uint8Array,
  unitCode: number,
  historic: boolean,
  binary: boolean,
  msbFirst: boolean,
): MbusDataRecord {
  const ordered = msbFirst ? bytes.slice().reverse() : bytes.slice();
  const unit = fixedUnit(unitCode);
  const info: ValueInfo = {
    table: "primary",
    quantity: unit?.quantity ?? "reserved",
    description:
      unit === null ? `reserved fixed-structure unit 0x${hexByte(unitCode)}` : `fixed counter ${index + 1}`,
    rawUnit: unit?.raw ?? "",
    exponent: unit?.exponent ?? 0,
    unit: unit?.unit ?? "",
    si: unit?.si ?? { kind: "ratio", num: 1, den: 1 },
    kind: unit === null || unitCode <= 0x01 ? "code" : "number",
    notes: [],
    errorCode: null,
    errorText: null,
    manufacturerSpecific: false,
    bytes: Uint8Array.of(unitCode),
  };
  let raw: number | null = null;
  let digits = "";
  if (binary) {
    raw = new DataView(ordered.buffer, ordered.byteOffset, 4).getInt32(0, true);
  } else {
    for (let i = 3; i >= 0; i -= 1) digits += hexByte(ordered[i]!);
    raw = /^[0-9]{8}$/.test(digits) ? Number(digits) : null;
  }
  const record: MbusDataRecord = {
    index,
    offset,
    dif: binary ? 0x04 : 0x0c,
    dife: [],
    dataField: binary ? "int32" : "bcd8",
    function: "instantaneous",
    storageNumber: historic ? 1 : 0,
    tariff: 0,
    subunit: 0,
    vib: info,
    value: null,
    rawValue: raw ?? digits,
    data: ordered,
    dateTime: null,
    text: null,
    manufacturerSpecific: false,
    valueError: raw === null ? `BCD digits ${digits} contain a non-decimal digit` : null,
  };
  if (raw !== null) record.value = info.kind === "number" ? scaleToSi(raw, info.exponent, info.si) : raw;
  return record;
}

// ---------------------------------------------------------------------------------------------------------
// frame + application layer together

export interface DecodedFrame {
  frame: MbusFrame;
  telegram: MbusTelegram | null;
}

/** Decodes one whole frame and, for long and control frames, its application layer. */
export function decodeTelegramFrame(bytes: Uint8Array): DecodedFrame {
  const frame = decodeFrame(bytes);
  if (frame.kind === "long") return { frame, telegram: decodeApplicationLayer(frame.ci, frame.data) };
  if (frame.kind === "control")
    return { frame, telegram: decodeApplicationLayer(frame.ci, new Uint8Array(0)) };
  return { frame, telegram: null };
}

// ---------------------------------------------------------------------------------------------------------
// encode (slave side, used by the simulator and the tests)

export interface LongHeaderSpec {
  kind: "long";
  identification: string;
  manufacturer: string;
  version: number;
  medium: number;
  accessNumber: number;
  status?: number;
  signature?: number;
}

export interface ShortHeaderSpec {
  kind: "short";
  accessNumber: number;
  status?: number;
  signature?: number;
}

export interface VariableDataSpec {
  header: LongHeaderSpec | ShortHeaderSpec | { kind: "none" };
  records: readonly RecordSpec[];
  manufacturerData?: Uint8Array;
  moreRecordsFollow?: boolean;
  /** Idle filler bytes (DIF 0x2F) appended after the records, as some meters pad their telegrams. */
  idleFillers?: number;
}

function checkByte(value: number, what: string): number {
  if (!Number.isInteger(value) || value < 0 || value > 0xff) {
    throw new MbusError("BAD_FIELD", `${what} must be a byte 0..255, got ${value}`);
  }
  return value;
}

/** 8 hex digits (BCD, or F wildcards for a selection mask) → 4 bytes LSB first. */
export function encodeIdentification(identification: string): Uint8Array {
  if (!/^[0-9A-Fa-f]{8}$/.test(identification)) {
    throw new MbusError(
      "BAD_FIELD",
      `identification must be 8 digits, got ${JSON.stringify(identification)}`,
    );
  }
  const out = new Uint8Array(4);
  for (let i = 0; i < 4; i += 1) out[i] = Number.parseInt(identification.slice(6 - 2 * i, 8 - 2 * i), 16);
  return out;
}

export function encodeLongHeader(spec: LongHeaderSpec): Uint8Array {
  if (!/^[0-9]{8}$/.test(spec.identification)) {
    throw new MbusError(
      "BAD_FIELD",
      `identification must be 8 decimal digits, got ${JSON.stringify(spec.identification)}`,
    );
  }
  const out = new Uint8Array(LONG_HEADER_BYTES);
  out.set(encodeIdentification(spec.identification), 0);
  const m = encodeManufacturer(spec.manufacturer);
  out[4] = m & 0xff;
  out[5] = m >> 8;
  out[6] = checkByte(spec.version, "version");
  out[7] = checkByte(spec.medium, "medium");
  out[8] = checkByte(spec.accessNumber, "access number");
  out[9] = checkByte(spec.status ?? 0, "status");
  const signature = spec.signature ?? 0;
  out[10] = checkByte(signature & 0xff, "signature");
  out[11] = checkByte(signature >> 8, "signature");
  return out;
}

export function encodeSecondaryAddress(address: SecondaryAddress): Uint8Array {
  const out = new Uint8Array(SELECTION_BYTES);
  out.set(encodeIdentification(address.identification), 0);
  if (
    !Number.isInteger(address.manufacturerCode) ||
    address.manufacturerCode < 0 ||
    address.manufacturerCode > 0xffff
  ) {
    throw new MbusError("BAD_FIELD", `manufacturer code must be 0..0xFFFF, got ${address.manufacturerCode}`);
  }
  out[4] = address.manufacturerCode & 0xff;
  out[5] = address.manufacturerCode >> 8;
  out[6] = checkByte(address.version, "version");
  out[7] = checkByte(address.medium, "medium");
  return out;
}

/** Builds the CI field and the user data of a variable data structure response. */
export function encodeVariableData(spec: VariableDataSpec): { ci: number; data: Uint8Array } {
  const parts: Uint8Array[] = [];
  let ci = CI_VARIABLE_NONE;
  if (spec.header.kind === "long") {
    ci = CI_VARIABLE_LONG;
    parts.push(encodeLongHeader(spec.header));
  } else if (spec.header.kind === "short") {
    ci = CI_VARIABLE_SHORT;
    const signature = spec.header.signature ?? 0;
    parts.push(
      Uint8Array.of(
        checkByte(spec.header.accessNumber, "access number"),
        checkByte(spec.header.status ?? 0, "status"),
        checkByte(signature & 0xff, "signature"),
        checkByte(signature >> 8, "signature"),
      ),
    );
  }
  for (const record of spec.records) parts.push(encodeRecord(record));
  for (let i = 0; i < (spec.idleFillers ?? 0); i += 1) parts.push(Uint8Array.of(DIF_IDLE_FILLER));
  if (spec.moreRecordsFollow === true || spec.manufacturerData !== undefined) {
    parts.push(
      Uint8Array.of(spec.moreRecordsFollow === true ? DIF_MORE_RECORDS_FOLLOW : DIF_MANUFACTURER_DATA),
    );
    if (spec.manufacturerData !== undefined) parts.push(spec.manufacturerData);
  }
  const length = parts.reduce((sum, part) => sum + part.length, 0);
  const data = new Uint8Array(length);
  let at = 0;
  for (const part of parts) {
    data.set(part, at);
    at += part.length;
  }
  return { ci, data };
}
