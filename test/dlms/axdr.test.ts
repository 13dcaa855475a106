import assert from "node:assert/strict";
import { test } from "node:test";
import fc from "fast-check";
import {
  AXDR_DEPTH_MAX,
  AXDR_ELEMENTS_MAX,
  CLOCK_STATUS,
  type Data,
  DlmsError,
  dateTimeFromMs,
  dateTimeToMs,
  decodeData,
  decodeDateTimeBytes,
  encodeData,
  encodeDateTimeBytes,
  parseHex,
} from "../../src/dlms/index.ts";
import { dataArb, dateTimeArb } from "./arbitraries.ts";

const RUNS = Number(process.env.AMIPROOF_FUZZ_RUNS ?? 300);

const hex = (bytes: Uint8Array) => Buffer.from(bytes).toString("hex");

test("golden A-XDR values from published captures and the Blue Book's encoding rules", () => {
  const cases: Array<[string, Data]> = [
    // Captured GET responses (HDLC session log in hdlc.test.ts): serial number, a double-long-unsigned.
    [
      "09 10 41 50 41 6E 6F 72 33 30 39 34 34 38 31 31 33 30",
      { type: "octet-string", value: new TextEncoder().encode("APAnor3094481130") },
    ],
    ["06 00 00 07 08", { type: "double-long-unsigned", value: 1800 }],
    ["11 01", { type: "unsigned", value: 1 }],
    // Register scaler_unit of the Austrian push example (1.0.32.7.0.255: 10^-1 V).
    [
      "02 02 0F FF 16 23",
      {
        type: "structure",
        value: [
          { type: "integer", value: -1 },
          { type: "enum", value: 35 },
        ],
      },
    ],
    ["12 09 04", { type: "long-unsigned", value: 2308 }],
    ["10 FF 38", { type: "long", value: -200 }],
    ["05 FF FF FF FE", { type: "double-long", value: -2 }],
    ["03 01", { type: "boolean", value: true }],
    ["00", { type: "null-data" }],
    ["FF", { type: "dont-care" }],
    ["16 03", { type: "enum", value: 3 }],
    ["0A 03 41 42 43", { type: "visible-string", value: "ABC" }],
    ["0C 02 C3 A9", { type: "utf8-string", value: "é" }],
    ["14 FF FF FF FF FF FF FF FF", { type: "long64", value: -1n }],
    ["15 00 00 00 00 00 00 01 00", { type: "long64-unsigned", value: 256n }],
    ["17 3F C0 00 00", { type: "float32", value: 1.5 }],
    ["18 3F F8 00 00 00 00 00 00", { type: "float64", value: 1.5 }],
    ["04 0A C0 40", { type: "bit-string", bits: 10, value: Uint8Array.of(0xc0, 0x40) }],
    ["1A 07 E4 05 09 06", { type: "date", value: { year: 2020, month: 5, day: 9, dayOfWeek: 6 } }],
    ["1B 0E 1A 0F FF", { type: "time", value: { hour: 14, minute: 26, second: 15, hundredths: null } }],
  ];
  for (const [bytes, data] of cases) {
    assert.deepEqual(decodeData(parseHex(bytes)), data, bytes);
    assert.equal(hex(encodeData(data)), hex(parseHex(bytes)), bytes);
  }
});

test("date-time: the captured clock value and the Austrian push example's summer-time deviation", () => {
  // Captured clock (0.0.1.0.0.255 attribute 2): 2020-05-09 (Saturday = 6) 14:26:15, deviation +180.
  const clock = decodeDateTimeBytes(parseHex("07 E4 05 09 06 0E 1A 0F FF 00 B4 00"));
  assert.deepEqual(clock, {
    year: 2020,
    month: 5,
    day: 9,
    dayOfWeek: 6,
    hour: 14,
    minute: 26,
    second: 15,
    hundredths: null,
    deviation: 180,
    clockStatus: 0,
  });
  // Austrian push: 2021-07-19 15:46:35 local, deviation −120, clock status 0x80 (daylight saving).
  const push = decodeDateTimeBytes(parseHex("07 E5 07 13 01 0F 2E 23 00 FF 88 80"));
  assert.equal(push.deviation, -120);
  assert.equal((push.clockStatus ?? 0) & CLOCK_STATUS.daylightSavingActive, 0x80);
  assert.equal(dateTimeToMs(push), Date.UTC(2021, 6, 19, 13, 46, 35));
  assert.deepEqual(encodeDateTimeBytes(push), parseHex("07 E5 07 13 01 0F 2E 23 00 FF 88 80"));
  // Not-specified fields (0xFF, 0xFFFF, deviation 0x8000) become null and back.
  const open = decodeDateTimeBytes(parseHex("FF FF FF FF FF FF FF FF FF 80 00 FF"));
  assert.equal(
    Object.values(open).every((v) => v === null),
    true,
  );
  assert.equal(dateTimeToMs(open), null);
  const ms = Date.UTC(2026, 10, 22, 13, 4, 37, 120);
  assert.equal(dateTimeToMs(dateTimeFromMs(ms)), ms);
});

test("a bit-string's length counts bits: 100 bits in 13 bytes at the end of the buffer decode", () => {
  const bytes = Uint8Array.of(0x04, 100, ...new Uint8Array(13).fill(0xaa));
  const data = decodeData(bytes);
  assert.equal(data.type, "bit-string");
  assert.deepEqual(encodeData(data), bytes);
  assert.throws(() => decodeData(Uint8Array.of(0x04, 100, 1, 2)), { code: "TRUNCATED" });
});

test("compact-array (tag 19): element type description then untagged contents", () => {
  // Green Book A-XDR: compact-array ::= { contents-description TypeDescription, array-contents OCTET STRING }.
  // Three long-unsigned values 1, 2, 3.
  const simple = parseHex("13 12 06 00 01 00 02 00 03");
  assert.deepEqual(decodeData(simple), {
    type: "compact-array",
    description: { type: "long-unsigned" },
    value: [1, 2, 3].map((value) => ({ type: "long-unsigned", value })),
  });
  // Rows of structure { double-long-unsigned, octet-string }: variable-length members keep their length.
  const rows = parseHex("13 02 02 06 09 0D 00 00 00 01 02 AA BB 00 00 00 02 01 CC");
  const decoded = decodeData(rows);
  assert.equal(decoded.type, "compact-array");
  if (decoded.type !== "compact-array") return;
  assert.deepEqual(decoded.value[1], {
    type: "structure",
    value: [
      { type: "double-long-unsigned", value: 2 },
      { type: "octet-string", value: Uint8Array.of(0xcc) },
    ],
  });
  assert.deepEqual(encodeData(decoded), rows);
  // Zero-length element types cannot make progress: refused instead of looping.
  assert.throws(() => decodeData(parseHex("13 00 01 00")), { code: "BAD_LENGTH" });
  assert.throws(() => decodeData(parseHex("13 13 00")), { code: "BAD_TAG" });
});

test("encode refuses values outside their type instead of wrapping", () => {
  const bad: Data[] = [
    { type: "unsigned", value: 256 },
    { type: "integer", value: -129 },
    { type: "long-unsigned", value: 65536 },
    { type: "double-long", value: 2 ** 31 },
    { type: "double-long-unsigned", value: -1 },
    { type: "long64-unsigned", value: -1n },
    { type: "enum", value: 1.5 },
    { type: "visible-string", value: "€" },
    { type: "bit-string", bits: 9, value: Uint8Array.of(1) },
    { type: "date", value: { year: 70000, month: 1, day: 1, dayOfWeek: null } },
  ];
  for (const data of bad) assert.throws(() => encodeData(data), { code: "BAD_VALUE" }, data.type);
});

test("bounds: nesting depth and element counts", () => {
  let deep: Data = { type: "null-data" };
  for (let i = 0; i <= AXDR_DEPTH_MAX + 1; i++) deep = { type: "array", value: [deep] };
  assert.throws(() => encodeData(deep), { code: "TOO_DEEP" });
  const nested = new Uint8Array(2 * (AXDR_DEPTH_MAX + 2) + 1);
  for (let i = 0; i < AXDR_DEPTH_MAX + 2; i++) nested.set([0x01, 0x01], 2 * i);
  assert.throws(() => decodeData(nested), { code: "TOO_DEEP" });
  // A count beyond the bound is refused before any allocation.
  assert.throws(() => decodeData(Uint8Array.of(0x01, 0x84, 0x7f, 0xff, 0xff, 0xff)), { code: "BAD_LENGTH" });
  assert.ok(AXDR_ELEMENTS_MAX >= 65_535);
  // Zero-byte elements via compact-array are bounded by the total budget.
  // 65535 × 65535 null-data elements described in 9 bytes: refused at the total element budget.
  const huge = parseHex("13 01 FF FF 01 FF FF 00 01 00");
  assert.throws(() => decodeData(huge), { code: "BAD_LENGTH" });
});

test("property: encode → decode is the identity on every Data value", () => {
  fc.assert(
    fc.property(dataArb, (data) => {
      const bytes = encodeData(data);
      assert.deepEqual(decodeData(bytes), data);
    }),
    { numRuns: RUNS },
  );
  fc.assert(
    fc.property(dateTimeArb, (dt) => {
      assert.deepEqual(decodeDateTimeBytes(encodeDateTimeBytes(dt)), dt);
    }),
    { numRuns: RUNS },
  );
});

test("fuzz: random and mutated bytes make decodeData throw only DlmsError", () => {
  const seeds = fc.sample(dataArb, { numRuns: 40, seed: 42 }).map(encodeData);
  const mutated = fc
    .tuple(fc.constantFrom(...seeds), fc.array(fc.tuple(fc.nat(), fc.nat(255)), { maxLength: 3 }), fc.nat())
    .map(([seed, flips, cut]) => {
      const out = seed.slice(0, 1 + (cut % seed.length));
      for (const [at, v] of flips) out[at % out.length] = v;
      return out;
    });
  fc.assert(
    fc.property(fc.oneof(fc.uint8Array({ maxLength: 64 }), mutated), (bytes) => {
      try {
        decodeData(bytes);
      } catch (error) {
        if (!(error instanceof DlmsError)) throw error;
      }
    }),
    { numRuns: RUNS * 5 },
  );
});
