// shell: real sockets and timers for M-Bus over a TCP serial bridge (a level converter with an Ethernet port
// that forwards raw bus bytes). The master core stays timer-free; timeouts live here.
import { createConnection, createServer, type Server, type Socket } from "node:net";
import { MbusError } from "../errors.ts";
import { frameLength, MBUS_FRAME_BYTES_MAX } from "../frame.ts";
import type { MbusTransport } from "../master.ts";
import type { MbusSimBus } from "../sim.ts";

/** Bytes buffered from the socket before the bridge is considered to be flooding us. */
export const TCP_BRIDGE_RX_BYTES_MAX = 64 * MBUS_FRAME_BYTES_MAX;
export const TCP_BRIDGE_CONNECT_TIMEOUT_MS = 5000;

/** Client side: the master's transport to a TCP serial bridge. */
export class TcpBridgeTransport implements MbusTransport {
  private readonly socket: Socket;
  private readonly chunks: Uint8Array[] = [];
  private bufferedBytes = 0;
  private failure: MbusError | null = null;
  private waiter: (() => void) | null = null;

  private constructor(socket: Socket) {
    this.socket = socket;
    socket.on("data", (data: Buffer) => {
      if (this.bufferedBytes + data.length > TCP_BRIDGE_RX_BYTES_MAX) {
        this.fail(new MbusError("LIMIT", `bridge sent more than ${TCP_BRIDGE_RX_BYTES_MAX} unread bytes`));
        socket.destroy();
        return;
      }
      this.chunks.push(new Uint8Array(data));
      this.bufferedBytes += data.length;
      this.wake();
    });
    socket.on("error", (error) =>
      this.fail(new MbusError("TRANSPORT", `bridge socket error: ${error.message}`)),
    );
    socket.on("close", () => this.fail(new MbusError("TRANSPORT", "bridge closed the connection")));
  }

  static connect(
    host: string,
    port: number,
    timeoutMs = TCP_BRIDGE_CONNECT_TIMEOUT_MS,
  ): Promise<TcpBridgeTransport> {
    return new Promise((resolve, reject) => {
      const socket = createConnection({ host, port });
      socket.setNoDelay(true);
      const timer = setTimeout(() => {
        socket.destroy();
        reject(new MbusError("TRANSPORT", `no connection to ${host}:${port} within ${timeoutMs} ms`));
      }, timeoutMs);
      socket.once("connect", () => {
        clearTimeout(timer);
        resolve(new TcpBridgeTransport(socket));
      });
      socket.once("error", (error) => {
        clearTimeout(timer);
        reject(new MbusError("TRANSPORT", `cannot connect to ${host}:${port}: ${error.message}`));
      });
    });
  }

  private fail(error: MbusError): void {
    if (this.failure === null) this.failure = error;
    this.wake();
  }

  private wake(): void {
    const waiter = this.waiter;
    this.waiter = null;
    waiter?.();
  }

  async send(bytes: Uint8Array): Promise<void> {
    if (this.failure !== null) throw this.failure;
    await new Promise<void>((resolve, reject) => {
      this.socket.write(bytes, (error) =>
        error ? reject(new MbusError("TRANSPORT", `write to bridge failed: ${error.message}`)) : resolve(),
      );
    });
  }

  async receive(timeoutMs: number): Promise<Uint8Array | null> {
    const take = (): Uint8Array | null => {
      const chunk = this.chunks.shift();
      if (chunk === undefined) return null;
      this.bufferedBytes -= chunk.length;
      return chunk;
    };
    const ready = take();
    if (ready !== null) return ready;
    if (this.failure !== null) throw this.failure;
    if (timeoutMs <= 0) return null;
    await new Promise<void>((resolve) => {
      const timer = setTimeout(() => {
        this.waiter = null;
        resolve();
      }, timeoutMs);
      this.waiter = () => {
        clearTimeout(timer);
        resolve();
      };
    });
    const chunk = take();
    if (chunk === null && this.failure !== null) throw this.failure;
    return chunk;
  }

  close(): Promise<void> {
    return new Promise((resolve) => {
      if (this.socket.destroyed) {
        resolve();
        return;
      }
      this.socket.once("close", () => resolve());
      this.socket.end();
      this.socket.destroySoon();
    });
  }
}

export interface SimBridgeServer {
  port: number;
  close(): Promise<void>;
}

/**
 * Serves a simulated bus behind a TCP socket, as a serial bridge with meters on its bus would: bytes in are
 * cut into frames, each handed to the bus, the answer written back. Garbage bytes are skipped one at a time.
 */
export function serveSimBus(
  bus: MbusSimBus,
  options: { host?: string; port?: number } = {},
): Promise<SimBridgeServer> {
  const sockets = new Set<Socket>();
  const server: Server = createServer((socket) => {
    sockets.add(socket);
    socket.setNoDelay(true);
    let buffer = new Uint8Array(0);
    socket.on("data", (data: Buffer) => {
      const next = new Uint8Array(buffer.length + data.length);
      next.set(buffer, 0);
      next.set(data, buffer.length);
      buffer = next.length > TCP_BRIDGE_RX_BYTES_MAX ? new Uint8Array(0) : next;
      for (;;) {
        let length: number | null;
        try {
          length = frameLength(buffer);
        } catch {
          buffer = buffer.slice(1);
          continue;
        }
        if (length === null || buffer.length < length) break;
        const answer = bus.exchange(buffer.subarray(0, length));
        buffer = buffer.slice(length);
        if (answer !== null) socket.write(answer);
      }
    });
    socket.on("error", () => socket.destroy());
    socket.on("close", () => sockets.delete(socket));
  });
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(options.port ?? 0, options.host ?? "127.0.0.1", () => {
      const address = server.address();
      const port = typeof address === "object" && address !== null ? address.port : 0;
      resolve({
        port,
        close: () =>
          new Promise<void>((done) => {
            for (const socket of sockets) socket.destroy();
            server.close(() => done());
          }),
      });
    });
  });
}
