import { sealReadingsBatch } from "./batch.ts";
import { type BundleKey, bundleKey, type EvidenceBundle } from "./bundle.ts";
import { EvidenceError } from "./errors.ts";
import { MemoryNvm } from "./nvm.ts";
import { SeededRandom } from "./random.ts";
import type { Batch, EventType, ReadingRecordFields, Snapshot } from "./records.ts";
import { AtomicRingLog, RINGLOG_SLOTS_MAX, ringLogLayout } from "./ringlog.ts";
import { MemorySecureElement } from "./secure-element.ts";

// A sample bundle made the way the field makes one: a fresh meter seals events into its AtomicRingLog
// on a (simulated) NOR device, a concentrator seals readings into chained, signed batches.

export const SAMPLE_RECORDS_MAX = RINGLOG_SLOTS_MAX - 1024;
const SAMPLE_PAGE_BYTES = 256;
const SAMPLE_SECTOR_BYTES = 4096;
const READING_INTERVAL_MS = 15 * 60_000;

export interface SampleOptions {
  readonly records: number;
  readonly batches?: number;
  readonly readingsPerBatch?: number;
  readonly seed?: number;
  readonly startMs?: number;
  /** Size the ring so it wraps: the oldest records are overwritten and a LOG_WRAP summary is sealed. */
  readonly wrap?: boolean;
}

const EVENT_MIX: readonly { type: EventType; snapshot: (r: SeededRandom) => Snapshot }[] = [
  { type: "POWER_DOWN", snapshot: (r) => ({ rail_min_mv: 2900 + r.nextInt(200) }) },
  { type: "POWER_UP", snapshot: (r) => ({ reset_reason: "BOR", outage_s: r.nextInt(3600) }) },
  { type: "TIME_SYNC", snapshot: (r) => ({ offset_ms: r.nextInt(400) - 200 }) },
  { type: "COVER_OPEN", snapshot: () => ({ debounce_ms: 50 }) },
  {
    type: "MAG_TAMPER",
    snapshot: (r) => ({ field_mt: 51 + r.nextInt(40), pf_anomaly: true, error_code: "0x09" }),
  },
  {
    type: "READING_SUMMARY",
    snapshot: (r) => ({ import_wh: 100_000 + r.nextInt(1000), export_wh: r.nextInt(50) }),
  },
];

export function buildSampleBundle(options: SampleOptions): EvidenceBundle {
  if (!Number.isSafeInteger(options.records) || options.records < 1 || options.records > SAMPLE_RECORDS_MAX) {
    throw new EvidenceError("BAD_FIELD", `records must be 1..${SAMPLE_RECORDS_MAX}, got ${options.records}`);
  }
  const seed = options.seed ?? 1;
  const startMs = options.startMs ?? Date.UTC(2026, 0, 1);
  const rng = new SeededRandom(seed);
  const meterId = "MTR-SAMPLE-0001";
  const meterSe = new MemorySecureElement(meterId, Uint8Array.of(seed & 0xff, 1));
  const geometry = { pageBytes: SAMPLE_PAGE_BYTES, sectorBytes: SAMPLE_SECTOR_BYTES };
  const { slotsPerSector } = ringLogLayout(
    { ...geometry, sizeBytes: 2 * SAMPLE_SECTOR_BYTES },
    { offset: 0, length: 2 * SAMPLE_SECTOR_BYTES },
  );
  const sectors = options.wrap
    ? Math.max(3, Math.ceil(options.records / slotsPerSector / 2))
    : Math.ceil((options.records + 4) / slotsPerSector) + 2;
  const nvm = new MemoryNvm({ ...geometry, sizeBytes: sectors * SAMPLE_SECTOR_BYTES });
  const log = AtomicRingLog.open({
    nvm,
    region: { offset: 0, length: sectors * SAMPLE_SECTOR_BYTES },
    meterId,
    secureElement: meterSe,
    nowMs: startMs,
    timeQuality: "SYNCED",
  });
  let nowMs = startMs;
  // open() sealed a RECOVERY record for the fresh log; the sample adds the rest.
  for (let i = 1; i < options.records; i++) {
    nowMs += 60_000 + rng.nextInt(3_600_000);
    const kind = EVENT_MIX[rng.nextInt(EVENT_MIX.length)]!;
    log.append({
      type: kind.type,
      level: kind.type === "MAG_TAMPER" ? "MAJOR" : "INFO",
      timestampMs: nowMs,
      timeQuality: "SYNCED",
      snapshot: kind.snapshot(rng),
    });
  }

  const dcuId = "DCU-SAMPLE-01";
  const dcuSe = new MemorySecureElement(dcuId, Uint8Array.of(seed & 0xff, 2));
  const batches: Batch[] = [];
  const meters = ["MTR-SAMPLE-0001", "MTR-SAMPLE-0002", "MTR-SAMPLE-0003", "MTR-SAMPLE-0004"];
  const perBatch = options.readingsPerBatch ?? 16;
  let commitId = 1;
  let prev: Uint8Array | undefined;
  const seqs = new Map(meters.map((m) => [m, 0]));
  const registers = new Map(meters.map((m) => [m, 1_000_000 + rng.nextInt(100_000)]));
  for (let b = 1; b <= (options.batches ?? 3); b++) {
    const readings: ReadingRecordFields[] = [];
    for (let i = 0; i < perBatch; i++) {
      const meter = meters[i % meters.length]!;
      const seq = seqs.get(meter)! + 1;
      seqs.set(meter, seq);
      const energyWh = registers.get(meter)! + rng.nextInt(400);
      registers.set(meter, energyWh);
      readings.push({
        timestampMs: startMs + seq * READING_INTERVAL_MS,
        meterId: meter,
        values: [{ obis: [1, 0, 1, 8, 0, 255], value: energyWh, scaler: 0, unit: 30 }],
        seq,
        commitId: commitId++,
        timeQuality: "SYNCED",
      });
    }
    const batch = sealReadingsBatch(
      {
        batchId: b,
        dcuId,
        epoch: 1,
        createdMs: startMs + b * perBatch * 60_000,
        readings,
        prevBatchHash: prev,
      },
      (m) => dcuSe.sign("batch_sign", m),
    );
    batches.push(batch);
    prev = batch.header.batchHash;
  }

  const keys: BundleKey[] = [
    bundleKey(meterId, "event_seal", meterSe.publicKey("event_seal")),
    bundleKey(dcuId, "batch_sign", dcuSe.publicKey("batch_sign")),
  ];
  return {
    keys,
    meterLogs: [{ meterId, keyId: keys[0]!.keyId, records: log.records() }],
    batchChains: batches.length === 0 ? [] : [{ dcuId, keyId: keys[1]!.keyId, batches }],
  };
}
