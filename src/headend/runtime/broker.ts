// shell: the embedded MQTT broker (aedes) of `amiproof headend` / `amiproof up` when no --mqtt URL is given.
import { createServer, type Server } from "node:net";
import { Aedes } from "aedes";

export const DEFAULT_MQTT_PORT = 1883;

export interface EmbeddedBroker {
  readonly url: string;
  readonly host: string;
  readonly port: number;
  /** false: the preferred port was taken and a free one was chosen. */
  readonly preferredPort: boolean;
  close(): Promise<void>;
}

/** Listens on `port` (default 1883), or on a free port when that one is taken. */
export async function startEmbeddedBroker(
  port = DEFAULT_MQTT_PORT,
  host = "127.0.0.1",
): Promise<EmbeddedBroker> {
  const broker = await Aedes.createBroker();
  const server: Server = createServer(broker.handle);
  const listen = (p: number) =>
    new Promise<void>((resolve, reject) => {
      const onError = (error: Error) => {
        server.off("listening", onListening);
        reject(error);
      };
      const onListening = () => {
        server.off("error", onError);
        resolve();
      };
      server.once("error", onError);
      server.once("listening", onListening);
      server.listen(p, host);
    });
  let preferredPort = true;
  try {
    await listen(port);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== "EADDRINUSE" || port === 0) {
      await new Promise<void>((resolve) => broker.close(() => resolve()));
      throw error;
    }
    preferredPort = false;
    await listen(0);
  }
  const address = server.address();
  if (address === null || typeof address === "string") throw new Error("aedes: no TCP address");
  const shownHost = host === "0.0.0.0" ? "127.0.0.1" : host;
  return {
    url: `mqtt://${shownHost}:${address.port}`,
    host,
    port: address.port,
    preferredPort,
    close: async () => {
      await new Promise<void>((resolve) => broker.close(() => resolve()));
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
