import { closeSync, fdatasyncSync, fstatSync, openSync, readSync, writeSync } from "node:fs";
import { EvidenceError } from "./errors.ts";
import type { NvmDevice, NvmGeometry, NvmRegion, NvmWear } from "./nvm-types.ts";
import type { Rng } from "./random.ts";

// NOR-flash device models behind the NvmDevice contract (nvm-types.ts): erase sets a sector to 0xFF,
// program only clears bits (1 → 0) inside one page. MemoryNvm adds the faults the lab and the crash tests
// need: power cuts mid-program (torn page write) and mid-erase (partially erased sector), and transient
// bit flips on read (seed 003 H2-5 "wear-out ghost errors"). FileNvm keeps the same semantics on a file
// for the `amiproof meter` runtime.

export const NVM_ERASED_BYTE = 0xff;
/** Bound on one device: the model keeps it all in memory (or one file), so keep it sane. */
export const NVM_SIZE_BYTES_MAX = 256 * 1024 * 1024;

export function checkNvmGeometry(geometry: NvmGeometry): void {
  const { sizeBytes, pageBytes, sectorBytes } = geometry;
  const positive = (n: number) => Number.isSafeInteger(n) && n > 0;
  if (!positive(sizeBytes) || !positive(pageBytes) || !positive(sectorBytes)) {
    throw new EvidenceError(
      "NVM_RANGE",
      `geometry sizes must be positive integers, got ${JSON.stringify(geometry)}`,
    );
  }
  if (sectorBytes % pageBytes !== 0 || sizeBytes % sectorBytes !== 0) {
    throw new EvidenceError(
      "NVM_RANGE",
      `a sector must hold whole pages and the device whole sectors, got page ${pageBytes}, sector ${sectorBytes}, size ${sizeBytes}`,
    );
  }
  if (sizeBytes > NVM_SIZE_BYTES_MAX) {
    throw new EvidenceError("NVM_RANGE", `device of ${sizeBytes} bytes exceeds ${NVM_SIZE_BYTES_MAX}`);
  }
}

/** A region must start and end on sector boundaries: erasing it never touches a neighbour's data. */
export function checkNvmRegion(geometry: NvmGeometry, region: NvmRegion): void {
  const { offset, length } = region;
  if (
    !Number.isSafeInteger(offset) ||
    !Number.isSafeInteger(length) ||
    offset < 0 ||
    length <= 0 ||
    offset + length > geometry.sizeBytes
  ) {
    throw new EvidenceError(
      "NVM_RANGE",
      `region ${offset}+${length} is outside the ${geometry.sizeBytes}-byte device`,
    );
  }
  if (offset % geometry.sectorBytes !== 0 || length % geometry.sectorBytes !== 0) {
    throw new EvidenceError(
      "NVM_RANGE",
      `region ${offset}+${length} is not aligned to ${geometry.sectorBytes}-byte sectors`,
    );
  }
}

function checkRange(geometry: NvmGeometry, offset: number, length: number, what: string): void {
  if (
    !Number.isSafeInteger(offset) ||
    !Number.isSafeInteger(length) ||
    offset < 0 ||
    length < 0 ||
    offset + length > geometry.sizeBytes
  ) {
    throw new EvidenceError(
      "NVM_RANGE",
      `${what} of ${length} bytes at ${offset} is outside the ${geometry.sizeBytes}-byte device`,
    );
  }
}

function checkProgram(geometry: NvmGeometry, offset: number, data: Uint8Array, current: Uint8Array): void {
  checkRange(geometry, offset, data.length, "program");
  const page = Math.floor(offset / geometry.pageBytes);
  if (data.length > 0 && Math.floor((offset + data.length - 1) / geometry.pageBytes) !== page) {
    throw new EvidenceError(
      "NVM_RANGE",
      `program of ${data.length} bytes at ${offset} crosses the ${geometry.pageBytes}-byte page boundary`,
    );
  }
  for (let i = 0; i < data.length; i++) {
    const want = data[i]!;
    // NOR: programming can only clear bits; setting one back to 1 needs a sector erase.
    if ((current[i]! & want) !== want) {
      throw new EvidenceError(
        "NVM_PROGRAM",
        `byte holds 0x${current[i]!.toString(16).padStart(2, "0")}, cannot program 0x${want.toString(16).padStart(2, "0")} without an erase`,
        `offset ${offset + i}`,
      );
    }
  }
}

function checkSector(geometry: NvmGeometry, sectorIndex: number): void {
  const sectors = geometry.sizeBytes / geometry.sectorBytes;
  if (!Number.isSafeInteger(sectorIndex) || sectorIndex < 0 || sectorIndex >= sectors) {
    throw new EvidenceError("NVM_RANGE", `sector ${sectorIndex} is outside 0..${sectors - 1}`);
  }
}

class WearCounters {
  readonly sectorErases: number[];
  pagePrograms = 0;
  bytesProgrammed = 0;
  syncs = 0;

  constructor(geometry: NvmGeometry) {
    this.sectorErases = new Array<number>(geometry.sizeBytes / geometry.sectorBytes).fill(0);
  }

  snapshot(): NvmWear {
    return {
      sectorErases: this.sectorErases.slice(),
      pagePrograms: this.pagePrograms,
      bytesProgrammed: this.bytesProgrammed,
      syncs: this.syncs,
    };
  }
}

/**
 * When the simulated supply dies. `afterBytes`: that many more programmed bytes land, the next one is
 * torn (a torn page write). `afterOps`: that many more program/erase operations complete, the next one is
 * cut part-way (a random prefix of a program lands; an erase leaves the sector partially erased).
 * If both are set, whichever comes first. Reads and syncs never trip a cut.
 */
export interface PowerCutPlan {
  readonly afterBytes?: number;
  readonly afterOps?: number;
  /**
   * The byte being programmed at the cut keeps a random subset of the bits it was clearing, as a real
   * cell does when the charge pump dies mid-pulse. Default true; false leaves it untouched.
   */
  readonly tornByteNoise?: boolean;
}

export interface MemoryNvmOptions {
  /** Source of every fault decision: same seed, same faults. Required for cuts with noise and for flips. */
  readonly rng?: Rng;
  /** Probability that a bit read flips (transient, not stored): ghost errors. Default 0. */
  readonly readBitFlipRate?: number;
}

export interface MemoryNvmFaultStats {
  readonly powerCuts: number;
  readonly readBitFlips: number;
}

/** The in-memory NOR device of the lab and the crash tests. Programs are durable on return (no cache). */
export class MemoryNvm implements NvmDevice {
  readonly geometry: NvmGeometry;
  private readonly cells: Uint8Array;
  private readonly counters: WearCounters;
  private readonly rng: Rng | undefined;
  private readBitFlipRate: number;
  private isPowered = true;
  private bytesUntilCut: number | null = null;
  private opsUntilCut: number | null = null;
  private tornByteNoise = true;
  private cuts = 0;
  private flips = 0;

  constructor(geometry: NvmGeometry, options: MemoryNvmOptions = {}) {
    checkNvmGeometry(geometry);
    this.geometry = { ...geometry };
    this.cells = new Uint8Array(geometry.sizeBytes).fill(NVM_ERASED_BYTE);
    this.counters = new WearCounters(geometry);
    this.rng = options.rng;
    this.readBitFlipRate = 0;
    this.setReadBitFlipRate(options.readBitFlipRate ?? 0);
  }

  get powered(): boolean {
    return this.isPowered;
  }

  faultStats(): MemoryNvmFaultStats {
    return { powerCuts: this.cuts, readBitFlips: this.flips };
  }

  setReadBitFlipRate(rate: number): void {
    if (!(rate >= 0 && rate < 1)) throw new RangeError(`bit flip rate must be in [0, 1), got ${rate}`);
    if (rate > 0 && this.rng === undefined) throw new RangeError("bit flips need an rng");
    this.readBitFlipRate = rate;
  }

  armPowerCut(plan: PowerCutPlan): void {
    const count = (n: number | undefined, what: string): number | null => {
      if (n === undefined) return null;
      if (!Number.isSafeInteger(n) || n < 0) throw new RangeError(`${what} must be a non-negative integer`);
      return n;
    };
    this.bytesUntilCut = count(plan.afterBytes, "afterBytes");
    this.opsUntilCut = count(plan.afterOps, "afterOps");
    if (this.opsUntilCut !== null && this.rng === undefined) {
      throw new RangeError("a cut after N operations needs an rng to choose how far the operation got");
    }
    this.tornByteNoise = (plan.tornByteNoise ?? true) && this.rng !== undefined;
  }

  disarmPowerCut(): void {
    this.bytesUntilCut = null;
    this.opsUntilCut = null;
  }

  get powerCutArmed(): boolean {
    return this.bytesUntilCut !== null || this.opsUntilCut !== null;
  }

  /** The supply dies now, between operations. */
  powerOff(): void {
    if (this.isPowered) this.cut();
  }

  /** Power returns: the cells keep whatever the cut left; a pending plan is dropped. */
  powerOn(): void {
    this.isPowered = true;
    this.disarmPowerCut();
  }

  read(offset: number, length: number): Uint8Array {
    this.requirePower("read");
    checkRange(this.geometry, offset, length, "read");
    const out = this.cells.slice(offset, offset + length);
    if (this.readBitFlipRate > 0) this.flipBits(out);
    return out;
  }

  program(offset: number, data: Uint8Array): void {
    this.requirePower("program");
    checkProgram(this.geometry, offset, data, this.cells.subarray(offset, offset + data.length));
    let landed = data.length;
    let cut = false;
    if (this.opsUntilCut === 0) {
      landed = data.length === 0 ? 0 : this.rng!.nextInt(data.length);
      cut = true;
    }
    if (this.bytesUntilCut !== null && this.bytesUntilCut < landed) {
      landed = this.bytesUntilCut;
      cut = true;
    }
    if (!cut) {
      if (this.opsUntilCut !== null) this.opsUntilCut--;
      if (this.bytesUntilCut !== null) this.bytesUntilCut -= landed;
    }
    this.cells.set(data.subarray(0, landed), offset);
    this.counters.bytesProgrammed += landed;
    this.counters.pagePrograms++;
    if (!cut) return;
    if (landed < data.length && this.tornByteNoise && this.rng !== undefined) {
      const at = offset + landed;
      const clearing = this.cells[at]! & ~data[landed]! & 0xff;
      // Some of the bits being cleared made it, some did not.
      this.cells[at] = this.cells[at]! & ~(clearing & this.rng.nextU32()) & 0xff;
    }
    this.cut();
    throw new EvidenceError(
      "POWER_LOST",
      `power cut while programming ${data.length} bytes: ${landed} landed`,
      `offset ${offset}`,
    );
  }

  eraseSector(sectorIndex: number): void {
    this.requirePower("erase");
    checkSector(this.geometry, sectorIndex);
    const start = sectorIndex * this.geometry.sectorBytes;
    const sector = this.cells.subarray(start, start + this.geometry.sectorBytes);
    if (this.opsUntilCut === 0) {
      // A cell mid-erase holds neither the old value nor 0xFF reliably: leave a mix of erased bytes,
      // untouched bytes (whole records may survive) and half-erased bytes (bits only go 0 → 1 in an erase).
      const rng = this.rng!;
      const progress = rng.nextFloat();
      for (let i = 0; i < sector.length; i++) {
        if (rng.nextFloat() < progress) sector[i] = NVM_ERASED_BYTE;
        else if (rng.chance(0.5)) sector[i] = sector[i]! | (rng.nextU32() & 0xff);
      }
      this.counters.sectorErases[sectorIndex]!++;
      this.cut();
      throw new EvidenceError("POWER_LOST", "power cut while erasing", `sector ${sectorIndex}`);
    }
    if (this.opsUntilCut !== null) this.opsUntilCut--;
    sector.fill(NVM_ERASED_BYTE);
    this.counters.sectorErases[sectorIndex]!++;
  }

  sync(): void {
    this.requirePower("sync");
    this.counters.syncs++;
  }

  wear(): NvmWear {
    return this.counters.snapshot();
  }

  /** A copy of every cell, for tests and forensic dumps (no faults applied). */
  image(): Uint8Array {
    return this.cells.slice();
  }

  /**
   * Raw overwrite ignoring NOR rules and power: an attacker with a programmer clip, or a test editing
   * evidence in place. Not counted as wear.
   */
  tamper(offset: number, data: Uint8Array): void {
    checkRange(this.geometry, offset, data.length, "tamper");
    this.cells.set(data, offset);
  }

  private requirePower(operation: string): void {
    if (!this.isPowered) {
      throw new EvidenceError("POWER_LOST", `device is powered off; ${operation} refused until powerOn()`);
    }
  }

  private cut(): void {
    this.isPowered = false;
    this.cuts++;
    this.disarmPowerCut();
  }

  private flipBits(out: Uint8Array): void {
    const rng = this.rng!;
    const bits = out.length * 8;
    const logKeep = Math.log1p(-this.readBitFlipRate);
    // Geometric skips between flips: O(flips) random draws instead of one per bit.
    let position = -1;
    for (;;) {
      position += 1 + Math.floor(Math.log1p(-rng.nextFloat()) / logKeep);
      if (!(position < bits)) return;
      const byte = position >>> 3;
      out[byte] = out[byte]! ^ (1 << (position & 7));
      this.flips++;
    }
  }
}

/**
 * NOR semantics on a file, for the `amiproof meter` runtime: one file per device, created erased.
 * sync() is fdatasync, the durability point the ring log waits for between data and commit marker.
 */
export class FileNvm implements NvmDevice {
  private readonly counters: WearCounters;
  private fd: number | null;

  private constructor(
    readonly path: string,
    readonly geometry: NvmGeometry,
    fd: number,
  ) {
    this.fd = fd;
    this.counters = new WearCounters(geometry);
  }

  /** Opens the device file, creating it erased (all 0xFF) when missing; refuses a file of another size. */
  static open(path: string, geometry: NvmGeometry): FileNvm {
    checkNvmGeometry(geometry);
    // shell: FileNvm is the file-backed device the meter runtime injects; the ring log never sees the file.
    let fd: number;
    try {
      fd = openSync(path, "a+");
      closeSync(fd);
      fd = openSync(path, "r+");
    } catch (error) {
      throw new EvidenceError("IO", `cannot open ${path}: ${(error as Error).message}`);
    }
    const device = new FileNvm(path, { ...geometry }, fd);
    try {
      const size = fstatSync(fd).size;
      if (size === 0) {
        const erased = new Uint8Array(geometry.sectorBytes).fill(NVM_ERASED_BYTE);
        for (let at = 0; at < geometry.sizeBytes; at += geometry.sectorBytes) device.writeAt(at, erased);
        fdatasyncSync(fd);
      } else if (size !== geometry.sizeBytes) {
        throw new EvidenceError(
          "NVM_RANGE",
          `${path} holds ${size} bytes, the device geometry needs ${geometry.sizeBytes}`,
        );
      }
    } catch (error) {
      device.close();
      throw error;
    }
    return device;
  }

  read(offset: number, length: number): Uint8Array {
    checkRange(this.geometry, offset, length, "read");
    return this.readAt(offset, length);
  }

  program(offset: number, data: Uint8Array): void {
    checkRange(this.geometry, offset, data.length, "program");
    checkProgram(this.geometry, offset, data, this.readAt(offset, data.length));
    this.writeAt(offset, data);
    this.counters.bytesProgrammed += data.length;
    this.counters.pagePrograms++;
  }

  eraseSector(sectorIndex: number): void {
    checkSector(this.geometry, sectorIndex);
    this.writeAt(
      sectorIndex * this.geometry.sectorBytes,
      new Uint8Array(this.geometry.sectorBytes).fill(NVM_ERASED_BYTE),
    );
    this.counters.sectorErases[sectorIndex]!++;
  }

  sync(): void {
    try {
      fdatasyncSync(this.openFd());
    } catch (error) {
      throw ioError(error, this.path, "fdatasync");
    }
    this.counters.syncs++;
  }

  /** Wear since this process opened the file (the counters are not persisted). */
  wear(): NvmWear {
    return this.counters.snapshot();
  }

  close(): void {
    if (this.fd !== null) {
      closeSync(this.fd);
      this.fd = null;
    }
  }

  private openFd(): number {
    if (this.fd === null) throw new EvidenceError("IO", `${this.path} is closed`);
    return this.fd;
  }

  private readAt(offset: number, length: number): Uint8Array {
    const out = new Uint8Array(length);
    try {
      let done = 0;
      while (done < length) {
        const n = readSync(this.openFd(), out, done, length - done, offset + done);
        if (n === 0) throw new EvidenceError("IO", `${this.path} ended at ${offset + done}`);
        done += n;
      }
    } catch (error) {
      throw ioError(error, this.path, "read");
    }
    return out;
  }

  private writeAt(offset: number, data: Uint8Array): void {
    try {
      let done = 0;
      while (done < data.length) {
        done += writeSync(this.openFd(), data, done, data.length - done, offset + done);
      }
    } catch (error) {
      throw ioError(error, this.path, "write");
    }
  }
}

function ioError(error: unknown, path: string, operation: string): EvidenceError {
  if (error instanceof EvidenceError) return error;
  return new EvidenceError("IO", `${operation} failed: ${(error as Error).message}`, path);
}
