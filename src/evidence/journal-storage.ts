import { closeSync, fsyncSync, openSync } from "node:fs";
import { type FileHandle, mkdir, open, readdir, readFile, rename, rm, truncate } from "node:fs/promises";
import { join } from "node:path";
import { concatBytes } from "./bytes.ts";
import { EvidenceError } from "./errors.ts";
import type { Rng } from "./random.ts";

/**
 * The few file operations the Journal needs. Appends become durable only at `datasync`; `writeAtomic`
 * replaces a small file as a whole (write temp → sync → rename → sync directory) and is durable on return.
 */
export interface JournalStorage {
  list(): Promise<string[]>;
  read(name: string): Promise<Uint8Array>;
  /** Appends to the named file, creating it (durably: its directory entry is synced) if needed. */
  append(name: string, data: Uint8Array): Promise<void>;
  datasync(name: string): Promise<void>;
  truncate(name: string, length: number): Promise<void>;
  writeAtomic(name: string, data: Uint8Array): Promise<void>;
  remove(name: string): Promise<void>;
  close(): Promise<void>;
}

/** The real filesystem, one directory per journal. */
export class FsJournalStorage implements JournalStorage {
  private readonly handles = new Map<string, FileHandle>();

  private constructor(readonly dir: string) {}

  static async open(dir: string): Promise<FsJournalStorage> {
    await mkdir(dir, { recursive: true });
    return new FsJournalStorage(dir);
  }

  async list(): Promise<string[]> {
    return (await readdir(this.dir)).filter((name) => !name.endsWith(".tmp")).sort();
  }

  async read(name: string): Promise<Uint8Array> {
    return new Uint8Array(await readFile(join(this.dir, name)));
  }

  async append(name: string, data: Uint8Array): Promise<void> {
    let handle = this.handles.get(name);
    if (handle === undefined) {
      handle = await open(join(this.dir, name), "a");
      this.handles.set(name, handle);
      this.syncDir();
    }
    let written = 0;
    while (written < data.length) {
      const { bytesWritten } = await handle.write(data, written, data.length - written);
      written += bytesWritten;
    }
  }

  async datasync(name: string): Promise<void> {
    await this.handles.get(name)?.datasync();
  }

  async truncate(name: string, length: number): Promise<void> {
    await this.closeHandle(name);
    await truncate(join(this.dir, name), length);
    const handle = await open(join(this.dir, name), "r+");
    try {
      await handle.datasync();
    } finally {
      await handle.close();
    }
  }

  async writeAtomic(name: string, data: Uint8Array): Promise<void> {
    const temp = join(this.dir, `${name}.tmp`);
    const handle = await open(temp, "w", 0o600);
    try {
      await handle.write(data);
      await handle.datasync();
    } finally {
      await handle.close();
    }
    await rename(temp, join(this.dir, name));
    this.syncDir();
  }

  async remove(name: string): Promise<void> {
    await this.closeHandle(name);
    await rm(join(this.dir, name), { force: true });
    this.syncDir();
  }

  async close(): Promise<void> {
    for (const name of [...this.handles.keys()]) await this.closeHandle(name);
  }

  private async closeHandle(name: string): Promise<void> {
    const handle = this.handles.get(name);
    this.handles.delete(name);
    await handle?.close();
  }

  // shell: a new or renamed file survives a power cut only once its directory entry is synced.
  private syncDir(): void {
    const fd = openSync(this.dir, "r");
    try {
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
  }
}

interface MemoryFile {
  synced: Uint8Array;
  /** Appended since the last datasync: lost or torn by a power cut. */
  pending: Uint8Array[];
}

/**
 * In-memory storage for the lab and the crash tests. `failAfterBytes` makes the supply die once that many
 * more appended bytes have been accepted (the append in progress throws POWER_LOST); `powerCut` then keeps
 * the synced bytes of every file plus a random prefix of what was pending, its last byte possibly garbled.
 */
export class MemoryJournalStorage implements JournalStorage {
  private readonly files = new Map<string, MemoryFile>();
  private bytesUntilFailure: number | null = null;
  private dead = false;
  datasyncs = 0;

  async list(): Promise<string[]> {
    this.check("list");
    return [...this.files.keys()].sort();
  }

  async read(name: string): Promise<Uint8Array> {
    this.check("read");
    const file = this.files.get(name);
    if (file === undefined) throw new EvidenceError("IO", `no file ${name}`);
    return concatBytes(file.synced, ...file.pending);
  }

  async append(name: string, data: Uint8Array): Promise<void> {
    this.check("append");
    let file = this.files.get(name);
    if (file === undefined) {
      file = { synced: new Uint8Array(0), pending: [] };
      this.files.set(name, file);
    }
    if (this.bytesUntilFailure !== null && data.length > this.bytesUntilFailure) {
      file.pending.push(data.slice(0, this.bytesUntilFailure));
      this.dead = true;
      throw new EvidenceError("POWER_LOST", `supply died while appending to ${name}`);
    }
    if (this.bytesUntilFailure !== null) this.bytesUntilFailure -= data.length;
    file.pending.push(data.slice());
  }

  async datasync(name: string): Promise<void> {
    this.check("datasync");
    const file = this.files.get(name);
    if (file === undefined) return;
    file.synced = concatBytes(file.synced, ...file.pending);
    file.pending = [];
    this.datasyncs++;
  }

  async truncate(name: string, length: number): Promise<void> {
    this.check("truncate");
    const file = this.files.get(name);
    if (file === undefined) throw new EvidenceError("IO", `no file ${name}`);
    file.synced = concatBytes(file.synced, ...file.pending).slice(0, length);
    file.pending = [];
  }

  async writeAtomic(name: string, data: Uint8Array): Promise<void> {
    this.check("writeAtomic");
    this.files.set(name, { synced: data.slice(), pending: [] });
  }

  async remove(name: string): Promise<void> {
    this.check("remove");
    this.files.delete(name);
  }

  async close(): Promise<void> {}

  /** The supply dies after `bytes` more appended bytes. */
  failAfterBytes(bytes: number): void {
    this.bytesUntilFailure = bytes;
  }

  /** Power returns: unsynced bytes are lost except a random prefix, whose last byte may be garbage. */
  powerCut(rng: Rng): void {
    for (const file of this.files.values()) {
      const pending = concatBytes(...file.pending);
      const kept = pending.length === 0 ? 0 : rng.nextInt(pending.length + 1);
      const survivor = pending.slice(0, kept);
      if (kept > 0 && rng.chance(0.5)) survivor[kept - 1] = rng.nextInt(256);
      file.synced = concatBytes(file.synced, survivor);
      file.pending = [];
    }
    this.bytesUntilFailure = null;
    this.dead = false;
  }

  totalBytes(): number {
    let total = 0;
    for (const file of this.files.values()) total += file.synced.length;
    return total;
  }

  private check(operation: string): void {
    if (this.dead)
      throw new EvidenceError("POWER_LOST", `storage is down; ${operation} refused until power returns`);
  }
}
