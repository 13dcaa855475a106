import { bytesEqual, fromHex, toHex } from "./bytes.ts";
import { SHA256_BYTES } from "./crypto.ts";
import { EvidenceError } from "./errors.ts";
import { LOG_WRAP_DROPPED_LAST_DIGEST, LOG_WRAP_DROPPED_SEQ_LAST } from "./event-chain.ts";
import { checkNvmRegion, NVM_ERASED_BYTE } from "./nvm.ts";
import type { NvmDevice, NvmRegion } from "./nvm-types.ts";
import {
  decodeEventRecord,
  EVENT_RECORD_BYTES_MAX,
  type EventLevel,
  type EventRecord,
  type EventType,
  genesisDigest,
  type Snapshot,
  sealEventRecord,
  type TimeQuality,
  verifyEventSignature,
} from "./records.ts";
import type { SecureElement } from "./secure-element.ts";

// The meter's sealed event log (seed 002 H2-5 "ring log + atomic commit", H2-7 "make it court-proof"):
// a ring of fixed-size slots on a NOR region. Each record carries seq, CRC, the previous record's digest
// and an ECDSA signature (records.ts); the ring adds the atomic commit and the recovery rules.
//
// Slot layout (one slot = RINGLOG_SLOT_HEADER_BYTES + EVENT_RECORD_BYTES_MAX rounded up to whole pages):
//   byte 0      commit marker: 0xFF erased, 0x00 committed. Programmed only after the record bytes
//               are fully written and synced, so "marker set" implies "record complete".
//   byte 1      void marker: 0xFF live, 0x00 voided. Recovery voids every slot it rejects, so a later
//               scan (with different ghost bit flips) can never change its mind about a torn slot.
//   bytes 2..5  record length u16 big-endian, then its one's complement (a torn length never passes).
//   bytes 6..   the encoded EventRecord.
// A marker byte counts as programmed when at most 4 of its 8 bits are 1: one or two ghost flips on
// read cannot turn an erased marker into a committed one or back.
//
// Ring rules:
// - Spare sector: the sector after the write cursor's sector is kept erased. Before erasing a sector
//   that still holds retained records, a LOG_WRAP record naming the dropped seq range and the digest of
//   the last dropped record is sealed, so a verifier of the retained window tells overwrite from deletion.
//   A sector that is not erased but holds no retained record (torn wrap attempts in a flicker storm, an
//   erase cut short) is erased before use; nothing it holds is evidence the chain still needs.
// - Recovery (open) scans every slot, accepts only records with a committed marker, a valid length,
//   CRC, meter id and signature, rebuilds the chain from genesis or the newest LOG_WRAP, and logs every
//   break it finds (seq gap, broken link, duplicate seq, tail lost against the secure element's monotonic
//   counter) as a sealed CHAIN_BREAK record, once. Then it seals a RECOVERY record.

export const RINGLOG_SLOT_HEADER_BYTES = 6;
const SLOT_MARKER_AT = 0;
const SLOT_VOID_AT = 1;
const SLOT_LENGTH_AT = 2;
const SLOT_RECORD_AT = RINGLOG_SLOT_HEADER_BYTES;
const MARKER_PROGRAMMED = 0x00;
/** A marker byte with at most this many bits still at 1 is programmed (see the layout note above). */
const MARKER_ONES_MAX = 4;
/** An uncommitted slot with this few programmed bits may be an erased slot misread: read it again. */
const NEAR_ERASED_ZERO_BITS_MAX = 2;

/** Reads of one slot before recovery gives up on it: ghost flips are transient, torn data is not. */
export const RINGLOG_SLOT_READ_ATTEMPTS_MAX = 3;
/** CHAIN_BREAK records one recovery seals; further breaks are logged by the following recoveries. */
export const RINGLOG_CHAIN_BREAKS_PER_RECOVERY_MAX = 8;
export const RINGLOG_SECTORS_MIN = 2;
/** A sector must hold a LOG_WRAP and at least one more record. */
export const RINGLOG_SLOTS_PER_SECTOR_MIN = 2;
/** Bound on the recovery scan (and on the in-memory index): 64 Ki slots ≈ 48 MiB of log at 768 B. */
export const RINGLOG_SLOTS_MAX = 65_536;
/** Event types only the ring itself seals: a caller could otherwise forge the ring's own bookkeeping. */
export const RINGLOG_RESERVED_TYPES: readonly EventType[] = ["LOG_WRAP", "CHAIN_BREAK", "RECOVERY"];

export interface RingLogLayout {
  readonly slotBytes: number;
  readonly slotsPerSector: number;
  readonly sectors: number;
  readonly slots: number;
  /** Index of the region's first sector on the device. */
  readonly firstSector: number;
  /** Bytes at the end of each sector that no slot uses (kept erased). */
  readonly sectorTailBytes: number;
}

export function ringLogLayout(geometry: NvmDevice["geometry"], region: NvmRegion): RingLogLayout {
  checkNvmRegion(geometry, region);
  const slotBytes =
    Math.ceil((RINGLOG_SLOT_HEADER_BYTES + EVENT_RECORD_BYTES_MAX) / geometry.pageBytes) * geometry.pageBytes;
  const slotsPerSector = Math.floor(geometry.sectorBytes / slotBytes);
  const sectors = region.length / geometry.sectorBytes;
  if (sectors < RINGLOG_SECTORS_MIN || slotsPerSector < RINGLOG_SLOTS_PER_SECTOR_MIN) {
    throw new EvidenceError(
      "NVM_RANGE",
      `a ring log needs ≥ ${RINGLOG_SECTORS_MIN} sectors of ≥ ${RINGLOG_SLOTS_PER_SECTOR_MIN} ${slotBytes}-byte slots; region has ${sectors} sectors of ${slotsPerSector}`,
    );
  }
  if (sectors * slotsPerSector > RINGLOG_SLOTS_MAX) {
    throw new EvidenceError(
      "NVM_RANGE",
      `region holds ${sectors * slotsPerSector} slots, at most ${RINGLOG_SLOTS_MAX}`,
    );
  }
  return {
    slotBytes,
    slotsPerSector,
    sectors,
    slots: sectors * slotsPerSector,
    firstSector: region.offset / geometry.sectorBytes,
    sectorTailBytes: geometry.sectorBytes - slotsPerSector * slotBytes,
  };
}

/** What a caller logs; seq, meter id, prev_digest, CRC and signature are the ring's business. */
export interface RingLogEvent {
  readonly type: EventType;
  readonly level: EventLevel;
  readonly timestampMs: number;
  /** Default timestampMs. */
  readonly startMs?: number;
  /** Default null (still active / instantaneous without duration). */
  readonly endMs?: number | null;
  readonly timeQuality: TimeQuality;
  readonly snapshot?: Snapshot;
}

export interface AtomicRingLogOptions {
  readonly nvm: NvmDevice;
  readonly region: NvmRegion;
  readonly meterId: string;
  readonly secureElement: SecureElement;
  /** Key the scan checks signatures with; default the element's event_seal key. */
  readonly publicKey?: Uint8Array;
  /** Time stamp of the records recovery itself seals (CHAIN_BREAK, RECOVERY, LOG_WRAP). */
  readonly nowMs: number;
  readonly timeQuality: TimeQuality;
  /**
   * Name of the secure element's monotonic counter that holds the last acknowledged seq: it reveals a
   * log cut back at its newest end, which a hash chain alone cannot. Default `event_log_seq/<meterId>`;
   * null disables the check.
   */
  readonly seqCounter?: string | null;
}

export type ChainBreakProblem = "SEQ_GAP" | "CHAIN_BREAK" | "SEQ_DUPLICATE";

/** One break found by recovery; sealed as a CHAIN_BREAK record with these fields (snake_case). */
export interface RingLogChainBreak {
  readonly problem: ChainBreakProblem;
  /** SEQ_GAP: the missing range. CHAIN_BREAK / SEQ_DUPLICATE: the record concerned (first = last). */
  readonly seqFirst: number;
  readonly seqLast: number;
  /** Digest the chain expected (previous record's digest, or the kept duplicate); null when unknown. */
  readonly expectedDigest: Uint8Array | null;
  /** Digest found instead (the record's prev_digest, or the other duplicate); null when nothing was found. */
  readonly foundDigest: Uint8Array | null;
}

export interface RingLogRecoveryReport {
  /** Retained records accepted, before recovery sealed its own. */
  readonly recordsFound: number;
  /** Non-erased slots rejected: torn (no marker, bad length, CRC or signature), foreign or voided. */
  readonly tornSlots: number;
  readonly slotsVoided: number;
  readonly markersCompleted: number;
  /** Valid records already summarised by a LOG_WRAP (a wrap erase cut short); erased, not retained. */
  readonly supersededRecords: number;
  readonly bytesScanned: number;
  /** Slot reads repeated because a read did not verify (ghost bit flips). */
  readonly readRetries: number;
  /** Breaks found this time and sealed as CHAIN_BREAK records. */
  readonly chainBreaks: readonly RingLogChainBreak[];
  /** Breaks found again that an existing CHAIN_BREAK record already discloses. */
  readonly breaksAlreadyLogged: number;
  /** Breaks left for the next recovery (over RINGLOG_CHAIN_BREAKS_PER_RECOVERY_MAX). */
  readonly breaksDeferred: number;
  /** Newest retained seq before recovery appended anything (0 for an empty log). */
  readonly headSeqBefore: number;
  readonly sectorsErased: number;
  /** The RECOVERY record this open sealed. */
  readonly recoveryRecord: EventRecord;
}

export interface RingLogStats {
  readonly layout: RingLogLayout;
  readonly retainedRecords: number;
  readonly wrapsSealed: number;
  readonly sectorsErased: number;
}

enum SlotState {
  Erased = 0,
  /** Programmed but holds no retained record (torn, voided, superseded, duplicate, foreign). */
  Used = 1,
  Retained = 2,
}

interface Retained {
  readonly record: EventRecord;
  readonly slot: number;
}

interface Anchor {
  readonly seq: number;
  readonly digest: Uint8Array;
}

type SlotRead =
  | { kind: "erased" }
  | { kind: "record"; record: EventRecord; markerExact: boolean }
  | { kind: "rejected"; voided: boolean };

export class AtomicRingLog {
  readonly layout: RingLogLayout;
  readonly meterId: string;
  readonly publicKey: Uint8Array;

  private readonly nvm: NvmDevice;
  private readonly region: NvmRegion;
  private readonly se: SecureElement;
  private readonly seqCounter: string | null;
  private readonly slotState: Uint8Array;
  private readonly sectorErased: boolean[];
  /** Retained records, oldest → newest (ascending seq). */
  private retained: Retained[] = [];
  /** Newest LOG_WRAP summary: records up to this seq are overwritten by design. */
  private dropped: Anchor | null = null;
  private cursor = 0;
  private nextSeq = 1;
  private head: Uint8Array;
  private failed: EvidenceError | null = null;
  private report: RingLogRecoveryReport | null = null;
  private wraps = 0;
  private erases = 0;

  private constructor(options: AtomicRingLogOptions) {
    this.nvm = options.nvm;
    this.region = options.region;
    this.layout = ringLogLayout(options.nvm.geometry, options.region);
    this.meterId = options.meterId;
    this.se = options.secureElement;
    this.publicKey = options.publicKey ?? options.secureElement.publicKey("event_seal");
    this.seqCounter =
      options.seqCounter === undefined ? `event_log_seq/${options.meterId}` : options.seqCounter;
    this.slotState = new Uint8Array(this.layout.slots);
    this.sectorErased = new Array<boolean>(this.layout.sectors).fill(false);
    this.head = genesisDigest(options.meterId);
  }

  /**
   * Recovers the log from the region (see the header comment), seals the CHAIN_BREAK records it owes
   * and a RECOVERY record, and returns the log ready to append; `log.recovery` holds the report.
   * Throws POWER_LOST if the device dies meanwhile (open again after power returns).
   */
  static open(options: AtomicRingLogOptions): AtomicRingLog {
    const log = new AtomicRingLog(options);
    log.recover(options.nowMs, options.timeQuality);
    return log;
  }

  /** What the open() that produced this log found and did. */
  get recovery(): RingLogRecoveryReport {
    if (this.report === null)
      throw new EvidenceError("JOURNAL_CLOSED", "the log was not recovered", this.meterId);
    return this.report;
  }

  /** Seq of the newest record (0 when empty). */
  get lastSeq(): number {
    return this.retained.at(-1)?.record.seq ?? this.dropped?.seq ?? 0;
  }

  /** Digest the next record links to. */
  get headDigest(): Uint8Array {
    return this.head.slice();
  }

  /** Retained records, oldest → newest. */
  records(): EventRecord[] {
    return this.retained.map((r) => r.record);
  }

  /** Retained records with seq ≥ `seq`, oldest → newest. */
  readFrom(seq: number): EventRecord[] {
    return this.retained.filter((r) => r.record.seq >= seq).map((r) => r.record);
  }

  stats(): RingLogStats {
    return {
      layout: this.layout,
      retainedRecords: this.retained.length,
      wrapsSealed: this.wraps,
      sectorsErased: this.erases,
    };
  }

  /**
   * Seals and commits one event. Durable when it returns (data synced, then marker synced). A failure
   * part-way (POWER_LOST, IO) leaves the log refusing further appends until it is opened again.
   */
  append(event: RingLogEvent): EventRecord {
    if (RINGLOG_RESERVED_TYPES.includes(event.type)) {
      throw new EvidenceError(
        "BAD_FIELD",
        `${event.type} records are sealed by the ring log itself`,
        this.meterId,
      );
    }
    return this.guarded(() => this.commit(event));
  }

  // ───────────────────────────── writing ─────────────────────────────

  private guarded<T>(action: () => T): T {
    if (this.failed !== null) {
      throw new EvidenceError(
        "JOURNAL_CLOSED",
        `event log stopped after ${this.failed.code}; open it again to recover`,
        this.meterId,
      );
    }
    try {
      return action();
    } catch (error) {
      // A field error is refused before anything reaches flash; anything else may have left a torn slot.
      if (!(error instanceof EvidenceError && error.code === "BAD_FIELD")) {
        this.failed =
          error instanceof EvidenceError
            ? error
            : new EvidenceError("IO", (error as Error).message, this.meterId);
      }
      throw error;
    }
  }

  private commit(event: RingLogEvent): EventRecord {
    for (let attempt = 0; attempt <= this.layout.slotsPerSector; attempt++) {
      const slot = this.prepareSlot(event.timestampMs, event.timeQuality);
      const record = this.seal(event);
      if (this.writeSlot(slot, record)) return record;
    }
    throw new EvidenceError(
      "LOG_FULL",
      `no slot accepted a program after ${this.layout.slotsPerSector + 1} attempts (device not erasing?)`,
      this.meterId,
    );
  }

  private seal(event: RingLogEvent): EventRecord {
    return sealEventRecord(
      {
        meterId: this.meterId,
        seq: this.nextSeq,
        type: event.type,
        level: event.level,
        timestampMs: event.timestampMs,
        startMs: event.startMs ?? event.timestampMs,
        endMs: event.endMs ?? null,
        timeQuality: event.timeQuality,
        snapshot: event.snapshot ?? {},
        prevDigest: this.head,
      },
      (message) => this.se.sign("event_seal", message),
    );
  }

  /**
   * Returns an erased slot at or after the cursor, keeping the sector after the cursor's sector erased.
   * May seal a LOG_WRAP and erase sectors on the way.
   */
  private prepareSlot(timestampMs: number, timeQuality: TimeQuality): number {
    const { sectors, slotsPerSector } = this.layout;
    const rounds = 4 * (sectors + slotsPerSector);
    for (let round = 0; round < rounds; round++) {
      const sector = this.sectorOf(this.cursor);
      const next = (sector + 1) % sectors;
      if (!this.sectorErased[sector] && !this.holdsRetained(sector)) {
        // Nothing retained here: torn slots from a flicker storm, or a sector whose erase was cut short
        // (its bytes that read 0xFF may be weakly erased). Start it clean.
        this.erase(sector);
        this.cursor = sector * slotsPerSector;
        continue;
      }
      if (!this.sectorErased[next]) {
        if (!this.holdsRetained(next)) {
          this.erase(next); // torn slots, superseded records or garbage only: nothing to summarise
          continue;
        }
        const free = this.freeSlotFrom(this.cursor);
        if (free !== null) {
          const wrap = this.seal({
            type: "LOG_WRAP",
            level: "INFO",
            timestampMs,
            endMs: timestampMs,
            timeQuality,
            snapshot: this.wrapSnapshot(next),
          });
          if (this.writeSlot(free, wrap)) {
            this.wraps++;
            this.erase(next);
          }
          continue;
        }
        throw new EvidenceError(
          "LOG_FULL",
          `sectors ${sector} and ${next} both hold retained records and no slot is free: the ring layout was altered`,
          this.meterId,
        );
      }
      const free = this.freeSlotFrom(this.cursor);
      if (free !== null) {
        this.cursor = free;
        return free;
      }
      this.cursor = next * slotsPerSector;
    }
    throw new EvidenceError("LOG_FULL", `no writable slot after ${rounds} rounds`, this.meterId);
  }

  private wrapSnapshot(sector: number): Snapshot {
    const dropped = this.retained.filter((r) => this.sectorOf(r.slot) === sector);
    const last = dropped.reduce((a, b) => (b.record.seq > a.record.seq ? b : a));
    const first = dropped.reduce((a, b) => (b.record.seq < a.record.seq ? b : a));
    return {
      sector,
      dropped_count: dropped.length,
      dropped_seq_first: first.record.seq,
      [LOG_WRAP_DROPPED_SEQ_LAST]: last.record.seq,
      [LOG_WRAP_DROPPED_LAST_DIGEST]: toHex(last.record.digest),
    };
  }

  /**
   * Two-step commit: header + record, sync, marker, sync. False when the slot turned out not to be
   * erased (a ghost read during the scan): the slot is voided and the caller tries the next one.
   */
  private writeSlot(slot: number, record: EventRecord): boolean {
    const { slotBytes } = this.layout;
    const { pageBytes } = this.nvm.geometry;
    const base = this.slotOffset(slot);
    const length = record.bytes.length;
    const body = new Uint8Array(RINGLOG_SLOT_HEADER_BYTES - SLOT_LENGTH_AT + length);
    body[0] = length >>> 8;
    body[1] = length & 0xff;
    body[2] = (~length >>> 8) & 0xff;
    body[3] = ~length & 0xff;
    body.set(record.bytes, SLOT_RECORD_AT - SLOT_LENGTH_AT);
    if (SLOT_RECORD_AT + length > slotBytes) {
      throw new EvidenceError("BAD_FIELD", `record of ${length} bytes does not fit a ${slotBytes}-byte slot`);
    }
    this.slotState[slot] = SlotState.Used;
    this.sectorErased[this.sectorOf(slot)] = false;
    try {
      let at = base + SLOT_LENGTH_AT;
      let from = 0;
      while (from < body.length) {
        const chunk = Math.min(body.length - from, pageBytes - (at % pageBytes));
        this.nvm.program(at, body.subarray(from, from + chunk));
        at += chunk;
        from += chunk;
      }
      this.nvm.sync();
      this.nvm.program(base + SLOT_MARKER_AT, Uint8Array.of(MARKER_PROGRAMMED));
      this.nvm.sync();
    } catch (error) {
      if (!(error instanceof EvidenceError && error.code === "NVM_PROGRAM")) throw error;
      this.nvm.program(base + SLOT_VOID_AT, Uint8Array.of(MARKER_PROGRAMMED));
      this.nvm.sync();
      this.cursor = this.nextSlot(slot);
      return false;
    }
    this.slotState[slot] = SlotState.Retained;
    this.retained.push({ record, slot });
    this.nextSeq = record.seq + 1;
    this.head = record.digest;
    this.cursor = this.nextSlot(slot);
    if (record.type === "LOG_WRAP") {
      const anchor = wrapAnchor(record);
      if (anchor !== null) {
        this.dropped = anchor;
        for (const r of this.retained)
          if (r.record.seq <= anchor.seq) this.slotState[r.slot] = SlotState.Used;
        this.retained = this.retained.filter((r) => r.record.seq > anchor.seq);
      }
    }
    // The record is durable: only now may the secure element's counter claim it.
    if (this.seqCounter !== null) this.se.advanceCounter(this.seqCounter, record.seq);
    return true;
  }

  private erase(sector: number): void {
    this.nvm.eraseSector(this.layout.firstSector + sector);
    this.nvm.sync();
    this.erases++;
    const first = sector * this.layout.slotsPerSector;
    this.slotState.fill(SlotState.Erased, first, first + this.layout.slotsPerSector);
    this.sectorErased[sector] = true;
    this.retained = this.retained.filter((r) => this.sectorOf(r.slot) !== sector);
  }

  // ───────────────────────────── recovery ─────────────────────────────

  private recover(nowMs: number, timeQuality: TimeQuality): void {
    const { slots, slotsPerSector, sectors } = this.layout;
    const scan = { bytes: 0, retries: 0 };
    const reads: SlotRead[] = [];
    for (let slot = 0; slot < slots; slot++) reads.push(this.readSlot(slot, scan));
    for (let sector = 0; sector < sectors; sector++) {
      const first = sector * slotsPerSector;
      let erased = this.tailErased(sector, scan);
      for (let slot = first; slot < first + slotsPerSector && erased; slot++)
        erased = reads[slot]!.kind === "erased";
      this.sectorErased[sector] = erased;
    }

    // Newest LOG_WRAP summary: records up to its dropped_seq_last are overwritten by design.
    const found: Retained[] = [];
    for (const [slot, read] of reads.entries()) {
      if (read.kind === "record") found.push({ record: read.record, slot });
      this.slotState[slot] = read.kind === "erased" ? SlotState.Erased : SlotState.Used;
    }
    for (const { record } of found) {
      const anchor = record.type === "LOG_WRAP" ? wrapAnchor(record) : null;
      if (
        anchor !== null &&
        anchor.seq < record.seq &&
        (this.dropped === null || anchor.seq > this.dropped.seq)
      ) {
        this.dropped = anchor;
      }
    }
    const droppedSeq = this.dropped?.seq ?? 0;
    const live = found.filter((r) => r.record.seq > droppedSeq);
    const supersededRecords = found.length - live.length;

    const breaks: RingLogChainBreak[] = [];
    this.retained = chooseOnePerSeq(live, breaks);
    for (const r of this.retained) this.slotState[r.slot] = SlotState.Retained;
    const headSeqBefore = this.retained.at(-1)?.record.seq ?? droppedSeq;
    breaks.push(...walkChain(this.retained, this.dropped ?? { seq: 0, digest: genesisDigest(this.meterId) }));
    const counter = this.seqCounter === null ? 0 : this.se.readCounter(this.seqCounter);
    if (counter > headSeqBefore) {
      // The element counted records past the newest one found: the log lost its newest end.
      breaks.push({
        problem: "SEQ_GAP",
        seqFirst: headSeqBefore + 1,
        seqLast: counter,
        expectedDigest: null,
        foundDigest: null,
      });
    }
    this.nextSeq = Math.max(headSeqBefore, counter) + 1;
    this.head = this.retained.at(-1)?.record.digest ?? this.dropped?.digest ?? genesisDigest(this.meterId);
    const lastRetained = this.retained.at(-1);
    this.cursor = lastRetained === undefined ? 0 : this.nextSlot(lastRetained.slot);

    const logged = new Set<string>();
    for (const { record } of this.retained) {
      const logBreak = parseChainBreakRecord(record);
      if (logBreak !== null) logged.add(breakKey(logBreak));
    }
    const fresh = breaks.filter((b) => !logged.has(breakKey(b)));
    const toLog = fresh.slice(0, RINGLOG_CHAIN_BREAKS_PER_RECOVERY_MAX);

    // Make the scan's decisions stick before anything new links to them.
    let markersCompleted = 0;
    let slotsVoided = 0;
    let tornSlots = 0;
    for (const [slot, read] of reads.entries()) {
      if (read.kind === "record" && !read.markerExact && this.slotState[slot] === SlotState.Retained) {
        this.nvm.program(this.slotOffset(slot) + SLOT_MARKER_AT, Uint8Array.of(MARKER_PROGRAMMED));
        markersCompleted++;
      } else if (read.kind === "rejected") {
        tornSlots++;
        if (!read.voided) {
          this.nvm.program(this.slotOffset(slot) + SLOT_VOID_AT, Uint8Array.of(MARKER_PROGRAMMED));
          slotsVoided++;
        }
      }
    }
    if (markersCompleted + slotsVoided > 0) this.nvm.sync();

    const erasesBefore = this.erases;
    for (const b of toLog) {
      this.commit({
        type: "CHAIN_BREAK",
        level: "CRITICAL",
        timestampMs: nowMs,
        endMs: nowMs,
        timeQuality,
        snapshot: {
          problem: b.problem,
          seq_first: b.seqFirst,
          seq_last: b.seqLast,
          expected_digest: b.expectedDigest === null ? "" : toHex(b.expectedDigest),
          found_digest: b.foundDigest === null ? "" : toHex(b.foundDigest),
        },
      });
    }
    const recoveryRecord = this.commit({
      type: "RECOVERY",
      level: breaks.length > 0 ? "MAJOR" : "INFO",
      timestampMs: nowMs,
      endMs: nowMs,
      timeQuality,
      snapshot: {
        head_seq_before: headSeqBefore,
        records_found: live.length,
        torn_slots: tornSlots,
        superseded_records: supersededRecords,
        chain_breaks: breaks.length,
        chain_breaks_logged: toLog.length,
        bytes_scanned: scan.bytes,
        read_retries: scan.retries,
      },
    });
    this.report = {
      recordsFound: live.length,
      tornSlots,
      slotsVoided,
      markersCompleted,
      supersededRecords,
      bytesScanned: scan.bytes,
      readRetries: scan.retries,
      chainBreaks: toLog,
      breaksAlreadyLogged: breaks.length - fresh.length,
      breaksDeferred: fresh.length - toLog.length,
      headSeqBefore,
      sectorsErased: this.erases - erasesBefore,
      recoveryRecord,
    };
  }

  private readSlot(slot: number, scan: { bytes: number; retries: number }): SlotRead {
    const { slotBytes } = this.layout;
    let voided = false;
    for (let attempt = 0; attempt < RINGLOG_SLOT_READ_ATTEMPTS_MAX; attempt++) {
      if (attempt > 0) scan.retries++;
      const bytes = this.nvm.read(this.slotOffset(slot), slotBytes);
      scan.bytes += slotBytes;
      if (bytes.every((b) => b === NVM_ERASED_BYTE)) return { kind: "erased" };
      voided = ones(bytes[SLOT_VOID_AT]!) <= MARKER_ONES_MAX;
      const marker = bytes[SLOT_MARKER_AT]!;
      if (voided) break; // sticky: an earlier recovery decided
      if (ones(marker) > MARKER_ONES_MAX) {
        // Uncommitted. Read again only if it is nearly erased: an erased slot seen through a ghost flip.
        if (zeroBits(bytes) <= NEAR_ERASED_ZERO_BITS_MAX) continue;
        break;
      }
      const length = (bytes[SLOT_LENGTH_AT]! << 8) | bytes[SLOT_LENGTH_AT + 1]!;
      const check = (bytes[SLOT_LENGTH_AT + 2]! << 8) | bytes[SLOT_LENGTH_AT + 3]!;
      if ((length ^ check) !== 0xffff || SLOT_RECORD_AT + length > slotBytes) continue;
      let record: EventRecord;
      try {
        record = decodeEventRecord(bytes.subarray(SLOT_RECORD_AT, SLOT_RECORD_AT + length));
      } catch (error) {
        if (error instanceof EvidenceError) continue;
        throw error;
      }
      if (record.meterId !== this.meterId || !verifyEventSignature(record, this.publicKey)) continue;
      return { kind: "record", record, markerExact: marker === MARKER_PROGRAMMED };
    }
    return { kind: "rejected", voided };
  }

  private tailErased(sector: number, scan: { bytes: number; retries: number }): boolean {
    const { sectorTailBytes, slotsPerSector, slotBytes } = this.layout;
    if (sectorTailBytes === 0) return true;
    const at = this.region.offset + sector * this.nvm.geometry.sectorBytes + slotsPerSector * slotBytes;
    for (let attempt = 0; attempt < RINGLOG_SLOT_READ_ATTEMPTS_MAX; attempt++) {
      scan.bytes += sectorTailBytes;
      if (this.nvm.read(at, sectorTailBytes).every((b) => b === NVM_ERASED_BYTE)) return true;
    }
    return false;
  }

  // ───────────────────────────── geometry helpers ─────────────────────────────

  private sectorOf(slot: number): number {
    return Math.floor(slot / this.layout.slotsPerSector);
  }

  private nextSlot(slot: number): number {
    return (slot + 1) % this.layout.slots;
  }

  private slotOffset(slot: number): number {
    const { slotsPerSector, slotBytes } = this.layout;
    return (
      this.region.offset +
      this.sectorOf(slot) * this.nvm.geometry.sectorBytes +
      (slot % slotsPerSector) * slotBytes
    );
  }

  /** First erased slot from `slot` to the end of its sector. */
  private freeSlotFrom(slot: number): number | null {
    const end = (this.sectorOf(slot) + 1) * this.layout.slotsPerSector;
    for (let i = slot; i < end; i++) if (this.slotState[i] === SlotState.Erased) return i;
    return null;
  }

  private holdsRetained(sector: number): boolean {
    const first = sector * this.layout.slotsPerSector;
    for (let i = first; i < first + this.layout.slotsPerSector; i++) {
      if (this.slotState[i] === SlotState.Retained) return true;
    }
    return false;
  }
}

function zeroBits(bytes: Uint8Array): number {
  let n = 0;
  for (const b of bytes) if (b !== NVM_ERASED_BYTE) n += 8 - ones(b);
  return n;
}

function ones(byte: number): number {
  let n = 0;
  for (let b = byte; b !== 0; b &= b - 1) n++;
  return n;
}

/** The (seq, digest) a LOG_WRAP record declares as its last dropped record; null if malformed. */
function wrapAnchor(record: EventRecord): Anchor | null {
  const seq = record.snapshot[LOG_WRAP_DROPPED_SEQ_LAST];
  const digestHex = record.snapshot[LOG_WRAP_DROPPED_LAST_DIGEST];
  if (typeof seq !== "number" || !Number.isSafeInteger(seq) || seq < 1 || typeof digestHex !== "string")
    return null;
  try {
    const digest = fromHex(digestHex, LOG_WRAP_DROPPED_LAST_DIGEST);
    return digest.length === SHA256_BYTES ? { seq, digest } : null;
  } catch {
    return null;
  }
}

/**
 * One record per seq, ascending. Two different records with one seq (a fork: e.g. a head that a ghost
 * read hid from an earlier recovery) keep the one the chain continues from and report SEQ_DUPLICATE.
 */
function chooseOnePerSeq(found: readonly Retained[], breaks: RingLogChainBreak[]): Retained[] {
  const bySeq = new Map<number, Retained[]>();
  for (const r of found) {
    const group = bySeq.get(r.record.seq);
    if (group === undefined) bySeq.set(r.record.seq, [r]);
    else if (!group.some((g) => bytesEqual(g.record.digest, r.record.digest))) group.push(r);
  }
  const seqs = [...bySeq.keys()].sort((a, b) => a - b);
  const out: Retained[] = [];
  for (const seq of seqs) {
    const group = bySeq.get(seq)!;
    let chosen = group[0]!;
    if (group.length > 1) {
      const successors = bySeq.get(seq + 1) ?? [];
      const previous = out.at(-1);
      const linked = group.filter((g) =>
        successors.some((s) => bytesEqual(s.record.prevDigest, g.record.digest)),
      );
      const fromPrevious = group.filter(
        (g) => previous !== undefined && bytesEqual(g.record.prevDigest, previous.record.digest),
      );
      chosen = linked[0] ?? fromPrevious[0] ?? chosen;
      for (const other of group) {
        if (other === chosen) continue;
        breaks.push({
          problem: "SEQ_DUPLICATE",
          seqFirst: seq,
          seqLast: seq,
          expectedDigest: chosen.record.digest,
          foundDigest: other.record.digest,
        });
      }
    }
    out.push(chosen);
  }
  return out;
}

/** Seq continuity and hash links of the retained records from the anchor (genesis or newest LOG_WRAP). */
function walkChain(retained: readonly Retained[], anchor: Anchor): RingLogChainBreak[] {
  const breaks: RingLogChainBreak[] = [];
  let expectedSeq = anchor.seq + 1;
  let expectedDigest = anchor.digest;
  for (const { record } of retained) {
    if (record.seq > expectedSeq) {
      breaks.push({
        problem: "SEQ_GAP",
        seqFirst: expectedSeq,
        seqLast: record.seq - 1,
        expectedDigest,
        foundDigest: record.prevDigest,
      });
    } else if (!bytesEqual(record.prevDigest, expectedDigest)) {
      breaks.push({
        problem: "CHAIN_BREAK",
        seqFirst: record.seq,
        seqLast: record.seq,
        expectedDigest,
        foundDigest: record.prevDigest,
      });
    }
    expectedSeq = record.seq + 1;
    expectedDigest = record.digest;
  }
  return breaks;
}

/** The break a CHAIN_BREAK record sealed by the ring describes; null for any other record. */
export function parseChainBreakRecord(record: EventRecord): RingLogChainBreak | null {
  const s = record.snapshot;
  const problem = s.problem;
  if (
    record.type !== "CHAIN_BREAK" ||
    (problem !== "SEQ_GAP" && problem !== "CHAIN_BREAK" && problem !== "SEQ_DUPLICATE")
  ) {
    return null;
  }
  if (typeof s.seq_first !== "number" || typeof s.seq_last !== "number") return null;
  const digest = (value: unknown): Uint8Array | null => {
    if (typeof value !== "string" || value.length !== 2 * SHA256_BYTES) return null;
    try {
      return fromHex(value, "digest");
    } catch {
      return null;
    }
  };
  return {
    problem,
    seqFirst: s.seq_first,
    seqLast: s.seq_last,
    expectedDigest: digest(s.expected_digest),
    foundDigest: digest(s.found_digest),
  };
}

function breakKey(b: { problem: string; seqFirst: number; seqLast: number }): string {
  return `${b.problem}:${b.seqFirst}:${b.seqLast}`;
}
