import {
  ACSE_SERVICE_PROVIDER_DIAGNOSTICS,
  ACSE_SERVICE_USER_DIAGNOSTICS,
  ASSOCIATION_RESULTS,
  conformanceNames,
  decodeAare,
  decodeAarq,
  decodeInitiateRequest,
  decodeInitiateResponse,
  decodeRlre,
  decodeRlrq,
  RELEASE_REQUEST_REASONS,
  RELEASE_RESPONSE_REASONS,
} from "./acse.ts";
import { type Apdu, apduToJson, decodeApdu, securityHeaderJson } from "./apdu.ts";
import { unprotectApdu } from "./ciphering.ts";
import { DlmsError } from "./errors.ts";
import { type HdlcFrame, HdlcReassembler, HdlcStreamReader, splitServerAddress } from "./hdlc.ts";
import { type SecurityContext, unprotect } from "./security.ts";
import { WrapperReassembler } from "./wrapper.ts";

// What `amiproof dlms decode` does with a capture: detect HDLC (0x7E), wrapper (00 01) or a bare APDU,
// take every layer apart, decipher when keys are given, and render JSON or a readable tree.

/** Bound on the frames one capture may hold (a long segmented GET response is a few dozen). */
export const CAPTURE_FRAMES_MAX = 256;
/** Hex text bound: 1 MiB of captured bytes. */
const CAPTURE_HEX_CHARS_MAX = 2 * 1024 * 1024;

export interface DecodeCaptureOptions {
  /** Keys for ciphered APDUs (suite 0/1 AES-GCM-128); the authentication key may be omitted for encryption-only. */
  readonly encryptionKey?: Uint8Array;
  readonly authenticationKey?: Uint8Array;
  /** The sender's system title, needed for service-specific glo-xxx APDUs (general-glo-ciphering carries its own). */
  readonly systemTitle?: Uint8Array;
}

export interface DecipheredApdu {
  readonly systemTitle: Uint8Array;
  readonly securityControl: number;
  readonly invocationCounter: number;
  readonly apdu: Apdu;
}

export interface DecodedCapture {
  readonly transport: "hdlc" | "wrapper" | "apdu";
  readonly transportInfo: Record<string, unknown>;
  /** The (first complete) APDU of the capture; null for frames without one (SNRM, RR, a lone segment). */
  readonly apdu: Apdu | null;
  readonly apduBytes?: Uint8Array | null;
  /** The plain APDU inside a ciphered one, when keys were given. */
  readonly deciphered?: DecipheredApdu | null;
  /** ACSE fields (AARQ, AARE, RLRQ, RLRE) as JSON. */
  readonly acse?: Record<string, unknown> | null;
  /** Further complete APDUs of a multi-frame capture. */
  readonly more?: readonly DecodedCapture[];
}

export function parseHex(text: string): Uint8Array {
  if (text.length > CAPTURE_HEX_CHARS_MAX) {
    throw new DlmsError(
      "BAD_LENGTH",
      `capture of ${text.length} characters exceeds ${CAPTURE_HEX_CHARS_MAX}`,
    );
  }
  const clean = text.replace(/0x/gi, "").replace(/[\s:,-]/g, "");
  if (clean.length === 0 || clean.length % 2 !== 0 || !/^[0-9a-fA-F]+$/.test(clean)) {
    throw new DlmsError("BAD_LENGTH", "input is not an even number of hex digits");
  }
  return new Uint8Array(Buffer.from(clean, "hex"));
}

function frameInfo(frame: HdlcFrame, llc: string | null): Record<string, unknown> {
  const server = frame.sourceBytes > 1 ? frame.source : frame.destinationBytes > 1 ? frame.destination : null;
  const serverBytes = frame.sourceBytes > 1 ? frame.sourceBytes : frame.destinationBytes;
  return {
    destination: frame.destination,
    source: frame.source,
    ...(server === null ? {} : { server_address: splitServerAddress(server, serverBytes) }),
    frame: frame.kind,
    poll_final: frame.pollFinal,
    send_seq: frame.sendSeq,
    receive_seq: frame.receiveSeq,
    segmented: frame.segmented,
    llc,
    information_bytes: frame.information.length,
  };
}

function llcOf(info: Uint8Array): "command" | "response" | null {
  if (info.length >= 3 && info[0] === 0xe6 && info[2] === 0x00) {
    if (info[1] === 0xe6) return "command";
    if (info[1] === 0xe7) return "response";
  }
  return null;
}

function decodeHdlcCapture(bytes: Uint8Array, options: DecodeCaptureOptions): DecodedCapture {
  const reader = new HdlcStreamReader();
  const items = reader.push(bytes);
  const frames: HdlcFrame[] = [];
  // A damaged frame is the reason to report; the bytes skipped after it are its consequence.
  for (const item of items) {
    if ("error" in item) throw item.error;
    frames.push(item.frame);
  }
  if (reader.noiseBytes > 0) {
    throw new DlmsError("TRAILING_BYTES", `${reader.noiseBytes} bytes outside HDLC frames`);
  }
  if (reader.pendingBytes > 0) {
    throw new DlmsError("TRUNCATED", `the last HDLC frame is incomplete (${reader.pendingBytes} bytes)`);
  }
  if (frames.length === 0) throw new DlmsError("TRUNCATED", "no HDLC frame in the capture");
  if (frames.length > CAPTURE_FRAMES_MAX)
    throw new DlmsError("BAD_LENGTH", `more than ${CAPTURE_FRAMES_MAX} frames`);
  const infos: Record<string, unknown>[] = [];
  const apdus: DecodedCapture[] = [];
  // Segments of one direction join; the peer's RR frames in between carry no information.
  const reassembler = new HdlcReassembler();
  for (const frame of frames) {
    const carries = (frame.kind === "I" || frame.kind === "UI") && frame.information.length > 0;
    const first = reassembler.pendingBytes === 0;
    infos.push(frameInfo(frame, carries && first ? llcOf(frame.information) : null));
    if (!carries) continue;
    const whole = reassembler.push(frame);
    if (whole === null) continue;
    const llc = llcOf(whole);
    apdus.push(decodeApduLayer(llc === null ? whole : whole.subarray(3), options));
  }
  const transportInfo =
    frames.length === 1
      ? { ...infos[0]! }
      : {
          frames: infos,
          ...(reassembler.pendingBytes > 0 ? { incomplete_segment_bytes: reassembler.pendingBytes } : {}),
        };
  const [head, ...more] = apdus;
  return {
    transport: "hdlc",
    transportInfo,
    apdu: head?.apdu ?? null,
    apduBytes: head?.apduBytes ?? null,
    deciphered: head?.deciphered ?? null,
    acse: head?.acse ?? null,
    ...(more.length > 0 ? { more } : {}),
  };
}

function decodeWrapperCapture(bytes: Uint8Array, options: DecodeCaptureOptions): DecodedCapture {
  const reassembler = new WrapperReassembler();
  const frames = reassembler.push(bytes);
  if (reassembler.pendingBytes > 0) {
    throw new DlmsError(
      "TRUNCATED",
      `the last wrapper frame is incomplete (${reassembler.pendingBytes} bytes; its length field asks for more)`,
    );
  }
  if (frames.length === 0) throw new DlmsError("TRUNCATED", "no complete wrapper frame");
  if (frames.length > CAPTURE_FRAMES_MAX)
    throw new DlmsError("BAD_LENGTH", `more than ${CAPTURE_FRAMES_MAX} frames`);
  const decoded = frames.map((frame) => ({
    info: {
      source_wport: frame.sourceWPort,
      destination_wport: frame.destinationWPort,
      length: frame.apdu.length,
    },
    layer: decodeApduLayer(frame.apdu, options),
  }));
  const [head, ...rest] = decoded;
  return {
    transport: "wrapper",
    transportInfo: head!.info,
    apdu: head!.layer.apdu,
    apduBytes: head!.layer.apduBytes ?? null,
    deciphered: head!.layer.deciphered ?? null,
    acse: head!.layer.acse ?? null,
    ...(rest.length > 0
      ? { more: rest.map((d) => ({ ...d.layer, transport: "wrapper" as const, transportInfo: d.info })) }
      : {}),
  };
}

function contextFor(options: DecodeCaptureOptions): SecurityContext | null {
  if (options.encryptionKey === undefined) return null;
  return {
    suite: 0,
    systemTitle: new Uint8Array(8),
    encryptionKey: options.encryptionKey,
    authenticationKey: options.authenticationKey ?? new Uint8Array(16),
  };
}

function decodeApduLayer(bytes: Uint8Array, options: DecodeCaptureOptions): DecodedCapture {
  const apdu = decodeApdu(bytes);
  let deciphered: DecipheredApdu | null = null;
  let acse: Record<string, unknown> | null = null;
  const ctx = contextFor(options);
  if ((apdu.kind === "general-glo-ciphering" || apdu.kind === "ciphered-service") && ctx !== null) {
    if (apdu.kind === "ciphered-service" && (apdu.tag === 33 || apdu.tag === 40)) {
      throw new DlmsError("UNSUPPORTED", "a bare glo-initiate: give the AARQ/AARE that carries it");
    }
    const opened = unprotectApdu(ctx, bytes, {
      ...(options.systemTitle === undefined ? {} : { peerSystemTitle: options.systemTitle }),
    });
    deciphered = {
      systemTitle: opened.systemTitle,
      securityControl: opened.securityControl,
      invocationCounter: opened.invocationCounter,
      apdu: decodeApdu(opened.apdu),
    };
  }
  if (apdu.kind === "acse") acse = acseToJson(bytes, ctx);
  return { transport: "apdu", transportInfo: {}, apdu, apduBytes: bytes, deciphered, acse };
}

const hex = (bytes: Uint8Array | null) => (bytes === null ? null : Buffer.from(bytes).toString("hex"));

function printable(bytes: Uint8Array | null): string | null {
  if (bytes === null) return null;
  return bytes.every((b) => b >= 0x20 && b < 0x7f) ? Buffer.from(bytes).toString("latin1") : null;
}

const MECHANISMS: Record<number, string> = {
  0: "none (lowest level security)",
  1: "LLS (password)",
  2: "HLS (manufacturer specific)",
  3: "HLS MD5",
  4: "HLS SHA-1",
  5: "HLS GMAC",
  6: "HLS SHA-256",
  7: "HLS ECDSA",
};
const CONTEXTS: Record<number, string> = {
  1: "LN referencing, no ciphering",
  2: "SN referencing, no ciphering",
  3: "LN referencing, with ciphering",
  4: "SN referencing, with ciphering",
};

/** The fields of an AARQ, AARE, RLRQ or RLRE; a ciphered initiate is opened when keys are given. */
export function acseToJson(bytes: Uint8Array, ctx: SecurityContext | null = null): Record<string, unknown> {
  const open = (content: Uint8Array, title: Uint8Array | null, response: boolean) => {
    const header = securityHeaderJson(
      content[0] ?? 0,
      content.length >= 5 ? new DataView(content.buffer, content.byteOffset + 1, 4).getUint32(0) : 0,
    );
    if (ctx === null || title === null) return { ciphered_initiate: header };
    const plain = unprotect(ctx, title, content).plaintext;
    const initiate = response ? decodeInitiateResponse(plain) : decodeInitiateRequest(plain);
    return { ciphered_initiate: header, initiate: initiateJson(initiate) };
  };
  switch (bytes[0]) {
    case 0x60: {
      const a = decodeAarq(bytes);
      return {
        application_context: `${a.contextId} (${CONTEXTS[a.contextId] ?? "unknown"})`,
        calling_ap_title: hex(a.callingApTitle),
        mechanism: `${a.mechanism} (${MECHANISMS[a.mechanism] ?? "unknown"})`,
        ...(a.authenticationValue === null
          ? {}
          : {
              calling_authentication_value: hex(a.authenticationValue),
              ...(printable(a.authenticationValue) === null
                ? {}
                : { calling_authentication_text: printable(a.authenticationValue) }),
            }),
        ...(a.cipheredInitiate
          ? open(a.cipheredInitiate, a.callingApTitle, false)
          : {
              initiate: initiateJson({
                dedicatedKey: a.dedicatedKey ?? null,
                responseAllowed: a.responseAllowed ?? true,
                dlmsVersion: a.dlmsVersion ?? 6,
                conformance: a.conformance,
                maxPduSize: a.maxPduSize,
              }),
            }),
      };
    }
    case 0x61: {
      const a = decodeAare(bytes);
      const provider = a.diagnosticSource === "service-provider";
      return {
        application_context: `${a.contextId} (${CONTEXTS[a.contextId] ?? "unknown"})`,
        result: `${a.result} (${ASSOCIATION_RESULTS[a.result] ?? "unknown"})`,
        diagnostic: `${provider ? "acse-service-provider" : "acse-service-user"} ${a.diagnostic} (${
          (provider ? ACSE_SERVICE_PROVIDER_DIAGNOSTICS : ACSE_SERVICE_USER_DIAGNOSTICS)[a.diagnostic] ??
          "unknown"
        })`,
        responding_ap_title: hex(a.respondingApTitle),
        mechanism: `${a.mechanism} (${MECHANISMS[a.mechanism] ?? "unknown"})`,
        ...(a.authenticationValue === null
          ? {}
          : { responding_authentication_value: hex(a.authenticationValue) }),
        ...(a.cipheredInitiate
          ? open(a.cipheredInitiate, a.respondingApTitle, true)
          : a.result === 0
            ? { initiate: initiateJson({ conformance: a.conformance, maxPduSize: a.maxPduSize }) }
            : {}),
      };
    }
    case 0x62:
    case 0x63: {
      const request = bytes[0] === 0x62;
      const r = request ? decodeRlrq(bytes) : decodeRlre(bytes);
      const names = request ? RELEASE_REQUEST_REASONS : RELEASE_RESPONSE_REASONS;
      return {
        reason: r.reason === null ? null : `${r.reason} (${names[r.reason] ?? "unknown"})`,
        user_information: hex(r.userInformation),
      };
    }
    default:
      throw new DlmsError("BAD_TAG", `0x${(bytes[0] ?? 0).toString(16)} is not an ACSE APDU`, 0);
  }
}

function initiateJson(i: {
  dedicatedKey?: Uint8Array | null;
  responseAllowed?: boolean;
  dlmsVersion?: number;
  conformance: number;
  maxPduSize: number;
  vaaName?: number;
}): Record<string, unknown> {
  return {
    ...(i.dedicatedKey ? { dedicated_key: hex(i.dedicatedKey) } : {}),
    ...(i.responseAllowed === false ? { response_allowed: false } : {}),
    ...(i.dlmsVersion === undefined ? {} : { dlms_version: i.dlmsVersion }),
    conformance: `0x${i.conformance.toString(16).padStart(6, "0")}`,
    // The Green Book's spelling of the named bits (block-transfer-with-get-or-read …).
    conformance_names: conformanceNames(i.conformance).map((n) =>
      n.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`),
    ),
    max_pdu_size: i.maxPduSize,
    ...(i.vaaName === undefined ? {} : { vaa_name: i.vaaName }),
  };
}

export function decodeCapture(bytes: Uint8Array, options: DecodeCaptureOptions = {}): DecodedCapture {
  if (bytes[0] === 0x7e) return decodeHdlcCapture(bytes, options);
  if (bytes.length >= 8 && bytes[0] === 0x00 && bytes[1] === 0x01)
    return decodeWrapperCapture(bytes, options);
  return decodeApduLayer(bytes, options);
}

function layerJson(capture: DecodedCapture): Record<string, unknown> {
  return {
    ...(capture.apdu === null
      ? {}
      : { apdu: { ...apduToJson(capture.apdu), ...(capture.acse ? capture.acse : {}) } }),
    ...(capture.deciphered
      ? {
          deciphered: {
            system_title: hex(capture.deciphered.systemTitle),
            invocation_counter: capture.deciphered.invocationCounter,
            apdu: apduToJson(capture.deciphered.apdu),
          },
        }
      : {}),
  };
}

export function captureToJson(capture: DecodedCapture): Record<string, unknown> {
  return {
    transport: capture.transport,
    ...capture.transportInfo,
    ...layerJson(capture),
    ...(capture.more && capture.more.length > 0
      ? {
          more: capture.more.map((m) => ({
            ...(m.transport === "wrapper" ? m.transportInfo : {}),
            ...layerJson(m),
          })),
        }
      : {}),
  };
}

/** A readable indented tree of the JSON view (what `amiproof dlms decode` prints without --json). */
export function captureToText(capture: DecodedCapture): string {
  const lines: string[] = [];
  renderTree(captureToJson(capture), 0, lines);
  return `${lines.join("\n")}\n`;
}

function scalar(value: unknown): string {
  if (value === null) return "null";
  if (typeof value === "string") return value;
  if (typeof value === "bigint") return value.toString();
  if (typeof value === "object") return JSON.stringify(value);
  return String(value);
}

function isLeafRecord(value: Record<string, unknown>): boolean {
  const entries = Object.entries(value);
  return entries.length <= 3 && entries.every(([, v]) => v === null || typeof v !== "object");
}

function renderTree(value: unknown, depth: number, lines: string[], label?: string): void {
  const pad = "  ".repeat(depth);
  const head = label === undefined ? "" : `${label}:`;
  if (Array.isArray(value)) {
    if (value.length === 0) {
      lines.push(`${pad}${head} []`);
      return;
    }
    if (label !== undefined) lines.push(`${pad}${head}`);
    value.forEach((item, i) => {
      renderTree(item, label === undefined ? depth : depth + 1, lines, `[${i}]`);
    });
    return;
  }
  if (value !== null && typeof value === "object") {
    const record = value as Record<string, unknown>;
    // Typed Data values ({ "long-unsigned": 5 }) print on one line.
    if (label !== undefined && isLeafRecord(record)) {
      lines.push(
        `${pad}${head} ${Object.entries(record)
          .map(([k, v]) => `${k} ${scalar(v)}`)
          .join(", ")}`,
      );
      return;
    }
    if (label !== undefined) lines.push(`${pad}${head}`);
    for (const [key, item] of Object.entries(record))
      renderTree(item, label === undefined ? depth : depth + 1, lines, key);
    return;
  }
  lines.push(`${pad}${head} ${scalar(value)}`);
}
