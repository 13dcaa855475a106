import { MbusError } from "./errors.ts";

// EN 13757-3 Annex A time types, all sent LSB first:
//   G (2 bytes, date): day bits 0–4, year bits 5–7 (low) and 12–15 (high), month bits 8–11.
//   F (4 bytes, date and time): minute bits 0–5, IV (time invalid) bit 7, hour bits 8–12, hundred-year
//     bits 13–14, SU (summer time) bit 15, then a type G date in bytes 2–3.
//   I (6 bytes, date and time with seconds): second bits 0–5, minute bits 8–13, IV bit 15, hour bits 16–20,
//     a type G date in bytes 3–4, byte 5 week data (not interpreted here).
//   J (3 bytes, time): second, minute, hour in the low bits of each byte.

export type MbusTimeType = "G" | "F" | "I" | "J";

export interface MbusDateTime {
  type: MbusTimeType;
  year: number | null;
  month: number | null;
  day: number | null;
  hour: number | null;
  minute: number | null;
  second: number | null;
  /** IV flag set by the meter, or a field outside its calendar range. */
  valid: boolean;
  summerTime: boolean;
  /** Meter-local time as ISO 8601 without zone (`2013-09-10T21:56`), null when not valid. */
  iso: string | null;
}

const pad = (n: number, width = 2) => String(n).padStart(width, "0");

// Before EN 13757-3:2013 the hundred-year bits were reserved (0); two-digit years below 81 are read as 20xx
// then, the convention of the M-Bus users group documentation.
function fullYear(yy: number, hundredYear: number): number {
  if (hundredYear > 0) return 1900 + 100 * hundredYear + yy;
  return yy < 81 ? 2000 + yy : 1900 + yy;
}

function dateFields(lo: number, hi: number): { year7: number; month: number; day: number } {
  return { day: lo & 0x1f, year7: ((lo >> 5) & 0x07) | (((hi >> 4) & 0x0f) << 3), month: hi & 0x0f };
}

function dateInRange(day: number, month: number, yy: number): boolean {
  return day >= 1 && day <= 31 && month >= 1 && month <= 12 && yy <= 99;
}

export function timeTypeForLength(length: number): MbusTimeType | null {
  if (length === 2) return "G";
  if (length === 4) return "F";
  if (length === 6) return "I";
  if (length === 3) return "J";
  return null;
}

/** Decodes the time types by their length; the caller picked the length from the DIF. */
export function decodeMbusTime(bytes: Uint8Array): MbusDateTime {
  const type = timeTypeForLength(bytes.length);
  if (type === null) {
    throw new MbusError("BAD_DATA", `no M-Bus time type has ${bytes.length} bytes (2 G, 3 J, 4 F, 6 I)`);
  }
  const b = (i: number) => bytes[i]!;
  if (type === "G") {
    const { day, month, year7 } = dateFields(b(0), b(1));
    const valid = dateInRange(day, month, year7);
    const year = fullYear(year7, 0);
    return {
      type,
      year,
      month,
      day,
      hour: null,
      minute: null,
      second: null,
      valid,
      summerTime: false,
      iso: valid ? `${pad(year, 4)}-${pad(month)}-${pad(day)}` : null,
    };
  }
  if (type === "J") {
    const second = b(0) & 0x3f;
    const minute = b(1) & 0x3f;
    const hour = b(2) & 0x1f;
    const valid = second <= 59 && minute <= 59 && hour <= 23;
    return {
      type,
      year: null,
      month: null,
      day: null,
      hour,
      minute,
      second,
      valid,
      summerTime: false,
      iso: valid ? `${pad(hour)}:${pad(minute)}:${pad(second)}` : null,
    };
  }
  if (type === "F") {
    const minute = b(0) & 0x3f;
    const invalidFlag = (b(0) & 0x80) !== 0;
    const hour = b(1) & 0x1f;
    const hundredYear = (b(1) >> 5) & 0x03;
    const summerTime = (b(1) & 0x80) !== 0;
    const { day, month, year7 } = dateFields(b(2), b(3));
    const year = fullYear(year7, hundredYear);
    const valid = !invalidFlag && minute <= 59 && hour <= 23 && dateInRange(day, month, year7);
    return {
      type,
      year,
      month,
      day,
      hour,
      minute,
      second: null,
      valid,
      summerTime,
      iso: valid ? `${pad(year, 4)}-${pad(month)}-${pad(day)}T${pad(hour)}:${pad(minute)}` : null,
    };
  }
  const second = b(0) & 0x3f;
  const minute = b(1) & 0x3f;
  const invalidFlag = (b(1) & 0x80) !== 0;
  const hour = b(2) & 0x1f;
  const { day, month, year7 } = dateFields(b(3), b(4));
  const year = fullYear(year7, 0);
  const valid = !invalidFlag && second <= 59 && minute <= 59 && hour <= 23 && dateInRange(day, month, year7);
  return {
    type,
    year,
    month,
    day,
    hour,
    minute,
    second,
    valid,
    summerTime: false,
    iso: valid
      ? `${pad(year, 4)}-${pad(month)}-${pad(day)}T${pad(hour)}:${pad(minute)}:${pad(second)}`
      : null,
  };
}

export interface CalendarFields {
  year: number;
  month: number;
  day: number;
  hour?: number;
  minute?: number;
  summerTime?: boolean;
}

function checkRange(value: number, min: number, max: number, what: string): void {
  if (!Number.isInteger(value) || value < min || value > max) {
    throw new MbusError("BAD_FIELD", `${what} must be ${min}..${max}, got ${value}`);
  }
}

/** Type G date, years 2000–2080 and 1981–1999 (the range that decodes back unchanged). */
export function encodeTypeG(fields: CalendarFields): Uint8Array {
  checkRange(fields.year, 1981, 2080, "year");
  checkRange(fields.month, 1, 12, "month");
  checkRange(fields.day, 1, 31, "day");
  const yy = fields.year % 100;
  return Uint8Array.of((fields.day & 0x1f) | ((yy & 0x07) << 5), (fields.month & 0x0f) | ((yy >> 3) << 4));
}

/** Type F date and time, hundred-year bits left 0 (see fullYear). */
export function encodeTypeF(fields: CalendarFields): Uint8Array {
  const hour = fields.hour ?? 0;
  const minute = fields.minute ?? 0;
  checkRange(hour, 0, 23, "hour");
  checkRange(minute, 0, 59, "minute");
  const date = encodeTypeG(fields);
  return Uint8Array.of(minute, hour | (fields.summerTime === true ? 0x80 : 0), date[0]!, date[1]!);
}
