// Policy bundles: deterministic builds, the strict reader, and the references
// bundles are pushed to.
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { cpSync, mkdirSync, mkdtempSync, rmSync, utimesSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, it } from "node:test";
import { canonicalJson } from "../../src/encoding/canonical-json.js";
import { BundleBuildError, buildBundle, compileBundle, openBundle } from "../../src/supply/bundle.js";
import { SupplyError } from "../../src/supply/errors.js";
import {
  formatReference,
  isLoopbackRegistry,
  parseReference,
  referrersFallbackTag,
  signatureTag,
} from "../../src/supply/reference.js";
import { readTar, writeTar } from "../../src/supply/tar.js";

const root = mkdtempSync(join(tmpdir(), "warden-bundle-"));
after(() => rmSync(root, { recursive: true, force: true }));

const POLICY = `apiVersion: warden/v1
kind: ToolPolicy
metadata:
  name: dev
spec:
  agent: dev-assistant
  mcpServer: github
  defaultAction: deny
  rules:
    - name: read
      tools: [list_issues, get_*]
      action: allow
`;
const OTHER = `kind: ToolPolicy
metadata:
  name: ops
spec:
  agent: "*"
  mcpServer: "*"
  rules:
    - tools: [delete_file]
      action: deny
`;

function policyDir(name: string, files: Record<string, string> = { "a.yaml": POLICY, "sub/b.yml": OTHER }): string {
  const dir = join(root, name);
  for (const [file, text] of Object.entries(files)) {
    mkdirSync(join(dir, file, ".."), { recursive: true });
    writeFileSync(join(dir, file), text);
  }
  return dir;
}

function refusal(fn: () => unknown, code: string, message: RegExp): void {
  assert.throws(fn, (err: unknown) => {
    assert.ok(err instanceof SupplyError, `expected a SupplyError, got ${String(err)}`);
    assert.equal(err.code, code, err.message);
    assert.match(err.message, message);
    return true;
  });
}

describe("bundle build", () => {
  it("is deterministic: the same files give the same bytes and digest", async () => {
    const dir = policyDir("det");
    const a = await buildBundle(dir);
    const b = await buildBundle(dir);
    assert.equal(a.digest, b.digest);
    assert.deepEqual(a.bytes, b.bytes);
    // A copy with other modification times, pinned to the same creation time, is the same bundle.
    const copy = join(root, "det-copy");
    cpSync(dir, copy, { recursive: true });
    utimesSync(join(copy, "a.yaml"), new Date("2030-01-01T00:00:00Z"), new Date("2030-01-01T00:00:00Z"));
    const created = a.manifest.created;
    assert.equal((await buildBundle(copy, { created })).digest, a.digest);
    assert.notEqual((await buildBundle(copy)).digest, a.digest, "the newest mtime is the default creation time");
    assert.equal(
      (await buildBundle(copy, { env: { SOURCE_DATE_EPOCH: String(Date.parse(created) / 1000) } })).digest,
      a.digest,
    );
  });

  it("lists every file and resource, with a derived revision and the creation time", async () => {
    const dir = policyDir("meta");
    const b = await buildBundle(dir, { created: "2026-03-01T10:20:30.999+01:00" });
    assert.equal(b.manifest.created, "2026-03-01T09:20:30Z");
    assert.match(b.manifest.revision, /^20260301T092030Z-[0-9a-f]{12}$/);
    assert.deepEqual(
      b.manifest.files.map((f) => f.path),
      ["policies/a.yaml", "policies/sub/b.yml"],
    );
    assert.deepEqual(
      b.manifest.resources.map((r) => `${r.kind}/${r.name}@${r.file}`),
      ["ToolPolicy/dev@policies/a.yaml", "ToolPolicy/ops@policies/sub/b.yml"],
    );
    assert.equal((await buildBundle(dir, { revision: "42" })).manifest.revision, "42");
    await assert.rejects(buildBundle(dir, { revision: "no spaces" }), /revision "no spaces"/);
  });

  it("writes an ordinary tar: root-owned 0644 files, fixed times, the manifest first", async () => {
    const b = await buildBundle(policyDir("tar"), { created: "2026-01-02T03:04:05Z" });
    const file = join(root, "tar.tar");
    writeFileSync(file, b.bytes);
    const listing = execFileSync("tar", ["--numeric-owner", "--full-time", "-tvf", file], {
      encoding: "utf8",
      env: { ...process.env, TZ: "UTC" },
    });
    const lines = listing.trim().split("\n");
    assert.equal(lines.length, 3);
    for (const line of lines) assert.match(line, /^-rw-r--r-- 0\/0 +\d+ 2026-01-02 03:04:05 /);
    assert.deepEqual(
      lines.map((l) => l.split(" ").at(-1)),
      ["warden-bundle.json", "policies/a.yaml", "policies/sub/b.yml"],
    );
  });

  it("validates every policy first: a bundle that would not load is never made", async () => {
    const dir = policyDir("bad", {
      "ok.yaml": POLICY,
      "broken.yaml": "kind: ToolPolicy\nmetadata: {name: x}\nspec:\n  rules: [{tools: [a], action: maybe}]\n",
    });
    await assert.rejects(buildBundle(dir), (err: unknown) => {
      assert.ok(err instanceof BundleBuildError);
      assert.ok(err.diagnostics.some((d) => d.file === join(dir, "broken.yaml") && d.severity === "error"));
      return true;
    });
  });
});

describe("bundle reading refuses what was not built", () => {
  const entries = async () => {
    const b = await buildBundle(policyDir("read"), { created: "2026-01-01T00:00:00Z" });
    return { b, entries: readTar(b.bytes, { maxEntries: 10, maxEntryBytes: 1 << 20 }) };
  };
  const repack = (list: { path: string; data: Uint8Array }[]) => writeTar(list, 0);

  it("opens and compiles what it built", async () => {
    const { b } = await entries();
    const opened = openBundle(b.bytes);
    assert.equal(opened.digest, b.digest);
    assert.equal(compileBundle(opened).digest, b.manifest.policySet);
  });

  it("a policy file whose bytes changed", async () => {
    const { entries: e } = await entries();
    const tampered = e.map((x) =>
      x.path === "policies/a.yaml" ? { ...x, data: Buffer.from(POLICY.replace("deny", "allow")) } : x,
    );
    refusal(
      () => openBundle(repack(tampered)),
      "digest-mismatch",
      /policies\/a.yaml has digest .* but the bundle manifest says/,
    );
  });

  it("an extra, a missing or a reordered file", async () => {
    const { entries: e } = await entries();
    refusal(
      () => openBundle(repack([...e, { path: "policies/z.yaml", data: Buffer.from(OTHER) }])),
      "invalid-bundle",
      /holds 3 policy files but its manifest lists 2/,
    );
    refusal(() => openBundle(repack(e.slice(0, 2))), "invalid-bundle", /holds 1 policy files but its manifest lists 2/);
    refusal(
      () => openBundle(repack([e[0], e[2], e[1]] as typeof e)),
      "invalid-bundle",
      /file 1 is policies\/sub\/b.yml/,
    );
  });

  it("a manifest that is not canonical, or claims another policy set", async () => {
    const { entries: e } = await entries();
    const m = JSON.parse(Buffer.from(e[0]?.data as Uint8Array).toString("utf8"));
    refusal(
      () =>
        openBundle(
          repack([{ path: "warden-bundle.json", data: Buffer.from(JSON.stringify(m, null, 1)) }, ...e.slice(1)]),
        ),
      "invalid-bundle",
      /not in canonical form/,
    );
    const lying = { ...m, policySet: `sha256:${"0".repeat(64)}` };
    const opened = openBundle(
      repack([{ path: "warden-bundle.json", data: Buffer.from(canonicalJson(lying)) }, ...e.slice(1)]),
    );
    refusal(
      () => compileBundle(opened),
      "invalid-bundle",
      /compile to policy set sha256:[0-9a-f]{64}, but its manifest says sha256:0{64}/,
    );
  });

  it("links, unsafe paths, bad checksums and trailing data", async () => {
    const { b } = await entries();
    const header = (bytes: Buffer, at: number, type: number) => {
      bytes[at + 156] = type;
      let s = 0;
      for (let i = 0; i < 512; i++) s += i >= 148 && i < 156 ? 32 : (bytes[at + i] as number);
      bytes.write(`${s.toString(8).padStart(6, "0")}\0 `, at + 148, "latin1");
    };
    const link = Buffer.from(b.bytes);
    header(link, 0, 0x32);
    refusal(() => openBundle(link), "invalid-bundle", /is not a regular file/);
    assert.throws(() => writeTar([{ path: "../evil.yaml", data: Buffer.alloc(1) }], 0), /not a safe relative path/);
    const traversal = Buffer.from(b.bytes);
    traversal.write("../evil.yaml\0", 0, "latin1");
    header(traversal, 0, 0x30);
    refusal(() => openBundle(traversal), "invalid-bundle", /not a safe relative path/);
    const checksum = Buffer.from(b.bytes);
    checksum[0] = (checksum[0] as number) ^ 1;
    refusal(() => openBundle(checksum), "invalid-bundle", /checksum/);
    refusal(
      () => openBundle(Buffer.concat([b.bytes, Buffer.from("x")])),
      "invalid-bundle",
      /data after the end|end-of-archive/,
    );
  });
});

describe("OCI references", () => {
  it("parses oci://HOST[:PORT]/REPO:TAG and @sha256:, and prints them back", () => {
    const d = `sha256:${"ab".repeat(32)}`;
    assert.deepEqual(parseReference("oci://127.0.0.1:5000/warden/policies:prod"), {
      registry: "127.0.0.1:5000",
      repository: "warden/policies",
      tag: "prod",
    });
    assert.deepEqual(parseReference(`oci://registry.example.com/a/b/c@${d}`), {
      registry: "registry.example.com",
      repository: "a/b/c",
      digest: d,
    });
    assert.equal(formatReference(parseReference(`oci://[::1]:5000/p:v1@${d}`)), `oci://[::1]:5000/p:v1@${d}`);
    assert.equal(parseReference("localhost:5000/p:v1", true).registry, "localhost:5000");
    assert.equal(signatureTag(d), `sha256-${"ab".repeat(32)}.sig`);
    assert.equal(referrersFallbackTag(d), `sha256-${"ab".repeat(32)}`);
  });

  it("refuses what is not a reference, saying why", () => {
    for (const [text, why] of [
      ["127.0.0.1:5000/p:v1", /must start with oci:\/\//],
      ["oci://host/Upper:v1", /not a valid repository path component/],
      ["oci://host/p", /needs a :TAG or an @sha256: digest/],
      ["oci://host/p@sha256:abc", /not a sha256 digest/],
      ["oci://host:99999/p:v1", /port 99999 is out of range/],
      ["oci://host/p:-bad", /not a valid tag/],
      ["oci://p:v1", /needs a registry host and a repository/],
    ] as const) {
      assert.throws(
        () => parseReference(text),
        (err: unknown) => err instanceof SupplyError && why.test(err.message),
        text,
      );
    }
  });

  it("plain HTTP without --insecure is for loopback registries only", () => {
    for (const host of ["127.0.0.1:5000", "127.1.2.3", "localhost:5000", "[::1]:5000"])
      assert.equal(isLoopbackRegistry(host), true, host);
    for (const host of ["registry.example.com", "10.0.0.1:5000", "localhost.example.com", "[::2]:5000", "0.0.0.0:5000"])
      assert.equal(isLoopbackRegistry(host), false, host);
  });
});
