// JSON Schema (2020-12) validation of tool arguments, compiled once at load.
// Patterns run on RE2, like CEL's matches(): the arguments come from a model
// that may be hijacked, and a backtracking `pattern` would let it hang us.
import { RE2JS } from "@bufbuild/re2";
import { Ajv2020, type ErrorObject, type ValidateFunction } from "ajv/dist/2020.js";

export type ArgumentsValidator = (value: unknown) => string | undefined;

const re2Engine = Object.assign((pattern: string) => RE2JS.compile(pattern), { code: "re2" });

/** One compiler per policy set; schemas are compiled at load and then only run. */
export class ArgumentSchemaCompiler {
  private readonly ajv = new Ajv2020({
    strictSchema: true, // unknown keywords ("maximun") are errors, not silently ignored
    strictTypes: false,
    strictTuples: false,
    strictRequired: false,
    allErrors: false,
    validateFormats: true, // an unknown "format" is an error at load
    code: { regExp: re2Engine },
  });

  /** Returns a validator, or the reason the schema cannot be used. */
  compile(schema: unknown): ArgumentsValidator | { error: string } {
    let validate: ValidateFunction;
    try {
      validate = this.ajv.compile(schema as object);
    } catch (err) {
      return { error: (err as Error).message.replace(/^strict mode: /, "") };
    }
    return (value) => {
      try {
        return validate(value) ? undefined : describeErrors(validate.errors ?? []);
      } catch (err) {
        return `schema validation failed: ${(err as Error).message}`;
      }
    };
  }
}

function describeErrors(errors: readonly ErrorObject[]): string {
  const e = errors[0];
  if (!e) return "arguments do not match the schema";
  const where = e.instancePath === "" ? "arguments" : `arguments${e.instancePath}`;
  return `${where} ${e.message ?? "does not match the schema"}`;
}
