// shell: `amiproof campaign …` — firmware campaigns through the head-end's API (HTTP, a Bearer token).
import { readFileSync } from "node:fs";
import { SingleBar } from "cli-progress";
import type { Command } from "commander";

interface ApiOptions {
  api?: string;
  token?: string;
  tokenFile?: string;
  json?: boolean;
}

/** Exit codes: 0 done, 1 refused by the head-end or unreachable, 2 bad usage, 3 watch ended short of completion. */
const EXIT_REFUSED = 1;
const EXIT_USAGE = 2;
const EXIT_NOT_COMPLETED = 3;
export const CAMPAIGN_WATCH_INTERVAL_MS_DEFAULT = 1_000;
/** A watch gives up after this many polls in a row that could not reach the head-end. */
const WATCH_FAILURES_MAX = 30;

class CliFailure extends Error {
  constructor(
    message: string,
    readonly exitCode: number,
  ) {
    super(message);
  }
}

function connection(options: ApiOptions): { base: string; token: string } {
  const base = (options.api ?? process.env.AMIPROOF_API ?? "http://127.0.0.1:8080").replace(/\/+$/, "");
  let token = options.token;
  if (token === undefined && options.tokenFile !== undefined) {
    try {
      token = readFileSync(options.tokenFile, "utf8").trim();
    } catch (error) {
      throw new CliFailure(`cannot read --token-file: ${(error as Error).message}`, EXIT_USAGE);
    }
  }
  if (token === undefined || token === "") token = process.env.AMIPROOF_TOKEN;
  if (token === undefined || token === "")
    throw new CliFailure("a token is needed: --token, --token-file or AMIPROOF_TOKEN", EXIT_USAGE);
  return { base, token };
}

// biome-ignore lint/suspicious/noExplicitAny: JSON answers of the API, read field by field
async function call(options: ApiOptions, method: "GET" | "POST", path: string, body?: unknown): Promise<any> {
  const { base, token } = connection(options);
  let response: Response;
  try {
    response = await fetch(`${base}${path}`, {
      method,
      headers: {
        authorization: `Bearer ${token}`,
        ...(body === undefined ? {} : { "content-type": "application/json" }),
      },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });
  } catch (error) {
    throw new CliFailure(`head-end ${base} unreachable: ${(error as Error).message}`, EXIT_REFUSED);
  }
  const text = await response.text();
  let json: unknown = null;
  try {
    json = JSON.parse(text);
  } catch {
    json = null;
  }
  if (!response.ok) {
    const e = json as { error?: string; message?: string } | null;
    throw new CliFailure(
      `${method} ${path}: ${response.status} ${e?.error ?? ""} ${e?.message ?? text.slice(0, 200)}`.trim(),
      EXIT_REFUSED,
    );
  }
  return json;
}

function withApiOptions(command: Command): Command {
  return command
    .option("--api <url>", "head-end API base URL (default $AMIPROOF_API or http://127.0.0.1:8080)")
    .option("--token <token>", "API token (default $AMIPROOF_TOKEN)")
    .option("--token-file <file>", "file holding the API token (e.g. <data>/tokens/operator.token)")
    .option("--json", "print the head-end's JSON answer");
}

function withTargets(command: Command): Command {
  const list = (value: string, previous: string[] = []) => [...previous, ...value.split(",").filter(Boolean)];
  return command
    .option("--dcu <ids>", "target concentrators (comma-separated, repeatable)", list)
    .option("--model <names>", "target meter models", list)
    .option("--group <names>", "target meter groups", list)
    .option("--version <versions>", "target meters running these versions", list)
    .option("--meter <ids>", "target these meters", list)
    .option("--window-minutes <m>", "spread starts over this window (seed 000: 60)")
    .option("--session-limit <n>", "concurrent sessions per concentrator")
    .option("--start", "approve and start at once (the approval is recorded under this token)");
}

interface TargetOptions {
  dcu?: string[];
  model?: string[];
  group?: string[];
  version?: string[];
  meter?: string[];
  windowMinutes?: string;
  sessionLimit?: string;
  start?: boolean;
}

function number(value: string | undefined, name: string): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (!Number.isFinite(n)) throw new CliFailure(`${name} must be a number, got "${value}"`, EXIT_USAGE);
  return n;
}

function targetBody(o: TargetOptions): Record<string, unknown> {
  return {
    targets: {
      ...(o.dcu ? { dcu_ids: o.dcu } : {}),
      ...(o.model ? { models: o.model } : {}),
      ...(o.group ? { groups: o.group } : {}),
      ...(o.version ? { versions: o.version } : {}),
      ...(o.meter ? { meter_ids: o.meter } : {}),
    },
    ...(o.windowMinutes === undefined ? {} : { window_minutes: number(o.windowMinutes, "--window-minutes") }),
    ...(o.sessionLimit === undefined
      ? {}
      : { session_limit_per_dcu: number(o.sessionLimit, "--session-limit") }),
  };
}

// biome-ignore lint/suspicious/noExplicitAny: the status JSON
function summary(s: any): string {
  const c = s.counts ?? {};
  const reasons = Object.entries(s.reasons ?? {})
    .map(([k, v]) => `${k}×${v}`)
    .join(" ");
  return [
    `${s.campaign_id} "${s.name}" ${s.kind} ${s.state}${s.pause_reason ? ` (${s.pause_reason})` : ""}`,
    `  meters ${s.meters}: queued ${c.queued} transferring ${c.transferring} verifying ${c.verifying} activating ${c.activating} confirmed ${c.confirmed} failed ${c.failed} rolled_back ${c.rolled_back}`,
    `  wave ${s.current_wave}/${(s.waves ?? []).length}  progress ${(100 * (s.progress ?? 0)).toFixed(1)} %${reasons ? `  reasons: ${reasons}` : ""}`,
  ].join("\n");
}

function print(options: ApiOptions, value: unknown, text: string): void {
  process.stdout.write(options.json ? `${JSON.stringify(value)}\n` : `${text}\n`);
}

async function run(work: () => Promise<number | undefined>): Promise<void> {
  try {
    process.exitCode = (await work()) ?? 0;
  } catch (error) {
    if (error instanceof CliFailure) {
      process.stderr.write(`amiproof campaign: ${error.message}\n`);
      process.exitCode = error.exitCode;
      return;
    }
    throw error;
  }
}

async function createAndMaybeStart(options: ApiOptions & TargetOptions, body: Record<string, unknown>) {
  let status = await call(options, "POST", "/api/campaigns", body);
  if (options.start === true) {
    await call(options, "POST", `/api/campaigns/${status.campaign_id}/approve`, {});
    status = await call(options, "POST", `/api/campaigns/${status.campaign_id}/start`, {});
  }
  print(options, status, summary(status));
}

export function registerCampaign(program: Command): void {
  const campaign = program
    .command("campaign")
    .description("firmware campaigns and fleet rollback through the head-end's API (seeds 000, 001)");

  withApiOptions(campaign.command("upload"))
    .description("add a signed image to the head-end's firmware repository (admin); prints its checksum")
    .argument("<file>", "AFW1 image (amiproof firmware build)")
    .action((file: string, options: ApiOptions) =>
      run(async () => {
        const image = readFileSync(file);
        const r = await call(options, "POST", "/api/campaigns/images", {
          image_base64: image.toString("base64"),
        });
        print(options, r, `${r.component} ${r.version} ${r.checksum}${r.stored ? "" : " (already held)"}`);
        return 0;
      }),
    );

  withTargets(withApiOptions(campaign.command("create")))
    .description("create an update campaign (operator); it waits for approval unless --start")
    .option("--image <file>", "upload this image first and use it")
    .option("--checksum <hex>", "an image already in the repository")
    .option("--name <name>", "campaign name")
    .option("--waves <percentages>", "cumulative wave sizes, e.g. 1,10,100", "100")
    .option("--success-share <share>", "share of a wave that must be confirmed, 0..1", "1")
    .option("--error-count <n>", "pause once this many meters failed")
    .option("--error-share <share>", "pause once this share of a wave failed")
    .option("--manual-advance", "each next wave waits for `amiproof campaign advance`")
    .action(
      (
        options: ApiOptions &
          TargetOptions & {
            image?: string;
            checksum?: string;
            name?: string;
            waves: string;
            successShare: string;
            errorCount?: string;
            errorShare?: string;
            manualAdvance?: boolean;
          },
      ) =>
        run(async () => {
          let checksum = options.checksum;
          if (options.image !== undefined) {
            const r = await call(options, "POST", "/api/campaigns/images", {
              image_base64: readFileSync(options.image).toString("base64"),
            });
            checksum = r.checksum;
          }
          if (checksum === undefined) throw new CliFailure("give --image FILE or --checksum HEX", EXIT_USAGE);
          const waves = options.waves.split(",").map((w) => number(w, "--waves")!);
          await createAndMaybeStart(options, {
            name: options.name ?? `update ${checksum.slice(0, 12)}`,
            kind: "update",
            image_checksum: checksum,
            waves,
            success_share: number(options.successShare, "--success-share"),
            ...(options.errorCount === undefined
              ? {}
              : { error_count: number(options.errorCount, "--error-count") }),
            ...(options.errorShare === undefined
              ? {}
              : { error_share: number(options.errorShare, "--error-share") }),
            auto_advance: options.manualAdvance !== true,
            ...targetBody(options),
          });
          return 0;
        }),
    );

  withTargets(withApiOptions(campaign.command("rollback")))
    .description("create a rollback campaign to the golden image (admin); each command carries an OTP")
    .requiredOption("--golden <checksum>", "the golden application image's checksum (asset register)")
    .option("--app-only", "partial rollback: the application only, the comms stack stays current")
    .option("--name <name>", "campaign name")
    .action((options: ApiOptions & TargetOptions & { golden: string; appOnly?: boolean; name?: string }) =>
      run(async () => {
        await createAndMaybeStart(options, {
          name: options.name ?? (options.appOnly ? "rollback (application)" : "rollback (full)"),
          kind: options.appOnly ? "rollback_app" : "rollback_full",
          image_checksum: options.golden,
          success_share: 1,
          ...targetBody(options),
        });
        return 0;
      }),
    );

  withApiOptions(campaign.command("status"))
    .description("one campaign (or all); --watch draws a progress bar until it stops running")
    .argument("[id]", "campaign id")
    .option("--watch", "poll until the campaign completes, pauses, waits or is cancelled")
    .option("--interval-ms <ms>", "poll interval", String(CAMPAIGN_WATCH_INTERVAL_MS_DEFAULT))
    .action((id: string | undefined, options: ApiOptions & { watch?: boolean; intervalMs: string }) =>
      run(async () => {
        if (id === undefined) {
          const r = await call(options, "GET", "/api/campaigns");
          // biome-ignore lint/suspicious/noExplicitAny: the list JSON
          print(options, r, r.items.map((s: any) => summary(s)).join("\n") || "no campaigns");
          return 0;
        }
        if (options.watch !== true) {
          const s = await call(options, "GET", `/api/campaigns/${encodeURIComponent(id)}`);
          print(options, s, summary(s));
          return 0;
        }
        const interval = number(options.intervalMs, "--interval-ms")!;
        const bar = process.stderr.isTTY
          ? new SingleBar({
              format:
                "{bar} {percentage}% | {value}/{total} meters | confirmed {confirmed} failed {failed} rolled back {rolled_back} | {state}",
            })
          : null;
        let started = false;
        let failures = 0;
        for (;;) {
          // biome-ignore lint/suspicious/noExplicitAny: the status JSON
          let s: any;
          try {
            s = await call(options, "GET", `/api/campaigns/${encodeURIComponent(id)}`);
            failures = 0;
          } catch (error) {
            if (
              !(error instanceof CliFailure) ||
              error.message.includes(" 404 ") ||
              ++failures >= WATCH_FAILURES_MAX
            ) {
              bar?.stop();
              throw error;
            }
            await new Promise((resolve) => setTimeout(resolve, interval));
            continue;
          }
          const done = s.counts.confirmed + s.counts.failed + s.counts.rolled_back;
          const payload = {
            confirmed: s.counts.confirmed,
            failed: s.counts.failed,
            rolled_back: s.counts.rolled_back,
            state: s.state,
          };
          if (bar !== null) {
            if (!started) bar.start(s.meters, done, payload);
            else bar.update(done, payload);
          } else if (!options.json) {
            process.stderr.write(`${done}/${s.meters} meters ${s.state}\n`);
          }
          started = true;
          if (!["pending_approval", "approved", "running"].includes(s.state)) {
            bar?.stop();
            print(options, s, summary(s));
            return s.state === "completed" ? 0 : EXIT_NOT_COMPLETED;
          }
          await new Promise((resolve) => setTimeout(resolve, interval));
        }
      }),
    );

  for (const [verb, what] of [
    ["approve", "approve a campaign (rollbacks: admin)"],
    ["start", "start an approved campaign"],
    ["pause", "pause: queued commands are withdrawn, sessions in flight finish"],
    ["resume", "resume a paused campaign"],
    ["advance", "release the next wave"],
    ["retry", "retry the failed meters only"],
    ["cancel", "cancel (--forced: abandon sessions in flight, ignore late reports)"],
  ] as const) {
    const command = withApiOptions(campaign.command(verb)).description(what).argument("<id>", "campaign id");
    if (verb === "cancel") command.option("--forced", "forced cancel");
    command.action((id: string, options: ApiOptions & { forced?: boolean }) =>
      run(async () => {
        const s = await call(
          options,
          "POST",
          `/api/campaigns/${encodeURIComponent(id)}/${verb}`,
          verb === "cancel" ? { forced: options.forced === true } : {},
        );
        print(options, s, summary(s));
        return 0;
      }),
    );
  }
}
