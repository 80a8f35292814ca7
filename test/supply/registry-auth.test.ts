// Registry access: Basic auth (htpasswd), the Bearer token challenge (a token
// service signing JWTs the registry verifies), Docker config.json credentials
// including a credential helper, and TLS with certificate verification — all
// against the real docker-registry.
import assert from "node:assert/strict";
import { sign } from "node:crypto";
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createServer, type Server } from "node:http";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { after, before, describe, it } from "node:test";
import { generateKeyPair, writeKeyPair } from "../../src/keys/keys.js";
import { runWarden } from "../helpers/cli.js";
import {
  freePort,
  type RunningRegistry,
  registrySkipReason,
  run,
  selfSignedCertificate,
  startRegistry,
} from "../helpers/registry.js";

const skip = registrySkipReason(["openssl"]);
const ROOT = resolve(import.meta.dirname, "..", "..", "..");
const CLI = join(ROOT, "dist", "src", "cli", "main.js");
const HTPASSWD = join(ROOT, "test", "fixtures", "registry-htpasswd"); // warden : warden-test-password (bcrypt)
const root = mkdtempSync(join(tmpdir(), "warden-auth-test-"));
process.env.DOCKER_CONFIG = join(root, "no-docker-config");
after(() => rmSync(root, { recursive: true, force: true }));

const cli = (...argv: string[]) => runWarden(argv);

function childEnv(extra: Record<string, string>): NodeJS.ProcessEnv {
  const env = { ...process.env, ...extra };
  delete env.NODE_TEST_CONTEXT;
  delete env.NODE_OPTIONS;
  return env;
}

function authfile(name: string, content: unknown): string {
  const file = join(root, `${name}.json`);
  writeFileSync(file, JSON.stringify(content));
  return file;
}

const basic = (user: string, password: string) => Buffer.from(`${user}:${password}`).toString("base64");
let bundleFile = "";
let signer: { privatePath: string; publicPath: string };

before(async () => {
  if (skip) return;
  const dir = join(root, "policies");
  mkdirSync(dir, { recursive: true });
  writeFileSync(
    join(dir, "p.yaml"),
    "kind: ToolPolicy\nmetadata: {name: auth-test}\nspec:\n  agent: a\n  mcpServer: s\n  rules: [{tools: [t], action: allow}]\n",
  );
  bundleFile = join(root, "b.tar");
  assert.equal((await cli("bundle", "build", dir, "-o", bundleFile)).code, 0);
  signer = writeKeyPair(join(root, "keys"), generateKeyPair("ecdsa-p256"), "signer");
});

describe("Basic auth and Docker config.json credentials", { skip }, () => {
  let reg: RunningRegistry;
  before(async () => {
    reg = await startRegistry({ htpasswd: HTPASSWD });
  });
  after(() => reg?.stop());

  it("without credentials: refused with what to do", async () => {
    const r = await cli("bundle", "push", bundleFile, `oci://${reg.host}/warden/basic:v1`);
    assert.equal(r.code, 2);
    assert.match(
      r.err,
      /requires credentials \(Basic\) and none were found; log in with docker login or skopeo login, or pass --authfile/,
    );
  });

  it("with auths credentials: push, sign, verify; a wrong password is refused", async () => {
    const good = authfile("basic-good", { auths: { [reg.host]: { auth: basic("warden", "warden-test-password") } } });
    const ref = `oci://${reg.host}/warden/basic:v1`;
    assert.equal((await cli("bundle", "push", bundleFile, ref, "--authfile", good)).code, 0);
    assert.equal((await cli("bundle", "sign", ref, "--key", signer.privatePath, "--authfile", good)).code, 0);
    const v = await cli("bundle", "verify", ref, "--key", signer.publicPath, "--authfile", good);
    assert.equal(v.code, 0, v.err);
    const wrong = authfile("basic-wrong", {
      auths: { [`https://${reg.host}/v1/`]: { username: "warden", password: "nope" } },
    });
    const r = await cli("bundle", "verify", ref, "--key", signer.publicPath, "--authfile", wrong);
    assert.equal(r.code, 2);
    assert.match(r.err, /refused the credentials \(401\)/);
  });

  it("with a credential helper (credHelpers), from DOCKER_CONFIG", async () => {
    const config = join(root, "helper-config");
    const bin = join(root, "bin");
    mkdirSync(config, { recursive: true });
    mkdirSync(bin, { recursive: true });
    writeFileSync(join(config, "config.json"), JSON.stringify({ credHelpers: { [reg.host]: "wardentest" } }));
    const helper = join(bin, "docker-credential-wardentest");
    writeFileSync(
      helper,
      `#!/bin/sh\nread host\n[ "$1" = get ] && [ "$host" = "${reg.host}" ] || { echo "credentials not found in native keychain"; exit 1; }\nprintf '{"ServerURL":"%s","Username":"warden","Secret":"warden-test-password"}' "$host"\n`,
    );
    chmodSync(helper, 0o755);
    const r = await run(
      process.execPath,
      [CLI, "bundle", "pull", `oci://${reg.host}/warden/basic:v1`, "-o", join(root, "helper.tar")],
      {
        env: childEnv({ DOCKER_CONFIG: config, PATH: `${bin}:${process.env.PATH}` }),
      },
    );
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(readFileSync(join(root, "helper.tar")), readFileSync(bundleFile));
  });
});

describe("Bearer token challenge", { skip }, () => {
  let reg: RunningRegistry;
  let tokens: Server;
  const asked: { authorization: string | undefined; scopes: string[]; service: string | null }[] = [];
  before(async () => {
    const cert = await selfSignedCertificate(root, "token-signer", "DNS:token.invalid");
    const der = Buffer.from(
      readFileSync(cert.cert, "utf8")
        .replace(/-----[A-Z ]+-----/g, "")
        .replace(/\s+/g, ""),
      "base64",
    );
    const key = readFileSync(cert.key);
    const port = await freePort();
    tokens = createServer((req, res) => {
      const url = new URL(req.url ?? "/", "http://127.0.0.1");
      const scopes = url.searchParams.getAll("scope");
      asked.push({ authorization: req.headers.authorization, scopes, service: url.searchParams.get("service") });
      if (req.headers.authorization !== `Basic ${basic("warden", "warden-test-password")}`) {
        res.writeHead(401, { "Content-Type": "application/json" }).end('{"details":"bad credentials"}');
        return;
      }
      const now = Math.floor(Date.now() / 1000);
      const access = scopes.map((s) => {
        const [type, name, actions] = s.split(":");
        return { type, name, actions: (actions ?? "").split(",") };
      });
      const b64 = (v: unknown) => Buffer.from(JSON.stringify(v)).toString("base64url");
      const signingInput = `${b64({ typ: "JWT", alg: "ES256", x5c: [der.toString("base64")] })}.${b64({
        iss: "warden-test-issuer",
        sub: "warden",
        aud: "warden-test-registry",
        exp: now + 300,
        nbf: now - 10,
        iat: now,
        jti: String(Math.random()),
        access,
      })}`;
      const sig = sign("sha256", Buffer.from(signingInput), { key, dsaEncoding: "ieee-p1363" }).toString("base64url");
      res
        .writeHead(200, { "Content-Type": "application/json" })
        .end(JSON.stringify({ token: `${signingInput}.${sig}`, expires_in: 300 }));
    });
    await new Promise<void>((r) => tokens.listen(port, "127.0.0.1", r));
    reg = await startRegistry({
      token: {
        realm: `http://127.0.0.1:${port}/token`,
        service: "warden-test-registry",
        issuer: "warden-test-issuer",
        rootcertbundle: cert.cert,
      },
    });
  });
  after(async () => {
    await reg?.stop();
    await new Promise((r) => tokens?.close(r));
  });

  it("gets a token for the repository scope with the configured credentials, then pushes, signs and verifies", async () => {
    const creds = authfile("token", { auths: { [reg.host]: { auth: basic("warden", "warden-test-password") } } });
    const ref = `oci://${reg.host}/warden/token:v1`;
    const pushed = await cli("bundle", "push", bundleFile, ref, "--authfile", creds);
    assert.equal(pushed.code, 0, `${pushed.err}\n${reg.log()}`);
    assert.equal((await cli("bundle", "sign", ref, "--key", signer.privatePath, "--authfile", creds)).code, 0);
    const v = await cli("bundle", "verify", ref, "--key", signer.publicPath, "--authfile", creds);
    assert.equal(v.code, 0, v.err);
    assert.ok(
      asked.some((a) => a.service === "warden-test-registry" && a.scopes.includes("repository:warden/token:pull,push")),
    );
    assert.ok(asked.some((a) => a.scopes.includes("repository:warden/token:pull")));
  });

  it("anonymous: the token service refuses, and so does Warden", async () => {
    const r = await cli("bundle", "pull", `oci://${reg.host}/warden/token:v1`, "-o", join(root, "anon.tar"));
    assert.equal(r.code, 2);
    assert.match(r.err, /the token service http:\/\/127\.0\.0\.1:\d+ refused anonymous access \(401\)/);
  });
});

describe("TLS", { skip }, () => {
  let reg: RunningRegistry;
  let cert: { cert: string; key: string };
  before(async () => {
    cert = await selfSignedCertificate(root, "registry-tls", "IP:127.0.0.1");
    reg = await startRegistry({ tls: { certificate: cert.cert, key: cert.key } });
  });
  after(() => reg?.stop());

  it("verifies the registry's certificate: trusted via NODE_EXTRA_CA_CERTS it works, untrusted it is refused (no fallback to HTTP)", async () => {
    const ref = `oci://${reg.host}/warden/tls:v1`;
    const trusted = await run(process.execPath, [CLI, "bundle", "push", bundleFile, ref], {
      env: childEnv({ NODE_EXTRA_CA_CERTS: cert.cert, DOCKER_CONFIG: join(root, "none") }),
    });
    assert.equal(trusted.code, 0, trusted.stderr);
    const untrusted = await run(process.execPath, [CLI, "bundle", "pull", ref, "-o", join(root, "tls.tar")], {
      env: childEnv({ DOCKER_CONFIG: join(root, "none") }),
    });
    assert.equal(untrusted.code, 2);
    assert.match(untrusted.stderr, /cannot reach registry 127\.0\.0\.1:\d+ over HTTPS: .*(CERT|certificate)/i);
    assert.match(untrusted.stderr, /NODE_EXTRA_CA_CERTS/);
  });
});
