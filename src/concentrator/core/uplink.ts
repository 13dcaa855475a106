import assert from "node:assert/strict";
import { type BackoffPolicy, backoffDelayMs, type RandomSource } from "./backoff.ts";
import type { AckMessage } from "./wire.ts";

// The uplink state machine (seed 003 H2-5/H2-7): sealed batches wait in the outbox, go out inside an
// in-flight window, and leave only when the head-end's ack names them with their exact commit_id range.
// A failed publish, a missing ack or a dropped link puts a batch back in line with capped exponential
// back-off and jitter; every retry lands in the retry histogram by time window. Pure: callers pass `nowMs`.

/** Batches published and not yet acknowledged at once (the in-flight window). */
export const UPLINK_INFLIGHT_BATCHES_MAX = 4;
/** A published batch without an ack after this long is resent. */
export const UPLINK_ACK_TIMEOUT_MS = 30_000;
/** Width of one retry_histogram window (seed 003 H2-7: "retry histogram by hour"). */
export const UPLINK_RETRY_WINDOW_MS = 3_600_000;
/** retry_histogram windows kept (a day of hours). */
export const UPLINK_RETRY_WINDOWS_MAX = 24;
/** Sealed batches held unacknowledged at once; sealing stops at the bound (the journal keeps the rest). */
export const OUTBOX_BATCHES_MAX = 64;
/** Tamper/event alerts queued for the alert lane; reading more events waits at the bound. */
export const ALERT_QUEUE_MAX = 256;
/** Alerts published and not yet PUBACKed at once. */
export const ALERT_INFLIGHT_MAX = 8;
/** Latency samples kept for alert_latency_p99 (read from meter → PUBACK). */
export const ALERT_LATENCY_SAMPLES_MAX = 1024;

export type RetryCause = "publish_fail" | "ack_timeout" | "link_down" | "rejected";
const RETRY_CAUSES: readonly RetryCause[] = ["publish_fail", "ack_timeout", "link_down", "rejected"];

export type OutboxState = "SEALED" | "PUBLISHING" | "PUBLISHED" | "ACKED";

export interface OutboxBatch {
  readonly batchId: number;
  readonly commitIdFirst: number;
  readonly commitIdLast: number;
  readonly count: number;
  readonly bytes: Uint8Array;
  readonly batchHash: Uint8Array;
  state: OutboxState;
  /** Publishes so far (the first one included). */
  sends: number;
  /** Consecutive failures since the last success: drives the back-off. */
  failures: number;
  notBeforeMs: number;
  ackDeadlineMs: number;
}

export interface PendingAlert {
  readonly meterId: string;
  readonly eventSeq: number;
  readonly payload: Uint8Array;
  readonly enqueuedMs: number;
  state: "QUEUED" | "PUBLISHING";
  failures: number;
  notBeforeMs: number;
}

export interface RetryWindow {
  readonly windowStartMs: number;
  readonly byCause: Record<RetryCause, number>;
}

export interface AckOutcome {
  /** Batches newly acknowledged by this message. */
  readonly acked: number[];
  /** Accepted entries for batches already gone (a repeated ack): harmless, counted. */
  readonly stale: number;
  /** Accepted entries that contradict what was sent (unknown id ahead, wrong range): ignored, counted. */
  readonly mismatched: string[];
  readonly rejected: { batchId: number; reason: string }[];
}

export interface UplinkCounters {
  batchesSealed: number;
  batchesPublished: number;
  batchesAcked: number;
  recordsAcked: number;
  batchRetries: number;
  ackStale: number;
  ackMismatch: number;
  ackBad: number;
  rejectedByReason: Record<string, number>;
  linkUp: number;
  linkFlaps: number;
  reconnectAttempts: number;
  alertsForwarded: number;
  alertRetries: number;
  alertDeferred: number;
}

export class UplinkMachine {
  private readonly outbox: OutboxBatch[] = [];
  private readonly alerts: PendingAlert[] = [];
  private readonly retryWindows: RetryWindow[] = [];
  private readonly alertLatencyMs: number[] = [];
  /** Per meter: highest event seq ever queued, to advance the cursor when the queue drains. */
  private readonly alertHighestQueued = new Map<string, number>();
  private linkConnected = false;
  private connectFailures = 0;
  readonly counters: UplinkCounters = {
    batchesSealed: 0,
    batchesPublished: 0,
    batchesAcked: 0,
    recordsAcked: 0,
    batchRetries: 0,
    ackStale: 0,
    ackMismatch: 0,
    ackBad: 0,
    rejectedByReason: {},
    linkUp: 0,
    linkFlaps: 0,
    reconnectAttempts: 0,
    alertsForwarded: 0,
    alertRetries: 0,
    alertDeferred: 0,
  };

  constructor(
    private readonly random: RandomSource,
    private readonly policy: BackoffPolicy,
    private readonly inflightMax = UPLINK_INFLIGHT_BATCHES_MAX,
    private readonly ackTimeoutMs = UPLINK_ACK_TIMEOUT_MS,
  ) {}

  get connected(): boolean {
    return this.linkConnected;
  }

  get outboxSize(): number {
    return this.outbox.length;
  }

  get outboxFull(): boolean {
    return this.outbox.length >= OUTBOX_BATCHES_MAX;
  }

  /** Highest commit_id held by a sealed batch, or null when the outbox is empty. */
  get sealedThrough(): number | null {
    const last = this.outbox[this.outbox.length - 1];
    return last === undefined ? null : last.commitIdLast;
  }

  get lastBatch(): OutboxBatch | undefined {
    return this.outbox[this.outbox.length - 1];
  }

  batches(): readonly OutboxBatch[] {
    return this.outbox;
  }

  inflight(): number {
    return this.outbox.filter((b) => b.state === "PUBLISHING" || b.state === "PUBLISHED").length;
  }

  /** A batch is durable in the outbox: it may go out. Batches arrive in batch_id order. */
  add(
    batch: Omit<OutboxBatch, "state" | "sends" | "failures" | "notBeforeMs" | "ackDeadlineMs">,
    fromRecovery = false,
  ): void {
    const last = this.lastBatch;
    assert.ok(
      last === undefined || batch.batchId === last.batchId + 1,
      `batch_id ${batch.batchId} after ${last?.batchId}`,
    );
    assert.ok(
      last === undefined || batch.commitIdFirst > last.commitIdLast,
      `commit_id ${batch.commitIdFirst} not after ${last?.commitIdLast}`,
    );
    assert.ok(this.outbox.length < OUTBOX_BATCHES_MAX, "outbox over its bound");
    this.outbox.push({ ...batch, state: "SEALED", sends: 0, failures: 0, notBeforeMs: 0, ackDeadlineMs: 0 });
    if (!fromRecovery) this.counters.batchesSealed++;
  }

  // ───────────── link ─────────────

  onLinkUp(): void {
    this.linkConnected = true;
    this.connectFailures = 0;
    this.counters.linkUp++;
  }

  /** The link dropped (or a connect attempt failed): everything in flight goes back in line. */
  onLinkDown(nowMs: number): void {
    if (this.linkConnected) this.counters.linkFlaps++;
    this.linkConnected = false;
    for (const batch of this.outbox) {
      if (batch.state === "PUBLISHING" || batch.state === "PUBLISHED") {
        batch.state = "SEALED";
        batch.notBeforeMs = 0; // resent as soon as the link is back
        this.recordRetry(nowMs, "link_down");
      }
    }
    for (const alert of this.alerts) {
      if (alert.state === "PUBLISHING") {
        alert.state = "QUEUED";
        alert.notBeforeMs = 0;
        this.counters.alertRetries++;
      }
    }
  }

  /** Delay before the next connect attempt; each call counts one more consecutive failure. */
  reconnectDelayMs(): number {
    this.connectFailures++;
    this.counters.reconnectAttempts++;
    return backoffDelayMs(this.connectFailures, this.policy, this.random);
  }

  // ───────────── batches ─────────────

  /** The next batch to publish, marked PUBLISHING; null when the window, the link or back-off say wait. */
  nextBatch(nowMs: number): OutboxBatch | null {
    if (!this.linkConnected) return null;
    // seed 004: tamper alerts go ahead of billing data, so a waiting alert holds new batch publishes.
    if (this.alerts.some((a) => a.state === "QUEUED" && a.notBeforeMs <= nowMs)) return null;
    if (this.inflight() >= this.inflightMax) return null;
    const batch = this.outbox.find((b) => b.state === "SEALED" && b.notBeforeMs <= nowMs);
    if (batch === undefined) return null;
    batch.state = "PUBLISHING";
    batch.sends++;
    if (batch.sends > 1) this.counters.batchRetries++;
    return batch;
  }

  onBatchPublished(batchId: number, nowMs: number): void {
    const batch = this.find(batchId);
    if (batch === undefined || batch.state !== "PUBLISHING") return; // acked meanwhile, or link dropped
    batch.state = "PUBLISHED";
    batch.ackDeadlineMs = nowMs + this.ackTimeoutMs;
    this.counters.batchesPublished++;
  }

  onBatchPublishFailed(batchId: number, nowMs: number): void {
    const batch = this.find(batchId);
    if (batch === undefined || batch.state !== "PUBLISHING") return;
    this.backOff(batch, nowMs, "publish_fail");
  }

  /** Published batches whose ack did not come in time go back in line. */
  checkAckTimeouts(nowMs: number): void {
    for (const batch of this.outbox) {
      if (batch.state === "PUBLISHED" && nowMs >= batch.ackDeadlineMs)
        this.backOff(batch, nowMs, "ack_timeout");
    }
  }

  onAck(ack: AckMessage, nowMs: number): AckOutcome {
    const acked: number[] = [];
    const mismatched: string[] = [];
    let stale = 0;
    const first = this.outbox[0];
    for (const entry of ack.accepted) {
      const batch = this.find(entry.batchId);
      if (batch === undefined) {
        if (first === undefined || entry.batchId < first.batchId) stale++;
        else mismatched.push(`batch_id ${entry.batchId} was never sealed`);
        continue;
      }
      if (batch.commitIdFirst !== entry.commitIdFirst || batch.commitIdLast !== entry.commitIdLast) {
        mismatched.push(
          `batch_id ${entry.batchId} holds commit_id ${batch.commitIdFirst}..${batch.commitIdLast}, ack says ${entry.commitIdFirst}..${entry.commitIdLast}`,
        );
        continue;
      }
      if (batch.state === "ACKED") {
        stale++;
        continue;
      }
      batch.state = "ACKED";
      batch.failures = 0;
      acked.push(batch.batchId);
      this.counters.batchesAcked++;
      this.counters.recordsAcked += batch.count;
    }
    const rejected: { batchId: number; reason: string }[] = [];
    for (const entry of ack.rejected) {
      const batch = this.find(entry.batchId);
      if (batch === undefined || batch.state === "ACKED") {
        stale++;
        continue;
      }
      // Nothing is dropped on a rejection: the batch is retried with back-off and the reason counted,
      // so a persistent refusal shows as a growing backlog and rejected counter, never as silent loss.
      this.counters.rejectedByReason[entry.reason] = (this.counters.rejectedByReason[entry.reason] ?? 0) + 1;
      rejected.push({ batchId: entry.batchId, reason: entry.reason });
      this.backOff(batch, nowMs, "rejected");
    }
    this.counters.ackStale += stale;
    this.counters.ackMismatch += mismatched.length;
    return { acked, stale, mismatched, rejected };
  }

  /** The oldest run of acknowledged batches: what may be released from the journal, in order. */
  releasablePrefix(): OutboxBatch[] {
    const prefix: OutboxBatch[] = [];
    for (const batch of this.outbox) {
      if (batch.state !== "ACKED") break;
      prefix.push(batch);
    }
    return prefix;
  }

  /** The batches through `batchId` were released from the journal and dropped from the outbox. */
  dropThrough(batchId: number): void {
    while (this.outbox.length > 0 && (this.outbox[0] as OutboxBatch).batchId <= batchId) this.outbox.shift();
  }

  // ───────────── alert lane ─────────────

  get alertQueueFull(): boolean {
    return this.alerts.length >= ALERT_QUEUE_MAX;
  }

  alertsPending(): number {
    return this.alerts.length;
  }

  /** Queues one alert; false (and counted) when the lane is at its bound: the caller re-reads later. */
  enqueueAlert(meterId: string, eventSeq: number, payload: Uint8Array, nowMs: number): boolean {
    if (this.alertQueueFull) {
      this.counters.alertDeferred++;
      return false;
    }
    const highest = this.alertHighestQueued.get(meterId) ?? 0;
    if (eventSeq <= highest) return true; // already queued (a re-read while the first is in flight)
    this.alertHighestQueued.set(meterId, eventSeq);
    this.alerts.push({
      meterId,
      eventSeq,
      payload,
      enqueuedMs: nowMs,
      state: "QUEUED",
      failures: 0,
      notBeforeMs: 0,
    });
    return true;
  }

  /** Highest event seq queued so far for a meter (the next read starts after it). */
  alertQueuedThrough(meterId: string): number | undefined {
    return this.alertHighestQueued.get(meterId);
  }

  nextAlert(nowMs: number): PendingAlert | null {
    if (!this.linkConnected) return null;
    if (this.alerts.filter((a) => a.state === "PUBLISHING").length >= ALERT_INFLIGHT_MAX) return null;
    const alert = this.alerts.find((a) => a.state === "QUEUED" && a.notBeforeMs <= nowMs);
    if (alert === undefined) return null;
    alert.state = "PUBLISHING";
    return alert;
  }

  /**
   * PUBACK for an alert. Returns the meter's new event cursor when it can advance: the highest seq
   * below which every queued alert of that meter has been delivered.
   */
  onAlertPublished(alert: PendingAlert, nowMs: number): number | null {
    const index = this.alerts.indexOf(alert);
    if (index < 0 || alert.state !== "PUBLISHING") return null;
    this.alerts.splice(index, 1);
    this.counters.alertsForwarded++;
    this.alertLatencyMs.push(Math.max(0, nowMs - alert.enqueuedMs));
    if (this.alertLatencyMs.length > ALERT_LATENCY_SAMPLES_MAX) this.alertLatencyMs.shift();
    let lowestWaiting: number | null = null;
    for (const other of this.alerts) {
      if (other.meterId === alert.meterId && (lowestWaiting === null || other.eventSeq < lowestWaiting)) {
        lowestWaiting = other.eventSeq;
      }
    }
    return lowestWaiting === null
      ? (this.alertHighestQueued.get(alert.meterId) ?? alert.eventSeq)
      : lowestWaiting - 1;
  }

  onAlertPublishFailed(alert: PendingAlert, nowMs: number): void {
    if (alert.state !== "PUBLISHING") return;
    alert.state = "QUEUED";
    alert.failures++;
    alert.notBeforeMs = nowMs + backoffDelayMs(alert.failures, this.policy, this.random);
    this.counters.alertRetries++;
  }

  alertLatencyP99Ms(): number | null {
    return percentile(this.alertLatencyMs, 0.99);
  }

  // ───────────── evidence ─────────────

  retryHistogram(): readonly RetryWindow[] {
    return this.retryWindows;
  }

  /** Earliest moment something becomes due (back-off or ack deadline), for the shell's timer. */
  nextDueMs(): number | null {
    let due: number | null = null;
    const consider = (at: number) => {
      if (due === null || at < due) due = at;
    };
    for (const b of this.outbox) {
      if (b.state === "SEALED") consider(b.notBeforeMs);
      if (b.state === "PUBLISHED") consider(b.ackDeadlineMs);
    }
    for (const a of this.alerts) if (a.state === "QUEUED") consider(a.notBeforeMs);
    return due;
  }

  private find(batchId: number): OutboxBatch | undefined {
    const first = this.outbox[0];
    if (first === undefined) return undefined;
    const batch = this.outbox[batchId - first.batchId];
    return batch !== undefined && batch.batchId === batchId ? batch : undefined;
  }

  private backOff(batch: OutboxBatch, nowMs: number, cause: RetryCause): void {
    batch.state = "SEALED";
    batch.failures++;
    batch.notBeforeMs = nowMs + backoffDelayMs(batch.failures, this.policy, this.random);
    this.recordRetry(nowMs, cause);
  }

  private recordRetry(nowMs: number, cause: RetryCause): void {
    const windowStartMs = Math.floor(nowMs / UPLINK_RETRY_WINDOW_MS) * UPLINK_RETRY_WINDOW_MS;
    let window = this.retryWindows[this.retryWindows.length - 1];
    if (window === undefined || window.windowStartMs !== windowStartMs) {
      const byCause = Object.fromEntries(RETRY_CAUSES.map((c) => [c, 0])) as Record<RetryCause, number>;
      window = { windowStartMs, byCause };
      this.retryWindows.push(window);
      if (this.retryWindows.length > UPLINK_RETRY_WINDOWS_MAX) this.retryWindows.shift();
    }
    window.byCause[cause]++;
  }
}

/** Nearest-rank percentile of a sample list; null when empty. */
export function percentile(samples: readonly number[], p: number): number | null {
  if (samples.length === 0) return null;
  const sorted = [...samples].sort((a, b) => a - b);
  const rank = Math.min(sorted.length, Math.max(1, Math.ceil(p * sorted.length)));
  return sorted[rank - 1] as number;
}
