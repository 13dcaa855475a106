import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { fileURLToPath } from "node:url";

const BIN = fileURLToPath(new URL("../../bin/amiproof.js", import.meta.url));
// M-Bus documentation rev. 4.8 (m-bus.com), example RSP_UD with a variable data structure.
const GOLDEN =
  "68 1F 1F 68 08 02 72 78 56 34 12 24 40 01 07 55 00 00 00 03 13 15 31 00 DA 02 3B 13 01 8B 60 04 37 18 02 18 16";

function run(args: string[], input?: string) {
  return spawnSync(process.execPath, [BIN, "mbus", "decode", ...args], {
    input,
    encoding: "utf8",
    timeout: 60_000,
  });
}

test("mbus decode --json reads a frame on stdin and prints one JSON object", () => {
  const result = run(["--json"], `${GOLDEN}\n`);
  assert.equal(result.status, 0, result.stderr);
  const out = JSON.parse(result.stdout);
  assert.equal(out.valid, true);
  assert.equal(out.frame.type, "long");
  assert.equal(out.frame.c_name, "RSP_UD");
  const slave = out.telegram.slave;
  assert.equal(slave.identification, "12345678");
  assert.equal(slave.manufacturer, "PAD");
  assert.equal(slave.version, 1);
  assert.equal(slave.medium_name, "water");
  assert.equal(slave.access_number, 85);
  assert.equal(slave.status, 0);
  const [volume, flow, energy] = out.telegram.records;
  assert.deepEqual(
    [volume.quantity, volume.value, volume.unit, volume.raw_value, volume.raw_unit, volume.raw_exponent],
    ["volume", 12.565, "m3", 12565, "m3", -3],
  );
  assert.deepEqual([flow.function, flow.storage_number], ["maximum", 5]);
  assert.deepEqual(
    [energy.tariff, energy.subunit, energy.raw_unit, energy.manufacturer_specific],
    [2, 1, "Wh", false],
  );
});

test("mbus decode reads a file (plain hex) and prints the slave and every record", () => {
  const dir = mkdtempSync(join(tmpdir(), "amiproof-mbus-"));
  try {
    const file = join(dir, "frame.hex");
    writeFileSync(file, GOLDEN.replaceAll(" ", ""));
    const result = run([file]);
    assert.equal(result.status, 0, result.stderr);
    assert.match(result.stdout, /identification 12345678/);
    assert.match(result.stdout, /manufacturer PAD/);
    assert.match(result.stdout, /access number 85/);
    assert.match(result.stdout, /records {3}3/);
    assert.match(result.stdout, /energy: 786132000 J/);
    assert.match(result.stdout, /raw 21837 × 10\^1 Wh/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("mbus decode - exits 1 with the reason on stderr for a malformed frame", () => {
  const badChecksum = GOLDEN.replace(/18 16$/, "19 16");
  const result = run(["-"], badChecksum);
  assert.equal(result.status, 1);
  assert.match(result.stderr, /BAD_CHECKSUM/);
  const badHex = run([], "68 1F 1Q");
  assert.equal(badHex.status, 1);
  assert.match(badHex.stderr, /BAD_HEX/);
});
