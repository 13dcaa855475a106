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
// the concentrators' reports complete it, rollback refused to an operator, cancel, bad usage.

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

  test("upload, create --start, watch to completion, rollback roles, cancel, bad usage", async () => {
    const update = image("app", 1_001_000);
    const file = join(dir, "app.afw");
    writeFileSync(file, update.bytes);
    const up = await cli(["upload", file, ...api(), ...as("admin")]);
    assert.equal(up.code, 0, `${up.stderr} ${up.stdout}`);
    assert.match(up.stdout, new RegExp(`app 1\\.1\\.0 ${toHex(update.checksum)}`));
    const refusedUpload = await cli(["upload", file, ...api(), ...as("operator")]);
    assert.equal(refusedUpload.code, 1);
    assert.match(refusedUpload.stderr, /403 FORBIDDEN/);

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

    const rollbackArgs = ["rollback", "--golden", "ab".repeat(32), "--dcu", "DCU-1"];
    const denied = await cli([...rollbackArgs, ...api(), ...as("operator")]);
    assert.equal(denied.code, 1);
    assert.match(denied.stderr, /FORBIDDEN/);
    const rb = await cli([...rollbackArgs, "--app-only", "--json", ...api(), ...as("admin")]);
    assert.equal(rb.code, 0, rb.stderr);
    const rbStatus = JSON.parse(rb.stdout);
    assert.equal(rbStatus.kind, "rollback_app");
    assert.equal(rbStatus.state, "pending_approval");
    const cancelled = await cli(["cancel", rbStatus.campaign_id, "--forced", ...api(), ...as("operator")]);
    assert.equal(cancelled.code, 0, cancelled.stderr);
    assert.match(cancelled.stdout, /cancelled/);

    const list = await cli(["status", ...api(), ...as("viewer")]);
    assert.equal(list.code, 0);
    assert.equal(list.stdout.split("\n").filter((l) => l.startsWith("C")).length, 2);
    const noToken = await cli(["status", ...api()]);
    assert.equal(noToken.code, 2);
    assert.match(noToken.stderr, /token/);
    const missing = await cli(["status", "C-nope", ...api(), ...as("viewer")]);
    assert.equal(missing.code, 1);
    assert.match(missing.stderr, /404/);
  });
});
