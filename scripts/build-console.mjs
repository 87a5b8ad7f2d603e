#!/usr/bin/env node
// Builds the admin console (console/ → dist/console/) with Vite when its sources or the locked
// dependency versions changed since the last build, so `npm start` and every CLI command stay fast
// when nothing changed. `node scripts/build-console.mjs --force` rebuilds regardless.
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const sourceDir = join(root, 'console');
const outDir = join(root, 'dist', 'console');
const stampFile = join(outDir, '.source-hash');
const lockDir = join(root, 'dist', '.console-build.lock');
// A lock older than this was left by a build that died; builds take seconds.
const STALE_LOCK_MS = 5 * 60_000;

function files(dir) {
  return readdirSync(dir, { withFileTypes: true })
    .flatMap((entry) => (entry.isDirectory() ? files(join(dir, entry.name)) : [join(dir, entry.name)]))
    .sort();
}

/** One digest over every console source and the lock file: any change to either means a rebuild. */
export function consoleSourceHash() {
  const hash = createHash('sha256');
  for (const file of [...files(sourceDir), join(root, 'package-lock.json')]) {
    if (!existsSync(file)) continue;
    hash.update(relative(root, file)).update('\0').update(readFileSync(file)).update('\0');
  }
  return hash.digest('hex');
}

function isBuilt(digest) {
  return existsSync(stampFile) && readFileSync(stampFile, 'utf8') === digest;
}

/**
 * One build at a time per checkout (a directory is created atomically or not at all): test files
 * and CLI commands started together wait for the first build instead of swapping folders under it.
 */
async function withBuildLock(work) {
  mkdirSync(dirname(lockDir), { recursive: true });
  for (;;) {
    try {
      mkdirSync(lockDir);
      break;
    } catch (err) {
      if (err.code !== 'EEXIST') throw err;
      const age = Date.now() - (statSync(lockDir, { throwIfNoEntry: false })?.mtimeMs ?? Date.now());
      if (age > STALE_LOCK_MS) rmSync(lockDir, { recursive: true, force: true });
      else await new Promise((resolve) => setTimeout(resolve, 200));
    }
  }
  try {
    return await work();
  } finally {
    rmSync(lockDir, { recursive: true, force: true });
  }
}

/** Builds when needed; answers whether it built. */
export async function buildConsole({ force = false, quiet = false } = {}) {
  const digest = consoleSourceHash();
  if (!force && isBuilt(digest)) return false;
  return withBuildLock(async () => {
    // Another process may have built the same sources while this one waited for the lock.
    if (!force && isBuilt(digest)) return false;
    await viteBuild(digest, quiet);
    return true;
  });
}

async function viteBuild(digest, quiet) {
  const started = Date.now();
  const { build } = await import('vite');
  // Built beside the served folder and swapped in by renames: a server already running never sees a
  // half-written console.
  const staging = join(root, 'dist', `.console-${process.pid}`);
  const retired = join(root, 'dist', `.console-old-${process.pid}`);
  rmSync(staging, { recursive: true, force: true });
  await build({
    configFile: join(sourceDir, 'vite.config.ts'),
    logLevel: quiet ? 'error' : 'warn',
    build: { outDir: staging, emptyOutDir: true },
  });
  writeFileSync(join(staging, '.source-hash'), digest);
  if (existsSync(outDir)) renameSync(outDir, retired);
  renameSync(staging, outDir);
  rmSync(retired, { recursive: true, force: true });
  if (!quiet) console.log(`build: admin console → ${relative(root, outDir)}/ in ${Date.now() - started} ms`);
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  await buildConsole({ force: process.argv.includes('--force'), quiet: process.argv.includes('--quiet') });
}
