import { DlmsError, DlmsReader, encodeLength } from "./errors.ts";

// ACSE APDUs (IEC 62056-5-3 / Green Book §9.3): AARQ, AARE, RLRQ, RLRE in BER, carrying the xDLMS
// InitiateRequest/InitiateResponse (A-XDR) in user-information. Only the fields DLMS uses are modelled.

const OID_PREFIX = [0x60, 0x85, 0x74, 0x05, 0x08];
/** Application context names 2.16.756.5.8.1.x: 1 LN no ciphering, 3 LN with ciphering. */
export const CONTEXT_LN = 1;
export const CONTEXT_LN_CIPHERED = 3;
/** Mechanism names 2.16.756.5.8.2.x. */
export const MECHANISM_NONE = 0;
export const MECHANISM_LLS = 1;
export const MECHANISM_HLS_GMAC = 5;

/** Conformance block bits (xDLMS, 24 bits, bit 0 = MSB of the first byte). */
export const CONFORMANCE = {
  attribute0SupportedWithSet: 1 << (23 - 8),
  priorityMgmtSupported: 1 << (23 - 9),
  attribute0SupportedWithGet: 1 << (23 - 10),
  blockTransferWithGetOrRead: 1 << (23 - 11),
  blockTransferWithSetOrWrite: 1 << (23 - 12),
  blockTransferWithAction: 1 << (23 - 13),
  multipleReferences: 1 << (23 - 14),
  dataNotification: 1 << (23 - 16),
  access: 1 << (23 - 17),
  get: 1 << (23 - 19),
  set: 1 << (23 - 20),
  selectiveAccess: 1 << (23 - 21),
  eventNotification: 1 << (23 - 22),
  action: 1 << (23 - 23),
} as const;

export const DLMS_VERSION = 6;

export interface Aarq {
  readonly contextId: number;
  readonly callingApTitle: Uint8Array | null;
  readonly mechanism: number;
  readonly authenticationValue: Uint8Array | null;
  readonly conformance: number;
  readonly maxPduSize: number;
  /** glo-initiateRequest content (SC ‖ IC ‖ ciphertext ‖ tag) when the initiate travels ciphered. */
  readonly cipheredInitiate?: Uint8Array | null;
}

export interface Aare {
  readonly contextId: number;
  /** 0 accepted, 1 rejected-permanent, 2 rejected-transient. */
  readonly result: number;
  /** acse-service-user diagnostic: 0 null, 1 no-reason, 2 context-name-not-supported, 13 authentication-failure, 14 authentication-required. */
  readonly diagnostic: number;
  readonly respondingApTitle: Uint8Array | null;
  readonly mechanism: number;
  readonly authenticationValue: Uint8Array | null;
  readonly conformance: number;
  readonly maxPduSize: number;
  /** glo-initiateResponse content when the initiate travels ciphered. */
  readonly cipheredInitiate?: Uint8Array | null;
}

function tlv(tag: number, content: number[]): number[] {
  if (content.length > 0x7f) throw new DlmsError("BAD_LENGTH", "ACSE field longer than 127 bytes");
  return [tag, content.length, ...content];
}

function conformanceBytes(conformance: number): number[] {
  return [(conformance >> 16) & 0xff, (conformance >> 8) & 0xff, conformance & 0xff];
}

export function encodeAarq(a: Aarq): Uint8Array {
  const fields: number[] = [];
  fields.push(...tlv(0xa1, tlv(0x06, [...OID_PREFIX, 0x01, a.contextId])));
  if (a.callingApTitle !== null) fields.push(...tlv(0xa6, tlv(0x04, [...a.callingApTitle])));
  if (a.mechanism !== MECHANISM_NONE) {
    fields.push(0x8a, 0x02, 0x07, 0x80); // sender-acse-requirements: authentication
    fields.push(...tlv(0x8b, [...OID_PREFIX, 0x02, a.mechanism]));
    fields.push(...tlv(0xac, tlv(0x80, [...(a.authenticationValue ?? [])])));
  }
  const initiate = a.cipheredInitiate
    ? [GLO_INITIATE_REQUEST, ...encodeLength(a.cipheredInitiate.length), ...a.cipheredInitiate]
    : [...encodeInitiateRequest(a.conformance, a.maxPduSize)];
  fields.push(...tlv(0xbe, tlv(0x04, initiate)));
  return Uint8Array.from(tlv(0x60, fields));
}

export function encodeAare(a: Aare): Uint8Array {
  const fields: number[] = [];
  fields.push(...tlv(0xa1, tlv(0x06, [...OID_PREFIX, 0x01, a.contextId])));
  fields.push(...tlv(0xa2, tlv(0x02, [a.result])));
  fields.push(...tlv(0xa3, tlv(0xa1, tlv(0x02, [a.diagnostic]))));
  if (a.respondingApTitle !== null) fields.push(...tlv(0xa4, tlv(0x04, [...a.respondingApTitle])));
  if (a.mechanism !== MECHANISM_NONE) {
    fields.push(0x88, 0x02, 0x07, 0x80);
    fields.push(...tlv(0x89, [...OID_PREFIX, 0x02, a.mechanism]));
    if (a.authenticationValue !== null) fields.push(...tlv(0xaa, tlv(0x80, [...a.authenticationValue])));
  }
  if (a.result === 0) {
    const initiate = a.cipheredInitiate
      ? [GLO_INITIATE_RESPONSE, ...encodeLength(a.cipheredInitiate.length), ...a.cipheredInitiate]
      : [...encodeInitiateResponse(a.conformance, a.maxPduSize)];
    fields.push(...tlv(0xbe, tlv(0x04, initiate)));
  }
  return Uint8Array.from(tlv(0x61, fields));
}

interface Fields {
  readonly map: Map<number, Uint8Array>;
}

function readTlvs(bytes: Uint8Array, outerTag: number, what: string): Fields {
  const r = new DlmsReader(bytes);
  if (r.u8(`${what} tag`) !== outerTag) throw new DlmsError("BAD_TAG", `not an ${what}`, 0);
  const length = r.length(what);
  if (length !== r.remaining)
    throw new DlmsError("BAD_LENGTH", `${what} length ${length}, ${r.remaining} bytes follow`, 1);
  const map = new Map<number, Uint8Array>();
  while (r.remaining > 0) {
    const tag = r.u8("field tag");
    map.set(tag, r.bytes(r.length("field"), "field"));
  }
  return { map };
}

function inner(value: Uint8Array | undefined, tag: number, what: string): Uint8Array | null {
  if (value === undefined) return null;
  const r = new DlmsReader(value);
  if (r.u8(`${what} tag`) !== tag) throw new DlmsError("BAD_TAG", `${what}: unexpected inner tag`, 0);
  return r.bytes(r.length(what), what);
}

function oidLast(value: Uint8Array | null, what: string): number {
  if (value === null) return 0;
  if (value.length !== 7 || OID_PREFIX.some((b, i) => value[i] !== b))
    throw new DlmsError("UNSUPPORTED", `${what} is not a DLMS UA name`);
  return value[6]!;
}

export const GLO_INITIATE_REQUEST = 0x21;
export const GLO_INITIATE_RESPONSE = 0x28;

export function encodeInitiateRequest(conformance: number, maxPduSize: number): Uint8Array {
  return Uint8Array.of(
    0x01,
    0x00,
    0x00,
    0x00,
    DLMS_VERSION,
    0x5f,
    0x1f,
    0x04,
    0x00,
    ...conformanceBytes(conformance),
    (maxPduSize >> 8) & 0xff,
    maxPduSize & 0xff,
  );
}

export function encodeInitiateResponse(conformance: number, maxPduSize: number): Uint8Array {
  return Uint8Array.of(
    0x08,
    0x00,
    DLMS_VERSION,
    0x5f,
    0x1f,
    0x04,
    0x00,
    ...conformanceBytes(conformance),
    (maxPduSize >> 8) & 0xff,
    maxPduSize & 0xff,
    0x00,
    0x07,
  );
}

export function decodeInitiate(
  bytes: Uint8Array,
  response: boolean,
): { conformance: number; maxPduSize: number } {
  return readInitiate(bytes, response);
}

/** The user-information content: a plain initiate, or the content of a glo-initiate to decipher. */
function splitInitiate(
  bytes: Uint8Array | null,
  response: boolean,
): { conformance: number; maxPduSize: number; cipheredInitiate: Uint8Array | null } {
  if (bytes !== null && bytes[0] === (response ? GLO_INITIATE_RESPONSE : GLO_INITIATE_REQUEST)) {
    const r = new DlmsReader(bytes);
    r.u8("glo-initiate tag");
    const content = r.bytes(r.length("glo-initiate"), "glo-initiate");
    return { conformance: 0, maxPduSize: 0, cipheredInitiate: content };
  }
  return { ...readInitiate(bytes, response), cipheredInitiate: null };
}

function readInitiate(
  bytes: Uint8Array | null,
  response: boolean,
): { conformance: number; maxPduSize: number } {
  if (bytes === null) throw new DlmsError("BAD_TAG", "user-information with the xDLMS initiate is missing");
  const r = new DlmsReader(bytes);
  const tag = r.u8("initiate tag");
  if (tag !== (response ? 0x08 : 0x01)) {
    throw new DlmsError(
      "UNSUPPORTED",
      `xDLMS tag 0x${tag.toString(16)} (ciphered initiate is not supported yet)`,
      0,
    );
  }
  if (!response) {
    if (r.u8("dedicated-key flag") !== 0) throw new DlmsError("UNSUPPORTED", "dedicated key", r.offset - 1);
    if (r.u8("response-allowed flag") !== 0) r.u8("response-allowed");
    if (r.u8("quality-of-service flag") !== 0) r.u8("quality-of-service");
  } else if (r.u8("quality-of-service flag") !== 0) r.u8("quality-of-service");
  r.u8("dlms version");
  if (r.u8("conformance tag") !== 0x5f || r.u8("conformance tag") !== 0x1f)
    throw new DlmsError("BAD_TAG", "conformance block tag");
  if (r.u8("conformance length") !== 4) throw new DlmsError("BAD_LENGTH", "conformance block length");
  r.u8("unused bits");
  const conformance = (r.u8("conformance") << 16) | (r.u8("conformance") << 8) | r.u8("conformance");
  const maxPduSize = r.u16("max pdu size");
  return { conformance, maxPduSize };
}

export function decodeAarq(bytes: Uint8Array): Aarq {
  const { map } = readTlvs(bytes, 0x60, "AARQ");
  const contextId = oidLast(inner(map.get(0xa1), 0x06, "application context"), "application context");
  const title = inner(map.get(0xa6), 0x04, "calling AP title");
  const mechanism = map.has(0x8b) ? oidLast(map.get(0x8b)!, "mechanism") : MECHANISM_NONE;
  const authenticationValue = inner(map.get(0xac), 0x80, "authentication value");
  const initiate = splitInitiate(inner(map.get(0xbe), 0x04, "user information"), false);
  return { contextId, callingApTitle: title, mechanism, authenticationValue, ...initiate };
}

export function decodeAare(bytes: Uint8Array): Aare {
  const { map } = readTlvs(bytes, 0x61, "AARE");
  const contextId = oidLast(inner(map.get(0xa1), 0x06, "application context"), "application context");
  const result = inner(map.get(0xa2), 0x02, "result")?.[0] ?? 1;
  const diagnosticOuter = inner(map.get(0xa3), 0xa1, "diagnostic");
  const diagnostic = diagnosticOuter === null ? 0 : (inner(diagnosticOuter, 0x02, "diagnostic")?.[0] ?? 0);
  const title = inner(map.get(0xa4), 0x04, "responding AP title");
  const mechanism = map.has(0x89) ? oidLast(map.get(0x89)!, "mechanism") : MECHANISM_NONE;
  const authenticationValue = inner(map.get(0xaa), 0x80, "authentication value");
  const initiate =
    result === 0
      ? splitInitiate(inner(map.get(0xbe), 0x04, "user information"), true)
      : { conformance: 0, maxPduSize: 0, cipheredInitiate: null };
  return {
    contextId,
    result,
    diagnostic,
    respondingApTitle: title,
    mechanism,
    authenticationValue,
    ...initiate,
  };
}

export const RLRQ = Uint8Array.of(0x62, 0x03, 0x80, 0x01, 0x00);
export const RLRE = Uint8Array.of(0x63, 0x03, 0x80, 0x01, 0x00);
