// The governor on its own, with a real audit log and a scripted upstream that
// answers tools/list: which policy a decision and its records name when the
// policy is swapped while a call is held for approval (or while it runs), and
// what audit mode checks, records and forwards.
import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, beforeEach, describe, it } from "node:test";
import { type AuditLog, openAuditLog } from "../../src/audit/log.js";
import type { AuditEvent } from "../../src/audit/record.js";
import {
  type ApprovalChannel,
  type ApprovalOutcome,
  type CallRequest,
  Governor,
  type PendingCall,
} from "../../src/mcp/governor.js";
import type { JsonRpcMessage } from "../../src/mcp/jsonrpc.js";
import type { PolicyInForce, PolicyProvider } from "../../src/mcp/policy-source.js";
import { RateLimiter } from "../../src/mcp/rate-limit.js";
import type { ToolDefinition } from "../../src/mcp/tool-catalog.js";
import { type Transport, UpstreamConnection } from "../../src/mcp/upstream.js";
import { policySet } from "../helpers/policies.js";

/** An upstream that answers tools/list with `tools` and records every tools/call it is sent. */
class ToolServer implements Transport {
  onmessage?: (m: JsonRpcMessage) => void;
  onclose?: (reason: string) => void;
  readonly calls: JsonRpcMessage[] = [];
  constructor(private readonly tools: ToolDefinition[]) {}
  async start() {}
  async close() {
    this.onclose?.("closed");
  }
  send(m: JsonRpcMessage) {
    const r = m as { id?: number; method?: string };
    if (r.method === "tools/call") this.calls.push(m);
    if (r.method === "tools/list" && r.id !== undefined) {
      const id = r.id;
      queueMicrotask(() => this.onmessage?.({ jsonrpc: "2.0", id, result: { tools: this.tools } }));
    }
  }
}

const TOOLS: ToolDefinition[] = [
  {
    name: "write_file",
    inputSchema: {
      type: "object",
      properties: { path: { type: "string" }, content: { type: "string" } },
      required: ["path"],
      additionalProperties: false,
    },
  },
  {
    name: "read_text_file",
    inputSchema: {
      type: "object",
      properties: { path: { type: "string" }, head: { type: "number" } },
      required: ["path"],
      additionalProperties: false,
    },
  },
];

const fsPolicy = (writes: string, header = "") => `kind: ToolPolicy
metadata:
  name: fs
spec:
  agent: agent-1
  mcpServer: fs
${header}  defaultAction: deny
  rules:
    - name: reads
      tools: [read_text_file]
      action: allow
      arguments:
        type: object
        properties:
          head: { type: integer, maximum: 5 }
    - name: writes
      tools: [write_file]
${writes}`;

const APPROVAL = `      action: require_approval
      approval:
        timeout: 1m
        approvers: { groups: [ops] }
`;
/** Another policy, on another server: changes the set's digest, not the fs policy's version or its obligations. */
const UNRELATED = `kind: ToolPolicy
metadata:
  name: other
spec:
  agent: agent-1
  mcpServer: other
  defaultAction: allow
`;

const A: PolicyInForce = { set: policySet(fsPolicy(APPROVAL)), bundle: "oci://registry.test/fs:prod@sha256:aaaa" };
const B = (writes: string, extra?: string): PolicyInForce => ({
  set: policySet(extra ? { "fs.yaml": fsPolicy(writes), "other.yaml": extra } : fsPolicy(writes)),
  bundle: "oci://registry.test/fs:prod@sha256:bbbb",
});

/** A policy source whose snapshot the test swaps, as a bundle hot swap does. */
class Swappable implements PolicyProvider {
  constructor(public state: PolicyInForce) {}
  current() {
    return this.state.set;
  }
  inForce() {
    return this.state;
  }
}

/** An approval channel the test answers. */
class Approvals implements ApprovalChannel {
  readonly asked: PendingCall[] = [];
  readonly completions: { id: string; outcome: string }[] = [];
  private answer?: (o: ApprovalOutcome) => void;
  request(call: PendingCall): Promise<ApprovalOutcome> {
    this.asked.push(call);
    return new Promise((resolve) => {
      this.answer = resolve;
    });
  }
  approve() {
    this.answer?.({
      approved: true,
      by: "bob",
      id: "apr_test",
      reason: "request apr_test",
      record: { id: "apr_test", state: "approved" },
    });
  }
  completed(id: string, outcome: string) {
    this.completions.push({ id, outcome });
  }
}

let dir: string;
let log: AuditLog;
let events: AuditEvent[];
before(async () => {
  dir = await mkdtemp(join(tmpdir(), "warden-governor-"));
  log = await openAuditLog({ dataDir: dir, warn: () => {} });
});
after(async () => {
  await log.close();
  await rm(dir, { recursive: true, force: true });
});
beforeEach(() => {
  events = [];
});

const audit = {
  append: (e: AuditEvent, o?: { lazy?: boolean }) => {
    events.push(e);
    return log.append(e, o);
  },
} as unknown as AuditLog;

function setup(policy: PolicyProvider, approvals?: ApprovalChannel) {
  const server = new ToolServer(TOOLS);
  const upstream = new UpstreamConnection("fs", server);
  const governor = new Governor({ policy, audit, limiter: new RateLimiter(), ...(approvals ? { approvals } : {}) });
  const call = (tool: string, args: Record<string, unknown>): CallRequest => ({
    identity: { agent: { name: "agent-1" }, user: { id: "alice", groups: ["dev"] }, via: "test" },
    sessionId: "s1",
    sessionCalls: {},
    upstream,
    tool,
    arguments: args,
  });
  return { governor, call, server };
}

const decisions = () => events.filter((e) => e.type === "decision");
const detailOf = (e: AuditEvent | undefined) => (e?.detail ?? {}) as Record<string, unknown>;
const policyOf = (e: AuditEvent | undefined) => e?.policy as { set?: string; bundle?: string | null; name?: string };

async function until(what: string, check: () => boolean): Promise<void> {
  const deadline = Date.now() + 5000;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

describe("a call held for approval while the policy changes", () => {
  /** Holds write_file under A, swaps in `next` while it waits, approves; returns the verdict. */
  async function holdSwapApprove(next: PolicyInForce) {
    const policy = new Swappable(A);
    const approvals = new Approvals();
    const g = setup(policy, approvals);
    const pending = g.governor.decideCall(g.call("write_file", { path: "a.txt", content: "x" }));
    await until("the approval request", () => approvals.asked.length === 1);
    policy.state = next;
    approvals.approve();
    return { verdict: await pending, approvals, governor: g.governor };
  }

  it("the approval request names the bundle the held decision came from", async () => {
    const { approvals } = await holdSwapApprove(A);
    assert.equal(approvals.asked[0]?.bundle, A.bundle);
  });

  it("swapped to a policy that denies: not run; the record names the new set and bundle, and says why", async () => {
    const next = B("      action: deny\n");
    const { verdict, approvals } = await holdSwapApprove(next);
    assert.equal(verdict.forward, false);
    assert.match(verdict.forward ? "" : verdict.message, /^Denied: the policy changed while the call was held/);
    const [d] = decisions();
    assert.equal(d?.decision, "deny");
    assert.equal(policyOf(d).set, next.set.digest);
    assert.equal(policyOf(d).bundle, next.bundle);
    assert.match(String(d?.reason), /the policy changed while the call was held/);
    assert.equal(detailOf(d).stage, "policy-changed");
    assert.equal(detailOf(d).policyDecision, "deny");
    assert.deepEqual(detailOf(d).heldUnder, {
      set: A.set.digest,
      bundle: A.bundle,
      policy: "fs",
      version: A.set.resources.find((r) => r.name === "fs")?.version,
      rule: { index: 1, name: "writes" },
      decision: "require_approval",
    });
    assert.equal((d?.approval as { outcome?: string } | null)?.outcome, "approved", "the approval is on the record");
    assert.equal(approvals.completions.length, 1);
    assert.match(approvals.completions[0]?.outcome ?? "", /^not forwarded: denied: the policy changed/);
  });

  it("swapped to a policy that allows: runs; decision and outcome records name the new set with its own bundle", async () => {
    const next = B("      action: allow\n");
    const { verdict, governor } = await holdSwapApprove(next);
    assert.equal(verdict.forward, true);
    const [d] = decisions();
    assert.equal(d?.decision, "allow");
    assert.equal(policyOf(d).set, next.set.digest);
    assert.equal(policyOf(d).bundle, next.bundle);
    assert.match(
      String(d?.reason),
      /approved by bob: .*the policy changed while the call was held, and the policy now/,
    );
    assert.equal(detailOf(d).heldUnder && (detailOf(d).heldUnder as { bundle?: string }).bundle, A.bundle);
    if (!verdict.forward) return;
    governor.recordOutcome(verdict, { status: "success" });
    const outcome = events.find((e) => e.type === "outcome");
    assert.equal(policyOf(outcome).set, next.set.digest);
    assert.equal(policyOf(outcome).bundle, next.bundle);
  });

  it("swapped to a set asking for the very same approval: the approval stands and the call runs", async () => {
    const next = B(APPROVAL, UNRELATED);
    assert.notEqual(next.set.digest, A.set.digest);
    const { verdict } = await holdSwapApprove(next);
    assert.equal(verdict.forward, true);
    const [d] = decisions();
    assert.equal(d?.decision, "allow");
    assert.equal(policyOf(d).bundle, next.bundle);
    assert.equal(policyOf(d).set, next.set.digest);
    assert.match(String(d?.reason), /requires the same approval/);
  });

  it("swapped to a policy asking other approvers: not run, the agent is told to call again", async () => {
    const next = B(APPROVAL.replace("[ops]", "[security]"));
    const { verdict } = await holdSwapApprove(next);
    assert.equal(verdict.forward, false);
    assert.match(verdict.forward ? "" : verdict.message, /requires a different approval .*call again/);
    assert.equal(detailOf(decisions()[0]).stage, "policy-changed");
  });

  it("a swap while an allowed call runs: its outcome record names the bundle it was decided under", async () => {
    const policy = new Swappable(B("      action: allow\n"));
    const decidedUnder = policy.state;
    const g = setup(policy);
    const verdict = await g.governor.decideCall(g.call("write_file", { path: "a.txt" }));
    assert.equal(verdict.forward, true);
    policy.state = A;
    if (!verdict.forward) return;
    g.governor.recordOutcome(verdict, { status: "success" });
    const outcome = events.find((e) => e.type === "outcome");
    assert.equal(policyOf(outcome).bundle, decidedUnder.bundle);
    assert.equal(policyOf(outcome).set, decidedUnder.set.digest);
    assert.equal(policyOf(decisions()[0]).bundle, decidedUnder.bundle);
  });
});

describe("audit mode", () => {
  const audited = new Swappable({ set: policySet(fsPolicy("      action: allow\n", "  mode: audit\n")), bundle: null });

  it("a look-alike tool name is not forwarded, and the record says so", async () => {
    const g = setup(audited);
    const verdict = await g.governor.decideCall(g.call("Read_Text_File", { path: "a.txt" }));
    assert.equal(verdict.forward, false);
    assert.equal(verdict.forward ? "" : verdict.message, 'Tool "Read_Text_File" is not available.');
    const [d] = decisions();
    assert.equal(d?.decision, "deny");
    assert.equal(d?.enforced, true, "refused, whatever the policy's mode");
    assert.match(String(d?.reason), /has no tool named exactly "Read_Text_File"/);
    assert.equal(detailOf(d).stage, "unknown-tool");
    assert.equal(detailOf(d).policyEnforced, false);
  });

  it("arguments the tool's inputSchema forbids: forwarded, recorded as the deny enforcement would give", async () => {
    const g = setup(audited);
    const verdict = await g.governor.decideCall(g.call("read_text_file", { path: "a.txt", mode: "raw" }));
    assert.equal(verdict.forward, true, "audit mode lets the call through");
    const [d] = decisions();
    assert.equal(d?.decision, "deny");
    assert.equal(d?.enforced, false);
    assert.match(String(d?.reason), /^denied: .*inputSchema/);
    assert.equal(detailOf(d).stage, "input-schema");
    assert.equal(detailOf(d).policyDecision, "allow");
    // The rule's own arguments schema is part of the policy decision, in audit mode too.
    const headed = await g.governor.decideCall(g.call("read_text_file", { path: "a.txt", head: 50 }));
    assert.equal(headed.forward, true);
    assert.equal(decisions()[1]?.decision, "deny");
    assert.match(String(decisions()[1]?.reason), /the arguments schema of rule "reads"/);
    // A call enforcement would allow is recorded as such, with no stage.
    const fine = await g.governor.decideCall(g.call("read_text_file", { path: "a.txt" }));
    assert.equal(fine.forward, true);
    assert.equal(decisions()[2]?.decision, "allow");
    assert.equal(detailOf(decisions()[2]).stage, undefined);
  });
});
