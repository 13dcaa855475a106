// What the browser tests run against: a real head-end with meters that have readings and sealed events,
// and a way to put a magnet on a meter. Two ways to get one, behind one interface:
//  - `startHeadendLab`: startHeadend + a test concentrator publishing real signed batches and sealed alerts
//    over MQTT (test/headend/helpers.ts);
//  - `startUpLab`: `amiproof up` as a child process — its contract: it prints `dashboard: URL` and
//    `tokens: DIR` (files admin, operator, viewer — with or without `.token`), and the admin endpoint
//    `POST /api/lab/meters/:id/tamper {"kind":"magnet"}` puts a magnet on a virtual meter.
import { type ChildProcess, spawn } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { connect, type MqttClient } from "mqtt";
import {
  encodeAlert,
  encodeBatch,
  encodeFirmwareProgress,
  firmwareProgressTopic,
  type ReadingRecordFields,
  toHex,
} from "../../src/evidence/index.ts";
import { FIRMWARE_CA_FILE, type HeadendHandle, startHeadend } from "../../src/headend/index.ts";
import { DEFAULT_TAMPER_CONFIG } from "../../src/meter/index.ts";
import { TestDcu, TestMeter } from "../headend/helpers.ts";
import { image, pki } from "../meter/firmware-harness.ts";

export type Role = "admin" | "operator" | "viewer";

export interface Lab {
  readonly kind: "headend" | "up";
  /** The dashboard's URL, ending in `/`. */
  readonly dashboardUrl: string;
  readonly tokens: Readonly<Record<Role, string>>;
  /** A meter whose readings and sealed events the head-end holds. */
  readonly meterId: string;
  /** The firmware campaign the lab set up and the state it holds it in. */
  readonly campaign: { readonly name: string; readonly state: "running" | "pending_approval" };
  /**
   * How long after an injection the meter may take to seal the tamper: 0 when the lab seals the record at
   * once; for a virtual meter whose own tamper rules decide, its magnet time gate (seed 002 H2-6, 2 s) plus
   * an allowance for its sampling (measured here: about 1 s).
   */
  readonly tamperSealedWithinMs: number;
  /** Puts a magnet on `meterId`'s meter; resolves once the injection was handed over (not yet alerted). */
  injectMagnet(meterId: string): Promise<void>;
  api(method: string, path: string, role: Role, body?: unknown): Promise<{ status: number; json: unknown }>;
  close(): Promise<void>;
}

const HOUR = 3_600_000;
/** A virtual meter notices a held magnet within this (its sensor sampling), before its time gate runs. */
const METER_SAMPLING_ALLOWANCE_MS = 2_000;
const INTERVAL_MS = 15 * 60_000;
export const LAB_METERS = 60;
const INTERVALS = 48;
const INTERVALS_PER_BATCH = 8;

async function callApi(baseUrl: string, token: string, method: string, path: string, body?: unknown) {
  const response = await fetch(new URL(path, baseUrl), {
    method,
    headers: {
      authorization: `Bearer ${token}`,
      ...(body === undefined ? {} : { "content-type": "application/json" }),
    },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  const text = await response.text();
  let json: unknown = text;
  try {
    json = JSON.parse(text);
  } catch {
    // not JSON
  }
  return { status: response.status, json };
}

async function until<T>(what: string, timeoutMs: number, probe: () => Promise<T | null>): Promise<T> {
  const started = Date.now();
  for (;;) {
    const value = await probe();
    if (value !== null) return value;
    if (Date.now() - started > timeoutMs)
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

/** startHeadend with 60 meters on one concentrator, 12 h of 15-minute readings, a SEQ_GAP and sealed events. */
export async function startHeadendLab(): Promise<Lab> {
  const dir = mkdtempSync(join(tmpdir(), "amiproof-web-"));
  let h: HeadendHandle | null = null;
  let client: MqttClient | null = null;
  const cleanup = async () => {
    await client?.endAsync().catch(() => {});
    await h?.close();
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    // The firmware CA the head-end's repository checks images against (campaigns).
    writeFileSync(join(dir, FIRMWARE_CA_FILE), pki.ca.certificatePem);
    h = await startHeadend({
      dbUrl: `sqlite:${join(dir, "headend.db")}`,
      brokerPort: 0,
      httpPort: 0,
      dataDir: dir,
      clientIdPrefix: `test-web-${process.pid}`,
      logLevel: "silent",
    });
    const handle = h;
    const call = (method: string, path: string, role: Role, body?: unknown) =>
      callApi(handle.apiUrl, handle.tokens[role], method, path, body);

    const dcu = new TestDcu("DCU-WEB-1");
    const meters = Array.from(
      { length: LAB_METERS },
      (_, i) => new TestMeter(`MTR-${String(i + 1).padStart(4, "0")}`, i + 1),
    );
    const provisioned = await call("POST", "/api/concentrators", "admin", {
      dcu_id: dcu.dcuId,
      batch_sign_public_key: toHex(dcu.publicKey),
    });
    if (provisioned.status !== 201) throw new Error(`provisioning the concentrator: ${provisioned.status}`);
    const registered = await call("POST", "/api/meters", "admin", {
      meters: meters.map((m, i) => ({
        meter_id: m.meterId,
        event_seal_public_key: toHex(m.publicKey),
        dcu_id: dcu.dcuId,
        transformer_id: `TR-${1 + (i % 4)}`,
        model: "AMP-TEST-1",
        group: i < 10 ? "pilot" : "fleet",
      })),
    });
    if (registered.status !== 201) throw new Error(`registering meters: ${registered.status}`);

    client = connect(handle.mqttUrl, { clientId: `test-web-dcu-${process.pid}`, clean: true });
    const mqtt = client;
    await new Promise<void>((resolve, reject) => {
      mqtt.once("connect", () => resolve());
      mqtt.once("error", reject);
    });

    // 12 hours of 15-minute readings ending now: a daily-looking load, per meter a little different.
    const start = Math.floor(Date.now() / INTERVAL_MS) * INTERVAL_MS - (INTERVALS - 1) * INTERVAL_MS;
    const registers = new Map<string, number>(meters.map((m, i) => [m.meterId, 1_000_000 + i * 10_000]));
    let expected = 0;
    for (let b = 0; b < INTERVALS / INTERVALS_PER_BATCH; b++) {
      const readings: ReadingRecordFields[] = [];
      for (let k = 0; k < INTERVALS_PER_BATCH; k++) {
        const interval = b * INTERVALS_PER_BATCH + k;
        const timestampMs = start + interval * INTERVAL_MS;
        const hourOfDay = new Date(timestampMs).getUTCHours();
        meters.forEach((m, i) => {
          let seq = (dcu.seqs.get(m.meterId) ?? 0) + 1;
          // MTR-0004 loses one reading at capture: a SEQ_GAP for the evidence page.
          if (i === 3 && interval === 20) seq++;
          dcu.seqs.set(m.meterId, seq);
          const watts = 250 + 180 * Math.sin(((hourOfDay + i) / 24) * 2 * Math.PI) + 20 * (interval % 3);
          const energy = (registers.get(m.meterId) ?? 0) + Math.round((watts * INTERVAL_MS) / HOUR);
          registers.set(m.meterId, energy);
          readings.push({
            timestampMs,
            meterId: m.meterId,
            values: [
              { obis: [1, 0, 1, 8, 0, 255], value: energy, scaler: 0, unit: 30 },
              { obis: [1, 0, 32, 7, 0, 255], value: 2300 + (interval % 7), scaler: -1, unit: 35 },
            ],
            seq,
            commitId: dcu.nextCommitId++,
            timeQuality: "SYNCED",
          });
        });
      }
      expected += readings.length * 2;
      await mqtt.publishAsync(`ami/${dcu.dcuId}/batches`, Buffer.from(encodeBatch(dcu.seal(readings))), {
        qos: 1,
      });
    }
    await until("the readings to be stored", 20_000, async () =>
      (await handle.store.counts()).readingsStoredTotal >= expected ? true : null,
    );

    // Sealed events: a power-up on the first meter (its log starts at the genesis digest).
    const target = meters[0]!;
    const publishEvent = async (meter: TestMeter, type: "POWER_UP" | "MAG_TAMPER", snapshot = {}) => {
      const record = meter.event(type, type === "POWER_UP" ? "INFO" : "MAJOR", Date.now(), snapshot);
      await mqtt.publishAsync(
        `ami/${dcu.dcuId}/alerts`,
        Buffer.from(
          encodeAlert({
            dcuId: dcu.dcuId,
            meterId: meter.meterId,
            record: record.bytes,
            forwardedMs: Date.now(),
            timeQuality: "SYNCED",
          }),
        ),
        { qos: 1 },
      );
    };
    await publishEvent(target, "POWER_UP");
    await until("the power-up event to be stored", 10_000, async () =>
      (await handle.store.counts()).eventsTotal >= 1 ? true : null,
    );

    // A firmware campaign on the pilot group (10 meters), running its first wave: 2 confirmed, 1 failed.
    const update = image("app", 1_001_000);
    const uploaded = await call("POST", "/api/campaigns/images", "admin", {
      image_base64: Buffer.from(update.bytes).toString("base64"),
    });
    if (uploaded.status !== 201) throw new Error(`uploading an image: ${JSON.stringify(uploaded.json)}`);
    const checksum = (uploaded.json as { checksum: string }).checksum;
    const campaign = "app 1.1.0 pilot";
    const created = await call("POST", "/api/campaigns", "operator", {
      name: campaign,
      kind: "update",
      image_checksum: checksum,
      targets: { groups: ["pilot"] },
      waves: [50, 100],
      window_minutes: 1,
    });
    if (created.status !== 201) throw new Error(`creating a campaign: ${JSON.stringify(created.json)}`);
    const id = (created.json as { campaign_id: string }).campaign_id;
    for (const step of ["approve", "start"]) {
      const r = await call("POST", `/api/campaigns/${id}/${step}`, "operator", {});
      if (r.status !== 200) throw new Error(`campaign ${step}: ${JSON.stringify(r.json)}`);
    }
    const progress = (meterId: string, state: "done" | "failed", reason: string | null) =>
      mqtt.publishAsync(
        firmwareProgressTopic(dcu.dcuId),
        Buffer.from(
          encodeFirmwareProgress({
            campaignId: id,
            dcuId: dcu.dcuId,
            reports: [
              {
                meterId,
                state,
                reason,
                blocksDone: 1,
                blocksTotal: 1,
                activeChecksum: state === "done" ? checksum : null,
                firmwareId: null,
                atMs: Date.now(),
              },
            ],
          }),
        ),
        { qos: 1 },
      );
    await progress("MTR-0001", "done", null);
    await progress("MTR-0002", "done", null);
    await progress("MTR-0003", "failed", "ERROR_CRC_MISMATCH");
    await until("the campaign's progress", 10_000, async () => {
      const c = (await call("GET", `/api/campaigns/${id}`, "viewer")).json as {
        counts?: Record<string, number>;
      };
      return (c.counts?.confirmed ?? 0) + (c.counts?.failed ?? 0) >= 3 ? true : null;
    });

    return {
      kind: "headend",
      dashboardUrl: `${handle.apiUrl}/`,
      tokens: handle.tokens,
      meterId: target.meterId,
      campaign: { name: campaign, state: "running" },
      tamperSealedWithinMs: 0,
      api: call,
      async injectMagnet(meterId) {
        const meter = meters.find((m) => m.meterId === meterId);
        if (meter === undefined) throw new Error(`no test meter ${meterId}`);
        // What a meter's tamper rules seal on a magnet above 50 mT (seed 004), forwarded by its concentrator.
        await publishEvent(meter, "MAG_TAMPER", { field_mt: 75 });
      },
      close: cleanup,
    };
  } catch (error) {
    await cleanup();
    throw error;
  }
}

/** `amiproof up` as a child process (the acceptance's system under test). */
export async function startUpLab(options: { meters?: number; dcus?: number } = {}): Promise<Lab> {
  const dir = mkdtempSync(join(tmpdir(), "amiproof-web-up-"));
  const bin = join(import.meta.dirname, "../../bin/amiproof.js");
  const caFile = join(dir, "firmware-ca.pem");
  writeFileSync(caFile, pki.ca.certificatePem);
  const child: ChildProcess = spawn(
    process.execPath,
    [
      bin,
      "up",
      "--meters",
      String(options.meters ?? 24),
      "--dcus",
      String(options.dcus ?? 2),
      "--http",
      "0",
      "--data",
      dir,
      // Demo pace for a test: a reading every second, polled twice a second, so charts fill at once.
      "--reading-interval-ms",
      "1000",
      "--poll-interval-ms",
      "500",
      "--no-status",
    ],
    // The firmware CA its campaign repository checks images against.
    { stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, AMIPROOF_FIRMWARE_CA: caFile } },
  );
  let output = "";
  child.stdout?.on("data", (chunk: Buffer) => {
    output += chunk.toString();
  });
  child.stderr?.on("data", (chunk: Buffer) => {
    output += chunk.toString();
  });
  const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)));
  const stop = async () => {
    if (child.exitCode === null) {
      child.kill("SIGTERM");
      const timer = setTimeout(() => child.kill("SIGKILL"), 10_000);
      await exited;
      clearTimeout(timer);
    }
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    const lines = await until("`amiproof up` to print its dashboard and tokens lines", 120_000, async () => {
      if (child.exitCode !== null) throw new Error(`amiproof up exited ${child.exitCode}:\n${output}`);
      const dashboard = /dashboard:\s*(\S+)/.exec(output)?.[1];
      const tokens = /tokens:\s*(\S+)/.exec(output)?.[1];
      return dashboard !== undefined && tokens !== undefined ? { dashboard, tokens } : null;
    });
    const readToken = (role: Role) => {
      for (const name of [role, `${role}.token`]) {
        const path = join(lines.tokens, name);
        if (existsSync(path)) return readFileSync(path, "utf8").trim();
      }
      throw new Error(`no ${role} token file in ${lines.tokens}`);
    };
    const tokens = {
      admin: readToken("admin"),
      operator: readToken("operator"),
      viewer: readToken("viewer"),
    };
    const dashboardUrl = lines.dashboard.endsWith("/") ? lines.dashboard : `${lines.dashboard}/`;
    const call = (method: string, path: string, role: Role, body?: unknown) =>
      callApi(dashboardUrl, tokens[role], method, path, body);
    // A meter whose readings have arrived (the virtual meters read every few seconds).
    const meterId = await until("a virtual meter's readings at the head-end", 120_000, async () => {
      const page = (await call("GET", "/api/meters?limit=100", "viewer")).json as {
        items?: { meter_id: string; last_reading_ms: number | null }[];
      };
      const withReadings = (page.items ?? []).filter((m) => m.last_reading_ms !== null);
      if (withReadings.length === 0) return null;
      // Two readings at least: the load chart draws differences of the energy register.
      for (const m of withReadings) {
        const readings = (
          await call("GET", `/api/meters/${encodeURIComponent(m.meter_id)}/readings?limit=10`, "viewer")
        ).json as { items?: { obis: string }[] };
        if ((readings.items ?? []).filter((r) => r.obis === "1.0.1.8.0.255").length >= 2) return m.meter_id;
      }
      return null;
    });
    // A campaign over the meter's concentrator, left waiting for approval (nothing is sent to the meters).
    const dcuId = (
      (await call("GET", `/api/meters/${encodeURIComponent(meterId)}`, "viewer")).json as { dcu_id: string }
    ).dcu_id;
    const uploaded = await call("POST", "/api/campaigns/images", "admin", {
      image_base64: Buffer.from(image("app", 1_001_000).bytes).toString("base64"),
    });
    if (uploaded.status !== 201) throw new Error(`uploading an image: ${JSON.stringify(uploaded.json)}`);
    const campaign = "app 1.1.0 first concentrator";
    const created = await call("POST", "/api/campaigns", "operator", {
      name: campaign,
      kind: "update",
      image_checksum: (uploaded.json as { checksum: string }).checksum,
      targets: { dcu_ids: [dcuId] },
      waves: [50, 100],
      window_minutes: 1,
    });
    if (created.status !== 201) throw new Error(`creating a campaign: ${JSON.stringify(created.json)}`);
    return {
      kind: "up",
      dashboardUrl,
      tokens,
      meterId,
      campaign: { name: campaign, state: "pending_approval" },
      // The virtual meters run src/meter's tamper rules: a magnet is claimed once held past the gate.
      tamperSealedWithinMs: DEFAULT_TAMPER_CONFIG.magTimeGateMs + METER_SAMPLING_ALLOWANCE_MS,
      api: call,
      async injectMagnet(id) {
        const result = await call("POST", `/api/lab/meters/${encodeURIComponent(id)}/tamper`, "admin", {
          kind: "magnet",
        });
        if (result.status >= 300)
          throw new Error(
            `POST /api/lab/meters/${id}/tamper: ${result.status} ${JSON.stringify(result.json)}`,
          );
      },
      close: stop,
    };
  } catch (error) {
    await stop();
    throw error;
  }
}
