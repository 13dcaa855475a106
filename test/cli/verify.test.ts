import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";

const BIN = join(import.meta.dirname, "../../bin/amiproof.js");
const run = (...args: string[]) => spawnSync(process.execPath, [BIN, ...args], { encoding: "utf8" });

test("evidence sample → verify exits 0; one changed byte of signed content → exit 1 naming record and reason", () => {
  const dir = mkdtempSync(join(tmpdir(), "amiproof-verify-"));
  const file = join(dir, "sample.json");
  const made = run("evidence", "sample", "--records", "40", "--out", file);
  assert.equal(made.status, 0, made.stderr);
  const ok = run("verify", file);
  assert.equal(ok.status, 0, ok.stdout + ok.stderr);
  assert.match(ok.stdout, /VALID/);

  const text = readFileSync(file, "utf8");
  const bundle = JSON.parse(text) as {
    meter_logs: { records: string[] }[];
    batch_chains: { batches: { records: string[] }[] }[];
  };
  // A byte inside the 10th sealed event record (its snapshot area) and one inside a batched reading value.
  const eventHex = bundle.meter_logs[0]!.records[9]!;
  const readingHex = bundle.batch_chains[0]!.batches[1]!.records[2]!;
  for (const [hex, byteOffset, expect] of [
    [eventHex, 40, /seq 10\)?: BAD_(CRC|SIGNATURE)/],
    [readingHex, 30, /record 3 .*BAD_CRC/],
  ] as const) {
    const at = text.indexOf(hex) + byteOffset * 2;
    const flipped = ((Number.parseInt(text.slice(at, at + 2), 16) ^ 0x01) & 0xff)
      .toString(16)
      .padStart(2, "0");
    const tampered = join(dir, "tampered.json");
    writeFileSync(tampered, text.slice(0, at) + flipped + text.slice(at + 2));
    const bad = run("verify", tampered);
    assert.equal(bad.status, 1, bad.stdout + bad.stderr);
    assert.match(bad.stdout, /INVALID: first bad record: /);
    assert.match(bad.stdout, expect);
  }
});

test("verify --json reports problems; unreadable or malformed bundles exit non-zero", () => {
  const dir = mkdtempSync(join(tmpdir(), "amiproof-verify-"));
  const file = join(dir, "b.json");
  assert.equal(run("evidence", "sample", "--records", "5", "--batches", "1", "--out", file).status, 0);
  const report = JSON.parse(run("verify", file, "--json").stdout) as {
    valid: boolean;
    counts: { eventRecords: number };
  };
  assert.equal(report.valid, true);
  assert.equal(report.counts.eventRecords, 5);
  writeFileSync(join(dir, "broken.json"), "{ not json");
  const broken = run("verify", join(dir, "broken.json"));
  assert.equal(broken.status, 1);
  assert.match(broken.stderr, /BAD_BUNDLE/);
  assert.equal(run("verify", join(dir, "missing.json")).status, 2);
  assert.equal(run("evidence", "sample", "--records", "0", "--out", file).status, 2);
});
