// `warden wrap`: rewriting MCP client configs so every stdio server runs under
// `warden run`, and back. Ends with a real run: the wrapped command line,
// started by the official MCP SDK client, governs the memory server.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import {
  chmodSync,
  copyFileSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  realpathSync,
  rmSync,
  statSync,
  symlinkSync,
  unlinkSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { after, describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js";
import { BACKUP_SUFFIX } from "../../src/cli/wrap-command.js";
import {
  jsonValue,
  parseJsonc,
  parseWrappedServer,
  readClientConfig,
  serverDataDir,
  wrapClientConfig,
} from "../../src/mcp/client-config.js";
import { runWarden } from "../helpers/cli.js";
import { checkAuditLog, policyVersions } from "../helpers/gateway.js";

const root = fileURLToPath(new URL("../../../", import.meta.url));
const fixtures = join(root, "test", "fixtures", "client-configs");
const wardenMain = join(root, "dist", "src", "cli", "main.js");
const memoryServer = join(root, "node_modules", "@modelcontextprotocol", "server-memory", "dist", "index.js");

const tmp = mkdtempSync(join(tmpdir(), "warden-wrap-"));
after(() => rmSync(tmp, { recursive: true, force: true }));

const POLICY = `apiVersion: warden/v1
kind: ToolPolicy
metadata:
  name: memory-read-write
spec:
  agent: "*"
  mcpServers: [memory, memory-2]
  defaultAction: deny
  rules:
    - name: read-and-create
      tools: [read_graph, search_nodes, create_entities]
      action: allow
`;
const policy = join(tmp, "policy.yaml");
writeFileSync(policy, POLICY);

const run = (...argv: string[]) => runWarden(argv);

let n = 0;
/** Copies a fixture to where its client keeps it, in a fresh directory. */
function place(fixture: string, relPath: string): string {
  const path = join(tmp, `case-${++n}`, relPath);
  mkdirSync(dirname(path), { recursive: true });
  copyFileSync(join(fixtures, fixture), path);
  return path;
}

type Entry = { command?: string; args?: string[]; env?: Record<string, string>; [k: string]: unknown };
function servers(path: string, key = "mcpServers"): Record<string, Entry> {
  return plain(readFileSync(path, "utf8"))[key] as Record<string, Entry>;
}

/** A JSONC text as plain objects. */
function plain(text: string): Record<string, unknown> {
  return JSON.parse(JSON.stringify(jsonValue(parseJsonc(text).root)));
}

/** Checks one server is wrapped as documented and returns the warden run options. */
function assertWrapped(entry: Entry | undefined, original: Entry | undefined, name: string, agent: string) {
  assert.ok(entry && original);
  assert.ok(entry.command && realpathSync(entry.command) === realpathSync(process.execPath), entry.command);
  const args = entry.args ?? [];
  assert.equal(args[0], wardenMain);
  assert.equal(args[1], "run");
  const dash = args.indexOf("--");
  assert.deepEqual(args.slice(dash + 1), [original.command, ...(original.args ?? [])]);
  const opts = args.slice(2, dash);
  const get = (flag: string) => opts[opts.indexOf(flag) + 1];
  assert.equal(get("--policy"), policy);
  assert.equal(get("--agent"), agent);
  assert.equal(get("--server"), name);
  assert.deepEqual(entry.env, original.env, "env passes through unchanged");
  return { dataDir: get("--data-dir") as string };
}

describe("warden wrap: each client's format", () => {
  it("Claude Desktop: wraps every server, adds args where there were none, keeps other settings", async () => {
    const file = place("claude_desktop_config.json", "Claude/claude_desktop_config.json");
    const before = readFileSync(file, "utf8");
    const r = await run("wrap", file, "--policy", policy);
    assert.equal(r.code, 0, r.err);
    const after = readFileSync(file, "utf8");
    assert.ok(after.endsWith("}\n"));
    const was = servers(join(fixtures, "claude_desktop_config.json"));
    const now = servers(file);
    for (const name of ["filesystem", "github", "sqlite"]) {
      const { dataDir } = assertWrapped(now[name], was[name], name, "claude-desktop");
      assert.equal(dataDir, join(dirname(file), ".warden", "claude-desktop", name));
      assert.match(r.out, new RegExp(`^wrapped +${name}; audit log in `, "m"));
    }
    // Other settings, key order and 2-space layout are kept.
    const value = JSON.parse(after);
    assert.deepEqual(Object.keys(value), ["mcpServers", "globalShortcut", "preferences"]);
    assert.deepEqual(value.preferences, { menuBarEnabled: false });
    assert.ok(after.includes('\n      "args": [\n        "'), "long args go one per line, indented like the file");
    assert.equal(readFileSync(file + BACKUP_SUFFIX, "utf8"), before);
    assert.match(r.out, /restart Claude Desktop/);
  });

  it("Claude Code .mcp.json: stdio servers wrapped, http and sse servers left alone", async () => {
    const file = place("claude-code.mcp.json", "project/.mcp.json");
    const r = await run("wrap", file, "--policy", policy);
    assert.equal(r.code, 0, r.err);
    const was = servers(join(fixtures, "claude-code.mcp.json"));
    const now = servers(file);
    assertWrapped(now.memory, was.memory, "memory", "claude-code");
    assertWrapped(now.everything, was.everything, "everything", "claude-code");
    assert.equal(now.memory?.type, "stdio");
    assert.deepEqual(now.sentry, was.sentry);
    assert.deepEqual(now.linear, was.linear);
    assert.match(r.out, /^not wrapped +sentry: remote server$/m);
    assert.match(r.out, /^not wrapped +linear: remote server$/m);
    assert.deepEqual(Object.keys(now), Object.keys(was));
  });

  it("Cursor .cursor/mcp.json: url servers are remote", async () => {
    const file = place("cursor.mcp.json", "project/.cursor/mcp.json");
    const r = await run("wrap", file, "--policy", policy, "--agent", "cursor-dev", "--data-dir", "rel/logs");
    assert.equal(r.code, 0, r.err);
    const was = servers(join(fixtures, "cursor.mcp.json"));
    const now = servers(file);
    const { dataDir } = assertWrapped(now.postgres, was.postgres, "postgres", "cursor-dev");
    assert.equal(dataDir, join(process.cwd(), "rel", "logs", "cursor-dev", "postgres"), "--data-dir made absolute");
    assert.deepEqual(now.docs, was.docs);
    assert.match(r.out, /^not wrapped +docs: remote server$/m);
  });

  it("VS Code .vscode/mcp.json: JSONC comments, trailing commas, inputs and tabs are kept", async () => {
    const file = place("vscode.mcp.json", "project/.vscode/mcp.json");
    const before = readFileSync(file, "utf8");
    const r = await run("wrap", file, "--policy", policy);
    assert.equal(r.code, 0, r.err);
    const after = readFileSync(file, "utf8");
    const was = servers(join(fixtures, "vscode.mcp.json"), "servers");
    const now = servers(file, "servers");
    assertWrapped(now.github, was.github, "github", "vscode");
    assertWrapped(now.filesystem, was.filesystem, "filesystem", "vscode");
    assert.deepEqual(now["microsoft-learn"], was["microsoft-learn"]);
    assert.deepEqual(plain(after).inputs, plain(before).inputs);
    assert.ok(after.includes("// Servers for this workspace."), "comments outside the edited values are kept");
    assert.ok(after.includes("/* the workspace files */"));
    assert.equal(now.filesystem?.envFile, was.filesystem?.envFile);
    assert.ok(after.includes('\n\t\t\t\t"run",\n'), "new lines indented with tabs, like the file");
    // The one comment inside an edited value is lost, and the report says so.
    assert.ok(!after.includes("// interactive, removed on exit"));
    assert.match(r.out, /^wrapped +github; .*\n {2}note: comments inside its args were dropped$/m);
    // Everything before the first edited value is untouched.
    const firstEdit = before.indexOf('"docker"');
    assert.equal(after.slice(0, firstEdit), before.slice(0, firstEdit));
  });

  it("a file it does not recognise needs --agent; the servers key is found either way", async () => {
    const file = place("cursor.mcp.json", "elsewhere/windsurf_mcp_config.json");
    const r = await run("wrap", file, "--policy", policy);
    assert.equal(r.code, 2);
    assert.match(r.err, /cannot tell from its name which client .* pass --agent NAME/);
    const ok = await run("wrap", file, "--policy", policy, "--agent", "windsurf");
    assert.equal(ok.code, 0, ok.err);
    assert.match(ok.out, /restart the client/);
  });
});

describe("warden wrap: idempotence, re-wrapping and undo", () => {
  for (const [fixture, rel] of [
    ["claude_desktop_config.json", "Claude/claude_desktop_config.json"],
    ["claude-code.mcp.json", "p/.mcp.json"],
    ["cursor.mcp.json", "p/.cursor/mcp.json"],
    ["vscode.mcp.json", "p/.vscode/mcp.json"],
  ] as const) {
    it(`${fixture}: wrapping twice changes nothing; --undo restores the original byte for byte`, async () => {
      const file = place(fixture, rel);
      const original = readFileSync(file);
      assert.equal((await run("wrap", file, "--policy", policy)).code, 0);
      const once = readFileSync(file);
      const mtime = statSync(file).mtimeMs;
      const again = await run("wrap", file, "--policy", policy);
      assert.equal(again.code, 0, again.err);
      assert.deepEqual(readFileSync(file), once);
      assert.equal(statSync(file).mtimeMs, mtime, "not even rewritten");
      assert.match(again.out, /^already wrapped +\S+$/m);
      assert.match(again.out, /no changes: .* is up to date/);
      assert.doesNotMatch(again.out, /^wrapped/m);

      const undo = await run("wrap", file, "--undo");
      assert.equal(undo.code, 0, undo.err);
      assert.deepEqual(readFileSync(file), original);
      assert.ok(!existsSync(file + BACKUP_SUFFIX), "the backup is consumed by the restore");
      assert.match(undo.out, /^restored +\S+$/m);
      assert.match(undo.out, /byte for byte/);
    });
  }

  it("without a backup, --undo unwraps in place (here giving back the original exactly)", async () => {
    const file = place("claude_desktop_config.json", "Claude/claude_desktop_config.json");
    const original = readFileSync(file, "utf8");
    await run("wrap", file, "--policy", policy);
    unlinkSync(file + BACKUP_SUFFIX);
    const r = await run("wrap", file, "--undo");
    assert.equal(r.code, 0, r.err);
    assert.equal(readFileSync(file, "utf8"), original);
    assert.match(r.out, /^unwrapped +sqlite$/m);
    const nothing = await run("wrap", file, "--undo");
    assert.equal(nothing.code, 0);
    assert.match(nothing.out, /nothing to undo/);
  });

  it("a file edited after wrapping is unwrapped in place on --undo, keeping the edit and the backup", async () => {
    const file = place("cursor.mcp.json", "p/.cursor/mcp.json");
    await run("wrap", file, "--policy", policy);
    const wrapped = readFileSync(file, "utf8");
    writeFileSync(file, wrapped.replace('"PGPASSWORD": "example"', '"PGPASSWORD": "changed"'));
    const r = await run("wrap", file, "--undo");
    assert.equal(r.code, 0, r.err);
    assert.match(r.out, /changed since it was wrapped, so the backup is not restored; unwrapping in place/);
    const now = servers(file);
    assert.deepEqual(now.postgres, {
      ...servers(join(fixtures, "cursor.mcp.json")).postgres,
      env: { PGPASSWORD: "changed" },
    });
    assert.ok(existsSync(file + BACKUP_SUFFIX));
    // That backup is now stale: wrapping again refuses rather than keep it as "the original".
    const again = await run("wrap", file, "--policy", policy);
    assert.equal(again.code, 2);
    assert.match(again.err, /left from an earlier wrap.*move or delete it/);
  });

  it("re-wraps with new options, keeps other warden run options and the first backup", async () => {
    const file = place("claude_desktop_config.json", "Claude/claude_desktop_config.json");
    const original = readFileSync(file, "utf8");
    await run("wrap", file, "--policy", policy);
    // Someone adds --user by hand to one server.
    const text = readFileSync(file, "utf8").replace(
      '"--server",\n        "github",',
      '"--server",\n        "github",\n        "--user",\n        "alice",',
    );
    assert.notEqual(text, readFileSync(file, "utf8"));
    writeFileSync(file, text);
    const otherPolicy = join(tmp, "other-policy.yaml");
    writeFileSync(otherPolicy, POLICY.replace("memory-read-write", "other"));
    const r = await run("wrap", file, "--policy", otherPolicy, "--agent", "desk");
    assert.equal(r.code, 0, r.err);
    assert.match(r.out, /^re-wrapped +github \(new policy, agent, data dir\)/m);
    assert.match(r.out, /kept the existing backup/);
    const github = servers(file).github;
    assert.ok(github?.args);
    const parsed = parseWrappedServer(github.command as string, github.args);
    assert.ok(parsed);
    assert.deepEqual(parsed.options.policies, [otherPolicy]);
    assert.equal(parsed.options.agent, "desk");
    assert.deepEqual(parsed.extra, ["--user", "alice"]);
    assert.equal(readFileSync(file + BACKUP_SUFFIX, "utf8"), original);
    // Undo still restores the original: the backup matches once unwrapped.
    assert.equal((await run("wrap", file, "--undo")).code, 0);
    assert.equal(readFileSync(file, "utf8"), original);
  });

  it("--dry-run prints the new file and writes nothing", async () => {
    const file = place("claude-code.mcp.json", "p/.mcp.json");
    const original = readFileSync(file, "utf8");
    const r = await run("wrap", file, "--policy", policy, "--dry-run");
    assert.equal(r.code, 0, r.err);
    assert.equal(readFileSync(file, "utf8"), original);
    assert.ok(!existsSync(file + BACKUP_SUFFIX));
    assert.match(r.err, /^wrapped +memory/m, "the report goes to stderr");
    const printed = JSON.parse(r.out) as { mcpServers: Record<string, Entry> };
    assert.equal(printed.mcpServers.memory?.args?.[1], "run");
    await run("wrap", file, "--policy", policy);
    const undo = await run("wrap", file, "--undo", "--dry-run");
    assert.equal(undo.code, 0);
    assert.equal(undo.out, original);
    assert.ok(existsSync(file + BACKUP_SUFFIX));
  });

  it("keeps the file's mode (and gives the backup the same), and follows a symlink", async () => {
    const target = place("cursor.mcp.json", "dotfiles/cursor-mcp.json");
    chmodSync(target, 0o600);
    const link = join(dirname(dirname(target)), "home", ".cursor", "mcp.json");
    mkdirSync(dirname(link), { recursive: true });
    symlinkSync(target, link);
    const r = await run("wrap", link, "--policy", policy);
    assert.equal(r.code, 0, r.err);
    assert.equal(realpathSync(link), realpathSync(target), "still a symlink to the same file");
    assert.equal(statSync(target).mode & 0o777, 0o600);
    assert.equal(statSync(target + BACKUP_SUFFIX).mode & 0o777, 0o600);
    const { dataDir } = assertWrapped(
      servers(link).postgres,
      servers(join(fixtures, "cursor.mcp.json")).postgres,
      "postgres",
      "cursor",
    );
    assert.equal(dataDir, join(dirname(link), ".warden", "cursor", "postgres"), "next to the config the client reads");
    assert.deepEqual(
      readdirSync(dirname(target)).filter((f) => f.includes(".tmp")),
      [],
      "no temp file left",
    );
  });

  it("exits 1 when the file cannot be written, leaving it and no new backup behind", async () => {
    const file = place("cursor.mcp.json", "p/.cursor/mcp.json");
    const original = readFileSync(file, "utf8");
    mkdirSync(join(dirname(file), `.mcp.json.warden-${process.pid}.tmp`)); // the temp file's name, taken
    const r = await run("wrap", file, "--policy", policy);
    assert.equal(r.code, 1);
    assert.match(r.err, /cannot write .*mcp\.json: /);
    assert.equal(readFileSync(file, "utf8"), original);
    assert.ok(!existsSync(file + BACKUP_SUFFIX));
  });

  it("a config with only remote servers is left alone, with no backup", async () => {
    const file = join(tmp, `case-${++n}`, ".mcp.json");
    mkdirSync(dirname(file));
    writeFileSync(file, '{"mcpServers": {"x": {"type": "http", "url": "https://example.com/mcp"}}}');
    const r = await run("wrap", file, "--policy", policy);
    assert.equal(r.code, 0);
    assert.match(r.out, /not wrapped +x: remote server\nno changes/);
    assert.ok(!existsSync(file + BACKUP_SUFFIX));
  });
});

describe("warden wrap: errors exit 2 with a clear message", () => {
  const desktop = () => place("claude_desktop_config.json", "Claude/claude_desktop_config.json");
  const cases: [string, () => string[], RegExp][] = [
    [
      "missing file",
      () => ["wrap", join(tmp, "nope.json"), "--policy", policy],
      /cannot read .*nope\.json: no such file/,
    ],
    ["no file given", () => ["wrap", "--policy", policy], /needs the client's config file/],
    [
      "not JSON",
      () => {
        const f = join(tmp, `case-${++n}.json`);
        writeFileSync(f, '{\n  "mcpServers": {\n    "a": { "command": "x" \n  }\n');
        return ["wrap", f, "--policy", policy];
      },
      /not valid JSON: line 4, column 3: expected "," or "}", found "}"|not valid JSON: line \d+, column \d+/,
    ],
    [
      "no servers object",
      () => {
        const f = join(tmp, `case-${++n}.json`);
        writeFileSync(f, '{"mcp": {"servers": {}}}');
        return ["wrap", f, "--policy", policy, "--agent", "a"];
      },
      /no "mcpServers" or "servers" object \(VS Code's settings\.json "mcp" section is not supported/,
    ],
    [
      "duplicate server",
      () => {
        const f = join(tmp, `case-${++n}.json`);
        writeFileSync(f, '{"mcpServers": {"a": {"command": "x"}, "a": {"command": "y"}}}');
        return ["wrap", f, "--policy", policy, "--agent", "a"];
      },
      /line 1, column 40: duplicate key "a"/,
    ],
    ["no --policy", () => ["wrap", desktop()], /needs --policy PATH/],
    [
      "policy path missing",
      () => ["wrap", desktop(), "--policy", join(tmp, "missing.yaml")],
      /--policy .*missing\.yaml: no such file or directory/,
    ],
    [
      "policies that do not load",
      () => {
        const f = join(tmp, `bad-${++n}.yaml`);
        writeFileSync(f, "kind: ToolPolicy\nmetadata: {name: p}\nspec: {agent: a, mcpServer: s, rulez: []}\n");
        return ["wrap", desktop(), "--policy", f];
      },
      /the policies do not load/,
    ],
    [
      "invalid --agent",
      () => ["wrap", desktop(), "--policy", policy, "--agent", "bad name"],
      /invalid --agent "bad name"/,
    ],
    [
      "--undo with wrap options",
      () => ["wrap", desktop(), "--undo", "--policy", policy],
      /--undo takes only the config file/,
    ],
    ["unknown option", () => ["wrap", desktop(), "--polcy", policy], /Unknown option '--polcy'/],
  ];
  for (const [what, args, message] of cases) {
    it(what, async () => {
      const argv = args();
      const file = argv[1] as string;
      const before = existsSync(file) ? readFileSync(file, "utf8") : undefined;
      const r = await run(...argv);
      assert.equal(r.code, 2, r.out + r.err);
      assert.match(r.err, message);
      if (before !== undefined) assert.equal(readFileSync(file, "utf8"), before, "the file is untouched");
      assert.ok(!existsSync(file + BACKUP_SUFFIX));
    });
  }

  it("--help prints the contract", async () => {
    const r = await run("wrap", "--help");
    assert.equal(r.code, 0);
    assert.match(r.out, /^Usage: warden wrap CONFIG_FILE --policy PATH/);
    assert.match((await run("--help")).out, /wrap CONFIG_FILE --policy PATH/);
  });
});

describe("client-config transform details", () => {
  const options = { node: "/n/node", main: "/w/dist/src/cli/main.js", policies: ["/p"], agent: "a", dataDir: "/d" };

  it("gives every server its own data directory, safe as a path and distinct even ignoring case", () => {
    const all = ["GitHub", "github", "a/b", "a_b", "..", "con"];
    const dirs = all.map((s) => serverDataDir("/d", "claude:desktop", s, all));
    assert.equal(new Set(dirs.map((d) => d.toLowerCase())).size, all.length, dirs.join(" "));
    for (const d of dirs) assert.match(d, /^\/d\/claude_desktop\/[A-Za-z0-9_][A-Za-z0-9._-]*$/);
    assert.equal(serverDataDir("/d", "a", "memory", ["memory", "other"]), "/d/a/memory");
  });

  it("passes names starting with - as --opt=value, and warns about names policies cannot select", () => {
    const config = readClientConfig('{"mcpServers": {"-x": {"command": "c"}, "my server": {"command": "c"}}}', "f");
    const r = wrapClientConfig(config, options);
    const value = JSON.parse(r.text) as { mcpServers: Record<string, Entry> };
    assert.ok(value.mcpServers["-x"]?.args?.includes("--server=-x"));
    assert.deepEqual(parseWrappedServer("/n/node", value.mcpServers["-x"]?.args ?? [])?.options.server, "-x");
    assert.match(r.servers[1]?.notes[0] ?? "", /policies cannot name server "my server"/);
    // A single-line entry stays on one line.
    assert.match(r.text, /"-x": \{"command": "\/n\/node", "args": \["\/w\/dist\/src\/cli\/main\.js", "run", /);
  });

  it("recognises hand-written `warden run` and other installs of warden as wrapped", () => {
    assert.deepEqual(
      parseWrappedServer("warden", ["run", "--policy", "p", "--server=s", "--no-watch", "--", "npx", "-y", "x"]),
      {
        inner: { command: "npx", args: ["-y", "x"] },
        options: { policies: ["p"], agent: undefined, server: "s", dataDir: undefined },
        extra: ["--no-watch"],
      },
    );
    assert.ok(parseWrappedServer("C:\\node\\node.exe", ["C:\\w\\dist\\src\\cli\\main.js", "run", "--", "x"]));
    assert.equal(parseWrappedServer("node", ["/w/dist/src/cli/main.js", "run", "--policy", "p"]), undefined, "no --");
    assert.equal(parseWrappedServer("node", ["server.js", "run", "--", "x"]), undefined);
    // Re-wrapping a hand-written one converts it and keeps what it does not manage.
    const config = readClientConfig(
      '{"mcpServers": {"s": {"command": "warden", "args": ["run", "--policy", "old", "--user", "bob", "--", "npx", "x"]}}}\n',
      "f",
    );
    const r = wrapClientConfig(config, options);
    assert.equal(r.servers[0]?.action, "re-wrapped");
    assert.deepEqual((JSON.parse(r.text) as { mcpServers: { s: Entry } }).mcpServers.s.args, [
      "/w/dist/src/cli/main.js",
      "run",
      "--policy",
      "/p",
      "--agent",
      "a",
      "--server",
      "s",
      "--data-dir",
      "/d/a/s",
      "--user",
      "bob",
      "--",
      "npx",
      "x",
    ]);
  });

  it("re-wrapping keeps the audit log flags added by hand (warden wrap does not manage them)", () => {
    const audit = [
      "--audit-arguments",
      "mask",
      "--audit-mask",
      "/token",
      "--audit-mask=/headers/authorization",
      "--audit-origin",
      "example.com/warden/s",
      "--checkpoint-every-records",
      "100",
      "--checkpoint-every-seconds",
      "0",
    ];
    const config = readClientConfig(
      JSON.stringify({
        mcpServers: { s: { command: "warden", args: ["run", "--policy", "old", ...audit, "--", "npx", "x"] } },
      }),
      "f",
    );
    const r = wrapClientConfig(config, options);
    assert.equal(r.servers[0]?.action, "re-wrapped");
    const args = (JSON.parse(r.text) as { mcpServers: { s: Entry } }).mcpServers.s.args ?? [];
    assert.deepEqual(parseWrappedServer("/n/node", args)?.extra, audit);
    assert.deepEqual(args.slice(-audit.length - 3), [...audit, "--", "npx", "x"]);
  });

  it("re-wrapping knows every warden run switch takes no value: the policy after it stays the policy", () => {
    const wrapped = [
      "run",
      "--no-approvals",
      "--allow-rollback",
      "--insecure-registry",
      "--policy",
      "old",
      "--",
      "npx",
      "x",
    ];
    const config = readClientConfig(JSON.stringify({ mcpServers: { s: { command: "warden", args: wrapped } } }), "f");
    const parsed = parseWrappedServer("warden", wrapped);
    assert.deepEqual(parsed?.options.policies, ["old"]);
    assert.deepEqual(parsed?.extra, ["--no-approvals", "--allow-rollback", "--insecure-registry"]);
    const r = wrapClientConfig(config, options);
    const args = (JSON.parse(r.text) as { mcpServers: { s: Entry } }).mcpServers.s.args ?? [];
    assert.equal(args.filter((a) => a === "--policy").length, 1, "one --policy: the new one");
    assert.deepEqual(parseWrappedServer("/n/node", args)?.extra, [
      "--no-approvals",
      "--allow-rollback",
      "--insecure-registry",
    ]);
  });

  it("skips entries it cannot wrap, saying why", () => {
    const config = readClientConfig(
      '{"mcpServers": {"a": 1, "b": {"args": []}, "c": {"command": "x", "args": "y"}, "d": {"type": "sdk", "command": "x"}, "e": {"serverUrl": "https://x"}}}',
      "f",
    );
    const r = wrapClientConfig(config, options);
    assert.equal(r.changed, false);
    assert.deepEqual(
      r.servers.map((s) => `${s.name}: ${s.reason}`),
      ["a: not an object", "b: no command", 'c: "args" is not a list of strings', 'd: type "sdk"', "e: remote server"],
    );
  });

  it("keeps CRLF line endings", () => {
    const text = '{\r\n  "mcpServers": {\r\n    "s": {\r\n      "command": "npx"\r\n    }\r\n  }\r\n}\r\n';
    const r = wrapClientConfig(readClientConfig(text, "f"), options);
    assert.ok(!/[^\r]\n/.test(r.text), r.text);
  });
});

describe("warden wrap end to end: the wrapped command governs a real server", () => {
  it("the MCP SDK client, started exactly as the wrapped config says, lists and calls tools; the audit log verifies", async (t) => {
    const dir = join(tmp, "e2e");
    const cwd = join(dir, "client-cwd"); // where the client starts servers: nothing may be written there
    mkdirSync(cwd, { recursive: true });
    const file = join(dir, "Claude", "claude_desktop_config.json");
    mkdirSync(dirname(file));
    const memoryFile = (name: string) => join(dir, `${name}.jsonl`);
    const original = {
      mcpServers: {
        memory: { command: "node", args: [memoryServer], env: { MEMORY_FILE_PATH: memoryFile("memory") } },
        "memory-2": { command: "node", args: [memoryServer], env: { MEMORY_FILE_PATH: memoryFile("memory-2") } },
        remote: { type: "http", url: "https://example.com/mcp" },
      },
    };
    writeFileSync(file, `${JSON.stringify(original, null, 2)}\n`);
    const logs = join(dir, "logs");
    const r = await run("wrap", file, "--policy", policy, "--data-dir", logs);
    assert.equal(r.code, 0, r.err);
    const wrapped = servers(file);

    const clients: { client: Client; transport: StdioClientTransport; stderr: () => string }[] = [];
    t.after(async () => {
      for (const c of clients) await c.client.close().catch(() => {});
    });
    // Both servers at once, as a desktop client starts them.
    const connected = await Promise.all(
      ["memory", "memory-2"].map(async (name) => {
        const entry = wrapped[name];
        assert.ok(entry?.command && entry.args);
        const transport = new StdioClientTransport({
          command: entry.command,
          args: entry.args,
          env: entry.env as Record<string, string>,
          cwd,
          stderr: "pipe",
        });
        let stderr = "";
        transport.stderr?.on("data", (d: Buffer) => {
          stderr += d.toString();
        });
        const client = new Client({ name: "wrap-test", version: "1.0.0" });
        const c = { client, transport, stderr: () => stderr };
        clients.push(c);
        await client.connect(transport);
        return { name, ...c };
      }),
    );

    for (const { name, client, stderr } of connected) {
      const tools = (await client.listTools()).tools.map((tool) => tool.name);
      assert.ok(tools.includes("create_entities") && tools.includes("read_graph"), `${tools} ${stderr()}`);
      assert.ok(!tools.includes("delete_entities"), "tools the policy never allows are not listed");
      const created = await client.callTool({
        name: "create_entities",
        arguments: { entities: [{ name: `from-${name}`, entityType: "test", observations: ["wrapped"] }] },
      });
      assert.notEqual(created.isError, true, JSON.stringify(created) + stderr());
      const denied = await client.callTool({ name: "delete_entities", arguments: { entityNames: [`from-${name}`] } });
      assert.equal(denied.isError, true, JSON.stringify(denied));
      // The server got the env from the config: it wrote where MEMORY_FILE_PATH says.
      assert.match(readFileSync(memoryFile(name), "utf8"), new RegExp(`from-${name}`));
    }
    const pids = connected.map((c) => c.transport.pid);
    for (const c of connected) await c.client.close();
    clients.length = 0;
    for (const pid of pids) {
      assert.ok(pid);
      await waitFor(() => !alive(pid), `warden run (pid ${pid}) exits when the client closes`);
    }

    assert.deepEqual(readdirSync(cwd), [], "nothing written in the client's working directory");
    for (const name of ["memory", "memory-2"]) {
      const dataDir = join(logs, "claude-desktop", name);
      assert.ok(existsSync(dataDir), dataDir);
      const verify = spawnSync(process.execPath, [wardenMain, "audit", "verify", "--data-dir", dataDir], {
        encoding: "utf8",
      });
      assert.equal(verify.status, 0, verify.stdout + verify.stderr);
      const tail = spawnSync(
        process.execPath,
        [wardenMain, "audit", "query", "--format", "jsonl", "--data-dir", dataDir],
        {
          encoding: "utf8",
        },
      );
      assert.match(tail.stdout, new RegExp(`"server":"${name}"`), tail.stderr);
      assert.match(tail.stdout, /"decision":"deny"/);
      // Every decision names the version of the policy the wrapped command was given.
      await checkAuditLog(dataDir, await policyVersions([policy]));
    }
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

async function waitFor(check: () => boolean, what: string, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (!check()) {
    if (Date.now() > end) assert.fail(`timed out: ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}
