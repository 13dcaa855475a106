import { writeFileSync } from "node:fs";
import type { Command } from "commander";
import { buildSampleBundle, EvidenceError, encodeBundle, SAMPLE_RECORDS_MAX } from "../../evidence/index.ts";

export function registerEvidence(program: Command): void {
  const evidence = program.command("evidence").description("evidence tools");
  evidence
    .command("sample")
    .description("write a sample bundle: a fresh sealed meter log plus a chain of signed batches")
    .requiredOption("--records <n>", `sealed event records in the meter log (1..${SAMPLE_RECORDS_MAX})`)
    .requiredOption("--out <file>", "where to write the bundle (JSON)")
    .option("--batches <n>", "signed reading batches in the concentrator chain", "3")
    .option("--seed <n>", "seed for the sample's content and keys", "1")
    .option("--wrap", "size the ring so it wraps (shows LOG_WRAP summaries)")
    .action((options: { records: string; out: string; batches: string; seed: string; wrap?: boolean }) => {
      const records = parseCount(options.records, "--records");
      const batches = parseCount(options.batches, "--batches", 0);
      const seed = parseCount(options.seed, "--seed", 0);
      try {
        const bundle = buildSampleBundle({ records, batches, seed, wrap: options.wrap === true });
        writeFileSync(options.out, encodeBundle(bundle));
        const events = bundle.meterLogs[0]?.records.length ?? 0;
        process.stdout.write(
          `wrote ${options.out}: ${events} sealed event records, ${batches} batches; check it with \`amiproof verify ${options.out}\`\n`,
        );
      } catch (error) {
        if (!(error instanceof EvidenceError)) throw error;
        process.stderr.write(`amiproof evidence sample: ${error.message}\n`);
        process.exit(2);
      }
    });
}

function parseCount(text: string, flag: string, min = 1): number {
  const value = Number(text);
  if (!Number.isSafeInteger(value) || value < min) {
    process.stderr.write(`amiproof evidence sample: ${flag} must be an integer ≥ ${min}, got "${text}"\n`);
    process.exit(2);
  }
  return value;
}
