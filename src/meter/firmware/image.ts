import {
  ByteReader,
  ByteWriter,
  crc32,
  EvidenceError,
  P256_SIGNATURE_BYTES,
  sha256,
} from "../../evidence/index.ts";
import { FirmwareError } from "./errors.ts";

// Signed firmware image (seeds 000, 001): header (component, version, hardware target, release counter,
// expiry), payload, CRC-32 over header and payload, the signer's X.509 v3 certificate (DER), and an
// ECDSA P-256 signature over everything before it.
//
//   "AFW1" · component u8 · version u32 · hw_target text8 · expires_ms i64 · payload_len u32 ·
//   payload · crc32 u32 · cert_len u16 · cert DER · signature (64, r‖s)

export type FirmwareComponent = "bootloader" | "metrology" | "app" | "comms";
export const FIRMWARE_COMPONENTS: readonly FirmwareComponent[] = ["bootloader", "metrology", "app", "comms"];
/** seed 001: the bootloader is never modified and the certified metrology firmware never changes. */
export const UPDATABLE_COMPONENTS: readonly FirmwareComponent[] = ["app", "comms"];
export const FIRMWARE_PAYLOAD_BYTES_MAX = 64 * 1024;
const MAGIC = [0x41, 0x46, 0x57, 0x31]; // "AFW1"

export interface FirmwareHeader {
  readonly component: FirmwareComponent;
  /** Monotonic release number: the anti-rollback counter compares it. */
  readonly version: number;
  readonly hwTarget: string;
  /** Images are not installed after this instant (0 = no expiry). */
  readonly expiresMs: number;
}

export interface FirmwareImage extends FirmwareHeader {
  readonly payload: Uint8Array;
  readonly crc: number;
  readonly certificateDer: Uint8Array;
  readonly signature: Uint8Array;
  /** Bytes the signature covers. */
  readonly signedBytes: Uint8Array;
  readonly bytes: Uint8Array;
  /** SHA-256 of the whole image: the checksum the asset register records. */
  readonly checksum: Uint8Array;
}

export function versionString(version: number): string {
  return `${Math.floor(version / 1_000_000)}.${Math.floor(version / 1000) % 1000}.${version % 1000}`;
}

export function parseVersion(text: string): number {
  const m = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.exec(text.trim());
  if (m === null) {
    if (/^\d+$/.test(text.trim())) return Number(text.trim());
    throw new FirmwareError("BAD_IMAGE", `version "${text}" is neither MAJOR.MINOR.PATCH nor an integer`);
  }
  return Number(m[1]) * 1_000_000 + Number(m[2]) * 1000 + Number(m[3]);
}

/** Builds the image; `sign` signs with the firmware-signing key whose certificate is `certificateDer`. */
export function buildFirmwareImage(
  header: FirmwareHeader,
  payload: Uint8Array,
  certificateDer: Uint8Array,
  sign: (message: Uint8Array) => Uint8Array,
): FirmwareImage {
  if (payload.length === 0 || payload.length > FIRMWARE_PAYLOAD_BYTES_MAX) {
    throw new FirmwareError(
      "BAD_IMAGE",
      `payload must be 1..${FIRMWARE_PAYLOAD_BYTES_MAX} bytes, got ${payload.length}`,
    );
  }
  if (!Number.isSafeInteger(header.version) || header.version < 0 || header.version > 0xffff_ffff) {
    throw new FirmwareError("BAD_IMAGE", `version ${header.version} does not fit 32 bits`);
  }
  const w = new ByteWriter(payload.length + certificateDer.length + 256);
  w.bytes(Uint8Array.from(MAGIC)).u8(FIRMWARE_COMPONENTS.indexOf(header.component)).u32(header.version);
  w.text8(header.hwTarget, "hw_target").i64(header.expiresMs).u32(payload.length).bytes(payload);
  const crc = crc32(w.finish());
  w.u32(crc).bytes16(certificateDer, "certificate");
  const signedBytes = w.finish();
  const signature = sign(signedBytes);
  w.fixed(signature, P256_SIGNATURE_BYTES, "signature");
  const bytes = w.finish();
  return { ...header, payload, crc, certificateDer, signature, signedBytes, bytes, checksum: sha256(bytes) };
}

/** Decodes an image; a wrong CRC is ERROR_CRC_MISMATCH, a short one TRUNCATED, anything else malformed
 * BAD_IMAGE. The signature is checked by pki.ts. */
export function decodeFirmwareImage(bytes: Uint8Array): FirmwareImage {
  try {
    const r = new ByteReader(bytes, "firmware image");
    for (const expected of MAGIC) {
      if (r.u8("magic") !== expected)
        throw new FirmwareError("BAD_IMAGE", "not an amiproof firmware image (magic)");
    }
    const component = FIRMWARE_COMPONENTS[r.u8("component")];
    if (component === undefined) throw new FirmwareError("BAD_IMAGE", "unknown component");
    const version = r.u32("version");
    const hwTarget = r.text8("hw_target");
    const expiresMs = r.i64("expires");
    const length = r.u32("payload length");
    if (length === 0 || length > FIRMWARE_PAYLOAD_BYTES_MAX) {
      throw new FirmwareError(
        "BAD_IMAGE",
        `payload length ${length} outside 1..${FIRMWARE_PAYLOAD_BYTES_MAX}`,
      );
    }
    const payload = r.bytes(length, "payload");
    const crcAt = r.position;
    const crc = r.u32("crc");
    const computed = crc32(bytes.subarray(0, crcAt));
    if (computed !== crc) {
      throw new FirmwareError(
        "ERROR_CRC_MISMATCH",
        `image CRC 0x${crc.toString(16)} != computed 0x${computed.toString(16)}`,
      );
    }
    const certificateDer = r.bytes16("certificate");
    const signedBytes = bytes.slice(0, r.position);
    const signature = r.bytes(P256_SIGNATURE_BYTES, "signature");
    r.end();
    const copy = bytes.slice();
    return {
      component,
      version,
      hwTarget,
      expiresMs,
      payload,
      crc,
      certificateDer,
      signature,
      signedBytes,
      bytes: copy,
      checksum: sha256(copy),
    };
  } catch (error) {
    if (error instanceof FirmwareError) throw error;
    if (error instanceof EvidenceError)
      throw new FirmwareError(error.code === "TRUNCATED" ? "TRUNCATED" : "BAD_IMAGE", error.message);
    throw error;
  }
}

/** Length of the image at the start of a bank (so a bank can hold an image plus erased space). */
export function imageLengthAt(bank: Uint8Array): number | null {
  if (bank.length < 16 || MAGIC.some((m, i) => bank[i] !== m)) return null;
  const view = new DataView(bank.buffer, bank.byteOffset, bank.byteLength);
  let at = 4 + 1 + 4;
  const hwLength = bank[at]!;
  at += 1 + hwLength + 8;
  if (at + 4 > bank.length) return null;
  const payloadLength = view.getUint32(at);
  at += 4 + payloadLength + 4;
  if (at + 2 > bank.length) return null;
  const certLength = view.getUint16(at);
  at += 2 + certLength + P256_SIGNATURE_BYTES;
  return at <= bank.length ? at : null;
}
