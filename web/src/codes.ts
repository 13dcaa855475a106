// Vocabulary shown to the operator: the seed documents' own words.

/** seed 004, "Logs & Debugging": the error codes an alert's snapshot carries as `error_code`. */
export const SEED_004_ERROR_CODES: Readonly<Record<string, { name: string; meaning: string }>> = {
  "0x04": {
    name: "Metrology Mismatch",
    meaning:
      "The differential between line and neutral current exceeds the 10 % threshold. Inspect the wiring for physical shunts or corrosion.",
  },
  "0x09": {
    name: "Magnetic Interference",
    meaning:
      "The hall-effect sensor registered a field above 50 mT. Check the surroundings for high-voltage lines or industrial magnets.",
  },
  "0xF2": {
    name: "Signature Validation Failure",
    meaning:
      "The meter's signature does not match the public key stored at the head-end. Check the meter's key provisioning (PKI certificates).",
  },
};

/** The error code an alert type maps to (as the head-end puts it in the snapshot). */
export const ERROR_CODE_OF_TYPE: Readonly<Record<string, string>> = {
  NEUTRAL_MISS: "0x04",
  MAG_TAMPER: "0x09",
  MAG_SUSPECT: "0x09",
  SIG_FAIL: "0xF2",
  ALERT_BAD_SIGNATURE: "0xF2",
};

export function errorCodeOf(type: string, snapshot: Record<string, unknown>): string | null {
  const inSnapshot = snapshot.error_code;
  if (typeof inSnapshot === "string" && inSnapshot in SEED_004_ERROR_CODES) return inSnapshot;
  return ERROR_CODE_OF_TYPE[type] ?? null;
}

/** seed 003 H2-4 gap attribution, as the head-end classifies gaps. */
export const GAP_CLASS_MEANING: Readonly<Record<string, { axis: string; meaning: string; colour: string }>> = {
  SEQ_GAP: {
    axis: "capture",
    meaning: "a meter's seq jumped while commit_ids were continuous: readings never captured",
    colour: "#b3261e",
  },
  COMMIT_GAP: {
    axis: "storage",
    meaning: "commit_ids jumped: the concentrator's journal lost or skipped records",
    colour: "#8a4b00",
  },
  UPLINK_GAP: {
    axis: "uplink",
    meaning: "batch_ids missing: batches not (yet) delivered; resolved when a late batch fills the hole",
    colour: "#0b5cad",
  },
  TIME_STEP: {
    axis: "rtc",
    meaning: "a meter's timestamps went backwards: a clock step",
    colour: "#5b3fa0",
  },
};

export const TAMPER_TYPES: ReadonlySet<string> = new Set([
  "MAG_TAMPER",
  "NEUTRAL_MISS",
  "REV_CURRENT",
  "COVER_OPEN",
  "BYPASS_SUS",
  "INJECT_SUS",
  "FW_ROLLBACK",
  "TILT",
  "SIG_FAIL",
  "TAMPER_PENDING",
  "TAMPER_CLEARED",
  "MAG_SUSPECT",
]);

export const FIRMWARE_EVENT_TYPES: ReadonlySet<string> = new Set([
  "FW_UPDATE_RECEIVED",
  "FW_VERIFIED",
  "FW_ACTIVATED",
  "FW_CONFIRMED",
  "FW_ROLLED_BACK",
  "FW_REFUSED",
  "FW_ROLLBACK",
  "WDT_REBOOT_LOOP",
]);

/** IEC 62056-6-2 (DLMS Blue Book) unit enumeration: the ones a meter's registers use. */
export const DLMS_UNITS: Readonly<Record<number, string>> = {
  7: "s",
  8: "°",
  9: "°C",
  27: "W",
  28: "VA",
  29: "var",
  30: "Wh",
  31: "VAh",
  32: "varh",
  33: "A",
  35: "V",
  44: "Hz",
  56: "%",
  255: "",
};

/** A few OBIS codes by name (IEC 62056-6-1). */
export const OBIS_NAMES: Readonly<Record<string, string>> = {
  "1.0.1.8.0.255": "Active energy import (+A)",
  "1.0.2.8.0.255": "Active energy export (−A)",
  "1.0.3.8.0.255": "Reactive energy import (+R)",
  "1.0.4.8.0.255": "Reactive energy export (−R)",
  "1.0.1.7.0.255": "Active power import",
  "1.0.32.7.0.255": "Voltage L1",
  "1.0.31.7.0.255": "Current L1",
  "1.0.91.7.0.255": "Neutral current",
  "1.0.14.7.0.255": "Frequency",
};

export function levelTone(level: string): "bad" | "warn" | "info" | "muted" {
  return level === "CRITICAL" ? "bad" : level === "MAJOR" ? "warn" : level === "MINOR" ? "info" : "muted";
}
