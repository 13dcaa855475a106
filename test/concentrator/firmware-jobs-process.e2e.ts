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

// Issue 9 acceptance 1 and 2 on the real processes only: `amiproof pki init` (the CA and signing key),
// `amiproof headend` (HTTP API, embedded MQTT broker, campaign service trusting that CA through
// $AMIPROOF_FIRMWARE_CA), `amiproof meter` (ten DLMS meters provisioned with golden images from the PKI,
// their rollback OTP keys from the head-end's otp-master.key), two `amiproof dcu` concentrators (their
// firmware links take the jobs) and the operator's `amiproof campaign` commands: an update to confirmed,
// (a meter from another factory, trusting another CA, refuses it: SIGN_AUTH_FAIL), then an OTP-signed
// rollback of the fleet to golden, each meter's running checksum read back over DLMS.
// Run with `npm run test:e2e` (or `node scripts/run-tests.mjs .e2e.ts test/concentrator`).

const BIN = join(import.meta.dirname, "../../bin/amiproof.js");
const run = promisify(execFile);
const METERS = 10;
const DCUS = 2;
const STRANGER = "MTR-Q";

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

test("real processes: amiproof headend, meter and dcu run an update to confirmed (a foreign-CA meter refuses it), then an OTP-signed rollback to golden", async () => {
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

    const meters = spawned([
      "meter",
      "--id",
      "MTR-P",
      "--count",
      String(METERS),
      "--listen",
      "0",
      "--data",
      join(dir, "meters"),
      "--pki",
      pkiDir,
      "--otp-master",
      join(data, OTP_MASTER_KEY_FILE),
    ]);
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
    await until("the meters", () => meters.err().includes("virtual meter(s) running"));
    await until("the other factory's meter", () => stranger.err().includes("virtual meter(s) running"));
    const strangerPort = Number(/TCP ports (\d+)/.exec(stranger.err())![1]);
    assert.match(meters.err(), /rollback command served/);
    const ports = /TCP ports ([\d,]+)/.exec(meters.err())![1]!.split(",").map(Number);
    assert.equal(ports.length, METERS);
    const meterIds = Array.from({ length: METERS }, (_, i) => `MTR-P-${String(i + 1).padStart(4, "0")}`);
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
    for (const port of ports) assert.equal(await runningChecksum(port), toHex(golden.checksum));

    mark("update built");
    const stagger = ["--window-minutes", "0.05", "--session-limit", "6"];
    const created = await amiproof([
      "campaign",
      "create",
      "--image",
      file,
      "--success-share",
      "0.9",
      "--error-count",
      "3",
      ...stagger,
      "--start",
      "--json",
      ...admin,
    ]);
    assert.equal(created.code, 0, created.stderr);
    const id = JSON.parse(created.stdout).campaign_id as string;
    const watched = await amiproof(["campaign", "status", id, "--watch", "--interval-ms", "200", ...admin]);
    assert.equal(watched.code, 0, `${watched.stdout}\n${watched.stderr}`);
    assert.match(watched.stdout, /completed/);
    assert.match(watched.stdout, new RegExp(`confirmed ${METERS} failed 1 rolled_back 0`));
    assert.match(watched.stdout, /SIGN_AUTH_FAIL×1/);
    for (const port of ports) assert.equal(await runningChecksum(port), toHex(update.checksum));
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
    for (const port of ports) assert.equal(await runningChecksum(port), toHex(golden.checksum));

    mark("rollback confirmed");
    for (const d of dcus) await exit(d.child, "amiproof dcu", d.err);
    await exit(meters.child, "amiproof meter", meters.err);
    await exit(stranger.child, "amiproof meter", stranger.err);
    await exit(headend.child, "amiproof headend", headend.err);
    mark("all stopped");
  } finally {
    for (const c of children) if (c.exitCode === null) c.kill("SIGKILL");
    rmSync(dir, { recursive: true, force: true });
  }
});
