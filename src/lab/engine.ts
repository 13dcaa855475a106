import { type Rng, SeededRandom } from "../evidence/index.ts";

// A discrete-event scheduler in virtual time (the approach of TigerBeetle's VOPR and FoundationDB's
// simulation testing): every action runs at a virtual instant, ties break by insertion order, and all
// randomness flows from one seed, so a run replays byte for byte.

/** Bound on pending events: a scenario that schedules without limit is a bug, not a load test. */
export const SIM_EVENTS_PENDING_MAX = 5_000_000;

interface Pending {
  readonly atMs: number;
  readonly order: number;
  readonly action: () => void;
}

export class Simulation {
  readonly rng: Rng;
  private heap: Pending[] = [];
  private order = 0;
  private current: number;
  private executed = 0;

  constructor(
    readonly seed: number,
    startMs: number,
  ) {
    this.rng = new SeededRandom(seed);
    this.current = startMs;
  }

  get nowMs(): number {
    return this.current;
  }

  get eventsExecuted(): number {
    return this.executed;
  }

  get pending(): number {
    return this.heap.length;
  }

  /** Virtual time of the next pending event, or null when none is pending. */
  nextEventMs(): number | null {
    return this.heap[0]?.atMs ?? null;
  }

  /** Runs `action` at virtual time `atMs` (not before now). */
  at(atMs: number, action: () => void): void {
    if (!Number.isFinite(atMs)) throw new RangeError(`cannot schedule at ${atMs}`);
    if (this.heap.length >= SIM_EVENTS_PENDING_MAX) {
      throw new RangeError(
        `more than ${SIM_EVENTS_PENDING_MAX} pending events: a scenario schedules without bound`,
      );
    }
    this.push({ atMs: Math.max(atMs, this.current), order: this.order++, action });
  }

  after(delayMs: number, action: () => void): void {
    this.at(this.current + delayMs, action);
  }

  /** Runs `action` every `periodMs` from `firstAtMs` until it returns false or the run ends. */
  every(periodMs: number, firstAtMs: number, action: (nowMs: number) => boolean | undefined): void {
    if (!(periodMs > 0)) throw new RangeError(`period must be positive, got ${periodMs}`);
    const tick = () => {
      if (action(this.current) === false) return;
      this.after(periodMs, tick);
    };
    this.at(firstAtMs, tick);
  }

  /** Executes events in time order up to and including `untilMs`; returns the events executed. */
  runUntil(untilMs: number, onProgress?: (fraction: number) => void): number {
    const startMs = this.current;
    const span = Math.max(1, untilMs - startMs);
    let executed = 0;
    let nextReport = 0;
    for (;;) {
      const top = this.heap[0];
      if (top === undefined || top.atMs > untilMs) break;
      this.pop();
      this.current = top.atMs;
      top.action();
      executed++;
      if (onProgress !== undefined && executed >= nextReport) {
        onProgress((this.current - startMs) / span);
        nextReport = executed + 10_000;
      }
    }
    this.current = Math.max(this.current, untilMs);
    this.executed += executed;
    onProgress?.(1);
    return executed;
  }

  private push(item: Pending): void {
    const heap = this.heap;
    heap.push(item);
    let i = heap.length - 1;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (!before(heap[i]!, heap[parent]!)) break;
      [heap[i], heap[parent]] = [heap[parent]!, heap[i]!];
      i = parent;
    }
  }

  private pop(): void {
    const heap = this.heap;
    const last = heap.pop()!;
    if (heap.length === 0) return;
    heap[0] = last;
    let i = 0;
    for (;;) {
      const left = 2 * i + 1;
      const right = left + 1;
      let smallest = i;
      if (left < heap.length && before(heap[left]!, heap[smallest]!)) smallest = left;
      if (right < heap.length && before(heap[right]!, heap[smallest]!)) smallest = right;
      if (smallest === i) break;
      [heap[i], heap[smallest]] = [heap[smallest]!, heap[i]!];
      i = smallest;
    }
  }
}

function before(a: Pending, b: Pending): boolean {
  return a.atMs < b.atMs || (a.atMs === b.atMs && a.order < b.order);
}
