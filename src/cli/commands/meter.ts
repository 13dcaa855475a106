import type { Command } from "commander";
import { startFleet } from "../../meter/runtime/fleet.ts";

export function registerMeter(program: Command): void {
  program
    .command("meter")
    .description("run virtual meters in real time (metrology, sealed event log, tamper rules)")
    .requiredOption("--id <id>", "meter id (with --count N: the prefix of N ids)")
    .option("--count <n>", "number of meters", "1")
    .option("--listen <port>", "DLMS/COSEM TCP port (the DLMS server arrives with issue 5)")
    .option("--data <dir>", "keep NVM images and secure elements here (default: in memory)")
    .action((options: { id: string; count: string; listen?: string; data?: string }) => {
      const count = Number(options.count);
      if (!Number.isSafeInteger(count) || count < 1 || count > 100_000) {
        process.stderr.write("amiproof meter: --count must be an integer in 1..100000\n");
        process.exit(2);
      }
      if (options.listen !== undefined) {
        process.stderr.write(
          `amiproof meter: --listen ${options.listen} accepted, but the DLMS/COSEM server is not in this build yet (issue 5); running without it\n`,
        );
      }
      const fleet = startFleet({
        baseId: options.id,
        count,
        ...(options.data === undefined ? {} : { dataDir: options.data }),
      });
      process.stderr.write(
        `amiproof meter: ${count} virtual meter(s) running${options.data === undefined ? " in memory" : ` with NVM and keys in ${options.data}`}; Ctrl-C to stop\n`,
      );
      const tty = process.stderr.isTTY;
      const status = setInterval(
        () => {
          process.stderr.write(tty ? `\r${fleet.statusLine()}   ` : `${fleet.statusLine()}\n`);
        },
        tty ? 1000 : 10_000,
      );
      const shutdown = () => {
        clearInterval(status);
        const last = fleet.statusLine();
        fleet.stop();
        process.stderr.write(`\namiproof meter: stopped (billing registers persisted); ${last}\n`);
        process.exit(0);
      };
      process.once("SIGINT", shutdown);
      process.once("SIGTERM", shutdown);
    });
}
