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
  /** Maps an offset inside a string value (such as a CEL expression) back into the file. */
  positionInString(pointer: string, offset: number): SourcePosition;
}

export interface LoadResult {
  resources: LoadedResource[];
  diagnostics: Diagnostic[];
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
  return { resources: result.resources, diagnostics: [...diagnostics, ...result.diagnostics] };
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
  const diagnostics: Diagnostic[] = [];
  const seen = new Map<string, LoadedResource>();
  for (const src of sources) {
    const parsed = parseYamlSource(src.file, src.text);
    for (const { doc, start } of parsed.documents) {
      if (doc.errors.length > 0) continue; // already reported; the document's meaning is unknown
      const loaded = loadDocument(parsed, doc.contents as Node | null, start);
      if (!loaded) continue;
      const key = `${loaded.kind}/${loaded.name}`;
      const earlier = seen.get(key);
      if (earlier) {
        parsed.sink.errorAt(
          loaded.positionOf("/metadata/name"),
          `${loaded.kind} "${loaded.name}" is defined twice; the other one is at ${earlier.file}:${earlier.position.line}:${earlier.position.col}. Names must be unique per kind.`,
        );
        continue;
      }
      seen.set(key, loaded);
      resources.push(loaded);
    }
    diagnostics.push(...parsed.sink.items);
  }
  if (sources.length > 0 && resources.length === 0 && !diagnostics.some((d) => d.severity === "error")) {
    const first = sources[0] as SourceFile;
    diagnostics.push({ file: first.file, line: 1, col: 1, severity: "error", message: "no policy documents found" });
  }
  return { resources, diagnostics };
}

function loadDocument(parsed: ParsedSource, root: Node | null, start: number): LoadedResource | undefined {
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
  const value = readNode(root, documentSchema(kind), "", { sink, nodes, fallbackOffset: start });
  if (value === INVALID) return undefined;
  const resource = value as AnyResource;
  const positionOf = (pointer: string): SourcePosition => sink.at(offsetOf(nodes, pointer, start));
  let version: string;
  try {
    version = canonicalDigest(resource);
  } catch (err) {
    // Not representable as I-JSON (RFC 8785), e.g. a lone UTF-16 surrogate from a "\ud800" escape.
    const pointer = err instanceof CanonicalJsonError ? (err.message.split(":")[0] ?? "") : "";
    sink.errorAt(
      positionOf(pointer === "/" ? "" : pointer),
      `${err instanceof Error ? err.message.replace(/^[^:]*: /, "") : String(err)}; policies must be valid Unicode text`,
    );
    return undefined;
  }
  return {
    kind,
    name: resource.metadata.name,
    value: resource,
    version,
    file: sink.file,
    position: sink.at(start),
    positionOf,
    positionInString: (pointer, offset) => sink.at(stringOffset(parsed.text, nodes.get(pointer), offset, start)),
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
 * File offset of a character inside a string scalar. Exact for plain and
 * quoted one-line scalars without escapes and for literal block scalars; otherwise
 * it points at the scalar itself.
 */
function stringOffset(text: string, node: Node | undefined, offset: number, fallback: number): number {
  if (!isScalar(node) || !node.range) return fallback;
  const [start, end] = node.range;
  const raw = text.slice(start, end);
  switch (node.type) {
    case "PLAIN":
      return raw.includes("\n") ? start : start + offset;
    case "QUOTE_DOUBLE":
    case "QUOTE_SINGLE":
      return raw.includes("\n") || /\\|''/.test(raw) ? start : start + 1 + offset;
    case "BLOCK_LITERAL": {
      // Line k of a literal block's value is content line k after the header (| or |-).
      const value = String(node.value);
      const before = value.slice(0, offset);
      const lineIndex = before.split("\n").length - 1;
      const col = offset - (before.lastIndexOf("\n") + 1);
      const lines = raw.split("\n");
      // The block's indentation is that of its first non-empty line; deeper indentation is part of the value.
      const firstContent = lines.slice(1).find((l) => l.trim() !== "") ?? "";
      const blockIndent = firstContent.length - firstContent.trimStart().length;
      let pos = start;
      for (let i = 0; i <= lineIndex && i < lines.length; i++) pos += (lines[i] as string).length + 1;
      return lineIndex + 1 < lines.length ? pos + blockIndent + col : start;
    }
    default:
      return start;
  }
}
