import assert from "node:assert/strict";
import { test } from "node:test";
import fc from "fast-check";
import {
  Concentrator,
  isConcentratorError,
  MBUS_QUARANTINE_AFTER_FAILURES,
  type MbusMeterConfig,
  MbusMeterSource,
  MemoryDcuStore,
  mbusRecordsToValues,
} from "../../src/concentrator/index.ts";
import {
  Journal,
  MemoryJournalStorage,
  MemorySecureElement,
  type ReadingValue,
  SeededRandom,
} from "../../src/evidence/index.ts";
import {
  decodeApplicationLayer,
  decodeFrame,
  encodeManufacturer,
  encodeVariableData,
  type MbusFrame,
  MbusSimBus,
  MbusSimSlave,
  type MbusTransport,
  type RecordSpec,
  serveSimBus,
  TcpBridgeTransport,
} from "../../src/mbus/index.ts";
import { FakeClock, MemoryTransport, TestHeadEnd } from "./harness.ts";

// Records as real meters send them (EN 13757-3 Table 10 primary VIFs; 0xFD table for volts and amperes).
const R = {
  energyWh: (value: number, tariff = 0): RecordSpec => ({
    dataField: "int32",
    tariff,
    vib: { vif: 0x03 },
    value,
  }),
  energyKwh: (value: number, storageNumber = 0): RecordSpec => ({
    dataField: "bcd8",
    storageNumber,
    vib: { vif: 0x06 },
    value,
  }),
  volumeLitre: (value: number): RecordSpec => ({ dataField: "bcd8", vib: { vif: 0x13 }, value }),
  powerW: (value: number): RecordSpec => ({ dataField: "int16", vib: { vif: 0x2b }, value }),
  flowLitrePerHour: (value: number): RecordSpec => ({ dataField: "int16", vib: { vif: 0x3b }, value }),
  flowM3PerMin: (value: number): RecordSpec => ({ dataField: "int16", vib: { vif: 0x46 }, value }), // 10^-1 m³/min
  flowTempCenti: (value: number): RecordSpec => ({ dataField: "int16", vib: { vif: 0x59 }, value }),
  returnTempCenti: (value: number): RecordSpec => ({ dataField: "int16", vib: { vif: 0x5d }, value }),
  volts: (value: number): RecordSpec => ({ dataField: "int16", vib: { vif: 0x7d, vife: [0x49] }, value }),
  milliamps: (value: number): RecordSpec => ({ dataField: "int32", vib: { vif: 0x7d, vife: [0x59] }, value }),
  onTimeHours: (value: number): RecordSpec => ({ dataField: "int32", vib: { vif: 0x22 }, value }),
  fabrication: (value: number): RecordSpec => ({ dataField: "bcd8", vib: { vif: 0x78 }, value }),
};

const MEDIUM = { electricity: 0x02, gas: 0x03, heat: 0x04, water: 0x07, coldWater: 0x16 } as const;

function records(medium: number, specs: RecordSpec[]) {
  const { ci, data } = encodeVariableData({
    header: {
      kind: "long",
      identification: "00000001",
      manufacturer: "AMI",
      version: 1,
      medium,
      accessNumber: 1,
    },
    records: specs,
  });
  return decodeApplicationLayer(ci, data).records;
}

function v(obis: ReadingValue["obis"], value: number, scaler: number, unit: number): ReadingValue {
  return { obis, value, scaler, unit };
}

test("mapping: electricity registers to 1.0.x.y OBIS codes with the VIF exponent as scaler", () => {
  const mapped = mbusRecordsToValues(
    records(MEDIUM.electricity, [
      R.energyWh(123_456),
      R.energyWh(100_000, 1),
      R.energyWh(23_456, 2),
      R.powerW(1_500),
      R.volts(231),
      R.milliamps(6_512),
      R.fabrication(12_345_678),
    ]),
    MEDIUM.electricity,
  );
  assert.deepEqual(mapped.values, [
    v([1, 0, 1, 8, 0, 255], 123_456, 0, 30),
    v([1, 0, 1, 8, 1, 255], 100_000, 0, 30),
    v([1, 0, 1, 8, 2, 255], 23_456, 0, 30),
    v([1, 0, 1, 7, 0, 255], 1_500, 0, 27),
    v([1, 0, 12, 7, 0, 255], 231, 0, 35),
    v([1, 0, 11, 7, 0, 255], 6_512, -3, 33),
  ]);
  assert.equal(mapped.unmapped, 1, "the fabrication number is not a measured value");
});

test("mapping: heat meter to value group A = 6; stored values and other quantities are counted, not guessed", () => {
  const mapped = mbusRecordsToValues(
    records(MEDIUM.heat, [
      R.energyKwh(4_711),
      R.energyKwh(4_000, 1), // storage 1: a historic value (e.g. due date), not the current register
      R.volumeLitre(98_765),
      R.powerW(12_000),
      R.flowLitrePerHour(850),
      R.flowTempCenti(6_512),
      R.returnTempCenti(4_033),
      R.onTimeHours(17_000),
    ]),
    MEDIUM.heat,
  );
  assert.deepEqual(mapped.values, [
    v([6, 0, 1, 0, 0, 255], 4_711, 3, 30),
    v([6, 0, 2, 0, 0, 255], 98_765, -3, 13),
    v([6, 0, 8, 0, 0, 255], 12_000, 0, 27),
    v([6, 0, 9, 0, 0, 255], 850, -3, 15),
    v([6, 0, 10, 0, 0, 255], 6_512, -2, 9),
    v([6, 0, 11, 0, 0, 255], 4_033, -2, 9),
  ]);
  assert.equal(mapped.unmapped, 2);
});

test("mapping: water (cold 8, warm 9), gas 7; m³/min becomes m³/h exactly; unknown media map nothing", () => {
  assert.deepEqual(
    mbusRecordsToValues(records(MEDIUM.coldWater, [R.volumeLitre(42)]), MEDIUM.coldWater).values,
    [v([8, 0, 1, 0, 0, 255], 42, -3, 13)],
  );
  assert.deepEqual(
    mbusRecordsToValues(records(0x06, [R.volumeLitre(7), R.flowTempCenti(5_500)]), 0x06).values,
    [v([9, 0, 1, 0, 0, 255], 7, -3, 13), v([9, 0, 3, 0, 0, 255], 5_500, -2, 9)],
  );
  assert.deepEqual(
    mbusRecordsToValues(records(MEDIUM.gas, [R.volumeLitre(1_234), R.flowM3PerMin(3)]), MEDIUM.gas),
    {
      values: [v([7, 0, 3, 0, 0, 255], 1_234, -3, 13)],
      unmapped: 1,
    },
  );
  assert.deepEqual(mbusRecordsToValues(records(MEDIUM.heat, [R.flowM3PerMin(3)]), MEDIUM.heat).values, [
    v([6, 0, 9, 0, 0, 255], 180, -1, 15), // 0.3 m³/min = 18 m³/h
  ]);
  assert.deepEqual(mbusRecordsToValues(records(0x1a, [R.volumeLitre(1)]), 0x1a), { values: [], unmapped: 1 });
  // A duplicate OBIS code keeps the first value.
  assert.equal(
    mbusRecordsToValues(records(MEDIUM.water, [R.volumeLitre(1), R.volumeLitre(2)]), MEDIUM.water).unmapped,
    1,
  );
});

/** A slave whose long answers arrive with a bit flipped before the stop byte: checksum failure every time. */
class CorruptingSlave extends MbusSimSlave {
  override handle(frame: MbusFrame): Uint8Array | null {
    const answer = super.handle(frame);
    if (answer === null || answer.length <= 6) return answer;
    const copy = answer.slice();
    copy[copy.length - 3]! ^= 0x10;
    return copy;
  }
}

function slave(primaryAddress: number, identification: string, medium: number, specs: RecordSpec[]) {
  return new MbusSimSlave({
    primaryAddress,
    identification,
    manufacturer: "AMI",
    version: 1,
    medium,
    telegrams: [specs],
  });
}

function fleet() {
  return {
    elec: slave(1, "10000001", MEDIUM.electricity, [R.energyWh(123_456), R.powerW(900)]),
    water: slave(2, "10000002", MEDIUM.coldWater, [R.volumeLitre(98_765)]),
    // a heat meter that needs two telegrams for its registers
    heat: new MbusSimSlave({
      primaryAddress: 3,
      identification: "10000003",
      manufacturer: "AMI",
      version: 1,
      medium: MEDIUM.heat,
      telegrams: [[R.energyKwh(4_711)], [R.volumeLitre(555)]],
    }),
    bad: new CorruptingSlave({
      primaryAddress: 4,
      identification: "10000004",
      manufacturer: "AMI",
      version: 1,
      medium: MEDIUM.water,
      telegrams: [[R.volumeLitre(1)]],
    }),
    gas: slave(5, "12345678", MEDIUM.gas, [R.volumeLitre(31_337)]),
  };
}

const EXPECTED: Record<string, ReadingValue[]> = {
  elec: [v([1, 0, 1, 8, 0, 255], 123_456, 0, 30), v([1, 0, 1, 7, 0, 255], 900, 0, 27)],
  water: [v([8, 0, 1, 0, 0, 255], 98_765, -3, 13)],
  heat: [v([6, 0, 1, 0, 0, 255], 4_711, 3, 30), v([6, 0, 2, 0, 0, 255], 555, -3, 13)],
  gas: [v([7, 0, 3, 0, 0, 255], 31_337, -3, 13)],
  other: [v([8, 0, 1, 0, 0, 255], 7, -3, 13)],
};

function meters(): MbusMeterConfig[] {
  return [
    { meterId: "elec", busId: "a", address: { kind: "primary", primary: 1, identification: "10000001" } },
    { meterId: "water", busId: "a", address: { kind: "primary", primary: 2 } },
    { meterId: "heat", busId: "a", address: { kind: "primary", primary: 3 } },
    { meterId: "bad", busId: "a", address: { kind: "primary", primary: 4 } },
    {
      meterId: "gas",
      busId: "a",
      address: {
        kind: "secondary",
        secondary: {
          identification: "12345678",
          manufacturerCode: encodeManufacturer("AMI"),
          version: 1,
          medium: 3,
        },
      },
    },
    { meterId: "dead", busId: "a", address: { kind: "primary", primary: 9 } },
    { meterId: "other", busId: "b", address: { kind: "primary", primary: 1 } },
  ];
}

test("over the TCP bridge: a corrupting and a dead meter fill their own buckets while the others keep reading", async () => {
  const f = fleet();
  const busA = new MbusSimBus([f.elec, f.water, f.heat, f.bad, f.gas]);
  const busB = new MbusSimBus([slave(1, "20000001", MEDIUM.water, [R.volumeLitre(7)])]);
  const server = await serveSimBus(busA);
  const transport = await TcpBridgeTransport.connect("127.0.0.1", server.port);
  const clock = new FakeClock(1_767_225_600_000);
  const source = new MbusMeterSource(
    [
      { busId: "a", transport },
      { busId: "b", transport: busB },
    ],
    meters(),
    clock,
    { responseTimeoutMs: 100, retries: 1 },
  );
  try {
    const rounds = 5;
    for (let round = 1; round <= rounds; round++) {
      clock.advance(60_000);
      // All meters at once, as the concentrator's bounded-concurrency polls would: the bus serialises them.
      const ids = meters().map((m) => m.meterId);
      const results = await Promise.allSettled(ids.map((id) => source.readRegisters(id)));
      for (const [i, result] of results.entries()) {
        const id = ids[i] as string;
        if (id === "bad" || id === "dead") {
          assert.equal(result.status, "rejected", id);
          const reason = (result as PromiseRejectedResult).reason;
          assert.ok(
            isConcentratorError(reason, id === "bad" ? "IFACE_FRAME_CRC" : "IFACE_TIMEOUT"),
            String(reason),
          );
          assert.equal(reason.where, id);
          continue;
        }
        assert.equal(
          result.status,
          "fulfilled",
          `${id}: ${String((result as PromiseRejectedResult).reason)}`,
        );
        const reading = (result as PromiseFulfilledResult<Awaited<ReturnType<typeof source.readRegisters>>>)
          .value;
        assert.equal(reading.seq, round, `${id} seq counts successful readouts`);
        assert.equal(reading.timestampMs, clock.now);
        assert.deepEqual(reading.values, EXPECTED[id], `${id} carries its own values, nobody else's`);
      }
    }
    const evidence = source.evidence();
    const bad = evidence.iface_err_by_meter.bad!;
    assert.equal(bad.errors.frame_crc, rounds);
    assert.equal(bad.reads_failed, rounds);
    assert.equal(bad.quarantined, true);
    // Two attempts per read until quarantine, then one: a bad meter's cost on the bus is bounded.
    const crcFrames = 2 * MBUS_QUARANTINE_AFTER_FAILURES + (rounds - MBUS_QUARANTINE_AFTER_FAILURES);
    assert.equal(bad.frames.frame_crc_fail, crcFrames);
    const dead = evidence.iface_err_by_meter.dead!;
    assert.equal(dead.errors.timeout, rounds);
    assert.equal(dead.frames.by_code.TIMEOUT, crcFrames);
    for (const id of ["elec", "water", "heat", "gas", "other"]) {
      const m = evidence.iface_err_by_meter[id]!;
      assert.deepEqual(
        Object.values(m.errors).every((n) => n === 0),
        true,
        `${id} bucket stays clean`,
      );
      assert.equal(m.frames.frame_crc_fail, 0);
      assert.equal(m.reads_ok, rounds);
      assert.equal(m.seq, rounds);
    }
    assert.equal(
      evidence.iface_err_by_meter.heat!.frames.frames_ok,
      rounds * 3,
      "SND_NKE ack + two telegrams",
    );
    assert.notEqual(evidence.iface_err_by_meter.elec!.last_access_number, null);
    assert.equal(evidence.frame_crc_fail, crcFrames);
    assert.deepEqual(evidence.port_err_cnt, { a: 2 * crcFrames, b: 0 });
    assert.deepEqual(
      source
        .meterConfigs()
        .map((m) => m.port)
        .slice(-2),
      ["mbus:a", "mbus:b"],
    );
  } finally {
    await transport.close();
    await server.close();
  }
});

/**
 * A bus where a slow slave's answer arrives late: the first REQ_UD2 to `slowAddress` goes unanswered
 * (the master times out and retries), and that withheld answer is delivered instead of the answer to the
 * next REQ_UD2 for another address — as a late frame on a shared line would be.
 */
class LateAnswerBus implements MbusTransport {
  private withheld: Uint8Array | null = null;
  private held = false;
  private readonly pending: Uint8Array[] = [];
  constructor(
    private readonly bus: MbusSimBus,
    private readonly slowAddress: number,
  ) {}
  async send(bytes: Uint8Array): Promise<void> {
    const frame = decodeFrame(bytes);
    const isReq = frame.kind === "short" && (frame.control & 0x4f) === 0x4b;
    if (isReq && frame.address === this.slowAddress && !this.held) {
      this.held = true;
      this.withheld = this.bus.exchange(bytes);
      return;
    }
    if (isReq && frame.address !== this.slowAddress && this.withheld !== null) {
      this.bus.exchange(bytes); // the addressed slave answers too, but the late frame occupies the line
      const late = this.withheld;
      this.withheld = null;
      this.pending.push(late);
      return;
    }
    await this.bus.send(bytes);
  }
  async receive(timeoutMs: number): Promise<Uint8Array | null> {
    return this.pending.shift() ?? this.bus.receive(timeoutMs);
  }
}

test("no cross-meter corruption: another slave's late answer is refused as wrong_meter, never committed", async () => {
  const f = fleet();
  const clock = new FakeClock(0);
  const bus = new LateAnswerBus(new MbusSimBus([f.elec, f.water]), 1);
  const source = new MbusMeterSource([{ busId: "a", transport: bus }], meters().slice(0, 2), clock, {
    retries: 1,
  });
  const elec = await source.readRegisters("elec"); // first attempt silent, the retry answers
  assert.deepEqual(elec.values, EXPECTED.elec);
  await assert.rejects(source.readRegisters("water"), (error: unknown) => {
    assert.ok(isConcentratorError(error, "IFACE_PROTOCOL"));
    assert.match(error.message, /wrong meter: answer from primary address 1, expected 2/);
    return true;
  });
  assert.equal(source.meterEvidence("water").errors.wrong_meter, 1);
  const water = await source.readRegisters("water");
  assert.deepEqual(water.values, EXPECTED.water);
  assert.equal(water.seq, 1, "the refused read consumed no seq");
});

test("a swapped meter at a configured primary address is refused by its identification", async () => {
  const impostor = slave(1, "99999999", MEDIUM.electricity, [R.energyWh(1)]);
  const source = new MbusMeterSource(
    [{ busId: "a", transport: new MbusSimBus([impostor]) }],
    [meters()[0]!],
    new FakeClock(0),
  );
  await assert.rejects(source.readRegisters("elec"), /answer from meter 99999999, expected 10000001/);
  assert.equal(source.meterEvidence("elec").errors.wrong_meter, 1);
});

test("resume continues seq after the concentrator's durable cursors; profile and events are empty", async () => {
  const f = fleet();
  const source = new MbusMeterSource(
    [{ busId: "a", transport: new MbusSimBus([f.water]) }],
    [meters()[1]!],
    new FakeClock(0),
  );
  source.resume({ water: 41, unknown: 7 });
  assert.equal((await source.readRegisters("water")).seq, 42);
  source.resume({ water: 3 });
  assert.equal((await source.readRegisters("water")).seq, 43, "resume never moves seq backwards");
  assert.deepEqual(await source.readProfile("water", 1, 10), []);
  assert.deepEqual(await source.readEvents("water", 1, 10), []);
  await assert.rejects(source.readRegisters("nobody"), { code: "IFACE_UNREACHABLE" });
});

test("config is checked: unknown bus, duplicate meter, wildcard secondary, address 0", () => {
  const bus = [{ busId: "a", transport: new MbusSimBus([]) }];
  const clock = new FakeClock(0);
  const bad = (m: MbusMeterConfig) => () => new MbusMeterSource(bus, [m], clock);
  assert.throws(bad({ meterId: "x", busId: "z", address: { kind: "primary", primary: 1 } }), {
    code: "BAD_CONFIG",
  });
  assert.throws(bad({ meterId: "x", busId: "a", address: { kind: "primary", primary: 0 } }), {
    code: "BAD_CONFIG",
  });
  assert.throws(
    bad({
      meterId: "x",
      busId: "a",
      address: {
        kind: "secondary",
        secondary: { identification: "1234FFFF", manufacturerCode: 0xffff, version: 0xff, medium: 0xff },
      },
    }),
    { code: "BAD_CONFIG" },
  );
  const one: MbusMeterConfig = { meterId: "x", busId: "a", address: { kind: "primary", primary: 1 } };
  assert.throws(() => new MbusMeterSource(bus, [one, one], clock), { code: "BAD_CONFIG" });
});

test("in the concentrator: the bad meter's frame_crc lands in its iface_err_by_meter bucket, the others commit gap-free", async () => {
  const f = fleet();
  const clock = new FakeClock(1_767_225_600_000);
  const source = new MbusMeterSource(
    [{ busId: "a", transport: new MbusSimBus([f.elec, f.water, f.heat, f.bad, f.gas]) }],
    meters().slice(0, 5),
    clock,
  );
  const secureElement = new MemorySecureElement("DCU-1", new Uint8Array([1, 2, 3]));
  const random = new SeededRandom("mbus-source");
  const transport = new MemoryTransport(random.fork("link"), clock);
  const journal = await Journal.open({ storage: new MemoryJournalStorage(), clockMs: () => clock.now });
  let dcu: Concentrator | null = null;
  const headEnd = new TestHeadEnd("DCU-1", secureElement.publicKey("batch_sign"), (topic, payload) =>
    dcu?.onMessage(topic, payload),
  );
  transport.subscribe((topic, payload) => headEnd.onMessage(topic, payload));
  dcu = await Concentrator.open(
    { dcuId: "DCU-1", meters: source.meterConfigs(), pollIntervalMs: 60_000 },
    {
      clock,
      random: random.fork("dcu"),
      reader: source,
      journal,
      store: new MemoryDcuStore(),
      secureElement,
      transport,
    },
  );
  dcu.onLinkUp();
  for (let s = 0; s < 10 * 60; s++) {
    clock.advance(1_000);
    transport.pump(clock.now);
    dcu.tick();
    await dcu.idle(true);
  }
  dcu.flush();
  for (let s = 0; s < 30; s++) {
    clock.advance(1_000);
    dcu.tick();
    await dcu.idle(true);
  }
  const packs = dcu.packs() as {
    interface: {
      iface_err_by_meter: Record<string, Record<string, number>>;
      port_err_cnt: Record<string, number>;
      frame_crc_fail: number;
    };
    commit: { seq_gap: { count: number } };
  };
  const polls = source.meterEvidence("bad").reads_failed;
  assert.ok(polls >= 9, `bad meter polled ${polls} times`);
  assert.equal(packs.interface.iface_err_by_meter.bad?.frame_crc, polls);
  assert.equal(packs.interface.frame_crc_fail, polls);
  assert.equal(packs.interface.port_err_cnt["mbus:a"], polls);
  for (const id of ["elec", "water", "heat", "gas"]) {
    assert.equal(packs.interface.iface_err_by_meter[id]?.frame_crc ?? 0, 0);
    const seqs = headEnd.seqsOf(id);
    assert.ok(seqs.length >= 9, `${id}: ${seqs.length} readings stored`);
    assert.deepEqual(
      seqs,
      seqs.map((_, i) => i + 1),
      `${id}: contiguous from 1`,
    );
  }
  assert.equal(packs.commit.seq_gap.count, 0);
  assert.deepEqual(headEnd.problems, []);
  assert.deepEqual(headEnd.seqsOf("bad"), []);
});

/** A bus whose line hangs: every receive waits until the test releases it (then reports silence). */
class HungBus implements MbusTransport {
  private released = false;
  private readonly waiters: (() => void)[] = [];
  receives = 0;
  async send(_bytes: Uint8Array): Promise<void> {}
  receive(timeoutMs: number): Promise<Uint8Array | null> {
    if (timeoutMs === 0 || this.released) return Promise.resolve(null);
    this.receives++;
    return new Promise((resolve) => this.waiters.push(() => resolve(null)));
  }
  release(): void {
    this.released = true;
    for (const wake of this.waiters.splice(0)) wake();
  }
}

test("no global stall: a hung bus holds only its own meters; its queue is bounded; time budgets are per meter", async () => {
  const hung = new HungBus();
  const f = fleet();
  const source = new MbusMeterSource(
    [
      { busId: "hung", transport: hung },
      { busId: "ok", transport: new MbusSimBus([f.elec]) },
    ],
    [
      { meterId: "h1", busId: "hung", address: { kind: "primary", primary: 1 }, responseTimeoutMs: 2_000 },
      ...Array.from({ length: 70 }, (_, i) => ({
        meterId: `h${i + 2}`,
        busId: "hung",
        address: { kind: "primary" as const, primary: 2 + (i % 200) },
      })),
      { meterId: "elec", busId: "ok", address: { kind: "primary", primary: 1 } },
    ],
    new FakeClock(0),
    { responseTimeoutMs: 100, retries: 1 },
  );
  let h1Settled = false;
  const h1 = source.readRegisters("h1").finally(() => {
    h1Settled = true;
  });
  const queued = Array.from({ length: 70 }, (_, i) => source.readRegisters(`h${i + 2}`));
  const elec = await source.readRegisters("elec");
  assert.deepEqual(elec.values, EXPECTED.elec);
  assert.equal(h1Settled, false, "the other bus answered while this one hangs");
  assert.equal(hung.receives, 1, "reads on the hung bus wait their turn: one request on the line");
  hung.release();
  const results = await Promise.allSettled([h1, ...queued]);
  const codes = results.map((r) => (r.status === "rejected" ? (r.reason as { code: string }).code : "ok"));
  assert.ok(codes.every((c) => c === "IFACE_TIMEOUT"));
  const evidence = source.evidence();
  assert.equal(
    evidence.bus_queue_refused.hung,
    71 - 64,
    "beyond MBUS_BUS_QUEUE_MAX a read is refused at once",
  );
  assert.equal(evidence.bus_queue_refused.ok, 0);
  // Per-meter budgets: 9 requests (SND_NKE + up to 8 telegrams) × attempts × the meter's own timeout.
  assert.equal(source.worstCaseReadMs("elec"), 9 * 2 * 100);
  assert.equal(
    source.worstCaseReadMs("h1"),
    9 * 2 * 2_000,
    "its own 2 s timeout; one failure is not yet quarantine",
  );
  const h1Evidence = source.meterEvidence("h1");
  assert.equal(h1Evidence.errors.timeout, 1);
  assert.equal(h1Evidence.frames.by_code.TIMEOUT, 2, "SND_NKE timed out on both attempts");
});

test("quarantine ends with the first good answer", async () => {
  const f = fleet();
  const bus = new MbusSimBus([f.water]);
  const source = new MbusMeterSource(
    [{ busId: "a", transport: bus }],
    [{ meterId: "water", busId: "a", address: { kind: "primary", primary: 2 } }],
    new FakeClock(0),
  );
  bus.slaves.splice(0);
  for (let i = 0; i < MBUS_QUARANTINE_AFTER_FAILURES; i++) {
    await assert.rejects(source.readRegisters("water"), { code: "IFACE_TIMEOUT" });
  }
  assert.equal(source.meterEvidence("water").quarantined, true);
  bus.slaves.push(f.water);
  assert.equal((await source.readRegisters("water")).seq, 1);
  assert.equal(source.meterEvidence("water").quarantined, false);
  assert.equal(source.meterEvidence("water").consecutive_failures, 0);
});

const RUNS = Number(process.env.AMIPROOF_FUZZ_RUNS ?? 300);

/** Line noise on the answers: a flipped bit, a cut-off tail, a lost answer or a doubled one. */
class NoisyBus implements MbusTransport {
  private state: number;
  constructor(
    private readonly inner: MbusSimBus,
    seed: number,
    private readonly noisePercent: number,
  ) {
    this.state = seed >>> 0;
  }
  private next(n: number): number {
    this.state = (Math.imul(this.state, 1_664_525) + 1_013_904_223) >>> 0;
    return this.state % n;
  }
  send(bytes: Uint8Array): Promise<void> {
    return this.inner.send(bytes);
  }
  async receive(timeoutMs: number): Promise<Uint8Array | null> {
    const chunk = await this.inner.receive(timeoutMs);
    if (chunk === null || this.next(100) >= this.noisePercent) return chunk;
    const copy = chunk.slice();
    switch (this.next(4)) {
      case 0:
        copy[this.next(copy.length)]! ^= 1 << this.next(8);
        return copy;
      case 1:
        return copy.subarray(0, this.next(copy.length));
      case 2:
        return null;
      default: {
        const doubled = new Uint8Array(copy.length * 2);
        doubled.set(copy, 0);
        doubled.set(copy, copy.length);
        return doubled;
      }
    }
  }
}

test("property: under line noise every reading is exactly its own meter's, every failure a typed IFACE error", async () => {
  await fc.assert(
    fc.asyncProperty(
      fc.integer({ min: 0, max: 2 ** 31 }),
      fc.integer({ min: 0, max: 60 }),
      async (seed, noise) => {
        const f = fleet();
        const ids = ["elec", "water", "heat"];
        const source = new MbusMeterSource(
          [{ busId: "a", transport: new NoisyBus(new MbusSimBus([f.elec, f.water, f.heat]), seed, noise) }],
          meters().filter((m) => ids.includes(m.meterId)),
          new FakeClock(0),
          { retries: 1 },
        );
        for (let round = 0; round < 4; round++) {
          const results = await Promise.allSettled(ids.map((id) => source.readRegisters(id)));
          results.forEach((result, i) => {
            const id = ids[i] as string;
            if (result.status === "fulfilled") assert.deepEqual(result.value.values, EXPECTED[id]);
            else
              assert.ok(
                isConcentratorError(result.reason) && result.reason.code.startsWith("IFACE_"),
                String(result.reason),
              );
          });
        }
        for (const id of ids) {
          const m = source.meterEvidence(id);
          assert.equal(m.seq, m.reads_ok);
          assert.equal(m.reads_ok + m.reads_failed, 4);
        }
      },
    ),
    { numRuns: Math.max(20, Math.floor(RUNS / 3)) },
  );
});
