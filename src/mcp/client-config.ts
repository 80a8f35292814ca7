// MCP client config files (Claude Desktop, Claude Code, Cursor, VS Code) and
// the `warden wrap` transform: every stdio server is rewritten to start under
// `warden run`, and back. Pure: text in, text out; the CLI does the I/O.
//
// The transform edits the original text in place (only the `command` and
// `args` values of the servers it wraps), so everything else survives byte for
// byte: key order, formatting, other settings, and the comments and trailing
// commas that VS Code's mcp.json (JSONC) allows.
import { createHash } from "node:crypto";
import { join } from "node:path";
import { RUN_SWITCHES } from "../cli/run-options.js";

export class ClientConfigError extends Error {
  override name = "ClientConfigError";
}

// ---------------------------------------------------------------------------
// Lenient JSON (JSONC) with source positions

interface Span {
  /** Offset of the first character. */
  start: number;
  /** Offset just past the last character. */
  end: number;
}
export interface JsonObject extends Span {
  kind: "object";
  props: JsonProp[];
}
export interface JsonProp {
  key: string;
  keyStart: number;
  value: JsonNode;
}
export interface JsonArray extends Span {
  kind: "array";
  items: JsonNode[];
}
export interface JsonScalar extends Span {
  kind: "string" | "number" | "boolean" | "null";
  value: string | number | boolean | null;
}
export type JsonNode = JsonObject | JsonArray | JsonScalar;

export interface ParsedJsonc {
  root: JsonNode;
  /** The text has // or /* comments (so it is JSONC, not JSON). */
  comments: boolean;
}

const MAX_DEPTH = 256;
const NUMBER = /-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?/y;

/** Parses JSON, also accepting comments and trailing commas. Duplicate keys are an error. */
export function parseJsonc(text: string): ParsedJsonc {
  let pos = text.startsWith("\uFEFF") ? 1 : 0;
  let comments = false;
  const fail = (message: string, at = pos): never => {
    const { line, col } = lineCol(text, at);
    throw new ClientConfigError(`line ${line}, column ${col}: ${message}`);
  };
  const describe = (at: number) => (at >= text.length ? "end of file" : JSON.stringify(text[at]));
  const skip = () => {
    for (;;) {
      const c = text[pos];
      if (c === " " || c === "\t" || c === "\n" || c === "\r") pos++;
      else if (c === "/" && text[pos + 1] === "/") {
        comments = true;
        const nl = text.indexOf("\n", pos);
        pos = nl < 0 ? text.length : nl + 1;
      } else if (c === "/" && text[pos + 1] === "*") {
        comments = true;
        const close = text.indexOf("*/", pos + 2);
        if (close < 0) fail("unterminated /* comment");
        pos = close + 2;
      } else return;
    }
  };
  const string = (): JsonScalar => {
    const start = pos;
    pos++;
    for (;;) {
      const c = text.charCodeAt(pos);
      if (pos >= text.length) fail("unterminated string", start);
      if (c === 0x22) break;
      if (c < 0x20) fail("control character in a string (write it escaped)");
      pos += c === 0x5c ? 2 : 1;
    }
    pos++;
    let value: string;
    try {
      value = JSON.parse(text.slice(start, pos)) as string;
    } catch {
      return fail("invalid escape in a string", start);
    }
    return { kind: "string", start, end: pos, value };
  };
  const value = (depth: number): JsonNode => {
    if (depth > MAX_DEPTH) fail("nested too deeply");
    skip();
    const start = pos;
    const c = text[pos];
    if (c === "{") {
      pos++;
      const props: JsonProp[] = [];
      const seen = new Set<string>();
      for (;;) {
        skip();
        if (text[pos] === "}") break;
        if (text[pos] !== '"') fail(`expected a property name in double quotes or "}", found ${describe(pos)}`);
        const keyStart = pos;
        const key = string().value as string;
        if (seen.has(key)) fail(`duplicate key ${JSON.stringify(key)}`, keyStart);
        seen.add(key);
        skip();
        if (text[pos] !== ":") fail(`expected ":" after ${JSON.stringify(key)}, found ${describe(pos)}`);
        pos++;
        props.push({ key, keyStart, value: value(depth + 1) });
        skip();
        if (text[pos] === ",") pos++;
        else if (text[pos] !== "}") fail(`expected "," or "}", found ${describe(pos)}`);
      }
      pos++;
      return { kind: "object", start, end: pos, props };
    }
    if (c === "[") {
      pos++;
      const items: JsonNode[] = [];
      for (;;) {
        skip();
        if (text[pos] === "]") break;
        items.push(value(depth + 1));
        skip();
        if (text[pos] === ",") pos++;
        else if (text[pos] !== "]") fail(`expected "," or "]", found ${describe(pos)}`);
      }
      pos++;
      return { kind: "array", start, end: pos, items };
    }
    if (c === '"') return string();
    for (const [word, v] of [
      ["true", true],
      ["false", false],
      ["null", null],
    ] as const) {
      if (text.startsWith(word, pos)) {
        pos += word.length;
        return { kind: v === null ? "null" : "boolean", start, end: pos, value: v };
      }
    }
    NUMBER.lastIndex = pos;
    const m = NUMBER.exec(text);
    if (m) {
      pos += m[0].length;
      return { kind: "number", start, end: pos, value: Number(m[0]) };
    }
    return fail(`unexpected ${describe(pos)}`);
  };
  const root = value(0);
  skip();
  if (pos < text.length) fail(`unexpected ${describe(pos)} after the end of the document`);
  return { root, comments };
}

function lineCol(text: string, offset: number): { line: number; col: number } {
  let line = 1;
  let lineStart = 0;
  for (let i = text.indexOf("\n"); i >= 0 && i < offset; i = text.indexOf("\n", i + 1)) {
    line++;
    lineStart = i + 1;
  }
  return { line, col: offset - lineStart + 1 };
}

/** The plain value of a node (object keys in source order). */
export function jsonValue(node: JsonNode): unknown {
  switch (node.kind) {
    case "object": {
      const out: Record<string, unknown> = Object.create(null);
      for (const p of node.props) out[p.key] = jsonValue(p.value);
      return out;
    }
    case "array":
      return node.items.map(jsonValue);
    default:
      return node.value;
  }
}

// ---------------------------------------------------------------------------
// Client config files

export type ClientKind = "claude-desktop" | "claude-code" | "cursor" | "vscode";
export type ServersKey = "mcpServers" | "servers";

/** What the file's name says it is; undefined when it does not say. */
export function clientKindFromPath(path: string): ClientKind | undefined {
  const p = path.replaceAll("\\", "/");
  const base = p.slice(p.lastIndexOf("/") + 1);
  if (base === "claude_desktop_config.json") return "claude-desktop";
  if (base === ".mcp.json" || base === ".claude.json") return "claude-code";
  if (p.endsWith("/.cursor/mcp.json") || p === ".cursor/mcp.json") return "cursor";
  if (p.endsWith("/.vscode/mcp.json") || p === ".vscode/mcp.json") return "vscode";
  // VS Code's user-level mcp.json: .../Code/User/mcp.json, or .../User/profiles/<id>/mcp.json.
  if (/\/User\/(?:profiles\/[^/]+\/)?mcp\.json$/.test(p)) return "vscode";
  return undefined;
}

const KIND_KEY: Record<ClientKind, ServersKey> = {
  "claude-desktop": "mcpServers",
  "claude-code": "mcpServers",
  cursor: "mcpServers",
  vscode: "servers",
};

export interface ClientConfig {
  text: string;
  root: JsonObject;
  /** The object of servers, and the key it is under. */
  servers: JsonObject;
  serversKey: ServersKey;
  /** From the file name, if its servers are under the key that client uses; else undefined. */
  kind: ClientKind | undefined;
  comments: boolean;
}

/** Parses a client config file; throws ClientConfigError if it is not one. */
export function readClientConfig(text: string, path: string): ClientConfig {
  let parsed: ParsedJsonc;
  try {
    parsed = parseJsonc(text);
  } catch (err) {
    if (err instanceof ClientConfigError) throw new ClientConfigError(`not valid JSON: ${err.message}`);
    throw err;
  }
  const root = parsed.root;
  if (root.kind !== "object") throw new ClientConfigError("not an MCP client config: the file is not a JSON object");
  const named = clientKindFromPath(path);
  const has = (k: ServersKey) => root.props.find((p) => p.key === k);
  const preferred: ServersKey = named ? KIND_KEY[named] : "mcpServers";
  const other: ServersKey = preferred === "mcpServers" ? "servers" : "mcpServers";
  const prop = has(preferred) ?? has(other);
  if (!prop) {
    const hint = root.props.some((p) => p.key === "mcp")
      ? ' (VS Code\'s settings.json "mcp" section is not supported: use .vscode/mcp.json or the user mcp.json)'
      : "";
    throw new ClientConfigError(`not an MCP client config: no "mcpServers" or "servers" object${hint}`);
  }
  if (prop.value.kind !== "object") throw new ClientConfigError(`"${prop.key}" is not an object`);
  const serversKey = prop.key as ServersKey;
  return {
    text,
    root,
    servers: prop.value,
    serversKey,
    kind: named && KIND_KEY[named] === serversKey ? named : undefined,
    comments: parsed.comments,
  };
}

// ---------------------------------------------------------------------------
// Recognising a wrapped server

/** The options `warden wrap` manages in a wrapped server's `warden run` arguments. */
export interface RunOptions {
  policies: string[];
  agent: string | undefined;
  server: string | undefined;
  dataDir: string | undefined;
}

export interface WrappedServer {
  /** The server's own command line (after "--"). */
  inner: { command: string; args: string[] };
  options: RunOptions;
  /** Other `warden run` options (e.g. --user), kept as they are when re-wrapping. */
  extra: string[];
}

/** `.../dist/src/cli/main.js`: warden's entry point, wherever it is installed. */
export function isWardenMain(path: string): boolean {
  return /(?:^|[\\/])dist[\\/]src[\\/]cli[\\/]main\.js$/.test(path);
}

function isWardenBin(command: string): boolean {
  const base = command.slice(Math.max(command.lastIndexOf("/"), command.lastIndexOf("\\")) + 1);
  return /^warden(?:\.cmd|\.exe|\.ps1)?$/i.test(base);
}

/**
 * Recognises a server that already runs under `warden run`: as `warden wrap`
 * writes it (NODE .../dist/src/cli/main.js run ... -- CMD ...) or written by
 * hand (warden run ... -- CMD ...). Undefined for anything else.
 */
export function parseWrappedServer(command: string, args: readonly string[]): WrappedServer | undefined {
  let run: readonly string[];
  if (args[1] === "run" && isWardenMain(args[0] ?? "")) run = args.slice(2);
  else if (args[0] === "run" && isWardenBin(command)) run = args.slice(1);
  else return undefined;
  const dash = run.indexOf("--");
  const innerCommand = run[dash + 1];
  if (dash < 0 || innerCommand === undefined) return undefined;
  const options: RunOptions = { policies: [], agent: undefined, server: undefined, dataDir: undefined };
  const extra: string[] = [];
  const own = run.slice(0, dash);
  for (let i = 0; i < own.length; i++) {
    const token = own[i] as string;
    const eq = token.startsWith("--") ? token.indexOf("=") : -1;
    const name = eq > 0 ? token.slice(0, eq) : token;
    const takesValue = token.startsWith("-") && !RUN_SWITCHES.has(name);
    let value: string | undefined;
    if (eq > 0) value = token.slice(eq + 1);
    else if (takesValue && i + 1 < own.length) value = own[++i];
    switch (name) {
      case "--policy":
        if (value !== undefined) options.policies.push(value);
        break;
      case "--agent":
        options.agent = value;
        break;
      case "--server":
        options.server = value;
        break;
      case "--data-dir":
        options.dataDir = value;
        break;
      default:
        extra.push(token);
        if (eq < 0 && takesValue && value !== undefined) extra.push(value);
    }
  }
  return { inner: { command: innerCommand, args: run.slice(dash + 2) }, options, extra };
}

// ---------------------------------------------------------------------------
// The transform

export interface WrapOptions {
  /** Absolute path of the Node binary that runs warden. */
  node: string;
  /** Absolute path of warden's dist/src/cli/main.js. */
  main: string;
  /** Absolute policy paths. */
  policies: string[];
  agent: string;
  /** Absolute; each server's audit log goes in its own directory under it (serverDataDir). */
  dataDir: string;
}

export type ServerAction = "wrapped" | "re-wrapped" | "already wrapped" | "not wrapped" | "unwrapped";

export interface ServerResult {
  name: string;
  action: ServerAction;
  /** Why a server was not wrapped (e.g. "remote server"), or what changed when re-wrapped. */
  reason?: string;
  /** The audit data directory of a wrapped server. */
  dataDir?: string;
  notes: string[];
}

export interface TransformResult {
  text: string;
  changed: boolean;
  serversKey: ServersKey;
  servers: ServerResult[];
  /** How many servers were already wrapped before the transform. */
  wrappedBefore: number;
}

const REMOTE_TYPES = new Set(["http", "sse", "streamable-http", "streamableHttp", "ws", "websocket"]);
const ENTITY_NAME = /^[A-Za-z0-9][A-Za-z0-9._:@/-]{0,252}$/;

/** Agent names as policies select them (letters, digits and . _ - : @ /). */
export function isValidAgentName(name: string): boolean {
  return ENTITY_NAME.test(name);
}

interface StdioEntry {
  entry: JsonObject;
  command: JsonScalar;
  args: JsonArray | undefined;
  argValues: string[];
}

type Classified = { ok: true; stdio: StdioEntry } | { ok: false; reason: string };

function classify(value: JsonNode): Classified {
  if (value.kind !== "object") return { ok: false, reason: "not an object" };
  const get = (k: string) => value.props.find((p) => p.key === k)?.value;
  const type = get("type");
  if (type !== undefined && type.kind !== "string") return { ok: false, reason: '"type" is not a string' };
  const typeName = type?.value as string | undefined;
  const remote = get("url") !== undefined || get("serverUrl") !== undefined;
  if (typeName !== undefined && typeName !== "stdio") {
    return { ok: false, reason: REMOTE_TYPES.has(typeName) || remote ? "remote server" : `type "${typeName}"` };
  }
  const command = get("command");
  if (command === undefined) return { ok: false, reason: remote ? "remote server" : "no command" };
  if (command.kind !== "string" || command.value === "") return { ok: false, reason: '"command" is not a string' };
  const args = get("args");
  if (args !== undefined && (args.kind !== "array" || args.items.some((i) => i.kind !== "string"))) {
    return { ok: false, reason: '"args" is not a list of strings' };
  }
  const argValues = args?.kind === "array" ? args.items.map((i) => (i as JsonScalar).value as string) : [];
  return { ok: true, stdio: { entry: value, command, args: args as JsonArray | undefined, argValues } };
}

/**
 * Each server's audit data directory: BASE/AGENT/SERVER. Warden allows one
 * writer per data directory, so servers a client starts side by side (and
 * clients sharing one --data-dir) must not share one. Names are made safe as
 * path segments; names that collide after that (also ignoring case) get a hash.
 */
export function serverDataDir(base: string, agent: string, server: string, allServers: readonly string[] = []): string {
  const seg = safeSegment(server);
  const clash = allServers.some((o) => o !== server && safeSegment(o).toLowerCase() === seg.toLowerCase());
  return join(base, safeSegment(agent), clash ? `${seg}-${shortHash(server)}` : seg);
}

function safeSegment(name: string): string {
  let s = name.replace(/[^A-Za-z0-9._-]/g, "_");
  if (s === "" || s.startsWith(".")) s = `_${s}`;
  if (/^(?:con|prn|aux|nul|com\d|lpt\d)(?:\..*)?$/i.test(s)) s = `${s}_`;
  if (s.length > 80) s = `${s.slice(0, 70)}-${shortHash(name)}`;
  return s;
}

function shortHash(s: string): string {
  return createHash("sha256").update(s).digest("hex").slice(0, 8);
}

/** The `args` of a wrapped server. Values starting with "-" use --opt=value, which `warden run` reads unambiguously. */
export function wrappedArgs(
  options: WrapOptions,
  server: string,
  dataDir: string,
  inner: { command: string; args: readonly string[] },
  extra: readonly string[] = [],
): string[] {
  const opt = (name: string, value: string) => (value.startsWith("-") ? [`${name}=${value}`] : [name, value]);
  return [
    options.main,
    "run",
    ...options.policies.flatMap((p) => opt("--policy", p)),
    ...opt("--agent", options.agent),
    ...opt("--server", server),
    ...opt("--data-dir", dataDir),
    ...extra,
    "--",
    inner.command,
    ...inner.args,
  ];
}

/** Wraps every stdio server; servers already wrapped with the same options are left alone. */
export function wrapClientConfig(config: ClientConfig, options: WrapOptions): TransformResult {
  const edits: Edit[] = [];
  const results: ServerResult[] = [];
  const names = config.servers.props.map((p) => p.key);
  let wrappedBefore = 0;
  for (const prop of config.servers.props) {
    const name = prop.key;
    const c = classify(prop.value);
    if (!c.ok) {
      results.push({ name, action: "not wrapped", reason: c.reason, notes: [] });
      continue;
    }
    if (name === "") {
      results.push({ name, action: "not wrapped", reason: "empty server name", notes: [] });
      continue;
    }
    const { command, argValues } = c.stdio;
    const wrapped = parseWrappedServer(command.value as string, argValues);
    if (wrapped) wrappedBefore++;
    const dataDir = serverDataDir(options.dataDir, options.agent, name, names);
    const args = wrappedArgs(
      options,
      name,
      dataDir,
      wrapped?.inner ?? { command: command.value as string, args: argValues },
      wrapped?.extra,
    );
    const notes: string[] = [];
    if (!ENTITY_NAME.test(name)) {
      notes.push(
        `policies cannot name server "${name}" (mcpServer takes letters, digits and . _ - : @ /); only policies for any server ("*") apply to it`,
      );
    }
    if (wrapped && command.value === options.node && sameStrings(args, argValues)) {
      results.push({ name, action: "already wrapped", dataDir, notes });
      continue;
    }
    if (c.stdio.args && hasComment(config.text, c.stdio.args)) notes.push("comments inside its args were dropped");
    edits.push(...setCommandLine(config.text, c.stdio, options.node, args));
    results.push({
      name,
      action: wrapped ? "re-wrapped" : "wrapped",
      dataDir,
      notes,
      ...(wrapped ? { reason: changedOptions(wrapped, command.value as string, options, name, dataDir) } : {}),
    });
  }
  return finish(config, edits, results, wrappedBefore);
}

/** Puts every wrapped server back to its own command line (the part after "--"). */
export function unwrapClientConfig(config: ClientConfig): TransformResult {
  const edits: Edit[] = [];
  const results: ServerResult[] = [];
  let wrappedBefore = 0;
  for (const prop of config.servers.props) {
    const c = classify(prop.value);
    const wrapped = c.ok ? parseWrappedServer(c.stdio.command.value as string, c.stdio.argValues) : undefined;
    if (!c.ok || !wrapped) {
      results.push({ name: prop.key, action: "not wrapped", reason: c.ok ? "not run by warden" : c.reason, notes: [] });
      continue;
    }
    wrappedBefore++;
    edits.push(...setCommandLine(config.text, c.stdio, wrapped.inner.command, wrapped.inner.args));
    const notes = wrapped.extra.length > 0 ? [`dropped its other warden run options: ${wrapped.extra.join(" ")}`] : [];
    results.push({ name: prop.key, action: "unwrapped", notes });
  }
  return finish(config, edits, results, wrappedBefore);
}

/**
 * True when two configs are the same once every server is unwrapped, comparing
 * values (not formatting or key order; a missing "args" equals an empty one).
 * `warden wrap --undo` restores the backup only then.
 */
export function sameUnwrapped(a: ClientConfig, b: ClientConfig): boolean {
  const plain = (c: ClientConfig) => {
    const value = jsonValue(parseJsonc(unwrapClientConfig(c).text).root) as Record<string, Record<string, unknown>>;
    const servers = value[c.serversKey] ?? {};
    for (const s of Object.values(servers)) {
      if (s && typeof s === "object" && Array.isArray((s as Record<string, unknown>).args)) {
        const entry = s as Record<string, unknown>;
        if ((entry.args as unknown[]).length === 0) delete entry.args;
      }
    }
    return value;
  };
  return deepEqual(plain(a), plain(b));
}

function changedOptions(w: WrappedServer, command: string, o: WrapOptions, name: string, dataDir: string): string {
  const changed: string[] = [];
  if (!sameStrings(w.options.policies, o.policies)) changed.push("policy");
  if (w.options.agent !== o.agent) changed.push("agent");
  if (w.options.server !== name) changed.push("server");
  if (w.options.dataDir !== dataDir) changed.push("data dir");
  if (command !== o.node) changed.push("node path");
  return changed.length > 0 ? `new ${changed.join(", ")}` : "new warden path";
}

function finish(config: ClientConfig, edits: Edit[], servers: ServerResult[], wrappedBefore: number): TransformResult {
  const text = applyEdits(config.text, edits);
  if (edits.length > 0) readClientConfig(text, ""); // the edit must leave a valid file; a bug here must not write one
  return { text, changed: text !== config.text, serversKey: config.serversKey, servers, wrappedBefore };
}

// ---------------------------------------------------------------------------
// Text edits that keep the rest of the file as it was

interface Edit {
  start: number;
  end: number;
  text: string;
}

function applyEdits(text: string, edits: Edit[]): string {
  let out = text;
  for (const e of [...edits].sort((a, b) => b.start - a.start)) out = out.slice(0, e.start) + e.text + out.slice(e.end);
  return out;
}

/** Sets a server's command and args, in the layout of the file around them. */
function setCommandLine(text: string, s: StdioEntry, command: string, args: readonly string[]): Edit[] {
  const edits: Edit[] = [];
  if (s.command.value !== command) edits.push({ start: s.command.start, end: s.command.end, text: q(command) });
  const argsProp = s.entry.props.find((p) => p.key === "args");
  const commandProp = s.entry.props.find((p) => p.key === "command") as JsonProp;
  if (argsProp && s.args) {
    // "args" right after "command", now empty: remove it, as wrap inserts it where there was none.
    const between = text.slice(s.command.end, argsProp.keyStart);
    if (args.length === 0 && /^\s*,\s*$/.test(between)) {
      edits.push({ start: s.command.end, end: s.args.end, text: "" });
    } else if (!sameStrings(args, s.argValues)) {
      edits.push({ start: s.args.start, end: s.args.end, text: renderStrings(text, argsProp.keyStart, args) });
    }
  } else if (args.length > 0) {
    const indent = lineIndent(text, commandProp.keyStart);
    const sep = indent === undefined ? " " : eolOf(text) + indent;
    edits.push({
      start: s.command.end,
      end: s.command.end,
      text: `,${sep}"args": ${renderStrings(text, commandProp.keyStart, args)}`,
    });
  }
  return edits;
}

const LINE_WIDTH = 120;

/** A JSON array of strings for a property whose key starts at keyStart: one line if it fits, else one item per line. */
function renderStrings(text: string, keyStart: number, items: readonly string[]): string {
  const one = `[${items.map(q).join(", ")}]`;
  const indent = lineIndent(text, keyStart);
  if (indent === undefined || items.length === 0 || indent.length + '"args": '.length + one.length + 1 <= LINE_WIDTH) {
    return one;
  }
  const eol = eolOf(text);
  const inner = indent + indentUnit(text);
  return `[${eol}${items.map((i) => inner + q(i)).join(`,${eol}`)}${eol}${indent}]`;
}

/** The whitespace before offset on its line, or undefined if something else precedes it there. */
function lineIndent(text: string, offset: number): string | undefined {
  const lineStart = text.lastIndexOf("\n", offset - 1) + 1;
  const before = text.slice(lineStart, offset).replace(/^\uFEFF/, "");
  return /^[ \t]*$/.test(before) ? before : undefined;
}

function indentUnit(text: string): string {
  const m = /\n([ \t]+)\S/.exec(text);
  if (!m?.[1]) return "  ";
  return m[1].startsWith("\t") ? "\t" : m[1];
}

function eolOf(text: string): string {
  return text.includes("\r\n") ? "\r\n" : "\n";
}

function hasComment(text: string, node: JsonNode): boolean {
  // Outside strings, "//" or "/*" can only be a comment.
  return /\/[/*]/.test(text.slice(node.start, node.end).replace(/"(?:[^"\\]|\\.)*"/g, '""'));
}

function q(s: string): string {
  return JSON.stringify(s);
}

function sameStrings(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

function deepEqual(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (typeof a !== "object" || typeof b !== "object" || a === null || b === null) return false;
  if (Array.isArray(a) !== Array.isArray(b)) return false;
  const ka = Object.keys(a);
  const kb = Object.keys(b);
  if (ka.length !== kb.length) return false;
  const rb = b as Record<string, unknown>;
  return ka.every((k) => Object.hasOwn(rb, k) && deepEqual((a as Record<string, unknown>)[k], rb[k]));
}
