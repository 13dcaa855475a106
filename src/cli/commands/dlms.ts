import { randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";
import { connect as netConnect } from "node:net";
import type { Command } from "commander";
import {
  annotate,
  captureToJson,
  captureToText,
  connectDlms,
  connectHdlc,
  DATA_ACCESS_RESULTS,
  type DlmsClient,
  DlmsError,
  decodeCapture,
  decodeData,
  formatObis,
  type Obis,
  parseHex,
  parseObis,
  serverAddress,
  transferImage,
} from "../../dlms/index.ts";

/** Interface class from the OBIS code's usual meaning (IEC 62056-6-1 value groups). */
function guessClass(obis: Obis): number {
  const name = formatObis(obis);
  if (name === "0.0.1.0.0.255") return 8;
  if (name === "0.0.44.0.0.255") return 18;
  if (name === "0.0.96.3.10.255") return 70;
  if (obis[2] === 99) return 7;
  if (obis[0] === 1 && (obis[3] === 8 || obis[3] === 7) && obis[2] !== 0) return 3;
  return 1;
}

export function registerDlms(program: Command): void {
  const dlms = program.command("dlms").description("DLMS/COSEM field tools: get, set, image, decode");
  dlms
    .command("decode")
    .description(
      "decode a captured HDLC frame (or frames), wrapper frame or bare APDU given as hex: every layer, OBIS codes, values, scaler/units",
    )
    .argument("<hex>", "hex bytes, or - to read them from stdin")
    .option("--json", "one JSON object instead of the readable tree")
    .option("--ek <hex>", "encryption key (16 bytes) to decipher ciphered APDUs")
    .option("--ak <hex>", "authentication key (16 bytes) for authenticated APDUs")
    .option(
      "--system-title <hex>",
      "sender's system title (8 bytes) for glo-xxx APDUs, which do not carry it",
    )
    .action((hex: string, options: { json?: boolean; ek?: string; ak?: string; systemTitle?: string }) => {
      const key = (name: string, value: string | undefined, bytes: number): Uint8Array | undefined => {
        if (value === undefined) return undefined;
        let parsed: Uint8Array | null = null;
        try {
          parsed = parseHex(value);
        } catch {
          parsed = null;
        }
        if (parsed === null || parsed.length !== bytes) {
          process.stderr.write(`amiproof dlms decode: ${name} must be ${bytes} bytes of hex\n`);
          process.exit(2);
        }
        return parsed;
      };
      const encryptionKey = key("--ek", options.ek, 16);
      const authenticationKey = key("--ak", options.ak, 16);
      const systemTitle = key("--system-title", options.systemTitle, 8);
      const text = hex === "-" ? readFileSync(0, "utf8") : hex;
      try {
        const capture = decodeCapture(parseHex(text), {
          ...(encryptionKey === undefined ? {} : { encryptionKey }),
          ...(authenticationKey === undefined ? {} : { authenticationKey }),
          ...(systemTitle === undefined ? {} : { systemTitle }),
        });
        process.stdout.write(
          options.json
            ? `${JSON.stringify(captureToJson(capture), (_k, v) => (typeof v === "bigint" ? v.toString() : v))}\n`
            : captureToText(capture),
        );
      } catch (error) {
        if (!(error instanceof DlmsError)) throw error;
        process.stderr.write(`amiproof dlms decode: malformed: ${error.message}\n`);
        process.exit(1);
      }
    });
  const withSessionOptions = (command: Command) =>
    command
      .option("--client <wport>", "client wPort: 16 public (no authentication), 1 management (LLS)", "16")
      .option("--password <p>", "LLS password for the management client")
      .option("--hls", "HLS-GMAC (security suite 0) as the management client, all APDUs ciphered")
      .option("--ek <hex>", "global encryption key for --hls", "000102030405060708090a0b0c0d0e0f")
      .option("--ak <hex>", "authentication key for --hls", "d0d1d2d3d4d5d6d7d8d9dadbdcdddedf")
      .option("--system-title <hex>", "client system title for --hls", "4142430000000001")
      .option(
        "--hdlc [server]",
        "HDLC (IEC 62056-46) over a TCP serial bridge instead of the wrapper; server HDLC address UPPER or UPPER/LOWER (default 1)",
      );

  withSessionOptions(
    dlms
      .command("get")
      .description("read an attribute over DLMS/COSEM (TCP wrapper)")
      .argument("<target>", "HOST:PORT")
      .argument(
        "<obis...>",
        "OBIS code with optional :ATTR (default attribute 2), e.g. 1.0.1.8.0.255:2; several are read in one GET with-list",
      )
      .option("--class <id>", "interface class (guessed from the OBIS code when omitted)")
      .option("--json", "print the value as JSON"),
  ).action(
    async (target: string, obisArgs: string[], o: SessionOptions & { class?: string; json?: boolean }) => {
      await withSession("get", target, o, async (client) => {
        const items = obisArgs.map((arg) => {
          const { obis, attributeId } = parseTarget(arg);
          return { obis, attributeId, classId: o.class === undefined ? guessClass(obis) : Number(o.class) };
        });
        if (items.length === 1) {
          const { obis, attributeId, classId } = items[0]!;
          const json = annotate(await client.get(classId, obis, attributeId));
          process.stdout.write(
            o.json
              ? `${JSON.stringify(json)}\n`
              : `${formatObis(obis)} class ${classId} attribute ${attributeId}: ${JSON.stringify(json, null, 2)}\n`,
          );
          return;
        }
        const results = await client.getWithList(items);
        const rows = results.map((result, i) => {
          const { obis, attributeId, classId } = items[i]!;
          const head = { obis: formatObis(obis), class_id: classId, attribute_id: attributeId };
          return "data" in result
            ? { ...head, value: annotate(result.data) }
            : { ...head, error: DATA_ACCESS_RESULTS[result.error] ?? `data-access-result ${result.error}` };
        });
        if (o.json) process.stdout.write(`${JSON.stringify(rows)}\n`);
        else
          for (const row of rows)
            process.stdout.write(
              `${row.obis} class ${row.class_id} attribute ${row.attribute_id}: ${
                "error" in row ? row.error : JSON.stringify(row.value)
              }\n`,
            );
        if (rows.some((row) => "error" in row)) process.exitCode = 1;
      });
    },
  );

  withSessionOptions(
    dlms
      .command("set")
      .description("write an attribute: the value as A-XDR hex (e.g. 0906… for an octet-string)")
      .argument("<target>", "HOST:PORT")
      .argument("<obis>", "OBIS code with optional :ATTR (default attribute 2)")
      .argument("<value-hex>", "the A-XDR encoded Data value")
      .option("--class <id>", "interface class (guessed from the OBIS code when omitted)"),
  ).action(
    async (target: string, obisArg: string, valueHex: string, o: SessionOptions & { class?: string }) => {
      await withSession("set", target, o, async (client) => {
        const { obis, attributeId } = parseTarget(obisArg);
        const classId = o.class === undefined ? guessClass(obis) : Number(o.class);
        await client.set(classId, obis, attributeId, decodeData(parseHex(valueHex)));
        process.stdout.write(`${formatObis(obis)} class ${classId} attribute ${attributeId}: written\n`);
      });
    },
  );

  withSessionOptions(
    dlms
      .command("image")
      .description(
        "firmware update through image transfer (class 18, 0.0.44.0.0.255): blocks, verify, activate",
      )
      .argument("<target>", "HOST:PORT")
      .argument("<file>", "signed image (amiproof firmware build)")
      .option("--identifier <id>", "image identifier (default: the image's component, app or comms)"),
  ).action(async (target: string, file: string, o: SessionOptions & { identifier?: string }) => {
    const bytes = new Uint8Array(readFileSync(file));
    const identifier = o.identifier ?? (bytes[4] === 3 ? "comms" : "app");
    await withSession("image", target, o, async (client) => {
      const tty = process.stderr.isTTY;
      const result = await transferImage(client, identifier, bytes, (sent, total) => {
        if (tty) process.stderr.write(`\rimage blocks ${sent}/${total}`);
      });
      if (tty) process.stderr.write("\n");
      const running = annotate(await client.get(1, parseObis("1.0.0.2.0.255"), 2));
      process.stdout.write(
        `transferred ${result.blocks} blocks${result.resumedFrom > 0 ? ` (resumed at block ${result.resumedFrom})` : ""}, verified and activated; running: ${JSON.stringify(running)}\n`,
      );
    });
  });
}

interface SessionOptions {
  hdlc?: string | boolean;
  client: string;
  password?: string;
  hls?: boolean;
  ek: string;
  ak: string;
  systemTitle: string;
}

function parseTarget(obisArg: string): { obis: Obis; attributeId: number } {
  // "1.0.1.8.0.255:2" → attribute 2; the IEC form "1-0:1.8.0*255" has its own colon, attribute default 2.
  if (!obisArg.includes("-") && obisArg.includes(":")) {
    const [text, attr] = obisArg.split(":");
    return { obis: parseObis(text!), attributeId: Number(attr) };
  }
  return { obis: parseObis(obisArg), attributeId: 2 };
}

async function withSession(
  name: string,
  target: string,
  o: SessionOptions,
  work: (client: DlmsClient) => Promise<void>,
): Promise<void> {
  const at = target.lastIndexOf(":");
  const [host, port] = at < 0 ? [target, 4059] : [target.slice(0, at), Number(target.slice(at + 1))];
  let connection: { client: DlmsClient; close(): void | Promise<void> } | null = null;
  try {
    const clientWPort = o.hls ? 1 : Number(o.client);
    connection =
      o.hdlc === undefined || o.hdlc === false
        ? await connectDlms(host, port, clientWPort)
        : await connectHdlcBridge(host, port, clientWPort, o.hdlc === true ? "1" : o.hdlc);
    if (o.hls) {
      const ctx = {
        suite: 0 as const,
        systemTitle: parseHex(o.systemTitle),
        encryptionKey: parseHex(o.ek),
        authenticationKey: parseHex(o.ak),
      };
      await connection.client.associateHls(ctx, new Uint8Array(randomBytes(16)));
    } else {
      await connection.client.associate(
        o.password === undefined ? {} : { password: new TextEncoder().encode(o.password) },
      );
    }
    await work(connection.client);
    await connection.client.release();
  } catch (error) {
    if (error instanceof DlmsError) {
      process.stderr.write(`amiproof dlms ${name}: ${error.message}\n`);
      process.exitCode = 1;
    } else if ((error as NodeJS.ErrnoException).code !== undefined) {
      process.stderr.write(`amiproof dlms ${name}: cannot reach ${target}: ${(error as Error).message}\n`);
      process.exitCode = 1;
    } else throw error;
  } finally {
    await connection?.close();
  }
}

/** "1" → 1-byte address 1; "1/17" → 2-byte address, upper 1 (logical device), lower 17 (physical). */
function parseHdlcServer(text: string): { address: number; bytes: 1 | 2 | 4 } {
  const [upper, lower] = text.split("/").map(Number);
  if (upper === undefined || !Number.isInteger(upper) || (lower !== undefined && !Number.isInteger(lower)))
    throw new DlmsError("BAD_ADDRESS", `--hdlc server address "${text}" is not UPPER or UPPER/LOWER`);
  if (lower === undefined) return { address: serverAddress(upper, null, 1), bytes: 1 };
  const bytes = upper < 128 && lower < 128 ? 2 : 4;
  return { address: serverAddress(upper, lower, bytes), bytes };
}

/** HDLC over a TCP serial bridge (a serial device server, ser2net): the client SAP is the HDLC client address. */
async function connectHdlcBridge(
  host: string,
  port: number,
  clientAddress: number,
  server: string,
): Promise<{ client: DlmsClient; close(): Promise<void> }> {
  const { address, bytes } = parseHdlcServer(server);
  const socket = netConnect({ host, port });
  await new Promise<void>((resolve, reject) => {
    socket.once("connect", resolve);
    socket.once("error", reject);
  });
  // A reset bridge ends the socket; the link then times out with a clear TIMEOUT instead of a crash.
  socket.on("error", () => socket.destroy());
  try {
    const link = await connectHdlc(socket, {
      clientAddress,
      serverAddress: address,
      serverAddressBytes: bytes,
    });
    return {
      client: link.client,
      close: async () => {
        await link.close().catch(() => {});
        socket.destroy();
      },
    };
  } catch (error) {
    socket.destroy();
    throw error;
  }
}
