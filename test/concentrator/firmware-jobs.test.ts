import assert from "node:assert/strict";
import { test } from "node:test";
import { type FirmwareDlmsClient, FirmwareJobs, type FirmwareSession } from "../../src/concentrator/index.ts";
import { connectDlms, type ListeningServer, listenDlms } from "../../src/dlms/index.ts";
import {
  decodeFirmwareJob,
  decodeFirmwareProgress,
  encodeFirmwareJob,
  encodeFirmwareProgress,
  type FirmwareJobMessage,
  MemorySecureElement,
  SeededRandom,
  toHex,
} from "../../src/evidence/index.ts";
import {
  type Actor,
  CampaignManager,
  deriveMeterOtpKey,
  FirmwareRepository,
  type FleetMeter,
  OtpSecurityModule,
} from "../../src/headend/index.ts";
import {
  type FirmwareManager,
  Meter,
  meterObjectModel,
  RollbackCommandHandler,
  withRollbackCommand,
} from "../../src/meter/index.ts";
import { GOLDEN_APP, GOLDEN_COMMS, HW, image, pki } from "../meter/firmware-harness.ts";

// Issue 9 acceptance 1, 2 and 4 in one process over real TCP: the head-end's campaign core, two
// concentrators' firmware jobs, 100 virtual meters serving DLMS/COSEM. Messages between head-end and
// concentrators go through the wire codecs (ami/<dcu>/fw/jobs, ami/<dcu>/fw/progress).

const T0 = Date.UTC(2026, 5, 1);
const PASSWORD = new TextEncoder().encode("12345678");
const MASTER = new Uint8Array(32).fill(7);
const METERS = Number(process.env.AMIPROOF_CAMPAIGN_METERS ?? 100);
const DCUS = 2;
const BAD_CRC_METER = "MTR-007";
const WDT_METER = "MTR-013";
const operator: Actor = { name: "op", role: "operator" };
const admin: Actor = { name: "root", role: "admin" };

interface Rig {
  readonly meter: Meter;
  readonly firmware: FirmwareManager;
  readonly server: ListeningServer;
}

/** The faulty application never kicks its watchdog: every boot into it ends in a watchdog reset. */
function neverKicks(firmware: FirmwareManager): FirmwareManager {
  return new Proxy(firmware, {
    get(target, prop, receiver) {
      if (prop === "confirm") {
        return () => {
          for (let resets = 0; resets < 10; resets++) {
            if (!target.boot("watchdog").app.trial) break;
          }
          return false;
        };
      }
      const value = Reflect.get(target, prop, receiver);
      return typeof value === "function" ? value.bind(target) : value;
    },
  });
}

async function fleet(clock: { now: number }): Promise<Map<string, Rig>> {
  const rigs = new Map<string, Rig>();
  for (let i = 1; i <= METERS; i++) {
    const id = `MTR-${String(i).padStart(3, "0")}`;
    const se = new MemorySecureElement(id, Uint8Array.of(i & 0xff, i >> 8, 9));
    const meter = Meter.open({ id, secureElement: se, factoryTimeMs: T0 }, clock.now);
    for (let s = 0; s < 5; s++)
      meter.step(clock.now + s * 1000, {
        vRms: 230,
        i1Rms: 4 + (i % 5),
        phiDeg: 5,
        frequencyHz: 50,
        harmonics: [],
      });
    const firmware = meter.attachFirmware({ caCertificateDer: pki.ca.certificateDer }, HW, () => clock.now);
    firmware.provision(GOLDEN_APP, GOLDEN_COMMS);
    firmware.boot();
    const served = id === WDT_METER ? neverKicks(firmware) : firmware;
    const handler = new RollbackCommandHandler({
      meterId: id,
      otpKey: deriveMeterOtpKey(MASTER, id),
      firmware,
      secureElement: se,
      nowMs: () => clock.now,
      sealRefusal: (_reason, snapshot) => meter.reportFirmwareIncident(clock.now, "SIG_FAIL", snapshot),
    });
    const model = withRollbackCommand(
      meterObjectModel({ meter, firmware: served, trueNowMs: () => clock.now }),
      handler,
    );
    const server = await listenDlms(0, model, { lowLevelPassword: PASSWORD });
    rigs.set(id, { meter, firmware, server });
  }
  return rigs;
}

/** A link that flips one payload byte of block 1 on its way to one meter (a corrupted transfer). */
function corrupting(client: FirmwareDlmsClient): FirmwareDlmsClient {
  return {
    get maxPdu() {
      return client.maxPdu;
    },
    get: (...args) => client.get(...args),
    action: (classId, obis, method, parameters) => {
      if (
        classId === 18 &&
        method === 2 &&
        parameters?.type === "structure" &&
        parameters.value[0]?.type === "double-long-unsigned" &&
        parameters.value[0].value === 1 &&
        parameters.value[1]?.type === "octet-string"
      ) {
        const bytes = parameters.value[1].value.slice();
        bytes[10] = bytes[10]! ^ 0x5a;
        return client.action(classId, obis, method, {
          type: "structure",
          value: [parameters.value[0], { type: "octet-string", value: bytes }],
        });
      }
      return client.action(classId, obis, method, parameters);
    },
  };
}

test("campaigns end to end over DLMS: update with failures and threshold pause, rollback, idempotent repeat, replayed OTP", async () => {
  const clock = { now: T0 };
  const rigs = await fleet(clock);
  const dcuOf = (meterId: string) => `DCU-${(Number(meterId.slice(4)) % DCUS) + 1}`;
  const jobs = new Map<string, FirmwareJobs>();
  const sent: FirmwareJobMessage[] = [];
  const repository = new FirmwareRepository(pki.ca.certificateDer);
  const manager = new CampaignManager({
    nowMs: () => clock.now,
    rng: new SeededRandom("campaign-e2e"),
    repository,
    otp: new OtpSecurityModule(MASTER),
    send: (message) => {
      const wire = decodeFirmwareJob(encodeFirmwareJob(message));
      sent.push(wire);
      jobs.get(wire.dcuId)!.accept(wire);
    },
  });
  for (let d = 1; d <= DCUS; d++) {
    const dcuId = `DCU-${d}`;
    jobs.set(
      dcuId,
      new FirmwareJobs({
        dcuId,
        nowMs: () => clock.now,
        concurrency: 4,
        connect: async (meterId): Promise<FirmwareSession> => {
          const rig = rigs.get(meterId);
          if (rig === undefined) throw new Error(`no meter ${meterId}`);
          const c = await connectDlms("127.0.0.1", rig.server.port, 1);
          await c.client.associate({ password: PASSWORD });
          return {
            client: meterId === BAD_CRC_METER ? corrupting(c.client) : c.client,
            close: () => c.close(),
          };
        },
        publish: (message) => {
          manager.applyProgress(decodeFirmwareProgress(encodeFirmwareProgress(message)));
        },
      }),
    );
  }
  const fleetView: FleetMeter[] = [...rigs.keys()].map((meterId) => ({
    meterId,
    dcuId: dcuOf(meterId),
    model: "AMI-1PH",
    group: Number(meterId.slice(4)) % 2 === 0 ? "even" : "odd",
    firmwareVersion: "1.0.0",
  }));
  /** Runs virtual time forward in steps; each step starts due jobs and waits for their sessions. */
  const runFor = async (ms: number, stepMs = 60_000) => {
    for (let t = 0; t < ms; t += stepMs) {
      clock.now += stepMs;
      for (const j of jobs.values()) j.tick();
      for (const j of jobs.values()) await j.idle();
    }
  };
  const billingBefore = new Map([...rigs].map(([id, r]) => [id, r.meter.registers]));
  try {
    // ── update campaign ──
    const update = image("app", 1_001_000, { size: 4000 });
    const stored = repository.add(update.bytes, clock.now);
    assert.equal(stored.checksum, toHex(update.checksum), "asset register checksum = SHA-256 of the image");
    const campaign = manager.create(
      {
        name: "app 1.1.0",
        kind: "update",
        imageChecksum: stored.checksum,
        targets: { models: ["AMI-1PH"] },
        errorCount: 2,
        successShare: 0.95,
        windowMs: 60 * 60_000,
        sessionLimitPerDcu: 4,
      },
      fleetView,
      operator,
    );
    assert.throws(() => manager.start(campaign.id, operator), /needs approval/);
    manager.approve(campaign.id, operator);
    manager.start(campaign.id, operator);
    assert.equal(
      sent.filter((m) => m.campaignId === campaign.id).length,
      DCUS,
      "one job message per concentrator",
    );
    let pausedAt: ReturnType<typeof manager.status> | null = null;
    for (let minute = 0; minute < 90 && pausedAt === null; minute++) {
      await runFor(60_000);
      const s = manager.status(campaign.id);
      if (s.state === "paused") pausedAt = s;
    }
    assert.ok(pausedAt !== null, "the error threshold paused the campaign");
    assert.match(pausedAt.pause_reason ?? "", /^ERROR_THRESHOLD/);
    assert.ok(pausedAt.counts.queued > 0, "meters not yet started were held back by the pause");
    const queuedAtPause = pausedAt.counts.queued;
    await runFor(90 * 60_000);
    assert.equal(manager.status(campaign.id).counts.queued, queuedAtPause, "nothing runs while paused");
    manager.resume(campaign.id, operator);
    await runFor(2 * 60 * 60_000);
    const final = manager.status(campaign.id);
    assert.equal(final.state, "completed", JSON.stringify(final));
    assert.equal(final.counts.confirmed, METERS - 2);
    assert.equal(final.counts.failed, 1);
    assert.equal(final.counts.rolled_back, 1);
    const byId = new Map(manager.get(campaign.id).meters.map((m) => [m.meterId, m]));
    assert.equal(byId.get(BAD_CRC_METER)!.state, "failed");
    assert.equal(byId.get(BAD_CRC_METER)!.reason, "ERROR_CRC_MISMATCH");
    assert.equal(byId.get(WDT_METER)!.state, "rolled_back");
    assert.equal(byId.get(WDT_METER)!.reason, "WDT_REBOOT_LOOP");
    for (const [id, rig] of rigs) {
      const expected = id === BAD_CRC_METER || id === WDT_METER ? GOLDEN_APP.checksum : update.checksum;
      assert.deepEqual(
        rig.firmware.runningChecksum("app"),
        expected,
        `${id} runs what the head-end recorded`,
      );
    }
    for (const j of jobs.values()) assert.ok(j.peakSessions <= 4, "concurrent sessions within the limit");

    // ── rollback campaign (admin): everyone back to golden ──
    const goldenChecksum = toHex(GOLDEN_APP.checksum);
    assert.throws(
      () =>
        manager.create(
          { name: "rb", kind: "rollback_full", imageChecksum: goldenChecksum, targets: {} },
          fleetView,
          operator,
        ),
      /FORBIDDEN/,
    );
    const runRollback = async (name: string) => {
      const rb = manager.create(
        { name, kind: "rollback_full", imageChecksum: goldenChecksum, targets: {}, sessionLimitPerDcu: 4 },
        fleetView,
        admin,
      );
      manager.approve(rb.id, admin);
      manager.start(rb.id, admin);
      await runFor(2 * 60 * 60_000);
      return manager.status(rb.id);
    };
    const first = await runRollback("rollback 1");
    assert.equal(first.state, "completed", JSON.stringify(first));
    assert.equal(first.counts.confirmed, METERS, "every meter reports golden");
    for (const rig of rigs.values())
      assert.deepEqual(rig.firmware.runningChecksum("app"), GOLDEN_APP.checksum);

    // ── the same command again: nothing changes on any meter ──
    const snapshot = new Map(
      [...rigs].map(([id, r]) => [
        id,
        { events: r.meter.eventLog().length, banks: JSON.stringify(r.firmware.banks()) },
      ]),
    );
    const second = await runRollback("rollback 2");
    assert.equal(second.state, "completed");
    assert.equal(second.counts.confirmed, METERS);
    for (const [id, r] of rigs) {
      assert.equal(r.meter.eventLog().length, snapshot.get(id)!.events, `${id}: no new record`);
      assert.equal(JSON.stringify(r.firmware.banks()), snapshot.get(id)!.banks, `${id}: banks unchanged`);
    }

    // ── a replayed OTP (a captured rollback job resent under a fresh campaign id) is refused and logged ──
    const captured = sent.find((m) => m.commands.some((c) => c.action === "rollback_full"))!;
    const replayMeter = captured.commands[0]!.meterId;
    const rigOf = rigs.get(replayMeter)!;
    const sigFailsBefore = rigOf.meter.eventLog().filter((r) => r.type === "SIG_FAIL").length;
    const reports: string[] = [];
    const attacker = new FirmwareJobs({
      dcuId: captured.dcuId,
      nowMs: () => clock.now,
      connect: async () => {
        const c = await connectDlms("127.0.0.1", rigOf.server.port, 1);
        await c.client.associate({ password: PASSWORD });
        return { client: c.client, close: () => c.close() };
      },
      publish: (m) => {
        for (const r of m.reports) if (r.state === "failed") reports.push(r.reason ?? "");
      },
    });
    attacker.accept({
      ...captured,
      campaignId: "replay",
      commands: [{ ...captured.commands[0]!, startAtMs: 0 }],
    });
    attacker.tick();
    await attacker.idle();
    assert.deepEqual(reports, ["OTP_REPLAY"]);
    const sigFails = rigOf.meter.eventLog().filter((r) => r.type === "SIG_FAIL");
    assert.equal(sigFails.length, sigFailsBefore + 1, "the refusal is a sealed SIG_FAIL record");
    assert.equal(sigFails.at(-1)!.snapshot.reason, "OTP_REPLAY");

    // ── acceptance 4: billing registers identical before and after every campaign ──
    for (const [id, r] of rigs)
      assert.deepEqual(r.meter.registers, billingBefore.get(id), `${id} billing registers`);
  } finally {
    for (const r of rigs.values()) await r.server.close();
  }
});
