import { diagnosePacks } from "../diagnose.ts";
import { loopScenario } from "../loop/scenario.ts";
import { predicate } from "../scenario.ts";

// seed 002 H2-11 case 3 "PLC/RF drops at certain hours (bursty retries) — medium vs power": in the
// evening hours the backhaul loses most messages (PLC noise), the rails stay clean. Require: retries
// are recorded in the hours they happen, nothing is lost or duplicated, and the evidence routes through
// the failure-mode map (seed 003 H2-9) to "committed, not uplinked — link first", not power.

const START_MS = Date.UTC(2026, 10, 10, 17, 30);
const MINUTE = 60_000;
const NOISY: readonly [number, number][] = [
  [Date.UTC(2026, 10, 10, 18, 0), Date.UTC(2026, 10, 10, 18, 45)],
  [Date.UTC(2026, 10, 10, 20, 0), Date.UTC(2026, 10, 10, 20, 30)],
];
const HOUR = 3_600_000;

export const fieldBurstyRetries = loopScenario({
  name: "field-bursty-retries",
  description:
    "evening PLC noise: retries in the noisy hours, nothing lost, routed to link-first (not power)",
  source: "seed 002 H2-11 case 3; seed 003 H2-9 committed-not-uplinked branch",
  defaultMeters: 6,
  safeguards: [],
  startMs: START_MS,
  durationMs: 210 * MINUTE,
  options: () => ({
    readingIntervalMs: 5 * MINUTE,
    stepMs: 5_000,
    link: { latencyMs: 400, jitterMs: 400, lossRate: 0.01 },
    config: { batchAgeMaxMs: 30_000 },
  }),
  faults(world, ctx) {
    const rng = ctx.rng.fork("plc");
    for (const [from, to] of NOISY) {
      const loss = 0.5 + rng.nextFloat() * 0.3;
      world.sim.at(from, () => {
        world.link.model.lossRate = loss;
      });
      world.sim.at(to, () => {
        world.link.model.lossRate = 0.01;
      });
    }
  },
  extra(world) {
    const histogram = world.dcu.uplink.retryHistogram();
    const total = (w: (typeof histogram)[number]) => Object.values(w.byCause).reduce((a, b) => a + b, 0);
    const noisy = (w: (typeof histogram)[number]) =>
      NOISY.some(([from, to]) => w.windowStartMs < to && w.windowStartMs + HOUR > from);
    // Hourly windows: the retry spike must time-lock to the noisy hours (the discriminator of case 3);
    // the 1 % background loss and the tail of a burst may leave a few retries elsewhere.
    const noisyCounts = histogram.filter(noisy).map(total);
    const quietMax = Math.max(0, ...histogram.filter((w) => !noisy(w)).map(total));
    const noisyMin = Math.min(...noisyCounts);
    const diagnosis = diagnosePacks(world.dcu.packs());
    const uplinkFinding = diagnosis.findings.find((f) => f.branch === "COMMITTED_NOT_UPLINKED");
    return [
      predicate(
        "retries_lock_to_the_noisy_hours",
        noisyCounts.length > 0 && noisyMin >= 3 * quietMax && noisyMin > 0,
        `retries per noisy hour ${JSON.stringify(noisyCounts)}, at most ${quietMax} in any other hour`,
      ),
      predicate(
        "routed_link_first",
        uplinkFinding?.bucket === "link-first",
        uplinkFinding === undefined
          ? `no committed-not-uplinked finding (diagnosis: ${diagnosis.findings.map((f) => f.branch).join(", ") || "healthy"})`
          : `${uplinkFinding.branch} [${uplinkFinding.bucket}]: ${uplinkFinding.why}`,
      ),
    ];
  },
});
