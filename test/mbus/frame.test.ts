import assert from "node:assert/strict";
import { test } from "node:test";
import fc from "fast-check";
import {
  C_RSP_UD,
  countDecode,
  decodeControl,
  decodeFrame,
  encodeFrame,
  frameLength,
  isMbusError,
  MBUS_FRAME_BYTES_MAX,
  MbusDecodeStats,
  MbusError,
  type MbusFrame,
  parseHex,
  reqUd2,
  sndNke,
  sndUd,
  toHex,
} from "../../src/mbus/index.ts";

const FUZZ_RUNS = Number(process.env.AMIPROOF_FUZZ_RUNS ?? 300);

// Published master requests from a wired M-Bus session log ("M-Bus Master, Part 4 (Gas)",
// hottis.de, 2013-09-11): set address by broadcast, SND_NKE and REQ_UD2 to the gas meter at 0x40.
test("master requests match a published session log byte for byte", () => {
  assert.equal(toHex(encodeFrame(sndNke(0x40)), " "), "10 40 40 80 16");
  assert.equal(toHex(encodeFrame(reqUd2(0x40, false)), " "), "10 5B 40 9B 16");
  assert.equal(toHex(encodeFrame(reqUd2(0x40, true)), " "), "10 7B 40 BB 16");
  const setAddress = sndUd(0xfe, 0x51, Uint8Array.of(0x01, 0x7a, 0x40));
  assert.equal(toHex(encodeFrame(setAddress), " "), "68 06 06 68 53 FE 51 01 7A 40 5D 16");
  assert.deepEqual(decodeFrame(parseHex("68 06 06 68 53 fe 51 01 7a 40 5d 16")), setAddress);
});

// M-Bus documentation rev. 4.8 (m-bus.com), example RSP_UD with a variable data structure.
test("decodes the M-Bus documentation's RSP_UD long frame", () => {
  const bytes = parseHex(
    "68 1F 1F 68 08 02 72 78 56 34 12 24 40 01 07 55 00 00 00 03 13 15 31 00 DA 02 3B 13 01 8B 60 04 37 18 02 18 16",
  );
  const frame = decodeFrame(bytes);
  assert.equal(frame.kind, "long");
  if (frame.kind !== "long") return;
  assert.equal(frame.control, C_RSP_UD);
  assert.equal(frame.address, 2);
  assert.equal(frame.ci, 0x72);
  assert.equal(frame.data.length, 0x1f - 3);
  assert.deepEqual(encodeFrame(frame), bytes);
  assert.equal(decodeControl(frame.control).name, "RSP_UD");
});

test("single character, short and control frames round-trip", () => {
  assert.deepEqual(decodeFrame(Uint8Array.of(0xe5)), { kind: "ack" });
  const control: MbusFrame = { kind: "control", control: 0x53, address: 0x01, ci: 0x50 };
  const bytes = encodeFrame(control);
  assert.equal(toHex(bytes, " "), "68 03 03 68 53 01 50 A4 16");
  assert.deepEqual(decodeFrame(bytes), control);
  assert.equal(decodeControl(0x40).name, "SND_NKE");
  assert.equal(decodeControl(0x7b).name, "REQ_UD2");
  assert.equal(decodeControl(0x7b).fcbOrAcd, true);
  assert.equal(decodeControl(0x53).name, "SND_UD");
});

function codeOf(bytes: Uint8Array): string {
  try {
    decodeFrame(bytes);
    return "OK";
  } catch (error) {
    assert.ok(error instanceof MbusError, `expected MbusError, got ${String(error)}`);
    return error.code;
  }
}

test("each malformed frame gets its own error code", () => {
  assert.equal(codeOf(parseHex("10 40 40 81 16")), "BAD_CHECKSUM");
  assert.equal(codeOf(parseHex("10 40 40 80 17")), "BAD_STOP");
  assert.equal(codeOf(parseHex("10 40 40 80")), "TRUNCATED");
  assert.equal(codeOf(parseHex("10 40 40 80 16 00")), "TRAILING_BYTES");
  assert.equal(codeOf(parseHex("E5 E5")), "TRAILING_BYTES");
  assert.equal(codeOf(parseHex("11 40 40 80 16")), "BAD_START");
  assert.equal(codeOf(parseHex("68 03 04 68 53 01 50 A4 16")), "BAD_LENGTH");
  assert.equal(codeOf(parseHex("68 02 02 68 53 01 54 16")), "BAD_LENGTH");
  assert.equal(codeOf(parseHex("68 03 03 69 53 01 50 A4 16")), "BAD_START");
  assert.equal(codeOf(parseHex("68 03 03 68 53 01 50 A5 16")), "BAD_CHECKSUM");
  assert.equal(codeOf(parseHex("68 03 03 68 53 01 50 A4 00")), "BAD_STOP");
  assert.equal(codeOf(parseHex("68 04 04 68 53 01 50")), "TRUNCATED");
  assert.equal(codeOf(new Uint8Array(0)), "TRUNCATED");
});

test("error messages say what was expected, what came and where", () => {
  try {
    decodeFrame(parseHex("10 40 40 81 16"));
    assert.fail("must throw");
  } catch (error) {
    assert.ok(isMbusError(error, "BAD_CHECKSUM"));
    assert.match(error.message, /0x81.*0x80/);
    assert.equal(error.where, "byte 3");
  }
});

test("frameLength tells a stream reader when a frame is complete", () => {
  assert.equal(frameLength(new Uint8Array(0)), null);
  assert.equal(frameLength(Uint8Array.of(0xe5)), 1);
  assert.equal(frameLength(Uint8Array.of(0x10)), 5);
  assert.equal(frameLength(Uint8Array.of(0x68)), null);
  assert.equal(frameLength(Uint8Array.of(0x68, 0x1f)), 0x1f + 6);
  assert.throws(
    () => frameLength(Uint8Array.of(0x42)),
    (e) => isMbusError(e, "BAD_START"),
  );
});

test("encoders refuse values outside their fields", () => {
  assert.throws(
    () => encodeFrame({ kind: "short", control: 0x100, address: 1 }),
    (e) => isMbusError(e, "BAD_FIELD"),
  );
  assert.throws(
    () => encodeFrame({ kind: "long", control: 0x08, address: 1, ci: 0x72, data: new Uint8Array(253) }),
    (e) => isMbusError(e, "BAD_FIELD"),
  );
  assert.throws(
    () => encodeFrame({ kind: "long", control: 0x08, address: 1, ci: 0x72, data: new Uint8Array(0) }),
    (e) => isMbusError(e, "BAD_FIELD"),
  );
  const biggest = encodeFrame({
    kind: "long",
    control: 0x08,
    address: 1,
    ci: 0x72,
    data: new Uint8Array(252),
  });
  assert.equal(biggest.length, MBUS_FRAME_BYTES_MAX);
});

const byte = fc.integer({ min: 0, max: 255 });
const frameArb: fc.Arbitrary<MbusFrame> = fc.oneof(
  fc.constant<MbusFrame>({ kind: "ack" }),
  fc.record({ kind: fc.constant("short" as const), control: byte, address: byte }),
  fc.record({ kind: fc.constant("control" as const), control: byte, address: byte, ci: byte }),
  fc.record({
    kind: fc.constant("long" as const),
    control: byte,
    address: byte,
    ci: byte,
    data: fc.uint8Array({ minLength: 1, maxLength: 252 }),
  }),
);

test("property: every frame round-trips through encode and decode", () => {
  fc.assert(
    fc.property(frameArb, (frame) => {
      // fast-check builds records without a prototype; compare as plain objects.
      assert.deepEqual(decodeFrame(encodeFrame(frame)), { ...frame });
    }),
    { numRuns: FUZZ_RUNS },
  );
});

test("fuzz: random bytes and mutated frames only ever raise MbusError", () => {
  const decodeOnly = (bytes: Uint8Array) => {
    try {
      decodeFrame(bytes);
    } catch (error) {
      if (!(error instanceof MbusError)) throw error;
    }
  };
  fc.assert(fc.property(fc.uint8Array({ maxLength: 300 }), decodeOnly), { numRuns: FUZZ_RUNS });
  fc.assert(
    fc.property(frameArb, fc.nat(), byte, (frame, at, value) => {
      const bytes = encodeFrame(frame);
      bytes[at % bytes.length] = value;
      decodeOnly(bytes);
      decodeOnly(bytes.subarray(0, at % bytes.length));
    }),
    { numRuns: FUZZ_RUNS },
  );
});

test("parseHex accepts spaced, plain and 0x-prefixed hex and rejects the rest", () => {
  assert.deepEqual(parseHex("10 40 40 80 16"), parseHex("1040408016"));
  assert.deepEqual(parseHex("0x10,0x40\n0x40:80 16"), parseHex("1040408016"));
  assert.throws(
    () => parseHex("10 4 40"),
    (e) => isMbusError(e, "BAD_HEX"),
  );
  assert.throws(
    () => parseHex("zz"),
    (e) => isMbusError(e, "BAD_HEX"),
  );
  assert.throws(
    () => parseHex("   "),
    (e) => isMbusError(e, "BAD_HEX"),
  );
  assert.throws(
    () => parseHex("104"),
    (e) => isMbusError(e, "BAD_HEX"),
  );
});

test("MbusDecodeStats counts frames per code: frame_crc_fail and port_err_cnt", () => {
  const stats = new MbusDecodeStats();
  const inputs = ["10 40 40 80 16", "10 40 40 81 16", "10 40 40 82 16", "10 40 40 80 17", "E5"];
  for (const hex of inputs) {
    try {
      countDecode(stats, () => decodeFrame(parseHex(hex)));
    } catch (error) {
      assert.ok(error instanceof MbusError);
    }
  }
  stats.record(new MbusError("BAD_DIF", "reserved DIF"));
  assert.equal(stats.framesOk, 2);
  assert.equal(stats.frameCrcFail, 2);
  assert.equal(stats.portErrCnt, 3);
  assert.deepEqual(stats.toJSON(), {
    frames_ok: 2,
    frame_crc_fail: 2,
    port_err_cnt: 3,
    by_code: { BAD_CHECKSUM: 2, BAD_STOP: 1, BAD_DIF: 1 },
  });
});
