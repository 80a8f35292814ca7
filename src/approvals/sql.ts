// The tables both stores share, and row → object mapping. Times are
// milliseconds since the epoch (BIGINT in PostgreSQL, INTEGER in SQLite).
import type { ApprovalRequest, ApprovalState, Grant, RequestDetails } from "./types.js";

export const SCHEMA_VERSION = 1;

/** Statements creating the tables; `bigint` is BIGINT in PostgreSQL and INTEGER in SQLite. */
export function schemaStatements(bigint: string): string[] {
  return [
    `CREATE TABLE IF NOT EXISTS approval_requests (
      id TEXT PRIMARY KEY,
      state TEXT NOT NULL CHECK (state IN ('pending','approved','denied','expired','withdrawn')),
      created_at ${bigint} NOT NULL,
      expires_at ${bigint} NOT NULL,
      holder TEXT NOT NULL,
      node TEXT NOT NULL,
      server TEXT NOT NULL,
      tool TEXT NOT NULL,
      agent TEXT NOT NULL,
      user_id TEXT,
      details TEXT NOT NULL,
      decided_at ${bigint},
      decided_by TEXT,
      decided_via TEXT,
      decision_reason TEXT,
      grant_id TEXT,
      outcome TEXT
    )`,
    "CREATE INDEX IF NOT EXISTS approval_requests_state ON approval_requests (state, expires_at)",
    "CREATE INDEX IF NOT EXISTS approval_requests_created ON approval_requests (created_at)",
    `CREATE TABLE IF NOT EXISTS approval_grants (
      id TEXT PRIMARY KEY,
      created_at ${bigint} NOT NULL,
      expires_at ${bigint} NOT NULL,
      server TEXT NOT NULL,
      tool TEXT NOT NULL,
      agent TEXT NOT NULL,
      user_id TEXT,
      created_by TEXT NOT NULL,
      created_by_groups TEXT NOT NULL,
      created_via TEXT NOT NULL,
      request_id TEXT,
      reason TEXT,
      revoked_at ${bigint},
      revoked_by TEXT,
      revoke_reason TEXT,
      uses ${bigint} NOT NULL DEFAULT 0,
      revoked_via TEXT,
      revoke_recorded_at ${bigint}
    )`,
    "CREATE INDEX IF NOT EXISTS approval_grants_lookup ON approval_grants (server, tool, agent)",
    `CREATE TABLE IF NOT EXISTS approval_instances (
      id TEXT PRIMARY KEY,
      node TEXT NOT NULL,
      started_at ${bigint} NOT NULL,
      heartbeat_at ${bigint} NOT NULL
    )`,
    "CREATE TABLE IF NOT EXISTS approval_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
  ];
}

export const REQUEST_COLUMNS =
  "id, state, created_at, expires_at, holder, node, details, decided_at, decided_by, decided_via, decision_reason, grant_id, outcome";

export const GRANT_COLUMNS =
  "id, created_at, expires_at, server, tool, agent, user_id, created_by, created_by_groups, created_via, request_id, reason, revoked_at, revoked_by, revoke_reason, uses, revoked_via";

/**
 * Columns added after the first release, with their type (`bigint` as above).
 * A store opened by an older version gets them; revocations already in it
 * count as recorded (they are not back-filled into an audit log).
 */
export const GRANT_COLUMNS_ADDED: [name: string, type: "TEXT" | "bigint"][] = [
  ["revoked_via", "TEXT"],
  ["revoke_recorded_at", "bigint"],
];
export const MARK_OLD_REVOCATIONS_RECORDED =
  "UPDATE approval_grants SET revoke_recorded_at = revoked_at WHERE revoked_at IS NOT NULL AND revoke_recorded_at IS NULL";

/**
 * approval_meta key: requests created from this time (ms) on have their
 * holder's note of how they ended in `outcome` (older versions did not write
 * it for denials, so older requests are never taken for unrun ones).
 */
export const OUTCOMES_SINCE_KEY = "outcomes_since";

type Row = Record<string, unknown>;

const num = (v: unknown): number => (typeof v === "string" ? Number(v) : (v as number));
const numOrNull = (v: unknown): number | null => (v === null || v === undefined ? null : num(v));
const strOrNull = (v: unknown): string | null => (v === null || v === undefined ? null : String(v));

export function requestFromRow(r: Row): ApprovalRequest {
  return {
    id: String(r.id),
    state: String(r.state) as ApprovalState,
    createdAt: num(r.created_at),
    expiresAt: num(r.expires_at),
    holder: String(r.holder),
    node: String(r.node),
    details: JSON.parse(String(r.details)) as RequestDetails,
    decidedAt: numOrNull(r.decided_at),
    decidedBy: strOrNull(r.decided_by),
    decidedVia: strOrNull(r.decided_via),
    decisionReason: strOrNull(r.decision_reason),
    grantId: strOrNull(r.grant_id),
    outcome: strOrNull(r.outcome),
  };
}

export function grantFromRow(r: Row): Grant {
  return {
    id: String(r.id),
    createdAt: num(r.created_at),
    expiresAt: num(r.expires_at),
    server: String(r.server),
    tool: String(r.tool),
    agent: String(r.agent),
    userId: strOrNull(r.user_id),
    createdBy: String(r.created_by),
    createdByGroups: JSON.parse(String(r.created_by_groups)) as string[],
    createdVia: String(r.created_via),
    requestId: strOrNull(r.request_id),
    reason: strOrNull(r.reason),
    revokedAt: numOrNull(r.revoked_at),
    revokedBy: strOrNull(r.revoked_by),
    revokeReason: strOrNull(r.revoke_reason),
    revokedVia: strOrNull(r.revoked_via),
    uses: num(r.uses),
  };
}

export const ORPHAN_REASONS = {
  restarted: "the gateway holding the call restarted; the call will never run",
  gone: "the gateway holding the call stopped responding; the call will never run",
  late: "the request expired and its gateway did not close it; the call will never run",
  expiredBeforeDecision: "the request had already expired; the call will never run",
} as const;

/** Whether a holder whose last heartbeat was at `heartbeatAt` (none: null or undefined) has stopped responding. */
export function holderGone(heartbeatAt: unknown, now: number, leaseMs: number): boolean {
  return heartbeatAt === null || heartbeatAt === undefined || Number(heartbeatAt) < now - leaseMs;
}

/** Why an abandoned pending request expires (a row with holder, node, expires_at, heartbeat_at), or null if it is not abandoned. */
export function orphanReason(r: Row, node: string, self: string, now: number, leaseMs: number): string | null {
  if (r.node === node && r.holder !== self) return ORPHAN_REASONS.restarted;
  if (r.holder !== self && holderGone(r.heartbeat_at, now, leaseMs)) return ORPHAN_REASONS.gone;
  if (Number(r.expires_at) < now - leaseMs) return ORPHAN_REASONS.late;
  return null;
}

/**
 * `outcome` of a request, as its holder notes it when it sees the request end
 * (before forwarding an approved call), or as another gateway closes it when
 * the holder is gone without having seen the decision. A decided request with
 * no outcome is one its holder has not (yet) taken note of.
 */
export const OUTCOMES = {
  forwarding: "being forwarded (no outcome reported yet)",
  denied: "not run: denied",
  restarted: "not run: the gateway holding the call restarted before it saw the decision",
  gone: "not run: the gateway holding the call stopped responding before it saw the decision",
} as const;

/** The outcome of a decided request whose holder never saw the decision (row: node, heartbeat_at), or null while the holder may still. */
export function unrunOutcome(r: Row, node: string, now: number, leaseMs: number): string | null {
  if (r.node === node) return OUTCOMES.restarted;
  return holderGone(r.heartbeat_at, now, leaseMs) ? OUTCOMES.gone : null;
}
