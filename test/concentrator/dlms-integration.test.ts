// Acceptance (issue 6): real virtual meters served over DLMS/TCP ↔ the concentrator daemon ↔ a real MQTT
// broker ↔ a consumer that verifies every batch (src/evidence verifyBatch + the chain), stores every
// reading once by (meter, seq) and checks every sealed event against the meter's event_seal key.
import assert from "node:assert/strict";
import { type ChildProcess, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { alertsTopic, type DcuDaemon, startDcuDaemon } from "../../src/concentrator/index.ts";
import { type CosemObjectModel, type ListeningServer, listenDlms } from "../../src/dlms/index.ts";
import {
  decodeEventRecord,
  FileSecureElement,
  MemorySecureElement,
  verifyEventSignature,
} from "../../src/evidence/index.ts";
import { Meter, meterObjectModel } from "../../src/meter/index.ts";
import {
  DEFAULT_AK_HEX,
  DEFAULT_EK_HEX,
  DEFAULT_LLS_PASSWORD,
  meterSystemTitle,
} from "../../src/meter/runtime/fleet.ts";
import { type Broker, MqttHeadEnd, mosquittoReachable, startAedes, until } from "./mqtt-helpers.ts";

const BIN = new URL("../../bin/amiproof.js", import.meta.url).pathname;
const PROFILE_PERIOD_MS = 1000;
const SAMPLE = { vRms: 231, i1Rms: 5, phiDeg: 10, frequencyHz: 50, harmonics: [] };

interface ServedMeter {
  readonly meter: Meter;
  server: ListeningServer;
  /** Set: the next profile read closes the meter's port from inside the request (gone mid-poll). */
  dieOnNextProfileRead: boolean;
}

/** A meter stepped in real time, its COSEM model served over DLMS/TCP with `amiproof meter`'s credentials. */
async function serveMeter(id: string): Promise<ServedMeter> {
  const now = Date.now();
  const meter = Meter.open(
    {
      id,
      secureElement: new MemorySecureElement(id, new Uint8Array(randomBytes(8))),
      factoryTimeMs: now,
      profilePeriodMs: PROFILE_PERIOD_MS,
    },
    now,
  );
  const model = meterObjectModel({ meter, trueNowMs: () => Date.now() });
  const served: ServedMeter = {
    meter,
    server: null as unknown as ListeningServer,
    dieOnNextProfileRead: false,
  };
  const wrapped: CosemObjectModel = {
    ...model,
    get(level, classId, obis, attributeId, selection) {
      if (
        served.dieOnNextProfileRead &&
        classId === 7 &&
        obis[2] === 99 &&
        obis[3] === 1 &&
        attributeId === 2
      ) {
        served.dieOnNextProfileRead = false;
        void served.server.close(); // the answer below is never delivered
      }
      return model.get(level, classId, obis, attributeId, selection);
    },
  };
  served.server = await listenDlms(0, wrapped, {
    lowLevelPassword: new TextEncoder().encode(DEFAULT_LLS_PASSWORD),
    hls: {
      suite: 0,
      systemTitle: meterSystemTitle(id),
      encryptionKey: Uint8Array.from(Buffer.from(DEFAULT_EK_HEX, "hex")),
      authenticationKey: Uint8Array.from(Buffer.from(DEFAULT_AK_HEX, "hex")),
    },
    challenge: (n) => new Uint8Array(randomBytes(n)),
  });
  return served;
}

function stepAll(meters: readonly ServedMeter[]): NodeJS.Timeout {
  return setInterval(() => {
    const now = Date.now();
    for (const m of meters) m.meter.step(now, SAMPLE);
  }, 200);
}

async function startDcu(dcuId: string, dataDir: string, hesUrl: string, meterUrls: string[], auth?: "lls") {
  return startDcuDaemon({
    dcuId,
    hesUrl,
    dataDir,
    meterUrls,
    ...(auth === undefined ? {} : { meterAuth: auth }),
    pollIntervalMs: 400,
    batchAgeMaxMs: 300,
    statusIntervalMs: 1000,
    meterReadTimeoutMs: 1000,
  });
}

function batchPublicKey(dataDir: string, dcuId: string): Uint8Array {
  return FileSecureElement.open(join(dataDir, "se"), dcuId).publicKey("batch_sign");
}

/** seqs stored at the consumer for one meter, ascending. */
function storedSeqs(consumer: MqttHeadEnd, meterId: string): number[] {
  return [...consumer.headEnd.readings.values()]
    .filter((r) => r.meterId === meterId)
    .map((r) => r.seq)
    .sort((a, b) => a - b);
}

/** The values carried for (meter, seq) in the verified batches. */
function storedValues(
  consumer: MqttHeadEnd,
  meterId: string,
): Map<number, { importWh: number; timestampMs: number }> {
  const out = new Map<number, { importWh: number; timestampMs: number }>();
  for (const batch of consumer.headEnd.batches.values()) {
    for (const r of batch.records) {
      if (r.meterId !== meterId) continue;
      const energy = r.values.find((v) => v.obis.join(".") === "1.0.1.8.0.255");
      out.set(r.seq, { importWh: energy?.value ?? Number.NaN, timestampMs: r.timestampMs });
    }
  }
  return out;
}

function assertContiguous(seqs: readonly number[], what: string): void {
  assert.ok(seqs.length > 0, `${what}: no readings`);
  const first = seqs[0]!;
  seqs.forEach((seq, i) => {
    assert.equal(seq, first + i, `${what}: seq ${first + i} missing or repeated`);
  });
}

test("DLMS meters (in-process, HLS-GMAC over TCP) → dcu daemon → aedes → verifying consumer: every reading once with the meter's seq, sealed events verified, a restart resumes, a meter gone mid-poll is counted while the others go on", async () => {
  const broker = await startAedes();
  const dir = mkdtempSync(join(tmpdir(), "amiproof-dlms-int-"));
  const dcuId = "DCU-DLMS-1";
  const meters = await Promise.all(["MTR-DI-1", "MTR-DI-2", "MTR-DI-3"].map(serveMeter));
  const stepping = stepAll(meters);
  const urls = meters.map((m) => `dlms://127.0.0.1:${m.server.port}`);
  const consumer = await MqttHeadEnd.connect(broker.url, dcuId, batchPublicKey(dir, dcuId));
  let daemon: DcuDaemon | null = null;
  try {
    daemon = await startDcu(dcuId, dir, broker.url, urls);
    assert.deepEqual(daemon.concentrator.meterIds().sort(), ["MTR-DI-1", "MTR-DI-2", "MTR-DI-3"]);
    await until(
      () => meters.every((m) => storedSeqs(consumer, m.meter.id).length >= 3),
      "three readings of every meter",
      15_000,
    );

    // A clean restart in the middle: cursors come back from the journal and the state.
    await daemon.stop();
    const cursorsBefore = meters.map((m) => Math.max(...storedSeqs(consumer, m.meter.id)));
    daemon = await startDcu(dcuId, dir, broker.url, urls);
    await until(
      () => meters.every((m, i) => Math.max(...storedSeqs(consumer, m.meter.id)) >= cursorsBefore[i]! + 2),
      "readings after the restart",
      15_000,
    );

    // A tamper on meter 1: the cover opens; its sealed COVER_OPEN goes out on the alert lane.
    meters[0]!.meter.coverEdge(Date.now(), true);
    await until(
      () => consumer.headEnd.alerts.some((a) => a.meterId === "MTR-DI-1" && a.type === "COVER_OPEN"),
      "the COVER_OPEN alert",
      10_000,
    );

    // Meter 3 goes away in the middle of a profile read; the others keep being polled.
    const gone = meters[2]!;
    gone.dieOnNextProfileRead = true;
    await until(() => !gone.dieOnNextProfileRead, "meter 3's next profile read", 10_000);
    const errorsOf = () => {
      const iface = (
        daemon!.concentrator.packs() as {
          interface: { iface_err_by_meter: Record<string, Record<string, number>> };
        }
      ).interface;
      return Object.values(iface.iface_err_by_meter[gone.meter.id] ?? {}).reduce((a, b) => a + b, 0);
    };
    await until(() => errorsOf() >= 2, "meter 3's interface errors", 10_000);
    const othersAt = meters.slice(0, 2).map((m) => storedSeqs(consumer, m.meter.id).length);
    await until(
      () => meters.slice(0, 2).every((m, i) => storedSeqs(consumer, m.meter.id).length >= othersAt[i]! + 2),
      "meters 1 and 2 polled on after meter 3 went away",
      10_000,
    );
    const packs = daemon.concentrator.packs() as {
      interface: {
        iface_err_by_meter: Record<string, Record<string, number>>;
        port_err_cnt: Record<string, number>;
      };
    };
    assert.ok(
      (packs.interface.port_err_cnt[`dlms://127.0.0.1:${gone.server.port}`] ?? 0) >= 2,
      "port_err_cnt by port",
    );
    for (const m of meters.slice(0, 2)) {
      assert.equal(packs.interface.iface_err_by_meter[m.meter.id], undefined, `${m.meter.id} had no errors`);
    }
    const readers = (packs.interface as unknown as { readers: { dlms: { associations_opened: number } } })
      .readers;
    assert.ok(readers.dlms.associations_opened >= 3, "the reader's own evidence is in the interface pack");

    await daemon.stop();
    daemon = null;
    await until(() => consumer.headEnd.readings.size > 0, "settled");

    // Every batch verified (signature, Merkle root, CRCs) and chained; no reading twice.
    assert.deepEqual(consumer.headEnd.problems, []);
    assert.deepEqual(consumer.headEnd.chainProblems(), []);
    for (const m of meters) {
      const seqs = storedSeqs(consumer, m.meter.id);
      // Exactly once with the meter's own seq: contiguous from the first poll on, through the restart.
      assertContiguous(seqs, m.meter.id);
      const values = storedValues(consumer, m.meter.id);
      const profile = new Map(m.meter.loadProfile().map((e) => [e.seq, e]));
      for (const seq of seqs) {
        const entry = profile.get(seq);
        assert.ok(entry !== undefined, `${m.meter.id} seq ${seq} is in the meter's profile`);
        assert.equal(
          values.get(seq)?.importWh,
          entry.importWh,
          `${m.meter.id} seq ${seq}: the meter's value`,
        );
        assert.equal(
          values.get(seq)?.timestampMs,
          entry.timestampMs,
          `${m.meter.id} seq ${seq}: capture time`,
        );
      }
    }
    // Every alert is the meter's own sealed record: signature under its event_seal key, once per seq.
    assert.ok(consumer.headEnd.alertRecords.length > 0);
    for (const bytes of consumer.headEnd.alertRecords) {
      const record = decodeEventRecord(bytes);
      const meter = meters.find((m) => m.meter.id === record.meterId);
      assert.ok(meter !== undefined, `alert from a known meter: ${record.meterId}`);
      assert.ok(
        verifyEventSignature(record, meter.meter.eventPublicKey),
        `${record.meterId} event ${record.seq} verifies`,
      );
    }
    for (const m of meters.slice(0, 2)) {
      const got = new Set(consumer.headEnd.alerts.filter((a) => a.meterId === m.meter.id).map((a) => a.seq));
      const logged = m.meter.eventLog().filter((e) => e.type === "COVER_OPEN" || e.seq <= 2);
      for (const e of logged) assert.ok(got.has(e.seq), `${m.meter.id} event ${e.seq} (${e.type}) arrived`);
    }
  } finally {
    clearInterval(stepping);
    await daemon?.stop();
    await consumer.clearRetained(`ami/${dcuId}/status`).catch(() => {});
    await consumer.close();
    for (const m of meters) await m.server.close();
    await broker.close();
    rmSync(dir, { recursive: true, force: true });
  }
});

function waitForPort(child: ChildProcess): Promise<number> {
  return new Promise((resolve, reject) => {
    let text = "";
    const timer = setTimeout(() => reject(new Error(`amiproof meter printed no port: ${text}`)), 60_000);
    child.stderr!.on("data", (chunk: Buffer) => {
      text += chunk.toString();
      const match = /TCP ports (\d+)/.exec(text);
      if (match !== null) {
        clearTimeout(timer);
        resolve(Number(match[1]));
      }
    });
    child.once("exit", (code) => reject(new Error(`amiproof meter exited ${code}: ${text}`)));
  });
}

test("a spawned `amiproof meter --listen` (LLS) → dcu daemon → Mosquitto when reachable (else aedes): readings verified once each, sealed events verified with the meter's key, a killed meter process is counted", async () => {
  const mosquitto = await mosquittoReachable();
  const broker: Broker = mosquitto
    ? { url: "mqtt://127.0.0.1:1883", close: async () => {} }
    : await startAedes();
  const dir = mkdtempSync(join(tmpdir(), "amiproof-dlms-spawn-"));
  const dcuId = `DCU-SPAWN-${process.pid}`;
  const meterId = `MTR-SP-${process.pid}`;
  const child = spawn(
    process.execPath,
    [
      BIN,
      "meter",
      "--id",
      meterId,
      "--listen",
      "0",
      "--data",
      join(dir, "meters"),
      "--profile-period-ms",
      "1000",
    ],
    { stdio: ["ignore", "ignore", "pipe"] },
  );
  let daemon: DcuDaemon | null = null;
  const consumer = await MqttHeadEnd.connect(broker.url, dcuId, batchPublicKey(join(dir, "dcu"), dcuId));
  try {
    const port = await waitForPort(child);
    daemon = await startDcu(dcuId, join(dir, "dcu"), broker.url, [`dlms://127.0.0.1:${port}`], "lls");
    await until(
      () => storedSeqs(consumer, meterId).length >= 4,
      "four readings of the spawned meter",
      15_000,
    );
    await until(
      () => consumer.headEnd.alerts.some((a) => a.meterId === meterId),
      "its sealed events",
      10_000,
    );
    child.kill("SIGKILL");
    const errors = () =>
      Object.values(
        (
          daemon!.concentrator.packs() as {
            interface: { iface_err_by_meter: Record<string, Record<string, number>> };
          }
        ).interface.iface_err_by_meter[meterId] ?? {},
      ).reduce((a, b) => a + b, 0);
    await until(() => errors() >= 2, "the killed meter counted in iface_err_by_meter", 10_000);
    await daemon.stop();
    daemon = null;

    assert.deepEqual(consumer.headEnd.problems, []);
    assert.deepEqual(consumer.headEnd.chainProblems(), []);
    assertContiguous(storedSeqs(consumer, meterId), meterId);
    const sePath = join(dir, "meters", meterId, "se");
    assert.ok(existsSync(sePath));
    const eventKey = FileSecureElement.open(sePath, meterId).publicKey("event_seal");
    assert.ok(consumer.headEnd.alertRecords.length > 0);
    for (const bytes of consumer.headEnd.alertRecords) {
      const record = decodeEventRecord(bytes);
      assert.equal(record.meterId, meterId);
      assert.ok(verifyEventSignature(record, eventKey), `event ${record.seq} verifies with the meter's key`);
    }
    assert.equal(alertsTopic(dcuId), `ami/${dcuId}/alerts`);
  } finally {
    child.kill("SIGKILL");
    await daemon?.stop();
    await consumer.clearRetained(`ami/${dcuId}/status`).catch(() => {});
    await consumer.close();
    await broker.close();
    rmSync(dir, { recursive: true, force: true });
  }
});
