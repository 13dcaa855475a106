// Certificate generation for `amiproof pki init` and tests (async WebCrypto through @peculiar/x509).
// Verification on the meter uses node:crypto synchronously (pki.ts).
// @peculiar/x509 resolves its algorithms through tsyringe, which needs the Reflect metadata polyfill.
import "reflect-metadata";
import { webcrypto } from "node:crypto";

type CryptoKey = webcrypto.CryptoKey;
type CryptoKeyPair = webcrypto.CryptoKeyPair;

import * as x509 from "@peculiar/x509";

x509.cryptoProvider.set(webcrypto as unknown as Parameters<typeof x509.cryptoProvider.set>[0]);

const ALGORITHM = { name: "ECDSA", namedCurve: "P-256", hash: "SHA-256" } as const;

export interface IssuedKey {
  readonly certificatePem: string;
  readonly certificateDer: Uint8Array;
  readonly privateKeyPem: string;
}

export interface TestPki {
  readonly ca: IssuedKey;
  readonly firmwareSigner: IssuedKey;
}

async function keyPair(): Promise<CryptoKeyPair> {
  return (await webcrypto.subtle.generateKey(ALGORITHM, true, ["sign", "verify"])) as CryptoKeyPair;
}

async function pkcs8Pem(key: CryptoKey): Promise<string> {
  const der = Buffer.from(await webcrypto.subtle.exportKey("pkcs8", key));
  return `-----BEGIN PRIVATE KEY-----\n${der
    .toString("base64")
    .replace(/(.{64})/g, "$1\n")
    .trim()}\n-----END PRIVATE KEY-----\n`;
}

function issued(cert: x509.X509Certificate, privateKeyPem: string): IssuedKey {
  return {
    certificatePem: cert.toString("pem"),
    certificateDer: new Uint8Array(cert.rawData),
    privateKeyPem,
  };
}

/** A test CA and a firmware-signing certificate it issued, valid between the two instants. */
export async function generateTestPki(options: {
  readonly notBefore: Date;
  readonly notAfter: Date;
  readonly signerNotAfter?: Date;
  readonly caName?: string;
}): Promise<TestPki> {
  const caKeys = await keyPair();
  const caName = `CN=${options.caName ?? "amiproof test CA"}`;
  const caCert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: "01",
    name: caName,
    notBefore: options.notBefore,
    notAfter: options.notAfter,
    signingAlgorithm: ALGORITHM,
    keys: caKeys,
    extensions: [
      new x509.BasicConstraintsExtension(true, 0, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
    ],
  });
  const ca = issued(caCert, await pkcs8Pem(caKeys.privateKey));
  return {
    ca,
    firmwareSigner: await issueFirmwareSigner(
      ca,
      options.notBefore,
      options.signerNotAfter ?? options.notAfter,
      "02",
    ),
  };
}

/** A firmware-signing certificate issued by an existing CA (e.g. a replacement, or an expired one for tests). */
export async function issueFirmwareSigner(
  ca: IssuedKey,
  notBefore: Date,
  notAfter: Date,
  serialNumber = "03",
): Promise<IssuedKey> {
  return issueEndEntity(ca, {
    subject: "CN=amiproof firmware signing",
    notBefore,
    notAfter,
    serialNumber,
    purpose: "code_signing",
  });
}

/**
 * An end-entity certificate issued by the CA. `code_signing` carries id-kp-codeSigning (the only purpose
 * the meter accepts on firmware); `device` (meters, concentrators) carries id-kp-clientAuth.
 */
export async function issueEndEntity(
  ca: IssuedKey,
  options: {
    readonly subject: string;
    readonly notBefore: Date;
    readonly notAfter: Date;
    readonly serialNumber: string;
    readonly purpose: "code_signing" | "device";
  },
): Promise<IssuedKey> {
  const caCert = new x509.X509Certificate(ca.certificatePem);
  const der = Buffer.from(ca.privateKeyPem.replace(/-----[A-Z ]+-----/g, "").replace(/\s+/g, ""), "base64");
  const caKey = await webcrypto.subtle.importKey("pkcs8", der, ALGORITHM, false, ["sign"]);
  const keys = await keyPair();
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: options.serialNumber,
    subject: options.subject,
    issuer: caCert.subject,
    notBefore: options.notBefore,
    notAfter: options.notAfter,
    signingAlgorithm: ALGORITHM,
    publicKey: keys.publicKey,
    signingKey: caKey,
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
      // The meter accepts only code-signing certificates on firmware (pki.ts), so a meter or
      // concentrator key certified by the same CA can never sign an image.
      new x509.ExtendedKeyUsageExtension(
        [
          options.purpose === "code_signing"
            ? x509.ExtendedKeyUsage.codeSigning
            : x509.ExtendedKeyUsage.clientAuth,
        ],
        true,
      ),
    ],
  });
  return issued(cert, await pkcs8Pem(keys.privateKey));
}

/** A P-256 key pair as PEM (PKCS#8 private, SPKI public), for meters and concentrators. */
export async function generateKeyPem(): Promise<{ privateKeyPem: string; publicKeyPem: string }> {
  const keys = await keyPair();
  const spki = Buffer.from(await webcrypto.subtle.exportKey("spki", keys.publicKey));
  return {
    privateKeyPem: await pkcs8Pem(keys.privateKey),
    publicKeyPem: `-----BEGIN PUBLIC KEY-----\n${spki
      .toString("base64")
      .replace(/(.{64})/g, "$1\n")
      .trim()}\n-----END PUBLIC KEY-----\n`,
  };
}
