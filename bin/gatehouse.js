#!/usr/bin/env node
// Emits dist/ from the sources first (well under a second), so the CLI runs on a fresh clone with
// no separate build step and long-running commands (serve, worker) run as plain JavaScript.
import { execFileSync } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
// Only `serve` needs the admin console built: other commands must not swap the files a running
// server has routes for.
const serving = process.argv[2] === 'serve' || process.argv.length <= 2;
execFileSync(process.execPath, [join(root, 'scripts/build.mjs'), '--quiet', ...(serving ? [] : ['--no-console'])], {
  stdio: 'inherit',
});
const { runCli } = await import(join(root, 'dist/cli/index.js'));
await runCli(process.argv);
