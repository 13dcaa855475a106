import { parseObis } from "./apdu.ts";
import type { Data } from "./axdr.ts";
import type { DlmsClient } from "./client.ts";
import { DlmsError } from "./errors.ts";

// The client side of image transfer (interface class 18, Blue Book): read the block size, initiate,
// resume from image_first_not_transferred_block_number (attribute 4), send the blocks, verify, activate;
// verify/activate answering temporary-failure are polled through image_transfer_status (attribute 6).

export const IMAGE_TRANSFER_OBIS = parseObis("0.0.44.0.0.255");
const CLASS_IMAGE_TRANSFER = 18;
/** Bound on status polls after a temporary failure. */
export const IMAGE_STATUS_POLLS_MAX = 30;

export const IMAGE_TRANSFER_STATUS = [
  "not-initiated",
  "initiated",
  "verification-initiated",
  "verification-successful",
  "verification-failed",
  "activation-initiated",
  "activation-successful",
  "activation-failed",
] as const;

const u32 = (value: number): Data => ({ type: "double-long-unsigned", value });

export type ImageTransferProgress = (blocksSent: number, blocksTotal: number) => void;

export async function transferImage(
  client: DlmsClient,
  identifier: string,
  image: Uint8Array,
  progress: ImageTransferProgress = () => {},
): Promise<{ blocks: number; resumedFrom: number }> {
  const blockSizeData = await client.get(CLASS_IMAGE_TRANSFER, IMAGE_TRANSFER_OBIS, 2);
  if (blockSizeData.type !== "double-long-unsigned" || blockSizeData.value < 1)
    throw new DlmsError("BAD_TAG", "image_block_size is not a positive double-long-unsigned");
  // The block plus the ACTION framing (and the ciphering, if any) must fit the negotiated PDU
  // (IEC 62056-5-3).
  const blockSize = Math.min(blockSizeData.value, client.requestBytesMax - 32);
  const total = Math.ceil(image.length / blockSize);
  const identifierBytes = new TextEncoder().encode(identifier);
  let first = 0;
  const status = await client.get(CLASS_IMAGE_TRANSFER, IMAGE_TRANSFER_OBIS, 6);
  if (status.type === "enum" && status.value === 1) {
    const next = await client.get(CLASS_IMAGE_TRANSFER, IMAGE_TRANSFER_OBIS, 4);
    if (next.type === "double-long-unsigned") first = Math.min(next.value, total);
  }
  if (first === 0) {
    await client.action(CLASS_IMAGE_TRANSFER, IMAGE_TRANSFER_OBIS, 1, {
      type: "structure",
      value: [{ type: "octet-string", value: identifierBytes }, u32(image.length)],
    });
  }
  for (let n = first; n < total; n++) {
    await client.action(CLASS_IMAGE_TRANSFER, IMAGE_TRANSFER_OBIS, 2, {
      type: "structure",
      value: [
        u32(n),
        {
          type: "octet-string",
          value: image.subarray(n * blockSize, Math.min((n + 1) * blockSize, image.length)),
        },
      ],
    });
    progress(n + 1, total);
  }
  for (const [method, done] of [
    [3, 3],
    [4, 6],
  ] as const) {
    const { result } = await client.action(CLASS_IMAGE_TRANSFER, IMAGE_TRANSFER_OBIS, method, {
      type: "integer",
      value: 0,
    });
    if (result === 2) {
      let polls = 0;
      for (;;) {
        const s = await client.get(CLASS_IMAGE_TRANSFER, IMAGE_TRANSFER_OBIS, 6);
        if (s.type === "enum" && s.value === done) break;
        if (s.type === "enum" && (s.value === 4 || s.value === 7))
          throw new DlmsError("DATA_ACCESS_ERROR", `image ${IMAGE_TRANSFER_STATUS[s.value]}`);
        if (++polls >= IMAGE_STATUS_POLLS_MAX)
          throw new DlmsError(
            "TIMEOUT",
            `image transfer status stuck at ${s.type === "enum" ? IMAGE_TRANSFER_STATUS[s.value] : "?"}`,
          );
      }
    }
  }
  return { blocks: total, resumedFrom: first };
}
