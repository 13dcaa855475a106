import type { Command } from "commander";
import { notYetAvailable } from "../pending.ts";

export function registerDiagnose(program: Command): void {
  program
    .command("diagnose")
    .description("route an evidence bundle through the failure-mode map")
    .allowUnknownOption()
    .allowExcessArguments()
    .action(() => notYetAvailable("diagnose", 8));
}
