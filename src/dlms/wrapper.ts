import { DlmsError } from "./errors.ts";

// The TCP/UDP wrapper (IEC 62056-4-7 / Green Book "TCP-UDP based transport layers"): an 8-byte
// header of four big-endian uint16 — version 0x0001, source wPort, destination wPort, APDU length —
// in front of every APDU. IANA registered port 4059 for DLMS/COSEM over TCP and UDP.

export const DLMS_TCP_PORT = 4059;
export const WRAPPER_VERSION = 0x0001;
export const WRAPPER_HEADER_BYTES = 8;
/** The length field is a uint16. */
export const APDU_BYTES_MAX = 65_535;

/** Reserved wPort numbers (IEC 62056-4-7). Client side: */
export const WPORT_CLIENT_NO_STATION = 0;
export const WPORT_CLIENT_MANAGEMENT = 1;
export const WPORT_PUBLIC_CLIENT = 16;
/** Server side: */
export const WPORT_SERVER_NO_STATION = 0;
export const WPORT_MANAGEMENT_LOGICAL_DEVICE = 1;
export const WPORT_ALL_STATION = 0x7f;

export interface WrapperFrame {
  readonly sourceWPort: number;
  readonly destinationWPort: number;
  readonly apdu: Uint8Array;
}

function checkWPort(value: number, what: string): void {
  if (!Number.isInteger(value) || value < 0 || value > 0xffff) {
    throw new DlmsError("BAD_WRAPPER", `${what} ${value} is not a uint16`);
  }
}

export function encodeWrapper(frame: WrapperFrame): Uint8Array {
  checkWPort(frame.sourceWPort, "source wPort");
  checkWPort(frame.destinationWPort, "destination wPort");
  if (frame.apdu.length > APDU_BYTES_MAX) {
    throw new DlmsError(
      "BAD_LENGTH",
      `APDU of ${frame.apdu.length} bytes exceeds the wrapper's ${APDU_BYTES_MAX}`,
    );
  }
  const out = new Uint8Array(WRAPPER_HEADER_BYTES + frame.apdu.length);
  const view = new DataView(out.buffer);
  view.setUint16(0, WRAPPER_VERSION);
  view.setUint16(2, frame.sourceWPort);
  view.setUint16(4, frame.destinationWPort);
  view.setUint16(6, frame.apdu.length);
  out.set(frame.apdu, WRAPPER_HEADER_BYTES);
  return out;
}

export interface WrapperHeader {
  readonly sourceWPort: number;
  readonly destinationWPort: number;
  readonly length: number;
}

/** Reads and checks the 8-byte header at `offset`. */
export function decodeWrapperHeader(bytes: Uint8Array, offset = 0): WrapperHeader {
  if (bytes.length - offset < WRAPPER_HEADER_BYTES) {
    throw new DlmsError(
      "TRUNCATED",
      `wrapper header needs ${WRAPPER_HEADER_BYTES} bytes, ${Math.max(0, bytes.length - offset)} left`,
      offset,
    );
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset + offset, WRAPPER_HEADER_BYTES);
  const version = view.getUint16(0);
  if (version !== WRAPPER_VERSION) {
    throw new DlmsError(
      "BAD_WRAPPER",
      `wrapper version 0x${version.toString(16).padStart(4, "0")}, expected 0x0001`,
      offset,
    );
  }
  return { sourceWPort: view.getUint16(2), destinationWPort: view.getUint16(4), length: view.getUint16(6) };
}

/** One complete wrapper frame: header plus exactly `length` APDU bytes. */
export function decodeWrapper(bytes: Uint8Array): WrapperFrame {
  const header = decodeWrapperHeader(bytes);
  const follow = bytes.length - WRAPPER_HEADER_BYTES;
  if (header.length !== follow) {
    throw new DlmsError(
      header.length > follow ? "TRUNCATED" : "TRAILING_BYTES",
      `wrapper says ${header.length} APDU bytes, ${follow} follow`,
      6,
    );
  }
  return {
    sourceWPort: header.sourceWPort,
    destinationWPort: header.destinationWPort,
    apdu: bytes.slice(WRAPPER_HEADER_BYTES),
  };
}

export interface WrapperReassemblerOptions {
  /** Refuse a frame announcing more APDU bytes than this (e.g. the negotiated max PDU size). */
  readonly apduBytesMax?: number;
}

/**
 * Cuts wrapper frames out of a TCP byte stream delivered in arbitrary chunks. Holds at most one
 * frame's worth of bytes (header + `apduBytesMax`) plus the chunk being pushed; a bad version or an
 * oversized length poisons the stream (TCP framing cannot be recovered) and every later push throws.
 */
export class WrapperReassembler {
  private readonly apduBytesMax: number;
  private buffer: Uint8Array = new Uint8Array(0);
  private failure: DlmsError | null = null;

  constructor(options: WrapperReassemblerOptions = {}) {
    this.apduBytesMax = Math.min(options.apduBytesMax ?? APDU_BYTES_MAX, APDU_BYTES_MAX);
  }

  /** Bytes waiting for the rest of their frame. */
  get pendingBytes(): number {
    return this.buffer.length;
  }

  push(chunk: Uint8Array): WrapperFrame[] {
    if (this.failure !== null) throw this.failure;
    let data: Uint8Array;
    if (this.buffer.length === 0) data = chunk;
    else {
      data = new Uint8Array(this.buffer.length + chunk.length);
      data.set(this.buffer);
      data.set(chunk, this.buffer.length);
    }
    const frames: WrapperFrame[] = [];
    let at = 0;
    try {
      while (data.length - at >= WRAPPER_HEADER_BYTES) {
        const header = decodeWrapperHeader(data, at);
        if (header.length > this.apduBytesMax) {
          throw new DlmsError(
            "BAD_LENGTH",
            `wrapper frame announces ${header.length} APDU bytes, limit ${this.apduBytesMax}`,
            at + 6,
          );
        }
        const end = at + WRAPPER_HEADER_BYTES + header.length;
        if (end > data.length) break;
        frames.push({
          sourceWPort: header.sourceWPort,
          destinationWPort: header.destinationWPort,
          apdu: data.slice(at + WRAPPER_HEADER_BYTES, end),
        });
        at = end;
      }
    } catch (error) {
      this.buffer = new Uint8Array(0);
      this.failure = error as DlmsError;
      throw error;
    }
    this.buffer = data.slice(at);
    return frames;
  }
}
