// One error class for the evidence boundary; `code` is a closed union so callers and counters can switch on it.
export type EvidenceErrorCode =
  | "TRUNCATED" // fewer bytes than the structure needs
  | "TRAILING_BYTES" // more bytes than the structure holds
  | "BAD_MAGIC"
  | "BAD_VERSION"
  | "BAD_FIELD" // a field outside its allowed range or vocabulary
  | "BAD_CRC"
  | "BAD_SIGNATURE"
  | "BAD_KEY"
  | "CHAIN_BREAK" // prev_digest does not match the previous record
  | "SEQ_GAP"
  | "SEQ_DUPLICATE"
  | "COMMIT_GAP"
  | "BAD_MERKLE_ROOT"
  | "BAD_PROOF"
  | "BAD_BUNDLE"
  | "COUNTER_DECREASE" // a monotonic counter asked to go backwards
  | "UNKNOWN_KEY"
  | "NVM_RANGE" // an access outside the device or the region
  | "NVM_PROGRAM" // programming a byte that was not erased (NOR semantics)
  | "POWER_LOST" // the simulated device lost power mid-operation
  | "LOG_FULL"
  | "JOURNAL_CORRUPT"
  | "JOURNAL_CLOSED"
  | "IO";

export class EvidenceError extends Error {
  readonly code: EvidenceErrorCode;
  /** Where the problem was found: byte offset, record seq, file path… */
  readonly where: string | undefined;
  /** The message without the code and location, for reports that print those separately. */
  readonly reason: string;

  constructor(code: EvidenceErrorCode, message: string, where?: string) {
    super(where === undefined ? `${code}: ${message}` : `${code}: ${message} (at ${where})`);
    this.name = "EvidenceError";
    this.code = code;
    this.where = where;
    this.reason = message;
  }
}

export function isEvidenceError(error: unknown, code?: EvidenceErrorCode): error is EvidenceError {
  return error instanceof EvidenceError && (code === undefined || error.code === code);
}
