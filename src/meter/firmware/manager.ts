import type {
  EventLevel,
  EventRecord,
  EventType,
  NvmDevice,
  NvmRegion,
  SecureElement,
  Snapshot,
} from "../../evidence/index.ts";
import { DualCopyRecord, decodeIntegers, encodeIntegers, type MeterNvmLayout } from "../nvm-layout.ts";
import { FirmwareError, type FirmwareErrorCode } from "./errors.ts";
import {
  decodeFirmwareImage,
  type FirmwareComponent,
  type FirmwareImage,
  imageLengthAt,
  UPDATABLE_COMPONENTS,
  versionString,
} from "./image.ts";
import { authenticateImage, type TrustAnchor } from "./pki.ts";

// The bootloader and update manager (seed 000; MCUboot-style trial boot with a security counter, Mender/
// RAUC-style boot counting), per updatable component: application and comms stack each have banks A/B;
// the recovery bank holds both golden images and is locked after provisioning.
//
// Every decision is one atomic boot-config write (dual copy), so a power cut at any point leaves either
// the old or the new decision; images are verified before they are executed; when nothing else verifies
// the golden image runs — never bricked. Every transition is a sealed event record, and rollback.log is
// derived from those records.

/** Trial boots of a new image without a watchdog confirmation before WDT_REBOOT_LOOP. */
export const BOOT_ATTEMPTS_MAX = 3;
export const TRANSFER_BLOCK_BYTES_MAX = 4096;

export type Slot = "A" | "B" | "GOLDEN";
const SLOTS: readonly Slot[] = ["A", "B", "GOLDEN"];
type Updatable = "app" | "comms";
const COMPONENTS: readonly Updatable[] = ["app", "comms"];

export interface ComponentBoot {
  /** Confirmed slot that runs when no trial is pending. */
  slot: Slot;
  /** Slot on trial (activated, not yet confirmed), or null. */
  trial: Slot | null;
  attempts: number;
}

interface BootConfig {
  app: ComponentBoot;
  comms: ComponentBoot;
  /** 0 none, 1 full (app + comms → golden), 2 partial (app → golden, comms stays current). */
  rollbackFlag: 0 | 1 | 2;
}

export interface BankInfo {
  readonly component: Updatable;
  readonly slot: Slot;
  readonly version: number | null;
  readonly valid: boolean;
  readonly running: boolean;
}

export interface BootResult {
  readonly app: { slot: Slot; version: number; trial: boolean };
  readonly comms: { slot: Slot; version: number; trial: boolean };
}

export interface FirmwareManagerOptions {
  readonly nvm: NvmDevice;
  readonly layout: MeterNvmLayout;
  readonly secureElement: SecureElement;
  readonly trust: TrustAnchor;
  readonly hwTarget: string;
  /** Seals a record in the meter's event log. */
  readonly seal: (type: EventType, level: EventLevel, snapshot: Snapshot) => EventRecord | undefined;
  /** Meter time, for certificate validity and expiry. */
  readonly nowMs: () => number;
}

interface Staging {
  component: Updatable;
  slot: Slot;
  imageBytes: number;
  blockBytes: number;
  received: boolean[];
  verified: FirmwareImage | null;
}

export function securityCounterName(component: Updatable): string {
  return `fw_${component}_version`;
}

export class FirmwareManager {
  private readonly options: FirmwareManagerOptions;
  private readonly config: DualCopyRecord;
  private boot$: BootConfig | null = null;
  private staging: Staging | null = null;
  private running: BootResult | null = null;

  constructor(options: FirmwareManagerOptions) {
    this.options = options;
    this.config = new DualCopyRecord(options.nvm, options.layout.bootConfig);
  }

  // ───────────────────────────── factory ─────────────────────────────

  /** Factory provisioning: golden images into the recovery bank and bank A; then the recovery bank is locked. */
  provision(goldenApp: FirmwareImage, goldenComms: FirmwareImage): void {
    if (this.readConfig() !== null) {
      this.refuse("MEM_ACCESS_VIOLATION", "app", null, "recovery partition is locked after provisioning");
    }
    const half = this.options.layout.firmwareRecovery.length / 2;
    const recovery = this.options.layout.firmwareRecovery;
    this.writeRegion({ offset: recovery.offset, length: half }, goldenApp.bytes);
    this.writeRegion({ offset: recovery.offset + half, length: half }, goldenComms.bytes);
    this.writeRegion(this.regionOf("app", "A"), goldenApp.bytes);
    this.writeRegion(this.regionOf("comms", "A"), goldenComms.bytes);
    this.options.secureElement.advanceCounter(securityCounterName("app"), goldenApp.version);
    this.options.secureElement.advanceCounter(securityCounterName("comms"), goldenComms.version);
    this.writeConfig({
      app: { slot: "A", trial: null, attempts: 0 },
      comms: { slot: "A", trial: null, attempts: 0 },
      rollbackFlag: 0,
    });
  }

  /** Any write aimed at the recovery bank after provisioning: refused and recorded. */
  writeRecovery(_bytes: Uint8Array): never {
    this.refuse("MEM_ACCESS_VIOLATION", "app", null, "write to the locked recovery partition refused");
  }

  // ───────────────────────────── transfer (IC 18) ─────────────────────────────

  /** image_transfer_initiate: staging goes to the component's inactive bank, which is erased. */
  initiateTransfer(component: FirmwareComponent, imageBytes: number, blockBytes: number): void {
    if (!UPDATABLE_COMPONENTS.includes(component)) {
      this.refuse("COMPONENT_NOT_UPDATABLE", "app", null, `${component} firmware never changes in the field`);
    }
    const updatable = component as Updatable;
    const config = this.requireConfig();
    const slot: Slot = config[updatable].slot === "A" ? "B" : "A";
    const region = this.regionOf(updatable, slot);
    if (imageBytes < 1 || imageBytes > region.length) {
      throw new FirmwareError(
        "BAD_IMAGE",
        `image of ${imageBytes} bytes does not fit the ${region.length}-byte bank`,
      );
    }
    if (blockBytes < 1 || blockBytes > TRANSFER_BLOCK_BYTES_MAX) {
      throw new FirmwareError("BAD_STATE", `block size must be 1..${TRANSFER_BLOCK_BYTES_MAX}`);
    }
    if (config[updatable].trial === slot) {
      // Overwriting a bank on trial would pull the image from under the bootloader.
      throw new FirmwareError("BAD_STATE", `bank ${slot} is on trial; confirm or roll back first`);
    }
    this.eraseRegion(region);
    this.staging = {
      component: updatable,
      slot,
      imageBytes,
      blockBytes,
      received: new Array<boolean>(Math.ceil(imageBytes / blockBytes)).fill(false),
      verified: null,
    };
    this.options.seal("FW_UPDATE_RECEIVED", "INFO", {
      component: updatable,
      bank: slot,
      image_bytes: imageBytes,
    });
  }

  /** image_block_transfer: block n at n × block size; a block already received is ignored (idempotent). */
  receiveBlock(blockNumber: number, bytes: Uint8Array): void {
    const staging = this.requireStaging();
    if (!Number.isInteger(blockNumber) || blockNumber < 0 || blockNumber >= staging.received.length) {
      throw new FirmwareError("BAD_STATE", `block ${blockNumber} outside 0..${staging.received.length - 1}`);
    }
    const expected = Math.min(staging.blockBytes, staging.imageBytes - blockNumber * staging.blockBytes);
    if (bytes.length !== expected) {
      throw new FirmwareError(
        "BAD_STATE",
        `block ${blockNumber} must be ${expected} bytes, got ${bytes.length}`,
      );
    }
    if (staging.received[blockNumber]) return;
    const region = this.regionOf(staging.component, staging.slot);
    this.programAt(region.offset + blockNumber * staging.blockBytes, bytes);
    this.options.nvm.sync();
    staging.received[blockNumber] = true;
  }

  /** image_first_not_transferred_block_number (attribute 4): where an interrupted transfer resumes. */
  firstNotTransferredBlock(): number {
    const staging = this.staging;
    if (staging === null) return 0;
    const index = staging.received.indexOf(false);
    return index < 0 ? staging.received.length : index;
  }

  /** image_transferred_blocks_status (attribute 3). */
  transferredBlocks(): readonly boolean[] {
    return this.staging?.received ?? [];
  }

  /** image_verify: CRC, component, hardware target, expiry, certificate chain and validity, signature, version. */
  verify(): FirmwareImage {
    const staging = this.requireStaging();
    if (staging.received.includes(false)) {
      throw new FirmwareError(
        "BAD_STATE",
        `image incomplete: first missing block ${this.firstNotTransferredBlock()}`,
      );
    }
    let staged: FirmwareImage;
    try {
      staged = this.readImage(staging.component, staging.slot);
    } catch (error) {
      if (error instanceof FirmwareError) this.refuse(error.code, staging.component, null, error.message);
      throw error;
    }
    const image = this.checkImage(staging.component, staged, true);
    staging.verified = image;
    this.options.seal("FW_VERIFIED", "INFO", {
      component: staging.component,
      bank: staging.slot,
      version: versionString(image.version),
      checksum: Buffer.from(image.checksum).toString("hex"),
    });
    return image;
  }

  /** image_activate: the verified bank goes on trial at the next reset. */
  activate(): void {
    const staging = this.requireStaging();
    if (staging.verified === null) throw new FirmwareError("BAD_STATE", "activate needs a verified image");
    const config = this.requireConfig();
    config[staging.component] = { ...config[staging.component], trial: staging.slot, attempts: 0 };
    this.writeConfig(config);
    this.options.seal("FW_ACTIVATED", "INFO", {
      component: staging.component,
      bank: staging.slot,
      version: versionString(staging.verified.version),
    });
    this.staging = null;
  }

  // ───────────────────────────── boot ─────────────────────────────

  /** The bootloader at reset. Always ends running a verified image of each component. */
  boot(): BootResult {
    const config = this.requireConfig();
    if (config.rollbackFlag !== 0) {
      const full = config.rollbackFlag === 1;
      for (const component of full ? COMPONENTS : (["app"] as const)) {
        const before = config[component];
        if (before.slot !== "GOLDEN" || before.trial !== null) {
          config[component] = { slot: "GOLDEN", trial: null, attempts: 0 };
          this.writeConfigAnd(config, () =>
            this.options.seal("FW_ROLLED_BACK", "MAJOR", {
              component,
              reason: full ? "FORCED_ROLLBACK" : "PARTIAL_ROLLBACK",
              from_bank: before.trial ?? before.slot,
              to_bank: "GOLDEN",
            }),
          );
        }
      }
      config.rollbackFlag = 0;
      this.writeConfig(config);
    }
    const result: Partial<Record<Updatable, { slot: Slot; version: number; trial: boolean }>> = {};
    for (const component of COMPONENTS) {
      const c = config[component];
      if (c.trial !== null) {
        c.attempts++;
        this.writeConfig(config); // counted before the jump: a reset loop cannot hide
        if (c.attempts > BOOT_ATTEMPTS_MAX) {
          this.rollbackTrial(config, component, "WDT_REBOOT_LOOP");
        } else {
          const trialImage = this.tryImage(component, c.trial);
          if (trialImage !== null) {
            result[component] = { slot: c.trial, version: trialImage.version, trial: true };
            continue;
          }
          this.rollbackTrial(config, component, "ERROR_CRC_MISMATCH");
        }
      }
      // Verify before execute, falling back towards the golden image.
      for (const slot of fallbackOrder(c.slot)) {
        const image = this.tryImage(component, slot);
        if (image === null) {
          if (slot !== "GOLDEN") this.logBootFailure(component, slot);
          continue;
        }
        if (slot !== c.slot) {
          const from = c.slot;
          config[component] = { slot, trial: null, attempts: 0 };
          this.writeConfigAnd(config, () =>
            this.options.seal("FW_ROLLED_BACK", "CRITICAL", {
              component,
              reason: "ERROR_CRC_MISMATCH",
              from_bank: from,
              to_bank: slot,
            }),
          );
        }
        result[component] = { slot, version: image.version, trial: false };
        break;
      }
      if (result[component] === undefined)
        throw new FirmwareError("NOT_BOOTABLE", `no ${component} image verifies, not even golden`);
    }
    this.running = result as BootResult;
    return this.running;
  }

  /** The running trial image kicked its watchdog in time: it becomes the confirmed image. */
  confirm(component: Updatable): void {
    const config = this.requireConfig();
    const c = config[component];
    if (c.trial === null) return; // idempotent
    const image = this.readImage(component, c.trial);
    const slot = c.trial;
    config[component] = { slot, trial: null, attempts: 0 };
    this.writeConfig(config);
    this.options.secureElement.advanceCounter(securityCounterName(component), image.version);
    this.options.seal("FW_CONFIRMED", "INFO", {
      component,
      bank: slot,
      version: versionString(image.version),
    });
    if (this.running !== null)
      this.running = { ...this.running, [component]: { slot, version: image.version, trial: false } };
  }

  /**
   * Forced rollback command: sets the rollback flag, applied at the next reset. Idempotent: when the
   * component(s) already run the golden image with nothing on trial, or the flag is already set, nothing
   * changes and nothing is recorded twice.
   */
  forceRollback(kind: "full" | "partial"): boolean {
    const config = this.requireConfig();
    const flag = kind === "full" ? 1 : 2;
    const targets = kind === "full" ? COMPONENTS : (["app"] as const);
    const already = targets.every((t) => config[t].slot === "GOLDEN" && config[t].trial === null);
    if (already || config.rollbackFlag === flag || config.rollbackFlag === 1) return false;
    config.rollbackFlag = flag;
    this.writeConfig(config);
    return true;
  }

  // ───────────────────────────── reads ─────────────────────────────

  banks(): BankInfo[] {
    const config = this.readConfig();
    const out: BankInfo[] = [];
    for (const component of COMPONENTS) {
      for (const slot of SLOTS) {
        const image = this.tryImage(component, slot);
        const running = this.running?.[component].slot === slot;
        out.push({
          component,
          slot,
          version: image?.version ?? null,
          valid: image !== null,
          running: running && config !== null,
        });
      }
    }
    return out;
  }

  counters(): Record<string, number> {
    return Object.fromEntries(
      COMPONENTS.map((c) => [
        securityCounterName(c),
        this.options.secureElement.readCounter(securityCounterName(c)),
      ]),
    );
  }

  /** SHA-256 of the running image of a component: what the head-end compares with the asset register. */
  runningChecksum(component: Updatable): Uint8Array | null {
    const slot = this.running?.[component].slot;
    return slot === undefined ? null : (this.tryImage(component, slot)?.checksum ?? null);
  }

  get runningImages(): BootResult | null {
    return this.running;
  }

  bootConfig(): BootConfig | null {
    return this.readConfig();
  }

  // ───────────────────────────── internals ─────────────────────────────

  private rollbackTrial(config: BootConfig, component: Updatable, reason: FirmwareErrorCode): void {
    const from = config[component].trial;
    config[component] = { ...config[component], trial: null, attempts: 0 };
    this.writeConfigAnd(config, () => {
      if (reason === "WDT_REBOOT_LOOP") {
        this.options.seal("WDT_REBOOT_LOOP", "CRITICAL", {
          component,
          bank: from ?? "?",
          boot_attempts: BOOT_ATTEMPTS_MAX + 1,
        });
      }
      this.options.seal("FW_ROLLED_BACK", "CRITICAL", {
        component,
        reason,
        from_bank: from ?? "?",
        to_bank: config[component].slot,
      });
    });
  }

  private logBootFailure(component: Updatable, slot: Slot): void {
    this.options.seal("FW_REFUSED", "CRITICAL", {
      component,
      bank: slot,
      reason: "ERROR_CRC_MISMATCH",
      stage: "boot",
    });
  }

  /** Reads, decodes and authenticates (without the validity window: installed images keep running). */
  private tryImage(component: Updatable, slot: Slot): FirmwareImage | null {
    try {
      return this.checkImage(component, this.readImage(component, slot), false);
    } catch (error) {
      if (error instanceof FirmwareError) return null;
      throw error;
    }
  }

  private checkImage(component: Updatable, image: FirmwareImage, install: boolean): FirmwareImage {
    const fail = (code: FirmwareErrorCode, message: string): never => {
      if (install) this.refuse(code, component, image, message);
      throw new FirmwareError(code, message);
    };
    if (image.component !== component) {
      fail(
        UPDATABLE_COMPONENTS.includes(image.component) ? "BAD_IMAGE" : "COMPONENT_NOT_UPDATABLE",
        `a ${image.component} image in the ${component} bank`,
      );
    }
    if (image.hwTarget !== this.options.hwTarget)
      fail("HW_TARGET_MISMATCH", `image for ${image.hwTarget}, meter is ${this.options.hwTarget}`);
    const now = this.options.nowMs();
    if (install && image.expiresMs !== 0 && now > image.expiresMs)
      fail("IMAGE_EXPIRED", `image expired ${new Date(image.expiresMs).toISOString()}`);
    try {
      authenticateImage(image, this.options.trust, install ? now : null);
    } catch (error) {
      if (error instanceof FirmwareError) fail(error.code, error.message.replace(/^[A-Z_]+: /, ""));
      throw error;
    }
    if (install) {
      const counter = this.options.secureElement.readCounter(securityCounterName(component));
      if (image.version <= counter) {
        this.options.seal("FW_ROLLBACK", "CRITICAL", {
          component,
          offered_version: versionString(image.version),
          security_counter: versionString(counter),
        });
        fail(
          "VERSION_ROLLBACK_REFUSED",
          `version ${versionString(image.version)} is not newer than the anti-rollback counter ${versionString(counter)}`,
        );
      }
    }
    return image;
  }

  private readImage(component: Updatable, slot: Slot): FirmwareImage {
    const region = this.regionOf(component, slot);
    const data = this.options.nvm.read(region.offset, region.length);
    const length = imageLengthAt(data);
    if (length === null)
      throw new FirmwareError("ERROR_CRC_MISMATCH", `bank ${component}/${slot} holds no complete image`);
    return decodeFirmwareImage(data.subarray(0, length));
  }

  private refuse(
    code: FirmwareErrorCode,
    component: Updatable,
    image: FirmwareImage | null,
    message: string,
  ): never {
    this.options.seal(
      code === "MEM_ACCESS_VIOLATION" ? "FW_REFUSED" : code === "SIGN_AUTH_FAIL" ? "SIG_FAIL" : "FW_REFUSED",
      "CRITICAL",
      {
        component,
        reason: code,
        ...(code === "SIGN_AUTH_FAIL" ? { error_code: "0xF2" } : {}),
        ...(image === null ? {} : { version: versionString(image.version) }),
      },
    );
    throw new FirmwareError(code, message);
  }

  private regionOf(component: Updatable, slot: Slot): NvmRegion {
    const l = this.options.layout;
    if (slot === "GOLDEN") {
      const half = l.firmwareRecovery.length / 2;
      return { offset: l.firmwareRecovery.offset + (component === "app" ? 0 : half), length: half };
    }
    if (component === "app") return slot === "A" ? l.firmwareBankA : l.firmwareBankB;
    return slot === "A" ? l.commsBankA : l.commsBankB;
  }

  private eraseRegion(region: NvmRegion): void {
    const sector = this.options.nvm.geometry.sectorBytes;
    const first = Math.floor(region.offset / sector);
    const last = Math.ceil((region.offset + region.length) / sector);
    for (let s = first; s < last; s++) this.options.nvm.eraseSector(s);
  }

  private writeRegion(region: NvmRegion, bytes: Uint8Array): void {
    if (bytes.length > region.length) throw new FirmwareError("BAD_IMAGE", "image larger than its bank");
    this.eraseRegion(region);
    this.programAt(region.offset, bytes);
    this.options.nvm.sync();
  }

  private programAt(offset: number, bytes: Uint8Array): void {
    const page = this.options.nvm.geometry.pageBytes;
    let at = 0;
    while (at < bytes.length) {
      const chunk = Math.min(page - ((offset + at) % page), bytes.length - at);
      this.options.nvm.program(offset + at, bytes.subarray(at, at + chunk));
      at += chunk;
    }
  }

  private readConfig(): BootConfig | null {
    if (this.boot$ !== null) return this.boot$;
    const payload = this.config.read();
    if (payload === null) return null;
    const v = decodeIntegers(payload, 7);
    if (v === null) return null;
    const slot = (n: number): Slot => SLOTS[n] ?? "GOLDEN";
    const trial = (n: number): Slot | null => (n < 0 ? null : slot(n));
    this.boot$ = {
      app: { slot: slot(v[0]!), trial: trial(v[1]!), attempts: v[2]! },
      comms: { slot: slot(v[3]!), trial: trial(v[4]!), attempts: v[5]! },
      rollbackFlag: (v[6] === 1 || v[6] === 2 ? v[6] : 0) as 0 | 1 | 2,
    };
    return this.boot$;
  }

  private requireConfig(): BootConfig {
    const config = this.readConfig();
    if (config === null)
      throw new FirmwareError("BAD_STATE", "meter not provisioned (no boot configuration)");
    return config;
  }

  private requireStaging(): Staging {
    if (this.staging === null) throw new FirmwareError("BAD_STATE", "no image transfer in progress");
    return this.staging;
  }

  private writeConfig(config: BootConfig): void {
    const index = (s: Slot | null) => (s === null ? -1 : SLOTS.indexOf(s));
    this.boot$ = null; // re-read after the write: the device is the truth
    this.config.write(
      encodeIntegers([
        index(config.app.slot),
        index(config.app.trial),
        config.app.attempts,
        index(config.comms.slot),
        index(config.comms.trial),
        config.comms.attempts,
        config.rollbackFlag,
      ]),
    );
    this.boot$ = structuredClone(config);
  }

  /** Writes the decision, then seals its record: a cut between them leaves the decision without its record,
   * never a record of a decision that was not taken. */
  private writeConfigAnd(config: BootConfig, sealRecord: () => void): void {
    this.writeConfig(config);
    sealRecord();
  }
}

function fallbackOrder(slot: Slot): Slot[] {
  if (slot === "GOLDEN") return ["GOLDEN"];
  return [slot, slot === "A" ? "B" : "A", "GOLDEN"];
}

/** rollback.log lines (seed 000), derived from the sealed records. */
export function rollbackLog(records: readonly EventRecord[]): string[] {
  const lines: string[] = [];
  for (const r of records) {
    if (
      ![
        "FW_REFUSED",
        "FW_ROLLED_BACK",
        "WDT_REBOOT_LOOP",
        "FW_ROLLBACK",
        "SIG_FAIL",
        "FW_ACTIVATED",
        "FW_CONFIRMED",
      ].includes(r.type)
    )
      continue;
    const reason =
      r.type === "WDT_REBOOT_LOOP"
        ? "WDT_REBOOT_LOOP"
        : r.type === "SIG_FAIL"
          ? "SIGN_AUTH_FAIL"
          : typeof r.snapshot.reason === "string"
            ? r.snapshot.reason
            : r.type;
    const detail = Object.entries(r.snapshot)
      .filter(([k]) => k !== "reason")
      .map(([k, v]) => `${k}=${v}`)
      .join(" ");
    lines.push(
      `${new Date(r.timestampMs).toISOString()} seq=${r.seq} ${r.type} ${reason} ${detail}`.trimEnd(),
    );
  }
  return lines;
}
