#!/usr/bin/env node
// Emits dist/ from src/ (TypeScript → ESM JavaScript, one file per module, no bundling) in well
// under a second, so `npm start` can run plain JavaScript: no loader thread, about half the memory
// of running the sources through a TypeScript loader. Type checking is `npm run typecheck`.
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const src = join(root, 'src');
const out = join(root, 'dist');

function sources(dir) {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) return sources(path);
    return entry.name.endsWith('.ts') && !entry.name.endsWith('.test.ts') && !entry.name.endsWith('.d.ts')
      ? [path]
      : [];
  });
}

function assets(dir) {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) return assets(path);
    return entry.name.endsWith('.txt') ? [path] : [];
  });
}

/**
 * Writes a file only when its content changed, through a temporary file renamed into place: several
 * processes may build at once (the CLI builds before every command) while others import from dist/,
 * and a reader must never see a half-written module. Nothing is deleted first for the same reason.
 */
function writeIfChanged(path, contents) {
  const bytes = Buffer.from(contents);
  if (existsSync(path) && readFileSync(path).equals(bytes)) return;
  mkdirSync(dirname(path), { recursive: true });
  const temporary = `${path}.${process.pid}.tmp`;
  writeFileSync(temporary, bytes);
  renameSync(temporary, path);
}

const started = Date.now();
const entryPoints = sources(src);
const result = await build({
  entryPoints,
  outdir: out,
  outbase: src,
  format: 'esm',
  platform: 'node',
  target: 'node20',
  sourcemap: true,
  logLevel: 'warning',
  write: false,
});
for (const file of result.outputFiles) writeIfChanged(file.path, file.contents);
// Data files read at run time beside their module (the common-password list).
for (const file of assets(src)) writeIfChanged(join(out, relative(src, file)), readFileSync(file));
if (!process.argv.includes('--quiet')) {
  console.log(`build: ${entryPoints.length} modules → ${relative(root, out)}/ in ${Date.now() - started} ms`);
}

// The admin console, served by the same process at /admin/ (rebuilt only when its sources changed).
if (!process.argv.includes('--no-console')) {
  const { buildConsole } = await import('./build-console.mjs');
  await buildConsole({ quiet: process.argv.includes('--quiet') });
}
