// `warden keys ...`: generate key pairs; print the C2SP verifier key of a public key.
import { createPublicKey } from "node:crypto";
import { parseArgs } from "node:util";
import { ed25519Verifier, isValidKeyName } from "../audit/note.js";
import {
  generateKeyPair,
  KEY_TYPES,
  KeyError,
  type KeyType,
  keyTypeOf,
  loadPublicKey,
  publicKeyFingerprint,
  writeKeyPair,
} from "../keys/keys.js";
import { generateApiKey, hashApiKey } from "../mcp/http-auth.js";
import { type CliIO, EXIT, UsageError } from "./io.js";

export const KEYS_HELP = `Usage: warden keys <command> [options]

Commands:
  generate --out DIR [--name NAME] [--type ed25519|ecdsa-p256] [--force]
      writes DIR/warden.key (PEM PKCS#8, mode 0600) and DIR/warden.pub (PEM PKIX).
      For Ed25519 it also prints the C2SP verifier key NAME+hexid+base64; use the
      audit log's origin as NAME (default "warden"). ECDSA P-256 keys are for OCI
      signing; their SHA-256 fingerprint is printed.
  vkey --key PUB.pem --name NAME
      prints the verifier key of an Ed25519 public key
  api-key [--name NAME]
      creates a random API key for warden serve and prints it once, with the
      config entry to paste (only the key's hash goes in warden.yaml)
  hash-api-key KEY|-
      prints sha256:<hex> of an existing key (- reads it from stdin)

Exit codes: 0 success; 2 unusable options, or a file would be overwritten without --force.
`;

type OptionSpec = NonNullable<NonNullable<Parameters<typeof parseArgs>[0]>["options"]>;

function parse(args: string[], options: OptionSpec) {
  try {
    const r = parseArgs({ args, options, allowPositionals: true, strict: true });
    if (r.positionals.length > 0) throw new UsageError(`unexpected argument "${r.positionals[0]}"`);
    return r;
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
}

function keyName(value: unknown): string {
  const name = typeof value === "string" ? value : "warden";
  if (!isValidKeyName(name)) throw new UsageError(`--name "${name}" must be non-empty, without spaces or +`);
  return name;
}

export async function keysCommand(args: string[], io: CliIO): Promise<number> {
  const [sub, ...rest] = args;
  try {
    switch (sub) {
      case "generate": {
        const { values } = parse(rest, {
          out: { type: "string" },
          name: { type: "string" },
          type: { type: "string" },
          force: { type: "boolean" },
        });
        if (typeof values.out !== "string") throw new UsageError("keys generate needs --out DIR");
        const type = (values.type ?? "ed25519") as KeyType;
        if (!KEY_TYPES.includes(type)) throw new UsageError(`--type must be ${KEY_TYPES.join(" or ")}, not "${type}"`);
        const name = keyName(values.name);
        const pair = generateKeyPair(type);
        const { privatePath, publicPath } = writeKeyPair(values.out, pair, "warden", values.force === true);
        io.stdout(`wrote ${privatePath} (private, 0600) and ${publicPath} (${type})\n`);
        const pub = createPublicKey(pair.publicPem);
        if (type === "ed25519") {
          io.stdout(`verifier key: ${ed25519Verifier(name, pub).vkey}\n`);
          if (typeof values.name !== "string") {
            // A log signs under its origin (default warden/<hostname>): this name verifies nothing there.
            io.stderr(
              `note: the verifier key is named "${name}"; an audit log signs as its origin (default warden/<hostname>). ` +
                `To verify a log, pass ${publicPath} itself with --key, or print its verifier key with ` +
                `warden keys vkey --key ${publicPath} --name ORIGIN\n`,
            );
          }
        } else io.stdout(`fingerprint: ${publicKeyFingerprint(pub)}\n`);
        return EXIT.ok;
      }
      case "vkey": {
        const { values } = parse(rest, { key: { type: "string" }, name: { type: "string" } });
        if (typeof values.key !== "string") throw new UsageError("keys vkey needs --key PUB.pem");
        if (typeof values.name !== "string") throw new UsageError("keys vkey needs --name NAME (the log's origin)");
        const pub = loadPublicKey(values.key);
        if (keyTypeOf(pub) !== "ed25519") throw new UsageError("verifier keys are for Ed25519 keys");
        io.stdout(`${ed25519Verifier(keyName(values.name), pub).vkey}\n`);
        return EXIT.ok;
      }
      case "api-key": {
        const { values } = parse(rest, { name: { type: "string" } });
        const name = typeof values.name === "string" ? values.name : "my-agent";
        const key = generateApiKey();
        io.stdout(
          `API key (shown once; give it to the client as "Authorization: Bearer <key>"):\n  ${key}\n\n` +
            `Add to auth.apiKeys in warden.yaml:\n  - name: ${name}\n    hash: ${hashApiKey(key)}\n    agent: {name: ${name}}\n`,
        );
        return EXIT.ok;
      }
      case "hash-api-key": {
        const r = parseArgs({ args: rest, allowPositionals: true, strict: true, options: {} });
        const [arg] = r.positionals;
        if (arg === undefined || r.positionals.length > 1)
          throw new UsageError("keys hash-api-key needs one KEY (or - for stdin)");
        const key = arg === "-" ? (await io.readStdin()).trim() : arg;
        try {
          io.stdout(`${hashApiKey(key)}\n`);
        } catch (err) {
          throw new UsageError((err as Error).message);
        }
        return EXIT.ok;
      }
      case undefined:
      case "help":
      case "--help":
      case "-h":
        io.stdout(KEYS_HELP);
        return sub === undefined ? EXIT.unusable : EXIT.ok;
      default:
        throw new UsageError(`unknown command "keys ${sub}"; run warden keys --help`);
    }
  } catch (err) {
    if (err instanceof KeyError) throw new UsageError(err.message);
    throw err;
  }
}
