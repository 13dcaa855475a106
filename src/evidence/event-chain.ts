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

  // Breaks the meter found itself and sealed as CHAIN_BREAK records (snapshot: problem, seq_first, seq_last).
  const disclosed = records
    .filter((r) => r.type === "CHAIN_BREAK")
    .map((r) => ({
      problem: r.snapshot.problem,
      first: r.snapshot.seq_first,
      last: r.snapshot.seq_last,
      by: r.seq,
    }))
    .filter((d) => typeof d.first === "number" && typeof d.last === "number");
  const disclosedBy = (problem: string, first: number, last: number) =>
    disclosed.find(
      (d) => d.problem === problem && (d.first as number) <= first && (d.last as number) >= last,
    );

  for (let i = 1; i < records.length; i++) {
    const previous = records[i - 1]!;
    const record = records[i]!;
    if (record.meterId !== meterId) continue; // reported by the caller that grouped the records
    if (record.seq !== previous.seq + 1) {
      const missingFirst = previous.seq + 1;
      const missingLast = record.seq - 1;
      const disclosure =
        record.seq > previous.seq ? disclosedBy("SEQ_GAP", missingFirst, missingLast) : undefined;
      if (disclosure === undefined) {
        problems.push({
          code: record.seq <= previous.seq ? "SEQ_DUPLICATE" : "SEQ_GAP",
          message: `seq ${record.seq} follows ${previous.seq}: records ${
            record.seq <= previous.seq ? "replayed or reordered" : `${missingFirst}..${missingLast} deleted`
          }`,
          where: at(record),
          seq: record.seq,
          meterId,
        });
        continue;
      }
      gaps.push({
        class: "CHAIN_BREAK_LOGGED",
        message: `seq ${missingFirst}..${missingLast} lost; disclosed by CHAIN_BREAK seq ${disclosure.by}`,
        where: at(record),
      });
      continue; // the record links to the lost one: its link cannot be checked, the admission stands for it
    }
    if (!bytesEqual(record.prevDigest, previous.digest)) {
      const disclosure = disclosedBy("CHAIN_BREAK", record.seq, record.seq);
      if (disclosure === undefined) {
        problems.push({
          code: "CHAIN_BREAK",
          message: `prev_digest ${toHex(record.prevDigest).slice(0, 16)}… does not match seq ${previous.seq} (${toHex(previous.digest).slice(0, 16)}…)`,
          where: at(record),
          seq: record.seq,
          meterId,
        });
      } else {
        gaps.push({
          class: "CHAIN_BREAK_LOGGED",
          message: `broken link at seq ${record.seq}; disclosed by CHAIN_BREAK seq ${disclosure.by}`,
          where: at(record),
        });
      }
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
