import assert from "node:assert/strict";
import { generateKeyPairSync } from "node:crypto";
import { test } from "node:test";
import {
  checkKeySet,
  cipherContext,
  type DlmsKeySet,
  KeyStore,
  keySetOf,
  protect,
  unprotect,
} from "../../src/dlms/index.ts";

// The key-set abstraction that server, client and push receiver share, and the line it draws for suite 1.

const KEYS: DlmsKeySet = {
  suite: 0,
  systemTitle: Uint8Array.of(0x41, 0x4d, 0x50, 0, 0, 0, 0, 1),
  encryptionKey: new Uint8Array(16).fill(1),
  authenticationKey: new Uint8Array(16).fill(2),
  broadcastKey: new Uint8Array(16).fill(3),
};

test("key sets are checked against their suite: lengths, suite 2 refused by name, suite 1 keys must be P-256", () => {
  assert.equal(checkKeySet(KEYS), KEYS);
  assert.throws(() => checkKeySet({ ...KEYS, encryptionKey: new Uint8Array(32) }), {
    code: "BAD_LENGTH",
    message: /encryption key of 32 bytes; suite 0 uses 16/,
  });
  assert.throws(() => checkKeySet({ ...KEYS, systemTitle: new Uint8Array(7) }), { code: "BAD_LENGTH" });
  assert.throws(() => checkKeySet({ ...KEYS, suite: 2 }), { code: "UNSUPPORTED", message: /suite 2/ });
  const pair = generateKeyPairSync("ec", { namedCurve: "P-256" });
  const asymmetric = {
    signingKey: pair.privateKey,
    peerSigningKeys: new Map([["414d500000000002", pair.publicKey]]),
  };
  assert.equal(checkKeySet({ ...KEYS, suite: 1, asymmetric }).suite, 1);
  assert.throws(() => checkKeySet({ ...KEYS, asymmetric }), { code: "BAD_VALUE", message: /suite 0 has no/ });
  // Keys of another curve or the wrong half of the pair are refused.
  const p384 = generateKeyPairSync("ec", { namedCurve: "P-384" });
  assert.throws(
    () => checkKeySet({ ...KEYS, suite: 1, asymmetric: { ...asymmetric, signingKey: p384.privateKey } }),
    {
      code: "BAD_VALUE",
      message: /P-256 private key/,
    },
  );
  assert.throws(
    () =>
      checkKeySet({
        ...KEYS,
        suite: 1,
        asymmetric: { ...asymmetric, peerSigningKeys: new Map([["414d500000000002", pair.privateKey]]) },
      }),
    { code: "BAD_VALUE", message: /P-256 public keys/ },
  );
  // Suite 1's symmetric part is AES-GCM-128 like suite 0.
  assert.equal(checkKeySet({ ...KEYS, suite: 1 }).suite, 1);
});

test("cipherContext picks the unicast or broadcast key; keySetOf adopts the older SecurityContext", () => {
  const unicast = cipherContext(KEYS);
  const broadcast = cipherContext(KEYS, "broadcast");
  assert.deepEqual(unicast.encryptionKey, KEYS.encryptionKey);
  assert.deepEqual(broadcast.encryptionKey, KEYS.broadcastKey);
  const sealed = protect(broadcast, 0x30, 9, Uint8Array.of(1, 2, 3));
  assert.deepEqual(unprotect(broadcast, KEYS.systemTitle, sealed).plaintext, Uint8Array.of(1, 2, 3));
  assert.throws(() => unprotect(unicast, KEYS.systemTitle, sealed), { code: "DECRYPT_FAILED" });
  const { broadcastKey: _unused, ...noBroadcast } = KEYS;
  assert.throws(() => cipherContext(noBroadcast, "broadcast"), {
    code: "BAD_VALUE",
    message: /no broadcast key/,
  });
  assert.deepEqual(keySetOf(unicast), {
    suite: 0,
    systemTitle: KEYS.systemTitle,
    encryptionKey: KEYS.encryptionKey,
    authenticationKey: KEYS.authenticationKey,
  });
});

test("KeyStore finds a peer's keys by system title and refuses a bad key set on entry", () => {
  const other = { ...KEYS, systemTitle: Uint8Array.of(0x41, 0x4d, 0x50, 0, 0, 0, 0, 2) };
  const store = new KeyStore([KEYS, other]);
  assert.equal(store.size, 2);
  assert.equal(store.keysFor(Uint8Array.of(0x41, 0x4d, 0x50, 0, 0, 0, 0, 2)), other);
  assert.equal(store.keysFor(new Uint8Array(8)), null);
  assert.throws(() => store.add({ ...KEYS, authenticationKey: new Uint8Array(3) }), { code: "BAD_LENGTH" });
  assert.equal(store.size, 2);
});
