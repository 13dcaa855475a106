// shell: a verification worker thread: decodes and checks batches (CRCs, Merkle root, signature) beside
// the store writer, and hands each verified batch back as transferable columns.
import { parentPort } from "node:worker_threads";
import { verifyBatchFrame } from "../core/ingest.ts";
import { columnBuffers, columnsFromBatch } from "../core/prepared.ts";

export interface VerifyRequest {
  readonly id: number;
  readonly payload: Uint8Array;
  readonly publicKey: Uint8Array;
}

if (parentPort !== null) {
  const port = parentPort;
  port.on("message", (request: VerifyRequest) => {
    try {
      const result = verifyBatchFrame(request.payload, request.publicKey);
      if (result.ok) {
        const columns = columnsFromBatch(result.batch);
        port.postMessage({ id: request.id, ok: true, columns }, columnBuffers(columns));
      } else {
        port.postMessage({
          id: request.id,
          ok: false,
          code: result.code,
          message: result.message,
          header: result.header?.bytes ?? null,
        });
      }
    } catch (error) {
      port.postMessage({
        id: request.id,
        ok: false,
        code: "INTERNAL",
        message: (error as Error).message,
        header: null,
      });
    }
  });
}
