import { MbusError } from "./errors.ts";

// EN 13757-3 §5 (fixed header): the manufacturer ID packs three upper-case letters in 15 bits,
// 5 bits each, 'A' = 1: code = (c1 − 64)·32² + (c2 − 64)·32 + (c3 − 64), sent LSB first.
export function encodeManufacturer(letters: string): number {
  if (!/^[A-Z]{3}$/.test(letters)) {
    throw new MbusError("BAD_FIELD", `manufacturer must be three letters A–Z, got ${JSON.stringify(letters)}`);
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
  0x00: "other",
  0x01: "oil",
  0x02: "electricity",
  0x03: "gas",
  0x04: "heat (outlet)",
  0x05: "steam",
  0x06: "warm water (30–90 °C)",
  0x07: "water",
  0x08: "heat cost allocator",
  0x09: "compressed air",
  0x0a: "cooling load meter (outlet)",
  0x0b: "cooling load meter (inlet)",
  0x0c: "heat (inlet)",
  0x0d: "heat / cooling load meter",
  0x0e: "bus / system component",
  0x0f: "unknown medium",
  0x14: "calorific value",
  0x15: "hot water (≥ 90 °C)",
  0x16: "cold water",
  0x17: "dual register (hot/cold) water meter",
  0x18: "pressure",
  0x19: "A/D converter",
  0x1a: "smoke detector",
  0x1b: "room sensor",
  0x1c: "gas detector",
  0x20: "breaker (electricity)",
  0x21: "valve (gas or water)",
  0x25: "customer unit (display device)",
  0x28: "waste water",
  0x29: "garbage",
  0x31: "communication controller",
  0x32: "unidirectional repeater",
  0x33: "bidirectional repeater",
  0x36: "radio converter (system side)",
  0x37: "radio converter (meter side)",
  0xff: "wildcard",
};

export function mediumName(medium: number): string {
  return MEDIA[medium] ?? "reserved";
}

// EN 13757-3 Table 1 (CI field), the values a wired master and its slaves exchange.
const CI_NAMES: Readonly<Record<number, string>> = {
  0x50: "application reset",
  0x51: "data send",
  0x52: "selection of slaves",
  0x70: "application error",
  0x71: "alarm status",
  0x72: "variable data, long header",
  0x73: "fixed data",
  0x76: "variable data, long header, mode 2 (MSB first)",
  0x77: "fixed data, mode 2 (MSB first)",
  0x78: "variable data, no header",
  0x7a: "variable data, short header",
  0xb8: "set baud rate 300",
  0xb9: "set baud rate 600",
  0xba: "set baud rate 1200",
  0xbb: "set baud rate 2400",
  0xbc: "set baud rate 4800",
  0xbd: "set baud rate 9600",
  0xbe: "set baud rate 19200",
  0xbf: "set baud rate 38400",
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
  const application = (["no_error", "busy", "application_error", "abnormal_condition"] as const)[status & 0x03]!;
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
