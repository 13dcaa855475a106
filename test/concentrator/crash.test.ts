import assert from "node:assert/strict";
import { test } from "node:test";
import fc from "fast-check";
import { committedProblems, World } from "./harness.ts";

const RUNS = Number(process.env.AMIPROOF_FUZZ_RUNS ?? 300);

/**
 * Power cuts at arbitrary moments (virtual time, with microtask-level cut points: the world is cut
 * after a random number of ticks and a random number of settled microtasks), under a lossy link and
 * lossy acks. Afterwards: everything the concentrator committed reached the head-end exactly once, per
 * meter contiguous from its first reading, batch chain unbroken, nothing equivocated.
 */
test("kill at any moment: nothing committed is lost, nothing is duplicated at the head-end", async () => {
  await fc.assert(
    fc.asyncProperty(
      fc.integer({ min: 1, max: 2 ** 31 }),
      fc.array(fc.tuple(fc.integer({ min: 1, max: 40 }), fc.integer({ min: 0, max: 12 })), {
        minLength: 1,
        maxLength: 6,
      }),
      fc.double({ min: 0, max: 0.4, noNaN: true }),
      async (seed, cuts, loss) => {
        const world = new World({
          seed: `crash-${seed}`,
          meters: 6,
          readingIntervalMs: 10_000,
          config: { batchRecordsMax: 8, batchAgeMaxMs: 2_000, ackTimeoutMs: 5_000 },
        });
        world.transport.lossRate = loss;
        world.headEnd.ackLossRate = loss;
        let dcu = await world.open();
        dcu.onLinkUp();
        for (const [ticks, microtasks] of cuts) {
          for (let i = 0; i < ticks; i++) {
            world.clock.advance(1_000);
            dcu.tick();
            if (i < ticks - 1) await dcu.idle();
          }
          for (let i = 0; i < microtasks; i++) await Promise.resolve();
          dcu = await world.crashAndRestart();
          dcu.onLinkUp();
        }
        // Calm link: let everything drain.
        world.transport.lossRate = 0;
        world.headEnd.ackLossRate = 0;
        for (let i = 0; i < 12; i++) {
          dcu.flush();
          await world.run(10_000, 1_000);
        }
        assert.deepEqual(committedProblems(world), []);
        // Only the newest readings (committed after the last batch was sealed) may still wait.
        const waiting = world.journal.lastCommitId() - world.journal.releasedThrough();
        assert.ok(waiting <= 2 * world.meterIds.length, `${waiting} committed records never acknowledged`);
        const packs = dcu.packs() as { commit: { seq_gap: { count: number } } };
        assert.equal(packs.commit.seq_gap.count, 0);
        for (const meterId of world.meterIds) {
          const seqs = world.headEnd.seqsOf(meterId);
          assert.ok(
            seqs.at(-1)! >= world.fleet.newestSeq(meterId) - 3,
            `${meterId} stored through ${seqs.at(-1)}`,
          );
        }
      },
    ),
    { numRuns: Math.max(20, Math.floor(RUNS / 5)) },
  );
});

test("a journal write failure stalls the commit path loudly and loses nothing after restart", async () => {
  const world = new World({ seed: "eio", meters: 4, readingIntervalMs: 10_000 });
  let dcu = await world.open();
  dcu.onLinkUp();
  await world.run(60_000);
  world.storage.failAfterBytes(0); // the supply dies in the next append
  await assert.rejects(world.run(30_000), /POWER_LOST/);
  const packs = dcu.packs() as { commit: { commit_state: string; write_fail_cnt: number } };
  assert.equal(packs.commit.commit_state, "STALLED");
  assert.equal(packs.commit.write_fail_cnt, 1);
  world.fatal = null;
  dcu = await world.crashAndRestart();
  dcu.onLinkUp();
  for (let i = 0; i < 4; i++) {
    dcu.flush();
    await world.run(20_000);
  }
  assert.deepEqual(committedProblems(world), []);
});

test("restart opens a new recovery epoch; batches resent after restart are byte-identical", async () => {
  const world = new World({
    seed: "epoch",
    meters: 4,
    readingIntervalMs: 10_000,
    config: { batchRecordsMax: 4 },
  });
  let dcu = await world.open();
  dcu.onLinkUp();
  world.headEnd.acking = false; // the head-end stores but its acks never arrive
  await world.run(2 * 60_000);
  const sealedBefore = world.store.outboxIds();
  assert.ok(sealedBefore.length > 1);
  const deliveriesBefore = world.headEnd.deliveries;
  dcu = await world.crashAndRestart();
  assert.equal(dcu.epoch, 2);
  world.headEnd.acking = true;
  dcu.onLinkUp();
  await world.run(30_000);
  // The resends were recognised as the same batches (same batch_id and batch_hash): no equivocation.
  assert.ok(world.headEnd.duplicateDeliveries > 0);
  assert.ok(world.headEnd.deliveries > deliveriesBefore);
  assert.deepEqual(world.headEnd.problems, []);
  const packs = dcu.packs() as { commit: { replay_summary: Record<string, unknown>; epoch: number } };
  assert.equal(packs.commit.epoch, 2);
  assert.equal(packs.commit.replay_summary.reset_reason, "UNCLEAN_RESTART");
  assert.equal(packs.commit.replay_summary.outbox_batches, sealedBefore.length);
});

test("link faults — 2.4 kbps, 30 % loss, lost acks, broker outage — raise the retry evidence, lose and duplicate nothing", async () => {
  const world = new World({
    seed: "slow-link",
    meters: 12,
    readingIntervalMs: 60_000,
    config: { batchRecordsMax: 32 },
  });
  world.transport.bitsPerSecond = 2_400;
  world.transport.lossRate = 0.3;
  world.headEnd.ackLossRate = 0.3;
  const dcu = await world.open();
  dcu.onLinkUp();
  await world.run(2 * 3_600_000, 5_000);
  world.transport.up = false; // broker down for 20 minutes
  dcu.onLinkDown();
  await world.run(20 * 60_000, 5_000);
  world.transport.up = true;
  dcu.onLinkUp();
  await world.run(3_600_000, 5_000);
  world.transport.lossRate = 0;
  world.headEnd.ackLossRate = 0;
  for (let i = 0; i < 6; i++) {
    dcu.flush();
    await world.run(10 * 60_000, 5_000);
  }
  assert.deepEqual(committedProblems(world), []);
  const packs = dcu.packs() as {
    uplink: { retry_histogram: Record<string, number>[]; tx_retry_cnt: number; link_flap_cnt: number };
    commit: { backlog_records: number; seq_gap: { count: number } };
  };
  const retries = packs.uplink.retry_histogram.reduce(
    (n, w) => n + w.publish_fail! + w.ack_timeout! + w.link_down!,
    0,
  );
  assert.ok(retries > 10, `retry_histogram shows ${retries} retries`);
  assert.ok(packs.uplink.retry_histogram.length >= 3, "retries spread over several hourly windows");
  assert.ok(packs.uplink.tx_retry_cnt > 0 && packs.uplink.link_flap_cnt === 1);
  assert.equal(packs.commit.seq_gap.count, 0);
  assert.ok(
    packs.commit.backlog_records < 12 * 3,
    `backlog ${packs.commit.backlog_records} after the link recovered`,
  );
  assert.ok(world.headEnd.duplicateDeliveries > 0, "lost acks led to resends, deduplicated");
});
