// shell: the command-line entry; every command lives in its own module under ./commands.
import { Command } from "commander";
import { registerBench } from "./commands/bench.ts";
import { registerCampaign } from "./commands/campaign.ts";
import { registerDcu } from "./commands/dcu.ts";
import { registerDiagnose } from "./commands/diagnose.ts";
import { registerDlms } from "./commands/dlms.ts";
import { registerEvidence } from "./commands/evidence.ts";
import { registerFirmware } from "./commands/firmware.ts";
import { registerHeadend } from "./commands/headend.ts";
import { registerLab } from "./commands/lab.ts";
import { registerMbus } from "./commands/mbus.ts";
import { registerMeter } from "./commands/meter.ts";
import { registerPki } from "./commands/pki.ts";
import { registerUp } from "./commands/up.ts";
import { registerVerify } from "./commands/verify.ts";

const program = new Command();
program
  .name("amiproof")
  .description("Provable AMI: meters, concentrators and head-end with sealed, reconcilable evidence")
  .version("0.1.0")
  .enablePositionalOptions() // subcommands own their flags (firmware build --version)
  .showHelpAfterError();

for (const register of [
  registerUp,
  registerHeadend,
  registerDcu,
  registerMeter,
  registerVerify,
  registerEvidence,
  registerLab,
  registerBench,
  registerDiagnose,
  registerDlms,
  registerMbus,
  registerPki,
  registerFirmware,
  registerCampaign,
]) {
  register(program);
}

await program.parseAsync(process.argv);
