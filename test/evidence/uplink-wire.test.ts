import assert from "node:assert/strict";
import { test } from "node:test";
import fc from "fast-check";
import {
  decodeAck,
  decodeAlert,
  decodeStatus,
  decodeTimeMessage,
  encodeAck,
  encodeStatus,
  isEvidenceError,
  parseUplinkTopic,
  STATUS_BYTES_MAX,
} from "../../src/evidence/index.ts";

// The concentrator ↔ head-end MQTT payloads (src/evidence/uplink-wire.ts): round trips, and decoders that
// answer arbitrary bytes with a typed BAD_FIELD or a value, nothing else.

const RUNS = Number(process.env.AMIPROOF_FUZZ_RUNS ?? 300);
const dcuId = fc.stringMatching(/^[A-Za-z0-9._-]{1,64}$/);

test("status round-trips", () => {
  fc.assert(
    fc.property(
      dcuId,
      fc.uint8Array({ minLength: 65, maxLength: 65 }),
      fc.dictionary(fc.string({ maxLength: 10 }), fc.integer()),
      (id, key, packs) => {
        const decoded = decodeStatus(encodeStatus({ dcuId: id, batchSignPublicKey: key, packs }));
        assert.equal(decoded.dcuId, id);
        assert.deepEqual(decoded.batchSignPublicKey, key);
        assert.deepEqual(decoded.packs, { ...packs });
      },
    ),
    { numRuns: RUNS },
  );
});

test("decoders: arbitrary bytes give a typed BAD_FIELD or a value, never another throw", () => {
  const inputs = fc.oneof(
    fc.uint8Array({ maxLength: 400 }),
    fc.json().map((j) => new TextEncoder().encode(j)),
    fc
      .record({
        format: fc.constantFrom("amiproof-dcu-status", "x"),
        version: fc.anything(),
        dcu_id: fc.anything(),
        batch_sign_public_key: fc.oneof(fc.stringMatching(/^[0-9a-f]{0,140}$/), fc.anything()),
        packs: fc.anything(),
        record: fc.oneof(fc.stringMatching(/^[0-9a-f]{0,140}$/), fc.anything()),
        forwarded_ms: fc.anything(),
        time_ms: fc.anything(),
      })
      .map((o) => new TextEncoder().encode(JSON.stringify(o) ?? "null")),
  );
  fc.assert(
    fc.property(inputs, (bytes) => {
      for (const decode of [decodeStatus, decodeAck, decodeAlert, decodeTimeMessage]) {
        try {
          decode(bytes);
        } catch (error) {
          assert.ok(isEvidenceError(error, "BAD_FIELD"), String(error));
        }
      }
    }),
    { numRuns: RUNS },
  );
});

test("bounds are checked before parsing", () => {
  const big = new Uint8Array(STATUS_BYTES_MAX + 1).fill(0x20);
  assert.throws(
    () => decodeStatus(big),
    (e: unknown) => isEvidenceError(e, "BAD_FIELD"),
  );
  assert.throws(
    () => decodeAck(encodeAck({ dcuId: "D", accepted: [], rejected: [] }).subarray(0, 5)),
    (e: unknown) => isEvidenceError(e, "BAD_FIELD"),
  );
});

test("uplink topics parse to (dcu_id, kind) and nothing else", () => {
  assert.deepEqual(parseUplinkTopic("ami/DCU-1/batches"), { dcuId: "DCU-1", kind: "batches" });
  assert.deepEqual(parseUplinkTopic("ami/x.y_z/alerts"), { dcuId: "x.y_z", kind: "alerts" });
  for (const topic of [
    "ami/DCU-1/other",
    "ami/DCU-1",
    "ami/a/b/batches",
    "xyz/DCU/batches",
    "ami//acks",
    "ami/+/batches",
  ]) {
    assert.equal(parseUplinkTopic(topic), null, topic);
  }
  fc.assert(
    fc.property(fc.string({ maxLength: 80 }), (topic) => {
      const parsed = parseUplinkTopic(topic);
      if (parsed !== null) assert.equal(topic, `ami/${parsed.dcuId}/${parsed.kind}`);
    }),
    { numRuns: RUNS },
  );
});
