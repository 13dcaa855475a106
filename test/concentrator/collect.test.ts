import assert from "node:assert/strict";
import { test } from "node:test";
import { BACKFILL_RECORDS_MAX } from "../../src/concentrator/index.ts";
import { committedProblems, World } from "./harness.ts";

interface Packs {
  interface: {
    iface_err_by_meter: Record<string, Record<string, number>>;
    port_err_cnt: Record<string, number>;
    frame_crc_fail: number;
    poll_marker: Record<string, { polls: number; ok: number; online: boolean }>;
    meters_online: number;
    poll_deferred_cnt: number;
  };
  commit: {
    seq_gap: {
      count: number;
      records_missing: number;
      recent: { meter_id: string; seq_first: number; seq_last: number; cause: string }[];
    };
    commit_id_gap: { count: number; recent: { cause: string; commit_id_first: number }[] };
    duplicate_dropped_cnt: number;
    record_crc_fail_cnt: number;
    failing_samples: unknown[];
    backlog_records: number;
  };
}

test("a missed poll is backfilled from the meter's profile: no SEQ_GAP when the meter still holds it", async () => {
  const world = new World({ seed: "backfill", meters: 3, readingIntervalMs: 10_000 });
  const dcu = await world.open();
  dcu.onLinkUp();
  await world.run(60_000);
  const meterId = world.meterIds[0]!;
  world.fleet.setOffline(meterId, true);
  await world.run(120_000);
  world.fleet.setOffline(meterId, false);
  await world.run(60_000);
  dcu.flush();
  await world.run(20_000);
  const packs = dcu.packs() as unknown as Packs;
  assert.equal(packs.commit.seq_gap.count, 0);
  assert.ok(packs.interface.iface_err_by_meter[meterId]!.timeout! >= 10);
  assert.equal(packs.interface.iface_err_by_meter[world.meterIds[1]!], undefined, "errors bucketed by meter");
  assert.deepEqual(committedProblems(world), []);
  const seqs = world.headEnd.seqsOf(meterId);
  assert.ok(seqs.length >= 20);
});

test("SEQ_GAP attribution: readings the meter never captured are NOT_COLLECTED, malformed ones REJECTED", async () => {
  const world = new World({ seed: "gaps", meters: 2, readingIntervalMs: 10_000 });
  const dcu = await world.open();
  dcu.onLinkUp();
  await world.run(30_000);
  const [a, b] = world.meterIds as [string, string];
  const now = world.fleet.newestSeq(a);
  const badSeq = world.fleet.newestSeq(b) + 2;
  // Meter a misses two captures while its bus is down; meter b reports one malformed reading.
  world.fleet.loseReadings(a, [now + 2, now + 3]);
  world.fleet.malformReadings(b, [badSeq]);
  world.fleet.setOffline(a, true);
  await world.run(35_000);
  world.fleet.setOffline(a, false);
  await world.run(60_000);
  dcu.flush();
  await world.run(20_000);
  const packs = dcu.packs() as unknown as Packs;
  const gaps = packs.commit.seq_gap.recent.map(
    (g) => `${g.meter_id}:${g.seq_first}-${g.seq_last}:${g.cause}`,
  );
  assert.deepEqual(
    gaps.sort(),
    [`${a}:${now + 2}-${now + 3}:NOT_COLLECTED`, `${b}:${badSeq}-${badSeq}:REJECTED`].sort(),
  );
  assert.equal(packs.commit.seq_gap.records_missing, 3);
  assert.ok(
    packs.interface.iface_err_by_meter[b]!.bad_reading! >= 1,
    "each sighting of the bad reading is counted",
  );
  // The commit axis stayed continuous: SEQ gap + COMMIT continuous = capture side (seed 003 H2-4).
  assert.equal(packs.commit.commit_id_gap.count, 0);
  assert.deepEqual(committedProblems(world), []);
});

test("a meter far behind is caught up in bounded chunks, nothing skipped", async () => {
  const world = new World({ seed: "catch-up", meters: 1, readingIntervalMs: 1_000 });
  const dcu = await world.open();
  const meterId = world.meterIds[0]!;
  dcu.onLinkUp();
  await world.run(5_000);
  world.fleet.setOffline(meterId, true);
  await world.run(3 * BACKFILL_RECORDS_MAX * 1_000, 60_000);
  world.fleet.setOffline(meterId, false);
  await world.run(5_000);
  dcu.flush();
  await world.run(10_000);
  const seqs = world.headEnd.seqsOf(meterId);
  assert.ok(seqs.length > 3 * BACKFILL_RECORDS_MAX, `${seqs.length} stored`);
  assert.deepEqual(committedProblems(world), []);
  assert.equal((dcu.packs() as unknown as Packs).commit.seq_gap.count, 0);
});

test("duplicates (a meter answering with an old seq) are dropped and counted", async () => {
  const world = new World({
    seed: "dups",
    meters: 1,
    readingIntervalMs: 60_000,
    config: { pollIntervalMs: 10_000 },
  });
  const dcu = await world.open();
  dcu.onLinkUp();
  await world.run(120_000);
  const packs = dcu.packs() as unknown as Packs;
  assert.ok(packs.commit.duplicate_dropped_cnt >= 8, `${packs.commit.duplicate_dropped_cnt}`);
  assert.deepEqual(committedProblems(world), []);
});

test("interface errors land in per-meter and per-port buckets; frame CRC failures are counted apart", async () => {
  const world = new World({
    seed: "iface",
    meters: 8,
    readingIntervalMs: 10_000,
    faults: { timeoutRate: 0.1, frameCrcRate: 0.1 },
  });
  const dcu = await world.open();
  dcu.onLinkUp();
  await world.run(10 * 60_000, 5_000);
  dcu.flush();
  await world.run(30_000);
  const packs = dcu.packs() as unknown as Packs;
  const byMeter = Object.values(packs.interface.iface_err_by_meter);
  const crc = byMeter.reduce((n, b) => n + b.frame_crc!, 0);
  const timeouts = byMeter.reduce((n, b) => n + b.timeout!, 0);
  assert.ok(crc > 0 && timeouts > 0);
  assert.equal(packs.interface.frame_crc_fail, crc);
  const ports = Object.values(packs.interface.port_err_cnt).reduce((n, v) => n + v, 0);
  assert.equal(
    ports,
    byMeter.reduce((n, b) => n + Object.values(b).reduce((m, v) => m + v, 0), 0),
  );
  assert.equal(packs.interface.meters_online, 8);
  assert.deepEqual(committedProblems(world), []);
});

test("backpressure: unacknowledged backlog slows polling, then pauses it; nothing is dropped", async () => {
  const world = new World({
    seed: "backpressure",
    meters: 4,
    readingIntervalMs: 1_000,
    config: { backlogSoftRecords: 200, backlogHardRecords: 400, batchRecordsMax: 50 },
  });
  const dcu = await world.open();
  dcu.onLinkUp();
  world.headEnd.acking = false;
  await world.run(20 * 60_000, 5_000);
  const packs = dcu.packs() as unknown as Packs;
  assert.ok(packs.interface.poll_deferred_cnt > 0, "polling paused at the hard bound");
  assert.ok(packs.commit.backlog_records >= 400 && packs.commit.backlog_records < 400 + 4 * 40);
  const polls = Object.values(packs.interface.poll_marker).reduce((n, m) => n + m.polls, 0);
  assert.ok(polls < 4 * 20 * 60, `${polls} polls: slowed down`);
  world.headEnd.acking = true;
  dcu.onLinkDown();
  dcu.onLinkUp(); // reconnect: everything unacked is resent and now acked
  for (let i = 0; i < 10; i++) {
    dcu.flush();
    await world.run(60_000, 2_000);
  }
  assert.deepEqual(committedProblems(world), []);
  const after = dcu.packs() as unknown as Packs;
  assert.equal(after.commit.seq_gap.count, 0, "the meters' profiles covered the pause");
  assert.ok(after.commit.backlog_records < 100);
});

test("a committed record that fails its CRC is never sent; it is kept as a failing sample and a COMMIT_GAP", async () => {
  const world = new World({
    seed: "rot",
    meters: 2,
    readingIntervalMs: 10_000,
    config: { batchAgeMaxMs: 600_000 },
  });
  const dcu = await world.open();
  await world.run(60_000);
  world.journal.corruptOnRead.add(3);
  dcu.flush();
  dcu.onLinkUp();
  await world.run(30_000);
  const packs = dcu.packs() as unknown as Packs;
  assert.equal(packs.commit.record_crc_fail_cnt, 1);
  assert.equal(packs.commit.failing_samples.length, 1);
  assert.deepEqual(
    packs.commit.commit_id_gap.recent.map((g) => `${g.commit_id_first}:${g.cause}`),
    ["3:RECORD_CRC_FAIL"],
  );
  assert.deepEqual(world.headEnd.problems, []);
  assert.ok(![...world.headEnd.readings.values()].some((r) => r.commitId === 3));
  assert.ok([...world.headEnd.readings.values()].some((r) => r.commitId === 4));
});
