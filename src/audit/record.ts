// Audit records: what the gateway hands to the log (AuditEvent), what the log
// stores (AuditRecord, with seq, time and the arguments digest), argument
// redaction, and the canonical encoding (RFC 8785) whose bytes are the Merkle leaf.
import { hash, randomUUID } from "node:crypto";
import { canonicalJson } from "../encoding/canonical-json.js";
import type { Decision, DecisionInput } from "../policy/decision.js";
import type { Action } from "../policy/resources.js";

export const RECORD_TYPES = ["decision", "approval", "admission", "guardrail", "outcome", "lifecycle"] as const;
export type RecordType = (typeof RECORD_TYPES)[number];
export const DECISIONS: readonly Action[] = ["allow", "deny", "require_approval"];

export interface AgentRef {
  name: string;
  model?: string;
  vendor?: string;
}
export interface UserRef {
  id?: string;
  groups?: string[];
}
export interface PolicyRef {
  name: string | null;
  /** sha256 of the canonical policy resource. */
  version: string | null;
  /** Digest of the signed bundle the policy came from, when it came from one. */
  bundle?: string | null;
  /** Digest of the whole policy set that decided. */
  set?: string | null;
}
export interface TraceRef {
  traceId: string;
  spanId: string;
  parentSpanId?: string | null;
}

/** One event as the caller describes it; the log adds seq, time, id and the arguments digest. */
export interface AuditEvent {
  type: RecordType;
  /** Defaults to a random UUID. */
  id?: string;
  agent?: AgentRef | null;
  user?: UserRef | null;
  session?: string | null;
  server?: string | null;
  tool?: string | null;
  /** The call's arguments; stored according to the log's arguments policy, always digested. */
  arguments?: Record<string, unknown> | null;
  decision?: Action | null;
  enforced?: boolean | null;
  policy?: PolicyRef | null;
  rule?: { index: number; name: string | null } | null;
  reason?: string | null;
  approval?: Record<string, unknown> | null;
  trace?: TraceRef | null;
  latencyUs?: number | null;
  /** Type-specific facts: an outcome's status, a guardrail finding, a lifecycle event. */
  detail?: Record<string, unknown> | null;
}

/** A stored record. Every field is present (null when it does not apply), so exports have one shape. */
export interface AuditRecord {
  seq: number;
  /** RFC 3339, UTC, millisecond precision: when the log sequenced the record. */
  time: string;
  id: string;
  type: RecordType;
  agent: AgentRef | null;
  user: UserRef | null;
  session: string | null;
  server: string | null;
  tool: string | null;
  /** `sha256:<hex>` of the canonical JSON of the full arguments, whatever is stored. */
  argumentsDigest: string | null;
  arguments: unknown;
  decision: Action | null;
  enforced: boolean | null;
  policy: PolicyRef | null;
  rule: { index: number; name: string | null } | null;
  reason: string | null;
  approval: Record<string, unknown> | null;
  trace: TraceRef | null;
  latencyUs: number | null;
  detail: Record<string, unknown> | null;
}

/** The record's keys in RFC 8785 order (UTF-16 code units), checked at load. */
const RECORD_KEYS = [
  "agent",
  "approval",
  "arguments",
  "argumentsDigest",
  "decision",
  "detail",
  "enforced",
  "id",
  "latencyUs",
  "policy",
  "reason",
  "rule",
  "seq",
  "server",
  "session",
  "time",
  "tool",
  "trace",
  "type",
  "user",
] as const satisfies readonly (keyof AuditRecord)[];
if ([...RECORD_KEYS].sort().join() !== RECORD_KEYS.join()) throw new Error("RECORD_KEYS must be sorted");

// ---------------------------------------------------------------------------
// Arguments policy

export type ArgumentsMode = "full" | "digest" | "mask";
export const ARGUMENTS_MODES: readonly ArgumentsMode[] = ["full", "digest", "mask"];

export interface ArgumentsPolicy {
  /** full: store the arguments; digest: store only their digest; mask: store them with the values at `mask` replaced. */
  mode: ArgumentsMode;
  /** JSON Pointers (RFC 6901) of values to mask; a `*` segment matches every member or element. */
  mask?: string[];
}

export const REDACTED = "[redacted]";

export class AuditEventError extends Error {
  override name = "AuditEventError";
}

/** Parses an RFC 6901 JSON Pointer into segments. */
export function parsePointer(pointer: string): string[] {
  if (pointer === "") return [];
  if (!pointer.startsWith("/")) throw new AuditEventError(`"${pointer}" is not a JSON Pointer (it must start with /)`);
  return pointer
    .slice(1)
    .split("/")
    .map((s) => s.replaceAll("~1", "/").replaceAll("~0", "~"));
}

/** Why a mask pointer is not a usable RFC 6901 JSON Pointer (for configuration errors), or undefined. */
export function maskPointerProblem(pointer: string): string | undefined {
  if (pointer === "") return 'the pointer "" is the whole arguments: to store none of them, use the digest mode';
  if (!pointer.startsWith("/")) return `it must start with /, as in /${pointer}`;
  if (/~(?![01])/.test(pointer)) return "~ must be written ~0 and / inside a name ~1";
  return undefined;
}

export function checkArgumentsPolicy(policy: ArgumentsPolicy): ArgumentsPolicy {
  if (!ARGUMENTS_MODES.includes(policy.mode)) {
    throw new AuditEventError(`arguments mode must be one of ${ARGUMENTS_MODES.join(", ")}, not "${policy.mode}"`);
  }
  if (policy.mode === "mask" && (!policy.mask || policy.mask.length === 0)) {
    throw new AuditEventError("arguments mode mask needs at least one JSON Pointer to mask");
  }
  for (const p of policy.mask ?? []) {
    if (parsePointer(p).length === 0)
      throw new AuditEventError('masking the whole arguments (pointer "") is mode digest');
  }
  return policy;
}

function maskAt(value: unknown, segments: string[]): unknown {
  if (segments.length === 0) return REDACTED;
  if (typeof value !== "object" || value === null) return value;
  const [head, ...rest] = segments as [string, ...string[]];
  if (Array.isArray(value)) {
    return value.map((v, i) => (head === "*" || head === String(i) ? maskAt(v, rest) : v));
  }
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(value)) out[k] = head === "*" || head === k ? maskAt(v, rest) : v;
  return out;
}

/** The arguments as stored (canonical JSON text, or null) and the digest of the full arguments. */
export function applyArgumentsPolicy(
  args: unknown,
  policy: ArgumentsPolicy,
): { digest: string | null; storedJson: string } {
  if (args === undefined || args === null) return { digest: null, storedJson: "null" };
  const full = canonicalJson(args);
  const digest = `sha256:${hash("sha256", full, "hex")}`;
  if (policy.mode === "full") return { digest, storedJson: full };
  if (policy.mode === "digest") return { digest, storedJson: "null" };
  let masked: unknown = args;
  for (const p of policy.mask ?? []) masked = maskAt(masked, parsePointer(p));
  return { digest, storedJson: canonicalJson(masked) };
}

// ---------------------------------------------------------------------------
// Building and encoding records

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === "object" && v !== null && !Array.isArray(v);

function check(cond: boolean, what: string): void {
  if (!cond) throw new AuditEventError(what);
}

function onlyKeys(o: object, allowed: readonly string[]): boolean {
  const keys = Object.keys(o);
  for (let i = 0; i < keys.length; i++) if (!allowed.includes(keys[i] as string)) return false;
  return true;
}
const optString = (v: unknown) => v === undefined || v === null || typeof v === "string";
const absent = (v: unknown) => v === undefined || v === null;
const USER_KEYS = ["id", "groups"];
const TRACE_KEYS = ["traceId", "spanId", "parentSpanId"];
const STRING_MEMBERS = ["session", "server", "tool", "reason"] as const;
const OBJECT_MEMBERS = ["approval", "detail", "rule"] as const;

/** Rejects events that would make a misleading record; the caller denies when append rejects. */
export function checkEvent(e: AuditEvent): void {
  // Runs once per append: the messages are only built for an event that fails.
  check(isObject(e), "an audit event must be an object");
  if (!RECORD_TYPES.includes(e.type)) {
    throw new AuditEventError(`event type must be one of ${RECORD_TYPES.join(", ")}, not "${String(e.type)}"`);
  }
  check(optString(e.id) && e.id !== "", "id must be a non-empty string");
  check(
    absent(e.agent) || (isObject(e.agent) && typeof e.agent.name === "string"),
    "agent must be an object with a name",
  );
  check(
    absent(e.user) || (isObject(e.user) && onlyKeys(e.user, USER_KEYS)),
    "user must be an object with id and groups only",
  );
  for (const k of STRING_MEMBERS) if (!optString(e[k])) throw new AuditEventError(`${k} must be a string`);
  if (!(absent(e.decision) || DECISIONS.includes(e.decision as Action))) {
    throw new AuditEventError(`decision must be one of ${DECISIONS.join(", ")}`);
  }
  check(absent(e.enforced) || typeof e.enforced === "boolean", "enforced must be a boolean");
  check(absent(e.policy) || isObject(e.policy), "policy must be an object");
  check(absent(e.arguments) || isObject(e.arguments), "arguments must be an object (the tool call's arguments)");
  check(
    absent(e.latencyUs) || (typeof e.latencyUs === "number" && Number.isFinite(e.latencyUs) && e.latencyUs >= 0),
    "latencyUs must be a non-negative number",
  );
  check(
    absent(e.trace) ||
      (isObject(e.trace) &&
        typeof e.trace.traceId === "string" &&
        typeof e.trace.spanId === "string" &&
        onlyKeys(e.trace, TRACE_KEYS)),
    "trace must have traceId and spanId (and optionally parentSpanId) only",
  );
  for (const k of OBJECT_MEMBERS)
    if (!(absent(e[k]) || isObject(e[k]))) throw new AuditEventError(`${k} must be an object`);
}

/** A record's canonical JSON (RFC 8785), identical to canonicalJson(record), written in its fixed key order. */
export function encodeRecord(record: AuditRecord, argumentsJson?: string): string {
  let out = "{";
  for (let i = 0; i < RECORD_KEYS.length; i++) {
    const key = RECORD_KEYS[i] as (typeof RECORD_KEYS)[number];
    const v = record[key];
    if (v === undefined) throw new AuditEventError(`record field ${key} is missing`);
    const json = key === "arguments" && argumentsJson !== undefined ? argumentsJson : canonicalJson(v);
    out += `${i === 0 ? "" : ","}"${key}":${json}`;
  }
  return `${out}}`;
}

let lastMs = Number.NaN;
let lastIso = "";
/** RFC 3339 in UTC with milliseconds; consecutive records mostly share the millisecond. */
function isoTime(ms: number): string {
  if (ms !== lastMs) {
    lastMs = ms;
    lastIso = new Date(ms).toISOString();
  }
  return lastIso;
}

/** Builds the stored record's canonical JSON for an event (without validation; see checkEvent). */
export function buildRecord(
  e: AuditEvent,
  seq: number,
  timeMs: number,
  policy: ArgumentsPolicy,
): { json: string; id: string; time: string } {
  const { digest, storedJson } = applyArgumentsPolicy(e.arguments, policy);
  const id = e.id ?? randomUUID();
  const idJson = e.id === undefined ? `"${id}"` : str(id);
  const time = isoTime(timeMs);
  const p = e.policy;
  // The members in RFC 8785 order (see RECORD_KEYS), written directly: this runs once per
  // call on the gateway's hot path. The small members of known shape (agent, user, rule,
  // trace, policy) are written by hand and fall back to canonicalJson for anything else.
  // The property test checks the result against canonicalJson.
  const json =
    `{"agent":${e.agent == null ? "null" : agentJson(e.agent)},"approval":${opt(e.approval)},"arguments":${storedJson}` +
    `,"argumentsDigest":${digest === null ? "null" : `"${digest}"`},"decision":${str(e.decision)}` +
    `,"detail":${opt(e.detail)},"enforced":${e.enforced === true ? "true" : e.enforced === false ? "false" : "null"}` +
    `,"id":${idJson},"latencyUs":${num(e.latencyUs)},"policy":${p ? policyJson(p) : "null"}` +
    `,"reason":${str(e.reason)},"rule":${e.rule == null ? "null" : ruleJson(e.rule)},"seq":${seq},"server":${str(e.server)}` +
    `,"session":${str(e.session)},"time":"${time}","tool":${str(e.tool)},"trace":${e.trace == null ? "null" : traceJson(e.trace)}` +
    `,"type":"${e.type}","user":${e.user == null ? "null" : userJson(e.user)}}`;
  return { json, id, time };
}

const opt = (v: unknown) => (v === undefined || v === null ? "null" : canonicalJson(v));

/** A quote, backslash, control character or UTF-16 surrogate: what JSON escapes, or I-JSON refuses. */
// biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are what it looks for
const NOT_PLAIN = /["\\\u0000-\u001f\ud800-\udfff]/;

/** Whether a value is a string that JSON writes as it is, in quotes (nothing to escape, no surrogates). */
const plain = (s: unknown): s is string => typeof s === "string" && !NOT_PLAIN.test(s);

const str = (v: unknown) => (v === undefined || v === null ? "null" : plain(v) ? `"${v}"` : canonicalJson(v));
const num = (v: unknown) =>
  v === undefined || v === null ? "null" : typeof v === "number" && Number.isFinite(v) ? `${v}` : canonicalJson(v);

/** Own enumerable keys, when the object is a plain one (what canonicalJson accepts); -1 otherwise. */
function keyCount(o: object): number {
  const proto = Object.getPrototypeOf(o);
  return proto === Object.prototype || proto === null ? Object.keys(o).length : -1;
}

// The members of known shape. Each writes the common case (string members, no extra keys)
// and hands anything else to canonicalJson, which also names what is wrong with it.

/** Only the four members, each written as a string or null. Consecutive records mostly share their policy. */
let lastPolicy: { bundle: unknown; name: unknown; set: unknown; version: unknown; json: string } | null = null;
function policyJson(p: PolicyRef): string {
  const { bundle, name, set, version } = p;
  const m = lastPolicy;
  if (m !== null && m.version === version && m.set === set && m.name === name && m.bundle === bundle) return m.json;
  const json = `{"bundle":${str(bundle)},"name":${str(name)},"set":${str(set)},"version":${str(version)}}`;
  // Remembered only when the members are strings or null (compared by value, never mutated).
  const primitive = (v: unknown) => v === undefined || v === null || typeof v === "string";
  if (primitive(bundle) && primitive(name) && primitive(set) && primitive(version)) {
    lastPolicy = { bundle, name, set, version, json };
  }
  return json;
}

function agentJson(a: AgentRef): string {
  const { model, name, vendor } = a as Partial<AgentRef>;
  if (!plain(name)) return canonicalJson(a);
  let n = 1;
  let out = "{";
  if (model !== undefined) {
    if (!plain(model)) return canonicalJson(a);
    out += `"model":"${model}",`;
    n++;
  }
  out += `"name":"${name}"`;
  if (vendor !== undefined) {
    if (!plain(vendor)) return canonicalJson(a);
    out += `,"vendor":"${vendor}"`;
    n++;
  }
  return keyCount(a) === n ? `${out}}` : canonicalJson(a);
}

function userJson(u: UserRef): string {
  const { groups, id } = u;
  let n = 0;
  let out = "{";
  if (groups !== undefined) {
    if (!Array.isArray(groups)) return canonicalJson(u);
    out += '"groups":[';
    for (let i = 0; i < groups.length; i++) {
      const g = groups[i];
      if (!plain(g)) return canonicalJson(u);
      out += i === 0 ? `"${g}"` : `,"${g}"`;
    }
    out += "]";
    n++;
  }
  if (id !== undefined) {
    if (!plain(id)) return canonicalJson(u);
    out += `${n === 0 ? "" : ","}"id":"${id}"`;
    n++;
  }
  return keyCount(u) === n ? `${out}}` : canonicalJson(u);
}

function traceJson(t: TraceRef): string {
  const { parentSpanId, spanId, traceId } = t;
  if (!plain(spanId) || !plain(traceId)) return canonicalJson(t);
  let n = 2;
  let out = "{";
  if (parentSpanId !== undefined) {
    if (parentSpanId !== null && !plain(parentSpanId)) return canonicalJson(t);
    out += `"parentSpanId":${parentSpanId === null ? "null" : `"${parentSpanId}"`},`;
    n++;
  }
  out += `"spanId":"${spanId}","traceId":"${traceId}"}`;
  return keyCount(t) === n ? out : canonicalJson(t);
}

function ruleJson(r: { index: number; name: string | null }): string {
  const { index, name } = r;
  if (typeof index !== "number" || !Number.isFinite(index) || (name !== null && !plain(name)) || keyCount(r) !== 2) {
    return canonicalJson(r);
  }
  return `{"index":${index},"name":${name === null ? "null" : `"${name}"`}}`;
}

/**
 * The decision record for a policy decision — what the gateway appends, durably,
 * before it forwards (or refuses) a call.
 */
export function decisionEvent(
  decision: Decision,
  input: DecisionInput,
  extra: {
    bundle?: string | null;
    trace?: TraceRef | null;
    latencyUs?: number | null;
    id?: string;
    session?: string | null;
  } = {},
): AuditEvent {
  const agent: AgentRef = { name: input.agent.name };
  if (input.agent.model !== undefined) agent.model = input.agent.model;
  if (input.agent.vendor !== undefined) agent.vendor = input.agent.vendor;
  const user: UserRef | null = input.user ? {} : null;
  if (user && input.user?.id !== undefined) user.id = input.user.id;
  if (user && input.user?.groups !== undefined) user.groups = input.user.groups;
  const event: AuditEvent = {
    type: "decision",
    agent,
    user,
    session: extra.session ?? input.session?.id ?? null,
    server: input.request.server,
    tool: input.request.tool,
    arguments: input.request.arguments ?? {},
    decision: decision.decision,
    enforced: decision.enforced,
    policy: { name: decision.policy, version: decision.version, bundle: extra.bundle ?? null, set: decision.policySet },
    rule: decision.rule,
    reason: decision.reason,
    approval: decision.approval ? { ...decision.approval, approvers: { ...decision.approval.approvers } } : null,
    trace: extra.trace ?? null,
    latencyUs: extra.latencyUs ?? null,
    detail: decision.dryRun ? { dryRun: { ...decision.dryRun } } : null,
  };
  if (extra.id !== undefined) event.id = extra.id;
  return event;
}

const SEQ_KEY = Buffer.from(',"seq":');

/**
 * The seq a stored record carries, read without parsing the whole record. In
 * canonical JSON a quote inside a string is always escaped, so `,"seq":` can only
 * be a member name; the top-level one is the last, because the members that sort
 * after it (server, session, time, tool, trace, type, user) are strings or objects
 * whose keys checkEvent fixes. Undefined when the bytes do not look like a record.
 */
export function recordSeq(bytes: Buffer): number | undefined {
  const at = bytes.lastIndexOf(SEQ_KEY);
  if (at < 0) return undefined;
  let n = 0;
  let i = at + SEQ_KEY.length;
  const start = i;
  for (; i < bytes.length; i++) {
    const c = bytes[i] as number;
    if (c < 0x30 || c > 0x39) break;
    n = n * 10 + (c - 0x30);
  }
  if (i === start || i - start > 16 || bytes[i] !== 0x2c || (bytes[start] === 0x30 && i - start > 1)) return undefined;
  return n;
}

/** Parses a stored record (for query and export; verification works on the bytes). */
export function parseRecord(text: string): AuditRecord {
  return JSON.parse(text) as AuditRecord;
}
