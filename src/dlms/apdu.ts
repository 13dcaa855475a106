import { type Data, dataToJson, decodeDateTimeBytes, encodeData, readData } from "./axdr.ts";
import { DlmsError, DlmsReader, encodeLength } from "./errors.ts";
import { formatObis, type Obis } from "./obis.ts";
import { DLMS_UNIT_TABLE } from "./units.ts";

// xDLMS APDUs (Green Book / IEC 62056-5-3): the service subset the field tools and the push path need
// first — GET/SET/ACTION normal, DataNotification, ExceptionResponse — plus recognition of ACSE and
// ciphered APDUs. Encode and decode side by side.

export type { Obis } from "./obis.ts";
export { formatObis, parseObis } from "./obis.ts";

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

/** Unit code → symbol (Blue Book scaler_unit enumeration); the full table with names is in units.ts. */
export const DLMS_UNITS: Record<number, string> = Object.fromEntries(
  Object.entries(DLMS_UNIT_TABLE).map(([code, unit]) => [code, unit.symbol === "" ? "count" : unit.symbol]),
);

export interface AttributeDescriptor {
  readonly classId: number;
  readonly obis: Obis;
  readonly attributeId: number;
}

export type Apdu =
  | {
      kind: "get-request-normal";
      invokeId: number;
      attribute: AttributeDescriptor;
      accessSelection: { selector: number; parameters: Data } | null;
    }
  | { kind: "get-response-normal"; invokeId: number; result: { data: Data } | { error: number } }
  | { kind: "set-request-normal"; invokeId: number; attribute: AttributeDescriptor; value: Data }
  | { kind: "set-response-normal"; invokeId: number; result: number }
  | {
      kind: "action-request-normal";
      invokeId: number;
      method: { classId: number; obis: Obis; methodId: number };
      parameters: Data | null;
    }
  | {
      kind: "action-response-normal";
      invokeId: number;
      result: number;
      returned: { data: Data } | { error: number } | null;
    }
  | { kind: "data-notification"; longInvokeId: number; dateTime: Uint8Array | null; body: Data }
  | { kind: "exception-response"; stateError: number; serviceError: number }
  | {
      kind: "general-glo-ciphering";
      systemTitle: Uint8Array;
      securityControl: number;
      invocationCounter: number;
      cipheredBytes: number;
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
} as const;

const ACSE: Record<number, string> = { 96: "AARQ", 97: "AARE", 98: "RLRQ", 99: "RLRE" };

function readDescriptor(r: DlmsReader): { classId: number; obis: Obis; id: number } {
  const classId = r.u16("class id");
  const obis = Array.from(r.bytes(6, "instance id")) as unknown as Obis;
  const id = r.view(1, "attribute/method id").getInt8(0);
  return { classId, obis, id };
}

function readGetDataResult(r: DlmsReader): { data: Data } | { error: number } {
  const choice = r.u8("Get-Data-Result choice");
  if (choice === 0) return { data: readData(r, 0) };
  if (choice === 1) return { error: r.u8("data-access-result") };
  throw new DlmsError("BAD_TAG", `Get-Data-Result choice ${choice}`, r.offset - 1);
}

export function decodeApdu(bytes: Uint8Array): Apdu {
  const r = new DlmsReader(bytes);
  const tag = r.u8("APDU tag");
  let apdu: Apdu;
  const expectType = (what: string) => {
    const type = r.u8(`${what} type`);
    if (type !== 1)
      throw new DlmsError("UNSUPPORTED", `${what} type ${type} (only normal is decoded yet)`, r.offset - 1);
    return r.u8("invoke-id-and-priority");
  };
  switch (tag) {
    case TAG.getRequest: {
      const invokeId = expectType("get-request");
      const d = readDescriptor(r);
      const hasSelection = r.u8("access selection flag");
      const accessSelection = hasSelection
        ? { selector: r.u8("access selector"), parameters: readData(r, 0) }
        : null;
      apdu = {
        kind: "get-request-normal",
        invokeId,
        attribute: { classId: d.classId, obis: d.obis, attributeId: d.id },
        accessSelection,
      };
      break;
    }
    case TAG.getResponse: {
      const invokeId = expectType("get-response");
      apdu = { kind: "get-response-normal", invokeId, result: readGetDataResult(r) };
      break;
    }
    case TAG.setRequest: {
      const invokeId = expectType("set-request");
      const d = readDescriptor(r);
      if (r.u8("access selection flag") !== 0)
        throw new DlmsError("UNSUPPORTED", "selective access on SET", r.offset - 1);
      apdu = {
        kind: "set-request-normal",
        invokeId,
        attribute: { classId: d.classId, obis: d.obis, attributeId: d.id },
        value: readData(r, 0),
      };
      break;
    }
    case TAG.setResponse: {
      const invokeId = expectType("set-response");
      apdu = { kind: "set-response-normal", invokeId, result: r.u8("data-access-result") };
      break;
    }
    case TAG.actionRequest: {
      const invokeId = expectType("action-request");
      const d = readDescriptor(r);
      const parameters = r.u8("parameters flag") ? readData(r, 0) : null;
      apdu = {
        kind: "action-request-normal",
        invokeId,
        method: { classId: d.classId, obis: d.obis, methodId: d.id },
        parameters,
      };
      break;
    }
    case TAG.actionResponse: {
      const invokeId = expectType("action-response");
      const result = r.u8("action-result");
      const returned = r.u8("return parameters flag") ? readGetDataResult(r) : null;
      apdu = { kind: "action-response-normal", invokeId, result, returned };
      break;
    }
    case TAG.dataNotification: {
      const longInvokeId = r.u32("long-invoke-id-and-priority");
      const dtLength = r.u8("date-time length");
      if (dtLength !== 0 && dtLength !== 12)
        throw new DlmsError("BAD_LENGTH", `date-time of ${dtLength} octets`, r.offset - 1);
      const dateTime = dtLength === 12 ? r.bytes(12, "date-time") : null;
      apdu = { kind: "data-notification", longInvokeId, dateTime, body: readData(r, 0) };
      break;
    }
    case TAG.exception:
      apdu = {
        kind: "exception-response",
        stateError: r.u8("state-error"),
        serviceError: r.u8("service-error"),
      };
      break;
    case TAG.generalGloCiphering: {
      const systemTitle = r.bytes(r.length("system title"), "system title");
      const length = r.length("ciphered content");
      const securityControl = r.u8("security control");
      const invocationCounter = r.u32("invocation counter");
      if (length < 5)
        throw new DlmsError("BAD_LENGTH", "ciphered content shorter than its security header", r.offset);
      r.bytes(length - 5, "ciphertext and tag");
      apdu = {
        kind: "general-glo-ciphering",
        systemTitle,
        securityControl,
        invocationCounter,
        cipheredBytes: length - 5,
      };
      break;
    }
    default: {
      const name = ACSE[tag];
      if (name === undefined) throw new DlmsError("BAD_TAG", `unknown APDU tag 0x${tag.toString(16)}`, 0);
      const length = r.length(name);
      r.bytes(length, name);
      apdu = { kind: "acse", tag, name, length };
    }
  }
  if (r.remaining !== 0)
    throw new DlmsError("TRAILING_BYTES", `${r.remaining} bytes after the APDU`, r.offset);
  return apdu;
}

function descriptorBytes(classId: number, obis: Obis, id: number): number[] {
  return [classId >> 8, classId & 0xff, ...obis, id & 0xff];
}

export function encodeApdu(
  apdu: Exclude<Apdu, { kind: "acse" } | { kind: "general-glo-ciphering" }>,
): Uint8Array {
  const out: number[] = [];
  const data = (d: Data) => out.push(...encodeData(d));
  switch (apdu.kind) {
    case "get-request-normal":
      out.push(
        TAG.getRequest,
        1,
        apdu.invokeId,
        ...descriptorBytes(apdu.attribute.classId, apdu.attribute.obis, apdu.attribute.attributeId),
      );
      if (apdu.accessSelection === null) out.push(0);
      else {
        out.push(1, apdu.accessSelection.selector);
        data(apdu.accessSelection.parameters);
      }
      break;
    case "get-response-normal":
      out.push(TAG.getResponse, 1, apdu.invokeId);
      if ("data" in apdu.result) {
        out.push(0);
        data(apdu.result.data);
      } else out.push(1, apdu.result.error);
      break;
    case "set-request-normal":
      out.push(
        TAG.setRequest,
        1,
        apdu.invokeId,
        ...descriptorBytes(apdu.attribute.classId, apdu.attribute.obis, apdu.attribute.attributeId),
        0,
      );
      data(apdu.value);
      break;
    case "set-response-normal":
      out.push(TAG.setResponse, 1, apdu.invokeId, apdu.result);
      break;
    case "action-request-normal":
      out.push(
        TAG.actionRequest,
        1,
        apdu.invokeId,
        ...descriptorBytes(apdu.method.classId, apdu.method.obis, apdu.method.methodId),
      );
      if (apdu.parameters === null) out.push(0);
      else {
        out.push(1);
        data(apdu.parameters);
      }
      break;
    case "action-response-normal":
      out.push(TAG.actionResponse, 1, apdu.invokeId, apdu.result);
      if (apdu.returned === null) out.push(0);
      else if ("data" in apdu.returned) {
        out.push(1, 0);
        data(apdu.returned.data);
      } else out.push(1, 1, apdu.returned.error);
      break;
    case "data-notification":
      out.push(
        TAG.dataNotification,
        (apdu.longInvokeId >>> 24) & 0xff,
        (apdu.longInvokeId >>> 16) & 0xff,
        (apdu.longInvokeId >>> 8) & 0xff,
        apdu.longInvokeId & 0xff,
      );
      if (apdu.dateTime === null) out.push(0);
      else out.push(...encodeLength(12), ...apdu.dateTime);
      data(apdu.body);
      break;
    case "exception-response":
      out.push(TAG.exception, apdu.stateError, apdu.serviceError);
      break;
  }
  return Uint8Array.from(out);
}

/** JSON view for `amiproof dlms decode`: OBIS codes spelled out, results and units named. */
export function apduToJson(apdu: Apdu): Record<string, unknown> {
  const result = (res: { data: Data } | { error: number }) =>
    "data" in res
      ? { data: annotate(res.data) }
      : { error: res.error, error_name: DATA_ACCESS_RESULTS[res.error] ?? "unknown" };
  switch (apdu.kind) {
    case "get-request-normal":
    case "set-request-normal":
      return {
        apdu: apdu.kind,
        invoke_id: apdu.invokeId,
        class_id: apdu.attribute.classId,
        obis: formatObis(apdu.attribute.obis),
        attribute_id: apdu.attribute.attributeId,
        ...(apdu.kind === "set-request-normal" ? { value: annotate(apdu.value) } : {}),
        ...(apdu.kind === "get-request-normal" && apdu.accessSelection !== null
          ? {
              access_selector: apdu.accessSelection.selector,
              access_parameters: annotate(apdu.accessSelection.parameters),
            }
          : {}),
      };
    case "get-response-normal":
      return { apdu: apdu.kind, invoke_id: apdu.invokeId, ...result(apdu.result) };
    case "set-response-normal":
      return {
        apdu: apdu.kind,
        invoke_id: apdu.invokeId,
        result: apdu.result,
        result_name: DATA_ACCESS_RESULTS[apdu.result] ?? "unknown",
      };
    case "action-request-normal":
      return {
        apdu: apdu.kind,
        invoke_id: apdu.invokeId,
        class_id: apdu.method.classId,
        obis: formatObis(apdu.method.obis),
        method_id: apdu.method.methodId,
        parameters: apdu.parameters === null ? null : annotate(apdu.parameters),
      };
    case "action-response-normal":
      return {
        apdu: apdu.kind,
        invoke_id: apdu.invokeId,
        result: apdu.result,
        returned: apdu.returned === null ? null : result(apdu.returned),
      };
    case "data-notification":
      return {
        apdu: apdu.kind,
        long_invoke_id: apdu.longInvokeId,
        date_time: apdu.dateTime === null ? null : decodeDateTimeBytes(apdu.dateTime),
        body: annotate(apdu.body),
      };
    case "exception-response":
      return { apdu: apdu.kind, state_error: apdu.stateError, service_error: apdu.serviceError };
    case "general-glo-ciphering":
      return {
        apdu: apdu.kind,
        system_title: Buffer.from(apdu.systemTitle).toString("hex"),
        security_control: `0x${apdu.securityControl.toString(16).padStart(2, "0")}`,
        authenticated: (apdu.securityControl & 0x10) !== 0,
        encrypted: (apdu.securityControl & 0x20) !== 0,
        invocation_counter: apdu.invocationCounter,
        ciphered_bytes: apdu.cipheredBytes,
      };
    case "acse":
      return {
        apdu: apdu.name,
        length: apdu.length,
        note: "ACSE (BER) fields are decoded with the association layer",
      };
  }
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
    return { scaler_unit: { scaler, unit, unit_name: DLMS_UNITS[unit] ?? "unknown" } };
  }
  if (data.type === "structure" || data.type === "array") return { [data.type]: data.value.map(annotate) };
  return dataToJson(data);
}
