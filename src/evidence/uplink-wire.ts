import { fromHex, toHex } from "./bytes.ts";
import { EvidenceError } from "./errors.ts";

// MQTT payloads between a concentrator and the head-end (src/concentrator/README.md "Wire"). Both
// roles speak them, so they live in the evidence library: roles talk only through wire formats
// (STYLE.md §7). Batches are encodeBatch bytes; the rest is JSON with the seeds' snake_case names.
// Decoders throw only EvidenceError("BAD_FIELD") and refuse anything larger than their bound before
// parsing.

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

/** The kinds of uplink topic, the last level of `ami/<dcu>/<kind>`. */
export type UplinkTopicKind = "batches" | "acks" | "alerts" | "status" | "time";
const TOPIC_KINDS: readonly UplinkTopicKind[] = ["batches", "acks", "alerts", "status", "time"];

/** Splits `ami/<dcu>/<kind>`; null for any other topic (a subscriber's filter may match more). */
export function parseUplinkTopic(topic: string): { dcuId: string; kind: UplinkTopicKind } | null {
  const parts = topic.split("/");
  if (parts.length !== 3 || parts[0] !== "ami") return null;
  const [, dcuId, kind] = parts as [string, string, string];
  if (!DCU_ID_PATTERN.test(dcuId)) return null;
  if (!(TOPIC_KINDS as readonly string[]).includes(kind)) return null;
  return { dcuId, kind: kind as UplinkTopicKind };
}

const DCU_ID_PATTERN = /^[A-Za-z0-9._-]{1,64}$/;

/** MQTT topic levels must not carry wildcards or separators: a dcu_id is one level. */
export function checkDcuId(dcuId: string): void {
  if (!DCU_ID_PATTERN.test(dcuId)) {
    throw new EvidenceError(
      "BAD_FIELD",
      `dcu id must be 1..64 of [A-Za-z0-9._-], got ${JSON.stringify(dcuId)}`,
      "dcu_id",
    );
  }
}

export const ACK_BYTES_MAX = 64 * 1024;
export const ACK_ENTRIES_MAX = 256;
export const ACK_REASON_CHARS_MAX = 200;
export const TIME_MESSAGE_BYTES_MAX = 1024;
export const ALERT_BYTES_MAX = 4 * 1024;
export const STATUS_BYTES_MAX = 64 * 1024;

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
  const top = parseObject(bytes, ACK_BYTES_MAX, "ack");
  const dcuId = field(top, "dcu_id", "ack");
  if (typeof dcuId !== "string") throw new EvidenceError("BAD_FIELD", "dcu_id must be a string", "ack");
  const list = (name: string): unknown[] => {
    const value = top[name];
    if (value === undefined) return [];
    if (!Array.isArray(value)) throw new EvidenceError("BAD_FIELD", `${name} must be an array`, "ack");
    if (value.length > ACK_ENTRIES_MAX) {
      throw new EvidenceError(
        "BAD_FIELD",
        `${name} has ${value.length} entries, at most ${ACK_ENTRIES_MAX}`,
        "ack",
      );
    }
    return value;
  };
  const accepted = list("accepted").map((item, i): AckAccepted => {
    const where = `ack accepted[${i}]`;
    const entry = asObject(item, where);
    const ack = {
      batchId: positiveInt(field(entry, "batch_id", where), `${where}.batch_id`),
      commitIdFirst: positiveInt(field(entry, "commit_id_first", where), `${where}.commit_id_first`),
      commitIdLast: positiveInt(field(entry, "commit_id_last", where), `${where}.commit_id_last`),
    };
    if (ack.commitIdLast < ack.commitIdFirst) {
      throw new EvidenceError(
        "BAD_FIELD",
        `commit_id range ${ack.commitIdFirst}..${ack.commitIdLast} is empty`,
        where,
      );
    }
    return ack;
  });
  const rejected = list("rejected").map((item, i): AckRejected => {
    const where = `ack rejected[${i}]`;
    const entry = asObject(item, where);
    const reason = field(entry, "reason", where);
    if (typeof reason !== "string" || reason.length === 0 || reason.length > ACK_REASON_CHARS_MAX) {
      throw new EvidenceError("BAD_FIELD", `reason must be 1..${ACK_REASON_CHARS_MAX} characters`, where);
    }
    return { batchId: positiveInt(field(entry, "batch_id", where), `${where}.batch_id`), reason };
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
  const top = parseObject(bytes, TIME_MESSAGE_BYTES_MAX, "time message");
  return { timeMs: positiveInt(field(top, "time_ms", "time message"), "time_ms") };
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
  const top = parseObject(bytes, ALERT_BYTES_MAX, "alert");
  const text = (name: string): string => {
    const value = field(top, name, "alert");
    if (typeof value !== "string") throw new EvidenceError("BAD_FIELD", `${name} must be a string`, "alert");
    return value;
  };
  let record: Uint8Array;
  try {
    record = fromHex(text("record"), "alert record");
  } catch (error) {
    throw new EvidenceError("BAD_FIELD", (error as Error).message, "alert");
  }
  return {
    dcuId: text("dcu_id"),
    meterId: text("meter_id"),
    record,
    forwardedMs: positiveInt(field(top, "forwarded_ms", "alert"), "forwarded_ms"),
    timeQuality: text("time_quality"),
  };
}

/** ami/<dcu>/status (retained): who the concentrator is, its batch_sign key, its evidence packs. */
export interface StatusMessage {
  readonly dcuId: string;
  readonly batchSignPublicKey: Uint8Array;
  /** Evidence packs (seed 003 H2-7 counters) as the concentrator reported them. */
  readonly packs: Readonly<Record<string, unknown>>;
}

export const STATUS_FORMAT = "amiproof-dcu-status";
export const STATUS_VERSION = 1;

export function encodeStatus(status: StatusMessage): Uint8Array {
  return new TextEncoder().encode(
    JSON.stringify({
      format: STATUS_FORMAT,
      version: STATUS_VERSION,
      dcu_id: status.dcuId,
      batch_sign_public_key: toHex(status.batchSignPublicKey),
      packs: status.packs,
    }),
  );
}

export function decodeStatus(bytes: Uint8Array): StatusMessage {
  const top = parseObject(bytes, STATUS_BYTES_MAX, "status");
  if (field(top, "format", "status") !== STATUS_FORMAT) {
    throw new EvidenceError("BAD_FIELD", `format must be "${STATUS_FORMAT}"`, "status");
  }
  if (field(top, "version", "status") !== STATUS_VERSION) {
    throw new EvidenceError("BAD_FIELD", `version must be ${STATUS_VERSION}`, "status");
  }
  const dcuId = field(top, "dcu_id", "status");
  if (typeof dcuId !== "string") throw new EvidenceError("BAD_FIELD", "dcu_id must be a string", "status");
  const keyHex = field(top, "batch_sign_public_key", "status");
  if (typeof keyHex !== "string") {
    throw new EvidenceError("BAD_FIELD", "batch_sign_public_key must be a hex string", "status");
  }
  const packs = top.packs === undefined ? {} : asObject(top.packs, "status packs");
  return { dcuId, batchSignPublicKey: fromHex(keyHex, "status batch_sign_public_key"), packs };
}

function parseObject(bytes: Uint8Array, max: number, what: string): Record<string, unknown> {
  if (bytes.length > max)
    throw new EvidenceError("BAD_FIELD", `${what} of ${bytes.length} bytes exceeds ${max}`, what);
  let value: unknown;
  try {
    value = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(bytes));
  } catch (error) {
    throw new EvidenceError("BAD_FIELD", `${what} is not UTF-8 JSON: ${(error as Error).message}`, what);
  }
  return asObject(value, what);
}

function asObject(value: unknown, where: string): Record<string, unknown> {
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw new EvidenceError("BAD_FIELD", "expected a JSON object", where);
  }
  return value as Record<string, unknown>;
}

function field(object: Record<string, unknown>, name: string, where: string): unknown {
  if (!Object.hasOwn(object, name)) throw new EvidenceError("BAD_FIELD", `missing "${name}"`, where);
  return object[name];
}

function positiveInt(value: unknown, where: string): number {
  if (typeof value !== "number" || !Number.isSafeInteger(value) || value < 1) {
    throw new EvidenceError("BAD_FIELD", `expected a positive integer, got ${JSON.stringify(value)}`, where);
  }
  return value;
}
