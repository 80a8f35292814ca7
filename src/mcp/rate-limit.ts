// Token buckets for the rateLimit obligations of a decision. A bucket holds
// `requests` tokens and refills at requests/per; each call takes one token from
// every bucket its decision names, or from none (all-or-nothing), so a refused
// call does not spend anyone's budget.
import type { DecisionInput, RateLimitObligation } from "../policy/decision.js";
import { formatDuration } from "../policy/duration.js";

interface Bucket {
  tokens: number;
  updated: number;
}

export interface RateLimitRefusal {
  limit: RateLimitObligation;
  /** Milliseconds until a token is available again. */
  retryAfterMs: number;
}

const MAX_BUCKETS = 100_000;

export class RateLimiter {
  private readonly buckets = new Map<string, Bucket>();

  constructor(private readonly now: () => number = Date.now) {}

  /** Takes one token from each limit's bucket, or refuses (naming the first empty one) and takes nothing. */
  take(limits: readonly RateLimitObligation[], input: DecisionInput): RateLimitRefusal | undefined {
    if (limits.length === 0) return undefined;
    const t = this.now();
    const found: Bucket[] = [];
    for (const limit of limits) {
      const key = bucketKey(limit, input);
      let b = this.buckets.get(key);
      if (!b) {
        if (this.buckets.size >= MAX_BUCKETS) this.evictFull(t);
        b = { tokens: limit.requests, updated: t };
        this.buckets.set(key, b);
      }
      refill(b, limit, t);
      if (b.tokens < 1) {
        return { limit, retryAfterMs: Math.ceil(((1 - b.tokens) * limit.perMs) / limit.requests) };
      }
      found.push(b);
    }
    for (const b of found) b.tokens -= 1;
    return undefined;
  }

  /** Drops buckets that have refilled completely: they hold no information. */
  private evictFull(t: number): void {
    for (const [k, b] of this.buckets) {
      if (t - b.updated > 86_400_000) this.buckets.delete(k);
    }
    if (this.buckets.size >= MAX_BUCKETS) this.buckets.clear();
  }
}

function refill(b: Bucket, limit: RateLimitObligation, t: number): void {
  const elapsed = t - b.updated;
  if (elapsed > 0) {
    b.tokens = Math.min(limit.requests, b.tokens + (elapsed * limit.requests) / limit.perMs);
    b.updated = t;
  }
}

function bucketKey(limit: RateLimitObligation, input: DecisionInput): string {
  const scope = `${limit.policy}\u0000${limit.rule.index}\u0000${limit.key}`;
  switch (limit.key) {
    case "agent":
      return `${scope}\u0000${input.agent.name}`;
    case "user":
      // Calls without a user share one bucket: never a way around the limit.
      return `${scope}\u0000${input.user?.id ?? ""}`;
    case "session":
      return `${scope}\u0000${input.session?.id ?? ""}`;
    case "global":
      return scope;
  }
}

export function describeRefusal(r: RateLimitRefusal): string {
  const l = r.limit;
  return `rate limit exceeded: ${l.requests} calls per ${l.per} per ${l.key} (rules[${l.rule.index}] of ToolPolicy ${l.policy}); try again in ${formatDuration(Math.max(1000, Math.ceil(r.retryAfterMs / 1000) * 1000))}`;
}
