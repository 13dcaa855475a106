import { keyFingerprint, toHex } from "../../evidence/index.ts";
import {
  type ConcentratorRow,
  type EventRow,
  encodeCursor,
  type GapQuery,
  type HeadendStore,
  type MeterRow,
  type Page,
  type ReadingRow,
  type StoredGapRow,
} from "../store/index.ts";

// JSON views of stored rows for the API: the seeds' snake_case on the wire (STYLE.md §4), and the paged
// queries the store does not offer directly.

export function meterToJson(m: MeterRow): Record<string, unknown> {
  return {
    meter_id: m.meterId,
    dcu_id: m.dcuId,
    model: m.model,
    group: m.group,
    transformer_id: m.transformerId,
    firmware_version: m.firmwareVersion,
    firmware_bank: m.firmwareBank,
    tamper_state: m.tamperState,
    last_seq: m.lastSeq,
    last_reading_ms: m.lastReadingMs,
    time_quality: m.timeQuality,
    online: m.online,
    updated_ms: m.updatedMs,
  };
}

export function readingToJson(r: ReadingRow): Record<string, unknown> {
  return {
    meter_id: r.meterId,
    seq: r.seq,
    obis: r.obis,
    value: r.value,
    scaler: r.scaler,
    unit: r.unit,
    timestamp_ms: r.timestampMs,
    time_quality: r.timeQuality,
    commit_id: r.commitId,
    dcu_id: r.dcuId,
    batch_id: r.batchId,
    record_crc: r.recordCrc,
  };
}

export function eventToJson(e: EventRow): Record<string, unknown> {
  return {
    meter_id: e.meterId,
    seq: e.seq,
    type: e.type,
    level: e.level,
    timestamp_ms: e.timestampMs,
    time_quality: e.timeQuality,
    verified: e.verified,
    dcu_id: e.dcuId,
    received_ms: e.receivedMs,
    record: toHex(e.record),
  };
}

export function gapToJson(g: StoredGapRow): Record<string, unknown> {
  return {
    gap_id: g.gapId,
    class: g.gapClass,
    meter_id: g.meterId === "" ? null : g.meterId,
    dcu_id: g.dcuId,
    from: g.from,
    to: g.to,
    detected_ms: g.detectedMs,
    attributed_to: g.attributedTo,
    batch_id: g.batchId,
    resolved_ms: g.resolvedMs,
  };
}

export function concentratorToJson(
  c: ConcentratorRow,
  live: {
    readonly lastBatchMs: number | null;
    readonly status: Readonly<Record<string, unknown>> | null;
    readonly statusMs: number | null;
  },
): Record<string, unknown> {
  return {
    dcu_id: c.dcuId,
    batch_sign_key_id: keyFingerprint(c.publicKey),
    batch_sign_public_key: toHex(c.publicKey),
    last_batch_id: c.lastBatchId,
    last_batch_hash: c.lastBatchHash === null ? null : toHex(c.lastBatchHash),
    epoch: c.epoch,
    registered_ms: c.registeredMs,
    updated_ms: c.updatedMs,
    last_batch_received_ms: live.lastBatchMs,
    status_ms: live.statusMs,
    packs: live.status,
  };
}

export function pageToJson<T>(
  page: Page<T>,
  view: (item: T) => Record<string, unknown>,
): Record<string, unknown> {
  return { items: page.items.map(view), next_cursor: page.nextCursor };
}

/** Gap pages scanned at most to fill one page of a detection-time range (gaps are listed newest first). */
export const GAP_RANGE_SCAN_PAGES_MAX = 20;

/**
 * Gaps detected in [fromMs, toMs), newest first. The store pages by gap_id (detection order); this walks
 * pages until it has `limit` gaps in range or passes below `fromMs`, at most GAP_RANGE_SCAN_PAGES_MAX pages.
 */
export async function listGapsInRange(
  store: HeadendStore,
  query: GapQuery,
  fromMs: number | null,
  toMs: number | null,
): Promise<Page<StoredGapRow>> {
  if (fromMs === null && toMs === null) return store.listGaps(query);
  const limit = query.limit ?? 100;
  const items: StoredGapRow[] = [];
  let cursor = query.cursor ?? null;
  for (let pages = 0; pages < GAP_RANGE_SCAN_PAGES_MAX; pages++) {
    const page = await store.listGaps({ ...query, cursor, limit });
    for (const gap of page.items) {
      if (fromMs !== null && gap.detectedMs < fromMs) return { items, nextCursor: null };
      if (toMs !== null && gap.detectedMs >= toMs) continue;
      items.push(gap);
      if (items.length === limit)
        return { items, nextCursor: page.nextCursor === null ? null : encodeCursor([gap.gapId]) };
    }
    cursor = page.nextCursor;
    if (cursor === null) return { items, nextCursor: null };
  }
  return { items, nextCursor: cursor };
}
