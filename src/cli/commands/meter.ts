import type { Command } from "commander";
import { notYetAvailable } from "../pending.ts";

export function registerMeter(program: Command): void {
  program
    .command("meter")
    .description("run virtual meters")
    .allowUnknownOption()
    .allowExcessArguments()
    .action(() => notYetAvailable("meter", 3));
}
