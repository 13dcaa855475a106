import type { Command } from "commander";
import { notYetAvailable } from "../pending.ts";

export function registerPki(program: Command): void {
  program
    .command("pki")
    .description("keys and certificates")
    .allowUnknownOption()
    .allowExcessArguments()
    .action(() => notYetAvailable("pki", 4));
}
