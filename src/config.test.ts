import { execFile } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { type AddressInfo, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { gatehouse } from '../test/cli.js';
import { ConfigError, loadConfig } from './config.js';

const key = Buffer.alloc(32, 7).toString('base64');
const base = { MASTER_KEY: key, DATA_DIR: '/tmp/gatehouse-config-test' };

function refusal(env: Record<string, string>): ConfigError {
  try {
    loadConfig({ ...base, ...env });
  } catch (err) {
    if (err instanceof ConfigError) return err;
    throw err;
  }
  throw new Error('expected a ConfigError');
}

describe('loadConfig', () => {
  it('applies the contract defaults', () => {
    const config = loadConfig(base);
    expect(config).toMatchObject({
      port: 8080,
      host: '127.0.0.1',
      databaseUrl: undefined,
      publicUrl: 'http://127.0.0.1:8080',
      issuer: 'http://127.0.0.1:8080',
      tokenAudience: 'http://127.0.0.1:8080',
      mailFrom: 'gatehouse@localhost',
      trustProxy: false,
      corsOrigins: [],
      rateLimits: true,
      integrationsAllowLoopback: true,
    });
    expect(loadConfig({ ...base, INTEGRATIONS_ALLOW_LOOPBACK: 'OFF' }).integrationsAllowLoopback).toBe(false);
  });

  it.each([
    ['PORT', 'abc'],
    ['PORT', '70000'],
    ['DATABASE_URL', 'mysql://x'],
    ['PUBLIC_URL', 'not a url'],
    ['MASTER_KEY', 'c2hvcnQ='],
    ['MASTER_KEY_PREVIOUS', 'c2hvcnQ='],
    ['MASTER_KEY_PREVIOUS', `${Buffer.alloc(32, 1).toString('base64')},not-base64!`],
    ['SMTP_URL', 'http://mail'],
    ['MAIL_FROM', 'nobody'],
    ['TRUST_PROXY', '10.0.0.0/99'],
    ['CORS_ORIGINS', 'https://a.example.com/path'],
    ['REDIS_URL', 'tcp://x'],
    ['RATE_LIMITS', 'maybe'],
    ['ADMIN_EMAIL', 'not-an-email'],
    ['ADMIN_EMAIL', 'root@b..example'],
    ['ADMIN_EMAIL', 'müller@a.example'],
    ['PROVISIONING_API_KEY', 'short'],
    ['METRICS_TOKEN', 'short'],
    ['SESSION_MAX_AGE', 'forever'],
    ['SESSION_MAX_AGE', '3600'],
    ['INTEGRATION_HEALTH_INTERVAL_SECONDS', '-5'],
    ['DOWNSTREAM_SYNC_INTERVAL_SECONDS', 'soon'],
    ['INTEGRATION_HISTORY_DAYS', 'forever'],
    ['INTEGRATIONS_ALLOW_LOOPBACK', 'yes'],
    ['MAIL_OUTBOX_RETENTION_DAYS', '-1'],
  ])('refuses a bad %s with a message naming it', (variable, value) => {
    const err = refusal({
      [variable]: value,
      ...(variable === 'ADMIN_EMAIL' ? { ADMIN_PASSWORD: 'long enough pw' } : {}),
    });
    expect(err.variable).toBe(variable);
    expect(err.message.startsWith(`${variable}: `)).toBe(true);
  });

  it('refuses an ADMIN_PASSWORD that breaks the password policy', () => {
    expect(refusal({ ADMIN_EMAIL: 'a@b.io', ADMIN_PASSWORD: 'short' }).variable).toBe('ADMIN_PASSWORD');
    expect(refusal({ ADMIN_EMAIL: 'a@b.io', ADMIN_PASSWORD: 'Password2024!' }).message).toMatch(/too common/);
    expect(refusal({ ADMIN_EMAIL: 'rootadmin@b.io', ADMIN_PASSWORD: 'rootadmin-forever' }).variable).toBe(
      'ADMIN_PASSWORD',
    );
  });

  it('takes an ADMIN_EMAIL whose domain is an internationalized domain name', () => {
    const config = loadConfig({ ...base, ADMIN_EMAIL: 'root@bücher.example', ADMIN_PASSWORD: 'long enough pw' });
    expect(config.adminEmail).toBe('root@bücher.example');
  });

  it('requires MASTER_KEY when DATABASE_URL is set', () => {
    const err = (() => {
      try {
        loadConfig({ DATABASE_URL: 'postgres://localhost/x' });
      } catch (e) {
        return e as ConfigError;
      }
    })();
    expect(err?.variable).toBe('MASTER_KEY');
  });

  it('parses proxy hops, CIDR lists and CORS origins', () => {
    expect(loadConfig({ ...base, TRUST_PROXY: '2' }).trustProxy).toBe(2);
    expect(loadConfig({ ...base, TRUST_PROXY: '10.0.0.0/8, 127.0.0.1' }).trustProxy).toEqual([
      '10.0.0.0/8',
      '127.0.0.1',
    ]);
    expect(loadConfig({ ...base, CORS_ORIGINS: 'https://a.io,http://b.io:3000' }).corsOrigins).toEqual([
      'https://a.io',
      'http://b.io:3000',
    ]);
  });

  it('reads MASTER_KEY_PREVIOUS as a list of keys, dropping the current key, repeats and empty entries', () => {
    expect(loadConfig(base).masterKeyPrevious).toEqual([]);
    const a = Buffer.alloc(32, 1);
    const b = Buffer.alloc(32, 2);
    const previous = loadConfig({
      ...base,
      MASTER_KEY_PREVIOUS: ` ${a.toString('base64')}, ${key},,${b.toString('base64')},${a.toString('base64')} `,
    }).masterKeyPrevious;
    expect(previous).toEqual([a, b]);
  });

  it('names a bad MASTER_KEY_PREVIOUS entry by position without echoing it', () => {
    const secretish = Buffer.alloc(31, 9).toString('base64');
    const err = refusal({ MASTER_KEY_PREVIOUS: `${Buffer.alloc(32, 1).toString('base64')},${secretish}` });
    expect(err.message).toMatch(/^MASTER_KEY_PREVIOUS: entry 2 /);
    expect(err.message).not.toContain(secretish);
  });

  it('generates a master key in an embedded DATA_DIR once, readable by the owner only', () => {
    const dir = mkdtempSync(join(tmpdir(), 'gh-key-'));
    const first = loadConfig({ DATA_DIR: dir }).masterKey;
    const second = loadConfig({ DATA_DIR: dir }).masterKey;
    expect(first.length).toBe(32);
    expect(second.equals(first)).toBe(true);
    expect(statSync(join(dir, 'master.key')).mode & 0o777).toBe(0o600);
    expect(Buffer.from(readFileSync(join(dir, 'master.key'), 'utf8').trim(), 'base64').equals(first)).toBe(true);
  });

  it('gives processes starting on a new DATA_DIR at once one and the same master key', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'gh-key-race-'));
    const config = fileURLToPath(new URL('./config.ts', import.meta.url));
    // All start their config at the same moment, once every process is up.
    const startAt = Date.now() + 5_000;
    const script = `import { loadConfig } from ${JSON.stringify(config)};
      while (Date.now() < ${startAt}) {}
      process.stdout.write(loadConfig({ DATA_DIR: ${JSON.stringify(dir)} }).masterKey.toString('base64'));`;
    const run = () =>
      new Promise<string>((resolve, reject) => {
        execFile(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], (err, stdout, stderr) =>
          err ? reject(new Error(`${err.message}\n${stderr}`)) : resolve(stdout),
        );
      });
    const keys = await Promise.all(Array.from({ length: 6 }, run));
    expect(new Set(keys).size).toBe(1);
    expect(readFileSync(join(dir, 'master.key'), 'utf8').trim()).toBe(keys[0]);
    // No drafts are left beside it.
    expect(readdirSync(dir)).toEqual(['master.key']);
  }, 60_000);

  describe('a DATA_DIR that cannot be created', () => {
    const file = join(mkdtempSync(join(tmpdir(), 'gh-data-dir-')), 'regular-file');
    writeFileSync(file, 'not a folder');
    const dataDir = join(file, 'sub');
    const line = `gatehouse: invalid configuration: DATA_DIR: cannot create ${dataDir}: not a directory\n`;
    const start = (env: Record<string, string>) =>
      new Promise<{ code: number | null; stderr: string }>((resolve) => {
        const main = fileURLToPath(new URL('./main.ts', import.meta.url));
        const childEnv: NodeJS.ProcessEnv = { ...process.env, ...env, DATA_DIR: dataDir, PORT: '0' };
        delete childEnv.DATABASE_URL;
        execFile(process.execPath, ['--import', 'tsx', main], { env: childEnv, timeout: 60_000 }, (err, _out, stderr) =>
          resolve({ code: err ? ((err as { code?: number }).code ?? null) : 0, stderr }),
        );
      });

    it('stops start-up with one line naming DATA_DIR, with or without MASTER_KEY', async () => {
      // Without MASTER_KEY the folder is made for the generated key; with it, when the database opens.
      for (const env of [{}, { MASTER_KEY: key }] as Record<string, string>[]) {
        const res = await start(env);
        expect(res.stderr).toBe(line);
        expect(res.code).toBe(2);
      }
    }, 120_000);

    it('stops a command line command the same way', async () => {
      const res = await gatehouse(
        ['createsuperuser', '--email', 'root@example.com', '--password', 'Quartz-Lantern-9417'],
        dataDir,
        {
          env: { MASTER_KEY: key },
        },
      );
      expect(res.stderr).toBe(line);
      expect(res.code).toBe(2);
    }, 180_000);
  });

  describe('settings the machine refuses at start', () => {
    /** `npm start`'s entry point in a child process, on a fresh embedded database unless DATA_DIR is given. */
    const start = (env: Record<string, string>) =>
      new Promise<{ code: number | null; stderr: string }>((resolve) => {
        const main = fileURLToPath(new URL('./main.ts', import.meta.url));
        const childEnv: NodeJS.ProcessEnv = {
          ...process.env,
          DATA_DIR: mkdtempSync(join(tmpdir(), 'gh-start-')),
          PORT: '0',
          HOST: '127.0.0.1',
          ...env,
        };
        delete childEnv.DATABASE_URL;
        execFile(process.execPath, ['--import', 'tsx', main], { env: childEnv, timeout: 60_000 }, (err, _out, stderr) =>
          resolve({ code: err ? ((err as { code?: number }).code ?? null) : 0, stderr }),
        );
      });

    it('names DATA_DIR in one line when a parent refuses the folder, instead of waiting for ever', async () => {
      // /proc exists but refuses new folders with ENOENT, on which a recursive mkdir retries endlessly.
      const res = await start({ DATA_DIR: '/proc/gatehouse-data' });
      expect(res.stderr).toBe(
        'gatehouse: invalid configuration: DATA_DIR: cannot create /proc/gatehouse-data: no such file or directory\n',
      );
      expect(res.code).toBe(2);
    }, 90_000);

    it('names PORT when the port is taken and HOST when it is no address of this machine', async () => {
      const taken = createServer();
      await new Promise<void>((resolve) => taken.listen(0, '127.0.0.1', resolve));
      const { port } = taken.address() as AddressInfo;
      try {
        const busy = await start({ PORT: String(port) });
        expect(busy.stderr).toBe(`gatehouse: invalid configuration: PORT: 127.0.0.1:${port} is already in use\n`);
        expect(busy.code).toBe(2);
      } finally {
        await new Promise<void>((resolve) => taken.close(() => resolve()));
      }
      // 192.0.2.0/24 is reserved for documentation: never an address of this machine.
      const elsewhere = await start({ HOST: '192.0.2.1' });
      expect(elsewhere.stderr).toBe(
        'gatehouse: invalid configuration: HOST: 192.0.2.1 is not an address of this machine\n',
      );
      expect(elsewhere.code).toBe(2);
    }, 120_000);
  });
});
