// shell: the head-end store's batch commit beside the raw bulk-insert rate of the same store, same run.
import { rmSync } from "node:fs";
import { join } from "node:path";
import { Writable } from "node:stream";
import {
  type BatchCommit,
  type HeadendStore,
  openStore,
  PostgresStore,
  packRecords,
  type ReadingRow,
  SqliteStore,
} from "../../headend/index.ts";
import { type BenchSuite, figure } from "./types.ts";

export const RAW_STORE_FIGURE = "raw.store_insert_records_per_s";

// Back of the envelope. A reading row is ~70 B of column data (meter_id ~10 B, obis 13 B, ten integers);
// SQLite inserts ~0.5–1 M such rows/s into a bare table inside one transaction, fewer into a table with a
// clustered primary key and one secondary index (two b-tree inserts per row). The batch shape is an hourly
// uplink of 15-minute interval readings: 256 meters × 4 readings × 1 OBIS value = 1,024 rows, plus one
// batch row carrying the 58 kB of record bytes, 256 meter upserts and the chain-head update, in one
// transaction with one WAL fsync (synchronous=FULL) — the raw reference pays the same fsync per batch.
const BATCH_METERS = 256;
const READINGS_PER_METER = 4;
export const BENCH_BATCH_ROWS = BATCH_METERS * READINGS_PER_METER;
const RECORD_BYTES = 55; // a one-value reading record with a 9-character meter_id
const T0 = Date.UTC(2026, 0, 1);
const ROUNDS = 4;

const RAW_COLUMNS =
  "meter_id, seq, obis, commit_id, dcu_id, batch_id, timestamp_ms, time_quality, value, scaler, unit, record_crc";

/** Rows of batch `n` (1-based): every meter gets the next READINGS_PER_METER seqs. */
function benchRows(dcuId: string, n: number): ReadingRow[] {
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

const recordsBlob = packRecords(Array.from({ length: BENCH_BATCH_ROWS }, () => new Uint8Array(RECORD_BYTES)));

function benchCommit(dcuId: string, n: number): BatchCommit {
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
      records: recordsBlob,
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

/** Plain bulk insert: a bare table with the readings' columns, no key, no index, one transaction per batch. */
interface RawInserter {
  insertBatch(rows: readonly ReadingRow[]): Promise<void>;
}

function sqliteRaw(store: SqliteStore): RawInserter {
  const db = store.rawConnection();
  db.exec(
    `CREATE TABLE raw_readings (meter_id TEXT, seq INTEGER, obis TEXT, commit_id INTEGER, dcu_id TEXT,
       batch_id INTEGER, timestamp_ms INTEGER, time_quality TEXT, value INTEGER, scaler INTEGER, unit INTEGER,
       record_crc INTEGER)`,
  );
  const insert = db.prepare(`INSERT INTO raw_readings (${RAW_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`);
  const batch = db.transaction((rows: readonly ReadingRow[]) => {
    for (const r of rows) {
      insert.run(r.meterId, r.seq, r.obis, r.commitId, r.dcuId, r.batchId, r.timestampMs, r.timeQuality, r.value, r.scaler, r.unit, r.recordCrc);
    }
  });
  return {
    async insertBatch(rows) {
      batch.immediate(rows);
    },
  };
}

async function postgresRaw(store: PostgresStore): Promise<RawInserter> {
  const sql = store.rawSql();
  await sql.unsafe(
    `CREATE TABLE raw_readings (meter_id TEXT, seq BIGINT, obis TEXT, commit_id BIGINT, dcu_id TEXT,
       batch_id BIGINT, timestamp_ms BIGINT, time_quality TEXT, value BIGINT, scaler BIGINT, unit BIGINT,
       record_crc BIGINT)`,
  );
  return {
    // COPY … FROM STDIN: PostgreSQL's own bulk path, one COPY (one implicit transaction) per batch.
    async insertBatch(rows) {
      let text = "";
      for (const r of rows) {
        text += `${r.meterId}\t${r.seq}\t${r.obis}\t${r.commitId}\t${r.dcuId}\t${r.batchId}\t${r.timestampMs}\t${r.timeQuality}\t${r.value}\t${r.scaler}\t${r.unit}\t${r.recordCrc}\n`;
      }
      const stream: Writable = await sql.unsafe(`COPY raw_readings (${RAW_COLUMNS}) FROM STDIN`).writable();
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
        const raw =
          store instanceof SqliteStore ? sqliteRaw(store) : await postgresRaw(store as PostgresStore);
        await store.putConcentrator("DCU-BENCH", new Uint8Array(65), T0);
        ctx.progress(`store: ${store.dialect} raw bulk insert vs commitBatch, ${BENCH_BATCH_ROWS} rows per batch`);
        let rawBatch = 0;
        let commitBatch = 0;
        const rawTotal = { rows: 0, ms: 0 };
        const commitTotal = { rows: 0, ms: 0 };
        for (let round = 0; round < ROUNDS; round++) {
          const r = await timed(minMs / ROUNDS, async () => {
            await raw.insertBatch(benchRows("DCU-BENCH", ++rawBatch));
            return BENCH_BATCH_ROWS;
          });
          rawTotal.rows += r.rows;
          rawTotal.ms += r.ms;
          const c = await timed(minMs / ROUNDS, async () => {
            const result = await store.commitBatch(benchCommit("DCU-BENCH", ++commitBatch));
            if (result.readingsNew !== BENCH_BATCH_ROWS) {
              throw new Error(`bench batch ${commitBatch} stored ${result.readingsNew} of ${BENCH_BATCH_ROWS} rows`);
            }
            return result.readingsNew;
          });
          commitTotal.rows += c.rows;
          commitTotal.ms += c.ms;
        }
        const rawPerS = (rawTotal.rows * 1000) / rawTotal.ms;
        const commitPerS = (commitTotal.rows * 1000) / commitTotal.ms;
        const reference = { name: RAW_STORE_FIGURE, value: rawPerS };
        return [
          figure(RAW_STORE_FIGURE, rawPerS, "records/s"),
          figure("store.batch_commit_records_per_s", commitPerS, "records/s", reference, ">= 0.7 x raw"),
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
