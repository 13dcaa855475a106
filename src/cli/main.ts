// shell: the command-line entry; every command lives in its own module under ./commands.
import { Command } from "commander";

type Register = (program: Command) => void;

// Loaded on demand: a command pulls in only its own dependencies (`amiproof verify` needs no HTTP server,
// MQTT client or X.509 library), which keeps a CLI start near bare Node. Order is the help's order.
const COMMANDS: Record<string, () => Promise<Register>> = {
  up: async () => (await import("./commands/up.ts")).registerUp,
  headend: async () => (await import("./commands/headend.ts")).registerHeadend,
  dcu: async () => (await import("./commands/dcu.ts")).registerDcu,
  meter: async () => (await import("./commands/meter.ts")).registerMeter,
  verify: async () => (await import("./commands/verify.ts")).registerVerify,
  evidence: async () => (await import("./commands/evidence.ts")).registerEvidence,
  lab: async () => (await import("./commands/lab.ts")).registerLab,
  bench: async () => (await import("./commands/bench.ts")).registerBench,
  diagnose: async () => (await import("./commands/diagnose.ts")).registerDiagnose,
  campaign: async () => (await import("./commands/campaign.ts")).registerCampaign,
  dlms: async () => (await import("./commands/dlms.ts")).registerDlms,
  mbus: async () => (await import("./commands/mbus.ts")).registerMbus,
  pki: async () => (await import("./commands/pki.ts")).registerPki,
  firmware: async () => (await import("./commands/firmware.ts")).registerFirmware,
};

const program = new Command();
program
  .name("amiproof")
  .description("Provable AMI: meters, concentrators and head-end with sealed, reconcilable evidence")
  .version("0.1.0")
  .enablePositionalOptions() // subcommands own their flags (firmware build --version)
  .showHelpAfterError();

// The first argument that is not an option names the command; anything else (help, a typo) loads them all
// so that commander can list them or suggest one.
const named = process.argv.slice(2).find((arg) => !arg.startsWith("-"));
const wanted = named !== undefined && named in COMMANDS ? [named] : Object.keys(COMMANDS);
for (const name of wanted) (await COMMANDS[name]!())(program);

await program.parseAsync(process.argv);
