import assert from "node:assert/strict";
import { after, test } from "node:test";
import { decodeBatch } from "../../src/evidence/index.ts";
import {
  BatchIngest,
  HeadendMetrics,
  type IngestOutcome,
  KeyRegistry,
  prepareFromBatch,
  SILENT_LOG,
  VerifierPool,
} from "../../src/headend/index.ts";
import { type StoreHarness, sqliteBackend, T0, TestDcu } from "./helpers.ts";

// Verification in worker threads gives the commit stage exactly what in-thread verification gives it.

const pool = new VerifierPool(2);
const harnesses: StoreHarness[] = [];
after(async () => {
  await pool.close();
  for (const h of harnesses) await h.cleanup();
});

test("a batch verified in a worker is prepared exactly as in the writer's thread", async () => {
  const dcu = new TestDcu("DCU-W");
  const payload = dcu.next(["M1", "M2", "M3"], 5);
  const result = await pool.verify(payload, dcu.publicKey);
  assert.equal(result.ok, true);
  const local = prepareFromBatch(decodeBatch(payload));
  if (!result.ok) return;
  assert.deepEqual(result.prepared.readings, local.readings);
  assert.deepEqual(result.prepared.meters, local.meters);
  assert.deepEqual(
    result.prepared.records.map((r) => [r.meterId, r.seq, r.commitId, r.timestampMs]),
    local.records.map((r) => [r.meterId, r.seq, r.commitId, r.timestampMs]),
  );
  assert.deepEqual(result.prepared.packedRecords, local.packedRecords);
  assert.deepEqual(result.prepared.header.batchHash, local.header.batchHash);
});

test("refusals come back with their evidence code and the header's batch_id", async () => {
  const dcu = new TestDcu("DCU-W");
  const forger = new TestDcu("DCU-W", 77);
  const forged = await pool.verify(forger.next(["M1"], 2), dcu.publicKey);
  assert.equal(forged.ok === false && forged.code, "BAD_SIGNATURE");
  const payload = dcu.next(["M1"], 2).slice();
  payload[payload.length - 8] = (payload[payload.length - 8] as number) ^ 0xff;
  const corrupt = await pool.verify(payload, dcu.publicKey);
  assert.equal(corrupt.ok === false && corrupt.code, "BAD_CRC");
  assert.equal(corrupt.ok === false && corrupt.header?.batchId, 1);
  const garbage = await pool.verify(new Uint8Array([1, 2, 3]), dcu.publicKey);
  assert.equal(garbage.ok, false);
});

test("the ingest on the pool stores and acks a chain in order", async () => {
  const h = await sqliteBackend.fresh();
  harnesses.push(h);
  const dcu = new TestDcu("DCU-W");
  const registry = new KeyRegistry(h.store);
  await registry.registerConcentrator({ dcuId: "DCU-W", batchSignPublicKey: dcu.publicKey }, T0);
  const outcomes: IngestOutcome[] = [];
  const acked: number[] = [];
  const ingest = new BatchIngest({
    store: h.store,
    registry,
    metrics: new HeadendMetrics(),
    log: SILENT_LOG,
    nowMs: () => T0,
    publish: async () => {
      acked.push(outcomes.length);
    },
    verifier: pool.verify,
    onOutcome: (o) => outcomes.push(o),
  });
  for (let i = 0; i < 10; i++) assert.ok(ingest.submit("DCU-W", dcu.next(["M1", "M2"], 3)));
  await ingest.drain();
  assert.deepEqual(
    outcomes.map((o) => (o.kind === "accepted" ? o.batchId : o.kind)),
    [1, 2, 3, 4, 5, 6, 7, 8, 9, 10],
  );
  assert.equal((await h.store.counts()).readingsStoredTotal, 60);
});
