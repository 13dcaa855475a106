import {
  type Batch,
  type BatchChainSection,
  bundleKey,
  bytesEqual,
  decodeBatchHeader,
  decodeEventRecord,
  decodeReadingRecord,
  type EventRecord,
  type EvidenceBundle,
  encodeBundle,
  type MeterLogSection,
  verifyEventChain,
} from "../../evidence/index.ts";
import {
  EXPORT_EVENTS_MAX,
  type HeadendStore,
  PAGE_ROWS_MAX,
  type StoredBatchRow,
  unpackRecords,
} from "../store/index.ts";
import type { KeyRegistry } from "./registry.ts";

// Evidence export (issue 7): a meter's readings over a time range, as the signed batches that carried them,
// and the meter's sealed event log, as one bundle that `amiproof verify` checks without trusting the head-end.
// Batches are exported whole (a Merkle root covers all of a batch's records), grouped into runs that chain
// (prev_batch_hash) so each run verifies on its own. The event log is exported from seq 1 (the genesis
// digest anchors it) up to the range's end, as far as it is contiguous; what cannot be anchored is named
// in `notes` rather than put in a bundle that would not verify.

export interface EvidenceExportResult {
  readonly bundle: EvidenceBundle;
  readonly text: string;
  readonly readings: number;
  readonly batches: number;
  readonly events: number;
  /** Why something in the range is not in the bundle. */
  readonly notes: string[];
}

export async function exportEvidenceBundle(
  store: HeadendStore,
  registry: KeyRegistry,
  meterId: string,
  fromMs: number,
  toMs: number,
): Promise<EvidenceExportResult> {
  const exported = await store.exportEvidence(meterId, fromMs, toMs);
  const notes: string[] = [];
  const keys = new Map<string, ReturnType<typeof bundleKey>>();

  const byDcu = new Map<string, StoredBatchRow[]>();
  for (const row of exported.batches) {
    const list = byDcu.get(row.dcuId) ?? [];
    byDcu.set(row.dcuId, list);
    list.push(row);
  }
  const batchChains: BatchChainSection[] = [];
  let batchCount = 0;
  for (const [dcuId, rows] of byDcu) {
    const publicKey = await registry.concentratorKey(dcuId);
    if (publicKey === null) {
      notes.push(`${rows.length} batches of ${dcuId} left out: its batch_sign key is no longer provisioned`);
      continue;
    }
    const key = bundleKey(dcuId, "batch_sign", publicKey);
    keys.set(key.keyId, key);
    rows.sort((a, b) => a.batchId - b.batchId);
    let run: Batch[] = [];
    let previous: StoredBatchRow | null = null;
    for (const row of rows) {
      if (row.header === null || row.records === null) {
        notes.push(`batch ${dcuId}/${row.batchId} left out: stored without its signed bytes`);
        continue;
      }
      const batch: Batch = {
        header: decodeBatchHeader(row.header),
        records: unpackRecords(row.records).map(decodeReadingRecord),
      };
      const chains =
        previous !== null &&
        previous.batchId === row.batchId - 1 &&
        bytesEqual(previous.batchHash, row.prevBatchHash);
      if (!chains && run.length > 0) {
        batchChains.push({ dcuId, keyId: key.keyId, batches: run });
        run = [];
      }
      run.push(batch);
      batchCount++;
      previous = row;
    }
    if (run.length > 0) batchChains.push({ dcuId, keyId: key.keyId, batches: run });
  }

  const meterLogs: MeterLogSection[] = [];
  let eventCount = 0;
  const eventKey = registry.meterKey(meterId);
  const records = await eventLogThrough(store, meterId, toMs);
  if (records.length > 0) {
    if (eventKey === null) {
      notes.push(`event log of ${meterId} left out: its event_seal key is not provisioned`);
    } else {
      let contiguous = records.findIndex((r, i) => r.seq !== (records[0] as EventRecord).seq + i);
      if (contiguous === -1) contiguous = records.length;
      const log = records.slice(0, contiguous);
      if (contiguous < records.length) {
        notes.push(
          `events of ${meterId} from seq ${records[contiguous]?.seq} left out: seq ${(log[log.length - 1]?.seq ?? 0) + 1} never reached the head-end`,
        );
      }
      const report = verifyEventChain(log, eventKey);
      if (report.problems.length > 0) {
        notes.push(
          `event log of ${meterId} left out: ${report.problems[0]?.message} (the head-end does not hold the log from its anchor)`,
        );
      } else {
        const key = bundleKey(meterId, "event_seal", eventKey);
        keys.set(key.keyId, key);
        meterLogs.push({ meterId, keyId: key.keyId, records: log });
        eventCount = log.length;
      }
    }
  }
  const bundle: EvidenceBundle = { keys: [...keys.values()], meterLogs, batchChains };
  return {
    bundle,
    text: encodeBundle(bundle),
    readings: exported.readings.length,
    batches: batchCount,
    events: eventCount,
    notes,
  };
}

/** The meter's stored events with timestamp before `toMs`, in seq order, at most EXPORT_EVENTS_MAX. */
async function eventLogThrough(store: HeadendStore, meterId: string, toMs: number): Promise<EventRecord[]> {
  const records: EventRecord[] = [];
  let cursor: string | null = null;
  do {
    const page = await store.listEvents(meterId, Number.MIN_SAFE_INTEGER, toMs, {
      limit: PAGE_ROWS_MAX,
      cursor,
    });
    for (const row of page.items) records.push(decodeEventRecord(row.record));
    cursor = page.nextCursor;
  } while (cursor !== null && records.length < EXPORT_EVENTS_MAX);
  return records.sort((a, b) => a.seq - b.seq).slice(0, EXPORT_EVENTS_MAX);
}
