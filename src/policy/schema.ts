// A small declarative schema for YAML resources, checked against the YAML node
// tree so that every problem carries the line and column of the offending node.
// It produces plain JSON values and remembers, by JSON pointer, which node each
// value came from, so later stages (CEL, globs, JSON Schema) can point back into
// the file too.
import { isAlias, isMap, isScalar, isSeq, type Node, type Pair, Scalar } from "yaml";
import { type DiagnosticSink, didYouMean } from "./diagnostics.js";

export type Schema =
  | StringSchema
  | { type: "integer"; min?: number; max?: number }
  | { type: "boolean" }
  | { type: "list"; items: Schema; minItems?: number; maxItems?: number; acceptSingle?: boolean }
  | ObjectSchema
  | { type: "map"; keys?: StringSchema; values: Schema }
  | { type: "json" };

export interface StringSchema {
  type: "string";
  enum?: readonly string[];
  pattern?: RegExp;
  /** What the pattern means, for the error message. */
  patternHelp?: string;
  maxLength?: number;
  /** Extra check; returns an error message or undefined. */
  check?: (value: string) => string | undefined;
}

export interface ObjectSchema {
  type: "object";
  fields: Record<string, Field>;
  /** What this object is, for messages ("rule", "approval"). */
  what: string;
}

export interface Field {
  schema: Schema;
  required?: boolean;
}

/** Where each value came from: JSON pointer → YAML node (keys map to their key node with a "#key" suffix). */
export type NodeIndex = Map<string, Node>;

export const INVALID: unique symbol = Symbol("invalid");
type Invalid = typeof INVALID;

export interface SchemaContext {
  sink: DiagnosticSink;
  nodes: NodeIndex;
  /** Offset to report when a required field is missing from an empty document. */
  fallbackOffset: number;
  /**
   * Keep the valid parts: a mapping or list with errors inside is returned without the invalid
   * fields and entries (an invalid list item becomes undefined, so indices still match the file),
   * for checks that report more problems in the same run. Whether anything was invalid is then
   * only known from the errors reported.
   */
  partial?: boolean;
}

export function nodeOffset(node: Node | null | undefined, fallback: number): number {
  return node?.range?.[0] ?? fallback;
}

const MAX_DEPTH = 64;

/** Validates a node against a schema; returns the plain value, or INVALID after reporting why. */
export function readNode(node: Node | null, schema: Schema, path: string, ctx: SchemaContext, depth = 0): unknown {
  if (node) ctx.nodes.set(path, node);
  const at = nodeOffset(node, ctx.fallbackOffset);
  if (depth > MAX_DEPTH) {
    ctx.sink.error(at, `${label(path)}: nested more than ${MAX_DEPTH} levels deep`);
    return INVALID;
  }
  switch (schema.type) {
    case "string":
      return readString(node, schema, path, ctx);
    case "integer": {
      const v = scalarValue(node);
      if (typeof v !== "number" || !Number.isSafeInteger(v)) {
        ctx.sink.error(at, `${label(path)} must be a whole number, not ${describe(node)}`);
        return INVALID;
      }
      if ((schema.min !== undefined && v < schema.min) || (schema.max !== undefined && v > schema.max)) {
        ctx.sink.error(at, `${label(path)} must be between ${schema.min ?? "-∞"} and ${schema.max ?? "∞"}, not ${v}`);
        return INVALID;
      }
      return v;
    }
    case "boolean": {
      const v = scalarValue(node);
      if (typeof v !== "boolean") {
        ctx.sink.error(at, `${label(path)} must be true or false, not ${describe(node)}`);
        return INVALID;
      }
      return v;
    }
    case "list": {
      // `policy: ./dir` for `policy: [./dir]`, where a schema allows it.
      if (schema.acceptSingle && isScalar(node)) {
        const v = readNode(node, schema.items, `${path}/0`, ctx, depth + 1);
        return v === INVALID ? INVALID : [v];
      }
      if (!isSeq(node)) {
        const hint = isScalar(node) && typeof node.value === "string" ? ` (write a list: [${node.value}])` : "";
        ctx.sink.error(at, `${label(path)} must be a list, not ${describe(node)}${hint}`);
        return INVALID;
      }
      const items = node.items as (Node | null)[];
      if (schema.minItems !== undefined && items.length < schema.minItems) {
        ctx.sink.error(at, `${label(path)} needs at least ${schema.minItems} item${schema.minItems === 1 ? "" : "s"}`);
        return INVALID;
      }
      if (schema.maxItems !== undefined && items.length > schema.maxItems) {
        ctx.sink.error(at, `${label(path)} has ${items.length} items; at most ${schema.maxItems} are allowed`);
        return INVALID;
      }
      const out: unknown[] = [];
      let ok = true;
      items.forEach((item, i) => {
        const v = readNode(item, schema.items, `${path}/${i}`, ctx, depth + 1);
        if (v === INVALID) ok = false;
        out.push(v === INVALID ? undefined : v);
      });
      return ok || ctx.partial ? out : INVALID;
    }
    case "object":
      return readObject(node, schema, path, ctx, depth);
    case "map": {
      if (!isMap(node)) {
        ctx.sink.error(at, `${label(path)} must be a mapping of names to values, not ${describe(node)}`);
        return INVALID;
      }
      const out: Record<string, unknown> = {};
      let ok = true;
      for (const pair of node.items as Pair<Node | null, Node | null>[]) {
        const key = keyString(pair, ctx, path);
        if (key === INVALID) {
          ok = false;
          continue;
        }
        if (schema.keys && readString(pair.key, schema.keys, `${path}/${escapePointer(key)}#key`, ctx) === INVALID) {
          ok = false;
        }
        const v = readNode(pair.value, schema.values, `${path}/${escapePointer(key)}`, ctx, depth + 1);
        if (v === INVALID) ok = false;
        else defineMember(out, key, v);
      }
      return ok || ctx.partial ? out : INVALID;
    }
    case "json":
      return readJson(node, path, ctx, depth);
  }
}

function readString(node: Node | null, schema: StringSchema, path: string, ctx: SchemaContext): string | Invalid {
  const at = nodeOffset(node, ctx.fallbackOffset);
  const v = scalarValue(node);
  if (typeof v !== "string") {
    // Quote the text as written: 0x1F and 1e3 are the numbers 31 and 1000, but the names "0x1F" and "1e3".
    const quoteHint =
      isScalar(node) && (typeof v === "number" || typeof v === "boolean")
        ? ` (quote it: ${JSON.stringify(sourceText(node))})`
        : "";
    ctx.sink.error(at, `${label(path)} must be a string, not ${describe(node)}${quoteHint}`);
    return INVALID;
  }
  if (schema.maxLength !== undefined && v.length > schema.maxLength) {
    ctx.sink.error(at, `${label(path)} is ${v.length} characters long; the limit is ${schema.maxLength}`);
    return INVALID;
  }
  if (schema.enum && !schema.enum.includes(v)) {
    ctx.sink.error(
      at,
      `${label(path)} must be one of ${schema.enum.join(", ")}, not "${v}"${didYouMean(v, schema.enum)}`,
    );
    return INVALID;
  }
  if (schema.pattern && !schema.pattern.test(v)) {
    ctx.sink.error(at, `${label(path)} "${v}" is not valid: ${schema.patternHelp ?? `must match ${schema.pattern}`}`);
    return INVALID;
  }
  const problem = schema.check?.(v);
  if (problem !== undefined) {
    ctx.sink.error(at, `${label(path)}: ${problem}`);
    return INVALID;
  }
  return v;
}

function readObject(node: Node | null, schema: ObjectSchema, path: string, ctx: SchemaContext, depth: number): unknown {
  const at = nodeOffset(node, ctx.fallbackOffset);
  if (!isMap(node)) {
    ctx.sink.error(at, `${label(path)} must be a mapping (the ${schema.what}'s fields), not ${describe(node)}`);
    return INVALID;
  }
  const out: Record<string, unknown> = {};
  let ok = true;
  const known = Object.keys(schema.fields);
  for (const pair of node.items as Pair<Node | null, Node | null>[]) {
    const key = keyString(pair, ctx, path);
    if (key === INVALID) {
      ok = false;
      continue;
    }
    const field = schema.fields[key];
    const keyPath = `${path}/${escapePointer(key)}`;
    if (!field || !Object.hasOwn(schema.fields, key)) {
      ctx.sink.error(
        nodeOffset(pair.key as Node, at),
        `unknown field "${key}" in ${schema.what}${didYouMean(key, known)}; allowed fields: ${known.join(", ")}`,
      );
      // The error already stops the policy set from loading; keep reading so later checks
      // (CEL, schemas) can report their problems in the same run.
      continue;
    }
    ctx.nodes.set(`${keyPath}#key`, pair.key as Node);
    const v = readNode(pair.value, field.schema, keyPath, ctx, depth + 1);
    if (v === INVALID) ok = false;
    else defineMember(out, key, v);
  }
  for (const [name, field] of Object.entries(schema.fields)) {
    if (field.required && !Object.hasOwn(out, name) && !node.items.some((p) => scalarValue(p.key as Node) === name)) {
      ctx.sink.error(at, `${schema.what} is missing the required field "${name}"`);
      ok = false;
    }
  }
  return ok || ctx.partial ? out : INVALID;
}

function readJson(node: Node | null, path: string, ctx: SchemaContext, depth: number): unknown {
  if (node) ctx.nodes.set(path, node);
  const at = nodeOffset(node, ctx.fallbackOffset);
  if (depth > MAX_DEPTH) {
    ctx.sink.error(at, `${label(path)}: nested more than ${MAX_DEPTH} levels deep`);
    return INVALID;
  }
  if (node === null) return null;
  if (isScalar(node)) {
    const v = node.value;
    if (typeof v === "number" && !Number.isFinite(v)) {
      ctx.sink.error(at, `${label(path)}: ${v} is not a JSON number`);
      return INVALID;
    }
    if (v === null || typeof v === "string" || typeof v === "number" || typeof v === "boolean") return v;
    ctx.sink.error(at, `${label(path)}: ${describe(node)} is not a JSON value`);
    return INVALID;
  }
  if (isSeq(node)) {
    const out: unknown[] = [];
    let ok = true;
    (node.items as (Node | null)[]).forEach((item, i) => {
      const v = readJson(item, `${path}/${i}`, ctx, depth + 1);
      if (v === INVALID) ok = false;
      out.push(v);
    });
    return ok ? out : INVALID;
  }
  if (isMap(node)) {
    const out: Record<string, unknown> = {};
    let ok = true;
    for (const pair of node.items as Pair<Node | null, Node | null>[]) {
      const key = keyString(pair, ctx, path);
      if (key === INVALID) {
        ok = false;
        continue;
      }
      const v = readJson(pair.value, `${path}/${escapePointer(key)}`, ctx, depth + 1);
      if (v === INVALID) ok = false;
      else defineMember(out, key, v);
    }
    return ok ? out : INVALID;
  }
  ctx.sink.error(at, `${label(path)}: ${describe(node)} is not a JSON value`);
  return INVALID;
}

function keyString(pair: Pair<unknown, unknown>, ctx: SchemaContext, path: string): string | Invalid {
  const key = pair.key as Node | null;
  const v = scalarValue(key);
  if (typeof v === "string") return v;
  if (typeof v === "number" || typeof v === "boolean") return String(v);
  ctx.sink.error(nodeOffset(key, ctx.fallbackOffset), `${label(path)}: keys must be plain names, not ${describe(key)}`);
  return INVALID;
}

/** Plain assignment would let a "__proto__" key change the object's prototype. */
function defineMember(obj: Record<string, unknown>, key: string, value: unknown): void {
  Object.defineProperty(obj, key, { value, enumerable: true, writable: true, configurable: true });
}

/** A scalar as written in the file (0x1F, not 31), when the parser kept it. */
function sourceText(node: Scalar): string {
  return typeof node.source === "string" && node.source !== "" ? node.source : String(node.value);
}

function scalarValue(node: Node | null | undefined): unknown {
  return isScalar(node) ? node.value : undefined;
}

export function describe(node: Node | null | undefined): string {
  if (node === null || node === undefined) return "an empty value";
  if (isAlias(node))
    return `the alias *${node.source} (Warden does not expand YAML anchors and aliases; write the value out)`;
  if (isMap(node)) return "a mapping";
  if (isSeq(node)) return "a list";
  if (node instanceof Scalar) {
    const v = node.value;
    if (v === null) return "null";
    if (typeof v === "string") return `the text "${v.length > 60 ? `${v.slice(0, 57)}...` : v}"`;
    if (typeof v === "number") return `the number ${sourceText(node)}`;
    if (typeof v === "boolean") return `the boolean ${sourceText(node)}`;
  }
  return "an unsupported YAML value";
}

export function escapePointer(key: string): string {
  return key.replace(/~/g, "~0").replace(/\//g, "~1");
}

/** "/spec/rules/0/tools" → "spec.rules[0].tools", the way users read paths. */
export function label(path: string): string {
  if (path === "") return "document";
  let out = "";
  for (const raw of path.split("/").slice(1)) {
    const part = raw.replace(/~1/g, "/").replace(/~0/g, "~");
    out += /^\d+$/.test(part) ? `[${part}]` : out === "" ? part : `.${part}`;
  }
  return out;
}
