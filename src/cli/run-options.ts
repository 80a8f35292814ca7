// The options of `warden run`, in one place: the command parses them, and
// `warden wrap` must know which of them take a value to re-wrap a command line.
export const RUN_OPTIONS = {
  policy: { type: "string", multiple: true },
  agent: { type: "string" },
  server: { type: "string" },
  user: { type: "string" },
  groups: { type: "string" },
  labels: { type: "string" },
  "data-dir": { type: "string" },
  key: { type: "string" },
  "default-decision": { type: "string" },
  "audit-arguments": { type: "string" },
  "audit-mask": { type: "string", multiple: true },
  "audit-origin": { type: "string" },
  "checkpoint-every-records": { type: "string" },
  "checkpoint-every-seconds": { type: "string" },
  "max-message-bytes": { type: "string" },
  "no-watch": { type: "boolean" },
  "trust-key": { type: "string", multiple: true },
  "poll-interval": { type: "string" },
  "allow-rollback": { type: "boolean" },
  "insecure-registry": { type: "boolean" },
  authfile: { type: "string" },
  "approvals-store": { type: "string" },
  "approvals-public-url": { type: "string" },
  "approvals-webhook": { type: "string" },
  "approvals-webhook-format": { type: "string" },
  approvers: { type: "string" },
  "no-approvals": { type: "boolean" },
  help: { type: "boolean", short: "h" },
} as const;

/** The flags of `warden run` that take no value ("--no-watch", "-h", ...). */
export const RUN_SWITCHES: ReadonlySet<string> = new Set(
  Object.entries(RUN_OPTIONS).flatMap(([name, o]) =>
    o.type === "boolean" ? [`--${name}`, ...("short" in o ? [`-${o.short}`] : [])] : [],
  ),
);
