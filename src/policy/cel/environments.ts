// The variables each kind of policy condition can see (DESIGN.md §3).
import { T, type Type } from "./types.js";

const stringMap = T.map(T.string, T.string);

/** ToolPolicy conditions: the call, who makes it, and the session it belongs to. */
export const TOOL_POLICY_VARIABLES: Readonly<Record<string, Type>> = Object.freeze({
  request: T.object("request", {
    server: T.string,
    tool: T.string,
    method: T.string,
    arguments: T.map(T.string, T.dyn),
  }),
  agent: T.object("agent", {
    name: T.string,
    labels: stringMap,
    model: T.string,
    vendor: T.string,
  }),
  user: T.object("user", {
    id: T.string,
    groups: T.list(T.string),
    claims: T.map(T.string, T.dyn),
  }),
  session: T.object("session", {
    id: T.string,
    calls: T.map(T.string, T.int),
    labels: stringMap,
  }),
  now: T.timestamp,
});

/** ArtifactPolicy conditions: the verified metadata of what is about to load. */
export const ARTIFACT_POLICY_VARIABLES: Readonly<Record<string, Type>> = Object.freeze({
  artifact: T.object("artifact", {
    kind: T.string,
    name: T.string,
    reference: T.string,
    digest: T.string,
    signatures: T.list(T.map(T.string, T.dyn)),
    attestations: T.list(T.map(T.string, T.dyn)),
    provenance: T.map(T.string, T.dyn),
    annotations: stringMap,
  }),
  now: T.timestamp,
});
