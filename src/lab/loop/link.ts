import type { PublishOptions, UplinkTransport } from "../../concentrator/index.ts";
import type { Rng } from "../../evidence/index.ts";

// The backhaul between a concentrator and the head-end's broker, in virtual time (seed 003 H2-7 and
// H2-11 "Backhaul — retry storms"): latency with jitter, loss, a bandwidth that can drop to 2.4 kbps,
// partitions and broker restarts. A QoS 1 publish resolves at PUBACK — when the message has crossed the
// link — and rejects when it is lost or the link drops first, exactly what the concentrator's uplink
// state machine expects from MQTT.js.

/** Bound on messages queued on the simulated link (a radio modem's buffer); beyond it publish rejects. */
export const LINK_QUEUE_MESSAGES_MAX = 4096;
/** MQTT fixed header + topic overhead charged per message on a bandwidth-limited link. */
const MESSAGE_OVERHEAD_BYTES = 20;

export interface LinkModel {
  /** One-way latency, ms. */
  latencyMs: number;
  /** Extra latency drawn uniformly in [0, jitterMs]. */
  jitterMs: number;
  /** Probability that one message (either way) is lost. */
  lossRate: number;
  /** Uplink bandwidth; null = unlimited. */
  bitsPerSecond: number | null;
}

export const GOOD_LINK: LinkModel = { latencyMs: 80, jitterMs: 40, lossRate: 0, bitsPerSecond: null };

interface InFlight {
  readonly atMs: number;
  readonly order: number;
  readonly deliver: () => void;
  readonly drop: () => void;
}

export interface LinkCounters {
  uplinkMessages: number;
  uplinkBytes: number;
  uplinkLost: number;
  downlinkMessages: number;
  downlinkLost: number;
  /** Messages that died with the link (partition, broker restart). */
  droppedByOutage: number;
  partitions: number;
  brokerRestarts: number;
  queueRefused: number;
  queueDepthMax: number;
}

export class SimLink implements UplinkTransport {
  up = true;
  readonly model: LinkModel;
  readonly counters: LinkCounters = {
    uplinkMessages: 0,
    uplinkBytes: 0,
    uplinkLost: 0,
    downlinkMessages: 0,
    downlinkLost: 0,
    droppedByOutage: 0,
    partitions: 0,
    brokerRestarts: 0,
    queueRefused: 0,
    queueDepthMax: 0,
  };
  private queue: InFlight[] = [];
  private order = 0;
  private uplinkFreeAtMs = 0;

  constructor(
    private readonly rng: Rng,
    private readonly nowMs: () => number,
    /** Where an uplink message lands (the head-end's broker subscriptions). */
    private readonly toHeadend: (topic: string, payload: Uint8Array) => void,
    /** Where a downlink message lands (the concentrator's subscriptions). */
    private readonly toConcentrator: (topic: string, payload: Uint8Array) => void,
    model: Partial<LinkModel> = {},
  ) {
    this.model = { ...GOOD_LINK, ...model };
  }

  get queued(): number {
    return this.queue.length;
  }

  /** Virtual time of the next delivery, or null when nothing is on the link. */
  nextAtMs(): number | null {
    let next: number | null = null;
    for (const m of this.queue) if (next === null || m.atMs < next) next = m.atMs;
    return next;
  }

  /** UplinkTransport: the concentrator's QoS 1 publish. */
  publish(topic: string, payload: Uint8Array, _options: PublishOptions): Promise<void> {
    if (!this.up) return Promise.reject(new Error("link down"));
    if (this.queue.length >= LINK_QUEUE_MESSAGES_MAX) {
      this.counters.queueRefused++;
      return Promise.reject(new Error("link queue full"));
    }
    const now = this.nowMs();
    let start = now;
    if (this.model.bitsPerSecond !== null) {
      start = Math.max(this.uplinkFreeAtMs, now);
      const bits = (payload.length + MESSAGE_OVERHEAD_BYTES) * 8;
      this.uplinkFreeAtMs = start + Math.ceil((bits * 1000) / this.model.bitsPerSecond);
      start = this.uplinkFreeAtMs;
    }
    const atMs = start + this.latency();
    const lost = this.rng.chance(this.model.lossRate);
    const copy = payload.slice();
    return new Promise<void>((resolve, reject) => {
      this.enqueue({
        atMs,
        order: this.order++,
        deliver: () => {
          if (lost) {
            this.counters.uplinkLost++;
            reject(new Error("message lost on the link"));
            return;
          }
          this.counters.uplinkMessages++;
          this.counters.uplinkBytes += copy.length;
          this.toHeadend(topic, copy);
          resolve();
        },
        drop: () => {
          this.counters.droppedByOutage++;
          reject(new Error("link dropped"));
        },
      });
    });
  }

  /** The head-end publishes toward the concentrator (acks, time). */
  downlink(topic: string, payload: Uint8Array): void {
    if (!this.up) {
      this.counters.droppedByOutage++;
      return;
    }
    const lost = this.rng.chance(this.model.lossRate);
    const copy = payload.slice();
    this.enqueue({
      atMs: this.nowMs() + this.latency(),
      order: this.order++,
      deliver: () => {
        if (lost) {
          this.counters.downlinkLost++;
          return;
        }
        this.counters.downlinkMessages++;
        this.toConcentrator(topic, copy);
      },
      drop: () => {
        this.counters.droppedByOutage++;
      },
    });
  }

  /** Delivers every message whose time has come, in time order. */
  pump(nowMs: number): void {
    if (this.queue.length === 0) return;
    const due = this.queue.filter((m) => m.atMs <= nowMs);
    if (due.length === 0) return;
    this.queue = this.queue.filter((m) => m.atMs > nowMs);
    due.sort((a, b) => a.atMs - b.atMs || a.order - b.order);
    for (const message of due) message.deliver();
  }

  /** The link goes down: everything in flight dies with it. */
  partition(): void {
    if (!this.up) return;
    this.up = false;
    this.counters.partitions++;
    this.dropAll();
  }

  heal(): void {
    this.up = true;
  }

  /** The broker restarts: in-flight messages are lost and the link is down until `heal()`. */
  brokerRestart(): void {
    this.counters.brokerRestarts++;
    this.up = false;
    this.dropAll();
  }

  private dropAll(): void {
    const dying = this.queue;
    this.queue = [];
    this.uplinkFreeAtMs = 0;
    for (const message of dying) message.drop();
  }

  private enqueue(message: InFlight): void {
    this.queue.push(message);
    this.counters.queueDepthMax = Math.max(this.counters.queueDepthMax, this.queue.length);
  }

  private latency(): number {
    return this.model.latencyMs + (this.model.jitterMs > 0 ? this.rng.nextInt(this.model.jitterMs + 1) : 0);
  }
}
