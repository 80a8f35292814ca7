// Helpers for the end-to-end gateway suites: paths of the real MCP servers and
// the CLI, temp dirs, the audit log read back through `warden audit`, policy
// versions as the PolicySet reports them, and a tiny independent JWT signer.
import assert from "node:assert/strict";
import { generateKeyPairSync, type KeyObject, sign } from "node:crypto";
import { mkdtempSync, realpathSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import type { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { loadPolicySet } from "../../src/mcp/policy-source.js";
import { runWarden } from "./cli.js";
import { runProcess } from "./process.js";

export const ROOT = resolve(import.meta.dirname, "..", "..", "..");
export const CLI = join(ROOT, "dist", "src", "cli", "main.js");
const MODULES = join(ROOT, "node_modules", "@modelcontextprotocol");
export const SERVERS = {
  filesystem: join(MODULES, "server-filesystem", "dist", "index.js"),
  everything: join(MODULES, "server-everything", "dist", "index.js"),
  memory: join(MODULES, "server-memory", "dist", "index.js"),
};

/** A fresh directory (its real path: server-filesystem compares real paths); removed by cleanup(). */
export function tempDir(prefix: string): string {
  return realpathSync(mkdtempSync(join(tmpdir(), `warden-${prefix}-`)));
}

export function removeDir(dir: string): void {
  rmSync(dir, { recursive: true, force: true });
}

export interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs `warden ARGS...` as a process. */
export function cli(args: string[], input?: string): Promise<CliResult> {
  return runProcess(process.execPath, [CLI, ...args], input === undefined ? {} : { input });
}

/** A record as `warden audit query --format jsonl` prints it. */
export interface AuditRecord {
  seq: number;
  type: string;
  id: string;
  agent?: { name: string } | null;
  user?: { id?: string; groups?: string[] } | null;
  session?: string | null;
  server?: string | null;
  tool?: string | null;
  decision?: string | null;
  enforced?: boolean | null;
  policy?: { name: string | null; version: string | null; set?: string | null; bundle?: string | null } | null;
  rule?: { name?: string | null; index?: number } | null;
  reason?: string | null;
  detail?: Record<string, unknown> | null;
  [k: string]: unknown;
}

/** `warden audit ARGS...` in this process (the CLI's own entry point, without a node start-up per check). */
async function auditInProcess(args: string[]): Promise<CliResult> {
  const r = await runWarden(["audit", ...args]);
  return { code: r.code, stdout: r.out, stderr: r.err };
}

/** Every record, as `warden audit query --format jsonl` prints it. */
export async function auditRecords(dataDir: string): Promise<AuditRecord[]> {
  const r = await auditInProcess(["query", "--data-dir", dataDir, "--format", "jsonl", "--limit", "1000000"]);
  assert.equal(r.code, 0, `audit query failed: ${r.stderr}`);
  return r.stdout
    .split("\n")
    .filter((l) => l.trim() !== "")
    .map((l) => JSON.parse(l) as AuditRecord);
}

/**
 * `warden audit verify` must pass (exit 0). Works on a live log (one read
 * transaction). `process: true` runs the real executable (once per suite).
 */
export async function verifyAudit(dataDir: string, o: { process?: boolean } = {}): Promise<void> {
  const args = ["verify", "--data-dir", dataDir, "--format", "json"];
  const r = o.process ? await cli(["audit", ...args]) : await auditInProcess(args);
  assert.equal(r.code, 0, `warden audit verify failed (exit ${r.code}):\n${r.stdout}\n${r.stderr}`);
  const result = JSON.parse(r.stdout) as { ok: boolean; records: number };
  assert.equal(result.ok, true);
  assert.ok(result.records > 0, "the log has records");
}

/** Each policy's version (sha256 of the canonical resource), as the PolicySet reports it. */
export async function policyVersions(paths: string[]): Promise<Map<string, string>> {
  const set = await loadPolicySet(paths, {});
  return new Map(set.resources.map((r) => [r.name, r.version]));
}

/** The decision `warden policy eval` prints for one call. */
export async function policyEval(paths: string[], input: unknown): Promise<{ policy: string; version: string }> {
  const args = ["policy", "eval", "--input", "-"];
  for (const p of paths) args.push("--policy", p);
  const r = await cli(args, JSON.stringify(input));
  assert.equal(r.code, 0, `warden policy eval failed: ${r.stderr}`);
  return JSON.parse(r.stdout) as { policy: string; version: string };
}

/**
 * Checks the log after a test: `warden audit verify` passes, and every decision
 * record about a tool call names the policy and version that decided it
 * (one of `versions`, the PolicySet's). Returns the records that match `filter`.
 */
export async function checkAuditLog(
  dataDir: string,
  versions: Map<string, string>,
  filter: (r: AuditRecord) => boolean = () => true,
): Promise<AuditRecord[]> {
  await verifyAudit(dataDir);
  const records = (await auditRecords(dataDir)).filter(filter);
  for (const r of records) {
    if (r.type !== "decision" || !r.tool) continue;
    const name = r.policy?.name;
    if (name === null || name === undefined) continue; // no applicable policy: the global default decided
    assert.equal(
      r.policy?.version,
      versions.get(name),
      `decision record #${r.seq} (${r.tool}) names policy ${name} at version ${r.policy?.version}`,
    );
  }
  return records;
}

/** Decision records about calls of `tool` (real server and tool names, as policy sees them). */
export function decisionsFor(records: AuditRecord[], server: string, tool: string): AuditRecord[] {
  return records.filter((r) => r.type === "decision" && r.server === server && r.tool === tool);
}

/** The text of a tool result. */
export function textOf(result: unknown): string {
  const content = (result as { content?: { type: string; text?: string }[] }).content ?? [];
  return content
    .filter((c) => c.type === "text")
    .map((c) => c.text ?? "")
    .join("\n");
}

export async function toolNames(client: Client): Promise<string[]> {
  return (await client.listTools()).tools.map((t) => t.name).sort();
}

/** Polls until `check` returns a value (not undefined), or fails after `timeoutMs`. */
export async function waitFor<T>(
  what: string,
  check: () => T | undefined | Promise<T | undefined>,
  timeoutMs = 10_000,
) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await check();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

export function writeText(path: string, text: string): void {
  writeFileSync(path, text);
}

// ---- JWT (RFC 7515 compact, ES256), signed here, verified by Warden against a JWKS file ----

export interface JwtIssuer {
  issuer: string;
  audience: string;
  jwks: { keys: Record<string, unknown>[] };
  token(claims: Record<string, unknown>, opts?: { key?: KeyObject; kid?: string }): string;
}

export function jwtIssuer(issuer = "https://idp.test/realms/warden", audience = "warden-e2e"): JwtIssuer {
  const pair = generateKeyPairSync("ec", { namedCurve: "P-256" });
  const kid = "e2e-ec-1";
  const b64u = (data: Buffer | string) => Buffer.from(data).toString("base64url");
  return {
    issuer,
    audience,
    jwks: { keys: [{ ...pair.publicKey.export({ format: "jwk" }), kid, use: "sig", alg: "ES256" }] },
    token(claims, opts = {}) {
      const now = Math.floor(Date.now() / 1000);
      const header = { alg: "ES256", typ: "JWT", kid: opts.kid ?? kid };
      const payload = { iss: issuer, aud: audience, iat: now - 5, exp: now + 600, ...claims };
      const input = `${b64u(JSON.stringify(header))}.${b64u(JSON.stringify(payload))}`;
      const sig = sign("sha256", Buffer.from(input), { key: opts.key ?? pair.privateKey, dsaEncoding: "ieee-p1363" });
      return `${input}.${b64u(sig)}`;
    },
  };
}
