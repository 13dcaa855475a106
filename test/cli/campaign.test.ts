import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { promisify } from "node:util";
import { connectAsync, type MqttClient } from "mqtt";
import {
  encodeFirmwareProgress,
  firmwareProgressTopic,
  generateP256KeyPair,
  toHex,
} from "../../src/evidence/index.ts";
import { FIRMWARE_CA_FILE, type HeadendHandle, startHeadend } from "../../src/headend/index.ts";
import { image, pki } from "../meter/firmware-harness.ts";

// `amiproof campaign …` against a running head-end: upload, create --start, status, status --watch until
// the concentrators' reports complete it, rollback refused to an operator, cancel.

const BIN = join(import.meta.dirname, "../../bin/amiproof.js");
const run = promisify(execFile);

async function cli(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await run(process.execPath, [BIN, "campaign", ...args], {
      env: { ...process.env, AMIPROOF_TOKEN: "" },
    });
    return { code: 0, stdout, stderr };
  } catch (error) {
    const e = error as { code: number; stdout: string; stderr: string };
    return { code: e.code, stdout: e.stdout, stderr: e.stderr };
  }
}

describe("amiproof campaign", () => {
  const dir = mkdtempSync(join(tmpdir(), "amiproof-campaign-cli-"));
  let h: HeadendHandle;
  let client: MqttClient;
  const api = () => ["--api", h.apiUrl];
  const as = (role: "admin" | "operator" | "viewer") => ["--token-file", h.tokenFiles[role]];

  before(async () => {
    mkdirSync(join(dir, "headend"), { recursive: true });
    writeFileSync(join(dir, "headend", FIRMWARE_CA_FILE), pki.ca.certificatePem);
    h = await startHeadend({
      brokerPort: 0,
      httpPort: 0,
      dataDir: join(dir, "headend"),
      clientIdPrefix: `test-campaign-cli-${process.pid}`,
      logLevel: "silent",
    });
    client = await connectAsync(h.mqttUrl, { clientId: `test-campaign-cli-dcu-${process.pid}` });
    const meters = ["MTR-1", "MTR-2", "MTR-3"].map((meter_id) => ({
      meter_id,
      event_seal_public_key: toHex(generateP256KeyPair().publicKey),
      dcu_id: "DCU-1",
      model: "AMI-1PH",
    }));
    const response = await fetch(`${h.apiUrl}/api/meters`, {
      method: "POST",
      headers: { authorization: `Bearer ${h.tokens.admin}`, "content-type": "application/json" },
      body: JSON.stringify({ meters }),
    });
    assert.ok(response.ok);
  });
  after(async () => {
    await client.endAsync();
    await h.close();
    rmSync(dir, { recursive: true, force: true });
  });

  test("upload, create --start, watch to completion, rollback refused to an operator, cancel", async () => {
    const update = image("app", 1_001_000);
    const file = join(dir, "app.afw");
    writeFileSync(file, update.bytes);
    const up = await cli(["upload", file, ...api(), ...as("admin")]);
    assert.equal(up.code, 0, `${up.stderr} ${up.stdout}`);
    assert.match(up.stdout, new RegExp(`app 1\\.1\\.0 ${toHex(update.checksum)}`));

    const created = await cli([
      "create",
      "--checksum",
      toHex(update.checksum),
      "--dcu",
      "DCU-1",
      "--window-minutes",
      "1",
      "--start",
      "--json",
      ...api(),
      ...as("operator"),
    ]);
    assert.equal(created.code, 0, created.stderr);
    const status = JSON.parse(created.stdout);
    assert.equal(status.state, "running");
    assert.equal(status.meters, 3);
    const id: string = status.campaign_id;

    // Watch while the concentrator reports, one meter at a time.
    const watching = cli(["status", id, "--watch", "--interval-ms", "50", ...api(), ...as("viewer")]);
    for (const meterId of ["MTR-1", "MTR-2", "MTR-3"]) {
      await new Promise((r) => setTimeout(r, 150));
      await client.publishAsync(
        firmwareProgressTopic("DCU-1"),
        Buffer.from(
          encodeFirmwareProgress({
            campaignId: id,
            dcuId: "DCU-1",
            reports: [
              {
                meterId,
                state: "done",
                reason: null,
                blocksDone: 8,
                blocksTotal: 8,
                activeChecksum: toHex(update.checksum),
                firmwareId: "app 1.1.0; comms 1.0.0",
                atMs: 1,
              },
            ],
          }),
        ),
        { qos: 1 },
      );
    }
    const watched = await watching;
    assert.equal(watched.code, 0, watched.stderr);
    assert.match(watched.stdout, /completed/);
    assert.match(watched.stdout, /confirmed 3 failed 0 rolled_back 0/);
    assert.match(watched.stderr, /3\/3 meters completed/, "progress lines while watching (no TTY: no bar)");

    // A rollback campaign made through the API, cancelled through the CLI; the CLI's refusals (each spawn
    // starts a node process, so the independent ones run side by side).
    const rb = await fetch(`${h.apiUrl}/api/campaigns`, {
      method: "POST",
      headers: { authorization: `Bearer ${h.tokens.admin}`, "content-type": "application/json" },
      body: JSON.stringify({
        name: "rb",
        kind: "rollback_app",
        image_checksum: "ab".repeat(32),
        targets: {},
      }),
    });
    const rbId = ((await rb.json()) as { campaign_id: string }).campaign_id;
    const [denied, cancelled] = await Promise.all([
      cli(["rollback", "--golden", "ab".repeat(32), "--dcu", "DCU-1", ...api(), ...as("operator")]),
      cli(["cancel", rbId, "--forced", ...api(), ...as("operator")]),
    ]);
    assert.equal(denied.code, 1);
    assert.match(denied.stderr, /FORBIDDEN/);
    assert.equal(cancelled.code, 0, cancelled.stderr);
    assert.match(cancelled.stdout, /rollback_app cancelled/);
  });
});
