// The audit log's writer. SQLite calls are synchronous, so they run here, in a
// worker thread: while this thread hashes a group of records into the tree and
// waits for its commit to reach the disk, the main thread keeps deciding and
// queueing the next group. Messages are answered in the order they arrive.
import { isMainThread, parentPort, workerData } from "node:worker_threads";
import { AuditStore, type CommitBatch } from "../store/audit-store.js";
import { CompactRange, LeafHasher } from "./merkle.js";

export type WorkerRequest =
  | { op: "open"; dir: string; origin: string; maxBytes?: number }
  | {
      op: "commit";
      id: number;
      firstSeq: number;
      /** Each record as a u32 big-endian length + its bytes, for seq firstSeq, firstSeq + 1, ... (the segment's blob) */
      records?: Uint8Array;
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
  | { op: "committed"; id: number; size: number; root: Uint8Array; leaves: Uint8Array }
  | { op: "error"; id?: number; message: string; code?: string }
  | { op: "closed" };

const toBuffer = (u: Uint8Array) => Buffer.from(u.buffer, u.byteOffset, u.byteLength);
const EMPTY = Buffer.alloc(0);

/** The writer's request handler; runs in the writer thread, or inline when the log has no thread. */
export function createWriterHandler(): (msg: WorkerRequest) => WorkerReply {
  let store: AuditStore | undefined;
  let range = CompactRange.empty();
  const hasher = new LeafHasher();
  // After a failed commit, commits already queued behind it must not land (they would
  // leave a gap): every later one fails the same way.
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
      case "commit":
        try {
          if (failed) throw failed;
          if (!store) throw new Error("audit store is not open");
          const batch: CommitBatch = {};
          const before = range.clone();
          let leaves = EMPTY;
          if (msg.records) {
            // The records arrive framed as the segment stores them; hash each into the tree.
            const records = toBuffer(msg.records);
            if (msg.firstSeq !== range.size) throw new Error(`expected seq ${range.size}, got ${msg.firstSeq}`);
            const count = msg.count;
            leaves = Buffer.allocUnsafeSlow(32 * count);
            let off = 0;
            for (let i = 0; i < count && off + 4 <= records.length; i++) {
              const len = records.readUInt32BE(off);
              range.append(hasher.hashInto(records, off + 4, off + 4 + len, leaves, 32 * i));
              off += 4 + len;
            }
            if (off !== records.length || range.size !== msg.firstSeq + count) throw new Error("malformed commit");
            batch.segment = { first: msg.firstSeq, count, records, leaves };
            batch.head = { size: range.size, range: range.serialize() };
          }
          if (msg.checkpoints) batch.checkpoints = msg.checkpoints;
          try {
            store.commit(batch);
          } catch (err) {
            range = before;
            const e = err as { message?: string; code?: string };
            failed = { message: e.message ?? String(err) };
            if (e.code !== undefined) failed.code = e.code;
            throw err;
          }
          return { op: "committed", id: msg.id, size: range.size, root: range.root(), leaves };
        } catch (err) {
          return fail(err, msg.id);
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
