import assert from "node:assert/strict";
import { test } from "node:test";
import fc from "fast-check";
import {
  ACK_BYTES_MAX,
  ACK_ENTRIES_MAX,
  checkDcuId,
  decodeAck,
  decodeAlert,
  decodeTimeMessage,
  encodeAck,
  encodeAlert,
  encodeTimeMessage,
  isConcentratorError,
} from "../../src/concentrator/index.ts";

const RUNS = Number(process.env.AMIPROOF_FUZZ_RUNS ?? 300);
const id = fc.integer({ min: 1, max: Number.MAX_SAFE_INTEGER });

test("ack round-trips", () => {
  fc.assert(
    fc.property(
      fc.stringMatching(/^[A-Za-z0-9._-]{1,64}$/),
      fc.array(fc.tuple(id, id, fc.nat({ max: 1_000_000 })), { maxLength: 20 }),
      fc.array(fc.tuple(id, fc.string({ minLength: 1, maxLength: 200 })), { maxLength: 5 }),
      (dcuId, accepted, rejected) => {
        const ack = {
          dcuId,
          accepted: accepted.map(([batchId, first, span]) => ({
            batchId,
            commitIdFirst: Math.min(first, Number.MAX_SAFE_INTEGER - span),
            commitIdLast: Math.min(first, Number.MAX_SAFE_INTEGER - span) + span,
          })),
          rejected: rejected.map(([batchId, reason]) => ({ batchId, reason })),
        };
        assert.deepEqual(decodeAck(encodeAck(ack)), ack);
      },
    ),
    { numRuns: RUNS },
  );
});

test("decodeAck: arbitrary bytes give a typed BAD_ACK or an ack, never another throw", () => {
  fc.assert(
    fc.property(
      fc.oneof(
        fc.uint8Array({ maxLength: 300 }),
        fc.json().map((j) => new TextEncoder().encode(j)),
        fc
          .record({ dcu_id: fc.anything(), accepted: fc.anything(), rejected: fc.anything() })
          .map((o) => new TextEncoder().encode(JSON.stringify(o) ?? "null")),
      ),
      (bytes) => {
        try {
          decodeAck(bytes);
        } catch (error) {
          assert.ok(isConcentratorError(error, "BAD_ACK"), String(error));
        }
      },
    ),
    { numRuns: RUNS },
  );
});

test("decodeAck refuses oversize payloads and lists before parsing them", () => {
  assert.throws(() => decodeAck(new Uint8Array(ACK_BYTES_MAX + 1)), /BAD_ACK/);
  const many = {
    dcu_id: "D",
    accepted: Array.from({ length: ACK_ENTRIES_MAX + 1 }, (_, i) => ({
      batch_id: i + 1,
      commit_id_first: 1,
      commit_id_last: 1,
    })),
  };
  assert.throws(() => decodeAck(new TextEncoder().encode(JSON.stringify(many))), /at most/);
  assert.throws(
    () =>
      decodeAck(
        new TextEncoder().encode(
          JSON.stringify({ dcu_id: "D", accepted: [{ batch_id: 1, commit_id_first: 5, commit_id_last: 4 }] }),
        ),
      ),
    /empty/,
  );
});

test("time and alert messages round-trip; garbage is a typed error", () => {
  assert.deepEqual(decodeTimeMessage(encodeTimeMessage({ timeMs: 1_767_225_600_000 })), {
    timeMs: 1_767_225_600_000,
  });
  assert.throws(() => decodeTimeMessage(new TextEncoder().encode('{"time_ms":-1}')), /BAD_TIME/);
  const alert = {
    dcuId: "D",
    meterId: "M",
    record: new Uint8Array([1, 2, 3]),
    forwardedMs: 5,
    timeQuality: "SYNCED",
  };
  assert.deepEqual(decodeAlert(encodeAlert(alert)), alert);
  assert.throws(() => decodeAlert(new TextEncoder().encode('{"dcu_id":"D"}')), /BAD_ALERT/);
});

test("a dcu id is exactly one MQTT topic level", () => {
  checkDcuId("DCU-17.a_b");
  for (const bad of ["", "a/b", "+", "#", "x".repeat(65), "é"])
    assert.throws(() => checkDcuId(bad), /BAD_CONFIG/);
});
