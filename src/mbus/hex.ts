import { MbusError } from "./errors.ts";

/** Bound on textual input: a long frame is 261 bytes; a few frames of hex with spacing fit well below this. */
export const HEX_INPUT_CHARS_MAX = 64 * 1024;

/**
 * Parses hex given plain ("6810…") or separated by whitespace ("68 10 …"); tokens may carry a 0x prefix,
 * commas and colons are treated as separators.
 */
export function parseHex(text: string): Uint8Array {
  if (text.length > HEX_INPUT_CHARS_MAX) {
    throw new MbusError("BAD_HEX", `hex input longer than ${HEX_INPUT_CHARS_MAX} characters`);
  }
  const tokens = text
    .split(/[\s,:]+/)
    .filter((token) => token.length > 0)
    .map((token) => (token.startsWith("0x") || token.startsWith("0X") ? token.slice(2) : token));
  const digits = tokens.join("");
  if (digits.length === 0) throw new MbusError("BAD_HEX", "no hex digits in the input");
  const bad = /[^0-9a-fA-F]/.exec(digits);
  if (bad !== null) {
    throw new MbusError(
      "BAD_HEX",
      `expected hex digits, got ${JSON.stringify(bad[0])}`,
      `digit ${bad.index}`,
    );
  }
  // A separated token of one digit would silently shift every following byte.
  const odd = tokens.findIndex((token) => token.length % 2 !== 0);
  if (odd !== -1) {
    throw new MbusError("BAD_HEX", `token ${JSON.stringify(tokens[odd])} is not whole bytes`, `token ${odd}`);
  }
  const out = new Uint8Array(digits.length / 2);
  for (let i = 0; i < out.length; i += 1) out[i] = Number.parseInt(digits.slice(2 * i, 2 * i + 2), 16);
  return out;
}

export function toHex(bytes: Uint8Array, separator = ""): string {
  const parts: string[] = [];
  for (const byte of bytes) parts.push(byte.toString(16).toUpperCase().padStart(2, "0"));
  return parts.join(separator);
}
