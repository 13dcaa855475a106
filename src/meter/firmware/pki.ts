import { createPrivateKey, type KeyObject, X509Certificate } from "node:crypto";
import { p256Sign, p256Verify, rawPublicKey } from "../../evidence/index.ts";
import type { AuthCause } from "./boot-config.ts";
import { FirmwareError } from "./errors.ts";
import type { FirmwareImage } from "./image.ts";

// Image authentication (seed 000 "Cryptographic Handshake: ECDSA P-256, X.509 v3"): the image carries its
// signer's certificate; the meter trusts one CA (its provisioned trust anchor) and checks, in order: the
// certificate parses, it was issued and signed by that CA, it is an end-entity certificate for code
// signing (so no other key the CA certified, e.g. a meter's, can sign firmware), its validity period
// contains the meter's clock, and the ECDSA P-256 signature over header + payload + CRC + certificate.
// Any failure is SIGN_AUTH_FAIL (seed 000 rollback.log), with the cause in `detail`.
//
// Verification uses node:crypto's synchronous X.509 so the bootloader's boot() stays synchronous;
// certificates are generated with @peculiar/x509 (pki-generate.ts).

export interface TrustAnchor {
  readonly caCertificateDer: Uint8Array;
}

/** RFC 5280 §4.2.1.12 id-kp-codeSigning. */
export const CODE_SIGNING_OID = "1.3.6.1.5.5.7.3.3";

export interface CertificateWindow {
  readonly notBeforeMs: number;
  readonly notAfterMs: number;
}

function authFail(cause: AuthCause, message: string): FirmwareError {
  return new FirmwareError("SIGN_AUTH_FAIL", message, cause);
}

export function certificateWindow(certificate: X509Certificate): CertificateWindow {
  return { notBeforeMs: Date.parse(certificate.validFrom), notAfterMs: Date.parse(certificate.validTo) };
}

/**
 * Throws SIGN_AUTH_FAIL (detail = AuthCause) unless the image is signed by a code-signing certificate of
 * the trusted CA. `meterNowMs` null skips the validity window: an installed, confirmed image keeps booting
 * after its certificate expires (validity is checked when an image is installed or rolled back to).
 */
export function authenticateImage(image: FirmwareImage, trust: TrustAnchor, meterNowMs: number | null): void {
  let signer: X509Certificate;
  let ca: X509Certificate;
  try {
    signer = new X509Certificate(Buffer.from(image.certificateDer));
    ca = new X509Certificate(Buffer.from(trust.caCertificateDer));
  } catch {
    throw authFail("BAD_CERTIFICATE", "the image's certificate is not valid DER X.509");
  }
  if (!ca.ca || !signer.checkIssued(ca) || !signer.verify(ca.publicKey)) {
    throw authFail(
      "UNTRUSTED_ISSUER",
      `certificate "${signer.subject}" (issuer "${signer.issuer}") is not issued by the trusted CA "${ca.subject}"`,
    );
  }
  if (signer.ca || !(signer.keyUsage ?? []).includes(CODE_SIGNING_OID)) {
    throw authFail(
      "NOT_CODE_SIGNING",
      `certificate "${signer.subject}" is not an end-entity code-signing certificate (extended key usage ${CODE_SIGNING_OID})`,
    );
  }
  if (meterNowMs !== null) {
    const window = certificateWindow(signer);
    if (meterNowMs > window.notAfterMs) {
      throw authFail(
        "CERT_EXPIRED",
        `certificate expired ${signer.validTo}; meter time ${new Date(meterNowMs).toISOString()}`,
      );
    }
    if (meterNowMs < window.notBeforeMs) {
      throw authFail(
        "CERT_NOT_YET_VALID",
        `certificate valid from ${signer.validFrom}; meter time ${new Date(meterNowMs).toISOString()}`,
      );
    }
  }
  let publicKey: Uint8Array;
  try {
    publicKey = rawPublicKey(signer.publicKey);
  } catch {
    throw authFail("BAD_CERTIFICATE", "certificate key is not ECDSA P-256");
  }
  if (!p256Verify(publicKey, image.signedBytes, image.signature)) {
    throw authFail("BAD_SIGNATURE", "image signature does not verify with the certificate's key");
  }
}

/** A firmware signer loaded from PEM files (the CLI's `firmware build`). */
export function signerFromPem(privateKeyPem: string): (message: Uint8Array) => Uint8Array {
  const key: KeyObject = createPrivateKey(privateKeyPem);
  return (message) => p256Sign(key, message);
}
