// JSON-RPC 2.0 as MCP uses it: message shapes, strict parsing and the error
// codes Warden answers with. Strict because a message that two parsers read
// differently is a way past policy: duplicate keys are refused, sizes capped,
// and what Warden forwards is always its own serialisation of what it decided
// on, never the bytes it received.

export type RequestId = string | number;

export interface JsonRpcRequest {
  jsonrpc: "2.0";
  id: RequestId;
  method: string;
  params?: Record<string, unknown>;
}

export interface JsonRpcNotification {
  jsonrpc: "2.0";
  method: string;
  params?: Record<string, unknown>;
}

export interface JsonRpcError {
  code: number;
  message: string;
  data?: unknown;
}

export interface JsonRpcResponse {
  jsonrpc: "2.0";
  id: RequestId | null;
  result?: unknown;
  error?: JsonRpcError;
}

export type JsonRpcMessage = JsonRpcRequest | JsonRpcNotification | JsonRpcResponse;

export const ErrorCode = {
  ParseError: -32700,
  InvalidRequest: -32600,
  MethodNotFound: -32601,
  InvalidParams: -32602,
  InternalError: -32603,
  /** Server error range: the upstream is unavailable, crashed, or timed out. */
  UpstreamUnavailable: -32001,
  /** Server error range: the request was too large. */
  RequestTooLarge: -32002,
} as const;

export const DEFAULT_MAX_MESSAGE_BYTES = 4 * 1024 * 1024;

export function isRequest(m: JsonRpcMessage): m is JsonRpcRequest {
  return "method" in m && "id" in m && m.id !== undefined;
}

export function isNotification(m: JsonRpcMessage): m is JsonRpcNotification {
  return "method" in m && !("id" in m && m.id !== undefined);
}

export function isResponse(m: JsonRpcMessage): m is JsonRpcResponse {
  return !("method" in m) && "id" in m;
}

export function errorResponse(id: RequestId | null, code: number, message: string, data?: unknown): JsonRpcResponse {
  const error: JsonRpcError = { code, message };
  if (data !== undefined) error.data = data;
  return { jsonrpc: "2.0", id, error };
}

export type Parsed =
  | { ok: true; messages: JsonRpcMessage[]; batch: boolean }
  /** `value` is the parsed JSON when the text parsed, for naming the refused call in the audit log. */
  | { ok: false; response: JsonRpcResponse; why: string; value?: unknown };

/**
 * Parses one frame (a stdio line or an HTTP body): a message or a batch.
 * Every element is checked for JSON-RPC shape; an invalid element of a batch
 * is returned as its own error response by the caller (see checkMessage).
 */
export function parseFrame(text: string, maxBytes: number): Parsed {
  if (text.length > maxBytes) {
    return {
      ok: false,
      why: "too large",
      response: errorResponse(null, ErrorCode.RequestTooLarge, `message is larger than ${maxBytes} bytes`),
    };
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    return {
      ok: false,
      why: "malformed JSON",
      response: errorResponse(null, ErrorCode.ParseError, `parse error: ${(err as Error).message}`),
    };
  }
  const dup = findDuplicateKey(text);
  if (dup !== undefined) {
    return {
      ok: false,
      why: "duplicate key",
      value,
      response: errorResponse(
        idOf(value),
        ErrorCode.InvalidRequest,
        `duplicate key "${dup}" in the message: refused, because parsers disagree on which one counts`,
      ),
    };
  }
  const unreadable = findUnrepresentable(value);
  if (unreadable !== undefined) {
    return {
      ok: false,
      why: unreadable,
      value,
      response: errorResponse(
        idOf(value),
        ErrorCode.InvalidRequest,
        `${unreadable}: refused, because it cannot be passed on or recorded as it was sent`,
      ),
    };
  }
  if (Array.isArray(value)) {
    if (value.length === 0) {
      return { ok: false, why: "empty batch", response: errorResponse(null, ErrorCode.InvalidRequest, "empty batch") };
    }
    return { ok: true, messages: value as JsonRpcMessage[], batch: true };
  }
  return { ok: true, messages: [value as JsonRpcMessage], batch: false };
}

/** The server-independent part of what a refused frame asked for: its method, and the tool of a tools/call. */
export function refusedSubject(value: unknown): { method?: string; tool?: string } {
  const m = Array.isArray(value) ? value[0] : value;
  if (typeof m !== "object" || m === null) return {};
  const { method, params } = m as { method?: unknown; params?: { name?: unknown } };
  const out: { method?: string; tool?: string } = {};
  if (typeof method === "string") out.method = method.slice(0, 200);
  if (method === "tools/call" && typeof params?.name === "string") out.tool = params.name.slice(0, 200);
  return out;
}

/** The id of a message if it has a usable one, for error replies. */
export function idOf(value: unknown): RequestId | null {
  if (typeof value !== "object" || value === null || Array.isArray(value)) return null;
  const id = (value as { id?: unknown }).id;
  return isValidId(id) ? id : null;
}

/** Checks one message's JSON-RPC 2.0 shape; returns why it is not usable. */
export function checkMessage(m: unknown): string | undefined {
  if (typeof m !== "object" || m === null || Array.isArray(m)) return "a message must be a JSON object";
  const o = m as Record<string, unknown>;
  if (o.jsonrpc !== "2.0") return 'jsonrpc must be "2.0"';
  if ("method" in o) {
    if (typeof o.method !== "string" || o.method === "") return "method must be a non-empty string";
    if ("id" in o && !isValidId(o.id)) return "id must be a string or a number";
    if ("params" in o && (typeof o.params !== "object" || o.params === null || Array.isArray(o.params))) {
      return "params must be an object";
    }
    return undefined;
  }
  if (!("id" in o)) return "a message needs a method or an id";
  if (o.id !== null && !isValidId(o.id)) return "id must be a string or a number";
  const hasResult = "result" in o;
  const hasError = "error" in o;
  if (hasResult === hasError) return "a response has exactly one of result and error";
  if (hasError) {
    const e = o.error as Record<string, unknown> | null;
    if (typeof e !== "object" || e === null || typeof e.code !== "number" || typeof e.message !== "string") {
      return "error must have a numeric code and a message";
    }
  }
  return undefined;
}

/** Numeric ids must be exact: an id that loses precision in JSON.parse would come back as another id. */
function isValidId(id: unknown): id is RequestId {
  return typeof id === "string" || (typeof id === "number" && Number.isSafeInteger(id));
}

/**
 * A value JSON.parse accepted but Warden cannot pass on faithfully: a number
 * too large for a double (1e400 parses as Infinity and would be forwarded as
 * null), or a string with a lone UTF-16 surrogate (not valid Unicode, and not
 * representable in the audit log's canonical JSON).
 */
export function findUnrepresentable(value: unknown, depth = 0): string | undefined {
  switch (typeof value) {
    case "number":
      return Number.isFinite(value) ? undefined : "a number out of range";
    case "string":
      return (value as unknown as { isWellFormed(): boolean }).isWellFormed()
        ? undefined
        : "a string that is not valid Unicode (a lone surrogate)";
    case "object": {
      if (value === null) return undefined;
      if (depth > 200) return "nesting deeper than 200 levels";
      if (Array.isArray(value)) {
        for (const v of value) {
          const r = findUnrepresentable(v, depth + 1);
          if (r) return r;
        }
        return undefined;
      }
      for (const k in value) {
        if (!(k as unknown as { isWellFormed(): boolean }).isWellFormed())
          return "a key that is not valid Unicode (a lone surrogate)";
        const r = findUnrepresentable((value as Record<string, unknown>)[k], depth + 1);
        if (r) return r;
      }
      return undefined;
    }
    default:
      return undefined;
  }
}

/**
 * Finds a key that occurs twice in one JSON object, scanning the text once.
 * The text is known to be valid JSON (JSON.parse accepted it), which keeps
 * the scanner simple: strings, and object/array nesting.
 */
export function findDuplicateKey(text: string): string | undefined {
  // Fast path: a message without repeated `":` key patterns cannot have duplicates;
  // but keys are only known by scanning, so scan — it is linear and allocation-light.
  const stack: (Set<string> | null)[] = [];
  let expectKey = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === 0x22 /* " */) {
      const start = i + 1;
      let escaped = false;
      i++;
      for (; i < text.length; i++) {
        const d = text.charCodeAt(i);
        if (d === 0x5c /* \ */) {
          escaped = true;
          i++;
        } else if (d === 0x22) break;
      }
      if (expectKey) {
        const raw = text.slice(start, i);
        const key = escaped ? (JSON.parse(`"${raw}"`) as string) : raw;
        const keys = stack[stack.length - 1];
        if (keys) {
          if (keys.has(key)) return key;
          keys.add(key);
        }
        expectKey = false;
      }
    } else if (c === 0x7b /* { */) {
      stack.push(new Set());
      expectKey = true;
    } else if (c === 0x5b /* [ */) {
      stack.push(null);
    } else if (c === 0x7d /* } */ || c === 0x5d /* ] */) {
      stack.pop();
    } else if (c === 0x2c /* , */) {
      expectKey = stack[stack.length - 1] !== null && stack.length > 0;
    }
  }
  return undefined;
}
