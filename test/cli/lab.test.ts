import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";

const BIN = join(import.meta.dirname, "../../bin/amiproof.js");
const run = (...args: string[]) => spawnSync(process.execPath, [BIN, ...args], { encoding: "utf8" });

test("lab run --json prints the contract's one object; same seed → same bytes; exit 0", () => {
  const a = run("lab", "run", "storage-mid-commit", "--meters", "3", "--seed", "5", "--json");
  assert.equal(a.status, 0, a.stderr);
  const report = JSON.parse(a.stdout) as Record<string, unknown>;
  assert.deepEqual(Object.keys(report), ["scenario", "seed", "meters", "passed", "predicates", "figures"]);
  assert.equal(report.passed, true);
  const b = run("lab", "run", "storage-mid-commit", "--meters", "3", "--seed", "5", "--json");
  assert.equal(a.stdout, b.stdout);
  assert.equal(a.stderr, "", "no progress bar when stderr is not a TTY");
});

test("a failing run exits 1 and names the seed, the first violated predicate and its evidence", () => {
  const r = run(
    "lab",
    "run",
    "backhaul-retry-storm",
    "--meters",
    "3",
    "--seed",
    "2",
    "--mutate",
    "hes_ack_after_commit",
  );
  assert.equal(r.status, 1, r.stdout + r.stderr);
  assert.match(r.stdout, /FAILED with seed 2: first violated predicate \w+: .+/);
  assert.match(r.stdout, /replay: amiproof lab run backhaul-retry-storm --seed 2 --meters 3/);
  const j = run(
    "lab",
    "run",
    "backhaul-retry-storm",
    "--meters",
    "3",
    "--seed",
    "2",
    "--mutate",
    "hes_ack_after_commit",
    "--json",
  );
  assert.equal(j.status, 1);
  assert.equal(JSON.parse(j.stdout).passed, false);
  assert.match(j.stderr, /FAILED with seed 2: first violated predicate/);
});

test("--evidence-out writes the concentrator's packs and diagnose routes them (link-first)", () => {
  const dir = mkdtempSync(join(tmpdir(), "amiproof-lab-"));
  const file = join(dir, "status.json");
  const r = run("lab", "run", "field-bursty-retries", "--meters", "3", "--evidence-out", file);
  assert.equal(r.status, 0, r.stdout + r.stderr);
  assert.equal(JSON.parse(readFileSync(file, "utf8")).format, "amiproof-dcu-status");
  const d = run("diagnose", file, "--json");
  assert.equal(d.status, 1, d.stderr);
  const diagnosis = JSON.parse(d.stdout) as { findings: { branch: string; bucket: string }[] };
  assert.ok(
    diagnosis.findings.some((f) => f.branch === "COMMITTED_NOT_UPLINKED" && f.bucket === "link-first"),
  );
  const text = run("diagnose", file);
  assert.match(text.stdout, /first probe: /);
});

test("diagnose refuses what is not evidence (exit 2) and routes a verified bundle", () => {
  const dir = mkdtempSync(join(tmpdir(), "amiproof-diag-"));
  const junk = join(dir, "junk.json");
  spawnSync("sh", ["-c", `echo '{"format":"nope"}' > ${junk}`]);
  const bad = run("diagnose", junk);
  assert.equal(bad.status, 2);
  assert.match(bad.stderr, /not a concentrator evidence file/);
  const sample = join(dir, "sample.json");
  assert.equal(run("evidence", "sample", "--records", "20", "--out", sample).status, 0);
  const d = run("diagnose", sample, "--json");
  assert.ok(d.status === 0 || d.status === 1, d.stderr);
  assert.equal(JSON.parse(d.stdout).format, "amiproof-diagnosis");
});
