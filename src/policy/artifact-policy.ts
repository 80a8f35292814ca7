// ArtifactPolicy: recognised and checked now (including its CEL, against the
// artifact environment); enforced at admission by the supply-chain module later.
import type { CelEnvironment } from "./cel/runtime.js";
import type { LoadedResource } from "./loader.js";
import type { ArtifactPolicy } from "./resources.js";
import { type CompileContext, compileConditions } from "./tool-policy.js";

export function checkArtifactPolicy(res: LoadedResource, ctx: CompileContext, cel: CelEnvironment): boolean {
  const spec = (res.value as Partial<ArtifactPolicy>).spec;
  let ok = true;
  // A document with errors has only its valid parts (rules may be missing or undefined).
  (spec?.rules ?? []).forEach((rule, i) => {
    if (rule && !compileConditions(res, `/spec/rules/${i}`, rule.conditions, ctx, cel)) ok = false;
  });
  return ok;
}
