// One governed MCP session: a client on one side, one upstream server (or,
// on the aggregate endpoint, several) on the other. Everything the protocol
// allows passes through; tools/list is filtered to what the caller could ever
// be allowed, tools/call goes through the Governor first, and methods Warden
// does not know are refused rather than forwarded (a lenient server might
// read "Tools/Call" as tools/call).
import { RE2JS } from "@bufbuild/re2";
import type { Governor, HoldContext } from "./governor.js";
import { notAvailable } from "./governor.js";
import type { Identity } from "./identity.js";
import {
  checkMessage,
  ErrorCode,
  errorResponse,
  idOf,
  isNotification,
  isRequest,
  type JsonRpcMessage,
  type JsonRpcNotification,
  type JsonRpcRequest,
  type JsonRpcResponse,
  type RequestId,
} from "./jsonrpc.js";
import type { ToolDefinition } from "./tool-catalog.js";
import { SUPPORTED_PROTOCOL_VERSIONS, type UpstreamConnection } from "./upstream.js";
import type { UpstreamHandle, UpstreamListener } from "./upstream-handle.js";

/** Separates server and tool in aggregated names: github__create_issue. Server names may not contain it. */
export const AGGREGATE_SEPARATOR = "__";

/** Client → server requests Warden knows and passes on (tools/* are governed). */
const REQUESTS = new Set([
  "initialize",
  "ping",
  "tools/list",
  "tools/call",
  "resources/list",
  "resources/templates/list",
  "resources/read",
  "resources/subscribe",
  "resources/unsubscribe",
  "prompts/list",
  "prompts/get",
  "completion/complete",
  "logging/setLevel",
  "tasks/get",
  "tasks/result",
  "tasks/list",
  "tasks/cancel",
]);

const CLIENT_NOTIFICATIONS = new Set([
  "notifications/initialized",
  "notifications/cancelled",
  "notifications/progress",
  "notifications/roots/list_changed",
]);

const MAX_AGGREGATE_PAGES = 100;
const DEFAULT_REQUEST_TIMEOUT_MS = 10 * 60_000;

/** How long a client may take to answer a request from the server (sampling, elicitation). */
const CLIENT_ANSWER_TIMEOUT_MS = 10 * 60_000;

export interface SessionOptions {
  id: string;
  identity: Identity;
  governor: Governor;
  upstreams: readonly UpstreamHandle[];
  /** The aggregate endpoint: several upstreams, names prefixed with "server__". */
  aggregate: boolean;
  /** Sends to the client; `relatedTo` is the client request the message belongs to, if any. */
  send(message: JsonRpcMessage, relatedTo?: RequestId): void;
  serverInfo: { name: string; version: string };
  /** Operator-facing notes (stderr). */
  log(message: string): void;
  /** An upstream that has not answered a forwarded request after this long answers with an error (default 10 minutes). */
  requestTimeoutMs?: number;
}

interface InFlight {
  handle: UpstreamHandle;
  conn: UpstreamConnection;
  upstreamId: number;
  cancelled: boolean;
}

export class GovernedSession implements UpstreamListener {
  readonly id: string;
  /** Forwarded calls per tool, for session.calls in CEL. */
  readonly calls: Record<string, number> = Object.create(null);
  private clientCapabilities: Record<string, unknown> = {};
  private nextClientRequestId = 1;
  private readonly awaitingClient = new Map<RequestId, (r: JsonRpcResponse) => void>();
  private readonly inflight = new Map<RequestId, InFlight>();
  /** Calls held before forwarding (waiting for approval): aborted on notifications/cancelled or close. */
  private readonly held = new Map<RequestId, AbortController>();
  private readonly tasks = new Map<UpstreamHandle, Set<string>>();
  /** Requests a server sent the client, by "<server>\0<server's id>" → the id the client knows. */
  private readonly forwardedToClient = new Map<string, string>();
  /** Ids of client requests being handled now. */
  private readonly busyIds = new Set<RequestId>();
  private closed = false;
  /** The client can send nothing more (its stdin ended): nobody will answer a request sent to it. */
  private clientGone = false;

  constructor(private readonly o: SessionOptions) {
    this.id = o.id;
    for (const h of o.upstreams) h.listen(this);
  }

  get identity(): Identity {
    return this.o.identity;
  }

  /** Records a message Warden refused before any policy decision (never throws). */
  private refuse(reason: string, detail: { tool?: string; server?: string; stage?: string }): void {
    void this.o.governor.record({
      type: "decision",
      decision: "deny",
      enforced: true,
      agent: { name: this.identity.agent.name },
      user: this.identity.user?.id !== undefined ? { id: this.identity.user.id } : null,
      session: this.id,
      server: detail.server ?? (this.o.aggregate ? null : (this.o.upstreams[0]?.name ?? null)),
      tool: detail.tool ?? null,
      reason,
      detail: { stage: detail.stage ?? "protocol" },
    });
  }

  /** Stops routing to this session; answers the server requests it still owed. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    for (const h of this.o.upstreams) h.unlisten(this);
    for (const [id, resolve] of this.awaitingClient) {
      resolve(errorResponse(id, ErrorCode.InternalError, "the client session ended"));
    }
    this.awaitingClient.clear();
    for (const c of this.held.values()) c.abort(new Error("the client session ended"));
    this.held.clear();
    for (const f of this.inflight.values()) {
      f.conn.notify("notifications/cancelled", { requestId: f.upstreamId, reason: "client session ended" });
      f.conn.forget(f.upstreamId);
    }
    this.inflight.clear();
  }

  /**
   * The client will send nothing more (stdio: its stdin ended), while the requests it sent are
   * still handled. Requests from servers waiting for its answer (sampling, elicitation, roots)
   * get an error now, and later ones at once, instead of holding their calls until a timeout.
   */
  clientInputEnded(): void {
    if (this.clientGone) return;
    this.clientGone = true;
    for (const [id, resolve] of this.awaitingClient) {
      resolve(errorResponse(id, ErrorCode.InternalError, "the client closed the connection"));
    }
    this.awaitingClient.clear();
  }

  /**
   * Handles one message from the client. Requests resolve with the response to
   * send (undefined if the client cancelled it); everything else resolves undefined.
   */
  async handle(message: unknown): Promise<JsonRpcResponse | undefined> {
    const problem = checkMessage(message);
    if (problem) {
      this.refuse(`invalid message: ${problem}`, {});
      return errorResponse(idOf(message), ErrorCode.InvalidRequest, problem);
    }
    const m = message as JsonRpcMessage;
    if (isRequest(m)) return this.request(m);
    if (isNotification(m)) {
      this.clientNotification(m);
      return undefined;
    }
    this.clientResponse(m as JsonRpcResponse);
    return undefined;
  }

  private async request(r: JsonRpcRequest): Promise<JsonRpcResponse | undefined> {
    if (!REQUESTS.has(r.method)) {
      this.refuse(`method "${r.method.slice(0, 200)}" is not an MCP method Warden passes on`, {});
      return errorResponse(
        r.id,
        ErrorCode.MethodNotFound,
        `method "${r.method}" is not an MCP method Warden passes on`,
      );
    }
    // Ids identify answers: a second request with the id of one still in flight would get a
    // mixed-up answer, so it is refused (and not forwarded).
    if (this.busyIds.has(r.id)) {
      this.refuse(`request id ${JSON.stringify(r.id)} reused while a request with it is in flight`, {});
      return errorResponse(
        r.id,
        ErrorCode.InvalidRequest,
        `request id ${JSON.stringify(r.id)} is already in use by a request in flight`,
      );
    }
    this.busyIds.add(r.id);
    try {
      return await this.dispatch(r);
    } finally {
      this.busyIds.delete(r.id);
    }
  }

  private async dispatch(r: JsonRpcRequest): Promise<JsonRpcResponse | undefined> {
    switch (r.method) {
      case "initialize":
        return this.initialize(r);
      case "ping":
        return this.single()?.mode === "passthrough" ? this.forward(r, this.single() as UpstreamHandle) : ok(r.id, {});
      case "tools/list":
        return this.toolsList(r);
      case "tools/call":
        return this.toolsCall(r);
      case "prompts/list":
      case "resources/list":
      case "resources/templates/list":
        return this.aggregateList(r);
      case "prompts/get":
        return this.routedByName(r, "name");
      case "completion/complete":
        return this.completion(r);
      case "resources/read":
      case "resources/subscribe":
      case "resources/unsubscribe":
        return this.resource(r);
      case "logging/setLevel":
        return this.everywhere(r);
      default:
        return this.task(r);
    }
  }

  // ---- initialize ----

  private async initialize(r: JsonRpcRequest): Promise<JsonRpcResponse | undefined> {
    const params = r.params ?? {};
    this.clientCapabilities = (params.capabilities as Record<string, unknown>) ?? {};
    const one = this.single();
    if (one?.mode === "passthrough") {
      const response = await this.forward(r, one);
      if (response?.result && one.conn) one.conn.initialized = response.result as never;
      return response;
    }
    // Managed upstreams were initialized by Warden; answer from what they said.
    const requested = typeof params.protocolVersion === "string" ? params.protocolVersion : "";
    const protocolVersion = SUPPORTED_PROTOCOL_VERSIONS.includes(requested)
      ? requested
      : SUPPORTED_PROTOCOL_VERSIONS[0];
    if (one) {
      const init = one.conn?.initialized;
      if (!init)
        return errorResponse(
          r.id,
          ErrorCode.UpstreamUnavailable,
          `upstream ${one.name} is not ready: ${one.unavailable ?? "starting"}`,
        );
      // The shared server speaks the version it agreed with Warden, and its messages pass
      // through unchanged: that is the version this session gets (the client may then decline).
      return ok(r.id, init);
    }
    return ok(r.id, {
      protocolVersion,
      capabilities: this.aggregateCapabilities(),
      serverInfo: { ...this.o.serverInfo, title: "Warden gateway (aggregate)" },
      instructions: `Tools, prompts and resources of ${this.o.upstreams.map((u) => u.name).join(", ")}, governed by Warden. Tool and prompt names are prefixed with the server name and "${AGGREGATE_SEPARATOR}".`,
    });
  }

  private aggregateCapabilities(): Record<string, unknown> {
    const caps: Record<string, unknown> = { tools: { listChanged: true } };
    const has = (k: string) => this.o.upstreams.some((u) => u.conn?.initialized?.capabilities?.[k] !== undefined);
    if (has("prompts")) caps.prompts = { listChanged: true };
    if (has("resources")) caps.resources = { listChanged: true, subscribe: true };
    if (has("logging")) caps.logging = {};
    if (has("completions")) caps.completions = {};
    return caps;
  }

  // ---- tools ----

  private async toolsList(r: JsonRpcRequest): Promise<JsonRpcResponse | undefined> {
    const set = this.o.governor.policy.current();
    const visible = (h: UpstreamHandle, t: ToolDefinition) =>
      typeof t?.name === "string" &&
      set.couldPermit({
        agent: this.identity.agent,
        user: this.identity.user,
        request: { server: h.name, tool: t.name },
      });
    const one = this.single();
    if (one) {
      const response = await this.forward(r, one);
      const result = response?.result as { tools?: ToolDefinition[] } | undefined;
      if (!response || !result || !Array.isArray(result.tools)) return response;
      one.conn?.catalog.remember(result.tools);
      return { ...response, result: { ...result, tools: result.tools.filter((t) => visible(one, t)) } };
    }
    // Aggregate: every page of every upstream, prefixed, in one answer.
    const tools: ToolDefinition[] = [];
    for (const h of this.o.upstreams) {
      const all = await this.allTools(h);
      for (const t of all) if (visible(h, t)) tools.push({ ...t, name: `${h.name}${AGGREGATE_SEPARATOR}${t.name}` });
    }
    return ok(r.id, { tools });
  }

  private async allTools(h: UpstreamHandle): Promise<ToolDefinition[]> {
    const conn = h.conn;
    if (!conn) return [];
    await conn.catalog.refresh();
    return conn.catalog.known();
  }

  private async toolsCall(r: JsonRpcRequest): Promise<JsonRpcResponse | undefined> {
    const params = r.params ?? {};
    const name = params.name;
    if (typeof name !== "string" || name === "") {
      this.refuse("tools/call without a tool name (params.name)", {});
      return errorResponse(r.id, ErrorCode.InvalidParams, "tools/call needs params.name, the tool's name");
    }
    const args = params.arguments ?? {};
    if (typeof args !== "object" || args === null || Array.isArray(args)) {
      this.refuse("tools/call whose params.arguments is not an object", { tool: name });
      return errorResponse(r.id, ErrorCode.InvalidParams, "params.arguments must be an object");
    }
    const route = this.route(name);
    if (!route) {
      this.refuse(`no upstream serves "${name}" (names on /mcp are <server>${AGGREGATE_SEPARATOR}<tool>)`, {
        tool: name,
      });
      return toolError(r.id, notAvailable(name));
    }
    const collision = caseCollision(args);
    if (collision) {
      this.refuse(
        `arguments contain keys that differ only by case or Unicode form (${collision}); refused, because a server may read either one`,
        { tool: route.name, server: route.handle.name },
      );
      return toolError(
        r.id,
        `Denied: the arguments contain keys that differ only by case or Unicode form (${collision}).`,
      );
    }
    const conn = route.handle.conn;
    if (!conn || route.handle.unavailable) {
      const why = route.handle.unavailable ?? "not connected";
      this.refuse(`upstream ${route.handle.name} is unavailable (${why})`, {
        tool: route.name,
        server: route.handle.name,
        stage: "upstream-unavailable",
      });
      // Only a caller who could be allowed the tool learns that the server is down; anyone
      // else gets the answer for a tool that does not exist, as when the server is up.
      const input = this.o.governor.decisionInput({
        identity: this.identity,
        sessionId: this.id,
        sessionCalls: this.calls,
        upstream: { name: route.handle.name } as UpstreamConnection, // only its name is read
        tool: route.name,
        arguments: args as Record<string, unknown>,
      });
      if (!this.o.governor.policy.current().couldPermit(input)) return toolError(r.id, notAvailable(name));
      return toolError(
        r.id,
        `Tool "${name}" cannot be reached: upstream ${route.handle.name} is unavailable (${why}).`,
      );
    }
    const hold = this.holdContext(r);
    let verdict: Awaited<ReturnType<Governor["decideCall"]>>;
    try {
      verdict = await this.o.governor.decideCall({
        identity: this.identity,
        sessionId: this.id,
        sessionCalls: { ...this.calls },
        upstream: conn,
        tool: route.name,
        displayName: name,
        arguments: args as Record<string, unknown>,
        hold,
      });
    } finally {
      this.held.delete(r.id);
    }
    if (hold.signal.aborted) {
      // The client withdrew the call while it was held: it is not forwarded, and not answered.
      if (verdict.forward) this.o.governor.recordOutcome(verdict, { status: "cancelled" });
      return undefined;
    }
    if (!verdict.forward) return toolError(r.id, verdict.message);
    this.calls[route.name] = (this.calls[route.name] ?? 0) + 1;
    // Only the parameters MCP defines for tools/call travel on: an extra "Name" key must not
    // reach a server that reads keys case-insensitively (the policy decided on "name").
    const forwardedParams: Record<string, unknown> = { name: route.name, arguments: verdict.input.request.arguments };
    if (params._meta !== undefined) forwardedParams._meta = params._meta;
    if (params.task !== undefined) forwardedParams.task = params.task;
    const forwarded: JsonRpcRequest = { jsonrpc: "2.0", id: r.id, method: r.method, params: forwardedParams };
    const response = await this.forward(forwarded, route.handle);
    if (!response) {
      this.o.governor.recordOutcome(verdict, { status: "cancelled" });
      return undefined;
    }
    const result = response.result as { isError?: boolean; task?: { taskId?: unknown } } | undefined;
    if (response.error)
      this.o.governor.recordOutcome(verdict, { status: "upstream-error", error: response.error.message });
    else this.o.governor.recordOutcome(verdict, { status: result?.isError === true ? "tool-error" : "success" });
    if (typeof result?.task?.taskId === "string") this.ownTask(route.handle, result.task.taskId);
    this.learnResources(route.handle, response.result);
    return response;
  }

  /** Cancellation, progress and elicitation for a call that may be held for approval. */
  private holdContext(r: JsonRpcRequest): HoldContext {
    const controller = new AbortController();
    this.held.set(r.id, controller);
    const token = (r.params?._meta as Record<string, unknown> | undefined)?.progressToken;
    let progress = 0;
    const hold: HoldContext = { signal: controller.signal };
    if (typeof token === "string" || typeof token === "number") {
      hold.progress = (message) => {
        if (this.closed || controller.signal.aborted) return;
        progress += 1;
        this.o.send(
          { jsonrpc: "2.0", method: "notifications/progress", params: { progressToken: token, progress, message } },
          r.id,
        );
      };
    }
    if (this.clientCapabilities.elicitation !== undefined) {
      hold.elicit = (message, requestedSchema, signal) => this.elicit(message, requestedSchema, signal, r.id);
    }
    return hold;
  }

  /** Asks the client's user (elicitation/create); rejects when the client errs, the session ends or `signal` aborts. */
  private elicit(
    message: string,
    requestedSchema: Record<string, unknown>,
    signal: AbortSignal,
    relatedTo: RequestId,
  ): Promise<{ action: string; content?: Record<string, unknown> }> {
    if (this.closed || signal.aborted) return Promise.reject(new Error("the call is no longer held"));
    if (this.clientGone) return Promise.reject(new Error("the client closed the connection"));
    const id = `warden:elicit-${this.nextClientRequestId++}`;
    return new Promise((resolve, reject) => {
      const onAbort = () => {
        this.awaitingClient.delete(id);
        reject(new Error("the call is no longer held"));
      };
      signal.addEventListener("abort", onAbort, { once: true });
      this.awaitingClient.set(id, (response) => {
        signal.removeEventListener("abort", onAbort);
        const result = response.result as { action?: unknown; content?: unknown } | undefined;
        if (response.error || typeof result?.action !== "string") {
          reject(new Error(response.error?.message ?? "the client's answer to elicitation/create has no action"));
          return;
        }
        const content =
          typeof result.content === "object" && result.content !== null && !Array.isArray(result.content)
            ? (result.content as Record<string, unknown>)
            : undefined;
        resolve(content ? { action: result.action, content } : { action: result.action });
      });
      this.o.send(
        { jsonrpc: "2.0", id, method: "elicitation/create", params: { message, requestedSchema } },
        relatedTo,
      );
    });
  }

  /** Which upstream and real tool name a client-visible name means. */
  private route(name: string): { handle: UpstreamHandle; name: string } | undefined {
    const one = this.single();
    if (one) return { handle: one, name };
    const at = name.indexOf(AGGREGATE_SEPARATOR);
    if (at <= 0) return undefined;
    const server = name.slice(0, at);
    const handle = this.o.upstreams.find((u) => u.name === server);
    const real = name.slice(at + AGGREGATE_SEPARATOR.length);
    return handle && real !== "" ? { handle, name: real } : undefined;
  }

  // ---- prompts, resources, completion, logging, tasks ----

  private async aggregateList(r: JsonRpcRequest): Promise<JsonRpcResponse | undefined> {
    const one = this.single();
    if (one) return this.forward(r, one);
    const key =
      r.method === "prompts/list" ? "prompts" : r.method === "resources/list" ? "resources" : "resourceTemplates";
    const items: Record<string, unknown>[] = [];
    for (const h of this.o.upstreams) {
      const cap = r.method === "prompts/list" ? "prompts" : "resources";
      if (h.conn?.initialized?.capabilities?.[cap] === undefined) continue;
      // Every page of every upstream, in one answer (the aggregate has no cursor of its own).
      let cursor: string | undefined;
      for (let page = 0; page < MAX_AGGREGATE_PAGES; page++) {
        const response = await this.forward({ ...r, params: cursor === undefined ? {} : { cursor } }, h);
        const result = response?.result as Record<string, unknown> | undefined;
        const list = result?.[key];
        if (!Array.isArray(list)) break;
        for (const item of list as Record<string, unknown>[]) {
          if (key === "prompts") items.push({ ...item, name: `${h.name}${AGGREGATE_SEPARATOR}${String(item.name)}` });
          else {
            if (typeof item.uri === "string") this.resourceOwners.set(item.uri, h);
            if (typeof item.uriTemplate === "string") {
              // Keyed, so listing again replaces instead of piling up.
              const k = `${h.name}\u0000${item.uriTemplate}`;
              if (!this.templates.has(k))
                this.templates.set(k, { pattern: templatePattern(item.uriTemplate), handle: h });
            }
            items.push(item);
          }
        }
        cursor = typeof result?.nextCursor === "string" && result.nextCursor !== "" ? result.nextCursor : undefined;
        if (cursor === undefined) break;
      }
    }
    return ok(r.id, { [key]: items });
  }

  /** Which upstream a resource URI belongs to, learnt from lists and tool results (aggregate endpoint). */
  private readonly resourceOwners = new Map<string, UpstreamHandle>();
  private readonly templates = new Map<string, { pattern: { test(uri: string): boolean }; handle: UpstreamHandle }>();

  /** The upstream for a resource URI on the aggregate endpoint, or undefined when it cannot be told. */
  private resourceOwner(uri: string, capability: "resources" | "subscribe"): UpstreamHandle | undefined {
    const known = this.resourceOwners.get(uri);
    if (known) return known;
    const byTemplate = [
      ...new Set([...this.templates.values()].filter((t) => t.pattern.test(uri)).map((t) => t.handle)),
    ];
    if (byTemplate.length === 1) return byTemplate[0];
    const able = this.o.upstreams.filter((u) => {
      const caps = u.conn?.initialized?.capabilities?.resources as { subscribe?: unknown } | undefined;
      return caps !== undefined && (capability === "resources" || caps.subscribe === true);
    });
    return able.length === 1 ? able[0] : undefined;
  }

  /** Resource URIs in a tool result (resource links, embedded resources) belong to that tool's server. */
  private learnResources(h: UpstreamHandle, result: unknown): void {
    if (!this.o.aggregate) return;
    const content = (result as { content?: unknown } | undefined)?.content;
    if (!Array.isArray(content)) return;
    for (const c of content as { type?: unknown; uri?: unknown; resource?: { uri?: unknown } }[]) {
      const uri = c?.type === "resource_link" ? c.uri : c?.type === "resource" ? c.resource?.uri : undefined;
      if (typeof uri === "string" && this.resourceOwners.size < 100_000) this.resourceOwners.set(uri, h);
    }
  }

  private async routedByName(r: JsonRpcRequest, field: string): Promise<JsonRpcResponse | undefined> {
    const params = r.params ?? {};
    const name = params[field];
    if (typeof name !== "string") return errorResponse(r.id, ErrorCode.InvalidParams, `params.${field} is required`);
    const route = this.route(name);
    if (!route) return errorResponse(r.id, ErrorCode.InvalidParams, `unknown ${field} "${name}"`);
    return this.forward({ ...r, params: { ...params, [field]: route.name } }, route.handle);
  }

  private async completion(r: JsonRpcRequest): Promise<JsonRpcResponse | undefined> {
    const one = this.single();
    if (one) return this.forward(r, one);
    const ref = (r.params?.ref ?? {}) as Record<string, unknown>;
    if (ref.type === "ref/prompt" && typeof ref.name === "string") {
      const route = this.route(ref.name);
      if (!route) return errorResponse(r.id, ErrorCode.InvalidParams, `unknown prompt "${ref.name}"`);
      return this.forward({ ...r, params: { ...r.params, ref: { ...ref, name: route.name } } }, route.handle);
    }
    if (ref.type === "ref/resource" && typeof ref.uri === "string") {
      const h = this.resourceOwner(ref.uri, "resources");
      if (h) return this.forward(r, h);
    }
    return errorResponse(r.id, ErrorCode.InvalidParams, "cannot tell which server this completion is for");
  }

  private async resource(r: JsonRpcRequest): Promise<JsonRpcResponse | undefined> {
    const uri = r.params?.uri;
    if (typeof uri !== "string") return errorResponse(r.id, ErrorCode.InvalidParams, "params.uri is required");
    const h = this.single() ?? this.resourceOwner(uri, r.method === "resources/read" ? "resources" : "subscribe");
    if (!h) {
      return errorResponse(
        r.id,
        ErrorCode.InvalidParams,
        `cannot tell which server resource ${uri} belongs to: list resources or resource templates first, or use the server's own endpoint /mcp/<server>`,
      );
    }
    const response = await this.forward(r, h);
    if (response?.result && r.method === "resources/read" && this.o.aggregate) this.resourceOwners.set(uri, h);
    if (response?.result && r.method === "resources/subscribe") h.subscribe(this, uri);
    if (response?.result && r.method === "resources/unsubscribe") h.unsubscribe(this, uri);
    return response;
  }

  /** logging/setLevel: a shared server keeps its level, or one session would set it for everyone. */
  private async everywhere(r: JsonRpcRequest): Promise<JsonRpcResponse | undefined> {
    const one = this.single();
    if (one) return one.shared ? ok(r.id, {}) : this.forward(r, one);
    for (const h of this.o.upstreams) {
      if (!h.shared && h.conn?.initialized?.capabilities?.logging !== undefined) await this.forward(r, h);
    }
    return ok(r.id, {});
  }

  /** tasks/*: a session may only see the tasks its own calls created (a shared server has everyone's). */
  private async task(r: JsonRpcRequest): Promise<JsonRpcResponse | undefined> {
    const one = this.single();
    const taskId = r.params?.taskId;
    if (r.method === "tasks/list") {
      if (!one) return ok(r.id, { tasks: [] });
      const response = await this.forward(r, one);
      const result = response?.result as { tasks?: { taskId?: string }[] } | undefined;
      if (!response || !result || !Array.isArray(result.tasks) || one.mode === "passthrough") return response;
      const mine = this.tasks.get(one) ?? new Set();
      return { ...response, result: { ...result, tasks: result.tasks.filter((t) => mine.has(String(t.taskId))) } };
    }
    if (typeof taskId !== "string") return errorResponse(r.id, ErrorCode.InvalidParams, "params.taskId is required");
    for (const [h, ids] of this.tasks) if (ids.has(taskId)) return this.forward(r, h);
    if (one?.mode === "passthrough") return this.forward(r, one);
    return errorResponse(r.id, ErrorCode.InvalidParams, `unknown task ${taskId}`);
  }

  private ownTask(h: UpstreamHandle, taskId: string): void {
    let set = this.tasks.get(h);
    if (!set) {
      set = new Set();
      this.tasks.set(h, set);
    }
    set.add(taskId);
  }

  // ---- forwarding ----

  /** The one upstream of a per-server session, or undefined on the aggregate endpoint. */
  private single(): UpstreamHandle | undefined {
    return this.o.aggregate ? undefined : this.o.upstreams[0];
  }

  /** Forwards a request; resolves with the response for the client, or undefined if the client cancelled it. */
  private async forward(r: JsonRpcRequest, h: UpstreamHandle): Promise<JsonRpcResponse | undefined> {
    const conn = h.conn;
    if (!conn || h.unavailable) {
      return errorResponse(
        r.id,
        ErrorCode.UpstreamUnavailable,
        `upstream ${h.name} is unavailable: ${h.unavailable ?? "not connected"}`,
      );
    }
    let params = r.params;
    let mappedToken: string | undefined;
    const meta = params?._meta as Record<string, unknown> | undefined;
    const token = meta?.progressToken;
    if (typeof token === "string" || typeof token === "number") {
      mappedToken = h.mapProgressToken(this, token, r.id);
      params = { ...params, _meta: { ...meta, progressToken: mappedToken } };
    }
    h.began(this);
    const sent = conn.request(r.method, params, r.id, {
      timeoutMs: this.o.requestTimeoutMs ?? DEFAULT_REQUEST_TIMEOUT_MS,
    });
    const entry: InFlight = { handle: h, conn, upstreamId: sent.upstreamId, cancelled: false };
    this.inflight.set(r.id, entry);
    try {
      const response = await sent.response;
      return entry.cancelled ? undefined : response;
    } finally {
      h.ended(this);
      if (this.inflight.get(r.id) === entry) this.inflight.delete(r.id);
      if (mappedToken) h.releaseProgressToken(mappedToken);
    }
  }

  private clientNotification(n: JsonRpcNotification): void {
    if (!CLIENT_NOTIFICATIONS.has(n.method)) {
      this.o.log(`session ${this.id}: dropped unknown notification "${n.method}" from the client`);
      return;
    }
    if (n.method === "notifications/cancelled") {
      const requestId = n.params?.requestId;
      if (typeof requestId === "string" || typeof requestId === "number") {
        this.held.get(requestId)?.abort(new Error("the client cancelled the call"));
      }
      const f =
        typeof requestId === "string" || typeof requestId === "number" ? this.inflight.get(requestId) : undefined;
      if (!f) return;
      f.cancelled = true;
      f.conn.notify("notifications/cancelled", { ...n.params, requestId: f.upstreamId });
      f.conn.forget(f.upstreamId);
      return;
    }
    // initialized and roots/list_changed belong to a client's own server; a shared server was
    // initialized by Warden and is not told (it would hear it from every session).
    for (const h of this.o.upstreams) {
      if (h.mode === "passthrough") h.conn?.notify(n.method, n.params);
    }
  }

  private clientResponse(r: JsonRpcResponse): void {
    if (r.id === null) return;
    const resolve = this.awaitingClient.get(r.id);
    if (!resolve) return;
    this.awaitingClient.delete(r.id);
    resolve(r);
  }

  // ---- messages from upstreams (UpstreamListener) ----

  serverRequest(h: UpstreamHandle, request: JsonRpcRequest): Promise<JsonRpcResponse> {
    if (this.closed)
      return Promise.resolve(errorResponse(request.id, ErrorCode.InternalError, "the client session ended"));
    if (this.clientGone)
      return Promise.resolve(errorResponse(request.id, ErrorCode.InternalError, "the client closed the connection"));
    const capability = request.method.startsWith("sampling/")
      ? "sampling"
      : request.method.startsWith("elicitation/")
        ? "elicitation"
        : request.method.startsWith("roots/")
          ? "roots"
          : undefined;
    if (capability && this.clientCapabilities[capability] === undefined) {
      return Promise.resolve(
        errorResponse(request.id, ErrorCode.MethodNotFound, `the client did not declare the ${capability} capability`),
      );
    }
    const id = `${h.name}-${this.nextClientRequestId++}`;
    const related = [...this.inflight].find(([, f]) => f.handle === h)?.[0];
    return new Promise<JsonRpcResponse>((resolve) => {
      const timer = setTimeout(() => {
        this.awaitingClient.delete(id);
        resolve(
          errorResponse(request.id, ErrorCode.InternalError, `the client did not answer ${request.method} in time`),
        );
      }, CLIENT_ANSWER_TIMEOUT_MS);
      timer.unref();
      this.awaitingClient.set(id, (r) => {
        clearTimeout(timer);
        this.forwardedToClient.delete(`${h.name}\u0000${request.id}`);
        resolve({ ...r, id: request.id });
      });
      this.forwardedToClient.set(`${h.name}\u0000${request.id}`, id);
      this.o.send({ ...request, id }, related);
    });
  }

  serverNotification(h: UpstreamHandle, n: JsonRpcNotification, relatedTo?: RequestId): void {
    if (this.closed) return;
    if (this.o.aggregate && n.method === "notifications/prompts/list_changed") {
      this.o.send(n);
      return;
    }
    if (n.method === "notifications/cancelled") {
      // The server withdrew a request it sent the client; the client knows it by Warden's id.
      const ours = this.forwardedToClient.get(`${h.name}\u0000${String(n.params?.requestId)}`);
      if (ours === undefined) return;
      this.forwardedToClient.delete(`${h.name}\u0000${String(n.params?.requestId)}`);
      this.awaitingClient.get(ours)?.(errorResponse(ours, ErrorCode.InvalidRequest, "cancelled by the server"));
      this.awaitingClient.delete(ours);
      this.o.send({ ...n, params: { ...n.params, requestId: ours } });
      return;
    }
    this.o.send(
      n,
      relatedTo ??
        (n.method === "notifications/message" ? [...this.inflight].find(([, f]) => f.handle === h)?.[0] : undefined),
    );
  }

  /** Tells the client its tool list changed (e.g. after a policy reload). */
  toolsChanged(): void {
    if (!this.closed) this.o.send({ jsonrpc: "2.0", method: "notifications/tools/list_changed" });
  }
}

function ok(id: RequestId, result: unknown): JsonRpcResponse {
  return { jsonrpc: "2.0", id, result };
}

/** A refused call is a tool result with isError, so the model reads the reason. */
function toolError(id: RequestId, text: string): JsonRpcResponse {
  return ok(id, { content: [{ type: "text", text }], isError: true });
}

/**
 * An RFC 6570 URI template as a pattern: each {expression} matches any run of characters.
 * RE2, because the URI being matched comes from the client.
 */
function templatePattern(template: string): { test(uri: string): boolean } {
  const parts = template.split(/\{[^}]*\}/).map((p) => RE2JS.quote(p));
  const re = RE2JS.compile(`^${parts.join(".+")}$`);
  return { test: (uri) => re.matches(uri) };
}

/**
 * Two keys of one object that are equal once case-folded and NFKC-normalised
 * ("path" and "Path"), anywhere in the arguments: the policy checked one, a
 * lenient server might use the other.
 */
export function caseCollision(value: unknown, depth = 0): string | undefined {
  if (typeof value !== "object" || value === null || depth > 64) return undefined;
  if (Array.isArray(value)) {
    for (const v of value) {
      const c = caseCollision(v, depth + 1);
      if (c) return c;
    }
    return undefined;
  }
  const seen = new Map<string, string>();
  for (const k of Object.keys(value)) {
    const folded = k.normalize("NFKC").toLowerCase();
    const other = seen.get(folded);
    if (other !== undefined) return `${JSON.stringify(other)} and ${JSON.stringify(k)}`;
    seen.set(folded, k);
    const c = caseCollision((value as Record<string, unknown>)[k], depth + 1);
    if (c) return c;
  }
  return undefined;
}
