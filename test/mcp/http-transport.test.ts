// The Streamable HTTP client transport against real servers: the reference
// server (server-everything in its streamableHttp mode, the SDK's server
// transport) and a small node:http server scripted per test for the edge
// cases. Everything listens on 127.0.0.1 only and is stopped after each test.
import assert from "node:assert/strict";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { after, before, describe, it, type TestContext } from "node:test";
import {
  SESSION_EXPIRED,
  type SseEvent,
  SseParser,
  StreamableHttpClientTransport,
  type StreamableHttpOptions,
  TRANSPORT_CLOSED,
} from "../../src/mcp/http-transport.js";
import type { JsonRpcMessage, JsonRpcResponse } from "../../src/mcp/jsonrpc.js";
import { LATEST_PROTOCOL_VERSION, UpstreamConnection } from "../../src/mcp/upstream.js";
import { type EverythingHttp, startEverythingHttp } from "../helpers/everything.js";

// ---------------------------------------------------------------------------
// server-everything over Streamable HTTP

describe("StreamableHttpClientTransport with server-everything", () => {
  let server: EverythingHttp;
  before(async () => {
    server = await startEverythingHttp();
  });
  after(() => server.stop());

  it("initializes, lists and calls tools, streams progress before the result, and ends the session", async () => {
    const problems: string[] = [];
    const transport = new StreamableHttpClientTransport(server.url, {
      onProtocolError: (w) => problems.push(w),
      onError: (w) => problems.push(w),
    });
    const conn = new UpstreamConnection("everything", transport);
    const closes: string[] = [];
    conn.onClose = (r) => closes.push(r);
    await conn.start();
    const init = await conn.initialize({ name: "warden-test", version: "0" }, {});
    assert.equal(init.protocolVersion, LATEST_PROTOCOL_VERSION);
    const session = transport.sessionId;
    assert.ok(session, "the server assigned a session");
    assert.equal(transport.protocolVersion, init.protocolVersion);

    await conn.catalog.refresh();
    assert.ok(await conn.catalog.lookup("echo"), "tools/list went through");

    const echo = await conn.request("tools/call", { name: "echo", arguments: { message: "over http" } }, 1).response;
    assert.deepEqual((echo.result as { content: unknown[] }).content[0], { type: "text", text: "Echo: over http" });

    const order: string[] = [];
    conn.onNotification = (n) => {
      if (n.method === "notifications/progress") order.push(`progress ${(n.params as { progress: number }).progress}`);
    };
    const long = conn.request(
      "tools/call",
      {
        name: "trigger-long-running-operation",
        arguments: { duration: 0.6, steps: 3 },
        _meta: { progressToken: "tok-1" },
      },
      2,
    );
    const result = await long.response;
    order.push("result");
    assert.equal(result.error, undefined);
    assert.deepEqual(order, ["progress 1", "progress 2", "progress 3", "result"]);

    // Server-initiated messages come on the GET stream, opened after initialization.
    const logged = new Promise<void>((resolve) => {
      conn.onNotification = (n) => {
        if (n.method === "notifications/message") resolve();
      };
    });
    const toggled = await conn.request("tools/call", { name: "toggle-simulated-logging", arguments: {} }, 3).response;
    assert.equal(toggled.error, undefined);
    await logged;
    await conn.request("tools/call", { name: "toggle-simulated-logging", arguments: {} }, 4).response;

    await conn.close();
    assert.deepEqual(closes, [TRANSPORT_CLOSED]);
    // The DELETE ended the session: the server no longer knows it.
    const after = await fetch(server.url, {
      method: "POST",
      headers: {
        "content-type": "application/json",
        accept: "application/json, text/event-stream",
        "mcp-session-id": session,
        "mcp-protocol-version": init.protocolVersion,
      },
      body: JSON.stringify({ jsonrpc: "2.0", id: 9, method: "tools/list" }),
    });
    await after.body?.cancel();
    assert.ok(after.status === 400 || after.status === 404, `status ${after.status}`);
    assert.deepEqual(problems, []);
  });
});

// ---------------------------------------------------------------------------
// A scripted server for the edge cases

interface Seen {
  method: string;
  headers: IncomingMessage["headers"];
  message: Record<string, unknown> | undefined;
}

type Script = (seen: Seen, res: ServerResponse, req: IncomingMessage) => void;

class FakeServer {
  readonly seen: Seen[] = [];
  private constructor(
    private readonly server: Server,
    readonly url: string,
  ) {}

  static async start(t: TestContext, script: Script): Promise<FakeServer> {
    const server = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on("data", (c: Buffer) => chunks.push(c));
      req.on("end", () => {
        const text = Buffer.concat(chunks).toString("utf8");
        const seen: Seen = {
          method: req.method ?? "",
          headers: req.headers,
          message: text ? (JSON.parse(text) as Record<string, unknown>) : undefined,
        };
        fake.seen.push(seen);
        script(seen, res, req);
      });
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    const { port } = server.address() as AddressInfo;
    const fake = new FakeServer(server, `http://127.0.0.1:${port}/mcp`);
    t.after(() => fake.close());
    return fake;
  }

  posts(method?: string): Seen[] {
    return this.seen.filter((s) => s.method === "POST" && (method === undefined || s.message?.method === method));
  }

  close(): Promise<void> {
    this.server.closeAllConnections();
    return new Promise((resolve) => this.server.close(() => resolve()));
  }
}

function json(res: ServerResponse, body: unknown, headers: Record<string, string> = {}, status = 200): void {
  res.writeHead(status, { "content-type": "application/json", ...headers });
  res.end(JSON.stringify(body));
}

function accepted(res: ServerResponse): void {
  res.writeHead(202).end();
}

function openSse(res: ServerResponse, headers: Record<string, string> = {}): void {
  res.writeHead(200, { "content-type": "text/event-stream", "cache-control": "no-cache", ...headers });
  res.flushHeaders();
}

function event(data: unknown, id?: string): string {
  return `${id !== undefined ? `id: ${id}\n` : ""}data: ${JSON.stringify(data)}\n\n`;
}

const result = (id: unknown, value: unknown = {}) => ({ jsonrpc: "2.0", id, result: value });
const initResult = (id: unknown) =>
  result(id, { protocolVersion: "2025-06-18", capabilities: {}, serverInfo: { name: "fake", version: "0" } });
const idOf = (s: Seen) => s.message?.id;

/** The usual answers: initialize with a session, 202 for notifications and responses, 405 for GET and DELETE. */
function standard(seen: Seen, res: ServerResponse): boolean {
  const m = seen.message;
  if (seen.method === "GET" || seen.method === "DELETE") {
    res.writeHead(405).end();
    return true;
  }
  if (m?.method === "initialize") {
    json(res, initResult(m.id), { "mcp-session-id": "sess-1" });
    return true;
  }
  if (m && !("id" in m && "method" in m)) {
    accepted(res);
    return true;
  }
  return false;
}

/** A transport whose output is collected; `next` waits for a message matching a predicate. */
function client(url: string, options: StreamableHttpOptions = {}) {
  const messages: JsonRpcMessage[] = [];
  const problems: string[] = [];
  const errors: string[] = [];
  const closes: string[] = [];
  const waiters: { pred: (m: JsonRpcMessage) => boolean; resolve: (m: JsonRpcMessage) => void }[] = [];
  const transport = new StreamableHttpClientTransport(url, {
    onProtocolError: (w) => problems.push(w),
    onError: (w) => errors.push(w),
    reconnectDelayMs: 10,
    ...options,
  });
  transport.onmessage = (m) => {
    messages.push(m);
    for (const w of [...waiters]) {
      if (w.pred(m)) {
        waiters.splice(waiters.indexOf(w), 1);
        w.resolve(m);
      }
    }
  };
  transport.onclose = (r) => closes.push(r);
  const next = (pred: (m: JsonRpcMessage) => boolean): Promise<JsonRpcMessage> => {
    const found = messages.find(pred);
    if (found) return Promise.resolve(found);
    return new Promise((resolve) => waiters.push({ pred, resolve }));
  };
  const response = (id: number) =>
    next((m) => "id" in m && m.id === id && !("method" in m)) as Promise<JsonRpcResponse>;
  const request = (id: number, method: string, params?: Record<string, unknown>) => {
    transport.send({ jsonrpc: "2.0", id, method, ...(params ? { params } : {}) });
    return response(id);
  };
  const initialize = async () => {
    const r = await request(0, "initialize", {
      protocolVersion: "2025-06-18",
      capabilities: {},
      clientInfo: { name: "t", version: "0" },
    });
    transport.send({ jsonrpc: "2.0", method: "notifications/initialized" });
    return r;
  };
  return { transport, messages, problems, errors, closes, next, response, request, initialize };
}

async function until(cond: () => boolean, ms = 2000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error("timed out waiting");
    await new Promise((r) => setTimeout(r, 5));
  }
}

describe("StreamableHttpClientTransport edge cases", () => {
  it("sends the protocol headers, holds requests until initialize is answered, and takes JSON responses", async (t) => {
    const server = await FakeServer.start(t, (seen, res) => {
      if (seen.message?.method === "initialize") {
        setTimeout(() => json(res, initResult(idOf(seen)), { "mcp-session-id": "sess-1" }), 50);
        return;
      }
      if (standard(seen, res)) return;
      json(res, result(idOf(seen), { tools: [] }));
    });
    const c = client(server.url, { headers: { Authorization: "Bearer secret-1" } });
    c.transport.send({ jsonrpc: "2.0", id: 0, method: "initialize", params: {} });
    c.transport.send({ jsonrpc: "2.0", method: "notifications/initialized" });
    const listed = c.request(1, "tools/list");
    await c.response(0);
    assert.deepEqual((await listed).result, { tools: [] });
    await until(() => server.seen.some((s) => s.method === "GET"));

    const [init, note, list] = server.posts();
    assert.equal(init?.message?.method, "initialize");
    assert.equal(note?.message?.method, "notifications/initialized");
    assert.equal(list?.message?.method, "tools/list");
    for (const s of server.seen) assert.equal(s.headers.authorization, "Bearer secret-1");
    assert.equal(init?.headers["mcp-session-id"], undefined);
    assert.equal(init?.headers["mcp-protocol-version"], undefined);
    assert.equal(init?.headers["content-type"], "application/json");
    assert.equal(init?.headers.accept, "application/json, text/event-stream");
    for (const s of [note, list]) {
      assert.equal(s?.headers["mcp-session-id"], "sess-1");
      assert.equal(s?.headers["mcp-protocol-version"], "2025-06-18");
    }
    // The server stream was asked for once, refused with 405, and not asked for again.
    const gets = server.seen.filter((s) => s.method === "GET");
    assert.equal(gets.length, 1);
    assert.equal(gets[0]?.headers.accept, "text/event-stream");
    assert.equal(gets[0]?.headers["mcp-session-id"], "sess-1");

    await c.transport.close();
    const del = server.seen.find((s) => s.method === "DELETE");
    assert.equal(del?.headers["mcp-session-id"], "sess-1");
    assert.deepEqual(c.closes, [TRANSPORT_CLOSED]);
    assert.deepEqual([...c.problems, ...c.errors], [], "405 for GET and DELETE is not an error");
  });

  it("delivers SSE events as they arrive: progress and a server request before the response", async (t) => {
    let release: () => void = () => {};
    const server = await FakeServer.start(t, (seen, res) => {
      if (standard(seen, res)) return;
      if (seen.message?.method === "tools/call") {
        openSse(res);
        // A comment, a CRLF-terminated progress notification, a server request, then (later) the response split over lines.
        res.write(": keep-alive\n\n");
        res.write(
          `event: message\r\ndata: ${JSON.stringify({ jsonrpc: "2.0", method: "notifications/progress", params: { progressToken: "p", progress: 1 } })}\r\n\r\n`,
        );
        res.write(event({ jsonrpc: "2.0", id: "srv-1", method: "ping" }, "e2"));
        res.write("event: other\ndata: not for us\n\n");
        release = () => {
          res.write(`id: e3\ndata: {"jsonrpc": "2.0",\ndata:  "id": 7, "result": {"ok": true}}\n\n`);
          res.end();
        };
      }
    });
    const c = client(server.url);
    await c.initialize();
    const answer = c.request(7, "tools/call", { name: "slow" });
    const ping = await c.next((m) => "method" in m && m.method === "ping");
    assert.ok(c.messages.some((m) => "method" in m && m.method === "notifications/progress"));
    assert.ok(!c.messages.some((m) => "id" in m && m.id === 7), "the response has not come yet");
    // Answer the server's request: a JSON-RPC response POSTed back, accepted with 202.
    c.transport.send({ jsonrpc: "2.0", id: (ping as { id: string }).id, result: {} });
    await until(() => server.posts().some((s) => s.message?.id === "srv-1" && "result" in (s.message ?? {})));
    release();
    assert.deepEqual((await answer).result, { ok: true });
    assert.deepEqual(c.problems, []);
    await c.transport.close();
  });

  it("takes a batch in a JSON body and drops invalid messages", async (t) => {
    const server = await FakeServer.start(t, (seen, res) => {
      if (standard(seen, res)) return;
      json(res, [
        { jsonrpc: "2.0", method: "notifications/message", params: { level: "info", data: "hi" } },
        { jsonrpc: "1.0", id: 3, result: {} },
        result(idOf(seen), { n: 1 }),
      ]);
    });
    const c = client(server.url);
    await c.initialize();
    assert.deepEqual((await c.request(3, "tools/list")).result, { n: 1 });
    assert.ok(c.messages.some((m) => "method" in m && m.method === "notifications/message"));
    assert.equal(c.problems.length, 1);
    assert.match(c.problems[0] ?? "", /invalid message/);
    await c.transport.close();
  });

  it("resumes a dropped stream with GET and Last-Event-ID, after the server's retry", async (t) => {
    let dropAt = 0;
    const server = await FakeServer.start(t, (seen, res) => {
      if (seen.method === "GET" && seen.headers["last-event-id"] === "e2") {
        openSse(res);
        res.end(event(result(5, { resumed: true }), "e3"));
        return;
      }
      if (standard(seen, res)) return;
      openSse(res);
      res.write("id: e1\nretry: 40\ndata: \n\n"); // the priming event
      res.write(
        event({ jsonrpc: "2.0", method: "notifications/progress", params: { progressToken: "p", progress: 1 } }, "e2"),
      );
      dropAt = Date.now();
      setTimeout(() => res.socket?.destroy(), 10); // the connection drops without the response
    });
    const c = client(server.url);
    await c.initialize();
    const r = await c.request(5, "tools/call", { name: "x" });
    assert.deepEqual(r.result, { resumed: true });
    const resume = server.seen.find((s) => s.headers["last-event-id"] !== undefined);
    assert.equal(resume?.method, "GET");
    assert.equal(resume?.headers["last-event-id"], "e2");
    assert.equal(resume?.headers.accept, "text/event-stream");
    assert.equal(resume?.headers["mcp-session-id"], "sess-1");
    assert.ok(Date.now() - dropAt >= 40, "waited for retry");
    assert.deepEqual(c.problems, []);
    await c.transport.close();
  });

  it("gives up resuming after maxReconnects attempts that bring nothing, with an error response", async (t) => {
    const server = await FakeServer.start(t, (seen, res) => {
      if (seen.method === "GET" && seen.headers["last-event-id"]) {
        openSse(res);
        res.end();
        return;
      }
      if (standard(seen, res)) return;
      openSse(res);
      res.end("id: e1\nretry: 5\ndata: \n\n");
    });
    const c = client(server.url, { maxReconnects: 2 });
    await c.initialize();
    const r = await c.request(4, "tools/call", { name: "x" });
    assert.equal(r.error?.code, -32001);
    assert.match(r.error?.message ?? "", /gave up after 2 reconnections/);
    assert.match(r.error?.message ?? "", new RegExp(server.url));
    assert.equal(server.seen.filter((s) => s.headers["last-event-id"] === "e1").length, 2);
    await c.transport.close();
  });

  it("answers a request whose stream ends without an event id at once", async (t) => {
    const server = await FakeServer.start(t, (seen, res) => {
      if (standard(seen, res)) return;
      openSse(res);
      res.end(event({ jsonrpc: "2.0", method: "notifications/progress", params: { progressToken: 1, progress: 1 } }));
    });
    const c = client(server.url);
    await c.initialize();
    const r = await c.request(2, "tools/call", {});
    assert.equal(r.error?.code, -32001);
    assert.match(r.error?.message ?? "", /cannot be resumed/);
    await c.transport.close();
  });

  it("keeps the server stream open, and reconnects it with Last-Event-ID when it drops", async (t) => {
    const server = await FakeServer.start(t, (seen, res) => {
      if (seen.method === "GET") {
        openSse(res);
        if (seen.headers["last-event-id"] === undefined) {
          res.end(event({ jsonrpc: "2.0", method: "notifications/tools/list_changed" }, "g1"));
        } else {
          res.write(event({ jsonrpc: "2.0", id: "s2", method: "roots/list" }, "g2"));
        }
        return;
      }
      if (standard(seen, res)) return;
    });
    const c = client(server.url);
    await c.initialize();
    await c.next((m) => "method" in m && m.method === "notifications/tools/list_changed");
    await c.next((m) => "method" in m && m.method === "roots/list");
    const gets = server.seen.filter((s) => s.method === "GET");
    assert.equal(gets.length, 2);
    assert.equal(gets[1]?.headers["last-event-id"], "g1");
    await c.transport.close();
  });

  it("stops reading a request's stream when the request is cancelled", async (t) => {
    let streamClosed = false;
    const server = await FakeServer.start(t, (seen, res) => {
      if (standard(seen, res)) return;
      openSse(res);
      res.write("id: e1\ndata: \n\n");
      res.on("close", () => {
        streamClosed = true;
      });
    });
    const c = client(server.url);
    await c.initialize();
    c.transport.send({ jsonrpc: "2.0", id: 12, method: "tools/call", params: { name: "forever" } });
    await until(() => server.posts("tools/call").length === 1);
    c.transport.send({ jsonrpc: "2.0", method: "notifications/cancelled", params: { requestId: 12 } });
    await until(() => streamClosed);
    await new Promise((r) => setTimeout(r, 30));
    assert.ok(!c.messages.some((m) => "id" in m && m.id === 12), "no answer is made up for a cancelled request");
    assert.equal(
      server.seen.filter((s) => s.headers["last-event-id"] !== undefined).length,
      0,
      "and it is not resumed",
    );
    await c.transport.close();
  });

  it("treats 404 to a request with the session id as an expired session", async (t) => {
    const server = await FakeServer.start(t, (seen, res) => {
      if (standard(seen, res)) return;
      json(res, { jsonrpc: "2.0", id: null, error: { code: -32001, message: "Session not found" } }, {}, 404);
    });
    const c = client(server.url);
    await c.initialize();
    const r = await c.request(6, "tools/list");
    assert.equal(r.error?.code, -32001);
    assert.match(r.error?.message ?? "", /HTTP 404/);
    assert.deepEqual(r.error?.data, { httpStatus: 404 });
    assert.deepEqual(c.closes, [SESSION_EXPIRED]);
    c.transport.send({ jsonrpc: "2.0", id: 7, method: "tools/list" });
    await c.transport.close();
    assert.deepEqual(c.closes, [SESSION_EXPIRED], "onclose once");
    assert.equal(server.posts("tools/list").length, 1, "nothing is sent after the session expired");
    assert.equal(server.seen.filter((s) => s.method === "DELETE").length, 0, "no DELETE for an expired session");
  });

  it("turns HTTP errors and network errors into JSON-RPC errors and stays usable", async (t) => {
    let fail = true;
    const server = await FakeServer.start(t, (seen, res) => {
      if (standard(seen, res)) return;
      if (fail) {
        fail = false;
        json(res, { jsonrpc: "2.0", id: idOf(seen), error: { code: -32603, message: "boom\nline" } }, {}, 500);
        return;
      }
      json(res, result(idOf(seen), { fine: true }));
    });
    const c = client(server.url);
    await c.initialize();
    const r = await c.request(8, "tools/list");
    assert.equal(r.error?.code, -32001);
    assert.equal(r.error?.message, `upstream ${server.url} answered HTTP 500: boom line`);
    assert.deepEqual((await c.request(9, "tools/list")).result, { fine: true });
    assert.deepEqual(c.closes, []);
    await c.transport.close();

    await server.close();
    const gone = client(server.url);
    const e = await gone.request(1, "initialize", {});
    assert.equal(e.error?.code, -32001);
    assert.match(e.error?.message ?? "", /could not reach upstream/);
    await gone.transport.close();
  });

  it("refuses oversized responses and events", async (t) => {
    const big = "x".repeat(2000);
    const server = await FakeServer.start(t, (seen, res) => {
      if (standard(seen, res)) return;
      if (seen.message?.method === "tools/list") return json(res, result(idOf(seen), { big }));
      openSse(res);
      res.write(event({ jsonrpc: "2.0", method: "notifications/message", params: { data: big } }, "e1"));
      res.write(event(result(idOf(seen), { small: true }), "e2"));
    });
    const c = client(server.url, { maxBytes: 1024 });
    await c.initialize();
    const r = await c.request(10, "tools/list");
    assert.equal(r.error?.code, -32001);
    assert.match(r.error?.message ?? "", /larger than 1024 bytes/);
    const s = await c.request(11, "tools/call", {});
    assert.equal(s.error?.code, -32001);
    assert.match(s.error?.message ?? "", /event larger than 1024 bytes/);
    assert.equal(c.problems.length, 2);
    await c.transport.close();
  });

  it("never follows a redirect, so credentials stay with the configured origin", async (t) => {
    const elsewhere = await FakeServer.start(t, (_seen, res) => json(res, initResult(0)));
    const server = await FakeServer.start(t, (_seen, res) => {
      res.writeHead(307, { location: `${elsewhere.url}?steal=1` }).end();
    });
    const c = client(server.url, { headers: { authorization: "Bearer secret-2" } });
    const r = await c.request(0, "initialize", {});
    assert.equal(r.error?.code, -32001);
    assert.match(
      r.error?.message ?? "",
      /HTTP 307, a redirect to http:\/\/127\.0\.0\.1:\d+; redirects are not followed/,
    );
    assert.equal(elsewhere.seen.length, 0);
    await c.transport.close();
  });

  it("accepts only http and https URLs without credentials, and valid headers", () => {
    assert.throws(() => new StreamableHttpClientTransport("file:///etc/passwd"), /http: or https:/);
    assert.throws(() => new StreamableHttpClientTransport("ftp://example.com/mcp"), /http: or https:/);
    assert.throws(() => new StreamableHttpClientTransport("https://user:pw@example.com/mcp"), /credentials/);
    assert.throws(() => new StreamableHttpClientTransport("https://example.com/mcp", { headers: { "x-a": "a\nb" } }));
    assert.doesNotThrow(() => new StreamableHttpClientTransport("https://example.com/mcp"));
  });
});

describe("SseParser", () => {
  function parse(chunks: (string | Buffer)[], maxBytes = 1024) {
    const events: SseEvent[] = [];
    const retries: number[] = [];
    const oversized: number[] = [];
    const p = new SseParser(maxBytes, "", {
      event: (e) => events.push(e),
      retry: (ms) => retries.push(ms),
      oversized: (n) => oversized.push(n),
    });
    for (const c of chunks) p.push(typeof c === "string" ? Buffer.from(c) : c);
    return { events, retries, oversized, last: p.lastEventId };
  }

  it("splits lines on CRLF, LF and CR across chunk boundaries", () => {
    const { events } = parse(["\ufeffdata: a\r", "\ndata: b\r\r", "data:c\n", "\n"]);
    assert.deepEqual(
      events.map((e) => e.data),
      ["a\nb", "c"],
    );
  });

  it("keeps ids across events, ignores ids with NUL and bad retry values, and drops an unfinished event", () => {
    const { events, retries, last } = parse([
      "id: 1\ndata: x\n\ndata: y\n\nid: a\0b\nretry: 1x\nretry: 25\ndata: z\n\ndata: cut",
    ]);
    assert.deepEqual(
      events.map((e) => [e.data, e.lastEventId]),
      [
        ["x", "1"],
        ["y", "1"],
        ["z", "1"],
      ],
    );
    assert.deepEqual(retries, [25]);
    assert.equal(last, "1");
  });

  it("reports events over the limit, including one long line split over chunks, and goes on", () => {
    const long = "y".repeat(700);
    const { events, oversized } = parse([
      `data: ${long}\ndata: ${long}\n\n`,
      "data: ",
      "z".repeat(600),
      "z".repeat(600),
      "\n\ndata: ok\n\n",
    ]);
    assert.deepEqual(
      events.map((e) => e.data),
      ["ok"],
    );
    assert.equal(oversized.length, 2);
  });
});
