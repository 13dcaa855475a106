import type { Command } from "commander";
import { notYetAvailable } from "../pending.ts";

export function registerHeadend(program: Command): void {
  program
    .command("headend")
    .description("run the head-end (verify, store, alert, API)")
    .allowUnknownOption()
    .allowExcessArguments()
    .action(() => notYetAvailable("headend", 7));
}
