import { mkdtempSync, rmSync } from "node:fs";
import { cpus, tmpdir, totalmem } from "node:os";
import { join } from "node:path";
import type { Command } from "commander";
import { BENCH_SUITES } from "../bench/suites.ts";
import type { BenchFigure } from "../bench/types.ts";

export function registerBench(program: Command): void {
  program
    .command("bench")
    .description("benchmark suite: each figure beside its raw reference measured in the same run")
    .option("--json", "print one JSON object { machine, figures }")
    .option("--quick", "short runs (smoke test; noisier figures)")
    .option("--only <suites>", `comma-separated suites: ${BENCH_SUITES.map((s) => s.name).join(", ")}`)
    .option("--dir <dir>", "scratch directory on the disk to measure", tmpdir())
    .action(async (options: { json?: boolean; quick?: boolean; only?: string; dir: string }) => {
      const wanted = options.only?.split(",").map((name) => name.trim());
      const unknown = wanted?.filter((name) => !BENCH_SUITES.some((suite) => suite.name === name)) ?? [];
      if (unknown.length > 0) {
        process.stderr.write(`amiproof bench: unknown suite(s): ${unknown.join(", ")}\n`);
        process.exit(2);
      }
      const suites = BENCH_SUITES.filter((suite) => wanted === undefined || wanted.includes(suite.name));
      const tmpDir = mkdtempSync(join(options.dir, "amiproof-bench-"));
      const figures: BenchFigure[] = [];
      try {
        for (const suite of suites) {
          const results = await suite.run({
            tmpDir,
            quick: options.quick === true,
            progress: (message) => process.stderr.write(`bench: ${message}\n`),
          });
          figures.push(...results);
          if (!options.json) for (const result of results) process.stdout.write(`${formatFigure(result)}\n`);
        }
      } finally {
        rmSync(tmpDir, { recursive: true, force: true });
      }
      if (options.json) {
        const machine = {
          node: process.version,
          platform: process.platform,
          arch: process.arch,
          cpus: cpus().length,
          cpu_model: cpus()[0]?.model ?? "unknown",
          memory_bytes: totalmem(),
          quick: options.quick === true,
        };
        process.stdout.write(`${JSON.stringify({ machine, figures }, null, 2)}\n`);
      }
    });
}

function formatFigure(f: BenchFigure): string {
  const reference =
    f.reference === null ? "" : `   vs ${f.reference.name} ${f.reference.value.toFixed(0)}  ratio ${f.ratio}`;
  const goal = f.goal === null ? "" : `   goal ${f.goal}`;
  return `${f.name.padEnd(44)} ${f.value.toFixed(f.value < 100 ? 2 : 0).padStart(12)} ${f.unit}${reference}${goal}`;
}
