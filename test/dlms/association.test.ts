import assert from "node:assert/strict";
import { Duplex, PassThrough } from "node:stream";
import { test } from "node:test";
import fc from "fast-check";
import {
  connectDlms,
  connectHdlc,
  type Data,
  DlmsClient,
  DlmsServerSession,
  dateTimeFromMs,
  encodeData,
  listenDlms,
  parseObis,
  serveHdlc,
  serverAddress,
} from "../../src/dlms/index.ts";
import { MemorySecureElement } from "../../src/evidence/index.ts";
import { Meter, meterObjectModel } from "../../src/meter/index.ts";

const T0 = Date.UTC(2026, 3, 1);
const PASSWORD = new TextEncoder().encode("12345678");

function meterWithHistory(): { meter: Meter; now: () => number } {
  const meter = Meter.open(
    {
      id: "MTR-DLMS-1",
      secureElement: new MemorySecureElement("MTR-DLMS-1", Uint8Array.of(9)),
      factoryTimeMs: T0,
    },
    T0,
  );
  let t = T0;
  for (let i = 0; i < 6 * 3600; i++) {
    t += 1000;
    meter.step(t, { vRms: 231, i1Rms: 5, phiDeg: 10, frequencyHz: 50, harmonics: [] });
  }
  for (let i = 0; i < 40; i++) {
    meter.powerFail(t);
    t += 5000;
    meter.powerRestore(t);
  }
  return { meter, now: () => t };
}

function inProcess(meter: Meter, now: () => number, clientWPort: number): DlmsClient {
  const session = new DlmsServerSession(
    meterObjectModel({ meter, trueNowMs: now }),
    { lowLevelPassword: PASSWORD },
    clientWPort,
  );
  return new DlmsClient(async (request) => session.handle(request) ?? new Uint8Array(0));
}

test("public client: clock, firmware identifiers and device ID readable; registers denied", async () => {
  const { meter, now } = meterWithHistory();
  const client = inProcess(meter, now, 16);
  await client.associate();
  assert.deepEqual(await client.get(1, parseObis("0.0.96.1.0.255"), 2), {
    type: "visible-string",
    value: "MTR-DLMS-1",
  });
  const clock = await client.get(8, parseObis("0.0.1.0.0.255"), 2);
  assert.equal(clock.type, "octet-string");
  await assert.rejects(client.get(3, parseObis("1.0.1.8.0.255"), 2), { code: "ACCESS_DENIED" });
});

test("management client: a wrong LLS password is refused; the right one reads registers, profile by range, event logs by blocks", async () => {
  const { meter, now } = meterWithHistory();
  await assert.rejects(inProcess(meter, now, 1).associate({ password: new TextEncoder().encode("nope") }), {
    code: "ASSOCIATION_REFUSED",
  });
  await assert.rejects(inProcess(meter, now, 1).associate(), { code: "ASSOCIATION_REFUSED" });
  const client = inProcess(meter, now, 1);
  await client.associate({ password: PASSWORD });
  const energy = await client.get(3, parseObis("1.0.1.8.0.255"), 2);
  assert.deepEqual(energy, { type: "double-long-unsigned", value: meter.registers.importActiveWh });
  assert.deepEqual(await client.get(3, parseObis("1.0.1.8.0.255"), 3), {
    type: "structure",
    value: [
      { type: "integer", value: 0 },
      { type: "enum", value: 30 },
    ],
  });
  const octets = (ms: number): Data => ({
    type: "octet-string",
    value: encodeData({ type: "date-time", value: dateTimeFromMs(ms) }).subarray(1),
  });
  const range: Data = {
    type: "structure",
    value: [
      {
        type: "structure",
        value: [
          { type: "long-unsigned", value: 8 },
          { type: "octet-string", value: Uint8Array.from(parseObis("0.0.1.0.0.255")) },
          { type: "integer", value: 2 },
          { type: "long-unsigned", value: 0 },
        ],
      },
      octets(T0 + 3600_000),
      octets(T0 + 2 * 3600_000),
      { type: "array", value: [] },
    ],
  };
  const profile = await client.get(7, parseObis("1.0.99.1.0.255"), 2, { selector: 1, parameters: range });
  assert.equal(profile.type, "array");
  assert.equal(
    (profile as { value: Data[] }).value.length,
    5,
    "15-minute entries from 01:00 to 02:00 inclusive",
  );
  // The event log is larger than one PDU: block transfer.
  const events = await client.get(7, parseObis("0.0.99.98.0.255"), 2);
  assert.equal((events as { value: Data[] }).value.length, meter.eventLog().length);
  assert.ok(encodeData(events).length > client.maxPdu, "the answer needed several blocks");
  await assert.rejects(client.get(3, parseObis("1.0.99.99.0.255"), 2), { code: "OBJECT_UNDEFINED" });
});

test("SET clock steps the meter's time (TIME_STEP sealed); ACTION disconnect control; no service before association", async () => {
  const { meter, now } = meterWithHistory();
  const anonymous = inProcess(meter, now, 1);
  await assert.rejects(anonymous.get(8, parseObis("0.0.1.0.0.255"), 2), { code: "NOT_ASSOCIATED" });
  const client = inProcess(meter, now, 1);
  await client.associate({ password: PASSWORD });
  await client.set(8, parseObis("0.0.1.0.0.255"), 2, {
    type: "octet-string",
    value: encodeData({ type: "date-time", value: dateTimeFromMs(now() + 3_600_000) }).subarray(1),
  });
  assert.equal(meter.eventLog().at(-1)?.type, "TIME_STEP");
  await client.action(70, parseObis("0.0.96.3.10.255"), 1, { type: "integer", value: 0 });
  assert.deepEqual(await client.get(70, parseObis("0.0.96.3.10.255"), 2), { type: "boolean", value: false });
});

test("over real TCP on 127.0.0.1: associate, GET, release", async () => {
  const { meter, now } = meterWithHistory();
  const server = await listenDlms(0, meterObjectModel({ meter, trueNowMs: now }), {
    lowLevelPassword: PASSWORD,
  });
  try {
    const { client, close } = await connectDlms("127.0.0.1", server.port, 1);
    await client.associate({ password: PASSWORD });
    assert.deepEqual(await client.get(3, parseObis("1.0.2.8.0.255"), 2), {
      type: "double-long-unsigned",
      value: meter.registers.exportActiveWh,
    });
    await client.release();
    close();
  } finally {
    await server.close();
  }
});

test("fuzz: the server answers any byte string without throwing", () => {
  const { meter, now } = meterWithHistory();
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 200 }), fc.boolean(), (bytes, associateFirst) => {
      const session = new DlmsServerSession(
        meterObjectModel({ meter, trueNowMs: now }),
        { lowLevelPassword: PASSWORD },
        16,
      );
      if (associateFirst)
        session.handle(
          Uint8Array.of(
            0x60,
            0x1d,
            0xa1,
            0x09,
            0x06,
            0x07,
            0x60,
            0x85,
            0x74,
            0x05,
            0x08,
            0x01,
            0x01,
            0xbe,
            0x10,
            0x04,
            0x0e,
            0x01,
            0x00,
            0x00,
            0x00,
            0x06,
            0x5f,
            0x1f,
            0x04,
            0x00,
            0x00,
            0x7e,
            0x1f,
            0x04,
            0xb0,
          ),
        );
      session.handle(bytes);
    }),
    { numRuns: Number(process.env.AMIPROOF_FUZZ_RUNS ?? 300) },
  );
});

const KEYS = {
  encryptionKey: Uint8Array.from(Buffer.from("000102030405060708090A0B0C0D0E0F", "hex")),
  authenticationKey: Uint8Array.from(Buffer.from("D0D1D2D3D4D5D6D7D8D9DADBDCDDDEDF", "hex")),
};
const METER_CTX = {
  suite: 0 as const,
  systemTitle: Uint8Array.from(Buffer.from("4D4D4D0000BC614E", "hex")),
  ...KEYS,
};
const CLIENT_CTX = {
  suite: 0 as const,
  systemTitle: Uint8Array.from(Buffer.from("4142430000000001", "hex")),
  ...KEYS,
};

function hlsSession(meter: Meter, now: () => number) {
  const sent: Uint8Array[] = [];
  const counter = 11;
  const session = new DlmsServerSession(
    meterObjectModel({ meter, trueNowMs: now }),
    {
      lowLevelPassword: PASSWORD,
      hls: METER_CTX,
      challenge: (n) => new Uint8Array(n).map((_, i) => (counter + i * 37) & 0xff),
    },
    1,
  );
  const client = new DlmsClient(async (request) => {
    sent.push(request);
    return session.handle(request) ?? new Uint8Array(0);
  });
  return { session, client, sent };
}

test("HLS-GMAC association (suite 0): ciphered GETs of registers, clock, profile and event log (blocks)", async () => {
  const { meter, now } = meterWithHistory();
  const { client, sent } = hlsSession(meter, now);
  await client.associateHls(CLIENT_CTX, new Uint8Array(16).fill(0x11));
  assert.deepEqual(await client.get(3, parseObis("1.0.1.8.0.255"), 2), {
    type: "double-long-unsigned",
    value: meter.registers.importActiveWh,
  });
  assert.equal((await client.get(8, parseObis("0.0.1.0.0.255"), 2)).type, "octet-string");
  assert.equal(
    ((await client.get(7, parseObis("0.0.99.98.0.255"), 2)) as { value: Data[] }).value.length,
    meter.eventLog().length,
  );
  // Every request after the AARQ travelled glo-ciphered (0xC8 glo-get, 0xCB glo-action).
  assert.ok(sent.slice(1).every((apdu) => apdu[0] === 0xc8 || apdu[0] === 0xcb));
});

test("HLS-GMAC: wrong keys are refused with a clear error; a replayed invocation counter is refused and counted", async () => {
  const { meter, now } = meterWithHistory();
  const wrong = hlsSession(meter, now);
  await assert.rejects(
    wrong.client.associateHls(
      { ...CLIENT_CTX, encryptionKey: new Uint8Array(16) },
      new Uint8Array(16).fill(1),
    ),
    (e: unknown) => e instanceof Error && /ASSOCIATION_REFUSED|AUTH_FAILED/.test(e.message),
  );
  const { client, session, sent } = hlsSession(meter, now);
  await client.associateHls(CLIENT_CTX, new Uint8Array(32).fill(0x22));
  await client.get(3, parseObis("1.0.2.8.0.255"), 2);
  const replay = sent.at(-1)!;
  const answer = session.handle(replay);
  assert.equal(answer?.[0], 0xd8, "exception response to a replay");
  assert.equal(session.securityRefusals, 1);
});

test("over real TCP with HLS-GMAC: every object of the meter's model is readable ciphered, with selective access on the profile", async () => {
  const { meter, now } = meterWithHistory();
  const server = await listenDlms(0, meterObjectModel({ meter, trueNowMs: now }), {
    lowLevelPassword: PASSWORD,
    hls: METER_CTX,
    challenge: (n) => new Uint8Array(n).fill(0x3c),
  });
  try {
    const { client, close } = await connectDlms("127.0.0.1", server.port, 1);
    await client.associateHls(CLIENT_CTX, new Uint8Array(16).fill(0x44));
    const objects: [number, string, number][] = [
      [8, "0.0.1.0.0.255", 2],
      [1, "1.0.0.2.0.255", 2],
      [1, "1.0.0.2.8.255", 2],
      [1, "0.0.96.1.0.255", 2],
      [3, "1.0.1.8.0.255", 2],
      [3, "1.0.2.8.0.255", 2],
      [3, "1.0.32.7.0.255", 2],
      [3, "1.0.31.7.0.255", 2],
      [3, "1.0.1.7.0.255", 2],
      [3, "1.0.13.7.0.255", 2],
      [7, "1.0.99.1.0.255", 2],
      [7, "0.0.99.98.0.255", 2],
      [7, "0.0.99.98.1.255", 2],
      [70, "0.0.96.3.10.255", 2],
    ];
    const values: Data[] = [];
    for (const [classId, obis, attribute] of objects) {
      const value = await client.get(classId, parseObis(obis), attribute);
      assert.ok(value.type !== "null-data", `${obis} returned ${value.type}`);
      values.push(value);
    }
    // The same objects in GET with-list requests (the profiles make the result list travel in blocks).
    const listed = await client.getWithList(
      objects.map(([classId, obis, attributeId]) => ({ classId, obis: parseObis(obis), attributeId })),
    );
    assert.deepEqual(
      listed,
      values.map((data) => ({ data })),
    );
    const octets = (ms: number): Data => ({
      type: "octet-string",
      value: encodeData({ type: "date-time", value: dateTimeFromMs(ms) }).subarray(1),
    });
    const selected = await client.get(7, parseObis("1.0.99.1.0.255"), 2, {
      selector: 1,
      parameters: {
        type: "structure",
        value: [{ type: "null-data" }, octets(T0), octets(T0 + 3600_000), { type: "array", value: [] }],
      },
    });
    assert.equal((selected as { value: Data[] }).value.length, 5);
    await client.release();
    close();
  } finally {
    await server.close();
  }
});

test("the meter's object model over HDLC on a serial line: HLS-GMAC association and ciphered GET with-list", async () => {
  const { meter, now } = meterWithHistory();
  const a = new PassThrough();
  const b = new PassThrough();
  // A serial line: what one end writes, the other reads.
  const clientEnd = Duplex.from({ readable: b, writable: a });
  const meterEnd = Duplex.from({ readable: a, writable: b });
  const server = serverAddress(1, 0x21, 2);
  const serving = serveHdlc(
    meterEnd,
    meterObjectModel({ meter, trueNowMs: now }),
    { lowLevelPassword: PASSWORD, hls: METER_CTX, challenge: (n) => new Uint8Array(n).fill(0x77) },
    { serverAddress: server, serverAddressBytes: 2 },
  );
  const connection = await connectHdlc(clientEnd, {
    clientAddress: 1,
    serverAddress: server,
    serverAddressBytes: 2,
  });
  await connection.client.associateHls(CLIENT_CTX, new Uint8Array(16).fill(0x12));
  const results = await connection.client.getWithList([
    { classId: 1, obis: parseObis("0.0.96.1.0.255"), attributeId: 2 },
    { classId: 3, obis: parseObis("1.0.1.8.0.255"), attributeId: 2 },
    { classId: 7, obis: parseObis("0.0.99.98.0.255"), attributeId: 2 },
  ]);
  assert.deepEqual(results[0], { data: { type: "visible-string", value: "MTR-DLMS-1" } });
  assert.deepEqual(results[1], {
    data: { type: "double-long-unsigned", value: meter.registers.importActiveWh },
  });
  assert.equal(
    ("data" in results[2]! && (results[2].data as { value: Data[] }).value.length) || 0,
    meter.eventLog().length,
  );
  assert.ok(serving.link.counters.framesSent > 10, "the event log travelled in segmented I frames");
  await connection.client.release();
  await connection.close();
  assert.equal(serving.link.state, "disconnected");
  serving.close();
});
