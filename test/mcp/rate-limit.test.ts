import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { describeRefusal, RateLimiter } from "../../src/mcp/rate-limit.js";
import type { DecisionInput, RateLimitObligation } from "../../src/policy/decision.js";

const limit = (requests: number, perMs: number, key: RateLimitObligation["key"], index = 0): RateLimitObligation => ({
  policy: "p",
  version: "sha256:x",
  rule: { index, name: null },
  requests,
  per: `${perMs / 1000}s`,
  perMs,
  key,
});
const input = (agent: string, user?: string, session?: string): DecisionInput => ({
  agent: { name: agent },
  ...(user ? { user: { id: user } } : {}),
  ...(session ? { session: { id: session } } : {}),
  request: { server: "s", tool: "t" },
});

describe("rate limiter (token buckets)", () => {
  it("allows `requests` calls, then refuses until tokens refill at requests/per", () => {
    let now = 0;
    const rl = new RateLimiter(() => now);
    const l = [limit(3, 60_000, "agent")];
    for (let i = 0; i < 3; i++) assert.equal(rl.take(l, input("a")), undefined);
    const refused = rl.take(l, input("a"));
    assert.ok(refused);
    assert.equal(refused.retryAfterMs, 20_000);
    assert.match(
      describeRefusal(refused),
      /3 calls per 60s per agent \(rules\[0\] of ToolPolicy p\); try again in 20s/,
    );
    now = 20_000;
    assert.equal(rl.take(l, input("a")), undefined);
    assert.ok(rl.take(l, input("a")));
  });

  it("keeps separate buckets per agent, user, session; one global bucket; no user shares one bucket", () => {
    const rl = new RateLimiter(() => 0);
    assert.equal(rl.take([limit(1, 1000, "agent")], input("a")), undefined);
    assert.equal(rl.take([limit(1, 1000, "agent")], input("b")), undefined);
    assert.ok(rl.take([limit(1, 1000, "agent")], input("a")));
    assert.equal(rl.take([limit(1, 1000, "user", 1)], input("a", "u1")), undefined);
    assert.equal(rl.take([limit(1, 1000, "user", 1)], input("a", "u2")), undefined);
    assert.equal(rl.take([limit(1, 1000, "user", 1)], input("a")), undefined);
    assert.ok(rl.take([limit(1, 1000, "user", 1)], input("b")), "calls without a user share one bucket");
    assert.equal(rl.take([limit(1, 1000, "session", 2)], input("a", undefined, "s1")), undefined);
    assert.equal(rl.take([limit(1, 1000, "session", 2)], input("a", undefined, "s2")), undefined);
    assert.equal(rl.take([limit(1, 1000, "global", 3)], input("a")), undefined);
    assert.ok(rl.take([limit(1, 1000, "global", 3)], input("z")));
  });

  it("takes from every bucket or from none", () => {
    const rl = new RateLimiter(() => 0);
    const roomy = limit(10, 1000, "agent", 0);
    const tight = limit(1, 1000, "global", 1);
    assert.equal(rl.take([roomy, tight], input("a")), undefined);
    for (let i = 0; i < 5; i++) assert.equal(rl.take([roomy, tight], input("a"))?.limit, tight);
    // The refused calls did not spend the roomy bucket: 9 tokens are left in it.
    for (let i = 0; i < 9; i++) assert.equal(rl.take([roomy], input("a")), undefined);
    assert.ok(rl.take([roomy], input("a")));
  });
});
