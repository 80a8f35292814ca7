// Protocol passthrough checks against @modelcontextprotocol/server-everything,
// shared by the stdio (`warden run`) and HTTP (`warden serve`) suites: the same
// official SDK client, the same expectations, whatever carries the session.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { join } from "node:path";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import {
  type CreateMessageRequest,
  CreateMessageRequestSchema,
  ElicitRequestSchema,
  ListRootsRequestSchema,
  type LoggingMessageNotification,
  LoggingMessageNotificationSchema,
  type Progress,
  ToolListChangedNotificationSchema,
} from "@modelcontextprotocol/sdk/types.js";
import { type AuditRecord, ROOT, SERVERS, textOf, waitFor } from "./gateway.js";

/** Preload that binds a server's listen() to 127.0.0.1 and prints the port. */
const LISTEN_LOOPBACK = join(ROOT, "test", "fixtures", "listen-loopback.cjs");

export const SAMPLED_TEXT = "sampled by the e2e client";
export const ROOT_URI = "file:///warden-e2e-root";

export interface EverythingSession {
  client: Client;
  /** sampling/createMessage requests the client answered. */
  sampled: CreateMessageRequest["params"][];
  /** notifications/message the client received. */
  logs: LoggingMessageNotification["params"][];
  /** notifications/tools/list_changed received. */
  toolListChanges: number;
  /** Whether the client declared roots (only a per-client upstream can use them). */
  roots: boolean;
  /** The audit records so far. */
  records(): Promise<AuditRecord[]>;
  /** The server name policies see. */
  server: string;
}

/** A client with sampling, elicitation (and optionally roots) handlers, not yet connected. */
export function everythingClient(
  o: { roots: boolean; server: string; records(): Promise<AuditRecord[]> },
  name = "warden-e2e",
): EverythingSession {
  const capabilities: Record<string, object> = { sampling: {}, elicitation: {} };
  if (o.roots) capabilities.roots = { listChanged: true };
  const client = new Client({ name, version: "1.0.0" }, { capabilities });
  const s: EverythingSession = {
    client,
    sampled: [],
    logs: [],
    toolListChanges: 0,
    roots: o.roots,
    records: o.records,
    server: o.server,
  };
  client.setRequestHandler(CreateMessageRequestSchema, async (req) => {
    s.sampled.push(req.params);
    return { model: "e2e-model", role: "assistant", content: { type: "text", text: SAMPLED_TEXT } };
  });
  client.setRequestHandler(ElicitRequestSchema, async () => ({
    action: "accept",
    content: { name: "Ada Lovelace", check: true },
  }));
  if (o.roots) {
    client.setRequestHandler(ListRootsRequestSchema, async () => ({ roots: [{ uri: ROOT_URI, name: "e2e root" }] }));
  }
  client.setNotificationHandler(LoggingMessageNotificationSchema, (n) => {
    s.logs.push(n.params);
  });
  client.setNotificationHandler(ToolListChangedNotificationSchema, () => {
    s.toolListChanges++;
  });
  return s;
}

type Check = (s: EverythingSession) => Promise<void>;

/**
 * The very first tools/call of a fresh session, before any tools/list: Warden
 * fetches the catalog itself, while server-everything announces
 * tools/list_changed (it registers client-dependent tools after initialized).
 */
export async function checkFirstCall({ client }: EverythingSession): Promise<void> {
  const r = await client.callTool({ name: "echo", arguments: { message: "first" } });
  assert.equal(textOf(r), "Echo: first");
}

export const everythingChecks: [string, Check][] = [
  [
    "initialize passes the server's identity and capabilities through",
    async ({ client }) => {
      const caps = client.getServerCapabilities();
      assert.ok(caps?.tools, "tools capability");
      assert.ok(caps?.resources && caps.prompts && caps.logging, `capabilities: ${JSON.stringify(caps)}`);
      assert.ok(caps.completions, `completions capability: ${JSON.stringify(caps)}`);
      assert.equal(client.getServerVersion()?.name, "mcp-servers/everything");
    },
  ],
  [
    "resources: list, templates and read",
    async ({ client }) => {
      const { resources } = await client.listResources();
      assert.ok(resources.length > 0, "resources listed");
      const first = resources[0];
      assert.ok(first);
      const read = await client.readResource({ uri: first.uri });
      assert.equal(read.contents[0]?.uri, first.uri);
      assert.ok(JSON.stringify(read.contents[0]).length > 50, "resource content");
      const { resourceTemplates } = await client.listResourceTemplates();
      assert.ok(resourceTemplates.some((t) => t.uriTemplate === "demo://resource/dynamic/text/{resourceId}"));
      const dynamic = await client.readResource({ uri: "demo://resource/dynamic/text/7" });
      assert.match(JSON.stringify(dynamic.contents), /7/);
    },
  ],
  [
    "prompts: list and get with arguments",
    async ({ client }) => {
      const { prompts } = await client.listPrompts();
      const names = prompts.map((p) => p.name);
      assert.ok(names.includes("simple-prompt") && names.includes("args-prompt"), names.join(", "));
      const got = await client.getPrompt({ name: "args-prompt", arguments: { city: "Lisbon" } });
      assert.match(JSON.stringify(got.messages), /Lisbon/);
    },
  ],
  [
    "completion/complete",
    async ({ client }) => {
      const r = await client.complete({
        ref: { type: "ref/prompt", name: "completable-prompt" },
        argument: { name: "department", value: "Eng" },
      });
      assert.deepEqual(r.completion.values, ["Engineering"]);
    },
  ],
  [
    "ping",
    async ({ client }) => {
      assert.deepEqual(await client.ping(), {});
    },
  ],
  [
    "logging/setLevel and log messages from the server",
    async (s) => {
      await s.client.setLoggingLevel("debug");
      const before = s.logs.length;
      const on = await s.client.callTool({ name: "toggle-simulated-logging", arguments: {} });
      assert.notEqual(on.isError, true, textOf(on));
      try {
        await waitFor("a notifications/message", () => (s.logs.length > before ? true : undefined), 5000);
        assert.match(String(s.logs.at(-1)?.data), /message/);
      } finally {
        await s.client.callTool({ name: "toggle-simulated-logging", arguments: {} });
      }
    },
  ],
  [
    "progress notifications of a long-running operation",
    async ({ client }) => {
      const progress: Progress[] = [];
      const r = await client.callTool(
        { name: "trigger-long-running-operation", arguments: { duration: 0.3, steps: 3 } },
        undefined,
        { onprogress: (p) => progress.push(p) },
      );
      assert.notEqual(r.isError, true, textOf(r));
      assert.match(textOf(r), /Long running operation completed/);
      // server-everything itself often loses the last one (the result overtakes it, also without
      // Warden in between), so: the first two, in order, each with the total.
      assert.ok(progress.length >= 2, `progress: ${JSON.stringify(progress)}`);
      assert.deepEqual(
        progress.slice(0, 2).map((p) => [p.progress, p.total]),
        [
          [1, 3],
          [2, 3],
        ],
      );
    },
  ],
  [
    "sampling: the server's sampling/createMessage reaches the client and the answer goes back",
    async (s) => {
      const before = s.sampled.length;
      const r = await s.client.callTool({
        name: "trigger-sampling-request",
        arguments: { prompt: "hello through warden", maxTokens: 5 },
      });
      assert.notEqual(r.isError, true, textOf(r));
      assert.match(textOf(r), new RegExp(SAMPLED_TEXT));
      assert.equal(s.sampled.length, before + 1);
      assert.match(JSON.stringify(s.sampled.at(-1)?.messages), /hello through warden/);
    },
  ],
  [
    "elicitation: the server's elicitation/create reaches the client and the answer goes back",
    async ({ client }) => {
      const r = await client.callTool({ name: "trigger-elicitation-request", arguments: {} });
      assert.notEqual(r.isError, true, textOf(r));
      assert.match(textOf(r), /Name: Ada Lovelace/);
    },
  ],
  [
    "roots: the server's roots/list reaches the client (per-client upstream only)",
    async (s) => {
      if (!s.roots) return; // a shared upstream is initialized by Warden, which declares no roots
      const r = await s.client.callTool({ name: "get-roots-list", arguments: {} });
      assert.notEqual(r.isError, true, textOf(r));
      assert.match(textOf(r), new RegExp(ROOT_URI));
    },
  ],
];

/**
 * Cancellation: the client aborts a long call; Warden passes notifications/cancelled
 * on, the client gets no answer, the outcome record says "cancelled", and the
 * session keeps working.
 */
export async function checkCancellation(s: EverythingSession): Promise<void> {
  const controller = new AbortController();
  let progressed = 0;
  const call = s.client.callTool(
    { name: "trigger-long-running-operation", arguments: { duration: 6, steps: 30 } },
    undefined,
    {
      signal: controller.signal,
      onprogress: () => {
        progressed++;
        controller.abort("e2e cancels");
      },
    },
  );
  await assert.rejects(call, (err: unknown) => String(err).includes("e2e cancels") || /abort/i.test(String(err)));
  assert.equal(progressed, 1);
  assert.deepEqual(await s.client.ping(), {}, "the session works after a cancellation");
  const r = await s.client.callTool({ name: "echo", arguments: { message: "after cancel" } });
  assert.match(textOf(r), /after cancel/);
  const outcome = await waitFor(
    "an outcome record with status cancelled",
    async () =>
      (await s.records()).find(
        (rec) =>
          rec.type === "outcome" && rec.tool === "trigger-long-running-operation" && rec.detail?.status === "cancelled",
      ),
    3000,
  );
  assert.equal(outcome.server, s.server);
}

/** server-everything in its own Streamable HTTP mode, as a remote MCP server. */
export interface EverythingHttp {
  url: string;
  stop(): Promise<void>;
}

/**
 * Starts server-everything's streamableHttp mode, forced onto 127.0.0.1 by the
 * listen-loopback preload (it listens on every interface by itself), on a port
 * the kernel picks. stop() kills it and waits for the exit.
 */
export async function startEverythingHttp(): Promise<EverythingHttp> {
  const child = spawn(process.execPath, ["-r", LISTEN_LOOPBACK, SERVERS.everything, "streamableHttp"], {
    env: { ...process.env, PORT: "0" },
    stdio: ["ignore", "ignore", "pipe"],
  });
  const port = await new Promise<string>((resolve, reject) => {
    let err = "";
    const timer = setTimeout(() => reject(new Error(`server-everything did not start: ${err}`)), 8000);
    child.once("exit", (code) => reject(new Error(`server-everything exited with ${code}: ${err}`)));
    child.stderr?.on("data", (d: Buffer) => {
      err += d.toString();
      const m = /LISTEN-LOOPBACK 127\.0\.0\.1:(\d+)\n/.exec(err);
      if (m?.[1]) {
        clearTimeout(timer);
        resolve(m[1]);
      }
    });
  });
  return {
    url: `http://127.0.0.1:${port}/mcp`,
    stop: async () => {
      if (child.exitCode !== null || child.signalCode !== null) return;
      const exited = new Promise((r) => child.once("exit", r));
      child.kill("SIGKILL");
      await exited;
    },
  };
}

/**
 * Starts a 20-second trigger-long-running-operation and resolves once its first progress
 * notification arrived (the server is busy with it), with the call's pending result.
 */
export async function longCallUnderWay(client: Client): Promise<{ call: Promise<unknown> }> {
  let progressed = false;
  const call = client.callTool(
    { name: "trigger-long-running-operation", arguments: { duration: 20, steps: 100 } },
    undefined,
    {
      onprogress: () => {
        progressed = true;
      },
    },
  );
  call.catch(() => {}); // the caller asserts how it ends
  await waitFor("progress from the long-running call", () => (progressed ? true : undefined));
  return { call };
}
