// The NVM device contract shared by the meter (flash/EEPROM/FRAM) and the lab's power-cut injection.
// NOR-flash semantics: erase sets a whole sector to 0xFF; program can only clear bits (1 → 0) and
// never crosses a page boundary in one call, so a torn write is at most one page wide.

export interface NvmGeometry {
  readonly sizeBytes: number;
  readonly pageBytes: number;
  readonly sectorBytes: number;
}

export interface NvmWear {
  /** Erase count per sector (endurance evidence). */
  readonly sectorErases: readonly number[];
  readonly pagePrograms: number;
  readonly bytesProgrammed: number;
  readonly syncs: number;
}

export interface NvmDevice {
  readonly geometry: NvmGeometry;
  read(offset: number, length: number): Uint8Array;
  /** Programs bytes within one page; throws EvidenceError NVM_RANGE / NVM_PROGRAM / POWER_LOST. */
  program(offset: number, data: Uint8Array): void;
  eraseSector(sectorIndex: number): void;
  sync(): void;
  wear(): NvmWear;
}

/** A slice of a device owned by one structure (billing sector, event log, calibration copies…). */
export interface NvmRegion {
  readonly offset: number;
  readonly length: number;
}
