// What tools an upstream server really has, as its tools/list says. The
// gateway forwards a call only for a tool name that the server listed exactly
// (so "Delete_File", "delete_file " or a Unicode look-alike is never sent to a
// server that might be lenient about names), and validates the arguments
// against that tool's own inputSchema first.
import { RE2JS } from "@bufbuild/re2";
import { Ajv, type ValidateFunction } from "ajv";
import { Ajv2020 } from "ajv/dist/2020.js";
import type { UpstreamConnection } from "./upstream.js";

export interface ToolDefinition {
  name: string;
  inputSchema?: unknown;
  [k: string]: unknown;
}

interface Entry {
  tool: ToolDefinition;
  validate?: ((args: unknown) => string | undefined) | { error: string };
}

const re2Engine = Object.assign((pattern: string) => RE2JS.compile(pattern), { code: "re2" });
// The server's own schemas: keywords or formats we do not know are ignored (the server is the
// authority on its schema); patterns still run on RE2.
const ajvOptions = {
  strict: false,
  validateFormats: false,
  allErrors: false,
  code: { regExp: re2Engine },
} as const;
const draft07 = new Ajv(ajvOptions);
const draft2020 = new Ajv2020(ajvOptions);

const MAX_SCHEMA_CHARS = 256 * 1024;
const MAX_PAGES = 100;

export class ToolCatalog {
  private tools = new Map<string, Entry>();
  private complete = false;
  private refreshing: Promise<void> | null = null;
  private generation = 0;

  constructor(private readonly upstream: UpstreamConnection) {}

  /** The server said its list changed: everything must be fetched again. */
  invalidate(): void {
    this.tools = new Map();
    this.complete = false;
    this.generation++;
  }

  /** Records tools seen in a tools/list answer the gateway relayed. */
  remember(tools: readonly ToolDefinition[]): void {
    for (const t of tools) {
      if (typeof t?.name === "string") this.tools.set(t.name, { tool: t });
    }
  }

  /** The tool by its exact name, fetching the whole list once if it is not known yet. */
  async lookup(name: string): Promise<ToolDefinition | undefined> {
    const hit = this.tools.get(name);
    if (hit) return hit.tool;
    if (!this.complete) await this.refresh();
    return this.tools.get(name)?.tool;
  }

  /** Every tool known so far. */
  known(): ToolDefinition[] {
    return [...this.tools.values()].map((e) => e.tool);
  }

  /** Validates arguments against the tool's inputSchema; returns why they do not fit. */
  check(name: string, args: unknown): string | undefined {
    const entry = this.tools.get(name);
    if (!entry) return `tool "${name}" is not in the server's tool list`;
    if (entry.validate === undefined) entry.validate = compileInputSchema(entry.tool.inputSchema);
    if (typeof entry.validate !== "function") return entry.validate.error;
    return entry.validate(args);
  }

  /**
   * Fetches every page of tools/list (Warden's own request, not the client's).
   * If the server says its list changed while it is being fetched (some do,
   * right after initialize), it is fetched again, a few times at most.
   */
  async refresh(): Promise<void> {
    for (let attempt = 0; attempt < 3 && !this.complete; attempt++) await this.fetchOnce();
  }

  private fetchOnce(): Promise<void> {
    this.refreshing ??= (async () => {
      const generation = this.generation;
      const found: ToolDefinition[] = [];
      let cursor: string | undefined;
      for (let page = 0; page < MAX_PAGES; page++) {
        const r = await this.upstream.internalRequest("tools/list", cursor === undefined ? undefined : { cursor });
        const result = r.result as { tools?: ToolDefinition[]; nextCursor?: string } | undefined;
        if (r.error || !result || !Array.isArray(result.tools)) return; // leave incomplete: unknown tools stay unknown
        found.push(...result.tools);
        if (typeof result.nextCursor !== "string" || result.nextCursor === "") break;
        cursor = result.nextCursor;
      }
      if (generation !== this.generation) return; // changed again meanwhile
      this.tools = new Map();
      this.remember(found);
      this.complete = true;
    })().finally(() => {
      this.refreshing = null;
    });
    return this.refreshing;
  }
}

function compileInputSchema(schema: unknown): ((args: unknown) => string | undefined) | { error: string } {
  if (schema === undefined) return () => undefined; // no schema: nothing to check against
  if (typeof schema !== "object" || schema === null) {
    return {
      error: "the server's inputSchema for this tool is not a JSON Schema object, so its arguments cannot be checked",
    };
  }
  let text: string;
  try {
    text = JSON.stringify(schema);
  } catch {
    return { error: "the server's inputSchema cannot be read" };
  }
  if (text.length > MAX_SCHEMA_CHARS) {
    return {
      error: `the server's inputSchema is larger than ${MAX_SCHEMA_CHARS} characters, so its arguments are not checked and the call is refused`,
    };
  }
  const dialect = (schema as { $schema?: unknown }).$schema;
  const ajv = typeof dialect === "string" && dialect.includes("2020-12") ? draft2020 : draft07;
  let validate: ValidateFunction;
  try {
    // Copy without $schema/$id so one server's ids cannot clash with another's in the shared compiler.
    const { $schema: _s, $id: _i, ...rest } = schema as Record<string, unknown>;
    validate = ajv.compile(rest);
  } catch (err) {
    return { error: `the server's inputSchema cannot be compiled (${(err as Error).message}), so the call is refused` };
  }
  return (args) => {
    try {
      if (validate(args)) return undefined;
    } catch (err) {
      return `arguments could not be checked: ${(err as Error).message}`;
    }
    const e = validate.errors?.[0];
    if (!e) return "arguments do not match the tool's inputSchema";
    return `arguments${e.instancePath} ${e.message ?? "do not match"} (the tool's inputSchema)`;
  };
}
