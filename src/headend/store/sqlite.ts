// shell: the embedded store adapter opens a database file (or :memory:); the head-end core receives it as
// its storage parameter, as the lab does with an in-memory one. No clock or timer is read here.
import { mkdirSync } from "node:fs";
import { dirname, resolve } from "node:path";
import Database from "better-sqlite3";
import { StoreError } from "./errors.ts";
import { compareReadingKeys } from "./rows.ts";
import { readingBucket } from "./schema.ts";
import { type SqlExecutor, SqlStore, type SqlValue } from "./sql-store.ts";
import type { MeterReadingUpdate, ReadingRow } from "./types.ts";

/** How long a writer waits for another process's write lock before giving up (ms). */
export const SQLITE_BUSY_TIMEOUT_MS = 5_000;
/**
 * Page cache per connection (KiB). SQLite's default (2 MiB) is smaller than the pages one batch touches
 * (about one primary-key leaf per meter in the batch), so the default would re-read them every batch.
 */
export const SQLITE_CACHE_KIB = 65_536;
/**
 * WAL pages before an automatic checkpoint (default 1,000 = 4 MiB, about two batches here). A checkpoint
 * writes each page once however many batches changed it, so a larger WAL writes the hot leaves less often.
 */
export const SQLITE_WAL_CHECKPOINT_PAGES = 8_192;
/** Meters per multi-row upsert statement (6 parameters each, far below SQLite's 32,766). */
const METER_UPSERT_ROWS = 64;
/** Distinct SQL texts kept prepared; the texts are generated from a finite set of filters. */
const STATEMENT_CACHE_MAX = 256;

export interface SqliteStoreOptions {
  /** A file path, or ":memory:". */
  readonly path: string;
  /** Stamps schema_migrations.applied_ms. */
  readonly nowMs: number;
}

type Statement = Database.Statement<unknown[], unknown>;

/**
 * One queue per database file in this process. better-sqlite3 blocks the thread while it waits for a lock,
 * so a second connection in the same process waiting on the first (which can only finish on this same
 * thread) would sleep through busy_timeout and fail: connections to one file take turns here instead.
 * Other processes are kept apart by SQLite's own locks and busy_timeout.
 */
class FileQueue {
  tail: Promise<unknown> = Promise.resolve();
  users = 0;
}
const fileQueues = new Map<string, FileQueue>();

function acquireQueue(key: string | null): FileQueue {
  if (key === null) return new FileQueue();
  const queue = fileQueues.get(key) ?? new FileQueue();
  fileQueues.set(key, queue);
  queue.users++;
  return queue;
}

function releaseQueue(key: string | null): void {
  if (key === null) return;
  const queue = fileQueues.get(key);
  if (queue !== undefined && --queue.users === 0) fileQueues.delete(key);
}

/**
 * SQLite through better-sqlite3, in WAL mode with synchronous=FULL.
 *
 * Why FULL: seed 003 H2-5 "Ack must occur only after Commit durability is proven". With WAL and
 * synchronous=NORMAL a commit is atomic but not durable — the WAL is fsynced only at checkpoints, so a
 * power cut can roll back the last transactions after the head-end has ACKed them and the concentrator
 * has released them: a loss nobody can reconcile. FULL fsyncs the WAL at every commit. The ingest
 * commits one transaction per batch (~1,000 rows), so that fsync is paid once per batch, not per row.
 *
 * better-sqlite3 is synchronous; every call goes through one queue so an open transaction is never
 * interleaved with another caller's statements on the same connection.
 */
export class SqliteStore extends SqlStore {
  readonly dialect = "sqlite" as const;
  readonly description: string;
  protected readonly db: SqlExecutor;
  private readonly connection: Database.Database;
  private readonly statements = new Map<string, Statement>();
  private readonly queueKey: string | null;
  private readonly queue: FileQueue;
  private closed = false;
  private readonly direct: SqlExecutor;

  private constructor(connection: Database.Database, description: string, queueKey: string | null) {
    super();
    this.connection = connection;
    this.description = description;
    this.queueKey = queueKey;
    this.queue = acquireQueue(queueKey);
    this.direct = {
      all: async (sql, params = []) => this.allNow(sql, params),
      run: async (sql, params = []) => this.runNow(sql, params),
    };
    this.db = {
      all: (sql, params = []) => this.serial(() => this.allNow(sql, params)),
      run: (sql, params = []) => this.serial(() => this.runNow(sql, params)),
    };
  }

  static async open(options: SqliteStoreOptions): Promise<SqliteStore> {
    const memory = options.path === ":memory:";
    let connection: Database.Database;
    try {
      if (!memory) mkdirSync(dirname(options.path), { recursive: true });
      connection = new Database(options.path);
    } catch (error) {
      throw new StoreError(
        "UNAVAILABLE",
        `cannot open ${options.path}: ${(error as Error).message}`,
        "sqlite",
        {
          cause: error,
        },
      );
    }
    const store = new SqliteStore(
      connection,
      `sqlite:${options.path}`,
      memory ? null : resolve(options.path),
    );
    try {
      connection.pragma(`busy_timeout = ${SQLITE_BUSY_TIMEOUT_MS}`);
      const mode = connection.pragma("journal_mode = WAL", { simple: true });
      if (!memory && mode !== "wal") {
        throw new StoreError(
          "UNAVAILABLE",
          `journal_mode WAL refused (got ${String(mode)})`,
          store.description,
        );
      }
      connection.pragma("synchronous = FULL");
      connection.pragma(`cache_size = -${SQLITE_CACHE_KIB}`);
      connection.pragma(`wal_autocheckpoint = ${SQLITE_WAL_CHECKPOINT_PAGES}`);
      await store.migrate(options.nowMs);
    } catch (error) {
      await store.close();
      throw error;
    }
    return store;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    await this.serial(() => {
      this.closed = true;
      this.statements.clear();
      this.connection.close();
      releaseQueue(this.queueKey);
    });
  }

  protected async transaction<T>(body: (tx: SqlExecutor) => Promise<T>): Promise<T> {
    return this.serial(async () => {
      // IMMEDIATE takes the write lock now, so a concurrent writer waits (busy_timeout) instead of
      // failing at its first write with SQLITE_BUSY in the middle of a batch.
      this.runNow("BEGIN IMMEDIATE", []);
      try {
        const result = await body(this.direct);
        this.runNow("COMMIT", []);
        return result;
      } catch (error) {
        if (this.connection.inTransaction) this.connection.exec("ROLLBACK");
        throw error;
      }
    });
  }

  protected async insertReadingRows(
    tx: SqlExecutor,
    dcuId: string,
    batchId: number,
    rows: readonly ReadingRow[],
  ): Promise<number> {
    void tx; // runs on this connection, inside the transaction `tx` belongs to
    const insert = this.prepare(
      `INSERT INTO readings (bucket, meter_id, seq, obis, commit_id, dcu_id, batch_id, timestamp_ms, time_quality,
         value, scaler, unit, record_crc) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING`,
    );
    let inserted = 0;
    try {
      for (const r of [...rows].sort(compareReadingKeys)) {
        inserted += insert.run(
          readingBucket(r.timestampMs),
          r.meterId,
          r.seq,
          r.obis,
          r.commitId,
          dcuId,
          batchId,
          r.timestampMs,
          r.timeQuality,
          r.value,
          r.scaler,
          r.unit,
          r.recordCrc,
        ).changes;
      }
    } catch (error) {
      throw wrapSqliteError(error, "commitBatch readings");
    }
    return inserted;
  }

  protected override async applyMeterUpdates(
    tx: SqlExecutor,
    updates: readonly MeterReadingUpdate[],
    atMs: number,
  ): Promise<void> {
    void tx;
    // Multi-row upserts: one statement per METER_UPSERT_ROWS meters instead of one per meter.
    const single = this.meterUpdateSql();
    try {
      for (let at = 0; at < updates.length; at += METER_UPSERT_ROWS) {
        const chunk = updates.slice(at, at + METER_UPSERT_ROWS);
        const values = Array.from({ length: chunk.length }, () => "(?, ?, ?, ?, ?, 1, ?)").join(", ");
        const statement = this.prepare(single.replace("VALUES (?, ?, ?, ?, ?, 1, ?)", `VALUES ${values}`));
        const params: SqlValue[] = [];
        for (const u of chunk)
          params.push(u.meterId, u.dcuId, u.lastSeq, u.lastReadingMs, u.timeQuality, atMs);
        statement.run(...params);
      }
    } catch (error) {
      throw wrapSqliteError(error, "commitBatch meters");
    }
  }

  protected async lockAudit(): Promise<void> {}
  protected async lockMigrations(): Promise<void> {}

  protected greatest(a: string, b: string): string {
    return `MAX(COALESCE(${a}, ${b}), ${b})`;
  }

  protected contains(column: string): string {
    return `instr(${column}, ?) > 0`;
  }

  /** The bench's raw reference: the same connection, pragmas and transaction shape, no store logic. */
  rawConnection(): Database.Database {
    return this.connection;
  }

  private serial<T>(work: () => T | Promise<T>): Promise<T> {
    const run = this.queue.tail.then(() => {
      if (this.closed) throw new StoreError("CLOSED", "store is closed", this.description);
      return work();
    });
    this.queue.tail = run.catch(() => undefined);
    return run;
  }

  private prepare(sql: string): Statement {
    let statement = this.statements.get(sql);
    if (statement === undefined) {
      if (this.statements.size >= STATEMENT_CACHE_MAX) this.statements.clear();
      try {
        statement = this.connection.prepare(sql);
      } catch (error) {
        throw wrapSqliteError(error, sql.slice(0, 60));
      }
      this.statements.set(sql, statement);
    }
    return statement;
  }

  private allNow(sql: string, params: readonly SqlValue[]): Record<string, unknown>[] {
    const statement = this.prepare(sql);
    try {
      const bound = params.map(toSqlite);
      if (statement.reader) return statement.all(...bound) as Record<string, unknown>[];
      statement.run(...bound);
      return [];
    } catch (error) {
      throw wrapSqliteError(error, sql.slice(0, 60));
    }
  }

  private runNow(sql: string, params: readonly SqlValue[]): number {
    const statement = this.prepare(sql);
    try {
      return statement.run(...params.map(toSqlite)).changes;
    } catch (error) {
      throw wrapSqliteError(error, sql.slice(0, 60));
    }
  }
}

function toSqlite(value: SqlValue): SqlValue | Buffer {
  // better-sqlite3 binds Buffers, not bare Uint8Arrays.
  if (value instanceof Uint8Array && !Buffer.isBuffer(value)) {
    return Buffer.from(value.buffer, value.byteOffset, value.byteLength);
  }
  return value;
}

function wrapSqliteError(error: unknown, where: string): StoreError {
  if (error instanceof StoreError) return error;
  const code = (error as { code?: unknown }).code;
  const message = (error as Error).message ?? String(error);
  if (typeof code === "string" && code.startsWith("SQLITE_CONSTRAINT")) {
    return new StoreError("BAD_ROW", `${code}: ${message}`, where, { cause: error });
  }
  if (
    code === "SQLITE_BUSY" ||
    code === "SQLITE_CANTOPEN" ||
    code === "SQLITE_IOERR" ||
    code === "SQLITE_FULL"
  ) {
    return new StoreError("UNAVAILABLE", `${code}: ${message}`, where, { cause: error });
  }
  return new StoreError("QUERY_FAILED", message, where, { cause: error });
}
