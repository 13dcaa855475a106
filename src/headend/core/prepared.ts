import {
  BATCH_RECORDS_MAX,
  type Batch,
  type BatchHeader,
  decodeBatchHeader,
  obisToString,
  READING_VALUES_MAX,
  TIME_QUALITIES,
  type TimeQuality,
} from "../../evidence/index.ts";
import {
  type BatchCommit,
  batchRowOf,
  chainHeadOf,
  type GapRow,
  type MeterReadingUpdate,
  packRecords,
  type ReadingRow,
} from "../store/index.ts";
import type { GapRecord } from "./gaps.ts";

// A verified batch in the form the commit stage needs: header, what gap attribution reads, the reading rows,
// the per-meter updates and the records blob. Built in the thread that verified the batch; when that is a
// worker, it crosses to the writer as columns (typed arrays, transferred) rather than 1,024 cloned objects.

export interface PreparedBatch {
  readonly header: BatchHeader;
  readonly records: readonly GapRecord[];
  readonly readings: readonly ReadingRow[];
  readonly meters: readonly MeterReadingUpdate[];
  /** packRecords of the records' bytes, in batch order (the Merkle leaves, kept for export). */
  readonly packedRecords: Uint8Array;
}

export function prepareFromBatch(batch: Batch): PreparedBatch {
  const { header, records } = batch;
  const readings: ReadingRow[] = [];
  const meters: MeterReadingUpdate[] = [];
  for (const r of records) {
    for (const v of r.values) {
      readings.push({
        meterId: r.meterId,
        seq: r.seq,
        obis: obisToString(v.obis),
        commitId: r.commitId,
        dcuId: header.dcuId,
        batchId: header.batchId,
        timestampMs: r.timestampMs,
        timeQuality: r.timeQuality,
        value: v.value,
        scaler: v.scaler,
        unit: v.unit,
        recordCrc: r.crc,
      });
    }
    meters.push({
      meterId: r.meterId,
      dcuId: header.dcuId,
      lastSeq: r.seq,
      lastReadingMs: r.timestampMs,
      timeQuality: r.timeQuality,
    });
  }
  return { header, records, readings, meters, packedRecords: packRecords(records.map((r) => r.bytes)) };
}

/** The commit of a prepared batch (the same shape store/rows.ts batchCommitOf builds from a Batch). */
export function commitOf(prepared: PreparedBatch, receivedMs: number, gaps: readonly GapRow[]): BatchCommit {
  const { header } = prepared;
  return {
    batch: batchRowOf(header, receivedMs, prepared.packedRecords),
    readings: prepared.readings,
    gaps,
    events: [],
    meters: prepared.meters,
    chainHead: chainHeadOf(header),
  };
}

/** A prepared batch as transferable columns (worker → writer). */
export interface BatchColumns {
  readonly header: Uint8Array;
  readonly packedRecords: Uint8Array;
  /** Distinct meter ids and OBIS codes; records and values index into them. */
  readonly meterIds: readonly string[];
  readonly obisCodes: readonly string[];
  readonly meterIndex: Uint32Array;
  readonly seq: Float64Array;
  readonly commitId: Float64Array;
  readonly timestampMs: Float64Array;
  readonly timeQuality: Uint8Array;
  readonly crc: Uint32Array;
  readonly valueCount: Uint8Array;
  readonly obisIndex: Uint32Array;
  readonly value: Float64Array;
  readonly scaler: Int8Array;
  readonly unit: Uint8Array;
}

export function columnsFromBatch(batch: Batch): BatchColumns {
  const { records } = batch;
  const n = records.length;
  let values = 0;
  for (const r of records) values += r.values.length;
  const meterIds: string[] = [];
  const meterSlot = new Map<string, number>();
  const obisCodes: string[] = [];
  const obisSlot = new Map<string, number>();
  const c = {
    meterIndex: new Uint32Array(n),
    seq: new Float64Array(n),
    commitId: new Float64Array(n),
    timestampMs: new Float64Array(n),
    timeQuality: new Uint8Array(n),
    crc: new Uint32Array(n),
    valueCount: new Uint8Array(n),
    obisIndex: new Uint32Array(values),
    value: new Float64Array(values),
    scaler: new Int8Array(values),
    unit: new Uint8Array(values),
  };
  let at = 0;
  records.forEach((r, i) => {
    let m = meterSlot.get(r.meterId);
    if (m === undefined) {
      m = meterIds.push(r.meterId) - 1;
      meterSlot.set(r.meterId, m);
    }
    c.meterIndex[i] = m;
    c.seq[i] = r.seq;
    c.commitId[i] = r.commitId;
    c.timestampMs[i] = r.timestampMs;
    c.timeQuality[i] = TIME_QUALITIES.indexOf(r.timeQuality);
    c.crc[i] = r.crc;
    c.valueCount[i] = r.values.length;
    for (const v of r.values) {
      const code = obisToString(v.obis);
      let o = obisSlot.get(code);
      if (o === undefined) {
        o = obisCodes.push(code) - 1;
        obisSlot.set(code, o);
      }
      c.obisIndex[at] = o;
      c.value[at] = v.value;
      c.scaler[at] = v.scaler;
      c.unit[at] = v.unit;
      at++;
    }
  });
  return {
    header: batch.header.bytes,
    packedRecords: packRecords(records.map((r) => r.bytes)),
    meterIds,
    obisCodes,
    ...c,
  };
}

/** The buffers of `columns`, for postMessage's transfer list. */
export function columnBuffers(columns: BatchColumns): ArrayBuffer[] {
  return [
    columns.header,
    columns.packedRecords,
    columns.meterIndex,
    columns.seq,
    columns.commitId,
    columns.timestampMs,
    columns.timeQuality,
    columns.crc,
    columns.valueCount,
    columns.obisIndex,
    columns.value,
    columns.scaler,
    columns.unit,
  ].map((a) => a.buffer as ArrayBuffer);
}

/**
 * Rebuilds a prepared batch from columns. The header is decoded again (its hash and fields are what the
 * chain check and the commit trust); the rest was checked by the verifier that produced the columns.
 */
export function prepareFromColumns(columns: BatchColumns): PreparedBatch {
  const header = decodeBatchHeader(columns.header);
  const n = columns.seq.length;
  if (n !== header.count || n > BATCH_RECORDS_MAX) {
    throw new RangeError(`columns hold ${n} records, the header ${header.count}`);
  }
  const records: GapRecord[] = new Array(n);
  const meters: MeterReadingUpdate[] = new Array(n);
  const readings: ReadingRow[] = [];
  let at = 0;
  for (let i = 0; i < n; i++) {
    const meterId = columns.meterIds[columns.meterIndex[i] as number] as string;
    const seq = columns.seq[i] as number;
    const commitId = columns.commitId[i] as number;
    const timestampMs = columns.timestampMs[i] as number;
    const timeQuality = TIME_QUALITIES[columns.timeQuality[i] as number] as TimeQuality;
    records[i] = { meterId, seq, commitId, timestampMs };
    meters[i] = { meterId, dcuId: header.dcuId, lastSeq: seq, lastReadingMs: timestampMs, timeQuality };
    const count = Math.min(columns.valueCount[i] as number, READING_VALUES_MAX);
    for (let k = 0; k < count; k++, at++) {
      readings.push({
        meterId,
        seq,
        obis: columns.obisCodes[columns.obisIndex[at] as number] as string,
        commitId,
        dcuId: header.dcuId,
        batchId: header.batchId,
        timestampMs,
        timeQuality,
        value: columns.value[at] as number,
        scaler: columns.scaler[at] as number,
        unit: columns.unit[at] as number,
        recordCrc: columns.crc[i] as number,
      });
    }
  }
  return { header, records, readings, meters, packedRecords: columns.packedRecords };
}
