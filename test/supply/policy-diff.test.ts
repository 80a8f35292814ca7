// `warden policy diff`: policies and rules added, removed, changed and moved,
// and which sample decisions would change — between directories, bundle files
// and bundles in a registry.
import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { diffDecisions, diffPolicySets, diffRules, renderDiff } from "../../src/policy/diff.js";
import { publish, type TestKey, testKey } from "../helpers/bundles.js";
import { runWarden } from "../helpers/cli.js";
import { call, policySet } from "../helpers/policies.js";
import { type RunningRegistry, registrySkipReason, startRegistry } from "../helpers/registry.js";

const root = mkdtempSync(join(tmpdir(), "warden-diff-"));
process.env.DOCKER_CONFIG = join(root, "no-docker-config");
after(() => rmSync(root, { recursive: true, force: true }));

const OLD = `kind: ToolPolicy
metadata: {name: github}
spec:
  agent: dev
  mcpServer: github
  defaultAction: deny
  rules:
    - name: read
      tools: [list_issues, get_file_contents]
      action: allow
    - name: prs
      tools: [create_pull_request]
      action: allow
    - tools: [delete_file]
      action: deny
    - name: merge
      tools: [merge_pull_request]
      action: require_approval
---
kind: ToolPolicy
metadata: {name: retired}
spec:
  agent: "*"
  mcpServer: old
  rules: [{tools: ["*"], action: allow}]
`;
const NEW = `kind: ToolPolicy
metadata: {name: github}
spec:
  agent: dev
  mcpServer: github
  defaultAction: allow
  rules:
    - name: merge
      tools: [merge_pull_request]
      action: require_approval
    - name: read
      tools: [list_issues, get_file_contents]
      action: allow
    - name: prs
      tools: [create_pull_request]
      action: deny
    - tools: [push_files]
      action: deny
---
kind: ToolPolicy
metadata: {name: fresh}
spec:
  agent: "*"
  mcpServer: new
  rules: [{tools: ["*"], action: deny}]
`;

const cli = (...argv: string[]) => runWarden(argv);

function dir(name: string, text: string): string {
  const d = join(root, name);
  mkdirSync(d, { recursive: true });
  writeFileSync(join(d, "policies.yaml"), text);
  return d;
}

describe("policy diff", () => {
  it("lists policies added, removed and changed; settings; rules added, removed, changed and moved", () => {
    const d = diffPolicySets(policySet(OLD), policySet(NEW));
    assert.deepEqual(
      d.added.map((p) => p.name),
      ["fresh"],
    );
    assert.deepEqual(
      d.removed.map((p) => p.name),
      ["retired"],
    );
    assert.equal(d.changed.length, 1);
    const c = d.changed[0];
    assert.deepEqual(c?.fields, [{ path: "spec.defaultAction", from: "deny", to: "allow" }]);
    assert.deepEqual(
      c?.rules.map((r) => [r.change, r.name, r.from ?? null, r.to ?? null, r.fields ?? null]),
      [
        ["removed", null, 2, null, null],
        ["added", null, null, 3, null],
        ["changed", "prs", 1, 2, ["action"]],
        ["moved", "merge", 3, 0, null],
      ],
    );
    const text = renderDiff(d);
    assert.match(text, /^\+ ToolPolicy\/fresh/m);
    assert.match(text, /^- ToolPolicy\/retired/m);
    assert.match(text, /^ {4}spec\.defaultAction: "deny" → "allow"$/m);
    assert.match(text, /^ {4}~ rule 1 → 2 "prs" \[create_pull_request\]: action "allow" → "deny"$/m);
    assert.match(text, /^ {4}↕ rule "merge" moved from position 3 to 0/m);
    assert.match(text, /^ {4}- rule 2 \(unnamed\) \[delete_file\]/m);
  });

  it("an unnamed rule whose tools stayed is changed, not removed and added; identical sets have no changes", () => {
    const a = [{ tools: ["x"], action: "allow" }];
    const b = [{ tools: ["x"], action: "deny" }];
    assert.deepEqual(
      diffRules(a, b).map((r) => r.change),
      ["changed"],
    );
    const d = diffPolicySets(policySet(OLD), policySet(OLD));
    assert.deepEqual([d.added, d.removed, d.changed], [[], [], []]);
  });

  it("reports the sample calls that would be decided differently", () => {
    const inputs = [
      call("list_issues", {}, { agent: { name: "dev" }, server: "github" }),
      call("create_pull_request", {}, { agent: { name: "dev" }, server: "github" }),
      call("delete_file", {}, { agent: { name: "dev" }, server: "github" }),
      call("anything", {}, { agent: { name: "x" }, server: "old" }),
    ];
    const d = diffDecisions(policySet(OLD), policySet(NEW), inputs);
    assert.equal(d?.inputs, 4);
    assert.deepEqual(
      d?.changed.map((c) => [c.input, c.call.tool, c.from.decision, c.to.decision]),
      [
        [2, "create_pull_request", "allow", "deny"],
        [3, "delete_file", "deny", "allow"],
        [4, "anything", "allow", "deny"],
      ],
    );
  });

  it("CLI: directories and bundle files; exit 1 on differences, 0 without; --format json", async () => {
    const oldDir = dir("old", OLD);
    const newDir = dir("new", NEW);
    const inputs = join(root, "inputs.jsonl");
    writeFileSync(
      inputs,
      `${JSON.stringify({ agent: { name: "dev" }, request: { server: "github", tool: "create_pull_request", arguments: {} } })}\n${JSON.stringify({ agent: { name: "dev" }, request: { server: "github", tool: "list_issues" } })}\n`,
    );
    const r = await cli("policy", "diff", oldDir, newDir, "--inputs", inputs);
    assert.equal(r.code, 1, r.err);
    assert.match(r.out, /^--- .*old\n\+\+\+ .*new\n/);
    assert.match(
      r.out,
      /decisions: 1 of 2 inputs would be decided differently\n {2}input 1 \(dev → github\/create_pull_request\): allow by github rule 1 "prs" → deny by github rule 2 "prs"/,
    );
    const bundle = join(root, "old.tar");
    assert.equal((await cli("bundle", "build", oldDir, "-o", bundle)).code, 0);
    const same = await cli("policy", "diff", bundle, oldDir, "--inputs", inputs);
    assert.equal(same.code, 0, same.out + same.err);
    assert.match(same.out, /policies: 0 added, 0 removed, 0 changed\ndecisions: 0 of 2 inputs/);
    const json = JSON.parse((await cli("policy", "diff", bundle, newDir, "--format", "json")).out);
    assert.match(json.old, /old\.tar \(bundle revision /);
    assert.deepEqual(
      json.added.map((p: { name: string }) => p.name),
      ["fresh"],
    );
    const bad = await cli("policy", "diff", oldDir);
    assert.equal(bad.code, 2);
  });
});

describe("policy diff between bundles in a registry", { skip: registrySkipReason() }, () => {
  let reg: RunningRegistry;
  let signer: TestKey;
  before(async () => {
    reg = await startRegistry();
    signer = testKey(join(root, "keys"), "signer");
  });
  after(() => reg?.stop());

  it("compares oci:// references, verified with --key, or unverified and saying so", async () => {
    const a = await publish(`oci://${reg.host}/diff/p:v1`, OLD, { created: "2026-05-01T00:00:00Z", sign: signer });
    const b = await publish(`oci://${reg.host}/diff/p:v2`, NEW, { created: "2026-05-02T00:00:00Z", sign: null });
    const verified = await cli(
      "policy",
      "diff",
      `oci://${reg.host}/diff/p:v1`,
      dir("old2", OLD),
      "--key",
      signer.publicPath,
    );
    assert.equal(verified.code, 0, verified.err);
    assert.match(verified.out, new RegExp(`^--- oci://${reg.host}/diff/p:v1@${a.digest} \\(signature verified\\)`));
    const refused = await cli(
      "policy",
      "diff",
      `oci://${reg.host}/diff/p:v1`,
      `oci://${reg.host}/diff/p:v2`,
      "--key",
      signer.publicPath,
    );
    assert.equal(refused.code, 2);
    assert.match(refused.err, /is not signed/);
    const unverified = await cli("policy", "diff", `oci://${reg.host}/diff/p:v1`, `oci://${reg.host}/diff/p:v2`);
    assert.equal(unverified.code, 1);
    assert.match(unverified.err, /compared without checking its signature/);
    assert.match(unverified.out, new RegExp(`\\+\\+\\+ oci://${reg.host}/diff/p:v2@${b.digest} \\(unverified\\)`));
  });
});
