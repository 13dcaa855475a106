// shell: the MQTT uplink (MQTT.js) — sockets and timers live here, decisions in the core.
import { connect, type MqttClient } from "mqtt";
import type { PublishOptions, UplinkTransport } from "../core/ports.ts";
import { ConcentratorError } from "../errors.ts";

/** MQTT keep-alive: a dead link is noticed within ~1.5× this. */
export const MQTT_KEEPALIVE_S = 30;
/** A CONNECT that gets no CONNACK within this counts as a failed attempt. */
export const MQTT_CONNECT_TIMEOUT_MS = 10_000;

export interface MqttLinkHandlers {
  onUp(): void;
  /** Returns the delay before the next connect attempt (the core's back-off with jitter). */
  onDown(reason: string): number;
  onMessage(topic: string, payload: Uint8Array): void;
}

/**
 * One MQTT.js client per connection attempt, never MQTT.js's own reconnect or offline queue: when a
 * connection dies its in-flight publishes fail at once, and the core decides what to resend and when.
 * The session is persistent (clean: false) so acks the head-end sends while we are away are kept by
 * the broker and delivered on reconnect.
 */
export class MqttLink implements UplinkTransport {
  private client: MqttClient | null = null;
  private connected = false;
  private closed = false;
  private retryTimer: NodeJS.Timeout | null = null;

  constructor(
    private readonly url: string,
    private readonly clientId: string,
    private readonly subscriptions: readonly string[],
    private readonly handlers: MqttLinkHandlers,
  ) {}

  get isConnected(): boolean {
    return this.connected;
  }

  start(): void {
    this.attempt();
  }

  private attempt(): void {
    if (this.closed) return;
    this.retryTimer = null;
    const client = connect(this.url, {
      clientId: this.clientId,
      clean: false,
      reconnectPeriod: 0,
      connectTimeout: MQTT_CONNECT_TIMEOUT_MS,
      keepalive: MQTT_KEEPALIVE_S,
      queueQoSZero: false,
    });
    this.client = client;
    let settled = false;
    const down = (reason: string) => {
      if (settled || this.client !== client) return;
      settled = true;
      const wasConnected = this.connected;
      this.connected = false;
      this.client = null;
      client.removeAllListeners();
      client.on("error", () => {});
      client.end(true);
      if (this.closed) return;
      const delay = this.handlers.onDown(wasConnected ? reason : `connect failed: ${reason}`);
      this.retryTimer = setTimeout(() => this.attempt(), delay);
    };
    client.on("connect", () => {
      client.subscribe([...this.subscriptions], { qos: 1 }, (error) => {
        if (error) {
          down(`subscribe failed: ${error.message}`);
          return;
        }
        if (this.client !== client) return;
        this.connected = true;
        this.handlers.onUp();
      });
    });
    client.on("message", (topic, payload) => {
      this.handlers.onMessage(topic, new Uint8Array(payload.buffer, payload.byteOffset, payload.byteLength));
    });
    client.on("close", () => down("connection closed"));
    client.on("offline", () => down("offline"));
    client.on("error", (error) => down(error.message));
  }

  publish(topic: string, payload: Uint8Array, options: PublishOptions): Promise<void> {
    const client = this.client;
    if (client === null || !this.connected) {
      return Promise.reject(new ConcentratorError("UPLINK_DOWN", "not connected", topic));
    }
    return new Promise((resolve, reject) => {
      client.publish(topic, Buffer.from(payload), { qos: options.qos, retain: options.retain }, (error) => {
        if (error) reject(error);
        else resolve();
      });
    });
  }

  /** Stops for good: no reconnect; in-flight publishes fail (they stay in the outbox for next start). */
  async close(): Promise<void> {
    this.closed = true;
    if (this.retryTimer !== null) clearTimeout(this.retryTimer);
    const client = this.client;
    this.client = null;
    this.connected = false;
    if (client !== null) await new Promise<void>((resolve) => client.end(false, {}, () => resolve()));
  }
}
