// shell: benchmark plumbing; figures are measured against a raw limit in the same run (DESIGN.md "bench").

export interface BenchReference {
  readonly name: string;
  readonly value: number;
}

export interface BenchFigure {
  readonly name: string;
  readonly value: number;
  readonly unit: string;
  readonly reference: BenchReference | null;
  readonly ratio: number | null;
  readonly goal: string | null;
}

export interface BenchContext {
  /** A scratch directory on the data disk, removed after the run. */
  readonly tmpDir: string;
  /** Shorter runs (`--quick`), for smoke tests: figures are noisier but the shape is the same. */
  readonly quick: boolean;
  progress(message: string): void;
}

export interface BenchSuite {
  readonly name: string;
  run(ctx: BenchContext): Promise<BenchFigure[]>;
}

export function figure(
  name: string,
  value: number,
  unit: string,
  reference: BenchReference | null = null,
  goal: string | null = null,
): BenchFigure {
  const ratio = reference === null || reference.value === 0 ? null : round(value / reference.value, 3);
  return { name, value: round(value, 3), unit, reference, ratio, goal };
}

function round(value: number, digits: number): number {
  const scale = 10 ** digits;
  return Math.round(value * scale) / scale;
}

/** Runs `body` repeatedly for at least `minMs` of wall time and returns operations per second. */
export function ratePerSecond(body: () => number, minMs: number): number {
  let operations = 0;
  const started = process.hrtime.bigint();
  let elapsedMs = 0;
  while (elapsedMs < minMs) {
    operations += body();
    elapsedMs = Number(process.hrtime.bigint() - started) / 1e6;
  }
  return (operations * 1000) / elapsedMs;
}
