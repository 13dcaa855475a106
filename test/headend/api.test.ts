import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import {
  encodeAlert,
  encodeBatch,
  type ReadingRecordFields,
  toHex,
  verifyBundleText,
} from "../../src/evidence/index.ts";
import {
  ASSET_REGISTER_FORMAT,
  type HeadendHandle,
  type IngestOutcome,
  startHeadend,
} from "../../src/headend/index.ts";
import { TestDcu, TestMeter } from "./helpers.ts";

// The REST API (issue 7): roles, the audit log, server-side paging, the evidence export that
// `amiproof verify` accepts, the OpenAPI document, gaps and the seed-004 revenue-loss estimate.

const BIN = join(import.meta.dirname, "../../bin/amiproof.js");
const HOUR = 3_600_000;
const T = Date.UTC(2026, 2, 1);

describe("head-end API", () => {
  const dir = mkdtempSync(join(tmpdir(), "amiproof-headend-api-"));
  let h: HeadendHandle;
  const outcomes: IngestOutcome[] = [];
  const dcu = new TestDcu("DCU-API");
  const meters = [new TestMeter("MTR-A", 21), new TestMeter("MTR-B", 22), new TestMeter("MTR-C", 23)];

  before(async () => {
    h = await startHeadend({
      dbUrl: `sqlite:${join(dir, "headend.db")}`,
      brokerPort: 0,
      httpPort: 0,
      dataDir: dir,
      clientIdPrefix: `test-api-${process.pid}`,
      logLevel: "silent",
      onIngestOutcome: (o) => outcomes.push(o),
    });
  });
  after(async () => {
    await h.close();
    rmSync(dir, { recursive: true, force: true });
  });

  async function call(
    method: string,
    path: string,
    role: "admin" | "operator" | "viewer" | null,
    body?: unknown,
  ) {
    const response = await fetch(`${h.apiUrl}${path}`, {
      method,
      headers: {
        ...(role === null ? {} : { authorization: `Bearer ${h.tokens[role]}` }),
        ...(body === undefined ? {} : { "content-type": "application/json" }),
      },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });
    const text = await response.text();
    // biome-ignore lint/suspicious/noExplicitAny: the API's JSON bodies, read field by field below
    let json: any = null;
    try {
      json = JSON.parse(text);
    } catch {
      json = null;
    }
    return { status: response.status, json, text, headers: response.headers };
  }

  /** Hourly import readings: MTR-A draws little (a tampered meter), MTR-B and MTR-C about 1 kWh/h. */
  function hourly(batchHours: number): ReadingRecordFields[] {
    const out: ReadingRecordFields[] = [];
    for (let k = 0; k < batchHours; k++) {
      for (const [i, m] of meters.entries()) {
        const seq = (dcu.seqs.get(m.meterId) ?? 0) + 1;
        dcu.seqs.set(m.meterId, seq);
        out.push({
          timestampMs: T + seq * HOUR,
          meterId: m.meterId,
          values: [
            {
              obis: [1, 0, 1, 8, 0, 255],
              value: seq * (i === 0 ? 200 : 1_000 + i * 100),
              scaler: 0,
              unit: 30,
            },
          ],
          seq,
          commitId: dcu.nextCommitId++,
          timeQuality: "SYNCED",
        });
      }
    }
    return out;
  }

  test("roles: no token 401, viewer reads, operator acks, admin provisions; every mutation is audited", async () => {
    assert.equal((await call("GET", "/api/whoami", null)).status, 401);
    assert.equal((await call("GET", "/api/whoami", "viewer")).json.role, "viewer");
    const register = {
      format: ASSET_REGISTER_FORMAT,
      version: 1,
      concentrators: [{ dcu_id: dcu.dcuId, batch_sign_public_key: toHex(dcu.publicKey) }],
      meters: meters.map((m) => ({
        meter_id: m.meterId,
        event_seal_public_key: toHex(m.publicKey),
        dcu_id: dcu.dcuId,
        transformer_id: "TR-7",
      })),
    };
    assert.equal((await call("POST", "/api/assets", "operator", register)).status, 403);
    assert.equal((await call("POST", "/api/assets", "admin", register)).status, 201);

    const alert = encodeAlert({
      dcuId: dcu.dcuId,
      meterId: "MTR-A",
      record: meters[0]!.event("BYPASS_SUS", "MAJOR", T + HOUR).bytes,
      forwardedMs: T,
      timeQuality: "SYNCED",
    });
    assert.ok(h.lane.submit(dcu.dcuId, alert));
    await h.lane.drain();
    const list = await call("GET", "/api/alerts?state=open", "viewer");
    assert.equal(list.json.items.length, 1);
    const id = list.json.items[0].alert_id as number;
    assert.equal((await call("POST", `/api/alerts/${id}/ack`, "viewer")).status, 403);
    const acked = await call("POST", `/api/alerts/${id}/ack`, "operator");
    assert.equal(acked.status, 200);
    assert.equal(acked.json.state, "acknowledged");
    assert.equal((await call("POST", `/api/alerts/${id}/resolve`, "operator")).json.state, "resolved");
    assert.equal(
      (await call("POST", `/api/alerts/${id}/ack`, "operator")).status,
      409,
      "a resolved alert cannot be acked",
    );
    const meter = await call("GET", "/api/meters/MTR-A", "viewer");
    assert.equal(meter.json.tamper_state, "BYPASS_SUS");
    assert.equal(meter.json.event_seal_key_provisioned, true);

    const audit = await call("GET", "/api/audit?limit=100", "admin");
    const actions = [...audit.json.items]
      .reverse()
      .map((e: { action: string; detail: string }) => [e.action, JSON.parse(e.detail).status]);
    assert.deepEqual(actions, [
      ["POST /api/assets", 403],
      ["POST /api/assets", 201],
      ["POST /api/alerts/:id/ack", 403],
      ["POST /api/alerts/:id/ack", 200],
      ["POST /api/alerts/:id/resolve", 200],
      ["POST /api/alerts/:id/ack", 409],
    ]);
    assert.equal((await call("GET", "/api/audit/verify", "admin")).json.ok, true);

    // A token issued, used, revoked: refused afterwards, and its text never reaches the audit log.
    const issued = await call("POST", "/api/tokens", "admin", { role: "operator", label: "night shift" });
    assert.equal(issued.status, 201);
    const fresh = issued.json.token as string;
    const who = await fetch(`${h.apiUrl}/api/whoami`, { headers: { authorization: `Bearer ${fresh}` } });
    assert.equal(((await who.json()) as { label: string }).label, "night shift");
    assert.equal((await call("POST", "/api/tokens/revoke", "admin", { token: fresh })).json.revoked, true);
    const after = await fetch(`${h.apiUrl}/api/whoami`, { headers: { authorization: `Bearer ${fresh}` } });
    assert.equal(after.status, 401);
    const trail = await call("GET", "/api/audit?limit=100", "admin");
    assert.ok(!trail.text.includes(fresh), "the token text is not in the audit log");
    assert.equal((await call("GET", "/api/audit", "operator")).status, 403);
  });

  test("evidence export: a bundle `amiproof verify` accepts; readings, batches and the sealed event log", async () => {
    for (let b = 0; b < 3; b++) {
      assert.ok(h.ingest.submit(dcu.dcuId, encodeBatch(dcu.seal(hourly(4)))));
    }
    await h.ingest.drain();
    assert.deepEqual(
      outcomes.map((o) => o.kind),
      ["accepted", "accepted", "accepted"],
    );
    const cleared = meters[0]!.event("TAMPER_CLEARED", "INFO", T + 5 * HOUR, { tamper: "BYPASS_SUS" });
    h.lane.submit(
      dcu.dcuId,
      encodeAlert({
        dcuId: dcu.dcuId,
        meterId: "MTR-A",
        record: cleared.bytes,
        forwardedMs: T,
        timeQuality: "SYNCED",
      }),
    );
    await h.lane.drain();

    const response = await call(
      "GET",
      `/api/evidence/export?meter_id=MTR-A&from=${T}&to=${T + 6 * HOUR}`,
      "viewer",
    );
    assert.equal(response.status, 200);
    const report = verifyBundleText(response.text);
    assert.equal(report.valid, true, JSON.stringify(report.problems));
    assert.equal(report.counts.eventRecords, 2);
    assert.ok(report.counts.batches >= 2);
    assert.deepEqual(JSON.parse(response.headers.get("x-amiproof-export") ?? "{}"), {
      readings: 5,
      batches: 2,
      events: 2,
    });
    const file = join(dir, "bundle.json");
    writeFileSync(file, response.text);
    execFileSync(process.execPath, [BIN, "verify", file], { stdio: "pipe" });
    // One flipped hex digit in a reading record: `amiproof verify` exits 1.
    const json = JSON.parse(response.text);
    const record: string = json.batch_chains[0].batches[0].records[0];
    json.batch_chains[0].batches[0].records[0] =
      record.slice(0, 40) + (record[40] === "0" ? "1" : "0") + record.slice(41);
    writeFileSync(file, JSON.stringify(json));
    assert.throws(
      () => execFileSync(process.execPath, [BIN, "verify", file], { stdio: "pipe" }),
      (e: { status?: number }) => e.status === 1,
    );
  });

  test("meters page server-side; gaps list and summary; revenue loss from neighbours on the transformer", async () => {
    const many = Array.from({ length: 230 }, (_, i) => ({
      meter_id: `BULK-${String(i).padStart(4, "0")}`,
      event_seal_public_key: toHex(meters[1]!.publicKey),
    }));
    assert.equal((await call("POST", "/api/meters", "admin", { meters: many })).status, 201);
    const seen = new Set<string>();
    let cursor: string | null = null;
    let pages = 0;
    do {
      const path: string = `/api/meters?limit=100${cursor === null ? "" : `&cursor=${encodeURIComponent(cursor)}`}`;
      const page = await call("GET", path, "viewer");
      assert.equal(page.json.total, 233);
      for (const m of page.json.items) seen.add(m.meter_id);
      cursor = page.json.next_cursor;
      pages++;
    } while (cursor !== null);
    assert.equal(seen.size, 233);
    assert.equal(pages, 3);
    const search = await call("GET", "/api/meters?search=BULK-01&limit=1000", "viewer");
    assert.equal(search.json.total, 100);
    assert.equal((await call("GET", "/api/meters?status=online", "viewer")).json.total, 3);

    // A seq the concentrator never captured: one SEQ_GAP.
    dcu.seqs.set("MTR-B", (dcu.seqs.get("MTR-B") ?? 0) + 1);
    h.ingest.submit(dcu.dcuId, encodeBatch(dcu.seal(hourly(1))));
    await h.ingest.drain();
    const gaps = await call("GET", "/api/gaps?class=SEQ_GAP", "viewer");
    assert.equal(gaps.json.items.length, 1);
    assert.equal(gaps.json.items[0].meter_id, "MTR-B");
    assert.equal(gaps.json.items[0].attributed_to, "capture");
    const none = await call("GET", `/api/gaps?class=SEQ_GAP&from=${Date.now() + HOUR}`, "viewer");
    assert.equal(none.json.items.length, 0);
    const summary = await call("GET", "/api/gaps/summary", "viewer");
    assert.equal(summary.json.classes.find((c: { class: string }) => c.class === "SEQ_GAP").count, 1);

    const loss = await call("GET", `/api/meters/MTR-A/revenue-loss?from=${T}&to=${T + 13 * HOUR}`, "viewer");
    assert.equal(loss.status, 200);
    assert.equal(loss.json.transformer_id, "TR-7");
    assert.equal(loss.json.neighbours, 2);
    // MTR-A: 200 Wh/h over seq 1..12; MTR-B 1100 Wh/h (seq 1..12, one skipped at the end), MTR-C 1200 Wh/h.
    assert.equal(loss.json.own_wh, 11 * 200);
    assert.ok(loss.json.estimated_unmeasured_wh > 0);
  });

  test("OpenAPI, health and metrics are served; the dashboard endpoints are described", async () => {
    const doc = await call("GET", "/openapi.json", null);
    assert.equal(doc.json.openapi, "3.1.0");
    for (const path of [
      "/api/whoami",
      "/api/meters",
      "/api/meters/{id}",
      "/api/meters/{id}/readings",
      "/api/meters/{id}/events",
      "/api/concentrators",
      "/api/alerts",
      "/api/alerts/{id}/ack",
      "/api/alerts/{id}/resolve",
      "/api/alerts/stream",
      "/api/gaps",
      "/api/gaps/summary",
      "/api/stats",
      "/api/evidence/export",
      "/metrics",
      "/health",
    ]) {
      assert.ok(doc.json.paths[path] !== undefined, `${path} described`);
    }
    assert.equal((await call("GET", "/health", null)).json.status, "ok");
    const metrics = await call("GET", "/metrics", null);
    for (const name of [
      "amiproof_readings_stored_total",
      "amiproof_batches_rejected_total",
      "amiproof_alerts_total",
      "amiproof_gaps_total",
      "amiproof_meters_online",
    ]) {
      assert.match(metrics.text, new RegExp(`^# TYPE ${name} `, "m"));
    }
    const stats = await call("GET", "/api/stats", "viewer");
    assert.equal(stats.json.readings_stored_total, 39);
    const readings = await call(
      "GET",
      `/api/meters/MTR-C/readings?from=${new Date(T).toISOString()}&limit=5`,
      "viewer",
    );
    assert.equal(readings.json.items.length, 5);
    assert.equal(readings.json.items[0].obis, "1.0.1.8.0.255");
    assert.equal((await call("GET", "/api/concentrators", "viewer")).json.items[0].last_batch_id, 4);
  });
});
