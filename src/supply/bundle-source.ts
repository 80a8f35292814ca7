// Policies from a signed OCI bundle, for a running Guard: the same
// PolicyProvider interface and ReloadEvent reporting as policy files.
//
// Opening: pull → verify the signature against the pinned keys → verify
// digests → compile → check it is not older than the cached one → use it and
// cache it. If the registry cannot be reached, or what it serves is refused, a
// cached bundle (re-verified now, with today's keys) is used instead; with no
// usable cache, opening fails and the Guard does not start (fail closed).
//
// Running: the tag is polled (HEAD, then a full verified pull when the digest
// changes). A new bundle that verifies and is not a rollback is swapped in; one
// that does not is refused and the last good one stays. Both are reported as
// ReloadEvents, which the gateways write to the audit log; a refusal once per
// digest and reason. A digest refused for want of a trusted signature is checked
// again on later polls (it may be signed after it was pushed); any other refusal
// of a digest is final.

import { ensureDataDir } from "../audit/data-dir.js";
import {
  type BundleEventInfo,
  FilePolicySource,
  type PolicyInForce,
  type ReloadEvent,
  type WatchablePolicySource,
} from "../mcp/policy-source.js";
import type { EngineOptions, PolicySet } from "../policy/engine.js";
import { checkPulled, clientFor } from "./artifact.js";
import { compileBundle, type OpenedBundle } from "./bundle.js";
import { BundleCache, type CacheEntry } from "./cache.js";
import type { Evidence, TrustedKey } from "./cosign.js";
import { SupplyError, type SupplyErrorCode } from "./errors.js";
import { formatReference, isOciReference, type OciReference, parseReference, withDigest } from "./reference.js";
import type { RegistryClient, RegistryOptions } from "./registry.js";
import { collectEvidence, requireVerified } from "./signing.js";
import { loadTrustedKeys } from "./trust.js";
import { pullVerified } from "./verified.js";

export const DEFAULT_POLL_INTERVAL_MS = 60_000;

/** Verdicts on a bundle (it is refused); anything else is a failure to fetch one (network, credentials, registry). */
const REFUSALS: readonly SupplyErrorCode[] = [
  "unsigned",
  "untrusted",
  "digest-mismatch",
  "invalid-bundle",
  "invalid-artifact",
  "rollback",
];

/**
 * Refusals that a digest can outgrow: signatures are stored next to a bundle, not
 * in it, so one with no signature (pushed, not signed yet: `bundle push`, then
 * `bundle sign`) or none by a trusted key (signed again with the right key) can
 * verify later without its digest changing. Such a digest is checked again on
 * every poll. Every other refusal is final for the digest: its content does not
 * match it (digest-mismatch), is not a valid bundle (invalid-bundle,
 * invalid-artifact), or is older than the bundle in force, which only moves
 * forward (rollback).
 */
const AWAITING_SIGNATURE: readonly SupplyErrorCode[] = ["unsigned", "untrusted"];

export interface BundleSourceOptions {
  /** oci://HOST/REPO:TAG or @sha256:… */
  reference: string;
  keys: readonly TrustedKey[];
  /** The data directory; the cache lives in <dataDir>/bundles. */
  dataDir: string;
  engine?: EngineOptions;
  registry?: RegistryOptions;
  /** How often to look for a new bundle; 0 turns polling off. Digest references are never polled. */
  pollIntervalMs?: number;
  /** Accept a bundle older than the one in force (default: refuse it). */
  allowRollback?: boolean;
  /** Operator notes (stderr). */
  log?: (message: string) => void;
}

/** What the gateway decides with: the set, the bundle it came from, and that bundle's name for records. */
interface InForce extends PolicyInForce {
  readonly info: BundleEventInfo;
  /** "oci://HOST/REPO:TAG@sha256:…", formatted once per bundle, not once per call. */
  readonly bundle: string;
}

function snapshot(ref: OciReference, set: PolicySet, i: BundleEventInfo): InForce {
  return Object.freeze({ set, info: i, bundle: formatReference(withDigest(ref, i.digest)) });
}

function info(reference: string, digest: string, opened: OpenedBundle): BundleEventInfo {
  const m = opened.manifest;
  return { reference, digest, revision: m.revision, created: m.created, policySet: m.policySet };
}

/**
 * Whether `candidate` is older than `running`: an earlier creation time, or, when
 * both revisions are whole numbers, a smaller revision.
 */
export function isRollback(
  candidate: { created: string; revision: string },
  running: { created: string; revision: string },
): boolean {
  if (Date.parse(candidate.created) < Date.parse(running.created)) return true;
  if (/^\d{1,15}$/.test(candidate.revision) && /^\d{1,15}$/.test(running.revision))
    return Number(candidate.revision) < Number(running.revision);
  return false;
}

const diagnostic = (file: string, message: string) => ({ file, line: 1, col: 1, severity: "error" as const, message });

export class BundlePolicySource implements WatchablePolicySource {
  private state: InForce;
  private timer: NodeJS.Timeout | undefined;
  private polling: Promise<unknown> = Promise.resolve();
  /** Digests refused for good: not fetched again. */
  private readonly refused = new Set<string>();
  /** Digests waiting for a trusted signature (AWAITING_SIGNATURE), with the refusals already reported for each. */
  private readonly awaitingSignature = new Map<string, Set<SupplyErrorCode>>();
  private unreachableSince: number | null = null;
  private tagMissing = false;
  private onEvent: ((e: ReloadEvent) => void) | undefined;
  private closed = false;

  private constructor(
    private readonly o: BundleSourceOptions,
    private readonly ref: OciReference,
    private readonly client: RegistryClient,
    private readonly cache: BundleCache,
    initial: InForce,
    private readonly pending: ReloadEvent[],
  ) {
    this.state = initial;
  }

  /** Opens the source; throws SupplyError when there is no verified bundle to run on. */
  static async open(o: BundleSourceOptions): Promise<BundlePolicySource> {
    const ref = parseReference(o.reference);
    const reference = formatReference(ref);
    const client = clientFor(ref, o.registry);
    const cache = new BundleCache(o.dataDir);
    const log = o.log ?? (() => {});
    const pending: ReloadEvent[] = [];

    let cached: InForce | undefined;
    let cacheProblem: string | undefined;
    try {
      const c = cache.read(reference);
      if (c) cached = BundlePolicySource.fromCache(ref, reference, c.entry, c.manifest, c.bundle, o);
    } catch (err) {
      if (!(err instanceof SupplyError)) throw err;
      cacheProblem = err.message;
      log(`the cached bundle is not usable: ${err.message}`);
    }

    let fetched: InForce | undefined;
    let evidence: Evidence[] = [];
    let manifest: Buffer | undefined;
    let bundle: Buffer | undefined;
    let problem: SupplyError | undefined;
    try {
      const v = await pullVerified(client, ref, o.keys);
      const set = compileBundle(v.opened, o.engine);
      fetched = snapshot(ref, set, info(reference, v.digest, v.opened));
      [evidence, manifest, bundle] = [v.evidence, v.manifest, v.bundle];
    } catch (err) {
      if (!(err instanceof SupplyError)) throw err;
      problem = err;
    }

    if (
      fetched &&
      cached &&
      fetched.info.digest !== cached.info.digest &&
      isRollback(fetched.info, cached.info) &&
      !o.allowRollback
    ) {
      problem = new SupplyError(
        "rollback",
        `${reference} now resolves to revision ${fetched.info.revision} (created ${fetched.info.created}), older than the cached revision ${cached.info.revision} (created ${cached.info.created}); refused as a rollback (allow it explicitly to accept)`,
      );
      pending.push(BundlePolicySource.refusedEvent(problem, cached, { ...fetched.info }));
      fetched = undefined;
    }
    if (fetched && manifest && bundle) {
      BundlePolicySource.store(cache, fetched.info, evidence, manifest, bundle, log);
      return new BundlePolicySource(o, ref, client, cache, fetched, pending);
    }
    if (cached && problem) {
      if (!REFUSALS.includes(problem.code)) {
        pending.push({
          kind: "loaded",
          set: cached.set,
          previous: cached.set.digest,
          warnings: [],
          reason: `the registry could not be used (${problem.message}); started from the cached bundle, verified again against the trusted keys`,
          bundle: cached.info,
          previousBundle: null,
        });
      } else if (problem.code !== "rollback")
        pending.push(BundlePolicySource.refusedEvent(problem, cached, { reference }));
      log(
        `using the cached bundle ${cached.info.reference}@${cached.info.digest} (revision ${cached.info.revision}): ${problem.message}`,
      );
      const source = new BundlePolicySource(o, ref, client, cache, cached, pending);
      if (problem.code === "unreachable") source.unreachableSince = Date.now();
      return source;
    }
    const why = problem?.message ?? "no bundle";
    throw new SupplyError(
      problem?.code ?? "unreachable",
      `${why}\nno verified bundle to start from: ${cacheProblem ?? `nothing cached for ${reference} in ${cache.dir}`}; refusing to start (fail closed)`,
    );
  }

  private static fromCache(
    ref: OciReference,
    reference: string,
    entry: CacheEntry,
    manifest: Buffer,
    bundle: Buffer,
    o: BundleSourceOptions,
  ): InForce {
    const opened = checkPulled(manifest, bundle, `the cached bundle for ${reference}`);
    requireVerified(
      entry.digest,
      entry.evidence.map((evidence) => ({ evidence, from: "the cache" })),
      o.keys,
    );
    return snapshot(ref, compileBundle(opened, o.engine), info(reference, entry.digest, opened));
  }

  private static store(
    cache: BundleCache,
    i: BundleEventInfo,
    evidence: Evidence[],
    manifest: Buffer,
    bundle: Buffer,
    log: (m: string) => void,
  ) {
    try {
      cache.write(
        {
          reference: i.reference,
          digest: i.digest,
          bundleDigest: checkPulled(manifest, bundle, i.reference).digest,
          revision: i.revision,
          created: i.created,
          policySet: i.policySet,
          evidence,
          verifiedAt: new Date().toISOString(),
        },
        manifest,
        bundle,
      );
    } catch (err) {
      // Serving the verified bundle matters more than caching it; the operator is told.
      log(`${(err as Error).message}; the Guard runs, but could not restart offline from this bundle`);
    }
  }

  private static refusedEvent(
    err: SupplyError,
    keeping: InForce,
    candidate: Partial<BundleEventInfo> & { reference: string },
  ): ReloadEvent {
    return {
      kind: "refused",
      keeping: keeping.set.digest,
      diagnostics: [diagnostic(candidate.reference, err.message)],
      reason: `a new policy bundle was refused (${err.code}); the last good bundle stays in force`,
      bundle: candidate,
      keepingBundle: keeping.info,
      code: err.code,
    };
  }

  current(): PolicySet {
    return this.state.set;
  }

  /** The set and its bundle, swapped together as one object. */
  inForce(): PolicyInForce {
    return this.state;
  }

  /** "oci://HOST/REPO:TAG@sha256:…": the reference and the digest in force (lifecycle records; decisions use inForce()). */
  bundle(): string {
    return this.state.bundle;
  }

  /** The bundle in force. */
  info(): BundleEventInfo {
    return this.state.info;
  }

  /** Reports what happened while opening, then polls (unless polling is off or the reference is a digest). */
  watch(onEvent: (e: ReloadEvent) => void): void {
    this.onEvent = onEvent;
    for (const e of this.pending.splice(0)) onEvent(e);
    const every = this.o.pollIntervalMs ?? DEFAULT_POLL_INTERVAL_MS;
    if (every <= 0 || this.ref.digest !== undefined || this.timer) return;
    this.timer = setInterval(() => {
      this.polling = this.polling.then(() => this.poll()).catch(() => {});
    }, every);
    this.timer.unref();
  }

  /** Looks for a new bundle now; resolves with the event it reported, if any. */
  async poll(): Promise<ReloadEvent | null> {
    if (this.closed || this.ref.digest !== undefined) return null; // a digest reference cannot change
    const log = this.o.log ?? (() => {});
    const reference = this.state.info.reference;
    let digest: string | null;
    try {
      digest = await this.client.headManifest(this.ref.tag as string, ["application/vnd.oci.image.manifest.v1+json"]);
    } catch (err) {
      if (!(err instanceof SupplyError)) throw err;
      if (this.unreachableSince === null) {
        this.unreachableSince = Date.now();
        log(
          `cannot check ${reference} for a new bundle (${err.message}); keeping revision ${this.state.info.revision}`,
        );
      }
      return null;
    }
    if (this.unreachableSince !== null) {
      log(`the registry for ${reference} answers again`);
      this.unreachableSince = null;
    }
    if (digest === null) {
      if (!this.tagMissing)
        log(`${reference} is not in the registry any more; keeping revision ${this.state.info.revision}`);
      this.tagMissing = true;
      return null;
    }
    this.tagMissing = false;
    if (digest === this.state.info.digest || this.refused.has(digest)) return null;
    let event: ReloadEvent;
    try {
      // Checked again: the signatures first, so that until one verifies neither
      // the manifest nor the bundle is fetched again; then the full pull.
      if (this.awaitingSignature.has(digest))
        requireVerified(digest, await collectEvidence(this.client, digest), this.o.keys);
      const v = await pullVerified(this.client, this.ref, this.o.keys, digest);
      if (v.digest === this.state.info.digest) return null;
      const candidate = info(reference, v.digest, v.opened);
      if (isRollback(candidate, this.state.info) && !this.o.allowRollback)
        throw Object.assign(
          new SupplyError(
            "rollback",
            `${reference} now resolves to revision ${candidate.revision} (created ${candidate.created}), older than revision ${this.state.info.revision} (created ${this.state.info.created}) in force; refused as a rollback`,
          ),
          { candidate },
        );
      const set = compileBundle(v.opened, this.o.engine);
      const previous = this.state;
      this.state = snapshot(this.ref, set, candidate);
      this.awaitingSignature.delete(v.digest);
      BundlePolicySource.store(this.cache, candidate, v.evidence, v.manifest, v.bundle, log);
      event = {
        kind: "loaded",
        set,
        previous: previous.set.digest,
        warnings: [],
        reason: `a new signed policy bundle was verified and is now in force (revision ${candidate.revision}, was ${previous.info.revision})`,
        bundle: candidate,
        previousBundle: previous.info,
      };
    } catch (err) {
      if (!(err instanceof SupplyError)) throw err;
      if (!REFUSALS.includes(err.code)) {
        // Not a verdict on the bundle (network, credentials, a registry error): try again next time.
        if (this.unreachableSince === null) {
          this.unreachableSince = Date.now();
          log(
            `cannot fetch the new bundle at ${reference} (${err.message}); keeping revision ${this.state.info.revision}`,
          );
        }
        return null;
      }
      const candidate = (err as SupplyError & { candidate?: BundleEventInfo }).candidate ?? { reference, digest };
      if (AWAITING_SIGNATURE.includes(err.code)) {
        const reported = this.awaitingSignature.get(digest) ?? new Set<SupplyErrorCode>();
        if (reported.has(err.code)) return null; // still waiting: already in the log
        this.awaitingSignature.set(digest, reported.add(err.code));
      } else {
        this.refused.add(digest);
        this.awaitingSignature.delete(digest);
      }
      event = BundlePolicySource.refusedEvent(err, this.state, candidate);
    }
    if (!this.closed) this.onEvent?.(event);
    return event;
  }

  close(): void {
    this.closed = true;
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
  }
}

export interface PolicySourceOptions {
  /** Policy files and directories, or exactly one oci:// reference. */
  paths: readonly string[];
  engine: EngineOptions;
  /** Trusted public keys (PEM files); required for an oci:// policy. */
  trustKeys: readonly string[];
  dataDir?: string;
  registry?: RegistryOptions;
  pollIntervalMs?: number;
  allowRollback?: boolean;
  log?: (message: string) => void;
}

/**
 * Opens the policy source a gateway runs on. Files: FilePolicySource (throws
 * PolicyLoadError). An oci:// reference: BundlePolicySource (throws SupplyError).
 */
export async function openPolicySource(o: PolicySourceOptions): Promise<WatchablePolicySource> {
  const oci = o.paths.filter(isOciReference);
  if (oci.length === 0) return FilePolicySource.open(o.paths, o.engine);
  if (o.paths.length !== 1)
    throw new SupplyError(
      "usage",
      "an oci:// policy is the whole policy: it cannot be combined with other policy paths or references",
    );
  const keys = loadTrustedKeys(o.trustKeys);
  return BundlePolicySource.open({
    reference: oci[0] as string,
    keys,
    dataDir: ensureDataDir(o.dataDir),
    engine: o.engine,
    ...(o.registry ? { registry: o.registry } : {}),
    ...(o.pollIntervalMs !== undefined ? { pollIntervalMs: o.pollIntervalMs } : {}),
    ...(o.allowRollback !== undefined ? { allowRollback: o.allowRollback } : {}),
    ...(o.log ? { log: o.log } : {}),
  });
}
