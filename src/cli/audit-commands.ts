// `warden audit ...`: verify, checkpoint, prove, check-proof, export, query, tail.
// Thin over src/audit. The output formats and exit codes are a contract (README).

import { once } from "node:events";
import { createWriteStream, existsSync, readFileSync } from "node:fs";
import { parseArgs } from "node:util";
import { resolveDataDir } from "../audit/data-dir.js";
import { csvHeader, csvRow, toOcsf } from "../audit/export.js";
import { logPublicKeyPath } from "../audit/log.js";
import {
  consistencyProof,
  hashLeaf,
  inclusionProof,
  packedLeaves,
  subtreeHash,
  verifyConsistency,
  verifyInclusion,
} from "../audit/merkle.js";
import { keyLabel, NoteError, openCheckpoint, parseCheckpointText, parseNote, strictBase64 } from "../audit/note.js";
import { type AuditRecord, parseRecord, RECORD_TYPES } from "../audit/record.js";
import {
  CHECKPOINT_INTERVAL,
  fileSource,
  loadVerifiers,
  originOfCheckpoints,
  renamedKeyHint,
  storeSource,
  tailLabel,
  type VerifyResult,
  verifyLog,
} from "../audit/verify.js";
import { KeyError } from "../keys/keys.js";
import { parseDuration } from "../policy/duration.js";
import { AuditStore, AuditStoreError } from "../store/audit-store.js";
import { type CliIO, EXIT, readInput, UsageError } from "./io.js";

export const AUDIT_HELP = `Usage: warden audit <command> [options]

Every command reads the log in --data-dir DIR (default: $WARDEN_DATA_DIR, else ./.warden/),
the directory the gateway writes to; none of them writes to it.

Commands:
  verify [--key PUB]... [--checkpoint FILE] [--allow-unsigned-tail]
                                              check every record, the tree and every checkpoint
  verify --file EXPORT.jsonl [--checkpoints FILE] --key PUB... [--allow-unsigned-tail]
                                              the same, offline, on an export
  checkpoint [-o FILE]                        print the latest signed checkpoint (save it elsewhere)
  prove --seq N                               inclusion proof (JSON) against the latest checkpoint
  prove --from SIZE1 [--to SIZE2]             consistency proof between two tree sizes
  check-proof [--key PUB]... [--checkpoint FILE] PROOF.json|-
                                              verify a proof offline
  export --format jsonl|csv|ocsf [-o FILE] [filters]
                                              jsonl -o FILE also writes FILE.checkpoints
  query [filters] [--limit N] [--format text|jsonl]
  tail [-n N] [-f] [filters] [--format text|jsonl]

Filters: --agent NAME --user ID --server NAME --tool NAME --decision allow|deny|require_approval
         --type ${RECORD_TYPES.join("|")} --since T --until T
         (T is an RFC 3339 time or a duration before now: 30m, 2h, 7d)

Keys (--key, repeatable): a PEM public key file, a file holding a verifier key
(name+hexid+base64), or the verifier key itself. Without --key, the log's own
public key in DIR/keys/ is used, with a warning: a key pinned elsewhere is
stronger evidence.

Signed coverage: with --key (and always with --file) every record must be
covered by a checkpoint signed by a --key key, or verify fails. A live log's
writer signs new records within its checkpoint interval
(${CHECKPOINT_INTERVAL});
--allow-unsigned-tail accepts the records after the last trusted checkpoint
with a warning. A log with records and no trusted checkpoint always fails.
Without --key, records no checkpoint covers are a warning: NOT verified.

Exit codes: 0 intact / success; 1 verification failed (the first problem is
named); 2 unusable input, options or data directory.
`;

type OptionSpec = NonNullable<NonNullable<Parameters<typeof parseArgs>[0]>["options"]>;

type Values = Record<string, string | boolean | (string | boolean)[] | undefined>;

function parse(args: string[], options: OptionSpec): { values: Values; positionals: string[] } {
  try {
    return parseArgs({
      args,
      options: { "data-dir": { type: "string" }, ...options },
      allowPositionals: true,
      strict: true,
    });
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
}

function noPositionals(positionals: string[]): void {
  if (positionals.length > 0) throw new UsageError(`unexpected argument "${positionals[0]}"`);
}

function openReader(dataDir: string | undefined): AuditStore {
  try {
    return AuditStore.openReader(resolveDataDir(dataDir));
  } catch (err) {
    if (err instanceof AuditStoreError) throw new UsageError(err.message);
    throw err;
  }
}

export async function auditCommand(args: string[], io: CliIO): Promise<number> {
  const [sub, ...rest] = args;
  try {
    switch (sub) {
      case "verify":
        return await verify(rest, io);
      case "checkpoint":
        return await checkpoint(rest, io);
      case "prove":
        return prove(rest, io);
      case "check-proof":
        return await checkProof(rest, io);
      case "export":
        return await exportLog(rest, io);
      case "query":
        return query(rest, io);
      case "tail":
        return await tail(rest, io);
      case undefined:
      case "help":
      case "--help":
      case "-h":
        io.stdout(AUDIT_HELP);
        return sub === undefined ? EXIT.unusable : EXIT.ok;
      default:
        throw new UsageError(`unknown command "audit ${sub}"; run warden audit --help`);
    }
  } catch (err) {
    // A store error here is the data directory's (a damaged segment, a missing record): verify names it.
    if (err instanceof KeyError || err instanceof NoteError || err instanceof AuditStoreError) {
      throw new UsageError(err.message);
    }
    throw err;
  }
}

// ---------------------------------------------------------------------------
// verify

/** Trusted keys from --key, else the log's own key (with the warning the contract promises). */
function verifiersFor(keys: string[] | undefined, origin: string | null, dataDir: string | undefined, io: CliIO) {
  if (keys && keys.length > 0) return loadVerifiers(keys, origin);
  const own = logPublicKeyPath(resolveDataDir(dataDir));
  if (!existsSync(own)) {
    throw new UsageError(`no --key given and no log key at ${own}; pass --key with the log's public key`);
  }
  io.stderr(
    `warning: no --key given; using the log's own public key ${own}. Anyone who can write the data directory could have replaced it: a key pinned elsewhere is stronger evidence.\n`,
  );
  return loadVerifiers([own], origin);
}

function summary(r: VerifyResult): string {
  const latest = r.latest
    ? `; latest checkpoint #${r.latest.n} (size ${r.latest.size}) signed by ${r.latest.signedBy.join(", ")}`
    : "";
  return `ok: ${r.records} records, ${r.checkpoints} checkpoints, tree head ${r.size} ${r.root}${latest}\n`;
}

function report(r: VerifyResult, io: CliIO, format: string): number {
  if (format === "json") {
    io.stdout(`${JSON.stringify(r)}\n`);
  } else if (r.ok) {
    io.stdout(summary(r));
  } else {
    const [first, ...more] = r.problems;
    io.stdout(`FAIL: ${first?.message}\n`);
    for (const p of more) io.stdout(`  also: ${p.message}\n`);
  }
  // Only reached with uncovered records when they are tolerated: without --key, or with --allow-unsigned-tail.
  if (r.ok && r.uncovered > 0) {
    const what =
      r.uncovered === r.records
        ? `no signed checkpoint covers ${r.records === 1 ? "this record: it is" : `these ${r.records} records: they are`}`
        : `${tailLabel(r.records - r.uncovered, r.records)} not covered by a signed checkpoint: ${r.uncovered === 1 ? "it is" : "they are"}`;
    io.stderr(
      `warning: ${what} NOT verified (they could have been written or altered by anyone who can write the log). ` +
        `A running writer signs new records within its checkpoint interval (${CHECKPOINT_INTERVAL}); verify again after it\n`,
    );
  }
  return r.ok ? EXIT.ok : EXIT.failed;
}

async function verify(args: string[], io: CliIO): Promise<number> {
  const { values, positionals } = parse(args, {
    key: { type: "string", multiple: true },
    checkpoint: { type: "string" },
    file: { type: "string" },
    checkpoints: { type: "string" },
    format: { type: "string" },
    "allow-unsigned-tail": { type: "boolean" },
  });
  noPositionals(positionals);
  const format = values.format ?? "text";
  const allowUnsignedTail = values["allow-unsigned-tail"] === true;
  if (format !== "text" && format !== "json") throw new UsageError(`--format must be text or json, not "${format}"`);
  const keys = values.key as string[] | undefined;
  const trusted = values.checkpoint ? await readInput(values.checkpoint as string, io) : undefined;
  if (typeof values.file === "string") {
    if (!keys || keys.length === 0)
      throw new UsageError("verify --file needs --key: an export is verified against keys you trust");
    const cpPath = (values.checkpoints as string | undefined) ?? `${values.file}.checkpoints`;
    let jsonl: Buffer;
    let cps: string;
    try {
      jsonl = readFileSync(values.file);
      cps = readFileSync(cpPath, "utf8");
    } catch (err) {
      throw new UsageError(`cannot read the export: ${(err as Error).message}`);
    }
    const source = fileSource(jsonl, cps);
    if (source.checkpoints.length === 0) {
      // Checked first: without a checkpoint there is no origin to name a PEM key after, and nothing signed.
      io.stdout(`FAIL: ${cpPath} holds no checkpoints: nothing signed to verify the export against\n`);
      return EXIT.failed;
    }
    const verifiers = loadVerifiers(keys, originOfCheckpoints(cps));
    // An export is always checked against pinned keys: the same rules as --key on a data directory.
    const result = await verifyLog(source, verifiers, trusted, { requireSignatures: true, allowUnsignedTail });
    return report(result, io, format);
  }
  const store = openReader(values["data-dir"] as string | undefined);
  try {
    // One read transaction: a consistent snapshot even while the gateway appends.
    store.db.exec("BEGIN");
    const source = storeSource(store);
    const verifiers = verifiersFor(keys, source.origin, values["data-dir"] as string | undefined, io);
    // Pinned keys: every record must be signed by one (the log's own key, from the data directory, proves less).
    const pinned = keys !== undefined && keys.length > 0;
    const options = { requireSignatures: pinned, allowUnsignedTail };
    return report(await verifyLog(source, verifiers, trusted, options), io, format);
  } finally {
    if (store.db.inTransaction) store.db.exec("COMMIT");
    store.close();
  }
}

async function checkpoint(args: string[], io: CliIO): Promise<number> {
  const { values, positionals } = parse(args, { output: { type: "string", short: "o" } });
  noPositionals(positionals);
  const store = openReader(values["data-dir"] as string | undefined);
  try {
    const latest = store.latestCheckpoint();
    if (!latest) {
      io.stderr("the log has no checkpoint yet\n");
      return EXIT.failed;
    }
    await writeOut(values.output as string | undefined, [latest.note], io);
    return EXIT.ok;
  } finally {
    store.close();
  }
}

// ---------------------------------------------------------------------------
// proofs

const b64 = (b: Buffer) => b.toString("base64");

function intArg(value: unknown, name: string): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (!/^\d+$/.test(String(value)) || !Number.isSafeInteger(n)) throw new UsageError(`${name} must be a whole number`);
  return n;
}

function prove(args: string[], io: CliIO): number {
  const { values, positionals } = parse(args, {
    seq: { type: "string" },
    from: { type: "string" },
    to: { type: "string" },
  });
  noPositionals(positionals);
  const seq = intArg(values.seq, "--seq");
  const from = intArg(values.from, "--from");
  const to = intArg(values.to, "--to");
  if ((seq === undefined) === (from === undefined)) throw new UsageError("prove needs either --seq N or --from SIZE1");
  const store = openReader(values["data-dir"] as string | undefined);
  try {
    const checkpoints = store.checkpoints().map((c) => ({ ...c, parsed: parseCheckpointText(parseNote(c.note).text) }));
    const latest = checkpoints.at(-1);
    if (!latest) throw new UsageError("the log has no signed checkpoint yet; nothing to prove against");
    const origin = latest.parsed.origin;
    if (seq !== undefined) {
      if (seq >= latest.size) {
        throw new UsageError(
          `record ${seq} is not covered by the latest checkpoint (size ${latest.size}); try again after the next checkpoint`,
        );
      }
      const leaves = packedLeaves(store.leafHashes(latest.size));
      const record = store.record(seq) as Buffer;
      const proof = {
        type: "inclusion",
        origin,
        seq,
        treeSize: latest.size,
        leafHash: b64(hashLeaf(record)),
        record: record.toString("utf8"),
        proof: inclusionProof(leaves, seq, latest.size).map(b64),
        checkpoint: latest.note,
      };
      io.stdout(`${JSON.stringify(proof, null, 2)}\n`);
      return EXIT.ok;
    }
    const size2 = to ?? latest.size;
    const cp2 = checkpoints.filter((c) => c.size === size2).at(-1);
    if (!cp2) {
      const sizes = [...new Set(checkpoints.map((c) => c.size))].slice(-10).join(", ");
      throw new UsageError(
        `no checkpoint signs size ${size2}; a proof must end at a signed tree (recent sizes: ${sizes})`,
      );
    }
    const size1 = from as number;
    if (size1 > size2) throw new UsageError(`--from ${size1} is larger than --to ${size2}`);
    const leaves = packedLeaves(store.leafHashes(size2));
    const cp1 = checkpoints.filter((c) => c.size === size1).at(-1);
    const proof = {
      type: "consistency",
      origin,
      size1,
      size2,
      root1: b64(subtreeHash(leaves, 0, size1)),
      root2: b64(cp2.parsed.root),
      proof: consistencyProof(leaves, size1, size2).map(b64),
      checkpoint1: cp1?.note ?? null,
      checkpoint2: cp2.note,
    };
    io.stdout(`${JSON.stringify(proof, null, 2)}\n`);
    return EXIT.ok;
  } finally {
    store.close();
  }
}

function hashes(v: unknown, what: string): Buffer[] {
  if (!Array.isArray(v)) throw new UsageError(`${what} must be a list of base64 hashes`);
  return v.map((x) => {
    const b = typeof x === "string" ? strictBase64(x) : undefined;
    if (b?.length !== 32) throw new UsageError(`${what}: "${String(x)}" is not a base64 SHA-256 hash`);
    return b as Buffer;
  });
}

async function checkProof(args: string[], io: CliIO): Promise<number> {
  const { values, positionals } = parse(args, {
    key: { type: "string", multiple: true },
    checkpoint: { type: "string" },
  });
  if (positionals.length !== 1) throw new UsageError("check-proof needs one PROOF file (or - for stdin)");
  let p: Record<string, unknown>;
  try {
    p = JSON.parse(await readInput(positionals[0] as string, io));
  } catch (err) {
    if (err instanceof UsageError) throw err;
    throw new UsageError(`${positionals[0]}: not valid JSON: ${(err as Error).message}`);
  }
  const origin = typeof p.origin === "string" ? p.origin : null;
  const verifiers = verifiersFor(
    values.key as string[] | undefined,
    origin,
    values["data-dir"] as string | undefined,
    io,
  );
  const fail = (why: string) => {
    io.stdout(`FAIL: ${why}\n`);
    return EXIT.failed;
  };
  const signed = (note: unknown, what: string) => {
    if (typeof note !== "string") throw new UsageError(`the proof has no ${what}`);
    let c: ReturnType<typeof openCheckpoint>;
    try {
      c = openCheckpoint(note, verifiers);
    } catch (err) {
      const renamed = err instanceof NoteError && err.kind === "unverified" ? renamedKeyHint(note, verifiers) : null;
      if (renamed) throw new NoteError("unverified", `${err instanceof Error ? err.message : err} — ${renamed}`);
      throw err;
    }
    if (origin !== null && c.origin !== origin)
      throw new NoteError("malformed", `${what} is for "${c.origin}", not "${origin}"`);
    return c;
  };
  try {
    if (p.type === "inclusion") {
      const c = signed(p.checkpoint, "checkpoint");
      const seq = Number(p.seq);
      if (p.treeSize !== c.size)
        return fail(`the proof is for size ${String(p.treeSize)} but the checkpoint signs ${c.size}`);
      const [leaf] = hashes([p.leafHash], "leafHash") as [Buffer];
      if (typeof p.record === "string" && !hashLeaf(Buffer.from(p.record, "utf8")).equals(leaf)) {
        return fail("the record does not hash to leafHash: it was altered");
      }
      if (!verifyInclusion(seq, c.size, leaf, hashes(p.proof, "proof"), c.root)) {
        return fail(
          `record ${seq} is not in the tree of size ${c.size} signed by ${c.verifiedBy.map(keyLabel).join(", ")}`,
        );
      }
      io.stdout(
        `ok: record ${seq} is in ${c.origin}'s tree of size ${c.size} (root ${b64(c.root)}), signed by ${c.verifiedBy.map(keyLabel).join(", ")}\n`,
      );
      return EXIT.ok;
    }
    if (p.type === "consistency") {
      const c2 = signed(p.checkpoint2, "checkpoint2");
      const size1 = Number(p.size1);
      const [root1] = hashes([p.root1], "root1") as [Buffer];
      if (p.size2 !== c2.size) return fail(`the proof is for size ${String(p.size2)} but checkpoint2 signs ${c2.size}`);
      if (!verifyConsistency(size1, c2.size, hashes(p.proof, "proof"), root1, c2.root)) {
        return fail(`the tree of size ${c2.size} does not extend the tree of size ${size1} with root ${b64(root1)}`);
      }
      const anchors: { size: number; root: Buffer }[] = [];
      if (p.checkpoint1) anchors.push(signed(p.checkpoint1, "checkpoint1"));
      if (values.checkpoint) anchors.push(signed(await readInput(values.checkpoint as string, io), "--checkpoint"));
      for (const a of anchors) {
        if (a.size !== size1 || !a.root.equals(root1)) {
          return fail(
            `the older checkpoint (size ${a.size}, root ${b64(a.root)}) is not the tree the proof starts from`,
          );
        }
      }
      if (anchors.length === 0) {
        io.stderr(
          `warning: the older tree (size ${size1}, root ${b64(root1)}) is not signed; compare it with a checkpoint you trust, or pass --checkpoint\n`,
        );
      }
      io.stdout(
        `ok: ${c2.origin}'s tree of size ${c2.size} extends the tree of size ${size1}${anchors.length > 0 ? " (signed)" : ""}, signed by ${c2.verifiedBy.map(keyLabel).join(", ")}\n`,
      );
      return EXIT.ok;
    }
  } catch (err) {
    if (err instanceof NoteError) return fail(err.message);
    throw err;
  }
  throw new UsageError(`unknown proof type "${String(p.type)}"; expected inclusion or consistency`);
}

// ---------------------------------------------------------------------------
// export, query, tail

const FILTERS: OptionSpec = {
  agent: { type: "string" },
  user: { type: "string" },
  server: { type: "string" },
  tool: { type: "string" },
  decision: { type: "string" },
  type: { type: "string" },
  since: { type: "string" },
  until: { type: "string" },
};

function timeArg(value: string, name: string): string {
  const ago = parseDuration(value);
  const ms = ago !== undefined ? Date.now() - ago : Date.parse(value);
  if (!Number.isFinite(ms)) throw new UsageError(`${name} must be an RFC 3339 time or a duration such as 30m, 2h, 7d`);
  return new Date(ms).toISOString();
}

interface RecordFilter {
  /** Whether any filter option was given. */
  filtered: boolean;
  match(bytes: Buffer): boolean;
}

/**
 * The filter options as a test on stored records. Records are canonical JSON, so a
 * record whose member has a value contains `"member":<that value's JSON>`: a record
 * without every such needle is skipped unparsed; the others are parsed and checked.
 */
function recordFilter(values: Record<string, unknown>): RecordFilter {
  const checks: ((r: AuditRecord) => boolean)[] = [];
  const needles: Buffer[] = [];
  const eq: [string, string, (r: AuditRecord) => unknown][] = [
    ["agent", "name", (r) => r.agent?.name],
    ["user", "id", (r) => r.user?.id],
    ["server", "server", (r) => r.server],
    ["tool", "tool", (r) => r.tool],
    ["decision", "decision", (r) => r.decision],
    ["type", "type", (r) => r.type],
  ];
  for (const [opt, member, get] of eq) {
    const want = values[opt];
    if (typeof want === "string") {
      checks.push((r) => get(r) === want);
      needles.push(Buffer.from(`"${member}":${JSON.stringify(want)}`));
    }
  }
  if (typeof values.decision === "string" && !["allow", "deny", "require_approval"].includes(values.decision)) {
    throw new UsageError("--decision must be allow, deny or require_approval");
  }
  if (typeof values.type === "string" && !(RECORD_TYPES as readonly string[]).includes(values.type)) {
    throw new UsageError(`--type must be one of ${RECORD_TYPES.join(", ")}`);
  }
  if (typeof values.since === "string") {
    const since = timeArg(values.since, "--since");
    checks.push((r) => typeof r.time === "string" && r.time >= since);
  }
  if (typeof values.until === "string") {
    const until = timeArg(values.until, "--until");
    checks.push((r) => typeof r.time === "string" && r.time < until);
  }
  return {
    filtered: checks.length > 0,
    match(bytes) {
      if (checks.length === 0) return true;
      for (const n of needles) if (!bytes.includes(n)) return false;
      const r = parseRecord(bytes.toString("utf8"));
      return checks.every((c) => c(r));
    },
  };
}

async function writeOut(path: string | undefined, chunks: Iterable<string>, io: CliIO): Promise<void> {
  if (!path || path === "-") {
    for (const c of chunks) io.stdout(c);
    return;
  }
  const out = createWriteStream(path);
  for (const c of chunks) if (!out.write(c)) await once(out, "drain");
  out.end();
  await once(out, "finish");
}

function version(): string {
  return (JSON.parse(readFileSync(new URL("../../../package.json", import.meta.url), "utf8")) as { version: string })
    .version;
}

async function exportLog(args: string[], io: CliIO): Promise<number> {
  const { values, positionals } = parse(args, {
    format: { type: "string" },
    output: { type: "string", short: "o" },
    ...FILTERS,
  });
  noPositionals(positionals);
  const format = values.format;
  if (format !== "jsonl" && format !== "csv" && format !== "ocsf")
    throw new UsageError("export needs --format jsonl, csv or ocsf");
  const filter = recordFilter(values);
  const filtered = filter.filtered;
  const store = openReader(values["data-dir"] as string | undefined);
  try {
    store.db.exec("BEGIN");
    const checkpoints = store.checkpoints();
    const origin = store.meta().origin ?? "";
    const output = values.output as string | undefined;
    const pv = version();
    function* lines(): Generator<string> {
      if (format === "csv") yield csvHeader();
      for (const [, bytes] of store.iterate()) {
        if (!filter.match(bytes)) continue;
        if (format === "jsonl") yield `${bytes.toString("utf8")}\n`;
        else if (format === "csv") yield csvRow(parseRecord(bytes.toString("utf8")));
        else yield `${JSON.stringify(toOcsf(parseRecord(bytes.toString("utf8")), origin, pv))}\n`;
      }
    }
    await writeOut(output, lines(), io);
    if (format === "jsonl" && output && output !== "-") {
      await writeOut(
        `${output}.checkpoints`,
        checkpoints.map((c, i) => (i === 0 ? c.note : `\n${c.note}`)),
        io,
      );
      if (filtered) io.stderr("note: a filtered export cannot be verified on its own; verify needs every record\n");
      else
        io.stderr(
          `wrote ${output} and ${output}.checkpoints; verify with: warden audit verify --file ${output} --key PUB\n`,
        );
    }
    return EXIT.ok;
  } finally {
    if (store.db.inTransaction) store.db.exec("COMMIT");
    store.close();
  }
}

function renderText(bytes: Buffer): string {
  const r = parseRecord(bytes.toString("utf8"));
  const who = [r.agent?.name, r.user?.id ? `(${r.user.id})` : null].filter(Boolean).join(" ");
  const what = r.server || r.tool ? `${r.server ?? "?"}/${r.tool ?? "?"}` : "";
  const decision = r.decision ? `${r.decision}${r.enforced === false ? " (audit mode)" : ""}` : "";
  return `${[r.seq, r.time, r.type, decision, who, what].filter((x) => x !== "").join("  ")}${r.reason ? `  — ${r.reason}` : ""}\n`;
}

function rowFormat(values: Record<string, unknown>): (b: Buffer) => string {
  const format = values.format ?? "text";
  if (format === "jsonl") return (b) => `${b.toString("utf8")}\n`;
  if (format === "text") return renderText;
  throw new UsageError(`--format must be text or jsonl, not "${String(format)}"`);
}

function query(args: string[], io: CliIO): number {
  const { values, positionals } = parse(args, { limit: { type: "string" }, format: { type: "string" }, ...FILTERS });
  noPositionals(positionals);
  const render = rowFormat(values);
  const limit = intArg(values.limit, "--limit") ?? 1000;
  const filter = recordFilter(values);
  const store = openReader(values["data-dir"] as string | undefined);
  try {
    let printed = 0;
    for (const [, bytes] of store.iterate()) {
      if (printed >= limit) break;
      if (!filter.match(bytes)) continue;
      io.stdout(render(bytes));
      printed++;
    }
    return EXIT.ok;
  } finally {
    store.close();
  }
}

async function tail(args: string[], io: CliIO): Promise<number> {
  const { values, positionals } = parse(args, {
    lines: { type: "string", short: "n" },
    follow: { type: "boolean", short: "f" },
    format: { type: "string" },
    interval: { type: "string" },
    ...FILTERS,
  });
  noPositionals(positionals);
  const render = rowFormat(values);
  const n = intArg(values.lines, "-n") ?? 10;
  const interval = intArg(values.interval, "--interval") ?? 250;
  const filter = recordFilter(values);
  const store = openReader(values["data-dir"] as string | undefined);
  try {
    const last: Buffer[] = [];
    let next: number;
    store.db.exec("BEGIN"); // the last n and where to follow on from, from one snapshot
    try {
      next = store.recordCount();
      if (n > 0) {
        for (const [, bytes] of store.iterateBackwards(next)) {
          if (!filter.match(bytes)) continue;
          last.push(bytes);
          if (last.length >= n) break;
        }
      }
    } finally {
      store.db.exec("COMMIT");
    }
    for (const bytes of last.reverse()) io.stdout(render(bytes));
    if (!values.follow) return EXIT.ok;
    // Runs until the process is interrupted.
    for (;;) {
      await new Promise((r) => setTimeout(r, interval));
      for (const [seq, bytes] of store.iterate(next)) {
        if (filter.match(bytes)) io.stdout(render(bytes));
        next = seq + 1;
      }
    }
  } finally {
    store.close();
  }
}
