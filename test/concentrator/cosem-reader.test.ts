// The pure half of the DLMS reader (COSEM rows → readings and sealed events, error mapping) and the
// core's handling of meters that join late (their cursors kept across restarts).
import assert from "node:assert/strict";
import { test } from "node:test";
import {
  type CaptureObject,
  COSEM_OBIS,
  decodeCaptureObjects,
  eventLogLayout,
  eventRecordsFromLog,
  ifaceErrorOf,
  profileLayout,
  readingProblem,
  readingsFromProfile,
  seqRangeSelection,
} from "../../src/concentrator/index.ts";
import { type Data, DlmsError, dateTimeFromMs, encodeData, parseObis } from "../../src/dlms/index.ts";
import { committedProblems, World } from "./harness.ts";

const def = (classId: number, obis: string): Data => ({
  type: "structure",
  value: [
    { type: "long-unsigned", value: classId },
    { type: "octet-string", value: Uint8Array.from(parseObis(obis)) },
    { type: "integer", value: 2 },
    { type: "long-unsigned", value: 0 },
  ],
});
const u32 = (value: number): Data => ({ type: "double-long-unsigned", value });
const clock = (ms: number): Data => ({
  type: "octet-string",
  value: encodeData({ type: "date-time", value: dateTimeFromMs(ms) }).subarray(1),
});
const T = Date.UTC(2026, 5, 1, 12, 0, 0);

// Columns in an order other than the virtual meter's: the reader goes by the capture objects, not positions.
const PROFILE_COLUMNS: Data = {
  type: "array",
  value: [
    def(3, "1.0.2.8.0.255"),
    def(1, COSEM_OBIS.profileSeq),
    def(8, COSEM_OBIS.clock),
    def(3, "1.0.1.8.0.255"),
  ],
};

test("profile rows become readings by their capture objects, with each register's scaler and unit", () => {
  const layout = profileLayout(decodeCaptureObjects(PROFILE_COLUMNS, "M"), "M");
  const scalers = new Map([
    ["1.0.1.8.0.255", { scaler: 0, unit: 30 }],
    ["1.0.2.8.0.255", { scaler: 1, unit: 30 }],
  ]);
  const buffer: Data = {
    type: "array",
    value: [
      { type: "structure", value: [u32(5), u32(41), clock(T), u32(1000)] },
      { type: "structure", value: [u32(6), u32(42), clock(T + 60_000), u32(1010)] },
    ],
  };
  const readings = readingsFromProfile(buffer, layout, scalers, "M");
  assert.deepEqual(readings, [
    {
      seq: 41,
      timestampMs: T,
      values: [
        { obis: [1, 0, 2, 8, 0, 255], value: 5, scaler: 1, unit: 30 },
        { obis: [1, 0, 1, 8, 0, 255], value: 1000, scaler: 0, unit: 30 },
      ],
    },
    {
      seq: 42,
      timestampMs: T + 60_000,
      values: [
        { obis: [1, 0, 2, 8, 0, 255], value: 6, scaler: 1, unit: 30 },
        { obis: [1, 0, 1, 8, 0, 255], value: 1010, scaler: 0, unit: 30 },
      ],
    },
  ]);
  assert.equal(readingProblem(readings[0]!), null);
  // A row with an unusable value or clock is kept as a reading the pipeline rejects (counted, REJECTED).
  const bad = readingsFromProfile(
    {
      type: "array",
      value: [
        { type: "structure", value: [{ type: "null-data" }, u32(43), clock(T), u32(1)] },
        {
          type: "structure",
          value: [u32(1), u32(44), { type: "octet-string", value: new Uint8Array(3) }, u32(1)],
        },
      ],
    },
    layout,
    scalers,
    "M",
  );
  assert.deepEqual(
    bad.map((r) => r.seq),
    [43, 44],
  );
  assert.ok(bad.every((r) => readingProblem(r) !== null));
  // A register without its scaler_unit cannot be given a unit: rejected, never guessed.
  const noScaler = readingsFromProfile(
    buffer,
    layout,
    new Map([["1.0.1.8.0.255", { scaler: 0, unit: 30 }]]),
    "M",
  );
  assert.ok(noScaler.every((r) => readingProblem(r) !== null));
});

test("a buffer or capture list that does not match is IFACE_PROTOCOL; a profile without seq or clock cannot be used", () => {
  const layout = profileLayout(decodeCaptureObjects(PROFILE_COLUMNS, "M"), "M");
  assert.throws(
    () =>
      readingsFromProfile(
        { type: "array", value: [{ type: "structure", value: [u32(1)] }] },
        layout,
        new Map(),
        "M",
      ),
    { code: "IFACE_PROTOCOL" },
  );
  assert.throws(() => readingsFromProfile(u32(1), layout, new Map(), "M"), { code: "IFACE_PROTOCOL" });
  assert.throws(() => decodeCaptureObjects({ type: "array", value: [u32(1)] }, "M"), {
    code: "IFACE_PROTOCOL",
  });
  assert.throws(
    () =>
      profileLayout(
        decodeCaptureObjects(
          { type: "array", value: [def(8, COSEM_OBIS.clock), def(3, "1.0.1.8.0.255")] },
          "M",
        ),
        "M",
      ),
    { code: "IFACE_PROTOCOL", message: /no clock or no seq/ },
  );
  assert.throws(
    () =>
      eventLogLayout(
        decodeCaptureObjects(
          { type: "array", value: [def(8, COSEM_OBIS.clock), def(1, COSEM_OBIS.eventSeq)] },
          "M",
        ),
        "M",
      ),
    { code: "IFACE_PROTOCOL" },
  );
});

test("event-log rows give the sealed records untouched; the range selection names the seq column", () => {
  const columns = decodeCaptureObjects(
    {
      type: "array",
      value: [def(8, COSEM_OBIS.clock), def(1, COSEM_OBIS.eventSeq), def(1, COSEM_OBIS.eventRecord)],
    },
    "M",
  );
  const layout = eventLogLayout(columns, "M");
  const record = Uint8Array.of(1, 2, 3, 4);
  assert.deepEqual(
    eventRecordsFromLog(
      {
        type: "array",
        value: [{ type: "structure", value: [clock(T), u32(7), { type: "octet-string", value: record }] }],
      },
      layout,
      "M",
    ),
    [record],
  );
  assert.throws(
    () =>
      eventRecordsFromLog(
        { type: "array", value: [{ type: "structure", value: [clock(T), u32(7), u32(1)] }] },
        layout,
        "M",
      ),
    { code: "IFACE_PROTOCOL" },
  );
  const seqColumn = columns[layout.seqIndex] as CaptureObject;
  const selection = seqRangeSelection(seqColumn, 7, 22);
  assert.equal(selection.selector, 1);
  const [restricting, from, to, selected] = (selection.parameters as { value: Data[] }).value;
  assert.deepEqual(restricting, def(1, COSEM_OBIS.eventSeq));
  assert.deepEqual([from, to, selected], [u32(7), u32(22), { type: "array", value: [] }]);
});

test("DLMS and socket failures map to the interface error buckets", () => {
  const cases: [unknown, string][] = [
    [new DlmsError("TIMEOUT", "no answer"), "IFACE_TIMEOUT"],
    [new DlmsError("LINK_DOWN", "closed"), "IFACE_TIMEOUT"],
    [new DlmsError("BAD_FCS", "fcs"), "IFACE_FRAME_CRC"],
    [new DlmsError("DECRYPT_FAILED", "tag"), "IFACE_FRAME_CRC"],
    [new DlmsError("ASSOCIATION_REFUSED", "no"), "IFACE_PROTOCOL"],
    [Object.assign(new Error("connect ECONNREFUSED"), { code: "ECONNREFUSED" }), "IFACE_UNREACHABLE"],
    [Object.assign(new Error("reset"), { code: "ECONNRESET" }), "IFACE_TIMEOUT"],
    [new Error("something else"), "IFACE_PROTOCOL"],
  ];
  for (const [error, code] of cases) {
    const mapped = ifaceErrorOf(error, "MTR-1");
    assert.equal(mapped.code, code, String(error));
    assert.equal(mapped.where, "MTR-1");
  }
});

test("a meter missing from the configuration after a restart keeps its cursor and resumes exactly when added back (no skip, no repeat)", async () => {
  const world = new World({ seed: "late-meter", meters: 2, readingIntervalMs: 10_000 });
  const [a, b] = world.meterIds as [string, string];
  let dcu = await world.open();
  dcu.onLinkUp();
  await world.run(60_000);
  // Restart with meter b not configured (its address did not answer yet).
  world.options.config = { meters: [{ meterId: a, port: world.fleet.portOf(a) }] };
  dcu = await world.crashAndRestart();
  dcu.onLinkUp();
  await world.run(60_000);
  assert.deepEqual(dcu.meterIds(), [a]);
  dcu.addMeter({ meterId: b, port: world.fleet.portOf(b) });
  assert.throws(() => dcu.addMeter({ meterId: b, port: "x" }), { code: "BAD_CONFIG" });
  await world.run(60_000);
  dcu.flush();
  await world.run(20_000);
  assert.deepEqual(committedProblems(world), []);
  const seqs = world.headEnd.seqsOf(b);
  assert.ok(seqs.length >= 12);
  seqs.forEach((seq, i) => {
    assert.equal(seq, seqs[0]! + i, `meter b seq ${seqs[0]! + i} skipped or repeated`);
  });
  assert.ok(seqs.at(-1)! >= world.fleet.newestSeq(b) - 1, "meter b caught up");
  const packs = dcu.packs() as { commit: { seq_gap: { count: number } } };
  assert.equal(packs.commit.seq_gap.count, 0);
});

test("meter_clock_skew_cnt measures the meter's clock when the reader gives it, not the age of the newest profile entry", async () => {
  const skewOf = async (withClock: boolean) => {
    const world = new World({ seed: `skew-${withClock}`, meters: 1, readingIntervalMs: 10_000 });
    const fleet = world.fleet;
    const original = fleet.readRegisters.bind(fleet);
    // A meter with a 15-minute profile: its newest entry is 10 minutes old when read; its clock is right.
    fleet.readRegisters = async (meterId) => {
      const reading = await original(meterId);
      const aged = { ...reading, timestampMs: world.clock.now - 10 * 60_000 };
      return withClock ? { ...aged, meterClockMs: world.clock.now } : aged;
    };
    const dcu = await world.open();
    await world.run(30_000);
    return dcu.packs();
  };
  const find = (packs: Record<string, unknown>): number => {
    for (const pack of Object.values(packs)) {
      const v = (pack as Record<string, unknown>).meter_clock_skew_cnt;
      if (typeof v === "number") return v;
    }
    throw new Error("no meter_clock_skew_cnt in the packs");
  };
  assert.equal(find(await skewOf(true)), 0);
  assert.ok(find(await skewOf(false)) >= 1);
});
