import { resolve } from "node:path";
import type { Command } from "commander";
import {
  DEFAULT_MQTT_PORT,
  defaultVerifyWorkers,
  isHeadendError,
  isStoreError,
  parseStoreUrl,
  startHeadend,
  VERIFY_WORKERS_MAX,
} from "../../headend/index.ts";

interface HeadendCliOptions {
  db?: string;
  mqtt?: string;
  http: string;
  bind: string;
  mqttPort: string;
  mqttBind: string;
  data: string;
  assets?: string;
  logLevel: string;
  verifyWorkers: string;
}

function port(value: string, flag: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0 || n > 65535) {
    process.stderr.write(
      `amiproof headend: ${flag} must be a TCP port (0 = any free port), got "${value}"\n`,
    );
    process.exit(2);
  }
  return n;
}

export function registerHeadend(program: Command): void {
  program
    .command("headend")
    .description("run the head-end: verified batch ingest, tamper alert lane, REST API, /metrics")
    .option("--db <url>", "store: sqlite:PATH or postgres://… (default sqlite:<data>/headend.db)")
    .option("--mqtt <url>", "an MQTT broker to use (default: an embedded aedes broker)")
    .option("--http <port>", "HTTP API port (0 = any free port)", "8080")
    .option("--bind <host>", "HTTP API address", "127.0.0.1")
    .option("--mqtt-port <port>", `embedded broker port; a free one if taken`, String(DEFAULT_MQTT_PORT))
    .option("--mqtt-bind <host>", "embedded broker address", "127.0.0.1")
    .option(
      "--data <dir>",
      "data directory: database, API tokens, meter key register",
      "amiproof-data/headend",
    )
    .option("--assets <file>", "an asset register to load at start (concentrator and meter public keys)")
    .option("--log-level <level>", "pino level: fatal, error, warn, info, debug, silent", "info")
    .option("--verify-workers <n>", "batch verification worker threads (0: in the writer's thread)", "auto")
    .action(async (options: HeadendCliOptions) => {
      const httpPort = port(options.http, "--http");
      const brokerPort = port(options.mqttPort, "--mqtt-port");
      if (options.db !== undefined) {
        try {
          parseStoreUrl(options.db);
        } catch (error) {
          process.stderr.write(`amiproof headend: --db: ${(error as Error).message}\n`);
          process.exit(2);
        }
      }
      const verifyWorkers =
        options.verifyWorkers === "auto" ? defaultVerifyWorkers() : Number(options.verifyWorkers);
      if (!Number.isInteger(verifyWorkers) || verifyWorkers < 0 || verifyWorkers > VERIFY_WORKERS_MAX) {
        process.stderr.write(`amiproof headend: --verify-workers must be auto or 0..${VERIFY_WORKERS_MAX}\n`);
        process.exit(2);
      }
      const dataDir = resolve(options.data);
      let handle: Awaited<ReturnType<typeof startHeadend>>;
      try {
        handle = await startHeadend({
          ...(options.db === undefined ? {} : { dbUrl: options.db }),
          ...(options.mqtt === undefined ? {} : { mqttUrl: options.mqtt }),
          brokerPort,
          brokerHost: options.mqttBind,
          httpPort,
          httpHost: options.bind,
          dataDir,
          ...(options.assets === undefined ? {} : { assetRegisterFile: resolve(options.assets) }),
          logLevel: options.logLevel,
          verifyWorkers,
        });
      } catch (error) {
        const known = isHeadendError(error) || isStoreError(error);
        process.stderr.write(
          `amiproof headend: cannot start: ${known ? (error as Error).message : String(error)}\n`,
        );
        process.exit(1);
      }
      const broker = handle.broker;
      const lines = [
        `amiproof headend: API ${handle.apiUrl} (OpenAPI at ${handle.apiUrl}/openapi.json, metrics at ${handle.apiUrl}/metrics)`,
        broker === null
          ? `amiproof headend: MQTT broker ${handle.mqttUrl}`
          : `amiproof headend: embedded MQTT broker ${handle.mqttUrl}${broker.preferredPort ? "" : ` (port ${brokerPort} was taken)`}`,
        `amiproof headend: store ${handle.store.description}`,
        `amiproof headend: admin token in ${handle.tokenFiles.admin} (operator: ${handle.tokenFiles.operator}, viewer: ${handle.tokenFiles.viewer}; mode 0600)`,
        "amiproof headend: Ctrl-C to stop (the batch being committed is finished and acked first)",
      ];
      process.stderr.write(`${lines.join("\n")}\n`);
      let stopping = false;
      const shutdown = async (signal: string) => {
        if (stopping) {
          process.stderr.write(`amiproof headend: ${signal} again, exiting without waiting\n`);
          process.exit(1);
        }
        stopping = true;
        process.stderr.write(`amiproof headend: ${signal}: finishing the in-flight batch, then stopping\n`);
        await handle.close();
        process.stderr.write("amiproof headend: stopped\n");
        process.exit(0);
      };
      process.on("SIGINT", () => void shutdown("SIGINT"));
      process.on("SIGTERM", () => void shutdown("SIGTERM"));
    });
}
