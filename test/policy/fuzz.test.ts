// Fuzz and property tests for the policy engine's robustness (fast-check).
//
//  1. Loader: random text, YAML-shaped text, mutated example files, alias bombs
//     and deep nesting never throw; the result is either a policy set with no
//     errors or errors whose positions lie inside the text.
//  2. Evaluator: hostile call input never makes decide() throw, and every
//     decision is well formed.
//  3. Fail closed: a condition that cannot be evaluated (checked against
//     CelEnvironment as an oracle) never allows; input over the value limits
//     never passes a rule whose conditions read it.
//  4. Hostile regular expressions finish (RE2) and give the right answer.
//
// fast-check picks a fresh seed per run and prints it (with the shrunk
// counterexample and a `path`) when a property fails; rerun with
// FUZZ_SEED=<seed> (and FUZZ_PATH=<path>) to reproduce. FUZZ_SCALE=10 runs
// ten times as many cases.
//
// Each of the dedicated tests near the end of a section was first written for a
// bug these properties found (paste positions after YAML errors, lone
// surrogates, deep nesting killing V8, quadratic loading, $typeName look-alikes
// in arguments); they stay as regression tests.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { describe, it } from "node:test";
import { celError } from "@bufbuild/cel";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import fc from "fast-check";
import { stringify as yamlStringify } from "yaml";
import { TOOL_POLICY_VARIABLES } from "../../src/policy/cel/environments.js";
import { CelEnvironment, type CompiledExpression, isCompiled } from "../../src/policy/cel/runtime.js";
import { T } from "../../src/policy/cel/types.js";
import { type Decision, type DecisionInput, parseDecisionInput } from "../../src/policy/decision.js";
import type { Diagnostic } from "../../src/policy/diagnostics.js";
import { type CompileResult, compilePolicySet, type EngineOptions, type PolicySet } from "../../src/policy/engine.js";
import { loadPolicySources, type SourceFile } from "../../src/policy/loader.js";
import { runPolicyTests } from "../../src/policy/testing.js";

// ---- configuration ----

const SCALE = Number(process.env.FUZZ_SCALE ?? "1") || 1;
const runs = (n: number) => Math.max(1, Math.round(n * SCALE));
function params<T>(numRuns: number): fc.Parameters<T> {
  const p: fc.Parameters<T> = { numRuns: runs(numRuns) };
  if (process.env.FUZZ_SEED !== undefined) p.seed = Number(process.env.FUZZ_SEED);
  if (process.env.FUZZ_PATH !== undefined) p.path = process.env.FUZZ_PATH;
  return p;
}

const REPO = new URL("../../../", import.meta.url); // dist/test/policy/ → the repository
const LOADER_URL = new URL("../../src/policy/loader.js", import.meta.url).href;
const ENGINE_URL = new URL("../../src/policy/engine.js", import.meta.url).href;
const EXAMPLES = ["filesystem", "github", "payments"] as const;
const read = (path: string) => readFileSync(new URL(path, REPO), "utf8");
const EXAMPLE_FILES: SourceFile[] = [
  ...EXAMPLES.flatMap((e) => [
    { file: `examples/policies/${e}/policy.yaml`, text: read(`examples/policies/${e}/policy.yaml`) },
    { file: `examples/policies/${e}/policy.test.yaml`, text: read(`examples/policies/${e}/policy.test.yaml`) },
  ]),
  { file: "test/fixtures/published-example-pasted.yaml", text: read("test/fixtures/published-example-pasted.yaml") },
];

// ---- helpers: loading ----

const SEVERITIES = new Set(["error", "warning"]);

/**
 * Checks one diagnostic against the sources it may point into, including that
 * its column lies inside its line.
 */
function checkDiagnostic(d: Diagnostic, sources: readonly SourceFile[], strict = true): void {
  const src = sources.find((s) => s.file === d.file);
  assert.ok(src, `diagnostic names a file that was not loaded: ${show(d)}`);
  assert.ok(SEVERITIES.has(d.severity), `bad severity: ${show(d)}`);
  assert.ok(typeof d.message === "string" && d.message.trim() !== "", `empty message: ${show(d)}`);
  const lines = src.text.split("\n");
  assert.ok(Number.isInteger(d.line) && d.line >= 1, `line is not a positive integer: ${show(d)}`);
  assert.ok(d.line <= lines.length + 1, `line ${d.line} is past the end (${lines.length} lines): ${show(d)}`);
  assert.ok(Number.isInteger(d.col) && d.col >= 1, `col is not a positive integer: ${show(d)}`);
  if (!strict) return;
  const lineLength = (lines[d.line - 1] ?? "").length;
  assert.ok(
    d.col <= lineLength + 1,
    `col ${d.col} is past the end of line ${d.line} (${lineLength} chars): ${show(d)}`,
  );
}

function show(d: Diagnostic): string {
  const m = d.message.length > 200 ? `${d.message.slice(0, 200)}…` : d.message;
  return `${d.file}:${d.line}:${d.col}: ${d.severity}: ${m}`;
}

/** Loads and compiles; asserts it returned, and that the result is consistent. */
function checkLoad(sources: readonly SourceFile[], options?: EngineOptions, strict = false): CompileResult {
  const result = compilePolicySet(loadPolicySources(sources), options);
  assert.ok(Array.isArray(result.diagnostics));
  const errors = result.diagnostics.filter((d) => d.severity === "error");
  if (result.policySet) assert.equal(errors.length, 0, "a policy set came back with errors");
  else assert.ok(errors.length > 0, "no policy set, but no error says why");
  for (const d of result.diagnostics) checkDiagnostic(d, sources, strict);
  return result;
}

const one = (text: string): SourceFile[] => [{ file: "fuzz.yaml", text }];

const LONE_SURROGATE = /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/g;
/**
 * Text as reading a UTF-8 file gives it: no lone surrogates. (They are the subject of their own
 * test below.)
 */
const wellFormed = (text: string) => text.replace(LONE_SURROGATE, "\ufffd");
function wellFormedDeep(v: unknown): unknown {
  if (typeof v === "string") return wellFormed(v);
  if (Array.isArray(v)) return v.map(wellFormedDeep);
  if (v !== null && typeof v === "object")
    return obj(Object.entries(v).map(([k, x]) => [wellFormed(k), wellFormedDeep(x)]));
  return v;
}

/**
 * Runs a module in a child process, so that a hang can be stopped and a V8
 * fatal error (which no try/catch sees) fails one test instead of the run.
 */
function runIsolated(body: string, timeoutMs: number) {
  const script = `import { loadPolicySources } from ${JSON.stringify(LOADER_URL)};
import { compilePolicySet } from ${JSON.stringify(ENGINE_URL)};
const load = (text) => compilePolicySet(loadPolicySources([{ file: "x.yaml", text }]));
${body}`;
  const r = spawnSync(process.execPath, ["--input-type=module", "-e", script], {
    timeout: timeoutMs,
    encoding: "utf8",
    maxBuffer: 16 * 1024 * 1024,
  });
  const lines = r.stdout
    .split("\n")
    .filter((l) => l.startsWith("{"))
    .map((l) => JSON.parse(l) as Record<string, unknown>);
  const fatal = /FATAL ERROR[^\n]*/.exec(r.stderr)?.[0];
  return { status: r.status, signal: r.signal, timedOut: r.error !== undefined || r.signal !== null, lines, fatal };
}

// ---- helpers: decisions ----

const DIGEST = /^sha256:[0-9a-f]{64}$/;
const ACTIONS = new Set(["allow", "deny", "require_approval"]);

function checkDecision(d: Decision, set: PolicySet): void {
  assert.ok(ACTIONS.has(d.decision), `decision ${String(d.decision)}`);
  assert.equal(typeof d.enforced, "boolean");
  assert.ok(typeof d.reason === "string" && d.reason.trim() !== "", "empty reason");
  assert.match(d.policySet, DIGEST);
  assert.equal(d.policySet, set.digest);
  assert.ok(d.policy === null || typeof d.policy === "string");
  assert.ok(d.version === null || DIGEST.test(d.version), `version ${d.version}`);
  assert.equal(d.policy === null, d.version === null);
  if (d.rule !== null) {
    assert.ok(Number.isInteger(d.rule.index) && d.rule.index >= 0);
    assert.ok(d.rule.name === null || typeof d.rule.name === "string");
  }
  if (d.decision === "require_approval") {
    assert.ok(d.approval, "require_approval without an approval spec");
    assert.ok(d.obligations.approvals.length > 0);
  } else {
    assert.equal(d.approval, null);
    assert.equal(d.obligations.approvals.length, 0);
  }
  if (d.decision === "deny") assert.equal(d.obligations.rateLimits.length, 0, "a deny carries no obligations");
  assert.ok(d.dryRun === null || ACTIONS.has(d.dryRun.decision));
  JSON.stringify(d); // the audit log serialises it
}

/** A JSON round trip, as the gateway receives input, then the input contract. */
function asGatewayInput(value: unknown): DecisionInput {
  const parsed = parseDecisionInput(JSON.parse(JSON.stringify(value)));
  if ("error" in parsed) throw new Error(`generator made invalid input: ${parsed.error}`);
  return printable(parsed);
}

/** Counterexamples can hold megabytes of text: fast-check prints these with long strings cut short. */
function printable<T extends object>(x: T): T {
  Object.defineProperty(x, fc.toStringMethod, { value: () => compact(x), enumerable: false });
  return x;
}

function compact(v: unknown): string {
  return JSON.stringify(v, (_k, x: unknown) => {
    if (typeof x === "string" && x.length > 60) return `${x.slice(0, 20)}…(${x.length} chars)`;
    if (Array.isArray(x) && x.length > 20) return [...x.slice(0, 5), `…(${x.length} items)`];
    return x;
  });
}

const EXAMPLE_SETS: [string, PolicySet][] = [
  ...EXAMPLES.map((e): [string, PolicySet] => [
    e,
    mustCompile([{ file: e, text: read(`examples/policies/${e}/policy.yaml`) }]),
  ]),
  [
    "all examples, global default allow",
    mustCompile(
      EXAMPLES.map((e) => ({ file: e, text: read(`examples/policies/${e}/policy.yaml`) })),
      { defaultDecision: "allow" },
    ),
  ],
];

function mustCompile(sources: SourceFile[], options?: EngineOptions): PolicySet {
  const r = compilePolicySet(loadPolicySources(sources), options);
  assert.ok(r.policySet, r.diagnostics.map(show).join("\n"));
  return r.policySet;
}

// ---- arbitraries: JSON values ----

/** Keys that trip up JavaScript objects and the CEL library's input conversion. */
const TRICKY_KEYS = [
  "__proto__",
  "constructor",
  "prototype",
  "toString",
  "hasOwnProperty",
  "$typeName",
  "value",
  "fields",
  "kind",
  "",
  "0",
  "a.b",
  "a/b",
  "~",
  "é",
  "😀",
];
const TYPE_NAMES = [
  "google.protobuf.StringValue",
  "google.protobuf.DoubleValue",
  "google.protobuf.Struct",
  "google.protobuf.Value",
  "google.protobuf.ListValue",
  "not.a.Type",
];

const anyString = fc.oneof(
  { weight: 4, arbitrary: fc.string({ maxLength: 12 }) },
  { weight: 2, arbitrary: fc.string({ unit: "grapheme", maxLength: 12 }) },
  { weight: 1, arbitrary: fc.string({ unit: "binary", maxLength: 8 }) }, // lone surrogates, NUL, controls
  { weight: 1, arbitrary: fc.constantFrom(...TRICKY_KEYS, ...TYPE_NAMES, "main", "/workspace/a", "../../etc/passwd") },
  { weight: 1, arbitrary: fc.integer({ min: 1000, max: 20_000 }).map((n) => "x".repeat(n)) },
);
const anyKey = fc.oneof(
  { weight: 3, arbitrary: fc.string({ maxLength: 6 }) },
  { weight: 2, arbitrary: fc.constantFrom(...TRICKY_KEYS) },
);
const anyNumber = fc.oneof(
  fc.integer(),
  fc.double({ noNaN: true, noDefaultInfinity: true }),
  fc.constantFrom(0, -0, 1e308, -1e308, 5e-324, 2 ** 53, 2 ** 53 + 2, -(2 ** 63), 2 ** 64, 0.1, -1.5),
);

/** Objects built with Object.fromEntries, so "__proto__" is an own key as JSON.parse makes it. */
const obj = (entries: [string, unknown][]) => Object.fromEntries(entries);

/** JSON values with hostile keys and numbers, up to a few levels deep. */
const jsonValue: fc.Arbitrary<unknown> = fc.letrec<{ value: unknown }>((tie) => ({
  value: fc.oneof(
    { depthSize: "small", withCrossShrink: true },
    anyString,
    anyNumber,
    fc.boolean(),
    fc.constant(null),
    fc.array(tie("value"), { maxLength: 5 }),
    fc.array(fc.tuple(anyKey, tie("value")), { maxLength: 5 }).map(obj),
  ),
})).value;

function nest(depth: number, leaf: unknown, asList: boolean): unknown {
  let v = leaf;
  for (let i = 0; i < depth; i++) v = asList ? [v] : { n: v };
  return v;
}
const BIG = {
  deep40: nest(40, "x", false),
  deep40list: nest(40, 1, true),
  deep3000: nest(3000, "x", false),
  wideList: Array.from({ length: 10_001 }, (_, i) => i),
  wideMap: Object.fromEntries(Array.from({ length: 10_001 }, (_, i) => [`k${i}`, i])),
  longText: "a".repeat(1_048_577),
};
/** Labels are strings: over the limits means too many of them, or too much text. */
const WIDE_LABELS = Object.fromEntries(Array.from({ length: 10_001 }, (_, i) => [`k${i}`, "v"]));
const bigValue = fc.constantFrom(...Object.values(BIG));

// ---- arbitraries: decision input against the examples ----

const KNOWN_AGENTS = ["dev-assistant", "billing-assistant", "support-assistant", "intern-bot"];
const KNOWN_SERVERS = ["github", "filesystem", "payments", "billing-db"];
const KNOWN_TOOLS = [
  ..."create_issue list_issues get_file_contents create_pull_request merge_pull_request delete_file".split(" "),
  ..."create_or_update_file read_file read_multiple_files get_file_info list_directory write_file edit_file".split(" "),
  ..."move_file query create_refund create_payout list_charges get_".split(" "),
];
const KNOWN_ARGS = ["path", "paths", "base", "sql", "amount", "currency", "charge_id", "content", "reason", "q"];

const nonEmpty = fc.string({ unit: "grapheme", minLength: 1, maxLength: 20 });
const name = (known: string[]) =>
  fc.oneof(
    { weight: 6, arbitrary: fc.constantFrom(...known) },
    { weight: 2, arbitrary: nonEmpty },
    { weight: 1, arbitrary: fc.integer({ min: 10_000, max: 200_000 }).map((n) => "n".repeat(n)) },
  );
const stringMap = fc
  .array(
    fc.tuple(
      fc.oneof(fc.constantFrom("team", ...TRICKY_KEYS), fc.string({ maxLength: 8 })),
      fc.oneof(fc.constant("platform"), anyString),
    ),
    { maxLength: 4 },
  )
  .map(obj);

/** A plausible argument value for a known key: the right type, the wrong type, or something huge. */
const argValue = fc.oneof(
  {
    weight: 3,
    arbitrary: fc.constantFrom(
      "main",
      "feature/x",
      "/workspace/a.txt",
      "/workspace/../.ssh/id_rsa",
      "select 1",
      "drop table x; --",
      "EUR",
      "ch_ABCDEFGH12",
      ".env",
    ),
  },
  { weight: 3, arbitrary: jsonValue },
  { weight: 1, arbitrary: fc.array(fc.constantFrom("/workspace/a", "/home/u/.ssh/id_rsa", "x"), { maxLength: 4 }) },
  { weight: 1, arbitrary: bigValue },
);
const argumentsArb = fc
  .tuple(
    fc.array(fc.tuple(fc.constantFrom(...KNOWN_ARGS), argValue), { maxLength: 4 }),
    fc.array(fc.tuple(anyKey, jsonValue), { maxLength: 3 }),
  )
  .map(([known, extra]) => obj([...extra, ...known]));

const gatewayInput = fc
  .record(
    {
      agent: fc.record(
        { name: name(KNOWN_AGENTS), labels: stringMap, model: anyString, vendor: anyString },
        { requiredKeys: ["name"] },
      ),
      user: fc.record(
        {
          id: anyString,
          groups: fc.array(fc.oneof(fc.constantFrom("support", "finance-approvers", "platform-leads"), anyString), {
            maxLength: 4,
          }),
          claims: fc.array(fc.tuple(anyKey, jsonValue), { maxLength: 3 }).map(obj),
        },
        { requiredKeys: [] },
      ),
      request: fc.record(
        {
          server: name(KNOWN_SERVERS),
          tool: name(KNOWN_TOOLS),
          arguments: argumentsArb,
          method: fc.constantFrom("tools/call", "tools/list", "x"),
        },
        { requiredKeys: ["server", "tool"] },
      ),
      session: fc.record(
        {
          id: anyString,
          calls: fc
            .array(
              fc.tuple(
                fc.oneof(fc.constantFrom(...KNOWN_TOOLS), anyKey),
                fc.oneof(fc.nat(), fc.constant(Number.MAX_SAFE_INTEGER)),
              ),
              { maxLength: 3 },
            )
            .map(obj),
          labels: stringMap,
        },
        { requiredKeys: [] },
      ),
      now: fc.integer({ min: -62_135_596_800_000, max: 253_402_300_799_000 }).map((ms) => new Date(ms).toISOString()),
    },
    { requiredKeys: ["agent", "request"] },
  )
  .map(asGatewayInput);

/** Callers that reach the examples' rules with conditions; the arguments stay random. */
const REACH: { agent: DecisionInput["agent"]; server: string; tool: string; groups?: string[] }[] = [
  { agent: { name: "dev-assistant" }, server: "github", tool: "create_pull_request" },
  { agent: { name: "x", labels: { team: "platform" } }, server: "filesystem", tool: "read_file" },
  { agent: { name: "x", labels: { team: "platform" } }, server: "filesystem", tool: "read_multiple_files" },
  { agent: { name: "x", labels: { team: "platform" } }, server: "filesystem", tool: "write_file" },
  { agent: { name: "support-assistant" }, server: "payments", tool: "query" },
  { agent: { name: "support-assistant" }, server: "billing-db", tool: "create_refund", groups: ["support"] },
];
const reach = fc.constantFrom(...REACH);
function reaching(input: DecisionInput, r: (typeof REACH)[number]): DecisionInput {
  return printable({
    ...input,
    agent: r.agent,
    user: r.groups ? { ...input.user, groups: r.groups } : input.user,
    request: { ...input.request, server: r.server, tool: r.tool },
  });
}
/** Gateway input, half of it aimed at rules with conditions. */
const aimedInput = fc.tuple(gatewayInput, fc.option(reach)).map(([input, r]) => (r ? reaching(input, r) : input));

// ---- 1. loader robustness ----

/** Characters that mean something to YAML, or to a parser's idea of a line. */
const YAML_SPECIALS = [
  "!",
  "&",
  "*",
  "[",
  "]",
  "{",
  "}",
  ":",
  "#",
  "'",
  '"',
  "\\",
  "\t",
  "\0",
  "\r",
  "|",
  ">",
  "-",
  "?",
  ",",
  "%",
  "@",
  "`",
  "<<",
  "\u00a0",
  "\u2028",
  "\ufeff",
  "\ud800",
  "\u202e",
  "😀",
  "é",
];

/** Words and values of the policy format, and YAML's own markers. */
const YAML_WORDS = [
  ..."apiVersion kind metadata name spec agent agents agentSelector matchLabels mcpServer".split(" "),
  ..."mcpServers mode defaultAction rules tools action conditions cel approval timeout".split(" "),
  ..."rateLimit requests per key arguments message users groups cases input expect".split(" "),
  ..."ToolPolicy GuardrailPolicy ArtifactPolicy PolicyTest warden/v1 allow deny require_approval".split(" "),
  ..."enforce audit null true 1e309 0x1F 30m -1 2h ~ | >- << &a *a !!str !!binary --- ...".split(" "),
  "'*'",
  '"*"',
  "[a, b]",
  "{a: 1}",
  "!request.arguments.x",
  "'1 == 1'",
  "'\\\\]'",
  "\\]",
];
const yamlToken = fc.oneof(
  { weight: 3, arbitrary: fc.constantFrom(...YAML_WORDS) },
  { weight: 2, arbitrary: fc.constantFrom(...YAML_SPECIALS) },
  { weight: 2, arbitrary: fc.string({ maxLength: 8 }) },
  { weight: 1, arbitrary: fc.string({ unit: "binary", maxLength: 6 }) },
);
const yamlLine = fc
  .tuple(
    fc.nat({ max: 10 }),
    fc.constantFrom("", "", "- ", "? ", ": ", "\t", "- - "),
    fc.array(yamlToken, { minLength: 0, maxLength: 3 }),
    fc.constantFrom("", "", ":", ": ", ", ", " # c"),
    fc.array(yamlToken, { maxLength: 2 }),
  )
  .map(([indent, lead, key, sep, value]) => `${" ".repeat(indent)}${lead}${key.join(" ")}${sep}${value.join(" ")}`);
const yamlText = fc
  .array(
    fc.oneof(
      { weight: 8, arbitrary: yamlLine },
      { weight: 1, arbitrary: fc.constantFrom("---", "...", "", "%YAML 1.2", "#") },
    ),
    { maxLength: 40 },
  )
  .map((lines) => lines.join("\n"));

/** Policy-shaped documents (right keys, random values) written out by the yaml library. */
const policyishValue = fc.oneof(
  jsonValue,
  fc.constantFrom("allow", "deny", "require_approval", "*", "enforce", "audit", "30m", "1h", "x"),
  fc.array(fc.constantFrom("get_*", "*", "a", ""), { maxLength: 3 }),
);
const ruleish = fc.record(
  {
    name: policyishValue,
    tools: fc.oneof(fc.array(fc.constantFrom("read_*", "a", "*", "b"), { minLength: 1, maxLength: 3 }), policyishValue),
    action: fc.oneof(fc.constantFrom("allow", "deny", "require_approval"), policyishValue),
    conditions: fc.array(
      fc.record({
        cel: fc.oneof(
          fc.constantFrom(
            "true",
            "request.arguments.x == 1",
            "!has(request.arguments.y)",
            "size(",
            "unknown_var",
            "request.arguments.q.matches('(')",
          ),
          anyString,
        ),
      }),
      { maxLength: 2 },
    ),
    approval: fc.record(
      { timeout: fc.oneof(fc.constantFrom("5m", "0s", "-1m", "1y"), policyishValue) },
      { requiredKeys: [] },
    ),
    rateLimit: fc.record(
      { requests: fc.oneof(fc.integer(), policyishValue), per: fc.constantFrom("1m", "x") },
      { requiredKeys: [] },
    ),
    arguments: fc.oneof(
      fc.constant({ type: "object" }),
      fc.constant({ type: "object", properties: { a: { pattern: "(a+)+$" } } }),
      fc.constant({ maximun: 1 }),
      policyishValue,
    ),
    groups: fc.array(fc.constantFrom("g", ""), { maxLength: 2 }),
  },
  { requiredKeys: ["tools", "action"] },
);
const policyishDoc = fc
  .record(
    {
      apiVersion: fc.constantFrom("warden/v1", "warden/v2", 1),
      kind: fc.constantFrom(
        "ToolPolicy",
        "ToolPolicy",
        "GuardrailPolicy",
        "ArtifactPolicy",
        "PolicyTest",
        "toolpolicy",
      ),
      metadata: fc.record(
        { name: fc.oneof(fc.constantFrom("p", "q", "x_y"), anyString), labels: stringMap },
        { requiredKeys: ["name"] },
      ),
      spec: fc.record(
        {
          agent: fc.oneof(fc.constantFrom("*", "a"), policyishValue),
          mcpServer: fc.oneof(fc.constantFrom("*", "s"), policyishValue),
          mode: policyishValue,
          defaultAction: policyishValue,
          rules: fc.array(ruleish, { maxLength: 3 }),
          extra: policyishValue,
        },
        { requiredKeys: ["agent", "mcpServer"] },
      ),
    },
    { requiredKeys: ["kind", "metadata", "spec"] },
  )
  .map((doc) => yamlStringify(wellFormedDeep(doc)));

type Mutation = { op: string; a: number; b: number; s: string };
const mutation: fc.Arbitrary<Mutation> = fc.record({
  op: fc.constantFrom(
    "delete",
    "duplicate",
    "swap",
    "indent",
    "dedent",
    "tab",
    "insert",
    "insert",
    "replace",
    "longLine",
    "crlf",
    "truncate",
    "joinLines",
    "splitLine",
  ),
  a: fc.nat(),
  b: fc.nat(),
  s: fc.oneof(
    { weight: 4, arbitrary: fc.constantFrom(...YAML_SPECIALS) },
    {
      weight: 1,
      arbitrary: fc.constantFrom(
        "- ",
        "---\n",
        "&a ",
        "*a",
        "!!str ",
        "? ",
        "\n  ",
        "{",
        "[[",
        "'",
        "%TAG ! tag:x,2000:\n",
      ),
    },
    { weight: 1, arbitrary: fc.string({ unit: "grapheme", maxLength: 6 }) },
    { weight: 1, arbitrary: fc.string({ unit: "binary", maxLength: 4 }) },
  ),
});

function mutate(text: string, mutations: readonly Mutation[]): string {
  let lines = text.split("\n");
  for (const { op, a, b, s } of mutations) {
    const n = lines.length;
    const i = a % n;
    const j = b % n;
    const line = lines[i] ?? "";
    switch (op) {
      case "delete":
        lines.splice(i, 1);
        break;
      case "duplicate":
        lines.splice(i, 0, line);
        break;
      case "swap":
        lines[i] = lines[j] ?? "";
        lines[j] = line;
        break;
      case "indent":
        lines[i] = " ".repeat((b % 4) + 1) + line;
        break;
      case "dedent":
        lines[i] = line.replace(new RegExp(`^ {1,${(b % 4) + 1}}`), "");
        break;
      case "tab":
        lines[i] = line.replace(/^( *)/, (m) => `${m.slice(2)}\t`);
        break;
      case "insert": {
        const at = b % (line.length + 1);
        lines[i] = line.slice(0, at) + s + line.slice(at);
        break;
      }
      case "replace": {
        const at = b % (line.length + 1);
        lines[i] = line.slice(0, at) + s + line.slice(at + s.length);
        break;
      }
      case "longLine": {
        // Not brackets: thousands of nested [ or { are the isolated deep-nesting test's business (they can abort node).
        const filler = /[[{]/.test(s) ? "x" : s;
        lines.splice(i, 0, `${line}${filler.repeat(Math.ceil(4000 / Math.max(1, filler.length)))}`);
        break;
      }
      case "crlf":
        lines = lines.map((l) => `${l}\r`);
        break;
      case "truncate": {
        const joined = lines.join("\n");
        lines = joined.slice(0, a % (joined.length + 1)).split("\n");
        break;
      }
      case "joinLines":
        if (i + 1 < n) lines.splice(i, 2, line + s + (lines[i + 1] ?? ""));
        break;
      case "splitLine": {
        const at = b % (line.length + 1);
        lines.splice(i, 1, line.slice(0, at), line.slice(at));
        break;
      }
    }
    if (lines.length === 0) lines = [""];
  }
  return lines.join("\n");
}

/** What a loaded policy set must still do: run its own tests and decide, without throwing. */
function exercise(set: PolicySet): void {
  runPolicyTests(set);
  for (const server of KNOWN_SERVERS) {
    const d = set.decide({
      agent: { name: "dev-assistant", labels: { team: "platform" } },
      request: { server, tool: "read_file", arguments: { path: "/workspace/x" } },
    });
    checkDecision(d, set);
  }
}

describe("fuzz: the loader never throws, and every error has a place in the text", () => {
  it("random strings", () => {
    fc.assert(
      fc.property(
        fc.oneof(
          fc.string({ maxLength: 300 }),
          fc.string({ unit: "grapheme", maxLength: 200 }),
          fc.string({ unit: "binary", maxLength: 200 }),
          fc.string({ unit: fc.constantFrom(...YAML_SPECIALS, " ", "\n", "a", "1"), maxLength: 200 }),
        ),
        (text) => {
          checkLoad(one(wellFormed(text)));
        },
      ),
      params(400),
    );
  });

  it("random YAML-shaped text", () => {
    fc.assert(
      fc.property(yamlText.map(wellFormed), (text) => {
        const r = checkLoad(one(text));
        if (r.policySet) exercise(r.policySet);
      }),
      params(400),
    );
  });

  it("policy-shaped documents with random values", () => {
    fc.assert(
      fc.property(fc.array(policyishDoc, { minLength: 1, maxLength: 3 }), (docs) => {
        const r = checkLoad(one(docs.join("---\n")));
        if (r.policySet) exercise(r.policySet);
      }),
      params(200),
    );
  });

  it("mutations of the example policies and their tests (deleted, repeated, swapped, re-indented lines, inserted characters)", () => {
    const policies = EXAMPLE_FILES.filter((f) => !f.file.endsWith(".test.yaml"));
    fc.assert(
      fc.property(
        fc.nat({ max: policies.length - 1 }),
        fc.array(mutation, { minLength: 1, maxLength: 5 }),
        fc.array(mutation, { maxLength: 3 }),
        (which, m1, m2) => {
          const policy = policies[which] as SourceFile;
          const tests = EXAMPLE_FILES.find(
            (f) => f.file !== policy.file && f.file === policy.file.replace("policy.yaml", "policy.test.yaml"),
          );
          const sources = [{ file: policy.file, text: wellFormed(mutate(policy.text, m1)) }];
          if (tests) sources.push({ file: tests.file, text: wellFormed(mutate(tests.text, m2)) });
          const r = checkLoad(sources);
          if (r.policySet) exercise(r.policySet);
          // Loading is deterministic: the same text gives the same answer.
          const again = compilePolicySet(loadPolicySources(sources));
          assert.deepEqual(again.diagnostics, r.diagnostics);
          assert.equal(again.policySet?.digest, r.policySet?.digest);
        },
      ),
      params(300),
    );
  });

  it("the unmutated examples load without errors (the mutation baseline)", () => {
    for (const e of EXAMPLES) {
      const sources = EXAMPLE_FILES.filter((f) => f.file.startsWith(`examples/policies/${e}/`));
      const r = checkLoad(sources);
      assert.ok(r.policySet, e);
      assert.equal(runPolicyTests(r.policySet).failed, 0, e);
    }
  });

  it("every diagnostic's column lies inside its line, also after a YAML syntax error", () => {
    fc.assert(
      fc.property(
        fc.oneof(
          yamlText,
          fc
            .tuple(fc.nat({ max: EXAMPLE_FILES.length - 1 }), fc.array(mutation, { minLength: 1, maxLength: 5 }))
            .map(([i, m]) => mutate((EXAMPLE_FILES[i] as SourceFile).text, m)),
        ),
        (text) => {
          checkLoad(one(wellFormed(text)), undefined, true);
        },
      ),
      params(300),
    );
    // The reduced case: "unknown kind" is on line 6, not line 3.
    const d = compilePolicySet(loadPolicySources(one("[a]x\nb\nc\nd\n---\nkind: Foo"))).diagnostics.find((x) =>
      x.message.startsWith("unknown kind"),
    );
    assert.equal(d?.line, 6, d && show(d));
  });

  it("a lone UTF-16 surrogate in a policy (raw, or as a YAML \\u escape) is an error diagnostic, not an exception", () => {
    const fields = [
      (x: string) =>
        `kind: ToolPolicy\nmetadata:\n  name: p\n  description: ${x}\nspec:\n  agent: "*"\n  mcpServer: "*"\n`,
      (x: string) =>
        `kind: ToolPolicy\nmetadata:\n  name: p\n  labels: {a: ${x}}\nspec:\n  agent: "*"\n  mcpServer: "*"\n`,
      (x: string) =>
        `kind: ToolPolicy\nmetadata: {name: p}\nspec:\n  agent: "*"\n  mcpServer: "*"\n  rules:\n    - tools: [a]\n      action: deny\n      message: ${x}\n`,
      (x: string) =>
        `kind: PolicyTest\nmetadata: {name: t}\nspec:\n  cases:\n    - name: ${x}\n      input: {agent: {name: a}, request: {server: s, tool: t}}\n      expect: {decision: deny}\n`,
    ];
    const surrogate = fc.constantFrom("\ud800", "\udfff", "\udbff");
    const written = fc
      // `rest` must not end the quoted scalar or escape the surrogate's own backslash.
      .tuple(
        surrogate,
        fc.constantFrom("raw", "escape"),
        fc.string({ maxLength: 4 }).filter((r) => !/["\\]/.test(r)),
      )
      .map(([ch, how, rest]) =>
        how === "raw" ? `"${rest}${ch}"` : `"${rest}\\u${(ch.codePointAt(0) as number).toString(16)}"`,
      );
    fc.assert(
      fc.property(fc.nat({ max: fields.length - 1 }), written, (i, x) => {
        const text = (fields[i] as (x: string) => string)(x);
        let r: CompileResult | undefined;
        try {
          r = checkLoad(one(text));
        } catch (err) {
          assert.fail(`loading threw ${(err as Error).name}: ${(err as Error).message}\n${text}`);
        }
        assert.equal(r.policySet, undefined, "text that is not valid Unicode cannot be a policy");
      }),
      params(50),
    );
  });

  it("YAML alias bombs (billion laughs) are refused quickly, wherever they are", () => {
    let laughs = 'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n';
    for (let i = 1; i < 10; i++) {
      const [prev, cur] = [String.fromCharCode(96 + i), String.fromCharCode(97 + i)];
      laughs += `${cur}: &${cur} [${Array(9).fill(`*${prev}`).join(",")}]\n`;
    }
    const indented = (n: number) =>
      laughs
        .trimEnd()
        .split("\n")
        .map((l) => " ".repeat(n) + l)
        .join("\n");
    const head = "kind: ToolPolicy\nmetadata:\n  name: bomb\nspec:\n  agent: '*'\n  mcpServer: '*'\n";
    const texts = [
      laughs,
      `${head}  rules:\n    - tools: [a]\n      action: allow\n      arguments:\n${indented(8)}\n`,
      `kind: ToolPolicy\nmetadata:\n  name: bomb\n  labels:\n${indented(4)}\nspec:\n  agent: '*'\n  mcpServer: '*'\n`,
      `${head}  rules:\n    - tools: [a]\n      action: allow\n      conditions:\n        - cel: &c "true"\n${Array(5000).fill("        - cel: *c\n").join("")}`,
      `${head}  x: &x [*x]\n`,
      `${head}  <<: &m {defaultAction: allow}\n  rules: [{tools: ['*'], action: allow, <<: *m}]\n`,
      `kind: PolicyTest\nmetadata: {name: t}\nspec:\n  cases:\n    - name: x\n      input:\n${indented(8)}\n      expect: {decision: deny}\n`,
    ];
    for (const text of texts) {
      const start = performance.now();
      const r = checkLoad(one(text));
      const ms = performance.now() - start;
      assert.equal(r.policySet, undefined, "aliases are not expanded, so this cannot load");
      assert.ok(ms < 5000, `took ${ms.toFixed(0)} ms`);
    }
  });

  it("deep nesting up to a few hundred levels is refused quickly (in process)", () => {
    const shapes: Record<string, (n: number) => string> = {
      flowSeq: (n) => "[".repeat(n) + "]".repeat(n),
      flowMap: (n) => `${"{a: ".repeat(n)}1${"}".repeat(n)}`,
      blockMap: (n) => `${Array.from({ length: n }, (_, i) => `${" ".repeat(i)}a:`).join("\n")} 1`,
      blockSeq: (n) => `${Array.from({ length: n }, (_, i) => `${" ".repeat(2 * i)}-`).join("\n")} 1`,
      inArguments: (n) =>
        `kind: ToolPolicy\nmetadata: {name: x}\nspec:\n  agent: '*'\n  mcpServer: '*'\n  rules:\n    - tools: [a]\n      action: allow\n      arguments: {type: object, const: ${"[".repeat(n)}${"]".repeat(n)}}\n`,
      inCel: (n) =>
        `kind: ToolPolicy\nmetadata: {name: x}\nspec:\n  agent: '*'\n  mcpServer: '*'\n  rules:\n    - tools: [a]\n      action: allow\n      conditions: [{cel: "${"(".repeat(n)}true${")".repeat(n)}"}]\n`,
    };
    for (const [shape, make] of Object.entries(shapes)) {
      for (const n of [10, 33, 64, 65, 100, 200, 300]) {
        const start = performance.now();
        const r = checkLoad(one(make(n)));
        const ms = performance.now() - start;
        assert.ok(ms < 5000, `${shape} ${n}: took ${ms.toFixed(0)} ms`);
        if (shape === "inCel") assert.equal(r.policySet === undefined, n > 32, `${shape} ${n}: CEL nesting limit`);
      }
    }
  });

  it("deep nesting of thousands of levels neither throws nor kills the process (isolated)", () => {
    const r = runIsolated(
      `
const shapes = {
  flowSeq: (n) => "[".repeat(n) + "]".repeat(n),
  flowMap: (n) => "{a: ".repeat(n) + "1" + "}".repeat(n),
  mixed: (n) => "a: " + "[{b: ".repeat(n) + "1" + "}]".repeat(n),
  blockSeq: (n) => Array.from({ length: n }, (_, i) => " ".repeat(i) + "-").join("\\n") + " 1",
  // Compact nesting on one line: each "- " or "? " is a level (once crashed V8 too).
  compactSeq: (n) => "- ".repeat(n) + "x",
  compactKey: (n) => "a:\\n  - " + "? ".repeat(n) + "{",
};
const started = performance.now();
for (const [shape, make] of Object.entries(shapes)) {
  for (const n of [600, 800, 900, 1000, 1003, 1100, 1500, 2000, 3000, 10000, 100000]) {
    if (shape === "blockSeq" && n > 2500) continue; // n²/2 characters
    const text = make(n);
    const t = performance.now();
    let outcome;
    let same;
    try {
      const r = load(text);
      outcome = r.policySet ? "loaded" : r.diagnostics.some((d) => d.severity === "error") ? "error" : "no-error";
      // The same text must give the same diagnostics, not ones that depend on how much stack was left.
      same = JSON.stringify(load(text).diagnostics) === JSON.stringify(r.diagnostics);
    } catch (e) {
      outcome = "threw: " + e.message;
    }
    console.log(JSON.stringify({ shape, n, outcome, same, ms: Math.round(performance.now() - t) }));
  }
}
console.log(JSON.stringify({ done: true, ms: Math.round(performance.now() - started) }));
`,
      30_000,
    );
    const last = r.lines.filter((l) => l.shape !== undefined).at(-1);
    assert.equal(r.fatal, undefined, `the process died with "${r.fatal}" after ${JSON.stringify(last)}`);
    assert.equal(r.timedOut, false, `did not finish in time; last: ${JSON.stringify(last)}`);
    assert.equal(r.status, 0);
    for (const l of r.lines) {
      if (l.shape === undefined) continue;
      assert.equal(l.outcome, "error", JSON.stringify(l));
      assert.equal(l.same, true, `diagnostics differ between two loads: ${JSON.stringify(l)}`);
      assert.ok((l.ms as number) < 10_000, JSON.stringify(l));
    }
    assert.ok(r.lines.some((l) => l.done === true));
  });

  it("loading hostile repetitive text costs about what parsing the YAML costs (isolated)", () => {
    // Each shape is repeated to 16, 32 and 64 KiB. The yaml library's own parse of the same text is the
    // yardstick (it is linear, and it scales with the machine); a shape stops at the first load over budget.
    const r = runIsolated(
      `
import { LineCounter, parseAllDocuments } from ${JSON.stringify(import.meta.resolve("yaml"))};
const shapes = [
  ["unexpectedTokens", "a: 1\\n", "]\\n"],
  ["flowJunk", "a: [\\n", "b: }\\n"],
  ["quotesInPlainText", "kind: ToolPolicy\\nmetadata:\\n  description: ", "x'"],
  ["badIndent", "a:\\n", "  b: 1\\n   c: 2\\n"],
  ["tags", "a:\\n", "  - !x y\\n"],
  ["markdownEscapes", "a:\\n", "  - x\\\\]\\n"],
  ["duplicateKeys", "", "a: 1\\n"],
  ["celTags", "a:\\n", "  - cel: !x\\n"],
  ["commentQuotes", "", "# x'x'x'x'x'\\n"],
];
const time = (f) => { const t = performance.now(); f(); return performance.now() - t; };
for (const [shape, prefix, unit] of shapes) {
  for (const kib of [16, 32, 64]) {
    const text = prefix + unit.repeat(Math.ceil((kib * 1024) / unit.length));
    const yamlMs = time(() => parseAllDocuments(text, { lineCounter: new LineCounter(), prettyErrors: false, strict: true, uniqueKeys: true }));
    const ms = time(() => load(text));
    const budget = 3 * yamlMs + 250;
    console.log(JSON.stringify({ shape, kib, ms: Math.round(ms), yamlMs: Math.round(yamlMs), over: ms > budget }));
    if (ms > budget) break;
  }
}
console.log(JSON.stringify({ done: true }));
`,
      60_000,
    );
    assert.equal(r.fatal, undefined);
    assert.equal(r.timedOut, false, `did not finish; last: ${JSON.stringify(r.lines.at(-1))}`);
    const over = r.lines.filter((l) => l.over === true);
    assert.deepEqual(over, [], "loads that cost more than 3× the YAML parse + 250 ms");
    assert.ok(r.lines.some((l) => l.done === true));
  });
});

// ---- 2. evaluator robustness ----

describe("fuzz: decide() never throws on hostile input and always answers in shape", () => {
  it("gateway input (JSON, validated) against the example policies", () => {
    fc.assert(
      fc.property(fc.nat({ max: EXAMPLE_SETS.length - 1 }), aimedInput, (which, input) => {
        const set = (EXAMPLE_SETS[which] as [string, PolicySet])[1];
        const d = set.decide(input);
        checkDecision(d, set);
        assert.deepEqual(set.decide(input), d, "the same input gives the same decision");
      }),
      params(300),
    );
  });

  it("input over the value limits, anywhere in the call, against the example policies", () => {
    const place = fc.constantFrom("arguments", "nested argument", "claims", "labels", "session labels");
    fc.assert(
      fc.property(fc.nat({ max: EXAMPLE_SETS.length - 1 }), aimedInput, place, bigValue, (which, input, where, big) => {
        const set = (EXAMPLE_SETS[which] as [string, PolicySet])[1];
        const over = withOversize(input, where, big);
        const d = set.decide(over);
        checkDecision(d, set);
        assertNoPassFromConditionalRule(set, d, "over the value limits", VARIABLE_OF_PLACE[where]);
      }),
      params(100),
    );
  });

  it("arguments that are a list, not an object (an unvalidated caller), never throw and never pass a condition", () => {
    const list = fc.array(jsonValue, { maxLength: 4 });
    fc.assert(
      fc.property(fc.nat({ max: EXAMPLE_SETS.length - 1 }), gatewayInput, reach, list, (which, input, r, args) => {
        const set = (EXAMPLE_SETS[which] as [string, PolicySet])[1];
        const aimed = reaching(input, r);
        const raw = { ...aimed, request: { ...aimed.request, arguments: args as unknown as Record<string, unknown> } };
        const d = set.decide(raw);
        checkDecision(d, set);
        // A list has no named fields: every condition that reads one fails, so nothing conditional passes.
        for (const x of [d, d.dryRun]) {
          if (x === null || x.rule === null || x.policy === null) continue;
          const rule = set.toolPolicies.find((p) => p.name === x.policy)?.rules[x.rule.index];
          if (rule && rule.conditions.length > 0) assert.equal(x.decision, "deny", x.reason);
        }
      }),
      params(100),
    );
  });

  it("typed but unvalidated input (what an in-process caller can pass) never throws", () => {
    const calls = fc.dictionary(
      fc.constantFrom("a", "create_pull_request"),
      fc.constantFrom(1.5, -1, Number.NaN, Number.POSITIVE_INFINITY, 2 ** 60),
      { minKeys: 1, maxKeys: 2 },
    );
    const odd = fc.constantFrom<unknown>(
      undefined,
      Number.NaN,
      Number.NEGATIVE_INFINITY,
      10n,
      new Date(0),
      new Map([["a", 1]]),
      Symbol("s"),
      () => 1,
      Object.create(null),
    );
    fc.assert(
      fc.property(
        fc.nat({ max: EXAMPLE_SETS.length - 1 }),
        gatewayInput,
        reach,
        calls,
        odd,
        fc.boolean(),
        (which, input, r, c, v, useCalls) => {
          const set = (EXAMPLE_SETS[which] as [string, PolicySet])[1];
          const aimed = reaching(input, r);
          const raw: DecisionInput = useCalls
            ? { ...aimed, session: { ...aimed.session, calls: c } }
            : {
                ...aimed,
                request: { ...aimed.request, arguments: { ...aimed.request.arguments, base: v, path: v, sql: v } },
              };
          let d: Decision;
          try {
            d = set.decide(raw);
          } catch (err) {
            assert.fail(`decide threw ${(err as Error).name}: ${(err as Error).message}`);
          }
          checkDecision(d, set);
        },
      ),
      params(100),
    );
  });
});

function withOversize(input: DecisionInput, where: string, big: unknown): DecisionInput {
  switch (where) {
    case "arguments":
      return { ...input, request: { ...input.request, arguments: { ...input.request.arguments, big } } };
    case "nested argument":
      return {
        ...input,
        request: {
          ...input.request,
          arguments: obj([...Object.entries(input.request.arguments ?? {}), ["x", { y: [big] }]]),
        },
      };
    case "claims":
      return { ...input, user: { ...input.user, claims: { big } } };
    case "labels":
      return {
        ...input,
        agent: { ...input.agent, labels: typeof big === "string" ? { ...input.agent.labels, big } : WIDE_LABELS },
      };
    default:
      return { ...input, session: { ...input.session, labels: typeof big === "string" ? { big } : WIDE_LABELS } };
  }
}

/** The CEL variable that holds each place withOversize() can put an oversized value. */
const VARIABLE_OF_PLACE: Record<string, string> = {
  arguments: "request",
  "nested argument": "request",
  claims: "user",
  labels: "agent",
  "session labels": "session",
};

/**
 * A rule whose conditions read the oversized variable can only have decided by
 * denying: CEL could not be handed that variable. (Limits apply per variable an
 * expression reads; a variable nobody reads is never converted.)
 */
function assertNoPassFromConditionalRule(set: PolicySet, d: Decision, why: string, variable?: string): void {
  const decided = [d, d.dryRun].filter((x) => x !== null);
  for (const x of decided) {
    if (x.rule === null || x.policy === null) continue;
    const policy = set.toolPolicies.find((p) => p.name === x.policy);
    const rule = policy?.rules[x.rule.index];
    if (!rule || rule.conditions.length === 0) continue;
    if (variable !== undefined && !rule.conditions.some((c) => new RegExp(`\\b${variable}\\b`).test(c.source)))
      continue;
    assert.equal(
      x.decision,
      "deny",
      `${why}: ${x.decision} by ${x.policy} rules[${x.rule.index}], which has conditions: ${x.reason}`,
    );
    assert.match(x.reason, /could not be evaluated/);
  }
}

// ---- 3. conditions that cannot be evaluated never allow ----

const ARG_KEYS = ["a", "b", "s", "n", "l", "m"] as const;
const sel = fc.constantFrom(...ARG_KEYS).map((k) => `request.arguments.${k}`);
const strLit = fc.constantFrom("''", "'x'", "'abc'", "'main'", "'/w/'", "'é'", '"a\\\\b"', "'\\u00e9'");
const numLit = fc.constantFrom("0", "1", "3", "-1", "2.5", "1e300", "100.0", "-0.0", "9223372036854775807");
const lit = fc.oneof(
  strLit,
  numLit,
  fc.constantFrom("true", "false", "null", "[]", "['x', 'y']", "[1, 2.5]", "{'k': 1}", "{}"),
);
/** Values whose type only the data decides (dyn): the usual source of run-time errors. */
const dynValue = fc.oneof(
  { weight: 4, arbitrary: sel },
  {
    weight: 2,
    arbitrary: fc.constantFrom(
      "request.arguments.m.k",
      "request.arguments.m['k']",
      "request.arguments.l[0]",
      "request.arguments.l[3]",
      "request.arguments['s']",
      "user.claims.role",
    ),
  },
  {
    weight: 1,
    arbitrary: fc.tuple(fc.constantFrom("int", "double", "string", "uint"), sel).map(([f, s]) => `${f}(${s})`),
  },
  {
    weight: 1,
    arbitrary: fc
      .tuple(sel, fc.constantFrom("+", "-", "*", "/", "%"), fc.oneof(numLit, sel))
      .map(([a, op, b]) => `(${a} ${op} ${b})`),
  },
);
/** Declared strings: missing when the caller left them out (agent.labels.team, user.id, session.id). */
const strValue = fc.constantFrom(
  "agent.labels.team",
  "agent.labels['team']",
  "agent.name",
  "agent.model",
  "user.id",
  "session.id",
  "request.tool",
  "request.method",
);
/** Declared ints. */
const intValue = fc.oneof(
  sel.map((s) => `size(${s})`),
  fc.constantFrom(
    "session.calls.t1",
    "session.calls['t2']",
    "size(user.groups)",
    "size(agent.labels)",
    "size(session.calls)",
    "(int(request.arguments.n) / 0)",
  ),
);
const CMP = ["==", "!=", "<", "<=", ">", ">="];
const cmp = fc.constantFrom(...CMP);
const REGEXES = ["^a", "main|production", "(a+)+$", "^[0-9]+$", "(?i)select", ".*", "\\\\d{2,}"];
const atom = fc.oneof(
  {
    weight: 2,
    arbitrary: fc
      .tuple(dynValue, cmp, fc.oneof(lit, dynValue, strValue, intValue))
      .map(([a, op, b]) => `${a} ${op} ${b}`),
  },
  {
    weight: 1,
    arbitrary: fc.tuple(strValue, cmp, fc.oneof(strLit, dynValue, strValue)).map(([a, op, b]) => `${a} ${op} ${b}`),
  },
  {
    weight: 1,
    arbitrary: fc.tuple(intValue, cmp, fc.oneof(numLit, dynValue, intValue)).map(([a, op, b]) => `${a} ${op} ${b}`),
  },
  { weight: 2, arbitrary: fc.constantFrom(...ARG_KEYS, "m.k").map((k) => `has(request.arguments.${k})`) },
  {
    weight: 2,
    arbitrary: fc
      .tuple(fc.oneof(dynValue, strValue), fc.constantFrom(...REGEXES))
      .map(([v, re]) => `${v}.matches('${re}')`),
  },
  {
    weight: 1,
    arbitrary: fc
      .tuple(fc.oneof(dynValue, strValue), fc.constantFrom("startsWith", "endsWith", "contains"), strLit)
      .map(([v, f, s]) => `${v}.${f}(${s})`),
  },
  {
    weight: 1,
    arbitrary: fc
      .tuple(fc.oneof(strLit, dynValue, strValue), fc.constantFrom("user.groups", "agent.labels", "session.calls"))
      .map(([v, c]) => `${v} in ${c}`),
  },
  {
    weight: 1,
    arbitrary: fc
      .tuple(
        fc.oneof(lit, dynValue),
        fc.constantFrom("request.arguments.l", "request.arguments.m", "request.arguments", "['x', 1]"),
      )
      .map(([v, c]) => `${v} in ${c}`),
  },
  {
    weight: 1,
    arbitrary: fc
      .tuple(sel, fc.constantFrom("exists", "all", "exists_one"), cmp, lit)
      .map(([s, m, op, l]) => `${s}.${m}(x, x ${op} ${l})`),
  },
  { weight: 1, arbitrary: sel }, // dyn used as a bool: an error unless the data is a bool
  {
    weight: 1,
    arbitrary: fc.constantFrom(
      "true",
      "false",
      "has(agent.labels.team)",
      "'g1' in user.groups",
      "now > timestamp('2020-01-01T00:00:00Z')",
      "request.arguments.s.size() > 2",
    ),
  },
);
const condition: fc.Arbitrary<string> = fc
  .letrec<{ c: string }>((tie) => ({
    c: fc.oneof(
      { depthSize: "small", withCrossShrink: true },
      atom,
      tie("c").map((c) => `!(${c})`),
      fc.tuple(tie("c"), tie("c")).map(([a, b]) => `(${a} && ${b})`),
      fc.tuple(tie("c"), tie("c")).map(([a, b]) => `(${a} || ${b})`),
      fc.tuple(tie("c"), tie("c"), tie("c")).map(([a, b, c]) => `(${a} ? ${b} : ${c})`),
    ),
  }))
  .c.filter((c) => oracleCompile(c) !== null); // a few combinations do not type-check; the checker's own tests cover those

interface GenRule {
  tools: string[];
  groups?: string[];
  action: "allow" | "deny" | "require_approval";
  conditions: string[];
}
interface GenPolicy {
  mode: "enforce" | "audit";
  defaultAction: "allow" | "deny" | "require_approval";
  rules: GenRule[];
}
const actionArb = fc.constantFrom("allow", "allow", "require_approval", "deny") as fc.Arbitrary<GenRule["action"]>;
const genPolicy: fc.Arbitrary<GenPolicy> = fc.record({
  mode: fc.constantFrom("enforce", "enforce", "enforce", "audit") as fc.Arbitrary<GenPolicy["mode"]>,
  defaultAction: actionArb,
  rules: fc.array(
    fc.record(
      {
        tools: fc.uniqueArray(fc.constantFrom("t1", "t2", "t*", "*"), { minLength: 1, maxLength: 2 }),
        groups: fc.uniqueArray(fc.constantFrom("g1", "g2"), { minLength: 1, maxLength: 2 }),
        action: actionArb,
        conditions: fc.array(condition, { minLength: 1, maxLength: 3 }),
      },
      { requiredKeys: ["tools", "action", "conditions"] },
    ),
    { minLength: 1, maxLength: 4 },
  ),
});

/** Argument values of every JSON type, so that conditions meet the wrong type now and then. */
const smallJson = fc.oneof(
  fc.constantFrom("", "x", "abc", "main", "/w/a", "aaaa", "12", "select 1", "é"),
  fc.constantFrom(0, -0, 1, 3, -1, 2.5, 1e300, 2 ** 63, 1e20),
  fc.boolean(),
  fc.constant(null),
  fc.array(fc.oneof(fc.constantFrom("x", "y", "main"), fc.constantFrom(1, 2.5)), { maxLength: 3 }),
  fc.record({ k: fc.oneof(fc.constantFrom("x", 1), fc.constant(null)) }, { requiredKeys: [] }),
);
const genInput: fc.Arbitrary<DecisionInput> = fc
  .record(
    {
      agent: fc.record(
        {
          name: fc.constantFrom("bot", "é"),
          labels: fc.record({ team: fc.constantFrom("platform", "x") }, { requiredKeys: [] }),
          model: fc.constant("m"),
        },
        { requiredKeys: ["name"] },
      ),
      user: fc.record(
        {
          id: fc.constantFrom("u1", "u2"),
          groups: fc.subarray(["g1", "g2", "g3"]),
          claims: fc.record({ role: fc.oneof(fc.constantFrom("admin"), fc.constant(1)) }, { requiredKeys: [] }),
        },
        { requiredKeys: [] },
      ),
      request: fc.record(
        {
          server: fc.constant("srv"),
          tool: fc.constantFrom("t1", "t2", "x"),
          arguments: fc.record(Object.fromEntries(ARG_KEYS.map((k) => [k, smallJson])), { requiredKeys: [] }),
          method: fc.constant("tools/call"),
        },
        { requiredKeys: ["server", "tool"] },
      ),
      session: fc.record(
        {
          id: fc.constant("s1"),
          calls: fc.dictionary(fc.constantFrom("t1", "t2"), fc.nat({ max: 5 }), { maxKeys: 2 }),
        },
        { requiredKeys: [] },
      ),
      now: fc.oneof(
        { weight: 9, arbitrary: fc.constant("2026-01-31T12:00:00Z") },
        {
          weight: 1,
          arbitrary: fc.constantFrom(
            "+275760-09-13T00:00:00.000Z",
            "-271821-04-20T00:00:00.000Z",
            "0000-01-01T00:00:00Z",
            "1969-12-31T23:59:59.999Z",
          ),
        },
      ),
    },
    { requiredKeys: ["agent", "request", "now"] },
  )
  .map(asGatewayInput);

/** The policy as a document: JSON is YAML, and needs no escaping rules of its own. */
function policyText(p: GenPolicy): string {
  return JSON.stringify({
    apiVersion: "warden/v1",
    kind: "ToolPolicy",
    metadata: { name: "gen" },
    spec: {
      agent: "*",
      mcpServer: "*",
      mode: p.mode,
      defaultAction: p.defaultAction,
      rules: p.rules.map((r) => ({
        tools: r.tools,
        ...(r.groups ? { groups: r.groups } : {}),
        action: r.action,
        conditions: r.conditions.map((cel) => ({ cel })),
      })),
    },
  });
}

const oracleEnv = new CelEnvironment({ variables: TOOL_POLICY_VARIABLES });
const oracleCache = new Map<string, CompiledExpression | null>();
function oracleCompile(source: string): CompiledExpression | null {
  let c = oracleCache.get(source);
  if (c === undefined) {
    const r = oracleEnv.compile(source, T.bool);
    c = isCompiled(r) ? r : null;
    if (oracleCache.size > 10_000) oracleCache.clear();
    oracleCache.set(source, c);
  }
  return c;
}

/** The bindings DESIGN.md §3 declares, built independently of the engine. */
function oracleBindings(input: DecisionInput): Record<string, unknown> {
  const calls = input.session?.calls;
  return {
    request: {
      server: input.request.server,
      tool: input.request.tool,
      method: input.request.method ?? "tools/call",
      arguments: input.request.arguments ?? {},
    },
    agent: input.agent,
    user: input.user ?? {},
    session: calls
      ? { ...input.session, calls: new Map(Object.entries(calls).map(([k, v]) => [k, BigInt(v)])) }
      : (input.session ?? {}),
    now: timestampFromMs(input.now ?? 0),
  };
}

type Outcome = { kind: "true" } | { kind: "false" } | { kind: "error"; message: string };
function oracleEvaluate(source: string, bindings: Record<string, unknown>): Outcome {
  const c = oracleCompile(source);
  if (!c) throw new Error(`oracle cannot compile what the engine compiled: ${source}`);
  const out = c.evaluate(bindings);
  if (!out.ok) return { kind: "error", message: out.error };
  if (out.value === true) return { kind: "true" };
  if (out.value === false) return { kind: "false" };
  return { kind: "error", message: "not a bool" };
}

const globMatch = (pattern: string, tool: string) =>
  pattern === "*" ? true : pattern.endsWith("*") ? tool.startsWith(pattern.slice(0, -1)) : pattern === tool;

/** First matching rule decides; a condition that cannot be evaluated decides deny (DESIGN.md §3). */
function expectedDecision(p: GenPolicy, input: DecisionInput, unusable?: string) {
  const bindings = oracleBindings(input);
  // A variable over the value limits reads as a CEL error; CEL's && and || may still absorb it.
  if (unusable !== undefined) bindings[unusable] = celError(`${unusable} is over the limits`);
  for (const [index, rule] of p.rules.entries()) {
    if (!rule.tools.some((t) => globMatch(t, input.request.tool))) continue;
    if (rule.groups && !rule.groups.some((g) => input.user?.groups?.includes(g))) continue;
    let matched = true;
    for (const c of rule.conditions) {
      const o = oracleEvaluate(c, bindings);
      if (o.kind === "error") return { decision: "deny" as const, rule: index, error: o.message };
      if (o.kind === "false") {
        matched = false;
        break;
      }
    }
    if (matched) return { decision: rule.action, rule: index, error: null };
  }
  return { decision: p.defaultAction, rule: null, error: null };
}

describe("fuzz: a condition that cannot be evaluated never allows", () => {
  let compiled = 0;
  let rejected = 0;
  let errored = 0;
  let total = 0;

  it("random conditions over the declared variables, checked condition by condition against CelEnvironment", (t) => {
    fc.assert(
      fc.property(genPolicy, fc.array(genInput, { minLength: 1, maxLength: 6 }), (p, inputs) => {
        total++;
        const r = compilePolicySet(loadPolicySources(one(policyText(p))));
        if (!r.policySet) {
          // The checker refused some condition: then the oracle must refuse one too.
          rejected++;
          const all = p.rules.flatMap((x) => x.conditions);
          assert.ok(
            all.some((c) => oracleCompile(c) === null),
            r.diagnostics.map(show).join("\n"),
          );
          return;
        }
        compiled++;
        const set = r.policySet;
        for (const input of inputs) {
          const want = expectedDecision(p, input);
          const d = set.decide(input);
          checkDecision(d, set);
          assert.equal(d.enforced, p.mode === "enforce", "only an enforce-mode policy enforces");
          if (want.error !== null) {
            errored++;
            assert.equal(d.decision, "deny", `condition error (${want.error}) but ${d.decision}: ${d.reason}`);
            assert.match(d.reason, /could not be evaluated/);
          }
          assert.equal(d.decision, want.decision, `expected ${JSON.stringify(want)}, got: ${d.reason}`);
          assert.equal(d.rule?.index ?? null, want.rule, d.reason);
          // Whatever passes, passes because every condition of its rule is true.
          if (d.decision !== "deny" && d.rule !== null) {
            const rule = p.rules[d.rule.index] as GenRule;
            const b = oracleBindings(input);
            for (const c of rule.conditions) assert.equal(oracleEvaluate(c, b).kind, "true", c);
          }
        }
      }),
      params(250),
    );
    t.diagnostic(
      `${total} policies: ${compiled} compiled, ${rejected} rejected by the checker; ${errored} decisions hit a condition error`,
    );
    assert.ok(compiled >= total / 2, "the grammar should mostly produce conditions the checker accepts");
    assert.ok(errored > 0, "the grammar should produce conditions that fail at run time");
  });

  it("input over the value limits (10,000 entries, 1 MiB of text, 32 levels) decides as if the variable holding it were a CEL error", () => {
    const place = fc.constantFrom("arguments", "nested argument", "claims", "labels", "session labels");
    fc.assert(
      fc.property(genPolicy, genInput, place, bigValue, (p, input, where, big) => {
        const r = compilePolicySet(loadPolicySources(one(policyText(p))));
        if (!r.policySet) return;
        const over = withOversize(input, where, big);
        const d = r.policySet.decide(over);
        checkDecision(d, r.policySet);
        // Decides exactly as if the oversized variable were a CEL error; anything else would be a bypass.
        const want = expectedDecision(p, over, VARIABLE_OF_PLACE[where]);
        assert.equal(d.decision, want.decision, `expected ${JSON.stringify(want)}, got: ${d.reason}`);
        assert.equal(d.rule?.index ?? null, want.rule, d.reason);
        if (want.error !== null) assert.match(d.reason, /could not be evaluated/);
      }),
      params(100),
    );
  });

  it("CEL reads call arguments as the JSON they are (any keys)", () => {
    // The condition compares the argument with a literal of itself: it must be true, whatever the keys.
    const value = fc.letrec<{ v: unknown }>((tie) => ({
      v: fc.oneof(
        { depthSize: "small", withCrossShrink: true },
        fc.string({ unit: "grapheme", maxLength: 6 }),
        fc.constantFrom(...TYPE_NAMES),
        anyNumber,
        fc.boolean(),
        fc.constant(null),
        fc.array(tie("v"), { maxLength: 3 }),
        fc
          .array(
            fc.tuple(
              fc.oneof(
                { weight: 1, arbitrary: fc.constantFrom("$typeName", "constructor") },
                { weight: 3, arbitrary: fc.constantFrom(...TRICKY_KEYS) },
                { weight: 2, arbitrary: fc.string({ unit: "grapheme", maxLength: 4 }) },
              ),
              tie("v"),
            ),
            { maxLength: 3 },
          )
          .map(obj),
      ),
    })).v;
    fc.assert(
      fc.property(value, (v) => {
        const cel = `request.arguments.x == ${celLiteral(v)}`;
        const set = mustCompile(
          one(
            JSON.stringify({
              kind: "ToolPolicy",
              metadata: { name: "eq" },
              spec: { agent: "*", mcpServer: "*", rules: [{ tools: ["t"], action: "allow", conditions: [{ cel }] }] },
            }),
          ),
        );
        const d = set.decide(
          asGatewayInput({ agent: { name: "a" }, request: { server: "s", tool: "t", arguments: { x: v } } }),
        );
        assert.equal(d.decision, "allow", `${cel}: ${d.reason}`);
      }),
      params(200),
    );
  });

  it("the github example never allows a pull request whose JSON base is main (JSON that looks like a protobuf Struct)", () => {
    const set = (EXAMPLE_SETS.find(([n]) => n === "github") as [string, PolicySet])[1];
    const input = asGatewayInput({
      agent: { name: "dev-assistant" },
      request: {
        server: "github",
        tool: "create_pull_request",
        arguments: {
          base: "main",
          $typeName: "google.protobuf.Struct",
          fields: { base: { $typeName: "google.protobuf.Value", kind: { case: "stringValue", value: "feature" } } },
        },
      },
    });
    assert.equal(set.decide(input).decision, "deny");
    const wrapped = asGatewayInput({
      agent: { name: "dev-assistant" },
      request: {
        server: "github",
        tool: "create_pull_request",
        arguments: { base: { $typeName: "google.protobuf.StringValue", value: "feature" } },
      },
    });
    assert.equal(set.decide(wrapped).decision, "deny", "an object is not a branch name");
  });
});

/** A CEL literal equal to a JSON value. */
function celLiteral(v: unknown): string {
  if (v === null) return "null";
  if (typeof v === "boolean") return String(v);
  if (typeof v === "number") {
    const s = String(Object.is(v, -0) ? 0 : v);
    return /[.eE]/.test(s) ? s : `${s}.0`;
  }
  if (typeof v === "string") return celString(v);
  if (Array.isArray(v)) return `[${v.map(celLiteral).join(", ")}]`;
  return `{${Object.entries(v as Record<string, unknown>)
    .map(([k, x]) => `${celString(k)}: ${celLiteral(x)}`)
    .join(", ")}}`;
}

function celString(s: string): string {
  let out = '"';
  for (const ch of s) {
    const cp = ch.codePointAt(0) as number;
    if (ch === '"' || ch === "\\") out += `\\${ch}`;
    else if (cp >= 0x20 && cp < 0x7f) out += ch;
    else out += `\\U${cp.toString(16).padStart(8, "0")}`;
  }
  return `${out}"`;
}

// ---- 4. hostile regular expressions ----

/** Patterns that backtracking engines take exponential time on, with what they mean (checked by a safe regex or code). */
const HOSTILE: { pattern: string; means: (q: string) => boolean }[] = [
  { pattern: "(a+)+$", means: (q) => q.endsWith("a") },
  { pattern: "(x+x+)+y", means: (q) => /xxy/.test(q) },
  { pattern: "(.*a){20}", means: (q) => q.split("a").length - 1 >= 20 },
  { pattern: "^(a|a)*$", means: (q) => /^a*$/.test(q) },
  { pattern: "(a|aa)+$", means: (q) => q.endsWith("a") },
  { pattern: "^(\\\\w+\\\\s?)*$", means: (q) => /^[\w\s]*$/.test(q) && !/^\s/.test(q) && !/\s\s/.test(q) },
  { pattern: "((a*)*)*b", means: (q) => q.includes("b") },
];

describe("fuzz: hostile regular expressions finish and answer correctly", () => {
  const rules = [
    ...HOSTILE.map((h, i) => ({
      tools: [`r${i}`],
      action: "allow",
      conditions: [{ cel: `request.arguments.q.matches('${h.pattern}')` }],
    })),
  ];
  const set = mustCompile(
    one(JSON.stringify({ kind: "ToolPolicy", metadata: { name: "re" }, spec: { agent: "*", mcpServer: "*", rules } })),
  );
  const text = fc
    .tuple(
      fc.constantFrom("a", "x", "ab", "aaaab", "xx", "a ", "w ", "é"),
      fc.integer({ min: 1, max: 20_000 }),
      fc.constantFrom("", "!", "y", "b", "a", " ", "\u0000"),
      fc.constantFrom("", "a", "x"),
    )
    .map(([unit, n, tail, head]) => head + unit.repeat(Math.ceil(n / unit.length)) + tail);
  const call = (tool: string, args: Record<string, unknown>) => ({
    agent: { name: "a" },
    request: { server: "s", tool, arguments: args },
  });

  it("attacker text of thousands of characters against classic ReDoS patterns", { timeout: 120_000 }, (t) => {
    let slowest = 0;
    fc.assert(
      fc.property(fc.nat({ max: HOSTILE.length - 1 }), text, (i, q) => {
        const h = HOSTILE[i] as (typeof HOSTILE)[number];
        const start = performance.now();
        const d = set.decide(call(`r${i}`, { q }));
        slowest = Math.max(slowest, performance.now() - start);
        checkDecision(d, set);
        assert.equal(
          d.decision,
          h.means(q) ? "allow" : "deny",
          `${h.pattern} on ${JSON.stringify(q.slice(0, 40))}… (${q.length}): ${d.reason}`,
        );
      }),
      params(150),
    );
    t.diagnostic(`slowest decision: ${slowest.toFixed(1)} ms`);
  });

  it("the same patterns on a whole megabyte of text", { timeout: 120_000 }, () => {
    for (const [i, h] of HOSTILE.entries()) {
      for (const q of [`${"a".repeat(1_000_000)}!`, "x".repeat(1_000_000)]) {
        const d = set.decide(call(`r${i}`, { q }));
        assert.equal(d.decision, h.means(q) ? "allow" : "deny", h.pattern);
      }
    }
  });
});
