// `warden policy ...`: validate, eval, explain, test. Thin over src/policy.
// The output formats and exit codes here are a contract other tools rely on;
// the README's CLI section documents them.
import { parseArgs } from "node:util";
import { type Decision, type DecisionInput, parseDecisionInput } from "../policy/decision.js";
import { formatDiagnostic } from "../policy/diagnostics.js";
import { compilePolicySet, type PolicySet } from "../policy/engine.js";
import { explain, renderExplanation } from "../policy/explain.js";
import { loadPolicyPaths } from "../policy/loader.js";
import { runPolicyTests, type TestReport } from "../policy/testing.js";
import { type CliIO, EXIT, readInput, UsageError } from "./io.js";
import { policyDiff } from "./policy-diff.js";

export const POLICY_HELP = `Usage: warden policy <command> [options]

Commands:
  validate PATH...                      check policy files and directories
  eval --policy PATH --input FILE|-     decide one call (JSON) or many (JSON Lines)
  explain --policy PATH --input FILE|-  show how the decision was reached
  test PATH... [--format text|json]     run the PolicyTest suites found in PATH
  diff OLD NEW [--inputs FILE]          what changed between two policy sets (files,
                                        directories, bundles, oci:// references)

Options for eval and explain:
  --policy PATH               a policy file or directory (repeatable)
  --input FILE|-              the call(s) to decide; - reads stdin
  --default-decision deny|allow
                              what happens when no policy applies (default deny)

Exit codes: 0 success (any decision); 1 invalid policies or failing tests;
2 unusable input, options or policies.
`;

export async function policyCommand(args: string[], io: CliIO): Promise<number> {
  const [sub, ...rest] = args;
  switch (sub) {
    case "validate":
      return validate(rest, io);
    case "eval":
      return evaluate(rest, io, "eval");
    case "explain":
      return evaluate(rest, io, "explain");
    case "test":
      return test(rest, io);
    case "diff":
      return policyDiff(rest, io);
    case undefined:
    case "help":
    case "--help":
    case "-h":
      io.stdout(POLICY_HELP);
      return sub === undefined ? EXIT.unusable : EXIT.ok;
    default:
      throw new UsageError(`unknown command "policy ${sub}"; run warden policy --help`);
  }
}

type OptionSpec = NonNullable<NonNullable<Parameters<typeof parseArgs>[0]>["options"]>;

function parse(args: string[], options: OptionSpec) {
  try {
    return parseArgs({ args, options, allowPositionals: true, strict: true });
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
}

function defaultDecision(value: unknown): "allow" | "deny" {
  if (value === undefined || value === "deny") return "deny";
  if (value === "allow") return "allow";
  throw new UsageError(`--default-decision must be deny or allow, not "${String(value)}"`);
}

/** Loads and compiles; prints diagnostics (errors and warnings) to stderr. */
async function load(paths: string[], io: CliIO, decision: "allow" | "deny" = "deny"): Promise<PolicySet | undefined> {
  const loaded = await loadPolicyPaths(paths);
  const { policySet, diagnostics } = compilePolicySet(loaded, { defaultDecision: decision });
  for (const d of diagnostics) io.stderr(`${formatDiagnostic(d)}\n`);
  return policySet;
}

async function validate(args: string[], io: CliIO): Promise<number> {
  const { positionals } = parse(args, {});
  if (positionals.length === 0) throw new UsageError("warden policy validate needs at least one PATH");
  const set = await load(positionals, io);
  if (!set) return EXIT.failed;
  const counts = new Map<string, number>();
  for (const r of [...set.resources, ...set.tests]) counts.set(r.kind, (counts.get(r.kind) ?? 0) + 1);
  const summary = [...counts].map(([k, n]) => `${n} ${k}`).join(", ");
  io.stdout(`valid: ${summary}; policy set ${set.digest}\n`);
  return EXIT.ok;
}

async function evaluate(args: string[], io: CliIO, mode: "eval" | "explain"): Promise<number> {
  const { values, positionals } = parse(args, {
    policy: { type: "string", multiple: true },
    input: { type: "string" },
    "default-decision": { type: "string" },
  });
  if (positionals.length > 0) throw new UsageError(`unexpected argument "${positionals[0]}"`);
  const policies = values.policy as string[] | undefined;
  if (!policies || policies.length === 0) throw new UsageError(`warden policy ${mode} needs --policy PATH`);
  if (typeof values.input !== "string")
    throw new UsageError(`warden policy ${mode} needs --input FILE (or - for stdin)`);
  const inputs = parseInputs(await readInput(values.input, io), values.input);
  const set = await load(policies, io, defaultDecision(values["default-decision"]));
  if (!set) {
    io.stderr("policies are not usable; no decision made\n");
    return EXIT.unusable;
  }
  if (mode === "eval") {
    for (const input of inputs) io.stdout(`${JSON.stringify(orderDecision(set.decide(input)))}\n`);
  } else {
    io.stdout(`${inputs.map((i) => renderExplanation(explain(set, i))).join("\n\n")}\n`);
  }
  return EXIT.ok;
}

/** A JSON object, or JSON Lines (one object per line). Every line is checked before any is decided. */
export function parseInputs(text: string, name: string): DecisionInput[] {
  const trimmed = text.trim();
  if (trimmed === "") throw new UsageError(`${name}: no input`);
  let values: { value: unknown; where: string }[];
  try {
    values = [{ value: JSON.parse(trimmed), where: name }];
  } catch {
    values = [];
    text.split("\n").forEach((line, i) => {
      if (line.trim() === "") return;
      try {
        values.push({ value: JSON.parse(line), where: `${name}:${i + 1}` });
      } catch (err) {
        throw new UsageError(`${name}:${i + 1}: not valid JSON: ${(err as Error).message}`);
      }
    });
  }
  return values.map(({ value, where }) => {
    const input = parseDecisionInput(value);
    if ("error" in input) throw new UsageError(`${where}: ${input.error}`);
    return input;
  });
}

/** Key order of the eval output is part of the contract: the documented fields first. */
function orderDecision(d: Decision): Decision {
  return {
    decision: d.decision,
    enforced: d.enforced,
    policy: d.policy,
    version: d.version,
    policySet: d.policySet,
    rule: d.rule,
    reason: d.reason,
    approval: d.approval,
    obligations: d.obligations,
    dryRun: d.dryRun,
  };
}

async function test(args: string[], io: CliIO): Promise<number> {
  const { values, positionals } = parse(args, {
    format: { type: "string" },
    "default-decision": { type: "string" },
  });
  if (positionals.length === 0) throw new UsageError("warden policy test needs at least one PATH");
  const format = values.format ?? "text";
  if (format !== "text" && format !== "json") throw new UsageError(`--format must be text or json, not "${format}"`);
  const set = await load(positionals, io, defaultDecision(values["default-decision"]));
  if (!set) {
    io.stderr("policies are not usable; no tests run\n");
    return EXIT.unusable;
  }
  if (set.tests.length === 0) {
    io.stderr(`no PolicyTest documents found in ${positionals.join(", ")}\n`);
    return EXIT.unusable;
  }
  const report = runPolicyTests(set);
  io.stdout(format === "json" ? `${JSON.stringify(report, reportReplacer)}\n` : renderReport(report));
  return report.failed > 0 ? EXIT.failed : EXIT.ok;
}

function reportReplacer(key: string, value: unknown): unknown {
  return key === "actual" && value ? orderDecision(value as Decision) : value;
}

function renderReport(report: TestReport): string {
  const out: string[] = [];
  for (const s of report.suites) {
    out.push(`${s.file} (${s.name})`);
    for (const c of s.cases) {
      out.push(`  ${c.passed ? "ok  " : "FAIL"} ${c.name}`);
      if (!c.passed) {
        for (const f of c.failures) out.push(`         ${f}`);
        out.push(`         at ${c.position.file}:${c.position.line}:${c.position.col}`);
      }
    }
  }
  const total = report.passed + report.failed;
  out.push(
    `${report.failed === 0 ? "PASS" : "FAIL"}: ${report.passed}/${total} cases passed in ${report.suites.length} suite${report.suites.length === 1 ? "" : "s"}`,
  );
  return `${out.join("\n")}\n`;
}
