import assert from "node:assert/strict";
import { test } from "node:test";
import fc from "fast-check";
import {
  type Aare,
  type Aarq,
  CONFORMANCE,
  CONTEXT_LN,
  CONTEXT_LN_CIPHERED,
  conformanceNames,
  DlmsError,
  decodeAare,
  decodeAarq,
  decodeApdu,
  decodeInitiateRequest,
  decodeInitiateResponse,
  decodeRlre,
  decodeRlrq,
  encodeAare,
  encodeAarq,
  encodeRlre,
  encodeRlrq,
  hlsGmacResponse,
  MECHANISM_HLS_GMAC,
  MECHANISM_LLS,
  MECHANISM_NONE,
  parseHex,
  RLRQ,
  type SecurityContext,
  unprotect,
  verifyHlsGmac,
} from "../../src/dlms/index.ts";

const RUNS = Number(process.env.AMIPROOF_FUZZ_RUNS ?? 300);
const hex = (bytes: Uint8Array) => Buffer.from(bytes).toString("hex").toUpperCase();
const text = (s: string) => new TextEncoder().encode(s);

// Green Book (DLMS UA 1000-2) AARQ examples: LN referencing, no ciphering, conformance 0x007E1F,
// client max receive PDU 0x04B0, with lowest, low ("12345678") and high (GMAC, challenge "K56iVagY").
const GB_AARQ_NONE =
  "60 1D A1 09 06 07 60 85 74 05 08 01 01 BE 10 04 0E 01 00 00 00 06 5F 1F 04 00 00 7E 1F 04 B0";
const GB_AARQ_LLS =
  "60 36 A1 09 06 07 60 85 74 05 08 01 01 8A 02 07 80 8B 07 60 85 74 05 08 02 01 AC 0A 80 08 31 32 33 34 35 36 37 38 BE 10 04 0E 01 00 00 00 06 5F 1F 04 00 00 7E 1F 04 B0";
const GB_AARQ_HLS =
  "60 36 A1 09 06 07 60 85 74 05 08 01 01 8A 02 07 80 8B 07 60 85 74 05 08 02 05 AC 0A 80 08 4B 35 36 69 56 61 67 59 BE 10 04 0E 01 00 00 00 06 5F 1F 04 00 00 7E 1F 04 B0";
const GB_AARE =
  "61 29 A1 09 06 07 60 85 74 05 08 01 01 A2 03 02 01 00 A3 05 A1 03 02 01 00 BE 10 04 0E 08 00 06 5F 1F 04 00 00 50 1F 01 F4 00 07";

test("Green Book AARQs (lowest, low and high level security) decode and re-encode byte for byte", () => {
  const none = decodeAarq(parseHex(GB_AARQ_NONE));
  assert.deepEqual(
    [none.contextId, none.mechanism, none.callingApTitle, none.conformance, none.maxPduSize],
    [CONTEXT_LN, MECHANISM_NONE, null, 0x007e1f, 1200],
  );
  assert.deepEqual(conformanceNames(none.conformance), [
    "priorityMgmtSupported",
    "attribute0SupportedWithGet",
    "blockTransferWithGetOrRead",
    "blockTransferWithSetOrWrite",
    "blockTransferWithAction",
    "multipleReferences",
    "get",
    "set",
    "selectiveAccess",
    "eventNotification",
    "action",
  ]);
  const lls = decodeAarq(parseHex(GB_AARQ_LLS));
  assert.equal(lls.mechanism, MECHANISM_LLS);
  assert.deepEqual(lls.authenticationValue, text("12345678"));
  const hls = decodeAarq(parseHex(GB_AARQ_HLS));
  assert.equal(hls.mechanism, MECHANISM_HLS_GMAC);
  assert.deepEqual(hls.authenticationValue, text("K56iVagY"));
  for (const vector of [GB_AARQ_NONE, GB_AARQ_LLS, GB_AARQ_HLS]) {
    assert.equal(hex(encodeAarq(decodeAarq(parseHex(vector)))), hex(parseHex(vector)));
    assert.equal(decodeApdu(parseHex(vector)).kind, "acse");
  }
});

test("Green Book AARE: accepted, conformance 0x00501F, server max receive PDU 500, vaa-name 7", () => {
  const aare = decodeAare(parseHex(GB_AARE));
  assert.deepEqual(aare, {
    contextId: 1,
    result: 0,
    diagnostic: 0,
    respondingApTitle: null,
    mechanism: 0,
    authenticationValue: null,
    conformance: 0x00501f,
    maxPduSize: 500,
    cipheredInitiate: null,
  });
  assert.equal(hex(encodeAare(aare)), hex(parseHex(GB_AARE)));
  assert.deepEqual(decodeInitiateResponse(parseHex("08 00 06 5F 1F 04 00 00 50 1F 01 F4 00 07")), {
    negotiatedQualityOfService: null,
    dlmsVersion: 6,
    conformance: 0x00501f,
    maxPduSize: 500,
    vaaName: 7,
  });
});

// Source: a published GXDLMSDirector ↔ meter session over the TCP wrapper (HLS-GMAC, all-zero EK/AK,
// client system title "00000000", server "ABC12345", both invocation counters 0). The GMACs in it
// check our HLS mechanism 5 against two independent implementations.
const SESSION = {
  aarq: "60 4A A1 09 06 07 60 85 74 05 08 01 01 A6 0A 04 08 30 30 30 30 30 30 30 30 8A 02 07 80 8B 07 60 85 74 05 08 02 05 AC 12 80 10 64 0D 3B 4E 48 22 2F 58 22 16 51 2A 3B 08 03 79 BE 10 04 0E 01 00 00 00 06 5F 1F 04 00 62 1E 5D FF FF",
  aare: "61 56 A1 09 06 07 60 85 74 05 08 01 01 A2 03 02 01 00 A3 05 A1 03 02 01 0E A4 0A 04 08 41 42 43 31 32 33 34 35 88 02 07 80 89 07 60 85 74 05 08 02 05 AA 12 80 10 64 38 59 6A 36 26 50 17 3F 5C 18 31 58 30 5A 68 BE 10 04 0E 08 00 06 5F 1F 04 00 00 00 1D 04 00 00 07",
  replyToHls:
    "C3 01 C1 00 0F 00 00 28 00 00 FF 01 01 09 11 10 00 00 00 00 A8 50 A1 0F FD 94 02 8D BF 4B BE 66",
  replyToHlsResponse: "C7 01 C1 00 01 00 09 11 10 00 00 00 00 44 CA F7 33 BD 2D 0B 36 6D A3 F2 F5",
  cipheredAarq:
    "60 5D A1 09 06 07 60 85 74 05 08 01 03 A6 0A 04 08 30 30 30 30 30 30 30 30 8A 02 07 80 8B 07 60 85 74 05 08 02 05 AC 12 80 10 64 06 44 07 2F 51 51 30 63 42 6D 58 04 51 3E 16 BE 23 04 21 21 1F 10 00 00 00 00 01 00 00 00 06 5F 1F 04 00 62 1E 5D FF FF 21 19 0A 97 C0 A6 CD 55 DF 5E 05 01",
  cipheredAare:
    "61 69 A1 09 06 07 60 85 74 05 08 01 03 A2 03 02 01 00 A3 05 A1 03 02 01 0E A4 0A 04 08 41 42 43 31 32 33 34 35 88 02 07 80 89 07 60 85 74 05 08 02 05 AA 12 80 10 17 33 40 20 42 4A 27 5F 6F 03 0F 20 76 0F 42 26 BE 23 04 21 28 1F 10 00 00 00 00 08 00 06 5F 1F 04 00 00 00 1D 04 00 00 07 07 22 7E 9F 6E 3F 26 62 6D 8F 54 2E",
};
const ZERO = new Uint8Array(16);
const CLIENT: SecurityContext = {
  suite: 0,
  systemTitle: text("00000000"),
  encryptionKey: ZERO,
  authenticationKey: ZERO,
};
const SERVER: SecurityContext = {
  suite: 0,
  systemTitle: text("ABC12345"),
  encryptionKey: ZERO,
  authenticationKey: ZERO,
};

test("captured HLS-GMAC association: AARQ/AARE fields, then f(StoC) and f(CtoS) match the capture", () => {
  const aarq = decodeAarq(parseHex(SESSION.aarq));
  assert.deepEqual(aarq.callingApTitle, CLIENT.systemTitle);
  assert.equal(aarq.mechanism, MECHANISM_HLS_GMAC);
  assert.equal(aarq.maxPduSize, 0xffff);
  assert.equal(hex(encodeAarq(aarq)), hex(parseHex(SESSION.aarq)));
  const aare = decodeAare(parseHex(SESSION.aare));
  assert.deepEqual([aare.result, aare.diagnostic, aare.mechanism], [0, 14, MECHANISM_HLS_GMAC]); // authentication-required
  assert.deepEqual(aare.respondingApTitle, SERVER.systemTitle);
  assert.equal(hex(encodeAare(aare)), hex(parseHex(SESSION.aare)));
  const stoc = aare.authenticationValue!;
  const ctos = aarq.authenticationValue!;
  // Pass 3: ACTION reply_to_HLS_authentication (class 15, 0.0.40.0.0.255, method 1) carries f(StoC).
  const action = decodeApdu(parseHex(SESSION.replyToHls));
  assert.equal(action.kind, "action-request-normal");
  if (action.kind !== "action-request-normal" || action.parameters?.type !== "octet-string")
    return assert.fail();
  assert.deepEqual(action.method, { classId: 15, obis: [0, 0, 40, 0, 0, 255], methodId: 1 });
  assert.equal(hex(hlsGmacResponse(CLIENT, 0, stoc)), hex(action.parameters.value));
  assert.equal(verifyHlsGmac(SERVER, CLIENT.systemTitle, stoc, action.parameters.value), 0);
  // Pass 4: the response returns f(CtoS).
  const response = decodeApdu(parseHex(SESSION.replyToHlsResponse));
  if (
    response.kind !== "action-response-normal" ||
    response.returned === null ||
    !("data" in response.returned)
  ) {
    return assert.fail();
  }
  const fCtoS = response.returned.data;
  assert.equal(fCtoS.type, "octet-string");
  if (fCtoS.type === "octet-string") assert.equal(hex(hlsGmacResponse(SERVER, 0, ctos)), hex(fCtoS.value));
});

test("captured ciphered association: glo-initiate request/response (SC 0x10) verify and decode", () => {
  const aarq = decodeAarq(parseHex(SESSION.cipheredAarq));
  assert.equal(aarq.contextId, CONTEXT_LN_CIPHERED);
  assert.ok(aarq.cipheredInitiate);
  const request = unprotect(CLIENT, aarq.callingApTitle!, aarq.cipheredInitiate);
  assert.deepEqual(decodeInitiateRequest(request.plaintext), {
    dedicatedKey: null,
    responseAllowed: true,
    proposedQualityOfService: null,
    dlmsVersion: 6,
    conformance: 0x621e5d,
    maxPduSize: 0xffff,
  });
  assert.equal(hex(encodeAarq(aarq)), hex(parseHex(SESSION.cipheredAarq)));
  const aare = decodeAare(parseHex(SESSION.cipheredAare));
  const response = unprotect(SERVER, aare.respondingApTitle!, aare.cipheredInitiate!);
  assert.equal(decodeInitiateResponse(response.plaintext).conformance, 0x00001d);
  assert.equal(hex(encodeAare(aare)), hex(parseHex(SESSION.cipheredAare)));
});

test("rejected AARE (published LLS capture with a wrong password): result 1, authentication-failure", () => {
  const aare = decodeAare(
    parseHex(
      "61 29 A1 09 06 07 60 85 74 05 08 01 01 A2 03 02 01 01 A3 05 A1 03 02 01 0D BE 10 04 0E 08 00 06 5F 1F 04 00 00 18 1D 01 80 00 07",
    ),
  );
  assert.deepEqual([aare.result, aare.diagnostic, aare.conformance], [1, 13, 0]);
  const provider = decodeAare(
    encodeAare({ ...aare, result: 2, diagnostic: 2, diagnosticSource: "service-provider" }),
  );
  assert.deepEqual(
    [provider.result, provider.diagnostic, provider.diagnosticSource],
    [2, 2, "service-provider"],
  );
});

test("dedicated key and response-allowed travel in the InitiateRequest", () => {
  const key = parseHex("00112233445566778899AABBCCDDEEFF");
  const aarq: Aarq = {
    contextId: CONTEXT_LN_CIPHERED,
    callingApTitle: CLIENT.systemTitle,
    mechanism: MECHANISM_HLS_GMAC,
    authenticationValue: text("0123456789abcdef"),
    conformance:
      CONFORMANCE.get | CONFORMANCE.set | CONFORMANCE.action | CONFORMANCE.blockTransferWithGetOrRead,
    maxPduSize: 1024,
    cipheredInitiate: null,
    dedicatedKey: key,
    responseAllowed: false,
    proposedQualityOfService: null,
    dlmsVersion: 6,
  };
  assert.deepEqual(decodeAarq(encodeAarq(aarq)), aarq);
});

test("RLRQ/RLRE: with and without reason and user-information", () => {
  assert.equal(hex(RLRQ), "6203800100");
  assert.deepEqual(decodeRlrq(RLRQ), { reason: 0, userInformation: null });
  assert.deepEqual(decodeRlrq(parseHex("62 00")), { reason: null, userInformation: null });
  const withInfo = { reason: 0, userInformation: parseHex("01 00 00 00 06 5F 1F 04 00 00 7E 1F 04 B0") };
  assert.deepEqual(decodeRlrq(encodeRlrq(withInfo)), withInfo);
  assert.deepEqual(decodeRlre(encodeRlre({ reason: 1, userInformation: null })), {
    reason: 1,
    userInformation: null,
  });
  assert.throws(() => decodeRlrq(parseHex("63 00")), { code: "BAD_TAG" });
});

test("property: AARQ and AARE round-trip; fuzz: random and mutated ACSE bytes throw only DlmsError", () => {
  const bytes = (min: number, max: number) => fc.uint8Array({ minLength: min, maxLength: max });
  const aarqArb: fc.Arbitrary<Aarq> = fc.record(
    {
      contextId: fc.constantFrom(1, 3),
      callingApTitle: fc.option(bytes(8, 8), { nil: null }),
      mechanism: fc.constantFrom(0, 1, 5),
      authenticationValue: fc.option(bytes(8, 64), { nil: null }),
      conformance: fc.integer({ min: 0, max: 0xffffff }),
      maxPduSize: fc.integer({ min: 0, max: 0xffff }),
      cipheredInitiate: fc.constant(null),
      dedicatedKey: fc.option(bytes(16, 16), { nil: null }),
      responseAllowed: fc.boolean(),
      proposedQualityOfService: fc.option(fc.nat(255), { nil: null }),
      dlmsVersion: fc.constant(6),
    },
    { noNullPrototype: true },
  );
  fc.assert(
    fc.property(aarqArb, (aarq) => {
      const decoded = decodeAarq(encodeAarq(aarq));
      const expected =
        aarq.mechanism === 0
          ? { ...aarq, authenticationValue: null }
          : { ...aarq, authenticationValue: aarq.authenticationValue ?? new Uint8Array(0) };
      assert.deepEqual(decoded, expected);
    }),
    { numRuns: RUNS },
  );
  const aareArb: fc.Arbitrary<Aare> = fc.record(
    {
      contextId: fc.constantFrom(1, 3),
      result: fc.constant(0),
      diagnostic: fc.nat(14),
      respondingApTitle: fc.option(bytes(8, 8), { nil: null }),
      mechanism: fc.constantFrom(0, 5),
      authenticationValue: fc.option(bytes(8, 64), { nil: null }),
      conformance: fc.integer({ min: 0, max: 0xffffff }),
      maxPduSize: fc.integer({ min: 0, max: 0xffff }),
      cipheredInitiate: fc.option(bytes(17, 60), { nil: null }),
    },
    { noNullPrototype: true },
  );
  fc.assert(
    fc.property(aareArb, (aare) => {
      const decoded = decodeAare(encodeAare(aare));
      assert.deepEqual(decoded.cipheredInitiate, aare.cipheredInitiate);
      if (aare.cipheredInitiate === null)
        assert.deepEqual([decoded.conformance, decoded.maxPduSize], [aare.conformance, aare.maxPduSize]);
      assert.deepEqual(decoded.respondingApTitle, aare.respondingApTitle);
    }),
    { numRuns: RUNS },
  );
  const seeds = [GB_AARQ_NONE, GB_AARQ_HLS, GB_AARE, SESSION.aarq, SESSION.cipheredAare].map(parseHex);
  const mutated = fc
    .tuple(fc.constantFrom(...seeds), fc.array(fc.tuple(fc.nat(), fc.nat(255)), { maxLength: 3 }), fc.nat())
    .map(([seed, flips, cut]) => {
      const out = seed.slice(0, 1 + (cut % seed.length));
      for (const [at, v] of flips) out[at % out.length] = v;
      return out;
    });
  fc.assert(
    fc.property(fc.oneof(fc.uint8Array({ maxLength: 64 }), mutated), (input) => {
      for (const decode of [decodeAarq, decodeAare, decodeRlrq, decodeRlre]) {
        try {
          decode(input);
        } catch (error) {
          if (!(error instanceof DlmsError)) throw error;
        }
      }
    }),
    { numRuns: RUNS * 3 },
  );
});
