// The store's layout: one segment (row) per commit, read back record by record;
// damaged segments are errors for readers; databases of another format are refused.
import assert from "node:assert/strict";
import { cpSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import Database from "better-sqlite3";
import { type AppendResult, openAuditLog } from "../../src/audit/log.js";
import { hashLeaf } from "../../src/audit/merkle.js";
import { recordSeq } from "../../src/audit/record.js";
import { AuditStore, AuditStoreError, FORMAT, packRecords, splitSegment } from "../../src/store/audit-store.js";

const root = mkdtempSync(join(tmpdir(), "warden-store-"));
after(() => rmSync(root, { recursive: true, force: true }));
const dir = join(root, "log");
const GROUPS = [1, 64, 3, 1, 17];
const acks: AppendResult[] = [];

before(async () => {
  const log = await openAuditLog({ dataDir: dir, warn: () => {}, checkpointEvery: { records: 1000, seconds: 0 } });
  for (const n of GROUPS) {
    acks.push(
      ...(await Promise.all(Array.from({ length: n }, (_, i) => log.append({ type: "lifecycle", reason: `${i}` })))),
    );
  }
  await log.close();
});

describe("audit store", () => {
  it("stores each commit as one segment and reads it back record by record", () => {
    const total = GROUPS.reduce((a, b) => a + b, 0);
    const store = AuditStore.openReader(dir);
    try {
      const segments = [...store.segments()];
      // The close adds a checkpoint, not records: one segment per group of appends.
      assert.deepEqual(
        segments.map((s) => s.count),
        GROUPS,
      );
      assert.equal(store.recordCount(), total);
      const all = [...store.iterate()];
      assert.deepEqual(
        all.map(([seq]) => seq),
        acks.map((a) => a.seq),
      );
      for (const [seq, bytes, leaf] of all) {
        assert.equal(recordSeq(bytes), seq);
        assert.equal(leaf.toString("hex"), acks[seq]?.leafHash);
        assert.ok(hashLeaf(bytes).equals(leaf));
        assert.ok(store.record(seq)?.equals(bytes));
      }
      assert.equal(store.record(total), undefined);
      // Ranges that start and end inside segments.
      assert.deepEqual(
        [...store.iterate(2, 67)].map(([seq]) => seq),
        Array.from({ length: 65 }, (_, i) => i + 2),
      );
      assert.deepEqual(
        [...store.iterateBackwards(70)].map(([seq]) => seq),
        Array.from({ length: 70 }, (_, i) => 69 - i),
      );
      assert.equal(
        store.leafHashes(66).toString("hex"),
        acks
          .slice(0, 66)
          .map((a) => a.leafHash)
          .join(""),
      );
      assert.throws(() => store.leafHashes(total + 1), /only 86 of 87 records are present/);
    } finally {
      store.close();
    }
  });

  it("frames records with a length prefix, and says where a segment stops holding together", () => {
    const records = [Buffer.from("a"), Buffer.from(""), Buffer.from("ccc")];
    const blob = packRecords(records);
    assert.equal(blob.toString("hex"), "00000001610000000000000003636363");
    const leaves = Buffer.alloc(96);
    assert.deepEqual(splitSegment({ first: 5, count: 3, records: blob, leaves }), { records, damage: null });
    assert.match(
      splitSegment({ first: 5, count: 3, records: blob.subarray(0, 14), leaves }).damage ?? "",
      /record 7 claims 3 bytes/,
    );
    assert.match(
      splitSegment({ first: 5, count: 3, records: Buffer.concat([blob, Buffer.from([0])]), leaves }).damage ?? "",
      /1 stray byte\(s\) after record 7/,
    );
    assert.match(
      splitSegment({ first: 5, count: 4, records: blob, leaves }).damage ?? "",
      /holds 3 record\(s\) but says 4/,
    );
    assert.match(
      splitSegment({ first: 5, count: 3, records: blob, leaves: leaves.subarray(1) }).damage ?? "",
      /95 bytes of leaf hashes for 3/,
    );
  });

  it("refuses to read a damaged segment (verify names it)", () => {
    // A copy whose second segment says it holds one record more than it does.
    const copy = join(root, "damaged");
    cpSync(dir, copy, { recursive: true });
    const db = new Database(join(copy, "audit.db"));
    db.prepare("UPDATE segments SET count = count + 1 WHERE first = 1").run();
    db.close();
    const store = AuditStore.openReader(copy);
    try {
      assert.throws(
        () => [...store.iterate()],
        (err: Error) =>
          err instanceof AuditStoreError &&
          /records stored from seq 1 are damaged \(it holds 64 record\(s\) but says 65\); run warden audit verify/.test(
            err.message,
          ),
      );
      assert.throws(() => store.record(10), /damaged/);
      assert.ok(store.record(0), "the segments around it still read");
    } finally {
      store.close();
    }
  });

  it(`refuses a database of another format, naming it (this version reads ${FORMAT})`, async () => {
    const old = join(root, "old");
    const log = await openAuditLog({ dataDir: old, warn: () => {} });
    await log.close();
    const db = new Database(join(old, "audit.db"));
    db.prepare("UPDATE meta SET value = 'warden-audit-log/1' WHERE key = 'format'").run();
    db.close();
    const expected =
      /is an audit log in format "warden-audit-log\/1"; this version of Warden reads and writes only "warden-audit-log\/2"/;
    assert.throws(() => AuditStore.openReader(old), expected);
    await assert.rejects(openAuditLog({ dataDir: old, warn: () => {} }), expected);
    // ...and the refused writer left no lock behind, nor changed the file.
    assert.throws(() => AuditStore.openReader(old), expected);
    const again = await openAuditLog({ dataDir: old, warn: () => {} }).catch((e: Error) => e);
    assert.ok(again instanceof AuditStoreError && !/in use by process/.test(again.message), String(again));

    const foreign = join(root, "foreign");
    const log2 = await openAuditLog({ dataDir: foreign, warn: () => {} });
    await log2.close();
    const f = new Database(join(foreign, "audit.db"));
    f.exec("DROP TABLE meta");
    f.close();
    assert.throws(() => AuditStore.openReader(foreign), /is not a Warden audit log/);
    await assert.rejects(openAuditLog({ dataDir: foreign, warn: () => {} }), /is not a Warden audit log/);
  });
});
