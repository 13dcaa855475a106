// One error class for the head-end's own boundary (ingest, alert lane, registry, API); the storage layer
// has its own StoreError. `code` is a closed union so the API can map it to a status and counters can
// switch on it.
export type HeadendErrorCode =
  | "BAD_CONFIG" // a startup option or file the head-end cannot use
  | "BAD_ASSET_REGISTER" // an asset register (key provisioning file or API body) that does not parse
  | "BAD_REQUEST" // an API request outside its schema
  | "UNAUTHORIZED" // no token, or a token the head-end does not know / has revoked
  | "FORBIDDEN" // a known token whose role is below the one the call needs
  | "NOT_FOUND"
  | "CONFLICT" // a state transition the alert state machine refuses
  | "UNKNOWN_DCU" // a concentrator without a provisioned batch_sign key
  | "UNKNOWN_METER" // a meter without a provisioned event_seal key
  | "QUEUE_FULL" // an intake queue at its bound refused a message
  | "CLOSED"; // the component was shut down

export class HeadendError extends Error {
  readonly code: HeadendErrorCode;
  /** Where: "POST /api/alerts/7/ack", "asset register meters[3]", "ingest DCU-1 batch 9"… */
  readonly where: string | undefined;
  readonly reason: string;

  constructor(code: HeadendErrorCode, message: string, where?: string) {
    super(where === undefined ? `${code}: ${message}` : `${code}: ${message} (at ${where})`);
    this.name = "HeadendError";
    this.code = code;
    this.where = where;
    this.reason = message;
  }
}

export function isHeadendError(error: unknown, code?: HeadendErrorCode): error is HeadendError {
  return error instanceof HeadendError && (code === undefined || error.code === code);
}

/** What the core logs through; pino's logger fits it, tests pass a recording one. */
export interface HeadendLog {
  debug(detail: Record<string, unknown>, message: string): void;
  info(detail: Record<string, unknown>, message: string): void;
  warn(detail: Record<string, unknown>, message: string): void;
  error(detail: Record<string, unknown>, message: string): void;
}

export const SILENT_LOG: HeadendLog = {
  debug() {},
  info() {},
  warn() {},
  error() {},
};
