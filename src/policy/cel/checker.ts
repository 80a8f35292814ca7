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
  const report = (e: Expr, message: string) => problems.push({ offset: offsetOf(e), message });

  type Scope = ReadonlyMap<string, Type>;

  const visit = (e: Expr, scope: Scope, depth: number, dataLoops: number): Type => {
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
    if (arg.exprKind.case !== "constExpr" || arg.exprKind.value.constantKind.case !== "stringValue") return;
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
  return { type, problems };
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
