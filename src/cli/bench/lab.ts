// shell: lab throughput — meter-days simulated per wall second in the fleet-day scenario.
import { findScenario, runScenario } from "../../lab/index.ts";
import { type BenchSuite, figure } from "./types.ts";

export const labSuite: BenchSuite = {
  name: "lab",
  async run(ctx) {
    const scenario = findScenario("fleet-day");
    if (scenario === undefined) throw new Error("fleet-day scenario missing");
    const meters = ctx.quick ? 50 : 500;
    ctx.progress(`lab: fleet-day with ${meters} meters`);
    const started = performance.now();
    const report = await runScenario(scenario, { seed: 1, meters });
    const seconds = (performance.now() - started) / 1000;
    if (!report.passed) throw new Error("bench: fleet-day failed its predicates");
    // Goal: 100k meters × 1 day in < 2 min on 2 cores = 833 meter-days/s.
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
