#!/usr/bin/env node
// `npm run test:pg [-- vitest args]`: the test suite on a PostgreSQL server.
//
// With TEST_DATABASE_URL set, the suite runs against that server (each test file creates and drops
// its own database there, so the role needs CREATEDB). Without it, a throwaway cluster is created
// with the Debian PostgreSQL binaries (initdb into a temp folder, loopback only, a free port),
// used for one run, then stopped and removed. PostgreSQL refuses to run as root, so as root the
// cluster runs as the `postgres` user (or `nobody` when that user does not exist).
import { spawn, spawnSync } from 'node:child_process';
import { chownSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const vitestArgs = ['run', ...process.argv.slice(2)];

function log(message) {
  console.error(`test:pg: ${message}`);
}

function runVitest(databaseUrl) {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [join(root, 'node_modules/vitest/vitest.mjs'), ...vitestArgs], {
      cwd: root,
      stdio: 'inherit',
      env: { ...process.env, TEST_DATABASE_URL: databaseUrl },
    });
    const forward = (signal) => child.kill(signal);
    process.on('SIGINT', forward);
    process.on('SIGTERM', forward);
    child.on('exit', (code, signal) => {
      process.off('SIGINT', forward);
      process.off('SIGTERM', forward);
      resolve(code ?? (signal ? 1 : 0));
    });
  });
}

/** The newest PostgreSQL server binaries: PG_BIN, then /usr/lib/postgresql/<version>/bin, then pg_config. */
function findPgBin() {
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

function freePort() {
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

/** Runs a PostgreSQL binary as the cluster owner; throws with its output when it fails. */
function pgRun(bin, args, owner) {
  const result = spawnSync(bin, args, {
    encoding: 'utf8',
    cwd: '/',
    env: { PATH: process.env.PATH, LANG: 'C.UTF-8', LC_ALL: 'C.UTF-8' },
    ...(owner ?? {}),
  });
  if (result.status !== 0) {
    throw new Error(`${bin} ${args.join(' ')} failed (${result.status ?? result.signal}):\n${result.stdout}${result.stderr}`);
  }
  return result.stdout;
}

async function withThrowawayCluster() {
  const bin = findPgBin();
  if (!bin) {
    log('no PostgreSQL server binaries found (install them with `apt-get install -y postgresql`, or set PG_BIN or TEST_DATABASE_URL)');
    return 1;
  }
  let owner;
  if (process.getuid?.() === 0) {
    owner = userIds('postgres') ?? userIds('nobody');
    if (!owner) {
      log('running as root and neither a `postgres` nor a `nobody` user exists to own the cluster');
      return 1;
    }
  }
  const dir = mkdtempSync(join(tmpdir(), 'gatehouse-test-pg-'));
  const data = join(dir, 'data');
  if (owner) chownSync(dir, owner.uid, owner.gid);
  let started = false;
  const stop = () => {
    if (started) {
      started = false;
      try {
        pgRun(join(bin, 'pg_ctl'), ['-D', data, '-m', 'immediate', '-w', 'stop'], owner);
      } catch (err) {
        log(`could not stop the cluster: ${err.message}`);
      }
    }
    rmSync(dir, { recursive: true, force: true });
  };
  process.on('exit', stop);
  try {
    pgRun(join(bin, 'initdb'), ['-D', data, '-U', 'postgres', '--auth=trust', '-E', 'UTF8', '--locale=C.UTF-8'], owner);
    // A throwaway cluster: durability settings off so the suite spends its time in Gatehouse, not fsync.
    writeFileSync(
      join(data, 'postgresql.auto.conf'),
      [
        "listen_addresses = '127.0.0.1'",
        `unix_socket_directories = '${dir}'`,
        'fsync = off',
        'synchronous_commit = off',
        'full_page_writes = off',
        'max_connections = 200',
        '',
      ].join('\n'),
      { flag: 'a' },
    );
    let port;
    for (let attempt = 0; attempt < 3 && !started; attempt++) {
      port = await freePort();
      try {
        pgRun(join(bin, 'pg_ctl'), ['-D', data, '-l', join(dir, 'server.log'), '-o', `-p ${port}`, '-w', '-t', '60', 'start'], owner);
        started = true;
      } catch (err) {
        if (attempt === 2) throw err;
      }
    }
    const version = pgRun(join(bin, 'postgres'), ['--version']).trim();
    log(`throwaway cluster (${version}) on 127.0.0.1:${port} in ${dir}`);
    return await runVitest(`postgres://postgres@127.0.0.1:${port}/postgres`);
  } catch (err) {
    log(err.message);
    const serverLog = join(dir, 'server.log');
    if (existsSync(serverLog)) log(`server log:\n${readFileSync(serverLog, 'utf8')}`);
    return 1;
  } finally {
    stop();
  }
}

const url = process.env.TEST_DATABASE_URL;
if (url) {
  log(`using TEST_DATABASE_URL (${url.replace(/\/\/([^:@/]*):[^@/]*@/, '//$1:***@')})`);
  process.exitCode = await runVitest(url);
} else {
  process.exitCode = await withThrowawayCluster();
}
