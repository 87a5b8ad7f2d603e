#!/usr/bin/env node
// Emits dist/ from src/ (TypeScript → ESM JavaScript, one file per module, no bundling) in well
// under a second, so `npm start` can run plain JavaScript: no loader thread, about half the memory
// of running the sources through a TypeScript loader. Type checking is `npm run typecheck`.
import { copyFileSync, mkdirSync, readdirSync } from 'node:fs';
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

const started = Date.now();
// No clean first: a running server may still import from dist/, and overwriting is safe for it.
const entryPoints = sources(src);
await build({
  entryPoints,
  outdir: out,
  outbase: src,
  format: 'esm',
  platform: 'node',
  target: 'node20',
  sourcemap: true,
  logLevel: 'warning',
});
// Data files read at run time beside their module (the common-password list).
for (const file of assets(src)) {
  const target = join(out, relative(src, file));
  mkdirSync(dirname(target), { recursive: true });
  copyFileSync(file, target);
}
if (!process.argv.includes('--quiet')) {
  console.log(`build: ${entryPoints.length} modules → ${relative(root, out)}/ in ${Date.now() - started} ms`);
}
