// A throwaway PostgreSQL cluster on loopback, for the PostgreSQL test run and the benchmarks:
// initdb into a temp folder with the Debian binaries, start on a free port, stop and remove.
// PostgreSQL refuses to run as root, so as root the cluster runs as the `postgres` user (or
// `nobody` when that user does not exist).
import { spawnSync } from 'node:child_process';
import { chownSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** The newest PostgreSQL server binaries: PG_BIN, then /usr/lib/postgresql/<version>/bin, then pg_config. */
export function findPgBin() {
  if (process.env.PG_BIN) return process.env.PG_BIN;
  const base = '/usr/lib/postgresql';
  if (existsSync(base)) {
    const versions = readdirSync(base)
      .filter((v) => existsSync(join(base, v, 'bin', 'initdb')))
      .sort((a, b) => Number(b) - Number(a));
    if (versions[0]) return join(base, versions[0], 'bin');
  }
  const pgConfig = spawnSync('pg_config', ['--bindir'], { encoding: 'utf8' });
  if (pgConfig.status === 0 && existsSync(join(pgConfig.stdout.trim(), 'initdb'))) return pgConfig.stdout.trim();
  return undefined;
}

function userIds(name) {
  const uid = spawnSync('id', ['-u', name], { encoding: 'utf8' });
  const gid = spawnSync('id', ['-g', name], { encoding: 'utf8' });
  if (uid.status !== 0 || gid.status !== 0) return undefined;
  return { uid: Number(uid.stdout), gid: Number(gid.stdout) };
}

export function freePort() {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

/** Runs a PostgreSQL binary (as the cluster owner when given); throws with its output when it fails. */
function pgRun(bin, args, owner) {
  const result = spawnSync(bin, args, {
    encoding: 'utf8',
    cwd: '/',
    env: { PATH: process.env.PATH, LANG: 'C.UTF-8', LC_ALL: 'C.UTF-8' },
    ...(owner ?? {}),
  });
  if (result.status !== 0) {
    throw new Error(
      `${bin} ${args.join(' ')} failed (${result.status ?? result.signal}):\n${result.stdout}${result.stderr}`,
    );
  }
  return result.stdout;
}

/**
 * Creates and starts a cluster; resolves to `{ url, version, bin, stop }` (superuser `postgres`,
 * trust auth on 127.0.0.1 only). `durable: false` turns fsync off: for tests, never for figures.
 * `stop()` is synchronous and idempotent, and also runs when the process exits.
 */
export async function startCluster({ durable = false, settings = {} } = {}) {
  const bin = findPgBin();
  if (!bin) {
    throw new Error(
      'no PostgreSQL server binaries found (install them with `apt-get install -y postgresql`, or set PG_BIN)',
    );
  }
  let owner;
  if (process.getuid?.() === 0) {
    owner = userIds('postgres') ?? userIds('nobody');
    if (!owner)
      throw new Error('running as root and neither a `postgres` nor a `nobody` user exists to own the cluster');
  }
  const dir = mkdtempSync(join(tmpdir(), 'gatehouse-pg-'));
  const data = join(dir, 'data');
  if (owner) chownSync(dir, owner.uid, owner.gid);
  let started = false;
  const stop = () => {
    if (started) {
      started = false;
      try {
        pgRun(join(bin, 'pg_ctl'), ['-D', data, '-m', 'fast', '-w', 'stop'], owner);
      } catch {
        // already gone
      }
    }
    rmSync(dir, { recursive: true, force: true });
  };
  process.on('exit', stop);
  try {
    pgRun(join(bin, 'initdb'), ['-D', data, '-U', 'postgres', '--auth=trust', '-E', 'UTF8', '--locale=C.UTF-8'], owner);
    const conf = {
      listen_addresses: "'127.0.0.1'",
      unix_socket_directories: `'${dir}'`,
      max_connections: '200',
      ...(durable ? {} : { fsync: 'off', synchronous_commit: 'off', full_page_writes: 'off' }),
      ...settings,
    };
    writeFileSync(
      join(data, 'postgresql.auto.conf'),
      `${Object.entries(conf)
        .map(([k, v]) => `${k} = ${v}`)
        .join('\n')}\n`,
      { flag: 'a' },
    );
    let port;
    for (let attempt = 0; !started; attempt++) {
      port = await freePort();
      try {
        pgRun(
          join(bin, 'pg_ctl'),
          ['-D', data, '-l', join(dir, 'server.log'), '-o', `-p ${port}`, '-w', '-t', '60', 'start'],
          owner,
        );
        started = true;
      } catch (err) {
        if (attempt === 2) throw err;
      }
    }
    const version = pgRun(join(bin, 'postgres'), ['--version']).trim();
    return { url: `postgres://postgres@127.0.0.1:${port}/postgres`, version, bin, dir, stop };
  } catch (err) {
    const serverLog = join(dir, 'server.log');
    const detail = existsSync(serverLog) ? `\nserver log:\n${readFileSync(serverLog, 'utf8')}` : '';
    stop();
    throw new Error(`${err.message}${detail}`);
  }
}
