// shell: `amiproof up` — the whole system in one process on embedded defaults: the head-end (SQLite,
// embedded aedes broker, API), M concentrators and N virtual meters, wired the way real devices are:
// concentrators publish signed batches over MQTT, the head-end verifies and acks. Only keys are handed
// over in-process, as a utility's asset register would.
import { createHash } from "node:crypto";
import { copyFileSync, existsSync, mkdirSync, readFileSync, renameSync, rmSync } from "node:fs";
import { join } from "node:path";
import type { FastifyInstance } from "fastify";
import {
  type DcuDaemon,
  SIM_ANCHOR_MS,
  SimMeterFleet,
  simMeterIds,
  startDcuDaemon,
} from "../concentrator/index.ts";
import { FileSecureElement, SeededRandom } from "../evidence/index.ts";
import {
  type Authorize,
  deriveMeterOtpKey,
  FIRMWARE_CA_FILE,
  type HeadendHandle,
  OTP_MASTER_KEY_FILE,
  startHeadend,
} from "../headend/index.ts";
import {
  type FirmwareProvisioning,
  loadFirmwareProvisioning,
  PKI_CA_FILE,
} from "../meter/runtime/firmware-provision.ts";
import { type RunningFleet, startFleet } from "../meter/runtime/fleet.ts";
import { writeTestPki } from "./commands/pki.ts";

export const UP_METERS_DEFAULT = 20;
export const UP_DCUS_DEFAULT = 2;
export const UP_METERS_MAX = 100_000;
export const UP_DCUS_MAX = 1_000;
/** A demo fleet: a reading every 15 s per meter (real meters: 15 min) so charts fill within minutes. */
export const UP_READING_INTERVAL_MS = 15_000;
export const UP_POLL_INTERVAL_MS = 1_000;
/** How long an injected magnet is held to a meter. */
export const UP_TAMPER_HOLD_MS = 10_000;

export interface UpOptions {
  readonly meters: number;
  readonly dcus: number;
  readonly httpPort: number;
  readonly httpHost?: string;
  readonly dataDir: string;
  /** Embedded broker port; a free one when taken (0: any free port). */
  readonly mqttPort: number;
  /** An external broker (e.g. Mosquitto) instead of the embedded one. */
  readonly mqttUrl?: string;
  /** sqlite:PATH (default <data>/headend/headend.db) or postgres://… */
  readonly dbUrl?: string;
  /** PostgreSQL schema (tests: a fresh one per run). */
  readonly dbSchema?: string;
  /** Concentrator ids are <prefix>-001…; distinct prefixes keep systems apart on a shared broker. */
  readonly dcuPrefix?: string;
  /**
   * "dlms": virtual meters (src/meter) serving DLMS/COSEM on local TCP ports, polled by the concentrators
   * over HLS-GMAC, as in the field (default up to UP_DLMS_METERS_MAX meters). "sim": meters simulated
   * inside each concentrator (no DLMS; for fleets beyond a port per meter).
   */
  readonly meterSource?: MeterSource;
  readonly readingIntervalMs?: number;
  readonly pollIntervalMs?: number;
  readonly batchAgeMaxMs?: number;
  readonly statusIntervalMs?: number;
  readonly logLevel?: string;
  /** How often the concentrators start due firmware jobs (default the link's 1 s). */
  readonly firmwareTickMs?: number;
  /** Concentrator log lines (`amiproof dcu` format), e.g. to a file; default none. */
  readonly dcuLog?: (dcuId: string, event: string, fields?: Record<string, unknown>) => void;
}

export interface UpMeter {
  readonly meterId: string;
  readonly dcuId: string;
}

export interface UpHandle {
  readonly meterSource: MeterSource;
  /** The requested HTTP port was in use: the API listens on a free one (apiUrl). */
  readonly httpPortTaken: boolean;
  readonly headend: HeadendHandle;
  readonly apiUrl: string;
  readonly mqttUrl: string;
  readonly tokensDir: string;
  /** The test PKI (DATA/pki): its CA signs the firmware the meters and the head-end accept. */
  readonly pkiDir: string;
  /** The DLMS meters' firmware provisioning (trust anchor, golden images); null with simulated meters. */
  readonly firmware: FirmwareProvisioning | null;
  /** The virtual DLMS meters (null with simulated meters). */
  readonly fleet: RunningFleet | null;
  readonly meters: readonly UpMeter[];
  readonly dcus: readonly { readonly dcuId: string; readonly daemon: DcuDaemon }[];
  /** Injects a tamper on a virtual meter (the lab/admin endpoint uses it). */
  injectTamper(meterId: string, kind: TamperKind): { readonly meterId: string; readonly kind: TamperKind };
  /** One status line: meters online, readings/s, stored, alerts, gaps, rejected batches. */
  statusLine(): Promise<string>;
  /** Clean stop: concentrators drain and persist, the head-end commits and acks its in-flight batch. */
  stop(): Promise<void>;
}

export type MeterSource = "dlms" | "sim";
/** One TCP port per DLMS meter: beyond this, `up` simulates meters inside the concentrators. */
export const UP_DLMS_METERS_MAX = 1_000;

export function defaultMeterSource(meters: number): MeterSource {
  return meters <= UP_DLMS_METERS_MAX ? "dlms" : "sim";
}

export const TAMPER_KINDS = ["magnet", "cover_open"] as const;
export type TamperKind = (typeof TAMPER_KINDS)[number];

export class UpError extends Error {
  constructor(
    readonly code: "NOT_FOUND" | "BAD_REQUEST",
    message: string,
  ) {
    super(message);
    this.name = "UpError";
  }
}

export function dcuIdAt(index: number, prefix = "dcu"): string {
  return `${prefix}-${String(index + 1).padStart(3, "0")}`;
}

/** Meters per concentrator: as even as possible, the first ones one more. */
export function metersPerDcu(meters: number, dcus: number): number[] {
  return Array.from({ length: dcus }, (_, i) => Math.floor(meters / dcus) + (i < meters % dcus ? 1 : 0));
}

export async function startUp(options: UpOptions): Promise<UpHandle> {
  if (!Number.isInteger(options.meters) || options.meters < 1 || options.meters > UP_METERS_MAX)
    throw new UpError("BAD_REQUEST", `meters must be 1..${UP_METERS_MAX}, got ${options.meters}`);
  if (!Number.isInteger(options.dcus) || options.dcus < 1 || options.dcus > UP_DCUS_MAX)
    throw new UpError("BAD_REQUEST", `dcus must be 1..${UP_DCUS_MAX}, got ${options.dcus}`);
  if (options.dcus > options.meters)
    throw new UpError("BAD_REQUEST", `more concentrators (${options.dcus}) than meters (${options.meters})`);
  mkdirSync(options.dataDir, { recursive: true, mode: 0o700 });
  const readingIntervalMs = options.readingIntervalMs ?? UP_READING_INTERVAL_MS;

  const meterSource = options.meterSource ?? defaultMeterSource(options.meters);
  if (meterSource === "dlms" && options.meters > UP_DLMS_METERS_MAX)
    throw new UpError("BAD_REQUEST", `DLMS meters take a TCP port each: at most ${UP_DLMS_METERS_MAX}`);

  const counts = metersPerDcu(options.meters, options.dcus);
  const dcuIds = counts.map((_, i) => dcuIdAt(i, options.dcuPrefix));
  const headendDir = join(options.dataDir, "headend");
  // Firmware campaigns out of the box (DLMS meters): a test PKI made on the first start (DATA/pki), its
  // CA trusted by the head-end's repository and provisioned in the meters with golden images it signed.
  const pkiDir = join(options.dataDir, "pki");
  let firmware: FirmwareProvisioning | null = null;
  if (meterSource === "dlms") {
    await ensureTestPki(pkiDir);
    firmware = loadFirmwareProvisioning(pkiDir);
    mkdirSync(headendDir, { recursive: true, mode: 0o700 });
    if (!existsSync(join(headendDir, FIRMWARE_CA_FILE)))
      copyFileSync(join(pkiDir, PKI_CA_FILE), join(headendDir, FIRMWARE_CA_FILE));
  }

  let injectTamper: UpHandle["injectTamper"] = () => {
    throw new UpError("NOT_FOUND", "not started");
  };
  // The head-end first: it creates the OTP master key the meters' rollback keys derive from.
  let headend: HeadendHandle;
  let httpPortTaken = false;
  const start = (httpPort: number) =>
    startHeadend({
      dataDir: headendDir,
      httpPort,
      ...(options.httpHost === undefined ? {} : { httpHost: options.httpHost }),
      brokerPort: options.mqttPort,
      ...(options.mqttUrl === undefined ? {} : { mqttUrl: options.mqttUrl }),
      ...(options.dbUrl === undefined ? {} : { dbUrl: options.dbUrl }),
      ...(options.dbSchema === undefined ? {} : { dbSchema: options.dbSchema }),
      clientIdPrefix: `amiproof-up-${createHash("sha256").update(options.dataDir).digest("hex").slice(0, 8)}`,
      logLevel: options.logLevel ?? "warn",
      extraRoutes: (app, authorize) => labRoutes(app, authorize, (id, kind) => injectTamper(id, kind)),
    });
  try {
    headend = await start(options.httpPort);
  } catch (error) {
    // A taken HTTP port is not worth failing a demo for: take a free one and say so in the banner.
    if ((error as NodeJS.ErrnoException).code !== "EADDRINUSE" || options.httpPort === 0) throw error;
    httpPortTaken = true;
    headend = await start(0);
  }
  // DLMS: real virtual meters (metrology, sealed log, tamper rules, NVM on disk) served over TCP; their
  // load profile captures a reading every readingIntervalMs (a demo pace; the field's is 15 min). Each is
  // provisioned at the "factory" with its rollback OTP key, derived from the head-end's master key.
  let fleet: RunningFleet | null = null;
  try {
    if (firmware !== null) {
      const master = new Uint8Array(
        Buffer.from(readFileSync(join(headendDir, OTP_MASTER_KEY_FILE), "utf8").trim(), "hex"),
      );
      fleet = await startFleet({
        baseId: `${options.dcuPrefix ?? "MTR"}-MTR`,
        count: options.meters,
        listenPort: 0,
        dataDir: join(options.dataDir, "meters"),
        profilePeriodMs: readingIntervalMs,
        firmware,
        rollbackKey: (meterId) => deriveMeterOtpKey(master, meterId),
      });
    }
  } catch (error) {
    await headend.close();
    throw error;
  }
  let next = 0;
  const plan = counts.map((count, i) => {
    const dcuId = dcuIds[i]!;
    const first = next;
    next += count;
    return {
      dcuId,
      dataDir: join(options.dataDir, dcuId),
      meterIds: fleet === null ? simMeterIds(dcuId, count) : fleet.meters.slice(first, next).map((m) => m.id),
      meterUrls:
        fleet === null ? [] : fleet.ports.slice(first, next).map((port) => `dlms://127.0.0.1:${port}`),
    };
  });
  const meters: UpMeter[] = plan.flatMap((p) => p.meterIds.map((meterId) => ({ meterId, dcuId: p.dcuId })));
  const meterIndex = new Map(meters.map((m) => [m.meterId, m]));
  const fleetMeters = new Map((fleet?.meters ?? []).map((m) => [m.id, m]));
  const dcus: { dcuId: string; daemon: DcuDaemon }[] = [];

  try {
    // The asset register: each concentrator's batch_sign key and each meter's event_seal key.
    const nowMs = Date.now();
    for (const p of plan) {
      mkdirSync(p.dataDir, { recursive: true, mode: 0o700 });
      const publicKey = FileSecureElement.open(join(p.dataDir, "se"), p.dcuId).publicKey("batch_sign");
      await headend.registry.registerConcentrator({ dcuId: p.dcuId, batchSignPublicKey: publicKey }, nowMs);
      headend.ingest.forgetChain(p.dcuId);
      // Simulated meters' keys derive from their ids, as the daemon's fleet does.
      const keys =
        fleet === null
          ? new SimMeterFleet(p.meterIds, { nowMs: () => SIM_ANCHOR_MS }, new SeededRandom(1), {
              readingIntervalMs,
              anchorMs: SIM_ANCHOR_MS,
            })
          : null;
      await headend.registry.registerMeters(
        p.meterIds.map((meterId) => ({
          meterId,
          eventSealPublicKey: keys?.eventPublicKey(meterId) ?? fleetMeters.get(meterId)!.eventPublicKey,
          dcuId: p.dcuId,
          model: fleet === null ? "AMP-SIM-1" : "AMP-VM-1",
        })),
        nowMs,
      );
    }
    for (const p of plan) {
      const daemon = await startDcuDaemon({
        dcuId: p.dcuId,
        hesUrl: headend.mqttUrl,
        dataDir: p.dataDir,
        ...(fleet === null
          ? { simMeters: p.meterIds.length, readingIntervalMs }
          : { meterUrls: p.meterUrls }),
        pollIntervalMs: options.pollIntervalMs ?? UP_POLL_INTERVAL_MS,
        ...(options.firmwareTickMs === undefined ? {} : { firmwareTickMs: options.firmwareTickMs }),
        ...(options.batchAgeMaxMs === undefined ? {} : { batchAgeMaxMs: options.batchAgeMaxMs }),
        ...(options.statusIntervalMs === undefined ? {} : { statusIntervalMs: options.statusIntervalMs }),
        ...(options.dcuLog === undefined
          ? {}
          : {
              log: (event: string, fields?: Record<string, unknown>) =>
                options.dcuLog!(p.dcuId, event, fields),
            }),
      });
      dcus.push({ dcuId: p.dcuId, daemon });
    }
  } catch (error) {
    for (const d of dcus) await d.daemon.stop().catch(() => {});
    await headend.close();
    await fleet?.stop();
    throw error;
  }

  injectTamper = (meterId, kind) => {
    const meter = meterIndex.get(meterId);
    if (meter === undefined) throw new UpError("NOT_FOUND", `no virtual meter ${meterId}`);
    const real = fleetMeters.get(meterId);
    if (real !== undefined) {
      // A magnet held to the meter (field beyond 50 mT with the CT's phase anomaly), or its cover opened:
      // the meter's own tamper rules, time gates included, decide and seal the event.
      const now = Date.now();
      if (kind === "magnet")
        real.injectSensors({ fieldMilliTesla: 80, pfAnomaly: true }, now + UP_TAMPER_HOLD_MS);
      else real.coverEdge(now, true); // the cover switch's interrupt; debounced by the meter
      return { meterId, kind };
    }
    const dcu = dcus.find((d) => d.dcuId === meter.dcuId)!;
    if (dcu.daemon.simFleet === null) throw new UpError("NOT_FOUND", `${meterId} is not a simulated meter`);
    dcu.daemon.simFleet.raiseEvent(
      meterId,
      kind === "magnet" ? "MAG_TAMPER" : "COVER_OPEN",
      "CRITICAL",
      kind === "magnet" ? { field_mt: 80, pf_anomaly: 1, hold_ms: UP_TAMPER_HOLD_MS } : { cover: 1 },
    );
    return { meterId, kind };
  };

  let stopping: Promise<void> | null = null;
  return {
    meterSource,
    httpPortTaken,
    headend,
    apiUrl: headend.apiUrl,
    mqttUrl: headend.mqttUrl,
    tokensDir: join(headendDir, "tokens"),
    pkiDir,
    firmware,
    fleet,
    meters,
    dcus,
    injectTamper: (meterId, kind) => injectTamper(meterId, kind),
    async statusLine() {
      const counts = await headend.store.counts();
      const m = headend.metrics;
      const sum = (o: Readonly<Record<string, number>>) => Object.values(o).reduce((a, b) => a + b, 0);
      return (
        `meters online ${counts.metersOnline}/${meters.length}  ` +
        `readings/s ${m.readingsPerSecond(Date.now()).toFixed(1)}  stored ${counts.readingsStoredTotal}  ` +
        `alerts ${sum(counts.alertsTotal)}  gaps ${sum(counts.gapsTotal)}  ` +
        `rejected batches ${sum(counts.batchesRejectedTotal)}`
      );
    },
    stop() {
      stopping ??= (async () => {
        // Concentrators first (polling stops, commits drain, unacked batches stay in their outboxes for the
        // next start), then the head-end (the batch in its commit stage is committed and acked).
        for (const d of dcus) await d.daemon.stop();
        await headend.close();
        await fleet?.stop();
      })();
      return stopping;
    },
  };
}

/** The test PKI `amiproof pki init` writes, made once: built aside and renamed into place whole. */
async function ensureTestPki(dir: string): Promise<void> {
  if (existsSync(join(dir, PKI_CA_FILE))) return;
  const temp = `${dir}.tmp-${process.pid}`;
  rmSync(temp, { recursive: true, force: true });
  await writeTestPki(temp);
  try {
    renameSync(temp, dir);
  } catch (error) {
    rmSync(temp, { recursive: true, force: true });
    // Another start made it meanwhile: theirs is kept. Anything else standing there is not ours to replace.
    if (existsSync(join(dir, PKI_CA_FILE))) return;
    throw new UpError(
      "BAD_REQUEST",
      `${dir} exists without ${PKI_CA_FILE} (${(error as Error).message}): remove it, or run amiproof pki init there`,
    );
  }
}

/** `POST /api/lab/meters/:id/tamper` (admin): the lab's hand on a virtual meter, for demos and browser tests. */
function labRoutes(
  app: FastifyInstance,
  authorize: Authorize,
  inject: (meterId: string, kind: TamperKind) => { meterId: string; kind: TamperKind },
): void {
  app.post("/api/lab/meters/:id/tamper", async (request, reply) => {
    await authorize(request, "admin");
    const { id } = request.params as { id: string };
    const body = (request.body ?? {}) as { kind?: unknown };
    const kind = body.kind ?? "magnet";
    if (typeof kind !== "string" || !(TAMPER_KINDS as readonly string[]).includes(kind)) {
      return reply
        .status(400)
        .send({ error: "BAD_REQUEST", message: `kind must be one of ${TAMPER_KINDS.join(", ")}` });
    }
    try {
      const done = inject(id, kind as TamperKind);
      reply.status(202);
      return { meter_id: done.meterId, kind: done.kind, injected: true };
    } catch (error) {
      if (error instanceof UpError)
        return reply
          .status(error.code === "NOT_FOUND" ? 404 : 400)
          .send({ error: error.code, message: error.message });
      throw error;
    }
  });
}
