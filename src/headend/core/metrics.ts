import type { StoreCounts } from "../store/index.ts";

// Live counters of one head-end process, and the Prometheus text of /metrics. Totals that must survive a
// restart (readings stored, batches rejected, alerts, gaps, meters online) come from the store's counts();
// what the store never sees (refused alerts, duplicates, queue refusals, latencies) is counted here.

/** Alert latencies kept for quantiles (a ring: the newest samples win). */
export const LATENCY_SAMPLES_MAX = 4_096;
/** Ingest-rate samples kept for readings/s (one per committed batch, a ring). */
export const RATE_SAMPLES_MAX = 1_024;
/** readings/s is averaged over this window. */
export const RATE_WINDOW_MS = 10_000;

export class LatencyReservoir {
  private readonly samples = new Float64Array(LATENCY_SAMPLES_MAX);
  private next = 0;
  private filled = 0;
  count = 0;

  record(ms: number): void {
    this.samples[this.next] = ms;
    this.next = (this.next + 1) % LATENCY_SAMPLES_MAX;
    this.filled = Math.min(this.filled + 1, LATENCY_SAMPLES_MAX);
    this.count++;
  }

  /** Nearest-rank quantile over the kept samples; null before the first one. */
  quantile(q: number): number | null {
    if (this.filled === 0) return null;
    const sorted = Array.from(this.samples.subarray(0, this.filled)).sort((a, b) => a - b);
    const rank = Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1));
    return sorted[rank] ?? null;
  }
}

export class HeadendMetrics {
  batchesAccepted = 0;
  batchesDuplicate = 0;
  readingsStored = 0;
  readingsDuplicate = 0;
  commitFailures = 0;
  ingestQueueRefused = 0;
  alertQueueRefused = 0;
  alertsStored = 0;
  alertsDuplicate = 0;
  alertsAggregated = 0;
  eventsStored = 0;
  sseDropped = 0;
  readonly batchesRejected = new Map<string, number>();
  readonly alertsRejected = new Map<string, number>();
  readonly alertsByType = new Map<string, number>();
  readonly gapsByClass = new Map<string, number>();
  readonly alertLatencyMs = new LatencyReservoir();
  private readonly rateTimes = new Float64Array(RATE_SAMPLES_MAX);
  private readonly rateTotals = new Float64Array(RATE_SAMPLES_MAX);
  private rateNext = 0;
  private rateFilled = 0;

  rejectBatch(reason: string): void {
    bump(this.batchesRejected, reason);
  }

  rejectAlert(reason: string): void {
    bump(this.alertsRejected, reason);
  }

  alertStored(type: string): void {
    this.alertsStored++;
    bump(this.alertsByType, type);
  }

  gap(gapClass: string): void {
    bump(this.gapsByClass, gapClass);
  }

  readingsCommitted(count: number, nowMs: number): void {
    this.readingsStored += count;
    this.rateTimes[this.rateNext] = nowMs;
    this.rateTotals[this.rateNext] = this.readingsStored;
    this.rateNext = (this.rateNext + 1) % RATE_SAMPLES_MAX;
    this.rateFilled = Math.min(this.rateFilled + 1, RATE_SAMPLES_MAX);
  }

  /** Readings stored per second over the last RATE_WINDOW_MS. */
  readingsPerSecond(nowMs: number): number {
    let oldestTime = nowMs;
    let oldestTotal = this.readingsStored;
    for (let i = 0; i < this.rateFilled; i++) {
      const t = this.rateTimes[i] as number;
      if (nowMs - t <= RATE_WINDOW_MS && t < oldestTime) {
        oldestTime = t;
        oldestTotal = this.rateTotals[i] as number;
      }
    }
    const spanMs = Math.max(nowMs - oldestTime, 1_000);
    return ((this.readingsStored - oldestTotal) * 1000) / spanMs;
  }

  rejectedBatchesTotal(): number {
    let total = 0;
    for (const n of this.batchesRejected.values()) total += n;
    return total;
  }
}

function bump(map: Map<string, number>, key: string): void {
  map.set(key, (map.get(key) ?? 0) + 1);
}

/** Prometheus label values: backslash, double quote and newline escaped (exposition format 0.0.4). */
function label(value: string): string {
  return value.replace(/\\/g, "\\\\").replace(/"/g, '\\"').replace(/\n/g, "\\n");
}

/**
 * The /metrics body. Names in DESIGN.md are a contract: amiproof_readings_stored_total,
 * amiproof_batches_rejected_total{reason}, amiproof_alerts_total{type}, amiproof_gaps_total{class},
 * amiproof_meters_online.
 */
export function renderPrometheus(counts: StoreCounts, live: HeadendMetrics): string {
  const lines: string[] = [];
  const family = (name: string, type: "counter" | "gauge" | "summary", help: string) => {
    lines.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`);
  };
  const labelled = (name: string, key: string, values: Iterable<[string, number]>) => {
    for (const [value, n] of values) lines.push(`${name}{${key}="${label(value)}"} ${n}`);
  };

  family(
    "amiproof_readings_stored_total",
    "counter",
    "Reading values durably stored (one per meter, seq and OBIS).",
  );
  lines.push(`amiproof_readings_stored_total ${counts.readingsStoredTotal}`);
  family("amiproof_batches_accepted_total", "counter", "Concentrator batches verified and committed.");
  lines.push(`amiproof_batches_accepted_total ${counts.batchesAcceptedTotal}`);
  family(
    "amiproof_batches_duplicate_total",
    "counter",
    "Batches received again after commit (acked again, not stored).",
  );
  lines.push(`amiproof_batches_duplicate_total ${live.batchesDuplicate}`);
  family(
    "amiproof_batches_rejected_total",
    "counter",
    "Batches refused, by reason (evidence error code or ingest reason).",
  );
  labelled("amiproof_batches_rejected_total", "reason", Object.entries(counts.batchesRejectedTotal));
  family("amiproof_alerts_total", "counter", "Alerts stored, by type.");
  labelled("amiproof_alerts_total", "type", Object.entries(counts.alertsTotal));
  family("amiproof_alerts_rejected_total", "counter", "Alert messages refused since start, by reason.");
  labelled("amiproof_alerts_rejected_total", "reason", live.alertsRejected);
  family(
    "amiproof_gaps_total",
    "counter",
    "Gaps recorded as evidence, by class (seed 003 H2-4 two-axis attribution).",
  );
  labelled("amiproof_gaps_total", "class", Object.entries(counts.gapsTotal));
  family("amiproof_meters_online", "gauge", "Meters whose readings arrive within the online window.");
  lines.push(`amiproof_meters_online ${counts.metersOnline}`);
  family("amiproof_meters_total", "gauge", "Meters known to the head-end.");
  lines.push(`amiproof_meters_total ${counts.metersTotal}`);
  family("amiproof_events_total", "counter", "Sealed meter events stored.");
  lines.push(`amiproof_events_total ${counts.eventsTotal}`);
  family(
    "amiproof_store_commit_failures_total",
    "counter",
    "Batch commits the store refused since start (no ack sent).",
  );
  lines.push(`amiproof_store_commit_failures_total ${live.commitFailures}`);
  family(
    "amiproof_intake_refused_total",
    "counter",
    "Messages refused at a full intake queue since start, by lane.",
  );
  lines.push(`amiproof_intake_refused_total{lane="batches"} ${live.ingestQueueRefused}`);
  lines.push(`amiproof_intake_refused_total{lane="alerts"} ${live.alertQueueRefused}`);
  family(
    "amiproof_alert_latency_ms",
    "summary",
    "Meter detection to alert stored and pushed, recent samples.",
  );
  for (const q of [0.5, 0.99]) {
    const value = live.alertLatencyMs.quantile(q);
    if (value !== null) lines.push(`amiproof_alert_latency_ms{quantile="${q}"} ${value}`);
  }
  lines.push(`amiproof_alert_latency_ms_count ${live.alertLatencyMs.count}`);
  return `${lines.join("\n")}\n`;
}
