import { SeededRandom } from "../evidence/index.ts";
import type { LabReport, Scenario } from "./scenario.ts";
import { backhaulRetryStorm } from "./scenarios/backhaul-retry-storm.ts";
import { emcSurge } from "./scenarios/emc-surge.ts";
import { fieldBurstyRetries } from "./scenarios/field-bursty-retries.ts";
import { fieldMagnetPowerWindow } from "./scenarios/field-magnet-power-window.ts";
import { fleetDay } from "./scenarios/fleet-day.ts";
import { fleetRollback } from "./scenarios/fleet-rollback.ts";
import { interfacesWorstCable } from "./scenarios/interfaces-worst-cable.ts";
import { meterFlicker } from "./scenarios/meter-flicker.ts";
import { powerBrownout } from "./scenarios/power-brownout.ts";
import { securityReplayForge } from "./scenarios/security-replay-forge.ts";
import { storageMidCommit } from "./scenarios/storage-mid-commit.ts";
import { storagePowerCut } from "./scenarios/storage-power-cut.ts";
import { tamperFleet } from "./scenarios/tamper-fleet.ts";
import { timeSyncLoss } from "./scenarios/time-sync-loss.ts";

export const SCENARIOS: readonly Scenario[] = [
  meterFlicker,
  tamperFleet,
  storagePowerCut,
  fleetDay,
  fleetRollback,
  // In the loop: the real concentrator and head-end cores (seed 003 H2-11, seed 002 H2-11 cases).
  powerBrownout,
  interfacesWorstCable,
  storageMidCommit,
  backhaulRetryStorm,
  securityReplayForge,
  timeSyncLoss,
  emcSurge,
  fieldBurstyRetries,
  fieldMagnetPowerWindow,
];

export function findScenario(name: string): Scenario | undefined {
  return SCENARIOS.find((s) => s.name === name);
}

export interface RunOptions {
  readonly meters?: number;
  readonly seed?: number;
  readonly mutations?: readonly string[];
  readonly progress?: (fraction: number, label?: string) => void;
  /** Receives the concentrator's final status (in-loop scenarios only). */
  readonly evidence?: (status: Record<string, unknown>) => void;
}

/** Runs one scenario; the report is the JSON of `amiproof lab run --json`. */
export async function runScenario(scenario: Scenario, options: RunOptions = {}): Promise<LabReport> {
  const seed = options.seed ?? 1;
  const meters = options.meters ?? scenario.defaultMeters;
  const unknown = (options.mutations ?? []).filter((m) => !scenario.safeguards.includes(m));
  if (unknown.length > 0) {
    throw new RangeError(
      `${scenario.name} has no safeguard ${unknown.join(", ")} (it has: ${scenario.safeguards.join(", ")})`,
    );
  }
  const outcome = await scenario.run({
    seed,
    meters,
    rng: new SeededRandom(seed),
    mutations: new Set(options.mutations ?? []),
    progress: options.progress ?? (() => {}),
    ...(options.evidence === undefined ? {} : { evidence: options.evidence }),
  });
  return {
    scenario: scenario.name,
    seed,
    meters,
    passed: outcome.predicates.every((p) => p.passed),
    predicates: outcome.predicates,
    figures: outcome.figures,
  };
}
