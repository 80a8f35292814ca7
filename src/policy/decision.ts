// What a decision is asked about and what it answers. These shapes are the
// `warden policy eval` contract and what the gateway hands to the audit log.
import type { Action, RateLimitKey } from "./resources.js";

export interface DecisionInput {
  agent: { name: string; labels?: Record<string, string>; model?: string; vendor?: string };
  user?: { id?: string; groups?: string[]; claims?: Record<string, unknown> };
  request: { server: string; tool: string; arguments?: Record<string, unknown>; method?: string };
  session?: { id?: string; calls?: Record<string, number>; labels?: Record<string, string> };
  /** Evaluation time in ms since the epoch; defaults to the clock. */
  now?: number;
}

export interface RuleRef {
  /** 0-based position in the policy's rules. */
  index: number;
  name: string | null;
}

export interface ApprovalObligation {
  policy: string;
  version: string;
  rule: RuleRef | null;
  type: "human-in-the-loop" | "elicitation";
  timeout: string;
  timeoutMs: number;
  approvers: { users: string[]; groups: string[] };
  allowSelfApproval: boolean;
}

export interface RateLimitObligation {
  policy: string;
  version: string;
  rule: RuleRef;
  requests: number;
  per: string;
  perMs: number;
  key: RateLimitKey;
}

export interface DryRun {
  decision: Action;
  policy: string | null;
  version: string | null;
  rule: RuleRef | null;
  reason: string;
}

export interface Decision {
  decision: Action;
  /** False when only audit-mode policies applied: the gateway logs the decision and lets the call pass. */
  enforced: boolean;
  policy: string | null;
  version: string | null;
  policySet: string;
  rule: RuleRef | null;
  reason: string;
  /** The first approval obligation, for convenience; all of them are in obligations.approvals. */
  approval: ApprovalObligation | null;
  obligations: { approvals: ApprovalObligation[]; rateLimits: RateLimitObligation[] };
  /** What audit-mode policies would change if they were enforced; null when nothing. */
  dryRun: DryRun | null;
}

export const SEVERITY: Readonly<Record<Action, number>> = { allow: 0, require_approval: 1, deny: 2 };

type Check = (v: unknown, path: string) => string | undefined;

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === "object" && v !== null && !Array.isArray(v);
const str: Check = (v, p) => (typeof v === "string" ? undefined : `${p} must be a string`);
const nonEmpty: Check = (v, p) => (typeof v === "string" && v !== "" ? undefined : `${p} must be a non-empty string`);
const strList: Check = (v, p) =>
  Array.isArray(v) && v.every((x) => typeof x === "string") ? undefined : `${p} must be a list of strings`;
const strMap: Check = (v, p) =>
  isObject(v) && Object.values(v).every((x) => typeof x === "string") ? undefined : `${p} must be an object of strings`;
const anyObject: Check = (v, p) => (isObject(v) ? undefined : `${p} must be an object`);
const countMap: Check = (v, p) =>
  isObject(v) && Object.values(v).every((x) => typeof x === "number" && Number.isSafeInteger(x) && x >= 0)
    ? undefined
    : `${p} must be an object of non-negative whole numbers`;

const SHAPE: Record<string, { required?: string[]; fields: Record<string, Check> }> = {
  agent: { required: ["name"], fields: { name: nonEmpty, labels: strMap, model: str, vendor: str } },
  user: { fields: { id: str, groups: strList, claims: anyObject } },
  request: {
    required: ["server", "tool"],
    fields: { server: nonEmpty, tool: nonEmpty, arguments: anyObject, method: nonEmpty },
  },
  session: { fields: { id: str, calls: countMap, labels: strMap } },
};

/**
 * Checks a parsed JSON value against the DecisionInput shape. Unknown fields are
 * errors (a misspelt "agnet" must not silently become "no agent").
 */
export function parseDecisionInput(value: unknown): DecisionInput | { error: string } {
  if (!isObject(value)) return { error: "input must be a JSON object" };
  for (const key of Object.keys(value)) {
    if (!(key in SHAPE) && key !== "now") {
      return { error: `unknown input field "${key}"; the fields are agent, user, request, session, now` };
    }
  }
  for (const [section, shape] of Object.entries(SHAPE)) {
    const v = value[section];
    if (v === undefined) {
      if (shape.required) return { error: `input needs "${section}"` };
      continue;
    }
    if (!isObject(v)) return { error: `${section} must be an object` };
    for (const r of shape.required ?? []) if (v[r] === undefined) return { error: `input needs ${section}.${r}` };
    for (const [k, fv] of Object.entries(v)) {
      const check = shape.fields[k];
      if (!check) {
        return { error: `unknown field ${section}.${k}; ${section} has ${Object.keys(shape.fields).join(", ")}` };
      }
      const problem = check(fv, `${section}.${k}`);
      if (problem) return { error: problem };
    }
  }
  let now: number | undefined;
  if (value.now !== undefined) {
    const t = typeof value.now === "string" ? Date.parse(value.now) : Number.NaN;
    if (!Number.isFinite(t)) return { error: "now must be an RFC 3339 timestamp such as 2026-01-31T12:00:00Z" };
    now = t;
  }
  const input = value as unknown as DecisionInput;
  return now === undefined ? input : { ...input, now };
}
