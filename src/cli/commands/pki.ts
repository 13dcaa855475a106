import { createPrivateKey, createPublicKey } from "node:crypto";
import { existsSync, mkdirSync, readdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { Command } from "commander";
import { generateTestPki, issueEndEntity } from "../../meter/index.ts";

const VALIDITY_YEARS = 5;
const CLOCK_SKEW_ALLOWANCE_MS = 24 * 3600_000;

function publicKeyPem(privateKeyPem: string): string {
  return createPublicKey(createPrivateKey(privateKeyPem)).export({ type: "spki", format: "pem" }).toString();
}

/**
 * Writes a test PKI into `dir` (created): CA, firmware-signing certificate, meter and concentrator device
 * keys. `amiproof pki init`, and `amiproof up` on its first start (DATA/pki).
 */
export async function writeTestPki(dir: string): Promise<{ now: Date; until: Date }> {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  // shell: the wall clock; validity starts a day back so a meter whose clock lags still accepts.
  const now = new Date(Date.now() - CLOCK_SKEW_ALLOWANCE_MS);
  const until = new Date(now.getTime());
  until.setUTCFullYear(until.getUTCFullYear() + VALIDITY_YEARS);
  const generated = await generateTestPki({ notBefore: now, notAfter: until });
  const write = (name: string, content: string, mode = 0o644) =>
    writeFileSync(join(dir, name), content, { mode });
  write("ca.crt.pem", generated.ca.certificatePem);
  write("ca.key.pem", generated.ca.privateKeyPem, 0o600);
  write("firmware-signing.crt.pem", generated.firmwareSigner.certificatePem);
  write("firmware-signing.key.pem", generated.firmwareSigner.privateKeyPem, 0o600);
  let serial = 0x10;
  for (const role of ["meter", "concentrator"]) {
    // A device certificate (clientAuth) from the same CA: the meter refuses it on firmware images.
    const device = await issueEndEntity(generated.ca, {
      subject: `CN=amiproof test ${role}`,
      notBefore: now,
      notAfter: until,
      serialNumber: (serial++).toString(16),
      purpose: "device",
    });
    write(`${role}.key.pem`, device.privateKeyPem, 0o600);
    write(`${role}.crt.pem`, device.certificatePem);
    write(`${role}.pub.pem`, publicKeyPem(device.privateKeyPem));
  }
  return { now, until };
}

export function registerPki(program: Command): void {
  const pki = program.command("pki").description("keys and certificates");
  pki
    .command("init")
    .description("create a test CA, a firmware-signing certificate, and meter and concentrator keys")
    .argument("<dir>", "output directory (must be empty or absent)")
    .option("--force", "write into a non-empty directory")
    .action(async (dir: string, options: { force?: boolean }) => {
      if (existsSync(dir) && readdirSync(dir).length > 0 && !options.force) {
        process.stderr.write(`amiproof pki init: ${dir} is not empty (use --force to overwrite)\n`);
        process.exit(2);
      }
      const { now, until } = await writeTestPki(dir);
      process.stdout.write(
        [
          `wrote ${dir}:`,
          "  ca.crt.pem / ca.key.pem                         test CA (trust anchor provisioned in meters)",
          "  firmware-signing.crt.pem / firmware-signing.key.pem  signs images: amiproof firmware build --key … --cert …",
          "  meter.key.pem / meter.crt.pem / meter.pub.pem           meter key, its device certificate (clientAuth)",
          "  concentrator.key.pem / concentrator.crt.pem / concentrator.pub.pem",
          `  valid ${now.toISOString()} – ${until.toISOString()}; private keys are mode 0600`,
          "",
        ].join("\n"),
      );
    });
}
