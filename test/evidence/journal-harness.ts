import assert from "node:assert/strict";
import { isEvidenceError, Journal, MemoryJournalStorage, type Rng } from "../../src/evidence/index.ts";

// One power-cut property run: rounds of bursts of concurrent appends (single and grouped) and releases on
// in-memory storage, each round ended by a power cut at a random byte or datasync (or, sometimes, a clean
// close); sometimes the power dies again during the recovery itself. After every open the invariants of
// seed 003 H2-4/H2-5 are checked against what the writer was told:
// - no acknowledged record lost, and each one reads back with the epoch it was acknowledged in;
// - no torn record accepted: every record read is byte-identical to one that was appended with that id;
// - no duplicate: commit_ids are contiguous from the ack floor, every payload (unique by construction) once;
// - commit_id strictly increasing, epochs never decreasing along the journal;
// - every recovery after a cut opens a new epoch, and a clean close keeps it.

export interface CutStats {
  cuts: number;
  acked: number;
  recoveries: number;
  cutsDuringRecovery: number;
}

export function newCutStats(): CutStats {
  return { cuts: 0, acked: 0, recoveries: 0, cutsDuringRecovery: 0 };
}

export async function journalCutRun(rng: Rng, rounds: number, stats: CutStats): Promise<void> {
  const storage = new MemoryJournalStorage();
  const clock = { t: 0 };
  const options = {
    storage,
    clockMs: () => clock.t++,
    checkpointEveryCommits: 1 + rng.nextInt(6),
    checkpointEveryBytes: rng.chance(0.5) ? 128 + rng.nextInt(2048) : undefined,
    segmentBytesMax: 256 + rng.nextInt(4096),
  };
  /** commit_id → payload appended under it since it last became durable-or-dropped. */
  const attempted = new Map<number, Uint8Array>();
  /** commit_id → payload and epoch of every acknowledged record. */
  const acked = new Map<number, { payload: Uint8Array; epoch: number }>();
  let released = 0; // ack floor the journal confirmed
  let releaseTried = 0; // highest floor a release was attempted for (a failed one may have persisted)
  let previousEpoch = 0;
  let cutLastRound = false;
  let unique = 0;
  const payload = (bytes: number): Uint8Array => {
    // A unique 4-byte prefix makes any duplicate visible; the rest is random.
    const out = rng.nextBytes(Math.max(4, bytes));
    new DataView(out.buffer).setUint32(0, unique++);
    return out;
  };

  for (let round = 0; round <= rounds; round++) {
    let journal: Journal;
    let cutInRecovery = false;
    for (;;) {
      if (cutLastRound && rng.chance(0.1)) storage.failAfterBytes(rng.nextInt(80));
      try {
        journal = await Journal.open(options);
        storage.cancelFailure();
        break;
      } catch (error) {
        assert.ok(isEvidenceError(error, "POWER_LOST"), `recovery failed: ${String(error)}`);
        storage.powerCut(rng);
        cutInRecovery = true;
        stats.cutsDuringRecovery++;
      }
    }
    const recovery = journal.recovery;
    if (round > 0) {
      if (cutLastRound) {
        stats.recoveries++;
        assert.equal(recovery.recovered, true, "a recovery after a cut must open a new epoch");
        if (cutInRecovery) assert.ok(journal.epoch > previousEpoch, "epoch grows after a cut in recovery");
        else assert.equal(journal.epoch, previousEpoch + 1, "one new epoch per recovery");
      } else {
        assert.equal(recovery.recovered, false, "a clean close is not a recovery");
        assert.equal(journal.epoch, previousEpoch, "a clean restart keeps the epoch");
      }
    }
    previousEpoch = journal.epoch;
    const last = journal.lastCommitId();
    const floor = journal.releasedThrough();
    assert.ok(floor >= released && floor <= Math.max(released, releaseTried), `ack floor ${floor}`);
    released = floor;
    for (const id of [...attempted.keys()]) if (id > last) attempted.delete(id);

    const entries = await journal.readFrom(released + 1, Number.MAX_SAFE_INTEGER);
    let expectedId = released + 1;
    let epochAlong = 0;
    const seen = new Set<number>();
    for (const entry of entries) {
      assert.equal(entry.commitId, expectedId, "commit_id contiguous: no gap, no duplicate, no reorder");
      expectedId++;
      assert.ok(entry.epoch >= epochAlong && entry.epoch <= journal.epoch, "epochs never decrease");
      epochAlong = entry.epoch;
      const sent = attempted.get(entry.commitId);
      assert.ok(
        sent !== undefined && Buffer.compare(sent, entry.payload) === 0,
        `record ${entry.commitId} torn or foreign`,
      );
      const tag = new DataView(entry.payload.buffer, entry.payload.byteOffset).getUint32(0);
      assert.ok(!seen.has(tag), `payload ${tag} stored twice`);
      seen.add(tag);
    }
    assert.equal(expectedId - 1, last, "readFrom reaches the last durable commit_id");
    for (const [id, record] of acked) {
      if (id <= released) continue;
      assert.ok(id <= last, `acknowledged record ${id} lost (journal ends at ${last})`);
      const entry = entries[id - released - 1]!;
      assert.equal(Buffer.compare(entry.payload, record.payload), 0, `acknowledged record ${id} changed`);
      assert.equal(entry.epoch, record.epoch, `acknowledged record ${id} changed epoch`);
    }
    const metrics = journal.metrics();
    assert.equal(metrics.write_ptr, metrics.commit_ptr, "after open nothing is in flight");
    if (round === rounds) {
      await journal.close();
      return;
    }
    assert.equal(journal.nextCommitId(), last + 1, "ids continue after the last durable one");

    cutLastRound = rng.chance(0.85);
    if (cutLastRound) {
      if (rng.chance(0.8)) storage.failAfterBytes(rng.nextInt(6000));
      else storage.failAfterDatasyncs(rng.nextInt(12));
    }
    let failed = false;
    const onFailure = (error: unknown) => {
      assert.ok(isEvidenceError(error), String(error));
      failed = true;
    };
    for (let burst = 0; burst < 1 + rng.nextInt(8) && !failed; burst++) {
      const pending: Promise<void>[] = [];
      if (rng.chance(0.3)) {
        // A grouped commit: all of them or none.
        const payloads = Array.from({ length: 1 + rng.nextInt(40) }, () => payload(1 + rng.nextInt(120)));
        const first = journal.nextCommitId();
        for (const [i, p] of payloads.entries()) attempted.set(first + i, p);
        pending.push(
          journal.appendMany(payloads).then((result) => {
            assert.deepEqual(
              [result.firstCommitId, result.lastCommitId],
              [first, first + payloads.length - 1],
            );
            for (const [i, p] of payloads.entries())
              acked.set(first + i, { payload: p, epoch: result.epoch });
            stats.acked += payloads.length;
          }, onFailure),
        );
      }
      for (let i = 0; i < 1 + rng.nextInt(24); i++) {
        const p = payload(1 + rng.nextInt(180));
        const id = journal.nextCommitId();
        attempted.set(id, p);
        pending.push(
          journal.append(p).then((result) => {
            assert.equal(result.commitId, id);
            assert.ok(id <= journal.lastCommitId(), "acknowledged only once durable");
            acked.set(id, { payload: p, epoch: result.epoch });
            stats.acked++;
          }, onFailure),
        );
      }
      await Promise.all(pending);
      if (!failed && rng.chance(0.25)) {
        const through = rng.nextInt(journal.lastCommitId() + 1);
        releaseTried = Math.max(releaseTried, Math.min(through, journal.lastCommitId()));
        try {
          await journal.releaseThrough(through);
          released = Math.max(released, Math.min(through, journal.lastCommitId()));
        } catch (error) {
          onFailure(error);
        }
      }
    }
    if (cutLastRound) {
      storage.powerCut(rng);
      stats.cuts++;
    } else {
      assert.equal(failed, false, "a round without a cut fails nothing");
      await journal.close();
    }
  }
}
