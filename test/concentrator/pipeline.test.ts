import assert from "node:assert/strict";
import { test } from "node:test";
import { batchesTopic, statusTopic } from "../../src/concentrator/index.ts";
import { decodeBatch, encodeBundle, verifyBundleText } from "../../src/evidence/index.ts";
import { World } from "./harness.ts";

/** Every reading a meter produced in [firstSeq, newest] reached the head-end exactly once. */
function assertComplete(world: World, firstSeqOf: (meterId: string) => number): void {
  assert.deepEqual(world.headEnd.problems, []);
  assert.deepEqual(world.headEnd.chainProblems(), []);
  for (const meterId of world.meterIds) {
    const seqs = world.headEnd.seqsOf(meterId);
    const first = firstSeqOf(meterId);
    const newest = world.fleet.newestSeq(meterId);
    assert.ok(seqs.length > 0, `${meterId}: nothing stored`);
    // The first poll of a meter starts its axis; polls are spread over one interval, so it may be one later.
    assert.ok(
      seqs[0]! >= first && seqs[0]! <= first + 1,
      `${meterId}: first seq ${seqs[0]}, meter was at ${first}`,
    );
    assert.equal(seqs.length, seqs[seqs.length - 1]! - seqs[0]! + 1, `${meterId}: gap in ${seqs.join(",")}`);
    assert.ok(
      seqs[seqs.length - 1]! >= newest - 1,
      `${meterId}: stored through ${seqs.at(-1)}, meter at ${newest}`,
    );
  }
}

test("collect → commit → batch → uplink → ack: every reading stored once, journal released", async () => {
  const world = new World({ seed: "happy", meters: 12 });
  const dcu = await world.open();
  const firsts = new Map(world.meterIds.map((id) => [id, world.fleet.newestSeq(id)]));
  dcu.onLinkUp();
  await world.run(30 * 60_000, 5_000);
  dcu.flush();
  await world.run(60_000, 5_000);
  assertComplete(world, (id) => firsts.get(id)!);
  // Everything acknowledged was released; nothing is left but the newest unsealed readings.
  const packs = dcu.packs() as { commit: Record<string, number>; uplink: Record<string, unknown> };
  assert.ok(world.journal.releasedThrough() > 0);
  assert.ok(packs.commit.backlog_records! < 12 * 2, `backlog ${packs.commit.backlog_records}`);
  assert.equal(packs.commit.duplicate_dropped_cnt, 0);
  assert.equal((packs.commit as unknown as { seq_gap: { count: number } }).seq_gap.count, 0);
  // The status is retained; batches go with QoS 1.
  const status = world.transport.published.find((p) => p.topic === statusTopic("DCU-1"));
  assert.ok(status?.options.retain && status.options.qos === 1);
  assert.ok(
    world.transport.published
      .filter((p) => p.topic === batchesTopic("DCU-1"))
      .every((p) => p.options.qos === 1),
  );
});

test("commit_id in every record equals the journal's, and time_quality is frozen at commit", async () => {
  const world = new World({ seed: "commit-id", meters: 5 });
  const dcu = await world.open();
  await world.run(5 * 60_000, 10_000); // RTC_ONLY: no time source yet
  dcu.onTimeSample(world.clock.now + 20, "HES"); // small offset: slewed, SYNCED
  await world.run(4 * 60_000, 10_000); // less than TIME_SYNC_LOSS_AFTER_MS: still SYNCED
  dcu.flush();
  await world.run(10_000);
  dcu.onLinkUp();
  await world.run(30_000);
  const qualities = new Set<string>();
  for (const { topic, payload } of world.transport.published) {
    if (topic !== batchesTopic("DCU-1")) continue;
    const batch = decodeBatch(payload);
    for (const record of batch.records) qualities.add(record.timeQuality);
    // Commit ids are contiguous inside a batch: the journal assigned exactly the stamped ids.
    for (const [i, record] of batch.records.entries())
      assert.equal(record.commitId, batch.header.commitIdFirst + i);
  }
  assert.deepEqual([...qualities].sort(), ["RTC_ONLY", "SYNCED"]);
  const time = (dcu.packs() as { time: { time_quality_distribution: Record<string, number> } }).time;
  assert.ok(time.time_quality_distribution.RTC_ONLY! > 0 && time.time_quality_distribution.SYNCED! > 0);
  assert.deepEqual(world.headEnd.problems, []);
});

test("link down: batches wait (bounded), polling goes on, all is delivered after reconnect", async () => {
  const world = new World({ seed: "outage", meters: 8, config: { batchRecordsMax: 16 } });
  const dcu = await world.open();
  const firsts = new Map(world.meterIds.map((id) => [id, world.fleet.newestSeq(id)]));
  dcu.onLinkUp();
  await world.run(5 * 60_000, 5_000);
  world.transport.up = false;
  const delay = dcu.onLinkDown();
  assert.ok(delay >= 500 && delay <= 1_000, `first reconnect delay ${delay}`);
  await world.run(60 * 60_000, 10_000);
  const during = dcu.packs() as { uplink: Record<string, number>; commit: Record<string, number> };
  assert.ok(during.uplink.outbox_batches! > 0);
  assert.ok(during.commit.records_committed! > 8 * 60);
  world.transport.up = true;
  dcu.onLinkUp();
  dcu.flush();
  await world.run(5 * 60_000, 5_000);
  dcu.flush();
  await world.run(20_000, 5_000);
  assertComplete(world, (id) => firsts.get(id)!);
  const after = dcu.packs() as { uplink: Record<string, number> };
  assert.ok(after.uplink.link_flap_cnt === 1);
});

test("the unacknowledged batch chain exports as an evidence bundle that verifies", async () => {
  const world = new World({
    seed: "bundle",
    meters: 4,
    readingIntervalMs: 10_000,
    config: { batchRecordsMax: 5 },
  });
  const dcu = await world.open();
  await world.run(2 * 60_000); // link down: batches pile up in the outbox
  const bundle = dcu.evidenceBundle();
  assert.ok(bundle.batchChains[0]!.batches.length >= 3);
  const report = verifyBundleText(encodeBundle(bundle));
  assert.deepEqual(report.problems, []);
  assert.equal(report.valid, true);
  assert.equal(
    report.counts.readings,
    bundle.batchChains[0]!.batches.reduce((n, b) => n + b.records.length, 0),
  );
});

test("flush seals what is committed now, and only that: later batches fill up again", async () => {
  const world = new World({
    seed: "flush",
    meters: 10,
    readingIntervalMs: 10_000,
    config: { batchRecordsMax: 40, batchAgeMaxMs: 3_600_000 },
  });
  const dcu = await world.open();
  dcu.onLinkUp();
  await world.run(30_000);
  for (const meterId of world.meterIds) world.fleet.setOffline(meterId, true);
  dcu.flush();
  await world.run(20_000);
  const sealedAtFlush = world.headEnd.batches.size;
  assert.ok(sealedAtFlush >= 1);
  dcu.flush(); // nothing committed since: must not leave a flush pending
  for (const meterId of world.meterIds) world.fleet.setOffline(meterId, false);
  await world.run(5 * 60_000, 5_000);
  const later = [...world.headEnd.batches.values()].slice(sealedAtFlush);
  assert.ok(later.length >= 5);
  assert.ok(
    later.every((b) => b.records.length === 40),
    later.map((b) => b.records.length).join(","),
  );
});
