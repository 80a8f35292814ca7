// RFC 8785 JSON Canonicalization Scheme (JCS).
//
// JCS is defined in terms of ECMAScript's own JSON serialisation of strings and
// numbers, so JSON.stringify does the per-value work; what JCS adds is sorting
// object members by UTF-16 code units and refusing input that is not I-JSON
// (RFC 7493): non-finite numbers, lone surrogates, and values JSON cannot carry.
import { createHash } from "node:crypto";

export class CanonicalJsonError extends Error {
  override name = "CanonicalJsonError";
}

const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

/** Serialises a JSON value canonically (RFC 8785). Throws CanonicalJsonError on non-I-JSON input. */
export function canonicalJson(value: unknown): string {
  const parts: string[] = [];
  write(value, parts, "");
  return parts.join("");
}

function write(value: unknown, out: string[], path: string): void {
  switch (typeof value) {
    case "string":
      out.push(serialiseString(value, path));
      return;
    case "number":
      if (!Number.isFinite(value)) {
        throw new CanonicalJsonError(`${path || "/"}: ${value} is not a JSON number`);
      }
      out.push(JSON.stringify(value));
      return;
    case "boolean":
      out.push(value ? "true" : "false");
      return;
    case "object":
      break;
    default:
      throw new CanonicalJsonError(`${path || "/"}: a ${typeof value} cannot be represented in JSON`);
  }
  if (value === null) {
    out.push("null");
    return;
  }
  if (Array.isArray(value)) {
    out.push("[");
    for (let i = 0; i < value.length; i++) {
      if (i > 0) out.push(",");
      write(value[i], out, `${path}/${i}`);
    }
    out.push("]");
    return;
  }
  const proto = Object.getPrototypeOf(value);
  if (proto !== Object.prototype && proto !== null) {
    throw new CanonicalJsonError(`${path || "/"}: only plain objects can be represented in JSON`);
  }
  // Default sort compares UTF-16 code units, which is exactly what RFC 8785 §3.2.3 asks for.
  const keys = Object.keys(value).sort();
  out.push("{");
  let first = true;
  for (const key of keys) {
    const member = (value as Record<string, unknown>)[key];
    if (member === undefined) continue; // as JSON.stringify: absent, not null
    if (!first) out.push(",");
    first = false;
    out.push(serialiseString(key, path), ":");
    write(member, out, `${path}/${key}`);
  }
  out.push("}");
}

function serialiseString(s: string, path: string): string {
  if (LONE_SURROGATE.test(s)) {
    throw new CanonicalJsonError(`${path || "/"}: string contains a lone UTF-16 surrogate (not I-JSON)`);
  }
  return JSON.stringify(s);
}

/** `sha256:<hex>` of the canonical JSON of a value. */
export function canonicalDigest(value: unknown): string {
  return `sha256:${createHash("sha256").update(canonicalJson(value), "utf8").digest("hex")}`;
}
