import assert from "node:assert/strict";
import { test } from "node:test";
import {
  type FirmwareDlmsClient,
  FirmwareJobs,
  type FirmwareSession,
  MemoryImageCache,
} from "../../src/concentrator/index.ts";
import { connectDlms, DlmsError, listenDlms } from "../../src/dlms/index.ts";
import {
  encodeFirmwareJob,
  type FirmwareJobMessage,
  type JobReport,
  MemorySecureElement,
  toHex,
} from "../../src/evidence/index.ts";
import { Meter, meterObjectModel } from "../../src/meter/index.ts";
import { GOLDEN_APP, GOLDEN_COMMS, HW, image, pki } from "../meter/firmware-harness.ts";

// The concentrator's firmware jobs against one DLMS meter over TCP: an interrupted transfer resumes from
// the meter's transferred-blocks bitmap, an unreachable (sleeping) meter is tried again after the retry
// delay and reported TIMEOUT after the last attempt, a forced cancel abandons a transfer without a report,
// and images that do not match their checksum never enter the cache.

const T0 = Date.UTC(2026, 5, 1);
const PASSWORD = new TextEncoder().encode("12345678");

async function oneMeter() {
  const clock = { now: T0 };
  const meter = Meter.open(
    { id: "MTR-R", secureElement: new MemorySecureElement("MTR-R", Uint8Array.of(4, 4)), factoryTimeMs: T0 },
    T0,
  );
  const firmware = meter.attachFirmware({ caCertificateDer: pki.ca.certificateDer }, HW, () => clock.now);
  firmware.provision(GOLDEN_APP, GOLDEN_COMMS);
  firmware.boot();
  const server = await listenDlms(0, meterObjectModel({ meter, firmware, trueNowMs: () => clock.now }), {
    lowLevelPassword: PASSWORD,
  });
  return { clock, firmware, server };
}

function job(update: ReturnType<typeof image>, campaignId = "C1", startAtMs = T0): FirmwareJobMessage {
  return {
    campaignId,
    dcuId: "DCU-1",
    cancel: "none",
    images: [
      { checksum: toHex(update.checksum), component: "app", version: update.version, bytes: update.bytes },
    ],
    commands: [
      { meterId: "MTR-R", action: "update", targetChecksum: toHex(update.checksum), startAtMs, auth: null },
    ],
  };
}

/** A link that breaks after `blocks` image blocks (the session times out mid-transfer). */
function breaking(client: FirmwareDlmsClient, blocks: number): FirmwareDlmsClient {
  let sent = 0;
  return {
    get maxPdu() {
      return client.maxPdu;
    },
    get: (...args) => client.get(...args),
    action: async (classId, obis, method, parameters) => {
      if (classId === 18 && method === 2 && ++sent > blocks) throw new DlmsError("TIMEOUT", "link lost");
      return client.action(classId, obis, method, parameters);
    },
  };
}

test("an interrupted transfer resumes from the transferred-blocks bitmap; the image is confirmed", async () => {
  const { clock, firmware, server } = await oneMeter();
  try {
    const update = image("app", 1_001_000, { size: 6000 });
    const reports: JobReport[] = [];
    let sessions = 0;
    const jobs = new FirmwareJobs({
      dcuId: "DCU-1",
      nowMs: () => clock.now,
      connect: async (): Promise<FirmwareSession> => {
        const c = await connectDlms("127.0.0.1", server.port, 1);
        await c.client.associate({ password: PASSWORD });
        sessions++;
        return { client: sessions === 1 ? breaking(c.client, 5) : c.client, close: () => c.close() };
      },
      publish: (m) => reports.push(...m.reports),
    });
    jobs.acceptBytes(encodeFirmwareJob(job(update)));
    jobs.tick();
    await jobs.idle();
    assert.equal(sessions, 2, "the broken session was followed by another");
    assert.equal(jobs.counters.transfers_resumed, 1);
    const last = reports.at(-1)!;
    assert.equal(last.state, "done");
    assert.equal(last.activeChecksum, toHex(update.checksum));
    const blocks = last.blocksTotal;
    assert.equal(jobs.counters.blocks_sent, blocks, "every block sent once: the first 5 were not resent");
    assert.deepEqual(firmware.runningChecksum("app"), update.checksum);
    // The same command again (a resend by the head-end): reported again, not run again.
    jobs.accept(job(update));
    jobs.tick();
    await jobs.idle();
    assert.equal(sessions, 2);
    assert.equal(jobs.counters.duplicates_ignored, 1);
    assert.equal(reports.at(-1)!.state, "done");
  } finally {
    await server.close();
  }
});

test("a sleeping meter is tried again after the retry delay, then reported TIMEOUT", async () => {
  const clock = { now: T0 };
  const reports: JobReport[] = [];
  let attempts = 0;
  const jobs = new FirmwareJobs({
    dcuId: "DCU-1",
    nowMs: () => clock.now,
    retryDelayMs: 30 * 60_000,
    attemptsMax: 3,
    connect: async () => {
      attempts++;
      throw new Error("no answer: the meter sleeps");
    },
    publish: (m) => reports.push(...m.reports),
  });
  jobs.accept(job(image("app", 1_001_000)));
  jobs.tick();
  await jobs.idle();
  assert.equal(attempts, 1);
  assert.equal(jobs.nextDueMs(), T0 + 30 * 60_000);
  clock.now += 29 * 60_000;
  jobs.tick();
  await jobs.idle();
  assert.equal(attempts, 1, "not before it is due");
  for (let i = 0; i < 2; i++) {
    clock.now += 30 * 60_000;
    jobs.tick();
    await jobs.idle();
  }
  assert.equal(attempts, 3);
  assert.deepEqual(
    reports.map((r) => [r.state, r.reason]),
    [["failed", "TIMEOUT"]],
  );
});

test("bounded sessions; a forced cancel drops the queue and abandons sessions in flight without reports", async () => {
  const clock = { now: T0 };
  const reports: JobReport[] = [];
  let release: () => void = () => {};
  const released = new Promise<void>((resolve) => {
    release = resolve;
  });
  const stalled: FirmwareDlmsClient = {
    maxPdu: 1024,
    get: async () => {
      await released;
      return { type: "array", value: [] };
    },
    action: async () => ({ result: 0, data: null }),
  };
  const jobs = new FirmwareJobs({
    dcuId: "DCU-1",
    nowMs: () => clock.now,
    concurrency: 2,
    connect: async () => ({ client: stalled, close: () => {} }),
    publish: (m) => reports.push(...m.reports),
  });
  const update = image("app", 1_001_000);
  const message = job(update);
  jobs.accept({
    ...message,
    commands: ["A", "B", "C", "D"].map((m) => ({ ...message.commands[0]!, meterId: `MTR-${m}` })),
  });
  jobs.tick();
  assert.equal(jobs.active, 2, "two sessions at most");
  assert.equal(jobs.queued, 2);
  jobs.accept({ ...message, images: [], commands: [], cancel: "forced" });
  assert.equal(jobs.queued, 0);
  release();
  await jobs.idle();
  assert.equal(jobs.peakSessions, 2);
  assert.deepEqual(reports, [], "an abandoned job reports nothing");
  assert.equal(jobs.counters.cancelled, 2);
});

test("the image cache keeps only images that match their checksum, least recently used out first", () => {
  const jobs = new FirmwareJobs({
    dcuId: "DCU-1",
    nowMs: () => T0,
    connect: async () => {
      throw new Error("unused");
    },
    publish: () => {},
  });
  const update = image("app", 1_001_000);
  const tampered = update.bytes.slice();
  tampered[100] = tampered[100]! ^ 1;
  jobs.accept({ ...job(update), commands: [], images: [{ ...job(update).images[0]!, bytes: tampered }] });
  assert.equal(jobs.counters.images_refused, 1);
  assert.equal(jobs.counters.images_cached, 0);
  const cache = new MemoryImageCache();
  for (let i = 0; i < 20; i++) cache.put(`k${i}`, Uint8Array.of(i));
  assert.equal(cache.get("k0"), undefined);
  assert.deepEqual(cache.get("k19"), Uint8Array.of(19));
});
