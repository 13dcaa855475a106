// One error class for the concentrator boundary; `code` is a closed union so counters can switch on it.
export type ConcentratorErrorCode =
  | "IFACE_TIMEOUT" // the meter did not answer within the reader's deadline
  | "IFACE_FRAME_CRC" // seed 003 H2-3 frame_crc_fail: the frame arrived corrupted
  | "IFACE_PROTOCOL" // an answer arrived but made no sense (wrong meter, malformed, refused)
  | "IFACE_UNREACHABLE" // the port could not be opened / the connection was refused
  | "BAD_READING" // a reading outside the record schema (values, seq, timestamp)
  | "BAD_ACK" // a head-end ack that does not parse or does not match what was sent
  | "BAD_TIME" // a time message that does not parse
  | "BAD_ALERT" // an alert message that does not parse
  | "BAD_CONFIG"
  | "JOURNAL_MISMATCH" // the journal assigned a commit_id other than the one stamped in the record
  | "STORE_CORRUPT" // the outbox or state file holds something this build cannot trust
  | "UPLINK_DOWN"; // a publish was refused because the link is down

export class ConcentratorError extends Error {
  readonly code: ConcentratorErrorCode;
  /** Where the problem was found: meter_id, batch_id, topic, file path… */
  readonly where: string | undefined;

  constructor(code: ConcentratorErrorCode, message: string, where?: string) {
    super(where === undefined ? `${code}: ${message}` : `${code}: ${message} (at ${where})`);
    this.name = "ConcentratorError";
    this.code = code;
    this.where = where;
  }
}

export function isConcentratorError(
  error: unknown,
  code?: ConcentratorErrorCode,
): error is ConcentratorError {
  return error instanceof ConcentratorError && (code === undefined || error.code === code);
}
