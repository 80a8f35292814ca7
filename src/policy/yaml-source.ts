// Parsing YAML text into documents, with positions, and with the mistakes that
// copying a policy from a web page introduces turned into errors that say how
// to fix them. Nothing here guesses a meaning: a pasted policy either loads as
// written or fails, line by line.
import { type Document, isScalar, LineCounter, type Node, parseAllDocuments, visit, type YAMLError } from "yaml";
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
  lines: LineCounter;
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

export function parseYamlSource(file: string, text: string): ParsedSource {
  const lines = new LineCounter();
  const sink = new DiagnosticSink(file, (offset) => lines.linePos(offset));
  if (text.length > MAX_SOURCE_BYTES) {
    // Count lines anyway so the position is right.
    lines.addNewLine(0);
    sink.error(0, `file is ${text.length} bytes; policy files are limited to ${MAX_SOURCE_BYTES} bytes`);
    return { text, sink, documents: [], lines };
  }
  const docs = parseAllDocuments(text, {
    lineCounter: lines,
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
  scanPasteArtifacts(text, sink, reportedLines);
  for (const doc of list) {
    for (const e of doc.errors) reportYamlError(e, text, lines, sink, reportedLines);
    for (const w of doc.warnings) {
      if (w.code === "TAG_RESOLVE_FAILED") continue; // reported below with a fix
      sink.warning(w.pos[0], w.message.split("\n")[0] ?? w.message);
    }
    checkTags(doc, text, sink, lines, reportedLines);
    const empty = doc.contents === null || (isScalar(doc.contents) && doc.contents.value === null);
    if (empty && doc.errors.length === 0) continue; // an empty document, e.g. after a trailing ---
    documents.push({ doc, start: doc.contents?.range?.[0] ?? doc.range[0] });
  }
  return { text, sink, documents, lines };
}

function reportYamlError(
  e: YAMLError,
  text: string,
  lines: LineCounter,
  sink: DiagnosticSink,
  reported: Set<number>,
): void {
  const first = e.message.split("\n")[0] ?? e.message;
  let offset = e.pos[0];
  const { line } = lines.linePos(offset);
  if (reported.has(line)) return; // the paste scan already explained this line better
  let hint = "";
  if (e.code === "BAD_INDENT" || e.code === "MISSING_CHAR" || e.code === "UNEXPECTED_TOKEN") {
    const indent = indentationHint(text, lines, offset);
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
function indentationHint(
  text: string,
  lines: LineCounter,
  offset: number,
): { message: string; offset: number } | undefined {
  const lineNo = lines.linePos(offset).line;
  const allLines = text.split("\n");
  const here = allLines[lineNo - 1];
  if (here === undefined) return undefined;
  const col = here.length - here.trimStart().length;
  for (let i = lineNo - 2; i >= 0; i--) {
    const prev = allLines[i] ?? "";
    const trimmed = prev.trim();
    if (trimmed === "" || trimmed.startsWith("#")) continue;
    const prevIndent = prev.length - prev.trimStart().length;
    // For "- key: value" the sibling keys line up with "key", two columns in.
    const keyCol = trimmed.startsWith("- ") ? prevIndent + 2 : prevIndent;
    if (col !== keyCol && Math.abs(col - keyCol) <= 2) {
      const key = here.trim().split(":")[0];
      const prevKey = trimmed.replace(/^- /, "").split(":")[0];
      return {
        message: `Check the indentation: "${key}" starts in column ${col + 1} but "${prevKey}" on line ${i + 1} starts in column ${keyCol + 1}; keys of one mapping must start in the same column.`,
        offset: (lines.lineStarts[lineNo - 1] ?? 0) + col,
      };
    }
    return undefined;
  }
  return undefined;
}

/** A YAML tag such as `!request.arguments...` is how an unquoted CEL negation gets misread. */
function checkTags(
  doc: Document.Parsed,
  text: string,
  sink: DiagnosticSink,
  lines: LineCounter,
  reported: Set<number>,
) {
  visit(doc, {
    Node(_key, node: Node) {
      const tag = node.tag;
      if (tag === undefined || CORE_TAGS.has(tag)) return;
      const offset = tagOffset(text, node);
      const { line } = lines.linePos(offset);
      if (reported.has(line)) return;
      reported.add(line);
      const lineText = lineAt(text, lines, line);
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

function lineAt(text: string, lines: LineCounter, line: number): string {
  const start = lines.lineStarts[line - 1] ?? 0;
  const end = text.indexOf("\n", start);
  return text.slice(start, end < 0 ? undefined : end);
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
function scanPasteArtifacts(text: string, sink: DiagnosticSink, reported: Set<number>): void {
  const lines = text.split("\n");
  let offset = 0;
  lines.forEach((line, i) => {
    const lineStart = offset;
    offset += line.length + 1;
    const content = stripComment(line);
    // `cel: !expr` — handled with the same fix as the tag check, but also catches it when YAML fails earlier.
    const celMatch = /^(\s*(?:-\s+)?cel\s*:\s*)!/.exec(content);
    if (celMatch) {
      sink.error(lineStart + (celMatch[1]?.length ?? 0), celTagMessage(content));
      reported.add(i + 1);
      return;
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
  });
}

/** The part of a line that is outside quoted scalars, with quoted text blanked (single-line quotes only). */
function unquotedPart(line: string): string {
  let out = "";
  let quote: string | null = null;
  for (let i = 0; i < line.length; i++) {
    const ch = line[i] as string;
    if (quote === '"') {
      if (ch === "\\") {
        i++;
        out += "  ";
      } else {
        if (ch === '"') quote = null;
        out += " ";
      }
      continue;
    }
    if (quote === "'") {
      if (ch === "'" && line[i + 1] === "'") {
        i++;
        out += "  ";
      } else {
        if (ch === "'") quote = null;
        out += " ";
      }
      continue;
    }
    // A quote opens a quoted scalar only where a value starts, not inside plain text like "it's".
    if ((ch === '"' || ch === "'") && /(^|[:[{,]|^\s*-)\s*$/.test(line.slice(0, i))) {
      quote = ch;
      out += " ";
      continue;
    }
    out += ch;
  }
  return out;
}

function stripComment(line: string): string {
  // A '#' starts a comment only at the line start or after whitespace.
  const m = /(^|\s)#/.exec(unquotedPart(line));
  return m ? line.slice(0, m.index) : line;
}

/** Whether a scalar node was written as plain text (used to map CEL offsets back into the file). */
export function scalarStyle(node: Node | undefined): string | undefined {
  return isScalar(node) ? (node.type ?? undefined) : undefined;
}
