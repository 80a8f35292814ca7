// Shared by the approval tests: temporary directories, the PostgreSQL server
// on this machine (each test gets a schema of its own, dropped afterwards),
// decisions as the engine makes them, and the warden CLI as a child process.
import { type ChildProcess, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import type { ApprovalStore } from "../../src/approvals/store.js";
import type { ApprovalObligation, Decision } from "../../src/policy/decision.js";
import { childEnv, type ProcessResult, runProcess } from "../helpers/process.js";

export { childEnv };

export const ROOT = resolve(import.meta.dirname, "..", "..", "..");
export const CLI = join(ROOT, "dist", "src", "cli", "main.js");
export const FILESYSTEM_SERVER = join(
  ROOT,
  "node_modules",
  "@modelcontextprotocol",
  "server-filesystem",
  "dist",
  "index.js",
);
export const ARTIFACTS = join(ROOT, "test-artifacts", "approvals");

/**
 * The PostgreSQL server the tests use: WARDEN_TEST_POSTGRES_URL, else the one
 * this machine runs (trust auth on 127.0.0.1:5432, database "test"). .ci/run
 * starts it when it is not running.
 */
export const POSTGRES_URL = process.env.WARDEN_TEST_POSTGRES_URL ?? "postgresql://postgres@127.0.0.1:5432/test";

/** A PostgreSQL URL whose tables live in a fresh schema. */
export function pgSchemaUrl(): { url: string; schema: string } {
  const schema = `warden_test_${randomBytes(6).toString("hex")}`;
  const u = new URL(POSTGRES_URL);
  u.searchParams.set("schema", schema);
  return { url: u.toString(), schema };
}

export async function dropPgSchema(schema: string): Promise<void> {
  const pg = (await import("pg")).default;
  const c = new pg.Client({ connectionString: POSTGRES_URL });
  await c.connect();
  try {
    await c.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
  } finally {
    await c.end();
  }
}

export function tempDir(prefix = "warden-approvals-"): { dir: string; remove(): void } {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  return { dir, remove: () => rmSync(dir, { recursive: true, force: true }) };
}

export function obligation(o: Partial<ApprovalObligation> = {}): ApprovalObligation {
  return {
    policy: "fs",
    version: "sha256:0000",
    rule: { index: 1, name: "writes" },
    type: "human-in-the-loop",
    timeout: "1m",
    timeoutMs: 60_000,
    approvers: { users: [], groups: [] },
    allowSelfApproval: false,
    ...o,
  };
}

export function approvalDecision(...obligations: ApprovalObligation[]): Decision {
  const list = obligations.length > 0 ? obligations : [obligation()];
  return {
    decision: "require_approval",
    enforced: true,
    policy: "fs",
    version: "sha256:0000",
    policySet: "sha256:1111",
    rule: { index: 1, name: "writes" },
    reason: "writes need a human's approval",
    approval: list[0] ?? null,
    obligations: { approvals: list, rateLimits: [] },
    dryRun: null,
  };
}

/** Children inherit no test-runner context. */

export type Exec = ProcessResult;

/** Runs the warden CLI to completion. */
export function warden(args: string[], env: Record<string, string> = {}, timeoutMs = 20_000): Promise<Exec> {
  return runProcess(process.execPath, [CLI, ...args], { env: childEnv(env), cwd: ROOT, timeoutMs });
}

/** Polls until fn returns a value (not undefined), or fails after timeoutMs. */
export async function waitFor<T>(
  what: string,
  fn: () => Promise<T | undefined> | T | undefined,
  timeoutMs = 15_000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await fn();
      if (v !== undefined) return v;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline)
      throw new Error(`timed out waiting for ${what}${last ? `: ${(last as Error).message}` : ""}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** The pending requests of a local store, as `warden approvals list --json` prints them. */
export async function pendingIn(target: string[]): Promise<Record<string, unknown>[]> {
  const r = await warden(["approvals", "list", "--json", ...target]);
  if (r.code !== 0) throw new Error(`approvals list failed: ${r.stderr}`);
  return JSON.parse(r.stdout) as Record<string, unknown>[];
}

/** Stops a child and waits for it. */
export async function stop(child: ChildProcess, signal: NodeJS.Signals = "SIGTERM"): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((r) => child.once("exit", r));
  child.kill(signal);
  const timer = setTimeout(() => child.kill("SIGKILL"), 10_000);
  await exited;
  clearTimeout(timer);
}

/** Closes a store quietly (after a test that may have closed it). */
export async function closeQuietly(store: ApprovalStore | undefined): Promise<void> {
  await store?.close().catch(() => {});
}

export interface Serve {
  url: string;
  child: ChildProcess;
  output(): string;
}

/** Starts `warden serve --config FILE --port 0` and waits for its URL. */
export function startServe(config: string, env: Record<string, string> = {}): Promise<Serve> {
  return new Promise((resolvePromise, reject) => {
    const child = spawn(process.execPath, [CLI, "serve", "--config", config, "--port", "0"], {
      stdio: ["ignore", "pipe", "pipe"],
      env: childEnv(env),
      cwd: ROOT,
    });
    let out = "";
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      reject(new Error(`warden serve did not start:\n${out}`));
    }, 20_000);
    const onData = (d: Buffer) => {
      out += d.toString();
      const m = /listening on (http:\/\/127\.0\.0\.1:\d+)/.exec(out);
      if (m?.[1]) {
        clearTimeout(timer);
        resolvePromise({ url: m[1], child, output: () => out });
      }
    };
    child.stdout?.on("data", onData);
    child.stderr?.on("data", onData);
    child.once("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`warden serve exited with ${code}:\n${out}`));
    });
  });
}

export const KEYS = {
  agent: "wk_test_agent_key_0000000000000000",
  bob: "wk_test_bob_key_00000000000000000000",
  aliceConsole: "wk_test_alice_console_key_000000000",
  ci: "wk_test_ci_key_without_user_0000000",
} as const;

export const SERVE_POLICY = `kind: ToolPolicy
metadata:
  name: fs-writes
spec:
  agent: dev-agent
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
        timeout: 60s
        approvers:
          groups: [ops]
    - name: directories
      tools: [create_directory]
      action: require_approval
      approval:
        type: elicitation
        timeout: 20s
`;

/** A warden.yaml in dir: server-filesystem on dir/workspace, four API keys, approvals settings as given. */
export async function writeServeConfig(
  dir: string,
  o: { store?: string; webhook?: { url: string; format?: string }; dataDir?: string } = {},
): Promise<string> {
  const { hashApiKey } = await import("../../src/mcp/http-auth.js");
  const { mkdirSync, writeFileSync } = await import("node:fs");
  mkdirSync(join(dir, "workspace"), { recursive: true });
  writeFileSync(join(dir, "policy.yaml"), SERVE_POLICY);
  const lines = [
    "listen: { host: 127.0.0.1, port: 0 }",
    "policy: ./policy.yaml",
    `dataDir: ${o.dataDir ?? "./data"}`,
    "audit: { arguments: full }",
    "auth:",
    "  apiKeys:",
    `    - { name: agent, hash: "${hashApiKey(KEYS.agent)}", agent: { name: dev-agent }, user: { id: alice, groups: [dev] } }`,
    `    - { name: bob, hash: "${hashApiKey(KEYS.bob)}", agent: { name: console }, user: { id: bob, groups: [ops] } }`,
    `    - { name: alice-console, hash: "${hashApiKey(KEYS.aliceConsole)}", agent: { name: console }, user: { id: alice, groups: [ops] } }`,
    `    - { name: ci, hash: "${hashApiKey(KEYS.ci)}", agent: { name: ci-bot } }`,
    "approvals:",
    "  progressInterval: 1s",
  ];
  if (o.store) lines.push(`  store: "${o.store}"`);
  if (o.webhook) {
    lines.push("  webhook:", `    url: ${o.webhook.url}`, "    secretEnv: WARDEN_TEST_WEBHOOK_SECRET");
    if (o.webhook.format) lines.push(`    format: ${o.webhook.format}`);
  }
  lines.push("upstreams:", "  fs:", "    command: node", `    args: ["${FILESYSTEM_SERVER}", ./workspace]`);
  const file = join(dir, "warden.yaml");
  writeFileSync(file, `${lines.join("\n")}\n`);
  return file;
}
