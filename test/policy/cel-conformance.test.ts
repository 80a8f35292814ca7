// Runs the CEL conformance data shipped in @bufbuild/cel-spec (cel-spec v0.25.1)
// through our wrapper (CelEnvironment: limits, load-time checker, RE2 cache) and,
// side by side, through the bare @bufbuild/cel it wraps. The wrapper must keep
// the library's semantics: every test the bare library passes, the wrapper must
// pass too, unless it is listed below as a known deviation with its reason.
//
// Skip rules (the same for every test, wrapper and bare library alike):
//   - a non-empty `container` (in these groups, always a protobuf test package);
//   - the test needs protobuf messages or enums: it constructs a message
//     (`Name{...}`), names a conformance proto type or enum, declares or binds a
//     message other than google.protobuf.Timestamp / Duration, or expects an
//     enum value or such a message;
//   - it asserts only checker deductions (no expected `value` and no `evalError`).
// Timestamps and durations are CEL built-ins here, not "protobuf messages". So
// we run 3 timestamps tests the research (cel-evaluation.md) skipped (two
// type(...) results, one Duration binding): the bare library's 631/638 below is
// its 628/635 plus those 3.
//
// Variables: a test's typeEnv declarations become our precise types where we
// have them (primitives, lists, maps, null, Timestamp, Duration), so the checker
// is exercised; other declared or merely bound names are T.dyn.
//
// Verdicts: an expected evaluation error passes if evaluation returned an error
// OR our wrapper rejected the expression at compile time; an expected value
// passes only if evaluation returned an equal value (CEL equality of types and
// values: int, uint and double are distinct, NaN equals NaN here, maps compare
// without regard to order).
import assert from "node:assert/strict";
import { test } from "node:test";
import {
  celEnv,
  celList,
  celMap,
  celUint,
  isCelList,
  isCelMap,
  isCelType,
  isCelUint,
  parse,
  plan,
} from "@bufbuild/cel";
import { tests } from "@bufbuild/cel-spec/testdata/conformance.js";
import type { SerializedIncrementalTestSuite } from "@bufbuild/cel-spec/testdata/tests.js";
import { equals, fromJson, type JsonValue } from "@bufbuild/protobuf";
import { isReflectMessage } from "@bufbuild/protobuf/reflect";
import { DurationSchema, TimestampSchema } from "@bufbuild/protobuf/wkt";
import { CelEnvironment, isCompiled } from "../../src/policy/cel/runtime.js";
import { T, type Type } from "../../src/policy/cel/types.js";

const GROUPS = ["basic", "string", "macros", "logic", "comparisons", "timestamps", "fields"] as const;
type Group = (typeof GROUPS)[number];

interface Counts {
  passed: number;
  failed: number;
  skipped: number;
  /** Rejected at compile time by our wrapper (syntax, limits or checker), whether that passed or failed the test. */
  rejected: number;
  /** The bare library, for comparison. */
  barePassed: number;
}

/**
 * What the wrapper must score, per group. Any change — better or worse — fails
 * this test, so it is updated on purpose, together with KNOWN_FAILURES.
 */
const EXPECTED: Record<Group, Counts> = {
  basic: { passed: 41, failed: 2, skipped: 0, rejected: 4, barePassed: 43 },
  string: { passed: 51, failed: 0, skipped: 0, rejected: 0, barePassed: 51 },
  macros: { passed: 44, failed: 0, skipped: 0, rejected: 0, barePassed: 44 },
  logic: { passed: 26, failed: 4, skipped: 0, rejected: 8, barePassed: 30 },
  comparisons: { passed: 334, failed: 0, skipped: 72, rejected: 17, barePassed: 334 },
  timestamps: { passed: 76, failed: 0, skipped: 0, rejected: 0, barePassed: 76 },
  fields: { passed: 53, failed: 7, skipped: 0, rejected: 8, barePassed: 53 },
};

// Deviations by design: these tests set disableCheck, i.e. they exercise an
// evaluator running WITHOUT a type checker. Ours always checks at load time, and
// rejects exactly what a checking CEL implementation (cel-go) rejects here.
const DISABLE_CHECK = "disableCheck test; our load-time checker rejects it by design";
// Failures of the bare library that the wrapper inherits.
const NO_BACKTICKS = "library: backtick-quoted field names are not supported by the parser (bare library fails too)";

/** Tests the wrapper fails, by "group/section/name", with the reason. */
const KNOWN_FAILURES: Record<string, string> = {
  "basic/variables/unbound_is_runtime_error": `${DISABLE_CHECK} (unknown variable x in \`x || true\`)`,
  "basic/functions/unbound_is_runtime_error": `${DISABLE_CHECK} (unknown function f_unknown)`,
  "logic/AND/short_circuit_type_left": `${DISABLE_CHECK} (\`false && 32\`: non-bool operand)`,
  "logic/AND/short_circuit_type_right": `${DISABLE_CHECK} (\`'horses' && false\`: non-bool operand)`,
  "logic/OR/short_circuit_type_left": `${DISABLE_CHECK} (\`true || 32\`: non-bool operand)`,
  "logic/OR/short_circuit_type_right": `${DISABLE_CHECK} (\`'horses' || true\`: non-bool operand)`,
  "fields/quoted_map_fields/field_access_slash": NO_BACKTICKS,
  "fields/quoted_map_fields/field_access_dash": NO_BACKTICKS,
  "fields/quoted_map_fields/field_access_dot": NO_BACKTICKS,
  "fields/quoted_map_fields/has_field_slash": NO_BACKTICKS,
  "fields/quoted_map_fields/has_field_dash": NO_BACKTICKS,
  "fields/quoted_map_fields/has_field_dot": NO_BACKTICKS,
  "fields/qualified_identifier_resolution/map_value_repeat_key_heterogeneous":
    "library: {0: 1, 0u: 2} is accepted (CEL requires a repeated-key error); bare library fails too",
};

// ---------------------------------------------------------------------------
// The proto-JSON shapes we read (cel.expr.Value, cel.expr.Type, SimpleTest).

interface ValueJson {
  int64Value?: string | number;
  uint64Value?: string | number;
  doubleValue?: number | string;
  stringValue?: string;
  bytesValue?: string;
  boolValue?: boolean;
  nullValue?: null;
  listValue?: { values?: ValueJson[] };
  mapValue?: { entries?: { key: ValueJson; value: ValueJson }[] };
  typeValue?: string;
  objectValue?: { "@type": string; value?: JsonValue };
  enumValue?: unknown;
}

interface TypeJson {
  primitive?: string;
  listType?: { elemType?: TypeJson };
  mapType?: { keyType?: TypeJson; valueType?: TypeJson };
  messageType?: string;
  wellKnown?: string;
  null?: null;
  dyn?: unknown;
}

interface SimpleTestJson {
  name?: string;
  expr: string;
  container?: string;
  disableCheck?: boolean;
  disableMacros?: boolean;
  typeEnv?: { name: string; ident?: { type?: TypeJson } }[];
  bindings?: Record<string, { value?: ValueJson }>;
  value?: ValueJson;
  evalError?: unknown;
}

interface Case {
  group: Group;
  id: string;
  test: SimpleTestJson;
}

function collect(): Case[] {
  const cases: Case[] = [];
  const walk = (suite: SerializedIncrementalTestSuite, group: Group, path: string) => {
    for (const t of suite.tests ?? []) {
      const o = t.original as unknown as SimpleTestJson;
      cases.push({ group, id: `${path}/${o.name ?? o.expr}`, test: o });
    }
    for (const s of suite.suites ?? []) walk(s, group, `${path}/${s.name}`);
  };
  for (const g of tests.suites ?? []) {
    const group = GROUPS.find((x) => x === g.name);
    if (group) walk(g, group, group);
  }
  return cases;
}

// ---------------------------------------------------------------------------
// Skip rules.

const WKT_OBJECTS = new Set(["google.protobuf.Timestamp", "google.protobuf.Duration"]);

/** The expression with its string and bytes literals blanked out, so their contents cannot look like syntax. */
function withoutLiterals(expr: string): string {
  return expr.replace(/'''[\s\S]*?'''|"""[\s\S]*?"""|'(?:\\.|[^'\\\n])*'|"(?:\\.|[^"\\\n])*"/g, "''");
}

function valueNeedsMessages(v: ValueJson | undefined): boolean {
  if (!v) return false;
  if ("enumValue" in v) return true;
  if (v.objectValue) return !WKT_OBJECTS.has(v.objectValue["@type"].replace(/^.*\//, ""));
  if (v.listValue) return (v.listValue.values ?? []).some(valueNeedsMessages);
  if (v.mapValue)
    return (v.mapValue.entries ?? []).some((e) => valueNeedsMessages(e.key) || valueNeedsMessages(e.value));
  return false;
}

function typeNeedsMessages(t: TypeJson | undefined): boolean {
  if (!t) return false;
  if (t.messageType !== undefined) return !WKT_OBJECTS.has(t.messageType);
  if (t.listType) return typeNeedsMessages(t.listType.elemType);
  if (t.mapType) return typeNeedsMessages(t.mapType.keyType) || typeNeedsMessages(t.mapType.valueType);
  return false;
}

function skipReason(t: SimpleTestJson): string | undefined {
  if (t.container) return "container";
  const code = withoutLiterals(t.expr);
  // A (qualified) name directly followed by `{` constructs a message; `in {` is a map literal.
  for (const m of code.matchAll(/([A-Za-z_][\w.]*)\s*\{/g)) {
    if (m[1] !== "in") return "protobuf message";
  }
  if (/\b(?:cel\.expr\.conformance|TestAllTypes|NestedTestAllTypes|GlobalEnum|NestedEnum)\b/.test(code)) {
    return "protobuf message";
  }
  if ((t.typeEnv ?? []).some((d) => typeNeedsMessages(d.ident?.type))) return "protobuf message";
  if (Object.values(t.bindings ?? {}).some((b) => valueNeedsMessages(b.value))) return "protobuf message";
  if (valueNeedsMessages(t.value)) return "protobuf message";
  if (t.value === undefined && t.evalError === undefined) return "checker only";
  return undefined;
}

// ---------------------------------------------------------------------------
// cel.expr.Value / cel.expr.Type JSON → CEL inputs and our types.

function toInput(v: ValueJson): unknown {
  if (v.int64Value !== undefined) return BigInt(v.int64Value);
  if (v.uint64Value !== undefined) return celUint(BigInt(v.uint64Value));
  if (v.doubleValue !== undefined) return Number(v.doubleValue);
  if (v.stringValue !== undefined) return v.stringValue;
  if (v.bytesValue !== undefined) return new Uint8Array(Buffer.from(v.bytesValue, "base64"));
  if (v.boolValue !== undefined) return v.boolValue;
  if ("nullValue" in v) return null;
  if (v.listValue) return (v.listValue.values ?? []).map(toInput);
  if (v.mapValue) return new Map((v.mapValue.entries ?? []).map((e) => [toInput(e.key), toInput(e.value)]));
  if (v.objectValue) return wktMessage(v.objectValue);
  throw new Error(`cannot convert value ${JSON.stringify(v)}`);
}

function wktMessage(o: { "@type": string; value?: JsonValue }) {
  switch (o["@type"].replace(/^.*\//, "")) {
    case "google.protobuf.Timestamp":
      return fromJson(TimestampSchema, o.value ?? null);
    case "google.protobuf.Duration":
      return fromJson(DurationSchema, o.value ?? null);
    default:
      throw new Error(`unsupported message ${o["@type"]}`);
  }
}

const PRIMITIVES: Record<string, Type> = {
  BOOL: T.bool,
  INT64: T.int,
  UINT64: T.uint,
  DOUBLE: T.double,
  STRING: T.string,
  BYTES: T.bytes,
};

function toType(t: TypeJson | undefined): Type {
  if (!t) return T.dyn;
  if (t.primitive !== undefined) return PRIMITIVES[t.primitive] ?? T.dyn;
  if (t.listType) return T.list(toType(t.listType.elemType));
  if (t.mapType) return T.map(toType(t.mapType.keyType), toType(t.mapType.valueType));
  if ("null" in t) return T.null;
  if (t.messageType === "google.protobuf.Timestamp" || t.wellKnown === "TIMESTAMP") return T.timestamp;
  if (t.messageType === "google.protobuf.Duration" || t.wellKnown === "DURATION") return T.duration;
  return T.dyn;
}

// ---------------------------------------------------------------------------
// CEL equality of a result against an expected cel.expr.Value.

function sameValue(actual: unknown, want: ValueJson): boolean {
  if (want.int64Value !== undefined) return typeof actual === "bigint" && actual === BigInt(want.int64Value);
  if (want.uint64Value !== undefined) return isCelUint(actual) && actual.value === BigInt(want.uint64Value);
  if (want.doubleValue !== undefined) {
    const d = Number(want.doubleValue);
    return typeof actual === "number" && (actual === d || (Number.isNaN(actual) && Number.isNaN(d)));
  }
  if (want.stringValue !== undefined) return actual === want.stringValue;
  if (want.boolValue !== undefined) return actual === want.boolValue;
  if ("nullValue" in want) return actual === null;
  if (want.bytesValue !== undefined) {
    return actual instanceof Uint8Array && Buffer.from(actual).equals(Buffer.from(want.bytesValue, "base64"));
  }
  if (want.listValue) {
    const values = want.listValue.values ?? [];
    if (!isCelList(actual) || actual.size !== values.length) return false;
    return values.every((w, i) => sameValue(actual.get(i), w));
  }
  if (want.mapValue) {
    const entries = want.mapValue.entries ?? [];
    if (!isCelMap(actual) || actual.size !== entries.length) return false;
    const got = [...actual.entries()];
    return entries.every((w) => got.some(([k, v]) => sameValue(k, w.key) && sameValue(v, w.value)));
  }
  if (want.typeValue !== undefined) return isCelType(actual) && actual.name === want.typeValue;
  if (want.objectValue) {
    const expected = wktMessage(want.objectValue);
    if (!isReflectMessage(actual) || actual.desc.typeName !== expected.$typeName) return false;
    return expected.$typeName === "google.protobuf.Timestamp"
      ? equals(TimestampSchema, actual.message as typeof expected, expected)
      : equals(DurationSchema, actual.message as typeof expected, expected);
  }
  throw new Error(`cannot compare with ${JSON.stringify(want)}`);
}

// ---------------------------------------------------------------------------
// Running one test.

type Outcome =
  | { kind: "value"; value: unknown }
  | { kind: "error"; error: string }
  | { kind: "rejected"; error: string };

function bindingsOf(t: SimpleTestJson): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [name, b] of Object.entries(t.bindings ?? {})) {
    if (b.value) out[name] = toInput(b.value);
  }
  return out;
}

function variablesOf(t: SimpleTestJson): Record<string, Type> {
  const vars: Record<string, Type> = {};
  for (const name of Object.keys(t.bindings ?? {})) vars[name] = T.dyn;
  for (const d of t.typeEnv ?? []) if (d.ident) vars[d.name] = toType(d.ident.type);
  return vars;
}

function runWrapper(t: SimpleTestJson): Outcome {
  const env = new CelEnvironment({ variables: variablesOf(t) });
  const compiled = env.compile(t.expr);
  if (!isCompiled(compiled)) return { kind: "rejected", error: compiled.problems.map((p) => p.message).join("; ") };
  const r = compiled.evaluate(bindingsOf(t));
  return r.ok ? { kind: "value", value: r.value } : { kind: "error", error: r.error };
}

const bareEnv = celEnv();

function runBare(t: SimpleTestJson): Outcome {
  try {
    const run = plan(bareEnv, parse(t.expr));
    const v = run(bindingsOf(t) as Parameters<typeof run>[0]);
    return v instanceof Error ? { kind: "error", error: v.message } : { kind: "value", value: v };
  } catch (err) {
    return { kind: "error", error: err instanceof Error ? err.message : String(err) };
  }
}

function passes(t: SimpleTestJson, o: Outcome): boolean {
  if (t.evalError !== undefined) return o.kind !== "value";
  return o.kind === "value" && t.value !== undefined && sameValue(o.value, t.value);
}

function describeOutcome(o: Outcome): string {
  if (o.kind === "value") return `value ${String(o.value)}`;
  return `${o.kind}: ${o.error}`;
}

// ---------------------------------------------------------------------------

test("our CEL wrapper keeps @bufbuild/cel's conformance on the focus groups", () => {
  const counts = Object.fromEntries(
    GROUPS.map((g) => [g, { passed: 0, failed: 0, skipped: 0, rejected: 0, barePassed: 0 }]),
  ) as Record<Group, Counts>;
  const failures: Record<string, string> = {};

  for (const { group, id, test: t } of collect()) {
    const c = counts[group];
    if (skipReason(t)) {
      c.skipped++;
      continue;
    }
    const ours = runWrapper(t);
    const bare = runBare(t);
    const ok = passes(t, ours);
    const bareOk = passes(t, bare);
    if (ours.kind === "rejected") c.rejected++;
    if (ok) c.passed++;
    else {
      c.failed++;
      failures[id] = `${describeOutcome(ours)} [bare library ${bareOk ? "passes" : "fails too"}]`;
    }
    if (bareOk) c.barePassed++;
  }

  const rows = GROUPS.map((g) => ({ group: g, ...counts[g], run: counts[g].passed + counts[g].failed }));
  const total = rows.reduce(
    (a, r) => ({
      group: "total",
      passed: a.passed + r.passed,
      failed: a.failed + r.failed,
      skipped: a.skipped + r.skipped,
      rejected: a.rejected + r.rejected,
      barePassed: a.barePassed + r.barePassed,
      run: a.run + r.run,
    }),
    { group: "total", passed: 0, failed: 0, skipped: 0, rejected: 0, barePassed: 0, run: 0 },
  );
  console.log("CEL conformance (cel-spec v0.25.1), wrapper vs bare @bufbuild/cel:");
  console.log("group        passed/run  failed  skipped  rejected  bare passed");
  for (const r of [...rows, total]) {
    console.log(
      `${r.group.padEnd(12)} ${`${r.passed}/${r.run}`.padStart(10)}  ${String(r.failed).padStart(6)}  ${String(r.skipped).padStart(7)}  ${String(r.rejected).padStart(8)}  ${`${r.barePassed}/${r.run}`.padStart(11)}`,
    );
  }
  for (const [id, why] of Object.entries(failures)) console.log(`  failed: ${id} — ${why}`);

  assert.deepEqual(Object.keys(failures).sort(), Object.keys(KNOWN_FAILURES).sort());
  assert.deepEqual(counts, EXPECTED);
});

test("the conformance harness compares with CEL semantics", () => {
  // int, uint and double are distinct; NaN matches NaN; bytes by content; maps in any order.
  assert.equal(sameValue(1n, { int64Value: "1" }), true);
  assert.equal(sameValue(celUint(1n), { int64Value: "1" }), false);
  assert.equal(sameValue(1, { int64Value: "1" }), false);
  assert.equal(sameValue(1n, { uint64Value: "1" }), false);
  assert.equal(sameValue(1n, { doubleValue: 1 }), false);
  assert.equal(sameValue(Number.NaN, { doubleValue: "NaN" }), true);
  assert.equal(sameValue(new Uint8Array([0, 255]), { bytesValue: "AP8=" }), true);
  assert.equal(sameValue(new Uint8Array([0, 254]), { bytesValue: "AP8=" }), false);
  const m = celMap(
    new Map<bigint | string, unknown>([
      [1n, "a"],
      ["k", celList([2n])],
    ]) as Parameters<typeof celMap>[0],
  );
  const entry = (key: ValueJson, value: ValueJson) => ({ key, value });
  assert.equal(
    sameValue(m, {
      mapValue: {
        entries: [
          entry({ stringValue: "k" }, { listValue: { values: [{ int64Value: "2" }] } }),
          entry({ int64Value: "1" }, { stringValue: "a" }),
        ],
      },
    }),
    true,
  );
  assert.equal(
    sameValue(m, {
      mapValue: {
        entries: [
          entry({ stringValue: "k" }, { listValue: { values: [{ int64Value: "2" }] } }),
          entry({ uint64Value: "1" }, { stringValue: "a" }),
        ],
      },
    }),
    false,
  );
});

test("qualified names resolve only to declared variables and known types", () => {
  const env = new CelEnvironment({ variables: { "a.b": T.map(T.string, T.string), x: T.list(T.dyn) } });
  // In the comprehension, `a` is the loop variable (dyn) and shadows the declared "a.b"
  // (a map of strings, which would make the condition a string and be rejected).
  for (const ok of ["a.b.c == 'yeah'", "type(duration('1s')) == google.protobuf.Duration", "x.all(a, a.b.c)"]) {
    assert.equal(isCompiled(env.compile(ok)), true, ok);
  }
  for (const bad of ["a.c", "a == 1", "google.protobuf.Timestamq == type(1)", "a.b.c && true"]) {
    assert.equal(isCompiled(env.compile(bad)), false, bad);
  }
});
