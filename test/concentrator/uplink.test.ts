import assert from "node:assert/strict";
import { test } from "node:test";
import {
  ALERT_QUEUE_MAX,
  acksTopic,
  alertsTopic,
  batchesTopic,
  encodeAck,
  UPLINK_BACKOFF,
  UplinkMachine,
} from "../../src/concentrator/index.ts";
import { SeededRandom } from "../../src/evidence/index.ts";
import { committedProblems, World } from "./harness.ts";

function machine(inflight = 2): UplinkMachine {
  const uplink = new UplinkMachine(new SeededRandom("uplink"), UPLINK_BACKOFF, inflight, 10_000);
  for (let id = 1; id <= 5; id++) {
    uplink.add({
      batchId: id,
      commitIdFirst: id * 10,
      commitIdLast: id * 10 + 9,
      count: 10,
      bytes: new Uint8Array([id]),
      batchHash: new Uint8Array(32),
    });
  }
  return uplink;
}

test("in-flight window: at most N batches out; nothing goes out while the link is down", () => {
  const uplink = machine(2);
  assert.equal(uplink.nextBatch(0), null, "link down");
  uplink.onLinkUp();
  assert.equal(uplink.nextBatch(0)?.batchId, 1);
  assert.equal(uplink.nextBatch(0)?.batchId, 2);
  assert.equal(uplink.nextBatch(0), null, "window full");
  uplink.onBatchPublished(1, 0);
  assert.equal(uplink.nextBatch(0), null, "published but unacked still counts");
  uplink.onAck(
    { dcuId: "D", accepted: [{ batchId: 1, commitIdFirst: 10, commitIdLast: 19 }], rejected: [] },
    1,
  );
  assert.equal(uplink.nextBatch(1)?.batchId, 3);
});

test("acks: exact range releases, a wrong range or unknown id is ignored and counted, repeats are stale", () => {
  const uplink = machine(5);
  uplink.onLinkUp();
  for (let i = 0; i < 5; i++) uplink.nextBatch(0);
  const outcome = uplink.onAck(
    {
      dcuId: "D",
      accepted: [
        { batchId: 2, commitIdFirst: 20, commitIdLast: 29 },
        { batchId: 1, commitIdFirst: 10, commitIdLast: 18 }, // wrong range
        { batchId: 9, commitIdFirst: 90, commitIdLast: 99 }, // never sealed
      ],
      rejected: [],
    },
    0,
  );
  assert.deepEqual(outcome.acked, [2]);
  assert.equal(outcome.mismatched.length, 2);
  assert.deepEqual(uplink.releasablePrefix(), [], "batch 1 is not acked: nothing may be released yet");
  uplink.onAck(
    { dcuId: "D", accepted: [{ batchId: 1, commitIdFirst: 10, commitIdLast: 19 }], rejected: [] },
    0,
  );
  assert.deepEqual(
    uplink.releasablePrefix().map((b) => b.batchId),
    [1, 2],
  );
  uplink.dropThrough(2);
  const again = uplink.onAck(
    { dcuId: "D", accepted: [{ batchId: 2, commitIdFirst: 20, commitIdLast: 29 }], rejected: [] },
    0,
  );
  assert.equal(again.stale, 1);
  assert.equal(uplink.counters.ackMismatch, 2);
});

test("a rejected batch is kept and retried with back-off; the reason is counted", () => {
  const uplink = machine(5);
  uplink.onLinkUp();
  uplink.nextBatch(0);
  uplink.onBatchPublished(1, 0);
  uplink.onAck({ dcuId: "D", accepted: [], rejected: [{ batchId: 1, reason: "CHAIN_BREAK" }] }, 100);
  assert.deepEqual(uplink.counters.rejectedByReason, { CHAIN_BREAK: 1 });
  const batch = uplink.batches()[0]!;
  assert.equal(batch.state, "SEALED");
  assert.ok(
    batch.notBeforeMs >= 100 + UPLINK_BACKOFF.baseMs / 2 && batch.notBeforeMs <= 100 + UPLINK_BACKOFF.baseMs,
  );
  assert.equal(uplink.nextBatch(100)?.batchId, 2, "batch 1 waits its back-off, the next goes");
  assert.equal(uplink.nextBatch(batch.notBeforeMs)?.batchId, 1);
  assert.equal(uplink.retryHistogram()[0]?.byCause.rejected, 1);
});

test("no ack within the timeout: resent with growing back-off, each retry lands in the histogram window", () => {
  const uplink = machine(1);
  uplink.onLinkUp();
  let now = 0;
  const waits: number[] = [];
  for (let attempt = 1; attempt <= 8; attempt++) {
    const batch = uplink.nextBatch(now);
    assert.equal(batch?.batchId, 1);
    uplink.onBatchPublished(1, now);
    now += 10_000;
    uplink.checkAckTimeouts(now);
    waits.push(uplink.batches()[0]!.notBeforeMs - now);
    now = uplink.batches()[0]!.notBeforeMs;
  }
  assert.ok(waits.every((w, i) => w <= Math.min(UPLINK_BACKOFF.maxMs, UPLINK_BACKOFF.baseMs * 2 ** i)));
  assert.ok(waits.at(-1)! >= UPLINK_BACKOFF.maxMs / 2);
  const total = uplink.retryHistogram().reduce((n, w) => n + w.byCause.ack_timeout, 0);
  assert.equal(total, 8);
  assert.equal(uplink.counters.batchRetries, 7);
});

test("link drop puts in-flight batches back; they are resent first after reconnect", () => {
  const uplink = machine(3);
  uplink.onLinkUp();
  uplink.nextBatch(0);
  uplink.nextBatch(0);
  uplink.onBatchPublished(1, 0);
  uplink.onLinkDown(5);
  assert.equal(uplink.counters.linkFlaps, 1);
  assert.ok(uplink.batches().every((b) => b.state === "SEALED"));
  uplink.onLinkUp();
  assert.equal(uplink.nextBatch(6)?.batchId, 1);
  assert.equal(uplink.retryHistogram()[0]?.byCause.link_down, 2);
});

test("tamper alerts go out ahead of billing batches", async () => {
  const world = new World({
    seed: "alerts",
    meters: 3,
    readingIntervalMs: 10_000,
    config: { batchRecordsMax: 2 },
  });
  const dcu = await world.open();
  await world.run(60_000); // readings committed and sealed while the link is down
  world.fleet.raiseEvent(world.meterIds[1]!, "MAG_TAMPER", "CRITICAL", { field_mt: 62 });
  world.fleet.raiseEvent(world.meterIds[1]!, "COVER_OPEN", "MAJOR");
  dcu.onMeterEventHint(world.meterIds[1]!);
  await dcu.idle();
  dcu.onLinkUp();
  await dcu.idle();
  const topics = world.transport.published.map((p) => p.topic).filter((t) => t !== `ami/DCU-1/status`);
  assert.equal(topics[0], alertsTopic("DCU-1"));
  assert.equal(topics[1], alertsTopic("DCU-1"));
  assert.ok(topics.slice(2).every((t) => t === batchesTopic("DCU-1")));
  assert.deepEqual(
    world.headEnd.alerts.map((a) => `${a.seq}:${a.type}`),
    ["1:MAG_TAMPER", "2:COVER_OPEN"],
  );
  await world.run(30_000);
  const packs = dcu.packs() as {
    uplink: Record<string, unknown>;
    interface: { poll_marker: Record<string, { event_seq_forwarded: number }> };
  };
  assert.equal(packs.uplink.alerts_forwarded, 2);
  assert.equal(packs.interface.poll_marker[world.meterIds[1]!]?.event_seq_forwarded, 2);
});

test("alerts are at least once across a crash, and each (meter_id, seq) is one alert at the head-end", async () => {
  const world = new World({ seed: "alerts-crash", meters: 2, readingIntervalMs: 10_000 });
  let dcu = await world.open();
  dcu.onLinkUp();
  for (let i = 1; i <= 5; i++) world.fleet.raiseEvent(world.meterIds[0]!, "NEUTRAL_MISS", "MAJOR", { n: i });
  dcu.onMeterEventHint(world.meterIds[0]!);
  await dcu.idle(); // forwarded, but the event cursor is saved only periodically
  dcu = await world.crashAndRestart();
  dcu.onLinkUp();
  await world.run(40_000);
  const sent = world.transport.published.filter((p) => p.topic === alertsTopic("DCU-1")).length;
  assert.ok(sent >= 10, `alerts resent after the crash (${sent})`);
  assert.equal(world.headEnd.alerts.length, 5);
  await world.run(20_000);
  const before = world.transport.published.length;
  dcu = await world.crashAndRestart();
  dcu.onLinkUp();
  await world.run(20_000);
  const again = world.transport.published
    .slice(before)
    .filter((p) => p.topic === alertsTopic("DCU-1")).length;
  assert.equal(again, 0, "the saved event cursor stops resends once it was persisted");
});

test("the alert lane is bounded: events beyond the bound wait on the meter and are read later", async () => {
  const world = new World({ seed: "alert-bound", meters: 1, readingIntervalMs: 10_000 });
  const dcu = await world.open();
  const meterId = world.meterIds[0]!;
  for (let i = 0; i < ALERT_QUEUE_MAX + 40; i++) world.fleet.raiseEvent(meterId, "TILT", "MINOR");
  for (let i = 0; i < 40; i++) {
    dcu.onMeterEventHint(meterId);
    await dcu.idle();
  }
  assert.equal(dcu.uplink.alertsPending(), ALERT_QUEUE_MAX);
  assert.ok(dcu.uplink.counters.alertDeferred > 0);
  dcu.onLinkUp();
  await world.run(60_000);
  assert.equal(world.headEnd.alerts.length, ALERT_QUEUE_MAX + 40);
  assert.deepEqual(committedProblems(world), []);
});

test("bad acks are counted and change nothing", async () => {
  const world = new World({ seed: "bad-ack", meters: 2, readingIntervalMs: 10_000 });
  const dcu = await world.open();
  dcu.onMessage(acksTopic("DCU-1"), new TextEncoder().encode("{not json"));
  dcu.onMessage(acksTopic("DCU-1"), encodeAck({ dcuId: "OTHER", accepted: [], rejected: [] }));
  dcu.onMessage(
    acksTopic("DCU-1"),
    new TextEncoder().encode(JSON.stringify({ dcu_id: "DCU-1", accepted: [{ batch_id: -1 }] })),
  );
  assert.equal(dcu.uplink.counters.ackBad, 3);
});
