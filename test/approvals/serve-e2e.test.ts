// End to end through `warden serve` (Streamable HTTP) with server-filesystem:
// approvers authenticate with API keys on the HTTP API (and through
// `warden approvals --url`), a webhook receiver on 127.0.0.1 verifies the
// HMAC of each new request, the MCP client's user confirms through
// elicitation, and two gateway processes share one PostgreSQL store — one
// holds the call, the other records the approval.
import assert from "node:assert/strict";
import { existsSync, readFileSync } from "node:fs";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { after, afterEach, before, describe, it } from "node:test";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import { ElicitRequestSchema } from "@modelcontextprotocol/sdk/types.js";
import { verifySignature } from "../../src/approvals/webhook.js";
import {
  dropPgSchema,
  KEYS,
  pgSchemaUrl,
  type Serve,
  startServe,
  stop,
  tempDir,
  waitFor,
  warden,
  writeServeConfig,
} from "./helpers.js";

interface ToolResult {
  isError?: boolean;
  content: { type: string; text: string }[];
}
const text = (r: ToolResult) => r.content.map((c) => c.text).join("\n");
const SECRET = "webhook-secret-for-the-tests-0123456789";

async function mcpClient(
  url: string,
  key: string,
  elicit?: (message: string) => Record<string, unknown>,
): Promise<Client> {
  const client = new Client(
    { name: "approvals-http-test", version: "1.0.0" },
    { capabilities: elicit ? { elicitation: {} } : {} },
  );
  if (elicit) client.setRequestHandler(ElicitRequestSchema, async (req) => elicit(req.params.message) as never);
  await client.connect(
    new StreamableHTTPClientTransport(new URL(`${url}/mcp/fs`), {
      requestInit: { headers: { Authorization: `Bearer ${key}` } },
    }),
  );
  return client;
}

async function api(url: string, key: string | null, method: string, path: string, body?: unknown) {
  const res = await fetch(`${url}/api/approvals${path}`, {
    method,
    headers: {
      ...(key ? { authorization: `Bearer ${key}` } : {}),
      ...(body === undefined ? {} : { "content-type": "application/json" }),
    },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  return { status: res.status, body: (await res.json()) as Record<string, unknown> };
}

/** Pending requests seen through a gateway; with `file`, only the one writing that file. */
async function pendingOn(url: string, file?: string): Promise<Record<string, unknown>[]> {
  const all = (await api(url, KEYS.bob, "GET", "?state=pending")).body.requests as Record<string, unknown>[];
  return file === undefined
    ? all
    : all.filter((r) => String((r.arguments as { path?: string } | null)?.path ?? "").endsWith(`/${file}`));
}

describe("approvals through warden serve", () => {
  let t: ReturnType<typeof tempDir>;
  let gw: Serve;
  let receiver: Server;
  const deliveries: { ok: boolean; body: Record<string, unknown> }[] = [];
  const clients: Client[] = [];

  before(async () => {
    receiver = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on("data", (c: Buffer) => chunks.push(c));
      req.on("end", () => {
        const raw = Buffer.concat(chunks).toString("utf8");
        const ok = verifySignature(
          SECRET,
          {
            signature: req.headers["x-warden-signature"] as string | undefined,
            timestamp: req.headers["x-warden-timestamp"] as string | undefined,
          },
          raw,
        );
        deliveries.push({ ok, body: JSON.parse(raw) as Record<string, unknown> });
        res.writeHead(ok ? 200 : 401).end();
      });
    });
    await new Promise<void>((r) => receiver.listen(0, "127.0.0.1", r));
    t = tempDir();
    const config = await writeServeConfig(t.dir, {
      webhook: { url: `http://127.0.0.1:${(receiver.address() as AddressInfo).port}/warden` },
    });
    gw = await startServe(config, { WARDEN_TEST_WEBHOOK_SECRET: SECRET });
  });
  afterEach(async () => {
    for (const c of clients.splice(0)) await c.close().catch(() => {});
  });
  after(async () => {
    await stop(gw.child);
    await new Promise((r) => receiver.close(r));
    t.remove();
  });

  const write = (client: Client, name: string, onprogress?: (p: unknown) => void) =>
    client.callTool(
      { name: "write_file", arguments: { path: join(t.dir, "workspace", name), content: name } },
      undefined,
      onprogress ? { onprogress, resetTimeoutOnProgress: true } : {},
    ) as Promise<ToolResult>;

  it("approve with `warden approvals --url` and an approver's key: the call runs; progress reached the client; the webhook was signed and links back", async () => {
    const client = await mcpClient(gw.url, KEYS.agent);
    clients.push(client);
    const progress: { message?: string }[] = [];
    const call = write(client, "a.txt", (p) => progress.push(p as { message?: string }));
    const [pending] = await waitFor("a pending request", async () => {
      const l = await pendingOn(gw.url, "a.txt");
      return l.length > 0 ? l : undefined;
    });
    const id = String(pending?.id);
    assert.equal(pending?.canApprove, true);
    const listed = await warden(["approvals", "list", "--url", gw.url, "--api-key", KEYS.bob]);
    assert.match(listed.stdout, new RegExp(`${id} +pending +expires in (\\d+m)?\\d+s +dev-agent/alice +fs/write_file`));
    const ok = await warden(["approvals", "approve", id, "--url", gw.url, "--api-key", KEYS.bob, "--reason", "ok"]);
    assert.equal(ok.code, 0, ok.stderr);
    assert.match(ok.stdout, new RegExp(`${id} approved by bob \\(api-key:bob\\)`));
    const result = await call;
    assert.notEqual(result.isError, true, text(result));
    assert.equal(readFileSync(join(t.dir, "workspace", "a.txt"), "utf8"), "a.txt");
    assert.ok(
      progress.some((p) => (p.message ?? "").includes(id)),
      "progress over the SSE stream",
    );
    assert.ok(
      progress.some((p) => (p.message ?? "").includes(`${gw.url}/approvals#${id}`)),
      "progress links to the page",
    );
    const hook = await waitFor("the webhook delivery", () =>
      deliveries.find((d) => (d.body.request as { id?: string } | undefined)?.id === id),
    );
    assert.equal(hook.ok, true, "the receiver verified the HMAC");
    assert.equal((hook.body.links as { page: string }).page, `${gw.url}/approvals#${id}`);
    assert.deepEqual((hook.body.request as { arguments: unknown }).arguments, {
      path: join(t.dir, "workspace", "a.txt"),
      content: "a.txt",
    });
  });

  it("deny on the HTTP API: the agent gets the reason; self-approval, non-approvers and keys without a user are refused", async () => {
    const client = await mcpClient(gw.url, KEYS.agent);
    clients.push(client);
    const call = write(client, "b.txt");
    const [pending] = await waitFor("a pending request", async () => {
      const l = await pendingOn(gw.url, "b.txt");
      return l.length > 0 ? l : undefined;
    });
    const id = String(pending?.id);
    const self = await warden(["approvals", "approve", id, "--url", gw.url, "--api-key", KEYS.aliceConsole]);
    assert.equal(self.code, 1);
    assert.match(self.stderr, /alice made this call .* may not approve it/);
    const agentItself = await api(gw.url, KEYS.agent, "POST", `/${id}/approve`, {});
    assert.equal(agentItself.status, 403);
    const noUser = await api(gw.url, KEYS.ci, "POST", `/${id}/approve`, {});
    assert.equal(noUser.status, 403);
    assert.match(String(noUser.body.error), /no user id/);
    const anonymous = await api(gw.url, null, "GET", "");
    assert.equal(anonymous.status, 401);
    const badFor = await api(gw.url, KEYS.bob, "POST", `/${id}/approve`, { for: "soon" });
    assert.equal(badFor.status, 400);
    const denied = await api(gw.url, KEYS.bob, "POST", `/${id}/deny`, { reason: "wrong directory" });
    assert.equal(denied.status, 200);
    assert.equal((denied.body.request as { state: string }).state, "denied");
    const result = await call;
    assert.equal(result.isError, true);
    assert.match(text(result), /denied by bob: wrong directory/);
    assert.equal(existsSync(join(t.dir, "workspace", "b.txt")), false);
    const again = await api(gw.url, KEYS.bob, "POST", `/${id}/approve`, {});
    assert.equal(again.status, 409);
    assert.match(String(again.body.error), /already denied by bob/);
  });

  it("elicitation: the client's user confirms (the call runs) or declines (it does not)", async () => {
    const asked: string[] = [];
    let answer: Record<string, unknown> = { action: "accept", content: { approve: true } };
    const client = await mcpClient(gw.url, KEYS.agent, (message) => {
      asked.push(message);
      return answer;
    });
    clients.push(client);
    const yes = (await client.callTool({
      name: "create_directory",
      arguments: { path: join(t.dir, "workspace", "confirmed") },
    })) as ToolResult;
    assert.notEqual(yes.isError, true, text(yes));
    assert.equal(existsSync(join(t.dir, "workspace", "confirmed")), true);
    assert.match(asked[0] ?? "", /dev-agent wants to call create_directory on fs/);
    answer = { action: "decline" };
    const no = (await client.callTool({
      name: "create_directory",
      arguments: { path: join(t.dir, "workspace", "declined") },
    })) as ToolResult;
    assert.equal(no.isError, true);
    assert.match(text(no), /the user chose decline/);
    assert.equal(existsSync(join(t.dir, "workspace", "declined")), false);
  });

  it("serves the web page with a strict Content-Security-Policy", async () => {
    const res = await fetch(`${gw.url}/approvals`);
    assert.equal(res.status, 200);
    assert.match(res.headers.get("content-security-policy") ?? "", /script-src 'self'/);
    assert.match(await res.text(), /<title>Warden approvals<\/title>/);
    const js = await fetch(`${gw.url}/approvals/app.js`);
    assert.match(js.headers.get("content-type") ?? "", /javascript/);
  });
});

describe("approvals: two warden serve processes sharing a PostgreSQL store", () => {
  let t: ReturnType<typeof tempDir>;
  let schema: string;
  let a: Serve;
  let b: Serve;
  let configA: string;
  const clients: Client[] = [];

  before(async () => {
    t = tempDir();
    const pg = pgSchemaUrl();
    schema = pg.schema;
    configA = await writeServeConfig(join(t.dir, "a"), { store: pg.url });
    const configB = await writeServeConfig(join(t.dir, "b"), { store: pg.url });
    a = await startServe(configA);
    b = await startServe(configB);
  });
  after(async () => {
    for (const c of clients.splice(0)) await c.close().catch(() => {});
    await stop(a.child);
    await stop(b.child);
    await dropPgSchema(schema);
    t.remove();
  });

  it("one holds the call, the other records the approval: the call runs on the first; both logs have their part", async () => {
    const client = await mcpClient(a.url, KEYS.agent);
    clients.push(client);
    const file = join(t.dir, "a", "workspace", "shared.txt");
    const call = client.callTool({
      name: "write_file",
      arguments: { path: file, content: "x" },
    }) as Promise<ToolResult>;
    const [pending] = await waitFor("the request, seen through the other gateway", async () => {
      const l = await pendingOn(b.url, "shared.txt");
      return l.length > 0 ? l : undefined;
    });
    const id = String(pending?.id);
    const ok = await warden(["approvals", "approve", id, "--url", b.url, "--api-key", KEYS.bob]);
    assert.equal(ok.code, 0, ok.stderr);
    const result = await call;
    assert.notEqual(result.isError, true, text(result));
    assert.equal(existsSync(file), true);
    const records = async (dir: string) =>
      (
        await warden([
          "audit",
          "query",
          "--data-dir",
          join(t.dir, dir, "data"),
          "--type",
          "approval",
          "--format",
          "jsonl",
        ])
      ).stdout
        .trim()
        .split("\n")
        .map((l) => (JSON.parse(l) as { approval: Record<string, unknown> }).approval);
    await waitFor("A's records", async () =>
      (await records("a")).some((r) => r.event === "approved") ? true : undefined,
    );
    const onA = await records("a");
    assert.deepEqual(
      onA.filter((r) => r.id === id).map((r) => [r.event, r.by ?? null]),
      [
        ["created", null],
        ["approved", "bob"],
      ],
    );
    const onB = await records("b");
    assert.deepEqual(
      onB.filter((r) => r.id === id).map((r) => [r.event, r.by, r.via]),
      [["decision-received", "bob", "api-key:bob"]],
    );
  });

  it("the holder killed with a pending request and restarted: expired, never run, and the other gateway cannot approve it", async () => {
    const client = await mcpClient(a.url, KEYS.agent);
    const file = join(t.dir, "a", "workspace", "orphan.txt");
    const call = client.callTool({ name: "write_file", arguments: { path: file, content: "x" } });
    call.catch(() => {});
    const [pending] = await waitFor("a pending request", async () => {
      const l = await pendingOn(b.url, "orphan.txt");
      return l.length > 0 ? l : undefined;
    });
    const id = String(pending?.id);
    await stop(a.child, "SIGKILL");
    await client.close().catch(() => {});
    a = await startServe(configA);
    const r = await api(b.url, KEYS.bob, "GET", `/${id}`);
    assert.equal((r.body.request as { state: string }).state, "expired");
    assert.match(String((r.body.request as { decisionReason: string }).decisionReason), /restarted/);
    const late = await api(b.url, KEYS.bob, "POST", `/${id}/approve`, {});
    assert.equal(late.status, 409);
    await new Promise((x) => setTimeout(x, 500));
    assert.equal(existsSync(file), false);
  });
});
