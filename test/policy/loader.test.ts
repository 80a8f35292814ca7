import assert from "node:assert/strict";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, it } from "node:test";
import { canonicalDigest } from "../../src/encoding/canonical-json.js";
import { compilePolicySet } from "../../src/policy/engine.js";
import { loadPolicyPaths } from "../../src/policy/loader.js";
import { call, compile, errorsOf, policySet, show, toolPolicy } from "../helpers/policies.js";

const fixture = (name: string) => readFile(new URL(`../../../test/fixtures/${name}`, import.meta.url), "utf8");
const example = (name: string) => readFile(new URL(`../../../examples/policies/${name}`, import.meta.url), "utf8");

describe("loading: the published example pasted from a web page", () => {
  it("fails with one error per broken line, each naming the fix, and loads nothing", async () => {
    const errors = errorsOf({ "pasted.yaml": await fixture("published-example-pasted.yaml") });
    const byLine = new Map(errors.map((e) => [e.line, e]));
    for (const line of [9, 12, 17, 23]) {
      const e = byLine.get(line);
      assert.ok(e, `expected an error on line ${line}, got ${errors.map(show).join("\n")}`);
      assert.match(e.message, /markdown escape/);
      assert.match(e.message, /Remove the backslash/);
      assert.equal(e.file, "pasted.yaml");
    }
    const tag = byLine.get(15);
    assert.ok(tag);
    assert.equal(tag.col, 14, "points at the ! that YAML reads as a tag");
    assert.match(tag.message, /Quote CEL expressions that start with !/);
    assert.ok(tag.message.includes(`cel: "!request.arguments.base.matches('main|production')"`), tag.message);
    const indent = byLine.get(24);
    assert.ok(indent);
    assert.match(indent.message, /"action" starts in column 6 but "tools" on line 23 starts in column 5/);
    assert.equal(indent.col, 6);
  });

  it("the corrected form from DESIGN.md loads without any diagnostic and behaves as written", async () => {
    const { policySet: set, diagnostics } = compile({ "policy.yaml": await example("github/policy.yaml") });
    assert.deepEqual(diagnostics.map(show), []);
    assert.ok(set);
    const agent = { name: "dev-assistant" };
    const decide = (tool: string, args: Record<string, unknown> = {}) =>
      set.decide({ agent, request: { server: "github", tool, arguments: args } }).decision;
    assert.equal(decide("list_issues"), "allow");
    assert.equal(decide("create_pull_request", { base: "feature/x" }), "allow");
    assert.equal(decide("create_pull_request", { base: "main" }), "deny");
    assert.equal(decide("merge_pull_request"), "require_approval");
    assert.equal(decide("delete_file"), "deny");
    assert.equal(decide("get_file_contents\\"), "deny");
  });

  it("a markdown escape inside quotes is taken as meant", () => {
    const set = policySet(toolPolicy("p", `  - tools: [a]\n    action: allow\n    message: 'literally \\] here'\n`));
    assert.equal(set.decide(call("a")).reason, "literally \\] here");
  });
});

describe("loading: structure errors name file, line and column and say how to fix", () => {
  it("rejects a misspelt field with a suggestion", () => {
    const errors = errorsOf(toolPolicy("p", "  - tools: [a]\n    action: allow\n", "  defualtAction: deny\n"));
    assert.equal(errors.length, 1);
    const [e] = errors;
    assert.ok(e);
    assert.equal(e.line, 7);
    assert.equal(e.col, 3);
    assert.match(e.message, /unknown field "defualtAction" in ToolPolicy spec \(did you mean "defaultAction"\?\)/);
  });

  it("rejects unknown fields at every level, not only the top", () => {
    const errors = errorsOf(toolPolicy("p", "  - tools: [a]\n    action: allow\n    approvl: {timeout: 5m}\n"));
    assert.match(errors[0]?.message ?? "", /unknown field "approvl" in rule \(did you mean "approval"\?\)/);
    assert.equal(errors[0]?.line, 10);
  });

  it("rejects unknown kinds and wrong apiVersions", () => {
    assert.match(
      errorsOf("kind: ToolPolcy\nmetadata: {name: x}\nspec: {}\n")[0]?.message ?? "",
      /unknown kind "ToolPolcy" \(did you mean "ToolPolicy"\?\)/,
    );
    assert.match(
      errorsOf("kind: Deployment\nmetadata: {name: x}\n")[0]?.message ?? "",
      /Warden reads ToolPolicy, GuardrailPolicy, ArtifactPolicy, PolicyTest/,
    );
    const e = errorsOf(`apiVersion: warden/v2\n${toolPolicy("p", "  - tools: [a]\n    action: allow\n")}`)[0];
    assert.match(e?.message ?? "", /apiVersion must be one of warden\/v1/);
    assert.match(errorsOf("metadata: {name: x}\n")[0]?.message ?? "", /document has no "kind"/);
  });

  it("explains wrong value types and offers the fix", () => {
    const scalarTools = errorsOf(toolPolicy("p", "  - tools: create_issue\n    action: allow\n"))[0];
    assert.match(
      scalarTools?.message ?? "",
      /rules\[0\]\.tools must be a list, not the text "create_issue" \(write a list: \[create_issue\]\)/,
    );
    const action = errorsOf(toolPolicy("p", "  - tools: [a]\n    action: alow\n"))[0];
    assert.match(
      action?.message ?? "",
      /must be one of allow, deny, require_approval, not "alow" \(did you mean "allow"\?\)/,
    );
    const timeout = errorsOf(
      toolPolicy("p", "  - tools: [a]\n    action: require_approval\n    approval: {timeout: 30}\n"),
    )[0];
    assert.match(timeout?.message ?? "", /timeout must be a string, not the number 30/);
    const unit = errorsOf(
      toolPolicy("p", "  - tools: [a]\n    action: require_approval\n    approval: {timeout: 30x}\n"),
    )[0];
    assert.match(unit?.message ?? "", /"30x" is not a duration; write a number and a unit, e\.g\. 30s, 5m, 2h or 1d/);
    const name = errorsOf(toolPolicy("p", '  - tools: ["bad name"]\n    action: allow\n'))[0];
    assert.match(name?.message ?? "", /a tool name uses letters, digits/);
  });

  it("requires metadata.name, selectors, and the right fields for the action", () => {
    assert.match(
      errorsOf("kind: ToolPolicy\nmetadata: {}\nspec: {agent: a, mcpServer: s}\n")[0]?.message ?? "",
      /metadata is missing the required field "name"/,
    );
    assert.match(
      errorsOf("kind: ToolPolicy\nmetadata: {name: p}\nspec: {mcpServer: s}\n")[0]?.message ?? "",
      /spec needs "agent", "agents" or "agentSelector"/,
    );
    assert.match(
      errorsOf("kind: ToolPolicy\nmetadata: {name: p}\nspec: {agent: a}\n")[0]?.message ?? "",
      /spec needs "mcpServer" or "mcpServers"/,
    );
    assert.match(
      errorsOf("kind: ToolPolicy\nmetadata: {name: p}\nspec: {agent: a, agents: [b], mcpServer: s}\n")[0]?.message ??
        "",
      /either "agent" or "agents"/,
    );
    const approvalOnAllow = errorsOf(
      toolPolicy("p", "  - tools: [a]\n    action: allow\n    approval: {timeout: 5m}\n"),
    )[0];
    assert.match(approvalOnAllow?.message ?? "", /"approval" only applies to action: require_approval/);
    assert.equal(approvalOnAllow?.line, 10);
    const rateOnDeny = errorsOf(
      toolPolicy("p", "  - tools: [a]\n    action: deny\n    rateLimit: {requests: 1, per: 1m}\n"),
    )[0];
    assert.match(rateOnDeny?.message ?? "", /"rateLimit" has no effect on a deny rule/);
  });

  it("rejects YAML that could change meaning silently: duplicate keys, aliases, custom tags", () => {
    assert.match(
      errorsOf(toolPolicy("p", "  - tools: [a]\n    action: allow\n    action: deny\n"))[0]?.message ?? "",
      /Map keys must be unique/,
    );
    const alias = errorsOf(
      `kind: ToolPolicy\nmetadata: {name: p}\nspec:\n  agent: a\n  mcpServer: s\n  rules:\n  - tools: &t [a]\n    action: allow\n  - tools: *t\n    action: deny\n`,
    )[0];
    assert.match(alias?.message ?? "", /Warden does not expand YAML anchors and aliases/);
    const tag = errorsOf(toolPolicy("p", "  - tools: [a]\n    action: !!str allow\n    message: !secret x\n"))[0];
    assert.match(tag?.message ?? "", /"!secret" as a tag/);
  });

  it("names both places when a policy name is used twice", () => {
    const errors = errorsOf({
      "a.yaml": toolPolicy("same", "  - tools: [a]\n    action: allow\n"),
      "b.yaml": toolPolicy("same", "  - tools: [a]\n    action: deny\n"),
    });
    assert.equal(errors[0]?.file, "b.yaml");
    assert.match(errors[0]?.message ?? "", /ToolPolicy "same" is defined twice; the other one is at a\.yaml:1:1/);
  });

  it("warns about a rule that an earlier unconditional rule always pre-empts", () => {
    const { policySet: set, diagnostics } = compile(
      toolPolicy("p", '  - tools: ["*"]\n    action: deny\n  - tools: [read]\n    action: allow\n'),
    );
    assert.ok(set, "a warning does not stop loading");
    assert.equal(diagnostics.length, 1);
    assert.equal(diagnostics[0]?.severity, "warning");
    assert.match(
      diagnostics[0]?.message ?? "",
      /rules\[1\] can never decide: rules\[0\] above matches every call it would/,
    );
  });

  it("checks argument schemas at load: unknown keywords, unknown formats and non-RE2 patterns are errors", () => {
    const rule = (schema: string) => toolPolicy("p", `  - tools: [a]\n    action: allow\n    arguments: ${schema}\n`);
    assert.match(
      errorsOf(rule("{type: object, properties: {n: {maximun: 3}}}"))[0]?.message ?? "",
      /unknown keyword: "maximun"/,
    );
    assert.match(errorsOf(rule("{type: string, format: email}"))[0]?.message ?? "", /unknown format "email"/);
    assert.match(
      errorsOf(rule("{type: string, pattern: '(?<=a)b'}"))[0]?.message ?? "",
      /arguments is not a usable JSON Schema/,
    );
  });
});

describe("loading: the other kinds are recognised and checked", () => {
  it("loads a valid GuardrailPolicy and ArtifactPolicy into the policy set digest", () => {
    const set = policySet(`kind: GuardrailPolicy
metadata: {name: no-pii}
spec:
  agent: "*"
  rules:
  - detect: [email, credit_card, iban]
    on: [tool_arguments, llm_responses]
    action: redact
  - patterns: [{name: ticket, regex: 'TICKET-[0-9]+'}]
    action: alert
---
kind: ArtifactPolicy
metadata: {name: servers}
spec:
  artifacts: [mcp_server]
  rules:
  - names: ["@modelcontextprotocol/*"]
    action: allow
    require:
      digests: ["sha256:${"a".repeat(64)}"]
    conditions:
    - cel: "artifact.attestations.exists(a, a.predicateType == 'https://slsa.dev/provenance/v1')"
`);
    assert.deepEqual(
      set.resources.map((r) => r.kind),
      ["GuardrailPolicy", "ArtifactPolicy"],
    );
    assert.equal(set.toolPolicies.length, 0);
  });

  it("rejects unknown detectors, bad regexes and CEL over the wrong environment", () => {
    assert.match(
      errorsOf(
        "kind: GuardrailPolicy\nmetadata: {name: g}\nspec:\n  agent: a\n  rules:\n  - detect: [emails]\n    action: block\n",
      )[0]?.message ?? "",
      /not "emails" \(did you mean "email"\?\)/,
    );
    const regex = errorsOf(
      "kind: GuardrailPolicy\nmetadata: {name: g}\nspec:\n  agent: a\n  rules:\n  - patterns: [{name: x, regex: '(a'}]\n    action: block\n",
    )[0];
    assert.match(regex?.message ?? "", /invalid regular expression/);
    assert.equal(regex?.line, 6);
    const cel = errorsOf(
      "kind: ArtifactPolicy\nmetadata: {name: a}\nspec:\n  artifacts: [model]\n  rules:\n  - action: allow\n    conditions: [{cel: \"request.tool == 'x'\"}]\n",
    )[0];
    assert.match(cel?.message ?? "", /unknown variable "request"; the variables are artifact, now/);
  });
});

describe("loading: files and directories", () => {
  it("reads several documents per file, directories recursively in sorted order, and skips hidden files", async () => {
    const dir = await mkdtemp(join(tmpdir(), "warden-load-"));
    try {
      await writeFile(
        join(dir, "b.yaml"),
        `${toolPolicy("b1", "  - tools: [x]\n    action: allow\n")}---\n${toolPolicy("b2", "  - tools: [x]\n    action: allow\n")}`,
      );
      await writeFile(join(dir, "a.yml"), toolPolicy("a1", "  - tools: [x]\n    action: allow\n"));
      await writeFile(join(dir, ".hidden.yaml"), "not: [valid");
      await writeFile(join(dir, "notes.txt"), "ignored");
      const load = await loadPolicyPaths([dir]);
      assert.deepEqual(load.diagnostics, []);
      assert.deepEqual(
        load.resources.map((r) => r.name),
        ["a1", "b1", "b2"],
      );
      assert.equal(load.resources[2]?.position.line, 11, "second document's position is its own");
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it("reports a missing path and an empty directory as errors", async () => {
    const dir = await mkdtemp(join(tmpdir(), "warden-empty-"));
    try {
      const load = await loadPolicyPaths([join(dir, "nope.yaml"), dir]);
      assert.deepEqual(
        load.diagnostics.map((d) => d.message),
        ["cannot read: no such file or directory", "no policy files (*.yaml, *.yml) in this directory"],
      );
      assert.equal(compilePolicySet(load).policySet, undefined);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe("policy versions", () => {
  it("is the sha256 of the canonical JSON of the document, blind to formatting and comments", () => {
    const a = policySet(toolPolicy("p", "  - tools: [a]\n    action: allow\n"));
    const b = policySet(
      `# a comment\nspec:\n  rules: [{action: allow, tools: ["a"]}]\n  mcpServer: srv\n  agent: 'agent-1'\nmetadata: {name: p}\nkind: ToolPolicy\n`,
    );
    const version = a.toolPolicies[0]?.version;
    assert.equal(version, b.toolPolicies[0]?.version);
    assert.equal(
      version,
      canonicalDigest({
        kind: "ToolPolicy",
        metadata: { name: "p" },
        spec: { agent: "agent-1", mcpServer: "srv", rules: [{ tools: ["a"], action: "allow" }] },
      }),
    );
    assert.equal(a.digest, b.digest);
    const c = policySet(toolPolicy("p", "  - tools: [a]\n    action: deny\n"));
    assert.notEqual(c.toolPolicies[0]?.version, version);
    assert.notEqual(c.digest, a.digest);
  });
});

describe("loading: text that is not valid Unicode", () => {
  it("reports a lone surrogate at its place instead of failing to hash", () => {
    const errs = errorsOf(
      'kind: ToolPolicy\nmetadata:\n  name: p\n  description: "\\ud800"\nspec: {agent: a, mcpServer: s}\n',
    );
    assert.equal(errs.length, 1);
    assert.equal(errs[0]?.line, 4);
    assert.match(errs[0]?.message ?? "", /lone UTF-16 surrogate.*policies must be valid Unicode text/);
  });
});

describe("loading: every problem in one run", () => {
  const lineOf = (text: string, needle: string) => text.slice(0, text.indexOf(needle)).split("\n").length;

  it("a schema error does not hide CEL, approval and arguments-schema errors elsewhere in the document", () => {
    const text = toolPolicy(
      "p",
      `  - tools: [a]
    action: alow
  - tools: [b]
    action: allow
    conditions:
      - cel: request.tool.matchez('x')
  - tools: [c]
    action: allow
    approval: {timeout: 5m}
  - tools: [d]
    action: require_approval
    approval: {timeout: 30x}
    arguments: {type: objekt}
`,
      "  defualtAction: deny\n",
    );
    const errors = errorsOf(text);
    const found = (pattern: RegExp, needle: string) => {
      const e = errors.find((x) => pattern.test(x.message));
      assert.ok(e, `expected ${pattern}, got:\n${errors.map(show).join("\n")}`);
      assert.equal(e.line, lineOf(text, needle), `${pattern}`);
    };
    found(/unknown field "defualtAction"/, "defualtAction");
    found(/not "alow" \(did you mean "allow"\?\)/, "alow");
    found(/CEL: unknown method "matchez"/, "matchez");
    found(/"approval" only applies to action: require_approval/, "approval: {timeout: 5m}");
    found(/"30x" is not a duration/, "30x");
    found(/arguments is not a usable JSON Schema/, "objekt");
    assert.equal(errors.length, 6, errors.map(show).join("\n"));
  });

  it("the same for ArtifactPolicy and GuardrailPolicy documents", () => {
    const artifact = errorsOf(
      "kind: ArtifactPolicy\nmetadata: {name: a}\nspec:\n  artifacts: [modell]\n  rules:\n  - action: allow\n    conditions: [{cel: \"request.tool == 'x'\"}]\n",
    );
    assert.deepEqual(
      artifact.map((e) => [e.line, /not "modell"|unknown variable "request"/.test(e.message)]),
      [
        [4, true],
        [7, true],
      ],
    );
    const guardrail = errorsOf(
      "kind: GuardrailPolicy\nmetadata: {name: g}\nspec:\n  agent: a\n  rules:\n  - patterns: [{name: x, regex: '(a'}]\n    action: blok\n",
    );
    assert.deepEqual(
      guardrail.map((e) => [e.line, /not "blok"|invalid regular expression/.test(e.message)]),
      [
        [7, true],
        [6, true],
      ],
    );
  });
});

describe("loading: fix advice keeps the text as written, and every problem is reported once", () => {
  it("advises quoting a number or boolean exactly as it was written", () => {
    const errors = errorsOf(toolPolicy("p", "  - tools: [0x1F, 1e3, 0o17, .5, true, 007]\n    action: allow\n"));
    const advice = errors.map((e) => /\(quote it: (.*)\)$/.exec(e.message)?.[1]);
    assert.deepEqual(advice, ['"0x1F"', '"1e3"', '"0o17"', '".5"', '"true"', '"007"']);
    assert.match(errors[0]?.message ?? "", /must be a string, not the number 0x1F/);
  });

  it("reports each problem once", () => {
    const errors = errorsOf(
      toolPolicy(
        "p",
        "  - tools: [0x1F, 1e3]\n    action: allow\n    conditions:\n      - cel: request.arguments.a.exists(x, request.arguments.b.exists(y, x == y))\n      - cel: request.arguments.a.map(x, request.arguments.b.filter(y, x == y)).size() == 0\n",
      ),
    );
    const shown = errors.map(show);
    assert.deepEqual(shown, [...new Set(shown)], shown.join("\n"));
    assert.equal(shown.filter((s) => /may not be nested/.test(s)).length, 2, shown.join("\n"));
    assert.equal(shown.length, 4, shown.join("\n"));
  });
});
