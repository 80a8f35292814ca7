// Parsing YAML text into documents, with positions, and with the mistakes that
// copying a policy from a web page introduces turned into errors that say how
// to fix them. Nothing here guesses a meaning: a pasted policy either loads as
// written or fails, line by line.
import { type Document, isScalar, type Node, parseAllDocuments, visit, type YAMLError } from "yaml";
import { DiagnosticSink } from "./diagnostics.js";

export interface SourceDocument {
  doc: Document.Parsed;
  /** Offset of the document's first content, for errors about the document as a whole. */
  start: number;
}

export interface ParsedSource {
  text: string;
  sink: DiagnosticSink;
  documents: SourceDocument[];
  lines: LineIndex;
}

/**
 * Line starts computed from the text itself (the YAML library's own line
 * counter misses newlines inside some error tokens), with binary search.
 */
export class LineIndex {
  readonly starts: number[] = [0];
  constructor(readonly text: string) {
    for (let i = text.indexOf("\n"); i >= 0; i = text.indexOf("\n", i + 1)) this.starts.push(i + 1);
  }

  /** 1-based line and column of an offset. */
  position(offset: number): { line: number; col: number } {
    const o = Math.max(0, Math.min(offset, this.text.length));
    let lo = 0;
    let hi = this.starts.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if ((this.starts[mid] as number) <= o) lo = mid;
      else hi = mid - 1;
    }
    return { line: lo + 1, col: o - (this.starts[lo] as number) + 1 };
  }

  /** The text of a 1-based line, without its newline. */
  line(n: number): string {
    const start = this.starts[n - 1] ?? this.text.length;
    const next = this.starts[n];
    return this.text.slice(start, next === undefined ? undefined : next - 1).replace(/\r$/, "");
  }

  get count(): number {
    return this.starts.length;
  }
}

/** Tags that mean what the YAML 1.2 core schema says. Anything else is almost certainly a mistake. */
const CORE_TAGS = new Set([
  "tag:yaml.org,2002:str",
  "tag:yaml.org,2002:int",
  "tag:yaml.org,2002:float",
  "tag:yaml.org,2002:bool",
  "tag:yaml.org,2002:null",
  "tag:yaml.org,2002:map",
  "tag:yaml.org,2002:seq",
  "!",
  "!!str",
  "!!int",
  "!!float",
  "!!bool",
  "!!null",
  "!!map",
  "!!seq",
]);

export const MAX_SOURCE_BYTES = 4 * 1024 * 1024;

/** Nesting beyond these is never a real policy, and deep enough nesting can exhaust the parser's stack. */
const MAX_FLOW_NESTING = 64;
const MAX_INDENT = 128;
/** "- - - x" or "? ? x" nests collections on one line; each marker is a level. */
const MAX_COMPACT_NESTING = 32;
/** After this many YAML syntax errors in one file, the rest are counted, not explained. */
const MAX_YAML_ERRORS = 50;

export function parseYamlSource(file: string, text: string): ParsedSource {
  const lines = new LineIndex(text);
  const sink = new DiagnosticSink(file, (offset) => lines.position(offset));
  if (text.length > MAX_SOURCE_BYTES) {
    sink.error(0, `file is ${text.length} bytes; policy files are limited to ${MAX_SOURCE_BYTES} bytes`);
    return { text, sink, documents: [], lines };
  }
  const tooDeep = nestingProblem(text);
  if (tooDeep) {
    sink.error(tooDeep.offset, tooDeep.message);
    return { text, sink, documents: [], lines };
  }
  const docs = parseAllDocuments(text, {
    prettyErrors: false,
    version: "1.2",
    schema: "core",
    uniqueKeys: true,
    merge: false,
    strict: true,
  });
  const documents: SourceDocument[] = [];
  const list = Array.isArray(docs) ? docs : [docs];
  const reportedLines = new Set<number>();
  scanPasteArtifacts(lines, sink, reportedLines);
  let yamlErrors = 0;
  for (const doc of list) {
    for (const e of doc.errors) {
      if (++yamlErrors <= MAX_YAML_ERRORS) reportYamlError(e, lines, sink, reportedLines);
    }
    for (const w of doc.warnings) {
      if (w.code === "TAG_RESOLVE_FAILED") continue; // reported below with a fix
      sink.warning(w.pos[0], w.message.split("\n")[0] ?? w.message);
    }
    checkTags(doc, lines, sink, reportedLines);
    const empty = doc.contents === null || (isScalar(doc.contents) && doc.contents.value === null);
    if (empty && doc.errors.length === 0) continue; // an empty document, e.g. after a trailing ---
    documents.push({ doc, start: doc.contents?.range?.[0] ?? doc.range[0] });
  }
  if (yamlErrors > MAX_YAML_ERRORS) {
    sink.error(text.length, `${yamlErrors - MAX_YAML_ERRORS} more YAML errors in this file are not shown`);
  }
  return { text, sink, documents, lines };
}

/** Finds flow nesting ([ {) or indentation deeper than any policy needs, in one pass. */
function nestingProblem(text: string): { offset: number; message: string } | undefined {
  let depth = 0;
  let quote: string | null = null;
  let indent = 0;
  let lineStart = true;
  let prev = ""; // last non-space character on this line, outside quotes
  let onlyDashes = true; // the line so far is indentation and "-" entry markers
  for (let i = 0; i < text.length; i++) {
    const ch = text[i] as string;
    if (quote) {
      if (quote === '"' && ch === "\\") i++;
      else if (ch === quote) quote = null;
      continue;
    }
    if (ch === "\n") {
      lineStart = true;
      indent = 0;
      prev = "";
      onlyDashes = true;
      continue;
    }
    if (lineStart && ch === " ") {
      if (++indent > MAX_INDENT) {
        return {
          offset: i,
          message: `line is indented more than ${MAX_INDENT} columns; policies are never nested this deep`,
        };
      }
      continue;
    }
    if (lineStart) {
      lineStart = false;
      let markers = 0;
      let j = i;
      while ((text[j] === "-" || text[j] === "?" || text[j] === ":") && (text[j + 1] === " " || text[j + 1] === "\t")) {
        j += 2;
        while (text[j] === " " || text[j] === "\t") j++;
        if (++markers > MAX_COMPACT_NESTING) {
          return {
            offset: j,
            message: `more than ${MAX_COMPACT_NESTING} nested "-", "?" or ":" markers on one line; policies are never nested this deep`,
          };
        }
      }
    }
    if (ch === " " || ch === "\t") continue;
    if (ch === "#" && (text[i - 1] === " " || text[i - 1] === "\n" || i === 0)) {
      const end = text.indexOf("\n", i);
      i = end < 0 ? text.length : end - 1;
      continue;
    }
    // Quotes and brackets only mean something where a value starts; "it's" and "x[1]" are plain text.
    const valueStart = prev === "" || onlyDashes || ":[{,".includes(prev);
    if (ch !== "-") onlyDashes = false;
    if ((ch === '"' || ch === "'") && valueStart) quote = ch;
    else if ((ch === "[" || ch === "{") && valueStart) {
      if (++depth > MAX_FLOW_NESTING) {
        return {
          offset: i,
          message: `brackets are nested more than ${MAX_FLOW_NESTING} deep; policies are never nested this deep`,
        };
      }
    } else if ((ch === "]" || ch === "}") && depth > 0) depth--;
    prev = ch;
  }
  return undefined;
}

function reportYamlError(e: YAMLError, lines: LineIndex, sink: DiagnosticSink, reported: Set<number>): void {
  const first = e.message.split("\n")[0] ?? e.message;
  let offset = e.pos[0];
  const { line } = lines.position(offset);
  if (reported.has(line)) return; // the paste scan already explained this line better
  let hint = "";
  if (e.code === "BAD_INDENT" || e.code === "MISSING_CHAR" || e.code === "UNEXPECTED_TOKEN") {
    const indent = indentationHint(lines, offset);
    if (indent) {
      hint = ` ${indent.message}`;
      offset = indent.offset;
    }
  }
  if (e.code === "DUPLICATE_KEY") hint = " Each key may appear once in a mapping; remove or rename the repeated one.";
  if (e.code === "TAB_AS_INDENT") hint = " Indent with spaces, not tabs.";
  sink.error(offset, `YAML: ${first}.${hint}`.replace(/\.\./g, "."));
  reported.add(line);
}

/**
 * Explains an indentation error by comparing the line with the key before it,
 * e.g. `action:` one column deeper than `tools:` in the same rule.
 */
function indentationHint(lines: LineIndex, offset: number): { message: string; offset: number } | undefined {
  const lineNo = lines.position(offset).line;
  const here = lines.line(lineNo);
  const col = here.length - here.trimStart().length;
  // Look back a few lines at most: this only explains an error, it must not make loading slow.
  for (let i = lineNo - 1; i >= 1 && i >= lineNo - 20; i--) {
    const prev = lines.line(i);
    const trimmed = prev.trim();
    if (trimmed === "" || trimmed.startsWith("#")) continue;
    const prevIndent = prev.length - prev.trimStart().length;
    // For "- key: value" the sibling keys line up with "key", two columns in.
    const keyCol = trimmed.startsWith("- ") ? prevIndent + 2 : prevIndent;
    if (col !== keyCol && Math.abs(col - keyCol) <= 2) {
      const key = here.trim().split(":")[0];
      const prevKey = trimmed.replace(/^- /, "").split(":")[0];
      return {
        message: `Check the indentation: "${key}" starts in column ${col + 1} but "${prevKey}" on line ${i} starts in column ${keyCol + 1}; keys of one mapping must start in the same column.`,
        offset: (lines.starts[lineNo - 1] ?? 0) + col,
      };
    }
    return undefined;
  }
  return undefined;
}

/** A YAML tag such as `!request.arguments...` is how an unquoted CEL negation gets misread. */
function checkTags(doc: Document.Parsed, lines: LineIndex, sink: DiagnosticSink, reported: Set<number>) {
  visit(doc, {
    Node(_key, node: Node) {
      const tag = node.tag;
      if (tag === undefined || CORE_TAGS.has(tag)) return;
      const offset = tagOffset(lines.text, node);
      const { line } = lines.position(offset);
      if (reported.has(line)) return;
      reported.add(line);
      const lineText = lines.line(line);
      if (/^\s*(-\s+)?cel\s*:/.test(lineText)) {
        sink.error(offset, celTagMessage(lineText));
      } else {
        sink.error(
          offset,
          `YAML reads "${tag.startsWith("tag:yaml.org,2002:") ? `!!${tag.slice(18)}` : tag}" as a tag, which Warden does not use. If this is text that starts with "!", put it in quotes.`,
        );
      }
    },
  });
}

function tagOffset(text: string, node: Node): number {
  const start = node.range?.[0] ?? 0;
  // The node's range starts at its value; the tag comes before it on the same line.
  const lineStart = text.lastIndexOf("\n", start - 1) + 1;
  const bang = text.indexOf("!", lineStart);
  return bang >= 0 && bang <= start ? bang : start;
}

function celTagMessage(lineText: string): string {
  const raw = lineText.replace(/^\s*(-\s+)?cel\s*:\s*/, "").trimEnd();
  const unescaped = raw.replace(/\\(['"\][_*])/g, "$1");
  const quoted = JSON.stringify(unescaped);
  return `YAML reads an unquoted value that starts with "!" as a tag, so this CEL expression would be lost. Quote CEL expressions that start with !: cel: ${quoted}`;
}

/**
 * Markdown escapes (`\]`, `\[`, `\'`) survive when a policy is copied from a
 * rendered web page. YAML does not treat them as escapes, so they silently
 * change names (`get_file_contents\`) or break CEL. Report each line with the fix.
 */
function scanPasteArtifacts(lines: LineIndex, sink: DiagnosticSink, reported: Set<number>): void {
  for (let i = 0; i < lines.count; i++) {
    const lineStart = lines.starts[i] as number;
    const content = stripComment(lines.line(i + 1));
    // `cel: !expr` — handled with the same fix as the tag check, but also catches it when YAML fails earlier.
    const celMatch = /^(\s*(?:-\s+)?cel\s*:\s*)!/.exec(content);
    if (celMatch) {
      sink.error(lineStart + (celMatch[1]?.length ?? 0), celTagMessage(content));
      reported.add(i + 1);
      continue;
    }
    // A flow list `[a, b\]` or a plain value containing `\'`, outside any quotes.
    const unquoted = unquotedPart(content);
    const markdownEscape = /\\[\]['_*]/.exec(unquoted);
    if (markdownEscape) {
      const fixed = content.replace(/\\([\]['_*])/g, "$1").trim();
      sink.error(
        lineStart + markdownEscape.index,
        `"${markdownEscape[0]}" looks like a markdown escape left over from copying this policy from a web page; YAML keeps the backslash as part of the value. Remove the backslash: ${fixed} (if the backslash is meant, quote the value)`,
      );
      reported.add(i + 1);
    }
  }
}

/** The part of a line that is outside quoted scalars, with quoted text blanked (single-line quotes only). Linear. */
function unquotedPart(line: string): string {
  const out: string[] = [];
  let quote: string | null = null;
  // A quote opens a quoted scalar only where a value starts (line start, after : [ { , or a "-"
  // entry marker), not inside plain text like "it's".
  let prev = "";
  let onlyDashes = true;
  for (let i = 0; i < line.length; i++) {
    const ch = line[i] as string;
    if (quote === '"') {
      if (ch === "\\") {
        i++;
        out.push("  ");
      } else {
        if (ch === '"') quote = null;
        out.push(" ");
      }
      continue;
    }
    if (quote === "'") {
      if (ch === "'" && line[i + 1] === "'") {
        i++;
        out.push("  ");
      } else {
        if (ch === "'") quote = null;
        out.push(" ");
      }
      continue;
    }
    if ((ch === '"' || ch === "'") && (prev === "" || onlyDashes || ":[{,".includes(prev))) {
      quote = ch;
      out.push(" ");
      prev = ch;
      onlyDashes = false;
      continue;
    }
    out.push(ch);
    if (ch !== " " && ch !== "\t") {
      prev = ch;
      if (ch !== "-") onlyDashes = false;
    }
  }
  return out.join("");
}

function stripComment(line: string): string {
  // A '#' starts a comment only at the line start or after whitespace.
  const m = /(^|\s)#/.exec(unquotedPart(line));
  return m ? line.slice(0, m.index) : line;
}
