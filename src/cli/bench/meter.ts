// shell: meter-model throughput in interval mode (meter-seconds simulated per wall second).
import { MemorySecureElement } from "../../evidence/index.ts";
import { HouseholdLoad, Meter, type PhasorSample } from "../../meter/index.ts";
import { type BenchSuite, figure } from "./types.ts";

// Back of the envelope: one interval step is a phasor measurement (~10 flops), four integer accumulations
// and seven tamper gates (~50 comparisons), well under a microsecond; sealing happens only on events and
// the billing dual-copy write every 15 virtual minutes. The household load is precomputed per second.
const METERS = 100;
const START_MS = Date.UTC(2026, 0, 1);

export const meterSuite: BenchSuite = {
  name: "meter",
  async run(ctx) {
    const minMs = ctx.quick ? 300 : 2_000;
    ctx.progress("meter: interval mode, 100 meters");
    const meters = Array.from({ length: METERS }, (_, i) =>
      Meter.open(
        {
          id: `BENCH-${i}`,
          secureElement: new MemorySecureElement(`BENCH-${i}`, Uint8Array.of(i)),
          factoryTimeMs: START_MS,
          logSeqCounter: false,
        },
        START_MS,
      ),
    );
    const day: PhasorSample[] = [];
    const house = new HouseholdLoad({ seed: 1, pvPeakW: 2000 });
    for (let s = 0; s < 3600; s++) day.push(house.at(36_000 + s));
    let meterSeconds = 0;
    let second = 0;
    const started = performance.now();
    while (performance.now() - started < minMs) {
      for (let k = 0; k < 60; k++) {
        second++;
        const t = START_MS + second * 1000;
        const sample = day[second % day.length]!;
        for (const meter of meters) meter.step(t, sample);
        meterSeconds += METERS;
      }
    }
    const perS = (meterSeconds * 1000) / (performance.now() - started);
    return [figure("meter.interval_meter_seconds_per_s", perS, "meter-s/s", null, ">= 1e6")];
  },
};
