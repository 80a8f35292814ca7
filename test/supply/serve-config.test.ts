// warden.yaml for a Guard on a signed bundle: policy oci://… needs trust.keys;
// bundle settings; every mistake is an error with its place, never ignored.
import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, it } from "node:test";
import { loadServeConfig } from "../../src/mcp/config.js";
import { PolicyLoadError } from "../../src/policy/diagnostics.js";

const root = mkdtempSync(join(tmpdir(), "warden-serve-config-"));
after(() => rmSync(root, { recursive: true, force: true }));

const BASE = `auth:
  anonymous: {agent: {name: dev}}
upstreams:
  s: {command: "true"}
`;

function load(text: string) {
  const file = join(root, `c${Math.random().toString(36).slice(2)}.yaml`);
  writeFileSync(file, `${text}${BASE}`);
  return loadServeConfig(file);
}

function errors(text: string): string[] {
  try {
    load(text);
  } catch (err) {
    assert.ok(err instanceof PolicyLoadError);
    return err.diagnostics.filter((d) => d.severity === "error").map((d) => `${d.line}: ${d.message}`);
  }
  assert.fail("expected the config to be refused");
}

describe("serve config: policy from a signed bundle", () => {
  it("reads policy oci://, trust.keys (relative to the config) and bundle settings", () => {
    const c = load(`policy: oci://registry.example.com/warden/policies:prod
trust:
  keys: [keys/signer.pub, /etc/warden/other.pub]
bundle:
  pollInterval: 5m
  allowRollback: true
  insecure: true
  authFile: auth.json
`);
    assert.deepEqual(c.policy, ["oci://registry.example.com/warden/policies:prod"]);
    assert.deepEqual(c.trust?.keys, [join(root, "keys/signer.pub"), "/etc/warden/other.pub"]);
    assert.deepEqual(c.bundle, {
      pollIntervalMs: 300_000,
      allowRollback: true,
      insecure: true,
      authFile: join(root, "auth.json"),
    });
    const d = load(`policy: oci://127.0.0.1:5000/p@sha256:${"a".repeat(64)}\ntrust: {keys: k.pub}\n`);
    assert.deepEqual(d.bundle, { pollIntervalMs: 60_000, allowRollback: false, insecure: false });
  });

  it("refuses an oci:// policy without trust.keys, mixed with files, or malformed", () => {
    assert.match(errors("policy: oci://r.example/p:v1\n").join("\n"), /^1: an oci:\/\/ policy needs trust.keys/m);
    assert.match(
      errors("policy: [oci://r.example/p:v1, ./more]\ntrust: {keys: [k.pub]}\n").join("\n"),
      /an oci:\/\/ policy is the whole policy/,
    );
    assert.match(
      errors("policy: oci://r.example/P:v1\ntrust: {keys: [k.pub]}\n").join("\n"),
      /not a valid repository path component/,
    );
  });

  it("refuses trust and bundle settings for policy files, and bad values", () => {
    assert.match(
      errors("policy: ./p\ntrust: {keys: [k.pub]}\n").join("\n"),
      /^2: trust.keys applies to an oci:\/\/ policy/m,
    );
    assert.match(
      errors("policy: ./p\nbundle: {pollInterval: 1m}\n").join("\n"),
      /bundle settings apply to an oci:\/\/ policy/,
    );
    assert.match(
      errors("policy: oci://r.example/p:v1\ntrust: {keys: [k.pub]}\nbundle: {pollInterval: 10ms}\n").join("\n"),
      /10ms is outside the allowed range/,
    );
    assert.match(
      errors("policy: oci://r.example/p:v1\ntrust: {keys: [k.pub]}\nbundle: {polInterval: 1m}\n").join("\n"),
      /polInterval/,
    );
  });
});
