// cosign's two signature formats, written and checked byte for byte as cosign
// writes and reads them, with a plain public key and no transparency log:
//
//  1. Legacy "simple signing": a manifest tagged sha256-<hex>.sig whose layers
//     are simple-signing payloads (application/vnd.dev.cosign.simplesigning.v1+json)
//     naming the signed manifest digest; each layer's annotation
//     dev.cosignproject.cosign/signature holds base64 of an ECDSA P-256 /
//     SHA-256 ASN.1 DER signature over the payload bytes.
//  2. A Sigstore bundle v0.3 referrer: a DSSE envelope over an in-toto v1
//     statement whose subject is the signed manifest digest (predicate
//     https://sigstore.dev/cosign/sign/v1), the signature over DSSE's
//     pre-authentication encoding, stored as the one layer of an OCI 1.1
//     manifest whose subject is the signed manifest.
//
// This module is pure: formats, signing and checking. Registry I/O is in signing.ts.
import { createPublicKey, type KeyObject, sign, verify } from "node:crypto";
import { canonicalJson } from "../encoding/canonical-json.js";
import { keyTypeOf, publicKeyFingerprint } from "../keys/keys.js";
import { EMPTY_DESCRIPTOR } from "./artifact.js";
import { SupplyError } from "./errors.js";
import { digestHex, sha256Digest } from "./reference.js";
import { type Descriptor, OCI_MANIFEST } from "./registry.js";

export const SIMPLE_SIGNING_MEDIA_TYPE = "application/vnd.dev.cosign.simplesigning.v1+json";
export const SIMPLE_SIGNING_TYPE = "cosign container image signature";
export const COSIGN_SIGNATURE_ANNOTATION = "dev.cosignproject.cosign/signature";
export const OCI_IMAGE_CONFIG = "application/vnd.oci.image.config.v1+json";
export const DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json";
export const SIGSTORE_BUNDLE_V03 = "application/vnd.dev.sigstore.bundle.v0.3+json";
/** The newer spelling of the same media type, accepted when reading. */
export const SIGSTORE_BUNDLE_V03_ALT = "application/vnd.dev.sigstore.bundle+json;version=0.3";
export const INTOTO_PAYLOAD_TYPE = "application/vnd.in-toto+json";
export const INTOTO_STATEMENT_V1 = "https://in-toto.io/Statement/v1";
export const COSIGN_SIGN_PREDICATE = "https://sigstore.dev/cosign/sign/v1";
export const BUNDLE_CONTENT_ANNOTATION = "dev.sigstore.bundle.content";
export const BUNDLE_PREDICATE_ANNOTATION = "dev.sigstore.bundle.predicateType";
const MAX_SIGNATURE_BYTES = 1024;

// ---- Legacy simple signing -------------------------------------------------

/**
 * The simple-signing payload exactly as cosign marshals it (Go encoding/json of
 * payload.SimpleContainerImage): critical{identity{docker-reference},
 * image{docker-manifest-digest}, type}, optional null. Key order and lack of
 * whitespace match Go's output; canonical JSON gives the same bytes.
 */
export function simpleSigningPayload(dockerReference: string, digest: string): Buffer {
  digestHex(digest);
  // Go escapes <, > and & in strings; references cannot contain them, so refuse rather than differ.
  if (/[<>&]/.test(dockerReference)) throw new SupplyError("usage", `"${dockerReference}" is not a repository name`);
  return Buffer.from(
    canonicalJson({
      critical: {
        identity: { "docker-reference": dockerReference },
        image: { "docker-manifest-digest": digest },
        type: SIMPLE_SIGNING_TYPE,
      },
      optional: null,
    }),
  );
}

/**
 * The image config cosign (go-containerregistry's mutate.Append on an empty
 * image) writes for a signature image: one history entry and one diff_id per
 * layer. Only its digest matters to verifiers; it is reproduced so the image is
 * the same shape cosign's is (233 bytes for one layer).
 */
export function signatureImageConfig(layerDigests: readonly string[]): Buffer {
  const history = layerDigests.map(() => ({ created: "0001-01-01T00:00:00Z" }));
  return Buffer.from(
    JSON.stringify({
      architecture: "",
      created: "0001-01-01T00:00:00Z",
      history,
      os: "",
      rootfs: { type: "layers", diff_ids: layerDigests },
      config: {},
    }),
  );
}

export interface SignatureLayer {
  digest: string;
  size: number;
  /** base64 of the DER signature. */
  signature: string;
  /** Other annotations on the layer (certificates, bundles) kept as they were. */
  annotations?: Record<string, string>;
}

/** The .sig manifest, in go-containerregistry's field order. */
export function signatureManifest(config: Buffer, layers: readonly SignatureLayer[]): Buffer {
  return Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: OCI_MANIFEST,
      config: { mediaType: OCI_IMAGE_CONFIG, size: config.length, digest: sha256Digest(config) },
      layers: layers.map((l) => ({
        mediaType: SIMPLE_SIGNING_MEDIA_TYPE,
        size: l.size,
        digest: l.digest,
        annotations: sortKeys({ ...l.annotations, [COSIGN_SIGNATURE_ANNOTATION]: l.signature }),
      })),
    }),
  );
}

function sortKeys(o: Record<string, string>): Record<string, string> {
  return Object.fromEntries(Object.entries(o).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
}

// ---- DSSE, in-toto, Sigstore bundle ------------------------------------------

/** DSSE v1 pre-authentication encoding: "DSSEv1" SP LEN(type) SP type SP LEN(body) SP body. */
export function pae(payloadType: string, payload: Uint8Array): Buffer {
  const type = Buffer.from(payloadType, "utf8");
  return Buffer.concat([
    Buffer.from(`DSSEv1 ${type.length} `, "utf8"),
    type,
    Buffer.from(` ${payload.length} `, "utf8"),
    payload,
  ]);
}

/** The in-toto v1 statement `cosign sign --new-bundle-format` makes for a digest. */
export function signStatement(digest: string): Buffer {
  return Buffer.from(
    JSON.stringify({
      _type: INTOTO_STATEMENT_V1,
      subject: [{ digest: { sha256: digestHex(digest) } }],
      predicateType: COSIGN_SIGN_PREDICATE,
      predicate: {},
    }),
  );
}

/** base64 of sha256(DER SubjectPublicKeyInfo): cosign's public key hint. */
export function publicKeyHint(key: KeyObject): string {
  const pub = key.type === "private" ? createPublicKey(key) : key;
  return Buffer.from(digestHex(sha256Digest(pub.export({ type: "spki", format: "der" }))), "hex").toString("base64");
}

/** A Sigstore bundle v0.3 with a DSSE envelope, a public-key hint and no transparency log entries. */
export function sigstoreBundle(statement: Buffer, signature: Buffer, key: KeyObject): Buffer {
  return Buffer.from(
    JSON.stringify({
      mediaType: SIGSTORE_BUNDLE_V03,
      verificationMaterial: { publicKey: { hint: publicKeyHint(key) }, tlogEntries: [] },
      dsseEnvelope: {
        payload: statement.toString("base64"),
        payloadType: INTOTO_PAYLOAD_TYPE,
        signatures: [{ sig: signature.toString("base64"), keyid: "" }],
      },
    }),
  );
}

/** The referrer manifest cosign writes for a bundle (WriteAttestationNewBundleFormat / WriteReferrer). */
export function bundleReferrerManifest(bundle: Buffer, subject: Descriptor, created: string): Buffer {
  const digest = sha256Digest(bundle);
  return Buffer.from(
    canonicalJson({
      schemaVersion: 2,
      mediaType: OCI_MANIFEST,
      artifactType: SIGSTORE_BUNDLE_V03,
      config: { mediaType: EMPTY_DESCRIPTOR.mediaType, digest: EMPTY_DESCRIPTOR.digest, size: EMPTY_DESCRIPTOR.size },
      layers: [
        {
          mediaType: SIGSTORE_BUNDLE_V03,
          digest,
          size: bundle.length,
          annotations: { "org.opencontainers.image.title": `sha256-${digestHex(digest)}.sigstore.json` },
        },
      ],
      subject: { mediaType: subject.mediaType, digest: subject.digest, size: subject.size },
      annotations: {
        [BUNDLE_CONTENT_ANNOTATION]: "dsse-envelope",
        [BUNDLE_PREDICATE_ANNOTATION]: COSIGN_SIGN_PREDICATE,
        "org.opencontainers.image.created": created,
      },
    }),
  );
}

// ---- Signing and checking ------------------------------------------------------

/** Checks a signing key is what cosign-compatible signatures need: ECDSA P-256. */
export function requireP256(key: KeyObject, what: string): void {
  if (keyTypeOf(key) !== "ecdsa-p256")
    throw new SupplyError(
      "usage",
      `${what} is an Ed25519 key; policy bundles are signed with ECDSA P-256 as cosign does (warden keys generate --type ecdsa-p256)`,
    );
}

/** ECDSA P-256 with SHA-256, ASN.1 DER, as cosign signs. */
export function signDer(key: KeyObject, data: Uint8Array): Buffer {
  requireP256(key, "the signing key");
  return sign("sha256", data, key);
}

export interface TrustedKey {
  key: KeyObject;
  /** sha256:<hex> of the SPKI DER. */
  fingerprint: string;
  /** Where it came from, for messages. */
  source: string;
}

export function trustedKey(key: KeyObject, source: string): TrustedKey {
  const pub = key.type === "private" ? createPublicKey(key) : key;
  requireP256(pub, source);
  return { key: pub, fingerprint: publicKeyFingerprint(pub), source };
}

/** What a registry holds as proof, in a form that can be cached and re-checked offline. */
export type Evidence =
  | { format: "simplesigning"; payload: string; signature: string }
  | { format: "sigstore-bundle"; bundle: string };

export type Check = { ok: true; key: TrustedKey; format: Evidence["format"] } | { ok: false; reason: string };

const B64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;
const B64URL = /^[A-Za-z0-9_-]*={0,2}$/;

function decodeB64(text: unknown, what: string): Buffer {
  if (typeof text !== "string" || !(B64.test(text) || B64URL.test(text))) throw new Error(`${what} is not base64`);
  return Buffer.from(text, B64.test(text) ? "base64" : "base64url");
}

function verifyWithAny(keys: readonly TrustedKey[], data: Buffer, signature: Buffer): TrustedKey | undefined {
  if (signature.length === 0 || signature.length > MAX_SIGNATURE_BYTES) return undefined;
  for (const k of keys) {
    try {
      if (verify("sha256", data, k.key, signature)) return k;
    } catch {
      // malformed DER: not a valid signature by this key
    }
  }
  return undefined;
}

/** Checks one piece of evidence against the trusted keys for a manifest digest. Never throws. */
export function checkEvidence(e: Evidence, digest: string, keys: readonly TrustedKey[]): Check {
  try {
    return e.format === "simplesigning" ? checkSimpleSigning(e, digest, keys) : checkSigstoreBundle(e, digest, keys);
  } catch (err) {
    return { ok: false, reason: (err as Error).message };
  }
}

function checkSimpleSigning(
  e: Extract<Evidence, { format: "simplesigning" }>,
  digest: string,
  keys: readonly TrustedKey[],
): Check {
  const payload = decodeB64(e.payload, "the payload");
  const signature = decodeB64(e.signature, "the signature annotation");
  const key = verifyWithAny(keys, payload, signature);
  if (!key) return { ok: false, reason: "simple-signing signature does not verify with any trusted key" };
  let p: { critical?: { type?: unknown; image?: { "docker-manifest-digest"?: unknown } } };
  try {
    p = JSON.parse(payload.toString("utf8")) as typeof p;
  } catch {
    return { ok: false, reason: "the signed simple-signing payload is not JSON" };
  }
  if (p.critical?.type !== SIMPLE_SIGNING_TYPE)
    return { ok: false, reason: `the signed payload's critical.type is not "${SIMPLE_SIGNING_TYPE}"` };
  const named = p.critical.image?.["docker-manifest-digest"];
  if (named !== digest)
    return { ok: false, reason: `the signature is valid but for another digest (${String(named)}), not ${digest}` };
  return { ok: true, key, format: "simplesigning" };
}

function checkSigstoreBundle(
  e: Extract<Evidence, { format: "sigstore-bundle" }>,
  digest: string,
  keys: readonly TrustedKey[],
): Check {
  const b = JSON.parse(e.bundle) as {
    mediaType?: unknown;
    dsseEnvelope?: { payload?: unknown; payloadType?: unknown; signatures?: { sig?: unknown }[] };
  };
  if (b.mediaType !== SIGSTORE_BUNDLE_V03 && b.mediaType !== SIGSTORE_BUNDLE_V03_ALT)
    return { ok: false, reason: `not a Sigstore bundle v0.3 (mediaType ${JSON.stringify(b.mediaType ?? null)})` };
  const env = b.dsseEnvelope;
  if (!env || typeof env !== "object") return { ok: false, reason: "the Sigstore bundle holds no DSSE envelope" };
  if (env.payloadType !== INTOTO_PAYLOAD_TYPE)
    return {
      ok: false,
      reason: `the DSSE payloadType is ${JSON.stringify(env.payloadType ?? null)}, not ${INTOTO_PAYLOAD_TYPE}`,
    };
  if (!Array.isArray(env.signatures) || env.signatures.length !== 1)
    return { ok: false, reason: "a Sigstore bundle's DSSE envelope has exactly one signature" };
  const payload = decodeB64(env.payload, "the DSSE payload");
  const signature = decodeB64(env.signatures[0]?.sig, "the DSSE signature");
  const key = verifyWithAny(keys, pae(INTOTO_PAYLOAD_TYPE, payload), signature);
  if (!key) return { ok: false, reason: "DSSE signature does not verify with any trusted key" };
  // Only the verified bytes are read from here on.
  let st: { _type?: unknown; predicateType?: unknown; subject?: { digest?: Record<string, unknown> }[] };
  try {
    st = JSON.parse(payload.toString("utf8")) as typeof st;
  } catch {
    return { ok: false, reason: "the signed in-toto statement is not JSON" };
  }
  if (st._type !== INTOTO_STATEMENT_V1)
    return { ok: false, reason: `the statement's _type is not ${INTOTO_STATEMENT_V1}` };
  if (st.predicateType !== COSIGN_SIGN_PREDICATE)
    return {
      ok: false,
      reason: `the statement is an attestation of type ${String(st.predicateType)}, not a signature (${COSIGN_SIGN_PREDICATE})`,
    };
  const hex = digestHex(digest);
  const subjects = Array.isArray(st.subject) ? st.subject : [];
  if (!subjects.some((s) => s && typeof s === "object" && s.digest?.sha256 === hex)) {
    const named = subjects.map((s) => (s?.digest?.sha256 ? `sha256:${String(s.digest.sha256)}` : "?")).join(", ");
    return {
      ok: false,
      reason: `the signature is valid but for another digest (${named || "no subject"}), not ${digest}`,
    };
  }
  return { ok: true, key, format: "sigstore-bundle" };
}
