import assert from "node:assert/strict";
import { test } from "node:test";
import fc from "fast-check";
import {
  AUTH_CAUSES,
  authenticateImage,
  type BootConfig,
  buildFirmwareImage,
  decodeBootConfig,
  decodeFirmwareImage,
  encodeBootConfig,
  FIRMWARE_COMPONENTS,
  FirmwareError,
  imageLengthAt,
  parseVersion,
  SLOTS,
  signerFromPem,
  UPDATABLE,
  versionString,
} from "../../src/meter/index.ts";
import { image, NOW, pki } from "./firmware-harness.ts";

const RUNS = Number(process.env.AMIPROOF_FUZZ_RUNS ?? 300);
const sign = signerFromPem(pki.firmwareSigner.privateKeyPem);

test("image: encode/decode round trip for any header and payload; the signature verifies; the bank length is found", () => {
  fc.assert(
    fc.property(
      fc.constantFrom(...FIRMWARE_COMPONENTS),
      fc.integer({ min: 0, max: 0xffff_ffff }),
      fc.string({ maxLength: 40 }),
      fc.integer({ min: 0, max: 2 ** 50 }),
      fc.uint8Array({ minLength: 1, maxLength: 2000 }),
      (component, version, hwTarget, expiresMs, payload) => {
        const built = buildFirmwareImage(
          { component, version, hwTarget, expiresMs },
          payload,
          pki.firmwareSigner.certificateDer,
          sign,
        );
        const decoded = decodeFirmwareImage(built.bytes);
        assert.deepEqual(decoded, built);
        authenticateImage(decoded, { caCertificateDer: pki.ca.certificateDer }, NOW);
        const bank = new Uint8Array(built.bytes.length + 100).fill(0xff);
        bank.set(built.bytes);
        assert.equal(imageLengthAt(bank), built.bytes.length);
      },
    ),
    { numRuns: Math.min(RUNS, 200) },
  );
});

test("fuzz: the image decoder and imageLengthAt throw only FirmwareError on any input, mutated or truncated", () => {
  const valid = image("app", 1_000_001).bytes;
  fc.assert(
    fc.property(
      fc.oneof(
        fc.uint8Array({ maxLength: 600 }),
        fc.tuple(fc.nat(), fc.nat(255), fc.nat()).map(([at, v, cut]) => {
          const b = valid.slice();
          b[at % b.length] = v;
          return b.subarray(0, 1 + (cut % b.length));
        }),
      ),
      (bytes) => {
        const length = imageLengthAt(bytes);
        assert.ok(length === null || (length > 0 && length <= bytes.length));
        try {
          decodeFirmwareImage(bytes);
        } catch (error) {
          assert.ok(error instanceof FirmwareError, String(error));
        }
      },
    ),
    { numRuns: RUNS },
  );
});

test("image: a short image is TRUNCATED, a flipped payload bit ERROR_CRC_MISMATCH", () => {
  const valid = image("comms", 1_000_001).bytes;
  assert.throws(() => decodeFirmwareImage(valid.subarray(0, valid.length - 10)), { code: "TRUNCATED" });
  const flipped = valid.slice();
  flipped[80]! ^= 0x01;
  assert.throws(() => decodeFirmwareImage(flipped), { code: "ERROR_CRC_MISMATCH" });
});

test("versions: MAJOR.MINOR.PATCH ↔ release counter", () => {
  assert.equal(parseVersion("2.1.0"), 2_001_000);
  assert.equal(versionString(2_001_000), "2.1.0");
  assert.equal(parseVersion("1234"), 1234);
  assert.throws(() => parseVersion("v2"), { code: "BAD_IMAGE" });
});

const plain = (value: unknown): unknown => JSON.parse(JSON.stringify(value));
const slot = fc.constantFrom(...SLOTS);
const bootConfig: fc.Arbitrary<BootConfig> = fc.record({
  app: fc.record({ slot, trial: fc.option(slot, { nil: null }), attempts: fc.nat(255) }),
  comms: fc.record({ slot, trial: fc.option(slot, { nil: null }), attempts: fc.nat(255) }),
  rollbackFlag: fc.constantFrom("NONE", "FULL", "PARTIAL"),
  wdtResets: fc.nat(255),
  staging: fc.option(
    fc.record({
      component: fc.constantFrom(...UPDATABLE),
      slot,
      imageBytes: fc.integer({ min: 0, max: 0xffff_ffff }),
      blockBytes: fc.nat(0xffff),
      identifierTag: fc.integer({ min: 0, max: 0xffff_ffff }),
      verified: fc.boolean(),
    }),
    { nil: null },
  ),
  last: fc.option(
    fc.record({
      seq: fc.integer({ min: 0, max: 0xffff_ffff }),
      kind: fc.constantFrom(
        "RECEIVED",
        "VERIFIED",
        "REFUSED",
        "ACTIVATED",
        "CONFIRMED",
        "ROLLED_BACK",
        "WDT_ROLLBACK",
        "ROLLBACK_REFUSED",
      ),
      components: fc.subarray([...UPDATABLE]),
      reason: fc.constantFrom("NONE", "FORCED_ROLLBACK", "ERROR_CRC_MISMATCH", "SIGN_AUTH_FAIL", "TRUNCATED"),
      cause: fc.constantFrom(...AUTH_CAUSES),
      fromApp: fc.option(slot, { nil: null }),
      fromComms: fc.option(slot, { nil: null }),
      toSlot: fc.option(slot, { nil: null }),
      value: fc.integer({ min: 0, max: 0xffff_ffff }),
    }),
    { nil: null },
  ),
}) as fc.Arbitrary<BootConfig>;

test("boot configuration: encode/decode round trip; it fits one dual-copy record", () => {
  fc.assert(
    fc.property(bootConfig, (config) => {
      const bytes = encodeBootConfig(config);
      assert.ok(bytes.length <= 64);
      // fast-check may build null-prototype objects: compare plain values.
      assert.deepEqual(plain(decodeBootConfig(bytes)), plain(config));
    }),
    { numRuns: RUNS },
  );
});

test("fuzz: the boot configuration decoder throws only FirmwareError", () => {
  fc.assert(
    fc.property(
      fc.oneof(
        fc.uint8Array({ maxLength: 80 }),
        fc.tuple(bootConfig, fc.nat(), fc.nat(255)).map(([config, at, v]) => {
          const b = encodeBootConfig(config);
          b[at % b.length] = v;
          return b;
        }),
      ),
      (bytes) => {
        try {
          decodeBootConfig(bytes);
        } catch (error) {
          assert.ok(error instanceof FirmwareError, String(error));
        }
      },
    ),
    { numRuns: RUNS },
  );
});

test("boot configuration: the legacy integer format still reads", () => {
  const legacy = new Uint8Array(56);
  const view = new DataView(legacy.buffer);
  [1, -1, 0, 2, 0, 2, 1].forEach((v, i) => {
    view.setBigInt64(i * 8, BigInt(v));
  });
  const config = decodeBootConfig(legacy);
  assert.deepEqual(config.app, { slot: "B", trial: null, attempts: 0 });
  assert.deepEqual(config.comms, { slot: "GOLDEN", trial: "A", attempts: 2 });
  assert.equal(config.rollbackFlag, "FULL");
});
