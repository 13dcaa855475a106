import { MbusError } from "./errors.ts";
import { hexByte } from "./frame.ts";

// EN 13757-3 value information block: VIF [VIFE…], decoded into a quantity, the unit as sent with its
// decimal exponent, and the conversion to SI.

/** EN 13757-3 §6.4: at most 10 VIFEs follow a VIF. */
export const MBUS_VIFE_MAX = 10;
/** The plain-text VIF carries its own length byte. */
export const MBUS_PLAIN_TEXT_VIF_CHARS_MAX = 255;

export const VIF_TIME_POINT_DATE = 0x6c;
export const VIF_TIME_POINT_DATE_TIME = 0x6d;
export const VIF_EXTENSION_FB = 0x7b;
export const VIF_PLAIN_TEXT = 0x7c;
export const VIF_EXTENSION_FD = 0x7d;
export const VIF_ANY = 0x7e;
export const VIF_MANUFACTURER = 0x7f;

/**
 * How a record's data is to be read once the VIF is known:
 * number — a measured or counted value (scaled by 10^exponent); date/date_time/time — the M-Bus time types;
 * code — an identifier or bit set (never scaled, read unsigned); text — ISO 8859-1 characters.
 */
export type ValueKind = "number" | "date" | "date_time" | "code";

/** Conversion of the unit as sent into SI: multiply by num/den, or an affine conversion for °F. */
export type SiConversion =
  | { kind: "ratio"; num: number; den: number }
  | { kind: "fahrenheit" } // absolute °F → °C
  | { kind: "fahrenheit_difference" }; // °F difference → K

export interface ValueInfo {
  /** Which table the VIF came from. */
  table: "primary" | "fb" | "fd" | "plain_text" | "any" | "manufacturer";
  /** snake_case quantity, e.g. `energy`, `volume_flow`, `flow_temperature`, `fabrication_number`. */
  quantity: string;
  description: string;
  /** The unit the meter sends (before the exponent), e.g. `Wh`, `m3/h`, `°C`; empty when dimensionless. */
  rawUnit: string;
  /** Decimal exponent of the unit as sent, including combinable multiplicative VIFEs. */
  exponent: number;
  /** The SI unit `value` is given in; empty when dimensionless or when no SI unit exists. */
  unit: string;
  si: SiConversion;
  kind: ValueKind;
  /** Combinable VIFEs that modify the meaning, as readable notes. */
  notes: string[];
  /** EN 13757-3 combinable VIFE error code (0x00–0x1F) when the slave flags the record, else null. */
  errorCode: number | null;
  errorText: string | null;
  /** The VIF is manufacturer specific (0x7F/0xFF) or a VIFE 0x7F made the rest of the record so. */
  manufacturerSpecific: boolean;
  /** Raw VIF and VIFE bytes exactly as sent (plain-text characters excluded). */
  bytes: Uint8Array;
}

const ONE: SiConversion = { kind: "ratio", num: 1, den: 1 };
function ratio(num: number, den = 1): SiConversion {
  return { kind: "ratio", num, den };
}

interface UnitDef {
  raw: string;
  unit: string;
  si: SiConversion;
}

const U = {
  Wh: { raw: "Wh", unit: "J", si: ratio(3600) },
  J: { raw: "J", unit: "J", si: ONE },
  MWh: { raw: "MWh", unit: "J", si: ratio(3_600_000_000) },
  GJ: { raw: "GJ", unit: "J", si: ratio(1_000_000_000) },
  // 1 cal (international table) = 4.1868 J
  MCal: { raw: "MCal", unit: "J", si: ratio(4_186_800_000) },
  kvarh: { raw: "kvarh", unit: "varh", si: ratio(1000) },
  kVAh: { raw: "kVAh", unit: "VAh", si: ratio(1000) },
  m3: { raw: "m3", unit: "m3", si: ONE },
  ft3: { raw: "ft3", unit: "m3", si: ratio(28_316_846_592, 1e12) },
  usgal: { raw: "US gal", unit: "m3", si: ratio(3_785_411_784, 1e12) },
  kg: { raw: "kg", unit: "kg", si: ONE },
  t: { raw: "t", unit: "kg", si: ratio(1000) },
  s: { raw: "s", unit: "s", si: ONE },
  min: { raw: "min", unit: "s", si: ratio(60) },
  h: { raw: "h", unit: "s", si: ratio(3600) },
  d: { raw: "d", unit: "s", si: ratio(86_400) },
  month: { raw: "month", unit: "month", si: ONE },
  year: { raw: "year", unit: "year", si: ONE },
  W: { raw: "W", unit: "W", si: ONE },
  MW: { raw: "MW", unit: "W", si: ratio(1_000_000) },
  Jh: { raw: "J/h", unit: "W", si: ratio(1, 3600) },
  GJh: { raw: "GJ/h", unit: "W", si: ratio(1_000_000_000, 3600) },
  kvar: { raw: "kvar", unit: "var", si: ratio(1000) },
  kVA: { raw: "kVA", unit: "VA", si: ratio(1000) },
  m3h: { raw: "m3/h", unit: "m3/s", si: ratio(1, 3600) },
  m3min: { raw: "m3/min", unit: "m3/s", si: ratio(1, 60) },
  m3s: { raw: "m3/s", unit: "m3/s", si: ONE },
  usgalmin: { raw: "US gal/min", unit: "m3/s", si: ratio(3_785_411_784, 60e12) },
  usgalh: { raw: "US gal/h", unit: "m3/s", si: ratio(3_785_411_784, 3600e12) },
  kgh: { raw: "kg/h", unit: "kg/s", si: ratio(1, 3600) },
  // °C is the SI-derived unit with a special name; temperatures stay in °C, differences in K.
  degC: { raw: "°C", unit: "°C", si: ONE },
  K: { raw: "K", unit: "K", si: ONE },
  degF: { raw: "°F", unit: "°C", si: { kind: "fahrenheit" } },
  degFDiff: { raw: "°F", unit: "K", si: { kind: "fahrenheit_difference" } },
  bar: { raw: "bar", unit: "Pa", si: ratio(100_000) },
  V: { raw: "V", unit: "V", si: ONE },
  A: { raw: "A", unit: "A", si: ONE },
  Hz: { raw: "Hz", unit: "Hz", si: ONE },
  percent: { raw: "%", unit: "%", si: ONE },
  degree: { raw: "°", unit: "°", si: ONE },
  dBm: { raw: "dBm", unit: "dBm", si: ONE },
  currency: { raw: "currency units", unit: "currency units", si: ONE },
  baud: { raw: "Bd", unit: "Bd", si: ONE },
  bitTimes: { raw: "bit times", unit: "bit times", si: ONE },
  none: { raw: "", unit: "", si: ONE },
} satisfies Record<string, UnitDef>;

type VifEntry = Pick<ValueInfo, "quantity" | "description" | "exponent" | "kind"> & { u: UnitDef };

function entry(
  quantity: string,
  description: string,
  u: UnitDef,
  exponent = 0,
  kind: ValueKind = "number",
): VifEntry {
  return { quantity, description, u, exponent, kind };
}

const DURATION_NN = [U.s, U.min, U.h, U.d] as const;
const DURATION_PP = [U.h, U.d, U.month, U.year] as const;

// EN 13757-3 Table 10: primary VIF codes (E bit removed).
function primaryVif(code: number): VifEntry | null {
  const nnn = code & 0x07;
  const nn = code & 0x03;
  if (code <= 0x07) return entry("energy", "energy", U.Wh, nnn - 3);
  if (code <= 0x0f) return entry("energy", "energy", U.J, nnn);
  if (code <= 0x17) return entry("volume", "volume", U.m3, nnn - 6);
  if (code <= 0x1f) return entry("mass", "mass", U.kg, nnn - 3);
  if (code <= 0x23) return entry("on_time", "on time", DURATION_NN[nn]!);
  if (code <= 0x27) return entry("operating_time", "operating time", DURATION_NN[nn]!);
  if (code <= 0x2f) return entry("power", "power", U.W, nnn - 3);
  if (code <= 0x37) return entry("power", "power", U.Jh, nnn);
  if (code <= 0x3f) return entry("volume_flow", "volume flow", U.m3h, nnn - 6);
  if (code <= 0x47) return entry("volume_flow", "volume flow", U.m3min, nnn - 7);
  if (code <= 0x4f) return entry("volume_flow", "volume flow", U.m3s, nnn - 9);
  if (code <= 0x57) return entry("mass_flow", "mass flow", U.kgh, nnn - 3);
  if (code <= 0x5b) return entry("flow_temperature", "flow temperature", U.degC, nn - 3);
  if (code <= 0x5f) return entry("return_temperature", "return temperature", U.degC, nn - 3);
  if (code <= 0x63) return entry("temperature_difference", "temperature difference", U.K, nn - 3);
  if (code <= 0x67) return entry("external_temperature", "external temperature", U.degC, nn - 3);
  if (code <= 0x6b) return entry("pressure", "pressure", U.bar, nn - 3);
  if (code === 0x6c) return entry("time_point", "time point (date, type G)", U.none, 0, "date");
  if (code === 0x6d)
    return entry("time_point", "time point (date and time, type F/I/J)", U.none, 0, "date_time");
  if (code === 0x6e) return entry("hca_units", "units for heat cost allocator (dimensionless)", U.none);
  if (code === 0x6f) return null;
  if (code <= 0x73) return entry("averaging_duration", "averaging duration", DURATION_NN[nn]!);
  if (code <= 0x77) return entry("actuality_duration", "actuality duration", DURATION_NN[nn]!);
  if (code === 0x78) return entry("fabrication_number", "fabrication number", U.none, 0, "code");
  if (code === 0x79) return entry("enhanced_identification", "(enhanced) identification", U.none, 0, "code");
  if (code === 0x7a) return entry("bus_address", "bus address", U.none, 0, "code");
  return null;
}

// EN 13757-3 main VIFE code extension table, reached through VIF 0xFD.
function fdVif(code: number): VifEntry | null {
  const nn = code & 0x03;
  const c = (quantity: string, description: string) => entry(quantity, description, U.none, 0, "code");
  if (code <= 0x03) return entry("credit", "credit", U.currency, nn - 3);
  if (code <= 0x07) return entry("debit", "debit", U.currency, nn - 3);
  switch (code) {
    case 0x08:
      return c("access_number", "access number (transmission count)");
    case 0x09:
      return c("medium", "medium (as in fixed header)");
    case 0x0a:
      return c("manufacturer", "manufacturer (as in fixed header)");
    case 0x0b:
      return c("parameter_set_identification", "parameter set identification");
    case 0x0c:
      return c("model_version", "model / version");
    case 0x0d:
      return c("hardware_version", "hardware version");
    case 0x0e:
      return c("firmware_version", "firmware (metrology) version");
    case 0x0f:
      return c("software_version", "software version");
    case 0x10:
      return c("customer_location", "customer location");
    case 0x11:
      return c("customer", "customer");
    case 0x12:
      return c("access_code_user", "access code user");
    case 0x13:
      return c("access_code_operator", "access code operator");
    case 0x14:
      return c("access_code_system_operator", "access code system operator");
    case 0x15:
      return c("access_code_developer", "access code developer");
    case 0x16:
      return c("password", "password");
    case 0x17:
      return c("error_flags", "error flags (device type specific)");
    case 0x18:
      return c("error_mask", "error mask");
    case 0x19:
      return c("security_key", "security key");
    case 0x1a:
      return c("digital_output", "digital output (binary)");
    case 0x1b:
      return c("digital_input", "digital input (binary)");
    case 0x1c:
      return entry("baud_rate", "baud rate", U.baud);
    case 0x1d:
      return entry("response_delay_time", "response delay time", U.bitTimes);
    case 0x1e:
      return entry("retry", "retry", U.none);
    case 0x1f:
      return c("remote_control", "remote control (device specific)");
    case 0x20:
      return entry("first_storage_number", "first storage number for cyclic storage", U.none);
    case 0x21:
      return entry("last_storage_number", "last storage number for cyclic storage", U.none);
    case 0x22:
      return entry("storage_block_size", "size of storage block", U.none);
    case 0x23:
      return c("tariff_subunit_descriptor", "descriptor for tariff and subunit");
    case 0x28:
      return entry("storage_interval", "storage interval", U.month);
    case 0x29:
      return entry("storage_interval", "storage interval", U.year);
    case 0x2a:
      return c("operator_specific_data", "operator specific data");
    case 0x2b:
      return entry("time_point_second", "time point second (0..59)", U.s);
    case 0x30:
      return entry("tariff_start", "start (date/time) of tariff", U.none, 0, "date_time");
    case 0x38:
      return entry("tariff_period", "period of tariff", U.month);
    case 0x39:
      return entry("tariff_period", "period of tariff", U.year);
    case 0x3a:
      return entry("dimensionless", "dimensionless / no VIF", U.none);
    case 0x3b:
      return c("wireless_container", "data container for wireless M-Bus protocol");
    case 0x60:
      return entry("reset_counter", "reset counter", U.none);
    case 0x61:
      return entry("cumulation_counter", "cumulation counter", U.none);
    case 0x62:
      return c("control_signal", "control signal");
    case 0x63:
      return entry("day_of_week", "day of week", U.none);
    case 0x64:
      return entry("week_number", "week number", U.none);
    case 0x65:
      return c("day_change_time_point", "time point of day change");
    case 0x66:
      return c("parameter_activation_state", "state of parameter activation");
    case 0x67:
      return c("special_supplier_information", "special supplier information");
    case 0x70:
      return entry("battery_change", "date and time of battery change", U.none, 0, "date_time");
    case 0x71:
      return entry("rf_level", "RF level", U.dBm);
    case 0x72:
      return c("daylight_saving", "daylight saving (beginning, ending, deviation)");
    case 0x73:
      return c("listening_window_management", "listening window management");
    case 0x74:
      return entry("remaining_battery_lifetime", "remaining battery life time", U.d);
    case 0x75:
      return entry("meter_stopped_count", "number of times the meter was stopped", U.none);
    case 0x76:
      return c("manufacturer_container", "data container for manufacturer specific protocol");
  }
  if (code >= 0x24 && code <= 0x27) return entry("storage_interval", "storage interval", DURATION_NN[nn]!);
  if (code >= 0x2c && code <= 0x2f) {
    return entry("duration_since_readout", "duration since last readout", DURATION_NN[nn]!);
  }
  // E011 00nn with nn = 01..11 (nn = 00 is the start of tariff above)
  if (code >= 0x31 && code <= 0x33) return entry("tariff_duration", "duration of tariff", DURATION_NN[nn]!);
  if (code >= 0x34 && code <= 0x37) return entry("tariff_period", "period of tariff", DURATION_NN[nn]!);
  if (code >= 0x3c && code <= 0x3f) {
    return entry("nominal_transmission_period", "period of nominal data transmissions", DURATION_NN[nn]!);
  }
  if (code >= 0x40 && code <= 0x4f) return entry("voltage", "voltage", U.V, (code & 0x0f) - 9);
  if (code >= 0x50 && code <= 0x5f) return entry("current", "current", U.A, (code & 0x0f) - 12);
  if (code >= 0x68 && code <= 0x6b) {
    return entry("duration_since_cumulation", "duration since last cumulation", DURATION_PP[nn]!);
  }
  if (code >= 0x6c && code <= 0x6f)
    return entry("battery_operating_time", "operating time battery", DURATION_PP[nn]!);
  return null;
}

// EN 13757-3 alternate extended VIF-code table, reached through VIF 0xFB.
function fbVif(code: number): VifEntry | null {
  const n = code & 0x01;
  const nn = code & 0x03;
  const nnn = code & 0x07;
  if (code <= 0x01) return entry("energy", "energy", U.MWh, n - 1);
  if (code <= 0x03) return entry("reactive_energy", "reactive energy", U.kvarh, n);
  if (code <= 0x05) return entry("apparent_energy", "apparent energy", U.kVAh, n);
  if (code >= 0x08 && code <= 0x09) return entry("energy", "energy", U.GJ, n - 1);
  if (code >= 0x0c && code <= 0x0f) return entry("energy", "energy", U.MCal, nn - 1);
  if (code >= 0x10 && code <= 0x11) return entry("volume", "volume", U.m3, n + 2);
  if (code >= 0x14 && code <= 0x17) return entry("reactive_power", "reactive power", U.kvar, nn - 3);
  if (code >= 0x18 && code <= 0x19) return entry("mass", "mass", U.t, n + 2);
  if (code >= 0x1a && code <= 0x1b) return entry("relative_humidity", "relative humidity", U.percent, n - 1);
  if (code === 0x20) return entry("volume", "volume", U.ft3, 0);
  if (code === 0x21) return entry("volume", "volume", U.ft3, -1);
  if (code >= 0x22 && code <= 0x23) return entry("volume", "volume", U.usgal, n - 1);
  if (code === 0x24) return entry("volume_flow", "volume flow", U.usgalmin, -3);
  if (code === 0x25) return entry("volume_flow", "volume flow", U.usgalmin, 0);
  if (code === 0x26) return entry("volume_flow", "volume flow", U.usgalh, 0);
  if (code >= 0x28 && code <= 0x29) return entry("power", "power", U.MW, n - 1);
  if (code === 0x2a) return entry("phase_u_u", "phase voltage to voltage", U.degree, -1);
  if (code === 0x2b) return entry("phase_u_i", "phase voltage to current", U.degree, -1);
  if (code >= 0x2c && code <= 0x2f) return entry("frequency", "frequency", U.Hz, nn - 3);
  if (code >= 0x30 && code <= 0x31) return entry("power", "power", U.GJh, n - 1);
  if (code >= 0x34 && code <= 0x37) return entry("apparent_power", "apparent power", U.kVA, nn - 3);
  if (code >= 0x58 && code <= 0x5b) return entry("flow_temperature", "flow temperature", U.degF, nn - 3);
  if (code >= 0x5c && code <= 0x5f) return entry("return_temperature", "return temperature", U.degF, nn - 3);
  if (code >= 0x60 && code <= 0x63) {
    return entry("temperature_difference", "temperature difference", U.degFDiff, nn - 3);
  }
  if (code >= 0x64 && code <= 0x67)
    return entry("external_temperature", "external temperature", U.degF, nn - 3);
  if (code >= 0x70 && code <= 0x73)
    return entry("temperature_limit", "cold / warm temperature limit", U.degF, nn - 3);
  if (code >= 0x74 && code <= 0x77)
    return entry("temperature_limit", "cold / warm temperature limit", U.degC, nn - 3);
  if (code >= 0x78) return entry("cumulative_max_power", "cumulative count max power", U.W, nnn - 3);
  return null;
}

// EN 13757-3 combinable (orthogonal) VIFE codes E00x xxxx: record error codes sent by the slave.
const VIFE_ERRORS: Readonly<Record<number, string>> = {
  0: "none",
  1: "too many DIFEs",
  2: "storage number not implemented",
  3: "unit number not implemented",
  4: "tariff number not implemented",
  5: "function not implemented",
  6: "data class not implemented",
  7: "data size not implemented",
  11: "too many VIFEs",
  12: "illegal VIF-group",
  13: "illegal VIF-exponent",
  14: "VIF/DIF mismatch",
  15: "unimplemented action",
  21: "no data available (undefined value)",
  22: "data overflow",
  23: "data underflow",
  24: "data error",
  28: "premature end of record",
};

const PER_TIME = [
  ["/s", "/s", 1],
  ["/min", "/s", 60],
  ["/h", "/s", 3600],
  ["/d", "/s", 86_400],
  ["/week", "/s", 604_800],
  ["/month", "/month", 0],
  ["/year", "/year", 0],
  ["/revolution", "/revolution", 0],
] as const;

const PER_UNIT: Readonly<Record<number, string>> = {
  44: "/l",
  45: "/m3",
  46: "/kg",
  47: "/K",
  48: "/kWh",
  49: "/GJ",
  50: "/kW",
  51: "/(K·l)",
  52: "/V",
  53: "/A",
  54: "·s",
  55: "·s/V",
  56: "·s/A",
};

/** Applies one combinable VIFE (E bit removed). Returns true when the following VIFEs are manufacturer specific. */
function applyCombinable(info: ValueInfo, code: number): boolean {
  if (code <= 0x1f) {
    info.errorCode = code;
    info.errorText = VIFE_ERRORS[code] ?? "reserved error code";
    return false;
  }
  if (code <= 0x27) {
    const [rawSuffix, siSuffix, seconds] = PER_TIME[code - 0x20]!;
    info.rawUnit += rawSuffix;
    info.unit += siSuffix;
    if (seconds > 0 && info.si.kind === "ratio") info.si = ratio(info.si.num, info.si.den * seconds);
    info.notes.push(`per ${rawSuffix.slice(1)}`);
    return false;
  }
  if (code <= 0x2b) {
    const direction = code <= 0x29 ? "input" : "output";
    info.notes.push(`increment per ${direction} pulse on channel ${code & 0x01}`);
    return false;
  }
  if (code <= 0x38) {
    const suffix = PER_UNIT[code]!;
    info.rawUnit += suffix;
    info.unit += suffix;
    info.notes.push(suffix.startsWith("/") ? `per ${suffix.slice(1)}` : `multiplied by ${suffix.slice(1)}`);
    return false;
  }
  switch (code) {
    case 0x39:
      info.notes.push("start date(/time) of");
      info.kind = "date_time";
      return false;
    case 0x3a:
      info.notes.push("uncorrected unit instead of corrected unit");
      return false;
    case 0x3b:
      info.notes.push("accumulation only if positive contributions");
      return false;
    case 0x3c:
      info.notes.push("accumulation of absolute value only if negative contributions");
      return false;
    case 0x7c:
      info.notes.push("extension of combinable VIFE codes follows");
      return false;
    case 0x7d:
      info.exponent += 3;
      info.notes.push("multiplicative correction factor 10^3");
      return false;
    case 0x7e:
      info.notes.push("future value");
      return false;
    case 0x7f:
      info.notes.push("next VIFEs and data of this block are manufacturer specific");
      info.manufacturerSpecific = true;
      return true;
  }
  if (code >= 0x70 && code <= 0x77) {
    info.exponent += (code & 0x07) - 6;
    info.notes.push(`multiplicative correction factor 10^${(code & 0x07) - 6}`);
    return false;
  }
  if (code >= 0x78 && code <= 0x7b) {
    info.notes.push(`additive correction constant 10^${(code & 0x03) - 3} × unit of VIF (offset)`);
    return false;
  }
  const limit = (code & 0x08) !== 0 ? "upper" : "lower";
  const firstLast = (code & 0x04) !== 0 ? "last" : "first";
  const beginEnd = (code & 0x01) !== 0 ? "end" : "begin";
  if (code >= 0x40 && code <= 0x4f) {
    const low = code & 0x07;
    if (low === 0) info.notes.push(`${limit} limit value`);
    else if (low === 1) info.notes.push(`number of exceeds of ${limit} limit`);
    else if ((low & 0x02) !== 0) {
      info.notes.push(`date(/time) of ${beginEnd} of ${firstLast} ${limit} limit exceed`);
      info.kind = "date_time";
    } else info.notes.push(`reserved combinable VIFE 0x${hexByte(code)}`);
    return false;
  }
  if (code >= 0x50 && code <= 0x5f) {
    info.notes.push(`duration of ${firstLast} ${limit} limit exceed (${DURATION_NN[code & 0x03]!.raw})`);
    return false;
  }
  if (code >= 0x60 && code <= 0x67) {
    info.notes.push(`duration of ${firstLast} (${DURATION_NN[code & 0x03]!.raw})`);
    return false;
  }
  if (code >= 0x68 && code <= 0x6f && (code & 0x02) !== 0) {
    info.notes.push(`date(/time) of ${beginEnd} of ${firstLast}`);
    info.kind = "date_time";
    return false;
  }
  info.notes.push(`reserved combinable VIFE 0x${hexByte(code)}`);
  return false;
}

function fromEntry(table: ValueInfo["table"], e: VifEntry | null, code: number): ValueInfo {
  if (e === null) {
    return {
      table,
      quantity: "reserved",
      description: `reserved VIF code 0x${hexByte(code)}${table === "primary" ? "" : ` (table ${table})`}`,
      rawUnit: "",
      exponent: 0,
      unit: "",
      si: ONE,
      kind: "code",
      notes: [],
      errorCode: null,
      errorText: null,
      manufacturerSpecific: false,
      bytes: new Uint8Array(0),
    };
  }
  return {
    table,
    quantity: e.quantity,
    description: e.description,
    rawUnit: e.u.raw,
    exponent: e.exponent,
    unit: e.u.unit,
    si: e.u.si,
    kind: e.kind,
    notes: [],
    errorCode: null,
    errorText: null,
    manufacturerSpecific: false,
    bytes: new Uint8Array(0),
  };
}

export interface DecodedVib {
  info: ValueInfo;
  /** Offset of the first byte after the VIB (after the plain-text string for VIF 0x7C/0xFC). */
  next: number;
}

function need(bytes: Uint8Array, at: number, what: string, where: string): number {
  if (at >= bytes.length) {
    throw new MbusError("TRUNCATED", `${what} missing: the telegram ends at byte ${bytes.length}`, where);
  }
  return bytes[at]!;
}

/** Decodes the VIF, its VIFEs and (for 0x7C/0xFC) the plain-text unit that follows them. */
export function decodeVib(bytes: Uint8Array, offset: number, where: string): DecodedVib {
  const start = offset;
  const vif = need(bytes, offset, "VIF", where);
  let at = offset + 1;
  let extension = (vif & 0x80) !== 0;
  const vifCode = vif & 0x7f;
  let vifeCount = 0;
  const readVife = (): number => {
    vifeCount += 1;
    if (vifeCount > MBUS_VIFE_MAX) {
      throw new MbusError("BAD_VIF", `more than ${MBUS_VIFE_MAX} VIFEs`, `${where}, byte ${at}`);
    }
    const b = need(bytes, at, "VIFE", where);
    at += 1;
    extension = (b & 0x80) !== 0;
    return b & 0x7f;
  };

  let info: ValueInfo;
  let manufacturerTail = false;
  if (vifCode === VIF_EXTENSION_FB || vifCode === VIF_EXTENSION_FD) {
    if (!extension) {
      throw new MbusError(
        "BAD_VIF",
        `VIF 0x${hexByte(vif)} announces an extension table but its extension bit is clear`,
        `${where}, byte ${start}`,
      );
    }
    const code = readVife();
    info =
      vifCode === VIF_EXTENSION_FD ? fromEntry("fd", fdVif(code), code) : fromEntry("fb", fbVif(code), code);
  } else if (vifCode === VIF_PLAIN_TEXT) {
    info = fromEntry("plain_text", entry("plain_text_unit", "unit given as plain text", U.none), vifCode);
  } else if (vifCode === VIF_ANY) {
    info = fromEntry("any", entry("any", "any VIF (readout selection)", U.none, 0, "code"), vifCode);
  } else if (vifCode === VIF_MANUFACTURER) {
    info = fromEntry(
      "manufacturer",
      entry("manufacturer_specific", "manufacturer specific", U.none, 0, "code"),
      vifCode,
    );
    info.manufacturerSpecific = true;
    manufacturerTail = true;
  } else {
    info = fromEntry("primary", primaryVif(vifCode), vifCode);
  }

  while (extension) {
    const code = readVife();
    if (manufacturerTail) continue;
    manufacturerTail = applyCombinable(info, code);
  }

  if (vifCode === VIF_PLAIN_TEXT) {
    const length = need(bytes, at, "plain-text VIF length", where);
    at += 1;
    if (at + length > bytes.length) {
      throw new MbusError(
        "TRUNCATED",
        `plain-text VIF announces ${length} characters, ${bytes.length - at} remain`,
        `${where}, byte ${at - 1}`,
      );
    }
    // EN 13757-3: the characters are sent last character first.
    const text = latin1Reversed(bytes.subarray(at, at + length));
    info.bytes = bytes.slice(start, at - 1);
    at += length;
    info.rawUnit = text;
    info.unit = text;
    info.description = `unit given as plain text "${text}"`;
    return { info, next: at };
  }
  info.bytes = bytes.slice(start, at);
  return { info, next: at };
}

export function latin1Reversed(bytes: Uint8Array): string {
  let text = "";
  for (let i = bytes.length - 1; i >= 0; i -= 1) text += String.fromCharCode(bytes[i]!);
  return text;
}

export interface VibSpec {
  /** VIF code without the extension bit: a primary code, 0x7B/0x7D (then `vife[0]` is the table code), 0x7C, 0x7E, 0x7F. */
  vif: number;
  /** VIFE codes without extension bits, in order. */
  vife?: readonly number[];
  /** Unit text for the plain-text VIF 0x7C. */
  plainText?: string;
}

/** Encodes a VIB, setting the extension bits itself. */
export function encodeVib(spec: VibSpec): Uint8Array {
  const vife = spec.vife ?? [];
  if (!Number.isInteger(spec.vif) || spec.vif < 0 || spec.vif > 0x7f) {
    throw new MbusError("BAD_FIELD", `VIF code must be 0..0x7F without the extension bit, got ${spec.vif}`);
  }
  if ((spec.vif === VIF_EXTENSION_FB || spec.vif === VIF_EXTENSION_FD) && vife.length === 0) {
    throw new MbusError("BAD_FIELD", "an extension-table VIF needs the table code as first VIFE");
  }
  if (vife.length > MBUS_VIFE_MAX) {
    throw new MbusError("BAD_FIELD", `at most ${MBUS_VIFE_MAX} VIFEs, got ${vife.length}`);
  }
  const out: number[] = [spec.vif | (vife.length > 0 ? 0x80 : 0)];
  vife.forEach((code, i) => {
    if (!Number.isInteger(code) || code < 0 || code > 0x7f) {
      throw new MbusError("BAD_FIELD", `VIFE code must be 0..0x7F without the extension bit, got ${code}`);
    }
    out.push(code | (i < vife.length - 1 ? 0x80 : 0));
  });
  if (spec.vif === VIF_PLAIN_TEXT) {
    const text = spec.plainText ?? "";
    if (text.length > MBUS_PLAIN_TEXT_VIF_CHARS_MAX || !/^[\x20-\x7e\xa0-\xff]*$/.test(text)) {
      throw new MbusError("BAD_FIELD", "plain-text unit must be up to 255 printable ISO 8859-1 characters");
    }
    out.push(text.length);
    for (let i = text.length - 1; i >= 0; i -= 1) out.push(text.charCodeAt(i));
  }
  return Uint8Array.from(out);
}
