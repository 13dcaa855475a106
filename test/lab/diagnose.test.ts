import assert from "node:assert/strict";
import { test } from "node:test";
import { DiagnoseError, diagnoseBundle, diagnosePacks } from "../../src/lab/index.ts";
import { gapsAreReal, type HeadendView } from "../../src/lab/loop/predicates.ts";

// The failure-mode router of seed 003 H2-9 on hand-made evidence packs: each branch is reached by its
// own counters, and only by them.

function packs(overrides: Record<string, Record<string, unknown>> = {}): Record<string, unknown> {
  const base = {
    format: "amiproof-dcu-evidence",
    version: 1,
    dcu_id: "DCU-T",
    power: { uvlo_cnt: 0, brownout_log_cnt: 0, vbat_droop_cnt: 0, reset_reason: "POWER_ON" },
    interface: {
      iface_err_by_meter: {},
      port_err_cnt: {},
      poll_marker: {
        "MTR-1": { polls: 10, ok: 10, online: true },
        "MTR-2": { polls: 10, ok: 10, online: true },
      },
      meters_online: 2,
      meters_configured: 2,
    },
    commit: {
      commit_state: "IDLE",
      commit_id_gap: { count: 0, recent: [] },
      write_fail_cnt: 0,
      record_crc_fail_cnt: 0,
      seq_gap: { count: 0, records_missing: 0, recent: [] },
    },
    uplink: {
      retry_histogram: [],
      link_flap_cnt: 0,
      batches_rejected: {},
      ack_mismatch_cnt: 0,
      ack_bad_cnt: 0,
    },
    time: {
      step_adjust_event: [],
      sync_lost_cnt: 0,
      time_quality_distribution: { SYNCED: 10, HOLDOVER: 0, RTC_ONLY: 0 },
      rtc_backwards_cnt: 0,
    },
  } as unknown as Record<string, Record<string, unknown>>;
  for (const [pack, fields] of Object.entries(overrides)) base[pack] = { ...base[pack], ...fields };
  return base;
}

test("clean packs: healthy, no branch", () => {
  const d = diagnosePacks(packs());
  assert.equal(d.healthy, true);
  assert.equal(d.primary, null);
  assert.equal(d.dcuId, "DCU-T");
});

test("retries without power markers route link-first; with UVLO they route power-first", () => {
  const retries = {
    retry_histogram: [{ window_start_ms: 0, publish_fail: 4, ack_timeout: 2 }],
    link_flap_cnt: 1,
  };
  const link = diagnosePacks(packs({ uplink: retries }));
  assert.equal(link.primary, "COMMITTED_NOT_UPLINKED");
  assert.equal(link.findings[0]?.bucket, "link-first");
  const power = diagnosePacks(packs({ uplink: retries, power: { uvlo_cnt: 3, brownout_log_cnt: 3 } }));
  assert.equal(power.findings.find((f) => f.branch === "COMMITTED_NOT_UPLINKED")?.bucket, "power-first");
  assert.ok(power.findings[0]?.mustLogs.uvlo_brownout !== undefined);
});

test("errors on one port → SINGLE_PORT; on one meter → SINGLE_METER; on every meter → ALL_METERS", () => {
  const port = diagnosePacks(
    packs({
      interface: {
        iface_err_by_meter: { "MTR-1": { frame_crc: 5 }, "MTR-3": { frame_crc: 4 } },
        port_err_cnt: { "port-1": 9 },
        meters_configured: 4,
      },
    }),
  );
  assert.ok(port.findings.some((f) => f.branch === "SINGLE_PORT"));
  assert.equal(port.primary, "NOT_COLLECTED");
  const meter = diagnosePacks(
    packs({
      interface: {
        iface_err_by_meter: { "MTR-1": { timeout: 5 }, "MTR-3": { frame_crc: 5 } },
        port_err_cnt: { "port-1": 5, "port-3": 5 },
        meters_configured: 4,
      },
    }),
  );
  assert.ok(meter.findings.some((f) => f.branch === "SINGLE_METER"));
  const all = diagnosePacks(
    packs({
      interface: {
        iface_err_by_meter: { "MTR-1": { frame_crc: 2 }, "MTR-2": { frame_crc: 3 } },
        port_err_cnt: { a: 2, b: 3 },
      },
      power: { brownout_log_cnt: 2 },
    }),
  );
  const finding = all.findings.find((f) => f.branch === "ALL_METERS");
  assert.equal(finding?.bucket, "power-first");
});

test("write failures route collected-not-committed; EPOCH gaps alone do not", () => {
  const stalled = diagnosePacks(packs({ commit: { write_fail_cnt: 1, commit_state: "STALLED" } }));
  assert.equal(stalled.primary, "COLLECTED_NOT_COMMITTED");
  const epoch = diagnosePacks(
    packs({
      commit: {
        commit_id_gap: { count: 1, recent: [{ commit_id_first: 5, commit_id_last: 6, cause: "EPOCH" }] },
      },
    }),
  );
  assert.equal(
    epoch.findings.some((f) => f.branch === "COLLECTED_NOT_COMMITTED"),
    false,
  );
});

test("time: steps and holdover are named with their must-logs", () => {
  const d = diagnosePacks(
    packs({
      time: {
        step_adjust_event: [{ at_ms: 1, offset_ms: 30_000, magnitude_bucket: "<60s" }],
        sync_lost_cnt: 1,
        time_quality_distribution: { SYNCED: 5, HOLDOVER: 4, RTC_ONLY: 0 },
      },
    }),
  );
  assert.deepEqual(
    d.findings.map((f) => f.branch),
    ["TIME_STEP_ADJUST", "TIME_HOLDOVER"],
  );
});

test("the status message is accepted; anything else is a typed refusal", () => {
  const d = diagnosePacks({ format: "amiproof-dcu-status", packs: packs({ commit: { write_fail_cnt: 2 } }) });
  assert.equal(d.primary, "COLLECTED_NOT_COMMITTED");
  assert.throws(() => diagnosePacks({ format: "something-else" }), DiagnoseError);
  assert.throws(() => diagnosePacks([1, 2]), DiagnoseError);
});

test("an evidence bundle's problems and gaps route to reconcile, acquisition and storage", () => {
  const d = diagnoseBundle({
    valid: false,
    problems: [{ code: "BAD_CRC", message: "record CRC mismatch", where: "batch 3 record 2" }],
    gaps: [
      { class: "SEQ_GAP", message: "seq 4..5 missing", where: "MTR-1" },
      { class: "COMMIT_GAP", message: "commit_id 9..9", where: "DCU-1" },
    ],
  });
  assert.deepEqual(
    d.findings.map((f) => f.branch),
    ["UPLINKED_NOT_RECONCILED", "NOT_COLLECTED", "COLLECTED_NOT_COMMITTED"],
  );
  assert.equal(diagnoseBundle({ valid: true, problems: [], gaps: [] }).healthy, true);
});

test("gaps_are_real flags an open SEQ_GAP over a stored seq, and passes a real or resolved one", () => {
  const reading = (seq: number) => ({
    meterId: "M",
    seq,
    commitId: seq,
    batchId: 1,
    timeQuality: "SYNCED",
    timestampMs: 0,
  });
  const gap = (from: number, to: number, resolvedMs: number | null) => ({
    gapId: from,
    gapClass: "SEQ_GAP" as const,
    meterId: "M",
    dcuId: "D",
    from,
    to,
    detectedMs: 0,
    attributedTo: "capture",
    batchId: 2,
    resolvedMs,
  });
  const view = (gaps: ReturnType<typeof gap>[]): HeadendView => ({
    byMeter: new Map([["M", [reading(1), reading(2), reading(4)]]]),
    byKey: new Map(),
    gaps,
    readings: 3,
  });
  assert.equal(gapsAreReal(view([gap(3, 3, null)])).passed, true);
  assert.equal(gapsAreReal(view([gap(2, 2, 5)])).passed, true);
  const phantom = gapsAreReal(view([gap(2, 3, null)]));
  assert.equal(phantom.passed, false);
  assert.match(phantom.detail, /seq 2 \(batch 1\)/);
});
