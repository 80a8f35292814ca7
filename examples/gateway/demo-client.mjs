// A small MCP client for the example gateway (npm start): it connects with the
// official MCP SDK over Streamable HTTP, lists what the demo agent may see, and
// makes a few calls — one allowed, one denied by policy, one to a tool that
// does not exist. Usage: npm run demo [-- http://127.0.0.1:8080]
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";

const base = process.argv[2] ?? "http://127.0.0.1:8080";
const client = new Client({ name: "warden-demo-client", version: "1.0.0" });
try {
  await client.connect(new StreamableHTTPClientTransport(new URL(`${base}/mcp`)));
} catch (err) {
  console.error(`cannot connect to ${base}/mcp (${err.message}); start the gateway first: npm start`);
  process.exit(1);
}
const show = (label, result) => {
  const text = result.content?.map((c) => c.text ?? `[${c.type}]`).join(" ") ?? JSON.stringify(result);
  console.log(`${label}\n  ${result.isError ? "REFUSED" : "ok"}: ${text.replaceAll("\n", " ").slice(0, 160)}`);
};
const { tools } = await client.listTools();
console.log(
  `tools the demo agent can see through /mcp (${tools.length}):\n  ${tools.map((t) => t.name).join("\n  ")}\n`,
);
show(
  "filesystem__read_text_file README.md",
  await client.callTool({ name: "filesystem__read_text_file", arguments: { path: "README.md" } }),
);
show(
  "filesystem__write_file notes/demo.md (allowed: notes/*.md, rate limited)",
  await client.callTool({
    name: "filesystem__write_file",
    arguments: { path: "notes/demo.md", content: `# Demo\n\nWritten through Warden at ${new Date().toISOString()}.\n` },
  }),
);
show(
  "filesystem__write_file ../escape.txt (denied by policy)",
  await client.callTool({ name: "filesystem__write_file", arguments: { path: "../escape.txt", content: "no" } }),
);
show(
  "filesystem__delete_everything (does not exist)",
  await client.callTool({ name: "filesystem__delete_everything", arguments: {} }),
);
console.log(
  `memory__delete_entities needs a human: approve or deny it within 30 s at ${base}/approvals
  (sign in with wk_demo_approver_change_me), or: node dist/src/cli/main.js approvals list --data-dir .warden`,
);
show(
  "memory__delete_entities (held for approval)",
  await client.callTool({ name: "memory__delete_entities", arguments: { entityNames: ["x"] } }),
);
await client.close();
console.log("\nEvery decision above is in the audit log: node dist/src/cli/main.js audit tail -n 20");
