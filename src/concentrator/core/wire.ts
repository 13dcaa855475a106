import { fromHex, toHex } from "../../evidence/index.ts";
import { ConcentratorError } from "../errors.ts";

// MQTT payloads between a concentrator and the head-end (README.md "Wire"). Batches are encodeBatch
// bytes; the rest is JSON with the seeds' snake_case names. Decoders throw only ConcentratorError and
// refuse anything larger than their bound before parsing.

export function batchesTopic(dcuId: string): string {
  return `ami/${dcuId}/batches`;
}
export function acksTopic(dcuId: string): string {
  return `ami/${dcuId}/acks`;
}
export function alertsTopic(dcuId: string): string {
  return `ami/${dcuId}/alerts`;
}
export function statusTopic(dcuId: string): string {
  return `ami/${dcuId}/status`;
}
export function timeTopic(dcuId: string): string {
  return `ami/${dcuId}/time`;
}

/** MQTT topic levels must not carry wildcards or separators: a dcu_id is one level. */
export function checkDcuId(dcuId: string): void {
  if (!/^[A-Za-z0-9._-]{1,64}$/.test(dcuId)) {
    throw new ConcentratorError(
      "BAD_CONFIG",
      `dcu id must be 1..64 of [A-Za-z0-9._-], got ${JSON.stringify(dcuId)}`,
    );
  }
}

export const ACK_BYTES_MAX = 64 * 1024;
export const ACK_ENTRIES_MAX = 256;
export const ACK_REASON_CHARS_MAX = 200;
export const TIME_MESSAGE_BYTES_MAX = 1024;
export const ALERT_BYTES_MAX = 4 * 1024;

export interface AckAccepted {
  readonly batchId: number;
  readonly commitIdFirst: number;
  readonly commitIdLast: number;
}

export interface AckRejected {
  readonly batchId: number;
  readonly reason: string;
}

/** ami/<dcu>/acks: what the head-end durably stored (accepted) or refused (rejected, with a reason). */
export interface AckMessage {
  readonly dcuId: string;
  readonly accepted: readonly AckAccepted[];
  readonly rejected: readonly AckRejected[];
}

export function encodeAck(ack: AckMessage): Uint8Array {
  return new TextEncoder().encode(
    JSON.stringify({
      dcu_id: ack.dcuId,
      accepted: ack.accepted.map((a) => ({
        batch_id: a.batchId,
        commit_id_first: a.commitIdFirst,
        commit_id_last: a.commitIdLast,
      })),
      rejected: ack.rejected.map((r) => ({ batch_id: r.batchId, reason: r.reason })),
    }),
  );
}

export function decodeAck(bytes: Uint8Array): AckMessage {
  const top = parseObject(bytes, ACK_BYTES_MAX, "ack", "BAD_ACK");
  const dcuId = field(top, "dcu_id", "ack", "BAD_ACK");
  if (typeof dcuId !== "string") throw new ConcentratorError("BAD_ACK", "dcu_id must be a string", "ack");
  const list = (name: string): unknown[] => {
    const value = top[name];
    if (value === undefined) return [];
    if (!Array.isArray(value)) throw new ConcentratorError("BAD_ACK", `${name} must be an array`, "ack");
    if (value.length > ACK_ENTRIES_MAX) {
      throw new ConcentratorError(
        "BAD_ACK",
        `${name} has ${value.length} entries, at most ${ACK_ENTRIES_MAX}`,
        "ack",
      );
    }
    return value;
  };
  const accepted = list("accepted").map((item, i): AckAccepted => {
    const where = `ack accepted[${i}]`;
    const entry = asObject(item, where, "BAD_ACK");
    const ack = {
      batchId: positiveInt(field(entry, "batch_id", where, "BAD_ACK"), `${where}.batch_id`, "BAD_ACK"),
      commitIdFirst: positiveInt(
        field(entry, "commit_id_first", where, "BAD_ACK"),
        `${where}.commit_id_first`,
        "BAD_ACK",
      ),
      commitIdLast: positiveInt(
        field(entry, "commit_id_last", where, "BAD_ACK"),
        `${where}.commit_id_last`,
        "BAD_ACK",
      ),
    };
    if (ack.commitIdLast < ack.commitIdFirst) {
      throw new ConcentratorError(
        "BAD_ACK",
        `commit_id range ${ack.commitIdFirst}..${ack.commitIdLast} is empty`,
        where,
      );
    }
    return ack;
  });
  const rejected = list("rejected").map((item, i): AckRejected => {
    const where = `ack rejected[${i}]`;
    const entry = asObject(item, where, "BAD_ACK");
    const reason = field(entry, "reason", where, "BAD_ACK");
    if (typeof reason !== "string" || reason.length === 0 || reason.length > ACK_REASON_CHARS_MAX) {
      throw new ConcentratorError("BAD_ACK", `reason must be 1..${ACK_REASON_CHARS_MAX} characters`, where);
    }
    return {
      batchId: positiveInt(field(entry, "batch_id", where, "BAD_ACK"), `${where}.batch_id`, "BAD_ACK"),
      reason,
    };
  });
  return { dcuId, accepted, rejected };
}

/** ami/<dcu>/time: the head-end's clock as a time source for the concentrator (seed 003 H2-8). */
export interface TimeMessage {
  readonly timeMs: number;
}

export function encodeTimeMessage(message: TimeMessage): Uint8Array {
  return new TextEncoder().encode(JSON.stringify({ time_ms: message.timeMs }));
}

export function decodeTimeMessage(bytes: Uint8Array): TimeMessage {
  const top = parseObject(bytes, TIME_MESSAGE_BYTES_MAX, "time message", "BAD_TIME");
  return { timeMs: positiveInt(field(top, "time_ms", "time message", "BAD_TIME"), "time_ms", "BAD_TIME") };
}

/** ami/<dcu>/alerts: one sealed meter event, forwarded as read (the head-end verifies its signature). */
export interface AlertMessage {
  readonly dcuId: string;
  readonly meterId: string;
  /** The meter's sealed event record (encodeEventRecord bytes), untouched. */
  readonly record: Uint8Array;
  /** Concentrator clock when forwarded, and its time_quality at that moment. */
  readonly forwardedMs: number;
  readonly timeQuality: string;
}

export function encodeAlert(alert: AlertMessage): Uint8Array {
  return new TextEncoder().encode(
    JSON.stringify({
      dcu_id: alert.dcuId,
      meter_id: alert.meterId,
      record: toHex(alert.record),
      forwarded_ms: alert.forwardedMs,
      time_quality: alert.timeQuality,
    }),
  );
}

export function decodeAlert(bytes: Uint8Array): AlertMessage {
  const top = parseObject(bytes, ALERT_BYTES_MAX, "alert", "BAD_ALERT");
  const text = (name: string): string => {
    const value = field(top, name, "alert", "BAD_ALERT");
    if (typeof value !== "string")
      throw new ConcentratorError("BAD_ALERT", `${name} must be a string`, "alert");
    return value;
  };
  let record: Uint8Array;
  try {
    record = fromHex(text("record"), "alert record");
  } catch (error) {
    throw new ConcentratorError("BAD_ALERT", (error as Error).message, "alert");
  }
  return {
    dcuId: text("dcu_id"),
    meterId: text("meter_id"),
    record,
    forwardedMs: positiveInt(field(top, "forwarded_ms", "alert", "BAD_ALERT"), "forwarded_ms", "BAD_ALERT"),
    timeQuality: text("time_quality"),
  };
}

type WireCode = "BAD_ACK" | "BAD_TIME" | "BAD_ALERT";

function parseObject(bytes: Uint8Array, max: number, what: string, code: WireCode): Record<string, unknown> {
  if (bytes.length > max)
    throw new ConcentratorError(code, `${what} of ${bytes.length} bytes exceeds ${max}`, what);
  let value: unknown;
  try {
    value = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(bytes));
  } catch (error) {
    throw new ConcentratorError(code, `${what} is not UTF-8 JSON: ${(error as Error).message}`, what);
  }
  return asObject(value, what, code);
}

function asObject(value: unknown, where: string, code: WireCode): Record<string, unknown> {
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw new ConcentratorError(code, "expected a JSON object", where);
  }
  return value as Record<string, unknown>;
}

function field(object: Record<string, unknown>, name: string, where: string, code: WireCode): unknown {
  if (!Object.hasOwn(object, name)) throw new ConcentratorError(code, `missing "${name}"`, where);
  return object[name];
}

function positiveInt(value: unknown, where: string, code: WireCode): number {
  if (typeof value !== "number" || !Number.isSafeInteger(value) || value < 1) {
    throw new ConcentratorError(code, `expected a positive integer, got ${JSON.stringify(value)}`, where);
  }
  return value;
}
