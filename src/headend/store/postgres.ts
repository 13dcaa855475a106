// shell: the PostgreSQL store adapter owns a connection pool (sockets); the head-end core receives it as
// its storage parameter. No clock or timer is read here (the client library keeps its own idle timers).
import { connect, type Socket } from "node:net";
import postgres from "postgres";
import { StoreError } from "./errors.ts";
import { compareReadingKeys } from "./rows.ts";
import { readingBucket } from "./schema.ts";
import { type SqlExecutor, type SqlRow, SqlStore, type SqlValue } from "./sql-store.ts";
import type { MeterReadingUpdate, ReadingRow } from "./types.ts";

/** Connections in the pool: one carries the ingest transaction, the others serve API reads. */
export const PG_POOL_CONNECTIONS_MAX = 4;
export const PG_CONNECT_TIMEOUT_S = 10;
/** PostgreSQL identifiers are at most 63 bytes; schema names are also restricted to a safe alphabet. */
const SCHEMA_NAME = /^[a-z_][a-z0-9_]{0,62}$/;

export interface PostgresStoreOptions {
  /** postgres://user:pass@host:port/db, optionally with ?schema=NAME (created if missing). */
  readonly url: string;
  /** Overrides ?schema=; default "public". */
  readonly schema?: string;
  readonly nowMs: number;
}

type Sql = postgres.Sql<Record<string, never>>;

// int8 (20) and numeric (1700, what SUM(bigint) returns) come back as JS numbers: every integer this schema
// holds (ms timestamps, seq, commit_id, counts) is well inside Number.MAX_SAFE_INTEGER.
const INTEGER_TYPES = {
  int8: {
    to: 20,
    from: [20, 1700],
    serialize: (value: number) => String(value),
    parse: (text: string) => Number(text),
  },
};

/**
 * PostgreSQL through porsager's `postgres` client. Queries are the shared `?` texts renumbered to $n and
 * run as prepared statements; the bulk reading insert sends each column as one array and inserts with
 * `unnest` … ON CONFLICT DO NOTHING: one round trip and one statement per batch.
 */
export class PostgresStore extends SqlStore {
  readonly dialect = "postgres" as const;
  readonly description: string;
  readonly schema: string;
  protected readonly db: SqlExecutor;
  private readonly sql: Sql;

  private constructor(sql: Sql, description: string, schema: string) {
    super();
    this.sql = sql;
    this.description = description;
    this.schema = schema;
    this.db = executor(sql);
  }

  static async open(options: PostgresStoreOptions): Promise<PostgresStore> {
    const url = new URL(options.url);
    const schema = options.schema ?? url.searchParams.get("schema") ?? "public";
    url.searchParams.delete("schema");
    if (!SCHEMA_NAME.test(schema)) {
      throw new StoreError("BAD_URL", `schema must match ${SCHEMA_NAME}, got "${schema}"`, "postgres");
    }
    const description = redact(url, schema);
    const sql = postgres(url.toString(), {
      max: PG_POOL_CONNECTIONS_MAX,
      connect_timeout: PG_CONNECT_TIMEOUT_S,
      onnotice: () => {},
      types: INTEGER_TYPES,
      connection: { search_path: schema },
      ...(url.hostname !== "" && !url.hostname.includes(",") ? { socket: noDelaySocket } : {}),
    }) as unknown as Sql;
    const store = new PostgresStore(sql, description, schema);
    try {
      await store.db.run(`CREATE SCHEMA IF NOT EXISTS ${schema}`).catch(async (error: unknown) => {
        // Two processes creating the schema at once: the loser sees a unique violation; the schema exists.
        if ((error as StoreError).code !== "BAD_ROW") throw error;
      });
      await store.migrate(options.nowMs);
    } catch (error) {
      await sql.end({ timeout: 1 });
      if (error instanceof StoreError) throw error;
      throw new StoreError("UNAVAILABLE", (error as Error).message, description, { cause: error });
    }
    return store;
  }

  async close(): Promise<void> {
    await this.sql.end({ timeout: 5 });
  }

  /** Drops this store's schema and everything in it (tests and benches use a schema of their own). */
  async dropSchema(): Promise<void> {
    if (this.schema === "public") throw new StoreError("BAD_STATE", "refusing to drop the public schema");
    await this.db.run(`DROP SCHEMA IF EXISTS ${this.schema} CASCADE`);
  }

  protected async transaction<T>(body: (tx: SqlExecutor) => Promise<T>): Promise<T> {
    try {
      return (await this.sql.begin((tsql) => body(executor(tsql as unknown as Sql)))) as T;
    } catch (error) {
      // Errors the body raised on purpose (StoreError, the store's own rollback signals) pass unchanged.
      if (error instanceof StoreError || !isDatabaseError(error)) throw error;
      throw wrapPgError(error, "transaction");
    }
  }

  protected async insertReadingRows(
    tx: SqlExecutor,
    dcuId: string,
    batchId: number,
    rows: readonly ReadingRow[],
  ): Promise<number> {
    // Each column travels as one array parameter and unnest() turns them back into rows: one statement,
    // one round trip. (COPY into a temporary table and INSERT … SELECT measured slower here: the cost is
    // the primary-key insert, which both pay, plus the COPY.) Key order: concurrent sessions then take row
    // locks in one order, so two batches that share readings cannot deadlock.
    const sorted = [...rows].sort(compareReadingKeys);
    const n = sorted.length;
    const bucket = new Array<number>(n);
    const meter = new Array<string>(n);
    const seq = new Array<number>(n);
    const obis = new Array<string>(n);
    const commit = new Array<number>(n);
    const ts = new Array<number>(n);
    const tq = new Array<string>(n);
    const value = new Array<number>(n);
    const scaler = new Array<number>(n);
    const unit = new Array<number>(n);
    const crc = new Array<number>(n);
    for (let i = 0; i < n; i++) {
      const r = sorted[i]!;
      bucket[i] = readingBucket(r.timestampMs);
      meter[i] = r.meterId;
      seq[i] = r.seq;
      obis[i] = r.obis;
      commit[i] = r.commitId;
      ts[i] = r.timestampMs;
      tq[i] = r.timeQuality;
      value[i] = r.value;
      scaler[i] = r.scaler;
      unit[i] = r.unit;
      crc[i] = r.recordCrc;
    }
    return tx.run(
      `INSERT INTO readings (bucket, meter_id, seq, obis, commit_id, dcu_id, batch_id, timestamp_ms, time_quality,
         value, scaler, unit, record_crc)
       SELECT b, m, s, o, c, ?, ?, t, q, v, sc, u, k FROM unnest(
         ?::bigint[], ?::text[], ?::bigint[], ?::text[], ?::bigint[], ?::bigint[], ?::text[], ?::bigint[],
         ?::bigint[], ?::bigint[], ?::bigint[]) AS x(b, m, s, o, c, t, q, v, sc, u, k)
       ON CONFLICT DO NOTHING`,
      [
        dcuId,
        batchId,
        bucket,
        meter,
        seq,
        obis,
        commit,
        ts,
        tq,
        value,
        scaler,
        unit,
        crc,
      ] as unknown as SqlValue[],
    );
  }

  protected override async applyMeterUpdates(
    tx: SqlExecutor,
    updates: readonly MeterReadingUpdate[],
    atMs: number,
  ): Promise<void> {
    // Updates arrive merged (one per meter): ON CONFLICT DO UPDATE may touch each row once per statement.
    await tx.run(
      `${this.meterUpdateSql().replace(
        "VALUES (?, ?, ?, ?, ?, 1, ?)",
        "SELECT m, d, s, r, q, 1, ?::bigint FROM unnest(?::text[], ?::text[], ?::bigint[], ?::bigint[], ?::text[]) AS x(m, d, s, r, q)",
      )}`,
      [
        atMs,
        updates.map((u) => u.meterId),
        updates.map((u) => u.dcuId),
        updates.map((u) => u.lastSeq),
        updates.map((u) => u.lastReadingMs),
        updates.map((u) => u.timeQuality),
      ] as unknown as SqlValue[],
    );
  }

  protected async lockAudit(tx: SqlExecutor): Promise<void> {
    // Serialises appenders for the rest of the transaction; readers are not blocked.
    await tx.run("LOCK TABLE audit IN SHARE ROW EXCLUSIVE MODE");
  }

  protected async lockMigrations(tx: SqlExecutor): Promise<void> {
    await tx.all("SELECT pg_advisory_xact_lock(hashtext(?)) AS locked", [`amiproof-migrate:${this.schema}`]);
  }

  protected greatest(a: string, b: string): string {
    return `GREATEST(${a}, ${b})`;
  }

  protected contains(column: string): string {
    return `strpos(${column}, ?) > 0`;
  }

  /** The bench's raw reference runs on the same pool. */
  rawSql(): Sql {
    return this.sql;
  }
}

/**
 * A TCP socket with Nagle's algorithm off. The client writes a query (or COPY data) and then a small final
 * message; with Nagle on, that message waits for the server's delayed ACK (~40 ms on Linux), which made a
 * 1,024-row COPY take ~90 ms instead of ~2 ms here. Single-host TCP URLs only; the client's own socket
 * handles unix sockets and multi-host URLs.
 */
function noDelaySocket(options: { host: string[]; port: number[] }): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const socket = connect({
      host: options.host[0] ?? "localhost",
      port: options.port[0] ?? 5432,
      noDelay: true,
    });
    socket.setTimeout(PG_CONNECT_TIMEOUT_S * 1_000); // shell: the socket's own connect deadline
    socket.once("timeout", () => {
      socket.destroy();
      reject(
        Object.assign(new Error(`connect timeout after ${PG_CONNECT_TIMEOUT_S} s`), {
          code: "CONNECT_TIMEOUT",
        }),
      );
    });
    socket.once("error", reject);
    socket.once("connect", () => {
      socket.setTimeout(0); // shell: connected, deadline off
      socket.removeListener("error", reject);
      resolve(socket);
    });
  });
}

const numberedCache = new Map<string, string>();
const NUMBERED_CACHE_MAX = 512;

/** `?` → `$1, $2, …` (the shared query texts never hold a `?` inside a literal). */
function numbered(text: string): string {
  let out = numberedCache.get(text);
  if (out === undefined) {
    let n = 0;
    out = text.replace(/\?/g, () => `$${++n}`);
    if (numberedCache.size >= NUMBERED_CACHE_MAX) numberedCache.clear();
    numberedCache.set(text, out);
  }
  return out;
}

function executor(sql: Sql): SqlExecutor {
  const query = async (text: string, params: readonly SqlValue[]) => {
    try {
      return await sql.unsafe(numbered(text), params.map(toPg) as never[], { prepare: true });
    } catch (error) {
      throw wrapPgError(error, text.replace(/\s+/g, " ").slice(0, 60));
    }
  };
  return {
    all: async (text, params = []) => (await query(text, params)) as unknown as SqlRow[],
    run: async (text, params = []) => (await query(text, params)).count,
  };
}

function isDatabaseError(error: unknown): boolean {
  return error instanceof postgres.PostgresError || typeof (error as { code?: unknown })?.code === "string";
}

function toPg(value: SqlValue): unknown {
  if (value instanceof Uint8Array && !Buffer.isBuffer(value)) {
    return Buffer.from(value.buffer, value.byteOffset, value.byteLength);
  }
  return value;
}

function wrapPgError(error: unknown, where: string): StoreError {
  if (error instanceof StoreError) return error;
  const code = String((error as { code?: unknown }).code ?? "");
  const message = (error as Error).message ?? String(error);
  // SQLSTATE class 23: integrity constraint violation; 22: data exception (bad value for a column).
  if (/^2[23][0-9A-Z]{3}$/.test(code)) {
    return new StoreError("BAD_ROW", `${code}: ${message}`, where, { cause: error });
  }
  // 08 connection, 40 serialization failure / deadlock (retry), 53 resources, 57 operator intervention.
  if (
    /^(08|40|53|57)/.test(code) ||
    [
      "ECONNREFUSED",
      "ECONNRESET",
      "ENOTFOUND",
      "CONNECT_TIMEOUT",
      "CONNECTION_ENDED",
      "CONNECTION_CLOSED",
      "CONNECTION_DESTROYED",
    ].includes(code)
  ) {
    return new StoreError("UNAVAILABLE", `${code}: ${message}`, where, { cause: error });
  }
  return new StoreError("QUERY_FAILED", code === "" ? message : `${code}: ${message}`, where, {
    cause: error,
  });
}

function redact(url: URL, schema: string): string {
  const shown = new URL(url.toString());
  if (shown.password !== "") shown.password = "***";
  return `${shown.toString()}${schema === "public" ? "" : ` (schema ${schema})`}`;
}
