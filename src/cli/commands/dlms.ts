import { readFileSync } from "node:fs";
import type { Command } from "commander";
import { captureToJson, DlmsError, decodeCapture, parseHex } from "../../dlms/index.ts";
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
  for (const name of ["get", "set", "image"]) {
    dlms
      .command(name)
      .description(`${name} over a DLMS/COSEM association (needs the DLMS client, issue 5)`)
      .allowUnknownOption()
      .allowExcessArguments()
      .action(() => notYetAvailable(`dlms ${name}`, 5));
  }
}
