// `warden run`: wrap one stdio MCP server. Everything the client config needs
// can come from flags or environment variables (WARDEN_*), because desktop
// clients start servers with a fixed command line and an unpredictable
// working directory.

import { constants as osConstants } from "node:os";
import { parseArgs } from "node:util";
import { startApprovals } from "../approvals/config.js";
import type { ApprovalService } from "../approvals/service.js";
import { DataDirError } from "../audit/data-dir.js";
import { type AuditLogOptions, AuditStoreError, openAuditLog } from "../audit/log.js";
import { isValidKeyName } from "../audit/note.js";
import { ARGUMENTS_MODES, type ArgumentsPolicy, checkArgumentsPolicy, maskPointerProblem } from "../audit/record.js";
import { KeyError } from "../keys/keys.js";
import type { Identity } from "../mcp/identity.js";
import { DEFAULT_MAX_MESSAGE_BYTES } from "../mcp/jsonrpc.js";
import type { WatchablePolicySource } from "../mcp/policy-source.js";
import { runStdioGateway, SHUTDOWN_GRACE_MS } from "../mcp/stdio-gateway.js";
import { formatDiagnostic, PolicyLoadError } from "../policy/diagnostics.js";
import { parseDuration } from "../policy/duration.js";
import { openPolicySource } from "../supply/bundle-source.js";
import { DockerConfigCredentials } from "../supply/credentials.js";
import { SupplyError } from "../supply/errors.js";
import { isOciReference } from "../supply/reference.js";
import { trustKeysFromEnv } from "../supply/trust.js";
import { type CliIO, EXIT, UsageError } from "./io.js";
import { RUN_OPTIONS } from "./run-options.js";

export const RUN_HELP = `Usage: warden run --policy PATH|oci://REF --agent NAME --server NAME [options] -- COMMAND [ARGS...]

Starts COMMAND as a stdio MCP server and speaks MCP on this process's stdin/stdout,
governing every call with the policies in PATH (or in the signed bundle at
oci://HOST/REPO:TAG or @sha256:…) and recording every decision in the audit log
before the call is forwarded.

Options (each also from an environment variable):
  --policy PATH          policy file or directory, repeatable          WARDEN_POLICY (paths separated by ${process.platform === "win32" ? ";" : ":"})
  --agent NAME           the agent's name, as policies select it      WARDEN_AGENT
  --server NAME          the server's name, as policies select it     WARDEN_SERVER
  --user ID              the user the agent acts for                  WARDEN_USER
  --groups A,B           the user's groups                            WARDEN_GROUPS
  --labels K=V,...       the agent's labels                           WARDEN_LABELS
  --data-dir DIR         where the audit log lives (default ./.warden) WARDEN_DATA_DIR
  --key PRIVKEY          Ed25519 key that signs checkpoints           WARDEN_KEY
                         (default: the log's own key in DIR/keys/)
  --default-decision deny|allow   when no policy applies (default deny)
  --max-message-bytes N  largest message accepted (default 4194304)
  --no-watch             do not reload policy files when they change (nor poll for bundles)

The audit log (as audit: in warden.yaml):
  --audit-arguments digest|full|mask
                         store the arguments' digest only (default),  WARDEN_AUDIT_ARGUMENTS
                         the arguments, or the arguments with the
                         values at --audit-mask replaced
  --audit-mask POINTER   a value to mask: a JSON Pointer (RFC 6901,   WARDEN_AUDIT_MASK
                         * matches every member), repeatable;         (separated by ,)
                         required with mask, e.g. /token
  --audit-origin NAME    the log's name in its checkpoints, fixed     WARDEN_AUDIT_ORIGIN
                         when it is created (default warden/<host>)
  --checkpoint-every-records N
                         sign a checkpoint after N records (1000)     WARDEN_CHECKPOINT_EVERY_RECORDS
  --checkpoint-every-seconds S
                         or S seconds, whichever comes first (10;     WARDEN_CHECKPOINT_EVERY_SECONDS
                         0: by records only)

Signed policy bundles (--policy oci://HOST/REPO:TAG or oci://HOST/REPO@sha256:HEX):
  --trust-key PUB        public key the bundle's signature must verify with,
                         repeatable (required)                        WARDEN_TRUST_KEYS (paths separated by ${process.platform === "win32" ? ";" : ":"})
  --poll-interval DUR    how often to look for a new bundle (default 1m)
  --allow-rollback       accept a bundle older than the one in force
  --insecure-registry    allow plain HTTP to a registry that is not on loopback
  --authfile FILE        registry credentials (Docker config.json format)
  The verified bundle is cached in the data directory: without the registry,
  Warden starts from the cache; with neither, it does not start.

Approvals (calls a policy sends for approval wait here for a human; see docs/approvals.md):
  --approvals-store URL  postgres://... or a SQLite file               WARDEN_APPROVALS_STORE
                         (default: approvals.db in the data directory)
  --approvals-public-url URL  a warden serve sharing the store, for links WARDEN_APPROVALS_PUBLIC_URL
  --approvals-webhook URL     POST each new request there, signed with   WARDEN_APPROVALS_WEBHOOK
                              WARDEN_APPROVALS_WEBHOOK_SECRET (HMAC-SHA256)
  --approvals-webhook-format json|slack                                WARDEN_APPROVALS_WEBHOOK_FORMAT
  --approvers USERS           default approvers for rules naming none:  WARDEN_APPROVERS
                              alice,bob,group:sre
  --no-approvals         no approval channel: require_approval is a deny that says so

Stderr of COMMAND passes through. When COMMAND exits, Warden exits with its code.
When stdin ends, or on SIGTERM, SIGINT or SIGHUP, Warden reads no more requests,
finishes those in flight (after a signal, within ${SHUTDOWN_GRACE_MS / 1000} s; calls held for approval end at
once), records the stop, stops COMMAND and closes the log with a final signed
checkpoint, then exits 0. A second signal exits at once (128 + the signal's number);
the records already written stay durable and verifiable.
`;

export async function runCommand(args: string[], io: CliIO, version: string): Promise<number> {
  // Clients (and terminals, and service managers) stop a stdio server with a signal: the first
  // one stops Warden as the end of its input does, so that the log gets its stop record and a
  // final checkpoint; a second one, while it is stopping, exits at once. Listening from the
  // start: a signal while the policy loads or the log opens stops Warden as soon as it runs.
  const shutdown = new AbortController();
  const onSignal = (signal: NodeJS.Signals) => {
    const log = (m: string) => io.stderr(`warden: ${m}\n`);
    if (!shutdown.signal.aborted) {
      log(
        `${signal}: stopping (requests in flight get ${SHUTDOWN_GRACE_MS / 1000} s, then a final checkpoint); send it again to exit at once`,
      );
      shutdown.abort(signal);
      return;
    }
    log(
      `${signal} again: exiting now, without the stop record and final checkpoint; the records already written are durable and verify, and the next start recovers the log`,
    );
    process.exit(128 + (osConstants.signals[signal] ?? 0));
  };
  for (const s of SHUTDOWN_SIGNALS) process.on(s, onSignal);
  try {
    return await governedRun(args, io, version, shutdown.signal);
  } finally {
    for (const s of SHUTDOWN_SIGNALS) process.off(s, onSignal);
  }
}

async function governedRun(args: string[], io: CliIO, version: string, shutdown: AbortSignal): Promise<number> {
  const dash = args.indexOf("--");
  const own = dash < 0 ? args : args.slice(0, dash);
  const command = dash < 0 ? [] : args.slice(dash + 1);
  let values: Record<string, string | string[] | boolean | undefined>;
  try {
    values = parseArgs({
      args: own,
      allowPositionals: false,
      strict: true,
      options: RUN_OPTIONS,
    }).values;
  } catch (err) {
    throw new UsageError(`${(err as Error).message}\n${RUN_HELP}`);
  }
  if (values.help) {
    io.stdout(RUN_HELP);
    return EXIT.ok;
  }
  const env = process.env;
  const sep = process.platform === "win32" ? ";" : ":";
  // An oci:// reference has colons of its own: WARDEN_POLICY holding one is not split.
  const envPolicy =
    env.WARDEN_POLICY && isOciReference(env.WARDEN_POLICY) ? [env.WARDEN_POLICY] : env.WARDEN_POLICY?.split(sep);
  const policy = (values.policy as string[] | undefined) ?? envPolicy?.filter(Boolean) ?? [];
  const agent = (values.agent as string | undefined) ?? env.WARDEN_AGENT;
  const server = (values.server as string | undefined) ?? env.WARDEN_SERVER;
  if (policy.length === 0) throw new UsageError("warden run needs --policy PATH (or WARDEN_POLICY)");
  if (!agent) throw new UsageError("warden run needs --agent NAME (or WARDEN_AGENT): policies select agents by name");
  if (!server)
    throw new UsageError("warden run needs --server NAME (or WARDEN_SERVER): policies select servers by name");
  if (command.length === 0)
    throw new UsageError(
      "warden run needs the server's command after --, e.g. -- npx -y @modelcontextprotocol/server-filesystem /tmp",
    );
  const defaultDecision = (values["default-decision"] as string | undefined) ?? "deny";
  if (defaultDecision !== "deny" && defaultDecision !== "allow")
    throw new UsageError("--default-decision must be deny or allow");
  const auditSettings = parseAuditSettings(values, env);
  const maxMessageBytes = Number(values["max-message-bytes"] ?? DEFAULT_MAX_MESSAGE_BYTES);
  if (!Number.isSafeInteger(maxMessageBytes) || maxMessageBytes < 1024) {
    throw new UsageError("--max-message-bytes must be a whole number of at least 1024");
  }

  const identity: Identity = { agent: { name: agent }, via: "flags" };
  const labels = (values.labels as string | undefined) ?? env.WARDEN_LABELS;
  if (labels) identity.agent.labels = parseLabels(labels);
  const user = (values.user as string | undefined) ?? env.WARDEN_USER;
  const groups = (values.groups as string | undefined) ?? env.WARDEN_GROUPS;
  if (user || groups) {
    identity.user = {};
    if (user) identity.user.id = user;
    if (groups)
      identity.user.groups = groups
        .split(",")
        .map((g) => g.trim())
        .filter(Boolean);
  }

  const oci = policy.some(isOciReference);
  const trustFlags = (values["trust-key"] as string[] | undefined) ?? [];
  if (!oci && trustFlags.length > 0)
    throw new UsageError("--trust-key applies to an oci:// policy; policy files are not signed");
  const trustKeys = trustFlags.length > 0 ? trustFlags : trustKeysFromEnv(env);
  if (oci && trustKeys.length === 0)
    throw new UsageError(
      "an oci:// policy needs --trust-key PUB (or WARDEN_TRUST_KEYS): the public keys its signature must verify with",
    );
  const pollText = (values["poll-interval"] as string | undefined) ?? "1m";
  const pollIntervalMs = parseDuration(pollText);
  if (pollIntervalMs === undefined || pollIntervalMs < 1000)
    throw new UsageError(`--poll-interval must be a duration of at least 1s, such as 30s or 5m, not "${pollText}"`);

  // Nothing is written to stdout but MCP: every note goes to stderr.
  const log = (m: string) => io.stderr(`warden: ${m}\n`);
  let source: WatchablePolicySource;
  try {
    source = await openPolicySource({
      paths: policy,
      engine: { defaultDecision },
      trustKeys,
      dataDir: (values["data-dir"] as string | undefined) ?? env.WARDEN_DATA_DIR,
      registry: {
        insecure: values["insecure-registry"] === true,
        ...(typeof values.authfile === "string" ? { credentials: new DockerConfigCredentials(values.authfile) } : {}),
      },
      pollIntervalMs: values["no-watch"] ? 0 : pollIntervalMs,
      allowRollback: values["allow-rollback"] === true,
      log,
    });
  } catch (err) {
    if (err instanceof SupplyError) {
      log(`${err.message}\nthe policy bundle cannot be used; refusing to start`);
      return EXIT.unusable;
    }
    if (err instanceof DataDirError) {
      log(`cannot use the data directory: ${err.message}`);
      return EXIT.unusable;
    }
    if (!(err instanceof PolicyLoadError)) throw err;
    for (const d of err.diagnostics) io.stderr(`${formatDiagnostic(d)}\n`);
    log("the policies do not load; refusing to start (fix them, or check with: warden policy validate)");
    return EXIT.unusable;
  }
  let audit: Awaited<ReturnType<typeof openAuditLog>>;
  try {
    audit = await openAuditLog({
      dataDir: (values["data-dir"] as string | undefined) ?? env.WARDEN_DATA_DIR,
      signingKey: (values.key as string | undefined) ?? env.WARDEN_KEY,
      ...auditSettings,
      // One client, calls mostly one at a time: committing on this thread saves the hand-off
      // to a writer thread, and there is little to overlap a commit with.
      writerThread: false,
      warn: log,
    });
  } catch (err) {
    if (err instanceof DataDirError || err instanceof AuditStoreError || err instanceof KeyError) {
      log(`cannot open the audit log: ${err.message}`);
      if (auditSettings.origin !== undefined && /has origin/.test(err.message)) {
        log("the origin is fixed when a log is created: drop --audit-origin, or use a new --data-dir");
      }
      if ((err as AuditStoreError).code === "ELOCKED") {
        log("each warden run keeps its own log: give every wrapped server its own --data-dir (warden wrap does this)");
      }
      return EXIT.unusable;
    }
    throw err;
  }
  let approvals: ApprovalService | undefined;
  if (!values["no-approvals"]) {
    const webhookUrl = (values["approvals-webhook"] as string | undefined) ?? env.WARDEN_APPROVALS_WEBHOOK;
    const format = (values["approvals-webhook-format"] as string | undefined) ?? env.WARDEN_APPROVALS_WEBHOOK_FORMAT;
    if (format !== undefined && format !== "json" && format !== "slack") {
      await audit.close().catch(() => {});
      throw new UsageError("--approvals-webhook-format must be json or slack");
    }
    const publicUrl = (values["approvals-public-url"] as string | undefined) ?? env.WARDEN_APPROVALS_PUBLIC_URL;
    const approvers = (values.approvers as string | undefined) ?? env.WARDEN_APPROVERS;
    try {
      approvals = await startApprovals(
        {
          enabled: true,
          store: (values["approvals-store"] as string | undefined) ?? env.WARDEN_APPROVALS_STORE,
          ...(publicUrl ? { publicUrl: publicUrl.replace(/\/+$/, "") } : {}),
          ...(approvers ? { approvers: parseApprovers(approvers) } : {}),
          ...(webhookUrl
            ? {
                webhook: {
                  url: webhookUrl,
                  secretEnv: "WARDEN_APPROVALS_WEBHOOK_SECRET",
                  format: (format as "json" | "slack" | undefined) ?? "json",
                },
              }
            : {}),
        },
        { dataDir: audit.dataDir, audit, arguments: auditSettings.arguments, log },
      );
    } catch (err) {
      log(`cannot start approvals: ${(err as Error).message}`);
      await audit.close().catch(() => {});
      return EXIT.unusable;
    }
  }
  const [cmd, ...cmdArgs] = command as [string, ...string[]];
  // Once the terminal or the client is gone, a note on stderr can fail (EPIPE, EIO): that must not
  // end the shutdown before the log is closed.
  const ignoreStderrErrors = () => {};
  process.stderr.on("error", ignoreStderrErrors);
  const code = await runStdioGateway({
    server,
    child: { command: cmd, args: cmdArgs },
    identity,
    policy: source,
    audit,
    approvals,
    maxMessageBytes,
    input: process.stdin,
    output: process.stdout,
    log,
    version,
    // A bundle source always "watches": that is how what happened while opening reaches the audit log.
    watchPolicy: oci || !values["no-watch"],
    shutdown,
  }).finally(() => {
    process.stderr.off("error", ignoreStderrErrors);
  });
  return code;
}

/** The signals that stop `warden run` cleanly (SIGHUP: the terminal went away). */
const SHUTDOWN_SIGNALS: readonly NodeJS.Signals[] = ["SIGTERM", "SIGINT", "SIGHUP"];

/** The audit log's settings from flags and WARDEN_* variables, as warden.yaml's audit: section has them. */
export function parseAuditSettings(
  values: Record<string, string | string[] | boolean | undefined>,
  env: NodeJS.ProcessEnv,
): Pick<AuditLogOptions, "origin" | "checkpointEvery"> & { arguments: ArgumentsPolicy } {
  const mode = (values["audit-arguments"] as string | undefined) ?? env.WARDEN_AUDIT_ARGUMENTS ?? "digest";
  if (!(ARGUMENTS_MODES as readonly string[]).includes(mode))
    throw new UsageError(`--audit-arguments must be ${ARGUMENTS_MODES.join(", ")}, not "${mode}"`);
  const mask =
    (values["audit-mask"] as string[] | undefined) ??
    env.WARDEN_AUDIT_MASK?.split(",")
      .map((p) => p.trim())
      .filter(Boolean) ??
    [];
  if (mode === "mask" && mask.length === 0)
    throw new UsageError(
      "--audit-arguments mask needs the values to mask: --audit-mask POINTER (repeatable), a JSON Pointer such as /token or /headers/authorization",
    );
  if (mode !== "mask" && mask.length > 0)
    throw new UsageError(
      `--audit-mask applies to --audit-arguments mask, not ${mode}: add --audit-arguments mask (or drop --audit-mask)`,
    );
  for (const p of mask) {
    const problem = maskPointerProblem(p);
    if (problem) throw new UsageError(`--audit-mask "${p}" is not a JSON Pointer: ${problem}`);
  }
  const argumentsPolicy: ArgumentsPolicy = mode === "mask" ? { mode, mask } : { mode: mode as ArgumentsPolicy["mode"] };
  checkArgumentsPolicy(argumentsPolicy);

  const origin = (values["audit-origin"] as string | undefined) ?? env.WARDEN_AUDIT_ORIGIN;
  if (origin !== undefined && (!isValidKeyName(origin) || origin.length > 255))
    throw new UsageError(
      `--audit-origin "${origin}" cannot name a log: use up to 255 characters without spaces or +, such as example.com/warden/files`,
    );
  const records = wholeNumber(
    "--checkpoint-every-records",
    (values["checkpoint-every-records"] as string | undefined) ?? env.WARDEN_CHECKPOINT_EVERY_RECORDS,
    1,
    1_000_000_000,
  );
  const seconds = wholeNumber(
    "--checkpoint-every-seconds",
    (values["checkpoint-every-seconds"] as string | undefined) ?? env.WARDEN_CHECKPOINT_EVERY_SECONDS,
    0,
    86_400,
  );
  const checkpointEvery =
    records === undefined && seconds === undefined
      ? undefined
      : { ...(records !== undefined ? { records } : {}), ...(seconds !== undefined ? { seconds } : {}) };
  return {
    arguments: argumentsPolicy,
    ...(origin !== undefined ? { origin } : {}),
    ...(checkpointEvery ? { checkpointEvery } : {}),
  };
}

function wholeNumber(name: string, text: string | undefined, min: number, max: number): number | undefined {
  if (text === undefined) return undefined;
  const n = Number(text);
  if (!/^\d+$/.test(text.trim()) || !Number.isSafeInteger(n) || n < min || n > max)
    throw new UsageError(`${name} must be a whole number from ${min} to ${max}, not "${text}"`);
  return n;
}

/** "alice,bob,group:sre" → users and groups. */
export function parseApprovers(text: string): { users: string[]; groups: string[] } {
  const users: string[] = [];
  const groups: string[] = [];
  for (const part of text.split(",")) {
    const t = part.trim();
    if (t === "") continue;
    if (t.startsWith("group:")) groups.push(t.slice("group:".length));
    else users.push(t);
  }
  return { users, groups };
}

export function parseLabels(text: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const part of text.split(",")) {
    const trimmed = part.trim();
    if (trimmed === "") continue;
    const eq = trimmed.indexOf("=");
    if (eq <= 0) throw new UsageError(`label "${trimmed}" must be written KEY=VALUE`);
    out[trimmed.slice(0, eq)] = trimmed.slice(eq + 1);
  }
  return out;
}
