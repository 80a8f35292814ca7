// One error type for everything in src/supply, with a code a caller (and a
// test) can act on. The message is for a human: it says what was refused and why.

export type SupplyErrorCode =
  /** The reference, a flag or a file given by the user is not usable. */
  | "usage"
  /** The bundle's bytes are not a valid Warden policy bundle (tar, manifest, policies). */
  | "invalid-bundle"
  /** Something fetched does not have the digest or size it was asked for. */
  | "digest-mismatch"
  /** The OCI manifest is not a Warden bundle manifest (wrong type, shape or annotations). */
  | "invalid-artifact"
  /** No signature at all was found for the digest. */
  | "unsigned"
  /** Signatures exist but none verifies with a trusted key for this digest. */
  | "untrusted"
  /** The candidate bundle is older than the one in force. */
  | "rollback"
  /** The registry could not be reached or answered with a server error. */
  | "unreachable"
  /** The registry refused the credentials, or there were none for a protected registry. */
  | "auth"
  /** The registry answered, but not with what was asked (404, 400, unexpected content). */
  | "registry"
  /** The local bundle cache is missing, unreadable or does not verify. */
  | "cache";

export class SupplyError extends Error {
  override name = "SupplyError";
  constructor(
    readonly code: SupplyErrorCode,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}
