import { EvidenceError } from "./errors.ts";

// Big-endian throughout: the byte order of DLMS/COSEM, M-Bus long frames excepted, and of network protocols.

export class ByteWriter {
  private buffer: Uint8Array;
  private view: DataView;
  private length = 0;

  constructor(initialBytes = 256) {
    this.buffer = new Uint8Array(initialBytes);
    this.view = new DataView(this.buffer.buffer);
  }

  get size(): number {
    return this.length;
  }

  // Callers take the offset first, then touch `view`/`buffer`: reserve() may replace both.
  private reserve(bytes: number): number {
    const at = this.length;
    const needed = at + bytes;
    if (needed > this.buffer.length) {
      let capacity = this.buffer.length * 2;
      while (capacity < needed) capacity *= 2;
      const next = new Uint8Array(capacity);
      next.set(this.buffer.subarray(0, this.length));
      this.buffer = next;
      this.view = new DataView(next.buffer);
    }
    this.length = needed;
    return at;
  }

  u8(value: number): this {
    checkInteger(value, 0, 0xff, "u8");
    const at = this.reserve(1);
    this.buffer[at] = value;
    return this;
  }

  i8(value: number): this {
    checkInteger(value, -0x80, 0x7f, "i8");
    const at = this.reserve(1);
    this.view.setInt8(at, value);
    return this;
  }

  u16(value: number): this {
    checkInteger(value, 0, 0xffff, "u16");
    const at = this.reserve(2);
    this.view.setUint16(at, value);
    return this;
  }

  u32(value: number): this {
    checkInteger(value, 0, 0xffff_ffff, "u32");
    const at = this.reserve(4);
    this.view.setUint32(at, value);
    return this;
  }

  /** Unsigned 64-bit field carrying a JavaScript safe integer. */
  u64(value: number): this {
    checkInteger(value, 0, Number.MAX_SAFE_INTEGER, "u64");
    const at = this.reserve(8);
    this.view.setBigUint64(at, BigInt(value));
    return this;
  }

  /** Signed 64-bit field carrying a JavaScript safe integer (e.g. a timestamp in ms). */
  i64(value: number): this {
    checkInteger(value, Number.MIN_SAFE_INTEGER, Number.MAX_SAFE_INTEGER, "i64");
    const at = this.reserve(8);
    this.view.setBigInt64(at, BigInt(value));
    return this;
  }

  f64(value: number): this {
    const at = this.reserve(8);
    this.view.setFloat64(at, value);
    return this;
  }

  bytes(data: Uint8Array): this {
    const at = this.reserve(data.length);
    this.buffer.set(data, at);
    return this;
  }

  /** Exactly `length` bytes; the caller guarantees the size (digests, keys, signatures). */
  fixed(data: Uint8Array, length: number, what: string): this {
    if (data.length !== length) {
      throw new EvidenceError("BAD_FIELD", `${what} must be ${length} bytes, got ${data.length}`);
    }
    return this.bytes(data);
  }

  /** Bytes prefixed by a u8 length. */
  bytes8(data: Uint8Array, what: string): this {
    if (data.length > 0xff) throw new EvidenceError("BAD_FIELD", `${what} longer than 255 bytes`);
    return this.u8(data.length).bytes(data);
  }

  /** Bytes prefixed by a u16 length. */
  bytes16(data: Uint8Array, what: string): this {
    if (data.length > 0xffff) throw new EvidenceError("BAD_FIELD", `${what} longer than 65535 bytes`);
    return this.u16(data.length).bytes(data);
  }

  /** UTF-8 text prefixed by a u8 byte length. */
  text8(value: string, what: string): this {
    return this.bytes8(new TextEncoder().encode(value), what);
  }

  finish(): Uint8Array {
    return this.buffer.slice(0, this.length);
  }
}

export class ByteReader {
  private offset = 0;
  private readonly view: DataView;

  constructor(
    private readonly data: Uint8Array,
    private readonly what: string,
  ) {
    this.view = new DataView(data.buffer, data.byteOffset, data.byteLength);
  }

  get position(): number {
    return this.offset;
  }

  get remaining(): number {
    return this.data.length - this.offset;
  }

  private take(bytes: number, field: string): number {
    if (this.offset + bytes > this.data.length) {
      throw new EvidenceError(
        "TRUNCATED",
        `${this.what}: ${field} needs ${bytes} bytes, ${this.data.length - this.offset} left`,
        `byte ${this.offset}`,
      );
    }
    const at = this.offset;
    this.offset += bytes;
    return at;
  }

  u8(field: string): number {
    return this.view.getUint8(this.take(1, field));
  }

  i8(field: string): number {
    return this.view.getInt8(this.take(1, field));
  }

  u16(field: string): number {
    return this.view.getUint16(this.take(2, field));
  }

  u32(field: string): number {
    return this.view.getUint32(this.take(4, field));
  }

  u64(field: string): number {
    const at = this.take(8, field);
    const value = this.view.getBigUint64(at);
    if (value > BigInt(Number.MAX_SAFE_INTEGER)) {
      throw new EvidenceError("BAD_FIELD", `${this.what}: ${field} exceeds 2^53-1`, `byte ${at}`);
    }
    return Number(value);
  }

  i64(field: string): number {
    const at = this.take(8, field);
    const value = this.view.getBigInt64(at);
    if (value > BigInt(Number.MAX_SAFE_INTEGER) || value < BigInt(Number.MIN_SAFE_INTEGER)) {
      throw new EvidenceError(
        "BAD_FIELD",
        `${this.what}: ${field} outside the safe integer range`,
        `byte ${at}`,
      );
    }
    return Number(value);
  }

  f64(field: string): number {
    return this.view.getFloat64(this.take(8, field));
  }

  bytes(length: number, field: string): Uint8Array {
    const at = this.take(length, field);
    return this.data.slice(at, at + length);
  }

  bytes8(field: string): Uint8Array {
    return this.bytes(this.u8(`${field} length`), field);
  }

  bytes16(field: string): Uint8Array {
    return this.bytes(this.u16(`${field} length`), field);
  }

  text8(field: string): string {
    const at = this.offset;
    const raw = this.bytes8(field);
    try {
      return new TextDecoder("utf-8", { fatal: true }).decode(raw);
    } catch {
      throw new EvidenceError("BAD_FIELD", `${this.what}: ${field} is not valid UTF-8`, `byte ${at}`);
    }
  }

  /** Throws TRAILING_BYTES unless every byte was consumed. */
  end(): void {
    if (this.offset !== this.data.length) {
      throw new EvidenceError(
        "TRAILING_BYTES",
        `${this.what}: ${this.data.length - this.offset} bytes after the end of the structure`,
        `byte ${this.offset}`,
      );
    }
  }
}

function checkInteger(value: number, min: number, max: number, kind: string): void {
  if (!Number.isInteger(value) || value < min || value > max) {
    throw new EvidenceError("BAD_FIELD", `${value} does not fit ${kind}`);
  }
}

export function toHex(data: Uint8Array): string {
  return Buffer.from(data.buffer, data.byteOffset, data.byteLength).toString("hex");
}

export function fromHex(hex: string, what: string): Uint8Array {
  const clean = hex.trim();
  if (clean.length % 2 !== 0 || !/^[0-9a-fA-F]*$/.test(clean)) {
    throw new EvidenceError("BAD_FIELD", `${what} is not an even-length hex string`);
  }
  return new Uint8Array(Buffer.from(clean, "hex"));
}

export function bytesEqual(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

export function concatBytes(...parts: Uint8Array[]): Uint8Array {
  let total = 0;
  for (const part of parts) total += part.length;
  const out = new Uint8Array(total);
  let at = 0;
  for (const part of parts) {
    out.set(part, at);
    at += part.length;
  }
  return out;
}
