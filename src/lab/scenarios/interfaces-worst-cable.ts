import { loopScenario } from "../loop/scenario.ts";
import { predicate } from "../scenario.ts";

// seed 003 H2-11 "Interfaces — worst cable & max nodes": one RS-485 segment is noisy (frame CRC errors
// on every meter of that port), one far-end M-Bus meter droops (errors on that meter only), one meter is
// dead for a while. Require: per-meter error buckets that match what was injected, no cross-meter
// contamination (clean meters see no error and no gap), no global stall.

const START_MS = Date.UTC(2026, 3, 8, 10);
const MINUTE = 60_000;

interface IfacePack {
  interface: {
    iface_err_by_meter: Record<string, Record<string, number>>;
    port_err_cnt: Record<string, number>;
  };
}

export const interfacesWorstCable = loopScenario({
  name: "interfaces-worst-cable",
  description: "a noisy RS-485 port, a drooping M-Bus meter and a dead one; errors stay in their own buckets",
  source: "seed 003 H2-3, H2-9 (single-meter instability) and H2-11 Interfaces",
  defaultMeters: 8,
  safeguards: [],
  startMs: START_MS,
  durationMs: 60 * MINUTE,
  options: () => ({ ports: 4, config: { batchAgeMaxMs: 20_000 } }),
  faults(world, ctx) {
    const rng = ctx.rng.fork("iface");
    world.reader.portCrcRate.set(world.portName(1), 0.35);
    const drooping = world.meterIds[2] as string; // on port-2
    world.reader.meterCrcRate.set(drooping, 0.5);
    const dead = world.meterIds[3] as string; // on port-3
    const deadAt = START_MS + rng.intBetween(10, 25) * MINUTE;
    world.sim.at(deadAt, () => world.reader.dead.add(dead));
    world.sim.at(deadAt + rng.intBetween(10, 20) * MINUTE, () => world.reader.dead.delete(dead));
  },
  extra(world, view) {
    const packs = world.dcu.packs() as unknown as IfacePack;
    const counted = packs.interface.iface_err_by_meter;
    const injected = new Map<string, number>();
    for (const f of world.reader.injected) injected.set(f.meterId, (injected.get(f.meterId) ?? 0) + 1);
    let mismatch: string | null = null;
    for (const meterId of world.meterIds) {
      const buckets = counted[meterId] ?? {};
      const total = Object.values(buckets).reduce((a, b) => a + b, 0);
      const expected = injected.get(meterId) ?? 0;
      if (total !== expected) {
        mismatch ??= `${meterId} (${world.fleet.portOf(meterId)}): ${total} errors counted ${JSON.stringify(buckets)}, ${expected} injected`;
      }
    }
    // Clean meters: no error and every seq stored.
    let contaminated: string | null = null;
    for (const meterId of world.meterIds) {
      if ((injected.get(meterId) ?? 0) > 0) continue;
      const rows = view.byMeter.get(meterId) ?? [];
      for (let i = 1; i < rows.length; i++) {
        if ((rows[i]?.seq ?? 0) !== (rows[i - 1]?.seq ?? 0) + 1) {
          contaminated ??= `${meterId} has no injected fault, yet seq ${rows[i - 1]?.seq} → ${rows[i]?.seq}`;
        }
      }
      if (counted[meterId] !== undefined)
        contaminated ??= `${meterId} has errors counted: ${JSON.stringify(counted[meterId])}`;
    }
    const noisyPort = world.portName(1);
    return [
      predicate(
        "errors_in_their_meter_buckets",
        mismatch === null,
        mismatch ??
          `${world.reader.injected.length} injected faults, each counted in its meter's bucket; port_err_cnt ${JSON.stringify(packs.interface.port_err_cnt)}`,
      ),
      predicate(
        "no_cross_meter_contamination",
        contaminated === null,
        contaminated ?? `clean meters complete and error-free; noisy ${noisyPort} confined to its meters`,
      ),
    ];
  },
  figures(world) {
    return { iface_faults_injected: world.reader.injected.length };
  },
});
