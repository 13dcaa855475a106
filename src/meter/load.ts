import { type Rng, SeededRandom } from "../evidence/index.ts";
import type { Harmonic, PhasorSample } from "./metrology.ts";

// A deterministic household load (seeded): a base load, appliances switching on and off through the
// day, and for prosumers a PV inverter exporting around noon. The profile is a pure function of the
// seed and the second of the day, so a lab run and a waveform check see the same house.

const DAY_S = 86_400;
/** Bound on appliance runs per day: a house is a house. */
const APPLIANCE_RUNS_MAX = 64;

interface Appliance {
  readonly name: string;
  readonly powerW: number;
  readonly phiDeg: number;
  readonly harmonics: readonly Harmonic[];
  readonly runS: readonly [number, number];
  readonly runsPerDay: readonly [number, number];
}

const APPLIANCES: readonly Appliance[] = [
  { name: "kettle", powerW: 2000, phiDeg: 0, harmonics: [], runS: [120, 240], runsPerDay: [2, 6] },
  {
    name: "fridge",
    powerW: 120,
    phiDeg: 35,
    harmonics: [{ order: 3, ratio: 0.1, phaseDeg: 0 }],
    runS: [600, 1200],
    runsPerDay: [12, 20],
  },
  { name: "oven", powerW: 2400, phiDeg: 0, harmonics: [], runS: [1200, 3600], runsPerDay: [0, 1] },
  {
    name: "washer",
    powerW: 500,
    phiDeg: 30,
    harmonics: [{ order: 3, ratio: 0.15, phaseDeg: 20 }],
    runS: [2400, 5400],
    runsPerDay: [0, 1],
  },
  {
    name: "tv",
    powerW: 90,
    phiDeg: -15,
    harmonics: [
      { order: 3, ratio: 0.6, phaseDeg: 10 },
      { order: 5, ratio: 0.35, phaseDeg: 30 },
    ],
    runS: [3600, 10800],
    runsPerDay: [1, 2],
  },
];

interface Run {
  readonly startS: number;
  readonly endS: number;
  readonly appliance: Appliance;
}

export interface HouseholdOptions {
  readonly seed: number | string;
  readonly nominalVoltageV?: number;
  readonly frequencyHz?: number;
  /** Peak PV export in W; 0 for a consumer-only house. */
  readonly pvPeakW?: number;
}

export class HouseholdLoad {
  private readonly runs: Run[] = [];
  private readonly baseW: number;
  private readonly nominalV: number;
  private readonly frequencyHz: number;
  private readonly pvPeakW: number;

  constructor(options: HouseholdOptions) {
    const rng: Rng = new SeededRandom(options.seed);
    this.baseW = 150 + rng.nextInt(250);
    this.nominalV = options.nominalVoltageV ?? 230;
    this.frequencyHz = options.frequencyHz ?? 50;
    this.pvPeakW = options.pvPeakW ?? 0;
    for (const appliance of APPLIANCES) {
      const runs = rng.intBetween(appliance.runsPerDay[0], appliance.runsPerDay[1]);
      for (let r = 0; r < runs && this.runs.length < APPLIANCE_RUNS_MAX; r++) {
        const startS = rng.nextInt(DAY_S);
        this.runs.push({
          startS,
          endS: startS + rng.intBetween(appliance.runS[0], appliance.runS[1]),
          appliance,
        });
      }
    }
  }

  /** The load during second `secondOfDay` (0..86399), as a phasor sample. */
  at(secondOfDay: number): PhasorSample {
    const s = ((secondOfDay % DAY_S) + DAY_S) % DAY_S;
    // Sum the loads as complex fundamental currents, keep the strongest distortion.
    let re = this.baseW * 0.98;
    let im = this.baseW * 0.2;
    let harmonics: readonly Harmonic[] = [];
    let harmonicWeight = 0;
    for (const run of this.runs) {
      if (s < run.startS || s >= run.endS) continue;
      const a = run.appliance;
      re += a.powerW;
      im += a.powerW * Math.tan((a.phiDeg * Math.PI) / 180);
      if (a.harmonics.length > 0 && a.powerW > harmonicWeight) {
        harmonics = a.harmonics;
        harmonicWeight = a.powerW;
      }
    }
    if (this.pvPeakW > 0) {
      const hour = s / 3600;
      // A clear-sky bell between 07:00 and 19:00; the inverter runs at unity power factor.
      if (hour > 7 && hour < 19) re -= this.pvPeakW * Math.sin(((hour - 7) / 12) * Math.PI) ** 2;
    }
    // The voltage sags a little with load (source impedance) and wanders slowly through the day.
    const vRms = this.nominalV * (1 + 0.01 * Math.sin((s / DAY_S) * 2 * Math.PI)) - re * 0.0005;
    const sVa = Math.hypot(re, im);
    const i1Rms = sVa / vRms;
    const phiDeg = (Math.atan2(im, re) * 180) / Math.PI;
    const scale = harmonicWeight > 0 ? Math.min(1, harmonicWeight / Math.max(sVa, 1)) : 0;
    return {
      vRms,
      i1Rms,
      phiDeg,
      frequencyHz: this.frequencyHz,
      harmonics: harmonics.map((h) => ({ ...h, ratio: h.ratio * scale })),
    };
  }
}
