// The tamper matrix: each way of altering a log on disk is caught by
// `warden audit verify`, which exits 1 naming the first bad record or checkpoint
// and what is wrong. The log is real (written by the AuditLog, five records per
// commit, so five per stored segment); the tampering goes straight to the SQLite
// file, as an attacker with disk access would.
import assert from "node:assert/strict";
import { createPrivateKey } from "node:crypto";
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import Database from "better-sqlite3";
import { openAuditLog } from "../../src/audit/log.js";
import { CompactRange, hashLeaf } from "../../src/audit/merkle.js";
import { ed25519Signer, signCheckpoint } from "../../src/audit/note.js";
import { loadVerifiers, storeSource, verifyLog } from "../../src/audit/verify.js";
import { scanParallel } from "../../src/audit/verify-parallel.js";
import { main } from "../../src/cli/warden.js";
import { generateKeyPair } from "../../src/keys/keys.js";
import { AuditStore, packRecords, type Segment, splitSegment } from "../../src/store/audit-store.js";
import { runWarden } from "../helpers/cli.js";

const root = mkdtempSync(join(tmpdir(), "warden-tamper-"));
const pristine = join(root, "pristine");
const ORIGIN = "tamper.example/log";
let pub: string;
let savedCheckpoint: string;
let copies = 0;

before(async () => {
  const log = await openAuditLog({
    dataDir: pristine,
    origin: ORIGIN,
    warn: () => {},
    checkpointEvery: { records: 10, seconds: 0 },
  });
  for (let group = 0; group < 50; group += 5) {
    const results = await Promise.all(
      [0, 1, 2, 3, 4].map((k) =>
        log.append({
          type: "decision",
          agent: { name: "agent" },
          server: "fs",
          tool: "read_file",
          arguments: { path: `/tmp/${group + k}` },
          decision: (group + k) % 3 === 0 ? "deny" : "allow",
          enforced: true,
          reason: `decision ${group + k}`,
        }),
      ),
    );
    assert.deepEqual(
      results.map((r) => r.seq),
      [0, 1, 2, 3, 4].map((k) => group + k),
    );
  }
  assert.equal(log.stats.commits, 10, "five records per commit, so five per segment");
  savedCheckpoint = (await log.checkpoint()).note;
  await log.close();
  pub = join(pristine, "keys", "log.pub");
});
after(() => rmSync(root, { recursive: true, force: true }));

/** A copy of the pristine log, altered by `tamper` through a writable SQLite connection. */
function tampered(tamper: (db: Database.Database) => void): string {
  const dir = join(root, `copy${copies++}`);
  cpSync(pristine, dir, { recursive: true });
  const db = new Database(join(dir, "audit.db"));
  try {
    tamper(db);
  } finally {
    db.close();
  }
  return dir;
}

const verifyCli = (...args: string[]) => runWarden(["audit", "verify", ...args]);

interface StoredSegment {
  first: number;
  records: Buffer[];
  leaves: Buffer[];
}

/** The stored segment holding `seq`, split into its records and leaf hashes. */
function segmentOf(db: Database.Database, seq: number): StoredSegment {
  const row = db
    .prepare("SELECT first, count, records, leaves FROM segments WHERE first <= ? ORDER BY first DESC LIMIT 1")
    .get(seq) as { first: number; count: number; records: Buffer; leaves: Buffer };
  const { records, damage } = splitSegment(row);
  assert.equal(damage, null);
  const leaves = records.map((_, i) => row.leaves.subarray(32 * i, 32 * i + 32));
  return { first: row.first, records, leaves };
}

/** Writes a segment back (replacing the one starting at the same seq), as a careful attacker would. */
function putSegment(db: Database.Database, s: StoredSegment): void {
  db.prepare("INSERT OR REPLACE INTO segments (first, count, records, leaves) VALUES (?, ?, ?, ?)").run(
    s.first,
    s.records.length,
    packRecords(s.records),
    Buffer.concat(s.leaves),
  );
}

const recordOf = (db: Database.Database, seq: number) => {
  const s = segmentOf(db, seq);
  return s.records[seq - s.first] as Buffer;
};

/** Rewrites the tree head to match the records, as a careful attacker would. */
function fixHead(db: Database.Database): void {
  const range = CompactRange.empty();
  const rows = db.prepare("SELECT first, count, records, leaves FROM segments ORDER BY first").all() as Segment[];
  for (const row of rows) for (const record of splitSegment(row).records) range.append(hashLeaf(record));
  db.prepare("UPDATE head SET size = ?, range = ? WHERE id = 0").run(range.size, range.serialize());
}

const logKey = () => createPrivateKey(readFileSync(join(pristine, "keys", "log.key")));

const cases: { name: string; tamper: (db: Database.Database) => void; expect: RegExp; args?: () => string[] }[] = [
  {
    name: "one byte of one record changed",
    tamper: (db) => {
      // In place, in the stored bytes of its segment.
      const { first } = segmentOf(db, 17);
      const { records } = db.prepare("SELECT records FROM segments WHERE first = ?").get(first) as { records: Buffer };
      const at = records.indexOf("decision 17");
      assert.ok(at > 0);
      records[at + 9] = "8".charCodeAt(0);
      db.prepare("UPDATE segments SET records = ? WHERE first = ?").run(records, first);
    },
    expect: /^FAIL: record 17: its bytes do not match its leaf hash — the record was edited/,
  },
  {
    name: "a record deleted (its segment rewritten without it)",
    tamper: (db) => {
      const s = segmentOf(db, 23);
      s.records.splice(23 - s.first, 1);
      s.leaves.splice(23 - s.first, 1);
      putSegment(db, s);
    },
    expect: /^FAIL: record 23 carries seq 24: records were reordered, removed or inserted/,
  },
  {
    name: "the records of one commit deleted (a whole segment)",
    tamper: (db) => {
      db.prepare("DELETE FROM segments WHERE first = 20").run();
    },
    expect: /^FAIL: records 20–24 are missing \(the next record is 25\)/,
  },
  {
    name: "a record inserted (an overlapping segment)",
    tamper: (db) => {
      const r = recordOf(db, 22);
      putSegment(db, { first: 22, records: [r], leaves: [hashLeaf(r)] });
    },
    expect: /^FAIL: record 22 is stored twice .*: records were inserted/,
  },
  {
    name: "two records swapped",
    tamper: (db) => {
      const s = segmentOf(db, 30);
      assert.equal(s.first, 30);
      s.records = [s.records[1], s.records[0], ...s.records.slice(2)] as Buffer[];
      s.leaves = [s.leaves[1], s.leaves[0], ...s.leaves.slice(2)] as Buffer[];
      putSegment(db, s);
    },
    expect: /^FAIL: record 30 carries seq 31: records were reordered, removed or inserted/,
  },
  {
    name: "a segment's framing broken (a record's length changed)",
    tamper: (db) => {
      const { records } = db.prepare("SELECT records FROM segments WHERE first = 10").get() as { records: Buffer };
      records.writeUInt32BE(records.readUInt32BE(0) + 1, 0);
      db.prepare("UPDATE segments SET records = ? WHERE first = 10").run(records);
    },
    expect:
      /^FAIL: records 10–14 \(stored together by one commit\): the stored segment does not hold together \(.*\) — edited/,
  },
  {
    name: "the tail truncated",
    tamper: (db) => {
      db.prepare("DELETE FROM segments WHERE first >= 45").run();
      fixHead(db);
    },
    expect: /^FAIL: truncated: checkpoint #5 signs 50 records but the log has 45/,
  },
  {
    name: "the tail truncated and re-appended with forged records",
    tamper: (db) => {
      const forged = [45, 46, 47, 48, 49].map((seq) =>
        Buffer.from(
          recordOf(db, seq)
            .toString()
            .replace(/"decision \d+"/, '"nothing to see"'),
        ),
      );
      db.prepare("DELETE FROM segments WHERE first >= 45").run();
      putSegment(db, { first: 45, records: forged, leaves: forged.map((r) => hashLeaf(r)) });
      fixHead(db);
    },
    expect:
      /^FAIL: checkpoint #5 \(size 50\) does not match the records: records 40–49 were edited, removed, reordered or forged/,
  },
  {
    name: "a checkpoint replaced by one signed with another key",
    tamper: (db) => {
      const other = ed25519Signer(ORIGIN, createPrivateKey(generateKeyPair("ed25519").privatePem));
      const range = CompactRange.empty();
      for (let s = 0; s < 30; s++) range.append(hashLeaf(recordOf(db, s)));
      const note = signCheckpoint({ origin: ORIGIN, size: 30, root: range.root() }, other);
      db.prepare("UPDATE checkpoints SET note = ? WHERE n = 3").run(note);
    },
    expect:
      /^FAIL: checkpoint #3 \(size 30\): no signature from a trusted key \(signed by tamper\.example\/log\+[0-9a-f]{8}\) — forged, or signed with a key not given with --key/,
  },
  {
    name: "a checkpoint whose root does not match (signed with the log's own key)",
    tamper: (db) => {
      const note = signCheckpoint(
        { origin: ORIGIN, size: 30, root: Buffer.alloc(32, 9) },
        ed25519Signer(ORIGIN, logKey()),
      );
      db.prepare("UPDATE checkpoints SET note = ? WHERE n = 3").run(note);
    },
    expect:
      /^FAIL: checkpoint #3 \(size 30\): its root does not match the first 30 records, though later checkpoints do/,
  },
  {
    name: "a checkpoint whose root was edited (signature no longer holds)",
    tamper: (db) => {
      const { note } = db.prepare("SELECT note FROM checkpoints WHERE n = 3").get() as { note: string };
      const lines = note.split("\n");
      lines[2] = Buffer.alloc(32, 9).toString("base64");
      db.prepare("UPDATE checkpoints SET note = ? WHERE n = 3").run(lines.join("\n"));
    },
    expect:
      /^FAIL: checkpoint #3 \(size 30\): invalid signature by key tamper\.example\/log\+[0-9a-f]{8} — the checkpoint was altered/,
  },
  {
    name: "an older checkpoint replayed as the latest",
    tamper: (db) => {
      const { note } = db.prepare("SELECT note FROM checkpoints WHERE n = 2").get() as { note: string };
      db.prepare("INSERT INTO checkpoints (n, size, note, created) VALUES (6, 20, ?, 'x')").run(note);
    },
    expect:
      /^FAIL: checkpoint #6 \(size 20\) is older than checkpoint #5 \(size 50\): an older checkpoint replayed as the latest/,
  },
  {
    name: "a consistent rollback (records and checkpoints cut back together), caught by a checkpoint saved earlier",
    tamper: (db) => {
      db.prepare("DELETE FROM segments WHERE first >= 30").run();
      db.prepare("DELETE FROM checkpoints WHERE size > 30").run();
      fixHead(db);
    },
    args: () => {
      const saved = join(root, "saved-checkpoint.txt");
      writeFileSync(saved, savedCheckpoint);
      return ["--checkpoint", saved];
    },
    expect: /^FAIL: truncated: the trusted checkpoint signs 50 records but the log has 30/,
  },
];

describe("warden audit verify: tamper matrix", () => {
  it("passes the untouched log, naming the tree head", async () => {
    const r = await verifyCli("--data-dir", pristine, "--key", pub);
    assert.equal(r.code, 0, r.out);
    assert.match(
      r.out,
      /^ok: 50 records, 5 checkpoints, tree head 50 [A-Za-z0-9+/]{43}=; latest checkpoint #5 \(size 50\)/,
    );
  });

  for (const c of cases) {
    it(`detects ${c.name}`, async () => {
      const dir = tampered(c.tamper);
      const r = await verifyCli("--data-dir", dir, "--key", pub, ...(c.args?.() ?? []));
      assert.equal(r.code, 1, r.out);
      assert.match(r.out, c.expect);
      // The parallel reader (used for large logs) must reach the same verdict.
      const store = AuditStore.openReader(dir);
      try {
        const fast = await verifyLog(
          storeSource(store, { threshold: 0, chunkHeight: 3 }),
          loadVerifiers([pub], ORIGIN),
          c.args ? savedCheckpoint : undefined,
        );
        assert.equal(fast.ok, false);
      } finally {
        store.close();
      }
    });
  }

  it("export, query and prove refuse a damaged segment, naming it and pointing to verify", async () => {
    const dir = tampered((db) => {
      const { records } = db.prepare("SELECT records FROM segments WHERE first = 10").get() as { records: Buffer };
      db.prepare("UPDATE segments SET records = ? WHERE first = 10").run(records.subarray(0, records.length - 1));
    });
    for (const args of [
      ["export", "--format", "jsonl"],
      ["query", "--tool", "read_file"],
      ["prove", "--seq", "12"],
    ]) {
      let err = "";
      const code = await main(["audit", ...args, "--data-dir", dir], {
        stdout: () => {},
        stderr: (t) => {
          err += t;
        },
        readStdin: async () => "",
      });
      assert.equal(code, 2, args.join(" "));
      assert.match(
        err,
        /^warden: audit store: the records stored from seq 10 are damaged \(.*\); run warden audit verify/,
      );
    }
  });

  it("the parallel reader agrees with the sequential one on an intact log", async () => {
    const store = AuditStore.openReader(pristine);
    try {
      const v = loadVerifiers([pub], ORIGIN);
      const fast = await verifyLog(storeSource(store, { threshold: 0, chunkHeight: 3 }), v);
      const slow = await verifyLog(storeSource(store, { threshold: Number.POSITIVE_INFINITY, chunkHeight: 3 }), v);
      assert.ok(fast.ok, fast.problems[0]?.message);
      assert.deepEqual(fast, slow);
      // ...and it really is the parallel path (chunks of 8; the last one partial).
      const scan = await scanParallel(pristine, 50, new Set([10, 20, 50]), 3);
      assert.ok(scan);
      assert.equal(scan.root.toString("base64"), slow.root);
      assert.equal(scan.rootsAt.size, 3);
    } finally {
      store.close();
    }
  });

  it("refuses a key that did not sign the log", async () => {
    const other = join(root, "other.pub");
    writeFileSync(other, generateKeyPair("ed25519").publicPem);
    const r = await verifyCli("--data-dir", pristine, "--key", other);
    assert.equal(r.code, 1);
    assert.match(r.out, /^FAIL: checkpoint #1 \(size 10\): no signature from a trusted key/);
  });

  it("without --key uses the log's own key and warns that a pinned key is stronger", async () => {
    const r = await verifyCli("--data-dir", pristine);
    assert.equal(r.code, 0);
    assert.match(r.err, /no --key given; using the log's own public key .*a key pinned elsewhere is stronger evidence/);
  });

  it("verifies an export offline, and catches an edited line in it", async () => {
    const out = join(root, "export.jsonl");
    const code = await main(["audit", "export", "--data-dir", pristine, "--format", "jsonl", "-o", out], {
      stdout: () => {},
      stderr: () => {},
      readStdin: async () => "",
    });
    assert.equal(code, 0);
    const ok = await verifyCli("--file", out, "--key", pub);
    assert.equal(ok.code, 0, ok.out);
    assert.match(ok.out, /^ok: 50 records, 5 checkpoints/);
    const lines = readFileSync(out, "utf8").split("\n");
    lines[17] = (lines[17] as string).replace("decision 17", "decision 71");
    writeFileSync(out, lines.join("\n"));
    const bad = await verifyCli("--file", out, "--key", pub);
    assert.equal(bad.code, 1);
    assert.match(bad.out, /^FAIL: checkpoint #2 \(size 20\) does not match the records: records 10–19 were edited/);
    const noKey = await verifyCli("--file", out);
    assert.equal(noKey.code, 2);
  });
});

/**
 * The forgery the checkpoints exist to stop: every checkpoint deleted, denied calls
 * rewritten as allowed, leaf hashes and tree head recomputed. Records and tree agree;
 * only a signature could tell, and none covers them.
 */
function forgeWithoutCheckpoints(db: Database.Database): void {
  db.prepare("DELETE FROM checkpoints").run();
  let rewritten = 0;
  const firsts = db.prepare("SELECT first FROM segments ORDER BY first").all() as { first: number }[];
  for (const { first } of firsts) {
    const s = segmentOf(db, first);
    s.records = s.records.map((r) => {
      const text = r.toString("utf8");
      if (text.includes('"decision":"deny"')) rewritten++;
      return Buffer.from(text.replace('"decision":"deny"', '"decision":"allow"'));
    });
    s.leaves = s.records.map((r) => hashLeaf(r));
    putSegment(db, s);
  }
  assert.ok(rewritten > 0, "some records were denials");
  fixHead(db);
}

/** Exports a log directory as JSONL (and its .checkpoints file), returning the export's path. */
async function exportOf(dir: string, name: string): Promise<string> {
  const out = join(root, name);
  const code = await main(["audit", "export", "--data-dir", dir, "--format", "jsonl", "-o", out], {
    stdout: () => {},
    stderr: () => {},
    readStdin: async () => "",
  });
  assert.equal(code, 0);
  return out;
}

describe("warden audit verify: every record signed when the key is pinned", () => {
  it("fails a forged log whose checkpoints were deleted, with --key, even with --allow-unsigned-tail", async () => {
    const dir = tampered(forgeWithoutCheckpoints);
    const r = await verifyCli("--data-dir", dir, "--key", pub);
    assert.equal(r.code, 1, r.out);
    assert.match(
      r.out,
      /^FAIL: none of the 50 records is covered by a checkpoint signed by a trusted key \(the log has no checkpoints\): nothing in this log is authenticated/,
    );
    const tolerant = await verifyCli("--data-dir", dir, "--key", pub, "--allow-unsigned-tail");
    assert.equal(tolerant.code, 1, tolerant.out);
    assert.match(tolerant.out, /^FAIL: none of the 50 records is covered/);
    assert.match(tolerant.out, /--allow-unsigned-tail does not accept a log without any trusted checkpoint/);
    const json = JSON.parse((await verifyCli("--data-dir", dir, "--key", pub, "--format", "json")).out);
    assert.equal(json.ok, false);
    assert.equal(json.uncovered, 50);
    // The library leaves the requirement to its caller; the parallel reader reaches the same verdict.
    const store = AuditStore.openReader(dir);
    try {
      const source = () => storeSource(store, { threshold: 0, chunkHeight: 3 });
      const keys = loadVerifiers([pub], ORIGIN);
      const strict = await verifyLog(source(), keys, undefined, { requireSignatures: true, allowUnsignedTail: true });
      assert.equal(strict.ok, false);
      assert.deepEqual(
        strict.problems.map((p) => p.kind),
        ["unsigned"],
      );
      assert.equal((await verifyLog(source(), keys)).ok, true);
    } finally {
      store.close();
    }
  });

  it("counts a trusted checkpoint given with --checkpoint as a signature over the records it covers", async () => {
    const dir = tampered((db) => {
      db.prepare("DELETE FROM checkpoints").run();
    });
    const saved = join(root, "saved-for-coverage.txt");
    writeFileSync(saved, savedCheckpoint);
    assert.equal((await verifyCli("--data-dir", dir, "--key", pub)).code, 1);
    const r = await verifyCli("--data-dir", dir, "--key", pub, "--checkpoint", saved);
    assert.equal(r.code, 0, r.out);
    assert.equal(r.err, "");
  });

  it("without --key keeps passing such a log, but warns plainly that its records are NOT verified", async () => {
    const dir = tampered(forgeWithoutCheckpoints);
    const r = await verifyCli("--data-dir", dir);
    assert.equal(r.code, 0, r.out);
    assert.match(
      r.err,
      /warning: no signed checkpoint covers these 50 records: they are NOT verified .*audit\.checkpointEvery/,
    );
  });

  it("fails records after the last signed checkpoint with --key, and accepts them with --allow-unsigned-tail and a warning", async () => {
    const dir = tampered((db) => {
      db.prepare("DELETE FROM checkpoints WHERE n = 5").run();
    });
    const r = await verifyCli("--data-dir", dir, "--key", pub);
    assert.equal(r.code, 1, r.out);
    assert.match(
      r.out,
      /^FAIL: the last 10 records \(40–49\) are not covered by a checkpoint signed by a trusted key \(the latest, #4, signs 40\): they are not authenticated/,
    );
    assert.match(r.out, /within its checkpoint interval \(audit\.checkpointEvery/);
    assert.match(r.out, /--allow-unsigned-tail/);
    const tolerant = await verifyCli("--data-dir", dir, "--key", pub, "--allow-unsigned-tail");
    assert.equal(tolerant.code, 0, tolerant.out);
    assert.match(tolerant.out, /^ok: 50 records, 4 checkpoints, .*latest checkpoint #4 \(size 40\)/);
    assert.match(
      tolerant.err,
      /^warning: the last 10 records \(40–49\) are not covered by a signed checkpoint: they are NOT verified/,
    );
    // Without --key: a warning, as before.
    const own = await verifyCli("--data-dir", dir);
    assert.equal(own.code, 0, own.out);
    assert.match(
      own.err,
      /the last 10 records \(40–49\) are not covered by a signed checkpoint: they are NOT verified/,
    );
  });

  it("applies the same rules to an export (--file)", async () => {
    const dir = tampered((db) => {
      db.prepare("DELETE FROM checkpoints WHERE n = 5").run();
    });
    const out = await exportOf(dir, "tail.jsonl");
    const r = await verifyCli("--file", out, "--key", pub);
    assert.equal(r.code, 1, r.out);
    assert.match(r.out, /^FAIL: the last 10 records \(40–49\) are not covered by a checkpoint signed by a trusted key/);
    const tolerant = await verifyCli("--file", out, "--key", pub, "--allow-unsigned-tail");
    assert.equal(tolerant.code, 0, tolerant.out);
    assert.match(tolerant.err, /the last 10 records \(40–49\) are not covered by a signed checkpoint/);
    const forged = await exportOf(tampered(forgeWithoutCheckpoints), "forged.jsonl");
    const none = await verifyCli("--file", forged, "--key", pub, "--allow-unsigned-tail");
    assert.equal(none.code, 1, none.out);
    assert.match(none.out, /^FAIL: .*holds no checkpoints/);
  });

  it("fails a live log's unsigned tail with --key; --allow-unsigned-tail accepts it; the writer's next checkpoint covers it", async () => {
    const dir = join(root, "live");
    const log = await openAuditLog({
      dataDir: dir,
      origin: ORIGIN,
      warn: () => {},
      checkpointEvery: { records: 1000, seconds: 3600 },
    });
    try {
      for (let i = 0; i < 3; i++) await log.append({ type: "lifecycle", reason: `signed ${i}` });
      await log.checkpoint();
      for (let i = 0; i < 2; i++) await log.append({ type: "lifecycle", reason: `not yet signed ${i}` });
      const key = join(dir, "keys", "log.pub");
      const r = await verifyCli("--data-dir", dir, "--key", key);
      assert.equal(r.code, 1, r.out);
      assert.match(r.out, /^FAIL: the last 2 records \(3–4\) are not covered/);
      const tolerant = await verifyCli("--data-dir", dir, "--key", key, "--allow-unsigned-tail");
      assert.equal(tolerant.code, 0, tolerant.out);
      assert.match(tolerant.err, /the last 2 records \(3–4\) are not covered by a signed checkpoint/);
      await log.checkpoint();
      const signed = await verifyCli("--data-dir", dir, "--key", key);
      assert.equal(signed.code, 0, signed.out);
      assert.equal(signed.err, "");
    } finally {
      await log.close();
    }
  });
});
