import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { join } from "node:path";
import { test } from "node:test";
import fc from "fast-check";
import {
  captureToJson,
  captureToText,
  DlmsError,
  decodeCapture,
  encodeHdlc,
  encodeWrapper,
  hdlcControl,
  parseHex,
  withLlc,
} from "../../src/dlms/index.ts";
import { TIROL_CIPHERED, TIROL_KEY } from "./fixtures.ts";

const RUNS = Number(process.env.AMIPROOF_FUZZ_RUNS ?? 300);
const BIN = join(import.meta.dirname, "../../bin/amiproof.js");

// Published captures (see hdlc.test.ts): a GET response split over two I frames with the client's RR between.
const SEGMENTED = [
  "7E A8 89 03 03 1E 6D 97 E6 E7 00 C4 01 8D 00 01 08 02 04 12 00 08 09 06 00 00 01 00 00 FF 0F 02 12 00 00 02 04 12 00 01 09 06 00 00 60 0A 01 FF 0F 02 12 00 00 02 04 12 00 03 09 06 01 00 0F 08 00 FF 0F 02 12 00 00 02 04 12 00 03 09 06 01 00 0F 08 01 FF 0F 02 12 00 00 02 04 12 00 03 09 06 01 00 0F 08 02 FF 0F 02 12 00 00 02 04 12 00 03 09 06 01 00 0F 08 03 FF 0F 02 12 00 00 02 04 12 00 03 09 06 01 00 0F 08 35 E3 7E",
  "7E A0 07 03 03 11 96 B6 7E",
  "7E A0 22 03 03 10 1B 46 04 FF 0F 02 12 00 00 02 04 12 00 01 09 06 00 00 80 01 00 FF 0F 02 12 00 00 EB 7D 7E",
].join(" ");
const GET_SERIAL = "7E A0 19 03 03 32 EC C8 E6 E6 00 C0 01 87 00 01 00 00 60 01 00 FF 02 00 FB 98 7E";

test("multi-frame HDLC capture: segments reassemble across the peer's RR into one APDU", () => {
  const capture = decodeCapture(parseHex(SEGMENTED));
  assert.equal(capture.transport, "hdlc");
  assert.equal((capture.transportInfo.frames as unknown[]).length, 3);
  assert.equal(capture.apdu?.kind, "get-response-normal");
  const text = captureToText(capture);
  assert.match(text, /obis 1\.0\.15\.8\.0\.255/);
});

test("wrapper stream with two frames decodes both; ACSE fields are spelled out", () => {
  const aare = parseHex(
    "61 29 A1 09 06 07 60 85 74 05 08 01 01 A2 03 02 01 00 A3 05 A1 03 02 01 00 BE 10 04 0E 08 00 06 5F 1F 04 00 00 50 1F 01 F4 00 07",
  );
  const stream = Buffer.concat([
    encodeWrapper({ sourceWPort: 1, destinationWPort: 16, apdu: aare }),
    encodeWrapper({ sourceWPort: 1, destinationWPort: 16, apdu: parseHex("D8 01 01") }),
  ]);
  const json = captureToJson(decodeCapture(stream)) as {
    apdu: Record<string, unknown>;
    more: Array<{ apdu: Record<string, unknown> }>;
  };
  assert.equal(json.apdu.apdu, "AARE");
  assert.equal(json.apdu.result, "0 (accepted)");
  assert.deepEqual((json.apdu.initiate as { conformance_names: string[] }).conformance_names.slice(0, 2), [
    "priority-mgmt-supported",
    "block-transfer-with-get-or-read",
  ]);
  assert.equal(json.more[0]!.apdu.service_error_name, "operation-not-possible");
  assert.throws(() => decodeCapture(stream.subarray(0, stream.length - 1)), { code: "TRUNCATED" });
});

test("ciphered push: header without keys; with --ek the DataNotification and its scaled registers", () => {
  const bytes = parseHex(TIROL_CIPHERED);
  const header = captureToJson(decodeCapture(bytes));
  assert.equal((header.apdu as Record<string, unknown>).encrypted, true);
  assert.equal(header.deciphered, undefined);
  const json = JSON.stringify(captureToJson(decodeCapture(bytes, { encryptionKey: parseHex(TIROL_KEY) })));
  assert.match(json, /"apdu":"data-notification"/);
  assert.match(json, /"scaled":"230\.8 V"/);
  assert.match(json, /"scaled":"9108 Wh"/);
});

test("a ciphered glo-get-request needs the sender's system title; with it, it deciphers", () => {
  // Green Book Table 40 (SC 0x30).
  const bytes = parseHex("C81E3001234567411312FF935A47566827C467BC7D825C3BE4A77C3FCC056B6B");
  const keys = {
    encryptionKey: parseHex("000102030405060708090A0B0C0D0E0F"),
    authenticationKey: parseHex("D0D1D2D3D4D5D6D7D8D9DADBDCDDDEDF"),
  };
  assert.throws(() => decodeCapture(bytes, keys), { code: "UNSUPPORTED" });
  const capture = decodeCapture(bytes, { ...keys, systemTitle: parseHex("4D4D4D0000BC614E") });
  assert.equal(capture.deciphered?.apdu.kind, "get-request-normal");
  assert.throws(() => decodeCapture(bytes, { ...keys, systemTitle: parseHex("4D4D4D0000BC614F") }), {
    code: "DECRYPT_FAILED",
  });
});

test("malformed captures name what went wrong", () => {
  assert.throws(() => decodeCapture(parseHex("7E A0 07 03 21 93 0F 02 7E")), { code: "BAD_FCS" });
  assert.throws(
    () => decodeCapture(parseHex(`00 ${GET_SERIAL}`)),
    (e: unknown) => e instanceof DlmsError,
  );
  assert.throws(() => decodeCapture(parseHex(`${GET_SERIAL} 00`)), { code: "TRUNCATED" });
  assert.throws(() => decodeCapture(parseHex(GET_SERIAL).subarray(0, 20)), { code: "TRUNCATED" });
  assert.throws(() => parseHex("C0 0"), { code: "BAD_LENGTH" });
});

test("fuzz: decodeCapture and both renderings throw only DlmsError on random and mutated captures", () => {
  const info = withLlc(parseHex("C4 01 C1 00 09 04 41 42 43 44"), "response");
  const seeds = [
    parseHex(SEGMENTED),
    parseHex(GET_SERIAL),
    parseHex(TIROL_CIPHERED),
    encodeHdlc({ destination: 16, source: 1, control: hdlcControl.i(0, 0), information: info }),
    encodeWrapper({ sourceWPort: 1, destinationWPort: 16, apdu: info.subarray(3) }),
  ];
  const mutated = fc
    .tuple(fc.constantFrom(...seeds), fc.array(fc.tuple(fc.nat(), fc.nat(255)), { maxLength: 3 }), fc.nat())
    .map(([seed, flips, cut]) => {
      const out = seed.slice(0, 1 + (cut % seed.length));
      for (const [at, v] of flips) out[at % out.length] = v;
      return out;
    });
  const key = { encryptionKey: parseHex(TIROL_KEY) };
  fc.assert(
    fc.property(fc.oneof(fc.uint8Array({ maxLength: 80 }), mutated), fc.boolean(), (bytes, withKey) => {
      try {
        const capture = decodeCapture(bytes, withKey ? key : {});
        captureToText(capture);
        JSON.stringify(captureToJson(capture), (_k, v) => (typeof v === "bigint" ? v.toString() : v));
      } catch (error) {
        if (!(error instanceof DlmsError)) throw error;
      }
    }),
    { numRuns: RUNS * 2 },
  );
});

const run = (args: string[], input?: string) =>
  spawnSync(process.execPath, [BIN, "dlms", "decode", ...args], {
    encoding: "utf8",
    ...(input === undefined ? {} : { input }),
  });

test("CLI: amiproof dlms decode prints a tree, --json one object, keys decipher; bad input exits 1, bad keys 2", () => {
  const tree = run([GET_SERIAL]);
  assert.equal(tree.status, 0, tree.stderr);
  assert.match(tree.stdout, /apdu: get-request-normal/);
  assert.match(tree.stdout, /obis: 0\.0\.96\.1\.0\.255/);
  assert.match(tree.stdout, /llc: command/);
  const json = run(["-", "--json", "--ek", TIROL_KEY], TIROL_CIPHERED);
  assert.equal(json.status, 0, json.stderr);
  const parsed = JSON.parse(json.stdout) as { deciphered: { apdu: { apdu: string } } };
  assert.equal(parsed.deciphered.apdu.apdu, "data-notification");
  assert.match(json.stdout, /"scaled":"230\.8 V"/);
  const bad = run(["7E A0 19 03 03 32 EC C8 E6 E6 00 C0 01 87 00 01 00 00 60 01 00 FF 02 00 FB 99 7E"]);
  assert.equal(bad.status, 1);
  assert.match(bad.stderr, /BAD_FCS/);
  const badKey = run([GET_SERIAL, "--ek", "0011"]);
  assert.equal(badKey.status, 2);
  assert.match(badKey.stderr, /--ek must be 16 bytes/);
});
