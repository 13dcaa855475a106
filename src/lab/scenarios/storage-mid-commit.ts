import { loopScenario } from "../loop/scenario.ts";
import { predicate } from "../scenario.ts";

// seed 003 H2-11 "Storage — power-loss mid-commit", in the loop: the concentrator's journal loses power
// during record appends and during checkpoints (a write fails after a random number of bytes, the
// unsynced tail survives as a random, possibly torn prefix), while meters are polled and batches flow to
// the head-end. Require: append-only recovery; commit_id continuity or an explicit recovery epoch; the
// head-end holds every durable commit once. Mutation `outbox_durable_before_publish`: a sealed batch is
// published before it is durable in the outbox; a cut then loses it and the re-sealed batch under the same
// batch_id is refused as equivocation.

const START_MS = Date.UTC(2026, 0, 20, 9);
const MINUTE = 60_000;

export const storageMidCommit = loopScenario({
  name: "storage-mid-commit",
  description:
    "journal cuts mid-append and mid-checkpoint with the head-end in the loop; epochs explain every restart",
  source: "seed 003 H2-5 and H2-11 Storage",
  defaultMeters: 8,
  safeguards: ["outbox_durable_before_publish"],
  startMs: START_MS,
  durationMs: 60 * MINUTE,
  // A slow backhaul keeps batches published-but-unacknowledged when the power goes: the outbox matters.
  options: () => ({
    checkpointEveryCommits: 3,
    link: { latencyMs: 3_000, jitterMs: 3_000 },
    config: { batchAgeMaxMs: 15_000 },
  }),
  faults(world, ctx) {
    const rng = ctx.rng.fork("storage");
    for (let t = START_MS + 2 * MINUTE; t < START_MS + 55 * MINUTE; t += rng.intBetween(2, 6) * MINUTE) {
      if (rng.chance(0.6)) {
        // Power lost while writing: the journal's next write fails part way (record or checkpoint).
        const bytes = rng.nextInt(3_000);
        world.sim.at(t, () => world.armStorageCut(bytes));
      } else {
        world.sim.at(t, () => world.powerCut("power cut between writes", rng.intBetween(500, 20_000)));
      }
    }
  },
  extra(world) {
    return [
      predicate(
        "cuts_happened",
        world.restarts.length > 0,
        `${world.restarts.length} restarts (${world.fatalErrors.length} from failed journal writes)`,
      ),
    ];
  },
  figures(world) {
    return { journal_write_failures: world.fatalErrors.length };
  },
});
