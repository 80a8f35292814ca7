import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { CanonicalJsonError, canonicalDigest, canonicalJson } from "../../src/encoding/canonical-json.js";

describe("canonicalJson (RFC 8785)", () => {
  it("sorts members by UTF-16 code units, recursively, with no whitespace", () => {
    assert.equal(
      canonicalJson({ b: 1, a: { d: [3, { z: 1, y: 2 }], c: null } }),
      '{"a":{"c":null,"d":[3,{"y":2,"z":1}]},"b":1}',
    );
    // U+20AC (€) sorts after "\r" and "1" and before U+1F600 (a surrogate pair starting 0xD83D) — RFC 8785 §3.2.3.
    assert.equal(
      canonicalJson({ "\u20ac": 1, "\r": 2, "1": 3, "\ud83d\ude00": 4, "\u0080": 5, "\u00f6": 6 }),
      '{"\\r":2,"1":3,"\u0080":5,"ö":6,"€":1,"😀":4}',
    );
  });

  it("serialises numbers as ECMAScript does (RFC 8785 §3.2.2.3 examples)", () => {
    const cases: [number, string][] = [
      [0, "0"],
      [-0, "0"],
      [1e21, "1e+21"],
      [1e-7, "1e-7"],
      [0.000001, "0.000001"],
      [4.5, "4.5"],
      [2e-3, "0.002"],
      [333333333.3333333, "333333333.3333333"],
      [9007199254740992, "9007199254740992"],
      [-1.7976931348623157e308, "-1.7976931348623157e+308"],
    ];
    for (const [n, s] of cases) assert.equal(canonicalJson(n), s, String(n));
  });

  it("escapes strings minimally and keeps non-ASCII as is", () => {
    assert.equal(canonicalJson('\u0000\b\t\n\f\r"\\/é\u001f'), '"\\u0000\\b\\t\\n\\f\\r\\"\\\\/é\\u001f"');
  });

  it("rejects what I-JSON cannot carry", () => {
    assert.throws(() => canonicalJson(Number.NaN), CanonicalJsonError);
    assert.throws(() => canonicalJson({ a: Number.POSITIVE_INFINITY }), /\/a/);
    assert.throws(() => canonicalJson("\ud800"), /lone UTF-16 surrogate/);
    assert.throws(() => canonicalJson({ k: () => 1 }), CanonicalJsonError);
    assert.throws(() => canonicalJson(new Date(0)), /plain objects/);
    assert.throws(() => canonicalJson(1n), CanonicalJsonError);
  });

  it("digests equal values equally regardless of key order", () => {
    assert.equal(canonicalDigest({ a: 1, b: [true] }), canonicalDigest({ b: [true], a: 1 }));
    assert.notEqual(canonicalDigest({ a: 1 }), canonicalDigest({ a: 2 }));
    assert.match(canonicalDigest({}), /^sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a$/);
  });
});
