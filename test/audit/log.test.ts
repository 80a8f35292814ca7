// The audit log against real SQLite: durability and group commit, checkpoints,
// the data directory, the writer lock, keys, and recovery after a writer dies
// (including a torn WAL frame).
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { appendFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, it } from "node:test";
import { DataDirError, ensureDataDir, resolveDataDir } from "../../src/audit/data-dir.js";
import { openAuditLog } from "../../src/audit/log.js";
import { openCheckpoint, parseVerifierKey } from "../../src/audit/note.js";
import { parseRecord } from "../../src/audit/record.js";
import { loadVerifiers, storeSource, verifyLog } from "../../src/audit/verify.js";
import { generateKeyPair, writeKeyPair } from "../../src/keys/keys.js";
import { AuditStore, inspectWal } from "../../src/store/audit-store.js";

// Child mode: append, report acknowledgements, then die without closing the log.
if (process.env.WARDEN_AUDIT_SELFKILL) {
  const log = await openAuditLog({ dataDir: process.env.WARDEN_AUDIT_SELFKILL, warn: () => {} });
  const n = Number(process.env.WARDEN_AUDIT_COUNT ?? 20);
  const acks = await Promise.all(
    Array.from({ length: n }, (_, i) => log.append({ type: "lifecycle", reason: `r${i}` })),
  );
  process.stdout.write(`${JSON.stringify(acks.map((a) => a.id))}\n`);
  process.kill(process.pid, "SIGKILL");
}

const root = mkdtempSync(join(tmpdir(), "warden-log-"));
after(() => rmSync(root, { recursive: true, force: true }));
let n = 0;
const fresh = () => join(root, `d${n++}`);
const quiet = () => {};
const event = (i: number) => ({
  type: "decision" as const,
  agent: { name: "agent" },
  server: "github",
  tool: "create_issue",
  arguments: { title: `issue ${i}` },
  decision: "allow" as const,
  enforced: true,
  reason: "ok",
});

async function verifyDir(dir: string) {
  const store = AuditStore.openReader(dir);
  try {
    return await verifyLog(
      storeSource(store),
      loadVerifiers([join(dir, "keys", "log.pub")], store.meta().origin ?? null),
    );
  } finally {
    store.close();
  }
}

/** Runs this file as a child that appends and SIGKILLs itself; returns the ids it saw acknowledged. */
async function appendAndDie(dir: string, count: number): Promise<string[]> {
  const child = spawn(process.execPath, [process.argv[1] as string], {
    env: { ...process.env, WARDEN_AUDIT_SELFKILL: dir, WARDEN_AUDIT_COUNT: String(count) },
    stdio: ["ignore", "pipe", "inherit"],
  });
  let out = "";
  child.stdout.on("data", (d) => {
    out += d;
  });
  const [, signal] = (await new Promise((r) => child.on("exit", (...a) => r(a)))) as [number | null, string | null];
  assert.equal(signal, "SIGKILL");
  return JSON.parse(out.trim().split("\n").at(-1) as string);
}

describe("audit log", () => {
  it("acknowledges appends once committed, shares commits between concurrent callers, and signs checkpoints", async () => {
    const dir = fresh();
    const log = await openAuditLog({ dataDir: dir, origin: "test.example/log", warn: quiet });
    const first = await log.append(event(0));
    assert.equal(first.seq, 0);
    assert.match(first.leafHash, /^[0-9a-f]{64}$/);
    // Durable means committed: another connection sees it at once.
    const reader = AuditStore.openReader(dir);
    assert.equal(reader.recordCount(), 1);
    reader.close();

    const before = log.stats.commits;
    const results = await Promise.all(Array.from({ length: 64 }, (_, i) => log.append(event(i + 1))));
    assert.deepEqual(
      results.map((r) => r.seq),
      Array.from({ length: 64 }, (_, i) => i + 1),
    );
    const commits = log.stats.commits - before;
    assert.ok(commits <= 3, `64 concurrent appends took ${commits} commits; group commit should need 1 or 2`);
    assert.equal(log.size, 65);

    const cp = await log.checkpoint();
    assert.equal(cp.size, 65);
    const verified = openCheckpoint(cp.note, [parseVerifierKey(log.verifierKey)]);
    assert.equal(verified.origin, "test.example/log");
    assert.equal(verified.root.toString("base64"), cp.root);
    await log.close();
    await log.close(); // idempotent
    await assert.rejects(log.append(event(99)), /closed/);
    assert.equal(existsSync(join(dir, "audit.lock")), false, "a clean close releases the lock");
    assert.equal(existsSync(join(dir, "audit.db-wal")), false, "a clean close folds the WAL back");

    const r = await verifyDir(dir);
    assert.ok(r.ok, r.problems[0]?.message);
    assert.equal(r.records, 65);
    assert.equal(r.uncovered, 0);
  });

  it("overlaps encoding with commits: 64 closed-loop callers settle into two alternating groups", async () => {
    for (const writerThread of [true, false]) {
      const dir = fresh();
      const log = await openAuditLog({ dataDir: dir, warn: quiet, writerThread });
      const acked = new Set<number>();
      await Promise.all(
        Array.from({ length: 64 }, async (_, w) => {
          for (let i = 0; i < 20; i++) acked.add((await log.append(event(w * 100 + i))).seq);
        }),
      );
      const perCommit = log.stats.records / log.stats.commits;
      await log.close();
      assert.equal(acked.size, 1280);
      // With a thread, one group syncs while the next is encoded (about 32 each); inline
      // there is nothing to overlap, so everyone shares one commit.
      if (writerThread) assert.ok(perCommit >= 16 && perCommit <= 40, `${perCommit} records per commit`);
      else assert.ok(perCommit >= 60, `${perCommit} records per commit`);
      const r = await verifyDir(dir);
      assert.ok(r.ok, r.problems[0]?.message);
      assert.equal(r.records, 1280);
    }
  });

  it("works the same with SQLite inline on the caller's thread (writerThread: false)", async () => {
    const dir = fresh();
    const log = await openAuditLog({ dataDir: dir, warn: quiet, writerThread: false });
    const results = await Promise.all(Array.from({ length: 100 }, (_, i) => log.append(event(i))));
    assert.deepEqual(
      results.map((r) => r.seq),
      Array.from({ length: 100 }, (_, i) => i),
    );
    assert.ok(log.stats.commits <= 3);
    await log.close();
    const r = await verifyDir(dir);
    assert.ok(r.ok, r.problems[0]?.message);
    assert.equal(r.records, 100);
  });

  it("signs a checkpoint every N records and at close, and reopens where it left off", async () => {
    const dir = fresh();
    let log = await openAuditLog({ dataDir: dir, warn: quiet, checkpointEvery: { records: 10, seconds: 0 } });
    for (let i = 0; i < 25; i++) await log.append(event(i));
    assert.ok(log.stats.checkpoints >= 2);
    await log.close();
    log = await openAuditLog({ dataDir: dir, warn: quiet });
    assert.equal(log.size, 25);
    assert.equal((await log.append(event(25))).seq, 25);
    await log.close();
    const store = AuditStore.openReader(dir);
    const sizes = store.checkpoints().map((c) => c.size);
    store.close();
    assert.deepEqual(sizes, [10, 20, 25, 26]);
    assert.ok((await verifyDir(dir)).ok);
  });

  it("commits and checkpoints what was queued before close, and refuses appends after it", async () => {
    const dir = fresh();
    const log = await openAuditLog({ dataDir: dir, warn: quiet });
    const queued = Promise.all(Array.from({ length: 10 }, (_, i) => log.append(event(i))));
    const closing = log.close();
    await assert.rejects(log.append(event(99)), /closed/);
    assert.equal((await queued).length, 10);
    await closing;
    const r = await verifyDir(dir);
    assert.ok(r.ok);
    assert.equal(r.records, 10);
    assert.equal(r.uncovered, 0);
  });

  it("signs on a timer when records arrive slowly", async () => {
    const log = await openAuditLog({
      dataDir: fresh(),
      warn: quiet,
      checkpointEvery: { records: 1000, seconds: 0.05 },
    });
    await log.append(event(0));
    await new Promise((r) => setTimeout(r, 300));
    assert.ok(log.stats.checkpoints >= 1, "a checkpoint within the interval");
    await log.close();
  });

  it("creates its own key on first use and says so; uses a configured key otherwise", async () => {
    const dir = fresh();
    const warnings: string[] = [];
    let log = await openAuditLog({ dataDir: dir, warn: (m) => warnings.push(m) });
    await log.close();
    assert.match(warnings.join("\n"), /created an Ed25519 key for this log at .*keys\/log\.key/);
    warnings.length = 0;
    log = await openAuditLog({ dataDir: dir, warn: (m) => warnings.push(m) });
    await log.close();
    assert.deepEqual(warnings, []);

    const keyDir = join(root, "external-key");
    const { privatePath, publicPath } = writeKeyPair(keyDir, generateKeyPair("ed25519"));
    const dir2 = fresh();
    log = await openAuditLog({ dataDir: dir2, origin: "guard-7.example/audit", signingKey: privatePath, warn: quiet });
    await log.append(event(0));
    await log.close();
    assert.equal(existsSync(join(dir2, "keys")), false, "no key of its own when one is configured");
    const store = AuditStore.openReader(dir2);
    const r = await verifyLog(storeSource(store), loadVerifiers([publicPath], "guard-7.example/audit"));
    store.close();
    assert.ok(r.ok, r.problems[0]?.message);

    const ecdsa = writeKeyPair(join(root, "ecdsa"), generateKeyPair("ecdsa-p256"));
    await assert.rejects(openAuditLog({ dataDir: fresh(), signingKey: ecdsa.privatePath, warn: quiet }), /Ed25519/);
  });

  it("has one writer per data directory and keeps its origin", async () => {
    const dir = fresh();
    const log = await openAuditLog({ dataDir: dir, origin: "a.example/log", warn: quiet });
    await assert.rejects(openAuditLog({ dataDir: dir, warn: quiet }), /in use by process/);
    await log.close();
    await assert.rejects(
      openAuditLog({ dataDir: dir, origin: "b.example/log", warn: quiet }),
      /has origin "a\.example\/log"/,
    );
    assert.equal(existsSync(join(dir, "audit.lock")), false, "a refused open leaves no lock behind");
    await assert.rejects(openAuditLog({ dataDir: fresh(), origin: "has space" }), /invalid log origin/);
  });

  it("stores arguments as configured, always with their digest", async () => {
    const dir = fresh();
    const log = await openAuditLog({
      dataDir: dir,
      warn: quiet,
      arguments: { mode: "mask", mask: ["/token"] },
    });
    await log.append({ ...event(0), arguments: { title: "t", token: "s3cret" } });
    await log.close();
    const store = AuditStore.openReader(dir);
    const r = parseRecord((store.record(0) as Buffer).toString());
    store.close();
    assert.deepEqual(r.arguments, { title: "t", token: "[redacted]" });
    assert.match(r.argumentsDigest ?? "", /^sha256:[0-9a-f]{64}$/);
    assert.equal(readFileSync(join(dir, "audit.db")).includes("s3cret"), false, "the secret never reaches the disk");
  });

  it("rejects a bad event without consuming a sequence number", async () => {
    const log = await openAuditLog({ dataDir: fresh(), warn: quiet });
    await assert.rejects(log.append({ type: "nope" } as never), /event type/);
    await assert.rejects(log.append({ type: "lifecycle", reason: "\ud800" }), /surrogate/);
    assert.equal((await log.append(event(0))).seq, 0);
    await log.close();
  });

  it("recovers after its writer is killed: logs the recovery, signs, and verifies", async () => {
    const dir = fresh();
    const acked = await appendAndDie(dir, 30);
    assert.equal(acked.length, 30);
    assert.ok(existsSync(join(dir, "audit.lock")), "the dead writer left its lock");
    const warnings: string[] = [];
    const log = await openAuditLog({ dataDir: dir, warn: (m) => warnings.push(m) });
    assert.match(warnings.join("\n"), /stopped without closing the log; no unacknowledged writes were found/);
    await log.close();
    const store = AuditStore.openReader(dir);
    const ids = new Set<string>();
    let recovery: ReturnType<typeof parseRecord> | undefined;
    for (const [, bytes] of store.iterate()) {
      const r = parseRecord(bytes.toString());
      ids.add(r.id);
      if (r.detail?.event === "recovered") recovery = r;
    }
    store.close();
    for (const id of acked) assert.ok(ids.has(id), `acknowledged record ${id} survived`);
    assert.equal(recovery?.type, "lifecycle");
    assert.equal(recovery?.seq, 30);
    assert.ok((await verifyDir(dir)).ok);
  });

  it("does not mistake a WAL left behind by an open reader for a crash", async () => {
    const dir = fresh();
    let log = await openAuditLog({ dataDir: dir, warn: quiet });
    await log.append(event(0));
    const reader = AuditStore.openReader(dir);
    assert.equal(reader.recordCount(), 1);
    await log.close();
    assert.ok(existsSync(join(dir, "audit.db-wal")), "the reader kept the WAL alive");
    const warnings: string[] = [];
    log = await openAuditLog({ dataDir: dir, warn: (m) => warnings.push(m) });
    await log.close();
    reader.close();
    assert.deepEqual(warnings, []);
  });

  it("detects a torn WAL frame left by a crash, and logs that it was rolled back", async () => {
    const dir = fresh();
    const acked = await appendAndDie(dir, 10);
    const wal = join(dir, "audit.db-wal");
    const header = readFileSync(wal).subarray(0, 32);
    const pageSize = header.readUInt32BE(8);
    // A frame of the current WAL generation (same salts) whose checksum is wrong, cut short.
    const frame = Buffer.alloc(24 + pageSize, 0xab);
    frame.writeUInt32BE(2, 0);
    frame.writeUInt32BE(0, 4);
    header.copy(frame, 8, 16, 24);
    appendFileSync(wal, frame.subarray(0, 24 + pageSize / 2));
    const report = inspectWal(wal);
    assert.ok(report?.tornFrame, "inspectWal sees the torn frame");
    assert.ok((report?.committedFrames ?? 0) > 0);

    const warnings: string[] = [];
    const log = await openAuditLog({ dataDir: dir, warn: (m) => warnings.push(m) });
    await log.close();
    assert.match(warnings.join("\n"), /discarded 1 WAL frame\(s\) of a transaction that never committed \(one torn\)/);
    const store = AuditStore.openReader(dir);
    const records = [...store.iterate()].map(([, b]) => parseRecord(b.toString()));
    store.close();
    for (const id of acked) assert.ok(records.some((r) => r.id === id));
    const recovered = records.find((r) => r.detail?.event === "recovered");
    assert.equal(recovered?.detail?.tornFrame, true);
    assert.ok((await verifyDir(dir)).ok);
  });
});

describe("data directory", () => {
  it("comes from --data-dir, else WARDEN_DATA_DIR, else ./.warden", () => {
    assert.equal(resolveDataDir("/x/y", { WARDEN_DATA_DIR: "/env" }), "/x/y");
    assert.equal(resolveDataDir(undefined, { WARDEN_DATA_DIR: "/env" }), "/env");
    assert.equal(resolveDataDir(undefined, {}), join(process.cwd(), ".warden"));
  });

  it("is created when missing, and a clear error when it cannot be", async () => {
    const dir = join(root, "made", "deep");
    assert.equal(ensureDataDir(dir, {}), dir);
    const file = join(root, "a-file");
    writeFileSync(file, "x");
    assert.throws(
      () => ensureDataDir(join(file, "sub"), {}),
      (e: Error) =>
        e instanceof DataDirError && /cannot use .*a-file\/sub .*from --data-dir.*a file is in the way/.test(e.message),
    );
    assert.throws(() => ensureDataDir(undefined, { WARDEN_DATA_DIR: file }), /from WARDEN_DATA_DIR/);
    await assert.rejects(openAuditLog({ dataDir: join(file, "sub") }), DataDirError);
    mkdirSync(join(root, "ok"), { recursive: true });
  });
});

describe("lazy records (outcomes) ride with the next commit", () => {
  it("costs no commit of its own when another record follows, and is still durable on its own", async () => {
    const log = await openAuditLog({ dataDir: fresh(), warn: quiet, writerThread: false });
    try {
      await log.append(event(0));
      const before = log.stats.commits;
      const lazy = log.append(event(1), { lazy: true });
      const next = log.append(event(2));
      const [a, b] = await Promise.all([lazy, next]);
      assert.deepEqual([a.seq, b.seq], [1, 2]);
      assert.equal(log.stats.commits - before, 1, "one commit carried both");
      // Alone, a lazy record is committed anyway, shortly.
      const alone = await log.append(event(3), { lazy: true });
      assert.equal(alone.seq, 3);
      assert.equal(log.size, 4);
    } finally {
      await log.close();
    }
  });
});
