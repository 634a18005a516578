/**
 * @module Back-off for transient store failures: exponential from `baseMs`, capped at `maxMs`,
 * with "equal jitter" (half fixed, half random) so that nodes retrying against one recovering
 * database spread out while each still waits at least half the step. Hand-written: the
 * pipeline's loop must stop waiting the moment the node stops, and must hold its batch (never
 * skip it) between attempts, which a generic retry wrapper around a call does not give.
 */
export interface RetryPolicy {
  /** Attempts before a batch is given up to the dead-letter queue; 0: retry for ever. */
  maxAttempts: number;
  baseMs: number;
  maxMs: number;
}

export const DEFAULT_RETRY: RetryPolicy = { maxAttempts: 10, baseMs: 200, maxMs: 30_000 };

/** Wait before attempt `attempt + 1` (attempt ≥ 1). */
export function backoffMs(policy: RetryPolicy, attempt: number, random: () => number = Math.random): number {
  const step = Math.min(policy.maxMs, policy.baseMs * 2 ** Math.min(attempt - 1, 30));
  return Math.round(step / 2 + random() * step / 2);
}

/** True once `attempt` failed attempts exhaust the policy. */
export function exhausted(policy: RetryPolicy, attempt: number): boolean {
  return policy.maxAttempts > 0 && attempt >= policy.maxAttempts;
}
