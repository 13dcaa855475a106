// DlmsMeterReader over real TCP: associations kept and re-opened, bounded concurrency, deadlines, the
// IFACE_* buckets, the device-ID check, and HLS invocation counters that never repeat an IV.
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { connect, createServer, type Server, type Socket } from "node:net";
import { test } from "node:test";
import {
  DlmsMeterReader,
  type DlmsMeterReaderOptions,
  dcuSystemTitle,
  MemoryInvocationCounterStore,
} from "../../src/concentrator/index.ts";
import { type ListeningServer, listenDlms } from "../../src/dlms/index.ts";
import { MemorySecureElement } from "../../src/evidence/index.ts";
import { Meter, meterObjectModel } from "../../src/meter/index.ts";
import { DEFAULT_AK_HEX, DEFAULT_EK_HEX, meterSystemTitle } from "../../src/meter/runtime/fleet.ts";

const T0 = Date.UTC(2026, 6, 1);
const EK = Uint8Array.from(Buffer.from(DEFAULT_EK_HEX, "hex"));
const AK = Uint8Array.from(Buffer.from(DEFAULT_AK_HEX, "hex"));

function meterWithProfile(id: string): Meter {
  const meter = Meter.open(
    {
      id,
      secureElement: new MemorySecureElement(id, Uint8Array.of(3)),
      factoryTimeMs: T0,
      profilePeriodMs: 60_000,
    },
    T0,
  );
  for (let t = T0 + 1000; t <= T0 + 10 * 60_000; t += 1000)
    meter.step(t, { vRms: 230, i1Rms: 4, phiDeg: 5, frequencyHz: 50, harmonics: [] });
  return meter;
}

function serve(meter: Meter, port = 0): Promise<ListeningServer> {
  return listenDlms(port, meterObjectModel({ meter, trueNowMs: () => T0 + 10 * 60_000 }), {
    lowLevelPassword: new TextEncoder().encode("12345678"),
    hls: { suite: 0, systemTitle: meterSystemTitle(meter.id), encryptionKey: EK, authenticationKey: AK },
    challenge: (n) => new Uint8Array(randomBytes(n)),
  });
}

/** A TCP relay in front of a meter: counts requests in flight (across relays) and records ciphered ICs. */
class Relay {
  static inFlight = 0;
  static inFlightMax = 0;
  readonly invocationCounters: number[] = [];
  private server!: Server;
  private readonly sockets = new Set<Socket>();
  port = 0;

  static async start(target: () => number, delayMs = 0): Promise<Relay> {
    const relay = new Relay();
    relay.server = createServer((client) => {
      const upstream = connect({ host: "127.0.0.1", port: target() });
      relay.sockets.add(client).add(upstream);
      client.on("data", (chunk: Buffer) => {
        // Wrapper header (8 bytes) then the APDU: glo-get/glo-action carry SC 0x30 and the IC after the length.
        const apdu = chunk.subarray(8);
        if ((apdu[0] === 0xc8 || apdu[0] === 0xcb) && apdu[1]! < 0x80 && apdu[2] === 0x30)
          relay.invocationCounters.push(apdu.readUInt32BE(3));
        Relay.inFlight++;
        Relay.inFlightMax = Math.max(Relay.inFlightMax, Relay.inFlight);
        setTimeout(() => upstream.write(chunk), delayMs);
      });
      upstream.on("data", (chunk: Buffer) => {
        Relay.inFlight = Math.max(0, Relay.inFlight - 1);
        client.write(chunk);
      });
      const end = () => {
        client.destroy();
        upstream.destroy();
      };
      client.on("error", end).on("close", end);
      upstream.on("error", end).on("close", end);
    });
    await new Promise<void>((resolve) => relay.server.listen(0, "127.0.0.1", resolve));
    relay.port = (relay.server.address() as { port: number }).port;
    return relay;
  }

  close(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    return new Promise((resolve) => this.server.close(() => resolve()));
  }
}

const hlsOptions = (counters = new MemoryInvocationCounterStore()): DlmsMeterReaderOptions => ({
  auth: { kind: "hls", encryptionKey: EK, authenticationKey: AK, systemTitle: dcuSystemTitle("DCU-T") },
  challenge: (n) => new Uint8Array(randomBytes(n)),
  invocationCounters: counters,
  readTimeoutMs: 1000,
  connectTimeoutMs: 1000,
});

test("one association per meter across reads; re-opened after the meter restarts; HLS invocation counters never repeat, even for a new reader on the same reservations", async () => {
  const meter = meterWithProfile("MTR-R-1");
  let server = await serve(meter);
  const relay = await Relay.start(() => server.port);
  const counters = new MemoryInvocationCounterStore();
  const reader = new DlmsMeterReader(
    [{ meterId: meter.id, host: "127.0.0.1", port: relay.port }],
    hlsOptions(counters),
  );
  try {
    const newest = await reader.readRegisters(meter.id);
    assert.equal(newest.seq, meter.loadProfile().at(-1)!.seq);
    assert.equal(newest.values[0]!.value, meter.loadProfile().at(-1)!.importWh);
    assert.equal(newest.meterClockMs, T0 + 10 * 60_000);
    const backfill = await reader.readProfile(meter.id, newest.seq - 3, 2);
    assert.deepEqual(
      backfill.map((r) => r.seq),
      [newest.seq - 3, newest.seq - 2],
    );
    await reader.readEvents(meter.id, 1, 4);
    assert.equal(reader.stats.associations, 1, "the association is kept across reads");

    // The meter restarts on the same port: the next read fails (timeout bucket), the one after reconnects.
    const port = server.port;
    await server.close();
    server = await serve(meter, port);
    await assert.rejects(
      reader.readRegisters(meter.id),
      (e: { code?: string }) => e.code?.startsWith("IFACE_") ?? false,
    );
    await reader.readRegisters(meter.id);
    assert.equal(reader.stats.associations, 2);
    assert.ok(counters.reserved(meter.id) > 0, "counters reserved before use");

    // A new reader (a restarted concentrator) on the same reservations continues above them.
    await reader.close();
    const again = new DlmsMeterReader(
      [{ meterId: meter.id, host: "127.0.0.1", port: relay.port }],
      hlsOptions(counters),
    );
    await again.readRegisters(meter.id);
    await again.close();
    const ics = relay.invocationCounters;
    assert.ok(ics.length >= 10);
    assert.equal(new Set(ics).size, ics.length, `an invocation counter was used twice: ${ics.join(",")}`);
  } finally {
    await reader.close();
    await relay.close();
    await server.close();
  }
});

test("errors land in their buckets: refused port → IFACE_UNREACHABLE, silent meter → IFACE_TIMEOUT, another meter at the address → IFACE_PROTOCOL", async () => {
  const meter = meterWithProfile("MTR-R-2");
  const server = await serve(meter);
  const silentSockets = new Set<Socket>();
  const silent = createServer((socket) => {
    silentSockets.add(socket); // accepts, reads, never answers
    socket.resume();
  });
  await new Promise<void>((resolve) => silent.listen(0, "127.0.0.1", resolve));
  const silentPort = (silent.address() as { port: number }).port;
  const closed = createServer();
  await new Promise<void>((resolve) => closed.listen(0, "127.0.0.1", resolve));
  const closedPort = (closed.address() as { port: number }).port;
  await new Promise<void>((resolve) => closed.close(() => resolve()));
  const reader = new DlmsMeterReader(
    [
      { meterId: "MTR-GONE", host: "127.0.0.1", port: closedPort },
      { meterId: "MTR-SILENT", host: "127.0.0.1", port: silentPort },
      { meterId: "MTR-EXPECTED", host: "127.0.0.1", port: server.port },
    ],
    { ...hlsOptions(), readTimeoutMs: 300 },
  );
  try {
    await assert.rejects(reader.readRegisters("MTR-GONE"), { code: "IFACE_UNREACHABLE" });
    await assert.rejects(reader.readRegisters("MTR-SILENT"), { code: "IFACE_TIMEOUT" });
    await assert.rejects(reader.readRegisters("MTR-EXPECTED"), {
      code: "IFACE_PROTOCOL",
      message: /is "MTR-R-2", expected "MTR-EXPECTED"/,
    });
    assert.equal(await reader.identify("127.0.0.1", server.port), "MTR-R-2");
    await assert.rejects(reader.readRegisters("MTR-NOT-CONFIGURED"), { code: "IFACE_UNREACHABLE" });
  } finally {
    await reader.close();
    await server.close();
    for (const socket of silentSockets) socket.destroy();
    await new Promise<void>((resolve) => silent.close(() => resolve()));
  }
});

test("LLS and bounded concurrency: with associationsActiveMax 1, two slow meters are never read at once, and both are read", async () => {
  const meters = [meterWithProfile("MTR-C-1"), meterWithProfile("MTR-C-2")];
  const servers = await Promise.all(meters.map((m) => serve(m)));
  const relays = await Promise.all(servers.map((s) => Relay.start(() => s.port, 30)));
  Relay.inFlight = 0;
  Relay.inFlightMax = 0;
  const reader = new DlmsMeterReader(
    meters.map((m, i) => ({ meterId: m.id, host: "127.0.0.1", port: relays[i]!.port })),
    {
      auth: { kind: "lls", password: new TextEncoder().encode("12345678") },
      challenge: (n) => new Uint8Array(n),
      associationsActiveMax: 1,
    },
  );
  try {
    const readings = await Promise.all(meters.map((m) => reader.readRegisters(m.id)));
    assert.deepEqual(
      readings.map((r) => r.seq),
      meters.map((m) => m.loadProfile().at(-1)!.seq),
    );
    assert.equal(Relay.inFlightMax, 1);
  } finally {
    await reader.close();
    for (const r of relays) await r.close();
    for (const s of servers) await s.close();
  }
});
