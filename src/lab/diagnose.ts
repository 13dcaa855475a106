// The failure-mode router of seed 003 H2-9, fed by the evidence packs of H2-10: which pack and counter
// points to which failure branch, with the two must-logs that prove it and the first probe to make.
// Pure: it reads a concentrator's evidence packs (`amiproof-dcu-evidence`, as in its retained status) and
// returns findings; `amiproof diagnose` and the lab's field-case scenarios both use it.

export type DiagnosisBranch =
  | "NOT_COLLECTED"
  | "COLLECTED_NOT_COMMITTED"
  | "COMMITTED_NOT_UPLINKED"
  | "UPLINKED_NOT_RECONCILED"
  | "SINGLE_METER"
  | "SINGLE_PORT"
  | "ALL_METERS"
  | "TIME_STEP_ADJUST"
  | "TIME_HOLDOVER"
  | "TIME_RTC_VALIDITY"
  | "TIME_RECOVERY_BINDING";

export type AttributionBucket = "power-first" | "commit-first" | "link-first" | "interface-first" | "time";

export interface Finding {
  readonly branch: DiagnosisBranch;
  readonly bucket: AttributionBucket;
  /** seed 003 H2-9 symptom entry: data gaps, single meter, all meters, time. */
  readonly symptom: "data_gaps" | "single_meter" | "all_meters" | "time";
  readonly firstProbe: string;
  /** The two must-logs of the branch, with the values that were found. */
  readonly mustLogs: Record<string, unknown>;
  readonly why: string;
}

export interface Diagnosis {
  readonly format: "amiproof-diagnosis";
  readonly version: 1;
  readonly dcuId: string | null;
  readonly healthy: boolean;
  /** The first broken segment (seed 003 H2-9: "which segment shows the first discontinuity"). */
  readonly primary: DiagnosisBranch | null;
  readonly findings: Finding[];
}

export class DiagnoseError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "DiagnoseError";
  }
}

type Json = Record<string, unknown>;

function obj(value: unknown, where: string): Json {
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw new DiagnoseError(`${where}: expected an object`);
  }
  return value as Json;
}

function num(value: unknown): number {
  return typeof value === "number" && Number.isFinite(value) ? value : 0;
}

/** Accepts the status message (`amiproof-dcu-status`, packs inside) or the packs themselves. */
export function evidencePacksOf(input: unknown): Json {
  const top = obj(input, "evidence");
  if (top.format === "amiproof-dcu-status") return obj(top.packs, "status.packs");
  if (top.format === "amiproof-dcu-evidence") return top;
  throw new DiagnoseError(
    `not a concentrator evidence file: format ${JSON.stringify(top.format)} (expected amiproof-dcu-status or amiproof-dcu-evidence)`,
  );
}

/** seed 003 H2-9 symptom router over one concentrator's five evidence packs (H2-10). */
export function diagnosePacks(input: unknown): Diagnosis {
  const packs = evidencePacksOf(input);
  const power = obj(packs.power ?? {}, "power");
  const iface = obj(packs.interface ?? {}, "interface");
  const commit = obj(packs.commit ?? {}, "commit");
  const uplink = obj(packs.uplink ?? {}, "uplink");
  const time = obj(packs.time ?? {}, "time");
  const findings: Finding[] = [];

  const uvlo = num(power.uvlo_cnt);
  const brownout = num(power.brownout_log_cnt);
  const droop = num(power.vbat_droop_cnt);
  const powerMarkers = uvlo + brownout;
  const uvloBrownout = {
    uvlo_cnt: uvlo,
    brownout_log_cnt: brownout,
    vbat_droop_cnt: droop,
    reset_reason: power.reset_reason ?? null,
  };

  // ── data gaps: the first broken segment ──
  const errByMeter = obj(iface.iface_err_by_meter ?? {}, "iface_err_by_meter") as Record<
    string,
    Record<string, number>
  >;
  const meterErrors = Object.entries(errByMeter)
    .map(
      ([meterId, buckets]) =>
        [meterId, Object.values(obj(buckets, meterId)).reduce((a: number, b) => a + num(b), 0)] as const,
    )
    .filter(([, n]) => n > 0);
  const seqGap = obj(commit.seq_gap ?? {}, "seq_gap");
  const seqGapCount = num(seqGap.count);
  const pollMarker = obj(iface.poll_marker ?? {}, "poll_marker");
  if (seqGapCount > 0 || meterErrors.length > 0) {
    findings.push({
      branch: "NOT_COLLECTED",
      bucket: "interface-first",
      symptom: "data_gaps",
      firstProbe: "transceiver/coupler I/O: differential amplitude and common-mode window (interface side)",
      mustLogs: {
        iface_err_by_meter: Object.fromEntries(meterErrors),
        poll_marker: summarisePollMarkers(pollMarker),
        seq_gap: { count: seqGapCount, records_missing: num(seqGap.records_missing) },
      },
      why: `${seqGapCount} seq gaps and interface errors on ${meterErrors.length} meters: acquisition did not happen`,
    });
  }
  const commitGap = obj(commit.commit_id_gap ?? {}, "commit_id_gap");
  const commitGaps = Array.isArray(commitGap.recent) ? (commitGap.recent as Json[]) : [];
  const unexplainedCommitGaps = commitGaps.filter((g) => g.cause !== "EPOCH");
  const writeFail = num(commit.write_fail_cnt);
  const crcFail = num(commit.record_crc_fail_cnt);
  if (writeFail > 0 || crcFail > 0 || commit.commit_state === "STALLED" || unexplainedCommitGaps.length > 0) {
    findings.push({
      branch: "COLLECTED_NOT_COMMITTED",
      bucket: powerMarkers > 0 ? "power-first" : "commit-first",
      symptom: "data_gaps",
      firstProbe: "storage rail / clock boundary during write peaks (system side)",
      mustLogs: {
        commit_state: commit.commit_state ?? null,
        commit_id_gap: { count: num(commitGap.count), unexplained: unexplainedCommitGaps.slice(0, 8) },
        write_fail_cnt: writeFail,
        record_crc_fail_cnt: crcFail,
      },
      why: `${writeFail} failed writes, ${crcFail} records failing their CRC, ${unexplainedCommitGaps.length} commit_id gaps not explained by a recovery epoch`,
    });
  }
  const histogram = Array.isArray(uplink.retry_histogram) ? (uplink.retry_histogram as Json[]) : [];
  const retries = histogram.reduce(
    (sum, w) => sum + Object.entries(w).reduce((s, [k, v]) => (k === "window_start_ms" ? s : s + num(v)), 0),
    0,
  );
  const flaps = num(uplink.link_flap_cnt);
  if (retries > 0 || flaps > 0) {
    const powerFirst = powerMarkers > 0;
    findings.push({
      branch: "COMMITTED_NOT_UPLINKED",
      bucket: powerFirst ? "power-first" : "link-first",
      symptom: "data_gaps",
      firstProbe: powerFirst
        ? "VBAT droop / UVLO markers aligned to uplink attempts (power first)"
        : "link quality (RSSI/SNR, PLC noise) in the retry windows: rails are clean, the medium is first",
      mustLogs: {
        retry_histogram: histogram.filter((w) =>
          Object.entries(w).some(([k, v]) => k !== "window_start_ms" && num(v) > 0),
        ),
        uvlo_brownout: uvloBrownout,
        link_flap_cnt: flaps,
      },
      why: powerFirst
        ? `${retries} retries with ${powerMarkers} UVLO/brownout markers: bursts collapse the rail`
        : `${retries} retries and ${flaps} link flaps with no UVLO/brownout marker: medium or strategy, not power`,
    });
  }
  const rejected = obj(uplink.batches_rejected ?? {}, "batches_rejected");
  const rejectedCount = Object.values(rejected).reduce((a: number, b) => a + num(b), 0);
  const mismatch = num(uplink.ack_mismatch_cnt) + num(uplink.ack_bad_cnt);
  if (rejectedCount > 0 || mismatch > 0) {
    findings.push({
      branch: "UPLINKED_NOT_RECONCILED",
      bucket: "commit-first",
      symptom: "data_gaps",
      firstProbe: "reconcile checkpoint markers (last committed vs last reconciled) and batch range tags",
      mustLogs: {
        batch_range_marker: uplink.batch_range_marker ?? null,
        reconcile_summary: uplink.reconcile_summary ?? null,
        batches_rejected: rejected,
        ack_mismatch_cnt: num(uplink.ack_mismatch_cnt),
      },
      why: `${rejectedCount} batches refused by the head-end, ${mismatch} acks that do not match a sealed range`,
    });
  }

  // ── single meter vs port vs all meters ──
  const portErr = obj(iface.port_err_cnt ?? {}, "port_err_cnt");
  const ports = Object.entries(portErr).filter(([, n]) => num(n) > 0);
  const configured = num(iface.meters_configured);
  const online = num(iface.meters_online);
  if (meterErrors.length > 0) {
    const totalErrors = meterErrors.reduce((a, [, n]) => a + n, 0);
    const topPort = ports.sort((a, b) => num(b[1]) - num(a[1]))[0];
    const allMeters = configured > 0 && meterErrors.length >= configured;
    if (allMeters) {
      findings.push({
        branch: "ALL_METERS",
        bucket: powerMarkers > 0 ? "power-first" : "interface-first",
        symptom: "all_meters",
        firstProbe:
          powerMarkers > 0
            ? "VBAT droop and reset reason near the event (power brownout / surge)"
            : "watchdog feed / heartbeat markers, then the shared bus (EMC burst)",
        mustLogs: { uvlo_brownout: uvloBrownout, poll_marker: summarisePollMarkers(pollMarker) },
        why: `errors on all ${configured} meters: a global cause (power, surge, bus), not one cable`,
      });
    } else if (topPort !== undefined && num(topPort[1]) >= 0.8 * totalErrors && meterErrors.length > 1) {
      findings.push({
        branch: "SINGLE_PORT",
        bucket: "interface-first",
        symptom: "single_meter",
        firstProbe: `port loop test on ${topPort[0]} with a known-good cable and meter`,
        mustLogs: {
          port_err_cnt: Object.fromEntries(ports),
          surge_event_marker: { brownout_log_cnt: brownout },
        },
        why: `${num(topPort[1])} of ${totalErrors} errors on ${topPort[0]}: the fault follows the port`,
      });
    } else {
      const top = [...meterErrors].sort((a, b) => b[1] - a[1]).slice(0, 4);
      findings.push({
        branch: "SINGLE_METER",
        bucket: "interface-first",
        symptom: "single_meter",
        firstProbe: `port I/O (diff + common-mode) and isolation rail droop on ${top.map(([m]) => m).join(", ")}`,
        mustLogs: { iface_err_by_meter: Object.fromEntries(top), iso_fault_marker: null },
        why: `errors track meter_id (${top.map(([m, n]) => `${m}: ${n}`).join(", ")}), not one port`,
      });
    }
  } else if (configured > 0 && online < configured / 2) {
    findings.push({
      branch: "ALL_METERS",
      bucket: powerMarkers > 0 ? "power-first" : "commit-first",
      symptom: "all_meters",
      firstProbe: powerMarkers > 0 ? "VBAT droop and reset reason" : "commit stall counters and queue depth",
      mustLogs: { uvlo_brownout: uvloBrownout, queue_depth_max: num(commit.queue_depth_max) },
      why: `${online}/${configured} meters online`,
    });
  }

  // ── time ──
  const steps = Array.isArray(time.step_adjust_event) ? (time.step_adjust_event as Json[]) : [];
  const syncLost = num(time.sync_lost_cnt);
  const distribution = obj(time.time_quality_distribution ?? {}, "time_quality_distribution");
  const rtcBackwards = num(time.rtc_backwards_cnt);
  if (steps.length > 0) {
    findings.push({
      branch: "TIME_STEP_ADJUST",
      bucket: "time",
      symptom: "time",
      firstProbe: "the step_adjust_event near each jump, and the time source it came from",
      mustLogs: { step_adjust_event: steps.slice(-8), sync_lost_cnt: syncLost },
      why: `${steps.length} logged steps explain the timestamp jumps`,
    });
  }
  if (syncLost > 0 || num(distribution.HOLDOVER) > 0) {
    findings.push({
      branch: "TIME_HOLDOVER",
      bucket: "time",
      symptom: "time",
      firstProbe: "time source reachability; holdover age against its bound",
      mustLogs: {
        time_quality_distribution: distribution,
        sync_lost_cnt: syncLost,
        transitions: time.transitions ?? [],
      },
      why: `${syncLost} sync losses, ${num(distribution.HOLDOVER)} records committed in HOLDOVER: drift with growing uncertainty`,
    });
  }
  if (rtcBackwards > 0 || (num(distribution.RTC_ONLY) > 0 && num(distribution.SYNCED) === 0)) {
    findings.push({
      branch: "TIME_RTC_VALIDITY",
      bucket: "time",
      symptom: "time",
      firstProbe: "RTC valid flag after boot; RTC backup supply",
      mustLogs: { rtc_valid_flag: rtcBackwards === 0, time_quality_distribution: distribution },
      why: `${rtcBackwards} RTC backwards readings; ${num(distribution.RTC_ONLY)} records never synced`,
    });
  }
  const epochGaps = commitGaps.filter((g) => g.cause === "EPOCH");
  if (power.reset_reason === "UNCLEAN_RESTART" && unexplainedCommitGaps.length > 0) {
    findings.push({
      branch: "TIME_RECOVERY_BINDING",
      bucket: "commit-first",
      symptom: "time",
      firstProbe: "the replay checkpoint applied at reboot against the commit log",
      mustLogs: {
        replay_checkpoint: commit.replay_summary ?? null,
        commit_log: { epoch_gaps: epochGaps.length },
      },
      why: "an unclean restart with commit_id gaps not covered by a recovery epoch",
    });
  }
  return {
    format: "amiproof-diagnosis",
    version: 1,
    dcuId: typeof packs.dcu_id === "string" ? packs.dcu_id : null,
    healthy: findings.length === 0,
    primary: findings[0]?.branch ?? null,
    findings,
  };
}

function summarisePollMarkers(pollMarker: Json): Record<string, unknown> {
  const entries = Object.entries(pollMarker);
  let polls = 0;
  let ok = 0;
  const offline: string[] = [];
  for (const [meterId, value] of entries) {
    const m = obj(value, meterId);
    polls += num(m.polls);
    ok += num(m.ok);
    if (m.online === false) offline.push(meterId);
  }
  return { meters: entries.length, polls, ok, offline: offline.slice(0, 16) };
}

/** Plain-text rendering for the CLI. */
export function formatDiagnosis(d: Diagnosis): string {
  const lines = [
    `diagnosis of ${d.dcuId ?? "(unknown concentrator)"}: ${d.healthy ? "no failure branch indicated" : `primary branch ${d.primary}`}`,
  ];
  for (const f of d.findings) {
    lines.push(`  ${f.branch} [${f.bucket}] (${f.symptom})`);
    lines.push(`    why:         ${f.why}`);
    lines.push(`    first probe: ${f.firstProbe}`);
    for (const [k, v] of Object.entries(f.mustLogs)) lines.push(`    ${k.padEnd(22)} ${JSON.stringify(v)}`);
  }
  return `${lines.join("\n")}\n`;
}

/** What a verified evidence bundle (`amiproof-evidence-bundle`) says, as findings of the same router. */
export interface BundleSummary {
  readonly valid: boolean;
  readonly problems: readonly { readonly code?: string; readonly message: string; readonly where?: string }[];
  readonly gaps: readonly { readonly class: string; readonly message: string; readonly where: string }[];
}

/**
 * seed 003 H2-9 routing of an evidence bundle's verification: integrity failures (CRC, signature, Merkle,
 * chain) point at the reconcile segment or at tampering; SEQ gaps at acquisition; COMMIT gaps at storage;
 * a logged chain break or log wrap at the meter's own commit window (seed 002 H2-11 case 2).
 */
export function diagnoseBundle(report: BundleSummary): Diagnosis {
  const findings: Finding[] = [];
  const by = (cls: string) => report.gaps.filter((g) => g.class === cls);
  if (report.problems.length > 0) {
    findings.push({
      branch: "UPLINKED_NOT_RECONCILED",
      bucket: "commit-first",
      symptom: "data_gaps",
      firstProbe:
        "the failing sample itself: which record, which check (CRC → storage rot, signature → forgery)",
      mustLogs: {
        batch_range_marker: report.problems.slice(0, 8).map((p) => p.where ?? ""),
        reconcile_summary: report.problems.slice(0, 8).map((p) => `${p.code ?? ""} ${p.message}`.trim()),
      },
      why: `${report.problems.length} integrity failures: the local proof does not close`,
    });
  }
  if (by("SEQ_GAP").length > 0) {
    findings.push({
      branch: "NOT_COLLECTED",
      bucket: "interface-first",
      symptom: "data_gaps",
      firstProbe: "interface error counters of the meters named, and the poll markers around the gap",
      mustLogs: { iface_err_by_meter: null, poll_marker: null, seq_gap: by("SEQ_GAP").slice(0, 8) },
      why: `${by("SEQ_GAP").length} seq gaps with continuous commit_id: capture did not happen or was refused`,
    });
  }
  if (by("COMMIT_GAP").length > 0) {
    findings.push({
      branch: "COLLECTED_NOT_COMMITTED",
      bucket: "commit-first",
      symptom: "data_gaps",
      firstProbe: "commit state log and the recovery epochs around the gap",
      mustLogs: { commit_state: null, commit_id_gap: by("COMMIT_GAP").slice(0, 8) },
      why: `${by("COMMIT_GAP").length} commit_id gaps`,
    });
  }
  const logged = [...by("CHAIN_BREAK_LOGGED"), ...by("LOG_WRAP")];
  if (logged.length > 0) {
    findings.push({
      branch: "TIME_RECOVERY_BINDING",
      bucket: "power-first",
      symptom: "time",
      firstProbe: "PF-detect / brownout flags aligned with the RTC around the logged break",
      mustLogs: { replay_checkpoint: logged.slice(0, 8), commit_log: null },
      why: `${logged.length} chain breaks or log wraps the meter logged itself (explained, not forged)`,
    });
  }
  return {
    format: "amiproof-diagnosis",
    version: 1,
    dcuId: null,
    healthy: findings.length === 0,
    primary: findings[0]?.branch ?? null,
    findings,
  };
}
