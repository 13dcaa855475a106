import assert from "node:assert/strict";
import { Journal, MemoryJournalStorage, type Rng } from "../../src/evidence/index.ts";

// One power-cut property run: several rounds of bursts of concurrent appends on in-memory storage, each
// round ended by a power cut at a random byte (or, sometimes, a clean close), then a reopen that must
// keep every acknowledged record, accept no torn one, duplicate nothing and open a new epoch.

export interface CutStats {
  cuts: number;
  acked: number;
}

export async function journalCutRun(rng: Rng, rounds: number, stats: CutStats): Promise<void> {
  const storage = new MemoryJournalStorage();
  const clock = { t: 0 };
  const options = {
    storage,
    clockMs: () => clock.t++,
    checkpointEveryCommits: 1 + rng.nextInt(6),
    segmentBytesMax: 256 + rng.nextInt(4096),
  };
  const attempted = new Map<number, Uint8Array>();
  const acked = new Map<number, Uint8Array>();
  let released = 0;
  let previousEpoch = 0;
  let cutLastRound = false;
  for (let round = 0; round <= rounds; round++) {
    const journal = await Journal.open(options);
    const recovery = journal.recovery;
    if (round > 0) {
      if (cutLastRound) {
        assert.equal(recovery.recovered, true, "a recovery after a cut must open a new epoch");
        assert.equal(journal.epoch, previousEpoch + 1);
      } else {
        assert.equal(journal.epoch, previousEpoch, "a clean restart keeps the epoch");
      }
    }
    previousEpoch = journal.epoch;
    const last = journal.lastCommitId();
    for (const id of [...attempted.keys()]) if (id > last) attempted.delete(id);
    const entries = await journal.readFrom(released + 1, Number.MAX_SAFE_INTEGER);
    let expectedId = released + 1;
    for (const entry of entries) {
      assert.equal(entry.commitId, expectedId, "commit_id continuous, no duplicate, no reorder");
      expectedId++;
      const sent = attempted.get(entry.commitId);
      assert.ok(
        sent !== undefined && Buffer.compare(sent, entry.payload) === 0,
        `record ${entry.commitId} torn or foreign`,
      );
    }
    assert.equal(expectedId - 1, last);
    for (const [id, payload] of acked) {
      if (id <= released) continue;
      assert.ok(id <= last, `acknowledged record ${id} lost (journal ends at ${last})`);
      assert.equal(Buffer.compare(entries[id - released - 1]!.payload, payload), 0);
    }
    if (round === rounds) {
      await journal.close();
      return;
    }
    assert.equal(journal.nextCommitId(), last + 1, "a commit_id is never reused");

    cutLastRound = rng.chance(0.85);
    if (cutLastRound) storage.failAfterBytes(rng.nextInt(6000));
    let failed = false;
    for (let burst = 0; burst < 1 + rng.nextInt(8) && !failed; burst++) {
      const pending: Promise<void>[] = [];
      if (rng.chance(0.3)) {
        // A grouped commit: all of them or none.
        const payloads = Array.from({ length: 1 + rng.nextInt(40) }, () =>
          rng.nextBytes(1 + rng.nextInt(120)),
        );
        const first = journal.nextCommitId();
        for (const [i, p] of payloads.entries()) attempted.set(first + i, p);
        pending.push(
          journal.appendMany(payloads).then(
            (result) => {
              assert.deepEqual(
                [result.firstCommitId, result.lastCommitId],
                [first, first + payloads.length - 1],
              );
              for (const [i, p] of payloads.entries()) acked.set(first + i, p);
              stats.acked += payloads.length;
            },
            () => {
              failed = true;
            },
          ),
        );
      }
      for (let i = 0; i < 1 + rng.nextInt(24); i++) {
        const payload = rng.nextBytes(1 + rng.nextInt(180));
        const id = journal.nextCommitId();
        attempted.set(id, payload);
        pending.push(
          journal.append(payload).then(
            (result) => {
              assert.equal(result.commitId, id);
              acked.set(id, payload);
              stats.acked++;
            },
            () => {
              failed = true;
            },
          ),
        );
      }
      await Promise.all(pending);
      if (!failed && rng.chance(0.2)) {
        const through = rng.nextInt(journal.lastCommitId() + 1);
        try {
          await journal.releaseThrough(through);
          released = Math.max(released, Math.min(through, journal.lastCommitId()));
        } catch {
          failed = true;
        }
      }
    }
    if (cutLastRound) {
      storage.powerCut(rng);
      stats.cuts++;
    } else if (failed) {
      throw new Error("a clean round failed");
    } else {
      await journal.close();
    }
  }
}
