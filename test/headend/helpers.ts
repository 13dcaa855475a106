// Shared fixtures of the head-end tests: fresh stores on both back ends, a concentrator that seals batches
// with sealBatch, a meter that seals events, a recording log.
import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  type Batch,
  type EventLevel,
  type EventRecord,
  type EventType,
  encodeBatch,
  genesisDigest,
  MemorySecureElement,
  type ReadingRecordFields,
  type Snapshot,
  sealEventRecord,
  sealReadingsBatch,
} from "../../src/evidence/index.ts";
import {
  type HeadendLog,
  type HeadendStore,
  isStoreError,
  openStore,
  type PostgresStore,
  type SqliteStore,
} from "../../src/headend/index.ts";

export const PG_URL = process.env.AMIPROOF_TEST_POSTGRES_URL ?? "postgres://postgres@127.0.0.1:5432/test";
export const T0 = 1_800_000_000_000;

export interface StoreHarness {
  readonly url: string;
  readonly schema: string | undefined;
  readonly store: HeadendStore;
  /** A second connection to the same database (the alert lane's). */
  open(): Promise<HeadendStore>;
  /** Raw SQL on the same database, bypassing the store (to inject faults). */
  exec(sql: string): Promise<void>;
  cleanup(): Promise<void>;
}

export interface Backend {
  readonly name: "sqlite" | "postgres";
  fresh(): Promise<StoreHarness>;
}

export const sqliteBackend: Backend = {
  name: "sqlite",
  async fresh() {
    const dir = mkdtempSync(join(tmpdir(), "amiproof-headend-"));
    const url = `sqlite:${join(dir, "headend.db")}`;
    const opened: HeadendStore[] = [];
    const open = async () => {
      const s = await openStore(url, { nowMs: T0 });
      opened.push(s);
      return s;
    };
    const store = await open();
    return {
      url,
      schema: undefined,
      store,
      open,
      async exec(sql) {
        (store as SqliteStore).rawConnection().exec(sql);
      },
      async cleanup() {
        for (const s of opened) await s.close();
        rmSync(dir, { recursive: true, force: true });
      },
    };
  },
};

export const postgresBackend: Backend = {
  name: "postgres",
  async fresh() {
    const schema = `amiproof_headend_${process.pid}_${randomBytes(4).toString("hex")}`;
    const opened: HeadendStore[] = [];
    const open = async () => {
      const s = await openStore(PG_URL, { nowMs: T0, schema }).catch((error: unknown) => {
        if (!isStoreError(error, "UNAVAILABLE")) throw error;
        throw new Error(
          `PostgreSQL at ${PG_URL} is unreachable (${error.message}); start it, or set AMIPROOF_NO_POSTGRES=1 to leave the PostgreSQL half out`,
        );
      });
      opened.push(s);
      return s;
    };
    const store = await open();
    return {
      url: `${PG_URL}?schema=${schema}`,
      schema,
      store,
      open,
      async exec(sql) {
        await (store as PostgresStore).rawSql().unsafe(sql);
      },
      async cleanup() {
        await (store as PostgresStore).dropSchema();
        for (const s of opened) await s.close();
      },
    };
  },
};

/** Both back ends unless AMIPROOF_NO_POSTGRES=1 (then said plainly in the output). */
export function backends(suite: string): Backend[] {
  if (process.env.AMIPROOF_NO_POSTGRES === "1") {
    console.log(`${suite}: AMIPROOF_NO_POSTGRES=1 — the PostgreSQL half was NOT run`);
    return [sqliteBackend];
  }
  return [sqliteBackend, postgresBackend];
}

/** A concentrator that seals consecutive batches of readings (commit_ids and seqs it is told). */
export class TestDcu {
  readonly se: MemorySecureElement;
  private prev: Uint8Array | undefined = undefined;
  nextBatchId = 1;
  nextCommitId = 1;
  readonly seqs = new Map<string, number>();
  epoch = 1;

  constructor(
    readonly dcuId: string,
    seed = 7,
  ) {
    this.se = new MemorySecureElement(dcuId, Uint8Array.of(seed));
  }

  get publicKey(): Uint8Array {
    return this.se.publicKey("batch_sign");
  }

  /** Readings for `meters`, `perMeter` each; `skipSeq` / `skipCommit` leave holes before the batch. */
  readings(
    meters: readonly string[],
    perMeter: number,
    opts: { skipSeq?: string; skipCommit?: number } = {},
  ) {
    const out: ReadingRecordFields[] = [];
    if (opts.skipCommit !== undefined) this.nextCommitId += opts.skipCommit;
    for (let k = 0; k < perMeter; k++) {
      for (const meterId of meters) {
        let seq = (this.seqs.get(meterId) ?? 0) + 1;
        if (opts.skipSeq === meterId && k === 0) seq++;
        this.seqs.set(meterId, seq);
        out.push({
          timestampMs: T0 + seq * 900_000,
          meterId,
          values: [{ obis: [1, 0, 1, 8, 0, 255], value: 10_000 + seq * 250, scaler: 0, unit: 30 }],
          seq,
          commitId: this.nextCommitId++,
          timeQuality: "SYNCED",
        });
      }
    }
    return out;
  }

  /** Seals the next batch over `readings`, chained to the previous one. */
  seal(readings: readonly ReadingRecordFields[]): Batch {
    const batch = sealReadingsBatch(
      {
        batchId: this.nextBatchId++,
        dcuId: this.dcuId,
        epoch: this.epoch,
        createdMs: T0,
        readings,
        prevBatchHash: this.prev,
      },
      (m) => this.se.sign("batch_sign", m),
    );
    this.prev = batch.header.batchHash;
    return batch;
  }

  next(
    meters: readonly string[],
    perMeter = 2,
    opts: { skipSeq?: string; skipCommit?: number } = {},
  ): Uint8Array {
    return encodeBatch(this.seal(this.readings(meters, perMeter, opts)));
  }
}

/** A meter sealing a chained event log with its event_seal key. */
export class TestMeter {
  readonly se: MemorySecureElement;
  private prevDigest: Uint8Array;
  seq = 0;

  constructor(
    readonly meterId: string,
    seed = 9,
  ) {
    this.se = new MemorySecureElement(meterId, Uint8Array.of(seed));
    this.prevDigest = genesisDigest(meterId);
  }

  get publicKey(): Uint8Array {
    return this.se.publicKey("event_seal");
  }

  event(type: EventType, level: EventLevel, timestampMs: number, snapshot: Snapshot = {}): EventRecord {
    const record = sealEventRecord(
      {
        meterId: this.meterId,
        seq: ++this.seq,
        type,
        level,
        timestampMs,
        startMs: timestampMs,
        endMs: null,
        timeQuality: "SYNCED",
        snapshot,
        prevDigest: this.prevDigest,
      },
      (m) => this.se.sign("event_seal", m),
    );
    this.prevDigest = record.digest;
    return record;
  }
}

export interface LogLine {
  readonly level: string;
  readonly message: string;
  readonly detail: Record<string, unknown>;
}

export function recordingLog(): HeadendLog & { lines: LogLine[] } {
  const lines: LogLine[] = [];
  const at = (level: string) => (detail: Record<string, unknown>, message: string) => {
    lines.push({ level, message, detail });
  };
  return { lines, debug: at("debug"), info: at("info"), warn: at("warn"), error: at("error") };
}
