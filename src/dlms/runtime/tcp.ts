// shell: DLMS/COSEM over TCP with the wrapper (IEC 62056-4-7, port 4059): sockets and timers live here.
import { connect, createServer, type Server, type Socket } from "node:net";
import { DlmsClient } from "../client.ts";
import { DlmsError } from "../errors.ts";
import { type CosemObjectModel, DlmsServerSession, type ServerCredentials } from "../server.ts";
import { encodeWrapper, WrapperReassembler } from "../transport.ts";

export const DLMS_REQUEST_TIMEOUT_MS = 5_000;

export interface ListeningServer {
  readonly port: number;
  close(): Promise<void>;
}

/** Serves one meter's object model on a TCP port; each connection is its own association. */
export function listenDlms(
  port: number,
  model: CosemObjectModel,
  credentials: ServerCredentials,
  host = "127.0.0.1",
): Promise<ListeningServer> {
  const sockets = new Set<Socket>();
  const server: Server = createServer((socket) => {
    sockets.add(socket);
    const reassembler = new WrapperReassembler();
    const sessions = new Map<number, DlmsServerSession>();
    socket.on("data", (chunk: Buffer) => {
      try {
        for (const frame of reassembler.push(new Uint8Array(chunk))) {
          let session = sessions.get(frame.sourceWPort);
          if (session === undefined) {
            session = new DlmsServerSession(model, credentials, frame.sourceWPort);
            sessions.set(frame.sourceWPort, session);
          }
          const reply = session.handle(frame.apdu);
          if (reply !== null)
            socket.write(
              encodeWrapper({
                sourceWPort: frame.destinationWPort,
                destinationWPort: frame.sourceWPort,
                apdu: reply,
              }),
            );
        }
      } catch (error) {
        if (!(error instanceof DlmsError)) throw error;
        socket.destroy(); // framing lost: drop the connection, the client reconnects
      }
    });
    socket.on("error", () => socket.destroy());
    socket.on("close", () => sockets.delete(socket));
  });
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, host, () => {
      const address = server.address();
      resolve({
        port: typeof address === "object" && address !== null ? address.port : port,
        close: () =>
          new Promise<void>((done) => {
            for (const s of sockets) s.destroy();
            server.close(() => done());
          }),
      });
    });
  });
}

export interface TcpClient {
  readonly client: DlmsClient;
  close(): void;
}

/** Connects a client (wPort `clientWPort`) to a meter's logical device (`serverWPort`, default 1). */
export function connectDlms(
  host: string,
  port: number,
  clientWPort: number,
  serverWPort = 1,
): Promise<TcpClient> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host, port }, () => {
      const reassembler = new WrapperReassembler();
      let waiting: {
        resolve: (apdu: Uint8Array) => void;
        reject: (e: Error) => void;
        timer: NodeJS.Timeout;
      } | null = null;
      socket.on("data", (chunk: Buffer) => {
        for (const frame of reassembler.push(new Uint8Array(chunk))) {
          const w = waiting;
          waiting = null;
          if (w !== null) {
            clearTimeout(w.timer);
            w.resolve(frame.apdu);
          }
        }
      });
      socket.on("close", () => waiting?.reject(new DlmsError("TIMEOUT", "connection closed by the meter")));
      const exchange = (apdu: Uint8Array) =>
        new Promise<Uint8Array>((res, rej) => {
          const timer = setTimeout(() => {
            waiting = null;
            rej(new DlmsError("TIMEOUT", `no answer within ${DLMS_REQUEST_TIMEOUT_MS} ms`));
          }, DLMS_REQUEST_TIMEOUT_MS);
          waiting = { resolve: res, reject: rej, timer };
          socket.write(encodeWrapper({ sourceWPort: clientWPort, destinationWPort: serverWPort, apdu }));
        });
      resolve({ client: new DlmsClient(exchange), close: () => socket.destroy() });
    });
    socket.once("error", reject);
  });
}
