// Who may decide a request, and the decision itself as one conditional store
// update. Shared by the gateway (HTTP API, web page) and by `warden approvals`
// working on a local store, so both refuse the same things for the same reasons.
import type { ApprovalObligation } from "../policy/decision.js";
import type { ApprovalStore } from "./store.js";
import type { ApprovalRequest, ApprovalRequirement, Approver, Grant, RequestDetails } from "./types.js";
import { ApprovalError, newId } from "./types.js";

export type ApproverSet = { users: string[]; groups: string[] };

/** Merges a decision's approval obligations: every one must be satisfied, so the strictest wins. */
export function requirementFrom(
  obligations: readonly ApprovalObligation[],
  defaults?: ApproverSet,
): ApprovalRequirement {
  const fill = (a: ApproverSet): ApproverSet =>
    a.users.length === 0 && a.groups.length === 0 && defaults
      ? { users: [...defaults.users], groups: [...defaults.groups] }
      : a;
  const list = obligations.length > 0 ? obligations : [];
  return {
    type: list.length > 0 && list.every((o) => o.type === "elicitation") ? "elicitation" : "human-in-the-loop",
    approvers:
      list.length > 0
        ? list.map((o) => fill({ users: [...o.approvers.users], groups: [...o.approvers.groups] }))
        : [fill({ users: [], groups: [] })],
    allowSelfApproval: list.length > 0 && list.every((o) => o.allowSelfApproval),
    timeoutMs: list.length > 0 ? Math.min(...list.map((o) => o.timeoutMs)) : 300_000,
  };
}

/** Why this approver may not approve (or deny) a request with these details; undefined when they may. */
export function refusal(details: RequestDetails, approver: Approver, action: "approve" | "deny"): string | undefined {
  if (!approver.id) return "approvers are users: this credential carries no user id";
  const self =
    (details.user?.id !== undefined && details.user.id === approver.id) ||
    (details.via === approver.via && !approver.via.startsWith("os:"));
  // Anyone may turn down their own call; nobody approves it unless the rule allows it.
  if (self && action === "deny") return undefined;
  // The anonymous identity (loopback development) is whoever can reach the port: not an approver.
  if (approver.via === "anonymous") {
    return "approvers must authenticate with an API key or a JWT; the anonymous identity may only turn down its own calls";
  }
  if (self && !details.requirement.allowSelfApproval) {
    return `${approver.id} made this call (or holds the credential that did) and may not approve it: the rule does not allow self-approval`;
  }
  for (const set of details.requirement.approvers) {
    if (set.users.length === 0 && set.groups.length === 0) continue;
    const ok = set.users.includes(approver.id) || approver.groups.some((g) => set.groups.includes(g));
    if (!ok) {
      const who = [
        set.users.length > 0 ? `users ${set.users.join(", ")}` : "",
        set.groups.length > 0 ? `groups ${set.groups.join(", ")}` : "",
      ]
        .filter(Boolean)
        .join(" or ");
      return `${approver.id} is not an approver for this call (the policy names ${who})`;
    }
  }
  return undefined;
}

/** Whether a grant still stands for a call with these details: its creator must still be allowed to approve it. */
export function grantCovers(grant: Grant, details: RequestDetails): boolean {
  return (
    refusal(details, { id: grant.createdBy, groups: grant.createdByGroups, via: grant.createdVia }, "approve") ===
    undefined
  );
}

export const MAX_GRANT_MS = 30 * 86_400_000;

export interface DecideOptions {
  reason?: string;
  /** Approve the tool for this agent (and user) for this long. */
  forMs?: number;
  now?: number;
  /** How long a holder may go unseen before its requests count as abandoned. */
  leaseMs: number;
}

/** Approves or denies a pending request; throws ApprovalError with a reason the approver can act on. */
export async function decide(
  store: ApprovalStore,
  id: string,
  action: "approve" | "deny",
  approver: Approver,
  o: DecideOptions,
): Promise<ApprovalRequest> {
  const now = o.now ?? Date.now();
  const current = await store.get(id);
  if (!current) throw new ApprovalError(`no approval request ${id}`, 404);
  if (current.state !== "pending") throw new ApprovalError(alreadyFinal(current), 409);
  const why = refusal(current.details, approver, action);
  if (why) throw new ApprovalError(`refused: ${why}`, 403);
  if (o.forMs !== undefined && action !== "approve") throw new ApprovalError("--for applies to approve only", 400);
  if (o.forMs !== undefined && (!Number.isSafeInteger(o.forMs) || o.forMs < 1000 || o.forMs > MAX_GRANT_MS)) {
    throw new ApprovalError("a grant lasts between 1s and 30d", 400);
  }
  const reason = o.reason?.slice(0, 1000) || null;
  const d = current.details;
  const result = await store.transition(
    id,
    action === "approve" ? "approved" : "denied",
    {
      by: approver.id,
      via: approver.via,
      reason,
      grant:
        action === "approve" && o.forMs !== undefined
          ? {
              id: newId("grt"),
              createdAt: now,
              expiresAt: now + o.forMs,
              server: d.server,
              tool: d.tool,
              agent: d.agent.name,
              userId: d.user?.id ?? null,
              createdBy: approver.id,
              createdByGroups: approver.groups,
              createdVia: approver.via,
              requestId: id,
              reason,
            }
          : undefined,
    },
    now,
    { holderLeaseMs: o.leaseMs },
  );
  if (!result.request) throw new ApprovalError(`no approval request ${id}`, 404);
  if (!result.changed) throw new ApprovalError(alreadyFinal(result.request), 409);
  return result.request;
}

/**
 * Ends a grant now. Allowed to the grant's creator, and to whoever could
 * decide the request that created it under that request's approver rule (its
 * approvers; the requester, who may always turn down their own access).
 * `recorded`: the caller writes the grant-revoked audit record itself;
 * otherwise a gateway using the store records it (claimRevocations).
 */
export async function revoke(
  store: ApprovalStore,
  id: string,
  approver: Approver,
  o: { reason?: string; recorded: boolean; now?: number },
): Promise<Grant> {
  const existing = await store.getGrant(id);
  if (!existing) throw new ApprovalError(`no grant ${id}`, 404);
  const why = await revokeRefusal(store, existing, approver);
  if (why) throw new ApprovalError(`refused: ${why}`, 403);
  const r = await store.revokeGrant(
    id,
    { id: approver.id, via: approver.via },
    o.reason?.slice(0, 1000) || null,
    o.now ?? Date.now(),
    o.recorded,
  );
  if (!r.grant) throw new ApprovalError(`no grant ${id}`, 404);
  if (!r.changed) throw new ApprovalError(`grant ${id} was already revoked by ${r.grant.revokedBy}`, 409);
  return r.grant;
}

async function revokeRefusal(store: ApprovalStore, grant: Grant, approver: Approver): Promise<string | undefined> {
  if (!approver.id) return "this credential carries no user id";
  if (approver.id === grant.createdBy && approver.via !== "anonymous") return undefined;
  const request = grant.requestId ? await store.get(grant.requestId) : null;
  if (!request) return `${approver.id} did not create grant ${grant.id} (created by ${grant.createdBy})`;
  const why = refusal(request.details, approver, "deny");
  return why
    ? `${approver.id} may not revoke grant ${grant.id}: it was created by ${grant.createdBy}, and ${why.replace(/ for this call /, ` for ${grant.tool} on ${grant.server} `)}`
    : undefined;
}

export function alreadyFinal(r: ApprovalRequest): string {
  const by = r.decidedBy ? ` by ${r.decidedBy}` : "";
  const why = r.decisionReason ? `: ${r.decisionReason}` : "";
  return `request ${r.id} is already ${r.state}${by}${why}`;
}
