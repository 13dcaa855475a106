import {
  computeRollbackOtp,
  type FirmwareCommand,
  type JobReport,
  type Rng,
  sha256,
  toHex,
} from "../../evidence/index.ts";
import {
  CampaignManager,
  deriveMeterOtpKey,
  FirmwareRepository,
  type FleetMeter,
  OtpSecurityModule,
  peakConcurrentSessions,
} from "../../headend/index.ts";
import { type PredicateResult, predicate, type Scenario } from "../scenario.ts";

// Issue 9 acceptance 3 (seed 000 "Scaling Logic": "Utilize a Randomized Back-off algorithm to spread the
// rollback load over a 60-minute window; this preserves the throughput of the backhaul link and ensures
// that 100% of the fleet can report its status"). A fleet rollback campaign is created, approved and
// started on the head-end's own campaign core (OTP per command, staggered starts per concentrator); each
// meter's session is then modelled abstractly in virtual time: it opens at its command's start (a gas
// meter, seed 001, only when it next wakes, every 30 minutes), holds one of its concentrator's session
// places for its duration, and reports its running image's checksum, which the head-end confirms against
// the golden image's. A session that finds every place taken collides (seed 000 "concurrency collisions at
// the Data Concentrator"), is refused, and retries after a random back-off (a gas meter at its next
// wake), up to ATTEMPTS_MAX; then the concentrator reports the meter failed (TIMEOUT). The same commands
// are played again with every start at 0 — the unstaggered comparison in the same run.

const START_MS = Date.UTC(2026, 5, 1);
const WINDOW_MS = 60 * 60_000;
const METERS_PER_DCU = 1000;
const SESSION_LIMIT_MAX = 8;
const SESSION_MS_MAX = 15_000;
const SESSION_MS_MIN = 3_000;
const GAS_SHARE = 0.05;
const GAS_WAKE_MS = 30 * 60_000;
const ATTEMPTS_MAX = 6;
const RETRY_MS_MIN = 30_000;
const RETRY_MS_MAX = 300_000;
const REPORTS_PER_MESSAGE = 4096;

interface SimMeter {
  readonly meterId: string;
  readonly dcuId: string;
  readonly durationMs: number;
  /** Gas meters: phase of their 30-minute wake cycle; null: always listening. */
  readonly wakePhaseMs: number | null;
}

interface PlayResult {
  /** Per meter: when it reported (ms from start), or its failure. */
  readonly reports: { meterId: string; dcuId: string; atMs: number; ok: boolean }[];
  readonly collisions: number;
  readonly awakeCollisions: number;
  /** Sessions as attempted (refused ones too): the load the concentrators were asked to carry. */
  readonly attemptedPeakMax: number;
  /** The same for the listening meters only: the head-end's stagger plan at work. */
  readonly attemptedAwakePeakMax: number;
  readonly executedPeakMax: number;
  readonly completionMs: number;
}

function nextWake(m: SimMeter, atMs: number): number {
  if (m.wakePhaseMs === null) return atMs;
  const k = Math.ceil((atMs - m.wakePhaseMs) / GAS_WAKE_MS);
  return m.wakePhaseMs + Math.max(0, k) * GAS_WAKE_MS;
}

/** Min-heap of [timeMs, payload] pairs (bounded by the meters of one concentrator). */
class Heap {
  private readonly items: [number, number][] = [];
  get size(): number {
    return this.items.length;
  }
  peek(): [number, number] | undefined {
    return this.items[0];
  }
  push(item: [number, number]): void {
    const a = this.items;
    a.push(item);
    let i = a.length - 1;
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (a[p]![0] <= a[i]![0]) break;
      [a[p], a[i]] = [a[i]!, a[p]!];
      i = p;
    }
  }
  pop(): [number, number] | undefined {
    const a = this.items;
    const top = a[0];
    const last = a.pop();
    if (a.length > 0 && last !== undefined) {
      a[0] = last;
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        const r = l + 1;
        let m = i;
        if (l < a.length && a[l]![0] < a[m]![0]) m = l;
        if (r < a.length && a[r]![0] < a[m]![0]) m = r;
        if (m === i) break;
        [a[m], a[i]] = [a[i]!, a[m]!];
        i = m;
      }
    }
    return top;
  }
}

/**
 * Plays every concentrator's sessions in virtual time; `startOf` gives each meter's command start. A
 * concentrator admits a session while fewer than `limit` are open, and a waking gas meter only into the
 * `sleepingPlaces` kept for them (otherwise it sleeps on until its next wake).
 */
function play(
  meters: readonly SimMeter[],
  startOf: (i: number) => number,
  limit: number,
  sleepingPlaces: number,
  rng: Rng,
): PlayResult {
  const byDcu = new Map<string, number[]>();
  meters.forEach((m, i) => {
    let list = byDcu.get(m.dcuId);
    if (list === undefined) {
      list = [];
      byDcu.set(m.dcuId, list);
    }
    list.push(i);
  });
  const reports: PlayResult["reports"] = [];
  const attempted: { key: string; startMs: number; durationMs: number }[] = [];
  const attemptedAwake: { key: string; startMs: number; durationMs: number }[] = [];
  const executed: { key: string; startMs: number; durationMs: number }[] = [];
  let collisions = 0;
  let awakeCollisions = 0;
  let completionMs = 0;
  for (const [dcuId, indexes] of byDcu) {
    const attempts = new Heap();
    const tries = new Map<number, number>();
    for (const i of indexes) attempts.push([nextWake(meters[i]!, startOf(i)), i]);
    const active = new Heap(); // end times, payload 1 for a sleeping meter's session
    let activeSleeping = 0;
    while (attempts.size > 0) {
      const [t, i] = attempts.pop()!;
      const m = meters[i]!;
      while (active.size > 0 && active.peek()![0] <= t) activeSleeping -= active.pop()![1];
      attempted.push({ key: dcuId, startMs: t, durationMs: m.durationMs });
      if (m.wakePhaseMs === null) attemptedAwake.push({ key: dcuId, startMs: t, durationMs: m.durationMs });
      const sleeping = m.wakePhaseMs !== null;
      if (active.size < limit && (!sleeping || activeSleeping < sleepingPlaces)) {
        active.push([t + m.durationMs, sleeping ? 1 : 0]);
        if (sleeping) activeSleeping++;
        executed.push({ key: dcuId, startMs: t, durationMs: m.durationMs });
        reports.push({ meterId: m.meterId, dcuId, atMs: t + m.durationMs, ok: true });
        completionMs = Math.max(completionMs, t + m.durationMs);
        continue;
      }
      collisions++;
      if (m.wakePhaseMs === null) awakeCollisions++;
      const n = (tries.get(i) ?? 1) + 1;
      tries.set(i, n);
      if (n > ATTEMPTS_MAX) {
        reports.push({ meterId: m.meterId, dcuId, atMs: t, ok: false });
        completionMs = Math.max(completionMs, t);
        continue;
      }
      attempts.push([nextWake(m, t + rng.intBetween(RETRY_MS_MIN, RETRY_MS_MAX)), i]);
    }
  }
  const maxOf = (peaks: Map<string, number>) => Math.max(0, ...peaks.values());
  return {
    reports,
    collisions,
    awakeCollisions,
    attemptedPeakMax: maxOf(peakConcurrentSessions(attempted)),
    attemptedAwakePeakMax: maxOf(peakConcurrentSessions(attemptedAwake)),
    executedPeakMax: maxOf(peakConcurrentSessions(executed)),
    completionMs,
  };
}

export const fleetRollback: Scenario = {
  name: "fleet-rollback",
  description:
    "a fleet-wide OTP-signed rollback staggered over 60 minutes: every meter reports, no concentrator over its session limit",
  source:
    "seed 000 Scaling Logic and Security Hardening; seed 001 gas meters waking every 30 minutes; issue 9",
  defaultMeters: 100_000,
  safeguards: ["stagger"],
  run(ctx) {
    const rng = ctx.rng;
    const dcus = Math.max(1, Math.ceil(ctx.meters / METERS_PER_DCU));
    const perDcu = Math.ceil(ctx.meters / dcus);
    // Small fleets keep the same pressure: a concentrator's limit is a fraction of its meters.
    // (at least 2: one place is kept for waking gas meters).
    const limit = Math.max(2, Math.min(SESSION_LIMIT_MAX, Math.floor(perDcu / 4)));
    const golden = toHex(sha256(new TextEncoder().encode(`golden application image, seed ${ctx.seed}`)));
    const fleet: FleetMeter[] = [];
    const sim: SimMeter[] = [];
    const meterRng = rng.fork("meters");
    for (let i = 0; i < ctx.meters; i++) {
      const meterId = `MTR-${String(i + 1).padStart(6, "0")}`;
      const dcuId = `DCU-${String((i % dcus) + 1).padStart(3, "0")}`;
      const gas = meterRng.nextFloat() < GAS_SHARE;
      fleet.push({ meterId, dcuId, model: gas ? "GAS-1" : "AMI-1PH", group: null, firmwareVersion: "1.1.0" });
      sim.push({
        meterId,
        dcuId,
        durationMs: meterRng.intBetween(SESSION_MS_MIN, SESSION_MS_MAX),
        wakePhaseMs: gas ? meterRng.nextInt(GAS_WAKE_MS) : null,
      });
    }
    ctx.progress(0.1, "campaign");
    // The head-end: an admin's rollback campaign, approved, started; its commands as sent to concentrators.
    let nowMs = START_MS;
    const commands = new Map<string, FirmwareCommand>();
    const masterKey = rng.fork("hsm").nextBytes(32);
    const manager = new CampaignManager({
      nowMs: () => nowMs,
      rng: rng.fork("campaign"),
      repository: new FirmwareRepository(null),
      otp: new OtpSecurityModule(masterKey),
      send: (message) => {
        for (const c of message.commands) commands.set(c.meterId, c);
      },
    });
    const admin = { name: "lab admin", role: "admin" as const };
    const campaign = manager.create(
      {
        name: "fleet rollback",
        kind: "rollback_full",
        imageChecksum: golden,
        targets: {},
        windowMs: WINDOW_MS,
        sessionLimitPerDcu: limit,
        sessionMs: SESSION_MS_MAX,
        sleepingModels: ["GAS-1"],
      },
      fleet,
      admin,
    );
    manager.approve(campaign.id, admin);
    manager.start(campaign.id, admin);
    ctx.progress(0.4, "sessions");
    const staggerOff = ctx.mutations.has("stagger");
    const startOf = (i: number) => (staggerOff ? 0 : commands.get(sim[i]!.meterId)!.startAtMs - START_MS);
    const reserve = campaign.sleepingReserve;
    const staggered = play(sim, startOf, limit, staggerOff ? limit : reserve, rng.fork("staggered"));
    const unstaggered = play(sim, () => 0, limit, limit, rng.fork("unstaggered"));
    ctx.progress(0.7, "reports");
    // Reports reach the head-end in time order, batched per concentrator as the wire allows.
    const ordered = [...staggered.reports].sort((a, b) => a.atMs - b.atMs);
    const pending = new Map<string, JobReport[]>();
    const flush = (dcuId: string) => {
      const reports = pending.get(dcuId);
      if (reports === undefined || reports.length === 0) return;
      manager.applyProgress({ campaignId: campaign.id, dcuId, reports });
      pending.set(dcuId, []);
    };
    for (const r of ordered) {
      nowMs = START_MS + r.atMs;
      let list = pending.get(r.dcuId);
      if (list === undefined) {
        list = [];
        pending.set(r.dcuId, list);
      }
      list.push({
        meterId: r.meterId,
        state: r.ok ? "done" : "failed",
        reason: r.ok ? null : "TIMEOUT",
        blocksDone: 0,
        blocksTotal: 0,
        activeChecksum: r.ok ? golden : null,
        firmwareId: r.ok ? "app 1.0.0; comms 1.0.0" : null,
        atMs: START_MS + r.atMs,
      });
      if (list.length >= REPORTS_PER_MESSAGE) flush(r.dcuId);
    }
    for (const dcuId of pending.keys()) flush(dcuId);
    const status = manager.status(campaign.id);
    ctx.progress(0.9, "checks");

    // OTPs: one per command, bound to its meter; a sample verified as the meter would.
    const cmdList = [...commands.values()];
    const sampleEvery = Math.max(1, Math.floor(cmdList.length / 500));
    let otpBad = 0;
    for (let i = 0; i < cmdList.length; i += sampleEvery) {
      const c = cmdList[i]!;
      if (c.auth === null) {
        otpBad++;
        continue;
      }
      const expected = computeRollbackOtp(deriveMeterOtpKey(masterKey, c.meterId), {
        meterId: c.meterId,
        action: c.action,
        targetChecksum: c.targetChecksum,
        expiresMs: c.auth.otpExpiresMs,
        counter: c.auth.otpCounter,
      });
      if (toHex(expected) !== toHex(c.auth.otp)) otpBad++;
    }
    const reported = new Set(staggered.reports.map((r) => r.meterId)).size;
    const latestStart = cmdList.reduce((max, c) => Math.max(max, c.startAtMs - START_MS), 0);
    const predicates: PredicateResult[] = [
      predicate(
        "every_meter_reports",
        reported === ctx.meters && status.progress === 1,
        `${reported}/${ctx.meters} meters reported a final state; head-end progress ${status.progress}`,
      ),
      predicate(
        "fleet_back_on_golden",
        status.counts.confirmed === ctx.meters && status.state === "completed",
        `${status.counts.confirmed}/${ctx.meters} confirmed by checksum (${JSON.stringify(status.reasons)}), campaign ${status.state}`,
      ),
      predicate(
        "sessions_within_limit",
        staggered.executedPeakMax <= limit &&
          staggered.attemptedAwakePeakMax <= limit - campaign.sleepingReserve &&
          staggered.awakeCollisions === 0,
        `peak sessions at one concentrator ${staggered.executedPeakMax} (limit ${limit}); listening meters asked for at most ` +
          `${staggered.attemptedAwakePeakMax} (${limit - campaign.sleepingReserve} after ${campaign.sleepingReserve} kept for waking gas meters) ` +
          `and never collided (${staggered.awakeCollisions}); ${staggered.collisions - staggered.awakeCollisions} gas-meter wake collisions waited for the next wake`,
      ),
      predicate(
        "spread_over_window",
        latestStart < WINDOW_MS,
        `last command starts at ${(latestStart / 60_000).toFixed(1)} min of the ${WINDOW_MS / 60_000}-minute window`,
      ),
      predicate(
        "otp_per_command",
        commands.size === ctx.meters && otpBad === 0,
        `${commands.size} commands, OTP checked on ${Math.ceil(cmdList.length / sampleEvery)} of them, ${otpBad} bad`,
      ),
      predicate(
        "unstaggered_start_overloads",
        unstaggered.attemptedPeakMax > limit && unstaggered.collisions > staggered.collisions,
        `all at once: peak ${unstaggered.attemptedPeakMax} sessions asked of one concentrator, ${unstaggered.collisions} collisions, ` +
          `${unstaggered.reports.filter((r) => !r.ok).length} meters failed (TIMEOUT)`,
      ),
    ];
    ctx.progress(1, "done");
    return {
      predicates,
      figures: {
        concentrators: dcus,
        session_limit_per_dcu: limit,
        window_minutes: WINDOW_MS / 60_000,
        gas_meters: sim.filter((m) => m.wakePhaseMs !== null).length,
        commands: commands.size,
        staggered_attempted_peak_per_dcu: staggered.attemptedPeakMax,
        staggered_listening_peak_per_dcu: staggered.attemptedAwakePeakMax,
        staggered_executed_peak_per_dcu: staggered.executedPeakMax,
        staggered_collisions: staggered.collisions,
        staggered_confirmed: status.counts.confirmed,
        staggered_failed: status.counts.failed,
        staggered_completion_minutes: Number((staggered.completionMs / 60_000).toFixed(2)),
        unstaggered_attempted_peak_per_dcu: unstaggered.attemptedPeakMax,
        unstaggered_executed_peak_per_dcu: unstaggered.executedPeakMax,
        unstaggered_collisions: unstaggered.collisions,
        unstaggered_failed: unstaggered.reports.filter((r) => !r.ok).length,
        unstaggered_completion_minutes: Number((unstaggered.completionMs / 60_000).toFixed(2)),
      },
    };
  },
};
