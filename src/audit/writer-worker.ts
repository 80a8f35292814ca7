// The audit log's writer thread. SQLite calls are synchronous, so they run here:
// while this thread waits for a commit to reach the disk, the main thread keeps
// encoding, hashing and queueing the next group of records (group commit with
// pipelining). Messages are answered in the order they arrive.
import { parentPort } from "node:worker_threads";
import { AuditStore, type CommitBatch } from "../store/audit-store.js";

export type WorkerRequest =
  | { op: "open"; dir: string; origin: string; maxBytes?: number }
  | {
      op: "commit";
      id: number;
      firstSeq: number;
      records?: Uint8Array;
      head?: { size: number; range: Uint8Array };
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
  | { op: "committed"; id: number }
  | { op: "error"; id?: number; message: string; code?: string }
  | { op: "closed" };

const port = parentPort;
if (!port) throw new Error("writer-worker must run in a worker thread");

let store: AuditStore | undefined;
const toBuffer = (u: Uint8Array) => Buffer.from(u.buffer, u.byteOffset, u.byteLength);

port.on("message", (msg: WorkerRequest) => {
  const reply = (r: WorkerReply) => port.postMessage(r);
  const fail = (err: unknown, id?: number) => {
    const e = err as { message?: string; code?: string };
    const r: WorkerReply = { op: "error", message: e.message ?? String(err) };
    if (id !== undefined) r.id = id;
    if (e.code !== undefined) r.code = e.code;
    reply(r);
  };
  switch (msg.op) {
    case "open":
      try {
        const opened = AuditStore.openWriter(msg.dir, { origin: msg.origin, maxBytes: msg.maxBytes });
        store = opened.store;
        const head = store.head();
        const latest = store.latestCheckpoint();
        reply({
          op: "opened",
          origin: opened.origin,
          head: { size: head.size, range: head.range },
          latest: latest && { size: latest.size, note: latest.note },
          recovery: opened.recovery,
        });
      } catch (err) {
        fail(err);
      }
      return;
    case "commit":
      try {
        if (!store) throw new Error("audit store is not open");
        const batch: CommitBatch = { firstSeq: msg.firstSeq };
        if (msg.records) batch.records = toBuffer(msg.records);
        if (msg.head) batch.head = { size: msg.head.size, range: toBuffer(msg.head.range) };
        if (msg.checkpoints) batch.checkpoints = msg.checkpoints;
        store.commit(batch);
        reply({ op: "committed", id: msg.id });
      } catch (err) {
        fail(err, msg.id);
      }
      return;
    case "close":
      try {
        store?.close();
        store = undefined;
        reply({ op: "closed" });
      } catch (err) {
        fail(err);
      }
      return;
  }
});
