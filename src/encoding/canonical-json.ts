// RFC 8785 JSON Canonicalization Scheme (JCS).
//
// JCS is defined in terms of ECMAScript's own JSON serialisation of strings and
// numbers, so JSON.stringify does the per-value work; what JCS adds is sorting
// object members by UTF-16 code units and refusing input that is not I-JSON
// (RFC 7493): non-finite numbers, lone surrogates, and values JSON cannot carry.
//
// This runs once per audit record and per policy document, so the common case
// is kept cheap: no path strings unless something is wrong, strings without
// characters that need escaping copied as they are, keys sorted only if needed.
import { createHash } from "node:crypto";

export class CanonicalJsonError extends Error {
  override name = "CanonicalJsonError";
}

/** Serialises a JSON value canonically (RFC 8785). Throws CanonicalJsonError, naming the JSON pointer, on non-I-JSON input. */
export function canonicalJson(value: unknown): string {
  try {
    return write(value);
  } catch (err) {
    if (err instanceof Invalid) throw new CanonicalJsonError(`${locate(value, err.bad) || "/"}: ${err.message}`);
    throw err;
  }
}

/** `sha256:<hex>` of the canonical JSON of a value. */
export function canonicalDigest(value: unknown): string {
  return `sha256:${createHash("sha256").update(canonicalJson(value), "utf8").digest("hex")}`;
}

/** Internal: what was wrong and the offending value, so the path is only computed on failure. */
class Invalid extends Error {
  constructor(
    message: string,
    readonly bad: unknown,
  ) {
    super(message);
  }
}

function write(value: unknown): string {
  switch (typeof value) {
    case "string":
      return string(value);
    case "number":
      if (!Number.isFinite(value)) throw new Invalid(`${value} is not a JSON number`, value);
      return JSON.stringify(value);
    case "boolean":
      return value ? "true" : "false";
    case "object":
      break;
    default:
      throw new Invalid(`a ${typeof value} cannot be represented in JSON`, value);
  }
  if (value === null) return "null";
  if (Array.isArray(value)) {
    let out = "[";
    for (let i = 0; i < value.length; i++) out += i === 0 ? write(value[i]) : `,${write(value[i])}`;
    return `${out}]`;
  }
  const proto = Object.getPrototypeOf(value);
  if (proto !== Object.prototype && proto !== null) {
    throw new Invalid("only plain objects can be represented in JSON", value);
  }
  const keys = Object.keys(value);
  // Default sort compares UTF-16 code units, which is exactly what RFC 8785 §3.2.3 asks for.
  // Objects are often written in order already; sort only when they are not.
  for (let i = 1; i < keys.length; i++) {
    if ((keys[i - 1] as string) > (keys[i] as string)) {
      keys.sort();
      break;
    }
  }
  let out = "{";
  let first = true;
  for (const key of keys) {
    const member = (value as Record<string, unknown>)[key];
    if (member === undefined) continue; // as JSON.stringify: absent, not null
    out += `${first ? "" : ","}${string(key)}:${write(member)}`;
    first = false;
  }
  return `${out}}`;
}

function string(s: string): string {
  // Most strings need no escaping: no quote, backslash, control character or surrogate.
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x20 || c === 0x22 || c === 0x5c || (c >= 0xd800 && c <= 0xdfff)) {
      if (!(s as unknown as { isWellFormed(): boolean }).isWellFormed()) {
        throw new Invalid("string contains a lone UTF-16 surrogate (not I-JSON)", s);
      }
      return JSON.stringify(s);
    }
  }
  return `"${s}"`;
}

/** The JSON pointer of `bad` inside `root` (first occurrence), for error messages. */
function locate(root: unknown, bad: unknown, path = ""): string | undefined {
  if (Object.is(root, bad)) return path;
  if (typeof root === "object" && root !== null) {
    for (const [k, v] of Object.entries(root)) {
      if (typeof v === "string" && typeof bad !== "string") continue;
      const found = locate(v, bad, `${path}/${k}`);
      if (found !== undefined) return found;
    }
  }
  // A bad object key (a lone surrogate in a member name) is reported at its object.
  if (typeof root === "object" && root !== null && typeof bad === "string" && Object.keys(root).includes(bad)) {
    return path;
  }
  return undefined;
}
