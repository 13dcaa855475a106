import {
  crc32,
  type NvmDevice,
  type NvmRegion,
  TIME_QUALITIES,
  type TimeQuality,
} from "../evidence/index.ts";

// The load-profile ring (seed 002 H2-5: "flash: buffered commit + wear-aware ring"): fixed 32-byte
// entries with seq and CRC; the oldest sector is erased when the ring wraps. A torn entry fails its CRC
// and is skipped; seq orders what survives.

const ENTRY_BYTES = 32;
const ENTRY_MAGIC = 0x4c;

export interface LoadProfileEntry {
  readonly seq: number;
  readonly timestampMs: number;
  readonly importWh: number;
  readonly exportWh: number;
  readonly timeQuality: TimeQuality;
}

export class LoadProfileRing {
  private readonly slots: number;
  private readonly slotsPerSector: number;
  private cursor = 0;
  private nextSeq = 1;
  private cache: LoadProfileEntry[] | null = null;
  /** Slot of the newest entry found by the last scan (-1 when empty). */
  private lastSlot = -1;

  constructor(
    private readonly nvm: NvmDevice,
    private readonly region: NvmRegion,
  ) {
    this.slotsPerSector = nvm.geometry.sectorBytes / ENTRY_BYTES;
    this.slots = region.length / ENTRY_BYTES;
    const entries = this.scan();
    const newest = entries.at(-1);
    if (newest !== undefined) {
      this.nextSeq = newest.seq + 1;
      this.cursor = (this.lastSlot + 1) % this.slots;
    }
  }

  entries(): LoadProfileEntry[] {
    this.cache ??= this.scan();
    return this.cache;
  }

  append(entry: Omit<LoadProfileEntry, "seq">): LoadProfileEntry {
    if (this.cursor % this.slotsPerSector === 0) {
      this.nvm.eraseSector(
        this.region.offset / this.nvm.geometry.sectorBytes + this.cursor / this.slotsPerSector,
      );
    }
    const full = { ...entry, seq: this.nextSeq };
    const bytes = new Uint8Array(ENTRY_BYTES);
    const view = new DataView(bytes.buffer);
    bytes[0] = ENTRY_MAGIC;
    bytes[1] = TIME_QUALITIES.indexOf(entry.timeQuality);
    view.setUint32(2, full.seq);
    view.setBigInt64(6, BigInt(entry.timestampMs));
    view.setBigInt64(14, BigInt(entry.importWh));
    view.setUint32(22, entry.exportWh >>> 0);
    view.setUint32(ENTRY_BYTES - 4, crc32(bytes.subarray(0, ENTRY_BYTES - 4)));
    this.nvm.program(this.region.offset + this.cursor * ENTRY_BYTES, bytes);
    this.nvm.sync();
    this.cursor = (this.cursor + 1) % this.slots;
    this.nextSeq++;
    this.cache = null;
    return full;
  }

  private scan(): LoadProfileEntry[] {
    const data = this.nvm.read(this.region.offset, this.region.length);
    const view = new DataView(data.buffer, data.byteOffset, data.byteLength);
    const out: (LoadProfileEntry & { slot: number })[] = [];
    for (let slot = 0; slot < this.slots; slot++) {
      const at = slot * ENTRY_BYTES;
      if (data[at] !== ENTRY_MAGIC) continue;
      if (crc32(data.subarray(at, at + ENTRY_BYTES - 4)) !== view.getUint32(at + ENTRY_BYTES - 4)) continue;
      const timeQuality = TIME_QUALITIES[data[at + 1]!];
      if (timeQuality === undefined) continue;
      out.push({
        slot,
        seq: view.getUint32(at + 2),
        timestampMs: Number(view.getBigInt64(at + 6)),
        importWh: Number(view.getBigInt64(at + 14)),
        exportWh: view.getUint32(at + 22),
        timeQuality,
      });
    }
    out.sort((a, b) => a.seq - b.seq);
    this.lastSlot = out.at(-1)?.slot ?? -1;
    return out.map(({ slot: _slot, ...entry }) => entry);
  }
}
