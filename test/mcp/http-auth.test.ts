// HTTP authentication: API keys stored hashed, JWTs verified offline against a
// JWKS. Real crypto throughout: the tokens are signed here with crypto.sign by
// a tiny independent signer (RFC 7515 compact serialisation, RFC 7518 encodings).
import assert from "node:assert/strict";
import { constants, createHash, createHmac, generateKeyPairSync, type KeyObject, sign } from "node:crypto";
import { describe, it } from "node:test";
import {
  createAuthenticator,
  generateApiKey,
  type HttpAuthConfig,
  hashApiKey,
  type JwtConfig,
  MAX_CREDENTIAL_LENGTH,
} from "../../src/mcp/http-auth.js";
import type { AuthResult, Identity } from "../../src/mcp/identity.js";

const ISSUER = "https://idp.example.com/realms/warden";
const AUDIENCE = "warden-gateway";
const NOW_MS = Date.UTC(2026, 4, 15, 12, 0, 0);
const NOW = NOW_MS / 1000;

const rsa = generateKeyPairSync("rsa", { modulusLength: 2048 });
const p256 = generateKeyPairSync("ec", { namedCurve: "P-256" });
const p384 = generateKeyPairSync("ec", { namedCurve: "P-384" });
const p521 = generateKeyPairSync("ec", { namedCurve: "P-521" });
const ed25519 = generateKeyPairSync("ed25519");
const attackerEc = generateKeyPairSync("ec", { namedCurve: "P-256" });
const attackerEd = generateKeyPairSync("ed25519");

function jwk(
  pair: { publicKey: KeyObject },
  kid: string,
  extra: Record<string, unknown> = {},
): Record<string, unknown> {
  return { ...pair.publicKey.export({ format: "jwk" }), kid, use: "sig", ...extra };
}

const JWKS = {
  keys: [
    jwk(rsa, "rsa-1"),
    jwk(p256, "ec-256"),
    jwk(p384, "ec-384"),
    jwk(p521, "ec-521"),
    jwk(ed25519, "ed-1"),
    // Keys a verifier must skip: an encryption key.
    { ...jwk(generateKeyPairSync("x25519"), "enc-1"), use: "enc" },
  ],
};

const b64u = (data: Buffer | string): string => Buffer.from(data).toString("base64url");

/** Signs header.payload with the RFC 7518 encoding for alg. */
function signRaw(alg: string, data: Buffer, key: KeyObject): Buffer {
  const bits = alg.slice(2);
  const hash = `sha${bits}`;
  if (alg.startsWith("RS")) return sign(hash, data, { key, padding: constants.RSA_PKCS1_PADDING });
  if (alg.startsWith("PS")) {
    return sign(hash, data, { key, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: Number(bits) / 8 });
  }
  if (alg.startsWith("ES")) return sign(hash, data, { key, dsaEncoding: "ieee-p1363" });
  if (alg === "EdDSA") return sign(null, data, key);
  throw new Error(`test signer: no ${alg}`);
}

function jwt(header: Record<string, unknown>, payload: Record<string, unknown>, key: KeyObject): string {
  const input = `${b64u(JSON.stringify(header))}.${b64u(JSON.stringify(payload))}`;
  return `${input}.${b64u(signRaw(String(header.alg), Buffer.from(input), key))}`;
}

function claims(extra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    iss: ISSUER,
    aud: AUDIENCE,
    sub: "alice@example.com",
    azp: "dev-assistant",
    iat: NOW - 10,
    exp: NOW + 300,
    ...extra,
  };
}

function jwtConfig(extra: Partial<JwtConfig> = {}): JwtConfig {
  return { jwks: JWKS, issuer: ISSUER, audience: AUDIENCE, now: () => NOW_MS, ...extra };
}

const SIGNERS: Record<string, { key: KeyObject; kid: string }> = {
  RS256: { key: rsa.privateKey, kid: "rsa-1" },
  RS384: { key: rsa.privateKey, kid: "rsa-1" },
  RS512: { key: rsa.privateKey, kid: "rsa-1" },
  PS256: { key: rsa.privateKey, kid: "rsa-1" },
  PS384: { key: rsa.privateKey, kid: "rsa-1" },
  PS512: { key: rsa.privateKey, kid: "rsa-1" },
  ES256: { key: p256.privateKey, kid: "ec-256" },
  ES384: { key: p384.privateKey, kid: "ec-384" },
  ES512: { key: p521.privateKey, kid: "ec-521" },
  EdDSA: { key: ed25519.privateKey, kid: "ed-1" },
};

function token(alg = "ES256", payload = claims(), header: Record<string, unknown> = {}): string {
  const signer = SIGNERS[alg];
  assert.ok(signer, alg);
  return jwt({ alg, typ: "JWT", kid: signer.kid, ...header }, payload, signer.key);
}

const bearer = (t: string) => ({ authorization: `Bearer ${t}` });

function ok(result: AuthResult): Identity {
  assert.equal(result.ok, true, result.ok ? "" : result.reason);
  assert.ok(result.ok);
  return result.identity;
}

function rejected(result: AuthResult, reason: RegExp, secret?: string): string {
  assert.equal(result.ok, false, "expected a rejection");
  assert.ok(!result.ok);
  assert.equal(result.status, 401);
  assert.match(result.reason, reason);
  if (secret !== undefined) assert.ok(!result.reason.includes(secret), `reason leaks the credential: ${result.reason}`);
  return result.reason;
}

describe("JWT", () => {
  const auth = createAuthenticator({ jwt: jwtConfig() });

  for (const alg of Object.keys(SIGNERS)) {
    it(`accepts ${alg}`, () => {
      const identity = ok(auth.authenticate(bearer(token(alg))));
      assert.equal(identity.via, `jwt:${ISSUER}`);
      assert.equal(identity.agent.name, "dev-assistant");
      assert.equal(identity.user?.id, "alice@example.com");
    });
  }

  it("rejects a signature by another key under a trusted kid", () => {
    for (const [alg, key, kid] of [
      ["ES256", attackerEc.privateKey, "ec-256"],
      ["EdDSA", attackerEd.privateKey, "ed-1"],
    ] as const) {
      const forged = jwt({ alg, kid }, claims(), key);
      rejected(auth.authenticate(bearer(forged)), /signature verification failed/, forged);
    }
  });

  it("rejects a flipped signature bit for each algorithm family", () => {
    for (const alg of ["RS256", "PS256", "ES384", "EdDSA"]) {
      const [h, p, s = ""] = token(alg).split(".");
      const sig = Buffer.from(s, "base64url");
      sig[5] = (sig[5] ?? 0) ^ 1;
      rejected(auth.authenticate(bearer(`${h}.${p}.${b64u(sig)}`)), /signature verification failed/);
    }
  });

  it("requires RSA-PSS salt length = hash length (RFC 7518 §3.5)", () => {
    const input = `${b64u(JSON.stringify({ alg: "PS256", kid: "rsa-1" }))}.${b64u(JSON.stringify(claims()))}`;
    const sig = sign("sha256", Buffer.from(input), {
      key: rsa.privateKey,
      padding: constants.RSA_PKCS1_PSS_PADDING,
      saltLength: 20,
    });
    rejected(auth.authenticate(bearer(`${input}.${b64u(sig)}`)), /signature verification failed/);
  });

  it("rejects a tampered payload", () => {
    for (const alg of ["RS256", "ES256", "EdDSA"]) {
      const [h, , s] = token(alg).split(".");
      const evil = b64u(JSON.stringify(claims({ azp: "root-agent" })));
      rejected(auth.authenticate(bearer(`${h}.${evil}.${s}`)), /signature verification failed/);
    }
  });

  it("rejects alg none, with or without a signature", () => {
    const input = `${b64u(JSON.stringify({ alg: "none", typ: "JWT" }))}.${b64u(JSON.stringify(claims()))}`;
    rejected(auth.authenticate(bearer(`${input}.`)), /alg none/);
    rejected(auth.authenticate(bearer(`${input}.${b64u("x")}`)), /alg none/);
    const upper = `${b64u(JSON.stringify({ alg: "NONE" }))}.${b64u(JSON.stringify(claims()))}.`;
    rejected(auth.authenticate(bearer(upper)), /alg none/);
  });

  it("rejects HS256 signed with the public key as the secret (algorithm confusion)", () => {
    const pem = rsa.publicKey.export({ type: "spki", format: "pem" }) as string;
    for (const secret of [pem, JSON.stringify(jwk(rsa, "rsa-1")), createHash("sha256").update(pem).digest()]) {
      const input = `${b64u(JSON.stringify({ alg: "HS256", kid: "rsa-1" }))}.${b64u(JSON.stringify(claims()))}`;
      const forged = `${input}.${b64u(createHmac("sha256", secret).update(input).digest())}`;
      rejected(auth.authenticate(bearer(forged)), /HS256.*HMAC/);
    }
  });

  it("rejects an algorithm that does not fit the named key", () => {
    // An RS256 token naming the EC key, an ES256 token naming the P-384 key, EdDSA naming RSA.
    rejected(
      auth.authenticate(bearer(jwt({ alg: "RS256", kid: "ec-256" }, claims(), rsa.privateKey))),
      /does not match/,
    );
    rejected(
      auth.authenticate(bearer(jwt({ alg: "ES256", kid: "ec-384" }, claims(), p256.privateKey))),
      /does not match/,
    );
    rejected(
      auth.authenticate(bearer(jwt({ alg: "EdDSA", kid: "rsa-1" }, claims(), ed25519.privateKey))),
      /does not match/,
    );
    // A key pinned to RS256 in the JWKS refuses PS256, even with a valid PS256 signature.
    const pinned = createAuthenticator({ jwt: jwtConfig({ jwks: { keys: [jwk(rsa, "rsa-1", { alg: "RS256" })] } }) });
    ok(pinned.authenticate(bearer(token("RS256"))));
    rejected(pinned.authenticate(bearer(token("PS256"))), /PS256 does not match JWKS key "rsa-1" \(RSA, alg RS256\)/);
  });

  it("rejects an unknown kid, and ignores keys embedded in the header", () => {
    rejected(
      auth.authenticate(bearer(token("ES256", claims(), { kid: "rotated-away" }))),
      /kid\) "rotated-away" is not in/,
    );
    const embedded = jwt(
      { alg: "ES256", kid: "attacker", jwk: jwk(attackerEc, "attacker"), jku: "https://evil.example/jwks" },
      claims(),
      attackerEc.privateKey,
    );
    rejected(auth.authenticate(bearer(embedded)), /"attacker" is not in the JWKS/);
    // No kid and the attacker's embedded key: the only P-256 key in the JWKS is tried, and fails.
    const noKid = jwt({ alg: "ES256", jwk: jwk(attackerEc, "x") }, claims(), attackerEc.privateKey);
    rejected(auth.authenticate(bearer(noKid)), /signature verification failed/);
  });

  it("without a kid, uses the one key that fits, and refuses to guess between several", () => {
    ok(auth.authenticate(bearer(jwt({ alg: "EdDSA" }, claims(), ed25519.privateKey))));
    ok(auth.authenticate(bearer(jwt({ alg: "RS256" }, claims(), rsa.privateKey))));
    const second = generateKeyPairSync("ed25519");
    const two = createAuthenticator({ jwt: jwtConfig({ jwks: { keys: [jwk(ed25519, "a"), jwk(second, "b")] } }) });
    rejected(
      two.authenticate(bearer(jwt({ alg: "EdDSA" }, claims(), ed25519.privateKey))),
      /no kid and 2 JWKS keys fit/,
    );
    ok(two.authenticate(bearer(jwt({ alg: "EdDSA", kid: "b" }, claims(), second.privateKey))));
  });

  it("checks exp (required), nbf and iat against the clock with skew", () => {
    rejected(
      auth.authenticate(bearer(token("ES256", claims({ exp: NOW - 61 })))),
      /^JWT expired at 2026-05-15T11:58:59\.000Z/,
    );
    ok(auth.authenticate(bearer(token("ES256", claims({ exp: NOW - 59 }))))); // within the 60 s skew
    const noExp = claims();
    delete noExp.exp;
    rejected(auth.authenticate(bearer(token("ES256", noExp))), /no exp claim/);
    rejected(auth.authenticate(bearer(token("ES256", claims({ exp: "tomorrow" })))), /exp claim must be a number/);
    rejected(
      auth.authenticate(bearer(token("ES256", claims({ nbf: NOW + 120 })))),
      /not valid before 2026-05-15T12:02:00/,
    );
    ok(auth.authenticate(bearer(token("ES256", claims({ nbf: NOW + 30 })))));
    rejected(auth.authenticate(bearer(token("ES256", claims({ iat: NOW + 3600 })))), /issued in the future/);
    const strict = createAuthenticator({ jwt: jwtConfig({ clockSkewSeconds: 0 }) });
    rejected(strict.authenticate(bearer(token("ES256", claims({ exp: NOW })))), /expired/);
    rejected(strict.authenticate(bearer(token("ES256", claims({ nbf: NOW + 1 })))), /not valid before/);
  });

  it("checks iss exactly", () => {
    rejected(
      auth.authenticate(bearer(token("ES256", claims({ iss: `${ISSUER}/` })))),
      /issuer ".*\/" is not the configured/,
    );
    rejected(
      auth.authenticate(bearer(token("ES256", claims({ iss: "https://evil.example" })))),
      /not the configured issuer/,
    );
    const noIss = claims();
    delete noIss.iss;
    rejected(auth.authenticate(bearer(token("ES256", noIss))), /no iss claim/);
  });

  it("checks aud, a string or a list", () => {
    rejected(
      auth.authenticate(bearer(token("ES256", claims({ aud: "other-api" })))),
      /audience "other-api" does not include/,
    );
    ok(auth.authenticate(bearer(token("ES256", claims({ aud: ["other-api", AUDIENCE] })))));
    rejected(auth.authenticate(bearer(token("ES256", claims({ aud: ["other-api", "third"] })))), /does not include/);
    rejected(auth.authenticate(bearer(token("ES256", claims({ aud: [] })))), /does not include/);
    const noAud = claims();
    delete noAud.aud;
    rejected(auth.authenticate(bearer(token("ES256", noAud))), /no aud claim/);
    const several = createAuthenticator({ jwt: jwtConfig({ audience: ["a", "b"] }) });
    ok(several.authenticate(bearer(token("ES256", claims({ aud: "b" })))));
  });

  it("rejects malformed and oversize tokens", () => {
    const [h = "", p = "", s = ""] = token().split(".");
    const cases: [string, RegExp][] = [
      [`${h}.${p}`, /expected header\.payload\.signature, got 2 parts/],
      [`${h}.${p}.${s}.x.y`, /encrypted JWE/],
      [`${h}.${p}.${s}=`, /signature is not base64url/],
      [`${h}.${p.slice(0, -1)}*.${s}`, /payload is not base64url/],
      [`${h.slice(0, -1)}!.${p}.${s}`, /header is not base64url/],
      [`${b64u("{not json")}.${p}.${s}`, /header is not JSON/],
      [`${b64u("[1,2]")}.${p}.${s}`, /header is not a JSON object/],
      [`${b64u(Buffer.from([0x7b, 0xff, 0x7d]))}.${p}.${s}`, /header is not JSON/],
      [`${b64u(JSON.stringify({ kid: "ec-256" }))}.${p}.${s}`, /no alg/],
      [`${b64u(JSON.stringify({ alg: "ES256K", kid: "ec-256" }))}.${p}.${s}`, /"ES256K" is not supported/],
      [`${b64u(JSON.stringify({ alg: "ES256", kid: "ec-256", crit: ["exp"] }))}.${p}.${s}`, /crit/],
      [`${h}.${p}.`, /empty signature/],
      [`${h}.${p}.${b64u(Buffer.alloc(70))}`, /ES256 signature is 64 bytes, got 70/],
    ];
    for (const [bad, reason] of cases) rejected(auth.authenticate(bearer(bad)), reason, bad);
    // A payload that is signed but not JSON.
    const input = `${h}.${b64u("not json")}`;
    const signed = `${input}.${b64u(signRaw("ES256", Buffer.from(input), p256.privateKey))}`;
    rejected(auth.authenticate(bearer(signed)), /payload is not JSON/);
    // Non-canonical base64url (non-zero trailing bits) of an otherwise valid token.
    const last = s.at(-1) ?? "";
    const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    const sibling = alphabet[alphabet.indexOf(last) ^ 1] ?? "";
    rejected(auth.authenticate(bearer(`${h}.${p}.${s.slice(0, -1)}${sibling}`)), /base64url/);
    const huge = token("ES256", claims({ padding: "x".repeat(MAX_CREDENTIAL_LENGTH) }));
    rejected(auth.authenticate(bearer(huge)), /too large \(\d+ characters; the limit is 16384\)/, huge);
  });

  it("maps claims: defaults, client_id fallback, nested paths, string groups and labels", () => {
    let id = ok(auth.authenticate(bearer(token("ES256", claims({ groups: ["dev", "ops"], tenant: { id: 7 } })))));
    assert.deepEqual(id.agent, { name: "dev-assistant" });
    assert.deepEqual(id.user?.groups, ["dev", "ops"]);
    assert.deepEqual(id.user?.claims?.tenant, { id: 7 });
    assert.equal(id.user?.claims?.sub, "alice@example.com");

    const noAzp = claims({ client_id: "ci-bot" });
    delete noAzp.azp;
    assert.equal(ok(auth.authenticate(bearer(token("ES256", noAzp)))).agent.name, "ci-bot");
    delete noAzp.client_id;
    rejected(auth.authenticate(bearer(token("ES256", noAzp))), /no azp or client_id claim naming the agent/);

    const mapped = createAuthenticator({
      jwt: jwtConfig({
        claims: {
          agent: "agent.name",
          user: "preferred_username",
          groups: "realm_access.roles",
          labels: "agent.labels",
        },
      }),
    });
    id = ok(
      mapped.authenticate(
        bearer(
          token(
            "ES256",
            claims({
              preferred_username: "alice",
              agent: { name: "triage-bot", labels: { team: "sre", env: "prod" } },
              realm_access: { roles: ["offline_access", "deployer"] },
            }),
          ),
        ),
      ),
    );
    assert.deepEqual(id.agent, { name: "triage-bot", labels: { team: "sre", env: "prod" } });
    assert.equal(id.user?.id, "alice");
    assert.deepEqual(id.user?.groups, ["offline_access", "deployer"]);
    // The configured agent claim has no fallback to azp.
    rejected(mapped.authenticate(bearer(token("ES256", claims()))), /no agent\.name claim/);
    rejected(
      mapped.authenticate(bearer(token("ES256", claims({ agent: { name: "x", labels: { n: 1 } } })))),
      /agent labels\) must be an object of strings/,
    );

    const scoped = createAuthenticator({ jwt: jwtConfig({ claims: { groups: "scope" } }) });
    id = ok(scoped.authenticate(bearer(token("ES256", claims({ scope: "read:issues  write:prs" })))));
    assert.deepEqual(id.user?.groups, ["read:issues", "write:prs"]);
    id = ok(scoped.authenticate(bearer(token("ES256", claims({ scope: "a,b, c" })))));
    assert.deepEqual(id.user?.groups, ["a", "b", "c"]);
    rejected(
      scoped.authenticate(bearer(token("ES256", claims({ scope: ["a", 1] })))),
      /groups\) must be a list of strings/,
    );

    // A claim name that itself contains dots (namespaced claims) is found by its exact name first.
    const namespaced = createAuthenticator({ jwt: jwtConfig({ claims: { groups: "https://example.com/groups" } }) });
    id = ok(namespaced.authenticate(bearer(token("ES256", claims({ "https://example.com/groups": ["x"] })))));
    assert.deepEqual(id.user?.groups, ["x"]);

    rejected(
      auth.authenticate(bearer(token("ES256", claims({ azp: 42 })))),
      /azp \(the agent\) must be a non-empty string/,
    );
    rejected(auth.authenticate(bearer(token("ES256", claims({ sub: 42 })))), /sub \(the user\) must be a string/);
  });
});

describe("API keys", () => {
  const key = generateApiKey();
  const other = generateApiKey();
  const config: HttpAuthConfig = {
    apiKeys: [
      {
        name: "ci-bot",
        hash: hashApiKey(key),
        agent: { name: "ci-agent", labels: { env: "ci" } },
        user: { id: "svc-ci", groups: ["bots"] },
      },
      { name: "laptop", hash: hashApiKey(other).toUpperCase().replace("SHA256:", "sha256:"), agent: { name: "dev" } },
    ],
  };
  const auth = createAuthenticator(config);

  it("generates wk_ keys and hashes them as sha256:<hex>", () => {
    assert.match(key, /^wk_[A-Za-z0-9_-]{43}$/);
    assert.equal(Buffer.from(key.slice(3), "base64url").length, 32);
    assert.notEqual(key, other);
    assert.equal(hashApiKey("abc"), "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    assert.throws(() => hashApiKey(""), /non-empty/);
    assert.throws(() => hashApiKey("a b"), /whitespace/);
  });

  it("accepts a key from Authorization: Bearer and from X-API-Key", () => {
    for (const headers of [
      { authorization: `Bearer ${key}` },
      { "x-api-key": key },
      { Authorization: `bearer  ${key}` },
    ]) {
      const identity = ok(auth.authenticate(headers));
      assert.deepEqual(identity, {
        agent: { name: "ci-agent", labels: { env: "ci" } },
        user: { id: "svc-ci", groups: ["bots"] },
        via: "api-key:ci-bot",
      });
    }
    assert.deepEqual(ok(auth.authenticate({ "x-api-key": other })), { agent: { name: "dev" }, via: "api-key:laptop" });
    // Identities are copies: a caller that edits one does not change the next.
    const first = ok(auth.authenticate({ "x-api-key": key }));
    first.user?.groups?.push("admins");
    assert.deepEqual(ok(auth.authenticate({ "x-api-key": key })).user?.groups, ["bots"]);
  });

  it("rejects unknown keys and bad headers without echoing the credential", () => {
    const wrong = generateApiKey();
    rejected(auth.authenticate({ authorization: `Bearer ${wrong}` }), /^unknown API key$/, wrong);
    rejected(auth.authenticate({ "x-api-key": wrong }), /^unknown API key$/, wrong);
    rejected(auth.authenticate({ "x-api-key": `${key}x` }), /^unknown API key$/, key);
    rejected(
      auth.authenticate({ authorization: key }),
      /unsupported Authorization scheme; send Authorization: Bearer/,
      key,
    );
    rejected(auth.authenticate({ authorization: `Token ${key}` }), /scheme \(Token\)/, key);
    rejected(auth.authenticate({ authorization: "Basic dXNlcjpwYXNz" }), /scheme \(Basic\)/, "dXNlcjpwYXNz");
    rejected(auth.authenticate({ authorization: "Bearer " }), /empty bearer token/);
    rejected(auth.authenticate({ authorization: `Bearer ${key} ${key}` }), /whitespace/, key);
    rejected(auth.authenticate({ "x-api-key": "  " }), /empty X-API-Key/);
    rejected(
      auth.authenticate({ authorization: `Bearer ${key}`, "x-api-key": key }),
      /send exactly one credential/,
      key,
    );
    rejected(auth.authenticate({ "x-api-key": [key, other] }), /several X-API-Key headers/, key);
    rejected(auth.authenticate({ authorization: `Bearer ${token()}` }), /^unknown API key$/); // no JWT configured
    rejected(auth.authenticate({ "x-api-key": "k".repeat(MAX_CREDENTIAL_LENGTH + 1) }), /too large/);
    rejected(auth.authenticate({}), /^no credentials: send Authorization: Bearer <API key> or X-API-Key: <API key>$/);
  });

  it("works next to JWT: API keys and JWTs on the same header", () => {
    const both = createAuthenticator({ ...config, jwt: jwtConfig() });
    assert.equal(ok(both.authenticate({ authorization: `Bearer ${key}` })).via, "api-key:ci-bot");
    assert.equal(ok(both.authenticate({ authorization: `Bearer ${token()}` })).via, `jwt:${ISSUER}`);
    rejected(both.authenticate({ authorization: `Bearer ${generateApiKey()}` }), /^unknown API key$/);
    rejected(both.authenticate({ "x-api-key": token() }), /^unknown API key$/); // JWTs only as Bearer
    rejected(both.authenticate({}), /no credentials: send Authorization: Bearer <API key or JWT>/);
  });

  it("never throws, whatever the headers", () => {
    const odd = [{ authorization: [] as string[] }, { authorization: 7 as unknown as string }, Object.create(null)];
    for (const headers of odd) {
      const result = auth.authenticate(headers);
      assert.equal(result.ok, false);
    }
  });
});

describe("anonymous", () => {
  const key = generateApiKey();
  const auth = createAuthenticator({
    apiKeys: [{ name: "k", hash: hashApiKey(key), agent: { name: "keyed" } }],
    jwt: jwtConfig(),
    anonymous: { agent: { name: "local-dev" }, user: { id: "me" } },
  });

  it("applies only when the request carries no credentials at all", () => {
    assert.deepEqual(ok(auth.authenticate({})), { agent: { name: "local-dev" }, user: { id: "me" }, via: "anonymous" });
    assert.equal(
      ok(auth.authenticate({ "content-type": "application/json", authorization: undefined })).via,
      "anonymous",
    );
    assert.equal(ok(auth.authenticate({ authorization: `Bearer ${key}` })).via, "api-key:k");
    rejected(auth.authenticate({ authorization: "Bearer wk_nope" }), /unknown API key/);
    rejected(auth.authenticate({ "x-api-key": "nope" }), /unknown API key/);
    rejected(auth.authenticate({ authorization: "" }), /empty Authorization header/);
    rejected(auth.authenticate(bearer(token("ES256", claims({ exp: NOW - 3600 })))), /expired/);
  });
});

describe("config validation", () => {
  const entry = { name: "a", hash: hashApiKey("key-a"), agent: { name: "x" } };
  const cases: [string, unknown, RegExp][] = [
    ["nothing configured", {}, /accepts nobody/],
    ["malformed hash", { apiKeys: [{ ...entry, hash: "sha256:abc" }] }, /apiKeys\[0\] \(a\)\.hash must be "sha256:"/],
    ["plain key as hash", { apiKeys: [{ ...entry, hash: "key-a" }] }, /hash must be "sha256:"/],
    ["duplicate hash", { apiKeys: [entry, { ...entry, name: "b" }] }, /same key hash is configured twice/],
    ["duplicate name", { apiKeys: [entry, { ...entry, hash: hashApiKey("key-b") }] }, /duplicate API key name "a"/],
    ["agent without name", { apiKeys: [{ ...entry, agent: {} }] }, /agent\.name must be a non-empty string/],
    ["typo", { apiKeys: [entry], anonymus: {} }, /unknown field "anonymus"/],
    ["no usable JWKS keys", { jwt: jwtConfig({ jwks: { keys: [JWKS.keys[5]] } }) }, /no usable .*use enc/],
    ["empty JWKS", { jwt: jwtConfig({ jwks: { keys: [] } }) }, /no usable signature verification keys/],
    ["not a JWKS", { jwt: jwtConfig({ jwks: [] as unknown as JwtConfig["jwks"] }) }, /must be a JWKS/],
    [
      "private key in JWKS",
      { jwt: jwtConfig({ jwks: { keys: [{ ...p256.privateKey.export({ format: "jwk" }), kid: "p" }] } }) },
      /"p" holds private key material \(d\)/,
    ],
    ["symmetric key", { jwt: jwtConfig({ jwks: { keys: [{ kty: "oct", k: "c2VjcmV0", kid: "h" }] } }) }, /symmetric/],
    [
      "alg/key mismatch",
      { jwt: jwtConfig({ jwks: { keys: [jwk(p256, "e", { alg: "RS256" })] } }) },
      /RS256 does not fit/,
    ],
    [
      "bad key",
      { jwt: jwtConfig({ jwks: { keys: [{ kty: "EC", crv: "P-256", x: "AA", y: "AA" }] } }) },
      /not a valid EC/,
    ],
    [
      "weak RSA",
      { jwt: jwtConfig({ jwks: { keys: [jwk(generateKeyPairSync("rsa", { modulusLength: 1024 }), "w")] } }) },
      /1024-bit RSA key; at least 2048/,
    ],
    ["duplicate kid", { jwt: jwtConfig({ jwks: { keys: [jwk(p256, "k"), jwk(attackerEc, "k")] } }) }, /two EC keys/],
    ["no audience", { jwt: jwtConfig({ audience: [] }) }, /jwt\.audience/],
    ["no issuer", { jwt: jwtConfig({ issuer: "" }) }, /jwt\.issuer/],
    ["negative skew", { jwt: jwtConfig({ clockSkewSeconds: -1 }) }, /clockSkewSeconds/],
    ["bad claim path", { jwt: jwtConfig({ claims: { groups: "a..b" } }) }, /jwt\.claims\.groups/],
  ];
  for (const [name, config, message] of cases) {
    it(`rejects ${name}`, () => {
      assert.throws(() => createAuthenticator(config as HttpAuthConfig), message);
    });
  }
});
