import assert from "node:assert/strict";
import { mkdtempSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import fc from "fast-check";
import {
  CHECKPOINT_EVERY_COMMITS_DEFAULT,
  crc32,
  crc32Range,
  FsJournalStorage,
  GROUP_COMMIT_BYTES_MAX,
  GROUP_COMMIT_RECORDS_MAX,
  JOURNAL_RECORD_BYTES_MAX,
  JOURNAL_RECORD_OVERHEAD_BYTES,
  Journal,
  type JournalOptions,
  MemoryJournalStorage,
  SeededRandom,
} from "../../src/evidence/index.ts";
import { journalCutRun, newCutStats } from "./journal-harness.ts";

const FUZZ_RUNS = Number(process.env.AMIPROOF_FUZZ_RUNS ?? 300);
/** Seeds of the power-cut property: ~6 cuts each, so the default run checks well over 1,000 cut points. */
const CUT_RUNS = Number(process.env.AMIPROOF_JOURNAL_RUNS ?? 220);

const clock = () => performance.now();
const text = (value: string) => new TextEncoder().encode(value);
const decode = (bytes: Uint8Array) => new TextDecoder().decode(bytes);
const tmp = () => mkdtempSync(join(tmpdir(), "amiproof-journal-"));
const segmentsOf = async (storage: MemoryJournalStorage) =>
  (await storage.list()).filter((name) => name.startsWith("seg-"));
/** Lets pending IO callbacks and the writer run (not a timing assumption: one turn of the event loop). */
const turn = () => new Promise<void>((resolve) => setImmediate(resolve));

/** In-memory storage whose datasync waits while `hold()` is in force: a slow disk under test control. */
class GatedStorage extends MemoryJournalStorage {
  private gate: Promise<void> | null = null;
  private open: () => void = () => {};
  syncing = 0;

  hold(): void {
    this.gate = new Promise((resolve) => {
      this.open = resolve;
    });
  }

  release(): void {
    this.gate = null;
    this.open();
  }

  override async datasync(name: string): Promise<void> {
    this.syncing++;
    try {
      while (this.gate !== null) await this.gate;
      await super.datasync(name);
    } finally {
      this.syncing--;
    }
  }
}

test("FS: append resolves after commit, ids follow call order, records read back; a clean restart keeps the epoch", async () => {
  for (const dsyncAppends of [true, false]) {
    const dir = tmp();
    const journal = await Journal.open({
      storage: await FsJournalStorage.open(dir, { dsyncAppends }),
      clockMs: clock,
    });
    assert.equal(journal.epoch, 1);
    assert.equal(journal.recovery.recovered, false);
    const results = await Promise.all(Array.from({ length: 50 }, (_, i) => journal.append(text(`r${i}`))));
    assert.deepEqual(
      results.map((r) => [r.commitId, r.epoch]),
      Array.from({ length: 50 }, (_, i) => [i + 1, 1]),
    );
    assert.equal(journal.metrics().group_commits, 1, "50 appends of one turn share one group commit");
    await journal.close();
    const again = await Journal.open({
      storage: await FsJournalStorage.open(dir, { dsyncAppends }),
      clockMs: clock,
    });
    assert.equal(again.recovery.recovered, false);
    assert.equal(again.epoch, 1);
    assert.deepEqual(
      (await again.readFrom(10, 5)).map((e) => decode(e.payload)),
      ["r9", "r10", "r11", "r12", "r13"],
    );
    assert.equal((await again.append(text("next"))).commitId, 51);
    await again.close();
  }
});

test("FS: an unclean stop opens a new epoch, recorded durably, and cuts the torn tail", async () => {
  const dir = tmp();
  const storage = await FsJournalStorage.open(dir);
  const journal = await Journal.open({ storage, clockMs: clock });
  for (let i = 0; i < 10; i++) await journal.append(text(`r${i}`));
  await storage.close(); // the process dies: handles go, no clean-shutdown flag is written
  const segment = readdirSync(dir).find((n) => n.startsWith("seg-"))!;
  // A torn write: a frame header promising 40 bytes, then 1 byte of it.
  writeFileSync(join(dir, segment), Uint8Array.of(0, 0, 0, 40, 1, 2, 3, 4, 1), { flag: "a" });
  const recovered = await Journal.open({ storage: await FsJournalStorage.open(dir), clockMs: clock });
  assert.equal(recovered.recovery.recovered, true);
  assert.equal(recovered.epoch, 2);
  assert.equal(recovered.recovery.tornBytes, 9);
  assert.equal(recovered.lastCommitId(), 10);
  assert.deepEqual(Object.values(await recovered.append(text("after"))), [11, 2]);
  await recovered.close();
  const third = await Journal.open({ storage: await FsJournalStorage.open(dir), clockMs: clock });
  assert.equal(third.epoch, 2, "the epoch opened by the recovery was durable");
  const entries = await third.readFrom(1, 100);
  assert.deepEqual(
    entries.map((e) => [e.commitId, e.epoch]),
    [...Array.from({ length: 10 }, (_, i) => [i + 1, 1]), [11, 2]],
  );
  await third.close();
});

test("FS storage: ranged reads, writeAt, truncate, remove, list", async () => {
  const storage = await FsJournalStorage.open(tmp());
  await storage.append("a", text("hello "));
  await storage.append("a", text("world"));
  await storage.datasync("a");
  assert.equal(decode(await storage.read("a", 6, 3)), "wor");
  assert.equal(decode(await storage.read("a", 6)), "world");
  assert.equal((await storage.read("a", 50, 10)).length, 0);
  await storage.writeAt("b", 4, text("xy"));
  await storage.datasync("b");
  assert.deepEqual([...(await storage.read("b"))], [0, 0, 0, 0, 120, 121]);
  await storage.truncate("a", 5);
  assert.equal(await storage.size("a"), 5);
  assert.deepEqual(await storage.list(), ["a", "b"]);
  await storage.remove("b");
  await storage.remove("missing");
  assert.deepEqual(await storage.list(), ["a"]);
  await assert.rejects(storage.read("missing"), { name: "EvidenceError", code: "IO" });
  await storage.close();
});

test("group commit: appends made while an fdatasync is in flight share the next write and fdatasync", async () => {
  const storage = new GatedStorage();
  const journal = await Journal.open({ storage, clockMs: clock });
  const syncsBefore = storage.datasyncs;
  const writesBefore = storage.writes;
  storage.hold();
  const resolved: number[] = [];
  const first = journal.append(text("first")).then((r) => resolved.push(r.commitId));
  await turn();
  assert.equal(storage.syncing, 1, "the first group is waiting in fdatasync");
  const metrics = journal.metrics();
  assert.ok(metrics.write_ptr > metrics.commit_ptr, "write_ptr runs ahead of commit_ptr until the sync");
  const rest = Array.from({ length: 300 }, (_, i) =>
    journal.append(text(`r${i}`)).then((r) => {
      assert.ok(r.commitId <= journal.lastCommitId(), "acknowledged only after the commit is durable");
      resolved.push(r.commitId);
    }),
  );
  await turn();
  assert.equal(resolved.length, 0, "nothing is acknowledged before its fdatasync returns");
  assert.equal(journal.metrics().queue_depth, 300);
  storage.release();
  await Promise.all([first, ...rest]);
  assert.deepEqual(
    resolved,
    Array.from({ length: 301 }, (_, i) => i + 1),
    "acks in commit_id order",
  );
  assert.equal(storage.datasyncs - syncsBefore, 2, "301 appends, 2 fdatasyncs");
  assert.equal(storage.writes - writesBefore, 2, "one write per group");
  assert.equal(journal.metrics().group_commits, 2);
  assert.equal(journal.metrics().queue_depth_max, 300);
  assert.equal(journal.metrics().write_ptr, journal.metrics().commit_ptr);
});

test("group commit is bounded by GROUP_COMMIT_RECORDS_MAX and never splits an appendMany", async () => {
  const storage = new GatedStorage();
  const journal = await Journal.open({ storage, clockMs: clock });
  storage.hold();
  const first = journal.append(text("x"));
  await turn();
  const singles = Array.from({ length: GROUP_COMMIT_RECORDS_MAX - 10 }, () => journal.append(text("s")));
  const many = journal.appendMany(Array.from({ length: 20 }, () => text("m")));
  storage.release();
  await Promise.all([first, ...singles]);
  const result = await many;
  assert.equal(result.lastCommitId - result.firstCommitId, 19);
  assert.equal(
    journal.metrics().group_commits,
    3,
    "the appendMany that does not fit goes whole to the next group",
  );
  const entries = await journal.readFrom(1, 10_000);
  assert.equal(entries.length, GROUP_COMMIT_RECORDS_MAX + 11);
});

test("recovery epochs: a cut opens a new epoch, a clean close keeps it, a crash right after open is a recovery too", async () => {
  const storage = new MemoryJournalStorage();
  const rng = new SeededRandom("epochs");
  const open = () => Journal.open({ storage, clockMs: clock });
  let journal = await open();
  await journal.append(text("a"));
  storage.powerCut(rng);
  journal = await open();
  assert.deepEqual([journal.epoch, journal.recovery.recovered], [2, true]);
  assert.deepEqual(await journal.append(text("b")), { commitId: 2, epoch: 2 });
  await journal.close();
  journal = await open();
  assert.deepEqual([journal.epoch, journal.recovery.recovered], [2, false]);
  storage.powerCut(rng); // dies without writing anything
  journal = await open();
  assert.deepEqual([journal.epoch, journal.recovery.recovered], [3, true]);
  assert.deepEqual(
    (await journal.readFrom(1, 10)).map((e) => [e.commitId, e.epoch]),
    [
      [1, 1],
      [2, 2],
    ],
  );
});

test("a failed commit is never acknowledged and the journal refuses appends until reopened", async () => {
  const storage = new MemoryJournalStorage();
  const journal = await Journal.open({ storage, clockMs: clock });
  await journal.append(text("a"));
  storage.failAfterBytes(3);
  await assert.rejects(journal.append(text("b")), { code: "POWER_LOST" });
  await assert.rejects(journal.append(text("c")), { code: "JOURNAL_CLOSED" });
  assert.ok(journal.metrics().write_ptr > journal.metrics().commit_ptr, "bytes landed past the commit point");
  storage.powerCut(new SeededRandom(1));
  const reopened = await Journal.open({ storage, clockMs: clock });
  assert.equal(reopened.lastCommitId(), 1);
  assert.equal(reopened.epoch, 2);
  assert.equal(reopened.nextCommitId(), 2);
});

test("a write that landed but whose fdatasync failed is not acknowledged; if it survives, it is whole", async () => {
  let survived = 0;
  for (let seed = 0; seed < 40; seed++) {
    const storage = new MemoryJournalStorage();
    const journal = await Journal.open({ storage, clockMs: clock });
    await journal.append(text("durable"));
    storage.failAfterDatasyncs(0);
    await assert.rejects(journal.append(text("in flight")), { code: "POWER_LOST" });
    storage.powerCut(new SeededRandom(seed));
    const reopened = await Journal.open({ storage, clockMs: clock });
    const entries = (await reopened.readFrom(1, 10)).map((e) => decode(e.payload));
    assert.ok(entries.length === 1 || entries.length === 2, String(entries));
    if (entries.length === 2) {
      assert.equal(entries[1], "in flight");
      survived++;
    }
  }
  assert.ok(survived > 0 && survived < 40, "both outcomes occur");
});

test("checkpoints bound the recovery scan (journal_scan_bytes)", async () => {
  const scan = async (checkpointEveryCommits: number, checkpointEveryBytes = 1 << 20) => {
    const storage = new MemoryJournalStorage();
    const options = { storage, clockMs: clock, checkpointEveryCommits, checkpointEveryBytes };
    const journal = await Journal.open(options);
    for (let i = 0; i < 200; i++) await journal.append(new Uint8Array(64).fill(i));
    storage.powerCut(new SeededRandom(checkpointEveryCommits));
    const reopened = await Journal.open(options);
    assert.equal(reopened.lastCommitId(), 200);
    assert.deepEqual(
      (await reopened.readFrom(1, 1000)).map((e) => e.payload[0]),
      Array.from({ length: 200 }, (_, i) => i),
    );
    return reopened.recovery;
  };
  const groupBytes = 64 + JOURNAL_RECORD_OVERHEAD_BYTES + 29;
  const every4 = await scan(4);
  assert.ok(every4.bytesScanned <= 4 * groupBytes, `scanned ${every4.bytesScanned} bytes`);
  assert.ok(every4.recordsRecovered <= 4);
  const rare = await scan(1000);
  assert.ok(rare.bytesScanned >= 200 * groupBytes, `scanned ${rare.bytesScanned} bytes`);
  assert.equal(rare.recordsRecovered, 200);
  assert.ok(every4.bytesScanned * 40 < rare.bytesScanned);
  const byBytes = await scan(1000, 10 * groupBytes);
  assert.ok(byBytes.bytesScanned <= 10 * groupBytes, `scanned ${byBytes.bytesScanned} bytes`);
  assert.equal(CHECKPOINT_EVERY_COMMITS_DEFAULT, 256);
});

test("retention: whole acknowledged segments are deleted, the ack floor survives a crash, reads page across segments", async () => {
  const storage = new MemoryJournalStorage();
  const options: JournalOptions = {
    storage,
    clockMs: clock,
    checkpointEveryCommits: 3,
    segmentBytesMax: 512,
  };
  const journal = await Journal.open(options);
  for (let i = 0; i < 200; i++) await journal.append(new Uint8Array(40).fill(i));
  const before = (await segmentsOf(storage)).length;
  assert.ok(before > 10);
  assert.equal(journal.metrics().segments, before);
  // Paging as the uplink does: sequential reads across segment boundaries.
  const paged: number[] = [];
  for (let from = 1; from <= 200; ) {
    const page = await journal.readFrom(from, 7);
    assert.ok(page.length > 0 && page.length <= 7);
    for (const entry of page) paged.push(entry.commitId);
    from = page.at(-1)!.commitId + 1;
  }
  assert.deepEqual(
    paged,
    Array.from({ length: 200 }, (_, i) => i + 1),
  );
  await journal.releaseThrough(150);
  assert.equal(journal.releasedThrough(), 150);
  const after = await segmentsOf(storage);
  assert.ok(after.length < before, "fully acknowledged segments are removed");
  const oldest = await journal.readFrom(1, 1);
  assert.ok(oldest[0]!.commitId <= 151 && oldest[0]!.commitId > 100, "only whole segments go");
  assert.equal((await journal.readFrom(151, 100)).length, 50);
  await journal.releaseThrough(10); // lower than the floor: nothing changes
  await journal.releaseThrough(10_000); // beyond the last commit: clamped
  assert.equal(journal.releasedThrough(), 200);
  assert.equal((await segmentsOf(storage)).length, 1, "the active segment always stays");
  storage.powerCut(new SeededRandom(3));
  const reopened = await Journal.open(options);
  assert.equal(reopened.releasedThrough(), 200);
  assert.equal(reopened.lastCommitId(), 200);
  assert.deepEqual(await reopened.readFrom(201, 10), []);
  assert.equal((await reopened.append(text("more"))).commitId, 201);
});

test("retention bound: at segmentsMax appends are refused with LOG_FULL until a release frees segments", async () => {
  const storage = new MemoryJournalStorage();
  const journal = await Journal.open({ storage, clockMs: clock, segmentBytesMax: 256, segmentsMax: 3 });
  let refused = 0;
  for (let i = 0; i < 40 && refused === 0; i++) {
    await journal.append(new Uint8Array(60).fill(i)).catch((error: unknown) => {
      assert.equal((error as { code?: string }).code, "LOG_FULL");
      refused++;
    });
  }
  assert.equal(refused, 1);
  assert.equal(journal.metrics().segments, 3);
  assert.equal(journal.metrics().log_full_cnt, 1);
  assert.equal(journal.nextCommitId(), journal.lastCommitId() + 1, "refused ids are not skipped");
  await journal.releaseThrough(journal.lastCommitId());
  const { commitId } = await journal.append(text("fits again"));
  assert.equal(commitId, journal.lastCommitId());
  const entries = await journal.readFrom(1, 1000);
  assert.equal(entries.at(-1)!.commitId, commitId);
});

test("bad inputs are refused with typed errors and corrupt nothing", async () => {
  const storage = new MemoryJournalStorage();
  const journal = await Journal.open({ storage, clockMs: clock });
  const badField = { name: "EvidenceError", code: "BAD_FIELD" };
  await assert.rejects(journal.append(new Uint8Array(0)), badField);
  await assert.rejects(journal.append(new Uint8Array(JOURNAL_RECORD_BYTES_MAX + 1)), badField);
  await assert.rejects(journal.append("text" as unknown as Uint8Array), badField);
  await assert.rejects(journal.appendMany([]), badField);
  await assert.rejects(journal.appendMany([text("ok"), new Uint8Array(0)]), badField);
  await assert.rejects(
    journal.appendMany(Array.from({ length: GROUP_COMMIT_RECORDS_MAX + 1 }, () => text("x"))),
    badField,
  );
  await assert.rejects(
    journal.appendMany(Array.from({ length: 17 }, () => new Uint8Array(GROUP_COMMIT_BYTES_MAX / 16))),
    badField,
  );
  await assert.rejects(journal.readFrom(1, -1), badField);
  await assert.rejects(journal.readFrom(1.5, 3), badField);
  await assert.rejects(journal.releaseThrough(-1), badField);
  await assert.rejects(
    Journal.open({ storage: new MemoryJournalStorage(), clockMs: clock, checkpointEveryCommits: 0 }),
    badField,
  );
  assert.deepEqual(await journal.append(text("ok")), { commitId: 1, epoch: 1 });
  assert.equal(journal.append(new Uint8Array(JOURNAL_RECORD_BYTES_MAX)) instanceof Promise, true);
  await journal.close();
  await assert.rejects(journal.append(text("late")), { code: "JOURNAL_CLOSED" });
  await assert.rejects(journal.appendMany([text("late")]), { code: "JOURNAL_CLOSED" });
  await assert.rejects(journal.readFrom(1, 1), { code: "JOURNAL_CLOSED" });
  await journal.close(); // idempotent
  const reopened = await Journal.open({ storage, clockMs: clock });
  assert.equal(reopened.recovery.recovered, false);
  assert.deepEqual(
    (await reopened.readFrom(1, 10)).map((e) => e.payload.length),
    [2, JOURNAL_RECORD_BYTES_MAX],
  );
});

test("metrics: commit_latency_p99 from the injected clock, write_stall_cnt above the threshold", async () => {
  const storage = new GatedStorage();
  const now = { ms: 1000 };
  const journal = await Journal.open({ storage, clockMs: () => now.ms, stallThresholdMs: 50 });
  storage.hold();
  const pending = Array.from({ length: 10 }, (_, i) => journal.append(text(`r${i}`)));
  await turn();
  now.ms += 80; // the disk takes 80 ms
  storage.release();
  await Promise.all(pending);
  await journal.append(text("fast"));
  const metrics = journal.metrics();
  assert.equal(metrics.write_stall_cnt, 1);
  assert.ok(
    metrics.commit_latency_p99 >= 80 && metrics.commit_latency_p99 < 80 * 1.05,
    String(metrics.commit_latency_p99),
  );
  assert.deepEqual(Object.keys(metrics).sort(), [
    "checkpoints",
    "commit_id",
    "commit_latency_p99",
    "commit_ptr",
    "epoch",
    "group_commits",
    "log_full_cnt",
    "queue_depth",
    "queue_depth_max",
    "recovery_bytes_scanned",
    "recovery_duration_ms",
    "recovery_records",
    "released_through",
    "segments",
    "write_ptr",
    "write_stall_cnt",
  ]);
  assert.equal(metrics.commit_id, 11);
});

test("power-cut property: ≥ 1,000 random cut points (no ack lost, no torn record, no duplicate, new epoch)", async () => {
  const stats = newCutStats();
  await fc.assert(
    fc.asyncProperty(fc.integer({ min: 0, max: 2 ** 31 - 1 }), async (seed) => {
      await journalCutRun(new SeededRandom(seed), 7, stats);
    }),
    { numRuns: CUT_RUNS },
  );
  process.stdout.write(
    `Journal cut points: ${stats.cuts} (recoveries checked: ${stats.recoveries}, cuts during recovery: ${stats.cutsDuringRecovery}, acknowledged records checked: ${stats.acked})\n`,
  );
  assert.ok(
    stats.cuts >= 1000 || process.env.AMIPROOF_JOURNAL_RUNS !== undefined,
    `only ${stats.cuts} cut points`,
  );
});

test("a torn last group whose commit frame reached the disk before its records is cut, not called corrupt", async () => {
  const storage = new MemoryJournalStorage();
  const journal = await Journal.open({ storage, clockMs: clock });
  await journal.append(text("durable"));
  await Promise.all([journal.append(text("torn-1")), journal.append(text("torn-2"))]);
  const [segment] = await segmentsOf(storage);
  const data = await storage.read(segment!);
  // Pages written out of order before the fdatasync returned: the group's first record never landed.
  const groupAt = data.length - (2 * (6 + JOURNAL_RECORD_OVERHEAD_BYTES) + 29);
  data.fill(0, groupAt, groupAt + 10);
  await storage.truncate(segment!, 0);
  await storage.append(segment!, data);
  await storage.datasync(segment!);
  const reopened = await Journal.open({ storage, clockMs: clock });
  assert.equal(reopened.lastCommitId(), 1);
  assert.equal(reopened.recovery.tornCommitFrames, 1);
  assert.deepEqual(
    (await reopened.readFrom(1, 10)).map((e) => decode(e.payload)),
    ["durable"],
  );
});

test("damage in front of durable data is JOURNAL_CORRUPT, never a silent truncation", async () => {
  const damaged = async (
    mutate: (data: Uint8Array) => void,
    clean: boolean,
    segmentIndex = 0,
    options: Partial<JournalOptions> = {},
  ) => {
    const storage = new MemoryJournalStorage();
    const journal = await Journal.open({ storage, clockMs: clock, ...options });
    for (let i = 0; i < 30; i++) await journal.append(text(`record ${i}`));
    if (clean) await journal.close(); // else the process dies here, every byte synced
    const segment = (await segmentsOf(storage))[segmentIndex]!;
    const data = await storage.read(segment);
    mutate(data);
    await storage.truncate(segment, 0);
    await storage.append(segment, data);
    await storage.datasync(segment);
    return storage;
  };
  // A record in the middle of the active segment, after the last checkpoint: the scan sees it.
  let storage = await damaged((d) => {
    d[d.length - 200]! ^= 0xff;
  }, false);
  await assert.rejects(Journal.open({ storage, clockMs: clock }), { code: "JOURNAL_CORRUPT" });
  // A sealed segment.
  storage = await damaged(
    (d) => {
      d[60]! ^= 0x01;
    },
    false,
    0,
    { segmentBytesMax: 300, checkpointEveryCommits: 1000 },
  );
  await assert.rejects(Journal.open({ storage, clockMs: clock, segmentBytesMax: 300 }), {
    code: "JOURNAL_CORRUPT",
  });
  // Below the checkpoint the scan does not look; readFrom checks every CRC-32 on the way out.
  storage = await damaged((d) => {
    d[60]! ^= 0x01;
  }, true);
  const journal = await Journal.open({ storage, clockMs: clock });
  await assert.rejects(journal.readFrom(1, 100), { code: "JOURNAL_CORRUPT" });
});

test("fuzz: random and mutated segment and checkpoint bytes recover or fail with EvidenceError only", async () => {
  const base = new MemoryJournalStorage();
  const journal = await Journal.open({ storage: base, clockMs: clock, checkpointEveryCommits: 3 });
  for (let i = 0; i < 20; i++) await journal.append(text(`record ${i}`));
  await journal.close();
  const [segment] = await segmentsOf(base);
  const valid = await base.read(segment!);
  const checkpoint = await base.read("checkpoint");
  const mutate = (bytes: Uint8Array) =>
    fc.array(fc.tuple(fc.nat(), fc.nat(255)), { minLength: 1, maxLength: 8 }).map((edits) => {
      const mutated = bytes.slice();
      for (const [at, value] of edits) mutated[at % mutated.length] = value;
      return mutated;
    });
  await fc.assert(
    fc.asyncProperty(
      fc.oneof(fc.uint8Array({ maxLength: 600 }), mutate(valid), fc.constant(valid)),
      fc.oneof(fc.constant(checkpoint), mutate(checkpoint), fc.uint8Array({ maxLength: 140 })),
      async (content, checkpointBytes) => {
        const storage = new MemoryJournalStorage();
        await storage.append(segment!, content);
        await storage.datasync(segment!);
        await storage.writeAt("checkpoint", 0, checkpointBytes);
        await storage.datasync("checkpoint");
        try {
          const opened = await Journal.open({ storage, clockMs: clock });
          const entries = await opened.readFrom(1, 1000);
          entries.forEach((e, i) => {
            assert.equal(e.commitId, i + 1);
            assert.equal(decode(e.payload), `record ${i}`, "a record read back is one that was written");
          });
          assert.equal(opened.lastCommitId(), entries.length);
        } catch (error) {
          assert.equal((error as { name?: string }).name, "EvidenceError", String(error));
        }
      },
    ),
    { numRuns: FUZZ_RUNS },
  );
});

test("crc32Range is the same CRC-32 as zlib's crc32 over any range (check value 0xCBF43926)", () => {
  assert.equal(crc32Range(text("123456789"), 0, 9), 0xcbf43926);
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 300 }), fc.nat(), fc.nat(), fc.nat(), (bytes, a, b, initial) => {
      const start = bytes.length === 0 ? 0 : a % (bytes.length + 1);
      const end = start + (bytes.length === 0 ? 0 : b % (bytes.length - start + 1));
      // (Node 20's zlib.crc32 returns 0 for an empty Uint8Array whatever the initial value.)
      const seed = end > start ? initial >>> 0 : 0;
      assert.equal(crc32Range(bytes, start, end, seed), crc32(bytes.subarray(start, end), seed));
    }),
    { numRuns: FUZZ_RUNS },
  );
});

test("the on-disk frame is length · CRC-32 · type · commit_id · epoch · payload", async () => {
  const dir = tmp();
  const journal = await Journal.open({ storage: await FsJournalStorage.open(dir), clockMs: clock });
  await journal.append(text("abc"));
  await journal.close();
  const bytes = readFileSync(join(dir, readdirSync(dir).find((n) => n.startsWith("seg-"))!));
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  assert.equal(bytes[8], 4, "a segment starts with its header frame");
  assert.equal(decode(bytes.subarray(21, 25)), "AMIJ");
  const at = 26 + 22; // after the header and the first start's EPOCH frame
  assert.equal(view.getUint32(at), 13 + 3, "length of the body");
  assert.equal(view.getUint32(at + 4), crc32(bytes.subarray(at + 8, at + 8 + 16)), "CRC-32 of the body");
  assert.equal(bytes[at + 8], 1, "RECORD");
  assert.equal(Number(view.getBigUint64(at + 9)), 1, "commit_id");
  assert.equal(view.getUint32(at + 17), 1, "epoch");
  assert.equal(decode(bytes.subarray(at + 21, at + 24)), "abc");
  const commitAt = at + 24;
  assert.equal(bytes[commitAt + 8], 2, "COMMIT frame follows the group");
  assert.equal(bytes.length, commitAt + 29);
});

test("without a checkpoint the scan starts at the oldest segment: nothing lost, the ack floor falls back to it", async () => {
  const storage = new MemoryJournalStorage();
  const options: JournalOptions = { storage, clockMs: clock, segmentBytesMax: 400 };
  const journal = await Journal.open(options);
  for (let i = 0; i < 60; i++) await journal.append(new Uint8Array(30).fill(i));
  await journal.releaseThrough(20);
  const oldest = (await journal.readFrom(1, 1))[0]!.commitId;
  await storage.remove("checkpoint"); // e.g. lost with its medium
  const reopened = await Journal.open(options);
  assert.equal(reopened.recovery.checkpointFound, false);
  assert.equal(reopened.recovery.recovered, true);
  assert.equal(reopened.epoch, 2);
  assert.equal(reopened.lastCommitId(), 60);
  assert.equal(
    reopened.releasedThrough(),
    oldest - 1,
    "resend from the oldest retained record rather than lose any",
  );
  assert.deepEqual(
    (await reopened.readFrom(oldest, 100)).map((e) => e.payload[0]),
    Array.from({ length: 61 - oldest }, (_, i) => oldest - 1 + i),
  );
});

test("a segment of another format is refused with BAD_VERSION and left untouched", async () => {
  const storage = new MemoryJournalStorage();
  const foreign = new Uint8Array(5000).fill(0x4a);
  await storage.append("seg-0000000000000001.log", foreign);
  await storage.datasync("seg-0000000000000001.log");
  await assert.rejects(Journal.open({ storage, clockMs: clock }), {
    name: "EvidenceError",
    code: "BAD_VERSION",
  });
  assert.deepEqual(await storage.read("seg-0000000000000001.log"), foreign);
});
