// One error class for the head-end's storage boundary; `code` is a closed union so the ingest can decide
// between "retry later" (UNAVAILABLE), "refuse the batch" (BAD_ROW, LIMIT) and "stop" (SCHEMA_TOO_NEW).
export type StoreErrorCode =
  | "BAD_URL" // a store URL that is neither sqlite:PATH nor postgres://…
  | "UNAVAILABLE" // the database cannot be reached or opened
  | "MIGRATION_FAILED"
  | "SCHEMA_TOO_NEW" // the database was migrated by a newer build than this one
  | "BAD_ROW" // a row outside the schema's vocabulary or ranges (rejected by the database or by us)
  | "LIMIT" // a request above a named bound (page size, rows per commit, export size)
  | "NOT_FOUND"
  | "BAD_CURSOR" // a paging cursor this store did not produce
  | "BAD_STATE" // an alert transition that the state machine does not allow
  | "AUDIT_BROKEN" // the audit hash chain does not verify
  | "CLOSED"
  | "QUERY_FAILED";

export class StoreError extends Error {
  readonly code: StoreErrorCode;
  /** Which operation and table: "commitBatch readings", "openStore postgres://host/db". */
  readonly where: string | undefined;
  readonly reason: string;

  constructor(code: StoreErrorCode, message: string, where?: string, options?: { cause?: unknown }) {
    super(where === undefined ? `${code}: ${message}` : `${code}: ${message} (at ${where})`, options);
    this.name = "StoreError";
    this.code = code;
    this.where = where;
    this.reason = message;
  }
}

export function isStoreError(error: unknown, code?: StoreErrorCode): error is StoreError {
  return error instanceof StoreError && (code === undefined || error.code === code);
}
