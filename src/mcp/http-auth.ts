// HTTP authentication for the MCP gateway (`warden serve`): static API keys
// stored hashed in the config, and JWT bearer tokens verified offline against a
// local JWKS. Nothing here phones home: no JWKS fetching, and header parameters
// that point at keys (`jku`, `x5u`, `jwk`, `x5c`) are ignored — the only keys
// that can verify a token are the ones in the configured JWKS.
//
// Fail closed: every request without a valid identity gets a 401 with a reason
// an operator can act on. Reasons never contain the key or the token.
import {
  constants,
  createHash,
  createPublicKey,
  type JsonWebKey,
  type KeyObject,
  randomBytes,
  timingSafeEqual,
  verify,
} from "node:crypto";
import type { Authenticator, AuthResult, Identity } from "./identity.js";

/** A static API key. Only its hash is stored. */
export interface ApiKeyConfig {
  /** Names the key in the audit log (`via: "api-key:<name>"`). Unique. */
  name: string;
  /** `sha256:<64 hex digits>` of the key, as printed by hashApiKey. Unique. */
  hash: string;
  agent: { name: string; labels?: Record<string, string> };
  user?: { id?: string; groups?: string[] };
}

/** Which claims give the identity. Names may be dotted paths into nested objects (`realm_access.roles`). */
export interface JwtClaimMapping {
  /** agent.name; default `azp`, falling back to `client_id`. A token without it is rejected. */
  agent?: string;
  /** user.id; default `sub`. */
  user?: string;
  /** user.groups; default `groups`. An array of strings, or a space- or comma-separated string. */
  groups?: string;
  /** agent.labels, from a claim holding an object of strings. None by default. */
  labels?: string;
}

export interface JwtConfig {
  /** The parsed JWKS (`{ "keys": [ ... ] }`); the caller reads the file. */
  jwks: { keys: readonly unknown[] };
  /** The exact `iss` tokens must carry. */
  issuer: string;
  /** Tokens must name this audience (or one of these) in `aud`. */
  audience: string | readonly string[];
  claims?: JwtClaimMapping;
  /** Leeway for `exp`, `nbf` and `iat`, in seconds. Default 60. */
  clockSkewSeconds?: number;
  /** The clock, in milliseconds since the epoch (like Date.now). For tests. */
  now?: () => number;
}

export interface AnonymousConfig {
  agent: { name: string; labels?: Record<string, string> };
  user?: { id?: string; groups?: string[] };
}

export interface HttpAuthConfig {
  apiKeys?: readonly ApiKeyConfig[];
  jwt?: JwtConfig;
  /** For local development: the identity of requests that carry no credentials at all. */
  anonymous?: AnonymousConfig;
}

/** Tokens and keys longer than this are refused before any parsing. */
export const MAX_CREDENTIAL_LENGTH = 16 * 1024;
const DEFAULT_CLOCK_SKEW_SECONDS = 60;
const API_KEY_PREFIX = "wk_";

/** `sha256:<hex>` of a key, the form API keys are stored in. */
export function hashApiKey(key: string): string {
  if (typeof key !== "string" || key.length === 0) throw new Error("API key must be a non-empty string");
  if (/\s/.test(key)) throw new Error("API key must not contain whitespace (it could not be sent in a header)");
  if (key.length > MAX_CREDENTIAL_LENGTH) throw new Error(`API key is longer than ${MAX_CREDENTIAL_LENGTH} characters`);
  return `sha256:${createHash("sha256").update(key, "utf8").digest("hex")}`;
}

/** A new random API key: `wk_` and 32 random bytes, base64url. */
export function generateApiKey(): string {
  return API_KEY_PREFIX + randomBytes(32).toString("base64url");
}

/** Builds an Authenticator; throws an Error naming the problem if the config is invalid. */
export function createAuthenticator(config: HttpAuthConfig): Authenticator {
  return new HttpAuthenticator(config);
}

// ---------------------------------------------------------------------------

type Headers = Readonly<Record<string, string | string[] | undefined>>;

interface StoredKey {
  name: string;
  digest: Buffer;
  agent: { name: string; labels?: Record<string, string> };
  user?: { id?: string; groups?: string[] };
}

class Reject extends Error {}

function fail(reason: string): AuthResult {
  return { ok: false, status: 401, reason };
}

class HttpAuthenticator implements Authenticator {
  readonly #keys = new Map<string, StoredKey>();
  readonly #jwt: JwtVerifier | undefined;
  readonly #anonymous: AnonymousConfig | undefined;

  constructor(config: HttpAuthConfig) {
    if (!isObject(config as unknown)) throw new Error("http auth config must be an object");
    checkFields(config, ["apiKeys", "jwt", "anonymous"], "http auth config");
    if (config.apiKeys !== undefined) {
      if (!Array.isArray(config.apiKeys)) throw new Error("apiKeys must be a list");
      config.apiKeys.forEach((entry, i) => {
        const key = parseApiKey(entry, i);
        if (this.#keys.has(key.digest.toString("hex"))) {
          throw new Error(`apiKeys[${i}] (${key.name}): the same key hash is configured twice`);
        }
        for (const other of this.#keys.values()) {
          if (other.name === key.name) throw new Error(`apiKeys[${i}]: duplicate API key name ${quote(key.name)}`);
        }
        this.#keys.set(key.digest.toString("hex"), key);
      });
    }
    this.#jwt = config.jwt === undefined ? undefined : new JwtVerifier(config.jwt);
    if (config.anonymous !== undefined) {
      const a = config.anonymous;
      if (!isObject(a)) throw new Error("anonymous must be an object");
      checkFields(a, ["agent", "user"], "anonymous");
      this.#anonymous = { agent: parseAgent(a.agent, "anonymous.agent") };
      if (a.user !== undefined) this.#anonymous.user = parseUser(a.user, "anonymous.user");
    }
    if (this.#keys.size === 0 && this.#jwt === undefined && this.#anonymous === undefined) {
      throw new Error("http auth config accepts nobody: configure apiKeys, jwt or anonymous");
    }
  }

  authenticate(headers: Headers): AuthResult {
    try {
      return this.#authenticate(headers);
    } catch (e) {
      if (e instanceof Reject) return fail(e.message);
      return fail(`authentication failed: internal error (${e instanceof Error ? e.name : "unknown"})`);
    }
  }

  #authenticate(headers: Headers): AuthResult {
    const authorization = header(headers, "authorization", "Authorization");
    const apiKey = header(headers, "x-api-key", "X-API-Key");
    if (authorization === undefined && apiKey === undefined) {
      if (this.#anonymous) return { ok: true, identity: anonymousIdentity(this.#anonymous) };
      return fail(`no credentials: send ${this.#accepted()}`);
    }
    if (authorization !== undefined && apiKey !== undefined) {
      return fail("both Authorization and X-API-Key headers were sent; send exactly one credential");
    }
    if (apiKey !== undefined) {
      const key = apiKey.trim();
      if (key === "") return fail("empty X-API-Key header");
      if (this.#keys.size === 0)
        return fail(`X-API-Key is not accepted (no API keys are configured); send ${this.#accepted()}`);
      return this.#apiKey(key);
    }
    const token = bearerToken(authorization ?? "");
    if (this.#jwt && (token.includes(".") || this.#keys.size === 0)) {
      // A generated API key has no dots; a JWT always has two. Configured keys still win on an exact match.
      const byKey = this.#keys.size > 0 ? this.#lookup(token) : undefined;
      return byKey ?? this.#jwt.verify(token);
    }
    if (this.#keys.size === 0) return fail("bearer tokens are not accepted: no API keys or JWT issuer are configured");
    return this.#apiKey(token);
  }

  #apiKey(key: string): AuthResult {
    return this.#lookup(key) ?? fail("unknown API key");
  }

  /** Finds the key by the SHA-256 digest of what was sent, then confirms the digests in constant time. */
  #lookup(key: string): AuthResult | undefined {
    if (key.length > MAX_CREDENTIAL_LENGTH) {
      throw new Reject(`credential too large (${key.length} characters; the limit is ${MAX_CREDENTIAL_LENGTH})`);
    }
    const digest = createHash("sha256").update(key, "utf8").digest();
    const entry = this.#keys.get(digest.toString("hex"));
    if (entry === undefined || !timingSafeEqual(entry.digest, digest)) return undefined;
    const identity: Identity = { agent: copyAgent(entry.agent), via: `api-key:${entry.name}` };
    if (entry.user) identity.user = copyUser(entry.user);
    return { ok: true, identity };
  }

  #accepted(): string {
    const ways: string[] = [];
    if (this.#jwt && this.#keys.size > 0) ways.push("Authorization: Bearer <API key or JWT>", "X-API-Key: <API key>");
    else if (this.#jwt) ways.push(`Authorization: Bearer <JWT from ${this.#jwt.issuer}>`);
    else if (this.#keys.size > 0) ways.push("Authorization: Bearer <API key>", "X-API-Key: <API key>");
    return ways.join(" or ") || "no credentials (anonymous access)";
  }
}

/** The single value of a header, or undefined if absent. Header names are matched case-insensitively. */
function header(headers: Headers, lower: string, display: string): string | undefined {
  let value: unknown = Object.hasOwn(headers, lower) ? headers[lower] : undefined;
  if (value === undefined) {
    for (const name of Object.keys(headers)) {
      if (name.toLowerCase() === lower && headers[name] !== undefined) {
        if (value !== undefined) throw new Reject(`several ${display} headers; send exactly one`);
        value = headers[name];
      }
    }
  }
  if (value === undefined) return undefined;
  if (Array.isArray(value)) {
    if (value.length === 0) return undefined;
    if (value.length > 1) throw new Reject(`several ${display} headers; send exactly one`);
    value = value[0];
  }
  if (typeof value !== "string") throw new Reject(`malformed ${display} header`);
  return value;
}

/** Schemes we may name in a reason. Anything else might be a raw secret sent without a scheme. */
const KNOWN_SCHEMES = new Set(["basic", "digest", "negotiate", "ntlm", "dpop", "token", "apikey", "hoba", "mutual"]);

function bearerToken(authorization: string): string {
  const value = authorization.trim();
  if (value === "") throw new Reject("empty Authorization header; send Authorization: Bearer <token>");
  const match = /^(\S+)(?:[ \t]+(.*))?$/s.exec(value);
  const scheme = match?.[1] ?? "";
  if (scheme.toLowerCase() !== "bearer") {
    const named = KNOWN_SCHEMES.has(scheme.toLowerCase()) ? ` (${scheme})` : "";
    throw new Reject(`unsupported Authorization scheme${named}; send Authorization: Bearer <token>`);
  }
  const token = match?.[2] ?? "";
  if (token === "") throw new Reject("empty bearer token; send Authorization: Bearer <token>");
  if (/\s/.test(token)) throw new Reject("malformed bearer token: it contains whitespace");
  return token;
}

function anonymousIdentity(config: AnonymousConfig): Identity {
  const identity: Identity = { agent: copyAgent(config.agent), via: "anonymous" };
  if (config.user) identity.user = copyUser(config.user);
  return identity;
}

function copyAgent(agent: { name: string; labels?: Record<string, string> }): Identity["agent"] {
  return agent.labels ? { name: agent.name, labels: { ...agent.labels } } : { name: agent.name };
}

function copyUser(user: { id?: string; groups?: string[] }): NonNullable<Identity["user"]> {
  const out: NonNullable<Identity["user"]> = {};
  if (user.id !== undefined) out.id = user.id;
  if (user.groups !== undefined) out.groups = [...user.groups];
  return out;
}

// ---------------------------------------------------------------------------
// JWT (RFC 7519) in JWS compact serialisation (RFC 7515), algorithms of RFC 7518 / 8037.

interface AlgSpec {
  kty: "RSA" | "EC" | "OKP";
  /** Digest for crypto.verify; null for EdDSA. */
  hash: string | null;
  /** Curves the key must be on (EC, OKP). */
  crv?: readonly string[];
  /** RSA-PSS salt length (= digest length). */
  pssSalt?: number;
  /** ECDSA: the exact length of the R||S signature. */
  sigLength?: number;
}

const ALGORITHMS = new Map<string, AlgSpec>([
  ["RS256", { kty: "RSA", hash: "sha256" }],
  ["RS384", { kty: "RSA", hash: "sha384" }],
  ["RS512", { kty: "RSA", hash: "sha512" }],
  ["PS256", { kty: "RSA", hash: "sha256", pssSalt: 32 }],
  ["PS384", { kty: "RSA", hash: "sha384", pssSalt: 48 }],
  ["PS512", { kty: "RSA", hash: "sha512", pssSalt: 64 }],
  ["ES256", { kty: "EC", hash: "sha256", crv: ["P-256"], sigLength: 64 }],
  ["ES384", { kty: "EC", hash: "sha384", crv: ["P-384"], sigLength: 96 }],
  ["ES512", { kty: "EC", hash: "sha512", crv: ["P-521"], sigLength: 132 }],
  ["EdDSA", { kty: "OKP", hash: null, crv: ["Ed25519", "Ed448"] }],
  ["Ed25519", { kty: "OKP", hash: null, crv: ["Ed25519"] }],
]);
const SUPPORTED = [...ALGORITHMS.keys()].join(", ");
const SIGNING_CURVES: Record<string, readonly string[]> = {
  EC: ["P-256", "P-384", "P-521"],
  OKP: ["Ed25519", "Ed448"],
};
const PRIVATE_MEMBERS = ["d", "p", "q", "dp", "dq", "qi", "oth", "k"];
const MIN_RSA_BITS = 2048;

interface VerificationKey {
  kid: string | undefined;
  kty: "RSA" | "EC" | "OKP";
  crv: string | undefined;
  alg: string | undefined;
  key: KeyObject;
  label: string;
}

function fits(key: VerificationKey, alg: string, spec: AlgSpec): boolean {
  if (key.kty !== spec.kty) return false;
  if (spec.crv && !spec.crv.includes(key.crv ?? "")) return false;
  return key.alg === undefined || key.alg === alg;
}

class JwtVerifier {
  readonly issuer: string;
  readonly #audiences: readonly string[];
  readonly #keys: VerificationKey[] = [];
  readonly #skew: number;
  readonly #now: () => number;
  readonly #claims: { agent: string[]; user: string; groups: string; labels: string | undefined };

  constructor(config: JwtConfig) {
    if (!isObject(config as unknown)) throw new Error("jwt must be an object");
    checkFields(config, ["jwks", "issuer", "audience", "claims", "clockSkewSeconds", "now"], "jwt");
    if (typeof config.issuer !== "string" || config.issuer === "")
      throw new Error("jwt.issuer must be a non-empty string");
    this.issuer = config.issuer;
    const audiences = typeof config.audience === "string" ? [config.audience] : config.audience;
    if (!Array.isArray(audiences) || audiences.length === 0 || !audiences.every((a) => typeof a === "string" && a)) {
      throw new Error("jwt.audience must be a non-empty string or a non-empty list of strings");
    }
    this.#audiences = [...audiences];
    const skew = config.clockSkewSeconds ?? DEFAULT_CLOCK_SKEW_SECONDS;
    if (typeof skew !== "number" || !Number.isFinite(skew) || skew < 0) {
      throw new Error("jwt.clockSkewSeconds must be a number of seconds >= 0");
    }
    this.#skew = skew;
    if (config.now !== undefined && typeof config.now !== "function") throw new Error("jwt.now must be a function");
    this.#now = config.now ?? Date.now;
    const claims = config.claims ?? {};
    if (!isObject(claims as unknown)) throw new Error("jwt.claims must be an object");
    checkFields(claims, ["agent", "user", "groups", "labels"], "jwt.claims");
    for (const [field, path] of Object.entries(claims)) {
      if (path !== undefined && (typeof path !== "string" || !validPath(path))) {
        throw new Error(`jwt.claims.${field} must be a claim name or a dotted path (e.g. realm_access.roles)`);
      }
    }
    this.#claims = {
      agent: claims.agent !== undefined ? [claims.agent] : ["azp", "client_id"],
      user: claims.user ?? "sub",
      groups: claims.groups ?? "groups",
      labels: claims.labels,
    };
    this.#loadJwks(config.jwks);
  }

  #loadJwks(jwks: unknown): void {
    if (!isObject(jwks) || !Array.isArray(jwks.keys)) throw new Error('jwt.jwks must be a JWKS: { "keys": [ ... ] }');
    const skipped: string[] = [];
    for (const [i, jwk] of (jwks.keys as unknown[]).entries()) {
      const key = parseJwk(jwk, i);
      if (typeof key === "string") {
        skipped.push(key);
        continue;
      }
      if (key.kid !== undefined && this.#keys.some((k) => k.kid === key.kid && k.kty === key.kty)) {
        throw new Error(`${key.label}: two ${key.kty} keys have this kid`);
      }
      this.#keys.push(key);
    }
    if (this.#keys.length === 0) {
      const why = skipped.length ? ` (skipped: ${skipped.join("; ")})` : "";
      throw new Error(`jwt.jwks has no usable signature verification keys${why}`);
    }
  }

  verify(token: string): AuthResult {
    if (token.length > MAX_CREDENTIAL_LENGTH) {
      return fail(`JWT too large (${token.length} characters; the limit is ${MAX_CREDENTIAL_LENGTH})`);
    }
    const parts = token.split(".");
    if (parts.length !== 3) {
      const what = parts.length === 5 ? " (an encrypted JWE; only signed JWTs are accepted)" : "";
      return fail(`malformed JWT: expected header.payload.signature, got ${parts.length} parts${what}`);
    }
    const [h64 = "", p64 = "", s64 = ""] = parts;
    const header = decodeJson(h64, "header");
    const alg = header.alg;
    if (typeof alg !== "string") return fail("JWT header has no alg");
    if (alg.toLowerCase() === "none") return fail("JWT alg none (an unsigned token) is not accepted");
    if (/^HS\d+$/i.test(alg)) {
      return fail(`JWT alg ${quote(alg)} (HMAC) is not accepted: tokens must be signed with a key from the JWKS`);
    }
    const spec = ALGORITHMS.get(alg);
    if (!spec) return fail(`JWT alg ${quote(alg)} is not supported; supported: ${SUPPORTED}`);
    if (header.crit !== undefined) return fail("JWT header has crit extensions, which are not supported");
    if (header.kid !== undefined && typeof header.kid !== "string") return fail("JWT header kid must be a string");
    const key = this.#chooseKey(header.kid as string | undefined, alg, spec);
    const payload = decodeBase64url(p64, "payload");
    const signature = decodeBase64url(s64, "signature");
    if (signature.length === 0) return fail("JWT has an empty signature");
    if (spec.sigLength !== undefined && signature.length !== spec.sigLength) {
      return fail(
        `JWT signature verification failed (an ${alg} signature is ${spec.sigLength} bytes, got ${signature.length})`,
      );
    }
    const input = Buffer.from(`${h64}.${p64}`, "ascii");
    const options =
      spec.kty === "RSA"
        ? spec.pssSalt === undefined
          ? { key: key.key, padding: constants.RSA_PKCS1_PADDING }
          : { key: key.key, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: spec.pssSalt }
        : spec.kty === "EC"
          ? { key: key.key, dsaEncoding: "ieee-p1363" as const }
          : { key: key.key };
    let valid = false;
    try {
      valid = verify(spec.hash, input, options, signature);
    } catch {
      valid = false;
    }
    if (!valid) return fail(`JWT signature verification failed (${alg}, ${key.label})`);
    // Only now is the payload trusted enough to read.
    return this.#identity(parseJson(payload, "payload"));
  }

  #chooseKey(kid: string | undefined, alg: string, spec: AlgSpec): VerificationKey {
    if (kid !== undefined) {
      const named = this.#keys.filter((k) => k.kid === kid);
      if (named.length === 0) throw new Reject(`JWT key id (kid) ${quote(kid)} is not in the JWKS`);
      const key = named.find((k) => fits(k, alg, spec));
      if (!key) {
        const what = named.map((k) => `${k.kty}${k.crv ? ` ${k.crv}` : ""}${k.alg ? `, alg ${k.alg}` : ""}`).join("; ");
        throw new Reject(`JWT alg ${alg} does not match JWKS key ${quote(kid)} (${what})`);
      }
      return key;
    }
    const candidates = this.#keys.filter((k) => fits(k, alg, spec));
    const [only] = candidates;
    if (only === undefined) throw new Reject(`JWT has no kid and no JWKS key fits alg ${alg}`);
    if (candidates.length > 1) {
      throw new Reject(`JWT has no kid and ${candidates.length} JWKS keys fit alg ${alg}; the token must name its key`);
    }
    return only;
  }

  #identity(claims: Record<string, unknown>): AuthResult {
    const nowMs = this.#now();
    if (typeof nowMs !== "number" || !Number.isFinite(nowMs)) throw new Error("clock returned a non-number");
    const now = nowMs / 1000;
    const skew = this.#skew;

    if (claims.iss === undefined) return fail(`JWT has no iss claim; expected ${quote(this.issuer)}`);
    if (claims.iss !== this.issuer) {
      return fail(`JWT issuer ${quote(String(claims.iss))} is not the configured issuer ${quote(this.issuer)}`);
    }
    const aud = claims.aud;
    const expected = this.#audiences.map(quote).join(" or ");
    if (aud === undefined) return fail(`JWT has no aud claim; expected ${expected}`);
    const auds = typeof aud === "string" ? [aud] : Array.isArray(aud) ? aud : undefined;
    if (auds === undefined) return fail("JWT aud claim must be a string or a list of strings");
    if (!auds.some((a) => typeof a === "string" && this.#audiences.includes(a))) {
      const got = auds
        .slice(0, 5)
        .map((a) => quote(String(a)))
        .join(", ");
      return fail(`JWT audience ${got || "[]"} does not include ${expected}`);
    }
    const exp = numericDate(claims, "exp");
    if (exp === undefined) return fail("JWT has no exp claim; tokens must expire");
    if (now >= exp + skew) return fail(`JWT expired at ${isoTime(exp)} (now ${isoTime(now)}, clock skew ${skew} s)`);
    const nbf = numericDate(claims, "nbf");
    if (nbf !== undefined && now + skew < nbf) {
      return fail(`JWT not valid before ${isoTime(nbf)} (now ${isoTime(now)}, clock skew ${skew} s)`);
    }
    const iat = numericDate(claims, "iat");
    if (iat !== undefined && iat > now + skew) {
      return fail(`JWT issued in the future, at ${isoTime(iat)} (now ${isoTime(now)}, clock skew ${skew} s)`);
    }

    const mapping = this.#claims;
    let agentName: string | undefined;
    for (const path of mapping.agent) {
      const value = claimAt(claims, path);
      if (value === undefined) continue;
      if (typeof value !== "string" || value === "")
        return fail(`JWT claim ${path} (the agent) must be a non-empty string`);
      agentName = value;
      break;
    }
    if (agentName === undefined) {
      const names = mapping.agent.join(" or ");
      return fail(`JWT has no ${names} claim naming the agent; set jwt.claims.agent to the claim that does`);
    }
    const identity: Identity = { agent: { name: agentName }, via: `jwt:${this.issuer}` };
    if (mapping.labels !== undefined) {
      const labels = claimAt(claims, mapping.labels);
      if (labels !== undefined) {
        if (!isObject(labels) || !Object.values(labels).every((v) => typeof v === "string")) {
          return fail(`JWT claim ${mapping.labels} (agent labels) must be an object of strings`);
        }
        identity.agent.labels = { ...(labels as Record<string, string>) };
      }
    }
    const user: NonNullable<Identity["user"]> = { claims };
    const id = claimAt(claims, mapping.user);
    if (id !== undefined) {
      if (typeof id !== "string") return fail(`JWT claim ${mapping.user} (the user) must be a string`);
      user.id = id;
    }
    const groups = claimAt(claims, mapping.groups);
    if (groups !== undefined) {
      if (typeof groups === "string") {
        user.groups = groups.split(/[\s,]+/).filter((g) => g !== "");
      } else if (Array.isArray(groups) && groups.every((g) => typeof g === "string")) {
        user.groups = [...groups];
      } else {
        return fail(
          `JWT claim ${mapping.groups} (groups) must be a list of strings or a space- or comma-separated string`,
        );
      }
    }
    identity.user = user;
    return { ok: true, identity };
  }
}

/** A JWKS entry as a verification key; a string saying why it was skipped; or throws if it is misconfigured. */
function parseJwk(jwk: unknown, i: number): VerificationKey | string {
  if (!isObject(jwk)) throw new Error(`jwt.jwks.keys[${i}] is not an object`);
  if (jwk.kid !== undefined && typeof jwk.kid !== "string")
    throw new Error(`jwt.jwks.keys[${i}]: kid must be a string`);
  const kid = jwk.kid as string | undefined;
  const label = kid !== undefined ? `JWKS key ${quote(kid)}` : `JWKS key #${i}`;
  const kty = jwk.kty;
  if (typeof kty !== "string") throw new Error(`${label}: kty is missing`);
  if (kty === "oct") throw new Error(`${label} is a symmetric key (kty oct); JWTs are verified only with public keys`);
  const secret = PRIVATE_MEMBERS.find((m) => jwk[m] !== undefined);
  if (secret) throw new Error(`${label} holds private key material (${secret}); the JWKS must hold public keys only`);
  if (jwk.use !== undefined && jwk.use !== "sig") return `${label}: use ${String(jwk.use)}`;
  if (Array.isArray(jwk.key_ops) && !jwk.key_ops.includes("verify")) return `${label}: key_ops without verify`;
  if (kty !== "RSA" && kty !== "EC" && kty !== "OKP") return `${label}: kty ${kty}`;
  const crv = typeof jwk.crv === "string" ? jwk.crv : undefined;
  if (kty !== "RSA" && !SIGNING_CURVES[kty]?.includes(crv ?? "")) return `${label}: curve ${String(jwk.crv)}`;
  let alg: string | undefined;
  if (jwk.alg !== undefined) {
    if (typeof jwk.alg !== "string") throw new Error(`${label}: alg must be a string`);
    const spec = ALGORITHMS.get(jwk.alg);
    if (!spec) return `${label}: alg ${jwk.alg}`;
    if (spec.kty !== kty || (spec.crv && !spec.crv.includes(crv ?? ""))) {
      throw new Error(`${label}: alg ${jwk.alg} does not fit a ${kty}${crv ? ` ${crv}` : ""} key`);
    }
    alg = jwk.alg;
  }
  let key: KeyObject;
  try {
    key = createPublicKey({ key: jwk as JsonWebKey, format: "jwk" });
  } catch (e) {
    throw new Error(`${label} is not a valid ${kty} public key: ${e instanceof Error ? e.message : String(e)}`);
  }
  if (kty === "RSA") {
    const bits = key.asymmetricKeyDetails?.modulusLength ?? 0;
    if (bits < MIN_RSA_BITS)
      throw new Error(`${label} is a ${bits}-bit RSA key; at least ${MIN_RSA_BITS} bits are required`);
  }
  return { kid, kty, crv, alg, key, label };
}

function numericDate(claims: Record<string, unknown>, name: string): number | undefined {
  const value = claims[name];
  if (value === undefined) return undefined;
  if (typeof value !== "number" || !Number.isFinite(value)) {
    throw new Reject(`JWT ${name} claim must be a number of seconds since the epoch`);
  }
  return value;
}

/** A claim by exact name, or else by a dotted path through nested objects. Own properties only. */
function claimAt(claims: Record<string, unknown>, path: string): unknown {
  if (Object.hasOwn(claims, path)) return claims[path];
  if (!path.includes(".")) return undefined;
  let node: unknown = claims;
  for (const part of path.split(".")) {
    if (!isObject(node) || !Object.hasOwn(node, part)) return undefined;
    node = node[part];
  }
  return node;
}

function validPath(path: string): boolean {
  return path !== "" && path.split(".").every((p) => p !== "");
}

const BASE64URL = /^[A-Za-z0-9_-]*$/;
const UTF8 = new TextDecoder("utf-8", { fatal: true });

/** Strict base64url: the alphabet only, no padding, and canonical (what re-encodes to the same text). */
function decodeBase64url(text: string, part: string): Buffer {
  if (!BASE64URL.test(text) || text.length % 4 === 1) throw new Reject(`malformed JWT: the ${part} is not base64url`);
  const bytes = Buffer.from(text, "base64url");
  if (bytes.toString("base64url") !== text) throw new Reject(`malformed JWT: the ${part} is not canonical base64url`);
  return bytes;
}

function decodeJson(text: string, part: "header" | "payload"): Record<string, unknown> {
  return parseJson(decodeBase64url(text, part), part);
}

function parseJson(bytes: Buffer, part: "header" | "payload"): Record<string, unknown> {
  let value: unknown;
  try {
    value = JSON.parse(UTF8.decode(bytes));
  } catch {
    throw new Reject(`malformed JWT: the ${part} is not JSON`);
  }
  if (!isObject(value)) throw new Reject(`malformed JWT: the ${part} is not a JSON object`);
  return value;
}

function isoTime(seconds: number): string {
  const date = new Date(seconds * 1000);
  return Number.isNaN(date.getTime()) ? String(seconds) : date.toISOString();
}

// ---------------------------------------------------------------------------
// Config parsing.

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function checkFields(value: object, allowed: readonly string[], where: string): void {
  for (const key of Object.keys(value)) {
    if (!allowed.includes(key))
      throw new Error(`${where}: unknown field ${quote(key)} (expected ${allowed.join(", ")})`);
  }
}

function parseApiKey(entry: unknown, i: number): StoredKey {
  const where = `apiKeys[${i}]`;
  if (!isObject(entry)) throw new Error(`${where} must be an object`);
  checkFields(entry, ["name", "hash", "agent", "user"], where);
  if (typeof entry.name !== "string" || entry.name === "") throw new Error(`${where}.name must be a non-empty string`);
  const named = `${where} (${entry.name})`;
  const hash = typeof entry.hash === "string" ? /^sha256:([0-9a-fA-F]{64})$/.exec(entry.hash) : null;
  if (!hash?.[1]) {
    throw new Error(
      `${named}.hash must be "sha256:" followed by 64 hex digits (the SHA-256 of the key; never the key itself)`,
    );
  }
  const key: StoredKey = {
    name: entry.name,
    digest: Buffer.from(hash[1], "hex"),
    agent: parseAgent(entry.agent, `${named}.agent`),
  };
  if (entry.user !== undefined) key.user = parseUser(entry.user, `${named}.user`);
  return key;
}

function parseAgent(value: unknown, where: string): { name: string; labels?: Record<string, string> } {
  if (!isObject(value)) throw new Error(`${where} must be an object with a name`);
  checkFields(value, ["name", "labels"], where);
  if (typeof value.name !== "string" || value.name === "") throw new Error(`${where}.name must be a non-empty string`);
  if (value.labels === undefined) return { name: value.name };
  if (!isObject(value.labels) || !Object.values(value.labels).every((v) => typeof v === "string")) {
    throw new Error(`${where}.labels must be an object of strings`);
  }
  return { name: value.name, labels: { ...(value.labels as Record<string, string>) } };
}

function parseUser(value: unknown, where: string): { id?: string; groups?: string[] } {
  if (!isObject(value)) throw new Error(`${where} must be an object`);
  checkFields(value, ["id", "groups"], where);
  const user: { id?: string; groups?: string[] } = {};
  if (value.id !== undefined) {
    if (typeof value.id !== "string") throw new Error(`${where}.id must be a string`);
    user.id = value.id;
  }
  if (value.groups !== undefined) {
    if (!Array.isArray(value.groups) || !value.groups.every((g) => typeof g === "string")) {
      throw new Error(`${where}.groups must be a list of strings`);
    }
    user.groups = [...value.groups];
  }
  return user;
}

/** A value for a reason: JSON-quoted (control characters escaped) and cut short. */
function quote(value: string): string {
  return JSON.stringify(value.length > 80 ? `${value.slice(0, 80)}…` : value);
}
