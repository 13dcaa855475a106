import {
  crc32,
  type EventLevel,
  type EventRecord,
  type EventType,
  type NvmDevice,
  type NvmRegion,
  type SecureElement,
  type Snapshot,
} from "../../evidence/index.ts";
import { DualCopyRecord, type MeterNvmLayout } from "../nvm-layout.ts";
import {
  AUTH_CAUSES,
  type AuthCause,
  BOOT_COUNTER_MAX,
  type BootConfig,
  type ComponentBoot,
  decodeBootConfig,
  encodeBootConfig,
  SLOTS,
  type Slot,
  type StagedTransfer,
  type Transition,
  UPDATABLE,
  type UpdatableComponent,
} from "./boot-config.ts";
import { FirmwareError } from "./errors.ts";
import {
  decodeFirmwareImage,
  type FirmwareComponent,
  type FirmwareImage,
  imageLengthAt,
  UPDATABLE_COMPONENTS,
  versionString,
} from "./image.ts";
import { authenticateImage, type TrustAnchor } from "./pki.ts";
import { transitionRecords } from "./transitions.ts";
import { Watchdog, type WatchdogState } from "./watchdog.ts";

// The bootloader and the update manager (seed 000; MCUboot's trial boot and security counter, Mender's
// and RAUC's boot counting), per updatable component: the application and the comms stack each have banks
// A and B; the recovery bank holds both golden images and is locked once provisioned.
//
// Rules, each kept under a power cut at any byte:
// - Every decision is one atomic boot-config write (dual copy, boot-config.ts); the record of the decision
//   is sealed right after, and a record a cut prevented is sealed at the next boot (`fw_transition` ties
//   each record to its decision, so none is missing and none is sealed twice).
// - Verify before execute: an image runs only if its CRC, certificate chain and signature verify; the
//   bootloader falls back to golden, and as a last resort to the newest other authentic bank. Never
//   bricked unless every bank of a component is corrupt.
// - The rollback flag is applied at the next reset, after the golden image verified (seed 000 admin desk:
//   "the Active Flag is only toggled after a successful verification"), so repeating the command or a cut
//   mid-rollback can only restart the same transition, never oscillate.

/** Trial boots of a new image without a watchdog kick before WDT_REBOOT_LOOP rolls it back. */
export const BOOT_ATTEMPTS_MAX = 3;
/** Consecutive watchdog resets of confirmed images before WDT_REBOOT_LOOP reverts to golden. */
export const WDT_RESETS_MAX = 3;
/** IC 18 image_block_size bound (the DLMS layer negotiates at most this). */
export const TRANSFER_BLOCK_BYTES_MAX = 4096;

export type ResetCause = "power_on" | "watchdog" | "software";

export interface BankInfo {
  readonly component: UpdatableComponent;
  readonly slot: Slot;
  readonly version: number | null;
  readonly valid: boolean;
  readonly running: boolean;
}

export interface RunningImage {
  readonly slot: Slot;
  readonly version: number;
  readonly trial: boolean;
}

export interface BootResult {
  readonly app: RunningImage;
  readonly comms: RunningImage;
}

export interface TransferStatus {
  readonly component: UpdatableComponent;
  readonly slot: Slot;
  readonly imageBytes: number;
  readonly blockBytes: number;
  readonly blocks: number;
  readonly firstNotTransferredBlock: number;
  readonly verified: boolean;
}

export interface FirmwareManagerOptions {
  readonly nvm: NvmDevice;
  readonly layout: MeterNvmLayout;
  readonly secureElement: SecureElement;
  readonly trust: TrustAnchor;
  readonly hwTarget: string;
  /** Seals a record in the meter's event log. */
  readonly seal: (type: EventType, level: EventLevel, snapshot: Snapshot) => EventRecord | null | undefined;
  /** Meter time, for certificate validity, image expiry and the watchdog window. */
  readonly nowMs: () => number;
  /**
   * The sealed log's retained records, oldest first: boot() looks there for the newest transition's
   * records and seals those a power cut prevented. Without it, that recovery is skipped.
   */
  readonly records?: () => readonly EventRecord[];
  readonly watchdogWindowMs?: number;
}

export function securityCounterName(component: UpdatableComponent): string {
  return `fw_${component}_version`;
}

type Check = "install" | "rollback" | "boot";
type Attempt = { readonly image: FirmwareImage } | { readonly error: FirmwareError };

export class FirmwareManager {
  private readonly options: FirmwareManagerOptions;
  private readonly store: DualCopyRecord;
  private readonly watchdog: Watchdog;
  private cached: BootConfig | null = null;
  private running: BootResult | null = null;
  private received: boolean[] | null = null;

  constructor(options: FirmwareManagerOptions) {
    this.options = options;
    this.store = new DualCopyRecord(options.nvm, options.layout.bootConfig);
    this.watchdog = new Watchdog(options.watchdogWindowMs);
  }

  // ───────────────────────────── factory ─────────────────────────────

  /** Factory provisioning: golden images into the recovery bank and bank A; the recovery bank then locks. */
  provision(goldenApp: FirmwareImage, goldenComms: FirmwareImage): void {
    if (this.configState() !== "absent") {
      this.refuse("MEM_ACCESS_VIOLATION", "app", "recovery partition is locked after provisioning");
    }
    const golden = { app: goldenApp, comms: goldenComms };
    for (const component of UPDATABLE) this.checkImage(component, golden[component], "rollback");
    for (const component of UPDATABLE) {
      this.writeRegion(this.imageRegion(component, "GOLDEN"), golden[component].bytes);
      this.writeRegion(this.imageRegion(component, "A"), golden[component].bytes);
      this.options.secureElement.advanceCounter(securityCounterName(component), golden[component].version);
    }
    this.writeConfig({
      app: { slot: "A", trial: null, attempts: 0 },
      comms: { slot: "A", trial: null, attempts: 0 },
      rollbackFlag: "NONE",
      wdtResets: 0,
      staging: null,
      last: null,
    });
  }

  /** Any write aimed at the recovery bank after provisioning: refused and recorded. */
  writeRecovery(bytes: Uint8Array): never {
    const recovery = this.options.layout.firmwareRecovery;
    this.guardWrite(recovery.offset, Math.max(1, Math.min(bytes.length, recovery.length)));
    throw new FirmwareError("BAD_STATE", "the recovery partition is written only by factory provisioning");
  }

  // ───────────────────────────── transfer (DLMS IC 18) ─────────────────────────────

  /**
   * image_transfer_initiate: the transfer goes to the component's inactive bank. The same identifier,
   * size and block size as a transfer already staged resume it (true), keeping the blocks received, even
   * across resets; anything else erases the bank and starts afresh (false).
   */
  initiateTransfer(
    component: FirmwareComponent,
    imageBytes: number,
    blockBytes: number,
    identifier: string = component,
  ): boolean {
    this.requireBooted();
    if (!UPDATABLE_COMPONENTS.includes(component)) {
      this.refuse(
        "COMPONENT_NOT_UPDATABLE",
        component,
        `${component} firmware never changes in the field (seed 001)`,
      );
    }
    const updatable = component as UpdatableComponent;
    const config = this.requireConfig();
    if (config[updatable].trial !== null) {
      // Overwriting a bank on trial would pull the image from under the bootloader.
      throw new FirmwareError(
        "BAD_STATE",
        `${updatable} bank ${config[updatable].trial} is on trial; confirm or roll back first`,
      );
    }
    const slot = inactiveSlot(config[updatable]);
    const capacity = this.imageRegion(updatable, slot).length;
    if (!Number.isSafeInteger(imageBytes) || imageBytes < 1 || imageBytes > capacity) {
      throw new FirmwareError(
        "BAD_IMAGE",
        `image of ${imageBytes} bytes does not fit the ${capacity}-byte ${updatable} bank`,
      );
    }
    if (!Number.isSafeInteger(blockBytes) || blockBytes < 1 || blockBytes > TRANSFER_BLOCK_BYTES_MAX) {
      throw new FirmwareError(
        "BAD_STATE",
        `block size must be 1..${TRANSFER_BLOCK_BYTES_MAX} bytes, got ${blockBytes}`,
      );
    }
    const blocks = Math.ceil(imageBytes / blockBytes);
    if (blocks > this.bitmapBlocksMax()) {
      throw new FirmwareError(
        "BAD_STATE",
        `${blocks} blocks exceed the ${this.bitmapBlocksMax()} the transfer bitmap tracks; use larger blocks`,
      );
    }
    const identifierTag = crc32(new TextEncoder().encode(identifier));
    const s = config.staging;
    if (
      s !== null &&
      s.component === updatable &&
      s.slot === slot &&
      s.imageBytes === imageBytes &&
      s.blockBytes === blockBytes &&
      s.identifierTag === identifierTag
    ) {
      return true;
    }
    // Drop the old descriptor before its bank is erased: a descriptor always describes its bank.
    if (s !== null) this.writeConfig({ ...config, staging: null });
    this.eraseRegion(this.bankRegion(updatable, slot));
    this.received = null;
    const staging: StagedTransfer = {
      component: updatable,
      slot,
      imageBytes,
      blockBytes,
      identifierTag,
      verified: false,
    };
    this.decide(
      { ...this.requireConfig(), staging },
      { kind: "RECEIVED", components: [updatable], toSlot: slot, value: imageBytes },
    );
    return false;
  }

  /** image_block_transfer: block n at n × block size; a block already received is ignored (idempotent). */
  receiveBlock(blockNumber: number, bytes: Uint8Array): void {
    const staging = this.requireStaging();
    const blocks = Math.ceil(staging.imageBytes / staging.blockBytes);
    if (!Number.isSafeInteger(blockNumber) || blockNumber < 0 || blockNumber >= blocks) {
      throw new FirmwareError("BAD_STATE", `block ${blockNumber} outside 0..${blocks - 1}`);
    }
    const expected = Math.min(staging.blockBytes, staging.imageBytes - blockNumber * staging.blockBytes);
    if (bytes.length !== expected) {
      throw new FirmwareError(
        "BAD_STATE",
        `block ${blockNumber} must be ${expected} bytes, got ${bytes.length}`,
      );
    }
    const received = this.receivedBlocks(staging);
    if (received[blockNumber]) return;
    const at = this.bankRegion(staging.component, staging.slot).offset + blockNumber * staging.blockBytes;
    // NOR: a block cut part-way keeps a subset of its bits cleared, so the same data programs over it;
    // other data cannot (the bank must be erased: initiate again with another identifier).
    const current = this.options.nvm.read(at, bytes.length);
    for (let i = 0; i < bytes.length; i++) {
      if ((current[i]! & bytes[i]!) !== bytes[i]) {
        throw new FirmwareError(
          "BAD_STATE",
          `block ${blockNumber} differs from the data already programmed at byte ${i}; initiate a new transfer`,
        );
      }
    }
    this.programAt(at, bytes);
    this.options.nvm.sync();
    this.markReceived(staging, blockNumber);
    received[blockNumber] = true;
  }

  /** image_first_not_transferred_block_number (attribute 4): where an interrupted transfer resumes. */
  firstNotTransferredBlock(): number {
    const staging = this.stagingOrNull();
    if (staging === null) return 0;
    const received = this.receivedBlocks(staging);
    const index = received.indexOf(false);
    return index < 0 ? received.length : index;
  }

  /** image_transferred_blocks_status (attribute 3). */
  transferredBlocks(): readonly boolean[] {
    const staging = this.stagingOrNull();
    return staging === null ? [] : this.receivedBlocks(staging).slice();
  }

  transferStatus(): TransferStatus | null {
    const s = this.stagingOrNull();
    if (s === null) return null;
    return {
      component: s.component,
      slot: s.slot,
      imageBytes: s.imageBytes,
      blockBytes: s.blockBytes,
      blocks: Math.ceil(s.imageBytes / s.blockBytes),
      firstNotTransferredBlock: this.firstNotTransferredBlock(),
      verified: s.verified,
    };
  }

  /**
   * image_verify: CRC, component, hardware target, expiry, certificate chain, code-signing purpose and
   * validity against the meter clock, signature, and the anti-rollback counter. A refusal is recorded
   * (FW_REFUSED, SIG_FAIL or FW_ROLLBACK) and drops the transfer; the running banks never change.
   */
  verify(): FirmwareImage {
    const staging = this.requireStaging();
    if (this.receivedBlocks(staging).includes(false)) {
      throw new FirmwareError(
        "BAD_STATE",
        `image incomplete: first missing block ${this.firstNotTransferredBlock()}`,
      );
    }
    const image = this.stagedImage(staging);
    if (!staging.verified) {
      this.decide(
        { ...this.requireConfig(), staging: { ...staging, verified: true } },
        { kind: "VERIFIED", components: [staging.component], toSlot: staging.slot, value: image.version },
      );
    }
    return image;
  }

  /** image_activate: the verified bank (checked once more) goes on trial at the next reset. */
  activate(): void {
    const staging = this.requireStaging();
    if (!staging.verified) throw new FirmwareError("BAD_STATE", "activate needs a verified image");
    const image = this.stagedImage(staging);
    const config = this.requireConfig();
    this.decide(
      {
        ...config,
        [staging.component]: { slot: config[staging.component].slot, trial: staging.slot, attempts: 0 },
        staging: null,
      },
      { kind: "ACTIVATED", components: [staging.component], toSlot: staging.slot, value: image.version },
    );
    this.received = null;
  }

  // ───────────────────────────── boot and watchdog ─────────────────────────────

  /**
   * The bootloader at reset: seals what a cut left unsealed, applies a pending rollback flag, breaks a
   * watchdog reboot loop, counts trial boots, verifies before executing, then arms the watchdog. Always
   * ends running a verified image of each component (NOT_BOOTABLE only when no bank of a component,
   * golden included, verifies).
   */
  boot(resetCause: ResetCause = "power_on"): BootResult {
    this.running = null;
    this.received = null;
    this.watchdog.disarm();
    let config = this.bootConfigOrFallback();
    this.recoverRecords(config);
    if (resetCause === "watchdog" && config.app.trial === null && config.comms.trial === null) {
      config = this.writeConfig({ ...config, wdtResets: Math.min(config.wdtResets + 1, BOOT_COUNTER_MAX) });
    }
    config = this.applyRollbackFlag(config);
    config = this.breakRebootLoop(config);
    const result: Partial<Record<UpdatableComponent, RunningImage>> = {};
    for (const component of UPDATABLE) {
      const booted = this.bootComponent(config, component);
      config = booted.config;
      result[component] = booted.running;
    }
    this.running = result as BootResult;
    this.watchdog.arm(this.options.nowMs());
    return this.running;
  }

  /**
   * The running code kicks its watchdog. Within the window it proves the images healthy: trials are
   * confirmed and the reboot-loop count clears. Too late (the window passed) it returns false: the
   * watchdog has fired, the shell resets the meter with boot("watchdog").
   */
  kick(): boolean {
    const running = this.requireBooted();
    if (!this.watchdog.kick(this.options.nowMs())) return false;
    for (const component of UPDATABLE) if (running[component].trial) this.confirm(component);
    const config = this.requireConfig();
    if (config.wdtResets > 0) this.writeConfig({ ...config, wdtResets: 0 });
    return true;
  }

  /** The watchdog's state at the meter's time; EXPIRED means the shell must reset (boot("watchdog")). */
  watchdogState(): WatchdogState {
    return this.watchdog.state(this.options.nowMs());
  }

  /** The running trial image proved itself: it becomes the confirmed image, the counter advances. */
  confirm(component: UpdatableComponent): boolean {
    const running = this.requireBooted();
    const config = this.requireConfig();
    const trial = config[component].trial;
    if (trial === null || !running[component].trial) return false; // idempotent
    const version = running[component].version;
    this.decide(
      { ...config, [component]: { slot: trial, trial: null, attempts: 0 } },
      { kind: "CONFIRMED", components: [component], toSlot: trial, value: version },
      () => this.advanceCounter(component, version),
    );
    this.running = { ...running, [component]: { slot: trial, version, trial: false } };
    return true;
  }

  /**
   * Forced rollback command (seed 000): sets the rollback flag, applied at the next reset. Idempotent:
   * when the flag is already set, or the targets already run golden with nothing on trial, nothing is
   * written (false). "full" reverts the application and the comms stack, "partial" the application only.
   */
  forceRollback(kind: "full" | "partial" = "full"): boolean {
    const config = this.requireConfig();
    const flag = kind === "full" ? "FULL" : "PARTIAL";
    if (config.rollbackFlag === "FULL" || config.rollbackFlag === flag) return false;
    const targets = kind === "full" ? UPDATABLE : (["app"] as const);
    if (targets.every((t) => config[t].slot === "GOLDEN" && config[t].trial === null)) return false;
    this.writeConfig({ ...config, rollbackFlag: flag });
    return true;
  }

  /** Seed 000 "Partial Rollback": the application layer only; the comms stack stays current. */
  partialRollback(): boolean {
    return this.forceRollback("partial");
  }

  // ───────────────────────────── reads ─────────────────────────────

  banks(): BankInfo[] {
    const out: BankInfo[] = [];
    for (const component of UPDATABLE) {
      for (const slot of SLOTS) {
        const attempt = this.tryImage(component, slot, "boot");
        out.push({
          component,
          slot,
          version: "image" in attempt ? attempt.image.version : null,
          valid: "image" in attempt,
          running: this.running?.[component].slot === slot,
        });
      }
    }
    return out;
  }

  counters(): Record<string, number> {
    return Object.fromEntries(
      UPDATABLE.map((c) => [
        securityCounterName(c),
        this.options.secureElement.readCounter(securityCounterName(c)),
      ]),
    );
  }

  /** SHA-256 of the running image of a component: what the head-end compares with the asset register. */
  runningChecksum(component: UpdatableComponent): Uint8Array | null {
    const slot = this.running?.[component].slot;
    if (slot === undefined) return null;
    const attempt = this.tryImage(component, slot, "boot");
    return "image" in attempt ? attempt.image.checksum : null;
  }

  get runningImages(): BootResult | null {
    return this.running;
  }

  bootConfig(): BootConfig | null {
    return this.configState() === "valid" ? this.requireConfig() : null;
  }

  // ───────────────────────────── boot internals ─────────────────────────────

  private applyRollbackFlag(config: BootConfig): BootConfig {
    if (config.rollbackFlag === "NONE") return config;
    const full = config.rollbackFlag === "FULL";
    const targets = full ? UPDATABLE : (["app"] as const);
    const moving = targets.filter((t) => config[t].slot !== "GOLDEN" || config[t].trial !== null);
    const cleared = { ...config, rollbackFlag: "NONE" as const };
    if (moving.length === 0) return this.writeConfig(cleared);
    for (const component of moving) {
      const attempt = this.tryImage(component, "GOLDEN", "rollback");
      if ("error" in attempt) {
        // seed 000: ERROR_CRC_MISMATCH (recovery payload compromised) or SIGN_AUTH_FAIL (its certificate
        // expired): the rollback is refused as a whole and the meter stays on its verified image.
        return this.decide(cleared, {
          kind: "ROLLBACK_REFUSED",
          components: moving,
          reason: attempt.error.code,
          cause: authCause(attempt.error),
          toSlot: "GOLDEN",
        });
      }
    }
    const next: BootConfig = {
      ...cleared,
      ...Object.fromEntries(moving.map((c) => [c, { slot: "GOLDEN", trial: null, attempts: 0 }])),
    };
    return this.decide(next, {
      kind: "ROLLED_BACK",
      components: moving,
      reason: full ? "FORCED_ROLLBACK" : "PARTIAL_ROLLBACK",
      fromApp: moving.includes("app") ? (config.app.trial ?? config.app.slot) : null,
      fromComms: moving.includes("comms") ? (config.comms.trial ?? config.comms.slot) : null,
      toSlot: "GOLDEN",
    });
  }

  /** seed 000 WDT_REBOOT_LOOP: confirmed images reset by the watchdog again and again → golden, app first. */
  private breakRebootLoop(config: BootConfig): BootConfig {
    if (config.wdtResets <= WDT_RESETS_MAX) return config;
    const target = UPDATABLE.find((c) => config[c].slot !== "GOLDEN" && config[c].trial === null);
    const cleared = { ...config, wdtResets: 0 };
    if (target === undefined) return this.writeConfig(cleared); // golden already: nothing left to revert
    const attempt = this.tryImage(target, "GOLDEN", "boot");
    if ("error" in attempt) {
      return this.decide(cleared, {
        kind: "ROLLBACK_REFUSED",
        components: [target],
        reason: attempt.error.code,
        cause: authCause(attempt.error),
        toSlot: "GOLDEN",
      });
    }
    return this.decide(
      { ...cleared, [target]: { slot: "GOLDEN", trial: null, attempts: 0 } },
      {
        kind: "WDT_ROLLBACK",
        components: [target],
        reason: "WDT_REBOOT_LOOP",
        ...fromOf(target, config[target].slot),
        toSlot: "GOLDEN",
        value: config.wdtResets,
      },
    );
  }

  private bootComponent(
    initial: BootConfig,
    component: UpdatableComponent,
  ): { config: BootConfig; running: RunningImage } {
    let config = initial;
    const boot = config[component];
    if (boot.trial !== null) {
      // Counted before the jump: a reset loop in the new code cannot hide (boot counting).
      const attempts = boot.attempts + 1;
      config = this.writeConfig({ ...config, [component]: { ...boot, attempts } });
      const back = { ...config, [component]: { slot: boot.slot, trial: null, attempts: 0 } };
      if (attempts > BOOT_ATTEMPTS_MAX) {
        config = this.decide(back, {
          kind: "WDT_ROLLBACK",
          components: [component],
          reason: "WDT_REBOOT_LOOP",
          ...fromOf(component, boot.trial),
          toSlot: boot.slot,
          value: attempts - 1,
        });
      } else {
        const attempt = this.tryImage(component, boot.trial, "boot");
        if ("image" in attempt) {
          return { config, running: { slot: boot.trial, version: attempt.image.version, trial: true } };
        }
        config = this.decide(back, {
          kind: "ROLLED_BACK",
          components: [component],
          reason: attempt.error.code,
          cause: authCause(attempt.error),
          ...fromOf(component, boot.trial),
          toSlot: boot.slot,
        });
      }
    }
    const confirmed = config[component].slot;
    let failure: FirmwareError | null = null;
    const primary: Slot[] = confirmed === "GOLDEN" ? ["GOLDEN"] : [confirmed, "GOLDEN"];
    for (const slot of primary) {
      const attempt = this.tryImage(component, slot, "boot");
      if ("image" in attempt)
        return this.runConfirmed(config, component, confirmed, slot, attempt.image, failure);
      failure ??= attempt.error;
    }
    const last = this.lastResort(component, primary);
    if (last !== null) return this.runConfirmed(config, component, confirmed, last.slot, last.image, failure);
    throw new FirmwareError(
      "NOT_BOOTABLE",
      `no ${component} bank verifies, golden included (first failure: ${failure?.message ?? "none"})`,
    );
  }

  private runConfirmed(
    initial: BootConfig,
    component: UpdatableComponent,
    confirmed: Slot,
    slot: Slot,
    image: FirmwareImage,
    failure: FirmwareError | null,
  ): { config: BootConfig; running: RunningImage } {
    let config = initial;
    if (slot !== confirmed) {
      config = this.decide(
        { ...config, [component]: { slot, trial: null, attempts: 0 } },
        {
          kind: "ROLLED_BACK",
          components: [component],
          reason: failure?.code ?? "ERROR_CRC_MISMATCH",
          cause: failure === null ? "NONE" : authCause(failure),
          ...fromOf(component, confirmed),
          toSlot: slot,
        },
      );
    }
    // Completes a confirmation whose counter update a power cut prevented.
    this.advanceCounter(component, image.version);
    return { config, running: { slot, version: image.version, trial: false } };
  }

  /**
   * Neither the confirmed bank nor golden verifies: the newest authentic other bank, preferring one not
   * older than the anti-rollback counter — an older but authentic image beats a bricked meter (the
   * counter never moves back, and the record says what happened).
   */
  private lastResort(
    component: UpdatableComponent,
    tried: readonly Slot[],
  ): { slot: Slot; image: FirmwareImage } | null {
    const counter = this.options.secureElement.readCounter(securityCounterName(component));
    const rank = (image: FirmwareImage) => (image.version >= counter ? 2 ** 32 : 0) + image.version;
    let best: { slot: Slot; image: FirmwareImage } | null = null;
    for (const slot of (["A", "B"] as const).filter((s) => !tried.includes(s))) {
      const attempt = this.tryImage(component, slot, "boot");
      if (!("image" in attempt)) continue;
      if (best === null || rank(attempt.image) > rank(best.image)) best = { slot, image: attempt.image };
    }
    return best;
  }

  private advanceCounter(component: UpdatableComponent, version: number): void {
    const name = securityCounterName(component);
    if (version > this.options.secureElement.readCounter(name))
      this.options.secureElement.advanceCounter(name, version);
  }

  // ───────────────────────────── transitions and their records ─────────────────────────────

  /** Writes the decision with its transition, then seals the transition's records (then `after`). */
  private decide(
    next: BootConfig,
    t: Partial<Omit<Transition, "seq">> & Pick<Transition, "kind" | "components">,
    after?: () => void,
    seqFloor = 0,
  ): BootConfig {
    const transition: Transition = {
      seq: Math.max(next.last?.seq ?? 0, seqFloor) + 1,
      kind: t.kind,
      components: t.components,
      reason: t.reason ?? "NONE",
      cause: t.cause ?? "NONE",
      fromApp: t.fromApp ?? null,
      fromComms: t.fromComms ?? null,
      toSlot: t.toSlot ?? null,
      value: t.value ?? 0,
    };
    const written = this.writeConfig({ ...next, last: transition });
    after?.();
    for (const r of transitionRecords(transition, this.counters())) {
      this.options.seal(r.type, r.level, r.snapshot);
    }
    return written;
  }

  /**
   * The newest transition's records are sealed unless the log already holds them (matched by
   * `fw_transition`). Only the newest can be missing: each decision is sealed before the next is taken.
   */
  private recoverRecords(config: BootConfig): void {
    const t = config.last;
    if (t === null || this.options.records === undefined) return;
    const records = this.options.records();
    const sealed = new Set<EventType>();
    let newest: number | null = null;
    for (const r of records) {
      const seq = r.snapshot.fw_transition;
      if (typeof seq !== "number") continue;
      newest = Math.max(newest ?? 0, seq);
      if (seq === t.seq) sealed.add(r.type);
    }
    if (newest !== null && newest > t.seq) return;
    // A wrapped log that kept no transition record cannot tell; sealing twice is worse than the gap,
    // which the log's own LOG_WRAP record already accounts for.
    if (newest === null && (records[0]?.seq ?? 1) > 1) return;
    for (const r of transitionRecords(t, this.counters())) {
      if (!sealed.has(r.type)) this.options.seal(r.type, r.level, { ...r.snapshot, recovered: true });
    }
  }

  // ───────────────────────────── image checks ─────────────────────────────

  private stagedImage(staging: StagedTransfer): FirmwareImage {
    try {
      const image = this.readImage(staging.component, staging.slot);
      if (image.bytes.length !== staging.imageBytes) {
        throw new FirmwareError(
          "BAD_IMAGE",
          `image is ${image.bytes.length} bytes, the transfer announced ${staging.imageBytes}`,
        );
      }
      return this.checkImage(staging.component, image, "install");
    } catch (error) {
      if (!(error instanceof FirmwareError)) throw error;
      let version = 0;
      try {
        version = this.readImage(staging.component, staging.slot).version;
      } catch {
        // the image does not even decode: no version to report
      }
      this.decide(
        { ...this.requireConfig(), staging: null },
        {
          kind: "REFUSED",
          components: [staging.component],
          reason: error.code,
          cause: authCause(error),
          toSlot: staging.slot,
          value: version,
        },
      );
      this.received = null;
      throw error;
    }
  }

  private tryImage(component: UpdatableComponent, slot: Slot, check: Check): Attempt {
    try {
      return { image: this.checkImage(component, this.readImage(component, slot), check) };
    } catch (error) {
      if (error instanceof FirmwareError) return { error };
      throw error;
    }
  }

  /**
   * install: everything, with the certificate's validity at the meter's time and the anti-rollback
   * counter; rollback: authenticity and validity (seed 000 SIGN_AUTH_FAIL: an expired certificate in the
   * rollback image); boot: authenticity only — an installed image keeps running after its certificate
   * expires, the meter must never brick over a date.
   */
  private checkImage(component: UpdatableComponent, image: FirmwareImage, check: Check): FirmwareImage {
    if (image.component !== component) {
      throw new FirmwareError(
        UPDATABLE_COMPONENTS.includes(image.component) ? "BAD_IMAGE" : "COMPONENT_NOT_UPDATABLE",
        `a ${image.component} image offered as ${component} firmware`,
      );
    }
    if (image.hwTarget !== this.options.hwTarget) {
      throw new FirmwareError(
        "HW_TARGET_MISMATCH",
        `image built for ${image.hwTarget}, this meter is ${this.options.hwTarget}`,
      );
    }
    const now = this.options.nowMs();
    if (check === "install" && image.expiresMs !== 0 && now > image.expiresMs) {
      throw new FirmwareError(
        "IMAGE_EXPIRED",
        `image not installable after ${new Date(image.expiresMs).toISOString()}, meter time ${new Date(now).toISOString()}`,
      );
    }
    authenticateImage(image, this.options.trust, check === "boot" ? null : now);
    if (check === "install") {
      const counter = this.options.secureElement.readCounter(securityCounterName(component));
      if (image.version < counter) {
        throw new FirmwareError(
          "VERSION_ROLLBACK_REFUSED",
          `version ${versionString(image.version)} is older than the anti-rollback counter ${versionString(counter)}`,
        );
      }
    }
    return image;
  }

  private readImage(component: UpdatableComponent, slot: Slot): FirmwareImage {
    const region = this.imageRegion(component, slot);
    const data = this.options.nvm.read(region.offset, region.length);
    const length = imageLengthAt(data);
    if (length === null) {
      throw new FirmwareError(
        "ERROR_CRC_MISMATCH",
        `${component} bank ${slot} holds no complete image (header unreadable)`,
      );
    }
    return decodeFirmwareImage(data.subarray(0, length));
  }

  /** Refusals that change nothing (no decision to write): sealed directly. */
  private refuse(
    code: "MEM_ACCESS_VIOLATION" | "COMPONENT_NOT_UPDATABLE",
    component: string,
    message: string,
  ): never {
    this.options.seal("FW_REFUSED", "CRITICAL", { component, reason: code });
    throw new FirmwareError(code, message);
  }

  // ───────────────────────────── NVM ─────────────────────────────

  /** The whole bank; A and B keep their last page for the transfer bitmap. */
  private bankRegion(component: UpdatableComponent, slot: Slot): NvmRegion {
    const l = this.options.layout;
    if (slot === "GOLDEN") {
      const half = l.firmwareRecovery.length / 2;
      return { offset: l.firmwareRecovery.offset + (component === "app" ? 0 : half), length: half };
    }
    if (component === "app") return slot === "A" ? l.firmwareBankA : l.firmwareBankB;
    return slot === "A" ? l.commsBankA : l.commsBankB;
  }

  private imageRegion(component: UpdatableComponent, slot: Slot): NvmRegion {
    const bank = this.bankRegion(component, slot);
    if (slot === "GOLDEN") return bank;
    return { offset: bank.offset, length: bank.length - this.options.nvm.geometry.pageBytes };
  }

  private bitmapBlocksMax(): number {
    return this.options.nvm.geometry.pageBytes * 8;
  }

  /** Bit n of the bank's last page, cleared (NOR: 1 → 0 without an erase) once block n is programmed. */
  private receivedBlocks(staging: StagedTransfer): boolean[] {
    if (this.received !== null) return this.received;
    const bank = this.bankRegion(staging.component, staging.slot);
    const page = this.options.nvm.geometry.pageBytes;
    const bitmap = this.options.nvm.read(bank.offset + bank.length - page, page);
    const blocks = Math.ceil(staging.imageBytes / staging.blockBytes);
    this.received = Array.from({ length: blocks }, (_, n) => (bitmap[n >> 3]! & (0x80 >> (n & 7))) === 0);
    return this.received;
  }

  private markReceived(staging: StagedTransfer, blockNumber: number): void {
    const bank = this.bankRegion(staging.component, staging.slot);
    const at = bank.offset + bank.length - this.options.nvm.geometry.pageBytes + (blockNumber >> 3);
    const current = this.options.nvm.read(at, 1)[0]!;
    this.guardWrite(at, 1);
    this.options.nvm.program(at, Uint8Array.of(current & ~(0x80 >> (blockNumber & 7)) & 0xff));
    this.options.nvm.sync();
  }

  /** The MPU model: once provisioned, any write reaching the recovery bank is MEM_ACCESS_VIOLATION. */
  private guardWrite(offset: number, length: number): void {
    const recovery = this.options.layout.firmwareRecovery;
    const overlaps = offset < recovery.offset + recovery.length && recovery.offset < offset + length;
    if (overlaps && this.configState() !== "absent") {
      this.refuse(
        "MEM_ACCESS_VIOLATION",
        "recovery",
        `write of ${length} bytes at ${offset} reaches the locked recovery partition`,
      );
    }
  }

  private eraseRegion(region: NvmRegion): void {
    this.guardWrite(region.offset, region.length);
    const sector = this.options.nvm.geometry.sectorBytes;
    const first = Math.floor(region.offset / sector);
    const last = Math.ceil((region.offset + region.length) / sector);
    for (let s = first; s < last; s++) this.options.nvm.eraseSector(s);
  }

  private writeRegion(region: NvmRegion, bytes: Uint8Array): void {
    if (bytes.length > region.length) {
      throw new FirmwareError(
        "BAD_IMAGE",
        `image of ${bytes.length} bytes larger than its ${region.length}-byte bank`,
      );
    }
    this.eraseRegion(region);
    this.programAt(region.offset, bytes);
    this.options.nvm.sync();
  }

  private programAt(offset: number, bytes: Uint8Array): void {
    this.guardWrite(offset, bytes.length);
    const page = this.options.nvm.geometry.pageBytes;
    let at = 0;
    while (at < bytes.length) {
      const chunk = Math.min(page - ((offset + at) % page), bytes.length - at);
      this.options.nvm.program(offset + at, bytes.subarray(at, at + chunk));
      at += chunk;
    }
  }

  // ───────────────────────────── boot configuration ─────────────────────────────

  /** absent: factory-fresh (erased); corrupt: written but neither copy intact; valid. */
  private configState(): "absent" | "corrupt" | "valid" {
    if (this.cached !== null) return "valid";
    if (this.readStored() !== null) return "valid";
    const region = this.options.layout.bootConfig;
    const raw = this.options.nvm.read(region.offset, region.length);
    return raw.every((b) => b === 0xff) ? "absent" : "corrupt";
  }

  private readStored(): BootConfig | null {
    const payload = this.store.read();
    if (payload === null) return null;
    try {
      return decodeBootConfig(payload);
    } catch (error) {
      if (error instanceof FirmwareError) return null;
      throw error;
    }
  }

  /** A configuration lost to corruption (not to a power cut: the dual copy covers those) → golden. */
  private bootConfigOrFallback(): BootConfig {
    const state = this.configState();
    if (state !== "corrupt") return this.requireConfig();
    const fallback: BootConfig = {
      app: { slot: "GOLDEN", trial: null, attempts: 0 },
      comms: { slot: "GOLDEN", trial: null, attempts: 0 },
      rollbackFlag: "NONE",
      wdtResets: 0,
      staging: null,
      last: null,
    };
    // Transition numbers stay unique: continue after the newest one the log holds.
    let newest = 0;
    for (const r of this.options.records?.() ?? []) {
      const seq = r.snapshot.fw_transition;
      if (typeof seq === "number" && seq > newest) newest = seq;
    }
    return this.decide(
      fallback,
      { kind: "ROLLED_BACK", components: UPDATABLE, reason: "ERROR_CRC_MISMATCH", toSlot: "GOLDEN" },
      undefined,
      newest,
    );
  }

  private requireConfig(): BootConfig {
    if (this.cached !== null) return this.cached;
    const stored = this.readStored();
    if (stored === null) {
      throw new FirmwareError(
        "BAD_STATE",
        this.configState() === "absent"
          ? "meter not provisioned (no boot configuration)"
          : "boot configuration unreadable: boot() falls back to golden",
      );
    }
    this.cached = stored;
    return stored;
  }

  private writeConfig(config: BootConfig): BootConfig {
    this.cached = null; // the device is the truth if the write is cut
    this.store.write(encodeBootConfig(config));
    this.cached = config;
    return config;
  }

  private requireBooted(): BootResult {
    if (this.running === null)
      throw new FirmwareError("BAD_STATE", "the bootloader has not booted an image yet");
    return this.running;
  }

  /** The staged transfer, unless its bank has since become the running one (a last-resort fallback). */
  private stagingOrNull(): StagedTransfer | null {
    if (this.configState() !== "valid") return null;
    const config = this.requireConfig();
    const s = config.staging;
    if (s === null || s.slot === config[s.component].slot || s.slot === config[s.component].trial)
      return null;
    return s;
  }

  private requireStaging(): StagedTransfer {
    this.requireBooted();
    const staging = this.stagingOrNull();
    if (staging === null) throw new FirmwareError("BAD_STATE", "no image transfer in progress");
    return staging;
  }
}

function inactiveSlot(boot: ComponentBoot): Slot {
  return boot.slot === "A" ? "B" : "A";
}

function fromOf(component: UpdatableComponent, slot: Slot): Pick<Transition, "fromApp" | "fromComms"> {
  return component === "app" ? { fromApp: slot, fromComms: null } : { fromApp: null, fromComms: slot };
}

function authCause(error: FirmwareError): AuthCause {
  return AUTH_CAUSES.find((c) => c === error.detail) ?? "NONE";
}
