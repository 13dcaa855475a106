import assert from "node:assert/strict";
import { test } from "node:test";
import { findScenario, runScenario } from "../../src/lab/index.ts";

// Issue 9 acceptance 3: `amiproof lab run fleet-rollback` — a fleet rollback over ≥ 100 concentrators,
// staggered over 60 minutes, against an unstaggered start in the same run. The default suite runs 20,000
// meters (20 concentrators); AMIPROOF_LAB_FULL=1 runs the scenario's full 100,000 meters behind 100.

const FULL = process.env.AMIPROOF_LAB_FULL === "1";
const METERS = FULL ? 100_000 : 20_000;

test(`fleet-rollback: ${METERS} meters, every predicate holds; staggering keeps concentrators within their limit`, async () => {
  const scenario = findScenario("fleet-rollback");
  assert.ok(scenario !== undefined, "registered");
  const report = await runScenario(scenario, { seed: 3, meters: METERS });
  const failed = report.predicates.filter((p) => !p.passed);
  assert.deepEqual(failed, []);
  const f = report.figures;
  assert.equal(f.concentrators, METERS / 1000);
  assert.equal(f.commands, METERS);
  assert.equal(f.staggered_confirmed, METERS);
  assert.ok((f.staggered_executed_peak_per_dcu as number) <= (f.session_limit_per_dcu as number));
  assert.ok(
    (f.unstaggered_attempted_peak_per_dcu as number) > 100,
    "all at once: hundreds of sessions per concentrator",
  );
  assert.ok((f.unstaggered_failed as number) > 0, "all at once: meters give up after repeated collisions");
  assert.ok(
    (f.staggered_completion_minutes as number) <= 60 + 30 + 1,
    "done within the window plus one gas wake cycle",
  );
});

test("fleet-rollback: without the stagger the same run fails its session predicate", async () => {
  const scenario = findScenario("fleet-rollback")!;
  const report = await runScenario(scenario, { seed: 3, meters: 5_000, mutations: ["stagger"] });
  assert.equal(report.passed, false);
  const sessions = report.predicates.find((p) => p.name === "sessions_within_limit")!;
  assert.equal(sessions.passed, false, sessions.detail);
});
