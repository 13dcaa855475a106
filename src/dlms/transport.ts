import { DlmsError, DlmsReader } from "./errors.ts";

// Transports: the TCP/UDP wrapper (IEC 62056-4-7 / Green Book: version 0x0001, source wPort, destination
// wPort, length; IANA port 4059) and HDLC frame format type 3 (IEC 62056-46): flags, format field,
// addresses with the LSB extension bit, control, HCS and FCS with CRC-16/X.25.

export const DLMS_TCP_PORT = 4059;
export const WRAPPER_VERSION = 0x0001;
export const WRAPPER_HEADER_BYTES = 8;
export const APDU_BYTES_MAX = 65_535;

export interface WrapperFrame {
  readonly sourceWPort: number;
  readonly destinationWPort: number;
  readonly apdu: Uint8Array;
}

export function encodeWrapper(frame: WrapperFrame): Uint8Array {
  if (frame.apdu.length > APDU_BYTES_MAX)
    throw new DlmsError("BAD_LENGTH", `APDU of ${frame.apdu.length} bytes`);
  const out = new Uint8Array(WRAPPER_HEADER_BYTES + frame.apdu.length);
  const view = new DataView(out.buffer);
  view.setUint16(0, WRAPPER_VERSION);
  view.setUint16(2, frame.sourceWPort);
  view.setUint16(4, frame.destinationWPort);
  view.setUint16(6, frame.apdu.length);
  out.set(frame.apdu, WRAPPER_HEADER_BYTES);
  return out;
}

export function decodeWrapper(bytes: Uint8Array): WrapperFrame {
  const r = new DlmsReader(bytes);
  const version = r.u16("wrapper version");
  if (version !== WRAPPER_VERSION)
    throw new DlmsError("BAD_WRAPPER", `wrapper version ${version}, expected 1`, 0);
  const sourceWPort = r.u16("source wPort");
  const destinationWPort = r.u16("destination wPort");
  const length = r.u16("length");
  if (length !== r.remaining) {
    throw new DlmsError(
      length > r.remaining ? "TRUNCATED" : "TRAILING_BYTES",
      `wrapper says ${length} APDU bytes, ${r.remaining} follow`,
      6,
    );
  }
  return { sourceWPort, destinationWPort, apdu: r.bytes(length, "APDU") };
}

/** Reassembles wrapper frames from TCP chunks; bounded by one maximal frame. */
export class WrapperReassembler {
  private buffer = new Uint8Array(0);

  push(chunk: Uint8Array): WrapperFrame[] {
    const merged = new Uint8Array(this.buffer.length + chunk.length);
    merged.set(this.buffer);
    merged.set(chunk, this.buffer.length);
    this.buffer = merged;
    const frames: WrapperFrame[] = [];
    while (this.buffer.length >= WRAPPER_HEADER_BYTES) {
      const view = new DataView(this.buffer.buffer, this.buffer.byteOffset);
      if (view.getUint16(0) !== WRAPPER_VERSION) {
        this.buffer = new Uint8Array(0);
        throw new DlmsError("BAD_WRAPPER", "stream lost wrapper framing (version != 1)");
      }
      const total = WRAPPER_HEADER_BYTES + view.getUint16(6);
      if (this.buffer.length < total) break;
      frames.push(decodeWrapper(this.buffer.subarray(0, total)));
      this.buffer = this.buffer.slice(total);
    }
    return frames;
  }
}

// ───────────────────────────── HDLC ─────────────────────────────

export const HDLC_FLAG = 0x7e;
/** Frame format type 3 in the high nibble (1010), then the segmentation bit and an 11-bit length. */
const FORMAT_TYPE_3 = 0xa000;
const SEGMENTATION_BIT = 0x0800;
export const HDLC_INFO_BYTES_MAX = 2030;
/** The LLC header in front of an APDU: command (client → server) and response. */
export const LLC_COMMAND = Uint8Array.of(0xe6, 0xe6, 0x00);
export const LLC_RESPONSE = Uint8Array.of(0xe6, 0xe7, 0x00);

/** CRC-16/X.25 (the FCS-16 of RFC 1662): reflected polynomial 0x8408, init 0xFFFF, final XOR 0xFFFF. */
export function crc16X25(data: Uint8Array, start = 0, end = data.length): number {
  let crc = 0xffff;
  for (let i = start; i < end; i++) {
    crc ^= data[i]!;
    for (let bit = 0; bit < 8; bit++) crc = crc & 1 ? (crc >>> 1) ^ 0x8408 : crc >>> 1;
  }
  return (crc ^ 0xffff) & 0xffff;
}

export type HdlcFrameKind = "I" | "RR" | "RNR" | "SNRM" | "DISC" | "UA" | "DM" | "FRMR" | "UI";

export interface HdlcFrame {
  readonly destination: number;
  readonly source: number;
  readonly control: number;
  readonly kind: HdlcFrameKind;
  readonly pollFinal: boolean;
  /** Send and receive sequence numbers for I frames (N(R) also for RR/RNR). */
  readonly sendSeq: number | null;
  readonly receiveSeq: number | null;
  readonly segmented: boolean;
  readonly information: Uint8Array;
}

export function controlKind(control: number): HdlcFrameKind {
  if ((control & 0x01) === 0) return "I";
  switch (control & 0x0f) {
    case 0x01:
      return "RR";
    case 0x05:
      return "RNR";
    default:
      break;
  }
  switch (control & 0xef) {
    case 0x83:
      return "SNRM";
    case 0x43:
      return "DISC";
    case 0x63:
      return "UA";
    case 0x0f:
      return "DM";
    case 0x87:
      return "FRMR";
    case 0x03:
      return "UI";
    default:
      throw new DlmsError("BAD_TAG", `unknown HDLC control field 0x${control.toString(16)}`);
  }
}

function encodeAddress(address: number, bytes: 1 | 2 | 4): number[] {
  // Each byte carries 7 address bits, LSB 0 except on the last byte (extension bit).
  if (!Number.isInteger(address) || address < 0 || address >= 2 ** (7 * bytes)) {
    throw new DlmsError("BAD_ADDRESS", `HDLC address ${address} does not fit ${bytes} byte(s)`);
  }
  if (bytes === 1) return [((address << 1) | 1) & 0xff];
  if (bytes === 2) return [((address >> 7) << 1) & 0xfe, ((address << 1) | 1) & 0xff];
  return [
    ((address >> 21) << 1) & 0xfe,
    ((address >> 14) << 1) & 0xfe,
    ((address >> 7) << 1) & 0xfe,
    ((address << 1) | 1) & 0xff,
  ];
}

function readAddress(r: DlmsReader, what: string): number {
  let value = 0;
  for (let i = 0; i < 4; i++) {
    const b = r.u8(what);
    value = (value << 7) | (b >> 1);
    if (b & 1) return value;
  }
  throw new DlmsError("BAD_ADDRESS", `${what} longer than 4 bytes`, r.offset);
}

export interface HdlcEncodeOptions {
  readonly destination: number;
  readonly destinationBytes?: 1 | 2 | 4;
  readonly source: number;
  readonly control: number;
  readonly information?: Uint8Array;
  readonly segmented?: boolean;
}

export function encodeHdlc(options: HdlcEncodeOptions): Uint8Array {
  const info = options.information ?? new Uint8Array(0);
  if (info.length > HDLC_INFO_BYTES_MAX)
    throw new DlmsError("BAD_LENGTH", `information field of ${info.length} bytes`);
  const header = [
    ...encodeAddress(options.destination, options.destinationBytes ?? 1),
    ...encodeAddress(options.source, 1),
    options.control,
  ];
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
    frame[at] = hcs & 0xff; // CRC-16/X.25 goes on the line least significant byte first
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

export function decodeHdlc(bytes: Uint8Array): HdlcFrame {
  const r = new DlmsReader(bytes);
  if (r.u8("opening flag") !== HDLC_FLAG)
    throw new DlmsError("BAD_FLAG", "HDLC frame must start with 0x7E", 0);
  const format = r.u16("frame format");
  if ((format & 0xf000) !== FORMAT_TYPE_3)
    throw new DlmsError("BAD_TAG", `frame format type ${format >> 12}, expected 0xA`, 1);
  const length = format & 0x07ff;
  if (length + 2 !== bytes.length) {
    throw new DlmsError(
      length + 2 > bytes.length ? "TRUNCATED" : "TRAILING_BYTES",
      `format says ${length} bytes between flags, frame has ${bytes.length - 2}`,
      1,
    );
  }
  if (bytes[bytes.length - 1] !== HDLC_FLAG)
    throw new DlmsError("BAD_FLAG", "HDLC frame must end with 0x7E", bytes.length - 1);
  const destination = readAddress(r, "destination address");
  const source = readAddress(r, "source address");
  const control = r.u8("control");
  const kind = controlKind(control);
  const headerEnd = r.offset;
  let information = new Uint8Array(0);
  const fcsAt = bytes.length - 3;
  if (headerEnd < fcsAt) {
    const hcs = r.u8("HCS") | (r.u8("HCS") << 8);
    if (hcs !== crc16X25(bytes, 1, headerEnd))
      throw new DlmsError("BAD_HCS", "header check sequence mismatch", headerEnd);
    information = bytes.slice(r.offset, fcsAt);
  } else if (headerEnd > fcsAt) {
    throw new DlmsError("TRUNCATED", "frame shorter than its header and FCS", headerEnd);
  }
  const fcs = bytes[fcsAt]! | (bytes[fcsAt + 1]! << 8);
  if (fcs !== crc16X25(bytes, 1, fcsAt))
    throw new DlmsError("BAD_FCS", "frame check sequence mismatch", fcsAt);
  return {
    destination,
    source,
    control,
    kind,
    pollFinal: (control & 0x10) !== 0,
    sendSeq: kind === "I" ? (control >> 1) & 0x07 : null,
    receiveSeq: kind === "I" || kind === "RR" || kind === "RNR" ? (control >> 5) & 0x07 : null,
    segmented: (format & SEGMENTATION_BIT) !== 0,
    information,
  };
}
