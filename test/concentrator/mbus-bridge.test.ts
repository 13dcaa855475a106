// `--meter mbus://HOST:PORT/ADDRESS`: M-Bus slaves behind a TCP serial bridge ↔ the concentrator daemon ↔
// aedes ↔ a verifying consumer; seq continues across a restart; a bridge that drops is counted and
// reconnected.
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { type DcuDaemon, parseMbusUrl, startDcuDaemon } from "../../src/concentrator/index.ts";
import { FileSecureElement } from "../../src/evidence/index.ts";
import { MbusSimBus, MbusSimSlave, serveSimBus } from "../../src/mbus/index.ts";
import { MqttHeadEnd, startAedes, until } from "./mqtt-helpers.ts";

test("mbus:// URLs: primary 1..250 or an 8-digit identification; anything else is BAD_CONFIG", () => {
  assert.deepEqual(parseMbusUrl("mbus://10.0.0.9:10001/5").address, { kind: "primary", primary: 5 });
  assert.equal(parseMbusUrl("mbus://10.0.0.9:10001/12345678").meterId, "MBUS-12345678");
  assert.equal(parseMbusUrl("mbus://10.0.0.9:10001/12345678").address.kind, "secondary");
  for (const bad of [
    "mbus://h:1/0",
    "mbus://h:1/251",
    "mbus://h:1/1234",
    "mbus://h:1",
    "dlms://h:1/5",
    "mbus://h:70000/5",
  ]) {
    assert.throws(() => parseMbusUrl(bad), { code: "BAD_CONFIG" }, bad);
  }
});

function seqsOf(consumer: MqttHeadEnd, meterId: string): number[] {
  return [...consumer.headEnd.readings.values()]
    .filter((r) => r.meterId === meterId)
    .map((r) => r.seq)
    .sort((a, b) => a - b);
}

test("M-Bus meters behind a TCP serial bridge are read by primary and secondary address, verified once each, seq continued across a restart; a dropped bridge is counted and reconnected", async () => {
  const broker = await startAedes();
  const dir = mkdtempSync(join(tmpdir(), "amiproof-mbus-bridge-"));
  const dcuId = "DCU-MBUS-1";
  const bus = new MbusSimBus([
    new MbusSimSlave({
      primaryAddress: 5,
      identification: "11111111",
      manufacturer: "AMI",
      version: 1,
      medium: 0x02,
      telegrams: [[{ dataField: "int32", vib: { vif: 0x03 }, value: 123_456 }]],
    }),
    new MbusSimSlave({
      primaryAddress: 7,
      identification: "22222222",
      manufacturer: "AMI",
      version: 1,
      medium: 0x07,
      telegrams: [[{ dataField: "bcd8", vib: { vif: 0x13 }, value: 98_765 }]],
    }),
  ]);
  let bridge = await serveSimBus(bus);
  const port = bridge.port;
  const urls = [`mbus://127.0.0.1:${port}/5`, `mbus://127.0.0.1:${port}/22222222`];
  const [electricity, water] = [`MBUS-127.0.0.1:${port}-5`, "MBUS-22222222"];
  const consumer = await MqttHeadEnd.connect(
    broker.url,
    dcuId,
    FileSecureElement.open(join(dir, "se"), dcuId).publicKey("batch_sign"),
  );
  const start = () =>
    startDcuDaemon({
      dcuId,
      hesUrl: broker.url,
      dataDir: dir,
      meterUrls: urls,
      pollIntervalMs: 200,
      batchAgeMaxMs: 200,
    });
  let daemon: DcuDaemon | null = null;
  try {
    daemon = await start();
    await until(
      () => seqsOf(consumer, electricity).length >= 3 && seqsOf(consumer, water).length >= 3,
      "readings",
      10_000,
    );
    await daemon.stop();
    daemon = await start();
    const before = seqsOf(consumer, water).length;
    await until(() => seqsOf(consumer, water).length >= before + 3, "readings after the restart", 10_000);

    // The bridge drops: reads fail as unreachable, counted per meter; it comes back on the same port.
    await bridge.close();
    const errorsOf = (meterId: string) =>
      Object.values(
        (
          daemon!.concentrator.packs() as {
            interface: { iface_err_by_meter: Record<string, Record<string, number>> };
          }
        ).interface.iface_err_by_meter[meterId] ?? {},
      ).reduce((a, b) => a + b, 0);
    await until(() => errorsOf(electricity) >= 2 && errorsOf(water) >= 2, "bridge errors counted", 10_000);
    const mbus = (
      daemon.concentrator.packs() as {
        interface: {
          readers: { mbus: { iface_err_by_meter: Record<string, { errors: { unreachable: number } }> } };
        };
      }
    ).interface.readers.mbus;
    assert.ok(
      mbus.iface_err_by_meter[water]!.errors.unreachable >= 1,
      "the M-Bus source's own evidence is carried",
    );
    bridge = await serveSimBus(bus, { port });
    const after = seqsOf(consumer, electricity).length;
    await until(
      () => seqsOf(consumer, electricity).length >= after + 3,
      "readings after the bridge returned",
      15_000,
    );
    await daemon.stop();
    daemon = null;

    assert.deepEqual(consumer.headEnd.problems, []);
    assert.deepEqual(consumer.headEnd.chainProblems(), []);
    for (const meterId of [electricity, water]) {
      const seqs = seqsOf(consumer, meterId);
      seqs.forEach((seq, i) => {
        assert.equal(seq, i + 1, `${meterId}: seq ${i + 1} skipped or repeated`);
      });
    }
    const values = [...consumer.headEnd.batches.values()]
      .flatMap((b) => b.records)
      .find((r) => r.meterId === water)!.values;
    assert.deepEqual(values, [{ obis: [8, 0, 1, 0, 0, 255], value: 98_765, scaler: -3, unit: 13 }]);
  } finally {
    await daemon?.stop();
    await consumer.clearRetained(`ami/${dcuId}/status`).catch(() => {});
    await consumer.close();
    await bridge.close();
    await broker.close();
    rmSync(dir, { recursive: true, force: true });
  }
});
