// Known-answer tests for signed notes and checkpoints. Vectors:
//  - the example verifier key and note of the C2SP signed-note spec (c2sp.org/signed-note, "Example");
//  - golang.org/x/mod sumdb/note note_test.go: the PeterNeumann signer key, its verifier key and the
//    exact signed note it produces (Ed25519 is deterministic, so signing must reproduce it byte for
//    byte), and the EnochRoot key and signature used to test unknown-key handling.
import assert from "node:assert/strict";
import { createPrivateKey, createPublicKey } from "node:crypto";
import { describe, it } from "node:test";
import {
  ed25519Signer,
  ed25519Verifier,
  NoteError,
  noteKeyId,
  openCheckpoint,
  openNote,
  parseCheckpointText,
  parseNote,
  parseVerifierKey,
  SIG_TYPE_ED25519,
  signCheckpoint,
  signNote,
  splitNotes,
} from "../../src/audit/note.js";
import { ed25519PrivateKeyFromSeed, ed25519PublicKeyBytes, generateKeyPair } from "../../src/keys/keys.js";

const SPEC_VKEY = "example.com/foo+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k";
const SPEC_NOTE =
  "This is an example message.\n\n\u2014 example.com/foo Uw2QOkn8srV1yJGh2VYRlL1Tnagv1YEq6TfXppzi2ONncAlTgK7Ztg1ERYNZXsYjOBH3mFXmRKuwHjG1Yu72IneyaQM=\n";

// golang.org/x/mod/sumdb/note: PRIVATE+KEY+PeterNeumann+c74f20a3+<this base64 of 0x01 || seed>
const PETER_SKEY_MATERIAL = "AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz";
const PETER_VKEY = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW";
const ENOCH_VKEY = "EnochRoot+af0cfe78+ATtqJ7zOtqQtYqOo0CpvDXNlMhV3HeJDpjrASKGLWdop";
const GO_TEXT = "If you think cryptography is the answer to your problem,\nthen you don't know what your problem is.\n";
const PETER_SIG =
  "\u2014 PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n";
const ENOCH_SIG =
  "\u2014 EnochRoot rwz+eBzmZa0SO3NbfRGzPCpDckykFXSdeX+MNtCOXm2/5n2tiOHp+vAF1aGrQ5ovTG01oOTGwnWLox33WWd1RvMc+QQ=\n";

function peterPrivateKey() {
  const material = Buffer.from(PETER_SKEY_MATERIAL, "base64");
  assert.equal(material[0], SIG_TYPE_ED25519);
  return ed25519PrivateKeyFromSeed(material.subarray(1));
}

describe("signed notes: C2SP spec example", () => {
  it("parses the example verifier key and recomputes its key ID", () => {
    const v = parseVerifierKey(SPEC_VKEY);
    assert.equal(v.name, "example.com/foo");
    assert.equal(v.keyId, 0x530d903a);
    assert.equal(v.vkey, SPEC_VKEY);
  });

  it("verifies the example note, and rejects it when one character changes", () => {
    const opened = openNote(SPEC_NOTE, [parseVerifierKey(SPEC_VKEY)]);
    assert.equal(opened.text, "This is an example message.\n");
    assert.throws(
      () => openNote(SPEC_NOTE.replace("example message", "example massage"), [parseVerifierKey(SPEC_VKEY)]),
      {
        name: "NoteError",
        kind: "bad-signature",
      },
    );
  });
});

describe("signed notes: golang.org/x/mod sumdb/note vectors", () => {
  it("derives the published verifier key from the published signer key", () => {
    const priv = peterPrivateKey();
    const v = ed25519Verifier("PeterNeumann", createPublicKey(priv));
    assert.equal(v.vkey, PETER_VKEY);
    assert.equal(ed25519Signer("PeterNeumann", priv).keyId, 0xc74f20a3);
    assert.equal(noteKeyId("PeterNeumann", 1, ed25519PublicKeyBytes(priv)), 0xc74f20a3);
  });

  it("signs the published note byte for byte", () => {
    const note = signNote(GO_TEXT, [ed25519Signer("PeterNeumann", peterPrivateKey())]);
    assert.equal(note, `${GO_TEXT}\n${PETER_SIG}`);
  });

  it("ignores unknown keys, rejects a failing known key, and rejects a note no known key signed", () => {
    const peter = parseVerifierKey(PETER_VKEY);
    const enoch = parseVerifierKey(ENOCH_VKEY);
    const both = `${GO_TEXT}\n${PETER_SIG}${ENOCH_SIG}`;
    const one = openNote(both, [peter]);
    assert.deepEqual(
      one.verifiedBy.map((v) => v.name),
      ["PeterNeumann"],
    );
    assert.deepEqual(one.unknown, [{ name: "EnochRoot", keyId: 0xaf0cfe78 }]);
    assert.deepEqual(
      openNote(both, [peter, enoch]).verifiedBy.map((v) => v.name),
      ["PeterNeumann", "EnochRoot"],
    );
    assert.throws(() => openNote(both, []), { kind: "unverified" });
    const corrupted = `${GO_TEXT}\n${PETER_SIG.slice(0, 60)}ABCD${PETER_SIG.slice(60)}`;
    assert.throws(() => openNote(corrupted, [peter]), { kind: "bad-signature" });
    // Same name, other key: unknown, not accepted.
    const other = ed25519Verifier(
      "PeterNeumann",
      createPublicKey(createPrivateKey(generateKeyPair("ed25519").privatePem)),
    );
    assert.throws(() => openNote(`${GO_TEXT}\n${PETER_SIG}`, [other]), { kind: "unverified" });
  });

  it("rejects the malformed notes of the reference suite", () => {
    const peter = parseVerifierKey(PETER_VKEY);
    const bad = [
      GO_TEXT,
      `${GO_TEXT}\n`,
      `${GO_TEXT}\n${PETER_SIG.slice(0, -1)}`,
      `\u0001${GO_TEXT}\n${PETER_SIG}`,
      `\ufffd${GO_TEXT}\n${PETER_SIG}`,
      `${GO_TEXT}\n\u2014 Bad Name x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=`,
      `${GO_TEXT}\n${PETER_SIG}Unexpected line.\n`,
      `${GO_TEXT}\n${PETER_SIG.repeat(101)}`,
    ];
    for (const note of bad) assert.throws(() => openNote(note, [peter]), { kind: "malformed" }, JSON.stringify(note));
  });

  it("rejects mangled verifier keys", () => {
    for (const k of [
      "PeterNeumann+c74f20a4+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
      "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10T",
      "Peter Neumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
      "PeterNeumann+173116ae+ZRpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
      "PeterNeumann+c74f20a3",
      "",
    ]) {
      assert.throws(() => parseVerifierKey(k), NoteError, k);
    }
  });
});

describe("checkpoints", () => {
  it("formats, signs, parses and verifies a checkpoint; refuses a bad one", () => {
    const { privatePem, publicPem } = generateKeyPair("ed25519");
    const signer = ed25519Signer("example.com/log", createPrivateKey(privatePem));
    const verifier = ed25519Verifier("example.com/log", createPublicKey(publicPem));
    const root = Buffer.alloc(32, 7);
    const note = signCheckpoint({ origin: "example.com/log", size: 42, root }, signer);
    assert.match(
      note,
      /^example\.com\/log\n42\nBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=\n\n\u2014 example\.com\/log /,
    );
    const c = openCheckpoint(note, [verifier]);
    assert.equal(c.size, 42);
    assert.deepEqual(c.root, root);
    assert.deepEqual(parseNote(note).signatures[0]?.keyId, signer.keyId);
    for (const text of [
      "o\n01\nBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=\n",
      "o\n1\nBwcH\n",
      "o\n1\n",
      "o\n1\nBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=\next\n",
    ]) {
      assert.throws(() => parseCheckpointText(text), { kind: "malformed" }, text);
    }
  });

  it("splits a file of concatenated checkpoints", () => {
    const signer = ed25519Signer("o", createPrivateKey(generateKeyPair("ed25519").privatePem));
    const notes = [1, 2, 3].map((n) => signCheckpoint({ origin: "o", size: n, root: Buffer.alloc(32, n) }, signer));
    assert.deepEqual(splitNotes(notes.join("\n")), notes);
    assert.deepEqual(splitNotes(`${notes.join("\n")}\n`), notes);
  });
});
