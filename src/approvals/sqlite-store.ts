// The embedded approval store: one SQLite file (WAL), shared by the gateway
// and by `warden approvals` on the same machine. Writes are IMMEDIATE
// transactions, so a decision and the holder's expiry serialise; a meta
// counter bumped by every write lets other processes notice changes cheaply.
import { mkdirSync } from "node:fs";
import { dirname } from "node:path";
import Database from "better-sqlite3";
import {
  GRANT_COLUMNS,
  GRANT_COLUMNS_ADDED,
  grantFromRow,
  holderGone,
  MARK_OLD_REVOCATIONS_RECORDED,
  ORPHAN_REASONS,
  OUTCOMES_SINCE_KEY,
  orphanReason,
  REQUEST_COLUMNS,
  requestFromRow,
  schemaStatements,
  unrunOutcome,
} from "./sql.js";
import type {
  ApprovalStore,
  DecideFields,
  ListFilter,
  NewRequest,
  TransitionOptions,
  TransitionResult,
  TransitionResultGrant,
} from "./store.js";
import type { ApprovalRequest, FinalState, Grant } from "./types.js";
import { ApprovalStoreError } from "./types.js";

type Row = Record<string, unknown>;

const POLL_MS = 200;

export class SqliteApprovalStore implements ApprovalStore {
  readonly kind = "sqlite" as const;
  private closed = false;
  private readonly watchers = new Set<() => void>();
  private watchTimer: NodeJS.Timeout | null = null;
  private lastRev = "";

  private constructor(
    private readonly db: Database.Database,
    readonly location: string,
  ) {}

  static async open(path: string): Promise<SqliteApprovalStore> {
    let db: Database.Database;
    try {
      mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
      db = new Database(path, { timeout: 5000 });
      db.pragma("journal_mode = WAL");
      db.pragma("synchronous = FULL");
      db.pragma("busy_timeout = 5000");
      db.transaction(() => {
        for (const s of schemaStatements("INTEGER")) db.exec(s);
        db.prepare("INSERT OR IGNORE INTO approval_meta (key, value) VALUES ('rev', '0')").run();
        db.prepare("INSERT OR IGNORE INTO approval_meta (key, value) VALUES ('schema', '1')").run();
        const have = new Set(
          (db.prepare("PRAGMA table_info(approval_grants)").all() as Row[]).map((c) => String(c.name)),
        );
        const missing = GRANT_COLUMNS_ADDED.filter(([name]) => !have.has(name));
        for (const [name, type] of missing) {
          db.exec(`ALTER TABLE approval_grants ADD COLUMN ${name} ${type === "bigint" ? "INTEGER" : type}`);
        }
        if (missing.length > 0) db.exec(MARK_OLD_REVOCATIONS_RECORDED);
        db.prepare("INSERT OR IGNORE INTO approval_meta (key, value) VALUES (?, ?)").run(
          OUTCOMES_SINCE_KEY,
          String(Date.now()),
        );
      }).immediate();
    } catch (err) {
      throw new ApprovalStoreError(`cannot open the approval store ${path}: ${(err as Error).message}`);
    }
    return new SqliteApprovalStore(db, `sqlite:${path}`);
  }

  private run<T>(what: string, fn: () => T): Promise<T> {
    if (this.closed) return Promise.reject(new ApprovalStoreError("the approval store is closed"));
    try {
      return Promise.resolve(fn());
    } catch (err) {
      return Promise.reject(
        new ApprovalStoreError(`approval store (${this.location}) failed to ${what}: ${(err as Error).message}`),
      );
    }
  }

  private tx<T>(fn: () => T): T {
    return this.db.transaction(fn).immediate();
  }

  private bump(): void {
    this.db.prepare("UPDATE approval_meta SET value = CAST(value AS INTEGER) + 1 WHERE key = 'rev'").run();
  }

  private row(id: string): ApprovalRequest | null {
    const r = this.db.prepare(`SELECT ${REQUEST_COLUMNS} FROM approval_requests WHERE id = ?`).get(id) as
      | Row
      | undefined;
    return r ? requestFromRow(r) : null;
  }

  registerInstance(id: string, node: string, now: number): Promise<void> {
    return this.run("register this gateway", () => {
      this.tx(() => {
        this.db
          .prepare(
            "INSERT INTO approval_instances (id, node, started_at, heartbeat_at) VALUES (?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET heartbeat_at = excluded.heartbeat_at",
          )
          .run(id, node, now, now);
      });
    });
  }

  heartbeat(id: string, now: number): Promise<void> {
    return this.run("record a heartbeat", () => {
      const r = this.db.prepare("UPDATE approval_instances SET heartbeat_at = ? WHERE id = ?").run(now, id);
      if (r.changes === 0) throw new Error("this gateway's registration is gone");
    });
  }

  removeInstance(id: string): Promise<void> {
    return this.run("unregister this gateway", () => {
      this.db.prepare("DELETE FROM approval_instances WHERE id = ?").run(id);
    });
  }

  create(r: NewRequest): Promise<void> {
    return this.run("create the request", () => {
      this.tx(() => {
        this.db
          .prepare(
            "INSERT INTO approval_requests (id, state, created_at, expires_at, holder, node, server, tool, agent, user_id, details) VALUES (?, 'pending', ?, ?, ?, ?, ?, ?, ?, ?, ?)",
          )
          .run(
            r.id,
            r.createdAt,
            r.expiresAt,
            r.holder,
            r.node,
            r.details.server,
            r.details.tool,
            r.details.agent.name,
            r.details.user?.id ?? null,
            JSON.stringify(r.details),
          );
        this.bump();
      });
    });
  }

  get(id: string): Promise<ApprovalRequest | null> {
    return this.run("read the request", () => this.row(id));
  }

  list(filter: ListFilter = {}): Promise<ApprovalRequest[]> {
    return this.run("list requests", () => {
      const states = filter.states ?? [];
      const where = states.length > 0 ? `WHERE state IN (${states.map(() => "?").join(", ")})` : "";
      const rows = this.db
        .prepare(`SELECT ${REQUEST_COLUMNS} FROM approval_requests ${where} ORDER BY created_at DESC, id LIMIT ?`)
        .all(...states, filter.limit ?? 100) as Row[];
      return rows.map(requestFromRow);
    });
  }

  decidedAmong(ids: readonly string[]): Promise<ApprovalRequest[]> {
    if (ids.length === 0) return Promise.resolve([]);
    return this.run("poll held requests", () => {
      const out: ApprovalRequest[] = [];
      for (let i = 0; i < ids.length; i += 500) {
        const chunk = ids.slice(i, i + 500);
        const rows = this.db
          .prepare(
            `SELECT ${REQUEST_COLUMNS} FROM approval_requests WHERE state <> 'pending' AND id IN (${chunk.map(() => "?").join(", ")})`,
          )
          .all(...chunk) as Row[];
        for (const r of rows) out.push(requestFromRow(r));
      }
      return out;
    });
  }

  transition(
    id: string,
    to: FinalState,
    fields: DecideFields,
    now: number,
    options: TransitionOptions = {},
  ): Promise<TransitionResult> {
    return this.run("record the decision", () =>
      this.tx((): TransitionResult => {
        const current = this.row(id);
        if (current?.state !== "pending") return { changed: false, request: current };
        if (options.holderLeaseMs !== undefined) {
          const holder = this.db
            .prepare("SELECT heartbeat_at FROM approval_instances WHERE id = ?")
            .get(current.holder) as Row | undefined;
          const why =
            current.expiresAt <= now
              ? ORPHAN_REASONS.expiredBeforeDecision
              : holderGone(holder?.heartbeat_at, now, options.holderLeaseMs)
                ? ORPHAN_REASONS.gone
                : null;
          if (why) {
            this.setFinal(id, "expired", { by: null, via: "warden", reason: why }, now);
            return { changed: false, request: this.row(id) };
          }
        }
        this.setFinal(id, to, fields, now);
        if (to === "approved" && fields.grant) this.insertGrant(fields.grant);
        return { changed: true, request: this.row(id) };
      }),
    );
  }

  private setFinal(id: string, to: FinalState, f: DecideFields, now: number): void {
    this.db
      .prepare(
        "UPDATE approval_requests SET state = ?, decided_at = ?, decided_by = ?, decided_via = ?, decision_reason = ?, grant_id = ? WHERE id = ? AND state = 'pending'",
      )
      .run(to, now, f.by, f.via, f.reason, to === "approved" && f.grant ? f.grant.id : null, id);
    this.bump();
  }

  private insertGrant(g: NonNullable<DecideFields["grant"]>): void {
    this.db
      .prepare(
        "INSERT INTO approval_grants (id, created_at, expires_at, server, tool, agent, user_id, created_by, created_by_groups, created_via, request_id, reason) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
      )
      .run(
        g.id,
        g.createdAt,
        g.expiresAt,
        g.server,
        g.tool,
        g.agent,
        g.userId,
        g.createdBy,
        JSON.stringify(g.createdByGroups),
        g.createdVia,
        g.requestId,
        g.reason,
      );
  }

  setOutcome(id: string, outcome: string): Promise<void> {
    return this.run("record the outcome", () => {
      this.tx(() => {
        this.db.prepare("UPDATE approval_requests SET outcome = ? WHERE id = ?").run(outcome.slice(0, 500), id);
        this.bump();
      });
    });
  }

  claimOutcome(id: string, outcome: string): Promise<boolean> {
    return this.run("record the outcome", () =>
      this.tx(() => {
        const r = this.db
          .prepare("UPDATE approval_requests SET outcome = ? WHERE id = ? AND outcome IS NULL")
          .run(outcome.slice(0, 500), id);
        if (r.changes > 0) this.bump();
        return r.changes > 0;
      }),
    );
  }

  closeUnrun(node: string, self: string, now: number, leaseMs: number): Promise<ApprovalRequest[]> {
    return this.run("close requests decided after their gateway stopped", () => {
      const candidates = (): Row[] =>
        this.db
          .prepare(
            `SELECT r.id, r.holder, r.node, i.heartbeat_at FROM approval_requests r LEFT JOIN approval_instances i ON i.id = r.holder
             WHERE r.state IN ('approved', 'denied') AND r.outcome IS NULL AND r.holder <> ?
               AND r.created_at >= (SELECT CAST(value AS INTEGER) FROM approval_meta WHERE key = ?)`,
          )
          .all(self, OUTCOMES_SINCE_KEY) as Row[];
      // A read first: most sweeps find nothing and need no write lock.
      if (candidates().length === 0) return [];
      return this.tx(() => {
        const closed: string[] = [];
        for (const r of candidates()) {
          const outcome = unrunOutcome(r, node, now, leaseMs);
          if (!outcome) continue;
          this.db
            .prepare("UPDATE approval_requests SET outcome = ? WHERE id = ? AND outcome IS NULL")
            .run(outcome, String(r.id));
          closed.push(String(r.id));
        }
        if (closed.length > 0) this.bump();
        return closed.map((id) => this.row(id) as ApprovalRequest);
      });
    });
  }

  expireOrphans(node: string, self: string, now: number, leaseMs: number): Promise<ApprovalRequest[]> {
    return this.run("expire abandoned requests", () =>
      this.tx(() => {
        const rows = this.db
          .prepare(
            `SELECT r.id, r.holder, r.node, r.expires_at, i.heartbeat_at FROM approval_requests r LEFT JOIN approval_instances i ON i.id = r.holder WHERE r.state = 'pending'`,
          )
          .all() as Row[];
        const expired: string[] = [];
        for (const r of rows) {
          const why = orphanReason(r, node, self, now, leaseMs);
          if (!why) continue;
          this.setFinal(String(r.id), "expired", { by: null, via: "warden", reason: why }, now);
          expired.push(String(r.id));
        }
        if (rows.length > 0) {
          this.db
            .prepare("DELETE FROM approval_instances WHERE heartbeat_at < ? AND id <> ?")
            .run(now - 10 * leaseMs, self);
        }
        return expired.map((id) => this.row(id) as ApprovalRequest);
      }),
    );
  }

  findGrants(q: { server: string; tool: string; agent: string; userId: string | null }, now: number): Promise<Grant[]> {
    return this.run("look up grants", () =>
      (
        this.db
          .prepare(
            `SELECT ${GRANT_COLUMNS} FROM approval_grants WHERE server = ? AND tool = ? AND agent = ? AND user_id IS ? AND revoked_at IS NULL AND expires_at > ? ORDER BY expires_at DESC`,
          )
          .all(q.server, q.tool, q.agent, q.userId, now) as Row[]
      ).map(grantFromRow),
    );
  }

  listGrants(q: { includeInactive?: boolean; limit?: number }, now: number): Promise<Grant[]> {
    return this.run("list grants", () => {
      const where = q.includeInactive ? "" : "WHERE revoked_at IS NULL AND expires_at > ?";
      const params: unknown[] = q.includeInactive ? [] : [now];
      return (
        this.db
          .prepare(`SELECT ${GRANT_COLUMNS} FROM approval_grants ${where} ORDER BY created_at DESC, id LIMIT ?`)
          .all(...params, q.limit ?? 100) as Row[]
      ).map(grantFromRow);
    });
  }

  getGrant(id: string): Promise<Grant | null> {
    return this.run("read the grant", () => {
      const r = this.db.prepare(`SELECT ${GRANT_COLUMNS} FROM approval_grants WHERE id = ?`).get(id) as Row | undefined;
      return r ? grantFromRow(r) : null;
    });
  }

  revokeGrant(
    id: string,
    by: { id: string; via: string },
    reason: string | null,
    now: number,
    recorded: boolean,
  ): Promise<TransitionResultGrant> {
    return this.run("revoke the grant", () =>
      this.tx(() => {
        const r = this.db
          .prepare(
            "UPDATE approval_grants SET revoked_at = ?, revoked_by = ?, revoked_via = ?, revoke_reason = ?, revoke_recorded_at = ? WHERE id = ? AND revoked_at IS NULL",
          )
          .run(now, by.id, by.via, reason, recorded ? now : null, id);
        if (r.changes > 0) this.bump();
        const g = this.db.prepare(`SELECT ${GRANT_COLUMNS} FROM approval_grants WHERE id = ?`).get(id) as
          | Row
          | undefined;
        return { changed: r.changes > 0, grant: g ? grantFromRow(g) : null };
      }),
    );
  }

  claimRevocations(now: number): Promise<Grant[]> {
    return this.run("read unrecorded revocations", () => {
      const unrecorded = (): Row[] =>
        this.db
          .prepare(
            `SELECT ${GRANT_COLUMNS} FROM approval_grants WHERE revoked_at IS NOT NULL AND revoke_recorded_at IS NULL ORDER BY revoked_at, id`,
          )
          .all() as Row[];
      if (unrecorded().length === 0) return [];
      return this.tx(() => {
        const rows = unrecorded();
        const mark = this.db.prepare(
          "UPDATE approval_grants SET revoke_recorded_at = ? WHERE id = ? AND revoke_recorded_at IS NULL",
        );
        for (const r of rows) mark.run(now, String(r.id));
        return rows.map(grantFromRow);
      });
    });
  }

  useGrant(id: string): Promise<void> {
    return this.run("count the grant's use", () => {
      this.tx(() => {
        this.db.prepare("UPDATE approval_grants SET uses = uses + 1 WHERE id = ?").run(id);
        this.bump();
      });
    });
  }

  watch(onChange: () => void): () => void {
    this.watchers.add(onChange);
    if (!this.watchTimer) {
      this.watchTimer = setInterval(() => {
        if (this.closed) return;
        let rev: string;
        try {
          rev = String((this.db.prepare("SELECT value FROM approval_meta WHERE key = 'rev'").get() as Row).value);
        } catch {
          rev = `error-${Date.now()}`;
        }
        if (rev === this.lastRev) return;
        this.lastRev = rev;
        for (const w of this.watchers) w();
      }, POLL_MS);
      this.watchTimer.unref();
    }
    return () => {
      this.watchers.delete(onChange);
      if (this.watchers.size === 0 && this.watchTimer) {
        clearInterval(this.watchTimer);
        this.watchTimer = null;
      }
    };
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (this.watchTimer) clearInterval(this.watchTimer);
    this.watchers.clear();
    this.db.close();
  }
}
