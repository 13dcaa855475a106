import { readFileSync } from "node:fs";
import type { Command } from "commander";
import { EvidenceError, verifyBundleText } from "../../evidence/index.ts";
import {
  DiagnoseError,
  type Diagnosis,
  diagnoseBundle,
  diagnosePacks,
  formatDiagnosis,
} from "../../lab/index.ts";

// `amiproof diagnose BUNDLE`: route evidence through the failure-mode map of seed 003 H2-9. BUNDLE is a
// concentrator's evidence packs (its retained `ami/<dcu>/status`, `amiproof-dcu-status`, or the packs
// alone, `amiproof-dcu-evidence`, as `amiproof lab run --evidence-out` writes them) or an exported
// evidence bundle (`amiproof-evidence-bundle`, verified first). Exit 0 when no failure branch is
// indicated, 1 when one is, 2 when the file cannot be read or is not evidence.

export function registerDiagnose(program: Command): void {
  program
    .command("diagnose")
    .description("route an evidence bundle through the failure-mode map (seed 003 H2-9)")
    .argument("<bundle>", "concentrator status / evidence packs (JSON) or an evidence bundle, or - for stdin")
    .option("--json", "print the diagnosis as one JSON object")
    .action((file: string, options: { json?: boolean }) => {
      let text: string;
      try {
        text = readFileSync(file === "-" ? 0 : file, "utf8");
      } catch (error) {
        process.stderr.write(`amiproof diagnose: cannot read ${file}: ${(error as Error).message}\n`);
        process.exit(2);
      }
      let diagnosis: Diagnosis;
      try {
        let parsed: unknown;
        try {
          parsed = JSON.parse(text);
        } catch (error) {
          throw new DiagnoseError(`not JSON: ${(error as Error).message}`);
        }
        const format = (parsed as { format?: unknown } | null)?.format;
        if (format === "amiproof-evidence-bundle") {
          const report = verifyBundleText(text);
          diagnosis = diagnoseBundle({
            valid: report.valid,
            problems: report.problems.map((p) => ({ code: p.code, message: p.message, where: p.where })),
            gaps: report.gaps,
          });
        } else {
          diagnosis = diagnosePacks(parsed);
        }
      } catch (error) {
        if (!(error instanceof DiagnoseError) && !(error instanceof EvidenceError)) throw error;
        process.stderr.write(`amiproof diagnose: ${file}: ${error.message}\n`);
        process.exit(2);
      }
      process.stdout.write(options.json ? `${JSON.stringify(diagnosis)}\n` : formatDiagnosis(diagnosis));
      process.exitCode = diagnosis.healthy ? 0 : 1;
    });
}
