// issue 7 acceptance 1 and 2: `amiproof up` end to end — virtual meters → concentrators → MQTT broker →
// head-end. Every reading a concentrator released (acked) is stored exactly once, each meter's readings are
// contiguous, a magnet tamper injected on a meter reaches the alert table and the live stream, and the
// exported evidence bundle verifies with `amiproof verify`. Run on embedded defaults (SQLite + aedes) and
// on PostgreSQL + Mosquitto at 127.0.0.1 (AMIPROOF_NO_POSTGRES=1 / AMIPROOF_NO_MOSQUITTO=1 leave them out).
import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, test } from "node:test";
import { startUp, type UpHandle } from "../../src/cli/up.ts";

const BIN = join(import.meta.dirname, "../../bin/amiproof.js");
const PG_URL = process.env.AMIPROOF_TEST_POSTGRES_URL ?? "postgres://postgres@127.0.0.1:5432/test";
const dirs: string[] = [];
after(() => {
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});

async function until<T>(
  probe: () => Promise<T | null | undefined | false>,
  what: string,
  timeoutMs = 30_000,
): Promise<T> {
  const started = Date.now();
  for (;;) {
    const value = await probe();
    if (value !== null && value !== undefined && value !== false) return value;
    if (Date.now() - started > timeoutMs) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

async function call(
  up: UpHandle,
  role: "admin" | "operator" | "viewer",
  method: string,
  path: string,
  body?: unknown,
) {
  const response = await fetch(`${up.apiUrl}${path}`, {
    method,
    headers: {
      authorization: `Bearer ${up.headend.tokens[role]}`,
      ...(body === undefined ? {} : { "content-type": "application/json" }),
    },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  const text = await response.text();
  return {
    status: response.status,
    json: text.length > 0 ? (JSON.parse(text) as Record<string, unknown>) : {},
  };
}

interface Variant {
  readonly name: string;
  readonly mqttUrl?: string;
  readonly dbUrl?: string;
  readonly meterSource?: "dlms" | "sim";
}

const variants: Variant[] = [
  { name: "embedded defaults (SQLite, aedes), DLMS meters" },
  { name: "embedded defaults, meters simulated in the concentrators", meterSource: "sim" },
];
if (process.env.AMIPROOF_NO_POSTGRES === "1" || process.env.AMIPROOF_NO_MOSQUITTO === "1") {
  console.log(
    "up.test: the PostgreSQL + Mosquitto variant was NOT run (AMIPROOF_NO_POSTGRES / AMIPROOF_NO_MOSQUITTO)",
  );
} else {
  variants.push({ name: "PostgreSQL and Mosquitto", mqttUrl: "mqtt://127.0.0.1:1883", dbUrl: PG_URL });
}

for (const variant of variants) {
  describe(`amiproof up on ${variant.name}`, () => {
    test("meters → concentrators → broker → head-end: every reading once, tamper alert live, bundle verifies", async () => {
      const dir = mkdtempSync(join(tmpdir(), "amiproof-up-"));
      dirs.push(dir);
      const tag = `${process.pid}${randomBytes(2).toString("hex")}`;
      const up = await startUp({
        meters: 8,
        dcus: 2,
        httpPort: 0,
        dataDir: dir,
        mqttPort: 0,
        readingIntervalMs: 1_000,
        pollIntervalMs: 200,
        batchAgeMaxMs: 300,
        statusIntervalMs: 500,
        dcuPrefix: `up${tag}`,
        ...(variant.meterSource === undefined ? {} : { meterSource: variant.meterSource }),
        ...(variant.mqttUrl === undefined ? {} : { mqttUrl: variant.mqttUrl }),
        ...(variant.dbUrl === undefined ? {} : { dbUrl: variant.dbUrl, dbSchema: `amiproof_up_${tag}` }),
      });
      let stopped = false;
      try {
        assert.equal(up.meters.length, 8);
        assert.equal(up.meterSource, variant.meterSource ?? "dlms");
        // Readings flow from every meter.
        await until(async () => {
          const page = await call(up, "viewer", "GET", "/api/meters?limit=100");
          const items = page.json.items as { meter_id: string; last_seq: number | null }[];
          return items.length === 8 && items.every((m) => (m.last_seq ?? 0) >= 3);
        }, "readings from all 8 meters");

        // The lab endpoint: admin only; a magnet on one meter reaches the alert table and the live stream.
        const meterId = up.meters[3]!.meterId;
        const stream = await fetch(`${up.apiUrl}/api/alerts/stream?token=${up.headend.tokens.viewer}`);
        assert.equal(stream.status, 200);
        const reader = stream.body!.getReader();
        let streamed = "";
        const sawOnStream = (async () => {
          const decoder = new TextDecoder();
          while (!streamed.includes(meterId)) {
            const { value, done } = await reader.read();
            if (done) break;
            streamed += decoder.decode(value);
          }
        })();
        assert.equal(
          (await call(up, "viewer", "POST", `/api/lab/meters/${meterId}/tamper`, { kind: "magnet" })).status,
          403,
        );
        assert.equal(
          (await call(up, "admin", "POST", `/api/lab/meters/nope/tamper`, { kind: "magnet" })).status,
          404,
        );
        assert.equal(
          (await call(up, "admin", "POST", `/api/lab/meters/${meterId}/tamper`, { kind: "x" })).status,
          400,
        );
        const injectedAt = Date.now();
        const injected = await call(up, "admin", "POST", `/api/lab/meters/${meterId}/tamper`, {
          kind: "magnet",
        });
        assert.equal(injected.status, 202, JSON.stringify(injected.json));
        const alert = await until(
          async () => {
            const page = await call(up, "viewer", "GET", `/api/alerts?meter_id=${meterId}`);
            const items = page.json.items as { meter_id: string; type: string }[];
            return items.find((a) => a.meter_id === meterId && a.type === "MAG_TAMPER");
          },
          "the MAG_TAMPER alert",
          10_000,
        );
        assert.equal(alert.type, "MAG_TAMPER");
        await Promise.race([
          sawOnStream,
          new Promise((_, reject) =>
            setTimeout(() => reject(new Error(`not on the live stream: ${streamed}`)), 10_000),
          ),
        ]);
        await reader.cancel();
        console.log(
          `up.test (${variant.name}): tamper → alert stored and pushed within ${Date.now() - injectedAt} ms`,
        );

        // Let a few more batches through, then stop cleanly.
        await new Promise((resolve) => setTimeout(resolve, 1_000));
        const released = new Map(
          up.dcus.map((d) => [
            d.dcuId,
            (d.daemon.concentrator.packs().commit as { commit_id_released: number }).commit_id_released,
          ]),
        );
        const exportFrom = Date.now() - 3_600_000;
        const exported = await fetch(
          `${up.apiUrl}/api/evidence/export?meter_id=${up.meters[0]!.meterId}&from=${exportFrom}&to=${Date.now() + 3_600_000}`,
          { headers: { authorization: `Bearer ${up.headend.tokens.viewer}` } },
        );
        assert.equal(exported.status, 200);
        const bundleFile = join(dir, "bundle.json");
        writeFileSync(bundleFile, await exported.text());

        // Every released commit_id of each concentrator is in the store once; every meter's seqs are contiguous.
        const store = up.headend.store;
        const seen = new Map<string, Set<number>>();
        const commitIds = new Map<string, Set<number>>();
        for (const m of up.meters) {
          let cursor: string | null = null;
          const seqs = new Set<number>();
          do {
            const page = await store.listReadings({
              meterId: m.meterId,
              fromMs: exportFrom,
              toMs: Date.now() + 3_600_000,
              limit: 1000,
              cursor,
            });
            for (const r of page.items) {
              seqs.add(r.seq);
              const ids = commitIds.get(r.dcuId) ?? new Set<number>();
              ids.add(r.commitId);
              commitIds.set(r.dcuId, ids);
            }
            cursor = page.nextCursor;
          } while (cursor !== null);
          seen.set(m.meterId, seqs);
          const sorted = [...seqs].sort((a, b) => a - b);
          assert.equal(
            sorted.length,
            sorted.at(-1)! - sorted[0]! + 1,
            `${m.meterId}: readings not contiguous`,
          );
        }
        for (const [dcuId, through] of released) {
          assert.ok(through > 0, `${dcuId} released nothing`);
          const ids = commitIds.get(dcuId) ?? new Set<number>();
          for (let id = 1; id <= through; id++)
            assert.ok(ids.has(id), `${dcuId}: commit_id ${id} acked but not stored`);
        }
        const rows = await store.counts();
        const distinct = [...seen.values()].reduce((n, s) => n + s.size, 0);
        assert.ok(rows.readingsStoredTotal >= distinct);
        const verified = spawnSync(process.execPath, [BIN, "verify", bundleFile], { encoding: "utf8" });
        assert.equal(verified.status, 0, `amiproof verify: ${verified.stdout}${verified.stderr}`);
        await up.stop();
        stopped = true;
      } finally {
        if (!stopped) await up.stop();
      }
    });
  });
}

test("amiproof up: banner with dashboard and tokens, /health, clean stop on SIGINT; usage errors exit 2", async () => {
  const dir = mkdtempSync(join(tmpdir(), "amiproof-up-cli-"));
  dirs.push(dir);
  // The asked HTTP port is taken: up takes a free one and says so.
  const blocker = createServer();
  await new Promise<void>((resolve) => blocker.listen(0, "127.0.0.1", resolve));
  const taken = (blocker.address() as { port: number }).port;
  after(() => blocker.close());
  const child = spawn(
    process.execPath,
    [
      BIN,
      "up",
      "--data",
      dir,
      "--http",
      String(taken),
      "--mqtt-port",
      "0",
      "--meters",
      "4",
      "--dcus",
      "2",
      "--no-status",
    ],
    { stdio: ["ignore", "pipe", "pipe"] },
  );
  let stdout = "";
  let stderr = "";
  child.stdout.on("data", (chunk: Buffer) => {
    stdout += chunk.toString();
  });
  child.stderr.on("data", (chunk: Buffer) => {
    stderr += chunk.toString();
  });
  const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)));
  const dashboard = await until(
    async () => {
      if (child.exitCode !== null) throw new Error(`amiproof up exited ${child.exitCode}: ${stderr}`);
      return /dashboard: (http:\/\/\S+)\//.exec(stdout)?.[1];
    },
    "the dashboard line",
    90_000,
  );
  assert.match(stdout, new RegExp(`tokens: ${dir}/headend/tokens`));
  assert.match(stdout, new RegExp(`\\(port ${taken} was taken\\)`));
  assert.notEqual(new URL(dashboard).port, String(taken));
  const health = (await fetch(`${dashboard}/health`).then((r) => r.json())) as { status: string };
  assert.equal(health.status, "ok");
  child.kill("SIGINT");
  assert.equal(await exited, 0, stderr);
  assert.match(stderr, /stopped/);

  const tooMany = spawnSync(process.execPath, [BIN, "up", "--meters", "2", "--dcus", "3", "--data", dir], {
    encoding: "utf8",
  });
  assert.equal(tooMany.status, 2);
  assert.match(tooMany.stderr, /--dcus \(3\) cannot exceed --meters \(2\)/);
  const badPort = spawnSync(process.execPath, [BIN, "up", "--http", "70000", "--data", dir], {
    encoding: "utf8",
  });
  assert.equal(badPort.status, 2);
  assert.match(badPort.stderr, /--http must be an integer 0\.\.65535/);
});
