import assert from "node:assert/strict";
import { describe, it } from "node:test";
import fc from "fast-check";
import { checkMessage, ErrorCode, findDuplicateKey, parseFrame } from "../../src/mcp/jsonrpc.js";

describe("findDuplicateKey", () => {
  it("finds a key repeated in one object, at any depth, also when written with escapes", () => {
    assert.equal(findDuplicateKey('{"a":1,"a":2}'), "a");
    assert.equal(findDuplicateKey('{"p":{"name":"x","name":"y"}}'), "name");
    assert.equal(findDuplicateKey('{"p":[{"k":1},{"k":2,"k":3}]}'), "k");
    assert.equal(findDuplicateKey('{"name":1,"na\\u006de":2}'), "name");
    assert.equal(findDuplicateKey('{"a\\"b":1,"a\\"b":2}'), 'a"b');
  });

  it("does not confuse strings, values, or the same key in sibling objects with duplicates", () => {
    for (const ok of [
      '{"a":"a","b":"a"}',
      '{"a":{"a":1},"b":{"a":2}}',
      '[{"a":1},{"a":2}]',
      '{"s":"{\\"a\\":1,\\"a\\":2}"}',
      '{"a":[1,"a",{"b":"a"}]}',
      "[]",
      '"x"',
      "1",
    ]) {
      assert.equal(findDuplicateKey(ok), undefined, ok);
    }
  });

  it("agrees with a reference on random JSON (property)", () => {
    const key = fc.constantFrom("a", "b", "name", "é", 'q"', "\\", "\u2028");
    const value: fc.Arbitrary<unknown> = fc.letrec((tie) => ({
      v: fc.oneof(
        { depthSize: "small" },
        fc.integer(),
        fc.string({ maxLength: 4 }),
        fc.array(tie("v"), { maxLength: 3 }),
        tie("o"),
      ),
      o: fc.array(fc.tuple(key, tie("v")), { maxLength: 4 }),
    })).v;
    // Objects are written as key/value lists, so duplicates can be produced on purpose.
    const write = (v: unknown): string => {
      if (Array.isArray(v) && v.every((e) => Array.isArray(e) && e.length === 2 && typeof e[0] === "string")) {
        return `{${(v as [string, unknown][]).map(([k, x]) => `${JSON.stringify(k)}:${write(x)}`).join(",")}}`;
      }
      if (Array.isArray(v)) return `[${v.map(write).join(",")}]`;
      return JSON.stringify(v);
    };
    const hasDup = (v: unknown): boolean => {
      if (Array.isArray(v) && v.every((e) => Array.isArray(e) && e.length === 2 && typeof e[0] === "string")) {
        const keys = (v as [string, unknown][]).map(([k]) => k);
        return new Set(keys).size !== keys.length || (v as [string, unknown][]).some(([, x]) => hasDup(x));
      }
      return Array.isArray(v) && v.some(hasDup);
    };
    fc.assert(
      fc.property(value, (v) => {
        assert.equal(findDuplicateKey(write(v)) !== undefined, hasDup(v), write(v));
      }),
      { numRuns: 500 },
    );
  });
});

describe("parseFrame and checkMessage", () => {
  it("refuses oversize frames, bad JSON, duplicate keys and empty batches with the right error codes", () => {
    const big = parseFrame(`{"jsonrpc":"2.0","id":1,"method":"x","params":{"s":"${"a".repeat(200)}"}}`, 100);
    assert.ok(!big.ok && big.response.error?.code === ErrorCode.RequestTooLarge);
    const bad = parseFrame("{nope", 1000);
    assert.ok(!bad.ok && bad.response.error?.code === ErrorCode.ParseError && bad.response.id === null);
    const dup = parseFrame('{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"a","name":"b"}}', 1000);
    assert.ok(!dup.ok && dup.response.error?.code === ErrorCode.InvalidRequest && dup.response.id === 7);
    assert.match(!dup.ok ? (dup.response.error?.message ?? "") : "", /duplicate key "name"/);
    assert.ok(!parseFrame("[]", 1000).ok);
    const batch = parseFrame('[{"jsonrpc":"2.0","method":"a"},{"jsonrpc":"2.0","id":1,"method":"b"}]', 1000);
    assert.ok(batch.ok && batch.batch && batch.messages.length === 2);
  });

  it("checks JSON-RPC 2.0 shape", () => {
    assert.equal(checkMessage({ jsonrpc: "2.0", id: 1, method: "m" }), undefined);
    assert.equal(checkMessage({ jsonrpc: "2.0", method: "n", params: {} }), undefined);
    assert.equal(checkMessage({ jsonrpc: "2.0", id: "r", result: {} }), undefined);
    assert.equal(checkMessage({ jsonrpc: "2.0", id: null, error: { code: 1, message: "m" } }), undefined);
    for (const bad of [
      null,
      [],
      { jsonrpc: "1.0", id: 1, method: "m" },
      { jsonrpc: "2.0", id: 1, method: "" },
      { jsonrpc: "2.0", id: 1, method: 5 },
      { jsonrpc: "2.0", id: {}, method: "m" },
      { jsonrpc: "2.0", id: true, method: "m" },
      { jsonrpc: "2.0", id: 1, method: "m", params: [1] },
      { jsonrpc: "2.0", id: 1 },
      { jsonrpc: "2.0", id: 1, result: 1, error: { code: 1, message: "x" } },
      { jsonrpc: "2.0", id: 1, error: { message: "x" } },
    ]) {
      assert.notEqual(checkMessage(bad), undefined, JSON.stringify(bad));
    }
  });
});
