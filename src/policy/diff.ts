// What changed between two policy sets: policies added, removed and changed,
// and inside a changed policy, which settings and which rules. Rules are
// matched by name, else by content (or, failing that, by their tools), and a
// rule that kept its content but changed place is reported as moved: with
// first-match-wins, order is meaning. Given sample inputs, it also reports
// which decisions would change. Pure: no I/O.
import { canonicalJson } from "../encoding/canonical-json.js";
import type { Decision, DecisionInput } from "./decision.js";
import type { PolicySet } from "./engine.js";
import type { LoadedResource } from "./loader.js";

export interface PolicyId {
  kind: string;
  name: string;
  version: string;
}

export interface FieldChange {
  /** e.g. spec.defaultAction */
  path: string;
  from: unknown;
  to: unknown;
}

export interface RuleChange {
  change: "added" | "removed" | "changed" | "moved";
  name: string | null;
  /** Position in the old rules (removed, changed, moved). */
  from?: number;
  /** Position in the new rules (added, changed, moved). */
  to?: number;
  /** The rule's fields that differ (changed). */
  fields?: string[];
  before?: unknown;
  after?: unknown;
}

export interface PolicyChange {
  kind: string;
  name: string;
  from: string;
  to: string;
  fields: FieldChange[];
  rules: RuleChange[];
}

export interface DecisionSummary {
  decision: Decision["decision"];
  enforced: boolean;
  policy: string | null;
  rule: { index: number; name: string | null } | null;
  reason: string;
}

export interface DecisionChange {
  /** 1-based position among the inputs. */
  input: number;
  call: { agent: string; server: string; tool: string };
  from: DecisionSummary;
  to: DecisionSummary;
}

export interface PolicyDiff {
  from: { policySet: string };
  to: { policySet: string };
  added: PolicyId[];
  removed: PolicyId[];
  changed: PolicyChange[];
  /** Only when inputs were given. */
  decisions?: { inputs: number; changed: DecisionChange[] };
}

const id = (r: LoadedResource): PolicyId => ({ kind: r.kind, name: r.name, version: r.version });
const key = (r: { kind: string; name: string }) => `${r.kind}/${r.name}`;
const same = (a: unknown, b: unknown) => canonicalJson(a ?? null) === canonicalJson(b ?? null);

function fieldChanges(
  prefix: string,
  a: Record<string, unknown> | undefined,
  b: Record<string, unknown> | undefined,
  skip: string[] = [],
): FieldChange[] {
  const out: FieldChange[] = [];
  const keys = [...new Set([...Object.keys(a ?? {}), ...Object.keys(b ?? {})])].filter((k) => !skip.includes(k)).sort();
  for (const k of keys) {
    const from = a?.[k];
    const to = b?.[k];
    if (!same(from, to)) out.push({ path: `${prefix}.${k}`, from: from ?? null, to: to ?? null });
  }
  return out;
}

type Rule = Record<string, unknown> & { name?: string; tools?: unknown };

/** Longest increasing subsequence of positions: the pairs that kept their relative order. */
function keptInOrder(positions: number[]): Set<number> {
  const tails: number[] = [];
  const prev: number[] = new Array(positions.length).fill(-1);
  const tailIdx: number[] = [];
  positions.forEach((p, i) => {
    let lo = 0;
    let hi = tails.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if ((tails[mid] as number) < p) lo = mid + 1;
      else hi = mid;
    }
    tails[lo] = p;
    tailIdx[lo] = i;
    prev[i] = lo > 0 ? (tailIdx[lo - 1] as number) : -1;
  });
  const kept = new Set<number>();
  for (let i = tailIdx[tails.length - 1] ?? -1; i >= 0; i = prev[i] as number) kept.add(i);
  return kept;
}

export function diffRules(oldRules: readonly Rule[], newRules: readonly Rule[]): RuleChange[] {
  const pairs: [number, number][] = [];
  const usedOld = new Set<number>();
  const usedNew = new Set<number>();
  const match = (test: (a: Rule, b: Rule) => boolean) => {
    oldRules.forEach((a, i) => {
      if (usedOld.has(i)) return;
      const j = newRules.findIndex((b, k) => !usedNew.has(k) && test(a, b));
      if (j < 0) return;
      pairs.push([i, j]);
      usedOld.add(i);
      usedNew.add(j);
    });
  };
  match((a, b) => a.name !== undefined && a.name === b.name);
  match((a, b) => a.name === undefined && b.name === undefined && same(a, b));
  match((a, b) => a.name === undefined && b.name === undefined && same(a.tools, b.tools));
  pairs.sort((x, y) => x[0] - y[0]);
  const kept = keptInOrder(pairs.map(([, j]) => j));
  const out: RuleChange[] = [];
  pairs.forEach(([i, j], n) => {
    const a = oldRules[i] as Rule;
    const b = newRules[j] as Rule;
    const name = b.name ?? null;
    if (!same(a, b)) {
      const fields = fieldChanges("", a, b).map((f) => f.path.slice(1));
      out.push({ change: "changed", name, from: i, to: j, fields, before: a, after: b });
    }
    if (!kept.has(n)) out.push({ change: "moved", name, from: i, to: j });
  });
  oldRules.forEach((a, i) => {
    if (!usedOld.has(i)) out.push({ change: "removed", name: a.name ?? null, from: i, before: a });
  });
  newRules.forEach((b, j) => {
    if (!usedNew.has(j)) out.push({ change: "added", name: b.name ?? null, to: j, after: b });
  });
  // Removed (by old position), then added, changed and moved (by new position).
  const order = { removed: 0, added: 1, changed: 2, moved: 3 } as const;
  return out.sort((x, y) => order[x.change] - order[y.change] || (x.to ?? x.from ?? 0) - (y.to ?? y.from ?? 0));
}

/** Policies (all kinds but PolicyTest) added, removed and changed between two sets. */
export function diffPolicySets(from: PolicySet, to: PolicySet): PolicyDiff {
  const before = new Map(from.resources.map((r) => [key(r), r]));
  const after = new Map(to.resources.map((r) => [key(r), r]));
  const diff: PolicyDiff = {
    from: { policySet: from.digest },
    to: { policySet: to.digest },
    added: [],
    removed: [],
    changed: [],
  };
  for (const r of to.resources) if (!before.has(key(r))) diff.added.push(id(r));
  for (const r of from.resources) if (!after.has(key(r))) diff.removed.push(id(r));
  for (const r of to.resources) {
    const old = before.get(key(r));
    if (!old || old.version === r.version) continue;
    const a = old.value as unknown as {
      apiVersion?: string;
      metadata: Record<string, unknown>;
      spec: Record<string, unknown>;
    };
    const b = r.value as unknown as typeof a;
    const fields = [
      ...(same(a.apiVersion, b.apiVersion)
        ? []
        : [{ path: "apiVersion", from: a.apiVersion ?? null, to: b.apiVersion ?? null }]),
      ...fieldChanges("metadata", a.metadata, b.metadata),
      ...fieldChanges("spec", a.spec, b.spec, ["rules"]),
    ];
    const rules = diffRules((a.spec.rules ?? []) as Rule[], (b.spec.rules ?? []) as Rule[]);
    diff.changed.push({ kind: r.kind, name: r.name, from: old.version, to: r.version, fields, rules });
  }
  return diff;
}

function summary(d: Decision): DecisionSummary {
  return { decision: d.decision, enforced: d.enforced, policy: d.policy, rule: d.rule, reason: d.reason };
}

/** Decides every input with both sets (at one fixed time) and lists those whose outcome differs. */
export function diffDecisions(
  from: PolicySet,
  to: PolicySet,
  inputs: readonly DecisionInput[],
  now = Date.now(),
): PolicyDiff["decisions"] {
  const changed: DecisionChange[] = [];
  inputs.forEach((input, i) => {
    const at = input.now === undefined ? { ...input, now } : input;
    const a = from.decide(at);
    const b = to.decide(at);
    if (a.decision === b.decision && a.enforced === b.enforced) return;
    changed.push({
      input: i + 1,
      call: { agent: input.agent.name, server: input.request.server, tool: input.request.tool },
      from: summary(a),
      to: summary(b),
    });
  });
  return { inputs: inputs.length, changed };
}

export function isEmptyDiff(d: PolicyDiff): boolean {
  return d.added.length === 0 && d.removed.length === 0 && d.changed.length === 0 && !d.decisions?.changed.length;
}

const show = (v: unknown) => JSON.stringify(v ?? null);

function ruleLabel(c: RuleChange, rule: unknown): string {
  const r = (rule ?? {}) as Rule;
  const tools = Array.isArray(r.tools) ? ` [${r.tools.join(", ")}]` : "";
  return `${c.name ? `"${c.name}"` : "(unnamed)"}${tools}`;
}

function describeDecision(s: DecisionSummary): string {
  const by = s.policy
    ? ` by ${s.policy}${s.rule ? ` rule ${s.rule.index}${s.rule.name ? ` "${s.rule.name}"` : ""}` : ""}`
    : "";
  return `${s.decision}${s.enforced ? "" : " (audit mode, not enforced)"}${by}`;
}

/** The diff for a terminal. */
export function renderDiff(d: PolicyDiff): string {
  const out: string[] = [];
  out.push(`policy set ${d.from.policySet} → ${d.to.policySet}`);
  out.push(`policies: ${d.added.length} added, ${d.removed.length} removed, ${d.changed.length} changed`);
  for (const p of d.added) out.push(`+ ${p.kind}/${p.name} (${p.version})`);
  for (const p of d.removed) out.push(`- ${p.kind}/${p.name} (${p.version})`);
  for (const c of d.changed) {
    out.push(`~ ${c.kind}/${c.name} (${c.from} → ${c.to})`);
    for (const f of c.fields) out.push(`    ${f.path}: ${show(f.from)} → ${show(f.to)}`);
    for (const r of c.rules) {
      switch (r.change) {
        case "added":
          out.push(`    + rule ${r.to} ${ruleLabel(r, r.after)}: ${show(r.after)}`);
          break;
        case "removed":
          out.push(`    - rule ${r.from} ${ruleLabel(r, r.before)}: ${show(r.before)}`);
          break;
        case "changed": {
          const a = r.before as Rule;
          const b = r.after as Rule;
          const parts = (r.fields ?? []).map((f) => `${f} ${show(a[f])} → ${show(b[f])}`);
          out.push(
            `    ~ rule ${r.from === r.to ? r.to : `${r.from} → ${r.to}`} ${ruleLabel(r, b)}: ${parts.join("; ")}`,
          );
          break;
        }
        case "moved":
          out.push(
            `    ↕ rule ${r.name ? `"${r.name}"` : "(unnamed)"} moved from position ${r.from} to ${r.to} (first match wins: order matters)`,
          );
          break;
      }
    }
  }
  if (d.decisions) {
    out.push(
      `decisions: ${d.decisions.changed.length} of ${d.decisions.inputs} input${d.decisions.inputs === 1 ? "" : "s"} would be decided differently`,
    );
    for (const c of d.decisions.changed)
      out.push(
        `  input ${c.input} (${c.call.agent} → ${c.call.server}/${c.call.tool}): ${describeDecision(c.from)} → ${describeDecision(c.to)}`,
      );
  }
  return `${out.join("\n")}\n`;
}
