import { MemorySecureElement, verifyEventChain } from "../../evidence/index.ts";
import { DEFAULT_TAMPER_CONFIG, HouseholdLoad, Meter, meterNvmLayout } from "../../meter/index.ts";
import { CompactMeter } from "../compact-meter.ts";
import { Simulation } from "../engine.ts";
import { type PredicateResult, predicate, type Scenario } from "../scenario.ts";

// `fleet-day`: N meters through a day of ordinary faults — short and long outages, flicker, time syncs
// with small and large corrections, PV export — with the seed's continuity, time and false-positive
// predicates. Meters step once a minute (interval mode): energy is exact for any step size.

const DAY_MS = 86_400_000;
const START_MS = Date.UTC(2026, 6, 1);
const STEP_MS = 60_000;
/**
 * Full meters (real `Meter`: NVM image, signed ring log, tamper rules) in one run; beyond it the fleet is
 * this many full meters spread evenly over the ids, and compact meters (src/lab/compact-meter.ts: the
 * meter's own Rtc and energy code, hash-chained records) for the rest. Every predicate reads every meter.
 */
export const FLEET_DAY_FULL_METERS_MAX = 500;
/** Compact meters step once per load-profile period (interval mode: the energy is exact for any step). */
const COMPACT_STEP_MS = 15 * 60_000;

export const fleetDay: Scenario = {
  name: "fleet-day",
  description: "a fleet through a day of ordinary faults: outages, flicker, time syncs, PV export",
  source: "seed 003 H2-11 (continuity, time traceability); seed 002 H2-11 cases 2 and 3",
  defaultMeters: 200,
  safeguards: ["time_step_record"],
  run(ctx) {
    const sim = new Simulation(ctx.seed, START_MS);
    const layout = meterNvmLayout({ eventLogSectors: 4, loadProfileSectors: 2, firmwareBankSectors: 2 });
    const meters: {
      meter: Meter;
      house: HouseholdLoad;
      up: boolean;
      lastImport: number;
      lastTime: number;
    }[] = [];
    let regressions: string | null = null;
    let timeBackwards: string | null = null;
    let outages = 0;
    let syncs = 0;
    const compact: { meter: CompactMeter; lastImport: number; lastTime: number }[] = [];
    const fullEvery = Math.max(1, Math.ceil(ctx.meters / FLEET_DAY_FULL_METERS_MAX));
    // Shared by all compact meters (a config is read, never written).
    const importConfig = { ...DEFAULT_TAMPER_CONFIG, exportAllowed: false };
    const exportConfig = { ...DEFAULT_TAMPER_CONFIG, exportAllowed: true };
    for (let i = 0; i < ctx.meters; i++) {
      const id = `MTR-D${String(i + 1).padStart(6, "0")}`;
      const rng = ctx.rng.fork(id);
      if (i % fullEvery !== 0) {
        const entry = {
          meter: new CompactMeter(
            id,
            new HouseholdLoad({ seed: `${ctx.seed}/${id}`, pvPeakW: i % 4 === 0 ? 3500 : 0 }),
            START_MS,
            START_MS + rng.intBetween(-30_000, 30_000),
            !ctx.mutations.has("time_step_record"),
            i % 4 === 0 ? exportConfig : importConfig,
          ),
          lastImport: 0,
          lastTime: 0,
        };
        compact.push(entry);
        const count = rng.intBetween(0, 3);
        for (let o = 0; o < count; o++) {
          const at = START_MS + rng.nextInt(DAY_MS - 4 * 3_600_000);
          const duration = rng.chance(0.1)
            ? rng.intBetween(3_600_000, 3 * 3_600_000)
            : rng.intBetween(1_000, 120_000);
          sim.at(at, () => {
            if (!entry.meter.up) return;
            entry.lastTime = entry.meter.meterTimeMs(sim.nowMs);
            entry.meter.powerFail(sim.nowMs);
            outages++;
          });
          sim.at(at + duration, () => {
            if (entry.meter.up) return;
            entry.meter.powerRestore(sim.nowMs);
            const after = entry.meter.meterTimeMs(sim.nowMs);
            if (after < entry.lastTime)
              timeBackwards ??= `${id}: meter time ${after} < ${entry.lastTime} after an outage`;
          });
        }
        sim.every(6 * 3_600_000, START_MS + rng.nextInt(3_600_000), (now) => {
          if (entry.meter.up) {
            entry.meter.timeSync(now, now);
            syncs++;
          }
          return true;
        });
        continue;
      }
      const meter = Meter.open(
        {
          id,
          secureElement: new MemorySecureElement(
            id,
            Uint8Array.of(ctx.seed & 0xff, i & 0xff, (i >> 8) & 0xff, i >> 16),
          ),
          layout,
          factoryTimeMs: START_MS + rng.intBetween(-30_000, 30_000),
          tamper: { ...DEFAULT_TAMPER_CONFIG, exportAllowed: i % 4 === 0 },
          logSeqCounter: false,
          sealTimeSteps: !ctx.mutations.has("time_step_record"),
        },
        START_MS,
      );
      const entry = {
        meter,
        house: new HouseholdLoad({ seed: `${ctx.seed}/${id}`, pvPeakW: i % 4 === 0 ? 3500 : 0 }),
        up: true,
        lastImport: 0,
        lastTime: 0,
      };
      meters.push(entry);
      sim.every(STEP_MS, START_MS + STEP_MS, (now) => {
        if (!entry.up) return true;
        entry.meter.step(now, entry.house.at(Math.floor((now - START_MS) / 1000)));
        const r = entry.meter.registers.importActiveWh;
        if (r < entry.lastImport) regressions ??= `${id}: import register went ${entry.lastImport} → ${r}`;
        entry.lastImport = r;
        return true;
      });
      // Outages: most meters see a few; some see a long one.
      for (let o = 0; o < rng.intBetween(0, 3); o++) {
        const at = START_MS + rng.nextInt(DAY_MS - 4 * 3_600_000);
        const duration = rng.chance(0.1)
          ? rng.intBetween(3_600_000, 3 * 3_600_000)
          : rng.intBetween(1_000, 120_000);
        sim.at(at, () => {
          if (!entry.up) return;
          entry.lastTime = entry.meter.meterTimeMs(sim.nowMs);
          entry.meter.powerFail(sim.nowMs);
          entry.up = false;
          outages++;
        });
        sim.at(at + duration, () => {
          if (entry.up) return;
          entry.meter.powerRestore(sim.nowMs);
          entry.up = true;
          const after = entry.meter.meterTimeMs(sim.nowMs);
          if (after < entry.lastTime)
            timeBackwards ??= `${id}: meter time ${after} < ${entry.lastTime} after an outage`;
        });
      }
      // Time syncs from the concentrator every 6 h; the true time source is exact.
      sim.every(6 * 3_600_000, START_MS + rng.nextInt(3_600_000), (now) => {
        if (entry.up) {
          entry.meter.timeSync(now, now);
          syncs++;
        }
        return true;
      });
    }
    // All compact meters step in one event per period (one heap entry, not one per meter).
    sim.every(COMPACT_STEP_MS, START_MS + COMPACT_STEP_MS, (now) => {
      for (const entry of compact) {
        if (!entry.meter.up) continue;
        entry.meter.step(now);
        const r = entry.meter.importActiveWh;
        if (r < entry.lastImport)
          regressions ??= `${entry.meter.id}: import register went ${entry.lastImport} → ${r}`;
        entry.lastImport = r;
      }
      return true;
    });
    sim.runUntil(START_MS + DAY_MS, (f) => ctx.progress(f, "virtual day"));
    let chain: string | null = null;
    let unexplainedStep: string | null = null;
    let falsePositive: string | null = null;
    let noQuality: string | null = null;
    let records = 0;
    for (const { meter } of meters) {
      const log = meter.eventLog();
      records += log.length;
      const report = verifyEventChain(log, meter.eventPublicKey);
      if (report.problems.length > 0) chain ??= `${meter.id}: ${report.problems[0]!.message}`;
      const claim = log.find((r) =>
        [
          "MAG_TAMPER",
          "NEUTRAL_MISS",
          "BYPASS_SUS",
          "REV_CURRENT",
          "INJECT_SUS",
          "TILT",
          "COVER_OPEN",
        ].includes(r.type),
      );
      if (claim !== undefined)
        falsePositive ??= `${meter.id}: ${claim.type} with no attack (${JSON.stringify(claim.snapshot)})`;
      if (log.some((r) => r.timeQuality === undefined))
        noQuality ??= `${meter.id}: a record without time_quality`;
      // Every time step the clock took is in the log with its cause — or in a part of the ring the log
      // itself says it overwrote (a LOG_WRAP record names the dropped seqs).
      const oldestMs = log[0]?.timestampMs ?? 0;
      const wrapped = log.some((r) => r.type === "LOG_WRAP");
      const stepped = meter.timeSteps.filter((step) => !wrapped || step.toMs >= oldestMs).length;
      const sealed = ctx.mutations.has("time_step_record")
        ? 0
        : log.filter((r) => r.type === "TIME_STEP").length;
      if (sealed < stepped)
        unexplainedStep ??= `${meter.id}: ${stepped} clock steps since the oldest record, ${sealed} TIME_STEP records${wrapped ? " (log wrapped)" : ""}`;
    }
    let compactRecords = 0;
    for (const { meter } of compact) {
      compactRecords += meter.records.length;
      if (meter.claims.length > 0)
        falsePositive ??= `${meter.id} (compact): ${meter.claims[0]} with no attack`;
      if (meter.records.some((r) => r.timeQuality === undefined))
        noQuality ??= `${meter.id}: a compact record without time_quality`;
      const problem = meter.chainProblem();
      if (problem !== null) chain ??= problem;
      const stepped = meter.timeSteps.length;
      const sealed = meter.records.filter((r) => r.type === "TIME_STEP" && r.cause !== null).length;
      if (sealed < stepped)
        unexplainedStep ??= `${meter.id}: ${stepped} clock steps, ${sealed} TIME_STEP records`;
    }
    const full = meters.length;
    const predicates: PredicateResult[] = [
      predicate(
        "registers_never_decrease",
        regressions === null,
        regressions ?? "import registers monotonic for every meter",
      ),
      predicate(
        "time_never_backwards_across_outages",
        timeBackwards === null,
        timeBackwards ?? `${outages} outages, meter time monotonic`,
      ),
      predicate(
        "every_time_step_has_a_cause",
        unexplainedStep === null,
        unexplainedStep ?? "every clock step sealed as TIME_STEP with its cause",
      ),
      predicate(
        "time_quality_always_set",
        noQuality === null,
        noQuality ?? "time_quality on every sealed record",
      ),
      predicate(
        "no_false_positive",
        falsePositive === null,
        falsePositive ??
          `no tamper claim on the ${full} full meters' sealed logs nor from the ${compact.length} compact meters' tamper rules (PV export included)`,
      ),
      predicate(
        "evidence_chains_verify",
        chain === null,
        chain ??
          `${records} signed records of ${full} full meters and ${compactRecords} hash-chained records of ${compact.length} compact meters verify`,
      ),
    ];
    return {
      predicates,
      figures: {
        meters: ctx.meters,
        full_meters: full,
        compact_meters: compact.length,
        meter_days: ctx.meters,
        outages,
        time_syncs: syncs,
        sealed_records: records,
        compact_records: compactRecords,
        events_executed: sim.eventsExecuted,
      },
    };
  },
};
