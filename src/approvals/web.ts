// The approval page served by `warden serve` at /approvals: pending requests
// with their details, approve and deny (once, or "for" a while), live updates,
// history and grants. One small HTML file, a stylesheet and a script, no
// framework, no third-party code; the Content-Security-Policy allows only
// same-origin scripts and connections. Everything the agent controls
// (arguments, names) is inserted as text, never as HTML.
//
// Sign-in: the page asks for an API key or a JWT and sends it as a bearer
// token (kept in sessionStorage for the tab). Live updates come over an SSE
// stream read with fetch, so the token travels in a header, not in the URL.

export const PAGE_HTML = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="color-scheme" content="light dark">
<title>Warden approvals</title>
<link rel="stylesheet" href="/approvals/app.css">
<script src="/approvals/app.js" defer></script>
</head>
<body>
<header>
  <h1>Warden approvals</h1>
  <div id="who" aria-live="polite"></div>
</header>
<form id="signin" hidden>
  <label for="token">API key or token</label>
  <input id="token" name="token" type="password" autocomplete="current-password" required placeholder="wk_… or a JWT">
  <button type="submit">Sign in</button>
  <p class="hint">Your credential stays in this tab (sessionStorage) and is sent only to this gateway.</p>
  <p id="signin-error" class="error" role="alert"></p>
</form>
<main id="app" hidden>
  <nav role="tablist">
    <button role="tab" data-tab="pending" aria-selected="true">Pending <span id="pending-count" class="count">0</span></button>
    <button role="tab" data-tab="history" aria-selected="false">History</button>
    <button role="tab" data-tab="grants" aria-selected="false">Grants</button>
  </nav>
  <p id="status" class="status" aria-live="polite"></p>
  <section id="pending" data-panel="pending"></section>
  <section id="history" data-panel="history" hidden></section>
  <section id="grants" data-panel="grants" hidden></section>
</main>
</body>
</html>
`;

export const PAGE_CSS = `
:root { --bg: #f6f7f9; --card: #fff; --fg: #16181d; --muted: #5b6270; --line: #d9dde5; --ok: #137333; --no: #b3261e; --warn: #9a6700; --accent: #1f4fd1; }
@media (prefers-color-scheme: dark) { :root { --bg: #111318; --card: #1b1e25; --fg: #e8eaef; --muted: #9aa1ad; --line: #2c313b; --ok: #4cc06f; --no: #ff7b72; --warn: #e3b341; --accent: #7aa2ff; } }
* { box-sizing: border-box; }
[hidden] { display: none !important; }
body { margin: 0; font: 16px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; background: var(--bg); color: var(--fg); }
header { display: flex; flex-wrap: wrap; gap: .5rem 1rem; align-items: baseline; justify-content: space-between; padding: .9rem 1rem; border-bottom: 1px solid var(--line); background: var(--card); position: sticky; top: 0; z-index: 1; }
h1 { font-size: 1.15rem; margin: 0; }
#who { color: var(--muted); font-size: .9rem; }
#who button { margin-left: .5rem; }
main, form#signin { max-width: 56rem; margin: 0 auto; padding: 1rem; }
form#signin { display: grid; gap: .6rem; }
input, select, button, textarea { font: inherit; }
input[type=password], input[type=text], select { width: 100%; padding: .6rem .7rem; border: 1px solid var(--line); border-radius: .5rem; background: var(--card); color: var(--fg); }
button { cursor: pointer; border: 1px solid var(--line); border-radius: .5rem; padding: .55rem .9rem; background: var(--card); color: var(--fg); min-height: 2.75rem; }
button.approve { background: var(--ok); border-color: var(--ok); color: #fff; font-weight: 600; }
button.deny { background: var(--no); border-color: var(--no); color: #fff; font-weight: 600; }
button:disabled { opacity: .5; cursor: default; }
nav { display: flex; gap: .4rem; margin-bottom: .8rem; overflow-x: auto; }
nav button[aria-selected=true] { border-color: var(--accent); color: var(--accent); font-weight: 600; }
.count { display: inline-block; min-width: 1.4em; padding: 0 .35em; border-radius: 1em; background: var(--accent); color: #fff; font-size: .8rem; text-align: center; }
.card { background: var(--card); border: 1px solid var(--line); border-radius: .75rem; padding: .9rem 1rem; margin-bottom: .8rem; }
.card.focus { outline: 3px solid var(--accent); }
.card h2 { font-size: 1.05rem; margin: 0 0 .3rem; word-break: break-word; }
.meta { color: var(--muted); font-size: .9rem; margin: .15rem 0; word-break: break-word; }
.reason { margin: .4rem 0; }
pre { margin: .5rem 0; padding: .6rem; background: var(--bg); border: 1px solid var(--line); border-radius: .5rem; overflow-x: auto; font-size: .85rem; max-height: 16rem; white-space: pre-wrap; word-break: break-word; }
.actions { display: grid; grid-template-columns: 1fr 1fr; gap: .5rem; margin-top: .6rem; }
.actions .wide { grid-column: 1 / -1; }
.expires { font-variant-numeric: tabular-nums; }
.expires.soon { color: var(--warn); font-weight: 600; }
.badge { display: inline-block; padding: .05rem .5rem; border-radius: 1em; font-size: .8rem; font-weight: 600; border: 1px solid currentColor; text-transform: uppercase; letter-spacing: .02em; }
.badge.approved { color: var(--ok); } .badge.denied, .badge.expired, .badge.withdrawn { color: var(--no); } .badge.pending { color: var(--warn); }
.empty { color: var(--muted); text-align: center; padding: 2rem 0; }
.error { color: var(--no); }
.hint, .status { color: var(--muted); font-size: .85rem; }
@media (min-width: 40rem) { .actions { grid-template-columns: 2fr 1fr 1fr 1fr; } .actions .wide { grid-column: auto; } }
`;

export const PAGE_JS = `"use strict";
(() => {
  const KEY = "warden-approvals-token";
  const $ = (s) => document.querySelector(s);
  let token = sessionStorage.getItem(KEY) || "";
  let tab = "pending";
  let stream = null;
  let data = { pending: [], history: [], grants: [] };
  const focusId = () => decodeURIComponent(location.hash.replace(/^#/, ""));

  function el(tag, attrs, ...kids) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === undefined || v === null || v === false) continue;
      if (k === "class") e.className = v;
      else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
      else e.setAttribute(k, v === true ? "" : String(v));
    }
    for (const k of kids.flat()) if (k !== null && k !== undefined && k !== false) e.append(k instanceof Node ? k : String(k));
    return e;
  }

  async function api(path, init) {
    const headers = Object.assign({ accept: "application/json" }, init && init.body ? { "content-type": "application/json" } : {});
    if (token) headers.authorization = "Bearer " + token;
    const res = await fetch(path, Object.assign({}, init, { headers }));
    const body = await res.json().catch(() => ({}));
    if (res.status === 401) { signOut(body.error || "Please sign in."); throw new Error(body.error || "unauthorized"); }
    if (!res.ok) throw new Error(body.error || ("HTTP " + res.status));
    return body;
  }

  function signOut(message) {
    token = "";
    sessionStorage.removeItem(KEY);
    if (stream) { stream.abort(); stream = null; }
    $("#app").hidden = true;
    $("#signin").hidden = false;
    $("#who").textContent = "";
    $("#signin-error").textContent = message || "";
  }

  async function start() {
    try {
      const me = await api("/api/approvals/whoami");
      $("#signin").hidden = true;
      $("#signin-error").textContent = "";
      $("#app").hidden = false;
      const out = el("button", { type: "button", onclick: () => signOut("") }, "Sign out");
      $("#who").replaceChildren("Signed in as ", el("strong", {}, me.approver ? me.approver.id : me.agent), " (" + me.via + ")", out);
      await refresh();
      listen();
    } catch (e) {
      if (!$("#app").hidden) status("Error: " + e.message);
    }
  }

  function status(text) { $("#status").textContent = text; }

  async function refresh() {
    try {
      const [p, h, g] = await Promise.all([
        api("/api/approvals?state=pending&limit=200"),
        api("/api/approvals?state=decided&limit=100"),
        api("/api/approvals/grants?all=1&limit=100"),
      ]);
      data = { pending: p.requests, history: h.requests, grants: g.grants };
      render();
      status("Updated " + new Date().toLocaleTimeString());
    } catch (e) { status("Could not load: " + e.message); }
  }

  function listen() {
    if (stream) stream.abort();
    const ctrl = new AbortController();
    stream = ctrl;
    (async () => {
      let wait = 1000;
      while (!ctrl.signal.aborted) {
        try {
          const res = await fetch("/api/approvals/events", { headers: { authorization: "Bearer " + token, accept: "text/event-stream" }, signal: ctrl.signal });
          if (res.status === 401) { signOut("Your credential was refused."); return; }
          if (!res.ok || !res.body) throw new Error("HTTP " + res.status);
          wait = 1000;
          document.body.dataset.live = "on";
          const reader = res.body.getReader();
          const dec = new TextDecoder();
          let buf = "";
          for (;;) {
            const { value, done } = await reader.read();
            if (done) break;
            buf += dec.decode(value, { stream: true });
            let at;
            while ((at = buf.indexOf("\\n\\n")) >= 0) {
              const ev = buf.slice(0, at); buf = buf.slice(at + 2);
              if (/^event: changed/m.test(ev)) refresh();
            }
          }
        } catch (e) { if (ctrl.signal.aborted) return; }
        document.body.dataset.live = "off";
        await new Promise((r) => setTimeout(r, wait));
        wait = Math.min(wait * 2, 15000);
        refresh();
      }
    })();
  }

  const who = (r) => r.agent.name + (r.user && r.user.id ? " for " + r.user.id : "");
  const when = (iso) => iso ? new Date(iso).toLocaleString() : "";
  function left(iso) {
    const s = Math.max(0, Math.round((Date.parse(iso) - Date.now()) / 1000));
    return s >= 3600 ? Math.floor(s / 3600) + "h " + Math.floor((s % 3600) / 60) + "m" : s >= 60 ? Math.floor(s / 60) + "m " + (s % 60) + "s" : s + "s";
  }
  const args = (r) => r.arguments === null ? "(arguments not stored; digest " + (r.argumentsDigest || "none") + ")" : JSON.stringify(r.arguments, null, 2);
  const approversText = (r) => r.requirement.approvers.map((a) => [a.users.length ? "users " + a.users.join(", ") : "", a.groups.length ? "groups " + a.groups.join(", ") : ""].filter(Boolean).join(" or ") || "any approver").join("; and ");

  function pendingCard(r) {
    const reason = el("input", { type: "text", placeholder: "Reason (optional)", "aria-label": "Reason", maxlength: 500 });
    const forSel = el("select", { "aria-label": "Approve for" },
      el("option", { value: "" }, "Approve once"), el("option", { value: "15m" }, "Approve for 15 minutes"),
      el("option", { value: "1h" }, "Approve for 1 hour"), el("option", { value: "8h" }, "Approve for 8 hours"), el("option", { value: "1d" }, "Approve for 1 day"));
    const msg = el("p", { class: "error", role: "alert" });
    const act = async (action, btn) => {
      for (const b of card.querySelectorAll("button")) b.disabled = true;
      msg.textContent = "";
      try {
        const body = { reason: reason.value || undefined };
        if (action === "approve" && forSel.value) body.for = forSel.value;
        await api("/api/approvals/" + encodeURIComponent(r.id) + "/" + action, { method: "POST", body: JSON.stringify(body) });
        status((action === "approve" ? "Approved " : "Denied ") + r.id);
        await refresh();
      } catch (e) {
        msg.textContent = e.message;
        for (const b of card.querySelectorAll("button")) b.disabled = false;
      }
    };
    const card = el("article", { class: "card" + (focusId() === r.id ? " focus" : ""), id: r.id, "data-id": r.id, "data-state": r.state },
      el("h2", {}, r.tool, el("span", { class: "meta" }, " on " + r.server)),
      el("p", { class: "meta" }, "Agent ", el("strong", {}, who(r)), r.user && r.user.groups && r.user.groups.length ? " (groups " + r.user.groups.join(", ") + ")" : ""),
      el("p", { class: "reason" }, r.reason),
      el("p", { class: "meta" }, "Policy " + (r.policy.name || "(default)") + (r.rule ? ", rule " + (r.rule.name || "#" + r.rule.index) : "") + " · approvers: " + approversText(r) + (r.requirement.allowSelfApproval ? " (self-approval allowed)" : "")),
      el("pre", {}, args(r)),
      el("p", { class: "meta" }, "Request " + r.id + " · asked " + when(r.createdAt) + " · ", el("span", { class: "expires", "data-expires": r.expiresAt }, "expires in " + left(r.expiresAt))),
      el("div", { class: "actions" },
        el("div", { class: "wide" }, reason),
        el("div", { class: "wide" }, forSel),
        el("button", { type: "button", class: "approve", "data-action": "approve", "data-id": r.id, onclick: (e) => act("approve", e.target) }, "Approve"),
        el("button", { type: "button", class: "deny", "data-action": "deny", "data-id": r.id, onclick: (e) => act("deny", e.target) }, "Deny")),
      msg);
    return card;
  }

  function historyCard(r) {
    return el("article", { class: "card" + (focusId() === r.id ? " focus" : ""), id: r.id, "data-id": r.id, "data-state": r.state },
      el("h2", {}, el("span", { class: "badge " + r.state }, r.state), " ", r.tool, el("span", { class: "meta" }, " on " + r.server)),
      el("p", { class: "meta" }, "Agent " + who(r) + " · asked " + when(r.createdAt)),
      el("p", { class: "meta" }, (r.decidedBy ? "By " + r.decidedBy + " (" + r.decidedVia + ") · " : "") + when(r.decidedAt) + (r.decisionReason ? " · " + r.decisionReason : "")),
      r.grantId ? el("p", { class: "meta" }, "Created grant " + r.grantId) : null,
      r.outcome ? el("p", { class: "meta" }, "Call outcome: " + r.outcome) : null,
      el("p", { class: "meta" }, "Request " + r.id));
  }

  function grantCard(g) {
    const active = !g.revokedAt && Date.parse(g.expiresAt) > Date.now();
    const msg = el("p", { class: "error", role: "alert" });
    const revoke = active ? el("button", { type: "button", class: "deny", "data-action": "revoke", "data-id": g.id, onclick: async (e) => {
      e.target.disabled = true;
      try { await api("/api/approvals/grants/" + encodeURIComponent(g.id) + "/revoke", { method: "POST", body: "{}" }); await refresh(); }
      catch (err) { msg.textContent = err.message; e.target.disabled = false; }
    } }, "Revoke") : null;
    return el("article", { class: "card", "data-id": g.id },
      el("h2", {}, el("span", { class: "badge " + (active ? "approved" : "expired") }, active ? "active" : g.revokedAt ? "revoked" : "expired"), " ", g.tool, el("span", { class: "meta" }, " on " + g.server)),
      el("p", { class: "meta" }, "For " + g.agent + (g.userId ? " / " + g.userId : "") + " · by " + g.createdBy + " · until " + when(g.expiresAt) + " · used " + g.uses + "×"),
      g.revokedAt ? el("p", { class: "meta" }, "Revoked by " + g.revokedBy + " " + when(g.revokedAt)) : null,
      el("p", { class: "meta" }, "Grant " + g.id + (g.requestId ? " from request " + g.requestId : "")),
      revoke ? el("div", { class: "actions" }, revoke) : null, msg);
  }

  function render() {
    $("#pending-count").textContent = String(data.pending.length);
    // Keep what an approver is typing: only rebuild cards that changed.
    const pending = $("#pending");
    const keep = new Map([...pending.querySelectorAll("article.card")].map((c) => [c.dataset.id, c]));
    const cards = data.pending.map((r) => keep.get(r.id) || pendingCard(r));
    pending.replaceChildren(...(cards.length ? cards : [el("p", { class: "empty" }, "No requests are waiting.")]));
    $("#history").replaceChildren(...(data.history.length ? data.history.map(historyCard) : [el("p", { class: "empty" }, "Nothing decided yet.")]));
    $("#grants").replaceChildren(...(data.grants.length ? data.grants.map(grantCard) : [el("p", { class: "empty" }, "No grants.")]));
    const f = focusId();
    if (f && document.getElementById(f) && !render.scrolled) { render.scrolled = true; document.getElementById(f).scrollIntoView({ block: "center" }); }
  }

  function show(name) {
    tab = name;
    for (const b of document.querySelectorAll("nav button")) b.setAttribute("aria-selected", String(b.dataset.tab === tab));
    for (const s of document.querySelectorAll("[data-panel]")) s.hidden = s.dataset.panel !== tab;
  }

  setInterval(() => {
    for (const e of document.querySelectorAll(".expires[data-expires]")) {
      e.textContent = "expires in " + left(e.dataset.expires);
      e.classList.toggle("soon", Date.parse(e.dataset.expires) - Date.now() < 60000);
    }
  }, 1000);
  setInterval(() => { if (token && $("#app").hidden === false) refresh(); }, 30000);

  document.addEventListener("DOMContentLoaded", () => {
    for (const b of document.querySelectorAll("nav button")) b.addEventListener("click", () => show(b.dataset.tab));
    $("#signin").addEventListener("submit", (e) => {
      e.preventDefault();
      token = $("#token").value.trim();
      sessionStorage.setItem(KEY, token);
      $("#token").value = "";
      start();
    });
    if (token) start(); else {
      // Without a credential the gateway may still accept the caller (a loopback anonymous identity).
      start().then(() => {
        if ($("#app").hidden) { $("#signin").hidden = false; $("#signin-error").textContent = ""; }
      });
    }
  });
})();
`;
