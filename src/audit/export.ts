// Exports for people and SIEMs: CSV (one row per record) and OCSF 1.8 events —
// API Activity (class 6003) with the security_control profile's action,
// disposition and policy fields for calls, Application Lifecycle (6002) for the
// log's own lifecycle records. JSONL exports are the stored bytes themselves
// (written by the CLI), so they stay verifiable.
import type { AuditRecord } from "./record.js";

export const CSV_COLUMNS = [
  "seq",
  "time",
  "id",
  "type",
  "agent",
  "user",
  "session",
  "server",
  "tool",
  "decision",
  "enforced",
  "policy",
  "policy_version",
  "policy_bundle",
  "rule",
  "reason",
  "arguments_digest",
  "latency_us",
  "trace_id",
] as const;

/**
 * One CSV field (RFC 4180). Cells that a spreadsheet would run as a formula
 * (leading = + - @, tab, CR) get a leading apostrophe: agents control these strings.
 */
export function csvField(value: unknown): string {
  if (value === null || value === undefined) return "";
  let s = typeof value === "string" ? value : String(value);
  if (/^[=+\-@\t\r]/.test(s)) s = `'${s}`;
  return /[",\r\n]/.test(s) ? `"${s.replaceAll('"', '""')}"` : s;
}

export function csvHeader(): string {
  return `${CSV_COLUMNS.join(",")}\r\n`;
}

export function csvRow(r: AuditRecord): string {
  const rule = r.rule ? (r.rule.name ?? `#${r.rule.index}`) : null;
  const cells = [
    r.seq,
    r.time,
    r.id,
    r.type,
    r.agent?.name,
    r.user?.id,
    r.session,
    r.server,
    r.tool,
    r.decision,
    r.enforced,
    r.policy?.name,
    r.policy?.version,
    r.policy?.bundle,
    rule,
    r.reason,
    r.argumentsDigest,
    r.latencyUs,
    r.trace?.traceId,
  ];
  return `${cells.map(csvField).join(",")}\r\n`;
}

export const OCSF_VERSION = "1.8.0";

/** OCSF action_id / disposition_id for a decision (security_control profile). */
function control(r: AuditRecord): { action_id: number; action: string; disposition_id: number; disposition: string } {
  if (r.decision === null) return { action_id: 0, action: "Unknown", disposition_id: 0, disposition: "Unknown" };
  if (r.enforced === false) return { action_id: 3, action: "Observed", disposition_id: 17, disposition: "Logged" };
  if (r.decision === "allow") return { action_id: 1, action: "Allowed", disposition_id: 1, disposition: "Allowed" };
  if (r.decision === "deny") return { action_id: 2, action: "Denied", disposition_id: 2, disposition: "Blocked" };
  // require_approval: held until a human decides.
  return { action_id: 2, action: "Denied", disposition_id: 2, disposition: "Blocked" };
}

const SEVERITY = { allow: 1, require_approval: 2, deny: 3 } as const;

/** One record as an OCSF event. */
export function toOcsf(r: AuditRecord, origin: string, productVersion: string): Record<string, unknown> {
  const time = Date.parse(r.time);
  const metadata = {
    version: OCSF_VERSION,
    product: { name: "Warden", vendor_name: "Warden", version: productVersion },
    profiles: ["security_control"],
    uid: r.id,
    log_name: origin,
    sequence: r.seq,
    original_time: r.time,
  };
  const unmapped = {
    warden: {
      seq: r.seq,
      type: r.type,
      arguments_digest: r.argumentsDigest,
      rule: r.rule,
      policy_set: r.policy?.set ?? null,
      approval: r.approval,
      detail: r.detail,
      latency_us: r.latencyUs,
    },
  };
  if (r.type === "lifecycle") {
    const event = typeof r.detail?.event === "string" ? r.detail.event : "other";
    const activity = event === "start" ? 3 : event === "stop" ? 4 : event === "recovered" ? 5 : 99;
    return {
      category_uid: 6,
      category_name: "Application Activity",
      class_uid: 6002,
      class_name: "Application Lifecycle",
      activity_id: activity,
      type_uid: 6002 * 100 + activity,
      severity_id: event === "recovered" ? 3 : 1,
      time,
      message: r.reason ?? event,
      app: { name: "Warden", vendor_name: "Warden", version: productVersion },
      metadata,
      unmapped,
    };
  }
  const sc = control(r);
  const event: Record<string, unknown> = {
    category_uid: 6,
    category_name: "Application Activity",
    class_uid: 6003,
    class_name: "API Activity",
    activity_id: 99,
    activity_name: r.type === "decision" ? "Tool Call" : r.type,
    type_uid: 6003 * 100 + 99,
    severity_id: r.decision ? SEVERITY[r.decision] : 1,
    time,
    message: r.reason,
    actor: {
      app_name: r.agent?.name ?? "unknown",
      ...(r.user?.id
        ? { user: { uid: r.user.id, ...(r.user.groups ? { groups: r.user.groups.map((name) => ({ name })) } : {}) } }
        : {}),
      ...(r.session ? { session: { uid: r.session } } : {}),
    },
    api: {
      operation: r.tool ?? r.type,
      service: { name: r.server ?? "unknown" },
      request: { uid: r.id },
    },
    src_endpoint: { name: r.agent?.name ?? "unknown" },
    dst_endpoint: { svc_name: r.server ?? "unknown" },
    ...sc,
    metadata,
    unmapped,
  };
  if (r.policy) {
    event.policy = {
      name: r.policy.name ?? "(no policy)",
      uid: r.policy.version ?? r.policy.set ?? "",
      version: r.policy.version ?? "",
      is_applied: r.enforced === true,
      ...(r.policy.bundle ? { desc: `bundle ${r.policy.bundle}` } : {}),
    };
  }
  if (r.trace) event.trace = { uid: r.trace.traceId, span: { uid: r.trace.spanId } };
  if (r.type === "outcome" && r.detail && typeof r.detail.status === "string") {
    event.status_id = r.detail.status === "ok" ? 1 : 2;
  }
  if (r.agent?.model) {
    event.ai_model = { name: r.agent.model, ...(r.agent.vendor ? { ai_provider: r.agent.vendor } : {}) };
  }
  return event;
}
