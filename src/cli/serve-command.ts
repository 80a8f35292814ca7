// `warden serve --config warden.yaml`: the gateway as an HTTP service.
import { readFileSync } from "node:fs";
import { parseArgs } from "node:util";
import { startApprovals } from "../approvals/config.js";
import { ApprovalsHttp } from "../approvals/http-api.js";
import type { ApprovalService } from "../approvals/service.js";
import { ApprovalStoreError } from "../approvals/types.js";
import { DataDirError } from "../audit/data-dir.js";
import { AuditStoreError, openAuditLog } from "../audit/log.js";
import { KeyError } from "../keys/keys.js";
import { isLoopback, loadServeConfig, type ServeConfig } from "../mcp/config.js";
import { Governor } from "../mcp/governor.js";
import { createAuthenticator, type HttpAuthConfig } from "../mcp/http-auth.js";
import { HttpGateway } from "../mcp/http-gateway.js";
import { StreamableHttpClientTransport } from "../mcp/http-transport.js";
import { type ReloadEvent, reportReload } from "../mcp/policy-source.js";
import { RateLimiter } from "../mcp/rate-limit.js";
import { UpstreamPool } from "../mcp/upstream-pool.js";
import { formatDiagnostic, PolicyLoadError } from "../policy/diagnostics.js";
import { openPolicySource } from "../supply/bundle-source.js";
import { DockerConfigCredentials } from "../supply/credentials.js";
import { SupplyError } from "../supply/errors.js";
import { type CliIO, EXIT, UsageError } from "./io.js";

export const SERVE_HELP = `Usage: warden serve --config warden.yaml [--port N]

Runs the MCP gateway as an HTTP service: Streamable HTTP at /mcp/<server> (one
upstream) and /mcp (all upstreams, tools named <server>__<tool>), legacy HTTP+SSE
at /sse and /sse/<server>, health at /healthz and readiness at /readyz. Every
request is authenticated, every tool call decided by policy and recorded in the
audit log before it is forwarded. Binds 127.0.0.1 unless the config says otherwise.

Options:
  --config FILE   the gateway configuration (see README, "warden serve")
  --port N        listen on this port instead of the configured one (0: any free port)

Stops cleanly on SIGINT/SIGTERM: sessions are closed, servers stopped, and the log
gets a final signed checkpoint.
`;

export interface RunningGateway {
  url: string;
  gateway: HttpGateway;
  stop(): Promise<void>;
}

/** Starts the gateway from a config; used by the CLI and by tests. Throws PolicyLoadError for config or policy problems. */
export async function startGateway(
  config: ServeConfig,
  o: { version: string; log(m: string): void; portOverride?: number },
): Promise<RunningGateway> {
  const jwt = config.auth.jwt;
  const authConfig: HttpAuthConfig = {};
  if (config.auth.apiKeys) authConfig.apiKeys = config.auth.apiKeys;
  if (config.auth.anonymous) authConfig.anonymous = config.auth.anonymous;
  if (jwt) {
    let jwks: { keys: unknown[] };
    try {
      jwks = JSON.parse(readFileSync(jwt.jwks, "utf8")) as { keys: unknown[] };
    } catch (err) {
      throw new UsageError(`cannot read the JWKS file ${jwt.jwks}: ${(err as Error).message}`);
    }
    authConfig.jwt = { jwks, issuer: jwt.issuer, audience: jwt.audience };
    if (jwt.claims) authConfig.jwt.claims = jwt.claims;
    if (jwt.clockSkewSeconds !== undefined) authConfig.jwt.clockSkewSeconds = jwt.clockSkewSeconds;
  }
  let auth: ReturnType<typeof createAuthenticator>;
  try {
    auth = createAuthenticator(authConfig);
  } catch (err) {
    throw new UsageError(`${config.file}: auth: ${(err as Error).message}`);
  }
  const policy = await openPolicySource({
    paths: config.policy,
    engine: { defaultDecision: config.defaultDecision },
    trustKeys: config.trust?.keys ?? [],
    dataDir: config.dataDir,
    registry: {
      insecure: config.bundle.insecure,
      ...(config.bundle.authFile ? { credentials: new DockerConfigCredentials(config.bundle.authFile) } : {}),
    },
    pollIntervalMs: config.bundle.pollIntervalMs,
    allowRollback: config.bundle.allowRollback,
    log: o.log,
  });
  const audit = await openAuditLog({
    dataDir: config.dataDir,
    signingKey: config.audit.signingKey,
    origin: config.audit.origin,
    arguments: { mode: config.audit.arguments, ...(config.audit.mask ? { mask: config.audit.mask } : {}) },
    checkpointEvery: config.audit.checkpointEvery,
    warn: o.log,
  });
  let approvals: ApprovalService | undefined;
  if (config.approvals.enabled) {
    try {
      approvals = await startApprovals(config.approvals, {
        dataDir: audit.dataDir,
        audit,
        arguments: { mode: config.audit.arguments, ...(config.audit.mask ? { mask: config.audit.mask } : {}) },
        log: o.log,
      });
    } catch (err) {
      await audit.close().catch(() => {});
      throw err instanceof ApprovalStoreError ? err : new ApprovalStoreError((err as Error).message);
    }
  }
  const governor = new Governor({
    policy,
    audit,
    limiter: new RateLimiter(),
    approvals,
  });
  const lifecycle = (event: string, reason: string, detail: Record<string, unknown> = {}) =>
    void governor.record({ type: "lifecycle", reason, detail: { event, ...detail } });
  let gateway: HttpGateway | undefined;
  const pool = new UpstreamPool({
    upstreams: config.upstreams,
    maxMessageBytes: config.limits.maxMessageBytes,
    version: o.version,
    log: o.log,
    lifecycle,
    remote: (name, u) =>
      new StreamableHttpClientTransport(u.url as string, {
        headers: u.headers ?? {},
        maxBytes: config.limits.maxMessageBytes,
        onProtocolError: (what) => o.log(`upstream ${name}: ${what}`),
        onError: (what) => o.log(`upstream ${name}: ${what}`),
      }),
    restarted: (name) => gateway?.toolsChanged(name),
  });
  await pool.start();
  let listenConfig =
    o.portOverride === undefined ? config : { ...config, listen: { ...config.listen, port: o.portOverride } };
  const publicUrl = config.approvals.publicUrl;
  if (approvals && publicUrl && (config.security.allowedOrigins.length > 0 || !isLoopback(config.listen.host))) {
    // The approval page posts from its public origin.
    const origins = [...config.security.allowedOrigins, new URL(publicUrl).origin];
    listenConfig = { ...listenConfig, security: { ...listenConfig.security, allowedOrigins: origins } };
  }
  const approvalsHttp = approvals
    ? new ApprovalsHttp({ service: approvals, auth, record: (e) => governor.record(e) })
    : undefined;
  const g = new HttpGateway({
    config: listenConfig,
    governor,
    pool,
    auth,
    version: o.version,
    log: o.log,
    routes: approvalsHttp ? (req, res, path) => approvalsHttp.handle(req, res, path) : undefined,
  });
  gateway = g;
  const url = await g.listen();
  approvals?.useDefaultPublicUrl(url);
  lifecycle("start", `warden serve listening on ${url}`, {
    config: config.file,
    policySet: policy.current().digest,
    ...(policy.bundle ? { bundle: policy.bundle() } : {}),
    upstreams: pool.names,
  });
  policy.watch(
    (e: ReloadEvent) => void reportReload(e, { log: o.log, lifecycle, toolsChanged: () => g.toolsChanged() }),
  );
  let stopped: Promise<void> | null = null;
  return {
    url,
    gateway: g,
    stop: () => {
      stopped ??= (async () => {
        policy.close();
        // Held calls first: each gets its tool error while its session is still open.
        approvalsHttp?.close();
        await approvals?.close();
        await g.close();
        await pool.close();
        await governor.record({ type: "lifecycle", reason: "warden serve stopped", detail: { event: "stop" } });
        await audit.close();
      })();
      return stopped;
    },
  };
}

export async function serveCommand(args: string[], io: CliIO, version: string): Promise<number> {
  let values: { config?: string; port?: string; help?: boolean };
  try {
    values = parseArgs({
      args,
      strict: true,
      allowPositionals: false,
      options: { config: { type: "string" }, port: { type: "string" }, help: { type: "boolean", short: "h" } },
    }).values;
  } catch (err) {
    throw new UsageError(`${(err as Error).message}\n${SERVE_HELP}`);
  }
  if (values.help) {
    io.stdout(SERVE_HELP);
    return EXIT.ok;
  }
  if (!values.config) throw new UsageError(`warden serve needs --config FILE\n${SERVE_HELP}`);
  const port = values.port === undefined ? undefined : Number(values.port);
  if (port !== undefined && (!Number.isInteger(port) || port < 0 || port > 65_535))
    throw new UsageError("--port must be 0–65535");
  const log = (m: string) => io.stderr(`warden: ${m}\n`);
  let running: RunningGateway;
  let config: ServeConfig;
  try {
    config = loadServeConfig(values.config);
    running = await startGateway(config, { version, log, portOverride: port });
  } catch (err) {
    if (err instanceof PolicyLoadError) {
      for (const d of err.diagnostics) io.stderr(`${formatDiagnostic(d)}\n`);
      log("the configuration or the policies do not load; not starting");
      return EXIT.unusable;
    }
    if (err instanceof SupplyError) {
      log(`${err.message}\nthe policy bundle cannot be used; not starting`);
      return EXIT.unusable;
    }
    if (err instanceof DataDirError || err instanceof AuditStoreError || err instanceof KeyError) {
      log(`cannot open the audit log: ${err.message}`);
      return EXIT.unusable;
    }
    if (err instanceof ApprovalStoreError) {
      log(`cannot start approvals: ${err.message}`);
      return EXIT.unusable;
    }
    if ((err as NodeJS.ErrnoException).code === "EADDRINUSE") {
      log(
        `cannot listen: the address is in use (${(err as Error).message}); choose another port with --port or listen.port`,
      );
      return EXIT.unusable;
    }
    throw err;
  }
  io.stdout(connectionHelp(running.url, config));
  await new Promise<void>((resolve) => {
    const shutdown = () => resolve();
    process.once("SIGINT", shutdown);
    process.once("SIGTERM", shutdown);
  });
  log("stopping: closing sessions, stopping servers, writing a final checkpoint");
  await running.stop();
  return EXIT.ok;
}

function connectionHelp(url: string, config: ServeConfig): string {
  const auth = config.auth.anonymous
    ? `Callers without credentials are the agent "${config.auth.anonymous.agent.name}" (anonymous, loopback only);\nothers send Authorization: Bearer <API key or JWT>.`
    : "Clients send Authorization: Bearer <API key or JWT>.";
  return `Warden gateway listening on ${url}
  MCP (Streamable HTTP):  ${url}/mcp/<server>  (${Object.keys(config.upstreams).join(", ")}), or all servers: ${url}/mcp
  legacy HTTP+SSE:        ${url}/sse/<server>
  health:                 ${url}/healthz   readiness: ${url}/readyz
${config.approvals.enabled ? `  approvals:              ${url}/approvals   (API: ${url}/api/approvals)\n` : ""}${auth}
Audit log: warden audit tail -f --data-dir ${config.dataDir ?? "./.warden"}
Stop with Ctrl-C (a final checkpoint is written).
`;
}
