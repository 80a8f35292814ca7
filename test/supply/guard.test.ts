// A Guard on a signed OCI bundle: the bundle source against the real registry —
// start, cache, offline restart, polling and hot swap, refusals, rollback.
import assert from "node:assert/strict";
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import type { ReloadEvent } from "../../src/mcp/policy-source.js";
import { BundlePolicySource, isRollback } from "../../src/supply/bundle-source.js";
import { trustedKey } from "../../src/supply/cosign.js";
import { SupplyError } from "../../src/supply/errors.js";
import { loadTrustedKeys } from "../../src/supply/trust.js";
import { echoPolicy, publish, signPublished, type TestKey, testKey } from "../helpers/bundles.js";
import { freePort, type RunningRegistry, registrySkipReason, startRegistry } from "../helpers/registry.js";

const skip = registrySkipReason();
const root = mkdtempSync(join(tmpdir(), "warden-guard-test-"));
process.env.DOCKER_CONFIG = join(root, "no-docker-config");
after(() => rmSync(root, { recursive: true, force: true }));

const echo = (set: ReturnType<BundlePolicySource["current"]>) =>
  set.decide({ agent: { name: "dev" }, request: { server: "everything", tool: "echo", arguments: {} } }).decision;

let n = 0;
const dataDir = () => join(root, `data-${++n}`);

/** Records the requests this process makes (the registry client uses the global fetch) until stopped. */
function recordRequests(): { urls: string[]; stop(): void } {
  const original = globalThis.fetch;
  const urls: string[] = [];
  globalThis.fetch = (input, init) => {
    urls.push(`${init?.method ?? "GET"} ${String(input)}`);
    return original(input, init);
  };
  return {
    urls,
    stop: () => {
      globalThis.fetch = original;
    },
  };
}

const codes = (events: ReloadEvent[]) => events.map((e) => (e.kind === "loaded" ? "loaded" : e.code));

async function refusedWith(p: Promise<unknown>, code: string, message: RegExp): Promise<void> {
  await assert.rejects(p, (err: unknown) => {
    assert.ok(err instanceof SupplyError, String(err));
    assert.equal(err.code, code, err.message);
    assert.match(err.message, message);
    return true;
  });
}

describe("a Guard on a signed bundle", { skip }, () => {
  let reg: RunningRegistry;
  let signer: TestKey;
  let stranger: TestKey;
  before(async () => {
    reg = await startRegistry();
    signer = testKey(join(root, "keys"), "signer");
    stranger = testKey(join(root, "keys"), "stranger");
  });
  after(() => reg?.stop());
  const ref = (repo: string) => `oci://${reg.host}/${repo}:prod`;
  const keys = () => loadTrustedKeys([signer.publicPath]);
  const open = (reference: string, dir: string, extra: Partial<Parameters<typeof BundlePolicySource.open>[0]> = {}) =>
    BundlePolicySource.open({ reference, keys: keys(), dataDir: dir, pollIntervalMs: 0, ...extra });

  it("pulls, verifies and loads the bundle, names it by reference and digest, and caches it", async () => {
    const p = await publish(ref("g/start"), echoPolicy("allow"), { created: "2026-02-01T00:00:00Z", sign: signer });
    const dir = dataDir();
    const source = await open(ref("g/start"), dir);
    assert.equal(echo(source.current()), "allow");
    assert.equal(source.bundle(), `${ref("g/start")}@${p.digest}`);
    assert.equal(source.info().revision, p.revision);
    const refs = readdirSync(join(dir, "bundles", "refs"));
    assert.equal(refs.length, 1);
    const entry = JSON.parse(readFileSync(join(dir, "bundles", "refs", refs[0] as string), "utf8"));
    assert.equal(entry.digest, p.digest);
    assert.deepEqual(entry.evidence.map((e: { format: string }) => e.format).sort(), [
      "sigstore-bundle",
      "simplesigning",
    ]);
    assert.deepEqual(
      readdirSync(join(dir, "bundles", "blobs", "sha256")).sort(),
      [p.digest.slice(7), p.bundleDigest.slice(7)].sort(),
    );
  });

  it("refuses to start on an unsigned, tampered or wrongly signed bundle when nothing is cached", async () => {
    await publish(ref("g/unsigned"), echoPolicy("allow"), { created: "2026-02-01T00:00:00Z", sign: null });
    await refusedWith(
      open(ref("g/unsigned"), dataDir()),
      "unsigned",
      /is not signed.*\n.*refusing to start \(fail closed\)/s,
    );
    await publish(ref("g/stranger"), echoPolicy("allow"), { created: "2026-02-01T00:00:00Z", sign: stranger });
    await refusedWith(open(ref("g/stranger"), dataDir()), "untrusted", /verifies with the trusted key/);
  });

  describe("the registry unreachable at start", () => {
    it("with an empty cache: fails closed", async () => {
      const port = await freePort(); // nothing listens there
      await refusedWith(
        open(`oci://127.0.0.1:${port}/g/nowhere:prod`, dataDir()),
        "unreachable",
        /cannot reach registry 127\.0\.0\.1:\d+.*\n.*nothing cached for .* refusing to start \(fail closed\)/s,
      );
    });

    it("with a warm cache: starts from the cache, verified again, and says so in an event", async () => {
      const own = await startRegistry();
      const reference = `oci://${own.host}/g/offline:prod`;
      const p = await publish(reference, echoPolicy("allow"), { created: "2026-02-01T00:00:00Z", sign: signer });
      const dir = dataDir();
      (await open(reference, dir)).close();
      await own.stop();
      const source = await open(reference, dir);
      assert.equal(echo(source.current()), "allow");
      assert.equal(source.bundle(), `${reference}@${p.digest}`);
      const events: ReloadEvent[] = [];
      source.watch((e) => events.push(e));
      assert.equal(events.length, 1);
      const e = events[0] as Extract<ReloadEvent, { kind: "loaded" }>;
      assert.equal(e.kind, "loaded");
      assert.match(
        e.reason ?? "",
        /could not be used \(cannot reach registry .*started from the cached bundle, verified again/,
      );
      assert.equal(e.bundle?.digest, p.digest);
      // The cache is checked as a pull is: keys pinned today, digests of what is on disk.
      await refusedWith(
        BundlePolicySource.open({
          reference,
          keys: [trustedKey(stranger.private, "stranger")],
          dataDir: dir,
          pollIntervalMs: 0,
        }),
        "unreachable",
        /no verified bundle to start from: .*is unusable|no signature .* verifies with the trusted key/s,
      );
      const blob = join(dir, "bundles", "blobs", "sha256", p.bundleDigest.slice(7));
      writeFileSync(blob, Buffer.concat([readFileSync(blob), Buffer.from("x")]));
      await refusedWith(
        open(reference, dir),
        "unreachable",
        /cached bundle .* is unusable: its bundle does not have digest/s,
      );
    });
  });

  it("polls: hot-swaps a newer signed bundle, refuses unsigned, untrusted and older ones, keeping the last good", async () => {
    const reference = ref("g/poll");
    const v1 = await publish(reference, echoPolicy("allow", "v1"), { created: "2026-02-01T00:00:00Z", sign: signer });
    const dir = dataDir();
    const source = await open(reference, dir);
    const events: ReloadEvent[] = [];
    source.watch((e) => events.push(e));
    assert.equal(await source.poll(), null, "nothing new");

    const v2 = await publish(reference, echoPolicy("deny", "v2"), { created: "2026-02-02T00:00:00Z", sign: signer });
    const loaded = await source.poll();
    assert.equal(loaded?.kind, "loaded");
    assert.equal(echo(source.current()), "deny");
    assert.equal(source.bundle(), `${reference}@${v2.digest}`);
    assert.deepEqual(loaded?.kind === "loaded" && [loaded.bundle?.digest, loaded.previousBundle?.digest], [
      v2.digest,
      v1.digest,
    ]);

    const refusals: [string, () => Promise<unknown>][] = [
      [
        "unsigned",
        () => publish(reference, echoPolicy("allow", "v3"), { created: "2026-02-03T00:00:00Z", sign: null }),
      ],
      [
        "untrusted",
        () => publish(reference, echoPolicy("allow", "v4"), { created: "2026-02-04T00:00:00Z", sign: stranger }),
      ],
      [
        "rollback",
        () => publish(reference, echoPolicy("allow", "v1"), { created: "2026-02-01T00:00:00Z", sign: signer }),
      ],
    ];
    for (const [code, push] of refusals) {
      await push();
      const e = await source.poll();
      assert.equal(e?.kind, "refused", code);
      assert.equal(e?.kind === "refused" && e.code, code);
      assert.equal(e?.kind === "refused" && e.keepingBundle?.digest, v2.digest);
      assert.equal(echo(source.current()), "deny", `${code}: the last good bundle stays`);
      assert.equal(await source.poll(), null, `${code}: reported once`);
    }
    assert.deepEqual(codes(events), ["loaded", "unsigned", "untrusted", "rollback"]);
    source.close();

    // Restarting offline gives the last good bundle (v2), from the cache.
    const cached = JSON.parse(
      readFileSync(join(dir, "bundles", "refs", readdirSync(join(dir, "bundles", "refs"))[0] as string), "utf8"),
    );
    assert.equal(cached.digest, v2.digest);
  });

  describe("polling a bundle that is signed after it is pushed", () => {
    // Signatures live next to a bundle, not in it: `warden bundle push` then
    // `warden bundle sign` leaves a window in which the tag names an unsigned digest.
    const start = async (name: string) => {
      const reference = ref(`g/${name}`);
      const v1 = await publish(reference, echoPolicy("allow", `${name}-v1`), {
        created: "2026-04-01T00:00:00Z",
        sign: signer,
      });
      const source = await open(reference, dataDir());
      const events: ReloadEvent[] = [];
      source.watch((e) => events.push(e));
      /** Pushes B, a newer bundle, signed or not. */
      const pushB = (sign: TestKey | null) =>
        publish(reference, echoPolicy("deny", `${name}-b`), { created: "2026-04-02T00:00:00Z", sign });
      return { v1, source, events, pushB };
    };

    async function loads(source: BundlePolicySource, b: { reference: string; digest: string }, was: string) {
      const e = await source.poll();
      assert.equal(e?.kind, "loaded");
      assert.deepEqual(e?.kind === "loaded" && [e.bundle?.digest, e.previousBundle?.digest], [b.digest, was]);
      assert.equal(source.bundle(), `${b.reference}@${b.digest}`);
      assert.equal(echo(source.current()), "deny");
      assert.equal(await source.poll(), null, "nothing new once it is in force");
    }

    it("unsigned: refused once, checked again on every poll, loaded once signed by the trusted key", async () => {
      const { v1, source, events, pushB } = await start("sign-later");
      const b = await pushB(null);
      const e = await source.poll();
      assert.equal(e?.kind === "refused" && e.code, "unsigned");
      assert.equal(e?.kind === "refused" && e.bundle?.digest, b.digest);
      const seen = recordRequests();
      try {
        assert.equal(await source.poll(), null, "reported once");
        assert.equal(await source.poll(), null, "reported once");
      } finally {
        seen.stop();
      }
      assert.ok(
        seen.urls.some((u) => u.includes(`/sha256-${b.digest.slice(7)}`)),
        `the signatures are looked up again: ${seen.urls.join(", ")}`,
      );
      assert.ok(!seen.urls.some((u) => u.includes(b.bundleDigest)), "the bundle itself is not downloaded again");
      assert.equal(echo(source.current()), "allow", "the last good bundle stays");

      await signPublished(b, signer);
      await loads(source, b, v1.digest);
      assert.deepEqual(codes(events), ["unsigned", "loaded"]);
      source.close();
    });

    it("signed by an untrusted key: refused once, loaded once signed by the trusted key", async () => {
      const { v1, source, events, pushB } = await start("sign-again");
      const b = await pushB(stranger);
      const e = await source.poll();
      assert.equal(e?.kind === "refused" && e.code, "untrusted");
      assert.equal(await source.poll(), null, "reported once");
      await signPublished(b, stranger); // the same key again: nothing changes
      assert.equal(await source.poll(), null, "reported once");
      assert.equal(echo(source.current()), "allow", "the last good bundle stays");

      await signPublished(b, signer);
      await loads(source, b, v1.digest);
      assert.deepEqual(codes(events), ["untrusted", "loaded"]);
      source.close();
    });

    it("a new reason for the same digest is reported once too (unsigned, then untrusted)", async () => {
      const { v1, source, events, pushB } = await start("sign-wrong");
      const b = await pushB(null);
      assert.equal((await source.poll())?.kind, "refused");
      await signPublished(b, stranger);
      const e = await source.poll();
      assert.equal(e?.kind === "refused" && e.code, "untrusted");
      assert.equal(await source.poll(), null, "reported once");

      await signPublished(b, signer);
      await loads(source, b, v1.digest);
      assert.deepEqual(codes(events), ["unsigned", "untrusted", "loaded"]);
      source.close();
    });

    it("a tampered digest stays refused: reported once, not fetched again even when it would verify", async () => {
      const { source, events, pushB } = await start("tampered");
      const b = await pushB(signer);
      const blob = reg.blobPath(b.bundleDigest);
      const original = readFileSync(blob);
      const altered = Buffer.from(original);
      altered.writeUInt8((altered.at(-1) as number) ^ 1, altered.length - 1); // same size, other bytes
      writeFileSync(blob, altered);
      const e = await source.poll();
      assert.equal(e?.kind === "refused" && e.code, "digest-mismatch");
      assert.equal(await source.poll(), null, "reported once");

      writeFileSync(blob, original); // the registry serves the right bytes again
      const seen = recordRequests();
      try {
        assert.equal(await source.poll(), null, "a digest refused for its content is refused for good");
      } finally {
        seen.stop();
      }
      assert.deepEqual(
        seen.urls.map((u) => u.split(" ")[0]),
        ["HEAD"],
        `only the tag is checked: ${seen.urls.join(", ")}`,
      );
      assert.equal(echo(source.current()), "allow", "the last good bundle stays");
      assert.deepEqual(codes(events), ["digest-mismatch"]);
      source.close();
    });
  });

  it("rollback: refused at restart too (the cache remembers), accepted when explicitly allowed", async () => {
    const reference = ref("g/rollback");
    const dir = dataDir();
    const r2 = await publish(reference, echoPolicy("deny", "r2"), {
      created: "2026-03-02T00:00:00Z",
      revision: "2",
      sign: signer,
    });
    (await open(reference, dir)).close();
    const r1 = await publish(reference, echoPolicy("allow", "r1"), {
      created: "2026-03-02T00:00:00Z",
      revision: "1",
      sign: signer,
    });
    const source = await open(reference, dir);
    assert.equal(source.bundle(), `${reference}@${r2.digest}`, "the newer cached bundle stays in force");
    const events: ReloadEvent[] = [];
    source.watch((e) => events.push(e));
    assert.equal(events[0]?.kind === "refused" && events[0].code, "rollback");
    assert.match(
      events[0]?.kind === "refused" ? (events[0].diagnostics[0]?.message ?? "") : "",
      /revision 1 .* older than the cached revision 2/,
    );
    const allowed = await open(reference, dir, { allowRollback: true });
    assert.equal(allowed.bundle(), `${reference}@${r1.digest}`);
    assert.equal(echo(allowed.current()), "allow");
  });

  it("a digest reference is not polled and needs no tag", async () => {
    const p = await publish(ref("g/pinned"), echoPolicy("allow"), { created: "2026-02-01T00:00:00Z", sign: signer });
    const source = await open(`oci://${reg.host}/g/pinned@${p.digest}`, dataDir(), { pollIntervalMs: 1000 });
    assert.equal(source.bundle(), `oci://${reg.host}/g/pinned@${p.digest}`);
    source.watch(() => {});
    assert.equal(await source.poll(), null);
    source.close();
  });
});

describe("rollback order", () => {
  it("an earlier creation time, or a smaller whole-number revision, is older", () => {
    const at = (created: string, revision: string) => ({ created, revision });
    assert.equal(isRollback(at("2026-01-01T00:00:00Z", "x"), at("2026-01-02T00:00:00Z", "y")), true);
    assert.equal(isRollback(at("2026-01-02T00:00:00Z", "x"), at("2026-01-01T00:00:00Z", "y")), false);
    assert.equal(isRollback(at("2026-01-01T00:00:00Z", "9"), at("2026-01-01T00:00:00Z", "10")), true);
    assert.equal(isRollback(at("2026-01-01T00:00:00Z", "10"), at("2026-01-01T00:00:00Z", "9")), false);
    assert.equal(isRollback(at("2026-01-01T00:00:00Z", "b"), at("2026-01-01T00:00:00Z", "a")), false);
  });
});
