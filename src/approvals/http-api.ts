// The approvals HTTP API and web page on `warden serve`:
//
//   GET  /approvals                          the web page (static; it signs in with a bearer token)
//   GET  /api/approvals?state=pending|decided|all|<state>&limit=N
//   GET  /api/approvals/whoami               who the credential is, and whether it can approve
//   GET  /api/approvals/events               text/event-stream: "changed" whenever something changed
//   GET  /api/approvals/grants?all=1&limit=N
//   POST /api/approvals/grants/ID/revoke     {"reason"?}
//   GET  /api/approvals/ID
//   POST /api/approvals/ID/approve           {"reason"?, "for"?: "1h"}
//   POST /api/approvals/ID/deny              {"reason"?}
//
// Every API request is authenticated like MCP requests (API key or JWT); an
// approver is the credential's user (id and groups). Errors are JSON
// {"error": "..."} with 400/401/403/404/409/503.
import type { IncomingMessage, ServerResponse } from "node:http";
import type { AuditEvent } from "../audit/record.js";
import type { Authenticator, Identity } from "../mcp/identity.js";
import { parseDuration } from "../policy/duration.js";
import { refusal } from "./authorize.js";
import type { ApprovalService } from "./service.js";
import { ApprovalError, type ApprovalRequest, type Approver, type Grant, ID_PATTERN, STATES } from "./types.js";
import { PAGE_CSS, PAGE_HTML, PAGE_JS } from "./web.js";
import { approvalLink } from "./webhook.js";

const MAX_BODY = 16 * 1024;

const PAGE_HEADERS = {
  "Content-Security-Policy":
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
  "X-Content-Type-Options": "nosniff",
  "Referrer-Policy": "no-referrer",
  "Cache-Control": "no-store",
  "X-Frame-Options": "DENY",
};

export interface ApprovalsHttpOptions {
  service: ApprovalService;
  auth: Authenticator;
  /** Records refused API requests (bad credentials) in the audit log. */
  record(event: AuditEvent): Promise<boolean>;
}

export function approverOf(identity: Identity): Approver {
  return { id: identity.user?.id ?? "", groups: identity.user?.groups ?? [], via: identity.via };
}

/** The JSON form of a request, as the API, the CLI (--json) and webhooks show it. */
export function requestJson(r: ApprovalRequest, publicUrl?: string): Record<string, unknown> {
  const d = r.details;
  return {
    id: r.id,
    state: r.state,
    createdAt: iso(r.createdAt),
    expiresAt: iso(r.expiresAt),
    agent: d.agent,
    user: d.user,
    via: d.via,
    session: d.session,
    server: d.server,
    tool: d.tool,
    arguments: d.arguments,
    argumentsDigest: d.argumentsDigest,
    policy: d.policy,
    rule: d.rule,
    reason: d.reason,
    requirement: d.requirement,
    decidedAt: r.decidedAt === null ? null : iso(r.decidedAt),
    decidedBy: r.decidedBy,
    decidedVia: r.decidedVia,
    decisionReason: r.decisionReason,
    grantId: r.grantId,
    outcome: r.outcome,
    holder: r.holder,
    node: r.node,
    link: approvalLink(publicUrl, r.id),
  };
}

export function grantJson(g: Grant): Record<string, unknown> {
  return {
    ...g,
    createdAt: iso(g.createdAt),
    expiresAt: iso(g.expiresAt),
    revokedAt: g.revokedAt === null ? null : iso(g.revokedAt),
  };
}

export class ApprovalsHttp {
  private readonly streams = new Set<ServerResponse>();
  private readonly keepAlive: NodeJS.Timeout;
  private readonly unsubscribe: () => void;
  private pending: NodeJS.Timeout | null = null;

  constructor(private readonly o: ApprovalsHttpOptions) {
    this.unsubscribe = o.service.onChange(() => {
      // Coalesce bursts into one event.
      if (this.pending) return;
      this.pending = setTimeout(() => {
        this.pending = null;
        for (const s of this.streams) s.write("event: changed\ndata: {}\n\n");
      }, 50);
    });
    this.keepAlive = setInterval(() => {
      for (const s of this.streams) s.write(": keep-alive\n\n");
    }, 15_000).unref();
  }

  close(): void {
    this.unsubscribe();
    clearInterval(this.keepAlive);
    if (this.pending) clearTimeout(this.pending);
    for (const s of this.streams) s.end();
    this.streams.clear();
  }

  /** Handles /approvals and /api/approvals/*; false for any other path. */
  async handle(req: IncomingMessage, res: ServerResponse, path: string): Promise<boolean> {
    if (path === "/approvals" || path === "/approvals/index.html") {
      this.asset(req, res, "text/html; charset=utf-8", PAGE_HTML);
      return true;
    }
    if (path === "/approvals/app.js") {
      this.asset(req, res, "text/javascript; charset=utf-8", PAGE_JS);
      return true;
    }
    if (path === "/approvals/app.css") {
      this.asset(req, res, "text/css; charset=utf-8", PAGE_CSS);
      return true;
    }
    if (path !== "/api/approvals" && !path.startsWith("/api/approvals/")) return false;
    try {
      await this.api(req, res, path);
    } catch (err) {
      if (err instanceof ApprovalError) send(res, err.status, { error: err.message });
      else send(res, 503, { error: `the approval store failed: ${(err as Error).message}` });
    }
    return true;
  }

  private asset(req: IncomingMessage, res: ServerResponse, type: string, body: string): void {
    if (req.method !== "GET" && req.method !== "HEAD") {
      res.writeHead(405, { Allow: "GET" }).end();
      return;
    }
    res.writeHead(200, { "Content-Type": type, "Content-Length": Buffer.byteLength(body), ...PAGE_HEADERS });
    res.end(req.method === "HEAD" ? undefined : body);
  }

  private async api(req: IncomingMessage, res: ServerResponse, path: string): Promise<void> {
    const auth = this.o.auth.authenticate(req.headers);
    if (!auth.ok) {
      void this.o.record({
        type: "decision",
        decision: "deny",
        enforced: true,
        reason: auth.reason,
        detail: { stage: "auth", method: req.method, path: path.slice(0, 200), remote: req.socket.remoteAddress },
      });
      res.writeHead(auth.status, {
        "Content-Type": "application/json",
        "WWW-Authenticate": 'Bearer realm="warden"',
        "Cache-Control": "no-store",
      });
      res.end(JSON.stringify({ error: `unauthorized: ${auth.reason}` }));
      return;
    }
    const approver = approverOf(auth.identity);
    const url = new URL(req.url ?? "/", "http://warden.invalid");
    const parts = path.split("/").slice(3).map(decodeURIComponent); // after /api/approvals
    const method = req.method ?? "GET";
    const service = this.o.service;

    if (parts.length === 1 && parts[0] === "whoami" && method === "GET") {
      send(res, 200, {
        agent: auth.identity.agent.name,
        via: auth.identity.via,
        approver: approver.id ? { id: approver.id, groups: approver.groups } : null,
      });
      return;
    }
    if (!approver.id) {
      throw new ApprovalError(
        "this credential carries no user id; approvals are read and decided by users (give the API key a user, or use a JWT with a subject)",
        403,
      );
    }
    if (parts.length === 0) {
      if (method !== "GET") throw new ApprovalError("use GET", 400);
      const state = url.searchParams.get("state") ?? "pending";
      const states =
        state === "all"
          ? []
          : state === "decided"
            ? STATES.filter((s) => s !== "pending")
            : state.split(",").filter((s) => (STATES as readonly string[]).includes(s));
      if (state !== "all" && states.length === 0) {
        throw new ApprovalError(`state must be pending, decided, all, or one of ${STATES.join(", ")}`, 400);
      }
      const list = await service.store.list({ states, limit: limit(url) });
      send(res, 200, { requests: list.map((r) => this.json(r, approver)) });
      return;
    }
    if (parts[0] === "events" && parts.length === 1 && method === "GET") {
      res.writeHead(200, {
        "Content-Type": "text/event-stream",
        "Cache-Control": "no-cache, no-transform",
        Connection: "keep-alive",
        "X-Accel-Buffering": "no",
      });
      res.write(": connected\n\nevent: changed\ndata: {}\n\n");
      this.streams.add(res);
      res.once("close", () => this.streams.delete(res));
      return;
    }
    if (parts[0] === "grants") {
      if (parts.length === 1 && method === "GET") {
        const grants = await service.store.listGrants(
          { includeInactive: url.searchParams.get("all") === "1", limit: limit(url) },
          Date.now(),
        );
        send(res, 200, { grants: grants.map(grantJson) });
        return;
      }
      if (parts.length === 3 && parts[2] === "revoke" && method === "POST") {
        const id = checkId(parts[1]);
        const body = await readJson(req);
        const g = await service.revokeGrant(id, approver, str(body.reason));
        send(res, 200, { grant: grantJson(g) });
        return;
      }
      throw new ApprovalError("not found", 404);
    }
    const id = checkId(parts[0]);
    if (parts.length === 1 && method === "GET") {
      const r = await service.store.get(id);
      if (!r) throw new ApprovalError(`no approval request ${id}`, 404);
      send(res, 200, { request: this.json(r, approver) });
      return;
    }
    if (parts.length === 2 && (parts[1] === "approve" || parts[1] === "deny") && method === "POST") {
      const body = await readJson(req);
      let forMs: number | undefined;
      if (body.for !== undefined && body.for !== null) {
        if (typeof body.for !== "string" || parseDuration(body.for) === undefined) {
          throw new ApprovalError('"for" must be a duration such as 15m, 1h or 1d', 400);
        }
        forMs = parseDuration(body.for);
      }
      const r = await service.decide(id, parts[1], approver, { reason: str(body.reason), forMs });
      send(res, 200, { request: this.json(r, approver) });
      return;
    }
    throw new ApprovalError("not found", 404);
  }

  private json(r: ApprovalRequest, approver: Approver): Record<string, unknown> {
    const out = requestJson(r, this.o.service.publicUrl);
    if (r.state === "pending") {
      out.canApprove = refusal(r.details, approver, "approve") === undefined;
      out.canDeny = refusal(r.details, approver, "deny") === undefined;
    }
    return out;
  }
}

function checkId(id: string | undefined): string {
  if (!id || !ID_PATTERN.test(id)) throw new ApprovalError(`"${(id ?? "").slice(0, 60)}" is not an approval id`, 404);
  return id;
}

function limit(url: URL): number {
  const n = Number(url.searchParams.get("limit") ?? "100");
  return Number.isInteger(n) && n > 0 ? Math.min(n, 1000) : 100;
}

const str = (v: unknown): string | undefined => (typeof v === "string" && v !== "" ? v : undefined);
const iso = (ms: number) => new Date(ms).toISOString();

function send(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, {
    "Content-Type": "application/json",
    "Content-Length": Buffer.byteLength(text),
    "Cache-Control": "no-store",
  });
  res.end(text);
}

async function readJson(req: IncomingMessage): Promise<Record<string, unknown>> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const c of req) {
    size += (c as Buffer).length;
    if (size > MAX_BODY) throw new ApprovalError("request body too large", 400);
    chunks.push(c as Buffer);
  }
  const text = Buffer.concat(chunks).toString("utf8").trim();
  if (text === "") return {};
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch {
    throw new ApprovalError("the body must be JSON", 400);
  }
  if (typeof v !== "object" || v === null || Array.isArray(v))
    throw new ApprovalError("the body must be a JSON object", 400);
  return v as Record<string, unknown>;
}
