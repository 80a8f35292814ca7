// Crash test: a child process appends under concurrent load and is killed with
// SIGKILL at random moments, many times over the same log. After every kill,
// every record the child saw acknowledged must be there, unchanged, and the log
// must verify; the next writer must log its recovery.
import assert from "node:assert/strict";
import { type ChildProcess, spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, it } from "node:test";
import { openAuditLog } from "../../src/audit/log.js";
import { parseRecord } from "../../src/audit/record.js";
import { loadVerifiers, storeSource, verifyLog } from "../../src/audit/verify.js";
import { generateKeyPair, writeKeyPair } from "../../src/keys/keys.js";
import { AuditStore } from "../../src/store/audit-store.js";

const ORIGIN = "crash.example/log";

// Child mode: append with many concurrent writers until killed; print "seq id" per acknowledgement.
if (process.env.WARDEN_CRASH_DIR) {
  setTimeout(() => process.exit(3), 10_000).unref(); // never outlive a parent that forgot us
  const log = await openAuditLog({
    dataDir: process.env.WARDEN_CRASH_DIR,
    origin: ORIGIN,
    signingKey: process.env.WARDEN_CRASH_KEY,
    warn: () => {},
    checkpointEvery: { records: 200, seconds: 0.05 },
  });
  process.stdout.write("ready\n");
  // 64 writers: enough that the log splits them into two groups with two commits in flight.
  const writers = Array.from({ length: 64 }, async (_, w) => {
    for (let i = 0; ; i++) {
      const a = await log.append({
        type: "decision",
        agent: { name: `agent-${w}` },
        server: "fs",
        tool: "write_file",
        arguments: { path: `/data/${w}/${i}`, content: "x".repeat(i % 200) },
        decision: "allow",
        enforced: true,
        reason: `writer ${w} call ${i}`,
      });
      // Synchronous on a pipe: once written, the parent will read it even if we die next.
      process.stdout.write(`${a.seq} ${a.id}\n`);
    }
  });
  await Promise.all(writers);
}

const root = mkdtempSync(join(tmpdir(), "warden-crash-"));
const children = new Set<ChildProcess>();
after(() => {
  for (const c of children) c.kill("SIGKILL");
  rmSync(root, { recursive: true, force: true });
});

const ITERATIONS = Number(process.env.WARDEN_CRASH_ITERATIONS ?? 24);

/** Spawns a writer, kills it at a random moment, and returns the acknowledgements it printed. */
async function runAndKill(dir: string, key: string, rnd: () => number): Promise<Map<number, string>> {
  const child = spawn(process.execPath, [process.argv[1] as string], {
    env: { ...process.env, WARDEN_CRASH_DIR: dir, WARDEN_CRASH_KEY: key },
    stdio: ["ignore", "pipe", "inherit"],
  });
  children.add(child);
  let out = "";
  let ready: () => void = () => {};
  const isReady = new Promise<void>((r) => {
    ready = r;
  });
  child.stdout?.on("data", (d) => {
    out += d;
    if (out.startsWith("ready\n")) ready();
  });
  const exited = new Promise<string | null>((r) => child.on("exit", (_code, signal) => r(signal)));
  // Most kills land while appends are in flight; some during start-up and recovery.
  if (rnd() < 0.2) await new Promise((r) => setTimeout(r, rnd() * 250));
  else {
    await Promise.race([isReady, exited]);
    await new Promise((r) => setTimeout(r, 5 + rnd() * 120));
  }
  child.kill("SIGKILL");
  const signal = await exited;
  children.delete(child);
  assert.equal(signal, "SIGKILL", "the child must die by SIGKILL, not by itself");
  const acks = new Map<number, string>();
  for (const line of out.split("\n").slice(1, -1)) {
    const [seq, id] = line.split(" ");
    acks.set(Number(seq), id as string);
  }
  return acks;
}

describe("crash safety", () => {
  it(`loses no acknowledged record and always verifies, across ${ITERATIONS} SIGKILLs`, async (t) => {
    const dir = join(root, "log");
    const { privatePath, publicPath } = writeKeyPair(join(root, "key"), generateKeyPair("ed25519"));
    const verifiers = loadVerifiers([publicPath], ORIGIN);
    let seed = 0x2545f491;
    const rnd = () => {
      seed = (seed * 1103515245 + 12345) % 2 ** 31;
      return seed / 2 ** 31;
    };
    const acked = new Map<number, string>();
    let withAcks = 0;
    for (let i = 0; i < ITERATIONS; i++) {
      const acks = await runAndKill(dir, privatePath, rnd);
      if (acks.size > 0) withAcks++;
      for (const [seq, id] of acks) acked.set(seq, id);
      if (acked.size === 0) continue;
      const store = AuditStore.openReader(dir);
      try {
        for (const [seq, id] of acked) {
          const bytes = store.record(seq);
          assert.ok(bytes, `iteration ${i}: acknowledged record ${seq} is missing`);
          assert.equal(parseRecord(bytes.toString()).id, id, `iteration ${i}: record ${seq} changed`);
        }
        const r = await verifyLog(storeSource(store), verifiers);
        assert.ok(r.ok, `iteration ${i}: ${r.problems[0]?.message}`);
      } finally {
        store.close();
      }
    }
    assert.ok(withAcks >= ITERATIONS / 2, `only ${withAcks} of ${ITERATIONS} runs got as far as appending`);

    // A last clean open: recovery is logged, a checkpoint covers everything, and it all verifies.
    const log = await openAuditLog({ dataDir: dir, origin: ORIGIN, signingKey: privatePath, warn: () => {} });
    await log.close();
    const store = AuditStore.openReader(dir);
    try {
      let recoveries = 0;
      let discarded = 0;
      for (const [, bytes] of store.iterate()) {
        const r = parseRecord(bytes.toString());
        if (r.detail?.event === "recovered") {
          recoveries++;
          discarded += Number(r.detail.walDiscardedFrames);
        }
      }
      assert.ok(recoveries >= withAcks, `${recoveries} recovery records for ${withAcks} killed writers`);
      const r = await verifyLog(storeSource(store), verifiers);
      assert.ok(r.ok, r.problems[0]?.message);
      assert.equal(r.uncovered, 0);
      t.diagnostic(
        `${ITERATIONS} kills, ${acked.size} acknowledged records kept, ${r.records} records in all, ${recoveries} recoveries logged, ${discarded} uncommitted WAL frames discarded`,
      );
    } finally {
      store.close();
    }
  });
});
