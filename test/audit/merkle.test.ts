// Known-answer tests for the RFC 6962 tree. The vectors are the published ones of
// transparency-dev/merkle (rfc6962/rfc6962_test.go and proof/verify_test.go, which
// carry over Certificate Transparency's): eight leaves, the roots of the trees of
// size 1..8, and inclusion and consistency proofs between them. Only the data is
// copied; the code here is ours.
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { describe, it } from "node:test";
import fc from "fast-check";
import {
  CompactRange,
  consistencyProof,
  EMPTY_ROOT,
  hashChildren,
  hashLeaf,
  inclusionProof,
  LeafHasher,
  type LeafSource,
  rootFromInclusionProof,
  subtreeHash,
  verifyConsistency,
  verifyInclusion,
} from "../../src/audit/merkle.js";

const h = (hex: string) => Buffer.from(hex, "hex");
const hexes = (bs: Buffer[]) => bs.map((b) => b.toString("hex"));

// transparency-dev/merkle proof/verify_test.go: leaves, roots[size-1].
const LEAVES = ["", "00", "10", "2021", "3031", "40414243", "5051525354555657", "606162636465666768696a6b6c6d6e6f"].map(
  h,
);
const ROOTS = [
  "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
  "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
  "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
  "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
  "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
  "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
  "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
  "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
].map(h);

// {leaf (1-based), size, proof}
const INCLUSION: [number, number, string[]][] = [
  [1, 1, []],
  [
    1,
    8,
    [
      "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
      "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
      "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
    ],
  ],
  [
    6,
    8,
    [
      "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
      "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
      "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    ],
  ],
  [3, 3, ["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"]],
  [
    2,
    5,
    [
      "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
      "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
      "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
    ],
  ],
];

// {size1, size2, proof}
const CONSISTENCY: [number, number, string[]][] = [
  [1, 1, []],
  [
    1,
    8,
    [
      "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
      "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
      "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
    ],
  ],
  [
    6,
    8,
    [
      "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
      "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
      "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    ],
  ],
  [
    2,
    5,
    [
      "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
      "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
    ],
  ],
  [
    6,
    7,
    [
      "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
      "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
      "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    ],
  ],
];

const leafHashes = LEAVES.map(hashLeaf);
const source: LeafSource = (i) => leafHashes[i] as Buffer;
const flip = (b: Buffer, bit: number) => {
  const c = Buffer.from(b);
  c[0] = (c[0] as number) ^ (1 << bit);
  return c;
};

describe("RFC 6962 hashing (transparency-dev/merkle rfc6962_test.go vectors)", () => {
  it("hashes the empty tree, leaves and nodes", () => {
    assert.equal(EMPTY_ROOT.toString("hex"), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    assert.equal(
      hashLeaf(Buffer.alloc(0)).toString("hex"),
      "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    );
    assert.equal(
      hashLeaf(Buffer.from("L123456")).toString("hex"),
      "395aa064aa4c29f7010acfe3f25db9485bbd4b91897b6ad7ad547639252b4d56",
    );
    assert.equal(
      hashChildren(Buffer.from("N123"), Buffer.from("N456")).toString("hex"),
      "aa217fe888e47007fa15edab33c2b492a722cb106c64667fc2b044444de66bbb",
    );
    const fast = new LeafHasher();
    assert.deepEqual(fast.hash(Buffer.from("L123456")), hashLeaf(Buffer.from("L123456")));
    const big = Buffer.alloc(10_000, 7);
    assert.deepEqual(fast.hash(big), hashLeaf(big));
  });

  it("computes the published roots of the trees of size 1..8, incrementally and recursively", () => {
    const range = CompactRange.empty();
    assert.deepEqual(range.root(), EMPTY_ROOT);
    for (let n = 1; n <= 8; n++) {
      range.append(leafHashes[n - 1] as Buffer);
      assert.equal(range.root().toString("hex"), ROOTS[n - 1]?.toString("hex"), `incremental root of size ${n}`);
      assert.equal(subtreeHash(source, 0, n).toString("hex"), ROOTS[n - 1]?.toString("hex"), `MTH of size ${n}`);
      const restored = CompactRange.deserialize(range.serialize());
      assert.equal(restored.size, n);
      assert.deepEqual(restored.root(), range.root());
    }
  });
});

describe("inclusion proofs (transparency-dev/merkle verify_test.go vectors)", () => {
  for (const [leaf, size, proofHex] of INCLUSION) {
    it(`leaf ${leaf - 1} in a tree of size ${size}`, () => {
      const proof = proofHex.map(h);
      const root = ROOTS[size - 1] as Buffer;
      const lh = leafHashes[leaf - 1] as Buffer;
      assert.deepEqual(hexes(inclusionProof(source, leaf - 1, size)), proofHex, "generated proof");
      assert.ok(verifyInclusion(leaf - 1, size, lh, proof, root));
      assert.deepEqual(rootFromInclusionProof(leaf - 1, size, lh, proof), root);
      // The corruptions the reference suite tries; none may verify.
      const bad: [string, number, number, Buffer, Buffer[], Buffer][] = [
        ["index - 1", leaf - 2, size, lh, proof, root],
        ["index + 1", leaf, size, lh, proof, root],
        ["index ^ 2", (leaf - 1) ^ 2, size, lh, proof, root],
        ["size * 2", leaf - 1, size * 2, lh, proof, root],
        ["size / 2", leaf - 1, Math.floor(size / 2), lh, proof, root],
        ["wrong leaf", leaf - 1, size, Buffer.from("WrongLeaf"), proof, root],
        ["empty root", leaf - 1, size, lh, proof, EMPTY_ROOT],
        ["trailing root", leaf - 1, size, lh, [...proof, root], root],
        ["preceding root", leaf - 1, size, lh, [root, ...proof], root],
        ...proof.map(
          (_, i) =>
            [
              `flipped bit in proof[${i}]`,
              leaf - 1,
              size,
              lh,
              proof.map((p, j) => (j === i ? flip(p, 3) : p)),
              root,
            ] as [string, number, number, Buffer, Buffer[], Buffer],
        ),
      ];
      if (proof.length > 0) bad.push(["removed component", leaf - 1, size, lh, proof.slice(0, -1), root]);
      for (const [desc, i, n, l, p, r] of bad) assert.equal(verifyInclusion(i, n, l, p, r), false, desc);
    });
  }
});

describe("consistency proofs (transparency-dev/merkle verify_test.go vectors)", () => {
  for (const [size1, size2, proofHex] of CONSISTENCY) {
    it(`size ${size1} → ${size2}`, () => {
      const proof = proofHex.map(h);
      const r1 = ROOTS[size1 - 1] as Buffer;
      const r2 = ROOTS[size2 - 1] as Buffer;
      assert.deepEqual(hexes(consistencyProof(source, size1, size2)), proofHex, "generated proof");
      assert.ok(verifyConsistency(size1, size2, proof, r1, r2));
      if (proof.length === 0) return;
      const bad: [string, number, number, Buffer[], Buffer, Buffer][] = [
        ["size1 - 1", size1 - 1, size2, proof, r1, r2],
        ["size1 + 1", size1 + 1, size2, proof, r1, r2],
        ["size1 ^ 2", size1 ^ 2, size2, proof, r1, r2],
        ["size2 * 2", size1, size2 * 2, proof, r1, r2],
        ["size2 / 2", size1, Math.floor(size2 / 2), proof, r1, r2],
        ["wrong root1", size1, size2, proof, Buffer.from("WrongRoot"), r2],
        ["wrong root2", size1, size2, proof, r1, Buffer.from("WrongRoot")],
        ["swapped roots", size1, size2, proof, r2, r1],
        ["empty proof", size1, size2, [], r1, r2],
        ["trailing root1", size1, size2, [...proof, r1], r1, r2],
        ["trailing root2", size1, size2, [...proof, r2], r1, r2],
        ["preceding root1", size1, size2, [r1, ...proof], r1, r2],
        ["preceding root2", size1, size2, [r2, ...proof], r1, r2],
        ["preceding proof[0]", size1, size2, [proof[0] as Buffer, ...proof], r1, r2],
        ["truncated proof", size1, size2, proof.slice(0, -1), r1, r2],
        ...proof.map(
          (_, i) =>
            [`flipped bit in proof[${i}]`, size1, size2, proof.map((p, j) => (j === i ? flip(p, 4) : p)), r1, r2] as [
              string,
              number,
              number,
              Buffer[],
              Buffer,
              Buffer,
            ],
        ),
      ];
      for (const [desc, s1, s2, p, a, b] of bad) assert.equal(verifyConsistency(s1, s2, p, a, b), false, desc);
    });
  }

  it("handles the trivial cases as the reference suite does", () => {
    const root1 = Buffer.from("don't care 1");
    const root2 = Buffer.from("don't care 2");
    const cases: [number, number, Buffer, Buffer, Buffer[], boolean][] = [
      [0, 0, root1, root2, [], false],
      [1, 1, root1, root2, [], false],
      [0, 0, root1, root1, [], true],
      [0, 1, root1, root2, [], true],
      [1, 1, root2, root2, [], true],
      [1, 0, root1, root2, [], false],
      [2, 1, root1, root2, [], false],
      [1, 2, root1, root2, [], false],
      [0, 0, EMPTY_ROOT, EMPTY_ROOT, [EMPTY_ROOT], false],
      [0, 1, EMPTY_ROOT, EMPTY_ROOT, [EMPTY_ROOT], false],
      [1, 1, EMPTY_ROOT, EMPTY_ROOT, [EMPTY_ROOT], false],
    ];
    for (const [s1, s2, r1, r2, p, ok] of cases) assert.equal(verifyConsistency(s1, s2, p, r1, r2), ok, `${s1}→${s2}`);
  });
});

describe("proofs over larger trees (property)", () => {
  it("every generated proof verifies against the incremental root, and fails against another", () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 300 }), fc.nat(), fc.nat(), (size, a, b) => {
        const hashes = Array.from({ length: size }, (_, i) => createHash("sha256").update(`leaf ${i}`).digest());
        const src: LeafSource = (i) => hashes[i] as Buffer;
        const range = CompactRange.empty();
        const roots: Buffer[] = [];
        for (const x of hashes) {
          range.append(x);
          roots.push(range.root());
        }
        const index = a % size;
        const root = roots[size - 1] as Buffer;
        const proof = inclusionProof(src, index, size);
        if (!verifyInclusion(index, size, hashes[index] as Buffer, proof, root)) return false;
        if (size > 1 && verifyInclusion((index + 1) % size, size, hashes[index] as Buffer, proof, root)) return false;
        const size1 = 1 + (b % size);
        const cproof = consistencyProof(src, size1, size);
        return verifyConsistency(size1, size, cproof, roots[size1 - 1] as Buffer, root);
      }),
      { numRuns: 60 },
    );
  });
});
