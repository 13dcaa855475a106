import type { StoreDialect } from "./types.ts";

// The schema is written once, as data, and rendered to each dialect's DDL. Column types are abstract:
//   id   – surrogate key, increasing (SQLite rowid alias / PostgreSQL identity)
//   int  – 64-bit integer (SQLite INTEGER / PostgreSQL BIGINT): ms timestamps, seq, commit_id, flags 0/1
//   real – double
//   text – UTF-8 text; JSON is stored as text so both dialects hash and return the same bytes
//   blob – bytes (SQLite BLOB / PostgreSQL BYTEA)
// Migrations are numbered and append-only: a released migration is never edited, a change is a new one.

export type ColumnType = "id" | "int" | "real" | "text" | "blob";

export interface Column {
  readonly name: string;
  readonly type: ColumnType;
  readonly notNull?: boolean;
  /** SQL literal, identical in both dialects ('open', 0, x''…). */
  readonly default?: string;
  /** Allowed values of a text column, rendered as CHECK (name IN (…)). */
  readonly oneOf?: readonly string[];
}

export interface Table {
  readonly name: string;
  readonly columns: readonly Column[];
  readonly primaryKey?: readonly string[];
  /** SQLite only: cluster the rows on the primary key (one b-tree instead of rowid table + index). */
  readonly withoutRowid?: boolean;
}

export interface Index {
  readonly name: string;
  readonly table: string;
  readonly columns: readonly string[];
  readonly unique?: boolean;
  /** Partial index predicate, same text in both dialects. */
  readonly where?: string;
}

export type MigrationStep =
  | { readonly kind: "table"; readonly table: Table }
  | { readonly kind: "index"; readonly index: Index }
  | { readonly kind: "addColumn"; readonly table: string; readonly column: Column };

export interface Migration {
  readonly version: number;
  readonly name: string;
  readonly steps: readonly MigrationStep[];
}

const TIME_QUALITY = ["RTC_ONLY", "SYNCED", "HOLDOVER"] as const;

/**
 * Width of the readings key's time bucket: one hour. Part of the stored data (a row's key), so changing it
 * needs a migration that rewrites the table.
 */
export const READINGS_BUCKET_MS = 3_600_000;

export function readingBucket(timestampMs: number): number {
  return Math.floor(timestampMs / READINGS_BUCKET_MS);
}

const table = (t: Table): MigrationStep => ({ kind: "table", table: t });
const index = (i: Index): MigrationStep => ({ kind: "index", index: i });

export const MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    name: "initial schema",
    steps: [
      table({
        name: "meters",
        columns: [
          { name: "meter_id", type: "text", notNull: true },
          { name: "dcu_id", type: "text" },
          { name: "model", type: "text" },
          { name: "meter_group", type: "text" },
          { name: "transformer_id", type: "text" },
          { name: "firmware_version", type: "text" },
          { name: "firmware_bank", type: "text" },
          { name: "tamper_state", type: "text", notNull: true, default: "'CLEAR'" },
          { name: "last_seq", type: "int" },
          { name: "last_reading_ms", type: "int" },
          { name: "time_quality", type: "text", oneOf: TIME_QUALITY },
          { name: "online", type: "int", notNull: true, default: "0" },
          { name: "updated_ms", type: "int" },
        ],
        primaryKey: ["meter_id"],
      }),
      index({ name: "meters_dcu", table: "meters", columns: ["dcu_id", "meter_id"] }),
      index({ name: "meters_group", table: "meters", columns: ["meter_group", "meter_id"] }),
      index({ name: "meters_transformer", table: "meters", columns: ["transformer_id", "meter_id"] }),
      table({
        name: "concentrators",
        columns: [
          { name: "dcu_id", type: "text", notNull: true },
          { name: "public_key", type: "blob", notNull: true },
          { name: "last_batch_hash", type: "blob" },
          { name: "last_batch_id", type: "int" },
          { name: "epoch", type: "int" },
          { name: "registered_ms", type: "int", notNull: true },
          { name: "updated_ms", type: "int", notNull: true },
        ],
        primaryKey: ["dcu_id"],
      }),
      table({
        name: "readings",
        columns: [
          { name: "bucket", type: "int", notNull: true },
          { name: "meter_id", type: "text", notNull: true },
          { name: "seq", type: "int", notNull: true },
          { name: "obis", type: "text", notNull: true },
          { name: "commit_id", type: "int", notNull: true },
          { name: "dcu_id", type: "text", notNull: true },
          { name: "batch_id", type: "int", notNull: true },
          { name: "timestamp_ms", type: "int", notNull: true },
          { name: "time_quality", type: "text", notNull: true, oneOf: TIME_QUALITY },
          { name: "value", type: "int", notNull: true },
          { name: "scaler", type: "int", notNull: true },
          { name: "unit", type: "int", notNull: true },
          { name: "record_crc", type: "int", notNull: true },
        ],
        // seed 003 H2-4: (meter_id, seq) names a reading. The key leads with the reading's hour (bucket =
        // floor(timestamp_ms / READINGS_BUCKET_MS)) so one batch's rows land on a few adjacent pages instead
        // of one page per meter: measured WAL per 1,024-row batch ~0.1 MB against ~2.3 MB for a key led by
        // meter_id (README "Write cost"). A retried record is byte-identical, so it falls in the same hour
        // and meets its first copy on this key; reads by meter seek (hour, meter_id) hour by hour.
        primaryKey: ["bucket", "meter_id", "seq", "obis"],
        withoutRowid: true,
      }),
      table({
        name: "events",
        columns: [
          { name: "meter_id", type: "text", notNull: true },
          { name: "seq", type: "int", notNull: true },
          { name: "type", type: "text", notNull: true },
          { name: "level", type: "text", notNull: true },
          { name: "timestamp_ms", type: "int", notNull: true },
          { name: "time_quality", type: "text", notNull: true, oneOf: TIME_QUALITY },
          { name: "record", type: "blob", notNull: true },
          { name: "verified", type: "int", notNull: true },
          { name: "dcu_id", type: "text" },
          { name: "received_ms", type: "int", notNull: true },
        ],
        primaryKey: ["meter_id", "seq"],
      }),
      index({ name: "events_meter_time", table: "events", columns: ["meter_id", "timestamp_ms"] }),
      table({
        name: "alerts",
        columns: [
          { name: "alert_id", type: "id" },
          { name: "meter_id", type: "text", notNull: true },
          { name: "dcu_id", type: "text" },
          { name: "type", type: "text", notNull: true },
          { name: "level", type: "text", notNull: true },
          { name: "counter", type: "int", notNull: true },
          { name: "detected_ms", type: "int", notNull: true },
          { name: "received_ms", type: "int", notNull: true },
          { name: "stored_ms", type: "int", notNull: true },
          {
            name: "state",
            type: "text",
            notNull: true,
            default: "'open'",
            oneOf: ["open", "acknowledged", "resolved"],
          },
          { name: "acknowledged_by", type: "text" },
          { name: "acknowledged_ms", type: "int" },
          { name: "resolved_by", type: "text" },
          { name: "resolved_ms", type: "int" },
          { name: "snapshot", type: "text", notNull: true, default: "'{}'" },
          { name: "aggregated_count", type: "int", notNull: true, default: "1" },
          { name: "record", type: "blob" },
          { name: "verified", type: "int", notNull: true, default: "0" },
        ],
      }),
      // seed 004: a monotonic counter per meter makes a replayed alert the same alert.
      index({
        name: "alerts_meter_counter",
        table: "alerts",
        columns: ["meter_id", "counter"],
        unique: true,
      }),
      index({ name: "alerts_state", table: "alerts", columns: ["state", "alert_id"] }),
      index({ name: "alerts_type", table: "alerts", columns: ["type", "alert_id"] }),
      table({
        name: "batches",
        columns: [
          { name: "id", type: "id" },
          { name: "batch_id", type: "int", notNull: true },
          { name: "dcu_id", type: "text", notNull: true },
          { name: "epoch", type: "int" },
          { name: "commit_id_first", type: "int" },
          { name: "commit_id_last", type: "int" },
          { name: "record_count", type: "int" },
          { name: "merkle_root", type: "blob" },
          { name: "batch_hash", type: "blob", notNull: true },
          { name: "prev_batch_hash", type: "blob" },
          { name: "received_ms", type: "int", notNull: true },
          { name: "status", type: "text", notNull: true, oneOf: ["accepted", "rejected"] },
          { name: "reason", type: "text" },
          { name: "readings_new", type: "int", notNull: true, default: "0" },
          { name: "times_seen", type: "int", notNull: true, default: "1" },
          { name: "header", type: "blob" },
          { name: "records", type: "blob" },
        ],
      }),
      // One accepted copy per (dcu_id, batch_id); refusals are kept apart, one row per distinct refusal.
      index({
        name: "batches_accepted",
        table: "batches",
        columns: ["dcu_id", "batch_id"],
        unique: true,
        where: "status = 'accepted'",
      }),
      index({
        name: "batches_rejected",
        table: "batches",
        columns: ["dcu_id", "batch_id", "reason", "batch_hash"],
        unique: true,
        where: "status = 'rejected'",
      }),
      table({
        name: "gaps",
        columns: [
          { name: "gap_id", type: "id" },
          {
            name: "gap_class",
            type: "text",
            notNull: true,
            oneOf: ["SEQ_GAP", "COMMIT_GAP", "UPLINK_GAP", "TIME_STEP"],
          },
          { name: "meter_id", type: "text", notNull: true, default: "''" },
          { name: "dcu_id", type: "text", notNull: true, default: "''" },
          { name: "from_value", type: "int", notNull: true },
          { name: "to_value", type: "int", notNull: true },
          { name: "detected_ms", type: "int", notNull: true },
          { name: "attributed_to", type: "text" },
          { name: "batch_id", type: "int" },
          { name: "resolved_ms", type: "int" },
        ],
      }),
      index({
        name: "gaps_identity",
        table: "gaps",
        columns: ["gap_class", "dcu_id", "meter_id", "from_value", "to_value"],
        unique: true,
      }),
      index({ name: "gaps_meter", table: "gaps", columns: ["meter_id", "gap_id"] }),
      table({
        name: "firmware",
        columns: [
          { name: "component", type: "text", notNull: true },
          { name: "version", type: "text", notNull: true },
          { name: "release_counter", type: "int", notNull: true },
          { name: "checksum", type: "text", notNull: true },
          { name: "size_bytes", type: "int", notNull: true },
          { name: "image", type: "blob", notNull: true },
          { name: "expiry_ms", type: "int" },
          { name: "uploaded_ms", type: "int", notNull: true },
        ],
        primaryKey: ["component", "version"],
      }),
      index({ name: "firmware_checksum", table: "firmware", columns: ["checksum"], unique: true }),
      table({
        name: "audit",
        columns: [
          { name: "seq", type: "int", notNull: true },
          { name: "at_ms", type: "int", notNull: true },
          { name: "actor", type: "text", notNull: true },
          { name: "action", type: "text", notNull: true },
          { name: "detail", type: "text", notNull: true },
          { name: "prev_hash", type: "blob", notNull: true },
          { name: "hash", type: "blob", notNull: true },
        ],
        primaryKey: ["seq"],
      }),
      table({
        name: "api_tokens",
        columns: [
          { name: "token_hash", type: "text", notNull: true },
          { name: "role", type: "text", notNull: true },
          { name: "label", type: "text", notNull: true, default: "''" },
          { name: "created_ms", type: "int", notNull: true },
          { name: "revoked_ms", type: "int" },
        ],
        primaryKey: ["token_hash"],
      }),
    ],
  },
];

export const SCHEMA_VERSION = MIGRATIONS[MIGRATIONS.length - 1]!.version;

/** The bookkeeping table, created before any migration runs. */
export const MIGRATIONS_TABLE: Table = {
  name: "schema_migrations",
  columns: [
    { name: "version", type: "int", notNull: true },
    { name: "name", type: "text", notNull: true },
    { name: "applied_ms", type: "int", notNull: true },
  ],
  primaryKey: ["version"],
};

function columnType(type: ColumnType, dialect: StoreDialect): string {
  switch (type) {
    case "id":
      return dialect === "sqlite"
        ? "INTEGER PRIMARY KEY"
        : "BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY";
    case "int":
      return dialect === "sqlite" ? "INTEGER" : "BIGINT";
    case "real":
      return dialect === "sqlite" ? "REAL" : "DOUBLE PRECISION";
    case "text":
      // Byte order, as SQLite's BINARY: both dialects then sort and page identically, and PostgreSQL
      // compares keys with memcmp instead of the locale's strcoll.
      return dialect === "sqlite" ? "TEXT" : 'TEXT COLLATE "C"';
    case "blob":
      return dialect === "sqlite" ? "BLOB" : "BYTEA";
  }
}

function columnDdl(column: Column, dialect: StoreDialect): string {
  let ddl = `${column.name} ${columnType(column.type, dialect)}`;
  if (column.notNull === true && column.type !== "id") ddl += " NOT NULL";
  if (column.default !== undefined) ddl += ` DEFAULT ${column.default}`;
  if (column.oneOf !== undefined) {
    ddl += ` CHECK (${column.name} IN (${column.oneOf.map((v) => `'${v}'`).join(", ")}))`;
  }
  return ddl;
}

export function tableDdl(t: Table, dialect: StoreDialect): string {
  const parts = t.columns.map((c) => columnDdl(c, dialect));
  if (t.primaryKey !== undefined) parts.push(`PRIMARY KEY (${t.primaryKey.join(", ")})`);
  const rowid = dialect === "sqlite" && t.withoutRowid === true ? " WITHOUT ROWID" : "";
  return `CREATE TABLE IF NOT EXISTS ${t.name} (\n  ${parts.join(",\n  ")}\n)${rowid}`;
}

export function indexDdl(i: Index): string {
  const unique = i.unique === true ? "UNIQUE " : "";
  const where = i.where === undefined ? "" : ` WHERE ${i.where}`;
  return `CREATE ${unique}INDEX IF NOT EXISTS ${i.name} ON ${i.table} (${i.columns.join(", ")})${where}`;
}

/** The DDL statements of one migration, in order. */
export function migrationDdl(migration: Migration, dialect: StoreDialect): string[] {
  return migration.steps.map((step) => stepDdl(step, dialect));
}

function stepDdl(step: MigrationStep, dialect: StoreDialect): string {
  switch (step.kind) {
    case "table":
      return tableDdl(step.table, dialect);
    case "index":
      return indexDdl(step.index);
    case "addColumn":
      return `ALTER TABLE ${step.table} ADD COLUMN ${columnDdl(step.column, dialect)}`;
  }
}
