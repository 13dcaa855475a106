import type { Command } from "commander";
import { notYetAvailable } from "../pending.ts";

export function registerDcu(program: Command): void {
  program
    .command("dcu")
    .description("run a data concentrator")
    .allowUnknownOption()
    .allowExcessArguments()
    .action(() => notYetAvailable("dcu", 6));
}
