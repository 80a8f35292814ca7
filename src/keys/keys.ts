// Signing keys: Ed25519 (audit checkpoints, signed notes) and ECDSA P-256 (OCI
// signing, cosign-compatible). Private keys are PEM PKCS#8, public keys PEM PKIX
// (SubjectPublicKeyInfo) — the encodings openssl, cosign and Go all read.
import {
  createHash,
  createPrivateKey,
  createPublicKey,
  generateKeyPairSync,
  type KeyObject,
  randomBytes,
} from "node:crypto";
import {
  closeSync,
  existsSync,
  fsyncSync,
  mkdirSync,
  openSync,
  readFileSync,
  renameSync,
  rmSync,
  writeSync,
} from "node:fs";
import { dirname, join } from "node:path";

export type KeyType = "ed25519" | "ecdsa-p256";
export const KEY_TYPES: readonly KeyType[] = ["ed25519", "ecdsa-p256"];

export class KeyError extends Error {
  override name = "KeyError";
}

export interface KeyPairPem {
  type: KeyType;
  /** PKCS#8, PEM. */
  privatePem: string;
  /** PKIX SubjectPublicKeyInfo, PEM. */
  publicPem: string;
}

export function generateKeyPair(type: KeyType): KeyPairPem {
  const pair = type === "ed25519" ? generateKeyPairSync("ed25519") : generateKeyPairSync("ec", { namedCurve: "P-256" });
  return {
    type,
    privatePem: pair.privateKey.export({ type: "pkcs8", format: "pem" }) as string,
    publicPem: pair.publicKey.export({ type: "spki", format: "pem" }) as string,
  };
}

/** The type of a private or public key, or an error naming what it is instead. */
export function keyTypeOf(key: KeyObject): KeyType {
  if (key.asymmetricKeyType === "ed25519") return "ed25519";
  if (key.asymmetricKeyType === "ec" && key.asymmetricKeyDetails?.namedCurve === "prime256v1") return "ecdsa-p256";
  const what =
    key.asymmetricKeyType === "ec" ? `ec ${key.asymmetricKeyDetails?.namedCurve}` : String(key.asymmetricKeyType);
  throw new KeyError(`unsupported key type ${what}; Warden uses ed25519 and ecdsa-p256 keys`);
}

function readKeyFile(path: string): string {
  try {
    return readFileSync(path, "utf8");
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    throw new KeyError(`cannot read key ${path}: ${e.code === "ENOENT" ? "no such file" : e.message}`);
  }
}

export function loadPrivateKey(path: string): KeyObject {
  const pem = readKeyFile(path);
  let key: KeyObject;
  try {
    key = createPrivateKey({ key: pem, format: "pem" });
  } catch (err) {
    throw new KeyError(`${path} is not a PEM private key: ${(err as Error).message}`);
  }
  keyTypeOf(key);
  return key;
}

/** A public key from a PEM file holding a public key (or a private key, whose public half is taken). */
export function loadPublicKey(path: string): KeyObject {
  const pem = readKeyFile(path);
  let key: KeyObject;
  try {
    key = createPublicKey({ key: pem, format: "pem" });
  } catch (err) {
    throw new KeyError(`${path} is not a PEM public key: ${(err as Error).message}`);
  }
  keyTypeOf(key);
  return key;
}

/** The 32-byte RFC 8032 encoding of an Ed25519 public key. */
export function ed25519PublicKeyBytes(key: KeyObject): Buffer {
  const pub = key.type === "private" ? createPublicKey(key) : key;
  if (pub.asymmetricKeyType !== "ed25519") throw new KeyError("not an Ed25519 key");
  const der = pub.export({ type: "spki", format: "der" });
  return Buffer.from(der.subarray(der.length - 32));
}

// DER prefixes of an Ed25519 PKCS#8 private key and SPKI public key (RFC 8410).
const ED25519_PKCS8_PREFIX = Buffer.from("302e020100300506032b657004220420", "hex");
const ED25519_SPKI_PREFIX = Buffer.from("302a300506032b6570032100", "hex");

export function ed25519PrivateKeyFromSeed(seed: Uint8Array): KeyObject {
  if (seed.length !== 32) throw new KeyError("an Ed25519 seed is 32 bytes");
  return createPrivateKey({ key: Buffer.concat([ED25519_PKCS8_PREFIX, seed]), format: "der", type: "pkcs8" });
}

export function ed25519PublicKeyFromBytes(pub: Uint8Array): KeyObject {
  if (pub.length !== 32) throw new KeyError("an Ed25519 public key is 32 bytes");
  return createPublicKey({ key: Buffer.concat([ED25519_SPKI_PREFIX, pub]), format: "der", type: "spki" });
}

/** `sha256:<hex>` of the DER SubjectPublicKeyInfo: a stable name for any public key. */
export function publicKeyFingerprint(key: KeyObject): string {
  const pub = key.type === "private" ? createPublicKey(key) : key;
  return `sha256:${createHash("sha256")
    .update(pub.export({ type: "spki", format: "der" }))
    .digest("hex")}`;
}

/**
 * Writes `data` to `path` so that a crash leaves either no file or the whole file:
 * a temporary file is written, synced and renamed, then the directory is synced.
 */
export function writeFileDurably(path: string, data: string | Uint8Array, mode: number): void {
  const tmp = join(dirname(path), `.${randomBytes(6).toString("hex")}.tmp`);
  const fd = openSync(tmp, "wx", mode);
  try {
    if (typeof data === "string") writeSync(fd, data);
    else writeSync(fd, data);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  try {
    renameSync(tmp, path);
  } catch (err) {
    rmSync(tmp, { force: true });
    throw err;
  }
  const dfd = openSync(dirname(path), "r");
  try {
    fsyncSync(dfd);
  } finally {
    closeSync(dfd);
  }
}

export interface WrittenKeyPair {
  privatePath: string;
  publicPath: string;
}

/** Writes `<base>.key` (0600) and `<base>.pub` in dir, refusing to overwrite unless `force`. */
export function writeKeyPair(dir: string, pair: KeyPairPem, base = "warden", force = false): WrittenKeyPair {
  try {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
  } catch (err) {
    throw new KeyError(`cannot create ${dir}: ${(err as Error).message}`);
  }
  const privatePath = join(dir, `${base}.key`);
  const publicPath = join(dir, `${base}.pub`);
  if (!force) {
    for (const p of [privatePath, publicPath]) {
      if (existsSync(p)) throw new KeyError(`${p} already exists; pass --force to replace it, or choose another --out`);
    }
  }
  try {
    writeFileDurably(privatePath, pair.privatePem, 0o600);
    writeFileDurably(publicPath, pair.publicPem, 0o644);
  } catch (err) {
    throw new KeyError(`cannot write the key pair to ${dir}: ${(err as Error).message}`);
  }
  return { privatePath, publicPath };
}
