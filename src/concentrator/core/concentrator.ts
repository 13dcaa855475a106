import assert from "node:assert/strict";
import {
  BATCH_METERS_MAX,
  BATCH_RECORDS_MAX,
  type Batch,
  batchGenesisHash,
  bundleKey,
  decodeBatch,
  decodeEventRecord,
  decodeReadingRecord,
  type EvidenceBundle,
  encodeBatch,
  encodeReadingRecord,
  METER_ID_BYTES_MAX,
  READING_VALUES_MAX,
  type ReadingRecord,
  type SecureElement,
  sealBatch,
  type TimeQuality,
  toHex,
  verifyBatch,
} from "../../evidence/index.ts";
import { ConcentratorError, isConcentratorError } from "../errors.ts";
import { type BackoffPolicy, type RandomSource, UPLINK_BACKOFF } from "./backoff.ts";
import { ConcentratorCounters, type IfaceErrorKind, METERS_MAX, type SeqGapCause } from "./evidence-packs.ts";
import type {
  Clock,
  CommitJournal,
  DcuPersistentState,
  DcuStore,
  MeterConfig,
  MeterReader,
  MeterReading,
  UplinkTransport,
} from "./ports.ts";
import { TimeKeeper, type TimeSource } from "./time-quality.ts";
import { type OutboxBatch, type PendingAlert, UplinkMachine } from "./uplink.ts";
import {
  acksTopic,
  alertsTopic,
  batchesTopic,
  checkDcuId,
  decodeAck,
  decodeTimeMessage,
  encodeAlert,
  statusTopic,
  timeTopic,
} from "./wire.ts";

// The concentrator pipeline of seed 003 H2-5: Collect → Validate → Commit → Ack → Uplink batch →
// Reconcile. Everything the world does to it arrives as a method call (tick, link up/down, messages),
// everything it does to the world goes through the injected ports, so the lab runs it in virtual time
// and the runtime in real time with the same code.

/** Polls running at once (bounded concurrency over the meter interfaces). */
export const POLL_CONCURRENCY_MAX = 8;
/** Readings validated and waiting for the journal; polling waits at the bound (storage backpressure). */
export const COMMIT_QUEUE_RECORDS_MAX = 8192;
/** Records handed to the journal in one group commit (one fdatasync covers them all). */
export const COMMIT_GROUP_RECORDS_MAX = 1024;
/** Readings fetched from a meter's profile in one poll to close a seq gap; more waits for the next poll. */
export const BACKFILL_RECORDS_MAX = 256;
/** Sealed events read from a meter in one poll. */
export const EVENTS_PER_POLL_MAX = 16;
/** Recovery reads the unreleased journal in chunks of this many entries. */
export const RECOVERY_SCAN_CHUNK = 4096;
/** Backpressure (seed 003 H2-5 "stalls must not silently block capture"): polling slows above the soft
 *  bound of unacknowledged committed records and pauses at the hard bound; the journal keeps everything. */
export const UPLINK_BACKLOG_RECORDS_SOFT = 100_000;
export const UPLINK_BACKLOG_RECORDS_HARD = 400_000;
/** Poll interval multiplier reached at the hard bound. */
export const POLL_SLOWDOWN_FACTOR_MAX = 8;
/** A meter is offline after this many consecutive failed polls. */
export const METER_OFFLINE_AFTER_ERRORS = 3;
/** Meter clock (or, without it, capture time) further than this from ours counts meter_clock_skew_cnt. */
export const METER_CLOCK_SKEW_MAX_MS = 5 * 60_000;
/** Retained status (evidence packs) published at this period. */
export const STATUS_INTERVAL_MS = 60_000;
/** Failing samples carried in the status (the rest stay in the in-memory evidence log). */
export const FAILING_SAMPLES_IN_STATUS_MAX = 16;
/** Event cursors are saved at most this often (alerts are at-least-once; see README). */
export const STATE_SAVE_INTERVAL_MS = 10_000;

export interface ConcentratorConfig {
  readonly dcuId: string;
  readonly meters: readonly MeterConfig[];
  readonly pollIntervalMs: number;
  readonly pollConcurrencyMax?: number;
  /** Records per batch: a batch is sealed when this many wait, or when the oldest waited batchAgeMaxMs. */
  readonly batchRecordsMax?: number;
  readonly batchAgeMaxMs?: number;
  readonly backlogSoftRecords?: number;
  readonly backlogHardRecords?: number;
  readonly statusIntervalMs?: number;
  readonly backoff?: BackoffPolicy;
  readonly inflightBatchesMax?: number;
  readonly ackTimeoutMs?: number;
}

export interface ConcentratorDeps {
  readonly clock: Clock;
  readonly random: RandomSource;
  readonly reader: MeterReader;
  readonly journal: CommitJournal;
  readonly store: DcuStore;
  readonly secureElement: SecureElement;
  readonly transport: UplinkTransport;
  /** The shell's reason for this start: POWER_ON, CLEAN_RESTART, UNCLEAN_RESTART (seed 003 reset_reason). */
  readonly resetReason?: string;
  /**
   * The interfaces' own evidence (DLMS associations, M-Bus frame counts…), carried in the interface pack
   * as `readers`; the shell supplies it, absent in tests and the lab.
   */
  readonly interfaceEvidence?: () => Record<string, unknown>;
  /** Something the core cannot continue past (journal write failure, corrupt store): the shell exits. */
  readonly onFatal?: (error: Error) => void;
}

interface MeterState {
  readonly config: MeterConfig;
  /** Highest seq durably committed (0: nothing yet). */
  cursor: number;
  /** Highest seq validated and queued for commit (≥ cursor). */
  queuedThrough: number;
  eventCursor: number;
  nextPollMs: number;
  polling: boolean;
  /** Poll again at once: a backfill chunk left readings on the meter. */
  catchUp: boolean;
  lastTimestampMs: number | null;
  /** seqs seen malformed, to attribute a later gap as REJECTED (bounded per meter). */
  rejectedSeqs: Set<number>;
}

interface QueuedReading {
  readonly meter: MeterState;
  readonly reading: MeterReading;
  readonly collectedMs: number;
}

const REJECTED_SEQS_MAX = 64;

export class Concentrator {
  readonly counters = new ConcentratorCounters();
  readonly time: TimeKeeper;
  readonly uplink: UplinkMachine;
  private readonly meters = new Map<string, MeterState>();
  private readonly meterOrder: MeterState[] = [];
  /**
   * Cursors of meters in the state or the journal but not configured (yet): kept and saved as they are,
   * so a meter that joins later (addMeter: its address answered only after the start) or is configured
   * again resumes exactly where it was — neither re-read nor skipped.
   */
  private readonly retainedReadingCursors = new Map<string, number>();
  private readonly retainedEventCursors = new Map<string, number>();
  private readonly commitQueue: QueuedReading[] = [];
  private readonly pending = new Set<Promise<void>>();
  private readonly batchRecordsMax: number;
  private readonly batchAgeMaxMs: number;
  private readonly backlogSoft: number;
  private readonly backlogHard: number;
  private readonly pollConcurrencyMax: number;
  private readonly statusIntervalMs: number;
  private readonly batchPublicKey: Uint8Array;
  private lastAckedBatchId = 0;
  private ackedChainHead: Uint8Array | null = null;
  private chainHead: Uint8Array;
  private lastBatchId = 0;
  private pollsRunning = 0;
  private committing = false;
  private sealing = false;
  private releasing = false;
  /** flush(): seal regardless of age until this commit_id is sealed. */
  private flushThrough = 0;
  private closed = false;
  /** close() finished: the journal and store belong to the shell again (it closes them). */
  private drained = false;
  private failed: Error | null = null;
  private oldestUnbatchedMs: number | null = null;
  private nextStatusMs = 0;
  private stateDirty = false;
  private lastStateSaveMs = 0;
  private lifetime: Record<string, number> = {};
  /** Highest commit_id the seal loop passed, corrupt records included. */
  private skippedThrough = 0;
  /** Recovery epoch of the last journal entry the seal loop passed (COMMIT_GAP attribution). */
  private lastEntryEpoch: number | null = null;
  /** Where the next poll scan starts (round-robin over meterOrder). */
  private pollScanFrom = 0;
  private saveChain: Promise<void> = Promise.resolve();
  private readonly publishing = new Set<Promise<void>>();

  private constructor(
    private readonly config: ConcentratorConfig,
    private readonly deps: ConcentratorDeps,
  ) {
    checkDcuId(config.dcuId);
    if (!Number.isFinite(config.pollIntervalMs) || config.pollIntervalMs <= 0) {
      throw new ConcentratorError(
        "BAD_CONFIG",
        `poll interval must be positive, got ${config.pollIntervalMs}`,
      );
    }
    if (config.meters.length > METERS_MAX) {
      throw new ConcentratorError("BAD_CONFIG", `${config.meters.length} meters, at most ${METERS_MAX}`);
    }
    this.batchRecordsMax = config.batchRecordsMax ?? 1024;
    if (this.batchRecordsMax < 1 || this.batchRecordsMax > BATCH_RECORDS_MAX) {
      throw new ConcentratorError("BAD_CONFIG", `batch records must be 1..${BATCH_RECORDS_MAX}`);
    }
    this.batchAgeMaxMs = config.batchAgeMaxMs ?? 5_000;
    this.backlogSoft = config.backlogSoftRecords ?? UPLINK_BACKLOG_RECORDS_SOFT;
    this.backlogHard = config.backlogHardRecords ?? UPLINK_BACKLOG_RECORDS_HARD;
    if (!(this.backlogSoft < this.backlogHard)) {
      throw new ConcentratorError("BAD_CONFIG", "backlog soft bound must be below the hard bound");
    }
    this.pollConcurrencyMax = config.pollConcurrencyMax ?? POLL_CONCURRENCY_MAX;
    this.statusIntervalMs = config.statusIntervalMs ?? STATUS_INTERVAL_MS;
    const now = deps.clock.nowMs();
    this.time = new TimeKeeper(now);
    this.uplink = new UplinkMachine(
      deps.random,
      config.backoff ?? UPLINK_BACKOFF,
      config.inflightBatchesMax,
      config.ackTimeoutMs,
    );
    this.chainHead = batchGenesisHash(config.dcuId);
    this.batchPublicKey = deps.secureElement.publicKey("batch_sign");
    this.counters.resetReason = deps.resetReason ?? "POWER_ON";
    config.meters.forEach((meter, index) => {
      // Spread the first polls over one interval so a fleet is not read in one burst.
      this.insertMeter(
        meter,
        now + Math.floor((index * config.pollIntervalMs) / Math.max(1, config.meters.length)),
      );
    });
  }

  private insertMeter(meter: MeterConfig, nextPollMs: number): MeterState {
    const length = new TextEncoder().encode(meter.meterId).length;
    if (length === 0 || length > METER_ID_BYTES_MAX || this.meters.has(meter.meterId)) {
      throw new ConcentratorError(
        "BAD_CONFIG",
        `meter id ${JSON.stringify(meter.meterId)} is empty, too long or repeated`,
      );
    }
    if (this.meterOrder.length >= METERS_MAX)
      throw new ConcentratorError("BAD_CONFIG", `more than ${METERS_MAX} meters`);
    const state: MeterState = {
      config: meter,
      cursor: 0,
      queuedThrough: 0,
      eventCursor: 0,
      nextPollMs,
      polling: false,
      catchUp: false,
      lastTimestampMs: null,
      rejectedSeqs: new Set(),
    };
    this.meters.set(meter.meterId, state);
    this.meterOrder.push(state);
    return state;
  }

  /**
   * A meter joins after the start (the shell learnt its id only when its address first answered). It
   * resumes from the cursors recovery kept for it, and is polled at the next tick.
   */
  addMeter(meter: MeterConfig): void {
    const state = this.insertMeter(meter, this.deps.clock.nowMs());
    const reading = this.retainedReadingCursors.get(meter.meterId);
    if (reading !== undefined) state.cursor = state.queuedThrough = reading;
    state.eventCursor = this.retainedEventCursors.get(meter.meterId) ?? 0;
    this.retainedReadingCursors.delete(meter.meterId);
    this.retainedEventCursors.delete(meter.meterId);
  }

  /** Configured meter ids, in poll order. */
  meterIds(): string[] {
    return this.meterOrder.map((m) => m.config.meterId);
  }

  /** Opens the concentrator over its journal and store: recovery first (a new recovery epoch). */
  static async open(config: ConcentratorConfig, deps: ConcentratorDeps): Promise<Concentrator> {
    const concentrator = new Concentrator(config, deps);
    await concentrator.recover();
    return concentrator;
  }

  get dcuId(): string {
    return this.config.dcuId;
  }

  get publicKey(): Uint8Array {
    return this.batchPublicKey;
  }

  get epoch(): number {
    return this.deps.journal.epoch;
  }

  /** Committed records not yet acknowledged by the head-end. */
  backlogRecords(): number {
    return Math.max(0, this.deps.journal.lastCommitId() - this.deps.journal.releasedThrough());
  }

  meterCursor(meterId: string): number | undefined {
    return this.meters.get(meterId)?.cursor;
  }

  // ───────────────────────────── recovery ─────────────────────────────

  private async recover(): Promise<void> {
    const { journal, store } = this.deps;
    const state = await store.loadState();
    const released = journal.releasedThrough();
    if (state === null && released > 0) {
      throw new ConcentratorError(
        "STORE_CORRUPT",
        `the journal released through commit_id ${released} but the concentrator state is missing`,
      );
    }
    if (state !== null) {
      this.lastAckedBatchId = state.lastAckedBatchId;
      this.ackedChainHead = state.chainHeadHash;
      this.lifetime = { ...state.lifetime };
      for (const [meterId, seq] of Object.entries(state.readingCursors)) {
        const meter = this.meters.get(meterId);
        if (meter !== undefined) meter.cursor = meter.queuedThrough = seq;
        else this.retainedReadingCursors.set(meterId, seq);
      }
      for (const [meterId, seq] of Object.entries(state.eventCursors)) {
        const meter = this.meters.get(meterId);
        if (meter !== undefined) meter.eventCursor = seq;
        else this.retainedEventCursors.set(meterId, seq);
      }
    }
    if (this.counters.resetReason === "UNCLEAN_RESTART") {
      this.lifetime.unclean_restart_cnt = (this.lifetime.unclean_restart_cnt ?? 0) + 1;
    }
    this.counters.uvloCount = this.lifetime.uvlo_cnt ?? 0;

    // The outbox: sealed batches not yet released. Ones at or below the acked mark were acknowledged
    // before the crash (state saved, then the release or the drop did not finish): finish that now.
    const stored: { batch: Batch; bytes: Uint8Array }[] = [];
    for (const bytes of await store.loadOutbox()) {
      try {
        stored.push({ batch: decodeBatch(bytes), bytes });
      } catch (error) {
        throw new ConcentratorError(
          "STORE_CORRUPT",
          `outbox batch does not decode: ${(error as Error).message}`,
        );
      }
    }
    stored.sort((a, b) => a.batch.header.batchId - b.batch.header.batchId);
    const acked = stored.filter(
      ({ batch }) => batch.header.batchId <= this.lastAckedBatchId || batch.header.commitIdLast <= released,
    );
    const lastAcked = acked[acked.length - 1]?.batch.header;
    if (lastAcked !== undefined) {
      this.counters.recoveryAckedOnRestart = acked.length;
      if (lastAcked.batchId > this.lastAckedBatchId) {
        this.lastAckedBatchId = lastAcked.batchId;
        this.ackedChainHead = lastAcked.batchHash;
      }
      if (lastAcked.commitIdLast > released) await journal.releaseThrough(lastAcked.commitIdLast);
      await store.dropBatchesThrough(this.lastAckedBatchId);
    }
    this.lastBatchId = this.lastAckedBatchId;
    this.chainHead = this.ackedChainHead ?? batchGenesisHash(this.config.dcuId);
    for (const { batch, bytes } of stored.slice(acked.length)) {
      const header = batch.header;
      const problems = verifyBatch(batch, this.batchPublicKey, this.chainHead);
      if (header.batchId !== this.lastBatchId + 1 || problems.length > 0) {
        throw new ConcentratorError(
          "STORE_CORRUPT",
          `outbox batch ${header.batchId} does not continue the chain after ${this.lastBatchId}: ${
            problems.map((p) => p.message).join("; ") || "batch_id out of sequence"
          }`,
        );
      }
      this.uplink.add(outboxEntry(batch, bytes), true);
      this.lastBatchId = header.batchId;
      this.chainHead = header.batchHash;
      this.counters.recoveryOutboxBatches++;
    }

    // Per-meter cursors: the state covers released entries, a scan covers the rest of the journal.
    let from = journal.releasedThrough() + 1;
    for (;;) {
      const entries = await journal.readFrom(from, RECOVERY_SCAN_CHUNK);
      if (entries.length === 0) break;
      for (const entry of entries) {
        const record = this.decodeCommitted(entry.commitId, entry.payload);
        if (record !== null) {
          const meter = this.meters.get(record.meterId);
          if (meter !== undefined && record.seq > meter.cursor)
            meter.cursor = meter.queuedThrough = record.seq;
          if (meter === undefined && record.seq > (this.retainedReadingCursors.get(record.meterId) ?? 0))
            this.retainedReadingCursors.set(record.meterId, record.seq);
          this.counters.recoveryReplayedRecords++;
        }
        from = entry.commitId + 1;
      }
    }
    if (this.unbatchedRecords() > 0) this.oldestUnbatchedMs = this.deps.clock.nowMs();
    await this.saveState();
    this.counters.commitState = "IDLE";
  }

  // ───────────────────────────── the shell's entry points ─────────────────────────────

  /** Advance everything that is due; the shell calls it on a timer, tests after moving virtual time. */
  tick(): void {
    if (this.closed) return;
    const now = this.deps.clock.nowMs();
    this.time.quality(now);
    this.uplink.checkAckTimeouts(now);
    this.startDuePolls(now);
    this.kick();
    if (this.uplink.connected && now >= this.nextStatusMs) {
      this.nextStatusMs = now + this.statusIntervalMs;
      this.publishStatus();
    }
    if (this.stateDirty && now - this.lastStateSaveMs >= STATE_SAVE_INTERVAL_MS) {
      this.track(this.saveState());
    }
  }

  onLinkUp(): void {
    this.uplink.onLinkUp();
    this.nextStatusMs = 0;
    this.tick();
  }

  /** The link dropped or a connect failed; returns the back-off delay before the next connect attempt. */
  onLinkDown(): number {
    this.uplink.onLinkDown(this.deps.clock.nowMs());
    return this.uplink.reconnectDelayMs();
  }

  /** A message on a subscribed topic (acks, time). Bad payloads are counted, never thrown to the shell. */
  onMessage(topic: string, payload: Uint8Array): void {
    if (this.drained) return;
    if (topic === acksTopic(this.config.dcuId)) {
      try {
        const ack = decodeAck(payload);
        if (ack.dcuId !== this.config.dcuId) {
          throw new ConcentratorError("BAD_ACK", `ack for ${ack.dcuId}`, topic);
        }
        this.uplink.onAck(ack, this.deps.clock.nowMs());
      } catch (error) {
        if (!isConcentratorError(error)) throw error;
        this.uplink.counters.ackBad++;
      }
      this.kick();
    } else if (topic === timeTopic(this.config.dcuId)) {
      try {
        this.onTimeSample(decodeTimeMessage(payload).timeMs, "HES");
      } catch (error) {
        if (!isConcentratorError(error)) throw error;
        this.time.counters.badTimeCount++;
      }
    }
  }

  /** Topics the shell subscribes to (QoS 1). */
  subscriptions(): string[] {
    return [acksTopic(this.config.dcuId), timeTopic(this.config.dcuId)];
  }

  onTimeSample(referenceMs: number, source: TimeSource): void {
    this.time.onSample(this.deps.clock.nowMs(), referenceMs, source);
  }

  /** Power telemetry from the board (seed 003 H2-7 power pack); the runtime may have none. */
  onPowerSample(sample: { vbatMv?: number; uvlo?: boolean; droop?: boolean; brownout?: boolean }): void {
    if (sample.vbatMv !== undefined) {
      this.counters.vbatMinMv =
        this.counters.vbatMinMv === null ? sample.vbatMv : Math.min(this.counters.vbatMinMv, sample.vbatMv);
    }
    if (sample.droop === true) this.counters.vbatDroopCount++;
    if (sample.brownout === true) this.counters.brownoutLogCount++;
    if (sample.uvlo === true) {
      this.counters.uvloCount++;
      this.lifetime.uvlo_cnt = this.counters.uvloCount;
      this.stateDirty = true;
    }
  }

  /** A meter signalled a new event (push/alarm): read its events now rather than at the next poll. */
  onMeterEventHint(meterId: string): void {
    const meter = this.meters.get(meterId);
    if (meter === undefined || this.closed || meter.polling) return;
    meter.polling = true;
    this.track(
      this.readEvents(meter, this.deps.clock.nowMs())
        .catch((error) => this.pollFailed(meter, error))
        .finally(() => {
          meter.polling = false;
        }),
    );
  }

  /** Seal whatever is committed now, regardless of batch age (shutdown, tests). */
  flush(): void {
    this.flushThrough = this.deps.journal.lastCommitId();
    this.kick();
  }

  /**
   * Resolves when no work (and, unless told otherwise, no publish) is in flight: tests in virtual time.
   * A simulated slow link completes publishes only as virtual time passes: pass `publishes: false`.
   */
  async idle(publishes = true): Promise<void> {
    const waiting = () => (publishes ? [...this.pending, ...this.publishing] : [...this.pending]);
    for (let list = waiting(); list.length > 0; list = waiting()) await Promise.allSettled(list);
  }

  /**
   * Clean shutdown: no new polls, drain polls and commits, save state. Publishes are not awaited (a
   * dead link would hold them forever); unacknowledged batches stay in the outbox for the next start.
   */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    while (this.pending.size > 0) await Promise.allSettled([...this.pending]);
    if (this.failed === null) await this.saveState();
    // From here the shell closes the journal: nothing may start on it any more. A late ack is ignored
    // (its batch stays in the outbox, is resent after the next start and acked again).
    this.drained = true;
    this.counters.commitState = "CLOSED";
  }

  get fatalError(): Error | null {
    return this.failed;
  }

  // ───────────────────────────── collect + validate ─────────────────────────────

  private startDuePolls(now: number): void {
    if (this.commitQueue.length >= COMMIT_QUEUE_RECORDS_MAX) return;
    const backlog = this.backlogRecords();
    const count = this.meterOrder.length;
    // Round-robin from where the last scan stopped, so a concurrency bound never starves the tail.
    for (let step = 0; step < count; step++) {
      if (this.pollsRunning >= this.pollConcurrencyMax) break;
      const index = (this.pollScanFrom + step) % count;
      const meter = this.meterOrder[index] as MeterState;
      if (meter.polling || (meter.nextPollMs > now && !meter.catchUp)) continue;
      if (backlog >= this.backlogHard) {
        // Polling pauses; the meter keeps its profile and the next poll backfills from the cursor.
        this.counters.pollDeferredCount++;
        meter.nextPollMs = now + this.config.pollIntervalMs;
        meter.catchUp = false;
        continue;
      }
      meter.polling = true;
      meter.catchUp = false;
      meter.nextPollMs = now + this.pollIntervalMs(backlog);
      this.pollsRunning++;
      this.pollScanFrom = (index + 1) % count;
      this.track(
        this.poll(meter, now).finally(() => {
          meter.polling = false;
          this.pollsRunning--;
          // A freed slot goes to the next due meter now, not at the next tick.
          if (!this.closed) this.startDuePolls(this.deps.clock.nowMs());
        }),
      );
    }
  }

  private pollIntervalMs(backlog: number): number {
    if (backlog <= this.backlogSoft) return this.config.pollIntervalMs;
    const share = Math.min(1, (backlog - this.backlogSoft) / (this.backlogHard - this.backlogSoft));
    return Math.round(this.config.pollIntervalMs * (1 + (POLL_SLOWDOWN_FACTOR_MAX - 1) * share));
  }

  private async poll(meter: MeterState, startedMs: number): Promise<void> {
    const marker = this.counters.marker(meter.config.meterId);
    marker.polls++;
    marker.lastPollMs = this.time.nowMs(startedMs);
    try {
      const reading = await this.deps.reader.readRegisters(meter.config.meterId);
      await this.collect(meter, reading);
      if (!this.uplink.alertQueueFull) await this.readEvents(meter, this.deps.clock.nowMs());
      else this.uplink.counters.alertDeferred++;
      marker.ok++;
      marker.lastOkMs = this.time.nowMs(this.deps.clock.nowMs());
      marker.consecutiveErrors = 0;
    } catch (error) {
      this.pollFailed(meter, error);
    }
    this.kick();
  }

  private pollFailed(meter: MeterState, error: unknown): void {
    if (this.closed && !isConcentratorError(error)) return;
    const kind: IfaceErrorKind = !isConcentratorError(error)
      ? "protocol"
      : error.code === "IFACE_TIMEOUT"
        ? "timeout"
        : error.code === "IFACE_FRAME_CRC"
          ? "frame_crc"
          : error.code === "IFACE_UNREACHABLE"
            ? "unreachable"
            : error.code === "BAD_READING"
              ? "bad_reading"
              : "protocol";
    this.counters.ifaceError(meter.config.meterId, meter.config.port, kind);
    this.counters.marker(meter.config.meterId).consecutiveErrors++;
  }

  /** Validate one newest reading, backfilling from the meter's profile when seq jumped. */
  private async collect(meter: MeterState, newest: MeterReading): Promise<void> {
    const meterId = meter.config.meterId;
    const newestProblem = readingProblem(newest);
    if (newestProblem !== null) {
      this.rememberRejected(meter, newest.seq);
      throw new ConcentratorError("BAD_READING", newestProblem, meterId);
    }
    const known = meter.queuedThrough;
    if (known === 0) {
      // A meter's history before its first poll is not collected: its first reading starts the axis.
      this.enqueue(meter, newest, true);
      return;
    }
    if (newest.seq <= known) {
      this.counters.duplicateDroppedCount++;
      return;
    }
    let expected = known + 1;
    if (newest.seq > expected) {
      const wanted = Math.min(newest.seq - expected, BACKFILL_RECORDS_MAX);
      const profile = await this.deps.reader.readProfile(meterId, expected, wanted);
      const before = expected;
      for (const reading of profile.slice(0, BACKFILL_RECORDS_MAX)) {
        if (reading.seq < expected || reading.seq >= newest.seq) {
          if (reading.seq < expected) this.counters.duplicateDroppedCount++;
          continue; // out of the asked range: the newest is handled below, older ones are duplicates
        }
        const problem = readingProblem(reading);
        if (problem !== null) {
          this.rememberRejected(meter, reading.seq);
          this.counters.ifaceError(meterId, meter.config.port, "bad_reading");
          continue;
        }
        if (reading.seq > expected) this.seqGap(meter, expected, reading.seq - 1);
        this.enqueue(meter, reading, false);
        expected = reading.seq + 1;
      }
      if (newest.seq - known > BACKFILL_RECORDS_MAX && expected < newest.seq && expected > before) {
        // More left on the meter than one poll may carry: come back at once for the next chunk.
        meter.catchUp = true;
        return;
      }
      if (newest.seq > expected) this.seqGap(meter, expected, newest.seq - 1);
    }
    this.enqueue(meter, newest, true);
  }

  private rememberRejected(meter: MeterState, seq: number): void {
    if (meter.rejectedSeqs.size >= REJECTED_SEQS_MAX) meter.rejectedSeqs.clear();
    meter.rejectedSeqs.add(seq);
  }

  /** seed 003 H2-4: "SEQ gap + COMMIT continuous → capture did not happen or was rejected before commit". */
  private seqGap(meter: MeterState, seqFirst: number, seqLast: number): void {
    let rejected = false;
    for (let seq = seqFirst; seq <= seqLast && !rejected; seq++) rejected = meter.rejectedSeqs.has(seq);
    const cause: SeqGapCause = rejected ? "REJECTED" : "NOT_COLLECTED";
    this.counters.seqGaps.push({
      meterId: meter.config.meterId,
      seqFirst,
      seqLast,
      cause,
      atMs: this.time.nowMs(this.deps.clock.nowMs()),
    });
    this.counters.seqGapRecords += seqLast - seqFirst + 1;
    meter.queuedThrough = seqLast;
  }

  /** `live`: the meter's newest reading (its capture time should be near now); backfill is older by nature. */
  private enqueue(meter: MeterState, reading: MeterReading, live: boolean): void {
    assert.ok(reading.seq > meter.queuedThrough, "seq strictly increasing per meter");
    const now = this.deps.clock.nowMs();
    if (meter.lastTimestampMs !== null && reading.timestampMs < meter.lastTimestampMs) {
      this.counters.meterTimeBackwardsCount++;
    }
    meter.lastTimestampMs = reading.timestampMs;
    // A profile's newest entry may be a whole capture period old: its own clock, when read, is the measure.
    const meterClockMs = reading.meterClockMs ?? reading.timestampMs;
    if (live && Math.abs(meterClockMs - this.time.nowMs(now)) > METER_CLOCK_SKEW_MAX_MS) {
      this.counters.meterClockSkewCount++;
    }
    meter.queuedThrough = reading.seq;
    this.commitQueue.push({ meter, reading, collectedMs: now });
    this.counters.queueDepthMax = Math.max(this.counters.queueDepthMax, this.commitQueue.length);
  }

  private async readEvents(meter: MeterState, nowMs: number): Promise<void> {
    const meterId = meter.config.meterId;
    const from = Math.max(meter.eventCursor, this.uplink.alertQueuedThrough(meterId) ?? 0) + 1;
    const records = await this.deps.reader.readEvents(meterId, from, EVENTS_PER_POLL_MAX);
    let expected = from;
    for (const bytes of records.slice(0, EVENTS_PER_POLL_MAX)) {
      let seq: number;
      try {
        const record = decodeEventRecord(bytes);
        if (record.meterId !== meterId || record.seq < expected) {
          throw new ConcentratorError(
            "IFACE_PROTOCOL",
            `event ${record.meterId} seq ${record.seq}, expected ${meterId} seq ≥ ${expected}`,
          );
        }
        seq = record.seq;
      } catch {
        // A corrupted or foreign record: count it and stop here; the next poll reads it again.
        this.counters.ifaceError(meterId, meter.config.port, "bad_event");
        break;
      }
      const payload = encodeAlert({
        dcuId: this.config.dcuId,
        meterId,
        record: bytes,
        forwardedMs: this.time.nowMs(nowMs),
        timeQuality: this.time.quality(nowMs),
      });
      if (!this.uplink.enqueueAlert(meterId, seq, payload, nowMs)) break;
      expected = seq + 1;
    }
    this.kick();
  }

  // ───────────────────────────── commit ─────────────────────────────

  private kick(): void {
    if (this.failed !== null || this.drained) return;
    if (!this.committing && this.commitQueue.length > 0) {
      this.committing = true;
      this.track(this.commitLoop().finally(() => (this.committing = false)));
    }
    if (!this.sealing && this.shouldSeal()) {
      this.sealing = true;
      this.track(this.sealLoop().finally(() => (this.sealing = false)));
    }
    if (!this.releasing && this.uplink.releasablePrefix().length > 0) {
      this.releasing = true;
      this.track(this.releaseLoop().finally(() => (this.releasing = false)));
    }
    this.pump();
  }

  /**
   * Group commit. The journal assigns commit_id in append order; this loop is the only appender, so the
   * next id is known before the append and is stamped into the record (and its CRC) first — the bytes
   * in the journal are exactly the bytes the batch will carry (README "commit_id").
   */
  private async commitLoop(): Promise<void> {
    const { journal, clock } = this.deps;
    while (this.commitQueue.length > 0 && this.failed === null) {
      const group = this.commitQueue.splice(0, COMMIT_GROUP_RECORDS_MAX);
      this.counters.commitState = "COMMITTING";
      const now = clock.nowMs();
      const timeQuality: TimeQuality = this.time.quality(now); // seed 003 H2-8: commit freezes time_quality
      const first = journal.nextCommitId();
      const records: ReadingRecord[] = group.map((item, i) =>
        encodeReadingRecord({
          timestampMs: item.reading.timestampMs,
          meterId: item.meter.config.meterId,
          values: item.reading.values,
          seq: item.reading.seq,
          commitId: first + i,
          timeQuality,
        }),
      );
      let result: { firstCommitId: number; lastCommitId: number; epoch: number };
      try {
        result = await journal.appendMany(records.map((r) => r.bytes));
      } catch (error) {
        // Nothing in this group was acknowledged to anyone: the cursors did not move, so after the
        // restart the shell performs, the meters are read again from the last durable seq.
        this.counters.writeFailCount++;
        this.counters.commitState = "STALLED";
        this.fail(error as Error);
        return;
      }
      if (result.firstCommitId !== first || result.lastCommitId !== first + group.length - 1) {
        this.counters.commitState = "STALLED";
        this.fail(
          new ConcentratorError(
            "JOURNAL_MISMATCH",
            `journal gave commit_id ${result.firstCommitId}..${result.lastCommitId} to records stamped ${first}..${first + group.length - 1}`,
          ),
        );
        return;
      }
      const durableMs = clock.nowMs();
      for (const item of group) {
        // "Ack" of the pipeline: the meter's cursor moves only after the durable commit.
        if (item.reading.seq > item.meter.cursor) item.meter.cursor = item.reading.seq;
        this.counters.commitLatencyMs.push(durableMs - item.collectedMs);
      }
      this.counters.recordsCommitted += group.length;
      this.counters.timeQualityDistribution[timeQuality] += group.length;
      if (this.oldestUnbatchedMs === null) this.oldestUnbatchedMs = now;
      this.counters.commitState = "IDLE";
      this.kick();
    }
  }

  // ───────────────────────────── batch ─────────────────────────────

  private sealedThrough(): number {
    return Math.max(this.uplink.sealedThrough ?? this.deps.journal.releasedThrough(), this.skippedThrough);
  }

  private unbatchedRecords(): number {
    return Math.max(0, this.deps.journal.lastCommitId() - this.sealedThrough());
  }

  private shouldSeal(): boolean {
    if (this.uplink.outboxFull) return false;
    const unbatched = this.unbatchedRecords();
    if (unbatched === 0) return false;
    if (unbatched >= this.batchRecordsMax || this.sealedThrough() < this.flushThrough) return true;
    const now = this.deps.clock.nowMs();
    return this.oldestUnbatchedMs !== null && now - this.oldestUnbatchedMs >= this.batchAgeMaxMs;
  }

  private async sealLoop(): Promise<void> {
    const { journal, store, secureElement, clock } = this.deps;
    while (this.shouldSeal() && this.failed === null) {
      const from = this.sealedThrough() + 1;
      const entries = await journal.readFrom(from, this.batchRecordsMax);
      if (entries.length === 0) break;
      const records: ReadingRecord[] = [];
      const meters = new Set<string>();
      let expected = from;
      let lastCommitId = from - 1;
      for (const entry of entries) {
        const record = this.decodeCommitted(entry.commitId, entry.payload);
        if (record !== null && !meters.has(record.meterId) && meters.size >= BATCH_METERS_MAX) break;
        if (entry.commitId > expected) {
          // seed 003 H2-11: a commit_id gap is explained only by a recovery epoch, else it is the journal's.
          const acrossEpochs = this.lastEntryEpoch !== null && entry.epoch !== this.lastEntryEpoch;
          this.commitGap(expected, entry.commitId - 1, acrossEpochs ? "EPOCH" : "JOURNAL");
        }
        this.lastEntryEpoch = entry.epoch;
        expected = entry.commitId + 1;
        lastCommitId = entry.commitId;
        if (record === null) continue;
        meters.add(record.meterId);
        records.push(record);
      }
      // Corrupt records are never sent; the sealed mark passes them so they are not re-read (they stay
      // in the journal, in failing_samples and in commit_id_gap with cause RECORD_CRC_FAIL).
      this.skippedThrough = Math.max(this.skippedThrough, lastCommitId);
      if (records.length === 0) continue;
      const now = clock.nowMs();
      const batch = sealBatch(
        {
          batchId: this.lastBatchId + 1,
          dcuId: this.config.dcuId,
          epoch: journal.epoch,
          createdMs: this.time.nowMs(now),
          records,
          prevBatchHash: this.chainHead,
        },
        (message) => secureElement.sign("batch_sign", message),
      );
      const bytes = encodeBatch(batch);
      await store.putBatch(batch.header.batchId, bytes);
      // Durable in the outbox: only now may it be published.
      this.uplink.add(outboxEntry(batch, bytes));
      this.lastBatchId = batch.header.batchId;
      this.chainHead = batch.header.batchHash;
      this.oldestUnbatchedMs = this.unbatchedRecords() > 0 ? now : null;
      this.pump();
    }
  }

  private commitGap(first: number, last: number, cause: "EPOCH" | "JOURNAL" | "RECORD_CRC_FAIL"): void {
    this.counters.commitGaps.push({
      commitIdFirst: first,
      commitIdLast: last,
      cause,
      epoch: this.deps.journal.epoch,
      atMs: this.time.nowMs(this.deps.clock.nowMs()),
    });
  }

  /** Decodes a committed entry; a record that fails its CRC is kept as a failing sample, never sent. */
  private decodeCommitted(commitId: number, payload: Uint8Array): ReadingRecord | null {
    try {
      const record = decodeReadingRecord(payload);
      if (record.commitId !== commitId) {
        throw new ConcentratorError(
          "JOURNAL_MISMATCH",
          `record says commit_id ${record.commitId}`,
          `commit_id ${commitId}`,
        );
      }
      return record;
    } catch (error) {
      this.counters.recordCrcFailCount++;
      this.counters.failingSamples.push({
        commitId,
        hex: toHex(payload.subarray(0, 512)),
        reason: (error as Error).message,
      });
      this.commitGap(commitId, commitId, "RECORD_CRC_FAIL");
      return null;
    }
  }

  // ───────────────────────────── uplink ─────────────────────────────

  private pump(): void {
    if (this.failed !== null) return;
    const now = this.deps.clock.nowMs();
    for (let alert = this.uplink.nextAlert(now); alert !== null; alert = this.uplink.nextAlert(now)) {
      this.publishAlert(alert);
    }
    for (let batch = this.uplink.nextBatch(now); batch !== null; batch = this.uplink.nextBatch(now)) {
      this.publishBatch(batch);
    }
  }

  private publishAlert(alert: PendingAlert): void {
    const topic = alertsTopic(this.config.dcuId);
    this.trackPublish(
      this.deps.transport.publish(topic, alert.payload, { qos: 1, retain: false }).then(
        () => {
          const cursor = this.uplink.onAlertPublished(alert, this.deps.clock.nowMs());
          const meter = this.meters.get(alert.meterId);
          if (cursor !== null && meter !== undefined && cursor > meter.eventCursor) {
            meter.eventCursor = cursor;
            this.stateDirty = true;
          }
          this.pump();
        },
        () => {
          this.uplink.onAlertPublishFailed(alert, this.deps.clock.nowMs());
        },
      ),
    );
  }

  private publishBatch(batch: OutboxBatch): void {
    const topic = batchesTopic(this.config.dcuId);
    this.trackPublish(
      this.deps.transport.publish(topic, batch.bytes, { qos: 1, retain: false }).then(
        () => this.uplink.onBatchPublished(batch.batchId, this.deps.clock.nowMs()),
        () => this.uplink.onBatchPublishFailed(batch.batchId, this.deps.clock.nowMs()),
      ),
    );
  }

  private publishStatus(): void {
    const payload = new TextEncoder().encode(JSON.stringify(this.status()));
    this.trackPublish(
      this.deps.transport
        .publish(statusTopic(this.config.dcuId), payload, { qos: 1, retain: true })
        .catch(() => {
          // Status is evidence about the link itself; the next period publishes a fresh one.
        }),
    );
  }

  /**
   * Reconcile: the acked prefix is released from the journal. Order matters for crash safety: state
   * (cursors, chain head) first, then the journal release, then the outbox drop — a crash between any
   * two steps is finished by recovery, never undone.
   */
  private async releaseLoop(): Promise<void> {
    const { journal, store } = this.deps;
    for (
      let prefix = this.uplink.releasablePrefix();
      prefix.length > 0;
      prefix = this.uplink.releasablePrefix()
    ) {
      const last = prefix[prefix.length - 1] as OutboxBatch;
      this.lastAckedBatchId = last.batchId;
      this.ackedChainHead = last.batchHash;
      await this.saveState();
      await journal.releaseThrough(last.commitIdLast);
      await store.dropBatchesThrough(last.batchId);
      this.uplink.dropThrough(last.batchId);
    }
    this.kick();
  }

  /** State saves are serialized so an older snapshot never lands after a newer one. */
  private saveState(): Promise<void> {
    const next = this.saveChain.then(() => this.writeState());
    this.saveChain = next.catch(() => {});
    return next;
  }

  private async writeState(): Promise<void> {
    const readingCursors: Record<string, number> = Object.fromEntries(this.retainedReadingCursors);
    const eventCursors: Record<string, number> = Object.fromEntries(this.retainedEventCursors);
    for (const meter of this.meterOrder) {
      if (meter.cursor > 0) readingCursors[meter.config.meterId] = meter.cursor;
      if (meter.eventCursor > 0) eventCursors[meter.config.meterId] = meter.eventCursor;
    }
    const state: DcuPersistentState = {
      lastAckedBatchId: this.lastAckedBatchId,
      chainHeadHash: this.ackedChainHead,
      readingCursors,
      eventCursors,
      lifetime: { ...this.lifetime },
    };
    this.stateDirty = false;
    this.lastStateSaveMs = this.deps.clock.nowMs();
    await this.deps.store.saveState(state);
  }

  // ───────────────────────────── evidence ─────────────────────────────

  /** The five evidence packs of seed 003 H2-10 plus the failure-mode router's must-logs, as JSON. */
  packs(): Record<string, unknown> {
    const now = this.deps.clock.nowMs();
    const c = this.counters;
    const t = this.time.counters;
    const u = this.uplink.counters;
    const batches = this.uplink.batches();
    const firstOut = batches[0];
    const lastOut = batches[batches.length - 1];
    let metersOnline = 0;
    const pollMarker: Record<string, unknown> = {};
    for (const meter of this.meterOrder) {
      const marker = c.pollMarker.get(meter.config.meterId);
      const online =
        marker !== undefined && marker.ok > 0 && marker.consecutiveErrors < METER_OFFLINE_AFTER_ERRORS;
      if (online) metersOnline++;
      pollMarker[meter.config.meterId] = {
        polls: marker?.polls ?? 0,
        ok: marker?.ok ?? 0,
        last_poll_ms: marker?.lastPollMs ?? null,
        last_ok_ms: marker?.lastOkMs ?? null,
        online,
        seq_committed: meter.cursor,
        event_seq_forwarded: meter.eventCursor,
      };
    }
    return {
      format: "amiproof-dcu-evidence",
      version: 1,
      dcu_id: this.config.dcuId,
      at_ms: this.time.nowMs(now),
      time_quality: this.time.quality(now),
      power: {
        vbat_min_mv: c.vbatMinMv,
        vbat_droop_cnt: c.vbatDroopCount,
        uvlo_cnt: c.uvloCount,
        brownout_log_cnt: c.brownoutLogCount,
        reset_reason: c.resetReason,
        unclean_restart_cnt: this.lifetime.unclean_restart_cnt ?? 0,
      },
      interface: {
        iface_err_by_meter: Object.fromEntries(c.ifaceErrByMeter),
        port_err_cnt: Object.fromEntries(c.portErrCount),
        frame_crc_fail: c.frameCrcFail,
        poll_marker: pollMarker,
        meters_online: metersOnline,
        meters_configured: this.meterOrder.length,
        poll_deferred_cnt: c.pollDeferredCount,
        ...(this.deps.interfaceEvidence === undefined ? {} : { readers: this.deps.interfaceEvidence() }),
      },
      commit: {
        commit_state: c.commitState,
        epoch: this.deps.journal.epoch,
        commit_id_last: this.deps.journal.lastCommitId(),
        commit_id_released: this.deps.journal.releasedThrough(),
        commit_id_gap: {
          count: c.commitGaps.count,
          recent: c.commitGaps.entries.map((g) => ({
            commit_id_first: g.commitIdFirst,
            commit_id_last: g.commitIdLast,
            cause: g.cause,
            epoch: g.epoch,
            at_ms: g.atMs,
          })),
        },
        commit_latency_p99_ms: c.commitLatencyMs.percentile(0.99),
        records_committed: c.recordsCommitted,
        write_fail_cnt: c.writeFailCount,
        record_crc_fail_cnt: c.recordCrcFailCount,
        failing_samples: c.failingSamples.entries.slice(-FAILING_SAMPLES_IN_STATUS_MAX).map((s) => ({
          commit_id: s.commitId,
          hex: s.hex,
          reason: s.reason,
        })),
        seq_gap: {
          count: c.seqGaps.count,
          records_missing: c.seqGapRecords,
          recent: c.seqGaps.entries.map((g) => ({
            meter_id: g.meterId,
            seq_first: g.seqFirst,
            seq_last: g.seqLast,
            cause: g.cause,
            at_ms: g.atMs,
          })),
        },
        duplicate_dropped_cnt: c.duplicateDroppedCount,
        queue_depth: this.commitQueue.length,
        queue_depth_max: c.queueDepthMax,
        backlog_records: this.backlogRecords(),
        unbatched_records: this.unbatchedRecords(),
        journal: this.deps.journal.metrics?.() ?? null,
        replay_summary: {
          reset_reason: c.resetReason,
          replayed_records: c.recoveryReplayedRecords,
          outbox_batches: c.recoveryOutboxBatches,
          acked_on_restart: c.recoveryAckedOnRestart,
        },
      },
      uplink: {
        link_state: this.uplink.connected ? "UP" : "DOWN",
        link_flap_cnt: u.linkFlaps,
        reconnect_attempts: u.reconnectAttempts,
        tx_retry_cnt: u.batchRetries + u.alertRetries,
        retry_histogram: this.uplink
          .retryHistogram()
          .map((w) => ({ window_start_ms: w.windowStartMs, ...w.byCause })),
        batches_sealed: u.batchesSealed,
        batches_published: u.batchesPublished,
        batches_acked: u.batchesAcked,
        records_acked: u.recordsAcked,
        batches_rejected: { ...u.rejectedByReason },
        ack_stale_cnt: u.ackStale,
        ack_mismatch_cnt: u.ackMismatch,
        ack_bad_cnt: u.ackBad,
        outbox_batches: batches.length,
        inflight_batches: this.uplink.inflight(),
        batch_range_marker: {
          last_sealed_batch_id: this.lastBatchId,
          last_acked_batch_id: this.lastAckedBatchId,
          outbox_commit_id_first: firstOut?.commitIdFirst ?? null,
          outbox_commit_id_last: lastOut?.commitIdLast ?? null,
        },
        reconcile_summary: {
          acked_through_commit_id: this.deps.journal.releasedThrough(),
          committed_through_commit_id: this.deps.journal.lastCommitId(),
          sealed_through_commit_id: this.sealedThrough(),
        },
        alerts_forwarded: u.alertsForwarded,
        alerts_pending: this.uplink.alertsPending(),
        alert_retries: u.alertRetries,
        alert_deferred_cnt: u.alertDeferred,
        alert_latency_p99_ms: this.uplink.alertLatencyP99Ms(),
      },
      time: {
        time_quality: this.time.quality(now),
        time_quality_distribution: { ...c.timeQualityDistribution },
        last_sync_age_ms: this.time.lastSyncAgeMs(now),
        sync_acquired_cnt: t.syncAcquiredCount,
        sync_lost_cnt: t.syncLostCount,
        holdover_enter_cnt: t.holdoverEnterCount,
        holdover_expired_cnt: t.holdoverExpiredCount,
        step_adjust_cnt: t.stepAdjustCount,
        slew_adjust_cnt: t.slewAdjustCount,
        time_adjust_event: this.time.adjustEvents.map((e) => ({
          at_ms: e.atMs,
          kind: e.kind,
          offset_ms: e.offsetMs,
          magnitude_bucket: e.magnitudeBucket,
          reason: e.reason,
          source: e.source,
        })),
        step_adjust_event: this.time.adjustEvents
          .filter((e) => e.kind === "STEP")
          .map((e) => ({ at_ms: e.atMs, offset_ms: e.offsetMs, magnitude_bucket: e.magnitudeBucket })),
        transitions: this.time.transitions.map((x) => ({
          at_ms: x.atMs,
          from: x.from,
          to: x.to,
          reason: x.reason,
        })),
        bad_time_cnt: t.badTimeCount,
        rtc_backwards_cnt: t.rtcBackwardsCount,
        meter_clock_skew_cnt: c.meterClockSkewCount,
        meter_time_backwards_cnt: c.meterTimeBackwardsCount,
      },
    };
  }

  /** The retained status on ami/<dcu>/status: identity, batch key and the evidence packs. */
  status(): Record<string, unknown> {
    return {
      format: "amiproof-dcu-status",
      version: 1,
      dcu_id: this.config.dcuId,
      batch_sign_public_key: toHex(this.batchPublicKey),
      packs: this.packs(),
    };
  }

  /** The unacknowledged batch chain as an evidence bundle (verifiable by `amiproof verify`). */
  evidenceBundle(): EvidenceBundle {
    const key = bundleKey(this.config.dcuId, "batch_sign", this.batchPublicKey);
    return {
      keys: [key],
      meterLogs: [],
      batchChains: [
        {
          dcuId: this.config.dcuId,
          keyId: key.keyId,
          batches: this.uplink.batches().map((b) => decodeBatch(b.bytes)),
        },
      ],
    };
  }

  // ───────────────────────────── plumbing ─────────────────────────────

  private track(work: Promise<void>): void {
    const tracked = work.catch((error: unknown) => this.fail(error as Error));
    this.pending.add(tracked);
    void tracked.finally(() => this.pending.delete(tracked));
  }

  private trackPublish(work: Promise<void>): void {
    const tracked = work.catch((error: unknown) => this.fail(error as Error));
    this.publishing.add(tracked);
    void tracked.finally(() => this.publishing.delete(tracked));
  }

  private fail(error: Error): void {
    if (this.failed !== null) return;
    this.failed = error;
    this.closed = true;
    this.deps.onFatal?.(error);
  }
}

function outboxEntry(batch: Batch, bytes: Uint8Array) {
  return {
    batchId: batch.header.batchId,
    commitIdFirst: batch.header.commitIdFirst,
    commitIdLast: batch.header.commitIdLast,
    count: batch.header.count,
    bytes,
    batchHash: batch.header.batchHash,
  };
}

/** Why a reading cannot become a record (null when it can): the record schema's own bounds. */
export function readingProblem(reading: MeterReading): string | null {
  if (!Number.isInteger(reading.seq) || reading.seq < 1 || reading.seq > 0xffff_ffff) {
    return `seq ${reading.seq} outside 1..2^32-1`;
  }
  if (!Number.isSafeInteger(reading.timestampMs))
    return `timestamp ${reading.timestampMs} is not an integer ms`;
  if (
    !Array.isArray(reading.values) ||
    reading.values.length < 1 ||
    reading.values.length > READING_VALUES_MAX
  ) {
    return `a reading carries 1..${READING_VALUES_MAX} values`;
  }
  for (const v of reading.values) {
    if (v.obis.length !== 6 || v.obis.some((g: number) => !Number.isInteger(g) || g < 0 || g > 255))
      return "bad OBIS code";
    if (!Number.isSafeInteger(v.value)) return `value ${v.value} is not a safe integer`;
    if (!Number.isInteger(v.scaler) || v.scaler < -128 || v.scaler > 127)
      return `scaler ${v.scaler} outside i8`;
    if (!Number.isInteger(v.unit) || v.unit < 0 || v.unit > 255) return `unit ${v.unit} outside u8`;
  }
  return null;
}
