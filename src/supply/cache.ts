// The verified-bundle cache in the data directory, so a Guard restarts offline.
//
//   <data-dir>/bundles/blobs/sha256/<hex>       manifests and bundles, by digest
//   <data-dir>/bundles/refs/<sha256 of ref>.json what a reference last resolved to,
//                                                with the signatures that verified it
//
// The cache is not trusted: whatever is read back is checked again exactly as
// a pull is (digests, bundle, signatures against the keys pinned *now*).
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import { writeFileDurably } from "../keys/keys.js";
import type { Evidence } from "./cosign.js";
import { SupplyError } from "./errors.js";
import { digestHex, sha256Digest } from "./reference.js";

export interface CacheEntry {
  reference: string;
  digest: string;
  bundleDigest: string;
  revision: string;
  created: string;
  policySet: string;
  evidence: Evidence[];
  /** When this Guard verified it (RFC 3339). */
  verifiedAt: string;
}

export interface CachedBundle {
  entry: CacheEntry;
  manifest: Buffer;
  bundle: Buffer;
}

export class BundleCache {
  readonly dir: string;

  constructor(dataDir: string) {
    this.dir = join(dataDir, "bundles");
  }

  private refFile(reference: string): string {
    return join(this.dir, "refs", `${digestHex(sha256Digest(reference))}.json`);
  }

  private blobFile(digest: string): string {
    return join(this.dir, "blobs", "sha256", digestHex(digest));
  }

  /** What the cache holds for a reference, digest-checked; null if nothing. Throws SupplyError("cache") if unreadable. */
  read(reference: string): CachedBundle | null {
    const file = this.refFile(reference);
    if (!existsSync(file)) return null;
    const bad = (why: string) =>
      new SupplyError("cache", `the cached bundle for ${reference} (${file}) is unusable: ${why}`);
    let entry: CacheEntry;
    try {
      entry = JSON.parse(readFileSync(file, "utf8")) as CacheEntry;
    } catch (err) {
      throw bad((err as Error).message);
    }
    if (entry.reference !== reference || typeof entry.digest !== "string" || !Array.isArray(entry.evidence))
      throw bad("its record is malformed");
    const load = (digest: string, what: string) => {
      let bytes: Buffer;
      try {
        bytes = readFileSync(this.blobFile(digest));
      } catch (err) {
        throw bad(`its ${what} cannot be read (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`);
      }
      if (sha256Digest(bytes) !== digest) throw bad(`its ${what} does not have digest ${digest}`);
      return bytes;
    };
    return { entry, manifest: load(entry.digest, "manifest"), bundle: load(entry.bundleDigest, "bundle") };
  }

  /** Stores a verified bundle for a reference (blobs first, then the record, each durably), and drops unused blobs. */
  write(entry: CacheEntry, manifest: Buffer, bundle: Buffer): void {
    try {
      mkdirSync(join(this.dir, "blobs", "sha256"), { recursive: true, mode: 0o700 });
      mkdirSync(join(this.dir, "refs"), { recursive: true, mode: 0o700 });
      for (const bytes of [manifest, bundle]) {
        const path = this.blobFile(sha256Digest(bytes));
        if (!existsSync(path) || sha256Digest(readFileSync(path)) !== sha256Digest(bytes))
          writeFileDurably(path, bytes, 0o600);
      }
      writeFileDurably(this.refFile(entry.reference), `${JSON.stringify(entry, null, 2)}\n`, 0o600);
      this.collect();
    } catch (err) {
      if (err instanceof SupplyError) throw err;
      throw new SupplyError("cache", `cannot write the bundle cache in ${this.dir}: ${(err as Error).message}`);
    }
  }

  /** Removes blobs no reference points at. */
  private collect(): void {
    const used = new Set<string>();
    for (const f of readdirSync(join(this.dir, "refs"))) {
      if (!f.endsWith(".json")) continue;
      try {
        const e = JSON.parse(readFileSync(join(this.dir, "refs", f), "utf8")) as CacheEntry;
        used.add(digestHex(e.digest));
        used.add(digestHex(e.bundleDigest));
      } catch {
        return; // an unreadable record: keep everything rather than guess
      }
    }
    for (const f of readdirSync(join(this.dir, "blobs", "sha256"))) {
      if (!used.has(f)) rmSync(join(this.dir, "blobs", "sha256", f), { force: true });
    }
  }
}
