// `warden run`: Warden as a drop-in stdio MCP server. It starts the real
// server as a child, speaks MCP to the client on its own stdin/stdout, and
// governs everything in between. The child's stderr passes through. When the
// child exits, Warden records it and exits too; when the client closes its
// input, or Warden is asked to shut down (a signal, through `shutdown`), it
// finishes the requests it received, then stops the child and closes the log
// with a final checkpoint.
import { randomUUID } from "node:crypto";
import type { Readable, Writable } from "node:stream";
import type { AuditLog } from "../audit/log.js";
import type { AuditEvent } from "../audit/record.js";
import { type ApprovalChannel, Governor } from "./governor.js";
import type { Identity } from "./identity.js";
import {
  ErrorCode,
  errorResponse,
  idOf,
  type JsonRpcResponse,
  parseFrame,
  type RequestId,
  refusedSubject,
} from "./jsonrpc.js";
import { reportReload, type WatchablePolicySource } from "./policy-source.js";
import { RateLimiter } from "./rate-limit.js";
import { GovernedSession } from "./session.js";
import { LineWriter, readLines } from "./stdio-framing.js";
import { ChildProcessTransport, type ChildSpec } from "./stdio-transport.js";
import { UpstreamConnection } from "./upstream.js";
import { UpstreamHandle } from "./upstream-handle.js";

export interface StdioGatewayOptions {
  server: string;
  child: ChildSpec;
  identity: Identity;
  policy: WatchablePolicySource;
  audit: AuditLog;
  approvals?: ApprovalChannel;
  maxMessageBytes: number;
  input: Readable;
  output: Writable;
  /** Operator-facing messages (stderr). */
  log(message: string): void;
  version: string;
  /** Reload policy files when they change (default true). */
  watchPolicy?: boolean;
  /**
   * Aborted to shut down as at end of input, e.g. on SIGTERM; its reason (the signal's name)
   * is recorded. Requests in flight get `shutdownGraceMs` to finish.
   */
  shutdown?: AbortSignal;
  /** How long requests in flight may take after `shutdown` before they are cancelled (default 5000). */
  shutdownGraceMs?: number;
}

/** How long requests in flight may still take once Warden is asked to shut down. */
export const SHUTDOWN_GRACE_MS = 5000;

/** Runs until the client or the server goes away; resolves with the exit code. */
export async function runStdioGateway(o: StdioGatewayOptions): Promise<number> {
  const sessionId = randomUUID();
  const governor = new Governor({
    policy: o.policy,
    audit: o.audit,
    limiter: new RateLimiter(),
    approvals: o.approvals,
  });
  const writer = new LineWriter(o.output);
  const base = {
    agent: { name: o.identity.agent.name },
    user: o.identity.user ? { id: o.identity.user.id, groups: o.identity.user.groups } : null,
    session: sessionId,
    server: o.server,
  };
  const lifecycle = (event: string, reason: string, detail: Record<string, unknown> = {}) =>
    governor.record({ ...base, type: "lifecycle", reason, detail: { event, ...detail } });
  const refuse = (reason: string, detail: Record<string, unknown>, tool?: string) => {
    const e: AuditEvent = {
      ...base,
      tool: tool ?? null,
      type: "decision",
      decision: "deny",
      enforced: true,
      reason,
      detail: { stage: "protocol", ...detail },
    };
    void governor.record(e);
  };

  const transport = new ChildProcessTransport(o.child, o.maxMessageBytes, (what) =>
    o.log(`upstream ${o.server}: ${what}`),
  );
  const conn = new UpstreamConnection(o.server, transport);
  const handle = new UpstreamHandle(o.server, "passthrough");
  handle.attach(conn);
  const session = new GovernedSession({
    id: sessionId,
    identity: o.identity,
    governor,
    upstreams: [handle],
    aggregate: false,
    send: (m) => writer.write(m),
    serverInfo: { name: "warden", version: o.version },
    log: o.log,
  });

  let finish: (code: number) => void = () => {};
  const finished = new Promise<number>((resolve) => {
    finish = resolve;
  });
  let stopping = false;
  const stop = async (code: number, event: string, reason: string, detail: Record<string, unknown> = {}) => {
    if (stopping) return;
    stopping = true;
    // Stop reading the client: with the server gone there is nothing to serve, and an open
    // stdin would keep this process alive.
    o.input.destroy();
    o.policy.close();
    // Held calls end first (a tool error each, recorded) while the log is open.
    await o.approvals?.close?.();
    session.close();
    await lifecycle(event, reason, detail);
    await transport.close();
    try {
      await o.audit.close();
    } catch (err) {
      o.log(`closing the audit log failed: ${(err as Error).message}`);
      code = code === 0 ? 1 : code;
    }
    finish(code);
  };

  // Set once a shutdown was asked for (a signal): the server exiting then is expected, since a
  // terminal's Ctrl-C signals the whole process group and a client may stop both; Warden goes
  // on with its own stop (see drain).
  let shutdownAsked: string | undefined;
  let upstreamExit: { reason: string; exit: unknown } | undefined;
  conn.onClose = (reason) => {
    if (stopping) return; // Warden stopped it
    // A signal may have come before the listener below was attached (Ctrl-C reaches the server too).
    if (shutdownAsked !== undefined || o.shutdown?.aborted) {
      upstreamExit = { reason, exit: transport.exit };
      o.log(`the upstream server "${o.server}" stopped (${reason}) while Warden was stopping`);
      return;
    }
    const code = transport.exit?.signal ? 1 : (transport.exit?.code ?? 1);
    o.log(`the upstream server "${o.server}" stopped (${reason}); Warden is stopping too`);
    void stop(code, "upstream-exited", `upstream ${o.server}: ${reason}`, { exit: transport.exit });
  };

  try {
    await conn.start();
  } catch (err) {
    o.log(`cannot start the upstream server "${o.server}" (${o.child.command}): ${(err as Error).message}`);
    await lifecycle("upstream-failed", `could not start ${o.child.command}: ${(err as Error).message}`);
    await o.approvals?.close?.();
    await o.audit.close().catch(() => {});
    return 1;
  }
  // Should this process exit without stopping the server (a second signal exits at once), the
  // server is not left running on its own: it gets SIGTERM.
  const orphaned = () => {
    if (transport.exit || transport.pid === undefined) return;
    try {
      process.kill(transport.pid, "SIGTERM");
    } catch {
      // already gone
    }
  };
  process.once("exit", orphaned);
  await lifecycle("start", `warden run governing ${o.server}`, {
    command: [o.child.command, ...o.child.args],
    pid: transport.pid,
    policySet: o.policy.current().digest,
    ...(o.policy.bundle ? { bundle: o.policy.bundle() } : {}),
    identity: o.identity.via,
  });

  if (o.watchPolicy !== false) {
    o.policy.watch((e) => void reportReload(e, { log: o.log, lifecycle, toolsChanged: () => session.toolsChanged() }));
  }
  // Requests being handled, by id, and those a stop answered itself because they did not finish
  // within the shutdown grace period (their late answers are dropped).
  const open = new Map<RequestId, number>();
  const answeredAtStop = new Set<RequestId>();
  const onLine = async (text: string) => {
    const parsed = parseFrame(text, o.maxMessageBytes);
    if (!parsed.ok) {
      writer.write(parsed.response);
      const subject = refusedSubject(parsed.value);
      refuse(
        `message refused: ${parsed.why}`,
        { error: parsed.response.error?.message, method: subject.method },
        subject.tool,
      );
      return;
    }
    // Requests (not notifications, nor the client's answers to the server), by id.
    const ids = parsed.messages.flatMap((m) => {
      const id = idOf(m);
      return id !== null && typeof (m as { method?: unknown }).method === "string" ? [id] : [];
    });
    for (const id of ids) open.set(id, (open.get(id) ?? 0) + 1);
    const answers = await Promise.all(
      parsed.messages.map((m) =>
        session.handle(m).catch((err): JsonRpcResponse => {
          o.log(`internal error: ${(err as Error).stack ?? err}`);
          return errorResponse(
            idOf(m),
            ErrorCode.InternalError,
            "internal error in Warden; the call was not forwarded",
          );
        }),
      ),
    );
    for (const id of ids) {
      const n = (open.get(id) ?? 1) - 1;
      if (n > 0) open.set(id, n);
      else open.delete(id);
    }
    // Requests a stop that could not wait for them has answered already.
    const responses = answers.filter(
      (a): a is JsonRpcResponse => a !== undefined && !(a.id !== null && answeredAtStop.has(a.id)),
    );
    if (responses.length === 0) return;
    writer.write(parsed.batch ? responses : responses[0]);
  };

  // Lines being handled, so that end of input can wait for them. A line's promise settles once its
  // answer is written (or there is none).
  const pending = new Set<Promise<void>>();
  let ended = false;
  const grace = o.shutdownGraceMs ?? SHUTDOWN_GRACE_MS;
  // Resolved when the wait for the requests in flight is cut short: `grace` ms after a shutdown signal.
  let cutShort: () => void = () => {};
  const cut = new Promise<void>((resolve) => {
    cutShort = resolve;
  });
  let graceTimer: NodeJS.Timeout | undefined;
  // End of input, or a shutdown signal: the client will send nothing more (or Warden reads nothing
  // more), but it may still read, as a script does that writes its requests and closes stdin. Like
  // a server, Warden handles to the end every request it received (decided, recorded, forwarded if
  // allowed, answered) and only then stops. The wait is bounded: forwarded requests have the
  // session's request timeout, after a signal the whole wait has `grace` ms, and if the server exits
  // meanwhile the upstream-exited path stops Warden (after a signal, this drain goes on).
  const drain = async (reason: string) => {
    if (ended || stopping) return;
    ended = true;
    // Requests from the server to the client (sampling, elicitation, roots) can no longer be answered.
    session.clientInputEnded();
    // Calls held for approval are not waited for: an approval can take hours (or need an elicitation
    // answer the client can no longer send), and a client that is gone must not keep Warden and its
    // server running. They end as on any stop (expired, a tool error each, recorded while the log is
    // open), and calls still being decided that need an approval are refused at once.
    await o.approvals?.close?.();
    const inTime = await Promise.race([Promise.allSettled(pending).then(() => true), cut.then(() => false)]);
    let cancelled = 0;
    if (!inTime && !stopping) {
      // The grace period is over. What is still in flight is cancelled as if the client had sent
      // notifications/cancelled (the server is told; the outcome is recorded as cancelled, before
      // the stop record) and answered here with an error, since the client may still be reading.
      const why = `Warden is stopping (${shutdownAsked}): the request did not finish within ${grace} ms and was cancelled`;
      cancelled = open.size;
      o.log(`${cancelled} request(s) did not finish within ${grace} ms of ${shutdownAsked}; cancelling them`);
      for (const id of open.keys()) {
        answeredAtStop.add(id);
        void session.handle({
          jsonrpc: "2.0",
          method: "notifications/cancelled",
          params: { requestId: id, reason: why },
        });
        writer.write(errorResponse(id, ErrorCode.InternalError, why));
      }
      // Anything else (a request still being decided) ends with the session.
      session.close();
      const settle = new Promise<void>((resolve) => setTimeout(resolve, 1000).unref());
      await Promise.race([Promise.allSettled(pending), settle]);
    }
    clearTimeout(graceTimer);
    const stopDetail = {
      ...(shutdownAsked !== undefined ? { signal: shutdownAsked } : {}),
      ...(cancelled > 0 ? { cancelled } : {}),
      ...(upstreamExit ? { upstream: upstreamExit } : {}),
    };
    await stop(0, "stop", reason, stopDetail);
  };

  // A shutdown signal: read nothing more (a request that was not read is not answered, as with any
  // server that stops), then drain as at end of input, with `grace` ms for the requests in flight.
  // If input had already ended, the drain under way gets the same bound.
  const onShutdown = () => {
    if (stopping || shutdownAsked !== undefined) return;
    const signal = o.shutdown?.reason;
    shutdownAsked = typeof signal === "string" ? signal : "a shutdown request";
    graceTimer = setTimeout(cutShort, grace);
    o.input.destroy();
    void drain(`warden run stopped on ${shutdownAsked}`);
  };

  readLines(o.input, o.maxMessageBytes, {
    line: (text) => {
      const p = onLine(text);
      pending.add(p);
      void p.finally(() => pending.delete(p));
    },
    oversized: (bytes) => {
      writer.write(
        errorResponse(
          null,
          ErrorCode.RequestTooLarge,
          `message of ${bytes} bytes is over the ${o.maxMessageBytes}-byte limit; not processed`,
        ),
      );
      refuse(`message over the size limit (${bytes} bytes)`, { bytes });
    },
    end: () => void drain("the client closed the connection"),
  });
  if (o.shutdown?.aborted) onShutdown();
  else o.shutdown?.addEventListener("abort", onShutdown, { once: true });

  const code = await finished;
  process.off("exit", orphaned);
  o.shutdown?.removeEventListener("abort", onShutdown);
  clearTimeout(graceTimer);
  return code;
}
