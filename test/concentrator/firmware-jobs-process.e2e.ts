import assert from "node:assert/strict";
import { type ChildProcess, execFile, spawn } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { promisify } from "node:util";
import { generateP256KeyPair, toHex } from "../../src/evidence/index.ts";
import { FIRMWARE_CA_FILE, OTP_MASTER_KEY_FILE } from "../../src/headend/index.ts";
import { GOLDEN_APP, GOLDEN_COMMS, image, pki } from "../meter/firmware-harness.ts";

// Issue 9 acceptance 1 and 2 on real processes: `amiproof headend` (its own process: HTTP API, embedded
// MQTT broker, campaign service), a second process with two concentrators' firmware links and ten DLMS
// meters (firmware-jobs-fixture.ts; one meter's new application never kicks its watchdog), and the
// operator's `amiproof campaign` commands. Run with `node scripts/run-tests.mjs .e2e.ts test/concentrator`.

const BIN = join(import.meta.dirname, "../../bin/amiproof.js");
const FIXTURE = join(import.meta.dirname, "firmware-jobs-fixture.ts");
const run = promisify(execFile);
const METERS = 10;
const WDT_METER = "MTR-P04";

function collect(child: ChildProcess): { out: () => string; err: () => string } {
  let out = "";
  let err = "";
  child.stdout?.on("data", (c: Buffer) => {
    out += c.toString();
  });
  child.stderr?.on("data", (c: Buffer) => {
    err += c.toString();
  });
  return { out: () => out, err: () => err };
}

async function until(what: string, check: () => boolean, ms = 60_000): Promise<void> {
  const started = Date.now();
  while (!check()) {
    if (Date.now() - started > ms) assert.fail(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

async function campaign(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await run(process.execPath, [BIN, "campaign", ...args]);
    return { code: 0, stdout, stderr };
  } catch (error) {
    const e = error as { code: number; stdout: string; stderr: string };
    return { code: e.code, stdout: e.stdout, stderr: e.stderr };
  }
}

test("real processes: update with a watchdog failure, then an OTP-signed rollback of the fleet to golden", async () => {
  const dir = mkdtempSync(join(tmpdir(), "amiproof-campaign-e2e-"));
  const data = join(dir, "headend");
  const children: ChildProcess[] = [];
  try {
    await import("node:fs").then((fs) => fs.mkdirSync(data, { recursive: true }));
    writeFileSync(join(data, FIRMWARE_CA_FILE), pki.ca.certificatePem);
    writeFileSync(join(dir, "ca.der"), pki.ca.certificateDer);
    writeFileSync(join(dir, "golden-app.afw"), GOLDEN_APP.bytes);
    writeFileSync(join(dir, "golden-comms.afw"), GOLDEN_COMMS.bytes);
    const headend = spawn(
      process.execPath,
      [BIN, "headend", "--data", data, "--http", "0", "--mqtt-port", "0", "--log-level", "silent"],
      { stdio: ["ignore", "pipe", "pipe"] },
    );
    children.push(headend);
    const h = collect(headend);
    await until("the head-end's banner", () => h.err().includes("Ctrl-C to stop"));
    const api = /API (http:\/\/\S+)/.exec(h.err())![1]!;
    const mqtt = /embedded MQTT broker (mqtt:\/\/\S+)/.exec(h.err())![1]!;
    const admin = ["--api", api, "--token-file", join(data, "tokens", "admin.token")];
    const { readFileSync } = await import("node:fs");
    const adminToken = readFileSync(join(data, "tokens", "admin.token"), "utf8").trim();

    const fixture = spawn(
      process.execPath,
      [
        "--import",
        "tsx",
        FIXTURE,
        mqtt,
        join(data, OTP_MASTER_KEY_FILE),
        join(dir, "images"),
        String(METERS),
        "2",
        WDT_METER,
        dir,
      ],
      { stdio: ["ignore", "pipe", "pipe"] },
    );
    children.push(fixture);
    const f = collect(fixture);
    await until("the concentrators and meters", () => f.out().includes('"ready":true'));
    const ready = JSON.parse(f.out().split("\n")[0]!) as { meters: { meter_id: string; dcu_id: string }[] };
    const provisioned = await fetch(`${api}/api/meters`, {
      method: "POST",
      headers: { authorization: `Bearer ${adminToken}`, "content-type": "application/json" },
      body: JSON.stringify({
        meters: ready.meters.map((m) => ({
          ...m,
          event_seal_public_key: toHex(generateP256KeyPair().publicKey),
          model: "AMI-1PH",
        })),
      }),
    });
    assert.ok(provisioned.ok);

    const update = image("app", 1_001_000, { size: 3000 });
    const file = join(dir, "app-1.1.0.afw");
    writeFileSync(file, update.bytes);
    const stagger = ["--window-minutes", "0.05", "--session-limit", "3"];
    const created = await campaign([
      "create",
      "--image",
      file,
      "--success-share",
      "0.9",
      ...stagger,
      "--start",
      "--json",
      ...admin,
    ]);
    assert.equal(created.code, 0, created.stderr);
    const id = JSON.parse(created.stdout).campaign_id as string;
    const watched = await campaign(["status", id, "--watch", "--interval-ms", "200", ...admin]);
    assert.equal(watched.code, 0, `${watched.stdout}\n${watched.stderr}`);
    assert.match(watched.stdout, /completed/);
    assert.match(watched.stdout, /confirmed 9 failed 0 rolled_back 1/);
    assert.match(watched.stdout, /WDT_REBOOT_LOOP×1/);

    const rollback = await campaign([
      "rollback",
      "--golden",
      toHex(GOLDEN_APP.checksum),
      ...stagger,
      "--start",
      "--json",
      ...admin,
    ]);
    assert.equal(rollback.code, 0, rollback.stderr);
    const rbId = JSON.parse(rollback.stdout).campaign_id as string;
    const rbWatched = await campaign(["status", rbId, "--watch", "--interval-ms", "200", ...admin]);
    assert.equal(rbWatched.code, 0, `${rbWatched.stdout}\n${rbWatched.stderr}`);
    assert.match(rbWatched.stdout, new RegExp(`confirmed ${METERS} failed 0 rolled_back 0`));

    fixture.kill("SIGTERM");
    await until("the fixture's summary", () => f.out().includes('"summary"'), 20_000);
    const summary = JSON.parse(f.out().trim().split("\n").at(-1)!).summary as Record<
      string,
      { app_checksum: string; registers_unchanged: boolean }
    >;
    assert.equal(Object.keys(summary).length, METERS);
    for (const [meterId, m] of Object.entries(summary)) {
      assert.equal(m.app_checksum, toHex(GOLDEN_APP.checksum), `${meterId} back on golden`);
      assert.equal(m.registers_unchanged, true, `${meterId} billing registers unchanged`);
    }
    const exited = new Promise<number | null>((resolve) => headend.once("exit", (code) => resolve(code)));
    headend.kill("SIGTERM");
    assert.equal(await exited, 0, h.err());
  } finally {
    for (const c of children) if (c.exitCode === null) c.kill("SIGKILL");
    rmSync(dir, { recursive: true, force: true });
  }
});
