// shell: virtual meters in real time — the wall clock, timers, files and signals live here only.
import { createHash, randomBytes } from "node:crypto";
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { type CosemObjectModel, type ListeningServer, listenDlms } from "../../dlms/index.ts";
import { FileNvm, FileSecureElement, MemorySecureElement, type SecureElement } from "../../evidence/index.ts";
import { meterObjectModel } from "../cosem.ts";
import { FirmwareError, type FirmwareManager } from "../firmware/index.ts";
import { HouseholdLoad } from "../load.ts";
import { Meter } from "../meter.ts";
import { meterNvmLayout } from "../nvm-layout.ts";
import { RollbackCommandHandler, withRollbackCommand } from "../rollback-command.ts";
import { type FirmwareProvisioning, ProvisioningError } from "./firmware-provision.ts";

export const METER_STEP_MS = 1000;

export interface FleetOptions {
  /** Serve each meter's COSEM model over DLMS/TCP on consecutive ports from this one. */
  readonly listenPort?: number;
  /** LLS password of the management client (wPort 1). */
  readonly password?: string;
  /** HLS-GMAC global keys (hex); each meter's system title derives from its id. */
  readonly encryptionKeyHex?: string;
  readonly authenticationKeyHex?: string;
  readonly baseId: string;
  readonly count: number;
  /** Keep NVM images and secure elements here; in memory when absent. */
  readonly dataDir?: string;
  readonly pvShare?: number;
  /** Load-profile capture period of every meter (default the meter's 15 min). */
  readonly profilePeriodMs?: number;
  /**
   * Firmware (issue 9): every meter gets A/B banks behind this trust anchor, provisioned with these golden
   * images on its first start (kept in its NVM afterwards), and serves image transfer over DLMS.
   */
  readonly firmware?: FirmwareProvisioning;
  /**
   * The OTP key each meter was provisioned with for rollback commands (the head-end derives the same from
   * its master key). With it (and firmware), each meter serves the OTP-signed rollback command object.
   */
  readonly rollbackKey?: (meterId: string) => Uint8Array;
  /**
   * Test-only fault (end-to-end tests): this meter's application stops kicking its watchdog after an
   * activation, so every boot into the new image ends in a watchdog reset and the bootloader falls back.
   */
  readonly faultNoWatchdogKick?: string;
  /**
   * Test-only fault (end-to-end tests): this meter receives block 1 of every image transfer with one byte
   * flipped (a corrupted transfer), so its verification fails the image's CRC.
   */
  readonly faultCorruptBlock?: string;
}

/** The faulty application never kicks its watchdog: confirming it ends in watchdog resets back to the old bank. */
function neverKicksWatchdog(firmware: FirmwareManager): FirmwareManager {
  return new Proxy(firmware, {
    get(target, prop, receiver) {
      if (prop === "confirm") {
        return () => {
          for (let resets = 0; resets < 10; resets++) {
            if (!target.boot("watchdog").app.trial) break;
          }
          return false;
        };
      }
      const value = Reflect.get(target, prop, receiver);
      return typeof value === "function" ? value.bind(target) : value;
    },
  });
}

/** Block 1 of an image transfer (IC 18 method 2) arrives with one payload byte flipped. */
function corruptingBlockOne(model: CosemObjectModel): CosemObjectModel {
  return {
    get: (...args) => model.get(...args),
    set: (...args) => model.set(...args),
    action: (level, classId, obis, methodId, parameters) => {
      if (
        classId === 18 &&
        methodId === 2 &&
        parameters?.type === "structure" &&
        parameters.value[0]?.type === "double-long-unsigned" &&
        parameters.value[0].value === 1 &&
        parameters.value[1]?.type === "octet-string" &&
        parameters.value[1].value.length > 10
      ) {
        const bytes = parameters.value[1].value.slice();
        bytes[10] = bytes[10]! ^ 0x5a;
        return model.action(level, classId, obis, methodId, {
          type: "structure",
          value: [parameters.value[0], { type: "octet-string", value: bytes }],
        });
      }
      return model.action(level, classId, obis, methodId, parameters);
    },
  };
}

export interface RunningFleet {
  readonly meters: readonly Meter[];
  /** Listening DLMS ports, one per meter (empty without listenPort). */
  readonly ports: number[];
  /** Each meter's firmware (null without the firmware option). */
  firmwareOf(meterId: string): FirmwareManager | null;
  /** Rollback commands refused (OTP checks) across the fleet. */
  rollbacksRefused(): number;
  stop(): Promise<void>;
  statusLine(): string;
}

export function meterIdAt(baseId: string, index: number, count: number): string {
  return count === 1 ? baseId : `${baseId}-${String(index + 1).padStart(4, "0")}`;
}

export const DEFAULT_LLS_PASSWORD = "12345678";
/** Test keys (the Green Book's example keys): documented in the README, never for a real deployment. */
export const DEFAULT_EK_HEX = "000102030405060708090a0b0c0d0e0f";
export const DEFAULT_AK_HEX = "d0d1d2d3d4d5d6d7d8d9dadbdcdddedf";

/** A meter's DLMS system title: "AMP" manufacturer prefix then 5 bytes of SHA-256 of its id. */
export function meterSystemTitle(id: string): Uint8Array {
  return Uint8Array.of(0x41, 0x4d, 0x50, ...createHash("sha256").update(id).digest().subarray(0, 5));
}

export async function startFleet(options: FleetOptions): Promise<RunningFleet> {
  if (options.rollbackKey !== undefined && options.firmware === undefined)
    throw new ProvisioningError("the rollback command needs firmware provisioning (a PKI directory)");
  const layout = meterNvmLayout();
  const startMs = Date.now();
  const meters: Meter[] = [];
  const loads: HouseholdLoad[] = [];
  const firmwares = new Map<string, FirmwareManager>();
  const handlers = new Map<string, RollbackCommandHandler>();
  for (let i = 0; i < options.count; i++) {
    const id = meterIdAt(options.baseId, i, options.count);
    let secureElement: SecureElement;
    let nvm: FileNvm | undefined;
    if (options.dataDir !== undefined) {
      const dir = join(options.dataDir, id);
      mkdirSync(dir, { recursive: true });
      secureElement = FileSecureElement.open(join(dir, "se"), id);
      nvm = FileNvm.open(join(dir, "nvm.bin"), layout.geometry);
    } else {
      secureElement = new MemorySecureElement(id);
    }
    const meter = Meter.open(
      {
        id,
        secureElement,
        layout,
        ...(nvm === undefined ? {} : { nvm }),
        ...(options.profilePeriodMs === undefined ? {} : { profilePeriodMs: options.profilePeriodMs }),
        factoryTimeMs: startMs,
      },
      startMs,
    );
    meters.push(meter);
    if (options.firmware !== undefined) {
      const { caCertificateDer, goldenApp, goldenComms } = options.firmware;
      const firmware = meter.attachFirmware({ caCertificateDer }, goldenApp.hwTarget, () => Date.now());
      try {
        // Factory provisioning once; a meter restarted from its NVM boots what its banks hold.
        if (firmware.bootConfig() === null) firmware.provision(goldenApp, goldenComms);
        firmware.boot();
      } catch (error) {
        if (!(error instanceof FirmwareError)) throw error;
        throw new ProvisioningError(`meter ${id}: firmware provisioning failed: ${error.message}`);
      }
      firmwares.set(id, firmware);
      if (options.rollbackKey !== undefined) {
        handlers.set(
          id,
          new RollbackCommandHandler({
            meterId: id,
            otpKey: options.rollbackKey(id),
            firmware,
            secureElement,
            nowMs: () => Date.now(),
            sealRefusal: (_reason, snapshot) =>
              meter.reportFirmwareIncident(Date.now(), "SIG_FAIL", snapshot),
          }),
        );
      }
    }
    loads.push(
      new HouseholdLoad({ seed: id, pvPeakW: i % Math.round(1 / (options.pvShare ?? 0.2)) === 0 ? 3000 : 0 }),
    );
  }
  const timer = setInterval(() => {
    const now = Date.now();
    const secondOfDay = Math.floor((now % 86_400_000) / 1000);
    meters.forEach((meter, i) => {
      meter.step(now, loads[i]!.at(secondOfDay));
    });
  }, METER_STEP_MS);
  const servers: ListeningServer[] = [];
  if (options.listenPort !== undefined) {
    const password = new TextEncoder().encode(options.password ?? DEFAULT_LLS_PASSWORD);
    for (const [i, meter] of meters.entries()) {
      const firmware = firmwares.get(meter.id);
      const handler = handlers.get(meter.id);
      const served =
        firmware !== undefined && options.faultNoWatchdogKick === meter.id
          ? neverKicksWatchdog(firmware)
          : firmware;
      const base = meterObjectModel({
        meter,
        ...(served === undefined ? {} : { firmware: served }),
        trueNowMs: () => Date.now(),
      });
      const commanded = handler === undefined ? base : withRollbackCommand(base, handler);
      const model = options.faultCorruptBlock === meter.id ? corruptingBlockOne(commanded) : commanded;
      const hls = {
        suite: 0 as const,
        systemTitle: meterSystemTitle(meter.id),
        encryptionKey: Uint8Array.from(Buffer.from(options.encryptionKeyHex ?? DEFAULT_EK_HEX, "hex")),
        authenticationKey: Uint8Array.from(
          Buffer.from(options.authenticationKeyHex ?? DEFAULT_AK_HEX, "hex"),
        ),
      };
      const credentials = {
        lowLevelPassword: password,
        hls,
        challenge: (n: number) => new Uint8Array(randomBytes(n)),
      };
      const port = options.listenPort === 0 ? 0 : options.listenPort + i;
      servers.push(await listenDlms(port, model, credentials, "0.0.0.0"));
    }
  }
  return {
    meters,
    ports: servers.map((s) => s.port),
    firmwareOf: (meterId) => firmwares.get(meterId) ?? null,
    rollbacksRefused: () => [...handlers.values()].reduce((n, h) => n + h.refused, 0),
    async stop() {
      for (const server of servers) await server.close();
      clearInterval(timer);
      const now = Date.now();
      for (const meter of meters) meter.powerFail(now); // commit-only: billing and clock anchor persisted
    },
    statusLine() {
      const now = Date.now();
      let importWh = 0;
      let exportWh = 0;
      let events = 0;
      let tamper = 0;
      for (const meter of meters) {
        const s = meter.status(now);
        importWh += s.registers.importActiveWh;
        exportWh += s.registers.exportActiveWh;
        events += s.eventSeq;
        tamper += s.tamper.length;
      }
      return `${meters.length} meters  import ${(importWh / 1000).toFixed(3)} kWh  export ${(exportWh / 1000).toFixed(3)} kWh  sealed events ${events}  active tamper ${tamper}`;
    },
  };
}
