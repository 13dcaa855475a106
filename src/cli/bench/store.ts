// shell: the head-end store's batch commit beside the raw bulk-insert rate of the same store, same run.
import { rmSync } from "node:fs";
import { join } from "node:path";
import type { Writable } from "node:stream";
import { encodeReadingRecord } from "../../evidence/index.ts";
import {
  type BatchCommit,
  type HeadendStore,
  openStore,
  PostgresStore,
  packRecords,
  type ReadingRow,
  readingBucket,
  SqliteStore,
} from "../../headend/index.ts";
import { type BenchSuite, figure } from "./types.ts";

export const RAW_STORE_FIGURE = "raw.store_insert_records_per_s";

// Back of the envelope. A reading row is ~75 B of column data (meter_id ~10 B, obis 13 B, eleven
// integers); SQLite appends ~0.5 M such rows/s to a bare table inside one transaction (~90 KiB of WAL per
// 1,024 rows). The readings' primary key (bucket, meter_id, seq, obis) makes every row a b-tree insert
// (raw.store_keyed_insert shows what that alone costs). The batch shape is an hourly uplink of 15-minute
// interval readings: 256 meters × 4 readings × 1 OBIS value = 1,024 rows, plus one batch row carrying the
// records (58 kB, ~15 kB deflated), 256 meter upserts and the chain-head update, in one transaction with one
// WAL fsync (synchronous=FULL) — about 190 KiB of WAL per batch; the raw inserts pay the same fsync.
const BATCH_METERS = 256;
const READINGS_PER_METER = 4;
export const BENCH_BATCH_ROWS = BATCH_METERS * READINGS_PER_METER;
const T0 = Date.UTC(2026, 0, 1);
const ROUNDS = 4;

// The readings' columns (the hour bucket included, so the bare table stores the same bytes per row).
const RAW_COLUMNS =
  "bucket, meter_id, seq, obis, commit_id, dcu_id, batch_id, timestamp_ms, time_quality, value, scaler, unit, record_crc";

/** Rows of batch `n` (1-based): every meter gets the next READINGS_PER_METER seqs. */
export function benchRows(dcuId: string, n: number): ReadingRow[] {
  const rows = new Array<ReadingRow>(BENCH_BATCH_ROWS);
  let i = 0;
  for (let k = 0; k < READINGS_PER_METER; k++) {
    const seq = (n - 1) * READINGS_PER_METER + k + 1;
    for (let m = 0; m < BATCH_METERS; m++) {
      rows[i] = {
        meterId: `MTR-${String(m).padStart(5, "0")}`,
        seq,
        obis: "1.0.1.8.0.255",
        commitId: (n - 1) * BENCH_BATCH_ROWS + i + 1,
        dcuId,
        batchId: n,
        timestampMs: T0 + seq * 900_000,
        timeQuality: "SYNCED",
        value: 1_000_000 + seq * 250 + m,
        scaler: 0,
        unit: 30,
        recordCrc: (seq * 7919 + m) >>> 0,
      };
      i++;
    }
  }
  return rows;
}

// Real encoded records of one batch (their bytes only feed the blob; the rows are what is stored). The
// compression of the blob happens per batch inside the timed loop, as the ingest pays it.
const recordBytes = benchRows("DCU-BENCH", 1).map(
  (r) =>
    encodeReadingRecord({
      timestampMs: r.timestampMs,
      meterId: r.meterId,
      values: [{ obis: [1, 0, 1, 8, 0, 255], value: r.value, scaler: r.scaler, unit: r.unit }],
      seq: r.seq,
      commitId: r.commitId,
      timeQuality: r.timeQuality,
    }).bytes,
);

export function benchCommit(dcuId: string, n: number): BatchCommit {
  const readings = benchRows(dcuId, n);
  const hash = new Uint8Array(32);
  hash[0] = n & 0xff;
  hash[1] = (n >>> 8) & 0xff;
  return {
    batch: {
      batchId: n,
      dcuId,
      epoch: 1,
      commitIdFirst: readings[0]!.commitId,
      commitIdLast: readings[readings.length - 1]!.commitId,
      recordCount: readings.length,
      merkleRoot: hash,
      batchHash: hash,
      prevBatchHash: hash,
      receivedMs: T0 + n,
      header: new Uint8Array(256),
      records: packRecords(recordBytes),
    },
    readings,
    gaps: [],
    events: [],
    meters: readings.slice(readings.length - BATCH_METERS).map((r) => ({
      meterId: r.meterId,
      dcuId,
      lastSeq: r.seq,
      lastReadingMs: r.timestampMs,
      timeQuality: r.timeQuality,
    })),
    chainHead: { lastBatchHash: hash, lastBatchId: n, epoch: 1 },
  };
}

/**
 * Plain bulk insert of the batch's rows, one transaction per batch. `bare`: a table with the readings'
 * columns and nothing else (the reference). `keyed`: the same plus the readings' primary key
 * (bucket, meter_id, seq, obis) — what the key alone costs, without the store's other work.
 */
interface RawInserter {
  insertBatch(rows: readonly ReadingRow[]): Promise<void>;
}

export type RawTable = "bare" | "keyed";

function rawDdl(table: RawTable, integer: string, dialect: "sqlite" | "postgres"): string {
  const name = table === "bare" ? "raw_readings" : "raw_keyed_readings";
  const key =
    table === "bare"
      ? ""
      : `, PRIMARY KEY (bucket, meter_id, seq, obis))${dialect === "sqlite" ? " WITHOUT ROWID" : ""}`;
  const notNull = table === "bare" ? "" : " NOT NULL";
  return `CREATE TABLE ${name} (bucket ${integer}${notNull}, meter_id TEXT${notNull}, seq ${integer}${notNull},
    obis TEXT${notNull}, commit_id ${integer}, dcu_id TEXT, batch_id ${integer}, timestamp_ms ${integer},
    time_quality TEXT, value ${integer}, scaler ${integer}, unit ${integer}, record_crc ${integer}${key === "" ? ")" : key}`;
}

export function sqliteRaw(store: SqliteStore, table: RawTable): RawInserter {
  const db = store.rawConnection();
  db.exec(rawDdl(table, "INTEGER", "sqlite"));
  const name = table === "bare" ? "raw_readings" : "raw_keyed_readings";
  const insert = db.prepare(
    `INSERT INTO ${name} (${RAW_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
  );
  const batch = db.transaction((rows: readonly ReadingRow[]) => {
    for (const r of rows) {
      insert.run(
        readingBucket(r.timestampMs),
        r.meterId,
        r.seq,
        r.obis,
        r.commitId,
        r.dcuId,
        r.batchId,
        r.timestampMs,
        r.timeQuality,
        r.value,
        r.scaler,
        r.unit,
        r.recordCrc,
      );
    }
  });
  return {
    async insertBatch(rows) {
      batch.immediate(rows);
    },
  };
}

export async function postgresRaw(store: PostgresStore, table: RawTable): Promise<RawInserter> {
  const sql = store.rawSql();
  await sql.unsafe(rawDdl(table, "BIGINT", "postgres"));
  const name = table === "bare" ? "raw_readings" : "raw_keyed_readings";
  return {
    // COPY … FROM STDIN: PostgreSQL's own bulk path, one COPY (one implicit transaction) per batch.
    async insertBatch(rows) {
      let text = "";
      for (const r of rows) {
        text += `${readingBucket(r.timestampMs)}\t${r.meterId}\t${r.seq}\t${r.obis}\t${r.commitId}\t${r.dcuId}\t${r.batchId}\t${r.timestampMs}\t${r.timeQuality}\t${r.value}\t${r.scaler}\t${r.unit}\t${r.recordCrc}\n`;
      }
      const stream: Writable = await sql.unsafe(`COPY ${name} (${RAW_COLUMNS}) FROM STDIN`).writable();
      await new Promise<void>((resolve, reject) => {
        stream.on("error", reject);
        stream.on("finish", resolve);
        stream.end(text);
      });
    },
  };
}

/** Rows per second for `body` run batch after batch for `ms` of wall time. */
async function timed(ms: number, body: () => Promise<number>): Promise<{ rows: number; ms: number }> {
  let rows = 0;
  const started = performance.now();
  while (performance.now() - started < ms) rows += await body();
  return { rows, ms: performance.now() - started };
}

/**
 * Measures the store that `url` names (default: a SQLite file in the bench's scratch directory). Raw and
 * commit rounds alternate so drift on a shared machine hits both alike.
 */
export function storeSuiteFor(url: string | null): BenchSuite {
  return {
    name: "store",
    async run(ctx) {
      const minMs = ctx.quick ? 300 : 3_000;
      const path = join(ctx.tmpDir, `store-bench-${process.pid}.db`);
      const schema = `amiproof_bench_${process.pid}`;
      const store: HeadendStore = await openStore(url ?? `sqlite:${path}`, { nowMs: T0, schema });
      try {
        const rawFor = (table: RawTable) =>
          store instanceof SqliteStore
            ? Promise.resolve(sqliteRaw(store, table))
            : postgresRaw(store as PostgresStore, table);
        const bare = await rawFor("bare");
        const keyed = await rawFor("keyed");
        await store.putConcentrator("DCU-BENCH", new Uint8Array(65), T0);
        ctx.progress(
          `store: ${store.dialect} raw bulk insert vs commitBatch, ${BENCH_BATCH_ROWS} rows per batch`,
        );
        const batchNo = { bare: 0, keyed: 0, commit: 0 };
        const totals = { bare: { rows: 0, ms: 0 }, keyed: { rows: 0, ms: 0 }, commit: { rows: 0, ms: 0 } };
        const add = (which: keyof typeof totals, t: { rows: number; ms: number }) => {
          totals[which].rows += t.rows;
          totals[which].ms += t.ms;
        };
        const phaseMs = minMs / ROUNDS;
        for (let round = 0; round < ROUNDS; round++) {
          for (const [which, raw] of [
            ["bare", bare],
            ["keyed", keyed],
          ] as const) {
            add(
              which,
              await timed(phaseMs, async () => {
                await raw.insertBatch(benchRows("DCU-BENCH", ++batchNo[which]));
                return BENCH_BATCH_ROWS;
              }),
            );
          }
          add(
            "commit",
            await timed(phaseMs, async () => {
              const result = await store.commitBatch(benchCommit("DCU-BENCH", ++batchNo.commit));
              if (result.readingsNew !== BENCH_BATCH_ROWS) {
                throw new Error(
                  `bench batch ${batchNo.commit} stored ${result.readingsNew} of ${BENCH_BATCH_ROWS} rows`,
                );
              }
              return result.readingsNew;
            }),
          );
        }
        const perS = (t: { rows: number; ms: number }) => (t.rows * 1000) / t.ms;
        const reference = { name: RAW_STORE_FIGURE, value: perS(totals.bare) };
        return [
          figure(RAW_STORE_FIGURE, reference.value, "records/s"),
          figure("raw.store_keyed_insert_records_per_s", perS(totals.keyed), "records/s", reference),
          figure(
            "store.batch_commit_records_per_s",
            perS(totals.commit),
            "records/s",
            reference,
            ">= 0.7 x raw",
          ),
        ];
      } finally {
        if (store instanceof PostgresStore) await store.dropSchema();
        await store.close();
        rmSync(path, { force: true });
        rmSync(`${path}-wal`, { force: true });
        rmSync(`${path}-shm`, { force: true });
      }
    },
  };
}

export const storeSuite: BenchSuite = storeSuiteFor(null);
