// The keys a Guard trusts for policy bundles: PEM public keys (PKIX), ECDSA
// P-256 as cosign uses, pinned by the operator. Nothing is fetched: no
// keyless certificates, no transparency log, no TUF root.
import { KeyError, loadPublicKey } from "../keys/keys.js";
import { type TrustedKey, trustedKey } from "./cosign.js";
import { SupplyError } from "./errors.js";

/** Loads each PEM file; throws SupplyError("usage") naming the file that is not a usable key. */
export function loadTrustedKeys(paths: readonly string[]): TrustedKey[] {
  if (paths.length === 0)
    throw new SupplyError(
      "usage",
      "no trusted keys: a signed bundle is checked against pinned public keys (--trust-key PUB)",
    );
  const out: TrustedKey[] = [];
  for (const path of paths) {
    try {
      const k = trustedKey(loadPublicKey(path), path);
      if (!out.some((o) => o.fingerprint === k.fingerprint)) out.push(k);
    } catch (err) {
      if (err instanceof KeyError || err instanceof SupplyError) throw new SupplyError("usage", err.message);
      throw err;
    }
  }
  return out;
}

/** WARDEN_TRUST_KEYS: paths separated like PATH. */
export function trustKeysFromEnv(env: NodeJS.ProcessEnv = process.env): string[] {
  return (env.WARDEN_TRUST_KEYS ?? "").split(process.platform === "win32" ? ";" : ":").filter(Boolean);
}
