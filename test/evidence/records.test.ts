import assert from "node:assert/strict";
import { test } from "node:test";
import fc from "fast-check";
import {
  type BatchHeaderFields,
  batchGenesisHash,
  decodeBatch,
  decodeBatchHeader,
  decodeEventRecord,
  decodeReadingRecord,
  EVENT_RECORD_BYTES_MAX,
  type EventRecordFields,
  EvidenceError,
  encodeBatch,
  encodeReadingRecord,
  genesisDigest,
  MemorySecureElement,
  merkleRoot,
  type ReadingRecordFields,
  sealBatchHeader,
  sealEventRecord,
  verifyBatchHeaderSignature,
  verifyEventSignature,
} from "../../src/evidence/index.ts";

const RUNS = Number(process.env.AMIPROOF_FUZZ_RUNS ?? 300);
const se = new MemorySecureElement("meter-1", Uint8Array.of(1, 2, 3));
const sign = (m: Uint8Array) => se.sign("event_seal", m);

const baseEvent: EventRecordFields = {
  meterId: "MTR-000123",
  seq: 7,
  type: "MAG_TAMPER",
  level: "MAJOR",
  timestampMs: 1_790_000_000_000,
  startMs: 1_789_999_990_000,
  endMs: null,
  timeQuality: "SYNCED",
  snapshot: { field_mt: 63, pf: 0.42, pf_anomaly: true, code: "0x09" },
  prevDigest: genesisDigest("MTR-000123"),
};

const baseReading: ReadingRecordFields = {
  timestampMs: 1_790_000_000_000,
  meterId: "MTR-000123",
  values: [
    { obis: [1, 0, 1, 8, 0, 255], value: 1234567, scaler: 0, unit: 30 },
    { obis: [1, 0, 2, 8, 0, 255], value: 89, scaler: 0, unit: 30 },
  ],
  seq: 42,
  commitId: 1001,
  timeQuality: "HOLDOVER",
};

function sealedBatch(records = 3) {
  const readings = Array.from({ length: records }, (_, i) =>
    encodeReadingRecord({ ...baseReading, seq: 42 + i, commitId: 1001 + i }),
  );
  const fields: BatchHeaderFields = {
    batchId: 17,
    dcuId: "DCU-7",
    epoch: 2,
    commitIdFirst: 1001,
    commitIdLast: 1000 + records,
    count: records,
    createdMs: 1_790_000_001_000,
    meterRanges: [{ meterId: "MTR-000123", seqFirst: 42, seqLast: 41 + records, count: records }],
    merkleRoot: merkleRoot(readings.map((r) => r.bytes)),
    prevBatchHash: batchGenesisHash("DCU-7"),
  };
  const header = sealBatchHeader(fields, (m) => se.sign("batch_sign", m));
  return { header, records: readings };
}

test("event record round-trips, signs and chains", () => {
  const record = sealEventRecord(baseEvent, sign);
  assert.ok(record.bytes.length <= EVENT_RECORD_BYTES_MAX);
  const decoded = decodeEventRecord(record.bytes);
  assert.deepEqual(decoded.snapshot, baseEvent.snapshot);
  assert.equal(decoded.type, "MAG_TAMPER");
  assert.equal(decoded.endMs, null);
  assert.deepEqual(decoded.digest, record.digest);
  assert.ok(verifyEventSignature(decoded, se.publicKey("event_seal")));
  // A signature by another purpose's key must not verify: keys are per purpose.
  assert.equal(verifyEventSignature(decoded, se.publicKey("batch_sign")), false);
  const next = sealEventRecord({ ...baseEvent, seq: 8, prevDigest: record.digest }, sign);
  assert.deepEqual(decodeEventRecord(next.bytes).prevDigest, record.digest);
});

test("one flipped bit anywhere in an event record is caught (CRC or signature)", () => {
  const record = sealEventRecord(baseEvent, sign);
  const key = se.publicKey("event_seal");
  for (let i = 0; i < record.bytes.length; i++) {
    const bad = record.bytes.slice();
    bad[i]! ^= 0x10;
    let caught = false;
    try {
      const decoded = decodeEventRecord(bad);
      caught = !verifyEventSignature(decoded, key);
    } catch (error) {
      assert.ok(error instanceof EvidenceError, `byte ${i}: ${String(error)}`);
      caught = true;
    }
    assert.ok(caught, `flip at byte ${i} went unnoticed`);
  }
});

test("event records refuse bad fields on encode", () => {
  assert.throws(() => sealEventRecord({ ...baseEvent, seq: 0 }, sign), { code: "BAD_FIELD" });
  assert.throws(() => sealEventRecord({ ...baseEvent, meterId: "" }, sign), { code: "BAD_FIELD" });
  assert.throws(() => sealEventRecord({ ...baseEvent, endMs: baseEvent.startMs - 1 }, sign), {
    code: "BAD_FIELD",
  });
  assert.throws(() => sealEventRecord({ ...baseEvent, snapshot: { x: Number.NaN } }, sign), {
    code: "BAD_FIELD",
  });
  const big = Object.fromEntries(Array.from({ length: 17 }, (_, i) => [`k${i}`, i]));
  assert.throws(() => sealEventRecord({ ...baseEvent, snapshot: big }, sign), { code: "BAD_FIELD" });
});

test("decoders name the problem: magic, version, truncation, trailing bytes, CRC", () => {
  const record = sealEventRecord(baseEvent, sign);
  const wrongMagic = record.bytes.slice();
  wrongMagic[0] = 0;
  assert.throws(() => decodeEventRecord(wrongMagic), { code: "BAD_MAGIC" });
  const wrongVersion = record.bytes.slice();
  wrongVersion[2] = 9;
  assert.throws(() => decodeEventRecord(wrongVersion), { code: "BAD_VERSION" });
  assert.throws(() => decodeEventRecord(record.bytes.subarray(0, 40)), { code: "TRUNCATED" });
  const reading = encodeReadingRecord(baseReading);
  assert.throws(() => decodeReadingRecord(Uint8Array.of(...reading.bytes, 0)), { code: "TRAILING_BYTES" });
  const badCrc = reading.bytes.slice();
  badCrc[10]! ^= 1;
  assert.throws(() => decodeReadingRecord(badCrc), { code: "BAD_CRC" });
});

test("reading record round-trips with all schema fields of seed 003 H2-4", () => {
  const record = encodeReadingRecord(baseReading);
  const decoded = decodeReadingRecord(record.bytes);
  assert.equal(decoded.meterId, baseReading.meterId);
  assert.equal(decoded.seq, 42);
  assert.equal(decoded.commitId, 1001);
  assert.equal(decoded.timeQuality, "HOLDOVER");
  assert.equal(decoded.crc, record.crc);
  assert.deepEqual(decoded.values, baseReading.values);
});

test("batch header and batch frame round-trip; signature binds every field", () => {
  const batch = sealedBatch(5);
  const decoded = decodeBatch(encodeBatch(batch));
  assert.equal(decoded.records.length, 5);
  assert.deepEqual(decoded.header.batchHash, batch.header.batchHash);
  assert.ok(verifyBatchHeaderSignature(decoded.header, se.publicKey("batch_sign")));
  assert.deepEqual(decoded.header.merkleRoot, merkleRoot(decoded.records.map((r) => r.bytes)));
  for (let i = 0; i < batch.header.signedBytes.length; i++) {
    const bad = batch.header.bytes.slice();
    bad[i]! ^= 0x01;
    let caught = false;
    try {
      caught = !verifyBatchHeaderSignature(decodeBatchHeader(bad), se.publicKey("batch_sign"));
    } catch (error) {
      assert.ok(error instanceof EvidenceError);
      caught = true;
    }
    assert.ok(caught, `flip at header byte ${i} went unnoticed`);
  }
});

test("record and property round-trip for arbitrary valid readings and events", () => {
  const obis = fc.tuple(fc.nat(255), fc.nat(255), fc.nat(255), fc.nat(255), fc.nat(255), fc.nat(255));
  fc.assert(
    fc.property(
      fc.record({
        timestampMs: fc.integer({ min: -1e15, max: 1e15 }),
        meterId: fc.string({ minLength: 1, maxLength: 20 }),
        values: fc.array(
          fc.record({
            obis,
            value: fc.maxSafeInteger(),
            scaler: fc.integer({ min: -128, max: 127 }),
            unit: fc.nat(255),
          }),
          { minLength: 1, maxLength: 16 },
        ),
        seq: fc.integer({ min: 1, max: 0xffff_ffff }),
        commitId: fc.integer({ min: 1, max: Number.MAX_SAFE_INTEGER }),
        timeQuality: fc.constantFrom("RTC_ONLY", "SYNCED", "HOLDOVER"),
      }),
      (fields) => {
        const decoded = decodeReadingRecord(encodeReadingRecord(fields as ReadingRecordFields).bytes);
        assert.deepEqual(decoded.values, JSON.parse(JSON.stringify(fields.values)));
        assert.equal(decoded.meterId, fields.meterId);
      },
    ),
    { numRuns: RUNS },
  );
  fc.assert(
    fc.property(
      fc.dictionary(
        fc.string({ minLength: 1, maxLength: 8 }),
        fc.oneof(
          fc.integer(),
          fc.boolean(),
          fc.string({ maxLength: 8 }),
          fc.double({ noNaN: true, noDefaultInfinity: true }),
        ),
        { maxKeys: 8 },
      ),
      (snapshot) => {
        const record = sealEventRecord({ ...baseEvent, snapshot }, () => new Uint8Array(64));
        const decoded = decodeEventRecord(record.bytes);
        // -0 is an integer-valued float: it encodes as the integer 0.
        assert.deepEqual(decoded.snapshot, JSON.parse(JSON.stringify(snapshot)));
      },
    ),
    { numRuns: RUNS },
  );
});

function onlyEvidenceErrors(decode: (bytes: Uint8Array) => unknown, valid: Uint8Array): void {
  const attempt = (bytes: Uint8Array) => {
    try {
      decode(bytes);
    } catch (error) {
      if (!(error instanceof EvidenceError)) throw error;
    }
  };
  fc.assert(fc.property(fc.uint8Array({ maxLength: 600 }), attempt), { numRuns: RUNS });
  fc.assert(
    fc.property(
      fc.array(fc.tuple(fc.nat(), fc.nat(255)), { minLength: 1, maxLength: 6 }),
      fc.nat(),
      (edits, cut) => {
        const bytes = valid.slice();
        for (const [at, value] of edits) bytes[at % bytes.length] = value;
        attempt(bytes);
        attempt(bytes.subarray(0, cut % (bytes.length + 1)));
      },
    ),
    { numRuns: RUNS },
  );
}

test("fuzz: every evidence decoder throws only EvidenceError on random and mutated bytes", () => {
  const batch = sealedBatch(3);
  onlyEvidenceErrors(decodeEventRecord, sealEventRecord(baseEvent, sign).bytes);
  onlyEvidenceErrors(decodeReadingRecord, encodeReadingRecord(baseReading).bytes);
  onlyEvidenceErrors(decodeBatchHeader, batch.header.bytes);
  onlyEvidenceErrors(decodeBatch, encodeBatch(batch));
});
