import { decodeApdu, encodeApdu } from "./apdu.ts";
import type { Data } from "./axdr.ts";
import {
  decodeSecurityControl,
  protectApdu,
  SC_AUTHENTICATED_ENCRYPTED,
  unprotectApdu,
} from "./ciphering.ts";
import { DlmsError } from "./errors.ts";
import { cipherContext, type DlmsKeySet, type KeyStore } from "./keys.ts";
import { InvocationCounterGuard } from "./security.ts";

// DataNotification (Green Book §9.3.13, xDLMS tag 0x0F): what a meter's push setup (class 40) sends
// unsolicited — to the concentrator over the wrapper, or out of a HAN port — plain or protected with
// general-glo-ciphering (tag 0xDB, the sender's system title inside). The receiver looks the sender's keys
// up by that system title, verifies and deciphers, and refuses a replayed invocation counter.

export interface DataNotification {
  /** Long-Invoke-Id-And-Priority (see `longInvokeIdAndPriority`). */
  readonly longInvokeId: number;
  /** The 12-byte COSEM date-time of the push, or null when the meter sends none. */
  readonly dateTime: Uint8Array | null;
  /** The pushed values: usually a structure of the push object list's attribute values. */
  readonly body: Data;
}

/**
 * Long-Invoke-Id-And-Priority (Green Book): bits 0-23 the invoke id, bit 28 self-descriptive, bit 29
 * processing option (break on error), bit 30 service class (1 = confirmed), bit 31 priority (1 = high).
 */
export function longInvokeIdAndPriority(
  invokeId: number,
  options: {
    selfDescriptive?: boolean;
    breakOnError?: boolean;
    confirmed?: boolean;
    highPriority?: boolean;
  } = {},
): number {
  if (!Number.isInteger(invokeId) || invokeId < 0 || invokeId > 0xffffff)
    throw new DlmsError("BAD_VALUE", `long invoke-id ${invokeId} outside 0..16777215`);
  return (
    (invokeId |
      (options.selfDescriptive ? 1 << 28 : 0) |
      (options.breakOnError ? 1 << 29 : 0) |
      (options.confirmed ? 1 << 30 : 0) |
      (options.highPriority ? 1 << 31 : 0)) >>>
    0
  );
}

export function encodeDataNotification(notification: DataNotification): Uint8Array {
  return encodeApdu({ kind: "data-notification", ...notification });
}

export function decodeDataNotification(bytes: Uint8Array): DataNotification {
  const apdu = decodeApdu(bytes);
  if (apdu.kind !== "data-notification")
    throw new DlmsError("BAD_TAG", `expected a DataNotification (0x0F), got ${apdu.kind}`, 0);
  return { longInvokeId: apdu.longInvokeId, dateTime: apdu.dateTime, body: apdu.body };
}

export interface ProtectPushOptions {
  /** The meter's invocation counter for this push (it owns and persists the counter). */
  readonly invocationCounter: number;
  /** Default authenticated and encrypted (0x30); the suite id of the key set is added. */
  readonly securityControl?: number;
  /** Broadcast pushes use the global broadcast key and set the key-set bit (0x40). */
  readonly broadcast?: boolean;
}

/** A DataNotification protected with general-glo-ciphering, as a meter's push setup sends it. */
export function protectDataNotification(
  keys: DlmsKeySet,
  notification: DataNotification,
  options: ProtectPushOptions,
): Uint8Array {
  const broadcast = options.broadcast ?? false;
  const securityControl =
    ((options.securityControl ?? SC_AUTHENTICATED_ENCRYPTED) & 0x30) | keys.suite | (broadcast ? 0x40 : 0);
  return protectApdu(
    cipherContext(keys, broadcast ? "broadcast" : "unicast"),
    encodeDataNotification(notification),
    {
      securityControl,
      invocationCounter: options.invocationCounter,
      form: "general-glo-ciphering",
    },
  );
}

export interface ReceivedNotification {
  readonly notification: DataNotification;
  /** The sender's system title (null for a plain push, which does not carry one). */
  readonly systemTitle: Uint8Array | null;
  readonly securityControl: number | null;
  readonly invocationCounter: number | null;
}

export interface PushReceiverPolicy {
  /** Accept unprotected DataNotifications (a HAN port without security). Default false. */
  readonly acceptPlain?: boolean;
  /** Refuse pushes that are encrypted but not authenticated. Default false (some meters push SC 0x20/0x21). */
  readonly requireAuthentication?: boolean;
}

/** What a push receiver refused, by reason, for the evidence counters. */
export interface PushReceiverCounters {
  received: number;
  accepted: number;
  malformed: number;
  plainRefused: number;
  unknownSender: number;
  /** Tag did not verify: wrong keys or a tampered APDU. */
  decryptFailed: number;
  /** Invocation counter not above the last one accepted from that sender. */
  replaysRefused: number;
  /** Security suite in the security control byte differs from the sender's key set. */
  suiteMismatch: number;
}

/**
 * Receives pushes from many meters: keys by sender system title from a KeyStore, one invocation-counter
 * guard across all of them. Every refusal throws a DlmsError after it is counted.
 */
export class PushReceiver {
  readonly counters: PushReceiverCounters = {
    received: 0,
    accepted: 0,
    malformed: 0,
    plainRefused: 0,
    unknownSender: 0,
    decryptFailed: 0,
    replaysRefused: 0,
    suiteMismatch: 0,
  };
  private readonly guard = new InvocationCounterGuard();

  constructor(
    private readonly keys: KeyStore,
    private readonly policy: PushReceiverPolicy = {},
  ) {}

  receive(apdu: Uint8Array): ReceivedNotification {
    this.counters.received++;
    let outer: ReturnType<typeof decodeApdu>;
    try {
      outer = decodeApdu(apdu);
    } catch (error) {
      if (!(error instanceof DlmsError)) throw error;
      this.counters.malformed++;
      throw error;
    }
    if (outer.kind === "data-notification") {
      if (!this.policy.acceptPlain) {
        this.counters.plainRefused++;
        throw new DlmsError("AUTH_FAILED", "unprotected DataNotification refused by the receiver's policy");
      }
      this.counters.accepted++;
      return {
        notification: { longInvokeId: outer.longInvokeId, dateTime: outer.dateTime, body: outer.body },
        systemTitle: null,
        securityControl: null,
        invocationCounter: null,
      };
    }
    if (outer.kind !== "general-glo-ciphering" || (outer.tag ?? 0xdb) !== 0xdb) {
      this.counters.malformed++;
      throw new DlmsError(
        "BAD_TAG",
        `a push is a DataNotification or general-glo-ciphering, not ${outer.kind}`,
        0,
      );
    }
    const sender = this.keys.keysFor(outer.systemTitle);
    if (sender === null) {
      this.counters.unknownSender++;
      throw new DlmsError(
        "DECRYPT_FAILED",
        `no keys for system title ${Buffer.from(outer.systemTitle).toString("hex")}`,
      );
    }
    const sc = decodeSecurityControl(outer.securityControl);
    if (sc.suite !== sender.suite) {
      this.counters.suiteMismatch++;
      throw new DlmsError(
        "DECRYPT_FAILED",
        `push says suite ${sc.suite}, the sender's keys are suite ${sender.suite}`,
      );
    }
    let plain: Uint8Array;
    try {
      const ctx = cipherContext(sender, sc.broadcastKey ? "broadcast" : "unicast");
      plain = unprotectApdu(ctx, apdu, {
        guard: this.guard,
        ...(this.policy.requireAuthentication ? { requireAuthentication: true } : {}),
      }).apdu;
    } catch (error) {
      if (!(error instanceof DlmsError)) throw error;
      if (error.code === "REPLAYED_INVOCATION_COUNTER") this.counters.replaysRefused++;
      else if (error.code === "DECRYPT_FAILED") this.counters.decryptFailed++;
      else this.counters.malformed++;
      throw error;
    }
    let notification: DataNotification;
    try {
      notification = decodeDataNotification(plain);
    } catch (error) {
      if (!(error instanceof DlmsError)) throw error;
      this.counters.malformed++;
      throw error;
    }
    this.counters.accepted++;
    return {
      notification,
      systemTitle: outer.systemTitle,
      securityControl: outer.securityControl,
      invocationCounter: outer.invocationCounter,
    };
  }
}
