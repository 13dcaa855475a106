// shell: lab throughput — meter-days simulated per wall second in the fleet-day scenario.
import { FLEET_DAY_FULL_METERS_MAX, findScenario, runScenario } from "../../lab/index.ts";
import { type BenchSuite, figure } from "./types.ts";

// Back of the envelope (STYLE.md §9): the goal is 100 000 meters × 1 day in < 2 min on 2 cores = 833
// meter-days/s. Above FLEET_DAY_FULL_METERS_MAX the fleet is that many full meters plus compact meters
// (src/lab/README.md "Scale"); the full sample costs the same at any size, so the figure is measured on
// the goal's own fleet: `lab run fleet-day --meters 100000` (about two minutes; --quick: 200 meters).
export const labSuite: BenchSuite = {
  name: "lab",
  async run(ctx) {
    const scenario = findScenario("fleet-day");
    if (scenario === undefined) throw new Error("fleet-day scenario missing");
    const meters = ctx.quick ? 200 : 200 * FLEET_DAY_FULL_METERS_MAX;
    ctx.progress(`lab: fleet-day with ${meters} meters`);
    const started = performance.now();
    const report = await runScenario(scenario, { seed: 1, meters });
    const seconds = (performance.now() - started) / 1000;
    if (!report.passed) throw new Error("bench: fleet-day failed its predicates");
    return [
      figure(
        "lab.meter_days_per_s",
        meters / seconds,
        "meter-days/s",
        null,
        ">= 833 (100k meters x 1 day in < 2 min)",
      ),
    ];
  },
};
