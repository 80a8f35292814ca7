import assert from "node:assert/strict";
import { describe, it } from "node:test";
import fc from "fast-check";
import { stringify } from "yaml";
import type { DecisionInput } from "../../src/policy/decision.js";
import { compileGlob } from "../../src/policy/glob.js";
import { call, policySet, toolPolicy } from "../helpers/policies.js";

describe("decisions inside one policy", () => {
  it("reads rules top-down: the first matching rule decides", () => {
    const allowFirst = policySet(
      toolPolicy("p", "  - tools: [a]\n    action: allow\n  - tools: [a, b]\n    action: deny\n"),
    );
    assert.equal(allowFirst.decide(call("a")).decision, "allow");
    assert.deepEqual(allowFirst.decide(call("b")).rule, { index: 1, name: null });
    const denyFirst = policySet(
      toolPolicy("p", "  - tools: [a, b]\n    action: deny\n  - tools: [a]\n    action: allow\n"),
    );
    assert.equal(denyFirst.decide(call("a")).decision, "deny");
  });

  it("falls back to defaultAction, which defaults to deny", () => {
    const none = policySet(toolPolicy("p", "  - tools: [a]\n    action: allow\n"));
    const d = none.decide(call("zzz"));
    assert.equal(d.decision, "deny");
    assert.equal(d.rule, null);
    assert.match(d.reason, /no rule of ToolPolicy p matched this call to "zzz"; its defaultAction is deny/);
    const open = policySet(toolPolicy("p", "  - tools: [a]\n    action: deny\n", "  defaultAction: allow\n"));
    assert.equal(open.decide(call("zzz")).decision, "allow");
  });

  it("skips a rule whose condition is false and tries the next", () => {
    const set = policySet(
      toolPolicy(
        "p",
        '  - tools: [a]\n    action: allow\n    conditions: [{cel: "request.arguments.n < 3"}, {cel: "request.arguments.n > 0"}]\n  - tools: [a]\n    action: require_approval\n',
      ),
    );
    assert.equal(set.decide(call("a", { n: 1 })).decision, "allow");
    assert.equal(set.decide(call("a", { n: 0 })).decision, "require_approval", "all conditions must hold");
    assert.equal(set.decide(call("a", { n: 5 })).decision, "require_approval");
  });

  it("matches tools by exact name and * globs only", () => {
    const set = policySet(toolPolicy("p", '  - tools: ["get_*", "*_file", "a*b*c", "x.y"]\n    action: allow\n'));
    for (const t of ["get_", "get_issue", "read_file", "_file", "abc", "a-b-c", "aXbYbZc", "x.y"]) {
      assert.equal(set.decide(call(t)).decision, "allow", t);
    }
    for (const t of ["Get_issue", "xget_", "read_files", "ab", "acb", "xzy", "x_y", "a*b"]) {
      assert.equal(set.decide(call(t)).decision, "deny", t);
    }
  });

  it("matches users and groups (either one), and never a caller without a user", () => {
    const set = policySet(
      toolPolicy(
        "p",
        "  - tools: [a]\n    users: [alice]\n    groups: [sre, ops]\n    action: allow\n  - tools: [a]\n    action: deny\n",
      ),
    );
    assert.equal(set.decide(call("a", {}, { user: { id: "alice" } })).decision, "allow");
    assert.equal(set.decide(call("a", {}, { user: { id: "bob", groups: ["dev", "ops"] } })).decision, "allow");
    assert.equal(set.decide(call("a", {}, { user: { id: "bob", groups: ["dev"] } })).decision, "deny");
    assert.equal(set.decide(call("a")).decision, "deny");
  });

  it("validates arguments against the deciding rule's schema, denying when they do not fit", () => {
    const set = policySet(
      toolPolicy(
        "p",
        "  - tools: [pay]\n    action: allow\n    arguments:\n      type: object\n      required: [amount]\n      properties: {amount: {type: number, maximum: 100}, to: {type: string, pattern: '^(a+)+$'}}\n",
      ),
    );
    assert.equal(set.decide(call("pay", { amount: 50 })).decision, "allow");
    const over = set.decide(call("pay", { amount: 500 }));
    assert.equal(over.decision, "deny");
    assert.match(
      over.reason,
      /arguments\/amount must be <= 100 \(the arguments schema of rule rules\[0\] of ToolPolicy p\)/,
    );
    assert.match(set.decide(call("pay", {})).reason, /must have required property 'amount'/);
    // The schema's pattern runs on RE2 too.
    assert.equal(set.decide(call("pay", { amount: 1, to: `${"a".repeat(30_000)}!` })).decision, "deny");
  });

  it("uses the rule's message as the reason when it has one", () => {
    const set = policySet(toolPolicy("p", "  - tools: [rm]\n    action: deny\n    message: Ask an admin.\n"));
    assert.equal(set.decide(call("rm")).reason, "Ask an admin.");
  });
});

describe("which policies apply", () => {
  const doc = (name: string, selectors: string, action = "allow") =>
    `kind: ToolPolicy\nmetadata: {name: ${name}}\nspec:\n${selectors}\n  rules: [{tools: ["*"], action: ${action}}]\n---\n`;

  it('selects by agent name, agent list, "*", and server lists', () => {
    const set = policySet(
      doc("one", "  agent: a1\n  mcpServer: s1") +
        doc("list", "  agents: [a2, a3]\n  mcpServers: [s2, s3]") +
        doc("any", '  agent: "*"\n  mcpServer: s4'),
    );
    const who = (agent: string, server: string) =>
      set.decide({ agent: { name: agent }, request: { server, tool: "t" } }).policy;
    assert.equal(who("a1", "s1"), "one");
    assert.equal(who("a1", "s2"), null);
    assert.equal(who("a3", "s3"), "list");
    assert.equal(who("a9", "s4"), "any");
    assert.equal(who("a9", "s1"), null);
  });

  it("selects by agent labels (matchLabels and matchExpressions), combined with the name", () => {
    const set = policySet(
      doc(
        "labelled",
        "  agentSelector:\n    matchLabels: {team: platform}\n    matchExpressions:\n    - {key: env, operator: In, values: [dev, staging]}\n    - {key: quarantined, operator: DoesNotExist}\n  mcpServer: s",
      ) +
        doc(
          "named",
          "  agent: bot\n  agentSelector: {matchExpressions: [{key: tier, operator: NotIn, values: [free]}]}\n  mcpServer: s",
        ),
    );
    const who = (name: string, labels: Record<string, string>) =>
      set.decide({ agent: { name, labels }, request: { server: "s", tool: "t" } }).policy;
    assert.equal(who("x", { team: "platform", env: "dev" }), "labelled");
    assert.equal(who("x", { team: "platform", env: "prod" }), null);
    assert.equal(who("x", { team: "platform", env: "dev", quarantined: "yes" }), null);
    assert.equal(who("bot", { tier: "pro" }), "named");
    assert.equal(who("bot", { tier: "free" }), null);
    assert.equal(who("other", { tier: "pro" }), null);
  });

  it("denies when no policy applies, unless the global default says otherwise", () => {
    const text = doc("p", "  agent: a\n  mcpServer: s");
    const d = policySet(text).decide({ agent: { name: "b" }, request: { server: "s", tool: "t" } });
    assert.deepEqual([d.decision, d.enforced, d.policy, d.version, d.rule], ["deny", true, null, null, null]);
    assert.match(d.reason, /no policy applies to agent "b" on server "s"; the global default is deny/);
    const open = policySet(text, { defaultDecision: "allow" });
    assert.equal(open.decide({ agent: { name: "b" }, request: { server: "s", tool: "t" } }).decision, "allow");
  });
});

describe("combining policies", () => {
  const p = (name: string, action: string, extra = "") =>
    `kind: ToolPolicy\nmetadata: {name: ${name}}\nspec:\n  agent: agent-1\n  mcpServer: srv\n${extra}  rules: [{tools: [t], action: ${action}}]\n---\n`;

  it("deny beats require_approval beats allow, in any load order", () => {
    for (const order of [
      ["allow", "require_approval", "deny"],
      ["deny", "allow", "require_approval"],
      ["require_approval", "deny", "allow"],
    ]) {
      const set = policySet(order.map((a, i) => p(`p${i}-${a.replace("_", "-")}`, a)).join(""));
      const d = set.decide(call("t"));
      assert.equal(d.decision, "deny", order.join(","));
      assert.match(d.policy ?? "", /-deny$/);
    }
    const set = policySet(p("x", "allow") + p("y", "require_approval"));
    assert.equal(set.decide(call("t")).decision, "require_approval");
    assert.equal(set.decide(call("t")).policy, "y");
  });

  it("on a tie, the policy loaded first gives the reason", () => {
    const set = policySet(p("first", "allow") + p("second", "allow"));
    assert.equal(set.decide(call("t")).policy, "first");
  });

  it("collects every approval and rate-limit obligation of the enforced result", () => {
    const set = policySet(
      `${toolPolicy("a", "  - tools: [t]\n    action: require_approval\n    approval: {timeout: 2h, approvers: {groups: [finance]}}\n    rateLimit: {requests: 5, per: 1m, key: user}\n")}\n---\n` +
        toolPolicy(
          "b",
          "  - tools: [t]\n    name: second\n    action: require_approval\n    approval: {type: elicitation, approvers: {users: [carol]}, allowSelfApproval: true}\n",
        ),
    );
    const d = set.decide(call("t"));
    assert.equal(d.decision, "require_approval");
    assert.equal(d.obligations.approvals.length, 2);
    assert.deepEqual(d.approval, {
      policy: "a",
      version: set.toolPolicies[0]?.version,
      rule: { index: 0, name: null },
      type: "human-in-the-loop",
      timeout: "2h",
      timeoutMs: 7_200_000,
      approvers: { users: [], groups: ["finance"] },
      allowSelfApproval: false,
    });
    assert.deepEqual(d.obligations.approvals[1]?.rule, { index: 0, name: "second" });
    assert.equal(d.obligations.approvals[1]?.timeoutMs, 300_000, "default timeout 5m");
    assert.equal(d.obligations.approvals[1]?.type, "elicitation");
    assert.deepEqual(
      d.obligations.rateLimits.map((r) => [r.requests, r.perMs, r.key]),
      [[5, 60_000, "user"]],
    );
  });

  it("a deny carries no obligations", () => {
    const set = policySet(
      `${toolPolicy("a", "  - tools: [t]\n    action: allow\n    rateLimit: {requests: 5, per: 1m}\n")}\n---\n${toolPolicy("b", "  - tools: [t]\n    action: deny\n")}`,
    );
    const d = set.decide(call("t"));
    assert.equal(d.decision, "deny");
    assert.deepEqual(d.obligations, { approvals: [], rateLimits: [] });
    assert.equal(d.approval, null);
  });

  it("a defaultAction of require_approval carries the default approval spec", () => {
    const d = policySet(
      toolPolicy("a", "  - tools: [x]\n    action: deny\n", "  defaultAction: require_approval\n"),
    ).decide(call("t"));
    assert.equal(d.decision, "require_approval");
    assert.equal(d.approval?.timeoutMs, 300_000);
    assert.equal(d.approval?.rule, null);
  });
});

describe("audit mode", () => {
  const audit = (name: string, action: string) =>
    `kind: ToolPolicy\nmetadata: {name: ${name}}\nspec:\n  agent: agent-1\n  mcpServer: srv\n  mode: audit\n  rules: [{tools: [t], action: ${action}}]\n---\n`;
  const enforce = (name: string, action: string) => audit(name, action).replace("  mode: audit\n", "");

  it("computes and reports the decision, marked as not enforced, when only audit policies apply", () => {
    const d = policySet(audit("trial", "deny")).decide(call("t"));
    assert.deepEqual([d.decision, d.enforced, d.policy, d.dryRun], ["deny", false, "trial", null]);
  });

  it("never weakens an enforced policy, and reports what it would change as dryRun", () => {
    const stricter = policySet(enforce("live", "allow") + audit("trial", "deny")).decide(call("t"));
    assert.deepEqual([stricter.decision, stricter.enforced, stricter.policy], ["allow", true, "live"]);
    assert.equal(stricter.dryRun?.decision, "deny");
    assert.equal(stricter.dryRun?.policy, "trial");
    const looser = policySet(enforce("live", "require_approval") + audit("trial", "allow")).decide(call("t"));
    assert.deepEqual([looser.decision, looser.enforced, looser.dryRun], ["require_approval", true, null]);
  });
});

describe("tools/list visibility (couldPermit)", () => {
  const set = policySet(
    toolPolicy(
      "p",
      `  - tools: [secret]
    action: deny
  - tools: [maybe]
    action: deny
    conditions: [{cel: "request.arguments.x == 1"}]
  - tools: [maybe, ask, mine]
    action: allow
  - tools: [ask]
    action: require_approval
  - tools: [mine]
    users: [alice]
    action: deny
`,
    ),
  );
  const visible = (tool: string, user?: string) =>
    set.couldPermit({
      agent: { name: "agent-1" },
      user: user ? { id: user } : undefined,
      request: { server: "srv", tool },
    });

  it("hides tools that every applicable policy denies unconditionally, and tools nobody mentions", () => {
    assert.equal(visible("secret"), false);
    assert.equal(visible("unknown"), false);
    assert.equal(visible("maybe"), true, "a conditional deny may not match");
    assert.equal(visible("ask"), true);
    assert.equal(visible("mine"), true);
    assert.equal(set.couldPermit({ agent: { name: "other" }, request: { server: "srv", tool: "ask" } }), false);
  });

  it("agrees with decide(): a hidden tool is never allowed", () => {
    for (const tool of ["secret", "unknown", "maybe", "ask", "mine"]) {
      for (const args of [{}, { x: 1 }, { x: 2 }]) {
        const d = set.decide(call(tool, args));
        if (!visible(tool)) assert.equal(d.decision, "deny", tool);
      }
    }
  });
});

// ---- a reference implementation, to check the indexed engine against plain semantics ----

interface RefRule {
  tools: string[];
  users?: string[];
  groups?: string[];
  action: "allow" | "deny" | "require_approval";
  cond?: keyof typeof CONDITIONS;
}
interface RefPolicy {
  name: string;
  agents: string[];
  servers: string[];
  mode: "enforce" | "audit";
  defaultAction: "allow" | "deny" | "require_approval";
  rules: RefRule[];
}

/** CEL conditions and what they mean in plain JavaScript ("error" when CEL cannot evaluate them). */
const CONDITIONS = {
  flag: {
    cel: "request.arguments.flag == true",
    js: (a: Record<string, unknown>) => ("flag" in a ? a.flag === true : "error"),
  },
  small: {
    cel: "request.arguments.n < 10",
    js: (a: Record<string, unknown>) => (typeof a.n === "number" ? a.n < 10 : "error"),
  },
  prefix: {
    cel: "request.tool.startsWith('get')",
    js: (_a: Record<string, unknown>, tool: string) => tool.startsWith("get"),
  },
} as const;

const SEV = { allow: 0, require_approval: 1, deny: 2 } as const;

function reference(
  policies: RefPolicy[],
  input: DecisionInput,
): { decision: string; enforced: boolean; policy: string | null } {
  const results: { p: RefPolicy; action: RefRule["action"] }[] = [];
  for (const p of policies) {
    const agentOk = p.agents.includes("*") || p.agents.includes(input.agent.name);
    const serverOk = p.servers.includes("*") || p.servers.includes(input.request.server);
    if (!agentOk || !serverOk) continue;
    let action: RefRule["action"] = p.defaultAction;
    for (const r of p.rules) {
      if (!r.tools.some((t) => compileGlob(t)(input.request.tool))) continue;
      if (r.users || r.groups) {
        const u = input.user;
        const ok =
          !!u && ((u.id !== undefined && !!r.users?.includes(u.id)) || !!u.groups?.some((g) => r.groups?.includes(g)));
        if (!ok) continue;
      }
      if (r.cond) {
        const v = CONDITIONS[r.cond].js(input.request.arguments ?? {}, input.request.tool);
        if (v === "error") {
          action = "deny";
          break;
        }
        if (!v) continue;
      }
      action = r.action;
      break;
    }
    results.push({ p, action });
  }
  const pick = (rs: typeof results) =>
    rs.reduce<(typeof results)[number] | undefined>((b, r) => (!b || SEV[r.action] > SEV[b.action] ? r : b), undefined);
  const enforced = pick(results.filter((r) => r.p.mode === "enforce"));
  if (enforced) return { decision: enforced.action, enforced: true, policy: enforced.p.name };
  const audit = pick(results.filter((r) => r.p.mode === "audit"));
  if (audit) return { decision: audit.action, enforced: false, policy: audit.p.name };
  return { decision: "deny", enforced: true, policy: null };
}

function toYaml(p: RefPolicy): string {
  return stringify({
    kind: "ToolPolicy",
    metadata: { name: p.name },
    spec: {
      agents: p.agents,
      mcpServers: p.servers,
      mode: p.mode,
      defaultAction: p.defaultAction,
      rules: p.rules.map((r) => ({
        tools: r.tools,
        ...(r.users ? { users: r.users } : {}),
        ...(r.groups ? { groups: r.groups } : {}),
        action: r.action,
        ...(r.cond ? { conditions: [{ cel: CONDITIONS[r.cond].cel }] } : {}),
      })),
    },
  });
}

describe("the indexed engine agrees with the plain semantics (property)", () => {
  const names = (xs: string[]) => fc.constantFrom(...xs);
  const toolPat = fc.oneof(names(["get_a", "get_b", "put", "del", "x"]), names(["*", "get_*", "*_b", "p*t"]));
  const rule = fc.record(
    {
      tools: fc.array(toolPat, { minLength: 1, maxLength: 3 }),
      users: fc.array(names(["u1", "u2"]), { minLength: 1, maxLength: 2 }),
      groups: fc.array(names(["g1", "g2"]), { minLength: 1, maxLength: 2 }),
      action: names(["allow", "deny", "require_approval"]) as fc.Arbitrary<RefRule["action"]>,
      cond: names(["flag", "small", "prefix"]) as fc.Arbitrary<RefRule["cond"] & string>,
    },
    { requiredKeys: ["tools", "action"] },
  );
  const policy = (i: number) =>
    fc.record({
      name: fc.constant(`p${i}`),
      agents: fc.array(names(["a1", "a2", "*"]), { minLength: 1, maxLength: 2 }),
      servers: fc.array(names(["s1", "s2", "*"]), { minLength: 1, maxLength: 2 }),
      mode: names(["enforce", "enforce", "audit"]) as fc.Arbitrary<RefPolicy["mode"]>,
      defaultAction: names(["allow", "deny", "require_approval"]) as fc.Arbitrary<RefPolicy["defaultAction"]>,
      rules: fc.array(rule, { maxLength: 5 }),
    });
  const policies = fc
    .integer({ min: 1, max: 5 })
    .chain((n) => fc.tuple(...Array.from({ length: n }, (_, i) => policy(i))));
  const input: fc.Arbitrary<DecisionInput> = fc.record({
    agent: fc.record({ name: names(["a1", "a2", "a3"]) }),
    user: fc.option(
      fc.record({ id: names(["u1", "u2", "u3"]), groups: fc.array(names(["g1", "g2", "g3"]), { maxLength: 2 }) }),
      { nil: undefined },
    ),
    request: fc.record({
      server: names(["s1", "s2", "s3"]),
      tool: names(["get_a", "get_b", "put", "pot", "del", "x", "y_b"]),
      arguments: fc.record(
        { flag: fc.boolean(), n: fc.oneof(fc.integer({ min: 0, max: 20 }), fc.constant("text")) },
        { requiredKeys: [] },
      ),
    }),
  });

  it("decides like a straightforward scan of every policy and rule", () => {
    fc.assert(
      fc.property(policies, fc.array(input, { minLength: 1, maxLength: 10 }), (ps, inputs) => {
        const set = policySet(ps.map(toYaml).join("---\n"));
        for (const i of inputs) {
          const d = set.decide(i);
          const want = reference(ps, i);
          assert.deepEqual({ decision: d.decision, enforced: d.enforced, policy: d.policy }, want, JSON.stringify(i));
        }
      }),
      { numRuns: 200 },
    );
  });
});

describe("decide() never throws", () => {
  const set = policySet(toolPolicy("p", "  - tools: [a]\n    action: allow\n"));
  it("denies malformed calls from programmatic callers, saying why", () => {
    for (const bad of [
      undefined,
      {},
      { agent: { name: "agent-1" } },
      { agent: {}, request: { server: "srv", tool: "a" } },
      { agent: { name: "agent-1" }, request: { server: "srv", tool: 7 } },
    ]) {
      const d = set.decide(bad as unknown as DecisionInput);
      assert.equal(d.decision, "deny");
      assert.match(d.reason, /the call has no agent name, server or tool/);
    }
  });
});
