import type { Command } from "commander";
import { notYetAvailable } from "../pending.ts";

export function registerEvidence(program: Command): void {
  program
    .command("evidence")
    .description("evidence tools: sample bundles")
    .allowUnknownOption()
    .allowExcessArguments()
    .action(() => notYetAvailable("evidence", 2));
}
