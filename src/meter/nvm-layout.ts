import {
  ByteReader,
  crc32,
  EvidenceError,
  type NvmDevice,
  type NvmGeometry,
  type NvmRegion,
} from "../evidence/index.ts";

// The meter's NVM map. Billing registers live in their own sectors that no firmware operation touches;
// calibration, the boot configuration and the clock anchor are small dual-copy records (EEPROM-like:
// write the older copy, newest valid copy wins, so a power cut leaves the old or the new value); the
// sealed event log and the load-profile ring have their own regions; firmware banks A, B and the
// recovery (golden) bank are reserved for the firmware issue.

export const METER_PAGE_BYTES = 256;
export const METER_SECTOR_BYTES = 4096;

export interface MeterNvmLayout {
  readonly geometry: NvmGeometry;
  readonly bootConfig: NvmRegion;
  readonly billing: NvmRegion;
  readonly calibration: NvmRegion;
  readonly clockAnchor: NvmRegion;
  readonly eventLog: NvmRegion;
  readonly loadProfile: NvmRegion;
  readonly firmwareBankA: NvmRegion;
  readonly firmwareBankB: NvmRegion;
  /** Golden images: the application in the first half, the comms stack in the second. Locked. */
  readonly firmwareRecovery: NvmRegion;
  readonly commsBankA: NvmRegion;
  readonly commsBankB: NvmRegion;
}

export interface LayoutOptions {
  readonly eventLogSectors?: number;
  readonly loadProfileSectors?: number;
  readonly firmwareBankSectors?: number;
}

export function meterNvmLayout(options: LayoutOptions = {}): MeterNvmLayout {
  const sector = METER_SECTOR_BYTES;
  let next = 0;
  const take = (sectors: number): NvmRegion => {
    const region = { offset: next * sector, length: sectors * sector };
    next += sectors;
    return region;
  };
  const bootConfig = take(2);
  const billing = take(2);
  const calibration = take(2);
  const clockAnchor = take(2);
  const eventLog = take(options.eventLogSectors ?? 16);
  const loadProfile = take(options.loadProfileSectors ?? 4);
  const bankSectors = options.firmwareBankSectors ?? 4;
  const firmwareBankA = take(bankSectors);
  const firmwareBankB = take(bankSectors);
  const firmwareRecovery = take(bankSectors);
  const commsBankA = take(bankSectors / 2);
  const commsBankB = take(bankSectors / 2);
  return {
    geometry: { sizeBytes: next * sector, pageBytes: METER_PAGE_BYTES, sectorBytes: sector },
    bootConfig,
    billing,
    calibration,
    clockAnchor,
    eventLog,
    loadProfile,
    firmwareBankA,
    firmwareBankB,
    firmwareRecovery,
    commsBankA,
    commsBankB,
  };
}

const COPY_MAGIC = 0xd2;
const COPY_HEADER_BYTES = 1 + 4 + 2;
/** Bound on a dual-copy payload: one page minus header and CRC. */
export const DUAL_COPY_PAYLOAD_BYTES_MAX = METER_PAGE_BYTES - COPY_HEADER_BYTES - 4;

/**
 * A small record kept in two sectors. Each write erases the sector not holding the newest copy and
 * programs magic · generation · length · payload · CRC there; reads pick the valid copy with the highest
 * generation. A cut at any byte leaves the previous value readable.
 */
export class DualCopyRecord {
  private generation = 0;
  private newestSector = -1;

  constructor(
    private readonly nvm: NvmDevice,
    private readonly region: NvmRegion,
  ) {
    if (region.length !== 2 * nvm.geometry.sectorBytes) {
      throw new EvidenceError("NVM_RANGE", "a dual-copy record needs exactly two sectors");
    }
  }

  /** The newest intact payload, or null when neither copy is valid. */
  read(): Uint8Array | null {
    let best: { generation: number; payload: Uint8Array; sector: number } | null = null;
    for (let copy = 0; copy < 2; copy++) {
      const at = this.region.offset + copy * this.nvm.geometry.sectorBytes;
      const page = this.nvm.read(at, METER_PAGE_BYTES);
      if (page[0] !== COPY_MAGIC) continue;
      const view = new DataView(page.buffer, page.byteOffset, page.byteLength);
      const generation = view.getUint32(1);
      const length = view.getUint16(5);
      if (length > DUAL_COPY_PAYLOAD_BYTES_MAX) continue;
      const end = COPY_HEADER_BYTES + length;
      if (crc32(page.subarray(0, end)) !== view.getUint32(end)) continue;
      if (best === null || generation > best.generation) {
        best = { generation, payload: page.slice(COPY_HEADER_BYTES, end), sector: copy };
      }
    }
    if (best === null) return null;
    this.generation = best.generation;
    this.newestSector = best.sector;
    return best.payload;
  }

  write(payload: Uint8Array): void {
    if (payload.length > DUAL_COPY_PAYLOAD_BYTES_MAX) {
      throw new EvidenceError(
        "BAD_FIELD",
        `dual-copy payload of ${payload.length} bytes exceeds ${DUAL_COPY_PAYLOAD_BYTES_MAX}`,
      );
    }
    if (this.newestSector < 0) this.read();
    const target = this.newestSector === 0 ? 1 : 0;
    const sectorIndex = this.region.offset / this.nvm.geometry.sectorBytes + target;
    const page = new Uint8Array(COPY_HEADER_BYTES + payload.length + 4);
    const view = new DataView(page.buffer);
    page[0] = COPY_MAGIC;
    view.setUint32(1, this.generation + 1);
    view.setUint16(5, payload.length);
    page.set(payload, COPY_HEADER_BYTES);
    view.setUint32(
      COPY_HEADER_BYTES + payload.length,
      crc32(page.subarray(0, COPY_HEADER_BYTES + payload.length)),
    );
    this.nvm.eraseSector(sectorIndex);
    this.nvm.program(this.region.offset + target * this.nvm.geometry.sectorBytes, page);
    this.nvm.sync();
    this.generation++;
    this.newestSector = target;
  }
}

/** Fixed-layout payload helpers: a list of safe integers, each 8 bytes. */
export function encodeIntegers(values: readonly number[]): Uint8Array {
  const out = new Uint8Array(values.length * 8);
  const view = new DataView(out.buffer);
  values.forEach((value, i) => {
    view.setBigInt64(i * 8, BigInt(Math.trunc(value)));
  });
  return out;
}

export function decodeIntegers(payload: Uint8Array, count: number): number[] | null {
  if (payload.length !== count * 8) return null;
  const r = new ByteReader(payload, "integers");
  const out: number[] = [];
  for (let i = 0; i < count; i++) out.push(r.i64("value"));
  return out;
}
