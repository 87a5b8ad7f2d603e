#!/usr/bin/env node
// `npm run test:pg [-- vitest args]`: the test suite on a PostgreSQL server.
//
// With TEST_DATABASE_URL set, the suite runs against that server (each test file creates and drops
// its own database there, so the role needs CREATEDB). Without it, a throwaway cluster is created
// with the Debian PostgreSQL binaries (see pg-cluster.mjs), used for one run, then removed.
import { spawn } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { startCluster } from './pg-cluster.mjs';

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
    // Ctrl-C or a CI timeout reaches vitest, which exits; the cluster is removed after it.
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

const url = process.env.TEST_DATABASE_URL;
if (url) {
  log(`using TEST_DATABASE_URL (${url.replace(/\/\/([^:@/]*):[^@/]*@/, '//$1:***@')})`);
  process.exitCode = await runVitest(url);
} else {
  let cluster;
  try {
    cluster = await startCluster({ durable: false });
  } catch (err) {
    log(err.message);
    log('set TEST_DATABASE_URL to use an existing server instead');
    process.exit(1);
  }
  log(`throwaway cluster (${cluster.version}) at ${cluster.url} in ${cluster.dir}`);
  try {
    process.exitCode = await runVitest(cluster.url);
  } finally {
    cluster.stop();
  }
}
