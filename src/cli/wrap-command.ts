// `warden wrap`: rewrite an MCP client's config file so that every stdio server
// runs under `warden run`, or put it back (--undo). The transform itself is in
// src/mcp/client-config.ts; this file does the files, the messages and the
// exit codes. docs/wrap.md explains the choices.
import { realpathSync } from "node:fs";
import { chmod, open, readFile, realpath, rename, rm, stat } from "node:fs/promises";
import { basename, delimiter, dirname, isAbsolute, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import {
  type ClientConfig,
  ClientConfigError,
  type ClientKind,
  isValidAgentName,
  readClientConfig,
  sameUnwrapped,
  type TransformResult,
  unwrapClientConfig,
  wrapClientConfig,
} from "../mcp/client-config.js";
import { loadPolicySet } from "../mcp/policy-source.js";
import { formatDiagnostic, PolicyLoadError } from "../policy/diagnostics.js";
import { type CliIO, EXIT, UsageError } from "./io.js";

export const WRAP_HELP = `Usage: warden wrap CONFIG_FILE --policy PATH [--agent NAME] [--data-dir DIR] [--dry-run]
       warden wrap CONFIG_FILE --undo [--dry-run]

Rewrites an MCP client's config file so that every stdio server runs under
"warden run", with its name in the file as --server. Remote (http, sse, url)
servers are left as they are. Knows Claude Desktop (claude_desktop_config.json),
Claude Code (.mcp.json), Cursor (.cursor/mcp.json) and VS Code (.vscode/mcp.json
and the user mcp.json; comments are kept). Only the command and args of the
servers it wraps change; everything else in the file stays as it was.

Options:
  --policy PATH    policy file or directory, repeatable; must load. Stored as an absolute path.
  --agent NAME     the agent name policies select. Default: from the file name
                   (claude-desktop, claude-code, cursor or vscode); required for other files.
  --data-dir DIR   where the audit logs go (default: .warden next to CONFIG_FILE). Each
                   server gets its own log in DIR/AGENT/SERVER: one writer per log.
  --undo           put the servers back: the backup, byte for byte, if the file has not
                   changed since it was wrapped; else unwrap each server in place
  --dry-run        print the new file on stdout (the report goes to stderr); change nothing

The wrapped command is the absolute path of the Node binary running this warden,
and the first argument the absolute path of warden's main.js: desktop clients do
not see your shell's PATH. Run warden wrap again after moving either; it re-wraps
servers whose options changed and leaves the others alone.

Before the first change the original is copied to CONFIG_FILE.warden-backup. An
existing backup is never overwritten. The file is replaced atomically, keeping its mode.

Exit codes: 0 success (also when there was nothing to change); 1 the file could not
be written; 2 unusable input or options.
`;

export const BACKUP_SUFFIX = ".warden-backup";

const CLIENT_NAMES: Record<ClientKind, string> = {
  "claude-desktop": "Claude Desktop",
  "claude-code": "Claude Code",
  cursor: "Cursor",
  vscode: "VS Code",
};

/** warden's entry point, next to this module in dist/src/cli/. */
const MAIN = fileURLToPath(new URL("./main.js", import.meta.url));

export async function wrapCommand(args: string[], io: CliIO): Promise<number> {
  let parsed: ReturnType<typeof parse>;
  try {
    parsed = parse(args);
  } catch (err) {
    throw new UsageError(`${(err as Error).message}\n${WRAP_HELP}`);
  }
  const { values, positionals } = parsed;
  if (values.help) {
    io.stdout(WRAP_HELP);
    return EXIT.ok;
  }
  if (positionals.length !== 1) {
    throw new UsageError(
      positionals.length === 0
        ? "warden wrap needs the client's config file, e.g. warden wrap ~/.cursor/mcp.json --policy policies/"
        : `warden wrap takes one config file, not ${positionals.length}`,
    );
  }
  const file = resolve(positionals[0] as string);
  // Follow a symlink (dotfile managers): the link stays, its target is rewritten.
  const real = await realpath(file).catch((err: NodeJS.ErrnoException) => {
    throw new UsageError(`cannot read ${file}: ${err.code === "ENOENT" ? "no such file" : err.message}`);
  });
  let original: Buffer;
  try {
    original = await readFile(real);
  } catch (err) {
    throw new UsageError(`cannot read ${file}: ${(err as Error).message}`);
  }
  let config: ClientConfig;
  try {
    config = readClientConfig(original.toString("utf8"), file);
  } catch (err) {
    if (err instanceof ClientConfigError) throw new UsageError(`${file}: ${err.message}`);
    throw err;
  }
  const files: Files = { file, real, backup: real + BACKUP_SUFFIX, original };
  if (values.undo) {
    if (values.policy || values.agent !== undefined || values["data-dir"] !== undefined) {
      throw new UsageError("warden wrap --undo takes only the config file (and --dry-run)");
    }
    return undo(config, files, values["dry-run"] === true, io);
  }
  return wrap(config, files, values, io);
}

function parse(args: string[]) {
  return parseArgs({
    args,
    allowPositionals: true,
    strict: true,
    options: {
      policy: { type: "string", multiple: true },
      agent: { type: "string" },
      "data-dir": { type: "string" },
      undo: { type: "boolean" },
      "dry-run": { type: "boolean" },
      help: { type: "boolean", short: "h" },
    },
  });
}

interface Files {
  /** As given (absolute); the client's name for it. */
  file: string;
  /** The file itself, symlinks resolved: what is read, backed up and replaced. */
  real: string;
  backup: string;
  /** The bytes read, which the transform started from. */
  original: Buffer;
}

async function wrap(
  config: ClientConfig,
  files: Files,
  values: ReturnType<typeof parse>["values"],
  io: CliIO,
): Promise<number> {
  const dryRun = values["dry-run"] === true;
  const policies = (values.policy ?? []).map((p) => resolve(p));
  if (policies.length === 0) {
    throw new UsageError("warden wrap needs --policy PATH: the policy file or directory the servers will run under");
  }
  for (const p of policies) {
    await stat(p).catch((err: NodeJS.ErrnoException) => {
      throw new UsageError(`--policy ${p}: ${err.code === "ENOENT" ? "no such file or directory" : err.message}`);
    });
  }
  try {
    await loadPolicySet(policies, {});
  } catch (err) {
    if (!(err instanceof PolicyLoadError)) throw err;
    for (const d of err.diagnostics) io.stderr(`${formatDiagnostic(d)}\n`);
    throw new UsageError(
      "the policies do not load, so warden run would refuse to start every wrapped server; fix them first",
    );
  }
  const agent = values.agent ?? config.kind;
  if (agent === undefined) {
    throw new UsageError(
      `cannot tell from its name which client ${files.file} belongs to; pass --agent NAME (the agent name your policies select)`,
    );
  }
  if (!isValidAgentName(agent)) {
    throw new UsageError(
      `invalid --agent "${agent}": use letters, digits and . _ - : @ /, starting with a letter or digit`,
    );
  }
  const dataDir = resolve(values["data-dir"] ?? join(dirname(files.file), ".warden"));
  const result = wrapClientConfig(config, { node: nodeCommand(), main: MAIN, policies, agent, dataDir });

  const say = dryRun ? io.stderr : io.stdout;
  if (!result.changed) {
    report(result, say);
    say(`no changes: ${files.file} is up to date\n`);
    return EXIT.ok;
  }
  const hasBackup = await exists(files.backup);
  if (hasBackup && result.wrappedBefore === 0) {
    throw new UsageError(
      `${files.backup} is left from an earlier wrap, but no server in ${files.file} runs under warden now, so that backup is not this file's original; move or delete it, then run warden wrap again`,
    );
  }
  if (dryRun) {
    report(result, say);
    io.stdout(result.text);
    return EXIT.ok;
  }
  let madeBackup = false;
  try {
    const mode = (await stat(files.real)).mode & 0o7777;
    if (!hasBackup) {
      await writeFileDurably(files.backup, files.original, mode, "wx");
      madeBackup = true;
    }
    await replaceFile(files, result.text, mode);
  } catch (err) {
    if (madeBackup) await rm(files.backup, { force: true });
    io.stderr(`warden: cannot write ${files.file}: ${(err as Error).message}\n`);
    return EXIT.failed;
  }
  report(result, say);
  say(
    hasBackup
      ? `kept the existing backup ${files.backup} (the file from before the first wrap)\n`
      : `backed up the original to ${files.backup}\n`,
  );
  const client = config.kind ? CLIENT_NAMES[config.kind] : "the client";
  say(
    `wrote ${files.file} (agent ${agent}); restart ${client} to apply. Undo with: warden wrap --undo ${files.file}\n`,
  );
  return EXIT.ok;
}

async function undo(config: ClientConfig, files: Files, dryRun: boolean, io: CliIO): Promise<number> {
  const say = dryRun ? io.stderr : io.stdout;
  const result = unwrapClientConfig(config);
  let backupText: string | undefined;
  try {
    backupText = await readFile(files.backup, "utf8");
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "ENOENT") throw new UsageError(`cannot read ${files.backup}: ${err}`);
  }
  let backupNote = "";
  if (backupText !== undefined) {
    let same = false;
    try {
      same = sameUnwrapped(config, readClientConfig(backupText, files.file));
      if (!same) backupNote = `${files.file} changed since it was wrapped, so the backup is not restored`;
    } catch {
      backupNote = `${files.backup} is not a readable client config, so it is not restored`;
    }
    if (same) {
      const restored = () => {
        for (const s of result.servers) if (s.action === "unwrapped") say(`${"restored".padEnd(17)}${s.name}\n`);
      };
      if (dryRun) {
        restored();
        io.stdout(backupText);
        return EXIT.ok;
      }
      try {
        if (!(await readFile(files.real)).equals(files.original)) throw new Error(CHANGED_MEANWHILE);
        await chmod(files.backup, (await stat(files.real)).mode & 0o7777);
        await rename(files.backup, files.real);
      } catch (err) {
        io.stderr(`warden: cannot restore ${files.file} from ${files.backup}: ${(err as Error).message}\n`);
        return EXIT.failed;
      }
      restored();
      say(`restored ${files.file} from ${files.backup}, byte for byte (the backup is gone)\n`);
      return EXIT.ok;
    }
  }
  if (backupNote) say(`note: ${backupNote}; unwrapping in place instead\n`);
  if (!result.changed) {
    say(`nothing to undo: no server in ${files.file} runs under warden\n`);
    if (backupText !== undefined) say(`${files.backup} is left as it was; delete it if you no longer need it\n`);
    return EXIT.ok;
  }
  if (dryRun) {
    report(result, say);
    io.stdout(result.text);
    return EXIT.ok;
  }
  try {
    await replaceFile(files, result.text, (await stat(files.real)).mode & 0o7777);
  } catch (err) {
    io.stderr(`warden: cannot write ${files.file}: ${(err as Error).message}\n`);
    return EXIT.failed;
  }
  report(result, say);
  say(`wrote ${files.file}\n`);
  if (backupText !== undefined) {
    say(`kept ${files.backup} (the file from before wrapping); delete it before wrapping again\n`);
  }
  return EXIT.ok;
}

function report(result: TransformResult, say: (t: string) => void): void {
  for (const s of result.servers) {
    if (s.action === "not wrapped" && s.reason === "not run by warden") continue;
    let line = `${s.action.padEnd(17)}${s.name}`;
    if (s.action === "not wrapped") line += `: ${s.reason}`;
    else if (s.reason) line += ` (${s.reason})`;
    if (s.dataDir && s.action !== "already wrapped") line += `; audit log in ${s.dataDir}`;
    say(`${line}\n`);
    for (const n of s.notes) say(`  note: ${n}\n`);
  }
}

/**
 * The Node binary to write into the config: absolute, because desktop clients
 * do not see the shell's PATH. process.execPath, unless a `node` on PATH is the
 * same binary by another, usually steadier, name (e.g. /opt/homebrew/bin/node
 * rather than the versioned Cellar path it links to).
 */
export function nodeCommand(env: NodeJS.ProcessEnv = process.env): string {
  const exec = process.execPath;
  let target: string;
  try {
    target = realpathSync(exec);
  } catch {
    return exec;
  }
  const name = process.platform === "win32" ? "node.exe" : "node";
  for (const dir of (env.PATH ?? "").split(delimiter)) {
    if (!isAbsolute(dir)) continue;
    const candidate = join(dir, name);
    try {
      if (realpathSync(candidate) === target) return candidate;
    } catch {
      // not there
    }
  }
  return exec;
}

async function exists(path: string): Promise<boolean> {
  try {
    await stat(path);
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return false;
    throw err;
  }
}

const CHANGED_MEANWHILE =
  "it changed while warden wrap was working (did the client rewrite it?); nothing written, run again";

/** Creates (flag "wx": only if absent) or truncates a file, writes it, gives it the mode and fsyncs it. */
async function writeFileDurably(path: string, data: string | Buffer, mode: number, flag: "w" | "wx"): Promise<void> {
  const fh = await open(path, flag, mode);
  try {
    await fh.writeFile(data);
    await fh.chmod(mode);
    await fh.sync();
  } catch (err) {
    await fh.close();
    await rm(path, { force: true });
    throw err;
  }
  await fh.close();
}

/**
 * Replaces the config atomically (temp file in the same directory, renamed over
 * it), unless it changed since it was read: a client that rewrote it meanwhile
 * must not lose its change.
 */
async function replaceFile(files: Files, text: string, mode: number): Promise<void> {
  const tmp = join(dirname(files.real), `.${basename(files.real)}.warden-${process.pid}.tmp`);
  await writeFileDurably(tmp, text, mode, "w");
  try {
    if (!(await readFile(files.real)).equals(files.original)) {
      throw new Error(CHANGED_MEANWHILE);
    }
    await rename(tmp, files.real);
  } catch (err) {
    await rm(tmp, { force: true });
    throw err;
  }
}
