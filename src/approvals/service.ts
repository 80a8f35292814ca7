// The approval service: the gateway's ApprovalChannel. A call whose decision
// is require_approval is held here while a durable request waits in the store
// for a human; every way out of the wait is an atomic store transition, and
// only an approved transition seen by this process (the holder) lets the call
// through. Everything else — deny, expiry, the agent cancelling, a store
// failure, shutdown — answers the agent with a tool error, and because the
// holder is the only process that can forward the call, a request approved
// after its holder is gone is never executed.
//
// Evidence: every step is an `approval` record in the audit log (created,
// notified, approved/denied/expired/withdrawn with who, how and why, grant
// used, decision received from another process, grant revoked, outcome).
import { hostname, userInfo } from "node:os";
import type { AuditLog } from "../audit/log.js";
import { type ArgumentsPolicy, type AuditEvent, applyArgumentsPolicy } from "../audit/record.js";
import type { ApprovalChannel, ApprovalOutcome, HoldContext, PendingCall } from "../mcp/governor.js";
import type { Decision } from "../policy/decision.js";
import { formatDuration } from "../policy/duration.js";
import { type ApproverSet, alreadyFinal, decide, grantCovers, requirementFrom, revoke } from "./authorize.js";
import { OUTCOMES } from "./sql.js";
import type { ApprovalStore } from "./store.js";
import type { ApprovalRequest, Approver, FinalState, Grant, RequestDetails } from "./types.js";
import { newId } from "./types.js";
import { approvalLink, type DeliveryResult, deliver, type WebhookConfig } from "./webhook.js";

export interface ApprovalServiceOptions {
  store: ApprovalStore;
  audit: AuditLog;
  /** How tool arguments are kept in the request (the audit log's setting). */
  arguments: ArgumentsPolicy;
  /** Stable name of this gateway (host and data directory); a restarted gateway expires its predecessor's requests. */
  node?: string;
  /** Base URL of the approval page (warden serve), for links in webhooks and progress messages. */
  publicUrl?: string;
  webhook?: WebhookConfig;
  /** Approvers for rules that name none. */
  defaultApprovers?: ApproverSet;
  /** How often a held call sends notifications/progress (default 15 s). */
  progressIntervalMs?: number;
  /** A gateway not seen for this long is gone and its requests expire (default 30 s; heartbeat every third of it). */
  leaseMs?: number;
  /** How often held requests are checked against the store, besides change notifications (default 250 ms SQLite, 2 s PostgreSQL). */
  pollMs?: number;
  log(message: string): void;
}

interface Held {
  request: ApprovalRequest;
  settle(final: ApprovalRequest | Error): void;
}

export type ChangeListener = () => void;

export const ELICITATION_SCHEMA = {
  type: "object",
  properties: {
    approve: { type: "boolean", title: "Allow this call?", description: "Allow the agent to run this tool call once." },
    reason: { type: "string", title: "Reason (optional)", maxLength: 500 },
  },
  required: ["approve"],
} as const;

export class ApprovalService implements ApprovalChannel {
  readonly instance = newId("gw");
  readonly node: string;
  readonly leaseMs: number;
  private readonly held = new Map<string, Held>();
  private readonly listeners = new Set<ChangeListener>();
  private readonly timers: NodeJS.Timeout[] = [];
  private unwatch: () => void = () => {};
  private polling = false;
  private pollAgain = false;
  private catchingUp: Promise<void> | null = null;
  private catchUpAgain = false;
  private closing: Promise<void> | null = null;
  /** Requests this process gave up on while the store failed: expired once it answers again. */
  private readonly abandoned = new Set<string>();
  /** request() calls under way, so close() can wait for their records. */
  private readonly active = new Set<Promise<ApprovalOutcome>>();

  private constructor(private readonly o: ApprovalServiceOptions) {
    this.node = o.node ?? defaultNode();
    this.leaseMs = o.leaseMs ?? 30_000;
  }

  get store(): ApprovalStore {
    return this.o.store;
  }

  get publicUrl(): string | undefined {
    return this.o.publicUrl;
  }

  /** Sets the base URL for links when none was configured (warden serve learns its own URL after listening). */
  useDefaultPublicUrl(url: string): void {
    this.o.publicUrl ??= url.replace(/\/+$/, "");
  }

  /** Registers this gateway, expires what a previous run of it left pending, and starts watching the store. */
  static async open(o: ApprovalServiceOptions): Promise<ApprovalService> {
    const s = new ApprovalService(o);
    const now = Date.now();
    await o.store.registerInstance(s.instance, s.node, now);
    for (const r of await o.store.expireOrphans(s.node, s.instance, now, s.leaseMs)) await s.recordFinal(r);
    await s.catchUp();
    s.unwatch = o.store.watch(() => {
      void s.poll();
      void s.catchUp().catch(() => {});
      s.changed();
    });
    const every = (ms: number, fn: () => Promise<void>) => {
      const t = setInterval(() => void fn().catch(() => {}), ms);
      t.unref();
      s.timers.push(t);
    };
    every(Math.max(1000, Math.floor(s.leaseMs / 3)), async () => {
      await o.store.heartbeat(s.instance, Date.now()).catch(async (err) => {
        o.log(`approvals: heartbeat failed (${(err as Error).message})`);
        await o.store.registerInstance(s.instance, s.node, Date.now());
      });
    });
    every(Math.max(1000, Math.floor(s.leaseMs / 2)), () => s.sweep());
    every(o.pollMs ?? (o.store.kind === "sqlite" ? 250 : 2000), () => s.poll());
    return s;
  }

  // ---- the ApprovalChannel ----

  request(call: PendingCall, decision: Decision, hold?: HoldContext): Promise<ApprovalOutcome> {
    if (this.closing) return Promise.resolve({ approved: false, reason: "the gateway is shutting down" });
    const p = this.handle(call, decision, hold);
    this.active.add(p);
    void p.finally(() => this.active.delete(p));
    return p;
  }

  private async handle(call: PendingCall, decision: Decision, hold?: HoldContext): Promise<ApprovalOutcome> {
    const { input, identity } = call;
    const details = this.details(call, decision);
    const userId = identity.user?.id ?? null;

    // A grant from an earlier approval "for DURATION" lets the call through without asking.
    let grants: Grant[];
    try {
      grants = await this.o.store.findGrants(
        { server: details.server, tool: details.tool, agent: details.agent.name, userId },
        Date.now(),
      );
    } catch (err) {
      return { approved: false, reason: `the approval store is unavailable (${(err as Error).message}); fail closed` };
    }
    const grant = grants.find((g) => grantCovers(g, details));
    if (grant) {
      const ok = await this.append(
        this.event(details, {
          event: "grant-used",
          grant: grant.id,
          by: grant.createdBy,
          via: grant.createdVia,
          grantExpiresAt: iso(grant.expiresAt),
        }),
        `grant ${grant.id} used for ${details.tool}`,
      );
      if (!ok) return { approved: false, reason: "the audit log is unavailable; a grant cannot be used unrecorded" };
      this.o.store.useGrant(grant.id).catch((err) => this.o.log(`approvals: counting a grant use failed: ${err}`));
      return {
        approved: true,
        by: grant.createdBy,
        id: grant.id,
        reason: `grant ${grant.id} by ${grant.createdBy} until ${iso(grant.expiresAt)}`,
        record: { grant: grant.id, via: grant.createdVia, grantExpiresAt: iso(grant.expiresAt) },
      };
    }

    const now = Date.now();
    const request: ApprovalRequest = {
      id: newId("apr"),
      state: "pending",
      createdAt: now,
      expiresAt: now + details.requirement.timeoutMs,
      holder: this.instance,
      node: this.node,
      details,
      decidedAt: null,
      decidedBy: null,
      decidedVia: null,
      decisionReason: null,
      grantId: null,
      outcome: null,
    };
    try {
      await this.o.store.create({
        id: request.id,
        createdAt: request.createdAt,
        expiresAt: request.expiresAt,
        holder: request.holder,
        node: request.node,
        details,
      });
    } catch (err) {
      return {
        approved: false,
        reason: `the approval request could not be stored (${(err as Error).message}); fail closed`,
      };
    }
    const created = await this.append(
      {
        ...this.event(details, {
          event: "created",
          id: request.id,
          expiresAt: iso(request.expiresAt),
          timeout: formatDuration(details.requirement.timeoutMs),
          type: details.requirement.type,
          approvers: details.requirement.approvers,
          allowSelfApproval: details.requirement.allowSelfApproval,
        }),
        arguments: input.request.arguments ?? {},
      },
      `approval request ${request.id} created`,
    );
    if (!created) {
      await this.o.store
        .transition(request.id, "expired", { by: null, via: "warden", reason: "the audit log is unavailable" }, now)
        .catch(() => this.abandoned.add(request.id));
      return { approved: false, reason: "the audit log is unavailable; Warden refuses calls it cannot record" };
    }

    const final = await this.hold(request, hold);
    this.changed();
    if (final instanceof Error) {
      return { approved: false, id: request.id, reason: final.message, record: { id: request.id, state: "failed" } };
    }
    // Noted on the request before the call can run: a request decided with no
    // note is one whose holder never saw the decision, so the call never ran.
    let noted: boolean | Error = true;
    if (final.state === "approved" || final.state === "denied") {
      noted = await this.o.store
        .claimOutcome(final.id, final.state === "approved" ? OUTCOMES.forwarding : OUTCOMES.denied)
        .catch((err: Error) => err);
    }
    const recorded = await this.recordFinal(final);
    const record = {
      id: final.id,
      state: final.state,
      via: final.decidedVia,
      reason: final.decisionReason,
      decidedAt: final.decidedAt === null ? null : iso(final.decidedAt),
      grant: final.grantId,
    };
    if (final.state === "approved") {
      if (noted !== true) {
        const why =
          noted === false
            ? "it was closed as never run by another gateway, which took this gateway for stopped"
            : `the approval store failed (${noted.message}); fail closed`;
        return {
          approved: false,
          id: final.id,
          reason: `approval request ${final.id} is not forwarded: ${why}`,
          record,
        };
      }
      if (!recorded) {
        this.completed(final.id, "not forwarded: the audit log is unavailable");
        return { approved: false, id: final.id, reason: "the audit log is unavailable", record };
      }
      return {
        approved: true,
        by: final.decidedBy ?? undefined,
        id: final.id,
        reason: `request ${final.id}${final.decisionReason ? ` (${final.decisionReason})` : ""}${final.grantId ? `; grant ${final.grantId} for later calls` : ""}`,
        record,
      };
    }
    return { approved: false, by: final.decidedBy ?? undefined, id: final.id, reason: describeRefusal(final), record };
  }

  completed(approvalId: string, outcome: string): void {
    if (!approvalId.startsWith("apr_")) return; // grants have no request to update
    this.o.store
      .setOutcome(approvalId, outcome)
      .then(() => this.changed())
      .catch((err) => this.o.log(`approvals: recording the outcome of ${approvalId} failed: ${err}`));
  }

  /** Settles every held call with a tool error and leaves the store. Call before the audit log closes. */
  close(): Promise<void> {
    this.closing ??= (async () => {
      for (const t of this.timers) clearInterval(t);
      this.unwatch();
      await Promise.all(
        [...this.held.keys()].map((id) => this.finish(id, "expired", "the gateway shut down; the call will never run")),
      );
      // Let the held calls record their ends before the caller closes the log.
      await Promise.race([Promise.allSettled([...this.active]), new Promise((r) => setTimeout(r, 5000).unref())]);
      await this.catchingUp?.catch(() => {});
      await this.o.store.removeInstance(this.instance).catch(() => {});
      await this.o.store.close();
    })();
    return this.closing;
  }

  // ---- deciding (HTTP API, web page) ----

  async decide(
    id: string,
    action: "approve" | "deny",
    approver: Approver,
    o: { reason?: string; forMs?: number } = {},
  ): Promise<ApprovalRequest> {
    const r = await decide(this.o.store, id, action, approver, { ...o, leaseMs: this.leaseMs });
    const mine = this.held.get(id);
    if (mine) mine.settle(r);
    else {
      // Held by another gateway process: it records the outcome; this one records that it took the decision.
      await this.append(
        this.event(r.details, {
          event: "decision-received",
          id: r.id,
          state: r.state,
          by: approver.id,
          via: approver.via,
          reason: r.decisionReason,
          holder: r.holder,
          grant: r.grantId,
        }),
        `decision on ${id} received`,
      );
    }
    this.changed();
    return r;
  }

  async revokeGrant(id: string, approver: Approver, reason?: string): Promise<Grant> {
    const grant = await revoke(this.o.store, id, approver, { reason, recorded: true });
    await this.recordRevocation(grant, false);
    this.changed();
    return grant;
  }

  /**
   * Records what other processes left unrecorded in the store: requests
   * decided after their holder was gone (the call never ran), and grants
   * revoked on the store directly (`warden approvals revoke` without --url).
   * Each is claimed in the store first, so it is recorded once per store.
   */
  private catchUp(): Promise<void> {
    if (this.catchingUp) {
      this.catchUpAgain = true;
      return this.catchingUp;
    }
    this.catchingUp = (async () => {
      try {
        do {
          this.catchUpAgain = false;
          const now = Date.now();
          const unrun = await this.o.store.closeUnrun(this.node, this.instance, now, this.leaseMs);
          for (const r of unrun) await this.recordUnrun(r);
          const revoked = await this.o.store.claimRevocations(now);
          for (const g of revoked) await this.recordRevocation(g, true);
          if (unrun.length + revoked.length > 0) this.changed();
        } while (this.catchUpAgain && !this.closing);
      } finally {
        this.catchingUp = null;
      }
    })();
    return this.catchingUp;
  }

  /** Calls back whenever a request or grant may have changed (here or in another process). */
  onChange(listener: ChangeListener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  // ---- holding ----

  private hold(request: ApprovalRequest, hold: HoldContext | undefined): Promise<ApprovalRequest | Error> {
    const { id, details } = request;
    return new Promise((resolve) => {
      const cleanups: (() => void)[] = [];
      let done = false;
      const settle = (final: ApprovalRequest | Error) => {
        if (done) return;
        done = true;
        this.held.delete(id);
        for (const c of cleanups) c();
        resolve(final);
      };
      this.held.set(id, { request, settle });
      this.changed();
      if (this.closing) {
        void this.finish(id, "expired", "the gateway shut down; the call will never run");
        return;
      }

      const expiry = setTimeout(
        () => void this.finish(id, "expired", `no decision within ${formatDuration(details.requirement.timeoutMs)}`),
        Math.max(0, request.expiresAt - Date.now()),
      );
      cleanups.push(() => clearTimeout(expiry));

      const stop = new AbortController();
      cleanups.push(() => stop.abort());
      if (hold) {
        const withdraw = () =>
          void this.finish(id, "withdrawn", reasonOf(hold.signal) ?? "the client cancelled the call");
        if (hold.signal.aborted) withdraw();
        else {
          hold.signal.addEventListener("abort", withdraw, { once: true });
          cleanups.push(() => hold.signal.removeEventListener("abort", withdraw));
        }
        if (hold.progress) {
          const send = hold.progress;
          const tell = () => send(this.progressMessage(request));
          tell();
          const t = setInterval(tell, this.o.progressIntervalMs ?? 15_000);
          cleanups.push(() => clearInterval(t));
        }
      }
      this.notify(request, hold, stop.signal);
    });
  }

  /** Tries to end a held request this way; whatever the store says won is what the held call gets. */
  private async finish(id: string, to: FinalState, reason: string): Promise<void> {
    const held = this.held.get(id);
    if (!held) return;
    try {
      const r = await this.o.store.transition(id, to, { by: null, via: "warden", reason }, Date.now());
      if (r.request && r.request.state !== "pending") held.settle(r.request);
      else held.settle(new Error(`approval request ${id} vanished from the store; fail closed`));
    } catch (err) {
      this.abandoned.add(id);
      held.settle(new Error(`the approval store failed (${(err as Error).message}); fail closed`));
    }
  }

  /** Picks up decisions taken elsewhere (another process, the local CLI). */
  private async poll(): Promise<void> {
    if (this.polling) {
      this.pollAgain = true;
      return;
    }
    this.polling = true;
    try {
      do {
        this.pollAgain = false;
        const ids = [...this.held.keys()];
        if (ids.length === 0) break;
        let decided: ApprovalRequest[];
        try {
          decided = await this.o.store.decidedAmong(ids);
        } catch (err) {
          // Fail closed: a held call whose request cannot be read is not let through.
          for (const id of ids) {
            this.abandoned.add(id);
            this.held.get(id)?.settle(new Error(`the approval store failed (${(err as Error).message}); fail closed`));
          }
          break;
        }
        for (const r of decided) this.held.get(r.id)?.settle(r);
      } while (this.pollAgain);
    } finally {
      this.polling = false;
    }
  }

  /** Expires abandoned requests: this process's own (after a store failure) and those of gateways that are gone. */
  private async sweep(): Promise<void> {
    const now = Date.now();
    for (const id of [...this.abandoned]) {
      try {
        const r = await this.o.store.transition(
          id,
          "expired",
          {
            by: null,
            via: "warden",
            reason: "the gateway gave up on it after a store failure; the call will never run",
          },
          now,
        );
        this.abandoned.delete(id);
        if (r.changed && r.request) await this.recordFinal(r.request);
      } catch {
        return; // still failing; try again next time
      }
    }
    const expired = await this.o.store.expireOrphans(this.node, this.instance, now, this.leaseMs);
    for (const r of expired) await this.recordFinal(r);
    if (expired.length > 0) this.changed();
    await this.catchUp();
  }

  // ---- channels ----

  private notify(request: ApprovalRequest, hold: HoldContext | undefined, signal: AbortSignal): void {
    const webhook = this.o.webhook;
    if (webhook) {
      void deliver(webhook, request, this.o.publicUrl, signal).then((r: DeliveryResult) => {
        if (!r.ok) this.o.log(`approvals: webhook delivery for ${request.id} failed: ${r.error}`);
        void this.append(
          this.event(request.details, {
            event: "notified",
            id: request.id,
            channel: webhook.format === "slack" ? "webhook-slack" : "webhook",
            delivered: r.ok,
            attempts: r.attempts,
            status: r.status,
            error: r.error,
            delivery: r.delivery,
          }),
          `webhook for ${request.id}`,
        );
      });
    }
    if (request.details.requirement.type !== "elicitation") return;
    if (!hold?.elicit) {
      void this.append(
        this.event(request.details, {
          event: "notified",
          id: request.id,
          channel: "elicitation",
          delivered: false,
          error: "the client did not declare the elicitation capability; the request waits for an approver instead",
        }),
        `elicitation for ${request.id}`,
      );
      return;
    }
    const d = request.details;
    const message = `${d.agent.name} wants to call ${d.tool} on ${d.server}. ${d.reason}. Allow it? (Warden request ${request.id})`;
    void this.append(
      this.event(d, { event: "notified", id: request.id, channel: "elicitation", delivered: true }),
      `elicitation for ${request.id}`,
    );
    hold
      .elicit(message, ELICITATION_SCHEMA as unknown as Record<string, unknown>, signal)
      .then(async (answer) => {
        const yes = answer.action === "accept" && answer.content?.approve === true;
        const reason =
          typeof answer.content?.reason === "string" && answer.content.reason !== ""
            ? answer.content.reason.slice(0, 1000)
            : yes
              ? "confirmed by the user"
              : answer.action === "accept"
                ? "the user answered no"
                : `the user chose ${answer.action}`;
        const r = await this.o.store.transition(
          request.id,
          yes ? "approved" : "denied",
          { by: d.user?.id ?? d.agent.name, via: "elicitation", reason },
          Date.now(),
        );
        if (r.request && r.request.state !== "pending") this.held.get(request.id)?.settle(r.request);
        if (!r.changed && r.request) this.o.log(`approvals: elicitation answer came late: ${alreadyFinal(r.request)}`);
      })
      .catch((err) => {
        if (signal.aborted) return;
        void this.append(
          this.event(d, {
            event: "notified",
            id: request.id,
            channel: "elicitation",
            delivered: false,
            error: (err as Error).message,
          }),
          `elicitation for ${request.id}`,
        );
      });
  }

  private progressMessage(r: ApprovalRequest): string {
    const left = Math.max(0, Math.round((r.expiresAt - Date.now()) / 1000));
    const link = approvalLink(this.o.publicUrl, r.id);
    return `Waiting for approval of ${r.details.tool} (request ${r.id}, ${left}s left). ${
      link ? `Review: ${link}` : `Approve with: warden approvals approve ${r.id}`
    }`;
  }

  // ---- evidence ----

  private details(call: PendingCall, decision: Decision): RequestDetails {
    const { input, identity } = call;
    const stored = applyArgumentsPolicy(input.request.arguments ?? {}, this.o.arguments);
    const user: RequestDetails["user"] = identity.user ? {} : null;
    if (user && identity.user?.id !== undefined) user.id = identity.user.id;
    if (user && identity.user?.groups !== undefined) user.groups = [...identity.user.groups];
    const agent: RequestDetails["agent"] = { name: identity.agent.name };
    if (identity.agent.labels) agent.labels = { ...identity.agent.labels };
    return {
      agent,
      user,
      via: identity.via,
      session: input.session?.id ?? null,
      server: input.request.server,
      tool: input.request.tool,
      arguments: JSON.parse(stored.storedJson) as unknown,
      argumentsDigest: stored.digest,
      policy: {
        name: decision.policy,
        version: decision.version,
        set: decision.policySet,
        bundle: call.bundle ?? null,
      },
      rule: decision.rule,
      reason: decision.reason,
      requirement: requirementFrom(decision.obligations.approvals, this.o.defaultApprovers),
    };
  }

  private event(d: RequestDetails, approval: Record<string, unknown>): AuditEvent {
    const user = d.user ? { ...d.user } : null;
    return {
      type: "approval",
      agent: { name: d.agent.name },
      user,
      session: d.session,
      server: d.server,
      tool: d.tool,
      decision: "require_approval",
      enforced: true,
      policy: { name: d.policy.name, version: d.policy.version, set: d.policy.set, bundle: d.policy.bundle ?? null },
      rule: d.rule,
      reason: typeof approval.reason === "string" ? approval.reason : d.reason,
      approval: Object.fromEntries(Object.entries(approval).filter(([, v]) => v !== undefined)),
    };
  }

  /** The record of how a request ended. */
  private recordFinal(r: ApprovalRequest): Promise<boolean> {
    return this.append(
      this.event(r.details, {
        event: r.state,
        id: r.id,
        by: r.decidedBy,
        via: r.decidedVia,
        reason: r.decisionReason ?? describeRefusal(r),
        at: r.decidedAt === null ? null : iso(r.decidedAt),
        grant: r.grantId,
        holder: r.holder,
      }),
      `request ${r.id} ${r.state}`,
    );
  }

  /** The record of a request decided after its holder was gone: the decision was never acted on. */
  private recordUnrun(r: ApprovalRequest): Promise<boolean> {
    return this.append(
      this.event(r.details, {
        event: "not-run",
        id: r.id,
        state: r.state,
        by: r.decidedBy,
        via: r.decidedVia,
        reason: `${r.state} by ${r.decidedBy ?? "-"} (${r.decidedVia ?? "-"})${r.decisionReason ? `: ${r.decisionReason}` : ""}; ${r.outcome}; the call never ran`,
        at: r.decidedAt === null ? null : iso(r.decidedAt),
        grant: r.grantId,
        holder: r.holder,
        outcome: r.outcome,
      }),
      `request ${r.id} not run`,
    );
  }

  /** `noticed`: revoked on the store by another process, recorded here when this gateway noticed it. */
  private recordRevocation(g: Grant, noticed: boolean): Promise<boolean> {
    const by = g.revokedBy ?? "-";
    return this.append(
      {
        type: "approval",
        agent: { name: g.agent },
        user: g.userId ? { id: g.userId } : null,
        server: g.server,
        tool: g.tool,
        reason: `grant ${g.id} revoked by ${by}${g.revokeReason ? `: ${g.revokeReason}` : ""}`,
        approval: {
          event: "grant-revoked",
          grant: g.id,
          by,
          via: g.revokedVia,
          reason: g.revokeReason,
          at: g.revokedAt === null ? null : iso(g.revokedAt),
          ...(noticed ? { noticed: true } : {}),
        },
      },
      `grant ${g.id} revoked`,
    );
  }

  private async append(event: AuditEvent, what: string): Promise<boolean> {
    try {
      await this.o.audit.append(event);
      return true;
    } catch (err) {
      this.o.log(`approvals: could not record ${what}: ${(err as Error).message}`);
      return false;
    }
  }

  private changed(): void {
    for (const l of this.listeners) {
      try {
        l();
      } catch {
        // a listener's problem is its own
      }
    }
  }
}

/** The agent's words for a request that did not end approved. */
export function describeRefusal(r: ApprovalRequest): string {
  const tool = r.details.tool;
  switch (r.state) {
    case "denied":
      return `approval request ${r.id} for ${tool} was denied${r.decidedBy ? ` by ${r.decidedBy}` : ""}${r.decisionReason ? `: ${r.decisionReason}` : ""}`;
    case "expired":
      return `approval request ${r.id} for ${tool} expired${r.decisionReason ? `: ${r.decisionReason}` : ""}`;
    case "withdrawn":
      return `approval request ${r.id} for ${tool} was withdrawn${r.decisionReason ? `: ${r.decisionReason}` : ""}`;
    default:
      return `approval request ${r.id} for ${tool} is ${r.state}`;
  }
}

function reasonOf(signal: AbortSignal): string | undefined {
  const r = signal.reason as unknown;
  return r instanceof Error ? r.message : typeof r === "string" ? r : undefined;
}

const iso = (ms: number) => new Date(ms).toISOString();

function defaultNode(): string {
  return `${hostname()}:${process.cwd()}`;
}

/** The local operating-system account as an approver (warden approvals on a local store). */
export function osApprover(): Approver {
  const name = userInfo().username;
  return { id: name, groups: [], via: `os:${name}` };
}
