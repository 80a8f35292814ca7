// The audit log's storage: one SQLite database (better-sqlite3) in the data
// directory, in WAL mode with synchronous=FULL, so a committed transaction is on
// stable storage when COMMIT returns. One transaction per group of records keeps
// the records, the tree head and any new checkpoints consistent with each other.
//
// Also here: the writer's lock file, and a reader for SQLite's WAL file that tells,
// before SQLite opens (and silently repairs) the database, whether the previous
// writer died with a torn or uncommitted tail.
import { closeSync, existsSync, openSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import Database from "better-sqlite3";

export const DB_FILE = "audit.db";
export const LOCK_FILE = "audit.lock";
export const FORMAT = "warden-audit-log/1";

export class AuditStoreError extends Error {
  override name = "AuditStoreError";
  constructor(
    message: string,
    readonly code?: string,
  ) {
    super(message);
  }
}

export interface StoredCheckpoint {
  /** Position in the checkpoint list, from 1. */
  n: number;
  size: number;
  note: string;
  created: string;
}

export interface Head {
  size: number;
  /** A serialised CompactRange for `size` leaves. */
  range: Buffer;
}

export interface WalReport {
  /** Bytes in the WAL file when the writer opened. */
  bytes: number;
  /** Frames SQLite will keep (up to the last commit frame). */
  committedFrames: number;
  /** Valid frames after the last commit: a transaction that never committed. */
  uncommittedFrames: number;
  /** A frame of the current WAL generation whose checksum fails, or cut short: a torn write. */
  tornFrame: boolean;
}

export interface Recovery {
  /** The previous writer did not close the log (lock left behind, or a torn/uncommitted WAL tail). */
  unclean: boolean;
  previousPid: number | null;
  wal: WalReport | null;
}

const SCHEMA = `
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) STRICT;
CREATE TABLE IF NOT EXISTS records (seq INTEGER PRIMARY KEY, leaf BLOB NOT NULL, record BLOB NOT NULL) STRICT;
CREATE TABLE IF NOT EXISTS checkpoints (n INTEGER PRIMARY KEY, size INTEGER NOT NULL, note TEXT NOT NULL, created TEXT NOT NULL) STRICT;
CREATE TABLE IF NOT EXISTS head (id INTEGER PRIMARY KEY CHECK (id = 0), size INTEGER NOT NULL, range BLOB NOT NULL) STRICT;
`;

function storeError(err: unknown, doing: string): AuditStoreError {
  const e = err as { code?: string; message?: string };
  return new AuditStoreError(`audit store: ${doing}: ${e.message ?? String(err)}`, e.code);
}

// ---------------------------------------------------------------------------
// WAL inspection (format: sqlite.org/fileformat2.html, "The Write-Ahead Log")

function walChecksum(buf: Buffer, start: number, end: number, bigEndian: boolean, s: [number, number]): void {
  let s0 = s[0];
  let s1 = s[1];
  for (let i = start; i < end; i += 8) {
    const x0 = bigEndian ? buf.readUInt32BE(i) : buf.readUInt32LE(i);
    const x1 = bigEndian ? buf.readUInt32BE(i + 4) : buf.readUInt32LE(i + 4);
    s0 = (s0 + x0 + s1) >>> 0;
    s1 = (s1 + x1 + s0) >>> 0;
  }
  s[0] = s0;
  s[1] = s1;
}

/** Reads a WAL file the way SQLite's recovery does, and reports what recovery will throw away. */
export function inspectWal(path: string): WalReport | null {
  if (!existsSync(path)) return null;
  const buf = readFileSync(path);
  const report: WalReport = { bytes: buf.length, committedFrames: 0, uncommittedFrames: 0, tornFrame: false };
  if (buf.length === 0) return report;
  if (buf.length < 32) {
    report.tornFrame = true;
    return report;
  }
  const magic = buf.readUInt32BE(0);
  const pageSize = buf.readUInt32BE(8);
  const bigEndian = magic === 0x377f0683;
  const s: [number, number] = [0, 0];
  if (magic !== 0x377f0682 && magic !== 0x377f0683) {
    report.tornFrame = true;
    return report;
  }
  walChecksum(buf, 0, 24, bigEndian, s);
  if (s[0] !== buf.readUInt32BE(24) || s[1] !== buf.readUInt32BE(28) || pageSize < 512 || pageSize > 65536) {
    report.tornFrame = true;
    return report;
  }
  const salt1 = buf.readUInt32BE(16);
  const salt2 = buf.readUInt32BE(20);
  let valid = 0;
  for (let off = 32; off < buf.length; off += 24 + pageSize) {
    const sameGeneration =
      off + 16 <= buf.length && buf.readUInt32BE(off + 8) === salt1 && buf.readUInt32BE(off + 12) === salt2;
    if (off + 24 + pageSize > buf.length) {
      // A partial frame of this generation is a torn write; one of an older generation is leftover.
      report.tornFrame = sameGeneration || off + 16 > buf.length;
      break;
    }
    if (!sameGeneration) break;
    const t: [number, number] = [s[0], s[1]];
    walChecksum(buf, off, off + 8, bigEndian, t);
    walChecksum(buf, off + 24, off + 24 + pageSize, bigEndian, t);
    if (t[0] !== buf.readUInt32BE(off + 16) || t[1] !== buf.readUInt32BE(off + 20)) {
      report.tornFrame = true;
      break;
    }
    s[0] = t[0];
    s[1] = t[1];
    valid++;
    if (buf.readUInt32BE(off + 4) !== 0) report.committedFrames = valid;
  }
  report.uncommittedFrames = valid - report.committedFrames;
  return report;
}

// ---------------------------------------------------------------------------
// The writer's lock

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
}

/**
 * Takes the data directory's writer lock. Returns null, or — when a writer died
 * holding it — that writer's pid (-1 when the lock file was empty).
 */
function takeLock(dir: string): number | null {
  const path = join(dir, LOCK_FILE);
  let stalePid: number | null = null;
  for (let attempt = 0; attempt < 3; attempt++) {
    try {
      const fd = openSync(path, "wx", 0o644);
      try {
        writeFileSync(fd, `${process.pid}\n`);
      } finally {
        closeSync(fd);
      }
      return stalePid;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw storeError(err, `cannot create ${path}`);
    }
    let pid = Number.NaN;
    try {
      pid = Number.parseInt(readFileSync(path, "utf8"), 10);
    } catch {
      // Removed meanwhile: try again.
    }
    if (Number.isInteger(pid) && pid > 0 && (pid === process.pid || processAlive(pid))) {
      throw new AuditStoreError(
        `the audit log in ${dir} is in use by process ${pid}; one writer per data directory (readers such as warden audit verify are fine)`,
        "ELOCKED",
      );
    }
    stalePid = Number.isInteger(pid) && pid > 0 ? pid : -1;
    rmSync(path, { force: true });
  }
  throw new AuditStoreError(`cannot take the writer lock ${path}`, "ELOCKED");
}

// ---------------------------------------------------------------------------

export interface WriterOptions {
  origin: string;
  /** Refuse appends once the database would exceed this many bytes (SQLite max_page_count). */
  maxBytes?: number;
}

export class AuditStore {
  private constructor(
    readonly dir: string,
    readonly db: Database.Database,
    private readonly writer: boolean,
  ) {}

  /** Opens (creating if needed) the log for writing. One writer per directory. */
  static openWriter(dir: string, options: WriterOptions): { store: AuditStore; recovery: Recovery; origin: string } {
    const previousPid = takeLock(dir);
    const dbPath = join(dir, DB_FILE);
    let db: Database.Database | undefined;
    try {
      const wal = inspectWal(`${dbPath}-wal`);
      const recovery: Recovery = {
        // A writer that dies leaves its lock. A WAL that still holds committed frames is normal
        // (a reader had the database open when the writer closed); a torn or uncommitted tail is not.
        unclean: previousPid !== null || (wal !== null && (wal.uncommittedFrames > 0 || wal.tornFrame)),
        previousPid: previousPid !== null && previousPid > 0 ? previousPid : null,
        wal,
      };
      db = new Database(dbPath);
      db.pragma("journal_mode = WAL");
      db.pragma("synchronous = FULL");
      db.pragma("busy_timeout = 10000");
      db.pragma("journal_size_limit = 67108864");
      if (options.maxBytes !== undefined) {
        const pageSize = db.pragma("page_size", { simple: true }) as number;
        db.pragma(`max_page_count = ${Math.max(1, Math.floor(options.maxBytes / pageSize))}`);
      }
      const store = new AuditStore(dir, db, true);
      const origin = db.transaction(() => {
        db?.exec(SCHEMA);
        const meta = store.meta();
        if (meta.format === undefined) {
          const ins = db?.prepare("INSERT INTO meta (key, value) VALUES (?, ?)");
          ins?.run("format", FORMAT);
          ins?.run("origin", options.origin);
          ins?.run("created", new Date().toISOString());
          db?.prepare("INSERT INTO head (id, size, range) VALUES (0, 0, ?)").run(Buffer.alloc(8));
          return options.origin;
        }
        if (meta.format !== FORMAT) throw new AuditStoreError(`${dbPath} is not a ${FORMAT} database (${meta.format})`);
        return meta.origin as string;
      })();
      store.checkHead();
      return { store, recovery, origin };
    } catch (err) {
      db?.close();
      rmSync(join(dir, LOCK_FILE), { force: true });
      throw err instanceof AuditStoreError ? err : storeError(err, `cannot open ${dbPath}`);
    }
  }

  /** Opens an existing log read-only (verify, query, export, prove); safe while the writer runs. */
  static openReader(dir: string): AuditStore {
    const dbPath = join(dir, DB_FILE);
    if (!existsSync(dbPath)) {
      throw new AuditStoreError(
        `no audit log in ${dir} (looked for ${DB_FILE}); pass --data-dir or set WARDEN_DATA_DIR`,
        "ENOENT",
      );
    }
    try {
      const db = new Database(dbPath, { readonly: true, fileMustExist: true });
      db.pragma("busy_timeout = 10000");
      const store = new AuditStore(dir, db, false);
      const meta = store.meta();
      if (meta.format !== FORMAT) throw new AuditStoreError(`${dbPath} is not a ${FORMAT} database`);
      return store;
    } catch (err) {
      throw err instanceof AuditStoreError ? err : storeError(err, `cannot open ${dbPath}`);
    }
  }

  meta(): Record<string, string | undefined> {
    const rows = this.db.prepare("SELECT key, value FROM meta").all() as { key: string; value: string }[];
    return Object.fromEntries(rows.map((r) => [r.key, r.value]));
  }

  head(): Head {
    const row = this.db.prepare("SELECT size, range FROM head WHERE id = 0").get() as Head | undefined;
    if (!row) throw new AuditStoreError("audit store: the tree head is missing");
    return row;
  }

  /** Number of records: one past the highest seq (gaps are verify's business). */
  recordCount(): number {
    const row = this.db.prepare("SELECT max(seq) AS m FROM records").get() as { m: number | null };
    return row.m === null ? 0 : row.m + 1;
  }

  /** The head must describe exactly the records stored; the writer refuses to extend anything else. */
  private checkHead(): void {
    const head = this.head();
    const count = this.recordCount();
    if (head.size !== count) {
      throw new AuditStoreError(
        `audit store: the tree head says ${head.size} records but the records end at ${count}; run warden audit verify`,
        "EINCONSISTENT",
      );
    }
  }

  private insertRecord?: Database.Statement;
  private updateHead?: Database.Statement;
  private insertCheckpoint?: Database.Statement;
  private commitTx?: (batch: CommitBatch) => void;

  /**
   * Durably stores a batch in one transaction: records (seq from firstSeq, as
   * [record bytes, leaf hash]), the new tree head, and checkpoints.
   */
  commit(batch: CommitBatch): void {
    if (!this.writer) throw new AuditStoreError("audit store opened read-only");
    if (!this.commitTx) {
      this.insertRecord = this.db.prepare("INSERT INTO records (seq, leaf, record) VALUES (?, ?, ?)");
      this.updateHead = this.db.prepare("UPDATE head SET size = ?, range = ? WHERE id = 0");
      this.insertCheckpoint = this.db.prepare(
        "INSERT INTO checkpoints (n, size, note, created) VALUES ((SELECT coalesce(max(n), 0) + 1 FROM checkpoints), ?, ?, ?)",
      );
      const ins = this.insertRecord;
      const upd = this.updateHead;
      const cp = this.insertCheckpoint;
      this.commitTx = this.db.transaction((b: CommitBatch) => {
        let seq = b.firstSeq;
        for (const [record, leaf] of b.records ?? []) ins.run(seq++, leaf, record);
        if (b.head) upd.run(b.head.size, b.head.range);
        for (const c of b.checkpoints ?? []) cp.run(c.size, c.note, c.created);
      });
    }
    try {
      this.commitTx(batch);
    } catch (err) {
      throw storeError(err, "cannot write");
    }
  }

  checkpoints(): StoredCheckpoint[] {
    return this.db.prepare("SELECT n, size, note, created FROM checkpoints ORDER BY n").all() as StoredCheckpoint[];
  }

  latestCheckpoint(): StoredCheckpoint | null {
    return (
      (this.db.prepare("SELECT n, size, note, created FROM checkpoints ORDER BY n DESC LIMIT 1").get() as
        | StoredCheckpoint
        | undefined) ?? null
    );
  }

  /** Rows [seq, record, leaf] in seq order, from `from` (inclusive) to `to` (exclusive). */
  iterate(from = 0, to = Number.MAX_SAFE_INTEGER): IterableIterator<[number, Buffer, Buffer]> {
    return this.db
      .prepare("SELECT seq, record, leaf FROM records WHERE seq >= ? AND seq < ? ORDER BY seq")
      .raw(true)
      .iterate(from, to) as IterableIterator<[number, Buffer, Buffer]>;
  }

  /** Rows whose record satisfies an SQL condition over json_extract(record, ...). */
  query(where: string, params: unknown[], order: "ASC" | "DESC", limit: number): [number, Buffer][] {
    const sql = `SELECT seq, record FROM records${where ? ` WHERE ${where}` : ""} ORDER BY seq ${order} LIMIT ?`;
    return this.db
      .prepare(sql)
      .raw(true)
      .all(...params, limit) as [number, Buffer][];
  }

  record(seq: number): Buffer | undefined {
    const row = this.db.prepare("SELECT record FROM records WHERE seq = ?").raw(true).get(seq) as [Buffer] | undefined;
    return row?.[0];
  }

  /** The leaf hashes of records [0, size), packed 32 bytes each. */
  leafHashes(size: number): Buffer {
    const out = Buffer.allocUnsafe(size * 32);
    let i = 0;
    for (const [seq, leaf] of this.db
      .prepare("SELECT seq, leaf FROM records WHERE seq < ? ORDER BY seq")
      .raw(true)
      .iterate(size) as IterableIterator<[number, Buffer]>) {
      if (seq !== i || leaf.length !== 32)
        throw new AuditStoreError(`audit store: record ${i} is missing or damaged; run warden audit verify`);
      leaf.copy(out, i * 32);
      i++;
    }
    if (i !== size)
      throw new AuditStoreError(`audit store: only ${i} of ${size} records are present; run warden audit verify`);
    return out;
  }

  /** Closes the database; the writer also releases its lock (a clean shutdown). */
  close(): void {
    this.db.close();
    if (this.writer) rmSync(join(this.dir, LOCK_FILE), { force: true });
  }
}

export interface CommitBatch {
  firstSeq: number;
  records?: [Buffer, Buffer][];
  head?: Head;
  checkpoints?: { size: number; note: string; created: string }[];
}

/** Size in bytes of the database and its WAL, for status output. */
export function storeBytes(dir: string): number {
  let total = 0;
  for (const f of [DB_FILE, `${DB_FILE}-wal`]) {
    try {
      total += statSync(join(dir, f)).size;
    } catch {
      // absent
    }
  }
  return total;
}
