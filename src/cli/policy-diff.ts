// `warden policy diff OLD NEW [--inputs FILE.jsonl]`: what changed between two
// policy sets, each a file, a directory, a bundle file or an oci:// reference.
// Exit codes as diff(1): 0 no differences, 1 differences, 2 trouble.
import { closeSync, openSync, readFileSync, readSync, statSync } from "node:fs";
import { parseArgs } from "node:util";
import { formatDiagnostic } from "../policy/diagnostics.js";
import { diffDecisions, diffPolicySets, isEmptyDiff, renderDiff } from "../policy/diff.js";
import { compilePolicySet, type PolicySet } from "../policy/engine.js";
import { loadPolicyPaths } from "../policy/loader.js";
import { clientFor, pullBundle } from "../supply/artifact.js";
import { BUNDLE_MANIFEST_FILE, compileBundle, openBundle } from "../supply/bundle.js";
import { DockerConfigCredentials } from "../supply/credentials.js";
import { SupplyError } from "../supply/errors.js";
import { formatReference, isOciReference, parseReference, withDigest } from "../supply/reference.js";
import type { RegistryOptions } from "../supply/registry.js";
import { loadTrustedKeys } from "../supply/trust.js";
import { pullVerified } from "../supply/verified.js";
import { type CliIO, EXIT, readInput, UsageError } from "./io.js";
import { parseInputs } from "./policy-commands.js";

export const DIFF_HELP = `Usage: warden policy diff OLD NEW [--inputs FILE.jsonl] [--format text|json]

OLD and NEW are each a policy file or directory, a bundle file (warden bundle
build), or a bundle in a registry (oci://HOST/REPO:TAG or @sha256:…). Prints the
policies added, removed and changed, and inside changed policies the settings
and rules (added, removed, changed, moved). With --inputs, a JSON Lines file of
calls (as for warden policy eval), also the calls that would be decided
differently.

Options:
  --inputs FILE|-       sample calls, one JSON object per line
  --format text|json    default text
  --key PUB             verify oci:// bundles against this public key (repeatable);
                        without it they are compared unverified, and say so
  --insecure, --authfile FILE   registry access, as for warden bundle
  --default-decision deny|allow  when no policy applies (default deny)

Exit codes: 0 no differences; 1 differences; 2 unusable input.
`;

function isBundleFile(path: string): boolean {
  try {
    if (!statSync(path).isFile()) return false;
    const fd = openSync(path, "r");
    try {
      const head = Buffer.alloc(512);
      const n = readSync(fd, head, 0, 512, 0);
      return (
        n === 512 && head.subarray(0, BUNDLE_MANIFEST_FILE.length + 1).equals(Buffer.from(`${BUNDLE_MANIFEST_FILE}\0`))
      );
    } finally {
      closeSync(fd);
    }
  } catch {
    return false;
  }
}

async function loadSide(
  what: string,
  o: { defaultDecision: "allow" | "deny"; keys: string[]; registry: RegistryOptions },
  io: CliIO,
): Promise<{ set: PolicySet; label: string }> {
  const engine = { defaultDecision: o.defaultDecision };
  if (isOciReference(what)) {
    const ref = parseReference(what);
    const client = clientFor(ref, o.registry);
    if (o.keys.length > 0) {
      const v = await pullVerified(client, ref, loadTrustedKeys(o.keys));
      return {
        set: compileBundle(v.opened, engine),
        label: `${formatReference(withDigest(ref, v.digest))} (signature verified)`,
      };
    }
    const p = await pullBundle(client, ref);
    io.stderr(`note: ${what} is compared without checking its signature (pass --key PUB to check it)\n`);
    return {
      set: compileBundle(p.opened, engine),
      label: `${formatReference(withDigest(ref, p.digest))} (unverified)`,
    };
  }
  if (isBundleFile(what)) {
    const opened = openBundle(readFileSync(what));
    return { set: compileBundle(opened, engine), label: `${what} (bundle revision ${opened.manifest.revision})` };
  }
  const loaded = await loadPolicyPaths([what]);
  const { policySet, diagnostics } = compilePolicySet(loaded, engine);
  for (const d of diagnostics) io.stderr(`${formatDiagnostic(d)}\n`);
  if (!policySet) throw new UsageError(`${what}: the policies do not load; nothing compared`);
  return { set: policySet, label: what };
}

export async function policyDiff(args: string[], io: CliIO): Promise<number> {
  let parsed: ReturnType<typeof parseArgs>;
  try {
    parsed = parseArgs({
      args,
      allowPositionals: true,
      strict: true,
      options: {
        inputs: { type: "string" },
        format: { type: "string" },
        key: { type: "string", multiple: true },
        insecure: { type: "boolean" },
        authfile: { type: "string" },
        "default-decision": { type: "string" },
        help: { type: "boolean", short: "h" },
      },
    });
  } catch (err) {
    throw new UsageError(`${(err as Error).message}\n${DIFF_HELP}`);
  }
  const { values, positionals } = parsed;
  if (values.help) {
    io.stdout(DIFF_HELP);
    return EXIT.ok;
  }
  if (positionals.length !== 2) throw new UsageError(`warden policy diff needs OLD and NEW\n${DIFF_HELP}`);
  const format = (values.format as string | undefined) ?? "text";
  if (format !== "text" && format !== "json") throw new UsageError(`--format must be text or json, not "${format}"`);
  const dd = (values["default-decision"] as string | undefined) ?? "deny";
  if (dd !== "deny" && dd !== "allow") throw new UsageError(`--default-decision must be deny or allow, not "${dd}"`);
  const registry: RegistryOptions = { insecure: values.insecure === true };
  if (typeof values.authfile === "string") registry.credentials = new DockerConfigCredentials(values.authfile);
  const o = { defaultDecision: dd as "allow" | "deny", keys: (values.key as string[] | undefined) ?? [], registry };
  const inputs =
    typeof values.inputs === "string" ? parseInputs(await readInput(values.inputs, io), values.inputs) : undefined;
  let sides: { set: PolicySet; label: string }[];
  try {
    sides = [await loadSide(positionals[0] as string, o, io), await loadSide(positionals[1] as string, o, io)];
  } catch (err) {
    if (!(err instanceof SupplyError)) throw err;
    io.stderr(`warden: ${err.message}\n`);
    return EXIT.unusable;
  }
  const [from, to] = sides as [{ set: PolicySet; label: string }, { set: PolicySet; label: string }];
  const diff = diffPolicySets(from.set, to.set);
  if (inputs) diff.decisions = diffDecisions(from.set, to.set, inputs);
  if (format === "json") io.stdout(`${JSON.stringify({ old: from.label, new: to.label, ...diff })}\n`);
  else io.stdout(`--- ${from.label}\n+++ ${to.label}\n${renderDiff(diff)}`);
  return isEmptyDiff(diff) ? EXIT.ok : EXIT.failed;
}
