// Real-broker helpers for the concentrator integration and crash tests: an in-process aedes broker on
// 127.0.0.1 (random port), a Mosquitto probe, and a head-end consumer over a real MQTT connection.
import { createServer, type Server, Socket } from "node:net";
import { Aedes } from "aedes";
import { connect, type MqttClient } from "mqtt";
import { alertsTopic, batchesTopic } from "../../src/concentrator/index.ts";
import { TestHeadEnd } from "./harness.ts";

export interface Broker {
  readonly url: string;
  close(): Promise<void>;
}

export async function startAedes(port = 0): Promise<Broker> {
  const broker = await Aedes.createBroker();
  const server: Server = createServer(broker.handle);
  await new Promise<void>((resolve) => server.listen(port, "127.0.0.1", resolve));
  const address = server.address();
  if (address === null || typeof address === "string") throw new Error("aedes: no TCP address");
  return {
    url: `mqtt://127.0.0.1:${address.port}`,
    close: async () => {
      // Drop every client connection first (a broker crash), then stop listening.
      await new Promise<void>((resolve) => broker.close(() => resolve()));
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/** True when something accepts TCP on 127.0.0.1:1883 within a second. */
export function mosquittoReachable(): Promise<boolean> {
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

/** A head-end over MQTT: verifies every batch with the concentrator's key and acks on ami/<dcu>/acks. */
export class MqttHeadEnd {
  readonly headEnd: TestHeadEnd;
  private constructor(
    private readonly client: MqttClient,
    headEnd: TestHeadEnd,
  ) {
    this.headEnd = headEnd;
  }

  static async connect(url: string, dcuId: string, publicKey: Uint8Array): Promise<MqttHeadEnd> {
    const client = connect(url, {
      clientId: `test-headend-${dcuId}-${process.pid}`,
      clean: true,
      reconnectPeriod: 200,
    });
    const headEnd = new TestHeadEnd(dcuId, publicKey, (topic, payload) => {
      client.publish(topic, Buffer.from(payload), { qos: 1 });
    });
    client.on("message", (topic, payload) => {
      headEnd.onMessage(topic, new Uint8Array(payload.buffer, payload.byteOffset, payload.byteLength));
    });
    await new Promise<void>((resolve, reject) => {
      client.once("connect", () => resolve());
      client.once("error", reject);
    });
    await client.subscribeAsync([batchesTopic(dcuId), alertsTopic(dcuId)], { qos: 1 });
    return new MqttHeadEnd(client, headEnd);
  }

  /** Clears a retained message (a shared broker keeps retained status forever otherwise). */
  async clearRetained(topic: string): Promise<void> {
    await this.client.publishAsync(topic, Buffer.alloc(0), { qos: 1, retain: true });
  }

  async close(): Promise<void> {
    await this.client.endAsync();
  }
}

export async function until(predicate: () => boolean, what: string, timeoutMs = 60_000): Promise<void> {
  const started = Date.now();
  while (!predicate()) {
    if (Date.now() - started > timeoutMs) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}
