// End to end through `warden run`: the MCP SDK's client speaks to warden run
// over stdio, which governs @modelcontextprotocol/server-filesystem on a
// temporary directory. Calls that need approval are decided with the
// `warden approvals` CLI against the local store in the data directory, while
// the call waits. What happened on disk is the evidence that a call did or did
// not execute.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { userInfo } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, it } from "node:test";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js";
import { CLI, childEnv, FILESYSTEM_SERVER, pendingIn, tempDir, waitFor, warden } from "./helpers.js";

const POLICY = `kind: ToolPolicy
metadata:
  name: fs-writes
spec:
  agent: "*"
  mcpServer: fs
  defaultAction: deny
  rules:
    - name: reads
      tools: [list_allowed_directories, list_directory, read_text_file]
      action: allow
    - name: writes
      tools: [write_file]
      action: require_approval
      approval:
        timeout: 30s
    - name: directories
      tools: [create_directory]
      action: require_approval
      approval:
        timeout: 2s
`;

interface ToolResult {
  isError?: boolean;
  content: { type: string; text: string }[];
}

const text = (r: ToolResult) => r.content.map((c) => c.text).join("\n");

describe("approvals through warden run (stdio) with server-filesystem", () => {
  let t: ReturnType<typeof tempDir>;
  let workspace: string;
  let data: string;
  let policy: string;
  const clients: { client: Client; transport: StdioClientTransport }[] = [];

  beforeEach(() => {
    t = tempDir();
    workspace = join(t.dir, "workspace");
    data = join(t.dir, "data");
    policy = join(t.dir, "policy.yaml");
    mkdirSync(workspace);
    writeFileSync(policy, POLICY);
  });
  afterEach(async () => {
    for (const c of clients.splice(0)) await c.client.close().catch(() => {});
    t.remove();
  });

  /** `warden run` as dev-agent and USER over server-filesystem on the workspace, with the test's policy and data dir. */
  function runArgs(user: string, extra: string[] = []): string[] {
    return [
      ...[CLI, "run", "--policy", policy, "--agent", "dev-agent", "--server", "fs", "--user", user],
      ...["--data-dir", data, ...extra, "--", process.execPath, FILESYSTEM_SERVER, workspace],
    ];
  }

  async function connect(
    user = "alice",
    extra: string[] = [],
  ): Promise<{ client: Client; transport: StdioClientTransport }> {
    const transport = new StdioClientTransport({
      command: process.execPath,
      args: runArgs(user, extra),
      env: childEnv() as Record<string, string>,
      stderr: "pipe",
    });
    const client = new Client({ name: "approvals-test", version: "1.0.0" }, { capabilities: {} });
    await client.connect(transport);
    const c = { client, transport };
    clients.push(c);
    return c;
  }

  const local = () => ["--data-dir", data];
  const write = (client: Client, name: string, o: { onprogress?: (p: unknown) => void; signal?: AbortSignal } = {}) =>
    client.callTool(
      { name: "write_file", arguments: { path: join(workspace, name), content: `hello ${name}` } },
      undefined,
      { timeout: 60_000, ...o },
    ) as Promise<ToolResult>;

  it("approve via the CLI while the call waits: it executes, the agent saw progress, the log has every step", async () => {
    const { client } = await connect();
    const progress: { message?: string }[] = [];
    const call = write(client, "approved.txt", { onprogress: (p) => progress.push(p as { message?: string }) });
    const [pending] = await waitFor("a pending request", async () => {
      const list = await pendingIn(local());
      return list.length > 0 ? list : undefined;
    });
    const id = String(pending?.id);
    assert.equal(pending?.tool, "write_file");
    assert.equal((pending?.user as { id?: string } | undefined)?.id, "alice");
    assert.equal(existsSync(join(workspace, "approved.txt")), false, "nothing runs before the approval");
    const shown = await warden(["approvals", "show", id, ...local()]);
    assert.match(shown.stdout, /Call +write_file on fs/);
    assert.match(shown.stdout, /Policy +fs-writes, rule writes/);
    const approved = await warden(["approvals", "approve", id, "--reason", "reviewed", ...local()]);
    assert.equal(approved.code, 0, approved.stderr);
    assert.match(
      approved.stdout,
      new RegExp(`${id} approved by ${userInfo().username} \\(os:${userInfo().username}\\)`),
    );
    const result = await call;
    assert.notEqual(result.isError, true, text(result));
    assert.equal(readFileSync(join(workspace, "approved.txt"), "utf8"), "hello approved.txt");
    assert.ok(progress.length >= 1, "progress notifications while held");
    assert.match(progress[0]?.message ?? "", new RegExp(`Waiting for approval of write_file \\(request ${id}`));
    await waitFor("the outcome on the request", async () => {
      const r = JSON.parse((await warden(["approvals", "show", id, "--json", ...local()])).stdout) as {
        outcome: string;
      };
      return r.outcome === "success" ? true : undefined;
    });
    const q = await warden(["audit", "query", "--data-dir", data, "--format", "jsonl", "--tool", "write_file"]);
    const records = q.stdout
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l) as { type: string; decision: string; approval: Record<string, unknown> | null });
    const steps = records.map((r) =>
      r.type === "approval" ? `approval:${r.approval?.event}` : `${r.type}:${r.decision}`,
    );
    assert.deepEqual(steps, ["approval:created", "approval:approved", "decision:allow", "outcome:require_approval"]);
    assert.equal(records[1]?.approval?.by, userInfo().username);
    assert.equal(records[2]?.approval?.id, id);
    const verify = await warden(["audit", "verify", "--data-dir", data]);
    assert.equal(verify.code, 0, verify.stdout + verify.stderr);
  });

  it("deny via the CLI: the agent gets the reason as a tool error and nothing is written", async () => {
    const { client } = await connect();
    const call = write(client, "denied.txt");
    const [pending] = await waitFor("a pending request", async () => {
      const list = await pendingIn(local());
      return list.length > 0 ? list : undefined;
    });
    const denied = await warden(["approvals", "deny", String(pending?.id), "--reason", "not today", ...local()]);
    assert.equal(denied.code, 0, denied.stderr);
    const result = await call;
    assert.equal(result.isError, true);
    assert.match(text(result), /denied by \S+: not today/);
    assert.equal(existsSync(join(workspace, "denied.txt")), false);
  });

  it("timeout: no decision within approval.timeout is a tool error, and the call never runs", async () => {
    const { client } = await connect();
    const started = Date.now();
    const result = (await client.callTool({
      name: "create_directory",
      arguments: { path: join(workspace, "never") },
    })) as ToolResult;
    assert.ok(Date.now() - started >= 1900, "waited for the timeout");
    assert.equal(result.isError, true);
    assert.match(text(result), /expired: no decision within 2s/);
    assert.equal(existsSync(join(workspace, "never")), false);
    const list = JSON.parse((await warden(["approvals", "list", "--all", "--json", ...local()])).stdout) as {
      id: string;
      state: string;
    }[];
    assert.equal(list[0]?.state, "expired");
    const late = await warden(["approvals", "approve", String(list[0]?.id), ...local()]);
    assert.equal(late.code, 1);
    assert.match(late.stderr, /already expired/);
    assert.equal(existsSync(join(workspace, "never")), false);
  });

  it("the client cancelling the call withdraws the request", async () => {
    const { client } = await connect();
    const controller = new AbortController();
    const call = write(client, "cancelled.txt", { signal: controller.signal });
    const [pending] = await waitFor("a pending request", async () => {
      const list = await pendingIn(local());
      return list.length > 0 ? list : undefined;
    });
    controller.abort();
    await assert.rejects(call);
    const r = await waitFor("withdrawn", async () => {
      const s = JSON.parse((await warden(["approvals", "show", String(pending?.id), "--json", ...local()])).stdout) as {
        state: string;
        decisionReason: string;
      };
      return s.state === "withdrawn" ? s : undefined;
    });
    assert.match(r.decisionReason, /cancel/);
    const late = await warden(["approvals", "approve", String(pending?.id), ...local()]);
    assert.equal(late.code, 1);
    await new Promise((x) => setTimeout(x, 300));
    assert.equal(existsSync(join(workspace, "cancelled.txt")), false);
  });

  it("gateway killed (SIGKILL) with a pending request and restarted: the request is expired and the call never runs", async () => {
    const first = await connect();
    const call = write(first.client, "orphan.txt");
    call.catch(() => {}); // the connection dies with the gateway
    const [pending] = await waitFor("a pending request", async () => {
      const list = await pendingIn(local());
      return list.length > 0 ? list : undefined;
    });
    const id = String(pending?.id);
    const pid = first.transport.pid;
    assert.ok(pid);
    process.kill(pid, "SIGKILL");
    await assert.rejects(call);
    // Nobody has expired it yet: it is still pending in the store...
    assert.equal((await pendingIn(local()))[0]?.id, id);
    // ...until the gateway restarts on the same data directory.
    const second = await connect();
    const after = JSON.parse((await warden(["approvals", "show", id, "--json", ...local()])).stdout) as {
      state: string;
      decisionReason: string;
    };
    assert.equal(after.state, "expired");
    assert.match(after.decisionReason, /restarted; the call will never run/);
    const late = await warden(["approvals", "approve", id, ...local()]);
    assert.equal(late.code, 1);
    assert.match(late.stderr, /already expired/);
    await new Promise((x) => setTimeout(x, 500));
    assert.equal(existsSync(join(workspace, "orphan.txt")), false);
    // The restarted gateway works: a new call can be approved.
    const again = write(second.client, "after-restart.txt");
    const [p2] = await waitFor("a new pending request", async () => {
      const list = await pendingIn(local());
      return list.length > 0 ? list : undefined;
    });
    assert.equal((await warden(["approvals", "approve", String(p2?.id), ...local()])).code, 0);
    assert.notEqual((await again).isError, true);
    assert.equal(existsSync(join(workspace, "orphan.txt")), false);
  });

  const approvalRecords = async (): Promise<{ approval: Record<string, unknown>; reason: string }[]> => {
    const q = await warden(["audit", "query", "--data-dir", data, "--format", "jsonl", "--tool", "write_file"]);
    return q.stdout
      .trim()
      .split("\n")
      .filter(Boolean)
      .map((l) => JSON.parse(l) as { type: string; approval: Record<string, unknown>; reason: string })
      .filter((r) => r.type === "approval");
  };

  it("gateway killed (SIGKILL), its request approved before the lease ran out, restarted: the request and the log say the call never ran", async () => {
    const first = await connect();
    const call = write(first.client, "killed.txt");
    call.catch(() => {});
    const [pending] = await waitFor("a pending request", async () => {
      const list = await pendingIn(local());
      return list.length > 0 ? list : undefined;
    });
    const id = String(pending?.id);
    process.kill(first.transport.pid as number, "SIGKILL");
    await assert.rejects(call);
    // Within the lease the holder still looks alive: the approval is taken (nothing can run it).
    const approved = await warden(["approvals", "approve", id, "--reason", "late", ...local()]);
    assert.equal(approved.code, 0, approved.stderr);
    await connect();
    const after = await waitFor("the request closed as never run", async () => {
      const r = JSON.parse((await warden(["approvals", "show", id, "--json", ...local()])).stdout) as {
        state: string;
        outcome: string | null;
      };
      return r.outcome ? r : undefined;
    });
    assert.equal(after.state, "approved");
    assert.match(after.outcome ?? "", /^not run: the gateway holding the call restarted before it saw the decision/);
    const records = await approvalRecords();
    assert.deepEqual(
      records.map((r) => r.approval.event),
      ["created", "not-run"],
    );
    assert.equal(records[1]?.approval.id, id);
    assert.equal(records[1]?.approval.by, userInfo().username);
    assert.match(records[1]?.reason ?? "", /approved by .*: late; not run: .*; the call never ran/);
    assert.equal(existsSync(join(workspace, "killed.txt")), false);
    const shown = await warden(["approvals", "show", id, ...local()]);
    assert.match(shown.stdout, /Outcome +not run: the gateway holding the call restarted/);
  });

  it("revoke on the local store while warden run holds the audit log: the gateway records grant-revoked with the revoker", async () => {
    const { client } = await connect();
    const first = write(client, "r1.txt");
    const [pending] = await waitFor("a pending request", async () => {
      const list = await pendingIn(local());
      return list.length > 0 ? list : undefined;
    });
    assert.equal((await warden(["approvals", "approve", String(pending?.id), "--for", "1h", ...local()])).code, 0);
    assert.notEqual((await first).isError, true);
    const [grant] = JSON.parse((await warden(["approvals", "grants", "--json", ...local()])).stdout) as {
      id: string;
    }[];
    const revoked = await warden(["approvals", "revoke", String(grant?.id), "--reason", "done here", ...local()]);
    assert.equal(revoked.code, 0, revoked.stderr);
    const me = userInfo().username;
    const record = await waitFor("the grant-revoked record", async () =>
      (await approvalRecords()).find((r) => r.approval.event === "grant-revoked"),
    );
    assert.deepEqual(
      [record.approval.grant, record.approval.by, record.approval.via, record.approval.reason],
      [grant?.id, me, `os:${me}`, "done here"],
    );
    const again = await warden(["approvals", "revoke", String(grant?.id), ...local()]);
    assert.equal(again.code, 1);
    assert.match(again.stderr, /already revoked/);
    const verify = await warden(["audit", "verify", "--data-dir", data]);
    assert.equal(verify.code, 0, verify.stdout + verify.stderr);
  });

  it("self-approval is refused: the requester's own account cannot approve, but can deny", async () => {
    const me = userInfo().username;
    const { client } = await connect(me);
    const call = write(client, "self.txt");
    const [pending] = await waitFor("a pending request", async () => {
      const list = await pendingIn(local());
      return list.length > 0 ? list : undefined;
    });
    const self = await warden(["approvals", "approve", String(pending?.id), ...local()]);
    assert.equal(self.code, 1);
    assert.match(self.stderr, /may not approve it: the rule does not allow self-approval/);
    assert.equal((await pendingIn(local())).length, 1, "still pending");
    assert.equal((await warden(["approvals", "deny", String(pending?.id), ...local()])).code, 0);
    assert.equal((await call).isError, true);
    assert.equal(existsSync(join(workspace, "self.txt")), false);
  });

  it("approve --for: the grant lets later calls through at once, is listed, and ends with its window", async () => {
    const { client } = await connect();
    const first = write(client, "g1.txt");
    const [pending] = await waitFor("a pending request", async () => {
      const list = await pendingIn(local());
      return list.length > 0 ? list : undefined;
    });
    const approved = await warden(["approvals", "approve", String(pending?.id), "--for", "6s", ...local()]);
    assert.equal(approved.code, 0, approved.stderr);
    assert.match(approved.stdout, /grant grt_\w+ for 6s/);
    assert.notEqual((await first).isError, true);
    const started = Date.now();
    const second = await write(client, "g2.txt");
    assert.notEqual(second.isError, true, text(second));
    assert.ok(Date.now() - started < 2000, "no wait inside the window");
    assert.equal(existsSync(join(workspace, "g2.txt")), true);
    const grants = JSON.parse((await warden(["approvals", "grants", "--json", ...local()])).stdout) as {
      id: string;
      uses: number;
      tool: string;
      agent: string;
      userId: string;
    }[];
    assert.equal(grants.length, 1);
    assert.deepEqual(
      [grants[0]?.tool, grants[0]?.agent, grants[0]?.userId, grants[0]?.uses],
      ["write_file", "dev-agent", "alice", 1],
    );
    await new Promise((x) => setTimeout(x, Math.max(0, 6200 - (Date.now() - started))));
    const third = write(client, "g3.txt");
    const [p3] = await waitFor("held again after the window", async () => {
      const list = await pendingIn(local());
      return list.length > 0 ? list : undefined;
    });
    assert.equal(existsSync(join(workspace, "g3.txt")), false);
    await warden(["approvals", "deny", String(p3?.id), ...local()]);
    assert.equal((await third).isError, true);
    // Revocable: a fresh grant, revoked, stops covering calls at once.
    const fourth = write(client, "g4.txt");
    const [p4] = await waitFor("a pending request", async () => {
      const list = await pendingIn(local());
      return list.length > 0 ? list : undefined;
    });
    await warden(["approvals", "approve", String(p4?.id), "--for", "1h", ...local()]);
    await fourth;
    const active = JSON.parse((await warden(["approvals", "grants", "--json", ...local()])).stdout) as { id: string }[];
    const revoked = await warden(["approvals", "revoke", String(active[0]?.id), "--reason", "done", ...local()]);
    assert.equal(revoked.code, 0, revoked.stderr);
    const fifth = write(client, "g5.txt");
    await waitFor("held after the revocation", async () => {
      const list = await pendingIn(local());
      return list.length > 0 ? list : undefined;
    });
    const p5 = (await pendingIn(local()))[0];
    await warden(["approvals", "deny", String(p5?.id), ...local()]);
    assert.equal((await fifth).isError, true);
    assert.equal(existsSync(join(workspace, "g5.txt")), false);
  });

  it("the client closing stdin while a call is held: the call ends at once (expired, a tool error) and Warden exits", {
    timeout: 60_000,
  }, async () => {
    const child = spawn(process.execPath, runArgs("alice"), { env: childEnv(), stdio: ["pipe", "pipe", "pipe"] });
    try {
      let stdout = "";
      child.stdout.setEncoding("utf8").on("data", (d: string) => {
        stdout += d;
      });
      child.stderr.resume();
      const exited = new Promise<number | null>((resolve) => child.on("close", resolve));
      const answer = (id: number) =>
        stdout
          .split("\n")
          .filter((l) => l.trim() !== "")
          .map((l) => JSON.parse(l) as { id?: number; method?: string; result?: ToolResult })
          .find((m) => m.id === id && m.method === undefined);
      const send = (m: Record<string, unknown>) => child.stdin.write(`${JSON.stringify({ jsonrpc: "2.0", ...m })}\n`);
      send({
        id: 0,
        method: "initialize",
        params: { protocolVersion: "2025-06-18", capabilities: {}, clientInfo: { name: "eof", version: "1" } },
      });
      await waitFor("the answer to initialize", () => answer(0));
      send({ method: "notifications/initialized" });
      // The rule's timeout is 30s: the call is held far longer than Warden needs to stop.
      send({
        id: 1,
        method: "tools/call",
        params: { name: "write_file", arguments: { path: join(workspace, "eof.txt"), content: "x" } },
      });
      const [pending] = await waitFor("a pending request", async () => {
        const list = await pendingIn(local());
        return list.length > 0 ? list : undefined;
      });
      const closed = Date.now();
      child.stdin.end();
      assert.equal(await exited, 0);
      assert.ok(Date.now() - closed < 10_000, `Warden took ${Date.now() - closed} ms to stop`);
      const result = answer(1)?.result;
      assert.equal(result?.isError, true, stdout);
      assert.match(text(result as ToolResult), /the gateway shut down; the call will never run/);
      const shown = JSON.parse(
        (await warden(["approvals", "show", String(pending?.id), "--json", ...local()])).stdout,
      ) as {
        state: string;
        decisionReason: string;
      };
      assert.equal(shown.state, "expired");
      assert.match(shown.decisionReason, /the gateway shut down/);
      assert.equal(existsSync(join(workspace, "eof.txt")), false);
      const verified = await warden(["audit", "verify", ...local()]);
      assert.equal(verified.code, 0, verified.stdout + verified.stderr);
    } finally {
      child.kill("SIGKILL");
    }
  });

  it("--no-approvals: require_approval is a deny that says so", async () => {
    const { client } = await connect("alice", ["--no-approvals"]);
    const result = await write(client, "x.txt");
    assert.equal(result.isError, true);
    assert.match(text(result), /no approval channel is configured/);
  });
});
