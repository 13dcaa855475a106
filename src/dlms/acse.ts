import { DlmsError, DlmsReader, encodeLength } from "./errors.ts";

// ACSE APDUs (IEC 62056-5-3 / Green Book §9.4, ISO/IEC 8650 as profiled by DLMS): AARQ, AARE,
// RLRQ, RLRE in BER, carrying the xDLMS InitiateRequest/InitiateResponse (A-XDR, or its ciphered
// glo-initiate form) in user-information. Only the fields DLMS/COSEM uses are modelled; unknown
// fields are skipped on decode.

const OID_PREFIX = [0x60, 0x85, 0x74, 0x05, 0x08];
/** Application context names 2.16.756.5.8.1.x (Green Book): LN/SN referencing, with/without ciphering. */
export const CONTEXT_LN = 1;
export const CONTEXT_SN = 2;
export const CONTEXT_LN_CIPHERED = 3;
export const CONTEXT_SN_CIPHERED = 4;
/** Authentication mechanism names 2.16.756.5.8.2.x. */
export const MECHANISM_NONE = 0;
export const MECHANISM_LLS = 1;
export const MECHANISM_HLS = 2;
export const MECHANISM_HLS_MD5 = 3;
export const MECHANISM_HLS_SHA1 = 4;
export const MECHANISM_HLS_GMAC = 5;
export const MECHANISM_HLS_SHA256 = 6;
export const MECHANISM_HLS_ECDSA = 7;

/** Conformance block bits (xDLMS, 24 bits, bit 0 = MSB of the first byte). */
export const CONFORMANCE = {
  generalProtection: 1 << (23 - 1),
  generalBlockTransfer: 1 << (23 - 2),
  read: 1 << (23 - 3),
  write: 1 << (23 - 4),
  unconfirmedWrite: 1 << (23 - 5),
  deltaValueEncoding: 1 << (23 - 6),
  attribute0SupportedWithSet: 1 << (23 - 8),
  priorityMgmtSupported: 1 << (23 - 9),
  attribute0SupportedWithGet: 1 << (23 - 10),
  blockTransferWithGetOrRead: 1 << (23 - 11),
  blockTransferWithSetOrWrite: 1 << (23 - 12),
  blockTransferWithAction: 1 << (23 - 13),
  multipleReferences: 1 << (23 - 14),
  informationReport: 1 << (23 - 15),
  dataNotification: 1 << (23 - 16),
  access: 1 << (23 - 17),
  parameterizedAccess: 1 << (23 - 18),
  get: 1 << (23 - 19),
  set: 1 << (23 - 20),
  selectiveAccess: 1 << (23 - 21),
  eventNotification: 1 << (23 - 22),
  action: 1 << (23 - 23),
} as const;

/** The named bits set in a conformance block, in bit order. */
export function conformanceNames(conformance: number): string[] {
  return Object.entries(CONFORMANCE)
    .filter(([, bit]) => (conformance & bit) !== 0)
    .sort((a, b) => b[1] - a[1])
    .map(([name]) => name);
}

export const DLMS_VERSION = 6;

/** AARE result (ACSE): 0 accepted, 1 rejected-permanent, 2 rejected-transient. */
export const ASSOCIATION_RESULTS: Record<number, string> = {
  0: "accepted",
  1: "rejected-permanent",
  2: "rejected-transient",
};
/** acse-service-user diagnostics (Green Book). */
export const ACSE_SERVICE_USER_DIAGNOSTICS: Record<number, string> = {
  0: "null",
  1: "no-reason-given",
  2: "application-context-name-not-supported",
  3: "calling-AP-title-not-recognized",
  4: "calling-AP-invocation-identifier-not-recognized",
  5: "calling-AE-qualifier-not-recognized",
  6: "calling-AE-invocation-identifier-not-recognized",
  7: "called-AP-title-not-recognized",
  8: "called-AP-invocation-identifier-not-recognized",
  9: "called-AE-qualifier-not-recognized",
  10: "called-AE-invocation-identifier-not-recognized",
  11: "authentication-mechanism-name-not-recognised",
  12: "authentication-mechanism-name-required",
  13: "authentication-failure",
  14: "authentication-required",
};
export const ACSE_SERVICE_PROVIDER_DIAGNOSTICS: Record<number, string> = {
  0: "null",
  1: "no-reason-given",
  2: "no-common-acse-version",
};

export interface Aarq {
  readonly contextId: number;
  readonly callingApTitle: Uint8Array | null;
  readonly mechanism: number;
  readonly authenticationValue: Uint8Array | null;
  readonly conformance: number;
  readonly maxPduSize: number;
  /** glo-initiateRequest content (SC ‖ IC ‖ ciphertext ‖ tag) when the initiate travels ciphered. */
  readonly cipheredInitiate?: Uint8Array | null;
  /** InitiateRequest dedicated-key (16 bytes for suite 0), sent only inside a ciphered initiate. */
  readonly dedicatedKey?: Uint8Array | null;
  /** InitiateRequest response-allowed (DEFAULT TRUE; false for unconfirmed services only). */
  readonly responseAllowed?: boolean;
  readonly proposedQualityOfService?: number | null;
  /** proposed-dlms-version-number (6 today). */
  readonly dlmsVersion?: number;
}

export interface Aare {
  readonly contextId: number;
  /** 0 accepted, 1 rejected-permanent, 2 rejected-transient. */
  readonly result: number;
  /** Diagnostic value; its source says which table names it (user: 13 authentication-failure, 14 authentication-required). */
  readonly diagnostic: number;
  readonly diagnosticSource?: "service-user" | "service-provider";
  readonly respondingApTitle: Uint8Array | null;
  readonly mechanism: number;
  readonly authenticationValue: Uint8Array | null;
  readonly conformance: number;
  readonly maxPduSize: number;
  /** glo-initiateResponse content when the initiate travels ciphered. */
  readonly cipheredInitiate?: Uint8Array | null;
  readonly dlmsVersion?: number;
  /** vaa-name: 0x0007 for LN referencing, 0xFA00 for SN. */
  readonly vaaName?: number;
}

/** BER TLV with short or long definite length. */
function tlv(tag: number, content: ArrayLike<number>): number[] {
  if (content.length > 0xffff) throw new DlmsError("BAD_LENGTH", `ACSE field of ${content.length} bytes`);
  const out = [tag, ...encodeLength(content.length)];
  for (let i = 0; i < content.length; i++) out.push(content[i]!);
  return out;
}

function conformanceBytes(conformance: number): number[] {
  if (!Number.isInteger(conformance) || conformance < 0 || conformance > 0xffffff) {
    throw new DlmsError("BAD_VALUE", `conformance block 0x${conformance.toString(16)} exceeds 24 bits`);
  }
  return [(conformance >> 16) & 0xff, (conformance >> 8) & 0xff, conformance & 0xff];
}

function checkU16(value: number, what: string): number {
  if (!Number.isInteger(value) || value < 0 || value > 0xffff)
    throw new DlmsError("BAD_VALUE", `${what} ${value} is not a uint16`);
  return value;
}

function contextName(contextId: number): number[] {
  if (!Number.isInteger(contextId) || contextId < 0 || contextId > 127) {
    throw new DlmsError("BAD_VALUE", `application context id ${contextId}`);
  }
  return tlv(0x06, [...OID_PREFIX, 0x01, contextId]);
}

export function encodeAarq(a: Aarq): Uint8Array {
  const fields: number[] = [];
  fields.push(...tlv(0xa1, contextName(a.contextId)));
  if (a.callingApTitle !== null) fields.push(...tlv(0xa6, tlv(0x04, a.callingApTitle)));
  if (a.mechanism !== MECHANISM_NONE) {
    fields.push(0x8a, 0x02, 0x07, 0x80); // sender-acse-requirements: BIT STRING, authentication bit set
    fields.push(...tlv(0x8b, [...OID_PREFIX, 0x02, a.mechanism]));
    fields.push(...tlv(0xac, tlv(0x80, a.authenticationValue ?? [])));
  }
  const initiate = a.cipheredInitiate
    ? [GLO_INITIATE_REQUEST, ...encodeLength(a.cipheredInitiate.length), ...a.cipheredInitiate]
    : [
        ...encodeInitiateRequest(a.conformance, a.maxPduSize, {
          dedicatedKey: a.dedicatedKey ?? null,
          responseAllowed: a.responseAllowed ?? true,
          proposedQualityOfService: a.proposedQualityOfService ?? null,
          dlmsVersion: a.dlmsVersion ?? DLMS_VERSION,
        }),
      ];
  fields.push(...tlv(0xbe, tlv(0x04, initiate)));
  return Uint8Array.from(tlv(0x60, fields));
}

export function encodeAare(a: Aare): Uint8Array {
  const fields: number[] = [];
  fields.push(...tlv(0xa1, contextName(a.contextId)));
  fields.push(...tlv(0xa2, tlv(0x02, [a.result & 0xff])));
  const source = a.diagnosticSource === "service-provider" ? 0xa2 : 0xa1;
  fields.push(...tlv(0xa3, tlv(source, tlv(0x02, [a.diagnostic & 0xff]))));
  if (a.respondingApTitle !== null) fields.push(...tlv(0xa4, tlv(0x04, a.respondingApTitle)));
  if (a.mechanism !== MECHANISM_NONE) {
    fields.push(0x88, 0x02, 0x07, 0x80); // responder-acse-requirements: authentication
    fields.push(...tlv(0x89, [...OID_PREFIX, 0x02, a.mechanism]));
    if (a.authenticationValue !== null) fields.push(...tlv(0xaa, tlv(0x80, a.authenticationValue)));
  }
  if (a.result === 0) {
    const initiate = a.cipheredInitiate
      ? [GLO_INITIATE_RESPONSE, ...encodeLength(a.cipheredInitiate.length), ...a.cipheredInitiate]
      : [
          ...encodeInitiateResponse(a.conformance, a.maxPduSize, {
            dlmsVersion: a.dlmsVersion,
            vaaName: a.vaaName,
          }),
        ];
    fields.push(...tlv(0xbe, tlv(0x04, initiate)));
  }
  return Uint8Array.from(tlv(0x61, fields));
}

/** Bound on the BER fields of one ACSE APDU (DLMS uses about a dozen). */
const ACSE_FIELDS_MAX = 32;

function readTlvs(bytes: Uint8Array, outerTag: number, what: string): Map<number, Uint8Array> {
  const r = new DlmsReader(bytes);
  if (r.u8(`${what} tag`) !== outerTag)
    throw new DlmsError("BAD_TAG", `not an ${what} (tag 0x${outerTag.toString(16)})`, 0);
  const length = r.length(what);
  if (length !== r.remaining) {
    throw new DlmsError(
      length > r.remaining ? "TRUNCATED" : "TRAILING_BYTES",
      `${what} length ${length}, ${r.remaining} bytes follow`,
      1,
    );
  }
  const map = new Map<number, Uint8Array>();
  while (r.remaining > 0) {
    const at = r.offset;
    const tag = r.u8("field tag");
    if ((tag & 0x1f) === 0x1f)
      throw new DlmsError("UNSUPPORTED", `multi-byte BER tag 0x${tag.toString(16)}`, at);
    const value = r.bytes(r.length("field"), "field");
    if (map.has(tag)) throw new DlmsError("BAD_TAG", `${what} field 0x${tag.toString(16)} appears twice`, at);
    if (map.size >= ACSE_FIELDS_MAX)
      throw new DlmsError("BAD_LENGTH", `${what} has more than ${ACSE_FIELDS_MAX} fields`, at);
    map.set(tag, value);
  }
  return map;
}

function inner(value: Uint8Array | undefined, tag: number, what: string): Uint8Array | null {
  if (value === undefined) return null;
  const r = new DlmsReader(value);
  const got = r.u8(`${what} tag`);
  if (got !== tag) {
    throw new DlmsError(
      "BAD_TAG",
      `${what}: inner tag 0x${got.toString(16)}, expected 0x${tag.toString(16)}`,
      0,
    );
  }
  const out = r.bytes(r.length(what), what);
  if (r.remaining !== 0)
    throw new DlmsError("TRAILING_BYTES", `${what}: ${r.remaining} bytes after the value`, r.offset);
  return out;
}

function oidLast(value: Uint8Array | null, what: string): number {
  if (value === null) return 0;
  if (value.length !== 7 || OID_PREFIX.some((b, i) => value[i] !== b)) {
    throw new DlmsError("UNSUPPORTED", `${what} is not a DLMS UA name (2.16.756.5.8.x.y)`);
  }
  return value[6]!;
}

function oneByteInteger(value: Uint8Array | null, what: string): number | null {
  if (value === null) return null;
  if (value.length !== 1) throw new DlmsError("BAD_LENGTH", `${what} INTEGER of ${value.length} bytes`);
  return value[0]!;
}

export const GLO_INITIATE_REQUEST = 0x21;
export const GLO_INITIATE_RESPONSE = 0x28;
const INITIATE_REQUEST = 0x01;
const INITIATE_RESPONSE = 0x08;
/** vaa-name of the InitiateResponse: LN referencing (Green Book). */
export const VAA_NAME_LN = 0x0007;

export interface InitiateRequest {
  readonly dedicatedKey: Uint8Array | null;
  readonly responseAllowed: boolean;
  readonly proposedQualityOfService: number | null;
  readonly dlmsVersion: number;
  readonly conformance: number;
  readonly maxPduSize: number;
}

export interface InitiateResponse {
  readonly negotiatedQualityOfService: number | null;
  readonly dlmsVersion: number;
  readonly conformance: number;
  readonly maxPduSize: number;
  readonly vaaName: number;
}

export function encodeInitiateRequest(
  conformance: number,
  maxPduSize: number,
  options: {
    dedicatedKey?: Uint8Array | null;
    responseAllowed?: boolean;
    proposedQualityOfService?: number | null;
    dlmsVersion?: number;
  } = {},
): Uint8Array {
  const out: number[] = [INITIATE_REQUEST];
  const key = options.dedicatedKey ?? null;
  if (key === null) out.push(0x00);
  else out.push(0x01, ...encodeLength(key.length), ...key);
  // response-allowed BOOLEAN DEFAULT TRUE: the default is sent as "absent".
  if (options.responseAllowed ?? true) out.push(0x00);
  else out.push(0x01, 0x00);
  const qos = options.proposedQualityOfService ?? null;
  if (qos === null) out.push(0x00);
  else out.push(0x01, qos & 0xff);
  out.push(options.dlmsVersion ?? DLMS_VERSION, 0x5f, 0x1f, 0x04, 0x00, ...conformanceBytes(conformance));
  checkU16(maxPduSize, "client-max-receive-pdu-size");
  out.push((maxPduSize >> 8) & 0xff, maxPduSize & 0xff);
  return Uint8Array.from(out);
}

export function encodeInitiateResponse(
  conformance: number,
  maxPduSize: number,
  options: {
    negotiatedQualityOfService?: number | null;
    dlmsVersion?: number | undefined;
    vaaName?: number | undefined;
  } = {},
): Uint8Array {
  const out: number[] = [INITIATE_RESPONSE];
  const qos = options.negotiatedQualityOfService ?? null;
  if (qos === null) out.push(0x00);
  else out.push(0x01, qos & 0xff);
  out.push(options.dlmsVersion ?? DLMS_VERSION, 0x5f, 0x1f, 0x04, 0x00, ...conformanceBytes(conformance));
  checkU16(maxPduSize, "server-max-receive-pdu-size");
  const vaa = checkU16(options.vaaName ?? VAA_NAME_LN, "vaa-name");
  out.push((maxPduSize >> 8) & 0xff, maxPduSize & 0xff, vaa >> 8, vaa & 0xff);
  return Uint8Array.from(out);
}

function readConformance(r: DlmsReader): number {
  const at = r.offset;
  // [APPLICATION 31] IMPLICIT BIT STRING (SIZE(24)): 5F 1F, length 4, 0 unused bits, 3 bytes.
  if (r.u8("conformance tag") !== 0x5f || r.u8("conformance tag") !== 0x1f) {
    throw new DlmsError("BAD_TAG", "conformance block must start 5F 1F", at);
  }
  if (r.u8("conformance length") !== 4)
    throw new DlmsError("BAD_LENGTH", "conformance block length must be 4", at + 2);
  r.u8("conformance unused bits");
  return (r.u8("conformance") << 16) | (r.u8("conformance") << 8) | r.u8("conformance");
}

export function decodeInitiateRequest(bytes: Uint8Array): InitiateRequest {
  const r = new DlmsReader(bytes);
  const tag = r.u8("initiate tag");
  if (tag !== INITIATE_REQUEST) {
    throw new DlmsError(
      tag === GLO_INITIATE_REQUEST ? "UNSUPPORTED" : "BAD_TAG",
      `xDLMS InitiateRequest tag 0x${tag.toString(16)} (0x01 expected; decipher a glo-initiate first)`,
      0,
    );
  }
  let dedicatedKey: Uint8Array | null = null;
  if (r.u8("dedicated-key flag") !== 0) dedicatedKey = r.bytes(r.length("dedicated-key"), "dedicated-key");
  let responseAllowed = true;
  if (r.u8("response-allowed flag") !== 0) responseAllowed = r.u8("response-allowed") !== 0;
  const proposedQualityOfService = r.u8("quality-of-service flag") !== 0 ? r.u8("quality-of-service") : null;
  const dlmsVersion = r.u8("dlms version");
  const conformance = readConformance(r);
  const maxPduSize = r.u16("client-max-receive-pdu-size");
  if (r.remaining !== 0)
    throw new DlmsError("TRAILING_BYTES", `${r.remaining} bytes after the InitiateRequest`, r.offset);
  return { dedicatedKey, responseAllowed, proposedQualityOfService, dlmsVersion, conformance, maxPduSize };
}

export function decodeInitiateResponse(bytes: Uint8Array): InitiateResponse {
  const r = new DlmsReader(bytes);
  const tag = r.u8("initiate tag");
  if (tag !== INITIATE_RESPONSE) {
    throw new DlmsError(
      tag === GLO_INITIATE_RESPONSE ? "UNSUPPORTED" : "BAD_TAG",
      `xDLMS InitiateResponse tag 0x${tag.toString(16)} (0x08 expected; decipher a glo-initiate first)`,
      0,
    );
  }
  const negotiatedQualityOfService =
    r.u8("quality-of-service flag") !== 0 ? r.u8("quality-of-service") : null;
  const dlmsVersion = r.u8("dlms version");
  const conformance = readConformance(r);
  const maxPduSize = r.u16("server-max-receive-pdu-size");
  const vaaName = r.u16("vaa-name");
  if (r.remaining !== 0)
    throw new DlmsError("TRAILING_BYTES", `${r.remaining} bytes after the InitiateResponse`, r.offset);
  return { negotiatedQualityOfService, dlmsVersion, conformance, maxPduSize, vaaName };
}

/** The negotiated conformance and PDU size of a plain (deciphered) InitiateRequest or InitiateResponse. */
export function decodeInitiate(
  bytes: Uint8Array,
  response: boolean,
): { conformance: number; maxPduSize: number } {
  const { conformance, maxPduSize } = response ? decodeInitiateResponse(bytes) : decodeInitiateRequest(bytes);
  return { conformance, maxPduSize };
}

function cipheredInitiate(bytes: Uint8Array, tag: number): Uint8Array | null {
  if (bytes[0] !== tag) return null;
  const r = new DlmsReader(bytes);
  r.u8("glo-initiate tag");
  const content = r.bytes(r.length("glo-initiate"), "glo-initiate");
  if (r.remaining !== 0) throw new DlmsError("TRAILING_BYTES", "bytes after the glo-initiate", r.offset);
  return content;
}

export function decodeAarq(bytes: Uint8Array): Aarq {
  const map = readTlvs(bytes, 0x60, "AARQ");
  const contextId = oidLast(inner(map.get(0xa1), 0x06, "application context"), "application context");
  if (contextId === 0) throw new DlmsError("BAD_TAG", "AARQ without application-context-name");
  const callingApTitle = inner(map.get(0xa6), 0x04, "calling AP title");
  const mechanism = map.has(0x8b) ? oidLast(map.get(0x8b)!, "mechanism") : MECHANISM_NONE;
  const authenticationValue = inner(map.get(0xac), 0x80, "calling authentication value");
  const user = inner(map.get(0xbe), 0x04, "user information");
  if (user === null) throw new DlmsError("BAD_TAG", "AARQ without user-information (xDLMS InitiateRequest)");
  const ciphered = cipheredInitiate(user, GLO_INITIATE_REQUEST);
  if (ciphered !== null) {
    return {
      contextId,
      callingApTitle,
      mechanism,
      authenticationValue,
      conformance: 0,
      maxPduSize: 0,
      cipheredInitiate: ciphered,
    };
  }
  const initiate = decodeInitiateRequest(user);
  return { contextId, callingApTitle, mechanism, authenticationValue, ...initiate, cipheredInitiate: null };
}

export function decodeAare(bytes: Uint8Array): Aare {
  const map = readTlvs(bytes, 0x61, "AARE");
  const contextId = oidLast(inner(map.get(0xa1), 0x06, "application context"), "application context");
  const result = oneByteInteger(inner(map.get(0xa2), 0x02, "result"), "result");
  if (result === null) throw new DlmsError("BAD_TAG", "AARE without result");
  let diagnostic = 0;
  let diagnosticSource: "service-user" | "service-provider" = "service-user";
  const diagnosticField = map.get(0xa3);
  if (diagnosticField !== undefined) {
    diagnosticSource = diagnosticField[0] === 0xa2 ? "service-provider" : "service-user";
    const choice = inner(
      diagnosticField,
      diagnosticSource === "service-provider" ? 0xa2 : 0xa1,
      "result-source-diagnostic",
    );
    diagnostic = oneByteInteger(inner(choice ?? undefined, 0x02, "diagnostic"), "diagnostic") ?? 0;
  }
  const respondingApTitle = inner(map.get(0xa4), 0x04, "responding AP title");
  const mechanism = map.has(0x89) ? oidLast(map.get(0x89)!, "mechanism") : MECHANISM_NONE;
  const authenticationValue = inner(map.get(0xaa), 0x80, "responding authentication value");
  const base = {
    contextId,
    result,
    diagnostic,
    ...(diagnosticSource === "service-provider" ? { diagnosticSource } : {}),
    respondingApTitle,
    mechanism,
    authenticationValue,
  };
  const user = inner(map.get(0xbe), 0x04, "user information");
  // A rejecting AARE may carry a confirmed-service-error or an InitiateResponse; neither binds.
  if (result !== 0 || user === null)
    return { ...base, conformance: 0, maxPduSize: 0, cipheredInitiate: null };
  const ciphered = cipheredInitiate(user, GLO_INITIATE_RESPONSE);
  if (ciphered !== null) return { ...base, conformance: 0, maxPduSize: 0, cipheredInitiate: ciphered };
  const initiate = decodeInitiateResponse(user);
  // dlms version and vaa-name stay out of the result (decodeInitiateResponse has them) unless unusual.
  return {
    ...base,
    conformance: initiate.conformance,
    maxPduSize: initiate.maxPduSize,
    ...(initiate.dlmsVersion !== DLMS_VERSION ? { dlmsVersion: initiate.dlmsVersion } : {}),
    ...(initiate.vaaName !== VAA_NAME_LN ? { vaaName: initiate.vaaName } : {}),
    cipheredInitiate: null,
  };
}

// ───────────────────────────── release ─────────────────────────────

/** RLRQ reason (ACSE): 0 normal, 1 urgent, 30 user-defined. RLRE reason: 0 normal, 1 not-finished, 30 user-defined. */
export const RELEASE_REQUEST_REASONS: Record<number, string> = {
  0: "normal",
  1: "urgent",
  30: "user-defined",
};
export const RELEASE_RESPONSE_REASONS: Record<number, string> = {
  0: "normal",
  1: "not-finished",
  30: "user-defined",
};

export interface Release {
  /** null when the reason field is absent. */
  readonly reason: number | null;
  /** The user-information octets (an InitiateRequest/Response or its glo- form), when present. */
  readonly userInformation: Uint8Array | null;
}

function encodeRelease(tag: number, release: Release): Uint8Array {
  const fields: number[] = [];
  if (release.reason !== null) fields.push(...tlv(0x80, [release.reason & 0xff]));
  if (release.userInformation !== null) fields.push(...tlv(0xbe, tlv(0x04, release.userInformation)));
  return Uint8Array.from(tlv(tag, fields));
}

function decodeRelease(bytes: Uint8Array, tag: number, what: string): Release {
  const map = readTlvs(bytes, tag, what);
  const reasonField = map.get(0x80);
  return {
    reason: reasonField === undefined ? null : oneByteInteger(reasonField, `${what} reason`),
    userInformation: inner(map.get(0xbe), 0x04, "user information"),
  };
}

export const encodeRlrq = (release: Release): Uint8Array => encodeRelease(0x62, release);
export const encodeRlre = (release: Release): Uint8Array => encodeRelease(0x63, release);
/** Servers accept a release request with or without reason and user-information (Green Book). */
export const decodeRlrq = (bytes: Uint8Array): Release => decodeRelease(bytes, 0x62, "RLRQ");
export const decodeRlre = (bytes: Uint8Array): Release => decodeRelease(bytes, 0x63, "RLRE");

export const RLRQ = encodeRlrq({ reason: 0, userInformation: null });
export const RLRE = encodeRlre({ reason: 0, userInformation: null });
