// shell: the firmware-campaign HTTP routes and the campaign service's wiring (MQTT publish, progress intake,
// key and trust-anchor files). Decisions live in ../core/campaigns.ts.
import { randomBytes } from "node:crypto";
import { chmodSync, existsSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { FastifyReply, FastifyRequest } from "fastify";
import {
  decodeFirmwareProgress,
  EvidenceError,
  encodeFirmwareJob,
  type FirmwareJobMessage,
  firmwareJobsTopic,
  SeededRandom,
} from "../../evidence/index.ts";
import type { Principal, Role } from "../core/auth.ts";
import {
  type Actor,
  type CampaignKind,
  CampaignManager,
  type CampaignSpec,
  type CampaignTargets,
  campaignStatus,
  FirmwareRepository,
  type FleetMeter,
  isCampaignError,
  METER_CAMPAIGN_STATES,
  meterJobToJson,
  OtpSecurityModule,
} from "../core/campaigns.ts";
import { HeadendError } from "../errors.ts";
import { type HeadendStore, PAGE_ROWS_MAX } from "../store/index.ts";
import type { ApiDeps } from "./api.ts";

declare module "./api.ts" {
  interface ApiDeps {
    /** Firmware campaigns; absent: the campaign routes answer 400 BAD_CONFIG. */
    readonly campaigns?: CampaignService;
  }
}

/** The trust anchor for firmware images, in the head-end's data directory (PEM or DER). */
export const FIRMWARE_CA_FILE = "firmware-ca.pem";
/** The OTP master key (32 random bytes, hex), created on first start with mode 0600. */
export const OTP_MASTER_KEY_FILE = "otp-master.key";
/** The campaigns between runs. */
export const CAMPAIGNS_FILE = "campaigns.json";
/** Meters read from the store per campaign creation (the asset register). */
export const CAMPAIGN_FLEET_METERS_MAX = 2_000_000;

export interface CampaignServiceOptions {
  readonly store: HeadendStore;
  nowMs(): number;
  readonly caCertificateDer: Uint8Array | null;
  readonly otpMasterKey: Uint8Array | null;
  /** Publishes on the broker (QoS 1); failures are counted and handed to onError. */
  publish(topic: string, payload: Uint8Array): Promise<void>;
  readonly seed?: number | string;
  onError?(error: Error): void;
  /** Where the campaigns are kept between runs (JSON, written atomically); absent: memory only. */
  readonly snapshotFile?: string;
}

/** During a flood of progress reports the snapshot is written at most this often (plus on every command). */
export const CAMPAIGN_SNAPSHOT_INTERVAL_MS = 5_000;

export class CampaignService {
  readonly repository: FirmwareRepository;
  readonly manager: CampaignManager;
  readonly counters = {
    jobs_published: 0,
    publish_failures: 0,
    progress_received: 0,
    progress_refused: 0,
    images_not_reloaded: 0,
    snapshots_written: 0,
  };
  /** Resolves once the repository holds the store's images again (after a restart). */
  readonly ready: Promise<void>;
  private chain: Promise<unknown> = Promise.resolve();
  private lastSaveMs = 0;
  private saveTimer: NodeJS.Timeout | null = null;

  constructor(private readonly options: CampaignServiceOptions) {
    this.repository = new FirmwareRepository(options.caCertificateDer);
    this.manager = new CampaignManager({
      nowMs: options.nowMs,
      rng: new SeededRandom(options.seed ?? randomBytes(6).readUIntBE(0, 6)),
      repository: this.repository,
      otp: options.otpMasterKey === null ? null : new OtpSecurityModule(options.otpMasterKey),
      send: (message) => this.send(message),
    });
    const file = options.snapshotFile;
    if (file !== undefined && existsSync(file)) {
      try {
        this.manager.restore(JSON.parse(readFileSync(file, "utf8")));
      } catch (error) {
        throw new HeadendError("BAD_CONFIG", `${file}: ${(error as Error).message}`);
      }
    }
    this.ready = this.reloadImages();
  }

  /** The repository's images come back from the store's firmware table, verified again. */
  private async reloadImages(): Promise<void> {
    if (this.options.caCertificateDer === null) return;
    for (const info of await this.options.store.listFirmware()) {
      const row = await this.options.store.getFirmware(info.component, info.version);
      if (row === null) continue;
      try {
        this.repository.add(row.image, this.options.nowMs());
      } catch (error) {
        if (!isCampaignError(error)) throw error;
        this.counters.images_not_reloaded++;
      }
    }
  }

  /** Writes the snapshot now (commands) or at most every CAMPAIGN_SNAPSHOT_INTERVAL_MS (progress). */
  save(urgent = true): void {
    const file = this.options.snapshotFile;
    if (file === undefined) return;
    const now = Date.now();
    if (!urgent && now - this.lastSaveMs < CAMPAIGN_SNAPSHOT_INTERVAL_MS) {
      if (this.saveTimer === null) {
        this.saveTimer = setTimeout(() => this.save(true), CAMPAIGN_SNAPSHOT_INTERVAL_MS);
        this.saveTimer.unref();
      }
      return;
    }
    if (this.saveTimer !== null) clearTimeout(this.saveTimer);
    this.saveTimer = null;
    this.lastSaveMs = now;
    writeFileSync(`${file}.tmp`, JSON.stringify(this.manager.snapshot()), { mode: 0o600 });
    renameSync(`${file}.tmp`, file);
    this.counters.snapshots_written++;
  }

  /** Flushes the snapshot (the head-end's shutdown). */
  async close(): Promise<void> {
    await this.chain;
    if (this.saveTimer !== null) this.save(true);
  }

  /** Files in the data directory: the CA certificate (if provisioned) and the OTP master key (created). */
  static fromDataDir(
    dataDir: string,
    rest: Omit<CampaignServiceOptions, "caCertificateDer" | "otpMasterKey">,
  ): CampaignService {
    const caFile = process.env.AMIPROOF_FIRMWARE_CA ?? join(dataDir, FIRMWARE_CA_FILE);
    let caCertificateDer: Uint8Array | null = null;
    if (existsSync(caFile)) {
      const raw = readFileSync(caFile);
      const text = raw.toString("latin1");
      caCertificateDer = text.includes("-----BEGIN CERTIFICATE-----")
        ? new Uint8Array(
            Buffer.from(text.replace(/-----(BEGIN|END) CERTIFICATE-----/g, "").replace(/\s+/g, ""), "base64"),
          )
        : new Uint8Array(raw);
    }
    const keyFile = join(dataDir, OTP_MASTER_KEY_FILE);
    if (!existsSync(keyFile)) {
      const temp = `${keyFile}.tmp`;
      writeFileSync(temp, `${randomBytes(32).toString("hex")}\n`, { mode: 0o600 });
      chmodSync(temp, 0o600);
      renameSync(temp, keyFile);
    }
    const hex = readFileSync(keyFile, "utf8").trim();
    if (!/^[0-9a-f]{64,}$/.test(hex))
      throw new HeadendError("BAD_CONFIG", `${keyFile} must hold at least 32 bytes as hex`);
    return new CampaignService({
      snapshotFile: join(dataDir, CAMPAIGNS_FILE),
      ...rest,
      caCertificateDer,
      otpMasterKey: new Uint8Array(Buffer.from(hex, "hex")),
    });
  }

  /** The asset register's meters (store), as campaign targets. */
  async fleet(): Promise<FleetMeter[]> {
    const out: FleetMeter[] = [];
    let cursor: string | null = null;
    for (;;) {
      const page = await this.options.store.listMeters({ limit: PAGE_ROWS_MAX, cursor });
      for (const m of page.items) {
        if (m.dcuId === null) continue; // not behind a concentrator: no campaign can reach it
        out.push({
          meterId: m.meterId,
          dcuId: m.dcuId,
          model: m.model,
          group: m.group,
          firmwareVersion: m.firmwareVersion,
        });
      }
      if (page.nextCursor === null || out.length >= CAMPAIGN_FLEET_METERS_MAX) return out;
      cursor = page.nextCursor;
    }
  }

  /** A message on ami/<dcu>/fw/progress. Returns false (counted) when it is refused. */
  onProgress(topic: string, payload: Uint8Array): boolean {
    const parts = topic.split("/");
    if (parts.length !== 4 || parts[0] !== "ami" || parts[2] !== "fw" || parts[3] !== "progress")
      return false;
    try {
      const message = decodeFirmwareProgress(payload);
      if (message.dcuId !== parts[1])
        throw new EvidenceError("BAD_FIELD", "dcu_id is not the topic's", "progress");
      this.counters.progress_received++;
      // In arrival order, once the repository is back (a next wave may need its image).
      this.chain = this.chain
        .then(() => this.ready)
        .then(() => {
          if (this.manager.applyProgress(message) > 0) this.save(false);
        })
        .catch((error: Error) => this.options.onError?.(error));
      return true;
    } catch (error) {
      if (!(error instanceof EvidenceError)) throw error;
      this.counters.progress_refused++;
      return false;
    }
  }

  private send(message: FirmwareJobMessage): void {
    this.counters.jobs_published++;
    this.options
      .publish(firmwareJobsTopic(message.dcuId), encodeFirmwareJob(message))
      .catch((error: Error) => {
        this.counters.publish_failures++;
        this.options.onError?.(error);
      });
  }
}

// ───────────────────────────── routes ─────────────────────────────

type Handler = (
  request: FastifyRequest,
  reply: FastifyReply,
  principal: Principal | null,
) => Promise<unknown>;

/** The shape of api.ts's route table entries. */
export interface CampaignRoute {
  readonly method: "GET" | "POST" | "DELETE";
  readonly url: string;
  readonly role: Role | null;
  readonly summary: string;
  readonly query?: readonly {
    readonly name: string;
    readonly type: "string" | "integer" | "boolean";
    readonly description: string;
  }[];
  readonly body?: string;
  readonly handler: Handler;
}

const KINDS: readonly CampaignKind[] = ["update", "rollback_full", "rollback_app"];

function service(deps: ApiDeps): CampaignService {
  if (deps.campaigns === undefined)
    throw new HeadendError("BAD_CONFIG", "firmware campaigns are not configured on this head-end");
  return deps.campaigns;
}

function actorOf(principal: Principal | null): Actor {
  if (principal === null) throw new HeadendError("UNAUTHORIZED", "a token is required");
  return { name: `${principal.label} (${principal.tokenId})`, role: principal.role };
}

function bodyOf(request: FastifyRequest): Record<string, unknown> {
  const value = request.body ?? {};
  if (typeof value !== "object" || value === null || Array.isArray(value))
    throw new HeadendError("BAD_REQUEST", "expected a JSON object body");
  return value as Record<string, unknown>;
}

function idOf(request: FastifyRequest): string {
  const id = (request.params as Record<string, unknown>).id;
  if (typeof id !== "string" || id.length === 0 || id.length > 64)
    throw new HeadendError("BAD_REQUEST", "campaign id missing or too long", "id");
  return id;
}

/** CampaignError → the API's error (status by kind; the campaign code leads the message). */
async function mapped<T>(work: () => T | Promise<T>): Promise<T> {
  try {
    return await work();
  } catch (error) {
    if (!isCampaignError(error)) throw error;
    const code =
      error.code === "NOT_FOUND"
        ? "NOT_FOUND"
        : error.code === "FORBIDDEN"
          ? "FORBIDDEN"
          : error.code === "BAD_STATE"
            ? "CONFLICT"
            : error.code === "NOT_CONFIGURED"
              ? "BAD_CONFIG"
              : "BAD_REQUEST";
    throw new HeadendError(code, error.message.replace(/^[A-Z_]+: /, `${error.code}: `));
  }
}

function stringList(value: unknown, name: string): string[] | undefined {
  if (value === undefined || value === null) return undefined;
  if (
    !Array.isArray(value) ||
    value.length > 100_000 ||
    value.some((v) => typeof v !== "string" || v.length > 128)
  )
    throw new HeadendError("BAD_REQUEST", `${name} must be an array of strings`, name);
  return value as string[];
}

function optionalNumber(value: unknown, name: string): number | undefined {
  if (value === undefined || value === null) return undefined;
  if (typeof value !== "number" || !Number.isFinite(value))
    throw new HeadendError("BAD_REQUEST", `${name} must be a number`, name);
  return value;
}

/** The JSON body of POST /api/campaigns (snake_case) as a CampaignSpec. */
export function specFromJson(b: Record<string, unknown>): CampaignSpec {
  if (typeof b.name !== "string") throw new HeadendError("BAD_REQUEST", "name must be a string", "name");
  const kind = b.kind ?? "update";
  if (typeof kind !== "string" || !(KINDS as readonly string[]).includes(kind))
    throw new HeadendError("BAD_REQUEST", `kind must be one of ${KINDS.join(", ")}`, "kind");
  if (typeof b.image_checksum !== "string")
    throw new HeadendError(
      "BAD_REQUEST",
      "image_checksum must be the image's SHA-256 (hex)",
      "image_checksum",
    );
  const t = (b.targets ?? {}) as Record<string, unknown>;
  if (typeof t !== "object" || t === null || Array.isArray(t))
    throw new HeadendError("BAD_REQUEST", "targets must be an object", "targets");
  const targets: CampaignTargets = {
    ...(stringList(t.dcu_ids, "targets.dcu_ids") === undefined ? {} : { dcuIds: stringList(t.dcu_ids, "")! }),
    ...(stringList(t.models, "targets.models") === undefined ? {} : { models: stringList(t.models, "")! }),
    ...(stringList(t.groups, "targets.groups") === undefined ? {} : { groups: stringList(t.groups, "")! }),
    ...(stringList(t.versions, "targets.versions") === undefined
      ? {}
      : { versions: stringList(t.versions, "")! }),
    ...(stringList(t.meter_ids, "targets.meter_ids") === undefined
      ? {}
      : { meterIds: stringList(t.meter_ids, "")! }),
  };
  let waves: number[] | undefined;
  if (b.waves !== undefined) {
    if (!Array.isArray(b.waves) || b.waves.some((w) => typeof w !== "number"))
      throw new HeadendError("BAD_REQUEST", "waves must be an array of percentages", "waves");
    waves = b.waves as number[];
  }
  const windowMinutes = optionalNumber(b.window_minutes, "window_minutes");
  const errorCount = optionalNumber(b.error_count, "error_count");
  const errorShare = optionalNumber(b.error_share, "error_share");
  const successShare = optionalNumber(b.success_share, "success_share");
  const limit = optionalNumber(b.session_limit_per_dcu, "session_limit_per_dcu");
  if (b.auto_advance !== undefined && typeof b.auto_advance !== "boolean")
    throw new HeadendError("BAD_REQUEST", "auto_advance must be a boolean", "auto_advance");
  return {
    name: b.name,
    kind: kind as CampaignKind,
    imageChecksum: b.image_checksum,
    targets,
    ...(waves === undefined ? {} : { waves }),
    ...(windowMinutes === undefined ? {} : { windowMs: Math.round(windowMinutes * 60_000) }),
    ...(errorCount === undefined ? {} : { errorCount }),
    ...(errorShare === undefined ? {} : { errorShare }),
    ...(successShare === undefined ? {} : { successShare }),
    ...(limit === undefined ? {} : { sessionLimitPerDcu: limit }),
    ...(b.auto_advance === undefined ? {} : { autoAdvance: b.auto_advance as boolean }),
  };
}

export function campaignRoutes(deps: ApiDeps): CampaignRoute[] {
  const action = (
    verb: string,
    summary: string,
    run: (s: CampaignService, id: string, actor: Actor, body: Record<string, unknown>) => unknown,
  ): CampaignRoute => ({
    method: "POST",
    url: `/api/campaigns/:id/${verb}`,
    role: "operator",
    summary,
    handler: async (request, _reply, principal) =>
      mapped(async () => {
        const s = service(deps);
        await s.ready;
        const id = idOf(request);
        const result = run(s, id, actorOf(principal), bodyOf(request));
        s.save();
        return {
          ...campaignStatus(s.manager.get(id)),
          ...(typeof result === "object" && result !== null ? result : {}),
        };
      }),
  });
  return [
    {
      method: "POST",
      url: "/api/campaigns/images",
      role: "admin",
      summary:
        "Add a signed firmware image to the repository { image_base64 }: CRC, certificate chain, expiry and signature verified; metrology and bootloader refused (seed 001)",
      body: "{ image_base64 }",
      handler: async (request, reply) =>
        mapped(async () => {
          const s = service(deps);
          const b = bodyOf(request);
          if (typeof b.image_base64 !== "string" || b.image_base64.length === 0)
            throw new HeadendError("BAD_REQUEST", "image_base64 must be the image, base64", "image_base64");
          const image = s.repository.add(new Uint8Array(Buffer.from(b.image_base64, "base64")), deps.nowMs());
          // The asset register's record of the image (listed by GET /api/firmware).
          const stored = await deps.store.putFirmware({
            component: image.component,
            version: image.versionText,
            releaseCounter: image.version,
            checksum: image.checksum,
            image: image.bytes,
            expiryMs: image.expiresMs === 0 ? null : image.expiresMs,
            uploadedMs: deps.nowMs(),
          });
          reply.status(stored ? 201 : 200);
          return {
            component: image.component,
            version: image.versionText,
            release_counter: image.version,
            checksum: image.checksum,
            hw_target: image.hwTarget,
            expires_ms: image.expiresMs,
            signer: image.signer,
            stored,
          };
        }),
    },
    {
      method: "GET",
      url: "/api/campaigns",
      role: "viewer",
      summary: "Firmware campaigns with their counts by meter state",
      handler: async () =>
        mapped(() => ({
          items: service(deps)
            .manager.list()
            .map((c) => {
              const { history: _history, ...summary } = campaignStatus(c);
              return summary;
            }),
        })),
    },
    {
      method: "POST",
      url: "/api/campaigns",
      role: "operator",
      summary:
        "Create a campaign { name, kind: update|rollback_full|rollback_app, image_checksum, targets: { dcu_ids, models, groups, versions, meter_ids }, waves, success_share, error_count, error_share, auto_advance, window_minutes, session_limit_per_dcu } (rollbacks: admin); it waits for approval",
      body: "{ name, kind, image_checksum, targets, waves, … }",
      handler: async (request, reply, principal) =>
        mapped(async () => {
          const s = service(deps);
          await s.ready;
          const spec = specFromJson(bodyOf(request));
          const campaign = s.manager.create(spec, await s.fleet(), actorOf(principal));
          s.save();
          reply.status(201);
          return campaignStatus(campaign);
        }),
    },
    {
      method: "GET",
      url: "/api/campaigns/:id",
      role: "viewer",
      summary: "One campaign: state, counts by meter state, waves, reasons, recent history",
      handler: async (request) => mapped(() => campaignStatus(service(deps).manager.get(idOf(request)))),
    },
    {
      method: "GET",
      url: "/api/campaigns/:id/meters",
      role: "viewer",
      summary: "Meters of a campaign with their state and reason, paged by position",
      query: [
        { name: "state", type: "string", description: METER_CAMPAIGN_STATES.join(" | ") },
        { name: "cursor", type: "integer", description: "next_cursor of the previous page" },
        { name: "limit", type: "integer", description: `rows per page, 1..${PAGE_ROWS_MAX} (default 100)` },
      ],
      handler: async (request) =>
        mapped(() => {
          const q = (request.query ?? {}) as Record<string, unknown>;
          const c = service(deps).manager.get(idOf(request));
          const state = typeof q.state === "string" && q.state !== "" ? q.state : null;
          if (state !== null && !(METER_CAMPAIGN_STATES as readonly string[]).includes(state))
            throw new HeadendError(
              "BAD_REQUEST",
              `state must be one of ${METER_CAMPAIGN_STATES.join(", ")}`,
              "state",
            );
          const from = q.cursor === undefined ? 0 : Number(q.cursor);
          const limit = q.limit === undefined ? 100 : Number(q.limit);
          if (!Number.isSafeInteger(from) || from < 0)
            throw new HeadendError("BAD_REQUEST", "bad cursor", "cursor");
          if (!Number.isSafeInteger(limit) || limit < 1 || limit > PAGE_ROWS_MAX)
            throw new HeadendError("BAD_REQUEST", `limit must be 1..${PAGE_ROWS_MAX}`, "limit");
          const items: Record<string, unknown>[] = [];
          let i = from;
          for (; i < c.meters.length && items.length < limit; i++) {
            const m = c.meters[i]!;
            if (state === null || m.state === state) items.push(meterJobToJson(m));
          }
          return { items, next_cursor: i < c.meters.length ? String(i) : null };
        }),
    },
    action(
      "approve",
      "Approve a campaign (rollbacks: admin)",
      (s, id, a) => s.manager.approve(id, a) && null,
    ),
    action(
      "start",
      "Start an approved campaign: its first wave is dispatched, staggered",
      (s, id, a) => s.manager.start(id, a) && null,
    ),
    action(
      "pause",
      "Pause: queued commands are withdrawn, sessions in flight finish",
      (s, id, a) => s.manager.pause(id, a) && null,
    ),
    action(
      "resume",
      "Resume a paused campaign (the error condition counts afresh)",
      (s, id, a) => s.manager.resume(id, a) && null,
    ),
    action(
      "advance",
      "Release the next wave of a campaign waiting for an operator",
      (s, id, a) => s.manager.advance(id, a) && null,
    ),
    action("retry", "Retry the failed meters only", (s, id, a) => ({
      retried: s.manager.retryFailed(id, a).retried,
    })),
    action(
      "cancel",
      "Cancel { forced?: boolean } — forced also abandons sessions and ignores late reports",
      (s, id, a, b) => {
        if (b.forced !== undefined && typeof b.forced !== "boolean")
          throw new HeadendError("BAD_REQUEST", "forced must be a boolean", "forced");
        return s.manager.cancel(id, a, b.forced === true) && null;
      },
    ),
  ];
}
