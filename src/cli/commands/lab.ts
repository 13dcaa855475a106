import { writeFileSync } from "node:fs";
import { SingleBar } from "cli-progress";
import type { Command } from "commander";
import { findScenario, type LabReport, runScenario, SCENARIOS } from "../../lab/index.ts";

export function registerLab(program: Command): void {
  const lab = program.command("lab").description("fleet lab: whole fleets through faults in virtual time");
  lab
    .command("list")
    .description("list the scenarios")
    .action(() => {
      for (const s of SCENARIOS) {
        process.stdout.write(
          `${s.name.padEnd(24)} ${s.description}\n${"".padEnd(24)} source: ${s.source}; default meters ${s.defaultMeters}\n`,
        );
      }
    });
  lab
    .command("run")
    .description("run a scenario; exit 0 only when every predicate holds")
    .argument("<scenario>", "scenario name (see `amiproof lab list`)")
    .option("--meters <n>", "fleet size")
    .option("--seed <s>", "seed (same seed → same run)", "1")
    .option("--json", "print one JSON object { scenario, seed, meters, passed, predicates, figures }")
    .option(
      "--mutate <safeguards>",
      "switch safeguards off (comma-separated) to show the scenario catches it",
    )
    .option(
      "--evidence-out <file>",
      "in-loop scenarios: write the concentrator's final status (evidence packs) for `amiproof diagnose`",
    )
    .action(
      async (
        name: string,
        options: { meters?: string; seed: string; json?: boolean; mutate?: string; evidenceOut?: string },
      ) => {
        const scenario = findScenario(name);
        if (scenario === undefined) {
          process.stderr.write(
            `amiproof lab run: no scenario "${name}"; known: ${SCENARIOS.map((s) => s.name).join(", ")}\n`,
          );
          process.exit(2);
        }
        const seed = Number(options.seed);
        const meters = options.meters === undefined ? undefined : Number(options.meters);
        if (
          !Number.isSafeInteger(seed) ||
          seed < 0 ||
          (meters !== undefined && (!Number.isSafeInteger(meters) || meters < 1))
        ) {
          process.stderr.write(
            "amiproof lab run: --seed must be a non-negative integer and --meters a positive one\n",
          );
          process.exit(2);
        }
        const bar =
          process.stderr.isTTY && !options.json
            ? new SingleBar({ format: "{bar} {percentage}% {label}" })
            : null;
        bar?.start(100, 0, { label: "" });
        const started = process.hrtime.bigint();
        let report: LabReport;
        let evidence: Record<string, unknown> | null = null;
        try {
          report = await runScenario(scenario, {
            seed,
            ...(meters === undefined ? {} : { meters }),
            mutations: options.mutate?.split(",").map((m) => m.trim()) ?? [],
            progress: (fraction, label) => bar?.update(Math.round(fraction * 100), { label: label ?? "" }),
            evidence: (status) => {
              evidence = status;
            },
          });
        } catch (error) {
          bar?.stop();
          if (error instanceof RangeError) {
            process.stderr.write(`amiproof lab run: ${error.message}\n`);
            process.exit(2);
          }
          throw error;
        }
        bar?.stop();
        if (options.evidenceOut !== undefined) {
          if (evidence === null) {
            process.stderr.write(
              `amiproof lab run: ${scenario.name} runs no concentrator in the loop: no evidence to write\n`,
            );
          } else {
            writeFileSync(options.evidenceOut, `${JSON.stringify(evidence, null, 2)}\n`);
          }
        }
        const wallMs = Number(process.hrtime.bigint() - started) / 1e6;
        if (options.json) {
          process.stdout.write(`${JSON.stringify(report)}\n`);
          const first = report.predicates.find((p) => !p.passed);
          // stdout stays one JSON object; the replay line goes to stderr.
          if (first !== undefined) {
            process.stderr.write(
              `FAILED with seed ${report.seed}: first violated predicate ${first.name}: ${first.detail}\nreplay: amiproof lab run ${report.scenario} --seed ${report.seed} --meters ${report.meters}\n`,
            );
          }
        } else {
          process.stdout.write(
            `${report.scenario}  seed ${report.seed}  meters ${report.meters}  (${(wallMs / 1000).toFixed(1)} s)\n`,
          );
          for (const p of report.predicates)
            process.stdout.write(`  ${p.passed ? "PASS" : "FAIL"}  ${p.name.padEnd(36)} ${p.detail}\n`);
          for (const [k, v] of Object.entries(report.figures))
            process.stdout.write(`        ${k.padEnd(36)} ${v}\n`);
          if (!report.passed) {
            const first = report.predicates.find((p) => !p.passed)!;
            process.stdout.write(
              `FAILED with seed ${report.seed}: first violated predicate ${first.name}: ${first.detail}\n`,
            );
            process.stdout.write(
              `replay: amiproof lab run ${report.scenario} --seed ${report.seed} --meters ${report.meters}\n`,
            );
          }
        }
        process.exitCode = report.passed ? 0 : 1;
      },
    );
}
