import {
  FIRMWARE_JOB_COMMANDS_MAX,
  type FirmwareAction,
  type FirmwareCommand,
  type FirmwareJobMessage,
  type FirmwareProgressMessage,
  type JobReport,
  type Rng,
} from "../../evidence/index.ts";
import type { Role } from "./auth.ts";
import {
  CampaignError,
  type FirmwareRepository,
  type RepositoryImage,
  versionText,
} from "./firmware-repo.ts";
import { OTP_LIFETIME_MS_DEFAULT, type OtpSecurityModule } from "./otp.ts";
import {
  SESSION_LIMIT_PER_DCU_DEFAULT,
  SESSION_MS_DEFAULT,
  STAGGER_WINDOW_MS_DEFAULT,
  staggerStartTimes,
} from "./stagger.ts";

export * from "./firmware-repo.ts";
export * from "./otp.ts";
export * from "./stagger.ts";

// Firmware campaigns (issue 9; seeds 000 and 001): targets chosen by concentrator, model, group, current
// version or meter id; staged waves (cumulative percentages, e.g. 1 → 10 → 100) with a success condition
// (share of a wave confirmed) and an error condition (count or share of a wave failed; crossing it pauses
// the campaign); approval before start; operator pause / resume / cancel (forced cancel ignores late
// reports); retry of the failed meters only; rollback campaigns (full or application only) for admins,
// each command carrying an OTP from the security module; starts staggered per concentrator.
//
// Each meter's state is driven by its concentrator's reports:
//   queued → transferring → verifying → activating → confirmed | failed | rolled_back
// Confirmation is remote (seed 000 admin desk Q4): the concentrator reads the running image's checksum
// over DLMS after activation (or rollback) and the head-end matches it against the repository's
// (asset register's) checksum of the target image. Deterministic: time and randomness are handed in.

export type CampaignKind = FirmwareAction;
export type MeterCampaignState =
  | "queued"
  | "transferring"
  | "verifying"
  | "activating"
  | "confirmed"
  | "failed"
  | "rolled_back";
export const METER_CAMPAIGN_STATES: readonly MeterCampaignState[] = [
  "queued",
  "transferring",
  "verifying",
  "activating",
  "confirmed",
  "failed",
  "rolled_back",
];
const TERMINAL = new Set<MeterCampaignState>(["confirmed", "failed", "rolled_back"]);
const ORDER: Record<MeterCampaignState, number> = {
  queued: 0,
  transferring: 1,
  verifying: 2,
  activating: 3,
  confirmed: 4,
  failed: 4,
  rolled_back: 4,
};

export type CampaignState =
  | "pending_approval"
  | "approved"
  | "running"
  | "awaiting_operator"
  | "paused"
  | "completed"
  | "cancelled";

export const CAMPAIGNS_MAX = 1024;
export const CAMPAIGN_METERS_MAX = 2_000_000;
export const WAVES_MAX = 16;
export const SLEEPING_RESERVE_PER_DCU_DEFAULT = 2;
/** Reason strings of the head-end's own decisions (the meters' come from seed 000's rollback.log). */
export const CONFIRM_MISMATCH = "CONFIRM_MISMATCH";

/** A meter as the asset register knows it. */
export interface FleetMeter {
  readonly meterId: string;
  readonly dcuId: string;
  readonly model: string | null;
  readonly group: string | null;
  /** "MAJOR.MINOR.PATCH" of the running application, when known. */
  readonly firmwareVersion: string | null;
}

/** Every given list must match (AND); inside a list any value matches (OR). */
export interface CampaignTargets {
  readonly dcuIds?: readonly string[];
  readonly models?: readonly string[];
  readonly groups?: readonly string[];
  readonly versions?: readonly string[];
  readonly meterIds?: readonly string[];
}

export interface CampaignSpec {
  readonly name: string;
  readonly kind: CampaignKind;
  /** update: the image to install (repository checksum); rollback: the golden image's checksum. */
  readonly imageChecksum: string;
  readonly targets: CampaignTargets;
  /** Cumulative percentages, increasing, the last 100 (default [100]). */
  readonly waves?: readonly number[];
  /** A wave succeeds when at least this share of it is confirmed (default 1). */
  readonly successShare?: number;
  /** The campaign pauses once this many meters have failed or rolled back (default none). */
  readonly errorCount?: number | null;
  /** … or once this share of the current wave has (default none). */
  readonly errorShare?: number | null;
  /** Start the next wave on success without waiting for an operator (default true). */
  readonly autoAdvance?: boolean;
  readonly windowMs?: number;
  readonly sessionLimitPerDcu?: number;
  readonly sessionMs?: number;
  /**
   * Models whose meters sleep and wake on their own cycle (seed 001: gas meters every 30 minutes). Their
   * commands are not staggered — the concentrator serves them when they wake — and each concentrator keeps
   * `sleepingReservePerDcu` session places for them (default 2, when the campaign has sleeping meters).
   */
  readonly sleepingModels?: readonly string[];
  readonly sleepingReservePerDcu?: number;
}

export interface MeterJob {
  readonly meterId: string;
  readonly dcuId: string;
  readonly wave: number;
  /** A sleeping meter (seed 001): served when it wakes, outside the stagger plan. */
  readonly sleeping: boolean;
  state: MeterCampaignState;
  reason: string | null;
  startAtMs: number | null;
  dispatched: boolean;
  attempts: number;
  blocksDone: number;
  blocksTotal: number;
  activeChecksum: string | null;
  firmwareId: string | null;
  updatedMs: number;
}

export interface Campaign {
  readonly id: string;
  readonly name: string;
  readonly kind: CampaignKind;
  readonly imageChecksum: string;
  readonly component: "app" | "comms";
  readonly releaseCounter: number | null;
  readonly imageExpiresMs: number;
  readonly createdBy: string;
  readonly createdMs: number;
  approvedBy: string | null;
  state: CampaignState;
  pauseReason: string | null;
  cancelMode: "none" | "graceful" | "forced";
  /** Index of the newest wave launched (-1 before start). */
  currentWave: number;
  readonly waveEnds: number[];
  readonly successShare: number;
  readonly errorCount: number | null;
  readonly errorShare: number | null;
  readonly autoAdvance: boolean;
  readonly windowMs: number;
  readonly sessionLimitPerDcu: number;
  readonly sessionMs: number;
  /** Session places per concentrator kept for sleeping meters (0 when there are none). */
  readonly sleepingReserve: number;
  readonly meters: MeterJob[];
  readonly byMeter: Map<string, MeterJob>;
  skippedCurrent: number;
  /** Failures already counted when an operator resumed or retried: the error count restarts there. */
  failuresBaseline: number;
  /** The same for the current wave's share. */
  waveFailuresBaseline: number;
  lateReportsIgnored: number;
  reportsIgnored: number;
  history: { atMs: number; by: string; what: string }[];
}

export interface CampaignManagerOptions {
  nowMs(): number;
  readonly rng: Rng;
  readonly repository: FirmwareRepository;
  /** Null: rollback campaigns are refused (no security module configured). */
  readonly otp: OtpSecurityModule | null;
  /** Sends one job message to a concentrator (ami/<dcu>/fw/jobs). */
  send(message: FirmwareJobMessage): void;
  readonly otpLifetimeMs?: number;
}

export interface Actor {
  readonly name: string;
  readonly role: Role;
}

const ROLE_RANK: Record<Role, number> = { viewer: 0, operator: 1, admin: 2 };
const HISTORY_MAX = 256;

export class CampaignManager {
  private readonly campaigns = new Map<string, Campaign>();
  private readonly releaseFloor = new Map<string, number>();
  private sequence = 0;

  constructor(private readonly options: CampaignManagerOptions) {}

  list(): Campaign[] {
    return [...this.campaigns.values()];
  }

  get(id: string): Campaign {
    const c = this.campaigns.get(id);
    if (c === undefined) throw new CampaignError("NOT_FOUND", `no campaign ${id}`);
    return c;
  }

  create(spec: CampaignSpec, fleet: readonly FleetMeter[], actor: Actor): Campaign {
    const rollback = spec.kind !== "update";
    // seed 000 "Level 4 Administrative Access": rollbacks are the admin's; campaigns the operator's.
    this.requireRole(actor, rollback ? "admin" : "operator", `create ${spec.kind} campaign`);
    if (this.campaigns.size >= CAMPAIGNS_MAX)
      throw new CampaignError("BAD_REQUEST", `at most ${CAMPAIGNS_MAX} campaigns`);
    if (typeof spec.name !== "string" || spec.name.length === 0 || spec.name.length > 128)
      throw new CampaignError("BAD_REQUEST", "name must be 1..128 characters");
    if (!/^[0-9a-f]{64}$/.test(spec.imageChecksum))
      throw new CampaignError("BAD_REQUEST", "image checksum must be 64 lowercase hex digits");
    const now = this.options.nowMs();
    let component: "app" | "comms" = "app";
    let releaseCounter: number | null = null;
    let imageExpiresMs = 0;
    let image: RepositoryImage | undefined;
    if (rollback) {
      if (this.options.otp === null)
        throw new CampaignError(
          "NOT_CONFIGURED",
          "no OTP security module: rollback commands cannot be signed",
        );
    } else {
      image = this.options.repository.get(spec.imageChecksum);
      if (image === undefined)
        throw new CampaignError("UNKNOWN_IMAGE", `image ${spec.imageChecksum} is not in the repository`);
      this.checkImageUsable(image, now);
      component = image.component;
      releaseCounter = image.version;
      imageExpiresMs = image.expiresMs;
    }
    const waves = spec.waves ?? [100];
    if (
      waves.length === 0 ||
      waves.length > WAVES_MAX ||
      waves.some((p, i) => !(p > 0 && p <= 100) || (i > 0 && p <= waves[i - 1]!)) ||
      waves[waves.length - 1] !== 100
    ) {
      throw new CampaignError(
        "BAD_REQUEST",
        `waves must be 1..${WAVES_MAX} increasing percentages in (0, 100] ending at 100, got ${JSON.stringify(waves)}`,
      );
    }
    const share = (v: number | null | undefined, name: string, fallback: number | null) => {
      if (v === undefined || v === null) return fallback;
      if (!(v >= 0 && v <= 1)) throw new CampaignError("BAD_REQUEST", `${name} must be in [0, 1]`);
      return v;
    };
    const positive = (v: number | undefined, name: string, fallback: number, max: number) => {
      if (v === undefined) return fallback;
      if (!Number.isSafeInteger(v) || v < 1 || v > max)
        throw new CampaignError("BAD_REQUEST", `${name} must be an integer in 1..${max}`);
      return v;
    };
    const errorCount =
      spec.errorCount === undefined || spec.errorCount === null
        ? null
        : positive(spec.errorCount, "errorCount", 1, CAMPAIGN_METERS_MAX);
    // Targets
    const match = (list: readonly string[] | undefined, value: string | null) =>
      list === undefined || list.length === 0 || (value !== null && list.includes(value));
    const t = spec.targets;
    let skippedCurrent = 0;
    const chosen: FleetMeter[] = [];
    for (const m of fleet) {
      if (
        !match(t.dcuIds, m.dcuId) ||
        !match(t.models, m.model) ||
        !match(t.groups, m.group) ||
        !match(t.versions, m.firmwareVersion) ||
        !match(t.meterIds, m.meterId)
      )
        continue;
      // Already on the release (an update is never re-sent to a meter that runs it).
      if (image !== undefined && m.firmwareVersion === image.versionText) {
        skippedCurrent++;
        continue;
      }
      chosen.push(m);
    }
    if (chosen.length === 0)
      throw new CampaignError(
        "NO_TARGETS",
        `no meter matches the targets (${skippedCurrent} already current)`,
      );
    if (chosen.length > CAMPAIGN_METERS_MAX)
      throw new CampaignError("BAD_REQUEST", `at most ${CAMPAIGN_METERS_MAX} meters per campaign`);
    // Waves over a seeded shuffle, so a 1 % pilot is spread over concentrators.
    for (let i = chosen.length - 1; i > 0; i--) {
      const j = this.options.rng.nextInt(i + 1);
      [chosen[i], chosen[j]] = [chosen[j]!, chosen[i]!];
    }
    const waveEnds: number[] = [];
    for (const p of waves) {
      const previous = waveEnds[waveEnds.length - 1] ?? 0;
      const end = Math.min(chosen.length, Math.max(previous + 1, Math.ceil((p / 100) * chosen.length)));
      if (end > previous) waveEnds.push(end);
    }
    const meters: MeterJob[] = [];
    let wave = 0;
    chosen.forEach((m, i) => {
      while (i >= waveEnds[wave]!) wave++;
      meters.push({
        meterId: m.meterId,
        dcuId: m.dcuId,
        wave,
        sleeping: m.model !== null && (spec.sleepingModels ?? []).includes(m.model),
        state: "queued",
        reason: null,
        startAtMs: null,
        dispatched: false,
        attempts: 0,
        blocksDone: 0,
        blocksTotal: 0,
        activeChecksum: null,
        firmwareId: null,
        updatedMs: now,
      });
    });
    const sessionLimitPerDcu = positive(
      spec.sessionLimitPerDcu,
      "sessionLimitPerDcu",
      SESSION_LIMIT_PER_DCU_DEFAULT,
      1024,
    );
    const anySleeping = meters.some((m) => m.sleeping);
    const sleepingReserve = anySleeping
      ? Math.min(sessionLimitPerDcu - 1, spec.sleepingReservePerDcu ?? SLEEPING_RESERVE_PER_DCU_DEFAULT)
      : 0;
    if (anySleeping && sleepingReserve < 1)
      throw new CampaignError(
        "BAD_REQUEST",
        "sleeping meters need a session limit of at least 2 per concentrator",
      );
    const id = `C${now.toString(36)}-${(++this.sequence).toString(36)}`;
    const campaign: Campaign = {
      id,
      name: spec.name,
      kind: spec.kind,
      imageChecksum: spec.imageChecksum,
      component,
      releaseCounter,
      imageExpiresMs,
      createdBy: actor.name,
      createdMs: now,
      approvedBy: null,
      state: "pending_approval",
      pauseReason: null,
      cancelMode: "none",
      currentWave: -1,
      waveEnds,
      successShare: share(spec.successShare, "successShare", 1)!,
      errorCount,
      errorShare: share(spec.errorShare, "errorShare", null),
      autoAdvance: spec.autoAdvance ?? true,
      windowMs: positive(spec.windowMs, "windowMs", STAGGER_WINDOW_MS_DEFAULT, 7 * 24 * 3_600_000),
      sessionLimitPerDcu,
      sleepingReserve,
      sessionMs: positive(spec.sessionMs, "sessionMs", SESSION_MS_DEFAULT, 3_600_000),
      meters,
      byMeter: new Map(meters.map((m) => [m.meterId, m])),
      skippedCurrent,
      failuresBaseline: 0,
      waveFailuresBaseline: 0,
      lateReportsIgnored: 0,
      reportsIgnored: 0,
      history: [],
    };
    this.campaigns.set(id, campaign);
    this.note(campaign, actor.name, `created (${meters.length} meters, ${waveEnds.length} waves)`);
    return campaign;
  }

  /** Approval before start (rollbacks need an admin). */
  approve(id: string, actor: Actor): Campaign {
    const c = this.get(id);
    this.requireRole(actor, c.kind === "update" ? "operator" : "admin", "approve");
    this.requireState(c, ["pending_approval"], "approve");
    c.approvedBy = actor.name;
    c.state = "approved";
    this.note(c, actor.name, "approved");
    return c;
  }

  start(id: string, actor: Actor): Campaign {
    const c = this.get(id);
    this.requireRole(actor, c.kind === "update" ? "operator" : "admin", "start");
    if (c.state === "pending_approval")
      throw new CampaignError("BAD_STATE", `campaign ${id} needs approval before it starts`);
    this.requireState(c, ["approved"], "start");
    if (c.kind === "update") {
      const image = this.requireImage(c);
      this.checkImageUsable(image, this.options.nowMs());
      const floor = this.releaseFloor.get(c.component) ?? 0;
      this.releaseFloor.set(c.component, Math.max(floor, image.version));
    }
    c.state = "running";
    this.note(c, actor.name, "started");
    this.launchWave(c, 0);
    return c;
  }

  /** Operator-gated next wave (or after a pause on a missed success condition). */
  advance(id: string, actor: Actor): Campaign {
    const c = this.get(id);
    this.requireRole(actor, c.kind === "update" ? "operator" : "admin", "advance");
    this.requireState(c, ["awaiting_operator"], "advance");
    c.state = "running";
    this.note(c, actor.name, `wave ${c.currentWave + 2} released`);
    this.launchWave(c, c.currentWave + 1);
    return c;
  }

  pause(id: string, actor: Actor, reason = "operator"): Campaign {
    const c = this.get(id);
    this.requireRole(actor, "operator", "pause");
    this.requireState(c, ["running", "awaiting_operator"], "pause");
    this.pauseInternal(c, reason, actor.name);
    return c;
  }

  resume(id: string, actor: Actor): Campaign {
    const c = this.get(id);
    this.requireRole(actor, c.kind === "update" ? "operator" : "admin", "resume");
    this.requireState(c, ["paused"], "resume");
    if (c.kind === "update") this.checkImageUsable(this.requireImage(c), this.options.nowMs());
    c.state = "running";
    c.pauseReason = null;
    this.setBaselines(c);
    this.note(c, actor.name, "resumed");
    this.dispatchPending(c);
    this.evaluate(c);
    return c;
  }

  cancel(id: string, actor: Actor, forced: boolean): Campaign {
    const c = this.get(id);
    this.requireRole(actor, "operator", "cancel");
    if (c.state === "cancelled" && (c.cancelMode === "forced" || !forced)) return c;
    if (c.state === "completed") throw new CampaignError("BAD_STATE", `campaign ${id} is completed`);
    c.state = "cancelled";
    c.cancelMode = forced ? "forced" : "graceful";
    this.sendCancel(c, c.cancelMode);
    for (const m of c.meters) if (m.state === "queued") m.dispatched = false;
    this.note(c, actor.name, forced ? "cancelled (forced: late reports ignored)" : "cancelled");
    return c;
  }

  /** Re-queues only the meters that failed (not those the watchdog rolled back: their image is bad). */
  retryFailed(id: string, actor: Actor): { campaign: Campaign; retried: number } {
    const c = this.get(id);
    this.requireRole(actor, c.kind === "update" ? "operator" : "admin", "retry");
    this.requireState(c, ["running", "awaiting_operator", "paused", "completed"], "retry");
    if (c.kind === "update") this.checkImageUsable(this.requireImage(c), this.options.nowMs());
    let retried = 0;
    for (const m of c.meters) {
      if (m.state !== "failed" || m.wave > c.currentWave) continue;
      m.state = "queued";
      m.reason = null;
      m.dispatched = false;
      m.attempts++;
      m.blocksDone = 0;
      retried++;
    }
    c.state = "running";
    c.pauseReason = null;
    this.setBaselines(c);
    this.note(c, actor.name, `retry of ${retried} failed meters`);
    this.dispatchPending(c);
    this.evaluate(c);
    return { campaign: c, retried };
  }

  /**
   * Everything the manager knows, as plain JSON (the runtime keeps it in a file so a restarted head-end
   * carries on with its campaigns and still accepts their concentrators' reports).
   */
  snapshot(): CampaignSnapshot {
    return {
      format: CAMPAIGN_SNAPSHOT_FORMAT,
      version: 1,
      sequence: this.sequence,
      release_floor: Object.fromEntries(this.releaseFloor),
      campaigns: [...this.campaigns.values()].map(({ byMeter: _byMeter, ...rest }) => rest),
    };
  }

  /** Replaces the manager's state with a snapshot's; a snapshot that does not parse is refused whole. */
  restore(snapshot: unknown): void {
    const s = snapshot as Partial<CampaignSnapshot> | null;
    if (
      s === null ||
      typeof s !== "object" ||
      s.format !== CAMPAIGN_SNAPSHOT_FORMAT ||
      s.version !== 1 ||
      !Number.isSafeInteger(s.sequence) ||
      !Array.isArray(s.campaigns) ||
      typeof s.release_floor !== "object" ||
      s.release_floor === null
    ) {
      throw new CampaignError("BAD_REQUEST", "not a campaign snapshot (format, version 1)");
    }
    const restored = new Map<string, Campaign>();
    for (const [i, raw] of s.campaigns.entries()) {
      const c = raw as Omit<Campaign, "byMeter">;
      if (
        typeof c?.id !== "string" ||
        !Array.isArray(c.meters) ||
        !Array.isArray(c.waveEnds) ||
        !Array.isArray(c.history) ||
        c.meters.some(
          (m) =>
            typeof m?.meterId !== "string" || !(METER_CAMPAIGN_STATES as readonly string[]).includes(m.state),
        )
      ) {
        throw new CampaignError("BAD_REQUEST", `campaign snapshot entry ${i} is malformed`);
      }
      restored.set(c.id, { ...c, byMeter: new Map(c.meters.map((m) => [m.meterId, m])) });
    }
    this.campaigns.clear();
    for (const [id, c] of restored) this.campaigns.set(id, c);
    this.releaseFloor.clear();
    for (const [component, floor] of Object.entries(s.release_floor)) {
      if (typeof floor === "number") this.releaseFloor.set(component, floor);
    }
    this.sequence = s.sequence!;
  }

  /** A concentrator's progress message. Returns how many reports changed a meter's state. */
  applyProgress(message: FirmwareProgressMessage): number {
    const c = this.campaigns.get(message.campaignId);
    if (c === undefined) return 0;
    let changed = 0;
    for (const report of message.reports) {
      if (c.state === "cancelled" && c.cancelMode === "forced") {
        c.lateReportsIgnored++;
        continue;
      }
      const m = c.byMeter.get(report.meterId);
      if (m === undefined || m.dcuId !== message.dcuId) {
        c.reportsIgnored++;
        continue;
      }
      if (this.applyReport(c, m, report)) changed++;
    }
    if (changed > 0) this.evaluate(c);
    return changed;
  }

  status(id: string): CampaignStatus {
    return campaignStatus(this.get(id));
  }

  // ───────────────────────────── internals ─────────────────────────────

  private applyReport(c: Campaign, m: MeterJob, r: JobReport): boolean {
    if (TERMINAL.has(m.state)) {
      c.reportsIgnored++;
      return false;
    }
    let next: MeterCampaignState;
    let reason: string | null = null;
    switch (r.state) {
      case "transferring":
      case "verifying":
      case "activating":
        next = r.state;
        break;
      case "failed":
        next = r.reason === "WDT_REBOOT_LOOP" ? "rolled_back" : "failed";
        reason = r.reason ?? "FAILED";
        break;
      case "done":
        // Remote confirmation: the running image's checksum against the asset register's.
        if (this.confirms(c, r)) next = "confirmed";
        else if (r.reason === "WDT_REBOOT_LOOP" || r.reason?.startsWith("ROLLED_BACK") === true) {
          next = "rolled_back";
          reason = r.reason;
        } else {
          next = "failed";
          reason = r.reason ?? CONFIRM_MISMATCH;
        }
        break;
    }
    if (ORDER[next] < ORDER[m.state]) {
      c.reportsIgnored++;
      return false;
    }
    m.state = next;
    m.reason = reason;
    m.blocksDone = r.blocksDone;
    m.blocksTotal = r.blocksTotal;
    if (r.activeChecksum !== null) m.activeChecksum = r.activeChecksum;
    if (r.firmwareId !== null) m.firmwareId = r.firmwareId;
    m.updatedMs = this.options.nowMs();
    return true;
  }

  /**
   * Remote confirmation (seed 000 Q4): the running application's checksum, read over DLMS, equals the
   * asset register's checksum of the target image. The meters serve the application's checksum only, so
   * a comms-stack image is confirmed by the version in the firmware identifier.
   */
  private confirms(c: Campaign, r: JobReport): boolean {
    if (c.component === "app") return r.activeChecksum !== null && r.activeChecksum === c.imageChecksum;
    return (
      c.releaseCounter !== null && r.firmwareId?.includes(`comms ${versionText(c.releaseCounter)}`) === true
    );
  }

  /** Error condition, then wave completion: pause, wait for the operator, next wave, or complete. */
  private evaluate(c: Campaign): void {
    if (c.state !== "running" || c.currentWave < 0) return;
    const launched = c.waveEnds[c.currentWave]!;
    const waveStart = c.currentWave === 0 ? 0 : c.waveEnds[c.currentWave - 1]!;
    let failures = 0;
    let waveFailures = 0;
    let waveConfirmed = 0;
    let waveTerminal = 0;
    for (let i = 0; i < launched; i++) {
      const m = c.meters[i]!;
      const bad = m.state === "failed" || m.state === "rolled_back";
      if (bad) failures++;
      if (i >= waveStart) {
        if (bad) waveFailures++;
        if (m.state === "confirmed") waveConfirmed++;
        if (TERMINAL.has(m.state)) waveTerminal++;
      }
    }
    const waveSize = launched - waveStart;
    if (c.errorCount !== null && failures - c.failuresBaseline >= c.errorCount) {
      this.pauseInternal(
        c,
        `ERROR_THRESHOLD: ${failures - c.failuresBaseline} failed ≥ error count ${c.errorCount}`,
        "head-end",
      );
      return;
    }
    if (c.errorShare !== null && (waveFailures - c.waveFailuresBaseline) / waveSize > c.errorShare) {
      this.pauseInternal(
        c,
        `ERROR_THRESHOLD: ${waveFailures - c.waveFailuresBaseline}/${waveSize} of wave ${c.currentWave + 1} failed > share ${c.errorShare}`,
        "head-end",
      );
      return;
    }
    if (waveTerminal < waveSize) return;
    if (waveConfirmed / waveSize < c.successShare) {
      this.pauseInternal(
        c,
        `SUCCESS_CONDITION_NOT_MET: ${waveConfirmed}/${waveSize} of wave ${c.currentWave + 1} confirmed < ${c.successShare}`,
        "head-end",
      );
      return;
    }
    if (c.currentWave + 1 >= c.waveEnds.length) {
      c.state = "completed";
      this.note(c, "head-end", "completed");
      return;
    }
    if (!c.autoAdvance) {
      c.state = "awaiting_operator";
      this.note(c, "head-end", `wave ${c.currentWave + 1} succeeded; next wave waits for an operator`);
      return;
    }
    this.launchWave(c, c.currentWave + 1);
  }

  private pauseInternal(c: Campaign, reason: string, by: string): void {
    c.state = "paused";
    c.pauseReason = reason;
    // Commands not started yet are withdrawn; sessions in flight finish and report.
    this.sendCancel(c, "graceful");
    for (const m of c.meters) if (m.state === "queued") m.dispatched = false;
    this.note(c, by, `paused: ${reason}`);
  }

  /** An operator resumed or retried: the error condition counts failures from here. */
  private setBaselines(c: Campaign): void {
    c.failuresBaseline = countFailures(c);
    const start = c.currentWave <= 0 ? 0 : c.waveEnds[c.currentWave - 1]!;
    const end = c.waveEnds[c.currentWave] ?? 0;
    let wave = 0;
    for (let i = start; i < end; i++) {
      const state = c.meters[i]!.state;
      if (state === "failed" || state === "rolled_back") wave++;
    }
    c.waveFailuresBaseline = wave;
  }

  private launchWave(c: Campaign, wave: number): void {
    c.currentWave = wave;
    c.waveFailuresBaseline = 0;
    this.note(c, "head-end", `wave ${wave + 1} of ${c.waveEnds.length} launched`);
    this.dispatchPending(c);
    this.evaluate(c);
  }

  /** Sends every queued, undispatched meter of the launched waves, staggered per concentrator. */
  private dispatchPending(c: Campaign): void {
    const launched = c.waveEnds[c.currentWave] ?? 0;
    const pending: MeterJob[] = [];
    for (let i = 0; i < launched; i++) {
      const m = c.meters[i]!;
      if (m.state === "queued" && !m.dispatched) pending.push(m);
    }
    if (pending.length === 0) return;
    const now = this.options.nowMs();
    // Listening meters are staggered within the places left after the sleeping meters' reserve; sleeping
    // ones are due at once and served by their concentrator when they wake.
    const awake = pending.filter((m) => !m.sleeping);
    const plan = staggerStartTimes(awake, {
      windowMs: c.windowMs,
      sessionLimitPerDcu: c.sessionLimitPerDcu - c.sleepingReserve,
      sessionMs: c.sessionMs,
      rng: this.options.rng,
    });
    const offsets = new Map<MeterJob, number>();
    for (const [i, m] of awake.entries()) offsets.set(m, plan.offsetsMs[i]!);
    const image = c.kind === "update" ? this.requireImage(c) : undefined;
    const lifetime = this.options.otpLifetimeMs ?? OTP_LIFETIME_MS_DEFAULT;
    const byDcu = new Map<string, FirmwareCommand[]>();
    for (const m of pending) {
      const startAtMs = now + (offsets.get(m) ?? 0);
      m.startAtMs = startAtMs;
      m.dispatched = true;
      const auth =
        c.kind === "update"
          ? null
          : this.options.otp!.issue({
              meterId: m.meterId,
              action: c.kind,
              targetChecksum: c.imageChecksum,
              expiresMs: startAtMs + lifetime,
              nowMs: now,
            });
      let list = byDcu.get(m.dcuId);
      if (list === undefined) {
        list = [];
        byDcu.set(m.dcuId, list);
      }
      list.push({ meterId: m.meterId, action: c.kind, targetChecksum: c.imageChecksum, startAtMs, auth });
    }
    for (const [dcuId, commands] of byDcu) {
      for (let at = 0; at < commands.length; at += FIRMWARE_JOB_COMMANDS_MAX) {
        this.options.send({
          campaignId: c.id,
          dcuId,
          cancel: "none",
          images:
            image !== undefined && at === 0
              ? [
                  {
                    checksum: image.checksum,
                    component: image.component,
                    version: image.version,
                    bytes: image.bytes,
                  },
                ]
              : [],
          commands: commands.slice(at, at + FIRMWARE_JOB_COMMANDS_MAX),
        });
      }
    }
  }

  private sendCancel(c: Campaign, mode: "graceful" | "forced"): void {
    const dcus = new Set<string>();
    for (const m of c.meters) if (m.dispatched || !TERMINAL.has(m.state)) dcus.add(m.dcuId);
    for (const dcuId of dcus)
      this.options.send({ campaignId: c.id, dcuId, cancel: mode, images: [], commands: [] });
  }

  private requireImage(c: Campaign): RepositoryImage {
    const image = this.options.repository.get(c.imageChecksum);
    if (image === undefined)
      throw new CampaignError("UNKNOWN_IMAGE", `image ${c.imageChecksum} is no longer in the repository`);
    return image;
  }

  /** Image expiry and the release counter: a stale or older campaign cannot be replayed onto the fleet. */
  private checkImageUsable(image: RepositoryImage, nowMs: number): void {
    if (image.expiresMs !== 0 && image.expiresMs <= nowMs) {
      throw new CampaignError(
        "IMAGE_EXPIRED",
        `image ${versionText(image.version)} expired ${new Date(image.expiresMs).toISOString()}`,
      );
    }
    const floor = this.releaseFloor.get(image.component) ?? 0;
    if (image.version < floor) {
      throw new CampaignError(
        "STALE_RELEASE",
        `${image.component} release ${versionText(image.version)} is older than ${versionText(floor)}, already rolled out`,
      );
    }
  }

  private requireRole(actor: Actor, needed: Role, what: string): void {
    if (ROLE_RANK[actor.role] < ROLE_RANK[needed])
      throw new CampaignError(
        "FORBIDDEN",
        `${what} needs the ${needed} role; ${actor.name} is ${actor.role}`,
      );
  }

  private requireState(c: Campaign, allowed: readonly CampaignState[], what: string): void {
    if (!allowed.includes(c.state))
      throw new CampaignError("BAD_STATE", `cannot ${what} campaign ${c.id} in state ${c.state}`);
  }

  private note(c: Campaign, by: string, what: string): void {
    if (c.history.length >= HISTORY_MAX) c.history.splice(0, c.history.length - HISTORY_MAX + 1);
    c.history.push({ atMs: this.options.nowMs(), by, what });
  }
}

function countFailures(c: Campaign): number {
  let n = 0;
  for (const m of c.meters) if (m.state === "failed" || m.state === "rolled_back") n++;
  return n;
}

export const CAMPAIGN_SNAPSHOT_FORMAT = "amiproof-campaigns";

export interface CampaignSnapshot {
  readonly format: typeof CAMPAIGN_SNAPSHOT_FORMAT;
  readonly version: 1;
  readonly sequence: number;
  readonly release_floor: Record<string, number>;
  readonly campaigns: readonly Omit<Campaign, "byMeter">[];
}

export interface CampaignStatus {
  readonly campaign_id: string;
  readonly name: string;
  readonly kind: CampaignKind;
  readonly state: CampaignState;
  readonly pause_reason: string | null;
  readonly cancel_mode: string;
  readonly image_checksum: string;
  readonly component: string;
  readonly release_counter: number | null;
  readonly approved_by: string | null;
  readonly created_by: string;
  readonly meters: number;
  readonly skipped_current: number;
  readonly counts: Record<MeterCampaignState, number>;
  readonly progress: number;
  readonly current_wave: number;
  readonly waves: { wave: number; size: number; confirmed: number; failed: number; rolled_back: number }[];
  readonly reasons: Record<string, number>;
  readonly late_reports_ignored: number;
  readonly reports_ignored: number;
  readonly history: readonly { atMs: number; by: string; what: string }[];
}

export function campaignStatus(c: Campaign): CampaignStatus {
  const counts = Object.fromEntries(METER_CAMPAIGN_STATES.map((s) => [s, 0])) as Record<
    MeterCampaignState,
    number
  >;
  const reasons: Record<string, number> = {};
  const waves = c.waveEnds.map((end, i) => ({
    wave: i + 1,
    size: end - (i === 0 ? 0 : c.waveEnds[i - 1]!),
    confirmed: 0,
    failed: 0,
    rolled_back: 0,
  }));
  for (const m of c.meters) {
    counts[m.state]++;
    if (m.reason !== null) reasons[m.reason] = (reasons[m.reason] ?? 0) + 1;
    const w = waves[m.wave]!;
    if (m.state === "confirmed") w.confirmed++;
    if (m.state === "failed") w.failed++;
    if (m.state === "rolled_back") w.rolled_back++;
  }
  const terminal = counts.confirmed + counts.failed + counts.rolled_back;
  return {
    campaign_id: c.id,
    name: c.name,
    kind: c.kind,
    state: c.state,
    pause_reason: c.pauseReason,
    cancel_mode: c.cancelMode,
    image_checksum: c.imageChecksum,
    component: c.component,
    release_counter: c.releaseCounter,
    approved_by: c.approvedBy,
    created_by: c.createdBy,
    meters: c.meters.length,
    skipped_current: c.skippedCurrent,
    counts,
    progress: c.meters.length === 0 ? 1 : terminal / c.meters.length,
    current_wave: c.currentWave + 1,
    waves,
    reasons,
    late_reports_ignored: c.lateReportsIgnored,
    reports_ignored: c.reportsIgnored,
    history: c.history.slice(-20),
  };
}

/** One meter's job as JSON (snake_case). */
export function meterJobToJson(m: MeterJob): Record<string, unknown> {
  return {
    meter_id: m.meterId,
    dcu_id: m.dcuId,
    wave: m.wave + 1,
    state: m.state,
    reason: m.reason,
    start_at_ms: m.startAtMs,
    attempts: m.attempts,
    blocks_done: m.blocksDone,
    blocks_total: m.blocksTotal,
    active_checksum: m.activeChecksum,
    firmware_id: m.firmwareId,
    updated_ms: m.updatedMs,
  };
}
