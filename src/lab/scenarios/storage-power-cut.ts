import {
  decodeReadingRecord,
  EvidenceError,
  encodeReadingRecord,
  Journal,
  MemoryJournalStorage,
} from "../../evidence/index.ts";
import { type PredicateResult, predicate, type Scenario } from "../scenario.ts";

// seed 003 H2-11 "Storage — power-loss mid-commit": the concentrator's journal is cut during record
// appends and checkpoints while a fleet's readings pour in. Require: append-only recovery, commit_id
// continuity or an explicit recovery epoch, and an ACK list that reconciles (every acknowledged reading
// is in the journal exactly once).

const START_MS = Date.UTC(2026, 0, 20);
const INTERVAL_MS = 15 * 60_000;
const INTERVALS = 96;

export const storagePowerCut: Scenario = {
  name: "storage-power-cut",
  description:
    "power cuts mid-commit and mid-checkpoint on the concentrator journal; acks reconcile, epochs explain every restart",
  source: "seed 003 H2-5 and H2-11 Storage",
  defaultMeters: 50,
  safeguards: ["ack_after_commit"],
  async run(ctx) {
    const storage = new MemoryJournalStorage();
    let clock = 0;
    const open = () =>
      Journal.open({ storage, clockMs: () => clock, checkpointEveryCommits: 4, segmentBytesMax: 64 * 1024 });
    let journal = await open();
    const acked = new Map<string, number>(); // "meter/seq" → commit_id the meter was told
    const epochs: number[] = [journal.epoch];
    let cuts = 0;
    let duplicate: string | null = null;
    for (let interval = 0; interval < INTERVALS; interval++) {
      ctx.progress(interval / INTERVALS, "virtual day");
      const nowMs = START_MS + interval * INTERVAL_MS;
      clock = nowMs;
      if (ctx.rng.chance(0.15)) {
        storage.failAfterBytes(ctx.rng.nextInt(4000));
        cuts++;
      }
      const pending: Promise<void>[] = [];
      let failed = false;
      for (let m = 0; m < ctx.meters; m++) {
        const meterId = `MTR-S${String(m + 1).padStart(5, "0")}`;
        const seq = interval + 1;
        const key = `${meterId}/${seq}`;
        const commitId = journal.nextCommitId();
        const record = encodeReadingRecord({
          timestampMs: nowMs,
          meterId,
          values: [{ obis: [1, 0, 1, 8, 0, 255], value: 1000 * seq + m, scaler: 0, unit: 30 }],
          seq,
          commitId,
          timeQuality: "SYNCED",
        });
        // Mutation: acknowledging at the append call, before the commit is durable.
        if (ctx.mutations.has("ack_after_commit")) acked.set(key, commitId);
        pending.push(
          journal.append(record.bytes).then(
            (r) => {
              acked.set(key, r.commitId);
            },
            (error: unknown) => {
              if (!(error instanceof EvidenceError)) throw error;
              failed = true;
            },
          ),
        );
      }
      await Promise.all(pending);
      if (failed) {
        storage.powerCut(ctx.rng);
        journal = await open();
        epochs.push(journal.epoch);
      }
    }
    await journal.close();
    const final = await open();
    const entries = await final.readFrom(1, Number.MAX_SAFE_INTEGER);
    let gap: string | null = null;
    const stored = new Map<string, number>();
    entries.forEach((entry, i) => {
      if (entry.commitId !== i + 1) gap ??= `commit_id ${entry.commitId} at position ${i + 1}`;
      const reading = decodeReadingRecord(entry.payload);
      const key = `${reading.meterId}/${reading.seq}`;
      if (stored.has(key))
        duplicate ??= `${key} stored at commit_id ${stored.get(key)} and ${entry.commitId}`;
      stored.set(key, entry.commitId);
    });
    let unreconciled: string | null = null;
    for (const [key, commitId] of acked) {
      if (stored.get(key) !== commitId) {
        unreconciled ??= `${key} acknowledged as commit_id ${commitId}, journal holds ${stored.get(key) ?? "nothing"}`;
      }
    }
    let epochProblem: string | null = null;
    for (let i = 1; i < epochs.length; i++) {
      if (epochs[i] !== epochs[i - 1]! + 1)
        epochProblem ??= `epoch ${epochs[i - 1]} → ${epochs[i]} after a cut`;
    }
    const predicates: PredicateResult[] = [
      predicate(
        "no_missing_commit",
        gap === null,
        gap ?? `commit_id 1..${entries.length} continuous across ${epochs.length} epochs`,
      ),
      predicate(
        "recovery_epoch_after_every_cut",
        epochProblem === null,
        epochProblem ?? `${epochs.length - 1} recoveries, each opened the next epoch`,
      ),
      predicate(
        "no_duplicate_meter_seq",
        duplicate === null,
        duplicate ?? "every (meter_id, seq) stored once",
      ),
      predicate(
        "ack_list_reconciles",
        unreconciled === null,
        unreconciled ?? `${acked.size} acknowledged readings all in the journal`,
      ),
    ];
    return {
      predicates,
      figures: {
        power_cuts_armed: cuts,
        recoveries: epochs.length - 1,
        readings_committed: entries.length,
        readings_acknowledged: acked.size,
        final_epoch: final.epoch,
        recovery_bytes_scanned_last: final.recovery.bytesScanned,
      },
    };
  },
};
