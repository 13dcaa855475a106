import { DlmsError, DlmsReader, encodeLength } from "./errors.ts";

// A-XDR encoding of the COSEM `Data` CHOICE (IEC 62056-6-2 / Blue Book §4.1.5; tags as in the
// Green Book's xDLMS ASN.1): encode and decode side by side, bounded in depth and element count.

export const AXDR_DEPTH_MAX = 16;
export const AXDR_ELEMENTS_MAX = 65_536;

export interface CosemDateTime {
  /** null where the field holds its "not specified" value (0xFFFF / 0xFF / 0x8000). */
  readonly year: number | null;
  readonly month: number | null;
  readonly day: number | null;
  readonly dayOfWeek: number | null;
  readonly hour: number | null;
  readonly minute: number | null;
  readonly second: number | null;
  readonly hundredths: number | null;
  /** Minutes from local time to UTC; null = not specified. */
  readonly deviation: number | null;
  readonly clockStatus: number | null;
}

export type Data =
  | { type: "null-data" }
  | { type: "array"; value: Data[] }
  | { type: "structure"; value: Data[] }
  | { type: "boolean"; value: boolean }
  | { type: "bit-string"; bits: number; value: Uint8Array }
  | { type: "double-long"; value: number }
  | { type: "double-long-unsigned"; value: number }
  | { type: "octet-string"; value: Uint8Array }
  | { type: "visible-string"; value: string }
  | { type: "utf8-string"; value: string }
  | { type: "bcd"; value: number }
  | { type: "integer"; value: number }
  | { type: "long"; value: number }
  | { type: "unsigned"; value: number }
  | { type: "long-unsigned"; value: number }
  | { type: "long64"; value: bigint }
  | { type: "long64-unsigned"; value: bigint }
  | { type: "enum"; value: number }
  | { type: "float32"; value: number }
  | { type: "float64"; value: number }
  | { type: "date-time"; value: CosemDateTime }
  | { type: "date"; value: Pick<CosemDateTime, "year" | "month" | "day" | "dayOfWeek"> }
  | { type: "time"; value: Pick<CosemDateTime, "hour" | "minute" | "second" | "hundredths"> }
  | { type: "dont-care" };

export const DATA_TAGS = {
  "null-data": 0,
  array: 1,
  structure: 2,
  boolean: 3,
  "bit-string": 4,
  "double-long": 5,
  "double-long-unsigned": 6,
  "octet-string": 9,
  "visible-string": 10,
  "utf8-string": 12,
  bcd: 13,
  integer: 15,
  long: 16,
  unsigned: 17,
  "long-unsigned": 18,
  "compact-array": 19,
  long64: 20,
  "long64-unsigned": 21,
  enum: 22,
  float32: 23,
  float64: 24,
  "date-time": 25,
  date: 26,
  time: 27,
  "dont-care": 255,
} as const;

const NOT_SPECIFIED_8 = 0xff;

function opt8(v: number): number | null {
  return v === NOT_SPECIFIED_8 ? null : v;
}

export function decodeDateTimeBytes(bytes: Uint8Array): CosemDateTime {
  if (bytes.length !== 12) throw new DlmsError("BAD_LENGTH", `date-time is 12 octets, got ${bytes.length}`);
  const view = new DataView(bytes.buffer, bytes.byteOffset, 12);
  const year = view.getUint16(0);
  const deviation = view.getInt16(9);
  return {
    year: year === 0xffff ? null : year,
    month: opt8(bytes[2]!),
    day: opt8(bytes[3]!),
    dayOfWeek: opt8(bytes[4]!),
    hour: opt8(bytes[5]!),
    minute: opt8(bytes[6]!),
    second: opt8(bytes[7]!),
    hundredths: opt8(bytes[8]!),
    deviation: deviation === -0x8000 ? null : deviation,
    clockStatus: opt8(bytes[11]!),
  };
}

export function encodeDateTimeBytes(dt: CosemDateTime): Uint8Array {
  const out = new Uint8Array(12);
  const view = new DataView(out.buffer);
  view.setUint16(0, dt.year ?? 0xffff);
  const fields = [dt.month, dt.day, dt.dayOfWeek, dt.hour, dt.minute, dt.second, dt.hundredths];
  fields.forEach((f, i) => {
    out[2 + i] = f ?? NOT_SPECIFIED_8;
  });
  view.setInt16(9, dt.deviation ?? -0x8000);
  out[11] = dt.clockStatus ?? NOT_SPECIFIED_8;
  return out;
}

/** A COSEM date-time for a UTC instant (deviation 0, clock status 0). */
export function dateTimeFromMs(ms: number): CosemDateTime {
  const d = new Date(ms);
  return {
    year: d.getUTCFullYear(),
    month: d.getUTCMonth() + 1,
    day: d.getUTCDate(),
    dayOfWeek: ((d.getUTCDay() + 6) % 7) + 1, // COSEM: Monday = 1 … Sunday = 7
    hour: d.getUTCHours(),
    minute: d.getUTCMinutes(),
    second: d.getUTCSeconds(),
    hundredths: Math.floor(d.getUTCMilliseconds() / 10),
    deviation: 0,
    clockStatus: 0,
  };
}

export function decodeData(bytes: Uint8Array): Data {
  const r = new DlmsReader(bytes);
  const data = readData(r, 0);
  if (r.remaining !== 0)
    throw new DlmsError("TRAILING_BYTES", `${r.remaining} bytes after the Data value`, r.offset);
  return data;
}

export function readData(r: DlmsReader, depth: number): Data {
  if (depth > AXDR_DEPTH_MAX)
    throw new DlmsError("TOO_DEEP", `Data nested deeper than ${AXDR_DEPTH_MAX}`, r.offset);
  const at = r.offset;
  const tag = r.u8("Data tag");
  switch (tag) {
    case 0:
      return { type: "null-data" };
    case 1:
    case 2: {
      const count = r.length("element count");
      if (count > AXDR_ELEMENTS_MAX) throw new DlmsError("BAD_LENGTH", `${count} elements`, at);
      const value: Data[] = [];
      for (let i = 0; i < count; i++) value.push(readData(r, depth + 1));
      return { type: tag === 1 ? "array" : "structure", value };
    }
    case 3: {
      return { type: "boolean", value: r.u8("boolean") !== 0 };
    }
    case 4: {
      const bits = r.length("bit-string");
      return { type: "bit-string", bits, value: r.bytes(Math.ceil(bits / 8), "bit-string") };
    }
    case 5:
      return { type: "double-long", value: r.view(4, "double-long").getInt32(0) };
    case 6:
      return { type: "double-long-unsigned", value: r.view(4, "double-long-unsigned").getUint32(0) };
    case 9:
      return { type: "octet-string", value: r.bytes(r.length("octet-string"), "octet-string") };
    case 10:
    case 12: {
      const raw = r.bytes(r.length("string"), "string");
      let value: string;
      try {
        value = new TextDecoder(tag === 10 ? "latin1" : "utf-8", { fatal: true }).decode(raw);
      } catch {
        throw new DlmsError("BAD_TAG", "utf8-string is not valid UTF-8", at);
      }
      return tag === 10 ? { type: "visible-string", value } : { type: "utf8-string", value };
    }
    case 13:
      return { type: "bcd", value: r.u8("bcd") };
    case 15:
      return { type: "integer", value: r.view(1, "integer").getInt8(0) };
    case 16:
      return { type: "long", value: r.view(2, "long").getInt16(0) };
    case 17:
      return { type: "unsigned", value: r.u8("unsigned") };
    case 18:
      return { type: "long-unsigned", value: r.u16("long-unsigned") };
    case 20:
      return { type: "long64", value: r.view(8, "long64").getBigInt64(0) };
    case 21:
      return { type: "long64-unsigned", value: r.view(8, "long64-unsigned").getBigUint64(0) };
    case 22:
      return { type: "enum", value: r.u8("enum") };
    case 23:
      return { type: "float32", value: r.view(4, "float32").getFloat32(0) };
    case 24:
      return { type: "float64", value: r.view(8, "float64").getFloat64(0) };
    case 25:
      return { type: "date-time", value: decodeDateTimeBytes(r.bytes(12, "date-time")) };
    case 26: {
      const b = r.bytes(5, "date");
      const year = (b[0]! << 8) | b[1]!;
      return {
        type: "date",
        value: {
          year: year === 0xffff ? null : year,
          month: opt8(b[2]!),
          day: opt8(b[3]!),
          dayOfWeek: opt8(b[4]!),
        },
      };
    }
    case 27: {
      const b = r.bytes(4, "time");
      return {
        type: "time",
        value: { hour: opt8(b[0]!), minute: opt8(b[1]!), second: opt8(b[2]!), hundredths: opt8(b[3]!) },
      };
    }
    case 255:
      return { type: "dont-care" };
    case 19:
      throw new DlmsError("UNSUPPORTED", "compact-array is not supported yet", at);
    default:
      throw new DlmsError("BAD_TAG", `unknown Data tag ${tag}`, at);
  }
}

export function encodeData(data: Data): Uint8Array {
  const out: number[] = [];
  writeData(out, data);
  return Uint8Array.from(out);
}

function push32(out: number[], value: number): void {
  out.push((value >>> 24) & 0xff, (value >>> 16) & 0xff, (value >>> 8) & 0xff, value & 0xff);
}

function pushView(out: number[], bytes: number, set: (v: DataView) => void): void {
  const b = new Uint8Array(bytes);
  set(new DataView(b.buffer));
  out.push(...b);
}

function writeData(out: number[], data: Data): void {
  out.push(DATA_TAGS[data.type]);
  switch (data.type) {
    case "null-data":
    case "dont-care":
      return;
    case "array":
    case "structure":
      out.push(...encodeLength(data.value.length));
      for (const item of data.value) writeData(out, item);
      return;
    case "boolean":
      out.push(data.value ? 1 : 0);
      return;
    case "bit-string":
      out.push(...encodeLength(data.bits), ...data.value.subarray(0, Math.ceil(data.bits / 8)));
      return;
    case "double-long":
      pushView(out, 4, (v) => v.setInt32(0, data.value));
      return;
    case "double-long-unsigned":
      push32(out, data.value);
      return;
    case "octet-string":
      out.push(...encodeLength(data.value.length), ...data.value);
      return;
    case "visible-string":
    case "utf8-string": {
      const raw =
        data.type === "visible-string" ? Buffer.from(data.value, "latin1") : Buffer.from(data.value, "utf8");
      out.push(...encodeLength(raw.length), ...raw);
      return;
    }
    case "bcd":
    case "unsigned":
    case "enum":
      out.push(data.value & 0xff);
      return;
    case "integer":
      pushView(out, 1, (v) => v.setInt8(0, data.value));
      return;
    case "long":
      pushView(out, 2, (v) => v.setInt16(0, data.value));
      return;
    case "long-unsigned":
      pushView(out, 2, (v) => v.setUint16(0, data.value));
      return;
    case "long64":
      pushView(out, 8, (v) => v.setBigInt64(0, data.value));
      return;
    case "long64-unsigned":
      pushView(out, 8, (v) => v.setBigUint64(0, data.value));
      return;
    case "float32":
      pushView(out, 4, (v) => v.setFloat32(0, data.value));
      return;
    case "float64":
      pushView(out, 8, (v) => v.setFloat64(0, data.value));
      return;
    case "date-time":
      out.push(...encodeDateTimeBytes(data.value));
      return;
    case "date":
      out.push(
        ((data.value.year ?? 0xffff) >> 8) & 0xff,
        (data.value.year ?? 0xffff) & 0xff,
        data.value.month ?? 0xff,
        data.value.day ?? 0xff,
        data.value.dayOfWeek ?? 0xff,
      );
      return;
    case "time":
      out.push(
        data.value.hour ?? 0xff,
        data.value.minute ?? 0xff,
        data.value.second ?? 0xff,
        data.value.hundredths ?? 0xff,
      );
      return;
  }
}

/** A JSON-friendly rendering (bigints as strings, octet-strings as hex, OBIS-looking strings named). */
export function dataToJson(data: Data): unknown {
  switch (data.type) {
    case "array":
    case "structure":
      return { [data.type]: data.value.map(dataToJson) };
    case "octet-string":
      return data.value.length === 6
        ? { "octet-string": Buffer.from(data.value).toString("hex"), obis: [...data.value].join(".") }
        : data.value.length === 12
          ? {
              "octet-string": Buffer.from(data.value).toString("hex"),
              "date-time": decodeDateTimeBytes(data.value),
            }
          : { "octet-string": Buffer.from(data.value).toString("hex") };
    case "bit-string":
      return { "bit-string": Buffer.from(data.value).toString("hex"), bits: data.bits };
    case "long64":
    case "long64-unsigned":
      return { [data.type]: data.value.toString() };
    case "null-data":
    case "dont-care":
      return { [data.type]: null };
    default:
      return { [data.type]: data.value };
  }
}
