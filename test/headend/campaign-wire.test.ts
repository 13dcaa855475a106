import assert from "node:assert/strict";
import { test } from "node:test";
import fc from "fast-check";
import {
  decodeFirmwareJob,
  decodeFirmwareProgress,
  decodeRollbackCommand,
  decodeRollbackResult,
  EvidenceError,
  encodeFirmwareJob,
  encodeFirmwareProgress,
  encodeRollbackCommand,
  encodeRollbackResult,
  FIRMWARE_JOB_BYTES_MAX,
  type FirmwareCommand,
  type JobReport,
} from "../../src/evidence/index.ts";

// The campaign wire formats (src/evidence/campaign-wire.ts): round trips, and decoders that answer any
// input with a value or an EvidenceError, nothing else.

const RUNS = Number(process.env.AMIPROOF_FUZZ_RUNS ?? 300);
const id = fc.stringMatching(/^[A-Za-z0-9._:-]{1,64}$/);
const checksum = fc.uint8Array({ minLength: 32, maxLength: 32 }).map((b) => Buffer.from(b).toString("hex"));
const ms = fc.integer({ min: 0, max: 2 ** 52 });
const command: fc.Arbitrary<FirmwareCommand> = fc.oneof(
  fc.record({
    meterId: id,
    action: fc.constant("update" as const),
    targetChecksum: checksum,
    startAtMs: ms,
    auth: fc.constant(null),
  }),
  fc.record({
    meterId: id,
    action: fc.constantFrom("rollback_full" as const, "rollback_app" as const),
    targetChecksum: checksum,
    startAtMs: ms,
    auth: fc.record({
      otp: fc.uint8Array({ minLength: 32, maxLength: 32 }),
      otpCounter: ms,
      otpExpiresMs: ms,
    }),
  }),
);
const report: fc.Arbitrary<JobReport> = fc
  .record({
    meterId: id,
    state: fc.constantFrom("transferring", "verifying", "activating", "done", "failed" as const),
    reason: fc.option(fc.string({ minLength: 1, maxLength: 64 }), { nil: null }),
    blocksTotal: fc.integer({ min: 0, max: 4096 }),
    activeChecksum: fc.option(checksum, { nil: null }),
    firmwareId: fc.option(fc.string({ minLength: 1, maxLength: 128 }), { nil: null }),
    atMs: ms,
  })
  .chain((r) => fc.integer({ min: 0, max: r.blocksTotal }).map((blocksDone) => ({ ...r, blocksDone })));

function typed(fn: () => unknown): void {
  try {
    fn();
  } catch (error) {
    if (!(error instanceof EvidenceError)) throw error;
  }
}

test("firmware job messages round-trip", () => {
  fc.assert(
    fc.property(
      id,
      id,
      fc.constantFrom("none", "graceful", "forced" as const),
      fc.array(command, { maxLength: 8 }),
      fc.array(
        fc.record({
          checksum,
          component: fc.constantFrom("app", "comms" as const),
          version: fc.integer({ min: 0, max: 0xffff_ffff }),
          bytes: fc.uint8Array({ minLength: 1, maxLength: 300 }),
        }),
        { maxLength: 2 },
      ),
      (campaignId, dcuId, cancel, commands, images) => {
        const message = { campaignId, dcuId, cancel, commands, images };
        assert.deepEqual(decodeFirmwareJob(encodeFirmwareJob(message)), structuredClone(message));
      },
    ),
    { numRuns: RUNS },
  );
});

test("progress messages round-trip", () => {
  fc.assert(
    fc.property(id, id, fc.array(report, { maxLength: 8 }), (campaignId, dcuId, reports) => {
      const message = { campaignId, dcuId, reports };
      assert.deepEqual(decodeFirmwareProgress(encodeFirmwareProgress(message)), structuredClone(message));
    }),
    { numRuns: RUNS },
  );
});

test("rollback command and result (the DLMS parameter and answer) round-trip", () => {
  fc.assert(
    fc.property(
      fc.stringMatching(/^[A-Za-z0-9-]{1,40}$/),
      fc.constantFrom("rollback_full", "rollback_app" as const),
      checksum,
      ms,
      ms,
      fc.uint8Array({ minLength: 32, maxLength: 32 }),
      (meterId, action, targetChecksum, expiresMs, counter, otp) => {
        const c = { meterId, action, targetChecksum, expiresMs, counter, otp };
        assert.deepEqual(decodeRollbackCommand(encodeRollbackCommand(c)), structuredClone(c));
      },
    ),
    { numRuns: RUNS },
  );
  for (const r of [
    { outcome: "applied" as const, reason: "", runningChecksum: "ab".repeat(32) },
    { outcome: "refused" as const, reason: "OTP_REPLAY", runningChecksum: null },
    { outcome: "already_golden" as const, reason: "", runningChecksum: "01".repeat(32) },
  ]) {
    assert.deepEqual(decodeRollbackResult(encodeRollbackResult(r)), r);
  }
});

test("decoders: arbitrary and mutated input gives a value or an EvidenceError, never another throw", () => {
  const sample = encodeFirmwareJob({
    campaignId: "C1",
    dcuId: "DCU-1",
    cancel: "none",
    images: [],
    commands: [
      {
        meterId: "M1",
        action: "rollback_full",
        targetChecksum: "ab".repeat(32),
        startAtMs: 5,
        auth: { otp: new Uint8Array(32), otpCounter: 9, otpExpiresMs: 10 },
      },
    ],
  });
  const inputs = fc.oneof(
    fc.uint8Array({ maxLength: 400 }),
    fc.json().map((j) => new TextEncoder().encode(j)),
    fc
      .record({
        campaign_id: fc.anything(),
        dcu_id: fc.oneof(id, fc.anything()),
        cancel: fc.oneof(fc.constantFrom("none", "forced"), fc.anything()),
        images: fc.anything(),
        commands: fc.anything(),
        reports: fc.anything(),
      })
      .map((o) => new TextEncoder().encode(JSON.stringify(o))),
    fc.tuple(fc.nat({ max: sample.length - 1 }), fc.integer({ min: 0, max: 255 })).map(([at, byte]) => {
      const copy = sample.slice();
      copy[at] = byte;
      return copy;
    }),
  );
  fc.assert(
    fc.property(inputs, (bytes) => {
      typed(() => decodeFirmwareJob(bytes));
      typed(() => decodeFirmwareProgress(bytes));
      typed(() => decodeRollbackCommand(bytes));
      typed(() => decodeRollbackResult(bytes));
    }),
    { numRuns: RUNS * 3 },
  );
  assert.throws(() => decodeFirmwareJob(new Uint8Array(FIRMWARE_JOB_BYTES_MAX + 1)), EvidenceError);
  // A rollback command without its OTP is refused by the decoder.
  const bare = JSON.parse(new TextDecoder().decode(sample));
  delete bare.commands[0].otp;
  assert.throws(() => decodeFirmwareJob(new TextEncoder().encode(JSON.stringify(bare))), /OTP/);
});
