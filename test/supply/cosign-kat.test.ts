// Known-answer tests for the signature formats. The vectors are published test
// data, copied as data only:
//  - DSSE protocol.md (secure-systems-lab/dsse v1.0.2): the PAE example.
//  - sigstore/sigstore pkg/signature/payload/payload_test.go and cosign
//    pkg/cosign/obsolete_test.go: the exact simple-signing payload bytes.
//  - sigstore-rs src/crypto/verification_key.rs (038e36a): a cosign
//    simple-signing payload, its ECDSA P-256 signature and public key.
//  - cosign cmd/cosign/cli/verify/verify_blob_attestation_test.go (d6d86c2): a
//    DSSE envelope (in-toto statement) signed over PAE, and its public key.
//  - cosign specs/ATTESTATION_SPEC.md and README.md: a one-layer signature
//    image's config is 233 bytes.
import assert from "node:assert/strict";
import { createPublicKey, generateKeyPairSync, sign, verify } from "node:crypto";
import { describe, it } from "node:test";
import {
  checkEvidence,
  INTOTO_PAYLOAD_TYPE,
  pae,
  publicKeyHint,
  signatureImageConfig,
  signatureManifest,
  signStatement,
  sigstoreBundle,
  simpleSigningPayload,
  trustedKey,
} from "../../src/supply/cosign.js";
import { sha256Digest } from "../../src/supply/reference.js";

const D34 = "sha256:d34db33fd34db33fd34db33fd34db33fd34db33fd34db33fd34db33fd34db33f";

// sigstore-rs src/crypto/mod.rs PUBLIC_KEY and verification_key.rs verify_signature_success.
const RS_PUBLIC_KEY = `-----BEGIN PUBLIC KEY-----
MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAENptdY/l3nB0yqkXLBWkZWQwo6+cu
OSWS1X9vPavpiQOoTTGC0xX57OojUadxF1cdQmrsiReWg2Wn4FneJfa8xw==
-----END PUBLIC KEY-----`;
const RS_DIGEST = "sha256:f3cfc9d0dbf931d3db4685ec659b7ac68e2a578219da4aae65427886e649b06b";
const RS_PAYLOAD = `{"critical":{"identity":{"docker-reference":"registry-testing.svc.lan/busybox"},"image":{"docker-manifest-digest":"${RS_DIGEST}"},"type":"cosign container image signature"},"optional":null}`;
const RS_SIGNATURE = "MEUCIQD6q/COgzOyW0YH1Dk+CCYSt4uAhm3FDHUwvPI55zwnlwIgE0ZK58ZOWpZw8YVmBapJhBqCfdPekIknimuO0xH8Jh8=";

// cosign verify_blob_attestation_test.go: pubkey, and the "verify new bundle with public key" envelope.
const COSIGN_PUBLIC_KEY = `-----BEGIN PUBLIC KEY-----
MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAESF79b1ToAtoakhBOHEU5UjnEiihV
gZPFIp557+TOoDxf14FODWc+sIPETk0OgCplAk60doVXbCv33IU4rXZHrg==
-----END PUBLIC KEY-----`;
const COSIGN_DSSE_PAYLOAD =
  "eyJfdHlwZSI6Imh0dHBzOi8vaW4tdG90by5pby9TdGF0ZW1lbnQvdjAuMSIsInByZWRpY2F0ZVR5cGUiOiJodHRwczovL3Nsc2EuZGV2L3Byb3ZlbmFuY2UvdjAuMiIsInN1YmplY3QiOlt7Im5hbWUiOiJibG9iIiwiZGlnZXN0Ijp7InNoYTI1NiI6IjY1ODc4MWNkNGVkOWJjYTYwZGFjZDA5ZjdiYjkxNGJiNTE1MDJlOGI1ZDYxOWY1N2YzOWExZDY1MjU5NmNjMjQifX1dLCJwcmVkaWNhdGUiOnsiYnVpbGRlciI6eyJpZCI6IjIifSwiYnVpbGRUeXBlIjoieCIsImludm9jYXRpb24iOnsiY29uZmlnU291cmNlIjp7fX19fQ==";
const COSIGN_DSSE_SIG =
  "MEUCIA8KjZqkrt90fzBojSwwtj3Bqb41E6ruxQk97TLnpzdYAiEAzOAjOTzyvTHqbpFDAn6zhrg6EZv7kxK5faRoVGYMh2c=";
const BLOB_SHA256 = "sha256:658781cd4ed9bca60dacd09f7bb914bb51502e8b5d619f57f39a1d652596cc24";

describe("DSSE pre-authentication encoding", () => {
  it("matches the DSSE specification's example", () => {
    assert.equal(
      pae("http://example.com/HelloWorld", Buffer.from("hello world")).toString("utf8"),
      "DSSEv1 29 http://example.com/HelloWorld 11 hello world",
    );
  });

  it("counts bytes, not characters", () => {
    assert.equal(pae("t", Buffer.from("é")).toString("utf8"), "DSSEv1 1 t 2 é");
    assert.equal(pae("", Buffer.alloc(0)).toString("utf8"), "DSSEv1 0  0 ");
  });

  it("is what cosign signs: cosign's test envelope verifies over PAE, and not over the bare payload", () => {
    const key = trustedKey(createPublicKey(COSIGN_PUBLIC_KEY), "cosign test key");
    const bundle = JSON.stringify({
      mediaType: "application/vnd.dev.sigstore.bundle.v0.3+json",
      verificationMaterial: { publicKey: { hint: "hint" } },
      dsseEnvelope: {
        payload: COSIGN_DSSE_PAYLOAD,
        payloadType: INTOTO_PAYLOAD_TYPE,
        signatures: [{ sig: COSIGN_DSSE_SIG }],
      },
    });
    // The signature verifies; the statement is a SLSA provenance attestation, which Warden does not take as a signature.
    const c = checkEvidence({ format: "sigstore-bundle", bundle }, BLOB_SHA256, [key]);
    assert.equal(c.ok, false);
    assert.match(!c.ok ? c.reason : "", /statement's _type is not https:\/\/in-toto.io\/Statement\/v1/);
    // The same signature over the bare payload (no PAE) does not verify: PAE is what cosign signs.
    const raw = Buffer.from(COSIGN_DSSE_PAYLOAD, "base64");
    const sig = Buffer.from(COSIGN_DSSE_SIG, "base64");
    assert.equal(verify("sha256", pae(INTOTO_PAYLOAD_TYPE, raw), key.key, sig), true);
    assert.equal(verify("sha256", raw, key.key, sig), false);
  });
});

describe("simple-signing payload", () => {
  it("is byte for byte what cosign writes (sigstore/sigstore payload_test.go, cosign obsolete_test.go)", () => {
    assert.equal(
      simpleSigningPayload("example.com/test/image", D34).toString("utf8"),
      `{"critical":{"identity":{"docker-reference":"example.com/test/image"},"image":{"docker-manifest-digest":"${D34}"},"type":"cosign container image signature"},"optional":null}`,
    );
    assert.equal(
      simpleSigningPayload(
        "index.docker.io/namespace/image",
        "sha256:4aa3054270f7a70b4528f2064ee90961788e1e1518703592ae4463de3b889dec",
      ).toString("utf8"),
      `{"critical":{"identity":{"docker-reference":"index.docker.io/namespace/image"},"image":{"docker-manifest-digest":"sha256:4aa3054270f7a70b4528f2064ee90961788e1e1518703592ae4463de3b889dec"},"type":"cosign container image signature"},"optional":null}`,
    );
  });

  it("reproduces sigstore-rs's cosign vector, whose signature verifies with its key", () => {
    const payload = simpleSigningPayload("registry-testing.svc.lan/busybox", RS_DIGEST);
    assert.equal(payload.toString("utf8"), RS_PAYLOAD);
    const key = trustedKey(createPublicKey(RS_PUBLIC_KEY), "sigstore-rs test key");
    const evidence = { format: "simplesigning" as const, payload: payload.toString("base64"), signature: RS_SIGNATURE };
    assert.deepEqual(checkEvidence(evidence, RS_DIGEST, [key]).ok, true);
    // The same signature does not vouch for any other digest.
    const other = checkEvidence(evidence, D34, [key]);
    assert.match(!other.ok ? other.reason : "", /valid but for another digest \(sha256:f3cfc9d0/);
  });

  it("a signature image config has cosign's shape (233 bytes for one layer)", () => {
    const config = signatureImageConfig([D34]);
    assert.equal(config.length, 233);
    assert.equal(
      config.toString("utf8"),
      `{"architecture":"","created":"0001-01-01T00:00:00Z","history":[{"created":"0001-01-01T00:00:00Z"}],"os":"","rootfs":{"type":"layers","diff_ids":["${D34}"]},"config":{}}`,
    );
    const manifest = JSON.parse(
      signatureManifest(config, [{ digest: D34, size: 10, signature: "c2ln" }]).toString("utf8"),
    );
    assert.deepEqual(manifest.layers[0], {
      mediaType: "application/vnd.dev.cosign.simplesigning.v1+json",
      size: 10,
      digest: D34,
      annotations: { "dev.cosignproject.cosign/signature": "c2ln" },
    });
    assert.equal(manifest.config.mediaType, "application/vnd.oci.image.config.v1+json");
  });
});

describe("Sigstore bundle v0.3", () => {
  const { privateKey, publicKey } = generateKeyPairSync("ec", { namedCurve: "P-256" });
  const key = trustedKey(publicKey, "test");
  const signed = (digest: string) => {
    const statement = signStatement(digest);
    return sigstoreBundle(
      statement,
      sign("sha256", pae(INTOTO_PAYLOAD_TYPE, statement), privateKey),
      privateKey,
    ).toString("utf8");
  };

  it("is a DSSE envelope over an in-toto v1 statement naming the digest, with cosign's key hint", () => {
    const b = JSON.parse(signed(D34));
    assert.equal(b.mediaType, "application/vnd.dev.sigstore.bundle.v0.3+json");
    assert.deepEqual(b.verificationMaterial, { publicKey: { hint: publicKeyHint(publicKey) }, tlogEntries: [] });
    assert.equal(
      publicKeyHint(publicKey),
      Buffer.from(sha256Digest(publicKey.export({ type: "spki", format: "der" })).slice(7), "hex").toString("base64"),
    );
    assert.equal(b.dsseEnvelope.payloadType, "application/vnd.in-toto+json");
    assert.deepEqual(JSON.parse(Buffer.from(b.dsseEnvelope.payload, "base64").toString("utf8")), {
      _type: "https://in-toto.io/Statement/v1",
      subject: [{ digest: { sha256: D34.slice(7) } }],
      predicateType: "https://sigstore.dev/cosign/sign/v1",
      predicate: {},
    });
    assert.equal(checkEvidence({ format: "sigstore-bundle", bundle: signed(D34) }, D34, [key]).ok, true);
  });

  it("refuses another digest, another key, and a second signature", () => {
    const other = checkEvidence({ format: "sigstore-bundle", bundle: signed(BLOB_SHA256) }, D34, [key]);
    assert.match(!other.ok ? other.reason : "", /valid but for another digest/);
    const stranger = trustedKey(generateKeyPairSync("ec", { namedCurve: "P-256" }).publicKey, "stranger");
    const untrusted = checkEvidence({ format: "sigstore-bundle", bundle: signed(D34) }, D34, [stranger]);
    assert.match(!untrusted.ok ? untrusted.reason : "", /does not verify with any trusted key/);
    const two = JSON.parse(signed(D34));
    two.dsseEnvelope.signatures.push(two.dsseEnvelope.signatures[0]);
    assert.match(
      (() => {
        const c = checkEvidence({ format: "sigstore-bundle", bundle: JSON.stringify(two) }, D34, [key]);
        return c.ok ? "" : c.reason;
      })(),
      /exactly one signature/,
    );
  });
});
