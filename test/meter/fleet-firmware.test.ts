// `amiproof meter --pki DIR --otp-master FILE` underneath: startFleet provisions each meter's firmware from
// a PKI directory (golden images built once from its signing key), serves the OTP-signed rollback command
// over DLMS (a wrong OTP refused and counted, a right one accepted once, a replay refused), and a restart
// from the same data directory boots what the banks hold instead of provisioning again.
import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import { writeTestPki } from "../../src/cli/commands/pki.ts";
import { connectDlms, parseObis } from "../../src/dlms/index.ts";
import {
  computeRollbackOtp,
  decodeRollbackResult,
  encodeRollbackCommand,
  type RollbackOtpInput,
  toHex,
} from "../../src/evidence/index.ts";
import { deriveMeterOtpKey } from "../../src/headend/index.ts";
import { ROLLBACK_COMMAND_OBIS } from "../../src/meter/index.ts";
import {
  GOLDEN_FILES,
  loadFirmwareProvisioning,
  ProvisioningError,
} from "../../src/meter/runtime/firmware-provision.ts";
import { startFleet } from "../../src/meter/runtime/fleet.ts";

const dir = mkdtempSync(join(tmpdir(), "amiproof-fleet-fw-"));
after(() => rmSync(dir, { recursive: true, force: true }));
const pkiDir = join(dir, "pki");
await writeTestPki(pkiDir);
const master = new Uint8Array(32).map((_, i) => i + 1);

async function rollback(port: number, command: RollbackOtpInput, key: Uint8Array) {
  const c = await connectDlms("127.0.0.1", port, 1);
  try {
    await c.client.associate({ password: new TextEncoder().encode("12345678") });
    const otp = computeRollbackOtp(key, command);
    const answer = await c.client.action(9, parseObis(ROLLBACK_COMMAND_OBIS), 1, {
      type: "octet-string",
      value: encodeRollbackCommand({ ...command, otp }),
    });
    assert.equal(answer.data?.type, "octet-string");
    return decodeRollbackResult((answer.data as { value: Uint8Array }).value);
  } finally {
    c.close();
  }
}

test("golden images are built once from the PKI's signing key, and kept", () => {
  const first = loadFirmwareProvisioning(pkiDir);
  const bytes = readFileSync(join(pkiDir, GOLDEN_FILES.app));
  const second = loadFirmwareProvisioning(pkiDir);
  assert.deepEqual(readFileSync(join(pkiDir, GOLDEN_FILES.app)), bytes);
  assert.equal(toHex(second.goldenApp.checksum), toHex(first.goldenApp.checksum));
  assert.equal(first.goldenApp.component, "app");
  assert.equal(first.goldenComms.component, "comms");
});

test("a missing or wrong PKI directory is a ProvisioningError naming the file", () => {
  assert.throws(() => loadFirmwareProvisioning(join(dir, "absent")), {
    name: "ProvisioningError",
    message: /does not exist/,
  });
  const bad = join(dir, "bad-pki");
  mkdirSync(bad);
  // No CA certificate.
  assert.throws(() => loadFirmwareProvisioning(bad), {
    name: "ProvisioningError",
    message: /ca\.crt\.pem is missing/,
  });
  // A CA file that is not a certificate.
  writeFileSync(join(bad, "ca.crt.pem"), "not a certificate");
  assert.throws(() => loadFirmwareProvisioning(bad), { name: "ProvisioningError", message: /not an X\.509/ });
  // A CA but neither golden images nor a signing key.
  writeFileSync(join(bad, "ca.crt.pem"), readFileSync(join(pkiDir, "ca.crt.pem")));
  assert.throws(() => loadFirmwareProvisioning(bad), {
    name: "ProvisioningError",
    message: /firmware-signing\.key\.pem is missing/,
  });
  // A golden file that is no image.
  writeFileSync(join(bad, GOLDEN_FILES.app), "junk");
  writeFileSync(join(bad, GOLDEN_FILES.comms), readFileSync(join(pkiDir, GOLDEN_FILES.comms)));
  assert.throws(() => loadFirmwareProvisioning(bad), {
    name: "ProvisioningError",
    message: /not a firmware image/,
  });
});

test("the rollback command needs firmware", async () => {
  await assert.rejects(
    startFleet({ baseId: "MTR-X", count: 1, rollbackKey: () => master }),
    ProvisioningError,
  );
});

test("meters provisioned from the PKI serve the OTP rollback command; a restart keeps their banks", async () => {
  const firmware = loadFirmwareProvisioning(pkiDir);
  const golden = toHex(firmware.goldenApp.checksum);
  const dataDir = join(dir, "meters");
  const options = {
    baseId: "MTR-F",
    count: 2,
    listenPort: 0,
    dataDir,
    firmware,
    rollbackKey: (meterId: string) => deriveMeterOtpKey(master, meterId),
  };
  let fleet = await startFleet(options);
  try {
    const id = fleet.meters[0]!.id;
    assert.equal(toHex(fleet.firmwareOf(id)!.runningChecksum("app")!), golden);
    const command = {
      meterId: id,
      action: "rollback_full" as const,
      targetChecksum: golden,
      expiresMs: Date.now() + 3_600_000,
      counter: Date.now(),
    };
    // An OTP under another meter's key: refused, counted, nothing changes.
    const wrong = await rollback(fleet.ports[0]!, command, deriveMeterOtpKey(master, fleet.meters[1]!.id));
    assert.equal(wrong.outcome, "refused");
    assert.equal(wrong.reason, "OTP_INVALID");
    assert.equal(fleet.rollbacksRefused(), 1);
    // The right key: accepted (golden from bank A to the recovery bank), a fresh OTP again changes
    // nothing (already_golden), and the same counter once more is a replay.
    const right = await rollback(fleet.ports[0]!, command, deriveMeterOtpKey(master, id));
    assert.equal(right.outcome, "applied");
    assert.equal(right.runningChecksum, golden);
    const next = { ...command, counter: command.counter + 1 };
    const repeated = await rollback(fleet.ports[0]!, next, deriveMeterOtpKey(master, id));
    assert.equal(repeated.outcome, "already_golden");
    const replay = await rollback(fleet.ports[0]!, next, deriveMeterOtpKey(master, id));
    assert.equal(replay.reason, "OTP_REPLAY");
    assert.equal(fleet.rollbacksRefused(), 2);
    await fleet.stop();

    // Restarted from its NVM: no second provisioning (the recovery bank is locked), same golden image,
    // and the accepted counter survived in the secure element.
    fleet = await startFleet(options);
    assert.equal(toHex(fleet.firmwareOf(id)!.runningChecksum("app")!), golden);
    const again = await rollback(fleet.ports[0]!, next, deriveMeterOtpKey(master, id));
    assert.equal(again.reason, "OTP_REPLAY");
  } finally {
    await fleet.stop();
  }
});
