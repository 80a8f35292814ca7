#!/usr/bin/env node
// The executable behind `warden`; all logic is in warden.ts so tests can call it in-process.
import { main } from "./warden.js";

process.exitCode = await main(process.argv.slice(2));
