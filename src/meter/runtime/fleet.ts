// shell: virtual meters in real time — the wall clock, timers, files and signals live here only.
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { type ListeningServer, listenDlms } from "../../dlms/index.ts";
import { FileNvm, FileSecureElement, MemorySecureElement, type SecureElement } from "../../evidence/index.ts";
import { meterObjectModel } from "../cosem.ts";
import { HouseholdLoad } from "../load.ts";
import { Meter } from "../meter.ts";
import { meterNvmLayout } from "../nvm-layout.ts";

export const METER_STEP_MS = 1000;

export interface FleetOptions {
  /** Serve each meter's COSEM model over DLMS/TCP on consecutive ports from this one. */
  readonly listenPort?: number;
  /** LLS password of the management client (wPort 1). */
  readonly password?: string;
  readonly baseId: string;
  readonly count: number;
  /** Keep NVM images and secure elements here; in memory when absent. */
  readonly dataDir?: string;
  readonly pvShare?: number;
}

export interface RunningFleet {
  readonly meters: readonly Meter[];
  /** Listening DLMS ports, one per meter (empty without listenPort). */
  readonly ports: number[];
  stop(): Promise<void>;
  statusLine(): string;
}

export function meterIdAt(baseId: string, index: number, count: number): string {
  return count === 1 ? baseId : `${baseId}-${String(index + 1).padStart(4, "0")}`;
}

export const DEFAULT_LLS_PASSWORD = "12345678";

export async function startFleet(options: FleetOptions): Promise<RunningFleet> {
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
  const servers: ListeningServer[] = [];
  if (options.listenPort !== undefined) {
    const password = new TextEncoder().encode(options.password ?? DEFAULT_LLS_PASSWORD);
    for (const [i, meter] of meters.entries()) {
      const model = meterObjectModel({ meter, trueNowMs: () => Date.now() });
      servers.push(
        await listenDlms(
          options.listenPort === 0 ? 0 : options.listenPort + i,
          model,
          { lowLevelPassword: password },
          "0.0.0.0",
        ),
      );
    }
  }
  return {
    meters,
    ports: servers.map((s) => s.port),
    async stop() {
      for (const server of servers) await server.close();
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
