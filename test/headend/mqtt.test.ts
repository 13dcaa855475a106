import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, test } from "node:test";
import { connect, type MqttClient } from "mqtt";
import { type AckMessage, decodeAck, encodeAlert, toHex } from "../../src/evidence/index.ts";
import { type HeadendHandle, startHeadend } from "../../src/headend/index.ts";
import { type Backend, backends, PG_URL, T0, TestDcu, TestMeter } from "./helpers.ts";

// The head-end end to end over a real broker: the embedded aedes one and Mosquitto at 127.0.0.1:1883,
// each on SQLite and PostgreSQL. A concentrator-side MQTT client publishes sealed batches and alerts the
// way src/concentrator does and reads the acks.

function mosquittoReachable(): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = new Socket();
    const done = (ok: boolean) => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(1_000, () => done(false));
    socket.once("error", () => done(false));
    socket.connect(1883, "127.0.0.1", () => done(true));
  });
}

async function until(predicate: () => boolean, what: string, timeoutMs = 15_000): Promise<void> {
  const started = Date.now();
  while (!predicate()) {
    if (Date.now() - started > timeoutMs) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

interface Brokers {
  readonly name: string;
  /** undefined: the head-end's embedded aedes. */
  readonly url: string | undefined;
}

const brokers: Brokers[] = [{ name: "embedded aedes", url: undefined }];
if (process.env.AMIPROOF_NO_MOSQUITTO === "1") {
  console.log("mqtt.test: AMIPROOF_NO_MOSQUITTO=1 — the Mosquitto half was NOT run");
} else {
  brokers.push({ name: "mosquitto", url: "mqtt://127.0.0.1:1883" });
}

async function startOn(backend: Backend, broker: Brokers, dir: string): Promise<HeadendHandle> {
  if (broker.url !== undefined && !(await mosquittoReachable())) {
    throw new Error(
      "Mosquitto at 127.0.0.1:1883 is unreachable; start it, or set AMIPROOF_NO_MOSQUITTO=1 to leave the Mosquitto half out",
    );
  }
  const schema = `amiproof_mqtt_${process.pid}_${randomBytes(4).toString("hex")}`;
  return startHeadend({
    dbUrl: backend.name === "sqlite" ? `sqlite:${join(dir, "headend.db")}` : PG_URL,
    ...(backend.name === "postgres" ? { dbSchema: schema } : {}),
    ...(broker.url === undefined ? { brokerPort: 0 } : { mqttUrl: broker.url }),
    httpPort: 0,
    dataDir: dir,
    clientIdPrefix: `test-headend-${process.pid}-${randomBytes(3).toString("hex")}`,
    logLevel: "silent",
  });
}

async function api(
  h: HeadendHandle,
  method: string,
  path: string,
  body?: unknown,
  role: "admin" | "operator" | "viewer" = "admin",
) {
  const response = await fetch(`${h.apiUrl}${path}`, {
    method,
    headers: {
      authorization: `Bearer ${h.tokens[role]}`,
      ...(body === undefined ? {} : { "content-type": "application/json" }),
    },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  const text = await response.text();
  return { status: response.status, json: text.startsWith("{") ? JSON.parse(text) : text };
}

for (const backend of backends("mqtt.test")) {
  for (const broker of brokers) {
    describe(`head-end over ${broker.name} on ${backend.name}`, () => {
      const dir = mkdtempSync(join(tmpdir(), "amiproof-headend-mqtt-"));
      let h: HeadendHandle | null = null;
      let dcuClient: MqttClient | null = null;
      after(async () => {
        await dcuClient?.endAsync();
        if (h !== null) {
          if (backend.name === "postgres") {
            const { PostgresStore } = await import("../../src/headend/index.ts");
            if (h.store instanceof PostgresStore) await h.store.dropSchema();
          }
          await h.close();
        }
        rmSync(dir, { recursive: true, force: true });
      });

      test("batches are acked after commit, a resend is acked again, a forgery refused; alerts are stored and streamed", async () => {
        h = await startOn(backend, broker, dir);
        const handle = h;
        const dcuId = `DCU-${process.pid}-${randomBytes(3).toString("hex")}`;
        const dcu = new TestDcu(dcuId);
        const meter = new TestMeter(`MTR-${randomBytes(3).toString("hex")}`);
        assert.equal(
          (
            await api(handle, "POST", "/api/concentrators", {
              dcu_id: dcuId,
              batch_sign_public_key: toHex(dcu.publicKey),
            })
          ).status,
          201,
        );
        assert.equal(
          (
            await api(handle, "POST", "/api/meters", {
              meter_id: meter.meterId,
              event_seal_public_key: toHex(meter.publicKey),
              dcu_id: dcuId,
            })
          ).status,
          201,
        );

        // The concentrator's side of the wire.
        const acks: AckMessage[] = [];
        const client = connect(handle.mqttUrl, { clientId: `test-dcu-${dcuId}`, clean: true });
        dcuClient = client;
        client.on("message", (_topic, payload) => acks.push(decodeAck(new Uint8Array(payload))));
        await new Promise<void>((resolve, reject) => {
          client.once("connect", () => resolve());
          client.once("error", reject);
        });
        await client.subscribeAsync(`ami/${dcuId}/acks`, { qos: 1 });

        // A live subscriber on the alert stream.
        const controller = new AbortController();
        const stream = await fetch(`${handle.apiUrl}/api/alerts/stream?token=${handle.tokens.viewer}`, {
          signal: controller.signal,
        });
        assert.equal(stream.status, 200);
        let streamed = "";
        const reader = stream.body?.getReader();
        const pump = (async () => {
          const decoder = new TextDecoder();
          try {
            for (;;) {
              const chunk = await reader?.read();
              if (chunk === undefined || chunk.done) return;
              streamed += decoder.decode(chunk.value, { stream: true });
            }
          } catch {
            // aborted
          }
        })();
        await until(() => streamed.includes("event: ready"), "the stream to open");

        const one = dcu.next([meter.meterId, "MTR-B"], 3);
        await client.publishAsync(`ami/${dcuId}/batches`, Buffer.from(one), { qos: 1 });
        await until(() => acks.length === 1, "the first ack");
        assert.deepEqual(acks[0]?.accepted, [{ batchId: 1, commitIdFirst: 1, commitIdLast: 6 }]);
        // The ack came after the commit: the readings are there when it arrives.
        assert.equal((await handle.store.counts()).readingsStoredTotal, 6);

        await client.publishAsync(`ami/${dcuId}/batches`, Buffer.from(one), { qos: 1 });
        await until(() => acks.length === 2, "the resend's ack");
        assert.deepEqual(acks[1]?.accepted, acks[0]?.accepted);
        assert.equal((await handle.store.counts()).readingsStoredTotal, 6, "stored once");

        const forger = new TestDcu(dcuId, 42);
        forger.nextBatchId = 2;
        await client.publishAsync(`ami/${dcuId}/batches`, Buffer.from(forger.next(["MTR-B"], 1)), { qos: 1 });
        await until(() => acks.length === 3, "the rejection");
        assert.equal(acks[2]?.accepted.length, 0);
        assert.match(acks[2]?.rejected[0]?.reason ?? "", /^BAD_SIGNATURE/);

        const tamper = meter.event("MAG_TAMPER", "MAJOR", Date.now(), { field_mt: 75 });
        const alert = encodeAlert({
          dcuId,
          meterId: meter.meterId,
          record: tamper.bytes,
          forwardedMs: T0,
          timeQuality: "SYNCED",
        });
        await client.publishAsync(`ami/${dcuId}/alerts`, Buffer.from(alert), { qos: 1 });
        await client.publishAsync(`ami/${dcuId}/alerts`, Buffer.from(alert), { qos: 1 }); // replayed
        await until(() => streamed.includes("MAG_TAMPER"), "the alert on the stream");
        await until(() => (handle.metrics.alertsRejected.get("REPLAY") ?? 0) === 1, "the replay refused");
        const alerts = await api(handle, "GET", `/api/alerts?meter_id=${meter.meterId}`, undefined, "viewer");
        assert.equal(alerts.json.items.length, 1);
        assert.equal(alerts.json.items[0].type, "MAG_TAMPER");
        assert.equal((streamed.match(/event: alert\n/g) ?? []).length >= 1, true);

        const metrics = await fetch(`${handle.apiUrl}/metrics`).then((r) => r.text());
        assert.match(metrics, /^amiproof_readings_stored_total 6$/m);
        assert.match(metrics, /^amiproof_batches_rejected_total\{reason="BAD_SIGNATURE"\} 1$/m);
        assert.match(metrics, /^amiproof_alerts_total\{type="MAG_TAMPER"\} 1$/m);
        assert.match(metrics, /^amiproof_meters_online 2$/m);
        assert.match(metrics, /^amiproof_gaps_total\{class="SEQ_GAP"\} 0$/m);
        controller.abort();
        await pump;
      });
    });
  }
}
