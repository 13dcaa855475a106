import assert from "node:assert/strict";
import { test } from "node:test";
import fc from "fast-check";
import {
  DlmsError,
  decodeApdu,
  decodeSecurityControl,
  encodeSecurityControl,
  hlsGmacResponse,
  InvocationCounterGuard,
  parseHex,
  protectApdu,
  type SecurityContext,
  unprotectApdu,
  verifyHlsGmac,
} from "../../src/dlms/index.ts";
import { TIROL_CIPHERED, TIROL_KEY, TIROL_NOTIFICATION } from "./fixtures.ts";

const RUNS = Number(process.env.AMIPROOF_FUZZ_RUNS ?? 300);
const hex = (bytes: Uint8Array) => Buffer.from(bytes).toString("hex").toUpperCase();

// Green Book (DLMS UA 1000-2 Ed. 8) Table 40 and Table 43: keys, system titles and counters.
const EK = parseHex("000102030405060708090A0B0C0D0E0F");
const AK = parseHex("D0D1D2D3D4D5D6D7D8D9DADBDCDDDEDF");
const SERVER: SecurityContext = {
  suite: 0,
  systemTitle: parseHex("4D4D4D0000BC614E"),
  encryptionKey: EK,
  authenticationKey: AK,
};
const CLIENT: SecurityContext = {
  suite: 0,
  systemTitle: parseHex("4D4D4D0000000001"),
  encryptionKey: EK,
  authenticationKey: AK,
};
const GET_CLOCK = parseHex("C0010000080000010000FF0200");

test("Green Book Table 40: glo-get-request in all three protection modes, byte for byte", () => {
  const vectors: Array<[number, string]> = [
    [0x10, "C81E1001234567C0010000080000010000FF020006725D910F9221D263877516"],
    [0x20, "C8122001234567411312FF935A47566827C467BC"],
    [0x30, "C81E3001234567411312FF935A47566827C467BC7D825C3BE4A77C3FCC056B6B"],
  ];
  for (const [securityControl, expected] of vectors) {
    const ciphered = protectApdu(SERVER, GET_CLOCK, { securityControl, invocationCounter: 0x01234567 });
    assert.equal(hex(ciphered), expected, `SC 0x${securityControl.toString(16)}`);
    const opened = unprotectApdu(SERVER, ciphered, { peerSystemTitle: SERVER.systemTitle });
    assert.deepEqual(opened.apdu, GET_CLOCK);
    assert.equal(opened.invocationCounter, 0x01234567);
    assert.equal(decodeApdu(ciphered).kind, "ciphered-service");
  }
});

test("Green Book Table 43: HLS mechanism 5 f(StoC) and f(CtoS)", () => {
  const ctos = new TextEncoder().encode("K56iVagY");
  const stoc = new TextEncoder().encode("P6wRJ21F");
  const fStoC = hlsGmacResponse(CLIENT, 0x00000001, stoc);
  assert.equal(hex(fStoC), "10000000011A52FE7DD3E72748973C1E28");
  const fCtoS = hlsGmacResponse(SERVER, 0x01234567, ctos);
  assert.equal(hex(fCtoS), "1001234567FE1466AFB3DBCD4F9389E2B7");
  // Each side verifies the other's answer with the other's system title.
  assert.equal(verifyHlsGmac(SERVER, CLIENT.systemTitle, stoc, fStoC), 1);
  assert.equal(verifyHlsGmac(CLIENT, SERVER.systemTitle, ctos, fCtoS), 0x01234567);
  assert.throws(() => verifyHlsGmac(SERVER, CLIENT.systemTitle, ctos, fStoC), { code: "AUTH_FAILED" });
});

test("the Tirol push (general-glo-ciphering, encryption only) decrypts to the published DataNotification", () => {
  // Source: fneur/smart-meter-tirol doc/EXAMPLE.md — key 10 11 … 1F, IV = system title ‖ frame counter.
  const ciphered = parseHex(TIROL_CIPHERED);
  const header = decodeApdu(ciphered);
  assert.equal(header.kind, "general-glo-ciphering");
  if (header.kind !== "general-glo-ciphering") return;
  assert.equal(hex(header.systemTitle), "4B464D1010000023");
  assert.deepEqual(decodeSecurityControl(header.securityControl), {
    suite: 1,
    authenticated: false,
    encrypted: true,
    broadcastKey: false,
    compressed: false,
  });
  assert.equal(header.invocationCounter, 0x00295b9a);
  const ctx: SecurityContext = {
    suite: 0,
    systemTitle: parseHex("0000000000000000"),
    encryptionKey: parseHex(TIROL_KEY),
    authenticationKey: new Uint8Array(16),
  };
  const opened = unprotectApdu(ctx, ciphered);
  assert.equal(hex(opened.apdu), hex(parseHex(TIROL_NOTIFICATION)));
  assert.throws(() => unprotectApdu(ctx, ciphered, { requireAuthentication: true }), { code: "AUTH_FAILED" });
});

test("general-glo-ciphering round-trip; the guard refuses a replayed counter only after the tag verified", () => {
  const guard = new InvocationCounterGuard();
  const first = protectApdu(CLIENT, GET_CLOCK, {
    securityControl: 0x30,
    invocationCounter: 5,
    form: "general-glo-ciphering",
  });
  assert.deepEqual(unprotectApdu(SERVER, first, { guard }).apdu, GET_CLOCK);
  assert.throws(() => unprotectApdu(SERVER, first, { guard }), { code: "REPLAYED_INVOCATION_COUNTER" });
  const forged = first.slice();
  forged[forged.length - 1]! ^= 1;
  // A forged APDU with a fresh counter fails on its tag and does not move the guard.
  const forgedFresh = protectApdu(CLIENT, GET_CLOCK, {
    securityControl: 0x30,
    invocationCounter: 9,
    form: "general-glo-ciphering",
  });
  forgedFresh[forgedFresh.length - 1]! ^= 1;
  assert.throws(() => unprotectApdu(SERVER, forgedFresh, { guard }), { code: "DECRYPT_FAILED" });
  const next = protectApdu(CLIENT, GET_CLOCK, {
    securityControl: 0x30,
    invocationCounter: 6,
    form: "general-glo-ciphering",
  });
  assert.deepEqual(unprotectApdu(SERVER, next, { guard }).apdu, GET_CLOCK);
  assert.equal(guard.replaysRefused, 1);
});

test("security control byte: every field round-trips; unsupported policies are refused", () => {
  for (let byte = 0; byte < 256; byte++)
    assert.equal(encodeSecurityControl(decodeSecurityControl(byte)), byte);
  assert.throws(() => protectApdu(SERVER, GET_CLOCK, { securityControl: 0x00, invocationCounter: 1 }), {
    code: "BAD_VALUE",
  });
  assert.throws(() => protectApdu(SERVER, GET_CLOCK, { securityControl: 0xb0, invocationCounter: 1 }), {
    code: "UNSUPPORTED",
  });
  assert.throws(() => protectApdu(SERVER, GET_CLOCK, { securityControl: 0x32, invocationCounter: 1 }), {
    code: "UNSUPPORTED",
  });
  assert.throws(() => unprotectApdu(SERVER, parseHex("C8 05 30 00 00 00 01")), { code: "UNSUPPORTED" });
  assert.throws(
    () =>
      protectApdu({ ...SERVER, encryptionKey: new Uint8Array(15) }, GET_CLOCK, {
        securityControl: 0x30,
        invocationCounter: 1,
      }),
    {
      code: "BAD_LENGTH",
    },
  );
});

test("property: protect → unprotect round-trips every mode and form", () => {
  fc.assert(
    fc.property(
      fc.uint8Array({ minLength: 1, maxLength: 400 }).map((b) => Uint8Array.of(0xc0, ...b)),
      fc.constantFrom(0x10, 0x20, 0x30, 0x11, 0x31),
      fc.integer({ min: 0, max: 0xffffffff }),
      fc.constantFrom("service-specific" as const, "general-glo-ciphering" as const),
      (apdu, securityControl, invocationCounter, form) => {
        const ciphered = protectApdu(CLIENT, apdu, { securityControl, invocationCounter, form });
        const opened = unprotectApdu(SERVER, ciphered, { peerSystemTitle: CLIENT.systemTitle });
        assert.deepEqual(opened.apdu, apdu);
        assert.equal(opened.invocationCounter, invocationCounter);
      },
    ),
    { numRuns: RUNS },
  );
});

test("fuzz: random and mutated ciphered APDUs make unprotectApdu throw only DlmsError", () => {
  const seeds = [0x10, 0x20, 0x30].flatMap((securityControl) => [
    protectApdu(CLIENT, GET_CLOCK, { securityControl, invocationCounter: 7 }),
    protectApdu(CLIENT, GET_CLOCK, { securityControl, invocationCounter: 7, form: "general-glo-ciphering" }),
  ]);
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
        unprotectApdu(SERVER, bytes, {
          peerSystemTitle: CLIENT.systemTitle,
          guard: new InvocationCounterGuard(),
        });
      } catch (error) {
        if (!(error instanceof DlmsError)) throw error;
      }
    }),
    { numRuns: RUNS * 3 },
  );
});
