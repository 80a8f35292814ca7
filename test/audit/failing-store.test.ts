// A store that fails makes append() reject, and a caller that gates calls on the
// append (as the gateway does) denies. Two real failures: SQLite's size limit
// (the same SQLITE_FULL a full disk gives), and — where this process may mount —
// an actually full file system (a 1 MiB tmpfs).
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, it } from "node:test";
import { type AuditLog, AuditStoreError, openAuditLog } from "../../src/audit/log.js";
import type { AuditEvent } from "../../src/audit/record.js";
import { loadVerifiers, storeSource, verifyLog } from "../../src/audit/verify.js";
import { AuditStore } from "../../src/store/audit-store.js";

const root = mkdtempSync(join(tmpdir(), "warden-full-"));
const mounts: string[] = [];
after(() => {
  for (const m of mounts) {
    try {
      execFileSync("umount", [m]);
    } catch {
      // already gone
    }
  }
  rmSync(root, { recursive: true, force: true });
});

const call = (i: number): AuditEvent => ({
  type: "decision",
  agent: { name: "agent" },
  server: "fs",
  tool: "write_file",
  arguments: { path: `/x/${i}`, content: "y".repeat(400) },
  decision: "allow",
  enforced: true,
  reason: "allowed by rule 0",
});

/** What the gateway does: the call is forwarded only if its decision record is durable. */
async function gatedCall(log: AuditLog, i: number, forwarded: number[]): Promise<"forwarded" | "denied"> {
  try {
    await log.append(call(i));
  } catch {
    return "denied";
  }
  forwarded.push(i);
  return "forwarded";
}

async function fillUntilFailure(log: AuditLog): Promise<{ forwarded: number[]; firstDenied: number }> {
  const forwarded: number[] = [];
  for (let i = 0; i < 100_000; i++) {
    const outcomes = await Promise.all([0, 1, 2, 3].map((k) => gatedCall(log, i * 4 + k, forwarded)));
    if (outcomes.includes("denied")) return { forwarded, firstDenied: i * 4 + outcomes.indexOf("denied") };
  }
  throw new Error("the store never filled up");
}

async function assertIntact(dir: string, acked: number) {
  const store = AuditStore.openReader(dir);
  try {
    const r = await verifyLog(
      storeSource(store),
      loadVerifiers([join(dir, "keys", "log.pub")], store.meta().origin ?? null),
    );
    assert.ok(r.ok, r.problems[0]?.message);
    assert.ok(r.records >= acked, `${r.records} records, ${acked} acknowledged`);
  } finally {
    store.close();
  }
}

describe("failing store", () => {
  it("rejects appends once SQLite reports the store full; the caller denies; the log stays intact", async () => {
    const dir = join(root, "limited");
    const log = await openAuditLog({ dataDir: dir, warn: () => {}, maxBytes: 256 * 1024 });
    const { forwarded, firstDenied } = await fillUntilFailure(log);
    assert.ok(forwarded.length > 10, "some calls went through before the store filled");
    assert.ok(log.failure instanceof AuditStoreError);
    assert.match(log.failure.message, /database or disk is full.*refuses further appends/);
    // Every later call is denied too: the log does not pretend to recover.
    const later: number[] = [];
    assert.equal(await gatedCall(log, firstDenied + 1000, later), "denied");
    await assert.rejects(log.append(call(0)), AuditStoreError);
    assert.deepEqual(later, []);
    await log.close();
    await assertIntact(dir, forwarded.length);
  });

  it("with two commits in flight (64 closed-loop callers), the one queued behind a failed commit fails too", async () => {
    const dir = join(root, "pipelined");
    const log = await openAuditLog({ dataDir: dir, warn: () => {}, maxBytes: 512 * 1024 });
    const forwarded: number[] = [];
    let denied = 0;
    let next = 0;
    await Promise.all(
      Array.from({ length: 64 }, async () => {
        while (!log.failure) {
          if ((await gatedCall(log, next++, forwarded)) === "denied") denied++;
        }
      }),
    );
    assert.ok(log.failure instanceof AuditStoreError);
    assert.ok(denied >= 1);
    // The callers were split into two alternating commits (one syncing, one queued).
    assert.ok(log.stats.commits > 4 && log.stats.records / log.stats.commits < 48, JSON.stringify(log.stats));
    await log.close();
    // Exactly the acknowledged records are in the log: nothing queued behind the failure landed.
    const store = AuditStore.openReader(dir);
    try {
      const seqs = [...store.iterate()].map(([seq]) => seq);
      assert.equal(seqs.length, forwarded.length);
      assert.equal(seqs.length, log.stats.records);
    } finally {
      store.close();
    }
    await assertIntact(dir, forwarded.length);
  });

  it("rejects appends on a file system that is really full (tmpfs), and the caller denies", async (t) => {
    if (process.platform !== "linux") {
      t.skip("needs Linux tmpfs");
      return;
    }
    const mnt = join(root, "tmpfs");
    mkdirSync(mnt);
    try {
      execFileSync("mount", ["-t", "tmpfs", "-o", "size=1m", "tmpfs", mnt], { stdio: "ignore" });
    } catch {
      t.skip("not permitted to mount a tmpfs here (needs root); the SQLITE_FULL test above covers the path");
      return;
    }
    mounts.push(mnt);
    const dir = join(mnt, "warden");
    const log = await openAuditLog({ dataDir: dir, warn: () => {}, checkpointEvery: { records: 50, seconds: 0 } });
    const { forwarded } = await fillUntilFailure(log);
    assert.ok(forwarded.length > 10);
    assert.ok(log.failure instanceof AuditStoreError);
    assert.match(log.failure.message, /full|SQLITE_FULL|ENOSPC|disk I\/O error/i);
    await log.close().catch(() => {});
    await assertIntact(dir, forwarded.length);
  });
});
