import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import { runWarden } from "../helpers/cli.js";

const root = fileURLToPath(new URL("../../../", import.meta.url));
const examples = join(root, "examples", "policies");
const bin = join(root, "dist/src/cli/main.js");

async function run(args: string[], stdin = "") {
  const r = await runWarden(args, stdin);
  return { code: r.code, stdout: r.out, stderr: r.err };
}

const prCall = {
  agent: { name: "dev-assistant", labels: {} },
  user: { id: "alice", groups: ["dev"] },
  request: { server: "github", tool: "create_pull_request", arguments: { base: "feature/x" } },
  session: { id: "s1" },
};

let dir: string;
before(async () => {
  dir = await mkdtemp(join(tmpdir(), "warden-cli-"));
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe("warden policy validate", () => {
  it("exits 0 with a summary for valid policies", async () => {
    const r = await run(["policy", "validate", examples]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^valid: 4 ToolPolicy, 3 PolicyTest; policy set sha256:[0-9a-f]{64}\n$/);
    assert.equal(r.stderr, "");
  });

  it("exits 1 and prints each problem as file:line:col: message", async () => {
    const bad = join(dir, "bad.yaml");
    await writeFile(
      bad,
      "kind: ToolPolicy\nmetadata: {name: p}\nspec:\n  agent: a\n  mcpServer: s\n  defualtAction: deny\n  rules:\n  - tools: [a]\n    action: allow\n    conditions: [{cel: \"request.tool.matchez('x')\"}]\n",
    );
    const r = await run(["policy", "validate", bad]);
    assert.equal(r.code, 1);
    assert.equal(r.stdout, "");
    const lines = r.stderr.trim().split("\n");
    assert.equal(lines.length, 2, r.stderr);
    assert.match(lines[0] ?? "", new RegExp(`^${bad}:6:3: error: unknown field "defualtAction"`));
    assert.match(lines[1] ?? "", new RegExp(`^${bad}:10:37: error: CEL: unknown method "matchez"`));
  });

  it("prints warnings on stderr but still exits 0", async () => {
    const warn = join(dir, "warn.yaml");
    await writeFile(
      warn,
      "kind: ToolPolicy\nmetadata: {name: p}\nspec:\n  agent: a\n  mcpServer: s\n  rules:\n  - {tools: ['*'], action: deny}\n  - {tools: [a], action: allow}\n",
    );
    const r = await run(["policy", "validate", warn]);
    assert.equal(r.code, 0);
    assert.match(r.stderr, /warn\.yaml:8:5: warning: rule rules\[1\] can never decide/);
  });

  it("exits 2 on usage errors", async () => {
    assert.equal((await run(["policy", "validate"])).code, 2);
    assert.equal((await run(["policy", "frobnicate"])).code, 2);
    assert.equal((await run(["nope"])).code, 2);
  });
});

describe("warden policy eval", () => {
  it("prints the documented decision object for one JSON input", async () => {
    const file = join(dir, "in.json");
    await writeFile(file, JSON.stringify(prCall));
    const r = await run(["policy", "eval", "--policy", join(examples, "github"), "--input", file]);
    assert.equal(r.code, 0, r.stderr);
    const lines = r.stdout.trim().split("\n");
    assert.equal(lines.length, 1);
    const d = JSON.parse(lines[0] ?? "");
    assert.deepEqual(Object.keys(d).slice(0, 9), [
      "decision",
      "enforced",
      "policy",
      "version",
      "policySet",
      "rule",
      "reason",
      "approval",
      "obligations",
    ]);
    assert.equal(d.decision, "allow");
    assert.equal(d.enforced, true);
    assert.equal(d.policy, "github-dev-agent");
    assert.match(d.version, /^sha256:[0-9a-f]{64}$/);
    assert.match(d.policySet, /^sha256:[0-9a-f]{64}$/);
    assert.deepEqual(d.rule, { index: 1, name: null });
    assert.equal(d.approval, null);
  });

  it("reads JSON Lines from stdin and answers one line per input, in order", async () => {
    const calls = ["main", "feature/y", "production"].map((base) =>
      JSON.stringify({ ...prCall, request: { ...prCall.request, arguments: { base } } }),
    );
    const merge = JSON.stringify({
      agent: { name: "dev-assistant" },
      request: { server: "github", tool: "merge_pull_request" },
    });
    const r = await run(["policy", "eval", "--policy", examples, "--input", "-"], `${calls.join("\n")}\n\n${merge}\n`);
    assert.equal(r.code, 0, r.stderr);
    const out = r.stdout
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l));
    assert.deepEqual(
      out.map((d) => d.decision),
      ["deny", "allow", "deny", "require_approval"],
    );
    assert.equal(out[3].approval.timeout, "30m");
    assert.equal(out[3].approval.timeoutMs, 1_800_000);
  });

  it("exits 2, naming the line, for unusable input — and decides nothing", async () => {
    const good = JSON.stringify(prCall);
    const badJson = await run(["policy", "eval", "--policy", examples, "--input", "-"], `${good}\n{"agent":\n`);
    assert.equal(badJson.code, 2);
    assert.equal(badJson.stdout, "");
    assert.match(badJson.stderr, /-:2: not valid JSON/);
    const typo = await run(
      ["policy", "eval", "--policy", examples, "--input", "-"],
      JSON.stringify({ ...prCall, agnet: {} }),
    );
    assert.equal(typo.code, 2);
    assert.match(typo.stderr, /unknown input field "agnet"/);
    const missing = await run(
      ["policy", "eval", "--policy", examples, "--input", "-"],
      JSON.stringify({ agent: { name: "a" } }),
    );
    assert.match(missing.stderr, /input needs "request"/);
    assert.equal((await run(["policy", "eval", "--policy", examples, "--input", join(dir, "nope.json")])).code, 2);
    assert.equal((await run(["policy", "eval", "--input", "-"], good)).code, 2);
  });

  it("exits 2 when the policies are not usable", async () => {
    const bad = join(dir, "broken.yaml");
    await writeFile(bad, "kind: ToolPolicy\nmetadata: {name: p}\nspec: {agent: a}\n");
    const r = await run(["policy", "eval", "--policy", bad, "--input", "-"], JSON.stringify(prCall));
    assert.equal(r.code, 2);
    assert.equal(r.stdout, "");
    assert.match(r.stderr, /spec needs "mcpServer"/);
    assert.match(r.stderr, /policies are not usable; no decision made/);
  });

  it("honours --default-decision for calls no policy covers", async () => {
    const input = JSON.stringify({ agent: { name: "nobody" }, request: { server: "x", tool: "y" } });
    const closed = await run(["policy", "eval", "--policy", examples, "--input", "-"], input);
    assert.equal(JSON.parse(closed.stdout).decision, "deny");
    const open = await run(
      ["policy", "eval", "--policy", examples, "--input", "-", "--default-decision", "allow"],
      input,
    );
    assert.equal(JSON.parse(open.stdout).decision, "allow");
    assert.equal(
      (await run(["policy", "eval", "--policy", examples, "--input", "-", "--default-decision", "maybe"], input)).code,
      2,
    );
  });
});

describe("warden policy explain", () => {
  it("shows every policy considered and every rule tried", async () => {
    const input = JSON.stringify({ ...prCall, request: { ...prCall.request, arguments: { base: "main" } } });
    const r = await run(["policy", "explain", "--policy", examples, "--input", "-"], input);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^decision: deny\n/);
    assert.match(
      r.stdout,
      /ToolPolicy workspace-files .*\n {2}does not apply: server "github" is not one of filesystem/,
    );
    assert.match(r.stdout, /rules\[0\] allow: tool not listed/);
    assert.match(
      r.stdout,
      /rules\[1\] allow: condition false: rules\[1\]\.conditions\[0\] `!request\.arguments\.base\.matches\('main\|production'\)` is false/,
    );
    assert.match(r.stdout, /=> deny: denied: no rule of ToolPolicy github-dev-agent matched/);
  });
});

describe("warden policy test", () => {
  it("runs the example suites and exits 0", async () => {
    const r = await run(["policy", "test", examples]);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.match(r.stdout, /PASS: 33\/33 cases passed in 3 suites\n$/);
  });

  it("exits 1 on a failing case and says what differed and where", async () => {
    const suite = join(dir, "suite");
    await rm(suite, { recursive: true, force: true });
    await import("node:fs/promises").then((fs) => fs.mkdir(suite));
    await writeFile(
      join(suite, "p.yaml"),
      "kind: ToolPolicy\nmetadata: {name: p}\nspec:\n  agent: a\n  mcpServer: s\n  rules: [{tools: [t], action: deny}]\n",
    );
    await writeFile(
      join(suite, "p.test.yaml"),
      "kind: PolicyTest\nmetadata: {name: t}\nspec:\n  cases:\n  - name: good\n    input: {agent: {name: a}, request: {server: s, tool: t}}\n    expect: {decision: deny, rule: 0}\n  - name: wrong\n    input: {agent: {name: a}, request: {server: s, tool: t}}\n    expect: {decision: allow, reason: nope}\n  - name: broken input\n    input: {agent: {name: a}}\n    expect: {decision: deny}\n",
    );
    const text = await run(["policy", "test", suite]);
    assert.equal(text.code, 1);
    assert.match(text.stdout, /ok {3}good\n/);
    assert.match(
      text.stdout,
      /FAIL wrong\n\s+expected decision allow, got deny\n\s+expected the reason to contain "nope"/,
    );
    assert.match(text.stdout, /at .*p\.test\.yaml:8:5/);
    assert.match(text.stdout, /FAIL broken input\n\s+input is not usable: input needs "request"/);
    assert.match(text.stdout, /FAIL: 1\/3 cases passed in 1 suite\n$/);
    const json = await run(["policy", "test", suite, "--format", "json"]);
    assert.equal(json.code, 1);
    const report = JSON.parse(json.stdout);
    assert.deepEqual([report.passed, report.failed], [1, 2]);
    assert.deepEqual(
      report.suites[0].cases.map((c: { passed: boolean }) => c.passed),
      [true, false, false],
    );
    assert.equal(report.suites[0].cases[1].actual.decision, "deny");
  });

  it("exits 2 when there are no suites", async () => {
    const r = await run(["policy", "test", join(examples, "github", "policy.yaml")]);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /no PolicyTest documents found/);
  });
});

describe("the warden executable", () => {
  it("runs as a separate process with stdin, stdout and exit codes", () => {
    const r = spawnSync(process.execPath, [bin, "policy", "eval", "--policy", examples, "--input", "-"], {
      input: JSON.stringify(prCall),
      encoding: "utf8",
    });
    assert.equal(r.status, 0, r.stderr);
    assert.equal(JSON.parse(r.stdout).decision, "allow");
    const v = spawnSync(process.execPath, [bin, "--version"], { encoding: "utf8" });
    assert.match(v.stdout, /^warden \d+\.\d+\.\d+\n$/);
    const bad = spawnSync(process.execPath, [bin, "policy", "eval"], { encoding: "utf8" });
    assert.equal(bad.status, 2);
    assert.match(bad.stderr, /needs --policy PATH/);
  });
});
