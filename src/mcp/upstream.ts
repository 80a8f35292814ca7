// One connection to an upstream MCP server, whatever carries it (a child's
// stdio, Streamable HTTP). Warden talks to the server in its own id space:
// every request it forwards gets a fresh id, so requests from several sessions,
// and Warden's own (tools/list for the catalog), can never collide. Responses
// come back to whoever asked; requests and notifications from the server go to
// the handlers the session layer installs.
import {
  ErrorCode,
  errorResponse,
  isNotification,
  isRequest,
  isResponse,
  type JsonRpcMessage,
  type JsonRpcNotification,
  type JsonRpcRequest,
  type JsonRpcResponse,
  type RequestId,
} from "./jsonrpc.js";
import { ToolCatalog } from "./tool-catalog.js";

/** Moves JSON-RPC messages to and from a peer. */
export interface Transport {
  send(message: JsonRpcMessage): void;
  /** Set by the owner before start(). */
  onmessage?: (message: JsonRpcMessage) => void;
  /** The peer went away (process exit, stream end); called once. */
  onclose?: (reason: string) => void;
  start(): Promise<void>;
  close(): Promise<void>;
}

export interface InitializeResult {
  protocolVersion: string;
  capabilities: Record<string, unknown>;
  serverInfo: Record<string, unknown>;
  instructions?: string;
  [k: string]: unknown;
}

interface Pending {
  resolve(r: JsonRpcResponse): void;
  timer: NodeJS.Timeout | undefined;
}

export interface RequestOptions {
  /** Reject with an upstream error after this long (default: no timeout). */
  timeoutMs?: number;
}

const INTERNAL_TIMEOUT_MS = 30_000;

export class UpstreamConnection {
  private nextId = 1;
  private readonly pending = new Map<number, Pending>();
  private closedReason: string | null = null;
  /** What the server answered to initialize, once known. */
  initialized: InitializeResult | null = null;
  readonly catalog: ToolCatalog;
  /** Requests from the server (sampling, elicitation, roots, ping); the answer goes back to it. */
  onServerRequest: (request: JsonRpcRequest) => Promise<JsonRpcResponse> = async (r) =>
    errorResponse(r.id, ErrorCode.MethodNotFound, `no client is attached to answer ${r.method}`);
  onNotification: (n: JsonRpcNotification) => void = () => {};
  /** Called once when the connection ends. */
  onClose: (reason: string) => void = () => {};

  constructor(
    /** The server name policies use (the key in the config, or --server). */
    readonly name: string,
    private readonly transport: Transport,
  ) {
    this.catalog = new ToolCatalog(this);
    transport.onmessage = (m) => this.receive(m);
    transport.onclose = (reason) => this.closed(reason);
  }

  get isClosed(): boolean {
    return this.closedReason !== null;
  }

  get closeReason(): string | null {
    return this.closedReason;
  }

  start(): Promise<void> {
    return this.transport.start();
  }

  /**
   * Sends a request and resolves with the server's response (never rejects):
   * transport failures and timeouts become JSON-RPC error responses with the
   * id the caller gave, so they can be passed straight back to a client.
   */
  request(
    method: string,
    params: Record<string, unknown> | undefined,
    replyId: RequestId,
    opts: RequestOptions = {},
  ): { upstreamId: number; response: Promise<JsonRpcResponse> } {
    const upstreamId = this.nextId++;
    if (this.closedReason !== null) {
      return {
        upstreamId,
        response: Promise.resolve(
          errorResponse(
            replyId,
            ErrorCode.UpstreamUnavailable,
            `upstream ${this.name} is unavailable: ${this.closedReason}`,
          ),
        ),
      };
    }
    const response = new Promise<JsonRpcResponse>((resolve) => {
      const timer =
        opts.timeoutMs !== undefined
          ? setTimeout(() => {
              this.pending.delete(upstreamId);
              resolve(
                errorResponse(
                  replyId,
                  ErrorCode.UpstreamUnavailable,
                  `upstream ${this.name} did not answer ${method} within ${opts.timeoutMs} ms`,
                ),
              );
            }, opts.timeoutMs).unref()
          : undefined;
      this.pending.set(upstreamId, {
        resolve: (r) => resolve({ ...r, id: replyId }),
        timer,
      });
    });
    const message: JsonRpcRequest = { jsonrpc: "2.0", id: upstreamId, method };
    if (params !== undefined) message.params = params;
    this.transport.send(message);
    return { upstreamId, response };
  }

  /** Warden's own requests (initialize, the catalog's tools/list). */
  internalRequest(method: string, params?: Record<string, unknown>): Promise<JsonRpcResponse> {
    return this.request(method, params, `warden-${method}`, { timeoutMs: INTERNAL_TIMEOUT_MS }).response;
  }

  notify(method: string, params?: Record<string, unknown>): void {
    if (this.closedReason !== null) return;
    const message: JsonRpcNotification = { jsonrpc: "2.0", method };
    if (params !== undefined) message.params = params;
    this.transport.send(message);
  }

  /**
   * Stops waiting for a request the client cancelled: whoever awaits it gets an
   * error response now (to be dropped, not sent), and the late answer is ignored.
   */
  forget(upstreamId: number): void {
    const p = this.pending.get(upstreamId);
    if (!p) return;
    if (p.timer) clearTimeout(p.timer);
    this.pending.delete(upstreamId);
    p.resolve(errorResponse(null, ErrorCode.InvalidRequest, "cancelled by the client"));
  }

  /** Initializes the server on Warden's own behalf (shared upstreams). */
  async initialize(
    clientInfo: { name: string; version: string },
    capabilities: Record<string, unknown>,
  ): Promise<InitializeResult> {
    const r = await this.internalRequest("initialize", {
      protocolVersion: LATEST_PROTOCOL_VERSION,
      capabilities,
      clientInfo,
    });
    if (r.error || typeof r.result !== "object" || r.result === null) {
      throw new Error(`upstream ${this.name} refused initialize: ${r.error?.message ?? "no result"}`);
    }
    this.initialized = r.result as InitializeResult;
    this.notify("notifications/initialized");
    return this.initialized;
  }

  close(): Promise<void> {
    return this.transport.close();
  }

  private receive(m: JsonRpcMessage): void {
    if (isResponse(m)) {
      if (typeof m.id !== "number") return; // not one of ours: ignore rather than guess
      const p = this.pending.get(m.id);
      if (!p) return; // cancelled or timed out
      this.pending.delete(m.id);
      if (p.timer) clearTimeout(p.timer);
      p.resolve(m);
      return;
    }
    if (isRequest(m)) {
      const id = m.id;
      this.onServerRequest(m).then(
        (r) => this.transport.send({ ...r, id }),
        (err) => this.transport.send(errorResponse(id, ErrorCode.InternalError, String(err))),
      );
      return;
    }
    if (isNotification(m)) {
      if (m.method === "notifications/tools/list_changed") this.catalog.invalidate();
      this.onNotification(m);
    }
  }

  private closed(reason: string): void {
    if (this.closedReason !== null) return;
    this.closedReason = reason;
    for (const [, p] of this.pending) {
      if (p.timer) clearTimeout(p.timer);
      p.resolve(errorResponse(null, ErrorCode.UpstreamUnavailable, `upstream ${this.name} is unavailable: ${reason}`));
    }
    this.pending.clear();
    this.onClose(reason);
  }
}

export const LATEST_PROTOCOL_VERSION = "2025-11-25";
export const SUPPORTED_PROTOCOL_VERSIONS = ["2025-11-25", "2025-06-18", "2025-03-26", "2024-11-05"];
