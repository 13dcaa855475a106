import type { Command } from "commander";
import { notYetAvailable } from "../pending.ts";

export function registerFirmware(program: Command): void {
  program
    .command("firmware")
    .description("build and inspect signed firmware images")
    .allowUnknownOption()
    .allowExcessArguments()
    .action(() => notYetAvailable("firmware", 4));
}
