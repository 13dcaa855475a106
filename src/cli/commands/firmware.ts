import { X509Certificate } from "node:crypto";
import { readFileSync, writeFileSync } from "node:fs";
import type { Command } from "commander";
import { p256Verify, rawPublicKey, toHex } from "../../evidence/index.ts";
import {
  authenticateImage,
  buildFirmwareImage,
  CODE_SIGNING_OID,
  certificateWindow,
  decodeFirmwareImage,
  FIRMWARE_COMPONENTS,
  type FirmwareComponent,
  FirmwareError,
  type FirmwareImage,
  parseVersion,
  signerFromPem,
  UPDATABLE_COMPONENTS,
  versionString,
} from "../../meter/index.ts";

export const DEFAULT_HW_TARGET = "AMI-1PH-v2";

function fail(message: string, code = 1): never {
  process.stderr.write(`amiproof firmware: ${message}\n`);
  process.exit(code);
}

function read(path: string): Buffer {
  try {
    return readFileSync(path);
  } catch (error) {
    fail(`cannot read ${path}: ${(error as Error).message}`, 2);
  }
}

export function registerFirmware(program: Command): void {
  const firmware = program.command("firmware").description("build and inspect signed firmware images");
  firmware
    .command("build")
    .description("build a signed image (header, payload, CRC-32, X.509 certificate, ECDSA P-256 signature)")
    .requiredOption("--component <c>", `component: ${UPDATABLE_COMPONENTS.join("|")}`)
    .requiredOption("--version <v>", "version MAJOR.MINOR.PATCH (or the release counter as an integer)")
    .requiredOption("--key <pem>", "firmware-signing private key (PEM)")
    .requiredOption("--cert <pem>", "firmware-signing certificate (PEM)")
    .requiredOption("--in <payload>", "payload file")
    .requiredOption("--out <file>", "image file to write")
    .option("--hw-target <t>", "hardware target", DEFAULT_HW_TARGET)
    .option("--expires <iso>", "the image is not installed after this instant")
    .action(
      (o: {
        component: string;
        version: string;
        key: string;
        cert: string;
        in: string;
        out: string;
        hwTarget: string;
        expires?: string;
      }) => {
        if (!FIRMWARE_COMPONENTS.includes(o.component as FirmwareComponent))
          fail(`unknown component ${o.component}`, 2);
        if (!UPDATABLE_COMPONENTS.includes(o.component as FirmwareComponent)) {
          fail(
            `${o.component} firmware never changes in the field (seed 001): only ${UPDATABLE_COMPONENTS.join(", ")} images are built`,
            2,
          );
        }
        const expiresMs = o.expires === undefined ? 0 : Date.parse(o.expires);
        if (Number.isNaN(expiresMs)) fail(`--expires ${o.expires} is not a date`, 2);
        try {
          const certificate = new X509Certificate(read(o.cert));
          const image = buildFirmwareImage(
            {
              component: o.component as FirmwareComponent,
              version: parseVersion(o.version),
              hwTarget: o.hwTarget,
              expiresMs,
            },
            new Uint8Array(read(o.in)),
            new Uint8Array(certificate.raw),
            signerFromPem(read(o.key).toString()),
          );
          writeFileSync(o.out, image.bytes);
          process.stdout.write(
            `wrote ${o.out}: ${image.component} ${versionString(image.version)} for ${image.hwTarget}, ${image.bytes.length} bytes, sha256 ${toHex(image.checksum)}\n`,
          );
        } catch (error) {
          if (error instanceof FirmwareError) fail(error.message);
          fail((error as Error).message);
        }
      },
    );
  firmware
    .command("inspect")
    .description(
      "show an image's header, CRC, signature and certificate validity; with --ca, apply the meter's own checks",
    )
    .argument("<file>", "image file")
    .option(
      "--ca <pem>",
      "trust anchor: check chain, code-signing purpose, validity and signature as a meter does",
    )
    .option("--at <iso>", "the meter's time for certificate validity (default: now)")
    .option("--json", "one JSON object")
    .action((file: string, o: { ca?: string; at?: string; json?: boolean }) => {
      let image: FirmwareImage;
      try {
        image = decodeFirmwareImage(new Uint8Array(read(file)));
      } catch (error) {
        if (error instanceof FirmwareError) fail(`${file}: ${error.message}`);
        throw error;
      }
      // shell: the CLI is where the wall clock may stand in for the meter's.
      const atMs = o.at === undefined ? Date.now() : Date.parse(o.at);
      if (Number.isNaN(atMs)) fail(`--at ${o.at} is not a date`, 2);
      let cert: X509Certificate;
      try {
        cert = new X509Certificate(Buffer.from(image.certificateDer));
      } catch {
        fail(`${file}: SIGN_AUTH_FAIL: the image's certificate is not valid DER X.509`);
      }
      const window = certificateWindow(cert);
      const certValidAt = atMs >= window.notBeforeMs && atMs <= window.notAfterMs;
      let signatureValid = false;
      try {
        signatureValid = p256Verify(rawPublicKey(cert.publicKey), image.signedBytes, image.signature);
      } catch {
        signatureValid = false;
      }
      let problem: { code: string; cause: string | null; message: string } | null = signatureValid
        ? null
        : {
            code: "SIGN_AUTH_FAIL",
            cause: "BAD_SIGNATURE",
            message: "signature does not verify with the certificate's key",
          };
      if (problem === null && !certValidAt) {
        problem = {
          code: "SIGN_AUTH_FAIL",
          cause: atMs > window.notAfterMs ? "CERT_EXPIRED" : "CERT_NOT_YET_VALID",
          message: `certificate valid ${cert.validFrom} – ${cert.validTo}`,
        };
      }
      if (problem === null && o.ca !== undefined) {
        try {
          authenticateImage(
            image,
            { caCertificateDer: new Uint8Array(new X509Certificate(read(o.ca)).raw) },
            atMs,
          );
        } catch (error) {
          if (!(error instanceof FirmwareError)) throw error;
          problem = { code: error.code, cause: error.detail ?? null, message: error.message };
        }
      }
      const report = {
        file,
        component: image.component,
        updatable: UPDATABLE_COMPONENTS.includes(image.component),
        version: versionString(image.version),
        release_counter: image.version,
        hw_target: image.hwTarget,
        expires: image.expiresMs === 0 ? null : new Date(image.expiresMs).toISOString(),
        payload_bytes: image.payload.length,
        image_bytes: image.bytes.length,
        crc32: `0x${image.crc.toString(16).padStart(8, "0")}`,
        crc_ok: true,
        sha256: toHex(image.checksum),
        certificate: {
          subject: cert.subject,
          issuer: cert.issuer,
          serial: cert.serialNumber,
          valid_from: new Date(window.notBeforeMs).toISOString(),
          valid_to: new Date(window.notAfterMs).toISOString(),
          code_signing: (cert.keyUsage ?? []).includes(CODE_SIGNING_OID),
          valid_at: certValidAt,
        },
        checked_at: new Date(atMs).toISOString(),
        signature_valid: signatureValid,
        chain_checked: o.ca !== undefined,
        problem:
          problem === null ? null : `${problem.code}${problem.cause === null ? "" : ` (${problem.cause})`}`,
      };
      if (o.json) process.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
      else {
        process.stdout.write(
          [
            `${file}: ${report.component} ${report.version} (release ${report.release_counter}) for ${report.hw_target}${report.updatable ? "" : " — NOT updatable in the field"}`,
            `  payload ${report.payload_bytes} B, image ${report.image_bytes} B, CRC-32 ${report.crc32} ok, sha256 ${report.sha256}`,
            `  certificate ${cert.subject.replace(/\n/g, ", ")} issued by ${cert.issuer.replace(/\n/g, ", ")}, serial ${cert.serialNumber}${report.certificate.code_signing ? ", code signing" : ", NOT for code signing"}`,
            `  valid ${report.certificate.valid_from} – ${report.certificate.valid_to} (${certValidAt ? "valid" : "NOT valid"} at ${report.checked_at})`,
            `  signature ${signatureValid ? "valid" : "INVALID"}${o.ca === undefined ? " (chain not checked: pass --ca)" : " (chain checked)"}`,
            problem === null ? "  ok" : `  ${report.problem}: ${problem.message.replace(/^[A-Z_]+: /, "")}`,
            "",
          ].join("\n"),
        );
      }
      process.exitCode = problem === null ? 0 : 1;
    });
}
