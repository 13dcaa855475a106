import { gloTagFor } from "./apdu.ts";
import { DlmsError, DlmsReader, encodeLength } from "./errors.ts";
import {
  GCM_TAG_BYTES,
  type InvocationCounterGuard,
  protect,
  type SecurityContext,
  SYSTEM_TITLE_BYTES,
  unprotect,
} from "./security.ts";

// Ciphered xDLMS APDUs on top of security.ts's suite-0 protect/unprotect (Green Book §9.2.7.2):
// the service-specific glo-xxx form (tag, length, SC ‖ IC ‖ ciphertext ‖ tag) used inside an
// association whose peer system title is known from the AARQ/AARE, and general-glo-ciphering (0xDB),
// which carries the sender's system title itself.

/** Security control byte (Green Book): bits 0-3 suite id, 4 authentication, 5 encryption, 6 key set, 7 compression. */
export interface SecurityControl {
  readonly suite: number;
  readonly authenticated: boolean;
  readonly encrypted: boolean;
  /** Key set bit: false = unicast (global unicast encryption key), true = broadcast key. */
  readonly broadcastKey: boolean;
  readonly compressed: boolean;
}

export function encodeSecurityControl(sc: SecurityControl): number {
  if (!Number.isInteger(sc.suite) || sc.suite < 0 || sc.suite > 15) {
    throw new DlmsError("BAD_VALUE", `security suite ${sc.suite} outside 0..15`);
  }
  return (
    sc.suite |
    (sc.authenticated ? 0x10 : 0) |
    (sc.encrypted ? 0x20 : 0) |
    (sc.broadcastKey ? 0x40 : 0) |
    (sc.compressed ? 0x80 : 0)
  );
}

export function decodeSecurityControl(byte: number): SecurityControl {
  return {
    suite: byte & 0x0f,
    authenticated: (byte & 0x10) !== 0,
    encrypted: (byte & 0x20) !== 0,
    broadcastKey: (byte & 0x40) !== 0,
    compressed: (byte & 0x80) !== 0,
  };
}

/** The security policies of suite 0: authenticated only, encrypted only, both. */
export const SC_AUTHENTICATED_ONLY = 0x10;
export const SC_ENCRYPTED_ONLY = 0x20;
export const SC_AUTHENTICATED_ENCRYPTED = 0x30;
export const TAG_GENERAL_GLO_CIPHERING = 0xdb;
/**
 * Room a ciphered APDU takes beyond its plain form: tag (1) + length (≤ 3) + SC (1) + IC (4) + GCM tag
 * (12) = 21, plus the system title (1 + 8) for general-glo-ciphering: 30, rounded up. Block sizes leave
 * it free so that the ciphered PDU still fits the negotiated max PDU size.
 */
export const CIPHERED_OVERHEAD_BYTES = 32;

export type CipheredForm = "service-specific" | "general-glo-ciphering";

export interface ProtectApduOptions {
  readonly securityControl: number;
  /** The sender's invocation counter for this APDU (the caller owns and persists the counter). */
  readonly invocationCounter: number;
  readonly form?: CipheredForm;
}

function checkSecurityControl(sc: number): void {
  const parsed = decodeSecurityControl(sc);
  if (parsed.compressed) throw new DlmsError("UNSUPPORTED", "compressed ciphered APDUs (SC bit 7)");
  if (parsed.suite > 1) {
    throw new DlmsError("UNSUPPORTED", `security suite ${parsed.suite} (suites 0 and 1 use AES-GCM-128)`);
  }
  if (!parsed.authenticated && !parsed.encrypted) {
    throw new DlmsError("BAD_VALUE", "security control 0x00 protects nothing: no ciphered APDU needed");
  }
}

function checkKeys(ctx: SecurityContext): void {
  if (ctx.encryptionKey.length !== 16 || ctx.authenticationKey.length !== 16) {
    throw new DlmsError(
      "BAD_LENGTH",
      `AES-GCM-128 keys are 16 bytes (EK ${ctx.encryptionKey.length}, AK ${ctx.authenticationKey.length})`,
    );
  }
  if (ctx.systemTitle.length !== SYSTEM_TITLE_BYTES) {
    throw new DlmsError(
      "BAD_LENGTH",
      `system title of ${ctx.systemTitle.length} bytes, expected ${SYSTEM_TITLE_BYTES}`,
    );
  }
}

/** Wraps a plain xDLMS APDU (GET/SET/ACTION request or response, event notification) in its ciphered form. */
export function protectApdu(ctx: SecurityContext, apdu: Uint8Array, options: ProtectApduOptions): Uint8Array {
  checkKeys(ctx);
  checkSecurityControl(options.securityControl);
  if (
    !Number.isInteger(options.invocationCounter) ||
    options.invocationCounter < 0 ||
    options.invocationCounter > 0xffffffff
  ) {
    throw new DlmsError("BAD_VALUE", `invocation counter ${options.invocationCounter} is not a uint32`);
  }
  if (apdu.length === 0) throw new DlmsError("TRUNCATED", "empty APDU to protect");
  const content = protect(ctx, options.securityControl, options.invocationCounter, apdu);
  if ((options.form ?? "service-specific") === "general-glo-ciphering") {
    return Uint8Array.from([
      TAG_GENERAL_GLO_CIPHERING,
      ...encodeLength(ctx.systemTitle.length),
      ...ctx.systemTitle,
      ...encodeLength(content.length),
      ...content,
    ]);
  }
  return Uint8Array.from([gloTagFor(apdu[0]!), ...encodeLength(content.length), ...content]);
}

export interface UnprotectedApdu {
  readonly tag: number;
  readonly systemTitle: Uint8Array;
  readonly securityControl: number;
  readonly invocationCounter: number;
  /** The plain xDLMS APDU. */
  readonly apdu: Uint8Array;
}

export interface UnprotectApduOptions {
  /** The sender's system title (from the AARQ/AARE); required for service-specific glo-xxx APDUs. */
  readonly peerSystemTitle?: Uint8Array;
  /** Refuses a counter that does not strictly increase; consulted only after the tag verified. */
  readonly guard?: InvocationCounterGuard;
  /** Refuse APDUs that are not authenticated (a policy that requires authentication). */
  readonly requireAuthentication?: boolean;
}

/** Checks and strips a ciphered APDU (glo-xxx or general-glo-ciphering); throws DlmsError only. */
export function unprotectApdu(
  ctx: SecurityContext,
  ciphered: Uint8Array,
  options: UnprotectApduOptions = {},
): UnprotectedApdu {
  checkKeys(ctx);
  const r = new DlmsReader(ciphered);
  const tag = r.u8("ciphered APDU tag");
  let systemTitle: Uint8Array;
  if (tag === TAG_GENERAL_GLO_CIPHERING) {
    const at = r.offset;
    const titleLength = r.length("system title");
    if (titleLength !== SYSTEM_TITLE_BYTES) {
      throw new DlmsError(
        "BAD_LENGTH",
        `system title of ${titleLength} bytes, expected ${SYSTEM_TITLE_BYTES}`,
        at,
      );
    }
    systemTitle = r.bytes(titleLength, "system title");
  } else {
    if (tag < 200 || tag > 215 || tag === 206 || tag === 214) {
      throw new DlmsError(
        "BAD_TAG",
        `0x${tag.toString(16)} is not a glo-/ded- ciphered APDU or general-glo-ciphering`,
        0,
      );
    }
    if (options.peerSystemTitle === undefined) {
      throw new DlmsError(
        "UNSUPPORTED",
        "a service-specific ciphered APDU needs the peer's system title from the association",
      );
    }
    if (options.peerSystemTitle.length !== SYSTEM_TITLE_BYTES) {
      throw new DlmsError("BAD_LENGTH", `peer system title of ${options.peerSystemTitle.length} bytes`);
    }
    systemTitle = options.peerSystemTitle;
  }
  const at = r.offset;
  const length = r.length("ciphered content");
  const content = r.bytes(length, "ciphered content");
  if (r.remaining !== 0)
    throw new DlmsError("TRAILING_BYTES", `${r.remaining} bytes after the ciphered APDU`, r.offset);
  if (length < 5) throw new DlmsError("BAD_LENGTH", "ciphered content shorter than SC ‖ IC", at);
  const securityControl = content[0]!;
  checkSecurityControl(securityControl);
  const sc = decodeSecurityControl(securityControl);
  if (options.requireAuthentication && !sc.authenticated) {
    throw new DlmsError(
      "AUTH_FAILED",
      `security control 0x${securityControl.toString(16)} is not authenticated`,
    );
  }
  if (sc.authenticated && length < 5 + GCM_TAG_BYTES) {
    throw new DlmsError(
      "BAD_LENGTH",
      `authenticated content of ${length} bytes has no room for a ${GCM_TAG_BYTES}-byte tag`,
      at,
    );
  }
  const opened = unprotect(ctx, systemTitle, content);
  options.guard?.accept(systemTitle, opened.invocationCounter);
  return {
    tag,
    systemTitle,
    securityControl: opened.securityControl,
    invocationCounter: opened.invocationCounter,
    apdu: opened.plaintext,
  };
}
