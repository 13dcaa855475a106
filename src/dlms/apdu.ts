import { type Data, dataToJson, dateTimeJson, decodeDateTimeBytes, encodeData, readData } from "./axdr.ts";
import { DlmsError, DlmsReader, encodeLength } from "./errors.ts";
import { formatObis, type Obis, obisToBytes } from "./obis.ts";
import { DLMS_UNIT_TABLE, formatScaled, scalerUnitOf, unitName } from "./units.ts";

// xDLMS APDUs (IEC 62056-5-3 / Green Book §9.5, A-XDR encoded): GET (normal, next, with-list, and the
// with-datablock response of block transfer), SET (normal, with-first-datablock, with-datablock and
// their responses), ACTION normal, DataNotification, ExceptionResponse; ciphered APDUs and ACSE
// APDUs are recognised here and taken apart in security.ts / acse.ts. Encode and decode side by side.

export type { Obis } from "./obis.ts";
export { formatObis, parseObis } from "./obis.ts";

/** Bound on the items of a with-list request or response. */
export const APDU_LIST_ITEMS_MAX = 1024;

export const DATA_ACCESS_RESULTS: Record<number, string> = {
  0: "success",
  1: "hardware-fault",
  2: "temporary-failure",
  3: "read-write-denied",
  4: "object-undefined",
  9: "object-class-inconsistent",
  11: "object-unavailable",
  12: "type-unmatched",
  13: "scope-of-access-violated",
  14: "data-block-unavailable",
  15: "long-get-aborted",
  16: "no-long-get-in-progress",
  17: "long-set-aborted",
  18: "no-long-set-in-progress",
  19: "data-block-number-invalid",
  250: "other-reason",
};

export const ACTION_RESULTS: Record<number, string> = {
  0: "success",
  1: "hardware-fault",
  2: "temporary-failure",
  3: "read-write-denied",
  4: "object-undefined",
  9: "object-class-inconsistent",
  11: "object-unavailable",
  12: "type-unmatched",
  13: "scope-of-access-violated",
  14: "data-block-unavailable",
  15: "long-action-aborted",
  16: "no-long-action-in-progress",
  250: "other-reason",
};

/** ExceptionResponse (Green Book): state-error and service-error enumerations. */
export const EXCEPTION_STATE_ERRORS: Record<number, string> = {
  1: "service-not-allowed",
  2: "service-unknown",
};
export const EXCEPTION_SERVICE_ERRORS: Record<number, string> = {
  1: "operation-not-possible",
  2: "service-not-supported",
  3: "other-reason",
  4: "pdu-too-long",
  5: "deciphering-error",
  6: "invocation-counter-error",
};

/** Unit code → symbol (Blue Book scaler_unit enumeration); the full table with names is in units.ts. */
export const DLMS_UNITS: Record<number, string> = Object.fromEntries(
  Object.entries(DLMS_UNIT_TABLE).map(([code, unit]) => [code, unit.symbol === "" ? "count" : unit.symbol]),
);

/**
 * Invoke-Id-And-Priority (Green Book): bits 0-3 invoke-id, bit 6 service class (1 = confirmed),
 * bit 7 priority (1 = high). APDUs carry the whole byte as `invokeId`; these helpers split it.
 */
export function invokeIdAndPriority(
  invokeId: number,
  options: { confirmed?: boolean; highPriority?: boolean } = {},
) {
  if (!Number.isInteger(invokeId) || invokeId < 0 || invokeId > 15) {
    throw new DlmsError("BAD_VALUE", `invoke-id ${invokeId} outside 0..15`);
  }
  return invokeId | ((options.confirmed ?? true) ? 0x40 : 0) | (options.highPriority ? 0x80 : 0);
}

export function parseInvokeIdAndPriority(byte: number): {
  invokeId: number;
  confirmed: boolean;
  highPriority: boolean;
} {
  return { invokeId: byte & 0x0f, confirmed: (byte & 0x40) !== 0, highPriority: (byte & 0x80) !== 0 };
}

export interface AttributeDescriptor {
  readonly classId: number;
  readonly obis: Obis;
  readonly attributeId: number;
}

export interface MethodDescriptor {
  readonly classId: number;
  readonly obis: Obis;
  readonly methodId: number;
}

/** Selective access (access_selector + access_parameters), e.g. a profile's range_descriptor. */
export interface AccessSelection {
  readonly selector: number;
  readonly parameters: Data;
}

export type GetDataResult = { data: Data } | { error: number };
export type DataBlockResult = { rawData: Uint8Array } | { error: number };

export type Apdu =
  | {
      kind: "get-request-normal";
      invokeId: number;
      attribute: AttributeDescriptor;
      accessSelection: AccessSelection | null;
    }
  | { kind: "get-request-next"; invokeId: number; blockNumber: number }
  | {
      kind: "get-request-with-list";
      invokeId: number;
      attributes: Array<{ attribute: AttributeDescriptor; accessSelection: AccessSelection | null }>;
    }
  | { kind: "get-response-normal"; invokeId: number; result: GetDataResult }
  | {
      kind: "get-response-with-datablock";
      invokeId: number;
      lastBlock: boolean;
      blockNumber: number;
      result: DataBlockResult;
    }
  | { kind: "get-response-with-list"; invokeId: number; results: GetDataResult[] }
  | {
      kind: "set-request-normal";
      invokeId: number;
      attribute: AttributeDescriptor;
      accessSelection?: AccessSelection | null;
      value: Data;
    }
  | {
      kind: "set-request-with-first-datablock";
      invokeId: number;
      attribute: AttributeDescriptor;
      accessSelection: AccessSelection | null;
      lastBlock: boolean;
      blockNumber: number;
      rawData: Uint8Array;
    }
  | {
      kind: "set-request-with-datablock";
      invokeId: number;
      lastBlock: boolean;
      blockNumber: number;
      rawData: Uint8Array;
    }
  | { kind: "set-response-normal"; invokeId: number; result: number }
  | { kind: "set-response-datablock"; invokeId: number; blockNumber: number }
  | { kind: "set-response-last-datablock"; invokeId: number; result: number; blockNumber: number }
  | {
      kind: "action-request-normal";
      invokeId: number;
      method: MethodDescriptor;
      parameters: Data | null;
    }
  | {
      kind: "action-response-normal";
      invokeId: number;
      result: number;
      returned: GetDataResult | null;
    }
  | { kind: "data-notification"; longInvokeId: number; dateTime: Uint8Array | null; body: Data }
  | {
      kind: "exception-response";
      stateError: number;
      serviceError: number;
      /** Present with service-error invocation-counter-error (6): the counter the server expects. */
      invocationCounter?: number;
    }
  | {
      kind: "general-glo-ciphering";
      systemTitle: Uint8Array;
      securityControl: number;
      invocationCounter: number;
      cipheredBytes: number;
      /** SC ‖ IC ‖ ciphertext ‖ tag, as `unprotect` takes it. */
      content: Uint8Array;
      /** 0xDB general-glo-ciphering or 0xDC general-ded-ciphering. */
      tag?: number;
    }
  | {
      kind: "ciphered-service";
      /** glo-xxx (200..207) or ded-xxx (208..215) service-specific ciphered APDU. */
      tag: number;
      name: string;
      securityControl: number;
      invocationCounter: number;
      cipheredBytes: number;
      content: Uint8Array;
    }
  | { kind: "acse"; tag: number; name: string; length: number };

const TAG = {
  getRequest: 0xc0,
  setRequest: 0xc1,
  actionRequest: 0xc3,
  getResponse: 0xc4,
  setResponse: 0xc5,
  actionResponse: 0xc7,
  dataNotification: 0x0f,
  exception: 0xd8,
  generalGloCiphering: 0xdb,
  generalDedCiphering: 0xdc,
} as const;

/** Service-specific ciphered APDU tags (Green Book xDLMS APDU table). */
export const CIPHERED_SERVICE_TAGS: Record<number, string> = {
  33: "glo-initiate-request",
  40: "glo-initiate-response",
  200: "glo-get-request",
  201: "glo-set-request",
  202: "glo-event-notification-request",
  203: "glo-action-request",
  204: "glo-get-response",
  205: "glo-set-response",
  207: "glo-action-response",
  208: "ded-get-request",
  209: "ded-set-request",
  210: "ded-event-notification-request",
  211: "ded-action-request",
  212: "ded-get-response",
  213: "ded-set-response",
  215: "ded-action-response",
};

/** The glo-xxx tag that protects a plain APDU with the global key (C0 GET-Request → C8 glo-get-request). */
export function gloTagFor(plainTag: number): number {
  const glo: Record<number, number> = {
    192: 200,
    193: 201,
    194: 202,
    195: 203,
    196: 204,
    197: 205,
    199: 207,
  };
  const tag = glo[plainTag];
  if (tag === undefined)
    throw new DlmsError("UNSUPPORTED", `no glo- ciphered form of APDU tag 0x${plainTag.toString(16)}`);
  return tag;
}

const ACSE: Record<number, string> = { 96: "AARQ", 97: "AARE", 98: "RLRQ", 99: "RLRE" };

/** Recognised but not taken apart here. */
const OTHER_TAGS: Record<number, string> = {
  194: "event-notification-request",
  217: "access-request",
  218: "access-response",
  221: "general-ciphering",
  223: "general-signing",
  224: "general-block-transfer",
};

function readDescriptor(r: DlmsReader): { classId: number; obis: Obis; id: number } {
  const classId = r.u16("class id");
  const obis = Array.from(r.bytes(6, "instance id")) as unknown as Obis;
  const id = r.view(1, "attribute/method id").getInt8(0);
  return { classId, obis, id };
}

function readAccessSelection(r: DlmsReader): AccessSelection | null {
  const flag = r.u8("access selection flag");
  if (flag === 0) return null;
  if (flag !== 1) throw new DlmsError("BAD_TAG", `access selection flag ${flag} (0 or 1)`, r.offset - 1);
  return { selector: r.u8("access selector"), parameters: readData(r, 0) };
}

function readGetDataResult(r: DlmsReader): GetDataResult {
  const choice = r.u8("Get-Data-Result choice");
  if (choice === 0) return { data: readData(r, 0) };
  if (choice === 1) return { error: r.u8("data-access-result") };
  throw new DlmsError("BAD_TAG", `Get-Data-Result choice ${choice}`, r.offset - 1);
}

function readBoolean(r: DlmsReader, what: string): boolean {
  const v = r.u8(what);
  if (v > 1) throw new DlmsError("BAD_VALUE", `${what} ${v} is not a BOOLEAN (0 or 1)`, r.offset - 1);
  return v === 1;
}

function readListCount(r: DlmsReader, what: string): number {
  const at = r.offset;
  const count = r.length(what);
  if (count > APDU_LIST_ITEMS_MAX)
    throw new DlmsError("BAD_LENGTH", `${what}: ${count} items (limit ${APDU_LIST_ITEMS_MAX})`, at);
  return count;
}

function attributeOf(d: { classId: number; obis: Obis; id: number }): AttributeDescriptor {
  return { classId: d.classId, obis: d.obis, attributeId: d.id };
}

function decodeGetRequest(r: DlmsReader): Apdu {
  const typeAt = r.offset;
  const type = r.u8("get-request type");
  const invokeId = r.u8("invoke-id-and-priority");
  switch (type) {
    case 1:
      return {
        kind: "get-request-normal",
        invokeId,
        attribute: attributeOf(readDescriptor(r)),
        accessSelection: readAccessSelection(r),
      };
    case 2:
      return { kind: "get-request-next", invokeId, blockNumber: r.u32("block-number") };
    case 3: {
      const count = readListCount(r, "attribute-descriptor-list");
      const attributes = [];
      for (let i = 0; i < count; i++) {
        attributes.push({
          attribute: attributeOf(readDescriptor(r)),
          accessSelection: readAccessSelection(r),
        });
      }
      return { kind: "get-request-with-list", invokeId, attributes };
    }
    default:
      throw new DlmsError("BAD_TAG", `get-request choice ${type} (1 normal, 2 next, 3 with-list)`, typeAt);
  }
}

function decodeGetResponse(r: DlmsReader): Apdu {
  const typeAt = r.offset;
  const type = r.u8("get-response type");
  const invokeId = r.u8("invoke-id-and-priority");
  switch (type) {
    case 1:
      return { kind: "get-response-normal", invokeId, result: readGetDataResult(r) };
    case 2: {
      const lastBlock = readBoolean(r, "last-block");
      const blockNumber = r.u32("block-number");
      const choice = r.u8("DataBlock-G result choice");
      let result: DataBlockResult;
      if (choice === 0) result = { rawData: r.bytes(r.length("raw-data"), "raw-data") };
      else if (choice === 1) result = { error: r.u8("data-access-result") };
      else throw new DlmsError("BAD_TAG", `DataBlock-G result choice ${choice}`, r.offset - 1);
      return { kind: "get-response-with-datablock", invokeId, lastBlock, blockNumber, result };
    }
    case 3: {
      const count = readListCount(r, "get-response result list");
      const results: GetDataResult[] = [];
      for (let i = 0; i < count; i++) results.push(readGetDataResult(r));
      return { kind: "get-response-with-list", invokeId, results };
    }
    default:
      throw new DlmsError(
        "BAD_TAG",
        `get-response choice ${type} (1 normal, 2 with-datablock, 3 with-list)`,
        typeAt,
      );
  }
}

function readDataBlockSa(r: DlmsReader): { lastBlock: boolean; blockNumber: number; rawData: Uint8Array } {
  const lastBlock = readBoolean(r, "last-block");
  const blockNumber = r.u32("block-number");
  return { lastBlock, blockNumber, rawData: r.bytes(r.length("raw-data"), "raw-data") };
}

function decodeSetRequest(r: DlmsReader): Apdu {
  const typeAt = r.offset;
  const type = r.u8("set-request type");
  const invokeId = r.u8("invoke-id-and-priority");
  switch (type) {
    case 1: {
      const attribute = attributeOf(readDescriptor(r));
      const accessSelection = readAccessSelection(r);
      return { kind: "set-request-normal", invokeId, attribute, accessSelection, value: readData(r, 0) };
    }
    case 2: {
      const attribute = attributeOf(readDescriptor(r));
      const accessSelection = readAccessSelection(r);
      return {
        kind: "set-request-with-first-datablock",
        invokeId,
        attribute,
        accessSelection,
        ...readDataBlockSa(r),
      };
    }
    case 3:
      return { kind: "set-request-with-datablock", invokeId, ...readDataBlockSa(r) };
    default:
      throw new DlmsError(
        "UNSUPPORTED",
        `set-request choice ${type} (1 normal, 2 first-datablock, 3 datablock decoded)`,
        typeAt,
      );
  }
}

function decodeSetResponse(r: DlmsReader): Apdu {
  const typeAt = r.offset;
  const type = r.u8("set-response type");
  const invokeId = r.u8("invoke-id-and-priority");
  switch (type) {
    case 1:
      return { kind: "set-response-normal", invokeId, result: r.u8("data-access-result") };
    case 2:
      return { kind: "set-response-datablock", invokeId, blockNumber: r.u32("block-number") };
    case 3: {
      const result = r.u8("data-access-result");
      return { kind: "set-response-last-datablock", invokeId, result, blockNumber: r.u32("block-number") };
    }
    default:
      throw new DlmsError(
        "UNSUPPORTED",
        `set-response choice ${type} (1 normal, 2 datablock, 3 last-datablock decoded)`,
        typeAt,
      );
  }
}

function readCipheredContent(r: DlmsReader, what: string) {
  const at = r.offset;
  const length = r.length(what);
  if (length < 5) throw new DlmsError("BAD_LENGTH", `${what} of ${length} bytes is shorter than SC ‖ IC`, at);
  const content = r.bytes(length, what);
  const securityControl = content[0]!;
  const invocationCounter = new DataView(content.buffer, content.byteOffset + 1, 4).getUint32(0);
  return { securityControl, invocationCounter, cipheredBytes: length - 5, content };
}

export function decodeApdu(bytes: Uint8Array): Apdu {
  const r = new DlmsReader(bytes);
  const tag = r.u8("APDU tag");
  let apdu: Apdu;
  switch (tag) {
    case TAG.getRequest:
      apdu = decodeGetRequest(r);
      break;
    case TAG.getResponse:
      apdu = decodeGetResponse(r);
      break;
    case TAG.setRequest:
      apdu = decodeSetRequest(r);
      break;
    case TAG.setResponse:
      apdu = decodeSetResponse(r);
      break;
    case TAG.actionRequest: {
      const type = r.u8("action-request type");
      if (type !== 1)
        throw new DlmsError("UNSUPPORTED", `action-request choice ${type} (only normal is decoded)`, 1);
      const invokeId = r.u8("invoke-id-and-priority");
      const d = readDescriptor(r);
      const flag = r.u8("parameters flag");
      if (flag > 1) throw new DlmsError("BAD_TAG", `parameters flag ${flag} (0 or 1)`, r.offset - 1);
      const parameters = flag === 1 ? readData(r, 0) : null;
      apdu = {
        kind: "action-request-normal",
        invokeId,
        method: { classId: d.classId, obis: d.obis, methodId: d.id },
        parameters,
      };
      break;
    }
    case TAG.actionResponse: {
      const type = r.u8("action-response type");
      if (type !== 1)
        throw new DlmsError("UNSUPPORTED", `action-response choice ${type} (only normal is decoded)`, 1);
      const invokeId = r.u8("invoke-id-and-priority");
      const result = r.u8("action-result");
      const flag = r.u8("return parameters flag");
      if (flag > 1) throw new DlmsError("BAD_TAG", `return parameters flag ${flag} (0 or 1)`, r.offset - 1);
      const returned = flag === 1 ? readGetDataResult(r) : null;
      apdu = { kind: "action-response-normal", invokeId, result, returned };
      break;
    }
    case TAG.dataNotification: {
      const longInvokeId = r.u32("long-invoke-id-and-priority");
      const dtLength = r.u8("date-time length");
      if (dtLength !== 0 && dtLength !== 12)
        throw new DlmsError("BAD_LENGTH", `date-time of ${dtLength} octets (0 or 12)`, r.offset - 1);
      const dateTime = dtLength === 12 ? r.bytes(12, "date-time") : null;
      apdu = { kind: "data-notification", longInvokeId, dateTime, body: readData(r, 0) };
      break;
    }
    case TAG.exception: {
      const stateError = r.u8("state-error");
      const serviceError = r.u8("service-error");
      // Green Book: invocation-counter-error carries the Unsigned32 the server expects.
      apdu =
        serviceError === 6 && r.remaining >= 4
          ? {
              kind: "exception-response",
              stateError,
              serviceError,
              invocationCounter: r.u32("invocation counter"),
            }
          : { kind: "exception-response", stateError, serviceError };
      break;
    }
    case TAG.generalGloCiphering:
    case TAG.generalDedCiphering: {
      const titleAt = r.offset;
      const titleLength = r.length("system title");
      if (titleLength !== 8 && titleLength !== 0) {
        throw new DlmsError(
          "BAD_LENGTH",
          `system title of ${titleLength} bytes (8, or 0 when known)`,
          titleAt,
        );
      }
      const systemTitle = r.bytes(titleLength, "system title");
      apdu = {
        kind: "general-glo-ciphering",
        systemTitle,
        ...readCipheredContent(r, "ciphered content"),
        tag,
      };
      break;
    }
    default: {
      const ciphered = CIPHERED_SERVICE_TAGS[tag];
      if (ciphered !== undefined) {
        apdu = { kind: "ciphered-service", tag, name: ciphered, ...readCipheredContent(r, ciphered) };
        break;
      }
      const name = ACSE[tag];
      if (name === undefined) {
        const other = OTHER_TAGS[tag];
        throw new DlmsError(
          other === undefined ? "BAD_TAG" : "UNSUPPORTED",
          other === undefined
            ? `unknown APDU tag 0x${tag.toString(16)}`
            : `${other} (0x${tag.toString(16)}) is not decoded`,
          0,
        );
      }
      const length = r.length(name);
      r.bytes(length, name);
      apdu = { kind: "acse", tag, name, length };
    }
  }
  if (r.remaining !== 0)
    throw new DlmsError("TRAILING_BYTES", `${r.remaining} bytes after the APDU`, r.offset);
  return apdu;
}

function checkByte(value: number, what: string): number {
  if (!Number.isInteger(value) || value < 0 || value > 0xff)
    throw new DlmsError("BAD_VALUE", `${what} ${value} is not a byte`);
  return value;
}

function checkU32(value: number, what: string): number {
  if (!Number.isInteger(value) || value < 0 || value > 0xffffffff)
    throw new DlmsError("BAD_VALUE", `${what} ${value} is not a uint32`);
  return value;
}

function writeDescriptor(out: number[], classId: number, obis: Obis, id: number): void {
  if (!Number.isInteger(classId) || classId < 0 || classId > 0xffff)
    throw new DlmsError("BAD_VALUE", `class id ${classId} is not a uint16`);
  if (!Number.isInteger(id) || id < -128 || id > 127)
    throw new DlmsError("BAD_VALUE", `attribute/method id ${id} is not an Integer8`);
  out.push(classId >> 8, classId & 0xff, ...obisToBytes(obis), id & 0xff);
}

function writeU32(out: number[], value: number, what: string): void {
  checkU32(value, what);
  out.push((value >>> 24) & 0xff, (value >>> 16) & 0xff, (value >>> 8) & 0xff, value & 0xff);
}

function writeBytes(out: number[], bytes: Uint8Array): void {
  for (const b of encodeLength(bytes.length)) out.push(b);
  for (const b of bytes) out.push(b);
}

function writeData(out: number[], data: Data): void {
  for (const b of encodeData(data)) out.push(b);
}

function writeAccessSelection(out: number[], selection: AccessSelection | null | undefined): void {
  if (selection === null || selection === undefined) out.push(0);
  else {
    out.push(1, checkByte(selection.selector, "access selector"));
    writeData(out, selection.parameters);
  }
}

function writeGetDataResult(out: number[], result: GetDataResult): void {
  if ("data" in result) {
    out.push(0);
    writeData(out, result.data);
  } else out.push(1, checkByte(result.error, "data-access-result"));
}

function writeListCount(out: number[], count: number, what: string): void {
  if (count > APDU_LIST_ITEMS_MAX)
    throw new DlmsError("BAD_LENGTH", `${what}: ${count} items (limit ${APDU_LIST_ITEMS_MAX})`);
  for (const b of encodeLength(count)) out.push(b);
}

/**
 * The raw-data of a get-response-with-list sent in blocks (Green Book: when the with-list response does
 * not fit, its SEQUENCE OF Get-Data-Result travels as datablocks): count, then each result.
 */
export function encodeGetResultList(results: readonly GetDataResult[]): Uint8Array {
  const out: number[] = [];
  writeListCount(out, results.length, "result list");
  for (const result of results) writeGetDataResult(out, result);
  return Uint8Array.from(out);
}

export function decodeGetResultList(bytes: Uint8Array): GetDataResult[] {
  const r = new DlmsReader(bytes);
  const count = readListCount(r, "get-response result list");
  const results: GetDataResult[] = [];
  for (let i = 0; i < count; i++) results.push(readGetDataResult(r));
  if (r.remaining !== 0)
    throw new DlmsError("TRAILING_BYTES", `${r.remaining} bytes after the result list`, r.offset);
  return results;
}

export type EncodableApdu = Exclude<Apdu, { kind: "acse" }>;

export function encodeApdu(apdu: EncodableApdu): Uint8Array {
  const out: number[] = [];
  const head = (tag: number, type: number, invokeId: number) =>
    out.push(tag, type, checkByte(invokeId, "invoke-id-and-priority"));
  switch (apdu.kind) {
    case "get-request-normal":
      head(TAG.getRequest, 1, apdu.invokeId);
      writeDescriptor(out, apdu.attribute.classId, apdu.attribute.obis, apdu.attribute.attributeId);
      writeAccessSelection(out, apdu.accessSelection);
      break;
    case "get-request-next":
      head(TAG.getRequest, 2, apdu.invokeId);
      writeU32(out, apdu.blockNumber, "block-number");
      break;
    case "get-request-with-list":
      head(TAG.getRequest, 3, apdu.invokeId);
      writeListCount(out, apdu.attributes.length, "attribute-descriptor-list");
      for (const item of apdu.attributes) {
        writeDescriptor(out, item.attribute.classId, item.attribute.obis, item.attribute.attributeId);
        writeAccessSelection(out, item.accessSelection);
      }
      break;
    case "get-response-normal":
      head(TAG.getResponse, 1, apdu.invokeId);
      writeGetDataResult(out, apdu.result);
      break;
    case "get-response-with-datablock":
      head(TAG.getResponse, 2, apdu.invokeId);
      out.push(apdu.lastBlock ? 1 : 0);
      writeU32(out, apdu.blockNumber, "block-number");
      if ("rawData" in apdu.result) {
        out.push(0);
        writeBytes(out, apdu.result.rawData);
      } else out.push(1, checkByte(apdu.result.error, "data-access-result"));
      break;
    case "get-response-with-list":
      head(TAG.getResponse, 3, apdu.invokeId);
      writeListCount(out, apdu.results.length, "result list");
      for (const result of apdu.results) writeGetDataResult(out, result);
      break;
    case "set-request-normal":
      head(TAG.setRequest, 1, apdu.invokeId);
      writeDescriptor(out, apdu.attribute.classId, apdu.attribute.obis, apdu.attribute.attributeId);
      writeAccessSelection(out, apdu.accessSelection);
      writeData(out, apdu.value);
      break;
    case "set-request-with-first-datablock":
      head(TAG.setRequest, 2, apdu.invokeId);
      writeDescriptor(out, apdu.attribute.classId, apdu.attribute.obis, apdu.attribute.attributeId);
      writeAccessSelection(out, apdu.accessSelection);
      out.push(apdu.lastBlock ? 1 : 0);
      writeU32(out, apdu.blockNumber, "block-number");
      writeBytes(out, apdu.rawData);
      break;
    case "set-request-with-datablock":
      head(TAG.setRequest, 3, apdu.invokeId);
      out.push(apdu.lastBlock ? 1 : 0);
      writeU32(out, apdu.blockNumber, "block-number");
      writeBytes(out, apdu.rawData);
      break;
    case "set-response-normal":
      head(TAG.setResponse, 1, apdu.invokeId);
      out.push(checkByte(apdu.result, "data-access-result"));
      break;
    case "set-response-datablock":
      head(TAG.setResponse, 2, apdu.invokeId);
      writeU32(out, apdu.blockNumber, "block-number");
      break;
    case "set-response-last-datablock":
      head(TAG.setResponse, 3, apdu.invokeId);
      out.push(checkByte(apdu.result, "data-access-result"));
      writeU32(out, apdu.blockNumber, "block-number");
      break;
    case "action-request-normal":
      head(TAG.actionRequest, 1, apdu.invokeId);
      writeDescriptor(out, apdu.method.classId, apdu.method.obis, apdu.method.methodId);
      if (apdu.parameters === null) out.push(0);
      else {
        out.push(1);
        writeData(out, apdu.parameters);
      }
      break;
    case "action-response-normal":
      head(TAG.actionResponse, 1, apdu.invokeId);
      out.push(checkByte(apdu.result, "action-result"));
      if (apdu.returned === null) out.push(0);
      else {
        out.push(1);
        writeGetDataResult(out, apdu.returned);
      }
      break;
    case "data-notification":
      out.push(TAG.dataNotification);
      writeU32(out, apdu.longInvokeId, "long-invoke-id-and-priority");
      if (apdu.dateTime === null) out.push(0);
      else {
        if (apdu.dateTime.length !== 12)
          throw new DlmsError("BAD_LENGTH", `date-time of ${apdu.dateTime.length} octets (12)`);
        writeBytes(out, apdu.dateTime);
      }
      writeData(out, apdu.body);
      break;
    case "exception-response":
      out.push(
        TAG.exception,
        checkByte(apdu.stateError, "state-error"),
        checkByte(apdu.serviceError, "service-error"),
      );
      if (apdu.invocationCounter !== undefined) writeU32(out, apdu.invocationCounter, "invocation counter");
      break;
    case "general-glo-ciphering":
      out.push(apdu.tag ?? TAG.generalGloCiphering);
      writeBytes(out, apdu.systemTitle);
      writeBytes(out, apdu.content);
      break;
    case "ciphered-service":
      out.push(checkByte(apdu.tag, "ciphered APDU tag"));
      writeBytes(out, apdu.content);
      break;
  }
  return Uint8Array.from(out);
}

// ───────────────────────────── selective access ─────────────────────────────

/** capture_object_definition of a profile (Blue Book class 7 attribute 3). */
export interface CaptureObjectDefinition {
  readonly classId: number;
  readonly obis: Obis;
  readonly attributeIndex: number;
  readonly dataIndex: number;
}

export function encodeCaptureObject(c: CaptureObjectDefinition): Data {
  return {
    type: "structure",
    value: [
      { type: "long-unsigned", value: c.classId },
      { type: "octet-string", value: obisToBytes(c.obis) },
      { type: "integer", value: c.attributeIndex },
      { type: "long-unsigned", value: c.dataIndex },
    ],
  };
}

export function decodeCaptureObject(data: Data): CaptureObjectDefinition {
  if (data.type === "structure" && data.value.length === 4) {
    const [classId, ln, attributeIndex, dataIndex] = data.value;
    if (
      classId?.type === "long-unsigned" &&
      ln?.type === "octet-string" &&
      ln.value.length === 6 &&
      attributeIndex?.type === "integer" &&
      dataIndex?.type === "long-unsigned"
    ) {
      return {
        classId: classId.value,
        obis: Array.from(ln.value) as unknown as Obis,
        attributeIndex: attributeIndex.value,
        dataIndex: dataIndex.value,
      };
    }
  }
  throw new DlmsError(
    "BAD_VALUE",
    "capture_object_definition must be { long-unsigned, octet-string(6), integer, long-unsigned }",
  );
}

/** Profile generic (class 7) range_descriptor, access selector 1. */
export interface RangeDescriptor {
  readonly restrictingObject: CaptureObjectDefinition;
  readonly fromValue: Data;
  readonly toValue: Data;
  /** Empty = all captured columns. */
  readonly selectedValues: readonly CaptureObjectDefinition[];
}

/** Profile generic (class 7) entry_descriptor, access selector 2 (1-based entries; 0 = to the last). */
export interface EntryDescriptor {
  readonly fromEntry: number;
  readonly toEntry: number;
  readonly fromSelectedValue: number;
  readonly toSelectedValue: number;
}

export const ACCESS_SELECTOR_RANGE = 1;
export const ACCESS_SELECTOR_ENTRY = 2;

export function rangeDescriptor(range: RangeDescriptor): AccessSelection {
  return {
    selector: ACCESS_SELECTOR_RANGE,
    parameters: {
      type: "structure",
      value: [
        encodeCaptureObject(range.restrictingObject),
        range.fromValue,
        range.toValue,
        { type: "array", value: range.selectedValues.map(encodeCaptureObject) },
      ],
    },
  };
}

export function entryDescriptor(entry: EntryDescriptor): AccessSelection {
  return {
    selector: ACCESS_SELECTOR_ENTRY,
    parameters: {
      type: "structure",
      value: [
        { type: "double-long-unsigned", value: entry.fromEntry },
        { type: "double-long-unsigned", value: entry.toEntry },
        { type: "long-unsigned", value: entry.fromSelectedValue },
        { type: "long-unsigned", value: entry.toSelectedValue },
      ],
    },
  };
}

/** Reads a selective access of a profile; throws BAD_VALUE on a malformed descriptor. */
export function parseProfileAccess(
  selection: AccessSelection,
): { selector: 1; range: RangeDescriptor } | { selector: 2; entry: EntryDescriptor } {
  const p = selection.parameters;
  if (selection.selector === ACCESS_SELECTOR_RANGE && p.type === "structure" && p.value.length === 4) {
    const [restricting, fromValue, toValue, selected] = p.value;
    if (selected?.type !== "array")
      throw new DlmsError("BAD_VALUE", "range_descriptor selected_values must be an array");
    return {
      selector: 1,
      range: {
        restrictingObject: decodeCaptureObject(restricting!),
        fromValue: fromValue!,
        toValue: toValue!,
        selectedValues: selected.value.map(decodeCaptureObject),
      },
    };
  }
  if (selection.selector === ACCESS_SELECTOR_ENTRY && p.type === "structure" && p.value.length === 4) {
    const [fromEntry, toEntry, fromSel, toSel] = p.value;
    if (
      fromEntry?.type === "double-long-unsigned" &&
      toEntry?.type === "double-long-unsigned" &&
      fromSel?.type === "long-unsigned" &&
      toSel?.type === "long-unsigned"
    ) {
      return {
        selector: 2,
        entry: {
          fromEntry: fromEntry.value,
          toEntry: toEntry.value,
          fromSelectedValue: fromSel.value,
          toSelectedValue: toSel.value,
        },
      };
    }
  }
  throw new DlmsError(
    "BAD_VALUE",
    `selective access ${selection.selector} is not a well-formed range (1) or entry (2) descriptor`,
  );
}

// ───────────────────────────── JSON view ─────────────────────────────

/** JSON view for `amiproof dlms decode`: OBIS codes spelled out, results and units named. */
export function apduToJson(apdu: Apdu): Record<string, unknown> {
  const result = (res: GetDataResult) =>
    "data" in res
      ? { data: annotate(res.data) }
      : { error: res.error, error_name: DATA_ACCESS_RESULTS[res.error] ?? "unknown" };
  const attribute = (a: AttributeDescriptor) => ({
    class_id: a.classId,
    obis: formatObis(a.obis),
    attribute_id: a.attributeId,
  });
  const selection = (s: AccessSelection | null | undefined) =>
    s === null || s === undefined
      ? {}
      : { access_selector: s.selector, access_parameters: annotate(s.parameters) };
  const invoke = (byte: number) => ({ invoke_id: byte, ...spell(parseInvokeIdAndPriority(byte)) });
  switch (apdu.kind) {
    case "get-request-normal":
      return {
        apdu: apdu.kind,
        ...invoke(apdu.invokeId),
        ...attribute(apdu.attribute),
        ...selection(apdu.accessSelection),
      };
    case "get-request-next":
      return { apdu: apdu.kind, ...invoke(apdu.invokeId), block_number: apdu.blockNumber };
    case "get-request-with-list":
      return {
        apdu: apdu.kind,
        ...invoke(apdu.invokeId),
        attributes: apdu.attributes.map((a) => ({
          ...attribute(a.attribute),
          ...selection(a.accessSelection),
        })),
      };
    case "set-request-normal":
      return {
        apdu: apdu.kind,
        ...invoke(apdu.invokeId),
        ...attribute(apdu.attribute),
        ...selection(apdu.accessSelection),
        value: annotate(apdu.value),
      };
    case "get-response-normal":
      return { apdu: apdu.kind, ...invoke(apdu.invokeId), ...result(apdu.result) };
    case "get-response-with-datablock":
      return {
        apdu: apdu.kind,
        ...invoke(apdu.invokeId),
        last_block: apdu.lastBlock,
        block_number: apdu.blockNumber,
        ...("rawData" in apdu.result
          ? {
              raw_data: Buffer.from(apdu.result.rawData).toString("hex"),
              raw_data_bytes: apdu.result.rawData.length,
            }
          : { error: apdu.result.error, error_name: DATA_ACCESS_RESULTS[apdu.result.error] ?? "unknown" }),
      };
    case "get-response-with-list":
      return { apdu: apdu.kind, ...invoke(apdu.invokeId), results: apdu.results.map(result) };
    case "set-request-with-first-datablock":
      return {
        apdu: apdu.kind,
        ...invoke(apdu.invokeId),
        ...attribute(apdu.attribute),
        ...selection(apdu.accessSelection),
        last_block: apdu.lastBlock,
        block_number: apdu.blockNumber,
        raw_data: Buffer.from(apdu.rawData).toString("hex"),
      };
    case "set-request-with-datablock":
      return {
        apdu: apdu.kind,
        ...invoke(apdu.invokeId),
        last_block: apdu.lastBlock,
        block_number: apdu.blockNumber,
        raw_data: Buffer.from(apdu.rawData).toString("hex"),
      };
    case "set-response-normal":
      return {
        apdu: apdu.kind,
        ...invoke(apdu.invokeId),
        result: apdu.result,
        result_name: DATA_ACCESS_RESULTS[apdu.result] ?? "unknown",
      };
    case "set-response-datablock":
      return { apdu: apdu.kind, ...invoke(apdu.invokeId), block_number: apdu.blockNumber };
    case "set-response-last-datablock":
      return {
        apdu: apdu.kind,
        ...invoke(apdu.invokeId),
        result: apdu.result,
        result_name: DATA_ACCESS_RESULTS[apdu.result] ?? "unknown",
        block_number: apdu.blockNumber,
      };
    case "action-request-normal":
      return {
        apdu: apdu.kind,
        ...invoke(apdu.invokeId),
        class_id: apdu.method.classId,
        obis: formatObis(apdu.method.obis),
        method_id: apdu.method.methodId,
        parameters: apdu.parameters === null ? null : annotate(apdu.parameters),
      };
    case "action-response-normal":
      return {
        apdu: apdu.kind,
        ...invoke(apdu.invokeId),
        result: apdu.result,
        result_name: ACTION_RESULTS[apdu.result] ?? "unknown",
        returned: apdu.returned === null ? null : result(apdu.returned),
      };
    case "data-notification":
      return {
        apdu: apdu.kind,
        long_invoke_id: apdu.longInvokeId,
        date_time: apdu.dateTime === null ? null : dateTimeJson(decodeDateTimeBytes(apdu.dateTime)),
        body: annotate(apdu.body),
      };
    case "exception-response":
      return {
        apdu: apdu.kind,
        state_error: apdu.stateError,
        state_error_name: EXCEPTION_STATE_ERRORS[apdu.stateError] ?? "unknown",
        service_error: apdu.serviceError,
        service_error_name: EXCEPTION_SERVICE_ERRORS[apdu.serviceError] ?? "unknown",
        ...(apdu.invocationCounter === undefined ? {} : { invocation_counter: apdu.invocationCounter }),
      };
    case "general-glo-ciphering":
    case "ciphered-service":
      return {
        apdu:
          apdu.kind === "ciphered-service"
            ? apdu.name
            : apdu.tag === TAG.generalDedCiphering
              ? "general-ded-ciphering"
              : apdu.kind,
        ...(apdu.kind === "general-glo-ciphering"
          ? { system_title: Buffer.from(apdu.systemTitle).toString("hex") }
          : {}),
        ...securityHeaderJson(apdu.securityControl, apdu.invocationCounter),
        ciphered_bytes: apdu.cipheredBytes,
      };
    case "acse":
      return {
        apdu: apdu.name,
        length: apdu.length,
      };
  }
}

function spell(p: { invokeId: number; confirmed: boolean; highPriority: boolean }) {
  return { invoke_id_number: p.invokeId, confirmed: p.confirmed, high_priority: p.highPriority };
}

/** The security control byte spelled out (Green Book: suite id bits 0-3, A, E, key set, compression). */
export function securityHeaderJson(
  securityControl: number,
  invocationCounter: number,
): Record<string, unknown> {
  return {
    security_control: `0x${securityControl.toString(16).padStart(2, "0")}`,
    security_suite: securityControl & 0x0f,
    authenticated: (securityControl & 0x10) !== 0,
    encrypted: (securityControl & 0x20) !== 0,
    key_set: (securityControl & 0x40) !== 0 ? "broadcast" : "unicast",
    compressed: (securityControl & 0x80) !== 0,
    invocation_counter: invocationCounter,
  };
}

/** Data as JSON, with a {scaler, unit} structure named (register attribute 3). */
export function annotate(data: Data): unknown {
  if (
    data.type === "structure" &&
    data.value.length === 2 &&
    data.value[0]!.type === "integer" &&
    data.value[1]!.type === "enum"
  ) {
    const scaler = data.value[0]!.value;
    const unit = data.value[1]!.value;
    return {
      scaler_unit: { scaler, unit, unit_name: DLMS_UNITS[unit] ?? "unknown", unit_si: unitName(unit) },
    };
  }
  if (data.type === "structure" || data.type === "array" || data.type === "compact-array") {
    const out: Record<string, unknown> = { [data.type]: data.value.map(annotate) };
    // A register as pushed or captured: { [logical_name,] value, scaler_unit } — show the scaled value.
    if (data.type === "structure") {
      const scaled = registerScaled(data.value);
      if (scaled !== null) out.scaled = scaled;
    }
    return out;
  }
  return dataToJson(data);
}

function registerScaled(items: readonly Data[]): string | null {
  for (let i = 0; i + 1 < items.length; i++) {
    const value = items[i]!;
    const su = scalerUnitOf(items[i + 1]!);
    if (su === null) continue;
    if (
      typeof (value as { value?: unknown }).value === "number" ||
      typeof (value as { value?: unknown }).value === "bigint"
    ) {
      return formatScaled((value as { value: number | bigint }).value, su);
    }
  }
  return null;
}
