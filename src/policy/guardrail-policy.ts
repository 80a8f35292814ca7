// GuardrailPolicy: recognised and checked now; enforced by the guardrails module later.
import { RE2JS } from "@bufbuild/re2";
import type { LoadedResource } from "./loader.js";
import type { GuardrailPolicy } from "./resources.js";
import { type CompileContext, checkSelectors } from "./tool-policy.js";

/**
 * `complete` is false for a document with errors, which has only its valid parts: then only
 * the regular expressions are checked, as a missing field may just have been invalid.
 */
export function checkGuardrailPolicy(res: LoadedResource, ctx: CompileContext, complete = true): boolean {
  const spec = (res.value as Partial<GuardrailPolicy>).spec;
  if (!spec) return false;
  let ok = complete && checkSelectors(res, spec, ctx, false);
  (spec.rules ?? []).forEach((rule, i) => {
    if (!rule) return;
    const base = `/spec/rules/${i}`;
    if (complete && !rule.detect && !rule.patterns) {
      ctx.diagnostics.push({
        ...res.positionOf(base),
        severity: "error",
        message: 'a guardrail rule needs "detect" (built-in detectors) or "patterns" (your own regular expressions)',
      });
      ok = false;
    }
    rule.patterns?.forEach((p, j) => {
      if (typeof p?.regex !== "string") return;
      try {
        RE2JS.compile(p.regex);
      } catch (err) {
        ctx.diagnostics.push({
          ...res.positionOf(`${base}/patterns/${j}/regex`),
          severity: "error",
          message: `invalid regular expression (RE2 syntax): ${(err as Error).message}`,
        });
        ok = false;
      }
    });
  });
  return ok;
}
