import { ByteReader, ByteWriter, EvidenceError } from "../../evidence/index.ts";
import { FirmwareError, type FirmwareErrorCode } from "./errors.ts";

// The boot configuration register (seed 000 "Boot Configuration Register", "Rollback Flag"): which bank
// each updatable component runs, what is on trial, the boot attempts, the pending rollback flag, the
// consecutive watchdog resets, the staged transfer, and the newest transition decided. It is written as
// one dual-copy record (nvm-layout.ts), so every decision is atomic: a power cut leaves the old or the new
// configuration, never a mix. The newest transition is kept so that a record a power cut prevented from
// being sealed is sealed at the next boot (manager.ts): every transition has its evidence.

export type Slot = "A" | "B" | "GOLDEN";
export const SLOTS: readonly Slot[] = ["A", "B", "GOLDEN"];
export type UpdatableComponent = "app" | "comms";
export const UPDATABLE: readonly UpdatableComponent[] = ["app", "comms"];

export type RollbackFlag = "NONE" | "FULL" | "PARTIAL";
const ROLLBACK_FLAGS: readonly RollbackFlag[] = ["NONE", "FULL", "PARTIAL"];

export type TransitionKind =
  | "RECEIVED"
  | "VERIFIED"
  | "REFUSED"
  | "ACTIVATED"
  | "CONFIRMED"
  | "ROLLED_BACK"
  | "WDT_ROLLBACK"
  | "ROLLBACK_REFUSED";
/** Wire order: append only, never reorder. */
const TRANSITION_KINDS: readonly TransitionKind[] = [
  "RECEIVED",
  "VERIFIED",
  "REFUSED",
  "ACTIVATED",
  "CONFIRMED",
  "ROLLED_BACK",
  "WDT_ROLLBACK",
  "ROLLBACK_REFUSED",
];

export type TransitionReason = "NONE" | "FORCED_ROLLBACK" | "PARTIAL_ROLLBACK" | FirmwareErrorCode;
/** Wire order: append only, never reorder. */
const TRANSITION_REASONS: readonly TransitionReason[] = [
  "NONE",
  "FORCED_ROLLBACK",
  "PARTIAL_ROLLBACK",
  "ERROR_CRC_MISMATCH",
  "SIGN_AUTH_FAIL",
  "WDT_REBOOT_LOOP",
  "MEM_ACCESS_VIOLATION",
  "VERSION_ROLLBACK_REFUSED",
  "COMPONENT_NOT_UPDATABLE",
  "HW_TARGET_MISMATCH",
  "IMAGE_EXPIRED",
  "BAD_IMAGE",
  "BAD_STATE",
  "NOT_BOOTABLE",
  "TRUNCATED",
];

/** Why an image failed authentication (SIGN_AUTH_FAIL): the record says which. Append only. */
export type AuthCause =
  | "NONE"
  | "BAD_CERTIFICATE"
  | "UNTRUSTED_ISSUER"
  | "NOT_CODE_SIGNING"
  | "CERT_EXPIRED"
  | "CERT_NOT_YET_VALID"
  | "BAD_SIGNATURE";
export const AUTH_CAUSES: readonly AuthCause[] = [
  "NONE",
  "BAD_CERTIFICATE",
  "UNTRUSTED_ISSUER",
  "NOT_CODE_SIGNING",
  "CERT_EXPIRED",
  "CERT_NOT_YET_VALID",
  "BAD_SIGNATURE",
];

export interface ComponentBoot {
  /** Confirmed bank that runs when no trial is pending. */
  readonly slot: Slot;
  /** Bank on trial (activated, not yet confirmed), or null. */
  readonly trial: Slot | null;
  /** Boots of the trial bank so far (counted before the jump). */
  readonly attempts: number;
}

/** An image transfer in progress (DLMS IC 18), so that it resumes after a reset. */
export interface StagedTransfer {
  readonly component: UpdatableComponent;
  readonly slot: Slot;
  readonly imageBytes: number;
  readonly blockBytes: number;
  /** CRC-32 of the image_identifier the transfer was initiated with. */
  readonly identifierTag: number;
  readonly verified: boolean;
}

/** The newest transition decided; its records carry `fw_transition` = seq. */
export interface Transition {
  readonly seq: number;
  readonly kind: TransitionKind;
  readonly components: readonly UpdatableComponent[];
  readonly reason: TransitionReason;
  readonly cause: AuthCause;
  /** Bank each component left (rollbacks) or was staged in (transfer), null when not concerned. */
  readonly fromApp: Slot | null;
  readonly fromComms: Slot | null;
  readonly toSlot: Slot | null;
  /**
   * RECEIVED: the announced image size in bytes; WDT_ROLLBACK: the boots or resets counted; otherwise the
   * image version concerned (0 when none).
   */
  readonly value: number;
}

export interface BootConfig {
  readonly app: ComponentBoot;
  readonly comms: ComponentBoot;
  readonly rollbackFlag: RollbackFlag;
  /** Consecutive watchdog resets of confirmed images, cleared by a kick in time. */
  readonly wdtResets: number;
  readonly staging: StagedTransfer | null;
  /** null before the first transition (factory state). */
  readonly last: Transition | null;
}

const FORMAT_VERSION = 2;
const NONE_BYTE = 0xff;
/** Legacy format: seven 8-byte integers (app slot/trial/attempts, comms slot/trial/attempts, flag). */
const LEGACY_BYTES = 56;
/** Attempts and resets are bounded well below this by the bootloader; the byte is the hard bound. */
export const BOOT_COUNTER_MAX = 0xff;

function slotByte(slot: Slot | null): number {
  return slot === null ? NONE_BYTE : SLOTS.indexOf(slot);
}

function componentMask(components: readonly UpdatableComponent[]): number {
  return components.reduce((mask, c) => mask | (1 << UPDATABLE.indexOf(c)), 0);
}

export function encodeBootConfig(config: BootConfig): Uint8Array {
  try {
    const w = new ByteWriter(64);
    w.u8(FORMAT_VERSION);
    for (const c of UPDATABLE) {
      const boot = config[c];
      w.u8(slotByte(boot.slot)).u8(slotByte(boot.trial)).u8(Math.min(boot.attempts, BOOT_COUNTER_MAX));
    }
    w.u8(ROLLBACK_FLAGS.indexOf(config.rollbackFlag)).u8(Math.min(config.wdtResets, BOOT_COUNTER_MAX));
    const s = config.staging;
    if (s === null) w.u8(0);
    else {
      w.u8(1).u8(UPDATABLE.indexOf(s.component)).u8(slotByte(s.slot)).u32(s.imageBytes).u16(s.blockBytes);
      w.u32(s.identifierTag).u8(s.verified ? 1 : 0);
    }
    const t = config.last;
    if (t === null) w.u8(0);
    else {
      w.u8(1).u32(t.seq).u8(TRANSITION_KINDS.indexOf(t.kind)).u8(componentMask(t.components));
      w.u8(TRANSITION_REASONS.indexOf(t.reason)).u8(AUTH_CAUSES.indexOf(t.cause));
      w.u8(slotByte(t.fromApp)).u8(slotByte(t.fromComms)).u8(slotByte(t.toSlot)).u32(t.value);
    }
    return w.finish();
  } catch (error) {
    if (error instanceof EvidenceError)
      throw new FirmwareError("BAD_STATE", `boot configuration does not encode: ${error.message}`);
    throw error;
  }
}

/** Decodes a boot configuration; anything malformed is BAD_STATE (the caller treats it as unreadable). */
export function decodeBootConfig(payload: Uint8Array): BootConfig {
  if (payload.length === LEGACY_BYTES) return decodeLegacy(payload);
  try {
    const r = new ByteReader(payload, "boot configuration");
    const format = r.u8("format");
    if (format !== FORMAT_VERSION) throw bad(`format ${format}, expected ${FORMAT_VERSION}`);
    const slot = (field: string): Slot => {
      const value = SLOTS[r.u8(field)];
      if (value === undefined) throw bad(`${field} is not a bank`);
      return value;
    };
    const optionalSlot = (field: string): Slot | null => {
      const byte = r.u8(field);
      if (byte === NONE_BYTE) return null;
      const value = SLOTS[byte];
      if (value === undefined) throw bad(`${field} is not a bank`);
      return value;
    };
    const component = (): ComponentBoot => ({
      slot: slot("slot"),
      trial: optionalSlot("trial"),
      attempts: r.u8("attempts"),
    });
    const app = component();
    const comms = component();
    const rollbackFlag = ROLLBACK_FLAGS[r.u8("rollback flag")];
    if (rollbackFlag === undefined) throw bad("unknown rollback flag");
    const wdtResets = r.u8("watchdog resets");
    let staging: StagedTransfer | null = null;
    if (r.u8("staging present") === 1) {
      const stagedComponent = UPDATABLE[r.u8("staging component")];
      if (stagedComponent === undefined) throw bad("unknown staging component");
      staging = {
        component: stagedComponent,
        slot: slot("staging bank"),
        imageBytes: r.u32("image bytes"),
        blockBytes: r.u16("block bytes"),
        identifierTag: r.u32("identifier tag"),
        verified: r.u8("verified") === 1,
      };
    }
    let last: Transition | null = null;
    if (r.u8("transition present") === 1) {
      const seq = r.u32("transition seq");
      const kind = TRANSITION_KINDS[r.u8("transition kind")];
      const mask = r.u8("components");
      const reason = TRANSITION_REASONS[r.u8("reason")];
      const cause = AUTH_CAUSES[r.u8("cause")];
      if (kind === undefined || reason === undefined || cause === undefined)
        throw bad("unknown transition kind, reason or cause");
      last = {
        seq,
        kind,
        components: UPDATABLE.filter((_, i) => (mask & (1 << i)) !== 0),
        reason,
        cause,
        fromApp: optionalSlot("from app"),
        fromComms: optionalSlot("from comms"),
        toSlot: optionalSlot("to"),
        value: r.u32("value"),
      };
    }
    r.end();
    return { app, comms, rollbackFlag, wdtResets, staging, last };
  } catch (error) {
    if (error instanceof FirmwareError) throw error;
    if (error instanceof EvidenceError)
      throw new FirmwareError("BAD_STATE", `boot configuration: ${error.message}`);
    throw error;
  }
}

function bad(message: string): FirmwareError {
  return new FirmwareError("BAD_STATE", `boot configuration: ${message}`);
}

function decodeLegacy(payload: Uint8Array): BootConfig {
  const view = new DataView(payload.buffer, payload.byteOffset, payload.byteLength);
  const v = Array.from({ length: 7 }, (_, i) => Number(view.getBigInt64(i * 8)));
  const slot = (n: number): Slot => SLOTS[n] ?? "GOLDEN";
  const trial = (n: number): Slot | null => (n < 0 ? null : slot(n));
  const count = (n: number) => Math.max(0, Math.min(n, BOOT_COUNTER_MAX));
  return {
    app: { slot: slot(v[0]!), trial: trial(v[1]!), attempts: count(v[2]!) },
    comms: { slot: slot(v[3]!), trial: trial(v[4]!), attempts: count(v[5]!) },
    rollbackFlag: v[6] === 1 ? "FULL" : v[6] === 2 ? "PARTIAL" : "NONE",
    wdtResets: 0,
    staging: null,
    last: null,
  };
}
