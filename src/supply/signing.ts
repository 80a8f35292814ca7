// Signing a pushed bundle and finding its signatures, against a registry.
// The formats are in cosign.ts; this file does the reads and writes, including
// the OCI 1.1 referrers tag-schema fallback for registries without the
// referrers API (Debian's docker-registry 2.8 has none).
import type { KeyObject } from "node:crypto";
import { EMPTY_BLOB } from "./artifact.js";
import {
  bundleReferrerManifest,
  COSIGN_SIGNATURE_ANNOTATION,
  checkEvidence,
  DOCKER_MANIFEST,
  type Evidence,
  INTOTO_PAYLOAD_TYPE,
  pae,
  SIGSTORE_BUNDLE_V03,
  SIMPLE_SIGNING_MEDIA_TYPE,
  type SignatureLayer,
  signatureImageConfig,
  signatureManifest,
  signDer,
  signStatement,
  sigstoreBundle,
  simpleSigningPayload,
  type TrustedKey,
  trustedKey,
} from "./cosign.js";
import { SupplyError } from "./errors.js";
import { type OciReference, referrersFallbackTag, repositoryName, sha256Digest, signatureTag } from "./reference.js";
import { type Descriptor, isDescriptor, OCI_INDEX, OCI_MANIFEST, parseIndex, type RegistryClient } from "./registry.js";

export type SignatureFormat = "simplesigning" | "sigstore-bundle";
export const SIGNATURE_FORMATS: readonly SignatureFormat[] = ["simplesigning", "sigstore-bundle"];
const MAX_SIGNATURE_BLOB = 1024 * 1024;
const MAX_SIGNATURES = 100;

export interface SignResult {
  digest: string;
  /** The .sig tag written, if the legacy format was asked for. */
  signatureTag?: string;
  /** The referrer manifest's digest, if the bundle format was asked for. */
  referrer?: string;
  /** How the referrer is found: the registry's referrers API, or the sha256-<hex> index tag. */
  referrerIndex?: "api" | "fallback-tag" | "existing";
}

/** Signs the manifest `subject` (already in the registry) in the given formats. */
export async function signManifest(
  client: RegistryClient,
  ref: OciReference,
  subject: Descriptor,
  key: KeyObject,
  formats: readonly SignatureFormat[] = SIGNATURE_FORMATS,
  now: Date = new Date(),
): Promise<SignResult> {
  const result: SignResult = { digest: subject.digest };
  if (formats.includes("simplesigning"))
    result.signatureTag = await writeSimpleSigning(client, ref, subject.digest, key);
  if (formats.includes("sigstore-bundle")) {
    const r = await writeSigstoreBundle(client, subject, key, now);
    result.referrer = r.digest;
    result.referrerIndex = r.index;
  }
  return result;
}

async function writeSimpleSigning(
  client: RegistryClient,
  ref: OciReference,
  digest: string,
  key: KeyObject,
): Promise<string> {
  const payload = simpleSigningPayload(repositoryName(ref), digest);
  const tag = signatureTag(digest);
  // Keep the signatures already there (other signers, earlier keys): cosign appends too.
  const existing = await readSignatureLayers(client, digest);
  // Signing again with the same key changes nothing (ECDSA signatures differ each time, so compare by verifying).
  const mine = [trustedKey(key, "the signing key")];
  if (
    existing.some(
      (e) =>
        checkEvidence(
          { format: "simplesigning", payload: e.payload.toString("base64"), signature: e.layer.signature },
          digest,
          mine,
        ).ok,
    )
  )
    return tag;
  const layers: SignatureLayer[] = existing.map((l) => l.layer);
  await client.putBlob(payload);
  layers.push({
    digest: sha256Digest(payload),
    size: payload.length,
    signature: signDer(key, payload).toString("base64"),
  });
  const config = signatureImageConfig(layers.map((l) => l.digest));
  await client.putBlob(config);
  await client.putManifest(tag, signatureManifest(config, layers), OCI_MANIFEST);
  return tag;
}

async function writeSigstoreBundle(
  client: RegistryClient,
  subject: Descriptor,
  key: KeyObject,
  now: Date,
): Promise<{ digest: string; index: "api" | "fallback-tag" | "existing" }> {
  const mine = [trustedKey(key, "the signing key")];
  for (const f of await collectReferrerEvidence(client, subject.digest)) {
    if (checkEvidence(f.evidence, subject.digest, mine).ok)
      return { digest: f.from.replace(/^referrer /, ""), index: "existing" };
  }
  const statement = signStatement(subject.digest);
  const signature = signDer(key, pae(INTOTO_PAYLOAD_TYPE, statement));
  const bundle = sigstoreBundle(statement, signature, key);
  await client.putBlob(EMPTY_BLOB);
  await client.putBlob(bundle);
  const created = now.toISOString().replace(/\.\d{3}Z$/, "Z");
  const manifest = bundleReferrerManifest(bundle, subject, created);
  const digest = sha256Digest(manifest);
  const put = await client.putManifest(digest, manifest, OCI_MANIFEST);
  if (put.subject === subject.digest) return { digest, index: "api" };
  const { supported } = await client.referrers(subject.digest);
  if (supported) return { digest, index: "api" };
  await addToFallbackIndex(client, subject.digest, {
    mediaType: OCI_MANIFEST,
    digest,
    size: manifest.length,
    artifactType: SIGSTORE_BUNDLE_V03,
    annotations: (JSON.parse(manifest.toString("utf8")) as { annotations: Record<string, string> }).annotations,
  });
  return { digest, index: "fallback-tag" };
}

/**
 * The referrers tag schema (distribution-spec, "Referrers tag schema"): an
 * image index tagged sha256-<hex> listing the referrers, kept up to date by
 * clients with a read-modify-write. Descriptors are kept in digest order.
 */
async function addToFallbackIndex(client: RegistryClient, subject: string, add: Descriptor): Promise<void> {
  const tag = referrersFallbackTag(subject);
  const existing = await client.getManifest(tag, [OCI_INDEX]);
  const manifests = existing ? parseIndex(existing.bytes, `the referrers index ${tag}`).manifests : [];
  if (manifests.some((d) => d.digest === add.digest)) return;
  manifests.push(add);
  manifests.sort((a, b) => (a.digest < b.digest ? -1 : a.digest > b.digest ? 1 : 0));
  const index = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: OCI_INDEX, manifests }));
  await client.putManifest(tag, index, OCI_INDEX);
}

/** The simple-signing layers under sha256-<hex>.sig, with their payloads. */
async function readSignatureLayers(
  client: RegistryClient,
  digest: string,
): Promise<{ layer: SignatureLayer; payload: Buffer }[]> {
  const fetched = await client.getManifest(signatureTag(digest), [OCI_MANIFEST, DOCKER_MANIFEST]);
  if (!fetched) return [];
  let m: { layers?: unknown };
  try {
    m = JSON.parse(fetched.bytes.toString("utf8")) as typeof m;
  } catch {
    throw new SupplyError("registry", `the signature manifest ${signatureTag(digest)} is not JSON`);
  }
  const out: { layer: SignatureLayer; payload: Buffer }[] = [];
  const layers = Array.isArray(m.layers) ? m.layers.slice(0, MAX_SIGNATURES) : [];
  for (const l of layers) {
    if (!isDescriptor(l) || l.mediaType !== SIMPLE_SIGNING_MEDIA_TYPE) continue;
    const signature = l.annotations?.[COSIGN_SIGNATURE_ANNOTATION];
    if (typeof signature !== "string") continue;
    const payload = await client.getBlob(l.digest, MAX_SIGNATURE_BLOB, l.size);
    const { [COSIGN_SIGNATURE_ANNOTATION]: _, ...others } = l.annotations ?? {};
    out.push({ layer: { digest: l.digest, size: l.size, signature, annotations: others }, payload });
  }
  return out;
}

/** Finds the referrers of a digest: the API when the registry has it, else the fallback tag. */
async function listReferrers(client: RegistryClient, digest: string): Promise<Descriptor[]> {
  const api = await client.referrers(digest);
  if (api.supported) return api.manifests;
  const index = await client.getManifest(referrersFallbackTag(digest), [OCI_INDEX]);
  return index ? parseIndex(index.bytes, `the referrers index ${referrersFallbackTag(digest)}`).manifests : [];
}

export interface FoundEvidence {
  evidence: Evidence;
  /** Where it was found, for messages: the .sig tag or the referrer digest. */
  from: string;
}

/** Every signature the registry holds for a digest, in both formats. Fetched bytes are digest-checked. */
export async function collectEvidence(client: RegistryClient, digest: string): Promise<FoundEvidence[]> {
  const found: FoundEvidence[] = [];
  for (const { layer, payload } of await readSignatureLayers(client, digest)) {
    found.push({
      evidence: { format: "simplesigning", payload: payload.toString("base64"), signature: layer.signature },
      from: `${signatureTag(digest)} layer ${layer.digest}`,
    });
  }
  found.push(...(await collectReferrerEvidence(client, digest)));
  return found;
}

/** The Sigstore bundles among a digest's referrers. */
async function collectReferrerEvidence(client: RegistryClient, digest: string): Promise<FoundEvidence[]> {
  const found: FoundEvidence[] = [];
  // cosign does not filter by artifactType (go-containerregistry's fallback index
  // records the config media type instead), so neither do we: every referrer
  // whose one layer is a Sigstore bundle is a candidate.
  const referrers = (await listReferrers(client, digest))
    .filter((d) => d.mediaType === OCI_MANIFEST)
    .slice(0, MAX_SIGNATURES);
  for (const d of referrers) {
    const m = await client.getManifest(d.digest, [OCI_MANIFEST]);
    if (!m) continue;
    let parsed: { subject?: unknown; layers?: unknown };
    try {
      parsed = JSON.parse(m.bytes.toString("utf8")) as typeof parsed;
    } catch {
      continue;
    }
    const subject = parsed.subject as Descriptor | undefined;
    if (!isDescriptor(subject) || subject.digest !== digest) continue;
    const layers = Array.isArray(parsed.layers) ? parsed.layers : [];
    const layer = layers[0] as Descriptor | undefined;
    if (
      layers.length !== 1 ||
      !isDescriptor(layer) ||
      !layer.mediaType.startsWith("application/vnd.dev.sigstore.bundle")
    )
      continue;
    const blob = await client.getBlob(layer.digest, MAX_SIGNATURE_BLOB, layer.size);
    found.push({
      evidence: { format: "sigstore-bundle", bundle: blob.toString("utf8") },
      from: `referrer ${d.digest}`,
    });
  }
  return found;
}

export interface Verification {
  digest: string;
  /** Evidence that verified, with the key that verified it. */
  verified: { evidence: Evidence; from: string; format: SignatureFormat; key: TrustedKey }[];
  /** Evidence that did not verify, and why. */
  rejected: { from: string; format: SignatureFormat; reason: string }[];
}

/** Checks found evidence; throws "unsigned" or "untrusted" unless at least one signature verifies. */
export function requireVerified(
  digest: string,
  found: readonly FoundEvidence[],
  keys: readonly TrustedKey[],
): Verification {
  const v: Verification = { digest, verified: [], rejected: [] };
  for (const f of found) {
    const c = checkEvidence(f.evidence, digest, keys);
    if (c.ok) v.verified.push({ evidence: f.evidence, from: f.from, format: c.format, key: c.key });
    else v.rejected.push({ from: f.from, format: f.evidence.format, reason: c.reason });
  }
  if (v.verified.length > 0) return v;
  if (found.length === 0)
    throw new SupplyError(
      "unsigned",
      `${digest} is not signed: no ${signatureTag(digest)} signature and no Sigstore bundle referrer was found; refused`,
    );
  throw new SupplyError(
    "untrusted",
    `no signature on ${digest} verifies with the trusted key${keys.length === 1 ? "" : "s"} (${keys.map((k) => k.fingerprint).join(", ")}); refused:\n${v.rejected
      .map((r) => `  ${r.format} (${r.from}): ${r.reason}`)
      .join("\n")}`,
  );
}
