// A worker of the parallel verifier: hashes and checks one aligned chunk of records.

import { parentPort } from "node:worker_threads";
import { AuditStore, splitSegment } from "../store/audit-store.js";
import { CompactRange, LeafHasher } from "./merkle.js";
import type { ChunkReply, ChunkRequest } from "./verify-parallel.js";

const port = parentPort;
if (!port) throw new Error("verify-worker must run in a worker thread");
let store: AuditStore | undefined;
const hasher = new LeafHasher();
const pack = (nodes: readonly Buffer[]) => Buffer.concat(nodes);

// The fast path skips the stored leaf hashes: the rebuilt roots are compared with every
// signed checkpoint and the tree head, and any mismatch sends the caller to the sequential
// scan, which compares each leaf and names the record.
port.on("message", (req: ChunkRequest) => {
  store ??= AuditStore.openReader(req.dir);
  const range = CompactRange.empty();
  const wanted = new Set(req.sizes);
  const at: [number, Uint8Array][] = [];
  let clean = true;
  let expected = req.from;
  scan: for (const segment of store.segments(req.from, req.to)) {
    const { records, damage } = splitSegment(segment);
    if (damage !== null) {
      clean = false;
      break;
    }
    for (let i = 0; i < records.length; i++) {
      const seq = segment.first + i;
      if (seq < req.from) continue;
      if (seq >= req.to) break scan;
      if (seq !== expected) {
        clean = false;
        break scan;
      }
      range.append(hasher.hash(records[i] as Buffer));
      expected++;
      if (wanted.has(seq + 1)) at.push([seq + 1, pack(range.hashes)]);
    }
  }
  const reply: ChunkReply = { index: req.index, clean, count: range.size, nodes: pack(range.hashes), at };
  port.postMessage(reply);
});
