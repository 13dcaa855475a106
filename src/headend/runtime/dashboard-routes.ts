// shell: read-only aggregation endpoints for the web dashboard (issue 10), entries of api.ts's route table
// (so they are authenticated by its hook and described in /openapi.json like every other route).
// They exist because the dashboard must never load the whole fleet: evidence health is aggregated here
// (bounded scans, said so in the answer when the bound is hit), and the event log is re-verified here,
// record by record, with the evidence library — the browser shows the verdict, it does not compute it.
import type { FastifyReply, FastifyRequest } from "fastify";
import {
  bytesEqual,
  decodeEventRecord,
  type EventRecord,
  genesisDigest,
  toHex,
  verifyEventSignature,
} from "../../evidence/index.ts";
import type { Principal, Role } from "../core/auth.ts";
import { HeadendError } from "../errors.ts";
import {
  type EventRow,
  GAP_CLASSES,
  type GapClass,
  PAGE_ROWS_MAX,
  type Page,
  type StoredGapRow,
} from "../store/index.ts";
import type { ApiDeps } from "./api.ts";

/** Gap rows one timeline request scans at most (newest first); beyond, the answer says `truncated`. */
export const GAP_TIMELINE_SCAN_ROWS_MAX = 50_000;
export const GAP_TIMELINE_BUCKETS_MAX = 200;
export const GAP_TIMELINE_BUCKETS_DEFAULT = 48;
/** Concentrators and meters listed per class breakdown (the most affected first). */
export const GAP_TIMELINE_TOP_MAX = 50;
export const EVENT_LOG_ROWS_MAX = 200;
/** A page's first record whose predecessor is on an earlier page: looked up this far back in time. */
export const EVENT_PREDECESSOR_WINDOW_MS = 31 * 24 * 3_600_000;
/** Newest-first pages look back through at most this many growing windows, then from the range's start. */
export const EVENT_NEWEST_WINDOWS_MAX = 12;
/** Rows one newest-first window reads at most. */
export const EVENT_NEWEST_SCAN_ROWS_MAX = 50_000;

type Verdict = "valid" | "invalid" | "no_key" | "undecodable";
type ChainVerdict = "linked" | "genesis" | "broken" | "predecessor_missing";

interface GapCounts {
  SEQ_GAP: number;
  COMMIT_GAP: number;
  UPLINK_GAP: number;
  TIME_STEP: number;
}

function zeroCounts(): GapCounts {
  return { SEQ_GAP: 0, COMMIT_GAP: 0, UPLINK_GAP: 0, TIME_STEP: 0 };
}

function total(c: GapCounts): number {
  return c.SEQ_GAP + c.COMMIT_GAP + c.UPLINK_GAP + c.TIME_STEP;
}

function queryText(request: FastifyRequest, name: string): string | undefined {
  const value = (request.query as Record<string, unknown> | undefined)?.[name];
  if (value === undefined || value === "") return undefined;
  if (typeof value !== "string" || value.length > 256)
    throw new HeadendError("BAD_REQUEST", `${name} must be given once, at most 256 characters`, name);
  return value;
}

function queryTime(request: FastifyRequest, name: string): number | undefined {
  const value = queryText(request, name);
  if (value === undefined) return undefined;
  const n = /^-?\d+$/.test(value) ? Number(value) : Date.parse(value);
  if (!Number.isSafeInteger(n))
    throw new HeadendError(
      "BAD_REQUEST",
      `${name} must be UTC milliseconds or ISO 8601, got "${value}"`,
      name,
    );
  return n;
}

function queryInt(request: FastifyRequest, name: string, min: number, max: number): number | undefined {
  const value = queryText(request, name);
  if (value === undefined) return undefined;
  const n = Number(value);
  if (!Number.isSafeInteger(n) || n < min || n > max)
    throw new HeadendError(
      "BAD_REQUEST",
      `${name} must be an integer in ${min}..${max}, got "${value}"`,
      name,
    );
  return n;
}

/** The shape of api.ts's route table entries. */
export interface DashboardRoute {
  readonly method: "GET";
  readonly url: string;
  readonly role: Role;
  readonly summary: string;
  readonly query: readonly {
    readonly name: string;
    readonly type: "string" | "integer" | "boolean";
    readonly description: string;
  }[];
  readonly handler: (
    request: FastifyRequest,
    reply: FastifyReply,
    principal: Principal | null,
  ) => Promise<unknown>;
}

const TIME_HELP = "UTC milliseconds or an ISO 8601 date-time";

export function dashboardRoutes(deps: ApiDeps): DashboardRoute[] {
  const { store } = deps;
  return [
    {
      method: "GET",
      url: "/api/dashboard/gaps/timeline",
      role: "viewer",
      summary:
        "Gaps by class over time (detection time in equal buckets), per concentrator and per meter (most affected first); scans at most 50,000 gaps, newest first (`truncated` says when the bound was hit)",
      query: [
        { name: "from", type: "string", description: `${TIME_HELP} (default: 7 days before to)` },
        { name: "to", type: "string", description: `${TIME_HELP} (default: now)` },
        {
          name: "buckets",
          type: "integer",
          description: `1..${GAP_TIMELINE_BUCKETS_MAX} (default ${GAP_TIMELINE_BUCKETS_DEFAULT})`,
        },
        {
          name: "top",
          type: "integer",
          description: `concentrators and meters listed, 1..${GAP_TIMELINE_TOP_MAX} (default 10)`,
        },
      ],
      handler: (request) => gapTimeline(request),
    },
    {
      method: "GET",
      url: "/api/dashboard/meters/:id/event-log",
      role: "viewer",
      summary:
        "A meter's sealed event log, one page, each record re-checked now: CRC, signature with the provisioned event_seal key, link to the digest of seq − 1 (or the genesis digest)",
      query: [
        { name: "from", type: "string", description: TIME_HELP },
        { name: "to", type: "string", description: TIME_HELP },
        {
          name: "limit",
          type: "integer",
          description: `rows per page, 1..${EVENT_LOG_ROWS_MAX} (default 50)`,
        },
        { name: "cursor", type: "string", description: "next_cursor of the previous page (oldest first)" },
        {
          name: "order",
          type: "string",
          description: "newest: the newest page first; `older` names the next",
        },
        {
          name: "before_ms",
          type: "integer",
          description: "order=newest: records before (before_ms, before_seq)",
        },
        { name: "before_seq", type: "integer", description: "order=newest: see before_ms" },
      ],
      handler: (request) => eventLog(request),
    },
  ];

  /**
   * Gaps by class over time (detection time, `buckets` equal buckets over [from, to)), per concentrator
   * and per meter (the most affected first). Scans at most GAP_TIMELINE_SCAN_ROWS_MAX gaps, newest first.
   */
  async function gapTimeline(request: FastifyRequest) {
    const toMs = queryTime(request, "to") ?? deps.nowMs();
    const fromMs = queryTime(request, "from") ?? toMs - 7 * 24 * 3_600_000;
    if (toMs <= fromMs) throw new HeadendError("BAD_REQUEST", "from must be before to");
    const buckets = queryInt(request, "buckets", 1, GAP_TIMELINE_BUCKETS_MAX) ?? GAP_TIMELINE_BUCKETS_DEFAULT;
    const top = queryInt(request, "top", 1, GAP_TIMELINE_TOP_MAX) ?? 10;
    const bucketMs = Math.max(1, Math.ceil((toMs - fromMs) / buckets));
    const series: Record<GapClass, number[]> = {
      SEQ_GAP: new Array(buckets).fill(0),
      COMMIT_GAP: new Array(buckets).fill(0),
      UPLINK_GAP: new Array(buckets).fill(0),
      TIME_STEP: new Array(buckets).fill(0),
    };
    const byDcu = new Map<string, GapCounts>();
    const byMeter = new Map<string, GapCounts & { dcuId: string }>();
    let scanned = 0;
    let inRange = 0;
    let openInRange = 0;
    let truncated = false;
    let cursor: string | null = null;
    scan: for (;;) {
      const page: Page<StoredGapRow> = await store.listGaps({
        limit: PAGE_ROWS_MAX,
        cursor,
      });
      for (const gap of page.items) {
        scanned++;
        if (gap.detectedMs < fromMs) break scan;
        if (gap.detectedMs < toMs) {
          inRange++;
          if (gap.resolvedMs === null) openInRange++;
          const bucket = Math.min(buckets - 1, Math.floor((gap.detectedMs - fromMs) / bucketMs));
          series[gap.gapClass][bucket] = (series[gap.gapClass][bucket] ?? 0) + 1;
          const dcu = byDcu.get(gap.dcuId) ?? zeroCounts();
          dcu[gap.gapClass]++;
          byDcu.set(gap.dcuId, dcu);
          if (gap.meterId !== "") {
            const meter = byMeter.get(gap.meterId) ?? { ...zeroCounts(), dcuId: gap.dcuId };
            meter[gap.gapClass]++;
            byMeter.set(gap.meterId, meter);
          }
        }
        if (scanned >= GAP_TIMELINE_SCAN_ROWS_MAX) {
          truncated = page.nextCursor !== null || gap !== page.items[page.items.length - 1];
          break scan;
        }
      }
      cursor = page.nextCursor;
      if (cursor === null) break;
    }
    const ranked = <T extends GapCounts>(entries: [string, T][]) =>
      entries.sort((a, b) => total(b[1]) - total(a[1]) || (a[0] < b[0] ? -1 : 1)).slice(0, top);
    return {
      from_ms: fromMs,
      to_ms: toMs,
      bucket_ms: bucketMs,
      buckets: Array.from({ length: buckets }, (_, i) => fromMs + i * bucketMs),
      classes: GAP_CLASSES.map((c) => ({ class: c, counts: series[c] })),
      gaps_in_range: inRange,
      open_in_range: openInRange,
      scanned,
      truncated,
      by_dcu: ranked([...byDcu.entries()]).map(([dcuId, c]) => ({ dcu_id: dcuId, ...c, total: total(c) })),
      dcus_total: byDcu.size,
      by_meter: ranked([...byMeter.entries()]).map(([meterId, c]) => ({
        meter_id: meterId,
        dcu_id: c.dcuId,
        SEQ_GAP: c.SEQ_GAP,
        COMMIT_GAP: c.COMMIT_GAP,
        UPLINK_GAP: c.UPLINK_GAP,
        TIME_STEP: c.TIME_STEP,
        total: total(c),
      })),
      meters_total: byMeter.size,
    };
  }

  /**
   * A meter's sealed event log, one page, each record re-checked now: decoded (CRC), its signature against
   * the provisioned event_seal key, and its prev_digest against the digest of record seq − 1 (or the
   * meter's genesis digest for seq 1).
   */
  /**
   * The newest `limit` events in [fromMs, toMs) (before `before` when given), oldest first. The store pages
   * forward in time, so this looks back through windows growing ×8 from one minute until `limit` events
   * are in reach (at most EVENT_NEWEST_WINDOWS_MAX windows; then from `fromMs`), reading at most
   * EVENT_NEWEST_SCAN_ROWS_MAX rows of the final window.
   */
  async function newestEvents(
    meterId: string,
    fromMs: number,
    toMs: number,
    limit: number,
    before: { ms: number; seq: number } | null,
  ): Promise<{ items: EventRow[]; more: boolean }> {
    const keep = (e: EventRow) =>
      before === null || e.timestampMs < before.ms || (e.timestampMs === before.ms && e.seq < before.seq);
    let windowMs = 60_000;
    for (let w = 0; ; w++) {
      const start = w >= EVENT_NEWEST_WINDOWS_MAX ? fromMs : Math.max(fromMs, toMs - windowMs);
      const rows: EventRow[] = [];
      let cursor: string | null = null;
      let scanned = 0;
      do {
        const page: Page<EventRow> = await store.listEvents(meterId, start, toMs, {
          limit: PAGE_ROWS_MAX,
          cursor,
        });
        for (const e of page.items) if (keep(e)) rows.push(e);
        if (rows.length > limit) rows.splice(0, rows.length - limit - 1); // the newest limit + 1 only
        scanned += page.items.length;
        cursor = page.nextCursor;
      } while (cursor !== null && scanned < EVENT_NEWEST_SCAN_ROWS_MAX);
      if (rows.length > limit) return { items: rows.slice(1), more: true };
      if (start === fromMs) return { items: rows, more: false };
      windowMs *= 8;
    }
  }

  async function eventLog(request: FastifyRequest) {
    const meterId = (request.params as Record<string, unknown>).id;
    if (typeof meterId !== "string" || meterId.length === 0 || meterId.length > 128)
      throw new HeadendError("BAD_REQUEST", "path parameter id is missing or too long", "id");
    const limit = queryInt(request, "limit", 1, EVENT_LOG_ROWS_MAX) ?? 50;
    const fromMs = queryTime(request, "from") ?? 0;
    const toMs = queryTime(request, "to") ?? deps.nowMs() + 86_400_000;
    const newest = queryText(request, "order") === "newest";
    let page: Page<EventRow>;
    let older: { before_ms: number; before_seq: number } | null = null;
    if (newest) {
      const beforeMs = queryInt(request, "before_ms", 0, Number.MAX_SAFE_INTEGER);
      const beforeSeq = queryInt(request, "before_seq", 0, 0xffff_ffff);
      const found = await newestEvents(
        meterId,
        fromMs,
        beforeMs === undefined ? toMs : Math.min(toMs, beforeMs + 1),
        limit,
        beforeMs === undefined || beforeSeq === undefined ? null : { ms: beforeMs, seq: beforeSeq },
      );
      page = { items: found.items, nextCursor: null };
      const oldest = found.items[0];
      if (found.more && oldest !== undefined)
        older = { before_ms: oldest.timestampMs, before_seq: oldest.seq };
    } else {
      page = await store.listEvents(meterId, fromMs, toMs, {
        limit,
        cursor: queryText(request, "cursor") ?? null,
      });
    }
    const key = deps.registry.meterKey(meterId);
    const decoded: (EventRecord | null)[] = page.items.map((row) => {
      try {
        return decodeEventRecord(row.record);
      } catch {
        return null;
      }
    });
    const digests = new Map<number, Uint8Array>();
    for (const record of decoded) if (record !== null) digests.set(record.seq, record.digest);
    const items = [];
    for (let i = 0; i < page.items.length; i++) {
      const row = page.items[i]!;
      const record = decoded[i] ?? null;
      let signature: Verdict = "undecodable";
      let chain: ChainVerdict = "broken";
      let problem: string | null = null;
      if (record === null) {
        problem = "the stored record does not decode (CRC or structure)";
      } else {
        signature = key === null ? "no_key" : verifyEventSignature(record, key) ? "valid" : "invalid";
        if (record.seq === 1) {
          chain = bytesEqual(record.prevDigest, genesisDigest(meterId)) ? "genesis" : "broken";
        } else {
          const previous = digests.get(record.seq - 1) ?? (await findDigest(meterId, record));
          if (previous === null) chain = "predecessor_missing";
          else chain = bytesEqual(previous, record.prevDigest) ? "linked" : "broken";
        }
        if (signature === "invalid") problem = "signature does not verify with the meter's event_seal key";
        else if (signature === "no_key") problem = "no event_seal key provisioned for this meter";
        else if (chain === "broken")
          problem = `prev_digest does not match the digest of seq ${record.seq - 1}`;
        else if (chain === "predecessor_missing")
          problem = `seq ${record.seq - 1} was not found among the records just before this one`;
      }
      items.push({
        seq: row.seq,
        type: row.type,
        level: row.level,
        timestamp_ms: row.timestampMs,
        time_quality: row.timeQuality,
        dcu_id: row.dcuId,
        received_ms: row.receivedMs,
        verified_at_ingest: row.verified,
        snapshot: record?.snapshot ?? null,
        digest: record === null ? null : toHex(record.digest),
        signature,
        chain,
        ok: signature === "valid" && (chain === "linked" || chain === "genesis"),
        problem,
      });
    }
    return {
      meter_id: meterId,
      key_provisioned: key !== null,
      items,
      next_cursor: page.nextCursor,
      ...(newest ? { older } : {}),
    };

    async function findDigest(id: string, record: EventRecord): Promise<Uint8Array | null> {
      // Bounded: one page of the meter's events in the window before this record.
      const near = await store.listEvents(
        id,
        record.timestampMs - EVENT_PREDECESSOR_WINDOW_MS,
        record.timestampMs + 1,
        { limit: PAGE_ROWS_MAX, cursor: null },
      );
      let found: EventRow | undefined;
      for (const e of near.items) if (e.seq === record.seq - 1) found = e;
      if (found === undefined) return null;
      try {
        return decodeEventRecord(found.record).digest;
      } catch {
        return null;
      }
    }
  }
}
