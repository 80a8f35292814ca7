// The decision pipeline for one tool call, in the order DESIGN.md §2 gives:
// policy decision → (approval) → rate limit → the tool's own inputSchema →
// durable audit record → forward. Every refusal says why, and is recorded
// before the agent hears about it. Nothing here forwards anything: the session
// does that, and only when this says so.
//
// One call is decided under one snapshot of the policy (the set and the signed
// bundle it came from, taken together), and its records name that snapshot. A
// call held for approval while the policy changed is decided again under the
// policy now in force before it may run (see decideCall).
import type { AuditLog } from "../audit/log.js";
import { type AuditEvent, decisionEvent } from "../audit/record.js";
import type { Decision, DecisionInput } from "../policy/decision.js";
import type { Identity } from "./identity.js";
import type { PolicyInForce, PolicyProvider } from "./policy-source.js";
import { describeRefusal, type RateLimiter } from "./rate-limit.js";
import type { ToolDefinition } from "./tool-catalog.js";
import type { UpstreamConnection } from "./upstream.js";

/** Asks a human; built in the approvals module. Without one, require_approval is a deny. */
export interface ApprovalChannel {
  request(call: PendingCall, decision: Decision, hold?: HoldContext): Promise<ApprovalOutcome>;
  /** How a call the channel approved ended ("success", "tool-error", "cancelled", "not forwarded: ..."). */
  completed?(approvalId: string, outcome: string): void;
  /** Ends every held call (each gets a tool error) before the audit log closes. */
  close?(): Promise<void>;
}

export interface ApprovalOutcome {
  approved: boolean;
  reason: string;
  by?: string;
  /** The approval request (or grant) that decided, for the decision record and the outcome. */
  id?: string;
  /** What the decision record's `approval` field carries. */
  record?: Record<string, unknown>;
}

/** What the session offers a held call: cancellation, progress to the client, and elicitation. */
export interface HoldContext {
  /** Aborted when the client cancels the request (notifications/cancelled) or the session ends. */
  signal: AbortSignal;
  /** Present when the client sent a progress token: sends notifications/progress. */
  progress?: (message: string) => void;
  /** Present when the client declared the elicitation capability: asks the user (elicitation/create). */
  elicit?: (
    message: string,
    requestedSchema: Record<string, unknown>,
    signal: AbortSignal,
  ) => Promise<{ action: string; content?: Record<string, unknown> }>;
}

export interface CallRequest {
  identity: Identity;
  sessionId: string;
  /** Calls this session made so far, by tool (session.calls in CEL). */
  sessionCalls: Record<string, number>;
  upstream: UpstreamConnection;
  tool: string;
  /** The name as the client wrote it (prefixed on the aggregate endpoint), for answers to the client. */
  displayName?: string;
  arguments: Record<string, unknown>;
  /** For a call that may be held for approval. */
  hold?: HoldContext;
}

export interface PendingCall {
  input: DecisionInput;
  identity: Identity;
  /** The signed bundle of the policy set that decided (reference@digest), null for policy files; for the approval records. */
  bundle?: string | null;
}

/** Why a call was refused, in words for the agent; "hidden" answers look the same as a tool that does not exist. */
export type Verdict =
  | {
      forward: true;
      input: DecisionInput;
      decision: Decision;
      /** The policy snapshot `decision` was made under: its bundle goes into the outcome record. */
      policy: PolicyInForce;
      recordId: string;
      startedMs: number;
      /** The approval request that let the call through, if one did. */
      approvalId?: string;
    }
  | { forward: false; message: string };

export interface GovernorOptions {
  policy: PolicyProvider;
  audit: AuditLog;
  limiter: RateLimiter;
  approvals?: ApprovalChannel;
}

type Stage = "policy" | "unknown-tool" | "input-schema" | "rate-limit" | "approval" | "policy-changed";

/** What the agent is told about a tool it may not see, or that does not exist: the same words for both. */
export function notAvailable(tool: string): string {
  return `Tool "${tool}" is not available.`;
}

export class Governor {
  constructor(private readonly o: GovernorOptions) {}

  get policy(): PolicyProvider {
    return this.o.policy;
  }

  decisionInput(
    req: Pick<CallRequest, "identity" | "sessionId" | "sessionCalls" | "upstream" | "tool" | "arguments">,
  ): DecisionInput {
    const { identity } = req;
    const input: DecisionInput = {
      agent: identity.agent,
      request: { server: req.upstream.name, tool: req.tool, arguments: req.arguments, method: "tools/call" },
      session: { id: req.sessionId, calls: req.sessionCalls },
    };
    if (identity.user) input.user = identity.user;
    return input;
  }

  /**
   * Decides one call and records the decision. The policy is read once, as one
   * snapshot ({set, bundle}); the decision record and the outcome record name
   * that snapshot. Two exceptions, both recorded as such:
   * - Audit mode (only audit-mode policies applied): every check enforcement
   *   would make is made (exact tool name, the tool's inputSchema; the rule's
   *   arguments schema is part of the policy decision) and the record's
   *   decision and reason say what enforcement would have done, but the call is
   *   forwarded — unless the upstream has no tool by exactly that name: that is
   *   not a policy question, and such a call is never forwarded.
   * - A call held for approval while the policy changed is decided again under
   *   the policy now in force once approved. It runs only if that policy allows
   *   it, or asks for the very same approval (same policy version, rule and
   *   approvers); otherwise it is denied ("the policy changed while the call was
   *   held"). The record names the policy now in force, and `detail.heldUnder`
   *   the one the call was held under.
   */
  async decideCall(req: CallRequest): Promise<Verdict> {
    const startedMs = performance.now();
    let policy = this.o.policy.inForce();
    const input = this.decisionInput(req);
    let decision = policy.set.decide(input);
    let verdict = decision.decision;
    let enforced = decision.enforced;
    let stage: Stage = "policy";
    let reason = decision.reason;
    let hidden = false;
    let approval: Record<string, unknown> | null = null;
    let approvalId: string | undefined;
    let heldUnder: Record<string, unknown> | undefined;

    if (decision.enforced) {
      if (verdict !== "deny") {
        const tool = await req.upstream.catalog.lookup(req.tool);
        if (!tool) {
          [verdict, stage, hidden] = ["deny", "unknown-tool", true];
          reason = unknownTool(req);
        } else {
          const refusal = this.precheck(req, input, decision, tool);
          if (refusal) [verdict, stage, reason] = ["deny", refusal.stage, refusal.reason];
        }
      } else if (!policy.set.couldPermit(input)) {
        hidden = true;
      }
      if (verdict === "require_approval") {
        const outcome = await this.approve(input, req.identity, decision, policy.bundle, req.hold);
        approval = outcome.record;
        approvalId = outcome.id;
        [verdict, stage, reason] = outcome.approved
          ? ["allow", "approval", outcome.reason]
          : ["deny", "approval", outcome.reason];
        const now = outcome.approved ? this.o.policy.inForce() : policy;
        if (now !== policy && now.set.digest !== policy.set.digest) {
          // The policy changed while the call was held: the approval answered a question the
          // policy in force may no longer ask. Decide again under the policy now in force.
          const asked = decision;
          heldUnder = {
            set: policy.set.digest,
            bundle: policy.bundle,
            policy: asked.policy,
            version: asked.version,
            rule: asked.rule,
            decision: asked.decision,
          };
          policy = now;
          decision = now.set.decide(input);
          enforced = decision.enforced;
          const changed = afterPolicyChange(asked, decision, outcome.reason);
          [verdict, stage, reason] = [changed.verdict, changed.stage, changed.reason];
        }
        // An approved call still spends rate-limit budget.
        const refused =
          verdict === "allow" && enforced ? this.o.limiter.take(decision.obligations.rateLimits, input) : undefined;
        if (refused) [verdict, stage, reason] = ["deny", "rate-limit", `denied: ${describeRefusal(refused)}`];
      }
    } else {
      // Audit mode: the same checks, recorded, without refusing — except a tool name the
      // upstream does not have exactly (a look-alike), which is never forwarded.
      const tool = await req.upstream.catalog.lookup(req.tool);
      if (!tool) {
        [verdict, stage, hidden, enforced] = ["deny", "unknown-tool", true, true];
        reason = unknownTool(req);
      } else if (verdict !== "deny") {
        const problem = req.upstream.catalog.check(req.tool, req.arguments);
        if (problem !== undefined) [verdict, stage, reason] = ["deny", "input-schema", `denied: ${problem}`];
        // Rate limits: an audit-mode decision carries none (only enforce-mode rules spend budget).
      }
    }

    const latencyUs = Math.round((performance.now() - startedMs) * 1000);
    const event = decisionEvent(decision, input, {
      bundle: policy.bundle,
      latencyUs,
      session: req.sessionId,
    });
    event.decision = verdict;
    event.enforced = enforced;
    event.reason = reason;
    if (approval) event.approval = approval;
    const detail: Record<string, unknown> = { ...(event.detail ?? {}) };
    if (stage !== "policy" || verdict !== decision.decision) {
      detail.stage = stage;
      detail.policyDecision = decision.decision;
    }
    if (enforced !== decision.enforced) detail.policyEnforced = decision.enforced;
    if (heldUnder) detail.heldUnder = heldUnder;
    detail.via = req.identity.via;
    event.detail = detail;
    let recordId: string;
    try {
      recordId = (await this.o.audit.append(event)).id;
    } catch (err) {
      if (approvalId) this.o.approvals?.completed?.(approvalId, "not forwarded: the audit log is unavailable");
      return {
        forward: false,
        message: `Denied: the audit log is unavailable (${(err as Error).message}); Warden refuses calls it cannot record.`,
      };
    }
    const passes = verdict === "allow" || !enforced;
    if (passes) return { forward: true, input, decision, policy, recordId, startedMs, approvalId };
    if (approvalId && approval?.outcome === "approved") {
      this.o.approvals?.completed?.(approvalId, `not forwarded: ${reason}`);
    }
    return { forward: false, message: hidden ? notAvailable(req.displayName ?? req.tool) : agentReason(reason) };
  }

  /** Checks that need the tool's definition or spend budget: inputSchema, then rate limits. */
  private precheck(
    req: CallRequest,
    input: DecisionInput,
    decision: Decision,
    _tool: ToolDefinition,
  ): { stage: Stage; reason: string } | undefined {
    const schemaProblem = req.upstream.catalog.check(req.tool, req.arguments);
    if (schemaProblem !== undefined) return { stage: "input-schema", reason: `denied: ${schemaProblem}` };
    if (decision.decision === "allow") {
      const refused = this.o.limiter.take(decision.obligations.rateLimits, input);
      if (refused) return { stage: "rate-limit", reason: `denied: ${describeRefusal(refused)}` };
    }
    return undefined;
  }

  private async approve(
    input: DecisionInput,
    identity: Identity,
    decision: Decision,
    bundle: string | null,
    hold: HoldContext | undefined,
  ): Promise<{ approved: boolean; reason: string; record: Record<string, unknown> | null; id?: string }> {
    const channel = this.o.approvals;
    if (!channel) {
      return {
        approved: false,
        reason: `denied: ${decision.reason}, and no approval channel is configured on this gateway, so the call cannot be approved (fail closed)`,
        record: null,
      };
    }
    try {
      const r = await channel.request({ input, identity, bundle }, decision, hold);
      if (r.approved) {
        return {
          approved: true,
          reason: `approved${r.by ? ` by ${r.by}` : ""}: ${r.reason}`,
          record: { outcome: "approved", by: r.by ?? null, ...r.record },
          id: r.id,
        };
      }
      return {
        approved: false,
        reason: `denied: ${r.reason}`,
        record: { outcome: "denied", by: r.by ?? null, ...r.record },
        id: r.id,
      };
    } catch (err) {
      return {
        approved: false,
        reason: `denied: the approval could not be obtained (${(err as Error).message})`,
        record: { outcome: "failed" },
      };
    }
  }

  /** Records how a forwarded call ended; failures to record are reported, and the log then refuses further calls. */
  recordOutcome(
    v: Extract<Verdict, { forward: true }>,
    outcome: { status: "success" | "tool-error" | "upstream-error" | "cancelled"; error?: string },
  ): void {
    const durationMs = Math.round((performance.now() - v.startedMs) * 1000) / 1000;
    const event: AuditEvent = {
      type: "outcome",
      agent: { name: v.input.agent.name },
      user: v.input.user ? { id: v.input.user.id, groups: v.input.user.groups } : null,
      session: v.input.session?.id ?? null,
      server: v.input.request.server,
      tool: v.input.request.tool,
      decision: v.decision.decision,
      enforced: v.decision.enforced,
      policy: {
        name: v.decision.policy,
        version: v.decision.version,
        set: v.decision.policySet,
        bundle: v.policy.bundle,
      },
      reason: outcome.error ?? null,
      detail: { status: outcome.status, durationMs, decisionId: v.recordId },
    };
    if (event.user && event.user.id === undefined) delete event.user.id;
    if (event.user && event.user.groups === undefined) delete event.user.groups;
    if (v.approvalId) {
      this.o.approvals?.completed?.(
        v.approvalId,
        outcome.error ? `${outcome.status}: ${outcome.error}` : outcome.status,
      );
    }
    // The decision record is already durable; the outcome rides with the next commit (at most
    // LAZY_COMMIT_MS later) instead of costing a sync of its own.
    this.o.audit.append(event, { lazy: true }).catch(() => {
      // The log is now failed; the next call's decision record will fail and deny it.
    });
  }

  /** Appends a record that is not about one call (lifecycle, refused requests); never throws. */
  async record(event: AuditEvent): Promise<boolean> {
    try {
      await this.o.audit.append(event);
      return true;
    } catch {
      return false;
    }
  }
}

function unknownTool(req: CallRequest): string {
  return `denied: upstream ${req.upstream.name} has no tool named exactly "${req.tool}"`;
}

/**
 * What becomes of an approved call when the policy changed while it was held,
 * given the decision of the policy now in force. It runs if that policy allows
 * it, asks for exactly the approval that was given (the same obligations: policy
 * version, rule, type, approvers), or is audit-mode only (which lets calls
 * through); otherwise it is denied, saying why.
 */
function afterPolicyChange(
  asked: Decision,
  now: Decision,
  approved: string,
): { verdict: Decision["decision"]; stage: Stage; reason: string } {
  const why = "the policy changed while the call was held";
  if (!now.enforced)
    return {
      verdict: now.decision,
      stage: "policy-changed",
      reason: `${approved}; ${why}, and only audit-mode policies apply now (${now.reason})`,
    };
  if (now.decision === "allow")
    return {
      verdict: "allow",
      stage: "approval",
      reason: `${approved}; ${why}, and the policy now in force allows it`,
    };
  if (now.decision === "require_approval" && sameApprovals(asked, now))
    return {
      verdict: "allow",
      stage: "approval",
      reason: `${approved}; ${why}, and the policy now in force requires the same approval`,
    };
  if (now.decision === "require_approval")
    return {
      verdict: "deny",
      stage: "policy-changed",
      reason: `denied: ${why}, and the policy now in force requires a different approval (${now.reason}); the call was not run — call again to ask for it`,
    };
  return { verdict: "deny", stage: "policy-changed", reason: `denied: ${why}: ${now.reason.replace(/^denied: /, "")}` };
}

function sameApprovals(a: Decision, b: Decision): boolean {
  return JSON.stringify(a.obligations.approvals) === JSON.stringify(b.obligations.approvals);
}

/** The reason as the agent sees it: the policy's words, without the internal "denied:" prefix. */
function agentReason(reason: string): string {
  return `Denied: ${reason.replace(/^denied: /, "")}`;
}
