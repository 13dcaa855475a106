import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { type FirmwareLink, startFirmwareLink } from "../../src/concentrator/index.ts";
import { type ListeningServer, listenDlms } from "../../src/dlms/index.ts";
import { generateP256KeyPair, MemorySecureElement, toHex } from "../../src/evidence/index.ts";
import {
  deriveMeterOtpKey,
  FIRMWARE_CA_FILE,
  OTP_MASTER_KEY_FILE,
  startHeadend,
} from "../../src/headend/index.ts";
import {
  type FirmwareManager,
  Meter,
  meterObjectModel,
  RollbackCommandHandler,
  withRollbackCommand,
} from "../../src/meter/index.ts";
import { GOLDEN_APP, GOLDEN_COMMS, HW, image, pki } from "../meter/firmware-harness.ts";

// The whole chain in real time over real sockets: the head-end (HTTP API, embedded MQTT broker, campaign
// service), two concentrators' firmware links (MQTT jobs in, progress out, images directory, DLMS over
// TCP) and six meters serving DLMS/COSEM with the OTP rollback command. An update campaign, then an
// admin's rollback to golden, both confirmed remotely by checksum.

const PASSWORD = new TextEncoder().encode("12345678");

test("head-end ⇄ MQTT ⇄ concentrator links ⇄ DLMS meters: update, then OTP rollback, confirmed by checksum", async () => {
  const dir = mkdtempSync(join(tmpdir(), "amiproof-fw-link-"));
  const dataDir = join(dir, "headend");
  mkdirSync(dataDir, { recursive: true });
  writeFileSync(join(dataDir, FIRMWARE_CA_FILE), pki.ca.certificatePem);
  const h = await startHeadend({
    brokerPort: 0,
    httpPort: 0,
    dataDir,
    clientIdPrefix: `test-fw-link-${process.pid}`,
    logLevel: "silent",
  });
  const master = new Uint8Array(
    Buffer.from(readFileSync(join(dataDir, OTP_MASTER_KEY_FILE), "utf8").trim(), "hex"),
  );
  const servers: ListeningServer[] = [];
  const links: FirmwareLink[] = [];
  const meters = new Map<string, { meter: Meter; firmware: FirmwareManager; port: number; dcuId: string }>();
  try {
    for (let i = 1; i <= 6; i++) {
      const id = `MTR-L${i}`;
      const se = new MemorySecureElement(id, Uint8Array.of(i, 77));
      const meter = Meter.open({ id, secureElement: se, factoryTimeMs: Date.now() - 1000 }, Date.now());
      meter.step(Date.now(), { vRms: 230, i1Rms: 5, phiDeg: 5, frequencyHz: 50, harmonics: [] });
      const firmware = meter.attachFirmware({ caCertificateDer: pki.ca.certificateDer }, HW, () =>
        Date.now(),
      );
      firmware.provision(GOLDEN_APP, GOLDEN_COMMS);
      firmware.boot();
      const handler = new RollbackCommandHandler({
        meterId: id,
        otpKey: deriveMeterOtpKey(master, id),
        firmware,
        secureElement: se,
        nowMs: () => Date.now(),
        sealRefusal: (_r, snapshot) => meter.reportFirmwareIncident(Date.now(), "SIG_FAIL", snapshot),
      });
      const server = await listenDlms(
        0,
        withRollbackCommand(meterObjectModel({ meter, firmware, trueNowMs: () => Date.now() }), handler),
        { lowLevelPassword: PASSWORD },
      );
      servers.push(server);
      meters.set(id, { meter, firmware, port: server.port, dcuId: `DCU-L${(i % 2) + 1}` });
    }
    const billing = new Map([...meters].map(([id, m]) => [id, m.meter.registers]));
    for (const dcuId of ["DCU-L1", "DCU-L2"]) {
      links.push(
        await startFirmwareLink({
          dcuId,
          mqttUrl: h.mqttUrl,
          imagesDir: join(dir, dcuId, "images"),
          concurrency: 2,
          tickMs: 100,
          endpoint: (meterId) => {
            const m = meters.get(meterId);
            return m === undefined || m.dcuId !== dcuId
              ? undefined
              : { host: "127.0.0.1", port: m.port, password: PASSWORD };
          },
        }),
      );
    }
    const call = async (method: string, path: string, role: "admin" | "operator", body?: unknown) => {
      const r = await fetch(`${h.apiUrl}${path}`, {
        method,
        headers: {
          authorization: `Bearer ${h.tokens[role]}`,
          ...(body ? { "content-type": "application/json" } : {}),
        },
        ...(body ? { body: JSON.stringify(body) } : {}),
      });
      // biome-ignore lint/suspicious/noExplicitAny: API JSON
      const json: any = await r.json();
      assert.ok(r.ok, `${method} ${path}: ${JSON.stringify(json)}`);
      return json;
    };
    await call("POST", "/api/meters", "admin", {
      meters: [...meters].map(([meter_id, m]) => ({
        meter_id,
        event_seal_public_key: toHex(generateP256KeyPair().publicKey),
        dcu_id: m.dcuId,
        model: "AMI-1PH",
      })),
    });
    const runCampaign = async (role: "admin" | "operator", body: Record<string, unknown>) => {
      const c = await call("POST", "/api/campaigns", role, {
        window_minutes: 0.05,
        session_limit_per_dcu: 3,
        ...body,
      });
      await call("POST", `/api/campaigns/${c.campaign_id}/approve`, role, {});
      await call("POST", `/api/campaigns/${c.campaign_id}/start`, role, {});
      for (let i = 0; i < 600; i++) {
        const s = await call("GET", `/api/campaigns/${c.campaign_id}`, role);
        if (s.state !== "running") return s;
        await new Promise((r) => setTimeout(r, 100));
      }
      assert.fail("campaign did not finish within 60 s");
    };
    const update = image("app", 1_001_000, { size: 3000 });
    const uploaded = await call("POST", "/api/campaigns/images", "admin", {
      image_base64: Buffer.from(update.bytes).toString("base64"),
    });
    const updated = await runCampaign("operator", { name: "app 1.1.0", image_checksum: uploaded.checksum });
    assert.equal(updated.state, "completed", JSON.stringify(updated));
    assert.equal(updated.counts.confirmed, 6);
    for (const m of meters.values()) assert.deepEqual(m.firmware.runningChecksum("app"), update.checksum);
    for (const dcuId of ["DCU-L1", "DCU-L2"])
      assert.deepEqual(
        readdirSync(join(dir, dcuId, "images")),
        [`${uploaded.checksum}.afw`],
        "image cached once",
      );

    const rolledBack = await runCampaign("admin", {
      name: "back to golden",
      kind: "rollback_full",
      image_checksum: toHex(GOLDEN_APP.checksum),
    });
    assert.equal(rolledBack.state, "completed", JSON.stringify(rolledBack));
    assert.equal(rolledBack.counts.confirmed, 6);
    for (const [id, m] of meters) {
      assert.deepEqual(m.firmware.runningChecksum("app"), GOLDEN_APP.checksum);
      assert.deepEqual(m.meter.registers, billing.get(id), "billing registers unchanged");
    }
    assert.ok(links.every((l) => l.jobs.peakSessions <= 2));
  } finally {
    for (const l of links) await l.close();
    for (const s of servers) await s.close();
    await h.close();
    rmSync(dir, { recursive: true, force: true });
  }
});
