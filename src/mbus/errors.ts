// One error class for the M-Bus boundary; `code` is a closed union so callers and counters can switch on it.
export type MbusErrorCode =
  // EN 13757-2 link layer (frames)
  | "BAD_START" // first byte is not 0xE5, 0x10 or 0x68, or the second 0x68 is missing
  | "BAD_LENGTH" // the two L fields differ, L is below 3, or the frame is longer than L says
  | "BAD_CHECKSUM" // arithmetic sum of C, A, CI and data mod 256 differs from CS
  | "BAD_STOP" // the last byte is not 0x16
  | "TRUNCATED" // fewer bytes than the structure needs
  | "TRAILING_BYTES" // bytes left after a complete structure
  // EN 13757-3 application layer
  | "UNSUPPORTED_CI"
  | "BAD_HEADER" // a header field outside its allowed range
  | "BAD_DIF" // reserved DIF, more than 10 DIFEs, global readout in a response
  | "BAD_VIF" // reserved VIF, extension marker without extension byte, more than 10 VIFEs
  | "BAD_DATA" // data field that cannot be decoded (reserved LVAR, …)
  // encoders and inputs
  | "BAD_FIELD" // a value handed to an encoder outside its range
  | "BAD_HEX" // textual hex input that is not whole bytes of hex digits
  // master side
  | "TIMEOUT" // no answer within the response timeout
  | "COLLISION" // several slaves answered at once (garbled or surplus bytes)
  | "UNEXPECTED_RESPONSE" // a valid frame of the wrong kind
  | "LIMIT" // a named bound was reached (telegrams per readout, scan probes…)
  | "TRANSPORT"; // the transport failed (socket closed, write error)

export class MbusError extends Error {
  readonly code: MbusErrorCode;
  /** Where the problem was found: byte offset, record index, address… */
  readonly where: string | undefined;

  constructor(code: MbusErrorCode, message: string, where?: string) {
    super(where === undefined ? `${code}: ${message}` : `${code}: ${message} (at ${where})`);
    this.name = "MbusError";
    this.code = code;
    this.where = where;
  }
}

export function isMbusError(error: unknown, code?: MbusErrorCode): error is MbusError {
  return error instanceof MbusError && (code === undefined || error.code === code);
}

export const MBUS_ERROR_CODES: readonly MbusErrorCode[] = [
  "BAD_START",
  "BAD_LENGTH",
  "BAD_CHECKSUM",
  "BAD_STOP",
  "TRUNCATED",
  "TRAILING_BYTES",
  "UNSUPPORTED_CI",
  "BAD_HEADER",
  "BAD_DIF",
  "BAD_VIF",
  "BAD_DATA",
  "BAD_FIELD",
  "BAD_HEX",
  "TIMEOUT",
  "COLLISION",
  "UNEXPECTED_RESPONSE",
  "LIMIT",
  "TRANSPORT",
];

// seed 003 H2-3: interface evidence is "frame CRC" plus a per-port error bucket. Every link-layer
// failure (framing, checksum, silence, collision) is a port error; only checksum failures are frame_crc_fail.
const PORT_ERROR_CODES: ReadonlySet<MbusErrorCode> = new Set<MbusErrorCode>([
  "BAD_START",
  "BAD_LENGTH",
  "BAD_CHECKSUM",
  "BAD_STOP",
  "TRUNCATED",
  "TRAILING_BYTES",
  "TIMEOUT",
  "COLLISION",
]);

export interface MbusDecodeStatsJson {
  frames_ok: number;
  frame_crc_fail: number;
  port_err_cnt: number;
  by_code: Partial<Record<MbusErrorCode, number>>;
}

/** Per-code counts of malformed or missing frames, for the concentrator's interface evidence counters. */
export class MbusDecodeStats {
  framesOk = 0;
  private readonly counts = new Map<MbusErrorCode, number>();

  /** Counts one outcome: `null` for a good frame, the error otherwise (non-M-Bus errors are rethrown). */
  record(outcome: MbusError | null): void {
    if (outcome === null) {
      this.framesOk += 1;
      return;
    }
    this.counts.set(outcome.code, (this.counts.get(outcome.code) ?? 0) + 1);
  }

  count(code: MbusErrorCode): number {
    return this.counts.get(code) ?? 0;
  }

  /** seed 003: frame_crc_fail (frame CRC evidence; for M-Bus the 8-bit arithmetic checksum). */
  get frameCrcFail(): number {
    return this.count("BAD_CHECKSUM");
  }

  /** seed 003: port_err_cnt — every link-layer failure on this port. */
  get portErrCnt(): number {
    let total = 0;
    for (const [code, n] of this.counts) if (PORT_ERROR_CODES.has(code)) total += n;
    return total;
  }

  get errorsTotal(): number {
    let total = 0;
    for (const n of this.counts.values()) total += n;
    return total;
  }

  toJSON(): MbusDecodeStatsJson {
    const byCode: Partial<Record<MbusErrorCode, number>> = {};
    for (const code of MBUS_ERROR_CODES) {
      const n = this.counts.get(code);
      if (n !== undefined) byCode[code] = n;
    }
    return {
      frames_ok: this.framesOk,
      frame_crc_fail: this.frameCrcFail,
      port_err_cnt: this.portErrCnt,
      by_code: byCode,
    };
  }
}

/**
 * Runs a decoder and counts its outcome; rethrows the MbusError after counting so callers still see it.
 * Anything that is not an MbusError is a bug in the decoder and propagates uncounted.
 */
export function countDecode<T>(stats: MbusDecodeStats, decode: () => T): T {
  try {
    const result = decode();
    stats.record(null);
    return result;
  } catch (error) {
    if (error instanceof MbusError) stats.record(error);
    throw error;
  }
}
