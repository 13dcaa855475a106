import { createCipheriv, createDecipheriv } from "node:crypto";
import { DlmsError, DlmsReader, encodeLength } from "./errors.ts";

// Security suite 0 (Green Book: AES-GCM-128, 12-byte tag): IV = system title (8) ‖ invocation counter (4);
// the security control byte SC says authenticated (0x10), encrypted (0x20) or both (0x30); the additional
// data is SC ‖ AK, plus the plaintext when only authenticated. Keys live in a SecurityContext so suite 1
// (ECDH/ECDSA P-256) can add its own key material beside them.

export const GCM_TAG_BYTES = 12;
export const SYSTEM_TITLE_BYTES = 8;
export const SC_AUTHENTICATED = 0x10;
export const SC_ENCRYPTED = 0x20;
const TAG_GENERAL_GLO_CIPHERING = 0xdb;

export interface SecurityContext {
  /** 0, or 1 for the AES-GCM-128 part of suite 1 (the security control byte carries it). */
  readonly suite: 0 | 1;
  /** Our own system title: the IV prefix of what we send. */
  readonly systemTitle: Uint8Array;
  /** Global unicast encryption key (EK). */
  readonly encryptionKey: Uint8Array;
  /** Authentication key (AK). */
  readonly authenticationKey: Uint8Array;
}

function iv(systemTitle: Uint8Array, invocationCounter: number): Buffer {
  if (systemTitle.length !== SYSTEM_TITLE_BYTES)
    throw new DlmsError("BAD_LENGTH", `system title of ${systemTitle.length} bytes`);
  const out = Buffer.alloc(12);
  out.set(systemTitle);
  out.writeUInt32BE(invocationCounter >>> 0, 8);
  return out;
}

/** SC ‖ IC ‖ (ciphertext or plaintext) ‖ tag: the ciphered content of a glo/ded APDU. */
export function protect(
  ctx: SecurityContext,
  securityControl: number,
  invocationCounter: number,
  plaintext: Uint8Array,
): Uint8Array {
  const authenticated = (securityControl & SC_AUTHENTICATED) !== 0;
  const encrypted = (securityControl & SC_ENCRYPTED) !== 0;
  const cipher = createCipheriv("aes-128-gcm", ctx.encryptionKey, iv(ctx.systemTitle, invocationCounter), {
    authTagLength: GCM_TAG_BYTES,
  });
  const sc = Uint8Array.of(securityControl);
  if (authenticated)
    cipher.setAAD(
      Buffer.concat(encrypted ? [sc, ctx.authenticationKey] : [sc, ctx.authenticationKey, plaintext]),
    );
  let body: Buffer;
  if (encrypted) body = Buffer.concat([cipher.update(plaintext), cipher.final()]);
  else {
    cipher.final(); // authentication only: the tag covers the AAD, the APDU travels in clear
    body = Buffer.from(plaintext);
  }
  const header = Buffer.alloc(5);
  header[0] = securityControl;
  header.writeUInt32BE(invocationCounter >>> 0, 1);
  return new Uint8Array(Buffer.concat([header, body, authenticated ? cipher.getAuthTag() : Buffer.alloc(0)]));
}

/** Checks and removes the protection a peer applied (its system title is the IV prefix). */
export function unprotect(
  ctx: SecurityContext,
  peerSystemTitle: Uint8Array,
  content: Uint8Array,
): { securityControl: number; invocationCounter: number; plaintext: Uint8Array } {
  if (content.length < 5)
    throw new DlmsError("TRUNCATED", "ciphered content shorter than its security header");
  const securityControl = content[0]!;
  const invocationCounter = new DataView(content.buffer, content.byteOffset + 1, 4).getUint32(0);
  const authenticated = (securityControl & SC_AUTHENTICATED) !== 0;
  const encrypted = (securityControl & SC_ENCRYPTED) !== 0;
  const tagBytes = authenticated ? GCM_TAG_BYTES : 0;
  if (content.length < 5 + tagBytes)
    throw new DlmsError("TRUNCATED", "ciphered content shorter than its tag");
  const body = content.subarray(5, content.length - tagBytes);
  const decipher = createDecipheriv(
    "aes-128-gcm",
    ctx.encryptionKey,
    iv(peerSystemTitle, invocationCounter),
    { authTagLength: GCM_TAG_BYTES },
  );
  const sc = Uint8Array.of(securityControl);
  try {
    if (authenticated) {
      decipher.setAuthTag(content.subarray(content.length - tagBytes));
    }
    if (!encrypted) {
      if (authenticated) {
        decipher.setAAD(Buffer.concat([sc, ctx.authenticationKey, body]));
        decipher.final();
      }
      return { securityControl, invocationCounter, plaintext: body.slice() };
    }
    if (authenticated) decipher.setAAD(Buffer.concat([sc, ctx.authenticationKey]));
    const plaintext = Buffer.concat([
      decipher.update(body),
      authenticated ? decipher.final() : Buffer.alloc(0),
    ]);
    return { securityControl, invocationCounter, plaintext: new Uint8Array(plaintext) };
  } catch {
    throw new DlmsError(
      "DECRYPT_FAILED",
      "authentication tag does not verify (wrong keys, system title or a tampered APDU)",
    );
  }
}

/** general-glo-ciphering (tag 0xDB): system title, then the ciphered content. */
export function encodeGeneralGloCiphering(systemTitle: Uint8Array, content: Uint8Array): Uint8Array {
  return Uint8Array.of(
    TAG_GENERAL_GLO_CIPHERING,
    ...encodeLength(systemTitle.length),
    ...systemTitle,
    ...encodeLength(content.length),
    ...content,
  );
}

export function decodeGeneralGloCiphering(bytes: Uint8Array): {
  systemTitle: Uint8Array;
  content: Uint8Array;
} {
  const r = new DlmsReader(bytes);
  if (r.u8("tag") !== TAG_GENERAL_GLO_CIPHERING)
    throw new DlmsError("BAD_TAG", "not a general-glo-ciphering APDU", 0);
  const systemTitle = r.bytes(r.length("system title"), "system title");
  const content = r.bytes(r.length("ciphered content"), "ciphered content");
  if (r.remaining !== 0)
    throw new DlmsError("TRAILING_BYTES", `${r.remaining} bytes after the APDU`, r.offset);
  return { systemTitle, content };
}

/**
 * HLS mechanism 5 (GMAC): f(challenge) = SC ‖ IC ‖ GMAC, GMAC = GCM tag over no plaintext with
 * AAD = SC ‖ AK ‖ challenge (SC = 0x10).
 */
export function hlsGmacResponse(
  ctx: SecurityContext,
  invocationCounter: number,
  challenge: Uint8Array,
): Uint8Array {
  return gmac(ctx, ctx.systemTitle, invocationCounter, challenge);
}

function gmac(
  ctx: SecurityContext,
  systemTitle: Uint8Array,
  invocationCounter: number,
  challenge: Uint8Array,
): Uint8Array {
  const cipher = createCipheriv("aes-128-gcm", ctx.encryptionKey, iv(systemTitle, invocationCounter), {
    authTagLength: GCM_TAG_BYTES,
  });
  cipher.setAAD(Buffer.concat([Uint8Array.of(SC_AUTHENTICATED), ctx.authenticationKey, challenge]));
  cipher.final();
  const header = Buffer.alloc(5);
  header[0] = SC_AUTHENTICATED;
  header.writeUInt32BE(invocationCounter >>> 0, 1);
  return new Uint8Array(Buffer.concat([header, cipher.getAuthTag()]));
}

/** Verifies the peer's f(challenge) for our challenge; throws AUTH_FAILED. */
export function verifyHlsGmac(
  ctx: SecurityContext,
  peerSystemTitle: Uint8Array,
  challenge: Uint8Array,
  response: Uint8Array,
): number {
  if (response.length !== 5 + GCM_TAG_BYTES || response[0] !== SC_AUTHENTICATED) {
    throw new DlmsError("AUTH_FAILED", "HLS-GMAC response is not SC 0x10 ‖ IC ‖ 12-byte tag");
  }
  const invocationCounter = new DataView(response.buffer, response.byteOffset + 1, 4).getUint32(0);
  const expected = gmac(ctx, peerSystemTitle, invocationCounter, challenge);
  if (!Buffer.from(expected).equals(Buffer.from(response)))
    throw new DlmsError("AUTH_FAILED", "HLS-GMAC tag does not verify: wrong keys");
  return invocationCounter;
}

/** Invocation counters per peer never go backwards: a repeated or lower one is a replay (refused, counted). */
export class InvocationCounterGuard {
  private readonly last = new Map<string, number>();
  replaysRefused = 0;

  accept(peerSystemTitle: Uint8Array, invocationCounter: number): void {
    const key = Buffer.from(peerSystemTitle).toString("hex");
    const previous = this.last.get(key);
    if (previous !== undefined && invocationCounter <= previous) {
      this.replaysRefused++;
      throw new DlmsError(
        "REPLAYED_INVOCATION_COUNTER",
        `invocation counter ${invocationCounter} from ${key} after ${previous}`,
      );
    }
    this.last.set(key, invocationCounter);
  }

  /** The highest counter accepted from a peer so far (null: none yet). */
  lastAccepted(peerSystemTitle: Uint8Array): number | null {
    return this.last.get(Buffer.from(peerSystemTitle).toString("hex")) ?? null;
  }
}
