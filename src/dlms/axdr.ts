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
  | { type: "dont-care" }
  | { type: "compact-array"; description: TypeDescription; value: Data[] };

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
  view.setUint16(0, intInRange(dt.year ?? 0xffff, 0, 0xffff, "date-time year"));
  const fields = [dt.month, dt.day, dt.dayOfWeek, dt.hour, dt.minute, dt.second, dt.hundredths];
  fields.forEach((f, i) => {
    out[2 + i] = field8(f);
  });
  view.setInt16(9, intInRange(dt.deviation ?? -0x8000, -0x8000, 0x7fff, "date-time deviation"));
  out[11] = dt.clockStatus === null ? NOT_SPECIFIED_8 : intInRange(dt.clockStatus, 0, 0xff, "clock status");
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

/** Clock status bits (Blue Book class 8): invalid, doubtful, different clock base, invalid status, DST. */
export const CLOCK_STATUS = {
  invalidValue: 0x01,
  doubtfulValue: 0x02,
  differentClockBase: 0x04,
  invalidClockStatus: 0x08,
  daylightSavingActive: 0x80,
} as const;

/**
 * The UTC instant of a fully specified date-time, or null when a field needed for it is "not
 * specified". Deviation is minutes from local time to UTC (Blue Book: UTC = local + deviation; the
 * published Austrian push example carries 15:46 local with deviation −120 in summer time).
 */
export function dateTimeToMs(dt: CosemDateTime): number | null {
  const { year, month, day, hour, minute, second } = dt;
  if (
    year === null ||
    month === null ||
    day === null ||
    hour === null ||
    minute === null ||
    second === null
  ) {
    return null;
  }
  if (month < 1 || month > 12 || day < 1 || day > 31 || hour > 23 || minute > 59 || second > 59) return null;
  const hundredths = dt.hundredths !== null && dt.hundredths <= 99 ? dt.hundredths : 0;
  const localMs = Date.UTC(year, month - 1, day, hour, minute, second, hundredths * 10);
  return localMs + (dt.deviation ?? 0) * 60_000;
}

const pad = (v: number | null, width: number) =>
  v === null ? "*".repeat(width) : String(v).padStart(width, "0");
const DAYS = ["", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];

/** JSON view of a date-time: local text ("*" for not-specified fields), the UTC instant when known. */
export function dateTimeJson(dt: CosemDateTime): Record<string, unknown> {
  const ms = dateTimeToMs(dt);
  return {
    local: `${pad(dt.year, 4)}-${pad(dt.month, 2)}-${pad(dt.day, 2)} ${pad(dt.hour, 2)}:${pad(dt.minute, 2)}:${pad(dt.second, 2)}.${pad(dt.hundredths, 2)}`,
    day_of_week: dt.dayOfWeek === null ? null : (DAYS[dt.dayOfWeek] ?? dt.dayOfWeek),
    deviation_min: dt.deviation,
    clock_status: dt.clockStatus === null ? null : `0x${dt.clockStatus.toString(16).padStart(2, "0")}`,
    ...(dt.clockStatus !== null && (dt.clockStatus & CLOCK_STATUS.daylightSavingActive) !== 0
      ? { daylight_saving: true }
      : {}),
    utc: ms === null || !Number.isFinite(ms) ? null : new Date(ms).toISOString(),
  };
}

/** Bound on all Data values one decode may produce (compact-array elements can be zero bytes long). */
export const AXDR_TOTAL_ELEMENTS_MAX = 262_144;

/** How a compact-array describes its elements (Green Book TypeDescription). */
export type TypeDescription =
  | { type: Exclude<DataTypeName, "array" | "structure" | "compact-array"> }
  | { type: "array"; count: number; element: TypeDescription }
  | { type: "structure"; elements: TypeDescription[] };

export type DataTypeName = keyof typeof DATA_TAGS;

const TAG_NAMES: Record<number, DataTypeName> = Object.fromEntries(
  Object.entries(DATA_TAGS).map(([name, tag]) => [tag, name as DataTypeName]),
);

interface Budget {
  elements: number;
}

function spend(budget: Budget, r: DlmsReader, count = 1): void {
  budget.elements -= count;
  if (budget.elements < 0) {
    throw new DlmsError(
      "BAD_LENGTH",
      `more than ${AXDR_TOTAL_ELEMENTS_MAX} Data elements in one value`,
      r.offset,
    );
  }
}

export function decodeData(bytes: Uint8Array): Data {
  const r = new DlmsReader(bytes);
  const data = readData(r, 0);
  if (r.remaining !== 0)
    throw new DlmsError("TRAILING_BYTES", `${r.remaining} bytes after the Data value`, r.offset);
  return data;
}

/** Reads one tagged Data value at the reader's position. */
export function readData(
  r: DlmsReader,
  depth: number,
  budget: Budget = { elements: AXDR_TOTAL_ELEMENTS_MAX },
): Data {
  if (depth > AXDR_DEPTH_MAX)
    throw new DlmsError("TOO_DEEP", `Data nested deeper than ${AXDR_DEPTH_MAX}`, r.offset);
  const at = r.offset;
  const tag = r.u8("Data tag");
  spend(budget, r);
  switch (tag) {
    case 1:
    case 2: {
      const count = readCount(r, "element count", at);
      const value: Data[] = [];
      for (let i = 0; i < count; i++) value.push(readData(r, depth + 1, budget));
      return { type: tag === 1 ? "array" : "structure", value };
    }
    case 19: {
      const description = readTypeDescription(r, depth + 1);
      const contents = r.bytes(r.length("compact-array contents"), "compact-array contents");
      const inner = new DlmsReader(contents);
      const value: Data[] = [];
      while (inner.remaining > 0) {
        const before = inner.offset;
        value.push(readDescribed(inner, description, depth + 1, budget));
        if (inner.offset === before) {
          throw new DlmsError("BAD_LENGTH", "compact-array of zero-length elements", at);
        }
      }
      return { type: "compact-array", description, value };
    }
    default:
      return readValue(r, tag, at);
  }
}

/** A-XDR length used as an element count: bounded, but not compared with the bytes left. */
function readCount(r: DlmsReader, what: string, at: number): number {
  const first = r.u8(what);
  let count = first;
  if (first >= 0x80) {
    const n = first & 0x7f;
    if (n === 0 || n > 4) throw new DlmsError("BAD_LENGTH", `${what}: length of ${n} bytes`, r.offset - 1);
    count = 0;
    for (let i = 0; i < n; i++) count = count * 256 + r.u8(what);
  }
  if (count > AXDR_ELEMENTS_MAX)
    throw new DlmsError("BAD_LENGTH", `${count} elements (limit ${AXDR_ELEMENTS_MAX})`, at);
  return count;
}

function readTypeDescription(r: DlmsReader, depth: number): TypeDescription {
  if (depth > AXDR_DEPTH_MAX) {
    throw new DlmsError("TOO_DEEP", `type description nested deeper than ${AXDR_DEPTH_MAX}`, r.offset);
  }
  const at = r.offset;
  const tag = r.u8("type description tag");
  if (tag === 1) {
    const count = r.u16("array element count");
    return { type: "array", count, element: readTypeDescription(r, depth + 1) };
  }
  if (tag === 2) {
    const count = readCount(r, "structure element count", at);
    const elements: TypeDescription[] = [];
    for (let i = 0; i < count; i++) elements.push(readTypeDescription(r, depth + 1));
    return { type: "structure", elements };
  }
  const name = TAG_NAMES[tag];
  if (name === undefined || name === "compact-array") {
    throw new DlmsError("BAD_TAG", `type description tag ${tag}`, at);
  }
  return { type: name } as TypeDescription;
}

function readDescribed(r: DlmsReader, d: TypeDescription, depth: number, budget: Budget): Data {
  if (depth > AXDR_DEPTH_MAX)
    throw new DlmsError("TOO_DEEP", `Data nested deeper than ${AXDR_DEPTH_MAX}`, r.offset);
  spend(budget, r);
  if (d.type === "array") {
    const value: Data[] = [];
    for (let i = 0; i < d.count; i++) value.push(readDescribed(r, d.element, depth + 1, budget));
    return { type: "array", value };
  }
  if (d.type === "structure") {
    return { type: "structure", value: d.elements.map((e) => readDescribed(r, e, depth + 1, budget)) };
  }
  return readValue(r, DATA_TAGS[d.type], r.offset);
}

/** The value of a simple (non-container) type whose tag has been read. */
function readValue(r: DlmsReader, tag: number, at: number): Data {
  switch (tag) {
    case 0:
      return { type: "null-data" };
    case 3:
      return { type: "boolean", value: r.u8("boolean") !== 0 };
    case 4: {
      const bits = readBitCount(r);
      return { type: "bit-string", bits, value: r.bytes(Math.ceil(bits / 8), "bit-string") };
    }
    case 5:
      return { type: "double-long", value: r.view(4, "double-long").getInt32(0) };
    case 6:
      return { type: "double-long-unsigned", value: r.view(4, "double-long-unsigned").getUint32(0) };
    case 9:
      return { type: "octet-string", value: r.bytes(r.length("octet-string"), "octet-string") };
    case 10:
      return {
        type: "visible-string",
        value: Buffer.from(r.bytes(r.length("visible-string"), "visible-string")).toString("latin1"),
      };
    case 12: {
      const raw = r.bytes(r.length("utf8-string"), "utf8-string");
      try {
        return { type: "utf8-string", value: new TextDecoder("utf-8", { fatal: true }).decode(raw) };
      } catch {
        throw new DlmsError("BAD_VALUE", "utf8-string is not valid UTF-8", at);
      }
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
    default:
      throw new DlmsError("BAD_TAG", `unknown Data tag ${tag}`, at);
  }
}

/** bit-string length counts bits, so it may exceed the bytes left; the bytes are checked after. */
function readBitCount(r: DlmsReader): number {
  const first = r.u8("bit-string length");
  if (first < 0x80) return first;
  const n = first & 0x7f;
  if (n === 0 || n > 4) throw new DlmsError("BAD_LENGTH", `bit-string: length of ${n} bytes`, r.offset - 1);
  let bits = 0;
  for (let i = 0; i < n; i++) bits = bits * 256 + r.u8("bit-string length");
  if (Math.ceil(bits / 8) > r.remaining) {
    throw new DlmsError("TRUNCATED", `bit-string of ${bits} bits, ${r.remaining} bytes left`, r.offset);
  }
  return bits;
}

export function encodeData(data: Data): Uint8Array {
  const out: number[] = [];
  writeData(out, data, 0);
  return Uint8Array.from(out);
}

function pushView(out: number[], bytes: number, set: (v: DataView) => void): void {
  const b = new Uint8Array(bytes);
  set(new DataView(b.buffer));
  for (const x of b) out.push(x);
}

function pushBytes(out: number[], bytes: ArrayLike<number>): void {
  for (let i = 0; i < bytes.length; i++) out.push(bytes[i]!);
}

function intInRange(value: number, min: number, max: number, type: string): number {
  if (!Number.isInteger(value) || value < min || value > max) {
    throw new DlmsError("BAD_VALUE", `${type} value ${value} outside ${min}..${max}`);
  }
  return value;
}

function bigInRange(value: bigint, min: bigint, max: bigint, type: string): bigint {
  if (typeof value !== "bigint" || value < min || value > max) {
    throw new DlmsError("BAD_VALUE", `${type} value ${value} outside ${min}..${max}`);
  }
  return value;
}

function writeData(out: number[], data: Data, depth: number): void {
  if (depth > AXDR_DEPTH_MAX) throw new DlmsError("TOO_DEEP", `Data nested deeper than ${AXDR_DEPTH_MAX}`);
  out.push(DATA_TAGS[data.type]);
  switch (data.type) {
    case "array":
    case "structure":
      if (data.value.length > AXDR_ELEMENTS_MAX) {
        throw new DlmsError("BAD_LENGTH", `${data.value.length} elements (limit ${AXDR_ELEMENTS_MAX})`);
      }
      pushBytes(out, encodeLength(data.value.length));
      for (const item of data.value) writeData(out, item, depth + 1);
      return;
    case "compact-array": {
      writeTypeDescription(out, data.description, depth + 1);
      const contents: number[] = [];
      for (const item of data.value) writeDescribed(contents, data.description, item, depth + 1);
      pushBytes(out, encodeLength(contents.length));
      pushBytes(out, contents);
      return;
    }
    default:
      writeValue(out, data);
  }
}

function writeTypeDescription(out: number[], d: TypeDescription, depth: number): void {
  if (depth > AXDR_DEPTH_MAX)
    throw new DlmsError("TOO_DEEP", `type description deeper than ${AXDR_DEPTH_MAX}`);
  out.push(DATA_TAGS[d.type]);
  if (d.type === "array") {
    intInRange(d.count, 0, 0xffff, "compact-array element count");
    out.push(d.count >> 8, d.count & 0xff);
    writeTypeDescription(out, d.element, depth + 1);
  } else if (d.type === "structure") {
    pushBytes(out, encodeLength(d.elements.length));
    for (const e of d.elements) writeTypeDescription(out, e, depth + 1);
  }
}

function writeDescribed(out: number[], d: TypeDescription, data: Data, depth: number): void {
  if (depth > AXDR_DEPTH_MAX) throw new DlmsError("TOO_DEEP", `Data nested deeper than ${AXDR_DEPTH_MAX}`);
  if (data.type !== d.type) {
    throw new DlmsError("BAD_VALUE", `compact-array element is ${data.type}, its description says ${d.type}`);
  }
  if (d.type === "array" && data.type === "array") {
    if (data.value.length !== d.count) {
      throw new DlmsError(
        "BAD_VALUE",
        `compact-array sub-array of ${data.value.length}, described as ${d.count}`,
      );
    }
    for (const item of data.value) writeDescribed(out, d.element, item, depth + 1);
  } else if (d.type === "structure" && data.type === "structure") {
    if (data.value.length !== d.elements.length) {
      throw new DlmsError(
        "BAD_VALUE",
        `compact-array structure of ${data.value.length}, described as ${d.elements.length}`,
      );
    }
    data.value.forEach((item, i) => {
      writeDescribed(out, d.elements[i]!, item, depth + 1);
    });
  } else {
    writeValue(out, data);
  }
}

/** The untagged value of a simple type. */
function writeValue(out: number[], data: Data): void {
  switch (data.type) {
    case "null-data":
    case "dont-care":
      return;
    case "array":
    case "structure":
    case "compact-array":
      throw new DlmsError("BAD_VALUE", `${data.type} is not a simple type`);
    case "boolean":
      out.push(data.value ? 1 : 0);
      return;
    case "bit-string": {
      intInRange(data.bits, 0, 0xffffffff, "bit-string length");
      if (data.value.length !== Math.ceil(data.bits / 8)) {
        throw new DlmsError(
          "BAD_VALUE",
          `bit-string of ${data.bits} bits needs ${Math.ceil(data.bits / 8)} bytes, has ${data.value.length}`,
        );
      }
      pushBytes(out, encodeLength(data.bits));
      pushBytes(out, data.value);
      return;
    }
    case "double-long":
      pushView(out, 4, (v) => v.setInt32(0, intInRange(data.value, -(2 ** 31), 2 ** 31 - 1, data.type)));
      return;
    case "double-long-unsigned":
      pushView(out, 4, (v) => v.setUint32(0, intInRange(data.value, 0, 2 ** 32 - 1, data.type)));
      return;
    case "octet-string":
      pushBytes(out, encodeLength(data.value.length));
      pushBytes(out, data.value);
      return;
    case "visible-string": {
      if ([...data.value].some((c) => c.charCodeAt(0) > 0xff)) {
        throw new DlmsError(
          "BAD_VALUE",
          "visible-string holds characters outside one byte (use utf8-string)",
        );
      }
      const raw = Buffer.from(data.value, "latin1");
      pushBytes(out, encodeLength(raw.length));
      pushBytes(out, raw);
      return;
    }
    case "utf8-string": {
      const raw = Buffer.from(data.value, "utf8");
      pushBytes(out, encodeLength(raw.length));
      pushBytes(out, raw);
      return;
    }
    case "bcd":
    case "unsigned":
    case "enum":
      out.push(intInRange(data.value, 0, 255, data.type));
      return;
    case "integer":
      pushView(out, 1, (v) => v.setInt8(0, intInRange(data.value, -128, 127, data.type)));
      return;
    case "long":
      pushView(out, 2, (v) => v.setInt16(0, intInRange(data.value, -32768, 32767, data.type)));
      return;
    case "long-unsigned":
      pushView(out, 2, (v) => v.setUint16(0, intInRange(data.value, 0, 0xffff, data.type)));
      return;
    case "long64":
      pushView(out, 8, (v) =>
        v.setBigInt64(0, bigInRange(data.value, -(2n ** 63n), 2n ** 63n - 1n, data.type)),
      );
      return;
    case "long64-unsigned":
      pushView(out, 8, (v) => v.setBigUint64(0, bigInRange(data.value, 0n, 2n ** 64n - 1n, data.type)));
      return;
    case "float32":
      pushView(out, 4, (v) => v.setFloat32(0, data.value));
      return;
    case "float64":
      pushView(out, 8, (v) => v.setFloat64(0, data.value));
      return;
    case "date-time":
      pushBytes(out, encodeDateTimeBytes(data.value));
      return;
    case "date": {
      const year = intInRange(data.value.year ?? 0xffff, 0, 0xffff, "date year");
      out.push(
        year >> 8,
        year & 0xff,
        ...[data.value.month, data.value.day, data.value.dayOfWeek].map(field8),
      );
      return;
    }
    case "time":
      out.push(...[data.value.hour, data.value.minute, data.value.second, data.value.hundredths].map(field8));
      return;
  }
}

function field8(v: number | null): number {
  return v === null ? NOT_SPECIFIED_8 : intInRange(v, 0, 0xfe, "date/time field");
}

/** A JSON-friendly rendering (bigints as strings, octet-strings as hex, OBIS-looking strings named). */
export function dataToJson(data: Data): unknown {
  switch (data.type) {
    case "array":
    case "structure":
    case "compact-array":
      return { [data.type]: data.value.map(dataToJson) };
    case "octet-string":
      return data.value.length === 6
        ? { "octet-string": Buffer.from(data.value).toString("hex"), obis: [...data.value].join(".") }
        : data.value.length === 12
          ? {
              "octet-string": Buffer.from(data.value).toString("hex"),
              "date-time": dateTimeJson(decodeDateTimeBytes(data.value)),
            }
          : data.value.length > 0 && data.value.every((b) => b >= 0x20 && b < 0x7f)
            ? {
                "octet-string": Buffer.from(data.value).toString("hex"),
                text: Buffer.from(data.value).toString("latin1"),
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
    case "date-time":
      return { "date-time": dateTimeJson(data.value) };
    default:
      return { [data.type]: data.value };
  }
}
