// Capped exponential back-off with jitter for uplink retries and reconnects (seed 003 H2-7: "retry backoff
// policy" is a control point of retry storms). Equal jitter: the delay is drawn from [cap/2, cap], so a
// fleet that lost the link together does not come back together, and no retry ever waits 0 ms.

/** The random source the core needs; `SeededRandom` from src/evidence satisfies it. */
export interface RandomSource {
  /** Uniform integer in [0, bound). */
  nextInt(bound: number): number;
}

export interface BackoffPolicy {
  readonly baseMs: number;
  readonly maxMs: number;
}

export const UPLINK_RETRY_DELAY_MS_BASE = 1_000;
export const UPLINK_RETRY_DELAY_MS_MAX = 60_000;
/** Exponent bound: 2^20 × base already exceeds any sane cap; keeps the arithmetic exact. */
const BACKOFF_EXPONENT_MAX = 20;

export const UPLINK_BACKOFF: BackoffPolicy = {
  baseMs: UPLINK_RETRY_DELAY_MS_BASE,
  maxMs: UPLINK_RETRY_DELAY_MS_MAX,
};

/** The un-jittered ceiling for the n-th consecutive failure (n ≥ 1). */
export function backoffCeilingMs(attempt: number, policy: BackoffPolicy): number {
  const exponent = Math.min(Math.max(attempt, 1) - 1, BACKOFF_EXPONENT_MAX);
  return Math.min(policy.maxMs, policy.baseMs * 2 ** exponent);
}

/** Delay before retry number `attempt` (1 = first retry): in [ceiling/2, ceiling], ceiling ≤ maxMs. */
export function backoffDelayMs(attempt: number, policy: BackoffPolicy, random: RandomSource): number {
  const ceiling = backoffCeilingMs(attempt, policy);
  const half = Math.floor(ceiling / 2);
  return half + random.nextInt(ceiling - half + 1);
}
