import {
  AtomicRingLog,
  type EventRecord,
  EvidenceError,
  MemoryNvm,
  MemorySecureElement,
  SeededRandom,
  verifyEventChain,
  verifyEventSignature,
} from "../../evidence/index.ts";
import { Simulation } from "../engine.ts";
import { type PredicateResult, predicate, type Scenario } from "../scenario.ts";

// seed 002 H2-11 case 2 ("reading jumps / rolls back after outage or flicker") and seed 003 H2-11
// "Power — brownout": repeated flicker cycles cut the meter's NVM mid-write; the commit success rate of
// acknowledged records must stay 100 % and every break must be sealed, never hidden.

const DAY_MS = 86_400_000;
const START_MS = Date.UTC(2026, 0, 1);
const EVENT_PERIOD_MS = 10 * 60_000;
const GEOMETRY = { sizeBytes: 8 * 4096, pageBytes: 256, sectorBytes: 4096 };

interface MeterUnderTest {
  readonly id: string;
  readonly nvm: MemoryNvm;
  readonly se: MemorySecureElement;
  log: AtomicRingLog | null;
  /** seq → digest of every record whose append returned: the meter acknowledged it. */
  readonly acked: Map<number, Uint8Array>;
  cuts: number;
  recoveries: number;
}

export const meterFlicker: Scenario = {
  name: "meter-flicker",
  description:
    "flicker storms cut meter NVM writes mid-record; acknowledged events survive, breaks are sealed",
  source: "seed 002 H2-11 case 2; seed 003 H2-11 Power",
  defaultMeters: 20,
  safeguards: ["ack_after_commit", "chain_check", "seq_counter"],
  run(ctx) {
    const sim = new Simulation(ctx.seed, START_MS);
    // Mutation: without the secure element's seq counter, a log cut back (or wiped) at its newest end
    // leaves no trace in the chain itself.
    const seqCounterOption = ctx.mutations.has("seq_counter") ? { seqCounter: null } : {};
    const meters: MeterUnderTest[] = [];
    for (let i = 0; i < ctx.meters; i++) {
      const id = `MTR-${String(i + 1).padStart(6, "0")}`;
      const rng = sim.rng.fork(id);
      const meter: MeterUnderTest = {
        id,
        nvm: new MemoryNvm(GEOMETRY, { rng }),
        se: new MemorySecureElement(id, Uint8Array.of(ctx.seed & 0xff, i & 0xff, (i >> 8) & 0xff)),
        log: null,
        acked: new Map(),
        cuts: 0,
        recoveries: 0,
      };
      meters.push(meter);
      const open = () => {
        meter.nvm.powerOn();
        meter.log = AtomicRingLog.open({
          nvm: meter.nvm,
          region: { offset: 0, length: GEOMETRY.sizeBytes },
          meterId: id,
          secureElement: meter.se,
          nowMs: sim.nowMs,
          timeQuality: "SYNCED",
          ...seqCounterOption,
        });
        meter.recoveries++;
      };
      const powerCycle = () => {
        // The supply dies somewhere in the next few writes; the meter restarts when power returns.
        meter.nvm.armPowerCut({ afterBytes: rng.nextInt(3000) });
        meter.cuts++;
        sim.after(rng.intBetween(200, 30_000), () => {
          for (let attempt = 0; attempt < 4; attempt++) {
            try {
              open();
              return;
            } catch (error) {
              if (!(error instanceof EvidenceError && error.code === "POWER_LOST")) throw error;
              meter.nvm.disarmPowerCut();
            }
          }
        });
      };
      sim.at(START_MS + rng.nextInt(EVENT_PERIOD_MS), open);
      sim.every(EVENT_PERIOD_MS, START_MS + rng.nextInt(EVENT_PERIOD_MS) + 1000, () => {
        const log = meter.log;
        if (log === null || !meter.nvm.powered) return true;
        try {
          const pending = log.lastSeq + 1;
          if (ctx.mutations.has("ack_after_commit")) meter.acked.set(pending, new Uint8Array(32));
          const record = log.append({
            type: "READING_SUMMARY",
            level: "INFO",
            timestampMs: sim.nowMs,
            timeQuality: "SYNCED",
            snapshot: { import_wh: Math.floor((sim.nowMs - START_MS) / 1000) },
          });
          meter.acked.set(record.seq, record.digest);
        } catch (error) {
          if (!(error instanceof EvidenceError)) throw error;
          meter.log = null; // the meter is down until power returns
        }
        return true;
      });
      // Flicker storms: a few bursts a day, each several cycles seconds apart.
      const storms = 2 + rng.nextInt(3);
      for (let s = 0; s < storms; s++) {
        const stormAt = START_MS + rng.nextInt(DAY_MS - 3_600_000);
        const cycles = 3 + rng.nextInt(6);
        for (let c = 0; c < cycles; c++) sim.at(stormAt + c * rng.intBetween(40_000, 120_000), powerCycle);
      }
    }
    sim.runUntil(START_MS + DAY_MS, (f) => ctx.progress(f, "virtual day"));

    // Final power-up of every meter, then the predicates over what survives.
    const predicates: PredicateResult[] = [];
    let lost: string | null = null;
    let chainProblem: string | null = null;
    let duplicate: string | null = null;
    let acked = 0;
    let breaksSealed = 0;
    const check = new SeededRandom(ctx.seed ^ 0x5eed);
    let deletionMissed: string | null = null;
    for (const meter of meters) {
      meter.nvm.disarmPowerCut();
      meter.nvm.powerOn();
      const log = AtomicRingLog.open({
        nvm: meter.nvm,
        region: { offset: 0, length: GEOMETRY.sizeBytes },
        meterId: meter.id,
        secureElement: meter.se,
        nowMs: sim.nowMs,
        timeQuality: "SYNCED",
        ...seqCounterOption,
      });
      const records = log.records();
      const bySeq = new Map<number, EventRecord>();
      for (const r of records) {
        if (bySeq.has(r.seq)) duplicate ??= `${meter.id} seq ${r.seq} retained twice`;
        bySeq.set(r.seq, r);
        if (r.type === "CHAIN_BREAK") breaksSealed++;
      }
      const oldest = records[0]?.seq ?? 1;
      for (const [seq, digest] of meter.acked) {
        acked++;
        if (seq < oldest) continue; // overwritten by the ring, accounted for by LOG_WRAP
        const kept = bySeq.get(seq);
        if (kept === undefined || Buffer.compare(kept.digest, digest) !== 0) {
          lost ??= `${meter.id}: acknowledged seq ${seq} ${kept === undefined ? "missing" : "replaced"} after ${meter.cuts} power cuts (retained ${oldest}..${log.lastSeq})`;
        }
      }
      const report = verifyEventChain(records, meter.se.publicKey("event_seal"));
      if (report.problems.length > 0)
        chainProblem ??= `${report.problems[0]!.where}: ${report.problems[0]!.message}`;
      // Attack: delete one retained record from the export; the seq/chain check must name it.
      if (records.length > 3) {
        const victim = 1 + check.nextInt(records.length - 2);
        const tampered = records.filter((_, i) => i !== victim);
        const key = meter.se.publicKey("event_seal");
        // Mutation: without the seq/hash-chain check only signatures are left, and they all still verify.
        const found = ctx.mutations.has("chain_check")
          ? tampered.some((r) => !verifyEventSignature(r, key))
          : verifyEventChain(tampered, key).problems.length > 0;
        if (!found) deletionMissed ??= `${meter.id}: deleting seq ${records[victim]!.seq} went unnoticed`;
      }
    }
    // Attack: wipe the first meter's whole log sector by sector (a flash erase from outside the firmware).
    let wipeDetected = false;
    const victim = meters[0];
    if (victim !== undefined) {
      const sectors = GEOMETRY.sizeBytes / GEOMETRY.sectorBytes;
      for (let sector = 0; sector < sectors; sector++) victim.nvm.eraseSector(sector);
      const reopened = AtomicRingLog.open({
        nvm: victim.nvm,
        region: { offset: 0, length: GEOMETRY.sizeBytes },
        meterId: victim.id,
        secureElement: victim.se,
        nowMs: sim.nowMs,
        timeQuality: "SYNCED",
        ...seqCounterOption,
      });
      wipeDetected = reopened.records().some((r) => r.type === "CHAIN_BREAK");
    }
    predicates.push(
      predicate(
        "log_wipe_detected",
        wipeDetected,
        wipeDetected
          ? "a wiped log reopens with a sealed CHAIN_BREAK (seq counter ahead of the log)"
          : "a wiped log reopened as if new",
      ),
      predicate(
        "no_acknowledged_record_lost",
        lost === null,
        lost ?? `${acked} acknowledged records all retained or sealed as overwritten`,
      ),
      predicate("no_duplicate_seq", duplicate === null, duplicate ?? "every (meter_id, seq) retained once"),
      predicate(
        "chain_verifies_or_break_sealed",
        chainProblem === null,
        chainProblem ?? "every retained log verifies; breaks are sealed CHAIN_BREAK records",
      ),
      predicate(
        "log_deletion_detected",
        deletionMissed === null,
        deletionMissed ?? "a deleted record is detected in every meter's export",
      ),
    );
    return {
      predicates,
      figures: {
        meters: ctx.meters,
        virtual_hours: 24,
        power_cuts: meters.reduce((s, m) => s + m.cuts, 0),
        recoveries: meters.reduce((s, m) => s + m.recoveries, 0),
        acknowledged_records: acked,
        chain_breaks_sealed: breaksSealed,
        events_executed: sim.eventsExecuted,
      },
    };
  },
};
