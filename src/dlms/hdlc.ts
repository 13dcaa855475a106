import { DlmsError, DlmsReader } from "./errors.ts";

// HDLC frame format type 3 (IEC 62056-46, after ISO/IEC 13239), the DLMS/COSEM link over serial,
// optical probe and some modems:
//   7E | format (type 0xA, segmentation bit S, 11-bit length) | destination | source | control |
//   HCS (only when an information field follows) | information | FCS | 7E
// The length counts every byte between the flags. No byte stuffing is used: the length field frames
// the data. HCS and FCS are CRC-16/X.25 (the FCS-16 of RFC 1662), sent least significant byte first.

export const HDLC_FLAG = 0x7e;
const FORMAT_TYPE_3 = 0xa000;
const FORMAT_TYPE_MASK = 0xf000;
const SEGMENTATION_BIT = 0x0800;
const FRAME_LENGTH_MASK = 0x07ff;
/** The 11-bit length field bounds a frame to 2047 bytes between the flags. */
export const HDLC_FRAME_LENGTH_MAX = FRAME_LENGTH_MASK;
/**
 * Largest information field a frame can carry: 2047 − format (2) − 4-byte destination − 1-byte
 * source − control (1) − HCS (2) − FCS (2) = 2035; IEC 62056-46 caps the negotiable value at 2030.
 */
export const HDLC_INFO_BYTES_MAX = 2030;
/** IEC 62056-46: max information field length when SNRM/UA do not negotiate one. */
export const HDLC_INFO_BYTES_DEFAULT = 128;
/** IEC 62056-46: window size when SNRM/UA do not negotiate one (and the largest, modulo 8). */
export const HDLC_WINDOW_DEFAULT = 1;
export const HDLC_WINDOW_MAX = 7;
/** Reassembly bound: one maximal xDLMS APDU (uint16 length) plus the LLC header. */
export const HDLC_REASSEMBLY_BYTES_MAX = 65_535 + 3;

/** LLC header in front of an APDU (IEC 62056-46 / 8802-2): client → server and server → client. */
export const LLC_COMMAND = Uint8Array.of(0xe6, 0xe6, 0x00);
export const LLC_RESPONSE = Uint8Array.of(0xe6, 0xe7, 0x00);

/** Reserved HDLC addresses (IEC 62056-46). Client: */
export const HDLC_CLIENT_NO_STATION = 0x00;
export const HDLC_CLIENT_MANAGEMENT = 0x01;
export const HDLC_PUBLIC_CLIENT = 0x10;
/** Server upper address of the management logical device, and the all-station (broadcast) values. */
export const HDLC_SERVER_MANAGEMENT = 0x01;
export const HDLC_ALL_STATION_1_BYTE = 0x7f;
export const HDLC_ALL_STATION_2_BYTE = 0x3fff;

/** CRC-16/X.25 (the FCS-16 of RFC 1662): reflected polynomial 0x8408, init 0xFFFF, final XOR 0xFFFF. */
export function crc16X25(data: Uint8Array, start = 0, end = data.length): number {
  let crc = 0xffff;
  for (let i = start; i < end; i++) {
    crc ^= data[i]!;
    for (let bit = 0; bit < 8; bit++) crc = crc & 1 ? (crc >>> 1) ^ 0x8408 : crc >>> 1;
  }
  return (crc ^ 0xffff) & 0xffff;
}

// ───────────────────────────── control field ─────────────────────────────

export type HdlcFrameKind = "I" | "RR" | "RNR" | "SNRM" | "DISC" | "UA" | "DM" | "FRMR" | "UI";

const POLL_FINAL = 0x10;

/** ISO/IEC 13239 control field values with P/F = 0 (the bit is 0x10). */
const U_FRAMES: Record<number, HdlcFrameKind> = {
  131: "SNRM",
  67: "DISC",
  99: "UA",
  15: "DM",
  135: "FRMR",
  3: "UI",
};

export function controlKind(control: number): HdlcFrameKind {
  if ((control & 0x01) === 0) return "I";
  if ((control & 0x0f) === 0x01) return "RR";
  if ((control & 0x0f) === 0x05) return "RNR";
  const kind = U_FRAMES[control & ~POLL_FINAL & 0xff];
  if (kind === undefined) {
    throw new DlmsError("BAD_TAG", `unknown HDLC control field 0x${control.toString(16).padStart(2, "0")}`);
  }
  return kind;
}

function seq(value: number, what: string): number {
  if (!Number.isInteger(value) || value < 0 || value > 7) {
    throw new DlmsError("BAD_LENGTH", `${what} ${value} is outside 0..7 (sequence numbers are modulo 8)`);
  }
  return value;
}

/** Control field builders: I frames carry N(S) and N(R); RR/RNR carry N(R); P/F is bit 4. */
export const hdlcControl = {
  i: (sendSeq: number, receiveSeq: number, pollFinal = true): number =>
    (seq(receiveSeq, "N(R)") << 5) | (pollFinal ? POLL_FINAL : 0) | (seq(sendSeq, "N(S)") << 1),
  rr: (receiveSeq: number, pollFinal = true): number =>
    (seq(receiveSeq, "N(R)") << 5) | (pollFinal ? POLL_FINAL : 0) | 0x01,
  rnr: (receiveSeq: number, pollFinal = true): number =>
    (seq(receiveSeq, "N(R)") << 5) | (pollFinal ? POLL_FINAL : 0) | 0x05,
  snrm: (poll = true): number => 0x83 | (poll ? POLL_FINAL : 0),
  disc: (poll = true): number => 0x43 | (poll ? POLL_FINAL : 0),
  ua: (final = true): number => 0x63 | (final ? POLL_FINAL : 0),
  dm: (final = true): number => 0x0f | (final ? POLL_FINAL : 0),
  frmr: (final = true): number => 0x87 | (final ? POLL_FINAL : 0),
  ui: (pollFinal = false): number => 0x03 | (pollFinal ? POLL_FINAL : 0),
} as const;

// ───────────────────────────── addresses ─────────────────────────────

export type HdlcAddressBytes = 1 | 2 | 4;

/**
 * An HDLC address as one number: the 7-bit groups of its bytes, most significant first. A 2-byte
 * server address is upper << 7 | lower, a 4-byte one upper << 14 | lower (IEC 62056-46).
 */
export function serverAddress(upper: number, lower: number | null, bytes: HdlcAddressBytes): number {
  if (bytes === 1) {
    if (lower !== null)
      throw new DlmsError("BAD_ADDRESS", "a 1-byte server address has no lower HDLC address");
    return checkAddress(upper, 1);
  }
  const half = bytes === 2 ? 7 : 14;
  const limit = 2 ** half;
  if (lower === null || upper < 0 || upper >= limit || lower < 0 || lower >= limit) {
    throw new DlmsError("BAD_ADDRESS", `upper ${upper} / lower ${lower} do not fit a ${bytes}-byte address`);
  }
  return upper * limit + lower;
}

export function splitServerAddress(
  address: number,
  bytes: HdlcAddressBytes,
): { upper: number; lower: number | null } {
  checkAddress(address, bytes);
  if (bytes === 1) return { upper: address, lower: null };
  const limit = bytes === 2 ? 2 ** 7 : 2 ** 14;
  return { upper: Math.floor(address / limit), lower: address % limit };
}

function checkAddress(address: number, bytes: HdlcAddressBytes): number {
  if (!Number.isInteger(address) || address < 0 || address >= 2 ** (7 * bytes)) {
    throw new DlmsError("BAD_ADDRESS", `HDLC address ${address} does not fit ${bytes} byte(s)`);
  }
  return address;
}

function writeAddress(out: number[], address: number, bytes: HdlcAddressBytes): void {
  checkAddress(address, bytes);
  // Each byte carries 7 address bits above an extension bit that is 1 only on the last byte.
  for (let i = bytes - 1; i >= 0; i--) {
    const group = Math.floor(address / 2 ** (7 * i)) & 0x7f;
    out.push((group << 1) | (i === 0 ? 1 : 0));
  }
}

function readAddress(r: DlmsReader, what: string): { value: number; bytes: HdlcAddressBytes } {
  const at = r.offset;
  let value = 0;
  for (let i = 1; i <= 4; i++) {
    const b = r.u8(what);
    value = value * 128 + (b >> 1);
    if (b & 1) {
      if (i === 3) throw new DlmsError("BAD_ADDRESS", `${what} of 3 bytes (1, 2 or 4 allowed)`, at);
      return { value, bytes: i as HdlcAddressBytes };
    }
  }
  throw new DlmsError("BAD_ADDRESS", `${what} longer than 4 bytes`, at);
}

// ───────────────────────────── frames ─────────────────────────────

export interface HdlcFrame {
  readonly destination: number;
  readonly destinationBytes: HdlcAddressBytes;
  readonly source: number;
  readonly sourceBytes: HdlcAddressBytes;
  readonly control: number;
  readonly kind: HdlcFrameKind;
  readonly pollFinal: boolean;
  /** N(S) of I frames; null otherwise. */
  readonly sendSeq: number | null;
  /** N(R) of I, RR and RNR frames; null otherwise. */
  readonly receiveSeq: number | null;
  /** The segmentation bit: more segments of this information follow. */
  readonly segmented: boolean;
  readonly information: Uint8Array;
}

export interface HdlcEncodeOptions {
  readonly destination: number;
  readonly destinationBytes?: HdlcAddressBytes;
  readonly source: number;
  readonly sourceBytes?: HdlcAddressBytes;
  readonly control: number;
  readonly information?: Uint8Array;
  readonly segmented?: boolean;
}

export function encodeHdlc(options: HdlcEncodeOptions): Uint8Array {
  const info = options.information ?? new Uint8Array(0);
  if (info.length > HDLC_INFO_BYTES_MAX) {
    throw new DlmsError(
      "BAD_LENGTH",
      `information field of ${info.length} bytes exceeds ${HDLC_INFO_BYTES_MAX}`,
    );
  }
  if (!Number.isInteger(options.control) || options.control < 0 || options.control > 0xff) {
    throw new DlmsError("BAD_TAG", `control field ${options.control} is not a byte`);
  }
  const header: number[] = [];
  writeAddress(header, options.destination, options.destinationBytes ?? 1);
  writeAddress(header, options.source, options.sourceBytes ?? 1);
  header.push(options.control);
  const length = 2 + header.length + (info.length > 0 ? 2 + info.length : 0) + 2;
  const format = FORMAT_TYPE_3 | (options.segmented ? SEGMENTATION_BIT : 0) | length;
  const frame = new Uint8Array(length + 2);
  frame[0] = HDLC_FLAG;
  frame[1] = format >> 8;
  frame[2] = format & 0xff;
  frame.set(header, 3);
  let at = 3 + header.length;
  if (info.length > 0) {
    const hcs = crc16X25(frame, 1, at);
    frame[at] = hcs & 0xff;
    frame[at + 1] = hcs >> 8;
    at += 2;
    frame.set(info, at);
    at += info.length;
  }
  const fcs = crc16X25(frame, 1, at);
  frame[at] = fcs & 0xff;
  frame[at + 1] = fcs >> 8;
  frame[at + 2] = HDLC_FLAG;
  return frame;
}

/** Decodes exactly one frame, flags included. */
export function decodeHdlc(bytes: Uint8Array): HdlcFrame {
  const r = new DlmsReader(bytes);
  if (r.u8("opening flag") !== HDLC_FLAG)
    throw new DlmsError("BAD_FLAG", "HDLC frame must start with 0x7E", 0);
  const format = r.u16("frame format");
  if ((format & FORMAT_TYPE_MASK) !== FORMAT_TYPE_3) {
    throw new DlmsError(
      "BAD_TAG",
      `frame format type 0x${(format >> 12).toString(16)}, expected 0xA (type 3)`,
      1,
    );
  }
  const length = format & FRAME_LENGTH_MASK;
  if (length + 2 !== bytes.length) {
    throw new DlmsError(
      length + 2 > bytes.length ? "TRUNCATED" : "TRAILING_BYTES",
      `format field says ${length} bytes between the flags, the frame has ${Math.max(0, bytes.length - 2)}`,
      1,
    );
  }
  if (bytes[bytes.length - 1] !== HDLC_FLAG) {
    throw new DlmsError("BAD_FLAG", "HDLC frame must end with 0x7E", bytes.length - 1);
  }
  const fcsAt = bytes.length - 3;
  // Parse the header inside the frame only: the FCS and closing flag are not header bytes.
  const header = new DlmsReader(bytes.subarray(0, fcsAt));
  header.offset = 3;
  const destination = readAddress(header, "destination address");
  const source = readAddress(header, "source address");
  const control = header.u8("control field");
  const kind = controlKind(control);
  const headerEnd = header.offset;
  let information: Uint8Array = new Uint8Array(0);
  if (fcsAt > headerEnd) {
    if (fcsAt - headerEnd < 2) {
      throw new DlmsError("BAD_LENGTH", "one byte between header and FCS: no room for an HCS", headerEnd);
    }
    const hcs = bytes[headerEnd]! | (bytes[headerEnd + 1]! << 8);
    if (hcs !== crc16X25(bytes, 1, headerEnd)) {
      throw new DlmsError("BAD_HCS", "header check sequence does not match the header", headerEnd);
    }
    information = bytes.slice(headerEnd + 2, fcsAt);
  }
  const fcs = bytes[fcsAt]! | (bytes[fcsAt + 1]! << 8);
  if (fcs !== crc16X25(bytes, 1, fcsAt)) {
    throw new DlmsError("BAD_FCS", "frame check sequence does not match the frame", fcsAt);
  }
  return {
    destination: destination.value,
    destinationBytes: destination.bytes,
    source: source.value,
    sourceBytes: source.bytes,
    control,
    kind,
    pollFinal: (control & POLL_FINAL) !== 0,
    sendSeq: kind === "I" ? (control >> 1) & 0x07 : null,
    receiveSeq: kind === "I" || kind === "RR" || kind === "RNR" ? (control >> 5) & 0x07 : null,
    segmented: (format & SEGMENTATION_BIT) !== 0,
    information,
  };
}

// ───────────────────────────── byte stream → frames ─────────────────────────────

export type HdlcStreamItem = { readonly frame: HdlcFrame } | { readonly error: DlmsError };

/**
 * Cuts frames out of a serial byte stream. Noise before a flag is dropped; consecutive frames may
 * share one flag (ISO/IEC 13239). A damaged frame yields an error item and the reader resynchronises
 * on the next flag. Holds at most one maximal frame (2049 bytes) plus the chunk being pushed.
 */
export class HdlcStreamReader {
  private buffer: Uint8Array = new Uint8Array(0);
  /** Bytes skipped while hunting for a flag (line noise), for the link's evidence counters. */
  noiseBytes = 0;

  /** Bytes held for a frame that has not fully arrived (a lone closing flag does not count). */
  get pendingBytes(): number {
    return this.buffer.length === 1 && this.buffer[0] === HDLC_FLAG ? 0 : this.buffer.length;
  }

  /**
   * Drops a partly received frame (the link's inter-octet time-out passed): bytes held for a frame whose
   * length field was damaged must not swallow, and later replay, the frames that follow. Returns the
   * bytes dropped.
   */
  discardPending(): number {
    const dropped = this.pendingBytes;
    this.buffer = new Uint8Array(0);
    return dropped;
  }

  push(chunk: Uint8Array): HdlcStreamItem[] {
    const data = new Uint8Array(this.buffer.length + chunk.length);
    data.set(this.buffer);
    data.set(chunk, this.buffer.length);
    const items: HdlcStreamItem[] = [];
    let at = 0;
    while (at < data.length) {
      if (data[at] !== HDLC_FLAG) {
        at++;
        this.noiseBytes++;
        continue;
      }
      if (at + 1 >= data.length) break;
      if (data[at + 1] === HDLC_FLAG) {
        at++; // inter-frame fill: flag after flag
        continue;
      }
      if (at + 3 > data.length) break;
      const format = (data[at + 1]! << 8) | data[at + 2]!;
      if ((format & FORMAT_TYPE_MASK) !== FORMAT_TYPE_3) {
        items.push({
          error: new DlmsError("BAD_TAG", `frame format 0x${format.toString(16)} after a flag`, at + 1),
        });
        at++;
        continue;
      }
      const end = at + (format & FRAME_LENGTH_MASK) + 2;
      if (end > data.length) break;
      try {
        items.push({ frame: decodeHdlc(data.subarray(at, end)) });
        at = end - 1; // the closing flag may open the next frame
      } catch (error) {
        if (!(error instanceof DlmsError)) throw error;
        items.push({ error });
        at++;
      }
    }
    this.buffer = data.slice(at);
    return items;
  }
}

// ───────────────────────────── segmentation ─────────────────────────────

/**
 * Splits an information field (LLC header + APDU) into segments of at most `maxInfoBytes`; every
 * segment but the last travels in an I frame with the segmentation bit set (IEC 62056-46 §6.4.4.4).
 */
export function segmentInformation(information: Uint8Array, maxInfoBytes: number): Uint8Array[] {
  if (!Number.isInteger(maxInfoBytes) || maxInfoBytes < 1 || maxInfoBytes > HDLC_INFO_BYTES_MAX) {
    throw new DlmsError(
      "BAD_LENGTH",
      `max information field ${maxInfoBytes} outside 1..${HDLC_INFO_BYTES_MAX}`,
    );
  }
  if (information.length > HDLC_REASSEMBLY_BYTES_MAX) {
    throw new DlmsError(
      "BAD_LENGTH",
      `information of ${information.length} bytes exceeds ${HDLC_REASSEMBLY_BYTES_MAX}`,
    );
  }
  const segments: Uint8Array[] = [];
  for (let at = 0; at < information.length; at += maxInfoBytes) {
    segments.push(information.subarray(at, Math.min(information.length, at + maxInfoBytes)));
  }
  if (segments.length === 0) segments.push(new Uint8Array(0));
  return segments;
}

/** Joins the information fields of segmented I frames; bounded by `HDLC_REASSEMBLY_BYTES_MAX`. */
export class HdlcReassembler {
  private parts: Uint8Array[] = [];
  private total = 0;

  get pendingBytes(): number {
    return this.total;
  }

  /** Returns the whole information field once the last segment (S = 0) arrives, else null. */
  push(frame: Pick<HdlcFrame, "segmented" | "information">): Uint8Array | null {
    if (this.total + frame.information.length > HDLC_REASSEMBLY_BYTES_MAX) {
      this.reset();
      throw new DlmsError("BAD_LENGTH", `segmented information exceeds ${HDLC_REASSEMBLY_BYTES_MAX} bytes`);
    }
    this.parts.push(frame.information);
    this.total += frame.information.length;
    if (frame.segmented) return null;
    const out = new Uint8Array(this.total);
    let at = 0;
    for (const part of this.parts) {
      out.set(part, at);
      at += part.length;
    }
    this.reset();
    return out;
  }

  reset(): void {
    this.parts = [];
    this.total = 0;
  }
}

/** Removes the LLC header; `expect` says which direction the frame must come from. */
export function stripLlc(information: Uint8Array, expect: "command" | "response"): Uint8Array {
  const llc = expect === "command" ? LLC_COMMAND : LLC_RESPONSE;
  if (
    information.length < 3 ||
    information[0] !== llc[0] ||
    information[1] !== llc[1] ||
    information[2] !== llc[2]
  ) {
    throw new DlmsError(
      "BAD_TAG",
      `information field does not start with the ${expect} LLC header E6 ${expect === "command" ? "E6" : "E7"} 00`,
    );
  }
  return information.subarray(3);
}

export function withLlc(apdu: Uint8Array, direction: "command" | "response"): Uint8Array {
  const out = new Uint8Array(apdu.length + 3);
  out.set(direction === "command" ? LLC_COMMAND : LLC_RESPONSE);
  out.set(apdu, 3);
  return out;
}

// ───────────────────────────── SNRM / UA parameters ─────────────────────────────

/**
 * HDLC parameter negotiation (IEC 62056-46 §6.4.4.4.3.2, ISO/IEC 13239 user parameter set): the SNRM
 * proposes and the UA answers, each from its sender's point of view. Format identifier 0x81, group
 * identifier 0x80, then parameters 05 (max info transmit), 06 (max info receive), 07 (window transmit),
 * 08 (window receive).
 */
export interface HdlcParameters {
  readonly maxInfoTransmit: number;
  readonly maxInfoReceive: number;
  readonly windowTransmit: number;
  readonly windowReceive: number;
}

export const HDLC_DEFAULT_PARAMETERS: HdlcParameters = {
  maxInfoTransmit: HDLC_INFO_BYTES_DEFAULT,
  maxInfoReceive: HDLC_INFO_BYTES_DEFAULT,
  windowTransmit: HDLC_WINDOW_DEFAULT,
  windowReceive: HDLC_WINDOW_DEFAULT,
};

const PARAMETER_FORMAT_ID = 0x81;
const PARAMETER_GROUP_ID = 0x80;
const PARAM = {
  maxInfoTransmit: 0x05,
  maxInfoReceive: 0x06,
  windowTransmit: 0x07,
  windowReceive: 0x08,
} as const;

function checkParameters(p: HdlcParameters): void {
  for (const name of ["maxInfoTransmit", "maxInfoReceive"] as const) {
    if (!Number.isInteger(p[name]) || p[name] < 1 || p[name] > HDLC_INFO_BYTES_MAX) {
      throw new DlmsError("BAD_LENGTH", `${name} ${p[name]} outside 1..${HDLC_INFO_BYTES_MAX}`);
    }
  }
  for (const name of ["windowTransmit", "windowReceive"] as const) {
    if (!Number.isInteger(p[name]) || p[name] < 1 || p[name] > HDLC_WINDOW_MAX) {
      throw new DlmsError("BAD_LENGTH", `${name} ${p[name]} outside 1..${HDLC_WINDOW_MAX}`);
    }
  }
}

/** Info lengths in one byte when they fit, else two; window sizes in four (as common meters send). */
export function encodeHdlcParameters(p: HdlcParameters): Uint8Array {
  checkParameters(p);
  const body: number[] = [];
  for (const name of ["maxInfoTransmit", "maxInfoReceive"] as const) {
    const v = p[name];
    if (v < 256) body.push(PARAM[name], 1, v);
    else body.push(PARAM[name], 2, v >> 8, v & 0xff);
  }
  for (const name of ["windowTransmit", "windowReceive"] as const)
    body.push(PARAM[name], 4, 0, 0, 0, p[name]);
  return Uint8Array.of(PARAMETER_FORMAT_ID, PARAMETER_GROUP_ID, body.length, ...body);
}

/** An empty information field means "all defaults". Unknown parameters are skipped. */
export function decodeHdlcParameters(information: Uint8Array): HdlcParameters {
  if (information.length === 0) return HDLC_DEFAULT_PARAMETERS;
  const r = new DlmsReader(information);
  if (r.u8("format identifier") !== PARAMETER_FORMAT_ID) {
    throw new DlmsError("BAD_TAG", "HDLC parameters must start with format identifier 0x81", 0);
  }
  if (r.u8("group identifier") !== PARAMETER_GROUP_ID) {
    throw new DlmsError("BAD_TAG", "HDLC parameter group identifier must be 0x80", 1);
  }
  const groupLength = r.u8("group length");
  if (groupLength !== r.remaining) {
    throw new DlmsError("BAD_LENGTH", `parameter group says ${groupLength} bytes, ${r.remaining} follow`, 2);
  }
  const out: { -readonly [K in keyof HdlcParameters]: number } = { ...HDLC_DEFAULT_PARAMETERS };
  while (r.remaining > 0) {
    const id = r.u8("parameter identifier");
    const length = r.u8("parameter length");
    const at = r.offset;
    const raw = r.bytes(length, "parameter value");
    if (length > 4)
      throw new DlmsError("BAD_LENGTH", `HDLC parameter 0x${id.toString(16)} of ${length} bytes`, at);
    let value = 0;
    for (const b of raw) value = value * 256 + b;
    switch (id) {
      case PARAM.maxInfoTransmit:
        out.maxInfoTransmit = value;
        break;
      case PARAM.maxInfoReceive:
        out.maxInfoReceive = value;
        break;
      case PARAM.windowTransmit:
        out.windowTransmit = value;
        break;
      case PARAM.windowReceive:
        out.windowReceive = value;
        break;
      default:
        break;
    }
  }
  checkParameters(out);
  return out;
}

/**
 * The server's answer to a client's SNRM proposal: never send more than the client can receive, never
 * accept more than the server can. The result is the UA's parameters (server's point of view).
 */
export function negotiateHdlcParameters(
  proposal: HdlcParameters,
  serverLimits: HdlcParameters,
): HdlcParameters {
  checkParameters(proposal);
  checkParameters(serverLimits);
  return {
    maxInfoTransmit: Math.min(serverLimits.maxInfoTransmit, proposal.maxInfoReceive),
    maxInfoReceive: Math.min(serverLimits.maxInfoReceive, proposal.maxInfoTransmit),
    windowTransmit: Math.min(serverLimits.windowTransmit, proposal.windowReceive),
    windowReceive: Math.min(serverLimits.windowReceive, proposal.windowTransmit),
  };
}
