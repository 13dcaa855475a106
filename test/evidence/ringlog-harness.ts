// Power-cut campaigns against AtomicRingLog on a MemoryNvm, shared by ringlog.test.ts (fast, fast-check)
// and ringlog.crash.ts (≥ 10,000 cut points). Every check is an invariant of seed 002 H2-5/H2-7:
// no acknowledged record lost, no torn record accepted, no duplicate seq, seq continuous or a CHAIN_BREAK
// record logged, a wrapped window explained by LOG_WRAP, and nothing written outside the log's region.
import assert from "node:assert/strict";
import {
  AtomicRingLog,
  type EventRecord,
  type EventType,
  isEvidenceError,
  type KeyPurpose,
  MemoryNvm,
  MemorySecureElement,
  type NvmGeometry,
  type SecureElement,
  SeededRandom,
  toHex,
  verifyEventChain,
} from "../../src/evidence/index.ts";

export const GEOMETRIES: readonly NvmGeometry[] = [
  { sizeBytes: 8 * 4096, pageBytes: 256, sectorBytes: 4096 }, // 5 slots of 768 B per sector
  { sizeBytes: 8 * 2048, pageBytes: 64, sectorBytes: 2048 }, // 3 slots of 576 B per sector
  { sizeBytes: 8 * 1536, pageBytes: 128, sectorBytes: 1536 }, // 2 slots of 640 B per sector
];

const USER_TYPES: readonly EventType[] = [
  "MAG_TAMPER",
  "COVER_OPEN",
  "REV_CURRENT",
  "POWER_DOWN",
  "TIME_SYNC",
];
/** Appends per power-on before the harness pulls the plug itself (between operations). */
const APPENDS_PER_CYCLE_MAX = 12;
const METER_ID = "MTR-CRASH-1";

/** Counts every message the element signs: an accepted record must be one the writer sealed. */
class RecordingSecureElement implements SecureElement {
  readonly signed = new Set<string>();
  constructor(private readonly inner: SecureElement) {}
  get id(): string {
    return this.inner.id;
  }
  get keyOpAuditCount(): number {
    return this.inner.keyOpAuditCount;
  }
  publicKey(purpose: KeyPurpose): Uint8Array {
    return this.inner.publicKey(purpose);
  }
  sign(purpose: KeyPurpose, message: Uint8Array): Uint8Array {
    this.signed.add(toHex(message));
    return this.inner.sign(purpose, message);
  }
  readCounter(name: string): number {
    return this.inner.readCounter(name);
  }
  incrementCounter(name: string): number {
    return this.inner.incrementCounter(name);
  }
  advanceCounter(name: string, value: number): number {
    return this.inner.advanceCounter(name, value);
  }
}

export interface CampaignOptions {
  readonly seed: number;
  readonly cuts: number;
  readonly geometry: NvmGeometry;
  /** Region = sectors 1..1+regionSectors of the device, so offsets are exercised. */
  readonly regionSectors: number;
  readonly readBitFlipRate?: number;
}

export interface CampaignResult {
  cutPoints: number;
  cutsMidErase: number;
  cutsBetweenOperations: number;
  opens: number;
  acknowledged: number;
  wraps: number;
  tornSlotsSeen: number;
  chainBreaksLogged: number;
  readBitFlips: number;
}

/** Runs power cycles until `cuts` power cuts happened, checking the invariants after every recovery. */
export function runPowerCutCampaign(options: CampaignOptions): CampaignResult {
  const rng = new SeededRandom(options.seed);
  const flips = options.readBitFlipRate ?? 0;
  const nvm = new MemoryNvm(options.geometry, { rng: rng.fork("nvm"), readBitFlipRate: flips });
  const se = new RecordingSecureElement(new MemorySecureElement(METER_ID, Uint8Array.of(7)));
  const publicKey = se.publicKey("event_seal");
  const sector = options.geometry.sectorBytes;
  const region = { offset: sector, length: options.regionSectors * sector };
  const acked = new Map<number, string>();
  const result: CampaignResult = {
    cutPoints: 0,
    cutsMidErase: 0,
    cutsBetweenOperations: 0,
    opens: 0,
    acknowledged: 0,
    wraps: 0,
    tornSlotsSeen: 0,
    chainBreaksLogged: 0,
    readBitFlips: 0,
  };
  let nowMs = 1_800_000_000_000;
  const context = () =>
    `seed ${options.seed}, cut ${result.cutPoints}, geometry ${JSON.stringify(options.geometry)}`;

  const check = (log: AtomicRingLog) => {
    const records = log.records();
    assert.ok(records.length > 0, `empty log after recovery (${context()})`);
    const breaks = records.filter((r) => r.type === "CHAIN_BREAK");
    result.chainBreaksLogged = Math.max(result.chainBreaksLogged, breaks.length);
    for (const [i, record] of records.entries()) {
      assert.ok(
        se.signed.has(toHex(record.signedBytes)),
        `accepted a record nobody sealed: seq ${record.seq} (${context()})`,
      );
      if (i > 0) {
        const previous = records[i - 1]!;
        assert.ok(
          record.seq > previous.seq,
          `seq ${record.seq} after ${previous.seq}: duplicate or reorder (${context()})`,
        );
        if (record.seq !== previous.seq + 1 || toHex(record.prevDigest) !== toHex(previous.digest)) {
          assert.ok(
            disclosed(breaks, previous.seq + 1, record.seq),
            `undisclosed break before seq ${record.seq} (${context()})`,
          );
        }
      }
    }
    const first = records[0]!.seq;
    for (const [seq, digest] of acked) {
      if (seq < first) continue; // overwritten by the ring: verifyEventChain checks the LOG_WRAP below
      const found = records.find((r) => r.seq === seq);
      if (found === undefined) {
        assert.ok(disclosed(breaks, seq, seq), `acknowledged seq ${seq} lost (${context()})`);
      } else {
        assert.equal(toHex(found.digest), digest, `acknowledged seq ${seq} changed (${context()})`);
      }
    }
    const report = verifyEventChain(records, publicKey);
    if (flips === 0) {
      assert.deepEqual(report.problems, [], `chain problems after a clean power cut (${context()})`);
      assert.equal(breaks.length, 0, `CHAIN_BREAK logged without tampering or ghost reads (${context()})`);
    } else {
      // Ghost reads may lose a record; every such loss must be one the meter itself sealed a CHAIN_BREAK for.
      for (const problem of report.problems) {
        assert.ok(problem.code !== "BAD_SIGNATURE", `accepted a record with a bad signature (${context()})`);
        const seq = problem.seq ?? 0;
        assert.ok(
          disclosed(breaks, seq, seq),
          `${problem.code} at seq ${seq} without a CHAIN_BREAK (${context()})`,
        );
      }
    }
    assert.equal(log.recovery.breaksDeferred, 0);
    for (const record of records) acked.set(record.seq, toHex(record.digest));
    result.wraps = Math.max(result.wraps, records.filter((r) => r.type === "LOG_WRAP").length);
  };

  while (result.cutPoints < options.cuts) {
    const plan = rng.nextFloat();
    if (plan < 0.45) nvm.armPowerCut({ afterBytes: rng.nextInt(3 * 768), tornByteNoise: rng.chance(0.7) });
    else if (plan < 0.9) nvm.armPowerCut({ afterOps: rng.nextInt(14), tornByteNoise: rng.chance(0.7) });
    // else: the supply dies between two operations, after a random number of appends
    const appends = rng.intBetween(0, APPENDS_PER_CYCLE_MAX);
    try {
      nowMs += 60_000;
      const log = AtomicRingLog.open({
        nvm,
        region,
        meterId: METER_ID,
        secureElement: se,
        nowMs,
        timeQuality: "SYNCED",
      });
      result.opens++;
      result.tornSlotsSeen += log.recovery.tornSlots;
      check(log);
      for (let i = 0; i < appends; i++) {
        nowMs += 1000;
        const record: EventRecord = log.append({
          type: rng.pick(USER_TYPES),
          level: rng.pick(["INFO", "MINOR", "MAJOR", "CRITICAL"] as const),
          timestampMs: nowMs,
          startMs: nowMs - rng.nextInt(5000),
          endMs: rng.chance(0.5) ? null : nowMs,
          timeQuality: rng.pick(["RTC_ONLY", "SYNCED", "HOLDOVER"] as const),
          snapshot: {
            b_field_mt: rng.nextInt(200),
            pf_flag: rng.chance(0.5),
            note: "x".repeat(rng.nextInt(120)),
          },
        });
        acked.set(record.seq, toHex(record.digest));
        result.acknowledged++;
      }
      nvm.powerOff();
      result.cutsBetweenOperations++;
    } catch (error) {
      if (!isEvidenceError(error, "POWER_LOST")) throw error;
      if (error.where?.startsWith("sector")) result.cutsMidErase++;
    }
    result.cutPoints++;
    nvm.powerOn();
  }
  nvm.disarmPowerCut();
  nowMs += 60_000;
  check(
    AtomicRingLog.open({ nvm, region, meterId: METER_ID, secureElement: se, nowMs, timeQuality: "SYNCED" }),
  );
  // The ring never touches bytes outside its region.
  const image = nvm.image();
  const outside = [...image.subarray(0, region.offset), ...image.subarray(region.offset + region.length)];
  assert.ok(
    outside.every((b) => b === 0xff),
    `bytes outside the region were written (${context()})`,
  );
  result.readBitFlips = nvm.faultStats().readBitFlips;
  return result;
}

/** A CHAIN_BREAK record whose range covers [from, to] or names the record `to`. */
function disclosed(breaks: readonly EventRecord[], from: number, to: number): boolean {
  return breaks.some((b) => {
    const first = Number(b.snapshot.seq_first);
    const last = Number(b.snapshot.seq_last);
    return (first <= from && last >= to - 1) || first === to || (first <= to && last >= to);
  });
}

export function addResults(total: CampaignResult, part: CampaignResult): void {
  for (const key of Object.keys(total) as (keyof CampaignResult)[]) total[key] += part[key];
}

export function emptyResult(): CampaignResult {
  return {
    cutPoints: 0,
    cutsMidErase: 0,
    cutsBetweenOperations: 0,
    opens: 0,
    acknowledged: 0,
    wraps: 0,
    tornSlotsSeen: 0,
    chainBreaksLogged: 0,
    readBitFlips: 0,
  };
}
