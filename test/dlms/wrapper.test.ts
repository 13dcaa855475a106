import assert from "node:assert/strict";
import { test } from "node:test";
import fc from "fast-check";
import {
  DlmsError,
  decodeWrapper,
  decodeWrapperHeader,
  encodeWrapper,
  parseHex,
  WPORT_PUBLIC_CLIENT,
  WrapperReassembler,
} from "../../src/dlms/index.ts";

const RUNS = Number(process.env.AMIPROOF_FUZZ_RUNS ?? 300);

// Source: IEC 62056-4-7 wrapper header as DLMS UA material shows it: version 1, wPorts, length.
// The AARE below is a published TCP capture (management logical device 1 → client wPort 0x30).
const AARE_OVER_TCP =
  "00 01 00 01 00 30 00 2B 61 29 A1 09 06 07 60 85 74 05 08 01 01 A2 03 02 01 00 A3 05 A1 03 02 01 00 BE 10 04 0E 08 00 06 5F 1F 04 00 00 1C 1F 01 2C 00 07";

test("golden: wrapper header of a captured AARE over TCP", () => {
  const frame = decodeWrapper(parseHex(AARE_OVER_TCP));
  assert.deepEqual([frame.sourceWPort, frame.destinationWPort, frame.apdu.length], [1, 0x30, 0x2b]);
  assert.equal(frame.apdu[0], 0x61);
  assert.deepEqual(encodeWrapper(frame), parseHex(AARE_OVER_TCP));
  assert.equal(WPORT_PUBLIC_CLIENT, 16);
  assert.deepEqual(decodeWrapperHeader(parseHex("00 01 00 01 00 01 00 46")), {
    sourceWPort: 1,
    destinationWPort: 1,
    length: 70,
  });
});

test("wrapper errors name the field: version, truncation, trailing bytes", () => {
  assert.throws(() => decodeWrapper(parseHex("00 02 00 01 00 01 00 00")), { code: "BAD_WRAPPER" });
  assert.throws(() => decodeWrapper(parseHex("00 01 00 01 00 01 00 05 C0")), { code: "TRUNCATED" });
  assert.throws(() => decodeWrapper(parseHex("00 01 00 01 00 01 00 00 C0")), { code: "TRAILING_BYTES" });
  assert.throws(() => decodeWrapper(parseHex("00 01 00")), { code: "TRUNCATED" });
  assert.throws(() => encodeWrapper({ sourceWPort: 70000, destinationWPort: 1, apdu: new Uint8Array(0) }), {
    code: "BAD_WRAPPER",
  });
});

test("property: any sequence of frames survives any chunking of the TCP stream", () => {
  const frameArb = fc.record({
    sourceWPort: fc.integer({ min: 0, max: 0xffff }),
    destinationWPort: fc.integer({ min: 0, max: 0xffff }),
    apdu: fc.uint8Array({ maxLength: 600 }),
  });
  fc.assert(
    fc.property(
      fc.array(frameArb, { maxLength: 6 }),
      fc.array(fc.integer({ min: 1, max: 97 }), { minLength: 1 }),
      (frames, cuts) => {
        const stream = Buffer.concat(frames.map(encodeWrapper));
        const reassembler = new WrapperReassembler();
        const out = [];
        let at = 0;
        for (let i = 0; at < stream.length; i++) {
          const size = cuts[i % cuts.length]!;
          out.push(...reassembler.push(stream.subarray(at, at + size)));
          at += size;
        }
        assert.deepEqual(
          out.map((f) => [f.sourceWPort, f.destinationWPort, Buffer.from(f.apdu).toString("hex")]),
          frames.map((f) => [f.sourceWPort, f.destinationWPort, Buffer.from(f.apdu).toString("hex")]),
        );
        assert.equal(reassembler.pendingBytes, 0);
      },
    ),
    { numRuns: RUNS },
  );
});

test("reassembler is bounded: an oversized length or a bad version poisons the stream", () => {
  const small = new WrapperReassembler({ apduBytesMax: 100 });
  assert.throws(() => small.push(parseHex("00 01 00 10 00 01 00 65")), { code: "BAD_LENGTH" });
  assert.throws(() => small.push(parseHex("00 01 00 10 00 01 00 01 C0")), { code: "BAD_LENGTH" });
  const other = new WrapperReassembler();
  assert.throws(() => other.push(parseHex("FF FF 00 10 00 01 00 01")), { code: "BAD_WRAPPER" });
  assert.equal(other.pendingBytes, 0);
});

test("fuzz: random and mutated bytes make the wrapper decoders throw only DlmsError", () => {
  const seed = parseHex(AARE_OVER_TCP);
  const mutated = fc.tuple(fc.nat(seed.length - 1), fc.nat(255), fc.nat(seed.length)).map(([at, v, cut]) => {
    const out = seed.slice(0, cut);
    if (at < out.length) out[at] = v;
    return out;
  });
  fc.assert(
    fc.property(fc.oneof(fc.uint8Array({ maxLength: 40 }), mutated), (bytes) => {
      for (const fn of [
        () => decodeWrapper(bytes),
        () => new WrapperReassembler({ apduBytesMax: 64 }).push(bytes),
      ]) {
        try {
          fn();
        } catch (error) {
          if (!(error instanceof DlmsError)) throw error;
        }
      }
    }),
    { numRuns: RUNS * 3 },
  );
});
