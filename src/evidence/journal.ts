import { crc32Range } from "./crypto.ts";
import { EvidenceError } from "./errors.ts";
import type { JournalStorage } from "./journal-storage.ts";

// The concentrator's append-only journal (seed 003 H2-5 "Power-loss-safe write semantics"): records land
// in segment files at write_ptr; a small commit frame closes each group, and commit_ptr moves past it only
// once the group is fdatasync'ed. append() resolves only then — "Ack must occur only after Commit
// durability is proven" — so nothing acknowledged can be lost, and anything past commit_ptr after a
// crash is a torn tail that recovery cuts off (write_ptr back to commit_ptr) and never returns.
//
// Frame (big-endian): length u32 · CRC-32 u32 · body, where length counts the body and the CRC covers it.
//   body = type u8 · commit_id u64 · epoch u32 · rest
//   RECORD  rest = payload (opaque: the concentrator stores encoded reading records)
//   COMMIT  commit_id = the group's last; rest = first commit_id u64 of the group
//   EPOCH   commit_id = the last durable one when the epoch opened; rest = reason u8 (0 first start, 1 recovery)
//   SEGMENT commit_id = the segment's first; epoch = the one in force before it; rest = "AMIJ" · version
// commit_id is strictly increasing and contiguous on disk, continuing across epochs; every open after an
// unclean stop starts a new epoch with a durable EPOCH frame. An id handed to an append whose group never
// became durable is handed out again after the recovery: that record was never acknowledged nor
// readable, and (epoch, commit_id) tells the two apart; a durable commit_id is never reused. A checkpoint file (two slots written in turn,
// so one always survives a torn write) holds the truth a FRAM would in the seed's media split: where the
// last checkpoint's commit_ptr was, the last commit_id and epoch there, the ack floor of releaseThrough,
// and a clean-shutdown flag. Recovery scans only from that checkpoint, so its cost is bounded by
// `checkpointEveryCommits` (seed 003 H2-5 ghost errors: "recovery takes longer over time").

/** Largest payload of one record. */
export const JOURNAL_RECORD_BYTES_MAX = 65_536;
/** Records per group commit (one write, one fdatasync). */
export const GROUP_COMMIT_RECORDS_MAX = 4096;
/** Payload bytes per group commit; an appendMany() larger than this is refused. */
export const GROUP_COMMIT_BYTES_MAX = 1_048_576;
/** Records waiting for the writer; beyond it append() refuses with LOG_FULL (back-pressure, never growth). */
export const JOURNAL_QUEUE_RECORDS_MAX = 65_536;
/** Payload bytes waiting for the writer, the same back-pressure in bytes. */
export const JOURNAL_QUEUE_BYTES_MAX = 64 * 1_048_576;
/** Default segment size: a new segment starts at the first group after the active one reaches it. */
export const JOURNAL_SEGMENT_BYTES_MAX = 4 * 1_048_576;
/** Default bound on retained segments (unreleased history): at it, appends are refused with LOG_FULL. */
export const JOURNAL_SEGMENTS_MAX = 4096;
/** Group commits between checkpoints by default. */
export const CHECKPOINT_EVERY_COMMITS_DEFAULT = 256;
/** Bytes written between checkpoints by default: with K commits, what bounds the recovery scan. */
export const CHECKPOINT_EVERY_BYTES_DEFAULT = 1_048_576;
/** A group commit (write + fdatasync) slower than this counts in write_stall_cnt by default. */
export const WRITE_STALL_MS_DEFAULT = 250;
/** Bytes added to a payload by its RECORD frame. */
export const JOURNAL_RECORD_OVERHEAD_BYTES = 21;
/** Bytes read at a time by scans and readFrom (memory stays bounded whatever the segment size). */
export const JOURNAL_READ_CHUNK_BYTES = 262_144;
/** readFrom keeps a start offset every this many bytes of a segment, so a read never walks a whole segment. */
export const JOURNAL_INDEX_STRIDE_BYTES = 65_536;

const FRAME_HEADER_BYTES = 8;
const BODY_FIXED_BYTES = 13;
const FRAME_RECORD = 1;
const FRAME_COMMIT = 2;
const FRAME_EPOCH = 3;
const FRAME_SEGMENT = 4;
const COMMIT_BODY_BYTES = BODY_FIXED_BYTES + 8;
const COMMIT_FRAME_BYTES = FRAME_HEADER_BYTES + COMMIT_BODY_BYTES;
const EPOCH_BODY_BYTES = BODY_FIXED_BYTES + 1;
const EPOCH_FRAME_BYTES = FRAME_HEADER_BYTES + EPOCH_BODY_BYTES;
const SEGMENT_BODY_BYTES = BODY_FIXED_BYTES + 5;
const SEGMENT_FRAME_BYTES = FRAME_HEADER_BYTES + SEGMENT_BODY_BYTES;
const SEGMENT_MAGIC = 0x414d494a; // "AMIJ"
/** On-disk format of segments and checkpoints; a segment of another format is refused (BAD_VERSION), never cut. */
export const JOURNAL_FORMAT_VERSION = 1;
const BODY_BYTES_MAX = BODY_FIXED_BYTES + JOURNAL_RECORD_BYTES_MAX;
/** The largest single write the journal makes: everything a power cut can leave torn in a segment. */
const IN_FLIGHT_BYTES_MAX =
  GROUP_COMMIT_BYTES_MAX + GROUP_COMMIT_RECORDS_MAX * JOURNAL_RECORD_OVERHEAD_BYTES + COMMIT_FRAME_BYTES;
const EPOCH_REASON_FIRST_START = 0;
const EPOCH_REASON_RECOVERY = 1;

const SEGMENT_PREFIX = "seg-";
const SEGMENT_SUFFIX = ".log";
const CHECKPOINT_FILE = "checkpoint";
const CHECKPOINT_MAGIC = 0x4a434b50; // "JCKP"
const CHECKPOINT_VERSION = 1;
const CHECKPOINT_SLOT_BYTES = 64;
const CHECKPOINT_BODY_BYTES = 52;

const TWO_POW_32 = 0x1_0000_0000;
const EMPTY = new Uint8Array(0);

export interface JournalOptions {
  readonly storage: JournalStorage;
  /** Monotonic milliseconds, for latency metrics only (the runtime passes performance.now, the lab virtual time). */
  readonly clockMs: () => number;
  /** A checkpoint follows at most this many group commits (default 256)… */
  readonly checkpointEveryCommits?: number;
  /** …or this many bytes written (default 1 MiB): the recovery scan covers at most that, plus one group. */
  readonly checkpointEveryBytes?: number;
  /** A group commit slower than this counts as a write stall (seed 003 H2-5 write_stall_cnt). */
  readonly stallThresholdMs?: number;
  readonly segmentBytesMax?: number;
  readonly segmentsMax?: number;
}

export interface JournalEntry {
  readonly commitId: number;
  readonly epoch: number;
  readonly payload: Uint8Array;
}

export interface JournalRecovery {
  /** True when the previous run did not close cleanly and a new epoch was opened. */
  readonly recovered: boolean;
  readonly epoch: number;
  readonly durationMs: number;
  /** journal_scan_bytes: bytes read from the checkpoint to the end. */
  readonly bytesScanned: number;
  /** Committed records found by the scan (those after the checkpoint). */
  readonly recordsRecovered: number;
  /** Bytes past the last commit boundary that were cut off (torn or never committed). */
  readonly tornBytes: number;
  /** Intact commit frames cut off with a torn group: the group's pages reached the disk out of order
   *  before its fdatasync finished, so it was never acknowledged (see `damagedTail`). */
  readonly tornCommitFrames: number;
  readonly lastCommitId: number;
  /** False when no checkpoint slot was valid and the scan started at the first segment. */
  readonly checkpointFound: boolean;
}

export interface JournalMetrics {
  readonly epoch: number;
  /** Last durable commit_id. */
  readonly commit_id: number;
  /** Byte offsets in the active segment: where bytes land, and the recoverable boundary. */
  readonly write_ptr: number;
  readonly commit_ptr: number;
  readonly segments: number;
  readonly commit_latency_p99: number;
  readonly write_stall_cnt: number;
  readonly group_commits: number;
  readonly checkpoints: number;
  readonly queue_depth: number;
  readonly queue_depth_max: number;
  /** Appends refused at a bound (queue or retained segments). */
  readonly log_full_cnt: number;
  readonly recovery_duration_ms: number;
  readonly recovery_bytes_scanned: number;
  readonly recovery_records: number;
  readonly released_through: number;
}

interface Segment {
  readonly name: string;
  readonly firstId: number;
  /** Committed end of a sealed segment, -1 until known (the active segment uses commitPtr). */
  end: number;
  /** Sparse index for readFrom: the record `hintIds[i]` starts at byte `hintOffsets[i]`. */
  readonly hintIds: number[];
  readonly hintOffsets: number[];
}

/** One append() (payload set) or appendMany() (payloads set): consecutive commit_ids from firstCommitId. */
class Waiter {
  constructor(
    readonly firstCommitId: number,
    readonly payload: Uint8Array | null,
    readonly payloads: readonly Uint8Array[] | null,
    readonly records: number,
    readonly bytes: number,
    readonly enqueuedMs: number,
    // biome-ignore lint/suspicious/noExplicitAny: one resolver type for both result shapes
    readonly resolve: (value: any) => void,
    readonly reject: (error: unknown) => void,
  ) {}
}

interface Checkpoint {
  readonly seq: number;
  readonly clean: boolean;
  readonly segmentFirstId: number;
  readonly offset: number;
  readonly lastCommitId: number;
  readonly epoch: number;
  readonly released: number;
}

export class Journal {
  private readonly storage: JournalStorage;
  private readonly clockMs: () => number;
  private readonly checkpointEvery: number;
  private readonly checkpointEveryBytes: number;
  private readonly stallThresholdMs: number;
  private readonly segmentBytesMax: number;
  private readonly segmentsMax: number;
  /** Replaced, never mutated, so a readFrom in progress keeps a stable list. */
  private segments: readonly Segment[] = [];
  private writePtr = 0;
  private commitPtr = 0;
  private epochValue = 0;
  private durableCommitId = 0;
  private nextId = 1;
  private released = 0;
  private queue: Waiter[] = [];
  private queuedRecords = 0;
  private queuedBytes = 0;
  /** Set and cleared synchronously with the queue checks, so no append lands between "empty" and "stopped". */
  private writerActive = false;
  private writer: Promise<void> = Promise.resolve();
  private checkpointChain: Promise<void> = Promise.resolve();
  private checkpointSeq = 0;
  private commitsSinceCheckpoint = 0;
  private bytesSinceCheckpoint = 0;
  private failed: unknown = null;
  private closed = false;
  private readonly latency = new LatencyHistogram();
  private stalls = 0;
  private groups = 0;
  private checkpoints = 0;
  private queueDepthMax = 0;
  private logFull = 0;
  private recoveryReport: JournalRecovery | null = null;
  /** Where the last readFrom stopped, so the uplink's sequential reads resume without a walk. */
  private readCursor: { segment: Segment; nextId: number; offset: number } | null = null;
  /** The group being framed; grows to the largest group, at most one group commit's bytes. */
  private scratch = new Uint8Array(16_384);
  /** Clock reading shared by the appends of one synchronous turn (NaN: none yet this turn). */
  private turnMs = Number.NaN;
  private readonly endTurn = (): void => {
    this.turnMs = Number.NaN;
  };

  private constructor(options: JournalOptions) {
    this.storage = options.storage;
    this.clockMs = options.clockMs;
    this.checkpointEvery = positiveInteger(
      options.checkpointEveryCommits ?? CHECKPOINT_EVERY_COMMITS_DEFAULT,
      "checkpointEveryCommits",
    );
    this.checkpointEveryBytes = positiveInteger(
      options.checkpointEveryBytes ?? CHECKPOINT_EVERY_BYTES_DEFAULT,
      "checkpointEveryBytes",
    );
    this.stallThresholdMs = options.stallThresholdMs ?? WRITE_STALL_MS_DEFAULT;
    this.segmentBytesMax = positiveInteger(
      options.segmentBytesMax ?? JOURNAL_SEGMENT_BYTES_MAX,
      "segmentBytesMax",
    );
    this.segmentsMax = positiveInteger(options.segmentsMax ?? JOURNAL_SEGMENTS_MAX, "segmentsMax");
  }

  /** Opens the journal in the storage, recovering it (and opening a new epoch) after an unclean stop. */
  static async open(options: JournalOptions): Promise<Journal> {
    const journal = new Journal(options);
    await journal.recover();
    return journal;
  }

  get epoch(): number {
    return this.epochValue;
  }

  get recovery(): JournalRecovery {
    return this.recoveryReport!;
  }

  /** Highest durable commit_id (0 when empty). */
  lastCommitId(): number {
    return this.durableCommitId;
  }

  /** The commit_id the next append will receive (ids follow the call order). */
  nextCommitId(): number {
    return this.nextId;
  }

  /** The ack floor: highest commit_id released by the head-end's acknowledgement (0 when none). */
  releasedThrough(): number {
    return this.released;
  }

  /**
   * Resolves once the record and its group's commit frame are durable (the ack of seed 003 H2-5); rejects
   * if the group failed, and then nothing of it was acknowledged. The payload is framed when its group is
   * written: do not change its bytes before the promise settles.
   */
  append(payload: Uint8Array): Promise<{ commitId: number; epoch: number }> {
    const refused = checkPayload(payload) ?? this.refuse(1, payload.length);
    if (refused !== null) return Promise.reject(refused);
    return new Promise((resolve, reject) => {
      this.enqueue(
        new Waiter(this.nextId, payload, null, 1, payload.length, this.turnClockMs(), resolve, reject),
      );
    });
  }

  /**
   * Appends records that commit together, all or none, with consecutive commit_ids and one promise: the
   * concentrator's commit step, and the cheapest way per record.
   */
  appendMany(
    payloads: readonly Uint8Array[],
  ): Promise<{ firstCommitId: number; lastCommitId: number; epoch: number }> {
    if (!Array.isArray(payloads) || payloads.length === 0 || payloads.length > GROUP_COMMIT_RECORDS_MAX) {
      return Promise.reject(
        new EvidenceError(
          "BAD_FIELD",
          `appendMany takes 1..${GROUP_COMMIT_RECORDS_MAX} records, got ${Array.isArray(payloads) ? payloads.length : typeof payloads}`,
        ),
      );
    }
    let bytes = 0;
    for (const payload of payloads) {
      const refusedPayload = checkPayload(payload);
      if (refusedPayload !== null) return Promise.reject(refusedPayload);
      bytes += payload.length;
    }
    if (bytes > GROUP_COMMIT_BYTES_MAX) {
      return Promise.reject(
        new EvidenceError(
          "BAD_FIELD",
          `appendMany takes at most ${GROUP_COMMIT_BYTES_MAX} payload bytes (one group commit), got ${bytes}`,
        ),
      );
    }
    const refused = this.refuse(payloads.length, bytes);
    if (refused !== null) return Promise.reject(refused);
    return new Promise((resolve, reject) => {
      this.enqueue(
        new Waiter(
          this.nextId,
          null,
          payloads.slice(),
          payloads.length,
          bytes,
          this.turnClockMs(),
          resolve,
          reject,
        ),
      );
    });
  }

  /** Committed records with commit_id ≥ `commitId` (from the oldest retained one), ascending, at most `limit`. */
  async readFrom(commitId: number, limit: number): Promise<JournalEntry[]> {
    if (this.closed) throw new EvidenceError("JOURNAL_CLOSED", "journal is closed");
    if (!Number.isSafeInteger(commitId) || !Number.isSafeInteger(limit) || limit < 0) {
      throw new EvidenceError(
        "BAD_FIELD",
        `readFrom takes a commit_id and a limit ≥ 0 as safe integers, got ${commitId}, ${limit}`,
      );
    }
    const out: JournalEntry[] = [];
    const segments = this.segments;
    const last = this.durableCommitId;
    const from = Math.max(commitId, segments[0]!.firstId);
    if (limit === 0 || from > last) return out;
    let expected = from;
    for (let i = segmentIndexFor(segments, from); i < segments.length && expected <= last; i++) {
      const segment = segments[i]!;
      const end = segment === this.activeSegment() ? this.commitPtr : await this.sealedEnd(segment);
      const cursor = new FrameCursor(
        this.storage,
        segment.name,
        this.startOffset(segment, expected),
        end,
        Math.min(JOURNAL_READ_CHUNK_BYTES, Math.max(4096, (limit - out.length) * 256)),
      );
      let hintedAt = -JOURNAL_INDEX_STRIDE_BYTES;
      for (;;) {
        const step = await cursor.next();
        if (step === STEP_END) break;
        if (step === STEP_BAD) {
          throw new EvidenceError(
            "JOURNAL_CORRUPT",
            `a frame below the commit point fails its length or CRC-32 check (read-back corruption)`,
            `${segment.name} byte ${cursor.frameAt}`,
          );
        }
        if (cursor.type !== FRAME_RECORD) continue;
        if (cursor.frameAt - hintedAt >= JOURNAL_INDEX_STRIDE_BYTES) {
          addHint(segment, cursor.commitId, cursor.frameAt);
          hintedAt = cursor.frameAt;
        }
        if (cursor.commitId < expected) continue;
        if (cursor.commitId !== expected) {
          throw new EvidenceError(
            "JOURNAL_CORRUPT",
            `expected commit_id ${expected}, found ${cursor.commitId}`,
            `${segment.name} byte ${cursor.frameAt}`,
          );
        }
        out.push({ commitId: cursor.commitId, epoch: cursor.epoch, payload: cursor.payload() });
        expected++;
        if (out.length >= limit || expected > last) {
          this.readCursor = { segment, nextId: expected, offset: cursor.pos };
          return out;
        }
      }
    }
    return out;
  }

  /**
   * The head-end acknowledged everything through `commitId`: the ack floor is made durable first, then
   * segments holding only acknowledged records are deleted (never the active one).
   */
  async releaseThrough(commitId: number): Promise<void> {
    if (!Number.isSafeInteger(commitId) || commitId < 0) {
      throw new EvidenceError("BAD_FIELD", `releaseThrough takes a commit_id ≥ 0, got ${commitId}`);
    }
    if (this.closed) throw new EvidenceError("JOURNAL_CLOSED", "journal is closed");
    if (this.failed !== null)
      throw new EvidenceError("JOURNAL_CLOSED", "journal stopped after a failed write; reopen it");
    const through = Math.min(commitId, this.durableCommitId);
    if (through <= this.released) return;
    this.released = through;
    await this.checkpoint(false);
    await this.removeReleasedSegments();
  }

  metrics(): JournalMetrics {
    const recovery = this.recoveryReport;
    return {
      epoch: this.epochValue,
      commit_id: this.durableCommitId,
      write_ptr: this.writePtr,
      commit_ptr: this.commitPtr,
      segments: this.segments.length,
      commit_latency_p99: Math.round(this.latency.quantile(0.99) * 1000) / 1000,
      write_stall_cnt: this.stalls,
      group_commits: this.groups,
      checkpoints: this.checkpoints,
      queue_depth: this.queuedRecords,
      queue_depth_max: this.queueDepthMax,
      log_full_cnt: this.logFull,
      recovery_duration_ms: recovery?.durationMs ?? 0,
      recovery_bytes_scanned: recovery?.bytesScanned ?? 0,
      recovery_records: recovery?.recordsRecovered ?? 0,
      released_through: this.released,
    };
  }

  /** Writes what is queued, records a clean shutdown (the next open is not a recovery), closes the storage. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    while (this.writerActive) await this.writer;
    await this.checkpointChain.catch(() => {});
    try {
      if (this.failed === null) await this.checkpoint(true);
    } finally {
      await this.storage.close();
    }
  }

  // ───────────────────────────── writing ─────────────────────────────

  private refuse(records: number, bytes: number): EvidenceError | null {
    if (this.closed) return new EvidenceError("JOURNAL_CLOSED", "journal is closed");
    if (this.failed !== null) {
      return new EvidenceError(
        "JOURNAL_CLOSED",
        "journal stopped after a failed write; reopen it to recover",
      );
    }
    if (
      this.queuedRecords + records > JOURNAL_QUEUE_RECORDS_MAX ||
      this.queuedBytes + Math.max(bytes, 0) > JOURNAL_QUEUE_BYTES_MAX
    ) {
      this.logFull++;
      return new EvidenceError(
        "LOG_FULL",
        `${this.queuedRecords} records (${this.queuedBytes} bytes) already wait for the writer; bounds are ${JOURNAL_QUEUE_RECORDS_MAX} records, ${JOURNAL_QUEUE_BYTES_MAX} bytes`,
      );
    }
    return null;
  }

  private turnClockMs(): number {
    if (Number.isNaN(this.turnMs)) {
      this.turnMs = this.clockMs();
      queueMicrotask(this.endTurn);
    }
    return this.turnMs;
  }

  private enqueue(waiter: Waiter): void {
    this.queue.push(waiter);
    this.nextId += waiter.records;
    this.queuedRecords += waiter.records;
    this.queuedBytes += waiter.bytes;
    if (this.queuedRecords > this.queueDepthMax) this.queueDepthMax = this.queuedRecords;
    if (!this.writerActive) {
      this.writerActive = true;
      // A microtask, not a timer: every append made in the same turn joins the first group.
      this.writer = Promise.resolve().then(() => this.writeLoop());
    }
  }

  private async writeLoop(): Promise<void> {
    while (this.queue.length > 0 && this.failed === null) {
      await this.commitGroup(this.takeGroup());
    }
    this.writerActive = false;
  }

  /** The oldest waiters up to the group bounds; an appendMany is never split. */
  private takeGroup(): Waiter[] {
    const queue = this.queue;
    let records = 0;
    let bytes = 0;
    let take = 0;
    for (; take < queue.length; take++) {
      const waiter = queue[take]!;
      if (
        take > 0 &&
        (records + waiter.records > GROUP_COMMIT_RECORDS_MAX || bytes + waiter.bytes > GROUP_COMMIT_BYTES_MAX)
      )
        break;
      records += waiter.records;
      bytes += waiter.bytes;
    }
    this.queuedRecords -= records;
    this.queuedBytes -= bytes;
    if (take === queue.length) {
      this.queue = [];
      return queue;
    }
    this.queue = queue.slice(take);
    return queue.slice(0, take);
  }

  private async commitGroup(group: Waiter[]): Promise<void> {
    const firstCommitId = group[0]!.firstCommitId;
    let records = 0;
    let bytes = 0;
    for (const waiter of group) {
      records += waiter.records;
      bytes += waiter.bytes;
    }
    const lastCommitId = firstCommitId + records - 1;
    if (this.commitPtr >= this.segmentBytesMax && this.segments.length >= this.segmentsMax) {
      // Retention bound (seed 003 H2-5 "retention window"): refuse, do not grow; the ids go back unused.
      this.logFull++;
      const error = new EvidenceError(
        "LOG_FULL",
        `${this.segments.length} segments hold unreleased records (bound ${this.segmentsMax}); release acknowledged ones first`,
      );
      this.rejectAll(group, error);
      this.nextId = this.durableCommitId + 1;
      return;
    }
    const size = records * JOURNAL_RECORD_OVERHEAD_BYTES + bytes + COMMIT_FRAME_BYTES;
    const started = this.clockMs();
    const epoch = this.epochValue;
    try {
      if (this.commitPtr >= this.segmentBytesMax) await this.rotate(firstCommitId);
      const segment = this.activeSegment();
      // One buffer (reused: the previous write is complete) and one write per group; the per-record work
      // is framing in place and one CRC.
      if (this.scratch.length < size) this.scratch = new Uint8Array(Math.max(size, this.scratch.length * 2));
      const out = this.scratch.subarray(0, size);
      let at = 0;
      let commitId = firstCommitId;
      for (const waiter of group) {
        if (waiter.payload !== null) {
          at = putRecord(out, at, commitId++, epoch, waiter.payload);
        } else {
          for (const payload of waiter.payloads!) at = putRecord(out, at, commitId++, epoch, payload);
        }
      }
      putFixed(out, at, COMMIT_BODY_BYTES, FRAME_COMMIT, lastCommitId, epoch);
      putU64(out, at + FRAME_HEADER_BYTES + BODY_FIXED_BYTES, firstCommitId);
      seal(out, at, COMMIT_BODY_BYTES);
      const start = this.commitPtr;
      this.writePtr = start + size;
      await this.storage.append(segment.name, out);
      await this.storage.datasync(segment.name);
      this.commitPtr = this.writePtr;
      this.durableCommitId = lastCommitId;
      const lastHint = segment.hintOffsets.at(-1) ?? -JOURNAL_INDEX_STRIDE_BYTES;
      if (start - lastHint >= JOURNAL_INDEX_STRIDE_BYTES) addHint(segment, firstCommitId, start);
    } catch (error) {
      this.fail(error, group);
      return;
    }
    const finished = this.clockMs();
    this.groups++;
    if (finished - started > this.stallThresholdMs) this.stalls++;
    let sameSince = group[0]!.enqueuedMs;
    let sameCount = 0;
    for (const waiter of group) {
      // Appends of one turn share a timestamp: one histogram update per distinct one.
      if (waiter.enqueuedMs !== sameSince) {
        this.latency.record(finished - sameSince, sameCount);
        sameSince = waiter.enqueuedMs;
        sameCount = 0;
      }
      sameCount += waiter.records;
      if (waiter.payload !== null) {
        waiter.resolve({
          commitId: waiter.firstCommitId,
          epoch,
        });
      } else {
        waiter.resolve({
          firstCommitId: waiter.firstCommitId,
          lastCommitId: waiter.firstCommitId + waiter.records - 1,
          epoch,
        });
      }
    }
    this.latency.record(finished - sameSince, sameCount);
    this.bytesSinceCheckpoint += size;
    if (
      ++this.commitsSinceCheckpoint >= this.checkpointEvery ||
      this.bytesSinceCheckpoint >= this.checkpointEveryBytes
    ) {
      try {
        await this.checkpoint(false);
      } catch (error) {
        this.fail(error, []);
      }
    }
  }

  /** Nothing of a failed group is acknowledged; later appends are refused until a reopen recovers. */
  private fail(error: unknown, group: Waiter[]): void {
    if (this.failed === null) this.failed = error;
    this.rejectAll(group, error);
  }

  private rejectAll(group: Waiter[], error: unknown): void {
    const queued = this.queue;
    this.queue = [];
    this.queuedRecords = 0;
    this.queuedBytes = 0;
    for (const waiter of group) waiter.reject(error);
    for (const waiter of queued) waiter.reject(error);
  }

  /** Seals the active segment and starts the next with its header, durable before any group lands in it. */
  private async rotate(firstCommitId: number): Promise<void> {
    const segment = newSegment(firstCommitId);
    const header = new Uint8Array(SEGMENT_FRAME_BYTES);
    putSegmentHeader(header, firstCommitId, this.epochValue);
    await this.storage.append(segment.name, header); // creates the file and syncs its directory entry
    await this.storage.datasync(segment.name);
    // Switched only now: a checkpoint taken meanwhile still points into the old segment.
    this.activeSegment().end = this.commitPtr;
    this.segments = [...this.segments, segment];
    this.writePtr = header.length;
    this.commitPtr = header.length;
  }

  /** Writes the next checkpoint slot from durable state only; checkpoints are serialized. */
  private checkpoint(clean: boolean): Promise<void> {
    const run = async (): Promise<void> => {
      const seq = ++this.checkpointSeq;
      const slot = encodeCheckpoint({
        seq,
        clean,
        segmentFirstId: this.activeSegment().firstId,
        offset: this.commitPtr,
        lastCommitId: this.durableCommitId,
        epoch: this.epochValue,
        released: this.released,
      });
      await this.storage.writeAt(CHECKPOINT_FILE, (seq % 2) * CHECKPOINT_SLOT_BYTES, slot);
      await this.storage.datasync(CHECKPOINT_FILE);
      this.checkpoints++;
      this.commitsSinceCheckpoint = 0;
      this.bytesSinceCheckpoint = 0;
    };
    const next = this.checkpointChain.then(run);
    this.checkpointChain = next.catch(() => {});
    return next;
  }

  private async removeReleasedSegments(): Promise<void> {
    for (;;) {
      const segments = this.segments;
      if (segments.length < 2 || segments[1]!.firstId - 1 > this.released) return;
      this.segments = segments.slice(1);
      if (this.readCursor?.segment === segments[0]) this.readCursor = null;
      await this.storage.remove(segments[0]!.name);
    }
  }

  private activeSegment(): Segment {
    return this.segments[this.segments.length - 1]!;
  }

  private async sealedEnd(segment: Segment): Promise<number> {
    if (segment.end < 0) segment.end = await this.storage.size(segment.name);
    return segment.end;
  }

  private startOffset(segment: Segment, commitId: number): number {
    const cursor = this.readCursor;
    if (cursor !== null && cursor.segment === segment && cursor.nextId === commitId) return cursor.offset;
    const ids = segment.hintIds;
    let low = 0;
    let high = ids.length - 1;
    let found = -1;
    while (low <= high) {
      const mid = (low + high) >>> 1;
      if (ids[mid]! <= commitId) {
        found = mid;
        low = mid + 1;
      } else high = mid - 1;
    }
    return found < 0 ? 0 : segment.hintOffsets[found]!;
  }

  // ───────────────────────────── recovery ─────────────────────────────

  private async recover(): Promise<void> {
    const started = this.clockMs();
    const names = await this.storage.list();
    const checkpoint = names.includes(CHECKPOINT_FILE)
      ? decodeCheckpointFile(await this.storage.read(CHECKPOINT_FILE, 0, 2 * CHECKPOINT_SLOT_BYTES))
      : null;
    this.checkpointSeq = checkpoint?.seq ?? 0;
    const segmentNames = names.filter(isSegmentName).sort();

    if (segmentNames.length === 0) {
      if (checkpoint !== null && checkpoint.lastCommitId > 0) {
        throw new EvidenceError(
          "JOURNAL_CORRUPT",
          `the checkpoint records commit_id ${checkpoint.lastCommitId} but no segment file exists`,
          CHECKPOINT_FILE,
        );
      }
      // First start ever.
      const segment = newSegment(1);
      this.segments = [segment];
      this.epochValue = 1;
      await this.appendEpochFrame(EPOCH_REASON_FIRST_START);
      await this.checkpoint(false);
      this.recoveryReport = {
        recovered: false,
        epoch: 1,
        durationMs: this.clockMs() - started,
        bytesScanned: 0,
        recordsRecovered: 0,
        tornBytes: 0,
        tornCommitFrames: 0,
        lastCommitId: 0,
        checkpointFound: checkpoint !== null,
      };
      return;
    }

    const segments = segmentNames.map((name) => newSegment(segmentFirstId(name)));
    let startIndex = 0;
    let state: ScanState = { lastId: segments[0]!.firstId - 1, epoch: null, commitPtr: 0, records: 0 };
    if (checkpoint !== null) {
      startIndex = segments.findIndex((s) => s.firstId === checkpoint.segmentFirstId);
      if (startIndex < 0) {
        throw new EvidenceError(
          "JOURNAL_CORRUPT",
          `the checkpoint points into segment ${segmentName(checkpoint.segmentFirstId)}, which is missing`,
          CHECKPOINT_FILE,
        );
      }
      state = {
        lastId: checkpoint.lastCommitId,
        epoch: checkpoint.epoch,
        commitPtr: checkpoint.offset,
        records: 0,
      };
      this.released = checkpoint.released;
    } else {
      // No checkpoint survived: resend from the oldest retained record rather than lose any.
      this.released = segments[0]!.firstId - 1;
    }

    let bytesScanned = 0;
    let tornBytes = 0;
    let tornCommitFrames = 0;
    for (let i = startIndex; i < segments.length; i++) {
      const segment = segments[i]!;
      const isLast = i === segments.length - 1;
      if (i > startIndex) {
        if (segment.firstId !== state.lastId + 1) {
          throw new EvidenceError(
            "JOURNAL_CORRUPT",
            `segment ${segment.name} should start at commit_id ${state.lastId + 1}`,
            segment.name,
          );
        }
        state = { ...state, commitPtr: 0 };
      }
      const size = await this.storage.size(segment.name);
      if (state.commitPtr === 0) {
        const header = await this.storage.read(segment.name, 0, SEGMENT_FRAME_BYTES);
        const headerEpoch = segmentHeaderEpoch(header, segment.firstId);
        if (headerEpoch !== null && (state.epoch === null || state.epoch === headerEpoch)) {
          state = { ...state, epoch: headerEpoch, commitPtr: SEGMENT_FRAME_BYTES };
        } else if (isLast && size <= SEGMENT_FRAME_BYTES) {
          // Created, its header torn or never written: nothing else can be in it.
          bytesScanned += size;
          tornBytes += size;
          if (size > 0) await this.storage.truncate(segment.name, 0);
          segment.end = -1;
          continue;
        } else {
          throw new EvidenceError(
            "BAD_VERSION",
            headerEpoch === null
              ? `segment does not start with an amiproof journal v${JOURNAL_FORMAT_VERSION} header for commit_id ${segment.firstId}`
              : `segment header says epoch ${headerEpoch}, the journal before it is in epoch ${state.epoch}`,
            segment.name,
          );
        }
      }
      const from = state.commitPtr;
      if (from > size) {
        throw new EvidenceError(
          "JOURNAL_CORRUPT",
          `the checkpoint's commit_ptr ${from} lies past the end of the segment (${size} bytes): durable bytes are gone`,
          segment.name,
        );
      }
      state = await scanSegment(this.storage, segment, size, state);
      bytesScanned += size - from;
      if (state.commitPtr < size) {
        if (!isLast) {
          // A sealed segment was fully fdatasync'ed before the next one was created: damage is corruption.
          throw new EvidenceError(
            "JOURNAL_CORRUPT",
            `sealed segment is damaged at byte ${state.commitPtr} of ${size}`,
            segment.name,
          );
        }
        tornCommitFrames += await this.damagedTail(segment, state, size);
        tornBytes += size - state.commitPtr;
        await this.storage.truncate(segment.name, state.commitPtr);
      }
      segment.end = isLast ? -1 : size;
    }
    for (let i = 0; i < startIndex; i++) segments[i]!.end = -1; // sizes fetched when read

    this.segments = segments;
    this.durableCommitId = state.lastId;
    this.nextId = state.lastId + 1;
    this.writePtr = state.commitPtr;
    this.commitPtr = state.commitPtr;
    this.released = Math.min(this.released, state.lastId);
    if (segments[0]!.firstId > this.released + 1) {
      // Segments go only once wholly under the ack floor: unacknowledged history is missing.
      throw new EvidenceError(
        "JOURNAL_CORRUPT",
        `the oldest segment starts at commit_id ${segments[0]!.firstId} but only ${this.released} were released`,
        segments[0]!.name,
      );
    }
    const active = this.activeSegment();
    const clean =
      checkpoint?.clean === true &&
      tornBytes === 0 &&
      checkpoint.segmentFirstId === active.firstId &&
      checkpoint.offset === state.commitPtr &&
      checkpoint.lastCommitId === state.lastId;
    this.epochValue = state.epoch ?? checkpoint?.epoch ?? 0;
    if (!clean) {
      this.epochValue++;
      await this.appendEpochFrame(EPOCH_REASON_RECOVERY);
    }
    // Written even after a clean stop: it clears the clean flag, so a crash from here on is a recovery.
    await this.checkpoint(false);
    await this.removeReleasedSegments(); // a crash may have come between the ack floor and the deletions
    this.recoveryReport = {
      recovered: !clean,
      epoch: this.epochValue,
      durationMs: this.clockMs() - started,
      bytesScanned,
      recordsRecovered: state.records,
      tornBytes,
      tornCommitFrames,
      lastCommitId: state.lastId,
      checkpointFound: checkpoint !== null,
    };
  }

  /**
   * Decides whether the bytes after the last accepted frame are a torn final write (cut, returns how many
   * intact commit frames go with it) or damage in front of durable data (JOURNAL_CORRUPT): only one write
   * is ever unsynced, so a torn tail is at most one group long and holds at most its own commit frame —
   * intact when the disk persisted the group's pages out of order. Damage inside the last acknowledged
   * group with its commit frame intact looks the same and is cut too; that ambiguity is the price of
   * not paying a second fdatasync per group, and `tornCommitFrames` reports it.
   */
  private async damagedTail(segment: Segment, state: ScanState, size: number): Promise<number> {
    const tail = size - state.commitPtr;
    if (tail > IN_FLIGHT_BYTES_MAX) {
      throw new EvidenceError(
        "JOURNAL_CORRUPT",
        `damage at byte ${state.commitPtr} is followed by ${tail} bytes, more than one write can leave unsynced`,
        segment.name,
      );
    }
    const bytes = await this.storage.read(segment.name, state.commitPtr, tail);
    const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    let found = -1;
    for (let at = 0; at + COMMIT_FRAME_BYTES <= bytes.length; at++) {
      if (view.getUint32(at) !== COMMIT_BODY_BYTES || bytes[at + FRAME_HEADER_BYTES] !== FRAME_COMMIT)
        continue;
      if (crc32Range(bytes, at + FRAME_HEADER_BYTES, at + COMMIT_FRAME_BYTES) !== view.getUint32(at + 4))
        continue;
      const first = getU64(view, at + FRAME_HEADER_BYTES + BODY_FIXED_BYTES);
      const followed =
        at + COMMIT_FRAME_BYTES < bytes.length && intactFrameAt(bytes, at + COMMIT_FRAME_BYTES);
      if (found >= 0 || first !== state.lastId + 1 || followed) {
        throw new EvidenceError(
          "JOURNAL_CORRUPT",
          `damage at byte ${state.commitPtr} lies in front of a commit frame that was already durable`,
          `${segment.name} byte ${state.commitPtr + at}`,
        );
      }
      found = at;
    }
    return found >= 0 ? 1 : 0;
  }

  /** The EPOCH frame, after the segment header when the active segment is still empty; durable on return. */
  private async appendEpochFrame(reason: number): Promise<void> {
    const segment = this.activeSegment();
    const headerBytes = this.commitPtr === 0 ? SEGMENT_FRAME_BYTES : 0;
    const out = new Uint8Array(headerBytes + EPOCH_FRAME_BYTES);
    // The header carries the epoch in force before the segment's first frame: the one this frame ends.
    if (headerBytes > 0) putSegmentHeader(out, segment.firstId, this.epochValue - 1);
    putFixed(out, headerBytes, EPOCH_BODY_BYTES, FRAME_EPOCH, this.durableCommitId, this.epochValue);
    out[headerBytes + FRAME_HEADER_BYTES + BODY_FIXED_BYTES] = reason;
    seal(out, headerBytes, EPOCH_BODY_BYTES);
    this.writePtr = this.commitPtr + out.length;
    await this.storage.append(segment.name, out);
    await this.storage.datasync(segment.name);
    this.commitPtr = this.writePtr;
  }
}

// ───────────────────────────── frames ─────────────────────────────

function checkPayload(payload: Uint8Array): EvidenceError | null {
  if (!(payload instanceof Uint8Array)) {
    return new EvidenceError("BAD_FIELD", `journal record must be a Uint8Array, got ${typeof payload}`);
  }
  if (payload.length === 0 || payload.length > JOURNAL_RECORD_BYTES_MAX) {
    return new EvidenceError(
      "BAD_FIELD",
      `journal record must be 1..${JOURNAL_RECORD_BYTES_MAX} bytes, got ${payload.length}`,
    );
  }
  return null;
}

function putU32(out: Uint8Array, at: number, value: number): void {
  out[at] = value >>> 24;
  out[at + 1] = value >>> 16;
  out[at + 2] = value >>> 8;
  out[at + 3] = value;
}

function putU64(out: Uint8Array, at: number, value: number): void {
  putU32(out, at, Math.floor(value / TWO_POW_32));
  putU32(out, at + 4, value >>> 0);
}

function getU64(view: DataView, at: number): number {
  return view.getUint32(at) * TWO_POW_32 + view.getUint32(at + 4);
}

function putFixed(
  out: Uint8Array,
  at: number,
  bodyBytes: number,
  type: number,
  commitId: number,
  epoch: number,
): void {
  putU32(out, at, bodyBytes);
  out[at + FRAME_HEADER_BYTES] = type;
  putU64(out, at + FRAME_HEADER_BYTES + 1, commitId);
  putU32(out, at + FRAME_HEADER_BYTES + 9, epoch);
}

function seal(out: Uint8Array, at: number, bodyBytes: number): void {
  const bodyAt = at + FRAME_HEADER_BYTES;
  putU32(out, at + 4, crc32Range(out, bodyAt, bodyAt + bodyBytes));
}

function putRecord(
  out: Uint8Array,
  at: number,
  commitId: number,
  epoch: number,
  payload: Uint8Array,
): number {
  const bodyBytes = BODY_FIXED_BYTES + payload.length;
  putFixed(out, at, bodyBytes, FRAME_RECORD, commitId, epoch);
  out.set(payload, at + JOURNAL_RECORD_OVERHEAD_BYTES);
  seal(out, at, bodyBytes);
  return at + FRAME_HEADER_BYTES + bodyBytes;
}

/**
 * SEGMENT frame: commit_id = the segment's first, epoch = the one in force before its first frame (the
 * previous segment's last; 0 for the first segment), rest = "AMIJ" · format version.
 */
function putSegmentHeader(out: Uint8Array, firstCommitId: number, epoch: number): void {
  putFixed(out, 0, SEGMENT_BODY_BYTES, FRAME_SEGMENT, firstCommitId, epoch);
  putU32(out, FRAME_HEADER_BYTES + BODY_FIXED_BYTES, SEGMENT_MAGIC);
  out[FRAME_HEADER_BYTES + BODY_FIXED_BYTES + 4] = JOURNAL_FORMAT_VERSION;
  seal(out, 0, SEGMENT_BODY_BYTES);
}

/** The epoch in a valid header for a segment starting at `firstCommitId`, else null. */
function segmentHeaderEpoch(bytes: Uint8Array, firstCommitId: number): number | null {
  if (bytes.length < SEGMENT_FRAME_BYTES) return null;
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const rest = FRAME_HEADER_BYTES + BODY_FIXED_BYTES;
  if (
    view.getUint32(0) !== SEGMENT_BODY_BYTES ||
    crc32Range(bytes, FRAME_HEADER_BYTES, SEGMENT_FRAME_BYTES) !== view.getUint32(4) ||
    bytes[FRAME_HEADER_BYTES] !== FRAME_SEGMENT ||
    getU64(view, FRAME_HEADER_BYTES + 1) !== firstCommitId ||
    view.getUint32(rest) !== SEGMENT_MAGIC ||
    bytes[rest + 4] !== JOURNAL_FORMAT_VERSION
  )
    return null;
  return view.getUint32(FRAME_HEADER_BYTES + 9);
}

/** Whether a frame with a valid length and CRC-32 starts at `at`. */
function intactFrameAt(bytes: Uint8Array, at: number): boolean {
  if (at + FRAME_HEADER_BYTES > bytes.length) return false;
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const length = view.getUint32(at);
  const end = at + FRAME_HEADER_BYTES + length;
  if (length < BODY_FIXED_BYTES || length > BODY_BYTES_MAX || end > bytes.length) return false;
  return crc32Range(bytes, at + FRAME_HEADER_BYTES, end) === view.getUint32(at + 4);
}

const STEP_FRAME = 0;
const STEP_END = 1;
const STEP_BAD = 2;
const STEP_NEED = 3;

/** Walks the frames of one segment from `pos` to `limit`, reading a bounded chunk at a time. */
class FrameCursor {
  private buffer: Uint8Array = EMPTY;
  private view: DataView = new DataView(EMPTY.buffer);
  /** File offset of buffer[0]. */
  private bufferAt = 0;
  /** Set by next() for STEP_FRAME: the frame's offset and fields. */
  frameAt = 0;
  type = 0;
  commitId = 0;
  epoch = 0;
  /** Index in the buffer of the frame's rest (after the fixed body fields), and of its end. */
  restAt = 0;
  restEnd = 0;

  constructor(
    private readonly storage: JournalStorage,
    private readonly name: string,
    /** File offset of the next frame. */
    public pos: number,
    private limit: number,
    private chunkBytes: number,
  ) {}

  async next(): Promise<number> {
    const step = this.step();
    if (step !== STEP_NEED) return step;
    await this.fill();
    const again = this.step();
    return again === STEP_NEED ? STEP_BAD : again;
  }

  /** The current frame's rest as a copy (entries must not pin the read chunk). */
  payload(): Uint8Array {
    return this.buffer.slice(this.restAt, this.restEnd);
  }

  u64Rest(): number {
    return getU64(this.view, this.restAt);
  }

  u8Rest(): number {
    return this.buffer[this.restAt]!;
  }

  get restBytes(): number {
    return this.restEnd - this.restAt;
  }

  private step(): number {
    this.frameAt = this.pos;
    if (this.pos >= this.limit) return STEP_END;
    const at = this.pos - this.bufferAt;
    const buffered = this.bufferAt + this.buffer.length;
    if (at < 0 || at + FRAME_HEADER_BYTES > this.buffer.length) {
      return buffered < this.limit || at < 0 ? STEP_NEED : STEP_BAD;
    }
    const length = this.view.getUint32(at);
    if (
      length < BODY_FIXED_BYTES ||
      length > BODY_BYTES_MAX ||
      this.pos + FRAME_HEADER_BYTES + length > this.limit
    )
      return STEP_BAD;
    const bodyAt = at + FRAME_HEADER_BYTES;
    const end = bodyAt + length;
    if (end > this.buffer.length) return STEP_NEED;
    if (crc32Range(this.buffer, bodyAt, end) !== this.view.getUint32(at + 4)) return STEP_BAD;
    const high = this.view.getUint32(bodyAt + 1);
    if (high > 0x1f_ffff) return STEP_BAD; // beyond a safe integer: never written by this journal
    this.type = this.buffer[bodyAt]!;
    this.commitId = high * TWO_POW_32 + this.view.getUint32(bodyAt + 5);
    this.epoch = this.view.getUint32(bodyAt + 9);
    this.restAt = bodyAt + BODY_FIXED_BYTES;
    this.restEnd = end;
    this.pos += FRAME_HEADER_BYTES + length;
    return STEP_FRAME;
  }

  private async fill(): Promise<void> {
    const wanted = Math.min(
      Math.max(this.chunkBytes, FRAME_HEADER_BYTES + BODY_BYTES_MAX),
      this.limit - this.pos,
    );
    this.chunkBytes = Math.min(this.chunkBytes * 2, JOURNAL_READ_CHUNK_BYTES);
    this.buffer = await this.storage.read(this.name, this.pos, wanted);
    this.view = new DataView(this.buffer.buffer, this.buffer.byteOffset, this.buffer.byteLength);
    this.bufferAt = this.pos;
    // A file shorter than expected ends the walk where its bytes end.
    if (this.buffer.length < wanted) this.limit = this.pos + this.buffer.length;
  }
}

interface ScanState {
  readonly lastId: number;
  /** null until a frame tells it (no checkpoint survived). */
  readonly epoch: number | null;
  /** Offset just after the last accepted COMMIT or EPOCH frame. */
  readonly commitPtr: number;
  readonly records: number;
}

/** Accepts whole groups (records + matching COMMIT) and EPOCH frames; stops at the first thing that is not. */
async function scanSegment(
  storage: JournalStorage,
  segment: Segment,
  size: number,
  state: ScanState,
): Promise<ScanState> {
  let { lastId, epoch, commitPtr, records } = state;
  const cursor = new FrameCursor(storage, segment.name, commitPtr, size, JOURNAL_READ_CHUNK_BYTES);
  let groupFirst = -1;
  let groupLast = -1;
  let groupEpoch = -1;
  let groupAt = 0;
  let hintedAt = segment.hintOffsets.at(-1) ?? -JOURNAL_INDEX_STRIDE_BYTES;
  for (;;) {
    if ((await cursor.next()) !== STEP_FRAME) break;
    const type = cursor.type;
    if (type === FRAME_RECORD) {
      const expected = (groupFirst < 0 ? lastId : groupLast) + 1;
      if (cursor.commitId !== expected || cursor.restBytes < 1) break;
      if (groupFirst < 0) {
        if (epoch !== null && cursor.epoch !== epoch) break;
        groupFirst = cursor.commitId;
        groupEpoch = cursor.epoch;
        groupAt = cursor.frameAt;
      } else if (cursor.epoch !== groupEpoch) break;
      groupLast = cursor.commitId;
    } else if (type === FRAME_COMMIT) {
      if (
        groupFirst < 0 ||
        cursor.restBytes !== 8 ||
        cursor.commitId !== groupLast ||
        cursor.u64Rest() !== groupFirst ||
        cursor.epoch !== groupEpoch
      )
        break;
      records += groupLast - groupFirst + 1;
      lastId = groupLast;
      epoch = groupEpoch;
      commitPtr = cursor.pos;
      if (groupAt - hintedAt >= JOURNAL_INDEX_STRIDE_BYTES) {
        addHint(segment, groupFirst, groupAt);
        hintedAt = groupAt;
      }
      groupFirst = -1;
    } else if (type === FRAME_EPOCH) {
      if (
        groupFirst >= 0 ||
        cursor.restBytes !== 1 ||
        cursor.u8Rest() > EPOCH_REASON_RECOVERY ||
        cursor.commitId !== lastId ||
        (epoch !== null && cursor.epoch <= epoch)
      )
        break;
      epoch = cursor.epoch;
      commitPtr = cursor.pos;
    } else {
      break;
    }
  }
  return { lastId, epoch, commitPtr, records };
}

// ───────────────────────────── segments and checkpoints ─────────────────────────────

function newSegment(firstId: number): Segment {
  return { name: segmentName(firstId), firstId, end: -1, hintIds: [firstId], hintOffsets: [0] };
}

function segmentName(firstCommitId: number): string {
  return `${SEGMENT_PREFIX}${String(firstCommitId).padStart(16, "0")}${SEGMENT_SUFFIX}`;
}

function isSegmentName(name: string): boolean {
  return /^seg-\d{16}\.log$/.test(name) && segmentFirstId(name) >= 1;
}

function segmentFirstId(name: string): number {
  return Number(name.slice(SEGMENT_PREFIX.length, -SEGMENT_SUFFIX.length));
}

/** Index of the last segment whose first commit_id is ≤ `commitId` (0 when none). */
function segmentIndexFor(segments: readonly Segment[], commitId: number): number {
  let low = 0;
  let high = segments.length - 1;
  let found = 0;
  while (low <= high) {
    const mid = (low + high) >>> 1;
    if (segments[mid]!.firstId <= commitId) {
      found = mid;
      low = mid + 1;
    } else high = mid - 1;
  }
  return found;
}

/** Keeps the hints sorted; one per stride at most, whichever walk finds it first. */
function addHint(segment: Segment, commitId: number, offset: number): void {
  const ids = segment.hintIds;
  let index = ids.length;
  while (index > 0 && ids[index - 1]! >= commitId) index--;
  if (index > 0 && offset - segment.hintOffsets[index - 1]! < JOURNAL_INDEX_STRIDE_BYTES) return;
  if (index < ids.length && ids[index] === commitId) return;
  ids.splice(index, 0, commitId);
  segment.hintOffsets.splice(index, 0, offset);
}

function encodeCheckpoint(checkpoint: Checkpoint): Uint8Array {
  const out = new Uint8Array(CHECKPOINT_SLOT_BYTES);
  putU32(out, 0, CHECKPOINT_MAGIC);
  out[4] = CHECKPOINT_VERSION;
  out[5] = checkpoint.clean ? 1 : 0;
  putU64(out, 8, checkpoint.seq);
  putU64(out, 16, checkpoint.segmentFirstId);
  putU64(out, 24, checkpoint.offset);
  putU64(out, 32, checkpoint.lastCommitId);
  putU32(out, 40, checkpoint.epoch);
  putU64(out, 44, checkpoint.released);
  putU32(out, CHECKPOINT_BODY_BYTES, crc32Range(out, 0, CHECKPOINT_BODY_BYTES));
  return out;
}

/** The newer of the two valid slots, or null when neither is valid. */
function decodeCheckpointFile(bytes: Uint8Array): Checkpoint | null {
  let best: Checkpoint | null = null;
  for (let slot = 0; slot < 2; slot++) {
    const at = slot * CHECKPOINT_SLOT_BYTES;
    if (at + CHECKPOINT_BODY_BYTES + 4 > bytes.length) break;
    const view = new DataView(bytes.buffer, bytes.byteOffset + at, CHECKPOINT_SLOT_BYTES);
    if (view.getUint32(0) !== CHECKPOINT_MAGIC || view.getUint8(4) !== CHECKPOINT_VERSION) continue;
    if (crc32Range(bytes, at, at + CHECKPOINT_BODY_BYTES) !== view.getUint32(CHECKPOINT_BODY_BYTES)) continue;
    const checkpoint: Checkpoint = {
      seq: getU64(view, 8),
      clean: view.getUint8(5) === 1,
      segmentFirstId: getU64(view, 16),
      offset: getU64(view, 24),
      lastCommitId: getU64(view, 32),
      epoch: view.getUint32(40),
      released: getU64(view, 44),
    };
    if (
      !Number.isSafeInteger(checkpoint.seq) ||
      !Number.isSafeInteger(checkpoint.segmentFirstId) ||
      !Number.isSafeInteger(checkpoint.offset) ||
      !Number.isSafeInteger(checkpoint.lastCommitId) ||
      !Number.isSafeInteger(checkpoint.released) ||
      checkpoint.released > checkpoint.lastCommitId ||
      checkpoint.segmentFirstId < 1 ||
      checkpoint.segmentFirstId > checkpoint.lastCommitId + 1
    )
      continue;
    if (best === null || checkpoint.seq > best.seq) best = checkpoint;
  }
  return best;
}

function positiveInteger(value: number, what: string): number {
  if (!Number.isSafeInteger(value) || value < 1) {
    throw new EvidenceError("BAD_FIELD", `${what} must be a positive integer, got ${value}`);
  }
  return value;
}

// ───────────────────────────── commit latency ─────────────────────────────

const LATENCY_MIN_MS = 0.001;
const LATENCY_STEPS_PER_DOUBLING = 16;
/** 512 buckets of 2^(1/16) (≈ 4.4 % resolution) span 1 µs to ~71 minutes: bounded memory, any run length. */
const LATENCY_BUCKETS = 512;

class LatencyHistogram {
  private readonly counts = new Float64Array(LATENCY_BUCKETS);
  private total = 0;

  record(ms: number, count: number): void {
    const bucket =
      ms <= LATENCY_MIN_MS
        ? 0
        : Math.min(
            LATENCY_BUCKETS - 1,
            Math.ceil(Math.log2(ms / LATENCY_MIN_MS) * LATENCY_STEPS_PER_DOUBLING),
          );
    this.counts[bucket]! += count;
    this.total += count;
  }

  /** Upper bound of the bucket holding the q-quantile (0 when empty). */
  quantile(q: number): number {
    if (this.total === 0) return 0;
    const target = Math.ceil(q * this.total);
    let seen = 0;
    for (let bucket = 0; bucket < LATENCY_BUCKETS; bucket++) {
      seen += this.counts[bucket]!;
      if (seen >= target)
        return bucket === 0 ? 0 : LATENCY_MIN_MS * 2 ** (bucket / LATENCY_STEPS_PER_DOUBLING);
    }
    return LATENCY_MIN_MS * 2 ** ((LATENCY_BUCKETS - 1) / LATENCY_STEPS_PER_DOUBLING);
  }
}
