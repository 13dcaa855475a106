import { ByteReader, ByteWriter, toHex } from "./bytes.ts";
import { crc32, P256_SIGNATURE_BYTES, p256Verify, SHA256_BYTES, sha256 } from "./crypto.ts";
import { EvidenceError } from "./errors.ts";

// Canonical binary encodings of the three evidence structures. Every structure starts with a 2-byte
// magic and a version byte so a decoder can refuse what it does not understand (BAD_MAGIC/BAD_VERSION)
// instead of misreading it. Integers are big-endian; timestamps are UTC milliseconds.

export const RECORD_FORMAT_VERSION = 1;

/** seed 003 H2-4: time_quality explains the time source of every timestamp. */
export type TimeQuality = "RTC_ONLY" | "SYNCED" | "HOLDOVER";
export const TIME_QUALITIES: readonly TimeQuality[] = ["RTC_ONLY", "SYNCED", "HOLDOVER"];

export type EventLevel = "INFO" | "MINOR" | "MAJOR" | "CRITICAL";
export const EVENT_LEVELS: readonly EventLevel[] = ["INFO", "MINOR", "MAJOR", "CRITICAL"];

/**
 * Event type codes on the wire. Codes are never reused; new types take new numbers.
 * Names are the seeds' own (002 H2-6, 000 rollback.log, 004 error codes).
 */
export const EVENT_TYPE_CODES = {
  POWER_UP: 1,
  POWER_DOWN: 2,
  TIME_STEP: 3,
  CAL_UPDATE: 4,
  CHAIN_BREAK: 5,
  LOG_WRAP: 6,
  RECOVERY: 7,
  BROWNOUT: 8,
  COMMIT_ONLY: 9,
  RESUME: 10,
  TIME_SYNC: 11,
  MAG_TAMPER: 16,
  NEUTRAL_MISS: 17,
  REV_CURRENT: 18,
  COVER_OPEN: 19,
  BYPASS_SUS: 20,
  INJECT_SUS: 21,
  FW_ROLLBACK: 22,
  TILT: 23,
  SIG_FAIL: 24,
  TAMPER_PENDING: 25,
  TAMPER_CLEARED: 26,
  // seed 002 Case 4/6: the magnetic field crossed its threshold without a supporting metrology anomaly.
  MAG_SUSPECT: 27,
  FW_UPDATE_RECEIVED: 32,
  FW_VERIFIED: 33,
  FW_ACTIVATED: 34,
  FW_CONFIRMED: 35,
  FW_ROLLED_BACK: 36,
  FW_REFUSED: 37,
  WDT_REBOOT_LOOP: 38,
  READING_SUMMARY: 64,
  COMMS_EVIDENCE: 65,
} as const;

export type EventType = keyof typeof EVENT_TYPE_CODES;
const EVENT_TYPE_BY_CODE = new Map<number, EventType>(
  Object.entries(EVENT_TYPE_CODES).map(([name, code]) => [code, name as EventType]),
);

export function isEventType(name: string): name is EventType {
  return Object.hasOwn(EVENT_TYPE_CODES, name);
}

export type SnapshotValue = number | string | boolean;
export type Snapshot = Readonly<Record<string, SnapshotValue>>;

/** seed 002 H2-7: a *small* metric snapshot; bounded so a record fits one log slot. */
export const SNAPSHOT_ENTRIES_MAX = 16;
export const SNAPSHOT_BYTES_MAX = 320;
export const METER_ID_BYTES_MAX = 64;

const EVENT_MAGIC = [0x45, 0x56]; // "EV"
const READING_MAGIC = [0x52, 0x44]; // "RD"
const BATCH_HEADER_MAGIC = [0x42, 0x48]; // "BH"
const BATCH_MAGIC = [0x42, 0x54]; // "BT"

// magic 2, version 1, type 2, level 1, time_quality 1, seq 4, timestamp 8, start 8, end 8,
// meter_id 1+64, snapshot 2+320, prev_digest 32, crc 4, signature 64
export const EVENT_RECORD_BYTES_MAX =
  2 + 1 + 2 + 1 + 1 + 4 + 8 * 3 + 1 + METER_ID_BYTES_MAX + 2 + SNAPSHOT_BYTES_MAX + 32 + 4 + 64;

/** The header + evidence snapshot + integrity layers of seed 002 H2-7's event record schema. */
export interface EventRecordFields {
  readonly meterId: string;
  readonly seq: number;
  readonly type: EventType;
  readonly level: EventLevel;
  readonly timestampMs: number;
  readonly startMs: number;
  /** null while the condition is still active. */
  readonly endMs: number | null;
  readonly timeQuality: TimeQuality;
  readonly snapshot: Snapshot;
  /** Digest of the previous record of this meter's log: deletion or insertion breaks the chain. */
  readonly prevDigest: Uint8Array;
}

export interface EventRecord extends EventRecordFields {
  readonly crc: number;
  readonly signature: Uint8Array;
  /** The whole encoded record. */
  readonly bytes: Uint8Array;
  /** The bytes the signature covers (everything up to and including the CRC). */
  readonly signedBytes: Uint8Array;
  /** SHA-256 of `bytes`: the next record's prevDigest. */
  readonly digest: Uint8Array;
}

const END_NONE = -1;
const SNAPSHOT_TAG = { int: 0, float: 1, text: 2, bool: 3 } as const;

function encodeSnapshot(snapshot: Snapshot): Uint8Array {
  const keys = Object.keys(snapshot).sort();
  if (keys.length > SNAPSHOT_ENTRIES_MAX) {
    throw new EvidenceError(
      "BAD_FIELD",
      `snapshot has ${keys.length} entries, at most ${SNAPSHOT_ENTRIES_MAX}`,
    );
  }
  const w = new ByteWriter(64);
  w.u8(keys.length);
  for (const key of keys) {
    const value = snapshot[key];
    w.text8(key, "snapshot key");
    if (typeof value === "boolean") w.u8(SNAPSHOT_TAG.bool).u8(value ? 1 : 0);
    else if (typeof value === "string") w.u8(SNAPSHOT_TAG.text).text8(value, `snapshot ${key}`);
    else if (typeof value === "number" && Number.isSafeInteger(value)) w.u8(SNAPSHOT_TAG.int).i64(value);
    else if (typeof value === "number" && Number.isFinite(value)) w.u8(SNAPSHOT_TAG.float).f64(value);
    else throw new EvidenceError("BAD_FIELD", `snapshot ${key} must be a finite number, string or boolean`);
  }
  const bytes = w.finish();
  if (bytes.length > SNAPSHOT_BYTES_MAX) {
    throw new EvidenceError(
      "BAD_FIELD",
      `snapshot encodes to ${bytes.length} bytes, at most ${SNAPSHOT_BYTES_MAX}`,
    );
  }
  return bytes;
}

function decodeSnapshot(bytes: Uint8Array): Snapshot {
  const r = new ByteReader(bytes, "event snapshot");
  const count = r.u8("entry count");
  if (count > SNAPSHOT_ENTRIES_MAX) {
    throw new EvidenceError("BAD_FIELD", `snapshot claims ${count} entries, at most ${SNAPSHOT_ENTRIES_MAX}`);
  }
  // Entries, not assignment: a key such as "__proto__" must stay data, never touch the prototype.
  const entries: [string, SnapshotValue][] = [];
  let previousKey: string | null = null;
  for (let i = 0; i < count; i++) {
    const key = r.text8("snapshot key");
    // Canonical form: strictly sorted keys, so one snapshot has exactly one encoding.
    if (previousKey !== null && key <= previousKey) {
      throw new EvidenceError("BAD_FIELD", `snapshot keys not in canonical order at "${key}"`);
    }
    previousKey = key;
    const tag = r.u8("snapshot value tag");
    if (tag === SNAPSHOT_TAG.int) entries.push([key, r.i64(key)]);
    else if (tag === SNAPSHOT_TAG.float) {
      const value = r.f64(key);
      if (!Number.isFinite(value) || Number.isSafeInteger(value)) {
        throw new EvidenceError("BAD_FIELD", `snapshot ${key}: float tag with non-canonical value ${value}`);
      }
      entries.push([key, value]);
    } else if (tag === SNAPSHOT_TAG.text) entries.push([key, r.text8(key)]);
    else if (tag === SNAPSHOT_TAG.bool) {
      const value = r.u8(key);
      if (value > 1) throw new EvidenceError("BAD_FIELD", `snapshot ${key}: boolean byte ${value}`);
      entries.push([key, value === 1]);
    } else throw new EvidenceError("BAD_FIELD", `snapshot ${key}: unknown value tag ${tag}`);
  }
  r.end();
  return Object.fromEntries(entries);
}

function checkMeterId(meterId: string): void {
  const length = new TextEncoder().encode(meterId).length;
  if (length === 0 || length > METER_ID_BYTES_MAX) {
    throw new EvidenceError(
      "BAD_FIELD",
      `meter_id must be 1..${METER_ID_BYTES_MAX} bytes of UTF-8, got ${length}`,
    );
  }
}

function checkSeq(seq: number, what: string): void {
  if (!Number.isInteger(seq) || seq < 1 || seq > 0xffff_ffff) {
    throw new EvidenceError("BAD_FIELD", `${what} must be an integer in 1..2^32-1, got ${seq}`);
  }
}

/** The prev_digest of a meter's first record: binds the chain to the meter identity. */
export function genesisDigest(meterId: string): Uint8Array {
  return sha256(new TextEncoder().encode(`amiproof/event-log-genesis/${meterId}`));
}

/** Encodes, checksums and signs one event record. `sign` is normally `(m) => se.sign("event_seal", m)`. */
export function sealEventRecord(
  fields: EventRecordFields,
  sign: (message: Uint8Array) => Uint8Array,
): EventRecord {
  checkMeterId(fields.meterId);
  checkSeq(fields.seq, "seq");
  if (fields.prevDigest.length !== SHA256_BYTES) {
    throw new EvidenceError("BAD_FIELD", `prev_digest must be ${SHA256_BYTES} bytes`);
  }
  if (fields.endMs !== null && fields.endMs < fields.startMs) {
    throw new EvidenceError("BAD_FIELD", `end ${fields.endMs} before start ${fields.startMs}`);
  }
  const w = new ByteWriter(256);
  w.bytes(Uint8Array.from(EVENT_MAGIC)).u8(RECORD_FORMAT_VERSION);
  w.u16(EVENT_TYPE_CODES[fields.type]);
  w.u8(EVENT_LEVELS.indexOf(fields.level));
  w.u8(TIME_QUALITIES.indexOf(fields.timeQuality));
  w.u32(fields.seq);
  w.i64(fields.timestampMs)
    .i64(fields.startMs)
    .i64(fields.endMs ?? END_NONE);
  w.text8(fields.meterId, "meter_id");
  w.bytes16(encodeSnapshot(fields.snapshot), "snapshot");
  w.bytes(fields.prevDigest);
  const body = w.finish();
  const crc = crc32(body);
  w.u32(crc);
  const signedBytes = w.finish();
  const signature = sign(signedBytes);
  w.fixed(signature, P256_SIGNATURE_BYTES, "signature");
  const bytes = w.finish();
  return {
    ...fields,
    snapshot: { ...fields.snapshot },
    crc,
    signature,
    bytes,
    signedBytes,
    digest: sha256(bytes),
  };
}

export function decodeEventRecord(bytes: Uint8Array): EventRecord {
  if (bytes.length > EVENT_RECORD_BYTES_MAX) {
    throw new EvidenceError(
      "BAD_FIELD",
      `event record of ${bytes.length} bytes exceeds ${EVENT_RECORD_BYTES_MAX}`,
    );
  }
  const r = new ByteReader(bytes, "event record");
  checkMagic(r, EVENT_MAGIC, "event record");
  const typeCode = r.u16("type");
  const type = EVENT_TYPE_BY_CODE.get(typeCode);
  if (type === undefined)
    throw new EvidenceError("BAD_FIELD", `unknown event type code ${typeCode}`, "byte 3");
  const level = EVENT_LEVELS[r.u8("level")];
  if (level === undefined) throw new EvidenceError("BAD_FIELD", "unknown event level", "byte 5");
  const timeQuality = TIME_QUALITIES[r.u8("time_quality")];
  if (timeQuality === undefined) throw new EvidenceError("BAD_FIELD", "unknown time_quality", "byte 6");
  const seq = r.u32("seq");
  const timestampMs = r.i64("timestamp");
  const startMs = r.i64("start");
  const endRaw = r.i64("end");
  const meterId = r.text8("meter_id");
  const snapshot = decodeSnapshot(r.bytes16("snapshot"));
  const prevDigest = r.bytes(SHA256_BYTES, "prev_digest");
  const crcAt = r.position;
  const crc = r.u32("crc");
  const signedBytes = bytes.slice(0, r.position);
  const signature = r.bytes(P256_SIGNATURE_BYTES, "signature");
  r.end();
  const computed = crc32(bytes.subarray(0, crcAt));
  if (computed !== crc) {
    throw new EvidenceError(
      "BAD_CRC",
      `event record CRC ${hex32(crc)} != computed ${hex32(computed)}`,
      `seq ${seq}`,
    );
  }
  // CRC passed: field-level rules now say the writer was wrong, not the medium.
  checkMeterId(meterId);
  checkSeq(seq, "seq");
  const endMs = endRaw === END_NONE ? null : endRaw;
  if (endMs !== null && endMs < startMs) {
    throw new EvidenceError("BAD_FIELD", `end ${endMs} before start ${startMs}`, `seq ${seq}`);
  }
  const copy = bytes.slice();
  return {
    meterId,
    seq,
    type,
    level,
    timestampMs,
    startMs,
    endMs,
    timeQuality,
    snapshot,
    prevDigest,
    crc,
    signature,
    bytes: copy,
    signedBytes,
    digest: sha256(copy),
  };
}

export function verifyEventSignature(record: EventRecord, publicKey: Uint8Array): boolean {
  return p256Verify(publicKey, record.signedBytes, record.signature);
}

export function eventRecordToJson(record: EventRecord): Record<string, unknown> {
  return {
    meter_id: record.meterId,
    seq: record.seq,
    type: record.type,
    level: record.level,
    timestamp: new Date(record.timestampMs).toISOString(),
    timestamp_ms: record.timestampMs,
    start_ms: record.startMs,
    end_ms: record.endMs,
    time_quality: record.timeQuality,
    snapshot: record.snapshot,
    prev_digest: toHex(record.prevDigest),
    crc: hex32(record.crc),
    signature: toHex(record.signature),
    digest: toHex(record.digest),
  };
}

// ───────────────────────────── reading record ─────────────────────────────

/** One measured quantity: an integer with a decimal scaler and a DLMS unit code (IEC 62056-6-2 scaler_unit). */
export interface ReadingValue {
  /** OBIS code as 6 bytes, e.g. 1.0.1.8.0.255 = active energy import. */
  readonly obis: readonly [number, number, number, number, number, number];
  readonly value: number;
  readonly scaler: number;
  readonly unit: number;
}

export const READING_VALUES_MAX = 16;
export const READING_RECORD_BYTES_MAX =
  2 + 1 + 8 + 1 + METER_ID_BYTES_MAX + 4 + 8 + 1 + 1 + READING_VALUES_MAX * 16 + 4;

/** seed 003 H2-4: timestamp · meter_id · value · seq · CRC · commit_id · time_quality. */
export interface ReadingRecordFields {
  readonly timestampMs: number;
  readonly meterId: string;
  readonly values: readonly ReadingValue[];
  /** The meter's own sequence number: proves capture continuity. */
  readonly seq: number;
  /** From the concentrator's journal: proves storage atomicity. */
  readonly commitId: number;
  readonly timeQuality: TimeQuality;
}

export interface ReadingRecord extends ReadingRecordFields {
  readonly crc: number;
  readonly bytes: Uint8Array;
}

export function encodeReadingRecord(fields: ReadingRecordFields): ReadingRecord {
  checkMeterId(fields.meterId);
  checkSeq(fields.seq, "seq");
  if (!Number.isSafeInteger(fields.commitId) || fields.commitId < 1) {
    throw new EvidenceError("BAD_FIELD", `commit_id must be a positive integer, got ${fields.commitId}`);
  }
  if (fields.values.length < 1 || fields.values.length > READING_VALUES_MAX) {
    throw new EvidenceError(
      "BAD_FIELD",
      `a reading carries 1..${READING_VALUES_MAX} values, got ${fields.values.length}`,
    );
  }
  const w = new ByteWriter(96);
  w.bytes(Uint8Array.from(READING_MAGIC)).u8(RECORD_FORMAT_VERSION);
  w.i64(fields.timestampMs);
  w.text8(fields.meterId, "meter_id");
  w.u32(fields.seq).u64(fields.commitId).u8(TIME_QUALITIES.indexOf(fields.timeQuality));
  w.u8(fields.values.length);
  for (const v of fields.values) {
    if (v.obis.length !== 6) throw new EvidenceError("BAD_FIELD", "OBIS code must have 6 groups");
    for (const group of v.obis) w.u8(group);
    w.i64(v.value).i8(v.scaler).u8(v.unit);
  }
  const crc = crc32(w.finish());
  w.u32(crc);
  return { ...fields, values: fields.values.map((v) => ({ ...v })), crc, bytes: w.finish() };
}

export function decodeReadingRecord(bytes: Uint8Array): ReadingRecord {
  if (bytes.length > READING_RECORD_BYTES_MAX) {
    throw new EvidenceError(
      "BAD_FIELD",
      `reading record of ${bytes.length} bytes exceeds ${READING_RECORD_BYTES_MAX}`,
    );
  }
  const r = new ByteReader(bytes, "reading record");
  checkMagic(r, READING_MAGIC, "reading record");
  const timestampMs = r.i64("timestamp");
  const meterId = r.text8("meter_id");
  const seq = r.u32("seq");
  const commitId = r.u64("commit_id");
  const timeQuality = TIME_QUALITIES[r.u8("time_quality")];
  const count = r.u8("value count");
  const values: ReadingValue[] = [];
  for (let i = 0; i < count && i < READING_VALUES_MAX; i++) {
    const obis = [
      r.u8("obis"),
      r.u8("obis"),
      r.u8("obis"),
      r.u8("obis"),
      r.u8("obis"),
      r.u8("obis"),
    ] as const;
    values.push({ obis, value: r.i64("value"), scaler: r.i8("scaler"), unit: r.u8("unit") });
  }
  if (count > READING_VALUES_MAX) {
    throw new EvidenceError("BAD_FIELD", `reading claims ${count} values, at most ${READING_VALUES_MAX}`);
  }
  const crcAt = r.position;
  const crc = r.u32("crc");
  r.end();
  const computed = crc32(bytes.subarray(0, crcAt));
  if (computed !== crc) {
    throw new EvidenceError(
      "BAD_CRC",
      `reading CRC ${hex32(crc)} != computed ${hex32(computed)}`,
      `${meterId} seq ${seq}`,
    );
  }
  if (timeQuality === undefined)
    throw new EvidenceError("BAD_FIELD", "unknown time_quality", `${meterId} seq ${seq}`);
  checkMeterId(meterId);
  checkSeq(seq, "seq");
  if (commitId < 1) throw new EvidenceError("BAD_FIELD", "commit_id 0", `${meterId} seq ${seq}`);
  if (count < 1) throw new EvidenceError("BAD_FIELD", "reading without values", `${meterId} seq ${seq}`);
  return { timestampMs, meterId, values, seq, commitId, timeQuality, crc, bytes: bytes.slice() };
}

export function obisToString(obis: readonly number[]): string {
  return obis.join(".");
}

export function readingRecordToJson(record: ReadingRecord): Record<string, unknown> {
  return {
    timestamp: new Date(record.timestampMs).toISOString(),
    timestamp_ms: record.timestampMs,
    meter_id: record.meterId,
    values: record.values.map((v) => ({
      obis: obisToString(v.obis),
      value: v.value,
      scaler: v.scaler,
      unit: v.unit,
    })),
    seq: record.seq,
    crc: hex32(record.crc),
    commit_id: record.commitId,
    time_quality: record.timeQuality,
  };
}

// ───────────────────────────── batch header ─────────────────────────────

export const BATCH_RECORDS_MAX = 4096;
export const BATCH_METERS_MAX = 1024;
export const DCU_ID_BYTES_MAX = 64;

export interface MeterSeqRange {
  readonly meterId: string;
  readonly seqFirst: number;
  readonly seqLast: number;
  /** Records of this meter in the batch; less than the range width means a SEQ_GAP inside the batch. */
  readonly count: number;
}

export interface BatchHeaderFields {
  readonly batchId: number;
  readonly dcuId: string;
  /** Recovery epoch of the concentrator's journal when the batch was sealed. */
  readonly epoch: number;
  readonly commitIdFirst: number;
  readonly commitIdLast: number;
  readonly count: number;
  readonly createdMs: number;
  readonly meterRanges: readonly MeterSeqRange[];
  /** RFC 9162 Merkle tree head over the encoded reading records, in batch order. */
  readonly merkleRoot: Uint8Array;
  /** batch_hash of the previous batch of this concentrator: a missing batch breaks the chain. */
  readonly prevBatchHash: Uint8Array;
}

export interface BatchHeader extends BatchHeaderFields {
  readonly signature: Uint8Array;
  readonly bytes: Uint8Array;
  readonly signedBytes: Uint8Array;
  /** seed 003 H2-4 batch_hash: SHA-256 of the encoded header including its signature. */
  readonly batchHash: Uint8Array;
}

/** prev_batch_hash of a concentrator's first batch. */
export function batchGenesisHash(dcuId: string): Uint8Array {
  return sha256(new TextEncoder().encode(`amiproof/batch-chain-genesis/${dcuId}`));
}

export function sealBatchHeader(
  fields: BatchHeaderFields,
  sign: (message: Uint8Array) => Uint8Array,
): BatchHeader {
  const dcuLength = new TextEncoder().encode(fields.dcuId).length;
  if (dcuLength === 0 || dcuLength > DCU_ID_BYTES_MAX) {
    throw new EvidenceError("BAD_FIELD", `dcu_id must be 1..${DCU_ID_BYTES_MAX} bytes`);
  }
  if (fields.count < 1 || fields.count > BATCH_RECORDS_MAX) {
    throw new EvidenceError("BAD_FIELD", `batch count must be 1..${BATCH_RECORDS_MAX}, got ${fields.count}`);
  }
  if (fields.meterRanges.length > BATCH_METERS_MAX) {
    throw new EvidenceError(
      "BAD_FIELD",
      `batch spans ${fields.meterRanges.length} meters, at most ${BATCH_METERS_MAX}`,
    );
  }
  if (fields.commitIdFirst < 1 || fields.commitIdLast < fields.commitIdFirst) {
    throw new EvidenceError(
      "BAD_FIELD",
      `commit_id range ${fields.commitIdFirst}..${fields.commitIdLast} is invalid`,
    );
  }
  const w = new ByteWriter(256 + fields.meterRanges.length * 24);
  w.bytes(Uint8Array.from(BATCH_HEADER_MAGIC)).u8(RECORD_FORMAT_VERSION);
  w.u64(fields.batchId).text8(fields.dcuId, "dcu_id").u32(fields.epoch);
  w.u64(fields.commitIdFirst).u64(fields.commitIdLast).u32(fields.count).i64(fields.createdMs);
  w.u16(fields.meterRanges.length);
  for (const range of fields.meterRanges) {
    checkMeterId(range.meterId);
    checkSeq(range.seqFirst, "seq_first");
    checkSeq(range.seqLast, "seq_last");
    w.text8(range.meterId, "meter_id").u32(range.seqFirst).u32(range.seqLast).u32(range.count);
  }
  w.fixed(fields.merkleRoot, SHA256_BYTES, "merkle_root");
  w.fixed(fields.prevBatchHash, SHA256_BYTES, "prev_batch_hash");
  const signedBytes = w.finish();
  const signature = sign(signedBytes);
  w.fixed(signature, P256_SIGNATURE_BYTES, "signature");
  const bytes = w.finish();
  return {
    ...fields,
    meterRanges: fields.meterRanges.map((range) => ({ ...range })),
    signature,
    bytes,
    signedBytes,
    batchHash: sha256(bytes),
  };
}

export function decodeBatchHeader(bytes: Uint8Array): BatchHeader {
  const r = new ByteReader(bytes, "batch header");
  checkMagic(r, BATCH_HEADER_MAGIC, "batch header");
  const batchId = r.u64("batch_id");
  const dcuId = r.text8("dcu_id");
  if (dcuId.length === 0) throw new EvidenceError("BAD_FIELD", "empty dcu_id");
  const epoch = r.u32("epoch");
  const commitIdFirst = r.u64("commit_id_first");
  const commitIdLast = r.u64("commit_id_last");
  const count = r.u32("count");
  const createdMs = r.i64("created");
  const rangeCount = r.u16("meter range count");
  if (rangeCount > BATCH_METERS_MAX) {
    throw new EvidenceError(
      "BAD_FIELD",
      `batch claims ${rangeCount} meter ranges, at most ${BATCH_METERS_MAX}`,
    );
  }
  const meterRanges: MeterSeqRange[] = [];
  for (let i = 0; i < rangeCount; i++) {
    meterRanges.push({
      meterId: r.text8("meter_id"),
      seqFirst: r.u32("seq_first"),
      seqLast: r.u32("seq_last"),
      count: r.u32("count"),
    });
  }
  const merkleRoot = r.bytes(SHA256_BYTES, "merkle_root");
  const prevBatchHash = r.bytes(SHA256_BYTES, "prev_batch_hash");
  const signedBytes = bytes.slice(0, r.position);
  const signature = r.bytes(P256_SIGNATURE_BYTES, "signature");
  r.end();
  if (count < 1 || count > BATCH_RECORDS_MAX)
    throw new EvidenceError("BAD_FIELD", `batch count ${count} out of range`);
  if (commitIdFirst < 1 || commitIdLast < commitIdFirst) {
    throw new EvidenceError("BAD_FIELD", `commit_id range ${commitIdFirst}..${commitIdLast} is invalid`);
  }
  const copy = bytes.slice();
  return {
    batchId,
    dcuId,
    epoch,
    commitIdFirst,
    commitIdLast,
    count,
    createdMs,
    meterRanges,
    merkleRoot,
    prevBatchHash,
    signature,
    bytes: copy,
    signedBytes,
    batchHash: sha256(copy),
  };
}

export function verifyBatchHeaderSignature(header: BatchHeader, publicKey: Uint8Array): boolean {
  return p256Verify(publicKey, header.signedBytes, header.signature);
}

export function batchHeaderToJson(header: BatchHeader): Record<string, unknown> {
  return {
    batch_id: header.batchId,
    dcu_id: header.dcuId,
    epoch: header.epoch,
    commit_id_first: header.commitIdFirst,
    commit_id_last: header.commitIdLast,
    count: header.count,
    created: new Date(header.createdMs).toISOString(),
    meter_ranges: header.meterRanges.map((r) => ({
      meter_id: r.meterId,
      seq_first: r.seqFirst,
      seq_last: r.seqLast,
      count: r.count,
    })),
    merkle_root: toHex(header.merkleRoot),
    prev_batch_hash: toHex(header.prevBatchHash),
    signature: toHex(header.signature),
    batch_hash: toHex(header.batchHash),
  };
}

// ───────────────────────────── batch frame (header + records) ─────────────────────────────

export interface Batch {
  readonly header: BatchHeader;
  readonly records: readonly ReadingRecord[];
}

/** The MQTT payload on ami/<dcu>/batches: magic, version, header, then length-prefixed reading records. */
export function encodeBatch(batch: Batch): Uint8Array {
  const w = new ByteWriter(batch.header.bytes.length + batch.records.length * 80 + 16);
  w.bytes(Uint8Array.from(BATCH_MAGIC)).u8(RECORD_FORMAT_VERSION);
  w.u32(batch.header.bytes.length).bytes(batch.header.bytes);
  w.u32(batch.records.length);
  for (const record of batch.records) w.bytes16(record.bytes, "reading record");
  return w.finish();
}

export function decodeBatch(bytes: Uint8Array): Batch {
  const r = new ByteReader(bytes, "batch");
  checkMagic(r, BATCH_MAGIC, "batch");
  const headerLength = r.u32("header length");
  if (headerLength > r.remaining) {
    throw new EvidenceError("TRUNCATED", `batch header claims ${headerLength} bytes, ${r.remaining} left`);
  }
  const header = decodeBatchHeader(r.bytes(headerLength, "header"));
  const count = r.u32("record count");
  if (count !== header.count) {
    throw new EvidenceError("BAD_FIELD", `batch frame holds ${count} records, header says ${header.count}`);
  }
  const records: ReadingRecord[] = [];
  for (let i = 0; i < count; i++) records.push(decodeReadingRecord(r.bytes16("reading record")));
  r.end();
  return { header, records };
}

function checkMagic(r: ByteReader, magic: readonly number[], what: string): void {
  const a = r.u8("magic");
  const b = r.u8("magic");
  if (a !== magic[0] || b !== magic[1]) {
    throw new EvidenceError("BAD_MAGIC", `not a ${what} (magic ${hex8(a)}${hex8(b)})`, "byte 0");
  }
  const version = r.u8("version");
  if (version !== RECORD_FORMAT_VERSION) {
    throw new EvidenceError(
      "BAD_VERSION",
      `${what} version ${version}, this build reads ${RECORD_FORMAT_VERSION}`,
      "byte 2",
    );
  }
}

function hex32(value: number): string {
  return `0x${value.toString(16).padStart(8, "0")}`;
}

function hex8(value: number): string {
  return value.toString(16).padStart(2, "0");
}
