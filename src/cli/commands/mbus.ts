import { readFileSync } from "node:fs";
import type { Command } from "commander";
import {
  type DecodedFrame,
  decodeControl,
  decodedFrameToJson,
  decodeTelegramFrame,
  HEX_INPUT_CHARS_MAX,
  hexByte,
  type MbusDataRecord,
  MbusError,
  type MbusHeader,
  parseHex,
  toHex,
} from "../../mbus/index.ts";

export function registerMbus(program: Command): void {
  const mbus = program.command("mbus").description("M-Bus (EN 13757-2/-3) field tools: decode");
  mbus
    .command("decode")
    .description(
      "decode one M-Bus frame given as hex (spaced or plain): slave information and every data record",
    )
    .argument("[file]", "file holding the hex frame, or - for stdin (default: stdin)")
    .option("--json", "print one JSON object")
    .action((file: string | undefined, options: { json?: boolean }) => {
      const source = file === undefined || file === "-" ? "stdin" : file;
      if (source === "stdin" && process.stdin.isTTY) {
        process.stderr.write("amiproof mbus decode: give a FILE or pipe the hex frame on stdin\n");
        process.exit(2);
      }
      let text: string;
      try {
        text = readFileSync(source === "stdin" ? 0 : source, "latin1");
      } catch (error) {
        process.stderr.write(`amiproof mbus decode: cannot read ${source}: ${(error as Error).message}\n`);
        process.exit(2);
      }
      if (text.length > HEX_INPUT_CHARS_MAX) {
        fail(
          new MbusError("BAD_HEX", `input longer than ${HEX_INPUT_CHARS_MAX} characters`),
          source,
          options,
        );
      }
      let decoded: DecodedFrame;
      try {
        decoded = decodeTelegramFrame(parseHex(text));
      } catch (error) {
        if (!(error instanceof MbusError)) throw error;
        fail(error, source, options);
      }
      if (options.json)
        process.stdout.write(`${JSON.stringify({ valid: true, ...decodedFrameToJson(decoded) }, null, 2)}\n`);
      else process.stdout.write(formatDecoded(decoded));
    });
}

function fail(error: MbusError, source: string, options: { json?: boolean }): never {
  if (options.json) {
    process.stdout.write(
      `${JSON.stringify({ valid: false, error: { code: error.code, message: error.message } })}\n`,
    );
  }
  process.stderr.write(`INVALID M-Bus frame from ${source}: ${error.message}\n`);
  process.exit(1);
}

function hex(value: number, digits = 2): string {
  return `0x${value.toString(16).toUpperCase().padStart(digits, "0")}`;
}

function formatHeader(header: MbusHeader): string[] {
  const status = `status ${hex(header.status)} (${header.statusFlags.application}${header.statusFlags.powerLow ? ", power low" : ""}${header.statusFlags.permanentError ? ", permanent error" : ""}${header.statusFlags.temporaryError ? ", temporary error" : ""})`;
  if (header.kind === "long") {
    return [
      `slave     identification ${header.identification}  manufacturer ${header.manufacturer} (${hex(header.manufacturerCode, 4)})  version ${header.version}  medium ${hex(header.medium)} ${header.mediumName}`,
      `          access number ${header.accessNumber}  ${status}  signature ${hex(header.signature, 4)}`,
    ];
  }
  if (header.kind === "short") {
    return [
      `slave     access number ${header.accessNumber}  ${status}  signature ${hex(header.signature, 4)}`,
    ];
  }
  return [
    `slave     identification ${header.identification}  medium ${header.medium} ${header.mediumName} (fixed structure)`,
    `          access number ${header.accessNumber}  ${status}  counters ${header.countersBinary ? "binary" : "BCD"}, ${header.countersStored ? "stored at fixed date" : "actual"}`,
  ];
}

function formatRecord(record: MbusDataRecord): string[] {
  const { vib } = record;
  const where = `#${record.index}  ${record.function}  storage ${record.storageNumber}  tariff ${record.tariff}  subunit ${record.subunit}`;
  const raw = record.rawValue === null ? "none" : String(record.rawValue);
  const rawUnit = vib.rawUnit === "" ? "" : ` ${vib.rawUnit}`;
  let rawText = vib.exponent === 0 ? `${raw}${rawUnit}` : `${raw} × 10^${vib.exponent}${rawUnit}`;
  if (record.manufacturerSpecific)
    rawText = `${toHex(record.data) || "none"} (manufacturer specific, not scaled)`;
  let value: string;
  if (record.manufacturerSpecific)
    value = `[manufacturer specific] data ${toHex(record.data, " ") || "none"}`;
  else if (record.value === null)
    value = record.valueError === null ? "(no data)" : `(no value: ${record.valueError})`;
  else value = `${String(record.value)}${vib.unit === "" ? "" : ` ${vib.unit}`}`;
  const lines = [
    `  ${where}`,
    `      ${vib.quantity}: ${value}${record.text === null ? "" : ` (${record.text})`}`,
    `      raw ${rawText}  [${record.dataField}, DIB ${hexByte(record.dif)}${record.dife.map(hexByte).join("")}, VIB ${toHex(vib.bytes)}]`,
  ];
  if (vib.notes.length > 0) lines.push(`      notes: ${vib.notes.join("; ")}`);
  if (vib.errorCode !== null) lines.push(`      record error ${hex(vib.errorCode)}: ${vib.errorText}`);
  return lines;
}

function formatDecoded(decoded: DecodedFrame): string {
  const { frame, telegram } = decoded;
  const lines: string[] = [];
  if (frame.kind === "ack") lines.push("frame     single character 0xE5 (ACK)");
  else {
    const control = decodeControl(frame.control);
    const head = `frame     ${frame.kind}  C=${hex(frame.control)} ${control.name}  A=${hex(frame.address)} (${frame.address})`;
    lines.push(frame.kind === "short" ? head : `${head}  CI=${hex(frame.ci)} ${telegram?.ciName ?? ""}`);
  }
  if (telegram !== null) {
    if (telegram.header !== null) lines.push(...formatHeader(telegram.header));
    if (telegram.selection !== null) {
      const s = telegram.selection;
      lines.push(
        `selection identification ${s.identification}  manufacturer ${hex(s.manufacturerCode, 4)}  version ${hex(s.version)}  medium ${hex(s.medium)}`,
      );
    }
    if (telegram.applicationError !== null) {
      lines.push(
        `application error ${telegram.applicationError.code ?? "-"}: ${telegram.applicationError.text}`,
      );
    }
    if (telegram.alarm !== null) lines.push(`alarm status ${hex(telegram.alarm)}`);
    if (telegram.structure === "variable" || telegram.structure === "fixed") {
      lines.push(`records   ${telegram.records.length}`);
      for (const record of telegram.records) lines.push(...formatRecord(record));
    }
    if (telegram.manufacturerData !== null) {
      lines.push(
        `manufacturer data (${telegram.manufacturerData.length} bytes): ${toHex(telegram.manufacturerData, " ") || "none"}`,
      );
    }
    if (telegram.moreRecordsFollow) lines.push("more records follow in the next telegram (DIF 0x1F)");
  }
  return `${lines.join("\n")}\n`;
}
