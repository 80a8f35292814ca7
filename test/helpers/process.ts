// Runs a program to completion with its output captured, as many tests do.
import { spawn } from "node:child_process";

export interface ProcessResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** The environment for a child Node process, without the test runner's own settings. */
export function childEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, ...extra };
  delete env.NODE_TEST_CONTEXT;
  delete env.NODE_OPTIONS;
  return env;
}

/**
 * Runs `cmd args`, writes `input` (if any) to its stdin, and resolves when it
 * exits. With `timeoutMs`, a process still running then is killed and the
 * promise rejects with what it printed so far.
 */
export function runProcess(
  cmd: string,
  args: readonly string[],
  o: { input?: string; env?: NodeJS.ProcessEnv; cwd?: string; timeoutMs?: number } = {},
): Promise<ProcessResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, [...args], { stdio: ["pipe", "pipe", "pipe"], env: o.env, cwd: o.cwd });
    let stdout = "";
    let stderr = "";
    child.stdout.setEncoding("utf8").on("data", (d: string) => {
      stdout += d;
    });
    child.stderr.setEncoding("utf8").on("data", (d: string) => {
      stderr += d;
    });
    const timer =
      o.timeoutMs === undefined
        ? undefined
        : setTimeout(() => {
            child.kill("SIGKILL");
            reject(
              new Error(
                `${[cmd, ...args].slice(0, 5).join(" ")} timed out after ${o.timeoutMs} ms\n${stdout}\n${stderr}`,
              ),
            );
          }, o.timeoutMs);
    child.on("error", reject);
    child.on("close", (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
    child.stdin.end(o.input ?? "");
  });
}
