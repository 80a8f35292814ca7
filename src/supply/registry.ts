// A small OCI distribution client on Node's fetch: manifests, blobs, uploads
// and referrers, with the registry auth flows in common use (anonymous, Basic,
// Bearer token challenge, Docker config.json credentials).
//
// Transport rules: HTTPS always, with certificate verification (extra CAs via
// NODE_EXTRA_CA_CERTS). Plain HTTP only for a loopback registry or when the
// caller says `insecure`, and then only after HTTPS failed to connect, as
// Docker does. Redirects are followed by hand: credentials never go to another
// origin, and HTTPS is never downgraded. Every response body is size-limited
// and every fetched manifest and blob is checked against its digest.

import { type Credential, type CredentialProvider, DockerConfigCredentials } from "./credentials.js";
import { SupplyError } from "./errors.js";
import { isLoopbackRegistry, sha256Digest } from "./reference.js";

export const OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json";
export const OCI_INDEX = "application/vnd.oci.image.index.v1+json";
export const MAX_MANIFEST_BYTES = 4 * 1024 * 1024;

export interface RegistryOptions {
  /** Allow plain HTTP to a registry that is not on loopback. */
  insecure?: boolean;
  credentials?: CredentialProvider;
  /** Per request; default 30 s. */
  timeoutMs?: number;
  userAgent?: string;
}

export interface FetchedManifest {
  bytes: Buffer;
  digest: string;
  mediaType: string;
}

export interface ImageIndex {
  schemaVersion: 2;
  mediaType: typeof OCI_INDEX;
  manifests: Descriptor[];
}

export interface Descriptor {
  mediaType: string;
  digest: string;
  size: number;
  artifactType?: string;
  annotations?: Record<string, string>;
  data?: string;
}

interface Challenge {
  scheme: "basic" | "bearer";
  params: Record<string, string>;
}

/** Parses a WWW-Authenticate header with one challenge: Scheme k="v", k2="v2". */
export function parseChallenge(header: string): Challenge | undefined {
  const m = /^\s*(Basic|Bearer)\b\s*(.*)$/i.exec(header);
  if (!m) return undefined;
  const params: Record<string, string> = {};
  const re = /([A-Za-z][A-Za-z0-9_-]*)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]*))\s*,?/g;
  for (const p of (m[2] as string).matchAll(re))
    params[(p[1] as string).toLowerCase()] = (p[2] ?? p[3] ?? "").replace(/\\(.)/g, "$1");
  return { scheme: (m[1] as string).toLowerCase() as "basic" | "bearer", params };
}

/** The API host for a registry name: Docker Hub's registry lives at registry-1.docker.io. */
function apiHost(registry: string): string {
  return registry === "docker.io" || registry === "index.docker.io" ? "registry-1.docker.io" : registry;
}

function describeNetworkError(err: unknown): string {
  const e = err as Error & { cause?: { code?: string; message?: string } };
  if (e.name === "TimeoutError" || e.name === "AbortError") return "timed out";
  const cause = e.cause;
  if (cause?.code && cause.message) return `${cause.code}: ${cause.message}`;
  return cause?.message ?? e.message;
}

/** A certificate problem is not a reason to try plain HTTP: it is a reason to stop. */
function isCertificateError(err: unknown): boolean {
  const code = (err as { cause?: { code?: string } }).cause?.code ?? "";
  return /CERT|SELF_SIGNED|UNABLE_TO_VERIFY|HOSTNAME|ERR_TLS_CERT/.test(code);
}

export class RegistryClient {
  readonly host: string;
  private base: string | undefined;
  private basic: string | undefined;
  private readonly tokens = new Map<string, { token: string; until: number }>();
  private readonly creds: CredentialProvider;
  private credsLoaded: Promise<Credential | undefined> | undefined;
  private readonly timeoutMs: number;

  constructor(
    readonly registry: string,
    readonly repository: string,
    private readonly o: RegistryOptions = {},
  ) {
    this.host = apiHost(registry);
    this.creds = o.credentials ?? new DockerConfigCredentials();
    this.timeoutMs = o.timeoutMs ?? 30_000;
  }

  private plainHttpAllowed(): boolean {
    return this.o.insecure === true || isLoopbackRegistry(this.registry);
  }

  /** Picks https://, or http:// when allowed and HTTPS cannot connect; remembers the choice. */
  private async baseUrl(): Promise<string> {
    if (this.base) return this.base;
    const https = `https://${this.host}`;
    try {
      await this.send(`${https}/v2/`, { method: "GET" });
      this.base = https;
    } catch (err) {
      if (!this.plainHttpAllowed() || isCertificateError(err)) {
        throw new SupplyError(
          "unreachable",
          `cannot reach registry ${this.registry} over HTTPS: ${describeNetworkError(err)}${
            isCertificateError(err)
              ? " (to trust a private CA, set NODE_EXTRA_CA_CERTS to its certificate file)"
              : this.plainHttpAllowed()
                ? ""
                : " (plain HTTP is used only for loopback registries or with --insecure)"
          }`,
          { cause: err },
        );
      }
      const http = `http://${this.host}`;
      try {
        await this.send(`${http}/v2/`, { method: "GET" });
      } catch (err2) {
        throw new SupplyError(
          "unreachable",
          `cannot reach registry ${this.registry}: HTTPS: ${describeNetworkError(err)}; HTTP: ${describeNetworkError(err2)}`,
          { cause: err2 },
        );
      }
      this.base = http;
    }
    return this.base;
  }

  /** One fetch, no redirects followed, with a timeout. Network errors are thrown as they are. */
  private send(url: string, init: RequestInit): Promise<Response> {
    const headers = new Headers(init.headers);
    headers.set("User-Agent", this.o.userAgent ?? "warden");
    return fetch(url, { ...init, headers, redirect: "manual", signal: AbortSignal.timeout(this.timeoutMs) });
  }

  private loadCreds() {
    this.credsLoaded ??= this.creds.get(this.registry);
    return this.credsLoaded;
  }

  /**
   * A request to the registry API: authenticates on challenge, follows redirects
   * safely, maps network failures and 5xx to "unreachable".
   */
  async request(
    method: string,
    path: string,
    o: { headers?: Record<string, string>; body?: Buffer; push?: boolean } = {},
  ): Promise<Response> {
    const base = await this.baseUrl();
    const url = path.startsWith("http://") || path.startsWith("https://") ? path : `${base}${path}`;
    let res = await this.followRedirects(method, url, o.headers ?? {}, o.body, this.authorization(o.push));
    if (res.status === 401) {
      const challenge = parseChallenge(res.headers.get("www-authenticate") ?? "");
      await res.body?.cancel();
      if (!challenge)
        throw new SupplyError("auth", `registry ${this.registry} refused the request (401) without a usable challenge`);
      await this.answer(challenge, o.push === true);
      res = await this.followRedirects(method, url, o.headers ?? {}, o.body, this.authorization(o.push));
      if (res.status === 401) {
        await res.body?.cancel();
        throw new SupplyError("auth", `registry ${this.registry} refused the credentials (401) for ${method} ${path}`);
      }
    }
    if (res.status === 403) {
      await res.body?.cancel();
      throw new SupplyError("auth", `registry ${this.registry} denied ${method} ${path} (403)`);
    }
    if (res.status >= 500) {
      const text = await readLimited(res, 4096).catch(() => Buffer.alloc(0));
      throw new SupplyError(
        "unreachable",
        `registry ${this.registry} failed (${res.status}): ${text.toString("utf8").trim().slice(0, 300)}`,
      );
    }
    return res;
  }

  private authorization(push?: boolean): string | undefined {
    const scope = this.scope(push === true);
    const t = this.tokens.get(scope);
    if (t && t.until > Date.now()) return `Bearer ${t.token}`;
    if (!push) {
      const pushToken = this.tokens.get(this.scope(true));
      if (pushToken && pushToken.until > Date.now()) return `Bearer ${pushToken.token}`;
    }
    return this.basic;
  }

  private scope(push: boolean): string {
    return `repository:${this.repository}:${push ? "pull,push" : "pull"}`;
  }

  private async answer(challenge: Challenge, push: boolean): Promise<void> {
    const cred = await this.loadCreds();
    if (challenge.scheme === "basic") {
      if (!cred?.username || cred.password === undefined)
        throw new SupplyError(
          "auth",
          `registry ${this.registry} requires credentials (Basic) and none were found; log in with docker login or skopeo login, or pass --authfile`,
        );
      this.basic = `Basic ${Buffer.from(`${cred.username}:${cred.password}`).toString("base64")}`;
      return;
    }
    const realm = challenge.params.realm;
    if (!realm) throw new SupplyError("auth", `registry ${this.registry} sent a Bearer challenge without a realm`);
    let realmUrl: URL;
    try {
      realmUrl = new URL(realm);
    } catch {
      throw new SupplyError("auth", `registry ${this.registry} sent a token realm that is not a URL: ${realm}`);
    }
    const realmPlainOk = this.o.insecure === true || isLoopbackRegistry(realmUrl.host);
    if (realmUrl.protocol !== "https:" && !(realmUrl.protocol === "http:" && realmPlainOk))
      throw new SupplyError("auth", `the token service ${realm} is not HTTPS; refusing to send credentials to it`);
    const scope = this.scope(push);
    const scopes = new Set<string>([scope]);
    if (challenge.params.scope) for (const s of challenge.params.scope.split(" ")) if (s) scopes.add(s);
    const service = challenge.params.service;
    let res: Response;
    try {
      if (cred?.identityToken) {
        const form = new URLSearchParams({
          grant_type: "refresh_token",
          refresh_token: cred.identityToken,
          client_id: "warden",
        });
        if (service) form.set("service", service);
        form.set("scope", [...scopes].join(" "));
        res = await this.send(realmUrl.toString(), {
          method: "POST",
          headers: { "Content-Type": "application/x-www-form-urlencoded" },
          body: form.toString(),
        });
      } else {
        const u = new URL(realmUrl);
        if (service) u.searchParams.set("service", service);
        for (const s of scopes) u.searchParams.append("scope", s);
        const headers: Record<string, string> = {};
        if (cred?.username && cred.password !== undefined)
          headers.Authorization = `Basic ${Buffer.from(`${cred.username}:${cred.password}`).toString("base64")}`;
        res = await this.send(u.toString(), { method: "GET", headers });
      }
    } catch (err) {
      throw new SupplyError(
        "unreachable",
        `cannot reach the token service ${realmUrl.origin}: ${describeNetworkError(err)}`,
        { cause: err },
      );
    }
    const text = (await readLimited(res, 1024 * 1024)).toString("utf8");
    if (res.status === 401 || res.status === 403)
      throw new SupplyError(
        "auth",
        `the token service ${realmUrl.origin} refused ${cred ? "the credentials" : "anonymous access"} (${res.status})`,
      );
    if (res.status !== 200)
      throw new SupplyError("auth", `the token service ${realmUrl.origin} answered ${res.status}`);
    let body: { token?: unknown; access_token?: unknown; expires_in?: unknown };
    try {
      body = JSON.parse(text) as typeof body;
    } catch {
      throw new SupplyError("auth", `the token service ${realmUrl.origin} did not answer with JSON`);
    }
    const token =
      typeof body.token === "string"
        ? body.token
        : typeof body.access_token === "string"
          ? body.access_token
          : undefined;
    if (!token) throw new SupplyError("auth", `the token service ${realmUrl.origin} returned no token`);
    const seconds = typeof body.expires_in === "number" && body.expires_in > 0 ? body.expires_in : 60;
    this.tokens.set(scope, { token, until: Date.now() + Math.max(1, seconds - 10) * 1000 });
  }

  private async followRedirects(
    method: string,
    url: string,
    headers: Record<string, string>,
    body: Buffer | undefined,
    auth: string | undefined,
  ): Promise<Response> {
    const origin = new URL(url).origin;
    let current = url;
    for (let hop = 0; hop <= 5; hop++) {
      const h: Record<string, string> = { ...headers };
      if (auth && new URL(current).origin === origin) h.Authorization = auth;
      let res: Response;
      try {
        res = await this.send(current, { method, headers: h, body });
      } catch (err) {
        throw new SupplyError("unreachable", `cannot reach registry ${this.registry}: ${describeNetworkError(err)}`, {
          cause: err,
        });
      }
      if (![301, 302, 303, 307, 308].includes(res.status)) return res;
      const location = res.headers.get("location");
      await res.body?.cancel();
      if (!location) throw new SupplyError("registry", `registry ${this.registry} redirected without a Location`);
      const next = new URL(location, current);
      if (
        next.protocol === "http:" &&
        new URL(current).protocol === "https:" &&
        !this.o.insecure &&
        !isLoopbackRegistry(next.host)
      )
        throw new SupplyError(
          "registry",
          `registry ${this.registry} redirected from HTTPS to plain HTTP (${next.origin}); refused`,
        );
      if (next.protocol !== "http:" && next.protocol !== "https:")
        throw new SupplyError("registry", `registry ${this.registry} redirected to ${next.protocol}; refused`);
      current = next.toString();
      if (res.status === 303) method = "GET";
    }
    throw new SupplyError("registry", `registry ${this.registry} redirected more than 5 times`);
  }

  private path(kind: "manifests" | "blobs" | "referrers", ref: string): string {
    return `/v2/${this.repository}/${kind}/${ref}`;
  }

  /** GET a manifest by tag or digest; null if the registry has none. Checks the digest. */
  async getManifest(
    ref: string,
    accept: readonly string[] = [OCI_MANIFEST, OCI_INDEX],
  ): Promise<FetchedManifest | null> {
    const res = await this.request("GET", this.path("manifests", ref), { headers: { Accept: accept.join(", ") } });
    if (res.status === 404) {
      await res.body?.cancel();
      return null;
    }
    if (res.status !== 200) throw await unexpected(res, `GET manifest ${ref} from ${this.registry}/${this.repository}`);
    const bytes = await readLimited(res, MAX_MANIFEST_BYTES);
    const digest = sha256Digest(bytes);
    const stated = res.headers.get("docker-content-digest");
    if (ref.startsWith("sha256:") && digest !== ref)
      throw new SupplyError("digest-mismatch", `the manifest fetched as ${ref} has digest ${digest}; refused`);
    if (stated && stated !== digest)
      throw new SupplyError(
        "digest-mismatch",
        `the registry says manifest ${ref} is ${stated}, but its bytes hash to ${digest}; refused`,
      );
    const mediaType = (res.headers.get("content-type") ?? "").split(";")[0]?.trim() ?? "";
    return { bytes, digest, mediaType };
  }

  /** HEAD a manifest: its digest, or null when absent. Used for cheap polling. */
  async headManifest(ref: string, accept: readonly string[] = [OCI_MANIFEST, OCI_INDEX]): Promise<string | null> {
    const res = await this.request("HEAD", this.path("manifests", ref), { headers: { Accept: accept.join(", ") } });
    await res.body?.cancel();
    if (res.status === 404) return null;
    if (res.status !== 200) throw await unexpected(res, `HEAD manifest ${ref}`);
    const digest = res.headers.get("docker-content-digest");
    if (digest && /^sha256:[a-f0-9]{64}$/.test(digest)) return digest;
    // Not every registry names the digest on HEAD: fetch the manifest and hash it.
    return (await this.getManifest(ref, accept))?.digest ?? null;
  }

  /** PUT a manifest under a tag or its digest. Returns the digest and the OCI-Subject header, if any. */
  async putManifest(
    ref: string,
    bytes: Buffer,
    mediaType: string,
  ): Promise<{ digest: string; subject: string | null }> {
    const digest = sha256Digest(bytes);
    const res = await this.request("PUT", this.path("manifests", ref), {
      headers: { "Content-Type": mediaType },
      body: bytes,
      push: true,
    });
    if (res.status !== 201 && res.status !== 200 && res.status !== 202)
      throw await unexpected(res, `PUT manifest ${ref} to ${this.registry}/${this.repository}`);
    await res.body?.cancel();
    const stated = res.headers.get("docker-content-digest");
    if (stated && stated !== digest)
      throw new SupplyError("digest-mismatch", `the registry stored the manifest as ${stated}, but it is ${digest}`);
    return { digest, subject: res.headers.get("oci-subject") };
  }

  async hasBlob(digest: string, push = false): Promise<boolean> {
    const res = await this.request("HEAD", this.path("blobs", digest), { push });
    await res.body?.cancel();
    if (res.status === 200) return true;
    if (res.status === 404) return false;
    throw await unexpected(res, `HEAD blob ${digest}`);
  }

  /** GET a blob and check its digest (and size, when known). */
  async getBlob(digest: string, maxBytes: number, size?: number): Promise<Buffer> {
    if (size !== undefined && size > maxBytes)
      throw new SupplyError("invalid-artifact", `blob ${digest} is ${size} bytes, over the ${maxBytes}-byte limit`);
    const res = await this.request("GET", this.path("blobs", digest));
    if (res.status === 404) {
      await res.body?.cancel();
      throw new SupplyError("registry", `registry ${this.registry} has no blob ${digest} in ${this.repository}`);
    }
    if (res.status !== 200) throw await unexpected(res, `GET blob ${digest}`);
    const bytes = await readLimited(res, maxBytes);
    const actual = sha256Digest(bytes);
    if (actual !== digest)
      throw new SupplyError("digest-mismatch", `blob ${digest} from ${this.registry} has digest ${actual}; refused`);
    if (size !== undefined && bytes.length !== size)
      throw new SupplyError(
        "digest-mismatch",
        `blob ${digest} is ${bytes.length} bytes, not the ${size} its descriptor says`,
      );
    return bytes;
  }

  /** Uploads a blob unless it is there: POST to start, PUT with the digest to finish. */
  async putBlob(bytes: Buffer): Promise<{ digest: string; size: number }> {
    const digest = sha256Digest(bytes);
    const desc = { digest, size: bytes.length };
    if (await this.hasBlob(digest, true)) return desc;
    const start = await this.request("POST", `/v2/${this.repository}/blobs/uploads/`, { push: true });
    await start.body?.cancel();
    const location = start.headers.get("location");
    if (start.status !== 202 || !location)
      throw await unexpected(start, `start an upload to ${this.registry}/${this.repository}`);
    const url = new URL(location, await this.baseUrl());
    url.searchParams.set("digest", digest);
    const done = await this.request("PUT", url.toString(), {
      headers: { "Content-Type": "application/octet-stream" },
      body: bytes,
      push: true,
    });
    if (done.status !== 201) throw await unexpected(done, `finish uploading blob ${digest}`);
    await done.body?.cancel();
    return desc;
  }

  /**
   * The referrers of a digest. `supported: false` when the registry has no
   * referrers API (404/400), in which case callers use the tag-schema fallback.
   */
  async referrers(digest: string): Promise<{ supported: boolean; manifests: Descriptor[] }> {
    const res = await this.request("GET", this.path("referrers", digest), { headers: { Accept: OCI_INDEX } });
    if (res.status === 404 || res.status === 400) {
      await res.body?.cancel();
      return { supported: false, manifests: [] };
    }
    if (res.status !== 200) throw await unexpected(res, `GET referrers of ${digest}`);
    const index = parseIndex(await readLimited(res, MAX_MANIFEST_BYTES), `the referrers of ${digest}`);
    return { supported: true, manifests: index.manifests };
  }
}

/** Parses an OCI image index strictly enough to use its descriptors. */
export function parseIndex(bytes: Buffer, what: string): ImageIndex {
  let v: unknown;
  try {
    v = JSON.parse(bytes.toString("utf8"));
  } catch {
    throw new SupplyError("registry", `${what} is not JSON`);
  }
  const o = v as { schemaVersion?: unknown; mediaType?: unknown; manifests?: unknown };
  if (typeof v !== "object" || v === null || o.schemaVersion !== 2 || !Array.isArray(o.manifests))
    throw new SupplyError("registry", `${what} is not an OCI image index`);
  if (o.mediaType !== undefined && o.mediaType !== OCI_INDEX)
    throw new SupplyError("registry", `${what} has media type ${String(o.mediaType)}, not an OCI image index`);
  const manifests = (o.manifests as unknown[]).filter((d): d is Descriptor => isDescriptor(d));
  return { schemaVersion: 2, mediaType: OCI_INDEX, manifests };
}

export function isDescriptor(d: unknown): d is Descriptor {
  const x = d as Descriptor;
  return (
    typeof d === "object" &&
    d !== null &&
    typeof x.mediaType === "string" &&
    typeof x.digest === "string" &&
    /^sha256:[a-f0-9]{64}$/.test(x.digest) &&
    Number.isSafeInteger(x.size) &&
    x.size >= 0
  );
}

/** Reads a response body, refusing more than `max` bytes. */
export async function readLimited(res: Response, max: number): Promise<Buffer> {
  const length = Number(res.headers.get("content-length") ?? Number.NaN);
  if (Number.isFinite(length) && length > max) {
    await res.body?.cancel();
    throw new SupplyError("invalid-artifact", `the response is ${length} bytes, over the ${max}-byte limit`);
  }
  if (!res.body) return Buffer.alloc(0);
  const chunks: Buffer[] = [];
  let total = 0;
  for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
    total += chunk.length;
    if (total > max) {
      await res.body.cancel().catch(() => {});
      throw new SupplyError("invalid-artifact", `the response is over the ${max}-byte limit`);
    }
    chunks.push(Buffer.from(chunk));
  }
  return Buffer.concat(chunks);
}

async function unexpected(res: Response, what: string): Promise<SupplyError> {
  const text = (await readLimited(res, 8192).catch(() => Buffer.alloc(0))).toString("utf8").trim();
  let detail = text.slice(0, 300);
  try {
    const errors = (JSON.parse(text) as { errors?: { code?: string; message?: string }[] }).errors;
    if (errors?.length) detail = errors.map((e) => `${e.code}: ${e.message}`).join("; ");
  } catch {
    // not JSON: keep the text
  }
  return new SupplyError("registry", `${what}: ${res.status}${detail ? ` (${detail})` : ""}`);
}
