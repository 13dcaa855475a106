import { MbusError } from "./errors.ts";
import {
  ADDRESS_BROADCAST_NO_REPLY,
  ADDRESS_BROADCAST_REPLY,
  ADDRESS_NETWORK_LAYER,
  C_FCB,
  C_FCV,
  C_RSP_UD,
  decodeControl,
  decodeFrame,
  encodeFrame,
  frameLength,
  MBUS_FRAME_BYTES_MAX,
  type MbusFrame,
} from "./frame.ts";
import type { MbusTransport } from "./master.ts";
import type { RecordSpec } from "./records.ts";
import { CI_APPLICATION_RESET, CI_DATA_SEND, CI_SELECTION, encodeManufacturer } from "./tables.ts";
import { decodeSecondaryAddress, encodeVariableData, type SecondaryAddress } from "./telegram.ts";

// A virtual M-Bus slave and bus for tests and the lab: deterministic, no timers, no IO.

export interface MbusSimSlaveConfig {
  primaryAddress: number;
  identification: string;
  manufacturer: string;
  version: number;
  medium: number;
  status?: number;
  /** The records of each telegram of the readout, in order; all but the last end with DIF 0x1F. */
  telegrams: readonly (readonly RecordSpec[])[];
}

const ACK = Uint8Array.of(0xe5);

export class MbusSimSlave {
  readonly config: MbusSimSlaveConfig;
  selected = false;
  accessNumber = 0;
  /** Index of the telegram sent last, -1 before the first of a sequence. */
  private sentIndex = -1;
  /** FCB of the last REQ_UD2 with FCV set; EN 13757-2: SND_NKE clears it. */
  private lastFcb = false;
  /** Counts of what the slave saw, for assertions. */
  readonly seen = { sndNke: 0, reqUd2: 0, selections: 0, repeats: 0, applicationResets: 0 };

  constructor(config: MbusSimSlaveConfig) {
    if (config.telegrams.length === 0)
      throw new MbusError("BAD_FIELD", "a simulated slave needs at least one telegram");
    this.config = config;
  }

  get secondaryAddress(): SecondaryAddress {
    return {
      identification: this.config.identification,
      manufacturerCode: encodeManufacturer(this.config.manufacturer),
      version: this.config.version,
      medium: this.config.medium,
    };
  }

  /** EN 13757-3 selection: F per identification digit, 0xFFFF, 0xFF and 0xFF are wildcards. */
  matches(mask: SecondaryAddress): boolean {
    const own = this.secondaryAddress;
    for (let i = 0; i < 8; i += 1) {
      const m = mask.identification[i]!.toUpperCase();
      if (m !== "F" && m !== own.identification[i]) return false;
    }
    if (mask.manufacturerCode !== 0xffff && mask.manufacturerCode !== own.manufacturerCode) return false;
    if (mask.version !== 0xff && mask.version !== own.version) return false;
    if (mask.medium !== 0xff && mask.medium !== own.medium) return false;
    return true;
  }

  private addressed(address: number): boolean {
    return (
      address === this.config.primaryAddress ||
      address === ADDRESS_BROADCAST_REPLY ||
      address === ADDRESS_BROADCAST_NO_REPLY ||
      (address === ADDRESS_NETWORK_LAYER && this.selected)
    );
  }

  private restartSequence(): void {
    this.sentIndex = -1;
    this.lastFcb = false;
  }

  /** Handles one frame from the master; returns the answer bytes, or null when the slave stays silent. */
  handle(frame: MbusFrame): Uint8Array | null {
    if (frame.kind === "ack") return null;
    const control = decodeControl(frame.control);
    if (!control.primary) return null;
    const silent = frame.address === ADDRESS_BROADCAST_NO_REPLY;

    if ((frame.kind === "long" || frame.kind === "control") && frame.ci === CI_SELECTION) {
      if (frame.address !== ADDRESS_NETWORK_LAYER || frame.kind !== "long" || frame.data.length < 8)
        return null;
      this.seen.selections += 1;
      if (this.matches(decodeSecondaryAddress(frame.data))) {
        this.selected = true;
        this.restartSequence();
        return ACK;
      }
      this.selected = false;
      return null;
    }
    if (!this.addressed(frame.address)) return null;

    if (frame.kind === "short" && control.name === "SND_NKE") {
      this.seen.sndNke += 1;
      this.restartSequence();
      // EN 13757-3: SND_NKE at the network-layer address deselects the slave.
      if (frame.address === ADDRESS_NETWORK_LAYER) this.selected = false;
      return silent ? null : ACK;
    }
    if (frame.kind !== "short" && control.name === "SND_UD") {
      if (frame.ci === CI_APPLICATION_RESET) {
        this.seen.applicationResets += 1;
        this.restartSequence();
        return silent ? null : ACK;
      }
      if (frame.ci === CI_DATA_SEND) return silent ? null : ACK;
      return null;
    }
    if (frame.kind === "short" && control.name === "REQ_UD2") {
      this.seen.reqUd2 += 1;
      const fcb = (frame.control & C_FCB) !== 0;
      const fcv = (frame.control & C_FCV) !== 0;
      const count = this.config.telegrams.length;
      let index: number;
      if (this.sentIndex < 0) index = 0;
      else if (fcv && fcb === this.lastFcb) {
        // Same FCB: the master did not get the last answer; repeat it (EN 13757-2 §5.4).
        index = this.sentIndex;
        this.seen.repeats += 1;
      } else index = (this.sentIndex + 1) % count;
      if (fcv) this.lastFcb = fcb;
      this.sentIndex = index;
      this.accessNumber = (this.accessNumber + 1) & 0xff;
      return silent ? null : this.telegram(index);
    }
    return null;
  }

  private telegram(index: number): Uint8Array {
    const { ci, data } = encodeVariableData({
      header: {
        kind: "long",
        identification: this.config.identification,
        manufacturer: this.config.manufacturer,
        version: this.config.version,
        medium: this.config.medium,
        accessNumber: this.accessNumber,
        status: this.config.status ?? 0,
      },
      records: this.config.telegrams[index]!,
      moreRecordsFollow: index < this.config.telegrams.length - 1,
    });
    return encodeFrame({ kind: "long", control: C_RSP_UD, address: this.config.primaryAddress, ci, data });
  }
}

export interface MbusSimBusOptions {
  /** Deliver answers in chunks of this many bytes (exercises stream reassembly); 0 = whole answers. */
  chunkBytes?: number;
  /** Drop the answer to every n-th request (1-based); 0 = never. Exercises retries with an unchanged FCB. */
  dropEvery?: number;
  /** Flip a bit in the answer to every n-th request; 0 = never. Exercises checksum counting. */
  corruptEvery?: number;
}

/** Bytes the simulated bus holds before it refuses more (a master that never reads is a bug). */
export const SIM_BUS_PENDING_BYTES_MAX = 16 * MBUS_FRAME_BYTES_MAX;

/**
 * The bus seen from the master, in memory. Answers from several slaves to one request collide: the master
 * receives them one after another, which it sees as surplus bytes after the first frame.
 */
export class MbusSimBus implements MbusTransport {
  readonly slaves: MbusSimSlave[];
  private readonly options: MbusSimBusOptions;
  private pending: Uint8Array[] = [];
  private pendingBytes = 0;
  private requests = 0;

  constructor(slaves: MbusSimSlave[], options: MbusSimBusOptions = {}) {
    this.slaves = slaves;
    this.options = options;
  }

  /** One request frame in, the combined answer (or null for silence) out. Undecodable requests get silence. */
  exchange(request: Uint8Array): Uint8Array | null {
    this.requests += 1;
    let frame: MbusFrame;
    try {
      frame = decodeFrame(request);
    } catch (error) {
      if (error instanceof MbusError) return null;
      throw error;
    }
    const answers: Uint8Array[] = [];
    for (const slave of this.slaves) {
      const answer = slave.handle(frame);
      if (answer !== null) answers.push(answer);
    }
    if (answers.length === 0) return null;
    const { dropEvery = 0, corruptEvery = 0 } = this.options;
    if (dropEvery > 0 && this.requests % dropEvery === 0) return null;
    const total = answers.reduce((sum, a) => sum + a.length, 0);
    const out = new Uint8Array(total);
    let at = 0;
    for (const answer of answers) {
      out.set(answer, at);
      at += answer.length;
    }
    if (corruptEvery > 0 && this.requests % corruptEvery === 0 && out.length > 6) {
      out[out.length - 3]! ^= 0x01;
    }
    return out;
  }

  async send(bytes: Uint8Array): Promise<void> {
    // A request may carry several frames back to back; each is handled in turn.
    let at = 0;
    while (at < bytes.length) {
      let length: number | null;
      try {
        length = frameLength(bytes.subarray(at));
      } catch {
        return;
      }
      if (length === null || at + length > bytes.length) return;
      const answer = this.exchange(bytes.subarray(at, at + length));
      at += length;
      if (answer === null) continue;
      if (this.pendingBytes + answer.length > SIM_BUS_PENDING_BYTES_MAX) {
        throw new MbusError(
          "LIMIT",
          `simulated bus holds more than ${SIM_BUS_PENDING_BYTES_MAX} unread bytes`,
        );
      }
      const chunk = this.options.chunkBytes ?? 0;
      if (chunk > 0) {
        for (let i = 0; i < answer.length; i += chunk) this.pending.push(answer.slice(i, i + chunk));
      } else this.pending.push(answer);
      this.pendingBytes += answer.length;
    }
  }

  /** Virtual time: whatever is pending comes at once; silence is reported at once as a timeout. */
  async receive(_timeoutMs: number): Promise<Uint8Array | null> {
    const chunk = this.pending.shift();
    if (chunk === undefined) return null;
    this.pendingBytes -= chunk.length;
    return chunk;
  }
}
