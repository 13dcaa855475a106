import { type MbusDecodeStats, MbusError } from "./errors.ts";
import {
  ADDRESS_NETWORK_LAYER,
  ADDRESS_PRIMARY_MAX,
  C_RSP_UD,
  decodeFrame,
  encodeFrame,
  frameLength,
  MBUS_ACK,
  MBUS_FRAME_BYTES_MAX,
  type MbusFrame,
  reqUd2,
  sndNke,
  sndUd,
} from "./frame.ts";
import type { MbusDataRecord } from "./records.ts";
import { CI_APPLICATION_RESET, CI_SELECTION } from "./tables.ts";
import {
  type DecodedFrame,
  decodeApplicationLayer,
  encodeSecondaryAddress,
  type MbusLongHeader,
  type SecondaryAddress,
} from "./telegram.ts";

// EN 13757-2/-3 master side over an injected transport. The core never touches timers: the transport
// implements `receive(timeoutMs)`, so the same code runs over a TCP bridge, a serial port or the simulator.

/** The transport between master and bus: raw bytes in, raw bytes out, timeouts implemented by the transport. */
export interface MbusTransport {
  send(bytes: Uint8Array): Promise<void>;
  /** The next chunk of received bytes, or null when nothing arrived within `timeoutMs` (0 = only what is buffered). */
  receive(timeoutMs: number): Promise<Uint8Array | null>;
}

/** EN 13757-2: a slave answers within 330 bit times + 50 ms (≈ 190 ms at 2400 Bd); TCP bridges add latency. */
export const MBUS_RESPONSE_TIMEOUT_MS = 500;
/** Repetitions of a request whose answer is missing or corrupt (the FCB stays unchanged for them). */
export const MBUS_REQUEST_RETRIES_MAX = 5;
export const MBUS_REQUEST_RETRIES_DEFAULT = 2;
/** Telegrams followed in one multi-telegram readout before giving up (DIF 0x1F chain). */
export const MBUS_READOUT_TELEGRAMS_MAX = 64;
/** After a lone 0xE5 during selection, how long to listen for a second slave's late answer. */
export const MBUS_COLLISION_GUARD_MS = 50;
/** Probes (selection frames) one secondary scan may send; the wildcard search is at most 10 per digit level. */
export const MBUS_SECONDARY_SCAN_PROBES_MAX = 2000;
/** Chunks read while assembling one frame; each carries at least one byte unless the transport misbehaves. */
export const MBUS_RECEIVE_CHUNKS_MAX = MBUS_FRAME_BYTES_MAX;
/** Chunks discarded before a request (leftovers of a garbled answer). */
export const MBUS_DRAIN_CHUNKS_MAX = 64;

export interface MbusMasterOptions {
  responseTimeoutMs?: number;
  retries?: number;
  telegramsMax?: number;
  collisionGuardMs?: number;
  scanProbesMax?: number;
  /** Counts every received frame and every link failure (frame_crc_fail, port_err_cnt). */
  stats?: MbusDecodeStats;
}

export interface MbusReadout {
  address: number;
  telegrams: DecodedFrame[];
  /** All records of all telegrams, in order. */
  records: MbusDataRecord[];
  /** False when the readout stopped at `telegramsMax` while the slave still announced more records. */
  complete: boolean;
}

export type SelectionResult = "selected" | "none" | "collision";

export interface SecondaryScanResult {
  found: MbusLongHeader[];
  /** Fully specified identification masks that still collide (same ID, different manufacturer/version/medium). */
  unresolved: string[];
  probes: number;
}

export interface PrimaryScanResult {
  found: number[];
  collisions: number[];
}

export const SECONDARY_WILDCARD: SecondaryAddress = {
  identification: "FFFFFFFF",
  manufacturerCode: 0xffff,
  version: 0xff,
  medium: 0xff,
};

function isLinkError(error: MbusError): boolean {
  return (
    error.code === "TIMEOUT" ||
    error.code === "COLLISION" ||
    error.code === "BAD_START" ||
    error.code === "BAD_LENGTH" ||
    error.code === "BAD_CHECKSUM" ||
    error.code === "BAD_STOP" ||
    error.code === "TRUNCATED" ||
    error.code === "TRAILING_BYTES"
  );
}

export class MbusMaster {
  private readonly transport: MbusTransport;
  private readonly responseTimeoutMs: number;
  private readonly retries: number;
  private readonly telegramsMax: number;
  private readonly collisionGuardMs: number;
  private readonly scanProbesMax: number;
  private readonly stats: MbusDecodeStats | undefined;
  /** FCB to use in the next REQ_UD2 per address (EN 13757-2: toggled after each good answer). */
  private readonly nextFcb = new Map<number, boolean>();

  constructor(transport: MbusTransport, options: MbusMasterOptions = {}) {
    this.transport = transport;
    this.responseTimeoutMs = options.responseTimeoutMs ?? MBUS_RESPONSE_TIMEOUT_MS;
    this.retries = Math.min(options.retries ?? MBUS_REQUEST_RETRIES_DEFAULT, MBUS_REQUEST_RETRIES_MAX);
    this.telegramsMax = Math.min(
      options.telegramsMax ?? MBUS_READOUT_TELEGRAMS_MAX,
      MBUS_READOUT_TELEGRAMS_MAX,
    );
    this.collisionGuardMs = options.collisionGuardMs ?? MBUS_COLLISION_GUARD_MS;
    this.scanProbesMax = Math.min(
      options.scanProbesMax ?? MBUS_SECONDARY_SCAN_PROBES_MAX,
      MBUS_SECONDARY_SCAN_PROBES_MAX,
    );
    this.stats = options.stats;
  }

  private count(outcome: MbusError | null): void {
    this.stats?.record(outcome);
  }

  private async drain(): Promise<void> {
    for (let i = 0; i < MBUS_DRAIN_CHUNKS_MAX; i += 1) {
      if ((await this.transport.receive(0)) === null) return;
    }
  }

  private async send(frame: MbusFrame): Promise<void> {
    await this.drain();
    await this.transport.send(encodeFrame(frame));
  }

  /**
   * Assembles one frame from the byte stream and decodes it. Surplus bytes in the same answer mean a
   * second slave talked at the same time (COLLISION). Every outcome is counted.
   */
  private async receiveFrame(timeoutMs: number, where: string): Promise<MbusFrame> {
    try {
      let buffer = new Uint8Array(0);
      for (let chunks = 0; ; chunks += 1) {
        const need = frameLength(buffer);
        if (need !== null && buffer.length >= need) {
          const frame = decodeFrame(buffer.subarray(0, need));
          if (buffer.length > need) {
            throw new MbusError(
              "COLLISION",
              `${buffer.length - need} byte(s) arrived after a complete frame`,
              where,
            );
          }
          this.count(null);
          return frame;
        }
        if (chunks >= MBUS_RECEIVE_CHUNKS_MAX) {
          throw new MbusError("TRUNCATED", `no complete frame after ${chunks} chunks`, where);
        }
        const chunk = await this.transport.receive(timeoutMs);
        if (chunk === null) {
          if (buffer.length === 0) throw new MbusError("TIMEOUT", `no answer within ${timeoutMs} ms`, where);
          throw new MbusError("TRUNCATED", `answer stopped after ${buffer.length} byte(s)`, where);
        }
        const next = new Uint8Array(buffer.length + chunk.length);
        next.set(buffer, 0);
        next.set(chunk, buffer.length);
        buffer = next;
      }
    } catch (error) {
      if (error instanceof MbusError) this.count(error);
      throw error;
    }
  }

  private async expectAck(frame: MbusFrame, where: string): Promise<void> {
    let lastError: MbusError | null = null;
    for (let attempt = 0; attempt <= this.retries; attempt += 1) {
      await this.send(frame);
      try {
        const answer = await this.receiveFrame(this.responseTimeoutMs, where);
        if (answer.kind !== "ack") {
          throw new MbusError("UNEXPECTED_RESPONSE", `expected 0xE5, got a ${answer.kind} frame`, where);
        }
        return;
      } catch (error) {
        if (!(error instanceof MbusError) || !isLinkError(error)) throw error;
        lastError = error;
      }
    }
    throw lastError!;
  }

  /** SND_NKE: resets the slave's link layer (its FCB) and, at 0xFD, deselects a selected slave. */
  async sendNke(address: number): Promise<void> {
    await this.expectAck(sndNke(address), `SND_NKE to ${address}`);
    this.nextFcb.set(address, true);
  }

  /** SND_UD with CI 0x50 (application reset): the slave starts its telegram sequence again. */
  async applicationReset(address: number, subcode?: number): Promise<void> {
    const data = subcode === undefined ? new Uint8Array(0) : Uint8Array.of(subcode);
    await this.expectAck(sndUd(address, CI_APPLICATION_RESET, data), `application reset to ${address}`);
  }

  /** REQ_UD2 with the address's FCB; repeated with the same FCB when the answer is missing or corrupt. */
  async requestUserData(address: number): Promise<DecodedFrame> {
    const where = `REQ_UD2 to ${address}`;
    const fcb = this.nextFcb.get(address) ?? true;
    let lastError: MbusError | null = null;
    for (let attempt = 0; attempt <= this.retries; attempt += 1) {
      await this.send(reqUd2(address, fcb));
      let frame: MbusFrame;
      try {
        frame = await this.receiveFrame(this.responseTimeoutMs, where);
      } catch (error) {
        if (!(error instanceof MbusError) || !isLinkError(error)) throw error;
        lastError = error;
        continue;
      }
      if (frame.kind !== "long" || (frame.control & 0x4f) !== C_RSP_UD) {
        throw new MbusError(
          "UNEXPECTED_RESPONSE",
          `expected RSP_UD in a long frame, got a ${frame.kind} frame`,
          where,
        );
      }
      // The link layer delivered: the next request asks for the next telegram.
      this.nextFcb.set(address, !fcb);
      try {
        return { frame, telegram: decodeApplicationLayer(frame.ci, frame.data) };
      } catch (error) {
        if (error instanceof MbusError) this.count(error);
        throw error;
      }
    }
    throw lastError!;
  }

  /**
   * Full readout: SND_NKE (unless `reset` is false), then REQ_UD2 with toggling FCB while the slave ends its
   * telegrams with DIF 0x1F, up to `telegramsMax` telegrams.
   */
  async readout(address: number, options: { reset?: boolean } = {}): Promise<MbusReadout> {
    if (options.reset !== false) await this.sendNke(address);
    const telegrams: DecodedFrame[] = [];
    const records: MbusDataRecord[] = [];
    for (let i = 0; i < this.telegramsMax; i += 1) {
      const decoded = await this.requestUserData(address);
      telegrams.push(decoded);
      records.push(...(decoded.telegram?.records ?? []));
      if (decoded.telegram?.moreRecordsFollow !== true)
        return { address, telegrams, records, complete: true };
    }
    return { address, telegrams, records, complete: false };
  }

  /** Selects a slave by secondary address (wildcards: F per identification digit, 0xFFFF, 0xFF, 0xFF). */
  async select(mask: SecondaryAddress): Promise<SelectionResult> {
    const where = `selection ${mask.identification}`;
    await this.send(sndUd(ADDRESS_NETWORK_LAYER, CI_SELECTION, encodeSecondaryAddress(mask)));
    let answer: MbusFrame;
    try {
      answer = await this.receiveFrame(this.responseTimeoutMs, where);
    } catch (error) {
      if (!(error instanceof MbusError)) throw error;
      if (error.code === "TIMEOUT") return "none";
      if (isLinkError(error)) return "collision";
      throw error;
    }
    if (answer.kind !== "ack") return "collision";
    if (this.collisionGuardMs > 0) {
      const late = await this.transport.receive(this.collisionGuardMs);
      if (late !== null && late.length > 0) {
        this.count(new MbusError("COLLISION", `${late.length} byte(s) after the selection ACK`, where));
        return "collision";
      }
    }
    this.nextFcb.set(ADDRESS_NETWORK_LAYER, true);
    return "selected";
  }

  /** Selects by full secondary address, then reads all telegrams at address 0xFD. */
  async readoutSecondary(address: SecondaryAddress): Promise<MbusReadout> {
    const result = await this.select(address);
    if (result !== "selected") {
      throw new MbusError(
        result === "none" ? "TIMEOUT" : "COLLISION",
        result === "none" ? "no slave acknowledged the selection" : "several slaves answered the selection",
        `selection ${address.identification}`,
      );
    }
    return this.readout(ADDRESS_NETWORK_LAYER, { reset: false });
  }

  /** Pings each primary address with SND_NKE; a clean 0xE5 means a slave lives there. */
  async scanPrimary(addresses?: readonly number[]): Promise<PrimaryScanResult> {
    const list = addresses ?? Array.from({ length: ADDRESS_PRIMARY_MAX + 1 }, (_, i) => i);
    const found: number[] = [];
    const collisions: number[] = [];
    for (const address of list) {
      if (!Number.isInteger(address) || address < 0 || address > ADDRESS_PRIMARY_MAX) {
        throw new MbusError("BAD_FIELD", `primary address must be 0..${ADDRESS_PRIMARY_MAX}, got ${address}`);
      }
      await this.send(sndNke(address));
      try {
        const answer = await this.receiveFrame(this.responseTimeoutMs, `scan ${address}`);
        if (answer.kind === "ack") {
          found.push(address);
          this.nextFcb.set(address, true);
        } else collisions.push(address);
      } catch (error) {
        if (!(error instanceof MbusError)) throw error;
        if (error.code === "TIMEOUT") continue;
        if (isLinkError(error)) collisions.push(address);
        else throw error;
      }
    }
    return { found, collisions };
  }

  /**
   * Wildcard search (EN 13757-3 secondary addressing): fix the identification digit by digit, most
   * significant first; a clean ACK means one slave matches (read its header), a collision means descend.
   */
  async scanSecondary(
    filter: Partial<Omit<SecondaryAddress, "identification">> = {},
  ): Promise<SecondaryScanResult> {
    const found: MbusLongHeader[] = [];
    const seen = new Set<string>();
    const unresolved: string[] = [];
    let probes = 0;
    const probe = async (prefix: string): Promise<void> => {
      for (let digit = 0; digit <= 9; digit += 1) {
        const identification = (prefix + String(digit)).padEnd(8, "F");
        probes += 1;
        if (probes > this.scanProbesMax) {
          throw new MbusError(
            "LIMIT",
            `secondary scan exceeded ${this.scanProbesMax} probes`,
            `mask ${identification}`,
          );
        }
        const result = await this.select({ ...SECONDARY_WILDCARD, ...filter, identification });
        if (result === "none") continue;
        if (result === "selected") {
          const decoded = await this.requestUserData(ADDRESS_NETWORK_LAYER);
          const header = decoded.telegram?.header;
          if (header?.kind !== "long") {
            throw new MbusError(
              "UNEXPECTED_RESPONSE",
              "a selected slave must answer with a long header (CI 0x72) to be identified",
              `mask ${identification}`,
            );
          }
          const key = `${header.identification}/${header.manufacturerCode}/${header.version}/${header.medium}`;
          if (!seen.has(key)) {
            seen.add(key);
            found.push(header);
          }
          continue;
        }
        if (prefix.length + 1 < 8) await probe(prefix + String(digit));
        else unresolved.push(identification);
      }
    };
    await probe("");
    return { found, unresolved, probes };
  }
}

/** Checks that a frame is exactly one 0xE5 (used by transports and tests). */
export function isAck(bytes: Uint8Array): boolean {
  return bytes.length === 1 && bytes[0] === MBUS_ACK;
}
