import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');

/**
 * Builds the admin console the way `npm start` does (a no-op when its sources did not change) and
 * answers the hashed script index.html loads, for the tests that serve or drive it.
 */
export function ensureConsoleBuilt(): { script: string } {
  execFileSync(process.execPath, [join(root, 'scripts', 'build-console.mjs'), '--quiet'], { stdio: 'inherit' });
  const html = readFileSync(join(root, 'dist', 'console', 'index.html'), 'utf8');
  const script = /src="(\/admin\/assets\/[^"]+\.js)"/.exec(html)?.[1];
  if (!script) throw new Error('dist/console/index.html names no script');
  return { script };
}
