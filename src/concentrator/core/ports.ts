import type { JournalEntry, ReadingValue } from "../../evidence/index.ts";

// The world the concentrator core is handed (DESIGN.md: a deterministic core with thin shells). The
// runtime wires real files, MQTT and the wall clock; tests and the lab wire memory and virtual time.

export interface Clock {
  nowMs(): number;
}

/** One reading as the meter reports it: its own seq (capture continuity), capture time, values. */
export interface MeterReading {
  readonly seq: number;
  readonly timestampMs: number;
  readonly values: readonly ReadingValue[];
  /**
   * The meter's own clock when it was read (DLMS: the clock object read with the registers). When given,
   * meter_clock_skew_cnt compares it with the concentrator's clock; when absent, the capture time is
   * compared (meters that capture at the moment of reading).
   */
  readonly meterClockMs?: number;
}

/**
 * How the concentrator reads a meter; the DLMS client (and the M-Bus master) implement it. Failures
 * throw ConcentratorError with an IFACE_* code so they land in the right iface_err_by_meter bucket;
 * anything else thrown is counted as IFACE_PROTOCOL.
 */
export interface MeterReader {
  /** The meter's newest reading (DLMS: GET of the registers with the profile's entries_in_use as seq). */
  readRegisters(meterId: string): Promise<MeterReading>;
  /** Readings with seq ≥ fromSeq, oldest first, at most `limit` (DLMS: profile generic, entry selector). */
  readProfile(meterId: string, fromSeq: number, limit: number): Promise<MeterReading[]>;
  /** Sealed event records (encodeEventRecord bytes) with seq ≥ fromSeq, oldest first, at most `limit`. */
  readEvents(meterId: string, fromSeq: number, limit: number): Promise<Uint8Array[]>;
}

export interface MeterConfig {
  readonly meterId: string;
  /** Physical port or address the meter hangs on: port_err_cnt is bucketed by it (seed 003 H2-9). */
  readonly port: string;
}

/**
 * The append-only journal of seed 003 H2-5 as the pipeline uses it: src/evidence's `Journal` satisfies
 * it as is. commit_id is the journal's; the concentrator stamps it into the reading record before the
 * append (see README "commit_id").
 */
export interface CommitJournal {
  /** Recovery epoch opened by the last recovery. */
  readonly epoch: number;
  /** The commit_id the next append will receive. */
  nextCommitId(): number;
  /** One group commit: resolves after the records and their commit frame are durable (fdatasync);
   *  the records get consecutive commit_ids from nextCommitId(), in call order. */
  appendMany(
    payloads: readonly Uint8Array[],
  ): Promise<{ firstCommitId: number; lastCommitId: number; epoch: number }>;
  /** Committed entries with commitId ≥ `commitId`, ascending, at most `limit`. */
  readFrom(commitId: number, limit: number): Promise<JournalEntry[]>;
  /** Head-end acknowledged everything through `commitId`: the space may be reclaimed. */
  releaseThrough(commitId: number): Promise<void>;
  /** Highest released commit_id (0 when nothing was released). */
  releasedThrough(): number;
  /** Highest durable commit_id (0 when empty). */
  lastCommitId(): number;
  /** The journal's own evidence (write_stall_cnt, commit_latency_p99, recovery…), carried in the commit pack. */
  metrics?(): object;
}

/** What the concentrator keeps beside the journal, written atomically (write-temp, fsync, rename). */
export interface DcuPersistentState {
  /** Highest batch_id ever sealed and acknowledged (the outbox holds the ones after it). */
  readonly lastAckedBatchId: number;
  /** batch_hash of that batch, null before the first ack (chain starts from genesis). */
  readonly chainHeadHash: Uint8Array | null;
  /** Per meter: highest reading seq durably committed (covers released journal entries). */
  readonly readingCursors: Readonly<Record<string, number>>;
  /** Per meter: highest event seq forwarded and PUBACKed on the alert lane. */
  readonly eventCursors: Readonly<Record<string, number>>;
  /** Lifetime counters that must survive restarts (uvlo_cnt, unclean restarts…). */
  readonly lifetime: Readonly<Record<string, number>>;
}

export interface DcuStore {
  loadState(): Promise<DcuPersistentState | null>;
  saveState(state: DcuPersistentState): Promise<void>;
  /** Sealed, unacknowledged batches (encodeBatch bytes), any order. */
  loadOutbox(): Promise<Uint8Array[]>;
  /** Durable before it resolves: a batch is never published before it is in the outbox. */
  putBatch(batchId: number, bytes: Uint8Array): Promise<void>;
  dropBatchesThrough(batchId: number): Promise<void>;
}

export interface PublishOptions {
  readonly qos: 0 | 1;
  readonly retain: boolean;
}

export interface UplinkTransport {
  /** Resolves at PUBACK (QoS 1) or when written (QoS 0); rejects when the link drops first. */
  publish(topic: string, payload: Uint8Array, options: PublishOptions): Promise<void>;
}
