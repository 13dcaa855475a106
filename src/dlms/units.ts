import type { Data } from "./axdr.ts";
import { DlmsError } from "./errors.ts";

// The unit enumeration of scaler_unit (Blue Book, IEC 62056-6-2, "Physical units" table: the
// unit field of class 3/4/5 attribute 3). Value = raw × 10^scaler, expressed in the unit.

export interface DlmsUnit {
  /** Symbol as the Blue Book prints it. */
  readonly symbol: string;
  /** Quantity and SI name. */
  readonly name: string;
}

export const DLMS_UNIT_TABLE: Readonly<Record<number, DlmsUnit>> = {
  1: { symbol: "a", name: "time: year" },
  2: { symbol: "mo", name: "time: month" },
  3: { symbol: "wk", name: "time: week (7×24×60×60 s)" },
  4: { symbol: "d", name: "time: day (24×60×60 s)" },
  5: { symbol: "h", name: "time: hour (60×60 s)" },
  6: { symbol: "min", name: "time: minute (60 s)" },
  7: { symbol: "s", name: "time: second" },
  8: { symbol: "°", name: "(phase) angle: degree (rad×180/π)" },
  9: { symbol: "°C", name: "temperature: degree Celsius (K − 273.15)" },
  10: { symbol: "currency", name: "(local) currency" },
  11: { symbol: "m", name: "length: metre" },
  12: { symbol: "m/s", name: "speed: metre per second" },
  13: { symbol: "m³", name: "volume: cubic metre" },
  14: { symbol: "m³", name: "corrected volume: cubic metre" },
  15: { symbol: "m³/h", name: "volume flux: cubic metre per hour" },
  16: { symbol: "m³/h", name: "corrected volume flux: cubic metre per hour" },
  17: { symbol: "m³/d", name: "volume flux: cubic metre per day" },
  18: { symbol: "m³/d", name: "corrected volume flux: cubic metre per day" },
  19: { symbol: "l", name: "volume: litre (10⁻³ m³)" },
  20: { symbol: "kg", name: "mass: kilogram" },
  21: { symbol: "N", name: "force: newton" },
  22: { symbol: "Nm", name: "energy: newton metre (J = Nm = Ws)" },
  23: { symbol: "Pa", name: "pressure: pascal (N/m²)" },
  24: { symbol: "bar", name: "pressure: bar (10⁵ N/m²)" },
  25: { symbol: "J", name: "energy: joule (J = Nm = Ws)" },
  26: { symbol: "J/h", name: "thermal power: joule per hour" },
  27: { symbol: "W", name: "active power: watt (J/s)" },
  28: { symbol: "VA", name: "apparent power: volt-ampere" },
  29: { symbol: "var", name: "reactive power: var" },
  30: { symbol: "Wh", name: "active energy: watt-hour (W×3600 s)" },
  31: { symbol: "VAh", name: "apparent energy: volt-ampere-hour" },
  32: { symbol: "varh", name: "reactive energy: var-hour" },
  33: { symbol: "A", name: "current: ampere" },
  34: { symbol: "C", name: "electrical charge: coulomb (As)" },
  35: { symbol: "V", name: "voltage: volt" },
  36: { symbol: "V/m", name: "electric field strength: volt per metre" },
  37: { symbol: "F", name: "capacitance: farad (C/V)" },
  38: { symbol: "Ω", name: "resistance: ohm (V/A)" },
  39: { symbol: "Ωm²/m", name: "resistivity: ohm metre" },
  40: { symbol: "Wb", name: "magnetic flux: weber (Vs)" },
  41: { symbol: "T", name: "magnetic flux density: tesla (Wb/m²)" },
  42: { symbol: "A/m", name: "magnetic field strength: ampere per metre" },
  43: { symbol: "H", name: "inductance: henry (Wb/A)" },
  44: { symbol: "Hz", name: "frequency: hertz (1/s)" },
  45: { symbol: "1/(Wh)", name: "active energy meter constant or pulse value" },
  46: { symbol: "1/(varh)", name: "reactive energy meter constant or pulse value" },
  47: { symbol: "1/(VAh)", name: "apparent energy meter constant or pulse value" },
  48: { symbol: "V²h", name: "volt-squared hour" },
  49: { symbol: "A²h", name: "ampere-squared hour" },
  50: { symbol: "kg/s", name: "mass flux: kilogram per second" },
  51: { symbol: "S", name: "conductance: siemens (1/Ω)" },
  52: { symbol: "K", name: "temperature: kelvin" },
  53: { symbol: "1/(V²h)", name: "volt-squared hour meter constant or pulse value" },
  54: { symbol: "1/(A²h)", name: "ampere-squared hour meter constant or pulse value" },
  55: { symbol: "1/m³", name: "volume meter constant or pulse value" },
  56: { symbol: "%", name: "percentage" },
  57: { symbol: "Ah", name: "energy: ampere-hour" },
  60: { symbol: "Wh/m³", name: "energy per volume (3.6×10³ J/m³)" },
  61: { symbol: "J/m³", name: "calorific value, Wobbe index" },
  62: { symbol: "Mol %", name: "molar fraction of gas composition: mole percent" },
  63: { symbol: "g/m³", name: "mass density, quantity of material" },
  64: { symbol: "Pa s", name: "dynamic viscosity: pascal second" },
  65: { symbol: "J/kg", name: "specific energy: joule per kilogram" },
  70: { symbol: "dBm", name: "signal strength: dB milliwatt" },
  71: { symbol: "dBµV", name: "signal strength: dB microvolt" },
  72: { symbol: "dB", name: "logarithmic unit: decibel" },
  254: { symbol: "other", name: "other unit" },
  255: { symbol: "", name: "no unit, unitless, count" },
};

/** The common units by symbol, for code that builds registers (`UNIT.Wh` = 30). */
export const UNIT = {
  s: 7,
  degreeCelsius: 9,
  cubicMetre: 13,
  cubicMetreCorrected: 14,
  W: 27,
  VA: 28,
  var: 29,
  Wh: 30,
  VAh: 31,
  varh: 32,
  A: 33,
  V: 35,
  Hz: 44,
  percent: 56,
  count: 255,
} as const;

export function unitSymbol(unit: number): string {
  return DLMS_UNIT_TABLE[unit]?.symbol ?? `unit-${unit}`;
}

export function unitName(unit: number): string {
  return DLMS_UNIT_TABLE[unit]?.name ?? "unknown unit";
}

/** Register attribute 3 (Blue Book class 3): structure { scaler integer, unit enum }. */
export interface ScalerUnit {
  readonly scaler: number;
  readonly unit: number;
}

export function encodeScalerUnit(su: ScalerUnit): Data {
  if (!Number.isInteger(su.scaler) || su.scaler < -128 || su.scaler > 127) {
    throw new DlmsError("BAD_LENGTH", `scaler ${su.scaler} does not fit an integer (-128..127)`);
  }
  if (!Number.isInteger(su.unit) || su.unit < 0 || su.unit > 255) {
    throw new DlmsError("BAD_LENGTH", `unit ${su.unit} does not fit an enum (0..255)`);
  }
  return {
    type: "structure",
    value: [
      { type: "integer", value: su.scaler },
      { type: "enum", value: su.unit },
    ],
  };
}

/** The scaler_unit a Data value holds, or null when it is not { integer, enum }. */
export function scalerUnitOf(data: Data): ScalerUnit | null {
  if (data.type !== "structure" || data.value.length !== 2) return null;
  const [scaler, unit] = data.value;
  if (scaler?.type !== "integer" || unit?.type !== "enum") return null;
  return { scaler: scaler.value, unit: unit.value };
}

/** raw × 10^scaler as a number (exact for the decimal scalers meters use, within float precision). */
export function applyScaler(raw: number | bigint, scaler: number): number {
  const value = typeof raw === "bigint" ? Number(raw) : raw;
  // Divide for negative scalers so 12345 × 10^-3 prints 12.345, not 12.345000000000001.
  return scaler >= 0 ? value * 10 ** scaler : value / 10 ** -scaler;
}

/** The scaled value with its unit symbol: 2308 with { -1, V } gives "230.8 V". */
export function formatScaled(raw: number | bigint, su: ScalerUnit): string {
  const symbol = unitSymbol(su.unit);
  const value = applyScaler(raw, su.scaler);
  return symbol === "" ? `${value}` : `${value} ${symbol}`;
}
