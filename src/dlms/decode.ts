import { type Apdu, apduToJson, decodeApdu } from "./apdu.ts";
import { DlmsError } from "./errors.ts";
import { decodeHdlc, decodeWrapper, LLC_COMMAND, LLC_RESPONSE } from "./transport.ts";

// What `amiproof dlms decode` does with a capture: detect HDLC (0x7E), wrapper (00 01) or a bare APDU.

export interface DecodedCapture {
  readonly transport: "hdlc" | "wrapper" | "apdu";
  readonly transportInfo: Record<string, unknown>;
  readonly apdu: Apdu | null;
}

export function parseHex(text: string): Uint8Array {
  const clean = text.replace(/0x/gi, "").replace(/[\s:,-]/g, "");
  if (clean.length === 0 || clean.length % 2 !== 0 || !/^[0-9a-fA-F]+$/.test(clean)) {
    throw new DlmsError("BAD_LENGTH", "input is not an even number of hex digits");
  }
  return new Uint8Array(Buffer.from(clean, "hex"));
}

export function decodeCapture(bytes: Uint8Array): DecodedCapture {
  if (bytes[0] === 0x7e) {
    const frame = decodeHdlc(bytes);
    let apdu: Apdu | null = null;
    let llc: string | null = null;
    if (frame.information.length > 0 && (frame.kind === "I" || frame.kind === "UI")) {
      const info = frame.information;
      const hasLlc =
        info.length >= 3 &&
        info[0] === 0xe6 &&
        (info[1] === LLC_COMMAND[1] || info[1] === LLC_RESPONSE[1]) &&
        info[2] === 0;
      llc = hasLlc ? (info[1] === 0xe6 ? "command" : "response") : null;
      if (!frame.segmented) apdu = decodeApdu(hasLlc ? info.subarray(3) : info);
    }
    return {
      transport: "hdlc",
      transportInfo: {
        destination: frame.destination,
        source: frame.source,
        frame: frame.kind,
        poll_final: frame.pollFinal,
        send_seq: frame.sendSeq,
        receive_seq: frame.receiveSeq,
        segmented: frame.segmented,
        llc,
        information_bytes: frame.information.length,
      },
      apdu,
    };
  }
  if (bytes.length >= 8 && bytes[0] === 0x00 && bytes[1] === 0x01) {
    const frame = decodeWrapper(bytes);
    return {
      transport: "wrapper",
      transportInfo: {
        source_wport: frame.sourceWPort,
        destination_wport: frame.destinationWPort,
        length: frame.apdu.length,
      },
      apdu: decodeApdu(frame.apdu),
    };
  }
  return { transport: "apdu", transportInfo: {}, apdu: decodeApdu(bytes) };
}

export function captureToJson(capture: DecodedCapture): Record<string, unknown> {
  return {
    transport: capture.transport,
    ...capture.transportInfo,
    ...(capture.apdu === null ? {} : { apdu: apduToJson(capture.apdu) }),
  };
}
