import {
  createHash,
  createPrivateKey,
  createPublicKey,
  generateKeyPairSync,
  type KeyObject,
  sign as nodeSign,
  verify as nodeVerify,
} from "node:crypto";
import { crc32 as zlibCrc32 } from "node:zlib";
import { EvidenceError } from "./errors.ts";

export const SHA256_BYTES = 32;
/** Raw IEEE P1363 r‖s: fixed size keeps records fixed-layout (DER would vary 70–72 bytes). */
export const P256_SIGNATURE_BYTES = 64;
/** SEC1 uncompressed point 0x04‖X‖Y. */
export const P256_PUBLIC_KEY_BYTES = 65;

/** CRC-32 (IEEE 802.3, reflected 0xEDB88320), as zlib computes it. */
export function crc32(data: Uint8Array, initial = 0): number {
  return zlibCrc32(data, initial) >>> 0;
}

export function sha256(...parts: Uint8Array[]): Uint8Array {
  const hash = createHash("sha256");
  for (const part of parts) hash.update(part);
  return new Uint8Array(hash.digest());
}

export interface P256KeyPair {
  readonly privateKey: KeyObject;
  readonly publicKey: Uint8Array;
}

export function generateP256KeyPair(): P256KeyPair {
  const { privateKey } = generateKeyPairSync("ec", { namedCurve: "P-256" });
  return { privateKey, publicKey: rawPublicKey(privateKey) };
}

// P-256 group order n: a seed-derived scalar must lie in [1, n-1].
const P256_ORDER = BigInt("0xffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551");
// PKCS#8 wrapper for a P-256 private scalar without the optional public key: OpenSSL derives it.
const PKCS8_P256_PREFIX = Buffer.from(
  "3041020100301306072a8648ce3d020106082a8648ce3d030107042730250201010420",
  "hex",
);

/** A key pair derived deterministically from a seed: the lab's meters get stable identities per run seed. */
export function p256KeyPairFromSeed(seed: Uint8Array): P256KeyPair {
  let scalar = sha256(new TextEncoder().encode("amiproof/p256-seed"), seed);
  for (;;) {
    const d = BigInt(`0x${Buffer.from(scalar).toString("hex")}`);
    if (d > 0n && d < P256_ORDER) break;
    scalar = sha256(scalar);
  }
  const privateKey = createPrivateKey({
    key: Buffer.concat([PKCS8_P256_PREFIX, scalar]),
    format: "der",
    type: "pkcs8",
  });
  return { privateKey, publicKey: rawPublicKey(privateKey) };
}

export function rawPublicKey(key: KeyObject): Uint8Array {
  const jwk = (key.type === "private" ? createPublicKey(key) : key).export({ format: "jwk" });
  if (jwk.crv !== "P-256" || jwk.x === undefined || jwk.y === undefined) {
    throw new EvidenceError("BAD_KEY", "not a P-256 key");
  }
  const out = new Uint8Array(P256_PUBLIC_KEY_BYTES);
  out[0] = 0x04;
  out.set(Buffer.from(jwk.x, "base64url"), 1);
  out.set(Buffer.from(jwk.y, "base64url"), 33);
  return out;
}

const PUBLIC_KEY_CACHE_MAX = 4096;
const publicKeyCache = new Map<string, KeyObject>();

/** A KeyObject for a raw public key; cached because importing costs about as much as one verify. */
export function publicKeyObject(raw: Uint8Array): KeyObject {
  if (raw.length !== P256_PUBLIC_KEY_BYTES || raw[0] !== 0x04) {
    throw new EvidenceError(
      "BAD_KEY",
      `a P-256 public key is 65 bytes starting 0x04, got ${raw.length} bytes`,
    );
  }
  const id = Buffer.from(raw).toString("hex");
  let key = publicKeyCache.get(id);
  if (key === undefined) {
    try {
      key = createPublicKey({
        key: {
          kty: "EC",
          crv: "P-256",
          x: Buffer.from(raw.subarray(1, 33)).toString("base64url"),
          y: Buffer.from(raw.subarray(33, 65)).toString("base64url"),
        },
        format: "jwk",
      });
    } catch {
      throw new EvidenceError("BAD_KEY", "public key is not a point on P-256");
    }
    if (publicKeyCache.size >= PUBLIC_KEY_CACHE_MAX) publicKeyCache.clear();
    publicKeyCache.set(id, key);
  }
  return key;
}

export function p256Sign(privateKey: KeyObject, message: Uint8Array): Uint8Array {
  return new Uint8Array(nodeSign("sha256", message, { key: privateKey, dsaEncoding: "ieee-p1363" }));
}

/** False for a wrong signature; throws BAD_KEY only when the public key itself is malformed. */
export function p256Verify(publicKey: Uint8Array, message: Uint8Array, signature: Uint8Array): boolean {
  if (signature.length !== P256_SIGNATURE_BYTES) return false;
  const key = publicKeyObject(publicKey);
  try {
    return nodeVerify("sha256", message, { key, dsaEncoding: "ieee-p1363" }, signature);
  } catch {
    return false;
  }
}

/** Short stable name for a public key in reports: first 8 bytes of its SHA-256, hex. */
export function keyFingerprint(publicKey: Uint8Array): string {
  return Buffer.from(sha256(publicKey).subarray(0, 8)).toString("hex");
}
