// shell: the concentrator's side store on disk — state.json and one file per outbox batch, each
// written write-temp → fsync → rename (+ directory fsync), so a power cut leaves the old or the new file.
import {
  closeSync,
  existsSync,
  fsyncSync,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  unlinkSync,
} from "node:fs";
import { join } from "node:path";
import { fromHex, toHex, writeFileAtomic } from "../../evidence/index.ts";
import type { DcuPersistentState, DcuStore } from "../core/ports.ts";
import { ConcentratorError } from "../errors.ts";

const STATE_FORMAT = "amiproof-dcu-state";
const BATCH_SUFFIX = ".batch";
/** Outbox files read at start; more than the core's bound means the directory is not ours. */
const OUTBOX_FILES_MAX = 4096;

export class FileDcuStore implements DcuStore {
  private readonly statePath: string;
  private readonly outboxDir: string;

  constructor(private readonly dir: string) {
    this.statePath = join(dir, "state.json");
    this.outboxDir = join(dir, "outbox");
    mkdirSync(this.outboxDir, { recursive: true, mode: 0o700 });
  }

  hasState(): boolean {
    return existsSync(this.statePath);
  }

  async loadState(): Promise<DcuPersistentState | null> {
    if (!existsSync(this.statePath)) return null;
    let raw: Record<string, unknown>;
    try {
      raw = JSON.parse(readFileSync(this.statePath, "utf8")) as Record<string, unknown>;
    } catch (error) {
      throw new ConcentratorError(
        "STORE_CORRUPT",
        `cannot read: ${(error as Error).message}`,
        this.statePath,
      );
    }
    if (raw.format !== STATE_FORMAT || raw.version !== 1) {
      throw new ConcentratorError("STORE_CORRUPT", `not an ${STATE_FORMAT} v1 file`, this.statePath);
    }
    const head = raw.chain_head_hash;
    return {
      lastAckedBatchId: numberOf(raw.last_acked_batch_id, "last_acked_batch_id", this.statePath),
      chainHeadHash: typeof head === "string" ? fromHex(head, "chain_head_hash") : null,
      readingCursors: countsOf(raw.reading_cursors, "reading_cursors", this.statePath),
      eventCursors: countsOf(raw.event_cursors, "event_cursors", this.statePath),
      lifetime: countsOf(raw.lifetime, "lifetime", this.statePath),
    };
  }

  async saveState(state: DcuPersistentState): Promise<void> {
    writeFileAtomic(
      this.statePath,
      JSON.stringify({
        format: STATE_FORMAT,
        version: 1,
        last_acked_batch_id: state.lastAckedBatchId,
        chain_head_hash: state.chainHeadHash === null ? null : toHex(state.chainHeadHash),
        reading_cursors: state.readingCursors,
        event_cursors: state.eventCursors,
        lifetime: state.lifetime,
      }),
      0o600,
    );
  }

  async loadOutbox(): Promise<Uint8Array[]> {
    const names = readdirSync(this.outboxDir).filter((name) => name.endsWith(BATCH_SUFFIX));
    if (names.length > OUTBOX_FILES_MAX) {
      throw new ConcentratorError(
        "STORE_CORRUPT",
        `${names.length} outbox files, at most ${OUTBOX_FILES_MAX}`,
        this.outboxDir,
      );
    }
    return names.map((name) => new Uint8Array(readFileSync(join(this.outboxDir, name))));
  }

  async putBatch(batchId: number, bytes: Uint8Array): Promise<void> {
    writeFileAtomic(join(this.outboxDir, batchFileName(batchId)), bytes, 0o600);
  }

  async dropBatchesThrough(batchId: number): Promise<void> {
    let removed = 0;
    for (const name of readdirSync(this.outboxDir)) {
      if (!name.endsWith(BATCH_SUFFIX)) continue;
      const id = Number(name.slice(0, -BATCH_SUFFIX.length));
      if (Number.isSafeInteger(id) && id <= batchId) {
        unlinkSync(join(this.outboxDir, name));
        removed++;
      }
    }
    if (removed > 0) {
      const fd = openSync(this.outboxDir, "r");
      try {
        fsyncSync(fd);
      } finally {
        closeSync(fd);
      }
    }
  }

  /** Where the clean-shutdown marker lives (reset_reason on the next start). */
  get dataDir(): string {
    return this.dir;
  }
}

function batchFileName(batchId: number): string {
  return `${String(batchId).padStart(16, "0")}${BATCH_SUFFIX}`;
}

function numberOf(value: unknown, name: string, where: string): number {
  if (typeof value !== "number" || !Number.isSafeInteger(value) || value < 0) {
    throw new ConcentratorError("STORE_CORRUPT", `${name} is not a non-negative integer`, where);
  }
  return value;
}

function countsOf(value: unknown, name: string, where: string): Record<string, number> {
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw new ConcentratorError("STORE_CORRUPT", `${name} is not an object`, where);
  }
  const out: Record<string, number> = {};
  for (const [key, count] of Object.entries(value)) out[key] = numberOf(count, `${name}.${key}`, where);
  return out;
}
