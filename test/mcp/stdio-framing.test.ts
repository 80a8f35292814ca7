import assert from "node:assert/strict";
import { PassThrough } from "node:stream";
import { describe, it } from "node:test";
import { readLines } from "../../src/mcp/stdio-framing.js";

function collect(chunks: (string | Buffer)[], maxBytes: number): Promise<{ lines: string[]; oversized: number[] }> {
  const stream = new PassThrough();
  const lines: string[] = [];
  const oversized: number[] = [];
  const done = new Promise<{ lines: string[]; oversized: number[] }>((resolve) =>
    readLines(stream, maxBytes, {
      line: (l) => lines.push(l),
      oversized: (n) => oversized.push(n),
      end: () => resolve({ lines, oversized }),
    }),
  );
  for (const c of chunks) stream.write(c);
  stream.end();
  return done;
}

describe("stdio framing", () => {
  it("splits lines across chunks, strips CR, skips blank lines, keeps a last line without newline", async () => {
    const r = await collect(['{"a":', '1}\r\n\n{"b":2}\n{"c"', ":3}"], 1000);
    assert.deepEqual(r.lines, ['{"a":1}', '{"b":2}', '{"c":3}']);
  });

  it("decodes UTF-8 characters split between chunks", async () => {
    const bytes = Buffer.from('{"s":"😀é"}\n');
    const r = await collect([bytes.subarray(0, 7), bytes.subarray(7, 9), bytes.subarray(9)], 1000);
    assert.deepEqual(r.lines, ['{"s":"😀é"}']);
  });

  it("skips an oversize line to its newline, reports it once, and carries on with the next", async () => {
    const r = await collect(["x".repeat(50), "y".repeat(60), "z\n", '{"ok":1}\n'], 100);
    assert.deepEqual(r.oversized, [111]);
    assert.deepEqual(r.lines, ['{"ok":1}']);
  });
});
