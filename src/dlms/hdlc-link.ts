import { DlmsError } from "./errors.ts";
import {
  decodeHdlcParameters,
  encodeHdlc,
  encodeHdlcParameters,
  HDLC_DEFAULT_PARAMETERS,
  type HdlcAddressBytes,
  type HdlcFrame,
  type HdlcParameters,
  HdlcReassembler,
  HdlcStreamReader,
  hdlcControl,
  negotiateHdlcParameters,
  segmentInformation,
  stripLlc,
  withLlc,
} from "./hdlc.ts";

// The HDLC link layer of IEC 62056-46 (normal response mode, after ISO/IEC 13239) for serial / RS-485
// lines: the client is the primary station, the server the secondary that speaks only when polled.
//   SNRM → UA (parameters negotiated), I frames with N(S)/N(R) modulo 8, RR to acknowledge a segment and
//   poll for the next, DISC → UA (or DM when not connected), FRMR for a frame the server cannot accept.
// Window size 1 on both sides (our limits say so, and the negotiation keeps the minimum), which is what
// meters implement. The client retransmits its last frame when the server does not answer within the
// response time-out; the server recognises a repeated I frame (its answer was lost) and repeats its
// answer, and a repeated RR (its segment was lost) and repeats the segment.
// Pure state machines: every call takes `nowMs`; the shell (runtime/hdlc-stream.ts) owns the timers and
// calls `tick` at `nextDeadlineMs`.

/** IEC 62056-46 default response time-out before the primary repeats a frame. */
export const HDLC_RESPONSE_TIMEOUT_MS_DEFAULT = 1_000;
/** Repetitions of one frame before the client gives the link up. */
export const HDLC_RETRIES_MAX_DEFAULT = 3;
/** Inactivity time-out of the server: with no frame for this long it falls back to disconnected. */
export const HDLC_INACTIVITY_TIMEOUT_MS_DEFAULT = 120_000;
/**
 * A frame whose bytes stop for this long is dropped (IEC 62056-46 / HDLC setup class 23
 * inter_octet_time_out, 25 ms by default there; wider here because TCP serial bridges split frames).
 */
export const HDLC_INTER_OCTET_TIMEOUT_MS_DEFAULT = 200;
/** Bound on an APDU handed to the link (the reassembly bound of hdlc.ts, minus the LLC header). */
export const HDLC_APDU_BYTES_MAX = 65_535;

/** FRMR reason flags (ISO/IEC 13239): W undefined control, X info not permitted, Y info too long, Z bad N(R). */
export const FRMR_REASON = {
  undefinedControl: 0x01,
  infoNotPermitted: 0x02,
  infoTooLong: 0x04,
  badReceiveSeq: 0x08,
} as const;

export type HdlcLinkState = "disconnected" | "connecting" | "connected" | "disconnecting";

/** Counters a link keeps for the evidence trail of a serial port. */
export interface HdlcLinkCounters {
  framesSent: number;
  framesReceived: number;
  /** Frames dropped because their header check sequence did not verify. */
  hcsErrors: number;
  /** Frames dropped because their frame check sequence did not verify. */
  fcsErrors: number;
  /** Other undecodable frames (bad format, address, control field). */
  badFrames: number;
  /** Well-formed frames for another station (multi-drop line). */
  foreignFrames: number;
  /** Frames sent again: after a response time-out (client) or for a repeated frame (server). */
  retransmissions: number;
  /** Duplicate I frames received and not delivered twice. */
  duplicates: number;
  /** FRMR sent (server) or received (client). */
  frameRejects: number;
  /** Partly received frames dropped after the inter-octet time-out. */
  partialFramesDropped: number;
}

function newCounters(): HdlcLinkCounters {
  return {
    framesSent: 0,
    framesReceived: 0,
    hcsErrors: 0,
    fcsErrors: 0,
    badFrames: 0,
    foreignFrames: 0,
    retransmissions: 0,
    duplicates: 0,
    frameRejects: 0,
    partialFramesDropped: 0,
  };
}

export interface HdlcAddressing {
  /** The client's HDLC address (its SAP: 0x10 public, 0x01 management), 1 byte. */
  readonly clientAddress: number;
  /** The server's HDLC address as one number (`serverAddress(upper, lower, bytes)`). */
  readonly serverAddress: number;
  readonly serverAddressBytes: HdlcAddressBytes;
  /** Silence after which a partly received frame is dropped (default `HDLC_INTER_OCTET_TIMEOUT_MS_DEFAULT`). */
  readonly interOctetTimeoutMs?: number;
}

const WINDOW_1 = { windowTransmit: 1, windowReceive: 1 } as const;

abstract class HdlcStation {
  readonly counters = newCounters();
  state: HdlcLinkState = "disconnected";
  /** Negotiated parameters from this station's point of view. */
  parameters: HdlcParameters = HDLC_DEFAULT_PARAMETERS;
  protected sendSeq = 0;
  protected receiveSeq = 0;
  protected readonly reader = new HdlcStreamReader();
  protected readonly reassembler = new HdlcReassembler();
  private lastOctetMs = 0;

  constructor(
    protected readonly addressing: HdlcAddressing,
    private readonly output: (frame: Uint8Array) => void,
  ) {}

  /** Bytes from the line (any chunking); frames for this station are acted on. */
  receive(chunk: Uint8Array, nowMs: number): void {
    const interOctetTimeoutMs = this.addressing.interOctetTimeoutMs ?? HDLC_INTER_OCTET_TIMEOUT_MS_DEFAULT;
    if (this.reader.pendingBytes > 0 && nowMs - this.lastOctetMs > interOctetTimeoutMs) {
      this.reader.discardPending();
      this.counters.partialFramesDropped++;
    }
    this.lastOctetMs = nowMs;
    for (const item of this.reader.push(chunk)) {
      if ("error" in item) {
        if (item.error.code === "BAD_HCS") this.counters.hcsErrors++;
        else if (item.error.code === "BAD_FCS") this.counters.fcsErrors++;
        else this.counters.badFrames++;
        continue;
      }
      if (!this.isForMe(item.frame)) {
        this.counters.foreignFrames++;
        continue;
      }
      this.counters.framesReceived++;
      this.onFrame(item.frame, nowMs);
    }
  }

  protected abstract isForMe(frame: HdlcFrame): boolean;
  protected abstract onFrame(frame: HdlcFrame, nowMs: number): void;
  protected abstract encodeFrame(control: number, information?: Uint8Array, segmented?: boolean): Uint8Array;

  protected emit(frame: Uint8Array): void {
    this.counters.framesSent++;
    this.output(frame);
  }

  protected resetSequence(): void {
    this.sendSeq = 0;
    this.receiveSeq = 0;
    this.reassembler.reset();
  }
}

// ───────────────────────────── server (secondary station) ─────────────────────────────

export interface HdlcServerLinkOptions extends Omit<HdlcAddressing, "clientAddress"> {
  /** Serve only this client address; when omitted, the link binds to the client whose SNRM it accepts. */
  readonly clientAddress?: number;
  /** What this server accepts (defaults: 128-byte information fields, window 1). Windows are capped at 1. */
  readonly limits?: HdlcParameters;
  readonly inactivityTimeoutMs?: number;
  /** Sends bytes on the line. */
  readonly send: (frame: Uint8Array) => void;
  /** A whole request APDU arrived (LLC removed): the answer, or null for none. */
  readonly request: (apdu: Uint8Array) => Uint8Array | null;
  /** SNRM accepted from this client address: a new association may start above. */
  readonly connected?: (clientAddress: number) => void;
  /** The link went down (DISC, inactivity): the association above ends with it. */
  readonly disconnected?: (reason: string) => void;
}

export class HdlcServerLink extends HdlcStation {
  private readonly limits: HdlcParameters;
  private readonly inactivityTimeoutMs: number;
  /** Segments of the response still to send, and the last frame sent (repeated on a duplicate). */
  private pendingSegments: Uint8Array[] = [];
  /** What we answered to the last I frame accepted (repeated if the primary repeats that I frame). */
  private answerToLastI: Uint8Array | null = null;
  /** The last I frame we sent (repeated if the primary's RR shows it did not arrive). */
  private lastIFrame: Uint8Array | null = null;
  private lastReceivedMs = 0;

  /** The client this link talks to (fixed by the options, or the last sender while disconnected). */
  private peer: number;

  constructor(private readonly options: HdlcServerLinkOptions) {
    super({ ...options, clientAddress: options.clientAddress ?? 0 }, options.send);
    this.peer = options.clientAddress ?? 0;
    this.limits = { ...(options.limits ?? HDLC_DEFAULT_PARAMETERS), ...WINDOW_1 };
    this.inactivityTimeoutMs = options.inactivityTimeoutMs ?? HDLC_INACTIVITY_TIMEOUT_MS_DEFAULT;
  }

  get nextDeadlineMs(): number | null {
    return this.state === "connected" ? this.lastReceivedMs + this.inactivityTimeoutMs : null;
  }

  /**
   * An unsolicited APDU (DataNotification, EventNotification) in a UI frame, as meters push on a
   * serial or HAN port (IEC 62056-46: UI frames carry non-solicited data, no sequence numbers, no answer).
   * Goes to the connected client, or to `clientAddress` when given.
   */
  push(apdu: Uint8Array, clientAddress: number = this.peer): void {
    const information = withLlc(apdu, "response");
    if (information.length > this.parameters.maxInfoTransmit)
      throw new DlmsError(
        "BAD_LENGTH",
        `push of ${apdu.length} bytes exceeds the ${this.parameters.maxInfoTransmit}-byte information field (UI frames are not segmented)`,
      );
    this.emit(
      encodeHdlc({
        destination: clientAddress,
        source: this.addressing.serverAddress,
        sourceBytes: this.addressing.serverAddressBytes,
        control: hdlcControl.ui(false),
        information,
      }),
    );
  }

  tick(nowMs: number): void {
    const deadline = this.nextDeadlineMs;
    if (deadline !== null && nowMs >= deadline) this.drop("inactivity time-out");
  }

  get clientAddress(): number {
    return this.peer;
  }

  protected isForMe(frame: HdlcFrame): boolean {
    if (
      frame.destination !== this.addressing.serverAddress ||
      frame.destinationBytes !== this.addressing.serverAddressBytes ||
      frame.sourceBytes !== 1
    )
      return false;
    if (this.options.clientAddress !== undefined) return frame.source === this.options.clientAddress;
    if (this.state === "disconnected") {
      this.peer = frame.source; // answer (UA or DM) whoever calls while we are free
      return true;
    }
    return frame.source === this.peer;
  }

  protected encodeFrame(control: number, information?: Uint8Array, segmented = false): Uint8Array {
    return encodeHdlc({
      destination: this.peer,
      source: this.addressing.serverAddress,
      sourceBytes: this.addressing.serverAddressBytes,
      control,
      ...(information === undefined ? {} : { information }),
      segmented,
    });
  }

  private answer(frame: Uint8Array): void {
    this.emit(frame);
  }

  /** The answer to an accepted I frame: kept so that a repeated I frame gets it again. */
  private answerI(frame: Uint8Array): void {
    this.answerToLastI = frame;
    this.emit(frame);
  }

  private drop(reason: string): void {
    this.state = "disconnected";
    this.pendingSegments = [];
    this.answerToLastI = null;
    this.lastIFrame = null;
    this.resetSequence();
    this.options.disconnected?.(reason);
  }

  /** FRMR: rejected control field, V(S)/V(R), reason flags (ISO/IEC 13239 §5.5.3.4.2). */
  private reject(frame: HdlcFrame, reason: number): void {
    this.counters.frameRejects++;
    this.answer(
      this.encodeFrame(
        hdlcControl.frmr(true),
        Uint8Array.of(frame.control, (this.receiveSeq << 5) | (this.sendSeq << 1), reason),
      ),
    );
  }

  protected onFrame(frame: HdlcFrame, nowMs: number): void {
    this.lastReceivedMs = nowMs;
    switch (frame.kind) {
      case "SNRM": {
        let proposal: HdlcParameters;
        try {
          proposal = decodeHdlcParameters(frame.information);
        } catch (error) {
          if (!(error instanceof DlmsError)) throw error;
          this.counters.badFrames++;
          this.answer(this.encodeFrame(hdlcControl.dm(true)));
          return;
        }
        // The UA states the server's view: what it will send and what it accepts.
        this.parameters = negotiateHdlcParameters(proposal, this.limits);
        const wasConnected = this.state === "connected";
        this.state = "connected";
        this.pendingSegments = [];
        this.answerToLastI = null;
        this.lastIFrame = null;
        this.resetSequence();
        if (wasConnected) this.options.disconnected?.("SNRM on a connected link");
        this.answer(this.encodeFrame(hdlcControl.ua(true), encodeHdlcParameters(this.parameters)));
        this.options.connected?.(this.peer);
        return;
      }
      case "DISC":
        if (this.state === "connected") {
          this.answer(this.encodeFrame(hdlcControl.ua(true)));
          this.drop("DISC");
        } else this.answer(this.encodeFrame(hdlcControl.dm(true)));
        return;
      case "I":
        this.onInformation(frame);
        return;
      case "RR":
      case "RNR":
        this.onReceiveReady(frame);
        return;
      default:
        // UA/DM/FRMR/UI are responses or unnumbered data a secondary does not take from the primary.
        if (this.state === "connected") this.reject(frame, FRMR_REASON.undefinedControl);
        else this.answer(this.encodeFrame(hdlcControl.dm(true)));
    }
  }

  private onInformation(frame: HdlcFrame): void {
    if (this.state !== "connected") {
      this.answer(this.encodeFrame(hdlcControl.dm(true)));
      return;
    }
    if (frame.information.length > this.parameters.maxInfoReceive) {
      this.reject(frame, FRMR_REASON.infoTooLong);
      return;
    }
    const ns = frame.sendSeq!;
    if (ns === ((this.receiveSeq + 7) & 7) && this.answerToLastI !== null) {
      // Our answer to this frame was lost: the primary repeated it. Repeat the answer, deliver nothing.
      this.counters.duplicates++;
      this.counters.retransmissions++;
      this.emit(this.answerToLastI);
      return;
    }
    if (ns !== this.receiveSeq || frame.receiveSeq !== this.sendSeq) {
      this.reject(frame, FRMR_REASON.badReceiveSeq);
      return;
    }
    this.receiveSeq = (this.receiveSeq + 1) & 7;
    let whole: Uint8Array | null;
    try {
      whole = this.reassembler.push(frame);
    } catch (error) {
      if (!(error instanceof DlmsError)) throw error;
      this.reject(frame, FRMR_REASON.infoTooLong);
      return;
    }
    if (whole === null) {
      // A segment: acknowledge and poll for the next one.
      this.answerI(this.encodeFrame(hdlcControl.rr(this.receiveSeq, true)));
      return;
    }
    let apdu: Uint8Array;
    try {
      apdu = stripLlc(whole, "command");
    } catch (error) {
      if (!(error instanceof DlmsError)) throw error;
      this.counters.badFrames++;
      this.answerI(this.encodeFrame(hdlcControl.rr(this.receiveSeq, true)));
      return;
    }
    const response = this.options.request(apdu);
    if (response === null) {
      this.answerI(this.encodeFrame(hdlcControl.rr(this.receiveSeq, true)));
      return;
    }
    this.pendingSegments = segmentInformation(withLlc(response, "response"), this.parameters.maxInfoTransmit);
    this.sendNextSegment(true);
  }

  private sendNextSegment(answersI: boolean): void {
    const segment = this.pendingSegments.shift()!;
    const more = this.pendingSegments.length > 0;
    const frame = this.encodeFrame(hdlcControl.i(this.sendSeq, this.receiveSeq, true), segment, more);
    // State first, then the line: the peer may answer before emit returns.
    this.sendSeq = (this.sendSeq + 1) & 7;
    this.lastIFrame = frame;
    if (answersI) this.answerToLastI = frame;
    this.emit(frame);
  }

  private onReceiveReady(frame: HdlcFrame): void {
    if (this.state !== "connected") {
      this.answer(this.encodeFrame(hdlcControl.dm(true)));
      return;
    }
    const nr = frame.receiveSeq!;
    if (nr === ((this.sendSeq + 7) & 7) && this.lastIFrame !== null) {
      // The primary did not get our last I frame: send it again.
      this.counters.retransmissions++;
      this.emit(this.lastIFrame);
      return;
    }
    if (nr !== this.sendSeq) {
      this.reject(frame, FRMR_REASON.badReceiveSeq);
      return;
    }
    if (this.pendingSegments.length > 0) this.sendNextSegment(false);
    else this.answer(this.encodeFrame(hdlcControl.rr(this.receiveSeq, true)));
  }
}

// ───────────────────────────── client (primary station) ─────────────────────────────

export interface HdlcClientLinkOptions extends HdlcAddressing {
  /** What the client proposes in its SNRM (defaults: 128-byte information fields); windows are 1. */
  readonly proposal?: HdlcParameters;
  readonly responseTimeoutMs?: number;
  readonly retriesMax?: number;
  readonly send: (frame: Uint8Array) => void;
  /** Link events: connected (UA), a whole response APDU, disconnected (UA to DISC, DM), or a failure. */
  readonly events: {
    connected?(parameters: HdlcParameters): void;
    response(apdu: Uint8Array): void;
    /** An unsolicited APDU in a UI frame (a pushed DataNotification). */
    notification?(apdu: Uint8Array): void;
    disconnected?(reason: string): void;
    failed(error: DlmsError): void;
  };
}

export class HdlcClientLink extends HdlcStation {
  private readonly proposal: HdlcParameters;
  private readonly responseTimeoutMs: number;
  private readonly retriesMax: number;
  /** Request segments not yet sent; the frame awaiting an answer, its deadline and repetitions. */
  private pendingSegments: Uint8Array[] = [];
  private awaiting: { frame: Uint8Array; deadlineMs: number; retries: number } | null = null;
  private busy = false;

  constructor(private readonly options: HdlcClientLinkOptions) {
    super(options, options.send);
    this.proposal = { ...(options.proposal ?? HDLC_DEFAULT_PARAMETERS), ...WINDOW_1 };
    this.responseTimeoutMs = options.responseTimeoutMs ?? HDLC_RESPONSE_TIMEOUT_MS_DEFAULT;
    this.retriesMax = options.retriesMax ?? HDLC_RETRIES_MAX_DEFAULT;
  }

  get nextDeadlineMs(): number | null {
    return this.awaiting?.deadlineMs ?? null;
  }

  /** Sends SNRM with the proposed parameters; `events.connected` follows the UA. */
  connect(nowMs: number): void {
    if (this.state !== "disconnected") throw new DlmsError("LINK_DOWN", `connect while ${this.state}`);
    this.state = "connecting";
    this.poll(this.encodeFrame(hdlcControl.snrm(true), encodeHdlcParameters(this.proposal)), nowMs);
  }

  /** Sends DISC; `events.disconnected` follows the UA (or DM). */
  disconnect(nowMs: number): void {
    if (this.state === "disconnected") return;
    this.state = "disconnecting";
    this.pendingSegments = [];
    this.poll(this.encodeFrame(hdlcControl.disc(true)), nowMs);
  }

  /** Sends one request APDU (segmented to the negotiated size); `events.response` gets the answer. */
  request(apdu: Uint8Array, nowMs: number): void {
    if (this.state !== "connected") throw new DlmsError("LINK_DOWN", `HDLC link is ${this.state}`);
    if (this.busy) throw new DlmsError("LINK_DOWN", "a request is already in flight (window 1)");
    if (apdu.length > HDLC_APDU_BYTES_MAX)
      throw new DlmsError("BAD_LENGTH", `APDU of ${apdu.length} bytes exceeds ${HDLC_APDU_BYTES_MAX}`);
    this.busy = true;
    this.pendingSegments = segmentInformation(withLlc(apdu, "command"), this.parameters.maxInfoTransmit);
    this.sendNextSegment(nowMs);
  }

  /** Repeats the frame in flight when its response time-out passed; gives up after `retriesMax`. */
  tick(nowMs: number): void {
    const awaiting = this.awaiting;
    if (awaiting === null || nowMs < awaiting.deadlineMs) return;
    if (awaiting.retries >= this.retriesMax) {
      this.fail(
        new DlmsError(
          "TIMEOUT",
          `no HDLC answer after ${awaiting.retries + 1} transmissions of ${this.responseTimeoutMs} ms each`,
        ),
      );
      return;
    }
    awaiting.retries++;
    awaiting.deadlineMs = nowMs + this.responseTimeoutMs;
    this.counters.retransmissions++;
    this.emit(awaiting.frame);
  }

  protected isForMe(frame: HdlcFrame): boolean {
    return (
      frame.destination === this.addressing.clientAddress &&
      frame.source === this.addressing.serverAddress &&
      frame.sourceBytes === this.addressing.serverAddressBytes
    );
  }

  protected encodeFrame(control: number, information?: Uint8Array, segmented = false): Uint8Array {
    return encodeHdlc({
      destination: this.addressing.serverAddress,
      destinationBytes: this.addressing.serverAddressBytes,
      source: this.addressing.clientAddress,
      control,
      ...(information === undefined ? {} : { information }),
      segmented,
    });
  }

  private poll(frame: Uint8Array, nowMs: number): void {
    this.awaiting = { frame, deadlineMs: nowMs + this.responseTimeoutMs, retries: 0 };
    this.emit(frame);
  }

  private sendNextSegment(nowMs: number): void {
    const segment = this.pendingSegments.shift()!;
    const more = this.pendingSegments.length > 0;
    const frame = this.encodeFrame(hdlcControl.i(this.sendSeq, this.receiveSeq, true), segment, more);
    this.sendSeq = (this.sendSeq + 1) & 7;
    this.poll(frame, nowMs);
  }

  private fail(error: DlmsError): void {
    this.state = "disconnected";
    this.awaiting = null;
    this.pendingSegments = [];
    this.busy = false;
    this.resetSequence();
    this.options.events.failed(error);
  }

  protected onFrame(frame: HdlcFrame, nowMs: number): void {
    switch (frame.kind) {
      case "UA":
        if (this.state === "connecting") {
          let ua: HdlcParameters;
          try {
            ua = decodeHdlcParameters(frame.information);
          } catch (error) {
            if (!(error instanceof DlmsError)) throw error;
            this.fail(error);
            return;
          }
          // The UA is the server's view: its receive limit is our transmit limit.
          this.parameters = {
            maxInfoTransmit: Math.min(ua.maxInfoReceive, this.proposal.maxInfoTransmit),
            maxInfoReceive: ua.maxInfoTransmit,
            windowTransmit: 1,
            windowReceive: 1,
          };
          if (ua.maxInfoTransmit > this.proposal.maxInfoReceive) {
            this.fail(
              new DlmsError(
                "BAD_LENGTH",
                `server will send ${ua.maxInfoTransmit}-byte information fields; we proposed at most ${this.proposal.maxInfoReceive}`,
              ),
            );
            return;
          }
          this.awaiting = null;
          this.resetSequence();
          this.state = "connected";
          this.options.events.connected?.(this.parameters);
        } else if (this.state === "disconnecting") this.closed("DISC acknowledged");
        return;
      case "DM":
        if (this.state === "disconnecting") this.closed("server already disconnected (DM)");
        else this.fail(new DlmsError("LINK_DOWN", "the server answered DM: disconnected mode"));
        return;
      case "FRMR":
        this.counters.frameRejects++;
        this.fail(
          new DlmsError(
            "LINK_DOWN",
            `the server rejected a frame (FRMR ${Buffer.from(frame.information).toString("hex")})`,
          ),
        );
        return;
      case "I":
        this.onInformation(frame, nowMs);
        return;
      case "RR":
        this.onReceiveReady(frame, nowMs);
        return;
      case "UI":
        // Pushes arrive in any state (a HAN port pushes without SNRM); no answer, no sequence numbers.
        try {
          this.options.events.notification?.(stripLlc(frame.information, "response"));
        } catch (error) {
          if (!(error instanceof DlmsError)) throw error;
          this.counters.badFrames++;
        }
        return;
      default:
        this.counters.badFrames++;
    }
  }

  private closed(reason: string): void {
    this.state = "disconnected";
    this.awaiting = null;
    this.busy = false;
    this.resetSequence();
    this.options.events.disconnected?.(reason);
  }

  private onInformation(frame: HdlcFrame, nowMs: number): void {
    if (this.state !== "connected" || !this.busy) {
      this.counters.badFrames++;
      return;
    }
    if (frame.sendSeq !== this.receiveSeq) {
      // A repeated I frame (our RR crossed it): already taken, keep waiting for the one in order.
      this.counters.duplicates++;
      return;
    }
    if (frame.information.length > this.parameters.maxInfoReceive) {
      this.fail(new DlmsError("BAD_LENGTH", `information field of ${frame.information.length} bytes`));
      return;
    }
    this.receiveSeq = (this.receiveSeq + 1) & 7;
    let whole: Uint8Array | null;
    try {
      whole = this.reassembler.push(frame);
    } catch (error) {
      if (!(error instanceof DlmsError)) throw error;
      this.fail(error);
      return;
    }
    if (whole === null) {
      this.poll(this.encodeFrame(hdlcControl.rr(this.receiveSeq, true)), nowMs);
      return;
    }
    this.awaiting = null;
    this.busy = false;
    let apdu: Uint8Array;
    try {
      apdu = stripLlc(whole, "response");
    } catch (error) {
      if (!(error instanceof DlmsError)) throw error;
      this.options.events.failed(error);
      return;
    }
    this.options.events.response(apdu);
  }

  private onReceiveReady(frame: HdlcFrame, nowMs: number): void {
    if (this.state !== "connected" || this.awaiting === null) return;
    if (frame.receiveSeq === this.sendSeq && this.pendingSegments.length > 0) {
      this.sendNextSegment(nowMs);
      return;
    }
    if (frame.receiveSeq === ((this.sendSeq + 7) & 7)) {
      // The server did not take our last I frame: repeat it now rather than at the time-out.
      this.counters.retransmissions++;
      this.awaiting.deadlineMs = nowMs + this.responseTimeoutMs;
      this.emit(this.awaiting.frame);
    }
  }
}
