import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";

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

function readdirOr(path: string): string[] {
  try {
    return readdirSync(path).filter((name) => name.endsWith(".batch"));
  } catch {
    return [];
  }
}
