import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import fc from "fast-check";
import {
  AtomicRingLog,
  type AtomicRingLogOptions,
  crc32,
  type EventRecord,
  FileNvm,
  genesisDigest,
  isEvidenceError,
  MemoryNvm,
  MemorySecureElement,
  type NvmDevice,
  type RingLogEvent,
  ringLogLayout,
  SeededRandom,
  sealEventRecord,
  toHex,
  verifyEventChain,
} from "../../src/evidence/index.ts";
import { addResults, emptyResult, GEOMETRIES, runPowerCutCampaign } from "./ringlog-harness.ts";

const RUNS = Number(process.env.AMIPROOF_FUZZ_RUNS ?? 300);
const GEO = { sizeBytes: 8 * 4096, pageBytes: 256, sectorBytes: 4096 };
const REGION = { offset: 4096, length: 4 * 4096 }; // 4 sectors × 5 slots of 768 bytes
const METER = "MTR-7";
const SLOT_BYTES = 768;

let clock = 1_800_000_000_000;

function setup(seed = 1) {
  const nvm = new MemoryNvm(GEO, { rng: new SeededRandom(seed) });
  const se = new MemorySecureElement(METER, Uint8Array.of(9));
  return { nvm, se, publicKey: se.publicKey("event_seal") };
}

function open(
  nvm: NvmDevice,
  se: MemorySecureElement,
  extra: Partial<AtomicRingLogOptions> = {},
): AtomicRingLog {
  clock += 60_000;
  return AtomicRingLog.open({
    nvm,
    region: REGION,
    meterId: METER,
    secureElement: se,
    nowMs: clock,
    timeQuality: "SYNCED",
    ...extra,
  });
}

function event(n: number): RingLogEvent {
  clock += 1000;
  return {
    type: n % 2 === 0 ? "MAG_TAMPER" : "COVER_OPEN",
    level: "MAJOR",
    timestampMs: clock,
    startMs: clock - 5000,
    endMs: clock,
    timeQuality: "SYNCED",
    snapshot: { b_field_mt: 60 + n, pf_flag: true },
  };
}

/** Byte offset of a record's slot on the device (the record bytes start 6 bytes in). */
function slotOf(nvm: MemoryNvm, record: EventRecord): number {
  const at = Buffer.from(nvm.image()).indexOf(Buffer.from(record.bytes));
  assert.ok(at >= 0, `seq ${record.seq} not found on the device`);
  return at - 6;
}

function rawSlot(record: Uint8Array): Uint8Array {
  const n = record.length;
  return Uint8Array.from([0x00, 0xff, n >> 8, n & 0xff, (~n >> 8) & 0xff, ~n & 0xff, ...record]);
}

test("layout: slots are header + EVENT_RECORD_BYTES_MAX rounded to pages; bad regions are refused", () => {
  assert.deepEqual(ringLogLayout(GEO, REGION), {
    slotBytes: SLOT_BYTES,
    slotsPerSector: 5,
    sectors: 4,
    slots: 20,
    firstSector: 1,
    sectorTailBytes: 256,
  });
  const refused = (region: { offset: number; length: number }, geometry = GEO) =>
    assert.throws(
      () => ringLogLayout(geometry, region),
      (e: unknown) => isEvidenceError(e, "NVM_RANGE"),
    );
  refused({ offset: 4096, length: 4096 }); // one sector: nowhere to wrap to
  refused({ offset: 100, length: 8192 }); // not sector-aligned
  refused({ offset: 0, length: 9 * 4096 }); // beyond the device
  refused({ offset: 0, length: 4096 }, { sizeBytes: 4096, pageBytes: 128, sectorBytes: 1024 }); // 1 slot per sector
});

test("a fresh log seals RECOVERY seq 1 from genesis; appends chain, persist and verify", () => {
  const { nvm, se, publicKey } = setup();
  const log = open(nvm, se);
  const [first] = log.records();
  assert.equal(first?.type, "RECOVERY");
  assert.equal(first?.seq, 1);
  assert.equal(toHex(first!.prevDigest), toHex(genesisDigest(METER)));
  assert.equal(log.recovery.recordsFound, 0);
  const a = log.append(event(1));
  const b = log.append(event(2));
  assert.deepEqual([a.seq, b.seq, log.lastSeq], [2, 3, 3]);
  assert.equal(toHex(b.prevDigest), toHex(a.digest));
  assert.equal(toHex(log.headDigest), toHex(b.digest));
  assert.equal(se.readCounter(`event_log_seq/${METER}`), 3);

  const again = open(nvm, se);
  assert.deepEqual(
    again.records().map((r) => [r.seq, r.type]),
    [
      [1, "RECOVERY"],
      [2, "COVER_OPEN"],
      [3, "MAG_TAMPER"],
      [4, "RECOVERY"],
    ],
  );
  assert.equal(again.recovery.recordsFound, 3);
  assert.equal(again.recovery.headSeqBefore, 3);
  assert.deepEqual(again.recovery.chainBreaks, []);
  assert.deepEqual(
    again.readFrom(3).map((r) => r.seq),
    [3, 4],
  );
  assert.deepEqual(verifyEventChain(again.records(), publicKey).problems, []);
  assert.deepEqual(again.records()[1]!.snapshot, { b_field_mt: 61, pf_flag: true });
});

test("the ring's own record types and oversized snapshots are refused without stopping the log", () => {
  const { nvm, se } = setup();
  const log = open(nvm, se);
  for (const type of ["LOG_WRAP", "CHAIN_BREAK", "RECOVERY"] as const) {
    assert.throws(
      () => log.append({ ...event(0), type }),
      (e: unknown) => isEvidenceError(e, "BAD_FIELD"),
    );
  }
  assert.throws(
    () => log.append({ ...event(0), snapshot: { note: "x".repeat(255), more: "y".repeat(200) } }),
    (e: unknown) => isEvidenceError(e, "BAD_FIELD"),
  );
  assert.equal(log.append(event(1)).seq, 2);
});

test("wrapping seals LOG_WRAP before each erase: the retained window verifies, deletion would not", () => {
  const { nvm, se, publicKey } = setup();
  const log = open(nvm, se);
  for (let i = 0; i < 70; i++) log.append(event(i));
  const records = log.records();
  assert.ok(records[0]!.seq > 1, "the oldest records were overwritten");
  assert.ok(records.length >= 10, `window of ${records.length} records`);
  assert.ok(records.length <= 15, "one sector is always kept erased as the spare");
  assert.ok(records.some((r) => r.type === "LOG_WRAP"));
  const report = verifyEventChain(records, publicKey);
  assert.deepEqual(report.problems, []);
  assert.ok(report.gaps.some((g) => g.class === "LOG_WRAP"));
  assert.ok(log.stats().wrapsSealed >= 10);
  const wear = nvm.wear().sectorErases;
  assert.ok(wear.slice(1, 5).every((n) => n > 0) && [0, 5, 6, 7].every((s) => wear[s] === 0));

  // A verifier holding only the window tells overwrite from deletion.
  const withoutWraps = records.filter((r) => r.type !== "LOG_WRAP");
  assert.ok(
    verifyEventChain(withoutWraps, publicKey).problems.length > 0,
    "unexplained start once LOG_WRAP is removed",
  );
  assert.ok(
    verifyEventChain(records.slice(1), publicKey).problems.length > 0,
    "oldest retained record deleted",
  );

  const reopened = open(nvm, se);
  assert.deepEqual(reopened.recovery.chainBreaks, []);
  const kept = new Map(reopened.records().map((r) => [r.seq, toHex(r.digest)]));
  const since = reopened.records()[0]!.seq;
  for (const r of records.filter((x) => x.seq >= since)) assert.equal(kept.get(r.seq), toHex(r.digest));
  assert.equal(reopened.recovery.headSeqBefore, records.at(-1)!.seq);
  assert.deepEqual(verifyEventChain(reopened.records(), publicKey).problems, []);
});

test("an edited record is rejected and logged as a CHAIN_BREAK once, even with its CRC recomputed", () => {
  for (const recomputeCrc of [false, true]) {
    const { nvm, se, publicKey } = setup();
    const log = open(nvm, se);
    for (let i = 0; i < 6; i++) log.append(event(i));
    const victim = log.records().find((r) => r.seq === 4)!;
    const at = slotOf(nvm, victim) + 6;
    const edited = victim.bytes.slice();
    const flipAt = edited.length - 64 - 4 - 40; // a byte of prev_digest
    edited[flipAt] = edited[flipAt]! ^ 0x01;
    if (recomputeCrc) {
      const crcAt = edited.length - 64 - 4;
      new DataView(edited.buffer).setUint32(crcAt, crc32(edited.subarray(0, crcAt)));
    }
    nvm.tamper(at, edited);

    const after = open(nvm, se);
    assert.equal(after.recovery.tornSlots, 1);
    assert.deepEqual(
      after.recovery.chainBreaks.map((b) => [b.problem, b.seqFirst, b.seqLast]),
      [["SEQ_GAP", 4, 4]],
    );
    assert.ok(!after.records().some((r) => r.seq === 4));
    const logged = after.records().find((r) => r.type === "CHAIN_BREAK")!;
    assert.equal(logged.level, "CRITICAL");
    assert.deepEqual(
      [logged.snapshot.problem, logged.snapshot.seq_first, logged.snapshot.seq_last],
      ["SEQ_GAP", 4, 4],
    );
    assert.equal(logged.snapshot.expected_digest, toHex(after.records().find((r) => r.seq === 3)!.digest));
    const report = verifyEventChain(after.records(), publicKey);
    // The meter disclosed the loss itself: the verifier reports it as an explained gap, not a forgery.
    assert.deepEqual(report.problems, []);
    assert.ok(report.gaps.some((g) => g.class === "CHAIN_BREAK_LOGGED" && g.message.includes("seq 4..4")));
    const hidden = verifyEventChain(
      after.records().filter((r) => r.type !== "CHAIN_BREAK"),
      publicKey,
    );
    assert.deepEqual(
      hidden.problems.map((p) => [p.code, p.seq])[0],
      ["SEQ_GAP", 5],
      "without the sealed admission the same gap is a problem",
    );

    const third = open(nvm, se);
    assert.deepEqual(third.recovery.chainBreaks, [], "an already logged break is not logged again");
    assert.equal(third.recovery.breaksAlreadyLogged, 1);
  }
});

test("a substituted record signed with the meter's own key still breaks the hash links around it", () => {
  const { nvm, se } = setup();
  const log = open(nvm, se);
  for (let i = 0; i < 6; i++) log.append(event(i));
  const original = log.records().find((r) => r.seq === 4)!;
  // e.g. a firmware bug or a stolen key: a well-formed seq 4 that does not link to seq 3.
  const forged = sealEventRecord(
    { ...original, snapshot: { b_field_mt: 0 }, prevDigest: new Uint8Array(32) },
    (m) => se.sign("event_seal", m),
  );
  const at = slotOf(nvm, original);
  nvm.tamper(at, new Uint8Array(SLOT_BYTES).fill(0xff));
  nvm.tamper(at, rawSlot(forged.bytes));
  const after = open(nvm, se);
  assert.deepEqual(
    after.recovery.chainBreaks.map((b) => [b.problem, b.seqFirst]),
    [
      ["CHAIN_BREAK", 4],
      ["CHAIN_BREAK", 5],
    ],
  );
  assert.equal(toHex(after.recovery.chainBreaks[1]!.foundDigest!), toHex(original.digest));
});

test("a deleted sector in the middle of the window is logged as a SEQ_GAP", () => {
  const { nvm, se } = setup();
  const log = open(nvm, se);
  for (let i = 0; i < 12; i++) log.append(event(i));
  // Slots 5..9 (the region's second sector) hold seq 6..10.
  nvm.tamper(REGION.offset + 4096, new Uint8Array(4096).fill(0xff));
  const after = open(nvm, se);
  assert.deepEqual(
    after.recovery.chainBreaks.map((b) => [b.problem, b.seqFirst, b.seqLast]),
    [["SEQ_GAP", 6, 10]],
  );
});

test("a log cut back at its newest end is caught by the secure element's seq counter", () => {
  const { nvm, se } = setup();
  const log = open(nvm, se);
  const appended = [1, 2, 3, 4].map((i) => log.append(event(i)));
  for (const record of appended.slice(-2))
    nvm.tamper(slotOf(nvm, record), new Uint8Array(SLOT_BYTES).fill(0xff));
  const after = open(nvm, se);
  assert.deepEqual(
    after.recovery.chainBreaks.map((b) => [b.problem, b.seqFirst, b.seqLast]),
    [["SEQ_GAP", 4, 5]],
  );
  const seqs = after.records().map((r) => r.seq);
  assert.deepEqual(seqs, [1, 2, 3, 6, 7], "seq 4 and 5 are never reused");
});

test("copies of own records are harmless; foreign or wrongly signed records are rejected", () => {
  const { nvm, se, publicKey } = setup();
  const log = open(nvm, se);
  for (let i = 0; i < 3; i++) log.append(event(i));
  const records = log.records();
  const free = slotOf(nvm, records.at(-1)!) + SLOT_BYTES; // the slot after the head
  nvm.tamper(free, rawSlot(records[1]!.bytes));
  const copies = open(nvm, se);
  assert.deepEqual(copies.recovery.chainBreaks, []);
  assert.deepEqual(verifyEventChain(copies.records(), publicKey).problems, []);

  const stranger = new MemorySecureElement(METER, Uint8Array.of(66));
  const forged = sealEventRecord(
    { ...copies.records().at(-1)!, seq: copies.lastSeq + 1, prevDigest: copies.headDigest },
    (m) => stranger.sign("event_seal", m),
  );
  const next = slotOf(nvm, copies.records().at(-1)!) + SLOT_BYTES;
  nvm.tamper(next, rawSlot(forged.bytes));
  const after = open(nvm, se);
  assert.equal(after.recovery.tornSlots, 1, "signature by another key: rejected and voided");
  assert.ok(!after.records().some((r) => toHex(r.digest) === toHex(forged.digest)));
  assert.deepEqual(after.recovery.chainBreaks, []);
});

test("a torn append is never accepted, its slot is voided once, and the log needs reopening", () => {
  const { nvm, se, publicKey } = setup(5);
  const log = open(nvm, se);
  log.append(event(1));
  nvm.armPowerCut({ afterBytes: 100 });
  assert.throws(
    () => log.append(event(2)),
    (e: unknown) => isEvidenceError(e, "POWER_LOST"),
  );
  nvm.powerOn();
  assert.throws(
    () => log.append(event(3)),
    (e: unknown) => isEvidenceError(e, "JOURNAL_CLOSED"),
  );
  const after = open(nvm, se);
  assert.deepEqual([after.recovery.tornSlots, after.recovery.slotsVoided], [1, 1]);
  assert.deepEqual(
    after.records().map((r) => r.type),
    ["RECOVERY", "COVER_OPEN", "RECOVERY"],
  );
  assert.equal(after.lastSeq, 3, "the torn record's seq was never acknowledged, so it is reused");
  const third = open(nvm, se);
  assert.deepEqual([third.recovery.tornSlots, third.recovery.slotsVoided], [1, 0]);
  assert.deepEqual(verifyEventChain(third.records(), publicKey).problems, []);
});

test("a torn commit marker gets one decision that every later recovery keeps", () => {
  const outcomes = new Set<boolean>();
  for (let seed = 0; seed < 24; seed++) {
    const { nvm, se, publicKey } = setup(seed);
    const log = open(nvm, se);
    const next = event(seed);
    const probe = sealEventRecord(
      {
        meterId: METER,
        seq: log.lastSeq + 1,
        type: next.type,
        level: next.level,
        timestampMs: next.timestampMs,
        startMs: next.startMs!,
        endMs: next.endMs!,
        timeQuality: next.timeQuality,
        snapshot: next.snapshot!,
        prevDigest: log.headDigest,
      },
      () => new Uint8Array(64),
    );
    nvm.armPowerCut({ afterBytes: 4 + probe.bytes.length, tornByteNoise: true }); // the marker byte is next
    assert.throws(
      () => log.append(next),
      (e: unknown) => isEvidenceError(e, "POWER_LOST"),
    );
    nvm.powerOn();
    const first = open(nvm, se);
    const kept = first.records().some((r) => r.seq === probe.seq && r.type === next.type);
    outcomes.add(kept);
    assert.equal(first.recovery.markersCompleted + first.recovery.slotsVoided, 1);
    for (let i = 0; i < 2; i++) {
      const later = open(nvm, se);
      assert.equal(
        later.records().some((r) => r.seq === probe.seq && r.type === next.type),
        kept,
      );
      assert.deepEqual(later.recovery.chainBreaks, []);
      assert.deepEqual(verifyEventChain(later.records(), publicKey).problems, []);
    }
  }
  assert.deepEqual([...outcomes].sort(), [false, true], "both decisions occur over the seeds");
});

test("a slot the scan saw as erased but is not (stuck bit) is voided and the append moves on", () => {
  const { nvm, se, publicKey } = setup();
  const log = open(nvm, se);
  const head = slotOf(nvm, log.records().at(-1)!);
  nvm.tamper(head + SLOT_BYTES + 40, Uint8Array.of(0x00)); // the next slot, unseen by the scan
  const record = log.append(event(1));
  assert.equal(slotOf(nvm, record), head + 2 * SLOT_BYTES);
  const after = open(nvm, se);
  assert.equal(after.recovery.tornSlots, 1);
  assert.deepEqual(verifyEventChain(after.records(), publicKey).problems, []);
});

test("the ring log runs on a FileNvm and recovers from the file", () => {
  const dir = mkdtempSync(join(tmpdir(), "amiproof-ring-"));
  try {
    const path = join(dir, "events.nvm");
    const se = new MemorySecureElement(METER, Uint8Array.of(9));
    const first = FileNvm.open(path, GEO);
    const log = open(first, se);
    const appended = [1, 2, 3].map((i) => log.append(event(i)));
    first.close();
    const second = FileNvm.open(path, GEO);
    const again = open(second, se);
    assert.deepEqual(
      again
        .records()
        .slice(1, 4)
        .map((r) => toHex(r.digest)),
      appended.map((r) => toHex(r.digest)),
    );
    assert.ok(second.wear().syncs > 0);
    second.close();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("power-cut property: ≥ 1,000 random cut points keep every invariant (fast-check)", () => {
  const cutsPerRun = Math.max(4, Math.ceil(1000 / RUNS));
  const total = emptyResult();
  fc.assert(
    fc.property(
      fc.integer({ min: 0, max: 2 ** 31 - 1 }),
      fc.nat(GEOMETRIES.length - 1),
      fc.integer({ min: 2, max: 5 }),
      (seed, g, sectors) => {
        addResults(
          total,
          runPowerCutCampaign({ seed, cuts: cutsPerRun, geometry: GEOMETRIES[g]!, regionSectors: sectors }),
        );
      },
    ),
    { numRuns: RUNS },
  );
  assert.ok(total.cutPoints >= 1000, `${total.cutPoints} cut points`);
  assert.ok(total.cutsMidErase > 0, "some cuts land inside a sector erase");
  assert.ok(total.tornSlotsSeen > 0);
});

test("ghost bit flips on read never make recovery accept a wrong record", () => {
  const total = emptyResult();
  fc.assert(
    fc.property(fc.integer({ min: 0, max: 2 ** 31 - 1 }), fc.nat(GEOMETRIES.length - 1), (seed, g) => {
      addResults(
        total,
        runPowerCutCampaign({
          seed,
          cuts: 20,
          geometry: GEOMETRIES[g]!,
          regionSectors: 4,
          readBitFlipRate: 2e-4,
        }),
      );
    }),
    { numRuns: Math.max(5, Math.ceil(RUNS / 15)) },
  );
  assert.ok(total.readBitFlips > 100, `${total.readBitFlips} flips`);
});

test("random garbage anywhere in the region never crashes recovery or gets accepted", () => {
  fc.assert(
    fc.property(
      fc.integer({ min: 0, max: 2 ** 31 - 1 }),
      fc.array(
        fc.record({ at: fc.nat(REGION.length - 1), bytes: fc.uint8Array({ minLength: 1, maxLength: 600 }) }),
        {
          maxLength: 6,
        },
      ),
      (seed, patches) => {
        const { nvm, se } = setup(seed);
        const log = open(nvm, se);
        const genuine = new Set<string>();
        for (let i = 0; i < 8; i++) genuine.add(toHex(log.append(event(i)).digest));
        for (const r of log.records()) genuine.add(toHex(r.digest));
        for (const { at, bytes } of patches)
          nvm.tamper(REGION.offset + at, bytes.subarray(0, REGION.length - at));
        const after = open(nvm, se);
        const records = after.records();
        for (const [i, r] of records.entries()) {
          const own = genuine.has(toHex(r.digest)) || r.timestampMs === clock;
          assert.ok(own, `accepted a record that was never sealed: seq ${r.seq}`);
          if (i > 0) assert.ok(r.seq > records[i - 1]!.seq);
        }
        const untouched = nvm.image();
        assert.ok(untouched.subarray(0, REGION.offset).every((b) => b === 0xff));
      },
    ),
    { numRuns: Math.min(RUNS, 150) },
  );
});
