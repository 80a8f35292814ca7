// The shapes of approvals: requests a held call waits on, grants that let a
// tool through for a while, and the people who decide. Shared by the stores,
// the service, the HTTP API, the web page and the CLI.
import { randomBytes } from "node:crypto";

/**
 * pending → approved | denied | expired | withdrawn, once. A request never
 * leaves a final state, and only the gateway process that holds the call
 * (its `holder`) ever forwards it, so a request decided after its holder is
 * gone is never executed.
 */
export const STATES = ["pending", "approved", "denied", "expired", "withdrawn"] as const;
export type ApprovalState = (typeof STATES)[number];
export type FinalState = Exclude<ApprovalState, "pending">;

/** What the approver must be, merged from every approval obligation of the decision. */
export interface ApprovalRequirement {
  type: "human-in-the-loop" | "elicitation";
  /** Each entry is one obligation's approvers; an approver must satisfy every entry. Empty entry: anyone. */
  approvers: { users: string[]; groups: string[] }[];
  allowSelfApproval: boolean;
  timeoutMs: number;
}

/** The immutable facts of a request, stored as one JSON document. */
export interface RequestDetails {
  agent: { name: string; labels?: Record<string, string> };
  user: { id?: string; groups?: string[] } | null;
  /** How the requester authenticated (e.g. "api-key:ci", "flags"). */
  via: string;
  session: string | null;
  server: string;
  tool: string;
  /** The arguments as the audit log's redaction settings store them (null in digest mode). */
  arguments: unknown;
  argumentsDigest: string | null;
  /** The deciding policy; `bundle` is the signed bundle (reference@digest) its set came from, null for files (absent in requests stored before it was recorded). */
  policy: { name: string | null; version: string | null; set: string | null; bundle?: string | null };
  rule: { index: number; name: string | null } | null;
  reason: string;
  requirement: ApprovalRequirement;
}

export interface ApprovalRequest {
  id: string;
  state: ApprovalState;
  createdAt: number;
  expiresAt: number;
  /** The gateway process holding the call, and the node (host and data directory) it runs as. */
  holder: string;
  node: string;
  details: RequestDetails;
  decidedAt: number | null;
  decidedBy: string | null;
  decidedVia: string | null;
  decisionReason: string | null;
  /** An approval "for DURATION": the grant it created. */
  grantId: string | null;
  /**
   * How the call ended: as the holder reported it (an approved call's result,
   * "not forwarded: …", "not run: denied"), or "not run: the gateway holding
   * the call … before it saw the decision" when it was decided after its holder
   * was gone. Null: the holder has not taken note of the end (yet).
   */
  outcome: string | null;
}

export interface Grant {
  id: string;
  createdAt: number;
  expiresAt: number;
  server: string;
  tool: string;
  agent: string;
  /** The user the grant is for; null when the requester had none. */
  userId: string | null;
  createdBy: string;
  createdByGroups: string[];
  createdVia: string;
  requestId: string | null;
  reason: string | null;
  revokedAt: number | null;
  revokedBy: string | null;
  revokeReason: string | null;
  /** How the revoker authenticated ("api-key:ops", "os:alice"); null for revocations stored before it was kept. */
  revokedVia: string | null;
  uses: number;
}

/** Someone who decides: authenticated by the gateway (API key, JWT), the operating system (local CLI), or the MCP client (elicitation). */
export interface Approver {
  id: string;
  groups: string[];
  /** How they authenticated: "api-key:ops", "jwt:https://idp", "os:alice", "elicitation". */
  via: string;
}

export class ApprovalStoreError extends Error {
  override name = "ApprovalStoreError";
}

/** A refusal the caller can act on (bad id, not allowed, already decided); `status` is the HTTP status for the API. */
export class ApprovalError extends Error {
  override name = "ApprovalError";
  constructor(
    message: string,
    readonly status: 400 | 403 | 404 | 409 | 503,
  ) {
    super(message);
  }
}

const ALPHABET = "abcdefghijkmnpqrstuvwxyz23456789";

/** A short random id that is easy to type: "apr_" and 12 characters (about 60 bits). */
export function newId(prefix: "apr" | "grt" | "gw"): string {
  const bytes = randomBytes(12);
  let s = "";
  for (const b of bytes) s += ALPHABET[b % ALPHABET.length];
  return `${prefix}_${s}`;
}

export const ID_PATTERN = /^(apr|grt)_[a-z0-9]{6,40}$/;
