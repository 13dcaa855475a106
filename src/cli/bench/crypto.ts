import {
  crc32,
  generateP256KeyPair,
  P256_SIGNATURE_BYTES,
  p256Sign,
  p256Verify,
  sha256,
} from "../../evidence/index.ts";
import { type BenchSuite, figure, ratePerSecond } from "./types.ts";

// A reading record is ~60 bytes and a sealed event ~200: measure at those sizes.
const RECORD_BYTES = 64;
const EVENT_BYTES = 200;

export const cryptoSuite: BenchSuite = {
  name: "crypto",
  async run(ctx) {
    const minMs = ctx.quick ? 100 : 1000;
    const record = new Uint8Array(RECORD_BYTES).map((_, i) => i);
    const event = new Uint8Array(EVENT_BYTES).map((_, i) => i * 7);
    ctx.progress("crypto: CRC-32");
    const crcPerS = ratePerSecond(() => {
      for (let i = 0; i < 1000; i++) crc32(record);
      return 1000;
    }, minMs);
    ctx.progress("crypto: SHA-256");
    const shaPerS = ratePerSecond(() => {
      for (let i = 0; i < 200; i++) sha256(record);
      return 200;
    }, minMs);
    const keys = generateP256KeyPair();
    ctx.progress("crypto: ECDSA P-256 sign");
    const signPerS = ratePerSecond(() => {
      for (let i = 0; i < 20; i++) p256Sign(keys.privateKey, event);
      return 20;
    }, minMs);
    const signature = p256Sign(keys.privateKey, event);
    if (signature.length !== P256_SIGNATURE_BYTES || !p256Verify(keys.publicKey, event, signature)) {
      throw new Error("bench: ECDSA self-check failed");
    }
    ctx.progress("crypto: ECDSA P-256 verify");
    const verifyPerS = ratePerSecond(() => {
      for (let i = 0; i < 20; i++) p256Verify(keys.publicKey, event, signature);
      return 20;
    }, minMs);
    return [
      figure("crypto.crc32_per_s", crcPerS, `ops/s (${RECORD_BYTES} B)`),
      figure("crypto.sha256_per_s", shaPerS, `ops/s (${RECORD_BYTES} B)`),
      figure("crypto.ecdsa_p256_sign_per_s", signPerS, "ops/s"),
      figure("crypto.ecdsa_p256_verify_per_s", verifyPerS, "ops/s"),
    ];
  },
};
