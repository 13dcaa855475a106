// shell: `amiproof dcu` — runs one data concentrator until SIGINT/SIGTERM.

import { writeFileSync } from "node:fs";
import type { Command } from "commander";
import { exportOutboxBundle, startDcuDaemon } from "../../concentrator/index.ts";
import { encodeBundle } from "../../evidence/index.ts";

interface DcuOptions {
  id?: string;
  hes?: string;
  meter: string[];
  meterAuth: string;
  meterPassword?: string;
  meterEk?: string;
  meterAk?: string;
  meterTimeoutMs?: string;
  data?: string;
  simMeters?: string;
  pollIntervalMs: string;
  readingIntervalMs: string;
  batchRecords?: string;
  batchAgeMs?: string;
  statusIntervalMs?: string;
  timeSource: string;
  exportBundle?: string;
  firmware: boolean;
  quiet?: boolean;
}

function usage(message: string): never {
  process.stderr.write(`amiproof dcu: ${message}\n`);
  process.exit(2);
}

function positiveInt(value: string | undefined, name: string): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (!Number.isSafeInteger(n) || n < 1)
    usage(`${name} must be a positive integer, got ${JSON.stringify(value)}`);
  return n;
}

export function registerDcu(program: Command): void {
  program
    .command("dcu")
    .description(
      "run a data concentrator: poll meters, commit to the journal, uplink signed batches over MQTT",
    )
    .option("--id <ID>", "concentrator id (one MQTT topic level: [A-Za-z0-9._-])")
    .option("--hes <MQTT_URL>", "head-end broker, e.g. mqtt://127.0.0.1:1883")
    .option(
      "--meter <URL>",
      "a meter to poll (repeatable): dlms://HOST:PORT (DLMS/COSEM over TCP) or mbus://HOST:PORT/ADDRESS (M-Bus behind a TCP serial bridge; primary 1..250 or 8-digit identification)",
      (value: string, all: string[]) => [...all, value],
      [],
    )
    .option(
      "--meter-auth <hls|lls|none>",
      "association with the DLMS meters: HLS-GMAC, LLS password, or the public client",
      "hls",
    )
    .option("--meter-password <P>", "LLS password of the meters (default as amiproof meter: 12345678)")
    .option("--meter-ek <HEX>", "HLS global encryption key (default as amiproof meter: Green Book test key)")
    .option("--meter-ak <HEX>", "HLS authentication key (default as amiproof meter: Green Book test key)")
    .option("--meter-timeout-ms <MS>", "deadline of one DLMS request", "5000")
    .option("--data <DIR>", "data directory: journal, outbox, state, secure element (DIR/se)")
    .option("--sim-meters <N>", "also poll N in-process simulated meters (tests, demos)")
    .option("--poll-interval-ms <MS>", "poll period per meter", "15000")
    .option("--reading-interval-ms <MS>", "simulated meters: one reading per this period", "15000")
    .option("--batch-records <N>", "records per batch (at most 4096)")
    .option("--batch-age-ms <MS>", "seal a batch when its oldest record waited this long")
    .option("--status-interval-ms <MS>", "period of the retained status (evidence packs)")
    .option("--time-source <SOURCE>", "hes: time from ami/<dcu>/time; host: also the host's NTP clock", "hes")
    .option(
      "--no-firmware",
      "do not take firmware-campaign jobs (default: taken for the DLMS meters over their management association, LLS --meter-password; images cached in DIR/images)",
    )
    .option(
      "--export-bundle <FILE>",
      "do not run: write DIR's unacknowledged batch chain as an evidence bundle",
    )
    .option("--quiet", "no log lines on stderr")
    .action(async (options: DcuOptions) => {
      if (options.exportBundle !== undefined) {
        if (options.id === undefined || options.data === undefined)
          usage("--export-bundle needs --id and --data");
        try {
          const bundle = await exportOutboxBundle(options.id, options.data);
          writeFileSync(options.exportBundle, encodeBundle(bundle));
          const batches = bundle.batchChains[0]?.batches.length ?? 0;
          process.stderr.write(
            `amiproof dcu: ${batches} unacknowledged batches written to ${options.exportBundle}\n`,
          );
          process.exit(0);
        } catch (error) {
          process.stderr.write(`amiproof dcu: ${(error as Error).message}\n`);
          process.exit(1);
        }
      }
      if (options.id === undefined || options.hes === undefined || options.data === undefined) {
        usage("--id, --hes and --data are required (see --help)");
      }
      const bad = options.meter.find(
        (m) =>
          !/^dlms:\/\/(\[[0-9a-fA-F:.]+\]|[^/:[\]\s]+):\d{1,5}\/?$/.test(m) &&
          !/^mbus:\/\/(\[[0-9a-fA-F:.]+\]|[^/:[\]\s]+):\d{1,5}\/(\d{1,3}|\d{8})$/.test(m),
      );
      if (bad !== undefined)
        usage(
          `--meter must look like dlms://HOST:PORT or mbus://HOST:PORT/PRIMARY|IDENTIFICATION, got ${JSON.stringify(bad)}`,
        );
      const meterAuth = options.meterAuth;
      if (meterAuth !== "hls" && meterAuth !== "lls" && meterAuth !== "none")
        usage(`--meter-auth must be hls, lls or none, got ${JSON.stringify(meterAuth)}`);
      for (const [flag, hex] of [
        ["--meter-ek", options.meterEk],
        ["--meter-ak", options.meterAk],
      ] as const) {
        if (hex !== undefined && !/^[0-9a-fA-F]{32}$/.test(hex))
          usage(`${flag} must be 32 hex digits (AES-128)`);
      }
      if (options.timeSource !== "hes" && options.timeSource !== "host") {
        usage(`--time-source must be hes or host, got ${JSON.stringify(options.timeSource)}`);
      }
      const timeSource: "hes" | "host" = options.timeSource;
      const simMeters = positiveInt(options.simMeters, "--sim-meters");
      if (simMeters === undefined && options.meter.length === 0)
        usage("give --meter dlms://HOST:PORT … (repeatable) or --sim-meters N");
      const meterReadTimeoutMs = positiveInt(options.meterTimeoutMs, "--meter-timeout-ms") as number;
      const log = options.quiet
        ? undefined
        : (event: string, fields: Record<string, unknown> = {}) =>
            process.stderr.write(`${JSON.stringify({ at: new Date().toISOString(), event, ...fields })}\n`);
      let daemon: Awaited<ReturnType<typeof startDcuDaemon>>;
      try {
        const batchRecordsMax = positiveInt(options.batchRecords, "--batch-records");
        const batchAgeMaxMs = positiveInt(options.batchAgeMs, "--batch-age-ms");
        const statusIntervalMs = positiveInt(options.statusIntervalMs, "--status-interval-ms");
        daemon = await startDcuDaemon({
          dcuId: options.id,
          hesUrl: options.hes,
          dataDir: options.data,
          ...(simMeters === undefined ? {} : { simMeters }),
          meterUrls: options.meter,
          meterAuth,
          meterReadTimeoutMs,
          ...(options.meterPassword === undefined ? {} : { meterPassword: options.meterPassword }),
          ...(options.meterEk === undefined ? {} : { meterEncryptionKeyHex: options.meterEk }),
          ...(options.meterAk === undefined ? {} : { meterAuthenticationKeyHex: options.meterAk }),
          pollIntervalMs: positiveInt(options.pollIntervalMs, "--poll-interval-ms") as number,
          readingIntervalMs: positiveInt(options.readingIntervalMs, "--reading-interval-ms") as number,
          timeSource,
          firmware: options.firmware,
          ...(batchRecordsMax === undefined ? {} : { batchRecordsMax }),
          ...(batchAgeMaxMs === undefined ? {} : { batchAgeMaxMs }),
          ...(statusIntervalMs === undefined ? {} : { statusIntervalMs }),
          ...(log === undefined ? {} : { log }),
        });
      } catch (error) {
        const code = (error as { code?: string }).code;
        process.stderr.write(`amiproof dcu: ${(error as Error).message}\n`);
        process.exit(code === "BAD_CONFIG" ? 2 : 1);
      }
      const shutdown = (signal: string) => {
        log?.("signal", { signal });
        void daemon.stop().then(
          () => process.exit(0),
          (error: Error) => {
            process.stderr.write(`amiproof dcu: shutdown failed: ${error.message}\n`);
            process.exit(1);
          },
        );
      };
      process.once("SIGINT", () => shutdown("SIGINT"));
      process.once("SIGTERM", () => shutdown("SIGTERM"));
    });
}
