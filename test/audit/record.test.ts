import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { describe, it } from "node:test";
import fc from "fast-check";
import {
  type AuditEvent,
  AuditEventError,
  applyArgumentsPolicy,
  buildRecord,
  checkArgumentsPolicy,
  checkEvent,
  decisionEvent,
  encodeRecord,
  type PolicyRef,
  parseRecord,
  REDACTED,
  recordSeq,
} from "../../src/audit/record.js";
import { canonicalJson } from "../../src/encoding/canonical-json.js";
import { compilePolicySet } from "../../src/policy/engine.js";
import { loadPolicyPaths } from "../../src/policy/loader.js";

const base: AuditEvent = {
  type: "decision",
  agent: { name: "dev-assistant", model: "m", vendor: "v" },
  user: { id: "alice", groups: ["eng"] },
  server: "github",
  tool: "create_pull_request",
  arguments: { base: "main", token: "s3cret", nested: { items: [{ password: "p1" }, { password: "p2", keep: 1 }] } },
  decision: "deny",
  enforced: true,
  policy: { name: "github-dev-agent", version: "sha256:aa", bundle: null, set: "sha256:bb" },
  rule: { index: 1, name: "prs" },
  reason: "base must not be main",
  trace: { traceId: "t", spanId: "s" },
  latencyUs: 12,
};

describe("record encoding", () => {
  it("is byte-identical to canonicalJson of the record, for arbitrary content (property)", () => {
    const json = fc.oneof(fc.jsonValue({ maxDepth: 3 }), fc.string({ unit: "binary" }));
    fc.assert(
      fc.property(
        fc.record({
          // "binary" strings include quotes, control characters and lone surrogates.
          agent: fc.string({ unit: "binary" }),
          tool: fc.string({ unit: "binary-ascii" }),
          reason: fc.option(fc.string({ unit: "binary" }), { nil: null }),
          args: fc.dictionary(fc.string({ unit: "binary" }), json),
          detail: fc.option(fc.dictionary(fc.string(), json), { nil: null }),
          latency: fc.option(fc.double({ min: 0, max: 1e9, noNaN: true }), { nil: null }),
          seq: fc.nat(),
        }),
        (x) => {
          const e: AuditEvent = {
            ...base,
            agent: { name: x.agent },
            tool: x.tool,
            reason: x.reason,
            arguments: x.args,
            detail: x.detail,
            latencyUs: x.latency,
          };
          let built: ReturnType<typeof buildRecord>;
          try {
            built = buildRecord(e, x.seq, 1_700_000_000_000, { mode: "full" });
          } catch (err) {
            // Lone surrogates are not I-JSON: refused, never silently changed — and only then.
            if ((err as Error).name !== "CanonicalJsonError") return false;
            try {
              canonicalJson(x);
              return false;
            } catch {
              return true;
            }
          }
          const parsed = parseRecord(built.json);
          return built.json === canonicalJson(parsed) && recordSeq(Buffer.from(built.json)) === x.seq;
        },
      ),
      { numRuns: 300 },
    );
  });

  it("writes agent, user, trace, rule and policy as canonicalJson does, whatever they hold (property)", () => {
    // These members are written by hand in their common shape; anything else (other types,
    // extra or undefined members, strings that need escaping) must still come out canonical.
    const text = fc.oneof(fc.string(), fc.string({ unit: "binary" }), fc.constantFrom('a"b', "\u00e9", "\ud83d\ude00"));
    const extra = fc.option(fc.dictionary(fc.string(), fc.jsonValue({ maxDepth: 1 }), { maxKeys: 2 }), {
      nil: undefined,
    });
    const maybe = <T>(a: fc.Arbitrary<T>) => fc.option(a, { nil: undefined });
    const other = fc.oneof(text, fc.integer(), fc.constant(null), fc.constant(undefined), fc.double());
    fc.assert(
      fc.property(
        fc.record({
          agent: fc.oneof(
            fc.record({ name: text, model: maybe(text), vendor: maybe(text) }),
            fc.record({ name: other, model: other }),
          ),
          user: fc.oneof(
            fc.record({ id: maybe(text), groups: maybe(fc.array(text, { maxLength: 3 })) }),
            fc.record({ id: other, groups: fc.oneof(fc.array(other, { maxLength: 2 }), other) }),
          ),
          trace: fc.record({ traceId: text, spanId: text, parentSpanId: fc.oneof(maybe(text), fc.constant(null)) }),
          rule: fc.oneof(
            fc.record({ index: fc.integer(), name: fc.oneof(text, fc.constant(null)) }),
            fc.record({ index: fc.oneof(fc.double(), other), name: other }),
          ),
          policy: fc.record({ name: fc.oneof(text, fc.constant(null)), version: fc.oneof(text, fc.constant(null)) }),
          extra,
          where: fc.constantFrom("agent", "user", "trace", "rule"),
        }),
        (x) => {
          const e = {
            ...base,
            agent: x.agent,
            user: x.user,
            trace: x.trace,
            rule: x.rule,
            policy: x.policy,
          } as AuditEvent;
          if (x.extra) Object.assign(e[x.where] as object, x.extra);
          const members = ["agent", "user", "trace", "rule"] as const;
          const expected: Record<string, string> = {};
          try {
            for (const m of members) expected[m] = canonicalJson(e[m]);
            const p = e.policy as PolicyRef;
            expected.policy = canonicalJson({ bundle: null, name: p.name, set: null, version: p.version });
          } catch {
            // Not I-JSON: the record must be refused.
            assert.throws(() => buildRecord(e, 1, 0, { mode: "digest" }), { name: "CanonicalJsonError" });
            return;
          }
          const { json } = buildRecord(e, 1, 0, { mode: "digest" });
          const parsed = parseRecord(json) as unknown as Record<string, unknown>;
          assert.equal(json, canonicalJson(parsed));
          for (const [m, want] of Object.entries(expected)) assert.equal(canonicalJson(parsed[m]), want, m);
        },
      ),
      { numRuns: 1000 },
    );
  });

  it("reuses the policy member of the previous record only when its members are the same strings", () => {
    const policyOf = (e: AuditEvent) => parseRecord(buildRecord(e, 0, 0, { mode: "digest" }).json).policy;
    const p = { name: "p", version: "sha256:1", set: "sha256:2" };
    assert.deepEqual(policyOf({ ...base, policy: p }), {
      bundle: null,
      name: "p",
      set: "sha256:2",
      version: "sha256:1",
    });
    assert.deepEqual(policyOf({ ...base, policy: { ...p, version: "sha256:3" } })?.version, "sha256:3");
    // A member that is not a string is written afresh each time (it may have changed in place).
    const odd = { tag: 1 };
    const e = { ...base, policy: { ...p, bundle: odd as unknown as string } };
    assert.deepEqual(policyOf(e)?.bundle, { tag: 1 });
    odd.tag = 2;
    assert.deepEqual(policyOf(e)?.bundle, { tag: 2 });
  });

  it("carries every §4 field, null when it does not apply", () => {
    const { json } = buildRecord({ type: "lifecycle", reason: "started" }, 0, 0, { mode: "digest" });
    const r = parseRecord(json);
    for (const k of [
      "seq",
      "time",
      "id",
      "type",
      "agent",
      "user",
      "server",
      "tool",
      "argumentsDigest",
      "arguments",
      "decision",
      "enforced",
      "policy",
      "rule",
      "reason",
      "approval",
      "trace",
      "latencyUs",
    ]) {
      assert.ok(k in r, k);
    }
    assert.equal(r.time, "1970-01-01T00:00:00.000Z");
    assert.equal(r.argumentsDigest, null);
    assert.throws(() => encodeRecord({ ...r, tool: undefined } as never), AuditEventError);
  });
});

describe("arguments policy", () => {
  const args = base.arguments as Record<string, unknown>;
  const digest = `sha256:${createHash("sha256").update(canonicalJson(args)).digest("hex")}`;

  it("always stores the digest of the full arguments", () => {
    for (const mode of ["full", "digest"] as const) {
      assert.equal(applyArgumentsPolicy(args, { mode }).digest, digest);
    }
    assert.equal(applyArgumentsPolicy(args, { mode: "mask", mask: ["/token"] }).digest, digest);
  });

  it("stores full arguments, none, or masked ones", () => {
    assert.equal(applyArgumentsPolicy(args, { mode: "full" }).storedJson, canonicalJson(args));
    assert.equal(applyArgumentsPolicy(args, { mode: "digest" }).storedJson, "null");
    const masked = JSON.parse(
      applyArgumentsPolicy(args, { mode: "mask", mask: ["/token", "/nested/items/*/password", "/absent/x"] })
        .storedJson,
    );
    assert.deepEqual(masked, {
      base: "main",
      token: REDACTED,
      nested: { items: [{ password: REDACTED }, { password: REDACTED, keep: 1 }] },
    });
    assert.deepEqual(
      JSON.parse(applyArgumentsPolicy({ "a/b": 1, "m~n": 2 }, { mode: "mask", mask: ["/a~1b", "/m~0n"] }).storedJson),
      { "a/b": REDACTED, "m~n": REDACTED },
    );
  });

  it("refuses a policy that cannot mean what it says", () => {
    assert.throws(() => checkArgumentsPolicy({ mode: "mask" }), /at least one JSON Pointer/);
    assert.throws(() => checkArgumentsPolicy({ mode: "mask", mask: ["token"] }), /not a JSON Pointer/);
    assert.throws(() => checkArgumentsPolicy({ mode: "everything" as never }), /one of full, digest, mask/);
  });
});

describe("event checks", () => {
  it("rejects events that would make a misleading record", () => {
    const bad: [unknown, RegExp][] = [
      [{ ...base, type: "decison" }, /event type/],
      [{ ...base, agent: { model: "x" } }, /agent/],
      [{ ...base, decision: "maybe" }, /decision/],
      [{ ...base, enforced: "yes" }, /enforced/],
      [{ ...base, arguments: [1, 2] }, /arguments/],
      [{ ...base, user: { id: "a", seq: 5 } }, /user/],
      [{ ...base, latencyUs: -1 }, /latencyUs/],
      [{ ...base, trace: { traceId: "t" } }, /trace/],
    ];
    for (const [e, re] of bad) assert.throws(() => checkEvent(e as AuditEvent), re);
    checkEvent(base);
  });
});

describe("decisionEvent", () => {
  it("turns a real policy decision into a decision record with the policy version", async () => {
    const loaded = await loadPolicyPaths(["examples/policies/github/policy.yaml"]);
    const { policySet } = compilePolicySet(loaded, { defaultDecision: "deny" });
    assert.ok(policySet);
    const input = {
      agent: { name: "dev-assistant" },
      user: { id: "alice" },
      request: { server: "github", tool: "delete_file", arguments: { path: "README.md" } },
    };
    const d = policySet.decide(input);
    const e = decisionEvent(d, input, { bundle: "sha256:cc", latencyUs: 5 });
    checkEvent(e);
    const r = parseRecord(buildRecord(e, 7, Date.now(), { mode: "full" }).json);
    assert.equal(r.decision, d.decision);
    assert.equal(r.policy?.version, d.version);
    assert.equal(r.policy?.set, d.policySet);
    assert.equal(r.policy?.bundle, "sha256:cc");
    assert.equal(r.reason, d.reason);
    assert.deepEqual(r.arguments, { path: "README.md" });
    assert.equal(r.seq, 7);
  });
});
