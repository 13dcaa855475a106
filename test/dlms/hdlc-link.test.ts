import assert from "node:assert/strict";
import { createServer, connect as netConnect, type Socket } from "node:net";
import { Duplex } from "node:stream";
import { test } from "node:test";
import fc from "fast-check";
import {
  connectHdlc,
  type Data,
  DlmsClient,
  DlmsError,
  DlmsServerSession,
  decodeHdlc,
  decodeHdlcParameters,
  encodeHdlc,
  HdlcClientLink,
  type HdlcParameters,
  HdlcServerLink,
  hdlcControl,
  KeyStore,
  type LinkTimers,
  PushReceiver,
  parseHex,
  parseObis,
  protectDataNotification,
  serveHdlc,
  serverAddress,
  withLlc,
} from "../../src/dlms/index.ts";
import { BlobModel } from "./blob-model.ts";

const RUNS = Number(process.env.AMIPROOF_FUZZ_RUNS ?? 300);

// IEC 62056-46 HDLC link layer: SNRM/UA negotiation, I frames with N(S)/N(R), RR polling of segments,
// DISC/UA/DM, FRMR, damaged frames dropped and counted, lost frames recovered by the client's
// retransmission on its response time-out (virtual time throughout).

const PASSWORD = new TextEncoder().encode("12345678");
const SERVER = serverAddress(1, 0x11, 2);
const ADDRESSING = { clientAddress: 0x01, serverAddress: SERVER, serverAddressBytes: 2 as const };
const blob = (i: number) => parseObis(`0.0.96.128.${i}.255`);
const octets = (bytes: number, fill: number): Data => ({
  type: "octet-string",
  value: new Uint8Array(bytes).fill(fill),
});

type Direction = "to-server" | "to-client";
/** What the line does with the n-th frame of a direction: deliver, drop, or deliver damaged. */
type LineFault = (direction: Direction, index: number, frame: Uint8Array) => Uint8Array | null;

/** A client and a server link joined by a synchronous in-memory line, in virtual time. */
function wiredLinks(
  options: { fault?: LineFault; limits?: HdlcParameters; proposal?: HdlcParameters; model?: BlobModel } = {},
) {
  let now = 0;
  const model = options.model ?? new BlobModel(2, 1000);
  const sessions: DlmsServerSession[] = [];
  const counts = { "to-server": 0, "to-client": 0 };
  const frames: Array<{ direction: Direction; frame: Uint8Array }> = [];
  const carry = (direction: Direction, frame: Uint8Array, deliver: (bytes: Uint8Array) => void) => {
    frames.push({ direction, frame });
    const out = options.fault ? options.fault(direction, counts[direction]++, frame) : frame;
    if (out !== null) deliver(out);
  };
  const responses: Uint8Array[] = [];
  const failures: DlmsError[] = [];
  const events: string[] = [];
  let server: HdlcServerLink;
  const client = new HdlcClientLink({
    ...ADDRESSING,
    ...(options.proposal ? { proposal: options.proposal } : {}),
    send: (frame) => carry("to-server", frame, (bytes) => server.receive(bytes, now)),
    events: {
      connected: () => events.push("connected"),
      response: (apdu) => responses.push(apdu),
      disconnected: (reason) => events.push(`disconnected: ${reason}`),
      failed: (error) => failures.push(error),
    },
  });
  server = new HdlcServerLink({
    serverAddress: SERVER,
    serverAddressBytes: 2,
    ...(options.limits ? { limits: options.limits } : {}),
    send: (frame) => carry("to-client", frame, (bytes) => client.receive(bytes, now)),
    connected: (clientAddress) =>
      sessions.push(new DlmsServerSession(model, { lowLevelPassword: PASSWORD }, clientAddress)),
    request: (apdu) => sessions.at(-1)!.handle(apdu),
  });
  /** Runs a DlmsClient over the link: each request waits, advancing virtual time tick by tick. */
  let issued = 0;
  const dlms = new DlmsClient(async (apdu) => {
    issued++;
    const before = responses.length;
    const failed = failures.length;
    client.request(apdu, now);
    for (let steps = 0; responses.length === before; steps++) {
      if (failures.length > failed) throw failures.at(-1)!;
      if (steps > 100) throw new Error("link stuck");
      now += 250;
      client.tick(now);
    }
    return responses.at(-1)!;
  });
  const advance = (ms: number) => {
    now += ms;
    client.tick(now);
    server.tick(now);
  };
  const connect = () => client.connect(now);
  return {
    client,
    server,
    dlms,
    sessions,
    frames,
    failures,
    events,
    model,
    advance,
    connect,
    issued: () => issued,
  };
}

test("SNRM/UA: parameters negotiated to the smaller side; windows stay 1", () => {
  const w = wiredLinks({
    proposal: { maxInfoTransmit: 512, maxInfoReceive: 256, windowTransmit: 1, windowReceive: 1 },
    limits: { maxInfoTransmit: 200, maxInfoReceive: 300, windowTransmit: 7, windowReceive: 7 },
  });
  w.client.connect(0);
  assert.deepEqual(w.events, ["connected"]);
  assert.equal(w.client.state, "connected");
  assert.equal(w.server.state, "connected");
  const ua = decodeHdlc(w.frames[1]!.frame);
  assert.equal(ua.kind, "UA");
  // The UA speaks for the server: it sends at most 200 (≤ client's 256 receive), accepts 300 (≤ 512).
  assert.deepEqual(decodeHdlcParameters(ua.information), {
    maxInfoTransmit: 200,
    maxInfoReceive: 300,
    windowTransmit: 1,
    windowReceive: 1,
  });
  assert.deepEqual(w.client.parameters, {
    maxInfoTransmit: 300,
    maxInfoReceive: 200,
    windowTransmit: 1,
    windowReceive: 1,
  });
  const snrm = decodeHdlc(w.frames[0]!.frame);
  assert.equal(snrm.kind, "SNRM");
  assert.equal(snrm.destination, SERVER);
  assert.equal(snrm.source, 0x01);
});

test("long requests and responses are segmented, N(S)/N(R) wrap modulo 8, each APDU delivered once", async () => {
  const w = wiredLinks();
  w.client.connect(0);
  await w.dlms.associate({ password: PASSWORD });
  // 1000-byte value in 128-byte information fields: 8+ segments, sequence numbers wrap.
  assert.deepEqual(await w.dlms.get(1, blob(0), 2), octets(1000, 0));
  // SET of 900 bytes: the client segments its request; the server acknowledges each segment with RR.
  await w.dlms.set(1, blob(1), 2, octets(900, 7));
  assert.deepEqual(w.model.blobs.get("0.0.96.128.1.255"), octets(900, 7));
  const iFromServer = w.frames.filter((f) => f.direction === "to-client" && decodeHdlc(f.frame).kind === "I");
  const seqs = iFromServer.map((f) => decodeHdlc(f.frame).sendSeq);
  assert.ok(seqs.length > 8);
  for (const [i, s] of seqs.entries()) assert.equal(s, i % 8);
  const iFromClient = w.frames.filter((f) => f.direction === "to-server" && decodeHdlc(f.frame).kind === "I");
  for (const [i, f] of iFromClient.entries()) assert.equal(decodeHdlc(f.frame).sendSeq, i % 8);
  assert.ok(w.frames.every((f) => decodeHdlc(f.frame).information.length <= 128));
  const rrFromServer = w.frames.filter(
    (f) => f.direction === "to-client" && decodeHdlc(f.frame).kind === "RR",
  );
  assert.ok(rrFromServer.length >= 7, "the server acknowledged the request segments");
  assert.equal(w.sessions[0]!.requests, 3, "AARQ, GET, SET: each delivered exactly once");
  assert.equal(w.client.counters.retransmissions, 0);
});

test("damaged frames (bad HCS, bad FCS) are dropped and counted; the client's retransmission recovers", async () => {
  const corrupt = (frame: Uint8Array, at: number) => {
    const out = Uint8Array.from(frame);
    out[at]! ^= 0x40;
    return out;
  };
  // Frame 3 to the client (a response segment) loses an information byte (FCS fails); frame 2 to the
  // server (the GET request) gets a damaged control byte... in its header (HCS fails).
  const w = wiredLinks({
    fault: (direction, index, frame) => {
      if (direction === "to-client" && index === 3) return corrupt(frame, frame.length - 10);
      if (direction === "to-server" && index === 2) return corrupt(frame, 5);
      return frame;
    },
  });
  w.client.connect(0);
  await w.dlms.associate({ password: PASSWORD });
  assert.deepEqual(await w.dlms.get(1, blob(0), 2), octets(1000, 0));
  assert.equal(w.server.counters.hcsErrors, 1);
  assert.equal(w.client.counters.fcsErrors, 1);
  assert.equal(w.client.counters.retransmissions, 2);
  assert.equal(w.sessions[0]!.requests, 2, "the repeated request was not served twice");
});

test("lost frames: a lost answer makes the client repeat its I frame and the server repeat its answer, once", async () => {
  const dropped: number[] = [];
  const w = wiredLinks({
    fault: (direction, index, frame) => {
      // Lose the server's answer to the AARQ, then a GET response segment, then a client RR.
      if (
        (direction === "to-client" && (index === 1 || index === 4)) ||
        (direction === "to-server" && index === 4)
      ) {
        dropped.push(index);
        return null;
      }
      return frame;
    },
  });
  w.client.connect(0);
  await w.dlms.associate({ password: PASSWORD });
  assert.deepEqual(await w.dlms.get(1, blob(0), 2), octets(1000, 0));
  assert.equal(dropped.length, 3);
  assert.equal(w.sessions[0]!.requests, 2, "AARQ and GET served once each");
  assert.ok(w.server.counters.duplicates >= 1);
  assert.ok(w.server.counters.retransmissions >= 2);
  assert.equal(w.client.counters.retransmissions, 3);
});

test("a dead line: the client gives up after its retries with TIMEOUT; SNRM unanswered fails too", () => {
  const w = wiredLinks({ fault: (direction, _i, frame) => (direction === "to-client" ? null : frame) });
  w.client.connect(0);
  for (let i = 0; i < 10; i++) w.advance(1000);
  assert.equal(w.failures.length, 1);
  assert.equal(w.failures[0]!.code, "TIMEOUT");
  assert.equal(w.client.state, "disconnected");
  assert.equal(w.client.counters.retransmissions, 3);
  assert.equal(w.frames.filter((f) => f.direction === "to-server").length, 4);
});

test("DISC → UA ends the association; frames on a disconnected link get DM; DISC when disconnected gets DM", async () => {
  const w = wiredLinks();
  w.client.connect(0);
  await w.dlms.associate({ password: PASSWORD });
  w.client.disconnect(0);
  assert.equal(w.server.state, "disconnected");
  assert.deepEqual(w.events, ["connected", "disconnected: DISC acknowledged"]);
  // An I frame after the DISC: the server answers DM.
  const answers: Uint8Array[] = [];
  const lone = new HdlcServerLink({
    serverAddress: SERVER,
    serverAddressBytes: 2,
    send: (f) => answers.push(f),
    request: () => null,
  });
  const iFrame = encodeHdlc({
    destination: SERVER,
    destinationBytes: 2,
    source: 0x10,
    control: hdlcControl.i(0, 0),
    information: withLlc(Uint8Array.of(0xc0, 1, 0xc1), "command"),
  });
  lone.receive(iFrame, 0);
  lone.receive(
    encodeHdlc({ destination: SERVER, destinationBytes: 2, source: 0x10, control: hdlcControl.disc() }),
    0,
  );
  assert.deepEqual(
    answers.map((f) => decodeHdlc(f).kind),
    ["DM", "DM"],
  );
  assert.equal(decodeHdlc(answers[0]!).destination, 0x10, "DM goes back to the caller");
  // A client link that meets DM while connected fails with LINK_DOWN.
  const w2 = wiredLinks();
  w2.client.connect(0);
  w2.server.receive(
    encodeHdlc({ destination: SERVER, destinationBytes: 2, source: 0x01, control: hdlcControl.disc() }),
    0,
  );
  await assert.rejects(w2.dlms.associate({ password: PASSWORD }), { code: "LINK_DOWN", message: /DM/ });
});

test("FRMR: an information field longer than negotiated or an out-of-sequence I frame is rejected", () => {
  const answers: Uint8Array[] = [];
  const server = new HdlcServerLink({
    serverAddress: SERVER,
    serverAddressBytes: 2,
    send: (f) => answers.push(f),
    request: () => Uint8Array.of(0xc4, 1, 0xc1, 0, 0),
  });
  const from = (control: number, information?: Uint8Array) =>
    encodeHdlc({
      destination: SERVER,
      destinationBytes: 2,
      source: 0x10,
      control,
      ...(information ? { information } : {}),
    });
  server.receive(from(hdlcControl.snrm()), 0);
  assert.equal(decodeHdlc(answers.at(-1)!).kind, "UA");
  server.receive(from(hdlcControl.i(0, 0), new Uint8Array(200)), 0);
  const frmr = decodeHdlc(answers.at(-1)!);
  assert.equal(frmr.kind, "FRMR");
  assert.equal(frmr.information[2], 0x04, "Y: information field too long");
  server.receive(from(hdlcControl.i(3, 0), withLlc(Uint8Array.of(0xc0), "command")), 0);
  assert.equal(decodeHdlc(answers.at(-1)!).kind, "FRMR");
  assert.equal(decodeHdlc(answers.at(-1)!).information[2], 0x08, "Z: bad sequence number");
  assert.equal(server.counters.frameRejects, 2);
  // A client receiving FRMR gives the link up with the reason.
  const failures: DlmsError[] = [];
  const client = new HdlcClientLink({
    ...ADDRESSING,
    send: () => {},
    events: { response: () => {}, failed: (e) => failures.push(e) },
  });
  client.connect(0);
  client.receive(
    encodeHdlc({
      destination: 0x01,
      source: SERVER,
      sourceBytes: 2,
      control: hdlcControl.frmr(),
      information: Uint8Array.of(0x10, 0, 4),
    }),
    0,
  );
  assert.equal(failures[0]?.code, "LINK_DOWN");
  assert.match(failures[0]!.message, /FRMR 100004/);
});

test("the server drops a silent link after its inactivity time-out; frames for other stations are ignored", async () => {
  const w = wiredLinks();
  w.client.connect(0);
  await w.dlms.associate({ password: PASSWORD });
  w.server.receive(
    encodeHdlc({
      destination: serverAddress(1, 0x12, 2),
      destinationBytes: 2,
      source: 0x01,
      control: hdlcControl.rr(0),
    }),
    0,
  );
  assert.equal(w.server.counters.foreignFrames, 1);
  assert.equal(w.server.nextDeadlineMs !== null, true);
  w.advance(119_000);
  assert.equal(w.server.state, "connected");
  w.advance(2_000);
  assert.equal(w.server.state, "disconnected");
});

test("fuzz: random bytes and damaged frames into either link only count errors, never throw", () => {
  const valid = [
    encodeHdlc({ destination: SERVER, destinationBytes: 2, source: 1, control: hdlcControl.snrm() }),
    encodeHdlc({
      destination: SERVER,
      destinationBytes: 2,
      source: 1,
      control: hdlcControl.i(0, 0),
      information: withLlc(Uint8Array.of(0x60, 0), "command"),
    }),
    encodeHdlc({
      destination: 1,
      source: SERVER,
      sourceBytes: 2,
      control: hdlcControl.ua(),
      information: Uint8Array.of(0x81, 0x80, 0),
    }),
    encodeHdlc({
      destination: 1,
      source: SERVER,
      sourceBytes: 2,
      control: hdlcControl.i(0, 1, true),
      information: withLlc(Uint8Array.of(0xc4, 1), "response"),
      segmented: true,
    }),
  ];
  fc.assert(
    fc.property(
      fc.array(
        fc.oneof(
          fc.uint8Array({ maxLength: 300 }),
          fc
            .tuple(fc.constantFrom(...valid), fc.nat(), fc.integer({ min: 1, max: 255 }))
            .map(([frame, at, x]) => {
              const out = Uint8Array.from(frame);
              out[at % out.length]! ^= x;
              return out;
            }),
          fc.constantFrom(...valid),
        ),
        { maxLength: 20 },
      ),
      (chunks) => {
        const server = new HdlcServerLink({
          serverAddress: SERVER,
          serverAddressBytes: 2,
          send: () => {},
          request: (apdu) => apdu,
        });
        const client = new HdlcClientLink({
          ...ADDRESSING,
          send: () => {},
          events: { response: () => {}, failed: () => {} },
        });
        client.connect(0);
        let t = 0;
        for (const chunk of chunks) {
          server.receive(chunk, t);
          client.receive(chunk, t);
          t += 300;
          client.tick(t);
          server.tick(t);
        }
      },
    ),
    { numRuns: RUNS },
  );
});

// ───────────────────────────── over Duplex streams ─────────────────────────────

class VirtualTimers implements LinkTimers {
  private now = 0;
  private next = 1;
  private readonly due = new Map<number, { at: number; fn: () => void }>();
  nowMs(): number {
    return this.now;
  }
  setTimeout(fn: () => void, ms: number): unknown {
    const id = this.next++;
    this.due.set(id, { at: this.now + ms, fn });
    return id;
  }
  clearTimeout(handle: unknown): void {
    this.due.delete(handle as number);
  }
  advance(ms: number): void {
    const target = this.now + ms;
    for (;;) {
      const first = [...this.due.entries()].sort((a, b) => a[1].at - b[1].at)[0];
      if (first === undefined || first[1].at > target) break;
      this.due.delete(first[0]);
      this.now = first[1].at;
      first[1].fn();
    }
    this.now = target;
  }
}

/** Two in-memory Duplex ends of one serial line; `fault` may drop or alter what crosses it. */
function serialLine(fault?: (direction: Direction, chunk: Uint8Array) => Uint8Array | null) {
  const ends: Duplex[] = [];
  const make = (direction: Direction, peer: () => Duplex) =>
    new Duplex({
      read() {},
      write(chunk: Buffer, _encoding, done) {
        const out = fault ? fault(direction, new Uint8Array(chunk)) : chunk;
        if (out !== null) peer().push(out);
        done();
      },
    });
  ends.push(
    make("to-server", () => ends[1]!),
    make("to-client", () => ends[0]!),
  );
  return { clientEnd: ends[0]!, meterEnd: ends[1]! };
}

const settle = () => new Promise((resolve) => setImmediate(resolve));

async function inVirtualTime<T>(timers: VirtualTimers, work: Promise<T>): Promise<T> {
  let done = false;
  const result = work.finally(() => {
    done = true;
  });
  result.catch(() => {});
  for (let i = 0; i < 200 && !done; i++) {
    await settle();
    await settle();
    if (!done) timers.advance(100);
  }
  return result;
}

test("a DlmsClient and a meter session over HDLC on a Duplex stream, with a lost frame, in virtual time", async () => {
  let dropNext = 0;
  const timers = new VirtualTimers();
  const line = serialLine((direction, chunk) => {
    // Lose the 3rd frame from the meter (the answer to the first GET).
    if (direction === "to-client" && ++dropNext === 3) return null;
    return chunk;
  });
  const model = new BlobModel(2, 700);
  const serving = serveHdlc(
    line.meterEnd,
    model,
    { lowLevelPassword: PASSWORD },
    {
      serverAddress: SERVER,
      serverAddressBytes: 2,
      timers,
    },
  );
  const connection = await inVirtualTime(timers, connectHdlc(line.clientEnd, { ...ADDRESSING, timers }));
  await inVirtualTime(timers, connection.client.associate({ password: PASSWORD }));
  assert.deepEqual(await inVirtualTime(timers, connection.client.get(1, blob(0), 2)), octets(700, 0));
  const results = await inVirtualTime(
    timers,
    connection.client.getWithList([
      { classId: 1, obis: blob(0), attributeId: 2 },
      { classId: 1, obis: blob(1), attributeId: 2 },
    ]),
  );
  assert.deepEqual(results, [{ data: octets(700, 0) }, { data: octets(700, 1) }]);
  assert.equal(connection.link.counters.retransmissions, 1);
  // AARQ, GET, GET with-list and one GET next (1400 bytes of results): the repeated GET not served twice.
  assert.equal(serving.session()?.requests, 4);
  await inVirtualTime(timers, connection.close());
  assert.equal(serving.link.state, "disconnected");
  assert.equal(serving.session(), null);
  serving.close();
});

test("over a TCP serial bridge (a socket is a Duplex): HDLC with the real clock", async () => {
  const model = new BlobModel(1, 300);
  const sockets: Socket[] = [];
  const bridge = createServer((socket) => {
    sockets.push(socket);
    serveHdlc(
      socket,
      model,
      { lowLevelPassword: PASSWORD },
      { serverAddress: SERVER, serverAddressBytes: 2 },
    );
  });
  await new Promise<void>((resolve) => bridge.listen(0, "127.0.0.1", resolve));
  const port = (bridge.address() as { port: number }).port;
  const socket = netConnect({ host: "127.0.0.1", port });
  await new Promise((resolve) => socket.once("connect", resolve));
  try {
    const connection = await connectHdlc(socket, {
      clientAddress: 0x10,
      serverAddress: SERVER,
      serverAddressBytes: 2,
    });
    await connection.client.associate();
    assert.deepEqual(await connection.client.get(1, blob(0), 2), octets(300, 0));
    await assert.rejects(
      connection.client.get(1, blob(0), 1).then(() => connection.client.set(1, blob(0), 2, octets(1, 1))),
      {
        code: "ACCESS_DENIED",
      },
    );
    await connection.close();
    assert.equal(connection.link.state, "disconnected");
  } finally {
    socket.destroy();
    for (const s of sockets) s.destroy();
    await new Promise((resolve) => bridge.close(resolve));
  }
});

// The published HDLC session log of test/dlms/hdlc.test.ts (public client 1 → server 1, frames with a
// real meter's HCS/FCS): our links must put the same APDUs into the same bytes, control fields included.
const SESSION = {
  ua: "7E A0 1E 03 03 73 40 CC 81 80 12 05 01 80 06 01 80 07 04 00 00 00 01 08 04 00 00 00 01 53 3B 7E",
  aarq: "7E A0 44 03 03 10 65 94 E6 E6 00 60 36 A1 09 06 07 60 85 74 05 08 01 01 8A 02 07 80 8B 07 60 85 74 05 08 02 01 AC 0A 80 08 78 52 77 50 62 45 78 46 BE 10 04 0E 01 00 00 00 06 5F 1F 04 00 00 7E 1F 01 00 AF DF 7E",
  aare: "7E A0 37 03 03 30 EF CA E6 E7 00 61 29 A1 09 06 07 60 85 74 05 08 01 01 A2 03 02 01 00 A3 05 A1 03 02 01 00 BE 10 04 0E 08 00 06 5F 1F 04 00 00 18 1D 01 80 00 07 A1 DC 7E",
  getSerial: "7E A0 19 03 03 32 EC C8 E6 E6 00 C0 01 87 00 01 00 00 60 01 00 FF 02 00 FB 98 7E",
  serialResponse:
    "7E A0 22 03 03 52 0D 27 E6 E7 00 C4 01 87 00 09 10 41 50 41 6E 6F 72 33 30 39 34 34 38 31 31 33 30 27 A3 7E",
};
const hexBytes = (text: string) => parseHex(text);
const apduOf = (frame: string) => decodeHdlc(hexBytes(frame)).information.subarray(3);

test("golden session: our client link sends the captured I frames byte for byte and takes the meter's answers", () => {
  const sent: Uint8Array[] = [];
  const responses: Uint8Array[] = [];
  const client = new HdlcClientLink({
    clientAddress: 1,
    serverAddress: 1,
    serverAddressBytes: 1,
    send: (frame) => sent.push(frame),
    events: { response: (apdu) => responses.push(apdu), failed: (e) => assert.fail(e) },
  });
  client.connect(0);
  assert.equal(decodeHdlc(sent[0]!).kind, "SNRM");
  client.receive(hexBytes(SESSION.ua), 0);
  assert.equal(client.state, "connected");
  assert.equal(client.parameters.maxInfoTransmit, 128);
  client.request(apduOf(SESSION.aarq), 0);
  assert.deepEqual(sent[1], hexBytes(SESSION.aarq));
  client.receive(hexBytes(SESSION.aare), 0);
  assert.deepEqual(responses[0], apduOf(SESSION.aare));
  client.request(apduOf(SESSION.getSerial), 0);
  assert.deepEqual(sent[2], hexBytes(SESSION.getSerial));
  client.receive(hexBytes(SESSION.serialResponse), 0);
  assert.equal(Buffer.from(responses[1]!).subarray(6).toString("latin1"), "APAnor3094481130");
});

test("golden session: our server link answers the captured requests with the meter's frames byte for byte", () => {
  const sent: Uint8Array[] = [];
  const answers = [apduOf(SESSION.aare), apduOf(SESSION.serialResponse)];
  const requests: Uint8Array[] = [];
  const server = new HdlcServerLink({
    serverAddress: 1,
    serverAddressBytes: 1,
    send: (frame) => sent.push(frame),
    request: (apdu) => {
      requests.push(apdu);
      return answers.shift()!;
    },
  });
  server.receive(encodeHdlc({ destination: 1, source: 1, control: hdlcControl.snrm() }), 0);
  assert.equal(decodeHdlc(sent[0]!).kind, "UA");
  // No parameters in the SNRM: the defaults, which the meter's UA also states.
  assert.deepEqual(
    decodeHdlcParameters(decodeHdlc(sent[0]!).information),
    decodeHdlcParameters(decodeHdlc(hexBytes(SESSION.ua)).information),
  );
  server.receive(hexBytes(SESSION.aarq), 0);
  assert.deepEqual(sent[1], hexBytes(SESSION.aare));
  server.receive(hexBytes(SESSION.getSerial), 0);
  assert.deepEqual(sent[2], hexBytes(SESSION.serialResponse));
  assert.deepEqual(requests, [apduOf(SESSION.aarq), apduOf(SESSION.getSerial)]);
});

test("pushes in UI frames: a meter's ciphered DataNotification reaches the client's PushReceiver; replays refused", () => {
  const keys = {
    suite: 0 as const,
    systemTitle: Uint8Array.of(0x41, 0x4d, 0x50, 0, 0, 0, 0, 9),
    encryptionKey: new Uint8Array(16).fill(0x11),
    authenticationKey: new Uint8Array(16).fill(0x22),
  };
  const receiver = new PushReceiver(new KeyStore([keys]));
  const received: unknown[] = [];
  const refused: string[] = [];
  let server: HdlcServerLink;
  const client = new HdlcClientLink({
    ...ADDRESSING,
    send: (frame) => server.receive(frame, 0),
    events: {
      response: () => {},
      failed: (e) => assert.fail(e),
      notification: (apdu) => {
        try {
          received.push(receiver.receive(apdu).notification.body);
        } catch (error) {
          refused.push((error as DlmsError).code);
        }
      },
    },
  });
  const sent: Uint8Array[] = [];
  server = new HdlcServerLink({
    serverAddress: SERVER,
    serverAddressBytes: 2,
    send: (frame) => {
      sent.push(frame);
      client.receive(frame, 0);
    },
    request: () => null,
  });
  client.connect(0);
  const body: Data = { type: "double-long-unsigned", value: 4242 };
  const push = protectDataNotification(
    keys,
    { longInvokeId: 1, dateTime: null, body },
    { invocationCounter: 10 },
  );
  server.push(push);
  server.push(push);
  assert.deepEqual(received, [body]);
  assert.deepEqual(refused, ["REPLAYED_INVOCATION_COUNTER"]);
  const ui = decodeHdlc(sent.at(-1)!);
  assert.equal(ui.kind, "UI");
  assert.equal(ui.sendSeq, null);
  assert.equal(client.counters.framesSent, 1, "a push is not answered");
  assert.throws(() => server.push(new Uint8Array(200)), { code: "BAD_LENGTH" });
});

/** One run over a lossy line: a seeded fault pattern, then an association and GET/SET operations. */
async function lossyRun(seed: number, operations: Array<[boolean, number, number]>): Promise<void> {
  let state = seed;
  const random = () => {
    state = Number((BigInt(state) * 48271n) % 2147483647n);
    return state / 2147483647;
  };
  const w = wiredLinks({
    fault: (_direction, _index, frame) => {
      const roll = random();
      if (roll < 0.1) return null; // lost
      if (roll < 0.15) {
        const out = Uint8Array.from(frame);
        out[1 + Math.floor(random() * (out.length - 2))]! ^= 1 + Math.floor(random() * 254);
        return out; // damaged on the line
      }
      return frame;
    },
  });
  // Connect; the SNRM or its UA may be lost too, and a client that gave up tries again.
  for (let attempt = 0; w.client.state !== "connected"; attempt++) {
    assert.ok(attempt < 50, "never connected");
    if (w.client.state === "disconnected") w.connect();
    w.advance(1000);
  }
  let timedOut = false;
  try {
    await w.dlms.associate({ password: PASSWORD });
    for (const [write, bytes, fill] of operations) {
      if (write) {
        await w.dlms.set(1, blob(1), 2, octets(bytes, fill));
        assert.deepEqual(w.model.blobs.get("0.0.96.128.1.255"), octets(bytes, fill));
      } else assert.deepEqual(await w.dlms.get(1, blob(1), 2), w.model.blobs.get("0.0.96.128.1.255"));
    }
  } catch (error) {
    // A run of losses longer than the retries: the link gives up, which is an outcome, not a bug.
    assert.ok(error instanceof DlmsError && error.code === "TIMEOUT", String(error));
    timedOut = true;
  }
  const served = w.sessions.at(-1)!.requests;
  if (timedOut) assert.ok(served <= w.issued(), `${served} served for ${w.issued()} requests`);
  else assert.equal(served, w.issued(), "every request served exactly once");
}

test("property: over a line that loses and damages frames at random, every answer is right and each request is served once", async () => {
  await fc.assert(
    fc.asyncProperty(
      fc.integer({ min: 1, max: 2 ** 31 - 2 }),
      fc.array(fc.tuple(fc.boolean(), fc.integer({ min: 1, max: 1500 }), fc.nat(255)), {
        minLength: 1,
        maxLength: 6,
      }),
      lossyRun,
    ),
    { numRuns: Math.max(10, RUNS / 10) },
  );
});
test("regression (found by the property above): a damaged length field does not make the link replay stale frames", async () => {
  // Seed 1450107514 damaged a frame's length field; the server's reader held the retransmitted RRs behind
  // it and, after resynchronising, acted on a stale RR: FRMR. The inter-octet time-out now drops the
  // partial frame before later bytes arrive.
  await lossyRun(1450107514, [
    [false, 1, 0],
    [false, 1, 0],
  ]);
  const answers: Uint8Array[] = [];
  const server = new HdlcServerLink({
    serverAddress: SERVER,
    serverAddressBytes: 2,
    send: (f) => answers.push(f),
    request: () => null,
  });
  const snrm = encodeHdlc({
    destination: SERVER,
    destinationBytes: 2,
    source: 1,
    control: hdlcControl.snrm(),
  });
  const longer = Uint8Array.from(snrm);
  longer[2] = longer[2]! + 40; // the length field now claims 40 more bytes
  server.receive(longer, 0);
  server.receive(snrm, 10); // within the inter-octet time-out: still part of the damaged frame
  assert.equal(answers.length, 0);
  server.receive(snrm, 1_000); // after it: the partial frame is dropped, the SNRM is taken
  assert.equal(server.counters.partialFramesDropped, 1);
  assert.equal(decodeHdlc(answers[0]!).kind, "UA");
});
