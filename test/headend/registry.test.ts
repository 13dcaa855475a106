import assert from "node:assert/strict";
import { test } from "node:test";
import fc from "fast-check";
import { toHex } from "../../src/evidence/index.ts";
import {
  ASSET_REGISTER_FORMAT,
  decodeAssetRegister,
  encodeAssetRegister,
  hashToken,
  isHeadendError,
  newToken,
  roleAtLeast,
} from "../../src/headend/index.ts";
import { TestDcu, TestMeter } from "./helpers.ts";

// The asset register (key provisioning) codec and the token helpers.

const RUNS = Number(process.env.AMIPROOF_FUZZ_RUNS ?? 300);

test("an asset register round-trips", () => {
  const dcu = new TestDcu("DCU-1");
  const meter = new TestMeter("MTR-1");
  const register = {
    concentrators: [{ dcuId: "DCU-1", batchSignPublicKey: dcu.publicKey }],
    meters: [
      {
        meterId: "MTR-1",
        eventSealPublicKey: meter.publicKey,
        dcuId: "DCU-1",
        transformerId: "TR-9",
        model: null,
        group: null,
      },
    ],
  };
  const decoded = decodeAssetRegister(encodeAssetRegister(register));
  assert.deepEqual(decoded, register);
});

test("a malformed register is a typed BAD_ASSET_REGISTER, never another throw", () => {
  const key = toHex(new TestMeter("MTR-1").publicKey);
  const inputs = fc.oneof(
    fc.string({ maxLength: 200 }),
    fc.json(),
    fc
      .record({
        format: fc.constantFrom(ASSET_REGISTER_FORMAT, "nope"),
        version: fc.constantFrom(1, 2, "1"),
        concentrators: fc.array(
          fc.record({
            dcu_id: fc.anything(),
            batch_sign_public_key: fc.oneof(fc.constant(key), fc.anything()),
          }),
          { maxLength: 3 },
        ),
        meters: fc.anything(),
      })
      .map((o) => JSON.stringify(o)),
  );
  fc.assert(
    fc.property(inputs, (text) => {
      try {
        decodeAssetRegister(text);
      } catch (error) {
        assert.ok(isHeadendError(error, "BAD_ASSET_REGISTER"), String(error));
      }
    }),
    { numRuns: RUNS },
  );
  assert.throws(
    () =>
      decodeAssetRegister(
        JSON.stringify({
          format: ASSET_REGISTER_FORMAT,
          version: 1,
          meters: [{ meter_id: "M", event_seal_public_key: "04ab" }],
        }),
      ),
    (e: unknown) => isHeadendError(e, "BAD_ASSET_REGISTER") && /P-256/.test(e.message),
  );
});

test("tokens: random, hashed for storage, roles ordered viewer < operator < admin", () => {
  let n = 0;
  const token = newToken((count) => new Uint8Array(count).fill(++n));
  assert.match(token, /^amp_[0-9a-f]{64}$/);
  assert.equal(hashToken(token).length, 64);
  assert.notEqual(hashToken(token), token);
  assert.ok(roleAtLeast("admin", "operator"));
  assert.ok(roleAtLeast("operator", "operator"));
  assert.ok(!roleAtLeast("viewer", "operator"));
  assert.ok(!roleAtLeast("operator", "admin"));
});
