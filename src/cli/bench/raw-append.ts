// shell: the raw durable-append limit of this machine's data disk, the reference for every figure that
// ends in a durable commit (journal.durable_records_per_s, concentrator.poll_to_commit_records_per_s).
import { closeSync, fdatasyncSync, openSync, rmSync, writeSync } from "node:fs";
import { join } from "node:path";

export const RAW_APPEND_FIGURE = "raw.append_fdatasync_records_per_s";
/** A reading record is ~110 bytes with its journal frame: measure at that size. */
export const RAW_RECORD_BYTES = 128;
/** Records per fdatasync: what an ideal group-committing journal would do. */
export const RAW_GROUP_RECORDS = 1024;

/**
 * Sequential appends of `recordBytes`-byte records into one file, one fdatasync per group of
 * `groupRecords`, for at least `minMs`: records/s that are durable. No framing, no CRC, no index:
 * the ceiling a journal can approach, never pass.
 */
export function rawAppendFdatasyncRecordsPerS(
  dir: string,
  minMs: number,
  recordBytes = RAW_RECORD_BYTES,
  groupRecords = RAW_GROUP_RECORDS,
): number {
  const path = join(dir, `raw-append-${process.pid}.bin`);
  const group = Buffer.alloc(recordBytes * groupRecords, 0x5a);
  const fd = openSync(path, "w");
  let records = 0;
  const started = process.hrtime.bigint();
  let elapsedMs = 0;
  try {
    while (elapsedMs < minMs) {
      writeSync(fd, group);
      fdatasyncSync(fd);
      records += groupRecords;
      elapsedMs = Number(process.hrtime.bigint() - started) / 1e6;
    }
  } finally {
    closeSync(fd);
    rmSync(path, { force: true });
  }
  return (records * 1000) / elapsedMs;
}
