import type { TimeQuality } from "../../evidence/index.ts";

// The concentrator's evidence counters, bucketed as seed 003 H2-10's five packs (power, interface,
// commit, uplink retries, time quality) plus the must-logs of the H2-9 failure-mode router
// (iface_err_by_meter, poll_marker, commit_state, commit_id_gap, retry_histogram, batch_range_marker,
// reconcile_summary). Every list is bounded; the counts beside it stay exact.

/** Recent SEQ_GAP / COMMIT_GAP / failing samples kept verbatim. */
export const EVIDENCE_LOG_MAX = 256;
/** commit_latency samples kept for the p99. */
export const POLL_TO_COMMIT_LATENCY_SAMPLES_MAX = 4096;
/** Meters tracked in the per-meter buckets (the concentrator's configured fleet bound). */
export const METERS_MAX = 10_000;

export type IfaceErrorKind =
  | "timeout"
  | "frame_crc"
  | "protocol"
  | "unreachable"
  | "bad_reading"
  | "bad_event";
export const IFACE_ERROR_KINDS: readonly IfaceErrorKind[] = [
  "timeout",
  "frame_crc",
  "protocol",
  "unreachable",
  "bad_reading",
  "bad_event",
];

export type SeqGapCause = "NOT_COLLECTED" | "REJECTED";
export type CommitGapCause = "EPOCH" | "JOURNAL" | "RECORD_CRC_FAIL";
export type CommitState = "RECOVERING" | "IDLE" | "COMMITTING" | "STALLED" | "CLOSED";

export interface SeqGapEntry {
  readonly meterId: string;
  readonly seqFirst: number;
  readonly seqLast: number;
  readonly cause: SeqGapCause;
  readonly atMs: number;
}

export interface CommitGapEntry {
  readonly commitIdFirst: number;
  readonly commitIdLast: number;
  readonly cause: CommitGapCause;
  readonly epoch: number;
  readonly atMs: number;
}

export interface PollMarker {
  polls: number;
  ok: number;
  lastPollMs: number | null;
  lastOkMs: number | null;
  consecutiveErrors: number;
}

export class EvidenceLog<T> {
  readonly entries: T[] = [];
  count = 0;

  push(entry: T): void {
    this.count++;
    this.entries.push(entry);
    if (this.entries.length > EVIDENCE_LOG_MAX) this.entries.shift();
  }
}

/** Mutable counters of the core; `packs()` in the orchestrator turns them into the wire JSON. */
export class ConcentratorCounters {
  // power pack (seed 003 H2-7/H2-10)
  vbatMinMv: number | null = null;
  vbatDroopCount = 0;
  uvloCount = 0;
  brownoutLogCount = 0;
  resetReason = "POWER_ON";
  // interface pack
  readonly ifaceErrByMeter = new Map<string, Record<IfaceErrorKind, number>>();
  readonly portErrCount = new Map<string, number>();
  frameCrcFail = 0;
  readonly pollMarker = new Map<string, PollMarker>();
  pollDeferredCount = 0;
  // commit pack
  commitState: CommitState = "RECOVERING";
  recordsCommitted = 0;
  writeFailCount = 0;
  recordCrcFailCount = 0;
  duplicateDroppedCount = 0;
  seqGapRecords = 0;
  meterTimeBackwardsCount = 0;
  meterClockSkewCount = 0;
  queueDepthMax = 0;
  readonly seqGaps = new EvidenceLog<SeqGapEntry>();
  readonly commitGaps = new EvidenceLog<CommitGapEntry>();
  readonly failingSamples = new EvidenceLog<{ commitId: number; hex: string; reason: string }>();
  readonly commitLatencyMs = new SampleRing(POLL_TO_COMMIT_LATENCY_SAMPLES_MAX);
  readonly timeQualityDistribution: Record<TimeQuality, number> = { RTC_ONLY: 0, SYNCED: 0, HOLDOVER: 0 };
  // reconcile / recovery
  recoveryReplayedRecords = 0;
  recoveryOutboxBatches = 0;
  recoveryAckedOnRestart = 0;

  ifaceError(meterId: string, port: string, kind: IfaceErrorKind): void {
    let bucket = this.ifaceErrByMeter.get(meterId);
    if (bucket === undefined) {
      bucket = Object.fromEntries(IFACE_ERROR_KINDS.map((k) => [k, 0])) as Record<IfaceErrorKind, number>;
      this.ifaceErrByMeter.set(meterId, bucket);
    }
    bucket[kind]++;
    this.portErrCount.set(port, (this.portErrCount.get(port) ?? 0) + 1);
    if (kind === "frame_crc") this.frameCrcFail++;
  }

  marker(meterId: string): PollMarker {
    let marker = this.pollMarker.get(meterId);
    if (marker === undefined) {
      marker = { polls: 0, ok: 0, lastPollMs: null, lastOkMs: null, consecutiveErrors: 0 };
      this.pollMarker.set(meterId, marker);
    }
    return marker;
  }
}

/** The newest `capacity` samples, overwritten in a ring (no per-sample allocation or shifting). */
export class SampleRing {
  private readonly samples: Float64Array;
  private next = 0;
  private filled = 0;

  constructor(capacity: number) {
    this.samples = new Float64Array(capacity);
  }

  push(value: number): void {
    this.samples[this.next] = value;
    this.next = (this.next + 1) % this.samples.length;
    if (this.filled < this.samples.length) this.filled++;
  }

  /** Nearest-rank percentile, null when empty. */
  percentile(p: number): number | null {
    if (this.filled === 0) return null;
    const sorted = Array.from(this.samples.subarray(0, this.filled)).sort((a, b) => a - b);
    const rank = Math.min(sorted.length, Math.max(1, Math.ceil(p * sorted.length)));
    return sorted[rank - 1] as number;
  }
}
