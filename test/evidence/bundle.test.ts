import assert from "node:assert/strict";
import { test } from "node:test";
import fc from "fast-check";
import {
  type Batch,
  bundleKey,
  type EventRecord,
  type EvidenceBundle,
  encodeBundle,
  genesisDigest,
  LOG_WRAP_DROPPED_LAST_DIGEST,
  LOG_WRAP_DROPPED_SEQ_LAST,
  MemorySecureElement,
  sealEventRecord,
  sealReadingsBatch,
  toHex,
  verifyBundleText,
} from "../../src/evidence/index.ts";

const RUNS = Number(process.env.AMIPROOF_FUZZ_RUNS ?? 150);
const meter = new MemorySecureElement("MTR-1", Uint8Array.of(1));
const dcu = new MemorySecureElement("DCU-1", Uint8Array.of(2));

function eventChain(count: number, from = 1, prev = genesisDigest("MTR-1")): EventRecord[] {
  const records: EventRecord[] = [];
  for (let seq = from; seq < from + count; seq++) {
    const record = sealEventRecord(
      {
        meterId: "MTR-1",
        seq,
        type: seq % 3 === 0 ? "COVER_OPEN" : "POWER_UP",
        level: "INFO",
        timestampMs: 1_800_000_000_000 + seq * 1000,
        startMs: 1_800_000_000_000 + seq * 1000,
        endMs: null,
        timeQuality: "SYNCED",
        snapshot: { n: seq },
        prevDigest: prev,
      },
      (m) => meter.sign("event_seal", m),
    );
    records.push(record);
    prev = record.digest;
  }
  return records;
}

function batchChain(batches: number, perBatch: number): Batch[] {
  const out: Batch[] = [];
  let commitId = 1;
  let prev: Uint8Array | undefined;
  for (let b = 1; b <= batches; b++) {
    const readings = Array.from({ length: perBatch }, (_, i) => ({
      timestampMs: 1_800_000_000_000 + (b * perBatch + i) * 900_000,
      meterId: `MTR-${(i % 2) + 1}`,
      values: [{ obis: [1, 0, 1, 8, 0, 255] as const, value: 1000 + b * perBatch + i, scaler: 0, unit: 30 }],
      seq: (b - 1) * (perBatch / 2) + Math.floor(i / 2) + 1,
      commitId: commitId++,
      timeQuality: "SYNCED" as const,
    }));
    const batch = sealReadingsBatch(
      {
        batchId: b,
        dcuId: "DCU-1",
        epoch: 1,
        createdMs: 1_800_000_000_000 + b,
        readings,
        prevBatchHash: prev,
      },
      (m) => dcu.sign("batch_sign", m),
    );
    out.push(batch);
    prev = batch.header.batchHash;
  }
  return out;
}

function bundle(records: EventRecord[], batches: Batch[]): EvidenceBundle {
  const meterKey = bundleKey("MTR-1", "event_seal", meter.publicKey("event_seal"));
  const dcuKey = bundleKey("DCU-1", "batch_sign", dcu.publicKey("batch_sign"));
  return {
    keys: [meterKey, dcuKey],
    meterLogs: [{ meterId: "MTR-1", keyId: meterKey.keyId, records }],
    batchChains: [{ dcuId: "DCU-1", keyId: dcuKey.keyId, batches }],
  };
}

const records = eventChain(12);
const batches = batchChain(3, 8);
const validText = encodeBundle(bundle(records, batches));

test("a bundle of a sealed log and a batch chain verifies", () => {
  const report = verifyBundleText(validText);
  assert.deepEqual(report.problems, []);
  assert.equal(report.valid, true);
  assert.equal(report.counts.eventRecords, 12);
  assert.equal(report.counts.readings, 24);
});

test("a deleted, reordered or foreign record is named with its seq and reason", () => {
  const deleted = verifyBundleText(
    encodeBundle(bundle([...records.slice(0, 5), ...records.slice(6)], batches)),
  );
  assert.equal(deleted.valid, false);
  assert.equal(deleted.problems[0]?.code, "SEQ_GAP");
  assert.equal(deleted.problems[0]?.seq, 7);
  const swapped = [...records];
  [swapped[3], swapped[4]] = [swapped[4]!, swapped[3]!];
  assert.equal(verifyBundleText(encodeBundle(bundle(swapped, batches))).valid, false);
  const truncatedHead = verifyBundleText(encodeBundle(bundle(records.slice(3), batches)));
  assert.equal(truncatedHead.problems[0]?.code, "CHAIN_BREAK");
  assert.equal(truncatedHead.problems[0]?.seq, 4);
});

test("an overwritten head is accepted only when a LOG_WRAP record accounts for it", () => {
  const dropped = records.slice(0, 4);
  const kept = records.slice(4);
  const wrap = sealEventRecord(
    {
      meterId: "MTR-1",
      seq: 13,
      type: "LOG_WRAP",
      level: "INFO",
      timestampMs: 1_800_000_100_000,
      startMs: 1_800_000_100_000,
      endMs: null,
      timeQuality: "SYNCED",
      snapshot: {
        [LOG_WRAP_DROPPED_SEQ_LAST]: 4,
        [LOG_WRAP_DROPPED_LAST_DIGEST]: toHex(dropped[3]!.digest),
      },
      prevDigest: kept[kept.length - 1]!.digest,
    },
    (m) => meter.sign("event_seal", m),
  );
  const report = verifyBundleText(encodeBundle(bundle([...kept, wrap], batches)));
  assert.deepEqual(report.problems, []);
  assert.equal(report.gaps[0]?.class, "LOG_WRAP");
});

test("batch tampering: a dropped record breaks the Merkle root, a missing batch breaks the chain", () => {
  const edited = batches.map((b) => ({ ...b, records: [...b.records] }));
  edited[1]!.records.pop();
  const report = verifyBundleText(encodeBundle(bundle(records, edited)));
  assert.equal(report.valid, false);
  assert.ok(report.problems.some((p) => p.code === "BAD_MERKLE_ROOT"));
  const gap = verifyBundleText(encodeBundle(bundle(records, [batches[0]!, batches[2]!])));
  assert.equal(gap.problems[0]?.code, "CHAIN_BREAK");
});

test("a key swapped for another meter's key fails every signature", () => {
  const other = new MemorySecureElement("MTR-1", Uint8Array.of(99));
  const b = bundle(records, batches);
  const forgedKey = bundleKey("MTR-1", "event_seal", other.publicKey("event_seal"));
  const forged = {
    ...b,
    keys: [forgedKey, b.keys[1]!],
    meterLogs: [{ ...b.meterLogs[0]!, keyId: forgedKey.keyId }],
  };
  const report = verifyBundleText(encodeBundle(forged));
  assert.equal(report.problems[0]?.code, "BAD_SIGNATURE");
});

test("any single changed character of the signed content makes the bundle invalid", () => {
  // Positions inside hex strings longer than a key id: records, headers, public keys.
  const positions: number[] = [];
  const hexRun = /"([0-9a-f]{64,})"/g;
  for (let m = hexRun.exec(validText); m !== null; m = hexRun.exec(validText)) {
    for (let i = 0; i < m[1]!.length; i++) positions.push(m.index + 1 + i);
  }
  fc.assert(
    fc.property(fc.nat(positions.length - 1), fc.integer({ min: 1, max: 15 }), (pick, delta) => {
      const at = positions[pick]!;
      const digit = Number.parseInt(validText[at]!, 16);
      const changed = `${validText.slice(0, at)}${((digit + delta) % 16).toString(16)}${validText.slice(at + 1)}`;
      let valid: boolean;
      try {
        valid = verifyBundleText(changed).valid;
      } catch (error) {
        assert.equal((error as { name?: string }).name, "EvidenceError");
        valid = false;
      }
      assert.equal(valid, false, `change at offset ${at} went unnoticed`);
    }),
    { numRuns: RUNS },
  );
});

test("structurally broken bundles are typed errors", () => {
  assert.throws(() => verifyBundleText("{"), { code: "BAD_BUNDLE" });
  assert.throws(() => verifyBundleText(validText.replace('"format"', '"formatx"')), { code: "BAD_BUNDLE" });
  assert.throws(() => verifyBundleText(validText.replace('"version": 1', '"version": 2')), {
    code: "BAD_VERSION",
  });
  fc.assert(
    fc.property(fc.string({ maxLength: 200 }), (text) => {
      try {
        verifyBundleText(text);
      } catch (error) {
        assert.equal((error as { name?: string }).name, "EvidenceError");
      }
    }),
    { numRuns: RUNS },
  );
});
