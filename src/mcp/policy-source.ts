// The policy set a running gateway decides with, loaded from files and
// reloaded when they change. A new version is used only if it loads without
// errors; a bad edit keeps the last good set and is reported, so an operator's
// typo can neither open nor close the gateway by accident.
import { type FSWatcher, statSync, watch } from "node:fs";
import { basename, dirname } from "node:path";
import { type Diagnostic, formatDiagnostic, PolicyLoadError } from "../policy/diagnostics.js";
import { compilePolicySet, type EngineOptions, type PolicySet } from "../policy/engine.js";
import { loadPolicyPaths } from "../policy/loader.js";

/**
 * The policy set in force together with the signed bundle it came from: one
 * immutable object, replaced as a whole when the policy changes. Read both from
 * the same snapshot — reading the set and the bundle separately can straddle a
 * hot swap and pair one bundle's decision with another bundle's name.
 */
export interface PolicyInForce {
  readonly set: PolicySet;
  /** "oci://HOST/REPO:TAG@sha256:…" of the signed bundle the set came from; null for policy files. */
  readonly bundle: string | null;
}

export interface PolicyProvider {
  /** The policy set in force (for tools/list and the like; a decision that is recorded uses inForce()). */
  current(): PolicySet;
  /** The set and its bundle as one snapshot; the same object until the policy changes (no allocation per call). */
  inForce(): PolicyInForce;
}

/** A provider for a policy set that never changes (tests, `warden policy eval`-like uses). */
export function fixedPolicy(set: PolicySet, bundle: string | null = null): PolicyProvider {
  const snapshot: PolicyInForce = Object.freeze({ set, bundle });
  return { current: () => set, inForce: () => snapshot };
}

/** A policy source a gateway runs on: files (FilePolicySource) or a signed OCI bundle (src/supply/bundle-source.ts). */
export interface WatchablePolicySource extends PolicyProvider {
  /** Starts reporting changes (and, for bundles, anything that happened while opening). */
  watch(onEvent: (e: ReloadEvent) => void): void;
  close(): void;
  /** The signed bundle in force, as "oci://HOST/REPO:TAG@sha256:…", for every decision record; absent for files. */
  bundle?(): string | null;
}

/** Which bundle an event is about (only for policies from a signed OCI bundle). */
export interface BundleEventInfo {
  reference: string;
  digest: string;
  revision: string;
  created: string;
  policySet: string;
}

export type ReloadEvent =
  | {
      kind: "loaded";
      set: PolicySet;
      previous: string;
      warnings: Diagnostic[];
      /** Why, in words for the audit record; default: policy files changed. */
      reason?: string;
      bundle?: BundleEventInfo;
      previousBundle?: BundleEventInfo | null;
    }
  | {
      kind: "refused";
      keeping: string;
      diagnostics: Diagnostic[];
      reason?: string;
      /** The bundle that was refused, when it got far enough to be identified. */
      bundle?: Partial<BundleEventInfo> & { reference: string };
      keepingBundle?: BundleEventInfo | null;
      /** Why it was refused: unsigned, untrusted, digest-mismatch, rollback, ... (SupplyErrorCode). */
      code?: string;
    };

export async function loadPolicySet(paths: readonly string[], options: EngineOptions): Promise<PolicySet> {
  const { policySet, diagnostics } = compilePolicySet(await loadPolicyPaths(paths), options);
  if (!policySet) throw new PolicyLoadError(diagnostics);
  return policySet;
}

export class FilePolicySource implements WatchablePolicySource {
  private state: PolicyInForce;
  private watchers: FSWatcher[] = [];
  private timer: NodeJS.Timeout | undefined;
  private reloading: Promise<void> = Promise.resolve();

  private constructor(
    private readonly paths: readonly string[],
    private readonly options: EngineOptions,
    initial: PolicySet,
  ) {
    this.state = Object.freeze({ set: initial, bundle: null });
  }

  /** Loads the paths; throws PolicyLoadError (every diagnostic) if they do not load. */
  static async open(paths: readonly string[], options: EngineOptions = {}): Promise<FilePolicySource> {
    return new FilePolicySource(paths, options, await loadPolicySet(paths, options));
  }

  current(): PolicySet {
    return this.state.set;
  }

  inForce(): PolicyInForce {
    return this.state;
  }

  /** Loads the files again now; resolves with what happened. */
  async reload(): Promise<ReloadEvent> {
    const previous = this.state.set.digest;
    const { policySet, diagnostics } = compilePolicySet(await loadPolicyPaths(this.paths), this.options);
    if (!policySet) return { kind: "refused", keeping: previous, diagnostics };
    this.state = Object.freeze({ set: policySet, bundle: null });
    return { kind: "loaded", set: policySet, previous, warnings: diagnostics };
  }

  /**
   * Watches the paths and reloads, debounced, on every change. Directories are
   * watched recursively; a single file is watched through its directory, because
   * editors save by writing a new file and renaming it over the old one, which a
   * watch on the file itself would not follow.
   */
  watch(onEvent: (e: ReloadEvent) => void, debounceMs = 150): void {
    for (const p of this.paths) {
      try {
        const isDir = statSync(p).isDirectory();
        const target = isDir ? p : dirname(p);
        const name = basename(p);
        const w = watch(target, { recursive: isDir, persistent: false }, (_event, file) => {
          if (isDir || file === null || file.toString() === name) this.schedule(onEvent, debounceMs);
        });
        w.on("error", () => {});
        this.watchers.push(w);
      } catch {
        // A path that cannot be watched (removed since load): reloads still happen via reload().
      }
    }
  }

  private schedule(onEvent: (e: ReloadEvent) => void, debounceMs: number): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = setTimeout(() => {
      this.reloading = this.reloading.then(async () => {
        const e = await this.reload();
        // Nothing changed (an editor touched the file): nothing to report.
        if (e.kind === "loaded" && e.set.digest === e.previous) return;
        onEvent(e);
      });
    }, debounceMs);
  }

  close(): void {
    if (this.timer) clearTimeout(this.timer);
    for (const w of this.watchers) w.close();
    this.watchers = [];
  }
}

/**
 * What a gateway does when its policy changes: tell the operator (stderr),
 * record it in the audit log, and let clients re-list tools if the set changed.
 */
export async function reportReload(
  e: ReloadEvent,
  to: {
    log(message: string): void;
    lifecycle(event: string, reason: string, detail: Record<string, unknown>): unknown;
    toolsChanged(): void;
  },
): Promise<void> {
  if (e.kind === "loaded") {
    to.log(e.reason ? `${e.reason}: ${e.set.digest}` : `policy reloaded: ${e.set.digest} (was ${e.previous})`);
    for (const w of e.warnings) to.log(formatDiagnostic(w));
    await to.lifecycle("policy-loaded", e.reason ?? "policy files changed and were reloaded", {
      policySet: e.set.digest,
      previous: e.previous,
      ...(e.bundle ? { bundle: e.bundle, previousBundle: e.previousBundle ?? null } : {}),
    });
    if (e.set.digest !== e.previous) to.toolsChanged();
    return;
  }
  to.log(`policy change refused, still using ${e.keeping}:`);
  for (const d of e.diagnostics) to.log(formatDiagnostic(d));
  await to.lifecycle(
    "policy-refused",
    e.reason ?? "changed policy files did not load; the last good policy stays in force",
    {
      keeping: e.keeping,
      ...(e.bundle ? { bundle: e.bundle, keepingBundle: e.keepingBundle ?? null, refusal: e.code ?? null } : {}),
      errors: e.diagnostics
        .filter((d) => d.severity === "error")
        .map(formatDiagnostic)
        .slice(0, 20),
    },
  );
}
