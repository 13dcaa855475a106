import type { Command } from "commander";
import { startFleet } from "../../meter/runtime/fleet.ts";

export function registerMeter(program: Command): void {
  program
    .command("meter")
    .description("run virtual meters in real time (metrology, sealed event log, tamper rules)")
    .requiredOption("--id <id>", "meter id (with --count N: the prefix of N ids)")
    .option("--count <n>", "number of meters", "1")
    .option("--listen <port>", "serve DLMS/COSEM over TCP (wrapper), meter i on port PORT+i")
    .option("--password <p>", "LLS password of the management client (wPort 1)", "12345678")
    .option("--data <dir>", "keep NVM images and secure elements here (default: in memory)")
    .option(
      "--profile-period-ms <ms>",
      "load-profile capture period (default 15 min; demos and tests shorten it)",
    )
    .action(
      async (options: {
        id: string;
        count: string;
        listen?: string;
        data?: string;
        password: string;
        profilePeriodMs?: string;
      }) => {
        const count = Number(options.count);
        if (!Number.isSafeInteger(count) || count < 1 || count > 100_000) {
          process.stderr.write("amiproof meter: --count must be an integer in 1..100000\n");
          process.exit(2);
        }
        const listen = options.listen === undefined ? undefined : Number(options.listen);
        if (listen !== undefined && (!Number.isInteger(listen) || listen < 0 || listen + count - 1 > 65535)) {
          process.stderr.write("amiproof meter: --listen must be a TCP port (0 = any free ports)\n");
          process.exit(2);
        }
        const profilePeriodMs =
          options.profilePeriodMs === undefined ? undefined : Number(options.profilePeriodMs);
        if (
          profilePeriodMs !== undefined &&
          !(Number.isSafeInteger(profilePeriodMs) && profilePeriodMs >= 1000)
        ) {
          process.stderr.write("amiproof meter: --profile-period-ms must be an integer ≥ 1000\n");
          process.exit(2);
        }
        const fleet = await startFleet({
          ...(profilePeriodMs === undefined ? {} : { profilePeriodMs }),
          baseId: options.id,
          count,
          password: options.password,
          ...(listen === undefined ? {} : { listenPort: listen }),
          ...(options.data === undefined ? {} : { dataDir: options.data }),
        });
        if (fleet.ports.length > 0) {
          process.stderr.write(
            `amiproof meter: DLMS/COSEM on TCP ports ${fleet.ports[0]}${fleet.ports.length > 1 ? `..${fleet.ports.at(-1)}` : ""} (server wPort 1); public client wPort 16 without authentication, management client wPort 1 with LLS password "${options.password}" (--password)\n`,
          );
        }
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
        const shutdown = async () => {
          clearInterval(status);
          const last = fleet.statusLine();
          await fleet.stop();
          process.stderr.write(`\namiproof meter: stopped (billing registers persisted); ${last}\n`);
          process.exit(0);
        };
        process.once("SIGINT", shutdown);
        process.once("SIGTERM", shutdown);
      },
    );
}
