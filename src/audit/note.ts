// C2SP signed notes (c2sp.org/signed-note) with Ed25519 signatures, verifier keys
// (`name+hexid+base64(0x01||pub)`), and tlog checkpoints (c2sp.org/tlog-checkpoint):
// origin, tree size and base64 root hash, signed as a note.
import { createHash, type KeyObject, sign, verify } from "node:crypto";
import { ed25519PublicKeyBytes, ed25519PublicKeyFromBytes } from "../keys/keys.js";
import { HASH_SIZE } from "./merkle.js";

export const SIG_TYPE_ED25519 = 0x01;
const EM_DASH = "\u2014";
/** The reference implementation rejects notes with more; the spec requires at least 16. */
const MAX_SIGNATURES = 100;

export class NoteError extends Error {
  override name = "NoteError";
  constructor(
    readonly kind: "malformed" | "unverified" | "bad-signature",
    message: string,
  ) {
    super(message);
  }
}

export function isValidKeyName(name: string): boolean {
  return name.length > 0 && !/[\s+]/u.test(name);
}

/** key ID = SHA-256(name || 0x0A || type || public key)[:4], big-endian. */
export function noteKeyId(name: string, type: number, publicKey: Uint8Array): number {
  return createHash("sha256")
    .update(name, "utf8")
    .update(Buffer.from([0x0a, type]))
    .update(publicKey)
    .digest()
    .readUInt32BE(0);
}

const hex8 = (id: number) => id.toString(16).padStart(8, "0");

export interface NoteSigner {
  readonly name: string;
  readonly keyId: number;
  sign(text: Buffer): Buffer;
}

export interface NoteVerifier {
  readonly name: string;
  readonly keyId: number;
  /** The verifier key string, `name+hexid+base64(type||key)`. */
  readonly vkey: string;
  verify(text: Buffer, signature: Buffer): boolean;
}

export function ed25519Signer(name: string, privateKey: KeyObject): NoteSigner {
  if (!isValidKeyName(name)) throw new NoteError("malformed", `invalid key name "${name}": no spaces or + allowed`);
  if (privateKey.asymmetricKeyType !== "ed25519") throw new NoteError("malformed", "notes are signed with Ed25519");
  const keyId = noteKeyId(name, SIG_TYPE_ED25519, ed25519PublicKeyBytes(privateKey));
  return { name, keyId, sign: (text) => sign(null, text, privateKey) };
}

export function ed25519Verifier(name: string, publicKey: KeyObject): NoteVerifier {
  if (!isValidKeyName(name)) throw new NoteError("malformed", `invalid key name "${name}": no spaces or + allowed`);
  const pub = ed25519PublicKeyBytes(publicKey);
  const keyId = noteKeyId(name, SIG_TYPE_ED25519, pub);
  const vkey = `${name}+${hex8(keyId)}+${Buffer.concat([Buffer.from([SIG_TYPE_ED25519]), pub]).toString("base64")}`;
  const key = ed25519PublicKeyFromBytes(pub);
  return { name, keyId, vkey, verify: (text, sig) => sig.length === 64 && verify(null, text, key, sig) };
}

/** Decodes standard base64, refusing anything that does not round-trip (no silent garbage). */
export function strictBase64(text: string): Buffer | undefined {
  if (!/^[A-Za-z0-9+/]*={0,2}$/.test(text) || text.length % 4 !== 0) return undefined;
  const b = Buffer.from(text, "base64");
  return b.toString("base64") === text ? b : undefined;
}

/** Parses a verifier key `name+hexid+base64(0x01||pub)`; only Ed25519 keys are accepted. */
export function parseVerifierKey(vkey: string): NoteVerifier {
  const bad = (why: string) => new NoteError("malformed", `invalid verifier key "${vkey}": ${why}`);
  const first = vkey.indexOf("+");
  const second = vkey.indexOf("+", first + 1);
  if (first <= 0 || second < 0) throw bad("expected name+hexid+base64key");
  const name = vkey.slice(0, first);
  const idHex = vkey.slice(first + 1, second);
  const material = strictBase64(vkey.slice(second + 1));
  if (!isValidKeyName(name)) throw bad("the name must not be empty or contain spaces or +");
  if (!/^[0-9a-f]{8}$/.test(idHex)) throw bad("the key ID must be 8 lowercase hex digits");
  if (!material || material.length < 1) throw bad("the key is not valid base64");
  if (material[0] !== SIG_TYPE_ED25519) throw bad(`unsupported signature type 0x${hex8(material[0] ?? 0).slice(6)}`);
  if (material.length !== 33) throw bad("an Ed25519 key is 32 bytes");
  const v = ed25519Verifier(name, ed25519PublicKeyFromBytes(material.subarray(1)));
  if (hex8(v.keyId) !== idHex) throw bad(`the key ID does not match the key (expected ${hex8(v.keyId)})`);
  return v;
}

/** ASCII control characters other than newline (U+000A), which notes must not contain. */
function hasControlCharacters(s: string): boolean {
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x20 && c !== 0x0a) return true;
  }
  return false;
}

export interface NoteSignature {
  name: string;
  keyId: number;
  /** The signature bytes after the 4-byte key ID. */
  signature: Buffer;
}

export interface ParsedNote {
  text: string;
  signatures: NoteSignature[];
}

/** Splits a signed note into text and signature lines, checking the format (not the signatures). */
export function parseNote(note: string): ParsedNote {
  const malformed = (why: string) => new NoteError("malformed", `malformed note: ${why}`);
  // Control characters other than newline are forbidden; U+FFFD flags bytes that were not UTF-8.
  if (hasControlCharacters(note) || note.includes("\ufffd")) throw malformed("control characters or invalid UTF-8");
  if (!note.endsWith("\n")) throw malformed("must end with a newline");
  const split = note.lastIndexOf("\n\n");
  if (split < 0) throw malformed("no blank line before the signatures");
  const text = note.slice(0, split + 1);
  const lines = note.slice(split + 2, -1).split("\n");
  if (lines.length > MAX_SIGNATURES) throw malformed(`more than ${MAX_SIGNATURES} signatures`);
  const signatures: NoteSignature[] = [];
  for (const line of lines) {
    const m = /^\u2014 (\S+) (\S+)$/u.exec(line);
    if (!m) throw malformed(`bad signature line "${line}"`);
    const name = m[1] as string;
    const sig = strictBase64(m[2] as string);
    if (!isValidKeyName(name)) throw malformed(`bad key name "${name}"`);
    if (!sig || sig.length < 5) throw malformed(`bad signature for ${name}`);
    signatures.push({ name, keyId: sig.readUInt32BE(0), signature: sig.subarray(4) });
  }
  return { text, signatures };
}

export function signNote(text: string, signers: readonly NoteSigner[]): string {
  if (!text.endsWith("\n") || hasControlCharacters(text)) {
    throw new NoteError("malformed", "note text must end with a newline and contain no control characters");
  }
  if (text.includes("\n\n") || text.startsWith("\n"))
    throw new NoteError("malformed", "note text must not contain blank lines");
  const body = Buffer.from(text, "utf8");
  const lines = signers.map((s) => {
    const id = Buffer.alloc(4);
    id.writeUInt32BE(s.keyId, 0);
    return `${EM_DASH} ${s.name} ${Buffer.concat([id, s.sign(body)]).toString("base64")}\n`;
  });
  return `${text}\n${lines.join("")}`;
}

export interface OpenedNote {
  text: string;
  /** The trusted keys whose signatures verified. */
  verifiedBy: NoteVerifier[];
  /** Signatures from keys not among the verifiers (ignored, as the spec requires). */
  unknown: { name: string; keyId: number }[];
}

/**
 * Verifies a signed note the way c2sp.org/signed-note asks: signatures from
 * unknown keys are ignored; a signature from a known key that fails rejects the
 * whole note; a note no known key has signed is rejected.
 */
export function openNote(note: string, verifiers: readonly NoteVerifier[]): OpenedNote {
  const parsed = parseNote(note);
  const body = Buffer.from(parsed.text, "utf8");
  const verifiedBy: NoteVerifier[] = [];
  const unknown: { name: string; keyId: number }[] = [];
  for (const s of parsed.signatures) {
    const v = verifiers.find((k) => k.name === s.name && k.keyId === s.keyId);
    if (!v) {
      unknown.push({ name: s.name, keyId: s.keyId });
      continue;
    }
    if (!v.verify(body, s.signature)) {
      throw new NoteError("bad-signature", `invalid signature by key ${s.name}+${hex8(s.keyId)}`);
    }
    if (!verifiedBy.includes(v)) verifiedBy.push(v);
  }
  if (verifiedBy.length === 0) {
    const seen = unknown.map((u) => `${u.name}+${hex8(u.keyId)}`).join(", ");
    throw new NoteError("unverified", `no signature from a trusted key (signed by ${seen || "nobody"})`);
  }
  return { text: parsed.text, verifiedBy, unknown };
}

export function keyLabel(k: { name: string; keyId: number }): string {
  return `${k.name}+${hex8(k.keyId)}`;
}

export interface Checkpoint {
  origin: string;
  size: number;
  root: Buffer;
}

export function formatCheckpoint(c: Checkpoint): string {
  if (!isValidKeyName(c.origin)) throw new NoteError("malformed", `invalid origin "${c.origin}"`);
  return `${c.origin}\n${c.size}\n${c.root.toString("base64")}\n`;
}

/** Parses checkpoint text (origin, size, root; extension lines are refused: we never write them). */
export function parseCheckpointText(text: string): Checkpoint {
  const bad = (why: string) => new NoteError("malformed", `malformed checkpoint: ${why}`);
  const lines = text.split("\n");
  if (lines.pop() !== "") throw bad("must end with a newline");
  if (lines.length < 3) throw bad("needs origin, tree size and root hash lines");
  if (lines.length > 3) throw bad("unexpected extension lines");
  const [origin, sizeText, rootText] = lines as [string, string, string];
  if (origin === "") throw bad("empty origin");
  if (!/^(0|[1-9][0-9]*)$/.test(sizeText) || !Number.isSafeInteger(Number(sizeText))) {
    throw bad(`tree size "${sizeText}" is not a decimal number without leading zeros`);
  }
  const root = strictBase64(rootText);
  if (!root || root.length !== HASH_SIZE) throw bad("root hash is not 32 bytes of base64");
  return { origin, size: Number(sizeText), root };
}

/** A checkpoint signed by `signer`, whose name must be the origin. */
export function signCheckpoint(c: Checkpoint, signer: NoteSigner): string {
  return signNote(formatCheckpoint(c), [signer]);
}

export interface VerifiedCheckpoint extends Checkpoint {
  note: string;
  verifiedBy: NoteVerifier[];
}

export function openCheckpoint(note: string, verifiers: readonly NoteVerifier[]): VerifiedCheckpoint {
  const opened = openNote(note, verifiers);
  return { ...parseCheckpointText(opened.text), note, verifiedBy: opened.verifiedBy };
}

/**
 * Splits a file of checkpoints written one after another, each followed by a
 * blank line (the format `warden audit export` writes).
 */
export function splitNotes(text: string): string[] {
  const notes: string[] = [];
  let current: string[] = [];
  let inSignatures = false;
  for (const line of text.split("\n")) {
    if (line === "") {
      if (inSignatures) {
        notes.push(`${current.join("\n")}\n`);
        current = [];
        inSignatures = false;
      } else if (current.length > 0) {
        current.push("");
      }
      continue;
    }
    if (line.startsWith(`${EM_DASH} `) && current.at(-1) === "") inSignatures = true;
    current.push(line);
  }
  if (current.length > 0) notes.push(`${current.join("\n")}\n`);
  return notes;
}
