import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { FsJournalStorage, Journal, SeededRandom } from "../../src/evidence/index.ts";
import { type CutStats, journalCutRun } from "./journal-harness.ts";

// `npm run test:crash`: ≥ 10,000 simulated power cuts, then real SIGKILLs of a writing process.

const CUT_POINTS_MIN = Number(process.env.AMIPROOF_JOURNAL_CUTS ?? 10_000);
const KILLS = Number(process.env.AMIPROOF_JOURNAL_KILLS ?? 20);

test(`Journal survives ${CUT_POINTS_MIN} random power-cut points`, async () => {
  const stats: CutStats = { cuts: 0, acked: 0 };
  for (let seed = 1; stats.cuts < CUT_POINTS_MIN; seed++) {
    try {
      await journalCutRun(new SeededRandom(seed), 7, stats);
    } catch (error) {
      throw new Error(`seed ${seed}: ${(error as Error).message}`);
    }
  }
  process.stdout.write(`Journal cut points: ${stats.cuts} (acknowledged records checked: ${stats.acked})\n`);
});

test(`Journal keeps every acknowledged record through ${KILLS} SIGKILLs of a real writer`, async () => {
  const dir = mkdtempSync(join(tmpdir(), "amiproof-journal-kill-"));
  const acked = new Set<number>();
  const rng = new SeededRandom(42);
  let epoch = 0;
  for (let kill = 0; kill < KILLS; kill++) {
    const child = spawn(process.execPath, [
      "--import",
      "tsx",
      join(import.meta.dirname, "../fixtures/journal-writer.ts"),
      dir,
    ]);
    let buffered = "";
    let started = false;
    await new Promise<void>((resolve) => {
      child.stdout.on("data", (chunk: Buffer) => {
        buffered += chunk.toString();
        const lines = buffered.split("\n");
        buffered = lines.pop()!;
        for (const line of lines) {
          if (line.startsWith("ack ")) acked.add(Number(line.slice(4)));
          else if (line.startsWith("epoch ")) {
            const seen = Number(line.split(" ")[1]);
            assert.ok(
              seen > epoch,
              `epoch ${seen} after ${epoch}: every restart after a kill opens a new epoch`,
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
  const entries = await journal.readFrom(1, Number.MAX_SAFE_INTEGER);
  const ids = entries.map((e) => e.commitId);
  for (const [i, id] of ids.entries()) assert.equal(id, i + 1, "no gap, no duplicate");
  for (const id of acked) {
    assert.ok(id <= journal.lastCommitId(), `acknowledged ${id} lost`);
    assert.equal(new TextDecoder().decode(entries[id - 1]!.payload), `record-${id}`);
  }
  process.stdout.write(`Journal kills: ${KILLS}, acknowledged records: ${acked.size}, all present\n`);
  await journal.close();
});
