import { loopScenario } from "../loop/scenario.ts";
import { predicate } from "../scenario.ts";

// seed 003 H2-11 "EMC/Surge — event correlation": ESD/EFT/surge bursts at recorded instants corrupt
// frames on every port for tens of seconds, each with a power-rail marker; one surge resets the
// concentrator. Require: error bursts align with the event markers (no error outside a burst), no silent
// data loss, the recovery path logged.

const START_MS = Date.UTC(2026, 5, 21, 14);
const MINUTE = 60_000;

interface Burst {
  fromMs: number;
  toMs: number;
}
const bursts = new WeakMap<object, Burst[]>();

export const emcSurge = loopScenario({
  name: "emc-surge",
  description:
    "surge bursts corrupt every port at recorded instants; errors align with markers, no silent loss",
  source: "seed 003 H2-9 (all meters drop together) and H2-11 EMC/Surge",
  defaultMeters: 8,
  safeguards: [],
  startMs: START_MS,
  durationMs: 60 * MINUTE,
  options: () => ({ config: { batchAgeMaxMs: 20_000 } }),
  faults(world, ctx) {
    const rng = ctx.rng.fork("emc");
    const list: Burst[] = [];
    bursts.set(world, list);
    let resetDone = false;
    for (let t = START_MS + 4 * MINUTE; t < START_MS + 55 * MINUTE; t += rng.intBetween(5, 12) * MINUTE) {
      const burst = { fromMs: t, toMs: t + rng.intBetween(20_000, 90_000) };
      list.push(burst);
      world.reader.windows.push({ ...burst, port: null, frameCrcRate: 0.8, label: `surge at ${t}` });
      world.sim.at(t, () => world.powerSample({ droop: true, brownout: true }));
      if (!resetDone && rng.chance(0.4)) {
        resetDone = true;
        world.sim.at(t + 1_000, () => world.powerCut("surge reset", rng.intBetween(2_000, 10_000)));
      }
    }
  },
  extra(world) {
    const list = bursts.get(world) as Burst[];
    const outside = world.reader.injected.find(
      (f) => !list.some((b) => f.atMs >= b.fromMs && f.atMs < b.toMs),
    );
    const perBurst = list.map(
      (b) => world.reader.injected.filter((f) => f.atMs >= b.fromMs && f.atMs < b.toMs).length,
    );
    // Counted errors: every generation's packs (the counters restart with the process).
    const packs = [...world.packsAtCut, world.dcu.packs()] as {
      interface: { frame_crc_fail: number };
      power: { reset_reason: string };
    }[];
    const counted = packs.reduce((sum, p) => sum + p.interface.frame_crc_fail, 0);
    const final = packs[packs.length - 1]?.power.reset_reason;
    return [
      predicate(
        "error_bursts_align_with_markers",
        outside === undefined && counted === world.reader.injected.length,
        outside !== undefined
          ? `frame error at +${(outside.atMs - START_MS) / 1000} s outside every surge window`
          : `${counted} frame_crc_fail counted for ${world.reader.injected.length} injected, per burst ${JSON.stringify(perBurst)}`,
      ),
      predicate(
        "recovery_path_logged",
        world.restarts.length === 0 || final === "UNCLEAN_RESTART",
        `${world.restarts.length} surge resets; reset_reason ${final}`,
      ),
    ];
  },
  figures(world) {
    return {
      surge_bursts: (bursts.get(world) as Burst[]).length,
      frame_errors_injected: world.reader.injected.length,
    };
  },
});
