import assert from "node:assert/strict";
import { mkdtempSync, readdirSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import fc from "fast-check";
import { FsJournalStorage, Journal, MemoryJournalStorage, SeededRandom } from "../../src/evidence/index.ts";
import { type CutStats, journalCutRun } from "./journal-harness.ts";

const clock = () => performance.now();
const bytes = (text: string) => new TextEncoder().encode(text);

test("append resolves after commit, ids follow call order, records read back; a clean restart keeps the epoch", async () => {
  const dir = mkdtempSync(join(tmpdir(), "amiproof-journal-"));
  const journal = await Journal.open({ storage: await FsJournalStorage.open(dir), clockMs: clock });
  assert.equal(journal.epoch, 1);
  const results = await Promise.all(Array.from({ length: 50 }, (_, i) => journal.append(bytes(`r${i}`))));
  assert.deepEqual(
    results.map((r) => r.commitId),
    Array.from({ length: 50 }, (_, i) => i + 1),
  );
  assert.ok(
    journal.metrics().group_commits < 50,
    "concurrent appends share group commits (one fdatasync each)",
  );
  await journal.close();
  const again = await Journal.open({ storage: await FsJournalStorage.open(dir), clockMs: clock });
  assert.equal(again.recovery.recovered, false);
  assert.equal(again.epoch, 1);
  const entries = await again.readFrom(10, 5);
  assert.deepEqual(
    entries.map((e) => new TextDecoder().decode(e.payload)),
    ["r9", "r10", "r11", "r12", "r13"],
  );
  assert.equal((await again.append(bytes("next"))).commitId, 51);
  await again.close();
});

test("an unclean stop opens a new epoch and cuts the torn tail on the real filesystem", async () => {
  const dir = mkdtempSync(join(tmpdir(), "amiproof-journal-"));
  const storage = await FsJournalStorage.open(dir);
  const journal = await Journal.open({ storage, clockMs: clock });
  for (let i = 0; i < 10; i++) await journal.append(bytes(`r${i}`));
  await storage.close(); // the process "dies": file handles go, no clean-shutdown marker is written. Then garbage lands after the last commit, as a torn write would.
  const segment = readdirSync(dir).find((n) => n.startsWith("seg-"))!;
  writeFileSync(join(dir, segment), Uint8Array.of(0x4a, 1, 0, 0, 0, 40, 1, 2, 3), { flag: "a" });
  const recovered = await Journal.open({ storage: await FsJournalStorage.open(dir), clockMs: clock });
  assert.equal(recovered.recovery.recovered, true);
  assert.equal(recovered.epoch, 2);
  assert.equal(recovered.recovery.tornBytes, 9);
  assert.equal(recovered.lastCommitId(), 10);
  const { commitId, epoch } = await recovered.append(bytes("after"));
  assert.deepEqual([commitId, epoch], [11, 2]);
  await recovered.close();
});

test("checkpoints bound the recovery scan; released segments are deleted", async () => {
  const storage = new MemoryJournalStorage();
  const journal = await Journal.open({
    storage,
    clockMs: clock,
    checkpointEveryCommits: 1,
    segmentBytesMax: 512,
  });
  for (let i = 0; i < 200; i++) await journal.append(new Uint8Array(40).fill(i));
  const segmentsBefore = (await storage.list()).filter((n) => n.startsWith("seg-")).length;
  assert.ok(segmentsBefore > 10);
  await journal.releaseThrough(150);
  const segmentsAfter = (await storage.list()).filter((n) => n.startsWith("seg-")).length;
  assert.ok(segmentsAfter < segmentsBefore, "fully acknowledged segments are removed");
  assert.equal((await journal.readFrom(151, 100)).length, 50);
  // Unclean reopen: the scan starts at the checkpoint, not at the first byte.
  const reopened = await Journal.open({
    storage,
    clockMs: clock,
    checkpointEveryCommits: 1,
    segmentBytesMax: 512,
  });
  assert.ok(reopened.recovery.bytesScanned < 600, `scanned ${reopened.recovery.bytesScanned} bytes`);
  assert.equal(reopened.lastCommitId(), 200);
  assert.equal(reopened.releasedThrough(), 150);
});

test("bad appends are refused with typed errors and corrupt nothing", async () => {
  const journal = await Journal.open({ storage: new MemoryJournalStorage(), clockMs: clock });
  await assert.rejects(journal.append(new Uint8Array(0)), { name: "EvidenceError", code: "BAD_FIELD" });
  await assert.rejects(journal.append(new Uint8Array(70_000)), { code: "BAD_FIELD" });
  assert.equal((await journal.append(bytes("ok"))).commitId, 1);
  await journal.close();
  await assert.rejects(journal.append(bytes("late")), { code: "JOURNAL_CLOSED" });
});

test("a failed commit is never acknowledged and the journal refuses appends until reopened", async () => {
  const storage = new MemoryJournalStorage();
  const journal = await Journal.open({ storage, clockMs: clock });
  await journal.append(bytes("a"));
  storage.failAfterBytes(3);
  await assert.rejects(journal.append(bytes("b")), { code: "POWER_LOST" });
  await assert.rejects(journal.append(bytes("c")), { code: "JOURNAL_CLOSED" });
  storage.powerCut(new SeededRandom(1));
  const reopened = await Journal.open({ storage, clockMs: clock });
  assert.equal(reopened.lastCommitId(), 1);
  assert.equal(reopened.epoch, 2);
});

test("power-cut property: ≥ 1,000 random cut points (no ack lost, no torn record, no duplicate, new epoch)", async () => {
  const stats: CutStats = { cuts: 0, acked: 0 };
  await fc.assert(
    fc.asyncProperty(fc.integer({ min: 0, max: 2 ** 31 - 1 }), async (seed) => {
      await journalCutRun(new SeededRandom(seed), 7, stats);
    }),
    { numRuns: Number(process.env.AMIPROOF_JOURNAL_RUNS ?? 200) },
  );
  process.stdout.write(
    `# Journal cut points: ${stats.cuts} (acknowledged records checked: ${stats.acked})\n`,
  );
  assert.ok(
    stats.cuts >= 1000 || process.env.AMIPROOF_JOURNAL_RUNS !== undefined,
    `only ${stats.cuts} cut points`,
  );
});

test("fuzz: random and mutated segment bytes recover or fail with EvidenceError only", async () => {
  const base = new MemoryJournalStorage();
  const journal = await Journal.open({ storage: base, clockMs: clock });
  for (let i = 0; i < 20; i++) await journal.append(bytes(`record ${i}`));
  await journal.close();
  const segment = (await base.list()).find((n) => n.startsWith("seg-"))!;
  const valid = await base.read(segment);
  await fc.assert(
    fc.asyncProperty(
      fc.oneof(
        fc.uint8Array({ maxLength: 400 }),
        fc.array(fc.tuple(fc.nat(), fc.nat(255)), { minLength: 1, maxLength: 8 }).map((edits) => {
          const mutated = valid.slice();
          for (const [at, value] of edits) mutated[at % mutated.length] = value;
          return mutated;
        }),
      ),
      async (content) => {
        const storage = new MemoryJournalStorage();
        await storage.append(segment, content);
        await storage.datasync(segment);
        try {
          const opened = await Journal.open({ storage, clockMs: clock });
          const entries = await opened.readFrom(1, 1000);
          entries.forEach((e, i) => {
            assert.equal(e.commitId, i + 1);
          });
        } catch (error) {
          assert.equal((error as { name?: string }).name, "EvidenceError", String(error));
        }
      },
    ),
    { numRuns: Number(process.env.AMIPROOF_FUZZ_RUNS ?? 300) },
  );
});

test("damage in front of committed groups is JOURNAL_CORRUPT, never a silent truncation", async () => {
  const storage = new MemoryJournalStorage();
  const journal = await Journal.open({ storage, clockMs: clock });
  for (let i = 0; i < 5; i++) await journal.append(bytes(`record ${i}`));
  const segment = (await storage.list()).find((n) => n.startsWith("seg-"))!;
  const data = await storage.read(segment);
  data[30]! ^= 0xff; // inside the first record's frame
  await storage.truncate(segment, 0);
  await storage.append(segment, data);
  await storage.datasync(segment);
  await assert.rejects(Journal.open({ storage, clockMs: clock }), {
    name: "EvidenceError",
    code: "JOURNAL_CORRUPT",
  });
});
