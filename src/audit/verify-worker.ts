// A worker of the parallel verifier: hashes and checks one aligned chunk of records.

import { parentPort } from "node:worker_threads";
import type { Statement } from "better-sqlite3";
import { AuditStore } from "../store/audit-store.js";
import { CompactRange, sha256 } from "./merkle.js";
import type { ChunkReply, ChunkRequest } from "./verify-parallel.js";

const port = parentPort;
if (!port) throw new Error("verify-worker must run in a worker thread");
let rows: Statement | undefined;
const pack = (nodes: readonly Buffer[]) => Buffer.concat(nodes);

// The fast path reads each record as text (hashing "\0" + text is SHA-256(0x00 || bytes) for
// valid UTF-8) and skips the stored leaf hashes: the rebuilt roots are compared with every
// signed checkpoint and the tree head, and any mismatch sends the caller to the sequential
// scan, which compares each leaf and names the record.
port.on("message", (req: ChunkRequest) => {
  rows ??= AuditStore.openReader(req.dir)
    .db.prepare("SELECT seq, CAST(record AS TEXT) FROM records WHERE seq >= ? AND seq < ? ORDER BY seq")
    .raw(true);
  const range = CompactRange.empty();
  const wanted = new Set(req.sizes);
  const at: [number, Uint8Array][] = [];
  let clean = true;
  let expected = req.from;
  for (const [seq, text] of rows.iterate(req.from, req.to) as IterableIterator<[number, string]>) {
    if (seq !== expected) {
      clean = false;
      break;
    }
    const h = sha256(`\0${text}`);
    expected++;
    range.append(h);
    if (wanted.has(seq + 1)) at.push([seq + 1, pack(range.hashes)]);
  }
  const reply: ChunkReply = { index: req.index, clean, count: range.size, nodes: pack(range.hashes), at };
  port.postMessage(reply);
});
