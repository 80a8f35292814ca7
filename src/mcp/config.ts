// The `warden serve` configuration file (warden.yaml). Read with the same
// strict, position-reporting schema reader as policies: an unknown or misspelt
// setting is an error with its line and column, never silently ignored.
// Relative paths are relative to the config file's directory.
import { readFileSync } from "node:fs";
import { dirname, resolve } from "node:path";
import { isMap } from "yaml";
import { APPROVALS_SCHEMA, type ApprovalsConfig, readApprovalsConfig } from "../approvals/config.js";
import { ARGUMENTS_MODES, maskPointerProblem } from "../audit/record.js";
import { type Diagnostic, PolicyLoadError } from "../policy/diagnostics.js";
import { durationCheck, parseDuration } from "../policy/duration.js";
import {
  type Field,
  INVALID,
  type NodeIndex,
  type ObjectSchema,
  readNode,
  type Schema,
  type StringSchema,
} from "../policy/schema.js";
import { parseYamlSource } from "../policy/yaml-source.js";
import { SCHEME as OCI_SCHEME, parseReference } from "../supply/reference.js";
import { DEFAULT_MAX_MESSAGE_BYTES } from "./jsonrpc.js";
import { AGGREGATE_SEPARATOR } from "./session.js";

export interface UpstreamConfig {
  /** A stdio server Warden starts... */
  command?: string;
  args?: string[];
  env?: Record<string, string>;
  cwd?: string;
  /** shared: one process for all sessions (default); session: one process per client session. */
  isolation?: "shared" | "session";
  /** ...or a remote Streamable HTTP server. */
  url?: string;
  headers?: Record<string, string>;
}

export interface IdentityConfig {
  agent: { name: string; labels?: Record<string, string> };
  user?: { id?: string; groups?: string[] };
}

export interface ServeConfig {
  /** The file it was read from (absolute). */
  file: string;
  listen: { host: string; port: number };
  /** Policy files and directories (absolute), or exactly one oci:// reference to a signed bundle. */
  policy: string[];
  /** Public keys (absolute paths) a signed policy bundle must verify with; required for an oci:// policy. */
  trust?: { keys: string[] };
  /** How an oci:// policy is fetched and kept up to date. */
  bundle: { pollIntervalMs: number; allowRollback: boolean; insecure: boolean; authFile?: string };
  defaultDecision: "allow" | "deny";
  dataDir?: string;
  audit: {
    arguments: "full" | "digest" | "mask";
    mask?: string[];
    signingKey?: string;
    origin?: string;
    checkpointEvery?: { records?: number; seconds?: number };
  };
  limits: { maxMessageBytes: number; sessionIdleMs: number; maxSessions: number };
  security: { allowedOrigins: string[]; allowedHosts: string[] };
  auth: {
    apiKeys?: (IdentityConfig & { name: string; hash: string })[];
    jwt?: {
      jwks: string;
      issuer: string;
      audience: string | string[];
      claims?: { agent?: string; user?: string; groups?: string; labels?: string };
      clockSkewSeconds?: number;
    };
    anonymous?: IdentityConfig;
  };
  upstreams: Record<string, UpstreamConfig>;
  /** Human approval of require_approval calls (src/approvals). */
  approvals: ApprovalsConfig;
}

const obj = (what: string, fields: Record<string, Field>): ObjectSchema => ({ type: "object", what, fields });
const opt = (schema: Schema): Field => ({ schema });
const req = (schema: Schema): Field => ({ schema, required: true });
const str = (maxLength = 4096): StringSchema => ({ type: "string", maxLength });
const strings: Schema = { type: "list", items: str(), maxItems: 1000 };
const strMap: Schema = { type: "map", values: str(65_536) };
const name: StringSchema = {
  type: "string",
  pattern: /^[A-Za-z0-9][A-Za-z0-9._:@/-]{0,252}$/,
  patternHelp: "use letters, digits and . _ - : @ /",
};
const identity = (what: string) =>
  obj(what, {
    agent: req(obj("agent", { name: req(name), labels: opt(strMap) })),
    user: opt(obj("user", { id: opt(str(256)), groups: opt(strings) })),
  });

const SCHEMA = obj("warden serve config", {
  listen: opt(
    obj("listen", {
      host: opt(str(255)),
      port: opt({ type: "integer", min: 0, max: 65_535 }),
    }),
  ),
  policy: req({ type: "list", items: str(), minItems: 1, acceptSingle: true }),
  trust: opt(
    obj("trust", { keys: req({ type: "list", items: str(), minItems: 1, maxItems: 100, acceptSingle: true }) }),
  ),
  bundle: opt(
    obj("bundle", {
      pollInterval: opt({ type: "string", check: durationCheck(1000, 86_400_000) }),
      allowRollback: opt({ type: "boolean" }),
      insecure: opt({ type: "boolean" }),
      authFile: opt(str()),
    }),
  ),
  defaultDecision: opt({ type: "string", enum: ["allow", "deny"] }),
  dataDir: opt(str()),
  audit: opt(
    obj("audit", {
      arguments: opt({ type: "string", enum: ARGUMENTS_MODES }),
      mask: opt(strings),
      signingKey: opt(str()),
      origin: opt(str(255)),
      checkpointEvery: opt(
        obj("checkpointEvery", {
          records: opt({ type: "integer", min: 1, max: 1_000_000_000 }),
          seconds: opt({ type: "integer", min: 0, max: 86_400 }),
        }),
      ),
    }),
  ),
  limits: opt(
    obj("limits", {
      maxMessageBytes: opt({ type: "integer", min: 1024, max: 1024 * 1024 * 1024 }),
      sessionIdleTimeout: opt({ type: "string", check: durationCheck(1000, 7 * 86_400_000) }),
      maxSessions: opt({ type: "integer", min: 1, max: 1_000_000 }),
    }),
  ),
  security: opt(
    obj("security", {
      allowedOrigins: opt(strings),
      allowedHosts: opt(strings),
    }),
  ),
  auth: opt(
    obj("auth", {
      apiKeys: opt({
        type: "list",
        maxItems: 10_000,
        items: obj("API key", {
          name: req(name),
          hash: req({
            type: "string",
            pattern: /^sha256:[0-9a-fA-F]{64}$/,
            patternHelp:
              "store the key's hash, not the key: sha256:<64 hex digits> (warden keys hash-api-key prints it)",
          }),
          agent: req(obj("agent", { name: req(name), labels: opt(strMap) })),
          user: opt(obj("user", { id: opt(str(256)), groups: opt(strings) })),
        }),
      }),
      jwt: opt(
        obj("jwt", {
          jwks: req(str()),
          issuer: req(str()),
          audience: req({ type: "list", items: str(), minItems: 1, acceptSingle: true }),
          claims: opt(
            obj("claims", { agent: opt(str(256)), user: opt(str(256)), groups: opt(str(256)), labels: opt(str(256)) }),
          ),
          clockSkewSeconds: opt({ type: "integer", min: 0, max: 3600 }),
        }),
      ),
      anonymous: opt(identity("anonymous identity")),
    }),
  ),
  approvals: opt(APPROVALS_SCHEMA),
  upstreams: req({
    type: "map",
    keys: {
      type: "string",
      pattern: /^(?!.*__)[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/,
      patternHelp: `an upstream name uses letters, digits and . _ - (not "${AGGREGATE_SEPARATOR}", which separates server and tool on /mcp)`,
    },
    values: obj("upstream", {
      command: opt(str()),
      args: opt(strings),
      env: opt(strMap),
      cwd: opt(str()),
      isolation: opt({ type: "string", enum: ["shared", "session"] }),
      url: opt({ type: "string", pattern: /^https?:\/\/[^\s]+$/, patternHelp: "an http:// or https:// URL" }),
      headers: opt(strMap),
    }),
  }),
});

/** Replaced, in upstream env values, by the config file's directory. */
const CONFIG_DIR_VARIABLE = "$" + "{WARDEN_CONFIG_DIR}";

const LOOPBACK = new Set(["127.0.0.1", "localhost", "::1", "[::1]"]);

/** Reads and checks a config file; throws PolicyLoadError (with every problem) when it is not usable. */
export function loadServeConfig(path: string): ServeConfig {
  const file = resolve(path);
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (err) {
    throw new PolicyLoadError([
      { file: path, line: 1, col: 1, severity: "error", message: `cannot read: ${(err as Error).message}` },
    ]);
  }
  const parsed = parseYamlSource(path, text);
  const doc = parsed.documents[0];
  const problems = () => parsed.sink.items.filter((d) => d.severity === "error");
  if (!doc || doc.doc.errors.length > 0 || parsed.documents.length > 1) {
    if (parsed.documents.length > 1) parsed.sink.error(0, "the config is one YAML document; remove the extra ---");
    if (!doc && problems().length === 0) parsed.sink.error(0, "the config file is empty");
    throw new PolicyLoadError(parsed.sink.items);
  }
  const nodes: NodeIndex = new Map();
  const root = doc.doc.contents;
  const raw = isMap(root)
    ? readNode(root, SCHEMA, "", { sink: parsed.sink, nodes, fallbackOffset: doc.start })
    : INVALID;
  if (!isMap(root)) parsed.sink.error(doc.start, "the config must be a mapping of settings");
  const at = (pointer: string) => nodes.get(pointer)?.range?.[0] ?? doc.start;
  if (raw === INVALID || problems().length > 0) throw new PolicyLoadError(parsed.sink.items);
  const c = raw as Record<string, unknown>;
  const base = dirname(file);
  const abs = (p: string) => resolve(base, p);

  const listen = { host: "127.0.0.1", port: 8080, ...(c.listen as object) } as ServeConfig["listen"];
  const upstreams = c.upstreams as Record<string, UpstreamConfig>;
  if (Object.keys(upstreams).length === 0)
    parsed.sink.error(at("/upstreams"), "configure at least one upstream server");
  for (const [key, u] of Object.entries(upstreams)) {
    if ((u.command === undefined) === (u.url === undefined)) {
      parsed.sink.error(
        at(`/upstreams/${key}`),
        `upstream "${key}" needs either command (a stdio server) or url (a remote server), not both`,
      );
    }
    if (u.url !== undefined && (u.args || u.env || u.cwd || u.isolation)) {
      parsed.sink.error(
        at(`/upstreams/${key}`),
        `upstream "${key}" is remote (url): args, env, cwd and isolation apply to stdio servers`,
      );
    }
    if (u.command !== undefined && u.headers) {
      parsed.sink.error(
        at(`/upstreams/${key}/headers`),
        `upstream "${key}" is a stdio server: headers apply to remote servers`,
      );
    }
    // ${WARDEN_CONFIG_DIR} in an env value is the config file's directory (servers resolve
    // relative paths in their own ways, so an absolute one is the only portable choice).
    if (u.env) for (const [k, v] of Object.entries(u.env)) u.env[k] = v.replaceAll(CONFIG_DIR_VARIABLE, base);
    // Stdio servers run in the config file's directory unless told otherwise, so relative paths in args work.
    if (u.command !== undefined) u.cwd = abs(u.cwd ?? ".");
  }
  const audit = { arguments: "digest", ...(c.audit as object) } as ServeConfig["audit"];
  if (audit.arguments === "mask" && !audit.mask?.length) {
    parsed.sink.error(at("/audit/arguments"), "arguments: mask needs a list of JSON Pointers in audit.mask");
  }
  (audit.mask ?? []).forEach((pointer, i) => {
    const problem = maskPointerProblem(pointer);
    if (problem) parsed.sink.error(at(`/audit/mask/${i}`), `audit.mask "${pointer}" is not a JSON Pointer: ${problem}`);
  });
  if (audit.signingKey) audit.signingKey = abs(audit.signingKey);
  const auth = (c.auth ?? {}) as ServeConfig["auth"];
  if (auth.jwt) auth.jwt.jwks = abs(auth.jwt.jwks);
  if (!auth.apiKeys?.length && !auth.jwt && !auth.anonymous) {
    parsed.sink.error(
      at("/auth"),
      "configure auth: apiKeys, jwt, or (for local development) an anonymous identity; Warden does not serve unauthenticated callers by default",
    );
  }
  if (auth.anonymous && !LOOPBACK.has(listen.host)) {
    parsed.sink.error(
      at("/auth/anonymous"),
      `an anonymous identity is only allowed when listening on loopback, not ${listen.host}`,
    );
  }
  const security = (c.security ?? {}) as Partial<ServeConfig["security"]>;
  if (!LOOPBACK.has(listen.host) && !security.allowedHosts?.length) {
    // Without a list the Host header could not be checked, and DNS rebinding would be open.
    parsed.sink.error(
      at("/listen/host"),
      `listening on ${listen.host} (not loopback) needs security.allowedHosts: the Host values clients use, e.g. ["warden.example.com:${listen.port}"] (DNS rebinding protection)`,
    );
  }
  const policies = c.policy as string[];
  const oci = policies.filter((p) => p.startsWith(OCI_SCHEME));
  const trust = c.trust as { keys: string[] } | undefined;
  if (oci.length > 0) {
    if (policies.length > 1)
      parsed.sink.error(at("/policy"), "an oci:// policy is the whole policy: list it alone, without other paths");
    for (const r of oci) {
      try {
        parseReference(r);
      } catch (err) {
        parsed.sink.error(at("/policy"), (err as Error).message);
      }
    }
    if (!trust)
      parsed.sink.error(
        at("/policy"),
        "an oci:// policy needs trust.keys: the public keys its signature must verify with (Warden never runs an unverified bundle)",
      );
  } else if (trust) {
    parsed.sink.error(at("/trust"), "trust.keys applies to an oci:// policy; policy files are not signed");
  }
  const bundleIn = (c.bundle ?? {}) as {
    pollInterval?: string;
    allowRollback?: boolean;
    insecure?: boolean;
    authFile?: string;
  };
  if (c.bundle !== undefined && oci.length === 0)
    parsed.sink.error(at("/bundle"), "bundle settings apply to an oci:// policy");
  const limitsIn = (c.limits ?? {}) as { maxMessageBytes?: number; sessionIdleTimeout?: string; maxSessions?: number };
  const approvals = readApprovalsConfig(c.approvals as Record<string, unknown> | undefined, abs);
  for (const p of approvals.problems) parsed.sink.error(at(p.pointer), p.message);
  const errors: Diagnostic[] = problems();
  if (errors.length > 0) throw new PolicyLoadError(parsed.sink.items);
  return {
    file,
    listen,
    policy: policies.map((p) => (p.startsWith(OCI_SCHEME) ? p : abs(p))),
    ...(trust ? { trust: { keys: trust.keys.map(abs) } } : {}),
    bundle: {
      pollIntervalMs: parseDuration(bundleIn.pollInterval ?? "1m") as number,
      allowRollback: bundleIn.allowRollback ?? false,
      insecure: bundleIn.insecure ?? false,
      ...(bundleIn.authFile ? { authFile: abs(bundleIn.authFile) } : {}),
    },
    defaultDecision: (c.defaultDecision as "allow" | "deny" | undefined) ?? "deny",
    dataDir: typeof c.dataDir === "string" ? abs(c.dataDir) : undefined,
    audit,
    limits: {
      maxMessageBytes: limitsIn.maxMessageBytes ?? DEFAULT_MAX_MESSAGE_BYTES,
      sessionIdleMs: parseDuration(limitsIn.sessionIdleTimeout ?? "30m") as number,
      maxSessions: limitsIn.maxSessions ?? 10_000,
    },
    security: { allowedOrigins: security.allowedOrigins ?? [], allowedHosts: security.allowedHosts ?? [] },
    auth,
    upstreams,
    approvals: approvals.config,
  };
}

export function isLoopback(host: string): boolean {
  return LOOPBACK.has(host);
}
