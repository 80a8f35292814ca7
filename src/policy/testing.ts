// Policy test suites: PolicyTest documents next to the policies, each case an
// input and the decision expected for it (like `opa test`).
import type { Decision } from "./decision.js";
import { parseDecisionInput } from "./decision.js";
import type { SourcePosition } from "./diagnostics.js";
import type { PolicySet } from "./engine.js";
import type { PolicyTest, TestCase } from "./resources.js";

export interface CaseResult {
  name: string;
  position: SourcePosition;
  passed: boolean;
  /** Why it failed, one line each. */
  failures: string[];
  actual: Decision | null;
}

export interface SuiteResult {
  name: string;
  file: string;
  cases: CaseResult[];
}

export interface TestReport {
  suites: SuiteResult[];
  passed: number;
  failed: number;
}

export function runPolicyTests(set: PolicySet): TestReport {
  const suites: SuiteResult[] = [];
  let passed = 0;
  let failed = 0;
  for (const res of set.tests) {
    const suite = res.value as PolicyTest;
    const cases = suite.spec.cases.map((c, i) => {
      const r = runCase(set, c, res.positionOf(`/spec/cases/${i}`));
      if (r.passed) passed++;
      else failed++;
      return r;
    });
    suites.push({ name: res.name, file: res.file, cases });
  }
  return { suites, passed, failed };
}

function runCase(set: PolicySet, c: TestCase, position: SourcePosition): CaseResult {
  const input = parseDecisionInput(c.input);
  if ("error" in input) {
    return { name: c.name, position, passed: false, failures: [`input is not usable: ${input.error}`], actual: null };
  }
  const actual = set.decide(input);
  const failures: string[] = [];
  const e = c.expect;
  if (actual.decision !== e.decision) failures.push(`expected decision ${e.decision}, got ${actual.decision}`);
  if (e.enforced !== undefined && actual.enforced !== e.enforced) {
    failures.push(`expected enforced: ${e.enforced}, got ${actual.enforced}`);
  }
  if (e.policy !== undefined && actual.policy !== e.policy) {
    failures.push(`expected policy ${JSON.stringify(e.policy)}, got ${JSON.stringify(actual.policy)}`);
  }
  if (e.rule !== undefined) {
    const r = actual.rule;
    const ok =
      e.rule === null
        ? r === null
        : typeof e.rule === "number"
          ? r?.index === e.rule
          : typeof e.rule === "string"
            ? r?.name === e.rule
            : false;
    if (!ok) {
      const got = r === null ? "no rule (default action)" : `rules[${r.index}]${r.name ? ` "${r.name}"` : ""}`;
      failures.push(`expected rule ${JSON.stringify(e.rule)}, got ${got}`);
    }
  }
  if (e.reason !== undefined && !actual.reason.includes(e.reason)) {
    failures.push(`expected the reason to contain ${JSON.stringify(e.reason)}, got ${JSON.stringify(actual.reason)}`);
  }
  if (failures.length > 0 && actual.decision !== e.decision) failures.push(`reason: ${actual.reason}`);
  return { name: c.name, position, passed: failures.length === 0, failures, actual };
}
