import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import {
  FileSecureElement,
  MemorySecureElement,
  p256KeyPairFromSeed,
  p256Verify,
  toHex,
} from "../../src/evidence/index.ts";

test("signatures verify with the purpose's public key only, and every key operation is counted", () => {
  const se = new MemorySecureElement("dcu-1");
  const message = new TextEncoder().encode("batch 1");
  const signature = se.sign("batch_sign", message);
  assert.equal(signature.length, 64);
  assert.ok(p256Verify(se.publicKey("batch_sign"), message, signature));
  assert.equal(p256Verify(se.publicKey("event_seal"), message, signature), false);
  assert.equal(p256Verify(se.publicKey("batch_sign"), new TextEncoder().encode("batch 2"), signature), false);
  se.incrementCounter("alert");
  assert.equal(se.keyOpAuditCount, 2);
});

test("monotonic counters never decrease", () => {
  const se = new MemorySecureElement("m");
  assert.equal(se.readCounter("fw"), 0);
  assert.equal(se.incrementCounter("fw"), 1);
  assert.equal(se.advanceCounter("fw", 5), 5);
  assert.equal(se.advanceCounter("fw", 5), 5);
  assert.throws(() => se.advanceCounter("fw", 4), { name: "EvidenceError", code: "COUNTER_DECREASE" });
  assert.equal(se.readCounter("fw"), 5);
});

test("seeded elements are reproducible (the lab replays a run from its seed)", () => {
  const a = new MemorySecureElement("meter-9", Uint8Array.of(7));
  const b = new MemorySecureElement("meter-9", Uint8Array.of(7));
  const c = new MemorySecureElement("meter-9", Uint8Array.of(8));
  assert.equal(toHex(a.publicKey("event_seal")), toHex(b.publicKey("event_seal")));
  assert.notEqual(toHex(a.publicKey("event_seal")), toHex(c.publicKey("event_seal")));
  assert.equal(toHex(p256KeyPairFromSeed(Uint8Array.of(1)).publicKey).length, 130);
});

test("file-backed element keeps keys (mode 0600) and counters across restarts", () => {
  const dir = mkdtempSync(join(tmpdir(), "amiproof-se-"));
  const first = FileSecureElement.open(dir, "dcu-7");
  const publicKey = first.publicKey("batch_sign");
  first.incrementCounter("batch");
  first.incrementCounter("batch");
  assert.equal(statSync(join(dir, "keys.json")).mode & 0o777, 0o600);
  assert.ok(!readFileSync(join(dir, "counters.json"), "utf8").includes("PRIVATE"));
  const second = FileSecureElement.open(dir, "dcu-7");
  assert.equal(toHex(second.publicKey("batch_sign")), toHex(publicKey));
  assert.equal(second.readCounter("batch"), 2);
  assert.throws(() => second.advanceCounter("batch", 1), { code: "COUNTER_DECREASE" });
  assert.throws(() => FileSecureElement.open(dir, "dcu-8"), { code: "BAD_KEY" });
});
