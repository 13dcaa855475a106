import type { Command } from "commander";
import { notYetAvailable } from "../pending.ts";

export function registerVerify(program: Command): void {
  program
    .command("verify")
    .description("verify an exported evidence bundle")
    .allowUnknownOption()
    .allowExcessArguments()
    .action(() => notYetAvailable("verify", 2));
}
