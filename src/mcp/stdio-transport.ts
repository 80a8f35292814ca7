// Transports over stdio: a child process (the upstream server Warden starts),
// and Warden's own stdin/stdout (the client side of `warden run`).
import { type ChildProcess, spawn } from "node:child_process";
import type { Readable, Writable } from "node:stream";
import { checkMessage, type JsonRpcMessage } from "./jsonrpc.js";
import { LineWriter, readLines } from "./stdio-framing.js";
import type { Transport } from "./upstream.js";

export interface ChildSpec {
  command: string;
  args: readonly string[];
  env?: Record<string, string>;
  cwd?: string;
  /** Where the child's stderr goes: passed through (default) or dropped. */
  stderr?: "inherit" | "ignore";
}

/** Messages from a peer that are not JSON-RPC are reported here, never acted on. */
export type ProtocolErrorHandler = (what: string) => void;

/** The id of a JSON-RPC response in a fragment of one, if it shows one unambiguously. */
export function responseIdIn(fragment: string): number | undefined {
  const ids = [...fragment.matchAll(/"id"\s*:\s*(\d{1,15})\s*[,}]/g)].map((m) => Number(m[1]));
  return ids.length === 1 ? ids[0] : undefined;
}

/** The upstream server as a child process speaking MCP on its stdin/stdout. */
export class ChildProcessTransport implements Transport {
  onmessage?: (message: JsonRpcMessage) => void;
  onclose?: (reason: string) => void;
  private child: ChildProcess | undefined;
  private writer: LineWriter | undefined;
  private ended = false;
  /** Exit code or signal, once the child has exited. */
  exit: { code: number | null; signal: NodeJS.Signals | null } | null = null;

  constructor(
    private readonly spec: ChildSpec,
    private readonly maxBytes: number,
    private readonly onProtocolError: ProtocolErrorHandler = () => {},
  ) {}

  get pid(): number | undefined {
    return this.child?.pid;
  }

  start(): Promise<void> {
    return new Promise((resolve, reject) => {
      const child = spawn(this.spec.command, [...this.spec.args], {
        stdio: ["pipe", "pipe", this.spec.stderr ?? "inherit"],
        env: { ...process.env, ...this.spec.env },
        cwd: this.spec.cwd,
      });
      this.child = child;
      child.once("error", (err) => {
        this.finish(`could not start ${this.spec.command}: ${err.message}`);
        reject(err);
      });
      child.once("spawn", () => {
        this.writer = new LineWriter(child.stdin as Writable);
        readLines(child.stdout as Readable, this.maxBytes, {
          line: (text) => this.line(text),
          oversized: (bytes, sample) => {
            this.onProtocolError(`the server sent a ${bytes}-byte message, over the limit; dropped`);
            // If the sample shows which request it answered, answer that request with an error
            // instead of leaving it waiting for ever.
            const id = responseIdIn(sample.head) ?? responseIdIn(sample.tail);
            if (id !== undefined) {
              this.onmessage?.({
                jsonrpc: "2.0",
                id,
                error: {
                  code: -32002,
                  message: `the server's answer was ${bytes} bytes, over the ${this.maxBytes}-byte limit; dropped`,
                },
              });
            }
          },
          end: () => {},
        });
        resolve();
      });
      child.once("exit", (code, signal) => {
        this.exit = { code, signal };
        this.finish(
          signal ? `the server process was killed by ${signal}` : `the server process exited with code ${code}`,
        );
      });
    });
  }

  private line(text: string): void {
    let value: unknown;
    try {
      value = JSON.parse(text);
    } catch {
      this.onProtocolError(`the server wrote a line that is not JSON: ${text.slice(0, 120)}`);
      return;
    }
    for (const m of Array.isArray(value) ? value : [value]) {
      const problem = checkMessage(m);
      if (problem) this.onProtocolError(`the server sent an invalid message (${problem})`);
      else this.onmessage?.(m as JsonRpcMessage);
    }
  }

  send(message: JsonRpcMessage): void {
    this.writer?.write(message);
  }

  private finish(reason: string): void {
    if (this.ended) return;
    this.ended = true;
    this.onclose?.(reason);
  }

  /** Closes stdin, then escalates to SIGTERM and SIGKILL if the server does not exit. */
  async close(graceMs = 2000): Promise<void> {
    const child = this.child;
    if (!child || this.exit) return;
    const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
    child.stdin?.end();
    const timer = (ms: number) => new Promise<"timeout">((r) => setTimeout(() => r("timeout"), ms).unref());
    if ((await Promise.race([exited, timer(graceMs)])) === "timeout") {
      child.kill("SIGTERM");
      if ((await Promise.race([exited, timer(graceMs)])) === "timeout") {
        child.kill("SIGKILL");
        await exited;
      }
    }
  }
}
