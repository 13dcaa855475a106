import { ByteReader, ByteWriter, concatBytes } from "./bytes.ts";
import { crc32 } from "./crypto.ts";
import { EvidenceError } from "./errors.ts";
import type { JournalStorage } from "./journal-storage.ts";

// The concentrator's append-only journal (seed 003 H2-5): records land in segments (write_ptr), a small
// commit frame closes each group (commit_ptr), and a record is acknowledged only after the group and its
// commit frame are fdatasync'ed — "Ack must occur only after Commit durability is proven".
//
// Frame: 'J' | type u8 | body length u32 | body, then for COMMIT and EPOCH a CRC-32 over type..body.
//   RECORD  commit_id u64 · epoch u32 · payload (no CRC of its own: the group's COMMIT covers it, and a
//           reading record carries its own record CRC — seed 003 H2-4's three layers)
//   COMMIT  epoch u32 · first commit_id u64 · last commit_id u64 · CRC-32 of the group's record frames
//   EPOCH   epoch u32 · last commit_id u64 · reason u8 (0 first start, 1 recovery after an unclean stop)
// Recovery scans from the last checkpoint, accepts a group only when its COMMIT frame is intact and
// covers exactly its records, truncates everything after the last accepted frame (torn tail), and opens
// a new epoch unless the previous run closed cleanly. commit_id never repeats and continues across epochs.

export const JOURNAL_RECORD_BYTES_MAX = 64 * 1024;
export const JOURNAL_SEGMENT_BYTES_MAX = 4 * 1024 * 1024;
export const GROUP_COMMIT_RECORDS_MAX = 4096;
export const GROUP_COMMIT_BYTES_MAX = 1024 * 1024;
/** Appends waiting for the writer; beyond it append() refuses (back-pressure, never silent growth). */
export const JOURNAL_QUEUE_RECORDS_MAX = 65_536;
export const CHECKPOINT_EVERY_COMMITS_DEFAULT = 64;
export const COMMIT_LATENCY_SAMPLES_MAX = 4096;

const MAGIC = 0x4a; // 'J'
const FRAME_RECORD = 1;
const FRAME_COMMIT = 2;
const FRAME_EPOCH = 3;
const FRAME_HEADER_BYTES = 6;
const FRAME_TRAILER_BYTES = 4;
const SEGMENT_PREFIX = "seg-";
const SEGMENT_SUFFIX = ".log";
const CHECKPOINT_FILE = "checkpoint";
const RELEASED_FILE = "released";
const CLEAN_FILE = "clean-shutdown";

export interface JournalOptions {
  readonly storage: JournalStorage;
  /** Monotonic milliseconds for latency metrics (the runtime passes performance.now, the lab virtual time). */
  readonly clockMs: () => number;
  readonly checkpointEveryCommits?: number;
  /** A group commit slower than this counts as a write stall (seed 003 H2-5 write_stall_cnt). */
  readonly stallThresholdMs?: number;
  readonly segmentBytesMax?: number;
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
  readonly recordsScanned: number;
  /** Bytes past the last commit boundary that were cut off (torn or uncommitted). */
  readonly tornBytes: number;
  readonly lastCommitId: number;
}

export interface JournalMetrics {
  readonly epoch: number;
  readonly commit_id: number;
  readonly write_ptr: number;
  readonly commit_ptr: number;
  readonly segments: number;
  readonly commit_latency_p99: number;
  readonly write_stall_cnt: number;
  readonly group_commits: number;
  readonly recovery_duration_ms: number;
  readonly recovery_bytes_scanned: number;
  readonly released_through: number;
}

/** One append() or appendMany() call: consecutive commit_ids from `firstCommitId`. */
interface Waiter {
  readonly firstCommitId: number;
  readonly payloads: readonly Uint8Array[];
  readonly bytes: number;
  readonly enqueuedMs: number;
  resolve(value: { firstCommitId: number; lastCommitId: number; epoch: number }): void;
  reject(error: unknown): void;
}

const RECORD_FRAME_OVERHEAD = 6 + 8 + 4;
const COMMIT_FRAME_BYTES = 6 + 4 + 8 + 8 + 4 + 4;

interface Checkpoint {
  readonly segment: string;
  readonly offset: number;
  readonly lastCommitId: number;
  readonly epoch: number;
}

export class Journal {
  private readonly storage: JournalStorage;
  private readonly clockMs: () => number;
  private readonly checkpointEvery: number;
  private readonly stallThresholdMs: number;
  private readonly segmentBytesMax: number;
  private segments: string[] = [];
  private activeSegment = "";
  private activeBytes = 0;
  private epochValue = 1;
  private durableCommitId = 0;
  private nextId = 1;
  private released = 0;
  private queue: Waiter[] = [];
  private queuedRecords = 0;
  private flushing: Promise<void> | null = null;
  /** Set and cleared synchronously, so an append never lands between "queue empty" and "writer stopped". */
  private writerRunning = false;
  private failed: unknown = null;
  private closed = false;
  private commitsSinceCheckpoint = 0;
  private readonly latencies = new Float64Array(COMMIT_LATENCY_SAMPLES_MAX);
  private latencyCount = 0;
  private stalls = 0;
  private groups = 0;
  private recoveryReport: JournalRecovery | null = null;
  /** Parsed entries of the segment read last; a grown active segment is parsed only from where it stopped. */
  private segmentCache: {
    name: string;
    length: number;
    entries: JournalEntry[];
    parsedTo: number;
    lastCommitId: number;
    epoch: number;
  } | null = null;

  private constructor(options: JournalOptions) {
    this.storage = options.storage;
    this.clockMs = options.clockMs;
    this.checkpointEvery = options.checkpointEveryCommits ?? CHECKPOINT_EVERY_COMMITS_DEFAULT;
    this.stallThresholdMs = options.stallThresholdMs ?? 250;
    this.segmentBytesMax = options.segmentBytesMax ?? JOURNAL_SEGMENT_BYTES_MAX;
  }

  /** Opens (and if needed recovers) the journal in the storage. */
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

  lastCommitId(): number {
    return this.durableCommitId;
  }

  /** The commit_id the next append() will receive (ids follow the call order). */
  nextCommitId(): number {
    return this.nextId;
  }

  releasedThrough(): number {
    return this.released;
  }

  /** Resolves once the record and its group's commit frame are durable; rejects if the group failed. */
  async append(payload: Uint8Array): Promise<{ commitId: number; epoch: number }> {
    const { firstCommitId, epoch } = await this.appendMany([payload]);
    return { commitId: firstCommitId, epoch };
  }

  /**
   * Appends several records that commit together (consecutive commit_ids), with one promise: the
   * concentrator's commit step, and what keeps the per-record cost near the raw append cost.
   */
  appendMany(
    payloads: readonly Uint8Array[],
  ): Promise<{ firstCommitId: number; lastCommitId: number; epoch: number }> {
    if (this.closed) return Promise.reject(new EvidenceError("JOURNAL_CLOSED", "journal is closed"));
    if (this.failed !== null) {
      return Promise.reject(
        new EvidenceError("JOURNAL_CLOSED", "journal stopped after a failed commit; reopen it"),
      );
    }
    if (payloads.length === 0 || payloads.length > GROUP_COMMIT_RECORDS_MAX) {
      return Promise.reject(
        new EvidenceError(
          "BAD_FIELD",
          `appendMany takes 1..${GROUP_COMMIT_RECORDS_MAX} records, got ${payloads.length}`,
        ),
      );
    }
    let bytes = 0;
    for (const payload of payloads) {
      if (payload.length === 0 || payload.length > JOURNAL_RECORD_BYTES_MAX) {
        return Promise.reject(
          new EvidenceError(
            "BAD_FIELD",
            `journal record must be 1..${JOURNAL_RECORD_BYTES_MAX} bytes, got ${payload.length}`,
          ),
        );
      }
      bytes += payload.length;
    }
    if (this.queuedRecords + payloads.length > JOURNAL_QUEUE_RECORDS_MAX) {
      return Promise.reject(
        new EvidenceError("LOG_FULL", `${JOURNAL_QUEUE_RECORDS_MAX} records already waiting`),
      );
    }
    return new Promise((resolve, reject) => {
      this.queue.push({
        firstCommitId: this.nextId,
        payloads,
        bytes,
        enqueuedMs: this.clockMs(),
        resolve,
        reject,
      });
      this.nextId += payloads.length;
      this.queuedRecords += payloads.length;
      if (!this.writerRunning) {
        this.writerRunning = true;
        this.flushing = this.flushLoop().finally(() => {
          if (!this.writerRunning) this.flushing = null;
        });
      }
    });
  }

  /** Committed records with commit_id ≥ `commitId`, ascending, at most `limit`. */
  async readFrom(commitId: number, limit: number): Promise<JournalEntry[]> {
    const out: JournalEntry[] = [];
    const from = Math.max(commitId, 1);
    let index = 0;
    for (let i = 0; i < this.segments.length; i++) {
      if (segmentFirstId(this.segments[i]!) <= from) index = i;
    }
    for (let i = index; i < this.segments.length && out.length < limit; i++) {
      for (const entry of await this.segmentEntries(this.segments[i]!)) {
        if (entry.commitId > this.durableCommitId) break;
        if (entry.commitId >= from) out.push(entry);
        if (out.length >= limit) break;
      }
    }
    return out;
  }

  /** The head-end acknowledged everything through `commitId`: persist that, drop whole segments under it. */
  async releaseThrough(commitId: number): Promise<void> {
    if (commitId <= this.released) return;
    this.released = Math.min(commitId, this.durableCommitId);
    await this.storage.writeAtomic(RELEASED_FILE, encodeU64(this.released));
    while (this.segments.length > 1) {
      const next = this.segments[1]!;
      if (segmentFirstId(next) - 1 > this.released) break;
      const gone = this.segments.shift()!;
      await this.storage.remove(gone);
      if (this.segmentCache?.name === gone) this.segmentCache = null;
    }
  }

  metrics(): JournalMetrics {
    const samples = Array.from(
      this.latencies.subarray(0, Math.min(this.latencyCount, COMMIT_LATENCY_SAMPLES_MAX)),
    );
    samples.sort((a, b) => a - b);
    const p99 =
      samples.length === 0 ? 0 : samples[Math.min(samples.length - 1, Math.floor(samples.length * 0.99))]!;
    return {
      epoch: this.epochValue,
      commit_id: this.durableCommitId,
      write_ptr: this.activeBytes,
      commit_ptr: this.activeBytes,
      segments: this.segments.length,
      commit_latency_p99: Math.round(p99 * 1000) / 1000,
      write_stall_cnt: this.stalls,
      group_commits: this.groups,
      recovery_duration_ms: this.recoveryReport?.durationMs ?? 0,
      recovery_bytes_scanned: this.recoveryReport?.bytesScanned ?? 0,
      released_through: this.released,
    };
  }

  /** Waits for pending appends, records a clean shutdown (the next open is not a recovery), closes. */
  async close(): Promise<void> {
    if (this.closed) return;
    while (this.flushing !== null) await this.flushing;
    this.closed = true;
    if (this.failed === null) {
      await this.storage.writeAtomic(
        CLEAN_FILE,
        concatBytes(encodeU64(this.durableCommitId), encodeU32(this.epochValue)),
      );
    }
    await this.storage.close();
  }

  // ───────────────────────────── writing ─────────────────────────────

  private async flushLoop(): Promise<void> {
    try {
      await this.writeGroups();
    } finally {
      this.writerRunning = false;
    }
  }

  private async writeGroups(): Promise<void> {
    for (;;) {
      if (this.queue.length === 0 || this.failed !== null) {
        this.writerRunning = false; // synchronously with the emptiness check
        return;
      }
      let records = 0;
      let bytes = 0;
      let take = 0;
      while (take < this.queue.length) {
        const next = this.queue[take]!;
        if (
          take > 0 &&
          (records + next.payloads.length > GROUP_COMMIT_RECORDS_MAX || bytes >= GROUP_COMMIT_BYTES_MAX)
        )
          break;
        records += next.payloads.length;
        bytes += next.bytes;
        take++;
      }
      const group = this.queue.splice(0, take);
      this.queuedRecords -= records;
      const started = this.clockMs();
      const firstCommitId = group[0]!.firstCommitId;
      const lastCommitId = firstCommitId + records - 1;
      try {
        if (this.activeBytes >= this.segmentBytesMax) await this.rotate(firstCommitId);
        // One buffer per group, fields written in place: the hot path allocates nothing per record.
        const out = Buffer.allocUnsafe(records * RECORD_FRAME_OVERHEAD + bytes + COMMIT_FRAME_BYTES);
        let at = 0;
        let commitId = firstCommitId;
        for (const waiter of group) {
          for (const payload of waiter.payloads) {
            out[at] = MAGIC;
            out[at + 1] = FRAME_RECORD;
            out.writeUInt32BE(12 + payload.length, at + 2);
            out.writeUInt32BE(Math.floor(commitId / 0x1_0000_0000), at + 6);
            out.writeUInt32BE(commitId >>> 0, at + 10);
            out.writeUInt32BE(this.epochValue, at + 14);
            out.set(payload, at + RECORD_FRAME_OVERHEAD);
            at += RECORD_FRAME_OVERHEAD + payload.length;
            commitId++;
          }
        }
        const groupCrc = crc32(out.subarray(0, at));
        const commitAt = at;
        out[at] = MAGIC;
        out[at + 1] = FRAME_COMMIT;
        out.writeUInt32BE(COMMIT_FRAME_BYTES - 10, at + 2);
        out.writeUInt32BE(this.epochValue, at + 6);
        out.writeUInt32BE(Math.floor(firstCommitId / 0x1_0000_0000), at + 10);
        out.writeUInt32BE(firstCommitId >>> 0, at + 14);
        out.writeUInt32BE(Math.floor(lastCommitId / 0x1_0000_0000), at + 18);
        out.writeUInt32BE(lastCommitId >>> 0, at + 22);
        out.writeUInt32BE(groupCrc, at + 26);
        out.writeUInt32BE(crc32(out.subarray(commitAt + 1, commitAt + 30)), at + 30);
        await this.storage.append(this.activeSegment, out);
        await this.storage.datasync(this.activeSegment);
        this.activeBytes += out.length;
        this.durableCommitId = lastCommitId;
      } catch (error) {
        // Nothing of this group is acknowledged; later appends are refused until a reopen recovers.
        this.failed = error;
        this.queuedRecords = 0;
        for (const waiter of [...group, ...this.queue.splice(0)]) waiter.reject(error);
        this.writerRunning = false;
        return;
      }
      const finished = this.clockMs();
      this.groups++;
      if (finished - started > this.stallThresholdMs) this.stalls++;
      for (const waiter of group) {
        this.latencies[this.latencyCount++ % COMMIT_LATENCY_SAMPLES_MAX] = finished - waiter.enqueuedMs;
        waiter.resolve({
          firstCommitId: waiter.firstCommitId,
          lastCommitId: waiter.firstCommitId + waiter.payloads.length - 1,
          epoch: this.epochValue,
        });
      }
      if (++this.commitsSinceCheckpoint >= this.checkpointEvery) {
        this.commitsSinceCheckpoint = 0;
        try {
          await this.writeCheckpoint();
        } catch (error) {
          this.failed = error;
          this.queuedRecords = 0;
          for (const waiter of this.queue.splice(0)) waiter.reject(error);
          this.writerRunning = false;
          return;
        }
      }
    }
  }

  private async rotate(firstCommitId: number): Promise<void> {
    const name = segmentName(firstCommitId);
    await this.storage.append(name, new Uint8Array(0));
    this.segments.push(name);
    this.activeSegment = name;
    this.activeBytes = 0;
  }

  private async writeCheckpoint(): Promise<void> {
    const w = new ByteWriter(64);
    w.text8(this.activeSegment, "segment")
      .u64(this.activeBytes)
      .u64(this.durableCommitId)
      .u32(this.epochValue);
    const body = w.finish();
    await this.storage.writeAtomic(CHECKPOINT_FILE, concatBytes(body, encodeU32(crc32(body))));
  }

  // ───────────────────────────── recovery ─────────────────────────────

  private async recover(): Promise<void> {
    const started = this.clockMs();
    const names = await this.storage.list();
    this.segments = names.filter((n) => n.startsWith(SEGMENT_PREFIX) && n.endsWith(SEGMENT_SUFFIX)).sort();
    if (names.includes(RELEASED_FILE)) this.released = decodeU64(await this.storage.read(RELEASED_FILE));
    const clean = names.includes(CLEAN_FILE) ? await this.storage.read(CLEAN_FILE) : null;

    if (this.segments.length === 0) {
      // First start ever.
      this.epochValue = 1;
      await this.rotate(1);
      await this.appendEpochFrame(0);
      this.recoveryReport = report(false, 1, this.clockMs() - started, 0, 0, 0, 0);
      return;
    }

    const checkpoint = names.includes(CHECKPOINT_FILE)
      ? decodeCheckpoint(await this.storage.read(CHECKPOINT_FILE))
      : null;
    let startIndex = 0;
    let startOffset = 0;
    let lastCommitId = segmentFirstId(this.segments[0]!) - 1;
    let epoch = 1;
    if (checkpoint !== null && this.segments.includes(checkpoint.segment)) {
      startIndex = this.segments.indexOf(checkpoint.segment);
      startOffset = checkpoint.offset;
      lastCommitId = checkpoint.lastCommitId;
      epoch = checkpoint.epoch;
    }

    let bytesScanned = 0;
    let recordsScanned = 0;
    let tornBytes = 0;
    for (let i = startIndex; i < this.segments.length; i++) {
      const name = this.segments[i]!;
      const data = await this.storage.read(name);
      const from = i === startIndex ? startOffset : 0;
      const scan = scanSegment(data, from, lastCommitId, epoch);
      bytesScanned += data.length - from;
      recordsScanned += scan.records;
      lastCommitId = scan.lastCommitId;
      epoch = scan.epoch;
      if (scan.commitPtr < data.length) {
        // A torn tail has no intact commit after the tear; damage with committed groups after it is
        // corruption (bit rot, an edit), and truncating would silently drop committed records.
        const committedAfter = findCommitFrame(data, scan.commitPtr + 1);
        if (committedAfter >= 0) {
          throw new EvidenceError(
            "JOURNAL_CORRUPT",
            `segment ${name} is damaged at byte ${scan.commitPtr}, before a committed group at byte ${committedAfter}`,
          );
        }
        const laterSegments = this.segments.slice(i + 1);
        for (const later of laterSegments) {
          const laterData = await this.storage.read(later);
          if (scanSegment(laterData, 0, lastCommitId, epoch).commitPtr > 0) {
            throw new EvidenceError(
              "JOURNAL_CORRUPT",
              `segment ${name} is damaged at byte ${scan.commitPtr} but ${later} holds committed records after it`,
            );
          }
          await this.storage.remove(later);
        }
        this.segments = this.segments.slice(0, i + 1);
        tornBytes += data.length - scan.commitPtr;
        await this.storage.truncate(name, scan.commitPtr);
      }
      if (i === this.segments.length - 1) {
        this.activeSegment = name;
        this.activeBytes = scan.commitPtr;
      }
    }
    this.durableCommitId = lastCommitId;
    this.nextId = lastCommitId + 1;
    this.epochValue = epoch;
    const wasClean =
      clean !== null &&
      clean.length === 12 &&
      decodeU64(clean.subarray(0, 8)) === lastCommitId &&
      tornBytes === 0;
    if (clean !== null) await this.storage.remove(CLEAN_FILE);
    if (!wasClean) {
      this.epochValue = epoch + 1;
      await this.appendEpochFrame(1);
    }
    this.recoveryReport = report(
      !wasClean,
      this.epochValue,
      this.clockMs() - started,
      bytesScanned,
      recordsScanned,
      tornBytes,
      lastCommitId,
    );
  }

  private async appendEpochFrame(reason: number): Promise<void> {
    const bytes = frame(FRAME_EPOCH, (w) => w.u32(this.epochValue).u64(this.durableCommitId).u8(reason));
    await this.storage.append(this.activeSegment, bytes);
    await this.storage.datasync(this.activeSegment);
    this.activeBytes += bytes.length;
    await this.writeCheckpoint();
  }

  private async segmentEntries(name: string): Promise<JournalEntry[]> {
    const data = await this.storage.read(name);
    const cache = this.segmentCache;
    if (cache?.name === name && cache.length === data.length) return cache.entries;
    if (cache?.name === name && data.length > cache.length) {
      // Append-only: what was parsed stays valid; parse the new groups only.
      const scan = scanSegment(data, cache.parsedTo, cache.lastCommitId, cache.epoch, cache.entries);
      Object.assign(cache, {
        length: data.length,
        parsedTo: scan.commitPtr,
        lastCommitId: scan.lastCommitId,
        epoch: scan.epoch,
      });
      return cache.entries;
    }
    const entries: JournalEntry[] = [];
    const scan = scanSegment(data, 0, segmentFirstId(name) - 1, 0, entries);
    this.segmentCache = {
      name,
      length: data.length,
      entries,
      parsedTo: scan.commitPtr,
      lastCommitId: scan.lastCommitId,
      epoch: scan.epoch,
    };
    return entries;
  }
}

interface SegmentScan {
  /** Offset just after the last accepted COMMIT or EPOCH frame. */
  readonly commitPtr: number;
  readonly lastCommitId: number;
  readonly epoch: number;
  readonly records: number;
}

/** Walks frames from `offset`; stops at the first frame that is torn, corrupt or out of sequence. */
function scanSegment(
  data: Uint8Array,
  offset: number,
  lastCommitId: number,
  epoch: number,
  collect?: JournalEntry[],
): SegmentScan {
  let at = offset;
  let commitPtr = offset;
  let committedId = lastCommitId;
  let currentEpoch = epoch;
  let records = 0;
  let group: JournalEntry[] = [];
  let groupStart = offset;
  const view = new DataView(data.buffer, data.byteOffset, data.byteLength);
  while (at + FRAME_HEADER_BYTES <= data.length) {
    if (data[at] !== MAGIC) break;
    const type = data[at + 1]!;
    const length = view.getUint32(at + 2);
    const end = at + FRAME_HEADER_BYTES + length;
    // Record frames are covered by their group's COMMIT CRC; the others carry their own.
    const trailer = type === FRAME_RECORD ? 0 : FRAME_TRAILER_BYTES;
    if (length > JOURNAL_RECORD_BYTES_MAX + 16 || end + trailer > data.length) break;
    if (trailer > 0 && crc32(data.subarray(at + 1, end)) !== view.getUint32(end)) break;
    const body = new ByteReader(data.subarray(at + FRAME_HEADER_BYTES, end), "journal frame");
    const next = end + trailer;
    try {
      if (type === FRAME_RECORD) {
        if (group.length === 0) groupStart = at;
        const commitId = body.u64("commit_id");
        const recordEpoch = body.u32("epoch");
        const expected = (group.at(-1)?.commitId ?? committedId) + 1;
        if (commitId !== expected) break;
        group.push({ commitId, epoch: recordEpoch, payload: body.bytes(body.remaining, "payload") });
      } else if (type === FRAME_COMMIT) {
        const commitEpoch = body.u32("epoch");
        const first = body.u64("first");
        const last = body.u64("last");
        const groupCrc = body.u32("group crc");
        if (
          group.length === 0 ||
          group[0]!.commitId !== first ||
          group.at(-1)!.commitId !== last ||
          crc32(data.subarray(groupStart, at)) !== groupCrc ||
          commitEpoch < currentEpoch
        ) {
          break;
        }
        currentEpoch = commitEpoch;
        committedId = last;
        records += group.length;
        collect?.push(...group);
        group = [];
        commitPtr = next;
      } else if (type === FRAME_EPOCH) {
        if (group.length > 0) break;
        const newEpoch = body.u32("epoch");
        if (newEpoch < currentEpoch) break;
        currentEpoch = newEpoch;
        commitPtr = next;
      } else {
        break;
      }
    } catch (error) {
      if (error instanceof EvidenceError) break;
      throw error;
    }
    at = next;
  }
  return { commitPtr, lastCommitId: committedId, epoch: currentEpoch, records };
}

/** Offset of the first intact COMMIT frame at or after `from`, or -1. */
function findCommitFrame(data: Uint8Array, from: number): number {
  const view = new DataView(data.buffer, data.byteOffset, data.byteLength);
  for (
    let at = data.indexOf(MAGIC, from);
    at >= 0 && at + COMMIT_FRAME_BYTES <= data.length;
    at = data.indexOf(MAGIC, at + 1)
  ) {
    if (data[at + 1] !== FRAME_COMMIT || view.getUint32(at + 2) !== COMMIT_FRAME_BYTES - 10) continue;
    if (
      crc32(data.subarray(at + 1, at + COMMIT_FRAME_BYTES - 4)) ===
      view.getUint32(at + COMMIT_FRAME_BYTES - 4)
    )
      return at;
  }
  return -1;
}

function frame(type: number, body: (w: ByteWriter) => void): Uint8Array {
  const w = new ByteWriter(128);
  w.u8(MAGIC).u8(type).u32(0);
  body(w);
  const bytes = w.finish();
  const length = bytes.length - FRAME_HEADER_BYTES;
  new DataView(bytes.buffer).setUint32(2, length);
  return concatBytes(bytes, encodeU32(crc32(bytes.subarray(1))));
}

function decodeCheckpoint(bytes: Uint8Array): Checkpoint | null {
  if (bytes.length < 4) return null;
  const body = bytes.subarray(0, bytes.length - 4);
  if (crc32(body) !== new DataView(bytes.buffer, bytes.byteOffset).getUint32(bytes.length - 4)) return null;
  try {
    const r = new ByteReader(body, "checkpoint");
    const checkpoint = {
      segment: r.text8("segment"),
      offset: r.u64("offset"),
      lastCommitId: r.u64("last"),
      epoch: r.u32("epoch"),
    };
    r.end();
    return checkpoint;
  } catch (error) {
    if (error instanceof EvidenceError) return null;
    throw error;
  }
}

function segmentName(firstCommitId: number): string {
  return `${SEGMENT_PREFIX}${String(firstCommitId).padStart(16, "0")}${SEGMENT_SUFFIX}`;
}

function segmentFirstId(name: string): number {
  return Number(name.slice(SEGMENT_PREFIX.length, -SEGMENT_SUFFIX.length));
}

function report(
  recovered: boolean,
  epoch: number,
  durationMs: number,
  bytesScanned: number,
  recordsScanned: number,
  tornBytes: number,
  lastCommitId: number,
): JournalRecovery {
  return { recovered, epoch, durationMs, bytesScanned, recordsScanned, tornBytes, lastCommitId };
}

function encodeU32(value: number): Uint8Array {
  const out = new Uint8Array(4);
  new DataView(out.buffer).setUint32(0, value >>> 0);
  return out;
}

function encodeU64(value: number): Uint8Array {
  return new ByteWriter(8).u64(value).finish();
}

function decodeU64(bytes: Uint8Array): number {
  if (bytes.length < 8) throw new EvidenceError("JOURNAL_CORRUPT", "u64 file shorter than 8 bytes");
  return new ByteReader(bytes.subarray(0, 8), "u64").u64("value");
}
