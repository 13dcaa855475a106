// shell: the concentrator daemon — real clock, timers, files, MQTT and signals around the core.
import { randomBytes } from "node:crypto";
import { existsSync, mkdirSync, unlinkSync, writeFileSync } from "node:fs";
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
import type { Clock, CommitJournal, MeterReader } from "../core/ports.ts";
import { checkDcuId } from "../core/wire.ts";
import { SimMeterFleet, simMeterIds } from "../sim.ts";
import { FileDcuStore } from "./file-store.ts";
import { openFileJournal } from "./journal.ts";
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

export interface DcuDaemonOptions {
  readonly dcuId: string;
  readonly hesUrl: string;
  readonly dataDir: string;
  readonly simMeters: number;
  readonly pollIntervalMs: number;
  readonly readingIntervalMs: number;
  readonly batchRecordsMax?: number;
  readonly batchAgeMaxMs?: number;
  readonly statusIntervalMs?: number;
  /** "hes": time from ami/<dcu>/time only; "host": also sample the host clock (NTP) as a source. */
  readonly timeSource?: "hes" | "host";
  readonly log?: (event: string, fields?: Record<string, unknown>) => void;
}

export interface DcuDaemon {
  readonly concentrator: Concentrator;
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
  const meterIds = simMeterIds(options.dcuId, options.simMeters);
  const fleet = new SimMeterFleet(meterIds, clock, random.fork("sim"), {
    readingIntervalMs: options.readingIntervalMs,
    anchorMs: SIM_ANCHOR_MS,
  });
  const reader: MeterReader = fleet;

  let link: MqttLink | null = null;
  let fatal: Error | null = null;
  const concentrator = await Concentrator.open(
    {
      dcuId: options.dcuId,
      meters: meterIds.map((meterId) => ({ meterId, port: fleet.portOf(meterId) })),
      pollIntervalMs: options.pollIntervalMs,
      ...(options.batchRecordsMax === undefined ? {} : { batchRecordsMax: options.batchRecordsMax }),
      ...(options.batchAgeMaxMs === undefined ? {} : { batchAgeMaxMs: options.batchAgeMaxMs }),
      ...(options.statusIntervalMs === undefined ? {} : { statusIntervalMs: options.statusIntervalMs }),
    },
    {
      clock,
      random,
      reader,
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
      onFatal: (error) => {
        fatal = error;
        log("fatal", { error: error.message });
        // The journal survives this; systemd (or the crash test) restarts us into a new recovery epoch.
        process.exitCode = 1;
        setImmediate(() => process.exit(1));
      },
    },
  );
  log("started", {
    dcu_id: options.dcuId,
    epoch: concentrator.epoch,
    reset_reason: resetReason,
    meters: meterIds.length,
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
  if (options.timeSource === "host") sampleHost();

  let stopping: Promise<void> | null = null;
  const stop = (): Promise<void> => {
    stopping ??= (async () => {
      clearInterval(timer);
      clearInterval(auditTimer);
      clearInterval(evidenceTimer);
      if (timeTimer !== null) clearInterval(timeTimer);
      await concentrator.close();
      await link?.close();
      await journal.close();
      secureElement.flushAudit();
      writeEvidence();
      if (fatal === null) writeFileSync(marker, `${new Date().toISOString()}\n`);
      log("stopped", { epoch: concentrator.epoch });
    })();
    return stopping;
  };
  return { concentrator, simFleet: fleet, stop };
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
