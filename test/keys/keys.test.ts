import assert from "node:assert/strict";
import { createPublicKey, sign, verify } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, it } from "node:test";
import {
  generateKeyPair,
  KeyError,
  keyTypeOf,
  loadPrivateKey,
  loadPublicKey,
  publicKeyFingerprint,
  writeKeyPair,
} from "../../src/keys/keys.js";

const root = mkdtempSync(join(tmpdir(), "warden-keys-"));
after(() => rmSync(root, { recursive: true, force: true }));

describe("key generation", () => {
  for (const type of ["ed25519", "ecdsa-p256"] as const) {
    it(`writes a ${type} pair as PEM PKCS#8 (0600) and PKIX, which load back and sign`, () => {
      const dir = join(root, type);
      const pair = generateKeyPair(type);
      assert.match(pair.privatePem, /^-----BEGIN PRIVATE KEY-----\n/);
      assert.match(pair.publicPem, /^-----BEGIN PUBLIC KEY-----\n/);
      const { privatePath, publicPath } = writeKeyPair(dir, pair);
      assert.equal(statSync(privatePath).mode & 0o777, 0o600);
      assert.equal(readFileSync(publicPath, "utf8"), pair.publicPem);
      const priv = loadPrivateKey(privatePath);
      const pub = loadPublicKey(publicPath);
      assert.equal(keyTypeOf(priv), type);
      assert.equal(keyTypeOf(pub), type);
      const alg = type === "ed25519" ? null : "sha256";
      const sig = sign(alg, Buffer.from("hello"), priv);
      assert.ok(verify(alg, Buffer.from("hello"), pub, sig));
      assert.equal(publicKeyFingerprint(priv), publicKeyFingerprint(pub));
      assert.deepEqual(createPublicKey(priv).export({ type: "spki", format: "pem" }), pair.publicPem);
      // Never silently overwritten.
      assert.throws(() => writeKeyPair(dir, generateKeyPair(type)), /already exists; pass --force/);
      assert.equal(readFileSync(publicPath, "utf8"), pair.publicPem);
      writeKeyPair(dir, generateKeyPair(type), "warden", true);
      assert.notEqual(readFileSync(publicPath, "utf8"), pair.publicPem);
    });
  }

  it("names what is wrong with a file that is not a usable key", () => {
    const junk = join(root, "junk.pem");
    writeFileSync(junk, "not a key");
    assert.throws(
      () => loadPrivateKey(junk),
      (e: Error) => e instanceof KeyError && /not a PEM private key/.test(e.message),
    );
    assert.throws(() => loadPublicKey(join(root, "missing.pem")), /no such file/);
  });
});
