// OCI references as Warden writes them: oci://HOST[:PORT]/REPO[:TAG][@sha256:HEX].
// The registry host is always explicit (no implied Docker Hub), the grammar is
// the distribution reference grammar, and the only digest algorithm is sha256.
import { createHash } from "node:crypto";
import { SupplyError } from "./errors.js";

export interface OciReference {
  /** host[:port] exactly as written (lower-case); "[::1]:5000" for IPv6. */
  registry: string;
  repository: string;
  tag?: string;
  digest?: string;
}

export const SCHEME = "oci://";
const DIGEST = /^sha256:[a-f0-9]{64}$/;
const TAG = /^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$/;
const PATH_COMPONENT = /^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$/;
const HOST =
  /^(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)(?:\.(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?))*(?::[0-9]{1,5})?$/;
const IPV6_HOST = /^\[[0-9a-fA-F:.]+\](?::[0-9]{1,5})?$/;

export function isDigest(text: string): boolean {
  return DIGEST.test(text);
}

/** `sha256:<hex>` of some bytes. */
export function sha256Digest(bytes: Uint8Array | string): string {
  return `sha256:${createHash("sha256").update(bytes).digest("hex")}`;
}

export function digestHex(digest: string): string {
  if (!DIGEST.test(digest))
    throw new SupplyError("usage", `"${digest}" is not a sha256 digest (sha256:<64 hex digits>)`);
  return digest.slice("sha256:".length);
}

/** True when the text names an OCI reference (the oci:// scheme), as opposed to a file path. */
export function isOciReference(text: string): boolean {
  return text.startsWith(SCHEME);
}

/** Parses oci://HOST/REPO[:TAG][@DIGEST]; the scheme may be left out when `schemeOptional`. */
export function parseReference(text: string, schemeOptional = false): OciReference {
  const bad = (why: string) =>
    new SupplyError(
      "usage",
      `"${text}" is not an OCI reference: ${why} (write oci://HOST[:PORT]/REPO:TAG or @sha256:…)`,
    );
  let rest = text;
  if (rest.startsWith(SCHEME)) rest = rest.slice(SCHEME.length);
  else if (!schemeOptional) throw bad("it must start with oci://");
  if (rest.length > 2048) throw bad("it is too long");
  let digest: string | undefined;
  const at = rest.indexOf("@");
  if (at >= 0) {
    digest = rest.slice(at + 1);
    rest = rest.slice(0, at);
    if (!DIGEST.test(digest)) throw bad(`"${digest}" is not a sha256 digest`);
  }
  const slash = rest.indexOf("/");
  if (slash <= 0) throw bad("it needs a registry host and a repository");
  const registry = rest.slice(0, slash).toLowerCase();
  let path = rest.slice(slash + 1);
  if (!HOST.test(registry) && !IPV6_HOST.test(registry)) throw bad(`"${registry}" is not a registry host`);
  const port = /:(\d+)$/.exec(registry)?.[1];
  if (port !== undefined && (Number(port) < 1 || Number(port) > 65_535)) throw bad(`port ${port} is out of range`);
  let tag: string | undefined;
  const colon = path.lastIndexOf(":");
  if (colon >= 0) {
    tag = path.slice(colon + 1);
    path = path.slice(0, colon);
    if (!TAG.test(tag)) throw bad(`"${tag}" is not a valid tag`);
  }
  if (path.length === 0 || path.length > 255) throw bad("the repository name is empty or longer than 255 characters");
  for (const part of path.split("/")) {
    if (!PATH_COMPONENT.test(part))
      throw bad(`"${part}" is not a valid repository path component (lower-case letters, digits, . _ -)`);
  }
  if (tag === undefined && digest === undefined) throw bad("it needs a :TAG or an @sha256: digest");
  const ref: OciReference = { registry, repository: path };
  if (tag !== undefined) ref.tag = tag;
  if (digest !== undefined) ref.digest = digest;
  return ref;
}

/** The reference as text, always with the oci:// scheme. */
export function formatReference(r: OciReference): string {
  return `${SCHEME}${r.registry}/${r.repository}${r.tag !== undefined ? `:${r.tag}` : ""}${r.digest !== undefined ? `@${r.digest}` : ""}`;
}

/** The same repository at a digest (the tag, if any, kept for readers). */
export function withDigest(r: OciReference, digest: string): OciReference {
  return { ...r, digest };
}

/** host/repo — what cosign puts in critical.identity.docker-reference. */
export function repositoryName(r: OciReference): string {
  return `${r.registry}/${r.repository}`;
}

/** The host without the port, brackets removed. */
export function hostname(registry: string): string {
  if (registry.startsWith("[")) return registry.slice(1, registry.indexOf("]"));
  const colon = registry.lastIndexOf(":");
  return colon >= 0 ? registry.slice(0, colon) : registry;
}

/** 127.0.0.0/8, ::1 and localhost: the registries that may be spoken to over plain HTTP without --insecure. */
export function isLoopbackRegistry(registry: string): boolean {
  const h = hostname(registry).toLowerCase();
  return h === "localhost" || h === "::1" || /^127(?:\.\d{1,3}){3}$/.test(h);
}

/** cosign's legacy signature tag: sha256-<hex>.sig. */
export function signatureTag(digest: string): string {
  return `sha256-${digestHex(digest)}.sig`;
}

/** The OCI 1.1 referrers tag-schema fallback tag: sha256-<hex>. */
export function referrersFallbackTag(digest: string): string {
  return `sha256-${digestHex(digest)}`;
}
