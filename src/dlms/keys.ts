import { type KeyObject, X509Certificate } from "node:crypto";
import { DlmsError } from "./errors.ts";
import { type SecurityContext, SYSTEM_TITLE_BYTES } from "./security.ts";

// Key handling for DLMS/COSEM security (Green Book §9.2.3 security suites). One `DlmsKeySet` is what one
// side of an association holds: its suite, its own system title, the symmetric keys of AES-GCM-128, and
// (suite 1, not implemented yet) the asymmetric material. The server, the client and the push receiver
// take key sets; the symmetric operations only ever see a `SecurityContext` derived from one, so suite 1
// adds its ECDH/ECDSA fields here and its new services (general-ciphering with key agreement,
// general-signing, HLS mechanism 7) beside the suite-0 ones, without touching the callers.

/** Suite 0: AES-GCM-128, AES-128 key wrap. Suite 1: + ECDH/ECDSA P-256, SHA-256. Suite 2: AES-GCM-256, P-384. */
export type SecuritySuiteId = 0 | 1 | 2;

/**
 * Suites whose symmetric part this library runs: both use AES-GCM-128 with a 12-byte tag, so glo- and
 * general-glo-ciphering work for either. Suite 1's asymmetric services are not implemented yet.
 */
export const SUPPORTED_SUITES: readonly SecuritySuiteId[] = [0, 1];

const KEY_BYTES: Record<SecuritySuiteId, number> = { 0: 16, 1: 16, 2: 32 };

/**
 * Suite 1's asymmetric keys (Green Book §9.2.6): our ECDSA P-256 signing key and the peers' public
 * signing keys by system title (from their X.509 certificates, `peerFromCertificate`). Used by HLS
 * mechanism 7; key agreement (ECDH) keys join here when general-ciphering with key-info lands.
 */
export interface AsymmetricKeys {
  /** Our ECDSA P-256 private key (`createPrivateKey(pem)`). */
  readonly signingKey: KeyObject;
  /** The peers' ECDSA P-256 public keys, keyed by their system title in hex. */
  readonly peerSigningKeys: ReadonlyMap<string, KeyObject>;
}

const P256 = "prime256v1";

function isP256(key: KeyObject, type: "private" | "public"): boolean {
  return key.type === type && key.asymmetricKeyType === "ec" && key.asymmetricKeyDetails?.namedCurve === P256;
}

export interface DlmsKeySet {
  readonly suite: SecuritySuiteId;
  /** Our own system title (8 bytes: 3-letter manufacturer id + 5 bytes): the IV prefix of what we send. */
  readonly systemTitle: Uint8Array;
  /** Global unicast encryption key (GUEK). */
  readonly encryptionKey: Uint8Array;
  /** Authentication key (AK), part of the GCM additional data. */
  readonly authenticationKey: Uint8Array;
  /** Global broadcast encryption key (GBEK), for broadcast pushes (key-set bit of the security control). */
  readonly broadcastKey?: Uint8Array;
  readonly asymmetric?: AsymmetricKeys;
}

function hex(bytes: Uint8Array): string {
  return Buffer.from(bytes).toString("hex");
}

/** Checks a key set's lengths against its suite; suites not yet implemented are refused by name. */
export function checkKeySet(keys: DlmsKeySet): DlmsKeySet {
  if (!SUPPORTED_SUITES.includes(keys.suite)) {
    throw new DlmsError(
      "UNSUPPORTED",
      `security suite ${keys.suite} is not implemented (suites 0 and 1's AES-GCM-128 only; see src/dlms/README.md)`,
    );
  }
  if (keys.systemTitle.length !== SYSTEM_TITLE_BYTES)
    throw new DlmsError("BAD_LENGTH", `system title of ${keys.systemTitle.length} bytes, expected 8`);
  const keyBytes = KEY_BYTES[keys.suite];
  const named: Array<[string, Uint8Array | undefined]> = [
    ["encryption key", keys.encryptionKey],
    ["authentication key", keys.authenticationKey],
    ["broadcast key", keys.broadcastKey],
  ];
  for (const [name, key] of named) {
    if (key !== undefined && key.length !== keyBytes)
      throw new DlmsError(
        "BAD_LENGTH",
        `${name} of ${key.length} bytes; suite ${keys.suite} uses ${keyBytes}`,
      );
  }
  if (keys.asymmetric !== undefined) {
    if (keys.suite !== 1)
      throw new DlmsError("BAD_VALUE", `suite ${keys.suite} has no P-256 asymmetric keys`);
    if (!isP256(keys.asymmetric.signingKey, "private"))
      throw new DlmsError("BAD_VALUE", "suite 1 signing key must be an ECDSA P-256 private key");
    for (const [title, key] of keys.asymmetric.peerSigningKeys) {
      if (!isP256(key, "public"))
        throw new DlmsError("BAD_VALUE", `peer ${title}: suite 1 signing keys are ECDSA P-256 public keys`);
    }
  }
  return keys;
}

/** The symmetric context the ciphering functions use: unicast (GUEK) or broadcast (GBEK). */
export function cipherContext(
  keys: DlmsKeySet,
  keySet: "unicast" | "broadcast" = "unicast",
): SecurityContext {
  checkKeySet(keys);
  const encryptionKey = keySet === "unicast" ? keys.encryptionKey : keys.broadcastKey;
  if (encryptionKey === undefined)
    throw new DlmsError("BAD_VALUE", `key set of ${hex(keys.systemTitle)} has no broadcast key`);
  return {
    suite: keys.suite as 0 | 1,
    systemTitle: keys.systemTitle,
    encryptionKey,
    authenticationKey: keys.authenticationKey,
  };
}

/** A suite-0 key set from the context the older API takes (ServerCredentials.hls, associateHls). */
export function keySetOf(ctx: SecurityContext): DlmsKeySet {
  return checkKeySet({
    suite: ctx.suite,
    systemTitle: ctx.systemTitle,
    encryptionKey: ctx.encryptionKey,
    authenticationKey: ctx.authenticationKey,
  });
}

/**
 * The keys a receiver holds for its peers (a concentrator: one entry per meter system title). Lookup by
 * the sender's system title, as general-glo-ciphering carries it.
 */
export class KeyStore {
  private readonly byTitle = new Map<string, DlmsKeySet>();

  constructor(peers: Iterable<DlmsKeySet> = []) {
    for (const keys of peers) this.add(keys);
  }

  /** Registers the key set a peer protects its APDUs with (its own system title inside). */
  add(keys: DlmsKeySet): void {
    checkKeySet(keys);
    this.byTitle.set(hex(keys.systemTitle), keys);
  }

  keysFor(systemTitle: Uint8Array): DlmsKeySet | null {
    return this.byTitle.get(hex(systemTitle)) ?? null;
  }

  get size(): number {
    return this.byTitle.size;
  }
}

/**
 * A peer's system title and ECDSA P-256 public key from its X.509 certificate (DLMS UA: the subject
 * common name is the system title in 16 hex digits). With `nowMs`, a certificate outside its validity
 * period is refused (seed 000: SIGN_AUTH_FAIL on an expired certificate).
 */
export function peerFromCertificate(
  certificate: string | Uint8Array,
  nowMs?: number,
): { systemTitle: Uint8Array; publicKey: KeyObject } {
  let cert: X509Certificate;
  try {
    cert = new X509Certificate(typeof certificate === "string" ? certificate : Buffer.from(certificate));
  } catch {
    throw new DlmsError("BAD_VALUE", "not an X.509 certificate (PEM or DER)");
  }
  const cn = /(?:^|\n)CN=([0-9A-Fa-f]{16})(?:\n|$)/.exec(cert.subject);
  if (cn === null)
    throw new DlmsError(
      "BAD_VALUE",
      `certificate subject "${cert.subject.replace(/\n/g, ", ")}" has no system title CN`,
    );
  if (!isP256(cert.publicKey, "public"))
    throw new DlmsError("BAD_VALUE", "certificate key is not ECDSA P-256 (suite 1)");
  if (nowMs !== undefined && (nowMs < Date.parse(cert.validFrom) || nowMs > Date.parse(cert.validTo)))
    throw new DlmsError(
      "AUTH_FAILED",
      `certificate of ${cn[1]} is outside its validity (${cert.validFrom} – ${cert.validTo})`,
    );
  return { systemTitle: new Uint8Array(Buffer.from(cn[1]!, "hex")), publicKey: cert.publicKey };
}

/** The peer signing-key map of `AsymmetricKeys` from certificates. */
export function peerSigningKeys(
  certificates: Iterable<string | Uint8Array>,
  nowMs?: number,
): Map<string, KeyObject> {
  const out = new Map<string, KeyObject>();
  for (const certificate of certificates) {
    const peer = peerFromCertificate(certificate, nowMs);
    out.set(hex(peer.systemTitle), peer.publicKey);
  }
  return out;
}

/** The peer's public signing key from a suite-1 key set (null: no certificate for that system title). */
export function peerSigningKey(keys: DlmsKeySet, peerSystemTitle: Uint8Array): KeyObject | null {
  return keys.asymmetric?.peerSigningKeys.get(hex(peerSystemTitle)) ?? null;
}
