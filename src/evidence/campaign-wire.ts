import { createHmac, timingSafeEqual } from "node:crypto";
import { ByteReader, ByteWriter, fromHex, toHex } from "./bytes.ts";
import { EvidenceError } from "./errors.ts";

// Firmware campaigns on the wire (issue 9, seeds 000 and 001): what the head-end sends a concentrator
// (`ami/<dcu>/fw/jobs`: images, update and rollback commands, cancellations) and what the concentrator
// reports back (`ami/<dcu>/fw/progress`: each meter's state). Both roles speak them, so they live in the
// evidence library. JSON with snake_case names; decoders refuse anything above their bound before
// parsing and throw only EvidenceError("BAD_FIELD").
//
// The rollback command's one-time password is a wire format too: the head-end's security module computes
// it, the meter checks it, so its canonical message is defined here once (`rollbackOtpMessage`).

export function firmwareJobsTopic(dcuId: string): string {
  return `ami/${dcuId}/fw/jobs`;
}
export function firmwareProgressTopic(dcuId: string): string {
  return `ami/${dcuId}/fw/progress`;
}

export const FIRMWARE_JOB_BYTES_MAX = 2 * 1024 * 1024;
export const FIRMWARE_JOB_COMMANDS_MAX = 4096;
export const FIRMWARE_PROGRESS_BYTES_MAX = 1024 * 1024;
export const FIRMWARE_PROGRESS_REPORTS_MAX = 4096;
/** An image travels once per concentrator (its cache keeps it): AFW1 payloads are ≤ 64 KiB plus header. */
export const FIRMWARE_WIRE_IMAGE_BYTES_MAX = 72 * 1024;
export const CAMPAIGN_ID_CHARS_MAX = 64;
export const METER_ID_CHARS_MAX = 64;
export const REASON_CHARS_MAX = 64;
export const FIRMWARE_ID_CHARS_MAX = 128;
/** HMAC-SHA-256 output. */
export const OTP_BYTES = 32;

/** What a command asks of one meter. */
export type FirmwareAction = "update" | "rollback_full" | "rollback_app";
export const FIRMWARE_ACTIONS: readonly FirmwareAction[] = ["update", "rollback_full", "rollback_app"];

/** The concentrator's view of one meter's job (the head-end derives confirmed / rolled_back from "done"). */
export type JobReportState = "transferring" | "verifying" | "activating" | "done" | "failed";
export const JOB_REPORT_STATES: readonly JobReportState[] = [
  "transferring",
  "verifying",
  "activating",
  "done",
  "failed",
];

export interface WireImage {
  /** SHA-256 of the whole image, hex: the asset register's checksum. */
  readonly checksum: string;
  readonly component: "app" | "comms";
  readonly version: number;
  readonly bytes: Uint8Array;
}

export interface RollbackAuth {
  readonly otp: Uint8Array;
  readonly otpCounter: number;
  readonly otpExpiresMs: number;
}

export interface FirmwareCommand {
  readonly meterId: string;
  readonly action: FirmwareAction;
  /** Checksum (hex) of the image the meter must run afterwards: the update, or the golden image. */
  readonly targetChecksum: string;
  /** Staggered start (seed 000 randomized back-off): not before this head-end time. */
  readonly startAtMs: number;
  /** Rollback commands only. */
  readonly auth: RollbackAuth | null;
}

export interface FirmwareJobMessage {
  readonly campaignId: string;
  readonly dcuId: string;
  /** Images the commands need that the concentrator may not have cached yet. */
  readonly images: readonly WireImage[];
  readonly commands: readonly FirmwareCommand[];
  /** Cancel: queued commands of the campaign are dropped; forced also abandons transfers in flight. */
  readonly cancel: "none" | "graceful" | "forced";
}

export interface JobReport {
  readonly meterId: string;
  readonly state: JobReportState;
  /** Seed 000 strings where they apply: ERROR_CRC_MISMATCH, SIGN_AUTH_FAIL, WDT_REBOOT_LOOP, TIMEOUT… */
  readonly reason: string | null;
  readonly blocksDone: number;
  readonly blocksTotal: number;
  /** After activation or rollback: the running image's checksum read over DLMS (remote confirmation). */
  readonly activeChecksum: string | null;
  readonly firmwareId: string | null;
  readonly atMs: number;
}

export interface FirmwareProgressMessage {
  readonly campaignId: string;
  readonly dcuId: string;
  readonly reports: readonly JobReport[];
}

// ───────────────────────────── one-time password ─────────────────────────────

export interface RollbackOtpInput {
  readonly meterId: string;
  readonly action: FirmwareAction;
  readonly targetChecksum: string;
  readonly expiresMs: number;
  readonly counter: number;
}

/** Canonical bytes the OTP covers: meter, action, target image, expiry and counter (seed 000 "signed via an OTP"). */
export function rollbackOtpMessage(input: RollbackOtpInput): Uint8Array {
  return new TextEncoder().encode(
    [
      "amiproof-rollback-otp-v1",
      input.meterId,
      input.action,
      input.targetChecksum.toLowerCase(),
      String(input.expiresMs),
      String(input.counter),
    ].join("\n"),
  );
}

export function computeRollbackOtp(meterKey: Uint8Array, input: RollbackOtpInput): Uint8Array {
  return new Uint8Array(createHmac("sha256", meterKey).update(rollbackOtpMessage(input)).digest());
}

/** Constant-time comparison of a presented OTP with the expected one. */
export function rollbackOtpMatches(meterKey: Uint8Array, input: RollbackOtpInput, otp: Uint8Array): boolean {
  const expected = computeRollbackOtp(meterKey, input);
  return otp.length === expected.length && timingSafeEqual(otp, expected);
}

// ─────────────────── the rollback command on DLMS (concentrator → meter) ───────────────────
// Carried as the octet-string parameter of a manufacturer-specific method (src/meter/rollback-command.ts):
//   "RBC1" · meter_id text8 · action u8 (1 rollback_full, 2 rollback_app) · target checksum (32) ·
//   expires_ms i64 · counter i64 · otp (32)
// and answered by
//   "RBR1" · outcome u8 (0 applied, 1 already_golden, 2 refused) · reason text8 · running checksum (32, zeros: unknown)

export interface RollbackCommandWire extends RollbackOtpInput {
  readonly otp: Uint8Array;
}
export type RollbackOutcomeKind = "applied" | "already_golden" | "refused";
const OUTCOMES: readonly RollbackOutcomeKind[] = ["applied", "already_golden", "refused"];
export interface RollbackResultWire {
  readonly outcome: RollbackOutcomeKind;
  readonly reason: string;
  /** Hex, or null when the meter could not tell. */
  readonly runningChecksum: string | null;
}

export function encodeRollbackCommand(command: RollbackCommandWire): Uint8Array {
  const actionCode = command.action === "rollback_full" ? 1 : command.action === "rollback_app" ? 2 : 0;
  if (actionCode === 0)
    throw new EvidenceError("BAD_FIELD", "only rollback actions travel as commands", "action");
  return new ByteWriter(160)
    .bytes(Uint8Array.of(0x52, 0x42, 0x43, 0x31))
    .text8(command.meterId, "meter_id")
    .u8(actionCode)
    .fixed(fromHex(command.targetChecksum, "target checksum"), 32, "target checksum")
    .i64(command.expiresMs)
    .i64(command.counter)
    .fixed(command.otp, OTP_BYTES, "otp")
    .finish();
}

export function decodeRollbackCommand(bytes: Uint8Array): RollbackCommandWire {
  const r = new ByteReader(bytes, "rollback command");
  for (const m of [0x52, 0x42, 0x43, 0x31])
    if (r.u8("magic") !== m) throw new EvidenceError("BAD_FIELD", "not a rollback command", "magic");
  const meterId = r.text8("meter_id");
  const code = r.u8("action");
  if (code !== 1 && code !== 2)
    throw new EvidenceError("BAD_FIELD", `action ${code} is not 1 or 2`, "action");
  const targetChecksum = toHex(r.bytes(32, "target checksum"));
  const expiresMs = r.i64("expires_ms");
  const counter = r.i64("counter");
  const otp = r.bytes(OTP_BYTES, "otp").slice();
  r.end();
  return {
    meterId,
    action: code === 1 ? "rollback_full" : "rollback_app",
    targetChecksum,
    expiresMs,
    counter,
    otp,
  };
}

export function encodeRollbackResult(result: RollbackResultWire): Uint8Array {
  return new ByteWriter(128)
    .bytes(Uint8Array.of(0x52, 0x42, 0x52, 0x31))
    .u8(OUTCOMES.indexOf(result.outcome))
    .text8(result.reason, "reason")
    .fixed(
      result.runningChecksum === null ? new Uint8Array(32) : fromHex(result.runningChecksum, "checksum"),
      32,
      "checksum",
    )
    .finish();
}

export function decodeRollbackResult(bytes: Uint8Array): RollbackResultWire {
  const r = new ByteReader(bytes, "rollback result");
  for (const m of [0x52, 0x42, 0x52, 0x31])
    if (r.u8("magic") !== m) throw new EvidenceError("BAD_FIELD", "not a rollback result", "magic");
  const outcome = OUTCOMES[r.u8("outcome")];
  if (outcome === undefined) throw new EvidenceError("BAD_FIELD", "unknown outcome", "outcome");
  const reason = r.text8("reason");
  const checksum = r.bytes(32, "checksum");
  r.end();
  return { outcome, reason, runningChecksum: checksum.every((b) => b === 0) ? null : toHex(checksum) };
}

// ───────────────────────────── codecs ─────────────────────────────

export function encodeFirmwareJob(job: FirmwareJobMessage): Uint8Array {
  return new TextEncoder().encode(
    JSON.stringify({
      campaign_id: job.campaignId,
      dcu_id: job.dcuId,
      cancel: job.cancel,
      images: job.images.map((i) => ({
        checksum: i.checksum,
        component: i.component,
        version: i.version,
        image_base64: Buffer.from(i.bytes).toString("base64"),
      })),
      commands: job.commands.map((c) => ({
        meter_id: c.meterId,
        action: c.action,
        target_checksum: c.targetChecksum,
        start_at_ms: c.startAtMs,
        ...(c.auth === null
          ? {}
          : {
              otp: toHex(c.auth.otp),
              otp_counter: c.auth.otpCounter,
              otp_expires_ms: c.auth.otpExpiresMs,
            }),
      })),
    }),
  );
}

export function decodeFirmwareJob(bytes: Uint8Array): FirmwareJobMessage {
  const top = parseObject(bytes, FIRMWARE_JOB_BYTES_MAX, "firmware job");
  const where = "firmware job";
  const campaignId = idText(top.campaign_id, CAMPAIGN_ID_CHARS_MAX, `${where}.campaign_id`);
  const dcuId = idText(top.dcu_id, 64, `${where}.dcu_id`);
  const cancel = top.cancel;
  if (cancel !== "none" && cancel !== "graceful" && cancel !== "forced")
    throw new EvidenceError("BAD_FIELD", "cancel must be none, graceful or forced", `${where}.cancel`);
  const images = list(top.images, 16, `${where}.images`).map((item, i): WireImage => {
    const at = `${where}.images[${i}]`;
    const o = asObject(item, at);
    const component = o.component;
    if (component !== "app" && component !== "comms")
      throw new EvidenceError("BAD_FIELD", "component must be app or comms", at);
    if (typeof o.image_base64 !== "string" || !/^[A-Za-z0-9+/]*={0,2}$/.test(o.image_base64))
      throw new EvidenceError("BAD_FIELD", "image_base64 must be base64", at);
    const data = new Uint8Array(Buffer.from(o.image_base64, "base64"));
    if (data.length === 0 || data.length > FIRMWARE_WIRE_IMAGE_BYTES_MAX)
      throw new EvidenceError("BAD_FIELD", `image must be 1..${FIRMWARE_WIRE_IMAGE_BYTES_MAX} bytes`, at);
    return {
      checksum: checksumText(o.checksum, `${at}.checksum`),
      component,
      version: nonNegativeInt(o.version, `${at}.version`),
      bytes: data,
    };
  });
  const commands = list(top.commands, FIRMWARE_JOB_COMMANDS_MAX, `${where}.commands`).map(
    (item, i): FirmwareCommand => {
      const at = `${where}.commands[${i}]`;
      const o = asObject(item, at);
      const action = o.action;
      if (typeof action !== "string" || !(FIRMWARE_ACTIONS as readonly string[]).includes(action))
        throw new EvidenceError("BAD_FIELD", `action must be one of ${FIRMWARE_ACTIONS.join(", ")}`, at);
      let auth: RollbackAuth | null = null;
      if (o.otp !== undefined) {
        if (typeof o.otp !== "string" || !/^[0-9a-f]+$/.test(o.otp) || o.otp.length !== OTP_BYTES * 2)
          throw new EvidenceError("BAD_FIELD", `otp must be ${OTP_BYTES * 2} hex digits`, `${at}.otp`);
        auth = {
          otp: fromHex(o.otp, "otp"),
          otpCounter: nonNegativeInt(o.otp_counter, `${at}.otp_counter`),
          otpExpiresMs: nonNegativeInt(o.otp_expires_ms, `${at}.otp_expires_ms`),
        };
      }
      if (action !== "update" && auth === null)
        throw new EvidenceError("BAD_FIELD", "a rollback command must carry its OTP", at);
      return {
        meterId: idText(o.meter_id, METER_ID_CHARS_MAX, `${at}.meter_id`),
        action: action as FirmwareAction,
        targetChecksum: checksumText(o.target_checksum, `${at}.target_checksum`),
        startAtMs: nonNegativeInt(o.start_at_ms, `${at}.start_at_ms`),
        auth,
      };
    },
  );
  return { campaignId, dcuId, cancel, images, commands };
}

export function encodeFirmwareProgress(message: FirmwareProgressMessage): Uint8Array {
  return new TextEncoder().encode(
    JSON.stringify({
      campaign_id: message.campaignId,
      dcu_id: message.dcuId,
      reports: message.reports.map((r) => ({
        meter_id: r.meterId,
        state: r.state,
        reason: r.reason,
        blocks_done: r.blocksDone,
        blocks_total: r.blocksTotal,
        active_checksum: r.activeChecksum,
        firmware_id: r.firmwareId,
        at_ms: r.atMs,
      })),
    }),
  );
}

export function decodeFirmwareProgress(bytes: Uint8Array): FirmwareProgressMessage {
  const where = "firmware progress";
  const top = parseObject(bytes, FIRMWARE_PROGRESS_BYTES_MAX, where);
  const campaignId = idText(top.campaign_id, CAMPAIGN_ID_CHARS_MAX, `${where}.campaign_id`);
  const dcuId = idText(top.dcu_id, 64, `${where}.dcu_id`);
  const reports = list(top.reports, FIRMWARE_PROGRESS_REPORTS_MAX, `${where}.reports`).map(
    (item, i): JobReport => {
      const at = `${where}.reports[${i}]`;
      const o = asObject(item, at);
      const state = o.state;
      if (typeof state !== "string" || !(JOB_REPORT_STATES as readonly string[]).includes(state))
        throw new EvidenceError("BAD_FIELD", `state must be one of ${JOB_REPORT_STATES.join(", ")}`, at);
      const blocksDone = nonNegativeInt(o.blocks_done, `${at}.blocks_done`);
      const blocksTotal = nonNegativeInt(o.blocks_total, `${at}.blocks_total`);
      if (blocksDone > blocksTotal)
        throw new EvidenceError("BAD_FIELD", `blocks_done ${blocksDone} > blocks_total ${blocksTotal}`, at);
      return {
        meterId: idText(o.meter_id, METER_ID_CHARS_MAX, `${at}.meter_id`),
        state: state as JobReportState,
        reason: nullableText(o.reason, REASON_CHARS_MAX, `${at}.reason`),
        blocksDone,
        blocksTotal,
        activeChecksum:
          o.active_checksum === null ? null : checksumText(o.active_checksum, `${at}.active_checksum`),
        firmwareId: nullableText(o.firmware_id, FIRMWARE_ID_CHARS_MAX, `${at}.firmware_id`),
        atMs: nonNegativeInt(o.at_ms, `${at}.at_ms`),
      };
    },
  );
  return { campaignId, dcuId, reports };
}

// ───────────────────────────── field checks ─────────────────────────────

function parseObject(bytes: Uint8Array, max: number, where: string): Record<string, unknown> {
  if (bytes.length > max)
    throw new EvidenceError("BAD_FIELD", `${bytes.length} bytes, at most ${max}`, where);
  let value: unknown;
  try {
    value = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(bytes));
  } catch {
    throw new EvidenceError("BAD_FIELD", "not UTF-8 JSON", where);
  }
  return asObject(value, where);
}

function asObject(value: unknown, where: string): Record<string, unknown> {
  if (typeof value !== "object" || value === null || Array.isArray(value))
    throw new EvidenceError("BAD_FIELD", "expected a JSON object", where);
  return value as Record<string, unknown>;
}

function list(value: unknown, max: number, where: string): unknown[] {
  if (!Array.isArray(value)) throw new EvidenceError("BAD_FIELD", "expected an array", where);
  if (value.length > max)
    throw new EvidenceError("BAD_FIELD", `${value.length} entries, at most ${max}`, where);
  return value;
}

const ID_PATTERN = /^[A-Za-z0-9._:-]+$/;

function idText(value: unknown, max: number, where: string): string {
  if (typeof value !== "string" || value.length === 0 || value.length > max || !ID_PATTERN.test(value))
    throw new EvidenceError("BAD_FIELD", `expected 1..${max} of [A-Za-z0-9._:-]`, where);
  return value;
}

function checksumText(value: unknown, where: string): string {
  if (typeof value !== "string" || !/^[0-9a-f]{64}$/.test(value))
    throw new EvidenceError("BAD_FIELD", "expected a SHA-256 checksum, 64 lowercase hex digits", where);
  return value;
}

function nullableText(value: unknown, max: number, where: string): string | null {
  if (value === null) return null;
  if (typeof value !== "string" || value.length === 0 || value.length > max)
    throw new EvidenceError("BAD_FIELD", `expected null or 1..${max} characters`, where);
  return value;
}

function nonNegativeInt(value: unknown, where: string): number {
  if (typeof value !== "number" || !Number.isSafeInteger(value) || value < 0)
    throw new EvidenceError("BAD_FIELD", "expected a non-negative integer", where);
  return value;
}
