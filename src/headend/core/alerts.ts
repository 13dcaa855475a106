import {
  decodeAlert,
  decodeEventRecord,
  type EventRecord,
  isEvidenceError,
  toHex,
  verifyEventSignature,
} from "../../evidence/index.ts";
import { HeadendError, type HeadendLog } from "../errors.ts";
import type { AlertInput, AlertRow, EventRow, HeadendStore } from "../store/index.ts";
import type { BatchRejection } from "./ingest.ts";
import type { HeadendMetrics } from "./metrics.ts";
import type { KeyRegistry } from "./registry.ts";

// The alert lane (seed 004): tamper alerts take their own path from the broker to the alert table and to
// live subscribers — its own MQTT subscription and its own store connection, handed in by the runtime —
// so a long batch transaction never sits in front of them (seed 004 "a message broker ... to decouple the
// incoming tamper alerts from the database write operations"; "tamper alerts must take precedence over
// routine billing data"). Every alert is a meter's sealed event record: verified with the meter's
// event_seal key from the registry, deduplicated on its monotonic seq (a replay is refused, seed 004
// "monotonic counter and a timestamp to prevent replay attacks"), stored, pushed. Minor anomalies are
// aggregated (seed 004 "event-aggregation logic where several minor anomalies are packaged into a single
// high-density payload"); every forwarded event, alert or not, lands in the events table as evidence.

/** Alert messages waiting for the lane; one arriving at the bound is refused and counted. */
export const ALERT_QUEUE_MAX = 10_000;
/** Minor anomalies of one meter within this window become one aggregated alert. */
export const AGGREGATION_WINDOW_MS = 30_000;
/** An aggregate is flushed early when it holds this many anomalies. */
export const AGGREGATE_ANOMALIES_MAX = 32;
/** Meters with an open aggregate at once; beyond, the oldest aggregate is flushed early. */
export const AGGREGATING_METERS_MAX = 10_000;
/** Live subscribers (server-sent event streams) at once. */
export const ALERT_SUBSCRIBERS_MAX = 256;
/** Head-end raised alerts about one (concentrator, reason) are aggregated within this window. */
export const REJECTION_ALERT_WINDOW_MS = 60_000;
/** Event digests remembered to tell an identical resend from a second record under the same seq. */
export const EVENT_DIGESTS_MAX = 100_000;
/** Meters whose tamper state is cached. */
export const TAMPER_STATES_MAX = 1_000_000;

/** seed 002 H2-6 / seed 004 threat model: the types whose alert marks a meter as tampered. */
export const TAMPER_TYPES: ReadonlySet<string> = new Set([
  "MAG_TAMPER",
  "NEUTRAL_MISS",
  "REV_CURRENT",
  "COVER_OPEN",
  "BYPASS_SUS",
  "INJECT_SUS",
  "FW_ROLLBACK",
  "TILT",
  "SIG_FAIL",
]);

/** seed 004 error codes carried in an alert's snapshot for the operator. */
const SEED_004_CODES: Readonly<Record<string, string>> = {
  NEUTRAL_MISS: "0x04",
  MAG_TAMPER: "0x09",
  MAG_SUSPECT: "0x09",
  SIG_FAIL: "0xF2",
};

/** The reasons of amiproof_alerts_rejected_total{reason}. */
export type AlertRejectReason =
  | "BAD_MESSAGE" // the MQTT payload does not parse
  | "BAD_RECORD" // the sealed record does not decode (CRC, structure)
  | "DCU_MISMATCH" // the message names another concentrator than its topic
  | "METER_MISMATCH" // the record belongs to another meter than the message claims
  | "UNKNOWN_METER" // no event_seal key provisioned for the meter
  | "BAD_SIGNATURE" // seed 004 0xF2: the signature does not verify with the provisioned key
  | "REPLAY" // this (meter_id, seq) was already received: refused, not stored or pushed again
  | "SEQ_CONFLICT"; // a second, different record under an already received seq

export type AlertLaneEvent =
  | { readonly kind: "alert"; readonly alert: AlertRow }
  | { readonly kind: "alert_update"; readonly alert: AlertRow };

/** Fan-out to live subscribers; a subscriber that throws is dropped. */
export class AlertHub {
  private readonly listeners = new Set<(event: AlertLaneEvent) => void>();

  get size(): number {
    return this.listeners.size;
  }

  subscribe(listener: (event: AlertLaneEvent) => void): () => void {
    if (this.listeners.size >= ALERT_SUBSCRIBERS_MAX) {
      throw new HeadendError(
        "QUEUE_FULL",
        `already ${ALERT_SUBSCRIBERS_MAX} alert subscribers`,
        "alert stream",
      );
    }
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  publish(event: AlertLaneEvent): void {
    for (const listener of [...this.listeners]) {
      try {
        listener(event);
      } catch {
        this.listeners.delete(listener);
      }
    }
  }
}

export type AlertOutcome =
  | { readonly kind: "stored"; readonly alert: AlertRow; readonly latencyMs: number }
  | { readonly kind: "event"; readonly meterId: string; readonly seq: number; readonly type: string }
  | { readonly kind: "aggregating"; readonly meterId: string; readonly seq: number; readonly type: string }
  | { readonly kind: "rejected"; readonly reason: AlertRejectReason; readonly message: string }
  | { readonly kind: "failed"; readonly message: string };

export interface AlertLaneDeps {
  /** The lane's own store connection (not the batch writer's). */
  readonly store: HeadendStore;
  readonly registry: KeyRegistry;
  readonly metrics: HeadendMetrics;
  readonly log: HeadendLog;
  readonly hub: AlertHub;
  nowMs(): number;
  onOutcome?(outcome: AlertOutcome): void;
}

interface Aggregate {
  readonly meterId: string;
  readonly dcuId: string | null;
  readonly openedMs: number;
  readonly firstDetectedMs: number;
  readonly types: Map<string, number>;
  lastSeq: number;
  count: number;
  receivedMs: number;
}

interface RejectionWindow {
  readonly openedMs: number;
  suppressed: number;
  lastBatchId: number | null;
  lastMessage: string;
}

interface QueuedAlert {
  readonly dcuId: string;
  readonly payload: Uint8Array;
  readonly receivedMs: number;
}

export class AlertLane {
  private readonly queue: QueuedAlert[] = [];
  private running: Promise<void> | null = null;
  private closed = false;
  private readonly aggregates = new Map<string, Aggregate>();
  private readonly rejectionWindows = new Map<string, RejectionWindow>();
  private readonly digests = new Map<string, string>();
  private readonly tamperStates = new Map<string, Set<string>>();
  private raisedCounter = 0;
  private readonly raising = new Set<Promise<void>>();

  constructor(private readonly deps: AlertLaneDeps) {}

  get queueDepth(): number {
    return this.queue.length;
  }

  /** An alert from ami/<dcuId>/alerts. false: refused at the bound or after close. */
  submit(dcuId: string, payload: Uint8Array): boolean {
    if (this.closed || this.queue.length >= ALERT_QUEUE_MAX) {
      this.deps.metrics.alertQueueRefused++;
      return false;
    }
    this.queue.push({ dcuId, payload, receivedMs: this.deps.nowMs() });
    if (this.running === null) {
      this.running = this.run().finally(() => {
        this.running = null;
      });
    }
    return true;
  }

  /** Resolves when the queue is empty and every head-end raised alert is stored. */
  async drain(): Promise<void> {
    while (this.running !== null || this.raising.size > 0) {
      if (this.running !== null) await this.running;
      else await Promise.all([...this.raising]);
    }
  }

  /** Stops intake, finishes the queue, flushes every open aggregate. */
  async close(): Promise<void> {
    this.closed = true;
    await this.drain();
    await this.flushAggregates(Number.POSITIVE_INFINITY);
  }

  /** Called periodically by the runtime: aggregates and rejection windows whose time has come are flushed. */
  async tick(): Promise<void> {
    await this.flushAggregates(this.deps.nowMs());
    await this.flushRejectionWindows(this.deps.nowMs());
  }

  private async run(): Promise<void> {
    while (this.queue.length > 0) {
      const item = this.queue.shift() as QueuedAlert;
      let outcome: AlertOutcome;
      try {
        outcome = await this.process(item);
      } catch (error) {
        this.deps.log.error(
          { dcu_id: item.dcuId, error: (error as Error).message },
          "alert processing failed",
        );
        outcome = { kind: "failed", message: (error as Error).message };
      }
      this.deps.onOutcome?.(outcome);
    }
  }

  private reject(reason: AlertRejectReason, message: string, detail: Record<string, unknown>): AlertOutcome {
    this.deps.metrics.rejectAlert(reason);
    if (reason === "REPLAY") this.deps.log.info({ ...detail, reason }, "alert refused as a replay");
    else this.deps.log.warn({ ...detail, reason, detail: message }, "alert refused");
    return { kind: "rejected", reason, message };
  }

  private async process(item: QueuedAlert): Promise<AlertOutcome> {
    const { dcuId, receivedMs } = item;
    let message: ReturnType<typeof decodeAlert>;
    try {
      message = decodeAlert(item.payload);
    } catch (error) {
      if (!isEvidenceError(error)) throw error;
      return this.reject("BAD_MESSAGE", error.message, { dcu_id: dcuId });
    }
    if (message.dcuId !== dcuId) {
      return this.reject("DCU_MISMATCH", `message names ${message.dcuId}`, { dcu_id: dcuId });
    }
    let record: EventRecord;
    try {
      record = decodeEventRecord(message.record);
    } catch (error) {
      if (!isEvidenceError(error)) throw error;
      return this.reject("BAD_RECORD", error.message, { dcu_id: dcuId, meter_id: message.meterId });
    }
    const where = { dcu_id: dcuId, meter_id: record.meterId, seq: record.seq, type: record.type };
    if (record.meterId !== message.meterId) {
      return this.reject(
        "METER_MISMATCH",
        `record of ${record.meterId} forwarded as ${message.meterId}`,
        where,
      );
    }
    const key = this.deps.registry.meterKey(record.meterId);
    if (key === null) {
      const outcome = this.reject(
        "UNKNOWN_METER",
        `meter ${record.meterId} has no provisioned event_seal key`,
        where,
      );
      this.noteRejection(dcuId, "UNKNOWN_METER", null, `meter ${record.meterId} unknown`);
      return outcome;
    }
    if (!verifyEventSignature(record, key)) {
      const outcome = this.reject(
        "BAD_SIGNATURE",
        "seed 004 0xF2: the record's signature does not verify with the meter's event_seal key",
        where,
      );
      this.noteRejection(dcuId, "ALERT_BAD_SIGNATURE", null, `meter ${record.meterId} seq ${record.seq}`);
      return outcome;
    }
    const digestKey = `${record.meterId}/${record.seq}`;
    const digest = toHex(record.digest);
    const seen = this.digests.get(digestKey);
    if (seen !== undefined) {
      if (seen === digest) return this.reject("REPLAY", "already received", where);
      const outcome = this.reject("SEQ_CONFLICT", "a different record was received under this seq", where);
      this.noteRejection(dcuId, "SEQ_CONFLICT", null, `meter ${record.meterId} seq ${record.seq}`);
      return outcome;
    }
    const previous = this.digests.get(`${record.meterId}/${record.seq - 1}`);
    if (previous !== undefined && previous !== toHex(record.prevDigest)) {
      this.deps.log.warn(
        where,
        "event does not chain to the previous one received (the meter's log says why)",
      );
    }

    const event: EventRow = {
      meterId: record.meterId,
      seq: record.seq,
      type: record.type,
      level: record.level,
      timestampMs: record.timestampMs,
      timeQuality: record.timeQuality,
      record: record.bytes,
      verified: true,
      dcuId,
      receivedMs,
    };
    const alerting = record.level === "MAJOR" || record.level === "CRITICAL";
    let outcome: AlertOutcome;
    if (alerting) {
      // The alert row first: it is what the operator waits for. The event row follows.
      const input: AlertInput = {
        meterId: record.meterId,
        dcuId,
        type: record.type,
        level: record.level,
        counter: record.seq,
        detectedMs: record.timestampMs,
        receivedMs,
        storedMs: this.deps.nowMs(),
        snapshot: snapshotOf(record),
        aggregatedCount: 1,
        record: record.bytes,
        verified: true,
      };
      const stored = await this.deps.store.insertAlert(input);
      if (!stored.isNew) {
        // The alert row and the event row are two writes: a crash between them is healed by the
        // concentrator's resend (insertEvents is idempotent on (meter_id, seq)).
        await this.deps.store.insertEvents([event]);
        this.remember(digestKey, digest);
        return this.reject("REPLAY", "this (meter_id, seq) is already stored", where);
      }
      const row = alertRowOf(input, stored.alertId);
      this.deps.hub.publish({ kind: "alert", alert: row });
      const latencyMs = this.deps.nowMs() - record.timestampMs;
      this.deps.metrics.alertLatencyMs.record(latencyMs);
      this.deps.metrics.alertStored(record.type);
      this.deps.log.info(
        { ...where, alert_id: stored.alertId, latency_ms: latencyMs },
        "alert stored and pushed",
      );
      await this.deps.store.insertEvents([event]);
      outcome = { kind: "stored", alert: row, latencyMs };
    } else {
      const inserted = await this.deps.store.insertEvents([event]);
      if (inserted === 0) {
        this.remember(digestKey, digest);
        return this.reject("REPLAY", "this (meter_id, seq) is already stored", where);
      }
      if (record.level === "MINOR") {
        await this.aggregate(record, dcuId, receivedMs);
        outcome = { kind: "aggregating", meterId: record.meterId, seq: record.seq, type: record.type };
      } else {
        outcome = { kind: "event", meterId: record.meterId, seq: record.seq, type: record.type };
      }
    }
    this.remember(digestKey, digest);
    this.deps.metrics.eventsStored++;
    await this.applyMeterState(record);
    return outcome;
  }

  private remember(key: string, digest: string): void {
    if (this.digests.size >= EVENT_DIGESTS_MAX) {
      const oldest = this.digests.keys().next().value;
      if (oldest !== undefined) this.digests.delete(oldest);
    }
    this.digests.set(key, digest);
  }

  /** Tamper state (active tamper types) and the firmware bank follow the meter's own sealed records. */
  private async applyMeterState(record: EventRecord): Promise<void> {
    const nowMs = this.deps.nowMs();
    const snapshot = record.snapshot;
    if (
      record.type === "FW_ACTIVATED" ||
      record.type === "FW_CONFIRMED" ||
      record.type === "FW_ROLLED_BACK"
    ) {
      const bank = record.type === "FW_ROLLED_BACK" ? snapshot.to_bank : snapshot.bank;
      const version = snapshot.version;
      await this.deps.store.upsertMeter({
        meterId: record.meterId,
        ...(typeof bank === "string" && bank !== "?" ? { firmwareBank: bank } : {}),
        ...(typeof version === "string" ? { firmwareVersion: version } : {}),
        updatedMs: nowMs,
      });
    }
    const raises = TAMPER_TYPES.has(record.type) && (record.level === "MAJOR" || record.level === "CRITICAL");
    const clears = record.type === "TAMPER_CLEARED" && typeof snapshot.tamper === "string";
    if (!raises && !clears) return;
    const state = await this.tamperState(record.meterId);
    const before = tamperText(state);
    if (raises) state.add(record.type);
    else state.delete(snapshot.tamper as string);
    const after = tamperText(state);
    if (after !== before) {
      await this.deps.store.upsertMeter({ meterId: record.meterId, tamperState: after, updatedMs: nowMs });
    }
  }

  private async tamperState(meterId: string): Promise<Set<string>> {
    let state = this.tamperStates.get(meterId);
    if (state === undefined) {
      const row = await this.deps.store.getMeter(meterId);
      state = new Set(
        row === null || row.tamperState === "CLEAR" ? [] : row.tamperState.split(",").filter((t) => t !== ""),
      );
      if (this.tamperStates.size >= TAMPER_STATES_MAX) this.tamperStates.clear();
      this.tamperStates.set(meterId, state);
    }
    return state;
  }

  private async aggregate(record: EventRecord, dcuId: string, receivedMs: number): Promise<void> {
    let open = this.aggregates.get(record.meterId);
    if (open === undefined) {
      if (this.aggregates.size >= AGGREGATING_METERS_MAX) {
        const oldest = this.aggregates.values().next().value;
        if (oldest !== undefined) await this.flushAggregate(oldest);
      }
      open = {
        meterId: record.meterId,
        dcuId,
        openedMs: this.deps.nowMs(),
        firstDetectedMs: record.timestampMs,
        types: new Map(),
        lastSeq: record.seq,
        count: 0,
        receivedMs,
      };
      this.aggregates.set(record.meterId, open);
    }
    open.types.set(record.type, (open.types.get(record.type) ?? 0) + 1);
    open.lastSeq = Math.max(open.lastSeq, record.seq);
    open.count++;
    open.receivedMs = receivedMs;
    if (open.count >= AGGREGATE_ANOMALIES_MAX) await this.flushAggregate(open);
  }

  private async flushAggregates(nowMs: number): Promise<void> {
    for (const open of [...this.aggregates.values()]) {
      if (nowMs - open.openedMs >= AGGREGATION_WINDOW_MS) await this.flushAggregate(open);
    }
  }

  private async flushAggregate(open: Aggregate): Promise<void> {
    this.aggregates.delete(open.meterId);
    const snapshot: Record<string, number | string | boolean> = { anomalies: open.count };
    for (const [type, n] of open.types) snapshot[type] = n;
    const input: AlertInput = {
      meterId: open.meterId,
      dcuId: open.dcuId,
      type: "ANOMALY_AGGREGATE",
      level: "MINOR",
      // The newest seq in the group: unique per meter, since each seq belongs to one alert at most.
      counter: open.lastSeq,
      detectedMs: open.firstDetectedMs,
      receivedMs: open.receivedMs,
      storedMs: this.deps.nowMs(),
      snapshot,
      aggregatedCount: open.count,
      record: null,
      verified: true,
    };
    await this.store(input);
    this.deps.metrics.alertsAggregated += open.count;
  }

  /** A head-end raised alert (rejected batches, unknown meters): the first in a window at once, then one aggregate. */
  onBatchRejected(rejection: BatchRejection): void {
    this.noteRejection(rejection.dcuId, rejection.reason, rejection.batchId, rejection.message);
  }

  private noteRejection(dcuId: string, reason: string, batchId: number | null, message: string): void {
    const key = `${dcuId}\u0000${reason}`;
    const open = this.rejectionWindows.get(key);
    if (open !== undefined) {
      open.suppressed++;
      open.lastBatchId = batchId;
      open.lastMessage = message;
      return;
    }
    if (this.rejectionWindows.size >= AGGREGATING_METERS_MAX) return; // counted in the metrics already
    this.rejectionWindows.set(key, {
      openedMs: this.deps.nowMs(),
      suppressed: 0,
      lastBatchId: batchId,
      lastMessage: message,
    });
    const raising: Promise<void> = this.raiseRejection(dcuId, reason, batchId, message, 1)
      .catch((error: unknown) => {
        this.deps.log.error(
          { dcu_id: dcuId, error: (error as Error).message },
          "could not raise a rejection alert",
        );
      })
      .finally(() => this.raising.delete(raising));
    this.raising.add(raising);
  }

  private async flushRejectionWindows(nowMs: number): Promise<void> {
    for (const [key, open] of [...this.rejectionWindows]) {
      if (nowMs - open.openedMs < REJECTION_ALERT_WINDOW_MS) continue;
      this.rejectionWindows.delete(key);
      if (open.suppressed === 0) continue;
      const [dcuId, reason] = key.split("\u0000") as [string, string];
      await this.raiseRejection(dcuId, reason, open.lastBatchId, open.lastMessage, open.suppressed);
    }
  }

  private async raiseRejection(
    dcuId: string,
    reason: string,
    batchId: number | null,
    message: string,
    count: number,
  ): Promise<void> {
    const nowMs = this.deps.nowMs();
    const type =
      reason === "UNKNOWN_DCU"
        ? "UNKNOWN_DCU"
        : reason.startsWith("ALERT_") || reason === "UNKNOWN_METER" || reason === "SEQ_CONFLICT"
          ? `ALERT_${reason.replace(/^ALERT_/, "")}`
          : "BATCH_REJECTED";
    // Head-end raised alerts have no meter seq: their counter is the head-end's own, unique per ms.
    this.raisedCounter = (this.raisedCounter + 1) % 1000;
    await this.store({
      meterId: "",
      dcuId,
      type,
      level: "MAJOR",
      counter: nowMs * 1000 + this.raisedCounter,
      detectedMs: nowMs,
      receivedMs: nowMs,
      storedMs: nowMs,
      snapshot: {
        reason,
        ...(batchId === null ? {} : { batch_id: batchId }),
        detail: message.slice(0, 300),
        count,
      },
      aggregatedCount: count,
      record: null,
      verified: false,
    });
  }

  private async store(input: AlertInput): Promise<AlertRow | null> {
    const stored = await this.deps.store.insertAlert(input);
    if (!stored.isNew) return null;
    const row = alertRowOf(input, stored.alertId);
    this.deps.metrics.alertStored(input.type);
    this.deps.hub.publish({ kind: "alert", alert: row });
    return row;
  }

  async acknowledge(alertId: number, by: string): Promise<AlertRow> {
    const row = await this.deps.store.acknowledgeAlert(alertId, by, this.deps.nowMs());
    this.deps.hub.publish({ kind: "alert_update", alert: row });
    return row;
  }

  async resolve(alertId: number, by: string): Promise<AlertRow> {
    const row = await this.deps.store.resolveAlert(alertId, by, this.deps.nowMs());
    this.deps.hub.publish({ kind: "alert_update", alert: row });
    return row;
  }
}

function tamperText(state: ReadonlySet<string>): string {
  return state.size === 0 ? "CLEAR" : [...state].sort().join(",");
}

function snapshotOf(record: EventRecord): Record<string, number | string | boolean> {
  const code = SEED_004_CODES[record.type];
  return {
    ...record.snapshot,
    start_ms: record.startMs,
    time_quality: record.timeQuality,
    ...(code === undefined ? {} : { error_code: code }),
  };
}

function alertRowOf(input: AlertInput, alertId: number): AlertRow {
  return {
    ...input,
    alertId,
    state: "open",
    acknowledgedBy: null,
    acknowledgedMs: null,
    resolvedBy: null,
    resolvedMs: null,
  };
}

/** The wire/JSON form of an alert (API, SSE): the seeds' snake_case. */
export function alertToJson(alert: AlertRow): Record<string, unknown> {
  return {
    alert_id: alert.alertId,
    meter_id: alert.meterId,
    dcu_id: alert.dcuId,
    type: alert.type,
    level: alert.level,
    counter: alert.counter,
    detected_ms: alert.detectedMs,
    received_ms: alert.receivedMs,
    stored_ms: alert.storedMs,
    state: alert.state,
    acknowledged_by: alert.acknowledgedBy,
    acknowledged_ms: alert.acknowledgedMs,
    resolved_by: alert.resolvedBy,
    resolved_ms: alert.resolvedMs,
    snapshot: alert.snapshot,
    aggregated_count: alert.aggregatedCount,
    verified: alert.verified,
    record: alert.record === null ? null : toHex(alert.record),
  };
}
