// Publishing test bundles to a registry: build from policy text, push, sign.
import { createPrivateKey, type KeyObject } from "node:crypto";
import { mkdirSync, mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { generateKeyPair, type KeyPairPem, writeKeyPair } from "../../src/keys/keys.js";
import { clientFor, pushBundle } from "../../src/supply/artifact.js";
import { buildBundle } from "../../src/supply/bundle.js";
import { parseReference } from "../../src/supply/reference.js";
import { OCI_MANIFEST } from "../../src/supply/registry.js";
import { type SignatureFormat, signManifest } from "../../src/supply/signing.js";

/** A ToolPolicy for agent "dev" on server "everything" that decides the echo tool. */
export function echoPolicy(echo: "allow" | "deny", name = "echo-policy"): string {
  return `kind: ToolPolicy
metadata:
  name: ${name}
spec:
  agent: dev
  mcpServer: everything
  defaultAction: deny
  rules:
    - name: echo-rule
      tools: [echo]
      action: ${echo}
    - tools: [get-sum]
      action: allow
`;
}

export interface TestKey {
  private: KeyObject;
  privatePath: string;
  publicPath: string;
}

export function testKey(dir: string, name: string): TestKey {
  const pair: KeyPairPem = generateKeyPair("ecdsa-p256");
  const w = writeKeyPair(dir, pair, name);
  return { private: createPrivateKey(pair.privatePem), privatePath: w.privatePath, publicPath: w.publicPath };
}

export interface Published {
  reference: string;
  digest: string;
  bundleDigest: string;
  revision: string;
  /** The size of the bundle's OCI manifest, for signing it later. */
  manifestSize: number;
}

/** Builds a bundle from policy text, pushes it to oci://host/repo:tag, and signs it unless `sign` is null. */
export async function publish(
  reference: string,
  policy: string,
  o: { created: string; revision?: string; sign: TestKey | null; formats?: SignatureFormat[] },
): Promise<Published> {
  const dir = mkdtempSync(join(tmpdir(), "warden-publish-"));
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, "policy.yaml"), policy);
  const built = await buildBundle(dir, { created: o.created, ...(o.revision ? { revision: o.revision } : {}) });
  const ref = parseReference(reference);
  const client = clientFor(ref);
  const pushed = await pushBundle(client, ref, built.bytes);
  const published = {
    reference,
    digest: pushed.digest,
    bundleDigest: built.digest,
    revision: built.manifest.revision,
    manifestSize: pushed.manifest.length,
  };
  if (o.sign) await signPublished(published, o.sign, o.formats);
  return published;
}

/** Signs a bundle already pushed (`warden bundle push`, later `warden bundle sign`), by its digest. */
export async function signPublished(p: Published, key: TestKey, formats?: SignatureFormat[]): Promise<void> {
  const ref = parseReference(p.reference);
  await signManifest(
    clientFor(ref),
    ref,
    { mediaType: OCI_MANIFEST, digest: p.digest, size: p.manifestSize },
    key.private,
    formats,
  );
}
