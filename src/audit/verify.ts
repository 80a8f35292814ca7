// Offline verification of an audit log, from its data directory or from an
// export (JSONL records plus a checkpoints file): every leaf is recomputed, the
// tree is rebuilt, every checkpoint's signature is checked against the trusted
// keys and its root against the rebuilt tree, and checkpoints must only grow.
// With pinned keys every record must also be covered by a trusted checkpoint.
// The result names the first bad record or checkpoint and what is wrong with it.
import { readFileSync } from "node:fs";
import { ed25519PublicKeyFromBytes, loadPublicKey } from "../keys/keys.js";
import { type AuditStore, type Head, splitSegment } from "../store/audit-store.js";
import { CompactRange, LeafHasher } from "./merkle.js";
import {
  ed25519Verifier,
  keyLabel,
  NoteError,
  type NoteVerifier,
  openCheckpoint,
  parseCheckpointText,
  parseNote,
  parseVerifierKey,
  splitNotes,
} from "./note.js";
import { recordSeq } from "./record.js";
import { CHUNK_HEIGHT, PARALLEL_THRESHOLD, scanParallel } from "./verify-parallel.js";

export type ProblemKind =
  | "edited"
  | "missing"
  | "reordered"
  | "truncated"
  | "mismatch"
  | "fork"
  | "unknown-key"
  | "bad-signature"
  | "rollback"
  | "malformed"
  | "origin"
  | "head"
  | "unsigned";

export interface VerifyProblem {
  kind: ProblemKind;
  /** The record (seq / position) or checkpoint (1-based) concerned. */
  seq?: number;
  checkpoint?: number;
  message: string;
}

export interface VerifyResult {
  ok: boolean;
  origin: string | null;
  records: number;
  checkpoints: number;
  /** The rebuilt tree. */
  size: number;
  root: string;
  /** The newest checkpoint that verified, and who signed it. */
  latest: { n: number; size: number; signedBy: string[] } | null;
  /**
   * Records after the latest verified checkpoint (or the trusted checkpoint, if it
   * signs more): no signature covers them yet.
   */
  uncovered: number;
  problems: VerifyProblem[];
}

export interface LogSource {
  /** The log's origin, when the source records it (the database does; an export is named by its checkpoints). */
  origin: string | null;
  checkpoints: { n: number; note: string }[];
  /** Reads the records, rebuilding the tree and noting its roots at the sizes of `expected` (signed roots). */
  scan(expected: Map<number, Buffer[]>): TreeScan | Promise<TreeScan>;
  head?: Head;
}

const MAX_PROBLEMS = 20;

/** Where a running writer's checkpoint interval is set, for messages about unsigned records. */
export const CHECKPOINT_INTERVAL = "audit.checkpointEvery, default 1000 records or 10 s";

export interface VerifyOptions {
  /**
   * Every record must be covered by a checkpoint signed by one of the verifiers
   * (the verifier pinned the keys): uncovered records are a problem ("unsigned").
   * Without it they are only counted in `uncovered`.
   */
  requireSignatures?: boolean;
  /**
   * With requireSignatures: records after the last trusted checkpoint are
   * tolerated (a live log whose writer has not signed them yet). A log with
   * records and no trusted checkpoint at all still fails: nothing in it is
   * authenticated.
   */
  allowUnsignedTail?: boolean;
}

interface GoodCheckpoint {
  n: number;
  size: number;
  root: Buffer;
  signedBy: string[];
}

/**
 * Verifies a log. `trusted` is a checkpoint the verifier saved earlier (from
 * this log, e.g. via `warden audit checkpoint`); the log must still contain it.
 */
export async function verifyLog(
  source: LogSource,
  verifiers: NoteVerifier[],
  trusted?: string,
  options: VerifyOptions = {},
): Promise<VerifyResult> {
  const problems: VerifyProblem[] = [];
  const add = (p: VerifyProblem) => {
    if (problems.length < MAX_PROBLEMS) problems.push(p);
  };
  let origin = source.origin;

  // 1. Checkpoints: signature, origin, and that they never go backwards.
  const good: GoodCheckpoint[] = [];
  let prev: GoodCheckpoint | undefined;
  for (const { n, note } of source.checkpoints) {
    const where = `checkpoint #${n}`;
    let c: ReturnType<typeof openCheckpoint>;
    try {
      c = openCheckpoint(note, verifiers);
    } catch (err) {
      if (!(err instanceof NoteError)) throw err;
      const size = sizeOf(note);
      const at = size === undefined ? "" : ` (size ${size})`;
      if (err.kind === "unverified") {
        const renamed = renamedKeyHint(note, verifiers);
        add({
          kind: "unknown-key",
          checkpoint: n,
          message: `${where}${at}: ${err.message} — ${renamed ?? "forged, or signed with a key not given with --key"}`,
        });
      } else if (err.kind === "bad-signature") {
        add({
          kind: "bad-signature",
          checkpoint: n,
          message: `${where}${at}: ${err.message} — the checkpoint was altered`,
        });
      } else {
        add({ kind: "malformed", checkpoint: n, message: `${where}: ${err.message}` });
      }
      continue;
    }
    origin ??= c.origin;
    if (c.origin !== origin) {
      add({ kind: "origin", checkpoint: n, message: `${where}: origin "${c.origin}" is not this log's ("${origin}")` });
      continue;
    }
    if (prev && c.size < prev.size) {
      add({
        kind: "rollback",
        checkpoint: n,
        message: `${where} (size ${c.size}) is older than checkpoint #${prev.n} (size ${prev.size}): an older checkpoint replayed as the latest`,
      });
      continue;
    }
    if (prev && c.size === prev.size && !c.root.equals(prev.root)) {
      add({
        kind: "fork",
        checkpoint: n,
        message: `${where} and checkpoint #${prev.n} both sign size ${c.size} with different roots: two versions of the log`,
      });
      continue;
    }
    prev = { n, size: c.size, root: c.root, signedBy: c.verifiedBy.map(keyLabel) };
    good.push(prev);
  }
  let pinned: { size: number; root: Buffer } | undefined;
  if (trusted !== undefined) {
    try {
      const c = openCheckpoint(trusted, verifiers);
      if (origin !== null && c.origin !== origin) {
        add({ kind: "origin", message: `the trusted checkpoint is for "${c.origin}", not this log ("${origin}")` });
      } else {
        pinned = c;
      }
    } catch (err) {
      const renamed = err instanceof NoteError && err.kind === "unverified" ? renamedKeyHint(trusted, verifiers) : null;
      add({
        kind: "unknown-key",
        message: `the trusted checkpoint does not verify: ${(err as Error).message}${renamed ? ` — ${renamed}` : ""}`,
      });
    }
  }

  // 2. Records: leaf hashes, positions, and the rebuilt tree at every checkpoint size.
  const expected = new Map<number, Buffer[]>();
  for (const c of [...good, ...(pinned ? [pinned] : [])])
    expected.set(c.size, [...(expected.get(c.size) ?? []), c.root]);
  const scan = await source.scan(expected);
  for (const p of scan.problems) add(p);
  const { size } = scan;
  const root = scan.root;
  const mismatched = good.filter((g) => {
    const r = scan.rootsAt.get(g.size);
    return r !== undefined && !r.equals(g.root);
  });
  const firstBad = mismatched[0];
  if (firstBad) {
    const fromSize = good
      .filter((g) => g.size < firstBad.size && !mismatched.includes(g))
      .reduce((m, g) => Math.max(m, g.size), 0);
    if (good.some((g) => g.size > firstBad.size && g.size <= size && !mismatched.includes(g))) {
      add({
        kind: "fork",
        checkpoint: firstBad.n,
        message: `checkpoint #${firstBad.n} (size ${firstBad.size}): its root does not match the first ${firstBad.size} records, though later checkpoints do — a checkpoint signed over a different tree`,
      });
    } else {
      add({
        kind: "mismatch",
        checkpoint: firstBad.n,
        message: `checkpoint #${firstBad.n} (size ${firstBad.size}) does not match the records: records ${fromSize}–${firstBad.size - 1} were edited, removed, reordered or forged`,
      });
    }
  }
  const highest = good.reduce<GoodCheckpoint | undefined>((m, g) => (!m || g.size > m.size ? g : m), undefined);
  if (highest && highest.size > size) {
    add({
      kind: "truncated",
      checkpoint: highest.n,
      message: `truncated: checkpoint #${highest.n} signs ${highest.size} records but the log has ${size}`,
    });
  }
  if (pinned) {
    if (pinned.size > size) {
      add({
        kind: "truncated",
        message: `truncated: the trusted checkpoint signs ${pinned.size} records but the log has ${size}`,
      });
    } else if (!scan.rootsAt.get(pinned.size)?.equals(pinned.root)) {
      add({
        kind: "mismatch",
        message: `the log does not contain the trusted checkpoint (size ${pinned.size}): it was rewritten since`,
      });
    }
  }
  if (source.head) {
    const head = source.head;
    let headRoot: Buffer | undefined;
    try {
      const r = CompactRange.deserialize(head.range);
      headRoot = r.size === head.size ? r.root() : undefined;
    } catch {
      headRoot = undefined;
    }
    if (head.size !== size) {
      add({
        kind: head.size > size ? "truncated" : "head",
        message:
          head.size > size
            ? `truncated: the tree head says ${head.size} records but the log has ${size}`
            : `the log has ${size} records but its tree head says ${head.size}: records were added outside the writer`,
      });
    } else if (!headRoot?.equals(root)) {
      add({ kind: "head", message: "the stored tree head does not match the records" });
    }
  }
  const latest = good.filter((g) => !mismatched.includes(g) && g.size <= size).at(-1) ?? null;
  // Signed coverage: the records up to the largest trusted tree that matches them.
  const pinnedHolds =
    pinned !== undefined && pinned.size <= size && !!scan.rootsAt.get(pinned.size)?.equals(pinned.root);
  const covered = Math.max(latest?.size ?? 0, pinnedHolds ? (pinned?.size ?? 0) : 0);
  const uncovered = size - covered;
  // Reported only when nothing else is wrong: a bad or unknown checkpoint already says why coverage is missing.
  if (options.requireSignatures && uncovered > 0 && problems.length === 0) {
    if (covered === 0) {
      const none = source.checkpoints.length === 0 ? " (the log has no checkpoints)" : "";
      add({
        kind: "unsigned",
        seq: 0,
        message:
          `${size === 1 ? "its one record is not" : `none of the ${size} records is`} covered by a checkpoint signed by a trusted key${none}: nothing in this log is authenticated — ` +
          `its checkpoints were removed, or it was forged. A running writer signs its first checkpoint within its checkpoint interval (${CHECKPOINT_INTERVAL}); ` +
          "--allow-unsigned-tail does not accept a log without any trusted checkpoint",
      });
    } else if (!options.allowUnsignedTail) {
      const which =
        latest && latest.size === covered
          ? `the latest, #${latest.n}, signs ${covered}`
          : `the trusted checkpoint signs ${covered}`;
      add({
        kind: "unsigned",
        seq: covered,
        message:
          `${tailLabel(covered, size)} not covered by a checkpoint signed by a trusted key (${which}): ${uncovered === 1 ? "it is" : "they are"} not authenticated. ` +
          `A running writer signs new records within its checkpoint interval (${CHECKPOINT_INTERVAL}): verify again after it, ` +
          "or pass --allow-unsigned-tail to accept the unsigned records knowingly (a warning instead of a failure)",
      });
    }
  }
  return {
    ok: problems.length === 0,
    origin,
    records: size,
    checkpoints: source.checkpoints.length,
    size,
    root: root.toString("base64"),
    latest: latest && { n: latest.n, size: latest.size, signedBy: latest.signedBy },
    uncovered,
    problems,
  };
}

/** "the last 10 records (40–49) are" / "the last record (49) is": records from..to-1. */
export function tailLabel(from: number, to: number): string {
  const n = to - from;
  return n === 1 ? `the last record (${from}) is` : `the last ${n} records (${from}–${to - 1}) are`;
}

/**
 * When no trusted key verifies a signed note: whether one of its signatures
 * verifies with a trusted key's public key all the same, under another key name
 * (a verifier key named "warden" for a log whose origin is "warden/host"). Says
 * so and how to fix it; null when no trusted key made any of its signatures.
 */
export function renamedKeyHint(note: string, verifiers: readonly NoteVerifier[]): string | null {
  let parsed: ReturnType<typeof parseNote>;
  try {
    parsed = parseNote(note);
  } catch {
    return null;
  }
  const body = Buffer.from(parsed.text, "utf8");
  for (const s of parsed.signatures) {
    for (const v of verifiers) {
      if (v.name === s.name || !v.verify(body, s.signature)) continue;
      const renamed = ed25519Verifier(s.name, verifierPublicKey(v));
      const vkey = renamed.keyId === s.keyId ? ` ${renamed.vkey}` : ` for "${s.name}"`;
      return (
        `it was signed by the key given as ${keyLabel(v)}, named "${s.name}" instead of "${v.name}": ` +
        "the same public key under another name (a log signs under its origin, and a signature names its key). " +
        `Name the key after the origin: pass the PEM public key with --key, or the verifier key${vkey} ` +
        `(warden keys vkey --key PUB.pem --name ${s.name})`
      );
    }
  }
  return null;
}

/** The Ed25519 public key of a verifier, from its verifier key `name+hexid+base64(0x01||key)`. */
function verifierPublicKey(v: NoteVerifier) {
  const material = Buffer.from(v.vkey.slice(v.vkey.indexOf("+", v.vkey.indexOf("+") + 1) + 1), "base64");
  return ed25519PublicKeyFromBytes(material.subarray(1));
}

/** What reading the records yields: the rebuilt tree, its roots at the sizes asked for, and record problems. */
export interface TreeScan {
  size: number;
  root: Buffer;
  rootsAt: Map<number, Buffer>;
  problems: VerifyProblem[];
}

/** A record as read: [seq or line number, bytes, stored leaf hash]; or a problem the reader found. */
export type ScanRow = [number, Buffer, Buffer | undefined] | VerifyProblem;

/** Reads the records in order, checking each and rebuilding the tree (the sequential path). */
export function scanRecords(rows: Iterable<ScanRow>, storedSeq: boolean, sizes: Set<number>): TreeScan {
  const problems: VerifyProblem[] = [];
  const add = (p: VerifyProblem) => {
    if (problems.length < MAX_PROBLEMS) problems.push(p);
  };
  const hasher = new LeafHasher();
  const range = CompactRange.empty();
  const rootsAt = new Map<number, Buffer>();
  if (sizes.has(0)) rootsAt.set(0, range.root());
  let position = 0;
  let expected = 0;
  for (const row of rows) {
    if (!Array.isArray(row)) {
      add(row);
      continue;
    }
    const [key, bytes, leaf] = row;
    // In the database a record is named by its stored seq; in an export, by its line.
    const id = storedSeq ? key : position;
    const label = storedSeq ? `record ${key}` : `line ${position + 1} (seq ${position})`;
    if (storedSeq && key > expected) {
      add({
        kind: "missing",
        seq: expected,
        message:
          key === expected + 1
            ? `record ${expected} is missing (the next record is ${key})`
            : `records ${expected}–${key - 1} are missing (the next record is ${key})`,
      });
    }
    if (storedSeq && key < expected) {
      add({
        kind: "reordered",
        seq: key,
        message: `record ${key} is stored twice (the records stored from ${key} overlap the ones before): records were inserted`,
      });
    }
    expected = key + 1;
    const h = hasher.hash(bytes);
    if (leaf !== undefined && !h.equals(leaf)) {
      add({
        kind: "edited",
        seq: id,
        message: `${label}: its bytes do not match its leaf hash — the record was edited`,
      });
    }
    const carried = recordSeq(bytes);
    if (carried === undefined) {
      add({
        kind: "malformed",
        seq: id,
        message: `${label}: not a Warden audit record (no seq) — edited or foreign data`,
      });
    } else if (carried !== id) {
      add({
        kind: "reordered",
        seq: id,
        message: `${label} carries seq ${carried}: records were reordered, removed or inserted`,
      });
    }
    range.append(h);
    position++;
    if (sizes.has(position)) rootsAt.set(position, range.root());
  }
  return { size: range.size, root: range.root(), rootsAt, problems };
}

function sizeOf(note: string): number | undefined {
  try {
    return parseCheckpointText(parseNote(note).text).size;
  } catch {
    return undefined;
  }
}

/**
 * The database as a LogSource; large logs are read by several threads at once
 * (`parallel` overrides when, and in what chunks — for tests).
 */
export function storeSource(
  store: AuditStore,
  parallel = { threshold: PARALLEL_THRESHOLD, chunkHeight: CHUNK_HEIGHT },
): LogSource {
  const meta = store.meta();
  const head = store.head();
  return {
    origin: meta.origin ?? null,
    checkpoints: store.checkpoints().map((c) => ({ n: c.n, note: c.note })),
    scan: async (expected) => {
      const sizes = new Set(expected.keys());
      const total = store.recordCount();
      if (total >= parallel.threshold && total > 0) {
        const fast = await scanParallel(store.dir, total, sizes, parallel.chunkHeight);
        if (fast && agrees(fast, expected, head)) return fast;
      }
      return scanRecords(storeRows(store), true, sizes);
    },
    head,
  };
}

/** The database's records in order; a stored segment that does not hold together is reported first. */
function* storeRows(store: AuditStore): Generator<ScanRow> {
  for (const segment of store.segments()) {
    const { first, count, leaves } = segment;
    const { records, damage } = splitSegment(segment);
    if (damage !== null) {
      const which = count === 1 ? `record ${first}` : `records ${first}–${first + count - 1}`;
      yield {
        kind: "malformed",
        seq: first,
        message: `${which} (stored together by one commit): the stored segment does not hold together (${damage}) — edited`,
      };
    }
    for (let i = 0; i < records.length; i++) {
      yield [first + i, records[i] as Buffer, leaves.subarray(32 * i, 32 * i + 32)];
    }
  }
}

/** Whether a fast scan found nothing to report: every signed root and the tree head match. */
function agrees(scan: TreeScan, expected: Map<number, Buffer[]>, head: Head): boolean {
  for (const [size, roots] of expected) {
    const r = scan.rootsAt.get(size);
    if (size > scan.size || !r || roots.some((x) => !x.equals(r))) return false;
  }
  try {
    const h = CompactRange.deserialize(head.range);
    return head.size === scan.size && h.size === head.size && h.root().equals(scan.root);
  } catch {
    return false;
  }
}

/** An export (JSONL, one canonical record per line) and its checkpoints file as a LogSource. */
export function fileSource(jsonl: Buffer, checkpointsText: string): LogSource {
  return {
    origin: null,
    checkpoints: splitNotes(checkpointsText).map((note, i) => ({ n: i + 1, note })),
    scan: (expected) => scanRecords(jsonlRows(jsonl), false, new Set(expected.keys())),
  };
}

function* jsonlRows(buf: Buffer): Generator<[number, Buffer, undefined]> {
  let start = 0;
  let i = 0;
  while (start < buf.length) {
    let end = buf.indexOf(0x0a, start);
    if (end < 0) end = buf.length;
    if (end > start) yield [i++, buf.subarray(start, end), undefined];
    start = end + 1;
  }
}

/**
 * Trusted keys from --key values: a file holding a PEM public key (named after
 * the log's origin, as the log signs) or a verifier key, or a verifier key itself.
 */
export function loadVerifiers(keys: string[], origin: string | null): NoteVerifier[] {
  return keys.map((k) => {
    let text: string | undefined;
    try {
      text = readFileSync(k, "utf8");
    } catch {
      text = undefined;
    }
    if (text === undefined) return parseVerifierKey(k.trim());
    if (text.includes("-----BEGIN")) {
      if (origin === null)
        throw new NoteError("malformed", `${k}: a PEM key needs the log's origin; pass a verifier key`);
      return ed25519Verifier(origin, loadPublicKey(k));
    }
    return parseVerifierKey(text.trim());
  });
}

/** The origin named by the first checkpoint of an export (needed to name PEM keys). */
export function originOfCheckpoints(checkpointsText: string): string | null {
  for (const note of splitNotes(checkpointsText)) {
    try {
      return parseCheckpointText(parseNote(note).text).origin;
    } catch {
      // try the next
    }
  }
  return null;
}
