import { DlmsError } from "./errors.ts";

// OBIS codes (IEC 62056-6-1): six value groups A..F, each 0..255, carried on the wire as the 6-byte
// logical_name octet-string of a COSEM object. Two text forms are common: the dotted one used in the
// Blue Book tables ("1.0.1.8.0.255") and the IEC display form ("1-0:1.8.0*255").

export type Obis = readonly [number, number, number, number, number, number];

export const OBIS_BYTES = 6;
/** Longest text we try to parse: "255-255:255.255.255*255" is 23 characters; spaces allowed around. */
const OBIS_TEXT_CHARS_MAX = 64;

const IEC_FORM = /^(\d{1,3})-(\d{1,3}):(\d{1,3})\.(\d{1,3})\.(\d{1,3})(?:[*&](\d{1,3}))?$/;
const DOTTED_FORM = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})(?:\.(\d{1,3}))?$/;

/**
 * Parses "1.0.1.8.0.255", "1-0:1.8.0*255", "1-0:1.8.0&255" or the short forms without F
 * ("1.0.1.8.0", "1-0:1.8.0"), where F defaults to 255 (IEC 62056-6-1: 255 = "not used").
 */
export function parseObis(text: string): Obis {
  const trimmed = text.trim();
  const match =
    trimmed.length <= OBIS_TEXT_CHARS_MAX ? (IEC_FORM.exec(trimmed) ?? DOTTED_FORM.exec(trimmed)) : null;
  if (match === null) {
    throw new DlmsError(
      "BAD_OBIS",
      `"${trimmed.slice(0, OBIS_TEXT_CHARS_MAX)}" is not an OBIS code (expected A.B.C.D.E.F or A-B:C.D.E*F)`,
    );
  }
  const groups = match.slice(1, 7).map((g) => (g === undefined ? 255 : Number(g)));
  if (groups.some((g) => g > 255)) {
    throw new DlmsError("BAD_OBIS", `"${trimmed}": every value group must be 0..255`);
  }
  return groups as unknown as Obis;
}

/** "1.0.1.8.0.255" */
export function formatObis(obis: ArrayLike<number>): string {
  return Array.from(obis).join(".");
}

/** "1-0:1.8.0*255" */
export function formatObisIec(obis: ArrayLike<number>): string {
  const [a, b, c, d, e, f] = Array.from(obis);
  return `${a}-${b}:${c}.${d}.${e}*${f}`;
}

export function obisToBytes(obis: Obis): Uint8Array {
  assertObis(obis);
  return Uint8Array.from(obis);
}

export function obisFromBytes(bytes: Uint8Array): Obis {
  if (bytes.length !== OBIS_BYTES) {
    throw new DlmsError("BAD_OBIS", `a logical name is ${OBIS_BYTES} octets, got ${bytes.length}`);
  }
  return Array.from(bytes) as unknown as Obis;
}

export function obisEquals(a: ArrayLike<number>, b: ArrayLike<number>): boolean {
  if (a.length !== OBIS_BYTES || b.length !== OBIS_BYTES) return false;
  for (let i = 0; i < OBIS_BYTES; i++) if (a[i] !== b[i]) return false;
  return true;
}

export function assertObis(obis: ArrayLike<number>): void {
  if (obis.length !== OBIS_BYTES) {
    throw new DlmsError("BAD_OBIS", `an OBIS code has ${OBIS_BYTES} value groups, got ${obis.length}`);
  }
  for (let i = 0; i < OBIS_BYTES; i++) {
    const g = obis[i]!;
    if (!Number.isInteger(g) || g < 0 || g > 255) {
      throw new DlmsError("BAD_OBIS", `value group ${"ABCDEF"[i]} is ${g}, expected 0..255`);
    }
  }
}
