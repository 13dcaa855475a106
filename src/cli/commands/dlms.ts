import type { Command } from "commander";
import { notYetAvailable } from "../pending.ts";

export function registerDlms(program: Command): void {
  program
    .command("dlms")
    .description("DLMS/COSEM field tools: get, set, image, decode")
    .allowUnknownOption()
    .allowExcessArguments()
    .action(() => notYetAvailable("dlms", 5));
}
