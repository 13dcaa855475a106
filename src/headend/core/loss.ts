import { HeadendError } from "../errors.ts";
import { type HeadendStore, PAGE_ROWS_MAX } from "../store/index.ts";

// seed 004 Admin Desk: "The HES cross-references the tamper timestamp with the consumption delta recorded
// by neighboring meters on the same transformer. This allows the utility to estimate the 'unmeasured
// energy'." The estimate: the median neighbour's import over the window minus the meter's own import
// (never below zero). A median, not a mean, so one neighbour with a large load (or its own tamper) does
// not set the figure.

/** IEC 62056-6-1 OBIS 1.0.1.8.0.255: active energy import (+A), total. */
export const IMPORT_ENERGY_OBIS = "1.0.1.8.0.255";
/** Neighbours compared at most (one transformer feeds tens to a few hundred meters). */
export const LOSS_NEIGHBOURS_MAX = 500;
/** Reading pages read per meter at most (PAGE_ROWS_MAX rows each). */
export const LOSS_READING_PAGES_MAX = 20;

export interface RevenueLossEstimate {
  readonly meterId: string;
  readonly transformerId: string;
  readonly fromMs: number;
  readonly toMs: number;
  /** The meter's own import over the window (Wh); null when it has fewer than two readings in it. */
  readonly ownWh: number | null;
  readonly neighbours: number;
  readonly neighbourMedianWh: number | null;
  readonly estimatedUnmeasuredWh: number | null;
}

export async function estimateRevenueLoss(
  store: HeadendStore,
  meterId: string,
  fromMs: number,
  toMs: number,
): Promise<RevenueLossEstimate> {
  const meter = await store.getMeter(meterId);
  if (meter === null) throw new HeadendError("NOT_FOUND", `meter ${meterId} is unknown`, "revenue loss");
  if (meter.transformerId === null) {
    throw new HeadendError(
      "BAD_REQUEST",
      `meter ${meterId} has no transformer_id (asset register)`,
      "revenue loss",
    );
  }
  const ownWh = await importDeltaWh(store, meterId, fromMs, toMs);
  const deltas: number[] = [];
  let cursor: string | null = null;
  let neighbours = 0;
  do {
    const page = await store.listMeters({ transformerId: meter.transformerId, limit: 100, cursor });
    for (const m of page.items) {
      if (m.meterId === meterId || neighbours >= LOSS_NEIGHBOURS_MAX) continue;
      neighbours++;
      const delta = await importDeltaWh(store, m.meterId, fromMs, toMs);
      if (delta !== null) deltas.push(delta);
    }
    cursor = page.nextCursor;
  } while (cursor !== null && neighbours < LOSS_NEIGHBOURS_MAX);
  const median = medianOf(deltas);
  return {
    meterId,
    transformerId: meter.transformerId,
    fromMs,
    toMs,
    ownWh,
    neighbours: deltas.length,
    neighbourMedianWh: median,
    estimatedUnmeasuredWh: median === null || ownWh === null ? null : Math.max(0, median - ownWh),
  };
}

export function medianOf(values: readonly number[]): number | null {
  if (values.length === 0) return null;
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1
    ? (sorted[mid] as number)
    : ((sorted[mid - 1] as number) + (sorted[mid] as number)) / 2;
}

/** Last minus first import register value in [fromMs, toMs), in Wh (value × 10^scaler). */
async function importDeltaWh(
  store: HeadendStore,
  meterId: string,
  fromMs: number,
  toMs: number,
): Promise<number | null> {
  let first: number | null = null;
  let last: number | null = null;
  let cursor: string | null = null;
  let pages = 0;
  let count = 0;
  do {
    const page = await store.listReadings({
      meterId,
      fromMs,
      toMs,
      obis: IMPORT_ENERGY_OBIS,
      limit: PAGE_ROWS_MAX,
      cursor,
    });
    for (const r of page.items) {
      const wh = r.value * 10 ** r.scaler;
      first ??= wh;
      last = wh;
      count++;
    }
    cursor = page.nextCursor;
  } while (cursor !== null && ++pages < LOSS_READING_PAGES_MAX);
  return first === null || last === null || count < 2 ? null : last - first;
}
