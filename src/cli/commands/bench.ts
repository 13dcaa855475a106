import type { Command } from "commander";
import { notYetAvailable } from "../pending.ts";

export function registerBench(program: Command): void {
  program
    .command("bench")
    .description("benchmark suite")
    .allowUnknownOption()
    .allowExcessArguments()
    .action(() => notYetAvailable("bench", 2));
}
