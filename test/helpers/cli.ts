// Runs the warden command in-process with captured output, as the tests of every
// command group do.
import { main } from "../../src/cli/warden.js";

export interface CliResult {
  code: number;
  out: string;
  err: string;
}

export async function runWarden(argv: readonly string[], stdin = ""): Promise<CliResult> {
  let out = "";
  let err = "";
  const code = await main([...argv], {
    stdout: (t) => {
      out += t;
    },
    stderr: (t) => {
      err += t;
    },
    readStdin: async () => stdin,
  });
  return { code, out, err };
}
