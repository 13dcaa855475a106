import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";

const BIN = join(import.meta.dirname, "../../bin/amiproof.js");
const run = (...args: string[]) => spawnSync(process.execPath, [BIN, ...args], { encoding: "utf8" });

test("pki init → firmware build → firmware inspect (readable and --json); tampered and refused images fail", () => {
  const dir = mkdtempSync(join(tmpdir(), "amiproof-fw-cli-"));
  const pki = join(dir, "pki");
  assert.equal(run("pki", "init", pki).status, 0);
  assert.equal(statSync(join(pki, "firmware-signing.key.pem")).mode & 0o777, 0o600);
  for (const name of [
    "ca.crt.pem",
    "meter.crt.pem",
    "meter.pub.pem",
    "concentrator.key.pem",
    "concentrator.crt.pem",
  ])
    assert.ok(statSync(join(pki, name)).size > 0, name);
  assert.equal(run("pki", "init", pki).status, 2, "refuses a non-empty directory");
  writeFileSync(join(dir, "payload.bin"), Buffer.alloc(2000, 7));
  const key = join(pki, "firmware-signing.key.pem");
  const cert = join(pki, "firmware-signing.crt.pem");
  const out = join(dir, "app.img");
  const built = run(
    "firmware",
    "build",
    "--component",
    "app",
    "--version",
    "2.1.0",
    "--key",
    key,
    "--cert",
    cert,
    "--in",
    join(dir, "payload.bin"),
    "--out",
    out,
  );
  assert.equal(built.status, 0, built.stderr);
  const inspected = run("firmware", "inspect", out, "--ca", join(pki, "ca.crt.pem"), "--json");
  assert.equal(inspected.status, 0, inspected.stderr);
  const report = JSON.parse(inspected.stdout) as Record<string, unknown>;
  assert.equal(report.component, "app");
  assert.equal(report.version, "2.1.0");
  assert.equal(report.signature_valid, true);
  assert.equal(report.chain_checked, true);
  assert.equal(report.problem, null);
  assert.equal((report.certificate as { code_signing: boolean }).code_signing, true);
  assert.match(run("firmware", "inspect", out).stdout, /signature valid/);

  const bytes = readFileSync(out);
  bytes[60]! ^= 1;
  writeFileSync(join(dir, "bad.img"), bytes);
  const bad = run("firmware", "inspect", join(dir, "bad.img"));
  assert.equal(bad.status, 1);
  assert.match(bad.stderr, /ERROR_CRC_MISMATCH/);
  const otherCa = join(dir, "other");
  run("pki", "init", otherCa);
  const untrusted = run("firmware", "inspect", out, "--ca", join(otherCa, "ca.crt.pem"));
  assert.equal(untrusted.status, 1);
  assert.match(untrusted.stdout, /SIGN_AUTH_FAIL/);
  const later = run(
    "firmware",
    "inspect",
    out,
    "--ca",
    join(pki, "ca.crt.pem"),
    "--at",
    "2099-01-01",
    "--json",
  );
  assert.equal(later.status, 1, "the certificate has expired at that meter time");
  assert.equal((JSON.parse(later.stdout) as { problem: string }).problem, "SIGN_AUTH_FAIL (CERT_EXPIRED)");

  // A meter's key and device certificate from the same CA cannot sign firmware a meter accepts.
  const byMeter = join(dir, "by-meter.img");
  const meterBuilt = run(
    "firmware",
    "build",
    "--component",
    "comms",
    "--version",
    "9.0.0",
    "--key",
    join(pki, "meter.key.pem"),
    "--cert",
    join(pki, "meter.crt.pem"),
    "--in",
    join(dir, "payload.bin"),
    "--out",
    byMeter,
  );
  assert.equal(meterBuilt.status, 0, meterBuilt.stderr);
  const meterInspected = run("firmware", "inspect", byMeter, "--ca", join(pki, "ca.crt.pem"));
  assert.equal(meterInspected.status, 1);
  assert.match(meterInspected.stdout, /SIGN_AUTH_FAIL \(NOT_CODE_SIGNING\)/);
  assert.match(meterInspected.stdout, /NOT for code signing/);

  const metrology = run(
    "firmware",
    "build",
    "--component",
    "metrology",
    "--version",
    "1",
    "--key",
    key,
    "--cert",
    cert,
    "--in",
    join(dir, "payload.bin"),
    "--out",
    join(dir, "m.img"),
  );
  assert.equal(metrology.status, 2);
  assert.match(metrology.stderr, /never changes/);
});
