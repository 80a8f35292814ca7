// Gateway benchmark: Warden end to end, as separate processes, with policy and the durable audit log on.
//   (1) stdio: sequential `echo` calls to @modelcontextprotocol/server-everything, DIRECT vs through
//       `warden run`, with a minimal JSON-RPC line client (judged) and the official SDK client (shown).
//   (2) HTTP: concurrent sessions calling `echo` in closed loops against `warden serve` and against
//       mcp-proxy fronting the same stdio server without policy; the two take turns in short slices.
//   (3) resident memory (VmRSS) of the `warden serve` process: idle, and holding 1,000 sessions.
// Every answer is checked to be the echo of what was sent. Each phase also samples the CPU time of
// every process on the machine, so a run disturbed by other processes says so.
// Exit code: 0 all targets met, 1 a target missed, 2 aborted. See bench/README.md.
import { type ChildProcess, spawn } from "node:child_process";
import { createHash } from "node:crypto";
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { Agent, type IncomingMessage, request } from "node:http";
import { createServer, connect as netConnect } from "node:net";
import { cpus, tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { performance } from "node:perf_hooks";
import { fileURLToPath } from "node:url";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js";
import Database from "better-sqlite3";

const STDIO_CALLS = envInt("BENCH_STDIO_CALLS", 2000);
const STDIO_WARMUP = envInt("BENCH_STDIO_WARMUP", 300);
const STDIO_ROUNDS = envInt("BENCH_STDIO_ROUNDS", 5);
const HTTP_SESSIONS = envInt("BENCH_HTTP_SESSIONS", 32);
const HTTP_SECONDS = envNum("BENCH_HTTP_SECONDS", 20);
const HTTP_WARMUP_SECONDS = envNum("BENCH_HTTP_WARMUP_SECONDS", 2);
/** Shorter than Node's 5 s keep-alive timeout, so idle pooled sockets are never closed under a turn. */
const HTTP_SLICE_SECONDS = Math.min(4, envNum("BENCH_HTTP_SLICE_SECONDS", 2));
const MEMORY_SESSIONS = envInt("BENCH_MEMORY_SESSIONS", 1000);
/** Idle memory is judged this long after the gateway is ready: V8 gives startup garbage back after ~8-10 s. */
const IDLE_SETTLE_SECONDS = envNum("BENCH_IDLE_SECONDS", 12);
const PROFILE_DIR = process.env.BENCH_PROFILE_DIR ? resolve(process.env.BENCH_PROFILE_DIR) : undefined;
const ONLY = process.env.BENCH_ONLY?.split(",").map((s) => s.trim());
const run = (phase: "stdio" | "http" | "memory") => !ONLY || ONLY.includes(phase);

const TARGET_STDIO_RATIO = 0.8;
const TARGET_HTTP_RATIO = 5;
const TARGET_HTTP_P99_MS = 10;
const TARGET_IDLE_MB = 80;
const TARGET_SESSIONS_MB = 300;
/** Another process using more than this share of the machine during a slice flags the run. */
const FOREIGN_LIMIT = 0.1;
const CALL_TIMEOUT_MS = 30_000;

const ROOT = resolve(fileURLToPath(new URL("../..", import.meta.url)));
const WARDEN = join(ROOT, "dist/src/cli/main.js");
const EVERYTHING = join(ROOT, "node_modules/@modelcontextprotocol/server-everything/dist/index.js");
const MCP_PROXY = join(ROOT, "node_modules/mcp-proxy/dist/bin/mcp-proxy.mjs");
const AGENT = "bench-agent";
const SERVER = "everything";
const API_KEY = "wk_bench_0123456789abcdef";
const PROTOCOL = "2025-06-18";

function envNum(name: string, fallback: number): number {
  const n = Number(process.env[name]);
  return Number.isFinite(n) && n > 0 ? n : fallback;
}

function envInt(name: string, fallback: number): number {
  return Math.round(envNum(name, fallback));
}

class Aborted extends Error {}

function abort(message: string): never {
  throw new Aborted(message);
}

const now = () => performance.now();
const sleep = (ms: number) => new Promise((r) => setTimeout(r, Math.max(0, ms)));

// ---------------------------------------------------------------------------------------------
// Statistics and output
// ---------------------------------------------------------------------------------------------

function sorted(xs: readonly number[]): number[] {
  return Float64Array.from(xs).sort() as unknown as number[];
}

/** Nearest-rank percentile. */
function percentile(xs: readonly number[], p: number): number {
  if (xs.length === 0) return Number.NaN;
  const s = sorted(xs);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))] as number;
}

const median = (xs: readonly number[]) => percentile(xs, 50);
const int = (n: number) => (Number.isFinite(n) ? Math.round(n).toLocaleString("en-US") : "–");
const msFmt = (n: number) => (!Number.isFinite(n) ? "–" : n >= 10 ? `${n.toFixed(1)} ms` : `${n.toFixed(2)} ms`);
const mb = (kb: number) => `${(kb / 1024).toFixed(1)} MB`;
const pct = (x: number) => `${(x * 100).toFixed(0)} %`;
const pad = (s: string, w: number) => s.padEnd(w);
const lpad = (s: string, w: number) => s.padStart(w);

interface Measured {
  label: string;
  ok: number;
  errors: number;
  seconds: number;
  latencies: number[];
  /** CPU seconds spent meanwhile by the client (this process), the server, and the server's children. */
  cpu: { client: number; server: number; upstream: number };
}

const rate = (m: Measured) => m.ok / m.seconds;

function resultHeader(title: string): string {
  return (
    `${pad(title, 46)}${lpad("calls", 8)}${lpad("errors", 8)}${lpad("calls/s", 10)}${lpad("p50", 11)}${lpad("p99", 11)}` +
    "   CPU µs/call: client  server  its upstream"
  );
}

function resultLine(m: Measured): string {
  const perCall = (sec: number) => lpad(int((sec * 1e6) / Math.max(1, m.ok + m.errors)), 7);
  return (
    `  ${pad(m.label, 44)}${lpad(int(m.ok + m.errors), 8)}${lpad(int(m.errors), 8)}${lpad(int(rate(m)), 10)}` +
    `${lpad(msFmt(median(m.latencies)), 11)}${lpad(msFmt(percentile(m.latencies, 99)), 11)}` +
    `                 ${perCall(m.cpu.client)} ${perCall(m.cpu.server)}       ${perCall(m.cpu.upstream)}`
  );
}

// ---------------------------------------------------------------------------------------------
// Processes: every one started here is a process-group leader, killed with its group at the end
// ---------------------------------------------------------------------------------------------

interface Proc {
  name: string;
  child: ChildProcess;
  pid: number;
  /** The last lines of its stderr, shown when something goes wrong. */
  stderr: string[];
  exited: Promise<number | null>;
  exitCode: number | null | undefined;
}

const procs = new Set<Proc>();

function startProc(name: string, command: string, args: string[], stdin: "pipe" | "ignore" = "ignore"): Proc {
  const child = spawn(command, args, { stdio: [stdin, "pipe", "pipe"], detached: true, cwd: ROOT });
  if (child.pid === undefined) abort(`could not start ${name} (${command})`);
  const p: Proc = {
    name,
    child,
    pid: child.pid,
    stderr: [],
    exitCode: undefined,
    exited: new Promise((resolveExit) => child.once("exit", (code) => resolveExit(code))),
  };
  void p.exited.then((code) => {
    p.exitCode = code;
  });
  child.stderr?.setEncoding("utf8");
  child.stderr?.on("data", (d: string) => {
    p.stderr.push(...d.split("\n").filter(Boolean));
    if (p.stderr.length > 40) p.stderr.splice(0, p.stderr.length - 40);
  });
  child.on("error", () => {});
  procs.add(p);
  return p;
}

function killGroup(p: Proc): void {
  try {
    process.kill(-p.pid, "SIGKILL");
  } catch {
    // already gone
  }
}

/** Asks a process to stop (signal, or end of stdin), waits, then kills its group whatever happened. */
async function stopProc(p: Proc, how: "SIGTERM" | "stdin", graceMs = 15_000): Promise<number | null | "killed"> {
  if (p.exitCode === undefined) {
    if (how === "stdin") p.child.stdin?.end();
    else p.child.kill("SIGTERM");
  }
  const timer = new Promise<"killed">((r) => setTimeout(() => r("killed"), graceMs).unref());
  const result = await Promise.race([p.exited, timer]);
  killGroup(p);
  procs.delete(p);
  return result;
}

function killAll(): void {
  for (const p of procs) killGroup(p);
  procs.clear();
}

function diagnose(p: Proc): string {
  return p.stderr.length > 0 ? `\n  last stderr of ${p.name}:\n    ${p.stderr.join("\n    ")}` : "";
}

// ---------------------------------------------------------------------------------------------
// CPU accounting from /proc: who used the machine during each measured slice
// ---------------------------------------------------------------------------------------------

const TICKS_PER_SECOND = 100; // USER_HZ on Linux
const NCPU = cpus().length;

interface CpuSample {
  wall: number;
  /** pid → [ppid, utime + stime in ticks, command name] for every user-space process. */
  procs: Map<number, [number, number, string]>;
  steal: number;
}

function sampleCpu(): CpuSample {
  const wall = now();
  const map = new Map<number, [number, number, string]>();
  for (const name of readdirSync("/proc")) {
    const pid = Number(name);
    if (!Number.isInteger(pid)) continue;
    let stat: string;
    try {
      stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    } catch {
      continue;
    }
    const close = stat.lastIndexOf(")");
    const f = stat.slice(close + 2).split(" ");
    const ppid = Number(f[1]);
    if (pid === 2 || ppid === 2) continue; // kernel threads
    map.set(pid, [ppid, Number(f[11]) + Number(f[12]), stat.slice(stat.indexOf("(") + 1, close)]);
  }
  const cpu = readFileSync("/proc/stat", "utf8").split("\n", 1)[0]?.trim().split(/\s+/) ?? [];
  return { wall, procs: map, steal: Number(cpu[8] ?? 0) };
}

/** This process and everything it started, transitively. */
function ourPids(s: CpuSample): Set<number> {
  const ours = new Set([process.pid]);
  let grew = true;
  while (grew) {
    grew = false;
    for (const [pid, [ppid]] of s.procs) {
      if (!ours.has(pid) && ours.has(ppid)) {
        ours.add(pid);
        grew = true;
      }
    }
  }
  return ours;
}

interface CpuSlice {
  seconds: number;
  /** Shares of one CPU, by process (ours), and of the whole machine for everything else. */
  byPid: Map<number, number>;
  foreign: number;
  foreignTop: { pid: number; comm: string; share: number } | null;
  steal: number;
}

function cpuBetween(a: CpuSample, b: CpuSample): CpuSlice {
  const seconds = (b.wall - a.wall) / 1000;
  const ticks = seconds * TICKS_PER_SECOND;
  const ours = ourPids(b);
  const byPid = new Map<number, number>();
  let foreign = 0;
  let foreignTop: CpuSlice["foreignTop"] = null;
  for (const [pid, [, t1, comm]] of b.procs) {
    const t0 = a.procs.get(pid)?.[1] ?? 0;
    const share = (t1 - t0) / ticks;
    if (ours.has(pid)) byPid.set(pid, share);
    else {
      foreign += share;
      if (!foreignTop || share > foreignTop.share) foreignTop = { pid, comm, share };
    }
  }
  return { seconds, byPid, foreign: foreign / NCPU, foreignTop, steal: (b.steal - a.steal) / ticks / NCPU };
}

const cpuSlices: CpuSlice[] = [];

/** Runs f, recording who used the CPU meanwhile. */
async function sliced<T>(f: () => Promise<T>): Promise<{ value: T; cpu: CpuSlice }> {
  const a = sampleCpu();
  const value = await f();
  const cpu = cpuBetween(a, sampleCpu());
  cpuSlices.push(cpu);
  return { value, cpu };
}

/** The process's command line if it still runs, else its name as sampled. */
function commandOf(p: { pid: number; comm: string }): string {
  try {
    const line = readFileSync(`/proc/${p.pid}/cmdline`, "utf8").split("\0").join(" ").trim();
    if (line !== "") return `pid ${p.pid} ${line.slice(0, 80)}`;
  } catch {
    // exited meanwhile
  }
  return `pid ${p.pid} (${p.comm}, since exited)`;
}

// ---------------------------------------------------------------------------------------------
// stdio clients: a minimal JSON-RPC line client, and the official SDK client
// ---------------------------------------------------------------------------------------------

interface EchoClient {
  readonly pid: number;
  echo(message: string): Promise<boolean>;
  close(): Promise<void>;
}

interface RpcAnswer {
  result?: Record<string, unknown>;
  error?: { message?: string };
}

const isEcho = (result: unknown, message: string) =>
  (result as { content?: { text?: unknown }[] } | undefined)?.content?.[0]?.text === `Echo: ${message}`;

/** One JSON-RPC message per line over a child's stdin/stdout; nothing but the protocol. */
class LineClient implements EchoClient {
  private nextId = 1;
  private buffer = "";
  private readonly waiting = new Map<number, (m: RpcAnswer) => void>();
  readonly pid: number;

  private constructor(readonly proc: Proc) {
    this.pid = proc.pid;
    const out = proc.child.stdout;
    out?.setEncoding("utf8");
    out?.on("data", (d: string) => {
      this.buffer += d;
      let nl = this.buffer.indexOf("\n");
      while (nl >= 0) {
        const line = this.buffer.slice(0, nl);
        this.buffer = this.buffer.slice(nl + 1);
        if (line.trim() !== "") this.receive(line);
        nl = this.buffer.indexOf("\n");
      }
    });
    void proc.exited.then(() => {
      for (const [, w] of this.waiting) w({ error: { message: `${proc.name} exited` } });
      this.waiting.clear();
    });
  }

  static async start(name: string, command: string, args: string[]): Promise<LineClient> {
    const c = new LineClient(startProc(name, command, args, "pipe"));
    const init = await c.request("initialize", {
      protocolVersion: PROTOCOL,
      capabilities: {},
      clientInfo: { name: "warden-gateway-bench", version: "1" },
    });
    if (!init.result) abort(`${name} did not initialize: ${init.error?.message}${diagnose(c.proc)}`);
    c.send({ jsonrpc: "2.0", method: "notifications/initialized" });
    // As clients do: list the tools before calling one.
    const list = await c.request("tools/list", {});
    const tools = (list.result?.tools ?? []) as { name?: string }[];
    if (!tools.some((t) => t.name === "echo")) abort(`${name} lists no echo tool${diagnose(c.proc)}`);
    return c;
  }

  private receive(line: string): void {
    let m: { id?: unknown } & RpcAnswer;
    try {
      m = JSON.parse(line);
    } catch {
      return;
    }
    if (typeof m.id !== "number") return; // notifications, server requests
    const w = this.waiting.get(m.id);
    if (w) {
      this.waiting.delete(m.id);
      w(m);
    }
  }

  private send(message: unknown): void {
    this.proc.child.stdin?.write(`${JSON.stringify(message)}\n`);
  }

  request(method: string, params: Record<string, unknown>): Promise<RpcAnswer> {
    const id = this.nextId++;
    return new Promise((resolveAnswer) => {
      const timer = setTimeout(() => {
        this.waiting.delete(id);
        resolveAnswer({ error: { message: `no answer to ${method} within ${CALL_TIMEOUT_MS} ms` } });
      }, CALL_TIMEOUT_MS);
      this.waiting.set(id, (m) => {
        clearTimeout(timer);
        resolveAnswer(m);
      });
      this.send({ jsonrpc: "2.0", id, method, params });
    });
  }

  async echo(message: string): Promise<boolean> {
    const r = await this.request("tools/call", { name: "echo", arguments: { message } });
    return isEcho(r.result, message);
  }

  async close(): Promise<void> {
    await stopProc(this.proc, "stdin");
  }
}

/** The official SDK: Client + StdioClientTransport (validates every message with zod). */
class SdkClient implements EchoClient {
  private constructor(
    private readonly client: Client,
    readonly pid: number,
  ) {}

  static async start(name: string, command: string, args: string[]): Promise<SdkClient> {
    const transport = new StdioClientTransport({ command, args, cwd: ROOT, stderr: "ignore" });
    const client = new Client({ name: "warden-gateway-bench", version: "1" });
    try {
      await client.connect(transport, { timeout: CALL_TIMEOUT_MS });
      const { tools } = await client.listTools();
      if (!tools.some((t) => t.name === "echo")) abort(`${name} lists no echo tool`);
    } catch (err) {
      await transport.close().catch(() => {});
      if (err instanceof Aborted) throw err;
      abort(`${name} (SDK client) did not start: ${(err as Error).message}`);
    }
    return new SdkClient(client, transport.pid ?? -1);
  }

  async echo(message: string): Promise<boolean> {
    try {
      const r = await this.client.callTool({ name: "echo", arguments: { message } }, undefined, {
        timeout: CALL_TIMEOUT_MS,
      });
      return isEcho(r, message);
    } catch {
      return false;
    }
  }

  async close(): Promise<void> {
    await this.client.close().catch(() => {});
  }
}

async function sequential(c: EchoClient, n: number, tag: string, into?: Measured): Promise<void> {
  const t0 = now();
  for (let i = 0; i < n; i++) {
    const message = `${tag}-${i}`;
    const t = now();
    const good = await c.echo(message);
    if (!into) continue;
    if (good) {
      into.ok++;
      into.latencies.push(now() - t);
    } else into.errors++;
  }
  if (into) into.seconds += (now() - t0) / 1000;
}

const measured = (label: string): Measured => ({
  label,
  ok: 0,
  errors: 0,
  seconds: 0,
  latencies: [],
  cpu: { client: 0, server: 0, upstream: 0 },
});

/** Runs one measured slice of `m`, charging the CPU used meanwhile to the client, the server and its children. */
async function measureSlice(m: Measured, serverPid: number, f: () => Promise<void>): Promise<void> {
  const upstreams = childrenOf(serverPid);
  const { cpu } = await sliced(f);
  const used = (pid: number) => (cpu.byPid.get(pid) ?? 0) * cpu.seconds;
  m.cpu.client += used(process.pid);
  m.cpu.server += used(serverPid);
  for (const u of upstreams) m.cpu.upstream += used(u);
}

interface StdioResult {
  client: string;
  direct: Measured;
  warden: Measured;
  /** A byte relay between client and server: what any stdio wrapper written in Node costs at least. */
  relay?: Measured;
}

/** Copies stdin to the child and the child's stdout back, unparsed: the floor for a stdio wrapper. */
const RELAY = `const { spawn } = require("node:child_process");
const c = spawn(process.argv[1], process.argv.slice(2), { stdio: ["pipe", "pipe", "inherit"] });
process.stdin.pipe(c.stdin);
c.stdout.pipe(process.stdout);
c.on("exit", (code) => process.exit(code ?? 1));`;

async function stdioPhase(
  client: "line" | "sdk",
  dataDir: string,
  policyFile: string,
  nodeArgs: string[],
): Promise<StdioResult> {
  const start = client === "line" ? LineClient.start : SdkClient.start;
  const name = client === "line" ? "line client" : "SDK client";
  const wardenArgs = [
    ...nodeArgs,
    WARDEN,
    "run",
    "--policy",
    policyFile,
    "--agent",
    AGENT,
    "--server",
    SERVER,
    "--data-dir",
    dataDir,
    "--no-watch",
    "--",
    process.execPath,
    EVERYTHING,
    "stdio",
  ];
  const r: StdioResult = {
    client: name,
    direct: measured(`direct, ${name}`),
    warden: measured(`warden run, ${name}`),
  };
  const clients: EchoClient[] = [];
  try {
    const targets: [EchoClient, Measured][] = [];
    const add = async (label: string, args: string[], m: Measured) => {
      const c = await start(label, process.execPath, args);
      clients.push(c);
      targets.push([c, m]);
    };
    await add("server-everything (direct)", [EVERYTHING, "stdio"], r.direct);
    await add("warden run", wardenArgs, r.warden);
    if (client === "line") {
      r.relay = measured(`pipe relay (bytes only), ${name}`);
      await add("pipe relay", ["-e", RELAY, process.execPath, EVERYTHING, "stdio"], r.relay);
    }
    for (const [c] of targets) await sequential(c, STDIO_WARMUP, "warm");
    const perRound = Math.ceil(STDIO_CALLS / STDIO_ROUNDS);
    for (let round = 0, done = 0; done < STDIO_CALLS; round++, done += perRound) {
      const n = Math.min(perRound, STDIO_CALLS - done);
      // Rotate who goes first, so drift within a round hits every target alike.
      const order = [...targets.slice(round % targets.length), ...targets.slice(0, round % targets.length)];
      for (const [c, m] of order) await measureSlice(m, c.pid, () => sequential(c, n, `r${round}`, m));
    }
    return r;
  } finally {
    for (const c of clients) await c.close();
  }
}

/** What one durable SQLite commit (WAL, synchronous=FULL, as the audit store) costs on the data dir's disk. */
function commitLatency(dir: string, n = 300): number[] {
  const db = new Database(join(dir, "commit-probe.db"));
  try {
    db.pragma("journal_mode = WAL");
    db.pragma("synchronous = FULL");
    db.exec("CREATE TABLE r (seq INTEGER PRIMARY KEY, leaf BLOB NOT NULL, record BLOB NOT NULL) STRICT");
    const ins = db.prepare("INSERT INTO r (seq, leaf, record) VALUES (?, ?, ?)");
    const leaf = Buffer.alloc(32, 7);
    const record = Buffer.alloc(700, 97);
    const out: number[] = [];
    for (let i = 0; i < n; i++) {
      const t = now();
      ins.run(i, leaf, record);
      out.push(now() - t);
    }
    return out;
  } finally {
    db.close();
  }
}

// ---------------------------------------------------------------------------------------------
// HTTP load generator: node:http with keep-alive, Streamable HTTP sessions, JSON or SSE answers
// ---------------------------------------------------------------------------------------------

interface HttpAnswer {
  status: number;
  sessionId: string | undefined;
  messages: { id?: unknown; result?: unknown; error?: { message?: string } }[];
}

function parseBody(res: IncomingMessage, body: string): HttpAnswer["messages"] {
  if (body === "") return [];
  const type = String(res.headers["content-type"] ?? "");
  if (type.includes("text/event-stream")) {
    const out: HttpAnswer["messages"] = [];
    for (const event of body.split(/\r?\n\r?\n/)) {
      let data = "";
      for (const line of event.split(/\r?\n/)) {
        if (line.startsWith("data:")) data += (data ? "\n" : "") + line.slice(line[5] === " " ? 6 : 5);
      }
      if (data !== "") {
        const m = JSON.parse(data);
        if (Array.isArray(m)) out.push(...m);
        else out.push(m);
      }
    }
    return out;
  }
  const m = JSON.parse(body);
  return Array.isArray(m) ? m : [m];
}

class HttpMcpSession {
  sessionId: string | undefined;
  private protocol: string | undefined;
  private nextId = 1;

  constructor(
    private readonly port: number,
    private readonly path: string,
    private readonly agent: Agent,
    private readonly auth: Record<string, string>,
  ) {}

  private headers(extra: Record<string, string> = {}): Record<string, string> {
    const h: Record<string, string> = { ...this.auth, ...extra };
    if (this.sessionId) h["mcp-session-id"] = this.sessionId;
    if (this.protocol) h["mcp-protocol-version"] = this.protocol;
    return h;
  }

  post(message: unknown): Promise<HttpAnswer> {
    const body = JSON.stringify(message);
    return new Promise((resolvePost, reject) => {
      const req = request(
        {
          host: "127.0.0.1",
          port: this.port,
          path: this.path,
          method: "POST",
          agent: this.agent,
          headers: this.headers({
            "content-type": "application/json",
            accept: "application/json, text/event-stream",
            "content-length": String(Buffer.byteLength(body)),
          }),
        },
        (res) => {
          let text = "";
          res.setEncoding("utf8");
          res.on("data", (d: string) => {
            text += d;
          });
          res.on("end", () => {
            try {
              const sid = res.headers["mcp-session-id"];
              resolvePost({
                status: res.statusCode ?? 0,
                sessionId: Array.isArray(sid) ? sid[0] : sid,
                messages: parseBody(res, text),
              });
            } catch (err) {
              reject(err);
            }
          });
          res.on("error", reject);
        },
      );
      req.setTimeout(CALL_TIMEOUT_MS, () => req.destroy(new Error(`no answer within ${CALL_TIMEOUT_MS} ms`)));
      req.on("error", reject);
      req.end(body);
    });
  }

  async initialize(): Promise<void> {
    const r = await this.post({
      jsonrpc: "2.0",
      id: this.nextId++,
      method: "initialize",
      params: {
        protocolVersion: PROTOCOL,
        capabilities: {},
        clientInfo: { name: "warden-gateway-bench", version: "1" },
      },
    });
    const result = r.messages[0]?.result as { protocolVersion?: string } | undefined;
    if (r.status !== 200 || !result || !r.sessionId) {
      throw new Error(`initialize answered ${r.status}: ${JSON.stringify(r.messages[0] ?? null).slice(0, 300)}`);
    }
    this.sessionId = r.sessionId;
    this.protocol = result.protocolVersion ?? PROTOCOL;
    const n = await this.post({ jsonrpc: "2.0", method: "notifications/initialized" });
    if (n.status !== 202 && n.status !== 200) throw new Error(`notifications/initialized answered ${n.status}`);
  }

  async echo(message: string): Promise<boolean> {
    const id = this.nextId++;
    const r = await this.post({
      jsonrpc: "2.0",
      id,
      method: "tools/call",
      params: { name: "echo", arguments: { message } },
    });
    const answer = r.messages.find((m) => m.id === id);
    return r.status === 200 && isEcho(answer?.result, message);
  }

  /** Opens the session's GET stream; resolves once its headers arrived, with the open response. */
  openStream(agent: Agent): Promise<IncomingMessage> {
    return new Promise((resolveStream, reject) => {
      const req = request(
        {
          host: "127.0.0.1",
          port: this.port,
          path: this.path,
          method: "GET",
          agent,
          headers: this.headers({ accept: "text/event-stream" }),
        },
        (res) => {
          if (res.statusCode !== 200) reject(new Error(`GET stream answered ${res.statusCode}`));
          else resolveStream(res);
          res.resume();
        },
      );
      req.on("error", reject);
      req.end();
    });
  }

  async close(): Promise<void> {
    await new Promise<void>((resolveDelete) => {
      const req = request(
        {
          host: "127.0.0.1",
          port: this.port,
          path: this.path,
          method: "DELETE",
          agent: this.agent,
          headers: this.headers(),
        },
        (res) => {
          res.resume();
          res.on("end", () => resolveDelete());
        },
      );
      req.on("error", () => resolveDelete());
      req.end();
    });
  }
}

interface HttpTarget {
  label: string;
  proc: Proc;
  port: number;
  path: string;
  auth: Record<string, string>;
  agent: Agent;
  sessions: HttpMcpSession[];
  result: Measured;
  /** Every echo call sent, warm-up included. */
  sent: number;
}

async function openSessions(t: HttpTarget, n: number, agent: Agent, concurrency = 32): Promise<HttpMcpSession[]> {
  const out: HttpMcpSession[] = [];
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(concurrency, n) }, async () => {
      while (next < n) {
        next++;
        const s = new HttpMcpSession(t.port, t.path, agent, t.auth);
        await s.initialize();
        out.push(s);
      }
    }),
  );
  return out;
}

/** Every session calls echo in a closed loop for `seconds`; calls that started in time are counted. */
async function closedLoop(t: HttpTarget, seconds: number, tag: string, into?: Measured): Promise<void> {
  const t0 = now();
  const end = t0 + seconds * 1000;
  await Promise.all(
    t.sessions.map(async (s, k) => {
      for (let i = 0; now() < end; i++) {
        const message = `${tag}-${k}-${i}`;
        const t1 = now();
        t.sent++;
        const good = await s.echo(message).catch(() => false);
        if (!into) continue;
        if (good) {
          into.ok++;
          into.latencies.push(now() - t1);
        } else into.errors++;
      }
    }),
  );
  if (into) into.seconds += (now() - t0) / 1000;
}

function childrenOf(pid: number): number[] {
  const out: number[] = [];
  for (const [p, [ppid]] of sampleCpu().procs) if (ppid === pid) out.push(p);
  return out;
}

async function waitForPort(port: number, p: Proc, timeoutMs = 60_000): Promise<void> {
  const deadline = now() + timeoutMs;
  while (now() < deadline) {
    if (p.exitCode !== undefined) abort(`${p.name} exited (code ${p.exitCode}) before listening${diagnose(p)}`);
    const up = await new Promise<boolean>((r) => {
      const s = netConnect({ host: "127.0.0.1", port }, () => {
        s.destroy();
        r(true);
      });
      s.on("error", () => r(false));
    });
    if (up) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  abort(`${p.name} did not listen on port ${port} within ${timeoutMs} ms${diagnose(p)}`);
}

function freePort(): Promise<number> {
  return new Promise((resolvePort, reject) => {
    const s = createServer();
    s.once("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolvePort(port));
    });
  });
}

async function getJson(port: number, path: string): Promise<{ status: number; body: Record<string, unknown> }> {
  return new Promise((resolveGet, reject) => {
    const req = request({ host: "127.0.0.1", port, path, method: "GET", agent: false }, (res) => {
      let text = "";
      res.setEncoding("utf8");
      res.on("data", (d: string) => {
        text += d;
      });
      res.on("end", () => {
        try {
          resolveGet({ status: res.statusCode ?? 0, body: JSON.parse(text) });
        } catch (err) {
          reject(err);
        }
      });
    });
    req.on("error", reject);
    req.end();
  });
}

async function startWardenServe(configFile: string, nodeArgs: string[]): Promise<{ proc: Proc; port: number }> {
  const proc = startProc("warden serve", process.execPath, [...nodeArgs, WARDEN, "serve", "--config", configFile]);
  const port = await new Promise<number>((resolvePort, reject) => {
    let out = "";
    const timer = setTimeout(() => reject(new Aborted(`warden serve did not start in 60 s${diagnose(proc)}`)), 60_000);
    proc.child.stdout?.setEncoding("utf8");
    proc.child.stdout?.on("data", (d: string) => {
      out += d;
      const m = /listening on http:\/\/127\.0\.0\.1:(\d+)/.exec(out);
      if (m) {
        clearTimeout(timer);
        resolvePort(Number(m[1]));
      }
    });
    void proc.exited.then((code) => {
      clearTimeout(timer);
      reject(new Aborted(`warden serve exited (code ${code}) while starting${diagnose(proc)}`));
    });
  });
  const deadline = now() + 60_000;
  for (;;) {
    const r = await getJson(port, "/readyz").catch(() => ({ status: 0, body: {} }));
    if (r.status === 200) break;
    if (now() > deadline) abort(`warden serve never became ready: ${JSON.stringify(r.body)}${diagnose(proc)}`);
    await new Promise((r2) => setTimeout(r2, 100));
  }
  return { proc, port };
}

/** Runs `warden audit verify` on a data directory (with the log's own key; the warning it prints is expected). */
async function verifyAudit(dir: string): Promise<{ ok: boolean; text: string }> {
  const p = startProc("warden audit verify", process.execPath, [WARDEN, "audit", "verify", "--data-dir", dir]);
  let out = "";
  p.child.stdout?.setEncoding("utf8");
  const ended = new Promise((r) => p.child.stdout?.on("end", r));
  p.child.stdout?.on("data", (d: string) => {
    out += d;
  });
  const code = await stopProc(p, "stdin", 300_000);
  await Promise.race([ended, sleep(1000)]);
  const text = out.trim().split("\n")[0] ?? "";
  return { ok: code === 0 && text.startsWith("ok:"), text: text.replace(/, tree head .*/, "") || `exit ${code}` };
}

function rssKb(pid: number): { rss: number; hwm: number } {
  const status = readFileSync(`/proc/${pid}/status`, "utf8");
  const kb = (key: string) => Number(new RegExp(`^${key}:\\s+(\\d+) kB`, "m").exec(status)?.[1] ?? Number.NaN);
  return { rss: kb("VmRSS"), hwm: kb("VmHWM") };
}

// ---------------------------------------------------------------------------------------------
// Main
// ---------------------------------------------------------------------------------------------

const POLICY = `# The benchmark's policy: a realistic one for server-everything, not allow-all.
apiVersion: warden/v1
kind: ToolPolicy
metadata:
  name: bench-everything
  description: The benchmark agent may use the harmless tools of server-everything; nothing else.
spec:
  agent: ${AGENT}
  mcpServer: ${SERVER}
  defaultAction: deny
  rules:
    - name: harmless
      tools: [echo, get-sum, get-tiny-image, get-annotated-message]
      action: allow
      rateLimit: { requests: 1000000, per: 1m, key: session }
    - name: no-long-running
      tools: [trigger-long-running-operation]
      action: deny
      message: long-running operations are not allowed in the benchmark
`;

interface Row {
  what: string;
  value: string;
  target: string;
  ok: boolean;
}

async function main(): Promise<number> {
  const started = now();
  const root = mkdtempSync(join(process.env.BENCH_DIR ?? tmpdir(), "warden-gateway-bench-"));
  const cleanupDir = () => rmSync(root, { recursive: true, force: true });
  const onSignal = () => {
    killAll();
    cleanupDir();
    process.exit(2);
  };
  process.once("SIGINT", onSignal);
  process.once("SIGTERM", onSignal);
  process.once("exit", killAll);
  const nodeArgs = PROFILE_DIR ? ["--cpu-prof", `--cpu-prof-dir=${PROFILE_DIR}`] : [];
  const rows: Row[] = [];
  const audits: { what: string; dir: string; calls: number }[] = [];

  console.log("Warden gateway benchmark");
  console.log(
    `Node ${process.version}, ${process.platform} ${process.arch}, ${cpus()[0]?.model ?? "unknown CPU"} × ${NCPU}; ` +
      `data dir ${root} (${fsType(root)})`,
  );
  console.log(
    "Policy + durable audit log on (SQLite WAL, synchronous=FULL; a record is durable before the call is forwarded).\n",
  );
  try {
    const policyFile = join(root, "policy.yaml");
    writeFileSync(policyFile, POLICY);

    if (run("stdio")) {
      console.log(
        `stdio: ${int(STDIO_CALLS)} sequential echo calls per target after ${STDIO_WARMUP} warm-up calls, ` +
          `in ${STDIO_ROUNDS} alternating rounds; latency = one call's round trip`,
      );
      const commits = commitLatency(root);
      const line = await stdioPhase("line", join(root, "stdio-data"), policyFile, nodeArgs);
      const sdk = await stdioPhase("sdk", join(root, "stdio-data"), policyFile, []);
      console.log(resultHeader("  client → target"));
      for (const r of [line, sdk]) {
        console.log(resultLine(r.direct));
        console.log(resultLine(r.warden));
        if (r.relay) console.log(resultLine(r.relay));
        const ratioLine = (what: string, m: Measured) =>
          console.log(
            `  ${pad(`  ${what} ÷ direct, ${r.client}`, 44)}${lpad(`${(rate(m) / rate(r.direct)).toFixed(2)}×`, 34)}`,
          );
        ratioLine("warden run", r.warden);
        if (r.relay) ratioLine("pipe relay", r.relay);
      }
      const c50 = median(commits);
      const perCall = (m: Measured) => m.seconds / m.ok;
      const relay = line.relay ? perCall(line.relay) : perCall(line.direct);
      console.log(
        `  one durable SQLite commit on this disk (WAL, synchronous=FULL, 700-byte row): p50 ${msFmt(c50)}, p99 ${msFmt(percentile(commits, 99))}; ` +
          `the relay's time plus one such commit per call would give ${(perCall(line.direct) / (relay + c50 / 1000)).toFixed(2)}× direct`,
      );
      const ratio = rate(line.warden) / rate(line.direct);
      rows.push({
        what: "stdio: warden run ÷ direct, calls/s (line client)",
        value: `${ratio.toFixed(2)}×`,
        target: `≥ ${TARGET_STDIO_RATIO}×`,
        ok: ratio >= TARGET_STDIO_RATIO,
      });
      audits.push({ what: "warden run", dir: join(root, "stdio-data"), calls: 2 * (STDIO_WARMUP + STDIO_CALLS) });
      const errors = line.warden.errors + sdk.warden.errors;
      rows.push({
        what: "stdio: wrong or failed answers through warden run",
        value: int(errors),
        target: "0",
        ok: errors === 0,
      });
      console.log("");
    }

    if (run("http") || run("memory")) {
      const configFile = join(root, "warden.yaml");
      writeFileSync(
        configFile,
        `listen: { host: 127.0.0.1, port: 0 }
policy: ./policy.yaml
dataDir: ./serve-data
audit: { arguments: digest }
limits: { maxSessions: ${Math.max(10_000, MEMORY_SESSIONS + HTTP_SESSIONS + 100)} }
auth:
  apiKeys:
    - name: bench
      hash: sha256:${createHash("sha256").update(API_KEY).digest("hex")}
      agent: { name: ${AGENT} }
upstreams:
  ${SERVER}:
    command: ${JSON.stringify(process.execPath)}
    args: [${JSON.stringify(EVERYTHING)}, stdio]
`,
      );
      const serve = await startWardenServe(configFile, nodeArgs);
      const readyAt = now();
      const pid = serve.proc.pid;
      const agentOpts = { keepAlive: true, maxSockets: HTTP_SESSIONS, maxFreeSockets: HTTP_SESSIONS };
      const warden: HttpTarget = {
        label: "warden serve",
        proc: serve.proc,
        port: serve.port,
        path: `/mcp/${SERVER}`,
        auth: { authorization: `Bearer ${API_KEY}` },
        agent: new Agent(agentOpts),
        sessions: [],
        result: measured(`warden serve (/mcp/${SERVER}, policy + audit)`),
        sent: 0,
      };
      await sleep(1000);
      const idleEarly = rssKb(pid);
      // mcp-proxy starts while Warden idles (it is a separate process: Warden's memory does not see it).
      let proxy: HttpTarget | undefined;
      let proxyIdle: number | undefined;
      if (run("http")) {
        const proxyPort = await freePort();
        const proxyProc = startProc("mcp-proxy", process.execPath, [
          MCP_PROXY,
          "--host",
          "127.0.0.1",
          "--port",
          String(proxyPort),
          "--",
          process.execPath,
          EVERYTHING,
          "stdio",
        ]);
        await waitForPort(proxyPort, proxyProc);
        proxy = {
          label: "mcp-proxy",
          proc: proxyProc,
          port: proxyPort,
          path: "/mcp",
          auth: {},
          agent: new Agent(agentOpts),
          sessions: [],
          result: measured("mcp-proxy 6 (/mcp, no policy)"),
          sent: 0,
        };
      }
      await sleep(readyAt + IDLE_SETTLE_SECONDS * 1000 - now());
      const idle = rssKb(pid);
      if (proxy) proxyIdle = rssKb(proxy.proc.pid).rss;

      if (proxy) {
        const targets = [warden, proxy];
        console.log(
          `HTTP: ${HTTP_SESSIONS} sessions per target, each calling echo in a closed loop; ${HTTP_WARMUP_SECONDS} s warm-up, ` +
            `then ${HTTP_SECONDS} s per target in alternating ${HTTP_SLICE_SECONDS} s turns; latency = one POST's round trip`,
        );
        for (const t of targets) {
          t.sessions = await openSessions(t, HTTP_SESSIONS, t.agent).catch((err: Error) =>
            abort(`${t.label}: could not open sessions: ${err.message}${diagnose(t.proc)}`),
          );
          await closedLoop(t, HTTP_WARMUP_SECONDS, "warm");
        }
        for (let spent = 0, turn = 0; spent < HTTP_SECONDS - 1e-9; spent += HTTP_SLICE_SECONDS, turn++) {
          const seconds = Math.min(HTTP_SLICE_SECONDS, HTTP_SECONDS - spent);
          const order = turn % 2 === 0 ? targets : [...targets].reverse();
          for (const t of order) {
            await measureSlice(t.result, t.proc.pid, () => closedLoop(t, seconds, `t${turn}`, t.result));
          }
        }
        console.log(resultHeader("  target"));
        for (const t of targets) console.log(resultLine(t.result));
        const ratio = rate(warden.result) / rate(proxy.result);
        console.log(`  ${pad("  warden serve ÷ mcp-proxy", 44)}${lpad(`${ratio.toFixed(2)}×`, 34)}`);
        for (const t of targets) {
          const c = t.result.cpu;
          const cores = (x: number) => (x / t.result.seconds).toFixed(2);
          console.log(
            `  ${t.label}: the load generator used ${cores(c.client)} of a core, the server ${cores(c.server)}, its upstream ${cores(c.upstream)}`,
          );
        }
        // What this machine allows: both sides share its CPUs with the load generator and the upstream.
        const calls = (m: Measured) => Math.max(1, m.ok + m.errors);
        const total = (m: Measured) => (m.cpu.client + m.cpu.server + m.cpu.upstream) / calls(m);
        const rest = (warden.result.cpu.client + warden.result.cpu.upstream) / calls(warden.result);
        const us = (sec: number) => `${int(sec * 1e6)} µs`;
        console.log(
          `  per call, the three processes used ${us(total(warden.result))} of CPU through Warden and ${us(total(proxy.result))} through mcp-proxy: ` +
            `on ${NCPU} otherwise idle CPUs at most ${int(NCPU / total(warden.result))} and ${int(NCPU / total(proxy.result))} calls/s ` +
            `(${(total(proxy.result) / total(warden.result)).toFixed(1)}×); the load generator and upstream alone (${us(rest)}) ` +
            `would hold even a gateway using no CPU to ${(total(proxy.result) / rest).toFixed(1)}× mcp-proxy's ceiling`,
        );
        console.log(
          `  closed loop: mean latency = ${HTTP_SESSIONS} sessions ÷ throughput = ${msFmt((HTTP_SESSIONS / rate(warden.result)) * 1000)} for warden serve; ` +
            `a p99 under ${TARGET_HTTP_P99_MS} ms needs more than ${int(HTTP_SESSIONS / (TARGET_HTTP_P99_MS / 1000))} calls/s even if every call took as long`,
        );
        rows.push({
          what: "HTTP: warden serve ÷ mcp-proxy, calls/s",
          value: `${ratio.toFixed(2)}×`,
          target: `≥ ${TARGET_HTTP_RATIO}×`,
          ok: ratio >= TARGET_HTTP_RATIO,
        });
        const p99 = percentile(warden.result.latencies, 99);
        rows.push({
          what: "HTTP: warden serve p99",
          value: msFmt(p99),
          target: `< ${TARGET_HTTP_P99_MS} ms`,
          ok: p99 < TARGET_HTTP_P99_MS,
        });
        rows.push({
          what: "HTTP: wrong or failed answers through warden serve",
          value: int(warden.result.errors),
          target: "0",
          ok: warden.result.errors === 0,
        });
        for (const s of proxy.sessions) await s.close();
        await stopProc(proxy.proc, "SIGTERM", 10_000);
        for (const s of warden.sessions) await s.close();
        warden.sessions = [];
        console.log("");
      }

      const memLine = (what: string, kb: number, note = "") =>
        console.log(`  ${pad(what, 66)}${lpad(mb(kb), 9)}${note ? `   ${note}` : ""}`);
      console.log("Memory: VmRSS of the warden serve process (its upstream server is a separate process, not counted)");
      memLine("idle, 1 s after /readyz answered 200", idleEarly.rss);
      memLine(
        `idle, settled: ${IDLE_SETTLE_SECONDS} s after ready (V8's memory reducer has run)`,
        idle.rss,
        "← judged",
      );
      if (proxyIdle !== undefined)
        memLine(`mcp-proxy idle, ${IDLE_SETTLE_SECONDS} s after start (for comparison)`, proxyIdle);
      rows.push({
        what: "memory: warden serve idle (settled), VmRSS",
        value: mb(idle.rss),
        target: `< ${TARGET_IDLE_MB} MB`,
        ok: idle.rss < TARGET_IDLE_MB * 1024,
      });
      if (run("memory")) {
        let before = { what: "settled idle", kb: idle.rss };
        if (proxy) {
          before = { what: "the line above", kb: rssKb(pid).rss };
          memLine(`after the HTTP run, its ${HTTP_SESSIONS} sessions deleted`, before.kb);
        }
        const manyAgent = new Agent({ keepAlive: true, maxSockets: 32 });
        const held = await openSessions(warden, MEMORY_SESSIONS, manyAgent).catch((err: Error) =>
          abort(`warden serve: could not open ${MEMORY_SESSIONS} sessions: ${err.message}${diagnose(serve.proc)}`),
        );
        const count = Number((await getJson(serve.port, "/readyz")).body.sessions);
        if (count !== MEMORY_SESSIONS) abort(`warden serve reports ${count} sessions, expected ${MEMORY_SESSIONS}`);
        await sleep(1000);
        const loaded = rssKb(pid);
        memLine(
          `${int(MEMORY_SESSIONS)} sessions held (/readyz: ${int(count)}), no GET stream, 1 s after`,
          loaded.rss,
          `← judged; ${((loaded.rss - before.kb) / MEMORY_SESSIONS).toFixed(1)} kB per session over ${before.what}`,
        );
        // Informative: the same sessions, each also holding its GET stream open (one socket each).
        const streamAgent = new Agent({ keepAlive: false, maxSockets: Number.POSITIVE_INFINITY });
        const streams = await Promise.all(held.map((s) => s.openStream(streamAgent))).catch((err: Error) =>
          abort(`warden serve: could not open GET streams: ${err.message}${diagnose(serve.proc)}`),
        );
        await sleep(1000);
        const streaming = rssKb(pid);
        memLine(
          `the same ${int(MEMORY_SESSIONS)} sessions, each with its GET stream open (not judged)`,
          streaming.rss,
          `peak VmHWM over the run ${mb(streaming.hwm)}`,
        );
        for (const s of streams) s.destroy();
        manyAgent.destroy();
        streamAgent.destroy();
        rows.push({
          what: `memory: warden serve, ${int(MEMORY_SESSIONS)} sessions, VmRSS`,
          value: mb(loaded.rss),
          target: `< ${TARGET_SESSIONS_MB} MB`,
          ok: loaded.rss < TARGET_SESSIONS_MB * 1024,
        });
      }
      console.log("");
      const stopped = await stopProc(serve.proc, "SIGTERM", 30_000);
      if (stopped !== 0)
        console.log(`note: warden serve did not stop cleanly on SIGTERM (${stopped})${diagnose(serve.proc)}`);
      warden.agent.destroy();
      audits.push({ what: "warden serve", dir: join(root, "serve-data"), calls: warden.sent });
    }

    if (audits.length > 0) {
      console.log("Audit logs, checked with warden audit verify after the gateways stopped");
      let allOk = true;
      for (const a of audits) {
        const v = await verifyAudit(a.dir);
        allOk &&= v.ok;
        console.log(`  ${pad(a.what, 14)} ${v.text}; ${int(a.calls)} echo calls went through it (warm-up included)`);
      }
      rows.push({
        what: "audit logs verify (warden audit verify)",
        value: allOk ? "ok" : "FAILED",
        target: "ok",
        ok: allOk,
      });
      console.log("");
    }

    console.log(`${pad("Targets", 56)}${pad("measured", 12)}${pad("target", 12)}result`);
    for (const r of rows)
      console.log(`  ${pad(r.what, 54)}${pad(r.value, 12)}${pad(r.target, 12)}${r.ok ? "PASS" : "FAIL"}`);
    console.log(`\n${cpuLine()}`);
    const allPass = rows.every((r) => r.ok);
    console.log(
      `${allPass ? "All targets met" : "Some targets missed"}${ONLY ? ` (of the phases run: ${ONLY.join(", ")})` : ""}. ` +
        `Run time ${((now() - started) / 1000).toFixed(1)} s.`,
    );
    return allPass ? 0 : 1;
  } finally {
    killAll();
    cleanupDir();
  }
}

/** The machine-load line: how much CPU processes other than this benchmark's took while it measured. */
function cpuLine(): string {
  if (cpuSlices.length === 0) return "No CPU samples.";
  const foreign = cpuSlices.map((s) => s.foreign + s.steal);
  const busy = cpuSlices.filter((s) => s.foreign + s.steal > FOREIGN_LIMIT);
  const worst = cpuSlices.reduce((a, b) => (b.foreign + b.steal > a.foreign + a.steal ? b : a));
  const who =
    worst.foreignTop && worst.foreignTop.share > 0.05
      ? `; the busiest other process: ${commandOf(worst.foreignTop)} (${pct(worst.foreignTop.share)} of a core)`
      : "";
  return (
    `CPU taken by other processes (and VM steal) during the measured slices, share of all ${NCPU} CPUs: ` +
    `median ${pct(median(foreign))}, highest ${pct(Math.max(...foreign))}; ${busy.length} of ${cpuSlices.length} slices over ` +
    `${pct(FOREIGN_LIMIT)}` +
    (busy.length > 0
      ? `. WARNING: other processes took CPU from this run, so some figures are off; rerun on a quiet machine${who}.`
      : " (the machine was otherwise quiet).")
  );
}

function fsType(path: string): string {
  try {
    const mounts = readFileSync("/proc/mounts", "utf8")
      .split("\n")
      .map((l) => l.split(" "))
      .filter((f) => f.length > 2 && path.startsWith(f[1] as string))
      .sort((a, b) => (b[1] as string).length - (a[1] as string).length);
    return mounts[0] ? `${mounts[0][2]} on ${mounts[0][0]}` : "unknown filesystem";
  } catch {
    return "unknown filesystem";
  }
}

let code: number;
try {
  code = await main();
} catch (err) {
  killAll();
  console.error(`\nABORTED: ${err instanceof Aborted ? err.message : ((err as Error).stack ?? err)}`);
  code = 2;
}
process.exit(code);
