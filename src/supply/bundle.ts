// Policy bundles: a policy directory packed deterministically into one tar
// file, with a manifest (warden-bundle.json) listing every file's digest and
// every resource's version, the bundle's revision and its creation time.
//
// Building validates every policy first: a bundle that would not load is never
// made. Reading checks everything again: the archive's shape, the manifest's
// exact encoding, each file's digest and size, that the files are exactly the
// listed ones, and that they compile to the listed resources and policy set.
// docs/bundles.md documents the format.
import { readdir, readFile, stat } from "node:fs/promises";
import { join, relative, sep } from "node:path";
import { canonicalJson } from "../encoding/canonical-json.js";
import { type Diagnostic, formatDiagnostic, hasErrors } from "../policy/diagnostics.js";
import { compilePolicySet, type EngineOptions, type PolicySet } from "../policy/engine.js";
import { loadPolicySources, type SourceFile } from "../policy/loader.js";
import { SupplyError } from "./errors.js";
import { sha256Digest } from "./reference.js";
import { readTar, writeTar } from "./tar.js";

export const BUNDLE_MANIFEST_FILE = "warden-bundle.json";
export const POLICY_DIR = "policies";
export const BUNDLE_API_VERSION = "warden/v1";
export const BUNDLE_KIND = "PolicyBundle";
export const MAX_BUNDLE_FILES = 10_000;
export const MAX_FILE_BYTES = 4 * 1024 * 1024;
export const MAX_BUNDLE_BYTES = 64 * 1024 * 1024;
const REVISION = /^[A-Za-z0-9][A-Za-z0-9._:+-]{0,127}$/;
const CREATED = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/;

export interface BundleFileEntry {
  path: string;
  digest: string;
  size: number;
}

export interface BundleResourceEntry {
  kind: string;
  name: string;
  version: string;
  file: string;
}

/** warden-bundle.json. Stored as RFC 8785 canonical JSON. */
export interface BundleManifest {
  apiVersion: typeof BUNDLE_API_VERSION;
  kind: typeof BUNDLE_KIND;
  revision: string;
  /** RFC 3339, UTC, whole seconds. */
  created: string;
  /** The digest of the policy set the files compile to (PolicySet.digest). */
  policySet: string;
  files: BundleFileEntry[];
  resources: BundleResourceEntry[];
}

export interface BuiltBundle {
  bytes: Buffer;
  digest: string;
  manifest: BundleManifest;
}

export interface BuildOptions {
  /** Default: derived, <created as YYYYMMDDThhmmssZ>-<12 hex digits of the content digest>. */
  revision?: string;
  /** RFC 3339; default: SOURCE_DATE_EPOCH, else the newest modification time of the files. */
  created?: string;
  env?: NodeJS.ProcessEnv;
}

export class BundleBuildError extends Error {
  override name = "BundleBuildError";
  constructor(readonly diagnostics: readonly Diagnostic[]) {
    super(
      diagnostics
        .filter((d) => d.severity === "error")
        .map(formatDiagnostic)
        .join("\n"),
    );
  }
}

/** Whole seconds, UTC, "Z": the one form a bundle's creation time takes. */
export function normalizeCreated(text: string): string {
  const ms = Date.parse(text);
  if (!/^\d{4}-\d\d-\d\dT\d\d:\d\d(:\d\d(\.\d+)?)?(Z|[+-]\d\d:\d\d)$/.test(text) || Number.isNaN(ms))
    throw new SupplyError("usage", `"${text}" is not an RFC 3339 time such as 2026-01-31T12:00:00Z`);
  return new Date(Math.floor(ms / 1000) * 1000).toISOString().replace(".000Z", "Z");
}

async function collectPolicyFiles(dir: string): Promise<string[]> {
  const info = await stat(dir).catch((err: NodeJS.ErrnoException) => {
    throw new SupplyError("usage", `cannot read ${dir}: ${err.code === "ENOENT" ? "no such directory" : err.message}`);
  });
  if (!info.isDirectory())
    throw new SupplyError("usage", `${dir} is not a directory; a bundle is built from a directory`);
  const out: string[] = [];
  const walk = async (d: string) => {
    const entries = await readdir(d, { withFileTypes: true });
    entries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    for (const e of entries) {
      if (e.name.startsWith(".") || e.name === "node_modules") continue;
      const full = join(d, e.name);
      const isDir = e.isDirectory() || (e.isSymbolicLink() && (await stat(full).catch(() => null))?.isDirectory());
      if (isDir) await walk(full);
      else if (/\.ya?ml$/i.test(e.name)) out.push(full);
      if (out.length > MAX_BUNDLE_FILES) throw new SupplyError("usage", `more than ${MAX_BUNDLE_FILES} policy files`);
    }
  };
  await walk(dir);
  if (out.length === 0) throw new SupplyError("usage", `no policy files (*.yaml, *.yml) in ${dir}`);
  return out;
}

const fatalUtf8 = new TextDecoder("utf-8", { fatal: true });

function decodeText(path: string, data: Uint8Array): string {
  try {
    return fatalUtf8.decode(data);
  } catch {
    throw new SupplyError("invalid-bundle", `${path} is not valid UTF-8 text`);
  }
}

function compileSources(sources: SourceFile[], options: EngineOptions): { set?: PolicySet; diagnostics: Diagnostic[] } {
  const { policySet, diagnostics } = compilePolicySet(loadPolicySources(sources), options);
  return { set: policySet, diagnostics };
}

function resourceEntries(set: PolicySet): BundleResourceEntry[] {
  return [...set.resources, ...set.tests].map((r) => ({
    kind: r.kind,
    name: r.name,
    version: r.version,
    file: r.file,
  }));
}

/** Packs a policy directory. Throws BundleBuildError with every diagnostic if any policy does not load. */
export async function buildBundle(dir: string, o: BuildOptions = {}): Promise<BuiltBundle> {
  const env = o.env ?? process.env;
  const files = await collectPolicyFiles(dir);
  const sources: SourceFile[] = [];
  const entries: { path: string; data: Buffer }[] = [];
  let newest = 0;
  for (const full of files) {
    const data = await readFile(full);
    if (data.length > MAX_FILE_BYTES) throw new SupplyError("usage", `${full} is larger than ${MAX_FILE_BYTES} bytes`);
    const rel = relative(dir, full).split(sep).join("/");
    const path = `${POLICY_DIR}/${rel}`;
    sources.push({ file: path, text: decodeText(full, data) });
    entries.push({ path, data });
    newest = Math.max(newest, (await stat(full)).mtimeMs);
  }
  const { set, diagnostics } = compileSources(sources, {});
  if (!set || hasErrors(diagnostics)) {
    // Point diagnostics at the files on disk, not at their place in the bundle.
    const onDisk = diagnostics.map((d) => ({ ...d, file: join(dir, d.file.slice(POLICY_DIR.length + 1)) }));
    throw new BundleBuildError(onDisk);
  }
  let created: string;
  if (o.created !== undefined) created = normalizeCreated(o.created);
  else if (env.SOURCE_DATE_EPOCH !== undefined && env.SOURCE_DATE_EPOCH !== "") {
    if (!/^\d{1,12}$/.test(env.SOURCE_DATE_EPOCH))
      throw new SupplyError("usage", "SOURCE_DATE_EPOCH must be a whole number of seconds since 1970");
    created = new Date(Number(env.SOURCE_DATE_EPOCH) * 1000).toISOString().replace(".000Z", "Z");
  } else created = new Date(Math.floor(newest / 1000) * 1000).toISOString().replace(".000Z", "Z");
  const fileList: BundleFileEntry[] = entries.map((e) => ({
    path: e.path,
    digest: sha256Digest(e.data),
    size: e.data.length,
  }));
  let revision = o.revision;
  if (revision === undefined) {
    const content = sha256Digest(canonicalJson(fileList)).slice("sha256:".length, "sha256:".length + 12);
    revision = `${created.replace(/[-:]/g, "")}-${content}`;
  } else if (!REVISION.test(revision)) {
    throw new SupplyError(
      "usage",
      `revision "${revision}" must be 1–128 of A-Z a-z 0-9 . _ : + - (starting with a letter or digit)`,
    );
  }
  const manifest: BundleManifest = {
    apiVersion: BUNDLE_API_VERSION,
    kind: BUNDLE_KIND,
    revision,
    created,
    policySet: set.digest,
    files: fileList,
    resources: resourceEntries(set),
  };
  const mtime = Date.parse(created) / 1000;
  const bytes = writeTar(
    [{ path: BUNDLE_MANIFEST_FILE, data: Buffer.from(canonicalJson(manifest)) }, ...entries],
    mtime,
  );
  return { bytes, digest: sha256Digest(bytes), manifest };
}

export interface OpenedBundle {
  digest: string;
  manifest: BundleManifest;
  /** The policy files, in bundle order, with their paths inside the bundle. */
  sources: SourceFile[];
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

function checkManifestShape(v: unknown): BundleManifest {
  const bad = (why: string) => new SupplyError("invalid-bundle", `${BUNDLE_MANIFEST_FILE} is not valid: ${why}`);
  if (!isObject(v)) throw bad("not a JSON object");
  const keys = Object.keys(v).sort().join(",");
  if (keys !== "apiVersion,created,files,kind,policySet,resources,revision") throw bad(`unexpected fields (${keys})`);
  if (v.apiVersion !== BUNDLE_API_VERSION || v.kind !== BUNDLE_KIND)
    throw bad(`apiVersion/kind must be ${BUNDLE_API_VERSION}/${BUNDLE_KIND}`);
  if (typeof v.revision !== "string" || !REVISION.test(v.revision)) throw bad("revision is missing or malformed");
  if (typeof v.created !== "string" || !CREATED.test(v.created) || Number.isNaN(Date.parse(v.created)))
    throw bad("created is not an RFC 3339 UTC time in whole seconds");
  if (typeof v.policySet !== "string" || !/^sha256:[a-f0-9]{64}$/.test(v.policySet))
    throw bad("policySet is not a digest");
  if (!Array.isArray(v.files) || v.files.length === 0 || v.files.length > MAX_BUNDLE_FILES)
    throw bad("files must list 1 to 10000 files");
  for (const f of v.files) {
    if (!isObject(f) || Object.keys(f).sort().join(",") !== "digest,path,size") throw bad("a files entry is malformed");
    if (typeof f.path !== "string" || typeof f.digest !== "string" || !Number.isSafeInteger(f.size))
      throw bad("a files entry is malformed");
  }
  if (!Array.isArray(v.resources)) throw bad("resources must be a list");
  for (const r of v.resources) {
    if (!isObject(r) || Object.keys(r).sort().join(",") !== "file,kind,name,version")
      throw bad("a resources entry is malformed");
  }
  return v as unknown as BundleManifest;
}

/**
 * Reads bundle bytes and checks everything but the policies' meaning: archive
 * shape, manifest encoding, file list, digests and sizes. Throws SupplyError.
 */
export function openBundle(bytes: Uint8Array): OpenedBundle {
  if (bytes.length > MAX_BUNDLE_BYTES)
    throw new SupplyError("invalid-bundle", `the bundle is larger than ${MAX_BUNDLE_BYTES} bytes`);
  const entries = readTar(bytes, { maxEntries: MAX_BUNDLE_FILES + 1, maxEntryBytes: MAX_FILE_BYTES });
  const [first, ...files] = entries;
  if (!first || first.path !== BUNDLE_MANIFEST_FILE)
    throw new SupplyError("invalid-bundle", `the bundle does not start with ${BUNDLE_MANIFEST_FILE}`);
  const text = decodeText(BUNDLE_MANIFEST_FILE, first.data);
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (err) {
    throw new SupplyError("invalid-bundle", `${BUNDLE_MANIFEST_FILE} is not JSON: ${(err as Error).message}`);
  }
  const manifest = checkManifestShape(parsed);
  if (canonicalJson(manifest) !== text)
    throw new SupplyError("invalid-bundle", `${BUNDLE_MANIFEST_FILE} is not in canonical form (RFC 8785)`);
  if (files.length !== manifest.files.length)
    throw new SupplyError(
      "invalid-bundle",
      `the bundle holds ${files.length} policy files but its manifest lists ${manifest.files.length}`,
    );
  const sources: SourceFile[] = [];
  files.forEach((f, i) => {
    const listed = manifest.files[i] as BundleFileEntry;
    if (f.path !== listed.path)
      throw new SupplyError("invalid-bundle", `file ${i + 1} is ${f.path}, but the manifest lists ${listed.path}`);
    if (!f.path.startsWith(`${POLICY_DIR}/`) || !/\.ya?ml$/i.test(f.path))
      throw new SupplyError("invalid-bundle", `${f.path} is not a policy file under ${POLICY_DIR}/`);
    if (i > 0 && !((manifest.files[i - 1] as BundleFileEntry).path < f.path))
      throw new SupplyError("invalid-bundle", "the files are not in sorted order");
    const digest = sha256Digest(f.data);
    if (digest !== listed.digest || f.data.length !== listed.size)
      throw new SupplyError(
        "digest-mismatch",
        `${f.path} has digest ${digest} (${f.data.length} bytes), but the bundle manifest says ${listed.digest} (${listed.size} bytes)`,
      );
    sources.push({ file: f.path, text: decodeText(f.path, f.data) });
  });
  return { digest: sha256Digest(bytes), manifest, sources };
}

/** Compiles an opened bundle and checks it yields exactly the resources and policy set its manifest lists. */
export function compileBundle(bundle: OpenedBundle, options: EngineOptions = {}): PolicySet {
  const { set, diagnostics } = compileSources(bundle.sources, options);
  if (!set) {
    throw new SupplyError(
      "invalid-bundle",
      `the bundle's policies do not load:\n${diagnostics
        .filter((d) => d.severity === "error")
        .map(formatDiagnostic)
        .join("\n")}`,
    );
  }
  if (set.digest !== bundle.manifest.policySet)
    throw new SupplyError(
      "invalid-bundle",
      `the bundle's policies compile to policy set ${set.digest}, but its manifest says ${bundle.manifest.policySet}`,
    );
  if (canonicalJson(resourceEntries(set)) !== canonicalJson(bundle.manifest.resources))
    throw new SupplyError("invalid-bundle", "the bundle's resources differ from the ones its manifest lists");
  return set;
}
