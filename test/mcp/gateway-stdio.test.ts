// End to end through `warden run` as a real process: the official SDK client
// on one side (StdioClientTransport spawning `node dist/src/cli/main.js run`),
// real MCP servers from npm on the other. Every test reads the audit log back
// through `warden audit` afterwards: it verifies, and the decision records name
// the policy version that decided (the version the PolicySet reports).
import assert from "node:assert/strict";
import { type ChildProcessWithoutNullStreams, spawn } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js";
import { ToolListChangedNotificationSchema } from "@modelcontextprotocol/sdk/types.js";
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
  cli,
  decisionsFor,
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
import { childEnv, runProcess } from "../helpers/process.js";

const AGENT = "e2e-agent";

interface Wrapped {
  transport: StdioClientTransport;
  /** Warden's stderr so far (with the child's, which passes through). */
  stderr(): string;
}

/** A StdioClientTransport that starts `warden run ... -- COMMAND...`. */
function wardenRun(o: {
  policy: string;
  server: string;
  dataDir: string;
  command: string[];
  env?: Record<string, string>;
}): Wrapped {
  const transport = new StdioClientTransport({
    command: process.execPath,
    args: [
      CLI,
      "run",
      "--policy",
      o.policy,
      "--agent",
      AGENT,
      "--server",
      o.server,
      "--user",
      "alice",
      "--groups",
      "dev,e2e",
      "--data-dir",
      o.dataDir,
      "--",
      ...o.command,
    ],
    env: { ...(process.env as Record<string, string>), ...o.env },
    stderr: "pipe",
  });
  let err = "";
  transport.stderr?.on("data", (d: Buffer) => {
    err += d.toString("utf8");
  });
  return { transport, stderr: () => err };
}

const dirs: string[] = [];
after(() => {
  for (const d of dirs) removeDir(d);
});
function dir(prefix: string): string {
  const d = tempDir(prefix);
  dirs.push(d);
  return d;
}

describe("warden run: server-filesystem on a temp folder", () => {
  const root = dir("stdio-fs");
  const workspace = join(root, "workspace");
  const dataDir = join(root, "data");
  const policy = join(root, "files.yaml");
  let client: Client;
  let versions: Map<string, string>;
  let records: () => Promise<AuditRecord[]>;

  before(async () => {
    mkdirSync(join(workspace, "docs"), { recursive: true });
    writeFileSync(join(workspace, "notes.txt"), "original line 1\nline 2\nline 3\n");
    writeFileSync(join(workspace, "docs", "readme.md"), "# docs\n");
    writeFileSync(
      policy,
      `kind: ToolPolicy
metadata:
  name: e2e-files
spec:
  agent: ${AGENT}
  mcpServer: files
  defaultAction: deny
  rules:
    - name: bounded-head
      tools: [read_text_file]
      action: allow
      arguments:
        type: object
        properties:
          head: { type: integer, maximum: 5 }
    - name: read
      tools: ["read_*", list_directory, get_file_info, directory_tree, search_files]
      action: allow
    - name: counted
      tools: [list_allowed_directories]
      action: allow
      rateLimit: { requests: 3, per: 1m }
    - name: no-writes
      tools: [write_file, edit_file, move_file]
      action: deny
      message: the e2e agent may not change files
`,
    );
    versions = await policyVersions([policy]);
    records = () => auditRecords(dataDir);
    const w = wardenRun({
      policy,
      server: "files",
      dataDir,
      command: [process.execPath, SERVERS.filesystem, workspace],
    });
    client = new Client({ name: "e2e-fs", version: "1.0.0" });
    await client.connect(w.transport);
  });
  after(async () => {
    await client?.close();
    await verifyAudit(dataDir, { process: true });
  });

  it("lists only the tools policy could allow", async () => {
    const names = await toolNames(client);
    for (const t of ["read_text_file", "read_file", "list_directory", "list_allowed_directories"]) {
      assert.ok(names.includes(t), `${t} listed: ${names.join(", ")}`);
    }
    for (const t of ["write_file", "edit_file", "move_file", "create_directory"]) {
      assert.ok(!names.includes(t), `${t} must be hidden: ${names.join(", ")}`);
    }
    await checkAuditLog(dataDir, versions);
  });

  it("reads are allowed and forwarded", async () => {
    const r = await client.callTool({ name: "read_text_file", arguments: { path: join(workspace, "notes.txt") } });
    assert.notEqual(r.isError, true, textOf(r));
    assert.match(textOf(r), /original line 1/);
    const ls = await client.callTool({ name: "list_directory", arguments: { path: workspace } });
    assert.match(textOf(ls), /\[DIR\] docs/);
    const logged = decisionsFor(await checkAuditLog(dataDir, versions), "files", "read_text_file");
    assert.equal(logged.at(-1)?.decision, "allow");
    assert.equal(logged.at(-1)?.policy?.name, "e2e-files");
    assert.equal(logged.at(-1)?.rule?.name, "bounded-head");
    assert.equal(logged.at(-1)?.user?.id, "alice");
    const outcome = await waitFor("the read's outcome record", async () =>
      (await records()).find((x) => x.type === "outcome" && x.tool === "read_text_file"),
    );
    assert.equal(outcome.detail?.status, "success");
  });

  it("write_file is hidden and denied when called anyway; the file on disk is untouched", async () => {
    const target = join(workspace, "notes.txt");
    const created = join(workspace, "new.txt");
    const r = await client.callTool({ name: "write_file", arguments: { path: target, content: "pwned" } });
    assert.equal(r.isError, true);
    assert.equal(textOf(r), 'Tool "write_file" is not available.');
    const r2 = await client.callTool({ name: "write_file", arguments: { path: created, content: "pwned" } });
    assert.equal(r2.isError, true);
    assert.equal(readFileSync(target, "utf8"), "original line 1\nline 2\nline 3\n");
    assert.equal(existsSync(created), false);
    const denied = decisionsFor(await checkAuditLog(dataDir, versions), "files", "write_file");
    assert.equal(denied.length, 2);
    for (const d of denied) {
      assert.equal(d.decision, "deny");
      assert.equal(d.rule?.name, "no-writes");
      assert.match(String(d.reason), /the e2e agent may not change files/, "the rule's message is in the log");
      assert.equal(d.policy?.version, versions.get("e2e-files"));
    }
    assert.equal((await records()).filter((x) => x.type === "outcome" && x.tool === "write_file").length, 0);
    // The version `warden policy eval` reports for the same call is the one in the log.
    const evaluated = await policyEval([policy], {
      agent: { name: AGENT },
      user: { id: "alice", groups: ["dev", "e2e"] },
      request: { server: "files", tool: "write_file", arguments: { path: target, content: "pwned" } },
    });
    assert.equal(evaluated.policy, "e2e-files");
    assert.equal(evaluated.version, denied[0]?.policy?.version);
  });

  it("a hidden tool and a nonexistent tool get the identical answer", async () => {
    const hidden = await client.callTool({ name: "edit_file", arguments: { path: "x", edits: [] } });
    const missing = await client.callTool({ name: "edit_filez", arguments: { path: "x", edits: [] } });
    // Matches an allow rule's glob (read_*) but the server has no such tool.
    const globbed = await client.callTool({ name: "read_secrets", arguments: {} });
    const norm = (r: unknown, name: string) => JSON.stringify(r).replaceAll(name, "<tool>");
    assert.equal(norm(hidden, "edit_file"), norm(missing, "edit_filez"));
    assert.equal(norm(hidden, "edit_file"), norm(globbed, "read_secrets"));
    assert.equal(textOf(missing), 'Tool "edit_filez" is not available.');
    const log = await checkAuditLog(dataDir, versions);
    for (const tool of ["edit_file", "edit_filez", "read_secrets"]) {
      const [d] = decisionsFor(log, "files", tool);
      assert.equal(d?.decision, "deny", `${tool} recorded as denied`);
    }
  });

  it("the rule's arguments schema is enforced", async () => {
    const path = join(workspace, "notes.txt");
    const ok = await client.callTool({ name: "read_text_file", arguments: { path, head: 1 } });
    assert.equal(textOf(ok), "original line 1");
    const r = await client.callTool({ name: "read_text_file", arguments: { path, head: 50 } });
    assert.equal(r.isError, true);
    assert.match(textOf(r), /^Denied: /);
    assert.match(textOf(r), /head/);
    const [d] = decisionsFor(await checkAuditLog(dataDir, versions), "files", "read_text_file").filter(
      (x) => x.decision === "deny",
    );
    assert.equal(d?.rule?.name, "bounded-head");
    assert.equal(d?.policy?.version, versions.get("e2e-files"));
  });

  it("the tool's own inputSchema is enforced before forwarding", async () => {
    const r = await client.callTool({ name: "get_file_info", arguments: { path: 42 } });
    assert.equal(r.isError, true);
    assert.match(textOf(r), /inputSchema/);
    const r2 = await client.callTool({ name: "get_file_info", arguments: {} });
    assert.equal(r2.isError, true);
    assert.match(textOf(r2), /path/);
    const denied = decisionsFor(await checkAuditLog(dataDir, versions), "files", "get_file_info");
    assert.equal(denied.length, 2);
    for (const d of denied) {
      assert.equal(d.decision, "deny");
      assert.equal(d.detail?.stage, "input-schema");
    }
    assert.equal((await records()).filter((x) => x.type === "outcome" && x.tool === "get_file_info").length, 0);
  });

  it("a rate limit of 3 per minute denies the 4th call with the reason", async () => {
    for (let i = 0; i < 3; i++) {
      const r = await client.callTool({ name: "list_allowed_directories", arguments: {} });
      assert.notEqual(r.isError, true, textOf(r));
      assert.match(textOf(r), new RegExp(workspace));
    }
    const fourth = await client.callTool({ name: "list_allowed_directories", arguments: {} });
    assert.equal(fourth.isError, true);
    assert.match(textOf(fourth), /rate limit exceeded: 3 calls per 1m per agent/);
    const logged = decisionsFor(await checkAuditLog(dataDir, versions), "files", "list_allowed_directories");
    assert.deepEqual(
      logged.map((d) => d.decision),
      ["allow", "allow", "allow", "deny"],
    );
    assert.equal(logged[3]?.detail?.stage, "rate-limit");
    assert.equal(logged[3]?.rule?.name, "counted");
  });
});

describe("warden run: audit mode on server-filesystem", () => {
  const root = dir("stdio-audit");
  const workspace = join(root, "workspace");
  const dataDir = join(root, "data");
  const policy = join(root, "audit.yaml");
  let client: Client;
  let versions: Map<string, string>;

  before(async () => {
    mkdirSync(workspace, { recursive: true });
    writeFileSync(join(workspace, "notes.txt"), "audited\n");
    writeFileSync(
      policy,
      `kind: ToolPolicy
metadata:
  name: e2e-audit
spec:
  agent: ${AGENT}
  mcpServer: files
  mode: audit
  defaultAction: deny
  rules:
    - name: reads
      tools: ["read_*", list_directory]
      action: allow
`,
    );
    versions = await policyVersions([policy]);
    const w = wardenRun({
      policy,
      server: "files",
      dataDir,
      command: [process.execPath, SERVERS.filesystem, workspace],
    });
    client = new Client({ name: "e2e-audit", version: "1.0.0" });
    await client.connect(w.transport);
  });
  after(async () => {
    await client?.close();
    await verifyAudit(dataDir, { process: true });
  });

  it("a look-alike tool name is never forwarded, even in audit mode; the record says why", async () => {
    const r = await client.callTool({ name: "Read_Text_File", arguments: { path: join(workspace, "notes.txt") } });
    assert.equal(r.isError, true);
    assert.equal(textOf(r), 'Tool "Read_Text_File" is not available.');
    const [d] = decisionsFor(await checkAuditLog(dataDir, versions), "files", "Read_Text_File");
    assert.equal(d?.decision, "deny");
    assert.equal(d?.enforced, true);
    assert.equal(d?.detail?.stage, "unknown-tool");
    assert.equal(d?.detail?.policyEnforced, false);
    assert.match(String(d?.reason), /has no tool named exactly "Read_Text_File"/);
    const outcomes = (await auditRecords(dataDir)).filter((x) => x.type === "outcome" && x.tool === "Read_Text_File");
    assert.equal(outcomes.length, 0, "nothing was forwarded");
  });

  it("arguments the inputSchema forbids are forwarded, and recorded as the deny enforcement would have given", async () => {
    const path = join(workspace, "notes.txt");
    await client.callTool({ name: "read_text_file", arguments: { path, mode: "raw" } });
    const ok = await client.callTool({ name: "read_text_file", arguments: { path } });
    assert.match(textOf(ok), /audited/);
    const [bad, good] = decisionsFor(await checkAuditLog(dataDir, versions), "files", "read_text_file");
    assert.equal(bad?.decision, "deny");
    assert.equal(bad?.enforced, false);
    assert.equal(bad?.detail?.stage, "input-schema");
    assert.equal(bad?.detail?.policyDecision, "allow");
    assert.match(String(bad?.reason), /inputSchema/);
    assert.equal(good?.decision, "allow");
    assert.equal(good?.enforced, false);
    const outcome = await waitFor("the forwarded call's outcome", async () =>
      (await auditRecords(dataDir)).find((x) => x.type === "outcome" && x.detail?.decisionId === bad?.id),
    );
    assert.ok(outcome, "the call the schema forbids was forwarded (audit mode)");
  });
});

describe("warden run: server-everything passthrough", () => {
  const root = dir("stdio-everything");
  const dataDir = join(root, "data");
  const policy = join(root, "everything.yaml");
  let s: EverythingSession;
  let versions: Map<string, string>;

  before(async () => {
    writeFileSync(
      policy,
      `kind: ToolPolicy
metadata:
  name: e2e-everything
spec:
  agent: ${AGENT}
  mcpServer: everything
  rules:
    - name: all
      tools: ["*"]
      action: allow
`,
    );
    versions = await policyVersions([policy]);
    s = everythingClient({ roots: true, server: "everything", records: () => auditRecords(dataDir) });
    const w = wardenRun({
      policy,
      server: "everything",
      dataDir,
      command: [process.execPath, SERVERS.everything, "stdio"],
    });
    await s.client.connect(w.transport);
  });
  after(async () => {
    await s?.client.close();
    await verifyAudit(dataDir, { process: true });
  });

  it("the first tools/call right after initialize is forwarded", async () => {
    await checkFirstCall(s);
    await checkAuditLog(dataDir, versions);
  });

  for (const [name, check] of everythingChecks) {
    it(name, async () => {
      await check(s);
      await checkAuditLog(dataDir, versions);
    });
  }

  it("cancellation of a long call", async () => {
    await checkCancellation(s);
    await checkAuditLog(dataDir, versions);
  });
});

describe("warden run: server-memory", () => {
  const root = dir("stdio-memory");
  const dataDir = join(root, "data");
  const policy = join(root, "memory.yaml");
  let client: Client;
  let versions: Map<string, string>;

  before(async () => {
    writeFileSync(
      policy,
      `kind: ToolPolicy
metadata:
  name: e2e-memory
spec:
  agent: ${AGENT}
  mcpServer: memory
  rules:
    - tools: [create_entities, add_observations, read_graph, search_nodes, open_nodes]
      action: allow
`,
    );
    versions = await policyVersions([policy]);
    const w = wardenRun({
      policy,
      server: "memory",
      dataDir,
      command: [process.execPath, SERVERS.memory],
      env: { MEMORY_FILE_PATH: join(root, "memory.jsonl") },
    });
    client = new Client({ name: "e2e-memory", version: "1.0.0" });
    await client.connect(w.transport);
  });
  after(async () => {
    await client?.close();
    await verifyAudit(dataDir, { process: true });
  });

  it("a write and a read round-trip", async () => {
    const names = await toolNames(client);
    assert.ok(!names.includes("delete_entities"), names.join(", "));
    const w = await client.callTool({
      name: "create_entities",
      arguments: { entities: [{ name: "warden-e2e", entityType: "test", observations: ["written through warden"] }] },
    });
    assert.notEqual(w.isError, true, textOf(w));
    const r = await client.callTool({ name: "open_nodes", arguments: { names: ["warden-e2e"] } });
    assert.match(textOf(r), /written through warden/);
    const del = await client.callTool({ name: "delete_entities", arguments: { entityNames: ["warden-e2e"] } });
    assert.equal(del.isError, true);
    const again = await client.callTool({ name: "read_graph", arguments: {} });
    assert.match(textOf(again), /warden-e2e/);
    const log = await checkAuditLog(dataDir, versions);
    assert.equal(decisionsFor(log, "memory", "create_entities")[0]?.decision, "allow");
    assert.equal(decisionsFor(log, "memory", "delete_entities")[0]?.decision, "deny");
  });
});

describe("warden run: the upstream server crashes mid-call", () => {
  const root = dir("stdio-crash");
  const dataDir = join(root, "data");
  const policy = join(root, "everything.yaml");
  let w: Wrapped;
  let client: Client;
  let versions: Map<string, string>;
  let closed = false;

  before(async () => {
    writeFileSync(
      policy,
      `kind: ToolPolicy
metadata:
  name: e2e-crash
spec:
  agent: ${AGENT}
  mcpServer: everything
  rules:
    - tools: ["*"]
      action: allow
`,
    );
    versions = await policyVersions([policy]);
    w = wardenRun({ policy, server: "everything", dataDir, command: [process.execPath, SERVERS.everything, "stdio"] });
    client = new Client({ name: "e2e-crash", version: "1.0.0" });
    client.onclose = () => {
      closed = true;
    };
    await client.connect(w.transport);
  });
  after(async () => {
    await client?.close();
    await verifyAudit(dataDir, { process: true });
  });

  it("the caller gets an error; Warden says why on stderr and records it", async () => {
    const start = await waitFor("the start lifecycle record", async () =>
      (await auditRecords(dataDir)).find((r) => r.type === "lifecycle" && r.detail?.event === "start"),
    );
    const childPid = start.detail?.pid as number;
    assert.ok(Number.isInteger(childPid) && childPid !== w.transport.pid, `child pid ${childPid}`);
    assert.ok((await toolNames(client)).includes("trigger-long-running-operation"));
    const { call } = await longCallUnderWay(client);
    process.kill(childPid, "SIGKILL");
    await assert.rejects(call, /upstream everything is unavailable: the server process was killed by SIGKILL/);
    await waitFor("the message on stderr", () =>
      /the upstream server "everything" stopped \(the server process was killed by SIGKILL\); Warden is stopping too/.test(
        w.stderr(),
      )
        ? true
        : undefined,
    );
    const log = await waitFor("the upstream-exited record", async () => {
      const all = await auditRecords(dataDir);
      return all.some((r) => r.type === "lifecycle" && r.detail?.event === "upstream-exited") ? all : undefined;
    });
    const exited = log.find((r) => r.type === "lifecycle" && r.detail?.event === "upstream-exited");
    assert.match(String(exited?.reason), /killed by SIGKILL/);
    const outcome = log.find((r) => r.type === "outcome" && r.tool === "trigger-long-running-operation");
    assert.equal(outcome?.detail?.status, "upstream-error");
    await checkAuditLog(dataDir, versions);
  });

  it("Warden exits by itself, while the client still holds its stdin open", async () => {
    const pid = w.transport.pid as number;
    await waitFor("warden to exit", () => (closed && !alive(pid) ? true : undefined), 3000);
  });
});

describe("warden run: policy hot reload", () => {
  const root = dir("stdio-reload");
  const workspace = join(root, "workspace");
  const dataDir = join(root, "data");
  const policy = join(root, "files.yaml");
  const text = (extra: string) => `kind: ToolPolicy
metadata:
  name: e2e-reload
spec:
  agent: ${AGENT}
  mcpServer: files
  rules:
    - tools: [list_directory${extra}]
      action: allow
`;
  let w: Wrapped;
  let client: Client;
  let changes = 0;
  let v1: Map<string, string>;

  before(async () => {
    mkdirSync(workspace, { recursive: true });
    writeFileSync(policy, text(""));
    v1 = await policyVersions([policy]);
    w = wardenRun({ policy, server: "files", dataDir, command: [process.execPath, SERVERS.filesystem, workspace] });
    client = new Client({ name: "e2e-reload", version: "1.0.0" });
    client.setNotificationHandler(ToolListChangedNotificationSchema, () => {
      changes++;
    });
    await client.connect(w.transport);
  });
  after(async () => {
    await client?.close();
    await verifyAudit(dataDir, { process: true });
  });

  it("an edit allows a denied tool (tools/list_changed reaches the client); a broken edit keeps the last good policy", async () => {
    const newDir = join(workspace, "made-by-agent");
    assert.ok(!(await toolNames(client)).includes("create_directory"));
    const denied = await client.callTool({ name: "create_directory", arguments: { path: newDir } });
    assert.equal(denied.isError, true);
    assert.equal(existsSync(newDir), false);

    writeFileSync(policy, text(", create_directory"));
    const v2 = await policyVersions([policy]);
    await waitFor("tools/list_changed after the edit", () => (changes > 0 ? true : undefined));
    assert.ok((await toolNames(client)).includes("create_directory"));
    const allowed = await client.callTool({ name: "create_directory", arguments: { path: newDir } });
    assert.notEqual(allowed.isError, true, textOf(allowed));
    assert.equal(existsSync(newDir), true);

    writeFileSync(policy, `${text(", create_directory")}    nonsense: [\n`);
    await waitFor("the refused reload on stderr", () => (/policy change refused/.test(w.stderr()) ? true : undefined));
    const again = await client.callTool({ name: "create_directory", arguments: { path: join(newDir, "b") } });
    assert.notEqual(again.isError, true, "the last good policy stays in force");

    const log = await auditRecords(dataDir);
    const decisions = decisionsFor(log, "files", "create_directory");
    assert.deepEqual(
      decisions.map((d) => [d.decision, d.policy?.version]),
      [
        ["deny", v1.get("e2e-reload")],
        ["allow", v2.get("e2e-reload")],
        ["allow", v2.get("e2e-reload")],
      ],
    );
    const events = log.filter((r) => r.type === "lifecycle").map((r) => r.detail?.event);
    assert.ok(events.includes("policy-loaded") && events.includes("policy-refused"), events.join(", "));
    await verifyAudit(dataDir);
  });

  it("edits saved by rename (an editor's or config tool's atomic save) keep being picked up", async () => {
    const save = (t: string) => {
      writeFileSync(`${policy}.tmp`, t);
      renameSync(`${policy}.tmp`, policy);
    };
    const seen = changes;
    save(text(", create_directory, get_file_info"));
    await waitFor("the first atomic save", () => (changes > seen ? true : undefined), 3000);
    assert.ok((await toolNames(client)).includes("get_file_info"));
    save(text(", create_directory, get_file_info, directory_tree"));
    await waitFor("the second atomic save", () => (changes > seen + 1 ? true : undefined), 2000);
    assert.ok((await toolNames(client)).includes("directory_tree"));
    const versions = await policyVersions([policy]);
    await checkAuditLog(dataDir, versions, (r) => r.tool === "directory_tree");
  });
});

describe("warden run: a one-shot client writes its requests and closes stdin", () => {
  /** A JSON-RPC message as Warden writes it to stdout. */
  interface Message {
    id?: number | string | null;
    method?: string;
    result?: { content?: { type: string; text?: string }[]; isError?: boolean; serverInfo?: { name?: string } };
    error?: { code: number; message: string };
  }

  const initialize = (capabilities: Record<string, unknown> = {}) => ({
    jsonrpc: "2.0",
    id: 0,
    method: "initialize",
    params: { protocolVersion: "2025-06-18", capabilities, clientInfo: { name: "one-shot", version: "1.0.0" } },
  });
  const initialized = { jsonrpc: "2.0", method: "notifications/initialized" };
  const call = (id: number, name: string, args: Record<string, unknown>) => ({
    jsonrpc: "2.0",
    id,
    method: "tools/call",
    params: { name, arguments: args },
  });

  const runArgs = (dataDir: string, policy: string) => [
    CLI,
    "run",
    "--policy",
    policy,
    "--agent",
    AGENT,
    "--server",
    "everything",
    "--data-dir",
    dataDir,
    "--",
    process.execPath,
    SERVERS.everything,
    "stdio",
  ];
  const parse = (stdout: string) =>
    stdout
      .split("\n")
      .filter((l) => l.trim() !== "")
      .map((l) => JSON.parse(l) as Message);
  const line = (m: unknown) => `${JSON.stringify(m)}\n`;

  /**
   * `printf '...' | warden run ... -- server-everything stdio`: every message in one write, then
   * stdin closed. `finalNewline: false` leaves the last line unterminated, so it reaches Warden
   * only with the end of input.
   */
  async function oneShot(dataDir: string, policy: string, messages: unknown[], o: { finalNewline?: boolean } = {}) {
    const input = messages.map(line).join("");
    const r = await runProcess(process.execPath, runArgs(dataDir, policy), {
      input: o.finalNewline === false ? input.slice(0, -1) : input,
      env: childEnv(),
      timeoutMs: 60_000,
    });
    const answers = new Map(parse(r.stdout).flatMap((m) => (m.method === undefined ? [[m.id, m] as const] : [])));
    return { ...r, answers };
  }

  const POLICY = `kind: ToolPolicy
metadata:
  name: e2e-one-shot
spec:
  agent: ${AGENT}
  mcpServer: everything
  defaultAction: deny
  rules:
    - name: allowed
      tools: [echo, trigger-sampling-request]
      action: allow
    - name: no-sums
      tools: [get-sum]
      action: deny
      message: sums are not for this agent
`;

  it("every request is decided, recorded, forwarded if allowed and answered before Warden stops", async () => {
    const root = dir("stdio-eof");
    const dataDir = join(root, "data");
    const policy = join(root, "one-shot.yaml");
    writeFileSync(policy, POLICY);
    const versions = await policyVersions([policy]);
    const r = await oneShot(
      dataDir,
      policy,
      [initialize(), initialized, call(1, "echo", { message: "through warden" }), call(2, "get-sum", { a: 1, b: 2 })],
      { finalNewline: false },
    );
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.answers.get(0)?.result?.serverInfo?.name, "mcp-servers/everything", r.stdout);
    const echo = r.answers.get(1);
    assert.equal(echo?.error, undefined, r.stdout);
    assert.notEqual(echo?.result?.isError, true, r.stdout);
    assert.equal(textOf(echo?.result), "Echo: through warden");
    const sum = r.answers.get(2);
    assert.equal(sum?.result?.isError, true, r.stdout);
    assert.equal(textOf(sum?.result), 'Tool "get-sum" is not available.');

    const log = await checkAuditLog(dataDir, versions);
    const [allowed] = decisionsFor(log, "everything", "echo");
    assert.equal(allowed?.decision, "allow");
    const [denied] = decisionsFor(log, "everything", "get-sum");
    assert.equal(denied?.decision, "deny");
    assert.equal(denied?.rule?.name, "no-sums");
    const outcome = log.find((x) => x.type === "outcome" && x.tool === "echo");
    assert.equal(outcome?.detail?.status, "success");
    assert.equal(log.filter((x) => x.type === "outcome" && x.tool === "get-sum").length, 0);
    const stop = log.find((x) => x.type === "lifecycle" && x.detail?.event === "stop");
    assert.equal(stop?.reason, "the client closed the connection");
    for (const x of [allowed, denied, outcome])
      assert.ok((x?.seq ?? Infinity) < (stop?.seq ?? -1), `#${x?.seq} before stop`);
    await verifyAudit(dataDir, { process: true });
  });

  it("a request from the server to the client, which can no longer answer, is refused at once", {
    timeout: 60_000,
  }, async () => {
    const root = dir("stdio-eof-sampling");
    const dataDir = join(root, "data");
    const policy = join(root, "one-shot.yaml");
    writeFileSync(policy, POLICY);
    const child = spawn(process.execPath, runArgs(dataDir, policy), {
      env: childEnv(),
      stdio: ["pipe", "pipe", "pipe"],
    });
    try {
      let stdout = "";
      child.stdout.setEncoding("utf8").on("data", (d: string) => {
        stdout += d;
      });
      child.stderr.resume();
      const exited = new Promise<number | null>((resolve) => child.on("close", resolve));
      const answer = (id: number) => parse(stdout).find((m) => m.id === id && m.method === undefined);
      // The client declares sampling; server-everything offers its sampling tool once initialized
      // (and only if `initialized` comes after the answer to initialize).
      child.stdin.write(line(initialize({ sampling: {} })));
      await waitFor("the answer to initialize", () => answer(0));
      child.stdin.write(line(initialized));
      let listed = false;
      for (let id = 100; !listed; id++) {
        assert.ok(id < 200, `the sampling tool never appeared:\n${stdout}`);
        child.stdin.write(line({ jsonrpc: "2.0", id, method: "tools/list" }));
        const list = await waitFor(`tools/list #${id}`, () => answer(id));
        listed = JSON.stringify(list).includes('"trigger-sampling-request"');
        if (!listed) await new Promise((r) => setTimeout(r, 50));
      }
      // The call, and the end of input: the server's sampling/createMessage cannot be answered.
      child.stdin.end(line(call(1, "trigger-sampling-request", { prompt: "hello" })));
      const started = Date.now();
      assert.equal(await exited, 0);
      assert.ok(Date.now() - started < 30_000, "not held until a timeout");
      const result = answer(1);
      assert.equal(result?.result?.isError, true, stdout);
      assert.match(textOf(result?.result), /the client closed the connection/);
      const log = await auditRecords(dataDir);
      const outcome = log.find((x) => x.type === "outcome" && x.tool === "trigger-sampling-request");
      assert.equal(outcome?.detail?.status, "tool-error");
      const stop = log.find((x) => x.type === "lifecycle" && x.detail?.event === "stop");
      assert.ok((outcome?.seq ?? Number.POSITIVE_INFINITY) < (stop?.seq ?? -1), "the outcome comes before the stop");
      await verifyAudit(dataDir);
    } finally {
      child.kill("SIGKILL");
    }
  });
});

/** A JSON-RPC message as Warden writes it to stdout. */
interface RawMessage {
  id?: number | string | null;
  method?: string;
  result?: { content?: { type: string; text?: string }[]; isError?: boolean };
  error?: { code: number; message: string };
}

/** `warden run ... -- server-everything stdio` as a process, spoken to line by line (no SDK client). */
function rawRun(dataDir: string, policy: string, flags: string[] = [], env: Record<string, string> = {}) {
  const child: ChildProcessWithoutNullStreams = spawn(
    process.execPath,
    [
      CLI,
      "run",
      "--policy",
      policy,
      "--agent",
      AGENT,
      "--server",
      "everything",
      "--data-dir",
      dataDir,
      ...flags,
      "--",
      process.execPath,
      SERVERS.everything,
      "stdio",
    ],
    { env: childEnv(env), stdio: ["pipe", "pipe", "pipe"] },
  );
  let stdout = "";
  let stderr = "";
  child.stdout.setEncoding("utf8").on("data", (d: string) => {
    stdout += d;
  });
  child.stderr.setEncoding("utf8").on("data", (d: string) => {
    stderr += d;
  });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.on("exit", (code, signal) => resolve({ code, signal })),
  );
  const messages = () =>
    stdout
      .split("\n")
      .filter((l) => l.trim() !== "")
      .map((l) => JSON.parse(l) as RawMessage);
  const answer = (id: number) => messages().find((m) => m.id === id && m.method === undefined);
  const send = (m: Record<string, unknown>) => child.stdin.write(`${JSON.stringify({ jsonrpc: "2.0", ...m })}\n`);
  return {
    child,
    exited,
    answer,
    send,
    stdout: () => stdout,
    stderr: () => stderr,
    /** initialize, its answer, initialized. */
    async initialize() {
      send({
        id: 0,
        method: "initialize",
        params: { protocolVersion: "2025-06-18", capabilities: {}, clientInfo: { name: "raw", version: "1.0.0" } },
      });
      await waitFor("the answer to initialize", () => answer(0));
      send({ method: "notifications/initialized" });
    },
    /** tools/call; resolves with its answer. */
    call(id: number, name: string, args: Record<string, unknown>) {
      send({ id, method: "tools/call", params: { name, arguments: args } });
      return waitFor(`the answer to call #${id}`, () => answer(id), 20_000);
    },
  };
}

const EVERYTHING_POLICY = `kind: ToolPolicy
metadata:
  name: e2e-signals
spec:
  agent: ${AGENT}
  mcpServer: everything
  rules:
    - tools: ["*"]
      action: allow
`;

/** `warden audit verify` against the log's public key, pinned: every record must be covered by a signed checkpoint. */
async function verifyPinned(dataDir: string) {
  return cli(["audit", "verify", "--data-dir", dataDir, "--key", join(dataDir, "keys", "log.pub")]);
}

describe("warden run: stopped by a signal, as clients and terminals stop it", { timeout: 120_000 }, () => {
  function setup(name: string) {
    const root = dir(name);
    const policy = join(root, "everything.yaml");
    writeFileSync(policy, EVERYTHING_POLICY);
    return { dataDir: join(root, "data"), policy };
  }

  /** The next start of the same log, ended by closing stdin: it must find the log closed. */
  async function nextStart(dataDir: string, policy: string) {
    const next = rawRun(dataDir, policy);
    await next.initialize();
    next.child.stdin.end();
    const { code } = await next.exited;
    assert.equal(code, 0, next.stderr());
    return next.stderr();
  }

  for (const signal of ["SIGTERM", "SIGINT", "SIGHUP"] as const) {
    it(`${signal}: a stop record naming it, a final checkpoint, exit 0, and the next start finds the log closed`, async () => {
      const { dataDir, policy } = setup(`stdio-${signal}`);
      const w = rawRun(dataDir, policy);
      try {
        await w.initialize();
        const echo = await w.call(1, "echo", { message: "before the signal" });
        assert.equal(textOf(echo.result), "Echo: before the signal");
        const sent = Date.now();
        w.child.kill(signal);
        const { code, signal: killedBy } = await w.exited;
        assert.equal(killedBy, null, `Warden was killed by ${killedBy}:\n${w.stderr()}`);
        assert.equal(code, 0, w.stderr());
        assert.ok(Date.now() - sent < 10_000, `stopping took ${Date.now() - sent} ms`);
        assert.match(w.stderr(), new RegExp(`${signal}: stopping`));

        // Pinned key: fails on any record no signed checkpoint covers, so this proves the final checkpoint.
        const verified = await verifyPinned(dataDir);
        assert.equal(verified.code, 0, verified.stdout + verified.stderr);
        const log = await auditRecords(dataDir);
        const last = log.at(-1);
        assert.equal(last?.type, "lifecycle");
        assert.equal(last?.detail?.event, "stop");
        assert.equal(last?.detail?.signal, signal);
        assert.equal(last?.reason, `warden run stopped on ${signal}`);
        const outcome = log.find((r) => r.type === "outcome" && r.tool === "echo");
        assert.equal(outcome?.detail?.status, "success");
        const checkpoint = await cli(["audit", "checkpoint", "--data-dir", dataDir]);
        assert.equal(checkpoint.code, 0, checkpoint.stderr);
        assert.equal(checkpoint.stdout.split("\n")[1], String(log.length), "the latest checkpoint signs every record");

        const stderr = await nextStart(dataDir, policy);
        assert.doesNotMatch(stderr, /stopped without closing the log/);
        const after = await auditRecords(dataDir);
        assert.equal(after.filter((r) => r.detail?.event === "recovered").length, 0);
      } finally {
        w.child.kill("SIGKILL");
      }
    });
  }

  it("a call still running gets the grace period, then an error; its outcome (cancelled) comes before the stop", async () => {
    const { dataDir, policy } = setup("stdio-signal-grace");
    const w = rawRun(dataDir, policy);
    try {
      await w.initialize();
      await w.call(1, "echo", { message: "warm-up" });
      w.send({
        id: 2,
        method: "tools/call",
        params: { name: "trigger-long-running-operation", arguments: { duration: 60, steps: 60 } },
      });
      await waitFor("the long call's decision", async () =>
        (await auditRecords(dataDir)).find((r) => r.type === "decision" && r.tool === "trigger-long-running-operation"),
      );
      const sent = Date.now();
      w.child.kill("SIGTERM");
      const { code } = await w.exited;
      const took = Date.now() - sent;
      assert.equal(code, 0, w.stderr());
      assert.ok(took >= 4500 && took < 15_000, `stopped after ${took} ms (grace: 5 s)`);
      const answer = w.answer(2);
      assert.match(
        String(answer?.error?.message),
        /Warden is stopping \(SIGTERM\): the request did not finish within 5000 ms/,
      );
      const verified = await verifyPinned(dataDir);
      assert.equal(verified.code, 0, verified.stdout + verified.stderr);
      const log = await auditRecords(dataDir);
      const outcome = log.find((r) => r.type === "outcome" && r.tool === "trigger-long-running-operation");
      assert.equal(outcome?.detail?.status, "cancelled");
      const stop = log.at(-1);
      assert.equal(stop?.detail?.event, "stop");
      assert.equal(stop?.detail?.signal, "SIGTERM");
      assert.equal(stop?.detail?.cancelled, 1);
      assert.ok((outcome?.seq ?? Number.POSITIVE_INFINITY) < (stop?.seq ?? -1));
    } finally {
      w.child.kill("SIGKILL");
    }
  });

  it("a second signal exits at once (128 + its number); what was written stays verifiable and the next start recovers", async () => {
    const { dataDir, policy } = setup("stdio-signal-twice");
    const w = rawRun(dataDir, policy);
    try {
      await w.initialize();
      await w.call(1, "echo", { message: "durable" });
      const start = (await auditRecords(dataDir)).find((r) => r.detail?.event === "start");
      const serverPid = start?.detail?.pid as number;
      w.send({
        id: 2,
        method: "tools/call",
        params: { name: "trigger-long-running-operation", arguments: { duration: 60, steps: 60 } },
      });
      await waitFor("the long call's decision", async () =>
        (await auditRecords(dataDir)).find((r) => r.type === "decision" && r.tool === "trigger-long-running-operation"),
      );
      const sent = Date.now();
      w.child.kill("SIGTERM");
      await waitFor("the first signal's note", () => (/SIGTERM: stopping/.test(w.stderr()) ? true : undefined));
      w.child.kill("SIGINT");
      const { code } = await w.exited;
      assert.equal(code, 130, w.stderr());
      assert.ok(Date.now() - sent < 4000, `exited after ${Date.now() - sent} ms, not at once`);
      assert.match(w.stderr(), /SIGINT again: exiting now/);
      await waitFor("the server to be stopped too", () => (running(serverPid) ? undefined : true), 5000);
      // Everything written is durable and verifies (without a pinned key the unsigned tail is a warning) ...
      await verifyAudit(dataDir);
      const log = await auditRecords(dataDir);
      assert.ok(log.some((r) => r.type === "decision" && r.tool === "trigger-long-running-operation"));
      assert.equal(log.filter((r) => r.detail?.event === "stop").length, 0);
      // ... and the next start says the log was not closed, recovers it and signs it.
      const stderr = await nextStart(dataDir, policy);
      assert.match(stderr, /stopped without closing the log/);
      const verified = await verifyPinned(dataDir);
      assert.equal(verified.code, 0, verified.stdout + verified.stderr);
    } finally {
      w.child.kill("SIGKILL");
    }
  });
});

describe("warden run: audit log settings", { timeout: 60_000 }, () => {
  it("--audit-arguments mask stores the value at --audit-mask masked; the digest is of the full arguments", async () => {
    const root = dir("stdio-mask");
    const dataDir = join(root, "data");
    const policy = join(root, "everything.yaml");
    writeFileSync(policy, EVERYTHING_POLICY);
    const secret = "s3cret-e2e-value";
    const w = rawRun(dataDir, policy, ["--audit-arguments", "mask", "--audit-mask", "/message"]);
    try {
      await w.initialize();
      const echo = await w.call(1, "echo", { message: secret });
      assert.equal(textOf(echo.result), `Echo: ${secret}`, "the server got the real value");
      w.child.stdin.end();
      assert.equal((await w.exited).code, 0, w.stderr());
    } finally {
      w.child.kill("SIGKILL");
    }
    const [decision] = decisionsFor(await auditRecords(dataDir), "everything", "echo");
    assert.deepEqual(decision?.arguments, { message: "[redacted]" });
    const digest = `sha256:${createHash("sha256")
      .update(JSON.stringify({ message: secret }))
      .digest("hex")}`;
    assert.equal(decision?.argumentsDigest, digest);
    for (const f of readdirSync(dataDir, { recursive: true, withFileTypes: true })) {
      if (!f.isFile()) continue;
      const path = join(f.parentPath, f.name);
      assert.ok(!readFileSync(path).includes(secret), `${path} holds the masked value`);
    }
    const verified = await verifyPinned(dataDir);
    assert.equal(verified.code, 0, verified.stdout + verified.stderr);
  });

  it("WARDEN_AUDIT_ORIGIN names the log in its checkpoints, WARDEN_CHECKPOINT_EVERY_* set their interval", async () => {
    const root = dir("stdio-origin");
    const dataDir = join(root, "data");
    const policy = join(root, "everything.yaml");
    writeFileSync(policy, EVERYTHING_POLICY);
    const origin = "example.com/warden/everything";
    const w = rawRun(dataDir, policy, [], {
      WARDEN_AUDIT_ORIGIN: origin,
      WARDEN_CHECKPOINT_EVERY_RECORDS: "1",
      WARDEN_CHECKPOINT_EVERY_SECONDS: "0",
    });
    try {
      await w.initialize();
      await w.call(1, "echo", { message: "one" });
      await w.call(2, "echo", { message: "two" });
      w.child.stdin.end();
      assert.equal((await w.exited).code, 0, w.stderr());
    } finally {
      w.child.kill("SIGKILL");
    }
    const checkpoint = await cli(["audit", "checkpoint", "--data-dir", dataDir]);
    assert.equal(checkpoint.code, 0, checkpoint.stderr);
    assert.equal(checkpoint.stdout.split("\n")[0], origin);
    assert.match(checkpoint.stdout, new RegExp(`\n— ${origin} `), "signed under the origin's name");
    const verify = await cli([
      "audit",
      "verify",
      "--data-dir",
      dataDir,
      "--key",
      join(dataDir, "keys", "log.pub"),
      "--format",
      "json",
    ]);
    assert.equal(verify.code, 0, verify.stdout + verify.stderr);
    const result = JSON.parse(verify.stdout) as { records: number; checkpoints: number };
    // Every commit signed (the default, 1000 records or 10 s, signs only at close in a run this short).
    assert.ok(result.checkpoints >= 4, `${result.checkpoints} checkpoints for ${result.records} records`);

    // The origin is fixed when the log is created.
    const again = await runProcess(
      process.execPath,
      [
        CLI,
        "run",
        "--policy",
        policy,
        "--agent",
        AGENT,
        "--server",
        "everything",
        "--data-dir",
        dataDir,
        "--audit-origin",
        "other.example/log",
        "--",
        process.execPath,
        SERVERS.everything,
        "stdio",
      ],
      { env: childEnv(), timeoutMs: 30_000 },
    );
    assert.equal(again.code, 2, again.stderr);
    assert.match(
      again.stderr,
      /has origin "example\.com\/warden\/everything"; it cannot be reopened as "other\.example\/log"/,
    );
    assert.match(again.stderr, /drop --audit-origin, or use a new --data-dir/);
  });
});

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** alive(), but a zombie (exited, not yet reaped: its parent is gone) counts as stopped. */
function running(pid: number): boolean {
  if (!alive(pid)) return false;
  try {
    return !/^\d+ \(.*\) Z/.test(readFileSync(`/proc/${pid}/stat`, "utf8"));
  } catch {
    return true; // no /proc: alive() is all there is
  }
}
