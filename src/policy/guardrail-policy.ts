// GuardrailPolicy: recognised and checked now; enforced by the guardrails module later.
import { RE2JS } from "@bufbuild/re2";
import type { LoadedResource } from "./loader.js";
import type { GuardrailPolicy } from "./resources.js";
import { type CompileContext, checkSelectors } from "./tool-policy.js";

export function checkGuardrailPolicy(res: LoadedResource, ctx: CompileContext): boolean {
  const spec = (res.value as GuardrailPolicy).spec;
  let ok = checkSelectors(res, spec, ctx, false);
  spec.rules.forEach((rule, i) => {
    const base = `/spec/rules/${i}`;
    if (!rule.detect && !rule.patterns) {
      ctx.diagnostics.push({
        ...res.positionOf(base),
        severity: "error",
        message: 'a guardrail rule needs "detect" (built-in detectors) or "patterns" (your own regular expressions)',
      });
      ok = false;
    }
    rule.patterns?.forEach((p, j) => {
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
