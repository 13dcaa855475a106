import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";

// `amiproof headend`: starts with an embedded broker, prints where the API and the admin token are,
// answers /health, and stops cleanly on SIGTERM. Usage errors exit 2.

const BIN = join(import.meta.dirname, "../../bin/amiproof.js");
const dir = mkdtempSync(join(tmpdir(), "amiproof-headend-cli-"));
after(() => rmSync(dir, { recursive: true, force: true }));

test("amiproof headend runs, prints its API and token file, and exits 0 on SIGTERM", async () => {
  const child = spawn(
    process.execPath,
    [BIN, "headend", "--data", dir, "--http", "0", "--mqtt-port", "0", "--log-level", "silent"],
    { stdio: ["ignore", "pipe", "pipe"] },
  );
  let stderr = "";
  child.stderr.on("data", (chunk: Buffer) => {
    stderr += chunk.toString();
  });
  const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)));
  const started = Date.now();
  while (!stderr.includes("Ctrl-C to stop")) {
    if (Date.now() - started > 60_000 || child.exitCode !== null) {
      child.kill("SIGKILL");
      assert.fail(`no start banner; stderr: ${stderr}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  const api = /API (http:\/\/\S+)/.exec(stderr)?.[1];
  assert.ok(api !== undefined, stderr);
  assert.match(stderr, /embedded MQTT broker mqtt:\/\/127\.0\.0\.1:\d+/);
  const tokenFile = /admin token in (\S+)/.exec(stderr)?.[1];
  assert.equal(tokenFile, join(dir, "tokens", "admin.token"));
  assert.equal(statSync(tokenFile).mode & 0o777, 0o600);
  const health = (await fetch(`${api}/health`).then((r) => r.json())) as { status: string };
  assert.equal(health.status, "ok");
  const token = readFileSync(tokenFile, "utf8").trim();
  const response = await fetch(`${api}/api/whoami`, { headers: { authorization: `Bearer ${token}` } });
  const whoami = (await response.json()) as { role: string };
  assert.equal(whoami.role, "admin");
  child.kill("SIGTERM");
  assert.equal(await exited, 0, stderr);
  assert.match(stderr, /stopped/);
});

test("usage errors exit 2", () => {
  const badPort = spawnSync(process.execPath, [BIN, "headend", "--http", "99999", "--data", dir], {
    encoding: "utf8",
  });
  assert.equal(badPort.status, 2);
  assert.match(badPort.stderr, /--http must be a TCP port/);
  const badDb = spawnSync(process.execPath, [BIN, "headend", "--db", "mysql://x", "--data", dir], {
    encoding: "utf8",
  });
  assert.equal(badDb.status, 2);
  assert.match(badDb.stderr, /sqlite:PATH or postgres/);
});
