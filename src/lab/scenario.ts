import type { Rng } from "../evidence/index.ts";

// What a scenario is and what it reports: the JSON shape of `amiproof lab run --json` (DESIGN.md).

export interface PredicateResult {
  readonly name: string;
  readonly passed: boolean;
  /** On failure: the first violation with the evidence around it; on success: what was checked. */
  readonly detail: string;
}

export type Figures = Record<string, number | string | boolean>;

export interface ScenarioContext {
  readonly seed: number;
  /** The run's random source: fork it per meter (`rng.fork(id)`) so fleets of any size replay exactly. */
  readonly rng: Rng;
  readonly meters: number;
  /** Progress of the run in [0, 1], for the CLI's bar. */
  progress(fraction: number, label?: string): void;
  /** Safeguards switched off by a mutation check (lab acceptance 3): e.g. "ack_before_commit". */
  readonly mutations: ReadonlySet<string>;
  /** In-loop scenarios hand over the concentrator's final status (evidence packs) for `amiproof diagnose`. */
  evidence?(status: Record<string, unknown>): void;
}

export interface ScenarioOutcome {
  readonly predicates: PredicateResult[];
  readonly figures: Figures;
}

export interface Scenario {
  readonly name: string;
  readonly description: string;
  /** Where the scenario comes from (seed document and item). */
  readonly source: string;
  readonly defaultMeters: number;
  /** Safeguards this scenario exercises, each of which a mutation can switch off. */
  readonly safeguards: readonly string[];
  /** Runs the real concentrator and head-end cores in the loop (src/lab/loop). */
  readonly inLoop?: boolean;
  run(ctx: ScenarioContext): ScenarioOutcome | Promise<ScenarioOutcome>;
}

export interface LabReport {
  readonly scenario: string;
  readonly seed: number;
  readonly meters: number;
  readonly passed: boolean;
  readonly predicates: PredicateResult[];
  readonly figures: Figures;
}

export function predicate(name: string, passed: boolean, detail: string): PredicateResult {
  return { name, passed, detail };
}
