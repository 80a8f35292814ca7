// The upstream servers of `warden serve`. A shared stdio server is one
// process for every session, kept running and restarted with backoff when it
// dies; a server with isolation: session, and every remote server, gets a
// connection per client session, so nothing one user's session does on it can
// be seen by another's. Per-session connections that Warden initialized (the
// aggregate endpoint) are kept up like shared servers; one the client
// initialized (the server's own endpoint) ends the client's session when lost.
import type { UpstreamConfig } from "./config.js";
import { SESSION_EXPIRED } from "./http-transport.js";
import { ChildProcessTransport } from "./stdio-transport.js";
import { type Transport, UpstreamConnection } from "./upstream.js";
import { UpstreamHandle } from "./upstream-handle.js";

export interface PoolOptions {
  upstreams: Record<string, UpstreamConfig>;
  maxMessageBytes: number;
  version: string;
  log(message: string): void;
  lifecycle(event: string, reason: string, detail: Record<string, unknown>): void;
  /** Builds the transport for a remote (url) upstream. */
  remote(name: string, config: UpstreamConfig): Transport;
  /** Called after a shared server (re)started, so sessions can re-list tools. */
  restarted?(name: string): void;
}

/** What Warden declares to servers it initializes itself. Not roots: a shared server has no one client's roots. */
const GATEWAY_CLIENT_CAPABILITIES = { sampling: {}, elicitation: {} };
const MIN_BACKOFF_MS = 500;
const MAX_BACKOFF_MS = 30_000;
const HEALTHY_AFTER_MS = 60_000;
/** A session that expires sooner than this after it was made is not renewed at once. */
const QUICK_EXPIRY_MS = 1_000;

/**
 * A connection Warden initializes itself and keeps up: when it closes (the
 * process died, the remote server forgot the session) a new one is made and
 * initialized, after a backoff that grows while attempts keep failing. Shared
 * stdio servers are kept this way, and so are the per-session connections of
 * the aggregate endpoint.
 */
class SupervisedConnection {
  private transport: Transport | null = null;
  private backoff = MIN_BACKOFF_MS;
  private timer: NodeJS.Timeout | undefined;
  private stopped = false;
  /** Attempts in a row that failed: only the first is recorded, so a server that stays down fills no log. */
  private failures = 0;
  restarts = 0;

  constructor(
    readonly handle: UpstreamHandle,
    private readonly makeTransport: () => Transport,
    private readonly o: PoolOptions,
    /** After a restart: sessions re-list the tools, which may have changed. */
    private readonly restarted: () => void,
    /** Added to lifecycle records (the session, for a per-session connection). */
    private readonly scope: Record<string, unknown> = {},
  ) {}

  private get name(): string {
    return this.handle.name;
  }

  async start(): Promise<void> {
    if (this.stopped) return;
    const transport = this.makeTransport();
    this.transport = transport;
    const conn = new UpstreamConnection(this.name, transport);
    let readyAt = 0;
    conn.onClose = (reason) => {
      this.handle.detach(reason);
      // Before it was ready, the failed start below reports and retries.
      if (this.stopped || readyAt === 0) return;
      if (Date.now() - readyAt > HEALTHY_AFTER_MS) this.backoff = MIN_BACKOFF_MS;
      // A server that forgot the session is up: a new session right away, unless the last one
      // expired as soon as it was made (then the backoff keeps Warden from hammering it).
      const delay = reason === SESSION_EXPIRED && Date.now() - readyAt > QUICK_EXPIRY_MS ? 0 : this.backoff;
      const again = transport instanceof ChildProcessTransport ? "restarting" : "reconnecting";
      this.o.log(`upstream ${this.name} stopped (${reason}); ${again} in ${delay} ms`);
      this.o.lifecycle("upstream-exited", `upstream ${this.name}: ${reason}`, {
        ...this.scope,
        ...processDetail(transport),
        restartInMs: delay,
      });
      this.schedule(delay);
    };
    try {
      await conn.start();
      const init = await conn.initialize({ name: "warden", version: this.o.version }, GATEWAY_CLIENT_CAPABILITIES);
      if (this.stopped) return;
      readyAt = Date.now();
      this.handle.attach(conn);
      this.o.lifecycle("upstream-started", `upstream ${this.name} is ready`, {
        ...this.scope,
        ...processDetail(transport),
        serverInfo: init.serverInfo,
        protocolVersion: init.protocolVersion,
        restarts: this.restarts,
        ...(this.failures > 0 ? { failedAttempts: this.failures } : {}),
      });
      this.failures = 0;
      if (this.restarts > 0) this.restarted();
    } catch (err) {
      const reason = `could not start: ${(err as Error).message}`;
      this.handle.detach(reason);
      if (this.stopped) return;
      this.o.log(`upstream ${this.name} ${reason}; retrying in ${this.backoff} ms`);
      if (this.failures++ === 0) {
        this.o.lifecycle("upstream-failed", `upstream ${this.name} ${reason}`, {
          ...this.scope,
          retryInMs: this.backoff,
          note: "later failures in a row go to stderr only; upstream-started counts them (failedAttempts)",
        });
      }
      await transport.close().catch(() => {});
      this.schedule(this.backoff);
    }
  }

  private schedule(delay: number): void {
    if (this.stopped || this.timer) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.restarts++;
      void this.start();
    }, delay);
    if (delay > 0) this.backoff = Math.min(MAX_BACKOFF_MS, this.backoff * 2);
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    await this.transport?.close();
  }
}

/** The process of a stdio upstream, for lifecycle records. */
function processDetail(t: Transport): Record<string, unknown> {
  return t instanceof ChildProcessTransport ? { pid: t.pid, exit: t.exit } : {};
}

/** What a session hears about its own upstream connections. */
export interface SessionUpstreamEvents {
  /**
   * A connection the client initialized itself (the server's own endpoint) is gone: the
   * server's state for this client is lost, so the session has to end and the client start
   * a new one (as it must when a Streamable HTTP server answers 404 for its session).
   */
  lost(server: string, reason: string): void;
  /** A connection Warden keeps for the session was made again: the tool list may differ. */
  restarted(server: string): void;
}

export class UpstreamPool {
  private readonly shared = new Map<string, SupervisedConnection>();

  constructor(private readonly o: PoolOptions) {
    for (const [name, config] of Object.entries(o.upstreams)) {
      if (config.command !== undefined && (config.isolation ?? "shared") === "shared") {
        const handle = new UpstreamHandle(name, "managed", true);
        this.shared.set(
          name,
          new SupervisedConnection(
            handle,
            () => this.transportFor(name, config),
            o,
            () => o.restarted?.(name),
          ),
        );
      }
    }
  }

  private transportFor(name: string, config: UpstreamConfig): Transport {
    return config.url !== undefined
      ? this.o.remote(name, config)
      : new ChildProcessTransport(
          { command: config.command as string, args: config.args ?? [], env: config.env, cwd: config.cwd },
          this.o.maxMessageBytes,
          (what) => this.o.log(`upstream ${name}: ${what}`),
        );
  }

  get names(): string[] {
    return Object.keys(this.o.upstreams);
  }

  has(name: string): boolean {
    return Object.hasOwn(this.o.upstreams, name);
  }

  /** Starts the shared servers; one that fails keeps retrying and is reported unready. */
  async start(): Promise<void> {
    await Promise.all([...this.shared.values()].map((s) => s.start()));
  }

  /**
   * The handles a new session uses: one server (its endpoint) or all of them
   * (the aggregate endpoint). Per-session connections are created here and
   * closed by the returned cleanup.
   */
  async open(
    server: string | null,
    events: SessionUpstreamEvents,
    session: string,
  ): Promise<{ handles: UpstreamHandle[]; close: () => Promise<void> }> {
    const names = server === null ? this.names : [server];
    const own: (() => Promise<void>)[] = [];
    const handles: UpstreamHandle[] = [];
    const starting: Promise<void>[] = [];
    for (const name of names) {
      const shared = this.shared.get(name);
      if (shared) {
        handles.push(shared.handle);
        continue;
      }
      const config = this.o.upstreams[name] as UpstreamConfig;
      if (server === null) {
        // In the aggregate, Warden initializes the session's connection itself, and keeps it up.
        const handle = new UpstreamHandle(name, "managed");
        const kept = new SupervisedConnection(
          handle,
          () => this.transportFor(name, config),
          this.o,
          () => events.restarted(name),
          { session },
        );
        starting.push(kept.start());
        own.push(() => kept.stop());
        handles.push(handle);
        continue;
      }
      // On its own endpoint the client initializes the connection (passthrough): it cannot be
      // made again behind the client's back, so losing it ends the session.
      const handle = new UpstreamHandle(name, "passthrough");
      const transport = this.transportFor(name, config);
      const conn = new UpstreamConnection(name, transport);
      let closing = false;
      conn.onClose = (reason) => {
        handle.detach(reason);
        if (closing) return;
        this.o.lifecycle("upstream-exited", `upstream ${name}: ${reason}; the session ends`, {
          session,
          ...processDetail(transport),
        });
        events.lost(name, reason);
      };
      try {
        await conn.start();
        handle.attach(conn);
      } catch (err) {
        handle.detach(`could not connect: ${(err as Error).message}`);
      }
      own.push(async () => {
        closing = true;
        await transport.close();
      });
      handles.push(handle);
    }
    await Promise.all(starting);
    return {
      handles,
      close: async () => {
        await Promise.all(own.map((close) => close().catch(() => {})));
      },
    };
  }

  /** Readiness: every shared server is up. Per-session servers are started on demand. */
  status(): { ready: boolean; upstreams: Record<string, string> } {
    const upstreams: Record<string, string> = {};
    let ready = true;
    for (const name of this.names) {
      const s = this.shared.get(name);
      if (!s) {
        upstreams[name] = this.o.upstreams[name]?.url !== undefined ? "remote (per session)" : "per session";
        continue;
      }
      const why = s.handle.unavailable;
      upstreams[name] = why === null ? "ready" : `unavailable: ${why}`;
      if (why !== null) ready = false;
    }
    return { ready, upstreams };
  }

  async close(): Promise<void> {
    await Promise.all([...this.shared.values()].map((s) => s.stop()));
  }
}
