// `warden serve` in front of remote Streamable HTTP servers: server-everything in
// its own streamableHttp mode, and a server built here on the official SDK's
// server transport that keeps its sessions in memory and can forget them (what
// a restarted or session-expiring server does: it answers 404 to the old
// session id, as the MCP spec says). Clients are the SDK's. Everything listens
// on 127.0.0.1 and is stopped after the suite; the audit log is verified.
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { writeFileSync } from "node:fs";
import { createServer, type Server as HttpServer } from "node:http";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import { Server } from "@modelcontextprotocol/sdk/server/index.js";
import { StreamableHTTPServerTransport } from "@modelcontextprotocol/sdk/server/streamableHttp.js";
import { CallToolRequestSchema, ListToolsRequestSchema } from "@modelcontextprotocol/sdk/types.js";
import { packageVersion } from "../../src/cli/io.js";
import { type RunningGateway, startGateway } from "../../src/cli/serve-command.js";
import { loadServeConfig } from "../../src/mcp/config.js";
import { type EverythingHttp, startEverythingHttp } from "../helpers/everything.js";
import {
  auditRecords,
  checkAuditLog,
  policyVersions,
  removeDir,
  tempDir,
  textOf,
  toolNames,
  verifyAudit,
  waitFor,
} from "../helpers/gateway.js";

/** A remote MCP server on the SDK's StreamableHTTPServerTransport whose sessions can be forgotten. */
class ForgetfulServer {
  private readonly sessions = new Map<string, StreamableHTTPServerTransport>();
  private readonly http: HttpServer;
  /** Sessions opened (initialize requests accepted). */
  opened = 0;
  /** tools/call per tool name that reached this server. */
  readonly calls: Record<string, number> = {};
  url = "";

  constructor() {
    this.http = createServer((req, res) => {
      void (async () => {
        const sid = req.headers["mcp-session-id"];
        if (typeof sid === "string") {
          const known = this.sessions.get(sid);
          if (!known) {
            res.writeHead(404, { "Content-Type": "application/json" });
            res.end(
              JSON.stringify({ jsonrpc: "2.0", id: null, error: { code: -32001, message: "Session not found" } }),
            );
            return;
          }
          await known.handleRequest(req, res);
          return;
        }
        const transport: StreamableHTTPServerTransport = new StreamableHTTPServerTransport({
          sessionIdGenerator: () => randomUUID(),
          onsessioninitialized: (id) => {
            this.opened++;
            this.sessions.set(id, transport);
          },
        });
        await this.mcpServer().connect(transport);
        await transport.handleRequest(req, res);
      })().catch((err) => {
        if (!res.headersSent) res.writeHead(500).end(String(err));
      });
    });
  }

  private mcpServer(): Server {
    const server = new Server({ name: "forgetful", version: "1.0.0" }, { capabilities: { tools: {} } });
    server.setRequestHandler(ListToolsRequestSchema, async () => ({
      tools: ["echo", "danger"].map((name) => ({
        name,
        inputSchema: { type: "object" as const, properties: { message: { type: "string" } } },
      })),
    }));
    server.setRequestHandler(CallToolRequestSchema, async (r) => {
      this.calls[r.params.name] = (this.calls[r.params.name] ?? 0) + 1;
      return { content: [{ type: "text" as const, text: `Echo: ${String(r.params.arguments?.message)}` }] };
    });
    return server;
  }

  async start(port = 0): Promise<void> {
    await new Promise<void>((resolve) => this.http.listen(port, "127.0.0.1", resolve));
    this.url = `http://127.0.0.1:${(this.http.address() as AddressInfo).port}/mcp`;
  }

  /** Forgets every session, as a restarted server does. */
  async forget(): Promise<void> {
    const all = [...this.sessions.values()];
    this.sessions.clear();
    await Promise.all(all.map((t) => t.close()));
  }

  async stop(): Promise<void> {
    await this.forget();
    await new Promise<void>((resolve) => {
      this.http.close(() => resolve());
      this.http.closeAllConnections();
    });
  }
}

const POLICY = `apiVersion: warden/v1
kind: ToolPolicy
metadata:
  name: remote-servers
spec:
  agent: remote-agent
  mcpServer: "*"
  defaultAction: deny
  rules:
    - name: echo
      tools: [echo]
      action: allow
`;

describe("warden serve with remote Streamable HTTP upstreams", () => {
  let root: string;
  let dataDir: string;
  let everything: EverythingHttp;
  let forgetful: ForgetfulServer;
  let gw: RunningGateway;
  let versions: Map<string, string>;
  const logs: string[] = [];
  const clients: Client[] = [];

  async function connect(path: string): Promise<Client> {
    const c = new Client({ name: "e2e-remote", version: "1.0.0" });
    clients.push(c);
    await c.connect(new StreamableHTTPClientTransport(new URL(`${gw.url}${path}`)));
    return c;
  }

  const sessionOf = (c: Client) => (c.transport as StreamableHTTPClientTransport).sessionId as string;

  before(async () => {
    root = tempDir("remote");
    dataDir = join(root, "data");
    everything = await startEverythingHttp();
    forgetful = new ForgetfulServer();
    await forgetful.start();
    const policy = join(root, "policy.yaml");
    writeFileSync(policy, POLICY);
    versions = await policyVersions([policy]);
    const config = join(root, "warden.yaml");
    writeFileSync(
      config,
      `listen: {host: 127.0.0.1, port: 0}
policy: ./policy.yaml
dataDir: ./data
auth:
  anonymous:
    agent: {name: remote-agent}
upstreams:
  everything: {url: "${everything.url}"}
  forgetful: {url: "${forgetful.url}"}
`,
    );
    gw = await startGateway(loadServeConfig(config), { version: packageVersion(), log: (m) => logs.push(m) });
  });

  after(async () => {
    await Promise.all(clients.map((c) => c.close().catch(() => {})));
    await gw?.stop();
    await forgetful?.stop();
    await everything?.stop();
    await verifyAudit(dataDir, { process: true });
    removeDir(root);
  });

  it("a server's own endpoint: only the allowed tool is listed; echo is answered; the decision is recorded", async () => {
    const c = await connect("/mcp/everything");
    assert.deepEqual(await toolNames(c), ["echo"]);
    const r = await c.callTool({ name: "echo", arguments: { message: "over the network" } });
    assert.equal(textOf(r), "Echo: over the network");
    const denied = await c.callTool({ name: "get-env", arguments: {} });
    assert.equal(denied.isError, true);
    assert.match(textOf(denied), /is not available/);
    const decisions = (await auditRecords(dataDir)).filter((x) => x.type === "decision" && x.server === "everything");
    assert.deepEqual(
      decisions.map((d) => [d.tool, d.decision]),
      [
        ["echo", "allow"],
        ["get-env", "deny"],
      ],
    );
    await checkAuditLog(dataDir, versions);
  });

  it("the aggregate endpoint: remote tools prefixed; a denied tool never reaches the server", async () => {
    const c = await connect("/mcp");
    assert.deepEqual((await toolNames(c)).sort(), ["everything__echo", "forgetful__echo"]);
    const r = await c.callTool({ name: "forgetful__echo", arguments: { message: "aggregated" } });
    assert.equal(textOf(r), "Echo: aggregated");
    const denied = await c.callTool({ name: "forgetful__danger", arguments: {} });
    assert.equal(denied.isError, true);
    assert.equal(forgetful.calls.danger, undefined, "the denied call was not forwarded");
  });

  it("on a server's own endpoint, a session the server forgot ends the Warden session; the client starts a new one", async () => {
    const c = await connect("/mcp/forgetful");
    const first = sessionOf(c);
    assert.equal(textOf(await c.callTool({ name: "echo", arguments: { message: "before" } })), "Echo: before");
    const echoes = forgetful.calls.echo ?? 0;
    await forgetful.forget();

    // The call that meets the server's 404 is answered with the reason, and not retried behind the client's back.
    await assert.rejects(c.callTool({ name: "echo", arguments: { message: "lost" } }), /session expired/);
    assert.equal(forgetful.calls.echo ?? 0, echoes, "the server never ran the call");
    // The Warden session is gone too: its id now gets 404, which tells a client to initialize again.
    const stale = await fetch(`${gw.url}/mcp/forgetful`, {
      method: "POST",
      headers: {
        "Content-Type": "application/json",
        Accept: "application/json, text/event-stream",
        "Mcp-Session-Id": first,
      },
      body: JSON.stringify({ jsonrpc: "2.0", id: 9, method: "tools/list" }),
    });
    assert.equal(stale.status, 404);
    const again = await connect("/mcp/forgetful");
    assert.notEqual(sessionOf(again), first);
    assert.equal(textOf(await again.callTool({ name: "echo", arguments: { message: "after" } })), "Echo: after");

    assert.ok(logs.some((l) => l.includes(`session ${first} ends: upstream forgetful is gone`)));
    const lifecycle = (await auditRecords(dataDir)).filter(
      (x) => x.type === "lifecycle" && x.detail?.event === "upstream-exited" && x.detail?.session === first,
    );
    assert.equal(lifecycle.length, 1);
    assert.match(String(lifecycle[0]?.reason), /forgetful: upstream session expired; the session ends/);
  });

  it("on the aggregate endpoint, Warden opens a new upstream session by itself; the client keeps its own", async () => {
    const c = await connect("/mcp");
    const session = sessionOf(c);
    assert.equal(textOf(await c.callTool({ name: "forgetful__echo", arguments: { message: "a" } })), "Echo: a");
    const opened = forgetful.opened;
    // Let the session age past the quick-expiry guard, so the new one is made at once.
    await new Promise((r) => setTimeout(r, 1100));
    await forgetful.forget();
    const lost = await c.callTool({ name: "forgetful__echo", arguments: { message: "b" } }).catch((e: Error) => e);
    assert.match(lost instanceof Error ? lost.message : textOf(lost), /session expired/);
    const answer = await waitFor("a call through the renewed upstream session", async () => {
      const r = await c.callTool({ name: "forgetful__echo", arguments: { message: "c" } }).catch(() => undefined);
      return r && !r.isError ? r : undefined;
    });
    assert.equal(textOf(answer), "Echo: c");
    assert.equal(sessionOf(c), session, "the client's session went on");
    assert.equal(forgetful.opened, opened + 1, "exactly one new upstream session");
    const events = (await auditRecords(dataDir))
      .filter((x) => x.type === "lifecycle" && x.detail?.session === session)
      .map((x) => x.detail?.event);
    assert.deepEqual(events, ["upstream-started", "upstream-started", "upstream-exited", "upstream-started"]);
    await checkAuditLog(dataDir, versions);
  });
});

describe("warden serve with a remote upstream that is down", () => {
  let root: string;
  let dataDir: string;
  let gw: RunningGateway;
  let server: ForgetfulServer | undefined;
  let port: number;
  const clients: Client[] = [];

  before(async () => {
    root = tempDir("remote-down");
    dataDir = join(root, "data");
    // A port nobody listens on (yet): taken from the kernel, then let go.
    const probe = createServer();
    await new Promise<void>((resolve) => probe.listen(0, "127.0.0.1", resolve));
    port = (probe.address() as AddressInfo).port;
    await new Promise<void>((resolve) => probe.close(() => resolve()));
    writeFileSync(join(root, "policy.yaml"), POLICY);
    writeFileSync(
      join(root, "warden.yaml"),
      `listen: {host: 127.0.0.1, port: 0}
policy: ./policy.yaml
dataDir: ./data
auth:
  anonymous:
    agent: {name: remote-agent}
upstreams:
  later: {url: "http://127.0.0.1:${port}/mcp"}
`,
    );
    gw = await startGateway(loadServeConfig(join(root, "warden.yaml")), { version: packageVersion(), log: () => {} });
  });

  after(async () => {
    await Promise.all(clients.map((c) => c.close().catch(() => {})));
    await gw?.stop();
    await server?.stop();
    await verifyAudit(dataDir, { process: true });
    removeDir(root);
  });

  it("an aggregate session records the first failed attempt only, and the count when the server comes up", async () => {
    const c = new Client({ name: "e2e-remote-down", version: "1.0.0" });
    clients.push(c);
    await c.connect(new StreamableHTTPClientTransport(new URL(`${gw.url}/mcp`)));
    const session = (c.transport as StreamableHTTPClientTransport).sessionId as string;
    const ofSession = async () =>
      (await auditRecords(dataDir)).filter((x) => x.type === "lifecycle" && x.detail?.session === session);
    // Attempts at 0, 0.5, 1.5 and 3.5 s: several failures in a row.
    await new Promise((r) => setTimeout(r, 2000));
    assert.deepEqual(
      (await ofSession()).map((x) => x.detail?.event),
      ["upstream-failed"],
      "a server that stays down does not fill the log",
    );
    server = new ForgetfulServer();
    await server.start(port);
    const started = await waitFor(
      "the upstream session once the server is up",
      async () => (await ofSession()).find((x) => x.detail?.event === "upstream-started"),
      15_000,
    );
    assert.ok((started.detail?.failedAttempts as number) >= 2, JSON.stringify(started.detail));
    const r = await waitFor("a call through the new connection", async () => {
      const answer = await c.callTool({ name: "later__echo", arguments: { message: "up" } }).catch(() => undefined);
      return answer && !answer.isError ? answer : undefined;
    });
    assert.equal(textOf(r), "Echo: up");
  });
});
