// A policy bundle as an OCI 1.1 artifact: an image manifest with our own
// artifactType, the empty config, and the bundle as its one layer. Pushing
// writes exactly that; pulling accepts exactly that, and checks every digest.
import { canonicalJson } from "../encoding/canonical-json.js";
import { type BundleManifest, MAX_BUNDLE_BYTES, type OpenedBundle, openBundle } from "./bundle.js";
import { SupplyError } from "./errors.js";
import { formatReference, type OciReference, withDigest } from "./reference.js";
import { type Descriptor, isDescriptor, OCI_MANIFEST, RegistryClient, type RegistryOptions } from "./registry.js";

export const BUNDLE_ARTIFACT_TYPE = "application/vnd.warden.policy.bundle.v1";
export const BUNDLE_LAYER_MEDIA_TYPE = "application/vnd.warden.policy.bundle.v1.tar";
export const BUNDLE_LAYER_TITLE = "warden-policy-bundle.tar";
export const EMPTY_MEDIA_TYPE = "application/vnd.oci.empty.v1+json";
export const EMPTY_BLOB = Buffer.from("{}");
export const EMPTY_DIGEST = "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a";
export const EMPTY_DESCRIPTOR = { mediaType: EMPTY_MEDIA_TYPE, digest: EMPTY_DIGEST, size: 2, data: "e30=" } as const;
export const ANNOTATION_CREATED = "org.opencontainers.image.created";
export const ANNOTATION_REVISION = "org.opencontainers.image.revision";
export const ANNOTATION_TITLE = "org.opencontainers.image.title";
export const ANNOTATION_POLICY_SET = "dev.warden.policy.set";

export interface ArtifactManifest {
  schemaVersion: 2;
  mediaType: typeof OCI_MANIFEST;
  artifactType: typeof BUNDLE_ARTIFACT_TYPE;
  config: typeof EMPTY_DESCRIPTOR;
  layers: [Descriptor];
  annotations: Record<string, string>;
}

/** The manifest for a bundle: RFC 8785 canonical JSON, so the same bundle always gives the same manifest digest. */
export function bundleManifestBytes(bundleDigest: string, size: number, m: BundleManifest): Buffer {
  const manifest: ArtifactManifest = {
    schemaVersion: 2,
    mediaType: OCI_MANIFEST,
    artifactType: BUNDLE_ARTIFACT_TYPE,
    config: EMPTY_DESCRIPTOR,
    layers: [
      {
        mediaType: BUNDLE_LAYER_MEDIA_TYPE,
        digest: bundleDigest,
        size,
        annotations: { [ANNOTATION_TITLE]: BUNDLE_LAYER_TITLE },
      },
    ],
    annotations: {
      [ANNOTATION_CREATED]: m.created,
      [ANNOTATION_REVISION]: m.revision,
      [ANNOTATION_POLICY_SET]: m.policySet,
    },
  };
  return Buffer.from(canonicalJson(manifest));
}

/** Checks that manifest bytes describe a Warden bundle; returns the bundle layer. */
export function parseBundleManifest(
  bytes: Buffer,
  what: string,
): { layer: Descriptor; annotations: Record<string, string> } {
  const bad = (why: string) => new SupplyError("invalid-artifact", `${what} is not a Warden policy bundle: ${why}`);
  let m: Record<string, unknown>;
  try {
    m = JSON.parse(bytes.toString("utf8")) as Record<string, unknown>;
  } catch {
    throw bad("the manifest is not JSON");
  }
  if (typeof m !== "object" || m === null || Array.isArray(m)) throw bad("the manifest is not a JSON object");
  if (m.schemaVersion !== 2 || m.mediaType !== OCI_MANIFEST) throw bad("it is not an OCI image manifest");
  if (m.artifactType !== BUNDLE_ARTIFACT_TYPE)
    throw bad(`its artifactType is ${JSON.stringify(m.artifactType ?? null)}, not ${BUNDLE_ARTIFACT_TYPE}`);
  const config = m.config as Descriptor | undefined;
  if (
    !isDescriptor(config) ||
    config.mediaType !== EMPTY_MEDIA_TYPE ||
    config.digest !== EMPTY_DIGEST ||
    config.size !== 2
  )
    throw bad("its config is not the empty descriptor");
  const layers = m.layers;
  if (!Array.isArray(layers) || layers.length !== 1) throw bad("it must have exactly one layer");
  const layer = layers[0] as Descriptor;
  if (!isDescriptor(layer) || layer.mediaType !== BUNDLE_LAYER_MEDIA_TYPE)
    throw bad(`its layer is not a ${BUNDLE_LAYER_MEDIA_TYPE}`);
  if (layer.size > MAX_BUNDLE_BYTES) throw bad(`its layer is larger than ${MAX_BUNDLE_BYTES} bytes`);
  const annotations = (m.annotations ?? {}) as Record<string, string>;
  if (typeof annotations !== "object" || annotations === null) throw bad("its annotations are not an object");
  return { layer, annotations };
}

/** The manifest's annotations must agree with the bundle they describe (both are covered by the signature). */
function checkAnnotations(annotations: Record<string, string>, opened: OpenedBundle, what: string): void {
  const expect: [string, string][] = [
    [ANNOTATION_CREATED, opened.manifest.created],
    [ANNOTATION_REVISION, opened.manifest.revision],
    [ANNOTATION_POLICY_SET, opened.manifest.policySet],
  ];
  for (const [key, value] of expect) {
    if (key in annotations && annotations[key] !== value)
      throw new SupplyError(
        "invalid-artifact",
        `${what}: annotation ${key} is ${JSON.stringify(annotations[key])} but the bundle says ${JSON.stringify(value)}`,
      );
  }
}

export function clientFor(ref: OciReference, o: RegistryOptions = {}): RegistryClient {
  return new RegistryClient(ref.registry, ref.repository, o);
}

export interface PushResult {
  digest: string;
  reference: string;
  manifest: Buffer;
}

/** Pushes bundle bytes (already built) under the reference's tag. */
export async function pushBundle(client: RegistryClient, ref: OciReference, bundleBytes: Buffer): Promise<PushResult> {
  if (ref.tag === undefined || ref.digest !== undefined)
    throw new SupplyError("usage", `push to a tag (oci://HOST/REPO:TAG), not to a digest: ${formatReference(ref)}`);
  const opened = openBundle(bundleBytes);
  await client.putBlob(EMPTY_BLOB);
  await client.putBlob(bundleBytes);
  const manifest = bundleManifestBytes(opened.digest, bundleBytes.length, opened.manifest);
  const { digest } = await client.putManifest(ref.tag, manifest, OCI_MANIFEST);
  return { digest, reference: formatReference(withDigest(ref, digest)), manifest };
}

export interface PulledBundle {
  /** The manifest digest: what signatures name and what decision records carry. */
  digest: string;
  manifest: Buffer;
  bundle: Buffer;
  opened: OpenedBundle;
}

/** Resolves a reference (a tag or a digest) and fetches the manifest: digest-checked, shape-checked. */
export async function fetchBundleManifest(
  client: RegistryClient,
  ref: OciReference,
): Promise<{ digest: string; manifest: Buffer; layer: Descriptor; annotations: Record<string, string> }> {
  const at = ref.digest ?? (ref.tag as string);
  const fetched = await client.getManifest(at, [OCI_MANIFEST]);
  if (!fetched) throw new SupplyError("registry", `${formatReference(ref)} was not found in the registry`);
  const parsed = parseBundleManifest(fetched.bytes, formatReference(ref));
  return { digest: fetched.digest, manifest: fetched.bytes, ...parsed };
}

/** Fetches the bundle layer for a manifest and checks it all the way down. */
export async function fetchBundleLayer(
  client: RegistryClient,
  what: string,
  layer: Descriptor,
  annotations: Record<string, string>,
): Promise<{ bundle: Buffer; opened: OpenedBundle }> {
  const bundle = await client.getBlob(layer.digest, MAX_BUNDLE_BYTES, layer.size);
  const opened = openBundle(bundle);
  checkAnnotations(annotations, opened, what);
  return { bundle, opened };
}

/** Re-checks a manifest and bundle read back from anywhere (the cache): the same checks as a pull. */
export function checkPulled(manifest: Buffer, bundle: Buffer, what: string): OpenedBundle {
  const { layer, annotations } = parseBundleManifest(manifest, what);
  const opened = openBundle(bundle);
  if (opened.digest !== layer.digest || bundle.length !== layer.size)
    throw new SupplyError(
      "digest-mismatch",
      `${what}: the bundle is ${opened.digest}, but the manifest names ${layer.digest}`,
    );
  checkAnnotations(annotations, opened, what);
  return opened;
}

export async function pullBundle(client: RegistryClient, ref: OciReference): Promise<PulledBundle> {
  const m = await fetchBundleManifest(client, ref);
  const { bundle, opened } = await fetchBundleLayer(client, formatReference(ref), m.layer, m.annotations);
  return { digest: m.digest, manifest: m.manifest, bundle, opened };
}
