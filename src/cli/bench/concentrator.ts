// shell: concentrator throughput from poll to durable commit, beside the raw append+fdatasync limit.
import { mkdtempSync, rmSync } from "node:fs";
import { join } from "node:path";
import {
  BACKFILL_RECORDS_MAX,
  Concentrator,
  MemoryDcuStore,
  openFileJournal,
  SimMeterFleet,
  simMeterIds,
} from "../../concentrator/index.ts";
import { MemorySecureElement, SeededRandom } from "../../evidence/index.ts";
import { RAW_APPEND_FIGURE, rawAppendFdatasyncRecordsPerS } from "./raw-append.ts";
import { type BenchSuite, figure } from "./types.ts";

// Back of the envelope: a record is ~110 B with its frame; the commit loop groups up to 1024 records per
// fdatasync, so the pipeline is bounded by the disk's group-append rate, minus per-record CPU (encode +
// CRC ≈ 2 µs, validation, a profile read in the simulator) and the batch sealing it triggers (one
// signature per 1024 records). The figure is records/s from the poll to the durable commit.
const METERS = 64;
const READING_INTERVAL_MS = 1_000;

export const concentratorSuite: BenchSuite = {
  name: "concentrator",
  async run(ctx) {
    const minMs = ctx.quick ? 300 : 2_000;
    ctx.progress("concentrator: raw append + fdatasync");
    const raw = rawAppendFdatasyncRecordsPerS(ctx.tmpDir, minMs);
    ctx.progress("concentrator: poll → validate → durable commit");
    const dir = mkdtempSync(join(ctx.tmpDir, "dcu-"));
    try {
      const perS = await pollToCommit(dir, minMs);
      return [
        figure("concentrator.poll_to_commit_records_per_s", perS, "records/s", {
          name: RAW_APPEND_FIGURE,
          value: raw,
        }),
      ];
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  },
};

async function pollToCommit(dir: string, minMs: number): Promise<number> {
  // Virtual meter time, real disk and CPU time: each round the meters gain a full backfill chunk.
  let virtualNow = Date.UTC(2026, 0, 1);
  const clock = { nowMs: () => virtualNow };
  const random = new SeededRandom("bench/concentrator");
  const meterIds = simMeterIds("BENCH", METERS);
  const fleet = new SimMeterFleet(meterIds, clock, random.fork("sim"), {
    readingIntervalMs: READING_INTERVAL_MS,
    anchorMs: virtualNow - 10 * READING_INTERVAL_MS,
  });
  const journal = await openFileJournal(join(dir, "journal"));
  const dcu = await Concentrator.open(
    {
      dcuId: "BENCH",
      meters: meterIds.map((meterId) => ({ meterId, port: fleet.portOf(meterId) })),
      pollIntervalMs: 1,
      batchRecordsMax: 4096,
      backlogSoftRecords: 1e12,
      backlogHardRecords: 2e12,
    },
    {
      clock,
      random,
      reader: fleet,
      journal,
      store: new MemoryDcuStore(),
      secureElement: new MemorySecureElement("BENCH", new Uint8Array([7])),
      transport: { publish: () => Promise.reject(new Error("bench: no uplink")) },
    },
  );
  virtualNow += 1;
  dcu.tick();
  await dcu.idle(); // first polls start each meter's seq axis
  const before = dcu.counters.recordsCommitted;
  const started = process.hrtime.bigint();
  let elapsedMs = 0;
  while (elapsedMs < minMs) {
    virtualNow += BACKFILL_RECORDS_MAX * READING_INTERVAL_MS;
    dcu.tick();
    await dcu.idle();
    elapsedMs = Number(process.hrtime.bigint() - started) / 1e6;
  }
  const committed = dcu.counters.recordsCommitted - before;
  await dcu.close();
  await journal.close();
  if (dcu.fatalError !== null) throw dcu.fatalError;
  return (committed * 1000) / elapsedMs;
}
