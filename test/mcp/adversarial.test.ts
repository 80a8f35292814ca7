// The adversarial suite for the gateway's robustness list (issue 4): raw
// JSON-RPC frames, written byte for byte, against both transports — `warden run`
// as a real process on its stdin/stdout, and `warden serve` over raw HTTP.
//
// The upstream is test/fixtures/recording-server.mjs, a real stdio MCP server
// that appends every line it receives to a file before answering, in a lenient
// mode that would execute "Tools/Call", "Delete_Thing" or "delete_thing\u200b" as
// the real thing. Every test checks four things:
//   1. the client gets a deliberate JSON-RPC error or tool error;
//   2. the upstream received nothing it should not have (the recording);
//   3. the gateway is still alive and serves a normal call afterwards;
//   4. the audit log still verifies, with a deny record where one is due.
import assert from "node:assert/strict";
import { type ChildProcessWithoutNullStreams, spawn } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { connect, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { after, before, beforeEach, describe, it } from "node:test";
import { type RunningGateway, startGateway } from "../../src/cli/serve-command.js";
import { loadServeConfig } from "../../src/mcp/config.js";
import { runWarden } from "../helpers/cli.js";
import { checkAuditLog, policyVersions } from "../helpers/gateway.js";
import { runProcess } from "../helpers/process.js";

const ROOT = resolve(import.meta.dirname, "..", "..", "..");
const CLI = join(ROOT, "dist", "src", "cli", "main.js");
const FIXTURE = join(ROOT, "test", "fixtures", "recording-server.mjs");
/** A small message limit keeps the oversize cases fast (the default is 4 MiB). */
const LIMIT = 64 * 1024;
const AGENT = "tester";

// Bugs these tests found when first written, all fixed since: a non-finite number
// (1e400) refused without a record and blamed on the audit log; tools/call params
// besides name/arguments forwarded (a case-insensitive server read "Name" and ran the
// denied tool); a request id reused while in flight forwarded; an upstream answer over
// the size limit never answered; warden run not exiting when its server exits; HTTP
// answering 202 or 500 to invalid messages and batches; a batch with one id twice
// losing an answer; refusals after parsing leaving no audit record.

const POLICY = `kind: ToolPolicy
metadata:
  name: adversarial-srv
spec:
  agent: ${AGENT}
  mcpServer: srv
  defaultAction: deny
  rules:
    - name: reads
      tools: ["read_*", echo, slow, crash, garbage, oversize, oversize_result]
      action: allow
    - name: no-deletes
      tools: [delete_thing]
      action: deny
      message: deleting things is not allowed
---
kind: ToolPolicy
metadata:
  name: adversarial-other
spec:
  agent: ${AGENT}
  mcpServer: other
  defaultAction: deny
  rules:
    # Policy allows anything here: only the server's own tool list stands between a
    # look-alike name and the server.
    - name: anything
      tools: ["*"]
      action: allow
`;

// ---------------------------------------------------------------- messages

interface Rpc {
  jsonrpc?: unknown;
  id?: unknown;
  method?: unknown;
  params?: Record<string, unknown>;
  result?: { content?: { type: string; text?: string }[]; isError?: boolean; [k: string]: unknown };
  error?: { code: number; message: string };
  unparsable?: string;
}

let lastId = 1000;
const newId = () => ++lastId;
const req = (id: unknown, method: string, params?: unknown) =>
  JSON.stringify(params === undefined ? { jsonrpc: "2.0", id, method } : { jsonrpc: "2.0", id, method, params });
const note = (method: string, params?: unknown) =>
  JSON.stringify(params === undefined ? { jsonrpc: "2.0", method } : { jsonrpc: "2.0", method, params });
const call = (id: unknown, name: unknown, args: unknown = {}) => req(id, "tools/call", { name, arguments: args });
const INIT_PARAMS = {
  protocolVersion: "2025-06-18",
  capabilities: {},
  clientInfo: { name: "adversarial-test", version: "1.0.0" },
};

const textOf = (m: Rpc | undefined) =>
  (m?.result?.content ?? [])
    .filter((c) => c.type === "text")
    .map((c) => c.text ?? "")
    .join("\n");

function assertRpcError(m: Rpc | undefined, code: number, id?: unknown): void {
  assert.ok(m, "expected a JSON-RPC error response");
  assert.equal(m.jsonrpc, "2.0");
  assert.equal(m.result, undefined, `expected an error, got a result: ${JSON.stringify(m)}`);
  assert.equal(m.error?.code, code, `expected error ${code}, got ${JSON.stringify(m)}`);
  assert.equal(typeof m.error?.message, "string");
  if (id !== undefined) assert.deepEqual(m.id, id);
}

/** The answer for a hidden tool, a denied tool and a tool that does not exist: one and the same. */
function assertNotAvailable(m: Rpc | undefined, name: string): void {
  assert.ok(m?.result, `expected a tool error result for ${JSON.stringify(name)}, got ${JSON.stringify(m)}`);
  assert.equal(m.result.isError, true);
  assert.equal(textOf(m), `Tool "${name}" is not available.`);
}

// -------------------------------------------------------- the recording

const CALL_PARAMS = new Set(["name", "arguments", "_meta", "task"]);
const UPSTREAM_METHODS = new Set([
  "initialize",
  "notifications/initialized",
  "ping",
  "tools/list",
  "tools/call",
  "notifications/cancelled",
]);

/** What the recording server received, read back from its file. */
class Recording {
  private seen = 0;
  constructor(readonly file: string) {}

  all(): Rpc[] {
    if (!existsSync(this.file)) return [];
    return readFileSync(this.file, "utf8")
      .split("\n")
      .filter((l) => l !== "")
      .map((l) => {
        try {
          return JSON.parse(l) as Rpc;
        } catch {
          return { unparsable: l };
        }
      });
  }

  /** Messages received since the last take(). */
  take(): Rpc[] {
    const all = this.all();
    const fresh = all.slice(this.seen);
    this.seen = all.length;
    return fresh;
  }

  /**
   * Asserts that since the last take() the server received only well-formed
   * protocol messages Warden sends on its own (initialize, tools/list, ...) and
   * exactly the tools/call requests named, in that order, with no params beyond
   * the protocol's. Returns those calls.
   */
  expectCalls(names: string[], what = ""): Rpc[] {
    const got = this.take();
    for (const m of got) {
      assert.ok(
        typeof m === "object" && m !== null && !Array.isArray(m) && m.unparsable === undefined,
        `${what}: the server received a frame that is not one message: ${JSON.stringify(m)}`,
      );
      assert.equal(m.jsonrpc, "2.0", `${what}: ${JSON.stringify(m)}`);
      if (m.method !== undefined) {
        assert.ok(UPSTREAM_METHODS.has(String(m.method)), `${what}: the server received ${JSON.stringify(m)}`);
      }
    }
    const calls = got.filter((m) => m.method === "tools/call");
    assert.deepEqual(
      calls.map((c) => c.params?.name),
      names,
      `${what}: the tools/call requests the server received: ${JSON.stringify(calls)}`,
    );
    for (const c of calls) {
      const extra = Object.keys(c.params ?? {}).filter((k) => !CALL_PARAMS.has(k));
      assert.deepEqual(
        extra,
        [],
        `${what}: tools/call params beyond the protocol's reached the server: ${JSON.stringify(c)}`,
      );
    }
    return calls;
  }
}

// ------------------------------------------------------------ the audit log

interface AuditRecord {
  seq: number;
  type: string;
  server?: string | null;
  tool?: string | null;
  decision?: string | null;
  reason?: string | null;
  detail?: Record<string, unknown> | null;
}

/** `warden audit ...` in-process (the same code as the binary, without a process start per check). */
const wardenInProcess = (args: string[]) => runWarden(args);

/** `node dist/src/cli/main.js ARGS` as a real process. */
async function wardenProcess(args: string[]): Promise<{ code: number | null; out: string; err: string }> {
  const r = await runProcess(process.execPath, [CLI, ...args]);
  return { code: r.code, out: r.stdout, err: r.stderr };
}

class Audit {
  private seq = -1;
  private versions: Map<string, string> | undefined;
  constructor(readonly dataDir: string) {}

  /**
   * Verifies the whole log, checks that every policy decision names the version of the policy
   * that decided (policy.yaml beside the data directory), then returns the records appended
   * since the last call.
   */
  async fresh(): Promise<AuditRecord[]> {
    this.versions ??= await policyVersions([join(dirname(this.dataDir), "policy.yaml")]);
    await checkAuditLog(this.dataDir, this.versions);
    const q = await wardenInProcess([
      ...["audit", "query", "--data-dir", this.dataDir, "--format", "jsonl", "--limit", "1000000"],
    ]);
    assert.equal(q.code, 0, q.err);
    const records = q.out
      .split("\n")
      .filter((l) => l.trim() !== "")
      .map((l) => JSON.parse(l) as AuditRecord)
      .filter((r) => r.seq > this.seq);
    for (const r of records) this.seq = Math.max(this.seq, r.seq);
    return records;
  }

  /** The real binary: `node dist/src/cli/main.js audit verify --data-dir D` exits 0. */
  async verifyWithBinary(): Promise<void> {
    const r = await wardenProcess(["audit", "verify", "--data-dir", this.dataDir]);
    assert.equal(r.code, 0, `warden audit verify failed:\n${r.out}\n${r.err}`);
  }
}

const denials = (records: AuditRecord[]) => records.filter((r) => r.type === "decision" && r.decision === "deny");
const protocolDenials = (records: AuditRecord[]) => denials(records).filter((r) => r.detail?.stage === "protocol");
const toolDenials = (records: AuditRecord[], tool: string) => denials(records).filter((r) => r.tool === tool);

// ------------------------------------------------------------------ helpers

function tempDir(): string {
  return mkdtempSync(join(tmpdir(), "warden-adversarial-"));
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function within<T>(ms: number, what: string, p: Promise<T>): Promise<T> {
  p.catch(() => {}); // if it loses the race and fails later (e.g. the gateway closed), nobody is waiting
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      p,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what}`)), ms);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

// ---------------------------------------------------------- shared tables

/** Text that is not JSON; some of it looks like a call. */
const MALFORMED = [
  '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"delete_thing"}',
  '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"delete_thing"}}}',
  "{'jsonrpc':'2.0','id':1,'method':'tools/call','params':{'name':'delete_thing'}}",
  '{"jsonrpc":"2.0","id":1,"method":"tools/call",}',
  'tools/call {"name":"delete_thing"}',
  '{"jsonrpc":"2.0","id":NaN,"method":"ping"}',
  '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"delete_thing"}} {"jsonrpc":"2.0","id":2,"method":"ping"}',
  "\u0000\u0001\u0002",
];

/** JSON that is not a usable request: each must get error -32600, with the id when it has a usable one. */
interface InvalidCase {
  frame: string;
  /** The id the error must carry. */
  id: unknown;
  why: string;
  /** It has a string method and a string or numeric id: the HTTP transport routes it as a request. */
  request: boolean;
}

function invalidRequests(): InvalidCase[] {
  const d = { name: "delete_thing", arguments: {} };
  const r = { name: "read_thing", arguments: {} };
  const cases: InvalidCase[] = [];
  const add = (why: string, o: unknown, id: unknown) => {
    const m = o as { method?: unknown; id?: unknown } | null;
    const request =
      typeof m === "object" &&
      m !== null &&
      typeof m.method === "string" &&
      (typeof m.id === "string" || typeof m.id === "number");
    cases.push({ frame: JSON.stringify(o), id, why, request });
  };
  add("a number", 5, null);
  add("a string", "tools/call", null);
  add("null", null, null);
  add("a boolean", true, null);
  for (const [why, v] of [
    ["jsonrpc 1.0", "1.0"],
    ["jsonrpc 2.0 as a number", 2.0],
    ["jsonrpc 2", "2"],
  ] as const) {
    const id = newId();
    add(why, { jsonrpc: v, id, method: "tools/call", params: r }, id);
  }
  let id = newId();
  add("no jsonrpc", { id, method: "tools/call", params: r }, id);
  id = newId();
  add("no method", { jsonrpc: "2.0", id, params: d }, id);
  for (const m of [5, null, ["tools/call"], { name: "tools/call" }, "", true]) {
    id = newId();
    add(`method ${JSON.stringify(m)}`, { jsonrpc: "2.0", id, method: m, params: r }, id);
  }
  for (const p of [["read_thing"], "read_thing", 5, null, true]) {
    id = newId();
    add(`params ${JSON.stringify(p)}`, { jsonrpc: "2.0", id, method: "tools/call", params: p }, id);
  }
  for (const bad of [{ a: 1 }, [1], true, false, null]) {
    add(`id ${JSON.stringify(bad)}`, { jsonrpc: "2.0", id: bad, method: "tools/call", params: r }, null);
  }
  // 1e400 parses to Infinity: not a usable id (and JSON.stringify would print it as null).
  cases.push({
    frame: `{"jsonrpc":"2.0","id":1e400,"method":"tools/call","params":{"name":"read_thing","arguments":{}}}`,
    id: null,
    why: "id 1e400",
    request: true,
  });
  cases.push({
    frame: `{"jsonrpc":"2.0","id":-1e400,"method":"ping"}`,
    id: null,
    why: "id -1e400",
    request: true,
  });
  return cases;
}

/** Frames with a key twice (raw text: JSON.stringify cannot write them). */
function duplicateKeyFrames(): { frame: string; why: string }[] {
  const i = () => newId();
  return [
    {
      why: "two names",
      frame: `{"jsonrpc":"2.0","id":${i()},"method":"tools/call","params":{"name":"read_thing","name":"delete_thing","arguments":{}}}`,
    },
    {
      why: "two names, denied first",
      frame: `{"jsonrpc":"2.0","id":${i()},"method":"tools/call","params":{"name":"delete_thing","name":"read_thing","arguments":{}}}`,
    },
    {
      why: "two methods",
      frame: `{"jsonrpc":"2.0","id":${i()},"method":"tools/list","method":"tools/call","params":{"name":"delete_thing","arguments":{}}}`,
    },
    {
      why: "two ids",
      frame: `{"jsonrpc":"2.0","id":${i()},"id":"other","method":"tools/call","params":{"name":"read_thing","arguments":{}}}`,
    },
    {
      why: "two params",
      frame: `{"jsonrpc":"2.0","id":${i()},"method":"tools/call","params":{"name":"read_thing"},"params":{"name":"delete_thing"}}`,
    },
    {
      why: "two jsonrpc",
      frame: `{"jsonrpc":"1.0","jsonrpc":"2.0","id":${i()},"method":"tools/call","params":{"name":"read_thing","arguments":{}}}`,
    },
    {
      why: "two arguments",
      frame: `{"jsonrpc":"2.0","id":${i()},"method":"tools/call","params":{"name":"echo","arguments":{"p":"/ok"},"arguments":{"p":"/etc"}}}`,
    },
    {
      why: "duplicate inside arguments",
      frame: `{"jsonrpc":"2.0","id":${i()},"method":"tools/call","params":{"name":"echo","arguments":{"path":"/ok","path":"/etc/passwd"}}}`,
    },
    {
      why: "duplicate deep inside arguments",
      frame: `{"jsonrpc":"2.0","id":${i()},"method":"tools/call","params":{"name":"echo","arguments":{"a":[1,{"b":{"c":1,"d":[],"c":2}}]}}}`,
    },
    {
      why: 'duplicate written "na\\u006de"',
      frame: `{"jsonrpc":"2.0","id":${i()},"method":"tools/call","params":{"name":"read_thing","na\\u006de":"delete_thing","arguments":{}}}`,
    },
    {
      why: 'duplicate written "\\u006e\\u0061\\u006d\\u0065"',
      frame: `{"jsonrpc":"2.0","id":${i()},"method":"tools/call","params":{"\\u006e\\u0061\\u006d\\u0065":"delete_thing","name":"read_thing","arguments":{}}}`,
    },
    {
      why: 'duplicate method written "\\u006dethod"',
      frame: `{"jsonrpc":"2.0","id":${i()},"method":"ping","\\u006dethod":"tools/call","params":{"name":"delete_thing","arguments":{}}}`,
    },
    {
      why: "duplicate written with \\/ escapes",
      frame: `{"jsonrpc":"2.0","id":${i()},"method":"tools/call","params":{"name":"echo","arguments":{"a/b":1,"a\\/b":2}}}`,
    },
    {
      why: "duplicate key after a nested array",
      frame: `{"jsonrpc":"2.0","id":${i()},"method":"tools/call","params":{"name":"echo","arguments":{"x":[{"y":"]"}],"x":2}}}`,
    },
    {
      why: "duplicate key after strings with escaped quotes and braces",
      frame: `{"jsonrpc":"2.0","id":${i()},"method":"tools/call","params":{"name":"echo","arguments":{"q":"\\"}{,\\\\","q":1}}}`,
    },
  ];
}

const METHOD_LOOKALIKES = [
  "Tools/Call",
  "TOOLS/CALL",
  "tools/Call",
  "tools/call ",
  " tools/call",
  "tools/call\t",
  "tools/call\n",
  "tools∕call", // U+2215 DIVISION SLASH
  "tools⁄call", // U+2044 FRACTION SLASH
  "tools／call", // U+FF0F FULLWIDTH SOLIDUS
  "ｔｏｏｌｓ/ｃａｌｌ", // fullwidth letters (NFKC folds them to ASCII)
  "tools/\u200bcall",
  "tools/call\u200b",
  "\ufefftools/call",
  "tools/call\u0000",
  "tools/cal\u006c\u0301",
  "tооls/call", // Cyrillic о
  "tools//call",
  "tools/call/",
  "tools.call",
  "tools_call",
];

/** Look-alikes of the allowed read_thing and the denied delete_thing. */
const TOOL_LOOKALIKES = [
  "Read_Thing",
  "READ_THING",
  "read_Thing",
  "read_thing ",
  " read_thing",
  "read_thing\t",
  "read_thing\n",
  "read_thing\u0000",
  "read_thing\u200b",
  "read\u200b_thing",
  "\ufeffread_thing",
  "read_thing\u00ad",
  "reаd_thing", // Cyrillic а
  "ｒｅａｄ_thing", // fullwidth
  "read＿thing", // fullwidth low line
  "Delete_Thing",
  "DELETE_THING",
  "delete_thing ",
  "delete_thing\u0000",
  "delete_thing\u200b",
  "delete\u2060_thing",
  "dеlete_thing", // Cyrillic е
  "ｄｅｌｅｔｅ_thing",
  "no_such_tool",
];

const BAD_CALL_PARAMS: { why: string; params: unknown }[] = [
  { why: "no params", params: undefined },
  { why: "no name", params: { arguments: {} } },
  { why: "empty name", params: { name: "", arguments: {} } },
  { why: "name null", params: { name: null, arguments: {} } },
  { why: "numeric name", params: { name: 5, arguments: {} } },
  { why: "name as an array", params: { name: ["read_thing"], arguments: {} } },
  { why: "name as an object", params: { name: { name: "read_thing" }, arguments: {} } },
  { why: "name true", params: { name: true, arguments: {} } },
  { why: "arguments as an array", params: { name: "read_thing", arguments: ["x"] } },
  { why: "arguments as a string", params: { name: "read_thing", arguments: "{}" } },
  { why: "arguments as a number", params: { name: "read_thing", arguments: 1 } },
  { why: "arguments true", params: { name: "read_thing", arguments: true } },
];

// =====================================================================
// warden run: a real process, raw newline-delimited JSON on its stdio
// =====================================================================

/** `warden run` as a process; reads its stdout as lines of JSON. */
class WardenRun {
  readonly child: ChildProcessWithoutNullStreams;
  /** Messages Warden wrote that no test took yet. */
  readonly inbox: (Rpc | Rpc[])[] = [];
  stderr = "";
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  private readonly waiters = new Set<() => void>();
  private buffer = "";

  constructor(args: string[], env: Record<string, string>) {
    this.child = spawn(process.execPath, [CLI, "run", ...args], {
      stdio: ["pipe", "pipe", "pipe"],
      env: { ...process.env, ...env },
    });
    this.exited = new Promise((done) => this.child.on("exit", (code, signal) => done({ code, signal })));
    this.child.stdin.on("error", () => {});
    this.child.stderr.setEncoding("utf8").on("data", (d: string) => {
      this.stderr += d;
    });
    this.child.stdout.setEncoding("utf8").on("data", (d: string) => {
      this.buffer += d;
      for (let nl = this.buffer.indexOf("\n"); nl >= 0; nl = this.buffer.indexOf("\n")) {
        const line = this.buffer.slice(0, nl);
        this.buffer = this.buffer.slice(nl + 1);
        let m: Rpc | Rpc[];
        try {
          m = JSON.parse(line) as Rpc | Rpc[];
        } catch {
          m = { unparsable: line };
        }
        // A batch answer is kept whole (tests look at it as one frame).
        this.inbox.push(m);
        for (const w of this.waiters) w();
      }
    });
  }

  /** Writes frames, each followed by a newline. */
  send(...frames: string[]): void {
    this.child.stdin.write(frames.map((f) => `${f}\n`).join(""));
  }

  write(text: string | Buffer): Promise<void> {
    return new Promise((done) => this.child.stdin.write(text, () => done()));
  }

  /** Takes the first message (or batch) that matches, waiting for it if need be. */
  private takeFrame(match: (m: Rpc | Rpc[]) => boolean, what: string, timeoutMs: number): Promise<Rpc | Rpc[]> {
    return new Promise((done, fail) => {
      const look = () => {
        const i = this.inbox.findIndex(match);
        if (i < 0) return false;
        const [m] = this.inbox.splice(i, 1);
        this.waiters.delete(check);
        clearTimeout(timer);
        done(m as Rpc | Rpc[]);
        return true;
      };
      const check = () => void look();
      const timer = setTimeout(() => {
        this.waiters.delete(check);
        fail(new Error(`no message from warden run: ${what}\ninbox: ${JSON.stringify(this.inbox)}\n${this.stderr}`));
      }, timeoutMs);
      if (!look()) this.waiters.add(check);
    });
  }

  /** The first single message that matches. */
  async take(match: (m: Rpc) => boolean, what: string, timeoutMs = 5000): Promise<Rpc> {
    return (await this.takeFrame((m) => !Array.isArray(m) && match(m), what, timeoutMs)) as Rpc;
  }

  /** The first batch answer. */
  async takeBatch(what: string, timeoutMs = 5000): Promise<Rpc[]> {
    return (await this.takeFrame((m) => Array.isArray(m), what, timeoutMs)) as Rpc[];
  }

  response(id: unknown, timeoutMs = 5000): Promise<Rpc> {
    return this.take(
      (m) => m.method === undefined && JSON.stringify(m.id) === JSON.stringify(id),
      `the response to id ${JSON.stringify(id)}`,
      timeoutMs,
    );
  }

  /** The next error response with id null (parse errors, unusable messages). */
  nullIdError(): Promise<Rpc> {
    return this.take((m) => m.id === null && m.error !== undefined, "an error with id null");
  }

  async request(frame: string, id: unknown): Promise<Rpc> {
    this.send(frame);
    return this.response(id);
  }

  /** Waits until Warden's stderr (a separate pipe from its answers) says what the test expects. */
  async stderrMatches(re: RegExp, timeoutMs = 3000): Promise<void> {
    for (const deadline = Date.now() + timeoutMs; !re.test(this.stderr); await sleep(10)) {
      assert.ok(Date.now() < deadline, `warden run's stderr does not match ${re}:\n${this.stderr}`);
    }
  }

  /** Closes stdin (the client goes away) and waits for the exit; kills it if it hangs. */
  async close(): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
    this.child.stdin.end();
    const timer = setTimeout(() => this.child.kill("SIGKILL"), 10_000);
    const r = await this.exited;
    clearTimeout(timer);
    return r;
  }
}

function runArgs(dir: string, policy: string, extra: string[] = []): string[] {
  return [
    ...["--policy", policy, "--agent", AGENT, "--server", "srv", "--data-dir", join(dir, "data")],
    ...["--max-message-bytes", String(LIMIT), "--no-watch", ...extra],
    ...["--", process.execPath, FIXTURE],
  ];
}

async function startRun(dir: string, record: string): Promise<WardenRun> {
  const policy = join(dir, "policy.yaml");
  writeFileSync(policy, POLICY);
  const peer = new WardenRun(runArgs(dir, policy), { RECORD_FILE: record, RECORDING_LENIENT: "1" });
  const init = await peer.request(req(0, "initialize", INIT_PARAMS), 0);
  assert.equal((init.result as { serverInfo?: { name?: string } }).serverInfo?.name, "recording-server");
  peer.send(note("notifications/initialized"));
  return peer;
}

describe("warden run: raw JSON-RPC frames on stdin/stdout", () => {
  let dir: string;
  let rec: Recording;
  let peer: WardenRun;
  let audit: Audit;

  before(async () => {
    dir = tempDir();
    rec = new Recording(join(dir, "received.jsonl"));
    audit = new Audit(join(dir, "data"));
    peer = await startRun(dir, rec.file);
  });

  after(async () => {
    const exit = await peer.close();
    assert.deepEqual(exit, { code: 0, signal: null }, peer.stderr);
    await audit.verifyWithBinary();
    const records = await audit.fresh();
    assert.ok(records.some((r) => r.type === "lifecycle" && r.detail?.event === "stop"));
    rmSync(dir, { recursive: true, force: true });
  });

  beforeEach(async () => {
    // Each test starts from a clean slate, even after a failed one.
    peer.inbox.length = 0;
    rec.take();
    await audit.fresh();
  });

  /**
   * (2) the server received exactly `calls` and then the normal call, (3) the
   * gateway answers a normal call and wrote nothing else, (4) the log verifies.
   * Returns the records appended during the test.
   */
  async function settle(calls: string[] = [], what = ""): Promise<AuditRecord[]> {
    const id = newId();
    const r = await peer.request(call(id, "read_thing"), id);
    assert.equal(textOf(r), "the thing", `the gateway must still serve a normal call: ${JSON.stringify(r)}`);
    rec.expectCalls([...calls, "read_thing"], what);
    assert.deepEqual(peer.inbox, [], "Warden wrote messages nobody asked for");
    assert.equal(peer.child.exitCode, null, "warden run must still be running");
    return audit.fresh();
  }

  it("malformed JSON: -32700 with id null, a deny record per frame, nothing forwarded", async () => {
    for (const frame of MALFORMED) {
      peer.send(frame);
      const r = await peer.nullIdError();
      assertRpcError(r, -32700, null);
    }
    const records = await settle([], "malformed");
    assert.equal(protocolDenials(records).length, MALFORMED.length);
  });

  it("JSON that is not a request (not an object, wrong version, bad method, params or id): -32600", async () => {
    const cases = invalidRequests();
    for (const c of cases) {
      peer.send(c.frame);
      const r =
        c.id === null ? await peer.nullIdError() : await peer.take((m) => m.id === c.id, c.why).catch(() => undefined);
      assertRpcError(r, -32600, c.id);
    }
    await settle([], "invalid requests");
  });

  it("huge numbers: ids and arguments that do not survive a round trip are refused, precise ones pass", async () => {
    // An id that JSON.parse cannot hold exactly would be answered under another id: refused (id null).
    peer.send(`{"jsonrpc":"2.0","id":123456789012345678901234567890,"method":"ping"}`);
    assertRpcError(await peer.nullIdError(), -32600, null);
    // A big but finite argument is forwarded as the very number policy decided on.
    let id = newId();
    peer.send(`{"jsonrpc":"2.0","id":${id},"method":"tools/call","params":{"name":"echo","arguments":{"n":1e308}}}`);
    assert.equal(textOf(await peer.response(id)), '{"n":1e+308}');
    rec.expectCalls(["echo"], "finite number");
    await audit.fresh();
    // 1e400 is Infinity to JSON.parse and null to JSON.stringify: what policy saw is not what would be sent.
    for (const n of ["1e400", "-1e400"]) {
      id = newId();
      peer.send(`{"jsonrpc":"2.0","id":${id},"method":"tools/call","params":{"name":"echo","arguments":{"n":${n}}}}`);
      const r = await peer.response(id);
      assert.ok(r.error !== undefined || r.result?.isError === true, `${n} must be refused: ${JSON.stringify(r)}`);
    }
    await settle([], "non-finite numbers");
  });

  it("a call refused for a non-finite number has a deny record", async () => {
    const id = newId();
    peer.send(`{"jsonrpc":"2.0","id":${id},"method":"tools/call","params":{"name":"echo","arguments":{"n":1e400}}}`);
    const r = await peer.response(id);
    assert.ok(r.error !== undefined || r.result?.isError === true, JSON.stringify(r));
    const records = await settle([], "non-finite number");
    assert.doesNotMatch(textOf(r), /audit log is unavailable/, "the log is fine: the reason must name the number");
    assert.equal(toolDenials(records, "echo").length, 1, "the refused call has a deny record");
  });

  it("a batch with allowed, denied, look-alike and invalid entries: each decided on its own", async () => {
    const [a, b, c, d, e] = [newId(), newId(), newId(), newId(), newId()];
    peer.send(
      `[${[
        call(a, "read_thing"),
        call(b, "delete_thing"),
        call(c, "Delete_Thing"),
        req(d, "Tools/Call", { name: "delete_thing", arguments: {} }),
        call(e, "echo", { batch: true }),
        "5",
        note("tools/call", { name: "delete_thing", arguments: {} }),
      ].join(",")}]`,
    );
    const batch = await peer.takeBatch("the batch answer");
    const byId = (id: unknown) => batch.find((m) => m.id === id);
    assert.equal(batch.length, 6, `one answer per request, none for the notification: ${JSON.stringify(batch)}`);
    assert.equal(textOf(byId(a)), "the thing");
    assertNotAvailable(byId(b), "delete_thing");
    assertNotAvailable(byId(c), "Delete_Thing");
    assertRpcError(byId(d), -32601, d);
    assert.equal(textOf(byId(e)), '{"batch":true}');
    assertRpcError(
      batch.find((m) => m.id === null),
      -32600,
      null,
    );
    const records = await settle(["read_thing", "echo"], "mixed batch");
    assert.equal(toolDenials(records, "delete_thing").length, 1);
    assert.equal(toolDenials(records, "Delete_Thing").length, 1);
  });

  it("an empty batch, nested arrays, and a batch of notifications", async () => {
    peer.send("[]");
    assertRpcError(await peer.nullIdError(), -32600, null);
    peer.send("[[]]");
    const nestedEmpty = await peer.takeBatch("the answer to [[]]");
    assert.equal(nestedEmpty.length, 1);
    assertRpcError(nestedEmpty[0], -32600, null);
    const id = newId();
    peer.send(`[[${call(id, "read_thing")}],[[${call(newId(), "delete_thing")}]]]`);
    const nested = await peer.takeBatch("the answer to nested arrays");
    assert.equal(nested.length, 2);
    for (const m of nested) assertRpcError(m, -32600, null);
    // Notifications only: nothing to answer, and none of these goes upstream.
    peer.send(
      `[${[
        note("notifications/cancelled", { requestId: 987654321 }),
        note("notifications/cancelled", { requestId: "no-such-request" }),
        note("tools/call", { name: "delete_thing", arguments: {} }),
        note("tools/call", { name: "read_thing", arguments: {} }),
        note("Notifications/Initialized"),
        note("notifications/tools/call"),
      ].join(",")}]`,
    );
    const records = await settle([], "batches");
    // The empty batch, the one entry of [[]], and the two nested arrays: each refused with a record.
    assert.equal(protocolDenials(records).length, 4, "every refused frame or entry has a record");
  });

  it("messages over the size limit are refused unread; a message at the limit is served", async () => {
    // A valid call to the denied tool, padded with whitespace past the limit.
    const denied = call(newId(), "delete_thing");
    peer.send(denied + " ".repeat(LIMIT + 1 - denied.length));
    assertRpcError(await peer.nullIdError(), -32002, null);
    // Multi-byte characters: under the limit in characters, over it in bytes.
    const id = newId();
    const wide = call(id, "echo", { pad: "" });
    peer.send(call(id, "echo", { pad: "é".repeat((LIMIT - wide.length) / 2 + 1) }));
    assertRpcError(await peer.nullIdError(), -32002, null);
    // Exactly at the limit: served.
    const atLimit = newId();
    const base = call(atLimit, "echo", { pad: "" });
    peer.send(call(atLimit, "echo", { pad: "a".repeat(LIMIT - base.length) }));
    const served = await peer.response(atLimit);
    assert.ok(textOf(served).startsWith('{"pad":"aaa'), JSON.stringify(served).slice(0, 200));
    const records = await settle(["echo"], "size limit");
    assert.equal(protocolDenials(records).length, 2);
  });

  it("a huge line written in pieces without a newline: skipped to its newline, then the stream resynchronises", async () => {
    // The tail of the huge line holds a complete call: it is part of the oversized line and must not run.
    const hidden = call(newId(), "read_thing");
    for (let i = 0; i < 8; i++) {
      await peer.write(`${"x".repeat(LIMIT / 4)}`);
      await sleep(5);
    }
    await peer.write(` ${hidden}`);
    const next = newId();
    await peer.write(`\n${call(next, "echo", { after: "resync" })}\n`);
    assertRpcError(await peer.nullIdError(), -32002, null);
    assert.equal(textOf(await peer.response(next)), '{"after":"resync"}');
    const records = await settle(["echo"], "resync");
    assert.equal(protocolDenials(records).length, 1);
  });

  it("duplicate JSON keys, anywhere and however escaped: -32600, a deny record, nothing forwarded", async () => {
    const frames = duplicateKeyFrames();
    for (const f of frames) {
      peer.send(f.frame);
      const r = await peer.take((m) => m.error !== undefined, f.why);
      assertRpcError(r, -32600);
      assert.match(r.error?.message ?? "", /duplicate key/, f.why);
    }
    const records = await settle([], "duplicate keys");
    assert.equal(protocolDenials(records).length, frames.length);
  });

  it("method names that differ by case, whitespace, look-alikes or invisible characters: -32601, never forwarded", async () => {
    for (const method of METHOD_LOOKALIKES) {
      for (const name of ["read_thing", "delete_thing"]) {
        const id = newId();
        const r = await peer.request(req(id, method, { name, arguments: {} }), id);
        assertRpcError(r, -32601, id);
      }
      // As a notification too: dropped.
      peer.send(note(method, { name: "delete_thing", arguments: {} }));
    }
    await settle([], "method look-alikes");
  });

  it("refused look-alike methods leave a deny record", async () => {
    const id = newId();
    assertRpcError(
      await peer.request(req(id, "tools/call\u200b", { name: "delete_thing", arguments: {} }), id),
      -32601,
    );
    const records = await settle([], "method look-alike record");
    assert.equal(denials(records).length, 1, "a refused tools/call look-alike is recorded as a deny");
  });

  it("tool names that differ by case, whitespace, look-alikes, NUL or zero-width characters: not available, never forwarded", async () => {
    for (const name of TOOL_LOOKALIKES) {
      const id = newId();
      assertNotAvailable(await peer.request(call(id, name), id), name);
    }
    const records = await settle([], "tool look-alikes");
    for (const name of TOOL_LOOKALIKES) assert.equal(toolDenials(records, name).length, 1, JSON.stringify(name));
  });

  it("params keys that differ from name/arguments only by case are not forwarded", async () => {
    // A case-insensitive binder (the fixture's lenient mode, like .NET's) reads the last
    // of "name"/"Name"; Warden decided on "name".
    const id = newId();
    peer.send(
      JSON.stringify({
        jsonrpc: "2.0",
        id,
        method: "tools/call",
        params: { name: "read_thing", arguments: {}, Name: "delete_thing", NAME: "delete_thing" },
      }),
    );
    const r = await peer.response(id);
    assert.notEqual(textOf(r), "DELETED the thing", "the denied tool ran");
    const got = rec.take().filter((m) => m.method === "tools/call");
    for (const c of got) {
      assert.deepEqual(Object.keys(c.params ?? {}).sort(), ["arguments", "name"], JSON.stringify(c));
    }
    await settle([], "params keys");
  });

  it("calls with no name, an empty or non-string name, or arguments that are not an object: -32602", async () => {
    for (const c of BAD_CALL_PARAMS) {
      const id = newId();
      const r = await peer.request(req(id, "tools/call", c.params), id);
      assertRpcError(r, -32602, id);
    }
    await settle([], "bad call params");
  });

  it("a request id reused while the first is in flight is refused, not forwarded", async () => {
    const id = newId();
    peer.send(call(id, "slow", { ms: 300 }));
    await sleep(50);
    peer.send(call(id, "read_thing"));
    const answers: Rpc[] = [];
    const deadline = Date.now() + 800;
    while (Date.now() < deadline) {
      const m = await peer.response(id, Math.max(1, deadline - Date.now())).catch(() => undefined);
      if (m) answers.push(m);
    }
    assert.equal(answers.length, 2, `two answers: ${JSON.stringify(answers)}`);
    assert.ok(
      answers.some((m) => textOf(m) === "slept 300"),
      JSON.stringify(answers),
    );
    const refused = answers.find((m) => textOf(m) !== "slept 300");
    assertRpcError(refused, -32600, id);
    await settle(["slow"], "reused id");
  });

  it("responses for ids never sent, and notifications/cancelled for unknown ids: ignored, nothing forwarded", async () => {
    peer.send(
      JSON.stringify({ jsonrpc: "2.0", id: "srv-99", result: {} }),
      JSON.stringify({ jsonrpc: "2.0", id: 424242, result: { content: [] } }),
      JSON.stringify({ jsonrpc: "2.0", id: 424243, error: { code: -1, message: "no" } }),
      JSON.stringify({ jsonrpc: "2.0", id: null, error: { code: -1, message: "no" } }),
      note("notifications/cancelled", { requestId: 424244, reason: "x" }),
      note("notifications/cancelled", { requestId: { nested: 1 } }),
      note("notifications/cancelled", {}),
    );
    // A response with both result and error is not a response: refused.
    const bad = newId();
    peer.send(JSON.stringify({ jsonrpc: "2.0", id: bad, result: {}, error: { code: 1, message: "x" } }));
    assertRpcError(await peer.response(bad), -32600, bad);
    await settle([], "unsolicited responses");
  });

  it("a flood: 300 concurrent calls (allowed, denied, malformed) on one stream, each answered once", async () => {
    const frames: string[] = [];
    const allowed: number[] = [];
    const denied: number[] = [];
    for (let i = 0; i < 300; i++) {
      const id = newId();
      if (i % 3 === 0) {
        denied.push(id);
        frames.push(call(id, i % 2 ? "delete_thing" : "Read_Thing"));
      } else {
        allowed.push(id);
        frames.push(call(id, "echo", { i: id }));
      }
      if (i % 50 === 0) frames.push("{not json");
    }
    const started = Date.now();
    peer.send(...frames);
    for (const id of allowed) assert.equal(textOf(await peer.response(id)), JSON.stringify({ i: id }));
    for (const id of denied) assert.equal((await peer.response(id)).result?.isError, true);
    for (let i = 0; i < 6; i++) assertRpcError(await peer.nullIdError(), -32700, null);
    const ms = Date.now() - started;
    assert.ok(ms < 10_000, `the flood took ${ms} ms`);
    const got = rec
      .take()
      .filter((m) => m.method === "tools/call")
      .map((m) => (m.params?.arguments as { i?: number } | undefined)?.i);
    assert.deepEqual(
      got.sort((x, y) => (x ?? 0) - (y ?? 0)),
      allowed,
    );
    const records = await settle([], "flood");
    assert.equal(denials(records).length, denied.length + 6);
  });

  it("an upstream that writes garbage lines: ignored and reported on stderr, the call still answered", async () => {
    const id = newId();
    assert.equal(textOf(await peer.request(call(id, "garbage"), id)), "after garbage");
    await peer.stderrMatches(/not JSON/);
    await peer.stderrMatches(/invalid message/);
    await settle(["garbage"], "garbage");
  });

  it("an upstream that writes a line over the size limit: dropped and reported, the call still answered", async () => {
    const id = newId();
    assert.equal(textOf(await peer.request(call(id, "oversize", { bytes: LIMIT * 2 }), id)), "after oversize");
    await peer.stderrMatches(/upstream srv: the server sent a \d+-byte message, over the limit; dropped/);
    await settle(["oversize"], "oversize line");
  });

  it("an upstream answer over the size limit: the caller gets an error, not silence", async () => {
    const id = newId();
    peer.send(call(id, "oversize_result", { bytes: LIMIT * 2 }));
    const r = await peer.response(id, 3000);
    assert.ok(r.error !== undefined || r.result?.isError === true, JSON.stringify(r).slice(0, 300));
    await settle(["oversize_result"], "oversize answer");
  });
});

describe("warden run: an upstream that crashes mid-call", () => {
  let dir: string;
  let rec: Recording;
  let audit: Audit;
  let peer: WardenRun;

  before(async () => {
    dir = tempDir();
    rec = new Recording(join(dir, "received.jsonl"));
    audit = new Audit(join(dir, "data"));
    peer = await startRun(dir, rec.file);
  });

  after(async () => {
    if (peer.child.exitCode === null && peer.child.signalCode === null) peer.child.kill("SIGKILL");
    await peer.exited;
    rmSync(dir, { recursive: true, force: true });
  });

  it("callers in flight get -32001, Warden says why on stderr and records the exit; the log verifies", async () => {
    const slow = newId();
    peer.send(call(slow, "slow", { ms: 5000 }));
    await sleep(50);
    const id = newId();
    peer.send(call(id, "crash"));
    const [r1, r2] = await Promise.all([peer.response(id), peer.response(slow)]);
    assertRpcError(r1, -32001, id);
    assertRpcError(r2, -32001, slow);
    await peer.stderrMatches(/stopped \(the server process exited with code 3\); Warden is stopping too/);
    rec.expectCalls(["slow", "crash"], "crash");
    await audit.verifyWithBinary();
    const records = await audit.fresh();
    const exited = records.filter((r) => r.type === "lifecycle" && r.detail?.event === "upstream-exited");
    assert.equal(exited.length, 1);
    assert.match(exited[0]?.reason ?? "", /exited with code 3/);
  });

  it("Warden exits with the server's code without waiting for the client to close stdin", async () => {
    const exit = await within(3000, "warden run exits on its own", peer.exited);
    assert.deepEqual(exit, { code: 3, signal: null });
  });

  it("Warden exits with the server's code once stdin closes, and the log still verifies", async () => {
    const exit = await within(10_000, "warden run exits", peer.close());
    assert.deepEqual(exit, { code: 3, signal: null });
    await audit.verifyWithBinary();
  });
});

// =====================================================================
// warden serve: raw HTTP against the Streamable HTTP endpoints
// =====================================================================

interface HttpAnswer {
  status: number;
  sid: string | null;
  contentType: string;
  raw: string;
  /** The JSON body (a message or a batch), or the messages of an SSE body as an array. */
  body: unknown;
}

describe("warden serve: raw JSON-RPC over HTTP", () => {
  let dir: string;
  let gw: RunningGateway;
  let base: string;
  let recSrv: Recording;
  let recOther: Recording;
  let audit: Audit;
  const logs: string[] = [];
  let srvSession: string;
  let aggSession: string;

  async function post(path: string, body: string | Buffer, sid?: string | null): Promise<HttpAnswer> {
    const headers: Record<string, string> = {
      "Content-Type": "application/json",
      Accept: "application/json, text/event-stream",
    };
    if (sid) headers["Mcp-Session-Id"] = sid;
    const res = await fetch(`${base}${path}`, { method: "POST", headers, body });
    const raw = await res.text();
    const contentType = res.headers.get("content-type") ?? "";
    let parsed: unknown;
    if (contentType.includes("text/event-stream")) {
      parsed = raw
        .split("\n")
        .filter((l) => l.startsWith("data:"))
        .map((l) => JSON.parse(l.slice(5)));
    } else if (raw !== "") {
      try {
        parsed = JSON.parse(raw);
      } catch {
        parsed = undefined;
      }
    }
    return { status: res.status, sid: res.headers.get("mcp-session-id"), contentType, raw, body: parsed };
  }

  /** POSTs one request; returns its answer (which must be a single JSON-RPC message). */
  async function rpc(path: string, sid: string, frame: string): Promise<Rpc & { status: number }> {
    const a = await post(path, frame, sid);
    const m = (Array.isArray(a.body) && a.contentType.includes("event-stream") ? a.body.at(-1) : a.body) as Rpc;
    return { ...m, status: a.status };
  }

  async function openSession(path: string): Promise<string> {
    const a = await post(path, req(0, "initialize", INIT_PARAMS));
    assert.equal(a.status, 200, a.raw);
    assert.ok(a.sid);
    const n = await post(path, note("notifications/initialized"), a.sid);
    assert.equal(n.status, 202, n.raw);
    return a.sid;
  }

  /**
   * A message that is not a usable request was sent: it must get a deliberate
   * answer, an HTTP error status or a JSON-RPC error, never a silent 202.
   */
  function assertRefused(a: HttpAnswer, code: number, why: string): void {
    const messages = (Array.isArray(a.body) ? a.body : [a.body]) as Rpc[];
    const error = messages.find((m) => m?.error !== undefined);
    assert.ok(
      error !== undefined,
      `${why}: expected a JSON-RPC error, got HTTP ${a.status} ${JSON.stringify(a.raw).slice(0, 200)}`,
    );
    assert.equal(error.error?.code, code, `${why}: ${a.raw}`);
  }

  before(async () => {
    dir = tempDir();
    recSrv = new Recording(join(dir, "srv.jsonl"));
    recOther = new Recording(join(dir, "other.jsonl"));
    audit = new Audit(join(dir, "data"));
    writeFileSync(join(dir, "policy.yaml"), POLICY);
    const q = JSON.stringify;
    writeFileSync(
      join(dir, "warden.yaml"),
      `listen: { host: 127.0.0.1, port: 0 }
policy: ./policy.yaml
dataDir: ./data
limits: { maxMessageBytes: ${LIMIT} }
auth:
  anonymous:
    agent: { name: ${AGENT} }
upstreams:
  srv:
    command: ${q(process.execPath)}
    args: [${q(FIXTURE)}]
    env: { RECORD_FILE: ${q(recSrv.file)}, RECORDING_LENIENT: "1" }
  other:
    command: ${q(process.execPath)}
    args: [${q(FIXTURE)}]
    env: { RECORD_FILE: ${q(recOther.file)}, RECORDING_LENIENT: "1" }
`,
    );
    gw = await startGateway(loadServeConfig(join(dir, "warden.yaml")), {
      version: "0.0.0-test",
      log: (m) => logs.push(m),
      portOverride: 0,
    });
    base = gw.url;
    assert.match(base, /^http:\/\/127\.0\.0\.1:\d+$/);
    srvSession = await openSession("/mcp/srv");
    aggSession = await openSession("/mcp");
  });

  after(async () => {
    await gw?.stop();
    await audit.verifyWithBinary();
    rmSync(dir, { recursive: true, force: true });
  });

  beforeEach(async () => {
    recSrv.take();
    recOther.take();
    await audit.fresh();
  });

  /** (2), (3), (4) as for stdio: the recordings, a normal call on both endpoints, /healthz, the log. */
  async function settle(calls: { srv?: string[]; other?: string[] } = {}, what = ""): Promise<AuditRecord[]> {
    const health = await fetch(`${base}/healthz`);
    assert.equal(health.status, 200);
    await health.text();
    const id = newId();
    const r = await rpc("/mcp/srv", srvSession, call(id, "read_thing"));
    assert.equal(textOf(r), "the thing", `the gateway must still serve a normal call: ${JSON.stringify(r)}`);
    const id2 = newId();
    const r2 = await rpc("/mcp", aggSession, call(id2, "other__read_thing"));
    assert.equal(textOf(r2), "the thing", JSON.stringify(r2));
    recSrv.expectCalls([...(calls.srv ?? []), "read_thing"], `${what} (srv)`);
    recOther.expectCalls([...(calls.other ?? []), "read_thing"], `${what} (other)`);
    return audit.fresh();
  }

  it("malformed JSON: 400 with -32700, a deny record per body, nothing forwarded", async () => {
    for (const frame of MALFORMED) {
      const a = await post("/mcp/srv", frame, srvSession);
      assert.equal(a.status, 400, frame);
      assertRefused(a, -32700, frame);
    }
    const records = await settle({}, "malformed");
    assert.equal(protocolDenials(records).length, MALFORMED.length);
  });

  it("requests with a wrong jsonrpc version, params that are not an object, or an id of 1e400: -32600", async () => {
    for (const c of invalidRequests().filter((c) => c.request)) {
      const a = await post("/mcp/srv", c.frame, srvSession);
      assertRefused(a, -32600, c.why);
      const m = a.body as Rpc;
      assert.deepEqual(m.id, c.id, c.why);
    }
    await settle({}, "invalid requests");
  });

  it("JSON that is not a request (not an object, no or a non-string method, an id of a forbidden type): an error, not a silent 202", async () => {
    const failures: string[] = [];
    for (const c of invalidRequests().filter((c) => !c.request)) {
      const a = await post("/mcp/srv", c.frame, srvSession);
      try {
        assertRefused(a, -32600, c.why);
      } catch {
        failures.push(`${c.why} → HTTP ${a.status} ${a.raw.slice(0, 100)}`);
      }
    }
    await settle({}, "invalid messages");
    assert.deepEqual(failures, [], "answered without a JSON-RPC error");
  });

  it("huge numbers in arguments: refused, never forwarded", async () => {
    const id = newId();
    const r = await rpc(
      "/mcp/srv",
      srvSession,
      `{"jsonrpc":"2.0","id":${id},"method":"tools/call","params":{"name":"echo","arguments":{"n":1e400}}}`,
    );
    assert.ok(r.error !== undefined || r.result?.isError === true, JSON.stringify(r));
    await settle({}, "non-finite number");
  });

  it("a call refused for a non-finite number has a deny record", async () => {
    const id = newId();
    const r = await rpc(
      "/mcp/srv",
      srvSession,
      `{"jsonrpc":"2.0","id":${id},"method":"tools/call","params":{"name":"echo","arguments":{"n":-1e400}}}`,
    );
    assert.ok(r.error !== undefined || r.result?.isError === true, JSON.stringify(r));
    const records = await settle({}, "non-finite number");
    assert.equal(toolDenials(records, "echo").length, 1, "the refused call has a deny record");
  });

  it("a batch with allowed, denied, look-alike and invalid entries: each decided on its own", async () => {
    const [a, b, c, d, e] = [newId(), newId(), newId(), newId(), newId()];
    const frame = `[${[
      call(a, "read_thing"),
      call(b, "delete_thing"),
      call(c, "Delete_Thing"),
      req(d, "Tools/Call", { name: "delete_thing", arguments: {} }),
      call(e, "echo", { batch: true }),
      note("tools/call", { name: "delete_thing", arguments: {} }),
    ].join(",")}]`;
    const answer = await post("/mcp/srv", frame, srvSession);
    assert.equal(answer.status, 200, answer.raw);
    const batch = answer.body as Rpc[];
    assert.ok(Array.isArray(batch), answer.raw);
    const byId = (id: unknown) => batch.find((m) => m.id === id);
    assert.equal(batch.length, 5, answer.raw);
    assert.equal(textOf(byId(a)), "the thing");
    assertNotAvailable(byId(b), "delete_thing");
    assertNotAvailable(byId(c), "Delete_Thing");
    assertRpcError(byId(d), -32601, d);
    assert.equal(textOf(byId(e)), '{"batch":true}');
    const records = await settle({ srv: ["read_thing", "echo"] }, "mixed batch");
    assert.equal(toolDenials(records, "delete_thing").length, 1);
    assert.equal(toolDenials(records, "Delete_Thing").length, 1);
  });

  it("a batch with an entry that is not an object: that entry gets -32600, the others their answers", async () => {
    const id = newId();
    const answer = await post("/mcp/srv", `[${call(id, "read_thing")}, 5]`, srvSession);
    await sleep(100); // with the bug, the call is still on its way to the server when the 500 comes back
    await settle({ srv: ["read_thing"] }, "batch with a non-object"); // the call ran, whatever the answer
    assert.equal(answer.status, 200, answer.raw);
    const batch = answer.body as Rpc[];
    assert.ok(Array.isArray(batch), answer.raw);
    assert.equal(textOf(batch.find((m) => m.id === id)), "the thing");
    assertRpcError(
      batch.find((m) => m.id === null),
      -32600,
      null,
    );
  });

  it("an empty batch (400, recorded) and a batch of notifications (202, nothing forwarded)", async () => {
    const empty = await post("/mcp/srv", "[]", srvSession);
    assert.equal(empty.status, 400);
    assertRefused(empty, -32600, "[]");
    const notes = await post(
      "/mcp/srv",
      `[${[
        note("notifications/cancelled", { requestId: 987654321 }),
        note("notifications/cancelled", { requestId: "no-such-request" }),
        note("tools/call", { name: "delete_thing", arguments: {} }),
        note("tools/call", { name: "read_thing", arguments: {} }),
        note("Notifications/Initialized"),
      ].join(",")}]`,
      srvSession,
    );
    assert.equal(notes.status, 202, notes.raw);
    assert.equal(notes.raw, "");
    const records = await settle({}, "batches");
    assert.equal(protocolDenials(records).length, 1);
  });

  it("nested arrays: -32600 for each entry, nothing forwarded", async () => {
    const nested = await post(
      "/mcp/srv",
      `[[${call(newId(), "read_thing")}],[[${call(newId(), "delete_thing")}]]]`,
      srvSession,
    );
    assertRefused(nested, -32600, "nested arrays");
    await settle({}, "nested arrays");
  });

  it("bodies over the size limit: 413 before parsing (declared or chunked), recorded, nothing forwarded", async () => {
    const padded = call(newId(), "delete_thing");
    const big = padded + " ".repeat(LIMIT + 1 - padded.length);
    const declared = await post("/mcp/srv", big, srvSession);
    assert.equal(declared.status, 413);
    assertRefused(declared, -32002, "declared");
    // Chunked (no Content-Length): counted while reading.
    const chunked = await fetch(`${base}/mcp/srv`, {
      method: "POST",
      headers: {
        "Content-Type": "application/json",
        Accept: "application/json, text/event-stream",
        "Mcp-Session-Id": srvSession,
      },
      body: new ReadableStream({
        start(controller) {
          for (let i = 0; i < 4; i++) controller.enqueue(new TextEncoder().encode(" ".repeat(LIMIT / 2)));
          controller.enqueue(new TextEncoder().encode(call(newId(), "delete_thing")));
          controller.close();
        },
      }),
      duplex: "half",
    } as RequestInit);
    assert.equal(chunked.status, 413);
    await chunked.text();
    // Multi-byte: under the limit in characters, over it in bytes.
    const wide = call(newId(), "echo", { pad: "é".repeat(LIMIT / 2 + 1) });
    const multibyte = await post("/mcp/srv", wide, srvSession);
    assert.equal(multibyte.status, 413);
    const records = await settle({}, "size limit");
    assert.equal(protocolDenials(records).length, 3);
  });

  it("duplicate JSON keys, anywhere and however escaped: 400 with -32600, recorded, nothing forwarded", async () => {
    const frames = duplicateKeyFrames();
    for (const f of frames) {
      const a = await post("/mcp/srv", f.frame, srvSession);
      assert.equal(a.status, 400, f.why);
      assertRefused(a, -32600, f.why);
      assert.match(a.raw, /duplicate key/, f.why);
    }
    const records = await settle({}, "duplicate keys");
    assert.equal(protocolDenials(records).length, frames.length);
  });

  it("method names that differ by case, whitespace, look-alikes or invisible characters: -32601, never forwarded", async () => {
    for (const path of ["/mcp/srv", "/mcp"]) {
      const sid = path === "/mcp" ? aggSession : srvSession;
      const name = path === "/mcp" ? "srv__delete_thing" : "delete_thing";
      for (const method of METHOD_LOOKALIKES) {
        const id = newId();
        assertRpcError(await rpc(path, sid, req(id, method, { name, arguments: {} })), -32601, id);
        const n = await post(path, note(method, { name, arguments: {} }), sid);
        assert.equal(n.status, 202);
      }
    }
    await settle({}, "method look-alikes");
  });

  it("tool names that differ by case, whitespace, look-alikes, NUL or zero-width: not available, never forwarded", async () => {
    for (const name of TOOL_LOOKALIKES) {
      const id = newId();
      assertNotAvailable(await rpc("/mcp/srv", srvSession, call(id, name)), name);
    }
    const records = await settle({}, "tool look-alikes");
    for (const name of TOOL_LOOKALIKES) assert.equal(toolDenials(records, name).length, 1, JSON.stringify(name));
  });

  it("the aggregate endpoint: prefix tricks and unknown servers are not available, never forwarded", async () => {
    const names = [
      "srv__",
      "__read_thing",
      "__srv__read_thing",
      "srv____read_thing",
      "other____read_thing",
      "srv__read_thing__",
      "other__srv__read_thing",
      "other__other__read_thing",
      "nosuch__read_thing",
      "SRV__read_thing",
      "srv\u200b__read_thing",
      "srv _read_thing",
      "srv_read_thing",
      "srv__Read_Thing",
      "srv__read_thing\u0000",
      "other__read_thing\u200b",
      "other__Delete_Thing",
      "srv__delete_thing",
      "srv__DELETE_THING",
      "read_thing",
      "delete_thing",
      "__",
      "____",
    ];
    for (const name of names) {
      const id = newId();
      assertNotAvailable(await rpc("/mcp", aggSession, call(id, name)), name);
    }
    // The real names still work, through the same session.
    const ok = newId();
    assert.equal(textOf(await rpc("/mcp", aggSession, call(ok, "srv__read_thing"))), "the thing");
    const records = await settle({ srv: ["read_thing"] }, "aggregate prefixes");
    // srv__delete_thing is denied by policy; the bare name names no server and is refused before any policy.
    assert.equal(toolDenials(records, "delete_thing").length, 2);
    assert.equal(
      toolDenials(records, "__read_thing").length,
      3,
      "srv____read_thing and other____read_thing (by policy), and __read_thing itself (no server)",
    );
    // Every refused name left a deny record: probing the aggregate is never silent.
    assert.equal(denials(records).length, names.length);
  });

  it("calls with no name, an empty or non-string name, or arguments that are not an object: -32602", async () => {
    for (const path of ["/mcp/srv", "/mcp"]) {
      const sid = path === "/mcp" ? aggSession : srvSession;
      for (const c of BAD_CALL_PARAMS) {
        const id = newId();
        const params =
          path === "/mcp" && (c.params as { name?: unknown } | undefined)?.name === "read_thing"
            ? { ...(c.params as object), name: "srv__read_thing" }
            : c.params;
        assertRpcError(await rpc(path, sid, req(id, "tools/call", params)), -32602, id);
      }
    }
    await settle({}, "bad call params");
  });

  it("params keys that differ from name/arguments only by case are not forwarded", async () => {
    const id = newId();
    const r = await rpc(
      "/mcp/srv",
      srvSession,
      JSON.stringify({
        jsonrpc: "2.0",
        id,
        method: "tools/call",
        params: { name: "read_thing", arguments: {}, Name: "delete_thing" },
      }),
    );
    assert.notEqual(textOf(r), "DELETED the thing", "the denied tool ran");
    const got = recSrv.take().filter((m) => m.method === "tools/call");
    for (const c of got) assert.deepEqual(Object.keys(c.params ?? {}).sort(), ["arguments", "name"], JSON.stringify(c));
    await settle({}, "params keys");
  });

  it("a request id reused while the first is in flight (a second POST) is refused, not forwarded", async () => {
    const id = newId();
    const first = rpc("/mcp/srv", srvSession, call(id, "slow", { ms: 300 }));
    await sleep(50);
    const second = await rpc("/mcp/srv", srvSession, call(id, "read_thing"));
    assert.equal(textOf(await first), "slept 300");
    assertRpcError(second, -32600, id);
    await settle({ srv: ["slow"] }, "reused id");
  });

  it("the same id twice in one batch: both get an answer, the duplicate refused", async () => {
    const id = newId();
    const a = await post("/mcp/srv", `[${call(id, "echo", { n: 1 })},${call(id, "echo", { n: 2 })}]`, srvSession);
    await sleep(200); // with the bug, the second call is still on its way to the server
    const batch = a.body as Rpc[];
    assert.ok(Array.isArray(batch), a.raw);
    assert.equal(batch.length, 2, `one answer per request: ${a.raw}`);
    assert.equal(batch.filter((m) => m.error?.code === -32600).length, 1, a.raw);
    await settle({ srv: ["echo"] }, "duplicate ids in a batch");
  });

  it("responses for ids never sent and notifications/cancelled for unknown or other sessions' ids: 202, nothing forwarded", async () => {
    for (const frame of [
      JSON.stringify({ jsonrpc: "2.0", id: "srv-99", result: {} }),
      JSON.stringify({ jsonrpc: "2.0", id: 424242, error: { code: -1, message: "no" } }),
      note("notifications/cancelled", { requestId: 424244 }),
      note("notifications/cancelled", { requestId: { nested: 1 } }),
    ]) {
      const a = await post("/mcp/srv", frame, srvSession);
      assert.equal(a.status, 202, a.raw);
    }
    // Session B cannot cancel session A's call by naming its id.
    const other = await openSession("/mcp/srv");
    const id = newId();
    const inFlight = rpc("/mcp/srv", srvSession, call(id, "slow", { ms: 200 }));
    await sleep(50);
    assert.equal((await post("/mcp/srv", note("notifications/cancelled", { requestId: id }), other)).status, 202);
    assert.equal(textOf(await inFlight), "slept 200");
    await settle({ srv: ["slow"] }, "unsolicited responses");
  });

  it("a flood: 200 concurrent POSTs over 4 sessions (allowed, denied, malformed), each answered", async () => {
    const sessions = await Promise.all([1, 2, 3, 4].map(() => openSession("/mcp/srv")));
    const jobs: Promise<void>[] = [];
    const allowed: number[] = [];
    let denied = 0;
    let malformed = 0;
    for (let i = 0; i < 200; i++) {
      const sid = sessions[i % 4] as string;
      const id = newId();
      if (i % 4 === 0) {
        denied++;
        jobs.push(rpc("/mcp/srv", sid, call(id, "delete_thing")).then((r) => assertNotAvailable(r, "delete_thing")));
      } else if (i % 10 === 1) {
        malformed++;
        jobs.push(post("/mcp/srv", "{nope", sid).then((a) => assert.equal(a.status, 400)));
      } else {
        allowed.push(id);
        jobs.push(
          rpc("/mcp/srv", sid, call(id, "echo", { i: id })).then((r) =>
            assert.equal(textOf(r), JSON.stringify({ i: id })),
          ),
        );
      }
    }
    const started = Date.now();
    await Promise.all(jobs);
    assert.ok(Date.now() - started < 15_000);
    const got = recSrv
      .take()
      .filter((m) => m.method === "tools/call")
      .map((m) => (m.params?.arguments as { i?: number } | undefined)?.i ?? 0);
    assert.deepEqual(
      got.sort((x, y) => x - y),
      allowed,
    );
    const records = await settle({}, "flood");
    assert.equal(denials(records).length, denied + malformed);
  });

  it("slowloris: partial headers and partial bodies do not block other clients", async () => {
    const port = Number(new URL(base).port);
    const open = (text: string) =>
      new Promise<Socket>((done, fail) => {
        const s = connect(port, "127.0.0.1", () => {
          s.write(text);
          done(s);
        });
        s.on("error", fail);
      });
    const sockets: Socket[] = [];
    try {
      for (let i = 0; i < 20; i++) {
        // Headers complete, body promised but never finished.
        sockets.push(
          await open(
            `POST /mcp/srv HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nContent-Type: application/json\r\n` +
              `Accept: application/json, text/event-stream\r\nMcp-Session-Id: ${srvSession}\r\n` +
              `Content-Length: 1000\r\n\r\n{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"delete_th`,
          ),
        );
        // Headers never finished.
        sockets.push(await open(`POST /mcp/srv HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nX-Slow: `));
        // Chunked, one chunk, then nothing.
        sockets.push(
          await open(
            `POST /mcp/srv HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nContent-Type: application/json\r\n` +
              `Accept: application/json, text/event-stream\r\nMcp-Session-Id: ${srvSession}\r\n` +
              "Transfer-Encoding: chunked\r\n\r\n5\r\n[    \r\n",
          ),
        );
      }
      const started = Date.now();
      const records = await within(5000, "a normal client while 60 connections stall", settle({}, "slowloris"));
      assert.ok(Date.now() - started < 3000, `normal calls took ${Date.now() - started} ms`);
      assert.equal(denials(records).length, 0);
    } finally {
      for (const s of sockets) s.destroy();
    }
    // The stalled partial call never reached the server, even once its connection went away.
    await sleep(100);
    await settle({}, "after slowloris");
  });

  it("an upstream that writes garbage lines or oversize lines: ignored and reported, the calls answered", async () => {
    const id = newId();
    assert.equal(textOf(await rpc("/mcp/srv", srvSession, call(id, "garbage"))), "after garbage");
    const id2 = newId();
    assert.equal(
      textOf(await rpc("/mcp/srv", srvSession, call(id2, "oversize", { bytes: LIMIT * 2 }))),
      "after oversize",
    );
    const text = logs.join("\n");
    assert.match(text, /upstream srv: the server wrote a line that is not JSON/);
    assert.match(text, /upstream srv: the server sent an invalid message/);
    assert.match(text, /upstream srv: the server sent a \d+-byte message, over the limit; dropped/);
    await settle({ srv: ["garbage", "oversize"] }, "garbage");
  });

  it("an upstream answer over the size limit: the caller gets an error, not silence", async () => {
    const id = newId();
    const r = await within(
      3000,
      "the answer to an oversize result",
      rpc("/mcp/srv", srvSession, call(id, "oversize_result", { bytes: LIMIT * 2 })),
    );
    assert.ok(r.error !== undefined || r.result?.isError === true, JSON.stringify(r).slice(0, 300));
    await settle({ srv: ["oversize_result"] }, "oversize answer");
  });

  it("an upstream that crashes mid-call: callers get an error, the gateway restarts it and keeps serving", async () => {
    const slowId = newId();
    const other = await openSession("/mcp/srv");
    const slow = rpc("/mcp/srv", other, call(slowId, "slow", { ms: 5000 }));
    await sleep(50);
    const id = newId();
    const crashed = await rpc("/mcp/srv", srvSession, call(id, "crash"));
    assertRpcError(crashed, -32001, id);
    assertRpcError(await slow, -32001, slowId);
    // Until it is back, calls get a deliberate answer, not a hang.
    const during = await rpc("/mcp/srv", srvSession, call(newId(), "read_thing"));
    assert.ok(during.error !== undefined || during.result !== undefined);
    // Readiness reports it, then recovers.
    const deadline = Date.now() + 10_000;
    for (;;) {
      const r = await fetch(`${base}/readyz`);
      await r.text();
      if (r.status === 200) break;
      assert.ok(Date.now() < deadline, "the upstream was not restarted");
      await sleep(100);
    }
    recSrv.take(); // the crash, and the restarted server's initialize
    const records = await settle({}, "after crash");
    assert.ok(records.some((r) => r.type === "lifecycle" && r.detail?.event === "upstream-exited"));
    assert.ok(records.some((r) => r.type === "lifecycle" && r.detail?.event === "upstream-started"));
  });
});
