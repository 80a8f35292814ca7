// Where approval requests and grants live: an embedded SQLite file by default,
// PostgreSQL when several gateway processes or hosts share one queue. Both
// implement the same contract, and every state change is one atomic
// conditional update, so two processes racing (an approver and the holder's
// timer) can never both win.
import { isAbsolute, join, resolve } from "node:path";
import type { ApprovalRequest, FinalState, Grant } from "./types.js";
import { ApprovalStoreError } from "./types.js";

export interface NewRequest {
  id: string;
  createdAt: number;
  expiresAt: number;
  holder: string;
  node: string;
  details: ApprovalRequest["details"];
}

export interface DecideFields {
  by: string | null;
  via: string | null;
  reason: string | null;
  /** Only when approving: a grant to create in the same transaction. */
  grant?: Omit<Grant, "revokedAt" | "revokedBy" | "revokeReason" | "revokedVia" | "uses">;
}

export interface TransitionOptions {
  /**
   * An approver's decision: refused when the request is past its expiry or its
   * holder has not been seen for this long (the request is expired instead).
   */
  holderLeaseMs?: number;
}

export interface TransitionResult {
  /** True when this call moved the request; false when it was already final (or was just expired instead). */
  changed: boolean;
  request: ApprovalRequest | null;
}

export interface ListFilter {
  states?: readonly string[];
  limit?: number;
}

export interface ApprovalStore {
  readonly kind: "sqlite" | "postgres";
  /** Where it is, without credentials, for messages and the audit log. */
  readonly location: string;
  /** Records a live gateway process; heartbeat keeps it live. */
  registerInstance(id: string, node: string, now: number): Promise<void>;
  heartbeat(id: string, now: number): Promise<void>;
  removeInstance(id: string): Promise<void>;
  create(r: NewRequest): Promise<void>;
  get(id: string): Promise<ApprovalRequest | null>;
  /** Newest first. */
  list(filter?: ListFilter): Promise<ApprovalRequest[]>;
  /** Requests among `ids` that are no longer pending. */
  decidedAmong(ids: readonly string[]): Promise<ApprovalRequest[]>;
  /** Moves a pending request to a final state, atomically. */
  transition(
    id: string,
    to: FinalState,
    fields: DecideFields,
    now: number,
    options?: TransitionOptions,
  ): Promise<TransitionResult>;
  setOutcome(id: string, outcome: string): Promise<void>;
  /** Sets the outcome only when none is set yet; true when this call set it. */
  claimOutcome(id: string, outcome: string): Promise<boolean>;
  /**
   * Closes approved or denied requests whose holder is gone (restarted on
   * `node`, or not seen for `leaseMs`, as in expireOrphans) without having
   * taken note of the decision (no outcome): sets their outcome to say the
   * call never ran, once, and returns them.
   */
  closeUnrun(node: string, self: string, now: number, leaseMs: number): Promise<ApprovalRequest[]>;
  /**
   * Expires pending requests whose holder is gone: held on `node` by another
   * process than `self` (a restart), held by a process not seen for `leaseMs`,
   * or past their expiry by more than `leaseMs` (nobody expired them in time).
   */
  expireOrphans(node: string, self: string, now: number, leaseMs: number): Promise<ApprovalRequest[]>;
  /** Active (unexpired, unrevoked) grants for this call. */
  findGrants(q: { server: string; tool: string; agent: string; userId: string | null }, now: number): Promise<Grant[]>;
  listGrants(q: { includeInactive?: boolean; limit?: number }, now: number): Promise<Grant[]>;
  getGrant(id: string): Promise<Grant | null>;
  /** `recorded`: the caller writes the grant-revoked audit record itself (otherwise a gateway's claimRevocations picks it up). */
  revokeGrant(
    id: string,
    by: { id: string; via: string },
    reason: string | null,
    now: number,
    recorded: boolean,
  ): Promise<TransitionResultGrant>;
  /** Revocations nobody has recorded in an audit log yet (made on the store directly): marks them recorded, once, and returns them. */
  claimRevocations(now: number): Promise<Grant[]>;
  useGrant(id: string): Promise<void>;
  /** Calls back when something changed, possibly in another process (best effort; callers also poll). */
  watch(onChange: () => void): () => void;
  close(): Promise<void>;
}

export interface TransitionResultGrant {
  changed: boolean;
  grant: Grant | null;
}

export const DEFAULT_STORE_FILE = "approvals.db";

/** What a store location means: a PostgreSQL URL, or a SQLite file (sqlite:PATH or a path). */
export function parseStoreLocation(
  location: string | undefined,
  dataDir: string,
  base = process.cwd(),
): { kind: "postgres"; url: string } | { kind: "sqlite"; path: string } {
  if (!location) return { kind: "sqlite", path: join(dataDir, DEFAULT_STORE_FILE) };
  if (/^postgres(ql)?:\/\//i.test(location)) return { kind: "postgres", url: location };
  const path = location.startsWith("sqlite:") ? location.slice("sqlite:".length) : location;
  if (path === "" || /^[a-z][a-z0-9+.-]*:\/\//i.test(path)) {
    throw new ApprovalStoreError(
      `approval store "${location}" is neither a PostgreSQL URL (postgres://...) nor a SQLite file (sqlite:PATH or a path)`,
    );
  }
  return { kind: "sqlite", path: isAbsolute(path) ? path : resolve(base, path) };
}

/** Opens (and creates the tables of) the store at a location. */
export async function openApprovalStore(
  location: string | undefined,
  dataDir: string,
  base?: string,
): Promise<ApprovalStore> {
  const where = parseStoreLocation(location, dataDir, base);
  if (where.kind === "postgres") {
    const { PostgresApprovalStore } = await import("./postgres-store.js");
    return PostgresApprovalStore.open(where.url);
  }
  const { SqliteApprovalStore } = await import("./sqlite-store.js");
  return SqliteApprovalStore.open(where.path);
}

/** A PostgreSQL URL with its password masked, for messages. */
export function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = "***";
    return u.toString();
  } catch {
    return "(unparsable URL)";
  }
}
