// The approval service with a real SQLite store and a real audit log: every way
// a held call ends (approve, deny, expiry, withdrawal, shutdown, restart, store
// failure), who may decide, grants, progress, elicitation, and the records.
import assert from "node:assert/strict";
import { createServer, type IncomingMessage, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { afterEach, beforeEach, describe, it } from "node:test";
import { decide, revoke } from "../../src/approvals/authorize.js";
import { ApprovalService, type ApprovalServiceOptions } from "../../src/approvals/service.js";
import { OUTCOMES } from "../../src/approvals/sql.js";
import { type ApprovalStore, openApprovalStore } from "../../src/approvals/store.js";
import { ApprovalError, ApprovalStoreError } from "../../src/approvals/types.js";
import { payload, verifySignature } from "../../src/approvals/webhook.js";
import { type AuditLog, openAuditLog } from "../../src/audit/log.js";
import type { AuditEvent } from "../../src/audit/record.js";
import type { HoldContext, PendingCall } from "../../src/mcp/governor.js";
import { approvalDecision, obligation, tempDir, waitFor } from "./helpers.js";

const call = (
  user = "alice",
  via = "api-key:agent-1",
  args: Record<string, unknown> = { path: "a.txt" },
): PendingCall => ({
  input: {
    agent: { name: "agent-1" },
    user: { id: user, groups: ["dev"] },
    request: { server: "fs", tool: "write_file", arguments: args, method: "tools/call" },
    session: { id: "s1" },
  },
  identity: { agent: { name: "agent-1" }, user: { id: user, groups: ["dev"] }, via },
});

const bob = { id: "bob", groups: ["ops"], via: "api-key:bob" };

describe("approval service", () => {
  let t: ReturnType<typeof tempDir>;
  let log: AuditLog;
  let events: AuditEvent[];
  let audit: AuditLog;
  let store: ApprovalStore;
  let service: ApprovalService;
  let failAudit = false;
  const extra: ApprovalService[] = [];

  const open = async (o: Partial<ApprovalServiceOptions> = {}, s = store): Promise<ApprovalService> =>
    ApprovalService.open({
      store: s,
      audit,
      arguments: { mode: "full" },
      node: "test-node",
      log: () => {},
      progressIntervalMs: 100,
      ...o,
    });

  beforeEach(async () => {
    t = tempDir();
    log = await openAuditLog({ dataDir: join(t.dir, "data"), warn: () => {} });
    events = [];
    failAudit = false;
    audit = {
      append: async (e: AuditEvent) => {
        if (failAudit) throw new Error("disk full");
        events.push(e);
        return log.append(e);
      },
    } as unknown as AuditLog;
    store = await openApprovalStore(undefined, join(t.dir, "data"));
    service = await open();
  });
  afterEach(async () => {
    for (const s of extra.splice(0)) await s.close().catch(() => {});
    await service.close().catch(() => {});
    await log.close();
    t.remove();
  });

  const approvalEvents = () => events.filter((e) => e.type === "approval").map((e) => e.approval?.event);
  const pendingId = () =>
    waitFor("a pending request", async () => (await service.store.list({ states: ["pending"] }))[0]?.id);

  it("holds the call until an approver approves; records created and approved with who, how and why", async () => {
    const held = service.request(call(), approvalDecision());
    const id = await pendingId();
    const r = await service.decide(id, "approve", bob, { reason: "looks fine" });
    assert.equal(r.state, "approved");
    const outcome = await held;
    assert.equal(outcome.approved, true);
    assert.equal(outcome.by, "bob");
    assert.equal(outcome.id, id);
    assert.deepEqual(approvalEvents(), ["created", "approved"]);
    const created = events.find((e) => e.approval?.event === "created");
    assert.deepEqual(created?.arguments, { path: "a.txt" });
    assert.equal(created?.approval?.id, id);
    const approved = events.find((e) => e.approval?.event === "approved");
    assert.equal(approved?.approval?.by, "bob");
    assert.equal(approved?.approval?.via, "api-key:bob");
    assert.equal(approved?.reason, "looks fine");
    // The stored request keeps the arguments as the audit settings say (full here).
    assert.deepEqual((await store.get(id))?.details.arguments, { path: "a.txt" });
    service.completed(id, "success");
    await waitFor("the outcome", async () => ((await store.get(id))?.outcome === "success" ? true : undefined));
  });

  it("every approval record names the signed bundle of the decision that asked (created, approved, grant-used)", async () => {
    const bundle = "oci://registry.test/policies:prod@sha256:1234";
    const first = service.request({ ...call(), bundle }, approvalDecision());
    const id = await pendingId();
    assert.equal((await store.get(id))?.details.policy.bundle, bundle, "kept with the request");
    await service.decide(id, "approve", bob, { forMs: 60_000 });
    assert.equal((await first).approved, true);
    const second = await service.request({ ...call(), bundle: `${bundle}5` }, approvalDecision());
    assert.equal(second.approved, true);
    const records = events.filter((e) => e.type === "approval");
    assert.deepEqual(
      records.map((e) => e.approval?.event),
      ["created", "approved", "grant-used"],
    );
    const bundles = records.map((e) => (e.policy as { bundle?: string | null }).bundle);
    assert.deepEqual(bundles, [bundle, bundle, `${bundle}5`]);
    // Policies from files: null, as on decision records.
    events.length = 0;
    const third = service.request(call("erin"), approvalDecision());
    await waitFor("erin's request", async () =>
      events.some((e) => e.approval?.event === "created") ? true : undefined,
    );
    assert.equal((events[0]?.policy as { bundle?: string | null } | undefined)?.bundle, null);
    await service.decide((await store.list({ states: ["pending"] }))[0]?.id as string, "deny", bob);
    await third;
  });

  it("denies with the approver's reason", async () => {
    const held = service.request(call(), approvalDecision());
    const id = await pendingId();
    await service.decide(id, "deny", bob, { reason: "not on a Friday" });
    const outcome = await held;
    assert.equal(outcome.approved, false);
    assert.match(outcome.reason, /denied by bob: not on a Friday/);
    assert.deepEqual(approvalEvents(), ["created", "denied"]);
  });

  it("expires after approval.timeout; a late approval is refused", async () => {
    const started = Date.now();
    const outcome = await service.request(call(), approvalDecision(obligation({ timeoutMs: 300, timeout: "300ms" })));
    assert.ok(Date.now() - started >= 290);
    assert.equal(outcome.approved, false);
    assert.match(outcome.reason, /expired: no decision within 300ms/);
    await assert.rejects(service.decide(outcome.id as string, "approve", bob), /already expired/);
    assert.deepEqual(approvalEvents(), ["created", "expired"]);
  });

  it("withdraws the request when the client cancels, and sends progress while held", async () => {
    const controller = new AbortController();
    const progress: string[] = [];
    const hold: HoldContext = { signal: controller.signal, progress: (m) => progress.push(m) };
    const held = service.request(call(), approvalDecision(), hold);
    const id = await pendingId();
    await waitFor("three progress notifications", () => (progress.length >= 3 ? true : undefined));
    assert.match(progress[0] ?? "", new RegExp(`Waiting for approval of write_file \\(request ${id}, \\d+s left\\)`));
    controller.abort(new Error("the client cancelled the call"));
    const outcome = await held;
    assert.equal(outcome.approved, false);
    assert.match(outcome.reason, /withdrawn: the client cancelled the call/);
    const count = progress.length;
    await new Promise((r) => setTimeout(r, 250));
    assert.equal(progress.length, count, "no progress after the call ended");
    assert.equal((await store.get(id))?.state, "withdrawn");
  });

  it("approvers: self-approval refused unless allowed; users and groups from the rule; several obligations all apply", async () => {
    const strict = approvalDecision(
      obligation({ approvers: { users: ["bob"], groups: ["sre"] } }),
      obligation({ approvers: { users: [], groups: ["ops", "sre"] } }),
    );
    const held = service.request(call(), strict);
    const id = await pendingId();
    const refuse = (who: { id: string; groups: string[]; via: string }, re: RegExp) =>
      assert.rejects(
        service.decide(id, "approve", who),
        (e: unknown) => e instanceof ApprovalError && e.status === 403 && re.test(e.message),
      );
    await refuse({ id: "alice", groups: ["sre"], via: "jwt:idp" }, /self-approval/);
    await refuse({ id: "carol", groups: ["dev"], via: "jwt:idp" }, /not an approver/);
    await refuse({ id: "bob", groups: [], via: "api-key:bob" }, /groups ops, sre/); // second obligation
    await refuse({ id: "", groups: ["sre"], via: "api-key:ci" }, /no user id/);
    // The anonymous identity of a loopback gateway has a user id and even the right group, but is no approver.
    await refuse(
      { id: "local-developer", groups: ["sre"], via: "anonymous" },
      /must authenticate with an API key or a JWT/,
    );
    await service.decide(id, "approve", { id: "dave", groups: ["sre"], via: "jwt:idp" });
    assert.equal((await held).approved, true);

    const selfOk = service.request(call(), approvalDecision(obligation({ allowSelfApproval: true })));
    const id2 = await waitFor(
      "second request",
      async () => (await store.list({ states: ["pending"] })).find((r) => r.id !== id)?.id,
    );
    await service.decide(id2, "approve", { id: "alice", groups: [], via: "jwt:idp" });
    assert.equal((await selfOk).approved, true);
  });

  it("default approvers apply to rules that name none", async () => {
    const s = await open({ defaultApprovers: { users: ["root-approver"], groups: [] } });
    extra.push(s);
    const held = s.request(call(), approvalDecision());
    const id = await pendingId();
    await assert.rejects(s.decide(id, "approve", bob), /users root-approver/);
    await s.decide(id, "approve", { id: "root-approver", groups: [], via: "jwt:idp" });
    assert.equal((await held).approved, true);
  });

  it("an approval for a duration is a grant: later calls pass at once (recorded), until it expires or is revoked", async () => {
    const first = service.request(call(), approvalDecision());
    const id = await pendingId();
    const r = await service.decide(id, "approve", bob, { forMs: 60_000 });
    assert.ok(r.grantId);
    assert.equal((await first).approved, true);
    const second = await service.request(call("alice", "api-key:agent-1", { path: "b.txt" }), approvalDecision());
    assert.equal(second.approved, true);
    assert.equal(second.id, r.grantId);
    assert.match(second.reason, /grant grt_\w+ by bob until/);
    assert.ok(approvalEvents().includes("grant-used"));
    await waitFor("the use counted", async () =>
      (await store.getGrant(r.grantId as string))?.uses === 1 ? true : undefined,
    );
    // Another user of the same agent is not covered.
    const other = service.request(call("erin"), approvalDecision());
    const otherId = await waitFor(
      "erin's request",
      async () => (await store.list({ states: ["pending"] })).find((x) => x.details.user?.id === "erin")?.id,
    );
    await service.decide(otherId, "deny", bob);
    assert.equal((await other).approved, false);
    // A grant whose approver no longer qualifies under the current rule is not used.
    const stricter = service.request(
      call(),
      approvalDecision(obligation({ approvers: { users: ["carol"], groups: [] } })),
    );
    const strictId = await waitFor(
      "held despite the grant",
      async () => (await store.list({ states: ["pending"] })).find((x) => x.details.user?.id === "alice")?.id,
    );
    await service.decide(strictId, "deny", { id: "carol", groups: [], via: "jwt:idp" });
    assert.equal((await stricter).approved, false);
    // Revoked: held again.
    await service.revokeGrant(r.grantId as string, bob, "done");
    assert.ok(approvalEvents().includes("grant-revoked"));
    await assert.rejects(service.revokeGrant(r.grantId as string, bob), /already revoked/);
    const third = service.request(call(), approvalDecision(obligation({ timeoutMs: 200 })));
    assert.equal((await third).approved, false);
  });

  it("a grant ends when its window does", async () => {
    const first = service.request(call(), approvalDecision());
    const id = await pendingId();
    await service.decide(id, "approve", bob, { forMs: 1000 });
    await first;
    assert.equal((await service.request(call(), approvalDecision())).approved, true);
    await new Promise((r) => setTimeout(r, 1100));
    const after = await service.request(call(), approvalDecision(obligation({ timeoutMs: 200 })));
    assert.equal(after.approved, false);
    assert.match(after.reason, /expired/);
  });

  it("elicitation: the client's user confirms or refuses; without the capability the request waits in the queue", async () => {
    const asked: { message: string; schema: Record<string, unknown> }[] = [];
    const hold = (answer: { action: string; content?: Record<string, unknown> }): HoldContext => ({
      signal: new AbortController().signal,
      elicit: async (message, schema) => {
        asked.push({ message, schema });
        return answer;
      },
    });
    const elicitation = approvalDecision(obligation({ type: "elicitation" }));
    const yes = await service.request(call(), elicitation, hold({ action: "accept", content: { approve: true } }));
    assert.equal(yes.approved, true);
    assert.equal(yes.by, "alice");
    assert.match(asked[0]?.message ?? "", /agent-1 wants to call write_file on fs/);
    assert.deepEqual((asked[0]?.schema as { required?: string[] } | undefined)?.required, ["approve"]);
    const no = await service.request(call(), elicitation, hold({ action: "decline" }));
    assert.equal(no.approved, false);
    assert.match(no.reason, /denied by alice: the user chose decline/);
    const answeredNo = await service.request(
      call(),
      elicitation,
      hold({ action: "accept", content: { approve: false, reason: "wrong file" } }),
    );
    assert.match(answeredNo.reason, /wrong file/);
    // No elicitation capability: queued for approvers instead (recorded).
    const queued = service.request(call(), elicitation, { signal: new AbortController().signal });
    const id = await pendingId();
    await service.decide(id, "approve", bob);
    assert.equal((await queued).approved, true);
    const notes = events.filter((e) => e.approval?.event === "notified" && e.approval?.channel === "elicitation");
    assert.ok(notes.some((e) => e.approval?.delivered === false && /did not declare/.test(String(e.approval?.error))));
  });

  it("shutdown ends held calls with a tool error and the request is expired", async () => {
    const held = service.request(call(), approvalDecision());
    const id = await pendingId();
    await service.close();
    const outcome = await held;
    assert.equal(outcome.approved, false);
    assert.match(outcome.reason, /gateway shut down; the call will never run/);
    const s2 = await openApprovalStore(undefined, join(t.dir, "data"));
    assert.equal((await s2.get(id))?.state, "expired");
    await s2.close();
    assert.equal((await service.request(call(), approvalDecision())).approved, false);
  });

  it("a restarted gateway (same node) expires its predecessor's requests; an approval afterwards is refused", async () => {
    const held = service.request(call(), approvalDecision());
    const id = await pendingId();
    // A second process of the same node starts (as after a crash): the old request is expired at once.
    const store2 = await openApprovalStore(undefined, join(t.dir, "data"));
    const restarted = await open({}, store2);
    extra.push(restarted);
    assert.equal((await store2.get(id))?.state, "expired");
    assert.match((await store2.get(id))?.decisionReason ?? "", /restarted; the call will never run/);
    // The old holder (still alive in this test) sees the expiry and refuses its call.
    const outcome = await held;
    assert.equal(outcome.approved, false);
    await assert.rejects(restarted.decide(id, "approve", bob), /already expired/);
  });

  it("a request decided after its holder stopped is recorded as not run by the next gateway of its node, once; ends the holder saw are not", async () => {
    // Ends the holder saw: noted on the request before the call could run.
    const approvedHeld = service.request(call(), approvalDecision());
    const a = await pendingId();
    await service.decide(a, "approve", bob);
    assert.equal((await approvedHeld).approved, true);
    assert.equal((await store.get(a))?.outcome, OUTCOMES.forwarding);
    const deniedHeld = service.request(call(), approvalDecision());
    const d = await pendingId();
    await service.decide(d, "deny", bob);
    await deniedHeld;
    assert.equal((await store.get(d))?.outcome, OUTCOMES.denied);

    // A previous run of this node, killed with a request pending: approved from another process
    // (as `warden approvals approve` on the store) while its heartbeat still looked fresh.
    const cli = await openApprovalStore(undefined, join(t.dir, "data"));
    try {
      const now = Date.now();
      await cli.registerInstance("gw_killed", "test-node", now);
      const orphan = (await store.get(a))?.details;
      await cli.create({
        id: "apr_killedholder1",
        createdAt: now,
        expiresAt: now + 60_000,
        holder: "gw_killed",
        node: "test-node",
        details: orphan as never,
      });
      const approved = await decide(
        cli,
        "apr_killedholder1",
        "approve",
        { id: "root", groups: [], via: "os:root" },
        { leaseMs: 30_000, reason: "ok" },
      );
      assert.equal(approved.state, "approved", "the decision itself is taken");
    } finally {
      await cli.close();
    }
    // The gateway now running on the node (the restarted one) closes and records it.
    const record = await waitFor("the not-run record", () => events.find((e) => e.approval?.event === "not-run"));
    assert.equal(record.approval?.id, "apr_killedholder1");
    assert.equal(record.approval?.state, "approved");
    assert.equal(record.approval?.by, "root");
    assert.equal(record.approval?.via, "os:root");
    assert.equal(record.approval?.holder, "gw_killed");
    assert.match(
      String(record.reason),
      /approved by root \(os:root\): ok; not run: the gateway holding the call restarted before it saw the decision; the call never ran/,
    );
    const after = await store.get("apr_killedholder1");
    assert.equal(after?.state, "approved");
    assert.match(after?.outcome ?? "", /^not run: the gateway holding the call restarted/);
    // Once: another restart (and another gateway's sweep) records nothing more, and nothing for the ends the holder saw.
    extra.push(await open({}, await openApprovalStore(undefined, join(t.dir, "data"))));
    extra.push(await open({ node: "other-node" }, await openApprovalStore(undefined, join(t.dir, "data"))));
    await new Promise((r) => setTimeout(r, 400));
    assert.equal(events.filter((e) => e.approval?.event === "not-run").length, 1);
  });

  it("a grant revoked on the store directly is recorded by the gateway holding the audit log, once, with who, how and why; others may not revoke", async () => {
    const ops = approvalDecision(obligation({ approvers: { users: [], groups: ["ops"] } }));
    const held = service.request(call(), ops);
    const id = await pendingId();
    const grantId = (await service.decide(id, "approve", bob, { forMs: 60_000 })).grantId as string;
    await held;
    const carol = { id: "carol", groups: ["dev"], via: "jwt:idp" };
    await assert.rejects(
      service.revokeGrant(grantId, carol),
      (e: unknown) => e instanceof ApprovalError && e.status === 403 && /carol may not revoke grant/.test(e.message),
    );
    // As `warden approvals revoke` on the store: no audit log of its own.
    const cli = await openApprovalStore(undefined, join(t.dir, "data"));
    try {
      await assert.rejects(revoke(cli, grantId, { ...carol, via: "os:carol" }, { recorded: false }), /not an approver/);
      await revoke(
        cli,
        grantId,
        { id: "dave", groups: ["ops"], via: "os:dave" },
        { reason: "incident", recorded: false },
      );
    } finally {
      await cli.close();
    }
    const record = await waitFor("the grant-revoked record", () =>
      events.find((e) => e.approval?.event === "grant-revoked"),
    );
    assert.deepEqual(
      [
        record.approval?.grant,
        record.approval?.by,
        record.approval?.via,
        record.approval?.reason,
        record.approval?.noticed,
      ],
      [grantId, "dave", "os:dave", "incident", true],
    );
    assert.match(String(record.approval?.at), /^\d{4}-\d\d-\d\dT/);
    assert.equal(record.reason, `grant ${grantId} revoked by dave: incident`);
    extra.push(await open({ node: "other-node" }, await openApprovalStore(undefined, join(t.dir, "data"))));
    await new Promise((r) => setTimeout(r, 400));
    assert.equal(events.filter((e) => e.approval?.event === "grant-revoked").length, 1, "once per store");
  });

  it("fails closed when the store fails: on create, and while held", async () => {
    const failing = new Proxy(store, {
      get(target, prop, receiver) {
        if (prop === "create" || prop === "decidedAmong") {
          return () => Promise.reject(new ApprovalStoreError("connection refused"));
        }
        const v = Reflect.get(target, prop, receiver);
        return typeof v === "function" ? v.bind(target) : v;
      },
    });
    const s = await open({}, failing);
    extra.push(s);
    const outcome = await s.request(call(), approvalDecision());
    assert.equal(outcome.approved, false);
    assert.match(outcome.reason, /could not be stored \(connection refused\); fail closed/);

    // Held, then the store fails: the poll denies.
    let failPoll = false;
    const flaky = new Proxy(store, {
      get(target, prop, receiver) {
        if (prop === "decidedAmong" && failPoll) return () => Promise.reject(new ApprovalStoreError("server closed"));
        const v = Reflect.get(target, prop, receiver);
        return typeof v === "function" ? v.bind(target) : v;
      },
    });
    const s2 = await open({ pollMs: 50 }, flaky);
    extra.push(s2);
    const held = s2.request(call(), approvalDecision());
    await pendingId();
    failPoll = true;
    const r = await held;
    assert.equal(r.approved, false);
    assert.match(r.reason, /approval store failed \(server closed\); fail closed/);
  });

  it("the audit log failing denies: nothing is held unrecorded", async () => {
    failAudit = true;
    const outcome = await service.request(call(), approvalDecision());
    assert.equal(outcome.approved, false);
    assert.match(outcome.reason, /audit log is unavailable/);
    const all = await store.list({});
    assert.equal(all[0]?.state, "expired");
  });

  it("the webhook is signed (HMAC-SHA256), carries a link back, and its delivery is recorded", async () => {
    const secret = "a-webhook-secret-of-some-length";
    const received: { body: string; ok: boolean; headers: IncomingMessage["headers"] }[] = [];
    const receiver: Server = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on("data", (c: Buffer) => chunks.push(c));
      req.on("end", () => {
        const body = Buffer.concat(chunks).toString("utf8");
        const ok = verifySignature(
          secret,
          {
            signature: req.headers["x-warden-signature"] as string,
            timestamp: req.headers["x-warden-timestamp"] as string,
          },
          body,
        );
        received.push({ body, ok, headers: req.headers });
        res.writeHead(ok ? 204 : 401).end();
      });
    });
    await new Promise<void>((r) => receiver.listen(0, "127.0.0.1", r));
    const url = `http://127.0.0.1:${(receiver.address() as AddressInfo).port}/hook`;
    try {
      for (const format of ["json", "slack"] as const) {
        const s = await open({ webhook: { url, secret, format }, publicUrl: "https://warden.example/" });
        extra.push(s);
        const held = s.request(call(), approvalDecision());
        const got = await waitFor("a delivery", () => (received.length > 0 ? received.shift() : undefined));
        assert.equal(got.ok, true, "the receiver verified the signature");
        assert.equal(got.headers["x-warden-event"], "approval.requested");
        const body = JSON.parse(got.body) as Record<string, unknown>;
        const id = await pendingId();
        if (format === "json") {
          assert.equal((body.request as { id: string }).id, id);
          assert.equal((body.links as { page: string }).page, `https://warden.example/approvals#${id}`);
        } else {
          assert.match(
            String(body.text),
            new RegExp(`Approval needed: agent-1 for alice wants to call write_file on fs \\(request ${id}`),
          );
          assert.ok(JSON.stringify(body.blocks).includes(`https://warden.example/approvals#${id}`));
        }
        await s.decide(id, "deny", bob);
        await held;
        await waitFor("the delivery record", () =>
          events.some(
            (e) => e.approval?.event === "notified" && e.approval?.id === id && e.approval?.delivered === true,
          )
            ? true
            : undefined,
        );
      }
      // A tampered body, a wrong secret, or an old timestamp do not verify.
      const ts = String(Math.floor(Date.now() / 1000));
      const { sign } = await import("../../src/approvals/webhook.js");
      const sig = sign(secret, ts, "{}");
      assert.equal(verifySignature(secret, { signature: sig, timestamp: ts }, "{}"), true);
      assert.equal(verifySignature(secret, { signature: sig, timestamp: ts }, '{"x":1}'), false);
      assert.equal(verifySignature("another-secret-entirely", { signature: sig, timestamp: ts }, "{}"), false);
      const old = String(Math.floor(Date.now() / 1000) - 3600);
      assert.equal(verifySignature(secret, { signature: sign(secret, old, "{}"), timestamp: old }, "{}"), false);
    } finally {
      await new Promise((r) => receiver.close(r));
    }
  });

  it("a failing webhook is retried, recorded as undelivered, and does not decide the call", async () => {
    let hits = 0;
    const receiver = createServer((_req, res) => {
      hits++;
      res.writeHead(500).end();
    });
    await new Promise<void>((r) => receiver.listen(0, "127.0.0.1", r));
    try {
      const url = `http://127.0.0.1:${(receiver.address() as AddressInfo).port}/`;
      const s = await open({ webhook: { url, secret: "x".repeat(20), format: "json", attempts: 2 } });
      extra.push(s);
      const held = s.request(call(), approvalDecision());
      const id = await pendingId();
      await waitFor("the failed delivery record", () =>
        events.some((e) => e.approval?.event === "notified" && e.approval?.delivered === false) ? true : undefined,
      );
      assert.equal(hits, 2);
      await s.decide(id, "approve", bob);
      assert.equal((await held).approved, true);
    } finally {
      await new Promise((r) => receiver.close(r));
    }
  });

  it("the Slack payload escapes what the agent controls", () => {
    const body = payload(
      {
        id: "apr_x",
        state: "pending",
        createdAt: 0,
        expiresAt: 0,
        holder: "h",
        node: "n",
        details: {
          agent: { name: "a" },
          user: null,
          via: "flags",
          session: null,
          server: "s",
          tool: "t",
          arguments: { x: "<!channel> & <https://evil|click>" },
          argumentsDigest: null,
          policy: { name: null, version: null, set: null },
          rule: null,
          reason: "r",
          requirement: { type: "human-in-the-loop", approvers: [], allowSelfApproval: false, timeoutMs: 1 },
        },
        decidedAt: null,
        decidedBy: null,
        decidedVia: null,
        decisionReason: null,
        grantId: null,
        outcome: null,
      },
      "slack",
      undefined,
    );
    const text = JSON.stringify(body);
    assert.ok(!text.includes("<!channel>"));
    assert.ok(text.includes("&lt;!channel&gt; &amp; &lt;https://evil|click&gt;"));
  });
});
