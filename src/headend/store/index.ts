// The head-end's storage layer: one schema, two back ends (SQLite embedded, PostgreSQL), one contract.
export * from "./errors.ts";
export * from "./open.ts";
export { PG_POOL_CONNECTIONS_MAX, PostgresStore } from "./postgres.ts";
export * from "./rows.ts";
export { MIGRATIONS, READINGS_BUCKET_MS, readingBucket, SCHEMA_VERSION } from "./schema.ts";
export { SQLITE_BUSY_TIMEOUT_MS, SqliteStore } from "./sqlite.ts";
export * from "./types.ts";
