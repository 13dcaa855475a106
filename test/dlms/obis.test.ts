import assert from "node:assert/strict";
import { test } from "node:test";
import fc from "fast-check";
import {
  applyScaler,
  DLMS_UNIT_TABLE,
  DlmsError,
  encodeScalerUnit,
  formatObis,
  formatObisIec,
  formatScaled,
  type Obis,
  obisEquals,
  obisFromBytes,
  obisToBytes,
  parseObis,
  scalerUnitOf,
  UNIT,
  unitSymbol,
} from "../../src/dlms/index.ts";

const RUNS = Number(process.env.AMIPROOF_FUZZ_RUNS ?? 300);

test("OBIS text forms: dotted, IEC display form, short forms default F to 255", () => {
  assert.deepEqual(parseObis("1.0.1.8.0.255"), [1, 0, 1, 8, 0, 255]);
  assert.deepEqual(parseObis("1-0:1.8.0*255"), [1, 0, 1, 8, 0, 255]);
  assert.deepEqual(parseObis("1-0:1.8.0&255"), [1, 0, 1, 8, 0, 255]);
  assert.deepEqual(parseObis(" 0-0:96.1.0 "), [0, 0, 96, 1, 0, 255]);
  assert.deepEqual(parseObis("0.0.96.1.0"), [0, 0, 96, 1, 0, 255]);
  assert.equal(formatObis([0, 0, 96, 1, 0, 255]), "0.0.96.1.0.255");
  assert.equal(formatObisIec([1, 0, 1, 8, 0, 255]), "1-0:1.8.0*255");
  for (const bad of [
    "",
    "1.0.1.8",
    "1.0.1.8.0.256",
    "1-0:1.8.0*999",
    "a.b.c.d.e.f",
    "1.0.1.8.0.255.1",
    "1..1.8.0.255",
  ]) {
    assert.throws(() => parseObis(bad), { code: "BAD_OBIS" }, bad);
  }
  assert.throws(() => obisFromBytes(Uint8Array.of(1, 2, 3)), { code: "BAD_OBIS" });
  assert.throws(() => obisToBytes([1, 0, 1, 8, 0, 256] as unknown as Obis), { code: "BAD_OBIS" });
  assert.equal(obisEquals([1, 0, 1, 8, 0, 255], Uint8Array.of(1, 0, 1, 8, 0, 255)), true);
  assert.equal(obisEquals([1, 0, 1, 8, 0, 255], [1, 0, 2, 8, 0, 255]), false);
});

test("property: every OBIS code round-trips through both text forms and its 6 bytes", () => {
  const obisArb = fc.tuple(fc.nat(255), fc.nat(255), fc.nat(255), fc.nat(255), fc.nat(255), fc.nat(255));
  fc.assert(
    fc.property(obisArb, (groups) => {
      const obis = groups as Obis;
      assert.deepEqual(parseObis(formatObis(obis)), obis);
      assert.deepEqual(parseObis(formatObisIec(obis)), obis);
      assert.deepEqual(obisFromBytes(obisToBytes(obis)), obis);
    }),
    { numRuns: RUNS },
  );
  fc.assert(
    fc.property(fc.string({ maxLength: 40 }), (text) => {
      try {
        parseObis(text);
      } catch (error) {
        if (!(error instanceof DlmsError)) throw error;
      }
    }),
    { numRuns: RUNS },
  );
});

test("units: the Blue Book codes of the brief, and scaler_unit", () => {
  // Blue Book (IEC 62056-6-2) unit table.
  const expected: Record<string, number> = {
    Wh: 30,
    W: 27,
    V: 35,
    A: 33,
    var: 29,
    VA: 28,
    varh: 32,
    VAh: 31,
    Hz: 44,
  };
  for (const [symbol, code] of Object.entries(expected)) assert.equal(unitSymbol(code), symbol);
  assert.equal(UNIT.Wh, 30);
  assert.equal(unitSymbol(13), "m³");
  assert.equal(unitSymbol(14), "m³");
  assert.equal(unitSymbol(9), "°C");
  assert.equal(unitSymbol(7), "s");
  assert.equal(unitSymbol(22), "Nm");
  assert.equal(unitSymbol(25), "J");
  assert.equal(unitSymbol(26), "J/h");
  assert.equal(DLMS_UNIT_TABLE[255]?.symbol, "");
  const su = { scaler: -3, unit: UNIT.Wh };
  assert.deepEqual(scalerUnitOf(encodeScalerUnit(su)), su);
  assert.equal(applyScaler(12345, -3), 12.345);
  assert.equal(applyScaler(7n, 2), 700);
  assert.equal(formatScaled(2304, { scaler: -1, unit: UNIT.V }), "230.4 V");
  assert.equal(scalerUnitOf({ type: "unsigned", value: 3 }), null);
  assert.throws(() => encodeScalerUnit({ scaler: 200, unit: 30 }), DlmsError);
});
