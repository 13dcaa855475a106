// shell: a pool of verification worker threads (issue 7 bench: verification beside the store writer).
import { availableParallelism } from "node:os";
import { Worker } from "node:worker_threads";
import { decodeBatchHeader } from "../../evidence/index.ts";
import type { BatchVerifier, PreVerified } from "../core/ingest.ts";
import { type BatchColumns, prepareFromColumns } from "../core/prepared.ts";

/** Workers at most; the writer keeps a core of its own. */
export const VERIFY_WORKERS_MAX = 4;
/** Requests in flight per worker (the ingest itself runs at most VERIFY_AHEAD_BATCHES ahead). */
export const VERIFY_PENDING_PER_WORKER_MAX = 8;

type Reply =
  | { readonly id: number; readonly ok: true; readonly columns: BatchColumns }
  | {
      readonly id: number;
      readonly ok: false;
      readonly code: string;
      readonly message: string;
      readonly header: Uint8Array | null;
    };

interface Slot {
  worker: Worker;
  readonly pending: Map<number, (reply: Reply) => void>;
}

export function defaultVerifyWorkers(): number {
  return Math.max(1, Math.min(VERIFY_WORKERS_MAX, availableParallelism() - 1));
}

export class VerifierPool {
  private readonly slots: Slot[] = [];
  private nextId = 1;
  private closed = false;

  constructor(readonly size = defaultVerifyWorkers()) {
    for (let i = 0; i < size; i++) this.slots.push(this.spawn());
  }

  /** The BatchVerifier the ingest takes. */
  readonly verify: BatchVerifier = (payload, publicKey) => {
    if (this.closed) return Promise.reject(new Error("verifier pool closed"));
    const slot = this.slots.reduce((a, b) => (b.pending.size < a.pending.size ? b : a));
    if (slot.pending.size >= VERIFY_PENDING_PER_WORKER_MAX) {
      return Promise.reject(
        new Error(`verifier pool: ${VERIFY_PENDING_PER_WORKER_MAX} requests pending per worker`),
      );
    }
    const id = this.nextId++;
    // The payload is copied into the worker (it is also the message's own buffer, which may be shared).
    const copy = payload.slice();
    return new Promise<PreVerified>((resolve, reject) => {
      slot.pending.set(id, (reply) => {
        try {
          resolve(toPreVerified(reply));
        } catch (error) {
          reject(error);
        }
      });
      // Referenced while it owes an answer, so a caller awaiting it keeps the process alive.
      slot.worker.ref();
      slot.worker.postMessage({ id, payload: copy, publicKey }, [copy.buffer as ArrayBuffer]);
    });
  };

  async close(): Promise<void> {
    this.closed = true;
    await Promise.all(this.slots.map((s) => s.worker.terminate()));
  }

  private spawn(): Slot {
    const slot: Slot = { worker: startWorker(), pending: new Map() };
    const attach = () => {
      slot.worker.on("message", (reply: Reply) => {
        const done = slot.pending.get(reply.id);
        slot.pending.delete(reply.id);
        if (slot.pending.size === 0) slot.worker.unref();
        done?.(reply);
      });
      slot.worker.on("error", (error) => {
        for (const done of slot.pending.values()) {
          done({
            id: 0,
            ok: false,
            code: "INTERNAL",
            message: `verification worker failed: ${error.message}`,
            header: null,
          });
        }
        slot.pending.clear();
      });
      slot.worker.on("exit", () => {
        if (this.closed) return;
        slot.worker = startWorker();
        slot.worker.unref();
        attach();
      });
    };
    attach();
    slot.worker.unref();
    return slot;
  }
}

function toPreVerified(reply: Reply): PreVerified {
  if (reply.ok) return { ok: true, prepared: prepareFromColumns(reply.columns) };
  if (reply.code === "INTERNAL") throw new Error(reply.message);
  let header = null;
  if (reply.header !== null) {
    try {
      header = decodeBatchHeader(reply.header);
    } catch {
      header = null;
    }
  }
  return { ok: false, code: reply.code, message: reply.message, header };
}

/** Workers load the TypeScript sources through tsx like the main thread (bin/amiproof.js). */
function startWorker(): Worker {
  const entry = new URL("./verify-worker.ts", import.meta.url).href;
  const tsx = import.meta.resolve("tsx/esm/api");
  const code = `import(${JSON.stringify(tsx)}).then((m) => { m.register(); return import(${JSON.stringify(entry)}); });`;
  return new Worker(code, { eval: true, execArgv: [] });
}
