import { execFile } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const BIN = join(dirname(fileURLToPath(import.meta.url)), '../bin/gatehouse.js');

export interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/**
 * Runs the real `gatehouse` command line in a child process on the embedded database in `dataDir`
 * (DATABASE_URL is removed, whatever the test run uses, unless `env` names one), as an operator would.
 */
export function gatehouse(
  args: string[],
  dataDir: string,
  options: { cwd?: string; env?: Record<string, string> } = {},
): Promise<CliResult> {
  const env: NodeJS.ProcessEnv = { ...process.env, DATA_DIR: dataDir };
  delete env.DATABASE_URL;
  Object.assign(env, options.env);
  return new Promise((resolve) => {
    execFile(process.execPath, [BIN, ...args], { env, cwd: options.cwd, timeout: 150_000 }, (err, stdout, stderr) => {
      resolve({ code: err ? ((err as { code?: number }).code ?? null) : 0, stdout, stderr });
    });
  });
}

/**
 * Runs `gatehouse <args> | head -c 1` in bash on the embedded database in `dataDir`: the reader takes
 * one byte and leaves, closing the pipe. `code` is the command's own exit status, not head's.
 */
export function gatehouseIntoHead(args: string[], dataDir: string): Promise<CliResult> {
  const env: NodeJS.ProcessEnv = { ...process.env, DATA_DIR: dataDir };
  delete env.DATABASE_URL;
  // biome-ignore lint/suspicious/noTemplateCurlyInString: a bash expansion, not a template.
  const script = '"$@" | head -c 1 >/dev/null; exit "${PIPESTATUS[0]}"';
  return new Promise((resolve) => {
    execFile(
      'bash',
      ['-c', script, 'bash', process.execPath, BIN, ...args],
      { env, timeout: 150_000 },
      (err, stdout, stderr) => {
        resolve({ code: err ? ((err as { code?: number }).code ?? null) : 0, stdout, stderr });
      },
    );
  });
}
