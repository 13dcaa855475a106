import assert from "node:assert/strict";
import { test } from "node:test";
import fc from "fast-check";
import {
  type DataFieldCoding,
  decodeApplicationLayer,
  decodeRecords,
  decodeTelegramFrame,
  encodeDib,
  encodeFrame,
  encodeManufacturer,
  encodeRecord,
  encodeTypeF,
  encodeTypeG,
  encodeVariableData,
  isMbusError,
  type MbusDataRecord,
  MbusError,
  parseHex,
  type RecordSpec,
  toHex,
} from "../../src/mbus/index.ts";

const FUZZ_RUNS = Number(process.env.AMIPROOF_FUZZ_RUNS ?? 300);

function one(spec: RecordSpec): MbusDataRecord {
  const { records, manufacturerData } = decodeRecords(encodeRecord(spec));
  assert.equal(records.length, 1);
  assert.equal(manufacturerData, null);
  return records[0]!;
}

function near(actual: unknown, expected: number): void {
  assert.equal(typeof actual, "number");
  const a = actual as number;
  assert.ok(Math.abs(a - expected) <= Math.abs(expected) * 1e-12, `${a} ≠ ${expected}`);
}

// M-Bus documentation rev. 4.8 (m-bus.com, chapter 6 "Application layer"), example RSP_UD of a water meter:
// 12565 l (24-bit integer), maximum volume flow 113 l/h in storage 5 (4-digit BCD), energy 218.37 kWh in
// tariff 2 of subunit 1 (6-digit BCD).
test("golden: the M-Bus documentation's variable data example", () => {
  const { telegram } = decodeTelegramFrame(
    parseHex(
      "68 1F 1F 68 08 02 72 78 56 34 12 24 40 01 07 55 00 00 00 03 13 15 31 00 DA 02 3B 13 01 8B 60 04 37 18 02 18 16",
    ),
  );
  assert.ok(telegram !== null);
  const header = telegram.header;
  assert.ok(header?.kind === "long");
  assert.equal(header.identification, "12345678");
  assert.equal(header.manufacturer, "PAD");
  assert.equal(header.manufacturerCode, 0x4024);
  assert.equal(header.version, 1);
  assert.equal(header.medium, 7);
  assert.equal(header.mediumName, "water");
  assert.equal(header.accessNumber, 0x55);
  assert.equal(header.status, 0);
  assert.equal(header.signature, 0);
  const [volume, flow, energy] = telegram.records;
  assert.equal(volume!.vib.quantity, "volume");
  assert.equal(volume!.rawValue, 12565);
  assert.equal(volume!.vib.rawUnit, "m3");
  assert.equal(volume!.vib.exponent, -3);
  assert.equal(volume!.value, 12.565);
  assert.equal(volume!.vib.unit, "m3");
  assert.equal(flow!.function, "maximum");
  assert.equal(flow!.storageNumber, 5);
  assert.equal(flow!.dataField, "bcd4");
  assert.equal(flow!.rawValue, 113);
  assert.equal(flow!.vib.rawUnit, "m3/h");
  near(flow!.value, 0.113 / 3600);
  assert.equal(energy!.tariff, 2);
  assert.equal(energy!.subunit, 1);
  assert.equal(energy!.storageNumber, 0);
  assert.equal(energy!.rawValue, 21837);
  assert.equal(energy!.vib.rawUnit, "Wh");
  assert.equal(energy!.vib.exponent, 1);
  assert.equal(energy!.value, 218.37 * 1000 * 3600);
  assert.equal(telegram.moreRecordsFollow, false);
});

// M-Bus documentation rev. 4.8, example RSP_UD with the fixed data structure: counter 1 = 1 l (actual),
// counter 2 = 135 l ("same but historic"), medium water.
test("golden: the M-Bus documentation's fixed data example", () => {
  const { telegram } = decodeTelegramFrame(
    parseHex("68 13 13 68 08 05 73 78 56 34 12 0A 00 E9 7E 01 00 00 00 35 01 00 00 3C 16"),
  );
  assert.ok(telegram !== null && telegram.header?.kind === "fixed");
  assert.equal(telegram.structure, "fixed");
  assert.equal(telegram.header.identification, "12345678");
  assert.equal(telegram.header.accessNumber, 10);
  assert.equal(telegram.header.medium, 7);
  assert.equal(telegram.header.mediumName, "water");
  assert.equal(telegram.header.countersBinary, false);
  const [c1, c2] = telegram.records;
  assert.equal(c1!.rawValue, 1);
  assert.equal(c1!.vib.rawUnit, "m3");
  assert.equal(c1!.vib.exponent, -3);
  assert.equal(c1!.value, 0.001);
  assert.equal(c1!.storageNumber, 0);
  assert.equal(c2!.rawValue, 135);
  assert.equal(c2!.value, 0.135);
  assert.equal(c2!.storageNumber, 1);
});

// Published gas meter readout (Itron/Actaris, "M-Bus Master, Part 4 (Gas)", hottis.de, 2013): fabrication
// number, plain-text VIFs ("cust. ID", "bat. time"), a type F time point, a VIFE 0x7F record and
// manufacturer data after DIF 0x0F.
test("golden: a published gas meter telegram with plain-text VIFs and manufacturer data", () => {
  const { frame, telegram } = decodeTelegramFrame(
    parseHex(
      "68 56 56 68 08 40 72 43 60 52 00 77 04 14 03 CA 10 00 00 0C 78 76 03 01 10 0D 7C 08 44 49 20 2E 74 73 75 63 0A 30 30 30 30 30 30 30 30 30 30 04 6D 38 15 AA 19 02 7C 09 65 6D 69 74 20 2E 74 61 62 22 0C 04 13 C1 0E 00 00 04 93 7F 4E 01 00 00 44 13 5D 08 00 00 0F 01 00 1F DE 16",
    ),
  );
  assert.equal(frame.kind === "long" ? frame.address : -1, 0x40);
  assert.ok(telegram !== null && telegram.header?.kind === "long");
  assert.equal(telegram.header.identification, "00526043");
  assert.equal(telegram.header.manufacturer, "ACW");
  assert.equal(telegram.header.mediumName, "gas");
  assert.equal(telegram.header.statusFlags.temporaryError, true);
  const r = telegram.records;
  assert.equal(r[0]!.vib.quantity, "fabrication_number");
  assert.equal(r[0]!.value, 10010376);
  assert.equal(r[1]!.vib.rawUnit, "cust. ID");
  assert.equal(r[1]!.value, "0000000000");
  assert.equal(r[2]!.value, "2013-09-10T21:56");
  assert.equal(r[2]!.dateTime?.type, "F");
  assert.equal(r[3]!.vib.rawUnit, "bat. time");
  assert.equal(r[3]!.rawValue, 3106);
  assert.equal(r[4]!.value, 3.777);
  assert.equal(r[5]!.manufacturerSpecific, true);
  assert.equal(r[5]!.value, null);
  assert.equal(r[5]!.rawValue, "4E010000");
  assert.equal(r[6]!.storageNumber, 1);
  assert.equal(r[6]!.value, 2.141);
  assert.equal(toHex(telegram.manufacturerData!), "01001F");
  assert.equal(telegram.moreRecordsFollow, false);
});

// EN 13757-3 Table 10 (primary VIFs): one code of every family with its exponent, as sent and in SI.
const PRIMARY: Array<[string, number, DataFieldCoding, number, string, number, string, number]> = [
  // name, VIF, coding, raw, raw unit, exponent, SI unit, SI value
  ["energy Wh", 0x03, "int32", 1234, "Wh", 0, "J", 1234 * 3600],
  ["energy kWh", 0x06, "int32", 5, "Wh", 3, "J", 5 * 3_600_000],
  ["energy J", 0x0e, "int32", 7, "J", 6, "J", 7e6],
  ["volume l", 0x13, "int32", 12565, "m3", -3, "m3", 12.565],
  ["volume m3", 0x16, "int16", 42, "m3", 0, "m3", 42],
  ["mass", 0x1b, "int16", 42, "kg", 0, "kg", 42],
  ["on time h", 0x22, "int16", 10, "h", 0, "s", 36_000],
  ["operating time d", 0x27, "int16", 2, "d", 0, "s", 172_800],
  ["power W", 0x2b, "int16", 1500, "W", 0, "W", 1500],
  ["power kW", 0x2e, "int16", 3, "W", 3, "W", 3000],
  ["power kJ/h", 0x33, "int16", 3600, "J/h", 3, "W", 1000],
  ["volume flow m3/h", 0x3b, "int16", 3600, "m3/h", -3, "m3/s", 0.001],
  ["volume flow m3/min", 0x43, "int16", 600, "m3/min", -4, "m3/s", 0.001],
  ["volume flow m3/s", 0x4f, "int16", 5, "m3/s", -2, "m3/s", 0.05],
  ["mass flow", 0x53, "int16", 3600, "kg/h", 0, "kg/s", 1],
  ["flow temperature", 0x59, "int16", 6543, "°C", -2, "°C", 65.43],
  ["return temperature", 0x5e, "int16", 412, "°C", -1, "°C", 41.2],
  ["temperature difference", 0x61, "int16", 2411, "K", -2, "K", 24.11],
  ["external temperature", 0x66, "int16", -55, "°C", -1, "°C", -5.5],
  ["pressure", 0x6a, "int16", 15, "bar", -1, "Pa", 150_000],
  ["HCA units", 0x6e, "int16", 321, "", 0, "", 321],
  ["averaging duration min", 0x71, "int8", 15, "min", 0, "s", 900],
  ["actuality duration s", 0x74, "int8", 30, "s", 0, "s", 30],
  ["bus address", 0x7a, "int8", 5, "", 0, "", 5],
];

test("every primary VIF family decodes with its scaler, raw unit and SI unit", () => {
  for (const [name, vif, coding, raw, rawUnit, exponent, unit, value] of PRIMARY) {
    const record = one({ dataField: coding, vib: { vif }, value: raw });
    assert.equal(record.rawValue, raw, name);
    assert.equal(record.vib.rawUnit, rawUnit, name);
    assert.equal(record.vib.exponent, exponent, name);
    assert.equal(record.vib.unit, unit, name);
    near(record.value, value);
  }
});

// EN 13757-3 main VIFE extension table (VIF 0xFD) and alternate table (VIF 0xFB).
const EXTENDED: Array<[string, number, number, DataFieldCoding, number, string, number, string | null]> = [
  // name, VIF, table code, coding, raw, SI unit, SI value, text
  ["access number", 0x7d, 0x08, "int8", 85, "", 85, null],
  ["medium", 0x7d, 0x09, "int8", 7, "", 7, "water"],
  ["manufacturer", 0x7d, 0x0a, "int16", encodeManufacturer("ELV"), "", encodeManufacturer("ELV"), "ELV"],
  ["model/version", 0x7d, 0x0c, "int8", 3, "", 3, null],
  ["firmware version", 0x7d, 0x0e, "int8", 0x21, "", 0x21, null],
  ["software version", 0x7d, 0x0f, "int16", 0x0102, "", 0x0102, null],
  ["error flags", 0x7d, 0x17, "int16", 0x8001, "", 0x8001, null],
  ["digital output", 0x7d, 0x1a, "int8", 0x81, "", 0x81, null],
  ["digital input", 0x7d, 0x1b, "int8", 3, "", 3, null],
  ["voltage", 0x7d, 0x48, "int16", 2301, "V", 230.1, null],
  ["current", 0x7d, 0x59, "int32", 5123, "A", 5.123, null],
  ["reset counter", 0x7d, 0x60, "int16", 12, "", 12, null],
  ["cumulation counter", 0x7d, 0x61, "int16", 9, "", 9, null],
  ["remaining battery lifetime", 0x7d, 0x74, "int16", 365, "s", 365 * 86_400, null],
  ["energy MWh", 0x7b, 0x01, "int16", 2, "J", 7.2e9, null],
  ["energy GJ", 0x7b, 0x09, "int16", 3, "J", 3e9, null],
  ["volume 10^3 m3", 0x7b, 0x11, "int16", 4, "m3", 4000, null],
  ["mass 10^3 t", 0x7b, 0x19, "int16", 1, "kg", 1e6, null],
  ["power MW", 0x7b, 0x29, "int16", 2, "W", 2e6, null],
  ["power GJ/h", 0x7b, 0x31, "int16", 36, "W", 1e7, null],
  ["flow temperature °F", 0x7b, 0x5a, "int16", 2120, "°C", 100, null],
  ["temperature difference °F", 0x7b, 0x61, "int16", 1800, "K", 10, null],
  ["temperature limit °C", 0x7b, 0x75, "int16", 450, "°C", 4.5, null],
  ["cumulative max power", 0x7b, 0x7b, "int32", 12, "W", 12, null],
];

test("0xFD and 0xFB extension tables decode their common entries", () => {
  for (const [name, vif, code, coding, raw, unit, value, text] of EXTENDED) {
    const record = one({ dataField: coding, vib: { vif, vife: [code] }, value: raw });
    assert.equal(record.vib.table, vif === 0x7d ? "fd" : "fb", name);
    assert.equal(record.vib.unit, unit, name);
    near(record.value, value);
    assert.equal(record.text, text, name);
    assert.notEqual(record.vib.quantity, "reserved", name);
  }
});

test("DIF/DIFE: function, storage number, tariff and subunit survive the DIFE chain", () => {
  assert.equal(toHex(encodeDib({ dataField: "int32", storageNumber: 1 })), "44");
  assert.equal(toHex(encodeDib({ dataField: "bcd4", function: "maximum", storageNumber: 5 })), "DA02");
  assert.equal(toHex(encodeDib({ dataField: "bcd6", tariff: 2, subunit: 1 })), "8B60");
  const cases = [
    { storageNumber: 0, tariff: 0, subunit: 0 },
    { storageNumber: 33, tariff: 1, subunit: 0 },
    { storageNumber: 2 ** 20 + 3, tariff: 7, subunit: 3 },
    { storageNumber: 2 ** 41 - 1, tariff: 2 ** 20 - 1, subunit: 2 ** 10 - 1 },
  ];
  for (const fields of cases) {
    for (const fn of ["instantaneous", "maximum", "minimum", "error"] as const) {
      const record = one({ ...fields, function: fn, dataField: "int16", vib: { vif: 0x13 }, value: 7 });
      assert.equal(record.function, fn);
      assert.equal(record.storageNumber, fields.storageNumber);
      assert.equal(record.tariff, fields.tariff);
      assert.equal(record.subunit, fields.subunit);
    }
  }
  // 11 DIFEs: the standard allows 10.
  const bytes = Uint8Array.of(0x84, ...new Array(10).fill(0x81), 0x01, 0x13, 0, 0, 0, 0);
  assert.throws(
    () => decodeRecords(bytes),
    (e) => isMbusError(e, "BAD_DIF"),
  );
});

test("BCD of every width, negative BCD and a non-decimal digit", () => {
  const widths: Array<[DataFieldCoding, number]> = [
    ["bcd2", 99],
    ["bcd4", 1234],
    ["bcd6", 218_37],
    ["bcd8", 12_345_678],
    ["bcd12", 123_456_789_012],
  ];
  for (const [coding, value] of widths) {
    const record = one({ dataField: coding, vib: { vif: 0x13 }, value });
    assert.equal(record.rawValue, value);
    near(record.value, value / 1000);
  }
  const negative = one({ dataField: "bcd4", vib: { vif: 0x13 }, value: -123 });
  assert.equal(toHex(negative.data), "23F1");
  assert.equal(negative.rawValue, -123);
  // A BCD field with a hex digit: the record stays, the value does not.
  const { records } = decodeRecords(parseHex("0A 13 1A 00"));
  assert.equal(records[0]!.value, null);
  assert.equal(records[0]!.rawValue, "001A");
  assert.match(records[0]!.valueError!, /non-decimal/);
});

test("integers of every width are signed (type B); codes are unsigned; 64-bit stays exact", () => {
  assert.equal(one({ dataField: "int8", vib: { vif: 0x13 }, value: -1 }).rawValue, -1);
  assert.equal(one({ dataField: "int24", vib: { vif: 0x13 }, value: -8_388_608 }).rawValue, -8_388_608);
  assert.equal(one({ dataField: "int48", vib: { vif: 0x13 }, value: 2 ** 40 }).rawValue, 2 ** 40);
  const big = one({ dataField: "int64", vib: { vif: 0x03 }, value: 2n ** 62n + 1n });
  assert.equal(big.rawValue, 2n ** 62n + 1n);
  assert.equal(one({ dataField: "int8", vib: { vif: 0x7d, vife: [0x1a] }, value: 0xff }).rawValue, 0xff);
});

test("real32 (type H) is scaled; NaN is flagged", () => {
  const record = one({ dataField: "real32", vib: { vif: 0x13 }, value: 12.5 });
  assert.equal(record.rawValue, 12.5);
  assert.equal(record.value, 0.0125);
  const nan = decodeRecords(parseHex("05 13 00 00 C0 7F")).records[0]!;
  assert.equal(nan.value, null);
  assert.match(nan.valueError!, /NaN/);
});

test("time types G, F, I and J", () => {
  const g = one({
    dataField: "int16",
    vib: { vif: 0x6c },
    value: 0 + readLe(encodeTypeG({ year: 2024, month: 2, day: 29 })),
  });
  assert.equal(g.value, "2024-02-29");
  assert.equal(g.dateTime?.type, "G");
  const f = one({
    dataField: "int32",
    vib: { vif: 0x6d },
    value: readLe(encodeTypeF({ year: 2013, month: 9, day: 10, hour: 21, minute: 56, summerTime: true })),
  });
  assert.equal(f.value, "2013-09-10T21:56");
  assert.equal(f.dateTime?.summerTime, true);
  // IV (time invalid) set: the record is kept, the value is not.
  const invalid = decodeRecords(parseHex("04 6D B8 15 AA 19")).records[0]!;
  assert.equal(invalid.value, null);
  assert.equal(invalid.dateTime?.valid, false);
  const i = decodeRecords(parseHex("06 6D 1E 2D 0C 0F 36 00")).records[0]!;
  assert.equal(i.value, "2024-06-15T12:45:30");
  assert.equal(i.dateTime?.type, "I");
  const j = decodeRecords(parseHex("03 6D 05 04 03")).records[0]!;
  assert.equal(j.value, "03:04:05");
  // Date of battery change (0xFD 0x70) with a type G date.
  const battery = decodeRecords(parseHex("02 FD 70 1D 31")).records[0]!;
  assert.equal(battery.vib.quantity, "battery_change");
  assert.equal(battery.value, "2024-01-29");
});

function readLe(bytes: Uint8Array): number {
  let value = 0;
  for (let i = bytes.length - 1; i >= 0; i -= 1) value = value * 256 + bytes[i]!;
  return value;
}

test("combinable VIFEs: multiplicative factors, per-time, error codes, manufacturer tail", () => {
  const scaled = one({ dataField: "int16", vib: { vif: 0x13, vife: [0x75] }, value: 5 });
  assert.equal(scaled.vib.exponent, -4);
  near(scaled.value, 0.0005);
  const kilo = one({ dataField: "int16", vib: { vif: 0x13, vife: [0x7d] }, value: 5 });
  assert.equal(kilo.vib.exponent, 0);
  assert.equal(kilo.value, 5);
  const perHour = one({ dataField: "int16", vib: { vif: 0x03, vife: [0x22] }, value: 5 });
  assert.equal(perHour.vib.rawUnit, "Wh/h");
  assert.equal(perHour.vib.unit, "J/s");
  assert.equal(perHour.value, 5);
  const error = one({ dataField: "int16", vib: { vif: 0x13, vife: [0x15] }, value: 0 });
  assert.equal(error.vib.errorCode, 0x15);
  assert.equal(error.vib.errorText, "no data available (undefined value)");
  const mfr = one({ dataField: "int16", vib: { vif: 0x13, vife: [0x7f, 0x01, 0x02] }, value: 9 });
  assert.equal(mfr.manufacturerSpecific, true);
  assert.equal(mfr.value, null);
  assert.equal(toHex(mfr.vib.bytes), "93FF8102");
  const manufacturerVif = one({ dataField: "int8", vib: { vif: 0x7f, vife: [0x22] }, value: 1 });
  assert.equal(manufacturerVif.manufacturerSpecific, true);
  assert.equal(manufacturerVif.vib.table, "manufacturer");
  // 11 VIFEs: the standard allows 10.
  const tooMany = Uint8Array.of(0x01, 0x93, ...new Array(10).fill(0xf5), 0x75, 0x00);
  assert.throws(
    () => decodeRecords(tooMany),
    (e) => isMbusError(e, "BAD_VIF"),
  );
  // An extension-table VIF without its extension bit is malformed.
  assert.throws(
    () => decodeRecords(parseHex("01 7D 08")),
    (e) => isMbusError(e, "BAD_VIF"),
  );
});

test("plain-text VIF and variable-length data (text, BCD, binary, reserved LVAR)", () => {
  const text = one({ dataField: "int32", vib: { vif: 0x7c, plainText: "kWh" }, value: 17 });
  assert.equal(text.vib.rawUnit, "kWh");
  assert.equal(text.rawValue, 17);
  const name = one({ dataField: "variable", vib: { vif: 0x7d, vife: [0x11] }, value: "Main St 1" });
  assert.equal(name.value, "Main St 1");
  const binary = one({ dataField: "variable", vib: { vif: 0x13 }, value: Uint8Array.of(0x10, 0x27) });
  assert.equal(binary.rawValue, 10_000);
  assert.equal(binary.value, 10);
  const positiveBcd = decodeRecords(parseHex("0D 13 C2 34 12")).records[0]!;
  assert.equal(positiveBcd.rawValue, 1234);
  const negativeBcd = decodeRecords(parseHex("0D 13 D1 34")).records[0]!;
  assert.equal(negativeBcd.rawValue, -34);
  assert.throws(
    () => decodeRecords(parseHex("0D 13 F7 00")),
    (e) => isMbusError(e, "BAD_DATA"),
  );
});

test("special DIFs: idle filler, manufacturer data, more records follow, reserved and global readout", () => {
  const { ci, data } = encodeVariableData({
    header: { kind: "none" },
    records: [{ dataField: "int8", vib: { vif: 0x13 }, value: 1 }],
    idleFillers: 2,
    manufacturerData: Uint8Array.of(0xaa, 0xbb),
    moreRecordsFollow: true,
  });
  assert.equal(ci, 0x78);
  const telegram = decodeApplicationLayer(ci, data);
  assert.equal(telegram.records.length, 1);
  assert.equal(toHex(telegram.manufacturerData!), "AABB");
  assert.equal(telegram.moreRecordsFollow, true);
  const plain = decodeRecords(parseHex("2F 2F 0F 01 02"));
  assert.equal(plain.moreRecordsFollow, false);
  assert.equal(toHex(plain.manufacturerData!), "0102");
  assert.throws(
    () => decodeRecords(parseHex("3F 13")),
    (e) => isMbusError(e, "BAD_DIF"),
  );
  assert.throws(
    () => decodeRecords(parseHex("7F")),
    (e) => isMbusError(e, "BAD_DIF"),
  );
  assert.throws(
    () => decodeRecords(parseHex("04 13 01 02")),
    (e) => isMbusError(e, "TRUNCATED"),
  );
  assert.throws(
    () => decodeRecords(parseHex("04")),
    (e) => isMbusError(e, "TRUNCATED"),
  );
});

test("short header, no header, mode 2 (MSB first), application error, alarm and unsupported CI", () => {
  const short = encodeVariableData({
    header: { kind: "short", accessNumber: 9, status: 0x04, signature: 0x1234 },
    records: [{ dataField: "int16", vib: { vif: 0x13 }, value: 300 }],
  });
  assert.equal(short.ci, 0x7a);
  const telegram = decodeApplicationLayer(short.ci, short.data);
  assert.ok(telegram.header?.kind === "short");
  assert.equal(telegram.header.accessNumber, 9);
  assert.equal(telegram.header.statusFlags.powerLow, true);
  assert.equal(telegram.header.signature, 0x1234);
  assert.equal(telegram.records[0]!.value, 0.3);
  // CI 0x76: the long header and the data in MSB-first order.
  const mode2 = decodeApplicationLayer(0x76, parseHex("12 34 56 78 40 24 01 07 55 00 00 00 02 13 01 00"));
  assert.ok(mode2.header?.kind === "long");
  assert.equal(mode2.header.identification, "12345678");
  assert.equal(mode2.header.manufacturer, "PAD");
  assert.equal(mode2.records[0]!.rawValue, 256);
  const error = decodeApplicationLayer(0x70, Uint8Array.of(3));
  assert.deepEqual(error.applicationError, { code: 3, text: "too many records" });
  assert.equal(decodeApplicationLayer(0x71, Uint8Array.of(0x12)).alarm, 0x12);
  assert.throws(
    () => decodeApplicationLayer(0x99, new Uint8Array(0)),
    (e) => isMbusError(e, "UNSUPPORTED_CI"),
  );
  assert.throws(
    () => decodeApplicationLayer(0x72, new Uint8Array(11)),
    (e) => isMbusError(e, "TRUNCATED"),
  );
});

test("fixed data structure with binary counters and kWh units", () => {
  // status bit 7: binary counters; unit 1 = 0x05 kWh, medium 2 electricity (bits 6–7 of unit 1 = 10).
  const telegram = decodeApplicationLayer(0x73, parseHex("78 56 34 12 01 80 85 05 10 27 00 00 20 00 00 00"));
  assert.ok(telegram.header?.kind === "fixed");
  assert.equal(telegram.header.mediumName, "electricity");
  assert.equal(telegram.header.countersBinary, true);
  assert.equal(telegram.records[0]!.rawValue, 10_000);
  assert.equal(telegram.records[0]!.vib.rawUnit, "Wh");
  assert.equal(telegram.records[0]!.vib.exponent, 3);
  assert.equal(telegram.records[0]!.value, 10_000 * 3_600_000);
  assert.equal(telegram.records[1]!.value, 32 * 3_600_000);
});

const codingArb = fc.constantFrom<DataFieldCoding>(
  "int8",
  "int16",
  "int24",
  "int32",
  "int48",
  "int64",
  "bcd2",
  "bcd4",
  "bcd6",
  "bcd8",
  "bcd12",
);
const WIDTH: Record<string, number> = { int8: 1, int16: 2, int24: 3, int32: 4, int48: 6, int64: 8 };
const DIGITS: Record<string, number> = { bcd2: 2, bcd4: 4, bcd6: 6, bcd8: 8, bcd12: 12 };

const recordArb: fc.Arbitrary<RecordSpec & { value: bigint }> = codingArb.chain((dataField) => {
  const value =
    dataField in WIDTH
      ? fc.bigInt({
          min: -(1n << BigInt(WIDTH[dataField]! * 8 - 1)),
          max: (1n << BigInt(WIDTH[dataField]! * 8 - 1)) - 1n,
        })
      : fc.bigInt({ min: 0n, max: 10n ** BigInt(DIGITS[dataField]!) - 1n });
  return fc.record({
    dataField: fc.constant(dataField),
    function: fc.constantFrom(
      "instantaneous" as const,
      "maximum" as const,
      "minimum" as const,
      "error" as const,
    ),
    storageNumber: fc.integer({ min: 0, max: 2 ** 20 }),
    tariff: fc.integer({ min: 0, max: 255 }),
    subunit: fc.integer({ min: 0, max: 15 }),
    vib: fc.record({ vif: fc.integer({ min: 0, max: 0x6b }) }),
    value,
  });
});

test("property: records round-trip through encode and decode", () => {
  fc.assert(
    fc.property(fc.array(recordArb, { minLength: 1, maxLength: 8 }), (specs) => {
      const { ci, data } = encodeVariableData({
        header: {
          kind: "long",
          identification: "00000042",
          manufacturer: "AMI",
          version: 1,
          medium: 2,
          accessNumber: 1,
        },
        records: specs,
      });
      const telegram = decodeApplicationLayer(ci, data);
      assert.equal(telegram.records.length, specs.length);
      specs.forEach((spec, i) => {
        const record = telegram.records[i]!;
        assert.equal(record.dataField, spec.dataField);
        assert.equal(record.function, spec.function);
        assert.equal(record.storageNumber, spec.storageNumber);
        assert.equal(record.tariff, spec.tariff);
        assert.equal(record.subunit, spec.subunit);
        assert.equal(BigInt(record.rawValue as number | bigint), spec.value);
      });
    }),
    { numRuns: FUZZ_RUNS },
  );
});

function onlyMbusErrors(run: () => unknown): void {
  try {
    run();
  } catch (error) {
    if (!(error instanceof MbusError)) throw error;
  }
}

test("fuzz: random application data under every CI only ever raises MbusError", () => {
  fc.assert(
    fc.property(
      fc.constantFrom(0x50, 0x51, 0x52, 0x70, 0x71, 0x72, 0x73, 0x76, 0x77, 0x78, 0x7a, 0x99),
      fc.uint8Array({ maxLength: 260 }),
      (ci, data) => onlyMbusErrors(() => decodeApplicationLayer(ci, data)),
    ),
    { numRuns: FUZZ_RUNS },
  );
});

test("fuzz: mutated valid telegrams (checksum repaired) only ever raise MbusError", () => {
  const base = parseHex(
    "68 56 56 68 08 40 72 43 60 52 00 77 04 14 03 CA 10 00 00 0C 78 76 03 01 10 0D 7C 08 44 49 20 2E 74 73 75 63 0A 30 30 30 30 30 30 30 30 30 30 04 6D 38 15 AA 19 02 7C 09 65 6D 69 74 20 2E 74 61 62 22 0C 04 13 C1 0E 00 00 04 93 7F 4E 01 00 00 44 13 5D 08 00 00 0F 01 00 1F DE 16",
  );
  const frame = decodeTelegramFrame(base).frame;
  assert.ok(frame.kind === "long");
  fc.assert(
    fc.property(
      fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 6 }),
      fc.nat(),
      (edits, cut) => {
        const data = frame.data.slice();
        for (const [at, value] of edits) data[at % data.length] = value;
        const truncated = data.subarray(0, Math.max(1, data.length - (cut % 8)));
        const bytes = encodeFrame({ ...frame, data: truncated });
        onlyMbusErrors(() => decodeTelegramFrame(bytes));
      },
    ),
    { numRuns: FUZZ_RUNS },
  );
});
