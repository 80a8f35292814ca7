// `warden run`'s audit log settings (the stdio counterpart of warden.yaml's
// audit: section): flags and WARDEN_* variables, and the usage errors that stop
// it before anything starts. The settings' effect on a real log is tested end to
// end in test/mcp/gateway-stdio.test.ts.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { UsageError } from "../../src/cli/io.js";
import { parseAuditSettings, RUN_HELP } from "../../src/cli/run-command.js";
import { runWarden } from "../helpers/cli.js";

/** `warden run` with everything it needs but the audit flags; nothing is started when they are wrong. */
const run = (...flags: string[]) =>
  runWarden([
    "run",
    "--policy",
    "/nonexistent/policy.yaml",
    "--agent",
    "a",
    "--server",
    "s",
    "--data-dir",
    "/nonexistent/data",
    ...flags,
    "--",
    "true",
  ]);

describe("warden run: audit log flags", () => {
  for (const [name, flags, message] of [
    [
      "mask without a pointer",
      ["--audit-arguments", "mask"],
      /--audit-arguments mask needs the values to mask: --audit-mask POINTER \(repeatable\)/,
    ],
    [
      "a pointer without the leading /",
      ["--audit-arguments", "mask", "--audit-mask", "token"],
      /must start with \/, as in \/token/,
    ],
    [
      "a bad ~ escape",
      ["--audit-arguments", "mask", "--audit-mask", "/a~2b"],
      /"\/a~2b" is not a JSON Pointer: ~ must be written ~0/,
    ],
    [
      "the whole-document pointer",
      ["--audit-arguments", "mask", "--audit-mask", ""],
      /whole arguments: to store none of them, use the digest mode/,
    ],
    [
      "a pointer with another mode",
      ["--audit-arguments", "full", "--audit-mask", "/token"],
      /--audit-mask applies to --audit-arguments mask, not full/,
    ],
    [
      "a pointer without a mode",
      ["--audit-mask", "/token"],
      /--audit-mask applies to --audit-arguments mask, not digest/,
    ],
    ["an unknown mode", ["--audit-arguments", "hash"], /--audit-arguments must be full, digest, mask, not "hash"/],
    [
      "an origin with a space",
      ["--audit-origin", "my log"],
      /--audit-origin "my log" cannot name a log: .*without spaces or \+/,
    ],
    ["an origin with +", ["--audit-origin", "a+b"], /cannot name a log/],
    [
      "no records",
      ["--checkpoint-every-records", "0"],
      /--checkpoint-every-records must be a whole number from 1 to 1000000000, not "0"/,
    ],
    [
      "records not a number",
      ["--checkpoint-every-records", "10k"],
      /--checkpoint-every-records must be a whole number/,
    ],
    [
      "seconds over a day",
      ["--checkpoint-every-seconds", "86401"],
      /--checkpoint-every-seconds must be a whole number from 0 to 86400/,
    ],
    ["negative seconds", ["--checkpoint-every-seconds=-1"], /--checkpoint-every-seconds must be a whole number/],
  ] as const) {
    it(`${name} is a usage error (exit 2) that says what to do`, async () => {
      const r = await run(...flags);
      assert.equal(r.code, 2, r.err);
      assert.match(r.err, message);
    });
  }

  it("--help documents them, with their environment variables", async () => {
    const r = await runWarden(["run", "--help"]);
    assert.equal(r.code, 0);
    for (const s of [
      "--audit-arguments digest|full|mask",
      "WARDEN_AUDIT_ARGUMENTS",
      "--audit-mask POINTER",
      "WARDEN_AUDIT_MASK",
      "--audit-origin NAME",
      "WARDEN_AUDIT_ORIGIN",
      "--checkpoint-every-records N",
      "WARDEN_CHECKPOINT_EVERY_RECORDS",
      "--checkpoint-every-seconds S",
      "WARDEN_CHECKPOINT_EVERY_SECONDS",
      "SIGTERM, SIGINT or SIGHUP",
    ])
      assert.ok(RUN_HELP.includes(s) && r.out.includes(s), `help mentions ${s}`);
  });
});

describe("parseAuditSettings", () => {
  it("defaults to digest, the log's own origin and checkpoint interval", () => {
    assert.deepEqual(parseAuditSettings({}, {}), { arguments: { mode: "digest" } });
  });

  it("reads flags, repeatable masks included", () => {
    assert.deepEqual(
      parseAuditSettings(
        {
          "audit-arguments": "mask",
          "audit-mask": ["/token", "/headers/authorization", "/items/*/password"],
          "audit-origin": "example.com/warden/files",
          "checkpoint-every-records": "50",
          "checkpoint-every-seconds": "0",
        },
        {},
      ),
      {
        arguments: { mode: "mask", mask: ["/token", "/headers/authorization", "/items/*/password"] },
        origin: "example.com/warden/files",
        checkpointEvery: { records: 50, seconds: 0 },
      },
    );
  });

  it("reads WARDEN_* variables (masks separated by commas); a flag wins over its variable", () => {
    const env = {
      WARDEN_AUDIT_ARGUMENTS: "mask",
      WARDEN_AUDIT_MASK: "/token, /a~1b",
      WARDEN_AUDIT_ORIGIN: "example.com/env",
      WARDEN_CHECKPOINT_EVERY_SECONDS: "30",
    };
    assert.deepEqual(parseAuditSettings({}, env), {
      arguments: { mode: "mask", mask: ["/token", "/a~1b"] },
      origin: "example.com/env",
      checkpointEvery: { seconds: 30 },
    });
    assert.deepEqual(
      parseAuditSettings({ "audit-arguments": "digest", "audit-origin": "o" }, { ...env, WARDEN_AUDIT_MASK: "" }),
      {
        arguments: { mode: "digest" },
        origin: "o",
        checkpointEvery: { seconds: 30 },
      },
    );
    assert.throws(
      () => parseAuditSettings({}, { WARDEN_AUDIT_ARGUMENTS: "mask", WARDEN_AUDIT_MASK: "token" }),
      (e: unknown) => e instanceof UsageError && /must start with \//.test(e.message),
    );
  });
});
