// shell: the concentrator's firmware-campaign link — MQTT (jobs in, progress out), the images directory,
// DLMS sessions over TCP and the tick timer around the deterministic FirmwareJobs core.
import { createHash } from "node:crypto";
import {
  mkdirSync,
  readdirSync,
  readFileSync,
  renameSync,
  statSync,
  unlinkSync,
  writeFileSync,
} from "node:fs";
import { join } from "node:path";
import { connectAsync, type MqttClient } from "mqtt";
import { connectDlms } from "../../dlms/index.ts";
import {
  EvidenceError,
  encodeFirmwareProgress,
  type FirmwareProgressMessage,
  firmwareJobsTopic,
  firmwareProgressTopic,
} from "../../evidence/index.ts";
import {
  FirmwareJobs,
  type FirmwareJobsOptions,
  type FirmwareSession,
  IMAGE_CACHE_IMAGES_MAX,
  type ImageCache,
} from "../core/firmware-jobs.ts";

/** How often due jobs are started. */
export const FIRMWARE_TICK_MS = 1_000;

/**
 * Images kept as `<dir>/<checksum>.afw` (seed 000: the concentrator's images directory), written through a
 * temporary file and a rename; a file whose content no longer matches its name is removed, not served.
 */
export class DirectoryImageCache implements ImageCache {
  constructor(private readonly dir: string) {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
  }

  get(checksum: string): Uint8Array | undefined {
    if (!/^[0-9a-f]{64}$/.test(checksum)) return undefined;
    const path = join(this.dir, `${checksum}.afw`);
    let bytes: Uint8Array;
    try {
      bytes = new Uint8Array(readFileSync(path));
    } catch {
      return undefined;
    }
    if (createHash("sha256").update(bytes).digest("hex") !== checksum) {
      unlinkSync(path);
      return undefined;
    }
    return bytes;
  }

  put(checksum: string, bytes: Uint8Array): void {
    if (!/^[0-9a-f]{64}$/.test(checksum)) return;
    const path = join(this.dir, `${checksum}.afw`);
    writeFileSync(`${path}.tmp`, bytes, { mode: 0o600 });
    renameSync(`${path}.tmp`, path);
    const files = readdirSync(this.dir)
      .filter((f) => f.endsWith(".afw"))
      .map((f) => ({ f, at: statSync(join(this.dir, f)).mtimeMs }))
      .sort((a, b) => a.at - b.at);
    for (const { f } of files.slice(0, Math.max(0, files.length - IMAGE_CACHE_IMAGES_MAX)))
      unlinkSync(join(this.dir, f));
  }
}

export interface MeterEndpoint {
  readonly host: string;
  readonly port: number;
  /** LLS password of the management client. */
  readonly password: Uint8Array;
}

export interface FirmwareLinkOptions {
  readonly dcuId: string;
  readonly mqttUrl: string;
  readonly imagesDir: string;
  /** Where each meter serves DLMS (the concentrator's meter list). */
  endpoint(meterId: string): MeterEndpoint | undefined;
  readonly concurrency?: number;
  readonly retryDelayMs?: number;
  readonly attemptsMax?: number;
  readonly tickMs?: number;
  onError?(error: Error): void;
}

export interface FirmwareLink {
  readonly jobs: FirmwareJobs;
  /** Job messages refused by the decoder. */
  readonly refused: () => number;
  close(): Promise<void>;
}

export async function startFirmwareLink(options: FirmwareLinkOptions): Promise<FirmwareLink> {
  const client: MqttClient = await connectAsync(options.mqttUrl, {
    clientId: `${options.dcuId}-firmware`,
    clean: false,
    reconnectPeriod: 1_000,
  });
  let refused = 0;
  const publish = (message: FirmwareProgressMessage) => {
    client
      .publishAsync(firmwareProgressTopic(options.dcuId), Buffer.from(encodeFirmwareProgress(message)), {
        qos: 1,
      })
      .catch((error: Error) => options.onError?.(error));
  };
  const jobsOptions: FirmwareJobsOptions = {
    dcuId: options.dcuId,
    nowMs: () => Date.now(),
    cache: new DirectoryImageCache(options.imagesDir),
    publish,
    connect: async (meterId): Promise<FirmwareSession> => {
      const endpoint = options.endpoint(meterId);
      if (endpoint === undefined) throw new Error(`meter ${meterId} is not behind this concentrator`);
      const c = await connectDlms(endpoint.host, endpoint.port, 1);
      try {
        await c.client.associate({ password: endpoint.password });
      } catch (error) {
        c.close();
        throw error;
      }
      return { client: c.client, close: () => c.close() };
    },
    ...(options.concurrency === undefined ? {} : { concurrency: options.concurrency }),
    ...(options.retryDelayMs === undefined ? {} : { retryDelayMs: options.retryDelayMs }),
    ...(options.attemptsMax === undefined ? {} : { attemptsMax: options.attemptsMax }),
  };
  const jobs = new FirmwareJobs(jobsOptions);
  client.on("message", (_topic, payload) => {
    try {
      jobs.acceptBytes(new Uint8Array(payload.buffer, payload.byteOffset, payload.byteLength));
      jobs.tick();
    } catch (error) {
      if (!(error instanceof EvidenceError)) throw error;
      refused++;
      options.onError?.(error);
    }
  });
  await client.subscribeAsync(firmwareJobsTopic(options.dcuId), { qos: 1 });
  const timer = setInterval(() => jobs.tick(), options.tickMs ?? FIRMWARE_TICK_MS);
  timer.unref();
  return {
    jobs,
    refused: () => refused,
    async close() {
      clearInterval(timer);
      await jobs.idle();
      await client.endAsync();
    },
  };
}
