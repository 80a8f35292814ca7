// The upstream servers of `warden serve`. A shared stdio server is one
// process for every session, kept running and restarted with backoff when it
// dies; a server with isolation: session, and every remote server, gets a
// connection per client session, so nothing one user's session does on it can
// be seen by another's.
import type { UpstreamConfig } from "./config.js";
import { ChildProcessTransport } from "./stdio-transport.js";
import { type Transport, UpstreamConnection } from "./upstream.js";
import { UpstreamHandle, type UpstreamMode } from "./upstream-handle.js";

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

class SharedServer {
  readonly handle: UpstreamHandle;
  private transport: ChildProcessTransport | null = null;
  private backoff = MIN_BACKOFF_MS;
  private timer: NodeJS.Timeout | undefined;
  private stopped = false;
  restarts = 0;

  constructor(
    readonly name: string,
    private readonly config: UpstreamConfig,
    private readonly o: PoolOptions,
  ) {
    this.handle = new UpstreamHandle(name, "managed");
  }

  async start(): Promise<void> {
    if (this.stopped) return;
    const transport = new ChildProcessTransport(
      {
        command: this.config.command as string,
        args: this.config.args ?? [],
        env: this.config.env,
        cwd: this.config.cwd,
      },
      this.o.maxMessageBytes,
      (what) => this.o.log(`upstream ${this.name}: ${what}`),
    );
    this.transport = transport;
    const conn = new UpstreamConnection(this.name, transport);
    const startedAt = Date.now();
    conn.onClose = (reason) => {
      this.handle.detach(reason);
      if (this.stopped) return;
      if (Date.now() - startedAt > HEALTHY_AFTER_MS) this.backoff = MIN_BACKOFF_MS;
      this.o.log(`upstream ${this.name} stopped (${reason}); restarting in ${this.backoff} ms`);
      this.o.lifecycle("upstream-exited", `upstream ${this.name}: ${reason}`, {
        exit: transport.exit,
        restartInMs: this.backoff,
      });
      this.schedule();
    };
    try {
      await conn.start();
      const init = await conn.initialize({ name: "warden", version: this.o.version }, GATEWAY_CLIENT_CAPABILITIES);
      this.handle.attach(conn);
      this.o.lifecycle("upstream-started", `upstream ${this.name} is ready`, {
        pid: transport.pid,
        serverInfo: init.serverInfo,
        protocolVersion: init.protocolVersion,
        restarts: this.restarts,
      });
      if (this.restarts > 0) this.o.restarted?.(this.name);
    } catch (err) {
      const reason = `could not start: ${(err as Error).message}`;
      this.handle.detach(reason);
      this.o.log(`upstream ${this.name} ${reason}; retrying in ${this.backoff} ms`);
      this.o.lifecycle("upstream-failed", `upstream ${this.name} ${reason}`, { retryInMs: this.backoff });
      await transport.close().catch(() => {});
      this.schedule();
    }
  }

  private schedule(): void {
    if (this.stopped || this.timer) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.restarts++;
      void this.start();
    }, this.backoff);
    this.backoff = Math.min(MAX_BACKOFF_MS, this.backoff * 2);
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    await this.transport?.close();
  }
}

export class UpstreamPool {
  private readonly shared = new Map<string, SharedServer>();

  constructor(private readonly o: PoolOptions) {
    for (const [name, config] of Object.entries(o.upstreams)) {
      if (config.command !== undefined && (config.isolation ?? "shared") === "shared") {
        this.shared.set(name, new SharedServer(name, config, o));
      }
    }
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
  async open(server: string | null): Promise<{ handles: UpstreamHandle[]; close: () => Promise<void> }> {
    const names = server === null ? this.names : [server];
    const own: { handle: UpstreamHandle; transport: Transport }[] = [];
    const handles: UpstreamHandle[] = [];
    for (const name of names) {
      const shared = this.shared.get(name);
      if (shared) {
        handles.push(shared.handle);
        continue;
      }
      // A dedicated connection: on its own endpoint the client initializes it (passthrough);
      // in the aggregate, Warden does.
      const mode: UpstreamMode = server === null ? "managed" : "passthrough";
      const config = this.o.upstreams[name] as UpstreamConfig;
      const transport =
        config.url !== undefined
          ? this.o.remote(name, config)
          : new ChildProcessTransport(
              { command: config.command as string, args: config.args ?? [], env: config.env, cwd: config.cwd },
              this.o.maxMessageBytes,
              (what) => this.o.log(`upstream ${name}: ${what}`),
            );
      const handle = new UpstreamHandle(name, mode);
      const conn = new UpstreamConnection(name, transport);
      conn.onClose = (reason) => handle.detach(reason);
      try {
        await conn.start();
        if (mode === "managed")
          await conn.initialize({ name: "warden", version: this.o.version }, GATEWAY_CLIENT_CAPABILITIES);
        handle.attach(conn);
      } catch (err) {
        handle.detach(`could not connect: ${(err as Error).message}`);
      }
      own.push({ handle, transport });
      handles.push(handle);
    }
    return {
      handles,
      close: async () => {
        await Promise.all(own.map((o) => o.transport.close().catch(() => {})));
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
