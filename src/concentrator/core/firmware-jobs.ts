import {
  type Data,
  DlmsError,
  IMAGE_STATUS_POLLS_MAX,
  IMAGE_TRANSFER_OBIS,
  type Obis,
  parseObis,
} from "../../dlms/index.ts";
import {
  decodeFirmwareJob,
  decodeRollbackResult,
  EVENT_TYPE_CODES,
  encodeRollbackCommand,
  type FirmwareCommand,
  type FirmwareJobMessage,
  type FirmwareProgressMessage,
  type JobReport,
  type JobReportState,
  sha256,
  toHex,
} from "../../evidence/index.ts";

// The concentrator's side of firmware campaigns (issue 9; seeds 000 and 001). Job messages from the
// head-end (ami/<dcu>/fw/jobs) bring images — cached by checksum, checked against it — and per-meter
// commands with a staggered start time. Due commands run with bounded concurrency (the concentrator's
// concurrent-session limit), each as one DLMS session with its meter:
//
//   update:   IC 18 image transfer — initiate, or resume from image_transferred_blocks_status
//             (attribute 3) when the meter still holds part of this job's image — blocks, verify,
//             activate; then the running image's checksum and firmware identifier (remote confirmation).
//   rollback: the OTP-signed rollback command (meter's manufacturer-specific object), then the same reads.
//
// Every step is reported (ami/<dcu>/fw/progress). A meter that cannot be reached (gas meters sleep and
// wake every 30 minutes, seed 001) is tried again after `retryDelayMs`, up to `attemptsMax` times; an
// interrupted transfer resumes where the meter's bitmap says. Why a meter failed comes from the meter: the
// IC 18 status, and the sealed event types it logged during the job (SIG_FAIL → SIGN_AUTH_FAIL,
// FW_ROLLBACK → VERSION_ROLLBACK_REFUSED, WDT_REBOOT_LOOP, else a refused verification is the image's
// ERROR_CRC_MISMATCH). Deterministic core: the clock, the DLMS sessions and the publisher are handed in.

/** The part of the DLMS client the jobs use (DlmsClient fits). */
export interface FirmwareDlmsClient {
  readonly maxPdu: number;
  get(
    classId: number,
    obis: Obis,
    attributeId: number,
    selection?: { selector: number; parameters: Data } | null,
  ): Promise<Data>;
  action(
    classId: number,
    obis: Obis,
    methodId: number,
    parameters: Data | null,
  ): Promise<{ result: number; data: Data | null }>;
}

export interface FirmwareSession {
  readonly client: FirmwareDlmsClient;
  close(): void | Promise<void>;
}

export interface ImageCache {
  get(checksum: string): Uint8Array | undefined;
  put(checksum: string, bytes: Uint8Array): void;
}

export const IMAGE_CACHE_IMAGES_MAX = 16;
export const FIRMWARE_SESSIONS_MAX = 256;
export const FIRMWARE_SESSIONS_DEFAULT = 4;
export const FIRMWARE_QUEUE_MAX = 200_000;
export const FIRMWARE_DONE_REMEMBERED_MAX = 200_000;
/** seed 001: a sleeping gas meter wakes every 30 minutes. */
export const FIRMWARE_RETRY_DELAY_MS_DEFAULT = 30 * 60_000;
export const FIRMWARE_ATTEMPTS_MAX_DEFAULT = 4;
/** Progress is reported at most this many times per transfer (plus start and end). */
const PROGRESS_STEPS = 4;

/** The image cache in memory, least recently used out first (the runtime keeps its images directory). */
export class MemoryImageCache implements ImageCache {
  private readonly images = new Map<string, Uint8Array>();
  get(checksum: string): Uint8Array | undefined {
    const bytes = this.images.get(checksum);
    if (bytes !== undefined) {
      this.images.delete(checksum);
      this.images.set(checksum, bytes);
    }
    return bytes;
  }
  put(checksum: string, bytes: Uint8Array): void {
    this.images.delete(checksum);
    this.images.set(checksum, bytes);
    while (this.images.size > IMAGE_CACHE_IMAGES_MAX) {
      const oldest = this.images.keys().next().value;
      if (oldest === undefined) break;
      this.images.delete(oldest);
    }
  }
}

export interface FirmwareJobsOptions {
  readonly dcuId: string;
  nowMs(): number;
  /** Opens an associated management session with a meter; throws when the meter cannot be reached. */
  connect(meterId: string): Promise<FirmwareSession>;
  publish(message: FirmwareProgressMessage): void;
  readonly cache?: ImageCache;
  /** The concentrator's concurrent-session limit for firmware work. */
  readonly concurrency?: number;
  readonly retryDelayMs?: number;
  readonly attemptsMax?: number;
}

interface Job {
  readonly campaignId: string;
  readonly command: FirmwareCommand;
  notBeforeMs: number;
  attempts: number;
  aborted: boolean;
  /** This job already initiated a transfer on the meter: a later session may resume it. */
  transferStarted: boolean;
}

export interface FirmwareJobsCounters {
  jobs_received: number;
  duplicates_ignored: number;
  images_cached: number;
  images_refused: number;
  sessions_started: number;
  sessions_failed: number;
  transfers_resumed: number;
  blocks_sent: number;
  cancelled: number;
  queue_refused: number;
}

const FIRMWARE_ID = parseObis("1.0.0.2.0.255");
const FIRMWARE_CHECKSUM = parseObis("1.0.0.2.8.255");
const EVENT_LOG = parseObis("0.0.99.98.0.255");
const ROLLBACK_OBIS = parseObis("0.128.96.44.0.255");
const CODE_NAMES = new Map<number, string>(Object.entries(EVENT_TYPE_CODES).map(([k, v]) => [v, k]));

class JobFailure extends Error {
  constructor(
    readonly reason: string,
    message: string,
  ) {
    super(message);
  }
}

export class FirmwareJobs {
  private readonly cache: ImageCache;
  private readonly queue: Job[] = [];
  /** Keys of the queued jobs (duplicate commands are found without scanning the queue). */
  private readonly queuedKeys = new Set<string>();
  private readonly running = new Map<string, Job>();
  private readonly done = new Map<string, JobReport>();
  private readonly inFlight = new Set<Promise<void>>();
  readonly counters: FirmwareJobsCounters = {
    jobs_received: 0,
    duplicates_ignored: 0,
    images_cached: 0,
    images_refused: 0,
    sessions_started: 0,
    sessions_failed: 0,
    transfers_resumed: 0,
    blocks_sent: 0,
    cancelled: 0,
    queue_refused: 0,
  };
  /** Most sessions open at once (the bound is `concurrency`). */
  peakSessions = 0;
  private readonly concurrency: number;

  constructor(private readonly options: FirmwareJobsOptions) {
    this.cache = options.cache ?? new MemoryImageCache();
    this.concurrency = Math.min(
      FIRMWARE_SESSIONS_MAX,
      Math.max(1, options.concurrency ?? FIRMWARE_SESSIONS_DEFAULT),
    );
  }

  get queued(): number {
    return this.queue.length;
  }

  get active(): number {
    return this.running.size;
  }

  /** A job message as received from MQTT (decoded here; a bad one throws EvidenceError). */
  acceptBytes(bytes: Uint8Array): void {
    this.accept(decodeFirmwareJob(bytes));
  }

  accept(message: FirmwareJobMessage): void {
    this.counters.jobs_received++;
    if (message.cancel !== "none") {
      this.cancelCampaign(message.campaignId, message.cancel === "forced");
      return;
    }
    for (const image of message.images) {
      if (toHex(sha256(image.bytes)) !== image.checksum) {
        this.counters.images_refused++;
        continue;
      }
      if (this.cache.get(image.checksum) === undefined) {
        this.cache.put(image.checksum, image.bytes);
        this.counters.images_cached++;
      }
    }
    for (const command of message.commands) {
      const key = jobKey(message.campaignId, command.meterId);
      const finished = this.done.get(key);
      if (finished !== undefined) {
        // Already done for this campaign: say so again, never run it twice.
        this.counters.duplicates_ignored++;
        this.report(message.campaignId, finished);
        continue;
      }
      if (this.running.has(key) || this.queuedKeys.has(key)) {
        this.counters.duplicates_ignored++;
        continue;
      }
      if (this.queue.length >= FIRMWARE_QUEUE_MAX) {
        this.counters.queue_refused++;
        this.report(message.campaignId, this.finalReport(command.meterId, "failed", "QUEUE_FULL"));
        continue;
      }
      this.queue.push({
        campaignId: message.campaignId,
        command,
        notBeforeMs: command.startAtMs,
        attempts: 0,
        aborted: false,
        transferStarted: false,
      });
      this.queuedKeys.add(key);
    }
    this.queue.sort((a, b) => a.notBeforeMs - b.notBeforeMs);
  }

  /** Starts every due job the session limit allows; the runtime calls it on a timer. */
  tick(): void {
    const now = this.options.nowMs();
    while (this.running.size < this.concurrency) {
      const index = this.queue.findIndex((j) => j.notBeforeMs <= now);
      if (index < 0) return;
      const job = this.queue.splice(index, 1)[0]!;
      this.queuedKeys.delete(jobKey(job.campaignId, job.command.meterId));
      this.running.set(jobKey(job.campaignId, job.command.meterId), job);
      this.peakSessions = Math.max(this.peakSessions, this.running.size);
      const run: Promise<void> = this.run(job).finally(() => {
        this.inFlight.delete(run);
        this.running.delete(jobKey(job.campaignId, job.command.meterId));
        this.tick();
      });
      this.inFlight.add(run);
    }
  }

  /** Resolves once no session is open (tests and shutdown). */
  async idle(): Promise<void> {
    while (this.inFlight.size > 0) await Promise.allSettled([...this.inFlight]);
  }

  /** The earliest time a queued job becomes due (for the runtime's timer), or null. */
  nextDueMs(): number | null {
    return this.queue[0]?.notBeforeMs ?? null;
  }

  private cancelCampaign(campaignId: string, forced: boolean): void {
    for (let i = this.queue.length - 1; i >= 0; i--) {
      const job = this.queue[i]!;
      if (job.campaignId === campaignId) {
        this.queue.splice(i, 1);
        this.queuedKeys.delete(jobKey(job.campaignId, job.command.meterId));
        this.counters.cancelled++;
      }
    }
    if (forced)
      for (const job of this.running.values()) if (job.campaignId === campaignId) job.aborted = true;
  }

  private async run(job: Job): Promise<void> {
    const { command } = job;
    let session: FirmwareSession;
    try {
      session = await this.options.connect(command.meterId);
    } catch (error) {
      this.counters.sessions_failed++;
      job.attempts++;
      if (job.attempts >= (this.options.attemptsMax ?? FIRMWARE_ATTEMPTS_MAX_DEFAULT)) {
        this.finish(job, this.finalReport(command.meterId, "failed", "TIMEOUT"));
      } else {
        // Not reachable (asleep, or the link is down): try again when it is likely awake.
        job.notBeforeMs =
          this.options.nowMs() + (this.options.retryDelayMs ?? FIRMWARE_RETRY_DELAY_MS_DEFAULT);
        if (!job.aborted) this.requeue(job);
      }
      void error;
      return;
    }
    this.counters.sessions_started++;
    try {
      const report =
        command.action === "update"
          ? await this.update(job, session.client)
          : await this.rollback(job, session.client);
      if (report !== null) this.finish(job, report);
    } catch (error) {
      if (job.aborted) return;
      if (error instanceof JobFailure) {
        this.finish(job, this.finalReport(command.meterId, "failed", error.reason));
      } else if (error instanceof DlmsError && (error.code === "TIMEOUT" || error.code === "LINK_DOWN")) {
        // The session broke mid-way: the meter keeps its bitmap, the next attempt resumes.
        this.counters.sessions_failed++;
        job.attempts++;
        if (job.attempts >= (this.options.attemptsMax ?? FIRMWARE_ATTEMPTS_MAX_DEFAULT)) {
          this.finish(job, this.finalReport(command.meterId, "failed", "TIMEOUT"));
        } else {
          job.notBeforeMs = this.options.nowMs();
          this.requeue(job);
        }
      } else {
        const reason = error instanceof DlmsError ? `DLMS_${error.code}` : "SESSION_ERROR";
        this.finish(job, this.finalReport(command.meterId, "failed", reason.slice(0, 64)));
      }
    } finally {
      await session.close();
    }
  }

  private requeue(job: Job): void {
    this.queue.push(job);
    this.queuedKeys.add(jobKey(job.campaignId, job.command.meterId));
    this.queue.sort((a, b) => a.notBeforeMs - b.notBeforeMs);
  }

  private async update(job: Job, client: FirmwareDlmsClient): Promise<JobReport | null> {
    const { command } = job;
    const image = this.cache.get(command.targetChecksum);
    if (image === undefined) throw new JobFailure("IMAGE_NOT_CACHED", "the job's image is not in the cache");
    const component = image[4] === 3 ? "comms" : "app"; // AFW1 component byte (2 app, 3 comms)
    const baseline = await this.lastEventSeq(client);
    const sizeData = await client.get(18, IMAGE_TRANSFER_OBIS, 2);
    if (sizeData.type !== "double-long-unsigned" || sizeData.value < 1)
      throw new JobFailure("DLMS_BAD_TAG", "image_block_size is not a positive double-long-unsigned");
    // IEC 62056-5-3: a block plus the ACTION framing fits the negotiated PDU.
    const blockBytes = Math.min(sizeData.value, client.maxPdu - 32);
    const total = Math.ceil(image.length / blockBytes);
    let have: boolean[] = new Array<boolean>(total).fill(false);
    const status = await client.get(18, IMAGE_TRANSFER_OBIS, 6);
    if (job.transferStarted && status.type === "enum" && status.value === 1) {
      // Resume from the meter's image_transferred_blocks_status bitmap.
      const bits = await client.get(18, IMAGE_TRANSFER_OBIS, 3);
      if (bits.type === "bit-string" && bits.bits === total) {
        have = Array.from({ length: total }, (_, n) => ((bits.value[n >> 3]! >> (7 - (n & 7))) & 1) === 1);
        this.counters.transfers_resumed++;
      }
    }
    const doneAlready = have.filter(Boolean).length;
    this.progress(job, "transferring", doneAlready, total);
    if (doneAlready === 0) {
      await this.action(client, 1, {
        type: "structure",
        value: [
          {
            type: "octet-string",
            value: new TextEncoder().encode(`${component} ${command.targetChecksum.slice(0, 16)}`),
          },
          { type: "double-long-unsigned", value: image.length },
        ],
      });
      job.transferStarted = true;
    }
    let sent = doneAlready;
    const step = Math.max(1, Math.ceil(total / PROGRESS_STEPS));
    for (let n = 0; n < total; n++) {
      if (have[n]) continue;
      if (job.aborted) return null;
      await this.action(client, 2, {
        type: "structure",
        value: [
          { type: "double-long-unsigned", value: n },
          {
            type: "octet-string",
            value: image.subarray(n * blockBytes, Math.min((n + 1) * blockBytes, image.length)),
          },
        ],
      });
      this.counters.blocks_sent++;
      sent++;
      if (sent % step === 0 && sent < total) this.progress(job, "transferring", sent, total);
    }
    if (job.aborted) return null;
    this.progress(job, "verifying", total, total);
    if (!(await this.imageStep(client, 3, 3))) {
      const types = await this.eventsSince(client, baseline);
      const reason = types.includes("SIG_FAIL")
        ? "SIGN_AUTH_FAIL"
        : types.includes("FW_ROLLBACK")
          ? "VERSION_ROLLBACK_REFUSED"
          : "ERROR_CRC_MISMATCH";
      return this.finalReport(command.meterId, "failed", reason, total, total);
    }
    if (job.aborted) return null;
    this.progress(job, "activating", total, total);
    const activated = await this.imageStep(client, 4, 6);
    const confirmation = await this.readRunning(client);
    const types = await this.eventsSince(client, baseline);
    const reason = types.includes("WDT_REBOOT_LOOP")
      ? "WDT_REBOOT_LOOP"
      : types.includes("FW_ROLLED_BACK")
        ? "ROLLED_BACK"
        : activated
          ? null
          : "ACTIVATION_FAILED";
    return {
      meterId: command.meterId,
      state: "done",
      reason,
      blocksDone: total,
      blocksTotal: total,
      activeChecksum: confirmation.checksum,
      firmwareId: confirmation.firmwareId,
      atMs: this.options.nowMs(),
    };
  }

  private async rollback(job: Job, client: FirmwareDlmsClient): Promise<JobReport | null> {
    const { command } = job;
    if (command.auth === null) throw new JobFailure("OTP_MISSING", "a rollback command without its OTP");
    this.progress(job, "activating", 0, 0);
    const { data } = await client.action(9, ROLLBACK_OBIS, 1, {
      type: "octet-string",
      value: encodeRollbackCommand({
        meterId: command.meterId,
        action: command.action,
        targetChecksum: command.targetChecksum,
        expiresMs: command.auth.otpExpiresMs,
        counter: command.auth.otpCounter,
        otp: command.auth.otp,
      }),
    });
    if (data?.type !== "octet-string")
      throw new JobFailure("DLMS_BAD_TAG", "rollback answer is not an octet-string");
    const result = decodeRollbackResult(data.value);
    if (result.outcome === "refused")
      return this.finalReport(command.meterId, "failed", result.reason || "REFUSED");
    const confirmation = await this.readRunning(client);
    return {
      meterId: command.meterId,
      state: "done",
      reason: null,
      blocksDone: 0,
      blocksTotal: 0,
      activeChecksum: confirmation.checksum,
      firmwareId: confirmation.firmwareId,
      atMs: this.options.nowMs(),
    };
  }

  private async action(client: FirmwareDlmsClient, method: number, parameters: Data): Promise<void> {
    const { result } = await client.action(18, IMAGE_TRANSFER_OBIS, method, parameters);
    if (result !== 0)
      throw new JobFailure("DLMS_TEMPORARY_FAILURE", `image method ${method} answered ${result}`);
  }

  /** Verify (3 → status 3) or activate (4 → status 6); false when the meter refuses. */
  private async imageStep(client: FirmwareDlmsClient, method: number, doneStatus: number): Promise<boolean> {
    let result: number;
    try {
      ({ result } = await client.action(18, IMAGE_TRANSFER_OBIS, method, { type: "integer", value: 0 }));
    } catch (error) {
      if (error instanceof DlmsError && error.code !== "TIMEOUT" && error.code !== "LINK_DOWN") return false;
      throw error;
    }
    if (result === 0) return true;
    for (let polls = 0; polls < IMAGE_STATUS_POLLS_MAX; polls++) {
      const s = await client.get(18, IMAGE_TRANSFER_OBIS, 6);
      if (s.type === "enum" && s.value === doneStatus) return true;
      if (s.type === "enum" && (s.value === 4 || s.value === 7)) return false;
    }
    throw new JobFailure("TIMEOUT", "image transfer status did not settle");
  }

  /** Remote confirmation reads: the running application's checksum and the firmware identifier. */
  private async readRunning(
    client: FirmwareDlmsClient,
  ): Promise<{ checksum: string | null; firmwareId: string | null }> {
    const checksum = await client.get(1, FIRMWARE_CHECKSUM, 2);
    const id = await client.get(1, FIRMWARE_ID, 2);
    return {
      checksum:
        checksum.type === "octet-string" && checksum.value.length === 32 ? toHex(checksum.value) : null,
      firmwareId: id.type === "visible-string" ? id.value.slice(0, 128) || null : null,
    };
  }

  private async eventEntries(client: FirmwareDlmsClient): Promise<{ type: string; seq: number }[]> {
    const buffer = await client.get(7, EVENT_LOG, 2);
    if (buffer.type !== "array") return [];
    const out: { type: string; seq: number }[] = [];
    for (const entry of buffer.value) {
      if (entry.type !== "structure") continue;
      const code = entry.value[1];
      const seq = entry.value[2];
      if (code?.type !== "long-unsigned" || seq?.type !== "double-long-unsigned") continue;
      out.push({ type: CODE_NAMES.get(code.value) ?? `CODE_${code.value}`, seq: seq.value });
    }
    return out;
  }

  private async lastEventSeq(client: FirmwareDlmsClient): Promise<number> {
    return (await this.eventEntries(client)).reduce((max, e) => Math.max(max, e.seq), 0);
  }

  private async eventsSince(client: FirmwareDlmsClient, seq: number): Promise<string[]> {
    return (await this.eventEntries(client)).filter((e) => e.seq > seq).map((e) => e.type);
  }

  private progress(job: Job, state: JobReportState, blocksDone: number, blocksTotal: number): void {
    this.report(job.campaignId, {
      meterId: job.command.meterId,
      state,
      reason: null,
      blocksDone,
      blocksTotal,
      activeChecksum: null,
      firmwareId: null,
      atMs: this.options.nowMs(),
    });
  }

  private finalReport(
    meterId: string,
    state: JobReportState,
    reason: string | null,
    done = 0,
    total = 0,
  ): JobReport {
    return {
      meterId,
      state,
      reason,
      blocksDone: done,
      blocksTotal: total,
      activeChecksum: null,
      firmwareId: null,
      atMs: this.options.nowMs(),
    };
  }

  private finish(job: Job, report: JobReport): void {
    if (job.aborted) return;
    // Remember clean completions only: a failed meter may be retried by the head-end.
    if (report.state === "done" && report.reason === null)
      this.done.set(jobKey(job.campaignId, job.command.meterId), report);
    while (this.done.size > FIRMWARE_DONE_REMEMBERED_MAX) {
      const oldest = this.done.keys().next().value;
      if (oldest === undefined) break;
      this.done.delete(oldest);
    }
    this.report(job.campaignId, report);
  }

  private report(campaignId: string, report: JobReport): void {
    this.options.publish({ campaignId, dcuId: this.options.dcuId, reports: [report] });
  }
}

function jobKey(campaignId: string, meterId: string): string {
  return `${campaignId}\u0000${meterId}`;
}
