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

// Slice-by-8 tables for crc32Range: 8 × 256 entries, built once.
const CRC32_TABLES = (() => {
  const table = new Int32Array(8 * 256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    table[n] = c;
  }
  for (let n = 0; n < 256; n++) {
    for (let s = 1; s < 8; s++) {
      const previous = table[(s - 1) * 256 + n]!;
      table[s * 256 + n] = (previous >>> 8) ^ table[previous & 0xff]!;
    }
  }
  return table;
})();

/**
 * The same CRC-32 as `crc32`, over bytes [start, end) of `data`, computed in JavaScript: for records of a
 * few dozen bytes zlib.crc32's per-call cost (~200–400 ns here, plus a subarray) is 3–5 × the
 * table-driven loop, and the journal checks one CRC per record on its hot path.
 */
export function crc32Range(data: Uint8Array, start: number, end: number, initial = 0): number {
  const t = CRC32_TABLES;
  let c = ~initial;
  let i = start;
  for (; i + 8 <= end; i += 8) {
    const a = (data[i]! | (data[i + 1]! << 8) | (data[i + 2]! << 16) | (data[i + 3]! << 24)) ^ c;
    c =
      t[1792 + (a & 0xff)]! ^
      t[1536 + ((a >>> 8) & 0xff)]! ^
      t[1280 + ((a >>> 16) & 0xff)]! ^
      t[1024 + (a >>> 24)]! ^
      t[768 + data[i + 4]!]! ^
      t[512 + data[i + 5]!]! ^
      t[256 + data[i + 6]!]! ^
      t[data[i + 7]!]!;
  }
  for (; i < end; i++) c = t[(c ^ data[i]!) & 0xff]! ^ (c >>> 8);
  return ~c >>> 0;
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
