import assert from "node:assert/strict";
import { test } from "node:test";
import { runScenario, SCENARIOS, Simulation } from "../../src/lab/index.ts";

const SMALL_FLEET = 6;
/** In-loop scenarios run the whole concentrator + head-end: their replay checks use a smaller fleet. */
const LOOP_REPLAY_FLEET = 3;

for (const scenario of SCENARIOS) {
  test(`${scenario.name}: every predicate holds on the default seed`, async () => {
    const report = await runScenario(scenario, {
      seed: 1,
      meters: Math.min(SMALL_FLEET, scenario.defaultMeters),
    });
    const failed = report.predicates.filter((p) => !p.passed);
    assert.deepEqual(failed, [], JSON.stringify(failed));
    assert.ok(report.predicates.length > 0);
  });

  test(`${scenario.name}: same seed → identical JSON; another seed → another run`, async () => {
    const meters = Math.min(scenario.inLoop ? LOOP_REPLAY_FLEET : SMALL_FLEET, scenario.defaultMeters);
    const a = JSON.stringify(await runScenario(scenario, { seed: 7, meters }));
    const b = JSON.stringify(await runScenario(scenario, { seed: 7, meters }));
    assert.equal(a, b);
    const c = JSON.stringify(await runScenario(scenario, { seed: 8, meters }));
    assert.notEqual(a, c);
  });

  for (const safeguard of scenario.safeguards) {
    test(`${scenario.name}: switching off ${safeguard} makes it fail`, async () => {
      const report = await runScenario(scenario, {
        seed: 1,
        meters: Math.min(SMALL_FLEET, scenario.defaultMeters),
        mutations: [safeguard],
      });
      assert.equal(report.passed, false, `${safeguard} off, yet every predicate held`);
    });
  }
}

test("at least three safeguards are covered by mutation checks across the scenarios", () => {
  const safeguards = new Set(SCENARIOS.flatMap((s) => s.safeguards));
  assert.ok(safeguards.size >= 3, `only ${[...safeguards].join(", ")}`);
});

test("the head-end ack-before-commit mutation fails exactly the ACK-reconciles predicate family", async () => {
  const scenario = SCENARIOS.find((s) => s.name === "backhaul-retry-storm");
  assert.ok(scenario !== undefined);
  const report = await runScenario(scenario, { seed: 1, meters: 4, mutations: ["hes_ack_after_commit"] });
  const failed = report.predicates.filter((p) => !p.passed).map((p) => p.name);
  assert.ok(failed.includes("ack_list_reconciles"), `failed: ${failed.join(", ")}`);
  const ack = report.predicates.find((p) => p.name === "ack_list_reconciles");
  assert.match(ack?.detail ?? "", /acknowledged to the concentrator but not in the head-end store/);
});

test("every seed 003 H2-11 validation item and the seed 002 field cases have an in-loop scenario", () => {
  const loop = SCENARIOS.filter((s) => s.inLoop).map((s) => s.source);
  for (const item of ["Power", "Interfaces", "Storage", "Backhaul", "Security", "Time", "EMC/Surge"]) {
    assert.ok(
      loop.some((source) => source.includes(`H2-11 ${item}`)),
      `no in-loop scenario for seed 003 H2-11 ${item}`,
    );
  }
  for (const fieldCase of ["case 3", "case 6"]) {
    assert.ok(
      loop.some((source) => source.includes(`seed 002 H2-11 ${fieldCase}`)),
      fieldCase,
    );
  }
});

test("the scheduler runs events in time order, ties in insertion order, and stops at the horizon", () => {
  const sim = new Simulation(1, 0);
  const order: string[] = [];
  sim.at(20, () => order.push("c"));
  sim.at(10, () => order.push("a"));
  sim.at(10, () => order.push("b"));
  sim.every(15, 5, (now) => {
    order.push(`tick@${now}`);
    return now < 30;
  });
  sim.at(100, () => order.push("late"));
  assert.equal(sim.nextEventMs(), 5);
  sim.runUntil(50);
  assert.deepEqual(order, ["tick@5", "a", "b", "c", "tick@20", "tick@35"]);
  assert.equal(sim.nowMs, 50);
  assert.equal(sim.pending, 1);
  assert.equal(sim.nextEventMs(), 100);
});
