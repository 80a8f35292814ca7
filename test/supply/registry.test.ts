// Bundles against a real registry (Debian's docker-registry 2.8.2, no
// referrers API), with skopeo as an independent reader: push, pull, sign,
// verify, and every refusal, through the `warden bundle` CLI contract.
import assert from "node:assert/strict";
import { createPrivateKey } from "node:crypto";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { generateKeyPair, writeKeyPair } from "../../src/keys/keys.js";
import { clientFor } from "../../src/supply/artifact.js";
import { bundleReferrerManifest } from "../../src/supply/cosign.js";
import { parseReference, referrersFallbackTag, sha256Digest, signatureTag } from "../../src/supply/reference.js";
import { OCI_INDEX, OCI_MANIFEST } from "../../src/supply/registry.js";
import { runWarden } from "../helpers/cli.js";
import { type RunningRegistry, registrySkipReason, run, startRegistry } from "../helpers/registry.js";

const skip = registrySkipReason();
const root = mkdtempSync(join(tmpdir(), "warden-registry-test-"));
process.env.DOCKER_CONFIG = join(root, "no-docker-config");
after(() => rmSync(root, { recursive: true, force: true }));

// Every bundle is different (its name is in it): the registry shares blobs across repositories.
const POLICY = (name: string, action: string) => `kind: ToolPolicy
metadata:
  name: ${name}
spec:
  agent: dev-assistant
  mcpServer: github
  rules:
    - tools: [create_issue]
      action: ${action}
`;

const cli = (...argv: string[]) => runWarden(argv);

function policyDir(name: string, action: string): string {
  const dir = join(root, name);
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, "policy.yaml"), POLICY(name, action));
  return dir;
}

async function built(name: string, action: string, created = "2026-01-01T00:00:00Z"): Promise<string> {
  const file = join(root, `${name}.tar`);
  const r = await cli("bundle", "build", policyDir(name, action), "-o", file, "--created", created);
  assert.equal(r.code, 0, r.err);
  return file;
}

function keys(name: string): { priv: string; pub: string } {
  const w = writeKeyPair(join(root, "keys"), generateKeyPair("ecdsa-p256"), name);
  return { priv: w.privatePath, pub: w.publicPath };
}

const skopeo = (...args: string[]) => run("skopeo", args, { timeoutMs: 60_000 });

describe("bundles in a real registry", { skip }, () => {
  let reg: RunningRegistry;
  let signer: { priv: string; pub: string };
  let stranger: { priv: string; pub: string };
  before(async () => {
    reg = await startRegistry();
    signer = keys("signer");
    stranger = keys("stranger");
  });
  after(() => reg?.stop());
  const ref = (repo: string, tag = "v1") => `oci://${reg.host}/${repo}:${tag}`;

  it("push and pull by tag and by digest give back the same bytes; building twice gives the same digest", async () => {
    const file = await built("rt", "allow");
    const again = await built("rt", "allow");
    assert.deepEqual(readFileSync(file), readFileSync(again));
    const pushed = await cli("bundle", "push", file, ref("warden/rt"));
    assert.equal(pushed.code, 0, pushed.err);
    const [, digest] = pushed.out.trim().split("@");
    assert.match(digest as string, /^sha256:[0-9a-f]{64}$/);
    // Pushing the same bundle again gives the same manifest digest: the manifest is canonical JSON.
    assert.equal((await cli("bundle", "push", again, ref("warden/rt", "v1-again"))).out.trim().split("@")[1], digest);
    for (const from of [ref("warden/rt"), `oci://${reg.host}/warden/rt@${digest}`]) {
      const out = join(root, "pulled.tar");
      const r = await cli("bundle", "pull", from, "-o", out);
      assert.equal(r.code, 0, r.err);
      assert.deepEqual(readFileSync(out), readFileSync(file));
      assert.equal(r.out.trim(), `oci://${reg.host}/warden/rt${from.includes("@") ? "" : ":v1"}@${digest}`);
    }
  });

  it("skopeo reads what we push: inspect --raw, list-tags, copy to an OCI layout", async () => {
    const file = await built("sk", "allow");
    const pushed = await cli("bundle", "push", file, ref("warden/sk"));
    const digest = pushed.out.trim().split("@")[1] as string;
    const raw = await skopeo("inspect", "--raw", "--tls-verify=false", `docker://${reg.host}/warden/sk:v1`);
    assert.equal(raw.code, 0, raw.stderr);
    assert.equal(sha256Digest(raw.stdout), digest);
    const m = JSON.parse(raw.stdout);
    assert.equal(m.artifactType, "application/vnd.warden.policy.bundle.v1");
    assert.equal(m.config.mediaType, "application/vnd.oci.empty.v1+json");
    assert.equal(m.layers[0].mediaType, "application/vnd.warden.policy.bundle.v1.tar");
    assert.equal(m.layers[0].digest, sha256Digest(readFileSync(file)));
    assert.equal(m.layers[0].annotations["org.opencontainers.image.title"], "warden-policy-bundle.tar");
    const tags = await skopeo("list-tags", "--tls-verify=false", `docker://${reg.host}/warden/sk`);
    assert.deepEqual(JSON.parse(tags.stdout).Tags, ["v1"]);
    const layout = join(root, "layout");
    const copy = await skopeo(
      "copy",
      "--src-tls-verify=false",
      `docker://${reg.host}/warden/sk:v1`,
      `oci:${layout}:v1`,
    );
    assert.equal(copy.code, 0, copy.stderr);
    const index = JSON.parse(readFileSync(join(layout, "index.json"), "utf8"));
    assert.equal(index.manifests[0].digest, digest);
    assert.deepEqual(readFileSync(join(layout, "blobs/sha256", m.layers[0].digest.slice(7))), readFileSync(file));
    assert.equal(readFileSync(join(layout, "blobs/sha256", m.config.digest.slice(7)), "utf8"), "{}");
  });

  it("sign writes both cosign formats; skopeo sees them; verify accepts either alone", async () => {
    const pushed = await cli("bundle", "push", await built("sig", "allow"), ref("warden/sig"));
    const digest = pushed.out.trim().split("@")[1] as string;
    const signed = await cli("bundle", "sign", ref("warden/sig"), "--key", signer.priv);
    assert.equal(signed.code, 0, signed.err);
    assert.match(signed.err, /tag-schema fallback index/);
    const tags = JSON.parse(
      (await skopeo("list-tags", "--tls-verify=false", `docker://${reg.host}/warden/sig`)).stdout,
    ).Tags;
    assert.deepEqual(tags.sort(), ["v1", referrersFallbackTag(digest), signatureTag(digest)].sort());
    // The legacy signature image, as cosign writes it.
    const sig = JSON.parse(
      (
        await skopeo(
          "inspect",
          "--raw",
          "--tls-verify=false",
          `docker://${reg.host}/warden/sig:${signatureTag(digest)}`,
        )
      ).stdout,
    );
    assert.equal(sig.layers[0].mediaType, "application/vnd.dev.cosign.simplesigning.v1+json");
    assert.equal(sig.config.size, 233);
    assert.ok(sig.layers[0].annotations["dev.cosignproject.cosign/signature"]);
    // The referrers fallback index and the Sigstore bundle referrer it lists.
    const index = JSON.parse(
      (
        await skopeo(
          "inspect",
          "--raw",
          "--tls-verify=false",
          `docker://${reg.host}/warden/sig:${referrersFallbackTag(digest)}`,
        )
      ).stdout,
    );
    assert.equal(index.mediaType, OCI_INDEX);
    assert.equal(index.manifests[0].artifactType, "application/vnd.dev.sigstore.bundle.v0.3+json");
    const referrer = JSON.parse(
      (
        await skopeo(
          "inspect",
          "--raw",
          "--tls-verify=false",
          `docker://${reg.host}/warden/sig@${index.manifests[0].digest}`,
        )
      ).stdout,
    );
    assert.equal(referrer.subject.digest, digest);
    assert.equal(referrer.layers.length, 1);
    assert.equal(referrer.layers[0].mediaType, "application/vnd.dev.sigstore.bundle.v0.3+json");
    assert.equal(referrer.annotations["dev.sigstore.bundle.predicateType"], "https://sigstore.dev/cosign/sign/v1");
    const v = await cli("bundle", "verify", ref("warden/sig"), "--key", signer.pub, "--json");
    assert.equal(v.code, 0, v.err);
    assert.deepEqual(
      JSON.parse(v.out)
        .verified.map((x: { format: string }) => x.format)
        .sort(),
      ["sigstore-bundle", "simplesigning"],
    );
    // Each format on its own is enough.
    for (const format of ["simplesigning", "sigstore-bundle"]) {
      const repo = `warden/only-${format}`;
      await cli("bundle", "push", await built(`only-${format}`, "allow"), ref(repo));
      assert.equal((await cli("bundle", "sign", ref(repo), "--key", signer.priv, "--format", format)).code, 0);
      const r = await cli("bundle", "verify", ref(repo), "--key", signer.pub, "--json");
      assert.equal(r.code, 0, r.err);
      assert.deepEqual(
        JSON.parse(r.out).verified.map((x: { format: string }) => x.format),
        [format],
      );
    }
    // Signing again with the same key writes nothing new.
    const again = await cli("bundle", "sign", ref("warden/sig"), "--key", signer.priv);
    assert.match(again.err, /already signed with this key; nothing written/);
    const once = await cli("bundle", "verify", ref("warden/sig"), "--key", signer.pub, "--json");
    assert.equal(JSON.parse(once.out).verified.length, 2);
    // A second signer is added next to the first, not in its place.
    assert.equal((await cli("bundle", "sign", ref("warden/sig"), "--key", stranger.priv)).code, 0);
    const both = await cli("bundle", "verify", ref("warden/sig"), "--key", signer.pub, "--key", stranger.pub, "--json");
    assert.equal(JSON.parse(both.out).verified.length, 4);
    // pull --key only writes a signed bundle.
    assert.equal(
      (await cli("bundle", "pull", ref("warden/sig"), "-o", join(root, "p.tar"), "--key", signer.pub)).code,
      0,
    );
  });

  describe("refusals (exit 1, nothing accepted)", () => {
    it("an unsigned bundle", async () => {
      await cli("bundle", "push", await built("unsigned", "allow"), ref("warden/unsigned"));
      const r = await cli("bundle", "verify", ref("warden/unsigned"), "--key", signer.pub);
      assert.equal(r.code, 1);
      assert.match(
        r.err,
        /is not signed: no sha256-[0-9a-f]{64}\.sig signature and no Sigstore bundle referrer was found; refused/,
      );
      const p = await cli("bundle", "pull", ref("warden/unsigned"), "-o", join(root, "never.tar"), "--key", signer.pub);
      assert.equal(p.code, 1);
    });

    it("a signature by a key that is not trusted", async () => {
      await cli("bundle", "push", await built("stranger", "allow"), ref("warden/stranger"));
      await cli("bundle", "sign", ref("warden/stranger"), "--key", stranger.priv);
      const r = await cli("bundle", "verify", ref("warden/stranger"), "--key", signer.pub);
      assert.equal(r.code, 1);
      assert.match(r.err, /no signature on sha256:[0-9a-f]{64} verifies with the trusted key/);
      assert.match(r.err, /simplesigning .*: simple-signing signature does not verify with any trusted key/);
      assert.match(r.err, /sigstore-bundle .*: DSSE signature does not verify with any trusted key/);
    });

    it("a blob tampered with in the registry's storage", async () => {
      const file = await built("tamper", "deny");
      await cli("bundle", "push", file, ref("warden/tamper"));
      await cli("bundle", "sign", ref("warden/tamper"), "--key", signer.priv);
      const blob = reg.blobPath(sha256Digest(readFileSync(file)));
      const bytes = readFileSync(blob);
      const at = bytes.indexOf("action: deny");
      bytes.write("action: allo", at); // same length: only the digest can tell
      writeFileSync(blob, bytes);
      for (const argv of [
        ["verify", ref("warden/tamper"), "--key", signer.pub],
        ["pull", ref("warden/tamper"), "-o", join(root, "never.tar")],
      ]) {
        const r = await cli("bundle", ...argv);
        assert.equal(r.code, 1, argv.join(" "));
        assert.match(r.err, /blob sha256:[0-9a-f]{64} from 127\.0\.0\.1:\d+ has digest sha256:[0-9a-f]{64}; refused/);
      }
    });

    it("a manifest swapped: the tag moved to an unsigned manifest, or the manifest's bytes changed in storage", async () => {
      await cli("bundle", "push", await built("swap-a", "deny"), ref("warden/swap"));
      await cli("bundle", "sign", ref("warden/swap"), "--key", signer.priv);
      assert.equal((await cli("bundle", "verify", ref("warden/swap"), "--key", signer.pub)).code, 0);
      // Someone with push rights re-points the tag to their own manifest.
      await cli("bundle", "push", await built("swap-b", "allow"), ref("warden/swap"));
      const moved = await cli("bundle", "verify", ref("warden/swap"), "--key", signer.pub);
      assert.equal(moved.code, 1);
      assert.match(moved.err, /is not signed/);
      // Someone with disk access edits the signed manifest in place.
      const pushed = await cli("bundle", "push", await built("swap-c", "deny"), ref("warden/swap2"));
      const digest = pushed.out.trim().split("@")[1] as string;
      await cli("bundle", "sign", ref("warden/swap2"), "--key", signer.priv);
      const path = reg.blobPath(digest);
      writeFileSync(path, readFileSync(path, "utf8").replace("2026-01-01T00:00:00Z", "2026-01-01T00:00:01Z"));
      const edited = await cli("bundle", "verify", `oci://${reg.host}/warden/swap2@${digest}`, "--key", signer.pub);
      assert.equal(edited.code, 1);
      assert.match(
        edited.err,
        /the manifest fetched as sha256:[0-9a-f]{64} has digest sha256:[0-9a-f]{64}; refused|hash to/,
      );
    });

    it("a valid signature for another digest", async () => {
      const a = await cli("bundle", "push", await built("other-a", "deny"), ref("warden/other", "a"));
      const b = await cli("bundle", "push", await built("other-b", "allow"), ref("warden/other", "b"));
      const digestA = a.out.trim().split("@")[1] as string;
      const digestB = b.out.trim().split("@")[1] as string;
      await cli("bundle", "sign", ref("warden/other", "a"), "--key", signer.priv);
      // Copy A's signatures to where B's would be: the .sig tag and a referrer whose subject is B.
      const client = clientFor(parseReference(ref("warden/other", "a")));
      const sigA = await client.getManifest(signatureTag(digestA), [OCI_MANIFEST]);
      await client.putManifest(signatureTag(digestB), sigA?.bytes as Buffer, OCI_MANIFEST);
      const json = async (at: string, accept: string) => {
        const m = await client.getManifest(at, [accept]);
        assert.ok(m, at);
        return JSON.parse(m.bytes.toString("utf8"));
      };
      const indexA = await json(referrersFallbackTag(digestA), OCI_INDEX);
      const refA = await json(indexA.manifests[0].digest, OCI_MANIFEST);
      const bundleA = await client.getBlob(refA.layers[0].digest, 1 << 20);
      const fake = bundleReferrerManifest(
        bundleA,
        { mediaType: OCI_MANIFEST, digest: digestB, size: 1 },
        "2026-01-01T00:00:00Z",
      );
      await client.putManifest(sha256Digest(fake), fake, OCI_MANIFEST);
      await client.putManifest(
        referrersFallbackTag(digestB),
        Buffer.from(
          JSON.stringify({
            schemaVersion: 2,
            mediaType: OCI_INDEX,
            manifests: [{ mediaType: OCI_MANIFEST, digest: sha256Digest(fake), size: fake.length }],
          }),
        ),
        OCI_INDEX,
      );
      const r = await cli("bundle", "verify", ref("warden/other", "b"), "--key", signer.pub);
      assert.equal(r.code, 1);
      assert.match(
        r.err,
        new RegExp(`simplesigning .*: the signature is valid but for another digest \\(${digestA}\\), not ${digestB}`),
      );
      assert.match(
        r.err,
        new RegExp(
          `sigstore-bundle .*: the signature is valid but for another digest \\(${digestA}\\), not ${digestB}`,
        ),
      );
    });
  });

  it("refuses to sign with an Ed25519 key or something that is not a bundle", async () => {
    const ed = writeKeyPair(join(root, "keys"), generateKeyPair("ed25519"), "ed");
    await cli("bundle", "push", await built("ed", "allow"), ref("warden/ed"));
    const r = await cli("bundle", "sign", ref("warden/ed"), "--key", ed.privatePath);
    assert.equal(r.code, 2);
    assert.match(r.err, /ECDSA P-256 as cosign does/);
    assert.ok(createPrivateKey(readFileSync(ed.privatePath)));
    const missing = await cli("bundle", "sign", ref("warden/nothing-here"), "--key", signer.priv);
    assert.equal(missing.code, 2);
    assert.match(missing.err, /was not found in the registry/);
  });
});
