import { readFileSync } from "node:fs";
import type { Command } from "commander";
import { type BundleReport, EvidenceError, verifyBundleText } from "../../evidence/index.ts";

export function registerVerify(program: Command): void {
  program
    .command("verify")
    .description(
      "verify an exported evidence bundle: CRCs, hash chains, signatures, Merkle roots, seq continuity",
    )
    .argument("<file>", "evidence bundle (JSON), or - for stdin")
    .option("--json", "print the report as one JSON object")
    .action((file: string, options: { json?: boolean }) => {
      let text: string;
      try {
        text = readFileSync(file === "-" ? 0 : file, "utf8");
      } catch (error) {
        process.stderr.write(`amiproof verify: cannot read ${file}: ${(error as Error).message}\n`);
        process.exit(2);
      }
      let report: BundleReport;
      try {
        report = verifyBundleText(text);
      } catch (error) {
        if (!(error instanceof EvidenceError)) throw error;
        if (options.json) {
          process.stdout.write(
            `${JSON.stringify({ valid: false, error: { code: error.code, message: error.message } })}\n`,
          );
        }
        process.stderr.write(`INVALID ${file}: ${error.message}\n`);
        process.exit(1);
      }
      if (options.json) process.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
      else process.stdout.write(formatReport(file, report));
      process.exitCode = report.valid ? 0 : 1;
    });
}

function formatReport(file: string, report: BundleReport): string {
  const c = report.counts;
  const lines = [
    `bundle ${file}`,
    `  ${c.meterLogs} meter log(s), ${c.eventRecords} sealed event record(s); ${c.batchChains} batch chain(s), ${c.batches} batch(es), ${c.readings} reading(s)`,
    "  keys (compare fingerprints with the asset register):",
    ...report.keys.map((k) => `    ${k.keyId}  ${k.owner}  ${k.purpose}`),
  ];
  if (report.gaps.length > 0) {
    lines.push("  explained gaps (attributed, not tampering):");
    for (const gap of report.gaps) lines.push(`    ${gap.class}  ${gap.where}: ${gap.message}`);
  }
  if (report.valid) {
    lines.push("VALID: every CRC, chain link, signature, Merkle root and seq range checks out");
  } else {
    const first = report.problems[0]!;
    lines.push(`INVALID: first bad record: ${first.where}: ${first.code}: ${first.message}`);
    for (const problem of report.problems.slice(1, 20)) {
      lines.push(`  also ${problem.where}: ${problem.code}: ${problem.message}`);
    }
    if (report.problems.length > 20) lines.push(`  … ${report.problems.length - 20} more`);
  }
  return `${lines.join("\n")}\n`;
}
