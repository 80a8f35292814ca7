// Registry credentials from Docker's config.json: `auths` entries (auth,
// username/password, identitytoken), `credHelpers` and `credsStore` (the
// docker-credential-<name> helper protocol). Read when a registry asks for
// credentials, never before, and never written.
import { spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import { homedir } from "node:os";
import { join } from "node:path";
import { SupplyError } from "./errors.js";

export interface Credential {
  username?: string;
  password?: string;
  /** An OAuth2 refresh token (docker login with an identity provider), exchanged at the token endpoint. */
  identityToken?: string;
}

export interface CredentialProvider {
  /** Credentials for host[:port], or undefined when there are none. */
  get(registry: string): Promise<Credential | undefined>;
}

interface DockerConfig {
  auths?: Record<string, { auth?: string; username?: string; password?: string; identitytoken?: string }>;
  credHelpers?: Record<string, string>;
  credsStore?: string;
}

/** Where Docker keeps its config: $DOCKER_CONFIG/config.json, else ~/.docker/config.json. */
export function dockerConfigPath(env: NodeJS.ProcessEnv = process.env): string {
  return join(env.DOCKER_CONFIG || join(homedir(), ".docker"), "config.json");
}

/** The host part of an auths key: "https://index.docker.io/v1/" → "index.docker.io". */
function keyHost(key: string): string {
  return key
    .replace(/^[a-z]+:\/\//i, "")
    .replace(/\/.*$/, "")
    .toLowerCase();
}

/** Docker Hub's credentials are stored under its legacy index name. */
function lookupHosts(registry: string): string[] {
  const r = registry.toLowerCase();
  if (r === "docker.io" || r === "registry-1.docker.io" || r === "index.docker.io")
    return ["index.docker.io", "docker.io", "registry-1.docker.io"];
  return [r];
}

export class DockerConfigCredentials implements CredentialProvider {
  private config: DockerConfig | null | undefined;

  constructor(
    private readonly path: string = dockerConfigPath(),
    private readonly helperTimeoutMs = 10_000,
  ) {}

  private read(): DockerConfig | null {
    if (this.config !== undefined) return this.config;
    let text: string;
    try {
      text = readFileSync(this.path, "utf8");
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ENOENT") {
        this.config = null;
        return null;
      }
      throw new SupplyError(
        "auth",
        `cannot read the registry credentials file ${this.path}: ${(err as Error).message}`,
      );
    }
    try {
      const parsed = JSON.parse(text) as unknown;
      if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) throw new Error("not a JSON object");
      this.config = parsed as DockerConfig;
    } catch (err) {
      throw new SupplyError("auth", `${this.path} is not valid JSON: ${(err as Error).message}`);
    }
    return this.config;
  }

  async get(registry: string): Promise<Credential | undefined> {
    const config = this.read();
    if (!config) return undefined;
    const hosts = lookupHosts(registry);
    for (const host of hosts) {
      const helper = config.credHelpers?.[host];
      if (helper) return this.fromHelper(helper, host);
    }
    for (const [key, entry] of Object.entries(config.auths ?? {})) {
      if (!hosts.includes(keyHost(key)) || typeof entry !== "object" || entry === null) continue;
      const cred: Credential = {};
      if (typeof entry.auth === "string" && entry.auth !== "") {
        const decoded = Buffer.from(entry.auth, "base64").toString("utf8");
        const colon = decoded.indexOf(":");
        if (colon < 0)
          throw new SupplyError("auth", `${this.path}: the auth entry for ${key} is not base64 of user:password`);
        cred.username = decoded.slice(0, colon);
        cred.password = decoded.slice(colon + 1);
      } else if (typeof entry.username === "string" && typeof entry.password === "string") {
        cred.username = entry.username;
        cred.password = entry.password;
      }
      if (typeof entry.identitytoken === "string" && entry.identitytoken !== "")
        cred.identityToken = entry.identitytoken;
      if (cred.username !== undefined || cred.identityToken !== undefined) return cred;
    }
    if (config.credsStore) return this.fromHelper(config.credsStore, hosts[0] as string);
    return undefined;
  }

  /** The docker-credential-helpers protocol: `docker-credential-<name> get`, server URL on stdin, JSON on stdout. */
  private fromHelper(name: string, host: string): Promise<Credential | undefined> {
    if (!/^[A-Za-z0-9_.-]+$/.test(name)) throw new SupplyError("auth", `credential helper name "${name}" is not valid`);
    const program = `docker-credential-${name}`;
    return new Promise((resolve, reject) => {
      const child = spawn(program, ["get"], { stdio: ["pipe", "pipe", "pipe"], timeout: this.helperTimeoutMs });
      let out = "";
      let err = "";
      child.stdout.setEncoding("utf8").on("data", (d: string) => {
        out += d;
      });
      child.stderr.setEncoding("utf8").on("data", (d: string) => {
        err += d;
      });
      child.on("error", (e) =>
        reject(new SupplyError("auth", `cannot run the credential helper ${program}: ${e.message}`)),
      );
      child.on("close", (code) => {
        if (code !== 0) {
          if (/credentials not found/i.test(out + err)) return resolve(undefined);
          return reject(new SupplyError("auth", `${program} get failed (exit ${code}): ${(err || out).trim()}`));
        }
        try {
          const r = JSON.parse(out) as { Username?: unknown; Secret?: unknown };
          if (typeof r.Secret !== "string") throw new Error("no Secret");
          if (r.Username === "<token>") resolve({ identityToken: r.Secret });
          else resolve({ username: typeof r.Username === "string" ? r.Username : "", password: r.Secret });
        } catch (e) {
          reject(
            new SupplyError(
              "auth",
              `${program} get printed something that is not credentials: ${(e as Error).message}`,
            ),
          );
        }
      });
      child.stdin.end(host);
    });
  }
}
