import type { EventLevel, EventRecord, EventType, Snapshot, SnapshotValue } from "../../evidence/index.ts";
import type { Transition, UpdatableComponent } from "./boot-config.ts";
import { versionString } from "./image.ts";

// The sealed records of each firmware transition, and rollback.log (seed 000 "Section C: Logs &
// Debugging") derived from those same records, so the log can never say what the evidence does not.
// Every record of a transition carries `fw_transition` (its sequence number in the boot configuration).

export interface TransitionRecord {
  readonly type: EventType;
  readonly level: EventLevel;
  readonly snapshot: Snapshot;
}

/** The record types a firmware transition or refusal seals. */
export const FIRMWARE_RECORD_TYPES: readonly EventType[] = [
  "FW_UPDATE_RECEIVED",
  "FW_VERIFIED",
  "FW_ACTIVATED",
  "FW_CONFIRMED",
  "FW_ROLLED_BACK",
  "FW_REFUSED",
  "FW_ROLLBACK",
  "SIG_FAIL",
  "WDT_REBOOT_LOOP",
];

/** seed 004: 0xF2 is the signature-failure error code on alerts. */
export const SIGN_AUTH_FAIL_ERROR_CODE = "0xF2";

function componentsText(components: readonly UpdatableComponent[]): string {
  return components.join("+");
}

/** `counters`: the anti-rollback counters now (fw_app_version, fw_comms_version), for FW_ROLLBACK. */
export function transitionRecords(
  t: Transition,
  counters: Readonly<Record<string, number>>,
): TransitionRecord[] {
  const component = componentsText(t.components);
  const base: Record<string, SnapshotValue> = { fw_transition: t.seq, component };
  const bank = t.toSlot ?? "?";
  const from: Record<string, SnapshotValue> = {};
  if (t.fromApp !== null) from.app_from = t.fromApp;
  if (t.fromComms !== null) from.comms_from = t.fromComms;
  const cause: Record<string, SnapshotValue> = t.cause === "NONE" ? {} : { cause: t.cause };
  switch (t.kind) {
    case "RECEIVED":
      return [
        { type: "FW_UPDATE_RECEIVED", level: "INFO", snapshot: { ...base, bank, image_bytes: t.value } },
      ];
    case "VERIFIED":
      return [
        { type: "FW_VERIFIED", level: "INFO", snapshot: { ...base, bank, version: versionString(t.value) } },
      ];
    case "ACTIVATED":
      return [
        { type: "FW_ACTIVATED", level: "INFO", snapshot: { ...base, bank, version: versionString(t.value) } },
      ];
    case "CONFIRMED":
      return [
        { type: "FW_CONFIRMED", level: "INFO", snapshot: { ...base, bank, version: versionString(t.value) } },
      ];
    case "REFUSED":
    case "ROLLBACK_REFUSED": {
      const stage = t.kind === "REFUSED" ? "verify" : "rollback";
      const snapshot: Record<string, SnapshotValue> = { ...base, reason: t.reason, stage, bank, ...cause };
      if (t.value !== 0) snapshot.version = versionString(t.value);
      if (t.reason === "SIGN_AUTH_FAIL") {
        return [
          {
            type: "SIG_FAIL",
            level: "CRITICAL",
            snapshot: { ...snapshot, error_code: SIGN_AUTH_FAIL_ERROR_CODE },
          },
        ];
      }
      if (t.reason === "VERSION_ROLLBACK_REFUSED") {
        // seed 002 FW_ROLLBACK: an attempt to install firmware older than the anti-rollback counter.
        const counter = counters[`fw_${t.components[0] ?? "app"}_version`] ?? 0;
        return [
          {
            type: "FW_ROLLBACK",
            level: "CRITICAL",
            snapshot: { ...snapshot, security_counter: versionString(counter) },
          },
        ];
      }
      return [{ type: "FW_REFUSED", level: "CRITICAL", snapshot }];
    }
    case "ROLLED_BACK": {
      const forced = t.reason === "FORCED_ROLLBACK" || t.reason === "PARTIAL_ROLLBACK";
      return [
        {
          type: "FW_ROLLED_BACK",
          level: forced ? "MAJOR" : "CRITICAL",
          snapshot: { ...base, reason: t.reason, ...cause, ...from, to_bank: bank },
        },
      ];
    }
    case "WDT_ROLLBACK":
      return [
        {
          type: "WDT_REBOOT_LOOP",
          level: "CRITICAL",
          snapshot: { ...base, ...from, unconfirmed_boots: t.value },
        },
        {
          type: "FW_ROLLED_BACK",
          level: "CRITICAL",
          snapshot: { ...base, reason: "WDT_REBOOT_LOOP", ...from, to_bank: bank },
        },
      ];
  }
}

/**
 * rollback.log lines (seed 000, /var/log/meter/rollback.log), one per firmware record, oldest first:
 * `ISO-time seq=N TYPE REASON key=value …`. REASON is the seed's error string where one applies
 * (ERROR_CRC_MISMATCH, WDT_REBOOT_LOOP, SIGN_AUTH_FAIL, MEM_ACCESS_VIOLATION), else the record's reason
 * or type.
 */
export function rollbackLog(records: readonly EventRecord[]): string[] {
  const lines: string[] = [];
  for (const r of records) {
    if (!FIRMWARE_RECORD_TYPES.includes(r.type)) continue;
    // SIG_FAIL and FW_ROLLBACK are shared with other boundaries (commands, calibration): only the
    // firmware's own, tied to a transition, belong here.
    if ((r.type === "SIG_FAIL" || r.type === "FW_ROLLBACK") && r.snapshot.fw_transition === undefined)
      continue;
    const reason =
      r.type === "WDT_REBOOT_LOOP"
        ? "WDT_REBOOT_LOOP"
        : r.type === "SIG_FAIL"
          ? "SIGN_AUTH_FAIL"
          : typeof r.snapshot.reason === "string"
            ? r.snapshot.reason
            : r.type;
    const detail = Object.entries(r.snapshot)
      .filter(([k]) => k !== "reason")
      .map(([k, v]) => `${k}=${v}`)
      .join(" ");
    lines.push(
      `${new Date(r.timestampMs).toISOString()} seq=${r.seq} ${r.type} ${reason} ${detail}`.trimEnd(),
    );
  }
  return lines;
}
