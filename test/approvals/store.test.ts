// The store contract, run against both implementations: the embedded SQLite
// file and the PostgreSQL server on this machine (a schema per test, see
// helpers.ts for how the tests reach it). Every state change is one atomic
// conditional update: racing deciders never both win, a request never leaves
// a final state, and requests whose gateway is gone are expired.
import assert from "node:assert/strict";
import { join } from "node:path";
import { afterEach, beforeEach, describe, it } from "node:test";
import { decide, revoke } from "../../src/approvals/authorize.js";
import type { ApprovalStore, NewRequest } from "../../src/approvals/store.js";
import { openApprovalStore, parseStoreLocation } from "../../src/approvals/store.js";
import { ApprovalError, type FinalState, newId, type RequestDetails } from "../../src/approvals/types.js";
import { dropPgSchema, pgSchemaUrl, tempDir } from "./helpers.js";

function details(o: Partial<RequestDetails> = {}): RequestDetails {
  return {
    agent: { name: "agent-1" },
    user: { id: "alice", groups: ["dev"] },
    via: "api-key:agent-1",
    session: "s1",
    server: "fs",
    tool: "write_file",
    arguments: { path: "a.txt" },
    argumentsDigest: "sha256:00",
    policy: { name: "fs", version: "sha256:0000", set: "sha256:1111" },
    rule: { index: 1, name: "writes" },
    reason: "writes need approval",
    requirement: {
      type: "human-in-the-loop",
      approvers: [{ users: [], groups: [] }],
      allowSelfApproval: false,
      timeoutMs: 60_000,
    },
    ...o,
  };
}

const LEASE = 30_000;

for (const kind of ["sqlite", "postgres"] as const) {
  describe(`approval store contract: ${kind}`, () => {
    let store: ApprovalStore;
    let other: ApprovalStore | undefined;
    let cleanup: () => Promise<void>;
    let location: string;
    const holder = "gw_holder";
    const node = "host:/data";

    beforeEach(async () => {
      if (kind === "sqlite") {
        const t = tempDir();
        location = `sqlite:${join(t.dir, "approvals.db")}`;
        cleanup = async () => t.remove();
      } else {
        const s = pgSchemaUrl();
        location = s.url;
        cleanup = () => dropPgSchema(s.schema);
      }
      store = await openApprovalStore(location, "/nonexistent");
      await store.registerInstance(holder, node, Date.now());
    });
    afterEach(async () => {
      await store.close();
      await other?.close();
      other = undefined;
      await cleanup();
    });

    const create = async (o: Partial<NewRequest> = {}): Promise<NewRequest> => {
      const now = Date.now();
      const r: NewRequest = {
        id: newId("apr"),
        createdAt: now,
        expiresAt: now + 60_000,
        holder,
        node,
        details: details(),
        ...o,
      };
      await store.create(r);
      return r;
    };

    it("creates, reads and lists requests, newest first, by state", async () => {
      const a = await create({ createdAt: Date.now() - 10 });
      const b = await create();
      const got = await store.get(a.id);
      assert.equal(got?.state, "pending");
      assert.deepEqual(got?.details, a.details);
      assert.deepEqual(
        (await store.list({ states: ["pending"] })).map((r) => r.id),
        [b.id, a.id],
      );
      assert.equal((await store.list({ states: ["approved"] })).length, 0);
      assert.equal(await store.get("apr_doesnotexist"), null);
    });

    it("a final state is final: the first transition wins and later ones report it", async () => {
      const r = await create();
      const first = await store.transition(
        r.id,
        "approved",
        { by: "bob", via: "api-key:bob", reason: "ok" },
        Date.now(),
      );
      assert.equal(first.changed, true);
      assert.equal(first.request?.state, "approved");
      assert.equal(first.request?.decidedBy, "bob");
      const second = await store.transition(r.id, "expired", { by: null, via: "warden", reason: "late" }, Date.now());
      assert.equal(second.changed, false);
      assert.equal(second.request?.state, "approved");
      assert.deepEqual(
        (await store.decidedAmong([r.id, "apr_unknownxx"])).map((x) => x.state),
        ["approved"],
      );
    });

    it("racing deciders: exactly one of many concurrent transitions wins", async () => {
      const r = await create();
      other = await openApprovalStore(location, "/nonexistent");
      const attempts = Array.from({ length: 12 }, (_, i) =>
        (i % 2 === 0 ? store : (other as ApprovalStore)).transition(
          r.id,
          (["approved", "denied", "expired", "withdrawn"] as const)[i % 4] as FinalState,
          { by: `u${i}`, via: "test", reason: null },
          Date.now(),
        ),
      );
      const results = await Promise.all(attempts);
      assert.equal(results.filter((x) => x.changed).length, 1);
      const final = await store.get(r.id);
      const winner = results.find((x) => x.changed)?.request;
      assert.equal(final?.state, winner?.state);
      assert.equal(final?.decidedBy, winner?.decidedBy);
    });

    it("an approver's decision on an expired request, or one whose gateway is gone, expires it instead", async () => {
      const late = await create({ expiresAt: Date.now() - 1 });
      const r1 = await store.transition(late.id, "approved", { by: "bob", via: "x", reason: null }, Date.now(), {
        holderLeaseMs: LEASE,
      });
      assert.equal(r1.changed, false);
      assert.equal(r1.request?.state, "expired");
      assert.match(r1.request?.decisionReason ?? "", /already expired/);

      const orphan = await create({ holder: "gw_gone" });
      const r2 = await store.transition(orphan.id, "approved", { by: "bob", via: "x", reason: null }, Date.now(), {
        holderLeaseMs: LEASE,
      });
      assert.equal(r2.request?.state, "expired");
      assert.match(r2.request?.decisionReason ?? "", /stopped responding/);

      const live = await create();
      const r3 = await store.transition(live.id, "approved", { by: "bob", via: "x", reason: null }, Date.now(), {
        holderLeaseMs: LEASE,
      });
      assert.equal(r3.changed, true);
    });

    it("expires orphans: a restarted gateway's old requests, gone gateways' and long-overdue ones", async () => {
      const now = Date.now();
      await store.registerInstance("gw_other", "host-b:/data", now);
      await store.registerInstance("gw_stale", "host-c:/data", now - 5 * LEASE);
      const restarted = await create({ holder: "gw_previous" }); // same node, another process
      const gone = await create({ holder: "gw_stale", node: "host-c:/data" });
      const alive = await create({ holder: "gw_other", node: "host-b:/data" });
      const mine = await create();
      const overdue = await create({ holder: "gw_other", node: "host-b:/data", expiresAt: now - 2 * LEASE });
      const expired = await store.expireOrphans(node, holder, now, LEASE);
      const byId = new Map(expired.map((r) => [r.id, r]));
      assert.match(byId.get(restarted.id)?.decisionReason ?? "", /restarted/);
      assert.match(byId.get(gone.id)?.decisionReason ?? "", /stopped responding/);
      assert.match(byId.get(overdue.id)?.decisionReason ?? "", /did not close it/);
      assert.equal(byId.has(alive.id), false);
      assert.equal(byId.has(mine.id), false);
      assert.equal((await store.get(alive.id))?.state, "pending");
      assert.equal((await store.get(restarted.id))?.state, "expired");
    });

    it("grants: created with an approval in one transaction, found for the same agent and user only, revocable, expiring", async () => {
      const r = await create();
      const approved = await decide(
        store,
        r.id,
        "approve",
        { id: "bob", groups: ["ops"], via: "api-key:bob" },
        {
          forMs: 60_000,
          leaseMs: LEASE,
        },
      );
      assert.ok(approved.grantId);
      const q = { server: "fs", tool: "write_file", agent: "agent-1", userId: "alice" };
      const found = await store.findGrants(q, Date.now());
      assert.deepEqual(
        found.map((g) => [g.id, g.createdBy, g.requestId]),
        [[approved.grantId, "bob", r.id]],
      );
      assert.equal((await store.findGrants({ ...q, userId: "mallory" }, Date.now())).length, 0);
      assert.equal((await store.findGrants({ ...q, userId: null }, Date.now())).length, 0);
      assert.equal((await store.findGrants({ ...q, tool: "move_file" }, Date.now())).length, 0);
      assert.equal((await store.findGrants(q, Date.now() + 61_000)).length, 0, "expired");
      await store.useGrant(approved.grantId as string);
      assert.equal((await store.getGrant(approved.grantId as string))?.uses, 1);
      const revoked = await store.revokeGrant(
        approved.grantId as string,
        { id: "carol", via: "jwt:idp" },
        "enough",
        Date.now(),
        true,
      );
      assert.equal(revoked.changed, true);
      assert.equal(revoked.grant?.revokedBy, "carol");
      assert.equal(
        (await store.revokeGrant(approved.grantId as string, { id: "dave", via: "jwt:idp" }, null, Date.now(), true))
          .changed,
        false,
      );
      assert.equal((await store.findGrants(q, Date.now())).length, 0);
      assert.equal((await store.listGrants({}, Date.now())).length, 0);
      assert.equal((await store.listGrants({ includeInactive: true }, Date.now())).length, 1);
      // A grant for a requester without a user matches only calls without one.
      const noUser = await create({ details: details({ user: null }) });
      await decide(
        store,
        noUser.id,
        "approve",
        { id: "bob", groups: [], via: "api-key:bob" },
        {
          forMs: 60_000,
          leaseMs: LEASE,
        },
      );
      assert.equal((await store.findGrants({ ...q, userId: null }, Date.now())).length, 1);
    });

    it("closeUnrun: a request decided after its holder stopped is closed as never run, once; one its holder noted is not", async () => {
      const now = Date.now();
      await store.registerInstance("gw_other", "host-b:/data", now);
      await store.registerInstance("gw_stale", "host-c:/data", now - 5 * LEASE);
      const decideAs = async (r: NewRequest, to: "approved" | "denied") =>
        store.transition(r.id, to, { by: "bob", via: "api-key:bob", reason: "ok" }, now);
      const restarted = await create({ holder: "gw_previous" }); // this node's previous run
      await decideAs(restarted, "approved");
      const deniedLate = await create({ holder: "gw_previous" });
      await decideAs(deniedLate, "denied");
      const gone = await create({ holder: "gw_stale", node: "host-c:/data" });
      await decideAs(gone, "approved");
      const alive = await create({ holder: "gw_other", node: "host-b:/data" });
      await decideAs(alive, "approved");
      const noted = await create({ holder: "gw_previous" });
      await decideAs(noted, "approved");
      assert.equal(await store.claimOutcome(noted.id, "being forwarded"), true);
      assert.equal(await store.claimOutcome(noted.id, "again"), false, "an outcome is claimed once");
      const mine = await create();
      await decideAs(mine, "approved");
      const pending = await create({ holder: "gw_previous" });

      const closed = await store.closeUnrun(node, holder, now, LEASE);
      const byId = new Map(closed.map((r) => [r.id, r]));
      assert.deepEqual(new Set(byId.keys()), new Set([restarted.id, deniedLate.id, gone.id]));
      assert.match(byId.get(restarted.id)?.outcome ?? "", /^not run: the gateway holding the call restarted/);
      assert.equal(byId.get(restarted.id)?.state, "approved");
      assert.equal(byId.get(deniedLate.id)?.state, "denied");
      assert.match(byId.get(gone.id)?.outcome ?? "", /^not run: .*stopped responding/);
      assert.equal((await store.get(noted.id))?.outcome, "being forwarded");
      assert.equal((await store.get(alive.id))?.outcome, null);
      assert.equal((await store.get(mine.id))?.outcome, null);
      assert.equal((await store.get(pending.id))?.state, "pending");
      // Once: a second sweep (another gateway) finds nothing, and the holder can no longer claim it.
      other = await openApprovalStore(location, "/nonexistent");
      assert.deepEqual(await other.closeUnrun(node, holder, now, LEASE), []);
      assert.equal(await store.claimOutcome(restarted.id, "being forwarded"), false);
    });

    it("revocations: only the creator or who could decide the grant's request may revoke; unrecorded ones are claimed once", async () => {
      const r = await create({
        details: details({
          requirement: {
            type: "human-in-the-loop",
            approvers: [{ users: [], groups: ["ops"] }],
            allowSelfApproval: false,
            timeoutMs: 60_000,
          },
        }),
      });
      const bob = { id: "bob", groups: ["ops"], via: "api-key:bob" };
      const grantId = (await decide(store, r.id, "approve", bob, { forMs: 60_000, leaseMs: LEASE })).grantId as string;
      await assert.rejects(
        revoke(store, grantId, { id: "carol", groups: ["dev"], via: "os:carol" }, { recorded: false }),
        (e: unknown) =>
          e instanceof ApprovalError &&
          e.status === 403 &&
          /carol may not revoke grant grt_\w+: it was created by bob, and carol is not an approver for write_file on fs \(the policy names groups ops\)/.test(
            e.message,
          ),
      );
      await assert.rejects(
        revoke(store, grantId, { id: "", groups: ["ops"], via: "api-key:ci" }, { recorded: false }),
        (e: unknown) => e instanceof ApprovalError && e.status === 403,
      );
      assert.equal((await store.getGrant(grantId))?.revokedAt, null, "refusals change nothing");
      assert.deepEqual(await store.claimRevocations(Date.now()), []);
      // Another approver of the rule may (and so may the creator, and the grant's own user).
      const g = await revoke(
        store,
        grantId,
        { id: "dave", groups: ["ops"], via: "os:dave" },
        { reason: "incident", recorded: false },
      );
      assert.deepEqual([g.revokedBy, g.revokedVia, g.revokeReason], ["dave", "os:dave", "incident"]);
      other = await openApprovalStore(location, "/nonexistent");
      const claimed = await store.claimRevocations(Date.now());
      assert.deepEqual(
        claimed.map((x) => [x.id, x.revokedBy, x.revokedVia]),
        [[grantId, "dave", "os:dave"]],
      );
      assert.deepEqual(await other.claimRevocations(Date.now()), [], "once per store");
      // A revocation its revoker records itself is not claimed again.
      const r2 = await create();
      const g2 = (await decide(store, r2.id, "approve", bob, { forMs: 60_000, leaseMs: LEASE })).grantId as string;
      await revoke(store, g2, { id: "alice", groups: [], via: "jwt:idp" }, { recorded: true });
      assert.deepEqual(await store.claimRevocations(Date.now()), []);
    });

    it("decide refuses self-approval, non-approvers, and decided requests, with reasons", async () => {
      const r = await create({
        details: details({
          requirement: {
            type: "human-in-the-loop",
            approvers: [{ users: ["bob"], groups: ["sre"] }],
            allowSelfApproval: false,
            timeoutMs: 60_000,
          },
        }),
      });
      const refused = async (id: string, who: { id: string; groups: string[]; via: string }, pattern: RegExp) => {
        await assert.rejects(
          decide(store, id, "approve", who, { leaseMs: LEASE }),
          (e: unknown) => e instanceof ApprovalError && pattern.test(e.message),
        );
      };
      await refused(
        r.id,
        { id: "alice", groups: ["sre"], via: "jwt:idp" },
        /may not approve it: the rule does not allow self-approval/,
      );
      await refused(
        r.id,
        { id: "carol", groups: ["dev"], via: "api-key:carol" },
        /not an approver .*users bob or groups sre/,
      );
      await refused(r.id, { id: "svc", groups: ["sre"], via: "api-key:agent-1" }, /self-approval/);
      const ok = await decide(
        store,
        r.id,
        "approve",
        { id: "dave", groups: ["sre"], via: "jwt:idp" },
        { leaseMs: LEASE },
      );
      assert.equal(ok.state, "approved");
      await refused(r.id, { id: "bob", groups: [], via: "api-key:bob" }, /already approved by dave/);
      // The requester may turn down their own call.
      const mine = await create();
      const denied = await decide(
        store,
        mine.id,
        "deny",
        { id: "alice", groups: [], via: "jwt:idp" },
        { leaseMs: LEASE },
      );
      assert.equal(denied.state, "denied");
    });

    it("tells watchers about changes made through another connection", async () => {
      other = await openApprovalStore(location, "/nonexistent");
      let calls = 0;
      const unwatch = store.watch(() => {
        calls++;
      });
      await new Promise((r) => setTimeout(r, 400));
      const before = calls;
      const r: NewRequest = {
        id: newId("apr"),
        createdAt: Date.now(),
        expiresAt: Date.now() + 60_000,
        holder,
        node,
        details: details(),
      };
      await other.create(r);
      const deadline = Date.now() + 5000;
      while (calls === before && Date.now() < deadline) await new Promise((x) => setTimeout(x, 50));
      unwatch();
      assert.ok(calls > before, "the watcher was called");
    });
  });
}

describe("approval store locations", () => {
  it("reads PostgreSQL URLs, sqlite: paths and plain paths; refuses other schemes", () => {
    assert.deepEqual(parseStoreLocation(undefined, "/data"), { kind: "sqlite", path: "/data/approvals.db" });
    assert.deepEqual(parseStoreLocation("postgres://h/db", "/data"), { kind: "postgres", url: "postgres://h/db" });
    assert.deepEqual(parseStoreLocation("postgresql://h/db", "/data").kind, "postgres");
    assert.deepEqual(parseStoreLocation("sqlite:x.db", "/data", "/base"), { kind: "sqlite", path: "/base/x.db" });
    assert.deepEqual(parseStoreLocation("/abs/y.db", "/data"), { kind: "sqlite", path: "/abs/y.db" });
    assert.throws(() => parseStoreLocation("mysql://h/db", "/data"), /neither a PostgreSQL URL/);
  });

  it("a SQLite store of the previous schema gets the revocation columns; its old revocations count as recorded", async () => {
    const t = tempDir();
    try {
      const path = join(t.dir, "approvals.db");
      const Database = (await import("better-sqlite3")).default;
      const db = new Database(path);
      db.exec(`CREATE TABLE approval_grants (
        id TEXT PRIMARY KEY, created_at INTEGER NOT NULL, expires_at INTEGER NOT NULL, server TEXT NOT NULL,
        tool TEXT NOT NULL, agent TEXT NOT NULL, user_id TEXT, created_by TEXT NOT NULL, created_by_groups TEXT NOT NULL,
        created_via TEXT NOT NULL, request_id TEXT, reason TEXT, revoked_at INTEGER, revoked_by TEXT,
        revoke_reason TEXT, uses INTEGER NOT NULL DEFAULT 0)`);
      const now = Date.now();
      const insert = db.prepare(
        "INSERT INTO approval_grants (id, created_at, expires_at, server, tool, agent, created_by, created_by_groups, created_via, revoked_at, revoked_by) VALUES (?, ?, ?, 'fs', 'write_file', 'a', 'bob', '[]', 'os:bob', ?, ?)",
      );
      insert.run("grt_oldrevoked", now, now + 60_000, now, "carol");
      insert.run("grt_oldactive", now, now + 60_000, null, null);
      db.close();
      const store = await openApprovalStore(`sqlite:${path}`, "/nonexistent");
      try {
        assert.equal((await store.getGrant("grt_oldrevoked"))?.revokedVia, null);
        assert.deepEqual(await store.claimRevocations(Date.now()), []);
        await store.revokeGrant("grt_oldactive", { id: "bob", via: "os:bob" }, null, Date.now(), false);
        assert.deepEqual(
          (await store.claimRevocations(Date.now())).map((g) => g.id),
          ["grt_oldactive"],
        );
      } finally {
        await store.close();
      }
    } finally {
      t.remove();
    }
  });

  it("an unreachable PostgreSQL server is a clear error, without the password", async () => {
    await assert.rejects(
      openApprovalStore("postgres://warden:s3cret@127.0.0.1:1/db", "/data"),
      (e: Error) => /cannot open the approval store/.test(e.message) && !e.message.includes("s3cret"),
    );
  });
});
