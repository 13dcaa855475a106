import type { Command } from "commander";
import { notYetAvailable } from "../pending.ts";

export function registerLab(program: Command): void {
  program
    .command("lab")
    .description("fleet lab: list and run scenarios in virtual time")
    .allowUnknownOption()
    .allowExcessArguments()
    .action(() => notYetAvailable("lab", 8));
}
