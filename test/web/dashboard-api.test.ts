import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import Fastify from "fastify";
import { connect, type MqttClient } from "mqtt";
import { encodeAlert, toHex } from "../../src/evidence/index.ts";
import { type HeadendHandle, startHeadend } from "../../src/headend/index.ts";
import { notBuiltPage, registerWeb } from "../../src/headend/runtime/static.ts";
import { TestDcu, TestMeter } from "../headend/helpers.ts";

// The head-end side of the dashboard (issue 10), without a browser: the files at `/` (and the page when
// they are not built), and the read-only dashboard endpoints — the event log re-verified record by record
// (a broken link and a replaced key are named, not hidden) and gaps aggregated by class, concentrator, meter.

async function until(what: string, probe: () => Promise<boolean>, timeoutMs = 10_000): Promise<void> {
  const started = Date.now();
  while (!(await probe())) {
    if (Date.now() - started > timeoutMs) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

describe("dashboard files at /", () => {
  const dir = mkdtempSync(join(tmpdir(), "amiproof-web-static-"));
  after(() => rmSync(dir, { recursive: true, force: true }));

  test("without a build, / says how to make one; with one, index.html and hashed assets are served", async () => {
    const dist = join(dir, "dist");
    const app = Fastify();
    registerWeb(app, dist);
    const missing = await app.inject({ method: "GET", url: "/" });
    assert.equal(missing.statusCode, 200);
    assert.match(missing.headers["content-type"] as string, /^text\/html/);
    assert.match(missing.body, /dashboard is not built/);
    assert.match(missing.body, /npm run build:web/);
    assert.equal(missing.body, notBuiltPage(dist));

    mkdirSync(join(dist, "assets"), { recursive: true });
    writeFileSync(join(dist, "index.html"), "<!doctype html><title>x</title>");
    writeFileSync(join(dist, "assets", "index-abc.js"), "console.log(1)");
    writeFileSync(join(dir, "secret.txt"), "not for the web");
    const index = await app.inject({ method: "GET", url: "/" });
    assert.equal(index.body, "<!doctype html><title>x</title>");
    assert.equal(index.headers["cache-control"], "no-cache");
    assert.match(index.headers["content-security-policy"] as string, /default-src 'self'/);
    const asset = await app.inject({ method: "GET", url: "/assets/index-abc.js" });
    assert.equal(asset.statusCode, 200);
    assert.match(asset.headers["content-type"] as string, /^text\/javascript/);
    assert.match(asset.headers["cache-control"] as string, /immutable/);
    for (const url of ["/assets/../../secret.txt", "/assets/%2e%2e/%2e%2e/secret.txt", "/assets/nope.js"]) {
      const refused = await app.inject({ method: "GET", url });
      assert.equal(refused.statusCode, 404, url);
      assert.doesNotMatch(refused.body, /not for the web/);
    }
    await app.close();
  });
});

describe("dashboard endpoints", () => {
  const dir = mkdtempSync(join(tmpdir(), "amiproof-web-api-"));
  let h: HeadendHandle;
  let client: MqttClient;
  const dcu = new TestDcu("DCU-DASH");
  const meter = new TestMeter("MTR-DASH-1", 31);
  const other = new TestMeter("MTR-DASH-2", 32);

  async function get(path: string, token: string | null) {
    const response = await fetch(`${h.apiUrl}${path}`, {
      headers: token === null ? {} : { authorization: `Bearer ${token}` },
    });
    return { status: response.status, json: (await response.json()) as Record<string, unknown> };
  }

  before(async () => {
    h = await startHeadend({
      dbUrl: `sqlite:${join(dir, "headend.db")}`,
      brokerPort: 0,
      httpPort: 0,
      dataDir: dir,
      clientIdPrefix: `test-web-api-${process.pid}`,
      logLevel: "silent",
    });
    const admin = { authorization: `Bearer ${h.tokens.admin}`, "content-type": "application/json" };
    await fetch(`${h.apiUrl}/api/concentrators`, {
      method: "POST",
      headers: admin,
      body: JSON.stringify({ dcu_id: dcu.dcuId, batch_sign_public_key: toHex(dcu.publicKey) }),
    });
    await fetch(`${h.apiUrl}/api/meters`, {
      method: "POST",
      headers: admin,
      body: JSON.stringify({
        meters: [meter, other].map((m) => ({
          meter_id: m.meterId,
          event_seal_public_key: toHex(m.publicKey),
          dcu_id: dcu.dcuId,
        })),
      }),
    });
    client = connect(h.mqttUrl, { clientId: `test-web-api-dcu-${process.pid}`, clean: true });
    await new Promise<void>((resolve, reject) => {
      client.once("connect", () => resolve());
      client.once("error", reject);
    });
  });
  after(async () => {
    await client.endAsync();
    await h.close();
    rmSync(dir, { recursive: true, force: true });
  });

  async function forward(m: TestMeter, type: "POWER_UP" | "MAG_TAMPER" | "TAMPER_CLEARED", at: number) {
    const record = m.event(type, type === "MAG_TAMPER" ? "MAJOR" : "INFO", at);
    const payload = encodeAlert({
      dcuId: dcu.dcuId,
      meterId: m.meterId,
      record: record.bytes,
      forwardedMs: at,
      timeQuality: "SYNCED",
    });
    await client.publishAsync(`ami/${dcu.dcuId}/alerts`, Buffer.from(payload), { qos: 1 });
  }

  test("the endpoints need a token and are in /openapi.json", async () => {
    assert.equal((await get("/api/dashboard/gaps/timeline", null)).status, 401);
    assert.equal((await get(`/api/dashboard/meters/${meter.meterId}/event-log`, null)).status, 401);
    assert.equal((await get("/api/dashboard/gaps/timeline?buckets=0", h.tokens.viewer)).status, 400);
    // Described in /openapi.json like every route of the table.
    const doc = (await (await fetch(`${h.apiUrl}/openapi.json`)).json()) as {
      paths: Record<string, Record<string, Record<string, unknown>>>;
    };
    assert.equal(doc.paths["/api/dashboard/gaps/timeline"]?.get?.["x-amiproof-role"], "viewer");
    assert.equal(doc.paths["/api/dashboard/meters/{id}/event-log"]?.get?.["x-amiproof-role"], "viewer");
  });

  test("the event log: each record's signature and link checked; a broken link and a missing predecessor are named", async () => {
    const t = Date.now() - 60_000;
    await forward(meter, "POWER_UP", t);
    await forward(meter, "MAG_TAMPER", t + 1_000);
    // seq 3 sealed over a wrong prev_digest (a tampered log), then seq 4 normally; seq 5 never arrives.
    (meter as unknown as { prevDigest: Uint8Array }).prevDigest = new Uint8Array(32);
    await forward(meter, "TAMPER_CLEARED", t + 2_000);
    await forward(meter, "POWER_UP", t + 3_000);
    meter.event("POWER_UP", "INFO", t + 4_000); // seq 5, lost on the way
    await forward(meter, "POWER_UP", t + 5_000); // seq 6
    await until("5 events", async () => (await h.store.counts()).eventsTotal >= 5);

    const log = await get(`/api/dashboard/meters/${meter.meterId}/event-log`, h.tokens.viewer);
    assert.equal(log.status, 200);
    const items = log.json.items as { seq: number; ok: boolean; chain: string; signature: string }[];
    assert.deepEqual(
      items.map((e) => [e.seq, e.signature, e.chain, e.ok]),
      [
        [1, "valid", "genesis", true],
        [2, "valid", "linked", true],
        [3, "valid", "broken", false],
        [4, "valid", "linked", true],
        [6, "valid", "predecessor_missing", false],
      ],
    );
    // Paged: the first record of a later page is checked against its predecessor on an earlier page.
    const page2 = await get(
      `/api/dashboard/meters/${meter.meterId}/event-log?limit=1&cursor=${encodeURIComponent(
        String(
          (await get(`/api/dashboard/meters/${meter.meterId}/event-log?limit=1`, h.tokens.viewer)).json
            .next_cursor,
        ),
      )}`,
      h.tokens.viewer,
    );
    assert.deepEqual(
      (page2.json.items as { seq: number; chain: string }[]).map((e) => [e.seq, e.chain]),
      [[2, "linked"]],
    );

    // Newest first (what the meter page shows): pages of 2 walking back, each checked across page edges.
    const base = `/api/dashboard/meters/${meter.meterId}/event-log?order=newest&limit=2`;
    const newest = await get(base, h.tokens.viewer);
    assert.deepEqual(
      (newest.json.items as { seq: number; chain: string }[]).map((e) => [e.seq, e.chain]),
      [
        [4, "linked"],
        [6, "predecessor_missing"],
      ],
    );
    const older = newest.json.older as { before_ms: number; before_seq: number };
    assert.deepEqual(older, { before_ms: t + 3_000, before_seq: 4 });
    const next = await get(
      `${base}&before_ms=${older.before_ms}&before_seq=${older.before_seq}`,
      h.tokens.viewer,
    );
    assert.deepEqual(
      (next.json.items as { seq: number }[]).map((e) => e.seq),
      [2, 3],
    );
    const next2 = next.json.older as { before_ms: number; before_seq: number };
    const last = await get(
      `${base}&before_ms=${next2.before_ms}&before_seq=${next2.before_seq}`,
      h.tokens.viewer,
    );
    assert.deepEqual(
      (last.json.items as { seq: number }[]).map((e) => e.seq),
      [1],
    );
    assert.equal(last.json.older, null);

    // A key replaced after the fact: every stored record now fails its signature check, and says so.
    const stranger = new TestMeter(meter.meterId, 99);
    await fetch(`${h.apiUrl}/api/meters`, {
      method: "POST",
      headers: { authorization: `Bearer ${h.tokens.admin}`, "content-type": "application/json" },
      body: JSON.stringify({ meter_id: meter.meterId, event_seal_public_key: toHex(stranger.publicKey) }),
    });
    const rekeyed = await get(`/api/dashboard/meters/${meter.meterId}/event-log`, h.tokens.viewer);
    const first = (rekeyed.json.items as { signature: string; problem: string }[])[0]!;
    assert.equal(first.signature, "invalid");
    assert.match(first.problem, /signature does not verify/);
  });

  test("gaps are aggregated by class over time, per concentrator and per meter", async () => {
    // Batch 1; batch 2 skips a seq of MTR-DASH-2 (SEQ_GAP); batch 4 arrives without 3 (UPLINK_GAP).
    const batches = [
      dcu.next([meter.meterId, other.meterId], 2),
      dcu.next([meter.meterId, other.meterId], 2, { skipSeq: other.meterId }),
    ];
    dcu.seal(dcu.readings([meter.meterId], 1)); // batch 3, never sent
    batches.push(dcu.next([meter.meterId, other.meterId], 1));
    for (const b of batches)
      await client.publishAsync(`ami/${dcu.dcuId}/batches`, Buffer.from(b), { qos: 1 });
    await until("the gaps", async () => {
      const t = (await h.store.counts()).gapsTotal;
      return t.SEQ_GAP >= 1 && t.UPLINK_GAP >= 1;
    });
    const now = Date.now();
    const timeline = await get(
      `/api/dashboard/gaps/timeline?from=${now - 3_600_000}&to=${now + 1_000}&buckets=12`,
      h.tokens.viewer,
    );
    assert.equal(timeline.status, 200);
    const t = timeline.json as {
      buckets: number[];
      classes: { class: string; counts: number[] }[];
      gaps_in_range: number;
      by_dcu: Record<string, unknown>[];
      by_meter: Record<string, unknown>[];
      truncated: boolean;
    };
    assert.equal(t.buckets.length, 12);
    const total = (c: string) => t.classes.find((x) => x.class === c)?.counts.reduce((a, b) => a + b, 0);
    assert.equal(total("SEQ_GAP"), 1);
    assert.equal(total("UPLINK_GAP"), 1);
    assert.equal(t.gaps_in_range, 2);
    assert.equal(t.truncated, false);
    assert.deepEqual(t.by_dcu, [
      { dcu_id: dcu.dcuId, SEQ_GAP: 1, COMMIT_GAP: 0, UPLINK_GAP: 1, TIME_STEP: 0, total: 2 },
    ]);
    assert.deepEqual(t.by_meter, [
      {
        meter_id: other.meterId,
        dcu_id: dcu.dcuId,
        SEQ_GAP: 1,
        COMMIT_GAP: 0,
        UPLINK_GAP: 0,
        TIME_STEP: 0,
        total: 1,
      },
    ]);
    // A range before the gaps holds none.
    const earlier = await get(
      `/api/dashboard/gaps/timeline?from=${now - 7_200_000}&to=${now - 3_600_000}`,
      h.tokens.viewer,
    );
    assert.equal((earlier.json as { gaps_in_range: number }).gaps_in_range, 0);
  });
});
