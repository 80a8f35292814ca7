// Server-sent event streams for Streamable HTTP, resumable: every event has an
// id ("<stream>.<n>"), the last events are kept, and a client that reconnects
// with Last-Event-ID gets what it missed on that stream.
import type { ServerResponse } from "node:http";

// What a stream keeps for replay: the last events, up to a count and a size (the
// newest event is always kept, whatever its size).
const KEEP_EVENTS = 1000;
const KEEP_BYTES = 8 * 1024 * 1024;

export class EventStream {
  private readonly events: { seq: number; data: string }[] = [];
  private keptBytes = 0;
  private nextSeq = 1;
  private res: ServerResponse | null = null;
  private finished = false;
  /** When finish() was called (ms since the epoch); 0 while open. */
  finishedAt = 0;

  constructor(readonly id: string) {}

  get attached(): boolean {
    return this.res !== null;
  }

  get done(): boolean {
    return this.finished;
  }

  /** Characters of the events kept for replay. */
  get keptSize(): number {
    return this.keptBytes;
  }

  /** Sends a message as an event (buffered for resumption; written now if a client is attached); "" is a priming event. */
  push(message: unknown): void {
    const seq = this.nextSeq++;
    const data = message === "" ? "" : JSON.stringify(message);
    this.events.push({ seq, data });
    this.keptBytes += data.length;
    while (this.events.length > 1 && (this.events.length > KEEP_EVENTS || this.keptBytes > KEEP_BYTES)) {
      this.keptBytes -= (this.events.shift() as { data: string }).data.length;
    }
    this.res?.write(frame(this.id, seq, data));
  }

  /** Attaches a response; replays events after `afterSeq` (from Last-Event-ID). */
  attach(res: ServerResponse, afterSeq = 0, headers: Record<string, string> = {}): void {
    this.detach();
    res.writeHead(200, {
      "Content-Type": "text/event-stream",
      "Cache-Control": "no-cache, no-transform",
      Connection: "keep-alive",
      ...headers,
    });
    res.flushHeaders();
    // Prime the client: an event id before any message, so it can resume even if the
    // stream drops before the first message (spec 2025-11-25, transports: resumability).
    // Pushed before the response is attached: the replay below writes it, once.
    if (this.events.length === 0 && !this.finished) this.push("");
    this.res = res;
    res.once("close", () => {
      if (this.res === res) this.res = null;
    });
    for (const e of this.events) if (e.seq > afterSeq) res.write(frame(this.id, e.seq, e.data));
    if (this.finished) this.endResponse();
  }

  detach(): void {
    const res = this.res;
    this.res = null;
    if (res && !res.writableEnded) res.end();
  }

  /** No more events; the attached response (if any) ends. Kept for replay until dropped. */
  finish(): void {
    if (!this.finished) this.finishedAt = Date.now();
    this.finished = true;
    this.endResponse();
  }

  private endResponse(): void {
    const res = this.res;
    this.res = null;
    if (res && !res.writableEnded) res.end();
  }

  /** A comment line that keeps proxies from closing an idle stream. */
  keepAlive(): void {
    this.res?.write(": keep-alive\n\n");
  }
}

function frame(stream: string, seq: number, data: string): string {
  return data === "" ? `id: ${stream}.${seq}\ndata: \n\n` : `id: ${stream}.${seq}\nevent: message\ndata: ${data}\n\n`;
}

/** Splits a Last-Event-ID into the stream it names and the last event seen on it. */
export function parseLastEventId(value: string): { stream: string; seq: number } | undefined {
  const dot = value.lastIndexOf(".");
  if (dot <= 0) return undefined;
  const seq = Number(value.slice(dot + 1));
  return Number.isSafeInteger(seq) && seq >= 0 ? { stream: value.slice(0, dot), seq } : undefined;
}
