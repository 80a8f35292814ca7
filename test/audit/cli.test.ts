// The `warden audit` and `warden keys` CLI contract: outputs and exit codes.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { openAuditLog } from "../../src/audit/log.js";
import { parseVerifierKey } from "../../src/audit/note.js";
import { runWarden } from "../helpers/cli.js";

const root = mkdtempSync(join(tmpdir(), "warden-cli-"));
const dir = join(root, "data");
const ORIGIN = "cli.example/log";
after(() => rmSync(root, { recursive: true, force: true }));

const run = (...argv: string[]) => runWarden(argv);

before(async () => {
  const log = await openAuditLog({
    dataDir: dir,
    origin: ORIGIN,
    warn: () => {},
    arguments: { mode: "full" },
    checkpointEvery: { records: 4, seconds: 0 },
  });
  const calls: [string, string, string, "allow" | "deny" | "require_approval", boolean][] = [
    ["dev-assistant", "alice", "create_issue", "allow", true],
    ["dev-assistant", "alice", "delete_file", "deny", true],
    ["ops-bot", "bob", "merge_pull_request", "require_approval", true],
    ["ops-bot", "bob", "=cmd|' /C calc'!A0", "deny", true],
    ["dev-assistant", "carol", "create_issue", "deny", false],
  ];
  for (const [agent, user, tool, decision, enforced] of calls) {
    await log.append({
      type: "decision",
      agent: { name: agent, model: "model-x", vendor: "vendor-y" },
      user: { id: user, groups: ["eng"] },
      server: "github",
      tool,
      arguments: { title: 'a, "quoted"\nvalue' },
      decision,
      enforced,
      policy: { name: "github-dev-agent", version: "sha256:aa", bundle: "sha256:bb", set: "sha256:cc" },
      rule: { index: 0, name: "r0" },
      reason: `${decision} by r0`,
      trace: { traceId: "trace-1", spanId: "span-1" },
    });
  }
  await log.append({
    type: "outcome",
    agent: { name: "dev-assistant" },
    server: "github",
    tool: "create_issue",
    detail: { status: "ok" },
  });
  await log.close();
});

describe("warden keys", () => {
  it("generates an Ed25519 pair and prints its verifier key; ECDSA prints a fingerprint", async () => {
    const out = join(root, "keys");
    const r = await run("keys", "generate", "--out", out, "--name", ORIGIN);
    assert.equal(r.code, 0, r.err);
    assert.equal(statSync(join(out, "warden.key")).mode & 0o777, 0o600);
    const vkey = /verifier key: (\S+)/.exec(r.out)?.[1] as string;
    assert.equal(parseVerifierKey(vkey).name, ORIGIN);
    const again = await run("keys", "generate", "--out", out);
    assert.equal(again.code, 2);
    assert.match(again.err, /already exists; pass --force/);
    const v = await run("keys", "vkey", "--key", join(out, "warden.pub"), "--name", ORIGIN);
    assert.equal(v.out.trim(), vkey);
    const ec = await run("keys", "generate", "--out", join(root, "ec"), "--type", "ecdsa-p256");
    assert.equal(ec.code, 0);
    assert.match(ec.out, /fingerprint: sha256:[0-9a-f]{64}/);
    assert.match(readFileSync(join(root, "ec", "warden.pub"), "utf8"), /BEGIN PUBLIC KEY/);
    assert.equal((await run("keys", "generate", "--out", join(root, "x"), "--type", "rsa")).code, 2);
    assert.equal((await run("keys", "generate", "--out", join(root, "y"), "--name", "a+b")).code, 2);
  });
});

describe("warden audit", () => {
  const pub = () => join(dir, "keys", "log.pub");

  it("verify accepts a verifier key string as --key", async () => {
    const vkey = (await run("keys", "vkey", "--key", pub(), "--name", ORIGIN)).out.trim();
    const r = await run("audit", "verify", "--data-dir", dir, "--key", vkey);
    assert.equal(r.code, 0, r.out);
    assert.match(r.out, /^ok: 6 records, 2 checkpoints, tree head 6 /);
    const json = JSON.parse((await run("audit", "verify", "--data-dir", dir, "--key", vkey, "--format", "json")).out);
    assert.equal(json.ok, true);
    assert.equal(json.origin, ORIGIN);
  });

  it("verify and check-proof say when --key is the log's key under another name, and how to fix it", async () => {
    // `keys generate` without --name names the verifier key "warden"; the log signs as its origin.
    const keys = join(root, "k4-keys");
    const g = await run("keys", "generate", "--out", keys);
    assert.equal(g.code, 0, g.err);
    assert.match(g.err, /named "warden".*warden keys vkey --key .*warden\.pub --name ORIGIN/s);
    const misnamed = /verifier key: (\S+)/.exec(g.out)?.[1] as string;
    assert.match(misnamed, /^warden\+[0-9a-f]{8}\+/);
    const k4 = join(root, "k4");
    const log = await openAuditLog({
      dataDir: k4,
      origin: "test/k4",
      signingKey: join(keys, "warden.key"),
      warn: () => {},
    });
    await log.append({ type: "lifecycle", reason: "one" });
    await log.close();
    const r = await run("audit", "verify", "--data-dir", k4, "--key", misnamed);
    assert.equal(r.code, 1, r.out);
    const right = (await run("keys", "vkey", "--key", join(keys, "warden.pub"), "--name", "test/k4")).out.trim();
    const esc = (t: string) => t.replace(/[.*+?^${}()|[\]\\/]/g, "\\$&");
    const given = misnamed.split("+").slice(0, 2).join("+");
    const hint = (prefix: string) =>
      new RegExp(
        `^FAIL: ${esc(prefix)}no signature from a trusted key \\(signed by test/k4\\+[0-9a-f]{8}\\) — ` +
          esc(`it was signed by the key given as ${given}, named "test/k4" instead of "warden": `) +
          ".*" +
          esc(
            `pass the PEM public key with --key, or the verifier key ${right} (warden keys vkey --key PUB.pem --name test/k4)`,
          ),
      );
    assert.match(r.out, hint("checkpoint #1 (size 1): "));
    // Both fixes work.
    assert.equal((await run("audit", "verify", "--data-dir", k4, "--key", join(keys, "warden.pub"))).code, 0);
    assert.equal((await run("audit", "verify", "--data-dir", k4, "--key", right)).code, 0);
    const proof = join(root, "k4-proof.json");
    writeFileSync(proof, (await run("audit", "prove", "--data-dir", k4, "--seq", "0")).out);
    const cp = await run("audit", "check-proof", "--key", misnamed, proof);
    assert.equal(cp.code, 1, cp.out);
    assert.match(cp.out, hint(""));
    assert.equal((await run("audit", "check-proof", "--key", right, proof)).code, 0);
  });

  it("verify names a missing data directory as unusable (exit 2)", async () => {
    const r = await run("audit", "verify", "--data-dir", join(root, "nowhere"));
    assert.equal(r.code, 2);
    assert.match(r.err, /no audit log in .*nowhere/);
  });

  it("prove --seq prints an inclusion proof that check-proof accepts, and a doctored one it rejects", async () => {
    const p = await run("audit", "prove", "--data-dir", dir, "--seq", "2");
    assert.equal(p.code, 0, p.err);
    const proof = JSON.parse(p.out);
    assert.equal(proof.type, "inclusion");
    assert.equal(proof.treeSize, 6);
    const file = join(root, "proof.json");
    writeFileSync(file, p.out);
    const ok = await run("audit", "check-proof", "--key", pub(), file);
    assert.equal(ok.code, 0, ok.out);
    assert.match(ok.out, /^ok: record 2 is in cli\.example\/log's tree of size 6/);
    writeFileSync(file, JSON.stringify({ ...proof, record: proof.record.replace("require_approval by", "allow by") }));
    const doctored = await run("audit", "check-proof", "--key", pub(), file);
    assert.equal(doctored.code, 1);
    assert.match(doctored.out, /^FAIL: the record does not hash to leafHash/);
    writeFileSync(file, JSON.stringify({ ...proof, seq: 3 }));
    assert.equal((await run("audit", "check-proof", "--key", pub(), file)).code, 1);
    const uncovered = await run("audit", "prove", "--data-dir", dir, "--seq", "6");
    assert.equal(uncovered.code, 2);
  });

  it("prove --from prints a consistency proof that check-proof accepts", async () => {
    const p = await run("audit", "prove", "--data-dir", dir, "--from", "4");
    assert.equal(p.code, 0, p.err);
    const proof = JSON.parse(p.out);
    assert.equal(proof.size1, 4);
    assert.equal(proof.size2, 6);
    assert.ok(proof.checkpoint1, "size 4 has its own checkpoint");
    const file = join(root, "cproof.json");
    writeFileSync(file, p.out);
    const ok = await run("audit", "check-proof", "--key", pub(), file);
    assert.equal(ok.code, 0, ok.out);
    assert.match(ok.out, /tree of size 6 extends the tree of size 4 \(signed\)/);
    writeFileSync(file, JSON.stringify({ ...proof, root1: proof.root2, checkpoint1: null }));
    assert.equal((await run("audit", "check-proof", "--key", pub(), file)).code, 1);
    const unsigned = await run("audit", "prove", "--data-dir", dir, "--from", "1", "--to", "5");
    assert.equal(unsigned.code, 2);
    assert.match(unsigned.err, /no checkpoint signs size 5/);
  });

  it("checkpoint prints the latest signed checkpoint", async () => {
    const r = await run("audit", "checkpoint", "--data-dir", dir);
    assert.equal(r.code, 0);
    assert.match(r.out, /^cli\.example\/log\n6\n[A-Za-z0-9+/]{43}=\n\n\u2014 cli\.example\/log /);
  });

  it("export csv quotes fields and defuses formulas", async () => {
    const r = await run("audit", "export", "--data-dir", dir, "--format", "csv");
    assert.equal(r.code, 0);
    const lines = r.out.split("\r\n");
    assert.equal(
      lines[0],
      "seq,time,id,type,agent,user,session,server,tool,decision,enforced,policy,policy_version,policy_bundle,rule,reason,arguments_digest,latency_us,trace_id",
    );
    assert.equal(lines.length, 8);
    assert.match(r.out, /,'=cmd\|' \/C calc'!A0,deny,/);
  });

  it("export ocsf writes API Activity events with the security-control fields", async () => {
    const r = await run("audit", "export", "--data-dir", dir, "--format", "ocsf");
    const events = r.out
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l));
    assert.equal(events.length, 6);
    const [allow, deny, approval, , audit] = events;
    assert.equal(allow.class_uid, 6003);
    assert.equal(allow.type_uid, 600399);
    assert.equal(allow.category_uid, 6);
    assert.equal(typeof allow.time, "number");
    assert.equal(allow.metadata.version, "1.8.0");
    assert.equal(allow.metadata.product.name, "Warden");
    assert.deepEqual([allow.action_id, allow.disposition_id], [1, 1]);
    assert.deepEqual([deny.action_id, deny.disposition_id], [2, 2]);
    assert.deepEqual([approval.action_id, approval.disposition_id], [2, 2]);
    assert.deepEqual([audit.action_id, audit.disposition_id], [3, 17]);
    assert.deepEqual(allow.policy, {
      name: "github-dev-agent",
      uid: "sha256:aa",
      version: "sha256:aa",
      is_applied: true,
      desc: "bundle sha256:bb",
    });
    assert.equal(allow.api.operation, "create_issue");
    assert.equal(allow.api.service.name, "github");
    assert.equal(allow.actor.app_name, "dev-assistant");
    assert.equal(allow.actor.user.uid, "alice");
    assert.equal(events[5].status_id, 1);
  });

  it("query filters by agent, user, tool, decision and type", async () => {
    const byAgent = await run("audit", "query", "--data-dir", dir, "--agent", "ops-bot", "--format", "jsonl");
    assert.equal(byAgent.out.trim().split("\n").length, 2);
    const denied = await run("audit", "query", "--data-dir", dir, "--decision", "deny");
    assert.equal(denied.out.trim().split("\n").length, 3);
    assert.match(
      denied.out,
      /^1 {2}\S+ {2}decision {2}deny {2}dev-assistant \(alice\) {2}github\/delete_file {2}— deny by r0$/m,
    );
    assert.match(denied.out, /deny \(audit mode\)/);
    const carol = await run("audit", "query", "--data-dir", dir, "--user", "carol", "--tool", "create_issue");
    assert.equal(carol.out.trim().split("\n").length, 1);
    const outcomes = await run("audit", "query", "--data-dir", dir, "--type", "outcome");
    assert.equal(outcomes.out.trim().split("\n").length, 1);
    const future = await run("audit", "query", "--data-dir", dir, "--since", "2999-01-01T00:00:00Z");
    assert.equal(future.out, "");
    const recent = await run("audit", "query", "--data-dir", dir, "--since", "1h", "--limit", "2");
    assert.equal(recent.out.trim().split("\n").length, 2);
    assert.equal((await run("audit", "query", "--data-dir", dir, "--decision", "maybe")).code, 2);
    assert.equal((await run("audit", "query", "--data-dir", dir, "--since", "yesterday")).code, 2);
  });

  it("tail prints the last records, and -f follows new ones as the gateway appends", async () => {
    const last = await run("audit", "tail", "--data-dir", dir, "-n", "2", "--format", "jsonl");
    assert.deepEqual(
      last.out
        .trim()
        .split("\n")
        .map((l) => JSON.parse(l).seq),
      [4, 5],
    );
    const followDir = join(root, "follow");
    const log = await openAuditLog({ dataDir: followDir, warn: () => {} });
    await log.append({ type: "lifecycle", reason: "first" });
    const cli = join(import.meta.dirname, "..", "..", "src", "cli", "main.js");
    const child = spawn(
      process.execPath,
      [cli, "audit", "tail", "-f", "--interval", "20", "--data-dir", followDir, "--type", "decision"],
      {
        stdio: ["ignore", "pipe", "inherit"],
      },
    );
    try {
      let out = "";
      const seen = new Promise<void>((resolve) => {
        child.stdout.on("data", (d) => {
          out += d;
          if (out.includes("github/late_call")) resolve();
        });
      });
      await new Promise((r) => setTimeout(r, 300));
      await log.append({ type: "lifecycle", reason: "filtered out" });
      await log.append({
        type: "decision",
        agent: { name: "a" },
        server: "github",
        tool: "late_call",
        decision: "allow",
        enforced: true,
        reason: "ok",
      });
      await Promise.race([
        seen,
        new Promise((_, reject) => setTimeout(() => reject(new Error(`tail -f printed: ${out}`)), 5000)),
      ]);
      assert.doesNotMatch(out, /first|filtered out/);
    } finally {
      child.kill("SIGTERM");
      await log.close();
    }
  });

  it("help and unknown commands follow the CLI conventions", async () => {
    assert.equal((await run("audit", "--help")).code, 0);
    assert.equal((await run("audit")).code, 2);
    assert.equal((await run("audit", "frobnicate")).code, 2);
    assert.equal((await run("keys", "--help")).code, 0);
    assert.match((await run("--help")).out, /audit verify/);
  });
});
