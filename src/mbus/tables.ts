import { MbusError } from "./errors.ts";

// EN 13757-3 §5 (fixed header): the manufacturer ID packs three upper-case letters in 15 bits,
// 5 bits each, 'A' = 1: code = (c1 − 64)·32² + (c2 − 64)·32 + (c3 − 64), sent LSB first.
export function encodeManufacturer(letters: string): number {
  if (!/^[A-Z]{3}$/.test(letters)) {
    throw new MbusError(
      "BAD_FIELD",
      `manufacturer must be three letters A–Z, got ${JSON.stringify(letters)}`,
    );
  }
  const v = (i: number) => letters.charCodeAt(i) - 64;
  return (v(0) << 10) | (v(1) << 5) | v(2);
}

/** Letters outside A–Z (values 0 or 27–31) come out as '?', so a corrupt code is visible, not hidden. */
export function decodeManufacturer(code: number): string {
  const letter = (v: number) => (v >= 1 && v <= 26 ? String.fromCharCode(64 + v) : "?");
  return letter((code >> 10) & 0x1f) + letter((code >> 5) & 0x1f) + letter(code & 0x1f);
}

// EN 13757-3 Table 3 ("device type" / medium of the fixed header). Gaps are reserved.
const MEDIA: Readonly<Record<number, string>> = {
  0: "other",
  1: "oil",
  2: "electricity",
  3: "gas",
  4: "heat (outlet)",
  5: "steam",
  6: "warm water (30–90 °C)",
  7: "water",
  8: "heat cost allocator",
  9: "compressed air",
  10: "cooling load meter (outlet)",
  11: "cooling load meter (inlet)",
  12: "heat (inlet)",
  13: "heat / cooling load meter",
  14: "bus / system component",
  15: "unknown medium",
  20: "calorific value",
  21: "hot water (≥ 90 °C)",
  22: "cold water",
  23: "dual register (hot/cold) water meter",
  24: "pressure",
  25: "A/D converter",
  26: "smoke detector",
  27: "room sensor",
  28: "gas detector",
  32: "breaker (electricity)",
  33: "valve (gas or water)",
  37: "customer unit (display device)",
  40: "waste water",
  41: "garbage",
  49: "communication controller",
  50: "unidirectional repeater",
  51: "bidirectional repeater",
  54: "radio converter (system side)",
  55: "radio converter (meter side)",
  255: "wildcard",
};

export function mediumName(medium: number): string {
  return MEDIA[medium] ?? "reserved";
}

// EN 13757-3 Table 1 (CI field), the values a wired master and its slaves exchange.
const CI_NAMES: Readonly<Record<number, string>> = {
  80: "application reset",
  81: "data send",
  82: "selection of slaves",
  112: "application error",
  113: "alarm status",
  114: "variable data, long header",
  115: "fixed data",
  118: "variable data, long header, mode 2 (MSB first)",
  119: "fixed data, mode 2 (MSB first)",
  120: "variable data, no header",
  122: "variable data, short header",
  184: "set baud rate 300",
  185: "set baud rate 600",
  186: "set baud rate 1200",
  187: "set baud rate 2400",
  188: "set baud rate 4800",
  189: "set baud rate 9600",
  190: "set baud rate 19200",
  191: "set baud rate 38400",
};

export function ciName(ci: number): string {
  return CI_NAMES[ci] ?? "unknown";
}

export const CI_APPLICATION_RESET = 0x50;
export const CI_DATA_SEND = 0x51;
export const CI_SELECTION = 0x52;
export const CI_APPLICATION_ERROR = 0x70;
export const CI_ALARM = 0x71;
export const CI_VARIABLE_LONG = 0x72;
export const CI_FIXED = 0x73;
export const CI_VARIABLE_LONG_MSB = 0x76;
export const CI_FIXED_MSB = 0x77;
export const CI_VARIABLE_NONE = 0x78;
export const CI_VARIABLE_SHORT = 0x7a;

// EN 13757-3 status byte: bits 0–1 application state, bit 2 power low, bit 3 permanent error,
// bit 4 temporary error, bits 5–7 manufacturer specific.
export interface MbusStatus {
  application: "no_error" | "busy" | "application_error" | "abnormal_condition";
  powerLow: boolean;
  permanentError: boolean;
  temporaryError: boolean;
  manufacturerBits: number;
}

export function decodeStatus(status: number): MbusStatus {
  const application = (["no_error", "busy", "application_error", "abnormal_condition"] as const)[
    status & 0x03
  ]!;
  return {
    application,
    powerLow: (status & 0x04) !== 0,
    permanentError: (status & 0x08) !== 0,
    temporaryError: (status & 0x10) !== 0,
    manufacturerBits: (status >> 5) & 0x07,
  };
}

// EN 13757-3 (CI 0x70): the one data byte of an application error telegram.
const APPLICATION_ERRORS: Readonly<Record<number, string>> = {
  0: "unspecified error",
  1: "unimplemented CI field",
  2: "buffer too long, truncated",
  3: "too many records",
  4: "premature end of record",
  5: "more than 10 DIFEs",
  6: "more than 10 VIFEs",
  8: "application too busy for handling readout request",
  9: "too many readouts",
};

export function applicationErrorName(code: number): string {
  return APPLICATION_ERRORS[code] ?? "reserved";
}

// EN 1434-3:1997 / M-Bus documentation §6.2 (fixed data structure): medium in 4 bits spread over the
// top two bits of each unit byte.
const FIXED_MEDIA = [
  "other",
  "oil",
  "electricity",
  "gas",
  "heat",
  "steam",
  "hot water",
  "water",
  "heat cost allocator",
  "reserved",
  "gas (mode 2)",
  "heat (mode 2)",
  "hot water (mode 2)",
  "water (mode 2)",
  "heat cost allocator (mode 2)",
  "reserved",
] as const;

export function fixedMediumName(medium: number): string {
  return FIXED_MEDIA[medium & 0x0f]!;
}
