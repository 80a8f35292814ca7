// End to end: `warden run --policy oci://…` and `warden serve` with `policy:
// oci://…`, in front of the real server-everything, driven by the official MCP
// SDK client. Every decision record names the bundle (reference and digest);
// a hot swap and a refused bundle are lifecycle records; the registry gone and
// the cache empty means no start.
import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { after, before, describe, it } from "node:test";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import { startGateway } from "../../src/cli/serve-command.js";
import { main } from "../../src/cli/warden.js";
import { loadServeConfig } from "../../src/mcp/config.js";
import { echoPolicy, publish, type TestKey, testKey } from "../helpers/bundles.js";
import { freePort, type RunningRegistry, registrySkipReason, run, startRegistry } from "../helpers/registry.js";

const skip = registrySkipReason();
const ROOT = resolve(import.meta.dirname, "..", "..", "..");
const CLI = join(ROOT, "dist", "src", "cli", "main.js");
const EVERYTHING = join(ROOT, "node_modules", "@modelcontextprotocol", "server-everything", "dist", "index.js");
const root = mkdtempSync(join(tmpdir(), "warden-guard-e2e-"));
process.env.DOCKER_CONFIG = join(root, "no-docker-config");
after(() => rmSync(root, { recursive: true, force: true }));

interface AuditRow {
  type: string;
  tool: string | null;
  decision: string | null;
  reason: string | null;
  policy: { name: string | null; bundle: string | null } | null;
  detail: { event?: string; bundle?: unknown; refusal?: string } | null;
}

async function auditRecords(dataDir: string): Promise<AuditRow[]> {
  let out = "";
  const code = await main(["audit", "query", "--data-dir", dataDir, "--format", "jsonl", "--limit", "1000"], {
    stdout: (t) => {
      out += t;
    },
    stderr: () => {},
    readStdin: async () => "",
  });
  assert.equal(code, 0);
  return out
    .trim()
    .split("\n")
    .filter(Boolean)
    .map((l) => JSON.parse(l) as AuditRow);
}

/** `warden ARGS...` in this process; fails the test unless it exits 0. */
async function cliOut(args: string[]): Promise<string> {
  let out = "";
  let err = "";
  const code = await main(args, {
    stdout: (t) => {
      out += t;
    },
    stderr: (t) => {
      err += t;
    },
    readStdin: async () => "",
  });
  assert.equal(code, 0, `warden ${args.join(" ")}: ${err}`);
  return out;
}

function childEnv(extra: NodeJS.ProcessEnv = {}): Record<string, string> {
  const env = { ...process.env, ...extra } as Record<string, string>;
  delete env.NODE_TEST_CONTEXT;
  delete env.NODE_OPTIONS;
  return env;
}

const text = (r: unknown) => ((r as { content: { text?: string }[] }).content ?? []).map((c) => c.text ?? "").join(" ");

async function until<T>(what: string, fn: () => Promise<T | undefined>, ms = 15_000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

describe("warden run and warden serve on a signed bundle", { skip }, () => {
  let reg: RunningRegistry;
  let signer: TestKey;
  before(async () => {
    reg = await startRegistry();
    signer = testKey(join(root, "keys"), "signer");
  });
  after(() => reg?.stop());

  /** `warden run` on a signed bundle reference (polled every second) in front of server-everything, with an SDK client. */
  async function runOnBundle(reference: string, dataDir: string): Promise<{ client: Client; stderr: string[] }> {
    const stderr: string[] = [];
    const transport = new StdioClientTransport({
      command: process.execPath,
      args: [
        ...[CLI, "run", "--policy", reference, "--agent", "dev", "--server", "everything"],
        ...["--poll-interval", "1s", "--data-dir", dataDir, "--", process.execPath, EVERYTHING, "stdio"],
      ],
      env: childEnv({ WARDEN_TRUST_KEYS: signer.publicPath }),
      stderr: "pipe",
    });
    transport.stderr?.on("data", (d: Buffer) => stderr.push(d.toString()));
    const client = new Client({ name: "warden-e2e", version: "1.0.0" });
    await client.connect(transport);
    return { client, stderr };
  }

  it("warden run: decisions carry the bundle; a new bundle is hot-swapped, a bad one refused, both recorded", async () => {
    const reference = `oci://${reg.host}/e2e/run:prod`;
    const v1 = await publish(reference, echoPolicy("allow", "v1"), { created: "2026-04-01T00:00:00Z", sign: signer });
    const dataDir = join(root, "run-data");
    const { client, stderr } = await runOnBundle(reference, dataDir);
    try {
      await client.listTools(); // as clients do; the gateway learns the upstream's tools from the listing
      const allowed = await client.callTool({ name: "echo", arguments: { message: "hello" } });
      assert.match(
        text(allowed),
        /hello/,
        `${stderr.join("")}\n${JSON.stringify(await auditRecords(dataDir), null, 1)}`,
      );

      const v2 = await publish(reference, echoPolicy("deny", "v2"), { created: "2026-04-02T00:00:00Z", sign: signer });
      await until("the hot swap", async () => {
        const r = await client.callTool({ name: "echo", arguments: { message: "again" } });
        return r.isError ? r : undefined;
      });
      await publish(reference, echoPolicy("allow", "v3"), { created: "2026-04-03T00:00:00Z", sign: null });
      await until("the refusal", async () =>
        (await auditRecords(dataDir)).some((r) => r.detail?.event === "policy-refused") ? true : undefined,
      );
      const still = await client.callTool({ name: "echo", arguments: { message: "still denied" } });
      assert.equal(still.isError, true, "the unsigned bundle was not swapped in");

      const records = await auditRecords(dataDir);
      const decisions = records.filter((r) => r.type === "decision" && r.tool === "echo");
      assert.equal(decisions[0]?.policy?.bundle, `${reference}@${v1.digest}`);
      assert.equal(decisions[0]?.decision, "allow");
      assert.equal(decisions.at(-1)?.policy?.bundle, `${reference}@${v2.digest}`);
      assert.equal(decisions.at(-1)?.decision, "deny");
      assert.ok(decisions.every((d) => d.policy?.bundle?.startsWith(`${reference}@sha256:`)));
      const start = records.find((r) => r.detail?.event === "start");
      assert.equal(start?.detail?.bundle, `${reference}@${v1.digest}`);
      const swap = records.find((r) => r.detail?.event === "policy-loaded");
      assert.match(swap?.reason ?? "", /a new signed policy bundle was verified and is now in force/);
      assert.equal((swap?.detail?.bundle as { digest?: string } | undefined)?.digest, v2.digest);
      const refused = records.find((r) => r.detail?.event === "policy-refused");
      assert.equal(refused?.detail?.refusal, "unsigned");
      assert.match(refused?.reason ?? "", /refused \(unsigned\); the last good bundle stays in force/);
    } finally {
      await client.close();
    }
  });

  it("warden run: a call held under one bundle while another is swapped in is decided again; each record names its bundle", async () => {
    const reference = `oci://${reg.host}/e2e/held:prod`;
    const held = `kind: ToolPolicy
metadata:
  name: held
spec:
  agent: dev
  mcpServer: everything
  defaultAction: deny
  rules:
    - name: echo-rule
      tools: [echo]
      action: require_approval
      approval:
        timeout: 1m
`;
    const v1 = await publish(reference, held, { created: "2026-04-01T00:00:00Z", sign: signer });
    const dataDir = join(root, "held-data");
    const { client, stderr } = await runOnBundle(reference, dataDir);
    try {
      await client.listTools();
      const call = client.callTool({ name: "echo", arguments: { message: "held" } }, undefined, { timeout: 60_000 });
      const id = await until("the approval request", async () => {
        const list = JSON.parse(await cliOut(["approvals", "list", "--json", "--data-dir", dataDir])) as {
          id: string;
        }[];
        return list[0]?.id;
      });
      const v2 = await publish(reference, echoPolicy("deny", "v2"), { created: "2026-04-02T00:00:00Z", sign: signer });
      await until("the hot swap", async () =>
        (await auditRecords(dataDir)).some((r) => r.detail?.event === "policy-loaded") ? true : undefined,
      );
      await cliOut(["approvals", "approve", id, "--reason", "looked fine under v1", "--data-dir", dataDir]);
      const result = await call;
      assert.equal(result.isError, true, `ran although the bundle now denies it: ${text(result)}\n${stderr.join("")}`);
      assert.match(text(result), /the policy changed while the call was held/);

      const records = await auditRecords(dataDir);
      const approvals = records.filter((r) => r.type === "approval");
      assert.deepEqual(
        approvals.map((r) => (r as { approval?: { event?: string } }).approval?.event),
        ["created", "approved"],
      );
      for (const r of approvals) assert.equal(r.policy?.bundle, `${reference}@${v1.digest}`, "approval records");
      const decisions = records.filter((r) => r.type === "decision" && r.tool === "echo");
      assert.equal(decisions.length, 1);
      const d = decisions[0] as AuditRow & { detail: { stage?: string; heldUnder?: { bundle?: string } } };
      assert.equal(d.decision, "deny");
      assert.equal(d.policy?.name, "v2");
      assert.equal(d.policy?.bundle, `${reference}@${v2.digest}`);
      assert.equal(d.detail.stage, "policy-changed");
      assert.equal(d.detail.heldUnder?.bundle, `${reference}@${v1.digest}`);
      assert.equal(records.filter((r) => r.type === "outcome" && r.tool === "echo").length, 0, "never forwarded");
    } finally {
      await client.close();
    }
  });

  it("warden run: no registry and no cache means no start (exit 2); a wrong key too", async () => {
    const port = await freePort();
    const r = await run(
      process.execPath,
      [
        CLI,
        "run",
        "--policy",
        `oci://127.0.0.1:${port}/e2e/none:prod`,
        "--trust-key",
        signer.publicPath,
        "--agent",
        "dev",
        "--server",
        "everything",
        "--data-dir",
        join(root, "none-data"),
        "--",
        process.execPath,
        EVERYTHING,
        "stdio",
      ],
      { env: childEnv(), input: "" },
    );
    assert.equal(r.code, 2);
    assert.match(r.stderr, /refusing to start \(fail closed\)/);
    const needsKey = await run(
      process.execPath,
      [
        CLI,
        "run",
        "--policy",
        `oci://${reg.host}/e2e/run:prod`,
        "--agent",
        "dev",
        "--server",
        "everything",
        "--",
        "true",
      ],
      {
        env: childEnv({ WARDEN_TRUST_KEYS: "" }),
      },
    );
    assert.equal(needsKey.code, 2);
    assert.match(needsKey.stderr, /needs --trust-key PUB \(or WARDEN_TRUST_KEYS\)/);
  });

  it("warden serve: policy oci:// with trust.keys; decision records carry the bundle", async () => {
    const reference = `oci://${reg.host}/e2e/serve:prod`;
    const p = await publish(reference, echoPolicy("allow"), { created: "2026-04-01T00:00:00Z", sign: signer });
    const dir = join(root, "serve");
    const dataDir = join(dir, "data");
    const file = join(root, "serve.yaml");
    writeFileSync(
      file,
      `listen: {host: 127.0.0.1, port: 0}
policy: ${reference}
trust:
  keys: [${signer.publicPath}]
bundle:
  pollInterval: 1h
dataDir: ${dataDir}
auth:
  anonymous: {agent: {name: dev}}
upstreams:
  everything:
    command: ${process.execPath}
    args: [${EVERYTHING}, stdio]
`,
    );
    const logs: string[] = [];
    const g = await startGateway(loadServeConfig(file), { version: "test", log: (m) => logs.push(m) });
    const client = new Client({ name: "warden-e2e", version: "1.0.0" });
    try {
      await client.connect(new StreamableHTTPClientTransport(new URL(`${g.url}/mcp/everything`)));
      assert.match(
        text(await client.callTool({ name: "echo", arguments: { message: "served" } })),
        /served/,
        logs.join("\n"),
      );
    } finally {
      await client.close();
      await g.stop();
    }
    const decision = (await auditRecords(dataDir)).find((r) => r.type === "decision" && r.tool === "echo");
    assert.equal(decision?.policy?.bundle, `${reference}@${p.digest}`);
  });
});
