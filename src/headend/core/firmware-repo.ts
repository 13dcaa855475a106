import { X509Certificate } from "node:crypto";
import {
  ByteReader,
  crc32,
  EvidenceError,
  P256_SIGNATURE_BYTES,
  p256Verify,
  rawPublicKey,
  sha256,
  toHex,
} from "../../evidence/index.ts";

// The head-end's firmware repository (issue 9, seeds 000/001): an uploaded image is accepted only if
// its CRC, certificate chain (issued by the trusted CA, end-entity, code signing, valid now) and ECDSA
// P-256 signature verify and it has not expired; its SHA-256 checksum is what the asset register records
// and what remote confirmation compares. Metrology and bootloader images are refused: they never change
// in the field (seed 001). The AFW1 layout is the meters' image format (src/meter/firmware/README.md),
// read here on its own because roles share wire formats, not code:
//
//   "AFW1" · component u8 · version u32 · hw_target text8 · expires_ms i64 · payload_len u32 ·
//   payload · crc32 u32 · cert_len u16 · cert DER · signature (64, r‖s)

export type CampaignErrorCode =
  | "ERROR_CRC_MISMATCH"
  | "SIGN_AUTH_FAIL"
  | "COMPONENT_NOT_UPDATABLE"
  | "IMAGE_EXPIRED"
  | "BAD_IMAGE"
  | "STALE_RELEASE"
  | "UNKNOWN_IMAGE"
  | "NOT_FOUND"
  | "BAD_STATE"
  | "FORBIDDEN"
  | "BAD_REQUEST"
  | "NO_TARGETS"
  | "NOT_CONFIGURED";

export class CampaignError extends Error {
  readonly code: CampaignErrorCode;
  readonly detail: string | undefined;
  constructor(code: CampaignErrorCode, message: string, detail?: string) {
    super(`${code}: ${message}`);
    this.name = "CampaignError";
    this.code = code;
    this.detail = detail;
  }
}

export function isCampaignError(error: unknown, code?: CampaignErrorCode): error is CampaignError {
  return error instanceof CampaignError && (code === undefined || error.code === code);
}

const COMPONENTS = ["bootloader", "metrology", "app", "comms"] as const;
export type ImageComponent = (typeof COMPONENTS)[number];
const MAGIC = [0x41, 0x46, 0x57, 0x31]; // "AFW1"
const CODE_SIGNING_OID = "1.3.6.1.5.5.7.3.3"; // RFC 5280 §4.2.1.12
export const REPOSITORY_IMAGES_MAX = 256;

export interface RepositoryImage {
  readonly component: "app" | "comms";
  /** The release counter (MAJOR·10⁶ + MINOR·10³ + PATCH). */
  readonly version: number;
  readonly versionText: string;
  readonly hwTarget: string;
  /** 0 = no expiry. */
  readonly expiresMs: number;
  readonly checksum: string;
  readonly signer: string;
  readonly certificateNotAfterMs: number;
  readonly bytes: Uint8Array;
}

export function versionText(version: number): string {
  return `${Math.floor(version / 1_000_000)}.${Math.floor(version / 1000) % 1000}.${version % 1000}`;
}

/** Verifies an AFW1 image as the repository must before accepting it; throws CampaignError. */
export function verifyFirmwareImage(
  bytes: Uint8Array,
  caCertificateDer: Uint8Array,
  nowMs: number,
): RepositoryImage {
  let component: ImageComponent | undefined;
  let version: number;
  let hwTarget: string;
  let expiresMs: number;
  let certificateDer: Uint8Array;
  let signedBytes: Uint8Array;
  let signature: Uint8Array;
  try {
    const r = new ByteReader(bytes, "firmware image");
    for (const m of MAGIC) if (r.u8("magic") !== m) throw new CampaignError("BAD_IMAGE", "not an AFW1 image");
    component = COMPONENTS[r.u8("component")];
    if (component === undefined) throw new CampaignError("BAD_IMAGE", "unknown component");
    version = r.u32("version");
    hwTarget = r.text8("hw_target");
    expiresMs = r.i64("expires_ms");
    const length = r.u32("payload_len");
    r.bytes(length, "payload");
    const crcAt = r.position;
    const crc = r.u32("crc");
    const computed = crc32(bytes.subarray(0, crcAt));
    if (crc !== computed) {
      throw new CampaignError(
        "ERROR_CRC_MISMATCH",
        `image CRC 0x${crc.toString(16)} != computed 0x${computed.toString(16)}`,
      );
    }
    certificateDer = r.bytes16("certificate");
    signedBytes = bytes.subarray(0, r.position);
    signature = r.bytes(P256_SIGNATURE_BYTES, "signature");
    r.end();
  } catch (error) {
    if (error instanceof CampaignError) throw error;
    if (error instanceof EvidenceError) throw new CampaignError("BAD_IMAGE", error.message);
    throw error;
  }
  if (component !== "app" && component !== "comms") {
    throw new CampaignError(
      "COMPONENT_NOT_UPDATABLE",
      `${component} images are refused: seed 001, the ${component} never changes in the field`,
    );
  }
  let signer: X509Certificate;
  let ca: X509Certificate;
  try {
    signer = new X509Certificate(Buffer.from(certificateDer));
    ca = new X509Certificate(Buffer.from(caCertificateDer));
  } catch {
    throw new CampaignError("SIGN_AUTH_FAIL", "the image's certificate is not DER X.509", "BAD_CERTIFICATE");
  }
  if (!ca.ca || !signer.checkIssued(ca) || !signer.verify(ca.publicKey)) {
    throw new CampaignError(
      "SIGN_AUTH_FAIL",
      `certificate "${signer.subject}" is not issued by the trusted CA "${ca.subject}"`,
      "UNTRUSTED_ISSUER",
    );
  }
  if (signer.ca || !(signer.keyUsage ?? []).includes(CODE_SIGNING_OID)) {
    throw new CampaignError(
      "SIGN_AUTH_FAIL",
      `certificate "${signer.subject}" is not an end-entity code-signing certificate`,
      "NOT_CODE_SIGNING",
    );
  }
  const notAfterMs = Date.parse(signer.validTo);
  const notBeforeMs = Date.parse(signer.validFrom);
  if (nowMs > notAfterMs || nowMs < notBeforeMs) {
    throw new CampaignError(
      "SIGN_AUTH_FAIL",
      `certificate valid ${signer.validFrom} .. ${signer.validTo}; head-end time ${new Date(nowMs).toISOString()}`,
      nowMs > notAfterMs ? "CERT_EXPIRED" : "CERT_NOT_YET_VALID",
    );
  }
  let publicKey: Uint8Array;
  try {
    publicKey = rawPublicKey(signer.publicKey);
  } catch {
    throw new CampaignError("SIGN_AUTH_FAIL", "certificate key is not ECDSA P-256", "BAD_CERTIFICATE");
  }
  if (!p256Verify(publicKey, signedBytes, signature))
    throw new CampaignError("SIGN_AUTH_FAIL", "image signature does not verify", "BAD_SIGNATURE");
  if (expiresMs !== 0 && expiresMs <= nowMs) {
    throw new CampaignError(
      "IMAGE_EXPIRED",
      `image expired ${new Date(expiresMs).toISOString()}; head-end time ${new Date(nowMs).toISOString()}`,
    );
  }
  return {
    component,
    version,
    versionText: versionText(version),
    hwTarget,
    expiresMs,
    checksum: toHex(sha256(bytes)),
    signer: signer.subject,
    certificateNotAfterMs: notAfterMs,
    bytes: bytes.slice(),
  };
}

/** Verified images by checksum, bounded. */
export class FirmwareRepository {
  private readonly images = new Map<string, RepositoryImage>();

  constructor(private readonly caCertificateDer: Uint8Array | null) {}

  /** Verifies and keeps an image; the same image again is accepted idempotently. */
  add(bytes: Uint8Array, nowMs: number): RepositoryImage {
    if (this.caCertificateDer === null)
      throw new CampaignError("NOT_CONFIGURED", "no firmware trust anchor (CA certificate) is configured");
    const image = verifyFirmwareImage(bytes, this.caCertificateDer, nowMs);
    if (!this.images.has(image.checksum) && this.images.size >= REPOSITORY_IMAGES_MAX)
      throw new CampaignError("BAD_REQUEST", `the repository holds at most ${REPOSITORY_IMAGES_MAX} images`);
    this.images.set(image.checksum, image);
    return image;
  }

  get(checksum: string): RepositoryImage | undefined {
    return this.images.get(checksum);
  }

  list(): RepositoryImage[] {
    return [...this.images.values()];
  }
}
