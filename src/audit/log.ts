// The audit log the gateway writes to. append() resolves only once the record is
// on stable storage; appends from many callers share one commit (group commit):
// this thread encodes records (RFC 8785), hashes them and queues them, a writer
// thread extends the Merkle tree and commits each group to SQLite in one transaction.
// The writer thread holds at most two commits: one being synced and the next queued
// behind it. When many callers wait on the log, they are split into two groups that
// alternate, so this thread encodes one while the writer syncs the other (see
// onReply). Signed checkpoints are written every N records or T seconds, after
// recovery from a crash, and at close.
//
// Failure is final: once the store fails (unwritable, full), every pending and
// later append rejects, and the caller must deny; a commit queued behind the one
// that failed fails with it. Reopen the log to try again.
import { createPublicKey, type KeyObject } from "node:crypto";
import { existsSync, mkdirSync } from "node:fs";
import { hostname } from "node:os";
import { join } from "node:path";
import { Worker } from "node:worker_threads";
import { generateKeyPair, keyTypeOf, loadPrivateKey, writeFileDurably, writeKeyPair } from "../keys/keys.js";
import { AuditStoreError } from "../store/audit-store.js";
import { ensureDataDir } from "./data-dir.js";
import { CompactRange, LeafHasher } from "./merkle.js";
import {
  ed25519Signer,
  ed25519Verifier,
  isValidKeyName,
  type NoteSigner,
  parseCheckpointText,
  parseNote,
  signCheckpoint,
} from "./note.js";
import { type ArgumentsPolicy, type AuditEvent, buildRecord, checkArgumentsPolicy, checkEvent } from "./record.js";
import { createWriterHandler, type WorkerReply, type WorkerRequest } from "./writer-worker.js";

export { AuditStoreError } from "../store/audit-store.js";

/** Groups of callers smaller than twice this are not split in two to overlap encoding with commits. */
const MIN_SPLIT = 16;

/** The scratch buffer groups are packed in is kept up to this size. */
const MAX_SLAB = 1 << 20;

/** Where a log created without a configured key keeps its own, relative to the data directory. */
export const LOG_KEY_DIR = "keys";
/** How long a lazy record (see append) may wait for a commit to ride with. */
export const LAZY_COMMIT_MS = 50;
export const LOG_KEY_BASE = "log";

export interface AuditLogOptions {
  /** The data directory; default WARDEN_DATA_DIR, else ./.warden/. Created if missing. */
  dataDir?: string;
  /** The log's name, in every checkpoint and as the signing key's name. Fixed when the log is created. */
  origin?: string;
  /** An Ed25519 private key (PEM PKCS#8). Default: the log's own key in <dataDir>/keys/, created on first use. */
  signingKey?: string;
  /** Sign a checkpoint after this many records or seconds, whichever comes first (defaults 1000 and 10). */
  checkpointEvery?: { records?: number; seconds?: number };
  /** How tool-call arguments are stored (default: digest only). */
  arguments?: ArgumentsPolicy;
  /** Refuse appends once the database would grow past this many bytes. */
  maxBytes?: number;
  /**
   * Run SQLite in a worker thread (default), so commits overlap with encoding and never
   * block this thread; false runs it inline, blocking this thread for each commit.
   */
  writerThread?: boolean;
  /** Notices for the operator (a key was created, a crash was recovered). Default: stderr. */
  warn?: (message: string) => void;
}

export interface AppendResult {
  seq: number;
  /** Hex SHA-256 leaf hash of the stored record. */
  leafHash: string;
  id: string;
  time: string;
}

export interface CheckpointInfo {
  size: number;
  /** Base64 root hash, as in the checkpoint. */
  root: string;
  /** The signed checkpoint (a C2SP signed note). */
  note: string;
}

/** The interface the gateway uses. */
export interface AuditLog {
  readonly dataDir: string;
  readonly origin: string;
  /** The C2SP verifier key of the signing key (`origin+hexid+base64`). */
  readonly verifierKey: string;
  /** Records durably stored. */
  readonly size: number;
  /** Set once the store has failed; every append rejects with it. */
  readonly failure: Error | null;
  /** Counters: durable commits (each one sync) and the records they carried. */
  readonly stats: { commits: number; records: number; checkpoints: number };
  /**
   * Appends a record; resolves once it is durable. A `lazy` record (an outcome,
   * whose call has already been decided and recorded) does not start a commit of
   * its own: it goes with the next commit, or at the latest after LAZY_COMMIT_MS.
   */
  append(event: AuditEvent, options?: { lazy?: boolean }): Promise<AppendResult>;
  /** Makes everything appended so far durable and covered by a signed checkpoint. */
  checkpoint(): Promise<CheckpointInfo>;
  /** Writes a final checkpoint and closes the store. */
  close(): Promise<void>;
}

interface Entry {
  seq: number;
  json: string;
  id: string;
  time: string;
  resolve: (r: AppendResult) => void;
  reject: (e: Error) => void;
}

interface PendingCheckpoint {
  size: number;
  root: Buffer;
  note: string;
  created: string;
}

interface Inflight {
  id: number;
  entries: Entry[];
  checkpoints: PendingCheckpoint[];
  /** The entries' leaf hashes, 32 bytes each. */
  leaves: Buffer | undefined;
}

/** How the log talks to its writer: a worker thread, or inline (synchronous SQLite on this thread). */
interface WriterChannel {
  /** Commits the writer can be handed at once: with a thread, one being synced and the next queued behind it. */
  readonly depth: number;
  post(msg: WorkerRequest, transfer?: ArrayBuffer[]): void;
  /** The next reply, for open and close. */
  next(): Promise<WorkerReply>;
  listen(onReply: (r: WorkerReply) => void, onFailure: (e: Error) => void): void;
  terminate(): Promise<void>;
}

class ThreadChannel implements WriterChannel {
  readonly depth = 2;
  private readonly worker = new Worker(new URL("./writer-worker.js", import.meta.url), {
    workerData: { wardenAuditWriter: true },
  });
  private listening = false;
  post(msg: WorkerRequest, transfer: ArrayBuffer[] = []): void {
    this.worker.postMessage(msg, transfer);
  }
  next(): Promise<WorkerReply> {
    return new Promise((resolve, reject) => {
      const onError = (e: Error) => reject(e);
      this.worker.once("error", onError);
      this.worker.once("message", (r: WorkerReply) => {
        this.worker.off("error", onError);
        resolve(r);
      });
    });
  }
  listen(onReply: (r: WorkerReply) => void, onFailure: (e: Error) => void): void {
    this.listening = true;
    this.worker.on("message", onReply);
    this.worker.on("error", (err) => onFailure(new AuditStoreError(`audit writer thread failed: ${err.message}`)));
    this.worker.on("exit", (code) => {
      if (this.listening) onFailure(new AuditStoreError(`audit writer thread exited (code ${code})`));
    });
  }
  async terminate(): Promise<void> {
    this.listening = false;
    await this.worker.terminate();
  }
}

class InlineChannel implements WriterChannel {
  readonly depth = 1;
  private readonly handle = createWriterHandler();
  private replies: WorkerReply[] = [];
  private waiters: ((r: WorkerReply) => void)[] = [];
  private onReply: ((r: WorkerReply) => void) | null = null;
  post(msg: WorkerRequest): void {
    const reply = this.handle(msg);
    const waiter = this.waiters.shift();
    if (waiter) waiter(reply);
    else if (this.onReply) {
      const deliver = this.onReply;
      queueMicrotask(() => deliver(reply));
    } else this.replies.push(reply);
  }
  next(): Promise<WorkerReply> {
    const r = this.replies.shift();
    return r ? Promise.resolve(r) : new Promise((resolve) => this.waiters.push(resolve));
  }
  listen(onReply: (r: WorkerReply) => void): void {
    this.onReply = onReply;
  }
  async terminate(): Promise<void> {}
}

function defaultOrigin(): string {
  return `warden/${hostname().replace(/[^A-Za-z0-9._-]/g, "-") || "host"}`;
}

function loadOrCreateLogKey(dir: string, warn: (m: string) => void): KeyObject {
  const keyDir = join(dir, LOG_KEY_DIR);
  const keyPath = join(keyDir, `${LOG_KEY_BASE}.key`);
  if (!existsSync(keyPath)) {
    mkdirSync(keyDir, { recursive: true, mode: 0o700 });
    const { privatePath, publicPath } = writeKeyPair(keyDir, generateKeyPair("ed25519"), LOG_KEY_BASE);
    warn(
      `no audit signing key configured: created an Ed25519 key for this log at ${privatePath} (public key ${publicPath}). ` +
        "Anyone who can write the data directory can also use this key; for stronger evidence configure a key kept elsewhere and pin its public key.",
    );
  }
  const key = loadPrivateKey(keyPath);
  const publicPath = join(keyDir, `${LOG_KEY_BASE}.pub`);
  if (!existsSync(publicPath)) {
    // A crash between writing the two files: the public half is derived again.
    writeFileDurably(publicPath, createPublicKey(key).export({ type: "spki", format: "pem" }) as string, 0o644);
  }
  return key;
}

class WardenAuditLog implements AuditLog {
  readonly verifierKey: string;
  failure: Error | null = null;
  readonly stats = { commits: 0, records: 0, checkpoints: 0 };
  private nextSeq: number;
  private pending: Entry[] = [];
  private pendingCheckpoints: PendingCheckpoint[] = [];
  private inflight: Inflight[] = [];
  private inflightEntries = 0;
  /** With a commit slot free, this many pending appends are sent at once rather than at the next turn (see onReply). */
  private eager: number;
  private slab = Buffer.allocUnsafeSlow(MAX_SLAB);
  private readonly hasher = new LeafHasher();
  private scheduled = false;
  private lazyTimer: NodeJS.Timeout | undefined;
  private commitId = 0;
  private durable: { size: number; root: Buffer };
  private lastCheckpoint: PendingCheckpoint | null;
  private queuedCheckpointSize: number;
  private drainWaiters: { resolve: () => void; reject: (e: Error) => void }[] = [];
  private closing = false;
  private closed: Promise<void> | null = null;
  private readonly timer: NodeJS.Timeout | null;
  private readonly everyRecords: number;
  private closeWaiter: ((r: WorkerReply) => void) | null = null;

  constructor(
    readonly dataDir: string,
    readonly origin: string,
    private readonly worker: WriterChannel,
    private readonly signer: NoteSigner,
    signingKey: KeyObject,
    head: CompactRange,
    latest: PendingCheckpoint | null,
    private readonly argumentsPolicy: ArgumentsPolicy,
    every: { records: number; seconds: number },
  ) {
    this.verifierKey = ed25519Verifier(origin, createPublicKey(signingKey)).vkey;
    this.nextSeq = head.size;
    this.durable = { size: head.size, root: head.root() };
    this.lastCheckpoint = latest;
    this.queuedCheckpointSize = latest?.size ?? -1;
    this.everyRecords = every.records;
    this.eager = Number.POSITIVE_INFINITY;
    this.timer =
      every.seconds > 0
        ? setInterval(() => {
            if (this.durable.size !== this.queuedCheckpointSize && !this.failure) this.queueCheckpoint();
          }, every.seconds * 1000)
        : null;
    this.timer?.unref();
    worker.listen(
      (r) => this.onReply(r),
      (e) => {
        if (!this.closing) this.fail(e);
      },
    );
  }

  get size(): number {
    return this.durable.size;
  }

  append(event: AuditEvent, options: { lazy?: boolean } = {}): Promise<AppendResult> {
    if (this.failure) return Promise.reject(this.failure);
    if (this.closing) return Promise.reject(new AuditStoreError("the audit log is closed", "ECLOSED"));
    try {
      checkEvent(event);
      const seq = this.nextSeq;
      const { json, id, time } = buildRecord(event, seq, Date.now(), this.argumentsPolicy);
      this.nextSeq = seq + 1;
      return new Promise((resolve, reject) => {
        this.pending.push({ seq, json, id, time, resolve, reject });
        if (options.lazy) this.scheduleLazy();
        else if (this.pending.length >= this.eager && this.inflight.length < this.worker.depth) this.flush();
        else this.schedule();
      });
    } catch (err) {
      return Promise.reject(err);
    }
  }

  /** A lazy record waits for the next commit, but not for ever. */
  private scheduleLazy(): void {
    if (this.lazyTimer) return;
    this.lazyTimer = setTimeout(() => {
      this.lazyTimer = undefined;
      this.schedule();
    }, LAZY_COMMIT_MS); // not unref'd: a pending record keeps the process alive until it is durable
  }

  private schedule(): void {
    if (this.scheduled || this.inflight.length >= this.worker.depth) return;
    this.scheduled = true;
    setImmediate(() => {
      this.scheduled = false;
      this.flush();
    });
  }

  private flush(): void {
    if (this.inflight.length >= this.worker.depth || this.failure) return;
    if (this.pending.length === 0 && this.pendingCheckpoints.length === 0) {
      this.notifyDrained();
      return;
    }
    const entries = this.pending;
    const checkpoints = this.pendingCheckpoints;
    this.pending = [];
    this.pendingCheckpoints = [];
    const msg: WorkerRequest = { op: "commit", id: ++this.commitId, firstSeq: this.nextSeq, count: entries.length };
    const transfer: ArrayBuffer[] = [];
    let leaves: Buffer | undefined;
    if (entries.length > 0) {
      // Packed as u32 length + UTF-8 bytes, as the segment stores them, and hashed here
      // (the writer thread's share, the tree and the commit, is the longer one); the writer
      // extends the tree and stores both buffers as they are. Written into a scratch slab
      // (UTF-8 takes at most 3 bytes per UTF-16 unit), then copied out at its exact size.
      let bound = 0;
      for (const e of entries) bound += 4 + 3 * e.json.length;
      if (bound > this.slab.length) this.slab = Buffer.allocUnsafeSlow(Math.max(bound, 2 * this.slab.length));
      const slab = this.slab;
      leaves = Buffer.allocUnsafeSlow(32 * entries.length);
      let off = 0;
      for (let i = 0; i < entries.length; i++) {
        const n = slab.write((entries[i] as Entry).json, off + 4, "utf8");
        slab.writeUInt32BE(n, off);
        this.hasher.hashInto(slab, off + 4, off + 4 + n, leaves, 32 * i);
        off += 4 + n;
      }
      const packed = new Uint8Array(slab.subarray(0, off));
      if (slab.length > MAX_SLAB) this.slab = Buffer.allocUnsafeSlow(MAX_SLAB);
      msg.firstSeq = (entries[0] as Entry).seq;
      msg.records = packed;
      msg.leaves = leaves;
      transfer.push(packed.buffer as ArrayBuffer); // the leaves are copied: they answer the callers
    }
    if (checkpoints.length > 0) {
      msg.checkpoints = checkpoints.map((c) => ({ size: c.size, note: c.note, created: c.created }));
    }
    this.inflight.push({ id: this.commitId, entries, checkpoints, leaves });
    this.inflightEntries += entries.length;
    this.worker.post(msg, transfer);
  }

  private onReply(r: WorkerReply): void {
    if (r.op === "closed" || (r.op === "error" && r.id === undefined)) {
      this.closeWaiter?.(r);
      return;
    }
    const batch = this.inflight[0];
    if (!batch || r.op === "opened" || r.id !== batch.id) {
      this.fail(new AuditStoreError("audit writer thread answered out of order"));
      return;
    }
    this.inflight.shift();
    this.inflightEntries -= batch.entries.length;
    if (r.op === "error") {
      const err = new AuditStoreError(
        `${r.message}; the audit log refuses further appends until it is reopened`,
        r.code,
      );
      for (const e of batch.entries) e.reject(err);
      this.fail(err);
      return;
    }
    this.durable = { size: r.size, root: Buffer.from(r.root.buffer, r.root.byteOffset, r.root.byteLength) };
    this.stats.commits++;
    this.stats.records += batch.entries.length;
    this.stats.checkpoints += batch.checkpoints.length;
    for (const c of batch.checkpoints) this.lastCheckpoint = c;
    const hex = batch.leaves?.toString("hex") ?? "";
    batch.entries.forEach((e, i) => {
      e.resolve({ seq: e.seq, leafHash: hex.slice(i * 64, i * 64 + 64), id: e.id, time: e.time });
    });
    // The callers just answered will likely append again at once. With a thread, the next
    // commit leaves as soon as half of them and those still in flight have, so that the
    // writer syncs one group while this thread encodes the next: two groups alternate
    // instead of everyone waiting on one commit and then on one encoding pass. Small
    // groups are not split: encoding them takes less time than a commit's fixed cost.
    if (this.worker.depth > 1) {
      const callers = batch.entries.length + this.inflightEntries;
      this.eager = callers >= 2 * MIN_SPLIT ? Math.ceil(callers / 2) : Number.POSITIVE_INFINITY;
    }
    if (this.durable.size - Math.max(this.queuedCheckpointSize, 0) >= this.everyRecords) this.queueCheckpoint();
    if (this.pending.length > 0 || this.pendingCheckpoints.length > 0) this.schedule();
    else this.notifyDrained();
  }

  private queueCheckpoint(): void {
    const { size, root } = this.durable;
    if (size === this.queuedCheckpointSize) return;
    const note = signCheckpoint({ origin: this.origin, size, root }, this.signer);
    this.pendingCheckpoints.push({ size, root, note, created: new Date().toISOString() });
    this.queuedCheckpointSize = size;
    this.schedule();
  }

  private notifyDrained(): void {
    if (this.inflight.length > 0 || this.scheduled || this.pending.length > 0 || this.pendingCheckpoints.length > 0)
      return;
    const waiters = this.drainWaiters;
    this.drainWaiters = [];
    for (const w of waiters) w.resolve();
  }

  /** Resolves when everything appended so far is durable. */
  private drain(): Promise<void> {
    if (this.failure) return Promise.reject(this.failure);
    if (this.pending.length > 0) this.schedule(); // lazy records too: someone is waiting now
    return new Promise((resolve, reject) => {
      this.drainWaiters.push({ resolve, reject });
      this.notifyDrained();
    });
  }

  private fail(err: Error): void {
    if (this.failure) return;
    this.failure = err;
    const pending = this.pending;
    this.pending = [];
    this.pendingCheckpoints = [];
    for (const e of pending) e.reject(err);
    for (const batch of this.inflight) for (const e of batch.entries) e.reject(err);
    this.inflight = [];
    this.inflightEntries = 0;
    const waiters = this.drainWaiters;
    this.drainWaiters = [];
    for (const w of waiters) w.reject(err);
  }

  async checkpoint(): Promise<CheckpointInfo> {
    await this.drain();
    if (this.durable.size !== this.queuedCheckpointSize) this.queueCheckpoint();
    await this.drain();
    const c = this.lastCheckpoint as PendingCheckpoint;
    return { size: c.size, root: c.root.toString("base64"), note: c.note };
  }

  close(): Promise<void> {
    this.closed ??= this.doClose();
    return this.closed;
  }

  private async doClose(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    if (this.lazyTimer) clearTimeout(this.lazyTimer);
    this.closing = true; // no new appends; those already queued are committed and checkpointed
    if (!this.failure) {
      try {
        await this.checkpoint();
      } catch {
        // The failure is already recorded; close the store regardless.
      }
    }
    const reply = await new Promise<WorkerReply>((resolve) => {
      this.closeWaiter = resolve;
      this.worker.post({ op: "close" });
    });
    await this.worker.terminate();
    if (reply.op === "error") throw new AuditStoreError(`closing the audit log: ${reply.message}`, reply.code);
  }
}

/** Opens (creating if needed) the audit log in a data directory, recovering from a crash if there was one. */
export async function openAuditLog(options: AuditLogOptions = {}): Promise<AuditLog> {
  const warn = options.warn ?? ((m: string) => process.stderr.write(`warden: ${m}\n`));
  const dataDir = ensureDataDir(options.dataDir);
  if (options.origin !== undefined && !isValidKeyName(options.origin)) {
    throw new AuditStoreError(`invalid log origin "${options.origin}": it must be non-empty, without spaces or +`);
  }
  const argumentsPolicy = checkArgumentsPolicy(options.arguments ?? { mode: "digest" });
  const records = options.checkpointEvery?.records ?? 1000;
  const seconds = options.checkpointEvery?.seconds ?? 10;
  if (!(Number.isSafeInteger(records) && records > 0)) throw new AuditStoreError("checkpointEvery.records must be ≥ 1");
  if (!(Number.isFinite(seconds) && seconds >= 0)) throw new AuditStoreError("checkpointEvery.seconds must be ≥ 0");

  const worker: WriterChannel = options.writerThread === false ? new InlineChannel() : new ThreadChannel();
  const msg: WorkerRequest = { op: "open", dir: dataDir, origin: options.origin ?? defaultOrigin() };
  if (options.maxBytes !== undefined) msg.maxBytes = options.maxBytes;
  const reply = worker.next();
  worker.post(msg);
  const opened = await reply.catch(async (err) => {
    await worker.terminate();
    throw err;
  });
  const abandon = async (err: Error): Promise<never> => {
    const closed = worker.next();
    worker.post({ op: "close" });
    await closed;
    await worker.terminate();
    throw err;
  };
  if (opened.op !== "opened") {
    await worker.terminate();
    throw new AuditStoreError(
      opened.op === "error" ? opened.message : "audit writer thread failed to open",
      opened.op === "error" ? opened.code : undefined,
    );
  }
  const origin = opened.origin;
  let log: WardenAuditLog;
  try {
    if (options.origin !== undefined && options.origin !== origin) {
      throw new AuditStoreError(
        `the log in ${dataDir} has origin "${origin}"; it cannot be reopened as "${options.origin}"`,
      );
    }
    const key = options.signingKey ? loadPrivateKey(options.signingKey) : loadOrCreateLogKey(dataDir, warn);
    if (keyTypeOf(key) !== "ed25519") {
      throw new AuditStoreError("audit checkpoints are signed with Ed25519; the configured key is not an Ed25519 key");
    }
    const head = CompactRange.deserialize(opened.head.range);
    let latest: PendingCheckpoint | null = null;
    if (opened.latest) {
      // The signature is verify's business (the key may have been rotated); the numbers must fit the head.
      const c = parseCheckpointText(parseNote(opened.latest.note).text);
      if (c.size > head.size || (c.size === head.size && !c.root.equals(head.root()))) {
        throw new AuditStoreError(
          `the records of ${dataDir} do not match its latest signed checkpoint (size ${c.size}); run warden audit verify`,
          "EINCONSISTENT",
        );
      }
      latest = { size: c.size, root: c.root, note: opened.latest.note, created: "" };
    }
    log = new WardenAuditLog(dataDir, origin, worker, ed25519Signer(origin, key), key, head, latest, argumentsPolicy, {
      records,
      seconds,
    });
  } catch (err) {
    return abandon(err as Error);
  }
  if (opened.recovery.unclean) {
    const wal = opened.recovery.wal;
    const discarded = wal ? wal.uncommittedFrames + (wal.tornFrame ? 1 : 0) : 0;
    const who = opened.recovery.previousPid ? ` (pid ${opened.recovery.previousPid})` : "";
    const reason =
      `the previous writer${who} stopped without closing the log; ` +
      (discarded > 0
        ? `SQLite recovery discarded ${discarded} WAL frame(s) of a transaction that never committed${wal?.tornFrame ? " (one torn)" : ""}: writes that were never acknowledged`
        : "no unacknowledged writes were found") +
      `; the log continues at seq ${log.size}`;
    warn(`audit log ${dataDir}: ${reason}`);
    await log.append({
      type: "lifecycle",
      reason,
      detail: {
        event: "recovered",
        previousPid: opened.recovery.previousPid,
        walBytes: wal?.bytes ?? 0,
        walCommittedFrames: wal?.committedFrames ?? 0,
        walDiscardedFrames: discarded,
        tornFrame: wal?.tornFrame ?? false,
        recoveredSize: log.size,
      },
    });
    await log.checkpoint();
  }
  return log;
}

/** The verifier key of a log's own key (what `verify` falls back to without --key). */
export function logPublicKeyPath(dataDir: string): string {
  return join(dataDir, LOG_KEY_DIR, `${LOG_KEY_BASE}.pub`);
}
