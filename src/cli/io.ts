// Small helpers the CLI commands share: streams that tests can capture, exit
// codes, and reading input files or stdin.
import { readFileSync } from "node:fs";
import { readFile } from "node:fs/promises";

export interface CliIO {
  stdout: (text: string) => void;
  stderr: (text: string) => void;
  readStdin: () => Promise<string>;
}

/** Exit codes, part of the CLI contract. */
export const EXIT = { ok: 0, failed: 1, unusable: 2 } as const;

export class UsageError extends Error {
  override name = "UsageError";
}

export const processIO: CliIO = {
  stdout: (t) => process.stdout.write(t),
  stderr: (t) => process.stderr.write(t),
  readStdin: async () => {
    const chunks: Buffer[] = [];
    for await (const c of process.stdin) chunks.push(c as Buffer);
    return Buffer.concat(chunks).toString("utf8");
  },
};

/** Reads a file, or stdin for "-". */
export async function readInput(path: string, io: CliIO): Promise<string> {
  if (path === "-") return io.readStdin();
  try {
    return await readFile(path, "utf8");
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    throw new UsageError(`cannot read ${path}: ${e.code === "ENOENT" ? "no such file" : e.message}`);
  }
}

/** The version in package.json. */
export function packageVersion(): string {
  return (JSON.parse(readFileSync(new URL("../../../package.json", import.meta.url), "utf8")) as { version: string })
    .version;
}
