// shell: DLMS/COSEM meters over TCP (IEC 62056-4-7 wrapper) — sockets and timers live here only.
import { createHash } from "node:crypto";
import { connect, type Socket } from "node:net";
import {
  type Data,
  DlmsClient,
  DlmsError,
  encodeWrapper,
  parseObis,
  type SecurityContext,
  WPORT_CLIENT_MANAGEMENT,
  WPORT_MANAGEMENT_LOGICAL_DEVICE,
  WPORT_PUBLIC_CLIENT,
  WrapperReassembler,
} from "../../dlms/index.ts";
import {
  CLASS_CLOCK,
  CLASS_DATA,
  CLASS_PROFILE_GENERIC,
  COSEM_OBIS,
  dateTimeMs,
  decodeCaptureObjects,
  decodeScalerUnit,
  type EventLogLayout,
  eventLogLayout,
  eventRecordsFromLog,
  ifaceErrorOf,
  integerValue,
  type ProfileLayout,
  profileLayout,
  readingsFromProfile,
  type ScalerUnit,
  seqRangeSelection,
} from "../core/cosem-reader.ts";
import type { MeterReader, MeterReading } from "../core/ports.ts";
import { ConcentratorError } from "../errors.ts";

/** Associations doing IO at once, across all meters (a slow meter cannot hold the others up beyond it). */
export const DLMS_ASSOCIATIONS_ACTIVE_MAX = 8;
/** A meter that does not accept the TCP connection within this is IFACE_TIMEOUT. */
export const DLMS_CONNECT_TIMEOUT_MS = 3_000;
/** A meter that does not answer one request (one GET block) within this is IFACE_TIMEOUT. */
export const DLMS_READ_TIMEOUT_MS = 5_000;
/** HLS invocation counters reserved durably per step (an IV is never used twice under one key). */
export const INVOCATION_COUNTER_RESERVE = 1 << 20;
/** Counters one exchange can use at most (the HLS pass-4 action uses two: f(StoC) and the request). */
const INVOCATION_COUNTERS_PER_EXCHANGE = 2;
/** Counters an association uses before its first GET (initiate, pass 4). */
const INVOCATION_COUNTERS_PER_ASSOCIATION = 4;
const INVOCATION_COUNTER_MAX = 0xffff_ffff;

/** How the concentrator authenticates to its meters (the same defaults as `amiproof meter`). */
export type DlmsMeterAuth =
  | { readonly kind: "none" }
  | { readonly kind: "lls"; readonly password: Uint8Array }
  | {
      readonly kind: "hls";
      readonly encryptionKey: Uint8Array;
      readonly authenticationKey: Uint8Array;
      /** The concentrator's own system title (8 bytes). */
      readonly systemTitle: Uint8Array;
    };

export interface DlmsMeterTarget {
  readonly meterId: string;
  readonly host: string;
  readonly port: number;
}

/**
 * Where the HLS invocation counters a meter's key has seen are reserved durably, so a reconnect or a
 * restart never reuses an IV (system title + counter) under the same key (IEC 62056-5-3 / GCM).
 */
export interface InvocationCounterStore {
  /** Highest counter reserved for this meter by earlier runs (0 when none). */
  reserved(meterId: string): number;
  /** Durable before it returns: counters through `through` may be used. */
  reserve(meterId: string, through: number): void;
}

/** Memory only: counters restart at 1 with the process (tests). */
export class MemoryInvocationCounterStore implements InvocationCounterStore {
  private readonly marks = new Map<string, number>();
  reserved(meterId: string): number {
    return this.marks.get(meterId) ?? 0;
  }
  reserve(meterId: string, through: number): void {
    this.marks.set(meterId, through);
  }
}

export interface DlmsMeterReaderOptions {
  readonly auth: DlmsMeterAuth;
  readonly associationsActiveMax?: number;
  readonly connectTimeoutMs?: number;
  readonly readTimeoutMs?: number;
  /** HLS challenge (CtoS) bytes: crypto-random in production. */
  readonly challenge: (bytes: number) => Uint8Array;
  /** Durable HLS invocation counter reservations; in memory when absent. */
  readonly invocationCounters?: InvocationCounterStore;
}

/** "DCU" then 5 bytes of SHA-256 of the concentrator id: its DLMS system title (HLS client). */
export function dcuSystemTitle(dcuId: string): Uint8Array {
  return Uint8Array.of(0x44, 0x43, 0x55, ...createHash("sha256").update(dcuId).digest().subarray(0, 5));
}

/** Parses `dlms://HOST:PORT`; throws BAD_CONFIG with the reason. */
export function parseDlmsUrl(url: string): { host: string; port: number } {
  const match = /^dlms:\/\/(\[[0-9a-fA-F:.]+\]|[^/:[\]\s]+):(\d{1,5})\/?$/.exec(url);
  const port = match === null ? Number.NaN : Number(match[2]);
  if (match === null || !(port >= 1 && port <= 65535))
    throw new ConcentratorError("BAD_CONFIG", `expected dlms://HOST:PORT, got ${JSON.stringify(url)}`);
  return { host: match[1]!.replace(/^\[|\]$/g, ""), port };
}

interface WrapperLink {
  exchange(apdu: Uint8Array): Promise<Uint8Array>;
  close(): void;
}

/** One TCP connection carrying wrapper frames, one request outstanding at a time, each with a deadline. */
function openWrapperLink(
  host: string,
  port: number,
  clientWPort: number,
  connectTimeoutMs: number,
  readTimeoutMs: number,
): Promise<WrapperLink> {
  return new Promise((resolve, reject) => {
    const socket: Socket = connect({ host, port });
    socket.setNoDelay(true);
    let closedError: Error | null = null;
    let waiting: { resolve: (apdu: Uint8Array) => void; reject: (e: Error) => void } | null = null;
    let timer: NodeJS.Timeout | null = null;
    const fail = (error: Error) => {
      closedError ??= error;
      if (timer !== null) clearTimeout(timer);
      timer = null;
      const w = waiting;
      waiting = null;
      w?.reject(error);
      socket.destroy();
    };
    const connectTimer = setTimeout(() => {
      const error = new DlmsError("TIMEOUT", `no TCP connection within ${connectTimeoutMs} ms`);
      fail(error);
      reject(error);
    }, connectTimeoutMs);
    socket.once("error", (error) => {
      clearTimeout(connectTimer);
      fail(error);
      reject(error);
    });
    socket.on("close", () => {
      clearTimeout(connectTimer);
      fail(new DlmsError("LINK_DOWN", "connection closed by the meter"));
    });
    const reassembler = new WrapperReassembler();
    socket.on("data", (chunk: Buffer) => {
      let frames: { apdu: Uint8Array }[];
      try {
        frames = reassembler.push(new Uint8Array(chunk.buffer, chunk.byteOffset, chunk.byteLength));
      } catch (error) {
        fail(error as Error); // framing lost: this connection is done, the next read reconnects
        return;
      }
      for (const frame of frames) {
        const w = waiting;
        if (w === null) continue; // unsolicited (a push): not part of polling
        waiting = null;
        if (timer !== null) clearTimeout(timer);
        timer = null;
        w.resolve(frame.apdu.slice());
      }
    });
    socket.once("connect", () => {
      clearTimeout(connectTimer);
      resolve({
        exchange: (apdu) =>
          new Promise<Uint8Array>((res, rej) => {
            if (closedError !== null) {
              rej(closedError);
              return;
            }
            if (waiting !== null) {
              rej(new DlmsError("SERVICE_REFUSED", "a request is already outstanding on this association"));
              return;
            }
            waiting = { resolve: res, reject: rej };
            timer = setTimeout(
              () => fail(new DlmsError("TIMEOUT", `no answer within ${readTimeoutMs} ms`)),
              readTimeoutMs,
            );
            socket.write(
              encodeWrapper({
                sourceWPort: clientWPort,
                destinationWPort: WPORT_MANAGEMENT_LOGICAL_DEVICE,
                apdu,
              }),
            );
          }),
        close: () => fail(new DlmsError("LINK_DOWN", "closed by the concentrator")),
      });
    });
  });
}

/** What one association learnt about its meter: re-read after every reconnect (a meter can be replaced). */
interface Association {
  readonly link: WrapperLink;
  readonly client: DlmsClient;
  readonly profile: ProfileLayout;
  readonly scalers: ReadonlyMap<string, ScalerUnit>;
  readonly events: EventLogLayout;
}

interface MeterSession {
  readonly target: DlmsMeterTarget;
  /** Next HLS invocation counter no earlier association of this meter's key can have used. */
  icNext: number;
  icReservedThrough: number;
  association: Association | null;
  /** Serialises this meter's operations: one association carries one request at a time. */
  tail: Promise<unknown>;
}

/**
 * MeterReader over DLMS/COSEM: one association per meter, kept across polls and re-opened after any
 * failure; at most `associationsActiveMax` meters doing IO at once; every request under a deadline.
 * Failures come out as ConcentratorError IFACE_* (iface_err_by_meter, port_err_cnt).
 */
export class DlmsMeterReader implements MeterReader {
  private readonly sessions = new Map<string, MeterSession>();
  private readonly activeMax: number;
  private readonly counters: InvocationCounterStore;
  private active = 0;
  private readonly slotWaiters: (() => void)[] = [];
  private closed = false;
  /** Associations opened (first and re-opened): the reconnect evidence. */
  readonly stats = { associations: 0, failures: 0 };

  constructor(
    targets: readonly DlmsMeterTarget[],
    private readonly options: DlmsMeterReaderOptions,
  ) {
    this.counters = options.invocationCounters ?? new MemoryInvocationCounterStore();
    for (const target of targets) this.addTarget(target);
    this.activeMax = options.associationsActiveMax ?? DLMS_ASSOCIATIONS_ACTIVE_MAX;
    if (!(this.activeMax >= 1))
      throw new ConcentratorError("BAD_CONFIG", "associationsActiveMax must be ≥ 1");
  }

  /** A meter to read from now on (the shell identified its address). */
  addTarget(target: DlmsMeterTarget): void {
    {
      if (this.sessions.has(target.meterId))
        throw new ConcentratorError("BAD_CONFIG", `meter ${target.meterId} given twice`);
      const reserved = this.counters.reserved(target.meterId);
      this.sessions.set(target.meterId, {
        target,
        icNext: reserved + 1,
        icReservedThrough: reserved,
        association: null,
        tail: Promise.resolve(),
      });
    }
  }

  portOf(meterId: string): string {
    const t = this.session(meterId).target;
    return `dlms://${t.host.includes(":") ? `[${t.host}]` : t.host}:${t.port}`;
  }

  async readRegisters(meterId: string): Promise<MeterReading> {
    return this.run(meterId, async (a) => {
      const newest = integerValue(await a.client.get(CLASS_DATA, parseObis(COSEM_OBIS.profileSeq), 2));
      if (newest === null)
        throw new ConcentratorError("IFACE_PROTOCOL", "profile seq is not an integer", meterId);
      if (newest === 0)
        throw new ConcentratorError("IFACE_PROTOCOL", "the meter has no reading yet", meterId);
      const readings = await this.profileRange(a, meterId, newest, newest);
      const reading = readings.find((r) => r.seq === newest);
      // The meter's clock beside the reading: meter_clock_skew_cnt measures the clock, not the entry's age.
      const meterClockMs = dateTimeMs(await a.client.get(CLASS_CLOCK, parseObis(COSEM_OBIS.clock), 2));
      if (reading === undefined)
        throw new ConcentratorError("IFACE_PROTOCOL", `profile entry ${newest} not in the buffer`, meterId);
      return meterClockMs === null ? reading : { ...reading, meterClockMs };
    });
  }

  async readProfile(meterId: string, fromSeq: number, limit: number): Promise<MeterReading[]> {
    if (limit < 1) return [];
    return this.run(meterId, async (a) =>
      (await this.profileRange(a, meterId, fromSeq, fromSeq + limit - 1)).slice(0, limit),
    );
  }

  async readEvents(meterId: string, fromSeq: number, limit: number): Promise<Uint8Array[]> {
    if (limit < 1) return [];
    return this.run(meterId, async (a) => {
      const buffer = await a.client.get(
        CLASS_PROFILE_GENERIC,
        parseObis(COSEM_OBIS.standardEventLog),
        2,
        seqRangeSelection(a.events.columns[a.events.seqIndex]!, fromSeq, fromSeq + limit - 1),
      );
      return eventRecordsFromLog(buffer, a.events, meterId).slice(0, limit);
    });
  }

  /**
   * Reads the device ID (0.0.96.1.0.255) of whatever answers at `host:port` through the public client
   * (no authentication, no ciphering: no invocation counter is spent): how URLs get their meter ids.
   */
  async identify(host: string, port: number): Promise<string> {
    const where = `${host}:${port}`;
    await this.acquire(); // a fleet identified at start opens at most associationsActiveMax sockets at once
    try {
      if (this.closed) throw new ConcentratorError("IFACE_UNREACHABLE", "reader closed", where);
      const link = await openWrapperLink(
        host,
        port,
        WPORT_PUBLIC_CLIENT,
        this.options.connectTimeoutMs ?? DLMS_CONNECT_TIMEOUT_MS,
        this.options.readTimeoutMs ?? DLMS_READ_TIMEOUT_MS,
      );
      try {
        const client = new DlmsClient((apdu) => link.exchange(apdu));
        await client.associate();
        const id = deviceIdOf(await client.get(CLASS_DATA, parseObis(COSEM_OBIS.deviceId), 2), where);
        await client.release().catch(() => {});
        return id;
      } finally {
        link.close();
      }
    } catch (error) {
      throw ifaceErrorOf(error, where);
    } finally {
      this.release();
    }
  }

  /** Releases every association (clean shutdown); later reads fail. */
  async close(): Promise<void> {
    this.closed = true;
    // Released together, each bounded: a meter that does not answer the RLRQ holds nothing up.
    await Promise.all(
      [...this.sessions.values()].map(async (s) => {
        const a = s.association;
        s.association = null;
        if (a === null) return;
        await Promise.race([a.client.release().catch(() => {}), delay(500)]);
        a.link.close();
      }),
    );
    for (const wake of this.slotWaiters.splice(0)) wake();
  }

  private async profileRange(
    a: Association,
    meterId: string,
    fromSeq: number,
    toSeq: number,
  ): Promise<MeterReading[]> {
    const buffer = await a.client.get(
      CLASS_PROFILE_GENERIC,
      parseObis(COSEM_OBIS.loadProfile),
      2,
      seqRangeSelection(a.profile.columns[a.profile.seqIndex]!, fromSeq, toSeq),
    );
    return readingsFromProfile(buffer, a.profile, a.scalers, meterId);
  }

  private session(meterId: string): MeterSession {
    const s = this.sessions.get(meterId);
    if (s === undefined)
      throw new ConcentratorError("IFACE_UNREACHABLE", "no such meter configured", meterId);
    return s;
  }

  private run<T>(meterId: string, operation: (a: Association) => Promise<T>): Promise<T> {
    const s = this.session(meterId);
    const result = s.tail.then(async () => {
      await this.acquire();
      try {
        if (this.closed) throw new ConcentratorError("IFACE_UNREACHABLE", "reader closed", meterId);
        s.association ??= await this.open(s);
        return await operation(s.association);
      } catch (error) {
        // Any failure ends the association: the next read reconnects and re-learns the meter.
        this.stats.failures++;
        s.association?.link.close();
        s.association = null;
        throw ifaceErrorOf(error, meterId);
      } finally {
        this.release();
      }
    });
    s.tail = result.catch(() => {});
    return result;
  }

  private async acquire(): Promise<void> {
    while (this.active >= this.activeMax && !this.closed)
      await new Promise<void>((wake) => this.slotWaiters.push(wake));
    this.active++;
  }

  private release(): void {
    this.active--;
    this.slotWaiters.shift()?.();
  }

  /** Reserves (durably) the counters `count` more uses need and returns the first one. */
  private takeCounters(s: MeterSession, count: number): number {
    const first = s.icNext;
    const last = first + count - 1;
    if (last > INVOCATION_COUNTER_MAX)
      throw new ConcentratorError(
        "IFACE_PROTOCOL",
        "HLS invocation counter exhausted: the meter's keys must be renewed",
        s.target.meterId,
      );
    if (last > s.icReservedThrough) {
      s.icReservedThrough = Math.min(INVOCATION_COUNTER_MAX, last + INVOCATION_COUNTER_RESERVE);
      this.counters.reserve(s.target.meterId, s.icReservedThrough);
    }
    s.icNext = last + 1;
    return first;
  }

  private async associate(s: MeterSession): Promise<{ link: WrapperLink; client: DlmsClient }> {
    const auth = this.options.auth;
    const { host, port } = s.target;
    const opened = await openWrapperLink(
      host,
      port,
      auth.kind === "none" ? WPORT_PUBLIC_CLIENT : WPORT_CLIENT_MANAGEMENT,
      this.options.connectTimeoutMs ?? DLMS_CONNECT_TIMEOUT_MS,
      this.options.readTimeoutMs ?? DLMS_READ_TIMEOUT_MS,
    );
    // Every exchange may use counters of the client's own sequence: account for them before it leaves.
    const link: WrapperLink =
      auth.kind === "hls"
        ? {
            exchange: (apdu) => {
              this.takeCounters(s, INVOCATION_COUNTERS_PER_EXCHANGE);
              return opened.exchange(apdu);
            },
            close: opened.close,
          }
        : opened;
    try {
      const client = new DlmsClient((apdu) => link.exchange(apdu));
      if (auth.kind === "hls") {
        const ctx: SecurityContext = {
          suite: 0,
          systemTitle: auth.systemTitle,
          encryptionKey: auth.encryptionKey,
          authenticationKey: auth.authenticationKey,
        };
        // The client counts up from `first`; our accounting stays ahead of it (≤ 2 per exchange), so the
        // next association starts above anything this one used: no IV twice under one key.
        const first = this.takeCounters(s, INVOCATION_COUNTERS_PER_ASSOCIATION);
        await client.associateHls(ctx, this.options.challenge(16), first);
      } else if (auth.kind === "lls") {
        await client.associate({ password: auth.password });
      } else {
        await client.associate();
      }
      this.stats.associations++;
      return { link, client };
    } catch (error) {
      link.close();
      throw error;
    }
  }

  private async open(s: MeterSession): Promise<Association> {
    const target = s.target;
    const { link, client } = await this.associate(s);
    try {
      const where = target.meterId;
      // The meter at this address must be the one configured: readings are never attributed to another.
      const id = deviceIdOf(await client.get(CLASS_DATA, parseObis(COSEM_OBIS.deviceId), 2), where);
      if (id !== target.meterId)
        throw new ConcentratorError(
          "IFACE_PROTOCOL",
          `the meter at ${target.host}:${target.port} is ${JSON.stringify(id)}, expected ${JSON.stringify(target.meterId)}`,
          where,
        );
      const profile = profileLayout(
        decodeCaptureObjects(
          await client.get(CLASS_PROFILE_GENERIC, parseObis(COSEM_OBIS.loadProfile), 3),
          where,
        ),
        where,
      );
      const scalers = new Map<string, ScalerUnit>();
      for (const { obis } of profile.values) {
        const column = profile.columns.find((c) => c.obis === obis)!;
        scalers.set(obis, decodeScalerUnit(await client.get(column.classId, parseObis(obis), 3), where));
      }
      const events = eventLogLayout(
        decodeCaptureObjects(
          await client.get(CLASS_PROFILE_GENERIC, parseObis(COSEM_OBIS.standardEventLog), 3),
          where,
        ),
        where,
      );
      return { link, client, profile, scalers, events };
    } catch (error) {
      link.close();
      throw error;
    }
  }
}

function deviceIdOf(data: Data, where: string): string {
  if (data.type === "visible-string" || data.type === "utf8-string") return data.value;
  if (data.type === "octet-string") return new TextDecoder().decode(data.value);
  throw new ConcentratorError("IFACE_PROTOCOL", `device ID is ${data.type}`, where);
}

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms).unref());
}
