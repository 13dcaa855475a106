import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { join } from "node:path";
import { test } from "node:test";
import fc from "fast-check";
import {
  type DataNotification,
  DlmsError,
  type DlmsKeySet,
  decodeDataNotification,
  encodeDataNotification,
  encodeDateTimeBytes,
  encodeWrapper,
  KeyStore,
  longInvokeIdAndPriority,
  PushReceiver,
  parseHex,
  protectDataNotification,
} from "../../src/dlms/index.ts";
import { dataArb } from "./arbitraries.ts";
import { TIROL_CIPHERED, TIROL_KEY, TIROL_NOTIFICATION } from "./fixtures.ts";

const RUNS = Number(process.env.AMIPROOF_FUZZ_RUNS ?? 300);

// DataNotification pushes: plain and general-glo-ciphered, the receiver's key lookup by system title,
// invocation-counter guard (replays refused and counted), and the published Kaifa/Tirol push as a
// golden vector.

const BIN = join(import.meta.dirname, "../../bin/amiproof.js");
const METER: DlmsKeySet = {
  suite: 0,
  systemTitle: Uint8Array.of(0x41, 0x4d, 0x50, 0x00, 0x00, 0x00, 0x00, 0x2a),
  encryptionKey: Uint8Array.from(Buffer.from("000102030405060708090a0b0c0d0e0f", "hex")),
  authenticationKey: Uint8Array.from(Buffer.from("d0d1d2d3d4d5d6d7d8d9dadbdcdddedf", "hex")),
  broadcastKey: Uint8Array.from(Buffer.from("f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff", "hex")),
};
const NOTIFICATION: DataNotification = {
  longInvokeId: longInvokeIdAndPriority(7, { highPriority: true }),
  dateTime: encodeDateTimeBytes({
    year: 2026,
    month: 4,
    day: 1,
    dayOfWeek: 3,
    hour: 12,
    minute: 15,
    second: 0,
    hundredths: 0,
    deviation: 0,
    clockStatus: 0,
  }),
  body: {
    type: "structure",
    value: [
      { type: "octet-string", value: Uint8Array.of(1, 0, 1, 8, 0, 255) },
      { type: "double-long-unsigned", value: 123_456 },
      {
        type: "structure",
        value: [
          { type: "integer", value: 0 },
          { type: "enum", value: 30 },
        ],
      },
    ],
  },
};

test("Long-Invoke-Id-And-Priority bits (Green Book): id in bits 0-23, flags in 28-31", () => {
  assert.equal(longInvokeIdAndPriority(7), 7);
  assert.equal(longInvokeIdAndPriority(7, { highPriority: true }), 0x80000007);
  assert.equal(longInvokeIdAndPriority(0xffffff, { confirmed: true, selfDescriptive: true }), 0x50ffffff);
  assert.equal(longInvokeIdAndPriority(1, { breakOnError: true }), 0x20000001);
  assert.throws(() => longInvokeIdAndPriority(1 << 24), { code: "BAD_VALUE" });
});

test("golden vector: the published Kaifa/Tirol push (general-glo-ciphering, SC 0x21) through the receiver", () => {
  // Source: fneur/smart-meter-tirol doc/EXAMPLE.md — the ciphered push and its decrypted DataNotification.
  const store = new KeyStore([
    {
      suite: 1, // the meter's security control byte says suite 1; its symmetric part is AES-GCM-128
      systemTitle: parseHex("4B464D1010000023"),
      encryptionKey: parseHex(TIROL_KEY),
      authenticationKey: new Uint8Array(16),
    },
  ]);
  const receiver = new PushReceiver(store);
  const received = receiver.receive(parseHex(TIROL_CIPHERED));
  assert.deepEqual(received.notification, decodeDataNotification(parseHex(TIROL_NOTIFICATION)));
  assert.equal(received.securityControl, 0x21);
  assert.equal(received.invocationCounter, 0x00295b9a);
  assert.equal(Buffer.from(received.systemTitle!).toString("hex"), "4b464d1010000023");
  // The same capture again is a replay: refused and counted.
  assert.throws(() => receiver.receive(parseHex(TIROL_CIPHERED)), { code: "REPLAYED_INVOCATION_COUNTER" });
  assert.equal(receiver.counters.replaysRefused, 1);
  assert.equal(receiver.counters.accepted, 1);
  // The published plain notification re-encodes byte for byte.
  assert.deepEqual(
    encodeDataNotification(decodeDataNotification(parseHex(TIROL_NOTIFICATION))),
    parseHex(TIROL_NOTIFICATION),
  );
});

test("a protected push round-trips; replays, tampering, unknown senders, plain and unauthenticated pushes are refused and counted", () => {
  const receiver = new PushReceiver(new KeyStore([METER]));
  const push = (invocationCounter: number, options: { securityControl?: number; broadcast?: boolean } = {}) =>
    protectDataNotification(METER, NOTIFICATION, { invocationCounter, ...options });
  const first = push(100);
  assert.equal(first[0], 0xdb);
  const received = receiver.receive(first);
  assert.deepEqual(received.notification, NOTIFICATION);
  assert.equal(received.invocationCounter, 100);
  assert.equal(received.securityControl, 0x30);
  assert.throws(() => receiver.receive(first), { code: "REPLAYED_INVOCATION_COUNTER" });
  assert.throws(() => receiver.receive(push(99)), { code: "REPLAYED_INVOCATION_COUNTER" });
  assert.deepEqual(receiver.receive(push(101)).notification, NOTIFICATION);
  // Broadcast key: key-set bit set, deciphered with the broadcast key.
  const broadcast = push(102, { broadcast: true });
  assert.equal(receiver.receive(broadcast).securityControl, 0x70);
  // A flipped ciphertext bit with a fresh counter fails the tag.
  const tampered = push(103);
  tampered[tampered.length - 20]! ^= 1;
  assert.throws(() => receiver.receive(tampered), { code: "DECRYPT_FAILED" });
  // Same push from a meter the receiver has no keys for.
  const stranger = protectDataNotification(
    { ...METER, systemTitle: Uint8Array.of(0x41, 0x4d, 0x50, 0, 0, 0, 0, 0x2b) },
    NOTIFICATION,
    { invocationCounter: 1 },
  );
  assert.throws(() => receiver.receive(stranger), {
    code: "DECRYPT_FAILED",
    message: /no keys for system title/,
  });
  // Plain pushes only with acceptPlain; encryption-only only without requireAuthentication.
  assert.throws(() => receiver.receive(encodeDataNotification(NOTIFICATION)), { code: "AUTH_FAILED" });
  assert.deepEqual(
    new PushReceiver(new KeyStore(), { acceptPlain: true }).receive(encodeDataNotification(NOTIFICATION))
      .notification,
    NOTIFICATION,
  );
  const strict = new PushReceiver(new KeyStore([METER]), { requireAuthentication: true });
  assert.throws(() => strict.receive(push(1, { securityControl: 0x20 })), { code: "AUTH_FAILED" });
  assert.equal(strict.receive(push(2)).invocationCounter, 2);
  // A ciphered APDU that is not a push, and garbage.
  assert.throws(() => receiver.receive(Uint8Array.of(0xc4, 1, 0xc1, 0, 0)), { code: "BAD_TAG" });
  assert.throws(() => receiver.receive(Uint8Array.of(0xdb, 8)), DlmsError);
  assert.deepEqual(receiver.counters, {
    received: 10,
    accepted: 3,
    malformed: 2,
    plainRefused: 1,
    unknownSender: 1,
    decryptFailed: 1,
    replaysRefused: 2,
    suiteMismatch: 0,
  });
});

test("property: DataNotification encode/decode round-trips any body; protect/receive round-trips with rising counters", () => {
  fc.assert(
    fc.property(fc.nat(0xffffff), fc.boolean(), dataArb, (id, withTime, body) => {
      const n: DataNotification = {
        longInvokeId: longInvokeIdAndPriority(id),
        dateTime: withTime ? NOTIFICATION.dateTime : null,
        body,
      };
      assert.deepEqual(decodeDataNotification(encodeDataNotification(n)), n);
    }),
    { numRuns: RUNS / 3 },
  );
  const receiver = new PushReceiver(new KeyStore([METER]));
  fc.assert(
    fc.property(dataArb, fc.integer({ min: 1, max: 1000 }), (body, step) => {
      const ic = (receiver.counters.accepted + 1) * 1000 + step;
      const n = { ...NOTIFICATION, body };
      assert.deepEqual(
        receiver.receive(protectDataNotification(METER, n, { invocationCounter: ic })).notification,
        n,
      );
    }),
    { numRuns: RUNS / 6 },
  );
});

test("fuzz: the push decoders throw only DlmsError on random and mutated bytes", () => {
  const seeds = [
    protectDataNotification(METER, NOTIFICATION, { invocationCounter: 5 }),
    encodeDataNotification(NOTIFICATION),
    parseHex(TIROL_CIPHERED),
  ];
  const store = new KeyStore([
    METER,
    {
      suite: 1,
      systemTitle: parseHex("4B464D1010000023"),
      encryptionKey: parseHex(TIROL_KEY),
      authenticationKey: new Uint8Array(16),
    },
  ]);
  const bytes = fc.oneof(
    fc.uint8Array({ maxLength: 400 }),
    fc.tuple(fc.constantFrom(...seeds), fc.nat(), fc.integer({ min: 1, max: 255 })).map(([seed, at, x]) => {
      const out = Uint8Array.from(seed);
      out[at % out.length]! ^= x;
      return out;
    }),
    fc.tuple(fc.constantFrom(...seeds), fc.nat()).map(([seed, cut]) => seed.subarray(0, cut % seed.length)),
  );
  fc.assert(
    fc.property(bytes, (input) => {
      const receiver = new PushReceiver(store, { acceptPlain: true });
      for (const run of [() => decodeDataNotification(input), () => receiver.receive(input)]) {
        try {
          run();
        } catch (error) {
          assert.ok(error instanceof DlmsError, String(error));
        }
      }
    }),
    { numRuns: RUNS * 3 },
  );
});

test("amiproof dlms decode shows a wrapper-framed, authenticated and encrypted push with the keys", () => {
  const frame = encodeWrapper({
    sourceWPort: 1,
    destinationWPort: 102,
    apdu: protectDataNotification(METER, NOTIFICATION, { invocationCounter: 77 }),
  });
  const hex = Buffer.from(frame).toString("hex");
  const run = (args: string[]) =>
    spawnSync(process.execPath, [BIN, "dlms", "decode", hex, ...args], { encoding: "utf8" });
  const withKeys = run([
    "--json",
    "--ek",
    "000102030405060708090a0b0c0d0e0f",
    "--ak",
    "d0d1d2d3d4d5d6d7d8d9dadbdcdddedf",
  ]);
  assert.equal(withKeys.status, 0, withKeys.stderr);
  const json = JSON.parse(withKeys.stdout) as {
    transport: string;
    apdu: { apdu: string; invocation_counter: number; system_title: string };
    deciphered: { apdu: { apdu: string; long_invoke_id: number; date_time: unknown } };
  };
  assert.equal(json.transport, "wrapper");
  assert.equal(json.apdu.apdu, "general-glo-ciphering");
  assert.equal(json.apdu.invocation_counter, 77);
  assert.equal(json.apdu.system_title, "414d50000000002a");
  assert.equal(json.deciphered.apdu.apdu, "data-notification");
  assert.equal(json.deciphered.apdu.long_invoke_id, 0x80000007);
  assert.match(withKeys.stdout, /"scaled":"123456 Wh"/);
});
