// A real OCI registry for tests: Debian's docker-registry (distribution 2.8),
// started on 127.0.0.1 with a free port and its own storage directory, killed
// in cleanup. Tests skip, saying why, only when the binaries are not installed
// (the project's CI installs them: .ci/run).
import { type ChildProcess, execFile, spawn } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { createConnection, createServer } from "node:net";
import { tmpdir } from "node:os";
import { delimiter, join } from "node:path";

export function which(program: string): string | undefined {
  for (const dir of (process.env.PATH ?? "").split(delimiter)) {
    const full = join(dir, program);
    if (dir && existsSync(full)) return full;
  }
  return undefined;
}

/**
 * Why registry tests cannot run here, or undefined when they can. In CI (CI set,
 * as .ci/run does) a missing binary is an error, not a reason to skip.
 */
export function registrySkipReason(extra: string[] = []): string | undefined {
  const missing = ["docker-registry", "skopeo", ...extra].filter((p) => !which(p));
  if (missing.length === 0) return undefined;
  const why = `not installed: ${missing.join(", ")} (apt-get install -y ${missing.join(" ")}; .ci/run installs them)`;
  if (process.env.CI) throw new Error(why);
  return why;
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

export interface RegistryConfig {
  /** htpasswd file (bcrypt) for Basic auth. */
  htpasswd?: string;
  /** Bearer token auth, as distribution's token access controller reads it. */
  token?: { realm: string; service: string; issuer: string; rootcertbundle: string };
  tls?: { certificate: string; key: string };
  /** Reuse a storage directory (and port), e.g. to restart the same registry. */
  storage?: string;
  port?: number;
}

export interface RunningRegistry {
  /** 127.0.0.1:PORT */
  host: string;
  port: number;
  /** The registry's storage root: blobs are under docker/registry/v2/blobs/sha256/<2>/<hex>/data. */
  storage: string;
  /** Where a blob's bytes live on disk. */
  blobPath(digest: string): string;
  log(): string;
  stop(): Promise<void>;
}

const running = new Set<ChildProcess>();
process.on("exit", () => {
  for (const child of running) child.kill("SIGKILL");
});

export async function startRegistry(o: RegistryConfig = {}): Promise<RunningRegistry> {
  const dir = mkdtempSync(join(tmpdir(), "warden-registry-"));
  const storage = o.storage ?? join(dir, "storage");
  mkdirSync(storage, { recursive: true });
  const port = o.port ?? (await freePort());
  const lines = [
    "version: 0.1",
    "log:",
    "  level: warn",
    "  accesslog:",
    "    disabled: true",
    "storage:",
    "  filesystem:",
    `    rootdirectory: ${JSON.stringify(storage)}`,
    "  delete:",
    "    enabled: true",
    "http:",
    `  addr: 127.0.0.1:${port}`,
    "  secret: warden-test-secret",
  ];
  if (o.tls)
    lines.push(
      "  tls:",
      `    certificate: ${JSON.stringify(o.tls.certificate)}`,
      `    key: ${JSON.stringify(o.tls.key)}`,
    );
  if (o.htpasswd)
    lines.push("auth:", "  htpasswd:", "    realm: warden-test", `    path: ${JSON.stringify(o.htpasswd)}`);
  if (o.token) {
    lines.push(
      "auth:",
      "  token:",
      `    realm: ${JSON.stringify(o.token.realm)}`,
      `    service: ${JSON.stringify(o.token.service)}`,
      `    issuer: ${JSON.stringify(o.token.issuer)}`,
      `    rootcertbundle: ${JSON.stringify(o.token.rootcertbundle)}`,
    );
  }
  const config = join(dir, "config.yml");
  writeFileSync(config, `${lines.join("\n")}\n`);
  const child = spawn("docker-registry", ["serve", config], { stdio: ["ignore", "pipe", "pipe"] });
  running.add(child);
  let log = "";
  child.stdout?.setEncoding("utf8").on("data", (d: string) => {
    log += d;
  });
  child.stderr?.setEncoding("utf8").on("data", (d: string) => {
    log += d;
  });
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  const deadline = Date.now() + 10_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`docker-registry exited (${child.exitCode}):\n${log}`);
    if (await canConnect(port)) break;
    if (Date.now() > deadline) {
      child.kill("SIGKILL");
      throw new Error(`docker-registry did not listen on 127.0.0.1:${port} within 10 s:\n${log}`);
    }
    await new Promise((r) => setTimeout(r, 20));
  }
  return {
    host: `127.0.0.1:${port}`,
    port,
    storage,
    blobPath: (digest) => join(storage, "docker/registry/v2/blobs/sha256", digest.slice(7, 9), digest.slice(7), "data"),
    log: () => log,
    stop: async () => {
      if (child.exitCode === null && child.signalCode === null) child.kill("SIGTERM");
      await exited;
      running.delete(child);
      if (!o.storage) rmSync(dir, { recursive: true, force: true });
      else rmSync(config, { force: true });
    },
  };
}

function canConnect(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = createConnection({ host: "127.0.0.1", port });
    s.once("connect", () => {
      s.destroy();
      resolve(true);
    });
    s.once("error", () => resolve(false));
  });
}

export function run(
  program: string,
  args: string[],
  o: { env?: NodeJS.ProcessEnv; timeoutMs?: number; input?: string } = {},
): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = execFile(
      program,
      args,
      { env: o.env ?? process.env, timeout: o.timeoutMs ?? 60_000, maxBuffer: 16 * 1024 * 1024, encoding: "utf8" },
      (err, stdout, stderr) => {
        const code = err
          ? typeof (err as { code?: unknown }).code === "number"
            ? (err as { code: number }).code
            : 1
          : 0;
        resolve({ code, stdout, stderr });
      },
    );
    if (o.input !== undefined) child.stdin?.end(o.input);
  });
}

/** A self-signed ECDSA P-256 certificate (openssl), for TLS or for signing registry tokens. */
export async function selfSignedCertificate(
  dir: string,
  name: string,
  san = "IP:127.0.0.1",
): Promise<{ cert: string; key: string }> {
  const cert = join(dir, `${name}.crt`);
  const key = join(dir, `${name}.key`);
  const r = await run("openssl", [
    "req",
    "-x509",
    "-newkey",
    "ec",
    "-pkeyopt",
    "ec_paramgen_curve:prime256v1",
    "-nodes",
    "-keyout",
    key,
    "-out",
    cert,
    "-days",
    "2",
    "-subj",
    `/CN=${name}`,
    "-addext",
    `subjectAltName=${san}`,
  ]);
  if (r.code !== 0) throw new Error(`openssl failed: ${r.stderr}`);
  return { cert, key };
}
