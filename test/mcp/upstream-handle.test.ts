import assert from "node:assert/strict";
import { describe, it } from "node:test";
import type { JsonRpcNotification, JsonRpcRequest, JsonRpcResponse, RequestId } from "../../src/mcp/jsonrpc.js";
import { UpstreamConnection } from "../../src/mcp/upstream.js";
import { UpstreamHandle, type UpstreamListener } from "../../src/mcp/upstream-handle.js";
import { ScriptedServer } from "../helpers/scripted-server.js";

class Listener implements UpstreamListener {
  readonly notes: { n: JsonRpcNotification; related?: RequestId }[] = [];
  readonly requests: JsonRpcRequest[] = [];
  constructor(readonly id: string) {}
  async serverRequest(_h: UpstreamHandle, r: JsonRpcRequest): Promise<JsonRpcResponse> {
    this.requests.push(r);
    return { jsonrpc: "2.0", id: r.id, result: { by: this.id } };
  }
  serverNotification(_h: UpstreamHandle, n: JsonRpcNotification, related?: RequestId) {
    this.notes.push({ n, related });
  }
}

function shared() {
  const server = new ScriptedServer();
  const conn = new UpstreamConnection("srv", server);
  const handle = new UpstreamHandle("srv", "managed");
  handle.attach(conn);
  const a = new Listener("a");
  const b = new Listener("b");
  handle.listen(a);
  handle.listen(b);
  return { server, conn, handle, a, b };
}

const tick = () => new Promise((r) => setImmediate(r));

describe("routing what a shared server sends", () => {
  it("gives each request a unique progress token and delivers progress only to its owner, with the original token", () => {
    const { server, handle, a, b } = shared();
    const ta = handle.mapProgressToken(a, 1, "req-a");
    const tb = handle.mapProgressToken(b, 1, "req-b");
    assert.notEqual(ta, tb, "both sessions used token 1; the server sees different ones");
    server.emit({ jsonrpc: "2.0", method: "notifications/progress", params: { progressToken: tb, progress: 5 } });
    assert.equal(a.notes.length, 0);
    assert.deepEqual(b.notes[0], {
      n: { jsonrpc: "2.0", method: "notifications/progress", params: { progressToken: 1, progress: 5 } },
      related: "req-b",
    });
    server.emit({ jsonrpc: "2.0", method: "notifications/progress", params: { progressToken: "forged", progress: 1 } });
    assert.equal(a.notes.length + b.notes.length, 1, "a token Warden did not hand out goes nowhere");
  });

  it("sends a server request to the one session with a call in flight, and refuses to guess between several", async () => {
    const { server, handle, a, b } = shared();
    handle.began(a);
    server.emit({ jsonrpc: "2.0", id: 9, method: "sampling/createMessage", params: {} });
    await tick();
    assert.equal(a.requests.length, 1);
    assert.deepEqual(server.received.at(-1), { jsonrpc: "2.0", id: 9, result: { by: "a" } });
    handle.began(b);
    server.emit({ jsonrpc: "2.0", id: 10, method: "elicitation/create", params: {} });
    await tick();
    assert.equal(a.requests.length + b.requests.length, 1, "nobody got the ambiguous request");
    const answer = server.received.at(-1) as JsonRpcResponse;
    assert.equal(answer.id, 10);
    assert.match(answer.error?.message ?? "", /several sessions have calls in flight.*isolation: session/);
    handle.ended(a);
    handle.ended(b);
    server.emit({ jsonrpc: "2.0", id: 11, method: "roots/list" });
    await tick();
    assert.match((server.received.at(-1) as JsonRpcResponse).error?.message ?? "", /no session has a call in flight/);
  });

  it("delivers resources/updated only to subscribers, list changes to everyone", () => {
    const { server, handle, a, b } = shared();
    handle.subscribe(a, "file:///x");
    server.emit({ jsonrpc: "2.0", method: "notifications/resources/updated", params: { uri: "file:///x" } });
    assert.equal(a.notes.length, 1);
    assert.equal(b.notes.length, 0);
    server.emit({ jsonrpc: "2.0", method: "notifications/tools/list_changed" });
    assert.equal(a.notes.length, 2);
    assert.equal(b.notes.length, 1);
  });

  it("delivers a log message only to the one session with a call in flight, never to everyone", () => {
    const { server, handle, a, b } = shared();
    const log = (data: string) =>
      server.emit({ jsonrpc: "2.0", method: "notifications/message", params: { level: "info", data } });
    log("nobody's call");
    assert.equal(a.notes.length + b.notes.length, 0, "with no call in flight it cannot be attributed");
    handle.began(b);
    log("b's call");
    assert.deepEqual(
      b.notes.map((x) => x.n.params?.data),
      ["b's call"],
    );
    handle.began(a);
    log("whose?");
    assert.equal(a.notes.length, 0, "two calls in flight: not guessed");
    assert.equal(b.notes.length, 1);
    handle.ended(a);
    handle.ended(b);
    handle.unlisten(b);
    log("only a is left");
    assert.deepEqual(
      a.notes.map((x) => x.n.params?.data),
      ["only a is left"],
    );
  });

  it("answers every pending request with an error when the server goes away", async () => {
    const { server, conn } = shared();
    const { response } = conn.request("tools/call", { name: "x" }, "client-7");
    await server.close();
    const r = await response;
    assert.equal(r.id, "client-7");
    assert.match(r.error?.message ?? "", /upstream srv is unavailable/);
  });
});
