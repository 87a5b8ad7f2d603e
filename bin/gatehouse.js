#!/usr/bin/env node
// Runs the TypeScript sources directly, so the CLI needs no build step on a fresh clone.
import { register } from 'tsx/esm/api';

register();
const { runCli } = await import('../src/cli/index.ts');
await runCli(process.argv);
