// Our own compile/evaluate interface over @bufbuild/cel. Everything the policy
// engine needs from CEL goes through here, so the library can be swapped, and
// so the limits and checks that the library does not have live in one place:
//   - expression length and nesting are capped before parsing;
//   - every expression is type-checked against its declared environment at load;
//   - regular expressions run on RE2 (linear time), compiled once and cached;
//   - values handed to CEL are size-checked (see measureValue);
//   - map() and filter() build their lists in linear time (see appendInPlace);
//   - evaluation never throws: errors come back as a reason to deny.
import {
  type CelEnv,
  type CelInput,
  type CelList,
  CelScalar,
  type CelValue,
  celEnv,
  celFunc,
  celList,
  celMap,
  isCelError,
  listType,
  parse,
  plan,
} from "@bufbuild/cel";
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
  /** `bindings` maps variable names to values (own or inherited properties, e.g. getters). */
  evaluate(bindings: object): CelOutcome;
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
    this.env = celEnv({ re2: { compile: (p) => cache.compile(p) }, funcs: [APPEND] });
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
    if (parsed.expr) appendInPlace(parsed.expr as Expr);
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

/**
 * The library expands map() and filter() into a fold whose step is `@result + [item]`, and its
 * list + list makes a view over both lists: after n steps, a chain n deep, which costs O(n) per
 * element to read (O(n²) to iterate, 0.3 s for 4,000 items) and overflows the stack from about
 * 5,000 items. appendInPlace rewrites that step, after checking and before planning, to
 * `@append(@result, item)`, which pushes onto an array the fold alone holds: the accumulator is
 * a name no expression can write (@result), it starts as [] in every fold (copied at the first
 * append), and each step replaces it with the one value the previous step returned, so nothing
 * else sees it change.
 */
function appendInPlace(e: Expr): void {
  const kind = e.exprKind;
  switch (kind.case) {
    case "selectExpr":
      if (kind.value.operand) appendInPlace(kind.value.operand);
      return;
    case "callExpr": {
      const call = kind.value;
      if (call.target) appendInPlace(call.target);
      for (const a of call.args) appendInPlace(a);
      const [acc, list] = call.args;
      if (
        call.function === "_+_" &&
        !call.target &&
        acc?.exprKind.case === "identExpr" &&
        acc.exprKind.value.name === ACCUMULATOR &&
        list?.exprKind.case === "listExpr" &&
        list.exprKind.value.elements.length === 1 &&
        list.exprKind.value.optionalIndices.length === 0
      ) {
        call.function = APPEND_NAME;
        call.args = [acc, list.exprKind.value.elements[0] as Expr];
      }
      return;
    }
    case "listExpr":
      for (const x of kind.value.elements) appendInPlace(x);
      return;
    case "structExpr":
      for (const entry of kind.value.entries) {
        if (entry.keyKind.case === "mapKey") appendInPlace(entry.keyKind.value);
        if (entry.value) appendInPlace(entry.value);
      }
      return;
    case "comprehensionExpr": {
      const c = kind.value;
      for (const x of [c.iterRange, c.accuInit, c.loopCondition, c.loopStep, c.result]) if (x) appendInPlace(x);
      return;
    }
    default:
      return;
  }
}

/** The name @bufbuild/cel's macros give the accumulator; no expression can spell it. */
const ACCUMULATOR = "@result";
const APPEND_NAME = "@append";
/** The arrays behind lists that @append made; only those are pushed to. */
const appendable = new WeakMap<CelList, CelValue[]>();
const APPEND = celFunc(APPEND_NAME, [listType(CelScalar.DYN), CelScalar.DYN], listType(CelScalar.DYN), (acc, item) => {
  let array = appendable.get(acc);
  let list = acc;
  if (array === undefined) {
    array = [...acc];
    list = celList(array);
    appendable.set(list, array);
  }
  array.push(item);
  return list;
});

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

/**
 * Converts a JSON value into CEL values (CelMap, CelList, scalars), checking
 * the limits on the way, in one linear pass that stops at the first excess.
 * Converting up front, rather than letting @bufbuild/cel convert plain objects
 * on every access, is faster, and it is also safer: the library would read a
 * plain object that has a "$typeName" key as a protobuf message — a different
 * value from the one the tool receives — and trips over keys like
 * "constructor". Members that are undefined are absent, as in JSON.
 */
const TOO_MUCH_TEXT = "too much text";

export function toCelValue(
  value: unknown,
  limits: Readonly<ValueLimits>,
  name: string,
): { value: unknown } | { problem: string } {
  let chars = 0;
  let problem: string | undefined;
  /** Filled in while unwinding from a problem, so the happy path builds no path strings. */
  const where: string[] = [];
  const convert = (v: unknown, depth: number): unknown => {
    switch (typeof v) {
      case "string":
        chars += v.length;
        if (chars > limits.maxTotalChars) problem = TOO_MUCH_TEXT;
        return v;
      case "number":
        if (!Number.isFinite(v)) problem = "is not a finite number";
        return v;
      case "boolean":
        return v;
      case "bigint": // a CEL int, e.g. session.calls counts
        return v;
      case "object": {
        if (v === null) return null;
        if (depth >= limits.maxDepth) {
          problem = `is nested more than ${limits.maxDepth} levels deep (limit for policy evaluation)`;
          return null;
        }
        if (Array.isArray(v)) {
          if (v.length > limits.maxCollectionEntries) {
            problem = `has ${v.length} entries; policy evaluation accepts at most ${limits.maxCollectionEntries}`;
            return null;
          }
          const out = new Array<unknown>(v.length);
          for (let i = 0; i < v.length; i++) {
            out[i] = convert(v[i], depth + 1);
            if (problem !== undefined) {
              where.push(`[${i}]`);
              return null;
            }
          }
          return celList(out as CelInput[]);
        }
        const keys = Object.keys(v);
        if (keys.length > limits.maxCollectionEntries) {
          problem = `has ${keys.length} entries; policy evaluation accepts at most ${limits.maxCollectionEntries}`;
          return null;
        }
        const out = new Map<string, unknown>();
        for (const k of keys) {
          const member = (v as Record<string, unknown>)[k];
          if (member === undefined) continue;
          chars += k.length;
          out.set(k, convert(member, depth + 1));
          if (problem !== undefined) {
            where.push(`.${k}`);
            return null;
          }
        }
        if (chars > limits.maxTotalChars) problem = TOO_MUCH_TEXT;
        return celMap(out as Map<string, CelInput>);
      }
      default:
        problem = `is a ${typeof v}, which is not a JSON value`;
        return null;
    }
  };
  const out = convert(value, 0);
  if (problem === undefined) return { value: out };
  if (problem === TOO_MUCH_TEXT) {
    return {
      problem: `${name} holds more than ${limits.maxTotalChars} characters of text (limit for policy evaluation)`,
    };
  }
  return { problem: `${name}${where.reverse().join("")} ${problem}` };
}
