// `warden serve`: the gateway as an HTTP service. It speaks Streamable HTTP
// (POST/GET/DELETE on one endpoint, Mcp-Session-Id, JSON or SSE answers,
// resumable streams) and the legacy HTTP+SSE transport, at /mcp/<server> for
// one upstream and /mcp for all of them (tool names prefixed "server__").
// Every request is authenticated and checked against DNS rebinding (Host and
// Origin allow-lists) before anything else happens.
import { randomUUID } from "node:crypto";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import type { AuditEvent } from "../audit/record.js";
import type { ServeConfig } from "./config.js";
import { isLoopback } from "./config.js";
import { EventStream, parseLastEventId } from "./event-stream.js";
import type { Governor } from "./governor.js";
import type { Authenticator, Identity } from "./identity.js";
import {
  checkMessage,
  ErrorCode,
  errorResponse,
  idOf,
  isRequest,
  type JsonRpcMessage,
  type JsonRpcResponse,
  parseFrame,
  type RequestId,
  refusedSubject,
} from "./jsonrpc.js";
import { GovernedSession } from "./session.js";
import { SUPPORTED_PROTOCOL_VERSIONS } from "./upstream.js";
import type { UpstreamPool } from "./upstream-pool.js";

export interface HttpGatewayOptions {
  config: ServeConfig;
  governor: Governor;
  pool: UpstreamPool;
  auth: Authenticator;
  version: string;
  log(message: string): void;
  /** More routes (the approvals API and page); resolves true when it answered. Runs after the Host/Origin checks. */
  routes?: (req: IncomingMessage, res: ServerResponse, path: string) => Promise<boolean>;
}

type Transport = "streamable" | "sse";

/** A POST that carries requests: answered as JSON, or switched to SSE when related messages arrive first. */
class PostExchange {
  private waiting: number;
  private readonly answers: JsonRpcResponse[] = [];
  stream: EventStream | null = null;

  constructor(
    private readonly session: HttpSession,
    private readonly res: ServerResponse,
    /** How many answers this POST expects: one per request, and one per invalid message. */
    expected: number,
    private readonly batch: boolean,
    /** A single message that was not valid JSON-RPC: answered with 400. */
    private readonly invalid: boolean,
  ) {
    this.waiting = expected;
  }

  /** A message the server sent in relation to one of this POST's requests. */
  related(message: JsonRpcMessage): void {
    if (!this.stream) {
      this.stream = new EventStream(randomUUID());
      this.session.addStream(this.stream);
      this.stream.attach(this.res, 0, this.session.headers());
    }
    this.stream.push(message);
  }

  answered(response: JsonRpcResponse | undefined): void {
    this.waiting--;
    if (response) this.answers.push(response);
    if (this.waiting > 0) return;
    if (this.stream) {
      for (const a of this.answers) this.stream.push(a);
      this.stream.finish();
    } else if (this.answers.length === 0) {
      // Every request was cancelled by the client: nothing to answer.
      if (!this.res.headersSent) this.res.writeHead(202, this.session.headers()).end();
    } else if (!this.res.headersSent && !this.res.destroyed) {
      const body = JSON.stringify(this.batch ? this.answers : this.answers[0]);
      this.res
        .writeHead(this.invalid ? 400 : 200, { "Content-Type": "application/json", ...this.session.headers() })
        .end(body);
    }
  }
}

/** How long, and how many, answered POST streams a session keeps for a client to resume. */
const RESUME_WINDOW_MS = 2 * 60_000;
const KEEP_FINISHED_STREAMS = 16;
const KEEP_FINISHED_CHARS = 8 * 1024 * 1024;

class HttpSession {
  readonly id = randomUUID();
  readonly streams = new Map<string, EventStream>();
  /** Server messages that belong to no request: the GET stream (buffered until one is open). */
  readonly standalone = new EventStream(`${this.id}-standalone`);
  readonly exchanges = new Map<RequestId, PostExchange>();
  governed!: GovernedSession;
  lastSeen = Date.now();
  /** Legacy HTTP+SSE: the one stream everything goes to. */
  sse: ServerResponse | null = null;
  closeUpstreams: () => Promise<void> = async () => {};
  protocolVersion: string | null = null;
  /** Its upstream is gone: no longer reachable by id, closed once its last exchange is answered. */
  ending = false;
  private closed = false;

  constructor(
    readonly transport: Transport,
    readonly endpoint: string | null,
    readonly principal: string,
  ) {}

  headers(): Record<string, string> {
    return this.transport === "streamable" ? { "Mcp-Session-Id": this.id } : {};
  }

  /** Registers a POST's stream for resumption, dropping answered ones past the window or the count. */
  addStream(stream: EventStream): void {
    this.pruneStreams();
    this.streams.set(stream.id, stream);
  }

  pruneStreams(now = Date.now()): void {
    let finished = 0;
    let kept = 0;
    for (const s of this.streams.values()) {
      if (!s.done) continue;
      finished++;
      kept += s.keptSize;
    }
    // Oldest first (insertion order).
    for (const [id, s] of this.streams) {
      if (!s.done) continue;
      if (finished > KEEP_FINISHED_STREAMS || kept > KEEP_FINISHED_CHARS || now - s.finishedAt > RESUME_WINDOW_MS) {
        this.streams.delete(id);
        finished--;
        kept -= s.keptSize;
      }
    }
  }

  send(message: JsonRpcMessage, relatedTo?: RequestId): void {
    if (this.transport === "sse") {
      this.sse?.write(`event: message\ndata: ${JSON.stringify(message)}\n\n`);
      return;
    }
    const exchange = relatedTo === undefined ? undefined : this.exchanges.get(relatedTo);
    if (exchange) exchange.related(message);
    else this.standalone.push(message);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.governed.close();
    for (const s of this.streams.values()) s.finish();
    this.standalone.finish();
    if (this.sse && !this.sse.writableEnded) this.sse.end();
    await this.closeUpstreams();
  }
}

const principalOf = (i: Identity) => `${i.via}\u0000${i.agent.name}\u0000${i.user?.id ?? ""}`;

export class HttpGateway {
  private readonly server: Server;
  private readonly sessions = new Map<string, HttpSession>();
  /** Sessions whose upstream is gone, closed once their last exchange is answered (or at close()). */
  private readonly ending = new Set<HttpSession>();
  private readonly sweeper: NodeJS.Timeout;
  private readonly keepAlive: NodeJS.Timeout;
  private allowedHosts = new Set<string>();

  constructor(private readonly o: HttpGatewayOptions) {
    this.server = createServer((req, res) => {
      this.route(req, res).catch((err) => {
        o.log(`internal error: ${(err as Error).stack ?? err}`);
        if (!res.headersSent) json(res, 500, errorResponse(null, ErrorCode.InternalError, "internal error in Warden"));
        else res.end();
      });
    });
    // Long-lived SSE responses must not be cut by the request timeout.
    this.server.requestTimeout = 0;
    this.server.headersTimeout = 30_000;
    // Bounded, generously: every session may hold a GET stream and a POST in flight.
    this.server.maxConnections = o.config.limits.maxSessions * 2 + 256;
    this.sweeper = setInterval(() => void this.sweep(), Math.min(60_000, o.config.limits.sessionIdleMs)).unref();
    this.keepAlive = setInterval(() => {
      for (const s of this.sessions.values()) {
        s.standalone.keepAlive();
        if (s.sse) s.sse.write(": keep-alive\n\n");
      }
    }, 15_000).unref();
  }

  /** Listens; resolves with the base URL. */
  async listen(): Promise<string> {
    const { host, port } = this.o.config.listen;
    await new Promise<void>((resolve, reject) => {
      this.server.once("error", reject);
      this.server.listen(port, host, () => resolve());
    });
    const actual = (this.server.address() as AddressInfo).port;
    const hosts = this.o.config.security.allowedHosts;
    this.allowedHosts = new Set(
      hosts.length > 0
        ? hosts.map((h) => h.toLowerCase())
        : isLoopback(host)
          ? [`127.0.0.1:${actual}`, `localhost:${actual}`, `[::1]:${actual}`]
          : [],
    );
    const shown = host.includes(":") ? `[${host}]` : host;
    return `http://${shown}:${actual}`;
  }

  get sessionCount(): number {
    return this.sessions.size;
  }

  /** Tells every session that its tool list may have changed (policy reload, server restart). */
  toolsChanged(server?: string): void {
    for (const s of this.sessions.values()) {
      if (server === undefined || s.endpoint === null || s.endpoint === server) s.governed.toolsChanged();
    }
  }

  async close(): Promise<void> {
    clearInterval(this.sweeper);
    clearInterval(this.keepAlive);
    await Promise.all([...this.sessions.values(), ...this.ending].map((s) => s.close()));
    this.sessions.clear();
    this.ending.clear();
    await new Promise<void>((resolve) => {
      this.server.close(() => resolve());
      this.server.closeAllConnections();
    });
  }

  // ---- routing ----

  private async route(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? "/", "http://warden.invalid");
    const path = url.pathname.replace(/\/+$/, "") || "/";
    const rebinding = this.checkHostAndOrigin(req, res);
    if (rebinding) return;
    if (req.method === "OPTIONS") {
      res.writeHead(204, {
        "Access-Control-Allow-Methods": "GET, POST, DELETE, OPTIONS",
        "Access-Control-Allow-Headers":
          "Content-Type, Authorization, X-API-Key, Mcp-Session-Id, MCP-Protocol-Version, Last-Event-ID",
        "Access-Control-Max-Age": "600",
      });
      res.end();
      return;
    }
    if (path === "/healthz" && req.method === "GET") {
      json(res, 200, { status: "ok" });
      return;
    }
    if (path === "/readyz" && req.method === "GET") {
      const s = this.o.pool.status();
      json(res, s.ready ? 200 : 503, {
        status: s.ready ? "ready" : "not ready",
        upstreams: s.upstreams,
        sessions: this.sessions.size,
      });
      return;
    }
    if (this.o.routes && (await this.o.routes(req, res, path))) return;
    const mcp = /^\/mcp(?:\/([^/]+))?$/.exec(path);
    const sse = /^\/sse(?:\/([^/]+))?$/.exec(path);
    if (!mcp && !sse && path !== "/messages") {
      json(res, 404, { error: "not found: MCP is served at /mcp and /mcp/<server> (legacy SSE: /sse)" });
      return;
    }
    const endpoint = safeDecode((mcp ?? sse)?.[1] ?? "") || null;
    if (endpoint !== null && !this.o.pool.has(endpoint)) {
      json(res, 404, { error: `no upstream named "${endpoint}"; configured: ${this.o.pool.names.join(", ")}` });
      return;
    }
    const auth = this.o.auth.authenticate(req.headers);
    if (!auth.ok) {
      void this.refused(req, auth.reason, "auth");
      res.writeHead(auth.status, { "Content-Type": "application/json", "WWW-Authenticate": 'Bearer realm="warden"' });
      res.end(JSON.stringify(errorResponse(null, ErrorCode.InvalidRequest, `unauthorized: ${auth.reason}`)));
      return;
    }
    if (mcp) {
      if (req.method === "POST") return this.post(req, res, endpoint, auth.identity);
      if (req.method === "GET") return this.get(req, res, auth.identity);
      if (req.method === "DELETE") return this.delete(req, res, auth.identity);
      res.writeHead(405, { Allow: "GET, POST, DELETE" }).end();
      return;
    }
    if (sse) {
      if (req.method !== "GET") {
        res.writeHead(405, { Allow: "GET" }).end();
        return;
      }
      return this.openLegacy(req, res, endpoint, auth.identity);
    }
    if (req.method !== "POST") {
      res.writeHead(405, { Allow: "POST" }).end();
      return;
    }
    return this.legacyMessage(req, res, url, auth.identity);
  }

  /** DNS rebinding protection: the Host must be ours and a browser's Origin must be allowed. */
  private checkHostAndOrigin(req: IncomingMessage, res: ServerResponse): boolean {
    const host = (req.headers.host ?? "").toLowerCase();
    if (this.allowedHosts.size > 0 && !this.allowedHosts.has(host)) {
      void this.refused(req, `Host header "${host}" is not allowed (DNS rebinding protection)`, "host");
      json(res, 403, errorResponse(null, ErrorCode.InvalidRequest, `forbidden: Host "${host}" is not allowed`));
      return true;
    }
    const origin = req.headers.origin;
    if (origin !== undefined) {
      if (!this.originAllowed(origin)) {
        void this.refused(req, `Origin "${origin}" is not allowed (DNS rebinding protection)`, "origin");
        json(res, 403, errorResponse(null, ErrorCode.InvalidRequest, `forbidden: Origin "${origin}" is not allowed`));
        return true;
      }
      res.setHeader("Access-Control-Allow-Origin", origin);
      res.setHeader("Access-Control-Expose-Headers", "Mcp-Session-Id");
      res.setHeader("Vary", "Origin");
    }
    return false;
  }

  private originAllowed(origin: string): boolean {
    const configured = this.o.config.security.allowedOrigins;
    const patterns =
      configured.length > 0
        ? configured
        : isLoopback(this.o.config.listen.host)
          ? ["http://localhost:*", "http://127.0.0.1:*", "http://[::1]:*"]
          : [];
    return patterns.some((p) =>
      p.endsWith(":*") ? origin.startsWith(p.slice(0, -1)) && /^\d+$/.test(origin.slice(p.length - 1)) : origin === p,
    );
  }

  private refused(
    req: IncomingMessage,
    reason: string,
    stage: string,
    subject: { method?: string; tool?: string; server?: string | null } = {},
  ): Promise<boolean> {
    const path = req.url?.slice(0, 200);
    const fromPath = /^\/(?:mcp|sse)\/([^/?]+)/.exec(path ?? "")?.[1];
    const server = subject.server !== undefined ? subject.server : fromPath === undefined ? null : safeDecode(fromPath);
    const event: AuditEvent = {
      type: "decision",
      decision: "deny",
      enforced: true,
      server,
      tool: subject.tool ?? null,
      reason,
      detail: { stage, method: req.method, path, remote: req.socket.remoteAddress, rpcMethod: subject.method ?? null },
    };
    return this.o.governor.record(event);
  }

  // ---- Streamable HTTP ----

  private async post(
    req: IncomingMessage,
    res: ServerResponse,
    endpoint: string | null,
    identity: Identity,
  ): Promise<void> {
    const accept = req.headers.accept ?? "";
    if (!accept.includes("application/json") || !accept.includes("text/event-stream")) {
      json(
        res,
        406,
        errorResponse(null, ErrorCode.InvalidRequest, "Accept must list application/json and text/event-stream"),
      );
      return;
    }
    if (!(req.headers["content-type"] ?? "").includes("application/json")) {
      json(res, 415, errorResponse(null, ErrorCode.InvalidRequest, "Content-Type must be application/json"));
      return;
    }
    const body = await readBody(req, this.o.config.limits.maxMessageBytes);
    if (body === null) {
      void this.refused(req, "message over the size limit", "protocol");
      json(
        res,
        413,
        errorResponse(
          null,
          ErrorCode.RequestTooLarge,
          `message is larger than ${this.o.config.limits.maxMessageBytes} bytes`,
        ),
      );
      return;
    }
    const parsed = parseFrame(body, this.o.config.limits.maxMessageBytes);
    if (!parsed.ok) {
      void this.refused(req, `message refused: ${parsed.why}`, "protocol", refusedSubject(parsed.value));
      json(res, 400, parsed.response);
      return;
    }
    const sessionId = header(req, "mcp-session-id");
    const isInit = parsed.messages.some((m) => (m as { method?: unknown })?.method === "initialize");
    let session: HttpSession;
    if (isInit) {
      if (sessionId !== undefined || parsed.batch) {
        json(
          res,
          400,
          errorResponse(
            idOf(parsed.messages[0]),
            ErrorCode.InvalidRequest,
            "initialize must be sent alone, without an Mcp-Session-Id",
          ),
        );
        return;
      }
      if (this.sessions.size >= this.o.config.limits.maxSessions) {
        json(
          res,
          503,
          errorResponse(idOf(parsed.messages[0]), ErrorCode.InternalError, "too many sessions; try again later"),
        );
        return;
      }
      session = await this.createSession("streamable", endpoint, identity);
    } else {
      const found = this.findSession(req, res, sessionId, identity, endpoint);
      if (!found) return;
      session = found;
      const version = header(req, "mcp-protocol-version");
      if (version !== undefined && !SUPPORTED_PROTOCOL_VERSIONS.includes(version)) {
        json(res, 400, errorResponse(null, ErrorCode.InvalidRequest, `unsupported MCP-Protocol-Version ${version}`));
        return;
      }
    }
    // Every message goes to the session, which refuses (and records) invalid ones with an
    // error response; requests and invalid messages are answered, notifications and
    // responses are not. A POST with nothing to answer gets 202.
    const answered = parsed.messages.filter((m) => checkMessage(m) !== undefined || isRequest(m as JsonRpcMessage));
    if (answered.length === 0) {
      for (const m of parsed.messages) await session.governed.handle(m);
      res.writeHead(202, session.headers()).end();
      return;
    }
    const exchange = new PostExchange(
      session,
      res,
      answered.length,
      parsed.batch,
      !parsed.batch && checkMessage(parsed.messages[0]) !== undefined,
    );
    const routed: RequestId[] = [];
    for (const m of answered) {
      const id = checkMessage(m) === undefined ? (m as { id: RequestId }).id : undefined;
      // Related server messages are routed by request id; a reused id keeps its first exchange.
      if (id !== undefined && !session.exchanges.has(id)) {
        session.exchanges.set(id, exchange);
        routed.push(id);
      }
    }
    await Promise.all(
      parsed.messages.map(async (m) => {
        const response = await session.governed.handle(m).catch((err): JsonRpcResponse => {
          this.o.log(`internal error: ${(err as Error).stack ?? err}`);
          return errorResponse(
            idOf(m),
            ErrorCode.InternalError,
            "internal error in Warden; the call was not forwarded",
          );
        });
        if (!answered.includes(m)) return;
        if (response && (m as { method?: string } | null)?.method === "initialize" && response.result) {
          session.protocolVersion = String((response.result as { protocolVersion?: unknown }).protocolVersion ?? "");
        }
        exchange.answered(response);
      }),
    );
    for (const id of routed) if (session.exchanges.get(id) === exchange) session.exchanges.delete(id);
    session.lastSeen = Date.now();
    if (session.ending && session.exchanges.size === 0) void this.closeEnding(session);
  }

  private async get(req: IncomingMessage, res: ServerResponse, identity: Identity): Promise<void> {
    if (!(req.headers.accept ?? "").includes("text/event-stream")) {
      json(res, 406, errorResponse(null, ErrorCode.InvalidRequest, "Accept must list text/event-stream"));
      return;
    }
    const session = this.findSession(req, res, header(req, "mcp-session-id"), identity, undefined);
    if (!session) return;
    session.lastSeen = Date.now();
    const last = header(req, "last-event-id");
    if (last !== undefined) {
      const at = parseLastEventId(last);
      const stream = at && (at.stream === session.standalone.id ? session.standalone : session.streams.get(at.stream));
      if (!at || !stream) {
        json(res, 404, errorResponse(null, ErrorCode.InvalidRequest, `unknown Last-Event-ID ${last}`));
        return;
      }
      stream.attach(res, at.seq, session.headers());
      return;
    }
    if (session.standalone.attached) {
      json(res, 409, errorResponse(null, ErrorCode.InvalidRequest, "this session already has an open GET stream"));
      return;
    }
    session.standalone.attach(res, 0, session.headers());
  }

  private async delete(req: IncomingMessage, res: ServerResponse, identity: Identity): Promise<void> {
    const session = this.findSession(req, res, header(req, "mcp-session-id"), identity, undefined);
    if (!session) return;
    this.sessions.delete(session.id);
    await session.close();
    res.writeHead(200).end();
  }

  private findSession(
    req: IncomingMessage,
    res: ServerResponse,
    id: string | undefined,
    identity: Identity,
    endpoint: string | null | undefined,
  ): HttpSession | undefined {
    if (id === undefined) {
      json(
        res,
        400,
        errorResponse(null, ErrorCode.InvalidRequest, "Mcp-Session-Id header required (initialize first)"),
      );
      return undefined;
    }
    const session = this.sessions.get(id);
    if (session?.transport !== "streamable") {
      json(res, 404, errorResponse(null, ErrorCode.InvalidRequest, "unknown or expired session; initialize a new one"));
      return undefined;
    }
    if (session.principal !== principalOf(identity)) {
      void this.refused(req, `session ${id} belongs to another identity`, "session");
      json(res, 403, errorResponse(null, ErrorCode.InvalidRequest, "this session belongs to another identity"));
      return undefined;
    }
    if (endpoint !== undefined && endpoint !== session.endpoint) {
      json(res, 404, errorResponse(null, ErrorCode.InvalidRequest, "this session belongs to another endpoint"));
      return undefined;
    }
    return session;
  }

  private async createSession(transport: Transport, endpoint: string | null, identity: Identity): Promise<HttpSession> {
    const session = new HttpSession(transport, endpoint, principalOf(identity));
    const { handles, close } = await this.o.pool.open(
      endpoint,
      {
        lost: (server, reason) => this.endLostSession(session, server, reason),
        restarted: () => session.governed?.toolsChanged(),
      },
      session.id,
    );
    session.closeUpstreams = close;
    session.governed = new GovernedSession({
      id: session.id,
      identity,
      governor: this.o.governor,
      upstreams: handles,
      aggregate: endpoint === null,
      send: (m, related) => session.send(m, related),
      serverInfo: { name: "warden", version: this.o.version },
      log: this.o.log,
    });
    this.sessions.set(session.id, session);
    // Its upstream was lost while it was being created: it ends as soon as this request is answered.
    if (session.ending) {
      this.sessions.delete(session.id);
      this.ending.add(session);
    }
    return session;
  }

  // ---- legacy HTTP+SSE (protocol 2024-11-05) ----

  private async openLegacy(
    _req: IncomingMessage,
    res: ServerResponse,
    endpoint: string | null,
    identity: Identity,
  ): Promise<void> {
    if (this.sessions.size >= this.o.config.limits.maxSessions) {
      json(res, 503, { error: "too many sessions; try again later" });
      return;
    }
    const session = await this.createSession("sse", endpoint, identity);
    session.sse = res;
    res.writeHead(200, {
      "Content-Type": "text/event-stream",
      "Cache-Control": "no-cache, no-transform",
      Connection: "keep-alive",
    });
    res.write(`event: endpoint\ndata: /messages?sessionId=${session.id}\n\n`);
    res.once("close", () => {
      this.sessions.delete(session.id);
      this.ending.delete(session);
      void session.close();
    });
  }

  private async legacyMessage(req: IncomingMessage, res: ServerResponse, url: URL, identity: Identity): Promise<void> {
    const id = url.searchParams.get("sessionId") ?? "";
    const session = this.sessions.get(id);
    if (session?.transport !== "sse") {
      json(res, 404, { error: "unknown session" });
      return;
    }
    if (session.principal !== principalOf(identity)) {
      void this.refused(req, `session ${id} belongs to another identity`, "session");
      json(res, 403, { error: "this session belongs to another identity" });
      return;
    }
    const body = await readBody(req, this.o.config.limits.maxMessageBytes);
    if (body === null) {
      void this.refused(req, "message over the size limit", "protocol", { server: session.endpoint });
      json(res, 413, { error: "message too large" });
      return;
    }
    const parsed = parseFrame(body, this.o.config.limits.maxMessageBytes);
    res.writeHead(202).end("Accepted");
    session.lastSeen = Date.now();
    if (!parsed.ok) {
      void this.refused(req, `message refused: ${parsed.why}`, "protocol", {
        ...refusedSubject(parsed.value),
        server: session.endpoint,
      });
      session.send(parsed.response);
      return;
    }
    const answers = await Promise.all(parsed.messages.map((m) => session.governed.handle(m)));
    const responses = answers.filter((a): a is JsonRpcResponse => a !== undefined);
    if (responses.length > 0) session.send(parsed.batch ? (responses as never) : (responses[0] as JsonRpcResponse));
  }

  /**
   * The upstream connection the client initialized is gone (the server forgot the session,
   * or its process died): new requests on this session get 404, which tells the client to
   * initialize a new one; requests in flight are answered first.
   */
  private endLostSession(session: HttpSession, server: string, reason: string): void {
    if (session.ending) return;
    session.ending = true;
    this.o.log(`session ${session.id} ends: upstream ${server} is gone (${reason}); the client must initialize again`);
    // Lost while the session was being created: createSession takes it out again.
    if (this.sessions.get(session.id) !== session) return;
    this.sessions.delete(session.id);
    this.ending.add(session);
    if (session.exchanges.size === 0) void this.closeEnding(session);
  }

  private async closeEnding(session: HttpSession): Promise<void> {
    this.ending.delete(session);
    await session.close();
  }

  /** Closes sessions idle for longer than the limit (a client that vanished without DELETE). */
  private async sweep(): Promise<void> {
    const cutoff = Date.now() - this.o.config.limits.sessionIdleMs;
    for (const [id, s] of this.sessions) {
      const busy = s.standalone.attached || s.sse !== null || s.exchanges.size > 0;
      if (!busy && s.lastSeen < cutoff) {
        this.sessions.delete(id);
        await s.close();
      } else s.pruneStreams();
    }
  }
}

const BODY_TIMEOUT_MS = 30_000;

/** A path segment decoded, or as it is when its percent-encoding is malformed (it then names no upstream). */
function safeDecode(segment: string): string {
  try {
    return decodeURIComponent(segment);
  } catch {
    return segment;
  }
}

function header(req: IncomingMessage, name: string): string | undefined {
  const v = req.headers[name];
  return Array.isArray(v) ? v[0] : v;
}

function json(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { "Content-Type": "application/json", "Content-Length": Buffer.byteLength(text) });
  res.end(text);
}

/** The body as text, or null when it is over the limit (the rest is not read). */
function readBody(req: IncomingMessage, maxBytes: number): Promise<string | null> {
  return new Promise((resolve, reject) => {
    const declared = Number(req.headers["content-length"] ?? "0");
    if (declared > maxBytes) {
      resolve(null);
      req.resume();
      return;
    }
    // A client that stops sending halfway must not hold the connection for ever.
    const timer = setTimeout(() => req.destroy(new Error("request body not received in time")), BODY_TIMEOUT_MS);
    req.once("close", () => clearTimeout(timer));
    const chunks: Buffer[] = [];
    let size = 0;
    let over = false;
    req.on("data", (c: Buffer) => {
      if (over) return;
      size += c.length;
      if (size > maxBytes) {
        over = true;
        chunks.length = 0;
        return;
      }
      chunks.push(c);
    });
    req.on("end", () => resolve(over ? null : Buffer.concat(chunks).toString("utf8")));
    req.on("error", reject);
  });
}
