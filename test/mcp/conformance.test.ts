// The official MCP conformance suite (@modelcontextprotocol/conformance 0.1.11,
// server mode) against @modelcontextprotocol/server-everything twice: directly
// (its own Streamable HTTP mode) and behind `warden serve` (the same server as a
// stdio upstream, allow-all policy, endpoints /mcp/everything and /mcp). Warden
// must not make any scenario fail that passes directly; the committed baseline
// (test/mcp/conformance-baseline.yml) lists the failures we expect and why.
// See docs/conformance.md.
//
// Network: every process binds 127.0.0.1 only. server-everything calls
// `app.listen(PORT)` (all interfaces), so it runs with the preload
// test/fixtures/listen-loopback.cjs. The conformance CLI in server mode is only a
// client; it runs with the same preload too, and the test checks that it never
// listened at all. Warden's and server-everything's listening sockets are read
// from /proc and must all be on loopback.
import assert from "node:assert/strict";
import { type ChildProcess, spawn } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { after, before, describe, it } from "node:test";
import { parse as parseYaml } from "yaml";
import { policyVersions } from "../helpers/gateway.js";
import { childEnv, type ProcessResult, runProcess } from "../helpers/process.js";

const ROOT = resolve(import.meta.dirname, "..", "..", "..");
const CLI = join(ROOT, "dist", "src", "cli", "main.js");
const PRELOAD = join(ROOT, "test", "fixtures", "listen-loopback.cjs");
const BASELINE = join(ROOT, "test", "mcp", "conformance-baseline.yml");
const CONFORMANCE = join(ROOT, "node_modules", "@modelcontextprotocol", "conformance", "dist", "index.js");
const EVERYTHING = join(ROOT, "node_modules", "@modelcontextprotocol", "server-everything", "dist", "index.js");
const LISTEN_LINE = /^LISTEN-LOOPBACK (\S+):(\d+)$/m;

/** Children inherit no test-runner context (node --test sets NODE_TEST_CONTEXT) and no NODE_OPTIONS. */

interface Check {
  id: string;
  name: string;
  status: "SUCCESS" | "FAILURE" | "WARNING" | "INFO" | "SKIPPED";
  errorMessage?: string;
}

interface Run {
  url: string;
  code: number | null;
  stdout: string;
  stderr: string;
  /** scenario -> its checks (a scenario that threw has a single synthetic FAILURE). */
  scenarios: Map<string, Check[]>;
}

/** The conformance tool's rule (expected-failures.ts, evaluateBaseline): a FAILURE or a WARNING fails the scenario. */
const failed = (checks: Check[]) => checks.some((c) => c.status === "FAILURE" || c.status === "WARNING");
const failing = (run: Run) => new Set([...run.scenarios].filter(([, c]) => failed(c)).map(([s]) => s));

/** `conformance list --server`: the scenario names of this tool version. */
async function scenarioNames(): Promise<string[]> {
  const r = await exec(process.execPath, [CONFORMANCE, "list", "--server"], 20_000);
  assert.equal(r.code, 0, r.stderr);
  return [...r.stdout.matchAll(/^ {2}- (\S+)$/gm)].map((m) => m[1] as string);
}

/** Runs every scenario (--suite all: active and pending) against url; results parsed from -o DIR. */
async function conformance(url: string, outDir: string, names: string[]): Promise<Run> {
  const r = await exec(
    process.execPath,
    ["-r", PRELOAD, CONFORMANCE, "server", "--url", url, "--suite", "all", "-o", outDir],
    40_000,
  );
  // Server mode is a client: nothing may listen (the preload would have printed a line).
  assert.doesNotMatch(r.stderr, LISTEN_LINE, `the conformance CLI opened a listening socket:\n${r.stderr}`);
  const scenarios = new Map<string, Check[]>();
  for (const entry of readdirSync(outDir)) {
    // server-<scenario>-<ISO timestamp with : and . as ->
    const m = /^server-(.+)-\d{4}-\d\d-\d\dT\d\d-\d\d-\d\d-\d{3}Z$/.exec(entry);
    if (!m) continue;
    const file = join(outDir, entry, "checks.json");
    const checks: Check[] = existsSync(file)
      ? (JSON.parse(readFileSync(file, "utf8")) as Check[])
      : [
          {
            id: m[1] as string,
            name: "crashed",
            status: "FAILURE",
            errorMessage: "the scenario threw (no checks.json)",
          },
        ];
    scenarios.set(m[1] as string, checks);
  }
  const missing = names.filter((n) => !scenarios.has(n));
  assert.deepEqual(missing, [], `no results for ${missing.join(", ")} from ${url}:\n${r.stdout.slice(-3000)}`);
  return { url, ...r, scenarios };
}

function exec(cmd: string, args: string[], timeoutMs: number): Promise<ProcessResult> {
  return runProcess(cmd, args, { env: childEnv(), cwd: ROOT, timeoutMs });
}

/** A long-running child; resolves once `ready` matches its output. */
function start(
  args: string[],
  ready: { stream: "stdout" | "stderr"; pattern: RegExp },
  env: Record<string, string> = {},
): Promise<{ child: ChildProcess; match: RegExpExecArray; output: () => string }> {
  return new Promise((resolvePromise, reject) => {
    const child = spawn(process.execPath, args, { stdio: ["ignore", "pipe", "pipe"], env: childEnv(env), cwd: ROOT });
    children.push(child);
    let out = "";
    let done = false;
    const timer = setTimeout(() => fail(new Error(`not ready after 15 s: ${args.join(" ")}\n${out}`)), 15_000);
    const fail = (err: Error) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      reject(err);
    };
    const watch = (stream: "stdout" | "stderr") => (d: string) => {
      out += d;
      if (done || stream !== ready.stream) return;
      const m = ready.pattern.exec(out);
      if (m) {
        done = true;
        clearTimeout(timer);
        resolvePromise({ child, match: m, output: () => out });
      }
    };
    child.stdout?.setEncoding("utf8").on("data", watch("stdout"));
    child.stderr?.setEncoding("utf8").on("data", watch("stderr"));
    child.on("error", fail);
    child.on("exit", (code, signal) => fail(new Error(`exited (${code ?? signal}) before ready:\n${out}`)));
  });
}

/** Resolves with the exit code once the child has exited. */
function exited(child: ChildProcess): Promise<number | null> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve(child.exitCode);
  return new Promise((r) => child.once("exit", (code) => r(code)));
}

// ---- listening sockets from /proc (Linux) ----

/** pid and all its descendants. */
function processTree(pid: number): number[] {
  const parents = new Map<number, number[]>();
  for (const e of readdirSync("/proc")) {
    if (!/^\d+$/.test(e)) continue;
    try {
      const stat = readFileSync(`/proc/${e}/stat`, "utf8");
      const ppid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
      parents.set(ppid, [...(parents.get(ppid) ?? []), Number(e)]);
    } catch {
      // the process went away
    }
  }
  const out: number[] = [];
  const walk = (p: number) => {
    out.push(p);
    for (const c of parents.get(p) ?? []) walk(c);
  };
  walk(pid);
  return out;
}

function hexAddress(hex: string): string {
  if (hex.length === 8) return [6, 4, 2, 0].map((i) => Number.parseInt(hex.slice(i, i + 2), 16)).join(".");
  // IPv6: four 32-bit words, each in host (little-endian) byte order.
  const bytes: string[] = [];
  for (let w = 0; w < 32; w += 8) for (const i of [6, 4, 2, 0]) bytes.push(hex.slice(w + i, w + i + 2));
  const groups: string[] = [];
  for (let i = 0; i < 16; i += 2) groups.push(Number.parseInt(`${bytes[i]}${bytes[i + 1]}`, 16).toString(16));
  return groups.join(":");
}

/** Every TCP socket in LISTEN state owned by pid or its descendants: "address:port". */
function listeningSockets(pid: number): string[] {
  const inodes = new Set<string>();
  for (const p of processTree(pid)) {
    let fds: string[] = [];
    try {
      fds = readdirSync(`/proc/${p}/fd`);
    } catch {
      continue;
    }
    for (const fd of fds) {
      try {
        const m = /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/${p}/fd/${fd}`));
        if (m) inodes.add(m[1] as string);
      } catch {
        // closed meanwhile
      }
    }
  }
  const out: string[] = [];
  for (const table of ["/proc/net/tcp", "/proc/net/tcp6"]) {
    if (!existsSync(table)) continue;
    for (const line of readFileSync(table, "utf8").split("\n").slice(1)) {
      const f = line.trim().split(/\s+/);
      if (f.length < 10 || f[3] !== "0A" || !inodes.has(f[9] as string)) continue;
      const [addr = "", port = ""] = (f[1] as string).split(":");
      out.push(`${hexAddress(addr)}:${Number.parseInt(port, 16)}`);
    }
  }
  return out;
}

const LOOPBACK_SOCKET = /^(127\.0\.0\.1|0:0:0:0:0:0:0:1|0:0:0:0:0:ffff:7f00:1):\d+$/;

// ---- the baseline ----

interface Baseline {
  /** Expected failures behind Warden on /mcp/everything (the conformance tool reads this key). */
  server: string[];
  /** Further expected failures on the aggregate /mcp only (ignored by the conformance tool). */
  aggregate: string[];
}

function loadBaseline(): Baseline {
  const doc = parseYaml(readFileSync(BASELINE, "utf8")) as Partial<Baseline> | null;
  return { server: doc?.server ?? [], aggregate: doc?.aggregate ?? [] };
}

function describeFailures(run: Run, names: Iterable<string>): string {
  const lines: string[] = [];
  for (const n of names) {
    const bad = (run.scenarios.get(n) ?? []).filter((c) => c.status === "FAILURE" || c.status === "WARNING");
    lines.push(`  ${n}: ${bad.map((c) => `${c.id} ${c.status}: ${c.errorMessage ?? ""}`).join("; ")}`);
  }
  return lines.join("\n");
}

/** The table docs/conformance.md shows (printed as a diagnostic so the doc can be refreshed from a run). */
function table(names: string[], runs: [string, Run][]): string {
  const cell = (checks: Check[] | undefined) => {
    if (!checks) return "—";
    const ok = checks.filter((c) => c.status === "SUCCESS").length;
    const bad = checks.filter((c) => c.status === "FAILURE").length;
    const warn = checks.filter((c) => c.status === "WARNING").length;
    return `${failed(checks) ? "FAIL" : "pass"} (${ok}✓ ${bad}✗${warn ? ` ${warn}⚠` : ""})`;
  };
  const head = `| scenario | ${runs.map(([t]) => t).join(" | ")} |\n|---|${runs.map(() => "---").join("|")}|`;
  return [head, ...names.map((n) => `| ${n} | ${runs.map(([, r]) => cell(r.scenarios.get(n))).join(" | ")} |`)].join(
    "\n",
  );
}

// ---- the test ----

const children: ChildProcess[] = [];
const tmp = mkdtempSync(join(tmpdir(), "warden-conformance-"));

after(async () => {
  // After a failure something may still run: kill each child's whole tree (Warden's stdio upstream too).
  for (const c of children) {
    if (c.exitCode !== null || c.signalCode !== null || c.pid === undefined) continue;
    for (const pid of processTree(c.pid).reverse()) {
      try {
        process.kill(pid, "SIGKILL");
      } catch {
        // already gone
      }
    }
  }
  await Promise.all(children.map(exited));
  rmSync(tmp, { recursive: true, force: true });
});

describe("MCP conformance suite: server-everything directly and behind warden serve", { timeout: 120_000 }, () => {
  let names: string[];
  let direct: Run;
  let behind: Run;
  let aggregate: Run;
  let warden: ChildProcess;
  let directServer: ChildProcess;
  const dataDir = join(tmp, "data");
  const sockets: Record<string, string[]> = {};
  let baseline: Baseline;

  before(async () => {
    baseline = loadBaseline();
    names = await scenarioNames();
    assert.ok(names.length >= 30, `expected the 32 server scenarios of conformance 0.1.11, got ${names.length}`);

    // server-everything's own Streamable HTTP mode, forced onto 127.0.0.1; PORT=0 lets the kernel pick.
    const se = await start(
      ["-r", PRELOAD, EVERYTHING, "streamableHttp"],
      { stream: "stderr", pattern: LISTEN_LINE },
      { PORT: "0" },
    );
    directServer = se.child;
    const directUrl = `http://127.0.0.1:${se.match[2]}/mcp`;

    // warden serve: server-everything as a stdio upstream, an allow-all policy, anonymous on loopback.
    writeFileSync(
      join(tmp, "allow-all.yaml"),
      `apiVersion: warden/v1
kind: ToolPolicy
metadata:
  name: conformance-allow-all
  description: The conformance client may call every tool of every server.
spec:
  agent: conformance
  mcpServer: "*"
  defaultAction: allow
  rules:
    - name: everything
      tools: ["*"]
      action: allow
`,
    );
    writeFileSync(
      join(tmp, "warden.yaml"),
      `listen: {host: 127.0.0.1, port: 0}
policy: ./allow-all.yaml
dataDir: ./data
audit: {arguments: digest}
auth:
  # The conformance CLI has no option to send headers, so the caller is anonymous (allowed on loopback only).
  anonymous:
    agent: {name: conformance}
upstreams:
  everything:
    command: ${JSON.stringify(process.execPath)}
    args: [${JSON.stringify(EVERYTHING)}, stdio]
`,
    );
    const w = await start([CLI, "serve", "--config", join(tmp, "warden.yaml")], {
      stream: "stdout",
      pattern: /listening on (http:\/\/127\.0\.0\.1:\d+)/,
    });
    warden = w.child;
    const base = w.match[1] as string;

    direct = await conformance(directUrl, join(tmp, "out-direct"), names);
    behind = await conformance(`${base}/mcp/everything`, join(tmp, "out-warden"), names);
    aggregate = await conformance(`${base}/mcp`, join(tmp, "out-aggregate"), names);

    // While everything still runs: what listens, and where.
    sockets.direct = listeningSockets(directServer.pid as number);
    sockets.warden = listeningSockets(warden.pid as number);

    directServer.kill("SIGTERM");
    warden.kill("SIGTERM");
  });

  it("runs every scenario against all three URLs", (t) => {
    t.diagnostic(
      `\n${table(names, [
        ["direct", direct],
        ["Warden /mcp/everything", behind],
        ["Warden /mcp", aggregate],
      ])}`,
    );
    for (const run of [direct, behind, aggregate]) assert.equal(run.scenarios.size, names.length, run.url);
  });

  it("fails no scenario behind Warden (/mcp/everything) that passes directly, except the baseline", () => {
    const direct_ = failing(direct);
    const allowed = new Set([...direct_, ...baseline.server]);
    const unexpected = [...failing(behind)].filter((s) => !allowed.has(s));
    assert.deepEqual(
      unexpected,
      [],
      `scenarios that fail behind Warden but pass directly:\n${describeFailures(behind, unexpected)}`,
    );
  });

  it("no check that succeeds directly fails or warns behind Warden (/mcp/everything)", () => {
    // Finer than per scenario: a scenario that fails directly for a fixture reason can still have checks that pass.
    // INFO behind Warden is fine: it means "not applicable" (e.g. Warden answered JSON where SSE was optional).
    const regressions: string[] = [];
    for (const [scenario, checks] of direct.scenarios) {
      const theirs = behind.scenarios.get(scenario) ?? [];
      for (const c of checks.filter((x) => x.status === "SUCCESS")) {
        const w = theirs.find((x) => x.id === c.id);
        if (w && (w.status === "FAILURE" || w.status === "WARNING"))
          regressions.push(`${scenario}/${c.id}: ${w.status} ${w.errorMessage ?? ""}`);
      }
    }
    assert.deepEqual(regressions, []);
  });

  it("the aggregate /mcp fails nothing beyond the direct failures and the baseline", () => {
    const allowed = new Set([...failing(direct), ...baseline.server, ...baseline.aggregate]);
    const unexpected = [...failing(aggregate)].filter((s) => !allowed.has(s));
    assert.deepEqual(
      unexpected,
      [],
      `scenarios that fail on /mcp but pass directly:\n${describeFailures(aggregate, unexpected)}`,
    );
  });

  it("the baseline is not stale: every entry still fails where it says", () => {
    // The conformance tool's own rule: a listed scenario that passes is a stale entry (exit 1).
    const wardenFailing = failing(behind);
    const aggregateFailing = failing(aggregate);
    assert.deepEqual(
      baseline.server.filter((s) => !wardenFailing.has(s)),
      [],
      "stale server entries (they pass behind Warden now; remove them)",
    );
    assert.deepEqual(
      baseline.aggregate.filter((s) => !aggregateFailing.has(s)),
      [],
      "stale aggregate entries (they pass on /mcp now; remove them)",
    );
    for (const s of [...baseline.server, ...baseline.aggregate]) assert.ok(names.includes(s), `unknown scenario ${s}`);
  });

  it("DNS rebinding protection: fails directly (server-everything checks nothing), passes behind Warden", () => {
    assert.ok(failing(direct).has("dns-rebinding-protection"), "server-everything now checks Host/Origin");
    for (const run of [behind, aggregate]) {
      const checks = run.scenarios.get("dns-rebinding-protection") ?? [];
      assert.ok(checks.length >= 2 && checks.every((c) => c.status === "SUCCESS"), JSON.stringify(checks));
    }
  });

  it("everything listened on 127.0.0.1 only", (t) => {
    t.diagnostic(`listening sockets: ${JSON.stringify(sockets)}`);
    assert.ok(sockets.direct?.length, "server-everything's listening socket was not found");
    assert.ok(sockets.warden?.length, "Warden's listening socket was not found");
    for (const [who, list] of Object.entries(sockets)) {
      for (const s of list) assert.match(s, LOOPBACK_SOCKET, `${who} listens on ${s}`);
    }
    // Warden's stdio upstream listens on nothing: the only socket in Warden's process tree is Warden's own.
    assert.equal(sockets.warden?.length, 1, `Warden's process tree listens on ${sockets.warden?.join(", ")}`);
  });

  it("Warden stops cleanly and its audit log verifies", async () => {
    assert.equal(await exited(warden), 0, "warden serve did not exit 0 on SIGTERM");
    await exited(directServer);
    const verify = await exec(process.execPath, [CLI, "audit", "verify", "--data-dir", dataDir], 20_000);
    assert.equal(verify.code, 0, `warden audit verify failed:\n${verify.stdout}\n${verify.stderr}`);
    const query = await exec(
      process.execPath,
      [CLI, "audit", "query", "--data-dir", dataDir, "--format", "jsonl", "--limit", "100000"],
      20_000,
    );
    assert.equal(query.code, 0, query.stderr);
    const records = query.stdout
      .split("\n")
      .filter((l) => l.trim() !== "")
      .map((l) => JSON.parse(l) as Record<string, unknown> & { detail?: Record<string, unknown> });
    const events = records.filter((r) => r.type === "lifecycle").map((r) => r.detail?.event);
    assert.ok(events.includes("start") && events.includes("stop"), `lifecycle events: ${events.join(", ")}`);
    // The dns-rebinding scenario's forged Host was refused and recorded, once per Warden run.
    const hostRefusals = records.filter((r) => r.type === "decision" && r.detail?.stage === "host");
    assert.equal(hostRefusals.length, 2, JSON.stringify(hostRefusals));
    // Every tools/call the suite made was decided and recorded under the real server name;
    // on /mcp, its bare (unprefixed) tool names name no server and are recorded as refused.
    const calls = records.filter((r) => r.type === "decision" && typeof r.tool === "string");
    assert.ok(calls.length > 0, "no tool-call decisions recorded");
    for (const r of calls) {
      assert.deepEqual(r.agent, { name: "conformance" });
      if (r.server === null) {
        assert.equal(r.detail?.stage, "protocol");
        assert.match(String(r.reason), /^no upstream serves /);
      } else assert.equal(r.server, "everything");
    }
    assert.ok(calls.some((r) => r.server === "everything"));
    // ... and names the version of the policy that decided it.
    const versions = await policyVersions([join(tmp, "allow-all.yaml")]);
    for (const r of calls.filter((c) => c.server !== null)) {
      const policy = r.policy as { name?: string; version?: string } | undefined;
      assert.equal(policy?.name, "conformance-allow-all");
      assert.equal(policy?.version, versions.get("conformance-allow-all"));
    }
  });
});
