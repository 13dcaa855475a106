// shell: the head-end's MQTT connections (MQTT.js). Two of them: the batch lane and the alert lane, so a
// socket full of batches never sits in front of a tamper alert (MQTT delivers one connection's messages in
// order). Persistent sessions (clean: false): QoS 1 messages published while the head-end is down are
// kept by the broker and delivered when it comes back.
import { connect, type MqttClient } from "mqtt";

export const MQTT_KEEPALIVE_S = 30;
export const MQTT_RECONNECT_MS = 1_000;
export const MQTT_CONNECT_TIMEOUT_MS = 10_000;

export class HeadendMqtt {
  private connectedFlag = false;

  private constructor(
    private readonly client: MqttClient,
    readonly clientId: string,
  ) {
    client.on("connect", () => {
      this.connectedFlag = true;
    });
    client.on("close", () => {
      this.connectedFlag = false;
    });
  }

  get connected(): boolean {
    return this.connectedFlag;
  }

  /** Connects, subscribes (QoS 1) and hands every message to `onMessage`; resolves once subscribed. */
  static async connect(
    url: string,
    clientId: string,
    subscriptions: readonly string[],
    onMessage: (topic: string, payload: Uint8Array) => void,
    onError: (error: Error) => void,
  ): Promise<HeadendMqtt> {
    const client = connect(url, {
      clientId,
      clean: false,
      reconnectPeriod: MQTT_RECONNECT_MS,
      connectTimeout: MQTT_CONNECT_TIMEOUT_MS,
      keepalive: MQTT_KEEPALIVE_S,
    });
    const link = new HeadendMqtt(client, clientId);
    client.on("message", (topic, payload) => {
      onMessage(topic, new Uint8Array(payload.buffer, payload.byteOffset, payload.byteLength));
    });
    client.on("error", onError);
    await new Promise<void>((resolve, reject) => {
      const fail = (error: Error) => {
        clearTimeout(timer);
        client.off("connect", onConnect);
        client.off("error", fail);
        client.end(true);
        reject(new Error(`MQTT broker ${url} unreachable: ${error.message}`));
      };
      const onConnect = () => {
        clearTimeout(timer);
        client.off("error", fail);
        resolve();
      };
      const timer = setTimeout(
        () => fail(new Error(`no CONNACK within ${MQTT_CONNECT_TIMEOUT_MS} ms`)),
        MQTT_CONNECT_TIMEOUT_MS,
      );
      client.once("connect", onConnect);
      client.once("error", fail);
    });
    await client.subscribeAsync([...subscriptions], { qos: 1 });
    return link;
  }

  async publish(topic: string, payload: Uint8Array, retain = false): Promise<void> {
    await this.client.publishAsync(
      topic,
      Buffer.from(payload.buffer, payload.byteOffset, payload.byteLength),
      {
        qos: 1,
        retain,
      },
    );
  }

  async close(): Promise<void> {
    await this.client.endAsync();
  }
}
