import { type ChildProcess, spawn } from 'node:child_process';
import { closeSync, openSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = join(dirname(fileURLToPath(import.meta.url)), '../..');

export interface NodeProcess {
  baseUrl: string;
  pid: number;
  logFile: string;
  /** Resident set size now, and its peak so far, in MiB (from /proc). */
  memory(): { rssMiB: number; peakMiB: number };
  /** SIGTERM, then the exit code (SIGKILL after 20 s). */
  stop(): Promise<number | null>;
}

function readStatusKb(pid: number, field: 'VmRSS' | 'VmHWM'): number {
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    const match = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(status);
    return match ? Number(match[1]) : Number.NaN;
  } catch {
    return Number.NaN;
  }
}

async function waitForHealth(child: ChildProcess, baseUrl: string, logFile: string, timeoutMs: number) {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) {
      throw new Error(`${baseUrl}: the process exited with ${child.exitCode} before serving; see ${logFile}`);
    }
    try {
      const res = await fetch(`${baseUrl}/health`, { signal: AbortSignal.timeout(2000) });
      await res.arrayBuffer();
      if (res.status === 200) return;
    } catch {
      // not listening yet
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  child.kill('SIGKILL');
  throw new Error(`${baseUrl}/health did not answer 200 within ${timeoutMs / 1000} s; see ${logFile}`);
}

/**
 * The flags `npm start` gives node (package.json), so a measured server runs as the product runs,
 * young-generation size included.
 */
function startFlags(): string[] {
  const start = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')).scripts.start as string;
  const match = /\bnode ((?:--\S+ )*)dist\/main\.js/.exec(start);
  if (!match) throw new Error(`package.json's start script does not run "node [flags] dist/main.js": ${start}`);
  return (match[1] ?? '').split(' ').filter(Boolean);
}

/**
 * Starts `node <entry>` from the repository root (a `.ts` entry through the tsx loader; the service
 * itself as `npm start` runs it, from dist/ after `scripts/build.mjs`), logging to `logFile`, and
 * waits for `GET /health` to answer 200.
 */
export async function startNodeServer(
  entry: string,
  env: Record<string, string>,
  options: { port: number; logFile: string; timeoutMs?: number },
): Promise<NodeProcess> {
  // The log goes straight to a file descriptor: piping it through this process would charge the
  // server's logging to the load generator's thread.
  const log = openSync(options.logFile, 'a');
  // BENCH_CPU_PROFILE_DIR: the server writes a V8 CPU profile there when it exits (where its time went).
  const profile = process.env.BENCH_CPU_PROFILE_DIR;
  const profileFlags = profile ? ['--cpu-prof', `--cpu-prof-dir=${profile}`] : [];
  const nodeArgs = entry.endsWith('.ts') ? ['--import', 'tsx', entry] : [...startFlags(), ...profileFlags, entry];
  const child = spawn(process.execPath, nodeArgs, {
    cwd: ROOT,
    env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '/tmp', ...env, PORT: String(options.port) },
    stdio: ['ignore', log, log],
  });
  closeSync(log);
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  const baseUrl = `http://127.0.0.1:${options.port}`;
  await waitForHealth(child, baseUrl, options.logFile, options.timeoutMs ?? 120_000);
  const pid = child.pid as number;
  return {
    baseUrl,
    pid,
    logFile: options.logFile,
    memory: () => ({
      rssMiB: readStatusKb(pid, 'VmRSS') / 1024,
      peakMiB: readStatusKb(pid, 'VmHWM') / 1024,
    }),
    stop: async () => {
      if (child.exitCode !== null) return child.exitCode;
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 20_000);
      const code = await exited;
      clearTimeout(timer);
      return code;
    },
  };
}
