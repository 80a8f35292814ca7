// Our own compile/evaluate interface over @bufbuild/cel. Everything the policy
// engine needs from CEL goes through here, so the library can be swapped, and
// so the limits and checks that the library does not have live in one place:
//   - expression length and nesting are capped before parsing;
//   - every expression is type-checked against its declared environment at load;
//   - regular expressions run on RE2 (linear time), compiled once and cached;
//   - values handed to CEL are size-checked (see measureValue);
//   - evaluation never throws: errors come back as a reason to deny.
import { type CelEnv, celEnv, isCelError, parse, plan } from "@bufbuild/cel";
import type { Expr } from "@bufbuild/cel-spec/cel/expr/syntax_pb.js";
import { RE2JS } from "@bufbuild/re2";
import { checkExpression } from "./checker.js";
import { type Type, typeName } from "./types.js";

export interface CelLimits {
  /** Characters in one expression. */
  maxExpressionLength: number;
  /** Nesting of ( [ { in the source text; deeper input overflows the parser's stack. */
  maxBracketNesting: number;
  /** Depth of the parsed expression tree. */
  maxAstDepth: number;
  /** Comprehensions (all, exists, map, filter) over request data nested inside each other. */
  maxDataComprehensionNesting: number;
  maxRegexLength: number;
  /** Distinct compiled regular expressions kept per environment. */
  regexCacheSize: number;
}

export const DEFAULT_CEL_LIMITS: Readonly<CelLimits> = Object.freeze({
  maxExpressionLength: 8192,
  maxBracketNesting: 32,
  maxAstDepth: 200,
  maxDataComprehensionNesting: 1,
  maxRegexLength: 2048,
  regexCacheSize: 1024,
});

export interface CelProblem {
  /** Offset inside the expression text. */
  offset: number;
  message: string;
}

export type CelOutcome = { ok: true; value: unknown } | { ok: false; error: string };

export interface CompiledExpression {
  readonly source: string;
  /** What the checker could infer; dyn when only the data can tell. */
  readonly type: Type;
  evaluate(bindings: Readonly<Record<string, unknown>>): CelOutcome;
}

export interface CelEnvironmentOptions {
  variables: Readonly<Record<string, Type>>;
  limits?: Partial<CelLimits>;
}

/** A bounded map from pattern to compiled RE2 program; the oldest entry goes first when full. */
class RegexCache {
  private readonly entries = new Map<string, RE2JS>();
  constructor(
    private readonly capacity: number,
    private readonly maxLength: number,
  ) {}

  compile(pattern: string): { test(text: string): boolean } {
    let re = this.entries.get(pattern);
    if (re === undefined) {
      // Patterns can come from request data (x.matches(y)); cap what we will compile.
      if (pattern.length > this.maxLength) {
        throw new Error(`regular expression is ${pattern.length} characters long; the limit is ${this.maxLength}`);
      }
      re = RE2JS.compile(pattern);
      if (this.entries.size >= this.capacity) {
        const oldest = this.entries.keys().next().value;
        if (oldest !== undefined) this.entries.delete(oldest);
      }
      this.entries.set(pattern, re);
    }
    return re;
  }
}

export class CelEnvironment {
  readonly limits: Readonly<CelLimits>;
  readonly variables: Readonly<Record<string, Type>>;
  private readonly env: CelEnv;

  constructor(opts: CelEnvironmentOptions) {
    this.limits = Object.freeze({ ...DEFAULT_CEL_LIMITS, ...opts.limits });
    this.variables = opts.variables;
    const cache = new RegexCache(this.limits.regexCacheSize, this.limits.maxRegexLength);
    this.env = celEnv({ re2: { compile: (p) => cache.compile(p) } });
  }

  /**
   * Parses, checks and plans an expression. Returns the compiled expression, or
   * every problem found. `expect` is the type the result must be able to have.
   */
  compile(source: string, expect?: Type): CompiledExpression | { problems: CelProblem[] } {
    const pre = this.precheck(source);
    if (pre) return { problems: [pre] };
    let parsed: ReturnType<typeof parse>;
    try {
      parsed = parse(source);
    } catch (err) {
      return { problems: [parseProblem(err)] };
    }
    const positions: Record<string, number> = {};
    for (const [id, offset] of Object.entries(parsed.sourceInfo?.positions ?? {})) positions[id] = offset;
    const { type, problems } = checkExpression(parsed.expr as Expr, {
      variables: this.variables,
      funcs: this.env.funcs,
      positions,
      maxDepth: this.limits.maxAstDepth,
      maxDataComprehensionNesting: this.limits.maxDataComprehensionNesting,
      maxRegexLength: this.limits.maxRegexLength,
    });
    if (expect && type.kind !== "dyn" && type.kind !== expect.kind) {
      problems.push({
        offset: 0,
        message: `expression has type ${typeName(type)}, but a ${typeName(expect)} is needed here`,
      });
    }
    if (problems.length > 0) return { problems };
    const run = plan(this.env, parsed);
    return {
      source,
      type,
      evaluate(bindings) {
        try {
          const v = run(bindings as Record<string, never>);
          if (isCelError(v)) return { ok: false, error: v.message };
          return { ok: true, value: v };
        } catch (err) {
          // The library returns errors as values, but a conversion of odd input can still throw.
          return { ok: false, error: err instanceof Error ? err.message : String(err) };
        }
      },
    };
  }

  private precheck(source: string): CelProblem | undefined {
    if (source.trim() === "") return { offset: 0, message: "expression is empty" };
    if (source.length > this.limits.maxExpressionLength) {
      return {
        offset: 0,
        message: `expression is ${source.length} characters long; the limit is ${this.limits.maxExpressionLength}`,
      };
    }
    let depth = 0;
    let quote: string | null = null;
    for (let i = 0; i < source.length; i++) {
      const ch = source[i];
      if (quote) {
        if (ch === "\\") i++;
        else if (ch === quote) quote = null;
        continue;
      }
      if (ch === '"' || ch === "'") quote = ch;
      else if (ch === "(" || ch === "[" || ch === "{") {
        if (++depth > this.limits.maxBracketNesting) {
          return { offset: i, message: `brackets are nested more than ${this.limits.maxBracketNesting} deep` };
        }
      } else if (ch === ")" || ch === "]" || ch === "}") depth--;
    }
    return undefined;
  }
}

function parseProblem(err: unknown): CelProblem {
  const e = err as { rawMessage?: string; message?: string; location?: { start?: { offset?: number } } };
  if (err instanceof RangeError) return { offset: 0, message: "expression is too deeply nested to parse" };
  return {
    offset: e.location?.start?.offset ?? 0,
    message: `syntax error: ${e.rawMessage ?? e.message ?? String(err)}`,
  };
}

export function isCompiled(x: CompiledExpression | { problems: CelProblem[] }): x is CompiledExpression {
  return "evaluate" in x;
}

export interface ValueLimits {
  /** Nesting of lists and maps. */
  maxDepth: number;
  /** Entries in any one list or map. */
  maxCollectionEntries: number;
  /** Total characters of all strings and keys. */
  maxTotalChars: number;
}

export const DEFAULT_VALUE_LIMITS: Readonly<ValueLimits> = Object.freeze({
  maxDepth: 32,
  maxCollectionEntries: 10_000,
  maxTotalChars: 1_048_576,
});

export interface ValueCheck {
  /** Why the value cannot be handed to CEL, if it cannot. */
  problem?: string;
  /**
   * False when some object lacks Object.prototype (e.g. Object.create(null)) or has an undefined
   * member: JSON-equivalent, but CEL's input conversion rejects them.
   */
  plain: boolean;
}

/**
 * Checks that a JSON value is within the limits for CEL input, and that it is
 * JSON-shaped (CEL cannot represent undefined or functions). Linear in the
 * size of the value, stopping at the first excess.
 */
export function measureValue(value: unknown, limits: Readonly<ValueLimits>, name: string): ValueCheck {
  let chars = 0;
  let plain = true;
  const tooMuchText = () =>
    `${name} holds more than ${limits.maxTotalChars} characters of text (limit for policy evaluation)`;
  const walk = (v: unknown, depth: number, path: string): string | undefined => {
    switch (typeof v) {
      case "string":
        chars += v.length;
        return chars > limits.maxTotalChars ? tooMuchText() : undefined;
      case "number":
        return Number.isFinite(v) ? undefined : `${name}${path} is not a finite number`;
      case "boolean":
        return undefined;
      case "object": {
        if (v === null) return undefined;
        if (depth >= limits.maxDepth) {
          return `${name} is nested more than ${limits.maxDepth} levels deep (limit for policy evaluation)`;
        }
        if (Array.isArray(v)) {
          if (v.length > limits.maxCollectionEntries) {
            return `${name}${path} has ${v.length} entries; policy evaluation accepts at most ${limits.maxCollectionEntries}`;
          }
          for (let i = 0; i < v.length; i++) {
            const r = walk(v[i], depth + 1, `${path}[${i}]`);
            if (r) return r;
          }
          return undefined;
        }
        if (Object.getPrototypeOf(v) !== Object.prototype) plain = false;
        const keys = Object.keys(v);
        if (keys.length > limits.maxCollectionEntries) {
          return `${name}${path} has ${keys.length} entries; policy evaluation accepts at most ${limits.maxCollectionEntries}`;
        }
        for (const k of keys) {
          const member = (v as Record<string, unknown>)[k];
          if (member === undefined) {
            plain = false; // absent, as in JSON, but CEL's conversion would trip over it
            continue;
          }
          chars += k.length;
          const r = walk(member, depth + 1, `${path}.${k}`);
          if (r) return r;
        }
        return chars > limits.maxTotalChars ? tooMuchText() : undefined;
      }
      default:
        return `${name}${path} is a ${typeof v}, which is not a JSON value`;
    }
  };
  const problem = walk(value, 0, "");
  return problem === undefined ? { plain } : { problem, plain };
}
