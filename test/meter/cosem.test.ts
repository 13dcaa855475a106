// The meter's COSEM model carries what a concentrator needs to prove readings and events end to end:
// the load profile's seq column, the event logs' sealed-record column, selective access by seq range.
import assert from "node:assert/strict";
import { test } from "node:test";
import {
  type Data,
  DlmsClient,
  DlmsServerSession,
  dateTimeFromMs,
  encodeData,
  formatObis,
  type Obis,
  parseObis,
} from "../../src/dlms/index.ts";
import { decodeEventRecord, MemorySecureElement, verifyEventSignature } from "../../src/evidence/index.ts";
import {
  EVENT_RECORD_OBIS,
  EVENT_SEQ_OBIS,
  LOAD_PROFILE_SEQ_OBIS,
  Meter,
  meterObjectModel,
} from "../../src/meter/index.ts";

const T0 = Date.UTC(2026, 3, 1);
const PASSWORD = new TextEncoder().encode("12345678");

function meterWithHistory(): { meter: Meter; client: DlmsClient } {
  const meter = Meter.open(
    {
      id: "MTR-COSEM-1",
      secureElement: new MemorySecureElement("MTR-COSEM-1", Uint8Array.of(7)),
      factoryTimeMs: T0,
    },
    T0,
  );
  let t = T0;
  for (let i = 0; i < 3 * 3600; i++) {
    t += 1000;
    meter.step(t, { vRms: 231, i1Rms: 5, phiDeg: 10, frequencyHz: 50, harmonics: [] });
  }
  for (let i = 0; i < 5; i++) {
    meter.powerFail(t);
    t += 5000;
    meter.powerRestore(t);
  }
  meter.coverEdge(t, true);
  for (let i = 0; i < 5; i++) {
    t += 1000;
    meter.step(t, { vRms: 231, i1Rms: 5, phiDeg: 10, frequencyHz: 50, harmonics: [] });
  }
  const session = new DlmsServerSession(
    meterObjectModel({ meter, trueNowMs: () => t }),
    { lowLevelPassword: PASSWORD },
    1,
  );
  const client = new DlmsClient(async (request) => session.handle(request) ?? new Uint8Array(0));
  return { meter, client };
}

const column = (classId: number, obis: string, attributeId = 2): Data => ({
  type: "structure",
  value: [
    { type: "long-unsigned", value: classId },
    { type: "octet-string", value: Uint8Array.from(parseObis(obis)) },
    { type: "integer", value: attributeId },
    { type: "long-unsigned", value: 0 },
  ],
});
const u32 = (value: number): Data => ({ type: "double-long-unsigned", value });
const rows = (data: Data): Data[][] => {
  assert.equal(data.type, "array");
  return (data as { value: Data[] }).value.map((row) => (row as { value: Data[] }).value);
};
const captureList = (data: Data): string[] =>
  (data as { value: Data[] }).value.map((d) => {
    const [classId, obis, attribute] = (d as { value: Data[] }).value as unknown as [
      { value: number },
      { value: Uint8Array },
      { value: number },
    ];
    return `${classId.value}/${formatObis(Array.from(obis.value) as unknown as Obis)}:${attribute.value}`;
  });

test("capture objects (attribute 3) list the columns: profile clock, seq, energies; event logs clock, code, seq, sealed record", async () => {
  const { client } = meterWithHistory();
  await client.associate({ password: PASSWORD });
  assert.deepEqual(captureList(await client.get(7, parseObis("1.0.99.1.0.255"), 3)), [
    "8/0.0.1.0.0.255:2",
    `1/${LOAD_PROFILE_SEQ_OBIS}:2`,
    "3/1.0.1.8.0.255:2",
    "3/1.0.2.8.0.255:2",
  ]);
  for (const log of ["0.0.99.98.0.255", "0.0.99.98.1.255"]) {
    assert.deepEqual(captureList(await client.get(7, parseObis(log), 3)), [
      "8/0.0.1.0.0.255:2",
      "1/0.0.96.11.0.255:2",
      `1/${EVENT_SEQ_OBIS}:2`,
      `1/${EVENT_RECORD_OBIS}:2`,
    ]);
  }
});

test("load profile by range on the seq column returns exactly those entries with the meter's seq and values; the seq object reads the newest", async () => {
  const { meter, client } = meterWithHistory();
  await client.associate({ password: PASSWORD });
  const profile = meter.loadProfile();
  assert.ok(profile.length >= 10);
  const newest = await client.get(1, parseObis(LOAD_PROFILE_SEQ_OBIS), 2);
  assert.deepEqual(newest, u32(profile.at(-1)!.seq));
  const from = profile[3]!.seq;
  const buffer = await client.get(7, parseObis("1.0.99.1.0.255"), 2, {
    selector: 1,
    parameters: {
      type: "structure",
      value: [column(1, LOAD_PROFILE_SEQ_OBIS), u32(from), u32(from + 4), { type: "array", value: [] }],
    },
  });
  const got = rows(buffer);
  assert.equal(got.length, 5);
  got.forEach((row, i) => {
    const entry = profile[3 + i]!;
    assert.deepEqual(row[1], u32(entry.seq));
    assert.deepEqual(row[2], u32(entry.importWh));
    assert.deepEqual(row[3], u32(entry.exportWh));
  });
  // Past the newest: empty, not an error (the concentrator asks ahead).
  const ahead = await client.get(7, parseObis("1.0.99.1.0.255"), 2, {
    selector: 1,
    parameters: {
      type: "structure",
      value: [
        column(1, LOAD_PROFILE_SEQ_OBIS),
        u32(profile.at(-1)!.seq + 1),
        u32(0xffff_ffff),
        { type: "array", value: [] },
      ],
    },
  });
  assert.deepEqual(rows(ahead), []);
  // selected_values: only the seq and import columns.
  const narrow = await client.get(7, parseObis("1.0.99.1.0.255"), 2, {
    selector: 1,
    parameters: {
      type: "structure",
      value: [
        column(1, LOAD_PROFILE_SEQ_OBIS),
        u32(from),
        u32(from),
        { type: "array", value: [column(1, LOAD_PROFILE_SEQ_OBIS), column(3, "1.0.1.8.0.255")] },
      ],
    },
  });
  assert.deepEqual(rows(narrow), [[u32(from), u32(profile[3]!.importWh)]]);
});

test("range by clock and entry selector 2 keep working; a seq range with the wrong types or an unknown restricting column is refused", async () => {
  const { meter, client } = meterWithHistory();
  await client.associate({ password: PASSWORD });
  const octets = (ms: number): Data => ({
    type: "octet-string",
    value: encodeData({ type: "date-time", value: dateTimeFromMs(ms) }).subarray(1),
  });
  const byClock = await client.get(7, parseObis("1.0.99.1.0.255"), 2, {
    selector: 1,
    parameters: {
      type: "structure",
      value: [
        column(8, "0.0.1.0.0.255"),
        octets(T0 + 3600_000),
        octets(T0 + 2 * 3600_000),
        { type: "array", value: [] },
      ],
    },
  });
  assert.equal(rows(byClock).length, 5, "15-minute entries from 01:00 to 02:00 inclusive");
  const byEntry = await client.get(7, parseObis("1.0.99.1.0.255"), 2, {
    selector: 2,
    parameters: {
      type: "structure",
      value: [u32(2), u32(3), { type: "long-unsigned", value: 2 }, { type: "long-unsigned", value: 3 }],
    },
  });
  const profile = meter.loadProfile();
  assert.deepEqual(rows(byEntry), [
    [u32(profile[1]!.seq), u32(profile[1]!.importWh)],
    [u32(profile[2]!.seq), u32(profile[2]!.importWh)],
  ]);
  await assert.rejects(
    client.get(7, parseObis("1.0.99.1.0.255"), 2, {
      selector: 1,
      parameters: {
        type: "structure",
        value: [
          column(1, LOAD_PROFILE_SEQ_OBIS),
          octets(T0),
          octets(T0 + 3600_000),
          { type: "array", value: [] },
        ],
      },
    }),
    { code: "DATA_ACCESS_ERROR" },
  );
  await assert.rejects(
    client.get(7, parseObis("1.0.99.1.0.255"), 2, {
      selector: 1,
      parameters: {
        type: "structure",
        value: [column(3, "1.0.32.7.0.255"), u32(1), u32(2), { type: "array", value: [] }],
      },
    }),
    { code: "DATA_ACCESS_ERROR" },
  );
});

test("event logs by seq range carry the meter's sealed records, which verify with its event_seal key; the fraud log holds only tamper events", async () => {
  const { meter, client } = meterWithHistory();
  await client.associate({ password: PASSWORD });
  const log = meter.eventLog();
  assert.ok(log.length >= 6);
  const from = log[1]!.seq;
  const buffer = await client.get(7, parseObis("0.0.99.98.0.255"), 2, {
    selector: 1,
    parameters: {
      type: "structure",
      value: [column(1, EVENT_SEQ_OBIS), u32(from), u32(from + 3), { type: "array", value: [] }],
    },
  });
  const got = rows(buffer);
  assert.equal(got.length, 4);
  got.forEach((row, i) => {
    const sealed = row[3] as { type: string; value: Uint8Array };
    assert.equal(sealed.type, "octet-string");
    const record = decodeEventRecord(sealed.value);
    assert.equal(record.seq, from + i);
    assert.deepEqual(row[2], u32(record.seq));
    assert.ok(verifyEventSignature(record, meter.eventPublicKey));
  });
  const fraud = rows(await client.get(7, parseObis("0.0.99.98.1.255"), 2));
  const types = fraud.map((row) => decodeEventRecord((row[3] as { value: Uint8Array }).value).type);
  assert.ok(types.includes("COVER_OPEN"));
  assert.ok(!types.includes("POWER_FAIL" as never) && types.every((t) => !t.startsWith("POWER")));
  assert.deepEqual(await client.get(1, parseObis(EVENT_SEQ_OBIS), 2), u32(log.at(-1)!.seq));
  const newestRecord = await client.get(1, parseObis(EVENT_RECORD_OBIS), 2);
  assert.deepEqual(newestRecord, { type: "octet-string", value: log.at(-1)!.bytes });
});
