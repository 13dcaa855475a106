import type { DcuPersistentState, DcuStore } from "./core/ports.ts";

// The concentrator's side store kept in memory, for tests and the lab. Every call is atomic, as the
// file store's write-temp → fsync → rename is: a "crash" in the lab simply drops the Concentrator object
// and reopens a new one over the same MemoryDcuStore.

export class MemoryDcuStore implements DcuStore {
  private state: DcuPersistentState | null = null;
  private readonly outbox = new Map<number, Uint8Array>();
  /** Writes performed (the lab's write-amplification figure). */
  writes = 0;

  async loadState(): Promise<DcuPersistentState | null> {
    return this.state === null ? null : structuredClone(this.state);
  }

  async saveState(state: DcuPersistentState): Promise<void> {
    this.writes++;
    this.state = structuredClone(state);
  }

  async loadOutbox(): Promise<Uint8Array[]> {
    return [...this.outbox.values()].map((bytes) => bytes.slice());
  }

  async putBatch(batchId: number, bytes: Uint8Array): Promise<void> {
    this.writes++;
    this.outbox.set(batchId, bytes.slice());
  }

  async dropBatchesThrough(batchId: number): Promise<void> {
    for (const id of [...this.outbox.keys()]) if (id <= batchId) this.outbox.delete(id);
  }

  outboxIds(): number[] {
    return [...this.outbox.keys()].sort((a, b) => a - b);
  }
}
