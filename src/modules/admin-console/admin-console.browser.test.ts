import { createHash } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import { eq } from 'drizzle-orm';
import * as OTPAuth from 'otpauth';
import type { Browser, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { hasChromium, launchChromium } from '../../../test/chromium.js';
import { ensureConsoleBuilt } from '../../../test/console-build.js';
import { loginAs, seedOrganization, seedUser, TEST_PASSWORD } from '../../../test/seed.js';
import { startTestApp, type TestApp } from '../../../test/test-app.js';
import { apiKeys } from '../api-keys/api-keys.table.js';
import { type User, users } from '../users/users.table.js';

// Each step waits at most this long for the page: a slow shared machine, never a hung run.
const STEP_TIMEOUT = 15_000;

describe.skipIf(!hasChromium())(
  'admin console in headless Chromium (skipped where /usr/bin/chromium, Debian package chromium, is missing)',
  () => {
    let t: TestApp;
    let browser: Browser;
    let base: string;
    let orgId: string;
    let admin: User;

    beforeAll(async () => {
      ensureConsoleBuilt();
      t = await startTestApp();
      await t.app.listen({ host: '127.0.0.1', port: 0 });
      base = `http://127.0.0.1:${(t.app.server.address() as AddressInfo).port}`;
      const org = await seedOrganization(t);
      orgId = org.id;
      admin = await seedUser(t, org.id, { isSuperuser: true, isStaff: true, firstName: 'Ada', lastName: 'Admin' });
      await seedUser(t, org.id, { email: 'grace.hopper@example.com', firstName: 'Grace', lastName: 'Hopper' });
      await seedUser(t, org.id, { email: 'alan.turing@example.com', firstName: 'Alan', lastName: 'Turing' });
      browser = await launchChromium();
    }, 120_000);

    afterAll(async () => {
      await browser?.close();
      await t?.close();
    });

    async function newPage(): Promise<Page> {
      const context = await browser.newContext({ permissions: ['clipboard-read', 'clipboard-write'] });
      const page = await context.newPage();
      page.setDefaultTimeout(STEP_TIMEOUT);
      return page;
    }

    async function signIn(page: Page, email: string) {
      await page.goto(`${base}/admin/`);
      await page.getByLabel('Email or username').fill(email);
      await page.getByLabel('Password').fill(TEST_PASSWORD);
      await page.getByRole('button', { name: 'Sign in' }).click();
    }

    it('signs in, lists and searches users, creates and edits one, creates an API key shown once, signs out', async () => {
      const page = await newPage();
      await signIn(page, admin.email);

      // The dashboard counts this installation's users (the seeded three), then the users list shows them.
      await expect.poll(() => page.getByTestId('total-users').textContent(), { timeout: STEP_TIMEOUT }).toBe('3');
      await page.getByRole('menuitem', { name: 'Users', exact: true }).click();
      await expect.poll(() => page.url(), { timeout: STEP_TIMEOUT }).toContain('/admin/users');
      await page.getByText('grace.hopper@example.com').waitFor();
      await page.getByText('alan.turing@example.com').waitFor();
      await page
        .getByText(/Ada Admin/)
        .first()
        .waitFor();

      // Search narrows the list through the API's `search`.
      await page.getByPlaceholder('Search email, username, name').fill('hopper');
      await page.getByText('alan.turing@example.com').waitFor({ state: 'detached' });
      await page.getByText('grace.hopper@example.com').waitFor();

      // Create: the form posts to the API, the user exists in the database and in the list.
      await page.goto(`${base}/admin/users/create`);
      await page.getByLabel('Email').fill('katherine.johnson@example.com');
      await page.getByLabel('First name').fill('Katherine');
      await page.getByLabel('Last name').fill('Johnson');
      await page.getByRole('button', { name: 'Save' }).click();
      await expect.poll(() => page.url(), { timeout: STEP_TIMEOUT }).toMatch(/\/admin\/users\/[0-9a-f-]{36}\/show$/);
      const [created] = await t.database.db
        .select()
        .from(users)
        .where(eq(users.email, 'katherine.johnson@example.com'));
      expect(created).toMatchObject({ organizationId: orgId, firstName: 'Katherine', lastName: 'Johnson' });
      await page.goto(`${base}/admin/users`);
      await page.getByText('katherine.johnson@example.com').waitFor();

      // Edit: a changed field is saved, and only it.
      await page.goto(`${base}/admin/users/${created!.id}`);
      await page.getByLabel('First name').fill('Kate');
      await page.getByRole('button', { name: 'Save' }).click();
      await expect.poll(() => page.url(), { timeout: STEP_TIMEOUT }).toMatch(/\/show$/);
      await expect
        .poll(async () => (await t.database.db.select().from(users).where(eq(users.id, created!.id)))[0]?.firstName)
        .toBe('Kate');

      // A field error from the server lands under its input: the email is taken in this organization.
      await page.goto(`${base}/admin/users/create`);
      await page.getByLabel('Email').fill('grace.hopper@example.com');
      await page.getByRole('button', { name: 'Save' }).click();
      await page
        .getByText(/already/i)
        .first()
        .waitFor();
      expect(page.url()).toMatch(/\/users\/create$/);

      // API key: the key is shown once, matches the stored hash, and is not shown again.
      await page.goto(`${base}/admin/api-keys/create`);
      await page.getByLabel('Name').fill('directory sync');
      await page.getByLabel('scim').check();
      await page.getByRole('button', { name: 'Save' }).click();
      const keyField = page.getByTestId('new-api-key');
      await keyField.waitFor();
      const key = await keyField.inputValue();
      expect(key.length).toBeGreaterThan(20);
      const [stored] = await t.database.db.select().from(apiKeys).where(eq(apiKeys.name, 'directory sync'));
      expect(stored?.keyHash).toBe(createHash('sha256').update(key).digest('hex'));
      await page.getByRole('button', { name: 'Copy' }).click();
      await page.getByRole('button', { name: 'Copied' }).waitFor();
      await page.getByRole('button', { name: 'Done' }).click();
      await expect.poll(() => page.url(), { timeout: STEP_TIMEOUT }).toMatch(/\/api-keys\/[^/]+\/show$/);
      await page.getByText('directory sync').first().waitFor();
      expect(await page.content()).not.toContain(key);

      // Sign out: back to the sign-in form, and the session no longer works.
      await page.getByRole('button', { name: 'Profile' }).click();
      await page.getByRole('menuitem', { name: 'Logout' }).click();
      await page.getByRole('button', { name: 'Sign in' }).waitFor();
      const profile = await page.request.get(`${base}/api/v1/users/profile/`);
      expect(profile.status()).toBe(401);
      await page.context().close();
    }, 120_000);

    it('pages through users with the API cursors, forward and back', async () => {
      const page = await newPage();
      await signIn(page, admin.email);
      await page.getByTestId('total-users').waitFor();
      const emails = () => page.locator('tbody tr td:nth-child(2)').allInnerTexts();
      await page.goto(`${base}/admin/users?perPage=3`);
      await expect.poll(async () => (await emails()).length, { timeout: STEP_TIMEOUT }).toBe(3);
      const first = await emails();
      await page.getByRole('button', { name: 'Go to next page' }).click();
      // The four users of the organization so far: three on the first page, the last one here.
      await expect.poll(async () => (await emails()).length, { timeout: STEP_TIMEOUT }).toBe(1);
      const second = await emails();
      expect(new Set([...first, ...second]).size).toBe(4);
      await page.getByText('4-4 of 4').waitFor();
      await page.getByRole('button', { name: 'Go to previous page' }).click();
      await expect.poll(emails, { timeout: STEP_TIMEOUT }).toEqual(first);
      await page.context().close();
    }, 60_000);

    it('deactivates and reactivates a user, assigns and removes a role, revokes a session, deactivates in bulk', async () => {
      const target = await seedUser(t, orgId, { email: 'mary.jackson@example.com' });
      const targetClient = await loginAs(t, target);
      const page = await newPage();
      await signIn(page, admin.email);
      await page.getByTestId('total-users').waitFor();
      const statusOf = async () => (await t.database.db.select().from(users).where(eq(users.id, target.id)))[0]?.status;

      await page.goto(`${base}/admin/users/${target.id}/show`);
      // Roles: assigned by code, listed, removed.
      await page.getByRole('tab', { name: 'Roles' }).click();
      await page.getByLabel('Role code').fill('viewer');
      await page.getByRole('button', { name: 'Assign role' }).click();
      await page.getByRole('cell', { name: 'viewer', exact: true }).waitFor();
      const roleCodes = async () =>
        (
          (await targetClient.get('/api/v1/users/profile/permissions/')).json() as { roles: { code: string }[] }
        ).roles.map((role) => role.code);
      expect(await roleCodes()).toEqual(['viewer']);
      await page.getByRole('button', { name: 'Remove' }).click();
      await page.getByRole('button', { name: 'Confirm' }).click();
      await page.getByText('No roles.').waitFor();
      expect(await roleCodes()).toEqual([]);

      // Sessions: the user's session is listed and revoked; their token stops working.
      await page.getByRole('tab', { name: 'Sessions' }).click();
      await page.getByRole('button', { name: 'Revoke' }).click();
      await page.getByRole('button', { name: 'Confirm' }).click();
      await page.getByText('No active sessions.').waitFor();
      expect((await targetClient.get('/api/v1/users/profile/')).statusCode).toBe(401);

      // Deactivation (it also ends the user's sessions on the server) and reactivation.
      await page.getByRole('tab', { name: 'Profile' }).click();
      await page.getByRole('button', { name: 'Deactivate' }).click();
      await page.getByRole('button', { name: 'Reactivate' }).waitFor();
      expect(await statusOf()).toBe('deactivated');
      await page.getByRole('button', { name: 'Reactivate' }).click();
      await page.getByRole('button', { name: 'Deactivate' }).waitFor();
      expect(await statusOf()).toBe('active');

      // Bulk action on the list: the selected user is deactivated.
      await page.goto(`${base}/admin/users`);
      await page
        .getByRole('row', { name: /alan\.turing@example\.com/ })
        .getByRole('checkbox')
        .check();
      await page.getByRole('button', { name: 'Deactivate' }).click();
      await page.getByText('1 deactivated').waitFor();
      const [alan] = await t.database.db.select().from(users).where(eq(users.email, 'alan.turing@example.com'));
      expect(alan?.status).toBe('deactivated');

      // Activity: the list shows what just happened, and the audit export answers through the cookie session.
      await page.goto(`${base}/admin/activities`);
      await page.getByRole('cell', { name: 'api.request' }).first().waitFor();
      const exportHref = await page.getByRole('link', { name: 'Export CSV' }).getAttribute('href');
      expect(exportHref).toMatch(/^\/api\/v1\/activities\/export\/\?format=csv$/);
      const exported = await page.request.get(`${base}${exportHref}`);
      expect(exported.status()).toBe(200);
      await page.context().close();
    }, 120_000);

    it('signs in with the second factor when the account has TOTP on', async () => {
      const user = await seedUser(t, orgId, { isSuperuser: true, isStaff: true, email: 'two.factor@example.com' });
      const client = await loginAs(t, user);
      const { secret } = (await client.post('/api/v1/users/mfa/totp/')).json() as { secret: string };
      const totp = new OTPAuth.TOTP({ secret: OTPAuth.Secret.fromBase32(secret), digits: 6, period: 30 });
      const confirmed = await client.post('/api/v1/users/mfa/totp/confirm/', { code: totp.generate() });
      const { recovery_codes } = confirmed.json() as { recovery_codes: string[] };

      const page = await newPage();
      await signIn(page, user.email);
      // A recovery code, as the TOTP code of this time step was just spent on the confirmation.
      await page.getByLabel('Authentication code').fill(recovery_codes[0]!);
      await page.getByRole('button', { name: 'Verify' }).click();
      await page.getByTestId('total-users').waitFor();
      await page.goto(`${base}/admin/users`);
      await page.getByText('grace.hopper@example.com').waitFor();
      await page.context().close();
    }, 60_000);

    it('shows a signed-in user without administration rights the no-access page', async () => {
      const plain = await seedUser(t, orgId, { email: 'plain.user@example.com' });
      const page = await newPage();
      await signIn(page, plain.email);
      await page.getByRole('heading', { name: 'No access' }).waitFor();
      await page.getByRole('button', { name: 'Sign out' }).click();
      await page.getByRole('button', { name: 'Sign in' }).waitFor();
      await page.context().close();
    }, 60_000);
  },
);
