import assert from "node:assert/strict";
import { test } from "node:test";
import fc from "fast-check";
import {
  type Apdu,
  apduToJson,
  DlmsError,
  decodeApdu,
  decodeGetResultList,
  decodeHdlc,
  type EncodableApdu,
  encodeApdu,
  encodeGetResultList,
  entryDescriptor,
  type GetDataResult,
  invokeIdAndPriority,
  type Obis,
  parseHex,
  parseInvokeIdAndPriority,
  parseObis,
  parseProfileAccess,
  rangeDescriptor,
  stripLlc,
} from "../../src/dlms/index.ts";
import { dataArb, simpleDataArb } from "./arbitraries.ts";
import { TIROL_NOTIFICATION } from "./fixtures.ts";

const RUNS = Number(process.env.AMIPROOF_FUZZ_RUNS ?? 300);
const hex = (bytes: Uint8Array) => Buffer.from(bytes).toString("hex");

test("golden GET-Request-Normal (Green Book example: clock 0.0.1.0.0.255 attribute 2)", () => {
  const bytes = parseHex("C0 01 C1 00 08 00 00 01 00 00 FF 02 00");
  const apdu = decodeApdu(bytes);
  assert.deepEqual(apdu, {
    kind: "get-request-normal",
    invokeId: 0xc1,
    attribute: { classId: 8, obis: [0, 0, 1, 0, 0, 255], attributeId: 2 },
    accessSelection: null,
  });
  assert.deepEqual(encodeApdu(apdu as EncodableApdu), bytes);
  assert.deepEqual(parseInvokeIdAndPriority(0xc1), { invokeId: 1, confirmed: true, highPriority: true });
  assert.equal(invokeIdAndPriority(1, { highPriority: true }), 0xc1);
});

test("golden GET-Response-With-Datablock in a captured HDLC frame (block 1, not last, raw data 01 50)", () => {
  // Source: a captured frame from a published Russian meter-protocol parser's test suite.
  const frame = decodeHdlc(
    parseHex("7E A0 19 21 02 57 52 51 5B E6 E7 00 C4 02 C1 00 00 00 00 01 00 02 01 50 99 F4 7E"),
  );
  const apdu = decodeApdu(stripLlc(frame.information, "response"));
  assert.deepEqual(apdu, {
    kind: "get-response-with-datablock",
    invokeId: 0xc1,
    lastBlock: false,
    blockNumber: 1,
    result: { rawData: Uint8Array.of(0x01, 0x50) },
  });
  assert.equal(hex(encodeApdu(apdu as EncodableApdu)), "c402c1000000000100020150");
});

test("golden block transfer and list services, built from the Green Book's ASN.1 field order", () => {
  const cases: Array<[string, Apdu]> = [
    ["C0 02 C1 00 00 00 02", { kind: "get-request-next", invokeId: 0xc1, blockNumber: 2 }],
    [
      "C0 03 C1 02 00 03 01 00 01 08 00 FF 02 00 00 01 00 00 60 01 00 FF 02 00",
      {
        kind: "get-request-with-list",
        invokeId: 0xc1,
        attributes: [
          { attribute: { classId: 3, obis: [1, 0, 1, 8, 0, 255], attributeId: 2 }, accessSelection: null },
          { attribute: { classId: 1, obis: [0, 0, 96, 1, 0, 255], attributeId: 2 }, accessSelection: null },
        ],
      },
    ],
    [
      "C4 03 C1 02 00 06 00 00 23 94 01 04",
      {
        kind: "get-response-with-list",
        invokeId: 0xc1,
        results: [{ data: { type: "double-long-unsigned", value: 9108 } }, { error: 4 }],
      },
    ],
    [
      "C4 02 C1 01 00 00 00 03 01 0E",
      {
        kind: "get-response-with-datablock",
        invokeId: 0xc1,
        lastBlock: true,
        blockNumber: 3,
        result: { error: 14 },
      },
    ],
    [
      "C1 02 C1 00 12 00 00 2C 00 00 FF 02 00 00 00 00 00 01 03 AA BB CC",
      {
        kind: "set-request-with-first-datablock",
        invokeId: 0xc1,
        attribute: { classId: 18, obis: [0, 0, 44, 0, 0, 255], attributeId: 2 },
        accessSelection: null,
        lastBlock: false,
        blockNumber: 1,
        rawData: Uint8Array.of(0xaa, 0xbb, 0xcc),
      },
    ],
    [
      "C1 03 C1 01 00 00 00 02 01 DD",
      {
        kind: "set-request-with-datablock",
        invokeId: 0xc1,
        lastBlock: true,
        blockNumber: 2,
        rawData: Uint8Array.of(0xdd),
      },
    ],
    ["C5 02 C1 00 00 00 01", { kind: "set-response-datablock", invokeId: 0xc1, blockNumber: 1 }],
    [
      "C5 03 C1 00 00 00 00 02",
      { kind: "set-response-last-datablock", invokeId: 0xc1, result: 0, blockNumber: 2 },
    ],
    ["C5 01 C1 03", { kind: "set-response-normal", invokeId: 0xc1, result: 3 }],
    [
      // image_transfer_initiate (class 18 method 1) with { identifier, size }.
      "C3 01 C1 00 12 00 00 2C 00 00 FF 01 01 02 02 09 02 41 42 06 00 00 10 00",
      {
        kind: "action-request-normal",
        invokeId: 0xc1,
        method: { classId: 18, obis: [0, 0, 44, 0, 0, 255], methodId: 1 },
        parameters: {
          type: "structure",
          value: [
            { type: "octet-string", value: Uint8Array.of(0x41, 0x42) },
            { type: "double-long-unsigned", value: 4096 },
          ],
        },
      },
    ],
    ["C7 01 C1 02 00", { kind: "action-response-normal", invokeId: 0xc1, result: 2, returned: null }],
    [
      "C7 01 C1 00 01 00 09 02 10 01",
      {
        kind: "action-response-normal",
        invokeId: 0xc1,
        result: 0,
        returned: { data: { type: "octet-string", value: Uint8Array.of(0x10, 0x01) } },
      },
    ],
    // Captured over TCP (published client log): service-not-allowed / operation-not-possible.
    ["D8 01 01", { kind: "exception-response", stateError: 1, serviceError: 1 }],
    [
      "D8 01 06 00 00 00 2A",
      { kind: "exception-response", stateError: 1, serviceError: 6, invocationCounter: 42 },
    ],
  ];
  for (const [bytes, apdu] of cases) {
    assert.deepEqual(decodeApdu(parseHex(bytes)), apdu, bytes);
    assert.equal(hex(encodeApdu(apdu as EncodableApdu)), hex(parseHex(bytes)), bytes);
  }
});

test("golden DataNotification: the Tirol push decodes with its date-time and registers' scaler_units", () => {
  const apdu = decodeApdu(parseHex(TIROL_NOTIFICATION));
  assert.equal(apdu.kind, "data-notification");
  if (apdu.kind !== "data-notification") return;
  assert.equal(apdu.longInvokeId, 0x0029b2dc);
  assert.equal(hex(apdu.dateTime!), "07e50713010f2e2300ff8880");
  assert.equal(apdu.body.type, "structure");
  const json = JSON.stringify(apduToJson(apdu));
  assert.match(json, /"unit_name":"V"/);
  assert.match(json, /"obis":"1\.0\.32\.7\.0\.255"/);
  assert.equal(hex(encodeApdu(apdu)), hex(parseHex(TIROL_NOTIFICATION)));
});

test("profile selective access: range_descriptor and entry_descriptor round-trip through GET", () => {
  const clock = { classId: 8, obis: parseObis("0.0.1.0.0.255"), attributeIndex: 2, dataIndex: 0 };
  const from = { type: "octet-string" as const, value: parseHex("07 EA 0B 16 FF 00 00 00 00 00 00 00") };
  const to = { type: "octet-string" as const, value: parseHex("07 EA 0B 16 FF 17 3B 3B 00 00 00 00") };
  const range = rangeDescriptor({
    restrictingObject: clock,
    fromValue: from,
    toValue: to,
    selectedValues: [],
  });
  const apdu: EncodableApdu = {
    kind: "get-request-normal",
    invokeId: 0xc2,
    attribute: { classId: 7, obis: parseObis("1.0.99.1.0.255"), attributeId: 2 },
    accessSelection: range,
  };
  const decoded = decodeApdu(encodeApdu(apdu));
  assert.deepEqual(decoded, apdu);
  if (decoded.kind !== "get-request-normal" || decoded.accessSelection === null) return assert.fail();
  const parsed = parseProfileAccess(decoded.accessSelection);
  assert.equal(parsed.selector, 1);
  if (parsed.selector === 1) assert.deepEqual(parsed.range.restrictingObject, clock);
  const entry = entryDescriptor({ fromEntry: 1, toEntry: 0, fromSelectedValue: 1, toSelectedValue: 0 });
  assert.deepEqual(parseProfileAccess(entry), {
    selector: 2,
    entry: { fromEntry: 1, toEntry: 0, fromSelectedValue: 1, toSelectedValue: 0 },
  });
  assert.throws(() => parseProfileAccess({ selector: 1, parameters: { type: "null-data" } }), {
    code: "BAD_VALUE",
  });
});

test("ciphered APDUs are recognised with their security header (glo-get-request, general-glo-ciphering)", () => {
  // Green Book Table 40: glo-get-request, SC 0x30, IC 0x01234567.
  const glo = decodeApdu(
    parseHex(
      "C8 1E 30 01 23 45 67 41 13 12 FF 93 5A 47 56 68 27 C4 67 BC 7D 82 5C 3B E4 A7 7C 3F CC 05 6B 6B",
    ),
  );
  assert.equal(glo.kind, "ciphered-service");
  if (glo.kind === "ciphered-service") {
    assert.deepEqual(
      [glo.name, glo.securityControl, glo.invocationCounter, glo.cipheredBytes],
      ["glo-get-request", 0x30, 0x01234567, 25],
    );
  }
  const json = apduToJson(glo);
  assert.equal(json.authenticated, true);
  assert.equal(json.encrypted, true);
  assert.equal(json.key_set, "unicast");
  assert.throws(() => decodeApdu(parseHex("C8 04 30 01 23 45")), { code: "BAD_LENGTH" });
  assert.throws(() => decodeApdu(parseHex("DB 03 01 02 03 05 30 00 00 00 01")), { code: "BAD_LENGTH" });
  assert.throws(() => decodeApdu(parseHex("E0 00")), { code: "UNSUPPORTED" });
  assert.throws(() => decodeApdu(parseHex("42")), { code: "BAD_TAG" });
});

const obisArb = fc
  .tuple(fc.nat(255), fc.nat(255), fc.nat(255), fc.nat(255), fc.nat(255), fc.nat(255))
  .map((t) => t as unknown as Obis);
const attributeArb = fc.record(
  {
    classId: fc.integer({ min: 0, max: 0xffff }),
    obis: obisArb,
    attributeId: fc.integer({ min: -128, max: 127 }),
  },
  { noNullPrototype: true },
);
const selectionArb = fc.option(
  fc.record({ selector: fc.nat(255), parameters: simpleDataArb }, { noNullPrototype: true }),
  { nil: null },
);
const u32 = fc.integer({ min: 0, max: 0xffffffff });
const byte = fc.nat(255);
const resultArb = fc.oneof(
  dataArb.map((data) => ({ data })),
  byte.map((error) => ({ error })),
);

// Records with ordinary prototypes, so deepEqual compares them with decoded objects.
// biome-ignore lint/suspicious/noExplicitAny: a thin wrapper over fc.record's generic signature
const rec = (model: any) => fc.record(model, { noNullPrototype: true }) as fc.Arbitrary<any>;

const apduArb: fc.Arbitrary<EncodableApdu> = fc.oneof(
  rec({
    kind: fc.constant("get-request-normal" as const),
    invokeId: byte,
    attribute: attributeArb,
    accessSelection: selectionArb,
  }),
  rec({ kind: fc.constant("get-request-next" as const), invokeId: byte, blockNumber: u32 }),
  rec({
    kind: fc.constant("get-request-with-list" as const),
    invokeId: byte,
    attributes: fc.array(rec({ attribute: attributeArb, accessSelection: selectionArb }), {
      maxLength: 4,
    }),
  }),
  rec({ kind: fc.constant("get-response-normal" as const), invokeId: byte, result: resultArb }),
  rec({
    kind: fc.constant("get-response-with-datablock" as const),
    invokeId: byte,
    lastBlock: fc.boolean(),
    blockNumber: u32,
    result: fc.oneof(
      fc.uint8Array({ maxLength: 300 }).map((rawData) => ({ rawData })),
      byte.map((error) => ({ error })),
    ),
  }),
  rec({
    kind: fc.constant("get-response-with-list" as const),
    invokeId: byte,
    results: fc.array(resultArb, { maxLength: 4 }),
  }),
  rec({
    kind: fc.constant("set-request-normal" as const),
    invokeId: byte,
    attribute: attributeArb,
    accessSelection: selectionArb,
    value: dataArb,
  }),
  rec({
    kind: fc.constant("set-request-with-first-datablock" as const),
    invokeId: byte,
    attribute: attributeArb,
    accessSelection: selectionArb,
    lastBlock: fc.boolean(),
    blockNumber: u32,
    rawData: fc.uint8Array({ maxLength: 200 }),
  }),
  rec({
    kind: fc.constant("set-request-with-datablock" as const),
    invokeId: byte,
    lastBlock: fc.boolean(),
    blockNumber: u32,
    rawData: fc.uint8Array({ maxLength: 200 }),
  }),
  rec({ kind: fc.constant("set-response-normal" as const), invokeId: byte, result: byte }),
  rec({ kind: fc.constant("set-response-datablock" as const), invokeId: byte, blockNumber: u32 }),
  rec({
    kind: fc.constant("set-response-last-datablock" as const),
    invokeId: byte,
    result: byte,
    blockNumber: u32,
  }),
  rec({
    kind: fc.constant("action-request-normal" as const),
    invokeId: byte,
    method: fc.record(
      {
        classId: fc.integer({ min: 0, max: 0xffff }),
        obis: obisArb,
        methodId: fc.integer({ min: -128, max: 127 }),
      },
      { noNullPrototype: true },
    ),
    parameters: fc.option(dataArb, { nil: null }),
  }),
  rec({
    kind: fc.constant("action-response-normal" as const),
    invokeId: byte,
    result: byte,
    returned: fc.option(resultArb, { nil: null }),
  }),
  rec({
    kind: fc.constant("data-notification" as const),
    longInvokeId: u32,
    dateTime: fc.option(fc.uint8Array({ minLength: 12, maxLength: 12 }), { nil: null }),
    body: dataArb,
  }),
  rec({
    kind: fc.constant("exception-response" as const),
    stateError: byte,
    serviceError: fc.integer({ min: 0, max: 5 }),
  }),
);

test("property: encodeApdu → decodeApdu is the identity on every service", () => {
  fc.assert(
    fc.property(apduArb, (apdu) => {
      assert.deepEqual(decodeApdu(encodeApdu(apdu)), apdu);
      // The JSON view never throws on a valid APDU.
      JSON.stringify(apduToJson(decodeApdu(encodeApdu(apdu))), (_k, v) =>
        typeof v === "bigint" ? v.toString() : v,
      );
    }),
    { numRuns: RUNS },
  );
});

test("fuzz: random and mutated APDUs make decodeApdu throw only DlmsError", () => {
  const seeds = [
    ...fc.sample(apduArb, { numRuns: 60, seed: 7 }).map(encodeApdu),
    parseHex(TIROL_NOTIFICATION),
  ];
  const mutated = fc
    .tuple(fc.constantFrom(...seeds), fc.array(fc.tuple(fc.nat(), byte), { maxLength: 3 }), fc.nat())
    .map(([seed, flips, cut]) => {
      const out = seed.slice(0, 1 + (cut % seed.length));
      for (const [at, v] of flips) out[at % out.length] = v;
      return out;
    });
  fc.assert(
    fc.property(fc.oneof(fc.uint8Array({ maxLength: 64 }), mutated), (bytes) => {
      try {
        apduToJson(decodeApdu(bytes));
      } catch (error) {
        if (!(error instanceof DlmsError)) throw error;
      }
    }),
    { numRuns: RUNS * 5 },
  );
});

test("the with-list result list of a block transfer: golden bytes, round trip, fuzz", () => {
  // Green Book ASN.1: SEQUENCE OF Get-Data-Result — count, then data [0] or data-access-result [1]:
  // the body of "C4 03 C1 02 00 06 00 00 23 94 01 04" above, as it travels in datablocks.
  const golden = parseHex("02 00 06 00 00 23 94 01 04");
  const results: GetDataResult[] = [{ data: { type: "double-long-unsigned", value: 9108 } }, { error: 4 }];
  assert.deepEqual(decodeGetResultList(golden), results);
  assert.deepEqual(encodeGetResultList(results), golden);
  assert.throws(() => decodeGetResultList(parseHex("01 01 04 00")), { code: "TRAILING_BYTES" });
  assert.throws(() => decodeGetResultList(parseHex("02 01 04")), { code: "TRUNCATED" });
  const resultArb: fc.Arbitrary<GetDataResult> = fc.oneof(
    dataArb.map((data) => ({ data })),
    fc.integer({ min: 0, max: 255 }).map((error) => ({ error })),
  );
  fc.assert(
    fc.property(fc.array(resultArb, { maxLength: 20 }), (list) => {
      assert.deepEqual(decodeGetResultList(encodeGetResultList(list)), list);
    }),
    { numRuns: RUNS },
  );
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 200 }), (bytes) => {
      try {
        decodeGetResultList(bytes);
      } catch (error) {
        assert.ok(error instanceof DlmsError, String(error));
      }
    }),
    { numRuns: RUNS * 3 },
  );
});
