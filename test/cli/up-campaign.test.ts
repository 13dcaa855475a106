// issue 9 on `amiproof up` out of the box: its PKI (DATA/pki, made on the first start) signs an update, the
// head-end's repository accepts it, a campaign runs it through the real concentrator daemons' firmware
// links and the DLMS meters to confirmed, then an OTP-signed rollback (keys derived from the head-end's
// master key) brings every meter back to its golden image; billing registers are never touched.
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { startUp, type UpHandle } from "../../src/cli/up.ts";
import { toHex } from "../../src/evidence/index.ts";
import { buildFirmwareImage, parseVersion, signerFromPem } from "../../src/meter/index.ts";

async function until<T>(
  probe: () => Promise<T | null | undefined | false>,
  what: string,
  timeoutMs = 60_000,
): Promise<T> {
  const started = Date.now();
  for (;;) {
    const value = await probe();
    if (value !== null && value !== undefined && value !== false) return value;
    if (Date.now() - started > timeoutMs) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

/** The fields of the campaign API's answers this test reads. */
type Json = { campaign_id: string; state: string; checksum: string; counts: Record<string, number> };

async function call(up: UpHandle, role: "admin" | "viewer", method: string, path: string, body?: unknown) {
  const response = await fetch(`${up.apiUrl}${path}`, {
    method,
    headers: {
      authorization: `Bearer ${up.headend.tokens[role]}`,
      ...(body === undefined ? {} : { "content-type": "application/json" }),
    },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  const text = await response.text();
  return { status: response.status, json: (text.length > 0 ? JSON.parse(text) : {}) as Json };
}

/** Creates, approves and starts a campaign; waits until it completed and returns it. */
async function runCampaign(up: UpHandle, spec: Record<string, unknown>): Promise<Json> {
  const created = await call(up, "admin", "POST", "/api/campaigns", spec);
  assert.equal(created.status, 201, JSON.stringify(created.json));
  const id = created.json.campaign_id as string;
  assert.equal((await call(up, "admin", "POST", `/api/campaigns/${id}/approve`, {})).json.state, "approved");
  assert.equal((await call(up, "admin", "POST", `/api/campaigns/${id}/start`, {})).json.state, "running");
  return until(async () => {
    const c = (await call(up, "viewer", "GET", `/api/campaigns/${id}`)).json;
    if (c.state === "paused" || c.state === "cancelled")
      throw new Error(`campaign ${c.state}: ${JSON.stringify(c)}`);
    return c.state === "completed" ? c : null;
  }, `campaign ${spec.name} to complete`);
}

test("amiproof up runs firmware campaigns out of the box: update to confirmed, OTP rollback to golden", async () => {
  const dir = mkdtempSync(join(tmpdir(), "amiproof-up-campaign-"));
  const up = await startUp({
    meters: 4,
    dcus: 2,
    httpPort: 0,
    dataDir: dir,
    mqttPort: 0,
    dcuPrefix: `upc${process.pid}`,
    firmwareTickMs: 100,
  });
  try {
    assert.ok(up.firmware !== null && up.fleet !== null);
    const golden = up.firmware.goldenApp;
    const billing = new Map(up.fleet.meters.map((m) => [m.id, { ...m.registers }]));
    for (const m of up.fleet.meters)
      assert.equal(toHex(up.fleet.firmwareOf(m.id)!.runningChecksum("app")!), toHex(golden.checksum));

    // An update signed with the PKI `up` made, uploaded through the API (admin) into the repository.
    const update = buildFirmwareImage(
      { component: "app", version: parseVersion("1.1.0"), hwTarget: golden.hwTarget, expiresMs: 0 },
      new Uint8Array(2500).map((_, i) => (i * 13 + 1) & 0xff),
      new Uint8Array(
        Buffer.from(
          readFileSync(join(up.pkiDir, "firmware-signing.crt.pem"), "utf8").replace(
            /-----(BEGIN|END) CERTIFICATE-----|\s+/g,
            "",
          ),
          "base64",
        ),
      ),
      signerFromPem(readFileSync(join(up.pkiDir, "firmware-signing.key.pem"), "utf8")),
    );
    const uploaded = await call(up, "admin", "POST", "/api/campaigns/images", {
      image_base64: Buffer.from(update.bytes).toString("base64"),
    });
    assert.equal(uploaded.status < 300, true, JSON.stringify(uploaded.json));
    assert.equal(uploaded.json.checksum, toHex(update.checksum));

    const stagger = { window_minutes: 0.05, session_limit_per_dcu: 2 };
    const targets = { dcu_ids: up.dcus.map((d) => d.dcuId) };
    const updated = await runCampaign(up, {
      name: "app 1.1.0",
      kind: "update",
      image_checksum: uploaded.json.checksum,
      targets,
      ...stagger,
    });
    assert.equal(updated.counts.confirmed, 4, JSON.stringify(updated));
    for (const m of up.fleet.meters)
      assert.equal(toHex(up.fleet.firmwareOf(m.id)!.runningChecksum("app")!), toHex(update.checksum), m.id);

    const rolledBack = await runCampaign(up, {
      name: "back to golden",
      kind: "rollback_full",
      image_checksum: toHex(golden.checksum),
      targets,
      ...stagger,
    });
    assert.equal(rolledBack.counts.confirmed, 4, JSON.stringify(rolledBack));
    assert.equal(up.fleet.rollbacksRefused(), 0);
    for (const m of up.fleet.meters) {
      assert.equal(toHex(up.fleet.firmwareOf(m.id)!.runningChecksum("app")!), toHex(golden.checksum), m.id);
      assert.ok(
        m.registers.importActiveWh >= billing.get(m.id)!.importActiveWh,
        `${m.id} billing register kept`,
      );
    }
  } finally {
    await up.stop();
    rmSync(dir, { recursive: true, force: true });
  }
});
