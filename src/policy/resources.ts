// The resource kinds Warden reads, as TypeScript types and as the schemas the
// loader checks them against. DESIGN.md §3 is the source of the shapes; the
// README's policy reference documents every field listed here.
import { durationCheck } from "./duration.js";
import type { Field, ObjectSchema, Schema, StringSchema } from "./schema.js";

export const API_VERSION = "warden/v1";
export const ACTIONS = ["allow", "deny", "require_approval"] as const;
export type Action = (typeof ACTIONS)[number];
export const MODES = ["enforce", "audit"] as const;
export type Mode = (typeof MODES)[number];
export const RATE_LIMIT_KEYS = ["agent", "user", "session", "global"] as const;
export type RateLimitKey = (typeof RATE_LIMIT_KEYS)[number];
export const APPROVAL_TYPES = ["human-in-the-loop", "elicitation"] as const;

export interface Metadata {
  name: string;
  description?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
}

export interface LabelSelector {
  matchLabels?: Record<string, string>;
  matchExpressions?: { key: string; operator: "In" | "NotIn" | "Exists" | "DoesNotExist"; values?: string[] }[];
}

/** Who and where a policy applies to; shared by ToolPolicy and GuardrailPolicy. */
export interface Selectors {
  agent?: string;
  agents?: string[];
  agentSelector?: LabelSelector;
  mcpServer?: string;
  mcpServers?: string[];
}

export interface ApprovalSpec {
  type?: (typeof APPROVAL_TYPES)[number];
  timeout?: string;
  approvers?: { users?: string[]; groups?: string[] };
  allowSelfApproval?: boolean;
}

export interface RateLimitSpec {
  requests: number;
  per: string;
  key?: RateLimitKey;
}

export interface ToolRule {
  name?: string;
  tools: string[];
  users?: string[];
  groups?: string[];
  action: Action;
  conditions?: { cel: string }[];
  approval?: ApprovalSpec;
  rateLimit?: RateLimitSpec;
  arguments?: Record<string, unknown> | boolean;
  message?: string;
}

export interface ToolPolicySpec extends Selectors {
  mode?: Mode;
  defaultAction?: Action;
  rules?: ToolRule[];
}

export interface GuardrailRule {
  name?: string;
  detect?: string[];
  patterns?: { name: string; regex: string }[];
  on?: string[];
  tools?: string[];
  action: "block" | "redact" | "alert";
  message?: string;
}

export interface GuardrailPolicySpec extends Selectors {
  mode?: Mode;
  rules: GuardrailRule[];
}

export interface ArtifactRule {
  name?: string;
  names?: string[];
  action: "allow" | "deny";
  require?: {
    digests?: string[];
    signatures?: { keys: string[]; minimum?: number };
    attestations?: { predicateType: string }[];
  };
  conditions?: { cel: string }[];
  message?: string;
}

export interface ArtifactPolicySpec {
  artifacts: string[];
  mode?: Mode;
  defaultAction?: "allow" | "deny";
  rules?: ArtifactRule[];
}

export interface TestCase {
  name: string;
  input: unknown;
  expect: {
    decision: Action;
    enforced?: boolean;
    policy?: string | null;
    rule?: number | string | null;
    reason?: string;
  };
}

export interface PolicyTestSpec {
  cases: TestCase[];
}

export interface Resource<K extends string, S> {
  apiVersion?: string;
  kind: K;
  metadata: Metadata;
  spec: S;
}

export type ToolPolicy = Resource<"ToolPolicy", ToolPolicySpec>;
export type GuardrailPolicy = Resource<"GuardrailPolicy", GuardrailPolicySpec>;
export type ArtifactPolicy = Resource<"ArtifactPolicy", ArtifactPolicySpec>;
export type PolicyTest = Resource<"PolicyTest", PolicyTestSpec>;
export type AnyResource = ToolPolicy | GuardrailPolicy | ArtifactPolicy | PolicyTest;
export type Kind = AnyResource["kind"];

// ---- schemas ----

const NAME_HELP = "use letters, digits and . _ - (starting with a letter or digit), at most 253 characters";
const resourceName: StringSchema = {
  type: "string",
  pattern: /^[A-Za-z0-9][A-Za-z0-9._-]{0,252}$/,
  patternHelp: NAME_HELP,
};
/** Agent and server names; "*" alone means any. */
const entityName: StringSchema = {
  type: "string",
  pattern: /^(\*|[A-Za-z0-9][A-Za-z0-9._:@/-]{0,252})$/,
  patternHelp: 'use letters, digits and . _ - : @ / (or "*" for any)',
};
/** Tool names as MCP servers publish them, plus "*" wildcards. */
const toolPattern: StringSchema = {
  type: "string",
  pattern: /^[A-Za-z0-9_*.:@/-]{1,128}$/,
  patternHelp: 'a tool name uses letters, digits and _ - . : @ /, and "*" as a wildcard, at most 128 characters',
};
const subject: StringSchema = {
  type: "string",
  pattern: /^[^\s\\\p{Cc}](?:[^\\\p{Cc}]{0,254}[^\s\\\p{Cc}])?$/u,
  patternHelp: "a user or group id without control characters, backslashes or surrounding spaces",
};
const shortText = (maxLength: number): StringSchema => ({ type: "string", maxLength });
const stringList = (items: StringSchema, minItems = 1): Schema => ({ type: "list", items, minItems, maxItems: 10_000 });
const labelMap: Schema = {
  type: "map",
  keys: { type: "string", pattern: /^[A-Za-z0-9][A-Za-z0-9._/-]{0,252}$/, patternHelp: NAME_HELP },
  values: shortText(1024),
};
const obj = (what: string, fields: Record<string, Field>): ObjectSchema => ({ type: "object", what, fields });
const opt = (schema: Schema): Field => ({ schema });
const req = (schema: Schema): Field => ({ schema, required: true });

const metadataSchema = obj("metadata", {
  name: req(resourceName),
  description: opt(shortText(4096)),
  labels: opt(labelMap),
  annotations: opt({ type: "map", values: shortText(65_536) }),
});

const labelSelectorSchema = obj("agentSelector", {
  matchLabels: opt(labelMap),
  matchExpressions: opt({
    type: "list",
    maxItems: 64,
    items: obj("label selector expression", {
      key: req(shortText(253)),
      operator: req({ type: "string", enum: ["In", "NotIn", "Exists", "DoesNotExist"] }),
      values: opt(stringList(shortText(1024), 0)),
    }),
  }),
});

const selectorFields: Record<string, Field> = {
  agent: opt(entityName),
  agents: opt(stringList(entityName)),
  agentSelector: opt(labelSelectorSchema),
  mcpServer: opt(entityName),
  mcpServers: opt(stringList(entityName)),
};

export const CEL_SOURCE: StringSchema = { type: "string" };
const conditionsSchema: Schema = {
  type: "list",
  minItems: 1,
  maxItems: 64,
  items: obj("condition", { cel: req(CEL_SOURCE) }),
};

const approvalSchema = obj("approval", {
  type: opt({ type: "string", enum: APPROVAL_TYPES }),
  timeout: opt({ type: "string", check: durationCheck(1000, 7 * 86_400_000) }),
  approvers: opt(
    obj("approvers (write approvers: {users: [...], groups: [...]})", {
      users: opt(stringList(subject)),
      groups: opt(stringList(subject)),
    }),
  ),
  allowSelfApproval: opt({ type: "boolean" }),
});

const rateLimitSchema = obj("rateLimit", {
  requests: req({ type: "integer", min: 1, max: 1_000_000_000 }),
  per: req({ type: "string", check: durationCheck(1000, 30 * 86_400_000) }),
  key: opt({ type: "string", enum: RATE_LIMIT_KEYS }),
});

const toolRuleSchema = obj("rule", {
  name: opt(resourceName),
  tools: req(stringList(toolPattern)),
  users: opt(stringList(subject)),
  groups: opt(stringList(subject)),
  action: req({ type: "string", enum: ACTIONS }),
  conditions: opt(conditionsSchema),
  approval: opt(approvalSchema),
  rateLimit: opt(rateLimitSchema),
  arguments: opt({ type: "json" }),
  message: opt(shortText(2048)),
});

const toolPolicySpec = obj("ToolPolicy spec", {
  ...selectorFields,
  mode: opt({ type: "string", enum: MODES }),
  defaultAction: opt({ type: "string", enum: ACTIONS }),
  rules: opt({ type: "list", items: toolRuleSchema, maxItems: 10_000 }),
});

export const GUARDRAIL_DETECTORS = [
  "email",
  "phone",
  "credit_card",
  "iban",
  "national_id",
  "aws_access_key",
  "cloud_credentials",
  "github_token",
  "slack_token",
  "jwt",
  "private_key",
  "high_entropy",
  "invisible_unicode",
  "unicode_tags",
  "prompt_injection",
  "exfiltration_link",
] as const;
export const GUARDRAIL_SCOPES = ["tool_arguments", "tool_results", "llm_requests", "llm_responses"] as const;

const guardrailPolicySpec = obj("GuardrailPolicy spec", {
  ...selectorFields,
  mode: opt({ type: "string", enum: MODES }),
  rules: req({
    type: "list",
    minItems: 1,
    maxItems: 1000,
    items: obj("guardrail rule", {
      name: opt(resourceName),
      detect: opt(stringList({ type: "string", enum: GUARDRAIL_DETECTORS })),
      patterns: opt({
        type: "list",
        minItems: 1,
        maxItems: 256,
        items: obj("pattern", { name: req(resourceName), regex: req(shortText(2048)) }),
      }),
      on: opt(stringList({ type: "string", enum: GUARDRAIL_SCOPES })),
      tools: opt(stringList(toolPattern)),
      action: req({ type: "string", enum: ["block", "redact", "alert"] }),
      message: opt(shortText(2048)),
    }),
  }),
});

export const ARTIFACT_KINDS = ["mcp_server", "model", "policy_bundle"] as const;

const artifactPolicySpec = obj("ArtifactPolicy spec", {
  artifacts: req(stringList({ type: "string", enum: ARTIFACT_KINDS })),
  mode: opt({ type: "string", enum: MODES }),
  defaultAction: opt({ type: "string", enum: ["allow", "deny"] }),
  rules: opt({
    type: "list",
    maxItems: 1000,
    items: obj("artifact rule", {
      name: opt(resourceName),
      names: opt(stringList(toolPattern)),
      action: req({ type: "string", enum: ["allow", "deny"] }),
      require: opt(
        obj("require", {
          digests: opt(
            stringList({
              type: "string",
              pattern: /^sha256:[0-9a-f]{64}$/,
              patternHelp: "write a digest as sha256: followed by 64 lowercase hex digits",
            }),
          ),
          signatures: opt(
            obj("signatures", {
              keys: req(stringList(shortText(4096))),
              minimum: opt({ type: "integer", min: 1, max: 100 }),
            }),
          ),
          attestations: opt({
            type: "list",
            minItems: 1,
            maxItems: 64,
            items: obj("attestation requirement", { predicateType: req(shortText(1024)) }),
          }),
        }),
      ),
      conditions: opt(conditionsSchema),
      message: opt(shortText(2048)),
    }),
  }),
});

const policyTestSpec = obj("PolicyTest spec", {
  cases: req({
    type: "list",
    minItems: 1,
    maxItems: 100_000,
    items: obj("test case", {
      name: req(shortText(1024)),
      input: req({ type: "json" }),
      expect: req(
        obj("expect", {
          decision: req({ type: "string", enum: ACTIONS }),
          enforced: opt({ type: "boolean" }),
          policy: opt({ type: "json" }),
          rule: opt({ type: "json" }),
          reason: opt(shortText(4096)),
        }),
      ),
    }),
  }),
});

export const KIND_SPECS: Record<Kind, ObjectSchema> = {
  ToolPolicy: toolPolicySpec,
  GuardrailPolicy: guardrailPolicySpec,
  ArtifactPolicy: artifactPolicySpec,
  PolicyTest: policyTestSpec,
};

export function documentSchema(kind: Kind): ObjectSchema {
  return obj(`${kind} document`, {
    apiVersion: opt({ type: "string", enum: [API_VERSION] }),
    kind: req({ type: "string", enum: [kind] }),
    metadata: req(metadataSchema),
    spec: req(KIND_SPECS[kind]),
  });
}
