import { bytesEqual, toHex } from "./bytes.ts";
import { EvidenceError, type EvidenceErrorCode } from "./errors.ts";
import { merkleRoot } from "./merkle.ts";
import {
  type Batch,
  type BatchHeader,
  batchGenesisHash,
  encodeReadingRecord,
  type MeterSeqRange,
  type ReadingRecord,
  type ReadingRecordFields,
  sealBatchHeader,
  verifyBatchHeaderSignature,
} from "./records.ts";

/** One reason a piece of evidence does not hold, pointing at the first record concerned. */
export interface EvidenceProblem {
  readonly code: EvidenceErrorCode;
  readonly message: string;
  /** Human pointer: "batch 17 record 3 (MTR-1 seq 45)". */
  readonly where: string;
  readonly seq?: number;
  readonly meterId?: string;
}

/**
 * Everything a receiver can check about one batch on its own: signature, Merkle root over the records,
 * count, commit_id range and order, per-meter seq ranges. Record CRCs were checked when decoding.
 * Chaining to the previous batch needs the receiver's state: pass `prevBatchHash` to check it.
 */
export function verifyBatch(
  batch: Batch,
  publicKey: Uint8Array,
  prevBatchHash?: Uint8Array,
): EvidenceProblem[] {
  const { header, records } = batch;
  const at = `batch ${header.batchId} of ${header.dcuId}`;
  const problems: EvidenceProblem[] = [];
  if (!verifyBatchHeaderSignature(header, publicKey)) {
    problems.push({
      code: "BAD_SIGNATURE",
      message: "batch signature does not verify with the concentrator key",
      where: at,
    });
    return problems; // nothing else in an unauthenticated header is worth reporting
  }
  if (prevBatchHash !== undefined && !bytesEqual(prevBatchHash, header.prevBatchHash)) {
    problems.push({
      code: "CHAIN_BREAK",
      message: `prev_batch_hash ${toHex(header.prevBatchHash).slice(0, 16)}… does not match the previous batch ${toHex(prevBatchHash).slice(0, 16)}…`,
      where: at,
    });
  }
  if (records.length !== header.count) {
    problems.push({
      code: "BAD_FIELD",
      message: `header count ${header.count}, batch holds ${records.length}`,
      where: at,
    });
  }
  const root = merkleRoot(records.map((r) => r.bytes));
  if (!bytesEqual(root, header.merkleRoot)) {
    problems.push({
      code: "BAD_MERKLE_ROOT",
      message:
        "Merkle root over the records does not match the signed header (record added, removed, edited or reordered)",
      where: at,
    });
  }
  let previousCommitId = header.commitIdFirst - 1;
  const lastSeq = new Map<string, number>();
  const seen = new Map<string, { first: number; last: number; count: number }>();
  records.forEach((record, index) => {
    const where = `${at} record ${index + 1} (${record.meterId} seq ${record.seq})`;
    if (record.commitId <= previousCommitId || record.commitId > header.commitIdLast) {
      problems.push({
        code: "COMMIT_GAP",
        message: `commit_id ${record.commitId} out of order or outside ${header.commitIdFirst}..${header.commitIdLast}`,
        where,
        seq: record.seq,
        meterId: record.meterId,
      });
    }
    previousCommitId = record.commitId;
    const before = lastSeq.get(record.meterId);
    if (before !== undefined && record.seq <= before) {
      problems.push({
        code: "SEQ_DUPLICATE",
        message: `seq ${record.seq} after ${before}: duplicate or reordered`,
        where,
        seq: record.seq,
        meterId: record.meterId,
      });
    }
    lastSeq.set(record.meterId, record.seq);
    const range = seen.get(record.meterId);
    if (range === undefined) seen.set(record.meterId, { first: record.seq, last: record.seq, count: 1 });
    else {
      range.first = Math.min(range.first, record.seq);
      range.last = Math.max(range.last, record.seq);
      range.count++;
    }
  });
  const declared = new Map(header.meterRanges.map((r) => [r.meterId, r]));
  for (const [meterId, range] of seen) {
    const claim = declared.get(meterId);
    if (
      claim === undefined ||
      claim.seqFirst !== range.first ||
      claim.seqLast !== range.last ||
      claim.count !== range.count
    ) {
      problems.push({
        code: "BAD_FIELD",
        message: `records of ${meterId} span seq ${range.first}..${range.last} (${range.count}), header declares ${
          claim === undefined ? "nothing" : `${claim.seqFirst}..${claim.seqLast} (${claim.count})`
        }`,
        where: at,
        meterId,
      });
    }
  }
  for (const meterId of declared.keys()) {
    if (!seen.has(meterId)) {
      problems.push({
        code: "BAD_FIELD",
        message: `header declares ${meterId} but no record of it`,
        where: at,
        meterId,
      });
    }
  }
  return problems;
}

/** The per-meter seq ranges a batch header declares, derived from its records. */
export function meterRangesOf(records: readonly ReadingRecord[]): MeterSeqRange[] {
  const ranges = new Map<string, { meterId: string; seqFirst: number; seqLast: number; count: number }>();
  for (const record of records) {
    const range = ranges.get(record.meterId);
    if (range === undefined) {
      ranges.set(record.meterId, {
        meterId: record.meterId,
        seqFirst: record.seq,
        seqLast: record.seq,
        count: 1,
      });
    } else {
      range.seqFirst = Math.min(range.seqFirst, record.seq);
      range.seqLast = Math.max(range.seqLast, record.seq);
      range.count++;
    }
  }
  return [...ranges.values()];
}

export interface SealBatchInput {
  readonly batchId: number;
  readonly dcuId: string;
  readonly epoch: number;
  readonly createdMs: number;
  /** Committed reading records in commit_id order. */
  readonly records: readonly ReadingRecord[];
  /** batch_hash of the previous batch, or undefined for the concentrator's first batch. */
  readonly prevBatchHash: Uint8Array | undefined;
}

/** Builds and signs a batch over committed records: the concentrator's uplink unit. */
export function sealBatch(input: SealBatchInput, sign: (message: Uint8Array) => Uint8Array): Batch {
  const first = input.records[0];
  const last = input.records[input.records.length - 1];
  if (first === undefined || last === undefined) {
    throw new EvidenceError("BAD_FIELD", "a batch needs at least one record");
  }
  const header: BatchHeader = sealBatchHeader(
    {
      batchId: input.batchId,
      dcuId: input.dcuId,
      epoch: input.epoch,
      commitIdFirst: first.commitId,
      commitIdLast: last.commitId,
      count: input.records.length,
      createdMs: input.createdMs,
      meterRanges: meterRangesOf(input.records),
      merkleRoot: merkleRoot(input.records.map((r) => r.bytes)),
      prevBatchHash: input.prevBatchHash ?? batchGenesisHash(input.dcuId),
    },
    sign,
  );
  return { header, records: input.records };
}

/** Convenience for tests, samples and the lab: encode readings then seal them into a batch. */
export function sealReadingsBatch(
  input: Omit<SealBatchInput, "records"> & { readonly readings: readonly ReadingRecordFields[] },
  sign: (message: Uint8Array) => Uint8Array,
): Batch {
  return sealBatch({ ...input, records: input.readings.map(encodeReadingRecord) }, sign);
}
