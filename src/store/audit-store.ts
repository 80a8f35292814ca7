// The audit log's storage: one SQLite database (better-sqlite3) in the data
// directory, in WAL mode with synchronous=FULL, so a committed transaction is on
// stable storage when COMMIT returns. One transaction per group of records keeps
// the records, the tree head and any new checkpoints consistent with each other.
//
// The records of one commit are stored together, as one row (a segment): their
// bytes, each with a length prefix, and their leaf hashes, keyed by the first
// record's seq. One insert per commit instead of one per record; readers still
// see records (iterate, record, leafHashes).
//
// Also here: the writer's lock file, and a reader for SQLite's WAL file that tells,
// before SQLite opens (and silently repairs) the database, whether the previous
// writer died with a torn or uncommitted tail.
import { closeSync, existsSync, openSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import Database from "better-sqlite3";

export const DB_FILE = "audit.db";
export const LOCK_FILE = "audit.lock";
/** The on-disk format, kept in meta; a database of another format is refused, never guessed at. */
export const FORMAT = "warden-audit-log/2";

export class AuditStoreError extends Error {
  override name = "AuditStoreError";
  constructor(
    message: string,
    readonly code?: string,
  ) {
    super(message);
  }
}

/** The records of one commit: seq `first` to `first + count - 1`. */
export interface Segment {
  first: number;
  count: number;
  /** Each record as a 4-byte big-endian length followed by its bytes. */
  records: Buffer;
  /** The records' leaf hashes, 32 bytes each, in order. */
  leaves: Buffer;
}

/** Packs records as a segment's records blob. */
export function packRecords(records: readonly Uint8Array[]): Buffer {
  let total = 0;
  for (const r of records) total += 4 + r.length;
  const out = Buffer.allocUnsafe(total);
  let off = 0;
  for (const r of records) {
    out.writeUInt32BE(r.length, off);
    out.set(r, off + 4);
    off += 4 + r.length;
  }
  return out;
}

/**
 * A segment's records, as views into its blob. `damage` says why the segment does
 * not hold together (framing, count or leaf hashes disagree); the records framed
 * before the damage are still returned.
 */
export function splitSegment(segment: Segment): { records: Buffer[]; damage: string | null } {
  const { records: blob, count, leaves } = segment;
  const records: Buffer[] = [];
  let off = 0;
  let damage: string | null = null;
  while (off < blob.length) {
    if (off + 4 > blob.length) {
      damage = `${blob.length - off} stray byte(s) after record ${segment.first + records.length - 1}`;
      break;
    }
    const len = blob.readUInt32BE(off);
    if (off + 4 + len > blob.length) {
      damage = `record ${segment.first + records.length} claims ${len} bytes, more than the segment holds`;
      break;
    }
    records.push(blob.subarray(off + 4, off + 4 + len));
    off += 4 + len;
  }
  if (damage === null && records.length !== count) {
    damage = `it holds ${records.length} record(s) but says ${count}`;
  }
  if (damage === null && leaves.length !== 32 * count) {
    damage = `it has ${leaves.length} bytes of leaf hashes for ${count} record(s)`;
  }
  return { records, damage };
}

type SegmentRow = [number, number, Buffer, Buffer];
const toSegment = (r: SegmentRow): Segment => ({ first: r[0], count: r[1], records: r[2], leaves: r[3] });

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
CREATE TABLE IF NOT EXISTS segments (first INTEGER PRIMARY KEY, count INTEGER NOT NULL, records BLOB NOT NULL, leaves BLOB NOT NULL) STRICT;
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

/** The meta of a database in this format; anything else is refused with a reason. */
function checkFormat(
  dbPath: string,
  tables: string[],
  meta: () => Record<string, string | undefined>,
): Record<string, string | undefined> {
  const m = tables.includes("meta") ? meta() : {};
  if (m.format === FORMAT) return m;
  if (m.format === undefined) throw new AuditStoreError(`${dbPath} is not a Warden audit log`, "EFORMAT");
  throw new AuditStoreError(
    `${dbPath} is an audit log in format "${m.format}"; this version of Warden reads and writes only "${FORMAT}". ` +
      "Verify or export it with the version that wrote it, and give this one a new data directory.",
    "EFORMAT",
  );
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
        const d = db as Database.Database;
        const tables = d.prepare("SELECT name FROM sqlite_master WHERE type = 'table'").pluck().all() as string[];
        if (tables.length === 0) {
          d.exec(SCHEMA);
          const ins = d.prepare("INSERT INTO meta (key, value) VALUES (?, ?)");
          ins.run("format", FORMAT);
          ins.run("origin", options.origin);
          ins.run("created", new Date().toISOString());
          d.prepare("INSERT INTO head (id, size, range) VALUES (0, 0, ?)").run(Buffer.alloc(8));
          return options.origin;
        }
        const meta = checkFormat(dbPath, tables, () => store.meta());
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
      const tables = db.prepare("SELECT name FROM sqlite_master WHERE type = 'table'").pluck().all() as string[];
      checkFormat(dbPath, tables, () => store.meta());
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

  /** Number of records: one past the end of the last segment (gaps are verify's business). */
  recordCount(): number {
    const row = this.db.prepare("SELECT first + count FROM segments ORDER BY first DESC LIMIT 1").pluck().get() as
      | number
      | undefined;
    return row ?? 0;
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

  private insertSegment?: Database.Statement;
  private updateHead?: Database.Statement;
  private insertCheckpoint?: Database.Statement;
  private commitTx?: (batch: CommitBatch) => void;

  /** Durably stores a batch in one transaction: a segment of records, the new tree head, and checkpoints. */
  commit(batch: CommitBatch): void {
    if (!this.writer) throw new AuditStoreError("audit store opened read-only");
    if (!this.commitTx) {
      this.insertSegment = this.db.prepare("INSERT INTO segments (first, count, records, leaves) VALUES (?, ?, ?, ?)");
      this.updateHead = this.db.prepare("UPDATE head SET size = ?, range = ? WHERE id = 0");
      this.insertCheckpoint = this.db.prepare(
        "INSERT INTO checkpoints (n, size, note, created) VALUES ((SELECT coalesce(max(n), 0) + 1 FROM checkpoints), ?, ?, ?)",
      );
      const ins = this.insertSegment;
      const upd = this.updateHead;
      const cp = this.insertCheckpoint;
      this.commitTx = this.db.transaction((b: CommitBatch) => {
        const s = b.segment;
        if (s) ins.run(s.first, s.count, s.records, s.leaves);
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

  /** The stored segments that hold records in [from, to), in order, unchecked (verify reads these). */
  *segments(from = 0, to = Number.MAX_SAFE_INTEGER): Generator<Segment> {
    const rows = this.db
      .prepare(
        "SELECT first, count, records, leaves FROM segments WHERE first >= coalesce((SELECT max(first) FROM segments WHERE first <= ?), 0) AND first < ? ORDER BY first",
      )
      .raw(true)
      .iterate(from, to) as IterableIterator<SegmentRow>;
    for (const row of rows) yield toSegment(row);
  }

  /** A segment's records; a damaged segment is an error here (verify names it). */
  private recordsOf(segment: Segment): Buffer[] {
    const { records, damage } = splitSegment(segment);
    if (damage !== null) {
      throw new AuditStoreError(
        `audit store: the records stored from seq ${segment.first} are damaged (${damage}); run warden audit verify`,
        "EDAMAGED",
      );
    }
    return records;
  }

  /** Records [seq, record, leaf] in seq order, from `from` (inclusive) to `to` (exclusive). */
  *iterate(from = 0, to = Number.MAX_SAFE_INTEGER): Generator<[number, Buffer, Buffer]> {
    for (const segment of this.segments(from, to)) {
      const records = this.recordsOf(segment);
      for (let i = 0; i < records.length; i++) {
        const seq = segment.first + i;
        if (seq < from) continue;
        if (seq >= to) return;
        yield [seq, records[i] as Buffer, segment.leaves.subarray(32 * i, 32 * i + 32)];
      }
    }
  }

  /** Records [seq, record] before `before`, newest first (tail). */
  *iterateBackwards(before = Number.MAX_SAFE_INTEGER): Generator<[number, Buffer]> {
    const rows = this.db
      .prepare("SELECT first, count, records, leaves FROM segments WHERE first < ? ORDER BY first DESC")
      .raw(true)
      .iterate(before) as IterableIterator<SegmentRow>;
    for (const row of rows) {
      const segment = toSegment(row);
      const records = this.recordsOf(segment);
      for (let i = records.length - 1; i >= 0; i--) {
        const seq = segment.first + i;
        if (seq < before) yield [seq, records[i] as Buffer];
      }
    }
  }

  record(seq: number): Buffer | undefined {
    const row = this.db
      .prepare("SELECT first, count, records, leaves FROM segments WHERE first <= ? ORDER BY first DESC LIMIT 1")
      .raw(true)
      .get(seq) as SegmentRow | undefined;
    if (!row) return undefined;
    const segment = toSegment(row);
    return seq - segment.first < segment.count ? this.recordsOf(segment)[seq - segment.first] : undefined;
  }

  /** The leaf hashes of records [0, size), packed 32 bytes each. */
  leafHashes(size: number): Buffer {
    const out = Buffer.allocUnsafe(size * 32);
    let i = 0;
    for (const { first, count, leaves } of this.segments(0, size)) {
      if (first !== i || count < 1 || leaves.length !== 32 * count)
        throw new AuditStoreError(`audit store: record ${i} is missing or damaged; run warden audit verify`);
      const n = Math.min(count, size - i);
      leaves.copy(out, i * 32, 0, n * 32);
      i += n;
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
  segment?: Segment;
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
