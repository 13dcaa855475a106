import assert from "node:assert/strict";
import { test } from "node:test";
import { runScenario, SCENARIOS } from "../../src/lab/index.ts";

// `npm run test:lab`: every scenario on 20 random seeds (printed, so a failure replays exactly).
const SEEDS = Number(process.env.AMIPROOF_LAB_SEEDS ?? 20);

for (const scenario of SCENARIOS) {
  test(`${scenario.name} on ${SEEDS} random seeds`, async () => {
    for (let i = 0; i < SEEDS; i++) {
      const seed = Math.floor(Math.random() * 2 ** 31);
      const report = await runScenario(scenario, { seed });
      const failed = report.predicates.find((p) => !p.passed);
      assert.equal(failed, undefined, `seed ${seed}: ${failed?.name}: ${failed?.detail}`);
    }
  });
}
