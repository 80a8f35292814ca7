import assert from "node:assert/strict";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { loadServeConfig } from "../../src/mcp/config.js";
import { PolicyLoadError } from "../../src/policy/diagnostics.js";

let dir: string;
before(async () => {
  dir = await mkdtemp(join(tmpdir(), "warden-config-"));
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function load(text: string) {
  const file = join(dir, `c${Math.random().toString(36).slice(2)}.yaml`);
  await writeFile(file, text);
  return { file, load: () => loadServeConfig(file) };
}

function problems(fn: () => unknown): string[] {
  try {
    fn();
  } catch (err) {
    assert.ok(err instanceof PolicyLoadError, String(err));
    return err.diagnostics.filter((d) => d.severity === "error").map((d) => `${d.line}:${d.col} ${d.message}`);
  }
  assert.fail("expected the config to be refused");
}

const minimal = `policy: ./p
auth:
  anonymous: {agent: {name: dev}}
upstreams:
  fs: {command: node, args: [server.js], env: {STATE: "\${WARDEN_CONFIG_DIR}/state"}}
`;

describe("warden serve config", () => {
  it("fills defaults and resolves paths relative to the config file", async () => {
    const c = (await load(minimal)).load();
    assert.deepEqual(c.listen, { host: "127.0.0.1", port: 8080 });
    assert.deepEqual(c.policy, [join(dir, "p")]);
    assert.equal(c.upstreams.fs?.cwd, dir, "stdio servers run in the config's directory");
    assert.equal(c.upstreams.fs?.env?.STATE, `${dir}/state`, "WARDEN_CONFIG_DIR is the config's directory");
    assert.equal(c.defaultDecision, "deny");
    assert.equal(c.audit.arguments, "digest");
    assert.equal(c.limits.maxMessageBytes, 4 * 1024 * 1024);
    assert.equal(c.limits.sessionIdleMs, 30 * 60_000);
  });

  it("reports misspelt settings with line, column and a suggestion", async () => {
    const { load: l } = await load(`${minimal}limits:\n  maxMesageBytes: 10\n`);
    const [p] = problems(l);
    assert.match(p ?? "", /^7:3 unknown field "maxMesageBytes" in limits \(did you mean "maxMessageBytes"\?\)/);
  });

  it("refuses unsafe or contradictory setups", async () => {
    assert.match(
      problems((await load("policy: p\nupstreams:\n  fs: {command: x}\n")).load).join("\n"),
      /configure auth/,
    );
    assert.match(
      problems((await load(`${minimal.replace("policy: ./p", "policy: ./p\nlisten: {host: 0.0.0.0}")}`)).load).join(
        "\n",
      ),
      /anonymous identity is only allowed when listening on loopback, not 0\.0\.0\.0/,
    );
    assert.match(
      problems(
        (
          await load(
            `policy: p\nauth: {anonymous: {agent: {name: a}}}\nupstreams:\n  fs: {command: x, url: "http://h/mcp"}\n`,
          )
        ).load,
      ).join("\n"),
      /either command .* or url/,
    );
    assert.match(
      problems(
        (await load(`policy: p\nauth: {anonymous: {agent: {name: a}}}\nupstreams:\n  a__b: {command: x}\n`)).load,
      ).join("\n"),
      /not "__"/,
    );
    assert.match(
      problems(
        (
          await load(
            `policy: p\nauth:\n  apiKeys: [{name: k, hash: "abc", agent: {name: a}}]\nupstreams:\n  fs: {command: x}\n`,
          )
        ).load,
      ).join("\n"),
      /store the key's hash, not the key/,
    );
    assert.match(
      problems((await load(`${minimal}audit: {arguments: mask, mask: [/ok, card/number, "/a~2b"]}\n`)).load).join("\n"),
      /audit\.mask "card\/number" is not a JSON Pointer: it must start with \/, as in \/card\/number\n.*audit\.mask "\/a~2b" is not a JSON Pointer: ~ must be written ~0/,
    );
    const key = `hash: "sha256:${"a".repeat(64)}"`;
    const offLoopback = `policy: p\nlisten: {host: 0.0.0.0, port: 8443}\nauth:\n  apiKeys: [{name: k, ${key}, agent: {name: a}}]\nupstreams:\n  fs: {command: x}\n`;
    assert.match(
      problems((await load(offLoopback)).load).join("\n"),
      /2:\d+ listening on 0\.0\.0\.0 \(not loopback\) needs security\.allowedHosts: .*"warden\.example\.com:8443"/,
    );
    const allowed = loadServeConfig(
      (await load(`${offLoopback}security: {allowedHosts: ["warden.example.com:8443"]}\n`)).file,
    );
    assert.deepEqual(allowed.security.allowedHosts, ["warden.example.com:8443"], "with the allow-list, it loads");
  });

  it("accepts a list of policies, JWT settings and remote upstreams", async () => {
    const c = (
      await load(`policy: [a, b]
auth:
  jwt: {jwks: keys/jwks.json, issuer: https://idp, audience: [warden, other]}
upstreams:
  remote: {url: "https://tools.example.com/mcp", headers: {Authorization: "Bearer t"}}
`)
    ).load();
    assert.deepEqual(c.policy, [join(dir, "a"), join(dir, "b")]);
    assert.equal(c.auth.jwt?.jwks, join(dir, "keys/jwks.json"));
    assert.deepEqual(c.auth.jwt?.audience, ["warden", "other"]);
    assert.equal(c.upstreams.remote?.cwd, undefined);
  });
});
