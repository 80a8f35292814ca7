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
export function childEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, ...extra };
  delete env.NODE_TEST_CONTEXT;
  delete env.NODE_OPTIONS;
  return env;
}

export interface Exec {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs the warden CLI to completion. */
export function warden(args: string[], env: Record<string, string> = {}, timeoutMs = 20_000): Promise<Exec> {
  return new Promise((resolvePromise, reject) => {
    const child = spawn(process.execPath, [CLI, ...args], {
      stdio: ["ignore", "pipe", "pipe"],
      env: childEnv(env),
      cwd: ROOT,
    });
    let stdout = "";
    let stderr = "";
    child.stdout.setEncoding("utf8").on("data", (d: string) => {
      stdout += d;
    });
    child.stderr.setEncoding("utf8").on("data", (d: string) => {
      stderr += d;
    });
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      reject(new Error(`warden ${args.join(" ")} timed out\n${stdout}\n${stderr}`));
    }, timeoutMs);
    child.on("error", reject);
    child.on("close", (code) => {
      clearTimeout(timer);
      resolvePromise({ code, stdout, stderr });
    });
  });
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
