import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { isCelList, isCelMap } from "@bufbuild/cel";
import { TOOL_POLICY_VARIABLES } from "../../src/policy/cel/environments.js";
import { CelEnvironment, isCompiled, toCelValue } from "../../src/policy/cel/runtime.js";
import { T } from "../../src/policy/cel/types.js";
import { call, errorsOf, policySet, toolPolicy } from "../helpers/policies.js";

const env = new CelEnvironment({ variables: TOOL_POLICY_VARIABLES });

function problems(source: string): string[] {
  const r = env.compile(source, T.bool);
  return isCompiled(r) ? [] : r.problems.map((p) => p.message);
}

function rejects(source: string, pattern: RegExp) {
  const found = problems(source);
  assert.ok(
    found.some((m) => pattern.test(m)),
    `expected ${pattern} for ${source}, got ${JSON.stringify(found)}`,
  );
}

describe("CEL: rejected when the policy loads", () => {
  it("unknown variables, fields, functions and methods, with suggestions", () => {
    rejects("requst.tool == 'x'", /unknown variable "requst" \(did you mean "request"\?\)/);
    rejects("request.argumentz.base == 'x'", /request has no field "argumentz" \(did you mean "arguments"\?\)/);
    rejects("request.arguments.base.matchez('main')", /unknown method "matchez" \(did you mean "matches"\?\)/);
    rejects("sizee(request.tool) > 1", /unknown function "sizee" \(did you mean "size"\?\)/);
    rejects("agent.labelz['team'] == 'x'", /agent has no field "labelz"/);
  });

  it("wrong arity, impossible operand types and methods called as functions", () => {
    rejects("size() == 0", /takes 1 argument/);
    rejects("request.tool + 1 == 'x1'", /no overload of operator \+ accepts \(string, int\)/);
    rejects("request.tool.startsWith(1)", /no overload of "startsWith" accepts \(string, int\)/);
    rejects("now > 5", /no overload of operator > accepts \(google\.protobuf\.Timestamp, int\)/);
    rejects("!request.tool", /no overload of operator ! accepts \(string\)/);
    rejects("request.tool && true", /operand of && must be a bool, not string/);
  });

  it("conditions that can never be boolean", () => {
    rejects("request.tool", /expression has type string, but a bool is needed here/);
    rejects("size(request.arguments)", /type int, but a bool/);
    assert.deepEqual(
      problems("request.arguments.flag"),
      [],
      "dyn: only the data can tell, so it is checked when evaluated",
    );
  });

  it("syntax errors, with their offset inside the expression", () => {
    const r = env.compile("request.tool == 'x' &&", T.bool);
    assert.ok(!isCompiled(r));
    assert.match(r.problems[0]?.message ?? "", /^syntax error/);
    assert.equal(r.problems[0]?.offset, 20);
  });

  it("limits: length, bracket nesting, nested comprehensions over data, regex literals", () => {
    rejects(`request.tool == '${"x".repeat(9000)}'`, /9018 characters long; the limit is 8192/);
    rejects(`${"(".repeat(40)}true${")".repeat(40)}`, /nested more than 32 deep/);
    rejects(
      "request.arguments.a.exists(x, request.arguments.b.exists(y, x == y))",
      /comprehensions over request data may not be nested/,
    );
    rejects("request.tool.matches('(a')", /invalid regular expression \(RE2 syntax\)/);
    rejects("request.tool.matches('(?=lookahead)')", /invalid regular expression/);
    rejects(`request.tool.matches('${"a".repeat(3000)}')`, /regular expression is 3000 characters long/);
    rejects(
      "google.protobuf.Timestamp{seconds: 1} < now",
      /creating protobuf messages .* is not supported|unknown variable/,
    );
  });

  it("accepts the expressions policies are written with", () => {
    for (const ok of [
      "!request.arguments.base.matches('main|production')",
      "request.arguments.amount <= 1000 && request.arguments.currency in ['EUR', 'USD']",
      "has(request.arguments.path) ? request.arguments.path.startsWith('/tmp/') : false",
      "user.groups.exists(g, g in ['sre', 'admins'])",
      "request.arguments.to.all(r, ['a.com', 'b.com'].exists(d, r.endsWith(d)))",
      "session.calls[request.tool] + 1 > 3 || !('tainted' in session.labels)",
      "now > timestamp('2026-01-01T00:00:00Z') && now - timestamp('2026-01-01T00:00:00Z') < duration('8760h')",
      "agent.labels['team'] == 'platform' && agent.vendor != 'unknown'",
      "size(request.arguments.content) < 100000",
      "type(request.arguments.n) == int || type(request.arguments.n) == double",
      "request.arguments.items.map(i, i.price).filter(p, p > 10.0).size() == 0",
    ]) {
      assert.deepEqual(problems(ok), [], ok);
    }
  });

  it("reports CEL problems at their line and column in the YAML file", () => {
    const plain = errorsOf(
      toolPolicy("p", "  - tools: [a]\n    action: allow\n    conditions:\n      - cel: request.tool.matchez('x')\n"),
    )[0];
    assert.equal(plain?.line, 11);
    assert.equal(plain?.col, 26, 'the column of ".matchez" inside the scalar');
    const block = errorsOf(
      toolPolicy(
        "p",
        "  - tools: [a]\n    action: allow\n    conditions:\n      - cel: |\n          request.tool == 'x' &&\n            requst.id == 'y'\n",
      ),
    )[0];
    assert.equal(block?.line, 13);
    assert.equal(block?.col, 13);
    assert.match(block?.message ?? "", /^CEL: unknown variable "requst"/);
  });
});

describe("CEL: evaluation errors never allow", () => {
  const set = policySet(
    toolPolicy(
      "p",
      `  - tools: [a]
    action: allow
    conditions:
      - cel: "request.arguments.amount <= 100"
  - tools: [b]
    action: deny
    conditions:
      - cel: "request.arguments.flag"
  - tools: [b]
    action: allow
`,
    ),
  );

  it("a missing key denies, with the CEL error as reason", () => {
    const d = set.decide(call("a", { other: 1 }));
    assert.equal(d.decision, "deny");
    assert.deepEqual(d.rule, { index: 0, name: null });
    assert.match(
      d.reason,
      /condition rules\[0\]\.conditions\[0\] of ToolPolicy p could not be evaluated \(.*amount.*\); a condition that cannot be evaluated denies/,
    );
  });

  it("a wrong type denies", () => {
    assert.equal(set.decide(call("a", { amount: "lots" })).decision, "deny");
    assert.equal(set.decide(call("a", { amount: 5 })).decision, "allow");
  });

  it("a non-boolean result denies, even on a deny rule that would otherwise be skipped", () => {
    const d = set.decide(call("b", { flag: "yes" }));
    assert.equal(d.decision, "deny");
    assert.match(d.reason, /evaluated to a string, not a bool/);
    assert.equal(set.decide(call("b", { flag: false })).decision, "allow");
    assert.equal(
      set.decide(call("b", {})).decision,
      "deny",
      "missing flag: error, so deny rather than skipping to allow",
    );
  });
});

describe("CEL: hostile input", () => {
  it("decides the catastrophic-backtracking case by RE2 in linear time", () => {
    const set = policySet(
      toolPolicy(
        "p",
        "  - tools: [search]\n    action: allow\n    conditions:\n      - cel: \"request.arguments.q.matches('(a+)+$')\"\n",
      ),
    );
    const q = `${"a".repeat(5000)}!`;
    const started = performance.now();
    const d = set.decide(call("search", { q }));
    const ms = performance.now() - started;
    assert.equal(d.decision, "deny", "(a+)+$ does not match a string ending in !, so the allow rule does not apply");
    assert.equal(set.decide(call("search", { q: "aaaa" })).decision, "allow");
    // Hang guard only (a backtracking engine needs ~2^5000 steps); the figure is in the benchmark.
    assert.ok(ms < 2000, `took ${ms} ms`);
  });

  it("refuses to hand CEL values over the size limits, and says so", () => {
    const set = policySet(
      toolPolicy(
        "p",
        `  - tools: [w]\n    action: allow\n    conditions: [{cel: "size(request.arguments.items) < 100000"}]\n  - tools: [free]\n    action: allow\n`,
      ),
    );
    const wide = set.decide(call("w", { items: new Array(10_001).fill(0) }));
    assert.equal(wide.decision, "deny");
    assert.match(wide.reason, /has 10001 entries; policy evaluation accepts at most 10000/);
    const long = set.decide(call("w", { items: ["x".repeat(1_100_000)] }));
    assert.match(long.reason, /more than 1048576 characters of text/);
    let deep: unknown = 1;
    for (let i = 0; i < 40; i++) deep = [deep];
    assert.match(set.decide(call("w", { items: deep as unknown[] })).reason, /nested more than 32 levels/);
    // A rule without conditions does not hand anything to CEL, so size does not matter to it.
    assert.equal(set.decide(call("free", { items: new Array(20_000).fill(0) })).decision, "allow");
  });

  it("refuses patterns that come from the data: the caller would choose what a match costs and accepts", () => {
    for (const pattern of ["request.arguments.re", "'^' + request.tool", "agent.name"]) {
      rejects(`request.tool.matches(${pattern})`, /matches\(\) takes a literal pattern, written in the policy/);
    }
    assert.deepEqual(problems("request.tool.matches('^(read|list)_')"), []);
  });

  it("evaluates input objects without a prototype like any other", () => {
    const set = policySet(
      toolPolicy("p", '  - tools: [a]\n    action: allow\n    conditions: [{cel: "request.arguments.o.k == 1"}]\n'),
    );
    const o = Object.assign(Object.create(null), { k: 1 });
    assert.equal(set.decide(call("a", Object.assign(Object.create(null), { o }))).decision, "allow");
    // Programmatic callers may leave undefined members; they count as absent, as in JSON.
    assert.equal(set.decide({ ...call("a", { o: { k: 1 }, gone: undefined }), user: undefined }).decision, "allow");
  });

  it("toCelValue checks limits, rejects what is not JSON, and turns objects into CEL maps", () => {
    const limits = { maxDepth: 5, maxCollectionEntries: 5, maxTotalChars: 4 };
    assert.deepEqual(toCelValue({ a: () => 1 }, limits, "x"), {
      problem: "x.a is a function, which is not a JSON value",
    });
    assert.deepEqual(toCelValue({ a: [1, { b: [1, 2, 3, 4, 5, 6] }] }, limits, "x"), {
      problem: "x.a[1].b has 6 entries; policy evaluation accepts at most 5",
    });
    assert.match(
      (toCelValue({ ab: "cde" }, limits, "x") as { problem: string }).problem,
      /^x holds more than 4 characters/,
    );
    const ok = toCelValue({ ab: "cd", u: undefined }, limits, "x") as { value: unknown };
    assert.ok(isCelMap(ok.value));
    assert.equal(ok.value.size, 1, "undefined members are absent");
    assert.equal(ok.value.get("ab"), "cd");
    const list = toCelValue([{ $typeName: "p" }], { ...limits, maxTotalChars: 100 }, "x") as { value: unknown };
    assert.ok(isCelList(list.value));
    assert.ok(isCelMap(list.value.get(0)), "an object with $typeName is still just a map");
  });

  it("reads arguments as the JSON they are, whatever their keys (no protobuf message look-alikes)", () => {
    const set = policySet(
      toolPolicy(
        "p",
        "  - tools: [pr]\n    action: allow\n    conditions: [{cel: \"!request.arguments.base.matches('main')\"}]\n",
      ),
    );
    const forged = {
      base: "main",
      $typeName: "google.protobuf.Struct",
      fields: { base: { $typeName: "google.protobuf.Value", kind: { case: "stringValue", value: "feature" } } },
    };
    assert.equal(set.decide(call("pr", forged)).decision, "deny");
    assert.equal(
      set.decide(call("pr", { base: { $typeName: "google.protobuf.StringValue", value: "feature" } })).decision,
      "deny",
    );
    assert.equal(set.decide(call("pr", { base: "feature", constructor: "x", __proto__x: 1 })).decision, "allow");
  });

  it("denies when session.calls is not whole numbers (programmatic callers)", () => {
    const set = policySet(
      toolPolicy("p", "  - tools: [a]\n    action: allow\n    conditions: [{cel: \"session.calls['a'] < 3\"}]\n"),
    );
    assert.equal(set.decide({ ...call("a"), session: { calls: { a: 2 } } }).decision, "allow");
    const d = set.decide({ ...call("a"), session: { calls: { a: 1.5 } } });
    assert.equal(d.decision, "deny");
    assert.match(d.reason, /session\.calls\.a must be a whole number/);
  });
});

describe("CEL: comprehensions over request data cost at most a pass over the input", () => {
  /** A policy with one condition, written as a double-quoted YAML string on line 11 from column 14. */
  const withCondition = (cel: string) =>
    toolPolicy("p", `  - tools: [a]\n    action: allow\n    conditions:\n      - cel: ${JSON.stringify(cel)}\n`);
  /** Column in the file of an offset inside that condition. */
  const col = (offset: number) => 15 + offset;

  it("rejects the reviewer's expressions when the policy loads, at the offending call, with the fix", () => {
    const size = errorsOf(withCondition("request.arguments.l.exists(x, size(request.arguments.s) == 0)"));
    assert.equal(size.length, 1, size.map((e) => e.message).join("\n"));
    assert.equal(size[0]?.line, 11);
    assert.equal(size[0]?.col, col(30), "at size(");
    assert.match(
      size[0]?.message ?? "",
      /^CEL: size\(request\.arguments\.s\) is evaluated for every element of request\.arguments\.l, and request\.arguments\.s does not depend on "x"/,
    );
    assert.match(size[0]?.message ?? "", /outside the comprehension/);
    const contains = errorsOf(withCondition("request.arguments.l.exists(x, request.arguments.s.contains(x + 'zz'))"));
    assert.equal(contains.length, 1, contains.map((e) => e.message).join("\n"));
    assert.equal(contains[0]?.line, 11);
    assert.equal(contains[0]?.col, col(49), "at .contains");
    assert.match(contains[0]?.message ?? "", /request\.arguments\.s\.contains\(\) is evaluated for every element/);
    assert.match(contains[0]?.message ?? "", /work on "x" instead/);
  });

  it("rejects every operation whose cost grows with a value the iteration does not change", () => {
    const l = "request.arguments.l";
    for (const [expr, why] of [
      [`${l}.all(x, request.arguments.s.matches('^' + x))`, /request\.arguments\.s\.matches\(\)/],
      [`${l}.exists(x, x in request.arguments.l2)`, /"in request\.arguments\.l2"/],
      [`${l}.exists(x, x in user.groups)`, /"in user\.groups"/],
      [`${l}.exists(x, request.arguments.a == request.arguments.b)`, /comparing request\.arguments\.a/],
      [`${l}.exists(x, request.arguments.a.startsWith(request.arguments.b))`, /startsWith\(\)/],
      [`${l}.exists(x, x == request.arguments.s + 'z')`, /operator \+ on request\.arguments\.s/],
      [`${l}.exists(x, int(request.arguments.n) == x)`, /int\(\) of request\.arguments\.n/],
      [`${l}.exists(x, timestamp(request.arguments.t) < now)`, /timestamp\(\) of request\.arguments\.t/],
      [`${l}.map(x, request.arguments.s).size() == 0`, /map\(\) returning request\.arguments\.s/],
      [
        `${l}.exists(x, request.arguments.m[x] == 1)`,
        /a lookup in request\.arguments\.m by a key that may be a number/,
      ],
      [`${l}.exists(x, x in agent.labels)`, /a lookup in agent\.labels by a key that may be a number/],
      [`${l}.exists(x, request.arguments.pair[0] == x)`, /a lookup in request\.arguments\.pair/],
      [`${l}.exists(x, size(x == '' ? request.arguments.s : x) > 0)`, /size\(…\) is evaluated for every element/],
      [`${l}.exists(x, ['a', 'b'].exists(p, request.arguments.s.contains(p)))`, /request\.arguments\.s\.contains\(\)/],
      [`[request.arguments.s].exists(p, ${l}.exists(x, p.contains(x)))`, /p\.contains\(\)/],
      [`request.arguments.m.exists(k, size(request.arguments.n[k]) > 0)`, /a lookup in request\.arguments\.n/],
      [`${l}.filter(x, request.arguments.s.endsWith(request.arguments.t)).size() == 0`, /endsWith\(\)/],
    ] as const) {
      rejects(expr, why);
      rejects(
        expr,
        /(does not depend|neither side depends) on "(x|k)": that costs the number of elements times its size \(cost limit\)/,
      );
    }
  });

  it("accepts the linear forms, and they decide as written", () => {
    const l = "request.arguments.l";
    const cases: [string, Record<string, unknown>, "allow" | "deny"][] = [
      [`${l}.all(p, p.startsWith('/tmp/'))`, { l: ["/tmp/a", "/tmp/b"] }, "allow"],
      [`${l}.all(p, p.startsWith(request.arguments.root))`, { l: ["/w/a", "/etc/x"], root: "/w/" }, "deny"],
      [`${l}.exists(p, request.arguments.path.startsWith(p))`, { l: ["/etc/", "/w/"], path: "/w/a" }, "allow"],
      [`${l}.exists(x, x == request.arguments.s)`, { l: ["a", "b"], s: "b" }, "allow"],
      [`${l}.exists(x, x.contains(request.arguments.s))`, { l: ["abc"], s: "abcd" }, "deny"],
      [`${l}.all(x, x in ['a', 'b'])`, { l: ["a", "c"] }, "deny"],
      [`${l}.all(x, string(x) in agent.labels)`, { l: ["team"] }, "allow"],
      [`${l}.exists(x, request.arguments.m['k'] == x)`, { l: [1, 2], m: { k: 2 } }, "allow"],
      [
        `request.arguments.h.exists(k, request.arguments.h[string(k)].contains('secret'))`,
        { h: { a: "x", b: "a secret" } },
        "allow",
      ],
      [`${l}.exists(x, size(x) > 2 && size(user.groups) > 0 && x in ['abc'])`, { l: ["abc"] }, "allow"],
      [`${l}.map(x, x + '/').exists(y, y == request.arguments.s)`, { l: ["a", "b"], s: "b/" }, "allow"],
      [`${l}.all(i, i.price <= request.arguments.max * 2.0)`, { l: [{ price: 3 }], max: 1 }, "deny"],
      [
        `size(request.arguments.s) < 10 && ${l}.exists(x, request.arguments.s.endsWith(x))`,
        { l: ["c"], s: "abc" },
        "allow",
      ],
    ];
    for (const [cel, args, expected] of cases) {
      const set = policySet(withCondition(cel));
      const input = { ...call("a", args), agent: { name: "agent-1", labels: { team: "x" } }, user: { groups: ["g"] } };
      assert.equal(set.decide(input).decision, expected, cel);
    }
  });

  it("map() and filter() results can be used at the input limit (10,000 elements)", () => {
    const l = Array.from({ length: 10_000 }, (_, i) => `x${i}`);
    const set = policySet(
      withCondition(
        "request.arguments.l.map(x, x + '!').filter(x, x.endsWith('7!')).exists(y, y == 'x9997!') && request.arguments.l.map(x, x) == request.arguments.l",
      ),
    );
    const d = set.decide(call("a", { l }));
    assert.equal(d.decision, "allow", d.reason);
  });
});

describe("CEL: problems inside YAML strings are reported where they are", () => {
  /** Line and column (1-based) of the first occurrence of `needle` in `text`. */
  const at = (text: string, needle: string) => {
    const i = text.indexOf(needle);
    assert.ok(i >= 0, `${needle} not in the text`);
    const before = text.slice(0, i);
    return { line: before.split("\n").length, col: i - before.lastIndexOf("\n") };
  };
  const rule = (cel: string) => `  - tools: [a]\n    action: allow\n    conditions:\n      - cel: ${cel}\n`;
  const firstError = (text: string) => {
    const e = errorsOf(text)[0];
    assert.ok(e);
    assert.match(e.message, /^CEL: unknown method "matchez"/);
    return e;
  };

  it("points at the token in block scalars (folded or literal), multi-line plain scalars and one-line quoted strings", () => {
    for (const cel of [
      ">-\n          request.tool == 'x' &&\n          request.tool.matchez('y')",
      ">\n          request.tool == 'x'\n\n            && request.tool.matchez('y')\n          || false",
      "| # a comment\n          request.tool == 'x' &&\n\n          request.tool.matchez('y')",
      "|2+\n          request.tool == 'x' &&\n          request.tool.matchez('y')\n\n",
      "request.tool == 'x' &&\n          request.tool.matchez('y')",
      `"request.arguments.p == \\"a\\tb\\u00e9\\" && request.tool.matchez('y')"`,
      "'request.arguments.p == ''a'' && request.tool.matchez(''y'')'",
    ]) {
      const text = toolPolicy("p", rule(cel));
      const e = firstError(text);
      assert.deepEqual({ line: e.line, col: e.col }, at(text, ".matchez"), cel);
      assert.doesNotMatch(e.message, /start of this string/);
    }
  });

  it("points at the string, and says so, where escapes or line breaks in quotes keep the column from being exact", () => {
    for (const cel of [
      `"request.tool == 'x' &&\n          request.tool.matchez('y')"`,
      `"request.tool == 'x' && \\\n          request.tool.matchez('y')"`,
    ]) {
      const text = toolPolicy("p", rule(cel));
      const e = firstError(text);
      assert.deepEqual({ line: e.line, col: e.col }, at(text, `"request`), cel);
      assert.match(e.message, /reported at the start of this string/);
      assert.match(e.message, /character 36 of the expression: "\.matchez\('y'\)"/);
    }
  });
});
