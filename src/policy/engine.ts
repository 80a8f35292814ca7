// The policy set: every loaded resource compiled once, indexed by server, and
// the decision function the gateway calls for each tool call. Pure: no I/O.
//
// Semantics (the README's "Decision semantics" documents exactly this):
//   1. A ToolPolicy applies when its agent and server selectors match the call.
//   2. Inside a policy the first rule whose tools, users/groups and conditions
//      all match decides; no match → the policy's defaultAction (default deny).
//   3. Across applicable enforce-mode policies: deny > require_approval > allow;
//      on a tie the policy loaded first gives the reason.
//   4. No applicable policy → the global default (deny unless configured).
//   5. A condition that cannot be evaluated denies, with the error as reason.
//   6. If only audit-mode policies apply, their combined decision is reported
//      with enforced: false (the call passes); alongside enforce-mode policies,
//      they only report what would change (dryRun).
import { canonicalDigest } from "../encoding/canonical-json.js";
import { checkArtifactPolicy } from "./artifact-policy.js";
import { ARTIFACT_POLICY_VARIABLES, TOOL_POLICY_VARIABLES } from "./cel/environments.js";
import { CelEnvironment, type CelLimits, DEFAULT_VALUE_LIMITS, type ValueLimits } from "./cel/runtime.js";
import {
  type ApprovalObligation,
  type Decision,
  type DecisionInput,
  type DryRun,
  type RateLimitObligation,
  SEVERITY,
} from "./decision.js";
import { type Diagnostic, formatDiagnostic, hasErrors } from "./diagnostics.js";
import { checkGuardrailPolicy } from "./guardrail-policy.js";
import { ArgumentSchemaCompiler } from "./json-schema.js";
import type { LoadedResource, LoadResult } from "./loader.js";
import {
  appliesTo,
  CallContext,
  type CompileContext,
  type CompiledToolPolicy,
  checkToolPolicyParts,
  compileToolPolicy,
  evaluatePolicy,
  type PolicyResult,
  subjectMatches,
} from "./tool-policy.js";

export interface EngineOptions {
  /** What happens to a call no policy applies to. Default deny. */
  defaultDecision?: "allow" | "deny";
  celLimits?: Partial<CelLimits>;
  valueLimits?: Partial<ValueLimits>;
}

export interface CompileResult {
  /** Present only when there are no errors: a policy set with errors is never used. */
  policySet?: PolicySet;
  diagnostics: Diagnostic[];
}

const SERVER_CACHE_LIMIT = 4096;

export function compilePolicySet(load: LoadResult, options: EngineOptions = {}): CompileResult {
  const diagnostics = [...load.diagnostics];
  const ctx: CompileContext = {
    cel: new CelEnvironment({ variables: TOOL_POLICY_VARIABLES, limits: options.celLimits }),
    schemas: new ArgumentSchemaCompiler(),
    diagnostics,
  };
  const artifactCel = new CelEnvironment({ variables: ARTIFACT_POLICY_VARIABLES, limits: options.celLimits });
  const toolPolicies: CompiledToolPolicy[] = [];
  const policies: LoadedResource[] = [];
  const tests: LoadedResource[] = [];
  for (const res of load.resources) {
    switch (res.kind) {
      case "ToolPolicy": {
        const p = compileToolPolicy(res, ctx);
        if (p) toolPolicies.push(p);
        policies.push(res);
        break;
      }
      case "GuardrailPolicy":
        checkGuardrailPolicy(res, ctx);
        policies.push(res);
        break;
      case "ArtifactPolicy":
        checkArtifactPolicy(res, ctx, artifactCel);
        policies.push(res);
        break;
      case "PolicyTest":
        tests.push(res);
        break;
    }
  }
  // Documents with errors are never compiled, but their valid parts are still checked, so that
  // one run reports every problem rather than one layer at a time.
  for (const res of load.partial ?? []) {
    if (res.kind === "ToolPolicy") checkToolPolicyParts(res, ctx);
    else if (res.kind === "GuardrailPolicy") checkGuardrailPolicy(res, ctx, false);
    else if (res.kind === "ArtifactPolicy") checkArtifactPolicy(res, ctx, artifactCel);
  }
  const unique = dedupe(diagnostics);
  if (hasErrors(unique)) return { diagnostics: unique };
  return { policySet: new PolicySet(toolPolicies, policies, tests, options), diagnostics: unique };
}

/** The same problem at the same place is reported once. */
function dedupe(diagnostics: readonly Diagnostic[]): Diagnostic[] {
  const seen = new Set<string>();
  return diagnostics.filter((d) => {
    const key = formatDiagnostic(d);
    if (seen.has(key)) return false;
    seen.add(key);
    return true;
  });
}

export class PolicySet {
  /** sha256 over the canonical JSON of every policy's kind, name and version, in load order. */
  readonly digest: string;
  readonly defaultDecision: "allow" | "deny";
  private readonly valueLimits: Readonly<ValueLimits>;
  private readonly byServer = new Map<string, CompiledToolPolicy[]>();
  private readonly anyServer: CompiledToolPolicy[] = [];
  private readonly serverCache = new Map<string, readonly CompiledToolPolicy[]>();

  constructor(
    readonly toolPolicies: readonly CompiledToolPolicy[],
    /** Every policy resource (all kinds but tests), in load order. */
    readonly resources: readonly LoadedResource[],
    readonly tests: readonly LoadedResource[],
    options: EngineOptions = {},
  ) {
    this.defaultDecision = options.defaultDecision ?? "deny";
    this.valueLimits = Object.freeze({ ...DEFAULT_VALUE_LIMITS, ...options.valueLimits });
    this.digest = canonicalDigest(resources.map((r) => ({ kind: r.kind, name: r.name, version: r.version })));
    for (const p of toolPolicies) {
      if (p.servers === null) this.anyServer.push(p);
      else
        for (const s of p.servers) {
          const list = this.byServer.get(s) ?? [];
          list.push(p);
          this.byServer.set(s, list);
        }
    }
  }

  /** Policies whose server selector matches, in load order. */
  policiesForServer(server: string): readonly CompiledToolPolicy[] {
    const hit = this.serverCache.get(server);
    if (hit) return hit;
    const specific = this.byServer.get(server) ?? [];
    const list =
      this.anyServer.length === 0
        ? specific
        : specific.length === 0
          ? this.anyServer
          : this.toolPolicies.filter((p) => p.servers === null || p.servers.has(server));
    if (this.serverCache.size < SERVER_CACHE_LIMIT) this.serverCache.set(server, list);
    return list;
  }

  /** Per-call evaluation state (CEL bindings, input limits), shared by the policies that evaluate one call. */
  newCall(input: DecisionInput): CallContext {
    return new CallContext(input, this.valueLimits);
  }

  /**
   * Decides one call. Never throws: malformed input or an unexpected failure
   * inside the engine is a deny that says so.
   */
  decide(input: DecisionInput): Decision {
    if (
      typeof input?.agent?.name !== "string" ||
      typeof input.request?.server !== "string" ||
      typeof input.request.tool !== "string"
    ) {
      return this.failure("the call has no agent name, server or tool");
    }
    try {
      return this.evaluate(input);
    } catch (err) {
      return this.failure(`internal error while deciding: ${err instanceof Error ? err.message : String(err)}`);
    }
  }

  private failure(why: string): Decision {
    return {
      decision: "deny",
      enforced: true,
      policy: null,
      version: null,
      policySet: this.digest,
      rule: null,
      reason: `denied: ${why}`,
      approval: null,
      obligations: { approvals: [], rateLimits: [] },
      dryRun: null,
    };
  }

  private evaluate(input: DecisionInput): Decision {
    const call = this.newCall(input);
    let best: PolicyResult | undefined;
    let bestAudit: PolicyResult | undefined;
    const enforced: PolicyResult[] = [];
    for (const policy of this.policiesForServer(input.request.server)) {
      if (!appliesTo(policy, input)) continue;
      const r = evaluatePolicy(policy, call);
      if (policy.mode === "audit") {
        if (!bestAudit || SEVERITY[r.action] > SEVERITY[bestAudit.action]) bestAudit = r;
        continue;
      }
      enforced.push(r);
      if (!best || SEVERITY[r.action] > SEVERITY[best.action]) best = r;
      if (r.action === "deny") break; // nothing can outrank it, and a deny carries no obligations
    }
    if (best) return this.result(best, true, enforced, bestAudit);
    if (bestAudit) return this.result(bestAudit, false, [], undefined);
    return {
      decision: this.defaultDecision,
      enforced: true,
      policy: null,
      version: null,
      policySet: this.digest,
      rule: null,
      reason: `${this.defaultDecision === "deny" ? "denied" : "allowed"}: no policy applies to agent "${input.agent.name}" on server "${input.request.server}"; the global default is ${this.defaultDecision}`,
      approval: null,
      obligations: { approvals: [], rateLimits: [] },
      dryRun: null,
    };
  }

  private result(
    winner: PolicyResult,
    isEnforced: boolean,
    enforced: readonly PolicyResult[],
    audit: PolicyResult | undefined,
  ): Decision {
    const approvals: ApprovalObligation[] = [];
    const rateLimits: RateLimitObligation[] = [];
    if (winner.action !== "deny") {
      for (const r of enforced) {
        if (r.action === "require_approval" && r.rule?.approval) approvals.push(r.rule.approval);
        if (r.rule?.rateLimit) rateLimits.push(r.rule.rateLimit);
      }
    }
    if (winner.action === "require_approval" && approvals.length === 0) {
      // A defaultAction of require_approval has no rule to carry an approval spec: use the defaults.
      approvals.push(defaultApproval(winner.policy));
    }
    let dryRun: DryRun | null = null;
    if (audit && SEVERITY[audit.action] > SEVERITY[winner.action]) {
      dryRun = {
        decision: audit.action,
        policy: audit.policy.name,
        version: audit.policy.version,
        rule: audit.rule?.ref ?? null,
        reason: audit.reason,
      };
    }
    return {
      decision: winner.action,
      enforced: isEnforced,
      policy: winner.policy.name,
      version: winner.policy.version,
      policySet: this.digest,
      rule: winner.rule?.ref ?? null,
      reason: winner.reason,
      approval: winner.action === "require_approval" ? (approvals[0] ?? null) : null,
      obligations: { approvals: winner.action === "require_approval" ? approvals : [], rateLimits },
      dryRun,
    };
  }

  /**
   * Whether some call to this tool by this caller could be allowed or sent for
   * approval — the test for listing a tool in tools/list. Conditions are
   * assumed to be able to go either way; an unconditional deny cannot.
   */
  couldPermit(input: Pick<DecisionInput, "agent" | "user"> & { request: { server: string; tool: string } }): boolean {
    let anyEnforced = false;
    let anyAudit = false;
    for (const policy of this.policiesForServer(input.request.server)) {
      if (!appliesTo(policy, input)) continue;
      if (policy.mode === "audit") {
        anyAudit = true;
        continue;
      }
      anyEnforced = true;
      if (!policyCouldPermit(policy, input)) return false;
    }
    if (anyEnforced || anyAudit) return true;
    return this.defaultDecision === "allow";
  }
}

function policyCouldPermit(
  policy: CompiledToolPolicy,
  input: Pick<DecisionInput, "user"> & { request: { tool: string } },
) {
  for (const rule of policy.rulesFor(input.request.tool)) {
    if (!subjectMatches(rule, input.user)) continue;
    if (rule.action !== "deny") return true;
    if (rule.conditions.length === 0) return false;
  }
  return policy.defaultAction !== "deny";
}

function defaultApproval(policy: CompiledToolPolicy): ApprovalObligation {
  return {
    policy: policy.name,
    version: policy.version,
    rule: null,
    type: "human-in-the-loop",
    timeout: "5m",
    timeoutMs: 300_000,
    approvers: { users: [], groups: [] },
    allowSelfApproval: false,
  };
}
