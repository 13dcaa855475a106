// shell: DLMS/COSEM over HDLC on any Duplex byte stream (a serial port, an RS-485 adapter, a TCP serial
// bridge): bytes in and out, and the one timer each link asks for. Timers are injected so tests run the
// links in virtual time; the default is the real clock.
import type { Duplex } from "node:stream";
import { DlmsClient } from "../client.ts";
import { DlmsError } from "../errors.ts";
import type { HdlcAddressBytes, HdlcParameters } from "../hdlc.ts";
import { HdlcClientLink, HdlcServerLink } from "../hdlc-link.ts";
import { type CosemObjectModel, DlmsServerSession, type ServerCredentials } from "../server.ts";

export interface LinkTimers {
  nowMs(): number;
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}

export const REAL_TIMERS: LinkTimers = {
  nowMs: () => performance.now(),
  setTimeout: (fn, ms) => setTimeout(fn, ms),
  clearTimeout: (handle) => clearTimeout(handle as NodeJS.Timeout),
};

/** Keeps one timer armed at a link's next deadline. */
function deadlineTimer(
  timers: LinkTimers,
  link: { nextDeadlineMs: number | null; tick(nowMs: number): void },
) {
  let handle: unknown = null;
  let armedAt: number | null = null;
  const arm = (): void => {
    const deadline = link.nextDeadlineMs;
    if (deadline === armedAt) return;
    if (handle !== null) timers.clearTimeout(handle);
    handle = null;
    armedAt = deadline;
    if (deadline === null) return;
    handle = timers.setTimeout(
      () => {
        handle = null;
        armedAt = null;
        link.tick(timers.nowMs());
        arm();
      },
      Math.max(0, deadline - timers.nowMs()),
    );
  };
  return {
    arm,
    stop: () => {
      if (handle !== null) timers.clearTimeout(handle);
      handle = null;
      armedAt = null;
    },
  };
}

export interface HdlcServeOptions {
  /** The server's HDLC address (`serverAddress(1, physical, 2)` for logical device 1). */
  readonly serverAddress: number;
  readonly serverAddressBytes: HdlcAddressBytes;
  readonly limits?: HdlcParameters;
  readonly inactivityTimeoutMs?: number;
  readonly timers?: LinkTimers;
}

export interface HdlcServing {
  readonly link: HdlcServerLink;
  /** The association of the current link connection (null while disconnected). */
  readonly session: () => DlmsServerSession | null;
  /** Sends an unsolicited APDU (a DataNotification) in a UI frame. */
  push(apdu: Uint8Array, clientAddress?: number): void;
  close(): void;
}

/** Serves a meter's object model over HDLC on a byte stream; each SNRM starts a fresh association. */
export function serveHdlc(
  stream: Duplex,
  model: CosemObjectModel,
  credentials: ServerCredentials,
  options: HdlcServeOptions,
): HdlcServing {
  const timers = options.timers ?? REAL_TIMERS;
  let session: DlmsServerSession | null = null;
  const link = new HdlcServerLink({
    serverAddress: options.serverAddress,
    serverAddressBytes: options.serverAddressBytes,
    ...(options.limits === undefined ? {} : { limits: options.limits }),
    ...(options.inactivityTimeoutMs === undefined
      ? {}
      : { inactivityTimeoutMs: options.inactivityTimeoutMs }),
    send: (frame) => stream.write(frame),
    // The HDLC client address is the client SAP: 0x10 public, 0x01 management (IEC 62056-46).
    connected: (clientAddress) => {
      session = new DlmsServerSession(model, credentials, clientAddress);
    },
    disconnected: () => {
      session = null;
    },
    request: (apdu) => session?.handle(apdu) ?? null,
  });
  const timer = deadlineTimer(timers, link);
  const onData = (chunk: Buffer) => {
    link.receive(new Uint8Array(chunk), timers.nowMs());
    timer.arm();
  };
  stream.on("data", onData);
  return {
    link,
    session: () => session,
    push: (apdu, clientAddress) => link.push(apdu, clientAddress),
    close: () => {
      timer.stop();
      stream.off("data", onData);
    },
  };
}

export interface HdlcConnectOptions {
  readonly clientAddress: number;
  readonly serverAddress: number;
  readonly serverAddressBytes: HdlcAddressBytes;
  readonly proposal?: HdlcParameters;
  readonly responseTimeoutMs?: number;
  readonly retriesMax?: number;
  readonly timers?: LinkTimers;
  /** Pushed APDUs (UI frames), e.g. handed to a PushReceiver. */
  readonly notification?: (apdu: Uint8Array) => void;
}

export interface HdlcConnection {
  readonly client: DlmsClient;
  readonly link: HdlcClientLink;
  /** DISC → UA/DM, then the stream is left to the caller. */
  close(): Promise<void>;
}

/** SNRM/UA over the stream, then a DlmsClient whose requests travel in I frames. */
export function connectHdlc(stream: Duplex, options: HdlcConnectOptions): Promise<HdlcConnection> {
  const timers = options.timers ?? REAL_TIMERS;
  let waiting: { resolve: (apdu: Uint8Array) => void; reject: (error: Error) => void } | null = null;
  let onConnect: { resolve: () => void; reject: (error: Error) => void } | null = null;
  let onClose: (() => void) | null = null;
  const settle = (error: DlmsError | null, apdu?: Uint8Array) => {
    const w = waiting;
    waiting = null;
    if (w === null) return;
    if (error !== null) w.reject(error);
    else w.resolve(apdu!);
  };
  const link = new HdlcClientLink({
    clientAddress: options.clientAddress,
    serverAddress: options.serverAddress,
    serverAddressBytes: options.serverAddressBytes,
    ...(options.proposal === undefined ? {} : { proposal: options.proposal }),
    ...(options.responseTimeoutMs === undefined ? {} : { responseTimeoutMs: options.responseTimeoutMs }),
    ...(options.retriesMax === undefined ? {} : { retriesMax: options.retriesMax }),
    send: (frame) => stream.write(frame),
    events: {
      connected: () => {
        onConnect?.resolve();
        onConnect = null;
      },
      response: (apdu) => settle(null, apdu),
      ...(options.notification === undefined ? {} : { notification: options.notification }),
      disconnected: () => {
        onClose?.();
        onClose = null;
        settle(new DlmsError("LINK_DOWN", "HDLC link disconnected"));
      },
      failed: (error) => {
        onConnect?.reject(error);
        onConnect = null;
        onClose?.();
        onClose = null;
        settle(error);
      },
    },
  });
  const timer = deadlineTimer(timers, link);
  const onData = (chunk: Buffer) => {
    link.receive(new Uint8Array(chunk), timers.nowMs());
    timer.arm();
  };
  stream.on("data", onData);
  const stop = () => {
    timer.stop();
    stream.off("data", onData);
  };
  const exchange = (apdu: Uint8Array) =>
    new Promise<Uint8Array>((resolve, reject) => {
      if (waiting !== null) {
        reject(new DlmsError("LINK_DOWN", "one request at a time on an HDLC link"));
        return;
      }
      waiting = { resolve, reject };
      try {
        link.request(apdu, timers.nowMs());
      } catch (error) {
        waiting = null;
        reject(error);
        return;
      }
      timer.arm();
    });
  return new Promise<HdlcConnection>((resolve, reject) => {
    onConnect = {
      resolve: () =>
        resolve({
          client: new DlmsClient(exchange),
          link,
          close: () =>
            new Promise<void>((done) => {
              if (link.state === "disconnected") {
                stop();
                done();
                return;
              }
              onClose = () => {
                stop();
                done();
              };
              link.disconnect(timers.nowMs());
              timer.arm();
            }),
        }),
      reject: (error) => {
        stop();
        reject(error);
      },
    };
    link.connect(timers.nowMs());
    timer.arm();
  });
}
