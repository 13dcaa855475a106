import type { Command } from "commander";
import { notYetAvailable } from "../pending.ts";

export function registerMbus(program: Command): void {
  program
    .command("mbus")
    .description("M-Bus (EN 13757-3) tools: decode")
    .allowUnknownOption()
    .allowExcessArguments()
    .action(() => notYetAvailable("mbus", 6));
}
