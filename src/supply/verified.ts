// Pull → verify the signature against pinned keys → verify digests: the one
// path by which a Guard (and `warden bundle verify`) accepts a bundle.
import { fetchBundleLayer, fetchBundleManifest } from "./artifact.js";
import type { OpenedBundle } from "./bundle.js";
import type { Evidence, TrustedKey } from "./cosign.js";
import { formatReference, type OciReference } from "./reference.js";
import type { RegistryClient } from "./registry.js";
import { collectEvidence, requireVerified, type Verification } from "./signing.js";

export interface VerifiedBundle {
  reference: OciReference;
  /** The manifest digest the signature covers. */
  digest: string;
  manifest: Buffer;
  bundle: Buffer;
  opened: OpenedBundle;
  verification: Verification;
  /** The evidence that verified, to be cached and re-checked offline. */
  evidence: Evidence[];
}

/** Resolves the reference, checks the signature over the manifest digest, then fetches and checks the bundle. */
export async function pullVerified(
  client: RegistryClient,
  ref: OciReference,
  keys: readonly TrustedKey[],
  knownDigest?: string,
): Promise<VerifiedBundle> {
  const at = knownDigest ? { ...ref, digest: knownDigest } : ref;
  const m = await fetchBundleManifest(client, at);
  const verification = requireVerified(m.digest, await collectEvidence(client, m.digest), keys);
  const { bundle, opened } = await fetchBundleLayer(client, formatReference(ref), m.layer, m.annotations);
  return {
    reference: ref,
    digest: m.digest,
    manifest: m.manifest,
    bundle,
    opened,
    verification,
    evidence: verification.verified.map((v) => v.evidence),
  };
}
