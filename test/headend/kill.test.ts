// issue 7 acceptance 4: SIGKILL of the head-end during ingest, restart → nothing lost, nothing duplicated.
// Real processes: `amiproof headend` with its embedded broker on a fixed port, two `amiproof dcu
// --sim-meters` daemons publishing into it. The head-end is killed at random moments while batches flow
// (the broker dies with it, so the concentrators see their link drop and resend what was not acked),
// restarted on the same data directory, and finally left to drain. The store must then hold every
// released commit_id of each concentrator exactly once, each meter's readings contiguous and unique.
// AMIPROOF_HEADEND_KILLS sets the kill count (default 2 in npm test; the crash suite runs more).
import assert from "node:assert/strict";
import { type ChildProcess, spawn } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import Database from "better-sqlite3";
import { connect } from "mqtt";
import { FileSecureElement, SeededRandom, toHex } from "../../src/evidence/index.ts";

const KILLS = Number(process.env.AMIPROOF_HEADEND_KILLS ?? 2);
const SEED = Number(process.env.AMIPROOF_CRASH_SEED ?? 7_004);
const BIN = new URL("../../bin/amiproof.js", import.meta.url).pathname;
const METERS = 10;
const DCUS = ["KILL-A", "KILL-B"];

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const port = (server.address() as { port: number }).port;
      server.close(() => resolve(port));
    });
  });
}

async function until(predicate: () => boolean, what: string, timeoutMs: number): Promise<void> {
  const started = Date.now();
  while (!predicate()) {
    if (Date.now() - started > timeoutMs) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

interface Headend {
  readonly child: ChildProcess;
  readonly api: string;
  readonly exited: Promise<number | null>;
  stderr(): string;
}

async function startHeadendProcess(dir: string, mqttPort: number): Promise<Headend> {
  const child = spawn(
    process.execPath,
    [BIN, "headend", "--data", dir, "--http", "0", "--mqtt-port", String(mqttPort), "--log-level", "warn"],
    { stdio: ["ignore", "ignore", "pipe"] },
  );
  let stderr = "";
  child.stderr?.on("data", (chunk: Buffer) => {
    stderr = (stderr + chunk.toString()).slice(-8000);
  });
  const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)));
  await until(() => stderr.includes("Ctrl-C to stop") || child.exitCode !== null, "head-end banner", 30_000);
  assert.equal(child.exitCode, null, `head-end exited at start: ${stderr}`);
  assert.match(stderr, new RegExp(`embedded MQTT broker mqtt://127\\.0\\.0\\.1:${mqttPort}\\b`), stderr);
  const api = /API (http:\/\/\S+)/.exec(stderr)?.[1];
  assert.ok(api !== undefined, stderr);
  return { child, api, exited, stderr: () => stderr };
}

function spawnDcu(dcuId: string, url: string, dir: string): ChildProcess {
  return spawn(
    process.execPath,
    [
      BIN,
      "dcu",
      "--id",
      dcuId,
      "--hes",
      url,
      "--data",
      dir,
      "--sim-meters",
      String(METERS),
      "--poll-interval-ms",
      "100",
      "--reading-interval-ms",
      "100",
      "--batch-records",
      "40",
      "--batch-age-ms",
      "150",
      "--status-interval-ms",
      "250",
      "--quiet",
    ],
    { stdio: ["ignore", "ignore", "pipe"] },
  );
}

interface CommitPack {
  commit: { commit_id_released: number; commit_id_last: number; epoch: number };
}

test(`head-end SIGKILLed ${KILLS}× during ingest: nothing lost, nothing duplicated`, async () => {
  const random = new SeededRandom(SEED);
  const dir = mkdtempSync(join(tmpdir(), "amiproof-headend-kill-"));
  const headendDir = join(dir, "headend");
  const mqttPort = await freePort();
  const mqttUrl = `mqtt://127.0.0.1:${mqttPort}`;
  const dcus: ChildProcess[] = [];
  const status = new Map<string, CommitPack>();
  let headend = await startHeadendProcess(headendDir, mqttPort);
  const watcher = connect(mqttUrl, { clientId: `kill-watch-${process.pid}`, reconnectPeriod: 200 });
  // MQTT.js subscribes again by itself after each reconnect (the broker dies with each head-end).
  await watcher.subscribeAsync("ami/+/status", { qos: 1 });
  try {
    const token = readFileSync(join(headendDir, "tokens", "admin.token"), "utf8").trim();
    for (const dcuId of DCUS) {
      mkdirSync(join(dir, dcuId), { recursive: true });
      const key = FileSecureElement.open(join(dir, dcuId, "se"), dcuId).publicKey("batch_sign");
      const response = await fetch(`${headend.api}/api/concentrators`, {
        method: "POST",
        headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
        body: JSON.stringify({ dcu_id: dcuId, batch_sign_public_key: toHex(key) }),
      });
      assert.equal(response.status, 201, await response.text());
    }
    watcher.on("message", (topic, payload) => {
      const dcuId = topic.split("/")[1]!;
      status.set(dcuId, (JSON.parse(payload.toString()) as { packs: CommitPack }).packs);
    });
    for (const dcuId of DCUS) dcus.push(spawnDcu(dcuId, mqttUrl, join(dir, dcuId)));
    const released = () => DCUS.map((d) => status.get(d)?.commit.commit_id_released ?? 0);

    for (let kill = 0; kill < KILLS; kill++) {
      // Kill only while batches are flowing: something released since the last (re)start.
      const before = released();
      await until(
        () => released().every((r, i) => r > before[i]!),
        `ingest before kill ${kill + 1} (${headend.stderr()})`,
        60_000,
      );
      await new Promise((resolve) => setTimeout(resolve, random.intBetween(50, 700)));
      headend.child.kill("SIGKILL");
      await headend.exited;
      await new Promise((resolve) => setTimeout(resolve, random.intBetween(0, 400)));
      headend = await startHeadendProcess(headendDir, mqttPort);
    }
    // Drain: let the concentrators catch up on everything they committed, then stop them cleanly.
    const after = released();
    await until(() => released().every((r, i) => r > after[i]!), "ingest after the last restart", 60_000);
    const targets = DCUS.map((d) => status.get(d)!.commit.commit_id_last);
    await until(
      () => released().every((r, i) => r >= targets[i]!),
      `release through ${targets.join(", ")}`,
      90_000,
    );
    for (const child of dcus) child.kill("SIGTERM");
    await Promise.all(dcus.map((c) => new Promise((resolve) => c.once("exit", resolve))));
    headend.child.kill("SIGTERM");
    assert.equal(await headend.exited, 0, headend.stderr());
  } finally {
    watcher.end(true);
    for (const child of dcus) if (child.exitCode === null) child.kill("SIGKILL");
    if (headend.child.exitCode === null) headend.child.kill("SIGKILL");
  }

  const db = new Database(join(headendDir, "headend.db"), { readonly: true });
  try {
    for (const dcuId of DCUS) {
      const releasedThrough = status.get(dcuId)!.commit.commit_id_released;
      // One reading record per commit_id; its rows (one per OBIS value) share (meter_id, seq).
      const perCommit = db
        .prepare(
          "SELECT commit_id, count(DISTINCT meter_id || '/' || seq) AS readings FROM readings WHERE dcu_id = ? GROUP BY commit_id ORDER BY commit_id",
        )
        .all(dcuId) as { commit_id: number; readings: number }[];
      assert.ok(perCommit.length > 0, `${dcuId}: nothing stored`);
      const ids = perCommit.map((r) => r.commit_id);
      for (let id = 1; id <= releasedThrough; id++)
        assert.equal(ids[id - 1], id, `${dcuId}: commit_id ${id} released (acked) but not stored`);
      assert.ok(
        perCommit.every((r) => r.readings === 1),
        `${dcuId}: a commit_id names two readings`,
      );
    }
    const duplicates = db
      .prepare(
        "SELECT meter_id, seq, obis, count(*) AS n FROM readings GROUP BY meter_id, seq, obis HAVING n > 1",
      )
      .all();
    assert.deepEqual(duplicates, [], "a (meter_id, seq, obis) stored twice");
    const perMeter = db
      .prepare(
        "SELECT meter_id, min(seq) AS lo, max(seq) AS hi, count(DISTINCT seq) AS n FROM readings GROUP BY meter_id",
      )
      .all() as { meter_id: string; lo: number; hi: number; n: number }[];
    assert.equal(perMeter.length, DCUS.length * METERS);
    for (const m of perMeter) assert.equal(m.n, m.hi - m.lo + 1, `${m.meter_id}: readings not contiguous`);
    const batches = db
      .prepare(
        "SELECT dcu_id, batch_id, count(*) AS n FROM batches WHERE status = 'accepted' GROUP BY dcu_id, batch_id HAVING n > 1",
      )
      .all();
    assert.deepEqual(batches, [], "a batch stored twice");
    const total = (
      db.prepare("SELECT count(DISTINCT meter_id || '/' || seq) AS n FROM readings").get() as { n: number }
    ).n;
    console.log(`head-end kills: ${KILLS}; readings stored: ${total}; meters: ${perMeter.length}`);
  } finally {
    db.close();
    rmSync(dir, { recursive: true, force: true });
  }
});
