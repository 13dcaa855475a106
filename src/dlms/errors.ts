// One error class for the DLMS/COSEM boundary; codes name what went wrong on the wire.
export type DlmsErrorCode =
  | "TRUNCATED"
  | "TRAILING_BYTES"
  | "BAD_TAG"
  | "BAD_LENGTH"
  | "BAD_FLAG"
  | "BAD_HCS"
  | "BAD_FCS"
  | "BAD_WRAPPER"
  | "BAD_ADDRESS"
  | "BAD_OBIS"
  | "BAD_VALUE"
  | "TOO_DEEP"
  | "UNSUPPORTED"
  | "DECRYPT_FAILED"
  | "AUTH_FAILED"
  | "REPLAYED_INVOCATION_COUNTER"
  | "ASSOCIATION_REFUSED"
  | "NOT_ASSOCIATED"
  | "ACCESS_DENIED"
  | "OBJECT_UNDEFINED"
  | "DATA_ACCESS_ERROR"
  | "SERVICE_REFUSED"
  | "LINK_DOWN"
  | "TIMEOUT";

export class DlmsError extends Error {
  readonly code: DlmsErrorCode;
  /** The meter's data-access-result, when the error is one (ACCESS_DENIED, OBJECT_UNDEFINED, DATA_ACCESS_ERROR). */
  dataAccessResult?: number;

  constructor(code: DlmsErrorCode, message: string, at?: number) {
    super(at === undefined ? `${code}: ${message}` : `${code}: ${message} (at byte ${at})`);
    this.name = "DlmsError";
    this.code = code;
  }
}

/** Bounds-checked big-endian reader that throws only DlmsError. */
export class DlmsReader {
  offset = 0;

  constructor(readonly data: Uint8Array) {}

  get remaining(): number {
    return this.data.length - this.offset;
  }

  need(bytes: number, what: string): void {
    if (this.offset + bytes > this.data.length) {
      throw new DlmsError("TRUNCATED", `${what} needs ${bytes} bytes, ${this.remaining} left`, this.offset);
    }
  }

  u8(what: string): number {
    this.need(1, what);
    return this.data[this.offset++]!;
  }

  u16(what: string): number {
    this.need(2, what);
    const v = (this.data[this.offset]! << 8) | this.data[this.offset + 1]!;
    this.offset += 2;
    return v;
  }

  u32(what: string): number {
    this.need(4, what);
    const v = new DataView(this.data.buffer, this.data.byteOffset + this.offset, 4).getUint32(0);
    this.offset += 4;
    return v;
  }

  bytes(length: number, what: string): Uint8Array {
    this.need(length, what);
    const out = this.data.slice(this.offset, this.offset + length);
    this.offset += length;
    return out;
  }

  view(length: number, what: string): DataView {
    this.need(length, what);
    const v = new DataView(this.data.buffer, this.data.byteOffset + this.offset, length);
    this.offset += length;
    return v;
  }

  /** A-XDR length: one byte below 0x80, else 0x80|n followed by n bytes (n ≤ 4 here). */
  length(what: string): number {
    const first = this.u8(`${what} length`);
    if (first < 0x80) return first;
    const n = first & 0x7f;
    if (n === 0 || n > 4) throw new DlmsError("BAD_LENGTH", `${what}: length of ${n} bytes`, this.offset - 1);
    let value = 0;
    for (let i = 0; i < n; i++) value = value * 256 + this.u8(`${what} length`);
    if (value > this.remaining)
      throw new DlmsError(
        "TRUNCATED",
        `${what} claims ${value} elements/bytes, ${this.remaining} bytes left`,
        this.offset,
      );
    return value;
  }
}

export function encodeLength(length: number): number[] {
  if (length < 0x80) return [length];
  const bytes: number[] = [];
  for (let v = length; v > 0; v = Math.floor(v / 256)) bytes.unshift(v & 0xff);
  return [0x80 | bytes.length, ...bytes];
}
