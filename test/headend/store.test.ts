import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, test } from "node:test";
import { deflateRawSync } from "node:zlib";
import fc from "fast-check";
import {
  type Batch,
  decodeBatchHeader,
  decodeReadingRecord,
  genesisDigest,
  MemorySecureElement,
  type ReadingRecordFields,
  sealEventRecord,
  sealReadingsBatch,
  verifyBatch,
} from "../../src/evidence/index.ts";
import {
  type AlertInput,
  type BatchCommit,
  batchCommitOf,
  type EventRow,
  type HeadendStore,
  isStoreError,
  MIGRATIONS,
  openStore,
  PAGE_ROWS_MAX,
  type PostgresStore,
  packRecords,
  parseStoreUrl,
  RECORDS_BLOB_BYTES_MAX,
  SCHEMA_VERSION,
  type SqliteStore,
  unpackRecords,
} from "../../src/headend/index.ts";

// One suite, two back ends (issue 7: "the same test suite runs on both"). PostgreSQL is the machine's and
// CI's 127.0.0.1:5432; each test gets a fresh schema of its own, dropped afterwards, so parallel runs never
// meet. If PostgreSQL cannot be reached the PG half fails, unless AMIPROOF_NO_POSTGRES=1 says to leave it out.

const RUNS = Number(process.env.AMIPROOF_FUZZ_RUNS ?? 200);
const PG_URL = process.env.AMIPROOF_TEST_POSTGRES_URL ?? "postgres://postgres@127.0.0.1:5432/test";
const T0 = 1_800_000_000_000;
const dcuKeys = new MemorySecureElement("DCU-1", Uint8Array.of(7));
const meterKeys = new MemorySecureElement("MTR-1", Uint8Array.of(8));
const DCU_KEY = dcuKeys.publicKey("batch_sign");

interface Backend {
  readonly name: string;
  /** A fresh, migrated, empty store, and a way to reopen the same database. */
  fresh(): Promise<Harness>;
}

interface Harness {
  readonly store: HeadendStore;
  reopen(): Promise<HeadendStore>;
  /** Raw SQL on the same database, bypassing the store (to tamper with rows). */
  exec(sql: string): Promise<void>;
  cleanup(): Promise<void>;
}

const sqliteBackend: Backend = {
  name: "sqlite",
  async fresh() {
    const dir = mkdtempSync(join(tmpdir(), "amiproof-store-"));
    const url = `sqlite:${join(dir, "headend.db")}`;
    const opened: HeadendStore[] = [];
    const open = async () => {
      const s = await openStore(url, { nowMs: T0 });
      opened.push(s);
      return s;
    };
    const store = await open();
    return {
      store,
      reopen: open,
      async exec(sql) {
        (store as SqliteStore).rawConnection().exec(sql);
      },
      async cleanup() {
        for (const s of opened) await s.close();
        rmSync(dir, { recursive: true, force: true });
      },
    };
  },
};

const postgresBackend: Backend = {
  name: "postgres",
  async fresh() {
    const schema = `amiproof_test_${process.pid}_${randomBytes(4).toString("hex")}`;
    const opened: HeadendStore[] = [];
    const open = async () => {
      const s = await openStore(PG_URL, { nowMs: T0, schema }).catch((error: unknown) => {
        if (!isStoreError(error, "UNAVAILABLE")) throw error;
        throw new Error(
          `PostgreSQL at ${PG_URL} is unreachable (${error.message}); start it, or set AMIPROOF_NO_POSTGRES=1 to leave the PostgreSQL half of this suite out`,
        );
      });
      opened.push(s);
      return s;
    };
    const store = await open();
    return {
      store,
      reopen: open,
      async exec(sql) {
        await (store as PostgresStore).rawSql().unsafe(sql);
      },
      async cleanup() {
        await (store as PostgresStore).dropSchema();
        for (const s of opened) await s.close();
      },
    };
  },
};

const backends: Backend[] = [sqliteBackend];
if (process.env.AMIPROOF_NO_POSTGRES === "1") {
  console.log("store.test: AMIPROOF_NO_POSTGRES=1 — the PostgreSQL half of this suite was NOT run");
} else {
  backends.push(postgresBackend);
}

// ───────────────────────────── fixtures ─────────────────────────────

function readings(batchId: number, meters: number, perMeter: number, firstSeq = 1): ReadingRecordFields[] {
  const out: ReadingRecordFields[] = [];
  let commitId = (batchId - 1) * meters * perMeter + 1;
  for (let k = 0; k < perMeter; k++) {
    for (let m = 0; m < meters; m++) {
      const seq = firstSeq + k;
      out.push({
        timestampMs: T0 + seq * 900_000,
        meterId: `MTR-${m + 1}`,
        values: [
          { obis: [1, 0, 1, 8, 0, 255], value: 10_000 + seq * 10 + m, scaler: 0, unit: 30 },
          { obis: [1, 0, 2, 8, 0, 255], value: seq, scaler: 0, unit: 30 },
        ],
        seq,
        commitId: commitId++,
        timeQuality: "SYNCED",
      });
    }
  }
  return out;
}

function batch(batchId: number, fields: ReadingRecordFields[], prev?: Uint8Array): Batch {
  return sealReadingsBatch(
    { batchId, dcuId: "DCU-1", epoch: 1, createdMs: T0 + batchId, readings: fields, prevBatchHash: prev },
    (m) => dcuKeys.sign("batch_sign", m),
  );
}

function alert(counter: number, overrides: Partial<AlertInput> = {}): AlertInput {
  return {
    meterId: "MTR-1",
    dcuId: "DCU-1",
    type: "MAG_TAMPER",
    level: "CRITICAL",
    counter,
    detectedMs: T0 + counter,
    receivedMs: T0 + counter + 40,
    storedMs: T0 + counter + 45,
    snapshot: { field_mT: 62, code: "0x09" },
    aggregatedCount: 1,
    record: null,
    verified: true,
    ...overrides,
  };
}

function events(count: number): EventRow[] {
  let prev = genesisDigest("MTR-1");
  const out: EventRow[] = [];
  for (let seq = 1; seq <= count; seq++) {
    const record = sealEventRecord(
      {
        meterId: "MTR-1",
        seq,
        type: seq % 2 === 0 ? "COVER_OPEN" : "POWER_UP",
        level: seq % 2 === 0 ? "CRITICAL" : "INFO",
        timestampMs: T0 + seq * 1_000_000,
        startMs: T0 + seq * 1_000_000,
        endMs: null,
        timeQuality: "SYNCED",
        snapshot: { n: seq },
        prevDigest: prev,
      },
      (m) => meterKeys.sign("event_seal", m),
    );
    prev = record.digest;
    out.push({
      meterId: record.meterId,
      seq: record.seq,
      type: record.type,
      level: record.level,
      timestampMs: record.timestampMs,
      timeQuality: record.timeQuality,
      record: record.bytes,
      verified: true,
      dcuId: "DCU-1",
      receivedMs: record.timestampMs + 100,
    });
  }
  return out;
}

async function rejectsWith(promise: Promise<unknown>, code: string): Promise<void> {
  await assert.rejects(promise, (error: unknown) => {
    assert.ok(isStoreError(error), `expected a StoreError, got ${String(error)}`);
    assert.equal(error.code, code, error.message);
    return true;
  });
}

async function readingCount(store: HeadendStore, meterId: string): Promise<number> {
  let n = 0;
  let cursor: string | null = null;
  do {
    const page = await store.listReadings({ meterId, fromMs: 0, toMs: T0 * 2, limit: PAGE_ROWS_MAX, cursor });
    n += page.items.length;
    cursor = page.nextCursor;
  } while (cursor !== null);
  return n;
}

// ───────────────────────────── the shared suite ─────────────────────────────

for (const backend of backends) {
  describe(`HeadendStore on ${backend.name}`, () => {
    let h: Harness;
    let store: HeadendStore;
    const withStore = (name: string, body: () => Promise<void>) =>
      test(name, async () => {
        h = await backend.fresh();
        store = h.store;
        try {
          await body();
        } finally {
          await h.cleanup();
        }
      });

    withStore("migrations run at open, once; reopening keeps data and applies nothing twice", async () => {
      assert.equal(await store.schemaVersion(), SCHEMA_VERSION);
      await store.upsertMeter({ meterId: "MTR-9", model: "AMI-1P", group: "north", updatedMs: T0 });
      const again = await h.reopen();
      assert.equal(await again.schemaVersion(), SCHEMA_VERSION);
      assert.equal((await again.getMeter("MTR-9"))?.model, "AMI-1P");
      const third = await h.reopen();
      assert.equal((await third.listMeters({})).total, 1);
      // A database migrated by a newer build is refused rather than misread.
      await h.exec(
        `INSERT INTO schema_migrations (version, name, applied_ms) VALUES (${SCHEMA_VERSION + 1}, 'future', 0)`,
      );
      await rejectsWith(h.reopen(), "SCHEMA_TOO_NEW");
      assert.equal(MIGRATIONS.length, SCHEMA_VERSION);
    });

    withStore("commitBatch stores a batch once: the same batch twice is stored once", async () => {
      await store.putConcentrator("DCU-1", DCU_KEY, T0);
      const b1 = batch(1, readings(1, 3, 4));
      const commit = batchCommitOf(b1, T0 + 10);
      const first = await store.commitBatch(commit);
      assert.deepEqual(first, {
        batchNew: true,
        readingsNew: 24,
        readingsDuplicate: 0,
        gapsNew: 0,
        eventsNew: 0,
      });
      const second = await store.commitBatch(commit);
      assert.deepEqual(second, {
        batchNew: false,
        readingsNew: 0,
        readingsDuplicate: 24,
        gapsNew: 0,
        eventsNew: 0,
      });
      assert.equal(await store.hasBatch(1, "DCU-1"), true);
      assert.equal(await store.hasBatch(2, "DCU-1"), false);
      assert.equal(await store.hasBatch(1, "DCU-2"), false);
      assert.equal(await readingCount(store, "MTR-1"), 8);
      const counts = await store.counts();
      assert.equal(counts.readingsStoredTotal, 24);
      assert.equal(counts.batchesAcceptedTotal, 1);
      assert.equal(counts.metersOnline, 3);
      const head = await store.getConcentrator("DCU-1");
      assert.deepEqual(head?.lastBatchHash, b1.header.batchHash);
      assert.equal(head?.lastBatchId, 1);
    });

    withStore("a re-batched retry stores only the readings not seen before", async () => {
      await store.putConcentrator("DCU-1", DCU_KEY, T0);
      const b1 = batch(1, readings(1, 2, 3));
      await store.commitBatch(batchCommitOf(b1, T0));
      // Batch 2 repeats seq 3 of both meters (a retry the concentrator re-batched) and adds seq 4..5.
      const b2 = batch(2, readings(2, 2, 3, 3), b1.header.batchHash);
      const result = await store.commitBatch(batchCommitOf(b2, T0 + 1));
      assert.equal(result.batchNew, true);
      assert.equal(result.readingsNew, 8); // 2 meters × 2 new seqs × 2 values
      assert.equal(result.readingsDuplicate, 4);
      assert.equal((await store.counts()).readingsStoredTotal, 20);
      assert.equal((await store.getBatch(2, "DCU-1"))?.readingsNew, 8);
    });

    withStore("concurrent commits of the same batch store it exactly once", async () => {
      await store.putConcentrator("DCU-1", DCU_KEY, T0);
      const commit = batchCommitOf(batch(1, readings(1, 5, 5)), T0);
      const other = await h.reopen();
      const results = await Promise.all([store.commitBatch(commit), other.commitBatch(commit)]);
      assert.deepEqual(results.map((r) => r.batchNew).sort(), [false, true]);
      assert.equal(results[0]!.readingsNew + results[1]!.readingsNew, 50);
      assert.equal((await store.counts()).readingsStoredTotal, 50);
    });

    withStore("a failure mid-batch leaves nothing behind", async () => {
      await store.putConcentrator("DCU-1", DCU_KEY, T0);
      const b1 = batch(1, readings(1, 4, 200));
      const good = batchCommitOf(b1, T0);
      // A reading row the schema refuses, two thirds of the way through the readings.
      const badReading: BatchCommit = {
        ...good,
        readings: good.readings.map((r, i) => (i === 1000 ? { ...r, timeQuality: "LOCAL" as never } : r)),
      };
      await rejectsWith(store.commitBatch(badReading), "BAD_ROW");
      // A gap row refused after every reading went in.
      const badGap: BatchCommit = {
        ...good,
        gaps: [
          {
            gapClass: "NOT_A_GAP" as never,
            meterId: "MTR-1",
            dcuId: "DCU-1",
            from: 1,
            to: 2,
            detectedMs: T0,
            attributedTo: null,
            batchId: 1,
          },
        ],
      };
      await rejectsWith(store.commitBatch(badGap), "BAD_ROW");
      // The very last statement (the chain head) fails: the concentrator is not registered.
      const foreign = batchCommitOf(
        sealReadingsBatch(
          {
            batchId: 1,
            dcuId: "DCU-X",
            epoch: 1,
            createdMs: T0,
            readings: readings(1, 2, 2),
            prevBatchHash: undefined,
          },
          (m) => dcuKeys.sign("batch_sign", m),
        ),
        T0,
      );
      await rejectsWith(store.commitBatch(foreign), "NOT_FOUND");
      assert.equal(await store.hasBatch(1, "DCU-1"), false);
      assert.equal(await store.hasBatch(1, "DCU-X"), false);
      assert.equal(await readingCount(store, "MTR-1"), 0);
      const counts = await store.counts();
      assert.equal(counts.readingsStoredTotal, 0);
      assert.equal(counts.metersTotal, 0);
      assert.equal(counts.gapsTotal.SEQ_GAP, 0);
      assert.equal((await store.getConcentrator("DCU-1"))?.lastBatchId, null);
      // And the good batch still goes in whole afterwards.
      assert.equal((await store.commitBatch(good)).readingsNew, 1600);
      assert.equal(await readingCount(store, "MTR-1"), 400);
    });

    withStore("commitBatch refuses rows of another batch and sizes over its bounds", async () => {
      await store.putConcentrator("DCU-1", DCU_KEY, T0);
      const good = batchCommitOf(batch(1, readings(1, 1, 2)), T0);
      const stray = { ...good, readings: [...good.readings, { ...good.readings[0]!, batchId: 9 }] };
      await rejectsWith(store.commitBatch(stray), "BAD_ROW");
      assert.equal(await store.hasBatch(1, "DCU-1"), false);
    });

    withStore("meter reading state moves forward only", async () => {
      await store.putConcentrator("DCU-1", DCU_KEY, T0);
      const b1 = batch(1, readings(1, 1, 3, 10)); // seq 10..12
      await store.commitBatch(batchCommitOf(b1, T0 + 5));
      const b2 = batch(2, readings(2, 1, 2, 1), b1.header.batchHash); // late seq 1..2
      await store.commitBatch(batchCommitOf(b2, T0 + 6));
      const meter = await store.getMeter("MTR-1");
      assert.equal(meter?.lastSeq, 12);
      assert.equal(meter?.lastReadingMs, T0 + 12 * 900_000);
      assert.equal(meter?.online, true);
      assert.equal(meter?.updatedMs, T0 + 6);
      await store.upsertMeter({
        meterId: "MTR-1",
        firmwareVersion: "2.1.0",
        firmwareBank: "B",
        updatedMs: T0 + 7,
      });
      const patched = await store.getMeter("MTR-1");
      assert.equal(patched?.firmwareBank, "B");
      assert.equal(patched?.lastSeq, 12, "an inventory patch keeps the reading state");
      assert.equal(await store.setMetersOnline(["MTR-1", "MTR-404"], false, T0 + 8), 1);
      assert.equal((await store.counts()).metersOnline, 0);
    });

    withStore("readings page by cursor in hour-then-seq order without loss or repeat", async () => {
      await store.putConcentrator("DCU-1", DCU_KEY, T0);
      let prev: Uint8Array | undefined;
      for (let b = 1; b <= 3; b++) {
        const sealed = batch(b, readings(b, 2, 40, (b - 1) * 40 + 1), prev);
        prev = sealed.header.batchHash;
        await store.commitBatch(batchCommitOf(sealed, T0));
      }
      const seen: string[] = [];
      let cursor: string | null = null;
      let pages = 0;
      do {
        const page = await store.listReadings({
          meterId: "MTR-2",
          fromMs: 0,
          toMs: T0 * 2,
          limit: 70,
          cursor,
        });
        seen.push(...page.items.map((r) => `${String(r.seq).padStart(4, "0")}/${r.obis}`));
        cursor = page.nextCursor;
        pages++;
      } while (cursor !== null);
      assert.equal(pages, 4); // 240 rows: 70 + 70 + 70 + 30
      assert.equal(new Set(seen).size, 240);
      assert.deepEqual(seen, [...seen].sort());
      const window = await store.listReadings({
        meterId: "MTR-2",
        fromMs: T0 + 10 * 900_000,
        toMs: T0 + 20 * 900_000,
        obis: "1.0.1.8.0.255",
      });
      assert.deepEqual(
        window.items.map((r) => r.seq),
        [10, 11, 12, 13, 14, 15, 16, 17, 18, 19],
      );
      await rejectsWith(
        store.listReadings({ meterId: "MTR-2", fromMs: 0, toMs: 1, cursor: "bm90LWEtY3Vyc29y" }),
        "BAD_CURSOR",
      );
      await rejectsWith(
        store.listReadings({ meterId: "MTR-2", fromMs: 0, toMs: 1, limit: PAGE_ROWS_MAX + 1 }),
        "LIMIT",
      );
    });

    withStore("a sparse reading history spanning many hour buckets pages and windows exactly", async () => {
      await store.putConcentrator("DCU-1", DCU_KEY, T0);
      // One reading every 7 hours for 120 days: 412 readings, far more hours than one query seeks.
      const fields: ReadingRecordFields[] = Array.from({ length: 412 }, (_, i) => ({
        timestampMs: T0 + i * 7 * 3_600_000 + 59_000,
        meterId: "MTR-S",
        values: [{ obis: [1, 0, 1, 8, 0, 255], value: i, scaler: 0, unit: 30 }],
        seq: i + 1,
        commitId: i + 1,
        timeQuality: "SYNCED",
      }));
      await store.commitBatch(batchCommitOf(batch(1, fields), T0));
      const seqs: number[] = [];
      let cursor: string | null = null;
      do {
        const page = await store.listReadings({
          meterId: "MTR-S",
          fromMs: T0,
          toMs: T0 + 200 * 86_400_000,
          limit: 100,
          cursor,
        });
        seqs.push(...page.items.map((r) => r.seq));
        cursor = page.nextCursor;
      } while (cursor !== null);
      assert.deepEqual(
        seqs,
        fields.map((f) => f.seq),
      );
      // [from, to) on the timestamp, not on the hour: the edges cut inside buckets.
      const window = await store.listReadings({
        meterId: "MTR-S",
        fromMs: T0 + 70 * 3_600_000 + 59_000,
        toMs: T0 + 700 * 3_600_000 + 59_000,
        limit: PAGE_ROWS_MAX,
      });
      assert.deepEqual(
        window.items.map((r) => r.seq),
        Array.from({ length: 90 }, (_, i) => i + 11),
      );
      assert.equal((await store.listReadings({ meterId: "MTR-S", fromMs: T0, toMs: T0 })).items.length, 0);
      assert.equal((await store.exportEvidence("MTR-S", T0, T0 + 200 * 86_400_000)).readings.length, 412);
    });

    withStore("meters page, filter and search on the server", async () => {
      const total = 2_500;
      for (let i = 0; i < total; i++) {
        await store.upsertMeter({
          meterId: `MTR-${String(i).padStart(5, "0")}`,
          dcuId: `DCU-${i % 5}`,
          group: i % 2 === 0 ? "even" : "odd",
          transformerId: `TX-${Math.floor(i / 50)}`,
          online: i % 3 === 0,
          updatedMs: T0,
        });
      }
      const all: string[] = [];
      let cursor: string | null = null;
      do {
        const page = await store.listMeters({ limit: PAGE_ROWS_MAX, cursor });
        assert.equal(page.total, total);
        all.push(...page.items.map((m) => m.meterId));
        cursor = page.nextCursor;
      } while (cursor !== null);
      assert.equal(all.length, total);
      assert.deepEqual(all, [...all].sort());
      const filtered = await store.listMeters({ dcuId: "DCU-2", group: "even", online: true, limit: 10 });
      // i ≡ 2 (mod 5), even, i ≡ 0 (mod 3): i ≡ 12 (mod 30) → 12, 42, …, 2472: 83 of 2,500.
      assert.equal(filtered.total, 83);
      assert.equal(filtered.items[0]?.meterId, "MTR-00012");
      assert.equal(filtered.items.length, 10);
      const next = await store.listMeters({
        dcuId: "DCU-2",
        group: "even",
        online: true,
        limit: 10,
        cursor: filtered.nextCursor,
      });
      assert.equal(next.items[0]?.meterId, "MTR-00312"); // 12 + 10 × 30
      const search = await store.listMeters({ search: "0249" });
      assert.deepEqual(
        search.items.map((m) => m.meterId),
        [
          "MTR-00249",
          "MTR-02490",
          "MTR-02491",
          "MTR-02492",
          "MTR-02493",
          "MTR-02494",
          "MTR-02495",
          "MTR-02496",
          "MTR-02497",
          "MTR-02498",
          "MTR-02499",
        ],
      );
      assert.equal(
        (await store.listMeters({ search: "mtr" })).total,
        0,
        "search is case-sensitive on both back ends",
      );
      assert.equal((await store.listMeters({ transformerId: "TX-7" })).total, 50);
      assert.equal((await store.listMeters({ staleBeforeMs: T0 })).total, total);
      assert.equal((await store.counts()).metersOnline, 834);
    });

    withStore(
      "alerts are idempotent on (meter_id, counter) and move open → acknowledged → resolved",
      async () => {
        const a = await store.insertAlert(alert(7));
        assert.equal(a.isNew, true);
        const replay = await store.insertAlert(alert(7, { receivedMs: T0 + 99_000 }));
        assert.deepEqual(replay, { alertId: a.alertId, isNew: false });
        const other = await store.insertAlert(alert(7, { meterId: "MTR-2" }));
        assert.notEqual(other.alertId, a.alertId);
        const stored = await store.getAlert(a.alertId);
        assert.equal(stored?.state, "open");
        assert.deepEqual(stored?.snapshot, { field_mT: 62, code: "0x09" });
        assert.equal(stored?.receivedMs, T0 + 47);
        const acked = await store.acknowledgeAlert(a.alertId, "operator-1", T0 + 1_000);
        assert.equal(acked.state, "acknowledged");
        assert.equal(acked.acknowledgedBy, "operator-1");
        assert.equal(
          (await store.acknowledgeAlert(a.alertId, "operator-2", T0 + 2_000)).acknowledgedBy,
          "operator-1",
        );
        const resolved = await store.resolveAlert(a.alertId, "operator-1", T0 + 3_000);
        assert.equal(resolved.state, "resolved");
        await rejectsWith(store.acknowledgeAlert(a.alertId, "operator-3", T0 + 4_000), "BAD_STATE");
        await rejectsWith(store.resolveAlert(999_999, "x", T0), "NOT_FOUND");
        for (let c = 100; c < 130; c++)
          await store.insertAlert(alert(c, { type: c % 2 === 0 ? "COVER_OPEN" : "MAG_TAMPER" }));
        const first = await store.listAlerts({ state: "open", limit: 20 });
        assert.equal(first.items.length, 20);
        const rest = await store.listAlerts({ state: "open", limit: 20, cursor: first.nextCursor });
        assert.equal(rest.items.length, 11);
        assert.equal(rest.nextCursor, null);
        const ids = [...first.items, ...rest.items].map((x) => x.alertId);
        assert.deepEqual(
          ids,
          [...ids].sort((x, y) => y - x),
          "newest first",
        );
        assert.equal((await store.listAlerts({ type: "COVER_OPEN", limit: 100 })).items.length, 15);
        assert.deepEqual((await store.counts()).alertsTotal, { COVER_OPEN: 15, MAG_TAMPER: 17 });
      },
    );

    withStore("the audit chain verifies, and an edited or removed row is found", async () => {
      for (let i = 1; i <= 6; i++) {
        await store.appendAudit({
          atMs: T0 + i,
          actor: "operator-1",
          action: "alert.ack",
          detail: { alert_id: i },
        });
      }
      const report = await store.verifyAudit();
      assert.equal(report.ok, true);
      assert.equal(report.entries, 6);
      const page = await store.listAudit({ limit: 2 });
      assert.deepEqual(
        page.items.map((e) => e.seq),
        [6, 5],
      );
      assert.deepEqual(report.headHash, page.items[0]?.hash);
      await h.exec(`UPDATE audit SET detail = '{"alert_id":99}' WHERE seq = 3`);
      const edited = await store.verifyAudit();
      assert.equal(edited.ok, false);
      assert.equal(edited.problem?.seq, 3);
      assert.match(edited.problem?.message ?? "", /edited/);
      assert.equal(edited.entries, 2);
      await h.exec("DELETE FROM audit WHERE seq = 3");
      const removed = await store.verifyAudit();
      assert.equal(removed.ok, false);
      assert.equal(removed.problem?.seq, 4);
      assert.match(removed.problem?.message ?? "", /missing/);
    });

    withStore("concurrent audit appends form one chain", async () => {
      const other = await h.reopen();
      await Promise.all(
        Array.from({ length: 20 }, (_, i) =>
          (i % 2 === 0 ? store : other).appendAudit({
            atMs: T0 + i,
            actor: `a${i}`,
            action: "token.create",
            detail: i,
          }),
        ),
      );
      const report = await store.verifyAudit();
      assert.equal(report.ok, true, report.problem?.message);
      assert.equal(report.entries, 20);
    });

    withStore("gaps are stored once per identity, listed and aggregated by class", async () => {
      const gap = (gapClass: "SEQ_GAP" | "COMMIT_GAP", from: number, to: number, meterId = "MTR-1") => ({
        gapClass,
        meterId,
        dcuId: "DCU-1",
        from,
        to,
        detectedMs: T0,
        attributedTo: gapClass === "SEQ_GAP" ? "capture" : "storage",
        batchId: null,
      });
      assert.equal(
        await store.insertGaps([gap("SEQ_GAP", 5, 7), gap("SEQ_GAP", 9, 9), gap("COMMIT_GAP", 100, 109, "")]),
        3,
      );
      assert.equal(await store.insertGaps([gap("SEQ_GAP", 5, 7), gap("SEQ_GAP", 5, 7, "MTR-2")]), 1);
      const summary = await store.gapSummary();
      assert.deepEqual(
        summary.find((s) => s.gapClass === "SEQ_GAP"),
        { gapClass: "SEQ_GAP", count: 3, open: 3, width: 7 },
      );
      assert.deepEqual(
        summary.find((s) => s.gapClass === "COMMIT_GAP"),
        { gapClass: "COMMIT_GAP", count: 1, open: 1, width: 10 },
      );
      assert.equal(summary.find((s) => s.gapClass === "UPLINK_GAP")?.count, 0);
      const seqGaps = await store.listGaps({ gapClass: "SEQ_GAP", meterId: "MTR-1" });
      assert.equal(seqGaps.items.length, 2);
      assert.equal(await store.resolveGap(seqGaps.items[0]!.gapId, T0 + 1), true);
      assert.equal(await store.resolveGap(seqGaps.items[0]!.gapId, T0 + 2), false);
      assert.equal((await store.listGaps({ openOnly: true })).items.length, 3);
      assert.deepEqual((await store.counts()).gapsTotal, {
        SEQ_GAP: 3,
        COMMIT_GAP: 1,
        UPLINK_GAP: 0,
        TIME_STEP: 0,
      });
    });

    withStore("rejected batches are counted by reason and do not block a genuine batch", async () => {
      await store.putConcentrator("DCU-1", DCU_KEY, T0);
      const b1 = batch(1, readings(1, 1, 1));
      const rejected = {
        dcuId: "DCU-1",
        batchId: 1,
        batchHash: b1.header.batchHash,
        reason: "BAD_SIGNATURE",
        receivedMs: T0,
        header: b1.header.bytes,
      };
      await store.recordRejectedBatch(rejected);
      await store.recordRejectedBatch({ ...rejected, receivedMs: T0 + 1 });
      await store.recordRejectedBatch({
        ...rejected,
        batchId: -1,
        batchHash: new Uint8Array(),
        reason: "TRUNCATED",
        header: null,
      });
      assert.equal(await store.hasBatch(1, "DCU-1"), false);
      assert.equal((await store.commitBatch(batchCommitOf(b1, T0 + 2))).batchNew, true);
      const counts = await store.counts();
      assert.deepEqual(counts.batchesRejectedTotal, { BAD_SIGNATURE: 2, TRUNCATED: 1 });
      assert.equal(counts.batchesAcceptedTotal, 1);
    });

    withStore(
      "evidence export returns readings, events and the signed batches that carried them",
      async () => {
        await store.putConcentrator("DCU-1", DCU_KEY, T0);
        const b1 = batch(1, readings(1, 2, 5));
        const b2 = batch(2, readings(2, 2, 5, 6), b1.header.batchHash);
        const evs = events(4);
        await store.commitBatch(batchCommitOf(b1, T0, { events: evs.slice(0, 2) }));
        await store.commitBatch(batchCommitOf(b2, T0));
        assert.equal(await store.insertEvents(evs), 2, "events already stored are skipped");
        const from = T0 + 4 * 900_000;
        const to = T0 + 8 * 900_000;
        const exported = await store.exportEvidence("MTR-1", from, to);
        assert.deepEqual([...new Set(exported.readings.map((r) => r.seq))], [4, 5, 6, 7]);
        assert.deepEqual(
          exported.batches.map((b) => b.batchId),
          [1, 2],
        );
        for (const stored of exported.batches) {
          // Rebuild the batch from the stored bytes alone and verify it against the concentrator's key.
          const rebuilt: Batch = {
            header: decodeBatchHeader(stored.header!),
            records: unpackRecords(stored.records!).map(decodeReadingRecord),
          };
          assert.deepEqual(verifyBatch(rebuilt, DCU_KEY), []);
          for (const r of exported.readings.filter((x) => x.batchId === stored.batchId)) {
            const record = rebuilt.records.find((x) => x.meterId === r.meterId && x.seq === r.seq);
            assert.equal(record?.crc, r.recordCrc);
          }
        }
        const window = await store.exportEvidence("MTR-1", T0 + 1_500_000, T0 + 3_500_000);
        assert.deepEqual(
          window.events.map((e) => e.seq),
          [2, 3],
        );
        assert.deepEqual(
          (await store.listEvents("MTR-1", 0, T0 * 2, { limit: 3 })).items.map((e) => e.type),
          ["POWER_UP", "COVER_OPEN", "POWER_UP"],
        );
      },
    );

    withStore("firmware images are stored once; a conflicting image is refused", async () => {
      const image = new Uint8Array(4096).fill(0xa5);
      const fw = {
        component: "application",
        version: "2.1.0",
        releaseCounter: 21,
        checksum: "ab".repeat(32),
        image,
        expiryMs: T0 + 86_400_000,
        uploadedMs: T0,
      };
      assert.equal(await store.putFirmware(fw), true);
      assert.equal(await store.putFirmware(fw), false);
      await rejectsWith(store.putFirmware({ ...fw, checksum: "cd".repeat(32) }), "BAD_ROW");
      await rejectsWith(store.putFirmware({ ...fw, version: "2.1.1" }), "BAD_ROW");
      assert.deepEqual((await store.getFirmware("application", "2.1.0"))?.image, image);
      assert.deepEqual(
        (await store.listFirmware()).map((f) => f.releaseCounter),
        [21],
      );
    });

    withStore("API tokens are found by hash and stay revoked", async () => {
      await store.putApiToken({
        tokenHash: "f0".repeat(32),
        role: "operator",
        label: "ops",
        createdMs: T0,
        revokedMs: null,
      });
      assert.equal((await store.findApiToken("f0".repeat(32)))?.role, "operator");
      assert.equal(await store.revokeApiToken("f0".repeat(32), T0 + 1), true);
      await store.putApiToken({
        tokenHash: "f0".repeat(32),
        role: "admin",
        label: "ops",
        createdMs: T0,
        revokedMs: null,
      });
      const token = await store.findApiToken("f0".repeat(32));
      assert.equal(token?.revokedMs, T0 + 1);
      assert.equal(token?.role, "admin");
      assert.equal(await store.findApiToken("00"), null);
    });
  });
}

// ───────────────────────────── pure parts ─────────────────────────────

test("store URLs: sqlite:PATH, postgres://…, anything else refused", () => {
  assert.deepEqual(parseStoreUrl("sqlite:data/headend.db"), { kind: "sqlite", path: "data/headend.db" });
  assert.deepEqual(parseStoreUrl("sqlite:///var/lib/amiproof.db"), {
    kind: "sqlite",
    path: "/var/lib/amiproof.db",
  });
  assert.deepEqual(parseStoreUrl("sqlite::memory:"), { kind: "sqlite", path: ":memory:" });
  assert.equal(parseStoreUrl("postgresql://u:p@db:5432/x").kind, "postgres");
  for (const bad of ["", "sqlite:", "mysql://x", "headend.db", "postgres://[bad"]) {
    assert.throws(
      () => parseStoreUrl(bad),
      (e: unknown) => isStoreError(e, "BAD_URL"),
      bad,
    );
  }
  assert.throws(
    () => parseStoreUrl("mysql://admin:secret@h/db"),
    (e: unknown) => isStoreError(e, "BAD_URL") && !e.message.includes("secret"),
  );
});

test("an in-memory SQLite store works for the lab", async () => {
  const store = await openStore("sqlite::memory:", { nowMs: T0 });
  assert.equal(await store.schemaVersion(), SCHEMA_VERSION);
  await store.close();
  await rejectsWith(store.getMeter("x"), "CLOSED");
});

test("packRecords/unpackRecords round-trip; unpack of any bytes gives records or a StoreError", () => {
  fc.assert(
    fc.property(fc.array(fc.uint8Array({ maxLength: 300 }), { maxLength: 40 }), (records) => {
      assert.deepEqual(unpackRecords(packRecords(records)), records);
    }),
    { numRuns: RUNS },
  );
  const packed = packRecords([Uint8Array.of(1, 2, 3), new Uint8Array(40).fill(9)]);
  fc.assert(
    fc.property(
      fc.oneof(
        fc.uint8Array({ maxLength: 600 }),
        fc.uint8Array({ maxLength: 600 }).map((tail) => Uint8Array.of(1, ...tail)),
        // a valid blob with one byte changed or cut short
        fc.tuple(fc.nat(packed.length - 1), fc.integer({ min: 1, max: 255 })).map(([at, x]) => {
          const copy = packed.slice();
          copy[at]! ^= x;
          return copy;
        }),
        fc.nat(packed.length - 1).map((cut) => packed.subarray(0, cut)),
      ),
      (bytes) => {
        try {
          unpackRecords(bytes);
        } catch (error) {
          assert.ok(isStoreError(error, "BAD_ROW"), String(error));
        }
      },
    ),
    { numRuns: RUNS },
  );
  // A blob that inflates past the bound is refused, not inflated without limit.
  const bomb = Uint8Array.of(1, ...deflateRawSync(new Uint8Array(RECORDS_BLOB_BYTES_MAX + 1)));
  assert.throws(
    () => unpackRecords(bomb),
    (e: unknown) => isStoreError(e, "BAD_ROW"),
  );
});
