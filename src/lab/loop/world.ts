import {
  type CommitJournal,
  Concentrator,
  type ConcentratorConfig,
  type DcuPersistentState,
  type DcuStore,
  MemoryDcuStore,
  type MeterReader,
  SimMeterFleet,
} from "../../concentrator/index.ts";
import {
  type AckAccepted,
  acksTopic,
  bytesEqual,
  decodeAck,
  encodeTimeMessage,
  Journal,
  type JournalEntry,
  MemoryJournalStorage,
  MemorySecureElement,
  type Rng,
  timeTopic,
} from "../../evidence/index.ts";
import {
  AlertHub,
  AlertLane,
  type AlertOutcome,
  BatchIngest,
  type BatchRejection,
  HeadendMetrics,
  type HeadendStore,
  type IngestOutcome,
  KeyRegistry,
  openStore,
  SILENT_LOG,
} from "../../headend/index.ts";
import { Simulation } from "../engine.ts";
import type { ScenarioContext } from "../scenario.ts";
import { FaultyReader } from "./faulty-reader.ts";
import { type LinkModel, SimLink } from "./link.ts";

// The in-loop harness: the real concentrator core (src/concentrator) and the real head-end core
// (src/headend: BatchIngest, AlertLane, KeyRegistry over an in-memory SQLite HeadendStore) wired through
// a simulated backhaul, in virtual time, from one seed. Meters are the concentrator's SimMeterFleet
// behind a FaultyReader (interface faults). Scenarios schedule faults on `sim` and read the evidence
// the roles produced; the predicates (predicates.ts) judge it. Nothing here decides a predicate.

/** Bound on the acks the lab keeps for reconciliation. */
const ACKS_KEPT_MAX = 1_000_000;
/** Messages an eavesdropper keeps for replay. */
const CAPTURED_MAX = 256;
/** How long the settling phase may run after the faults end before the run is declared stuck. */
export const SETTLE_MS_MAX = 4 * 3_600_000;

export interface LoopOptions {
  readonly ctx: ScenarioContext;
  readonly startMs: number;
  readonly dcuId?: string;
  /** A meter captures a reading every this many ms (the load-profile period). */
  readonly readingIntervalMs?: number;
  readonly pollIntervalMs?: number;
  /** Largest step of the run loop (events and link deliveries also wake it). */
  readonly stepMs?: number;
  readonly link?: Partial<LinkModel>;
  readonly config?: Partial<ConcentratorConfig>;
  /** Readings a meter keeps: older ones become SEQ_GAPs when finally read. */
  readonly profileEntriesMax?: number;
  /** Number of physical ports the meters are spread over. */
  readonly ports?: number;
  /** Concentrator RTC drift, parts per million. */
  readonly rtcDriftPpm?: number;
  /** Head-end time messages every this many ms (null: none). */
  readonly timeSyncPeriodMs?: number | null;
  /** Probability that one head-end store commit fails (disk full, I/O error). */
  readonly hesCommitFailRate?: number;
  /** Journal checkpoint cadence (checkpoints are cut points of the storage scenarios). */
  readonly checkpointEveryCommits?: number;
}

/** Everything the journal ever reported durable, across power cuts: the reference of the predicates. */
export class CommitLedger {
  readonly committed = new Map<number, Uint8Array>();
  readonly conflicts: string[] = [];

  note(commitId: number, payload: Uint8Array): void {
    const known = this.committed.get(commitId);
    if (known === undefined) this.committed.set(commitId, payload.slice());
    else if (!bytesEqual(known, payload) && this.conflicts.length < 100)
      this.conflicts.push(`commit_id ${commitId} holds two different records`);
  }
}

/** src/evidence's Journal through the CommitJournal port, noting every durable record in the ledger. */
class LedgerJournal implements CommitJournal {
  constructor(
    readonly inner: Journal,
    private readonly ledger: CommitLedger,
  ) {}
  get epoch(): number {
    return this.inner.epoch;
  }
  nextCommitId(): number {
    return this.inner.nextCommitId();
  }
  lastCommitId(): number {
    return this.inner.lastCommitId();
  }
  releasedThrough(): number {
    return this.inner.releasedThrough();
  }
  metrics(): object {
    return this.inner.metrics();
  }
  async appendMany(payloads: readonly Uint8Array[]) {
    const result = await this.inner.appendMany(payloads);
    for (const [i, payload] of payloads.entries()) this.ledger.note(result.firstCommitId + i, payload);
    return result;
  }
  async readFrom(commitId: number, limit: number): Promise<JournalEntry[]> {
    const entries = await this.inner.readFrom(commitId, limit);
    for (const entry of entries) this.ledger.note(entry.commitId, entry.payload);
    return entries;
  }
  releaseThrough(commitId: number): Promise<void> {
    return this.inner.releaseThrough(commitId);
  }
}

/**
 * The concentrator's side store with the mutation `outbox_durable_before_publish`: a sealed batch is
 * written without its fsync, so it sits in a volatile cache (published all the same) until the next state
 * save, and a power cut loses it. After the restart the concentrator seals those commits again — a new
 * batch under an old batch_id — which the head-end must refuse as equivocation.
 */
class VolatileOutboxStore implements DcuStore {
  private readonly volatile = new Map<number, Uint8Array>();
  constructor(private readonly inner: MemoryDcuStore) {}
  loadState() {
    return this.inner.loadState();
  }
  async saveState(state: DcuPersistentState): Promise<void> {
    for (const [id, bytes] of this.volatile) await this.inner.putBatch(id, bytes);
    this.volatile.clear();
    await this.inner.saveState(state);
  }
  loadOutbox() {
    return this.inner.loadOutbox();
  }
  async putBatch(batchId: number, bytes: Uint8Array): Promise<void> {
    this.volatile.set(batchId, bytes.slice());
  }
  async dropBatchesThrough(batchId: number): Promise<void> {
    for (const id of [...this.volatile.keys()]) if (id <= batchId) this.volatile.delete(id);
    await this.inner.dropBatchesThrough(batchId);
  }
  powerCut(): void {
    this.volatile.clear();
  }
}

const ASYNC_PORT_METHODS = new Set([
  "appendMany",
  "readFrom",
  "releaseThrough",
  "loadState",
  "saveState",
  "loadOutbox",
  "putBatch",
  "dropBatchesThrough",
  "publish",
  "readRegisters",
  "readProfile",
  "readEvents",
]);

/** After a power cut the old process does nothing more: its IO calls never complete. */
function gate<T extends object>(target: T, alive: () => boolean, all = false): T {
  return new Proxy(target, {
    get(object, property, receiver) {
      const value = Reflect.get(object, property, receiver);
      if (typeof value !== "function") return value;
      return (...args: unknown[]) => {
        if (!alive() && (all || ASYNC_PORT_METHODS.has(String(property)))) return new Promise(() => {});
        return (value as (...a: unknown[]) => unknown).apply(object, args);
      };
    },
  });
}

/** A restart the lab performed, with the reason the concentrator was told. */
export interface RestartRecord {
  readonly atMs: number;
  readonly cause: string;
  readonly epochBefore: number;
  epochAfter: number | null;
  /** True time the concentrator was running again. */
  upAtMs: number | null;
}

/** A jump of the concentrator's corrected time that the run loop observed. */
export interface ObservedTimeJump {
  readonly atMs: number;
  readonly jumpMs: number;
  readonly explained: boolean;
}

export class LoopWorld {
  readonly sim: Simulation;
  readonly rng: Rng;
  readonly dcuId: string;
  readonly meterIds: string[];
  readonly storage = new MemoryJournalStorage();
  readonly ledger = new CommitLedger();
  readonly dcuStore = new MemoryDcuStore();
  private readonly volatileOutbox: VolatileOutboxStore | null;
  readonly secureElement: MemorySecureElement;
  readonly fleet: SimMeterFleet;
  readonly reader: FaultyReader;
  readonly link: SimLink;
  readonly metrics = new HeadendMetrics();
  readonly hub = new AlertHub();
  readonly registry: KeyRegistry;
  readonly ingest: BatchIngest;
  readonly lane: AlertLane;
  readonly store: HeadendStore;
  /** Acks the concentrator received (accepted ranges), in arrival order. */
  readonly acksReceived: AckAccepted[] = [];
  readonly ingestOutcomes: IngestOutcome[] = [];
  readonly rejections: BatchRejection[] = [];
  readonly alertOutcomes: AlertOutcome[] = [];
  readonly restarts: RestartRecord[] = [];
  readonly timeJumps: ObservedTimeJump[] = [];
  readonly fatalErrors: string[] = [];
  /** What crossed the link toward the head-end, as an eavesdropper keeps it (bounded). */
  readonly capturedBatches: Uint8Array[] = [];
  readonly capturedAlerts: Uint8Array[] = [];
  /** The concentrator's evidence packs as they stood at each power cut (its counters die with it). */
  readonly packsAtCut: Record<string, unknown>[] = [];
  /** Extra RTC offset a scenario can step (an RTC glitch), ms. */
  rtcOffsetMs = 0;
  /** Time source error: the head-end's time messages are off by this many ms (a bad NTP upstream). */
  timeSourceErrorMs = 0;
  /** false: the head-end sends no time messages (time source removed). */
  timeSourceUp = true;
  /** Highest outbox depth seen (bounded-buffering predicate). */
  outboxMax = 0;
  hesCommitFaults = 0;
  /** When the concentrator comes back after the current power cut (null while it is up). */
  restartAtMs: number | null = null;
  /** The meters stop capturing at this true time (the settling phase). */
  meterClockStopMs = Number.POSITIVE_INFINITY;
  dcu!: Concentrator;
  private journal!: LedgerJournal;
  private generation = 0;
  private connected = false;
  private down = false;
  private readonly work: (() => Promise<void>)[] = [];
  private readonly portCount: number;
  private readonly stepMs: number;
  private readonly driftPpm: number;
  private lastCorrectedMs: number | null = null;
  private lastStepCount = 0;
  private hesCommitFailRate: number;
  private readonly hesRng: Rng;

  private constructor(
    readonly options: LoopOptions,
    store: HeadendStore,
  ) {
    const ctx = options.ctx;
    this.sim = new Simulation(ctx.seed, options.startMs);
    this.rng = ctx.rng.fork("loop");
    this.hesRng = this.rng.fork("headend-store");
    this.dcuId = options.dcuId ?? "DCU-LAB";
    this.stepMs = options.stepMs ?? 1_000;
    this.driftPpm = options.rtcDriftPpm ?? 0;
    this.portCount = options.ports ?? 4;
    this.volatileOutbox = ctx.mutations.has("outbox_durable_before_publish")
      ? new VolatileOutboxStore(this.dcuStore)
      : null;
    this.hesCommitFailRate = options.hesCommitFailRate ?? 0;
    this.meterIds = Array.from(
      { length: ctx.meters },
      (_, i) => `MTR-${this.dcuId}-${String(i + 1).padStart(5, "0")}`,
    );
    this.secureElement = new MemorySecureElement(this.dcuId, Uint8Array.of(ctx.seed & 0xff, 0xdc));
    const clock = { nowMs: () => this.sim.nowMs };
    // The meters' clock stops at the settling phase: what is judged is everything captured until then.
    const meterClock = { nowMs: () => Math.min(this.sim.nowMs, this.meterClockStopMs) };
    this.fleet = new SimMeterFleet(this.meterIds, meterClock, this.rng.fork("meters"), {
      readingIntervalMs: options.readingIntervalMs ?? 60_000,
      anchorMs: options.startMs - 3_600_000,
      ...(options.profileEntriesMax === undefined ? {} : { profileEntriesMax: options.profileEntriesMax }),
      portOf: (_id, index) => this.portName(index),
      keySeed: Uint8Array.of(ctx.seed & 0xff, 0x4d),
    });
    this.reader = new FaultyReader(this.fleet, this.rng.fork("iface"), clock.nowMs, (id) =>
      this.fleet.portOf(id),
    );
    this.store = store;
    this.registry = new KeyRegistry(store);
    this.link = new SimLink(
      this.rng.fork("link"),
      clock.nowMs,
      (topic, payload) => this.atHeadend(topic, payload),
      (topic, payload) => this.atConcentrator(topic, payload),
      options.link,
    );
    const nowMs = () => this.sim.nowMs;
    this.ingest = new BatchIngest({
      store: this.ingestStore(store),
      registry: this.registry,
      metrics: this.metrics,
      log: SILENT_LOG,
      nowMs,
      publish: async (topic, payload) => this.link.downlink(topic, payload),
      onRejected: (r) => {
        this.rejections.push(r);
        this.lane.onBatchRejected(r);
      },
      onOutcome: (o) => this.ingestOutcomes.push(o),
    });
    this.lane = new AlertLane({
      store,
      registry: this.registry,
      metrics: this.metrics,
      log: SILENT_LOG,
      hub: this.hub,
      nowMs,
      onOutcome: (o) => this.alertOutcomes.push(o),
    });
  }

  /** Builds the world: head-end store and keys provisioned, concentrator opened, link up. */
  static async create(options: LoopOptions): Promise<LoopWorld> {
    const store = await openStore("sqlite::memory:", { nowMs: options.startMs });
    const world = new LoopWorld(options, store);
    await world.registry.registerConcentrator(
      { dcuId: world.dcuId, batchSignPublicKey: world.secureElement.publicKey("batch_sign") },
      options.startMs,
    );
    await world.registry.registerMeters(
      world.meterIds.map((meterId) => ({
        meterId,
        eventSealPublicKey: world.fleet.eventPublicKey(meterId),
        dcuId: world.dcuId,
      })),
      options.startMs,
    );
    await world.open("POWER_ON");
    const period = options.timeSyncPeriodMs === undefined ? 60_000 : options.timeSyncPeriodMs;
    if (period !== null) {
      world.sim.every(period, options.startMs + 1_000, () => {
        if (world.timeSourceUp)
          world.link.downlink(
            timeTopic(world.dcuId),
            encodeTimeMessage({ timeMs: world.sim.nowMs + world.timeSourceErrorMs }),
          );
        return true;
      });
    }
    world.sim.every(10_000, options.startMs + 10_000, () => {
      world.later(() => world.lane.tick());
      return true;
    });
    return world;
  }

  portName(index: number): string {
    return `port-${index % this.portCount}`;
  }

  /** The concentrator's RTC: true time, its drift and any injected glitch. */
  rtcMs(): number {
    const elapsed = this.sim.nowMs - this.options.startMs;
    return Math.round(this.sim.nowMs + (elapsed * this.driftPpm) / 1_000_000 + this.rtcOffsetMs);
  }

  get nowMs(): number {
    return this.sim.nowMs;
  }

  get epoch(): number {
    return this.journal.epoch;
  }

  get concentratorDown(): boolean {
    return this.down;
  }

  setHesCommitFailRate(rate: number): void {
    this.hesCommitFailRate = rate;
  }

  /** Async work a scheduled (synchronous) event needs done, run by the loop in order. */
  later(work: () => Promise<void>): void {
    this.work.push(work);
  }

  // ───────────────────────────── faults ─────────────────────────────

  /** The link drops (partition, broker restart): the concentrator sees it and backs off. */
  linkDown(kind: "partition" | "broker_restart"): void {
    if (kind === "partition") this.link.partition();
    else this.link.brokerRestart();
    if (this.connected && !this.down) {
      this.connected = false;
      this.scheduleReconnect(this.dcu.onLinkDown());
    }
  }

  linkUp(): void {
    this.link.heal();
  }

  /**
   * Power cut of the concentrator at this instant: the process is abandoned mid-flight, the journal keeps
   * a random prefix of what was not durable; after `offMs` it restarts (UNCLEAN_RESTART) and recovers.
   */
  powerCut(cause: string, offMs = 0): void {
    if (this.down) return;
    this.generation++;
    this.down = true;
    this.connected = false;
    this.restarts.push({
      atMs: this.sim.nowMs,
      cause,
      epochBefore: this.journal.epoch,
      epochAfter: null,
      upAtMs: null,
    });
    this.packsAtCut.push(this.dcu.packs());
    this.storage.powerCut(this.rng);
    this.volatileOutbox?.powerCut();
    this.restartAtMs = this.sim.nowMs + offMs;
    this.sim.after(offMs, () => this.later(() => this.restart("UNCLEAN_RESTART")));
  }

  /** A meter raises a sealed event and signals it (push on alarm): the concentrator reads it at once. */
  meterEvent(
    meterId: string,
    type: Parameters<SimMeterFleet["raiseEvent"]>[1],
    level: Parameters<SimMeterFleet["raiseEvent"]>[2],
    snapshot: Parameters<SimMeterFleet["raiseEvent"]>[3] = {},
  ) {
    const record = this.fleet.raiseEvent(meterId, type, level, snapshot);
    if (!this.down) this.dcu.onMeterEventHint(meterId);
    return record;
  }

  /** Power telemetry into the concentrator (seed 003 H2-7 power pack), when it is up. */
  powerSample(sample: Parameters<Concentrator["onPowerSample"]>[0]): void {
    if (!this.down) this.dcu.onPowerSample(sample);
  }

  /** Publishes straight into the head-end's broker, as an attacker on the network would. */
  inject(topic: string, payload: Uint8Array): void {
    const [, dcuId, kind] = topic.split("/");
    if (dcuId === undefined) return;
    if (kind === "batches") this.ingest.submit(dcuId, payload);
    else if (kind === "alerts") this.lane.submit(dcuId, payload);
  }

  /** Arms a storage fault: the journal's writes fail after `bytes` more bytes (power lost mid-write). */
  armStorageCut(bytes: number): void {
    this.storage.failAfterBytes(bytes);
  }

  // ───────────────────────────── running ─────────────────────────────

  /** Runs virtual time to `endMs`, waking at every event, link delivery or `stepMs`. */
  async runUntil(endMs: number, onProgress?: (fraction: number) => void): Promise<void> {
    const startMs = this.sim.nowMs;
    const span = Math.max(1, endMs - startMs);
    let steps = 0;
    while (this.sim.nowMs < endMs) {
      let next = Math.min(this.sim.nowMs + this.stepMs, endMs);
      const event = this.sim.nextEventMs();
      if (event !== null && event > this.sim.nowMs && event < next) next = event;
      const delivery = this.link.nextAtMs();
      if (delivery !== null && delivery > this.sim.nowMs && delivery < next) next = delivery;
      this.sim.runUntil(next);
      await this.step();
      if (onProgress !== undefined && ++steps % 200 === 0) onProgress((this.sim.nowMs - startMs) / span);
    }
  }

  /**
   * Ends the faults' effects: the link heals, the store stops failing, and the loop runs until every
   * committed reading is acknowledged and the meters' newest readings are in (bounded by SETTLE_MS_MAX).
   * Returns false when it did not settle (the predicates then say what is left).
   */
  async settle(): Promise<boolean> {
    this.storage.cancelFailure();
    this.hesCommitFailRate = 0;
    this.link.model.lossRate = 0;
    if (!this.link.up) this.link.heal();
    this.reader.dead.clear();
    this.reader.portCrcRate.clear();
    this.reader.meterCrcRate.clear();
    this.reader.windows.length = 0;
    this.meterClockStopMs = this.sim.nowMs;
    const deadline = this.sim.nowMs + SETTLE_MS_MAX;
    while (this.sim.nowMs < deadline) {
      await this.runUntil(this.sim.nowMs + 5_000);
      if (this.down) continue;
      this.dcu.flush();
      const caughtUp = this.meterIds.every(
        (id) => (this.dcu.meterCursor(id) ?? 0) >= this.fleet.newestSeq(id),
      );
      const drained =
        caughtUp &&
        this.connected &&
        this.dcu.backlogRecords() === 0 &&
        this.dcu.uplink.batches().length === 0 &&
        this.link.queued === 0 &&
        this.ingest.queueDepth === 0;
      if (drained) return true;
    }
    return false;
  }

  private async step(): Promise<void> {
    while (this.work.length > 0) await (this.work.shift() as () => Promise<void>)();
    this.link.pump(this.sim.nowMs);
    if (!this.down) {
      this.dcu.tick();
      this.outboxMax = Math.max(this.outboxMax, this.dcu.uplink.batches().length);
    }
    for (let round = 0; round < 3; round++) {
      if (!this.down) await this.dcu.idle(false);
      await this.ingest.drain();
      await this.lane.drain();
      while (this.work.length > 0) await (this.work.shift() as () => Promise<void>)();
    }
    if (!this.down) {
      const fatal = this.dcu.fatalError;
      if (fatal !== null) {
        // A journal write failed mid-commit (the storage lost power): the board resets.
        this.fatalErrors.push(fatal.message);
        this.powerCut(`fatal: ${fatal.message}`, 0);
        return;
      }
      this.observeTime();
    }
  }

  /** seed 003 H2-8: a jump of the concentrator's time is explained only by a STEP adjust event. */
  private observeTime(): void {
    const rtc = this.rtcMs();
    const corrected = this.dcu.time.nowMs(rtc);
    const steps = this.dcu.time.counters.stepAdjustCount;
    if (this.lastCorrectedMs !== null) {
      const jump = corrected - this.lastCorrectedMs - (this.sim.nowMs - this.lastTrueMs);
      if (Math.abs(jump) >= 1_000) {
        this.timeJumps.push({ atMs: this.sim.nowMs, jumpMs: jump, explained: steps > this.lastStepCount });
      }
    }
    this.lastCorrectedMs = corrected;
    this.lastTrueMs = this.sim.nowMs;
    this.lastStepCount = steps;
  }
  private lastTrueMs = 0;

  private async open(resetReason: string): Promise<void> {
    const generation = this.generation;
    const alive = () => generation === this.generation;
    const inner = await Journal.open({
      storage: gate(this.storage, alive, true),
      clockMs: () => this.sim.nowMs,
      ...(this.options.checkpointEveryCommits === undefined
        ? {}
        : { checkpointEveryCommits: this.options.checkpointEveryCommits }),
    });
    this.journal = new LedgerJournal(inner, this.ledger);
    const readingIntervalMs = this.options.readingIntervalMs ?? 60_000;
    this.dcu = await Concentrator.open(
      {
        dcuId: this.dcuId,
        meters: this.meterIds.map((meterId) => ({ meterId, port: this.fleet.portOf(meterId) })),
        pollIntervalMs: this.options.pollIntervalMs ?? readingIntervalMs,
        ...this.options.config,
      },
      {
        clock: { nowMs: () => this.rtcMs() },
        random: this.rng.fork(`dcu/${generation}`),
        reader: gate(this.reader as MeterReader, alive),
        journal: gate(this.journal as CommitJournal, alive),
        store: gate((this.volatileOutbox ?? this.dcuStore) as DcuStore, alive),
        secureElement: this.secureElement,
        transport: gate(this.link, alive),
        resetReason,
      },
    );
    this.down = false;
    this.lastCorrectedMs = null;
    if (this.link.up) {
      this.connected = true;
      this.dcu.onLinkUp();
    } else {
      this.scheduleReconnect(this.dcu.onLinkDown());
    }
  }

  private async restart(resetReason: string): Promise<void> {
    // The power cut's torn bytes are on the medium; a storage fault armed before it is spent.
    this.storage.cancelFailure();
    await this.open(resetReason);
    this.restartAtMs = null;
    const last = this.restarts[this.restarts.length - 1];
    if (last !== undefined && last.epochAfter === null) {
      last.epochAfter = this.journal.epoch;
      last.upAtMs = this.sim.nowMs;
    }
  }

  private scheduleReconnect(delayMs: number): void {
    const generation = this.generation;
    this.sim.after(Math.max(1, delayMs), () => {
      if (generation !== this.generation || this.down || this.connected) return;
      if (this.link.up) {
        this.connected = true;
        this.dcu.onLinkUp();
      } else {
        this.scheduleReconnect(this.dcu.onLinkDown());
      }
    });
  }

  // ───────────────────────────── the broker's two ends ─────────────────────────────

  private atHeadend(topic: string, payload: Uint8Array): void {
    const [, dcuId, kind] = topic.split("/");
    if (dcuId === undefined) return;
    if (kind === "batches") {
      if (this.capturedBatches.length < CAPTURED_MAX) this.capturedBatches.push(payload);
      this.ingest.submit(dcuId, payload);
    } else if (kind === "alerts") {
      if (this.capturedAlerts.length < CAPTURED_MAX) this.capturedAlerts.push(payload);
      this.lane.submit(dcuId, payload);
    } else if (kind === "status") this.later(() => this.ingest.onStatus(dcuId, payload));
  }

  private atConcentrator(topic: string, payload: Uint8Array): void {
    if (this.down) return;
    if (topic === acksTopic(this.dcuId)) {
      try {
        const ack = decodeAck(payload);
        for (const a of ack.accepted) if (this.acksReceived.length < ACKS_KEPT_MAX) this.acksReceived.push(a);
      } catch {
        // the concentrator counts it (ack_bad_cnt)
      }
    }
    this.dcu.onMessage(topic, payload);
  }

  /**
   * The store the ingest writes through. A failing commit (disk full) throws, so no ack goes out. The
   * mutation `hes_ack_after_commit` switches that safeguard off: the failed commit is reported as done
   * and the ack leaves for data the head-end never stored.
   */
  private ingestStore(store: HeadendStore): HeadendStore {
    const world = this;
    return new Proxy(store, {
      get(target, property, receiver) {
        const value = Reflect.get(target, property, receiver);
        if (property !== "commitBatch" || typeof value !== "function") {
          return typeof value === "function" ? value.bind(target) : value;
        }
        return async (commit: Parameters<HeadendStore["commitBatch"]>[0]) => {
          if (world.hesCommitFailRate > 0 && world.hesRng.chance(world.hesCommitFailRate)) {
            world.hesCommitFaults++;
            if (world.options.ctx.mutations.has("hes_ack_after_commit")) {
              return {
                batchNew: true,
                readingsNew: commit.readings.length,
                readingsDuplicate: 0,
                gapsNew: commit.gaps.length,
                eventsNew: commit.events.length,
              };
            }
            throw new Error("lab: head-end store commit failed (disk full)");
          }
          return (value as HeadendStore["commitBatch"]).call(target, commit);
        };
      },
    });
  }

  async close(): Promise<void> {
    await this.ingest.close();
    await this.lane.close();
    await this.store.close();
  }
}
