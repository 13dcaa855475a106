import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { FsJournalStorage, Journal, SeededRandom } from "../../src/evidence/index.ts";
import { journalCutRun, newCutStats } from "./journal-harness.ts";

// `npm run test:crash`: ≥ 10,000 simulated power cuts on MemoryJournalStorage, then real SIGKILLs of a
// process writing to the filesystem.

const CUT_POINTS_MIN = Number(process.env.AMIPROOF_JOURNAL_CUTS ?? 10_000);
const KILLS = Number(process.env.AMIPROOF_JOURNAL_KILLS ?? 20);

test(`Journal survives ${CUT_POINTS_MIN} random power-cut points`, async () => {
  const stats = newCutStats();
  for (let seed = 1; stats.cuts < CUT_POINTS_MIN; seed++) {
    try {
      await journalCutRun(new SeededRandom(seed), 7, stats);
    } catch (error) {
      throw new Error(`seed ${seed}: ${(error as Error).message}`);
    }
  }
  process.stdout.write(`Journal cut points: ${stats.cuts}\n`);
  process.stdout.write(
    `Journal recoveries checked: ${stats.recoveries}, cuts during recovery: ${stats.cutsDuringRecovery}, acknowledged records checked: ${stats.acked}\n`,
  );
  assert.ok(stats.cuts >= CUT_POINTS_MIN);
});

test(`Journal keeps every acknowledged record through ${KILLS} SIGKILLs of a real writer`, async () => {
  const dir = mkdtempSync(join(tmpdir(), "amiproof-journal-kill-"));
  const acked = new Map<number, number>(); // commit_id → epoch it was acknowledged in
  const rng = new SeededRandom(42);
  let epoch = 0;
  for (let kill = 0; kill < KILLS; kill++) {
    const child = spawn(process.execPath, [
      "--import",
      "tsx",
      join(import.meta.dirname, "../fixtures/journal-writer.ts"),
      dir,
      kill % 2 === 0 ? "dsync" : "fdatasync",
    ]);
    let buffered = "";
    let started = false;
    await new Promise<void>((resolve) => {
      child.stdout.on("data", (chunk: Buffer) => {
        buffered += chunk.toString();
        const lines = buffered.split("\n");
        buffered = lines.pop()!;
        for (const line of lines) {
          const [word, a, b] = line.split(" ");
          if (word === "ack") {
            assert.equal(Number(b), epoch, "acknowledged in the epoch the writer opened");
            acked.set(Number(a), Number(b));
          } else if (word === "epoch") {
            const seen = Number(a);
            assert.ok(
              seen === epoch + 1,
              `epoch ${seen} after ${epoch}: every restart after a kill opens the next epoch`,
            );
            epoch = seen;
            started = true;
            setTimeout(() => child.kill("SIGKILL"), 20 + rng.nextInt(200));
          }
        }
      });
      child.on("exit", () => resolve());
    });
    assert.ok(started, "writer did not start");
  }
  const journal = await Journal.open({
    storage: await FsJournalStorage.open(dir),
    clockMs: () => performance.now(),
  });
  assert.equal(journal.recovery.recovered, true);
  assert.equal(journal.epoch, epoch + 1);
  const entries = await journal.readFrom(1, Number.MAX_SAFE_INTEGER);
  let epochAlong = 0;
  for (const [i, entry] of entries.entries()) {
    assert.equal(entry.commitId, i + 1, "no gap, no duplicate");
    assert.ok(entry.epoch >= epochAlong, "commit_id strictly increasing, epochs never decreasing");
    epochAlong = entry.epoch;
  }
  for (const [id, ackedEpoch] of acked) {
    assert.ok(id <= journal.lastCommitId(), `acknowledged ${id} lost`);
    const entry = entries[id - 1]!;
    assert.equal(new TextDecoder().decode(entry.payload), `record-${id}`);
    assert.equal(entry.epoch, ackedEpoch);
  }
  process.stdout.write(
    `Journal kills: ${KILLS}, acknowledged records: ${acked.size}, all present; ${entries.length} records in ${epoch + 1} epochs\n`,
  );
  await journal.close();
});
