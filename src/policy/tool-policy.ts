// Compiling one ToolPolicy into the form decisions run on, and evaluating it.
// Compilation does every check that can be done before a call arrives; what
// remains for evaluation is matching and running already-planned CEL.
import { celError } from "@bufbuild/cel";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import {
  type CelEnvironment,
  type CompiledExpression,
  isCompiled,
  toCelValue,
  type ValueLimits,
} from "./cel/runtime.js";
import { T } from "./cel/types.js";
import type { ApprovalObligation, DecisionInput, RateLimitObligation, RuleRef } from "./decision.js";
import type { Diagnostic, SourcePosition } from "./diagnostics.js";
import { parseDuration } from "./duration.js";
import { compileGlob, isGlob } from "./glob.js";
import type { ArgumentSchemaCompiler, ArgumentsValidator } from "./json-schema.js";
import type { LoadedResource } from "./loader.js";
import type { Action, LabelSelector, Mode, Selectors, ToolPolicy, ToolRule } from "./resources.js";

export interface CompiledCondition {
  source: string;
  /** Where it is, e.g. rules[1].conditions[0]. */
  label: string;
  expr: CompiledExpression;
}

export interface CompiledRule {
  ref: RuleRef;
  action: Action;
  spec: ToolRule;
  matchesTool: (tool: string) => boolean;
  users: ReadonlySet<string> | null;
  groups: ReadonlySet<string> | null;
  conditions: CompiledCondition[];
  validateArguments: ArgumentsValidator | null;
  approval: ApprovalObligation | null;
  rateLimit: RateLimitObligation | null;
  message: string | null;
  /** The reason given when this rule decides: its message, or a generated one. */
  reason: string;
}

export interface CompiledToolPolicy {
  name: string;
  version: string;
  file: string;
  position: SourcePosition;
  mode: Mode;
  defaultAction: Action;
  /** null means any agent name. */
  agentNames: ReadonlySet<string> | null;
  agentLabels: ((labels: Readonly<Record<string, string>> | undefined) => boolean) | null;
  /** null means any server. */
  servers: ReadonlySet<string> | null;
  rules: CompiledRule[];
  /** Rules that can apply to a tool, in order. */
  rulesFor(tool: string): readonly CompiledRule[];
}

export interface CompileContext {
  cel: CelEnvironment;
  schemas: ArgumentSchemaCompiler;
  diagnostics: Diagnostic[];
}

const DEFAULT_APPROVAL_TIMEOUT = "5m";
const RULE_CACHE_LIMIT = 4096;

function error(ctx: CompileContext, pos: SourcePosition, message: string): void {
  ctx.diagnostics.push({ ...pos, severity: "error", message });
}
function warning(ctx: CompileContext, pos: SourcePosition, message: string): void {
  ctx.diagnostics.push({ ...pos, severity: "warning", message });
}

/** Compiles CEL conditions at a list of pointers, reporting problems at their place in the file. */
export function compileConditions(
  res: LoadedResource,
  base: string,
  conditions: readonly { cel: string }[] | undefined,
  ctx: CompileContext,
  cel: CelEnvironment,
): CompiledCondition[] | undefined {
  const out: CompiledCondition[] = [];
  let ok = true;
  (conditions ?? []).forEach((c, i) => {
    if (typeof c?.cel !== "string") return; // only in a document with errors, which are reported already
    const pointer = `${base}/conditions/${i}/cel`;
    const compiled = cel.compile(c.cel, T.bool);
    if (isCompiled(compiled)) {
      out.push({ source: c.cel, label: `${labelOf(base)}.conditions[${i}]`, expr: compiled });
      return;
    }
    ok = false;
    for (const p of compiled.problems) {
      const { position, exact } = res.positionInString(pointer, p.offset);
      error(ctx, position, `CEL: ${p.message}${exact || p.offset === 0 ? "" : notExact(c.cel, p.offset)}`);
    }
  });
  return ok ? out : undefined;
}

/** For a problem inside a string whose characters do not map one to one onto the file. */
function notExact(source: string, offset: number): string {
  const rest = source.slice(offset).replace(/\s+/g, " ");
  const snippet = rest.length > 24 ? `${rest.slice(0, 24)}…` : rest;
  return ` (reported at the start of this string: with line breaks or escapes inside quotes, columns in the file do not match the expression's; the problem is at character ${offset + 1} of the expression: ${JSON.stringify(snippet)})`;
}

function labelOf(pointer: string): string {
  return pointer
    .replace(/^\/spec\//, "")
    .replace(/\/(\d+)/g, "[$1]")
    .replace(/\//g, ".");
}

/** Checks that exactly the right selector fields are present. Returns false after reporting. */
export function checkSelectors(
  res: LoadedResource,
  spec: Selectors,
  ctx: CompileContext,
  serverRequired: boolean,
): boolean {
  let ok = true;
  if (spec.agent !== undefined && spec.agents !== undefined) {
    error(ctx, res.positionOf("/spec/agents#key"), 'use either "agent" or "agents", not both');
    ok = false;
  }
  if (spec.agent === undefined && spec.agents === undefined && spec.agentSelector === undefined) {
    error(
      ctx,
      res.positionOf("/spec"),
      'spec needs "agent", "agents" or "agentSelector" to say which agents it governs; write agent: "*" for every agent',
    );
    ok = false;
  }
  if (spec.mcpServer !== undefined && spec.mcpServers !== undefined) {
    error(ctx, res.positionOf("/spec/mcpServers#key"), 'use either "mcpServer" or "mcpServers", not both');
    ok = false;
  }
  if (serverRequired && spec.mcpServer === undefined && spec.mcpServers === undefined) {
    error(
      ctx,
      res.positionOf("/spec"),
      'spec needs "mcpServer" or "mcpServers" to say which MCP servers it governs; write mcpServer: "*" for every server',
    );
    ok = false;
  }
  return ok;
}

export function nameSet(one: string | undefined, many: readonly string[] | undefined): ReadonlySet<string> | null {
  const names = one !== undefined ? [one] : (many ?? ["*"]);
  return names.includes("*") ? null : new Set(names);
}

export function compileLabelSelector(sel: LabelSelector | undefined) {
  if (!sel) return null;
  const wanted = Object.entries(sel.matchLabels ?? {});
  const exprs = sel.matchExpressions ?? [];
  return (labels: Readonly<Record<string, string>> | undefined): boolean => {
    const l = labels ?? {};
    for (const [k, v] of wanted) if (!Object.hasOwn(l, k) || l[k] !== v) return false;
    for (const e of exprs) {
      const has = Object.hasOwn(l, e.key);
      const value = l[e.key];
      switch (e.operator) {
        case "Exists":
          if (!has) return false;
          break;
        case "DoesNotExist":
          if (has) return false;
          break;
        case "In":
          if (!has || !(e.values ?? []).includes(value as string)) return false;
          break;
        case "NotIn":
          if (has && (e.values ?? []).includes(value as string)) return false;
          break;
      }
    }
    return true;
  };
}

export function compileToolPolicy(res: LoadedResource, ctx: CompileContext): CompiledToolPolicy | undefined {
  const doc = res.value as ToolPolicy;
  const spec = doc.spec;
  let ok = checkSelectors(res, spec, ctx, true);
  const rules: CompiledRule[] = [];
  (spec.rules ?? []).forEach((rule, index) => {
    const compiled = compileRule(res, rule, index, ctx);
    if (compiled) rules.push(compiled);
    else ok = false;
  });
  if (!ok) return undefined;
  warnUnreachable(res, rules, ctx);

  // Index: exact tool names map straight to their rules; glob rules are checked per tool, then cached.
  const exact = new Map<string, number[]>();
  const globRules: number[] = [];
  rules.forEach((r, i) => {
    for (const t of r.spec.tools) {
      if (isGlob(t)) {
        if (!globRules.includes(i)) globRules.push(i);
      } else {
        const list = exact.get(t) ?? [];
        if (!list.includes(i)) list.push(i);
        exact.set(t, list);
      }
    }
  });
  const cache = new Map<string, readonly CompiledRule[]>();
  const rulesFor = (tool: string): readonly CompiledRule[] => {
    const hit = cache.get(tool);
    if (hit) return hit;
    const indices = new Set(exact.get(tool) ?? []);
    for (const i of globRules) if ((rules[i] as CompiledRule).matchesTool(tool)) indices.add(i);
    const list = [...indices].sort((a, b) => a - b).map((i) => rules[i] as CompiledRule);
    // Tool names come from the agent; do not let them grow the cache without bound.
    if (cache.size < RULE_CACHE_LIMIT) cache.set(tool, list);
    return list;
  };

  return {
    name: res.name,
    version: res.version,
    file: res.file,
    position: res.position,
    mode: spec.mode ?? "enforce",
    defaultAction: spec.defaultAction ?? "deny",
    agentNames: spec.agent === undefined && spec.agents === undefined ? null : nameSet(spec.agent, spec.agents),
    agentLabels: compileLabelSelector(spec.agentSelector),
    servers: nameSet(spec.mcpServer, spec.mcpServers),
    rules,
    rulesFor,
  };
}

/**
 * Checks the rules of a ToolPolicy that has errors and is not compiled (a partial document:
 * fields with errors are missing), so that their CEL, approval and argument-schema problems are
 * reported in the same run.
 */
export function checkToolPolicyParts(res: LoadedResource, ctx: CompileContext): void {
  const rules: unknown = (res.value as Partial<ToolPolicy>).spec?.rules;
  if (!Array.isArray(rules)) return;
  rules.forEach((rule: ToolRule | undefined, index) => {
    if (rule) checkRule(res, rule, index, ctx);
  });
}

/** The checks of one rule that need more than its schema; undefined after reporting a problem. */
function checkRule(
  res: LoadedResource,
  rule: ToolRule,
  index: number,
  ctx: CompileContext,
): { conditions: CompiledCondition[]; validateArguments: ArgumentsValidator | null } | undefined {
  const base = `/spec/rules/${index}`;
  let ok = true;
  // In a partial document an invalid action is missing: then nothing that depends on it is checked.
  if (rule.approval && rule.action !== undefined && rule.action !== "require_approval") {
    error(
      ctx,
      res.positionOf(`${base}/approval#key`),
      `"approval" only applies to action: require_approval (this rule's action is ${rule.action})`,
    );
    ok = false;
  }
  if (rule.rateLimit && rule.action === "deny") {
    error(ctx, res.positionOf(`${base}/rateLimit#key`), '"rateLimit" has no effect on a deny rule; remove it');
    ok = false;
  }
  if (rule.arguments !== undefined && rule.action === "deny") {
    warning(ctx, res.positionOf(`${base}/arguments#key`), '"arguments" has no effect on a deny rule');
  }
  const conditions = compileConditions(res, base, rule.conditions, ctx, ctx.cel);
  if (!conditions) ok = false;
  let validateArguments: ArgumentsValidator | null = null;
  if (rule.arguments !== undefined && rule.action !== "deny") {
    const v = ctx.schemas.compile(rule.arguments);
    if (typeof v === "function") validateArguments = v;
    else {
      error(ctx, res.positionOf(`${base}/arguments`), `arguments is not a usable JSON Schema: ${v.error}`);
      ok = false;
    }
  }
  return ok && conditions ? { conditions, validateArguments } : undefined;
}

function compileRule(
  res: LoadedResource,
  rule: ToolRule,
  index: number,
  ctx: CompileContext,
): CompiledRule | undefined {
  const checked = checkRule(res, rule, index, ctx);
  if (!checked) return undefined;
  const { conditions, validateArguments } = checked;
  const ref: RuleRef = { index, name: rule.name ?? null };
  const matchers = rule.tools.map(compileGlob);
  const timeout = rule.approval?.timeout ?? DEFAULT_APPROVAL_TIMEOUT;
  return {
    ref,
    action: rule.action,
    spec: rule,
    matchesTool: matchers.length === 1 ? (matchers[0] as (t: string) => boolean) : (t) => matchers.some((m) => m(t)),
    users: rule.users ? new Set(rule.users) : null,
    groups: rule.groups ? new Set(rule.groups) : null,
    conditions,
    validateArguments,
    approval:
      rule.action === "require_approval"
        ? {
            policy: res.name,
            version: res.version,
            rule: ref,
            type: rule.approval?.type ?? "human-in-the-loop",
            timeout,
            timeoutMs: parseDuration(timeout) as number,
            approvers: { users: rule.approval?.approvers?.users ?? [], groups: rule.approval?.approvers?.groups ?? [] },
            allowSelfApproval: rule.approval?.allowSelfApproval ?? false,
          }
        : null,
    rateLimit: rule.rateLimit
      ? {
          policy: res.name,
          version: res.version,
          rule: ref,
          requests: rule.rateLimit.requests,
          per: rule.rateLimit.per,
          perMs: parseDuration(rule.rateLimit.per) as number,
          key: rule.rateLimit.key ?? "agent",
        }
      : null,
    message: rule.message ?? null,
    reason: rule.message ?? `${VERB[rule.action]} by ${describeRule(res.name, ref)}`,
  };
}

/** A rule that an earlier unconditional rule always pre-empts is almost certainly a mistake. */
function warnUnreachable(res: LoadedResource, rules: readonly CompiledRule[], ctx: CompileContext): void {
  rules.forEach((later, j) => {
    for (let i = 0; i < j; i++) {
      const earlier = rules[i] as CompiledRule;
      const unconditional =
        earlier.conditions.length === 0 && !earlier.users && !earlier.groups && !earlier.validateArguments;
      if (!unconditional) continue;
      const covered = later.spec.tools.every((t) =>
        isGlob(t) ? earlier.spec.tools.includes("*") || earlier.spec.tools.includes(t) : earlier.matchesTool(t),
      );
      if (covered) {
        warning(
          ctx,
          res.positionOf(`/spec/rules/${j}`),
          `rule rules[${j}] can never decide: rules[${i}] above matches every call it would (first match wins). Reorder or remove it.`,
        );
        return;
      }
    }
  });
}

// ---- evaluation ----

/** One policy's answer for one call. The default-action reason is only built if someone reads it. */
export class PolicyResult {
  constructor(
    readonly policy: CompiledToolPolicy,
    readonly action: Action,
    readonly rule: CompiledRule | null,
    private readonly fixedReason: string | null,
    private readonly tool: string,
  ) {}

  get reason(): string {
    if (this.fixedReason !== null) return this.fixedReason;
    const p = this.policy;
    return `${VERB[p.defaultAction]}: no rule of ToolPolicy ${p.name} matched this call to "${this.tool}"; its defaultAction is ${p.defaultAction}`;
  }
}

/** Per-decision state shared by every policy that evaluates the same call. */
export class CallContext {
  /** CEL's view of the call; each variable is converted the first time an expression reads it. */
  readonly bindings: CelBindings;

  constructor(
    readonly input: DecisionInput,
    readonly valueLimits: Readonly<ValueLimits>,
  ) {
    this.bindings = new CelBindings(this);
  }
}

/**
 * The variables CEL sees. A class with getters on its prototype, so that
 * building it per call is cheap and only variables an expression reads are
 * converted. A variable that cannot be handed to CEL (over the limits, not
 * JSON) reads as a CEL error, so the condition fails and denies.
 */
class CelBindings {
  private cache: Partial<Record<"request" | "agent" | "user" | "session", unknown>> = {};
  private nowValue: unknown;

  constructor(private readonly call: CallContext) {}

  get request(): unknown {
    const { request } = this.call.input;
    return this.cached("request", () => ({
      ...request,
      method: request.method ?? "tools/call",
      arguments: request.arguments ?? {},
    }));
  }

  get agent(): unknown {
    return this.cached("agent", () => this.call.input.agent);
  }

  get user(): unknown {
    return this.cached("user", () => this.call.input.user ?? {});
  }

  get session(): unknown {
    if (this.cache.session !== undefined) return this.cache.session;
    const session = this.call.input.session ?? {};
    let value: unknown;
    if (session.calls === undefined) value = this.convert("session", session);
    else {
      // CEL reads JSON numbers as doubles; call counts are declared int, so hand them over as int.
      const calls = countsAsInts(session.calls);
      value = typeof calls === "string" ? celError(calls) : this.convert("session", { ...session, calls });
    }
    this.cache.session = value;
    return value;
  }

  get now(): unknown {
    this.nowValue ??= timestampFromMs(this.call.input.now ?? Date.now());
    return this.nowValue;
  }

  private cached(name: "request" | "agent" | "user", value: () => unknown): unknown {
    let v = this.cache[name];
    if (v === undefined) {
      v = this.convert(name, value());
      this.cache[name] = v;
    }
    return v;
  }

  private convert(name: string, value: unknown): unknown {
    const r = toCelValue(value, this.call.valueLimits, name);
    return "problem" in r ? celError(r.problem) : r.value;
  }
}

function countsAsInts(calls: unknown): Record<string, bigint> | string {
  if (typeof calls !== "object" || calls === null || Array.isArray(calls)) {
    return "session.calls must be a map of tool names to counts";
  }
  const out: Record<string, bigint> = {};
  for (const [k, v] of Object.entries(calls)) {
    if (typeof v !== "number" || !Number.isSafeInteger(v)) return `session.calls.${k} must be a whole number`;
    Object.defineProperty(out, k, { value: BigInt(v), enumerable: true });
  }
  return out;
}

export function appliesTo(policy: CompiledToolPolicy, input: DecisionInput): boolean {
  if (policy.servers && !policy.servers.has(input.request.server)) return false;
  if (policy.agentNames && !policy.agentNames.has(input.agent.name)) return false;
  if (policy.agentLabels && !policy.agentLabels(input.agent.labels)) return false;
  return true;
}

export function subjectMatches(rule: CompiledRule, user: DecisionInput["user"]): boolean {
  if (!rule.users && !rule.groups) return true;
  if (!user) return false;
  if (rule.users && user.id !== undefined && rule.users.has(user.id)) return true;
  if (rule.groups && Array.isArray(user.groups)) for (const g of user.groups) if (rule.groups.has(g)) return true;
  return false;
}

export type ConditionOutcome =
  | { matched: true }
  | { matched: false; failed?: CompiledCondition }
  | { error: string; condition: CompiledCondition };

/** Runs a rule's conditions in order; all must be true. Anything but a boolean is an error. */
export function evaluateConditions(rule: CompiledRule, call: CallContext): ConditionOutcome {
  if (rule.conditions.length === 0) return { matched: true };
  for (const c of rule.conditions) {
    const out = c.expr.evaluate(call.bindings);
    if (!out.ok) return { error: out.error, condition: c };
    if (out.value === false) return { matched: false, failed: c };
    if (out.value !== true) return { error: `evaluated to ${describeValue(out.value)}, not a bool`, condition: c };
  }
  return { matched: true };
}

function describeValue(v: unknown): string {
  if (typeof v === "string") return "a string";
  if (typeof v === "number") return "a double";
  if (typeof v === "bigint") return "an int";
  if (v === null) return "null";
  return "a non-boolean value";
}

export function ruleName(policy: CompiledToolPolicy, rule: CompiledRule): string {
  return describeRule(policy.name, rule.ref);
}

function describeRule(policy: string, ref: RuleRef): string {
  return `rule ${ref.name ? `"${ref.name}" (rules[${ref.index}])` : `rules[${ref.index}]`} of ToolPolicy ${policy}`;
}

const VERB: Record<Action, string> = { allow: "allowed", deny: "denied", require_approval: "needs approval" };

/** The result of one policy for one call: first matching rule, else the default action. */
export function evaluatePolicy(policy: CompiledToolPolicy, call: CallContext): PolicyResult {
  const { request, user } = call.input;
  for (const rule of policy.rulesFor(request.tool)) {
    if (!subjectMatches(rule, user)) continue;
    const cond = evaluateConditions(rule, call);
    if ("error" in cond) {
      const why = `denied: condition ${cond.condition.label} of ToolPolicy ${policy.name} could not be evaluated (${cond.error}); a condition that cannot be evaluated denies`;
      return new PolicyResult(policy, "deny", rule, why, request.tool);
    }
    if (!cond.matched) continue;
    if (rule.validateArguments) {
      const problem = rule.validateArguments(request.arguments ?? {});
      if (problem !== undefined) {
        const why = `denied: ${problem} (the arguments schema of ${ruleName(policy, rule)})`;
        return new PolicyResult(policy, "deny", rule, why, request.tool);
      }
    }
    return new PolicyResult(policy, rule.action, rule, rule.reason, request.tool);
  }
  return new PolicyResult(policy, policy.defaultAction, null, null, request.tool);
}
