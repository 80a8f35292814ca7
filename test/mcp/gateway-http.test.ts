// End to end through `warden serve`: the gateway started in-process from a
// warden.yaml (startGateway, port 0, 127.0.0.1) with three real MCP servers as
// shared stdio upstreams, and once as a real `warden serve` process. Clients
// are the official SDK's (Streamable HTTP, and legacy HTTP+SSE once); identities
// are JWTs signed here and verified against a JWKS file, and an API key. Every
// test reads the audit log back afterwards: it verifies, and the decision
// records name the policy version that decided (as the PolicySet reports it).
import assert from "node:assert/strict";
import { type ChildProcess, spawn } from "node:child_process";
import { generateKeyPairSync } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { request } from "node:http";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { SSEClientTransport } from "@modelcontextprotocol/sdk/client/sse.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import { type Progress, ToolListChangedNotificationSchema } from "@modelcontextprotocol/sdk/types.js";
import { packageVersion } from "../../src/cli/io.js";
import { type RunningGateway, startGateway } from "../../src/cli/serve-command.js";
import { loadServeConfig } from "../../src/mcp/config.js";
import { generateApiKey, hashApiKey } from "../../src/mcp/http-auth.js";
import {
  checkCancellation,
  checkFirstCall,
  type EverythingSession,
  everythingChecks,
  everythingClient,
  longCallUnderWay,
} from "../helpers/everything.js";
import {
  type AuditRecord,
  auditRecords,
  CLI,
  checkAuditLog,
  decisionsFor,
  jwtIssuer,
  policyEval,
  policyVersions,
  removeDir,
  SERVERS,
  tempDir,
  textOf,
  toolNames,
  verifyAudit,
  waitFor,
} from "../helpers/gateway.js";

const root = tempDir("http");
const workspace = join(root, "workspace");
const policies = join(root, "policies");
const dataDir = join(root, "data");
const configFile = join(root, "warden.yaml");
const idp = jwtIssuer();
const apiKey = generateApiKey();

const FS_POLICY = (readersMayMkdir: boolean) => `kind: ToolPolicy
metadata:
  name: http-files
spec:
  agent: assistant
  mcpServer: fs
  defaultAction: deny
  rules:
    - name: read
      tools: [read_text_file, list_directory, list_allowed_directories, get_file_info]
      action: allow
      groups: [readers, writers]
    - name: mkdir
      tools: [create_directory]
      action: allow
      groups: [${readersMayMkdir ? "readers, " : ""}writers]
    - name: no-writes
      tools: [write_file]
      action: deny
`;

function writeSetup(): void {
  mkdirSync(join(workspace, "docs"), { recursive: true });
  mkdirSync(policies, { recursive: true });
  writeFileSync(join(workspace, "notes.txt"), "original notes\n");
  writeFileSync(join(root, "jwks.json"), JSON.stringify(idp.jwks));
  writeFileSync(join(policies, "files.yaml"), FS_POLICY(false));
  writeFileSync(
    join(policies, "everything.yaml"),
    `kind: ToolPolicy
metadata:
  name: http-everything
spec:
  agents: [assistant, ci-bot]
  mcpServer: everything
  rules:
    - name: limited
      tools: [get-annotated-message]
      action: allow
      rateLimit: { requests: 3, per: 1m }
    - name: short-echo
      tools: [echo]
      action: allow
      arguments:
        type: object
        properties:
          message: { type: string, maxLength: 40 }
    - name: rest
      tools: ["*"]
      action: allow
`,
  );
  writeFileSync(
    join(policies, "memory.yaml"),
    `kind: ToolPolicy
metadata:
  name: http-memory
spec:
  agents: [assistant, ci-bot]
  mcpServer: memory
  rules:
    - tools: [create_entities, open_nodes, read_graph, search_nodes]
      action: allow
`,
  );
  const node = JSON.stringify(process.execPath);
  writeFileSync(
    configFile,
    `listen: { host: 127.0.0.1, port: 0 }
policy: ./policies
dataDir: ./data
auth:
  apiKeys:
    - name: ci
      hash: ${hashApiKey(apiKey)}
      agent: { name: ci-bot }
      user: { id: ci-runner, groups: [ci] }
  jwt:
    jwks: ./jwks.json
    issuer: ${idp.issuer}
    audience: ${idp.audience}
upstreams:
  fs:
    command: ${node}
    args: [${JSON.stringify(SERVERS.filesystem)}, ./workspace]
  everything:
    command: ${node}
    args: [${JSON.stringify(SERVERS.everything)}, stdio]
  memory:
    command: ${node}
    args: [${JSON.stringify(SERVERS.memory)}]
    env: { MEMORY_FILE_PATH: ${JSON.stringify(join(root, "memory.jsonl"))} }
`,
  );
}

const reader = () => idp.token({ azp: "assistant", sub: "alice", groups: ["readers"] });
const writer = () => idp.token({ azp: "assistant", sub: "bob", groups: ["writers"] });

let gw: RunningGateway;
let url: string;
let versions: Map<string, string>;
const logs: string[] = [];
const clients: Client[] = [];

/** An SDK client over Streamable HTTP at PATH with a bearer credential; closed after the suite. */
async function connect(path: string, bearer: string, client?: Client): Promise<Client> {
  const c = client ?? new Client({ name: "e2e-http", version: "1.0.0" });
  clients.push(c);
  const transport = new StreamableHTTPClientTransport(new URL(`${url}${path}`), {
    requestInit: { headers: { Authorization: `Bearer ${bearer}` } },
  });
  await c.connect(transport);
  return c;
}

function sessionIdOf(c: Client): string {
  const id = (c.transport as StreamableHTTPClientTransport | undefined)?.sessionId;
  assert.ok(id, "the client has a session id");
  return id;
}

const records = () => auditRecords(dataDir);
const check = () => checkAuditLog(dataDir, versions);

/** A raw POST to the gateway (what a client without the SDK, or an attacker, sends). */
function post(path: string, headers: Record<string, string>, body: unknown = initializeBody()) {
  return fetch(`${url}${path}`, {
    method: "POST",
    headers: { "Content-Type": "application/json", Accept: "application/json, text/event-stream", ...headers },
    body: JSON.stringify(body),
  });
}

function initializeBody() {
  return {
    jsonrpc: "2.0",
    id: 1,
    method: "initialize",
    params: { protocolVersion: "2025-06-18", capabilities: {}, clientInfo: { name: "raw", version: "1" } },
  };
}

/** A GET with headers fetch would not let us forge (Host). */
function rawGet(path: string, headers: Record<string, string>): Promise<{ status: number; body: string }> {
  const u = new URL(`${url}${path}`);
  return new Promise((resolve, reject) => {
    const req = request({ host: u.hostname, port: u.port, path: u.pathname, method: "GET", headers }, (res) => {
      let body = "";
      res.setEncoding("utf8").on("data", (d: string) => {
        body += d;
      });
      res.on("end", () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on("error", reject);
    req.end();
  });
}

function refusals(log: AuditRecord[], stage: string): AuditRecord[] {
  return log.filter((r) => r.type === "decision" && r.detail?.stage === stage);
}

/** Refusals are recorded without holding up the answer: wait until `count` of them are in the log. */
async function refused(stage: string, count: number, match: (r: AuditRecord) => boolean = () => true) {
  const found = await waitFor(`${count} "${stage}" refusal records`, async () => {
    const all = refusals(await records(), stage).filter(match);
    return all.length >= count ? all : undefined;
  });
  await check();
  return found;
}

describe("warden serve (in-process gateway, three shared upstreams)", () => {
  before(async () => {
    writeSetup();
    versions = await policyVersions([policies]);
    gw = await startGateway(loadServeConfig(configFile), {
      version: packageVersion(),
      log: (m) => logs.push(m),
    });
    url = gw.url;
    assert.match(url, /^http:\/\/127\.0\.0\.1:\d+$/);
  });
  after(async () => {
    await Promise.all(clients.map((c) => c.close().catch(() => {})));
    await gw?.stop();
    await verifyAudit(dataDir, { process: true });
    removeDir(root);
  });

  it("health and readiness", async () => {
    const health = await fetch(`${url}/healthz`);
    assert.equal(health.status, 200);
    const ready = await waitFor("readiness", async () => {
      const r = await fetch(`${url}/readyz`);
      return r.status === 200 ? ((await r.json()) as { upstreams: Record<string, string> }) : undefined;
    });
    assert.deepEqual(ready.upstreams, { fs: "ready", everything: "ready", memory: "ready" });
    const log = await records();
    const started = log.filter((r) => r.type === "lifecycle" && r.detail?.event === "upstream-started");
    assert.equal(started.length, 3);
    await check();
  });

  describe("identities and server-filesystem", () => {
    it("JWT identities with different groups get different tool lists", async () => {
      const readerClient = await connect("/mcp/fs", reader());
      const writerClient = await connect("/mcp/fs", writer());
      const r = await toolNames(readerClient);
      const w = await toolNames(writerClient);
      assert.deepEqual(r, ["get_file_info", "list_allowed_directories", "list_directory", "read_text_file"]);
      assert.deepEqual(w, [...r, "create_directory"].sort());
      const made = join(workspace, "by-writer");
      const ok = await writerClient.callTool({ name: "create_directory", arguments: { path: made } });
      assert.notEqual(ok.isError, true, textOf(ok));
      assert.ok(existsSync(made));
      const no = await readerClient.callTool({ name: "create_directory", arguments: { path: join(workspace, "x") } });
      assert.equal(textOf(no), 'Tool "create_directory" is not available.');
      assert.ok(!existsSync(join(workspace, "x")));
      const log = decisionsFor(await check(), "fs", "create_directory");
      assert.deepEqual(
        log.map((d) => [d.user?.id, d.decision, d.detail?.via]),
        [
          ["bob", "allow", `jwt:${idp.issuer}`],
          ["alice", "deny", `jwt:${idp.issuer}`],
        ],
      );
      assert.deepEqual(log[0]?.user?.groups, ["writers"]);
    });

    it("reads are allowed; write_file is hidden and denied, the file untouched; hidden = nonexistent", async () => {
      const c = await connect("/mcp/fs", writer());
      const path = join(workspace, "notes.txt");
      const read = await c.callTool({ name: "read_text_file", arguments: { path } });
      assert.equal(textOf(read), "original notes\n");
      const write = await c.callTool({ name: "write_file", arguments: { path, content: "pwned" } });
      const missing = await c.callTool({ name: "write_filez", arguments: { path, content: "pwned" } });
      assert.equal(write.isError, true);
      assert.equal(textOf(write), 'Tool "write_file" is not available.');
      assert.equal(
        JSON.stringify(write).replace("write_file", "<t>"),
        JSON.stringify(missing).replace("write_filez", "<t>"),
      );
      assert.equal(readFileSync(path, "utf8"), "original notes\n");
      const log = await check();
      const [denied] = decisionsFor(log, "fs", "write_file");
      assert.equal(denied?.decision, "deny");
      assert.equal(denied?.rule?.name, "no-writes");
      const evaluated = await policyEval([policies], {
        agent: { name: "assistant" },
        user: { id: "bob", groups: ["writers"] },
        request: { server: "fs", tool: "write_file", arguments: {} },
      });
      assert.equal(evaluated.version, denied?.policy?.version);
      assert.equal(decisionsFor(log, "fs", "write_filez")[0]?.decision, "deny");
    });

    it("an API key identity (server-memory: a write and a read round-trip)", async () => {
      const c = await connect("/mcp/memory", apiKey);
      const w = await c.callTool({
        name: "create_entities",
        arguments: { entities: [{ name: "via-http", entityType: "test", observations: ["written over HTTP"] }] },
      });
      assert.notEqual(w.isError, true, textOf(w));
      const r = await c.callTool({ name: "open_nodes", arguments: { names: ["via-http"] } });
      assert.match(textOf(r), /written over HTTP/);
      const log = decisionsFor(await check(), "memory", "create_entities");
      assert.equal(log[0]?.agent?.name, "ci-bot");
      assert.equal(log[0]?.user?.id, "ci-runner");
      assert.equal(log[0]?.detail?.via, "api-key:ci");
    });

    it("missing or invalid credentials get 401, and each is recorded", async () => {
      const before = refusals(await records(), "auth").length;
      const stranger = generateKeyPairSync("ec", { namedCurve: "P-256" }).privateKey;
      const attempts: [string, Record<string, string>][] = [
        ["no credentials", {}],
        ["garbage bearer", { Authorization: "Bearer not-a-token" }],
        ["wrong API key", { Authorization: `Bearer ${generateApiKey()}` }],
        [
          "JWT signed by another key",
          { Authorization: `Bearer ${idp.token({ azp: "assistant" }, { key: stranger })}` },
        ],
        ["expired JWT", { Authorization: `Bearer ${idp.token({ azp: "assistant", exp: 1_000_000 })}` }],
      ];
      for (const [what, headers] of attempts) {
        const res = await post("/mcp/fs", headers);
        assert.equal(res.status, 401, what);
        assert.match(res.headers.get("www-authenticate") ?? "", /^Bearer/, what);
        const body = (await res.json()) as { error: { message: string } };
        assert.match(body.error.message, /^unauthorized: /, what);
      }
      // The SDK client without credentials cannot connect either.
      const anonymous = new Client({ name: "anonymous", version: "1" });
      await assert.rejects(anonymous.connect(new StreamableHTTPClientTransport(new URL(`${url}/mcp/fs`))));
      const recorded = (await refused("auth", before + attempts.length + 1)).slice(before);
      assert.equal(recorded.length, attempts.length + 1);
      for (const r of recorded) assert.equal(r.decision, "deny");
      assert.match(String(recorded[3]?.reason), /signature/);
      assert.match(String(recorded[4]?.reason), /expired/);
    });

    it("a session id used by another identity gets 403, and it is recorded", async () => {
      const alice = await connect("/mcp/fs", reader());
      const sid = sessionIdOf(alice);
      const list = { jsonrpc: "2.0", id: 9, method: "tools/list" };
      for (const bearer of [writer(), apiKey]) {
        const res = await post("/mcp/fs", { Authorization: `Bearer ${bearer}`, "Mcp-Session-Id": sid }, list);
        assert.equal(res.status, 403);
        assert.match(await res.text(), /belongs to another identity/);
      }
      // The owner still can.
      assert.ok((await toolNames(alice)).includes("read_text_file"));
      const recorded = await refused("session", 2, (r) => String(r.reason).includes(sid));
      assert.equal(recorded.length, 2);
    });

    it("a foreign Host or Origin gets 403 (DNS rebinding), and it is recorded", async () => {
      const port = new URL(url).port;
      const evilHost = await rawGet("/healthz", { Host: `evil.example:${port}` });
      assert.equal(evilHost.status, 403);
      assert.match(evilHost.body, /Host/);
      const rebound = await rawGet("/healthz", { Host: `attacker.example` });
      assert.equal(rebound.status, 403);
      const evilOrigin = await post("/mcp/fs", { Authorization: `Bearer ${reader()}`, Origin: "http://evil.example" });
      assert.equal(evilOrigin.status, 403);
      assert.match(await evilOrigin.text(), /Origin/);
      // The gateway's own origin is fine.
      const local = await rawGet("/healthz", { Host: `localhost:${port}`, Origin: `http://localhost:${port}` });
      assert.equal(local.status, 200);
      await refused("host", 2);
      await refused("origin", 1, (r) => String(r.reason).includes("evil.example"));
    });
  });

  it("two upstreams aggregated at /mcp: prefixed names, calls routed to the right server", async () => {
    const c = await connect("/mcp", writer());
    const names = await toolNames(c);
    for (const t of ["fs__read_text_file", "fs__create_directory", "everything__echo", "memory__open_nodes"]) {
      assert.ok(names.includes(t), `${t} in ${names.join(", ")}`);
    }
    assert.ok(!names.includes("fs__write_file"));
    assert.ok(names.every((n) => /^(fs|everything|memory)__/.test(n)));
    const read = await c.callTool({ name: "fs__read_text_file", arguments: { path: join(workspace, "notes.txt") } });
    assert.equal(textOf(read), "original notes\n");
    const echo = await c.callTool({ name: "everything__echo", arguments: { message: "aggregated" } });
    assert.equal(textOf(echo), "Echo: aggregated");
    const graph = await c.callTool({ name: "memory__read_graph", arguments: {} });
    assert.match(textOf(graph), /via-http/);
    const hidden = await c.callTool({ name: "fs__write_file", arguments: { path: "x", content: "y" } });
    const unknownServer = await c.callTool({ name: "nope__write_file", arguments: { path: "x", content: "y" } });
    assert.equal(textOf(hidden), 'Tool "fs__write_file" is not available.');
    assert.equal(textOf(unknownServer), 'Tool "nope__write_file" is not available.');
    const log = await check();
    assert.equal(decisionsFor(log, "fs", "read_text_file").at(-1)?.decision, "allow");
    assert.equal(decisionsFor(log, "everything", "echo").at(-1)?.decision, "allow");
    assert.equal(decisionsFor(log, "memory", "read_graph").at(-1)?.decision, "allow");
    assert.equal(decisionsFor(log, "fs", "write_file").at(-1)?.user?.id, "bob");
    // Policy and the log see real server and tool names; a name that names no server is
    // refused before any policy, and recorded as it was asked for.
    assert.equal(
      log.filter((r) => r.tool?.includes("__") && r.detail?.stage !== "protocol").length,
      0,
      "policy and the log see real server and tool names",
    );
    const [unknown] = await refused("protocol", 1, (r) => r.tool === "nope__write_file");
    assert.equal(unknown?.server, null);
  });

  describe("server-everything passthrough over Streamable HTTP", () => {
    let s: EverythingSession;
    before(async () => {
      s = everythingClient({ roots: false, server: "everything", records });
      await connect("/mcp/everything", apiKey, s.client);
    });

    it("the first tools/call right after initialize is forwarded", async () => {
      await checkFirstCall(s);
      await check();
    });

    for (const [name, run] of everythingChecks) {
      it(name, async () => {
        await run(s);
        await check();
      });
    }

    it("cancellation of a long call", async () => {
      await checkCancellation(s);
      await check();
    });

    it("after a cancelled call, the shared server's sampling requests still reach another session", async () => {
      // A cancelled call on the shared upstream (the previous test's, or this one's).
      const controller = new AbortController();
      const call = s.client.callTool(
        { name: "trigger-long-running-operation", arguments: { duration: 1, steps: 10 } },
        undefined,
        { signal: controller.signal, onprogress: () => controller.abort("cancelled by e2e") },
      );
      await assert.rejects(call);
      const other = everythingClient({ roots: false, server: "everything", records }, "e2e-other");
      await connect("/mcp/everything", writer(), other.client);
      const r = await other.client.callTool({ name: "trigger-sampling-request", arguments: { prompt: "mine" } });
      assert.notEqual(r.isError, true, textOf(r));
      assert.equal(other.sampled.length, 1);
      assert.equal(s.sampled.filter((p) => JSON.stringify(p).includes("mine")).length, 0);
      await check();
    });
  });

  it("legacy HTTP+SSE transport", async () => {
    const c = new Client({ name: "e2e-sse", version: "1.0.0" });
    clients.push(c);
    await c.connect(
      new SSEClientTransport(new URL(`${url}/sse/everything`), {
        requestInit: { headers: { Authorization: `Bearer ${reader()}` } },
      }),
    );
    assert.ok((await toolNames(c)).includes("echo"));
    const echo = await c.callTool({ name: "echo", arguments: { message: "over sse" } });
    assert.equal(textOf(echo), "Echo: over sse");
    const progress: Progress[] = [];
    const long = await c.callTool(
      { name: "trigger-long-running-operation", arguments: { duration: 0.2, steps: 2 } },
      undefined,
      { onprogress: (p) => progress.push(p) },
    );
    assert.match(textOf(long), /completed/);
    assert.ok(progress.length >= 1);
    const tooLong = await c.callTool({ name: "echo", arguments: { message: "x".repeat(41) } });
    assert.equal(tooLong.isError, true);
    const log = decisionsFor(await check(), "everything", "echo");
    assert.equal(log.at(-2)?.user?.id, "alice");
    assert.equal(log.at(-1)?.decision, "deny");
  });

  it("legacy HTTP+SSE: malformed, duplicate-key and oversized messages are refused and recorded", async () => {
    const stream = await fetch(`${url}/sse/everything`, {
      headers: { Authorization: `Bearer ${apiKey}`, Accept: "text/event-stream" },
    });
    assert.equal(stream.status, 200);
    const reader = (stream.body as ReadableStream<Uint8Array>).getReader();
    let text = "";
    while (!/data: (\/messages\?sessionId=\S+)/.test(text)) {
      const { value, done } = await reader.read();
      assert.ok(!done, "the endpoint event arrives");
      text += new TextDecoder().decode(value);
    }
    const endpoint = (/data: (\/messages\?sessionId=\S+)/.exec(text) as RegExpExecArray)[1];
    const send = (body: string) =>
      fetch(`${url}${endpoint}`, {
        method: "POST",
        headers: { Authorization: `Bearer ${apiKey}`, "Content-Type": "application/json" },
        body,
      });
    const before = refusals(await records(), "protocol").length;
    assert.equal((await send("{not json")).status, 202);
    assert.equal(
      (await send('{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","name":"get-env"}}')).status,
      202,
    );
    assert.equal((await send(`"${"x".repeat(5 * 1024 * 1024)}"`)).status, 413);
    const found = await refused("protocol", before + 3);
    const legacy = found.slice(before);
    assert.ok(legacy.every((r) => r.server === "everything" && String(r.detail?.path).startsWith("/messages")));
    assert.ok(legacy.some((r) => /size limit/.test(String(r.reason))));
    assert.ok(legacy.some((r) => /duplicate/i.test(String(r.reason))));
    await reader.cancel();
  });

  it("rate limit: the 4th call within a minute is denied with the reason", async () => {
    const c = await connect("/mcp/everything", apiKey);
    for (let i = 0; i < 3; i++) {
      const r = await c.callTool({ name: "get-annotated-message", arguments: { messageType: "success" } });
      assert.notEqual(r.isError, true, textOf(r));
    }
    const fourth = await c.callTool({ name: "get-annotated-message", arguments: { messageType: "success" } });
    assert.equal(fourth.isError, true);
    assert.match(textOf(fourth), /^Denied: rate limit exceeded: 3 calls per 1m per agent/);
    assert.match(textOf(fourth), /try again in/);
    const log = decisionsFor(await check(), "everything", "get-annotated-message");
    assert.deepEqual(
      log.map((d) => d.decision),
      ["allow", "allow", "allow", "deny"],
    );
    assert.equal(log[3]?.detail?.stage, "rate-limit");
    assert.equal(log[3]?.rule?.name, "limited");
    assert.equal(log[3]?.policy?.version, versions.get("http-everything"));
  });

  it("argument schema violations: the rule's arguments schema and the tool's inputSchema", async () => {
    const c = await connect("/mcp/everything", writer());
    const long = await c.callTool({ name: "echo", arguments: { message: "y".repeat(41) } });
    assert.equal(long.isError, true);
    assert.match(textOf(long), /^Denied: .*message/);
    const typed = await c.callTool({ name: "echo", arguments: { message: 7 } });
    assert.equal(typed.isError, true);
    const sum = await c.callTool({ name: "get-sum", arguments: { a: "one", b: 2 } });
    assert.equal(sum.isError, true);
    assert.match(textOf(sum), /^Denied: arguments\/a must be number \(the tool's inputSchema\)/);
    const missing = await c.callTool({ name: "get-sum", arguments: { a: 1 } });
    assert.match(textOf(missing), /must have required property 'b'/);
    const good = await c.callTool({ name: "get-sum", arguments: { a: 1, b: 2 } });
    assert.match(textOf(good), /3/);
    const log = await check();
    const echo = decisionsFor(log, "everything", "echo").slice(-2);
    assert.deepEqual(
      echo.map((d) => [d.decision, d.rule?.name, d.user?.id]),
      [
        ["deny", "short-echo", "bob"],
        ["deny", "short-echo", "bob"],
      ],
    );
    const sums = decisionsFor(log, "everything", "get-sum");
    assert.deepEqual(
      sums.map((d) => [d.decision, d.detail?.stage ?? "policy"]),
      [
        ["deny", "input-schema"],
        ["deny", "input-schema"],
        ["allow", "policy"],
      ],
    );
    const outcomes = log.filter((r) => r.type === "outcome" && r.tool === "get-sum");
    assert.equal(outcomes.length <= 1, true, "refused calls were never forwarded");
  });

  it("upstream crash mid-call: the caller gets an error, the shared upstream restarts, later calls work", async () => {
    const s = everythingClient({ roots: false, server: "everything", records });
    const c = await connect("/mcp/everything", apiKey, s.client);
    assert.ok((await toolNames(c)).includes("trigger-long-running-operation"));
    const startedBefore = (await records()).filter(
      (r) => r.type === "lifecycle" && r.detail?.event === "upstream-started" && /everything/.test(String(r.reason)),
    );
    const pid = startedBefore.at(-1)?.detail?.pid as number;
    assert.ok(Number.isInteger(pid), "the upstream's pid is in its lifecycle record");
    const { call } = await longCallUnderWay(c);
    process.kill(pid, "SIGKILL");
    await assert.rejects(call, /upstream everything is unavailable: the server process was killed by SIGKILL/);
    const restarted = await waitFor("the restart", async () =>
      (await records()).find(
        (r) =>
          r.type === "lifecycle" &&
          r.detail?.event === "upstream-started" &&
          /everything/.test(String(r.reason)) &&
          r.detail?.pid !== pid,
      ),
    );
    assert.ok((restarted.detail?.restarts as number) >= 1);
    await waitFor("tools/list_changed after the restart", () => (s.toolListChanges > 0 ? true : undefined));
    const echo = await c.callTool({ name: "echo", arguments: { message: "after the crash" } });
    assert.equal(textOf(echo), "Echo: after the crash");
    const fresh = await connect("/mcp/everything", writer());
    assert.equal(
      textOf(await fresh.callTool({ name: "echo", arguments: { message: "new session" } })),
      "Echo: new session",
    );
    const log = await check();
    assert.ok(log.some((r) => r.type === "lifecycle" && r.detail?.event === "upstream-exited"));
    const outcome = log.filter((r) => r.type === "outcome" && r.tool === "trigger-long-running-operation").at(-1);
    assert.equal(outcome?.detail?.status, "upstream-error");
    assert.ok(logs.some((m) => /upstream everything stopped .*restarting/.test(m)));
  });

  it("policy hot reload: an edit allows a denied tool (tools/list_changed); a broken edit keeps the last good policy", async () => {
    const c = await connect("/mcp/fs", reader());
    let changes = 0;
    c.setNotificationHandler(ToolListChangedNotificationSchema, () => {
      changes++;
    });
    const made = join(workspace, "by-reader");
    assert.ok(!(await toolNames(c)).includes("create_directory"));
    const before = await c.callTool({ name: "create_directory", arguments: { path: made } });
    assert.equal(before.isError, true);
    const v1 = versions.get("http-files");

    writeFileSync(join(policies, "files.yaml"), FS_POLICY(true));
    const v2 = (await policyVersions([policies])).get("http-files");
    assert.notEqual(v1, v2);
    await waitFor("tools/list_changed", () => (changes > 0 ? true : undefined));
    assert.ok((await toolNames(c)).includes("create_directory"));
    const allowed = await c.callTool({ name: "create_directory", arguments: { path: made } });
    assert.notEqual(allowed.isError, true, textOf(allowed));
    assert.ok(existsSync(made));

    writeFileSync(join(policies, "files.yaml"), `${FS_POLICY(true)}  bogus: [\n`);
    await waitFor("the refusal in the log", () =>
      logs.some((m) => /policy change refused/.test(m)) ? true : undefined,
    );
    const still = await c.callTool({ name: "create_directory", arguments: { path: join(made, "again") } });
    assert.notEqual(still.isError, true, "the last good policy stays in force");

    const log = await records();
    const decisions = decisionsFor(log, "fs", "create_directory").filter((d) => d.user?.id === "alice");
    assert.deepEqual(
      decisions.map((d) => [d.decision, d.policy?.version]),
      [
        ["deny", v1],
        ["deny", v1],
        ["allow", v2],
        ["allow", v2],
      ],
    );
    const events = log.filter((r) => r.type === "lifecycle").map((r) => r.detail?.event);
    assert.ok(events.includes("policy-loaded") && events.includes("policy-refused"), events.join(", "));
    await verifyAudit(dataDir);
  });
});

describe("warden serve as a process", () => {
  const dir = tempDir("serve-process");
  let child: ChildProcess | undefined;
  after(() => {
    if (child && child.exitCode === null) child.kill("SIGKILL");
    removeDir(dir);
  });

  it("prints where it listens, serves a governed call, and stops cleanly on SIGTERM with a final record", async () => {
    const key = generateApiKey();
    mkdirSync(join(dir, "files"));
    writeFileSync(join(dir, "files", "hello.txt"), "hello from disk\n");
    writeFileSync(
      join(dir, "policy.yaml"),
      `kind: ToolPolicy
metadata:
  name: serve-process
spec:
  agent: proc-agent
  mcpServer: files
  rules:
    - tools: [read_text_file]
      action: allow
`,
    );
    writeFileSync(
      join(dir, "warden.yaml"),
      `policy: ./policy.yaml
dataDir: ./data
auth:
  apiKeys:
    - { name: proc, hash: "${hashApiKey(key)}", agent: { name: proc-agent } }
upstreams:
  files:
    command: ${JSON.stringify(process.execPath)}
    args: [${JSON.stringify(SERVERS.filesystem)}, ./files]
`,
    );
    const processVersions = await policyVersions([join(dir, "policy.yaml")]);
    const proc = spawn(process.execPath, [CLI, "serve", "--config", join(dir, "warden.yaml"), "--port", "0"], {
      stdio: ["ignore", "pipe", "pipe"],
    });
    child = proc;
    let out = "";
    let err = "";
    proc.stdout?.on("data", (d: Buffer) => {
      out += d.toString("utf8");
    });
    proc.stderr?.on("data", (d: Buffer) => {
      err += d.toString("utf8");
    });
    const exited = new Promise<number | null>((resolve) => proc.on("exit", (code) => resolve(code)));
    const base = await waitFor(
      "the listening line",
      () => /Warden gateway listening on (http:\/\/127\.0\.0\.1:\d+)/.exec(out)?.[1],
    );
    const c = new Client({ name: "e2e-proc", version: "1.0.0" });
    await c.connect(
      new StreamableHTTPClientTransport(new URL(`${base}/mcp/files`), {
        requestInit: { headers: { Authorization: `Bearer ${key}` } },
      }),
    );
    assert.deepEqual(await toolNames(c), ["read_text_file"]);
    const r = await c.callTool({ name: "read_text_file", arguments: { path: join(dir, "files", "hello.txt") } });
    assert.equal(textOf(r), "hello from disk\n");
    await c.close();
    proc.kill("SIGTERM");
    assert.equal(await exited, 0, err);
    assert.match(err, /stopping/);
    await verifyAudit(join(dir, "data"), { process: true });
    const log = await checkAuditLog(join(dir, "data"), processVersions);
    assert.equal(log.at(-1)?.type, "lifecycle");
    assert.equal(log.at(-1)?.detail?.event, "stop");
    assert.equal(
      decisionsFor(log, "files", "read_text_file")[0]?.policy?.version,
      processVersions.get("serve-process"),
    );
  });
});
