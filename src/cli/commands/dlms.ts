import { randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";
import type { Command } from "commander";
import {
  annotate,
  captureToJson,
  connectDlms,
  DlmsError,
  decodeCapture,
  formatObis,
  type Obis,
  parseHex,
  parseObis,
  type TcpClient,
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

import { notYetAvailable } from "../pending.ts";

export function registerDlms(program: Command): void {
  const dlms = program.command("dlms").description("DLMS/COSEM field tools: get, set, image, decode");
  dlms
    .command("decode")
    .description("decode a captured HDLC frame, wrapper frame or bare APDU given as hex")
    .argument("<hex>", "hex bytes, or - to read them from stdin")
    .option("--json", "one JSON object")
    .action((hex: string, options: { json?: boolean }) => {
      const text = hex === "-" ? readFileSync(0, "utf8") : hex;
      try {
        const json = captureToJson(decodeCapture(parseHex(text)));
        process.stdout.write(
          options.json ? `${JSON.stringify(json)}\n` : `${JSON.stringify(json, null, 2)}\n`,
        );
      } catch (error) {
        if (!(error instanceof DlmsError)) throw error;
        process.stderr.write(`amiproof dlms decode: malformed: ${error.message}\n`);
        process.exit(1);
      }
    });
  dlms
    .command("get")
    .description("read an attribute over DLMS/COSEM (TCP wrapper)")
    .argument("<target>", "HOST:PORT")
    .argument("<obis>", "OBIS code with optional :ATTR (default attribute 2), e.g. 1.0.1.8.0.255:2")
    .option("--class <id>", "interface class (guessed from the OBIS code when omitted)")
    .option("--client <wport>", "client wPort: 16 public (no authentication), 1 management (LLS)", "16")
    .option("--password <p>", "LLS password for the management client")
    .option("--hls", "HLS-GMAC (security suite 0) as the management client, all APDUs ciphered")
    .option("--ek <hex>", "global encryption key for --hls", "000102030405060708090a0b0c0d0e0f")
    .option("--ak <hex>", "authentication key for --hls", "d0d1d2d3d4d5d6d7d8d9dadbdcdddedf")
    .option("--system-title <hex>", "client system title for --hls", "4142430000000001")
    .option("--json", "print the value as JSON")
    .action(
      async (
        target: string,
        obisArg: string,
        o: {
          class?: string;
          client: string;
          password?: string;
          hls?: boolean;
          ek: string;
          ak: string;
          systemTitle: string;
          json?: boolean;
        },
      ) => {
        const [host, portText] = target.includes(":")
          ? [target.slice(0, target.lastIndexOf(":")), target.slice(target.lastIndexOf(":") + 1)]
          : [target, "4059"];
        const [obisText, attrText] =
          obisArg.split(":").length > 1 && !obisArg.includes("-")
            ? [obisArg.split(":")[0]!, obisArg.split(":")[1]!]
            : [obisArg, "2"];
        let connection: TcpClient | null = null;
        try {
          const obis = parseObis(obisText);
          const classId = o.class === undefined ? guessClass(obis) : Number(o.class);
          connection = await connectDlms(host, Number(portText), o.hls ? 1 : Number(o.client));
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
          const value = await connection.client.get(classId, obis, Number(attrText));
          await connection.client.release();
          const json = annotate(value);
          process.stdout.write(
            o.json
              ? `${JSON.stringify(json)}\n`
              : `${formatObis(obis)} class ${classId} attribute ${attrText}: ${JSON.stringify(json, null, 2)}\n`,
          );
        } catch (error) {
          if (error instanceof DlmsError) {
            process.stderr.write(`amiproof dlms get: ${error.message}\n`);
            process.exitCode = 1;
          } else if ((error as NodeJS.ErrnoException).code !== undefined) {
            process.stderr.write(`amiproof dlms get: cannot reach ${target}: ${(error as Error).message}\n`);
            process.exitCode = 1;
          } else throw error;
        } finally {
          connection?.close();
        }
      },
    );
  for (const name of ["set", "image"]) {
    dlms
      .command(name)
      .description(`${name} over a DLMS/COSEM association (needs the DLMS client, issue 5)`)
      .allowUnknownOption()
      .allowExcessArguments()
      .action(() => notYetAvailable(`dlms ${name}`, 5));
  }
}
