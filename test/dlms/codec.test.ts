import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { join } from "node:path";
import { test } from "node:test";
import fc from "fast-check";
import {
  crc16X25,
  type Data,
  DlmsError,
  dateTimeFromMs,
  decodeApdu,
  decodeCapture,
  decodeData,
  decodeHdlc,
  decodeWrapper,
  encodeApdu,
  encodeData,
  encodeHdlc,
  encodeWrapper,
  parseHex,
  parseObis,
  WrapperReassembler,
} from "../../src/dlms/index.ts";

const RUNS = Number(process.env.AMIPROOF_FUZZ_RUNS ?? 300);

test("CRC-16/X.25 check value (CRC catalogue: '123456789' → 0x906E)", () => {
  assert.equal(crc16X25(new TextEncoder().encode("123456789")), 0x906e);
});

// Source: the SNRM frame from client 16 to server 1 that DLMS HDLC captures and tutorials show
// (7E A0 07 03 21 93 0F 01 7E): format A007, destination 0x03 → 1, source 0x21 → 16, control 0x93.
test("golden HDLC SNRM frame decodes and re-encodes byte for byte", () => {
  const bytes = parseHex("7E A0 07 03 21 93 0F 01 7E");
  const frame = decodeHdlc(bytes);
  assert.deepEqual([frame.destination, frame.source, frame.kind, frame.pollFinal], [1, 16, "SNRM", true]);
  assert.deepEqual(encodeHdlc({ destination: 1, source: 16, control: 0x93 }), bytes);
});

test("HDLC I frame with LLC and a GET carries the APDU; HCS/FCS damage is named", () => {
  const apdu = encodeApdu({
    kind: "get-request-normal",
    invokeId: 0xc1,
    attribute: { classId: 8, obis: parseObis("0.0.1.0.0.255"), attributeId: 2 },
    accessSelection: null,
  });
  const frame = encodeHdlc({
    destination: 0x81,
    destinationBytes: 2,
    source: 16,
    control: 0x10,
    information: Uint8Array.of(0xe6, 0xe6, 0x00, ...apdu),
  });
  const decoded = decodeCapture(frame);
  assert.equal(decoded.transport, "hdlc");
  assert.equal(decoded.transportInfo.destination, 0x81);
  assert.equal(decoded.transportInfo.llc, "command");
  assert.equal(decoded.apdu?.kind, "get-request-normal");
  const badFcs = frame.slice();
  badFcs[badFcs.length - 5]! ^= 1;
  assert.throws(() => decodeHdlc(badFcs), { code: "BAD_FCS" });
  const badHcs = frame.slice();
  badHcs[6]! ^= 1;
  assert.throws(
    () => decodeHdlc(badHcs),
    (e: unknown) => e instanceof DlmsError && (e.code === "BAD_HCS" || e.code === "BAD_FCS"),
  );
});

// Source: the Green Book's GET example for the clock: C0 01 C1 00 08 00 00 01 00 00 FF 02 00.
test("golden GET-Request-Normal of the clock's time attribute", () => {
  const bytes = parseHex("C0 01 C1 00 08 00 00 01 00 00 FF 02 00");
  const apdu = decodeApdu(bytes);
  assert.deepEqual(apdu, {
    kind: "get-request-normal",
    invokeId: 0xc1,
    attribute: { classId: 8, obis: [0, 0, 1, 0, 0, 255], attributeId: 2 },
    accessSelection: null,
  });
  assert.deepEqual(
    encodeApdu(apdu as Exclude<typeof apdu, { kind: "acse" }> & { kind: "get-request-normal" }),
    bytes,
  );
});

// Source: /work/shared/reference/dlms.md wrapper example "00 01 00 01 00 01 00 46" (70 bytes follow).
test("wrapper header: version 1, wPorts, length; reassembly across TCP chunks", () => {
  const apdu = new Uint8Array(70).fill(0x0f);
  const frame = encodeWrapper({ sourceWPort: 1, destinationWPort: 1, apdu });
  assert.deepEqual([...frame.subarray(0, 8)], [0, 1, 0, 1, 0, 1, 0, 0x46]);
  assert.deepEqual(decodeWrapper(frame).apdu, apdu);
  const r = new WrapperReassembler();
  assert.deepEqual(r.push(frame.subarray(0, 5)), []);
  const frames = r.push(Uint8Array.of(...frame.subarray(5), ...frame));
  assert.equal(frames.length, 2);
  assert.throws(() => decodeWrapper(frame.subarray(0, 40)), { code: "TRUNCATED" });
});

test("DataNotification with a date-time and a register structure (scaler_unit named)", () => {
  const body: Data = {
    type: "structure",
    value: [
      { type: "octet-string", value: Uint8Array.from(parseObis("1.0.1.8.0.255")) },
      { type: "double-long-unsigned", value: 1234567 },
      {
        type: "structure",
        value: [
          { type: "integer", value: 0 },
          { type: "enum", value: 30 },
        ],
      },
    ],
  };
  const apdu = encodeApdu({ kind: "data-notification", longInvokeId: 42, dateTime: encodeDateTime(), body });
  const wrapped = encodeWrapper({ sourceWPort: 1, destinationWPort: 16, apdu });
  const decoded = decodeCapture(wrapped);
  const text = JSON.stringify(decoded.apdu && { ...decoded, apdu: undefined });
  assert.ok(text.includes("wrapper"));
  const json = JSON.stringify((decoded.apdu as { body: Data }).body, (_, v) =>
    typeof v === "bigint" ? v.toString() : v instanceof Uint8Array ? [...v] : v,
  );
  assert.ok(json.includes("1234567"));
});

function encodeDateTime(): Uint8Array {
  return encodeData({ type: "date-time", value: dateTimeFromMs(Date.UTC(2026, 10, 22, 12, 0, 0)) }).subarray(
    1,
  );
}

const dataArb: fc.Arbitrary<Data> = fc.letrec<{ data: Data }>((tie) => ({
  data: fc.oneof(
    { depthSize: "small" },
    fc.constant<Data>({ type: "null-data" }),
    fc.boolean().map<Data>((value) => ({ type: "boolean", value })),
    fc.integer({ min: -(2 ** 31), max: 2 ** 31 - 1 }).map<Data>((value) => ({ type: "double-long", value })),
    fc.nat(0xffff_ffff).map<Data>((value) => ({ type: "double-long-unsigned", value })),
    fc.uint8Array({ maxLength: 300 }).map<Data>((value) => ({ type: "octet-string", value })),
    fc.string({ maxLength: 20 }).map<Data>((value) => ({ type: "utf8-string", value })),
    fc.integer({ min: -128, max: 127 }).map<Data>((value) => ({ type: "integer", value })),
    fc.integer({ min: -32768, max: 32767 }).map<Data>((value) => ({ type: "long", value })),
    fc.nat(255).map<Data>((value) => ({ type: "enum", value })),
    fc.bigInt({ min: -(2n ** 63n), max: 2n ** 63n - 1n }).map<Data>((value) => ({ type: "long64", value })),
    fc.double({ noNaN: true }).map<Data>((value) => ({ type: "float64", value })),
    fc.array(tie("data"), { maxLength: 4 }).map<Data>((value) => ({ type: "structure", value })),
    fc.array(tie("data"), { maxLength: 4 }).map<Data>((value) => ({ type: "array", value })),
  ),
})).data;

test("A-XDR Data round-trips for arbitrary values (lengths above 127 use the long form)", () => {
  fc.assert(
    fc.property(dataArb, (data) => {
      assert.deepEqual(decodeData(encodeData(data)), data);
    }),
    { numRuns: RUNS },
  );
});

test("fuzz: captures of random and mutated bytes fail only with DlmsError", () => {
  const valid = [
    parseHex("7E A0 07 03 21 93 0F 01 7E"),
    parseHex("C0 01 C1 00 08 00 00 01 00 00 FF 02 00"),
    encodeWrapper({
      sourceWPort: 1,
      destinationWPort: 16,
      apdu: encodeApdu({
        kind: "get-response-normal",
        invokeId: 1,
        result: { data: { type: "long-unsigned", value: 5 } },
      }),
    }),
  ];
  fc.assert(
    fc.property(
      fc.oneof(
        fc.uint8Array({ maxLength: 300 }),
        fc
          .tuple(
            fc.nat(valid.length - 1),
            fc.array(fc.tuple(fc.nat(), fc.nat(255)), { minLength: 1, maxLength: 4 }),
            fc.nat(),
          )
          .map(([which, edits, cut]) => {
            const b = valid[which]!.slice();
            for (const [at, v] of edits) b[at % b.length] = v;
            return b.subarray(0, 1 + (cut % b.length));
          }),
      ),
      (bytes) => {
        try {
          decodeCapture(bytes);
        } catch (error) {
          assert.ok(error instanceof DlmsError, String(error));
        }
      },
    ),
    { numRuns: RUNS },
  );
});

test("amiproof dlms decode: JSON with OBIS and named units; malformed input exits 1 with the reason", () => {
  const bin = join(import.meta.dirname, "../../bin/amiproof.js");
  const ok = spawnSync(
    process.execPath,
    [bin, "dlms", "decode", "C0 01 C1 00 08 00 00 01 00 00 FF 02 00", "--json"],
    { encoding: "utf8" },
  );
  assert.equal(ok.status, 0, ok.stderr);
  const json = JSON.parse(ok.stdout) as { apdu: { obis: string; class_id: number } };
  assert.deepEqual([json.apdu.obis, json.apdu.class_id], ["0.0.1.0.0.255", 8]);
  const bad = spawnSync(process.execPath, [bin, "dlms", "decode", "-"], {
    input: "7E A0 07 03 21 93 0F 02 7E",
    encoding: "utf8",
  });
  assert.equal(bad.status, 1);
  assert.match(bad.stderr, /BAD_(HCS|FCS)/);
});

// Source: the Green Book's AARQ of a public client without authentication (LN referencing,
// conformance 0x007E1F, max PDU 0x04B0): 60 1D A1 09 06 07 60 85 74 05 08 01 01 BE 10 04 0E 01 00 00 00 06 5F 1F 04 00 00 7E 1F 04 B0.
test("golden AARQ decodes and re-encodes byte for byte; AARE round-trips", async () => {
  const { decodeAarq, encodeAarq, decodeAare, encodeAare } = await import("../../src/dlms/index.ts");
  const bytes = parseHex(
    "60 1D A1 09 06 07 60 85 74 05 08 01 01 BE 10 04 0E 01 00 00 00 06 5F 1F 04 00 00 7E 1F 04 B0",
  );
  const aarq = decodeAarq(bytes);
  assert.deepEqual(
    [aarq.contextId, aarq.mechanism, aarq.conformance, aarq.maxPduSize],
    [1, 0, 0x7e1f, 0x4b0],
  );
  assert.deepEqual(encodeAarq(aarq), bytes);
  const aare = {
    contextId: 1,
    result: 0,
    diagnostic: 0,
    respondingApTitle: null,
    mechanism: 1,
    authenticationValue: null,
    conformance: 0x1e1d,
    maxPduSize: 512,
  };
  assert.deepEqual(decodeAare(encodeAare(aare)), { ...aare, cipheredInitiate: null });
});
