import { MbusError } from "./errors.ts";

// EN 13757-2 (FT 1.2 of IEC 60870-5-1/-2): four frame formats, encoded and decoded side by side.

export const MBUS_ACK = 0xe5;
export const MBUS_START_SHORT = 0x10;
export const MBUS_START_LONG = 0x68;
export const MBUS_STOP = 0x16;

/** EN 13757-2: L counts C, A, CI and the user data; one byte, so at most 255. */
export const MBUS_L_FIELD_MAX = 255;
/** L minus C, A and CI. */
export const MBUS_LONG_DATA_BYTES_MAX = MBUS_L_FIELD_MAX - 3;
/** 68 L L 68 + L bytes + CS 16. */
export const MBUS_FRAME_BYTES_MAX = MBUS_L_FIELD_MAX + 6;
export const MBUS_SHORT_FRAME_BYTES = 5;

// C field (EN 13757-2 §5.4 / IEC 60870-5-2): bit 6 PRM (1 = master → slave), bit 5 FCB (master) or ACD (slave),
// bit 4 FCV (master) or DFC (slave), bits 0–3 the function code.
export const C_SND_NKE = 0x40;
export const C_SND_UD = 0x53;
export const C_REQ_UD1 = 0x5a;
export const C_REQ_UD2 = 0x5b;
export const C_RSP_UD = 0x08;
export const C_FCB = 0x20;
export const C_FCV = 0x10;
export const C_PRM = 0x40;

// A field (EN 13757-2 §5.5): 0 unconfigured, 1–250 primary, 253 network layer (secondary addressing),
// 254 broadcast with answers (point to point), 255 broadcast without answers.
export const ADDRESS_PRIMARY_MAX = 250;
export const ADDRESS_NETWORK_LAYER = 0xfd;
export const ADDRESS_BROADCAST_REPLY = 0xfe;
export const ADDRESS_BROADCAST_NO_REPLY = 0xff;

export type MbusFrame =
  | { kind: "ack" }
  | { kind: "short"; control: number; address: number }
  | { kind: "control"; control: number; address: number; ci: number }
  | { kind: "long"; control: number; address: number; ci: number; data: Uint8Array };

export interface ControlField {
  /** true for master → slave. */
  primary: boolean;
  /** FCB for a master frame, ACD for a slave frame. */
  fcbOrAcd: boolean;
  /** FCV for a master frame, DFC for a slave frame. */
  fcvOrDfc: boolean;
  functionCode: number;
  name: string;
}

export function decodeControl(control: number): ControlField {
  const primary = (control & C_PRM) !== 0;
  const functionCode = control & 0x0f;
  const fcbOrAcd = (control & C_FCB) !== 0;
  const fcvOrDfc = (control & C_FCV) !== 0;
  let name = "unknown";
  if (primary) {
    if (functionCode === 0x0 && !fcbOrAcd && !fcvOrDfc) name = "SND_NKE";
    else if (functionCode === 0x3) name = "SND_UD";
    else if (functionCode === 0xa) name = "REQ_UD1";
    else if (functionCode === 0xb) name = "REQ_UD2";
  } else if (functionCode === 0x8) {
    name = "RSP_UD";
  }
  return { primary, fcbOrAcd, fcvOrDfc, functionCode, name };
}

export function checksum(bytes: Uint8Array, start: number, end: number): number {
  let sum = 0;
  for (let i = start; i < end; i += 1) sum = (sum + bytes[i]!) & 0xff;
  return sum;
}

function checkByte(value: number, what: string): void {
  if (!Number.isInteger(value) || value < 0 || value > 0xff) {
    throw new MbusError("BAD_FIELD", `${what} must be a byte 0..255, got ${value}`);
  }
}

export function encodeFrame(frame: MbusFrame): Uint8Array {
  switch (frame.kind) {
    case "ack":
      return Uint8Array.of(MBUS_ACK);
    case "short": {
      checkByte(frame.control, "C field");
      checkByte(frame.address, "A field");
      const cs = (frame.control + frame.address) & 0xff;
      return Uint8Array.of(MBUS_START_SHORT, frame.control, frame.address, cs, MBUS_STOP);
    }
    case "control":
    case "long": {
      checkByte(frame.control, "C field");
      checkByte(frame.address, "A field");
      checkByte(frame.ci, "CI field");
      const data = frame.kind === "long" ? frame.data : new Uint8Array(0);
      if (frame.kind === "long" && data.length === 0) {
        throw new MbusError("BAD_FIELD", "a long frame carries at least one data byte (use a control frame)");
      }
      if (data.length > MBUS_LONG_DATA_BYTES_MAX) {
        throw new MbusError(
          "BAD_FIELD",
          `long frame data holds at most ${MBUS_LONG_DATA_BYTES_MAX} bytes, got ${data.length}`,
        );
      }
      const l = data.length + 3;
      const out = new Uint8Array(l + 6);
      out[0] = MBUS_START_LONG;
      out[1] = l;
      out[2] = l;
      out[3] = MBUS_START_LONG;
      out[4] = frame.control;
      out[5] = frame.address;
      out[6] = frame.ci;
      out.set(data, 7);
      out[l + 4] = checksum(out, 4, l + 4);
      out[l + 5] = MBUS_STOP;
      return out;
    }
  }
}

/**
 * How many bytes the frame that starts `bytes` occupies, or null when more bytes are needed to tell.
 * Lets a stream reader know when a frame is complete without decoding it.
 */
export function frameLength(bytes: Uint8Array): number | null {
  if (bytes.length === 0) return null;
  const start = bytes[0]!;
  if (start === MBUS_ACK) return 1;
  if (start === MBUS_START_SHORT) return MBUS_SHORT_FRAME_BYTES;
  if (start === MBUS_START_LONG) {
    if (bytes.length < 2) return null;
    const l = bytes[1]!;
    if (l < 3) throw new MbusError("BAD_LENGTH", `L field must be at least 3 (C, A, CI), got ${l}`, "byte 1");
    return l + 6;
  }
  throw new MbusError("BAD_START", `expected 0xE5, 0x10 or 0x68, got 0x${hexByte(start)}`, "byte 0");
}

/** Decodes exactly one frame occupying all of `bytes`. */
export function decodeFrame(bytes: Uint8Array): MbusFrame {
  const length = frameLength(bytes);
  if (length === null) {
    throw new MbusError("TRUNCATED", `frame needs more than ${bytes.length} byte(s)`, `byte ${bytes.length}`);
  }
  if (bytes.length < length) {
    throw new MbusError(
      "TRUNCATED",
      `frame needs ${length} bytes, got ${bytes.length}`,
      `byte ${bytes.length}`,
    );
  }
  const start = bytes[0]!;
  if (start === MBUS_ACK) {
    if (bytes.length > 1) throw trailing(1, bytes.length);
    return { kind: "ack" };
  }
  if (start === MBUS_START_SHORT) {
    const [, control, address, cs, stop] = bytes as unknown as number[];
    const sum = (control! + address!) & 0xff;
    if (cs !== sum) {
      throw new MbusError(
        "BAD_CHECKSUM",
        `short frame checksum 0x${hexByte(cs!)} differs from the sum 0x${hexByte(sum)}`,
        "byte 3",
      );
    }
    if (stop !== MBUS_STOP) {
      throw new MbusError("BAD_STOP", `expected 0x16, got 0x${hexByte(stop!)}`, "byte 4");
    }
    if (bytes.length > MBUS_SHORT_FRAME_BYTES) throw trailing(MBUS_SHORT_FRAME_BYTES, bytes.length);
    return { kind: "short", control: control!, address: address! };
  }
  // long or control frame: 68 L L 68 C A CI data CS 16
  const l = bytes[1]!;
  if (bytes[2] !== l) {
    throw new MbusError(
      "BAD_LENGTH",
      `L fields differ: 0x${hexByte(l)} and 0x${hexByte(bytes[2]!)}`,
      "byte 2",
    );
  }
  if (bytes[3] !== MBUS_START_LONG) {
    throw new MbusError("BAD_START", `expected the second 0x68, got 0x${hexByte(bytes[3]!)}`, "byte 3");
  }
  const cs = bytes[l + 4]!;
  const sum = checksum(bytes, 4, l + 4);
  if (cs !== sum) {
    throw new MbusError(
      "BAD_CHECKSUM",
      `checksum 0x${hexByte(cs)} differs from the sum of C..data 0x${hexByte(sum)}`,
      `byte ${l + 4}`,
    );
  }
  if (bytes[l + 5] !== MBUS_STOP) {
    throw new MbusError("BAD_STOP", `expected 0x16, got 0x${hexByte(bytes[l + 5]!)}`, `byte ${l + 5}`);
  }
  if (bytes.length > length) throw trailing(length, bytes.length);
  const control = bytes[4]!;
  const address = bytes[5]!;
  const ci = bytes[6]!;
  if (l === 3) return { kind: "control", control, address, ci };
  return { kind: "long", control, address, ci, data: bytes.slice(7, l + 4) };
}

function trailing(expected: number, got: number): MbusError {
  return new MbusError(
    "TRAILING_BYTES",
    `frame ends after ${expected} byte(s) but ${got - expected} more followed`,
    `byte ${expected}`,
  );
}

export function hexByte(value: number): string {
  return value.toString(16).toUpperCase().padStart(2, "0");
}

// Convenience builders for the master's requests (EN 13757-2 §5 / EN 13757-3 §5).
export function sndNke(address: number): MbusFrame {
  return { kind: "short", control: C_SND_NKE, address };
}

export function reqUd2(address: number, fcb: boolean): MbusFrame {
  return { kind: "short", control: C_REQ_UD2 | (fcb ? C_FCB : 0), address };
}

export function sndUd(address: number, ci: number, data: Uint8Array, fcb = false): MbusFrame {
  const control = C_SND_UD | (fcb ? C_FCB : 0);
  return data.length === 0
    ? { kind: "control", control, address, ci }
    : { kind: "long", control, address, ci, data };
}
