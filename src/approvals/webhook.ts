// The outgoing webhook: one POST per new approval request, JSON (Warden's own
// shape) or a Slack-compatible message (text + blocks with link buttons back to
// the approval page). Every delivery is signed, Slack-style:
//
//   X-Warden-Timestamp: <unix seconds>
//   X-Warden-Signature: v1=<hex HMAC-SHA256(secret, "v1:" + timestamp + ":" + body)>
//
// A receiver recomputes the HMAC over the raw body, compares in constant time,
// and rejects timestamps more than five minutes old (replays).
import { createHmac, randomUUID, timingSafeEqual } from "node:crypto";
import type { ApprovalRequest } from "./types.js";

export interface WebhookConfig {
  url: string;
  secret: string;
  format: "json" | "slack";
  /** Per attempt; default 5 s. */
  timeoutMs?: number;
  /** Attempts in all; default 3 (after 1 s and 4 s). */
  attempts?: number;
}

export interface DeliveryResult {
  ok: boolean;
  attempts: number;
  status: number | null;
  error: string | null;
  delivery: string;
}

export const SIGNATURE_HEADER = "x-warden-signature";
export const TIMESTAMP_HEADER = "x-warden-timestamp";

export function sign(secret: string, timestamp: string, body: string): string {
  return `v1=${createHmac("sha256", secret).update(`v1:${timestamp}:${body}`).digest("hex")}`;
}

/** Checks a delivery as a receiver would; `now` in ms. */
export function verifySignature(
  secret: string,
  headers: { signature?: string; timestamp?: string },
  body: string,
  now = Date.now(),
  toleranceMs = 300_000,
): boolean {
  const { signature, timestamp } = headers;
  if (!signature || !timestamp || !/^\d{1,12}$/.test(timestamp)) return false;
  if (Math.abs(now - Number(timestamp) * 1000) > toleranceMs) return false;
  const expected = Buffer.from(sign(secret, timestamp, body));
  const got = Buffer.from(signature);
  return expected.length === got.length && timingSafeEqual(expected, got);
}

export function approvalLink(publicUrl: string | undefined, id: string): string | null {
  return publicUrl ? `${publicUrl.replace(/\/+$/, "")}/approvals#${encodeURIComponent(id)}` : null;
}

/** The payload for a new request. */
export function payload(r: ApprovalRequest, format: "json" | "slack", publicUrl: string | undefined): unknown {
  const d = r.details;
  const link = approvalLink(publicUrl, r.id);
  const who = `${d.agent.name}${d.user?.id ? ` for ${d.user.id}` : ""}`;
  const expires = new Date(r.expiresAt).toISOString();
  if (format === "json") {
    return {
      type: "approval.requested",
      request: {
        id: r.id,
        state: r.state,
        createdAt: new Date(r.createdAt).toISOString(),
        expiresAt: expires,
        agent: d.agent,
        user: d.user,
        server: d.server,
        tool: d.tool,
        arguments: d.arguments,
        argumentsDigest: d.argumentsDigest,
        policy: d.policy,
        rule: d.rule,
        reason: d.reason,
        approvers: d.requirement.approvers,
      },
      links: link ? { page: link, api: `${publicUrl?.replace(/\/+$/, "")}/api/approvals/${r.id}` } : null,
      cli: { approve: `warden approvals approve ${r.id}`, deny: `warden approvals deny ${r.id}` },
    };
  }
  const args = d.arguments === null ? `(digest ${d.argumentsDigest ?? "none"})` : JSON.stringify(d.arguments);
  const text = `Approval needed: ${who} wants to call ${d.tool} on ${d.server} (request ${r.id}, expires ${expires})`;
  const blocks: unknown[] = [
    {
      type: "section",
      text: {
        type: "mrkdwn",
        text: `*Approval needed* — \`${escapeSlack(d.tool)}\` on \`${escapeSlack(d.server)}\`\nAgent *${escapeSlack(who)}*\n${escapeSlack(d.reason)}`,
      },
    },
    { type: "section", text: { type: "mrkdwn", text: `\`\`\`${escapeSlack(args.slice(0, 2500))}\`\`\`` } },
    {
      type: "context",
      elements: [
        {
          type: "mrkdwn",
          text: `Request \`${r.id}\` · expires ${expires} · \`warden approvals approve ${r.id}\``,
        },
      ],
    },
  ];
  if (link) {
    blocks.push({
      type: "actions",
      elements: [
        { type: "button", text: { type: "plain_text", text: "Review in Warden" }, url: link, style: "primary" },
      ],
    });
  }
  return { text, blocks };
}

function escapeSlack(s: string): string {
  return s.replaceAll("&", "&amp;").replaceAll("<", "&lt;").replaceAll(">", "&gt;");
}

/** Delivers one request; never throws. Retries on network errors, 429 and 5xx. */
export async function deliver(
  config: WebhookConfig,
  r: ApprovalRequest,
  publicUrl: string | undefined,
  signal?: AbortSignal,
): Promise<DeliveryResult> {
  const body = JSON.stringify(payload(r, config.format, publicUrl));
  const delivery = randomUUID();
  const attempts = config.attempts ?? 3;
  let last: DeliveryResult = { ok: false, attempts: 0, status: null, error: "not attempted", delivery };
  for (let i = 0; i < attempts; i++) {
    if (i > 0) await sleep(1000 * 4 ** (i - 1), signal);
    if (signal?.aborted) break;
    const timestamp = String(Math.floor(Date.now() / 1000));
    try {
      const res = await fetch(config.url, {
        method: "POST",
        headers: {
          "content-type": "application/json",
          "user-agent": "warden-approvals",
          "x-warden-event": "approval.requested",
          "x-warden-delivery": delivery,
          [TIMESTAMP_HEADER]: timestamp,
          [SIGNATURE_HEADER]: sign(config.secret, timestamp, body),
        },
        body,
        redirect: "error",
        signal: AbortSignal.any([AbortSignal.timeout(config.timeoutMs ?? 5000), ...(signal ? [signal] : [])]),
      });
      await res.arrayBuffer().catch(() => undefined);
      last = { ok: res.ok, attempts: i + 1, status: res.status, error: res.ok ? null : `HTTP ${res.status}`, delivery };
      if (res.ok || (res.status < 500 && res.status !== 429)) return last;
    } catch (err) {
      last = { ok: false, attempts: i + 1, status: null, error: (err as Error).message, delivery };
    }
  }
  return last;
}

function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const t = setTimeout(resolve, ms);
    signal?.addEventListener(
      "abort",
      () => {
        clearTimeout(t);
        resolve();
      },
      { once: true },
    );
  });
}
