// shell: the head-end process — stores, MQTT connections (or the embedded broker), the HTTP API, token
// files, timers and the wall clock. Everything it decides is in ../core; this file wires real IO to it.
import { randomBytes } from "node:crypto";
import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { FastifyInstance, FastifyRequest } from "fastify";
import { pino } from "pino";
import { encodeTimeMessage, parseUplinkTopic, timeTopic, writeFileAtomic } from "../../evidence/index.ts";
import { AlertHub, AlertLane, type AlertOutcome } from "../core/alerts.ts";
import { type Principal, type Role, requireRole, TokenAuth } from "../core/auth.ts";
import { BatchIngest, type BatchVerifier, type IngestOutcome } from "../core/ingest.ts";
import { HeadendMetrics } from "../core/metrics.ts";
import {
  type AssetRegister,
  decodeAssetRegister,
  encodeAssetRegister,
  KeyRegistry,
  type RegistryPersistence,
} from "../core/registry.ts";
import { HeadendError, type HeadendLog } from "../errors.ts";
import { defaultStoreUrl, type HeadendStore, openStore, PAGE_ROWS_MAX } from "../store/index.ts";
import { buildApi } from "./api.ts";
import { DEFAULT_MQTT_PORT, type EmbeddedBroker, startEmbeddedBroker } from "./broker.ts";
import { CampaignService } from "./campaign-routes.ts";
import { HeadendMqtt } from "./mqtt.ts";
import { VerifierPool } from "./verifier-pool.ts";

/** How often aggregation windows are checked. */
export const ALERT_TICK_MS = 1_000;
/** A meter whose newest reading is older than this is shown offline (amiproof_meters_online). */
export const METER_OFFLINE_AFTER_MS = 3 * 3_600_000;
export const ONLINE_SWEEP_MS = 60_000;
/** seed 003 H2-8: the head-end clock offered to concentrators as a time source, this often. */
export const TIME_BROADCAST_MS = 60_000;
/** Meters whose seq cursor is loaded from the store at start (gap attribution across a restart). */
export const PRIME_METERS_MAX = 2_000_000;

export const TOKEN_ROLES: readonly Role[] = ["admin", "operator", "viewer"];

export interface HeadendOptions {
  /** sqlite:PATH or postgres://…; default sqlite:<dataDir>/headend.db. */
  readonly dbUrl?: string;
  /** Schema for postgres:// URLs (tests: a fresh one per run). */
  readonly dbSchema?: string;
  /** An external broker; absent: an embedded aedes broker. */
  readonly mqttUrl?: string;
  readonly brokerPort?: number;
  readonly brokerHost?: string;
  /** 0: a free port. */
  readonly httpPort: number;
  readonly httpHost?: string;
  readonly dataDir: string;
  /** An asset register file to load at start (keys of concentrators and meters). */
  readonly assetRegisterFile?: string;
  /** MQTT client ids are `<prefix>-ingest` / `<prefix>-alerts` (persistent sessions). */
  readonly clientIdPrefix?: string;
  /** pino level, or "silent". */
  readonly logLevel?: string;
  readonly verifier?: BatchVerifier;
  /** Verification worker threads beside the store writer; 0: verify in the writer's thread. */
  readonly verifyWorkers?: number;
  readonly onIngestOutcome?: (outcome: IngestOutcome) => void;
  readonly onAlertOutcome?: (outcome: AlertOutcome) => void;
  /**
   * Routes of an embedding process (`amiproof up`'s lab endpoints), added before the server listens.
   * `authorize` checks a request's Bearer token against a role; POSTs under /api/ are audited as usual.
   */
  readonly extraRoutes?: (app: FastifyInstance, authorize: Authorize) => void | Promise<void>;
}

export type Authorize = (request: FastifyRequest, role: Role) => Promise<Principal>;

export interface HeadendHandle {
  readonly apiUrl: string;
  readonly mqttUrl: string;
  readonly broker: EmbeddedBroker | null;
  readonly tokenFiles: Readonly<Record<Role, string>>;
  /** The tokens, when this start created or read them (tests, `amiproof up`). */
  readonly tokens: Readonly<Record<Role, string>>;
  readonly store: HeadendStore;
  readonly ingest: BatchIngest;
  readonly lane: AlertLane;
  readonly registry: KeyRegistry;
  readonly metrics: HeadendMetrics;
  readonly hub: AlertHub;
  readonly api: FastifyInstance;
  readonly log: HeadendLog;
  close(): Promise<void>;
}

const VERSION = "0.1.0";

export async function startHeadend(options: HeadendOptions): Promise<HeadendHandle> {
  const nowMs = () => Date.now();
  mkdirSync(options.dataDir, { recursive: true, mode: 0o700 });
  const log = pino({ level: options.logLevel ?? "info", base: { role: "headend" } });
  const dbUrl = options.dbUrl ?? defaultStoreUrl(options.dataDir);
  const storeOptions = {
    nowMs: nowMs(),
    ...(options.dbSchema === undefined ? {} : { schema: options.dbSchema }),
  };
  const cleanups: (() => Promise<void>)[] = [];
  const closeAll = async () => {
    for (const cleanup of cleanups.reverse()) await cleanup().catch(() => {});
  };
  try {
    // Three connections: the batch writer's, the alert lane's own (issue 7: a long batch transaction never
    // delays an alert), and the API's reads.
    const store = await openStore(dbUrl, storeOptions);
    cleanups.push(() => store.close());
    const alertStore = await openStore(dbUrl, storeOptions);
    cleanups.push(() => alertStore.close());
    const apiStore = await openStore(dbUrl, storeOptions);
    cleanups.push(() => apiStore.close());

    const registry = new KeyRegistry(store, filePersistence(join(options.dataDir, "asset-register.json")));
    if (options.assetRegisterFile !== undefined) {
      const text = readFileSync(options.assetRegisterFile, "utf8");
      await registry.load(decodeAssetRegister(text), nowMs());
    }
    // The lane and the API read meter keys from the same registry object; concentrator keys from the store.
    const auth = new TokenAuth(apiStore);
    const tokenDir = join(options.dataDir, "tokens");
    const { files: tokenFiles, tokens } = await ensureTokens(auth, tokenDir, nowMs());

    const metrics = new HeadendMetrics();
    const hub = new AlertHub();
    const lane = new AlertLane({
      store: alertStore,
      registry,
      metrics,
      log,
      hub,
      nowMs,
      ...(options.onAlertOutcome === undefined ? {} : { onOutcome: options.onAlertOutcome }),
    });

    let verifier = options.verifier;
    if (verifier === undefined && (options.verifyWorkers ?? 0) > 0) {
      const pool = new VerifierPool(options.verifyWorkers);
      cleanups.push(() => pool.close());
      verifier = pool.verify;
    }

    let broker: EmbeddedBroker | null = null;
    let mqttUrl = options.mqttUrl;
    if (mqttUrl === undefined) {
      broker = await startEmbeddedBroker(
        options.brokerPort ?? DEFAULT_MQTT_PORT,
        options.brokerHost ?? "127.0.0.1",
      );
      const started = broker;
      cleanups.push(() => started.close());
      mqttUrl = broker.url;
    }
    const prefix = options.clientIdPrefix ?? "amiproof-headend";
    let ingestLink: HeadendMqtt | null = null;
    const ingest = new BatchIngest({
      store,
      registry,
      metrics,
      log,
      nowMs,
      publish: async (topic, payload) => {
        if (ingestLink === null) throw new HeadendError("CLOSED", "MQTT link not up", "ack");
        await ingestLink.publish(topic, payload);
      },
      onRejected: (r) => lane.onBatchRejected(r),
      ...(verifier === undefined ? {} : { verifier }),
      ...(options.onIngestOutcome === undefined ? {} : { onOutcome: options.onIngestOutcome }),
    });
    await primeCursors(store, ingest);
    // Firmware campaigns (issue 9): jobs out on ami/<dcu>/fw/jobs, progress in on ami/+/fw/progress.
    const campaigns = CampaignService.fromDataDir(options.dataDir, {
      store: apiStore,
      nowMs,
      publish: async (topic, payload) => {
        if (ingestLink === null) throw new HeadendError("CLOSED", "MQTT link not up", "campaign");
        await ingestLink.publish(topic, payload);
      },
      onError: (error) => log.warn({ error: error.message }, "campaign error"),
    });
    cleanups.push(() => campaigns.close());

    let accepting = true;
    const onError = (error: Error) => log.warn({ error: error.message }, "MQTT error");
    ingestLink = await HeadendMqtt.connect(
      mqttUrl,
      `${prefix}-ingest`,
      ["ami/+/batches", "ami/+/status", "ami/+/fw/progress"],
      (topic, payload) => {
        if (topic.endsWith("/fw/progress")) {
          if (accepting) campaigns.onProgress(topic, payload);
          return;
        }
        const parsed = parseUplinkTopic(topic);
        if (parsed === null || !accepting) return;
        if (parsed.kind === "batches") ingest.submit(parsed.dcuId, payload);
        else if (parsed.kind === "status") void ingest.onStatus(parsed.dcuId, payload);
      },
      onError,
    );
    const batchLink = ingestLink;
    cleanups.push(() => batchLink.close());
    const alertLink = await HeadendMqtt.connect(
      mqttUrl,
      `${prefix}-alerts`,
      ["ami/+/alerts"],
      (topic, payload) => {
        const parsed = parseUplinkTopic(topic);
        if (parsed === null || parsed.kind !== "alerts" || !accepting) return;
        lane.submit(parsed.dcuId, payload);
      },
      onError,
    );
    cleanups.push(() => alertLink.close());

    const api = await buildApi({
      store: apiStore,
      ingest,
      lane,
      hub,
      registry,
      auth,
      metrics,
      nowMs,
      randomBytes: (n) => new Uint8Array(randomBytes(n)),
      campaigns,
      logger: false,
      version: VERSION,
      health: () => ({
        mqtt: mqttUrl,
        mqtt_ingest_connected: batchLink.connected,
        mqtt_alerts_connected: alertLink.connected,
      }),
    });
    cleanups.push(() => api.close());
    if (options.extraRoutes !== undefined) {
      await options.extraRoutes(api, async (request, role) => {
        const header = request.headers.authorization;
        const token =
          typeof header === "string" && header.startsWith("Bearer ") ? header.slice(7).trim() : null;
        const principal = await auth.authenticate(token);
        requireRole(principal, role, `${request.method} ${request.routeOptions.url ?? request.url}`);
        request.principal = principal;
        return principal as Principal;
      });
    }
    const address = await api.listen({ port: options.httpPort, host: options.httpHost ?? "127.0.0.1" });

    const timers: NodeJS.Timeout[] = [];
    const every = (ms: number, what: string, work: () => Promise<void>) => {
      let busy = false;
      const timer = setInterval(() => {
        if (busy) return;
        busy = true;
        work()
          .catch((error: unknown) => log.warn({ error: (error as Error).message }, `${what} failed`))
          .finally(() => {
            busy = false;
          });
      }, ms);
      timer.unref();
      timers.push(timer);
    };
    every(ALERT_TICK_MS, "alert tick", () => lane.tick());
    every(ONLINE_SWEEP_MS, "online sweep", () => sweepOffline(store, nowMs()));
    every(TIME_BROADCAST_MS, "time broadcast", async () => {
      for (const c of await apiStore.listConcentrators()) {
        await batchLink.publish(timeTopic(c.dcuId), encodeTimeMessage({ timeMs: nowMs() }));
      }
    });

    log.info({ api: address, mqtt: mqttUrl, store: store.description }, "head-end started");
    let closing: Promise<void> | null = null;
    return {
      apiUrl: address,
      mqttUrl,
      broker,
      tokenFiles,
      tokens,
      store,
      ingest,
      lane,
      registry,
      metrics,
      hub,
      api,
      log,
      close: () => {
        closing ??= (async () => {
          // Stop taking messages; finish the batch in the commit stage (commit, then ack) and the alert
          // queue; then drop connections. Queued, unacked batches are resent by their concentrators.
          accepting = false;
          for (const timer of timers) clearInterval(timer);
          const dropped = await ingest.close();
          await lane.close();
          log.info({ dropped_unacked_batches: dropped }, "head-end stopped");
          await closeAll();
        })();
        return closing;
      },
    };
  } catch (error) {
    await closeAll();
    throw error;
  }
}

/** Meter keys persisted as an asset register file in the data directory (written atomically, 0600). */
function filePersistence(path: string): RegistryPersistence {
  return {
    load: (): AssetRegister | null =>
      existsSync(path) ? decodeAssetRegister(readFileSync(path, "utf8")) : null,
    save: (register: AssetRegister) => writeFileAtomic(path, encodeAssetRegister(register), 0o600),
  };
}

/**
 * First start: one token per role, written to <data>/tokens/<role>.token with mode 0600. Later starts read
 * them back (and re-register their hashes, so a fresh database still accepts them).
 */
async function ensureTokens(
  auth: TokenAuth,
  dir: string,
  nowMs: number,
): Promise<{ files: Record<Role, string>; tokens: Record<Role, string> }> {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  chmodSync(dir, 0o700);
  const files = {} as Record<Role, string>;
  const tokens = {} as Record<Role, string>;
  for (const role of TOKEN_ROLES) {
    const file = join(dir, `${role}.token`);
    files[role] = file;
    if (existsSync(file)) {
      const token = readFileSync(file, "utf8").trim();
      await auth.register(token, role, `${role} (token file)`, nowMs);
      tokens[role] = token;
    } else {
      const issued = await auth.issue(
        role,
        `${role} (token file)`,
        nowMs,
        (n) => new Uint8Array(randomBytes(n)),
      );
      writeFileSync(file, `${issued.token}\n`, { mode: 0o600 });
      chmodSync(file, 0o600);
      tokens[role] = issued.token;
    }
  }
  return { files, tokens };
}

async function primeCursors(store: HeadendStore, ingest: BatchIngest): Promise<void> {
  let cursor: string | null = null;
  let primed = 0;
  do {
    const page = await store.listMeters({ limit: PAGE_ROWS_MAX, cursor });
    for (const m of page.items) {
      if (m.lastSeq !== null && m.lastReadingMs !== null) {
        ingest.primeMeterCursor(m.meterId, {
          lastSeq: m.lastSeq,
          lastReadingMs: m.lastReadingMs,
          lastCommitId: null,
        });
        primed++;
      }
    }
    cursor = page.nextCursor;
  } while (cursor !== null && primed < PRIME_METERS_MAX);
}

async function sweepOffline(store: HeadendStore, nowMs: number): Promise<void> {
  let cursor: string | null = null;
  do {
    const page = await store.listMeters({
      online: true,
      staleBeforeMs: nowMs - METER_OFFLINE_AFTER_MS,
      limit: PAGE_ROWS_MAX,
      cursor,
    });
    if (page.items.length > 0)
      await store.setMetersOnline(
        page.items.map((m) => m.meterId),
        false,
        nowMs,
      );
    cursor = page.nextCursor;
  } while (cursor !== null);
}
