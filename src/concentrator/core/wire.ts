import {
  type AckMessage,
  type AlertMessage,
  checkDcuId as checkDcuIdWire,
  decodeAck as decodeAckWire,
  decodeAlert as decodeAlertWire,
  decodeTimeMessage as decodeTimeMessageWire,
  isEvidenceError,
  type TimeMessage,
} from "../../evidence/index.ts";
import { ConcentratorError, type ConcentratorErrorCode } from "../errors.ts";

// The MQTT payloads shared with the head-end live in src/evidence/uplink-wire.ts (roles never import
// each other). This file keeps the concentrator's names and turns the library's EvidenceError into
// this boundary's ConcentratorError codes.

export type {
  AckAccepted,
  AckMessage,
  AckRejected,
  AlertMessage,
  TimeMessage,
} from "../../evidence/index.ts";
export {
  ACK_BYTES_MAX,
  ACK_ENTRIES_MAX,
  ACK_REASON_CHARS_MAX,
  ALERT_BYTES_MAX,
  acksTopic,
  alertsTopic,
  batchesTopic,
  encodeAck,
  encodeAlert,
  encodeTimeMessage,
  statusTopic,
  TIME_MESSAGE_BYTES_MAX,
  timeTopic,
} from "../../evidence/index.ts";

function rethrow<T>(code: ConcentratorErrorCode, run: () => T): T {
  try {
    return run();
  } catch (error) {
    if (isEvidenceError(error)) throw new ConcentratorError(code, error.reason, error.where);
    throw error;
  }
}

/** MQTT topic levels must not carry wildcards or separators: a dcu_id is one level. */
export function checkDcuId(dcuId: string): void {
  rethrow("BAD_CONFIG", () => checkDcuIdWire(dcuId));
}

export function decodeAck(bytes: Uint8Array): AckMessage {
  return rethrow("BAD_ACK", () => decodeAckWire(bytes));
}

export function decodeTimeMessage(bytes: Uint8Array): TimeMessage {
  return rethrow("BAD_TIME", () => decodeTimeMessageWire(bytes));
}

export function decodeAlert(bytes: Uint8Array): AlertMessage {
  return rethrow("BAD_ALERT", () => decodeAlertWire(bytes));
}
