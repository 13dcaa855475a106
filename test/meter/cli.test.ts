import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";

const BIN = join(import.meta.dirname, "../../bin/amiproof.js");

function runFor(ms: number, args: string[]): Promise<{ code: number | null; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [BIN, ...args]);
    let stderr = "";
    child.stderr.on("data", (chunk: Buffer) => {
      stderr += chunk.toString();
      if (stderr.includes("Ctrl-C to stop")) setTimeout(() => child.kill("SIGINT"), ms);
    });
    child.on("exit", (code) => resolve({ code, stderr }));
  });
}

test("amiproof meter runs virtual meters in real time, stops cleanly on SIGINT and keeps registers on disk", async () => {
  const dir = mkdtempSync(join(tmpdir(), "amiproof-meter-"));
  const first = await runFor(2500, ["meter", "--id", "MTR-CLI", "--count", "3", "--data", dir]);
  assert.equal(first.code, 0, first.stderr);
  assert.match(first.stderr, /3 meters .* sealed events [1-9]/);
  const second = await runFor(1500, ["meter", "--id", "MTR-CLI", "--count", "3", "--data", dir]);
  assert.equal(second.code, 0, second.stderr);
  // The second run's sealed log continues the first (POWER_DOWN + POWER_UP records on top).
  const events = (s: string) => Number(/sealed events (\d+)/.exec(s.split("stopped")[1] ?? "")?.[1]);
  assert.ok(
    events(second.stderr) > events(first.stderr),
    `${events(second.stderr)} vs ${events(first.stderr)}`,
  );
});

test("amiproof meter refuses a bad --count", async () => {
  const result = await runFor(0, ["meter", "--id", "X", "--count", "0"]);
  assert.equal(result.code, 2);
});
