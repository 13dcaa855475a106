import assert from "node:assert/strict";
import { test } from "node:test";
import fc from "fast-check";
import {
  backoffCeilingMs,
  backoffDelayMs,
  UPLINK_BACKOFF,
  UPLINK_RETRY_DELAY_MS_BASE,
  UPLINK_RETRY_DELAY_MS_MAX,
} from "../../src/concentrator/index.ts";
import { SeededRandom } from "../../src/evidence/index.ts";

const RUNS = Number(process.env.AMIPROOF_FUZZ_RUNS ?? 300);

test("back-off delay stays in [ceiling/2, ceiling] and the ceiling never exceeds the cap", () => {
  fc.assert(
    fc.property(fc.integer({ min: 1, max: 10_000 }), fc.integer(), (attempt, seed) => {
      const delay = backoffDelayMs(attempt, UPLINK_BACKOFF, new SeededRandom(seed));
      const ceiling = backoffCeilingMs(attempt, UPLINK_BACKOFF);
      assert.ok(ceiling <= UPLINK_RETRY_DELAY_MS_MAX);
      assert.ok(
        delay >= Math.floor(ceiling / 2) && delay <= ceiling,
        `attempt ${attempt}: ${delay} vs ${ceiling}`,
      );
      assert.ok(Number.isInteger(delay) && delay > 0);
    }),
    { numRuns: RUNS },
  );
});

test("back-off doubles from the base up to the cap", () => {
  assert.equal(backoffCeilingMs(1, UPLINK_BACKOFF), UPLINK_RETRY_DELAY_MS_BASE);
  assert.equal(backoffCeilingMs(2, UPLINK_BACKOFF), 2 * UPLINK_RETRY_DELAY_MS_BASE);
  assert.equal(backoffCeilingMs(4, UPLINK_BACKOFF), 8 * UPLINK_RETRY_DELAY_MS_BASE);
  assert.equal(backoffCeilingMs(7, UPLINK_BACKOFF), UPLINK_RETRY_DELAY_MS_MAX);
  assert.equal(backoffCeilingMs(1_000_000, UPLINK_BACKOFF), UPLINK_RETRY_DELAY_MS_MAX);
});

test("jitter spreads a fleet that failed together (not all on the same delay)", () => {
  const random = new SeededRandom("fleet");
  const delays = new Set(Array.from({ length: 100 }, () => backoffDelayMs(6, UPLINK_BACKOFF, random)));
  assert.ok(delays.size > 50, `${delays.size} distinct delays out of 100`);
});
