// An upstream server as the sessions see it: the current connection (which a
// supervisor may replace after a crash), and the routing of what the server
// sends on its own initiative to the right session. With a shared upstream
// (one server process for many sessions) a message that cannot be attributed
// to exactly one session is not guessed at: progress goes by the token Warden
// gave the request, server requests and log messages go to the one session
// with a call in flight, or are refused (dropped) — a sampling request or a log
// line must never reach another user. Only list changes go to every session.
import {
  ErrorCode,
  errorResponse,
  type JsonRpcNotification,
  type JsonRpcRequest,
  type JsonRpcResponse,
  type RequestId,
} from "./jsonrpc.js";
import type { UpstreamConnection } from "./upstream.js";

/** What a session offers the handle: a way to pass server messages to its client. */
export interface UpstreamListener {
  readonly id: string;
  /** A request from the server (sampling, elicitation, roots); resolves with the client's answer. */
  serverRequest(handle: UpstreamHandle, request: JsonRpcRequest): Promise<JsonRpcResponse>;
  /** A notification from the server for this session; `relatedTo` is the client request it belongs to, if known. */
  serverNotification(handle: UpstreamHandle, n: JsonRpcNotification, relatedTo?: RequestId): void;
}

interface ProgressRoute {
  listener: UpstreamListener;
  token: string | number;
  requestId: RequestId;
}

/** Notifications about the server itself, which every session may see. */
const SERVER_WIDE = new Set([
  "notifications/tools/list_changed",
  "notifications/prompts/list_changed",
  "notifications/resources/list_changed",
]);

/**
 * passthrough: the connection belongs to one session and its client's initialize goes through.
 * managed: Warden initialized the connection itself; sessions are answered from what it learnt.
 */
export type UpstreamMode = "passthrough" | "managed";

export class UpstreamHandle {
  private connection: UpstreamConnection | null = null;
  private readonly listeners = new Set<UpstreamListener>();
  private readonly inflight = new Map<UpstreamListener, number>();
  private readonly progress = new Map<string, ProgressRoute>();
  private readonly subscriptions = new Map<string, Set<UpstreamListener>>();
  private nextToken = 1;
  /** Set while no connection is usable, e.g. between a crash and the restart. */
  unavailable: string | null = "not started";

  constructor(
    readonly name: string,
    readonly mode: UpstreamMode,
    /** One server for every session (a shared stdio server): what it says must be attributed before it is passed on. */
    readonly shared = false,
  ) {}

  get conn(): UpstreamConnection | null {
    return this.connection;
  }

  /** Uses a (new) connection from now on and routes its messages. */
  attach(conn: UpstreamConnection): void {
    this.connection = conn;
    this.unavailable = null;
    this.progress.clear();
    conn.onServerRequest = (r) => this.serverRequest(r);
    conn.onNotification = (n) => this.notification(n);
  }

  detach(reason: string): void {
    this.unavailable = reason;
  }

  listen(l: UpstreamListener): void {
    this.listeners.add(l);
  }

  unlisten(l: UpstreamListener): void {
    this.listeners.delete(l);
    this.inflight.delete(l);
    for (const [k, r] of this.progress) if (r.listener === l) this.progress.delete(k);
    for (const set of this.subscriptions.values()) set.delete(l);
  }

  get listenerCount(): number {
    return this.listeners.size;
  }

  /** Marks a client request in flight on this upstream, for routing server requests. */
  began(l: UpstreamListener): void {
    this.inflight.set(l, (this.inflight.get(l) ?? 0) + 1);
  }

  ended(l: UpstreamListener): void {
    const n = (this.inflight.get(l) ?? 1) - 1;
    if (n <= 0) this.inflight.delete(l);
    else this.inflight.set(l, n);
  }

  /**
   * Gives a request's progress token a Warden-wide unique one, so progress from a
   * shared server cannot be delivered to a session that reused the same token.
   */
  mapProgressToken(l: UpstreamListener, token: string | number, requestId: RequestId): string {
    const mapped = `warden-${this.nextToken++}`;
    this.progress.set(mapped, { listener: l, token, requestId });
    return mapped;
  }

  releaseProgressToken(mapped: string): void {
    this.progress.delete(mapped);
  }

  subscribe(l: UpstreamListener, uri: string): void {
    let set = this.subscriptions.get(uri);
    if (!set) {
      set = new Set();
      this.subscriptions.set(uri, set);
    }
    set.add(l);
  }

  unsubscribe(l: UpstreamListener, uri: string): void {
    this.subscriptions.get(uri)?.delete(l);
  }

  private serverRequest(r: JsonRpcRequest): Promise<JsonRpcResponse> {
    if (r.method === "ping") return Promise.resolve({ jsonrpc: "2.0", id: r.id, result: {} });
    const busy = [...this.inflight.keys()];
    const target = this.mode === "passthrough" ? [...this.listeners][0] : busy.length === 1 ? busy[0] : undefined;
    if (!target) {
      const why =
        busy.length > 1
          ? `several sessions have calls in flight on the shared upstream ${this.name}, so Warden cannot tell whose ${r.method} this is; configure isolation: session for this server`
          : `no session has a call in flight on upstream ${this.name} to answer ${r.method}`;
      return Promise.resolve(errorResponse(r.id, ErrorCode.InvalidRequest, why));
    }
    return target.serverRequest(this, r);
  }

  private notification(n: JsonRpcNotification): void {
    const params = n.params ?? {};
    if (n.method === "notifications/progress") {
      const token = params.progressToken;
      const route = typeof token === "string" ? this.progress.get(token) : undefined;
      if (!route) return; // not a token Warden handed out: nobody to deliver it to
      route.listener.serverNotification(
        this,
        { ...n, params: { ...params, progressToken: route.token } },
        route.requestId,
      );
      return;
    }
    if (n.method === "notifications/resources/updated" && typeof params.uri === "string") {
      for (const l of this.subscriptions.get(params.uri) ?? []) l.serverNotification(this, n);
      return;
    }
    if (SERVER_WIDE.has(n.method) || this.listeners.size <= 1) {
      for (const l of this.listeners) l.serverNotification(this, n);
      return;
    }
    // Anything else (log messages above all) may carry one user's data: it goes to the one
    // session with a call in flight, or to nobody, like a server request.
    const busy = [...this.inflight.keys()];
    if (busy.length === 1) busy[0]?.serverNotification(this, n);
  }
}
