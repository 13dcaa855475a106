import assert from "node:assert/strict";
import { after, describe, test } from "node:test";
import {
  type AckMessage,
  decodeAck,
  encodeBatch,
  MemorySecureElement,
  sealReadingsBatch,
} from "../../src/evidence/index.ts";
import {
  BatchIngest,
  type BatchRejection,
  HeadendMetrics,
  type HeadendStore,
  type IngestOutcome,
  KeyRegistry,
} from "../../src/headend/index.ts";
import { backends, recordingLog, type StoreHarness, sqliteBackend, T0, TestDcu } from "./helpers.ts";

// Issue 7 acceptance (3) on the ingest core, against SQLite and PostgreSQL: attacks are rejected, counted,
// logged and leave nothing stored; a batch twice is stored once and acked twice; no ack without a commit;
// gaps are attributed on the two axes of seed 003 H2-4.

interface Rig {
  readonly harness: StoreHarness;
  readonly store: HeadendStore;
  readonly ingest: BatchIngest;
  readonly metrics: HeadendMetrics;
  readonly acks: { topic: string; ack: AckMessage }[];
  readonly outcomes: IngestOutcome[];
  readonly rejections: BatchRejection[];
  readonly log: ReturnType<typeof recordingLog>;
  readonly events: string[];
  submit(dcuId: string, payload: Uint8Array): Promise<IngestOutcome>;
}

async function rig(harness: StoreHarness, dcus: readonly TestDcu[], store = harness.store): Promise<Rig> {
  const registry = new KeyRegistry(store);
  for (const dcu of dcus)
    await registry.registerConcentrator({ dcuId: dcu.dcuId, batchSignPublicKey: dcu.publicKey }, T0);
  const metrics = new HeadendMetrics();
  const acks: { topic: string; ack: AckMessage }[] = [];
  const outcomes: IngestOutcome[] = [];
  const rejections: BatchRejection[] = [];
  const events: string[] = [];
  const log = recordingLog();
  let clock = T0 + 1_000_000;
  const ingest = new BatchIngest({
    store,
    registry,
    metrics,
    log,
    nowMs: () => clock++,
    publish: async (topic, payload) => {
      events.push("ack");
      acks.push({ topic, ack: decodeAck(payload) });
    },
    onRejected: (r) => rejections.push(r),
    onOutcome: (o) => outcomes.push(o),
  });
  return {
    harness,
    store,
    ingest,
    metrics,
    acks,
    outcomes,
    rejections,
    log,
    events,
    async submit(dcuId, payload) {
      const before = outcomes.length;
      assert.ok(ingest.submit(dcuId, payload));
      await ingest.drain();
      assert.equal(outcomes.length, before + 1);
      return outcomes[outcomes.length - 1] as IngestOutcome;
    },
  };
}

async function readingsStored(store: HeadendStore): Promise<number> {
  return (await store.counts()).readingsStoredTotal;
}

for (const backend of backends("ingest.test")) {
  describe(`ingest on ${backend.name}`, () => {
    const harnesses: StoreHarness[] = [];
    const fresh = async () => {
      const h = await backend.fresh();
      harnesses.push(h);
      return h;
    };
    after(async () => {
      for (const h of harnesses) await h.cleanup();
    });

    test("a valid chain is stored and each batch acked with its exact commit_id range", async () => {
      const dcu = new TestDcu("DCU-1");
      const r = await rig(await fresh(), [dcu]);
      const first = await r.submit("DCU-1", dcu.next(["M1", "M2"], 2));
      const second = await r.submit("DCU-1", dcu.next(["M1", "M2"], 2));
      assert.equal(first.kind, "accepted");
      assert.equal(second.kind, "accepted");
      assert.deepEqual(
        r.acks.map((a) => [a.topic, a.ack.accepted]),
        [
          ["ami/DCU-1/acks", [{ batchId: 1, commitIdFirst: 1, commitIdLast: 4 }]],
          ["ami/DCU-1/acks", [{ batchId: 2, commitIdFirst: 5, commitIdLast: 8 }]],
        ],
      );
      assert.equal(await readingsStored(r.store), 8);
      const page = await r.store.listReadings({ meterId: "M1", fromMs: 0, toMs: T0 * 2 });
      assert.deepEqual(
        page.items.map((x) => x.seq),
        [1, 2, 3, 4],
      );
      const gaps = await r.store.listGaps({});
      assert.equal(gaps.items.length, 0);
    });

    test("the same batch twice is stored once and acked twice", async () => {
      const dcu = new TestDcu("DCU-1");
      const r = await rig(await fresh(), [dcu]);
      const payload = dcu.next(["M1", "M2"], 3);
      assert.equal((await r.submit("DCU-1", payload)).kind, "accepted");
      assert.equal((await r.submit("DCU-1", payload)).kind, "duplicate");
      assert.equal(await readingsStored(r.store), 6);
      assert.equal(r.acks.length, 2);
      assert.deepEqual(r.acks[0]?.ack.accepted, r.acks[1]?.ack.accepted);
      assert.equal(r.metrics.batchesDuplicate, 1);
      // A fresh ingest (a restart) finds it in the store, not in its memory, and still acks it.
      const restarted = await rig(r.harness, [dcu]);
      assert.equal((await restarted.submit("DCU-1", payload)).kind, "duplicate");
      assert.deepEqual(restarted.acks[0]?.ack.accepted, [{ batchId: 1, commitIdFirst: 1, commitIdLast: 6 }]);
      assert.equal(await readingsStored(r.store), 6);
    });

    test("attacks are rejected, counted, logged, alerted, and leave nothing stored", async () => {
      const dcu = new TestDcu("DCU-1");
      const other = new TestDcu("DCU-2", 11);
      const r = await rig(await fresh(), [dcu, other]);
      const good = dcu.next(["M1", "M2"], 2);
      assert.equal((await r.submit("DCU-1", good)).kind, "accepted");
      const stored = await readingsStored(r.store);

      // Forged signature: a batch sealed with a key that is not DCU-1's.
      const forger = new TestDcu("DCU-1", 99);
      forger.nextBatchId = 2;
      forger.nextCommitId = 5;
      const forged = await r.submit("DCU-1", forger.next(["M1"], 2));
      // Unknown concentrator.
      const stranger = new TestDcu("DCU-X", 5);
      const unknown = await r.submit("DCU-X", stranger.next(["M9"], 1));
      // Tampered record, CRC left stale: the decoder refuses it.
      const honest = dcu.seal(dcu.readings(["M1", "M2"], 2));
      const tampered = encodeBatch(honest).slice();
      tampered[tampered.length - 10] = (tampered[tampered.length - 10] as number) ^ 0x01;
      const badCrc = await r.submit("DCU-1", tampered);
      // Tampered record with a recomputed CRC: the Merkle root no longer matches the signed header.
      const edited = sealReadingsBatch(
        {
          batchId: 99,
          dcuId: "DCU-1",
          epoch: 1,
          createdMs: T0,
          readings: [
            {
              ...honest.records[0]!,
              values: [{ obis: [1, 0, 1, 8, 0, 255], value: 1, scaler: 0, unit: 30 }],
            },
          ],
          prevBatchHash: undefined,
        },
        (m) => new MemorySecureElement("x", Uint8Array.of(1)).sign("batch_sign", m),
      );
      const spliced = encodeBatch({
        header: honest.header,
        records: [edited.records[0]!, ...honest.records.slice(1)],
      });
      const badRoot = await r.submit("DCU-1", spliced);
      // Replay: DCU-1's accepted batch 1 re-sealed with other content (a forked history), and a captured
      // batch of DCU-1 replayed on DCU-2's topic.
      const fork = new TestDcu("DCU-1");
      const replay = await r.submit("DCU-1", fork.next(["M7"], 1));
      const crossTopic = await r.submit("DCU-2", good);
      // Broken chain: batch 2 whose prev_batch_hash is not batch 1's.
      const broken = new TestDcu("DCU-1");
      broken.next(["M5"], 1); // a batch 1 DCU-1 never sent: batch 2 chains to it
      const chainBreak = await r.submit("DCU-1", broken.next(["M5"], 1));

      const cases: [IngestOutcome, string][] = [
        [forged, "BAD_SIGNATURE"],
        [unknown, "UNKNOWN_DCU"],
        [badCrc, "BAD_CRC"],
        [badRoot, "BAD_MERKLE_ROOT"],
        [replay, "REPLAY"],
        [crossTopic, "DCU_MISMATCH"],
        [chainBreak, "CHAIN_BREAK"],
      ];
      for (const [outcome, reason] of cases) {
        assert.equal(outcome.kind, "rejected", `${reason}: ${JSON.stringify(outcome)}`);
        assert.equal(outcome.kind === "rejected" && outcome.reason, reason);
        assert.equal(r.metrics.batchesRejected.get(reason), 1, `${reason} counted`);
        assert.ok(
          r.log.lines.some(
            (l) => l.level === "warn" && l.message === "batch rejected" && l.detail.reason === reason,
          ),
          `${reason} logged`,
        );
        assert.ok(
          r.rejections.some((x) => x.reason === reason),
          `${reason} handed to the alert lane`,
        );
      }
      assert.equal(await readingsStored(r.store), stored, "nothing stored by any attack");
      const counts = await r.store.counts();
      for (const [, reason] of cases)
        assert.equal(counts.batchesRejectedTotal[reason], 1, `${reason} kept as evidence`);
      // Every rejection that names a batch_id is answered on the topic's acks with a reason.
      const refused = r.acks.filter((a) => a.ack.rejected.length > 0);
      assert.ok(refused.length >= 6);
      assert.ok(refused.every((a) => a.ack.accepted.length === 0));
      // The honest batch 2 still goes in afterwards: nothing above moved the chain head.
      const next = await r.submit("DCU-1", encodeBatch(honest));
      assert.equal(next.kind, "accepted", JSON.stringify(next));
    });

    test("a batch from an older recovery epoch is refused as a replay", async () => {
      const dcu = new TestDcu("DCU-1");
      const r = await rig(await fresh(), [dcu]);
      dcu.epoch = 3;
      assert.equal((await r.submit("DCU-1", dcu.next(["M1"], 2))).kind, "accepted");
      dcu.epoch = 2;
      const old = await r.submit("DCU-1", dcu.next(["M1"], 2));
      assert.equal(old.kind === "rejected" && old.reason, "REPLAY");
    });

    test("no ack when the store fails in the middle of the commit; the resend is acked once committed", async () => {
      const dcu = new TestDcu("DCU-1");
      const h = await fresh();
      const r = await rig(h, [dcu]);
      const payload = dcu.next(["M1", "M2", "M3"], 4);
      // The batches row is written after the readings inside commitBatch's transaction: a failure there is
      // a failure mid-commit, after reading rows went in.
      if (backend.name === "sqlite") {
        await h.exec(
          "CREATE TRIGGER fail_commit BEFORE INSERT ON batches WHEN NEW.status = 'accepted' BEGIN SELECT RAISE(ABORT, 'injected fault'); END",
        );
      } else {
        await h.exec(
          "CREATE FUNCTION fail_commit() RETURNS trigger AS $$ BEGIN IF NEW.status = 'accepted' THEN RAISE EXCEPTION 'injected fault'; END IF; RETURN NEW; END $$ LANGUAGE plpgsql",
        );
        await h.exec(
          "CREATE TRIGGER fail_commit BEFORE INSERT ON batches FOR EACH ROW EXECUTE FUNCTION fail_commit()",
        );
      }
      const failed = await r.submit("DCU-1", payload);
      assert.equal(failed.kind, "failed");
      assert.equal(r.acks.length, 0, "no ack for an uncommitted batch");
      assert.equal(await readingsStored(r.store), 0);
      const m1 = await r.store.listReadings({ meterId: "M1", fromMs: 0, toMs: T0 * 2 });
      assert.equal(m1.items.length, 0, "the readings written before the failure were rolled back");
      assert.equal(r.metrics.commitFailures, 1);

      await h.exec("DROP TRIGGER fail_commit" + (backend.name === "postgres" ? " ON batches" : ""));
      const retried = await r.submit("DCU-1", payload);
      assert.equal(retried.kind, "accepted");
      assert.deepEqual(r.events, ["ack"]);
      assert.deepEqual(r.acks[0]?.ack.accepted, [{ batchId: 1, commitIdFirst: 1, commitIdLast: 12 }]);
      assert.equal(await readingsStored(r.store), 12);
    });

    test("the ack is published only after commitBatch has resolved", async () => {
      const dcu = new TestDcu("DCU-1");
      const h = await fresh();
      const order: string[] = [];
      const store = new Proxy(h.store, {
        get(target, property) {
          const value = Reflect.get(target, property, target);
          if (property !== "commitBatch") return typeof value === "function" ? value.bind(target) : value;
          return async (...args: Parameters<HeadendStore["commitBatch"]>) => {
            order.push("commit-start");
            const result = await target.commitBatch(...args);
            order.push("commit-end");
            return result;
          };
        },
      });
      const r = await rig(h, [dcu], store);
      r.events.length = 0;
      await r.submit("DCU-1", dcu.next(["M1"], 2));
      assert.deepEqual([...order, ...r.events], ["commit-start", "commit-end", "ack"]);
    });

    test("gaps are attributed on the two axes: SEQ_GAP (capture), COMMIT_GAP (storage), UPLINK_GAP", async () => {
      const dcu = new TestDcu("DCU-1");
      const r = await rig(await fresh(), [dcu]);
      await r.submit("DCU-1", dcu.next(["M1", "M2"], 2)); // batch 1: commit 1..4, seq 1..2
      // batch 2: M2 skips a seq with commit_ids continuous → capture did not happen.
      const seqGap = await r.submit("DCU-1", dcu.next(["M1", "M2"], 1, { skipSeq: "M2" }));
      assert.equal(seqGap.kind, "accepted");
      assert.deepEqual(
        seqGap.kind === "accepted" &&
          seqGap.gaps.map((g) => [g.gapClass, g.meterId, g.from, g.to, g.attributedTo]),
        [["SEQ_GAP", "M2", 3, 3, "capture"]],
      );
      // batch 3: commit_ids jump by 3 with every meter's seq continuous → the storage commit path.
      const commitGap = await r.submit("DCU-1", dcu.next(["M1", "M2"], 1, { skipCommit: 3 }));
      assert.deepEqual(
        commitGap.kind === "accepted" &&
          commitGap.gaps.map((g) => [g.gapClass, g.from, g.to, g.attributedTo]),
        [["COMMIT_GAP", 7, 9, "storage"]],
      );
      // batch 5 arrives before batch 4: seq and commit_id continuity cannot be judged, the uplink axis can.
      const four = dcu.next(["M1", "M2"], 1);
      const five = dcu.next(["M1", "M2"], 1);
      const ahead = await r.submit("DCU-1", five);
      assert.deepEqual(
        ahead.kind === "accepted" && ahead.gaps.map((g) => [g.gapClass, g.from, g.to, g.attributedTo]),
        [["UPLINK_GAP", 4, 4, "uplink"]],
      );
      const late = await r.submit("DCU-1", four);
      assert.equal(late.kind, "accepted", JSON.stringify(late));
      assert.deepEqual(late.kind === "accepted" && late.gaps, []);
      const uplink = await r.store.listGaps({ gapClass: "UPLINK_GAP" });
      assert.equal(uplink.items.length, 1);
      assert.notEqual(uplink.items[0]?.resolvedMs, null, "the late batch closed the uplink gap");
      const summary = Object.fromEntries((await r.store.gapSummary()).map((s) => [s.gapClass, s.count]));
      assert.equal(summary.SEQ_GAP, 1);
      assert.equal(summary.COMMIT_GAP, 1);
      assert.equal(summary.UPLINK_GAP, 1);
      // Every batch stored; the chain head is batch 5 and batch 6 chains on it.
      assert.equal((await r.submit("DCU-1", dcu.next(["M1"], 1))).kind, "accepted");
      assert.equal(r.metrics.gapsByClass.get("SEQ_GAP"), 1);
    });

    test("a late batch moves the meter cursors: no phantom SEQ_GAP over seqs it stored", async () => {
      const dcu = new TestDcu("DCU-1");
      const r = await rig(await fresh(), [dcu]);
      await r.submit("DCU-1", dcu.next(["M1", "M2"], 1)); // batch 1: M1 seq 1, M2 seq 1
      const two = dcu.next(["M2"], 1); // M2 seq 2
      const three = dcu.next(["M1"], 1); // M1 seq 2 — overtakes batch 2
      assert.equal((await r.submit("DCU-1", three)).kind, "accepted");
      assert.equal((await r.submit("DCU-1", two)).kind, "accepted");
      const four = await r.submit("DCU-1", dcu.next(["M2"], 1)); // M2 seq 3 follows the late batch's seq 2
      assert.deepEqual(four.kind === "accepted" && four.gaps, []);
      // A batch that follows the overtaking one sees a hole where the late batch's seqs will be: its SEQ_GAP
      // is closed when the late batch brings every seq of it.
      const five = dcu.next(["M1"], 1); // M1 seq 3, held back
      assert.equal((await r.submit("DCU-1", dcu.next(["M2"], 1))).kind, "accepted"); // batch 6 overtakes 5
      const seven = await r.submit("DCU-1", dcu.next(["M1"], 1)); // M1 seq 4: seq 3 not seen yet
      assert.deepEqual(
        seven.kind === "accepted" && seven.gaps.map((g) => [g.gapClass, g.meterId, g.from, g.to]),
        [["SEQ_GAP", "M1", 3, 3]],
      );
      assert.equal((await r.submit("DCU-1", five)).kind, "accepted");
      const seqGaps = await r.store.listGaps({ gapClass: "SEQ_GAP", meterId: "M1" });
      assert.equal(seqGaps.items.length, 1);
      assert.notEqual(seqGaps.items[0]?.resolvedMs, null, "the late batch brought seq 3: the gap is closed");
      // A gap filled by two late batches, one seq each, closes when the second arrives.
      const eight = dcu.next(["M1"], 1); // M1 seq 5, held back
      const nine = dcu.next(["M1"], 1); // M1 seq 6, held back
      assert.equal((await r.submit("DCU-1", dcu.next(["M2"], 1))).kind, "accepted"); // batch 10 overtakes
      const eleven = await r.submit("DCU-1", dcu.next(["M1"], 1)); // M1 seq 7
      assert.deepEqual(
        eleven.kind === "accepted" && eleven.gaps.map((g) => [g.gapClass, g.meterId, g.from, g.to]),
        [["SEQ_GAP", "M1", 5, 6]],
      );
      assert.equal((await r.submit("DCU-1", nine)).kind, "accepted");
      const halfFilled = await r.store.listGaps({ gapClass: "SEQ_GAP", meterId: "M1", openOnly: true });
      assert.equal(halfFilled.items.length, 1, "seq 5 is still missing: the gap stays open");
      assert.equal((await r.submit("DCU-1", eight)).kind, "accepted");
      const filled = await r.store.listGaps({ gapClass: "SEQ_GAP", meterId: "M1", openOnly: true });
      assert.equal(filled.items.length, 0, "both late batches together brought seqs 5 and 6");
      // A real capture gap after the late batch is still seen.
      const six = await r.submit("DCU-1", dcu.next(["M2"], 1, { skipSeq: "M2" }));
      assert.deepEqual(
        six.kind === "accepted" && six.gaps.map((g) => [g.gapClass, g.meterId, g.from, g.to, g.attributedTo]),
        [["SEQ_GAP", "M2", 6, 6, "capture"]],
      );
      const open = await r.store.listGaps({ gapClass: "SEQ_GAP", meterId: "M2", openOnly: true });
      assert.equal(open.items.length, 1, "a real capture gap stays open");
    });
  });
}

describe("ingest shutdown", () => {
  test("close() finishes the batch being committed (commit, then ack) and drops the queued ones unacked", async () => {
    const h = await sqliteBackend.fresh();
    try {
      const dcu = new TestDcu("DCU-1");
      const r = await rig(h, [dcu]);
      // Sealed once, resent byte-identical (as the concentrator's outbox does).
      const chain = Array.from({ length: 5 }, () => dcu.next(["M1", "M2"], 2));
      for (const payload of chain) assert.ok(r.ingest.submit("DCU-1", payload));
      const dropped = await r.ingest.close();
      assert.equal(dropped, 4);
      assert.deepEqual(
        r.acks.map((a) => a.ack.accepted.map((x) => x.batchId)),
        [[1]],
      );
      assert.equal(await readingsStored(r.store), 4);
      assert.equal(r.ingest.submit("DCU-1", dcu.next(["M1"], 1)), false, "no intake after close");
      // The concentrator resends what was not acked; a restarted ingest takes it from batch 2 on.
      const restarted = await rig(h, [dcu]);
      for (const payload of chain.slice(1)) assert.ok(restarted.ingest.submit("DCU-1", payload));
      await restarted.ingest.drain();
      assert.deepEqual(
        restarted.outcomes.map((o) => o.kind),
        ["accepted", "accepted", "accepted", "accepted"],
      );
    } finally {
      await h.cleanup();
    }
  });
});
