import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import { join } from "node:path";
import { test } from "node:test";

const BIN = join(import.meta.dirname, "../../bin/amiproof.js");

test("amiproof meter --listen serves DLMS; amiproof dlms get reads it (public, LLS, HLS) with clear errors", async () => {
  const meter = spawn(process.execPath, [BIN, "meter", "--id", "MTR-CLI-DLMS", "--listen", "0"]);
  let stderr = "";
  const port = await new Promise<number>((resolve, reject) => {
    meter.stderr.on("data", (chunk: Buffer) => {
      stderr += chunk.toString();
      const m = /TCP ports (\d+)/.exec(stderr);
      if (m) resolve(Number(m[1]));
    });
    meter.on("exit", () => reject(new Error(stderr)));
  });
  try {
    const get = (...args: string[]) =>
      spawnSync(process.execPath, [BIN, "dlms", "get", `127.0.0.1:${port}`, ...args], { encoding: "utf8" });
    const id = get("0.0.96.1.0.255", "--json");
    assert.equal(id.status, 0, id.stderr);
    assert.deepEqual(JSON.parse(id.stdout), { "visible-string": "MTR-CLI-DLMS" });
    const denied = get("1.0.1.8.0.255");
    assert.equal(denied.status, 1);
    assert.match(denied.stderr, /ACCESS_DENIED/);
    const wrong = get("1.0.1.8.0.255", "--client", "1", "--password", "nope");
    assert.match(wrong.stderr, /ASSOCIATION_REFUSED.*authentication failure/);
    const lls = get("1.0.1.8.0.255:3", "--client", "1", "--password", "12345678", "--json");
    assert.equal(lls.status, 0, lls.stderr);
    assert.match(lls.stdout, /"unit_name":"Wh"/);
    const hls = get("1.0.1.8.0.255", "--hls", "--json");
    assert.equal(hls.status, 0, hls.stderr);
    const badKeys = get("1.0.1.8.0.255", "--hls", "--ek", "00000000000000000000000000000000");
    assert.equal(badKeys.status, 1);
    assert.match(badKeys.stderr, /wrong password or keys/);
  } finally {
    meter.kill("SIGINT");
  }
});
