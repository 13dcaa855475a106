// A small seeded random source for the deterministic core: the lab, fault injection (power cuts, bit flips)
// and back-off jitter take an `Rng` instead of the global random source, so every run replays from its seed.
// Generator: xoshiro128** (Blackman & Vigna, 2018), 128-bit state, seeded through splitmix32 so that
// nearby seeds (1, 2, 3…) still give unrelated streams. Not for keys or nonces: use node:crypto for those.

export interface Rng {
  /** Uniform integer in [0, 2^32). */
  nextU32(): number;
  /** Uniform float in [0, 1), 53 bits of precision. */
  nextFloat(): number;
  /** Uniform integer in [0, bound), bound a positive safe integer. */
  nextInt(bound: number): number;
  /** Uniform integer in [min, max], both inclusive. */
  intBetween(min: number, max: number): number;
  /** True with probability `p` (p ≤ 0 never, p ≥ 1 always). */
  chance(p: number): boolean;
  nextBytes(length: number): Uint8Array;
  /** One element of a non-empty list. */
  pick<T>(items: readonly T[]): T;
  /** An independent stream derived from this one, e.g. one per simulated meter. */
  fork(label?: string | number): Rng;
}

/** Bound on rejection-sampling rounds in nextInt: the chance of needing more is below 2^-64. */
const REJECTION_ROUNDS_MAX = 64;
const TWO_POW_32 = 0x1_0000_0000;
const TWO_POW_53 = 9_007_199_254_740_992;

/** FNV-1a 32-bit over UTF-8: turns a textual seed ("lab/flicker/42") into a numeric one. */
export function seedFromString(text: string): number {
  let hash = 0x811c9dc5;
  for (const byte of new TextEncoder().encode(text)) {
    hash ^= byte;
    hash = Math.imul(hash, 0x01000193);
  }
  return hash >>> 0;
}

function splitmix32(state: { value: number }): number {
  state.value = (state.value + 0x9e3779b9) | 0;
  let z = state.value;
  z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
  z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
  return (z ^ (z >>> 16)) >>> 0;
}

function rotl(x: number, k: number): number {
  return (x << k) | (x >>> (32 - k));
}

export class SeededRandom implements Rng {
  private s0: number;
  private s1: number;
  private s2: number;
  private s3: number;

  /** A seed is any number (its integer part, mod 2^53 split in two halves) or a string. */
  constructor(seed: number | string) {
    const numeric = typeof seed === "string" ? seedFromString(seed) : Math.trunc(Math.abs(seed)) % TWO_POW_53;
    const mix = { value: (numeric % TWO_POW_32) ^ Math.imul(Math.floor(numeric / TWO_POW_32), 0x27d4eb2d) };
    this.s0 = splitmix32(mix);
    this.s1 = splitmix32(mix);
    this.s2 = splitmix32(mix);
    this.s3 = splitmix32(mix);
    // xoshiro's one forbidden state is all zeros; splitmix32 practically never yields it, but be exact.
    if ((this.s0 | this.s1 | this.s2 | this.s3) === 0) this.s0 = 1;
  }

  /** The generator state, to replay a stream from a checkpoint. */
  state(): [number, number, number, number] {
    return [this.s0 >>> 0, this.s1 >>> 0, this.s2 >>> 0, this.s3 >>> 0];
  }

  static fromState(state: readonly [number, number, number, number]): SeededRandom {
    const rng = new SeededRandom(0);
    [rng.s0, rng.s1, rng.s2, rng.s3] = state.map((x) => x | 0) as [number, number, number, number];
    if ((rng.s0 | rng.s1 | rng.s2 | rng.s3) === 0) rng.s0 = 1;
    return rng;
  }

  nextU32(): number {
    const result = Math.imul(rotl(Math.imul(this.s1, 5), 7), 9) >>> 0;
    const t = this.s1 << 9;
    this.s2 ^= this.s0;
    this.s3 ^= this.s1;
    this.s1 ^= this.s2;
    this.s0 ^= this.s3;
    this.s2 ^= t;
    this.s3 = rotl(this.s3, 11);
    return result;
  }

  nextFloat(): number {
    const high = this.nextU32() >>> 5; // 27 bits
    const low = this.nextU32() >>> 6; // 26 bits
    return (high * 67_108_864 + low) / TWO_POW_53;
  }

  nextInt(bound: number): number {
    if (!Number.isSafeInteger(bound) || bound < 1) {
      throw new RangeError(`nextInt bound must be a positive safe integer, got ${bound}`);
    }
    if (bound > TWO_POW_32) return Math.floor(this.nextFloat() * bound);
    // Reject the top slice of [0, 2^32) that would make small values more likely than large ones.
    const limit = TWO_POW_32 - (TWO_POW_32 % bound);
    let value = this.nextU32();
    for (let round = 0; value >= limit && round < REJECTION_ROUNDS_MAX; round++) value = this.nextU32();
    return value % bound;
  }

  intBetween(min: number, max: number): number {
    if (!Number.isSafeInteger(min) || !Number.isSafeInteger(max) || max < min) {
      throw new RangeError(`intBetween needs safe integers min ≤ max, got ${min}..${max}`);
    }
    return min + this.nextInt(max - min + 1);
  }

  chance(p: number): boolean {
    if (p <= 0) return false;
    if (p >= 1) return true;
    return this.nextFloat() < p;
  }

  nextBytes(length: number): Uint8Array {
    const out = new Uint8Array(length);
    for (let i = 0; i < length; i += 4) {
      let word = this.nextU32();
      for (let j = i; j < Math.min(i + 4, length); j++) {
        out[j] = word & 0xff;
        word >>>= 8;
      }
    }
    return out;
  }

  pick<T>(items: readonly T[]): T {
    if (items.length === 0) throw new RangeError("pick from an empty list");
    return items[this.nextInt(items.length)] as T;
  }

  fork(label: string | number = 0): SeededRandom {
    const salt = typeof label === "string" ? seedFromString(label) : Math.trunc(label) >>> 0;
    // 53-bit child seed: 32 bits salted by the label, 21 more from the parent stream.
    return new SeededRandom(((this.nextU32() ^ salt) >>> 0) + (this.nextU32() & 0x1f_ffff) * TWO_POW_32);
  }
}
