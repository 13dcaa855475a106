import { decodeControl, hexByte, type MbusFrame } from "./frame.ts";
import { toHex } from "./hex.ts";
import type { MbusDataRecord } from "./records.ts";
import { ciName } from "./tables.ts";
import type { DecodedFrame, MbusHeader, MbusTelegram } from "./telegram.ts";

// The JSON shape of decoded M-Bus data (snake_case on the wire, as the project's JSON contracts).

type Json = null | boolean | number | string | Json[] | { [key: string]: Json };

function jsonValue(value: number | bigint | string | null): Json {
  return typeof value === "bigint" ? value.toString() : value;
}

export function frameToJson(frame: MbusFrame): { [key: string]: Json } {
  if (frame.kind === "ack") return { type: "single_character", value: "E5" };
  const control = decodeControl(frame.control);
  const base: { [key: string]: Json } = {
    type: frame.kind,
    c: frame.control,
    c_name: control.name,
    a: frame.address,
  };
  if (control.primary) {
    base.fcb = control.fcbOrAcd;
    base.fcv = control.fcvOrDfc;
  } else {
    base.acd = control.fcbOrAcd;
    base.dfc = control.fcvOrDfc;
  }
  if (frame.kind === "control" || frame.kind === "long") {
    base.ci = frame.ci;
    base.ci_name = ciName(frame.ci);
    base.l = frame.kind === "long" ? frame.data.length + 3 : 3;
  }
  return base;
}

export function headerToJson(header: MbusHeader): { [key: string]: Json } {
  const flags = header.statusFlags;
  const status: { [key: string]: Json } = {
    application: flags.application,
    power_low: flags.powerLow,
    permanent_error: flags.permanentError,
    temporary_error: flags.temporaryError,
    manufacturer_bits: flags.manufacturerBits,
  };
  if (header.kind === "long") {
    return {
      header: "long",
      identification: header.identification,
      manufacturer: header.manufacturer,
      manufacturer_code: header.manufacturerCode,
      version: header.version,
      medium: header.medium,
      medium_name: header.mediumName,
      access_number: header.accessNumber,
      status: header.status,
      status_flags: status,
      signature: header.signature,
    };
  }
  if (header.kind === "short") {
    return {
      header: "short",
      access_number: header.accessNumber,
      status: header.status,
      status_flags: status,
      signature: header.signature,
    };
  }
  return {
    header: "fixed",
    identification: header.identification,
    medium: header.medium,
    medium_name: header.mediumName,
    access_number: header.accessNumber,
    status: header.status,
    status_flags: status,
    counters_binary: header.countersBinary,
    counters_stored: header.countersStored,
  };
}

export function recordToJson(record: MbusDataRecord): { [key: string]: Json } {
  const { vib } = record;
  const out: { [key: string]: Json } = {
    index: record.index,
    offset: record.offset,
    function: record.function,
    storage_number: record.storageNumber,
    tariff: record.tariff,
    subunit: record.subunit,
    data_field: record.dataField,
    quantity: vib.quantity,
    description: vib.description,
    value: jsonValue(record.value),
    unit: vib.unit,
    raw_value: jsonValue(record.rawValue),
    raw_unit: vib.rawUnit,
    raw_exponent: vib.exponent,
    manufacturer_specific: record.manufacturerSpecific,
    dib: hexByte(record.dif) + record.dife.map(hexByte).join(""),
    vib: toHex(vib.bytes),
    data: toHex(record.data),
  };
  if (vib.notes.length > 0) out.notes = vib.notes;
  if (vib.errorCode !== null) {
    out.error_code = vib.errorCode;
    out.error_text = vib.errorText;
  }
  if (record.text !== null) out.text = record.text;
  if (record.valueError !== null) out.value_error = record.valueError;
  if (record.dateTime !== null) {
    const t = record.dateTime;
    out.date_time = {
      type: t.type,
      year: t.year,
      month: t.month,
      day: t.day,
      hour: t.hour,
      minute: t.minute,
      second: t.second,
      valid: t.valid,
      summer_time: t.summerTime,
    };
  }
  return out;
}

export function telegramToJson(telegram: MbusTelegram): { [key: string]: Json } {
  const out: { [key: string]: Json } = {
    ci: telegram.ci,
    ci_name: telegram.ciName,
    structure: telegram.structure,
    slave: telegram.header === null ? null : headerToJson(telegram.header),
    records: telegram.records.map(recordToJson),
    manufacturer_data: telegram.manufacturerData === null ? null : toHex(telegram.manufacturerData),
    more_records_follow: telegram.moreRecordsFollow,
  };
  if (telegram.msbFirst) out.msb_first = true;
  if (telegram.applicationError !== null) {
    out.application_error = { code: telegram.applicationError.code, text: telegram.applicationError.text };
  }
  if (telegram.alarm !== null) out.alarm = telegram.alarm;
  if (telegram.selection !== null) {
    out.selection = {
      identification: telegram.selection.identification,
      manufacturer_code: telegram.selection.manufacturerCode,
      version: telegram.selection.version,
      medium: telegram.selection.medium,
    };
  }
  return out;
}

export function decodedFrameToJson(decoded: DecodedFrame): { [key: string]: Json } {
  return {
    frame: frameToJson(decoded.frame),
    telegram: decoded.telegram === null ? null : telegramToJson(decoded.telegram),
  };
}
