import type { EventLevel, EventType, TimeQuality } from "../../evidence/index.ts";

// The head-end's storage contract. Both back ends (SQLite, PostgreSQL) implement it and run the same test
// suite; every method is async so a network database fits behind it. Times are UTC milliseconds handed in
// by the caller (the store never reads a clock); identifiers and vocabulary are the seeds' own.

// ───────────────────────────── limits ─────────────────────────────

/** Rows a listing returns at most per call; larger requests are refused (LIMIT), callers page by cursor. */
export const PAGE_ROWS_MAX = 1_000;
export const PAGE_ROWS_DEFAULT = 100;
/** Reading rows (one per OBIS value) in one commitBatch: BATCH_RECORDS_MAX × READING_VALUES_MAX. */
export const COMMIT_READING_ROWS_MAX = 4_096 * 16;
export const COMMIT_GAPS_MAX = 4_096;
export const COMMIT_EVENTS_MAX = 4_096;
/** Meters one batch may touch (BATCH_METERS_MAX of the batch header). */
export const COMMIT_METERS_MAX = 1_024;
/** Reading rows one evidence export returns at most; a wider range is refused, the caller narrows it. */
export const EXPORT_READING_ROWS_MAX = 200_000;
export const EXPORT_EVENTS_MAX = 50_000;
/** An audit entry's detail JSON, and an alert snapshot, in UTF-8 bytes. */
export const AUDIT_DETAIL_BYTES_MAX = 8_192;
export const ALERT_SNAPSHOT_BYTES_MAX = 4_096;
/** Rows read per round trip while verifying the audit chain (bounded memory on any chain length). */
export const AUDIT_VERIFY_PAGE_ROWS = 2_000;

// ───────────────────────────── vocabulary ─────────────────────────────

/** seed 003 H2-4 two-axis attribution, plus the uplink axis and RTC steps (TIME_STEP_EVT). */
export type GapClass = "SEQ_GAP" | "COMMIT_GAP" | "UPLINK_GAP" | "TIME_STEP";
export const GAP_CLASSES: readonly GapClass[] = ["SEQ_GAP", "COMMIT_GAP", "UPLINK_GAP", "TIME_STEP"];

export type AlertState = "open" | "acknowledged" | "resolved";
export const ALERT_STATES: readonly AlertState[] = ["open", "acknowledged", "resolved"];

export type BatchStatus = "accepted" | "rejected";

export type StoreDialect = "sqlite" | "postgres";

// ───────────────────────────── rows ─────────────────────────────

/** One OBIS value of one reading record: the reading record (seed 003 H2-4) flattened per value. */
export interface ReadingRow {
  readonly meterId: string;
  readonly seq: number;
  /** "1.0.1.8.0.255" */
  readonly obis: string;
  readonly commitId: number;
  readonly dcuId: string;
  readonly batchId: number;
  readonly timestampMs: number;
  readonly timeQuality: TimeQuality;
  readonly value: number;
  readonly scaler: number;
  readonly unit: number;
  /** CRC-32 of the whole reading record, as sealed by the concentrator. */
  readonly recordCrc: number;
}

export interface MeterRow {
  readonly meterId: string;
  readonly dcuId: string | null;
  readonly model: string | null;
  readonly group: string | null;
  /** seed 004: revenue-loss estimate compares meters on the same transformer. */
  readonly transformerId: string | null;
  readonly firmwareVersion: string | null;
  /** seed 000: the active flash bank, "A" or "B". */
  readonly firmwareBank: string | null;
  readonly tamperState: string;
  readonly lastSeq: number | null;
  readonly lastReadingMs: number | null;
  readonly timeQuality: TimeQuality | null;
  readonly online: boolean;
  readonly updatedMs: number | null;
}

/** Registration or inventory change; fields left undefined keep their stored value. */
export interface MeterPatch {
  readonly meterId: string;
  readonly dcuId?: string | null;
  readonly model?: string | null;
  readonly group?: string | null;
  readonly transformerId?: string | null;
  readonly firmwareVersion?: string | null;
  readonly firmwareBank?: string | null;
  readonly tamperState?: string;
  readonly online?: boolean;
  readonly updatedMs: number;
}

/** What a committed batch says about a meter: moves its reading clock forward, never back. */
export interface MeterReadingUpdate {
  readonly meterId: string;
  readonly dcuId: string;
  readonly lastSeq: number;
  readonly lastReadingMs: number;
  readonly timeQuality: TimeQuality;
}

export interface ConcentratorRow {
  readonly dcuId: string;
  /** Uncompressed P-256 public key (65 bytes) that signs this concentrator's batches. */
  readonly publicKey: Uint8Array;
  readonly lastBatchHash: Uint8Array | null;
  readonly lastBatchId: number | null;
  readonly epoch: number | null;
  readonly registeredMs: number;
  readonly updatedMs: number;
}

export interface BatchRow {
  readonly batchId: number;
  readonly dcuId: string;
  readonly epoch: number;
  readonly commitIdFirst: number;
  readonly commitIdLast: number;
  readonly recordCount: number;
  readonly merkleRoot: Uint8Array;
  readonly batchHash: Uint8Array;
  readonly prevBatchHash: Uint8Array;
  readonly receivedMs: number;
  /** The signed header as received: an export re-verifies it without trusting this row. */
  readonly header: Uint8Array | null;
  /** The batch's reading records in batch order (packRecords): the Merkle leaves, for export. */
  readonly records: Uint8Array | null;
}

export interface StoredBatchRow extends BatchRow {
  readonly status: BatchStatus;
  readonly reason: string | null;
  readonly readingsNew: number;
  readonly timesSeen: number;
}

/** A refused batch, kept as evidence. Unknown fields: batchId -1, batchHash empty. */
export interface RejectedBatch {
  readonly dcuId: string;
  readonly batchId: number;
  readonly batchHash: Uint8Array;
  /** The counter label of amiproof_batches_rejected_total{reason}: an EvidenceErrorCode or the ingest's own. */
  readonly reason: string;
  readonly receivedMs: number;
  readonly header: Uint8Array | null;
}

export interface GapRow {
  readonly gapClass: GapClass;
  /** "" for a gap that belongs to the concentrator (COMMIT_GAP, UPLINK_GAP) rather than one meter. */
  readonly meterId: string;
  readonly dcuId: string;
  /** Inclusive range on the gap's own axis: seq, commit_id, batch_id or timestamp ms. */
  readonly from: number;
  readonly to: number;
  readonly detectedMs: number;
  /** seed 003 H2-9 branch the evidence points at, e.g. "capture", "storage", "uplink", "rtc". */
  readonly attributedTo: string | null;
  readonly batchId: number | null;
}

export interface StoredGapRow extends GapRow {
  readonly gapId: number;
  readonly resolvedMs: number | null;
}

/** A sealed meter event (seed 002 H2-7 record), stored with its exact bytes. */
export interface EventRow {
  readonly meterId: string;
  readonly seq: number;
  readonly type: EventType;
  readonly level: EventLevel;
  readonly timestampMs: number;
  readonly timeQuality: TimeQuality;
  readonly record: Uint8Array;
  /** The signature verified with the meter's key when it was received. */
  readonly verified: boolean;
  readonly dcuId: string | null;
  readonly receivedMs: number;
}

export interface AlertInput {
  readonly meterId: string;
  readonly dcuId: string | null;
  readonly type: string;
  readonly level: EventLevel;
  /** seed 004: the meter's monotonic alert counter; (meter_id, counter) identifies an alert (anti-replay). */
  readonly counter: number;
  readonly detectedMs: number;
  readonly receivedMs: number;
  readonly storedMs: number;
  readonly snapshot: Readonly<Record<string, number | string | boolean>>;
  /** seed 004 event aggregation: how many anomalies this one alert stands for. */
  readonly aggregatedCount: number;
  readonly record: Uint8Array | null;
  readonly verified: boolean;
}

export interface AlertRow extends AlertInput {
  readonly alertId: number;
  readonly state: AlertState;
  readonly acknowledgedBy: string | null;
  readonly acknowledgedMs: number | null;
  readonly resolvedBy: string | null;
  readonly resolvedMs: number | null;
}

export interface FirmwareRow {
  /** seed 001: bootloader, metrology, application. */
  readonly component: string;
  readonly version: string;
  /** seed 000/003 H2-6 anti-rollback: the monotonic release counter the image carries. */
  readonly releaseCounter: number;
  /** Hex SHA-256 of the image. */
  readonly checksum: string;
  readonly image: Uint8Array;
  readonly expiryMs: number | null;
  readonly uploadedMs: number;
}

export interface AuditEntry {
  readonly seq: number;
  readonly atMs: number;
  readonly actor: string;
  readonly action: string;
  /** The detail JSON text exactly as hashed. */
  readonly detail: string;
  readonly prevHash: Uint8Array;
  readonly hash: Uint8Array;
}

export interface AuditVerifyReport {
  readonly ok: boolean;
  readonly entries: number;
  /** Hash of the last entry: sign or publish it to make truncation of the tail detectable. */
  readonly headHash: Uint8Array;
  readonly problem: { readonly seq: number; readonly message: string } | null;
}

export interface ApiTokenRow {
  /** Hex SHA-256 of the bearer token: the token itself is never stored. */
  readonly tokenHash: string;
  readonly role: string;
  readonly label: string;
  readonly createdMs: number;
  readonly revokedMs: number | null;
}

// ───────────────────────────── operations ─────────────────────────────

export interface BatchCommit {
  readonly batch: BatchRow;
  readonly readings: readonly ReadingRow[];
  readonly gaps: readonly GapRow[];
  readonly events: readonly EventRow[];
  readonly meters: readonly MeterReadingUpdate[];
  /** Moves the concentrator's chain head (last batch hash/id, epoch) in the same transaction. */
  readonly chainHead: {
    readonly lastBatchHash: Uint8Array;
    readonly lastBatchId: number;
    readonly epoch: number;
  };
}

export interface BatchCommitResult {
  /** false: this (dcu_id, batch_id) was already accepted; nothing was written. */
  readonly batchNew: boolean;
  readonly readingsNew: number;
  readonly readingsDuplicate: number;
  readonly gapsNew: number;
  readonly eventsNew: number;
}

export interface Page<T> {
  readonly items: readonly T[];
  /** Pass back as `cursor` for the next page; null when this page is the last. */
  readonly nextCursor: string | null;
}

export interface PageRequest {
  readonly limit?: number;
  readonly cursor?: string | null;
}

export interface MeterQuery extends PageRequest {
  readonly dcuId?: string;
  readonly group?: string;
  readonly model?: string;
  readonly transformerId?: string;
  readonly online?: boolean;
  readonly tamperState?: string;
  /** Case-sensitive substring of meter_id. */
  readonly search?: string;
  /** Meters whose last reading is older than this, or that never reported. */
  readonly staleBeforeMs?: number;
}

/** A meter's readings whose timestamp falls in [fromMs, toMs), ordered by hour, then seq, then OBIS. */
export interface ReadingQuery extends PageRequest {
  readonly meterId: string;
  /** Inclusive. */
  readonly fromMs: number;
  /** Exclusive. */
  readonly toMs: number;
  readonly obis?: string;
}

export interface AlertQuery extends PageRequest {
  readonly state?: AlertState;
  readonly type?: string;
  readonly meterId?: string;
}

export interface GapQuery extends PageRequest {
  readonly gapClass?: GapClass;
  readonly meterId?: string;
  readonly dcuId?: string;
  readonly openOnly?: boolean;
}

export interface GapSummary {
  readonly gapClass: GapClass;
  readonly count: number;
  readonly open: number;
  /** Sum of (to − from + 1) over the class: missing seqs, commit ids, batches or ms. */
  readonly width: number;
}

/** Everything /metrics needs in one call (DESIGN.md metric names). */
export interface StoreCounts {
  readonly readingsStoredTotal: number;
  readonly batchesAcceptedTotal: number;
  readonly batchesRejectedTotal: Readonly<Record<string, number>>;
  readonly alertsTotal: Readonly<Record<string, number>>;
  readonly gapsTotal: Readonly<Record<GapClass, number>>;
  readonly metersOnline: number;
  readonly metersTotal: number;
  readonly eventsTotal: number;
}

export interface EvidenceExport {
  readonly readings: readonly ReadingRow[];
  readonly events: readonly EventRow[];
  /** Every accepted batch that carried one of the readings, with its signed header and records. */
  readonly batches: readonly StoredBatchRow[];
}

export interface HeadendStore {
  readonly dialect: StoreDialect;
  /** The URL without credentials, for logs. */
  readonly description: string;
  schemaVersion(): Promise<number>;
  close(): Promise<void>;

  // concentrators: the key registry and each chain head
  putConcentrator(dcuId: string, publicKey: Uint8Array, atMs: number): Promise<void>;
  getConcentrator(dcuId: string): Promise<ConcentratorRow | null>;
  listConcentrators(): Promise<ConcentratorRow[]>;

  // batches
  hasBatch(batchId: number, dcuId: string): Promise<boolean>;
  getBatch(batchId: number, dcuId: string): Promise<StoredBatchRow | null>;
  commitBatch(commit: BatchCommit): Promise<BatchCommitResult>;
  recordRejectedBatch(rejected: RejectedBatch): Promise<void>;

  // meters
  upsertMeter(patch: MeterPatch): Promise<void>;
  getMeter(meterId: string): Promise<MeterRow | null>;
  listMeters(query: MeterQuery): Promise<Page<MeterRow> & { readonly total: number }>;
  setMetersOnline(meterIds: readonly string[], online: boolean, atMs: number): Promise<number>;

  // readings, events, gaps
  listReadings(query: ReadingQuery): Promise<Page<ReadingRow>>;
  insertEvents(events: readonly EventRow[]): Promise<number>;
  listEvents(meterId: string, fromMs: number, toMs: number, page?: PageRequest): Promise<Page<EventRow>>;
  insertGaps(gaps: readonly GapRow[]): Promise<number>;
  resolveGap(gapId: number, atMs: number): Promise<boolean>;
  listGaps(query: GapQuery): Promise<Page<StoredGapRow>>;
  gapSummary(): Promise<GapSummary[]>;

  // alerts
  insertAlert(alert: AlertInput): Promise<{ readonly alertId: number; readonly isNew: boolean }>;
  getAlert(alertId: number): Promise<AlertRow | null>;
  acknowledgeAlert(alertId: number, by: string, atMs: number): Promise<AlertRow>;
  resolveAlert(alertId: number, by: string, atMs: number): Promise<AlertRow>;
  listAlerts(query: AlertQuery): Promise<Page<AlertRow>>;

  // firmware images
  putFirmware(firmware: FirmwareRow): Promise<boolean>;
  getFirmware(component: string, version: string): Promise<FirmwareRow | null>;
  listFirmware(): Promise<Omit<FirmwareRow, "image">[]>;

  // audit log, API tokens
  appendAudit(entry: { atMs: number; actor: string; action: string; detail: unknown }): Promise<AuditEntry>;
  listAudit(page?: PageRequest): Promise<Page<AuditEntry>>;
  verifyAudit(): Promise<AuditVerifyReport>;
  putApiToken(token: ApiTokenRow): Promise<void>;
  findApiToken(tokenHash: string): Promise<ApiTokenRow | null>;
  revokeApiToken(tokenHash: string, atMs: number): Promise<boolean>;

  // reporting
  counts(): Promise<StoreCounts>;
  exportEvidence(meterId: string, fromMs: number, toMs: number): Promise<EvidenceExport>;
}
