// npm run bench:audit — durable append throughput with 1 and 64 concurrent
// writers, the same durability done as raw SQLite inserts (the baseline), and
// verify speed over a 1M-record log. Prints numbers; asserts nothing.
//
// Environment: AUDIT_BENCH_SECONDS (per throughput run, default 3), AUDIT_BENCH_INLINE=1
// (measure the log with writerThread: false),
// AUDIT_BENCH_VERIFY_RECORDS (default 1000000), AUDIT_BENCH_DIR (default the OS temp dir).
import { mkdtempSync, rmSync } from "node:fs";
import { cpus, tmpdir } from "node:os";
import { join } from "node:path";
import Database from "better-sqlite3";
import { type AuditLog, openAuditLog } from "../src/audit/log.js";
import { LeafHasher } from "../src/audit/merkle.js";
import { type AuditEvent, buildRecord } from "../src/audit/record.js";
import { loadVerifiers, storeSource, verifyLog } from "../src/audit/verify.js";
import { AuditStore } from "../src/store/audit-store.js";

const SECONDS = Number(process.env.AUDIT_BENCH_SECONDS ?? 3);
const VERIFY_RECORDS = Number(process.env.AUDIT_BENCH_VERIFY_RECORDS ?? 1_000_000);
const root = mkdtempSync(join(process.env.AUDIT_BENCH_DIR ?? tmpdir(), "warden-audit-bench-"));

/** A realistic decision record: a tool call with arguments, a policy version, a trace. */
function event(i: number): AuditEvent {
  return {
    type: "decision",
    agent: { name: "dev-assistant", model: "claude-sonnet", vendor: "anthropic" },
    user: { id: "alice@example.com", groups: ["eng"] },
    session: "sess-7f3a",
    server: "github",
    tool: "create_pull_request",
    arguments: { owner: "acme", repo: "widgets", base: "dev", head: `feature-${i}`, title: "Fix the flaky test" },
    decision: "allow",
    enforced: true,
    policy: {
      name: "github-dev-agent",
      version: "sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
      bundle: null,
      set: "sha256:60303ae22b998861bce3b28f33eec1be758a213c86c93c076dbe9f558c11c752",
    },
    rule: { index: 1, name: "pull-requests" },
    reason: "rule 1 (pull-requests) of github-dev-agent allows create_pull_request",
    trace: { traceId: "4bf92f3577b34da6a3ce929d0e0e4736", spanId: "00f067aa0ba902b7" },
    latencyUs: 42,
  };
}

async function durable(log: AuditLog, writers: number, seconds: number): Promise<number> {
  let count = 0;
  const end = performance.now() + seconds * 1000;
  const start = performance.now();
  await Promise.all(
    Array.from({ length: writers }, async (_, w) => {
      let i = w;
      while (performance.now() < end) {
        await log.append(event(i));
        i += writers;
        count++;
      }
    }),
  );
  return count / ((performance.now() - start) / 1000);
}

/** The same rows, the same durability (WAL, synchronous=FULL, one commit per group), no Warden. */
function rawBaseline(dir: string) {
  const db = new Database(join(dir, "raw.db"));
  db.pragma("journal_mode = WAL");
  db.pragma("synchronous = FULL");
  db.exec("CREATE TABLE records (seq INTEGER PRIMARY KEY, leaf BLOB NOT NULL, record BLOB NOT NULL) STRICT");
  const hasher = new LeafHasher();
  const rows = Array.from({ length: 4096 }, (_, i) => {
    const bytes = Buffer.from(buildRecord(event(i), i, Date.now(), { mode: "digest" }).json);
    return { bytes, leaf: hasher.hash(bytes) };
  });
  const ins = db.prepare("INSERT INTO records (seq, leaf, record) VALUES (?, ?, ?)");
  let seq = 0;
  const tx = db.transaction((group: number) => {
    for (let i = 0; i < group; i++, seq++) {
      const r = rows[seq % rows.length] as { bytes: Buffer; leaf: Buffer };
      ins.run(seq, r.leaf, r.bytes);
    }
  });
  return {
    /** Rows per second, committing `group` rows per transaction for `seconds`. */
    run(group: number, seconds: number): number {
      const start = performance.now();
      const end = start + seconds * 1000;
      const first = seq;
      while (performance.now() < end) tx(group);
      return (seq - first) / ((performance.now() - start) / 1000);
    },
    close: () => db.close(),
  };
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2
    ? (s[(s.length - 1) / 2] as number)
    : ((s[s.length / 2 - 1] as number) + (s[s.length / 2] as number)) / 2;
};

const fmt = (n: number) => Math.round(n).toLocaleString("en-US");
const line = (label: string, value: string, note = "") =>
  console.log(`${label.padEnd(46)} ${value.padStart(14)}  ${note}`);

async function main(): Promise<void> {
  console.log(`warden audit benchmark — node ${process.version}, ${cpus().length} cores, data in ${root}`);
  console.log("durable = append() resolved after the SQLite commit (WAL, synchronous=FULL) returned\n");
  const quiet = () => {};

  // Warden and the raw baseline alternate in short rounds, so both see the same disk and
  // the same neighbours; the medians are reported.
  const ROUNDS = 5;
  const inline = process.env.AUDIT_BENCH_INLINE === "1";
  if (inline) console.log("(writerThread: false — SQLite on the caller's thread)");
  for (const writers of [1, 64]) {
    const log = await openAuditLog({
      dataDir: join(root, `append-${writers}`),
      origin: "bench.example/log",
      warn: quiet,
      writerThread: !inline,
    });
    const base = rawBaseline(mkdtempSync(join(root, `raw-${writers}-`)));
    await durable(log, writers, 0.3); // warm-up
    base.run(writers, 0.3);
    const w: number[] = [];
    const r: number[] = [];
    for (let i = 0; i < ROUNDS; i++) {
      w.push(await durable(log, writers, SECONDS / ROUNDS));
      r.push(base.run(writers, SECONDS / ROUNDS));
    }
    await log.close();
    base.close();
    const wm = median(w);
    const rm = median(r);
    const ratios = w.map((x, i) => x / (r[i] as number));
    line(
      `durable appends/s, ${writers} writer${writers > 1 ? "s" : ""}`,
      fmt(wm),
      writers === 64 ? "target ≥ 20,000" : "",
    );
    line(
      `raw SQLite, ${writers} row${writers > 1 ? "s" : ""} per commit`,
      fmt(rm),
      `ratio ${(wm / rm).toFixed(2)}× (rounds ${ratios.map((x) => x.toFixed(2)).join(" ")})${writers === 64 ? ", target ≥ 0.5×" : ""}`,
    );
  }

  // Verify over a large log.
  const vdir = join(root, "verify");
  const log = await openAuditLog({
    dataDir: vdir,
    origin: "bench.example/log",
    warn: quiet,
    checkpointEvery: { records: 10_000, seconds: 0 },
  });
  const fillStart = performance.now();
  let next = 0;
  await Promise.all(
    Array.from({ length: 256 }, async () => {
      while (next < VERIFY_RECORDS) {
        next++;
        await log.append(event(next));
      }
    }),
  );
  await log.close();
  line(
    `filled a ${fmt(VERIFY_RECORDS)}-record log (256 writers)`,
    `${((performance.now() - fillStart) / 1000).toFixed(1)} s`,
  );
  const store = AuditStore.openReader(vdir);
  const verifiers = loadVerifiers([join(vdir, "keys", "log.pub")], "bench.example/log");
  const vstart = performance.now();
  const result = await verifyLog(storeSource(store), verifiers);
  const vsec = (performance.now() - vstart) / 1000;
  store.close();
  if (!result.ok) throw new Error(`verify failed: ${result.problems[0]?.message}`);
  line(
    `verify records/s (${fmt(result.records)} records, ${result.checkpoints} checkpoints)`,
    fmt(result.records / vsec),
    `${vsec.toFixed(2)} s, target ≥ 300,000`,
  );
}

try {
  await main();
} finally {
  rmSync(root, { recursive: true, force: true });
}
