// The client side of MCP's Streamable HTTP transport (revisions 2025-11-25 and
// 2025-06-18): how Warden reaches a remote upstream server. Every message is a
// POST to the one MCP endpoint; the answer is a JSON body, an SSE stream (which
// may carry progress and server requests before the response), or 202 for
// notifications and responses. Server-initiated messages come on a GET stream.
//
// The caller never waits forever: whatever goes wrong with a request (network,
// HTTP status, a stream that ends early and cannot be resumed, an oversized
// answer) becomes a JSON-RPC error response with the request's id. Credentials
// in the configured headers go to the configured origin only: redirects are
// never followed.
import {
  checkMessage,
  DEFAULT_MAX_MESSAGE_BYTES,
  ErrorCode,
  errorResponse,
  isNotification,
  isRequest,
  isResponse,
  type JsonRpcMessage,
  type JsonRpcRequest,
  type JsonRpcResponse,
  parseFrame,
  type RequestId,
} from "./jsonrpc.js";
import type { ProtocolErrorHandler } from "./stdio-transport.js";
import type { Transport } from "./upstream.js";

/** The onclose reason when the server answered 404 to a request carrying the session id. */
export const SESSION_EXPIRED = "upstream session expired";
/** The onclose reason after close(). */
export const TRANSPORT_CLOSED = "the HTTP transport was closed";

export interface StreamableHttpOptions {
  /** Sent with every request (e.g. Authorization); the protocol's own headers take precedence. */
  headers?: Record<string, string>;
  /** Largest JSON body or SSE event accepted from the server, in bytes (default DEFAULT_MAX_MESSAGE_BYTES). */
  maxBytes?: number;
  /** Messages from the server that are invalid or oversized: reported here and dropped. */
  onProtocolError?: ProtocolErrorHandler;
  /** Trouble with no request to answer: a notification refused, the server stream lost, DELETE failed. */
  onError?: (what: string) => void;
  /**
   * Reconnections in a row that bring nothing before a request's stream is
   * given up (its caller then gets an error); for the server stream, the
   * number of failures in a row after which onError hears of it (default 3).
   */
  maxReconnects?: number;
  /** Wait before reconnecting a stream when the server gave no `retry` (default 1000 ms). */
  reconnectDelayMs?: number;
  /** Upper bound on the server's `retry` (default 30 000 ms). */
  maxReconnectDelayMs?: number;
}

/** How long a notification or response POST may hold back the messages sent after it. */
const ORDER_WAIT_MS = 10_000;
/** How long close() waits for the DELETE that ends the session. */
const DELETE_TIMEOUT_MS = 2_000;
/** How much of an error body is read to find the server's own error message. */
const ERROR_BODY_BYTES = 16 * 1024;
/** The shortest wait before a reconnection, whatever `retry` says: a server cannot make Warden spin. */
const MIN_RECONNECT_MS = 100;
/** A stream open this long was working, even if it brought no event. */
const HEALTHY_STREAM_MS = 10_000;
/** Session ids and header values the spec allows: visible ASCII. */
const VISIBLE_ASCII = /^[\x21-\x7e]+$/;

interface Exchange {
  readonly id: RequestId;
  done: boolean;
  /** Aborts this request's POST and streams (it was cancelled). */
  readonly controller: AbortController;
  readonly settled: Promise<void>;
  settle(): void;
}

/** Where a stream is, for resuming it. */
interface Cursor {
  lastEventId: string | undefined;
  retryMs: number | undefined;
}

interface StreamEnd {
  /** Events (data or id) received on this connection. */
  events: number;
  /** It brought events, or stayed open a good while: a drop after it is not a failure in a row. */
  healthy: boolean;
  oversized: boolean;
  /** Why reading stopped, if it was not a clean end. */
  error?: string;
}

interface HttpProblem {
  message: string;
  expired: boolean;
}

/**
 * StreamableHttpClientTransport: an upstream MCP server at an http(s) URL.
 *
 * Session expiry: when the server answers 404 to a request that carried its
 * Mcp-Session-Id, the session is gone (spec: Session Management, 3–4). The
 * request that met the 404 gets an error response, then the transport closes
 * with onclose(SESSION_EXPIRED). It cannot be reused: the owner reconnects by
 * making a new transport and initializing again (a new session).
 */
export class StreamableHttpClientTransport implements Transport {
  onmessage?: (message: JsonRpcMessage) => void;
  onclose?: (reason: string) => void;
  readonly url: URL;
  /** The URL as named in errors: no query string, which may hold a secret. */
  private readonly label: string;
  private readonly extraHeaders: Headers;
  private readonly maxBytes: number;
  private readonly onProtocolError: ProtocolErrorHandler;
  private readonly onError: (what: string) => void;
  private readonly maxReconnects: number;
  private readonly reconnectDelayMs: number;
  private readonly maxReconnectDelayMs: number;
  private session: string | undefined;
  private version: string | undefined;
  private initId: RequestId | undefined;
  private readonly exchanges = new Map<RequestId, Exchange>();
  private queue: Promise<void> = Promise.resolve();
  private readonly abort = new AbortController();
  private readonly waits = new Map<NodeJS.Timeout, () => void>();
  private listening = false;
  private closed = false;
  private closing: Promise<void> | undefined;

  constructor(url: string | URL, options: StreamableHttpOptions = {}) {
    const u = new URL(url);
    if (u.protocol !== "http:" && u.protocol !== "https:") {
      throw new Error(`an upstream URL must be http: or https:, not ${u.protocol}`);
    }
    if (u.username !== "" || u.password !== "") {
      throw new Error("an upstream URL must not carry credentials; configure them as headers");
    }
    u.hash = "";
    this.url = u;
    this.label = `${u.origin}${u.pathname}`;
    this.extraHeaders = new Headers(options.headers); // throws on a name or value HTTP does not allow
    this.maxBytes = options.maxBytes ?? DEFAULT_MAX_MESSAGE_BYTES;
    this.onProtocolError = options.onProtocolError ?? (() => {});
    this.onError = options.onError ?? (() => {});
    this.maxReconnects = options.maxReconnects ?? 3;
    this.reconnectDelayMs = options.reconnectDelayMs ?? 1000;
    this.maxReconnectDelayMs = options.maxReconnectDelayMs ?? 30_000;
  }

  /** The Mcp-Session-Id the server assigned at initialization, if any. */
  get sessionId(): string | undefined {
    return this.session;
  }

  /** The protocol version from the initialize result, sent as MCP-Protocol-Version. */
  get protocolVersion(): string | undefined {
    return this.version;
  }

  /** Nothing to connect: HTTP requests are made as messages are sent. */
  start(): Promise<void> {
    return Promise.resolve();
  }

  /**
   * Queues the message and returns. POSTs start in the order of send(); an
   * initialize holds back everything after it until its response arrived
   * (the session id and protocol version are needed), and a notification or
   * response holds back what follows until the server accepted it.
   */
  send(message: JsonRpcMessage): void {
    if (this.closed) return;
    this.queue = this.queue.then(() =>
      this.dispatch(message).catch((err) => this.onError(`upstream ${this.label}: ${describe(err)}`)),
    );
  }

  private async dispatch(m: JsonRpcMessage): Promise<void> {
    if (this.closed) return;
    if (isRequest(m)) {
      const ex = this.track(m.id);
      const isInit = m.method === "initialize";
      if (isInit) this.initId = m.id;
      this.postRequest(m, ex, isInit).catch((err) => this.fail(ex, `upstream ${this.label}: ${describe(err)}`));
      if (isInit) await ex.settled;
      return;
    }
    await withTimeout(this.postMessage(m), ORDER_WAIT_MS);
    if (isNotification(m) && m.method === "notifications/cancelled") this.cancelled(m.params?.requestId);
  }

  /** The caller cancelled a request: stop reading its stream; a late answer would be ignored anyway. */
  private cancelled(id: unknown): void {
    if (typeof id !== "string" && typeof id !== "number") return;
    const ex = this.exchanges.get(id);
    if (ex === undefined) return;
    this.exchanges.delete(id);
    ex.done = true;
    ex.controller.abort();
    ex.settle();
  }

  private track(id: RequestId): Exchange {
    let settle = () => {};
    const settled = new Promise<void>((resolve) => {
      settle = resolve;
    });
    const ex: Exchange = { id, done: false, controller: new AbortController(), settled, settle };
    this.exchanges.set(id, ex);
    return ex;
  }

  private async postRequest(m: JsonRpcRequest, ex: Exchange, isInit: boolean): Promise<void> {
    const sentSession = this.session;
    const signal = AbortSignal.any([this.abort.signal, ex.controller.signal]);
    const res = await this.http("POST", POST_HEADERS, JSON.stringify(m), signal);
    if (typeof res === "string") return this.fail(ex, res);
    if (isInit && res.ok) {
      const sid = res.headers.get("mcp-session-id");
      if (sid !== null) {
        if (!VISIBLE_ASCII.test(sid)) {
          await discard(res);
          return this.fail(ex, `upstream ${this.label} assigned a session id that is not visible ASCII`);
        }
        this.session = sid;
      }
    }
    if (!res.ok) {
      const p = await this.problem(res, sentSession);
      this.fail(ex, p.message, res.status);
      if (p.expired) this.shutdown(SESSION_EXPIRED);
      return;
    }
    const type = mediaType(res);
    if (type === "text/event-stream") return this.followRequestStream(res, ex, signal);
    if (type === "application/json") {
      const text = await this.readBody(res, this.maxBytes);
      if (this.closed) return;
      if (text === null) {
        this.onProtocolError(`upstream ${this.label} sent a response larger than ${this.maxBytes} bytes; dropped`);
        return this.fail(ex, `upstream ${this.label} sent a response larger than ${this.maxBytes} bytes`);
      }
      this.deliverFrame(text);
      if (!ex.done)
        this.fail(ex, `upstream ${this.label} answered HTTP ${res.status} without a response to the request`);
      return;
    }
    await discard(res);
    this.fail(
      ex,
      res.status === 202
        ? `upstream ${this.label} accepted the request without answering it (HTTP 202)`
        : `upstream ${this.label} answered with content type "${type}", not JSON or an event stream`,
      res.status,
    );
  }

  /**
   * Reads the request's event stream; if it ends before the response, resumes
   * it with GET and Last-Event-ID (spec: Resumability and Redelivery), waiting
   * `retry` (doubled while attempts fail) between attempts, until the
   * response arrives or maxReconnects attempts in a row brought nothing. A
   * resumption that brings events (servers may close the connection after
   * each one and expect the client to poll) starts the count again.
   */
  private async followRequestStream(first: Response, ex: Exchange, signal: AbortSignal): Promise<void> {
    const cursor: Cursor = { lastEventId: undefined, retryMs: undefined };
    let res: Response | undefined = first;
    let failures = 0;
    let problem = "the event stream ended before the response";
    for (;;) {
      if (res !== undefined) {
        const end = await this.readStream(res, cursor, ex);
        if (ex.done || this.closed) return;
        if (end.oversized)
          return this.fail(ex, `upstream ${this.label} sent an event larger than ${this.maxBytes} bytes`);
        if (end.healthy) failures = 0;
        problem =
          end.error !== undefined
            ? `the event stream failed (${end.error})`
            : "the event stream ended before the response";
      }
      if (cursor.lastEventId === undefined) {
        return this.fail(ex, `upstream ${this.label}: ${problem}, and it cannot be resumed (no event id)`);
      }
      if (++failures > this.maxReconnects) {
        return this.fail(ex, `upstream ${this.label}: ${problem}; gave up after ${this.maxReconnects} reconnections`);
      }
      await this.pause(cursor.retryMs, failures);
      if (ex.done || this.closed) return;
      const r = await this.http(
        "GET",
        { accept: "text/event-stream", "last-event-id": cursor.lastEventId },
        undefined,
        signal,
      );
      res = undefined;
      if (typeof r === "string") {
        problem = r;
      } else if (r.status === 404 || r.status === 405) {
        // Not taken as session expiry: a server without GET support may answer 404 (the next POST will tell).
        await discard(r);
        return this.fail(
          ex,
          `upstream ${this.label}: ${problem}, and the server does not allow resuming it (HTTP ${r.status})`,
          r.status,
        );
      } else if (!r.ok) {
        problem = `resuming the event stream failed: ${(await this.problem(r, undefined)).message}`;
      } else if (mediaType(r) !== "text/event-stream") {
        await discard(r);
        problem = `resuming the event stream got content type "${mediaType(r)}"`;
      } else {
        res = r;
      }
    }
  }

  /**
   * The GET stream for messages the server sends on its own initiative,
   * opened once initialization is over. The server may refuse it (405; a 404
   * is taken the same way, as servers without a GET route answer that); if it
   * drops, it is reconnected with Last-Event-ID for as long as the transport
   * is open, backing off while attempts fail.
   */
  private startListening(): void {
    if (this.listening || this.closed) return;
    this.listening = true;
    this.listen().catch((err) => this.onError(`upstream ${this.label}: server stream: ${describe(err)}`));
  }

  private async listen(): Promise<void> {
    const cursor: Cursor = { lastEventId: undefined, retryMs: undefined };
    let failures = 0;
    while (!this.closed) {
      const headers: Record<string, string> = { accept: "text/event-stream" };
      if (cursor.lastEventId !== undefined) headers["last-event-id"] = cursor.lastEventId;
      const r = await this.http("GET", headers);
      if (this.closed) return;
      let problem: string | undefined;
      if (typeof r === "string") {
        problem = r;
      } else if (r.status === 404 || r.status === 405) {
        await discard(r);
        if (r.status === 404)
          this.onError(`upstream ${this.label} answered HTTP 404 to GET: no stream for server messages`);
        return;
      } else if (!r.ok) {
        problem = (await this.problem(r, undefined)).message;
      } else if (mediaType(r) !== "text/event-stream") {
        await discard(r);
        problem = `the server stream has content type "${mediaType(r)}"`;
      } else {
        const end = await this.readStream(r, cursor, undefined);
        if (this.closed) return;
        if (end.healthy) failures = 0;
        problem = end.error;
      }
      if (++failures === this.maxReconnects) {
        this.onError(
          `upstream ${this.label}: the stream for server messages failed ${failures} times in a row${problem ? ` (${problem})` : ""}; still retrying`,
        );
      }
      await this.pause(cursor.retryMs, failures);
    }
  }

  /** Notifications and responses: the server answers 202 and nothing else. */
  private async postMessage(m: JsonRpcMessage): Promise<void> {
    const sentSession = this.session;
    const what = isNotification(m) ? m.method : `the response to request ${JSON.stringify((m as JsonRpcResponse).id)}`;
    const r = await this.http("POST", POST_HEADERS, JSON.stringify(m));
    if (this.closed) return;
    if (typeof r === "string") return this.onError(`${r} (sending ${what})`);
    if (r.ok) {
      await discard(r);
      if (isNotification(m) && m.method === "notifications/initialized") this.startListening();
      return;
    }
    const p = await this.problem(r, sentSession);
    if (p.expired) this.shutdown(SESSION_EXPIRED);
    else this.onError(`${p.message} (sending ${what})`);
  }

  /** One HTTP exchange with the endpoint; a string says why there is no response. */
  private async http(
    method: "GET" | "POST" | "DELETE",
    headers: Record<string, string>,
    body?: string,
    signal: AbortSignal = this.abort.signal,
  ): Promise<Response | string> {
    try {
      const h = new Headers(this.extraHeaders);
      if (this.session !== undefined) h.set("mcp-session-id", this.session);
      if (this.version !== undefined) h.set("mcp-protocol-version", this.version);
      for (const [k, v] of Object.entries(headers)) h.set(k, v); // an event id HTTP cannot carry throws here
      return await fetch(this.url, { method, headers: h, body, redirect: "manual", signal });
    } catch (err) {
      return `could not reach upstream ${this.label}: ${describe(err)}`;
    }
  }

  /** Explains an unsuccessful status; a 404 to a request with the session id means the session expired. */
  private async problem(res: Response, sentSession: string | undefined): Promise<HttpProblem> {
    if (res.status >= 300 && res.status < 400) {
      await discard(res);
      let where = "";
      try {
        const target = new URL(res.headers.get("location") ?? "", this.url);
        where = target.origin === this.url.origin ? " within the same origin" : ` to ${target.origin}`;
      } catch {}
      return {
        message: `upstream ${this.label} answered HTTP ${res.status}, a redirect${where}; redirects are not followed`,
        expired: false,
      };
    }
    if (res.status === 404 && sentSession !== undefined) {
      await discard(res);
      return { message: `upstream ${this.label} answered HTTP 404: the session expired`, expired: true };
    }
    const detail = await this.errorDetail(res);
    return {
      message: `upstream ${this.label} answered HTTP ${res.status}${detail ? `: ${detail}` : ""}`,
      expired: false,
    };
  }

  /** The message of a JSON-RPC error in an error body, if there is one. */
  private async errorDetail(res: Response): Promise<string | undefined> {
    if (mediaType(res) !== "application/json") {
      await discard(res);
      return undefined;
    }
    try {
      const text = await this.readBody(res, ERROR_BODY_BYTES);
      if (text === null) return undefined;
      const msg = (JSON.parse(text) as { error?: { message?: unknown } } | null)?.error?.message;
      return typeof msg === "string" ? printable(msg.slice(0, 200)) : undefined;
    } catch {
      return undefined;
    }
  }

  /** The body as text, or null if it is over the limit (then it is not read further). */
  private async readBody(res: Response, limit: number): Promise<string | null> {
    const declared = Number(res.headers.get("content-length") ?? "0");
    if (declared > limit) {
      await discard(res);
      return null;
    }
    if (!res.body) return "";
    const reader = res.body.getReader();
    const chunks: Uint8Array[] = [];
    let size = 0;
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        size += value.byteLength;
        if (size > limit) {
          await reader.cancel().catch(() => {});
          return null;
        }
        chunks.push(value);
      }
    } catch (err) {
      if (this.closed) return "";
      throw err;
    }
    return Buffer.concat(chunks).toString("utf8");
  }

  /**
   * Reads an event stream, delivering each message event as it completes and
   * keeping the cursor (last event id, retry) for a reconnection. On a
   * request's stream, reading stops once its response has arrived, or at an
   * oversized event (which might have been the response).
   */
  private async readStream(res: Response, cursor: Cursor, ex: Exchange | undefined): Promise<StreamEnd> {
    const end: StreamEnd = { events: 0, healthy: false, oversized: false };
    if (!res.body) return end;
    const opened = Date.now();
    const reader = res.body.getReader();
    let stop = false;
    const parser = new SseParser(this.maxBytes, cursor.lastEventId ?? "", {
      event: (e) => {
        if (stop) return; // the rest of a chunk after the response, or after an oversized event
        end.events++;
        cursor.lastEventId = e.lastEventId === "" ? undefined : e.lastEventId;
        if (e.type !== "message" || e.data === undefined || e.data.trim() === "") return; // priming, keep-alive
        this.deliverFrame(e.data);
        if (ex?.done) stop = true;
      },
      retry: (ms) => {
        cursor.retryMs = ms;
      },
      oversized: (bytes) => {
        this.onProtocolError(`upstream ${this.label} sent an event of ${bytes} bytes or more, over the limit; dropped`);
        if (ex !== undefined) {
          end.oversized = true;
          stop = true;
        }
      },
    });
    try {
      while (!stop && !this.closed) {
        const { value, done } = await reader.read();
        if (done) break;
        parser.push(value);
      }
    } catch (err) {
      if (!this.closed) end.error = describe(err);
    }
    if (stop) await reader.cancel().catch(() => {});
    end.healthy = end.events > 0 || Date.now() - opened >= HEALTHY_STREAM_MS;
    return end;
  }

  private deliverFrame(text: string): void {
    const parsed = parseFrame(text, this.maxBytes);
    if (!parsed.ok) {
      this.onProtocolError(`upstream ${this.label} sent a message that was refused (${parsed.why}); dropped`);
      return;
    }
    for (const m of parsed.messages) this.deliver(m);
  }

  private deliver(value: unknown): void {
    if (this.closed) return;
    const problem = checkMessage(value);
    if (problem) {
      this.onProtocolError(`upstream ${this.label} sent an invalid message (${problem}); dropped`);
      return;
    }
    const m = value as JsonRpcMessage;
    let ex: Exchange | undefined;
    if (isResponse(m) && m.id !== null) {
      ex = this.exchanges.get(m.id);
      if (ex !== undefined) {
        this.exchanges.delete(m.id);
        ex.done = true;
        if (m.id === this.initId) this.learnVersion(m);
      }
    }
    this.onmessage?.(m);
    ex?.settle();
  }

  private learnVersion(r: JsonRpcResponse): void {
    const v = (r.result as { protocolVersion?: unknown } | undefined)?.protocolVersion;
    if (typeof v === "string" && VISIBLE_ASCII.test(v)) this.version = v;
    else if (r.result !== undefined)
      this.onProtocolError(`upstream ${this.label} sent an initialize result without a usable protocolVersion`);
  }

  /** Answers a request with an error (once) so its caller does not wait forever. */
  private fail(ex: Exchange, message: string, httpStatus?: number): void {
    if (ex.done) return;
    ex.done = true;
    if (this.exchanges.get(ex.id) === ex) this.exchanges.delete(ex.id);
    if (!this.closed) {
      this.onmessage?.(
        errorResponse(
          ex.id,
          ErrorCode.UpstreamUnavailable,
          message,
          httpStatus !== undefined ? { httpStatus } : undefined,
        ),
      );
    }
    ex.settle();
  }

  /**
   * Waits before reconnection attempt `attempt` (1, 2, ...): the server's
   * retry, else the default, doubled for each failure in a row, at most
   * maxReconnectDelayMs and at least MIN_RECONNECT_MS; cut short by close.
   */
  private pause(retryMs: number | undefined, attempt: number): Promise<void> {
    const base = retryMs ?? this.reconnectDelayMs;
    const ms = Math.max(
      MIN_RECONNECT_MS,
      Math.min(base * 2 ** Math.min(Math.max(attempt - 1, 0), 16), this.maxReconnectDelayMs),
    );
    return new Promise((resolve) => {
      if (this.closed) return resolve();
      const t = setTimeout(() => {
        this.waits.delete(t);
        resolve();
      }, ms);
      this.waits.set(t, resolve);
    });
  }

  /** Stops everything, answers nothing more, and reports the end once. */
  private shutdown(reason: string): void {
    if (this.closed) return;
    this.closed = true;
    this.abort.abort();
    for (const [t, resolve] of this.waits) {
      clearTimeout(t);
      resolve();
    }
    this.waits.clear();
    for (const ex of this.exchanges.values()) {
      ex.done = true;
      ex.settle();
    }
    this.exchanges.clear();
    this.onclose?.(reason);
  }

  /**
   * Aborts in-flight requests and streams, reports onclose (the owner answers
   * its pending requests), then ends the session with DELETE; a 405 (the
   * server does not let clients end sessions) is fine.
   */
  close(): Promise<void> {
    this.closing ??= this.terminate();
    return this.closing;
  }

  private async terminate(): Promise<void> {
    const wasOpen = !this.closed;
    const session = this.session;
    this.shutdown(TRANSPORT_CLOSED);
    if (!wasOpen || session === undefined) return;
    const r = await this.http("DELETE", {}, undefined, AbortSignal.timeout(DELETE_TIMEOUT_MS));
    if (typeof r === "string") return this.onError(`${r} (ending the session)`);
    await discard(r);
    if (!r.ok && r.status !== 405 && r.status !== 404) {
      this.onError(`upstream ${this.label} answered HTTP ${r.status} to the DELETE ending the session`);
    }
  }
}

const POST_HEADERS = { "content-type": "application/json", accept: "application/json, text/event-stream" };

function mediaType(res: Response): string {
  return (res.headers.get("content-type") ?? "").split(";")[0]?.trim().toLowerCase() ?? "";
}

async function discard(res: Response): Promise<void> {
  await res.body?.cancel().catch(() => {});
}

function describe(err: unknown): string {
  if (!(err instanceof Error)) return String(err);
  const cause = err.cause instanceof Error ? err.cause.message : undefined;
  return cause && cause !== err.message ? `${err.message} (${cause})` : err.message;
}

/** Control characters become spaces: the text ends up in error messages and logs. */
function printable(s: string): string {
  let out = "";
  for (const ch of s) {
    const c = ch.charCodeAt(0);
    out += c < 0x20 || c === 0x7f ? " " : ch;
  }
  return out;
}

function withTimeout(p: Promise<void>, ms: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  const t = new Promise<void>((resolve) => {
    timer = setTimeout(resolve, ms);
  });
  return Promise.race([p, t]).finally(() => clearTimeout(timer));
}

export interface SseEvent {
  /** The event type; "message" when the server gave none. */
  type: string;
  /** The data lines joined with "\n"; undefined when the event had no data field. */
  data: string | undefined;
  /** The stream's last event id after this event ("" when none). */
  lastEventId: string;
}

export interface SseHandlers {
  event(e: SseEvent): void;
  /** A retry field: the reconnection time in ms. */
  retry(ms: number): void;
  /** An event (or line) over the limit; its content was discarded. */
  oversized(bytes: number): void;
}

/**
 * Server-sent events, parsed from bytes as the WHATWG HTML standard (§9.2.6)
 * describes: lines end in CRLF, LF or CR; ":" starts a comment; data lines
 * accumulate; a blank line dispatches; an id persists across events; an
 * incomplete event at the end of the stream is discarded. An event whose data
 * exceeds maxBytes (or a line longer than that) is reported and skipped, so
 * memory stays bounded. Dispatches with neither data nor an id are not
 * reported.
 */
export class SseParser {
  private lastId: string;
  private idBuffer: string;
  private idSeen = false;
  private line: Buffer[] = [];
  private lineBytes = 0;
  private lineTooLong = false;
  private skipLF = false;
  private firstLine = true;
  private data: string[] = [];
  private hasData = false;
  private dataBytes = 0;
  private tooLarge = false;
  private eventType = "";

  constructor(
    private readonly maxBytes: number,
    lastEventId: string,
    private readonly handlers: SseHandlers,
  ) {
    this.lastId = lastEventId;
    this.idBuffer = lastEventId;
  }

  get lastEventId(): string {
    return this.lastId;
  }

  push(chunk: Uint8Array): void {
    const buf = Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
    let start = 0;
    if (this.skipLF && buf.length > 0) {
      this.skipLF = false;
      if (buf[0] === 0x0a) start = 1;
    }
    // -1: none left in this chunk; otherwise the next position (recomputed once passed).
    let lf = -2;
    let cr = -2;
    while (start < buf.length) {
      if (lf !== -1 && lf < start) lf = buf.indexOf(0x0a, start);
      if (cr !== -1 && cr < start) cr = buf.indexOf(0x0d, start);
      const end = lf === -1 ? cr : cr === -1 ? lf : Math.min(lf, cr);
      if (end === -1) {
        this.append(buf.subarray(start));
        return;
      }
      this.append(buf.subarray(start, end));
      this.endLine();
      start = end + 1;
      if (buf[end] === 0x0d) {
        if (start >= buf.length) this.skipLF = true;
        else if (buf[start] === 0x0a) start++;
      }
    }
  }

  private append(part: Buffer): void {
    if (part.length === 0) return;
    this.lineBytes += part.length;
    if (this.lineTooLong) return;
    // Room for the field name on top of a maximal value.
    if (this.lineBytes > this.maxBytes + 64) {
      this.lineTooLong = true;
      this.line = [];
      return;
    }
    this.line.push(Buffer.from(part)); // a copy: the chunk's memory is not ours to keep
  }

  private endLine(): void {
    const bytes = this.lineBytes;
    const parts = this.line;
    this.line = [];
    this.lineBytes = 0;
    if (this.lineTooLong) {
      this.lineTooLong = false;
      this.firstLine = false;
      this.tooLarge = true;
      this.dataBytes += bytes;
      this.data = [];
      return;
    }
    let text = parts.length === 1 ? (parts[0] as Buffer).toString("utf8") : Buffer.concat(parts).toString("utf8");
    if (this.firstLine) {
      this.firstLine = false;
      if (text.startsWith("\ufeff")) text = text.slice(1);
    }
    this.field(text);
  }

  private field(line: string): void {
    if (line === "") {
      this.dispatch();
      return;
    }
    if (line.startsWith(":")) return; // a comment (keep-alive)
    const colon = line.indexOf(":");
    const name = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? "" : line.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    switch (name) {
      case "data":
        this.hasData = true;
        this.dataBytes += Buffer.byteLength(value) + 1;
        if (this.tooLarge) return;
        if (this.dataBytes > this.maxBytes) {
          this.tooLarge = true;
          this.data = [];
          return;
        }
        this.data.push(value);
        return;
      case "event":
        this.eventType = value;
        return;
      case "id":
        if (!value.includes("\0")) {
          this.idBuffer = value;
          this.idSeen = true;
        }
        return;
      case "retry":
        if (/^[0-9]+$/.test(value)) this.handlers.retry(Number(value));
        return;
      default:
        return; // unknown fields are ignored
    }
  }

  private dispatch(): void {
    this.lastId = this.idBuffer;
    const type = this.eventType === "" ? "message" : this.eventType;
    const { hasData, idSeen, tooLarge, dataBytes } = this;
    const data = hasData && !tooLarge ? this.data.join("\n") : undefined;
    this.eventType = "";
    this.data = [];
    this.hasData = false;
    this.idSeen = false;
    this.tooLarge = false;
    this.dataBytes = 0;
    if (tooLarge) this.handlers.oversized(dataBytes);
    else if (hasData || idSeen) this.handlers.event({ type, data, lastEventId: this.lastId });
  }
}
