// shell: virtual meters in real time — the wall clock, timers, files and signals live here only.
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { FileNvm, FileSecureElement, MemorySecureElement, type SecureElement } from "../../evidence/index.ts";
import { HouseholdLoad } from "../load.ts";
import { Meter } from "../meter.ts";
import { meterNvmLayout } from "../nvm-layout.ts";

export const METER_STEP_MS = 1000;

export interface FleetOptions {
  readonly baseId: string;
  readonly count: number;
  /** Keep NVM images and secure elements here; in memory when absent. */
  readonly dataDir?: string;
  readonly pvShare?: number;
}

export interface RunningFleet {
  readonly meters: readonly Meter[];
  stop(): void;
  statusLine(): string;
}

export function meterIdAt(baseId: string, index: number, count: number): string {
  return count === 1 ? baseId : `${baseId}-${String(index + 1).padStart(4, "0")}`;
}

export function startFleet(options: FleetOptions): RunningFleet {
  const layout = meterNvmLayout();
  const startMs = Date.now();
  const meters: Meter[] = [];
  const loads: HouseholdLoad[] = [];
  for (let i = 0; i < options.count; i++) {
    const id = meterIdAt(options.baseId, i, options.count);
    let secureElement: SecureElement;
    let nvm: FileNvm | undefined;
    if (options.dataDir !== undefined) {
      const dir = join(options.dataDir, id);
      mkdirSync(dir, { recursive: true });
      secureElement = FileSecureElement.open(join(dir, "se"), id);
      nvm = FileNvm.open(join(dir, "nvm.bin"), layout.geometry);
    } else {
      secureElement = new MemorySecureElement(id);
    }
    meters.push(
      Meter.open(
        { id, secureElement, layout, ...(nvm === undefined ? {} : { nvm }), factoryTimeMs: startMs },
        startMs,
      ),
    );
    loads.push(
      new HouseholdLoad({ seed: id, pvPeakW: i % Math.round(1 / (options.pvShare ?? 0.2)) === 0 ? 3000 : 0 }),
    );
  }
  const timer = setInterval(() => {
    const now = Date.now();
    const secondOfDay = Math.floor((now % 86_400_000) / 1000);
    meters.forEach((meter, i) => {
      meter.step(now, loads[i]!.at(secondOfDay));
    });
  }, METER_STEP_MS);
  return {
    meters,
    stop() {
      clearInterval(timer);
      const now = Date.now();
      for (const meter of meters) meter.powerFail(now); // commit-only: billing and clock anchor persisted
    },
    statusLine() {
      const now = Date.now();
      let importWh = 0;
      let exportWh = 0;
      let events = 0;
      let tamper = 0;
      for (const meter of meters) {
        const s = meter.status(now);
        importWh += s.registers.importActiveWh;
        exportWh += s.registers.exportActiveWh;
        events += s.eventSeq;
        tamper += s.tamper.length;
      }
      return `${meters.length} meters  import ${(importWh / 1000).toFixed(3)} kWh  export ${(exportWh / 1000).toFixed(3)} kWh  sealed events ${events}  active tamper ${tamper}`;
    },
  };
}
