// A load-time checker for CEL expressions. @bufbuild/cel evaluates well but
// does not type-check, so a typo such as `matchez` or `request.argumentz`
// would only surface when a call arrives — as a deny nobody expected. This
// walks the parsed AST against the declared variables and the library's own
// function overloads, and reports such mistakes when the policy is loaded.
import type { CelEnv } from "@bufbuild/cel";
import type { Constant, Expr } from "@bufbuild/cel-spec/cel/expr/syntax_pb.js";
import { RE2JS } from "@bufbuild/re2";
import { didYouMean } from "../diagnostics.js";
import { assignable, commonType, fromCelType, T, type Type, typeName } from "./types.js";

type FuncResolver = CelEnv["funcs"];

export interface CheckProblem {
  /** Offset inside the expression text. */
  offset: number;
  message: string;
}

export interface CheckOptions {
  variables: Readonly<Record<string, Type>>;
  funcs: FuncResolver;
  positions: Readonly<Record<string, number>>;
  maxDepth: number;
  /** Comprehensions over data (not over a literal list) may nest this deep. */
  maxDataComprehensionNesting: number;
  maxRegexLength: number;
}

interface Overload {
  target: Type | undefined;
  params: Type[];
  result: Type;
}

const TYPE_IDENTIFIERS = [
  "bool",
  "int",
  "uint",
  "double",
  "string",
  "bytes",
  "list",
  "map",
  "null_type",
  "type",
  "dyn",
  "google.protobuf.Timestamp",
  "google.protobuf.Duration",
];

/** Operators and macros get their own rules; everything else must be an overload the library has. */
const LOGICAL = new Set(["_&&_", "_||_", "@not_strictly_false"]);

const overloadCache = new WeakMap<FuncResolver, Map<string, Overload[]>>();

function overloadsOf(funcs: FuncResolver): Map<string, Overload[]> {
  let table = overloadCache.get(funcs);
  if (table) return table;
  table = new Map();
  for (const f of funcs) {
    const list = table.get(f.name) ?? [];
    list.push({
      target: f.target ? fromCelType(f.target) : undefined,
      params: f.arguments.map(fromCelType),
      result: fromCelType(f.result),
    });
    table.set(f.name, list);
  }
  overloadCache.set(funcs, table);
  return table;
}

export function checkExpression(root: Expr, opts: CheckOptions): { type: Type; problems: CheckProblem[] } {
  const problems: CheckProblem[] = [];
  const overloads = overloadsOf(opts.funcs);
  const methodNames = [...overloads.entries()].filter(([, o]) => o.some((x) => x.target)).map(([n]) => n);
  const functionNames = [...overloads.entries()]
    .filter(([n, o]) => /^[a-z]/i.test(n) && o.some((x) => !x.target))
    .map(([n]) => n);
  let depthLimitReported = false;

  const offsetOf = (e: Expr): number => opts.positions[e.id.toString()] ?? 0;
  const reported = new Set<string>();
  const report = (e: Expr, message: string) => {
    const offset = offsetOf(e);
    const key = `${offset}:${message}`;
    if (reported.has(key)) return; // e.g. one macro expanded into several nodes at the same place
    reported.add(key);
    problems.push({ offset, message });
  };
  /** What visit() found for each node, for the cost rule. */
  const types = new Map<Expr, Type>();

  type Scope = ReadonlyMap<string, Type>;

  const visit = (e: Expr, scope: Scope, depth: number, dataLoops: number): Type => {
    const t = visitNode(e, scope, depth, dataLoops);
    types.set(e, t);
    return t;
  };

  const visitNode = (e: Expr, scope: Scope, depth: number, dataLoops: number): Type => {
    if (depth > opts.maxDepth) {
      if (!depthLimitReported) report(e, `expression is nested more than ${opts.maxDepth} levels deep`);
      depthLimitReported = true;
      return T.dyn;
    }
    const kind = e.exprKind;
    switch (kind.case) {
      case "constExpr":
        return constantType(kind.value);
      case "identExpr": {
        const name = kind.value.name;
        const t = scope.get(name) ?? opts.variables[name];
        if (t) return t;
        if (TYPE_IDENTIFIERS.includes(name)) return T.type;
        const known = [...Object.keys(opts.variables), ...[...scope.keys()].filter((k) => !k.startsWith("@"))];
        report(
          e,
          `unknown variable "${name}"${didYouMean(name, known)}; the variables are ${Object.keys(opts.variables).join(", ")}`,
        );
        return T.dyn;
      }
      case "selectExpr": {
        const { operand, field, testOnly } = kind.value;
        if (!operand) return T.dyn;
        // `a.b.c` may name a declared variable "a.b.c" (or "a.b", then field c) or a
        // type such as google.protobuf.Timestamp: CEL resolves the longest such
        // prefix first, unless a comprehension variable shadows its first segment.
        const qualified = testOnly ? undefined : qualifiedName(e);
        if (qualified !== undefined && !scope.has(qualified.slice(0, qualified.indexOf(".")))) {
          const declared = opts.variables[qualified];
          if (declared) return declared;
          if (TYPE_IDENTIFIERS.includes(qualified)) return T.type;
        }
        const t = visit(operand, scope, depth + 1, dataLoops);
        const fieldType = selectField(e, t, field, operand);
        return testOnly ? T.bool : fieldType;
      }
      case "callExpr":
        return visitCall(e, kind.value.function, kind.value.target, kind.value.args, scope, depth, dataLoops);
      case "listExpr": {
        const elems = kind.value.elements.map((x) => visit(x, scope, depth + 1, dataLoops));
        return T.list(commonType(elems));
      }
      case "structExpr": {
        if (kind.value.messageName !== "") {
          report(e, `creating protobuf messages (${kind.value.messageName}{...}) is not supported in policies`);
          return T.dyn;
        }
        const keys: Type[] = [];
        const values: Type[] = [];
        for (const entry of kind.value.entries) {
          if (entry.keyKind.case === "mapKey") keys.push(visit(entry.keyKind.value, scope, depth + 1, dataLoops));
          if (entry.value) values.push(visit(entry.value, scope, depth + 1, dataLoops));
        }
        return T.map(commonType(keys), commonType(values));
      }
      case "comprehensionExpr": {
        const c = kind.value;
        if (!c.iterRange || !c.accuInit || !c.loopStep || !c.result || !c.loopCondition) return T.dyn;
        const rangeType = visit(c.iterRange, scope, depth + 1, dataLoops);
        const overData = !isLiteralCollection(c.iterRange);
        const loops = dataLoops + (overData ? 1 : 0);
        if (overData && loops > opts.maxDataComprehensionNesting) {
          report(
            e,
            `comprehensions over request data may not be nested (cost limit): iterate over a literal list inside, or split the condition`,
          );
        }
        if (c.iterVar2 !== "") report(e, "two-variable comprehensions are not supported");
        if (!["list", "map", "dyn", "object"].includes(rangeType.kind)) {
          report(c.iterRange, `cannot iterate over ${typeName(rangeType)}; only lists and maps can be iterated`);
        }
        const elemType = rangeType.kind === "list" ? rangeType.elem : rangeType.kind === "map" ? rangeType.key : T.dyn;
        const accuType = visit(c.accuInit, scope, depth + 1, loops);
        const inner = new Map(scope);
        inner.set(c.iterVar, elemType);
        inner.set(c.accuVar, accuType.kind === "list" ? T.list(T.dyn) : accuType);
        visit(c.loopCondition, inner, depth + 1, loops);
        visit(c.loopStep, inner, depth + 1, loops);
        const resultScope = new Map(scope);
        resultScope.set(c.accuVar, accuType.kind === "list" ? T.list(T.dyn) : accuType);
        return visit(c.result, resultScope, depth + 1, loops);
      }
      default:
        report(e, "unsupported expression");
        return T.dyn;
    }
  };

  const selectField = (e: Expr, t: Type, field: string, operand: Expr): Type => {
    switch (t.kind) {
      case "object": {
        const f = t.fields[field];
        if (f) return f;
        report(
          e,
          `${describeOperand(operand)} has no field "${field}"${didYouMean(field, Object.keys(t.fields))}; its fields are ${Object.keys(t.fields).join(", ")}`,
        );
        return T.dyn;
      }
      case "map":
        return t.value;
      case "dyn":
        return T.dyn;
      default:
        report(e, `cannot select field "${field}" from a value of type ${typeName(t)}`);
        return T.dyn;
    }
  };

  const visitCall = (
    e: Expr,
    fn: string,
    targetExpr: Expr | undefined,
    argExprs: Expr[],
    scope: Scope,
    depth: number,
    dataLoops: number,
  ): Type => {
    const target = targetExpr ? visit(targetExpr, scope, depth + 1, dataLoops) : undefined;
    const args = argExprs.map((a) => visit(a, scope, depth + 1, dataLoops));
    if (LOGICAL.has(fn)) {
      args.forEach((a, i) => {
        if (!assignable(T.bool, a)) {
          report(argExprs[i] as Expr, `operand of ${fn.replace(/_/g, " ").trim()} must be a bool, not ${typeName(a)}`);
        }
      });
      return T.bool;
    }
    if (fn === "_?_:_") {
      if (args[0] && !assignable(T.bool, args[0])) {
        report(argExprs[0] as Expr, `the condition of ?: must be a bool, not ${typeName(args[0])}`);
      }
      return commonType(args.slice(1));
    }
    if (fn === "_[_]") return indexType(e, args[0] ?? T.dyn, args[1] ?? T.dyn, argExprs[1]);
    if (fn === "matches" && argExprs.length === 1) checkRegexLiteral(argExprs[0] as Expr);

    const candidates = overloads.get(fn);
    if (!candidates) {
      const names = target ? methodNames : functionNames;
      report(
        e,
        target ? `unknown method "${fn}"${didYouMean(fn, names)}` : `unknown function "${fn}"${didYouMean(fn, names)}`,
      );
      return T.dyn;
    }
    const shaped = candidates.filter((o) => (o.target !== undefined) === (target !== undefined));
    if (shaped.length === 0) {
      report(
        e,
        target
          ? `"${fn}" is a function, not a method: write ${fn}(x, ...) instead of x.${fn}(...)`
          : `"${fn}" is a method: write x.${fn}(...)`,
      );
      return T.dyn;
    }
    const arity = shaped.filter((o) => o.params.length === args.length);
    if (arity.length === 0) {
      const counts = [...new Set(shaped.map((o) => o.params.length))].join(" or ");
      report(e, `${displayName(fn)} takes ${counts} argument${counts === "1" ? "" : "s"}, not ${args.length}`);
      return T.dyn;
    }
    const matching = arity.filter(
      (o) =>
        (!target || !o.target || assignable(o.target, target)) &&
        o.params.every((p, i) => assignable(p, args[i] as Type)),
    );
    if (matching.length === 0) {
      const shown = [...(target ? [target] : []), ...args].map(typeName).join(", ");
      report(e, `no overload of ${displayName(fn)} accepts (${shown})`);
      return T.dyn;
    }
    return commonType(matching.map((o) => o.result));
  };

  const indexType = (e: Expr, container: Type, key: Type, keyExpr: Expr | undefined): Type => {
    switch (container.kind) {
      case "list":
        if (!assignable(T.int, key) && !assignable(T.uint, key) && key.kind !== "double") {
          report(e, `a list index must be a number, not ${typeName(key)}`);
        }
        return container.elem;
      case "map":
        return container.value;
      case "object": {
        const constKey = keyExpr?.exprKind.case === "constExpr" ? keyExpr.exprKind.value.constantKind : undefined;
        if (constKey?.case === "stringValue") {
          const f = container.fields[constKey.value];
          if (f) return f;
          report(
            e,
            `${container.name} has no field "${constKey.value}"${didYouMean(constKey.value, Object.keys(container.fields))}`,
          );
        }
        return T.dyn;
      }
      case "dyn":
        return T.dyn;
      default:
        report(e, `cannot index a value of type ${typeName(container)}`);
        return T.dyn;
    }
  };

  const checkRegexLiteral = (arg: Expr) => {
    if (arg.exprKind.case !== "constExpr" || arg.exprKind.value.constantKind.case !== "stringValue") {
      // A pattern built from request data would let the caller choose what the match costs
      // (compiling and running a long pattern over a long text) and what it accepts.
      report(arg, "matches() takes a literal pattern, written in the policy: e.g. x.matches('^main$')");
      return;
    }
    const pattern = arg.exprKind.value.constantKind.value;
    if (pattern.length > opts.maxRegexLength) {
      report(arg, `regular expression is ${pattern.length} characters long; the limit is ${opts.maxRegexLength}`);
      return;
    }
    try {
      RE2JS.compile(pattern);
    } catch (err) {
      report(arg, `invalid regular expression (RE2 syntax): ${(err as Error).message}`);
    }
  };

  const type = visit(root, new Map(), 0, 0);
  if (!depthLimitReported) checkLoopCost(root, { types, overloads, report });
  return { type, problems };
}

// ---- the cost rule ----
//
// decide() runs on the gateway's event loop, so what one call can make a condition cost must be
// bounded. A comprehension over request data (all, exists, exists_one, map, filter over anything
// but a literal list or map) runs its body once per element, for up to 10,000 elements. Work on
// the element itself (the iteration variable and what is built from it) adds up to about one
// pass over the input. Work proportional to the size of a value that is the same in every
// iteration — "loop-invariant data", such as request.arguments.s inside l.exists(x, ...) — is
// repeated for every element: elements × size, about 10^10 steps at the input limits.
//
// So in such a body, loop-invariant data (not a literal, not a number, bool, timestamp or other
// fixed-size value, and not built from the iteration variable alone) may only be used where the
// cost does not grow with it (measured on @bufbuild/cel 0.6 and V8):
//   - read, has(), a lookup by a string key (a number key makes the library scan a map's keys),
//     an index into a list, size() of a list or map (size() of a string counts its characters);
//   - compared (== != < <= > >=, startsWith, endsWith), unless both sides are loop-invariant:
//     these stop at the shorter side;
//   - as the argument, not the receiver, of contains and matches (the receiver bounds the search;
//     patterns are limited to 2,048 characters and compiled once);
//   - "in" a map by a string key; arithmetic; type(), dyn().
// Everything else — size() of a string, s.contains(...), s.matches(...), x in list, +,
// conversions, map() returning it — is rejected where it is written. Comprehensions over literal
// lists cost what their literal's length says; nesting of comprehensions over data is limited
// separately (maxDataComprehensionNesting).

/** Bounded by the policy text; built from the current element (and the text); anything else. */
const SMALL = 0;
const ELEMENT = 1;
const INVARIANT = 2;
type SizeClass = typeof SMALL | typeof ELEMENT | typeof INVARIANT;

const FIXED_SIZE = new Set<Type["kind"]>(["bool", "int", "uint", "double", "null", "timestamp", "duration", "type"]);
const COMPARISONS = new Set(["_==_", "_!=_", "_<_", "_<=_", "_>_", "_>=_", "startsWith", "endsWith"]);
const RECEIVER_BOUND = new Set(["contains", "matches"]);
const CONSTANT_TIME = new Set([...LOGICAL, "!_", "_?_:_", "type", "dyn"]);

interface CostContext {
  types: ReadonlyMap<Expr, Type>;
  overloads: ReadonlyMap<string, Overload[]>;
  report: (e: Expr, message: string) => void;
}

/** The comprehension over request data whose body is being walked. */
interface DataLoop {
  iterVar: string;
  range: Expr;
}

function checkLoopCost(root: Expr, ctx: CostContext): void {
  const typeOf = (e: Expr): Type => ctx.types.get(e) ?? T.dyn;
  const max = (classes: SizeClass[]): SizeClass => Math.max(SMALL, ...classes) as SizeClass;

  const walk = (e: Expr, vars: ReadonlyMap<string, SizeClass>, loop: DataLoop | undefined): SizeClass => {
    const cls = walkNode(e, vars, loop);
    return FIXED_SIZE.has(typeOf(e).kind) ? SMALL : cls;
  };

  const walkNode = (e: Expr, vars: ReadonlyMap<string, SizeClass>, loop: DataLoop | undefined): SizeClass => {
    const kind = e.exprKind;
    switch (kind.case) {
      case "identExpr":
        return vars.get(kind.value.name) ?? INVARIANT;
      case "selectExpr":
        return kind.value.operand ? walk(kind.value.operand, vars, loop) : SMALL;
      case "listExpr":
        return max(kind.value.elements.map((x) => walk(x, vars, loop)));
      case "structExpr":
        return max(
          kind.value.entries.flatMap((entry) => [
            ...(entry.keyKind.case === "mapKey" ? [walk(entry.keyKind.value, vars, loop)] : []),
            ...(entry.value ? [walk(entry.value, vars, loop)] : []),
          ]),
        );
      case "comprehensionExpr": {
        const c = kind.value;
        if (!c.iterRange || !c.accuInit || !c.loopStep || !c.result || !c.loopCondition) return SMALL;
        const rangeClass = walk(c.iterRange, vars, loop);
        const overData = !isLiteralCollection(c.iterRange);
        const inner = new Map(vars);
        // Inside a new loop over data, the elements of an enclosing one stay the same throughout.
        if (overData) for (const [name, cls] of inner) if (cls === ELEMENT) inner.set(name, INVARIANT);
        inner.set(c.iterVar, overData ? ELEMENT : rangeClass);
        inner.set(c.accuVar, SMALL); // the macro's accumulator: only the macro's own code uses it
        const innerLoop = overData ? { iterVar: c.iterVar, range: c.iterRange } : loop;
        walk(c.accuInit, vars, loop);
        walk(c.loopCondition, inner, innerLoop);
        const step = walk(c.loopStep, inner, innerLoop);
        walk(c.result, new Map(vars).set(c.accuVar, SMALL), loop);
        // A loop over data inside another is the nesting limit's business (reported there);
        // what it builds is as big as the nesting makes it, so count it as the outer element.
        if (overData && loop) return ELEMENT;
        // map() and filter() build a list of elements of the range or of what the step returned.
        return max([rangeClass, overData && step === ELEMENT ? rangeClass : step]);
      }
      case "callExpr": {
        const { function: fn, target, args } = kind.value;
        const operands = target ? [target, ...args] : args;
        const classes = operands.map((x) => walk(x, vars, loop));
        if (loop) checkCall(e, fn, target !== undefined, operands, classes, vars, loop);
        if (fn === "_?_:_") return max(classes.slice(1));
        if (fn === "_[_]") {
          // m[k] with m the range and k its key is that entry's value: the element, in effect.
          const [container, key] = args;
          if (loop && container && key && isKeyOfRange(container, key, loop, vars, typeOf)) return ELEMENT;
          return classes[0] ?? SMALL;
        }
        return max(classes);
      }
      default:
        return SMALL;
    }
  };

  const checkCall = (
    e: Expr,
    fn: string,
    hasTarget: boolean,
    operands: Expr[],
    classes: SizeClass[],
    vars: ReadonlyMap<string, SizeClass>,
    loop: DataLoop,
  ) => {
    const invariant = (i: number) => classes[i] === INVARIANT;
    if (CONSTANT_TIME.has(fn) || !classes.includes(INVARIANT)) return;
    const [first, second] = operands as [Expr, Expr | undefined];
    const name = (x: Expr) => describePath(x) ?? "…";
    let what: string | undefined;
    let culprit = first;
    let hint: string | undefined;
    if (COMPARISONS.has(fn)) {
      if (classes.every((c) => c === INVARIANT)) {
        what = hasTarget ? `${name(first)}.${fn}()` : `comparing ${name(first)} with ${second ? name(second) : "…"}`;
      }
    } else if (RECEIVER_BOUND.has(fn) && hasTarget) {
      if (invariant(0)) what = `${name(first)}.${fn}()`;
    } else if (fn === "size") {
      if (invariant(0) && !["list", "map", "object"].includes(typeOf(first).kind)) what = `size(${name(first)})`;
    } else if (fn === "@in" || fn === "_[_]") {
      // k in c and c[k]: c is operand 1 for "in", 0 for an index.
      const [c, k, ci] = fn === "@in" ? [second, first, 1] : [first, second, 0];
      if (c && k && invariant(ci) && !(fn === "_[_]" && isKeyOfRange(c, k, loop, vars, typeOf))) {
        const kind = typeOf(c).kind;
        const isMap = kind === "map" || kind === "object";
        const stringKey = typeOf(k).kind === "string";
        const lookup = `a lookup in ${name(c)} by a key that may be a number`;
        culprit = c;
        if (fn === "@in" && !(isMap && stringKey)) what = isMap ? lookup : `"in ${name(c)}"`;
        else if (fn === "_[_]" && kind !== "list" && !stringKey) what = lookup;
        hint =
          what === lookup
            ? `The library looks a number up by scanning every key: make the key a string, ${fn === "@in" ? `string(${name(k)}) in ${name(c)}` : `${name(c)}[string(${name(k)})]`}`
            : `Searching a list reads all of it: test membership in a literal list or a map, or outside the comprehension`;
      }
    } else {
      // Anything else costs as much as any operand that some overload takes as text or a collection.
      const shaped = (ctx.overloads.get(fn) ?? []).filter(
        (o) => (o.target !== undefined) === hasTarget && o.params.length === operands.length - (hasTarget ? 1 : 0),
      );
      const i = classes.findIndex(
        (c, i) =>
          c === INVARIANT &&
          shaped.some((o) => {
            const param = hasTarget ? (i === 0 ? o.target : o.params[i - 1]) : o.params[i];
            return param !== undefined && !FIXED_SIZE.has(param.kind);
          }),
      );
      const op = operands[i];
      if (op) {
        culprit = op;
        const returned = op.exprKind.case === "listExpr" ? op.exprKind.value.elements[0] : undefined;
        if (fn === "_+_" && returned && operands.some((x) => isAccumulator(x))) {
          // map()'s own step, accumulator + [transform]: the transform is the value in question.
          culprit = returned;
          what = `map() returning ${name(returned)}`;
        } else {
          const operator = OPERATOR_NAMES[fn];
          what = operator ? `operator ${operator} on ${name(op)}` : `${fn}() of ${name(op)}`;
        }
      }
    }
    if (what === undefined) return;
    const x = loop.iterVar;
    const range = describePath(loop.range);
    const path = describePath(culprit);
    const subject =
      classes.every((c) => c === INVARIANT) && operands.length > 1 ? "neither side" : (path ?? "its operand");
    hint ??= `Test ${path ?? "it"} outside the comprehension (... && ${range ?? "list"}.exists(${x}, ...)), or work on "${x}" instead`;
    ctx.report(
      e,
      `${what} is evaluated for every element of ${range ?? "the list"}, and ${subject} ${subject === "neither side" ? "depends" : "does not depend"} on "${x}": that costs the number of elements times its size (cost limit). ${hint}`,
    );
  };

  walk(root, new Map(), undefined);
}

/**
 * Whether c[k] reads an entry of the map being iterated by its own key, m.exists(k, m[k] ...):
 * keys are distinct, so over the loop that reads each value once. Only if the range is known to
 * be a map, or the key is string(k): were the range a list, l[k] could read one big element for
 * every k, and a string index into a list is an error.
 */
function isKeyOfRange(
  c: Expr,
  k: Expr,
  loop: DataLoop,
  vars: ReadonlyMap<string, SizeClass>,
  typeOf: (e: Expr) => Type,
): boolean {
  const path = qualifiedName(c);
  if (path === undefined || path !== qualifiedName(loop.range) || vars.has(path.split(".")[0] as string)) return false;
  const isIterVar = (x: Expr | undefined) => x?.exprKind.case === "identExpr" && x.exprKind.value.name === loop.iterVar;
  if (isIterVar(k)) return ["map", "object"].includes(typeOf(loop.range).kind);
  const call = k.exprKind.case === "callExpr" ? k.exprKind.value : undefined;
  return call?.function === "string" && !call.target && call.args.length === 1 && isIterVar(call.args[0]);
}

function isAccumulator(e: Expr): boolean {
  return e.exprKind.case === "identExpr" && e.exprKind.value.name.startsWith("@");
}

function constantType(c: Constant): Type {
  switch (c.constantKind.case) {
    case "boolValue":
      return T.bool;
    case "int64Value":
      return T.int;
    case "uint64Value":
      return T.uint;
    case "doubleValue":
      return T.double;
    case "stringValue":
      return T.string;
    case "bytesValue":
      return T.bytes;
    case "nullValue":
      return T.null;
    case "durationValue":
      return T.duration;
    case "timestampValue":
      return T.timestamp;
    default:
      return T.dyn;
  }
}

/** "a.b.c" for a chain of field selections on an identifier, else undefined. */
function qualifiedName(e: Expr): string | undefined {
  const parts: string[] = [];
  let cur: Expr | undefined = e;
  while (cur?.exprKind.case === "selectExpr" && !cur.exprKind.value.testOnly) {
    parts.unshift(cur.exprKind.value.field);
    cur = cur.exprKind.value.operand;
  }
  if (cur?.exprKind.case !== "identExpr") return undefined;
  parts.unshift(cur.exprKind.value.name);
  return parts.join(".");
}

function isLiteralCollection(e: Expr): boolean {
  return e.exprKind.case === "listExpr" || (e.exprKind.case === "structExpr" && e.exprKind.value.messageName === "");
}

/** "request.arguments.s" for a chain of field selections on an identifier. */
function describePath(e: Expr): string | undefined {
  const d = describeOperand(e);
  return d === "this value" ? undefined : d;
}

function describeOperand(e: Expr): string {
  const parts: string[] = [];
  let cur: Expr | undefined = e;
  while (cur) {
    if (cur.exprKind.case === "identExpr") {
      parts.unshift(cur.exprKind.value.name);
      break;
    }
    if (cur.exprKind.case === "selectExpr") {
      parts.unshift(cur.exprKind.value.field);
      cur = cur.exprKind.value.operand;
      continue;
    }
    return "this value";
  }
  return parts.join(".");
}

const OPERATOR_NAMES: Record<string, string> = {
  "_+_": "+",
  "_-_": "-",
  "_*_": "*",
  "_/_": "/",
  "_%_": "%",
  "-_": "unary -",
  "!_": "!",
  "_==_": "==",
  "_!=_": "!=",
  "_<_": "<",
  "_<=_": "<=",
  "_>_": ">",
  "_>=_": ">=",
  "@in": "in",
};

function displayName(fn: string): string {
  const op = OPERATOR_NAMES[fn];
  return op ? `operator ${op}` : `"${fn}"`;
}
