import { ConcentratorError, type MeterReader, type MeterReading } from "../../concentrator/index.ts";
import type { Rng } from "../../evidence/index.ts";

// The meter interfaces between a concentrator and its meters, with the electrical faults of seed 003
// H2-3 / H2-11 "Interfaces — worst cable & max nodes": frame corruption per port (RS-485 noise on one
// bus segment), per meter (a far-end M-Bus meter whose voltage droops), dead meters, and bursts that hit
// every port at once (ESD/EFT/surge, "EMC/Surge — event correlation"). Every injected fault is logged
// with its virtual time, so the predicates can ask whether each counted error has a cause.

export interface FaultWindow {
  readonly fromMs: number;
  readonly toMs: number;
  /** null: every port. */
  readonly port: string | null;
  readonly frameCrcRate: number;
  readonly label: string;
}

export interface InjectedIfaceFault {
  readonly atMs: number;
  readonly meterId: string;
  readonly port: string;
  readonly kind: "frame_crc" | "timeout";
  readonly cause: string;
}

/** Bound on the injected-fault log kept for the predicates. */
export const INJECTED_FAULTS_MAX = 200_000;

export class FaultyReader implements MeterReader {
  /** Probability of a corrupted frame per read, by port. */
  readonly portCrcRate = new Map<string, number>();
  /** Probability of a corrupted frame per read, by meter (far-end droop). */
  readonly meterCrcRate = new Map<string, number>();
  /** Meters that do not answer at all (cable cut, meter dead). */
  readonly dead = new Set<string>();
  readonly windows: FaultWindow[] = [];
  readonly injected: InjectedIfaceFault[] = [];

  constructor(
    private readonly inner: MeterReader,
    private readonly rng: Rng,
    private readonly nowMs: () => number,
    private readonly portOf: (meterId: string) => string,
  ) {}

  readRegisters(meterId: string): Promise<MeterReading> {
    this.interfere(meterId);
    return this.inner.readRegisters(meterId);
  }

  readProfile(meterId: string, fromSeq: number, limit: number): Promise<MeterReading[]> {
    this.interfere(meterId);
    return this.inner.readProfile(meterId, fromSeq, limit);
  }

  readEvents(meterId: string, fromSeq: number, limit: number): Promise<Uint8Array[]> {
    this.interfere(meterId);
    return this.inner.readEvents(meterId, fromSeq, limit);
  }

  private interfere(meterId: string): void {
    const port = this.portOf(meterId);
    const now = this.nowMs();
    if (this.dead.has(meterId)) {
      this.note(now, meterId, port, "timeout", "meter dead");
      throw new ConcentratorError("IFACE_TIMEOUT", "no answer (lab: meter dead)", meterId);
    }
    let cause: string | null = null;
    if (this.rng.chance(this.portCrcRate.get(port) ?? 0)) cause = `port ${port} noise`;
    else if (this.rng.chance(this.meterCrcRate.get(meterId) ?? 0)) cause = `meter ${meterId} droop`;
    else {
      for (const w of this.windows) {
        if (now >= w.fromMs && now < w.toMs && (w.port === null || w.port === port)) {
          if (this.rng.chance(w.frameCrcRate)) {
            cause = w.label;
            break;
          }
        }
      }
    }
    if (cause !== null) {
      this.note(now, meterId, port, "frame_crc", cause);
      throw new ConcentratorError(
        "IFACE_FRAME_CRC",
        `frame check sequence mismatch (lab: ${cause})`,
        meterId,
      );
    }
  }

  private note(atMs: number, meterId: string, port: string, kind: InjectedIfaceFault["kind"], cause: string) {
    if (this.injected.length < INJECTED_FAULTS_MAX) this.injected.push({ atMs, meterId, port, kind, cause });
  }
}
