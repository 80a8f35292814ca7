// Reading policy files and directories into checked resources. This is the
// only part of src/policy that touches the file system, and it runs at load
// time, never per decision.
import { readdir, readFile, stat } from "node:fs/promises";
import { join } from "node:path";
import { isMap, isScalar, type Node } from "yaml";
import { CanonicalJsonError, canonicalDigest } from "../encoding/canonical-json.js";
import { type Diagnostic, didYouMean, type SourcePosition } from "./diagnostics.js";
import { type AnyResource, documentSchema, KIND_SPECS, type Kind } from "./resources.js";
import { INVALID, type NodeIndex, readNode } from "./schema.js";
import { type ParsedSource, parseYamlSource } from "./yaml-source.js";

export interface SourceFile {
  /** The path as the user gave it or as found under a directory they gave. */
  file: string;
  text: string;
}

export interface LoadedResource {
  kind: Kind;
  name: string;
  /** The document as JSON, exactly as written (after YAML parsing). */
  value: AnyResource;
  /** sha256 of the RFC 8785 canonical JSON of `value`. */
  version: string;
  file: string;
  /** Where the document starts. */
  position: SourcePosition;
  /** Finds the position of a value by JSON pointer, e.g. "/spec/rules/0/tools/1". */
  positionOf(pointer: string): SourcePosition;
  /**
   * Maps an offset inside a string value (such as a CEL expression) back into the file. Where
   * that cannot be done exactly (escapes or line breaks inside quotes), the position is the
   * string's own and `exact` is false.
   */
  positionInString(pointer: string, offset: number): { position: SourcePosition; exact: boolean };
}

export interface LoadResult {
  resources: LoadedResource[];
  diagnostics: Diagnostic[];
  /**
   * Documents with errors (in `diagnostics`), holding only their valid parts. They are never
   * compiled; they are kept so that later checks (CEL, approvals, argument schemas) can report
   * their problems in the same run.
   */
  partial?: LoadedResource[];
}

const KINDS = Object.keys(KIND_SPECS) as Kind[];
const MAX_FILES = 10_000;

/** Reads files and directories (recursively, *.yaml and *.yml, sorted) and loads every document in them. */
export async function loadPolicyPaths(paths: readonly string[]): Promise<LoadResult> {
  const sources: SourceFile[] = [];
  const diagnostics: Diagnostic[] = [];
  for (const p of paths) {
    const found = await collectFiles(p, diagnostics);
    for (const file of found) {
      if (sources.length >= MAX_FILES) {
        diagnostics.push({ file, line: 1, col: 1, severity: "error", message: `more than ${MAX_FILES} policy files` });
        break;
      }
      try {
        sources.push({ file, text: await readFile(file, "utf8") });
      } catch (err) {
        diagnostics.push({ file, line: 1, col: 1, severity: "error", message: `cannot read file: ${errorText(err)}` });
      }
    }
  }
  const result = loadPolicySources(sources);
  return { ...result, diagnostics: [...diagnostics, ...result.diagnostics] };
}

async function collectFiles(path: string, diagnostics: Diagnostic[]): Promise<string[]> {
  let info: Awaited<ReturnType<typeof stat>>;
  try {
    info = await stat(path);
  } catch (err) {
    diagnostics.push({ file: path, line: 1, col: 1, severity: "error", message: `cannot read: ${errorText(err)}` });
    return [];
  }
  if (!info.isDirectory()) return [path];
  const out: string[] = [];
  const walk = async (dir: string) => {
    const entries = await readdir(dir, { withFileTypes: true });
    entries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    for (const e of entries) {
      if (e.name.startsWith(".") || e.name === "node_modules") continue;
      const full = join(dir, e.name);
      const isDir = e.isDirectory() || (e.isSymbolicLink() && (await stat(full).catch(() => null))?.isDirectory());
      if (isDir) await walk(full);
      else if (/\.ya?ml$/i.test(e.name)) out.push(full);
      if (out.length > MAX_FILES) return;
    }
  };
  await walk(path);
  if (out.length === 0) {
    diagnostics.push({
      file: path,
      line: 1,
      col: 1,
      severity: "error",
      message: "no policy files (*.yaml, *.yml) in this directory",
    });
  }
  return out;
}

function errorText(err: unknown): string {
  const e = err as NodeJS.ErrnoException;
  if (e.code === "ENOENT") return "no such file or directory";
  if (e.code === "EACCES") return "permission denied";
  return e.message ?? String(err);
}

/** Loads documents from in-memory sources. Pure apart from hashing. */
export function loadPolicySources(sources: readonly SourceFile[]): LoadResult {
  const resources: LoadedResource[] = [];
  const partial: LoadedResource[] = [];
  const diagnostics: Diagnostic[] = [];
  const seen = new Map<string, LoadedResource>();
  for (const src of sources) {
    const parsed = parseYamlSource(src.file, src.text);
    for (const { doc, start } of parsed.documents) {
      if (doc.errors.length > 0) continue; // already reported; the document's meaning is unknown
      const loaded = loadDocument(parsed, doc.contents as Node | null, start);
      if (!loaded) continue;
      if (!loaded.complete) {
        partial.push(loaded.resource);
        continue;
      }
      const res = loaded.resource;
      const key = `${res.kind}/${res.name}`;
      const earlier = seen.get(key);
      if (earlier) {
        parsed.sink.errorAt(
          res.positionOf("/metadata/name"),
          `${res.kind} "${res.name}" is defined twice; the other one is at ${earlier.file}:${earlier.position.line}:${earlier.position.col}. Names must be unique per kind.`,
        );
        partial.push(res);
        continue;
      }
      seen.set(key, res);
      resources.push(res);
    }
    diagnostics.push(...parsed.sink.items);
  }
  if (sources.length > 0 && resources.length === 0 && !diagnostics.some((d) => d.severity === "error")) {
    const first = sources[0] as SourceFile;
    diagnostics.push({ file: first.file, line: 1, col: 1, severity: "error", message: "no policy documents found" });
  }
  return { resources, diagnostics, partial };
}

/** A document read from YAML; `complete` is false when it had errors and holds only its valid parts. */
function loadDocument(
  parsed: ParsedSource,
  root: Node | null,
  start: number,
): { resource: LoadedResource; complete: boolean } | undefined {
  const sink = parsed.sink;
  if (!isMap(root)) {
    sink.error(start, "a policy document must be a mapping with apiVersion, kind, metadata and spec");
    return undefined;
  }
  const kindNode = root.get("kind", true) as Node | undefined;
  const kindValue = isScalar(kindNode) ? kindNode.value : undefined;
  if (kindValue === undefined) {
    sink.error(start, `document has no "kind"; use one of ${KINDS.join(", ")}`);
    return undefined;
  }
  if (typeof kindValue !== "string" || !KINDS.includes(kindValue as Kind)) {
    sink.error(
      kindNode?.range?.[0] ?? start,
      `unknown kind "${String(kindValue)}"${didYouMean(String(kindValue), KINDS)}; Warden reads ${KINDS.join(", ")}`,
    );
    return undefined;
  }
  const kind = kindValue as Kind;
  const nodes: NodeIndex = new Map();
  const errorsBefore = sink.errors;
  const value = readNode(root, documentSchema(kind), "", { sink, nodes, fallbackOffset: start, partial: true });
  if (value === INVALID) return undefined;
  const resource = value as AnyResource;
  const positionOf = (pointer: string): SourcePosition => sink.at(offsetOf(nodes, pointer, start));
  let complete = sink.errors === errorsBefore;
  let version = "";
  if (complete) {
    try {
      version = canonicalDigest(resource);
    } catch (err) {
      // Not representable as I-JSON (RFC 8785), e.g. a lone UTF-16 surrogate from a "\ud800" escape.
      const pointer = err instanceof CanonicalJsonError ? (err.message.split(":")[0] ?? "") : "";
      sink.errorAt(
        positionOf(pointer === "/" ? "" : pointer),
        `${err instanceof Error ? err.message.replace(/^[^:]*: /, "") : String(err)}; policies must be valid Unicode text`,
      );
      complete = false;
    }
  }
  const name = resource.metadata?.name;
  return {
    complete,
    resource: {
      kind,
      name: typeof name === "string" ? name : "",
      value: resource,
      version,
      file: sink.file,
      position: sink.at(start),
      positionOf,
      positionInString: (pointer, offset) => {
        const node = nodes.get(pointer);
        const exact = stringOffset(parsed.text, node, offset);
        return exact === undefined
          ? { position: sink.at(node?.range?.[0] ?? start), exact: false }
          : { position: sink.at(exact), exact: true };
      },
    },
  };
}

/** The closest recorded node at or above a pointer. */
function offsetOf(nodes: NodeIndex, pointer: string, fallback: number): number {
  let p = pointer;
  for (;;) {
    const n = nodes.get(p);
    if (n?.range) return n.range[0];
    if (p === "") return fallback;
    p = p.slice(0, p.lastIndexOf("/"));
  }
}

/**
 * File offset of a character inside a string scalar, when it can be known exactly:
 *   - plain and block scalars (literal | or folded >) are their lines with the indentation
 *     taken away and the line breaks kept or folded into spaces, so each line's text must
 *     appear in the value in order, with only whitespace between: if it does, the character
 *     is found on its line;
 *   - a one-line quoted string is decoded escape by escape and compared with the value.
 * Anything else (line breaks inside quotes, unknown escapes, a value that does not line up)
 * gives undefined: better no column than a wrong one.
 */
function stringOffset(text: string, node: Node | undefined, offset: number): number | undefined {
  if (!isScalar(node) || !node.range || typeof node.value !== "string") return undefined;
  const [start, end] = node.range;
  const raw = text.slice(start, end);
  const value = node.value;
  switch (node.type) {
    case "PLAIN":
    case "BLOCK_LITERAL":
    case "BLOCK_FOLDED": {
      // A block scalar's first line is its header (| or > with indicators and perhaps a comment).
      const lines = raw.split("\n");
      let lineStart = start;
      let j = 0; // next unmatched character of the value
      let found: number | undefined;
      for (let i = 0; i < lines.length; i++) {
        const line = lines[i] as string;
        const content = line.trim();
        const src = lineStart + line.length - line.trimStart().length;
        lineStart += line.length + 1;
        if ((i === 0 && node.type !== "PLAIN") || content === "") continue;
        while (j < value.length && /\s/.test(value[j] as string)) j++;
        if (!value.startsWith(content, j)) return undefined;
        if (found === undefined && offset < j + content.length) found = src + Math.max(0, offset - j);
        j += content.length;
      }
      if (value.slice(j).trim() !== "") return undefined;
      return found ?? start + raw.trimEnd().length;
    }
    case "QUOTE_DOUBLE":
    case "QUOTE_SINGLE": {
      if (raw.includes("\n")) return undefined;
      let j = 0;
      let found: number | undefined;
      for (let i = 1; i < raw.length - 1; ) {
        const unit = quotedUnit(raw, i, node.type === "QUOTE_DOUBLE");
        if (unit === undefined || !value.startsWith(unit.text, j)) return undefined;
        if (found === undefined && offset < j + unit.text.length) found = start + i;
        i += unit.length;
        j += unit.text.length;
      }
      if (j !== value.length) return undefined;
      return found ?? start + raw.length - 1;
    }
    default:
      return undefined;
  }
}

const YAML_ESCAPES: Readonly<Record<string, string>> = {
  "0": "\0",
  a: "\x07",
  b: "\b",
  t: "\t",
  "\t": "\t",
  n: "\n",
  v: "\v",
  f: "\f",
  r: "\r",
  e: "\x1b",
  " ": " ",
  '"': '"',
  "/": "/",
  "\\": "\\",
  N: "\x85",
  _: "\xa0",
  L: "\u2028",
  P: "\u2029",
};
const HEX_ESCAPES: Readonly<Record<string, number>> = { x: 2, u: 4, U: 8 };

/** The text one character or escape of a quoted scalar stands for, and how long it is in the source. */
function quotedUnit(raw: string, i: number, double: boolean): { text: string; length: number } | undefined {
  const ch = raw[i] as string;
  if (!double)
    return ch === "'" ? (raw[i + 1] === "'" ? { text: "'", length: 2 } : undefined) : { text: ch, length: 1 };
  if (ch !== "\\") return { text: ch, length: 1 };
  const kind = raw[i + 1] ?? "";
  const simple = YAML_ESCAPES[kind];
  if (simple !== undefined && Object.hasOwn(YAML_ESCAPES, kind)) return { text: simple, length: 2 };
  const digits = HEX_ESCAPES[kind];
  if (digits === undefined || !Object.hasOwn(HEX_ESCAPES, kind)) return undefined;
  const hex = raw.slice(i + 2, i + 2 + digits);
  const code = Number.parseInt(hex, 16);
  if (!/^[0-9a-fA-F]+$/.test(hex) || hex.length !== digits || code > 0x10ffff) return undefined;
  return { text: String.fromCodePoint(code), length: 2 + digits };
}
