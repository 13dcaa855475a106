import assert from "node:assert/strict";
import { test } from "node:test";
import fc from "fast-check";
import {
  CounterExtender,
  DLMS_UNIT_M3,
  DLMS_UNIT_WH,
  type Level,
  PulseInput,
  type PulseInputConfig,
  PulseMeterReader,
  pulseReadingValue,
  S0_PULSE_WIDTH_MIN_US,
  snapshotAligned,
  WidthHistogram,
} from "../../src/concentrator/index.ts";

const RUNS = Number(process.env.AMIPROOF_FUZZ_RUNS ?? 300);

/** Builds an edge list by walking time forward: each segment is (level, width µs). */
class Signal {
  readonly edges: { t: number; level: Level }[] = [];
  t = 0;
  level: Level = 0;
  /** The input goes to `level` now and stays there `widthUs`. */
  hold(level: Level, widthUs: number): this {
    if (level !== this.level) {
      this.edges.push({ t: this.t, level });
      this.level = level;
    }
    this.t += widthUs;
    return this;
  }
  /** A clean S0-style pulse: high then low. */
  pulse(highUs = 40_000, lowUs = 60_000): this {
    return this.hold(1, highUs).hold(0, lowUs);
  }
  /** Bounce fragments alternating from the level opposite to the current one. */
  bounce(widthsUs: readonly number[]): this {
    for (const w of widthsUs) this.hold(this.level === 0 ? 1 : 0, w);
    return this;
  }
  feed(input: PulseInput): void {
    for (const e of this.edges) input.edge(e.t, e.level);
  }
}

function s0(config: PulseInputConfig = {}): PulseInput {
  return new PulseInput({ windowMinUs: 500, ...config });
}

test("clean pulse train: every pulse counted, nothing rejected", () => {
  const input = s0();
  const signal = new Signal();
  for (let i = 0; i < 25; i++) signal.pulse();
  signal.feed(input);
  const snap = input.snapshot(signal.t);
  assert.equal(snap.count, 25);
  assert.equal(snap.seq, 1);
  assert.equal(snap.lastPulseUs, 24 * 100_000);
  const ev = input.evidence();
  assert.equal(ev.debounce_reject_cnt, 0);
  assert.equal(ev.glitch_cnt, 0);
  assert.equal(ev.short_pulse_cnt, 0);
  assert.equal(
    ev.pulse_width_histogram.reduce((n, b) => n + b[2], 0),
    25,
  );
});

test("bounce trains: contact bounce on both edges is rejected and counted as bounce, not glitches", () => {
  const input = s0();
  const signal = new Signal();
  for (let i = 0; i < 10; i++) {
    signal.bounce([80, 120, 60, 200, 90]).hold(1, 40_000); // 5 fragments: H L H L H, then high holds
    signal.bounce([150, 70, 300]).hold(0, 60_000); // L H L, then low holds
  }
  signal.feed(input);
  const snap = input.snapshot(signal.t);
  assert.equal(snap.count, 10);
  const ev = input.evidence();
  // Rising burst: highs of 80 and 60 µs rejected (the 90 µs one merges into the held high); falling: lows of
  // 150 µs rejected (the 300 µs low merges into the held low). Rejected excursions are away from the
  // debounced level only.
  assert.equal(ev.debounce_reject_cnt, 10 * (2 + 1));
  assert.equal(ev.bounce_cnt, ev.debounce_reject_cnt);
  assert.equal(ev.glitch_cnt, 0);
});

test("glitch storm in the pause: glitches rejected and counted, the window settles above the glitch population", () => {
  const input = s0();
  assert.equal(input.windowUs, 15_000, "starts at the ceiling: half the 30 ms S0 minimum");
  const signal = new Signal();
  let glitches = 0;
  for (let i = 0; i < 40; i++) {
    signal.hold(1, 40_000).hold(0, 20_000);
    for (let g = 0; g < 50; g++) {
      signal.hold(1, 5 + ((g * 7) % 45)).hold(0, 1_000); // 5…49 µs spikes every ~1 ms
      glitches++;
    }
    signal.hold(0, 20_000);
  }
  signal.feed(input);
  const snap = input.snapshot(signal.t);
  assert.equal(snap.count, 40);
  const ev = input.evidence();
  assert.equal(ev.glitch_cnt, glitches);
  assert.equal(ev.debounce_reject_cnt, glitches);
  assert.equal(ev.bounce_cnt, 0);
  // widest spike 49 µs → bucket bound 56 → ×5/4 = 70 µs, clamped up to the 500 µs floor.
  assert.equal(input.windowUs, 500);
  assert.ok(ev.window_changes > 1, "released step by step (at most ×3/4 per adaptation)");
  assert.deepEqual(
    ev.glitch_width_histogram.map(([lower]) => lower).every((lower) => lower < 50),
    true,
  );
});

test("wide glitches: phantoms at a too-small window raise it from measured widths; later storms add no counts", () => {
  const input = s0({ windowInitialUs: 500 });
  const storm = (signal: Signal, n: number) => {
    for (let g = 0; g < n; g++) signal.hold(1, 2_000 + ((g * 37) % 2_000)).hold(0, 3_000); // 2–4 ms spikes
  };
  const signal = new Signal();
  signal.pulse();
  storm(signal, 64);
  signal.hold(0, 50_000);
  signal.feed(input);
  const learned = input.snapshot(signal.t);
  const phantoms = learned.count - 1;
  assert.ok(phantoms > 0, "a 500 µs window lets 2–4 ms spikes through at first");
  assert.ok(phantoms < 64, "…until the measured glitch widths raise the window");
  // Phantoms are flagged as narrower than the meter can produce (the last one, caught by the raised window
  // mid-storm, merges with the storm into one long high and is not).
  const short = input.evidence().short_pulse_cnt;
  assert.ok(short > 0 && short <= phantoms, `short_pulse_cnt ${short}, phantoms ${phantoms}`);
  assert.ok(input.windowUs >= 3_000 && input.windowUs <= 15_000, `window ${input.windowUs}`);

  const later = new Signal();
  later.t = signal.t;
  for (let i = 0; i < 5; i++) {
    later.pulse();
    storm(later, 100);
    later.hold(0, 40_000);
  }
  later.feed(input);
  const after = input.snapshot(later.t);
  assert.equal(after.count - learned.count, 5, "the learned window rejects the same storm");
  assert.equal(after.seq, 2);
});

test("glitches as wide as real pulses: the window stops at the ceiling and saturation is counted", () => {
  const input = s0({ pulseWidthMinUs: 30_000, pauseMinUs: 30_000 });
  const signal = new Signal();
  for (let g = 0; g < 64; g++) signal.hold(1, 20_000).hold(0, 60_000);
  signal.feed(input);
  input.snapshot(signal.t);
  const ev = input.evidence();
  assert.equal(input.windowUs, 15_000);
  assert.ok(ev.debounce_saturated_cnt > 0);
  assert.equal(
    ev.short_pulse_cnt,
    64,
    "each 20 ms pulse is counted but flagged as narrower than the meter can produce",
  );
});

test("16-bit register: a wrap between two reads is unwrapped; the rate bound proves a second wrap impossible", () => {
  const periodUs = 60_000; // S0 at its maximum rate
  const ext = new CounterExtender(16, periodUs, { initialRaw: 65_000, startUs: 0 });
  assert.equal(ext.readIntervalMaxUs(), 65_535 * periodUs - 1);
  // 1036 pulses in 62.16 s: the register went 65000 → 65535 → 0 → 500.
  const r1 = ext.read(500, 1036 * periodUs);
  assert.deepEqual(r1, { delta: 1036, total: 1036, wrapped: true, status: "ok" });
  assert.equal(ext.overflowCount, 1);
  // Same raw value after 10 s: at most 167 pulses fit, so 65536 more (a second wrap) is impossible.
  const r2 = ext.read(500, 1036 * periodUs + 10_000_000);
  assert.deepEqual(r2, { delta: 0, total: 1036, wrapped: false, status: "ok" });
  // A read interval longer than readIntervalMaxUs could hide whole wraps: flagged, smallest delta kept.
  const r3 = ext.read(600, 1036 * periodUs + 10_000_000 + ext.readIntervalMaxUs() + 1);
  assert.equal(r3.status, "overflow_ambiguous");
  assert.equal(r3.delta, 100);
  assert.equal(ext.overflowAmbiguousCount, 1);
  assert.equal(ext.events.at(-1)?.kind, "overflow_ambiguous");
});

test("register restart and unexplained jumps: inferred from the rate bound, logged with their time", () => {
  const ext = new CounterExtender(16, 60_000, { initialRaw: 1_000, startUs: 0 });
  // 1 s later the register reads 5: 64 541 pulses cannot fit in 1 s, but 5 can → it restarted from 0.
  const reset = ext.read(5, 1_000_000);
  assert.deepEqual(reset, { delta: 5, total: 5, wrapped: false, status: "counter_reset" });
  // 1 s later it reads 30 000: neither a wrap nor a restart explains it → refused, resynchronised.
  const jump = ext.read(30_000, 2_000_000);
  assert.deepEqual(jump, { delta: 0, total: 5, wrapped: false, status: "counter_jump" });
  const next = ext.read(30_010, 3_000_000);
  assert.equal(next.delta, 10);
  assert.deepEqual(
    ext.events.map((e) => [e.kind, e.atUs]),
    [
      ["counter_reset", 1_000_000],
      ["counter_jump", 2_000_000],
    ],
  );
  assert.throws(() => ext.read(65_536, 4_000_000), { code: "BAD_READING" });
  assert.throws(() => ext.read(1, 10), { code: "BAD_READING" }, "a read older than the previous one");
});

test("overflow across snapshots on a narrow register: counts stay exact, wraps are flagged", () => {
  const input = s0({ counterBits: 8 });
  const signal = new Signal();
  let last = 0;
  const flags: string[][] = [];
  for (let round = 0; round < 6; round++) {
    for (let i = 0; i < 200; i++) signal.pulse(30_000, 30_000); // 200 pulses at the maximum rate
    signal.feed(input);
    signal.edges.length = 0;
    const snap = input.snapshot(signal.t);
    assert.equal(snap.count, last + 200);
    last = snap.count;
    flags.push([...snap.flags]);
  }
  assert.equal(input.evidence().overflow_cnt, flags.filter((f) => f.includes("overflow")).length);
  assert.ok(input.evidence().overflow_cnt >= 4, "1200 pulses through a 256-count register");
  assert.equal(input.evidence().overflow_ambiguous_cnt, 0);

  // 600 pulses between two snapshots on 8 bits: more than one wrap fits → flagged, not silently trusted.
  for (let i = 0; i < 600; i++) signal.pulse(30_000, 30_000);
  signal.feed(input);
  const snap = input.snapshot(signal.t);
  assert.ok(snap.flags.includes("overflow_ambiguous"));
  assert.equal(input.evidence().pulses, last + 600, "the filter's own count stays exact");
});

test("register reset notified by the shell: counting continues from 0 without a jump backwards", () => {
  const input = s0();
  const signal = new Signal();
  for (let i = 0; i < 7; i++) signal.pulse();
  signal.feed(input);
  assert.equal(input.snapshot(signal.t).count, 7);
  input.resetRegister(signal.t);
  signal.edges.length = 0;
  for (let i = 0; i < 3; i++) signal.pulse();
  signal.feed(input);
  const snap = input.snapshot(signal.t);
  assert.equal(snap.count, 10);
  assert.equal(input.evidence().counter_reset_cnt, 1);
  assert.equal(input.evidence().overflow_log[0]?.kind, "counter_reset");
});

test("atomic snapshots: seq-numbered, count and time from one state; older edges are refused", () => {
  const input = s0();
  const signal = new Signal();
  signal.pulse().hold(1, 10_000); // a pulse, then a rising edge that has not yet held 15 ms
  signal.feed(input);
  const a = input.snapshot(signal.t);
  assert.equal(a.count, 1, "the unconfirmed rising edge is not in this snapshot");
  signal.edges.length = 0;
  signal.hold(1, 30_000).hold(0, 60_000);
  signal.feed(input);
  const b = input.snapshot(signal.t);
  assert.deepEqual(
    [b.seq, b.count, b.lastPulseUs],
    [2, 2, 100_000],
    "…it is in the next, with its own rise time",
  );
  input.edge(a.captureUs, 1); // older than snapshot b
  assert.equal(input.evidence().edge_order_err_cnt, 1);
  assert.throws(() => input.snapshot(a.captureUs), { code: "BAD_READING" });
  assert.throws(() => input.edge(-1, 1), { code: "BAD_READING" });
});

test("aligned snapshots: two channels captured at one instant", () => {
  const a = s0();
  const b = s0();
  const sa = new Signal();
  const sb = new Signal();
  for (let i = 0; i < 6; i++) sa.pulse();
  for (let i = 0; i < 3; i++) sb.pulse(40_000, 160_000);
  sa.feed(a);
  sb.feed(b);
  const [x, y] = snapshotAligned([a, b], 600_000);
  assert.deepEqual([x?.captureUs, x?.count, y?.captureUs, y?.count], [600_000, 6, 600_000, 3]);
});

test("pulse constants: exact scaler_unit values for energy and volume", () => {
  const E = [1, 0, 1, 8, 0, 255] as const;
  const W = [8, 0, 1, 0, 0, 255] as const;
  assert.deepEqual(pulseReadingValue(1234, { kind: "energy", impPerKwh: 1000 }, E), {
    value: { obis: E, value: 1234, scaler: 0, unit: DLMS_UNIT_WH },
    exact: true,
  });
  // 800 imp/kWh = 1.25 Wh per pulse: 4 pulses = 5 Wh = 500 × 10^-2
  assert.deepEqual(pulseReadingValue(4, { kind: "energy", impPerKwh: 800 }, E).value, {
    obis: E,
    value: 500,
    scaler: -2,
    unit: DLMS_UNIT_WH,
  });
  // 100 imp/m³ = 10 L per pulse: 7 pulses = 0.07 m³
  assert.deepEqual(pulseReadingValue(7, { kind: "volume", impPerM3: 100 }, W).value, {
    obis: W,
    value: 7,
    scaler: -2,
    unit: DLMS_UNIT_M3,
  });
  // 10 000 imp/kWh = 0.1 Wh per pulse
  assert.deepEqual(pulseReadingValue(25, { kind: "energy", impPerKwh: 10_000 }, E).value.value, 25);
  const third = pulseReadingValue(1, { kind: "energy", impPerKwh: 3 }, E);
  assert.equal(third.exact, false);
  assert.deepEqual([third.value.value, third.value.scaler], [333_333_333_333, -9]);
  assert.throws(() => pulseReadingValue(1, { kind: "energy", impPerKwh: 0 }, E), { code: "BAD_CONFIG" });
  assert.throws(() => pulseReadingValue(-1, { kind: "energy", impPerKwh: 1000 }, E), { code: "BAD_READING" });
});

test("PulseMeterReader: snapshots as MeterReadings, seq continued after resume", async () => {
  let nowMs = 0;
  const clock = { nowMs: () => nowMs };
  const input = s0();
  const reader = new PulseMeterReader(
    [{ meterId: "P1", input, constant: { kind: "energy", impPerKwh: 1000 }, obis: [1, 0, 1, 8, 0, 255] }],
    clock,
  );
  const signal = new Signal();
  for (let i = 0; i < 12; i++) signal.pulse();
  signal.feed(input);
  nowMs = signal.t / 1000;
  const first = await reader.readRegisters("P1");
  assert.equal(first.seq, 1);
  assert.equal(first.timestampMs, nowMs);
  assert.deepEqual(first.values, [{ obis: [1, 0, 1, 8, 0, 255], value: 12, scaler: 0, unit: DLMS_UNIT_WH }]);
  reader.resume({ P1: 40 });
  nowMs += 1000;
  assert.equal((await reader.readRegisters("P1")).seq, 41);
  assert.deepEqual(await reader.readProfile("P1", 1, 10), []);
  await assert.rejects(reader.readRegisters("nope"), { code: "IFACE_UNREACHABLE" });
  assert.equal(reader.evidence().P1?.snapshot_seq, 2);
});

test("width histogram: integer quarter-octave bounds, bounded by halving", () => {
  const h = new WidthHistogram();
  h.add(1);
  h.add(49);
  h.add(S0_PULSE_WIDTH_MIN_US);
  assert.equal(h.minLowerUs(), 1);
  assert.equal(h.maxUpperUs(), 32_768);
  for (const [lower, upper] of h.toJSON()) assert.ok(lower < upper);
  // 49 lies in [48, 56)
  assert.deepEqual(
    h.toJSON().find(([lower]) => lower === 48),
    [48, 56, 1],
  );
  for (let i = 0; i < 5000; i++) h.add(100);
  assert.ok(h.held < 4096);
  assert.equal(h.added, 5003);
  assert.equal(h.maxUpperUs(), 112, "single old outliers fade after a halving");
});

test("config bounds are checked", () => {
  assert.throws(() => new PulseInput({ windowMinUs: 20_000 }), { code: "BAD_CONFIG" });
  assert.throws(() => new PulseInput({ windowInitialUs: 16_000 }), { code: "BAD_CONFIG" });
  assert.throws(() => new PulseInput({ counterBits: 40 }), { code: "BAD_CONFIG" });
  assert.throws(() => new PulseInput({ pulseWidthMinUs: 0 }), { code: "BAD_CONFIG" });
});

// ───────────────────────────── properties ─────────────────────────────

/** Fragments narrower than the 500 µs floor, so any adapted window rejects them. */
const fragments = fc.array(fc.integer({ min: 1, max: 499 }), { maxLength: 6 });

const pulsePlan = fc.record({
  riseBounce: fragments,
  highUs: fc.integer({ min: 30_000, max: 90_000 }),
  dropouts: fc.array(fc.tuple(fc.integer({ min: 16_000, max: 20_000 }), fc.integer({ min: 1, max: 499 })), {
    maxLength: 2,
  }),
  fallBounce: fragments,
  lowUs: fc.integer({ min: 30_000, max: 90_000 }),
  glitches: fc.array(fc.tuple(fc.integer({ min: 16_000, max: 20_000 }), fc.integer({ min: 1, max: 499 })), {
    maxLength: 4,
  }),
  snapshotAfter: fc.boolean(),
});

test("property: for any bounce, dropout and glitch pattern within the model's limits the count is exact", () => {
  fc.assert(
    fc.property(
      fc.array(pulsePlan, { minLength: 1, maxLength: 40 }),
      fc.integer({ min: 4, max: 16 }),
      fc.boolean(),
      (plans, counterBits, adaptive) => {
        const input = new PulseInput({
          windowMinUs: 500,
          counterBits,
          adaptive,
          windowInitialUs: adaptive ? 15_000 : 500,
        });
        const signal = new Signal();
        let lastCount = 0;
        let lastSeq = 0;
        let truth = 0;
        for (const plan of plans) {
          signal.bounce(plan.riseBounce).hold(1, 16_000); // ≥ any window (ceiling 15 ms): the pulse holds
          for (const [gap, w] of plan.dropouts) signal.hold(0, w).hold(1, gap);
          signal.hold(1, plan.highUs - 16_000);
          signal.bounce(plan.fallBounce).hold(0, 16_000);
          for (const [gap, w] of plan.glitches) signal.hold(1, w).hold(0, gap);
          signal.hold(0, plan.lowUs);
          truth++;
          if (plan.snapshotAfter) {
            signal.feed(input);
            signal.edges.length = 0;
            const snap = input.snapshot(signal.t);
            assert.equal(snap.seq, lastSeq + 1);
            assert.ok(snap.count >= lastCount);
            assert.equal(snap.count, truth);
            assert.ok(!snap.flags.includes("rate_exceeded") && !snap.flags.includes("counter_jump"));
            lastCount = snap.count;
            lastSeq = snap.seq;
          }
        }
        signal.feed(input);
        const final = input.snapshot(signal.t);
        const ev = input.evidence();
        assert.equal(ev.pulses, truth);
        if (!final.flags.includes("overflow_ambiguous")) assert.equal(final.count, truth);
        assert.ok(input.windowUs >= 500 && input.windowUs <= 15_000);
        assert.equal(
          ev.glitch_cnt + ev.bounce_cnt,
          ev.debounce_reject_cnt,
          "every rejection is classified once",
        );
        assert.equal(ev.short_pulse_cnt, 0);
      },
    ),
    { numRuns: RUNS },
  );
});

test("property: the extender's total equals the true count whenever reads honour the rate bound", () => {
  fc.assert(
    fc.property(
      fc.integer({ min: 2, max: 16 }),
      fc.array(fc.integer({ min: 0, max: 5_000_000 }), { minLength: 1, maxLength: 60 }),
      fc.integer({ min: 1, max: 2 ** 31 }),
      (bits, intervalsUs, seed) => {
        const period = 60_000;
        const modulus = 2 ** bits;
        const ext = new CounterExtender(bits, period, { initialRaw: 0, startUs: 0 });
        let now = 0;
        let truth = 0;
        let x = seed;
        for (const interval of intervalsUs) {
          now += interval;
          const maxPulses = Math.floor(interval / period) + 1;
          x = (Math.imul(x, 1_103_515_245) + 12_345) >>> 0;
          const pulses = x % (Math.min(maxPulses, modulus - 1) + 1); // never more than the rate allows
          truth += pulses;
          const result = ext.read(truth % modulus, now);
          if (maxPulses < modulus) {
            assert.equal(result.status, "ok");
            assert.equal(result.total, truth);
          } else {
            assert.equal(result.status, "overflow_ambiguous");
          }
        }
        assert.equal(
          ext.total,
          truth,
          "fewer than 2^bits pulses per read: the smallest delta is the true one",
        );
      },
    ),
    { numRuns: RUNS },
  );
});
