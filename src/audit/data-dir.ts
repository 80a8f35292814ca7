// Where the audit log lives: --data-dir, else WARDEN_DATA_DIR, else ./.warden/.
// A directory that cannot be created is an error, never a silent fallback: a
// stdio wrapper started by a desktop client in an unwritable working directory
// must fail loudly rather than scatter evidence.
import { accessSync, constants, mkdirSync, statSync } from "node:fs";
import { resolve } from "node:path";

export const DEFAULT_DATA_DIR = ".warden";

export class DataDirError extends Error {
  override name = "DataDirError";
}

/** The data directory as an absolute path (not created). */
export function resolveDataDir(flag?: string, env: NodeJS.ProcessEnv = process.env): string {
  const chosen = flag ?? (env.WARDEN_DATA_DIR ? env.WARDEN_DATA_DIR : undefined) ?? DEFAULT_DATA_DIR;
  return resolve(chosen);
}

function source(flag?: string, env: NodeJS.ProcessEnv = process.env): string {
  if (flag !== undefined) return "--data-dir";
  if (env.WARDEN_DATA_DIR) return "WARDEN_DATA_DIR";
  return "the default ./.warden (relative to the working directory)";
}

/** Creates the data directory if needed and checks it is a writable directory. */
export function ensureDataDir(flag?: string, env: NodeJS.ProcessEnv = process.env): string {
  const dir = resolveDataDir(flag, env);
  const fail = (why: string) =>
    new DataDirError(
      `cannot use ${dir} as the audit data directory (from ${source(flag, env)}): ${why}; pass --data-dir DIR or set WARDEN_DATA_DIR to a writable directory`,
    );
  try {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    throw fail(e.code === "EEXIST" || e.code === "ENOTDIR" ? "a file is in the way" : (e.code ?? e.message));
  }
  try {
    if (!statSync(dir).isDirectory()) throw fail("not a directory");
    accessSync(dir, constants.W_OK | constants.X_OK);
  } catch (err) {
    if (err instanceof DataDirError) throw err;
    throw fail(`not writable (${(err as NodeJS.ErrnoException).code})`);
  }
  return dir;
}
