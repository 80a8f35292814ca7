// MCP over stdio: one JSON-RPC message (or batch) per line, UTF-8, "\n"
// terminated. A line longer than the limit is skipped up to its newline and
// reported once, so one oversized message can neither exhaust memory nor
// desynchronise the stream.
import type { Readable, Writable } from "node:stream";
import { StringDecoder } from "node:string_decoder";

export interface LineHandlers {
  line(text: string): void;
  /**
   * A line was longer than maxBytes; its content was discarded except for its
   * first and last bytes (so a caller can tell which request it answered).
   */
  oversized(bytes: number, sample: { head: string; tail: string }): void;
  end(): void;
}

const SAMPLE_BYTES = 512;

export function readLines(stream: Readable, maxBytes: number, handlers: LineHandlers): void {
  const decoder = new StringDecoder("utf8");
  let buffered = "";
  let bufferedBytes = 0;
  let skipping = false;
  let skippedBytes = 0;
  let head = "";
  let tail = Buffer.alloc(0);
  stream.on("data", (chunk: Buffer) => {
    let start = 0;
    for (;;) {
      const nl = chunk.indexOf(10, start);
      const end = nl < 0 ? chunk.length : nl;
      const part = chunk.subarray(start, end);
      if (skipping) {
        skippedBytes += part.length;
        tail = Buffer.concat([tail, part]).subarray(-SAMPLE_BYTES);
      } else if (bufferedBytes + part.length > maxBytes) {
        skipping = true;
        skippedBytes = bufferedBytes + part.length;
        head = (buffered + decoder.end()).slice(0, SAMPLE_BYTES) || part.subarray(0, SAMPLE_BYTES).toString("utf8");
        tail = Buffer.from(part.subarray(-SAMPLE_BYTES));
        buffered = "";
        bufferedBytes = 0;
      } else {
        buffered += decoder.write(part);
        bufferedBytes += part.length;
      }
      if (nl < 0) break;
      if (skipping) {
        skipping = false;
        handlers.oversized(skippedBytes, { head, tail: tail.toString("utf8") });
        head = "";
        tail = Buffer.alloc(0);
      } else {
        const text = (buffered + decoder.end()).replace(/\r$/, "");
        buffered = "";
        bufferedBytes = 0;
        if (text.trim() !== "") handlers.line(text);
      }
      start = nl + 1;
    }
  });
  stream.on("end", () => {
    const rest = buffered + decoder.end();
    if (!skipping && rest.trim() !== "") handlers.line(rest);
    handlers.end();
  });
  stream.on("error", () => handlers.end());
}

/** Writes messages one per line; JSON.stringify never emits a raw newline. */
export class LineWriter {
  private closed = false;
  constructor(private readonly stream: Writable) {
    stream.on("error", () => {
      this.closed = true;
    });
  }

  write(message: unknown): void {
    if (this.closed) return;
    this.stream.write(`${JSON.stringify(message)}\n`);
  }

  get isClosed(): boolean {
    return this.closed;
  }
}
