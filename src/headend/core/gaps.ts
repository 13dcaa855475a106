import type { BatchHeader } from "../../evidence/index.ts";
import { COMMIT_GAPS_MAX, type GapRow } from "../store/index.ts";

// seed 003 H2-4 "two-axis attribution", applied by the receiver:
//   SEQ gap + COMMIT continuous        → capture did not happen or was refused before commit  (SEQ_GAP, "capture")
//   SEQ continuous + COMMIT gap        → the storage commit path lost records                 (COMMIT_GAP, "storage")
//   SEQ & COMMIT continuous + uplink gap → backhaul retry / batching                         (UPLINK_GAP, "uplink")
// A SEQ gap that falls inside a COMMIT gap is the same loss seen on both axes: it is attributed to
// storage. Timestamps that go backwards for one meter are TIME_STEP evidence (H2-4 "RTC step").

/** What the head-end remembers of one meter between batches (in batch_id order only). */
export interface MeterCursor {
  readonly lastSeq: number;
  readonly lastReadingMs: number;
  /** commit_id of the meter's last record, when this process saw it. */
  readonly lastCommitId: number | null;
}

/** What gap attribution reads of a reading record. */
export interface GapRecord {
  readonly meterId: string;
  readonly seq: number;
  readonly commitId: number;
  readonly timestampMs: number;
}

export interface GapInput {
  readonly header: BatchHeader;
  /** The batch's records in batch (commit_id) order. */
  readonly records: readonly GapRecord[];
  readonly detectedMs: number;
  /** The batch before this one in batch_id order, when it is known and this batch directly follows it. */
  readonly previous: { readonly commitIdLast: number; readonly epoch: number } | null;
  /** batch_ids between the chain head and this batch that never arrived (this batch skipped ahead). */
  readonly uplinkMissing: { readonly from: number; readonly to: number } | null;
  /** Per-meter cursor before this batch; only consulted when `previous` is known (in-order delivery). */
  readonly meterCursor: (meterId: string) => MeterCursor | undefined;
}

export interface GapResult {
  readonly gaps: GapRow[];
  /** Gaps beyond COMMIT_GAPS_MAX that were not recorded (counted, never silent). */
  readonly dropped: number;
}

export function classifyGaps(input: GapInput): GapResult {
  const { header, records } = input;
  const dcuId = header.dcuId;
  const gaps: GapRow[] = [];
  let dropped = 0;
  const push = (gap: GapRow) => {
    if (gaps.length < COMMIT_GAPS_MAX) gaps.push(gap);
    else dropped++;
  };
  const base = { dcuId, detectedMs: input.detectedMs, batchId: header.batchId };

  if (input.uplinkMissing !== null) {
    push({
      ...base,
      gapClass: "UPLINK_GAP",
      meterId: "",
      from: input.uplinkMissing.from,
      to: input.uplinkMissing.to,
      attributedTo: "uplink",
    });
  }

  // COMMIT axis: the boundary with the previous batch, then holes between consecutive records.
  const commitHoles: { from: number; to: number }[] = [];
  const previous = input.previous;
  if (previous !== null && header.commitIdFirst > previous.commitIdLast + 1) {
    const hole = { from: previous.commitIdLast + 1, to: header.commitIdFirst - 1 };
    commitHoles.push(hole);
    push({
      ...base,
      gapClass: "COMMIT_GAP",
      meterId: "",
      ...hole,
      attributedTo:
        header.epoch !== previous.epoch
          ? `storage (recovery epoch ${previous.epoch} → ${header.epoch})`
          : "storage",
    });
  }
  let lastCommitId: number | null = null;
  for (const record of records) {
    if (lastCommitId !== null && record.commitId > lastCommitId + 1) {
      const hole = { from: lastCommitId + 1, to: record.commitId - 1 };
      commitHoles.push(hole);
      push({ ...base, gapClass: "COMMIT_GAP", meterId: "", ...hole, attributedTo: "storage" });
    }
    lastCommitId = record.commitId;
  }
  const commitHoleBetween = (after: number | null, before: number): boolean => {
    for (const hole of commitHoles) {
      if (hole.to < before && (after === null || hole.from > after)) return true;
    }
    return false;
  };

  // SEQ axis per meter, and time steps.
  const cursors = new Map<string, { seq: number; ms: number; commitId: number | null }>();
  for (const record of records) {
    let cursor = cursors.get(record.meterId);
    if (cursor === undefined && previous !== null) {
      const known = input.meterCursor(record.meterId);
      if (known !== undefined)
        cursor = { seq: known.lastSeq, ms: known.lastReadingMs, commitId: known.lastCommitId };
    }
    if (cursor !== undefined) {
      if (record.seq > cursor.seq + 1) {
        push({
          ...base,
          gapClass: "SEQ_GAP",
          meterId: record.meterId,
          from: cursor.seq + 1,
          to: record.seq - 1,
          attributedTo: commitHoleBetween(cursor.commitId, record.commitId) ? "storage" : "capture",
        });
      }
      if (record.timestampMs < cursor.ms) {
        push({
          ...base,
          gapClass: "TIME_STEP",
          meterId: record.meterId,
          from: record.timestampMs,
          to: cursor.ms,
          attributedTo: "rtc",
        });
      }
    }
    cursors.set(record.meterId, { seq: record.seq, ms: record.timestampMs, commitId: record.commitId });
  }
  return { gaps, dropped };
}
