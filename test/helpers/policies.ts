// Helpers for tests: load policy text from memory and decide calls against it.
import assert from "node:assert/strict";
import type { DecisionInput } from "../../src/policy/decision.js";
import type { Diagnostic } from "../../src/policy/diagnostics.js";
import { compilePolicySet, type EngineOptions, type PolicySet } from "../../src/policy/engine.js";
import { loadPolicySources } from "../../src/policy/loader.js";

export function compile(text: string | Record<string, string>, options?: EngineOptions) {
  const files = typeof text === "string" ? { "policy.yaml": text } : text;
  const load = loadPolicySources(Object.entries(files).map(([file, t]) => ({ file, text: t })));
  return compilePolicySet(load, options);
}

/** Compiles and fails the test (showing the diagnostics) if there are errors. */
export function policySet(text: string | Record<string, string>, options?: EngineOptions): PolicySet {
  const { policySet, diagnostics } = compile(text, options);
  assert.ok(policySet, `expected the policies to load, got:\n${diagnostics.map(show).join("\n")}`);
  return policySet;
}

/** Compiles, expects failure, and returns the error diagnostics. */
export function errorsOf(text: string | Record<string, string>): Diagnostic[] {
  const { policySet, diagnostics } = compile(text);
  const errors = diagnostics.filter((d) => d.severity === "error");
  assert.equal(policySet, undefined, "expected the policies to be rejected");
  assert.ok(errors.length > 0, "expected at least one error");
  return errors;
}

export function show(d: Diagnostic): string {
  return `${d.file}:${d.line}:${d.col}: ${d.severity}: ${d.message}`;
}

export function call(
  tool: string,
  args: Record<string, unknown> = {},
  extra: Partial<Omit<DecisionInput, "request">> & { server?: string } = {},
): DecisionInput {
  const { server, ...rest } = extra;
  return { agent: { name: "agent-1" }, ...rest, request: { server: server ?? "srv", tool, arguments: args } };
}

/** A ToolPolicy document for agent-1 on srv with the given rules (YAML text, indented as list items). */
export function toolPolicy(name: string, rules: string, header = ""): string {
  return `kind: ToolPolicy
metadata:
  name: ${name}
spec:
  agent: agent-1
  mcpServer: srv
${header}  rules:
${rules}`;
}
