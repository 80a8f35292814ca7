// The shared approval store: PostgreSQL, for several gateway processes or
// hosts working one queue. A decision is a transaction that locks the request
// row (SELECT ... FOR UPDATE), so concurrent deciders serialise exactly as in
// SQLite; every write also sends NOTIFY warden_approvals so other processes
// learn of it at once (they poll as well, in case a notification is lost).
//
// The URL may carry `schema=NAME` (Warden's own parameter, removed before
// connecting): the tables then live in that schema, created if missing.
import pg from "pg";
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
import { redactUrl } from "./store.js";
import type { ApprovalRequest, FinalState, Grant } from "./types.js";
import { ApprovalStoreError } from "./types.js";

const CHANNEL = "warden_approvals";
type Row = Record<string, unknown>;
type Client = pg.PoolClient;

export class PostgresApprovalStore implements ApprovalStore {
  readonly kind = "postgres" as const;
  private closed = false;
  private readonly watchers = new Set<() => void>();
  private listener: pg.Client | null = null;
  private listenRetry: NodeJS.Timeout | null = null;

  private constructor(
    private readonly pool: pg.Pool,
    private readonly config: pg.ClientConfig,
    private readonly schema: string | null,
    readonly location: string,
  ) {}

  static async open(url: string): Promise<PostgresApprovalStore> {
    const location = `postgres:${redactUrl(url)}`;
    let parsed: URL;
    try {
      parsed = new URL(url);
    } catch {
      throw new ApprovalStoreError("the PostgreSQL approval store URL does not parse");
    }
    const schema = parsed.searchParams.get("schema");
    parsed.searchParams.delete("schema");
    if (schema !== null && !/^[A-Za-z_][A-Za-z0-9_]{0,62}$/.test(schema)) {
      throw new ApprovalStoreError(`schema "${schema}" must be a plain identifier (letters, digits, _)`);
    }
    const config: pg.ClientConfig = {
      connectionString: parsed.toString(),
      connectionTimeoutMillis: 5000,
      application_name: "warden-approvals",
    };
    const pool = new pg.Pool({ ...config, max: 5, idleTimeoutMillis: 30_000 });
    // Errors of idle clients (server restarted) surface on the next query instead of crashing.
    pool.on("error", () => {});
    if (schema) pool.on("connect", (c) => void c.query(`SET search_path TO "${schema}"`).catch(() => {}));
    const store = new PostgresApprovalStore(pool, config, schema, location);
    try {
      const c = await pool.connect();
      try {
        await c.query("BEGIN");
        await c.query("SELECT pg_advisory_xact_lock(hashtext('warden_approvals_schema'))");
        if (schema) {
          await c.query(`CREATE SCHEMA IF NOT EXISTS "${schema}"`);
          await c.query(`SET search_path TO "${schema}"`);
        }
        for (const s of schemaStatements("BIGINT")) await c.query(s);
        await c.query("INSERT INTO approval_meta (key, value) VALUES ('schema', '1') ON CONFLICT (key) DO NOTHING");
        const have = new Set(
          (
            await c.query(
              "SELECT column_name FROM information_schema.columns WHERE table_schema = current_schema() AND table_name = 'approval_grants'",
            )
          ).rows.map((r: Row) => String(r.column_name)),
        );
        const missing = GRANT_COLUMNS_ADDED.filter(([name]) => !have.has(name));
        for (const [name, type] of missing) {
          await c.query(`ALTER TABLE approval_grants ADD COLUMN ${name} ${type === "bigint" ? "BIGINT" : type}`);
        }
        if (missing.length > 0) await c.query(MARK_OLD_REVOCATIONS_RECORDED);
        await c.query("INSERT INTO approval_meta (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING", [
          OUTCOMES_SINCE_KEY,
          String(Date.now()),
        ]);
        await c.query("COMMIT");
      } catch (err) {
        await c.query("ROLLBACK").catch(() => {});
        throw err;
      } finally {
        c.release();
      }
    } catch (err) {
      await pool.end().catch(() => {});
      throw new ApprovalStoreError(`cannot open the approval store ${location}: ${(err as Error).message}`);
    }
    return store;
  }

  private async q(what: string, text: string, values: unknown[] = []): Promise<Row[]> {
    if (this.closed) throw new ApprovalStoreError("the approval store is closed");
    try {
      return (await this.pool.query(text, values)).rows as Row[];
    } catch (err) {
      throw new ApprovalStoreError(`approval store (${this.location}) failed to ${what}: ${(err as Error).message}`);
    }
  }

  private async tx<T>(what: string, fn: (c: Client) => Promise<T>): Promise<T> {
    if (this.closed) throw new ApprovalStoreError("the approval store is closed");
    let c: Client;
    try {
      c = await this.pool.connect();
    } catch (err) {
      throw new ApprovalStoreError(`approval store (${this.location}) failed to ${what}: ${(err as Error).message}`);
    }
    try {
      await c.query("BEGIN");
      const out = await fn(c);
      await c.query("COMMIT");
      return out;
    } catch (err) {
      await c.query("ROLLBACK").catch(() => {});
      if (err instanceof ApprovalStoreError) throw err;
      throw new ApprovalStoreError(`approval store (${this.location}) failed to ${what}: ${(err as Error).message}`);
    } finally {
      c.release();
    }
  }

  private async notify(c: Client, id: string): Promise<void> {
    await c.query("SELECT pg_notify($1, $2)", [CHANNEL, id]);
  }

  async registerInstance(id: string, node: string, now: number): Promise<void> {
    await this.q(
      "register this gateway",
      "INSERT INTO approval_instances (id, node, started_at, heartbeat_at) VALUES ($1, $2, $3, $3) ON CONFLICT (id) DO UPDATE SET heartbeat_at = excluded.heartbeat_at",
      [id, node, now],
    );
  }

  async heartbeat(id: string, now: number): Promise<void> {
    const rows = await this.q(
      "record a heartbeat",
      "UPDATE approval_instances SET heartbeat_at = $1 WHERE id = $2 RETURNING id",
      [now, id],
    );
    if (rows.length === 0) throw new ApprovalStoreError("this gateway's registration is gone");
  }

  async removeInstance(id: string): Promise<void> {
    await this.q("unregister this gateway", "DELETE FROM approval_instances WHERE id = $1", [id]);
  }

  async create(r: NewRequest): Promise<void> {
    await this.tx("create the request", async (c) => {
      await c.query(
        "INSERT INTO approval_requests (id, state, created_at, expires_at, holder, node, server, tool, agent, user_id, details) VALUES ($1, 'pending', $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        [
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
        ],
      );
      await this.notify(c, r.id);
    });
  }

  async get(id: string): Promise<ApprovalRequest | null> {
    const rows = await this.q("read the request", `SELECT ${REQUEST_COLUMNS} FROM approval_requests WHERE id = $1`, [
      id,
    ]);
    return rows[0] ? requestFromRow(rows[0]) : null;
  }

  async list(filter: ListFilter = {}): Promise<ApprovalRequest[]> {
    const states = [...(filter.states ?? [])];
    const rows = await this.q(
      "list requests",
      `SELECT ${REQUEST_COLUMNS} FROM approval_requests ${states.length > 0 ? "WHERE state = ANY($2)" : ""} ORDER BY created_at DESC, id LIMIT $1`,
      states.length > 0 ? [filter.limit ?? 100, states] : [filter.limit ?? 100],
    );
    return rows.map(requestFromRow);
  }

  async decidedAmong(ids: readonly string[]): Promise<ApprovalRequest[]> {
    if (ids.length === 0) return [];
    const rows = await this.q(
      "poll held requests",
      `SELECT ${REQUEST_COLUMNS} FROM approval_requests WHERE state <> 'pending' AND id = ANY($1)`,
      [[...ids]],
    );
    return rows.map(requestFromRow);
  }

  async transition(
    id: string,
    to: FinalState,
    fields: DecideFields,
    now: number,
    options: TransitionOptions = {},
  ): Promise<TransitionResult> {
    return this.tx("record the decision", async (c): Promise<TransitionResult> => {
      const rows = (await c.query(`SELECT ${REQUEST_COLUMNS} FROM approval_requests WHERE id = $1 FOR UPDATE`, [id]))
        .rows as Row[];
      const current = rows[0] ? requestFromRow(rows[0]) : null;
      if (current?.state !== "pending") return { changed: false, request: current };
      if (options.holderLeaseMs !== undefined) {
        const holder = (await c.query("SELECT heartbeat_at FROM approval_instances WHERE id = $1", [current.holder]))
          .rows[0] as Row | undefined;
        const why =
          current.expiresAt <= now
            ? ORPHAN_REASONS.expiredBeforeDecision
            : holderGone(holder?.heartbeat_at, now, options.holderLeaseMs)
              ? ORPHAN_REASONS.gone
              : null;
        if (why) {
          const after = await this.setFinal(c, id, "expired", { by: null, via: "warden", reason: why }, now);
          return { changed: false, request: after };
        }
      }
      const after = await this.setFinal(c, id, to, fields, now);
      if (to === "approved" && fields.grant) {
        const g = fields.grant;
        await c.query(
          "INSERT INTO approval_grants (id, created_at, expires_at, server, tool, agent, user_id, created_by, created_by_groups, created_via, request_id, reason) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
          [
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
          ],
        );
      }
      return { changed: true, request: after };
    });
  }

  private async setFinal(
    c: Client,
    id: string,
    to: FinalState,
    f: DecideFields,
    now: number,
  ): Promise<ApprovalRequest> {
    const rows = (
      await c.query(
        `UPDATE approval_requests SET state = $1, decided_at = $2, decided_by = $3, decided_via = $4, decision_reason = $5, grant_id = $6 WHERE id = $7 AND state = 'pending' RETURNING ${REQUEST_COLUMNS}`,
        [to, now, f.by, f.via, f.reason, to === "approved" && f.grant ? f.grant.id : null, id],
      )
    ).rows as Row[];
    await this.notify(c, id);
    return requestFromRow(rows[0] as Row);
  }

  async setOutcome(id: string, outcome: string): Promise<void> {
    await this.tx("record the outcome", async (c) => {
      await c.query("UPDATE approval_requests SET outcome = $1 WHERE id = $2", [outcome.slice(0, 500), id]);
      await this.notify(c, id);
    });
  }

  async claimOutcome(id: string, outcome: string): Promise<boolean> {
    return this.tx("record the outcome", async (c) => {
      const n =
        (
          await c.query("UPDATE approval_requests SET outcome = $1 WHERE id = $2 AND outcome IS NULL", [
            outcome.slice(0, 500),
            id,
          ])
        ).rowCount ?? 0;
      if (n > 0) await this.notify(c, id);
      return n > 0;
    });
  }

  async closeUnrun(node: string, self: string, now: number, leaseMs: number): Promise<ApprovalRequest[]> {
    const query = `SELECT r.id, r.holder, r.node, i.heartbeat_at FROM approval_requests r LEFT JOIN approval_instances i ON i.id = r.holder
      WHERE r.state IN ('approved', 'denied') AND r.outcome IS NULL AND r.holder <> $1
        AND r.created_at >= (SELECT CAST(value AS BIGINT) FROM approval_meta WHERE key = $2)`;
    // A read first: most sweeps find nothing and need no transaction.
    if (
      (await this.q("find requests decided after their gateway stopped", query, [self, OUTCOMES_SINCE_KEY])).length ===
      0
    ) {
      return [];
    }
    return this.tx("close requests decided after their gateway stopped", async (c) => {
      const rows = (await c.query(`${query} FOR UPDATE OF r SKIP LOCKED`, [self, OUTCOMES_SINCE_KEY])).rows as Row[];
      const out: ApprovalRequest[] = [];
      for (const r of rows) {
        const outcome = unrunOutcome(r, node, now, leaseMs);
        if (!outcome) continue;
        const updated = (
          await c.query(
            `UPDATE approval_requests SET outcome = $1 WHERE id = $2 AND outcome IS NULL RETURNING ${REQUEST_COLUMNS}`,
            [outcome, String(r.id)],
          )
        ).rows as Row[];
        if (updated[0]) out.push(requestFromRow(updated[0]));
      }
      if (out.length > 0) await this.notify(c, "unrun");
      return out;
    });
  }

  async expireOrphans(node: string, self: string, now: number, leaseMs: number): Promise<ApprovalRequest[]> {
    return this.tx("expire abandoned requests", async (c) => {
      const rows = (
        await c.query(
          "SELECT r.id, r.holder, r.node, r.expires_at, i.heartbeat_at FROM approval_requests r LEFT JOIN approval_instances i ON i.id = r.holder WHERE r.state = 'pending' FOR UPDATE OF r SKIP LOCKED",
        )
      ).rows as Row[];
      const out: ApprovalRequest[] = [];
      for (const r of rows) {
        const why = orphanReason(r, node, self, now, leaseMs);
        if (!why) continue;
        out.push(await this.setFinal(c, String(r.id), "expired", { by: null, via: "warden", reason: why }, now));
      }
      await c.query("DELETE FROM approval_instances WHERE heartbeat_at < $1 AND id <> $2", [now - 10 * leaseMs, self]);
      return out;
    });
  }

  async findGrants(
    q: { server: string; tool: string; agent: string; userId: string | null },
    now: number,
  ): Promise<Grant[]> {
    const rows = await this.q(
      "look up grants",
      `SELECT ${GRANT_COLUMNS} FROM approval_grants WHERE server = $1 AND tool = $2 AND agent = $3 AND user_id IS NOT DISTINCT FROM $4 AND revoked_at IS NULL AND expires_at > $5 ORDER BY expires_at DESC`,
      [q.server, q.tool, q.agent, q.userId, now],
    );
    return rows.map(grantFromRow);
  }

  async listGrants(q: { includeInactive?: boolean; limit?: number }, now: number): Promise<Grant[]> {
    const rows = q.includeInactive
      ? await this.q(
          "list grants",
          `SELECT ${GRANT_COLUMNS} FROM approval_grants ORDER BY created_at DESC, id LIMIT $1`,
          [q.limit ?? 100],
        )
      : await this.q(
          "list grants",
          `SELECT ${GRANT_COLUMNS} FROM approval_grants WHERE revoked_at IS NULL AND expires_at > $2 ORDER BY created_at DESC, id LIMIT $1`,
          [q.limit ?? 100, now],
        );
    return rows.map(grantFromRow);
  }

  async getGrant(id: string): Promise<Grant | null> {
    const rows = await this.q("read the grant", `SELECT ${GRANT_COLUMNS} FROM approval_grants WHERE id = $1`, [id]);
    return rows[0] ? grantFromRow(rows[0]) : null;
  }

  async revokeGrant(
    id: string,
    by: { id: string; via: string },
    reason: string | null,
    now: number,
    recorded: boolean,
  ): Promise<TransitionResultGrant> {
    return this.tx("revoke the grant", async (c) => {
      const changed =
        ((
          await c.query(
            "UPDATE approval_grants SET revoked_at = $1, revoked_by = $2, revoked_via = $3, revoke_reason = $4, revoke_recorded_at = $5 WHERE id = $6 AND revoked_at IS NULL",
            [now, by.id, by.via, reason, recorded ? now : null, id],
          )
        ).rowCount ?? 0) > 0;
      if (changed) await this.notify(c, id);
      const rows = (await c.query(`SELECT ${GRANT_COLUMNS} FROM approval_grants WHERE id = $1`, [id])).rows as Row[];
      return { changed, grant: rows[0] ? grantFromRow(rows[0]) : null };
    });
  }

  async claimRevocations(now: number): Promise<Grant[]> {
    const query = `SELECT ${GRANT_COLUMNS} FROM approval_grants WHERE revoked_at IS NOT NULL AND revoke_recorded_at IS NULL ORDER BY revoked_at, id`;
    if ((await this.q("read unrecorded revocations", query)).length === 0) return [];
    return this.tx("claim unrecorded revocations", async (c) => {
      const rows = (await c.query(`${query} FOR UPDATE SKIP LOCKED`)).rows as Row[];
      for (const r of rows) {
        await c.query("UPDATE approval_grants SET revoke_recorded_at = $1 WHERE id = $2", [now, String(r.id)]);
      }
      return rows.map(grantFromRow);
    });
  }

  async useGrant(id: string): Promise<void> {
    await this.tx("count the grant's use", async (c) => {
      await c.query("UPDATE approval_grants SET uses = uses + 1 WHERE id = $1", [id]);
      await this.notify(c, id);
    });
  }

  watch(onChange: () => void): () => void {
    this.watchers.add(onChange);
    if (!this.listener && !this.listenRetry) void this.listen();
    return () => {
      this.watchers.delete(onChange);
    };
  }

  /** A dedicated connection for LISTEN; reconnects after errors. */
  private async listen(): Promise<void> {
    if (this.closed) return;
    const client = new pg.Client(this.config);
    const retry = () => {
      if (this.closed || this.listenRetry) return;
      this.listener = null;
      client.end().catch(() => {});
      this.listenRetry = setTimeout(() => {
        this.listenRetry = null;
        void this.listen();
      }, 1000);
      this.listenRetry.unref();
      // Something may have changed while we were not listening.
      for (const w of this.watchers) w();
    };
    client.on("error", retry);
    client.on("end", retry);
    client.on("notification", () => {
      for (const w of this.watchers) w();
    });
    try {
      await client.connect();
      if (this.closed) {
        await client.end();
        return;
      }
      await client.query(`LISTEN ${CHANNEL}`);
      this.listener = client;
      (client as unknown as { unref?: () => void }).unref?.();
      const socket = (client as unknown as { connection?: { stream?: { unref?: () => void } } }).connection?.stream;
      socket?.unref?.();
    } catch {
      retry();
    }
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (this.listenRetry) clearTimeout(this.listenRetry);
    this.watchers.clear();
    const l = this.listener;
    this.listener = null;
    if (l) {
      l.removeAllListeners("end");
      l.removeAllListeners("error");
      l.on("error", () => {});
      await l.end().catch(() => {});
    }
    await this.pool.end().catch(() => {});
  }

  /** For tests: drops the schema the store lives in (only when the URL named one). */
  async dropSchema(): Promise<void> {
    if (!this.schema) throw new ApprovalStoreError("this store has no schema of its own to drop");
    await this.q("drop the schema", `DROP SCHEMA "${this.schema}" CASCADE`);
  }
}
