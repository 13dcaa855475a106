import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { FileSecureElement } from "../../src/evidence/index.ts";
import { MqttHeadEnd, startAedes, until } from "./mqtt-helpers.ts";

const BIN = new URL("../../bin/amiproof.js", import.meta.url).pathname;

function dcu(...args: string[]) {
  return spawnSync(process.execPath, [BIN, "dcu", ...args], { encoding: "utf8", timeout: 60_000 });
}

test("amiproof dcu --meter refuses what is not dlms://HOST:PORT and bad meter credentials, exit 2", () => {
  const dir = mkdtempSync(join(tmpdir(), "amiproof-dcu-cli-"));
  try {
    const base = ["--id", "D1", "--hes", "mqtt://127.0.0.1:1", "--data", dir];
    const url = dcu(...base, "--meter", "tcp://10.0.0.7:4059");
    assert.equal(url.status, 2);
    assert.match(url.stderr, /--meter must look like dlms:\/\/HOST:PORT/);
    const auth = dcu(...base, "--meter", "dlms://10.0.0.7:4059", "--meter-auth", "hls5");
    assert.equal(auth.status, 2);
    assert.match(auth.stderr, /--meter-auth must be hls, lls or none/);
    const key = dcu(...base, "--meter", "dlms://10.0.0.7:4059", "--meter-ek", "00");
    assert.equal(key.status, 2);
    assert.match(key.stderr, /--meter-ek must be 32 hex digits/);
    assert.deepEqual(readdirSync(dir), [], "nothing written on a usage error");
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("amiproof dcu usage errors exit 2 with the reason", () => {
  const missing = dcu("--id", "D1");
  assert.equal(missing.status, 2);
  assert.match(missing.stderr, /--id, --hes and --data are required/);
  const noMeters = dcu("--id", "D1", "--hes", "mqtt://127.0.0.1:1", "--data", "/tmp/x");
  assert.equal(noMeters.status, 2);
  assert.match(noMeters.stderr, /--sim-meters N/);
  const badId = dcu(
    "--id",
    "a/b",
    "--hes",
    "mqtt://127.0.0.1:1",
    "--data",
    "/tmp/amiproof-never",
    "--sim-meters",
    "1",
  );
  assert.equal(badId.status, 2);
  assert.match(badId.stderr, /dcu id must be/);
  const badMeter = dcu("--id", "D1", "--hes", "mqtt://127.0.0.1:1", "--data", "/tmp/x", "--meter", "tcp://x");
  assert.equal(badMeter.status, 2);
});

test("with the head-end unreachable, batches wait in the outbox; SIGTERM stops cleanly; the outbox exports as a bundle that amiproof verify accepts", async () => {
  const dir = mkdtempSync(join(tmpdir(), "amiproof-dcu-cli-"));
  try {
    const child = spawn(
      process.execPath,
      [BIN, "dcu", "--id", "CLI-1", "--hes", "mqtt://127.0.0.1:1", "--data", dir, "--sim-meters", "3"].concat(
        ["--poll-interval-ms", "100", "--reading-interval-ms", "100", "--batch-age-ms", "200", "--quiet"],
      ),
      { stdio: "ignore" },
    );
    const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)));
    const started = Date.now();
    while (readdirOr(join(dir, "outbox")).length < 2) {
      assert.ok(Date.now() - started < 60_000, "no batch sealed within a minute");
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    child.kill("SIGTERM");
    assert.equal(await exited, 0);
    assert.ok(existsSync(join(dir, "clean-shutdown")));
    const packs = JSON.parse(readFileSync(join(dir, "evidence-packs.json"), "utf8"));
    assert.equal(packs.power.reset_reason, "POWER_ON");
    assert.equal(packs.uplink.link_state, "DOWN");
    assert.ok(packs.uplink.reconnect_attempts >= 1);
    const out = join(dir, "bundle.json");
    const exported = dcu("--id", "CLI-1", "--data", dir, "--export-bundle", out);
    assert.equal(exported.status, 0, exported.stderr);
    const verified = spawnSync(process.execPath, [BIN, "verify", out], { encoding: "utf8", timeout: 60_000 });
    assert.equal(verified.status, 0, verified.stdout + verified.stderr);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("amiproof dcu --meter dlms://HOST:PORT polls a spawned amiproof meter over HLS-GMAC (the defaults of both): verified batches reach the broker, the meter's id is remembered", async () => {
  const dir = mkdtempSync(join(tmpdir(), "amiproof-dcu-cli-dlms-"));
  const broker = await startAedes();
  const meterId = `MTR-CLI-${process.pid}`;
  const meter = spawn(
    process.execPath,
    [BIN, "meter", "--id", meterId, "--listen", "0", "--profile-period-ms", "1000"],
    {
      stdio: ["ignore", "ignore", "pipe"],
    },
  );
  let dcuChild: ReturnType<typeof spawn> | null = null;
  const publicKey = FileSecureElement.open(join(dir, "se"), "CLI-DLMS").publicKey("batch_sign");
  const consumer = await MqttHeadEnd.connect(broker.url, "CLI-DLMS", publicKey);
  try {
    const port = await new Promise<number>((resolve, reject) => {
      let text = "";
      meter.stderr!.on("data", (chunk: Buffer) => {
        text += chunk.toString();
        const match = /TCP ports (\d+)/.exec(text);
        if (match !== null) resolve(Number(match[1]));
      });
      meter.once("exit", (code) => reject(new Error(`amiproof meter exited ${code}: ${text}`)));
    });
    const child = spawn(
      process.execPath,
      [
        BIN,
        "dcu",
        "--id",
        "CLI-DLMS",
        "--hes",
        broker.url,
        "--data",
        dir,
        "--meter",
        `dlms://127.0.0.1:${port}`,
      ].concat(["--poll-interval-ms", "300", "--batch-age-ms", "300", "--quiet"]),
      { stdio: "ignore" },
    );
    dcuChild = child;
    const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)));
    await until(
      () => [...consumer.headEnd.readings.values()].filter((r) => r.meterId === meterId).length >= 3,
      "three readings of the DLMS meter",
      60_000,
    );
    // The firmware-campaign link took its MQTT session beside the batch link: its images cache exists.
    await until(() => existsSync(join(dir, "images")), "the firmware link's images directory", 60_000);
    child.kill("SIGTERM");
    assert.equal(await exited, 0);
    assert.deepEqual(consumer.headEnd.problems, []);
    assert.deepEqual(JSON.parse(readFileSync(join(dir, "meters.json"), "utf8")), {
      [`dlms://127.0.0.1:${port}`]: meterId,
    });
  } finally {
    meter.kill("SIGKILL");
    dcuChild?.kill("SIGKILL");
    await consumer.close();
    await broker.close();
    rmSync(dir, { recursive: true, force: true });
  }
});

function readdirOr(path: string): string[] {
  try {
    return readdirSync(path).filter((name) => name.endsWith(".batch"));
  } catch {
    return [];
  }
}
