import { resolve } from "node:path";
import type { Command } from "commander";
import { DEFAULT_MQTT_PORT } from "../../headend/index.ts";
import {
  defaultMeterSource,
  startUp,
  UP_DCUS_MAX,
  UP_DLMS_METERS_MAX,
  UP_METERS_MAX,
  type UpHandle,
} from "../up.ts";

interface UpCliOptions {
  meters: string;
  dcus: string;
  http: string;
  bind: string;
  data: string;
  mqttPort: string;
  mqtt?: string;
  db?: string;
  readingIntervalMs: string;
  pollIntervalMs: string;
  logLevel: string;
  status: boolean;
  meterSource?: string;
}

/** The status line is redrawn this often on a terminal; printed as a plain line this often otherwise. */
const STATUS_TTY_MS = 1_000;
const STATUS_LOG_MS = 10_000;

function usage(message: string): never {
  process.stderr.write(`amiproof up: ${message}\n`);
  process.exit(2);
}

function intIn(text: string, flag: string, min: number, max: number): number {
  const n = Number(text);
  if (!/^\d+$/.test(text) || n < min || n > max)
    usage(`${flag} must be an integer ${min}..${max}, got ${JSON.stringify(text)}`);
  return n;
}

export function registerUp(program: Command): void {
  program
    .command("up")
    .description("all in one: head-end, embedded broker, concentrators, virtual meters, dashboard")
    .option("--meters <n>", "virtual meters", "20")
    .option("--dcus <m>", "concentrators", "2")
    .option("--http <port>", "HTTP port for the API and dashboard (0 = any free port)", "8080")
    .option("--bind <host>", "HTTP address", "127.0.0.1")
    .option("--data <dir>", "data directory (head-end store, concentrator journals, tokens)", "./data")
    .option("--mqtt-port <port>", "embedded MQTT broker port; a free one if taken", String(DEFAULT_MQTT_PORT))
    .option(
      "--mqtt <url>",
      "an external MQTT broker instead of the embedded one (e.g. mqtt://127.0.0.1:1883)",
    )
    .option("--db <url>", "head-end store: sqlite:PATH (default <data>/headend/headend.db) or postgres://…")
    .option("--reading-interval-ms <ms>", "a reading per meter this often (demo pace)", "15000")
    .option("--poll-interval-ms <ms>", "concentrators poll each meter this often", "1000")
    .option(
      "--meter-source <source>",
      `dlms: virtual meters served over DLMS/COSEM on local TCP ports (default up to ${UP_DLMS_METERS_MAX}); sim: simulated inside the concentrators`,
    )
    .option("--log-level <level>", "head-end log level (pino), on stderr", "warn")
    .option("--no-status", "no live status line")
    .action(async (options: UpCliOptions) => {
      const meters = intIn(options.meters, "--meters", 1, UP_METERS_MAX);
      const dcus = intIn(options.dcus, "--dcus", 1, UP_DCUS_MAX);
      if (dcus > meters) usage(`--dcus (${dcus}) cannot exceed --meters (${meters})`);
      const httpPort = intIn(options.http, "--http", 0, 65_535);
      const mqttPort = intIn(options.mqttPort, "--mqtt-port", 0, 65_535);
      const readingIntervalMs = intIn(options.readingIntervalMs, "--reading-interval-ms", 1_000, 86_400_000);
      const pollIntervalMs = intIn(options.pollIntervalMs, "--poll-interval-ms", 100, 86_400_000);
      const meterSource = options.meterSource ?? defaultMeterSource(meters);
      if (meterSource !== "dlms" && meterSource !== "sim")
        usage(`--meter-source must be dlms or sim, got ${JSON.stringify(meterSource)}`);
      if (meterSource === "dlms" && meters > UP_DLMS_METERS_MAX)
        usage(
          `--meter-source dlms serves at most ${UP_DLMS_METERS_MAX} meters (a TCP port each); use --meter-source sim`,
        );
      const dataDir = resolve(options.data);
      const started = Date.now();
      let up: UpHandle;
      try {
        up = await startUp({
          meters,
          dcus,
          httpPort,
          httpHost: options.bind,
          dataDir,
          mqttPort,
          ...(options.mqtt === undefined ? {} : { mqttUrl: options.mqtt }),
          ...(options.db === undefined ? {} : { dbUrl: options.db }),
          readingIntervalMs,
          pollIntervalMs,
          meterSource,
          logLevel: options.logLevel,
        });
      } catch (error) {
        process.stderr.write(`amiproof up: cannot start: ${(error as Error).message}\n`);
        process.exit(1);
      }
      const out = process.stdout;
      out.write(
        [
          `amiproof up: ${meters} virtual meters (${meterSource === "dlms" ? "DLMS/COSEM over TCP, HLS-GMAC" : "simulated in the concentrators"}) behind ${dcus} concentrators, started in ${Date.now() - started} ms`,
          `dashboard: ${up.apiUrl}/${up.httpPortTaken ? ` (port ${httpPort} was taken)` : ""}`,
          `api: ${up.apiUrl}/api (OpenAPI ${up.apiUrl}/openapi.json, metrics ${up.apiUrl}/metrics)`,
          `mqtt: ${up.mqttUrl}`,
          `tokens: ${up.tokensDir} (admin.token, operator.token, viewer.token)`,
          ...(up.firmware === null
            ? []
            : [
                `firmware: campaigns ready; CA and signing key in ${up.pkiDir} (amiproof firmware build --key ${up.pkiDir}/firmware-signing.key.pem --cert ${up.pkiDir}/firmware-signing.crt.pem), meters on golden ${up.pkiDir}/golden-app.afw`,
              ]),
          `data: ${dataDir}`,
          "Ctrl-C to stop (concentrators drain, the head-end commits and acks what it holds)",
          "",
        ].join("\n"),
      );
      const tty = out.isTTY === true;
      let timer: NodeJS.Timeout | null = null;
      if (options.status) {
        let busy = false;
        timer = setInterval(
          () => {
            if (busy) return;
            busy = true;
            up.statusLine()
              .then((line) => out.write(tty ? `\r\x1b[K${line}` : `${new Date().toISOString()} ${line}\n`))
              .catch(() => {})
              .finally(() => {
                busy = false;
              });
          },
          tty ? STATUS_TTY_MS : STATUS_LOG_MS,
        );
      }
      let stopping = false;
      const shutdown = async (signal: string) => {
        if (stopping) {
          process.stderr.write(`\namiproof up: ${signal} again, exiting without waiting\n`);
          process.exit(1);
        }
        stopping = true;
        if (timer !== null) clearInterval(timer);
        process.stderr.write(`${tty ? "\n" : ""}amiproof up: ${signal}: stopping (nothing is lost)\n`);
        await up.stop();
        process.stderr.write("amiproof up: stopped\n");
        process.exit(0);
      };
      process.on("SIGINT", () => void shutdown("SIGINT"));
      process.on("SIGTERM", () => void shutdown("SIGTERM"));
    });
}
