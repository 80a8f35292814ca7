// Who is calling. Every governed session has an identity: the agent (and its
// labels), and the human user on whose behalf it acts, if known. Over stdio it
// comes from flags and environment variables; over HTTP from an API key or a
// JWT verified offline (see http-auth.ts).

export interface Identity {
  agent: { name: string; labels?: Record<string, string>; model?: string; vendor?: string };
  user?: { id?: string; groups?: string[]; claims?: Record<string, unknown> };
  /** How the identity was established, for the audit log (e.g. "flags", "api-key:ci-bot", "jwt:https://idp"). */
  via: string;
}

/** The outcome of authenticating an HTTP request. */
export type AuthResult = { ok: true; identity: Identity } | { ok: false; status: 401 | 403; reason: string };

/** Authenticates requests from their headers. Implementations must never throw. */
export interface Authenticator {
  authenticate(headers: Readonly<Record<string, string | string[] | undefined>>): AuthResult;
}
