import assert from "node:assert/strict";
import { test } from "node:test";
import fc from "fast-check";
import {
  DlmsError,
  decodeGeneralGloCiphering,
  encodeGeneralGloCiphering,
  hlsGmacResponse,
  InvocationCounterGuard,
  parseHex,
  protect,
  type SecurityContext,
  unprotect,
  verifyHlsGmac,
} from "../../src/dlms/index.ts";

// Source: the Green Book's worked example (Table 40) of security suite 0: system title 4D4D4D0000BC614E, invocation counter
// 0x01234567, EK 000102…0F, AK D0D1…DF, plaintext glo-get-request body C0 01 00 00 08 00 00 01 00 00 FF 02 00.
const METER: SecurityContext = {
  suite: 0,
  systemTitle: parseHex("4D4D4D0000BC614E"),
  encryptionKey: parseHex("000102030405060708090A0B0C0D0E0F"),
  authenticationKey: parseHex("D0D1D2D3D4D5D6D7D8D9DADBDCDDDEDF"),
};
const PLAIN = parseHex("C0 01 00 00 08 00 00 01 00 00 FF 02 00");

test("suite 0 authenticated + encrypted (SC 0x30) matches the Green Book example", () => {
  const content = protect(METER, 0x30, 0x01234567, PLAIN);
  assert.equal(
    Buffer.from(content).toString("hex").toUpperCase(),
    // SC ‖ IC ‖ ciphertext (13) ‖ tag (12): Green Book Table 40.
    "30" + "01234567" + "411312FF935A47566827C467BC" + "7D825C3BE4A77C3FCC056B6B",
  );
  assert.equal(content.length, 30);
  assert.deepEqual(unprotect(METER, METER.systemTitle, content).plaintext, PLAIN);
});

test("every security control mode round-trips; a flipped bit, wrong key or wrong system title fails with DECRYPT_FAILED", () => {
  for (const sc of [0x10, 0x20, 0x30]) {
    const content = protect(METER, sc, 7, PLAIN);
    assert.deepEqual(unprotect(METER, METER.systemTitle, content).plaintext, PLAIN);
    if (sc !== 0x20) {
      const bad = content.slice();
      bad[8]! ^= 1;
      assert.throws(() => unprotect(METER, METER.systemTitle, bad), { code: "DECRYPT_FAILED" });
      const wrongKey = { ...METER, authenticationKey: new Uint8Array(16) };
      assert.throws(() => unprotect(wrongKey, METER.systemTitle, content), { code: "DECRYPT_FAILED" });
      assert.throws(() => unprotect(METER, parseHex("4D4D4D0000000001"), content), {
        code: "DECRYPT_FAILED",
      });
    }
  }
  const apdu = encodeGeneralGloCiphering(METER.systemTitle, protect(METER, 0x30, 9, PLAIN));
  const { systemTitle, content } = decodeGeneralGloCiphering(apdu);
  assert.deepEqual(unprotect(METER, systemTitle, content).plaintext, PLAIN);
});

test("HLS-GMAC: f(challenge) verifies with the right keys only, for 16- and 32-byte challenges", () => {
  for (const length of [8, 16, 32, 64]) {
    const challenge = new Uint8Array(length).map((_, i) => i * 7);
    const response = hlsGmacResponse(METER, 42, challenge);
    assert.equal(verifyHlsGmac(METER, METER.systemTitle, challenge, response), 42);
    const other = { ...METER, encryptionKey: new Uint8Array(16).fill(1) };
    assert.throws(() => verifyHlsGmac(other, METER.systemTitle, challenge, response), {
      code: "AUTH_FAILED",
    });
  }
});

test("invocation counters never go backwards: a replayed or lower counter is refused and counted", () => {
  const guard = new InvocationCounterGuard();
  guard.accept(METER.systemTitle, 5);
  guard.accept(METER.systemTitle, 6);
  assert.throws(() => guard.accept(METER.systemTitle, 6), { code: "REPLAYED_INVOCATION_COUNTER" });
  assert.throws(() => guard.accept(METER.systemTitle, 2), { code: "REPLAYED_INVOCATION_COUNTER" });
  guard.accept(parseHex("0000000000000001"), 1);
  assert.equal(guard.replaysRefused, 2);
});

test("fuzz: ciphered APDU decoding and unprotect fail only with DlmsError", () => {
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 120 }), (bytes) => {
      for (const attempt of [
        () => decodeGeneralGloCiphering(Uint8Array.of(0xdb, ...bytes)),
        () => unprotect(METER, METER.systemTitle, bytes),
      ]) {
        try {
          attempt();
        } catch (error) {
          assert.ok(error instanceof DlmsError, String(error));
        }
      }
    }),
    { numRuns: Number(process.env.AMIPROOF_FUZZ_RUNS ?? 300) },
  );
});
