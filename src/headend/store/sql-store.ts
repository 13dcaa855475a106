import type { EventLevel, EventType, TimeQuality } from "../../evidence/index.ts";
import { bytesEqual } from "../../evidence/index.ts";
import { StoreError } from "./errors.ts";
import { auditGenesisHash, auditHash, decodeCursor, encodeCursor, pageLimit } from "./rows.ts";
import {
  MIGRATIONS,
  MIGRATIONS_TABLE,
  migrationDdl,
  readingBucket,
  SCHEMA_VERSION,
  tableDdl,
} from "./schema.ts";
import {
  ALERT_SNAPSHOT_BYTES_MAX,
  type AlertInput,
  type AlertQuery,
  type AlertRow,
  type AlertState,
  type ApiTokenRow,
  AUDIT_DETAIL_BYTES_MAX,
  AUDIT_VERIFY_PAGE_ROWS,
  type AuditEntry,
  type AuditVerifyReport,
  type BatchCommit,
  type BatchCommitResult,
  COMMIT_EVENTS_MAX,
  COMMIT_GAPS_MAX,
  COMMIT_METERS_MAX,
  COMMIT_READING_ROWS_MAX,
  type ConcentratorRow,
  type EventRow,
  type EvidenceExport,
  EXPORT_EVENTS_MAX,
  EXPORT_READING_ROWS_MAX,
  type FirmwareRow,
  GAP_CLASSES,
  type GapClass,
  type GapQuery,
  type GapRow,
  type GapSummary,
  type HeadendStore,
  type MeterPatch,
  type MeterQuery,
  type MeterReadingUpdate,
  type MeterRow,
  type Page,
  type PageRequest,
  type ReadingQuery,
  type ReadingRow,
  type RejectedBatch,
  type StoreCounts,
  type StoreDialect,
  type StoredBatchRow,
  type StoredGapRow,
} from "./types.ts";

// The part of the store both dialects share: every query is written once with `?` placeholders (the
// PostgreSQL executor renumbers them to $n). A back end supplies the executor, transactions, and its
// fastest bulk path for the two hot inserts of an ingest: reading rows and meter updates.

export type SqlValue = string | number | Uint8Array | null;
export type SqlRow = Readonly<Record<string, unknown>>;

export interface SqlExecutor {
  all(sql: string, params?: readonly SqlValue[]): Promise<SqlRow[]>;
  /** Returns the number of rows the statement changed. */
  run(sql: string, params?: readonly SqlValue[]): Promise<number>;
}

/** Rows per `IN (…)` list when looking up many keys at once (well under both dialects' parameter limits). */
const IN_LIST_MAX = 500;
/** Hour buckets one reading query seeks at once (10.7 days); a listing walks the range chunk by chunk. */
const READING_BUCKETS_PER_QUERY = 256;

const READING_COLUMNS =
  "meter_id, seq, obis, commit_id, dcu_id, batch_id, timestamp_ms, time_quality, value, scaler, unit, record_crc";
const METER_COLUMNS =
  "meter_id, dcu_id, model, meter_group, transformer_id, firmware_version, firmware_bank, tamper_state, " +
  "last_seq, last_reading_ms, time_quality, online, updated_ms";
const EVENT_COLUMNS =
  "meter_id, seq, type, level, timestamp_ms, time_quality, record, verified, dcu_id, received_ms";
const ALERT_COLUMNS =
  "alert_id, meter_id, dcu_id, type, level, counter, detected_ms, received_ms, stored_ms, state, " +
  "acknowledged_by, acknowledged_ms, resolved_by, resolved_ms, snapshot, aggregated_count, record, verified";
const BATCH_COLUMNS =
  "batch_id, dcu_id, epoch, commit_id_first, commit_id_last, record_count, merkle_root, batch_hash, " +
  "prev_batch_hash, received_ms, status, reason, readings_new, times_seen, header, records";
const GAP_COLUMNS =
  "gap_id, gap_class, meter_id, dcu_id, from_value, to_value, detected_ms, attributed_to, batch_id, resolved_ms";

export abstract class SqlStore implements HeadendStore {
  abstract readonly dialect: StoreDialect;
  abstract readonly description: string;
  /** Autocommit executor for single statements. */
  protected abstract readonly db: SqlExecutor;
  /** Runs `body` in one transaction that holds the write lock (SQLite BEGIN IMMEDIATE / PostgreSQL BEGIN). */
  protected abstract transaction<T>(body: (tx: SqlExecutor) => Promise<T>): Promise<T>;
  /** Inserts reading rows of one batch, skipping (meter_id, seq, obis) already stored; returns rows new. */
  protected abstract insertReadingRows(
    tx: SqlExecutor,
    dcuId: string,
    batchId: number,
    rows: readonly ReadingRow[],
  ): Promise<number>;
  /** Serialises audit appends across connections (PostgreSQL); SQLite's write lock already does. */
  protected abstract lockAudit(tx: SqlExecutor): Promise<void>;
  /** Serialises migrations across processes opening the same database. */
  protected abstract lockMigrations(tx: SqlExecutor): Promise<void>;
  abstract close(): Promise<void>;

  /** Larger of two nullable integer expressions (SQLite's MAX() is NULL if any argument is). */
  protected abstract greatest(a: string, b: string): string;
  /** Case-sensitive substring test of a text column against one `?` parameter. */
  protected abstract contains(column: string): string;

  // ───────────────────────────── schema ─────────────────────────────

  protected async migrate(nowMs: number): Promise<void> {
    for (const migration of MIGRATIONS) {
      await this.transaction(async (tx) => {
        await this.lockMigrations(tx);
        await tx.run(tableDdl(MIGRATIONS_TABLE, this.dialect));
        const current = await this.currentVersion(tx);
        if (current > SCHEMA_VERSION) {
          throw new StoreError(
            "SCHEMA_TOO_NEW",
            `database schema is at version ${current}, this build knows up to ${SCHEMA_VERSION}`,
            this.description,
          );
        }
        if (current >= migration.version) return;
        for (const ddl of migrationDdl(migration, this.dialect)) {
          try {
            await tx.run(ddl);
          } catch (error) {
            throw new StoreError(
              "MIGRATION_FAILED",
              `migration ${migration.version} (${migration.name}) failed: ${(error as Error).message}`,
              this.description,
              { cause: error },
            );
          }
        }
        await tx.run("INSERT INTO schema_migrations (version, name, applied_ms) VALUES (?, ?, ?)", [
          migration.version,
          migration.name,
          nowMs,
        ]);
      });
    }
  }

  private async currentVersion(ex: SqlExecutor): Promise<number> {
    const rows = await ex.all("SELECT COALESCE(MAX(version), 0) AS v FROM schema_migrations");
    return Number(rows[0]?.v ?? 0);
  }

  async schemaVersion(): Promise<number> {
    return this.currentVersion(this.db);
  }

  // ───────────────────────────── concentrators ─────────────────────────────

  async putConcentrator(dcuId: string, publicKey: Uint8Array, atMs: number): Promise<void> {
    await this.db.run(
      "INSERT INTO concentrators (dcu_id, public_key, registered_ms, updated_ms) VALUES (?, ?, ?, ?) " +
        "ON CONFLICT (dcu_id) DO UPDATE SET public_key = excluded.public_key, updated_ms = excluded.updated_ms",
      [dcuId, publicKey, atMs, atMs],
    );
  }

  async getConcentrator(dcuId: string): Promise<ConcentratorRow | null> {
    const rows = await this.db.all("SELECT * FROM concentrators WHERE dcu_id = ?", [dcuId]);
    return rows[0] === undefined ? null : concentratorFromRow(rows[0]);
  }

  async listConcentrators(): Promise<ConcentratorRow[]> {
    const rows = await this.db.all("SELECT * FROM concentrators ORDER BY dcu_id");
    return rows.map(concentratorFromRow);
  }

  // ───────────────────────────── batches ─────────────────────────────

  async hasBatch(batchId: number, dcuId: string): Promise<boolean> {
    const rows = await this.db.all(
      "SELECT 1 AS x FROM batches WHERE dcu_id = ? AND batch_id = ? AND status = 'accepted'",
      [dcuId, batchId],
    );
    return rows.length > 0;
  }

  async getBatch(batchId: number, dcuId: string): Promise<StoredBatchRow | null> {
    const rows = await this.db.all(
      `SELECT ${BATCH_COLUMNS} FROM batches WHERE dcu_id = ? AND batch_id = ? AND status = 'accepted'`,
      [dcuId, batchId],
    );
    return rows[0] === undefined ? null : batchFromRow(rows[0]);
  }

  async commitBatch(commit: BatchCommit): Promise<BatchCommitResult> {
    const { batch, readings, gaps, events } = commit;
    const where = `commitBatch ${batch.dcuId}/${batch.batchId}`;
    bound(readings.length, COMMIT_READING_ROWS_MAX, "reading rows", where);
    bound(gaps.length, COMMIT_GAPS_MAX, "gaps", where);
    bound(events.length, COMMIT_EVENTS_MAX, "events", where);
    const meters = mergeMeterUpdates(commit.meters);
    bound(meters.length, COMMIT_METERS_MAX, "meters", where);
    for (const r of readings) {
      if (r.dcuId !== batch.dcuId || r.batchId !== batch.batchId) {
        throw new StoreError(
          "BAD_ROW",
          `reading ${r.meterId} seq ${r.seq} names batch ${r.dcuId}/${r.batchId}, not the one committed`,
          where,
        );
      }
    }
    const duplicate: BatchCommitResult = {
      batchNew: false,
      readingsNew: 0,
      readingsDuplicate: readings.length,
      gapsNew: 0,
      eventsNew: 0,
    };
    try {
      return await this.transaction(async (tx) => {
        // Under SQLite's write lock this check is final. On PostgreSQL two sessions may both pass it; the
        // partial unique index then stops the later one at the batch row below, and it rolls back.
        const seen = await tx.all(
          "SELECT 1 AS x FROM batches WHERE dcu_id = ? AND batch_id = ? AND status = 'accepted'",
          [batch.dcuId, batch.batchId],
        );
        if (seen.length > 0) return duplicate;
        const readingsNew =
          readings.length === 0 ? 0 : await this.insertReadingRows(tx, batch.dcuId, batch.batchId, readings);
        // Written once, after the readings, so the row (and its records blob) is never rewritten: the
        // per-batch count of new rows is what amiproof_readings_stored_total sums (no hot counter row).
        const inserted = await tx.all(
          `INSERT INTO batches (batch_id, dcu_id, epoch, commit_id_first, commit_id_last, record_count,
             merkle_root, batch_hash, prev_batch_hash, received_ms, status, readings_new, header, records)
           VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'accepted', ?, ?, ?)
           ON CONFLICT (dcu_id, batch_id) WHERE status = 'accepted' DO NOTHING RETURNING id`,
          [
            batch.batchId,
            batch.dcuId,
            batch.epoch,
            batch.commitIdFirst,
            batch.commitIdLast,
            batch.recordCount,
            batch.merkleRoot,
            batch.batchHash,
            batch.prevBatchHash,
            batch.receivedMs,
            readingsNew,
            batch.header,
            batch.records,
          ],
        );
        if (inserted.length === 0) throw new ConcurrentDuplicate();
        const gapsNew = await this.insertGapRows(tx, gaps);
        const eventsNew = await this.insertEventRows(tx, events);
        if (meters.length > 0) await this.applyMeterUpdates(tx, meters, batch.receivedMs);
        const head = commit.chainHead;
        const moved = await tx.run(
          "UPDATE concentrators SET last_batch_hash = ?, last_batch_id = ?, epoch = ?, updated_ms = ? WHERE dcu_id = ?",
          [head.lastBatchHash, head.lastBatchId, head.epoch, batch.receivedMs, batch.dcuId],
        );
        if (moved !== 1) {
          throw new StoreError("NOT_FOUND", `concentrator ${batch.dcuId} is not registered`, where);
        }
        return {
          batchNew: true,
          readingsNew,
          readingsDuplicate: readings.length - readingsNew,
          gapsNew,
          eventsNew,
        };
      });
    } catch (error) {
      if (error instanceof ConcurrentDuplicate) return duplicate;
      throw error;
    }
  }

  /** Meter updates merged per meter: the newest reading wins, seq and time only move forward. */
  protected async applyMeterUpdates(
    tx: SqlExecutor,
    updates: readonly MeterReadingUpdate[],
    atMs: number,
  ): Promise<void> {
    const sql = this.meterUpdateSql();
    for (const u of updates) {
      await tx.run(sql, [u.meterId, u.dcuId, u.lastSeq, u.lastReadingMs, u.timeQuality, atMs]);
    }
  }

  protected meterUpdateSql(): string {
    return `INSERT INTO meters (meter_id, dcu_id, last_seq, last_reading_ms, time_quality, online, updated_ms)
      VALUES (?, ?, ?, ?, ?, 1, ?)
      ON CONFLICT (meter_id) DO UPDATE SET
        dcu_id = excluded.dcu_id,
        last_seq = ${this.greatest("meters.last_seq", "excluded.last_seq")},
        time_quality = CASE WHEN meters.last_reading_ms IS NULL OR excluded.last_reading_ms >= meters.last_reading_ms
          THEN excluded.time_quality ELSE meters.time_quality END,
        last_reading_ms = ${this.greatest("meters.last_reading_ms", "excluded.last_reading_ms")},
        online = 1,
        updated_ms = excluded.updated_ms`;
  }

  async recordRejectedBatch(rejected: RejectedBatch): Promise<void> {
    await this.db.run(
      `INSERT INTO batches (batch_id, dcu_id, batch_hash, received_ms, status, reason, header)
       VALUES (?, ?, ?, ?, 'rejected', ?, ?)
       ON CONFLICT (dcu_id, batch_id, reason, batch_hash) WHERE status = 'rejected'
       DO UPDATE SET times_seen = batches.times_seen + 1, received_ms = excluded.received_ms`,
      [
        rejected.batchId,
        rejected.dcuId,
        rejected.batchHash,
        rejected.receivedMs,
        rejected.reason,
        rejected.header,
      ],
    );
  }

  // ───────────────────────────── meters ─────────────────────────────

  async upsertMeter(patch: MeterPatch): Promise<void> {
    const fields: [string, SqlValue][] = [];
    const set = (column: string, value: SqlValue | undefined) => {
      if (value !== undefined) fields.push([column, value]);
    };
    set("dcu_id", patch.dcuId);
    set("model", patch.model);
    set("meter_group", patch.group);
    set("transformer_id", patch.transformerId);
    set("firmware_version", patch.firmwareVersion);
    set("firmware_bank", patch.firmwareBank);
    set("tamper_state", patch.tamperState);
    set("online", patch.online === undefined ? undefined : patch.online ? 1 : 0);
    set("updated_ms", patch.updatedMs);
    const columns = ["meter_id", ...fields.map(([c]) => c)];
    const updates = fields.map(([c]) => `${c} = excluded.${c}`).join(", ");
    await this.db.run(
      `INSERT INTO meters (${columns.join(", ")}) VALUES (${columns.map(() => "?").join(", ")})
       ON CONFLICT (meter_id) DO UPDATE SET ${updates}`,
      [patch.meterId, ...fields.map(([, v]) => v)],
    );
  }

  async getMeter(meterId: string): Promise<MeterRow | null> {
    const rows = await this.db.all(`SELECT ${METER_COLUMNS} FROM meters WHERE meter_id = ?`, [meterId]);
    return rows[0] === undefined ? null : meterFromRow(rows[0]);
  }

  async listMeters(query: MeterQuery): Promise<Page<MeterRow> & { readonly total: number }> {
    const limit = pageLimit(query);
    const filters: string[] = [];
    const params: SqlValue[] = [];
    const eq = (column: string, value: string | number | undefined) => {
      if (value === undefined) return;
      filters.push(`${column} = ?`);
      params.push(value);
    };
    eq("dcu_id", query.dcuId);
    eq("meter_group", query.group);
    eq("model", query.model);
    eq("transformer_id", query.transformerId);
    eq("tamper_state", query.tamperState);
    eq("online", query.online === undefined ? undefined : query.online ? 1 : 0);
    if (query.search !== undefined && query.search !== "") {
      filters.push(this.contains("meter_id"));
      params.push(query.search);
    }
    if (query.staleBeforeMs !== undefined) {
      filters.push("(last_reading_ms IS NULL OR last_reading_ms < ?)");
      params.push(query.staleBeforeMs);
    }
    const filtered = filters.length === 0 ? "" : `WHERE ${filters.join(" AND ")}`;
    const totalRows = await this.db.all(`SELECT COUNT(*) AS n FROM meters ${filtered}`, params);
    const pageFilters = [...filters];
    const pageParams = [...params];
    if (query.cursor != null) {
      const [after] = decodeCursor(query.cursor, ["string"]);
      pageFilters.push("meter_id > ?");
      pageParams.push(after as string);
    }
    const pageWhere = pageFilters.length === 0 ? "" : `WHERE ${pageFilters.join(" AND ")}`;
    const rows = await this.db.all(
      `SELECT ${METER_COLUMNS} FROM meters ${pageWhere} ORDER BY meter_id LIMIT ?`,
      [...pageParams, limit + 1],
    );
    const page = toPage(rows.map(meterFromRow), limit, (m) => [m.meterId]);
    return { ...page, total: Number(totalRows[0]?.n ?? 0) };
  }

  async setMetersOnline(meterIds: readonly string[], online: boolean, atMs: number): Promise<number> {
    let changed = 0;
    for (const chunk of chunks(meterIds, IN_LIST_MAX)) {
      changed += await this.db.run(
        `UPDATE meters SET online = ?, updated_ms = ? WHERE online <> ? AND meter_id IN (${placeholders(chunk.length)})`,
        [online ? 1 : 0, atMs, online ? 1 : 0, ...chunk],
      );
    }
    return changed;
  }

  // ───────────────────────────── readings, events, gaps ─────────────────────────────

  async listReadings(query: ReadingQuery): Promise<Page<ReadingRow>> {
    const limit = pageLimit(query);
    let after: { bucket: number; seq: number; obis: string } | null = null;
    if (query.cursor != null) {
      const [bucket, seq, obis] = decodeCursor(query.cursor, ["number", "number", "string"]);
      after = { bucket: bucket as number, seq: seq as number, obis: obis as string };
    }
    const rows = await this.readingsInRange(
      query.meterId,
      query.fromMs,
      query.toMs,
      limit + 1,
      after,
      query.obis,
    );
    return toPage(rows, limit, (r) => [readingBucket(r.timestampMs), r.seq, r.obis]);
  }

  /**
   * A meter's readings with timestamp in [fromMs, toMs), in (hour, seq, obis) order, at most `max` rows.
   * Walks the hour buckets of the range a chunk at a time: each bucket is one seek on the primary key.
   */
  private async readingsInRange(
    meterId: string,
    fromMs: number,
    toMs: number,
    max: number,
    after: { bucket: number; seq: number; obis: string } | null,
    obis?: string,
  ): Promise<ReadingRow[]> {
    const out: ReadingRow[] = [];
    if (toMs <= fromMs) return out;
    const lastBucket = readingBucket(toMs - 1);
    let bucket = Math.max(readingBucket(fromMs), after?.bucket ?? Number.MIN_SAFE_INTEGER);
    while (bucket <= lastBucket && out.length < max) {
      const buckets: number[] = [];
      for (let b = bucket; b <= lastBucket && buckets.length < READING_BUCKETS_PER_QUERY; b++)
        buckets.push(b);
      const filters = [
        `bucket IN (${placeholders(buckets.length)})`,
        "meter_id = ?",
        "timestamp_ms >= ?",
        "timestamp_ms < ?",
      ];
      const params: SqlValue[] = [...buckets, meterId, fromMs, toMs];
      if (obis !== undefined) {
        filters.push("obis = ?");
        params.push(obis);
      }
      if (after !== null && after.bucket >= bucket) {
        filters.push("(bucket > ? OR seq > ? OR (seq = ? AND obis > ?))");
        params.push(after.bucket, after.seq, after.seq, after.obis);
      }
      const rows = await this.db.all(
        `SELECT ${READING_COLUMNS} FROM readings WHERE ${filters.join(" AND ")}
         ORDER BY bucket, seq, obis LIMIT ?`,
        [...params, max - out.length],
      );
      for (const r of rows) out.push(readingFromRow(r));
      bucket = buckets[buckets.length - 1]! + 1;
    }
    return out;
  }

  async insertEvents(events: readonly EventRow[]): Promise<number> {
    bound(events.length, COMMIT_EVENTS_MAX, "events", "insertEvents");
    if (events.length === 0) return 0;
    return this.transaction((tx) => this.insertEventRows(tx, events));
  }

  private async insertEventRows(tx: SqlExecutor, events: readonly EventRow[]): Promise<number> {
    let inserted = 0;
    for (const e of events) {
      inserted += await tx.run(
        `INSERT INTO events (${EVENT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
         ON CONFLICT (meter_id, seq) DO NOTHING`,
        [
          e.meterId,
          e.seq,
          e.type,
          e.level,
          e.timestampMs,
          e.timeQuality,
          e.record,
          e.verified ? 1 : 0,
          e.dcuId,
          e.receivedMs,
        ],
      );
    }
    return inserted;
  }

  async listEvents(
    meterId: string,
    fromMs: number,
    toMs: number,
    page?: PageRequest,
  ): Promise<Page<EventRow>> {
    const limit = pageLimit(page);
    const filters = ["meter_id = ?", "timestamp_ms >= ?", "timestamp_ms < ?"];
    const params: SqlValue[] = [meterId, fromMs, toMs];
    if (page?.cursor != null) {
      const [ts, seq] = decodeCursor(page.cursor, ["number", "number"]);
      filters.push("(timestamp_ms > ? OR (timestamp_ms = ? AND seq > ?))");
      params.push(ts!, ts!, seq!);
    }
    const rows = await this.db.all(
      `SELECT ${EVENT_COLUMNS} FROM events WHERE ${filters.join(" AND ")} ORDER BY timestamp_ms, seq LIMIT ?`,
      [...params, limit + 1],
    );
    return toPage(rows.map(eventFromRow), limit, (e) => [e.timestampMs, e.seq]);
  }

  async insertGaps(gaps: readonly GapRow[]): Promise<number> {
    bound(gaps.length, COMMIT_GAPS_MAX, "gaps", "insertGaps");
    if (gaps.length === 0) return 0;
    return this.transaction((tx) => this.insertGapRows(tx, gaps));
  }

  private async insertGapRows(tx: SqlExecutor, gaps: readonly GapRow[]): Promise<number> {
    let inserted = 0;
    for (const g of gaps) {
      inserted += await tx.run(
        `INSERT INTO gaps (gap_class, meter_id, dcu_id, from_value, to_value, detected_ms, attributed_to, batch_id)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?)
         ON CONFLICT (gap_class, dcu_id, meter_id, from_value, to_value) DO NOTHING`,
        [g.gapClass, g.meterId, g.dcuId, g.from, g.to, g.detectedMs, g.attributedTo, g.batchId],
      );
    }
    return inserted;
  }

  async resolveGap(gapId: number, atMs: number): Promise<boolean> {
    const changed = await this.db.run(
      "UPDATE gaps SET resolved_ms = ? WHERE gap_id = ? AND resolved_ms IS NULL",
      [atMs, gapId],
    );
    return changed === 1;
  }

  async listGaps(query: GapQuery): Promise<Page<StoredGapRow>> {
    const limit = pageLimit(query);
    const filters: string[] = [];
    const params: SqlValue[] = [];
    if (query.gapClass !== undefined) {
      filters.push("gap_class = ?");
      params.push(query.gapClass);
    }
    if (query.meterId !== undefined) {
      filters.push("meter_id = ?");
      params.push(query.meterId);
    }
    if (query.dcuId !== undefined) {
      filters.push("dcu_id = ?");
      params.push(query.dcuId);
    }
    if (query.openOnly === true) filters.push("resolved_ms IS NULL");
    if (query.cursor != null) {
      const [before] = decodeCursor(query.cursor, ["number"]);
      filters.push("gap_id < ?");
      params.push(before!);
    }
    const where = filters.length === 0 ? "" : `WHERE ${filters.join(" AND ")}`;
    const rows = await this.db.all(`SELECT ${GAP_COLUMNS} FROM gaps ${where} ORDER BY gap_id DESC LIMIT ?`, [
      ...params,
      limit + 1,
    ]);
    return toPage(rows.map(gapFromRow), limit, (g) => [g.gapId]);
  }

  async gapSummary(): Promise<GapSummary[]> {
    const rows = await this.db.all(
      `SELECT gap_class, COUNT(*) AS n,
         SUM(CASE WHEN resolved_ms IS NULL THEN 1 ELSE 0 END) AS open,
         SUM(to_value - from_value + 1) AS width
       FROM gaps GROUP BY gap_class`,
    );
    const byClass = new Map(rows.map((r) => [String(r.gap_class), r]));
    return GAP_CLASSES.map((gapClass) => {
      const r = byClass.get(gapClass);
      return {
        gapClass,
        count: Number(r?.n ?? 0),
        open: Number(r?.open ?? 0),
        width: Number(r?.width ?? 0),
      };
    });
  }

  // ───────────────────────────── alerts ─────────────────────────────

  async insertAlert(alert: AlertInput): Promise<{ readonly alertId: number; readonly isNew: boolean }> {
    const snapshot = JSON.stringify(alert.snapshot);
    if (Buffer.byteLength(snapshot, "utf8") > ALERT_SNAPSHOT_BYTES_MAX) {
      throw new StoreError("LIMIT", `alert snapshot over ${ALERT_SNAPSHOT_BYTES_MAX} bytes`, "insertAlert");
    }
    if (!Number.isSafeInteger(alert.aggregatedCount) || alert.aggregatedCount < 1) {
      throw new StoreError(
        "BAD_ROW",
        `aggregated_count must be >= 1, got ${alert.aggregatedCount}`,
        "insertAlert",
      );
    }
    const inserted = await this.db.all(
      `INSERT INTO alerts (meter_id, dcu_id, type, level, counter, detected_ms, received_ms, stored_ms,
         snapshot, aggregated_count, record, verified)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
       ON CONFLICT (meter_id, counter) DO NOTHING RETURNING alert_id`,
      [
        alert.meterId,
        alert.dcuId,
        alert.type,
        alert.level,
        alert.counter,
        alert.detectedMs,
        alert.receivedMs,
        alert.storedMs,
        snapshot,
        alert.aggregatedCount,
        alert.record,
        alert.verified ? 1 : 0,
      ],
    );
    if (inserted[0] !== undefined) return { alertId: Number(inserted[0].alert_id), isNew: true };
    const existing = await this.db.all("SELECT alert_id FROM alerts WHERE meter_id = ? AND counter = ?", [
      alert.meterId,
      alert.counter,
    ]);
    if (existing[0] === undefined) {
      throw new StoreError(
        "QUERY_FAILED",
        "alert neither inserted nor found",
        `insertAlert ${alert.meterId}`,
      );
    }
    return { alertId: Number(existing[0].alert_id), isNew: false };
  }

  async getAlert(alertId: number): Promise<AlertRow | null> {
    const rows = await this.db.all(`SELECT ${ALERT_COLUMNS} FROM alerts WHERE alert_id = ?`, [alertId]);
    return rows[0] === undefined ? null : alertFromRow(rows[0]);
  }

  // open → acknowledged → resolved; open → resolved. Repeating a transition is a no-op, going back refused.
  async acknowledgeAlert(alertId: number, by: string, atMs: number): Promise<AlertRow> {
    await this.db.run(
      "UPDATE alerts SET state = 'acknowledged', acknowledged_by = ?, acknowledged_ms = ? WHERE alert_id = ? AND state = 'open'",
      [by, atMs, alertId],
    );
    return this.alertInState(alertId, "acknowledged", ["acknowledged"]);
  }

  async resolveAlert(alertId: number, by: string, atMs: number): Promise<AlertRow> {
    await this.db.run(
      "UPDATE alerts SET state = 'resolved', resolved_by = ?, resolved_ms = ? WHERE alert_id = ? AND state <> 'resolved'",
      [by, atMs, alertId],
    );
    return this.alertInState(alertId, "resolved", ["resolved"]);
  }

  private async alertInState(
    alertId: number,
    target: AlertState,
    ok: readonly AlertState[],
  ): Promise<AlertRow> {
    const row = await this.getAlert(alertId);
    if (row === null) throw new StoreError("NOT_FOUND", `no alert ${alertId}`, `alert ${target}`);
    if (!ok.includes(row.state)) {
      throw new StoreError("BAD_STATE", `alert ${alertId} is ${row.state}, cannot become ${target}`);
    }
    return row;
  }

  async listAlerts(query: AlertQuery): Promise<Page<AlertRow>> {
    const limit = pageLimit(query);
    const filters: string[] = [];
    const params: SqlValue[] = [];
    if (query.state !== undefined) {
      filters.push("state = ?");
      params.push(query.state);
    }
    if (query.type !== undefined) {
      filters.push("type = ?");
      params.push(query.type);
    }
    if (query.meterId !== undefined) {
      filters.push("meter_id = ?");
      params.push(query.meterId);
    }
    if (query.cursor != null) {
      const [before] = decodeCursor(query.cursor, ["number"]);
      filters.push("alert_id < ?");
      params.push(before!);
    }
    const where = filters.length === 0 ? "" : `WHERE ${filters.join(" AND ")}`;
    const rows = await this.db.all(
      `SELECT ${ALERT_COLUMNS} FROM alerts ${where} ORDER BY alert_id DESC LIMIT ?`,
      [...params, limit + 1],
    );
    return toPage(rows.map(alertFromRow), limit, (a) => [a.alertId]);
  }

  // ───────────────────────────── firmware ─────────────────────────────

  async putFirmware(firmware: FirmwareRow): Promise<boolean> {
    const changed = await this.db.run(
      `INSERT INTO firmware (component, version, release_counter, checksum, size_bytes, image, expiry_ms, uploaded_ms)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING`,
      [
        firmware.component,
        firmware.version,
        firmware.releaseCounter,
        firmware.checksum,
        firmware.image.length,
        firmware.image,
        firmware.expiryMs,
        firmware.uploadedMs,
      ],
    );
    if (changed === 1) return true;
    // Idempotent for the same image; a different image under a stored name or checksum is refused.
    const rows = await this.db.all(
      "SELECT component, version, checksum FROM firmware WHERE (component = ? AND version = ?) OR checksum = ?",
      [firmware.component, firmware.version, firmware.checksum],
    );
    const same = rows.find(
      (r) =>
        r.component === firmware.component &&
        r.version === firmware.version &&
        r.checksum === firmware.checksum,
    );
    if (same === undefined || rows.length !== 1) {
      throw new StoreError(
        "BAD_ROW",
        `firmware ${firmware.component} ${firmware.version} (${firmware.checksum.slice(0, 16)}…) conflicts with a stored image`,
        "putFirmware",
      );
    }
    return false;
  }

  async getFirmware(component: string, version: string): Promise<FirmwareRow | null> {
    const rows = await this.db.all("SELECT * FROM firmware WHERE component = ? AND version = ?", [
      component,
      version,
    ]);
    const r = rows[0];
    if (r === undefined) return null;
    return { ...firmwareInfoFromRow(r), image: toBytes(r.image) };
  }

  async listFirmware(): Promise<Omit<FirmwareRow, "image">[]> {
    const rows = await this.db.all(
      "SELECT component, version, release_counter, checksum, expiry_ms, uploaded_ms FROM firmware ORDER BY component, release_counter",
    );
    return rows.map(firmwareInfoFromRow);
  }

  // ───────────────────────────── audit ─────────────────────────────

  async appendAudit(entry: {
    atMs: number;
    actor: string;
    action: string;
    detail: unknown;
  }): Promise<AuditEntry> {
    const detail = JSON.stringify(entry.detail ?? null);
    if (Buffer.byteLength(detail, "utf8") > AUDIT_DETAIL_BYTES_MAX) {
      throw new StoreError(
        "LIMIT",
        `audit detail over ${AUDIT_DETAIL_BYTES_MAX} bytes`,
        `audit ${entry.action}`,
      );
    }
    return this.transaction(async (tx) => {
      await this.lockAudit(tx);
      const last = await tx.all("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1");
      const seq = last[0] === undefined ? 1 : Number(last[0].seq) + 1;
      const prevHash = last[0] === undefined ? auditGenesisHash() : toBytes(last[0].hash);
      const hash = auditHash(prevHash, seq, entry.atMs, entry.actor, entry.action, detail);
      await tx.run(
        "INSERT INTO audit (seq, at_ms, actor, action, detail, prev_hash, hash) VALUES (?, ?, ?, ?, ?, ?, ?)",
        [seq, entry.atMs, entry.actor, entry.action, detail, prevHash, hash],
      );
      return { seq, atMs: entry.atMs, actor: entry.actor, action: entry.action, detail, prevHash, hash };
    });
  }

  async listAudit(page?: PageRequest): Promise<Page<AuditEntry>> {
    const limit = pageLimit(page);
    const params: SqlValue[] = [];
    let where = "";
    if (page?.cursor != null) {
      const [before] = decodeCursor(page.cursor, ["number"]);
      where = "WHERE seq < ?";
      params.push(before!);
    }
    const rows = await this.db.all(`SELECT * FROM audit ${where} ORDER BY seq DESC LIMIT ?`, [
      ...params,
      limit + 1,
    ]);
    return toPage(rows.map(auditFromRow), limit, (a) => [a.seq]);
  }

  async verifyAudit(): Promise<AuditVerifyReport> {
    let prevHash = auditGenesisHash();
    let expectedSeq = 1;
    for (;;) {
      const rows = await this.db.all("SELECT * FROM audit WHERE seq >= ? ORDER BY seq LIMIT ?", [
        expectedSeq,
        AUDIT_VERIFY_PAGE_ROWS,
      ]);
      for (const row of rows) {
        const e = auditFromRow(row);
        const fail = (message: string): AuditVerifyReport => ({
          ok: false,
          entries: expectedSeq - 1,
          headHash: prevHash,
          problem: { seq: e.seq, message },
        });
        if (e.seq !== expectedSeq) return fail(`entry ${expectedSeq} is missing (next stored is ${e.seq})`);
        if (!bytesEqual(e.prevHash, prevHash))
          return fail("prev_hash does not match the previous entry's hash");
        const computed = auditHash(prevHash, e.seq, e.atMs, e.actor, e.action, e.detail);
        if (!bytesEqual(computed, e.hash))
          return fail("hash does not match the entry's content (entry edited)");
        prevHash = e.hash;
        expectedSeq++;
      }
      if (rows.length < AUDIT_VERIFY_PAGE_ROWS) break;
    }
    return { ok: true, entries: expectedSeq - 1, headHash: prevHash, problem: null };
  }

  // ───────────────────────────── API tokens ─────────────────────────────

  async putApiToken(token: ApiTokenRow): Promise<void> {
    // A revoked token stays revoked: re-registering the same hash changes role and label only.
    await this.db.run(
      `INSERT INTO api_tokens (token_hash, role, label, created_ms, revoked_ms) VALUES (?, ?, ?, ?, ?)
       ON CONFLICT (token_hash) DO UPDATE SET role = excluded.role, label = excluded.label`,
      [token.tokenHash, token.role, token.label, token.createdMs, token.revokedMs],
    );
  }

  async findApiToken(tokenHash: string): Promise<ApiTokenRow | null> {
    const rows = await this.db.all("SELECT * FROM api_tokens WHERE token_hash = ?", [tokenHash]);
    const r = rows[0];
    if (r === undefined) return null;
    return {
      tokenHash: String(r.token_hash),
      role: String(r.role),
      label: String(r.label),
      createdMs: Number(r.created_ms),
      revokedMs: numOrNull(r.revoked_ms),
    };
  }

  async revokeApiToken(tokenHash: string, atMs: number): Promise<boolean> {
    const changed = await this.db.run(
      "UPDATE api_tokens SET revoked_ms = ? WHERE token_hash = ? AND revoked_ms IS NULL",
      [atMs, tokenHash],
    );
    return changed === 1;
  }

  // ───────────────────────────── reporting ─────────────────────────────

  async counts(): Promise<StoreCounts> {
    const accepted = await this.db.all(
      "SELECT COUNT(*) AS n, COALESCE(SUM(readings_new), 0) AS readings FROM batches WHERE status = 'accepted'",
    );
    const rejected = await this.db.all(
      "SELECT reason, SUM(times_seen) AS n FROM batches WHERE status = 'rejected' GROUP BY reason",
    );
    const alerts = await this.db.all("SELECT type, COUNT(*) AS n FROM alerts GROUP BY type");
    const gaps = await this.db.all("SELECT gap_class, COUNT(*) AS n FROM gaps GROUP BY gap_class");
    const meters = await this.db.all(
      "SELECT COUNT(*) AS n, COALESCE(SUM(CASE WHEN online = 1 THEN 1 ELSE 0 END), 0) AS online FROM meters",
    );
    const events = await this.db.all("SELECT COUNT(*) AS n FROM events");
    const gapsTotal = Object.fromEntries(GAP_CLASSES.map((c) => [c, 0])) as Record<GapClass, number>;
    for (const r of gaps) gapsTotal[String(r.gap_class) as GapClass] = Number(r.n);
    return {
      readingsStoredTotal: Number(accepted[0]?.readings ?? 0),
      batchesAcceptedTotal: Number(accepted[0]?.n ?? 0),
      batchesRejectedTotal: Object.fromEntries(rejected.map((r) => [String(r.reason), Number(r.n)])),
      alertsTotal: Object.fromEntries(alerts.map((r) => [String(r.type), Number(r.n)])),
      gapsTotal,
      metersOnline: Number(meters[0]?.online ?? 0),
      metersTotal: Number(meters[0]?.n ?? 0),
      eventsTotal: Number(events[0]?.n ?? 0),
    };
  }

  async exportEvidence(meterId: string, fromMs: number, toMs: number): Promise<EvidenceExport> {
    const where = `exportEvidence ${meterId} ${fromMs}..${toMs}`;
    const readings = await this.readingsInRange(meterId, fromMs, toMs, EXPORT_READING_ROWS_MAX + 1, null);
    bound(readings.length, EXPORT_READING_ROWS_MAX, "reading rows (narrow the time range)", where);
    const eventRows = await this.db.all(
      `SELECT ${EVENT_COLUMNS} FROM events WHERE meter_id = ? AND timestamp_ms >= ? AND timestamp_ms < ?
       ORDER BY seq LIMIT ?`,
      [meterId, fromMs, toMs, EXPORT_EVENTS_MAX + 1],
    );
    bound(eventRows.length, EXPORT_EVENTS_MAX, "events (narrow the time range)", where);
    const batchIdsByDcu = new Map<string, Set<number>>();
    for (const r of readings) {
      const ids = batchIdsByDcu.get(r.dcuId) ?? new Set<number>();
      batchIdsByDcu.set(r.dcuId, ids);
      ids.add(r.batchId);
    }
    const batches: StoredBatchRow[] = [];
    for (const [dcuId, ids] of [...batchIdsByDcu].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) {
      for (const chunk of chunks(
        [...ids].sort((a, b) => a - b),
        IN_LIST_MAX,
      )) {
        const rows = await this.db.all(
          `SELECT ${BATCH_COLUMNS} FROM batches WHERE status = 'accepted' AND dcu_id = ?
           AND batch_id IN (${placeholders(chunk.length)}) ORDER BY batch_id`,
          [dcuId, ...chunk],
        );
        batches.push(...rows.map(batchFromRow));
      }
    }
    return { readings, events: eventRows.map(eventFromRow), batches };
  }
}

// ───────────────────────────── helpers ─────────────────────────────

/** Rolls back a commit that lost the race for its (dcu_id, batch_id) to a concurrent session. */
class ConcurrentDuplicate extends Error {}

function bound(count: number, max: number, what: string, where: string): void {
  if (count > max) throw new StoreError("LIMIT", `${count} ${what}, at most ${max}`, where);
}

export function placeholders(count: number): string {
  return Array.from({ length: count }, () => "?").join(", ");
}

function chunks<T>(items: readonly T[], size: number): T[][] {
  const out: T[][] = [];
  for (let i = 0; i < items.length; i += size) out.push(items.slice(i, i + size));
  return out;
}

/** One update per meter: the highest seq, the newest reading time and that reading's time quality. */
export function mergeMeterUpdates(updates: readonly MeterReadingUpdate[]): MeterReadingUpdate[] {
  const byMeter = new Map<string, MeterReadingUpdate>();
  for (const u of updates) {
    const seen = byMeter.get(u.meterId);
    if (seen === undefined) {
      byMeter.set(u.meterId, u);
      continue;
    }
    const newer = u.lastReadingMs >= seen.lastReadingMs ? u : seen;
    byMeter.set(u.meterId, {
      meterId: u.meterId,
      dcuId: newer.dcuId,
      lastSeq: Math.max(u.lastSeq, seen.lastSeq),
      lastReadingMs: newer.lastReadingMs,
      timeQuality: newer.timeQuality,
    });
  }
  return [...byMeter.values()];
}

function toPage<T>(rows: T[], limit: number, key: (row: T) => (string | number)[]): Page<T> {
  if (rows.length <= limit) return { items: rows, nextCursor: null };
  const items = rows.slice(0, limit);
  return { items, nextCursor: encodeCursor(key(items[items.length - 1]!)) };
}

function toBytes(value: unknown): Uint8Array {
  if (value instanceof Uint8Array) return new Uint8Array(value);
  throw new StoreError("QUERY_FAILED", `expected bytes from the database, got ${typeof value}`);
}

function bytesOrNull(value: unknown): Uint8Array | null {
  return value === null || value === undefined ? null : toBytes(value);
}

function numOrNull(value: unknown): number | null {
  return value === null || value === undefined ? null : Number(value);
}

function strOrNull(value: unknown): string | null {
  return value === null || value === undefined ? null : String(value);
}

function concentratorFromRow(r: SqlRow): ConcentratorRow {
  return {
    dcuId: String(r.dcu_id),
    publicKey: toBytes(r.public_key),
    lastBatchHash: bytesOrNull(r.last_batch_hash),
    lastBatchId: numOrNull(r.last_batch_id),
    epoch: numOrNull(r.epoch),
    registeredMs: Number(r.registered_ms),
    updatedMs: Number(r.updated_ms),
  };
}

function batchFromRow(r: SqlRow): StoredBatchRow {
  return {
    batchId: Number(r.batch_id),
    dcuId: String(r.dcu_id),
    epoch: Number(r.epoch),
    commitIdFirst: Number(r.commit_id_first),
    commitIdLast: Number(r.commit_id_last),
    recordCount: Number(r.record_count),
    merkleRoot: toBytes(r.merkle_root),
    batchHash: toBytes(r.batch_hash),
    prevBatchHash: toBytes(r.prev_batch_hash),
    receivedMs: Number(r.received_ms),
    header: bytesOrNull(r.header),
    records: bytesOrNull(r.records),
    status: String(r.status) as StoredBatchRow["status"],
    reason: strOrNull(r.reason),
    readingsNew: Number(r.readings_new),
    timesSeen: Number(r.times_seen),
  };
}

function meterFromRow(r: SqlRow): MeterRow {
  return {
    meterId: String(r.meter_id),
    dcuId: strOrNull(r.dcu_id),
    model: strOrNull(r.model),
    group: strOrNull(r.meter_group),
    transformerId: strOrNull(r.transformer_id),
    firmwareVersion: strOrNull(r.firmware_version),
    firmwareBank: strOrNull(r.firmware_bank),
    tamperState: String(r.tamper_state),
    lastSeq: numOrNull(r.last_seq),
    lastReadingMs: numOrNull(r.last_reading_ms),
    timeQuality: strOrNull(r.time_quality) as TimeQuality | null,
    online: Number(r.online) === 1,
    updatedMs: numOrNull(r.updated_ms),
  };
}

export function readingFromRow(r: SqlRow): ReadingRow {
  return {
    meterId: String(r.meter_id),
    seq: Number(r.seq),
    obis: String(r.obis),
    commitId: Number(r.commit_id),
    dcuId: String(r.dcu_id),
    batchId: Number(r.batch_id),
    timestampMs: Number(r.timestamp_ms),
    timeQuality: String(r.time_quality) as TimeQuality,
    value: Number(r.value),
    scaler: Number(r.scaler),
    unit: Number(r.unit),
    recordCrc: Number(r.record_crc),
  };
}

function eventFromRow(r: SqlRow): EventRow {
  return {
    meterId: String(r.meter_id),
    seq: Number(r.seq),
    type: String(r.type) as EventType,
    level: String(r.level) as EventLevel,
    timestampMs: Number(r.timestamp_ms),
    timeQuality: String(r.time_quality) as TimeQuality,
    record: toBytes(r.record),
    verified: Number(r.verified) === 1,
    dcuId: strOrNull(r.dcu_id),
    receivedMs: Number(r.received_ms),
  };
}

function gapFromRow(r: SqlRow): StoredGapRow {
  return {
    gapId: Number(r.gap_id),
    gapClass: String(r.gap_class) as GapClass,
    meterId: String(r.meter_id),
    dcuId: String(r.dcu_id),
    from: Number(r.from_value),
    to: Number(r.to_value),
    detectedMs: Number(r.detected_ms),
    attributedTo: strOrNull(r.attributed_to),
    batchId: numOrNull(r.batch_id),
    resolvedMs: numOrNull(r.resolved_ms),
  };
}

function alertFromRow(r: SqlRow): AlertRow {
  return {
    alertId: Number(r.alert_id),
    meterId: String(r.meter_id),
    dcuId: strOrNull(r.dcu_id),
    type: String(r.type),
    level: String(r.level) as EventLevel,
    counter: Number(r.counter),
    detectedMs: Number(r.detected_ms),
    receivedMs: Number(r.received_ms),
    storedMs: Number(r.stored_ms),
    state: String(r.state) as AlertState,
    acknowledgedBy: strOrNull(r.acknowledged_by),
    acknowledgedMs: numOrNull(r.acknowledged_ms),
    resolvedBy: strOrNull(r.resolved_by),
    resolvedMs: numOrNull(r.resolved_ms),
    snapshot: JSON.parse(String(r.snapshot)) as AlertRow["snapshot"],
    aggregatedCount: Number(r.aggregated_count),
    record: bytesOrNull(r.record),
    verified: Number(r.verified) === 1,
  };
}

function firmwareInfoFromRow(r: SqlRow): Omit<FirmwareRow, "image"> {
  return {
    component: String(r.component),
    version: String(r.version),
    releaseCounter: Number(r.release_counter),
    checksum: String(r.checksum),
    expiryMs: numOrNull(r.expiry_ms),
    uploadedMs: Number(r.uploaded_ms),
  };
}

function auditFromRow(r: SqlRow): AuditEntry {
  return {
    seq: Number(r.seq),
    atMs: Number(r.at_ms),
    actor: String(r.actor),
    action: String(r.action),
    detail: String(r.detail),
    prevHash: toBytes(r.prev_hash),
    hash: toBytes(r.hash),
  };
}
