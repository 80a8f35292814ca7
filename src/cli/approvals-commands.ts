// `warden approvals`: list, show, approve and deny approval requests, and list
// and revoke grants — against a running `warden serve` over its authenticated
// HTTP API (--url and a credential), or directly against a store (the local
// SQLite file in the data directory, or the PostgreSQL URL the gateways share).
//
// On a store, the approver is the operating-system account running the
// command ("os:<name>"): whoever can write the store is trusted with it, so use
// the HTTP API where approvers must authenticate with a key or a token.
import { parseArgs } from "node:util";
import { decide, revoke } from "../approvals/authorize.js";
import { grantJson, requestJson } from "../approvals/http-api.js";
import { osApprover } from "../approvals/service.js";
import { type ApprovalStore, openApprovalStore } from "../approvals/store.js";
import { ApprovalError, ApprovalStoreError, ID_PATTERN, STATES } from "../approvals/types.js";
import { resolveDataDir } from "../audit/data-dir.js";
import { loadServeConfig } from "../mcp/config.js";
import { formatDiagnostic, PolicyLoadError } from "../policy/diagnostics.js";
import { parseDuration } from "../policy/duration.js";
import { type CliIO, EXIT, UsageError } from "./io.js";

export const APPROVALS_HELP = `Usage: warden approvals <command> [options]

Commands:
  list [--all | --state STATE] [--limit N] [--json]   pending requests (newest first)
  show ID [--json]                                    one request in full
  approve ID [--reason TEXT] [--for DURATION]         let the held call run; --for also lets this
                                                      tool through for the agent (and user) for
                                                      DURATION (e.g. 30m, 8h) as a grant
  deny ID [--reason TEXT]                             refuse it; the agent gets the reason
  grants [--all] [--json]                             active grants (--all: with expired and revoked)
  revoke GRANT_ID [--reason TEXT]                     end a grant now (its creator, or who could
                                                      decide its request); on a store, the gateway
                                                      using it records the revocation when it notices

Where (in this order):
  --url URL            a running warden serve, e.g. http://127.0.0.1:8080       WARDEN_URL
    --api-key KEY      its API key (or --token JWT)               WARDEN_API_KEY, WARDEN_TOKEN
  --store URL|PATH     postgres://... or a SQLite file                           WARDEN_APPROVALS_STORE
  --config FILE        the approvals.store (or data directory) of a warden.yaml
  --data-dir DIR       the SQLite store in DIR/approvals.db (default ./.warden)  WARDEN_DATA_DIR

Through the HTTP API the approver is the credential's user; on a store it is the
operating-system account (os:<name>). A request's own user may not approve it unless
the rule allows self-approval. Exit codes: 0 done, 1 refused (not allowed, already
decided, expired, unknown id), 2 usage or connection problem.
`;

interface Target {
  list(q: { states: string[]; limit: number }): Promise<Record<string, unknown>[]>;
  show(id: string): Promise<Record<string, unknown>>;
  decide(
    id: string,
    action: "approve" | "deny",
    o: { reason?: string; for?: string },
  ): Promise<Record<string, unknown>>;
  grants(all: boolean): Promise<Record<string, unknown>[]>;
  revoke(id: string, reason?: string): Promise<Record<string, unknown>>;
  close(): Promise<void>;
}

export async function approvalsCommand(args: string[], io: CliIO): Promise<number> {
  const [sub, ...rest] = args;
  if (!sub || sub === "--help" || sub === "-h" || sub === "help") {
    io.stdout(APPROVALS_HELP);
    return sub ? EXIT.ok : EXIT.unusable;
  }
  let parsed: { values: Record<string, string | boolean | undefined>; positionals: string[] };
  try {
    parsed = parseArgs({
      args: rest,
      allowPositionals: true,
      strict: true,
      options: {
        json: { type: "boolean" },
        all: { type: "boolean" },
        state: { type: "string" },
        limit: { type: "string" },
        reason: { type: "string" },
        for: { type: "string" },
        url: { type: "string" },
        "api-key": { type: "string" },
        token: { type: "string" },
        store: { type: "string" },
        config: { type: "string" },
        "data-dir": { type: "string" },
        help: { type: "boolean", short: "h" },
      },
    }) as typeof parsed;
  } catch (err) {
    throw new UsageError(`${(err as Error).message}\n${APPROVALS_HELP}`);
  }
  const v = parsed.values;
  if (v.help) {
    io.stdout(APPROVALS_HELP);
    return EXIT.ok;
  }
  const pos = parsed.positionals;
  const needId = (what: string, pattern = ID_PATTERN) => {
    const id = pos[0];
    if (!id || pos.length > 1) throw new UsageError(`warden approvals ${sub} needs exactly one ${what}`);
    if (!pattern.test(id))
      throw new UsageError(
        `"${id}" is not ${what === "ID" ? "an approval request id (apr_...)" : "a grant id (grt_...)"}`,
      );
    return id;
  };
  if (v.for !== undefined && (sub !== "approve" || parseDuration(String(v.for)) === undefined)) {
    throw new UsageError(
      sub !== "approve" ? "--for goes with approve" : "--for takes a duration such as 30m, 8h or 1d",
    );
  }

  let target: Target;
  try {
    target = await openTarget(v, io);
  } catch (err) {
    if (err instanceof UsageError) throw err;
    io.stderr(`warden: ${(err as Error).message}\n`);
    return EXIT.unusable;
  }
  try {
    switch (sub) {
      case "list": {
        if (pos.length > 0) throw new UsageError("warden approvals list takes no arguments");
        const state = v.all ? "all" : String(v.state ?? "pending");
        const states = state === "all" ? [] : state === "decided" ? STATES.filter((s) => s !== "pending") : [state];
        if (states.some((s) => !(STATES as readonly string[]).includes(s))) {
          throw new UsageError(`--state must be decided or one of ${STATES.join(", ")}`);
        }
        const limit = Number(v.limit ?? "100");
        if (!Number.isInteger(limit) || limit < 1 || limit > 1000) throw new UsageError("--limit must be 1–1000");
        const list = await target.list({ states: [...states], limit });
        if (v.json) io.stdout(`${JSON.stringify(list, null, 2)}\n`);
        else io.stdout(listText(list));
        return EXIT.ok;
      }
      case "show": {
        const r = await target.show(needId("ID"));
        io.stdout(v.json ? `${JSON.stringify(r, null, 2)}\n` : showText(r));
        return EXIT.ok;
      }
      case "approve":
      case "deny": {
        const id = needId("ID");
        const r = await target.decide(id, sub, {
          reason: v.reason as string | undefined,
          for: v.for as string | undefined,
        });
        if (v.json) io.stdout(`${JSON.stringify(r, null, 2)}\n`);
        else {
          io.stdout(
            `${id} ${r.state} by ${r.decidedBy} (${r.decidedVia})${r.grantId ? `; grant ${r.grantId} for ${v.for}` : ""}\n`,
          );
        }
        return EXIT.ok;
      }
      case "grants": {
        if (pos.length > 0) throw new UsageError("warden approvals grants takes no arguments");
        const list = await target.grants(v.all === true);
        io.stdout(v.json ? `${JSON.stringify(list, null, 2)}\n` : grantsText(list));
        return EXIT.ok;
      }
      case "revoke": {
        const g = await target.revoke(needId("grant id", /^grt_[a-z0-9]{6,40}$/), v.reason as string | undefined);
        io.stdout(v.json ? `${JSON.stringify(g, null, 2)}\n` : `${g.id} revoked by ${g.revokedBy}\n`);
        return EXIT.ok;
      }
      default:
        throw new UsageError(`unknown approvals command "${sub}"; run warden approvals --help`);
    }
  } catch (err) {
    if (err instanceof ApprovalError) {
      io.stderr(`warden: ${err.message}\n`);
      return err.status === 503 ? EXIT.unusable : EXIT.failed;
    }
    if (err instanceof ApprovalStoreError) {
      io.stderr(`warden: ${err.message}\n`);
      return EXIT.unusable;
    }
    throw err;
  } finally {
    await target.close();
  }
}

async function openTarget(v: Record<string, string | boolean | undefined>, io: CliIO): Promise<Target> {
  const env = process.env;
  const url = (v.url as string | undefined) ?? env.WARDEN_URL;
  if (url) {
    const credential =
      (v["api-key"] as string | undefined) ??
      (v.token as string | undefined) ??
      env.WARDEN_API_KEY ??
      env.WARDEN_TOKEN ??
      undefined;
    return httpTarget(url, credential);
  }
  let location = (v.store as string | undefined) ?? env.WARDEN_APPROVALS_STORE;
  let dataDir = resolveDataDir(v["data-dir"] as string | undefined);
  if (!location && v.config) {
    try {
      const c = loadServeConfig(String(v.config));
      location = c.approvals.store;
      if (c.dataDir) dataDir = c.dataDir;
    } catch (err) {
      if (err instanceof PolicyLoadError) {
        for (const d of err.diagnostics) io.stderr(`${formatDiagnostic(d)}\n`);
        throw new UsageError(`${v.config} does not load`);
      }
      throw err;
    }
  }
  return storeTarget(await openApprovalStore(location, dataDir));
}

function storeTarget(store: ApprovalStore): Target {
  const approver = osApprover();
  return {
    async list(q) {
      return (await store.list(q)).map((r) => requestJson(r));
    },
    async show(id) {
      const r = await store.get(id);
      if (!r) throw new ApprovalError(`no approval request ${id}`, 404);
      return requestJson(r);
    },
    async decide(id, action, o) {
      const r = await decide(store, id, action, approver, {
        reason: o.reason,
        forMs: o.for === undefined ? undefined : parseDuration(o.for),
        leaseMs: 30_000,
      });
      return requestJson(r);
    },
    async grants(all) {
      return (await store.listGrants({ includeInactive: all, limit: 1000 }, Date.now())).map(grantJson);
    },
    async revoke(id, reason) {
      // This process has no audit log: the gateway using the store records the revocation when it notices it.
      return grantJson(await revoke(store, id, approver, { reason, recorded: false }));
    },
    close: () => store.close(),
  };
}

function httpTarget(base: string, credential: string | undefined): Target {
  const root = base.replace(/\/+$/, "");
  const call = async (method: string, path: string, body?: unknown): Promise<Record<string, unknown>> => {
    let res: Response;
    try {
      res = await fetch(`${root}/api/approvals${path}`, {
        method,
        headers: {
          accept: "application/json",
          ...(body === undefined ? {} : { "content-type": "application/json" }),
          ...(credential ? { authorization: `Bearer ${credential}` } : {}),
        },
        body: body === undefined ? undefined : JSON.stringify(body),
        redirect: "error",
        signal: AbortSignal.timeout(30_000),
      });
    } catch (err) {
      throw new ApprovalError(`cannot reach ${root}: ${(err as Error).message}`, 503);
    }
    const json = (await res.json().catch(() => ({}))) as Record<string, unknown>;
    if (!res.ok) {
      const status = ([400, 403, 404, 409].includes(res.status) ? res.status : 503) as 400 | 403 | 404 | 409 | 503;
      throw new ApprovalError(String(json.error ?? `HTTP ${res.status}`), res.status === 401 ? 503 : status);
    }
    return json;
  };
  return {
    async list(q) {
      const state = q.states.length === 0 ? "all" : q.states.join(",");
      return (await call("GET", `?state=${encodeURIComponent(state)}&limit=${q.limit}`)).requests as Record<
        string,
        unknown
      >[];
    },
    async show(id) {
      return (await call("GET", `/${encodeURIComponent(id)}`)).request as Record<string, unknown>;
    },
    async decide(id, action, o) {
      const body: Record<string, unknown> = {};
      if (o.reason) body.reason = o.reason;
      if (o.for) body.for = o.for;
      return (await call("POST", `/${encodeURIComponent(id)}/${action}`, body)).request as Record<string, unknown>;
    },
    async grants(all) {
      return (await call("GET", `/grants?limit=1000${all ? "&all=1" : ""}`)).grants as Record<string, unknown>[];
    },
    async revoke(id, reason) {
      return (await call("POST", `/grants/${encodeURIComponent(id)}/revoke`, reason ? { reason } : {})).grant as Record<
        string,
        unknown
      >;
    },
    close: async () => {},
  };
}

// ---- text output ----

const str = (v: unknown) => (v === null || v === undefined ? "" : String(v));

function who(r: Record<string, unknown>): string {
  const agent = (r.agent as { name: string }).name;
  const user = (r.user as { id?: string } | null)?.id;
  return user ? `${agent}/${user}` : agent;
}

function relative(iso: unknown, now = Date.now()): string {
  const ms = Date.parse(String(iso)) - now;
  const s = Math.round(Math.abs(ms) / 1000);
  const text =
    s >= 3600
      ? `${Math.floor(s / 3600)}h${Math.floor((s % 3600) / 60)}m`
      : s >= 60
        ? `${Math.floor(s / 60)}m${s % 60}s`
        : `${s}s`;
  return ms >= 0 ? `in ${text}` : `${text} ago`;
}

function listText(list: Record<string, unknown>[]): string {
  if (list.length === 0) return "No approval requests.\n";
  const rows = list.map((r) => [
    str(r.id),
    str(r.state),
    r.state === "pending" ? `expires ${relative(r.expiresAt)}` : `decided ${relative(r.decidedAt ?? r.createdAt)}`,
    who(r),
    `${str(r.server)}/${str(r.tool)}`,
    r.state === "pending" ? str(r.reason) : str(r.decisionReason ?? ""),
  ]);
  const head = ["ID", "STATE", "WHEN", "AGENT/USER", "SERVER/TOOL", "REASON"];
  const widths = head.map((h, i) => Math.min(40, Math.max(h.length, ...rows.map((row) => (row[i] as string).length))));
  const line = (cells: string[]) =>
    `${cells
      .map((c, i) => (i === cells.length - 1 ? c : c.slice(0, widths[i]).padEnd(widths[i] as number)))
      .join("  ")
      .trimEnd()}\n`;
  return line(head) + rows.map(line).join("");
}

function showText(r: Record<string, unknown>): string {
  const rule = r.rule as { index: number; name: string | null } | null;
  const policy = r.policy as { name: string | null; version: string | null };
  const req = r.requirement as {
    approvers: { users: string[]; groups: string[] }[];
    allowSelfApproval: boolean;
    type: string;
  };
  const approvers = req.approvers
    .map(
      (a) =>
        [a.users.length ? `users ${a.users.join(", ")}` : "", a.groups.length ? `groups ${a.groups.join(", ")}` : ""]
          .filter(Boolean)
          .join(" or ") || "any approver",
    )
    .join("; and ");
  const lines = [
    `Request   ${str(r.id)}  (${str(r.state)})`,
    `Call      ${str(r.tool)} on ${str(r.server)}`,
    `Agent     ${who(r)}  (via ${str(r.via)})`,
    `Reason    ${str(r.reason)}`,
    `Policy    ${policy.name ?? "(default)"}${rule ? `, rule ${rule.name ?? `#${rule.index}`}` : ""}  ${policy.version ?? ""}`,
    `Approvers ${approvers}${req.allowSelfApproval ? " (self-approval allowed)" : ""}${req.type === "elicitation" ? "; the client's user may confirm" : ""}`,
    `Created   ${str(r.createdAt)}`,
    `Expires   ${str(r.expiresAt)} (${relative(r.expiresAt)})`,
    `Arguments ${r.arguments === null ? `(not stored; ${str(r.argumentsDigest)})` : JSON.stringify(r.arguments, null, 2).replaceAll("\n", "\n          ")}`,
  ];
  if (r.state !== "pending") {
    lines.push(
      `Decided   ${str(r.decidedAt)} by ${str(r.decidedBy) || "-"} (${str(r.decidedVia)}): ${str(r.decisionReason)}`,
    );
  }
  if (r.grantId) lines.push(`Grant     ${str(r.grantId)}`);
  if (r.outcome) lines.push(`Outcome   ${str(r.outcome)}`);
  if (r.link) lines.push(`Page      ${str(r.link)}`);
  return `${lines.join("\n")}\n`;
}

function grantsText(list: Record<string, unknown>[]): string {
  if (list.length === 0) return "No grants.\n";
  return `${list
    .map((g) => {
      const state = g.revokedAt
        ? `revoked by ${str(g.revokedBy)}`
        : Date.parse(String(g.expiresAt)) > Date.now()
          ? `active, ends ${relative(g.expiresAt)}`
          : "expired";
      return `${str(g.id)}  ${str(g.server)}/${str(g.tool)} for ${str(g.agent)}${g.userId ? `/${str(g.userId)}` : ""}  by ${str(g.createdBy)}  ${state}  used ${str(g.uses)}x`;
    })
    .join("\n")}\n`;
}
