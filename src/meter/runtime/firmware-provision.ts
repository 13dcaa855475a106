// shell: the factory's firmware provisioning of virtual meters, from a PKI directory (`amiproof pki init`):
// the trust anchor (ca.crt.pem) and the golden images every meter's recovery bank holds
// (golden-app.afw, golden-comms.afw). Golden images absent from the directory are built once, signed by
// its firmware-signing key, and written without overwriting (a concurrent start keeps the first ones).
import { X509Certificate } from "node:crypto";
import { existsSync, linkSync, readFileSync, unlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import {
  buildFirmwareImage,
  decodeFirmwareImage,
  type FirmwareImage,
  parseVersion,
  signerFromPem,
  type UpdatableComponent,
} from "../firmware/index.ts";

export const PKI_CA_FILE = "ca.crt.pem";
export const PKI_SIGNING_KEY_FILE = "firmware-signing.key.pem";
export const PKI_SIGNING_CERT_FILE = "firmware-signing.crt.pem";
export const GOLDEN_FILES: Readonly<Record<UpdatableComponent, string>> = {
  app: "golden-app.afw",
  comms: "golden-comms.afw",
};
/** The virtual meters' hardware target (as `amiproof firmware build`'s default). */
export const VIRTUAL_METER_HW_TARGET = "AMI-1PH-v2";
export const GOLDEN_VERSION = "1.0.0";
const GOLDEN_PAYLOAD_BYTES = 2048;

export class ProvisioningError extends Error {
  readonly code = "BAD_CONFIG";
  constructor(message: string) {
    super(message);
    this.name = "ProvisioningError";
  }
}

/** What every meter of a fleet is provisioned with at the factory. */
export interface FirmwareProvisioning {
  readonly caCertificateDer: Uint8Array;
  readonly goldenApp: FirmwareImage;
  readonly goldenComms: FirmwareImage;
}

function readOrFail(path: string, what: string): Buffer {
  if (!existsSync(path)) throw new ProvisioningError(`${path} is missing (${what})`);
  return readFileSync(path);
}

/** A certificate file, PEM or DER, as DER. */
export function certificateDer(path: string, what: string): Uint8Array {
  const raw = readOrFail(path, what);
  try {
    return new Uint8Array(new X509Certificate(raw).raw);
  } catch (error) {
    throw new ProvisioningError(`${path} is not an X.509 certificate: ${(error as Error).message}`);
  }
}

/** The golden payload: deterministic filler, distinct per component (a demo has no real code to ship). */
function goldenPayload(component: UpdatableComponent): Uint8Array {
  const salt = component === "app" ? 0x5a : 0xa5;
  return new Uint8Array(GOLDEN_PAYLOAD_BYTES).map((_, i) => (i * 7 + salt) & 0xff);
}

function writeOnce(path: string, bytes: Uint8Array): void {
  const temp = `${path}.${process.pid}.tmp`;
  writeFileSync(temp, bytes, { mode: 0o644 });
  try {
    linkSync(temp, path); // EEXIST: another start wrote it first; theirs is kept
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== "EEXIST") throw error;
  } finally {
    unlinkSync(temp);
  }
}

/**
 * Reads (building them first when absent) the trust anchor and golden images of PKI directory `dir`.
 * Throws ProvisioningError naming the file that is missing or wrong.
 */
export function loadFirmwareProvisioning(dir: string): FirmwareProvisioning {
  if (!existsSync(dir))
    throw new ProvisioningError(`PKI directory ${dir} does not exist (amiproof pki init)`);
  const caCertificateDer = certificateDer(join(dir, PKI_CA_FILE), "the firmware CA certificate");
  const images = {} as Record<UpdatableComponent, FirmwareImage>;
  for (const component of ["app", "comms"] as const) {
    const path = join(dir, GOLDEN_FILES[component]);
    if (!existsSync(path)) {
      const key = readOrFail(join(dir, PKI_SIGNING_KEY_FILE), `to sign the golden ${component} image`);
      const cert = certificateDer(join(dir, PKI_SIGNING_CERT_FILE), `to sign the golden ${component} image`);
      const built = buildFirmwareImage(
        { component, version: parseVersion(GOLDEN_VERSION), hwTarget: VIRTUAL_METER_HW_TARGET, expiresMs: 0 },
        goldenPayload(component),
        cert,
        signerFromPem(key.toString("utf8")),
      );
      writeOnce(path, built.bytes);
    }
    let image: FirmwareImage;
    try {
      image = decodeFirmwareImage(new Uint8Array(readFileSync(path)));
    } catch (error) {
      throw new ProvisioningError(`${path} is not a firmware image: ${(error as Error).message}`);
    }
    if (image.component !== component)
      throw new ProvisioningError(`${path} holds a ${image.component} image, not ${component}`);
    images[component] = image;
  }
  return { caCertificateDer, goldenApp: images.app, goldenComms: images.comms };
}
