import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { connectAsync, type MqttClient } from "mqtt";
import {
  decodeFirmwareJob,
  encodeFirmwareProgress,
  type FirmwareJobMessage,
  firmwareProgressTopic,
  generateP256KeyPair,
  toHex,
} from "../../src/evidence/index.ts";
import {
  FIRMWARE_CA_FILE,
  type HeadendHandle,
  OTP_MASTER_KEY_FILE,
  startHeadend,
} from "../../src/headend/index.ts";
import { image, pki } from "../meter/firmware-harness.ts";

// The campaign routes over a real head-end (HTTP + embedded MQTT broker): roles, audit, the repository's
// checks, jobs published on ami/<dcu>/fw/jobs, progress consumed from ami/<dcu>/fw/progress.

describe("campaign API", () => {
  const dir = mkdtempSync(join(tmpdir(), "amiproof-campaign-api-"));
  let h: HeadendHandle;
  let client: MqttClient;
  const jobs: FirmwareJobMessage[] = [];

  before(async () => {
    writeFileSync(join(dir, FIRMWARE_CA_FILE), pki.ca.certificatePem);
    h = await startHeadend({
      brokerPort: 0,
      httpPort: 0,
      dataDir: dir,
      clientIdPrefix: `test-campaign-api-${process.pid}`,
      logLevel: "silent",
    });
    client = await connectAsync(h.mqttUrl, { clientId: `test-campaign-dcu-${process.pid}` });
    client.on("message", (_topic, payload) => jobs.push(decodeFirmwareJob(new Uint8Array(payload))));
    await client.subscribeAsync("ami/+/fw/jobs", { qos: 1 });
  });
  after(async () => {
    await client.endAsync();
    await h.close();
    rmSync(dir, { recursive: true, force: true });
  });

  async function call(method: string, path: string, role: "admin" | "operator" | "viewer", body?: unknown) {
    const response = await fetch(`${h.apiUrl}${path}`, {
      method,
      headers: {
        authorization: `Bearer ${h.tokens[role]}`,
        ...(body === undefined ? {} : { "content-type": "application/json" }),
      },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });
    // biome-ignore lint/suspicious/noExplicitAny: the API's JSON answers
    const json: any = await response.json();
    return { status: response.status, json };
  }

  const until = async (what: string, check: () => boolean | Promise<boolean>) => {
    for (let i = 0; i < 800; i++) {
      if (await check()) return;
      await new Promise((r) => setTimeout(r, 25));
    }
    assert.fail(`timed out waiting for ${what}`);
  };

  test("repository, create, approve, start, progress, pause/resume, rollback roles and audit", async () => {
    // Repository: admin only; every check of the meter's bootloader applied before an image is accepted.
    const update = image("app", 1_001_000);
    const b64 = (bytes: Uint8Array) => Buffer.from(bytes).toString("base64");
    assert.equal(
      (await call("POST", "/api/campaigns/images", "operator", { image_base64: b64(update.bytes) })).status,
      403,
    );
    const uploaded = await call("POST", "/api/campaigns/images", "admin", {
      image_base64: b64(update.bytes),
    });
    assert.equal(uploaded.status, 201);
    assert.equal(uploaded.json.checksum, toHex(update.checksum));
    const corrupt = update.bytes.slice();
    corrupt[50] = corrupt[50]! ^ 1;
    const refused = await call("POST", "/api/campaigns/images", "admin", { image_base64: b64(corrupt) });
    assert.equal(refused.status, 400);
    assert.match(refused.json.message, /ERROR_CRC_MISMATCH: image CRC/);
    const metrology = await call("POST", "/api/campaigns/images", "admin", {
      image_base64: b64(image("metrology", 2).bytes),
    });
    assert.match(metrology.json.message, /COMPONENT_NOT_UPDATABLE/);
    const listed = await call("GET", "/api/firmware", "viewer");
    assert.ok(listed.json.items.some((f: { checksum: string }) => f.checksum === uploaded.json.checksum));

    // The asset register: 12 meters behind two concentrators.
    const meters = Array.from({ length: 12 }, (_, i) => ({
      meter_id: `MTR-${i}`,
      event_seal_public_key: toHex(generateP256KeyPair().publicKey),
      dcu_id: `DCU-${i % 2}`,
      model: "AMI-1PH",
      group: "north",
    }));
    assert.equal((await call("POST", "/api/meters", "admin", { meters })).status < 300, true);

    const created = await call("POST", "/api/campaigns", "operator", {
      name: "app 1.1.0",
      kind: "update",
      image_checksum: uploaded.json.checksum,
      targets: { dcu_ids: ["DCU-0", "DCU-1"] },
      error_count: 2,
      window_minutes: 1,
    });
    assert.equal(created.status, 201, JSON.stringify(created.json));
    assert.equal(created.json.state, "pending_approval");
    assert.equal(created.json.meters, 12);
    const id = created.json.campaign_id;
    assert.equal((await call("POST", `/api/campaigns/${id}/start`, "operator", {})).status, 409);
    assert.equal((await call("POST", `/api/campaigns/${id}/approve`, "viewer", {})).status, 403);
    assert.equal((await call("POST", `/api/campaigns/${id}/approve`, "operator", {})).json.state, "approved");
    assert.equal((await call("POST", `/api/campaigns/${id}/start`, "operator", {})).json.state, "running");
    await until(
      "jobs on both concentrators' topics",
      () => jobs.filter((j) => j.campaignId === id).length === 2,
    );
    const commands = jobs.flatMap((j) => j.commands);
    assert.equal(commands.length, 12);
    assert.ok(jobs.every((j) => j.images.length === 1 && j.images[0]!.checksum === uploaded.json.checksum));

    // Progress from the concentrators: confirmations and two failures cross the error count.
    const report = async (dcuId: string, meterId: string, fields: Record<string, unknown>) => {
      await client.publishAsync(
        firmwareProgressTopic(dcuId),
        Buffer.from(
          encodeFirmwareProgress({
            campaignId: id,
            dcuId,
            reports: [
              {
                meterId,
                state: "done",
                reason: null,
                blocksDone: 1,
                blocksTotal: 1,
                activeChecksum: null,
                firmwareId: null,
                atMs: 1,
                ...fields,
              },
            ],
          }),
        ),
        { qos: 1 },
      );
    };
    for (const m of meters.slice(0, 4))
      await report(m.dcu_id, m.meter_id, { activeChecksum: uploaded.json.checksum });
    await report(meters[4]!.dcu_id, meters[4]!.meter_id, { state: "failed", reason: "ERROR_CRC_MISMATCH" });
    await report(meters[5]!.dcu_id, meters[5]!.meter_id, {
      reason: "WDT_REBOOT_LOOP",
      activeChecksum: "00".repeat(32),
    });
    await until(
      "the error threshold pause",
      async () => (await call("GET", `/api/campaigns/${id}`, "viewer")).json.state === "paused",
    );
    const paused = (await call("GET", `/api/campaigns/${id}`, "viewer")).json;
    assert.match(paused.pause_reason, /^ERROR_THRESHOLD/);
    assert.equal(paused.counts.confirmed, 4);
    assert.deepEqual(paused.reasons, { ERROR_CRC_MISMATCH: 1, WDT_REBOOT_LOOP: 1 });
    const failed = await call("GET", `/api/campaigns/${id}/meters?state=failed`, "viewer");
    assert.deepEqual(
      failed.json.items.map((m: { meter_id: string }) => m.meter_id),
      ["MTR-4"],
    );
    assert.equal((await call("POST", `/api/campaigns/${id}/resume`, "operator", {})).json.state, "running");
    const cancelled = await call("POST", `/api/campaigns/${id}/cancel`, "operator", { forced: true });
    assert.equal(cancelled.json.state, "cancelled");
    assert.equal(cancelled.json.cancel_mode, "forced");

    // Rollback: admin only.
    const rollback = {
      name: "back to golden",
      kind: "rollback_full",
      image_checksum: "ab".repeat(32),
      targets: { groups: ["north"] },
    };
    assert.equal((await call("POST", "/api/campaigns", "operator", rollback)).status, 403);
    const rb = await call("POST", "/api/campaigns", "admin", rollback);
    assert.equal(rb.status, 201);
    await call("POST", `/api/campaigns/${rb.json.campaign_id}/approve`, "admin", {});
    await call("POST", `/api/campaigns/${rb.json.campaign_id}/start`, "admin", {});
    await until("rollback jobs", () => jobs.some((j) => j.campaignId === rb.json.campaign_id));
    const otpCommands = jobs.filter((j) => j.campaignId === rb.json.campaign_id).flatMap((j) => j.commands);
    assert.ok(otpCommands.every((c) => c.auth !== null && c.auth.otp.length === 32));

    // Every mutation is in the hash-chained audit log.
    const audit = await call("GET", "/api/audit", "admin");
    const actions = audit.json.items.map((a: { action: string }) => a.action);
    for (const action of [
      "POST /api/campaigns/images",
      "POST /api/campaigns",
      "POST /api/campaigns/:id/approve",
      "POST /api/campaigns/:id/start",
      "POST /api/campaigns/:id/resume",
      "POST /api/campaigns/:id/cancel",
    ]) {
      assert.ok(actions.includes(action), `${action} audited`);
    }
    assert.equal((await call("GET", "/api/audit/verify", "admin")).json.ok, true);
    const spec = (await (await fetch(`${h.apiUrl}/openapi.json`)).json()) as {
      paths: Record<string, unknown>;
    };
    assert.ok("/api/campaigns/{id}/cancel" in spec.paths || "/api/campaigns/:id/cancel" in spec.paths);
  });

  test("the OTP master key is created once, private to the head-end", async () => {
    const { statSync } = await import("node:fs");
    assert.equal(statSync(join(dir, OTP_MASTER_KEY_FILE)).mode & 0o777, 0o600);
  });
});

describe("campaigns across a head-end restart", () => {
  test("a running campaign, its image and its OTP key survive a restart; late reports are still applied", async () => {
    const dir = mkdtempSync(join(tmpdir(), "amiproof-campaign-restart-"));
    writeFileSync(join(dir, FIRMWARE_CA_FILE), pki.ca.certificatePem);
    const start = () =>
      startHeadend({
        brokerPort: 0,
        httpPort: 0,
        dataDir: dir,
        clientIdPrefix: `test-campaign-restart-${process.pid}`,
        logLevel: "silent",
      });
    const call = async (h: HeadendHandle, method: string, path: string, body?: unknown) => {
      const response = await fetch(`${h.apiUrl}${path}`, {
        method,
        headers: {
          authorization: `Bearer ${h.tokens.admin}`,
          ...(body === undefined ? {} : { "content-type": "application/json" }),
        },
        ...(body === undefined ? {} : { body: JSON.stringify(body) }),
      });
      // biome-ignore lint/suspicious/noExplicitAny: the API's JSON answers
      const json: any = await response.json();
      assert.ok(response.ok, JSON.stringify(json));
      return json;
    };
    let h = await start();
    try {
      const update = image("app", 1_002_000);
      const uploaded = await call(h, "POST", "/api/campaigns/images", {
        image_base64: Buffer.from(update.bytes).toString("base64"),
      });
      await call(h, "POST", "/api/meters", {
        meters: ["M1", "M2"].map((meter_id) => ({
          meter_id,
          event_seal_public_key: toHex(generateP256KeyPair().publicKey),
          dcu_id: "DCU-9",
        })),
      });
      const c = await call(h, "POST", "/api/campaigns", {
        name: "survives",
        image_checksum: uploaded.checksum,
        targets: {},
        error_count: 1,
      });
      await call(h, "POST", `/api/campaigns/${c.campaign_id}/approve`, {});
      await call(h, "POST", `/api/campaigns/${c.campaign_id}/start`, {});
      const key = readFileSync(join(dir, OTP_MASTER_KEY_FILE), "utf8");
      await h.close();

      h = await start();
      assert.equal(readFileSync(join(dir, OTP_MASTER_KEY_FILE), "utf8"), key, "the OTP master key is kept");
      const again = await call(h, "GET", `/api/campaigns/${c.campaign_id}`);
      assert.equal(again.state, "running");
      assert.equal(again.meters, 2);
      const mqtt = await connectAsync(h.mqttUrl, { clientId: `test-campaign-restart-dcu-${process.pid}` });
      await mqtt.publishAsync(
        firmwareProgressTopic("DCU-9"),
        Buffer.from(
          encodeFirmwareProgress({
            campaignId: c.campaign_id,
            dcuId: "DCU-9",
            reports: [
              {
                meterId: "M1",
                state: "failed",
                reason: "ERROR_CRC_MISMATCH",
                blocksDone: 0,
                blocksTotal: 0,
                activeChecksum: null,
                firmwareId: null,
                atMs: 1,
              },
            ],
          }),
        ),
        { qos: 1 },
      );
      await mqtt.endAsync();
      let state = "";
      for (let i = 0; i < 400 && state !== "paused"; i++) {
        state = (await call(h, "GET", `/api/campaigns/${c.campaign_id}`)).state;
        if (state !== "paused") await new Promise((r) => setTimeout(r, 25));
      }
      assert.equal(state, "paused", "the late report crossed the error count after the restart");
      // The image came back from the store: retrying needs it.
      const retried = await call(h, "POST", `/api/campaigns/${c.campaign_id}/retry`, {});
      assert.equal(retried.retried, 1);
      assert.equal(retried.state, "running");
    } finally {
      await h.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
