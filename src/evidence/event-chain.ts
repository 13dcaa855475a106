import type { EvidenceProblem } from "./batch.ts";
import { bytesEqual, fromHex, toHex } from "./bytes.ts";
import { EvidenceError } from "./errors.ts";
import { type EventRecord, genesisDigest, verifyEventSignature } from "./records.ts";

// Snapshot keys of a LOG_WRAP record. The ring seals one before it erases its oldest sector, naming
// everything dropped so far, so a verifier can tell "overwritten by design" from "deleted".
export const LOG_WRAP_DROPPED_SEQ_LAST = "dropped_seq_last";
export const LOG_WRAP_DROPPED_LAST_DIGEST = "dropped_last_digest";

export interface EventChainGap {
  readonly class: "LOG_WRAP" | "CHAIN_BREAK_LOGGED";
  readonly message: string;
  readonly where: string;
}

export interface EventChainReport {
  readonly problems: EvidenceProblem[];
  readonly gaps: EventChainGap[];
}

/**
 * Checks one meter's sealed log, oldest → newest: every signature, seq continuity, the hash chain from
 * genesis (or from the latest LOG_WRAP summary when the oldest records were overwritten), and reports
 * the meter's own CHAIN_BREAK admissions as attributed gaps.
 */
export function verifyEventChain(records: readonly EventRecord[], publicKey: Uint8Array): EventChainReport {
  const problems: EvidenceProblem[] = [];
  const gaps: EventChainGap[] = [];
  const first = records[0];
  if (first === undefined) return { problems, gaps };
  const meterId = first.meterId;
  const at = (r: EventRecord) => `${r.meterId} seq ${r.seq}`;

  for (const record of records) {
    if (!verifyEventSignature(record, publicKey)) {
      problems.push({
        code: "BAD_SIGNATURE",
        message: `${record.type} record signature does not verify with the meter's event_seal key`,
        where: at(record),
        seq: record.seq,
        meterId,
      });
    }
    if (record.type === "CHAIN_BREAK") {
      gaps.push({
        class: "CHAIN_BREAK_LOGGED",
        message: `the meter sealed a CHAIN_BREAK: ${JSON.stringify(record.snapshot)}`,
        where: at(record),
      });
    }
  }

  if (first.seq === 1) {
    if (!bytesEqual(first.prevDigest, genesisDigest(meterId))) {
      problems.push({
        code: "CHAIN_BREAK",
        message: "first record does not link to the meter's genesis digest",
        where: at(first),
        seq: 1,
        meterId,
      });
    }
  } else {
    const wrap = [...records].reverse().find((r) => r.type === "LOG_WRAP");
    const droppedLast = wrap?.snapshot[LOG_WRAP_DROPPED_SEQ_LAST];
    const droppedDigest = wrap?.snapshot[LOG_WRAP_DROPPED_LAST_DIGEST];
    if (
      wrap !== undefined &&
      droppedLast === first.seq - 1 &&
      typeof droppedDigest === "string" &&
      safeHexEqual(droppedDigest, first.prevDigest)
    ) {
      gaps.push({
        class: "LOG_WRAP",
        message: `seq 1..${first.seq - 1} overwritten by the ring, sealed in LOG_WRAP seq ${wrap.seq}`,
        where: at(first),
      });
    } else {
      problems.push({
        code: "CHAIN_BREAK",
        message: `records before seq ${first.seq} are missing and no LOG_WRAP summary accounts for them`,
        where: at(first),
        seq: first.seq,
        meterId,
      });
    }
  }

  for (let i = 1; i < records.length; i++) {
    const previous = records[i - 1]!;
    const record = records[i]!;
    if (record.meterId !== meterId) continue; // reported by the caller that grouped the records
    if (record.seq !== previous.seq + 1) {
      problems.push({
        code: record.seq <= previous.seq ? "SEQ_DUPLICATE" : "SEQ_GAP",
        message: `seq ${record.seq} follows ${previous.seq}: records ${
          record.seq <= previous.seq
            ? "replayed or reordered"
            : `${previous.seq + 1}..${record.seq - 1} deleted`
        }`,
        where: at(record),
        seq: record.seq,
        meterId,
      });
    } else if (!bytesEqual(record.prevDigest, previous.digest)) {
      problems.push({
        code: "CHAIN_BREAK",
        message: `prev_digest ${toHex(record.prevDigest).slice(0, 16)}… does not match seq ${previous.seq} (${toHex(previous.digest).slice(0, 16)}…)`,
        where: at(record),
        seq: record.seq,
        meterId,
      });
    }
  }
  return { problems, gaps };
}

function safeHexEqual(hex: string, bytes: Uint8Array): boolean {
  try {
    return bytesEqual(fromHex(hex, "digest"), bytes);
  } catch (error) {
    if (error instanceof EvidenceError) return false;
    throw error;
  }
}
