import type { EventType } from "../../evidence/index.ts";
import { loopScenario } from "../loop/scenario.ts";
import type { LoopWorld } from "../loop/world.ts";
import { predicate } from "../scenario.ts";

// seed 002 H2-11 case 6 "Magnet attack suspected, but no tamper record exists": the tamper trigger and a
// power event at the concentrator coincide, so the recording/forwarding path is cut at trigger time.
// Meters seal MAG_TAMPER (and other tampers) and push them; at some triggers the concentrator loses power
// within a second. Require: every tamper reaches the head-end as an alert within its budget, exactly
// once (at-least-once forwarding, REPLAY refused at the head-end), and no meter without an attack alarms.

const START_MS = Date.UTC(2026, 1, 2, 2);
const MINUTE = 60_000;
const POLL_MS = 60_000;

interface Trigger {
  readonly meterId: string;
  readonly type: EventType;
  readonly atMs: number;
  readonly seq: number;
  /** Time the concentrator was without power after the trigger (0: none). */
  readonly outageMs: number;
}

const triggers = new WeakMap<object, Trigger[]>();

/**
 * Budget: a push crosses in well under a second (5 s allowed). When the concentrator was without power
 * between the trigger and the alert, that downtime plus one poll period and the link are allowed: the
 * push died with the process and the event is read from the meter at the first poll after the restart.
 */
function budgetMs(world: LoopWorld, t: Trigger, storedMs: number): number {
  let downMs = 0;
  for (const r of world.restarts) {
    const from = Math.max(r.atMs, t.atMs);
    const to = Math.min(r.upAtMs ?? storedMs, storedMs);
    downMs += Math.max(0, to - from);
  }
  return downMs === 0 && t.outageMs === 0 ? 5_000 : downMs + POLL_MS + 10_000;
}

export const fieldMagnetPowerWindow = loopScenario({
  name: "field-magnet-power-window",
  description:
    "tamper triggers coinciding with concentrator power cuts: every tamper alerted within budget, once",
  source: "seed 002 H2-11 case 6; seed 004 alert latency and push-on-restore",
  defaultMeters: 8,
  safeguards: [],
  startMs: START_MS,
  durationMs: 50 * MINUTE,
  options: () => ({ pollIntervalMs: POLL_MS, config: { batchAgeMaxMs: 20_000 } }),
  faults(world, ctx) {
    const rng = ctx.rng.fork("magnet");
    const list: Trigger[] = [];
    triggers.set(world, list);
    const attacked = world.meterIds.filter((_, i) => i % 2 === 0);
    const types: EventType[] = ["MAG_TAMPER", "COVER_OPEN", "BYPASS_SUS"];
    attacked.forEach((meterId, i) => {
      const at = START_MS + rng.intBetween(3, 42) * MINUTE + rng.nextInt(MINUTE);
      const type = types[i % types.length] as EventType;
      const cut = rng.chance(0.5);
      const outageMs = cut ? rng.intBetween(5_000, 120_000) : 0;
      world.sim.at(at, () => {
        const record = world.meterEvent(meterId, type, "CRITICAL", { field_mT: 80, lab: "attack" });
        // Already down (an earlier cut): the alert waits for that restart.
        const down = world.concentratorDown;
        const pendingMs = world.restartAtMs === null ? 0 : Math.max(0, world.restartAtMs - world.nowMs);
        list.push({
          meterId,
          type,
          atMs: world.nowMs,
          seq: record.seq,
          outageMs: down ? pendingMs : cut ? outageMs : 0,
        });
        if (cut && !down) world.powerCut("power event at tamper trigger", outageMs);
      });
    });
  },
  async extra(world) {
    const list = triggers.get(world) as Trigger[];
    const alerts = (await world.store.listAlerts({ limit: 1000 })).items;
    let missing: string | null = null;
    let late: string | null = null;
    let worst = 0;
    for (const t of list) {
      const mine = alerts.filter((a) => a.meterId === t.meterId && a.type === t.type);
      if (mine.length !== 1) {
        missing ??= `${t.meterId} ${t.type} (event seq ${t.seq}, outage ${t.outageMs} ms) has ${mine.length} alerts at the head-end`;
        continue;
      }
      const alert = mine[0] as (typeof mine)[number];
      const latency = alert.receivedMs - t.atMs;
      worst = Math.max(worst, latency);
      const budget = budgetMs(world, t, alert.receivedMs);
      if (latency > budget)
        late ??= `${t.meterId} ${t.type}: stored ${latency} ms after the trigger (budget ${budget} ms, concentrator outage at trigger ${t.outageMs} ms)`;
    }
    const attackedIds = new Set(list.map((t) => t.meterId));
    const innocent = alerts.find(
      (a) => a.meterId !== null && a.meterId !== "" && !attackedIds.has(a.meterId as string),
    );
    return [
      predicate(
        "every_tamper_alerted_once",
        missing === null && list.length > 0,
        missing ??
          `${list.length} tampers, each one alert at the head-end (${world.restarts.length} power cuts at trigger)`,
      ),
      predicate("alerted_within_budget", late === null, late ?? `worst trigger → stored alert ${worst} ms`),
      predicate(
        "no_false_positive",
        innocent === undefined,
        innocent === undefined
          ? `${alerts.length} alerts, all on attacked meters`
          : `alert ${innocent.type} on ${innocent.meterId}, never attacked`,
      ),
    ];
  },
  figures(world) {
    return { tampers: (triggers.get(world) as Trigger[]).length };
  },
});
