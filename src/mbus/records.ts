import { decodeMbusTime, type MbusDateTime, timeTypeForLength } from "./datetime.ts";
import { MbusError } from "./errors.ts";
import { hexByte } from "./frame.ts";
import { toHex } from "./hex.ts";
import { decodeManufacturer, mediumName } from "./tables.ts";
import {
  decodeVib,
  encodeVib,
  latin1Reversed,
  type SiConversion,
  type ValueInfo,
  type VibSpec,
} from "./vif.ts";

// EN 13757-3 §6: a data record is DIF [DIFE…] VIF [VIFE…] data. This file holds the data information block,
// the data field codings and the record codec; the telegram structures live in telegram.ts.

/** EN 13757-3 §6.3: at most 10 DIFEs follow a DIF. */
export const MBUS_DIFE_MAX = 10;
/** A record needs at least a DIF and a VIF, so a telegram's user data bounds its record count; this is the cap. */
export const MBUS_RECORDS_MAX = 256;

export const DIF_MANUFACTURER_DATA = 0x0f;
export const DIF_MORE_RECORDS_FOLLOW = 0x1f;
export const DIF_IDLE_FILLER = 0x2f;
export const DIF_GLOBAL_READOUT = 0x7f;

export type DataFieldCoding =
  | "none"
  | "int8"
  | "int16"
  | "int24"
  | "int32"
  | "real32"
  | "int48"
  | "int64"
  | "selection"
  | "bcd2"
  | "bcd4"
  | "bcd6"
  | "bcd8"
  | "variable"
  | "bcd12";

// EN 13757-3 Table 4: DIF bits 0–3. 0xF (special functions) is handled before this table is consulted.
const CODINGS: readonly DataFieldCoding[] = [
  "none",
  "int8",
  "int16",
  "int24",
  "int32",
  "real32",
  "int48",
  "int64",
  "selection",
  "bcd2",
  "bcd4",
  "bcd6",
  "bcd8",
  "variable",
  "bcd12",
];
const CODING_LENGTH: Readonly<Record<DataFieldCoding, number>> = {
  none: 0,
  int8: 1,
  int16: 2,
  int24: 3,
  int32: 4,
  real32: 4,
  int48: 6,
  int64: 8,
  selection: 0,
  bcd2: 1,
  bcd4: 2,
  bcd6: 3,
  bcd8: 4,
  variable: -1,
  bcd12: 6,
};

export function codingLength(coding: DataFieldCoding): number {
  return CODING_LENGTH[coding];
}

export type MbusFunction = "instantaneous" | "maximum" | "minimum" | "error";
const FUNCTIONS: readonly MbusFunction[] = ["instantaneous", "maximum", "minimum", "error"];

export interface MbusDataRecord {
  /** Position in the telegram, from 0. */
  index: number;
  /** Offset of the DIF in the application data (CI excluded). */
  offset: number;
  dif: number;
  dife: number[];
  dataField: DataFieldCoding;
  function: MbusFunction;
  storageNumber: number;
  tariff: number;
  subunit: number;
  /** Decoded VIF/VIFE chain: quantity, units, exponent, notes. */
  vib: ValueInfo;
  /** Value in `vib.unit` (SI) with the exponent applied; a string for text and ISO dates; null when none. */
  value: number | string | null;
  /** The value as sent, before scaling: an integer (bigint beyond 2^53), a real, BCD digits or text. */
  rawValue: number | bigint | string | null;
  /** The data bytes as sent (after DIF/DIFE/VIF/VIFE; LVAR byte excluded). */
  data: Uint8Array;
  dateTime: MbusDateTime | null;
  /** A readable interpretation of codes: medium name, manufacturer letters. */
  text: string | null;
  /** Manufacturer specific VIF, or a VIFE said the data of this block are manufacturer specific. */
  manufacturerSpecific: boolean;
  /** Why `value` is null although data was present (invalid BCD digit, invalid date…). */
  valueError: string | null;
}

// ---------------------------------------------------------------------------------------------------------
// number helpers

function pow10(exponent: number): number {
  // 10 ** e is exact for 0 ≤ e ≤ 22, the range VIF exponents use.
  return 10 ** exponent;
}

/** Applies the exponent and the SI conversion with at most one rounding for integer inputs. */
export function scaleToSi(raw: number, exponent: number, si: SiConversion): number {
  const up = pow10(Math.max(exponent, 0));
  const down = pow10(Math.max(-exponent, 0));
  let value: number;
  if (si.kind === "fahrenheit") value = ((raw * up - 32 * down) * 5) / (down * 9);
  else if (si.kind === "fahrenheit_difference") value = (raw * up * 5) / (down * 9);
  else value = (raw * si.num * up) / (si.den * down);
  return Object.is(value, -0) ? 0 : value;
}

function readUnsigned(bytes: Uint8Array): bigint {
  let value = 0n;
  for (let i = bytes.length - 1; i >= 0; i -= 1) value = (value << 8n) | BigInt(bytes[i]!);
  return value;
}

function readSigned(bytes: Uint8Array): bigint {
  const unsigned = readUnsigned(bytes);
  const bits = BigInt(bytes.length * 8);
  return bytes.length > 0 && (bytes[bytes.length - 1]! & 0x80) !== 0 ? unsigned - (1n << bits) : unsigned;
}

function narrow(value: bigint): number | bigint {
  return value >= BigInt(Number.MIN_SAFE_INTEGER) && value <= BigInt(Number.MAX_SAFE_INTEGER)
    ? Number(value)
    : value;
}

interface BcdResult {
  value: number | bigint | null;
  digits: string;
}

// EN 13757-3 Annex A type A: BCD LSB first; a most significant nibble 0xF marks a negative value.
function readBcd(bytes: Uint8Array): BcdResult {
  let digits = "";
  for (let i = bytes.length - 1; i >= 0; i -= 1) digits += hexByte(bytes[i]!);
  let negative = false;
  let body = digits;
  if (digits.startsWith("F")) {
    negative = true;
    body = digits.slice(1);
  }
  if (!/^[0-9]*$/.test(body)) return { value: null, digits };
  const magnitude = body.length === 0 ? 0n : BigInt(body);
  return { value: narrow(negative ? -magnitude : magnitude), digits };
}

// ---------------------------------------------------------------------------------------------------------
// decode

export interface DecodeRecordsOptions {
  /** Mode 2 (CI 0x76/0x77): multi-byte values are sent MSB first. */
  msbFirst?: boolean;
  /** Offset of `bytes[0]` within the application data, for error positions. */
  baseOffset?: number;
}

export interface DecodedRecords {
  records: MbusDataRecord[];
  manufacturerData: Uint8Array | null;
  moreRecordsFollow: boolean;
}

/** Decodes the data records of a variable data structure: `bytes` starts at the first DIF. */
export function decodeRecords(bytes: Uint8Array, options: DecodeRecordsOptions = {}): DecodedRecords {
  const base = options.baseOffset ?? 0;
  const records: MbusDataRecord[] = [];
  let at = 0;
  while (at < bytes.length) {
    const dif = bytes[at]!;
    if (dif === DIF_IDLE_FILLER) {
      at += 1;
      continue;
    }
    if (dif === DIF_MANUFACTURER_DATA || dif === DIF_MORE_RECORDS_FOLLOW) {
      // EN 13757-3 Table 6: manufacturer specific data to the end of the user data; 0x1F also says
      // more records follow in the next telegram.
      return {
        records,
        manufacturerData: bytes.slice(at + 1),
        moreRecordsFollow: dif === DIF_MORE_RECORDS_FOLLOW,
      };
    }
    if (records.length >= MBUS_RECORDS_MAX) {
      throw new MbusError(
        "BAD_DIF",
        `more than ${MBUS_RECORDS_MAX} records in one telegram`,
        `byte ${base + at}`,
      );
    }
    const { record, next } = decodeRecord(bytes, at, records.length, options);
    records.push(record);
    at = next;
  }
  return { records, manufacturerData: null, moreRecordsFollow: false };
}

export function decodeRecord(
  bytes: Uint8Array,
  offset: number,
  index: number,
  options: DecodeRecordsOptions = {},
): { record: MbusDataRecord; next: number } {
  const base = options.baseOffset ?? 0;
  const where = `record ${index}, byte ${base + offset}`;
  const dif = bytes[offset]!;
  if ((dif & 0x0f) === 0x0f) {
    const what =
      dif === DIF_GLOBAL_READOUT
        ? "global readout request (master to slave only)"
        : "reserved special function";
    throw new MbusError("BAD_DIF", `DIF 0x${hexByte(dif)} is a ${what}`, where);
  }
  const coding = CODINGS[dif & 0x0f]!;
  const fn = FUNCTIONS[(dif >> 4) & 0x03]!;
  let storageNumber = (dif >> 6) & 0x01;
  let tariff = 0;
  let subunit = 0;
  const dife: number[] = [];
  let at = offset + 1;
  let extension = (dif & 0x80) !== 0;
  while (extension) {
    if (dife.length >= MBUS_DIFE_MAX) {
      throw new MbusError("BAD_DIF", `more than ${MBUS_DIFE_MAX} DIFEs`, `${where}, byte ${base + at}`);
    }
    if (at >= bytes.length) throw new MbusError("TRUNCATED", "DIFE missing: the telegram ends", where);
    const b = bytes[at]!;
    const n = dife.length;
    // EN 13757-3 Table 7: each DIFE adds 4 storage bits, 2 tariff bits and 1 subunit bit above the previous ones.
    storageNumber += (b & 0x0f) * 2 ** (1 + 4 * n);
    tariff += ((b >> 4) & 0x03) * 2 ** (2 * n);
    subunit += ((b >> 6) & 0x01) * 2 ** n;
    dife.push(b);
    extension = (b & 0x80) !== 0;
    at += 1;
  }
  if (at >= bytes.length) throw new MbusError("TRUNCATED", "VIF missing: the telegram ends", where);
  const { info, next } = decodeVib(bytes, at, where);
  at = next;

  let length = CODING_LENGTH[coding];
  let lvar: number | null = null;
  if (coding === "variable") {
    if (at >= bytes.length) throw new MbusError("TRUNCATED", "LVAR missing: the telegram ends", where);
    lvar = bytes[at]!;
    at += 1;
    length = lvarLength(lvar, where);
  }
  if (at + length > bytes.length) {
    throw new MbusError(
      "TRUNCATED",
      `data field ${coding} needs ${length} byte(s), ${bytes.length - at} remain`,
      `${where}, byte ${base + at}`,
    );
  }
  const data = bytes.slice(at, at + length);
  at += length;

  const record: MbusDataRecord = {
    index,
    offset: base + offset,
    dif,
    dife,
    dataField: coding,
    function: fn,
    storageNumber,
    tariff,
    subunit,
    vib: info,
    value: null,
    rawValue: null,
    data,
    dateTime: null,
    text: null,
    manufacturerSpecific: info.manufacturerSpecific,
    valueError: null,
  };
  interpretData(record, lvar, options.msbFirst === true);
  return { record, next: at };
}

// EN 13757-3 Table 5 (LVAR): 00–BF text of LVAR characters, C0–C9 positive BCD of 2·(LVAR−C0) digits,
// D0–D9 negative BCD, E0–EF binary of LVAR−E0 bytes, F0–F4 binary of 4·(LVAR−EC) bytes, F5 48 bytes,
// F6 64 bytes, F7–FF reserved.
function lvarLength(lvar: number, where: string): number {
  if (lvar <= 0xbf) return lvar;
  if (lvar >= 0xc0 && lvar <= 0xc9) return lvar - 0xc0;
  if (lvar >= 0xd0 && lvar <= 0xd9) return lvar - 0xd0;
  if (lvar >= 0xe0 && lvar <= 0xef) return lvar - 0xe0;
  if (lvar >= 0xf0 && lvar <= 0xf4) return 4 * (lvar - 0xec);
  if (lvar === 0xf5) return 48;
  if (lvar === 0xf6) return 64;
  throw new MbusError("BAD_DATA", `LVAR 0x${hexByte(lvar)} is reserved`, where);
}

function interpretData(record: MbusDataRecord, lvar: number | null, msbFirst: boolean): void {
  const { vib } = record;
  const coding = record.dataField;
  const bytes = msbFirst && coding !== "variable" ? record.data.slice().reverse() : record.data;
  if (coding === "none" || coding === "selection") return;

  if (vib.manufacturerSpecific) {
    // The data is the manufacturer's: keep it raw, give no value a reader could mistake for a measurement.
    record.rawValue = toHex(record.data);
    return;
  }

  if (coding === "variable") {
    const l = lvar!;
    if (l <= 0xbf) {
      const text = latin1Reversed(bytes);
      record.rawValue = text;
      record.value = text;
      return;
    }
    if (l >= 0xc0 && l <= 0xd9) {
      const bcd = readBcd(bytes);
      if (bcd.value === null) {
        record.rawValue = bcd.digits;
        record.valueError = `BCD digits ${bcd.digits} contain a non-decimal digit`;
        return;
      }
      const signed = l >= 0xd0 ? -BigInt(bcd.value) : BigInt(bcd.value);
      setNumeric(record, narrow(signed));
      return;
    }
    setNumeric(record, narrow(readUnsigned(bytes)));
    return;
  }

  if (coding === "real32") {
    const view = new DataView(bytes.buffer, bytes.byteOffset, 4);
    const raw = view.getFloat32(0, true);
    record.rawValue = raw;
    if (!Number.isFinite(raw)) {
      record.valueError = `real32 is ${raw}`;
      return;
    }
    if (vib.kind === "number") record.value = scaleToSi(raw, vib.exponent, vib.si);
    else record.value = raw;
    return;
  }

  if (coding.startsWith("bcd")) {
    const bcd = readBcd(bytes);
    if (bcd.value === null) {
      record.rawValue = bcd.digits;
      record.valueError = `BCD digits ${bcd.digits} contain a non-decimal digit`;
      return;
    }
    setNumeric(record, bcd.value);
    return;
  }

  // binary integers (type B signed, type C unsigned for codes)
  if (vib.kind === "date" || vib.kind === "date_time") {
    const type = timeTypeForLength(bytes.length);
    record.rawValue = narrow(readUnsigned(bytes));
    if (type === null) {
      record.valueError = `no M-Bus time type has ${bytes.length} bytes`;
      return;
    }
    const dateTime = decodeMbusTime(bytes);
    record.dateTime = dateTime;
    record.value = dateTime.iso;
    if (!dateTime.valid) record.valueError = `time type ${dateTime.type} marked invalid or out of range`;
    return;
  }
  const unsigned = vib.kind === "code";
  setNumeric(record, narrow(unsigned ? readUnsigned(bytes) : readSigned(bytes)));
}

function setNumeric(record: MbusDataRecord, raw: number | bigint): void {
  const { vib } = record;
  record.rawValue = raw;
  if (vib.kind === "code") {
    record.value = typeof raw === "bigint" ? raw.toString() : raw;
    if (typeof raw === "number") {
      if (vib.table === "fd" && vib.quantity === "medium") record.text = mediumName(raw & 0xff);
      if (vib.table === "fd" && vib.quantity === "manufacturer")
        record.text = decodeManufacturer(raw & 0xffff);
    }
    return;
  }
  if (vib.kind === "date" || vib.kind === "date_time") {
    // A time point sent as BCD or LVAR is not one of the Annex A time types; keep the number.
    record.value = typeof raw === "bigint" ? raw.toString() : raw;
    return;
  }
  record.value = scaleToSi(Number(raw), vib.exponent, vib.si);
}

// ---------------------------------------------------------------------------------------------------------
// encode

export interface RecordSpec {
  function?: MbusFunction;
  storageNumber?: number;
  tariff?: number;
  subunit?: number;
  dataField: DataFieldCoding;
  vib: VibSpec;
  /**
   * int*: number or bigint (two's complement); real32: number; bcd*: a non-negative or negative integer;
   * variable: a string (text) or bytes (binary number, LVAR 0xE0+n); none/selection: omitted.
   */
  value?: number | bigint | string | Uint8Array;
}

function checkNonNegativeInteger(value: number, max: number, what: string): void {
  if (!Number.isSafeInteger(value) || value < 0 || value > max) {
    throw new MbusError("BAD_FIELD", `${what} must be an integer 0..${max}, got ${value}`);
  }
}

/** DIF and DIFEs for a coding, function, storage number, tariff and subunit (EN 13757-3 Tables 4 and 7). */
export function encodeDib(
  spec: Pick<RecordSpec, "function" | "storageNumber" | "tariff" | "subunit" | "dataField">,
): Uint8Array {
  const storage = spec.storageNumber ?? 0;
  const tariff = spec.tariff ?? 0;
  const subunit = spec.subunit ?? 0;
  checkNonNegativeInteger(storage, 2 ** (1 + 4 * MBUS_DIFE_MAX) - 1, "storage number");
  checkNonNegativeInteger(tariff, 2 ** (2 * MBUS_DIFE_MAX) - 1, "tariff");
  checkNonNegativeInteger(subunit, 2 ** MBUS_DIFE_MAX - 1, "subunit");
  const codingIndex = CODINGS.indexOf(spec.dataField);
  if (codingIndex < 0) throw new MbusError("BAD_FIELD", `unknown data field coding ${spec.dataField}`);
  const fnIndex = FUNCTIONS.indexOf(spec.function ?? "instantaneous");
  if (fnIndex < 0) throw new MbusError("BAD_FIELD", `unknown function ${spec.function}`);
  let storageHigh = Math.floor(storage / 2);
  let t = tariff;
  let u = subunit;
  const dife: number[] = [];
  while (storageHigh > 0 || t > 0 || u > 0) {
    dife.push((storageHigh % 16) | ((t % 4) << 4) | ((u % 2) << 6));
    storageHigh = Math.floor(storageHigh / 16);
    t = Math.floor(t / 4);
    u = Math.floor(u / 2);
  }
  const out = [codingIndex | (fnIndex << 4) | ((storage % 2) << 6) | (dife.length > 0 ? 0x80 : 0)];
  dife.forEach((b, i) => {
    out.push(b | (i < dife.length - 1 ? 0x80 : 0));
  });
  return Uint8Array.from(out);
}

function toBigInt(value: RecordSpec["value"], what: string): bigint {
  if (typeof value === "bigint") return value;
  if (typeof value === "number" && Number.isSafeInteger(value)) return BigInt(value);
  throw new MbusError("BAD_FIELD", `${what} needs an integer value, got ${String(value)}`);
}

function encodeInteger(value: bigint, length: number): Uint8Array {
  const bits = BigInt(length * 8);
  const min = -(1n << (bits - 1n));
  const max = (1n << bits) - 1n; // unsigned codes may use the full width
  if (value < min || value > max) {
    throw new MbusError("BAD_FIELD", `${value} does not fit ${length} byte(s)`);
  }
  let v = value < 0n ? value + (1n << bits) : value;
  const out = new Uint8Array(length);
  for (let i = 0; i < length; i += 1) {
    out[i] = Number(v & 0xffn);
    v >>= 8n;
  }
  return out;
}

function encodeBcd(value: bigint, length: number): Uint8Array {
  const digits = length * 2;
  const negative = value < 0n;
  const text = (negative ? -value : value).toString();
  if (text.length > (negative ? digits - 1 : digits)) {
    throw new MbusError("BAD_FIELD", `${value} does not fit ${digits} BCD digits`);
  }
  const padded = (negative ? "F" : "") + text.padStart(negative ? digits - 1 : digits, "0");
  const out = new Uint8Array(length);
  for (let i = 0; i < length; i += 1) {
    const pair = padded.slice(digits - 2 * (i + 1), digits - 2 * i);
    out[i] = Number.parseInt(pair, 16);
  }
  return out;
}

export function encodeRecord(spec: RecordSpec): Uint8Array {
  const dib = encodeDib(spec);
  const vib = encodeVib(spec.vib);
  let data: Uint8Array;
  const coding = spec.dataField;
  if (coding === "none" || coding === "selection") data = new Uint8Array(0);
  else if (coding === "real32") {
    if (typeof spec.value !== "number") throw new MbusError("BAD_FIELD", "real32 needs a number value");
    data = new Uint8Array(4);
    new DataView(data.buffer).setFloat32(0, spec.value, true);
  } else if (coding === "variable") {
    if (typeof spec.value === "string") {
      const latin1 = [...spec.value].every((c) => c.charCodeAt(0) <= 0xff);
      if (spec.value.length > 0xbf || !latin1) {
        throw new MbusError("BAD_FIELD", "variable-length text must be up to 191 ISO 8859-1 characters");
      }
      const chars = spec.value;
      data = new Uint8Array(chars.length + 1);
      data[0] = chars.length;
      for (let i = 0; i < chars.length; i += 1) data[chars.length - i] = chars.charCodeAt(i);
    } else if (spec.value instanceof Uint8Array) {
      if (spec.value.length > 15)
        throw new MbusError("BAD_FIELD", "variable-length binary here is up to 15 bytes");
      data = new Uint8Array(spec.value.length + 1);
      data[0] = 0xe0 + spec.value.length;
      data.set(spec.value, 1);
    } else {
      throw new MbusError("BAD_FIELD", "variable-length data needs a string or bytes");
    }
  } else if (coding.startsWith("bcd")) {
    data = encodeBcd(toBigInt(spec.value, coding), CODING_LENGTH[coding]);
  } else {
    data = encodeInteger(toBigInt(spec.value, coding), CODING_LENGTH[coding]);
  }
  const out = new Uint8Array(dib.length + vib.length + data.length);
  out.set(dib, 0);
  out.set(vib, dib.length);
  out.set(data, dib.length + vib.length);
  return out;
}
