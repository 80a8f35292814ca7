// The `warden` command. Each command group lives in its own module; this file
// only dispatches and turns errors into exit codes.
import { approvalsCommand } from "./approvals-commands.js";
import { auditCommand } from "./audit-commands.js";
import { bundleCommand } from "./bundle-commands.js";
import { type CliIO, EXIT, packageVersion, processIO, UsageError } from "./io.js";
import { keysCommand } from "./keys-commands.js";
import { policyCommand } from "./policy-commands.js";
import { runCommand } from "./run-command.js";
import { serveCommand } from "./serve-command.js";
import { wrapCommand } from "./wrap-command.js";

const HELP = `Usage: warden <command> [options]

Warden governs what AI agents may do with their tools, outside the model.

Commands:
  run --policy PATH --agent NAME --server NAME -- COMMAND ARGS...
                                   govern a stdio MCP server (drop-in for MCP clients)
  serve --config warden.yaml       the gateway as an HTTP service (Streamable HTTP and SSE)
  wrap CONFIG_FILE --policy PATH   put every stdio server of a client config under warden run (--undo)
  policy validate PATH...          check policy files and directories
  policy eval     --policy PATH --input FILE|-
  policy explain  --policy PATH --input FILE|-
  policy test     PATH...          run PolicyTest suites
  audit verify    [--key PUB]...   check the audit log (records, tree, signed checkpoints)
  audit prove | check-proof | checkpoint | export | query | tail
  keys generate   --out DIR        create an Ed25519 (or --type ecdsa-p256) key pair
  approvals list | show | approve | deny | grants | revoke
                                   decide calls held for approval (local store or --url)
  bundle build | inspect | push | pull | sign | verify
                                   signed policy bundles in any OCI registry

Run "warden run --help", "warden policy --help", "warden audit --help" or "warden keys --help" for details.
Options: --help, --version.
`;

export async function main(argv: string[], io: CliIO = processIO): Promise<number> {
  const [group, ...rest] = argv;
  try {
    switch (group) {
      case "policy":
        return await policyCommand(rest, io);
      case "audit":
        return await auditCommand(rest, io);
      case "keys":
        return await keysCommand(rest, io);
      case "approvals":
        return await approvalsCommand(rest, io);
      case "bundle":
        return await bundleCommand(rest, io);
      case "run":
        return await runCommand(rest, io, packageVersion());
      case "serve":
        return await serveCommand(rest, io, packageVersion());
      case "wrap":
        return await wrapCommand(rest, io);
      case "--version":
      case "-v":
        io.stdout(`warden ${packageVersion()}\n`);
        return EXIT.ok;
      case "--help":
      case "-h":
      case "help":
        io.stdout(HELP);
        return EXIT.ok;
      case undefined:
        io.stderr(HELP);
        return EXIT.unusable;
      default:
        throw new UsageError(`unknown command "${group}"; run warden --help`);
    }
  } catch (err) {
    if (err instanceof UsageError) {
      io.stderr(`warden: ${err.message}\n`);
      return EXIT.unusable;
    }
    io.stderr(`warden: internal error: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    return EXIT.unusable;
  }
}
