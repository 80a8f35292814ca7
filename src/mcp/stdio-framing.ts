// MCP over stdio: one JSON-RPC message (or batch) per line, UTF-8, "\n"
// terminated. A line longer than the limit is skipped up to its newline and
// reported once, so one oversized message can neither exhaust memory nor
// desynchronise the stream.
import type { Readable, Writable } from "node:stream";
import { StringDecoder } from "node:string_decoder";

export interface LineHandlers {
  line(text: string): void;
  /** A line was longer than maxBytes; its content was discarded. */
  oversized(bytes: number): void;
  end(): void;
}

export function readLines(stream: Readable, maxBytes: number, handlers: LineHandlers): void {
  const decoder = new StringDecoder("utf8");
  let buffered = "";
  let bufferedBytes = 0;
  let skipping = false;
  let skippedBytes = 0;
  stream.on("data", (chunk: Buffer) => {
    let start = 0;
    for (;;) {
      const nl = chunk.indexOf(10, start);
      const end = nl < 0 ? chunk.length : nl;
      const part = chunk.subarray(start, end);
      if (skipping) skippedBytes += part.length;
      else if (bufferedBytes + part.length > maxBytes) {
        skipping = true;
        skippedBytes = bufferedBytes + part.length;
        buffered = "";
        bufferedBytes = 0;
        decoder.end();
      } else {
        buffered += decoder.write(part);
        bufferedBytes += part.length;
      }
      if (nl < 0) break;
      if (skipping) {
        skipping = false;
        handlers.oversized(skippedBytes);
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
