// shell: the concentrator daemon — real clock, timers, files, MQTT and signals around the core.
import { randomBytes } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, unlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import {
  bundleKey,
  decodeBatch,
  type EvidenceBundle,
  FileSecureElement,
  SeededRandom,
  writeFileAtomic,
} from "../../evidence/index.ts";
import { Concentrator } from "../core/concentrator.ts";
import { RoutingMeterReader } from "../core/cosem-reader.ts";
import { type MbusMeterConfig, MbusMeterSource } from "../core/mbus-source.ts";
import type { Clock, CommitJournal, MeterConfig } from "../core/ports.ts";
import { checkDcuId } from "../core/wire.ts";
import { ConcentratorError } from "../errors.ts";
import { SimMeterFleet, simMeterIds } from "../sim.ts";
import {
  type DlmsMeterAuth,
  DlmsMeterReader,
  dcuSystemTitle,
  type InvocationCounterStore,
  parseDlmsUrl,
} from "./dlms-reader.ts";
import { FileDcuStore } from "./file-store.ts";
import { type FirmwareLink, type MeterEndpoint, startFirmwareLink } from "./firmware-link.ts";
import { openFileJournal } from "./journal.ts";
import { parseMbusUrl, ReconnectingBridgeTransport } from "./mbus-bridge.ts";
import { MqttLink } from "./mqtt-link.ts";

/** How often the shell ticks the core (polls due, back-off expiries, ack deadlines). */
export const DCU_TICK_MS = 100;
/** Period of host-clock samples when --time-source host (the host clock is NTP-disciplined). */
export const HOST_TIME_SAMPLE_MS = 60_000;
/** key_op_audit_cnt is persisted this often (a signature is too hot to fsync each time). */
export const AUDIT_FLUSH_MS = 60_000;
/** Fixed origin of the simulated meters' seq axis, so restarts find them where they would be. */
export const SIM_ANCHOR_MS = Date.UTC(2026, 0, 1);
const CLEAN_SHUTDOWN_MARKER = "clean-shutdown";
/** The evidence packs are also kept on disk (for `amiproof diagnose` and field engineers) this often. */
export const EVIDENCE_FILE_MS = 60_000;
export const EVIDENCE_FILE = "evidence-packs.json";
/** dlms:// URL → the meter id its device ID (0.0.96.1.0.255) named when it first answered. */
export const METER_IDS_FILE = "meters.json";
/** HLS invocation counters reserved per meter (never reused under one key across restarts). */
export const INVOCATION_COUNTERS_FILE = "dlms-invocation-counters.json";
/** An address not identified at the start is tried again this often (it joins polling when it answers). */
export const METER_IDENTIFY_RETRY_MS = 5_000;
/** The virtual meters' defaults (`amiproof meter`): Green Book example keys, never for a deployment. */
export const DEFAULT_METER_LLS_PASSWORD = "12345678";
export const DEFAULT_METER_EK_HEX = "000102030405060708090a0b0c0d0e0f";
export const DEFAULT_METER_AK_HEX = "d0d1d2d3d4d5d6d7d8d9dadbdcdddedf";
/** Firmware images received from the head-end are cached here, under the data directory. */
export const FIRMWARE_IMAGES_DIR = "images";

export interface DcuDaemonOptions {
  readonly dcuId: string;
  readonly hesUrl: string;
  readonly dataDir: string;
  /** In-process simulated meters (0 or absent: none). */
  readonly simMeters?: number;
  readonly pollIntervalMs: number;
  /** Simulated meters: one reading per this period (default 15 s). */
  readonly readingIntervalMs?: number;
  /**
   * Meters to poll: `dlms://HOST:PORT` (DLMS/COSEM over TCP; the id is the meter's device ID) or
   * `mbus://HOST:PORT/PRIMARY|IDENTIFICATION` (M-Bus behind a TCP serial bridge).
   */
  readonly meterUrls?: readonly string[];
  /** How to associate with the DLMS meters: HLS-GMAC (default), LLS password, or none (public client). */
  readonly meterAuth?: "hls" | "lls" | "none";
  /** LLS password (default 12345678, as `amiproof meter`). */
  readonly meterPassword?: string;
  /** HLS global keys, hex (default the Green Book example keys, as `amiproof meter`). */
  readonly meterEncryptionKeyHex?: string;
  readonly meterAuthenticationKeyHex?: string;
  /** Deadline of one DLMS request (default DLMS_READ_TIMEOUT_MS). */
  readonly meterReadTimeoutMs?: number;
  /** DLMS meters doing IO at once (default DLMS_ASSOCIATIONS_ACTIVE_MAX). */
  readonly meterAssociationsMax?: number;
  readonly batchRecordsMax?: number;
  readonly batchAgeMaxMs?: number;
  readonly statusIntervalMs?: number;
  /** "hes": time from ami/<dcu>/time only; "host": also sample the host clock (NTP) as a source. */
  readonly timeSource?: "hes" | "host";
  /**
   * Take firmware-campaign jobs (ami/<dcu>/fw/jobs) for the DLMS meters (default true): image transfer,
   * activation and OTP rollback over their management association (LLS, meterPassword), images cached in
   * <dataDir>/images.
   */
  readonly firmware?: boolean;
  /** How often due firmware jobs are started (default FIRMWARE_TICK_MS). */
  readonly firmwareTickMs?: number;
  /** Firmware sessions open at once (default the core's). */
  readonly firmwareSessionsMax?: number;
  readonly log?: (event: string, fields?: Record<string, unknown>) => void;
}

export interface DcuDaemon {
  readonly concentrator: Concentrator;
  /** The DLMS/COSEM reader (null without meterUrls). */
  readonly dlmsReader: DlmsMeterReader | null;
  /** The M-Bus meters behind TCP serial bridges (null without mbus:// URLs): their decode evidence. */
  readonly mbusSource: MbusMeterSource | null;
  /** dlms:// URLs whose meter has not answered yet (polled once identified). */
  unidentifiedMeterUrls(): string[];
  /** The firmware-campaign link (null without DLMS meters, with `firmware: false`, or until it connects). */
  firmwareLink(): FirmwareLink | null;
  /** The in-process simulated meters (`--sim-meters`): `amiproof up`'s lab endpoint raises events on them. */
  readonly simFleet: SimMeterFleet | null;
  /** Clean shutdown: stop polling, drain commits, save state, leave the marker, disconnect. */
  stop(): Promise<void>;
}

export async function startDcuDaemon(options: DcuDaemonOptions): Promise<DcuDaemon> {
  const log = options.log ?? (() => {});
  checkDcuId(options.dcuId); // before anything touches the disk
  mkdirSync(options.dataDir, { recursive: true, mode: 0o700 });
  const marker = join(options.dataDir, CLEAN_SHUTDOWN_MARKER);
  const store = new FileDcuStore(options.dataDir);
  // seed 003 H2-7 reset_reason: a clean stop leaves a marker; state without it means we were killed.
  const resetReason = existsSync(marker)
    ? "CLEAN_RESTART"
    : store.hasState()
      ? "UNCLEAN_RESTART"
      : "POWER_ON";
  if (existsSync(marker)) unlinkSync(marker);
  const secureElement = FileSecureElement.open(join(options.dataDir, "se"), options.dcuId);
  const journal: CommitJournal & { close(): Promise<void> } = await openFileJournal(
    join(options.dataDir, "journal"),
  );
  // The RTC: monotonic from process start (a host clock step does not move it); the host's NTP-disciplined
  // clock is a time *source* (seed 003 H2-8), applied by step or slew with a time_adjust_event.
  const rtcOriginMs = Date.now() - performance.now();
  const clock: Clock = { nowMs: () => Math.floor(rtcOriginMs + performance.now()) };
  const random = new SeededRandom(randomBytes(6).readUIntBE(0, 6));
  const router = new RoutingMeterReader();
  const meters: MeterConfig[] = [];
  let simFleet: SimMeterFleet | null = null;
  if ((options.simMeters ?? 0) > 0) {
    const simIds = simMeterIds(options.dcuId, options.simMeters ?? 0);
    const fleet = new SimMeterFleet(simIds, clock, random.fork("sim"), {
      readingIntervalMs: options.readingIntervalMs ?? 15_000,
      anchorMs: SIM_ANCHOR_MS,
    });
    for (const meterId of simIds) {
      router.route(meterId, fleet);
      meters.push({ meterId, port: fleet.portOf(meterId) });
    }
    simFleet = fleet;
  }
  const meterUrls = [...new Set(options.meterUrls ?? [])];
  const addresses = meterUrls
    .filter((url) => !url.startsWith("mbus:"))
    .map((url) => ({ url, ...parseDlmsUrl(url) }));
  // M-Bus meters: one bus per TCP serial bridge, reads on a bus serialised by the source.
  const mbusUrls = meterUrls.filter((url) => url.startsWith("mbus:")).map(parseMbusUrl);
  const bridges = new Map<string, ReconnectingBridgeTransport>();
  let mbusSource: MbusMeterSource | null = null;
  if (mbusUrls.length > 0) {
    for (const m of mbusUrls)
      if (!bridges.has(m.busId)) bridges.set(m.busId, new ReconnectingBridgeTransport(m.host, m.port));
    const configs: MbusMeterConfig[] = mbusUrls.map((m) => ({
      meterId: m.meterId,
      busId: m.busId,
      address: m.address,
    }));
    mbusSource = new MbusMeterSource(
      [...bridges].map(([busId, transport]) => ({ busId, transport })),
      configs,
      clock,
    );
    for (const config of mbusSource.meterConfigs()) {
      router.route(config.meterId, mbusSource);
      meters.push(config);
    }
  }
  let dlmsReader: DlmsMeterReader | null = null;
  const unidentified: { url: string; host: string; port: number }[] = [];
  const idsPath = join(options.dataDir, METER_IDS_FILE);
  const knownIds: Record<string, string> = readJsonObject(idsPath);
  // Where each identified DLMS meter serves: the firmware link's meter list.
  const endpoints = new Map<string, { host: string; port: number }>();
  if (addresses.length > 0) {
    dlmsReader = new DlmsMeterReader([], {
      auth: meterAuth(options),
      challenge: (n) => new Uint8Array(randomBytes(n)),
      invocationCounters: new FileInvocationCounterStore(join(options.dataDir, INVOCATION_COUNTERS_FILE)),
      ...(options.meterReadTimeoutMs === undefined ? {} : { readTimeoutMs: options.meterReadTimeoutMs }),
      ...(options.meterAssociationsMax === undefined
        ? {}
        : { associationsActiveMax: options.meterAssociationsMax }),
    });
    // Meter ids come from the meters themselves (device ID), remembered per URL so a restart with a
    // meter down still resumes its cursors under the same id.
    const identified = await Promise.all(
      addresses.map(async (a) => {
        const cached = knownIds[a.url];
        if (cached !== undefined) return cached;
        return dlmsReader!.identify(a.host, a.port).catch((error: Error) => {
          log("meter_unidentified", { url: a.url, error: error.message });
          return null;
        });
      }),
    );
    addresses.forEach((a, i) => {
      const meterId = identified[i];
      if (meterId === null || meterId === undefined) unidentified.push(a);
      else adopt(a, meterId, false);
    });
  }
  function adopt(a: { url: string; host: string; port: number }, meterId: string, late: boolean): void {
    if (meters.some((m) => m.meterId === meterId)) {
      log("meter_duplicate", { url: a.url, meter_id: meterId });
      return;
    }
    if (knownIds[a.url] !== meterId) {
      knownIds[a.url] = meterId;
      writeFileAtomic(idsPath, `${JSON.stringify(knownIds, null, 1)}\n`, 0o600);
    }
    dlmsReader!.addTarget({ meterId, host: a.host, port: a.port });
    endpoints.set(meterId, { host: a.host, port: a.port });
    router.route(meterId, dlmsReader!);
    const config = { meterId, port: dlmsReader!.portOf(meterId) };
    meters.push(config);
    if (late) {
      concentrator.addMeter(config);
      log("meter_identified", { url: a.url, meter_id: meterId });
    }
  }
  if (meters.length === 0 && unidentified.length === 0)
    throw new ConcentratorError(
      "BAD_CONFIG",
      "no meters: give meterUrls (dlms://HOST:PORT, mbus://HOST:PORT/ADDRESS) or simMeters",
    );

  let link: MqttLink | null = null;
  let fatal: Error | null = null;
  const concentrator = await Concentrator.open(
    {
      dcuId: options.dcuId,
      meters: [...meters],
      pollIntervalMs: options.pollIntervalMs,
      ...(options.batchRecordsMax === undefined ? {} : { batchRecordsMax: options.batchRecordsMax }),
      ...(options.batchAgeMaxMs === undefined ? {} : { batchAgeMaxMs: options.batchAgeMaxMs }),
      ...(options.statusIntervalMs === undefined ? {} : { statusIntervalMs: options.statusIntervalMs }),
    },
    {
      clock,
      random,
      reader: router,
      journal,
      store,
      secureElement,
      transport: {
        publish: (topic, payload, publishOptions) =>
          link === null
            ? Promise.reject(new Error("link not started"))
            : link.publish(topic, payload, publishOptions),
      },
      resetReason,
      interfaceEvidence: () => ({
        ...(dlmsReader === null
          ? {}
          : {
              dlms: {
                associations_opened: dlmsReader.stats.associations,
                association_failures: dlmsReader.stats.failures,
                meters_unidentified: unidentified.map((a) => a.url),
              },
            }),
        ...(mbusSource === null ? {} : { mbus: mbusSource.evidence() }),
      }),
      onFatal: (error) => {
        fatal = error;
        log("fatal", { error: error.message });
        // The journal survives this; systemd (or the crash test) restarts us into a new recovery epoch.
        process.exitCode = 1;
        setImmediate(() => process.exit(1));
      },
    },
  );
  // M-Bus has no capture counter: its seq continues from the durable cursors (see core/mbus-source.ts).
  if (mbusSource !== null) {
    const cursors: Record<string, number> = {};
    for (const config of mbusSource.meterConfigs())
      cursors[config.meterId] = concentrator.meterCursor(config.meterId) ?? 0;
    mbusSource.resume(cursors);
  }
  log("started", {
    dcu_id: options.dcuId,
    epoch: concentrator.epoch,
    reset_reason: resetReason,
    meters: meters.length,
    meters_unidentified: unidentified.length,
    backlog_records: concentrator.backlogRecords(),
  });

  link = new MqttLink(options.hesUrl, `amiproof-dcu-${options.dcuId}`, concentrator.subscriptions(), {
    onUp: () => {
      log("link_up");
      concentrator.onLinkUp();
    },
    onDown: (reason) => {
      const delay = concentrator.onLinkDown();
      log("link_down", { reason, retry_in_ms: delay });
      return delay;
    },
    onMessage: (topic, payload) => concentrator.onMessage(topic, payload),
  });
  link.start();
  const timer = setInterval(() => concentrator.tick(), DCU_TICK_MS);
  const auditTimer = setInterval(() => secureElement.flushAudit(), AUDIT_FLUSH_MS);
  const writeEvidence = () =>
    writeFileAtomic(
      join(options.dataDir, EVIDENCE_FILE),
      `${JSON.stringify(concentrator.packs(), null, 1)}\n`,
      0o600,
    );
  const evidenceTimer = setInterval(writeEvidence, EVIDENCE_FILE_MS);
  const sampleHost = () => concentrator.onTimeSample(Date.now(), "NTP");
  const timeTimer = options.timeSource === "host" ? setInterval(sampleHost, HOST_TIME_SAMPLE_MS) : null;
  let identifying = false;
  const identifyTimer = setInterval(() => {
    if (identifying || unidentified.length === 0 || dlmsReader === null) return;
    identifying = true;
    void Promise.all(
      unidentified.map(async (a) => {
        const meterId = await dlmsReader!.identify(a.host, a.port).catch(() => null);
        if (meterId === null || stopping !== null) return;
        unidentified.splice(unidentified.indexOf(a), 1);
        adopt(a, meterId, true);
      }),
    ).finally(() => {
      identifying = false;
    });
  }, METER_IDENTIFY_RETRY_MS);
  if (options.timeSource === "host") sampleHost();

  // Firmware campaigns: a second MQTT session (jobs in, progress out) beside the batch link. It connects
  // in the background — a broker that is down at start holds up neither polling nor start-up.
  let firmwareLink: FirmwareLink | null = null;
  if (addresses.length > 0 && options.firmware !== false) {
    const password = new TextEncoder().encode(options.meterPassword ?? DEFAULT_METER_LLS_PASSWORD);
    startFirmwareLink({
      dcuId: options.dcuId,
      mqttUrl: options.hesUrl,
      imagesDir: join(options.dataDir, FIRMWARE_IMAGES_DIR),
      endpoint: (meterId): MeterEndpoint | undefined => {
        const at = endpoints.get(meterId);
        return at === undefined ? undefined : { ...at, password };
      },
      ...(options.firmwareTickMs === undefined ? {} : { tickMs: options.firmwareTickMs }),
      ...(options.firmwareSessionsMax === undefined ? {} : { concurrency: options.firmwareSessionsMax }),
      onError: (error) => log("firmware_error", { error: error.message }),
    }).then(
      (started) => {
        if (stopping !== null) {
          void started.close().catch(() => {});
          return;
        }
        firmwareLink = started;
        log("firmware_link_up", { images_dir: join(options.dataDir, FIRMWARE_IMAGES_DIR) });
      },
      (error: Error) => log("firmware_link_failed", { error: error.message }),
    );
  }

  let stopping: Promise<void> | null = null;
  const stop = (): Promise<void> => {
    stopping ??= (async () => {
      clearInterval(timer);
      clearInterval(auditTimer);
      clearInterval(evidenceTimer);
      if (timeTimer !== null) clearInterval(timeTimer);
      clearInterval(identifyTimer);
      // Sessions in flight finish and report before the link goes; queued jobs stay with the head-end.
      await (firmwareLink as FirmwareLink | null)?.close();
      await concentrator.close();
      await dlmsReader?.close();
      for (const bridge of bridges.values()) await bridge.close();
      await link?.close();
      await journal.close();
      secureElement.flushAudit();
      writeEvidence();
      if (fatal === null) writeFileSync(marker, `${new Date().toISOString()}\n`);
      log("stopped", { epoch: concentrator.epoch });
    })();
    return stopping;
  };
  return {
    concentrator,
    simFleet,
    dlmsReader,
    mbusSource,
    unidentifiedMeterUrls: () => unidentified.map((a) => a.url),
    firmwareLink: () => firmwareLink,
    stop,
  };
}

function meterAuth(options: DcuDaemonOptions): DlmsMeterAuth {
  const kind = options.meterAuth ?? "hls";
  if (kind === "none") return { kind };
  if (kind === "lls")
    return { kind, password: new TextEncoder().encode(options.meterPassword ?? DEFAULT_METER_LLS_PASSWORD) };
  if (kind !== "hls")
    throw new ConcentratorError("BAD_CONFIG", `meter auth must be hls, lls or none, got ${kind}`);
  return {
    kind,
    encryptionKey: keyFromHex(options.meterEncryptionKeyHex ?? DEFAULT_METER_EK_HEX, "encryption key"),
    authenticationKey: keyFromHex(
      options.meterAuthenticationKeyHex ?? DEFAULT_METER_AK_HEX,
      "authentication key",
    ),
    systemTitle: dcuSystemTitle(options.dcuId),
  };
}

function keyFromHex(hex: string, what: string): Uint8Array {
  if (!/^[0-9a-fA-F]{32}$/.test(hex))
    throw new ConcentratorError("BAD_CONFIG", `${what} must be 32 hex digits (AES-128)`);
  return Uint8Array.from(Buffer.from(hex, "hex"));
}

function readJsonObject(path: string): Record<string, string> {
  if (!existsSync(path)) return {};
  try {
    const parsed: unknown = JSON.parse(readFileSync(path, "utf8"));
    if (parsed === null || typeof parsed !== "object" || Array.isArray(parsed))
      throw new Error("not an object");
    return Object.fromEntries(
      Object.entries(parsed).filter((e): e is [string, string] => typeof e[1] === "string"),
    );
  } catch (error) {
    throw new ConcentratorError("STORE_CORRUPT", `${path}: ${(error as Error).message}`);
  }
}

/** HLS invocation counter reservations in one small JSON file, written atomically before use. */
export class FileInvocationCounterStore implements InvocationCounterStore {
  private readonly marks = new Map<string, number>();

  constructor(private readonly path: string) {
    if (!existsSync(path)) return;
    try {
      const parsed = JSON.parse(readFileSync(path, "utf8")) as Record<string, unknown>;
      for (const [meterId, value] of Object.entries(parsed))
        if (Number.isSafeInteger(value)) this.marks.set(meterId, value as number);
    } catch (error) {
      throw new ConcentratorError("STORE_CORRUPT", `${path}: ${(error as Error).message}`);
    }
  }

  reserved(meterId: string): number {
    return this.marks.get(meterId) ?? 0;
  }

  reserve(meterId: string, through: number): void {
    this.marks.set(meterId, through);
    writeFileAtomic(this.path, `${JSON.stringify(Object.fromEntries(this.marks))}\n`, 0o600);
  }
}

/**
 * The concentrator's unacknowledged batch chain, read offline from DIR (no daemon running), as an
 * evidence bundle with its batch_sign key: what `amiproof dcu --export-bundle` writes.
 */
export async function exportOutboxBundle(dcuId: string, dataDir: string): Promise<EvidenceBundle> {
  checkDcuId(dcuId);
  const sePath = join(dataDir, "se");
  if (!existsSync(join(sePath, "keys.json"))) throw new Error(`${sePath} holds no secure element`);
  const publicKey = FileSecureElement.open(sePath, dcuId).publicKey("batch_sign");
  const store = new FileDcuStore(dataDir);
  const batches = (await store.loadOutbox())
    .map(decodeBatch)
    .sort((a, b) => a.header.batchId - b.header.batchId);
  const key = bundleKey(dcuId, "batch_sign", publicKey);
  return { keys: [key], meterLogs: [], batchChains: [{ dcuId, keyId: key.keyId, batches }] };
}
