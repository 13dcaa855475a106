import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import { connectAsync } from "mqtt";
import { startDcuDaemon, statusTopic } from "../../src/concentrator/index.ts";
import type { TestHeadEnd } from "./harness.ts";
import { MqttHeadEnd, mosquittoReachable, startAedes, until } from "./mqtt-helpers.ts";

const dirs: string[] = [];
after(() => {
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});

function dataDir(): string {
  const dir = mkdtempSync(join(tmpdir(), "amiproof-dcu-it-"));
  dirs.push(dir);
  return dir;
}

interface Packs {
  commit: { commit_id_released: number; seq_gap: { count: number } };
  uplink: { link_flap_cnt: number; retry_histogram: unknown[]; batches_acked: number };
}

/** Every released commit_id reached the head-end once; per meter the readings are contiguous. */
function checkDelivered(headEnd: TestHeadEnd, packs: Packs, meters: number): void {
  assert.deepEqual(headEnd.problems, []);
  assert.deepEqual(headEnd.chainProblems(), []);
  const commitIds = [...headEnd.readings.values()].map((r) => r.commitId).sort((a, b) => a - b);
  assert.equal(new Set(commitIds).size, commitIds.length, "a commit_id stored twice");
  const released = packs.commit.commit_id_released;
  assert.ok(released > 0);
  for (let id = 1; id <= released; id++)
    assert.equal(commitIds[id - 1], id, `commit_id ${id} released but not stored`);
  const byMeter = new Map<string, number[]>();
  for (const r of headEnd.readings.values())
    byMeter.set(r.meterId, [...(byMeter.get(r.meterId) ?? []), r.seq]);
  assert.equal(byMeter.size, meters);
  for (const [meterId, seqs] of byMeter) {
    seqs.sort((a, b) => a - b);
    assert.equal(seqs.length, seqs.at(-1)! - seqs[0]! + 1, `${meterId}: gap`);
  }
  assert.equal(packs.commit.seq_gap.count, 0);
}

const DAEMON = {
  simMeters: 12,
  pollIntervalMs: 100,
  readingIntervalMs: 100,
  batchAgeMaxMs: 200,
  batchRecordsMax: 64,
};

test("aedes in-process: daemon → broker → verifying head-end; broker down and back; clean restart", async () => {
  let broker = await startAedes();
  const port = Number(new URL(broker.url).port);
  const dir = dataDir();
  const dcuId = `IT-AEDES-${process.pid}`;
  let daemon = await startDcuDaemon({ dcuId, hesUrl: broker.url, dataDir: dir, ...DAEMON });
  const consumer = await MqttHeadEnd.connect(broker.url, dcuId, daemon.concentrator.publicKey);
  const headEnd = consumer.headEnd;
  await until(() => headEnd.readings.size >= 150, "first readings");
  // Broker crash: every connection drops; the concentrator keeps polling and committing.
  await broker.close();
  const storedAtOutage = headEnd.readings.size;
  await until(
    () => (daemon.concentrator.packs() as unknown as Packs).uplink.link_flap_cnt >= 1,
    "link down seen",
  );
  await new Promise((resolve) => setTimeout(resolve, 1_000));
  broker = await startAedes(port);
  await until(() => headEnd.readings.size >= storedAtOutage + 300, "delivery after the broker came back");
  // Clean restart of the concentrator: state, outbox and journal carry over.
  await daemon.stop();
  daemon = await startDcuDaemon({ dcuId, hesUrl: broker.url, dataDir: dir, ...DAEMON });
  const before = headEnd.readings.size;
  await until(() => headEnd.readings.size >= before + 150, "delivery after restart");
  await daemon.stop();
  const packs = daemon.concentrator.packs() as unknown as Packs;
  checkDelivered(headEnd, packs, DAEMON.simMeters);
  await consumer.close();
  await broker.close();
});

test("Mosquitto at 127.0.0.1:1883: the same contract against an external broker", async () => {
  if (process.env.AMIPROOF_NO_MOSQUITTO === "1") return; // explicit opt-out only
  assert.ok(
    await mosquittoReachable(),
    "Mosquitto is not reachable at 127.0.0.1:1883; start it or set AMIPROOF_NO_MOSQUITTO=1 to run without it",
  );
  const url = "mqtt://127.0.0.1:1883";
  const dcuId = `IT-MOSQ-${process.pid}-${Date.now()}`;
  const daemon = await startDcuDaemon({ dcuId, hesUrl: url, dataDir: dataDir(), ...DAEMON });
  const consumer = await MqttHeadEnd.connect(url, dcuId, daemon.concentrator.publicKey);
  await until(() => consumer.headEnd.readings.size >= 400, "readings through Mosquitto");
  await daemon.stop();
  const packs = daemon.concentrator.packs() as unknown as Packs;
  checkDelivered(consumer.headEnd, packs, DAEMON.simMeters);
  assert.ok(packs.uplink.batches_acked > 0);
  await consumer.clearRetained(statusTopic(dcuId));
  await consumer.close();
  // The daemon's session is persistent (clean: false): end it so a shared broker does not keep it.
  const sweep = await connectAsync(url, {
    clientId: `amiproof-dcu-${dcuId}`,
    clean: true,
    reconnectPeriod: 0,
  });
  await sweep.endAsync();
});
