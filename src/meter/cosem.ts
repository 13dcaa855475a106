import {
  ACCESS,
  type AccessLevel,
  type CosemObjectModel,
  type Data,
  dateTimeFromMs,
  decodeDateTimeBytes,
  encodeData,
  formatObis,
  type Obis,
  parseObis,
} from "../dlms/index.ts";
import { EVENT_TYPE_CODES, type EventRecord } from "../evidence/index.ts";
import { FirmwareError, type FirmwareManager, versionString } from "./firmware/index.ts";
import type { LoadProfileEntry } from "./load-profile.ts";
import type { Meter } from "./meter.ts";

const IMAGE_BLOCK_BYTES_DEFAULT = 512;
const ACTION_OTHER_REASON = 250;

// The meter's COSEM object model (IEC 62056-6-2 interface classes), served over DLMS. As real meters do,
// the public client may read the clock, the firmware identifiers and the device ID; everything else
// needs the management client.

const TAMPER_EVENTS = new Set<string>([
  "MAG_SUSPECT",
  "MAG_TAMPER",
  "NEUTRAL_MISS",
  "REV_CURRENT",
  "COVER_OPEN",
  "BYPASS_SUS",
  "INJECT_SUS",
  "TILT",
  "TAMPER_CLEARED",
  "TAMPER_PENDING",
  "FW_ROLLBACK",
  "SIG_FAIL",
]);
/** The OBIS the head-end reads to confirm a firmware (configurable; the standard's identifier by default). */
export const FIRMWARE_ID_OBIS = "1.0.0.2.0.255";

export const LOAD_PROFILE_OBIS = "1.0.99.1.0.255";
export const STANDARD_EVENT_LOG_OBIS = "0.0.99.98.0.255";
export const FRAUD_EVENT_LOG_OBIS = "0.0.99.98.1.255";
export const CLOCK_OBIS = "0.0.1.0.0.255";
// The columns a concentrator needs to prove readings and events end to end have no OBIS of their own in
// IEC 62056-6-2, so they use manufacturer-specific codes (value group D = 128..254, Blue Book 7.3.3),
// each a Data object (class 1) whose attribute 2 is also readable on its own (the newest value).
/** The meter's own load-profile entry seq (double-long-unsigned): the concentrator's seq axis. */
export const LOAD_PROFILE_SEQ_OBIS = "0.0.96.128.0.255";
/** The sealed event record's seq (double-long-unsigned). */
export const EVENT_SEQ_OBIS = "0.0.96.128.1.255";
/** The sealed event record itself (octet-string: encodeEventRecord bytes with the event_seal signature). */
export const EVENT_RECORD_OBIS = "0.0.96.128.2.255";

/** One capture object of a profile generic (class 7 attribute 3) and how a buffer row fills it. */
interface ProfileColumn<T> {
  readonly classId: number;
  readonly obis: string;
  readonly attributeId: number;
  readonly value: (row: T) => Data;
  /** The column's integer value without building Data (range selection over many rows). */
  readonly key?: (row: T) => number;
}

const CLOCK_COLUMN = { classId: 8, obis: CLOCK_OBIS, attributeId: 2 } as const;

// IEC 62056-6-2 profile generic: sort_method 1 = fifo (oldest entry first).
const SORT_FIFO = 1;

export interface MeterCosemOptions {
  readonly meter: Meter;
  /** The meter's A/B firmware: served as image transfer (class 18) and the firmware identifiers. */
  readonly firmware?: FirmwareManager;
  readonly imageBlockBytes?: number;
  /** True time of the environment, for the meter's own clock. */
  readonly trueNowMs: () => number;
  readonly firmwareId?: () => string;
  readonly firmwareSignature?: () => Uint8Array;
}

const u32 = (value: number): Data => ({
  type: "double-long-unsigned",
  value: Math.max(0, Math.min(0xffff_ffff, Math.round(value))),
});
const scalerUnit = (scaler: number, unit: number): Data => ({
  type: "structure",
  value: [
    { type: "integer", value: scaler },
    { type: "enum", value: unit },
  ],
});
const dateTimeOctets = (ms: number): Data => ({
  type: "octet-string",
  value: encodeData({ type: "date-time", value: dateTimeFromMs(ms) }).subarray(1),
});

function msFromDateTime(data: Data | undefined): number | null {
  if (data?.type !== "octet-string" || data.value.length !== 12) return null;
  const dt = decodeDateTimeBytes(data.value);
  if (dt.year === null || dt.month === null || dt.day === null) return null;
  return (
    Date.UTC(dt.year, dt.month - 1, dt.day, dt.hour ?? 0, dt.minute ?? 0, dt.second ?? 0) -
    (dt.deviation ?? 0) * 60_000
  );
}

export function meterObjectModel(options: MeterCosemOptions): CosemObjectModel {
  const { meter, firmware } = options;
  let connected = true;
  // image_transfer_status (class 18 attribute 6)
  let imageStatus = 0;
  let imageComponent: "app" | "comms" = "app";
  let imageSize = 0;
  const blockBytes = options.imageBlockBytes ?? IMAGE_BLOCK_BYTES_DEFAULT;
  const firmwareId = () => {
    const running = firmware?.runningImages;
    return running
      ? `app ${versionString(running.app.version)}; comms ${versionString(running.comms.version)}`
      : (options.firmwareId?.() ?? "app 1.0.0");
  };
  const imageAction = (methodId: number, parameters: Data | null): { result: number; data?: Data } => {
    if (firmware === undefined) return { result: ACCESS.objectUndefined };
    try {
      if (
        methodId === 1 &&
        parameters?.type === "structure" &&
        parameters.value[0]?.type === "octet-string" &&
        parameters.value[1]?.type === "double-long-unsigned"
      ) {
        const identifier = new TextDecoder().decode(parameters.value[0].value).trim();
        const component = identifier.split(/[\s:/]/)[0] ?? "";
        imageSize = parameters.value[1].value;
        firmware.initiateTransfer(component as "app", imageSize, blockBytes, identifier);
        imageComponent = component as "app" | "comms";
        imageStatus = 1;
        return { result: 0 };
      }
      if (
        methodId === 2 &&
        parameters?.type === "structure" &&
        parameters.value[0]?.type === "double-long-unsigned" &&
        parameters.value[1]?.type === "octet-string"
      ) {
        firmware.receiveBlock(parameters.value[0].value, parameters.value[1].value);
        return { result: 0 };
      }
      if (methodId === 3) {
        imageStatus = 2;
        firmware.verify();
        imageStatus = 3;
        return { result: 0 };
      }
      if (methodId === 4) {
        imageStatus = 5;
        firmware.activate();
        // The meter resets into the trial image; the new code runs and kicks its watchdog.
        const booted = firmware.boot();
        if (!booted[imageComponent].trial) {
          imageStatus = 7;
          return { result: ACTION_OTHER_REASON };
        }
        firmware.confirm(imageComponent);
        imageStatus = 6;
        return { result: 0 };
      }
    } catch (error) {
      if (!(error instanceof FirmwareError)) throw error;
      if (methodId === 3) imageStatus = 4;
      if (methodId === 4) imageStatus = 7;
      return { result: ACTION_OTHER_REASON };
    }
    return { result: ACCESS.typeUnmatched };
  };
  const publicObjects = new Set([
    "8/0.0.1.0.0.255",
    "1/1.0.0.2.0.255",
    "1/1.0.0.2.8.255",
    "1/0.0.96.1.0.255",
  ]);
  const registers: Record<
    string,
    { value: () => number; scaler: number; unit: number; type: "u32" | "i32" | "i16" }
  > = {
    "1.0.1.8.0.255": { value: () => meter.registers.importActiveWh, scaler: 0, unit: 30, type: "u32" },
    "1.0.2.8.0.255": { value: () => meter.registers.exportActiveWh, scaler: 0, unit: 30, type: "u32" },
    "1.0.3.8.0.255": { value: () => meter.registers.importReactiveVarh, scaler: 0, unit: 32, type: "u32" },
    "1.0.4.8.0.255": { value: () => meter.registers.exportReactiveVarh, scaler: 0, unit: 32, type: "u32" },
    "1.0.32.7.0.255": {
      value: () => (meter.status(options.trueNowMs()).lastMeasurement?.vRms ?? 0) * 10,
      scaler: -1,
      unit: 35,
      type: "u32",
    },
    "1.0.31.7.0.255": {
      value: () => (meter.status(options.trueNowMs()).lastMeasurement?.iRms ?? 0) * 100,
      scaler: -2,
      unit: 33,
      type: "u32",
    },
    "1.0.1.7.0.255": {
      value: () => meter.status(options.trueNowMs()).lastMeasurement?.activePowerW ?? 0,
      scaler: 0,
      unit: 27,
      type: "i32",
    },
    "1.0.13.7.0.255": {
      value: () => (meter.status(options.trueNowMs()).lastMeasurement?.powerFactor ?? 1) * 1000,
      scaler: -3,
      unit: 255,
      type: "i16",
    },
  };

  const profileColumns: readonly ProfileColumn<LoadProfileEntry>[] = [
    { ...CLOCK_COLUMN, value: (e) => dateTimeOctets(e.timestampMs) },
    { classId: 1, obis: LOAD_PROFILE_SEQ_OBIS, attributeId: 2, value: (e) => u32(e.seq), key: (e) => e.seq },
    { classId: 3, obis: "1.0.1.8.0.255", attributeId: 2, value: (e) => u32(e.importWh) },
    { classId: 3, obis: "1.0.2.8.0.255", attributeId: 2, value: (e) => u32(e.exportWh) },
  ];
  const eventColumns: readonly ProfileColumn<EventRecord>[] = [
    { ...CLOCK_COLUMN, value: (r) => dateTimeOctets(r.timestampMs) },
    { classId: 1, obis: "0.0.96.11.0.255", attributeId: 2, value: (r) => eventCode(r) },
    { classId: 1, obis: EVENT_SEQ_OBIS, attributeId: 2, value: (r) => u32(r.seq), key: (r) => r.seq },
    // The record exactly as the meter sealed it (encodeEventRecord bytes with its event_seal
    // signature): a concentrator forwards it untouched and the head-end verifies it end to end.
    {
      classId: 1,
      obis: EVENT_RECORD_OBIS,
      attributeId: 2,
      value: (r) => ({ type: "octet-string", value: r.bytes }),
    },
  ];
  const events = (fraudOnly: boolean) =>
    meter.eventLog().filter((r) => !fraudOnly || TAMPER_EVENTS.has(r.type));

  return {
    get(level: AccessLevel, classId: number, obis: Obis, attributeId: number, selection) {
      const name = formatObis(obis);
      if (level === "public" && !publicObjects.has(`${classId}/${name}`)) return ACCESS.readWriteDenied;
      if (attributeId === 1) return { type: "octet-string", value: Uint8Array.from(obis) };
      if (classId === 8 && name === "0.0.1.0.0.255" && attributeId === 2)
        return dateTimeOctets(meter.meterTimeMs(options.trueNowMs()));
      if (classId === 1 && name === "1.0.0.2.0.255" && attributeId === 2)
        return { type: "visible-string", value: firmwareId() };
      if (classId === 1 && name === "1.0.0.2.8.255" && attributeId === 2) {
        return {
          type: "octet-string",
          value: firmware?.runningChecksum("app") ?? options.firmwareSignature?.() ?? new Uint8Array(32),
        };
      }
      if (classId === 18 && name === "0.0.44.0.0.255" && firmware !== undefined) {
        if (attributeId === 2) return u32(blockBytes);
        if (attributeId === 3) {
          const blocks = firmware.transferredBlocks();
          const bits = new Uint8Array(Math.ceil(blocks.length / 8));
          blocks.forEach((done, i) => {
            if (done) bits[i >> 3]! |= 0x80 >> (i & 7);
          });
          return { type: "bit-string", bits: blocks.length, value: bits };
        }
        if (attributeId === 4) return u32(firmware.firstNotTransferredBlock());
        if (attributeId === 5) return { type: "boolean", value: true };
        if (attributeId === 6) return { type: "enum", value: imageStatus };
        if (attributeId === 7) {
          const info: Data[] =
            imageStatus >= 3
              ? [
                  {
                    type: "structure",
                    value: [
                      u32(imageSize),
                      { type: "octet-string", value: new TextEncoder().encode(imageComponent) },
                      { type: "octet-string", value: new Uint8Array(0) },
                    ],
                  },
                ]
              : [];
          return { type: "array", value: info };
        }
      }
      if (classId === 1 && name === "0.0.96.1.0.255" && attributeId === 2)
        return { type: "visible-string", value: meter.id };
      const register = registers[name];
      if (classId === 3 && register !== undefined) {
        if (attributeId === 3) return scalerUnit(register.scaler, register.unit);
        if (attributeId === 2) {
          const v = Math.round(register.value());
          return register.type === "u32"
            ? u32(v)
            : register.type === "i32"
              ? { type: "double-long", value: v }
              : { type: "long", value: Math.max(-32768, Math.min(32767, v)) };
        }
      }
      if (classId === 7 && name === LOAD_PROFILE_OBIS) {
        return profileGenericAttribute(attributeId, profileColumns, meter.loadProfile(), selection);
      }
      if (classId === 7 && (name === STANDARD_EVENT_LOG_OBIS || name === FRAUD_EVENT_LOG_OBIS)) {
        return profileGenericAttribute(
          attributeId,
          eventColumns,
          events(name === FRAUD_EVENT_LOG_OBIS),
          selection,
        );
      }
      if (classId === 1 && attributeId === 2) {
        if (name === LOAD_PROFILE_SEQ_OBIS) return u32(meter.loadProfile().at(-1)?.seq ?? 0);
        if (name === EVENT_SEQ_OBIS) return u32(meter.eventLog().at(-1)?.seq ?? 0);
        if (name === EVENT_RECORD_OBIS)
          return { type: "octet-string", value: meter.eventLog().at(-1)?.bytes ?? new Uint8Array(0) };
      }
      if (classId === 70 && name === "0.0.96.3.10.255") {
        if (attributeId === 2) return { type: "boolean", value: connected };
        if (attributeId === 3) return { type: "enum", value: connected ? 1 : 0 };
      }
      return ACCESS.objectUndefined;
    },
    set(level, classId, obis, attributeId, value) {
      if (level !== "management") return ACCESS.readWriteDenied;
      if (classId === 8 && formatObis(obis) === "0.0.1.0.0.255" && attributeId === 2) {
        const ms = msFromDateTime(value);
        if (ms === null) return ACCESS.typeUnmatched;
        meter.timeSync(options.trueNowMs(), ms);
        return 0;
      }
      return ACCESS.readWriteDenied;
    },
    action(level, classId, obis, methodId, parameters) {
      if (level !== "management") return { result: ACCESS.readWriteDenied };
      if (classId === 18 && formatObis(obis) === "0.0.44.0.0.255") return imageAction(methodId, parameters);
      if (classId === 70 && formatObis(obis) === "0.0.96.3.10.255" && (methodId === 1 || methodId === 2)) {
        connected = methodId === 2;
        return { result: 0 };
      }
      return { result: ACCESS.objectUndefined };
    },
  };
}

const eventCode = (record: EventRecord): Data => ({
  type: "long-unsigned",
  value: EVENT_TYPE_CODES[record.type],
});

const captureObjectDefinition = (column: { classId: number; obis: string; attributeId: number }): Data => ({
  type: "structure",
  value: [
    { type: "long-unsigned", value: column.classId },
    { type: "octet-string", value: Uint8Array.from(parseObis(column.obis)) },
    { type: "integer", value: column.attributeId },
    { type: "long-unsigned", value: 0 },
  ],
});

/** The column a capture_object_definition names (null-data names none), or undefined when unknown. */
function columnIndex<T>(
  columns: readonly ProfileColumn<T>[],
  definition: Data | undefined,
): number | undefined {
  if (definition?.type !== "structure") return undefined;
  const [classId, obis, attributeId] = definition.value;
  if (classId?.type !== "long-unsigned" || obis?.type !== "octet-string" || obis.value.length !== 6)
    return undefined;
  if (attributeId?.type !== "integer") return undefined;
  const name = formatObis(Array.from(obis.value) as unknown as Obis);
  const index = columns.findIndex(
    (c) => c.classId === classId.value && c.obis === name && c.attributeId === attributeId.value,
  );
  return index < 0 ? undefined : index;
}

/**
 * Attributes of a profile generic (class 7) over `rows` (oldest first). Selective access (IEC 62056-6-2
 * 4.3.6): selector 1 by range on a restricting column — the clock (date-time octet-strings; null-data
 * also means the clock) or a seq column (double-long-unsigned from/to, inclusive) — with optional
 * selected_values; selector 2 by entry (1-based, to_entry 0 = the last) and column range.
 */
function profileGenericAttribute<T>(
  attributeId: number,
  columns: readonly ProfileColumn<T>[],
  rows: readonly T[],
  selection: { selector: number; parameters: Data } | null,
): Data | number {
  if (attributeId === 3) return { type: "array", value: columns.map(captureObjectDefinition) };
  if (attributeId === 5) return { type: "enum", value: SORT_FIFO };
  if (attributeId === 7) return u32(rows.length);
  if (attributeId !== 2) return ACCESS.objectUndefined;
  let selected: readonly T[] = rows;
  let picked: number[] = columns.map((_, i) => i);
  if (selection !== null) {
    const p = selection.parameters;
    if (selection.selector === 1 && p.type === "structure" && p.value.length >= 3) {
      const restricting = p.value[0]!;
      const index = restricting.type === "null-data" ? 0 : columnIndex(columns, restricting);
      const column = index === undefined ? undefined : columns[index];
      if (column === undefined) return ACCESS.otherReason;
      const from = p.value[1]!;
      const to = p.value[2]!;
      if (column.obis === CLOCK_OBIS) {
        const fromMs = msFromDateTime(from);
        const toMs = msFromDateTime(to);
        if (fromMs === null || toMs === null) return ACCESS.typeUnmatched;
        selected = rows.filter((row) => {
          const ms = msFromDateTime(column.value(row));
          return ms !== null && ms >= fromMs && ms <= toMs;
        });
      } else {
        if (from.type !== "double-long-unsigned" || to.type !== "double-long-unsigned")
          return ACCESS.typeUnmatched;
        const key = column.key;
        selected = rows.filter((row) => {
          if (key !== undefined) {
            const k = key(row);
            return k >= from.value && k <= to.value;
          }
          const v = column.value(row);
          return v.type === "double-long-unsigned" && v.value >= from.value && v.value <= to.value;
        });
      }
      const wanted = p.value[3];
      if (wanted?.type === "array" && wanted.value.length > 0) {
        const indices = wanted.value.map((d) => columnIndex(columns, d));
        if (indices.some((i) => i === undefined)) return ACCESS.otherReason;
        picked = indices as number[];
      }
    } else if (selection.selector === 2 && p.type === "structure" && p.value.length >= 2) {
      const [fromEntry, toEntry, fromValue, toValue] = p.value;
      if (fromEntry?.type !== "double-long-unsigned" || toEntry?.type !== "double-long-unsigned")
        return ACCESS.typeUnmatched;
      const last = toEntry.value === 0 ? rows.length : toEntry.value;
      selected = rows.slice(Math.max(0, fromEntry.value - 1), last);
      if (fromValue?.type === "long-unsigned" && toValue?.type === "long-unsigned") {
        const lastColumn = toValue.value === 0 ? columns.length : Math.min(columns.length, toValue.value);
        picked = picked.slice(Math.max(0, fromValue.value - 1), lastColumn);
      }
    } else return ACCESS.otherReason;
  }
  return {
    type: "array",
    value: selected.map((row) => ({ type: "structure", value: picked.map((i) => columns[i]!.value(row)) })),
  };
}
