import assert from "node:assert/strict";
import { test } from "node:test";
import {
  decodeFrame,
  encodeManufacturer,
  isMbusError,
  MbusDecodeStats,
  MbusMaster,
  MbusSimBus,
  type MbusSimBusOptions,
  MbusSimSlave,
  type MbusTransport,
  type RecordSpec,
  SECONDARY_WILDCARD,
  serveSimBus,
  TcpBridgeTransport,
} from "../../src/mbus/index.ts";

function energy(value: number, storageNumber = 0): RecordSpec {
  return { dataField: "int32", storageNumber, vib: { vif: 0x06 }, value };
}
function volume(value: number): RecordSpec {
  return { dataField: "bcd8", vib: { vif: 0x13 }, value };
}

function slave(
  primaryAddress: number,
  identification: string,
  telegrams = 1,
  manufacturer = "AMI",
): MbusSimSlave {
  return new MbusSimSlave({
    primaryAddress,
    identification,
    manufacturer,
    version: 1,
    medium: 0x07,
    telegrams: Array.from({ length: telegrams }, (_, t) => [energy(1000 * (t + 1), t), volume(t)]),
  });
}

/** Records the control field of every request the master sends. */
class Spy implements MbusTransport {
  readonly controls: number[] = [];
  constructor(readonly inner: MbusTransport) {}
  async send(bytes: Uint8Array): Promise<void> {
    const frame = decodeFrame(bytes);
    if (frame.kind !== "ack") this.controls.push(frame.control);
    await this.inner.send(bytes);
  }
  receive(timeoutMs: number): Promise<Uint8Array | null> {
    return this.inner.receive(timeoutMs);
  }
}

function rig(slaves: MbusSimSlave[], options: MbusSimBusOptions = {}) {
  const bus = new MbusSimBus(slaves, options);
  const spy = new Spy(bus);
  const stats = new MbusDecodeStats();
  const master = new MbusMaster(spy, { stats, retries: 2 });
  return { bus, spy, stats, master };
}

test("multi-telegram readout follows DIF 0x1F with a toggling FCB", async () => {
  const meter = slave(5, "12345678", 3);
  const { spy, master, stats } = rig([meter]);
  const readout = await master.readout(5);
  assert.equal(readout.complete, true);
  assert.equal(readout.telegrams.length, 3);
  assert.deepEqual(
    readout.records.filter((r) => r.vib.quantity === "energy").map((r) => [r.storageNumber, r.rawValue]),
    [
      [0, 1000],
      [1, 2000],
      [2, 3000],
    ],
  );
  assert.deepEqual(
    readout.telegrams.map((t) => t.telegram?.moreRecordsFollow),
    [true, true, false],
  );
  // SND_NKE, then REQ_UD2 with FCB 1, 0, 1 (EN 13757-2: the slave cleared its FCB on SND_NKE).
  assert.deepEqual(spy.controls, [0x40, 0x7b, 0x5b, 0x7b]);
  assert.equal(meter.seen.repeats, 0);
  assert.equal(stats.framesOk, 4);
  assert.equal(stats.errorsTotal, 0);
});

test("a lost answer is asked again with the same FCB and the slave repeats it", async () => {
  const meter = slave(5, "12345678", 3);
  const { spy, master, stats } = rig([meter], { dropEvery: 3 });
  const readout = await master.readout(5);
  assert.equal(readout.complete, true);
  assert.deepEqual(
    readout.telegrams.map((t) => t.telegram?.records[0]?.storageNumber),
    [0, 1, 2],
  );
  assert.ok(meter.seen.repeats >= 1);
  assert.ok(stats.count("TIMEOUT") >= 1);
  // Every repetition reuses the FCB of the request it repeats.
  const fcbs = spy.controls.filter((c) => (c & 0x0f) === 0x0b).map((c) => (c & 0x20) !== 0);
  assert.ok(fcbs.some((fcb, i) => i > 0 && fcb === fcbs[i - 1]));
});

test("corrupted answers are counted as frame_crc_fail and retried", async () => {
  const meter = slave(9, "11112222", 2);
  const { master, stats } = rig([meter], { corruptEvery: 2 });
  const readout = await master.readout(9);
  assert.equal(readout.complete, true);
  assert.equal(readout.records.length, 4);
  assert.ok(stats.frameCrcFail >= 1);
  assert.equal(stats.portErrCnt, stats.frameCrcFail);
  assert.equal(stats.toJSON().frame_crc_fail, stats.frameCrcFail);
});

test("answers delivered in small chunks are reassembled", async () => {
  const { master } = rig([slave(3, "00000003", 2)], { chunkBytes: 3 });
  const readout = await master.readout(3);
  assert.equal(readout.telegrams.length, 2);
});

test("readout stops at telegramsMax and says it is incomplete; silence is a TIMEOUT", async () => {
  const bus = new MbusSimBus([slave(4, "00000004", 5)]);
  const stats = new MbusDecodeStats();
  const master = new MbusMaster(bus, { telegramsMax: 2, stats, retries: 1 });
  const readout = await master.readout(4);
  assert.equal(readout.complete, false);
  assert.equal(readout.telegrams.length, 2);
  await assert.rejects(master.readout(77), (e) => isMbusError(e, "TIMEOUT"));
  assert.equal(stats.count("TIMEOUT"), 2);
});

test("application reset restarts the telegram sequence", async () => {
  const meter = slave(6, "00000006", 3);
  const { master } = rig([meter]);
  await master.sendNke(6);
  const first = await master.requestUserData(6);
  await master.requestUserData(6);
  await master.applicationReset(6);
  const again = await master.requestUserData(6);
  assert.equal(meter.seen.applicationResets, 1);
  assert.equal(again.telegram?.records[0]?.storageNumber, first.telegram?.records[0]?.storageNumber);
});

test("primary scan finds each address and reports collisions", async () => {
  const { master } = rig([
    slave(1, "00000001"),
    slave(5, "00000005"),
    slave(250, "00000250"),
    slave(7, "00000071"),
    slave(7, "00000072"),
  ]);
  const result = await master.scanPrimary();
  assert.deepEqual(result.found, [1, 5, 250]);
  assert.deepEqual(result.collisions, [7]);
});

test("selection by secondary address with wildcards; SND_NKE at 0xFD deselects", async () => {
  const a = slave(0, "12345678");
  const b = slave(0, "12349999");
  const { master } = rig([a, b]);
  assert.equal(await master.select({ ...SECONDARY_WILDCARD, identification: "1234FFFF" }), "collision");
  assert.equal(await master.select({ ...SECONDARY_WILDCARD, identification: "12345FFF" }), "selected");
  assert.equal(a.selected, true);
  assert.equal(b.selected, false);
  assert.equal(await master.select({ ...SECONDARY_WILDCARD, identification: "5FFFFFFF" }), "none");
  assert.equal(a.selected, false);
  assert.equal(
    await master.select({
      identification: "12345678",
      manufacturerCode: encodeManufacturer("ZZZ"),
      version: 0xff,
      medium: 0xff,
    }),
    "none",
  );
  assert.equal(await master.select({ ...a.secondaryAddress }), "selected");
  await master.sendNke(0xfd);
  assert.equal(a.selected, false);
});

test("readout by secondary address follows the selected slave's telegrams", async () => {
  const a = slave(0, "12345678", 2);
  const b = slave(0, "87654321", 2);
  const { master } = rig([a, b]);
  const readout = await master.readoutSecondary(b.secondaryAddress);
  assert.equal(readout.telegrams.length, 2);
  const header = readout.telegrams[0]!.telegram?.header;
  assert.ok(header?.kind === "long");
  assert.equal(header.identification, "87654321");
  assert.equal(a.seen.reqUd2, 0);
});

test("secondary scan finds every slave through wildcard collisions", async () => {
  const ids = ["12345678", "12345679", "12340000", "87654321", "00000001", "99999999"];
  const slaves = ids.map((id) => slave(0, id));
  const { master, stats } = rig(slaves);
  const result = await master.scanSecondary();
  assert.deepEqual(result.found.map((h) => h.identification).sort(), [...ids].sort());
  assert.deepEqual(result.unresolved, []);
  assert.ok(result.probes < 200, `probes ${result.probes}`);
  assert.ok(stats.count("COLLISION") > 0);
  // Two slaves with one identification but different manufacturers cannot be told apart by ID digits.
  const twins = rig([slave(0, "55555555", 1, "AAA"), slave(0, "55555555", 1, "BBB"), slave(0, "10000000")]);
  const twinResult = await twins.master.scanSecondary();
  assert.deepEqual(twinResult.unresolved, ["55555555"]);
  assert.deepEqual(
    twinResult.found.map((h) => h.identification),
    ["10000000"],
  );
  // Restricting by manufacturer resolves them one at a time.
  const onlyA = await twins.master.scanSecondary({ manufacturerCode: encodeManufacturer("AAA") });
  assert.deepEqual(
    onlyA.found.map((h) => `${h.identification} ${h.manufacturer}`),
    ["55555555 AAA"],
  );
});

test("secondary scan stops at its probe bound", async () => {
  const bus = new MbusSimBus([slave(0, "12345678"), slave(0, "12345679")]);
  const master = new MbusMaster(bus, { scanProbesMax: 5 });
  await assert.rejects(master.scanSecondary(), (e) => isMbusError(e, "LIMIT"));
});

test("over a real TCP bridge on 127.0.0.1: multi-telegram readout, secondary readout, silence", async () => {
  const meters = [slave(5, "12345678", 3), slave(6, "87654321", 2)];
  const bus = new MbusSimBus(meters);
  const server = await serveSimBus(bus);
  const transport = await TcpBridgeTransport.connect("127.0.0.1", server.port);
  try {
    const stats = new MbusDecodeStats();
    const master = new MbusMaster(transport, {
      responseTimeoutMs: 2000,
      retries: 0,
      collisionGuardMs: 20,
      stats,
    });
    const readout = await master.readout(5);
    assert.equal(readout.complete, true);
    assert.equal(readout.telegrams.length, 3);
    assert.deepEqual(
      readout.records.filter((r) => r.vib.quantity === "energy").map((r) => r.value),
      [1000 * 3_600_000, 2000 * 3_600_000, 3000 * 3_600_000],
    );
    const secondary = await master.readoutSecondary(meters[1]!.secondaryAddress);
    assert.equal(secondary.telegrams.length, 2);
    const quiet = new MbusMaster(transport, { responseTimeoutMs: 100, retries: 0, stats });
    await assert.rejects(quiet.requestUserData(42), (e) => isMbusError(e, "TIMEOUT"));
    assert.equal(stats.count("TIMEOUT"), 1);
    assert.equal(stats.framesOk, 1 + 3 + 1 + 2);
  } finally {
    await transport.close();
    await server.close();
  }
});

const FUZZ_RUNS = Number(process.env.AMIPROOF_FUZZ_RUNS ?? 300);

/** Answers every request with the next scripted chunks, then silence. */
class Scripted implements MbusTransport {
  constructor(private readonly chunks: Uint8Array[]) {}
  async send(_bytes: Uint8Array): Promise<void> {}
  async receive(timeoutMs: number): Promise<Uint8Array | null> {
    if (timeoutMs === 0) return null; // nothing "already buffered" before a request
    return this.chunks.shift() ?? null;
  }
}

test("fuzz: garbage from the bus only ever raises MbusError and always ends", async () => {
  const { default: fc } = await import("fast-check");
  await fc.assert(
    fc.asyncProperty(fc.array(fc.uint8Array({ maxLength: 80 }), { maxLength: 12 }), async (chunks) => {
      const master = new MbusMaster(new Scripted(chunks), { retries: 1, collisionGuardMs: 1 });
      for (const run of [
        () => master.requestUserData(1),
        () => master.select(SECONDARY_WILDCARD),
        () => master.sendNke(1),
      ]) {
        try {
          await run();
        } catch (error) {
          assert.ok(isMbusError(error), String(error));
        }
      }
    }),
    { numRuns: FUZZ_RUNS },
  );
});
