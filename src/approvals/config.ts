// The `approvals:` section of warden.yaml, and how `warden serve` and
// `warden run` turn settings into an ApprovalService.
//
//   approvals:
//     enabled: true                 # default; false: require_approval is a deny that says so
//     store: postgres://host/db     # default: approvals.db in the data directory (or sqlite:PATH)
//     node: gw-1                    # default: hostname and data directory
//     publicUrl: https://warden.example.com   # links in webhooks and progress messages
//     progressInterval: 15s
//     approvers: { users: [...], groups: [...] }   # for rules that name none
//     webhook:
//       url: https://hooks.example.com/warden
//       secretEnv: WARDEN_WEBHOOK_SECRET   # or secretFile: ./webhook.secret
//       format: json                       # or slack
import { readFileSync } from "node:fs";
import { hostname } from "node:os";
import type { AuditLog } from "../audit/log.js";
import type { ArgumentsPolicy } from "../audit/record.js";
import { durationCheck, parseDuration } from "../policy/duration.js";
import type { ObjectSchema } from "../policy/schema.js";
import { ApprovalService } from "./service.js";
import { openApprovalStore } from "./store.js";
import type { WebhookConfig } from "./webhook.js";

export interface ApprovalsConfig {
  enabled: boolean;
  store?: string;
  node?: string;
  publicUrl?: string;
  progressIntervalMs?: number;
  approvers?: { users: string[]; groups: string[] };
  webhook?: { url: string; secretEnv?: string; secretFile?: string; format: "json" | "slack" };
}

const strings = { type: "list", items: { type: "string", maxLength: 256 }, maxItems: 1000 } as const;

/** The schema of the section, for the config reader (line and column errors). */
export const APPROVALS_SCHEMA: ObjectSchema = {
  type: "object",
  what: "approvals",
  fields: {
    enabled: { schema: { type: "boolean" } },
    store: { schema: { type: "string", maxLength: 4096 } },
    node: { schema: { type: "string", maxLength: 256 } },
    publicUrl: {
      schema: { type: "string", pattern: /^https?:\/\/[^\s]+$/, patternHelp: "an http:// or https:// URL" },
    },
    progressInterval: { schema: { type: "string", check: durationCheck(1000, 3_600_000) } },
    approvers: {
      schema: {
        type: "object",
        what: "approvers",
        fields: { users: { schema: strings }, groups: { schema: strings } },
      },
    },
    webhook: {
      schema: {
        type: "object",
        what: "webhook",
        fields: {
          url: {
            schema: { type: "string", pattern: /^https?:\/\/[^\s]+$/, patternHelp: "an http:// or https:// URL" },
            required: true,
          },
          secretEnv: {
            schema: {
              type: "string",
              pattern: /^[A-Za-z_][A-Za-z0-9_]*$/,
              patternHelp: "the name of an environment variable",
            },
          },
          secretFile: { schema: { type: "string", maxLength: 4096 } },
          format: { schema: { type: "string", enum: ["json", "slack"] } },
        },
      },
    },
  },
};

/** The checked section as plain settings; `abs` resolves paths against the config file. Returns problems as messages. */
export function readApprovalsConfig(
  raw: Record<string, unknown> | undefined,
  abs: (p: string) => string,
): { config: ApprovalsConfig; problems: { pointer: string; message: string }[] } {
  const c = raw ?? {};
  const problems: { pointer: string; message: string }[] = [];
  const config: ApprovalsConfig = { enabled: c.enabled !== false };
  if (typeof c.store === "string") {
    config.store = /^postgres(ql)?:\/\//i.test(c.store)
      ? c.store
      : `sqlite:${abs(c.store.startsWith("sqlite:") ? c.store.slice(7) : c.store)}`;
  }
  if (typeof c.node === "string") config.node = c.node;
  if (typeof c.publicUrl === "string") config.publicUrl = c.publicUrl.replace(/\/+$/, "");
  if (typeof c.progressInterval === "string") config.progressIntervalMs = parseDuration(c.progressInterval);
  const a = c.approvers as { users?: string[]; groups?: string[] } | undefined;
  if (a) config.approvers = { users: a.users ?? [], groups: a.groups ?? [] };
  const w = c.webhook as
    | { url: string; secretEnv?: string; secretFile?: string; format?: "json" | "slack" }
    | undefined;
  if (w) {
    if ((w.secretEnv === undefined) === (w.secretFile === undefined)) {
      problems.push({
        pointer: "/approvals/webhook",
        message:
          "the webhook needs its HMAC secret from secretEnv (an environment variable's name) or secretFile (a file), one of them",
      });
    }
    config.webhook = {
      url: w.url,
      format: w.format ?? "json",
      ...(w.secretEnv ? { secretEnv: w.secretEnv } : {}),
      ...(w.secretFile ? { secretFile: abs(w.secretFile) } : {}),
    };
  }
  return { config, problems };
}

/** The webhook secret, read now (an unset variable or unreadable file stops the gateway from starting). */
export function webhookSecret(w: NonNullable<ApprovalsConfig["webhook"]>, env = process.env): string {
  let secret: string | undefined;
  if (w.secretEnv) {
    secret = env[w.secretEnv];
    if (!secret) throw new Error(`the webhook secret variable ${w.secretEnv} is not set`);
  } else if (w.secretFile) {
    try {
      secret = readFileSync(w.secretFile, "utf8").trim();
    } catch (err) {
      throw new Error(`cannot read the webhook secret file ${w.secretFile}: ${(err as Error).message}`);
    }
  }
  if (!secret || secret.length < 16) throw new Error("the webhook secret must be at least 16 characters");
  return secret;
}

/** Opens the store and starts the service a gateway uses. */
export async function startApprovals(
  config: ApprovalsConfig,
  o: {
    dataDir: string;
    audit: AuditLog;
    arguments: ArgumentsPolicy;
    log(m: string): void;
    /** Used for links when config.publicUrl is not set (warden serve's own URL). */
    defaultPublicUrl?: string;
    env?: NodeJS.ProcessEnv;
  },
): Promise<ApprovalService> {
  let webhook: WebhookConfig | undefined;
  if (config.webhook) {
    webhook = {
      url: config.webhook.url,
      format: config.webhook.format,
      secret: webhookSecret(config.webhook, o.env),
    };
  }
  const store = await openApprovalStore(config.store, o.dataDir);
  try {
    return await ApprovalService.open({
      store,
      audit: o.audit,
      arguments: o.arguments,
      node: config.node ?? `${hostname()}:${o.dataDir}`,
      publicUrl: config.publicUrl ?? o.defaultPublicUrl,
      webhook,
      defaultApprovers: config.approvers,
      progressIntervalMs: config.progressIntervalMs,
      log: o.log,
    });
  } catch (err) {
    await store.close().catch(() => {});
    throw err;
  }
}
