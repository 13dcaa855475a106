import { type EvidenceProblem, verifyBatch } from "./batch.ts";
import { fromHex, toHex } from "./bytes.ts";
import { keyFingerprint, P256_PUBLIC_KEY_BYTES } from "./crypto.ts";
import { EvidenceError } from "./errors.ts";
import { verifyEventChain } from "./event-chain.ts";
import {
  type Batch,
  batchGenesisHash,
  decodeBatchHeader,
  decodeEventRecord,
  decodeReadingRecord,
  type EventRecord,
  type ReadingRecord,
} from "./records.ts";
import { KEY_PURPOSES, type KeyPurpose } from "./secure-element.ts";

// An evidence bundle is a JSON document holding only structure and signed content (hex): every
// meaningful byte is either covered by a CRC/signature/Merkle root or cross-checked against one.

export const BUNDLE_FORMAT = "amiproof-evidence-bundle";
export const BUNDLE_VERSION = 1;
export const BUNDLE_RECORDS_MAX = 1_000_000;

export interface BundleKey {
  readonly keyId: string;
  readonly owner: string;
  readonly purpose: KeyPurpose;
  readonly publicKey: Uint8Array;
}

export interface MeterLogSection {
  readonly meterId: string;
  readonly keyId: string;
  /** Oldest → newest, as read from the meter's sealed log. */
  readonly records: readonly EventRecord[];
}

export interface BatchChainSection {
  readonly dcuId: string;
  readonly keyId: string;
  /** Consecutive batches of one concentrator, oldest first. */
  readonly batches: readonly Batch[];
}

export interface EvidenceBundle {
  readonly keys: readonly BundleKey[];
  readonly meterLogs: readonly MeterLogSection[];
  readonly batchChains: readonly BatchChainSection[];
}

export function bundleKey(owner: string, purpose: KeyPurpose, publicKey: Uint8Array): BundleKey {
  return { keyId: keyFingerprint(publicKey), owner, purpose, publicKey };
}

export function encodeBundle(bundle: EvidenceBundle): string {
  const json = {
    format: BUNDLE_FORMAT,
    version: BUNDLE_VERSION,
    keys: bundle.keys.map((k) => ({
      key_id: k.keyId,
      owner: k.owner,
      purpose: k.purpose,
      public_key: toHex(k.publicKey),
    })),
    meter_logs: bundle.meterLogs.map((log) => ({
      meter_id: log.meterId,
      key_id: log.keyId,
      records: log.records.map((r) => toHex(r.bytes)),
    })),
    batch_chains: bundle.batchChains.map((chain) => ({
      dcu_id: chain.dcuId,
      key_id: chain.keyId,
      batches: chain.batches.map((b) => ({
        header: toHex(b.header.bytes),
        records: b.records.map((r) => toHex(r.bytes)),
      })),
    })),
  };
  return `${JSON.stringify(json, null, 1)}\n`;
}

/** A gap the evidence explains (not a forgery): reported, attributed, and not a reason to reject. */
export interface EvidenceGap {
  readonly class: "SEQ_GAP" | "COMMIT_GAP" | "LOG_WRAP" | "CHAIN_BREAK_LOGGED";
  readonly message: string;
  readonly where: string;
}

export interface BundleReport {
  readonly valid: boolean;
  readonly problems: EvidenceProblem[];
  readonly gaps: EvidenceGap[];
  readonly keys: { keyId: string; owner: string; purpose: string }[];
  readonly counts: {
    meterLogs: number;
    eventRecords: number;
    batchChains: number;
    batches: number;
    readings: number;
  };
}

interface RawBundle {
  keys: { key_id: string; owner: string; purpose: string; public_key: string }[];
  meter_logs: { meter_id: string; key_id: string; records: string[] }[];
  batch_chains: { dcu_id: string; key_id: string; batches: { header: string; records: string[] }[] }[];
}

/** Reads and checks a bundle; structural problems throw BAD_BUNDLE, evidence problems are reported. */
export function verifyBundleText(text: string): BundleReport {
  const raw = parseRawBundle(text);
  const problems: EvidenceProblem[] = [];
  const gaps: EvidenceGap[] = [];
  const counts = { meterLogs: 0, eventRecords: 0, batchChains: 0, batches: 0, readings: 0 };
  const keys = new Map<string, BundleKey>();
  raw.keys.forEach((k, i) => {
    const publicKey = fromHex(k.public_key, `keys[${i}].public_key`);
    if (publicKey.length !== P256_PUBLIC_KEY_BYTES) bad(`keys[${i}].public_key is not a P-256 public key`);
    if (keyFingerprint(publicKey) !== k.key_id) bad(`keys[${i}].key_id does not match its public key`);
    if (!KEY_PURPOSES.includes(k.purpose as KeyPurpose)) bad(`keys[${i}].purpose "${k.purpose}" is unknown`);
    keys.set(k.key_id, { keyId: k.key_id, owner: k.owner, purpose: k.purpose as KeyPurpose, publicKey });
  });
  const keyFor = (keyId: string, owner: string, purpose: KeyPurpose, where: string): BundleKey => {
    const key = keys.get(keyId);
    if (key === undefined) bad(`${where}: key ${keyId} is not in the bundle`);
    if (key.owner !== owner || key.purpose !== purpose) {
      bad(`${where}: key ${keyId} belongs to ${key.owner}/${key.purpose}, not ${owner}/${purpose}`);
    }
    return key;
  };

  for (const log of raw.meter_logs) {
    counts.meterLogs++;
    const where = `meter log ${log.meter_id}`;
    const key = keyFor(log.key_id, log.meter_id, "event_seal", where);
    const records: EventRecord[] = [];
    counts.eventRecords += log.records.length;
    for (const [index, hex] of log.records.entries()) {
      try {
        const record = decodeEventRecord(fromHex(hex, `${where} record ${index + 1}`));
        if (record.meterId !== log.meter_id) {
          problems.push({
            code: "BAD_FIELD",
            message: `record belongs to ${record.meterId}`,
            where: `${where} record ${index + 1} (seq ${record.seq})`,
            seq: record.seq,
            meterId: log.meter_id,
          });
        }
        records.push(record);
      } catch (error) {
        problems.push(decodeProblem(error, `${where} record ${index + 1}`, log.meter_id));
        break; // later records cannot be chained past an unreadable one
      }
    }
    const chain = verifyEventChain(records, key.publicKey);
    problems.push(...chain.problems);
    gaps.push(...chain.gaps);
  }

  for (const section of raw.batch_chains) {
    counts.batchChains++;
    counts.readings += section.batches.reduce((sum, b) => sum + b.records.length, 0);
    const where = `batch chain ${section.dcu_id}`;
    const key = keyFor(section.key_id, section.dcu_id, "batch_sign", where);
    let previous: Batch | undefined;
    counts.batches += section.batches.length;
    for (const [index, rawBatch] of section.batches.entries()) {
      const at = `${where} batch ${index + 1}`;
      let batch: Batch;
      try {
        const header = decodeBatchHeader(fromHex(rawBatch.header, `${at} header`));
        const records: ReadingRecord[] = rawBatch.records.map((hex, i) => {
          try {
            return decodeReadingRecord(fromHex(hex, `${at} record ${i + 1}`));
          } catch (error) {
            throw new Located(error, `${at} (batch_id ${header.batchId}) record ${i + 1}`);
          }
        });
        batch = { header, records };
      } catch (error) {
        if (error instanceof Located) problems.push(decodeProblem(error.cause, error.where, section.dcu_id));
        else problems.push(decodeProblem(error, `${at} header`, section.dcu_id));
        break;
      }
      if (batch.header.dcuId !== section.dcu_id) {
        problems.push({ code: "BAD_FIELD", message: `batch belongs to ${batch.header.dcuId}`, where: at });
      }
      const expectedPrev =
        previous === undefined
          ? batch.header.batchId === 1
            ? batchGenesisHash(section.dcu_id)
            : undefined
          : previous.header.batchHash;
      problems.push(...verifyBatch(batch, key.publicKey, expectedPrev));
      if (previous !== undefined) {
        const p = previous.header;
        if (batch.header.commitIdFirst !== p.commitIdLast + 1) {
          gaps.push({
            class: "COMMIT_GAP",
            message: `commit_id jumps from ${p.commitIdLast} to ${batch.header.commitIdFirst}${
              batch.header.epoch !== p.epoch
                ? ` across recovery epochs ${p.epoch} → ${batch.header.epoch}`
                : ""
            }`,
            where: at,
          });
        }
        for (const range of batch.header.meterRanges) {
          const before = p.meterRanges.find((r) => r.meterId === range.meterId);
          if (before !== undefined && range.seqFirst > before.seqLast + 1) {
            gaps.push({
              class: "SEQ_GAP",
              message: `${range.meterId} seq ${before.seqLast + 1}..${range.seqFirst - 1} not in the bundle`,
              where: at,
            });
          }
        }
      }
      for (const range of batch.header.meterRanges) {
        if (range.count < range.seqLast - range.seqFirst + 1) {
          gaps.push({
            class: "SEQ_GAP",
            message: `${range.meterId}: ${range.seqLast - range.seqFirst + 1 - range.count} seq missing inside ${range.seqFirst}..${range.seqLast}`,
            where: at,
          });
        }
      }
      previous = batch;
    }
  }

  return {
    valid: problems.length === 0,
    problems,
    gaps,
    keys: [...keys.values()].map((k) => ({ keyId: k.keyId, owner: k.owner, purpose: k.purpose })),
    counts,
  };
}

class Located {
  constructor(
    readonly cause: unknown,
    readonly where: string,
  ) {}
}

function decodeProblem(error: unknown, where: string, meterId: string): EvidenceProblem {
  if (error instanceof EvidenceError) {
    const seq = error.where?.match(/seq (\d+)/)?.[1];
    return {
      code: error.code,
      message: error.reason,
      where: error.where === undefined ? where : `${where} (${error.where})`,
      meterId,
      ...(seq === undefined ? {} : { seq: Number(seq) }),
    };
  }
  throw error;
}

function bad(message: string): never {
  throw new EvidenceError("BAD_BUNDLE", message);
}

const TOP_KEYS = ["format", "version", "keys", "meter_logs", "batch_chains"];

function parseRawBundle(text: string): RawBundle {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (error) {
    bad(`not JSON: ${(error as Error).message}`);
  }
  const top = object(json, "bundle", TOP_KEYS);
  if (top.format !== BUNDLE_FORMAT)
    bad(`format is ${JSON.stringify(top.format)}, expected "${BUNDLE_FORMAT}"`);
  if (top.version !== BUNDLE_VERSION) {
    throw new EvidenceError(
      "BAD_VERSION",
      `bundle version ${JSON.stringify(top.version)}, this build reads ${BUNDLE_VERSION}`,
    );
  }
  let total = 0;
  const hexList = (value: unknown, where: string): string[] => {
    const list = array(value, where).map((item, i) => string(item, `${where}[${i}]`));
    total += list.length;
    if (total > BUNDLE_RECORDS_MAX) bad(`more than ${BUNDLE_RECORDS_MAX} records`);
    return list;
  };
  return {
    keys: array(top.keys, "keys").map((item, i) => {
      const k = object(item, `keys[${i}]`, ["key_id", "owner", "purpose", "public_key"]);
      return {
        key_id: string(k.key_id, `keys[${i}].key_id`),
        owner: string(k.owner, `keys[${i}].owner`),
        purpose: string(k.purpose, `keys[${i}].purpose`),
        public_key: string(k.public_key, `keys[${i}].public_key`),
      };
    }),
    meter_logs: array(top.meter_logs, "meter_logs").map((item, i) => {
      const log = object(item, `meter_logs[${i}]`, ["meter_id", "key_id", "records"]);
      return {
        meter_id: string(log.meter_id, `meter_logs[${i}].meter_id`),
        key_id: string(log.key_id, `meter_logs[${i}].key_id`),
        records: hexList(log.records, `meter_logs[${i}].records`),
      };
    }),
    batch_chains: array(top.batch_chains, "batch_chains").map((item, i) => {
      const chain = object(item, `batch_chains[${i}]`, ["dcu_id", "key_id", "batches"]);
      return {
        dcu_id: string(chain.dcu_id, `batch_chains[${i}].dcu_id`),
        key_id: string(chain.key_id, `batch_chains[${i}].key_id`),
        batches: array(chain.batches, `batch_chains[${i}].batches`).map((b, j) => {
          const where = `batch_chains[${i}].batches[${j}]`;
          const batch = object(b, where, ["header", "records"]);
          return {
            header: string(batch.header, `${where}.header`),
            records: hexList(batch.records, `${where}.records`),
          };
        }),
      };
    }),
  };
}

function object(value: unknown, where: string, allowed: readonly string[]): Record<string, unknown> {
  if (typeof value !== "object" || value === null || Array.isArray(value)) bad(`${where} must be an object`);
  for (const key of Object.keys(value)) {
    if (!allowed.includes(key)) bad(`${where} has an unknown field "${key}"`);
  }
  for (const key of allowed) if (!(key in value)) bad(`${where} lacks "${key}"`);
  return value as Record<string, unknown>;
}

function array(value: unknown, where: string): unknown[] {
  if (!Array.isArray(value)) bad(`${where} must be an array`);
  return value;
}

function string(value: unknown, where: string): string {
  if (typeof value !== "string") bad(`${where} must be a string`);
  return value;
}
