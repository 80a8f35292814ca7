// The server side of an upstream connection, driven by the test: it records what
// Warden sends and emits what the test tells it to. A scripted peer, not a mock
// of Warden's own code.
import type { JsonRpcMessage } from "../../src/mcp/jsonrpc.js";
import type { Transport } from "../../src/mcp/upstream.js";

export class ScriptedServer implements Transport {
  onmessage?: (m: JsonRpcMessage) => void;
  onclose?: (reason: string) => void;
  readonly received: JsonRpcMessage[] = [];
  async start() {}
  async close() {
    this.onclose?.("closed");
  }
  send(m: JsonRpcMessage) {
    this.received.push(m);
  }
  emit(m: JsonRpcMessage) {
    this.onmessage?.(m);
  }
}
