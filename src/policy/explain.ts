// A readable account of how a decision was reached: every policy considered,
// whether its selectors matched, and every rule tried. The decision itself
// always comes from PolicySet.decide, so the explanation cannot disagree with it.
import type { Decision, DecisionInput } from "./decision.js";
import type { PolicySet } from "./engine.js";
import {
  appliesTo,
  type CallContext,
  type CompiledToolPolicy,
  evaluateConditions,
  evaluatePolicy,
  subjectMatches,
} from "./tool-policy.js";

export interface RuleTrace {
  index: number;
  name: string | null;
  action: string;
  outcome: "tool-not-listed" | "subject-mismatch" | "condition-false" | "condition-error" | "decides" | "not-reached";
  detail: string;
}

export interface PolicyTrace {
  name: string;
  version: string;
  file: string;
  line: number;
  mode: string;
  applies: boolean;
  why: string;
  rules: RuleTrace[];
  result: { action: string; reason: string } | null;
}

export interface Explanation {
  decision: Decision;
  policies: PolicyTrace[];
}

export function explain(set: PolicySet, input: DecisionInput): Explanation {
  const decision = set.decide(input);
  const call = set.newCall(input);
  const policies = set.toolPolicies.map((p) => tracePolicy(p, input, call));
  return { decision, policies };
}

function tracePolicy(policy: CompiledToolPolicy, input: DecisionInput, call: CallContext): PolicyTrace {
  const base = {
    name: policy.name,
    version: policy.version,
    file: policy.file,
    line: policy.position.line,
    mode: policy.mode,
  };
  if (!appliesTo(policy, input)) {
    return { ...base, applies: false, why: whyNot(policy, input), rules: [], result: null };
  }
  const rules: RuleTrace[] = [];
  let decided = false;
  for (const rule of policy.rules) {
    const t = { index: rule.ref.index, name: rule.ref.name, action: rule.action };
    if (decided) {
      rules.push({ ...t, outcome: "not-reached", detail: "an earlier rule decided" });
      continue;
    }
    if (!rule.matchesTool(input.request.tool)) {
      rules.push({
        ...t,
        outcome: "tool-not-listed",
        detail: `tools [${rule.spec.tools.join(", ")}] do not include "${input.request.tool}"`,
      });
      continue;
    }
    if (!subjectMatches(rule, input.user)) {
      const who = [
        ...(rule.spec.users ?? []).map((u) => `user ${u}`),
        ...(rule.spec.groups ?? []).map((g) => `group ${g}`),
      ];
      rules.push({ ...t, outcome: "subject-mismatch", detail: `the caller is not ${who.join(" or ")}` });
      continue;
    }
    const cond = evaluateConditions(rule, call);
    if ("error" in cond) {
      rules.push({
        ...t,
        outcome: "condition-error",
        detail: `${cond.condition.label} \`${cond.condition.source}\` failed: ${cond.error}`,
      });
      decided = true;
      continue;
    }
    if (!cond.matched) {
      const c = cond.failed;
      rules.push({
        ...t,
        outcome: "condition-false",
        detail: c ? `${c.label} \`${c.source}\` is false` : "a condition is false",
      });
      continue;
    }
    rules.push({
      ...t,
      outcome: "decides",
      detail: rule.conditions.length > 0 ? "tool, caller and all conditions match" : "tool and caller match",
    });
    decided = true;
  }
  const r = evaluatePolicy(policy, call);
  return {
    ...base,
    applies: true,
    why: "agent and server selectors match",
    rules,
    result: { action: r.action, reason: r.reason },
  };
}

function whyNot(policy: CompiledToolPolicy, input: DecisionInput): string {
  if (policy.servers && !policy.servers.has(input.request.server)) {
    return `server "${input.request.server}" is not one of ${[...policy.servers].join(", ")}`;
  }
  if (policy.agentNames && !policy.agentNames.has(input.agent.name)) {
    return `agent "${input.agent.name}" is not one of ${[...policy.agentNames].join(", ")}`;
  }
  return "the agent's labels do not match agentSelector";
}

export function renderExplanation(x: Explanation): string {
  const out: string[] = [];
  const d = x.decision;
  out.push(`decision: ${d.decision}${d.enforced ? "" : " (not enforced: audit mode)"}`);
  out.push(`reason:   ${d.reason}`);
  if (d.policy) out.push(`policy:   ${d.policy} ${d.version}`);
  out.push(`set:      ${d.policySet}`);
  if (d.dryRun)
    out.push(`dry run:  audit-mode policy ${d.dryRun.policy} would make it ${d.dryRun.decision}: ${d.dryRun.reason}`);
  for (const a of d.obligations.approvals) {
    const who = [...a.approvers.users.map((u) => `user ${u}`), ...a.approvers.groups.map((g) => `group ${g}`)];
    out.push(
      `approval: ${a.type}, timeout ${a.timeout}, approvers: ${who.length ? who.join(", ") : "any approver"} (from ${a.policy})`,
    );
  }
  for (const r of d.obligations.rateLimits) {
    out.push(`rate limit: ${r.requests} per ${r.per} per ${r.key} (from ${r.policy} rules[${r.rule.index}])`);
  }
  out.push("");
  if (x.policies.length === 0) out.push("no ToolPolicy is loaded");
  for (const p of x.policies) {
    out.push(`ToolPolicy ${p.name} (${p.file}:${p.line}, ${p.mode})`);
    if (!p.applies) {
      out.push(`  does not apply: ${p.why}`);
      continue;
    }
    for (const r of p.rules) {
      const label = `rules[${r.index}]${r.name ? ` "${r.name}"` : ""} ${r.action}`;
      out.push(`  ${label}: ${r.outcome.replace(/-/g, " ")}: ${r.detail}`);
    }
    if (p.result) out.push(`  => ${p.result.action}: ${p.result.reason}`);
  }
  return out.join("\n");
}
