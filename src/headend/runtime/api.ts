// shell: the head-end's HTTP API (Fastify): sockets, server-sent event streams and their heartbeat timer.
// Decisions (auth, ingest, alerts, export) live in ../core; this file maps HTTP onto them.
import Fastify, { type FastifyInstance, type FastifyReply, type FastifyRequest } from "fastify";
import { sha256, toHex } from "../../evidence/index.ts";
import { type AlertHub, type AlertLane, type AlertLaneEvent, alertToJson } from "../core/alerts.ts";
import { hashToken, isRole, type Principal, type Role, requireRole, type TokenAuth } from "../core/auth.ts";
import { exportEvidenceBundle } from "../core/export.ts";
import type { BatchIngest } from "../core/ingest.ts";
import { estimateRevenueLoss } from "../core/loss.ts";
import { type HeadendMetrics, renderPrometheus } from "../core/metrics.ts";
import type { KeyRegistry } from "../core/registry.ts";
import { decodeAssetRegister, decodeConcentratorAsset, decodeMeterAsset } from "../core/registry.ts";
import {
  concentratorToJson,
  eventToJson,
  gapToJson,
  listGapsInRange,
  meterToJson,
  pageToJson,
  readingToJson,
} from "../core/views.ts";
import { HeadendError, isHeadendError } from "../errors.ts";
import {
  ALERT_STATES,
  type AlertState,
  GAP_CLASSES,
  type GapClass,
  type HeadendStore,
  isStoreError,
  PAGE_ROWS_MAX,
} from "../store/index.ts";
import { campaignRoutes } from "./campaign-routes.ts";
import { dashboardRoutes } from "./dashboard-routes.ts";
import { registerWeb } from "./static.ts";

/** Request bodies larger than this are refused (an asset register of ~100k meters fits). */
export const API_BODY_BYTES_MAX = 32 * 1024 * 1024;
/** Request bodies are copied into the audit log up to this size; larger ones by size and digest. */
export const AUDIT_BODY_CHARS_MAX = 2_000;
/** A live alert stream whose client does not read is dropped once this much is buffered for it. */
export const SSE_CLIENT_BUFFER_BYTES_MAX = 1024 * 1024;
/** Comment lines keep idle streams open through proxies. */
export const SSE_HEARTBEAT_MS = 15_000;
/** Evidence exports span at most this (readings are also bounded by EXPORT_READING_ROWS_MAX). */
export const EXPORT_RANGE_MS_MAX = 366 * 24 * 3_600_000;

export interface ApiDeps {
  /** Reads and operator writes (the batch writer's own connection is not used by the API). */
  readonly store: HeadendStore;
  readonly ingest: BatchIngest;
  readonly lane: AlertLane;
  readonly hub: AlertHub;
  readonly registry: KeyRegistry;
  readonly auth: TokenAuth;
  readonly metrics: HeadendMetrics;
  nowMs(): number;
  randomBytes(count: number): Uint8Array;
  /** Fastify logger options, or false. */
  readonly logger?: boolean | Record<string, unknown>;
  readonly version: string;
  /** Extra health fields (MQTT connection state). */
  health?(): Record<string, unknown>;
}

type Handler = (
  request: FastifyRequest,
  reply: FastifyReply,
  principal: Principal | null,
) => Promise<unknown>;

interface QueryParam {
  readonly name: string;
  readonly type: "string" | "integer" | "boolean";
  readonly description: string;
  readonly enum?: readonly string[];
}

interface Route {
  readonly method: "GET" | "POST" | "DELETE";
  readonly url: string;
  readonly role: Role | null;
  readonly summary: string;
  readonly query?: readonly QueryParam[];
  readonly body?: string;
  readonly produces?: string;
  readonly handler: Handler;
}

const TIME_PARAM_HELP = "UTC milliseconds or an ISO 8601 date-time";

declare module "fastify" {
  interface FastifyRequest {
    principal: Principal | null;
  }
}

export async function buildApi(deps: ApiDeps): Promise<FastifyInstance> {
  // forceCloseConnections: on shutdown (after intake has stopped) every connection is cut, SSE included.
  const app = Fastify({
    logger: deps.logger ?? false,
    bodyLimit: API_BODY_BYTES_MAX,
    forceCloseConnections: true,
  });
  // Live alert streams; ended when the server closes (they would otherwise hold it open).
  const openStreams = new Set<() => void>();
  const routes = apiRoutes(deps, openStreams);
  app.addHook("preClose", async () => {
    for (const end of [...openStreams]) end();
  });
  app.decorateRequest("principal", null);

  app.addHook("onRequest", async (request) => {
    const route = routes.find((r) => r.method === request.method && r.url === request.routeOptions.url);
    if (route === undefined || route.role === null) return;
    const header = request.headers.authorization;
    let token: string | null = null;
    if (typeof header === "string" && header.startsWith("Bearer "))
      token = header.slice("Bearer ".length).trim();
    // EventSource cannot set headers: the alert stream alone also takes ?token=.
    if (token === null && route.url === "/api/alerts/stream") {
      const query = request.query as Record<string, unknown>;
      if (typeof query.token === "string") token = query.token;
    }
    const principal = await deps.auth.authenticate(token);
    requireRole(principal, route.role, `${route.method} ${route.url}`);
    request.principal = principal;
  });

  // Every mutating call, allowed or refused, is written to the hash-chained audit log before its answer.
  app.addHook("onSend", async (request, reply, payload) => {
    if (request.method === "GET" || request.method === "HEAD" || !request.url.startsWith("/api/"))
      return payload;
    const principal = request.principal;
    await deps.store.appendAudit({
      atMs: deps.nowMs(),
      actor:
        principal === null ? "anonymous" : `${principal.label} (${principal.role}, ${principal.tokenId})`,
      action: `${request.method} ${request.routeOptions.url ?? request.url}`,
      detail: {
        params: request.params,
        status: reply.statusCode,
        body: summarizeBody(request.body),
      },
    });
    return payload;
  });

  app.setErrorHandler(async (error, request, reply) => {
    const [status, code, message] = classify(error);
    if (status >= 500) request.log.error({ err: error }, "request failed");
    return reply.status(status).send({ error: code, message });
  });

  for (const route of routes) {
    app.route({
      method: route.method,
      url: route.url,
      handler: async (request, reply) => route.handler(request, reply, request.principal),
    });
  }
  app.get("/openapi.json", async () => openApiDocument(routes, deps.version));
  registerWeb(app);
  return app;
}

/** Audit detail of a request body: secrets never (a token is named by its token_id), large bodies by size and digest. */
function summarizeBody(body: unknown): unknown {
  if (body === undefined || body === null) return null;
  let value = body;
  if (typeof body === "object" && !Array.isArray(body)) {
    const copy: Record<string, unknown> = { ...(body as Record<string, unknown>) };
    if (typeof copy.token === "string") copy.token = { token_id: hashToken(copy.token).slice(0, 12) };
    if (typeof copy.image_base64 === "string") copy.image_base64 = { chars: copy.image_base64.length };
    value = copy;
  }
  const text = JSON.stringify(value);
  if (text.length <= AUDIT_BODY_CHARS_MAX) return value;
  return { chars: text.length, sha256: toHex(sha256(new TextEncoder().encode(text))) };
}

function classify(error: unknown): [number, string, string] {
  if (isHeadendError(error)) {
    const status: Record<string, number> = {
      BAD_REQUEST: 400,
      BAD_ASSET_REGISTER: 400,
      BAD_CONFIG: 400,
      UNAUTHORIZED: 401,
      FORBIDDEN: 403,
      NOT_FOUND: 404,
      CONFLICT: 409,
      UNKNOWN_DCU: 404,
      UNKNOWN_METER: 404,
      QUEUE_FULL: 503,
      CLOSED: 503,
    };
    return [status[error.code] ?? 500, error.code, error.message];
  }
  if (isStoreError(error)) {
    const status: Record<string, number> = {
      BAD_CURSOR: 400,
      LIMIT: 400,
      BAD_ROW: 400,
      NOT_FOUND: 404,
      BAD_STATE: 409,
      UNAVAILABLE: 503,
      CLOSED: 503,
    };
    return [status[error.code] ?? 500, error.code, error.message];
  }
  const fastify = error as { statusCode?: number; code?: string; message?: string };
  if (typeof fastify.statusCode === "number" && fastify.statusCode < 500) {
    return [fastify.statusCode, fastify.code ?? "BAD_REQUEST", fastify.message ?? "bad request"];
  }
  return [500, "INTERNAL", (error as Error).message ?? String(error)];
}

// ───────────────────────────── parameters ─────────────────────────────

function query(request: FastifyRequest): Record<string, unknown> {
  return (request.query ?? {}) as Record<string, unknown>;
}

function text(request: FastifyRequest, name: string): string | undefined {
  const value = query(request)[name];
  if (value === undefined || value === "") return undefined;
  if (typeof value !== "string") throw new HeadendError("BAD_REQUEST", `${name} must be given once`, name);
  if (value.length > 256)
    throw new HeadendError("BAD_REQUEST", `${name} is longer than 256 characters`, name);
  return value;
}

function integer(request: FastifyRequest, name: string, min: number, max: number): number | undefined {
  const value = text(request, name);
  if (value === undefined) return undefined;
  const n = Number(value);
  if (!Number.isSafeInteger(n) || n < min || n > max) {
    throw new HeadendError(
      "BAD_REQUEST",
      `${name} must be an integer in ${min}..${max}, got "${value}"`,
      name,
    );
  }
  return n;
}

/** A time given as UTC ms or ISO 8601. */
function time(request: FastifyRequest, name: string): number | undefined {
  const value = text(request, name);
  if (value === undefined) return undefined;
  const n = /^-?\d+$/.test(value) ? Number(value) : Date.parse(value);
  if (!Number.isSafeInteger(n)) {
    throw new HeadendError(
      "BAD_REQUEST",
      `${name} must be UTC milliseconds or ISO 8601, got "${value}"`,
      name,
    );
  }
  return n;
}

function page(request: FastifyRequest): { limit: number; cursor: string | null } {
  return {
    limit: integer(request, "limit", 1, PAGE_ROWS_MAX) ?? 100,
    cursor: text(request, "cursor") ?? null,
  };
}

function pathId(request: FastifyRequest, name: string): string {
  const value = (request.params as Record<string, unknown>)[name];
  if (typeof value !== "string" || value.length === 0 || value.length > 128) {
    throw new HeadendError("BAD_REQUEST", `path parameter ${name} is missing or too long`, name);
  }
  return value;
}

function pathInt(request: FastifyRequest, name: string): number {
  const raw = pathId(request, name);
  const n = Number(raw);
  if (!Number.isSafeInteger(n) || n < 1)
    throw new HeadendError("BAD_REQUEST", `${name} must be a positive integer`, name);
  return n;
}

function body(request: FastifyRequest): Record<string, unknown> {
  const value = request.body;
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw new HeadendError("BAD_REQUEST", "expected a JSON object body", `${request.method} ${request.url}`);
  }
  return value as Record<string, unknown>;
}

function actor(principal: Principal | null): string {
  return principal === null ? "anonymous" : `${principal.label} (${principal.tokenId})`;
}

// ───────────────────────────── routes ─────────────────────────────

const PAGE_PARAMS: readonly QueryParam[] = [
  { name: "limit", type: "integer", description: `rows per page, 1..${PAGE_ROWS_MAX} (default 100)` },
  { name: "cursor", type: "string", description: "next_cursor of the previous page" },
];

function apiRoutes(deps: ApiDeps, openStreams: Set<() => void>): Route[] {
  const { store } = deps;
  return [
    {
      method: "GET",
      url: "/health",
      role: null,
      summary: "Liveness: the store answers; MQTT connection state",
      handler: async () => ({
        status: "ok",
        store: store.description,
        schema_version: await store.schemaVersion(),
        ingest_queue: deps.ingest.queueDepth,
        alert_queue: deps.lane.queueDepth,
        ...(deps.health?.() ?? {}),
      }),
    },
    {
      method: "GET",
      url: "/metrics",
      role: null,
      summary:
        "Prometheus text exposition (amiproof_readings_stored_total, amiproof_batches_rejected_total{reason}, amiproof_alerts_total{type}, amiproof_gaps_total{class}, amiproof_meters_online, …)",
      produces: "text/plain",
      handler: async (_request, reply) => {
        reply.type("text/plain; version=0.0.4; charset=utf-8");
        return renderPrometheus(await store.counts(), deps.metrics);
      },
    },
    {
      method: "GET",
      url: "/api/whoami",
      role: "viewer",
      summary: "The caller's role and token label",
      handler: async (_request, _reply, principal) => ({
        role: principal?.role,
        label: principal?.label,
        token_id: principal?.tokenId,
      }),
    },
    {
      method: "GET",
      url: "/api/stats",
      role: "viewer",
      summary:
        "Live counters: readings/s, readings stored, batches, rejections, alerts, gaps, queues, alert latency",
      handler: async () => {
        const counts = await store.counts();
        const open = await store.listAlerts({ state: "open", limit: PAGE_ROWS_MAX });
        const m = deps.metrics;
        return {
          now_ms: deps.nowMs(),
          readings_per_s: Math.round(m.readingsPerSecond(deps.nowMs())),
          readings_stored_total: counts.readingsStoredTotal,
          batches_accepted_total: counts.batchesAcceptedTotal,
          batches_duplicate: m.batchesDuplicate,
          batches_rejected_total: counts.batchesRejectedTotal,
          alerts_total: counts.alertsTotal,
          alerts_open: open.items.length,
          alerts_open_more: open.nextCursor !== null,
          alerts_rejected: Object.fromEntries(m.alertsRejected),
          gaps_total: counts.gapsTotal,
          meters_online: counts.metersOnline,
          meters_total: counts.metersTotal,
          events_total: counts.eventsTotal,
          ingest_queue: deps.ingest.queueDepth,
          alert_queue: deps.lane.queueDepth,
          alert_latency_p50_ms: m.alertLatencyMs.quantile(0.5),
          alert_latency_p99_ms: m.alertLatencyMs.quantile(0.99),
          live_subscribers: deps.hub.size,
        };
      },
    },
    {
      method: "GET",
      url: "/api/meters",
      role: "viewer",
      summary: "Meters, paged by meter_id (server-side; sized for 100,000 meters)",
      query: [
        { name: "search", type: "string", description: "substring of meter_id" },
        { name: "status", type: "string", description: "online | offline", enum: ["online", "offline"] },
        { name: "tamper_state", type: "string", description: "exact tamper state, e.g. CLEAR or COVER_OPEN" },
        { name: "dcu_id", type: "string", description: "meters of one concentrator" },
        { name: "transformer_id", type: "string", description: "meters on one transformer" },
        ...PAGE_PARAMS,
      ],
      handler: async (request) => {
        const status = text(request, "status");
        if (status !== undefined && status !== "online" && status !== "offline") {
          throw new HeadendError(
            "BAD_REQUEST",
            `status must be online or offline, got "${status}"`,
            "status",
          );
        }
        const search = text(request, "search");
        const tamperState = text(request, "tamper_state");
        const dcuId = text(request, "dcu_id");
        const transformerId = text(request, "transformer_id");
        const result = await store.listMeters({
          ...page(request),
          ...(search === undefined ? {} : { search }),
          ...(status === undefined ? {} : { online: status === "online" }),
          ...(tamperState === undefined ? {} : { tamperState }),
          ...(dcuId === undefined ? {} : { dcuId }),
          ...(transformerId === undefined ? {} : { transformerId }),
        });
        return { ...pageToJson(result, meterToJson), total: result.total };
      },
    },
    {
      method: "POST",
      url: "/api/meters",
      role: "admin",
      summary:
        "Provision meters: { meter_id, event_seal_public_key, dcu_id?, transformer_id?, model?, group? } or { meters: [...] }",
      body: "MeterAsset | { meters: MeterAsset[] }",
      handler: async (request, reply) => {
        const b = body(request);
        const list = Array.isArray(b.meters) ? b.meters : [b];
        const assets = list.map((item, i) => decodeMeterAsset(item, `meters[${i}]`));
        await deps.registry.registerMeters(assets, deps.nowMs());
        reply.status(201);
        return { registered: assets.map((a) => a.meterId) };
      },
    },
    {
      method: "GET",
      url: "/api/meters/:id",
      role: "viewer",
      summary: "One meter: inventory, firmware bank, tamper state, key provisioning, open alerts",
      handler: async (request) => {
        const meterId = pathId(request, "id");
        const meter = await store.getMeter(meterId);
        if (meter === null) throw new HeadendError("NOT_FOUND", `meter ${meterId} is unknown`);
        const open = await store.listAlerts({ meterId, state: "open", limit: 100 });
        return {
          ...meterToJson(meter),
          event_seal_key_provisioned: deps.registry.meterKey(meterId) !== null,
          open_alerts: open.items.map(alertToJson),
        };
      },
    },
    {
      method: "GET",
      url: "/api/meters/:id/readings",
      role: "viewer",
      summary: "A meter's readings with timestamp in [from, to)",
      query: [
        { name: "from", type: "string", description: TIME_PARAM_HELP },
        { name: "to", type: "string", description: TIME_PARAM_HELP },
        { name: "obis", type: "string", description: 'one OBIS code, e.g. "1.0.1.8.0.255"' },
        ...PAGE_PARAMS,
      ],
      handler: async (request) => {
        const obis = text(request, "obis");
        const result = await store.listReadings({
          meterId: pathId(request, "id"),
          fromMs: time(request, "from") ?? 0,
          toMs: time(request, "to") ?? deps.nowMs() + 86_400_000,
          ...(obis === undefined ? {} : { obis }),
          ...page(request),
        });
        return pageToJson(result, readingToJson);
      },
    },
    {
      method: "GET",
      url: "/api/meters/:id/events",
      role: "viewer",
      summary: "A meter's sealed events (verified records, as forwarded) with timestamp in [from, to)",
      query: [
        { name: "from", type: "string", description: TIME_PARAM_HELP },
        { name: "to", type: "string", description: TIME_PARAM_HELP },
        ...PAGE_PARAMS,
      ],
      handler: async (request) => {
        const result = await store.listEvents(
          pathId(request, "id"),
          time(request, "from") ?? 0,
          time(request, "to") ?? deps.nowMs() + 86_400_000,
          page(request),
        );
        return pageToJson(result, eventToJson);
      },
    },
    {
      method: "GET",
      url: "/api/meters/:id/revenue-loss",
      role: "viewer",
      summary:
        "seed 004 unmeasured-energy estimate: median neighbour import on the same transformer minus the meter's own",
      query: [
        { name: "from", type: "string", description: TIME_PARAM_HELP },
        { name: "to", type: "string", description: TIME_PARAM_HELP },
      ],
      handler: async (request) => {
        const e = await estimateRevenueLoss(
          store,
          pathId(request, "id"),
          time(request, "from") ?? 0,
          time(request, "to") ?? deps.nowMs(),
        );
        return {
          meter_id: e.meterId,
          transformer_id: e.transformerId,
          from_ms: e.fromMs,
          to_ms: e.toMs,
          own_wh: e.ownWh,
          neighbours: e.neighbours,
          neighbour_median_wh: e.neighbourMedianWh,
          estimated_unmeasured_wh: e.estimatedUnmeasuredWh,
        };
      },
    },
    {
      method: "GET",
      url: "/api/concentrators",
      role: "viewer",
      summary: "Concentrators: provisioned key, chain head, last batch, latest status (evidence packs)",
      handler: async () => {
        const rows = await store.listConcentrators();
        return {
          items: rows.map((c) => {
            const status = deps.ingest.status(c.dcuId);
            return concentratorToJson(c, {
              lastBatchMs: deps.ingest.lastBatchMs(c.dcuId),
              status: status?.status.packs ?? null,
              statusMs: status?.atMs ?? null,
            });
          }),
        };
      },
    },
    {
      method: "POST",
      url: "/api/concentrators",
      role: "admin",
      summary: "Provision a concentrator's batch_sign public key: { dcu_id, batch_sign_public_key }",
      body: "ConcentratorAsset",
      handler: async (request, reply) => {
        const asset = decodeConcentratorAsset(body(request), "body");
        await deps.registry.registerConcentrator(asset, deps.nowMs());
        deps.ingest.forgetChain(asset.dcuId);
        reply.status(201);
        return { registered: asset.dcuId };
      },
    },
    {
      method: "POST",
      url: "/api/assets",
      role: "admin",
      summary:
        'Load an asset register document { "format": "amiproof-asset-register", "version": 1, concentrators, meters }',
      body: "AssetRegister",
      handler: async (request, reply) => {
        const register = decodeAssetRegister(JSON.stringify(body(request)));
        await deps.registry.load(register, deps.nowMs());
        for (const c of register.concentrators) deps.ingest.forgetChain(c.dcuId);
        reply.status(201);
        return { concentrators: register.concentrators.length, meters: register.meters.length };
      },
    },
    {
      method: "GET",
      url: "/api/alerts",
      role: "viewer",
      summary: "Alerts, newest first",
      query: [
        { name: "state", type: "string", description: ALERT_STATES.join(" | "), enum: ALERT_STATES },
        { name: "type", type: "string", description: "alert type, e.g. COVER_OPEN, BATCH_REJECTED" },
        { name: "meter_id", type: "string", description: "alerts of one meter" },
        ...PAGE_PARAMS,
      ],
      handler: async (request) => {
        const state = text(request, "state");
        if (state !== undefined && !(ALERT_STATES as readonly string[]).includes(state)) {
          throw new HeadendError("BAD_REQUEST", `state must be one of ${ALERT_STATES.join(", ")}`, "state");
        }
        const type = text(request, "type");
        const meterId = text(request, "meter_id");
        const result = await store.listAlerts({
          ...page(request),
          ...(state === undefined ? {} : { state: state as AlertState }),
          ...(type === undefined ? {} : { type }),
          ...(meterId === undefined ? {} : { meterId }),
        });
        return pageToJson(result, alertToJson);
      },
    },
    {
      method: "GET",
      url: "/api/alerts/stream",
      role: "viewer",
      summary:
        "Server-sent events: `alert` for each new alert, `alert_update` for ack/resolve (token in ?token= for EventSource)",
      query: [{ name: "token", type: "string", description: "API token (EventSource cannot set headers)" }],
      produces: "text/event-stream",
      handler: async (request, reply) => streamAlerts(deps, request, reply, openStreams),
    },
    {
      method: "GET",
      url: "/api/alerts/:id",
      role: "viewer",
      summary: "One alert",
      handler: async (request) => {
        const alert = await store.getAlert(pathInt(request, "id"));
        if (alert === null) throw new HeadendError("NOT_FOUND", "no such alert");
        return alertToJson(alert);
      },
    },
    {
      method: "POST",
      url: "/api/alerts/:id/ack",
      role: "operator",
      summary: "Acknowledge an open alert",
      handler: async (request, _reply, principal) =>
        alertToJson(await deps.lane.acknowledge(pathInt(request, "id"), actor(principal))),
    },
    {
      method: "POST",
      url: "/api/alerts/:id/resolve",
      role: "operator",
      summary: "Resolve an open or acknowledged alert",
      handler: async (request, _reply, principal) =>
        alertToJson(await deps.lane.resolve(pathInt(request, "id"), actor(principal))),
    },
    {
      method: "GET",
      url: "/api/gaps",
      role: "viewer",
      summary: "Gaps (seed 003 H2-4 attribution), newest first; from/to filter on detection time",
      query: [
        { name: "class", type: "string", description: GAP_CLASSES.join(" | "), enum: GAP_CLASSES },
        { name: "from", type: "string", description: TIME_PARAM_HELP },
        { name: "to", type: "string", description: TIME_PARAM_HELP },
        { name: "meter_id", type: "string", description: "gaps of one meter" },
        { name: "dcu_id", type: "string", description: "gaps of one concentrator" },
        { name: "open", type: "boolean", description: "true: unresolved gaps only" },
        ...PAGE_PARAMS,
      ],
      handler: async (request) => {
        const gapClass = text(request, "class");
        if (gapClass !== undefined && !(GAP_CLASSES as readonly string[]).includes(gapClass)) {
          throw new HeadendError("BAD_REQUEST", `class must be one of ${GAP_CLASSES.join(", ")}`, "class");
        }
        const meterId = text(request, "meter_id");
        const dcuId = text(request, "dcu_id");
        const result = await listGapsInRange(
          store,
          {
            ...page(request),
            ...(gapClass === undefined ? {} : { gapClass: gapClass as GapClass }),
            ...(meterId === undefined ? {} : { meterId }),
            ...(dcuId === undefined ? {} : { dcuId }),
            ...(text(request, "open") === "true" ? { openOnly: true } : {}),
          },
          time(request, "from") ?? null,
          time(request, "to") ?? null,
        );
        return pageToJson(result, gapToJson);
      },
    },
    {
      method: "GET",
      url: "/api/gaps/summary",
      role: "viewer",
      summary: "Per gap class: count, still open, total width",
      handler: async () => ({
        classes: (await store.gapSummary()).map((s) => ({
          class: s.gapClass,
          count: s.count,
          open: s.open,
          width: s.width,
        })),
      }),
    },
    ...dashboardRoutes(deps),
    {
      method: "GET",
      url: "/api/evidence/export",
      role: "viewer",
      summary:
        "Evidence bundle of a meter's readings in [from, to) and its sealed event log; `amiproof verify` accepts it",
      query: [
        { name: "meter_id", type: "string", description: "the meter" },
        { name: "from", type: "string", description: TIME_PARAM_HELP },
        { name: "to", type: "string", description: TIME_PARAM_HELP },
      ],
      produces: "application/json",
      handler: async (request, reply) => {
        const meterId = text(request, "meter_id");
        if (meterId === undefined) throw new HeadendError("BAD_REQUEST", "meter_id is required", "meter_id");
        const toMs = time(request, "to") ?? deps.nowMs();
        const fromMs = time(request, "from") ?? toMs - 86_400_000;
        if (toMs <= fromMs || toMs - fromMs > EXPORT_RANGE_MS_MAX) {
          throw new HeadendError(
            "BAD_REQUEST",
            `from..to must be a non-empty range of at most ${EXPORT_RANGE_MS_MAX} ms`,
          );
        }
        const result = await exportEvidenceBundle(store, deps.registry, meterId, fromMs, toMs);
        reply.header("content-type", "application/json; charset=utf-8");
        reply.header(
          "content-disposition",
          `attachment; filename="evidence-${meterId}-${fromMs}-${toMs}.json"`,
        );
        reply.header(
          "x-amiproof-export",
          JSON.stringify({ readings: result.readings, batches: result.batches, events: result.events }),
        );
        if (result.notes.length > 0)
          reply.header("x-amiproof-export-notes", encodeURIComponent(result.notes.join(" | ")));
        return result.text;
      },
    },
    {
      method: "GET",
      url: "/api/audit",
      role: "admin",
      summary: "The audit log (hash-chained), newest first",
      query: PAGE_PARAMS,
      handler: async (request) => {
        const result = await store.listAudit(page(request));
        return {
          items: result.items.map((e) => ({
            seq: e.seq,
            at_ms: e.atMs,
            actor: e.actor,
            action: e.action,
            detail: e.detail,
            hash: Buffer.from(e.hash).toString("hex"),
          })),
          next_cursor: result.nextCursor,
        };
      },
    },
    {
      method: "GET",
      url: "/api/audit/verify",
      role: "admin",
      summary: "Re-walk the audit hash chain",
      handler: async () => {
        const report = await store.verifyAudit();
        return {
          ok: report.ok,
          entries: report.entries,
          head_hash: Buffer.from(report.headHash).toString("hex"),
          problem: report.problem,
        };
      },
    },
    {
      method: "POST",
      url: "/api/tokens",
      role: "admin",
      summary: "Issue an API token { role: viewer | operator | admin, label }; the token is shown once",
      body: "{ role, label }",
      handler: async (request, reply) => {
        const b = body(request);
        if (!isRole(b.role))
          throw new HeadendError("BAD_REQUEST", "role must be viewer, operator or admin", "role");
        const label =
          typeof b.label === "string" && b.label.length > 0 && b.label.length <= 64 ? b.label : b.role;
        const issued = await deps.auth.issue(b.role, label, deps.nowMs(), deps.randomBytes);
        reply.status(201);
        return { token: issued.token, role: b.role, label, token_id: issued.principal.tokenId };
      },
    },
    {
      method: "POST",
      url: "/api/tokens/revoke",
      role: "admin",
      summary: "Revoke an API token { token }",
      body: "{ token }",
      handler: async (request) => {
        const b = body(request);
        if (typeof b.token !== "string")
          throw new HeadendError("BAD_REQUEST", "token must be a string", "token");
        return { revoked: await deps.auth.revoke(b.token, deps.nowMs()) };
      },
    },
    {
      method: "GET",
      url: "/api/firmware",
      role: "viewer",
      summary: "Firmware images held by the head-end (metadata)",
      handler: async () => ({
        items: (await store.listFirmware()).map((f) => ({
          component: f.component,
          version: f.version,
          release_counter: f.releaseCounter,
          checksum: f.checksum,
          expiry_ms: f.expiryMs,
          uploaded_ms: f.uploadedMs,
        })),
      }),
    },
    {
      method: "POST",
      url: "/api/firmware",
      role: "admin",
      summary:
        "Upload a signed firmware image { component, version, release_counter, image_base64, expiry_ms? } (seed 000 Level 4: admin)",
      body: "{ component, version, release_counter, image_base64, expiry_ms? }",
      handler: async (request, reply) => {
        const b = body(request);
        const { component, version } = b;
        if (
          typeof component !== "string" ||
          typeof version !== "string" ||
          component === "" ||
          version === ""
        ) {
          throw new HeadendError("BAD_REQUEST", "component and version must be non-empty strings");
        }
        if (
          typeof b.release_counter !== "number" ||
          !Number.isSafeInteger(b.release_counter) ||
          b.release_counter < 0
        ) {
          throw new HeadendError("BAD_REQUEST", "release_counter must be a non-negative integer");
        }
        if (typeof b.image_base64 !== "string" || b.image_base64.length === 0) {
          throw new HeadendError("BAD_REQUEST", "image_base64 must be the image, base64");
        }
        const image = new Uint8Array(Buffer.from(b.image_base64, "base64"));
        const checksum = toHex(sha256(image));
        const stored = await store.putFirmware({
          component,
          version,
          releaseCounter: b.release_counter,
          checksum,
          image,
          expiryMs: typeof b.expiry_ms === "number" ? b.expiry_ms : null,
          uploadedMs: deps.nowMs(),
        });
        reply.status(stored ? 201 : 200);
        return { component, version, checksum, stored };
      },
    },
    ...campaignRoutes(deps),
  ];
}

function streamAlerts(
  deps: ApiDeps,
  request: FastifyRequest,
  reply: FastifyReply,
  openStreams: Set<() => void>,
): Promise<void> {
  reply.hijack();
  const raw = reply.raw;
  raw.writeHead(200, {
    "content-type": "text/event-stream; charset=utf-8",
    "cache-control": "no-cache, no-transform",
    connection: "keep-alive",
    "x-accel-buffering": "no",
  });
  let unsubscribe: (() => void) | null = null;
  let heartbeat: NodeJS.Timeout | null = null;
  let id = 0;
  const stop = () => {
    unsubscribe?.();
    unsubscribe = null;
    if (heartbeat !== null) clearInterval(heartbeat);
    heartbeat = null;
  };
  const send = (event: string, data: unknown) => {
    if (raw.writableLength > SSE_CLIENT_BUFFER_BYTES_MAX) {
      deps.metrics.sseDropped++;
      stop();
      raw.end();
      return;
    }
    raw.write(`id: ${++id}\nevent: ${event}\ndata: ${JSON.stringify(data)}\n\n`);
  };
  try {
    unsubscribe = deps.hub.subscribe((e: AlertLaneEvent) => send(e.kind, alertToJson(e.alert)));
  } catch (error) {
    raw.write(`event: error\ndata: ${JSON.stringify({ error: (error as Error).message })}\n\n`);
    raw.end();
    return Promise.resolve();
  }
  raw.write("retry: 2000\n\n");
  send("ready", { now_ms: deps.nowMs(), principal: request.principal?.label ?? null });
  heartbeat = setInterval(() => raw.write(": heartbeat\n\n"), SSE_HEARTBEAT_MS);
  heartbeat.unref();
  // The response's close: the client went away (the request's own close fires once its body is read).
  return new Promise((resolve) => {
    const end = () => {
      stop();
      openStreams.delete(end);
      if (!raw.writableEnded) raw.end();
      resolve();
    };
    openStreams.add(end);
    raw.once("close", end);
  });
}

// ───────────────────────────── OpenAPI ─────────────────────────────

function openApiDocument(routes: readonly Route[], version: string): Record<string, unknown> {
  const paths: Record<string, Record<string, unknown>> = {};
  for (const route of routes) {
    const path = route.url.replace(/:(\w+)/g, "{$1}");
    const pathParams = [...route.url.matchAll(/:(\w+)/g)].map((m) => ({
      name: m[1],
      in: "path",
      required: true,
      schema: { type: "string" },
    }));
    const queryParams = (route.query ?? []).map((q) => ({
      name: q.name,
      in: "query",
      required: false,
      description: q.description,
      schema: { type: q.type, ...(q.enum === undefined ? {} : { enum: q.enum }) },
    }));
    const operation: Record<string, unknown> = {
      summary: route.summary,
      parameters: [...pathParams, ...queryParams],
      responses: {
        "200": { description: "OK", content: { [route.produces ?? "application/json"]: {} } },
        ...(route.role === null
          ? {}
          : {
              "401": { description: "no or unknown token" },
              "403": { description: `needs role ${route.role}` },
            }),
      },
      ...(route.role === null ? { security: [] } : { "x-amiproof-role": route.role }),
      ...(route.body === undefined
        ? {}
        : { requestBody: { required: true, description: route.body, content: { "application/json": {} } } }),
    };
    paths[path] = { ...(paths[path] ?? {}), [route.method.toLowerCase()]: operation };
  }
  paths["/openapi.json"] = {
    get: { summary: "This document", security: [], responses: { "200": { description: "OK" } } },
  };
  return {
    openapi: "3.1.0",
    info: {
      title: "amiproof head-end API",
      version,
      description:
        "Head-end of amiproof: verified ingest, tamper alert lane, evidence export. Bearer tokens with roles viewer < operator < admin; every mutating call is written to a hash-chained audit log.",
    },
    components: { securitySchemes: { bearer: { type: "http", scheme: "bearer" } } },
    security: [{ bearer: [] }],
    paths,
  };
}
