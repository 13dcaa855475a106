// shell: the journal's durable append rate beside the raw append + fdatasync limit at the same group size.
import { mkdtempSync, rmSync } from "node:fs";
import { join } from "node:path";
import { FsJournalStorage, Journal } from "../../evidence/index.ts";
import {
  RAW_APPEND_FIGURE,
  RAW_GROUP_RECORDS,
  RAW_RECORD_BYTES,
  rawAppendFdatasyncRecordsPerS,
} from "./raw-append.ts";
import { type BenchSuite, figure } from "./types.ts";

// Back of the envelope: a journal record frame adds 22 bytes (magic, type, length, commit_id, epoch, CRC),
// so a 106-byte payload lands as the raw benchmark's 128-byte record; one commit frame and one fdatasync
// per group of 1024. CRC-32 of 128 B costs ~0.1 µs, the frame building ~1 µs: the disk should dominate.
const PAYLOAD_BYTES = RAW_RECORD_BYTES - 22;

export const journalSuite: BenchSuite = {
  name: "journal",
  async run(ctx) {
    const minMs = ctx.quick ? 300 : 2_000;
    ctx.progress(`journal: raw append + fdatasync, ${RAW_GROUP_RECORDS} records per group`);
    const raw = rawAppendFdatasyncRecordsPerS(ctx.tmpDir, minMs);
    ctx.progress("journal: durable appends (group commit)");
    const dir = mkdtempSync(join(ctx.tmpDir, "journal-"));
    try {
      const journal = await Journal.open({
        storage: await FsJournalStorage.open(dir),
        clockMs: () => performance.now(),
      });
      const group = Array.from({ length: RAW_GROUP_RECORDS }, () => new Uint8Array(PAYLOAD_BYTES).fill(0x5a));
      let records = 0;
      const started = performance.now();
      while (performance.now() - started < minMs) {
        // The concentrator commits a poll round's records together: one appendMany per group.
        await journal.appendMany(group);
        records += RAW_GROUP_RECORDS;
      }
      const perS = (records * 1000) / (performance.now() - started);
      // One promise per record (append()): the per-record API cost, for callers that cannot group.
      let single = 0;
      const singleStarted = performance.now();
      while (performance.now() - singleStarted < minMs) {
        await Promise.all(group.map((payload) => journal.append(payload)));
        single += RAW_GROUP_RECORDS;
      }
      const singlePerS = (single * 1000) / (performance.now() - singleStarted);
      const metrics = journal.metrics();
      await journal.close();
      return [
        figure(
          "journal.durable_records_per_s",
          perS,
          "records/s",
          { name: RAW_APPEND_FIGURE, value: raw },
          ">= 0.8 x raw",
        ),
        figure("journal.durable_single_appends_per_s", singlePerS, "records/s", {
          name: RAW_APPEND_FIGURE,
          value: raw,
        }),
        figure("journal.commit_latency_p99_ms", metrics.commit_latency_p99, "ms"),
      ];
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  },
};
