import assert from "node:assert/strict";
import { test } from "node:test";
import {
  computeRollbackOtp,
  type FirmwareJobMessage,
  type JobReport,
  SeededRandom,
  toHex,
} from "../../src/evidence/index.ts";
import {
  type Actor,
  CampaignManager,
  type CampaignSpec,
  deriveMeterOtpKey,
  FirmwareRepository,
  type FleetMeter,
  isCampaignError,
  OtpSecurityModule,
  peakConcurrentSessions,
  staggerStartTimes,
  verifyFirmwareImage,
} from "../../src/headend/index.ts";
import { deviceCertPki, expiredPki, image, otherPki, pki } from "../meter/firmware-harness.ts";

// The head-end's campaign core (src/headend/core/campaigns.ts) driven by hand-written concentrator reports.

const T0 = Date.UTC(2026, 5, 1);
const MASTER = new Uint8Array(32).fill(3);
const operator: Actor = { name: "op", role: "operator" };
const admin: Actor = { name: "root", role: "admin" };
const viewer: Actor = { name: "eye", role: "viewer" };

function fleet(n: number, dcus = 4): FleetMeter[] {
  return Array.from({ length: n }, (_, i) => ({
    meterId: `M${String(i).padStart(4, "0")}`,
    dcuId: `DCU-${i % dcus}`,
    model: i % 3 === 0 ? "GAS-1" : "AMI-1PH",
    group: i % 2 === 0 ? "north" : "south",
    firmwareVersion: i % 10 === 9 ? "1.1.0" : "1.0.0",
  }));
}

function rig(options: { otp?: boolean } = {}) {
  const clock = { now: T0 };
  const sent: FirmwareJobMessage[] = [];
  const repository = new FirmwareRepository(pki.ca.certificateDer);
  const manager = new CampaignManager({
    nowMs: () => clock.now,
    rng: new SeededRandom(7),
    repository,
    otp: options.otp === false ? null : new OtpSecurityModule(MASTER),
    send: (m) => sent.push(m),
  });
  const update = repository.add(image("app", 1_001_000).bytes, clock.now);
  const report = (campaignId: string, meterId: string, dcuId: string, r: Partial<JobReport>) =>
    manager.applyProgress({
      campaignId,
      dcuId,
      reports: [
        {
          meterId,
          state: "done",
          reason: null,
          blocksDone: 0,
          blocksTotal: 0,
          activeChecksum: null,
          firmwareId: null,
          atMs: clock.now,
          ...r,
        },
      ],
    });
  return { clock, sent, repository, manager, update, report };
}

const updateSpec = (checksum: string, extra: Partial<CampaignSpec> = {}): CampaignSpec => ({
  name: "app 1.1.0",
  kind: "update",
  imageChecksum: checksum,
  targets: {},
  ...extra,
});

function code(fn: () => unknown): string {
  try {
    fn();
  } catch (error) {
    if (isCampaignError(error))
      return error.detail === undefined ? error.code : `${error.code}/${error.detail}`;
    throw error;
  }
  return "no error";
}

test("repository: accepts signed images and records their checksum; refuses bad CRC, foreign or expired certificates, expired images, metrology and bootloader", () => {
  const good = image("app", 1_002_003);
  const accepted = verifyFirmwareImage(good.bytes, pki.ca.certificateDer, T0);
  assert.equal(accepted.checksum, toHex(good.checksum));
  assert.equal(accepted.versionText, "1.2.3");
  const corrupt = good.bytes.slice();
  corrupt[40] = corrupt[40]! ^ 1;
  assert.equal(
    code(() => verifyFirmwareImage(corrupt, pki.ca.certificateDer, T0)),
    "ERROR_CRC_MISMATCH",
  );
  assert.equal(
    code(() => verifyFirmwareImage(image("app", 1, { signer: expiredPki }).bytes, pki.ca.certificateDer, T0)),
    "SIGN_AUTH_FAIL/CERT_EXPIRED",
  );
  assert.equal(
    code(() => verifyFirmwareImage(image("app", 1, { signer: otherPki }).bytes, pki.ca.certificateDer, T0)),
    "SIGN_AUTH_FAIL/UNTRUSTED_ISSUER",
  );
  assert.equal(
    code(() =>
      verifyFirmwareImage(image("app", 1, { signer: deviceCertPki }).bytes, pki.ca.certificateDer, T0),
    ),
    "SIGN_AUTH_FAIL/NOT_CODE_SIGNING",
  );
  assert.equal(
    code(() => verifyFirmwareImage(image("app", 1, { expiresMs: T0 - 1 }).bytes, pki.ca.certificateDer, T0)),
    "IMAGE_EXPIRED",
  );
  for (const component of ["metrology", "bootloader"] as const) {
    assert.equal(
      code(() => verifyFirmwareImage(image(component, 1).bytes, pki.ca.certificateDer, T0)),
      "COMPONENT_NOT_UPDATABLE",
    );
  }
  assert.equal(
    code(() => verifyFirmwareImage(good.bytes.subarray(0, 30), pki.ca.certificateDer, T0)),
    "BAD_IMAGE",
  );
  // A forged signature over an otherwise intact image.
  const forged = good.bytes.slice();
  forged[forged.length - 1] = forged[forged.length - 1]! ^ 0xff;
  assert.equal(
    code(() => verifyFirmwareImage(forged, pki.ca.certificateDer, T0)),
    "SIGN_AUTH_FAIL/BAD_SIGNATURE",
  );
  assert.equal(
    code(() => new FirmwareRepository(null).add(good.bytes, T0)),
    "NOT_CONFIGURED",
  );
});

test("targets by concentrator, model, group and version; meters already on the release are skipped", () => {
  const { manager, update } = rig();
  const all = manager.create(updateSpec(update.checksum), fleet(100), operator);
  assert.equal(all.meters.length, 90);
  assert.equal(all.skippedCurrent, 10);
  const some = manager.create(
    updateSpec(update.checksum, { targets: { dcuIds: ["DCU-1"], models: ["AMI-1PH"], groups: ["south"] } }),
    fleet(100),
    operator,
  );
  for (const m of some.meters) {
    const index = Number(m.meterId.slice(1));
    assert.ok(index % 4 === 1 && index % 3 !== 0 && index % 2 === 1 && index % 10 !== 9, m.meterId);
  }
  assert.ok(some.meters.length > 0);
  assert.equal(
    code(() =>
      manager.create(updateSpec(update.checksum, { targets: { versions: ["9.9.9"] } }), fleet(10), operator),
    ),
    "NO_TARGETS",
  );
  assert.equal(
    code(() => manager.create(updateSpec("ab".repeat(32)), fleet(10), operator)),
    "UNKNOWN_IMAGE",
  );
  assert.equal(
    code(() => manager.create(updateSpec(update.checksum), fleet(10), viewer)),
    "FORBIDDEN",
  );
  assert.equal(
    code(() => manager.create(updateSpec(update.checksum, { waves: [50, 40, 100] }), fleet(10), operator)),
    "BAD_REQUEST",
  );
});

test("waves: approval first, operator-gated next wave, success condition, completion", () => {
  const { manager, update, sent, report } = rig();
  const c = manager.create(
    updateSpec(update.checksum, { waves: [10, 50, 100], autoAdvance: false }),
    fleet(100),
    operator,
  );
  assert.deepEqual(c.waveEnds, [9, 45, 90]);
  assert.equal(
    code(() => manager.start(c.id, operator)),
    "BAD_STATE",
  );
  manager.approve(c.id, operator);
  manager.start(c.id, operator);
  const dispatched = () => sent.flatMap((m) => m.commands.map((x) => x.meterId));
  assert.equal(dispatched().length, 9, "only the first wave is dispatched");
  assert.ok(sent.every((m) => m.images.length === 1 && m.images[0]!.checksum === update.checksum));
  for (const m of c.meters.slice(0, 9)) report(c.id, m.meterId, m.dcuId, { activeChecksum: update.checksum });
  assert.equal(manager.status(c.id).state, "awaiting_operator");
  manager.advance(c.id, operator);
  assert.equal(dispatched().length, 45);
  for (const m of c.meters.slice(9, 45))
    report(c.id, m.meterId, m.dcuId, { activeChecksum: update.checksum });
  manager.advance(c.id, operator);
  for (const m of c.meters.slice(45)) report(c.id, m.meterId, m.dcuId, { activeChecksum: update.checksum });
  const s = manager.status(c.id);
  assert.equal(s.state, "completed");
  assert.equal(s.counts.confirmed, 90);
  assert.equal(s.progress, 1);
  assert.deepEqual(
    s.waves.map((w) => w.size),
    [9, 36, 45],
  );
});

test("per-meter state machine: forward only, terminal states final, reasons kept; reports from another concentrator ignored", () => {
  const { manager, update, report } = rig();
  const c = manager.create(updateSpec(update.checksum, { successShare: 0 }), fleet(8, 1), operator);
  manager.approve(c.id, operator);
  manager.start(c.id, operator);
  const [a, b, d, e] = c.meters;
  report(c.id, a!.meterId, a!.dcuId, { state: "transferring", blocksDone: 2, blocksTotal: 8 });
  report(c.id, a!.meterId, a!.dcuId, { state: "activating", blocksDone: 8, blocksTotal: 8 });
  report(c.id, a!.meterId, a!.dcuId, { state: "verifying", blocksDone: 8, blocksTotal: 8 });
  assert.equal(a!.state, "activating", "a late, older report does not move a meter back");
  report(c.id, b!.meterId, b!.dcuId, { state: "failed", reason: "ERROR_CRC_MISMATCH" });
  report(c.id, b!.meterId, b!.dcuId, { activeChecksum: update.checksum });
  assert.equal(b!.state, "failed");
  assert.equal(b!.reason, "ERROR_CRC_MISMATCH");
  report(c.id, d!.meterId, d!.dcuId, { activeChecksum: "00".repeat(32), reason: "WDT_REBOOT_LOOP" });
  assert.equal(d!.state, "rolled_back");
  assert.equal(d!.reason, "WDT_REBOOT_LOOP");
  report(c.id, e!.meterId, e!.dcuId, { activeChecksum: "00".repeat(32) });
  assert.equal(e!.state, "failed");
  assert.equal(e!.reason, "CONFIRM_MISMATCH", "remote confirmation compares the asset register's checksum");
  report(c.id, c.meters[4]!.meterId, "DCU-OTHER", { activeChecksum: update.checksum });
  assert.equal(c.meters[4]!.state, "queued");
  assert.ok(c.reportsIgnored >= 3);
});

test("error condition: a share of the wave failing pauses the campaign and withdraws queued commands; resume continues", () => {
  const { manager, update, sent, report } = rig();
  const c = manager.create(
    updateSpec(update.checksum, { errorShare: 0.1, successShare: 0.5 }),
    fleet(40, 2),
    operator,
  );
  manager.approve(c.id, operator);
  manager.start(c.id, operator);
  assert.equal(c.meters.length, 36);
  for (const m of c.meters.slice(0, 3))
    report(c.id, m.meterId, m.dcuId, { state: "failed", reason: "TIMEOUT" });
  assert.equal(manager.status(c.id).state, "running", "3/36 is not above the share");
  const m5 = c.meters[3]!;
  report(c.id, m5.meterId, m5.dcuId, { state: "failed", reason: "SIGN_AUTH_FAIL" });
  const s = manager.status(c.id);
  assert.equal(s.state, "paused");
  assert.match(s.pause_reason!, /^ERROR_THRESHOLD: 4\/36/);
  const cancels = sent.filter((m) => m.cancel === "graceful");
  assert.deepEqual(
    cancels.map((m) => m.dcuId).sort(),
    ["DCU-0", "DCU-1"],
    "every concentrator withdraws its queue",
  );
  // In-flight meters still report while paused.
  const m6 = c.meters[4]!;
  report(c.id, m6.meterId, m6.dcuId, { activeChecksum: update.checksum });
  assert.equal(m6.state, "confirmed");
  const before = sent.length;
  manager.resume(c.id, operator);
  const redispatched = sent.slice(before).flatMap((m) => m.commands.map((x) => x.meterId));
  assert.equal(redispatched.length, 31, "the queued meters are sent again, not the finished ones");
  for (const m of c.meters.slice(5)) report(c.id, m.meterId, m.dcuId, { activeChecksum: update.checksum });
  assert.equal(manager.status(c.id).state, "completed");
});

test("error count and success condition; retry re-sends only the failed meters (not those rolled back)", () => {
  const { manager, update, sent, report } = rig();
  const c = manager.create(updateSpec(update.checksum, { errorCount: 3 }), fleet(10, 1), operator);
  manager.approve(c.id, operator);
  manager.start(c.id, operator);
  const [a, b] = c.meters;
  report(c.id, a!.meterId, a!.dcuId, { state: "failed", reason: "TIMEOUT" });
  report(c.id, b!.meterId, b!.dcuId, { reason: "WDT_REBOOT_LOOP", activeChecksum: "11".repeat(32) });
  for (const m of c.meters.slice(2)) report(c.id, m.meterId, m.dcuId, { activeChecksum: update.checksum });
  const s = manager.status(c.id);
  assert.equal(s.state, "paused");
  assert.match(s.pause_reason!, /^SUCCESS_CONDITION_NOT_MET: 7\/9/);
  const before = sent.length;
  const { retried } = manager.retryFailed(c.id, operator);
  assert.equal(retried, 1);
  const again = sent.slice(before).flatMap((m) => m.commands.map((x) => x.meterId));
  assert.deepEqual(again, [a!.meterId]);
  assert.equal(a!.attempts, 1);
  report(c.id, a!.meterId, a!.dcuId, { activeChecksum: update.checksum });
  assert.equal(
    manager.status(c.id).state,
    "paused",
    "the rolled-back meter still misses the success condition",
  );
});

test("cancel: graceful keeps in-flight reports, forced ignores late reports", () => {
  const { manager, update, sent, report } = rig();
  const c1 = manager.create(updateSpec(update.checksum), fleet(6, 1), operator);
  manager.approve(c1.id, operator);
  manager.start(c1.id, operator);
  manager.cancel(c1.id, operator, false);
  assert.equal(sent.at(-1)!.cancel, "graceful");
  report(c1.id, c1.meters[0]!.meterId, "DCU-0", { activeChecksum: update.checksum });
  assert.equal(c1.meters[0]!.state, "confirmed");
  manager.cancel(c1.id, operator, true);
  assert.equal(sent.at(-1)!.cancel, "forced");
  report(c1.id, c1.meters[1]!.meterId, "DCU-0", { activeChecksum: update.checksum });
  assert.equal(c1.meters[1]!.state, "queued");
  assert.equal(manager.status(c1.id).late_reports_ignored, 1);
  assert.equal(
    code(() => manager.resume(c1.id, operator)),
    "BAD_STATE",
  );
});

test("release counter and image expiry: an older or stale campaign cannot be replayed onto the fleet", () => {
  const { manager, repository, clock } = rig();
  const v12 = repository.add(image("app", 1_002_000).bytes, clock.now);
  const v11 = repository.add(image("app", 1_001_005).bytes, clock.now);
  const oldCampaign = manager.create(updateSpec(v11.checksum), fleet(10), operator);
  manager.approve(oldCampaign.id, operator);
  const c = manager.create(updateSpec(v12.checksum), fleet(10), operator);
  manager.approve(c.id, operator);
  manager.start(c.id, operator);
  assert.equal(
    code(() => manager.start(oldCampaign.id, operator)),
    "STALE_RELEASE",
  );
  assert.equal(
    code(() => manager.create(updateSpec(v11.checksum), fleet(10), operator)),
    "STALE_RELEASE",
  );
  const expiring = repository.add(image("app", 1_003_000, { expiresMs: T0 + 3_600_000 }).bytes, clock.now);
  const late = manager.create(updateSpec(expiring.checksum), fleet(10), operator);
  manager.approve(late.id, operator);
  clock.now = T0 + 2 * 3_600_000;
  assert.equal(
    code(() => manager.start(late.id, operator)),
    "IMAGE_EXPIRED",
  );
});

test("rollback campaigns: admin only, every command carries an OTP bound to meter, target, expiry and counter", () => {
  const { manager, sent, clock } = rig();
  const golden = "ab".repeat(32);
  const spec: CampaignSpec = { name: "rb", kind: "rollback_app", imageChecksum: golden, targets: {} };
  assert.equal(
    code(() => manager.create(spec, fleet(20), operator)),
    "FORBIDDEN",
  );
  const c = manager.create(spec, fleet(20), admin);
  assert.equal(
    code(() => manager.approve(c.id, operator)),
    "FORBIDDEN",
  );
  manager.approve(c.id, admin);
  assert.equal(
    code(() => manager.start(c.id, operator)),
    "FORBIDDEN",
  );
  manager.start(c.id, admin);
  const commands = sent.flatMap((m) => m.commands);
  assert.equal(commands.length, 20);
  for (const cmd of commands) {
    assert.equal(cmd.action, "rollback_app");
    assert.ok(cmd.auth !== null);
    assert.ok(
      cmd.startAtMs >= clock.now && cmd.startAtMs < clock.now + 60 * 60_000,
      "staggered in the window",
    );
    const key = deriveMeterOtpKey(MASTER, cmd.meterId);
    const input = {
      meterId: cmd.meterId,
      action: cmd.action,
      targetChecksum: golden,
      expiresMs: cmd.auth.otpExpiresMs,
      counter: cmd.auth.otpCounter,
    };
    assert.deepEqual(computeRollbackOtp(key, input), cmd.auth.otp);
    assert.notDeepEqual(computeRollbackOtp(key, { ...input, meterId: "M9999" }), cmd.auth.otp);
    assert.notDeepEqual(computeRollbackOtp(key, { ...input, targetChecksum: "cd".repeat(32) }), cmd.auth.otp);
    assert.notDeepEqual(computeRollbackOtp(key, { ...input, expiresMs: input.expiresMs + 1 }), cmd.auth.otp);
    assert.notDeepEqual(computeRollbackOtp(key, { ...input, action: "rollback_full" }), cmd.auth.otp);
  }
  const { manager: noHsm } = rig({ otp: false });
  assert.equal(
    code(() => noHsm.create(spec, fleet(5), admin)),
    "NOT_CONFIGURED",
  );
});

test("OTP counters rise per meter, never below the clock (a restarted head-end cannot reissue an old counter)", () => {
  const hsm = new OtpSecurityModule(MASTER);
  const request = {
    meterId: "M1",
    action: "rollback_full" as const,
    targetChecksum: "ab".repeat(32),
    expiresMs: T0 + 1,
  };
  const a = hsm.issue({ ...request, nowMs: T0 });
  const b = hsm.issue({ ...request, nowMs: T0 });
  assert.equal(b.otpCounter, a.otpCounter + 1);
  const restarted = new OtpSecurityModule(MASTER);
  const c = restarted.issue({ ...request, nowMs: T0 + 1000 });
  assert.ok(c.otpCounter > b.otpCounter);
  assert.throws(() => new OtpSecurityModule(new Uint8Array(16)), RangeError);
});

test("staggered back-off: no concentrator above its session limit; unstaggered starts far above it; seeded", () => {
  const meters = fleet(8000, 8);
  const options = {
    windowMs: 60 * 60_000,
    sessionLimitPerDcu: 8,
    sessionMs: 20_000,
    rng: new SeededRandom(42),
  };
  const plan = staggerStartTimes(meters, options);
  assert.equal(plan.overflowMeters, 0);
  assert.ok(plan.endMs <= 60 * 60_000 + 20_000);
  const sessions = meters.map((m, i) => ({ key: m.dcuId, startMs: plan.offsetsMs[i]!, durationMs: 20_000 }));
  const peaks = peakConcurrentSessions(sessions);
  assert.equal(peaks.size, 8);
  for (const [dcu, peak] of peaks) assert.ok(peak <= 8, `${dcu} peak ${peak}`);
  const unstaggered = peakConcurrentSessions(
    meters.map((m) => ({ key: m.dcuId, startMs: 0, durationMs: 20_000 })),
  );
  for (const peak of unstaggered.values()) assert.equal(peak, 1000);
  const again = staggerStartTimes(meters, { ...options, rng: new SeededRandom(42) });
  assert.deepEqual(again.offsetsMs, plan.offsetsMs);
  // More meters than the window holds: they spill past it, still within the limit.
  const crowded = fleet(2000, 1);
  const spill = staggerStartTimes(crowded, { ...options, rng: new SeededRandom(1) });
  assert.ok(spill.overflowMeters > 0);
  const spillPeak = peakConcurrentSessions(
    crowded.map((m, i) => ({ key: m.dcuId, startMs: spill.offsetsMs[i]!, durationMs: 20_000 })),
  );
  assert.ok(spillPeak.get("DCU-0")! <= 8);
});

test("comms-stack images are confirmed by the version in the firmware identifier", () => {
  const { manager, repository, clock, report } = rig();
  const comms = repository.add(image("comms", 1_004_000).bytes, clock.now);
  const c = manager.create(updateSpec(comms.checksum), fleet(2, 1), operator);
  manager.approve(c.id, operator);
  manager.start(c.id, operator);
  report(c.id, c.meters[0]!.meterId, "DCU-0", { firmwareId: "app 1.0.0; comms 1.4.0" });
  report(c.id, c.meters[1]!.meterId, "DCU-0", { firmwareId: "app 1.0.0; comms 1.0.0" });
  assert.equal(c.meters[0]!.state, "confirmed");
  assert.equal(c.meters[1]!.state, "failed");
});

test("sleeping meters (seed 001 gas, waking every 30 minutes) are due at once and keep their session places", () => {
  const { manager, sent } = rig();
  const meters = fleet(60, 1).map((m, i) => ({ ...m, model: i % 6 === 0 ? "GAS-1" : "AMI-1PH" }));
  const c = manager.create(
    {
      name: "rb",
      kind: "rollback_full",
      imageChecksum: "ab".repeat(32),
      targets: {},
      sessionLimitPerDcu: 3,
      sessionMs: 20_000,
      windowMs: 10 * 60_000,
      sleepingModels: ["GAS-1"],
    },
    meters,
    admin,
  );
  assert.equal(c.sleepingReserve, 2);
  manager.approve(c.id, admin);
  manager.start(c.id, admin);
  const commands = sent.flatMap((m) => m.commands);
  const gas = new Set(meters.filter((m) => m.model === "GAS-1").map((m) => m.meterId));
  for (const cmd of commands)
    if (gas.has(cmd.meterId)) assert.equal(cmd.startAtMs, T0, "served when it wakes");
  const awake = commands.filter((cmd) => !gas.has(cmd.meterId));
  const peaks = peakConcurrentSessions(
    awake.map((cmd) => ({ key: "DCU-0", startMs: cmd.startAtMs - T0, durationMs: 20_000 })),
  );
  assert.equal(peaks.get("DCU-0"), 1, "listening meters use the places left: 3 − 2");
  assert.equal(
    code(() =>
      manager.create(
        {
          name: "x",
          kind: "rollback_full",
          imageChecksum: "ab".repeat(32),
          targets: {},
          sessionLimitPerDcu: 1,
          sleepingModels: ["GAS-1"],
        },
        meters,
        admin,
      ),
    ),
    "BAD_REQUEST",
  );
});

test("snapshot and restore: a restarted manager carries on with the same campaigns; malformed snapshots are refused", () => {
  const { manager, update, repository, clock, report } = rig();
  const c = manager.create(updateSpec(update.checksum, { errorCount: 5 }), fleet(20, 2), operator);
  manager.approve(c.id, operator);
  manager.start(c.id, operator);
  report(c.id, c.meters[0]!.meterId, c.meters[0]!.dcuId, { activeChecksum: update.checksum });
  const json = JSON.parse(JSON.stringify(manager.snapshot()));
  const sent: FirmwareJobMessage[] = [];
  const restarted = new CampaignManager({
    nowMs: () => clock.now,
    rng: new SeededRandom(8),
    repository,
    otp: new OtpSecurityModule(MASTER),
    send: (m) => sent.push(m),
  });
  restarted.restore(json);
  assert.deepEqual(restarted.status(c.id), manager.status(c.id));
  const m = restarted.get(c.id).meters[1]!;
  restarted.applyProgress({
    campaignId: c.id,
    dcuId: m.dcuId,
    reports: [
      {
        meterId: m.meterId,
        state: "done",
        reason: null,
        blocksDone: 0,
        blocksTotal: 0,
        activeChecksum: update.checksum,
        firmwareId: null,
        atMs: 0,
      },
    ],
  });
  assert.equal(restarted.status(c.id).counts.confirmed, 2);
  assert.equal(
    code(() => restarted.restore({ format: "x" })),
    "BAD_REQUEST",
  );
  assert.equal(
    code(() => restarted.restore({ ...json, campaigns: [{ id: "C", meters: [{}] }] })),
    "BAD_REQUEST",
  );
  assert.equal(restarted.status(c.id).counts.confirmed, 2, "a refused snapshot changes nothing");
});
