import { MemorySecureElement, verifyEventChain } from "../../evidence/index.ts";
import {
  DEFAULT_TAMPER_CONFIG,
  HouseholdLoad,
  Meter,
  type TamperConfig,
  type TamperInputs,
  type TamperType,
} from "../../meter/index.ts";
import { type PredicateResult, predicate, type Scenario } from "../scenario.ts";

// seed 004 (tamper detection) and seed 003 H2-11 EMC correlation: a fleet where some meters are attacked
// (magnet, cover, prying tilt, bypass, missing neutral) and others only see what must not alarm (seismic
// shocks, switch bounce in the cold, a weak stray field, PV export). Every attack must be claimed within
// its budget, once; no innocent meter may claim anything.

const START_MS = Date.UTC(2026, 0, 15, 6);
const STEP_MS = 50;
const WINDOW_MS = 90_000;
const INJECT_AT_MS = 20_000;
/** Detection budget per type: its time gate plus one sampling step (and debounce for the cover). */
const BUDGET_MS: Record<TamperType, number> = {
  MAG_TAMPER: DEFAULT_TAMPER_CONFIG.magTimeGateMs + STEP_MS,
  NEUTRAL_MISS: DEFAULT_TAMPER_CONFIG.mismatchTimeGateMs + STEP_MS,
  BYPASS_SUS: DEFAULT_TAMPER_CONFIG.mismatchTimeGateMs + STEP_MS,
  REV_CURRENT: DEFAULT_TAMPER_CONFIG.reverseTimeGateMs + STEP_MS,
  COVER_OPEN: DEFAULT_TAMPER_CONFIG.coverStormDebounceMs + STEP_MS,
  INJECT_SUS: DEFAULT_TAMPER_CONFIG.injectTimeGateMs + STEP_MS,
  TILT: DEFAULT_TAMPER_CONFIG.tiltTimeGateMs + STEP_MS,
};

type Case =
  | { kind: "attack"; tamper: TamperType }
  | { kind: "noise"; noise: "seismic" | "cold_bounce" | "stray_field" | "pv_export" | "none" };

const ATTACKS: TamperType[] = ["MAG_TAMPER", "COVER_OPEN", "TILT", "BYPASS_SUS", "NEUTRAL_MISS"];
const NOISES = ["seismic", "cold_bounce", "stray_field", "pv_export", "none"] as const;

export const tamperFleet: Scenario = {
  name: "tamper-fleet",
  description:
    "attacked meters are caught within budget, once; seismic shocks, cold bounce and PV never alarm",
  source: "seed 004; seed 002 H2-6/H2-7; seed 003 H2-11 EMC/Surge correlation",
  defaultMeters: 40,
  safeguards: ["debounce", "correlation_gate", "time_gate"],
  run(ctx) {
    const config: TamperConfig = {
      ...DEFAULT_TAMPER_CONFIG,
      ...(ctx.mutations.has("debounce") ? { coverDebounceMs: 0, coverStormDebounceMs: 0 } : {}),
      ...(ctx.mutations.has("correlation_gate") ? { magRequiresPfAnomaly: false } : {}),
      ...(ctx.mutations.has("time_gate") ? { tiltTimeGateMs: 0, magTimeGateMs: 0 } : {}),
    };
    let missed: string | null = null;
    let late: string | null = null;
    let falsePositive: string | null = null;
    let repeated: string | null = null;
    let chain: string | null = null;
    let attacks = 0;
    let detections = 0;
    let worstLatencyMs = 0;
    for (let index = 0; index < ctx.meters; index++) {
      const id = `MTR-T${String(index + 1).padStart(6, "0")}`;
      const rng = ctx.rng.fork(id);
      const testCase: Case =
        index % 2 === 0
          ? { kind: "attack", tamper: ATTACKS[(index / 2) % ATTACKS.length]! }
          : { kind: "noise", noise: NOISES[Math.floor(index / 2) % NOISES.length]! };
      const pv = testCase.kind === "noise" && testCase.noise === "pv_export";
      const meter = Meter.open(
        {
          id,
          secureElement: new MemorySecureElement(
            id,
            Uint8Array.of(ctx.seed & 0xff, index & 0xff, index >> 8),
          ),
          tamper: { ...config, exportAllowed: pv },
          factoryTimeMs: START_MS,
          logSeqCounter: false,
        },
        START_MS,
      );
      const house = new HouseholdLoad({ seed: `${ctx.seed}/${id}`, pvPeakW: pv ? 4000 : 0 });
      const injectAt = START_MS + INJECT_AT_MS + rng.nextInt(5_000);
      // Cover bounces in the cold: contacts chatter for a few ms at a time, never 50 ms.
      const bounces = new Set<number>();
      if (testCase.kind === "noise" && testCase.noise === "cold_bounce") {
        for (let b = 0; b < 20; b++) bounces.add(injectAt - ((injectAt - START_MS) % STEP_MS) + b * 1000);
      }
      for (let t = START_MS + STEP_MS; t <= START_MS + WINDOW_MS; t += STEP_MS) {
        const sample = house.at(pv ? 13 * 3600 : 3 * 3600 + Math.floor((t - START_MS) / 1000));
        const since = t - injectAt;
        const sensors: Partial<TamperInputs> = {};
        if (testCase.kind === "attack" && since >= 0) {
          switch (testCase.tamper) {
            case "MAG_TAMPER":
              Object.assign(sensors, { fieldMilliTesla: 70 + rng.nextInt(30), pfAnomaly: true });
              break;
            case "TILT":
              Object.assign(sensors, since < 3_000 ? { tiltDeg: 25, vibrating: true } : {});
              break;
            case "BYPASS_SUS":
              Object.assign(sensors, { lineCurrentA: 2, neutralCurrentA: 9 });
              break;
            case "NEUTRAL_MISS":
              Object.assign(sensors, { lineCurrentA: 9, neutralCurrentA: 4 });
              break;
            default:
              break;
          }
          if (testCase.tamper === "COVER_OPEN" && since < STEP_MS) meter.coverEdge(t, true);
        } else if (testCase.kind === "noise" && since >= 0 && since < 60_000) {
          if (testCase.noise === "seismic" && since % 10_000 < 300)
            Object.assign(sensors, { tiltDeg: 20, vibrating: true });
          if (testCase.noise === "stray_field")
            Object.assign(sensors, { fieldMilliTesla: 55, pfAnomaly: false });
          if (bounces.has(t)) {
            meter.coverEdge(t, true);
            meter.coverEdge(t + 30, false); // a 30 ms chatter: under the 50 ms debounce
          }
        }
        meter.step(t, sample, sensors);
      }
      const log = meter.eventLog();
      const claims = log.filter(
        (r) => ATTACKS.includes(r.type as TamperType) || r.type === "REV_CURRENT" || r.type === "INJECT_SUS",
      );
      const report = verifyEventChain(log, meter.eventPublicKey);
      if (report.problems.length > 0) chain ??= `${id}: ${report.problems[0]!.message}`;
      if (testCase.kind === "attack") {
        attacks++;
        const mine = claims.filter((r) => r.type === testCase.tamper);
        if (mine.length === 0) {
          missed ??= `${id}: ${testCase.tamper} injected at +${injectAt - START_MS} ms never claimed`;
          continue;
        }
        detections++;
        if (mine.length > 1)
          repeated ??= `${id}: ${testCase.tamper} claimed ${mine.length} times for one attack`;
        const latency = mine[0]!.timestampMs - injectAt;
        worstLatencyMs = Math.max(worstLatencyMs, latency);
        if (latency > BUDGET_MS[testCase.tamper])
          late ??= `${id}: ${testCase.tamper} after ${latency} ms (budget ${BUDGET_MS[testCase.tamper]} ms)`;
        const others = claims.filter((r) => r.type !== testCase.tamper);
        if (others.length > 0)
          falsePositive ??= `${id}: ${others[0]!.type} claimed during a ${testCase.tamper} attack`;
      } else if (claims.length > 0) {
        falsePositive ??= `${id} (${testCase.noise}): ${claims[0]!.type} claimed at seq ${claims[0]!.seq} ${JSON.stringify(claims[0]!.snapshot)}`;
      }
    }
    const predicates: PredicateResult[] = [
      predicate(
        "every_tamper_detected",
        missed === null,
        missed ?? `${detections}/${attacks} attacks claimed`,
      ),
      predicate(
        "detected_within_budget",
        late === null,
        late ?? `worst detection latency ${worstLatencyMs} ms`,
      ),
      predicate(
        "no_false_positive",
        falsePositive === null,
        falsePositive ?? "seismic shocks, cold bounce, stray fields and PV export raised nothing",
      ),
      predicate("repeated_state_one_record", repeated === null, repeated ?? "each attack is one claim"),
      predicate("evidence_chain_verifies", chain === null, chain ?? "every meter's sealed log verifies"),
    ];
    return {
      predicates,
      figures: {
        attacks,
        detections,
        worst_detection_latency_ms: worstLatencyMs,
        virtual_seconds_per_meter: WINDOW_MS / 1000,
      },
    };
  },
};
