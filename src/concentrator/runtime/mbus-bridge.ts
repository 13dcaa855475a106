// shell: M-Bus meters behind a TCP serial bridge (`--meter mbus://HOST:PORT/ADDRESS`): sockets, timers, wall clock.
import { MbusError, type MbusTransport, TcpBridgeTransport } from "../../mbus/index.ts";
import type { MbusMeterAddress } from "../core/mbus-source.ts";
import { ConcentratorError } from "../errors.ts";

/** A bridge that could not be reached is tried again at most this often (reads in between fail at once). */
export const MBUS_BRIDGE_RETRY_MS = 2_000;
export const MBUS_BRIDGE_CONNECT_TIMEOUT_MS = 2_000;

export interface MbusMeterUrl {
  readonly host: string;
  readonly port: number;
  /** One bus per bridge: "HOST:PORT". */
  readonly busId: string;
  readonly address: MbusMeterAddress;
  /** Secondary address: MBUS-<identification> (the meter's own identity); primary: the bus position. */
  readonly meterId: string;
}

/**
 * Parses `mbus://HOST:PORT/PRIMARY` (1..250) or `mbus://HOST:PORT/IDENTIFICATION` (8 digits: selection by
 * secondary address, EN 13757-3); throws BAD_CONFIG with the reason.
 */
export function parseMbusUrl(url: string): MbusMeterUrl {
  const match = /^mbus:\/\/(\[[0-9a-fA-F:.]+\]|[^/:[\]\s]+):(\d{1,5})\/(\d{1,3}|\d{8})$/.exec(url);
  const port = match === null ? Number.NaN : Number(match[2]);
  if (match === null || !(port >= 1 && port <= 65535)) {
    throw new ConcentratorError(
      "BAD_CONFIG",
      `expected mbus://HOST:PORT/PRIMARY (1..250) or mbus://HOST:PORT/IDENTIFICATION (8 digits), got ${JSON.stringify(url)}`,
    );
  }
  const host = match[1]!.replace(/^\[|\]$/g, "");
  const busId = `${host}:${port}`;
  const target = match[3]!;
  if (target.length === 8) {
    return {
      host,
      port,
      busId,
      address: {
        kind: "secondary",
        // Wildcards in manufacturer, version and medium: the identification alone selects the meter.
        secondary: { identification: target, manufacturerCode: 0xffff, version: 0xff, medium: 0xff },
      },
      meterId: `MBUS-${target}`,
    };
  }
  const primary = Number(target);
  if (primary < 1 || primary > 250)
    throw new ConcentratorError("BAD_CONFIG", `M-Bus primary address must be 1..250, got ${primary}`);
  return { host, port, busId, address: { kind: "primary", primary }, meterId: `MBUS-${busId}-${primary}` };
}

/**
 * The master's transport to one TCP serial bridge, reconnecting after the bridge drops: a failed socket is
 * discarded and the next request connects again (at most every MBUS_BRIDGE_RETRY_MS; between attempts a
 * request fails at once as TRANSPORT, so a dead bridge costs its bus no timeouts).
 */
export class ReconnectingBridgeTransport implements MbusTransport {
  private inner: TcpBridgeTransport | null = null;
  private lastAttemptMs = Number.NEGATIVE_INFINITY;
  private closed = false;
  /** Connections opened (first and re-opened). */
  connects = 0;

  constructor(
    private readonly host: string,
    private readonly port: number,
    private readonly connectTimeoutMs = MBUS_BRIDGE_CONNECT_TIMEOUT_MS,
    private readonly retryMs = MBUS_BRIDGE_RETRY_MS,
  ) {}

  async send(bytes: Uint8Array): Promise<void> {
    const inner = await this.connected();
    try {
      await inner.send(bytes);
    } catch (error) {
      this.drop(inner, error);
      throw error;
    }
  }

  async receive(timeoutMs: number): Promise<Uint8Array | null> {
    // The master drains leftovers before each request: that first receive may be what connects.
    const inner = await this.connected();
    try {
      return await inner.receive(timeoutMs);
    } catch (error) {
      this.drop(inner, error);
      throw error;
    }
  }

  async close(): Promise<void> {
    this.closed = true;
    const inner = this.inner;
    this.inner = null;
    await inner?.close();
  }

  private async connected(): Promise<TcpBridgeTransport> {
    if (this.inner !== null) return this.inner;
    if (this.closed) throw new MbusError("TRANSPORT", "bridge transport closed");
    const now = Date.now();
    if (now - this.lastAttemptMs < this.retryMs)
      throw new MbusError(
        "TRANSPORT",
        `bridge ${this.host}:${this.port} down (next attempt within ${this.retryMs} ms)`,
      );
    this.lastAttemptMs = now;
    this.inner = await TcpBridgeTransport.connect(this.host, this.port, this.connectTimeoutMs);
    this.connects++;
    return this.inner;
  }

  private drop(inner: TcpBridgeTransport, error: unknown): void {
    if (!(error instanceof MbusError) || error.code !== "TRANSPORT" || this.inner !== inner) return;
    this.inner = null;
    void inner.close();
  }
}
