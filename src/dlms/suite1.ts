import { createSign, createVerify, type KeyObject } from "node:crypto";
import { DlmsError } from "./errors.ts";
import { SYSTEM_TITLE_BYTES } from "./security.ts";

// Security suite 1 (Green Book §9.2.3: ECDSA P-256 with SHA-256): HLS authentication mechanism 7. Each
// side signs, with its own signing key, its own system title ‖ the peer's ‖ the peer's challenge ‖ its
// own challenge; the signature is r ‖ s, 32 bytes each. Pass 3 carries the client's f(StoC), pass 4 the
// server's f(CtoS), both through reply_to_HLS_authentication of the association object.

export const HLS_ECDSA_SIGNATURE_BYTES = 64;
/** Challenges for mechanism 7 are 32 to 64 bytes. */
export const HLS_ECDSA_CHALLENGE_BYTES_MIN = 32;
export const HLS_ECDSA_CHALLENGE_BYTES_MAX = 64;

function signedBytes(
  signerTitle: Uint8Array,
  otherTitle: Uint8Array,
  otherChallenge: Uint8Array,
  signerChallenge: Uint8Array,
): Buffer {
  if (signerTitle.length !== SYSTEM_TITLE_BYTES || otherTitle.length !== SYSTEM_TITLE_BYTES)
    throw new DlmsError("BAD_LENGTH", "HLS-ECDSA system titles are 8 bytes");
  return Buffer.concat([signerTitle, otherTitle, otherChallenge, signerChallenge]);
}

/** f(peer's challenge): our ECDSA signature over ownTitle ‖ peerTitle ‖ peerChallenge ‖ ownChallenge. */
export function hlsEcdsaResponse(
  signingKey: KeyObject,
  ownSystemTitle: Uint8Array,
  peerSystemTitle: Uint8Array,
  peerChallenge: Uint8Array,
  ownChallenge: Uint8Array,
): Uint8Array {
  const signer = createSign("SHA256");
  signer.update(signedBytes(ownSystemTitle, peerSystemTitle, peerChallenge, ownChallenge));
  return new Uint8Array(signer.sign({ key: signingKey, dsaEncoding: "ieee-p1363" }));
}

/** Checks the peer's f(our challenge); throws AUTH_FAILED. */
export function verifyHlsEcdsa(
  peerPublicKey: KeyObject,
  peerSystemTitle: Uint8Array,
  ownSystemTitle: Uint8Array,
  ownChallenge: Uint8Array,
  peerChallenge: Uint8Array,
  signature: Uint8Array,
): void {
  if (signature.length !== HLS_ECDSA_SIGNATURE_BYTES)
    throw new DlmsError("AUTH_FAILED", `HLS-ECDSA signature of ${signature.length} bytes (r ‖ s, 64)`);
  const verifier = createVerify("SHA256");
  verifier.update(signedBytes(peerSystemTitle, ownSystemTitle, ownChallenge, peerChallenge));
  let ok: boolean;
  try {
    ok = verifier.verify({ key: peerPublicKey, dsaEncoding: "ieee-p1363" }, signature);
  } catch {
    ok = false;
  }
  if (!ok)
    throw new DlmsError("AUTH_FAILED", "HLS-ECDSA signature does not verify: wrong key or certificate");
}
