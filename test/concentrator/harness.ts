// Test doubles for the concentrator core in virtual time: a clock, a journal with group-commit and
// crash semantics, an in-memory MQTT-like transport and a head-end that verifies and acks every batch.

import {
  acksTopic,
  alertsTopic,
  batchesTopic,
  type CommitJournal,
  Concentrator,
  type ConcentratorConfig,
  decodeAlert,
  encodeAck,
  MemoryDcuStore,
  type PublishOptions,
  SimMeterFleet,
  simMeterIds,
  type UplinkTransport,
} from "../../src/concentrator/index.ts";
import {
  type Batch,
  bytesEqual,
  decodeBatch,
  decodeEventRecord,
  decodeReadingRecord,
  Journal,
  type JournalEntry,
  MemoryJournalStorage,
  MemorySecureElement,
  SeededRandom,
  verifyBatch,
} from "../../src/evidence/index.ts";

export class FakeClock {
  constructor(public now: number) {}
  nowMs(): number {
    return this.now;
  }
  advance(ms: number): void {
    this.now += ms;
  }
}

/** What the journal ever reported durable, across power cuts: the reference of the crash checks. */
export class CommitLedger {
  readonly committed = new Map<number, Uint8Array>();
  readonly conflicts: string[] = [];

  note(commitId: number, payload: Uint8Array): void {
    const known = this.committed.get(commitId);
    if (known === undefined) this.committed.set(commitId, payload.slice());
    else if (!bytesEqual(known, payload))
      this.conflicts.push(`commit_id ${commitId} holds two different records`);
  }
}

/**
 * src/evidence's Journal (over MemoryJournalStorage) seen through the CommitJournal port, noting every
 * durable record in the ledger: acknowledged group commits, and whatever recovery finds when read.
 * `corruptOnRead` flips a byte of a record on its way out (storage readback / RAM corruption).
 */
export class TrackedJournal implements CommitJournal {
  readonly corruptOnRead = new Set<number>();

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
    return entries.map((entry) => {
      this.ledger.note(entry.commitId, entry.payload);
      if (!this.corruptOnRead.has(entry.commitId)) return entry;
      const payload = entry.payload.slice();
      payload[payload.length - 1] = (payload[payload.length - 1] as number) ^ 0xff;
      return { ...entry, payload };
    });
  }
  releaseThrough(commitId: number): Promise<void> {
    return this.inner.releaseThrough(commitId);
  }
}

type Handler = (topic: string, payload: Uint8Array) => void;

/**
 * An in-memory broker link: publish resolves at "PUBACK" or rejects when down or lost. With
 * `bitsPerSecond` set, messages queue on the link and complete only when virtual time has paid for
 * their bytes (`pump`), like a 2.4 kbps radio backhaul.
 */
export class MemoryTransport implements UplinkTransport {
  up = true;
  lossRate = 0;
  bitsPerSecond: number | null = null;
  readonly published: { topic: string; payload: Uint8Array; options: PublishOptions }[] = [];
  private readonly handlers: Handler[] = [];
  private readonly queue: { at: number; deliver: () => void }[] = [];
  private linkFreeAtMs = 0;

  constructor(
    private readonly random = new SeededRandom("transport"),
    private readonly clock: { nowMs(): number } = { nowMs: () => 0 },
  ) {}

  subscribe(handler: Handler): void {
    this.handlers.push(handler);
  }

  publish(topic: string, payload: Uint8Array, options: PublishOptions): Promise<void> {
    if (!this.up) return Promise.reject(new Error("link down"));
    const lost = this.random.chance(this.lossRate);
    return new Promise((resolve, reject) => {
      const deliver = () => {
        if (!this.up || lost) {
          reject(new Error("lost"));
          return;
        }
        this.published.push({ topic, payload, options });
        for (const handler of this.handlers) handler(topic, payload);
        resolve();
      };
      if (this.bitsPerSecond === null) {
        queueMicrotask(deliver);
        return;
      }
      const start = Math.max(this.linkFreeAtMs, this.clock.nowMs());
      this.linkFreeAtMs = start + Math.ceil(((payload.length + 20) * 8 * 1000) / this.bitsPerSecond);
      this.queue.push({ at: this.linkFreeAtMs, deliver });
    });
  }

  /** Completes every queued message whose bytes the link has carried by `nowMs`. */
  pump(nowMs: number): void {
    while (this.queue.length > 0 && (this.queue[0] as { at: number }).at <= nowMs) {
      (this.queue.shift() as { deliver: () => void }).deliver();
    }
  }
}

export interface StoredReading {
  meterId: string;
  seq: number;
  commitId: number;
  batchId: number;
}

/**
 * The head-end side of the contract, as a test needs it: verifies every batch with the concentrator's
 * key, dedupes repeated deliveries by batch_id + batch_hash, stores records, and acks.
 */
export class TestHeadEnd {
  readonly batches = new Map<number, Batch>();
  readonly readings = new Map<string, StoredReading>();
  readonly problems: string[] = [];
  readonly alerts: { meterId: string; seq: number; type: string }[] = [];
  /** Every alert's sealed record as it arrived (first delivery of each meter/seq), for signature checks. */
  readonly alertRecords: Uint8Array[] = [];
  deliveries = 0;
  duplicateDeliveries = 0;
  /** Probability that an ack is lost on the way back. */
  ackLossRate = 0;
  acking = true;
  private readonly random = new SeededRandom("headend");

  constructor(
    private readonly dcuId: string,
    private readonly publicKey: Uint8Array,
    private readonly sendAck: (topic: string, payload: Uint8Array) => void,
  ) {}

  onMessage(topic: string, payload: Uint8Array): void {
    if (topic === batchesTopic(this.dcuId)) this.onBatch(payload);
    else if (topic === alertsTopic(this.dcuId)) {
      const alert = decodeAlert(payload);
      const record = decodeEventRecord(alert.record);
      if (!this.alerts.some((a) => a.meterId === record.meterId && a.seq === record.seq)) {
        this.alerts.push({ meterId: record.meterId, seq: record.seq, type: record.type });
        this.alertRecords.push(alert.record);
      }
    }
  }

  private onBatch(payload: Uint8Array): void {
    this.deliveries++;
    const batch = decodeBatch(payload);
    const header = batch.header;
    const problems = verifyBatch(batch, this.publicKey);
    if (problems.length > 0) {
      this.problems.push(`batch ${header.batchId}: ${problems.map((p) => p.message).join("; ")}`);
      return;
    }
    const known = this.batches.get(header.batchId);
    if (known !== undefined) {
      if (!bytesEqual(known.header.batchHash, header.batchHash)) {
        this.problems.push(`batch ${header.batchId} delivered twice with different content (equivocation)`);
        return;
      }
      this.duplicateDeliveries++;
    } else {
      this.batches.set(header.batchId, batch);
      for (const record of batch.records) {
        const key = `${record.meterId}/${record.seq}`;
        const stored = this.readings.get(key);
        if (stored !== undefined) {
          this.problems.push(
            `${key} stored twice: commit_id ${stored.commitId} in batch ${stored.batchId}, commit_id ${record.commitId} in batch ${header.batchId}`,
          );
          continue;
        }
        this.readings.set(key, {
          meterId: record.meterId,
          seq: record.seq,
          commitId: record.commitId,
          batchId: header.batchId,
        });
      }
    }
    if (!this.acking || this.random.chance(this.ackLossRate)) return;
    const ack = encodeAck({
      dcuId: this.dcuId,
      accepted: [
        { batchId: header.batchId, commitIdFirst: header.commitIdFirst, commitIdLast: header.commitIdLast },
      ],
      rejected: [],
    });
    queueMicrotask(() => this.sendAck(acksTopic(this.dcuId), ack));
  }

  /** Chain check over everything stored, by batch_id: each prev_batch_hash names the batch before. */
  chainProblems(): string[] {
    const ids = [...this.batches.keys()].sort((a, b) => a - b);
    const out: string[] = [];
    ids.forEach((id, i) => {
      if (i === 0) return;
      const previous = this.batches.get(ids[i - 1] as number) as Batch;
      const batch = this.batches.get(id) as Batch;
      if (id !== (ids[i - 1] as number) + 1) out.push(`batch ${ids[i - 1]} → ${id}: batch missing`);
      else if (!bytesEqual(batch.header.prevBatchHash, previous.header.batchHash))
        out.push(`batch ${id}: chain break`);
    });
    return out;
  }

  seqsOf(meterId: string): number[] {
    return [...this.readings.values()]
      .filter((r) => r.meterId === meterId)
      .map((r) => r.seq)
      .sort((a, b) => a - b);
  }
}

/**
 * The crash-safety predicate (seed 003 H2-11: "no missing commits", "(meter_id, seq) unique"): every
 * record ever committed is either stored at the head-end or still waiting in the journal; no
 * (meter_id, seq) was committed twice; the head-end holds each reading once, contiguous per meter.
 */
export function committedProblems(world: World): string[] {
  const problems = [...world.headEnd.problems, ...world.headEnd.chainProblems()];
  problems.push(...world.ledger.conflicts);
  const committed = new Set<string>();
  const released = world.journal.releasedThrough();
  for (const [commitId, payload] of world.ledger.committed) {
    const record = decodeReadingRecord(payload);
    const key = `${record.meterId}/${record.seq}`;
    if (committed.has(key)) problems.push(`${key} committed twice`);
    committed.add(key);
    const stored = world.headEnd.readings.get(key);
    if (stored === undefined && commitId <= released) problems.push(`${key} released but never stored`);
    if (stored !== undefined && stored.commitId !== commitId) {
      problems.push(`${key} stored with commit_id ${stored.commitId}, committed as ${commitId}`);
    }
  }
  for (const key of world.headEnd.readings.keys()) {
    if (!committed.has(key)) problems.push(`${key} stored but never committed`);
  }
  // A gap is never mysterious (seed 003 H2-4): each hole at the head-end must be a recorded SEQ_GAP.
  const explained = new Set<string>();
  const packs = world.dcu.packs() as {
    commit: { seq_gap: { recent: { meter_id: string; seq_first: number; seq_last: number }[] } };
  };
  for (const gap of packs.commit.seq_gap.recent) {
    for (let seq = gap.seq_first; seq <= gap.seq_last; seq++) explained.add(`${gap.meter_id}/${seq}`);
  }
  for (const meterId of world.meterIds) {
    const seqs = world.headEnd.seqsOf(meterId);
    for (let i = 1; i < seqs.length; i++) {
      for (let seq = seqs[i - 1]! + 1; seq < seqs[i]!; seq++) {
        if (!explained.has(`${meterId}/${seq}`))
          problems.push(`${meterId}: seq ${seq} missing without SEQ_GAP evidence`);
      }
    }
  }
  return problems;
}

/** A whole concentrator world in virtual time: meters, journal, store, link, head-end. */
export class World {
  readonly clock: FakeClock;
  /** The journal's medium: survives "crashes"; power cuts keep a random prefix of unsynced bytes. */
  readonly storage = new MemoryJournalStorage();
  readonly ledger = new CommitLedger();
  journal!: TrackedJournal;
  readonly store = new MemoryDcuStore();
  readonly secureElement: MemorySecureElement;
  readonly transport: MemoryTransport;
  readonly fleet: SimMeterFleet;
  readonly headEnd: TestHeadEnd;
  readonly meterIds: string[];
  dcu!: Concentrator;
  fatal: Error | null = null;
  /** Bumped by a crash: ports handed to an older concentrator go dead, as its process would. */
  private generation = 0;
  private readonly random: SeededRandom;

  constructor(
    readonly options: {
      seed: string;
      meters: number;
      readingIntervalMs?: number;
      config?: Partial<ConcentratorConfig>;
      faults?: { timeoutRate?: number; frameCrcRate?: number };
    },
  ) {
    this.random = new SeededRandom(options.seed);
    this.clock = new FakeClock(1_767_225_600_000); // 2026-01-01T00:00:00Z
    this.secureElement = new MemorySecureElement("DCU-1", new Uint8Array([1, 2, 3]));
    this.transport = new MemoryTransport(this.random.fork("link"), this.clock);
    this.meterIds = simMeterIds("DCU-1", options.meters);
    this.fleet = new SimMeterFleet(this.meterIds, this.clock, this.random.fork("meters"), {
      readingIntervalMs: options.readingIntervalMs ?? 60_000,
      anchorMs: this.clock.now - 3_600_000,
      ...(options.faults === undefined ? {} : { faults: options.faults }),
    });
    this.headEnd = new TestHeadEnd("DCU-1", this.secureElement.publicKey("batch_sign"), (topic, payload) =>
      this.dcu.onMessage(topic, payload),
    );
    this.transport.subscribe((topic, payload) => this.headEnd.onMessage(topic, payload));
  }

  async open(resetReason = "POWER_ON"): Promise<Concentrator> {
    const generation = this.generation;
    const alive = () => generation === this.generation;
    const inner = await Journal.open({
      storage: gate(this.storage, alive, true),
      clockMs: () => this.clock.now,
    });
    this.journal = new TrackedJournal(inner, this.ledger);
    this.dcu = await Concentrator.open(
      {
        dcuId: "DCU-1",
        meters: this.meterIds.map((meterId) => ({ meterId, port: this.fleet.portOf(meterId) })),
        pollIntervalMs: this.options.readingIntervalMs ?? 60_000,
        ...this.options.config,
      },
      {
        clock: this.clock,
        random: this.random.fork("dcu"),
        reader: gate(this.fleet, alive),
        journal: gate(this.journal, alive),
        store: gate(this.store, alive),
        secureElement: this.secureElement,
        transport: gate(this.transport, alive),
        resetReason,
        onFatal: (error) => {
          if (alive()) this.fatal = error;
        },
      },
    );
    return this.dcu;
  }

  /** Moves virtual time in steps, ticking the concentrator and letting every promise settle. */
  async run(totalMs: number, stepMs = 1_000): Promise<void> {
    for (let t = 0; t < totalMs; t += stepMs) {
      this.clock.advance(stepMs);
      this.transport.pump(this.clock.now);
      this.dcu.tick();
      await this.dcu.idle(this.transport.bitsPerSecond === null);
      if (this.fatal !== null) throw this.fatal;
    }
  }

  /** Cuts power at this instant: the concentrator object is abandoned mid-flight, the journal loses
   *  what was not durable, and a new concentrator recovers over the same journal and store. */
  async crashAndRestart(): Promise<Concentrator> {
    this.generation++;
    this.storage.powerCut(this.random);
    return this.open("UNCLEAN_RESTART");
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

/** After a crash the old process does nothing more: its IO calls never complete. `all`: every method is IO. */
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
