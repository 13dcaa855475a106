import { loopScenario } from "../loop/scenario.ts";
import { predicate } from "../scenario.ts";

// seed 003 H2-11 "Backhaul — retry storms": weak coverage (loss, latency, a 2.4 kbps window), forced
// detach/attach (partitions), broker restarts that lose in-flight messages and acks, and a head-end
// store that sometimes fails its commit. Require: the retry histogram grows, buffering stays bounded,
// the uplink ACK list reconciles without duplication.

const START_MS = Date.UTC(2026, 2, 3, 6);
const MINUTE = 60_000;

export const backhaulRetryStorm = loopScenario({
  name: "backhaul-retry-storm",
  description:
    "loss, 2.4 kbps, partitions, broker restarts and failing head-end commits; acks reconcile, nothing duplicated",
  source: "seed 003 H2-7 and H2-11 Backhaul; seed 002 H2-11 case 3 (bursty retries)",
  defaultMeters: 6,
  safeguards: ["hes_ack_after_commit"],
  startMs: START_MS,
  durationMs: 90 * MINUTE,
  options: () => ({
    link: { latencyMs: 250, jitterMs: 300, lossRate: 0.04 },
    hesCommitFailRate: 0.15,
    config: { batchAgeMaxMs: 30_000, batchRecordsMax: 64 },
  }),
  faults(world, ctx) {
    const rng = ctx.rng.fork("backhaul");
    const sim = world.sim;
    // Two forced detaches of 4–15 min.
    for (let i = 0; i < 2; i++) {
      const at = START_MS + (10 + i * 40 + rng.nextInt(15)) * MINUTE;
      sim.at(at, () => world.linkDown("partition"));
      sim.at(at + rng.intBetween(4, 12) * MINUTE, () => world.linkUp());
    }
    // Broker restarts: 5–40 s down, everything in flight lost.
    for (let i = 0; i < 3; i++) {
      const at = START_MS + rng.intBetween(5, 80) * MINUTE + rng.nextInt(MINUTE);
      sim.at(at, () => world.linkDown("broker_restart"));
      sim.at(at + rng.intBetween(5_000, 40_000), () => world.linkUp());
    }
    // Weak coverage: 20 minutes at 2.4 kbps with heavier loss.
    const weakAt = START_MS + rng.intBetween(20, 60) * MINUTE;
    sim.at(weakAt, () => {
      world.link.model.bitsPerSecond = 2_400;
      world.link.model.lossRate = 0.12;
    });
    sim.at(weakAt + 20 * MINUTE, () => {
      world.link.model.bitsPerSecond = null;
      world.link.model.lossRate = 0.04;
    });
  },
  extra(world) {
    const u = world.concentratorDown ? null : world.dcu.uplink.counters;
    const histogram = world.concentratorDown ? [] : world.dcu.uplink.retryHistogram();
    const retries = u === null ? 0 : u.batchRetries + u.alertRetries;
    const windows = histogram.filter((w) => Object.values(w.byCause).some((n) => n > 0)).length;
    const injected =
      world.link.counters.uplinkLost +
      world.link.counters.downlinkLost +
      world.link.counters.droppedByOutage +
      world.hesCommitFaults;
    return [
      predicate(
        "retry_histogram_grows",
        injected === 0 || (retries > 0 && windows > 0),
        `${injected} messages lost or refused, ${retries} retries over ${windows} histogram windows`,
      ),
    ];
  },
  figures(world) {
    return { hes_commit_faults: world.hesCommitFaults, partitions: world.link.counters.partitions };
  },
});
