// A clean stop hands the journal back to the shell, which closes it: nothing may start on it afterwards
// (a late ack used to start a release on the closed journal: JOURNAL_CLOSED, a fatal exit on SIGTERM).
import assert from "node:assert/strict";
import { test } from "node:test";
import { acksTopic, encodeAck } from "../../src/concentrator/index.ts";
import { committedProblems, World } from "./harness.ts";

test("after close(), a late ack starts no release on the journal; the batch stays for the next start", async () => {
  const world = new World({ seed: "late-ack", meters: 3, readingIntervalMs: 10_000 });
  const dcu = await world.open();
  world.headEnd.acking = false; // batches go out, acks are held back
  dcu.onLinkUp();
  await world.run(60_000);
  dcu.flush();
  await world.run(5_000);
  const batch = [...world.headEnd.batches.values()].at(-1);
  assert.ok(batch !== undefined, "a batch was published");
  await dcu.close();
  const released = world.journal.releasedThrough();
  const outbox = (await world.store.loadOutbox()).length;
  dcu.onMessage(
    acksTopic("DCU-1"),
    encodeAck({
      dcuId: "DCU-1",
      accepted: [...world.headEnd.batches.values()].map((b) => ({
        batchId: b.header.batchId,
        commitIdFirst: b.header.commitIdFirst,
        commitIdLast: b.header.commitIdLast,
      })),
      rejected: [],
    }),
  );
  await dcu.idle();
  assert.equal(world.journal.releasedThrough(), released, "no release after close");
  assert.equal((await world.store.loadOutbox()).length, outbox, "the batch stays in the outbox");
  // The next start resends it; the head-end acks the repeat and everything is released.
  world.headEnd.acking = true;
  const next = await world.open("CLEAN_RESTART");
  next.onLinkUp();
  await world.run(30_000);
  assert.ok(world.journal.releasedThrough() >= batch.header.commitIdLast);
  assert.deepEqual(committedProblems(world), []);
});
