import assert from "node:assert/strict";
import { test } from "node:test";
import fc from "fast-check";
import {
  crc16X25,
  DlmsError,
  decodeApdu,
  decodeHdlc,
  decodeHdlcParameters,
  encodeHdlc,
  encodeHdlcParameters,
  HDLC_DEFAULT_PARAMETERS,
  HDLC_REASSEMBLY_BYTES_MAX,
  type HdlcAddressBytes,
  HdlcReassembler,
  HdlcStreamReader,
  hdlcControl,
  negotiateHdlcParameters,
  parseHex,
  segmentInformation,
  serverAddress,
  splitServerAddress,
  stripLlc,
  withLlc,
} from "../../src/dlms/index.ts";

const RUNS = Number(process.env.AMIPROOF_FUZZ_RUNS ?? 300);

// Source of the captured frames below: a published HDLC session log (public client 1 → server 1,
// LLS association, then GETs of 0.0.96.1.0.255, the clock and the load profile's capture objects)
// kept as comments in an open-source meter-reading firmware. Their HCS/FCS were computed by a real
// meter, so they check our CRC-16/X.25, field order and byte order independently of our encoder.
const CAPTURE = {
  ua: "7E A0 1E 03 03 73 40 CC 81 80 12 05 01 80 06 01 80 07 04 00 00 00 01 08 04 00 00 00 01 53 3B 7E",
  aarq: "7E A0 44 03 03 10 65 94 E6 E6 00 60 36 A1 09 06 07 60 85 74 05 08 01 01 8A 02 07 80 8B 07 60 85 74 05 08 02 01 AC 0A 80 08 78 52 77 50 62 45 78 46 BE 10 04 0E 01 00 00 00 06 5F 1F 04 00 00 7E 1F 01 00 AF DF 7E",
  aare: "7E A0 37 03 03 30 EF CA E6 E7 00 61 29 A1 09 06 07 60 85 74 05 08 01 01 A2 03 02 01 00 A3 05 A1 03 02 01 00 BE 10 04 0E 08 00 06 5F 1F 04 00 00 18 1D 01 80 00 07 A1 DC 7E",
  rr1: "7E A0 07 03 03 31 94 97 7E",
  getSerial: "7E A0 19 03 03 32 EC C8 E6 E6 00 C0 01 87 00 01 00 00 60 01 00 FF 02 00 FB 98 7E",
  serialResponse:
    "7E A0 22 03 03 52 0D 27 E6 E7 00 C4 01 87 00 09 10 41 50 41 6E 6F 72 33 30 39 34 34 38 31 31 33 30 27 A3 7E",
  segment1:
    "7E A8 89 03 03 1E 6D 97 E6 E7 00 C4 01 8D 00 01 08 02 04 12 00 08 09 06 00 00 01 00 00 FF 0F 02 12 00 00 02 04 12 00 01 09 06 00 00 60 0A 01 FF 0F 02 12 00 00 02 04 12 00 03 09 06 01 00 0F 08 00 FF 0F 02 12 00 00 02 04 12 00 03 09 06 01 00 0F 08 01 FF 0F 02 12 00 00 02 04 12 00 03 09 06 01 00 0F 08 02 FF 0F 02 12 00 00 02 04 12 00 03 09 06 01 00 0F 08 03 FF 0F 02 12 00 00 02 04 12 00 03 09 06 01 00 0F 08 35 E3 7E",
  segment2:
    "7E A0 22 03 03 10 1B 46 04 FF 0F 02 12 00 00 02 04 12 00 01 09 06 00 00 80 01 00 FF 0F 02 12 00 00 EB 7D 7E",
};

test("CRC-16/X.25 check value (CRC catalogue: '123456789' → 0x906E)", () => {
  assert.equal(crc16X25(new TextEncoder().encode("123456789")), 0x906e);
});

test("captured UA decodes: server 1 → client 1, F set, default-sized parameters re-encode byte for byte", () => {
  const bytes = parseHex(CAPTURE.ua);
  const frame = decodeHdlc(bytes);
  assert.equal(frame.kind, "UA");
  assert.equal(frame.pollFinal, true);
  assert.deepEqual([frame.destination, frame.source], [1, 1]);
  const params = decodeHdlcParameters(frame.information);
  assert.deepEqual(params, {
    maxInfoTransmit: 128,
    maxInfoReceive: 128,
    windowTransmit: 1,
    windowReceive: 1,
  });
  assert.deepEqual(encodeHdlcParameters(params), frame.information);
  assert.deepEqual(
    encodeHdlc({ destination: 1, source: 1, control: hdlcControl.ua(), information: frame.information }),
    bytes,
  );
});

test("captured I frames: sequence numbers, LLC, and byte-for-byte re-encoding", () => {
  const cases: Array<[keyof typeof CAPTURE, number, number, "command" | "response"]> = [
    ["aarq", 0, 0, "command"],
    ["aare", 0, 1, "response"],
    ["getSerial", 1, 1, "command"],
    ["serialResponse", 1, 2, "response"],
  ];
  for (const [name, ns, nr, direction] of cases) {
    const bytes = parseHex(CAPTURE[name]);
    const frame = decodeHdlc(bytes);
    assert.equal(frame.kind, "I", name);
    assert.deepEqual([frame.sendSeq, frame.receiveSeq, frame.pollFinal], [ns, nr, true], name);
    stripLlc(frame.information, direction);
    const again = encodeHdlc({
      destination: frame.destination,
      source: frame.source,
      control: hdlcControl.i(ns, nr),
      information: frame.information,
    });
    assert.deepEqual(again, bytes, name);
  }
  const rr = decodeHdlc(parseHex(CAPTURE.rr1));
  assert.deepEqual([rr.kind, rr.receiveSeq, rr.sendSeq], ["RR", 1, null]);
  assert.equal(rr.information.length, 0);
});

test("seed 000's confirmation read: GET of 0.0.96.1.0.255 attribute 2 inside a captured frame", () => {
  const request = decodeApdu(stripLlc(decodeHdlc(parseHex(CAPTURE.getSerial)).information, "command"));
  assert.equal(request.kind, "get-request-normal");
  if (request.kind !== "get-request-normal") return;
  assert.deepEqual(request.attribute, { classId: 1, obis: [0, 0, 96, 1, 0, 255], attributeId: 2 });
  const response = decodeApdu(stripLlc(decodeHdlc(parseHex(CAPTURE.serialResponse)).information, "response"));
  assert.equal(response.kind, "get-response-normal");
  if (response.kind !== "get-response-normal" || !("data" in response.result)) return assert.fail("no data");
  const data = response.result.data;
  assert.equal(data.type, "octet-string");
  if (data.type === "octet-string")
    assert.equal(Buffer.from(data.value).toString("latin1"), "APAnor3094481130");
});

test("captured segmented response (S bit) reassembles into one GET response of 8 capture objects", () => {
  const first = decodeHdlc(parseHex(CAPTURE.segment1));
  const last = decodeHdlc(parseHex(CAPTURE.segment2));
  assert.equal(first.segmented, true);
  assert.equal(last.segmented, false);
  const reassembler = new HdlcReassembler();
  assert.equal(reassembler.push(first), null);
  const whole = reassembler.push(last);
  assert.ok(whole);
  const apdu = decodeApdu(stripLlc(whole, "response"));
  assert.equal(apdu.kind, "get-response-normal");
  if (apdu.kind !== "get-response-normal" || !("data" in apdu.result)) return assert.fail("no data");
  assert.equal(apdu.result.data.type, "array");
  if (apdu.result.data.type === "array") assert.equal(apdu.result.data.value.length, 8);
  assert.equal(reassembler.pendingBytes, 0);
});

test("stream reader: the whole session in odd chunks, with noise, shared flags and a damaged frame", () => {
  const frames = [
    CAPTURE.ua,
    CAPTURE.aarq,
    CAPTURE.aare,
    CAPTURE.rr1,
    CAPTURE.segment1,
    CAPTURE.segment2,
  ].map(parseHex);
  const damaged = parseHex(CAPTURE.getSerial);
  damaged[15]! ^= 0x40;
  // Shared flag: drop the opening flag of the frame after the UA.
  const stream = Buffer.concat([
    Uint8Array.of(0x00, 0xff, 0x13),
    frames[0]!,
    frames[1]!.subarray(1),
    Uint8Array.of(0x7e, 0x7e),
    frames[2]!,
    damaged,
    frames[3]!,
    frames[4]!,
    frames[5]!,
  ]);
  const reader = new HdlcStreamReader();
  const items = [];
  for (let at = 0; at < stream.length; at += 7) items.push(...reader.push(stream.subarray(at, at + 7)));
  const kinds = items.map((item) => ("frame" in item ? item.frame.kind : `error:${item.error.code}`));
  assert.deepEqual(kinds.slice(0, 3), ["UA", "I", "I"]);
  assert.ok(kinds.includes("error:BAD_FCS"), kinds.join(","));
  assert.deepEqual(
    kinds.filter((k) => !k.startsWith("error")),
    ["UA", "I", "I", "RR", "I", "I"],
  );
  assert.equal(reader.noiseBytes >= 3, true);
});

test("4-byte and 2-byte server addresses split into upper/lower HDLC addresses", () => {
  // Source: published LLS session with a 4-byte server address (00 02 12 9D: upper 1, lower 1230).
  const frame = decodeHdlc(
    parseHex(
      "7e a0 47 00 02 12 9d 03 10 cf 5e e6 e6 00 60 36 a1 09 06 07 60 85 74 05 08 01 01 8a 02 07 80 8b 07 60 85 74 05 08 02 01 ac 0a 80 08 78 52 77 50 62 45 78 46 be 10 04 0e 01 00 00 00 06 5f 1f 04 00 00 7e 1f 01 00 af df 7e",
    ),
  );
  assert.equal(frame.destinationBytes, 4);
  assert.deepEqual(splitServerAddress(frame.destination, 4), {
    upper: 1,
    lower: (0x12 >> 1) * 128 + (0x9d >> 1),
  });
  assert.equal(frame.source, 1);
  // Source: published AARE from logical device 1, physical address 16 (source 02 21).
  const aare = decodeHdlc(
    parseHex(
      "7e a0 38 21 02 21 30 84 d4 e6 e7 00 61 29 a1 09 06 07 60 85 74 05 08 01 01 a2 03 02 01 00 a3 05 a1 03 02 01 00 be 10 04 0e 08 00 06 5f 1f 04 00 00 18 18 04 00 00 07 4e 98 7e",
    ),
  );
  assert.deepEqual([aare.destination, aare.sourceBytes], [16, 2]);
  assert.deepEqual(splitServerAddress(aare.source, 2), { upper: 1, lower: 16 });
  assert.equal(serverAddress(1, 16, 2), aare.source);
});

test("SNRM/UA negotiation never exceeds either side's limits", () => {
  const proposal = { maxInfoTransmit: 1024, maxInfoReceive: 512, windowTransmit: 7, windowReceive: 1 };
  const server = { maxInfoTransmit: 256, maxInfoReceive: 2030, windowTransmit: 1, windowReceive: 3 };
  assert.deepEqual(negotiateHdlcParameters(proposal, server), {
    maxInfoTransmit: 256,
    maxInfoReceive: 1024,
    windowTransmit: 1,
    windowReceive: 3,
  });
  assert.deepEqual(decodeHdlcParameters(new Uint8Array(0)), HDLC_DEFAULT_PARAMETERS);
  // Two-byte info lengths round-trip.
  const big = { maxInfoTransmit: 2030, maxInfoReceive: 300, windowTransmit: 1, windowReceive: 1 };
  assert.deepEqual(decodeHdlcParameters(encodeHdlcParameters(big)), big);
  assert.throws(() => encodeHdlcParameters({ ...big, windowTransmit: 8 }), { code: "BAD_LENGTH" });
});

test("control field builders agree with ISO/IEC 13239 values", () => {
  assert.equal(hdlcControl.snrm(), 0x93);
  assert.equal(hdlcControl.disc(), 0x53);
  assert.equal(hdlcControl.ua(), 0x73);
  assert.equal(hdlcControl.dm(), 0x1f);
  assert.equal(hdlcControl.ui(), 0x03);
  assert.equal(hdlcControl.i(1, 1), 0x32);
  assert.equal(hdlcControl.rr(1), 0x31);
  assert.equal(hdlcControl.rnr(0), 0x15);
  assert.throws(() => hdlcControl.i(8, 0), DlmsError);
});

test("property: encode → decode round-trips any frame; segmentation → reassembly restores the info", () => {
  const address = fc
    .constantFrom<HdlcAddressBytes>(1, 2, 4)
    .chain((bytes) =>
      fc.record({ bytes: fc.constant(bytes), value: fc.integer({ min: 0, max: 2 ** (7 * bytes) - 1 }) }),
    );
  const control = fc.oneof(
    fc.tuple(fc.nat(7), fc.nat(7), fc.boolean()).map(([s, r, p]) => hdlcControl.i(s, r, p)),
    fc.tuple(fc.nat(7), fc.boolean()).map(([r, p]) => hdlcControl.rr(r, p)),
    fc.constantFrom(0x93, 0x53, 0x73, 0x1f, 0x97, 0x13, 0x03),
  );
  fc.assert(
    fc.property(
      address,
      address,
      control,
      fc.uint8Array({ maxLength: 300 }),
      fc.boolean(),
      (dst, src, ctl, info, segmented) => {
        const bytes = encodeHdlc({
          destination: dst.value,
          destinationBytes: dst.bytes,
          source: src.value,
          sourceBytes: src.bytes,
          control: ctl,
          information: info,
          segmented,
        });
        const frame = decodeHdlc(bytes);
        assert.deepEqual(
          [
            frame.destination,
            frame.destinationBytes,
            frame.source,
            frame.sourceBytes,
            frame.control,
            frame.segmented,
          ],
          [dst.value, dst.bytes, src.value, src.bytes, ctl, segmented],
        );
        assert.deepEqual(frame.information, info);
      },
    ),
    { numRuns: RUNS },
  );
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 3000 }), fc.integer({ min: 1, max: 2030 }), (apdu, max) => {
      const info = withLlc(apdu, "response");
      const segments = segmentInformation(info, max);
      const reassembler = new HdlcReassembler();
      let whole: Uint8Array | null = null;
      segments.forEach((segment, i) => {
        const frame = decodeHdlc(
          encodeHdlc({
            destination: 16,
            source: 1,
            control: hdlcControl.i(i % 8, 0),
            information: segment,
            segmented: i < segments.length - 1,
          }),
        );
        whole = reassembler.push(frame);
      });
      assert.ok(whole);
      assert.deepEqual(stripLlc(whole, "response"), apdu);
    }),
    { numRuns: Math.max(20, RUNS / 5) },
  );
});

test("reassembly is bounded", () => {
  const reassembler = new HdlcReassembler();
  const chunk = new Uint8Array(2030);
  assert.throws(
    () => {
      for (let i = 0; i < HDLC_REASSEMBLY_BYTES_MAX / 2030 + 2; i++)
        reassembler.push({ segmented: true, information: chunk });
    },
    { code: "BAD_LENGTH" },
  );
  assert.equal(reassembler.pendingBytes, 0);
});

test("fuzz: random and mutated bytes make decodeHdlc, the stream reader and the parameter decoder throw only DlmsError", () => {
  const seeds = Object.values(CAPTURE).map(parseHex);
  const mutated = fc
    .tuple(
      fc.constantFrom(...seeds),
      fc.array(fc.tuple(fc.nat(), fc.nat(255)), { maxLength: 4 }),
      fc.nat(200),
    )
    .map(([seed, flips, cut]) => {
      const out = seed.slice(0, Math.max(1, seed.length - (cut % 4 === 0 ? cut % seed.length : 0)));
      for (const [at, v] of flips) out[at % out.length] = v;
      return out;
    });
  const onlyDlmsError = (fn: () => unknown) => {
    try {
      fn();
    } catch (error) {
      if (!(error instanceof DlmsError)) throw error;
    }
  };
  fc.assert(
    fc.property(fc.oneof(fc.uint8Array({ maxLength: 80 }), mutated), (bytes) => {
      onlyDlmsError(() => decodeHdlc(bytes));
      onlyDlmsError(() => decodeHdlcParameters(bytes));
      const reader = new HdlcStreamReader();
      onlyDlmsError(() => reader.push(bytes));
      onlyDlmsError(() => reader.push(bytes));
    }),
    { numRuns: RUNS * 3 },
  );
});
