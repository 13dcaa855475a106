import { createPrivateKey, type KeyObject, X509Certificate } from "node:crypto";
import { p256Sign, p256Verify, rawPublicKey } from "../../evidence/index.ts";
import { FirmwareError } from "./errors.ts";
import type { FirmwareImage } from "./image.ts";

// Image authentication (seed 000 "Cryptographic Handshake: ECDSA P-256, X.509 v3"): the image carries its
// signer's certificate; the meter trusts one CA (its provisioned trust anchor), checks the chain and the
// validity period against its own clock, then the ECDSA signature. Any failure is SIGN_AUTH_FAIL.

export interface TrustAnchor {
  readonly caCertificateDer: Uint8Array;
}

/** `meterNowMs` null skips the validity window (an installed image keeps booting after its certificate expires). */
export function authenticateImage(image: FirmwareImage, trust: TrustAnchor, meterNowMs: number | null): void {
  let signer: X509Certificate;
  let ca: X509Certificate;
  try {
    signer = new X509Certificate(Buffer.from(image.certificateDer));
    ca = new X509Certificate(Buffer.from(trust.caCertificateDer));
  } catch {
    throw new FirmwareError("SIGN_AUTH_FAIL", "the image's certificate is not valid DER X.509");
  }
  if (signer.issuer !== ca.subject || !signer.verify(ca.publicKey)) {
    throw new FirmwareError(
      "SIGN_AUTH_FAIL",
      `certificate "${signer.subject}" is not issued by the trusted CA "${ca.subject}"`,
    );
  }
  const notBefore = Date.parse(signer.validFrom);
  const notAfter = Date.parse(signer.validTo);
  if (meterNowMs !== null && (meterNowMs < notBefore || meterNowMs > notAfter)) {
    throw new FirmwareError(
      "SIGN_AUTH_FAIL",
      `certificate valid ${signer.validFrom} – ${signer.validTo}, meter time ${new Date(meterNowMs ?? 0).toISOString()}: expired or not yet valid`,
    );
  }
  let publicKey: Uint8Array;
  try {
    publicKey = rawPublicKey(signer.publicKey);
  } catch {
    throw new FirmwareError("SIGN_AUTH_FAIL", "certificate key is not ECDSA P-256");
  }
  if (!p256Verify(publicKey, image.signedBytes, image.signature)) {
    throw new FirmwareError("SIGN_AUTH_FAIL", "image signature does not verify with the certificate's key");
  }
}

/** A firmware signer loaded from PEM files (the CLI's `firmware build`). */
export function signerFromPem(privateKeyPem: string): (message: Uint8Array) => Uint8Array {
  const key: KeyObject = createPrivateKey(privateKeyPem);
  return (message) => p256Sign(key, message);
}
