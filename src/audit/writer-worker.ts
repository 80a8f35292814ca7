// The audit log's writer. SQLite calls are synchronous, so they run here, in a
// worker thread: while this thread extends the Merkle tree with a group's leaf
// hashes and waits for its commit to reach the disk, the main thread keeps
// deciding and encodes (and hashes) the next group. Messages are answered in the
// order they arrive.
import { isMainThread, parentPort, workerData } from "node:worker_threads";
import { AuditStore, type CommitBatch } from "../store/audit-store.js";
import { CompactRange } from "./merkle.js";

export type WorkerRequest =
  | { op: "open"; dir: string; origin: string; maxBytes?: number }
  | {
      op: "commit";
      id: number;
      firstSeq: number;
      /** Each record as a u32 big-endian length + its bytes, for seq firstSeq, firstSeq + 1, ... (the segment's blob) */
      records?: Uint8Array;
      /** Their leaf hashes, 32 bytes each (hashed by the sender, which has the bytes at hand). */
      leaves?: Uint8Array;
      /** How many records `records` holds. */
      count: number;
      checkpoints?: { size: number; note: string; created: string }[];
    }
  | { op: "close" };

export type WorkerReply =
  | {
      op: "opened";
      origin: string;
      head: { size: number; range: Uint8Array };
      latest: { size: number; note: string } | null;
      recovery: import("../store/audit-store.js").Recovery;
    }
  | { op: "committed"; id: number; size: number; root: Uint8Array }
  | { op: "error"; id?: number; message: string; code?: string }
  | { op: "closed" };

const toBuffer = (u: Uint8Array) => Buffer.from(u.buffer, u.byteOffset, u.byteLength);
const EMPTY = Buffer.alloc(0);

/** The writer's request handler; runs in the writer thread, or inline when the log has no thread. */
export function createWriterHandler(): (msg: WorkerRequest) => WorkerReply {
  let store: AuditStore | undefined;
  let range = CompactRange.empty();
  // After a failed commit, commits already queued behind it must not land (they would
  // leave a gap, or follow records that were never stored): every later one fails the
  // same way, and the log refuses appends until it is reopened.
  let failed: { message: string; code?: string } | null = null;
  const fail = (err: unknown, id?: number): WorkerReply => {
    const e = err as { message?: string; code?: string };
    const r: WorkerReply = { op: "error", message: e.message ?? String(err) };
    if (id !== undefined) r.id = id;
    if (e.code !== undefined) r.code = e.code;
    return r;
  };
  return (msg) => {
    switch (msg.op) {
      case "open":
        try {
          const opened = AuditStore.openWriter(msg.dir, { origin: msg.origin, maxBytes: msg.maxBytes });
          store = opened.store;
          const head = store.head();
          range = CompactRange.deserialize(head.range);
          const latest = store.latestCheckpoint();
          return {
            op: "opened",
            origin: opened.origin,
            head: { size: head.size, range: head.range },
            latest: latest && { size: latest.size, note: latest.note },
            recovery: opened.recovery,
          };
        } catch (err) {
          return fail(err);
        }
      case "commit": {
        if (failed) return fail(failed, msg.id);
        const before = range.clone();
        try {
          if (!store) throw new Error("audit store is not open");
          const batch: CommitBatch = {};
          if (msg.records) {
            // The records arrive framed as the segment stores them, with their leaf hashes.
            const records = toBuffer(msg.records);
            const leaves = toBuffer(msg.leaves ?? EMPTY);
            const count = msg.count;
            if (msg.firstSeq !== range.size) throw new Error(`expected seq ${range.size}, got ${msg.firstSeq}`);
            if (leaves.length !== 32 * count) throw new Error("malformed commit: leaf hashes");
            let off = 0;
            for (let i = 0; i < count && off + 4 <= records.length; i++) {
              off += 4 + records.readUInt32BE(off);
              range.append(leaves.subarray(32 * i, 32 * i + 32));
            }
            if (off !== records.length || range.size !== msg.firstSeq + count) throw new Error("malformed commit");
            batch.segment = { first: msg.firstSeq, count, records, leaves };
            batch.head = { size: range.size, range: range.serialize() };
          }
          if (msg.checkpoints) batch.checkpoints = msg.checkpoints;
          store.commit(batch);
          return { op: "committed", id: msg.id, size: range.size, root: range.root() };
        } catch (err) {
          range = before;
          const e = err as { message?: string; code?: string };
          failed = { message: e.message ?? String(err) };
          if (e.code !== undefined) failed.code = e.code;
          return fail(err, msg.id);
        }
      }
      case "close":
        try {
          store?.close();
          store = undefined;
          return { op: "closed" };
        } catch (err) {
          return fail(err);
        }
    }
  };
}

if (!isMainThread && parentPort && (workerData as { wardenAuditWriter?: boolean } | null)?.wardenAuditWriter) {
  const port = parentPort;
  const handle = createWriterHandler();
  port.on("message", (msg: WorkerRequest) => port.postMessage(handle(msg)));
}
