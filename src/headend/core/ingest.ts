import {
  acksTopic,
  BATCH_METERS_MAX,
  BATCH_RECORDS_MAX,
  type Batch,
  type BatchHeader,
  batchGenesisHash,
  bytesEqual,
  decodeBatch,
  decodeBatchHeader,
  decodeStatus,
  encodeAck,
  isEvidenceError,
  READING_RECORD_BYTES_MAX,
  type StatusMessage,
  toHex,
  verifyBatch,
} from "../../evidence/index.ts";
import { HeadendError, type HeadendLog } from "../errors.ts";
import { type GapRow, type HeadendStore, isStoreError } from "../store/index.ts";
import { classifyGaps, type MeterCursor } from "./gaps.ts";
import type { HeadendMetrics } from "./metrics.ts";
import { commitOf, type PreparedBatch, prepareFromBatch } from "./prepared.ts";
import type { KeyRegistry } from "./registry.ts";

// Batch ingest (issue 7, seed 003 H2-4/H2-5): every batch a concentrator publishes on ami/<dcu>/batches is
// decoded (record CRCs), authenticated (the concentrator's batch_sign key from the registry), checked
// against its Merkle root, chained to the previous batch (prev_batch_hash in batch_id order), deduplicated
// (batch_id + batch_hash; (meter_id, seq) in the store), its gaps attributed on the two axes, committed
// in one transaction — and only then acknowledged on ami/<dcu>/acks with its exact commit_id range.
//
// Two stages: verification (stateless, CPU: decode, CRCs, Merkle root, signature) may run ahead of the
// commit stage by VERIFY_AHEAD_BATCHES; the commit stage (chain, dedupe, gaps, store, ack) runs one batch
// at a time, in arrival order, so a chain decision always sees the previous commit. One commit in flight
// also bounds how long the alert lane can wait behind the batch writer on a shared SQLite file.

/** Batches waiting for the commit stage; a batch arriving at the bound is refused (not acked: resent). */
export const INGEST_QUEUE_BATCHES_MAX = 64;
/** Batches whose verification may run ahead of the commit stage. */
export const VERIFY_AHEAD_BATCHES = 4;
/** An encodeBatch frame at its largest: magic/version, header with BATCH_METERS_MAX ranges, records. */
export const BATCH_PAYLOAD_BYTES_MAX =
  3 + 4 + (256 + BATCH_METERS_MAX * (1 + 64 + 12)) + 4 + BATCH_RECORDS_MAX * (2 + READING_RECORD_BYTES_MAX);
/** Accepted batch hashes remembered per concentrator for duplicate checks without a store read. */
export const RECENT_BATCHES_PER_DCU = 256;
/** Concentrators whose chain state is cached; beyond, the cache restarts (state reloads from the store). */
export const DCU_STATES_MAX = 100_000;
/** Meters whose seq cursor is cached for gap attribution. */
export const METER_CURSORS_MAX = 2_000_000;
/**
 * Seqs delivered by late batches are remembered for this many meters, this many seqs each, so that a
 * SEQ_GAP filled by several late batches closes; beyond the bound (or after a restart) it stays open.
 */
export const LATE_SEQS_METERS_MAX = 10_000;
export const LATE_SEQS_PER_METER_MAX = 4_096;
/** An UPLINK_GAP wider than this is not re-checked batch by batch when a late batch fills part of it. */
export const UPLINK_GAP_RESOLVE_SPAN_MAX = 256;

/** Reasons of amiproof_batches_rejected_total{reason} the ingest adds to the EvidenceErrorCodes. */
export type IngestRejectReason = "UNKNOWN_DCU" | "DCU_MISMATCH" | "REPLAY" | "TOO_LARGE";

export type PreVerified =
  | { readonly ok: true; readonly prepared: PreparedBatch }
  | {
      readonly ok: false;
      readonly code: string;
      readonly message: string;
      /** The header, when it decoded: names the batch_id for the rejection ack. */
      readonly header: BatchHeader | null;
    };

/** Stateless verification: decode (record CRCs), signature, Merkle root, count, ranges. */
export type BatchVerifier = (payload: Uint8Array, publicKey: Uint8Array) => Promise<PreVerified>;

/** Decodes and checks one batch frame; the Batch itself on success (the worker turns it into columns). */
export function verifyBatchFrame(
  payload: Uint8Array,
  publicKey: Uint8Array,
):
  | { readonly ok: true; readonly batch: Batch }
  | {
      readonly ok: false;
      readonly code: string;
      readonly message: string;
      readonly header: BatchHeader | null;
    } {
  let batch: Batch;
  try {
    batch = decodeBatch(payload);
  } catch (error) {
    if (!isEvidenceError(error)) throw error;
    return { ok: false, code: error.code, message: error.message, header: peekHeader(payload) };
  }
  const problems = verifyBatch(batch, publicKey);
  const first = problems[0];
  if (first !== undefined) {
    return {
      ok: false,
      code: first.code,
      message: `${first.message} (${first.where})`,
      header: batch.header,
    };
  }
  return { ok: true, batch };
}

export function verifyBatchPayload(payload: Uint8Array, publicKey: Uint8Array): PreVerified {
  const result = verifyBatchFrame(payload, publicKey);
  return result.ok ? { ok: true, prepared: prepareFromBatch(result.batch) } : result;
}

export const inThreadVerifier: BatchVerifier = async (payload, publicKey) =>
  verifyBatchPayload(payload, publicKey);

/** The header of an encodeBatch frame whose records may not decode (for the rejection's batch_id). */
export function peekHeader(payload: Uint8Array): BatchHeader | null {
  if (payload.length < 7) return null;
  const length = new DataView(payload.buffer, payload.byteOffset, payload.byteLength).getUint32(3);
  if (length > payload.length - 7) return null;
  try {
    return decodeBatchHeader(payload.subarray(7, 7 + length));
  } catch {
    return null;
  }
}

export type IngestOutcome =
  | {
      readonly kind: "accepted";
      readonly dcuId: string;
      readonly batchId: number;
      readonly readingsNew: number;
      readonly readingsDuplicate: number;
      readonly gaps: readonly GapRow[];
    }
  | { readonly kind: "duplicate"; readonly dcuId: string; readonly batchId: number }
  | {
      readonly kind: "rejected";
      readonly dcuId: string;
      readonly batchId: number | null;
      readonly reason: string;
      readonly message: string;
    }
  /** The store did not commit: nothing acked, the concentrator resends. */
  | {
      readonly kind: "failed";
      readonly dcuId: string;
      readonly batchId: number | null;
      readonly message: string;
    }
  /** Refused at the intake bound or during shutdown: nothing acked, the concentrator resends. */
  | { readonly kind: "refused"; readonly dcuId: string; readonly message: string };

export interface BatchRejection {
  readonly dcuId: string;
  readonly batchId: number | null;
  readonly reason: string;
  readonly message: string;
  readonly atMs: number;
}

export interface IngestDeps {
  readonly store: HeadendStore;
  readonly registry: KeyRegistry;
  readonly metrics: HeadendMetrics;
  readonly log: HeadendLog;
  nowMs(): number;
  /** QoS 1 publish of an ack; a failed publish is logged, the concentrator's resend gets a fresh ack. */
  publish(topic: string, payload: Uint8Array): Promise<void>;
  verifier?: BatchVerifier;
  /** Every rejection, for the alert lane (seed 003 H2-6 "tamper hints: repeated signature failures"). */
  onRejected?(rejection: BatchRejection): void;
  /** Every outcome (tests, bench). */
  onOutcome?(outcome: IngestOutcome): void;
}

interface DcuChain {
  headId: number | null;
  headHash: Uint8Array | null;
  headEpoch: number;
  headCommitIdLast: number;
  readonly recent: Map<number, { readonly hash: Uint8Array; readonly first: number; readonly last: number }>;
  lastBatchMs: number | null;
}

interface Queued {
  readonly dcuId: string;
  readonly payload: Uint8Array;
  readonly receivedMs: number;
  verified: Promise<
    | PreVerified
    | {
        readonly ok: false;
        readonly code: "UNKNOWN_DCU";
        readonly message: string;
        readonly header: BatchHeader | null;
      }
  > | null;
}

export class BatchIngest {
  private readonly queue: Queued[] = [];
  private readonly chains = new Map<string, DcuChain>();
  private readonly meterCursors = new Map<string, MeterCursor>();
  private readonly lateSeqs = new Map<string, Set<number>>();
  private readonly statuses = new Map<string, { readonly status: StatusMessage; readonly atMs: number }>();
  private running: Promise<void> | null = null;
  private closed = false;
  private readonly verifier: BatchVerifier;

  constructor(private readonly deps: IngestDeps) {
    this.verifier = deps.verifier ?? inThreadVerifier;
  }

  get queueDepth(): number {
    return this.queue.length;
  }

  /** Seeds the per-meter cursors from the store (after a restart), so the first batch's seq gaps show. */
  primeMeterCursor(meterId: string, cursor: MeterCursor): void {
    if (this.meterCursors.size >= METER_CURSORS_MAX) return;
    this.meterCursors.set(meterId, cursor);
  }

  /** A batch from ami/<dcuId>/batches. false: refused at the queue bound or after close (not acked). */
  submit(dcuId: string, payload: Uint8Array): boolean {
    if (this.closed || this.queue.length >= INGEST_QUEUE_BATCHES_MAX) {
      this.deps.metrics.ingestQueueRefused++;
      const message = this.closed
        ? "ingest is shutting down"
        : `ingest queue at ${INGEST_QUEUE_BATCHES_MAX} batches`;
      this.deps.onOutcome?.({ kind: "refused", dcuId, message });
      return false;
    }
    this.queue.push({ dcuId, payload, receivedMs: this.deps.nowMs(), verified: null });
    this.pump();
    return true;
  }

  /** Resolves when every queued batch has been processed. */
  async drain(): Promise<void> {
    while (this.running !== null) await this.running;
  }

  /**
   * Shutdown: the batch in the commit stage finishes (commit, then ack); batches still queued are dropped
   * unacknowledged — the concentrator keeps them and resends. Returns how many were dropped.
   */
  async close(): Promise<number> {
    this.closed = true;
    const dropped = this.queue.length > 1 ? this.queue.splice(1).length : 0;
    await this.drain();
    return dropped;
  }

  /** ami/<dcu>/status (retained): kept for the API; a key that differs from the provisioned one is logged. */
  async onStatus(dcuId: string, payload: Uint8Array): Promise<void> {
    if (payload.length === 0) return; // a cleared retained message
    let status: StatusMessage;
    try {
      status = decodeStatus(payload);
    } catch (error) {
      this.deps.log.warn({ dcu_id: dcuId, reason: (error as Error).message }, "status message refused");
      return;
    }
    if (status.dcuId !== dcuId) {
      this.deps.log.warn(
        { dcu_id: dcuId, claimed: status.dcuId },
        "status message names another concentrator",
      );
      return;
    }
    if (this.statuses.size >= DCU_STATES_MAX && !this.statuses.has(dcuId)) this.statuses.clear();
    this.statuses.set(dcuId, { status, atMs: this.deps.nowMs() });
    const key = await this.deps.registry.concentratorKey(dcuId);
    if (key !== null && !bytesEqual(key, status.batchSignPublicKey)) {
      this.deps.log.warn(
        {
          dcu_id: dcuId,
          provisioned: toHex(key).slice(0, 16),
          reported: toHex(status.batchSignPublicKey).slice(0, 16),
        },
        "concentrator reports a batch_sign key other than the provisioned one",
      );
    }
  }

  status(dcuId: string): { readonly status: StatusMessage; readonly atMs: number } | null {
    return this.statuses.get(dcuId) ?? null;
  }

  lastBatchMs(dcuId: string): number | null {
    return this.chains.get(dcuId)?.lastBatchMs ?? null;
  }

  private pump(): void {
    this.startVerification();
    if (this.running !== null || this.queue.length === 0) return;
    this.running = this.run().finally(() => {
      this.running = null;
      if (this.queue.length > 0) this.pump();
    });
  }

  private startVerification(): void {
    const ahead = Math.min(this.queue.length, VERIFY_AHEAD_BATCHES);
    for (let i = 0; i < ahead; i++) {
      const item = this.queue[i] as Queued;
      if (item.verified === null) item.verified = this.startPreVerify(item);
    }
  }

  /** Started ahead of its turn; a batch dropped at close() may never be awaited, so it is marked handled. */
  private startPreVerify(item: Queued): Promise<PreVerified> {
    const verified = this.preVerify(item);
    verified.catch(() => {});
    return verified;
  }

  private async preVerify(item: Queued): Promise<PreVerified> {
    if (item.payload.length > BATCH_PAYLOAD_BYTES_MAX) {
      return {
        ok: false,
        code: "TOO_LARGE",
        message: `batch of ${item.payload.length} bytes exceeds ${BATCH_PAYLOAD_BYTES_MAX}`,
        header: null,
      };
    }
    // A batch sealed by one concentrator and published on another's topic is a replay across topics,
    // whatever its signature says: named as such before the topic's key is even looked up.
    const claimed = peekHeader(item.payload);
    if (claimed !== null && claimed.dcuId !== item.dcuId) {
      return {
        ok: false,
        code: "DCU_MISMATCH",
        message: `batch sealed by ${claimed.dcuId} arrived on ami/${item.dcuId}/batches`,
        header: claimed,
      };
    }
    const key = await this.deps.registry.concentratorKey(item.dcuId);
    if (key === null) {
      return {
        ok: false,
        code: "UNKNOWN_DCU",
        message: `concentrator ${item.dcuId} has no provisioned batch_sign key`,
        header: peekHeader(item.payload),
      };
    }
    return this.verifier(item.payload, key);
  }

  private async run(): Promise<void> {
    while (this.queue.length > 0) {
      const item = this.queue[0] as Queued;
      item.verified ??= this.startPreVerify(item);
      this.startVerification();
      let outcome: IngestOutcome;
      try {
        outcome = await this.commitStage(item, await item.verified);
      } catch (error) {
        this.deps.log.error({ dcu_id: item.dcuId, error: (error as Error).message }, "ingest failed");
        outcome = { kind: "failed", dcuId: item.dcuId, batchId: null, message: (error as Error).message };
      }
      this.queue.shift();
      this.deps.onOutcome?.(outcome);
    }
  }

  private async commitStage(item: Queued, verified: PreVerified): Promise<IngestOutcome> {
    const { dcuId, receivedMs } = item;
    if (!verified.ok) {
      return this.reject(dcuId, verified.header, verified.code, verified.message, receivedMs);
    }
    const prepared = verified.prepared;
    const header = prepared.header;
    if (header.dcuId !== dcuId) {
      return this.reject(
        dcuId,
        header,
        "DCU_MISMATCH",
        `batch sealed by ${header.dcuId} arrived on ami/${dcuId}/batches`,
        receivedMs,
      );
    }
    const chain = await this.chain(dcuId);
    chain.lastBatchMs = receivedMs;

    // Duplicate or equivocation: the same batch_id was accepted before.
    const known = chain.recent.get(header.batchId) ?? (await this.storedBatch(dcuId, header.batchId, chain));
    if (known !== null && known !== undefined) {
      if (bytesEqual(known.hash, header.batchHash)) {
        this.deps.metrics.batchesDuplicate++;
        await this.ack(dcuId, {
          batchId: header.batchId,
          commitIdFirst: known.first,
          commitIdLast: known.last,
        });
        return { kind: "duplicate", dcuId, batchId: header.batchId };
      }
      return this.reject(
        dcuId,
        header,
        "REPLAY",
        `batch_id ${header.batchId} was accepted with batch_hash ${toHex(known.hash).slice(0, 16)}…, this copy has ${toHex(header.batchHash).slice(0, 16)}…`,
        receivedMs,
      );
    }

    let expectedPrev: Uint8Array | null = null;
    let previous: { commitIdLast: number; epoch: number } | null = null;
    let uplinkMissing: { from: number; to: number } | null = null;
    let next: { prevBatchHash: Uint8Array; commitIdFirst: number } | null = null;
    const late = chain.headId !== null && header.batchId < chain.headId;
    if (chain.headId === null) {
      if (header.batchId === 1) expectedPrev = batchGenesisHash(dcuId);
    } else if (!late) {
      if (header.epoch < chain.headEpoch) {
        return this.reject(
          dcuId,
          header,
          "REPLAY",
          `recovery epoch ${header.epoch} is older than the chain head's ${chain.headEpoch}`,
          receivedMs,
        );
      }
      if (header.batchId === chain.headId + 1) {
        expectedPrev = chain.headHash;
        previous = { commitIdLast: chain.headCommitIdLast, epoch: chain.headEpoch };
      } else {
        uplinkMissing = { from: chain.headId + 1, to: header.batchId - 1 };
      }
    } else {
      // A late batch fills a hole behind the head: it must link to its stored neighbours on both sides.
      const before = header.batchId === 1 ? null : await this.deps.store.getBatch(header.batchId - 1, dcuId);
      if (header.batchId === 1) expectedPrev = batchGenesisHash(dcuId);
      else if (before !== null) {
        expectedPrev = before.batchHash;
        previous = { commitIdLast: before.commitIdLast, epoch: before.epoch };
      }
      const after = await this.deps.store.getBatch(header.batchId + 1, dcuId);
      if (after !== null) next = { prevBatchHash: after.prevBatchHash, commitIdFirst: after.commitIdFirst };
    }
    if (expectedPrev !== null && !bytesEqual(expectedPrev, header.prevBatchHash)) {
      return this.reject(
        dcuId,
        header,
        "CHAIN_BREAK",
        `prev_batch_hash ${toHex(header.prevBatchHash).slice(0, 16)}… does not match batch ${header.batchId - 1} (${toHex(expectedPrev).slice(0, 16)}…)`,
        receivedMs,
      );
    }
    if (next !== null && !bytesEqual(next.prevBatchHash, header.batchHash)) {
      return this.reject(
        dcuId,
        header,
        "CHAIN_BREAK",
        `stored batch ${header.batchId + 1} does not link to this batch_hash`,
        receivedMs,
      );
    }

    const { gaps, dropped } = classifyGaps({
      header,
      records: prepared.records,
      detectedMs: receivedMs,
      previous,
      uplinkMissing,
      meterCursor: (meterId) => (late ? undefined : this.meterCursors.get(meterId)),
    });
    if (next !== null && next.commitIdFirst > header.commitIdLast + 1) {
      gaps.push({
        gapClass: "COMMIT_GAP",
        meterId: "",
        dcuId,
        from: header.commitIdLast + 1,
        to: next.commitIdFirst - 1,
        detectedMs: receivedMs,
        attributedTo: "storage",
        batchId: header.batchId + 1,
      });
    }
    if (dropped > 0)
      this.deps.log.warn(
        { dcu_id: dcuId, batch_id: header.batchId, dropped },
        "gaps over the bound not recorded",
      );

    const commit = commitOf(prepared, receivedMs, gaps);
    const finalCommit =
      late && chain.headId !== null && chain.headHash !== null
        ? {
            ...commit,
            chainHead: { lastBatchHash: chain.headHash, lastBatchId: chain.headId, epoch: chain.headEpoch },
          }
        : commit;
    let result: Awaited<ReturnType<HeadendStore["commitBatch"]>>;
    try {
      result = await this.deps.store.commitBatch(finalCommit);
    } catch (error) {
      // seed 003 H2-5: no ack without a durable commit. The concentrator resends; the chain state is untouched.
      this.deps.metrics.commitFailures++;
      this.deps.log.error(
        {
          dcu_id: dcuId,
          batch_id: header.batchId,
          error: (error as Error).message,
          code: isStoreError(error) ? error.code : undefined,
        },
        "batch commit failed; not acknowledged",
      );
      return { kind: "failed", dcuId, batchId: header.batchId, message: (error as Error).message };
    }
    const range = {
      batchId: header.batchId,
      commitIdFirst: header.commitIdFirst,
      commitIdLast: header.commitIdLast,
    };
    this.remember(chain, header);
    if (!result.batchNew) {
      this.deps.metrics.batchesDuplicate++;
      await this.ack(dcuId, range);
      return { kind: "duplicate", dcuId, batchId: header.batchId };
    }
    if (!late) {
      chain.headId = header.batchId;
      chain.headHash = header.batchHash;
      chain.headEpoch = header.epoch;
      chain.headCommitIdLast = header.commitIdLast;
    } else {
      await this.resolveUplinkGaps(dcuId, header.batchId);
      await this.resolveSeqGapsFilledBy(dcuId, prepared.records);
    }
    // Late batches move the cursors too (forward only): a meter absent from the batch that overtook this
    // one would otherwise keep a cursor from before the hole, and its next reading would raise a SEQ_GAP
    // over seqs this batch just stored (found by the lab's backhaul scenario).
    for (const record of prepared.records) {
      const before = this.meterCursors.get(record.meterId);
      if (before === undefined && this.meterCursors.size >= METER_CURSORS_MAX) continue;
      if (before === undefined || record.seq > before.lastSeq) {
        this.meterCursors.set(record.meterId, {
          lastSeq: record.seq,
          lastReadingMs: record.timestampMs,
          lastCommitId: record.commitId,
        });
      }
    }
    const metrics = this.deps.metrics;
    metrics.batchesAccepted++;
    metrics.readingsDuplicate += result.readingsDuplicate;
    metrics.readingsCommitted(result.readingsNew, this.deps.nowMs());
    for (const gap of gaps) metrics.gap(gap.gapClass);
    if (gaps.length > 0) {
      this.deps.log.info(
        {
          dcu_id: dcuId,
          batch_id: header.batchId,
          gaps: gaps.map((g) => `${g.gapClass} ${g.meterId} ${g.from}..${g.to} (${g.attributedTo})`),
        },
        "gaps recorded",
      );
    }
    await this.ack(dcuId, range);
    return {
      kind: "accepted",
      dcuId,
      batchId: header.batchId,
      readingsNew: result.readingsNew,
      readingsDuplicate: result.readingsDuplicate,
      gaps,
    };
  }

  private remember(chain: DcuChain, header: BatchHeader): void {
    if (chain.recent.size >= RECENT_BATCHES_PER_DCU) {
      const oldest = chain.recent.keys().next().value;
      if (oldest !== undefined) chain.recent.delete(oldest);
    }
    chain.recent.set(header.batchId, {
      hash: header.batchHash,
      first: header.commitIdFirst,
      last: header.commitIdLast,
    });
  }

  private async storedBatch(dcuId: string, batchId: number, chain: DcuChain) {
    if (chain.headId === null || batchId > chain.headId) return null;
    const row = await this.deps.store.getBatch(batchId, dcuId);
    if (row === null) return null;
    return { hash: row.batchHash, first: row.commitIdFirst, last: row.commitIdLast };
  }

  private async chain(dcuId: string): Promise<DcuChain> {
    const cached = this.chains.get(dcuId);
    if (cached !== undefined) return cached;
    const row = await this.deps.store.getConcentrator(dcuId);
    if (row === null)
      throw new HeadendError("UNKNOWN_DCU", `concentrator ${dcuId} vanished from the store`, "ingest");
    let headCommitIdLast = 0;
    if (row.lastBatchId !== null) {
      const head = await this.deps.store.getBatch(row.lastBatchId, dcuId);
      headCommitIdLast = head?.commitIdLast ?? 0;
    }
    const chain: DcuChain = {
      headId: row.lastBatchId,
      headHash: row.lastBatchHash,
      headEpoch: row.epoch ?? 0,
      headCommitIdLast,
      recent: new Map(),
      lastBatchMs: null,
    };
    if (this.chains.size >= DCU_STATES_MAX) this.chains.clear();
    this.chains.set(dcuId, chain);
    return chain;
  }

  /** Forgets a concentrator's cached chain (its key was re-provisioned, or tests reopen the store). */
  forgetChain(dcuId: string): void {
    this.chains.delete(dcuId);
  }

  /**
   * A late batch may carry seqs that a batch which overtook it recorded as a SEQ_GAP: the gap closes when
   * late batches have brought every seq in it (a partly filled gap stays open). Late batches are rare, so
   * a store query per meter of the batch is affordable.
   */
  private async resolveSeqGapsFilledBy(
    dcuId: string,
    records: readonly { readonly meterId: string; readonly seq: number }[],
  ): Promise<void> {
    // Seqs brought by late batches, per meter: a gap may be filled by several of them, one seq each.
    const touched = new Set<string>();
    for (const r of records) {
      let seqs = this.lateSeqs.get(r.meterId);
      if (seqs === undefined) {
        if (this.lateSeqs.size >= LATE_SEQS_METERS_MAX) this.lateSeqs.clear();
        seqs = new Set<number>();
        this.lateSeqs.set(r.meterId, seqs);
      }
      if (seqs.size >= LATE_SEQS_PER_METER_MAX) seqs.clear();
      seqs.add(r.seq);
      touched.add(r.meterId);
    }
    for (const meterId of touched) {
      const seqs = this.lateSeqs.get(meterId) ?? new Set<number>();
      const open = await this.deps.store.listGaps({
        gapClass: "SEQ_GAP",
        dcuId,
        meterId,
        openOnly: true,
        limit: 100,
      });
      for (const gap of open.items) {
        if (gap.to - gap.from + 1 > seqs.size) continue;
        let covered = true;
        for (let seq = gap.from; seq <= gap.to && covered; seq++) covered = seqs.has(seq);
        if (covered) await this.deps.store.resolveGap(gap.gapId, this.deps.nowMs());
      }
    }
  }

  private async resolveUplinkGaps(dcuId: string, batchId: number): Promise<void> {
    const open = await this.deps.store.listGaps({
      gapClass: "UPLINK_GAP",
      dcuId,
      openOnly: true,
      limit: 100,
    });
    for (const gap of open.items) {
      if (batchId < gap.from || batchId > gap.to || gap.to - gap.from + 1 > UPLINK_GAP_RESOLVE_SPAN_MAX)
        continue;
      let filled = true;
      for (let id = gap.from; id <= gap.to && filled; id++)
        filled = await this.deps.store.hasBatch(id, dcuId);
      if (filled) await this.deps.store.resolveGap(gap.gapId, this.deps.nowMs());
    }
  }

  private async reject(
    dcuId: string,
    header: BatchHeader | null,
    reason: string,
    message: string,
    receivedMs: number,
  ): Promise<IngestOutcome> {
    const batchId = header?.batchId ?? null;
    this.deps.metrics.rejectBatch(reason);
    this.deps.log.warn({ dcu_id: dcuId, batch_id: batchId, reason, detail: message }, "batch rejected");
    try {
      await this.deps.store.recordRejectedBatch({
        dcuId,
        batchId: batchId ?? -1,
        batchHash: header?.batchHash ?? new Uint8Array(0),
        reason,
        receivedMs,
        header: header?.bytes ?? null,
      });
    } catch (error) {
      this.deps.log.error(
        { dcu_id: dcuId, error: (error as Error).message },
        "could not record a rejected batch",
      );
    }
    if (batchId !== null && batchId >= 1) {
      await this.publishAck(dcuId, {
        dcuId,
        accepted: [],
        rejected: [{ batchId, reason: `${reason}: ${message}`.slice(0, 200) }],
      });
    }
    this.deps.onRejected?.({ dcuId, batchId, reason, message, atMs: receivedMs });
    return { kind: "rejected", dcuId, batchId, reason, message };
  }

  private async ack(
    dcuId: string,
    accepted: { batchId: number; commitIdFirst: number; commitIdLast: number },
  ) {
    await this.publishAck(dcuId, { dcuId, accepted: [accepted], rejected: [] });
  }

  private async publishAck(dcuId: string, ack: Parameters<typeof encodeAck>[0]): Promise<void> {
    try {
      await this.deps.publish(acksTopic(dcuId), encodeAck(ack));
    } catch (error) {
      this.deps.log.warn(
        { dcu_id: dcuId, error: (error as Error).message },
        "ack publish failed; the resend is acked again",
      );
    }
  }
}
