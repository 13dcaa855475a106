import { existsSync, readFileSync } from "node:fs";
import type { Command } from "commander";
import { versionString } from "../../meter/index.ts";
import {
  type FirmwareProvisioning,
  loadFirmwareProvisioning,
  ProvisioningError,
} from "../../meter/runtime/firmware-provision.ts";
import { type RunningFleet, startFleet } from "../../meter/runtime/fleet.ts";

/** Meter i's port at position i: a range when consecutive (--listen PORT), else each (--listen 0). */
function portList(ports: readonly number[]): string {
  const consecutive = ports.every((p, i) => p === ports[0]! + i);
  return consecutive && ports.length > 1 ? `${ports[0]}..${ports.at(-1)}` : ports.join(",");
}

function fail(message: string, code = 2): never {
  process.stderr.write(`amiproof meter: ${message}\n`);
  process.exit(code);
}

/** The head-end's OTP master key file (<headend data>/otp-master.key): at least 32 bytes as hex. */
export function readOtpMasterKey(path: string): Uint8Array {
  if (!existsSync(path)) throw new ProvisioningError(`--otp-master ${path} does not exist`);
  const hex = readFileSync(path, "utf8").trim();
  if (!/^([0-9a-f]{2}){32,}$/.test(hex))
    throw new ProvisioningError(`--otp-master ${path} must hold at least 32 bytes as hex`);
  return new Uint8Array(Buffer.from(hex, "hex"));
}

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
      "--pki <dir>",
      "firmware: trust anchor DIR/ca.crt.pem and golden images DIR/golden-{app,comms}.afw (built once from DIR/firmware-signing.* when absent; amiproof pki init DIR); each meter serves image transfer",
    )
    .option(
      "--otp-master <file>",
      "the head-end's OTP master key (<headend data>/otp-master.key): each meter serves the OTP-signed rollback command (needs --pki)",
    )
    .option(
      "--fault-no-watchdog-kick <meter-id>",
      "for tests only: this meter's new application never kicks its watchdog (rolled back, WDT_REBOOT_LOOP) (needs --pki)",
    )
    .option(
      "--fault-corrupt-block <meter-id>",
      "for tests only: this meter receives block 1 of every image transfer corrupted (ERROR_CRC_MISMATCH) (needs --pki)",
    )
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
        pki?: string;
        otpMaster?: string;
        faultNoWatchdogKick?: string;
        faultCorruptBlock?: string;
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
        if (options.otpMaster !== undefined && options.pki === undefined)
          fail("--otp-master needs --pki DIR (the rollback command acts on provisioned firmware)");
        if (
          (options.faultNoWatchdogKick !== undefined || options.faultCorruptBlock !== undefined) &&
          options.pki === undefined
        )
          fail("--fault-no-watchdog-kick and --fault-corrupt-block act on firmware: they need --pki DIR");
        let firmware: FirmwareProvisioning | undefined;
        let rollbackKey: ((meterId: string) => Uint8Array) | undefined;
        try {
          if (options.pki !== undefined) firmware = loadFirmwareProvisioning(options.pki);
          if (options.otpMaster !== undefined) {
            const master = readOtpMasterKey(options.otpMaster);
            // Only this option needs the head-end's key derivation (the factory's side of it).
            const { deriveMeterOtpKey } = await import("../../headend/index.ts");
            rollbackKey = (meterId) => deriveMeterOtpKey(master, meterId);
          }
        } catch (error) {
          if (!(error instanceof ProvisioningError)) throw error;
          fail(error.message);
        }
        let fleet: RunningFleet;
        try {
          fleet = await startFleet({
            ...(firmware === undefined ? {} : { firmware }),
            ...(rollbackKey === undefined ? {} : { rollbackKey }),
            ...(profilePeriodMs === undefined ? {} : { profilePeriodMs }),
            ...(options.faultNoWatchdogKick === undefined
              ? {}
              : { faultNoWatchdogKick: options.faultNoWatchdogKick }),
            ...(options.faultCorruptBlock === undefined
              ? {}
              : { faultCorruptBlock: options.faultCorruptBlock }),
            baseId: options.id,
            count,
            password: options.password,
            ...(listen === undefined ? {} : { listenPort: listen }),
            ...(options.data === undefined ? {} : { dataDir: options.data }),
          });
        } catch (error) {
          if (!(error instanceof ProvisioningError)) throw error;
          fail(error.message, 1);
        }
        if (fleet.ports.length > 0) {
          process.stderr.write(
            `amiproof meter: DLMS/COSEM on TCP ports ${portList(fleet.ports)} (server wPort 1); public client wPort 16 without authentication, management client wPort 1 with LLS password "${options.password}" (--password)\n`,
          );
        }
        if (firmware !== undefined) {
          process.stderr.write(
            `amiproof meter: firmware A/B banks, golden app ${versionString(firmware.goldenApp.version)} / comms ${versionString(firmware.goldenComms.version)} trusted by ${options.pki}; rollback command ${rollbackKey === undefined ? "not served (no --otp-master)" : "served (OTP keys from --otp-master)"}\n`,
          );
        }
        if (options.faultNoWatchdogKick !== undefined)
          process.stderr.write(
            `amiproof meter: TEST FAULT: ${options.faultNoWatchdogKick} never kicks its watchdog after an activation\n`,
          );
        if (options.faultCorruptBlock !== undefined)
          process.stderr.write(
            `amiproof meter: TEST FAULT: ${options.faultCorruptBlock} receives block 1 of image transfers corrupted\n`,
          );
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
