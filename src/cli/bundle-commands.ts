// `warden bundle ...`: build, inspect, push, pull, sign, verify. Thin over
// src/supply. Output formats and exit codes are a contract (docs/bundles.md).
import { readFileSync, writeFileSync } from "node:fs";
import { parseArgs } from "node:util";
import { KeyError, loadPrivateKey } from "../keys/keys.js";
import { formatDiagnostic } from "../policy/diagnostics.js";
import { clientFor, fetchBundleManifest, pullBundle, pushBundle } from "../supply/artifact.js";
import { BundleBuildError, buildBundle, compileBundle, openBundle } from "../supply/bundle.js";
import { requireP256 } from "../supply/cosign.js";
import { DockerConfigCredentials } from "../supply/credentials.js";
import { SupplyError, type SupplyErrorCode } from "../supply/errors.js";
import { formatReference, parseReference, withDigest } from "../supply/reference.js";
import { OCI_MANIFEST, type RegistryOptions } from "../supply/registry.js";
import { SIGNATURE_FORMATS, type SignatureFormat, signManifest } from "../supply/signing.js";
import { loadTrustedKeys, trustKeysFromEnv } from "../supply/trust.js";
import { pullVerified } from "../supply/verified.js";
import { type CliIO, EXIT, UsageError } from "./io.js";

export const BUNDLE_HELP = `Usage: warden bundle <command> [options]

Commands:
  build DIR -o FILE [--revision REV] [--created TIME]
                          pack a policy directory into a bundle, deterministically
  inspect FILE            print a bundle's manifest (revision, files, resources)
  push FILE REF           push a bundle as an OCI artifact to REF (oci://HOST/REPO:TAG)
  pull REF -o FILE [--key PUB]...
                          fetch a bundle by tag or digest; with --key, only if signed
  sign REF --key PRIV [--format both|simplesigning|sigstore-bundle]
                          sign the bundle at REF, in cosign's formats (ECDSA P-256)
  verify REF --key PUB... [--json]
                          check the bundle at REF is signed by one of the keys

REF is oci://HOST[:PORT]/REPO:TAG or oci://HOST[:PORT]/REPO@sha256:HEX.

Registry options (push, pull, sign, verify):
  --insecure              allow plain HTTP to a registry that is not on loopback
                          (loopback registries may always use HTTP)
  --authfile FILE         credentials file in Docker's config.json format
                          (default: $DOCKER_CONFIG/config.json or ~/.docker/config.json)

Exit codes: 0 success; 1 refused (unsigned, untrusted, tampered, invalid bundle);
2 unusable input, options, registry or credentials.
`;

type OptionSpec = NonNullable<NonNullable<Parameters<typeof parseArgs>[0]>["options"]>;
const REGISTRY_OPTIONS: OptionSpec = { insecure: { type: "boolean" }, authfile: { type: "string" } };

type Values = Record<string, string | boolean | (string | boolean)[] | undefined>;

function parse(args: string[], options: OptionSpec): { values: Values; positionals: string[] } {
  try {
    return parseArgs({
      args,
      options: { ...options, help: { type: "boolean", short: "h" } },
      allowPositionals: true,
      strict: true,
    });
  } catch (err) {
    throw new UsageError(`${(err as Error).message}\n${BUNDLE_HELP}`);
  }
}

const REFUSALS: readonly SupplyErrorCode[] = [
  "invalid-bundle",
  "digest-mismatch",
  "invalid-artifact",
  "unsigned",
  "untrusted",
  "rollback",
];

export async function bundleCommand(args: string[], io: CliIO): Promise<number> {
  const [sub, ...rest] = args;
  try {
    switch (sub) {
      case "build":
        return await build(rest, io);
      case "inspect":
        return inspect(rest, io);
      case "push":
        return await push(rest, io);
      case "pull":
        return await pull(rest, io);
      case "sign":
        return await signCommand(rest, io);
      case "verify":
        return await verifyCommand(rest, io);
      case undefined:
      case "help":
      case "--help":
      case "-h":
        io.stdout(BUNDLE_HELP);
        return sub === undefined ? EXIT.unusable : EXIT.ok;
      default:
        throw new UsageError(`unknown command "bundle ${sub}"; run warden bundle --help`);
    }
  } catch (err) {
    if (err instanceof SupplyError) {
      io.stderr(`warden: ${err.message}\n`);
      return REFUSALS.includes(err.code) ? EXIT.failed : EXIT.unusable;
    }
    if (err instanceof KeyError) throw new UsageError(err.message);
    throw err;
  }
}

function registryOptions(values: Record<string, unknown>): RegistryOptions {
  const o: RegistryOptions = { insecure: values.insecure === true };
  if (typeof values.authfile === "string") o.credentials = new DockerConfigCredentials(values.authfile);
  return o;
}

function readFile(path: string): Buffer {
  try {
    return readFileSync(path);
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    throw new UsageError(`cannot read ${path}: ${e.code === "ENOENT" ? "no such file" : e.message}`);
  }
}

function positional(positionals: string[], n: number, usage: string): string[] {
  if (positionals.length !== n) throw new UsageError(`usage: warden bundle ${usage}`);
  return positionals;
}

async function build(args: string[], io: CliIO): Promise<number> {
  const { values, positionals } = parse(args, {
    output: { type: "string", short: "o" },
    revision: { type: "string" },
    created: { type: "string" },
  });
  if (values.help) return help(io);
  const [dir] = positional(positionals, 1, "build DIR -o FILE [--revision REV] [--created TIME]");
  if (typeof values.output !== "string") throw new UsageError("warden bundle build needs -o FILE");
  let built: Awaited<ReturnType<typeof buildBundle>>;
  try {
    built = await buildBundle(dir as string, {
      ...(typeof values.revision === "string" ? { revision: values.revision } : {}),
      ...(typeof values.created === "string" ? { created: values.created } : {}),
    });
  } catch (err) {
    if (!(err instanceof BundleBuildError)) throw err;
    for (const d of err.diagnostics) io.stderr(`${formatDiagnostic(d)}\n`);
    io.stderr("warden: the policies do not load; no bundle built\n");
    return EXIT.failed;
  }
  writeFileSync(values.output, built.bytes);
  const m = built.manifest;
  io.stderr(
    `built ${values.output}: revision ${m.revision}, created ${m.created}, ${m.files.length} file${m.files.length === 1 ? "" : "s"}, ${m.resources.length} resource${m.resources.length === 1 ? "" : "s"}, policy set ${m.policySet}\n`,
  );
  io.stdout(`${built.digest}\n`);
  return EXIT.ok;
}

function inspect(args: string[], io: CliIO): number {
  const { values, positionals } = parse(args, {});
  if (values.help) return help(io);
  const [file] = positional(positionals, 1, "inspect FILE");
  const opened = openBundle(readFile(file as string));
  compileBundle(opened);
  io.stdout(`${JSON.stringify({ digest: opened.digest, ...opened.manifest }, null, 2)}\n`);
  return EXIT.ok;
}

async function push(args: string[], io: CliIO): Promise<number> {
  const { values, positionals } = parse(args, REGISTRY_OPTIONS);
  if (values.help) return help(io);
  const [file, refText] = positional(positionals, 2, "push FILE oci://HOST/REPO:TAG");
  const ref = parseReference(refText as string, true);
  const bytes = readFile(file as string);
  compileBundle(openBundle(bytes));
  const pushed = await pushBundle(clientFor(ref, registryOptions(values)), ref, bytes);
  io.stderr(`pushed ${file} to ${formatReference(ref)}\n`);
  io.stdout(`${pushed.reference}\n`);
  return EXIT.ok;
}

async function pull(args: string[], io: CliIO): Promise<number> {
  const { values, positionals } = parse(args, {
    ...REGISTRY_OPTIONS,
    output: { type: "string", short: "o" },
    key: { type: "string", multiple: true },
  });
  if (values.help) return help(io);
  const [refText] = positional(positionals, 1, "pull REF -o FILE [--key PUB]...");
  if (typeof values.output !== "string") throw new UsageError("warden bundle pull needs -o FILE");
  const ref = parseReference(refText as string, true);
  const client = clientFor(ref, registryOptions(values));
  const keyPaths = (values.key as string[] | undefined) ?? [];
  let digest: string;
  let bundle: Buffer;
  if (keyPaths.length > 0) {
    const v = await pullVerified(client, ref, loadTrustedKeys(keyPaths));
    compileBundle(v.opened);
    [digest, bundle] = [v.digest, v.bundle];
    io.stderr(
      `signature verified (${v.verification.verified.map((x) => `${x.format} by ${x.key.fingerprint}`).join(", ")})\n`,
    );
  } else {
    const p = await pullBundle(client, ref);
    compileBundle(p.opened);
    [digest, bundle] = [p.digest, p.bundle];
    io.stderr("not signature-checked (pass --key PUB to require a signature)\n");
  }
  writeFileSync(values.output, bundle);
  io.stderr(`pulled ${formatReference(withDigest(ref, digest))} to ${values.output}\n`);
  io.stdout(`${formatReference(withDigest(ref, digest))}\n`);
  return EXIT.ok;
}

async function signCommand(args: string[], io: CliIO): Promise<number> {
  const { values, positionals } = parse(args, {
    ...REGISTRY_OPTIONS,
    key: { type: "string" },
    format: { type: "string" },
  });
  if (values.help) return help(io);
  const [refText] = positional(positionals, 1, "sign REF --key PRIV [--format both|simplesigning|sigstore-bundle]");
  if (typeof values.key !== "string")
    throw new UsageError("warden bundle sign needs --key PRIV (an ECDSA P-256 private key)");
  const format = (values.format as string | undefined) ?? "both";
  let formats: SignatureFormat[];
  if (format === "both") formats = [...SIGNATURE_FORMATS];
  else if ((SIGNATURE_FORMATS as readonly string[]).includes(format)) formats = [format as SignatureFormat];
  else throw new UsageError(`--format must be both, simplesigning or sigstore-bundle, not "${format}"`);
  const key = loadPrivateKey(values.key);
  requireP256(key, values.key);
  const ref = parseReference(refText as string, true);
  const client = clientFor(ref, registryOptions(values));
  // Sign only what is a Warden bundle: the manifest is fetched and checked first.
  const m = await fetchBundleManifest(client, ref);
  const r = await signManifest(
    client,
    ref,
    { mediaType: OCI_MANIFEST, digest: m.digest, size: m.manifest.length },
    key,
    formats,
  );
  if (r.signatureTag) io.stderr(`wrote simple-signing signature ${ref.registry}/${ref.repository}:${r.signatureTag}\n`);
  if (r.referrer)
    io.stderr(
      `wrote Sigstore bundle referrer ${r.referrer} (${r.referrerIndex === "existing" ? "already signed with this key; nothing written" : r.referrerIndex === "api" ? "referrers API" : `tag-schema fallback index ${ref.registry}/${ref.repository}:sha256-${m.digest.slice(7)}`})\n`,
    );
  io.stdout(`${formatReference(withDigest(ref, m.digest))}\n`);
  return EXIT.ok;
}

async function verifyCommand(args: string[], io: CliIO): Promise<number> {
  const { values, positionals } = parse(args, {
    ...REGISTRY_OPTIONS,
    key: { type: "string", multiple: true },
    json: { type: "boolean" },
  });
  if (values.help) return help(io);
  const [refText] = positional(positionals, 1, "verify REF --key PUB...");
  const keyPaths = (values.key as string[] | undefined) ?? trustKeysFromEnv();
  const ref = parseReference(refText as string, true);
  const v = await pullVerified(clientFor(ref, registryOptions(values)), ref, loadTrustedKeys(keyPaths));
  compileBundle(v.opened);
  const result = {
    reference: formatReference(withDigest(ref, v.digest)),
    digest: v.digest,
    revision: v.opened.manifest.revision,
    created: v.opened.manifest.created,
    policySet: v.opened.manifest.policySet,
    verified: v.verification.verified.map((x) => ({
      format: x.format,
      key: x.key.fingerprint,
      keyFile: x.key.source,
      from: x.from,
    })),
    rejected: v.verification.rejected,
  };
  if (values.json) {
    io.stdout(`${JSON.stringify(result)}\n`);
    return EXIT.ok;
  }
  io.stdout(`verified ${result.reference}\n`);
  io.stdout(`  revision ${result.revision}, created ${result.created}, policy set ${result.policySet}\n`);
  for (const x of result.verified) io.stdout(`  ok ${x.format} signature by ${x.key} (${x.keyFile})\n`);
  for (const x of result.rejected) io.stdout(`  ignored ${x.format} (${x.from}): ${x.reason}\n`);
  return EXIT.ok;
}

function help(io: CliIO): number {
  io.stdout(BUNDLE_HELP);
  return EXIT.ok;
}
