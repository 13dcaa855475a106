import assert from "node:assert/strict";
import { type ChildProcess, execFile, spawn } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { promisify } from "node:util";
import { connectDlms, parseObis } from "../../src/dlms/index.ts";
import { generateP256KeyPair, toHex } from "../../src/evidence/index.ts";
import { OTP_MASTER_KEY_FILE } from "../../src/headend/index.ts";
import { decodeFirmwareImage } from "../../src/meter/index.ts";

// Issue 9 acceptance 1, 2 and 4 on the real processes only: `amiproof pki init` (the CA and signing key),
// `amiproof headend` (HTTP API, embedded MQTT broker, campaign service trusting that CA through
// $AMIPROOF_FIRMWARE_CA), two `amiproof meter` processes (100 DLMS meters provisioned with golden images from
// the PKI, their rollback OTP keys from the head-end's otp-master.key; one meter gets its image transfer
// corrupted (--fault-corrupt-block), one never kicks its watchdog after activation
// (--fault-no-watchdog-kick)), two `amiproof dcu` concentrators (their firmware links take the jobs) and the
// operator's `amiproof campaign` commands: an update whose error threshold pauses the campaign (bad CRC:
// failed ERROR_CRC_MISMATCH; watchdog: rolled_back WDT_REBOOT_LOOP; a meter from another factory, trusting
// another CA, refuses it: SIGN_AUTH_FAIL), resumed to completion, then an OTP-signed rollback of the fleet to
// golden, each meter's running checksum and billing registers read back over DLMS.
// Run with `npm run test:e2e` (or `node scripts/run-tests.mjs .e2e.ts test/concentrator`).

const BIN = join(import.meta.dirname, "../../bin/amiproof.js");
const run = promisify(execFile);
const PER_PROCESS = 50;
const PREFIXES = ["MTR-P", "MTR-R"] as const;
const METERS = PER_PROCESS * PREFIXES.length;
const DCUS = 2;
const STRANGER = "MTR-Q";
const BAD_CRC_METER = "MTR-P-0007";
const WDT_METER = "MTR-R-0013";

function collect(child: ChildProcess): { out: () => string; err: () => string } {
  let out = "";
  let err = "";
  child.stdout?.on("data", (c: Buffer) => {
    out += c.toString();
  });
  child.stderr?.on("data", (c: Buffer) => {
    err += c.toString();
  });
  return { out: () => out, err: () => err };
}

async function until(what: string, check: () => boolean, ms = 60_000): Promise<void> {
  const started = Date.now();
  while (!check()) {
    if (Date.now() - started > ms) assert.fail(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

async function amiproof(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await run(process.execPath, [BIN, ...args]);
    return { code: 0, stdout, stderr };
  } catch (error) {
    const e = error as { code: number; stdout: string; stderr: string };
    return { code: e.code, stdout: e.stdout, stderr: e.stderr };
  }
}

/** The running application's checksum (1.0.0.2.8.255), read by the public client. */
async function runningChecksum(port: number): Promise<string> {
  const c = await connectDlms("127.0.0.1", port, 16);
  try {
    await c.client.associate();
    const value = await c.client.get(1, parseObis("1.0.0.2.8.255"), 2);
    assert.equal(value.type, "octet-string");
    return toHex((value as { value: Uint8Array }).value);
  } finally {
    c.close();
  }
}

/** The billing registers (import and export active energy, Wh), read by the management client (LLS). */
async function billingRegisters(port: number): Promise<{ importWh: number; exportWh: number }> {
  const c = await connectDlms("127.0.0.1", port, 1);
  try {
    await c.client.associate({ password: new TextEncoder().encode("12345678") });
    const read = async (obis: string) => {
      const value = await c.client.get(3, parseObis(obis), 2);
      assert.ok(typeof (value as { value: unknown }).value === "number", `${obis}: ${JSON.stringify(value)}`);
      return (value as { value: number }).value;
    };
    return { importWh: await read("1.0.1.8.0.255"), exportWh: await read("1.0.2.8.0.255") };
  } finally {
    c.close();
  }
}

test("real processes: 100 meters, an update paused by its error threshold (bad CRC, watchdog, foreign CA) and resumed, then an OTP-signed rollback to golden; billing registers kept", async () => {
  const dir = mkdtempSync(join(tmpdir(), "amiproof-campaign-e2e-"));
  const data = join(dir, "headend");
  const pkiDir = join(dir, "pki");
  const children: ChildProcess[] = [];
  const spawned = (args: string[], env: NodeJS.ProcessEnv = process.env) => {
    const child = spawn(process.execPath, [BIN, ...args], { stdio: ["ignore", "pipe", "pipe"], env });
    children.push(child);
    return { child, ...collect(child) };
  };
  const exit = async (child: ChildProcess, what: string, err: () => string) => {
    const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)));
    child.kill("SIGTERM");
    assert.equal(await exited, 0, `${what}: ${err()}`);
  };
  const t0 = Date.now();
  const mark = (what: string) => console.log(`e2e: ${what} at ${((Date.now() - t0) / 1000).toFixed(1)} s`);
  try {
    const pki = await amiproof(["pki", "init", pkiDir]);
    assert.equal(pki.code, 0, pki.stderr);
    // One more meter, from another factory: its trust anchor is another CA, so it refuses the update.
    const otherPki = await amiproof(["pki", "init", join(dir, "other-pki")]);
    assert.equal(otherPki.code, 0, otherPki.stderr);
    mkdirSync(data, { recursive: true });
    const headend = spawned(
      ["headend", "--data", data, "--http", "0", "--mqtt-port", "0", "--log-level", "silent"],
      { ...process.env, AMIPROOF_FIRMWARE_CA: join(pkiDir, "ca.crt.pem") },
    );
    await until("the head-end's banner", () => headend.err().includes("Ctrl-C to stop"));
    const api = /API (http:\/\/\S+)/.exec(headend.err())![1]!;
    const mqtt = /embedded MQTT broker (mqtt:\/\/\S+)/.exec(headend.err())![1]!;
    const admin = ["--api", api, "--token-file", join(data, "tokens", "admin.token")];
    const adminToken = readFileSync(join(data, "tokens", "admin.token"), "utf8").trim();

    const meterProcesses = PREFIXES.map((prefix) =>
      spawned([
        "meter",
        "--id",
        prefix,
        "--count",
        String(PER_PROCESS),
        "--listen",
        "0",
        "--data",
        join(dir, `meters-${prefix}`),
        "--pki",
        pkiDir,
        "--otp-master",
        join(data, OTP_MASTER_KEY_FILE),
        "--fault-corrupt-block",
        BAD_CRC_METER,
        "--fault-no-watchdog-kick",
        WDT_METER,
      ]),
    );
    const stranger = spawned([
      "meter",
      "--id",
      STRANGER,
      "--listen",
      "0",
      "--pki",
      join(dir, "other-pki"),
      "--otp-master",
      join(data, OTP_MASTER_KEY_FILE),
    ]);
    for (const m of meterProcesses)
      await until("the meters", () => m.err().includes("virtual meter(s) running"));
    await until("the other factory's meter", () => stranger.err().includes("virtual meter(s) running"));
    const strangerPort = Number(/TCP ports (\d+)/.exec(stranger.err())![1]);
    const ports: number[] = [];
    for (const m of meterProcesses) {
      assert.match(m.err(), /rollback command served/);
      ports.push(.../TCP ports ([\d,]+)/.exec(m.err())![1]!.split(",").map(Number));
    }
    assert.equal(ports.length, METERS);
    const meterIds = PREFIXES.flatMap((prefix) =>
      Array.from({ length: PER_PROCESS }, (_, i) => `${prefix}-${String(i + 1).padStart(4, "0")}`),
    );
    const dcuOf = (i: number) => `DCU-P${(i % DCUS) + 1}`;
    const dcus = Array.from({ length: DCUS }, (_, d) =>
      spawned([
        "dcu",
        "--id",
        `DCU-P${d + 1}`,
        "--hes",
        mqtt,
        "--data",
        join(dir, `dcu-${d + 1}`),
        ...ports.flatMap((port, i) =>
          dcuOf(i) === `DCU-P${d + 1}` ? ["--meter", `dlms://127.0.0.1:${port}`] : [],
        ),
        ...(d === 0 ? ["--meter", `dlms://127.0.0.1:${strangerPort}`] : []),
      ]),
    );
    for (const d of dcus)
      await until("a concentrator's firmware link", () => d.err().includes("firmware_link_up"));
    mark("headend, meters and concentrators up");
    const provisioned = await fetch(`${api}/api/meters`, {
      method: "POST",
      headers: { authorization: `Bearer ${adminToken}`, "content-type": "application/json" },
      body: JSON.stringify({
        meters: [
          ...meterIds.map((meter_id, i) => ({
            meter_id,
            dcu_id: dcuOf(i),
            event_seal_public_key: toHex(generateP256KeyPair().publicKey),
            model: "AMI-1PH",
          })),
          {
            meter_id: STRANGER,
            dcu_id: "DCU-P1",
            event_seal_public_key: toHex(generateP256KeyPair().publicKey),
            model: "AMI-1PH-X",
          },
        ],
      }),
    });
    assert.ok(provisioned.ok);

    // The update: built and signed with the PKI's firmware-signing key (`amiproof firmware build`).
    writeFileSync(
      join(dir, "payload.bin"),
      new Uint8Array(3000).map((_, i) => (i * 31 + 7) & 0xff),
    );
    const file = join(dir, "app-1.1.0.afw");
    const built = await amiproof([
      "firmware",
      "build",
      "--component",
      "app",
      "--version",
      "1.1.0",
      "--key",
      join(pkiDir, "firmware-signing.key.pem"),
      "--cert",
      join(pkiDir, "firmware-signing.crt.pem"),
      "--in",
      join(dir, "payload.bin"),
      "--out",
      file,
    ]);
    assert.equal(built.code, 0, built.stderr);
    const update = decodeFirmwareImage(new Uint8Array(readFileSync(file)));
    const golden = decodeFirmwareImage(new Uint8Array(readFileSync(join(pkiDir, "golden-app.afw"))));
    const checksums = () => Promise.all(ports.map((port) => runningChecksum(port)));
    for (const c of await checksums()) assert.equal(c, toHex(golden.checksum));
    const billing = () => Promise.all(ports.map((port) => billingRegisters(port)));
    const billingBefore = await billing();
    const billingBeforeAt = Date.now();

    mark("update built");
    const stagger = ["--window-minutes", "0.3", "--session-limit", "50"];
    const created = await amiproof([
      "campaign",
      "create",
      "--image",
      file,
      "--success-share",
      "0.9",
      "--error-count",
      "2",
      ...stagger,
      "--start",
      "--json",
      ...admin,
    ]);
    assert.equal(created.code, 0, created.stderr);
    const id = JSON.parse(created.stdout).campaign_id as string;
    const watch = (campaignId: string) =>
      amiproof(["campaign", "status", campaignId, "--watch", "--interval-ms", "200", "--json", ...admin]);
    // The error threshold (2 failures) pauses the campaign: `status --watch` stops there (exit ≠ 0).
    const paused = await watch(id);
    assert.notEqual(paused.code, 0, `${paused.stdout}\n${paused.stderr}`);
    const atPause = JSON.parse(paused.stdout);
    assert.equal(atPause.state, "paused", paused.stdout);
    assert.match(atPause.pause_reason ?? "", /^ERROR_THRESHOLD/);
    assert.ok(atPause.counts.failed + atPause.counts.rolled_back >= 2, paused.stdout);
    mark(`update paused by the error threshold (${atPause.counts.queued} queued)`);
    const resumed = await amiproof(["campaign", "resume", id, ...admin]);
    assert.equal(resumed.code, 0, `${resumed.stdout}\n${resumed.stderr}`);
    const watched = await watch(id);
    assert.equal(watched.code, 0, `${watched.stdout}\n${watched.stderr}`);
    const final = JSON.parse(watched.stdout);
    assert.equal(final.state, "completed");
    assert.equal(final.meters, METERS + 1);
    assert.equal(final.counts.confirmed, METERS - 2, watched.stdout);
    assert.equal(final.counts.failed, 2, watched.stdout);
    assert.equal(final.counts.rolled_back, 1, watched.stdout);
    assert.deepEqual(final.reasons, { ERROR_CRC_MISMATCH: 1, SIGN_AUTH_FAIL: 1, WDT_REBOOT_LOOP: 1 });
    const text = await amiproof(["campaign", "status", id, ...admin]);
    assert.match(text.stdout, /completed/);
    assert.match(text.stdout, new RegExp(`confirmed ${METERS - 2} failed 2 rolled_back 1`));
    assert.match(text.stdout, /ERROR_CRC_MISMATCH×1/);
    assert.match(text.stdout, /WDT_REBOOT_LOOP×1/);
    assert.match(text.stdout, /SIGN_AUTH_FAIL×1/);
    const afterUpdate = await checksums();
    meterIds.forEach((meterId, i) => {
      const expected = meterId === BAD_CRC_METER || meterId === WDT_METER ? golden.checksum : update.checksum;
      assert.equal(afterUpdate[i], toHex(expected), `${meterId} runs what the campaign reported`);
    });
    const strangerGolden = decodeFirmwareImage(
      new Uint8Array(readFileSync(join(dir, "other-pki", "golden-app.afw"))),
    );
    assert.equal(await runningChecksum(strangerPort), toHex(strangerGolden.checksum), "refused, unchanged");

    mark("update confirmed");
    const rollback = await amiproof([
      "campaign",
      "rollback",
      "--golden",
      toHex(golden.checksum),
      "--model",
      "AMI-1PH",
      ...stagger,
      "--start",
      "--json",
      ...admin,
    ]);
    assert.equal(rollback.code, 0, rollback.stderr);
    const rbId = JSON.parse(rollback.stdout).campaign_id as string;
    const rbWatched = await amiproof([
      "campaign",
      "status",
      rbId,
      "--watch",
      "--interval-ms",
      "200",
      ...admin,
    ]);
    assert.equal(rbWatched.code, 0, `${rbWatched.stdout}\n${rbWatched.stderr}`);
    assert.match(rbWatched.stdout, new RegExp(`confirmed ${METERS} failed 0 rolled_back 0`));
    for (const c of await checksums()) assert.equal(c, toHex(golden.checksum));

    // Billing registers survive both campaigns on every meter: the meters keep metering in real time, so
    // each register holds at least its value before and at most what 25 kW could add since.
    const billingAfter = await billing();
    const maxWh = Math.ceil((25_000 * (Date.now() - billingBeforeAt + 2000)) / 3_600_000);
    meterIds.forEach((meterId, i) => {
      const before = billingBefore[i]!;
      const after = billingAfter[i]!;
      for (const k of ["importWh", "exportWh"] as const) {
        assert.ok(after[k] >= before[k], `${meterId} ${k}: ${before[k]} → ${after[k]} (lost)`);
        assert.ok(after[k] - before[k] <= maxWh, `${meterId} ${k}: ${before[k]} → ${after[k]} (jumped)`);
      }
    });

    mark("rollback confirmed");
    for (const d of dcus) await exit(d.child, "amiproof dcu", d.err);
    for (const m of meterProcesses) await exit(m.child, "amiproof meter", m.err);
    await exit(stranger.child, "amiproof meter", stranger.err);
    await exit(headend.child, "amiproof headend", headend.err);
    mark("all stopped");
  } finally {
    for (const c of children) if (c.exitCode === null) c.kill("SIGKILL");
    rmSync(dir, { recursive: true, force: true });
  }
});
