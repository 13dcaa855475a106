// shell: the concentrator's journal on disk.
//
// INTERIM: src/evidence's crash-safe Journal (issue 5) had not landed when the concentrator was written;
// this small append-only segment journal stands in for it behind the same CommitJournal port, so the
// daemon, the MQTT integration test and the SIGKILL crash test run today. Replace the body of
// openFileJournal with an adapter over the evidence Journal once it exists; nothing else changes.
import {
  closeSync,
  existsSync,
  fdatasync,
  fsyncSync,
  ftruncateSync,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  readSync,
  unlinkSync,
  write,
} from "node:fs";
import { join } from "node:path";
import { crc32, writeFileAtomic } from "../../evidence/index.ts";
import type { CommitJournal, JournalEntry } from "../core/ports.ts";
import { ConcentratorError } from "../errors.ts";

/** A segment is closed and a new one opened past this size. */
export const JOURNAL_SEGMENT_BYTES_MAX = 8 * 1024 * 1024;
/** Largest payload accepted (a reading record is ~120 bytes). */
export const JOURNAL_PAYLOAD_BYTES_MAX = 64 * 1024;
/** Appends written by one write + fdatasync (group commit). */
export const JOURNAL_GROUP_ENTRIES_MAX = 4096;

// Frame: "JE" | u32 payload length | u64 commit_id | u32 epoch | payload | u32 CRC-32 of all before it.
const FRAME_OVERHEAD = 2 + 4 + 8 + 4 + 4;
const MAGIC_0 = 0x4a;
const MAGIC_1 = 0x45;

interface IndexEntry {
  readonly commitId: number;
  readonly segment: Segment;
  readonly offset: number;
  readonly length: number;
}

interface Segment {
  readonly firstCommitId: number;
  readonly path: string;
  fd: number;
  size: number;
}

interface Pending {
  readonly commitId: number;
  readonly payload: Uint8Array;
  readonly resolve: (value: { commitId: number; epoch: number }) => void;
  readonly reject: (error: Error) => void;
}

export class FileCommitJournal implements CommitJournal {
  private readonly segments: Segment[] = [];
  private readonly index: IndexEntry[] = [];
  private indexStart = 0;
  private next = 1;
  private durableLast = 0;
  private released = 0;
  private pending: Pending[] = [];
  private flushing = false;
  private failed: Error | null = null;
  private closed = false;

  private constructor(
    private readonly dir: string,
    readonly epoch: number,
  ) {}

  static open(dir: string): FileCommitJournal {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    const epochPath = join(dir, "epoch");
    const previous = existsSync(epochPath) ? Number(readFileSync(epochPath, "utf8").trim()) : 0;
    if (!Number.isSafeInteger(previous) || previous < 0) {
      throw new ConcentratorError("STORE_CORRUPT", "epoch file is not a number", epochPath);
    }
    // seed 003 H2-11: every restart opens a new recovery epoch.
    writeFileAtomic(epochPath, `${previous + 1}\n`, 0o600);
    const journal = new FileCommitJournal(dir, previous + 1);
    journal.recover();
    return journal;
  }

  private recover(): void {
    const releasedPath = join(this.dir, "released");
    if (existsSync(releasedPath)) this.released = Number(readFileSync(releasedPath, "utf8").trim()) || 0;
    const names = readdirSync(this.dir)
      .filter((n) => /^seg-\d{16}\.log$/.test(n))
      .sort();
    names.forEach((name, i) => {
      const path = join(this.dir, name);
      const segment: Segment = {
        firstCommitId: Number(name.slice(4, 20)),
        path,
        fd: openSync(path, "r+"),
        size: 0,
      };
      const bytes = readFileSync(path);
      let offset = 0;
      while (offset < bytes.length) {
        const frame = parseFrame(bytes, offset);
        const expected = this.durableLast === 0 ? frame?.commitId : this.durableLast + 1;
        if (frame === null || frame.commitId !== expected) {
          if (i !== names.length - 1) {
            throw new ConcentratorError(
              "STORE_CORRUPT",
              `torn or foreign frame inside a closed segment`,
              `${path} byte ${offset}`,
            );
          }
          // A torn tail of the open segment: cut at the last whole frame.
          ftruncateSync(segment.fd, offset);
          fsyncSync(segment.fd);
          break;
        }
        this.index.push({ commitId: frame.commitId, segment, offset: offset + 18, length: frame.length });
        this.durableLast = frame.commitId;
        offset = frame.end;
      }
      segment.size = offset;
      this.segments.push(segment);
    });
    this.durableLast = Math.max(this.durableLast, this.released);
    this.next = this.durableLast + 1;
    while (
      this.indexStart < this.index.length &&
      (this.index[this.indexStart] as IndexEntry).commitId <= this.released
    ) {
      this.indexStart++;
    }
  }

  nextCommitId(): number {
    return this.next;
  }

  lastCommitId(): number {
    return this.durableLast;
  }

  releasedThrough(): number {
    return this.released;
  }

  append(payload: Uint8Array): Promise<{ commitId: number; epoch: number }> {
    if (this.closed)
      return Promise.reject(new ConcentratorError("STORE_CORRUPT", "journal closed", this.dir));
    if (this.failed !== null) return Promise.reject(this.failed);
    if (payload.length > JOURNAL_PAYLOAD_BYTES_MAX) {
      return Promise.reject(
        new ConcentratorError("STORE_CORRUPT", `payload of ${payload.length} bytes`, this.dir),
      );
    }
    const commitId = this.next++;
    return new Promise((resolve, reject) => {
      this.pending.push({ commitId, payload, resolve, reject });
      if (!this.flushing) {
        this.flushing = true;
        setImmediate(() => this.flush());
      }
    });
  }

  private flush(): void {
    const group = this.pending.splice(0, JOURNAL_GROUP_ENTRIES_MAX);
    if (group.length === 0) {
      this.flushing = false;
      return;
    }
    let segment = this.segments[this.segments.length - 1];
    if (segment === undefined || segment.size >= JOURNAL_SEGMENT_BYTES_MAX) {
      const first = (group[0] as Pending).commitId;
      const path = join(this.dir, `seg-${String(first).padStart(16, "0")}.log`);
      segment = { firstCommitId: first, path, fd: openSync(path, "w+", 0o600), size: 0 };
      this.segments.push(segment);
      const dirFd = openSync(this.dir, "r");
      fsyncSync(dirFd);
      closeSync(dirFd);
    }
    const frames = group.map((p) => encodeFrame(p.commitId, this.epoch, p.payload));
    const buffer = Buffer.concat(frames);
    const target = segment;
    const start = target.size;
    const fail = (error: Error) => {
      this.failed = error;
      for (const p of [...group, ...this.pending.splice(0)]) p.reject(error);
      this.flushing = false;
    };
    write(target.fd, buffer, 0, buffer.length, start, (writeError) => {
      if (writeError) return fail(writeError);
      fdatasync(target.fd, (syncError) => {
        if (syncError) return fail(syncError);
        let offset = start;
        group.forEach((p, i) => {
          this.index.push({
            commitId: p.commitId,
            segment: target,
            offset: offset + 18,
            length: p.payload.length,
          });
          offset += (frames[i] as Buffer).length;
          this.durableLast = p.commitId;
        });
        target.size = offset;
        for (const p of group) p.resolve({ commitId: p.commitId, epoch: this.epoch });
        this.flush();
      });
    });
  }

  async readFrom(commitId: number, limit: number): Promise<JournalEntry[]> {
    const out: JournalEntry[] = [];
    const first = this.index[this.indexStart];
    if (first === undefined) return out;
    let i = Math.max(this.indexStart, this.indexStart + (commitId - first.commitId));
    while (i > this.indexStart && (this.index[i - 1] as IndexEntry).commitId >= commitId) i--;
    while (i < this.index.length && (this.index[i] as IndexEntry).commitId < commitId) i++;
    // One read per segment run: frames of consecutive commit_ids are contiguous on disk.
    while (i < this.index.length && out.length < limit) {
      const start = this.index[i] as IndexEntry;
      let end = i;
      while (
        end + 1 < this.index.length &&
        end + 1 - i < limit - out.length &&
        (this.index[end + 1] as IndexEntry).segment === start.segment
      ) {
        end++;
      }
      const last = this.index[end] as IndexEntry;
      const from = start.offset;
      const bytes = Buffer.alloc(last.offset + last.length - from);
      readSync(start.segment.fd, bytes, 0, bytes.length, from);
      for (let k = i; k <= end; k++) {
        const entry = this.index[k] as IndexEntry;
        out.push({
          commitId: entry.commitId,
          payload: new Uint8Array(bytes.buffer, bytes.byteOffset + entry.offset - from, entry.length),
        });
      }
      i = end + 1;
    }
    return out;
  }

  async releaseThrough(commitId: number): Promise<void> {
    if (commitId <= this.released) return;
    this.released = Math.min(commitId, this.durableLast);
    writeFileAtomic(join(this.dir, "released"), `${this.released}\n`, 0o600);
    while (
      this.indexStart < this.index.length &&
      (this.index[this.indexStart] as IndexEntry).commitId <= this.released
    ) {
      this.indexStart++;
    }
    if (this.indexStart > 65_536) {
      this.index.splice(0, this.indexStart);
      this.indexStart = 0;
    }
    // Whole segments below the release mark are reclaimed (never the open one).
    while (this.segments.length > 1) {
      const nextSegment = this.segments[1] as Segment;
      if (nextSegment.firstCommitId - 1 > this.released) break;
      const old = this.segments.shift() as Segment;
      closeSync(old.fd);
      unlinkSync(old.path);
    }
  }

  async close(): Promise<void> {
    while (this.flushing) await new Promise((resolve) => setImmediate(resolve));
    this.closed = true;
    for (const segment of this.segments) closeSync(segment.fd);
    this.segments.length = 0;
  }
}

function encodeFrame(commitId: number, epoch: number, payload: Uint8Array): Buffer {
  const frame = Buffer.alloc(FRAME_OVERHEAD + payload.length);
  frame[0] = MAGIC_0;
  frame[1] = MAGIC_1;
  frame.writeUInt32BE(payload.length, 2);
  frame.writeBigUInt64BE(BigInt(commitId), 6);
  frame.writeUInt32BE(epoch, 14);
  frame.set(payload, 18);
  frame.writeUInt32BE(crc32(frame.subarray(0, 18 + payload.length)), 18 + payload.length);
  return frame;
}

function parseFrame(bytes: Buffer, offset: number): { commitId: number; length: number; end: number } | null {
  if (offset + FRAME_OVERHEAD > bytes.length || bytes[offset] !== MAGIC_0 || bytes[offset + 1] !== MAGIC_1)
    return null;
  const length = bytes.readUInt32BE(offset + 2);
  if (length > JOURNAL_PAYLOAD_BYTES_MAX || offset + FRAME_OVERHEAD + length > bytes.length) return null;
  const crcAt = offset + 18 + length;
  if (crc32(bytes.subarray(offset, crcAt)) !== bytes.readUInt32BE(crcAt)) return null;
  return { commitId: Number(bytes.readBigUInt64BE(offset + 6)), length, end: crcAt + 4 };
}

export async function openFileJournal(dir: string): Promise<CommitJournal & { close(): Promise<void> }> {
  return FileCommitJournal.open(dir);
}
