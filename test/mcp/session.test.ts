import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { type AuditLog, openAuditLog } from "../../src/audit/log.js";
import { Governor } from "../../src/mcp/governor.js";
import type { JsonRpcMessage, JsonRpcResponse } from "../../src/mcp/jsonrpc.js";
import { fixedPolicy } from "../../src/mcp/policy-source.js";
import { RateLimiter } from "../../src/mcp/rate-limit.js";
import { GovernedSession } from "../../src/mcp/session.js";
import { UpstreamConnection } from "../../src/mcp/upstream.js";
import { UpstreamHandle } from "../../src/mcp/upstream-handle.js";
import { policySet } from "../helpers/policies.js";
import { ScriptedServer } from "../helpers/scripted-server.js";

let dir: string;
let audit: AuditLog;
before(async () => {
  dir = await mkdtemp(join(tmpdir(), "warden-session-"));
  audit = await openAuditLog({ dataDir: dir, warn: () => {} });
});
after(async () => {
  await audit.close();
  await rm(dir, { recursive: true, force: true });
});

const tick = () => new Promise((r) => setImmediate(r));

/** A session on one upstream (a scripted server) that allows everything, initialized by a client that declares sampling. */
async function initializedSession(id: string) {
  const server = new ScriptedServer();
  const handle = new UpstreamHandle("srv", "passthrough");
  handle.attach(new UpstreamConnection("srv", server));
  const set = policySet(
    "kind: ToolPolicy\nmetadata: {name: p}\nspec: {agent: a, mcpServer: srv, defaultAction: allow}\n",
  );
  const governor = new Governor({ policy: fixedPolicy(set), audit, limiter: new RateLimiter() });
  const toClient: JsonRpcMessage[] = [];
  const session = new GovernedSession({
    id,
    identity: { agent: { name: "a" }, via: "test" },
    governor,
    upstreams: [handle],
    aggregate: false,
    send: (message) => toClient.push(message),
    serverInfo: { name: "warden", version: "test" },
    log: () => {},
  });
  const init = session.handle({
    jsonrpc: "2.0",
    id: 1,
    method: "initialize",
    params: { capabilities: { sampling: {} } },
  });
  await tick();
  server.emit({
    jsonrpc: "2.0",
    id: 1,
    result: { protocolVersion: "2025-11-25", capabilities: {}, serverInfo: { name: "x" } },
  });
  await init;
  return { server, session, toClient };
}

describe("a session relaying what the server asks of the client", () => {
  it("maps a server's cancellation of its own request to the id the client knows", async () => {
    const { server, session, toClient } = await initializedSession("s1");
    // The server asks the client for a sample, then withdraws the request.
    server.emit({ jsonrpc: "2.0", id: 77, method: "sampling/createMessage", params: { messages: [], maxTokens: 5 } });
    await tick();
    const asked = toClient.at(-1) as { id: string; method: string };
    assert.equal(asked.method, "sampling/createMessage");
    assert.notEqual(asked.id, 77, "the client sees Warden's id, not the server's");
    server.emit({
      jsonrpc: "2.0",
      method: "notifications/cancelled",
      params: { requestId: 77, reason: "no longer needed" },
    });
    await tick();
    assert.deepEqual(toClient.at(-1), {
      jsonrpc: "2.0",
      method: "notifications/cancelled",
      params: { requestId: asked.id, reason: "no longer needed" },
    });
    const answer = server.received.at(-1) as JsonRpcResponse;
    assert.equal(answer.id, 77);
    assert.match(answer.error?.message ?? "", /cancelled by the server/);
    // A late answer from the client goes nowhere.
    await session.handle({
      jsonrpc: "2.0",
      id: asked.id,
      result: { role: "assistant", content: { type: "text", text: "x" } },
    });
    assert.equal(server.received.filter((m) => (m as JsonRpcResponse).id === 77).length, 1);
    session.close();
  });

  it("once the client's input ended, the server's requests to it are refused, those already waiting and later ones", async () => {
    const { server, session, toClient } = await initializedSession("s2");
    // Asked before the end of input: relayed, then answered by Warden when the input ends.
    server.emit({ jsonrpc: "2.0", id: 77, method: "sampling/createMessage", params: { messages: [], maxTokens: 5 } });
    await tick();
    assert.equal((toClient.at(-1) as { method?: string }).method, "sampling/createMessage");
    session.clientInputEnded();
    await tick();
    const first = server.received.at(-1) as JsonRpcResponse;
    assert.equal(first.id, 77);
    assert.match(first.error?.message ?? "", /the client closed the connection/);
    // Asked afterwards: not relayed, refused at once.
    const relayed = toClient.length;
    server.emit({ jsonrpc: "2.0", id: 78, method: "sampling/createMessage", params: { messages: [], maxTokens: 5 } });
    await tick();
    assert.equal(toClient.length, relayed);
    const second = server.received.at(-1) as JsonRpcResponse;
    assert.equal(second.id, 78);
    assert.match(second.error?.message ?? "", /the client closed the connection/);
    session.close();
  });
});
