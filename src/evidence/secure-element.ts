import { createPrivateKey } from "node:crypto";
import {
  chmodSync,
  closeSync,
  existsSync,
  fsyncSync,
  mkdirSync,
  openSync,
  readFileSync,
  renameSync,
  writeSync,
} from "node:fs";
import { join } from "node:path";
import {
  generateP256KeyPair,
  type P256KeyPair,
  p256KeyPairFromSeed,
  p256Sign,
  rawPublicKey,
} from "./crypto.ts";
import { EvidenceError } from "./errors.ts";

/**
 * What a key is for. A key signs for exactly one purpose, so a batch signature can never be replayed
 * as an event seal (seed 003 H2-6: keys and operations live in the secure domain, by purpose).
 */
export type KeyPurpose =
  | "event_seal"
  | "batch_sign"
  | "alert_sign"
  | "audit_sign"
  | "firmware_sign"
  | "command_sign";

export const KEY_PURPOSES: readonly KeyPurpose[] = [
  "event_seal",
  "batch_sign",
  "alert_sign",
  "audit_sign",
  "firmware_sign",
  "command_sign",
];

/** Keys never leave it: callers get signatures, public keys and counters, never private material. */
export interface SecureElement {
  readonly id: string;
  publicKey(purpose: KeyPurpose): Uint8Array;
  /** ECDSA P-256 over SHA-256(message), raw r‖s (64 bytes). */
  sign(purpose: KeyPurpose, message: Uint8Array): Uint8Array;
  /** Current value of a named monotonic counter (0 when never incremented). */
  readCounter(name: string): number;
  /** Increments durably and returns the new value; a counter never decreases. */
  incrementCounter(name: string): number;
  /** Raises a counter to at least `value` (anti-rollback floors); refuses to lower it. */
  advanceCounter(name: string, value: number): number;
  /** key_op_audit_cnt: every signature and counter change is counted. */
  readonly keyOpAuditCount: number;
}

abstract class BaseSecureElement implements SecureElement {
  protected readonly keys = new Map<KeyPurpose, P256KeyPair>();
  protected readonly counters = new Map<string, number>();
  protected auditCount = 0;

  constructor(readonly id: string) {}

  protected abstract keyFor(purpose: KeyPurpose): P256KeyPair;
  protected abstract persistCounters(): void;

  get keyOpAuditCount(): number {
    return this.auditCount;
  }

  publicKey(purpose: KeyPurpose): Uint8Array {
    return this.keyFor(purpose).publicKey.slice();
  }

  sign(purpose: KeyPurpose, message: Uint8Array): Uint8Array {
    const key = this.keyFor(purpose);
    this.auditCount++;
    return p256Sign(key.privateKey, message);
  }

  readCounter(name: string): number {
    return this.counters.get(name) ?? 0;
  }

  incrementCounter(name: string): number {
    return this.setCounter(name, this.readCounter(name) + 1);
  }

  advanceCounter(name: string, value: number): number {
    const current = this.readCounter(name);
    if (!Number.isSafeInteger(value) || value < current) {
      throw new EvidenceError(
        "COUNTER_DECREASE",
        `counter ${name} is ${current}; refusing to set it to ${value}`,
        this.id,
      );
    }
    return value === current ? current : this.setCounter(name, value);
  }

  private setCounter(name: string, value: number): number {
    this.counters.set(name, value);
    this.auditCount++;
    this.persistCounters();
    return value;
  }
}

/** In-memory element for tests and the lab; keys derive from the seed, so a lab run is reproducible. */
export class MemorySecureElement extends BaseSecureElement {
  constructor(
    id: string,
    private readonly seed?: Uint8Array,
  ) {
    super(id);
  }

  protected keyFor(purpose: KeyPurpose): P256KeyPair {
    let key = this.keys.get(purpose);
    if (key === undefined) {
      key =
        this.seed === undefined
          ? generateP256KeyPair()
          : p256KeyPairFromSeed(
              new TextEncoder().encode(`${Buffer.from(this.seed).toString("hex")}/${this.id}/${purpose}`),
            );
      this.keys.set(purpose, key);
    }
    return key;
  }

  protected persistCounters(): void {}
}

interface FileKeys {
  format: "amiproof-secure-element";
  version: 1;
  id: string;
  keys: Partial<Record<KeyPurpose, string>>; // PKCS#8 PEM
}

/**
 * File-backed element for daemons on a gateway: keys.json (mode 0600) and counters.json, both written
 * with write-temp → fsync → rename so a power cut leaves the old or the new file, never a torn one.
 */
export class FileSecureElement extends BaseSecureElement {
  private constructor(
    id: string,
    private readonly dir: string,
  ) {
    super(id);
  }

  static open(dir: string, id: string): FileSecureElement {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    const element = new FileSecureElement(id, dir);
    const keysPath = join(dir, "keys.json");
    if (existsSync(keysPath)) {
      const stored = readJson(keysPath) as FileKeys;
      if (stored.format !== "amiproof-secure-element" || stored.version !== 1) {
        throw new EvidenceError("BAD_VERSION", `${keysPath} is not an amiproof secure element v1`);
      }
      if (stored.id !== id) {
        throw new EvidenceError("BAD_KEY", `${keysPath} belongs to ${stored.id}, not ${id}`);
      }
      for (const [purpose, pem] of Object.entries(stored.keys) as [KeyPurpose, string][]) {
        const privateKey = createPrivateKey(pem);
        element.keys.set(purpose, { privateKey, publicKey: rawPublicKey(privateKey) });
      }
    }
    const countersPath = join(dir, "counters.json");
    if (existsSync(countersPath)) {
      const stored = readJson(countersPath) as { counters: Record<string, number>; key_op_audit_cnt: number };
      for (const [name, value] of Object.entries(stored.counters)) element.counters.set(name, value);
      element.auditCount = stored.key_op_audit_cnt;
    }
    return element;
  }

  protected keyFor(purpose: KeyPurpose): P256KeyPair {
    let key = this.keys.get(purpose);
    if (key === undefined) {
      key = generateP256KeyPair();
      this.keys.set(purpose, key);
      const stored: FileKeys = { format: "amiproof-secure-element", version: 1, id: this.id, keys: {} };
      for (const [name, pair] of this.keys) {
        stored.keys[name] = pair.privateKey.export({ format: "pem", type: "pkcs8" }).toString();
      }
      writeFileAtomic(join(this.dir, "keys.json"), JSON.stringify(stored, null, 2), 0o600);
    }
    return key;
  }

  protected persistCounters(): void {
    writeFileAtomic(
      join(this.dir, "counters.json"),
      JSON.stringify({ counters: Object.fromEntries(this.counters), key_op_audit_cnt: this.auditCount }),
      0o600,
    );
  }

  /** Persists key_op_audit_cnt; daemons call it on shutdown and periodically (a sign is too hot to fsync). */
  flushAudit(): void {
    this.persistCounters();
  }
}

function readJson(path: string): unknown {
  try {
    return JSON.parse(readFileSync(path, "utf8"));
  } catch (error) {
    throw new EvidenceError("IO", `cannot read ${path}: ${(error as Error).message}`);
  }
}

export function writeFileAtomic(path: string, content: string | Uint8Array, mode = 0o644): void {
  const temp = `${path}.tmp`;
  const fd = openSync(temp, "w", mode);
  try {
    writeSync(fd, typeof content === "string" ? Buffer.from(content) : content);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  chmodSync(temp, mode);
  renameSync(temp, path);
  const dirFd = openSync(join(path, ".."), "r");
  try {
    fsyncSync(dirFd);
  } finally {
    closeSync(dirFd);
  }
}
