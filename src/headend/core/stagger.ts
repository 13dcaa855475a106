import type { Rng } from "../../evidence/index.ts";

// Seed 000 "Scaling Logic": fleet commands are staggered with a randomized back-off over a window
// (60 minutes by default) so no concentrator is flooded and 100 % of the fleet can report. Each
// concentrator's share of the window is cut into slots one session long (plus the jitter): a slot holds at
// most `sessionLimitPerDcu` sessions, every session starts in its slot's jitter band and ends before the
// next slot begins, so sessions of different slots never overlap and the concurrent sessions of a
// concentrator never exceed its limit. A meter draws a random slot (seeded); a full slot sends it to the
// next free one (linear probing, bounded by the slot count). When a concentrator has more meters than its
// window holds, slots continue past the window (`overflowMeters`), never above the limit.

export const STAGGER_WINDOW_MS_DEFAULT = 60 * 60_000;
export const SESSION_LIMIT_PER_DCU_DEFAULT = 8;
/** The longest session a command is expected to need (rollback: command, reset, confirmation GET). */
export const SESSION_MS_DEFAULT = 20_000;
export const STAGGER_JITTER_MS_DEFAULT = 5_000;
/** Meters one plan may stagger (the lab's 100,000-meter fleet fits with room). */
export const STAGGER_METERS_MAX = 2_000_000;

export interface StaggerOptions {
  readonly windowMs?: number;
  readonly sessionLimitPerDcu?: number;
  /** Upper bound of one session's duration. */
  readonly sessionMs?: number;
  /** Random spread of starts within a slot. */
  readonly jitterMs?: number;
  readonly rng: Rng;
}

export interface StaggerPlan {
  /** Offsets from the campaign's start, per meter, in input order. */
  readonly offsetsMs: Float64Array;
  readonly slotMs: number;
  /** Latest offset + session: when the last session has ended. */
  readonly endMs: number;
  /** Meters that did not fit the window and were placed after it. */
  readonly overflowMeters: number;
}

export function staggerStartTimes(
  meters: readonly { readonly dcuId: string }[],
  options: StaggerOptions,
): StaggerPlan {
  if (meters.length > STAGGER_METERS_MAX)
    throw new RangeError(`at most ${STAGGER_METERS_MAX} meters per stagger plan, got ${meters.length}`);
  const windowMs = options.windowMs ?? STAGGER_WINDOW_MS_DEFAULT;
  const limit = options.sessionLimitPerDcu ?? SESSION_LIMIT_PER_DCU_DEFAULT;
  const sessionMs = options.sessionMs ?? SESSION_MS_DEFAULT;
  const jitterMs = Math.max(1, options.jitterMs ?? STAGGER_JITTER_MS_DEFAULT);
  if (!(windowMs > 0) || !(limit >= 1) || !(sessionMs > 0))
    throw new RangeError("window, session limit and session length must be positive");
  const slotMs = sessionMs + jitterMs;
  const slotsInWindow = Math.max(1, Math.floor(windowMs / slotMs));
  const byDcu = new Map<string, number[]>();
  meters.forEach((m, i) => {
    let list = byDcu.get(m.dcuId);
    if (list === undefined) {
      list = [];
      byDcu.set(m.dcuId, list);
    }
    list.push(i);
  });
  const offsetsMs = new Float64Array(meters.length);
  let endMs = 0;
  let overflowMeters = 0;
  for (const indexes of byDcu.values()) {
    // Enough slots for every meter of this concentrator, the window's at least.
    const slots = Math.max(slotsInWindow, Math.ceil(indexes.length / limit));
    const used = new Uint32Array(slots);
    for (const i of indexes) {
      // Random slot in the window; a full one probes forward (bounded: the slots hold every meter).
      let slot = options.rng.nextInt(slotsInWindow);
      for (let probes = 0; used[slot]! >= limit; probes++) {
        if (probes >= slots) throw new Error("stagger: no free slot (slot count invariant broken)");
        slot = (slot + 1) % slots;
      }
      used[slot]!++;
      if (slot >= slotsInWindow) overflowMeters++;
      const offset = slot * slotMs + options.rng.nextFloat() * jitterMs;
      offsetsMs[i] = Math.floor(offset);
      endMs = Math.max(endMs, offsetsMs[i]! + sessionMs);
    }
  }
  return { offsetsMs, slotMs, endMs, overflowMeters };
}

/** Peak number of overlapping [start, start + duration) intervals per key (a sweep over sorted events). */
export function peakConcurrentSessions(
  sessions: readonly { readonly key: string; readonly startMs: number; readonly durationMs: number }[],
): Map<string, number> {
  const events = new Map<string, number[]>();
  for (const s of sessions) {
    let list = events.get(s.key);
    if (list === undefined) {
      list = [];
      events.set(s.key, list);
    }
    // Encode ends before starts at the same instant: a session ending at t frees its place for one at t.
    list.push((s.startMs + s.durationMs) * 2, s.startMs * 2 + 1);
  }
  const peaks = new Map<string, number>();
  for (const [key, list] of events) {
    list.sort((a, b) => a - b);
    let current = 0;
    let peak = 0;
    for (const e of list) {
      current += e % 2 === 1 ? 1 : -1;
      if (current > peak) peak = current;
    }
    peaks.set(key, peak);
  }
  return peaks;
}
