import { createHash, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createServer, type IncomingHttpHeaders } from 'node:http';
import type { AddressInfo } from 'node:net';
import { parse as parseCsv } from 'csv-parse/sync';
import { and, eq } from 'drizzle-orm';
import * as OTPAuth from 'otpauth';
import type { Browser, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { hasChromium, launchChromium } from '../../../test/chromium.js';
import { ensureConsoleBuilt } from '../../../test/console-build.js';
import { lastMailTo } from '../../../test/mail.js';
import { grantRole, loginAs, seedOrganization, seedUser, superuserClient, TEST_PASSWORD } from '../../../test/seed.js';
import { startTestApp, type TestApp, unique } from '../../../test/test-app.js';
import { queueMail } from '../../platform/mail/mail.js';
import { activities } from '../activity/activity.table.js';
import { apiKeys } from '../api-keys/api-keys.table.js';
import { integrations } from '../integrations/integrations.table.js';
import { organizations } from '../organizations/organizations.table.js';
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

    async function newPage(options: { timezoneId?: string } = {}): Promise<Page> {
      const context = await browser.newContext({ permissions: ['clipboard-read', 'clipboard-write'], ...options });
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

    it('signs in, lists and searches users, creates and edits one, creates and rotates an API key shown once, signs out', async () => {
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
      // Escape does not close it: the key would be lost for good. Only "Done" does.
      await page.keyboard.press('Escape');
      await page.mouse.click(5, 5);
      expect(await keyField.inputValue()).toBe(key);
      await page.getByRole('button', { name: 'Done' }).click();
      await expect.poll(() => page.url(), { timeout: STEP_TIMEOUT }).toMatch(/\/api-keys\/[^/]+\/show$/);
      await page.getByText('directory sync').first().waitFor();
      expect(await page.content()).not.toContain(key);

      // Rotation: a new key with the same name and scopes, shown once; the old one is revoked.
      const oldId = stored!.id;
      await page.getByRole('button', { name: 'Rotate' }).click();
      await page.getByRole('dialog').getByRole('button', { name: 'Rotate' }).click();
      await keyField.waitFor();
      const rotated = await keyField.inputValue();
      expect(rotated).not.toBe(key);
      const keys = await t.database.db.select().from(apiKeys).where(eq(apiKeys.name, 'directory sync'));
      const fresh = keys.find((row) => row.id !== oldId);
      expect(fresh).toMatchObject({ keyHash: createHash('sha256').update(rotated).digest('hex'), scopes: ['scim'] });
      expect(fresh?.revokedAt).toBeNull();
      expect(keys.find((row) => row.id === oldId)?.revokedAt).not.toBeNull();
      await page.getByRole('button', { name: 'Done' }).click();
      await expect.poll(() => page.url(), { timeout: STEP_TIMEOUT }).toContain(`/api-keys/${fresh!.id}/show`);
      expect(await page.content()).not.toContain(rotated);

      // Revocation: the replaced key has nothing left to revoke; the new one is revoked by a dialog that says so.
      await page.goto(`${base}/admin/api-keys/${oldId}/show`);
      expect(await page.getByRole('button', { name: 'Revoke', exact: true }).isDisabled()).toBe(true);
      await page.goto(`${base}/admin/api-keys/${fresh!.id}/show`);
      await page.getByRole('button', { name: 'Revoke', exact: true }).click();
      const dialog = page.getByRole('dialog');
      await dialog.getByText('Revoke this API key?').waitFor();
      expect(await dialog.textContent()).not.toMatch(/delete/i);
      await dialog.getByRole('button', { name: 'Confirm' }).click();
      await page.getByText('API key revoked').waitFor();
      await expect
        .poll(() => page.getByRole('button', { name: 'Revoke', exact: true }).isDisabled(), { timeout: STEP_TIMEOUT })
        .toBe(true);
      const [revoked] = await t.database.db.select().from(apiKeys).where(eq(apiKeys.id, fresh!.id));
      expect(revoked?.revokedAt).not.toBeNull();

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
      // A reloaded second page is found again from the first one's cursor.
      await page.goto(`${base}/admin/users?perPage=3&page=2`);
      await expect.poll(emails, { timeout: STEP_TIMEOUT }).toEqual(second);
      expect(new URL(page.url()).searchParams.get('page')).toBe('2');
      await page.context().close();
    }, 60_000);

    it('lands a reloaded or shared list URL on its page, with its filter, order and page size', async () => {
      const org = await seedOrganization(t);
      // Addresses that sort after every other test's, whose users the first page of the list must still show.
      for (let n = 0; n < 60; n++) {
        await seedUser(t, org.id, { email: `zz.page.${String(n).padStart(2, '0')}@example.com` });
      }
      const page = await newPage();
      await signIn(page, admin.email);
      await page.getByTestId('total-users').waitFor();
      const emails = () => page.locator('tbody tr td:nth-child(2)').allInnerTexts();
      const filter = encodeURIComponent(JSON.stringify({ organization: org.code }));
      const expected = Array.from({ length: 10 }, (_, n) => `zz.page.${50 + n}@example.com`);

      // Walked to from the first page by its Next button, then reloaded.
      await page.goto(`${base}/admin/users?filter=${filter}&perPage=25&sort=email&order=ASC`);
      await expect.poll(async () => (await emails())[0], { timeout: STEP_TIMEOUT }).toBe('zz.page.00@example.com');
      await page.getByRole('button', { name: 'Go to next page' }).click();
      await expect.poll(async () => (await emails())[0], { timeout: STEP_TIMEOUT }).toBe('zz.page.25@example.com');
      await page.getByRole('button', { name: 'Go to next page' }).click();
      await expect.poll(emails, { timeout: STEP_TIMEOUT }).toEqual(expected);
      const walked = new URL(page.url()).search;
      await page.reload();
      await expect.poll(emails, { timeout: STEP_TIMEOUT }).toEqual(expected);
      await page.getByText('51-60 of 60').waitFor();
      expect(new URL(page.url()).search).toBe(walked);
      // And back from there: the second page's cursor was found on the way.
      await page.getByRole('button', { name: 'Go to previous page' }).click();
      await expect.poll(async () => (await emails())[0], { timeout: STEP_TIMEOUT }).toBe('zz.page.25@example.com');

      // A shared link, opened in a fresh page: the same rows, the order and the filter kept.
      const shared = await newPage();
      await signIn(shared, admin.email);
      await shared.getByTestId('total-users').waitFor();
      await shared.goto(`${base}/admin/users?filter=${filter}&page=3&perPage=25&sort=email&order=DESC`);
      await expect
        .poll(() => shared.locator('tbody tr td:nth-child(2)').allInnerTexts(), { timeout: STEP_TIMEOUT })
        .toEqual(Array.from({ length: 10 }, (_, n) => `zz.page.${String(9 - n).padStart(2, '0')}@example.com`));
      const url = new URL(shared.url()).searchParams;
      expect([url.get('page'), url.get('perPage'), url.get('sort'), url.get('order'), url.get('filter')]).toEqual([
        '3',
        '25',
        'email',
        'DESC',
        JSON.stringify({ organization: org.code }),
      ]);

      // Too far to walk to: the first page, and a notice that says so.
      await shared.goto(`${base}/admin/users?filter=${filter}&page=60&perPage=1&sort=email&order=ASC`);
      await shared.getByText(/Page 60 is too far/).waitFor();
      await expect.poll(() => new URL(shared.url()).searchParams.get('page'), { timeout: STEP_TIMEOUT }).toBe('1');
      await expect
        .poll(() => shared.locator('tbody tr td:nth-child(2)').allInnerTexts(), { timeout: STEP_TIMEOUT })
        .toEqual(['zz.page.00@example.com']);
      await shared.context().close();
      await page.context().close();
    }, 120_000);

    it('sorts users by the columns the API sorts by: email by default, either way, or joined', async () => {
      for (const letter of ['b', 'c', 'a']) await seedUser(t, orgId, { email: `sortme.${letter}@example.com` });
      const page = await newPage();
      await signIn(page, admin.email);
      await page.getByTestId('total-users').waitFor();
      const emails = () => page.locator('tbody tr td:nth-child(2)').allInnerTexts();
      const inOrder = (...letters: string[]) => letters.map((letter) => `sortme.${letter}@example.com`);
      await page.goto(`${base}/admin/users?filter=${encodeURIComponent(JSON.stringify({ q: 'sortme.' }))}`);
      await expect.poll(emails, { timeout: STEP_TIMEOUT }).toEqual(inOrder('a', 'b', 'c'));
      await page.getByRole('button', { name: 'Email' }).click();
      await expect.poll(emails, { timeout: STEP_TIMEOUT }).toEqual(inOrder('c', 'b', 'a'));
      // The order is in the URL: a reload keeps it.
      await page.reload();
      await expect.poll(emails, { timeout: STEP_TIMEOUT }).toEqual(inOrder('c', 'b', 'a'));
      // A date column sorts newest first at the first click, then oldest first.
      await page.getByRole('button', { name: 'Joined' }).click();
      await expect.poll(emails, { timeout: STEP_TIMEOUT }).toEqual(inOrder('a', 'c', 'b'));
      await page.getByRole('button', { name: 'Joined' }).click();
      await expect.poll(emails, { timeout: STEP_TIMEOUT }).toEqual(inOrder('b', 'c', 'a'));
      // Columns the API cannot sort by offer no order; one asked for in the URL lists by email.
      for (const name of ['Username', 'Organization', 'Status']) {
        expect(await page.getByRole('columnheader', { name }).getByRole('button').count(), name).toBe(0);
      }
      // (Without a search, so that the API's own default would be newest first.)
      const apart = await seedOrganization(t);
      for (const letter of ['y', 'z', 'x']) await seedUser(t, apart.id, { email: `apart.${letter}@example.com` });
      const filter = encodeURIComponent(JSON.stringify({ organization: apart.code }));
      await page.goto(`${base}/admin/users?filter=${filter}&sort=first_name&order=DESC`);
      await expect
        .poll(emails, { timeout: STEP_TIMEOUT })
        .toEqual(['apart.x@example.com', 'apart.y@example.com', 'apart.z@example.com']);
      await page.context().close();
    }, 60_000);

    it('deactivates and reactivates a user, assigns a picked role and removes it, revokes a session, deactivates in bulk', async () => {
      const target = await seedUser(t, orgId, { email: 'mary.jackson@example.com' });
      const targetClient = await loginAs(t, target);
      const page = await newPage();
      await signIn(page, admin.email);
      await page.getByTestId('total-users').waitFor();
      const statusOf = async () => (await t.database.db.select().from(users).where(eq(users.id, target.id)))[0]?.status;

      await page.goto(`${base}/admin/users/${target.id}/show`);
      // Roles: picked by name from the catalog (the code is what is sent), listed, removed.
      await page.getByRole('tab', { name: 'Roles' }).click();
      await page.getByLabel(/^Role/).fill('view');
      await page.getByRole('option', { name: 'Viewer (viewer) — global' }).click();
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

      // Bulk action on the list: once confirmed, the selected user is deactivated.
      await page.goto(`${base}/admin/users`);
      await page
        .getByRole('row', { name: /alan\.turing@example\.com/ })
        .getByRole('checkbox')
        .check();
      await page.getByRole('button', { name: 'Deactivate' }).click();
      const confirm = page.getByRole('dialog', { name: 'Deactivate 1 user?' });
      await confirm.getByRole('button', { name: 'Cancel' }).click();
      await confirm.waitFor({ state: 'hidden' });
      const [untouched] = await t.database.db.select().from(users).where(eq(users.email, 'alan.turing@example.com'));
      expect(untouched?.status).toBe('active');
      await page.getByRole('button', { name: 'Deactivate' }).click();
      await confirm.getByRole('button', { name: 'Deactivate' }).click();
      await page.getByText('1 deactivated').waitFor();
      const [alan] = await t.database.db.select().from(users).where(eq(users.email, 'alan.turing@example.com'));
      expect(alan?.status).toBe('deactivated');

      // Activity: the list shows what just happened, and the audit export answers through the cookie session.
      await page.goto(`${base}/admin/activities`);
      await page.getByRole('cell', { name: 'api.request' }).first().waitFor();
      // Who acted shows as their email, linked to their page (not as an id).
      await page.getByRole('link', { name: admin.email, exact: true }).first().waitFor();
      expect(await page.getByRole('cell', { name: admin.id, exact: true }).count()).toBe(0);
      // The filters beyond Type are reachable, and an expanded row shows its details as JSON.
      await page.getByRole('button', { name: 'Add filter' }).click();
      await page.getByRole('menuitemcheckbox', { name: 'Severity', exact: true }).click();
      await page.getByRole('combobox', { name: 'Severity' }).waitFor();
      await page.keyboard.press('Escape');
      await page.getByRole('cell', { name: 'api.request' }).first().click();
      const details = await page.getByTestId('activity-details').first().textContent();
      expect(JSON.parse(details ?? '')).toEqual(expect.any(Object));
      const exportHref = await page.getByRole('link', { name: 'Export CSV' }).getAttribute('href');
      expect(exportHref).toMatch(/^\/api\/v1\/activities\/export\/\?format=csv$/);
      const exported = await page.request.get(`${base}${exportHref}`);
      expect(exported.status()).toBe(200);
      // Sessions name their user the same way, mark the one in use, and revoke only after a question.
      await page.goto(`${base}/admin/user-sessions`);
      await page.getByRole('link', { name: admin.email, exact: true }).first().waitFor();
      await page.getByRole('columnheader', { name: 'This session' }).waitFor();
      await page.getByRole('button', { name: 'Revoke' }).first().click();
      await page.getByRole('dialog').getByText('Revoke this session?').waitFor();
      await page.getByRole('button', { name: 'Cancel' }).click();
      await page.context().close();
    }, 120_000);

    it('filters sessions and activities by a user picked by email, the URL keeping the id', async () => {
      const picked = await seedUser(t, orgId, { email: 'evelyn.boyd@example.com' });
      const namesake = await seedUser(t, orgId, { email: 'evelyn.granville@example.com' });
      await loginAs(t, picked);
      await loginAs(t, namesake);
      const page = await newPage();
      await signIn(page, admin.email);
      await page.getByTestId('total-users').waitFor();
      const filterInUrl = () => new URL(page.url()).searchParams.get('filter') ?? '';

      // Sessions: the user is searched by email and picked; the list asks for their id.
      await page.goto(`${base}/admin/user-sessions`);
      await page.getByRole('link', { name: admin.email, exact: true }).first().waitFor();
      await page.getByRole('combobox', { name: 'User' }).fill('evelyn');
      await page.getByRole('option', { name: namesake.email }).waitFor();
      await page.getByRole('option', { name: picked.email }).click();
      await expect.poll(filterInUrl, { timeout: STEP_TIMEOUT }).toContain(`"user":"${picked.id}"`);
      await page.getByRole('link', { name: picked.email }).first().waitFor();
      await expect
        .poll(() => page.getByRole('link', { name: admin.email, exact: true }).count(), { timeout: STEP_TIMEOUT })
        .toBe(0);
      expect(await page.getByRole('link', { name: namesake.email }).count()).toBe(0);
      // A reloaded (or shared) URL holds the id, and the picker shows whose it is.
      await page.reload();
      await expect
        .poll(() => page.getByRole('combobox', { name: 'User' }).inputValue(), { timeout: STEP_TIMEOUT })
        .toBe(picked.email);

      // Activities: the same picker behind "Add filter".
      await page.goto(`${base}/admin/activities`);
      await page.getByRole('link', { name: admin.email, exact: true }).first().waitFor();
      await page.getByRole('button', { name: 'Add filter' }).click();
      await page.getByRole('menuitemcheckbox', { name: 'User', exact: true }).click();
      await page.getByRole('combobox', { name: 'User' }).fill('evelyn.b');
      await page.getByRole('option', { name: picked.email }).click();
      await expect.poll(filterInUrl, { timeout: STEP_TIMEOUT }).toContain(`"user":"${picked.id}"`);
      await page.getByRole('link', { name: picked.email }).first().waitFor();
      await expect
        .poll(() => page.getByRole('link', { name: admin.email, exact: true }).count(), { timeout: STEP_TIMEOUT })
        .toBe(0);
      await page.context().close();
    }, 60_000);

    it("names an organization admin's users in activities and sessions without asking for users beyond their reach", async () => {
      const org = await seedOrganization(t);
      const orgAdmin = await seedUser(t, org.id, { email: `${org.code}.admin@example.com` });
      await grantRole(t, orgAdmin, 'org_admin');
      const member = await seedUser(t, org.id, { email: `${org.code}.member@example.com` });
      await loginAs(t, member);
      // A superuser of another organization acts in this one: the event names them, the admin may not read them.
      const su = await superuserClient(t);
      expect((await su.patch(`/api/v1/users/${member.id}/`, { first_name: 'Changed' })).statusCode).toBe(200);
      const page = await newPage();
      const refused: string[] = [];
      page.on('response', (response) => {
        if (response.status() === 404 && new URL(response.url()).pathname.startsWith('/api/')) {
          refused.push(response.url());
        }
      });
      const consoleErrors: string[] = [];
      page.on('console', (message) => {
        if (message.type() === 'error') consoleErrors.push(message.text());
      });
      await signIn(page, orgAdmin.email);
      await page.getByRole('menuitem', { name: 'Activities', exact: true }).waitFor();

      await page.goto(`${base}/admin/activities`);
      await page.getByRole('link', { name: member.email, exact: true }).first().waitFor();
      // The superuser is shown by id, as the row carries it.
      await page.getByRole('cell', { name: su.user.id, exact: true }).first().waitFor();
      await page.goto(`${base}/admin/activities?filter=${encodeURIComponent(JSON.stringify({ user: su.user.id }))}`);
      await page.getByRole('combobox', { name: 'User' }).waitFor();
      await page.waitForLoadState('networkidle');
      await page.goto(`${base}/admin/activities?filter=${encodeURIComponent(JSON.stringify({ user: member.id }))}`);
      await page.getByRole('link', { name: member.email, exact: true }).first().waitFor();
      await page.goto(`${base}/admin/user-sessions`);
      await page.getByRole('link', { name: member.email, exact: true }).first().waitFor();
      await page.goto(`${base}/admin/user-sessions?filter=${encodeURIComponent(JSON.stringify({ user: su.user.id }))}`);
      await page.getByRole('combobox', { name: 'User' }).waitFor();
      // Whatever was still loading has had its answer.
      await page.waitForLoadState('networkidle');
      expect(refused).toEqual([]);
      expect(consoleErrors.filter((text) => /404|Not Found/i.test(text))).toEqual([]);
      await page.context().close();
    }, 60_000);

    it("says which rows a bulk action's server refused and why, and which list filter it refused", async () => {
      await seedUser(t, orgId, { email: 'ada.lovelace@example.com', firstName: 'Ada', lastName: 'Lovelace' });
      const page = await newPage();
      await signIn(page, admin.email);
      await page.getByTestId('total-users').waitFor();
      await page.goto(`${base}/admin/users`);
      await page.getByPlaceholder('Search email, username, name').fill('Ada');
      // Oneself among the selection: the server refuses that row alone.
      await page
        .getByRole('row', { name: /ada\.lovelace@example\.com/ })
        .getByRole('checkbox')
        .check();
      await page
        .getByRole('row', { name: new RegExp(admin.email.replace(/[.]/g, '\\.')) })
        .getByRole('checkbox')
        .check();
      await page.getByRole('button', { name: 'Deactivate' }).click();
      await page
        .getByRole('dialog', { name: 'Deactivate 2 users?' })
        .getByRole('button', { name: 'Deactivate' })
        .click();
      const notice = page.locator('.MuiSnackbarContent-message');
      await notice.getByText(/^1 deactivated, 1 refused/).waitFor();
      expect(await notice.textContent()).toContain(
        `${admin.email}: Nobody may deactivate, suspend, lock or delete their own account`,
      );
      const [lovelace] = await t.database.db.select().from(users).where(eq(users.email, 'ada.lovelace@example.com'));
      expect(lovelace?.status).toBe('deactivated');
      await page
        .getByRole('button', { name: 'Close' })
        .click()
        .catch(() => undefined);

      // A filter the API refuses (here from a hand-edited URL): the notification names it and says why.
      await page.goto(
        `${base}/admin/activities?filter=${encodeURIComponent(JSON.stringify({ since: 'last tuesday' }))}`,
      );
      await notice.getByText(/since: Must be an RFC 3339 date-time/).waitFor();
      await page.goto(`${base}/admin/user-sessions?filter=${encodeURIComponent(JSON.stringify({ user: '42' }))}`);
      await notice.getByText(/user: must match format "uuid"/).waitFor();
      await page.context().close();
    }, 60_000);

    it('exports users with what a spreadsheet would run as a formula quoted, and shows who acted in the activities', async () => {
      await seedUser(t, orgId, {
        email: 'formula@example.com',
        firstName: '=HYPERLINK("http://evil.example/","Click")',
      });
      // A bare carriage return must not end the row and start the next one with a formula.
      await seedUser(t, orgId, { email: 'formula.cr@example.com', lastName: "Lee\r=cmd|' /C calc'!A0" });
      const page = await newPage();
      await signIn(page, admin.email);
      await page.getByTestId('total-users').waitFor();
      await page.goto(`${base}/admin/users`);
      await page.getByText('formula@example.com').waitFor();
      const [download] = await Promise.all([
        page.waitForEvent('download'),
        page.getByRole('button', { name: 'Export', exact: true }).click(),
      ]);
      const csv = readFileSync((await download.path()) as string, 'utf8');
      expect(csv).toContain(`'=HYPERLINK`);
      expect(csv).not.toMatch(/(^|,)"?=HYPERLINK/m);
      // As a spreadsheet reads it (a CR ends a row as a line feed does): no cell starts a formula.
      const cells = parseCsv(csv.replace(/\r(?!\n)/g, '\n'), { relax_column_count: true }) as string[][];
      expect(cells.flat().filter((cell) => /^[=+@]/.test(cell))).toEqual([]);
      expect(cells.some((row) => row.includes("Lee\n=cmd|' /C calc'!A0"))).toBe(true);

      await page.goto(`${base}/admin/activities`);
      await page.getByRole('columnheader', { name: 'Actor', exact: true }).waitFor();
      await page.getByRole('columnheader', { name: 'By', exact: true }).waitFor();
      await page.context().close();
    }, 60_000);

    it("edits an organization's settings and deactivates it, leaving unset settings unstored", async () => {
      const org = await seedOrganization(t);
      const page = await newPage();
      await signIn(page, admin.email);
      await page.getByTestId('total-users').waitFor();
      await page.goto(`${base}/admin/organizations/${org.id}`);
      await page.getByLabel('Two-factor authentication required (default: no)').click();
      await page.getByRole('option', { name: 'Yes', exact: true }).click();
      await page.getByLabel('Minimum password length (default 10)').fill('12');
      await page.getByLabel('Active (off: its users cannot log in, their sessions end)').uncheck();
      await page.getByRole('button', { name: 'Save' }).click();
      await page.getByText('{"require_mfa":true,"password_min_length":12}').waitFor();
      const [stored] = await t.database.db.select().from(organizations).where(eq(organizations.id, org.id));
      expect(stored).toMatchObject({ isActive: false, settings: { require_mfa: true, password_min_length: 12 } });
      await page.context().close();
    }, 60_000);

    it('marks required inputs as required, an input refused at Save as invalid, and labels the search', async () => {
      const page = await newPage();
      await signIn(page, admin.email);
      await page.getByTestId('total-users').waitFor();
      const requiredOf = (locator: ReturnType<Page['locator']>) => locator.getAttribute('aria-required');

      await page.goto(`${base}/admin/users/create`);
      const email = page.getByRole('textbox', { name: 'Email' });
      expect(await requiredOf(email)).toBe('true');
      expect(await requiredOf(page.getByRole('textbox', { name: 'Username' }))).not.toBe('true');
      // Saved without the email: react-admin refuses it, and the input says it is invalid.
      await page.getByLabel('First name').fill('Nobody');
      await page.getByRole('button', { name: 'Save' }).click();
      await page.getByText('Required').first().waitFor();
      await expect.poll(() => email.getAttribute('aria-invalid'), { timeout: STEP_TIMEOUT }).toBe('true');

      await page.goto(`${base}/admin/api-keys/create`);
      expect(await requiredOf(page.getByRole('textbox', { name: 'Name' }))).toBe('true');

      await page.goto(`${base}/admin/user-types/create`);
      for (const name of [/^Code/, /^Name/, /^Plural/, /^Schema/]) {
        expect(await requiredOf(page.getByRole('textbox', { name })), String(name)).toBe('true');
      }

      await page.goto(`${base}/admin/integrations/create`);
      for (const name of [/^Name/, /^Base URL/]) {
        expect(await requiredOf(page.getByRole('textbox', { name })), String(name)).toBe('true');
      }
      for (const name of [/^Service type/, /^Authentication/]) {
        expect(await requiredOf(page.getByRole('combobox', { name })), String(name)).toBe('true');
      }
      // Every form control has an accessible name, but Material UI's own copies that no one reaches: a
      // select's value input and a growing text area's measuring twin, hidden and out of the tab order.
      const unnamed = await page.locator('input, textarea, select').evaluateAll((elements) =>
        elements
          .filter((el) => {
            const e = el as unknown as {
              getAttribute(name: string): string | null;
              labels: { length: number } | null;
              type?: string;
            };
            if (e.type === 'hidden') return false;
            if (e.getAttribute('aria-hidden') === 'true' && e.getAttribute('tabindex') === '-1') return false;
            return !(e.labels?.length || e.getAttribute('aria-label') || e.getAttribute('aria-labelledby'));
          })
          .map((el) => (el as unknown as { outerHTML: string }).outerHTML.slice(0, 120)),
      );
      expect(unnamed).toEqual([]);

      await page.goto(`${base}/admin/users`);
      await page.getByRole('textbox', { name: 'Search email, username, name' }).waitFor();
      expect(await page.locator('input[name=q]').getAttribute('aria-label')).toBe('Search email, username, name');
      await page.context().close();
    }, 60_000);

    it('opens a record from a list with the keyboard alone', async () => {
      const page = await newPage();
      await signIn(page, admin.email);
      await page.getByTestId('total-users').waitFor();
      await page.goto(`${base}/admin/roles`);
      const link = page.getByRole('link', { name: 'viewer', exact: true });
      await link.focus();
      expect(await link.evaluate((el) => el === (el.ownerDocument as { activeElement: unknown }).activeElement)).toBe(
        true,
      );
      await page.keyboard.press('Enter');
      await page.waitForURL(/\/admin\/roles\/[^/]+\/show$/);
      await page.goto(`${base}/admin/users`);
      await page.getByRole('link', { name: 'grace.hopper@example.com', exact: true }).focus();
      await page.keyboard.press('Enter');
      await page.waitForURL(/\/admin\/users\/[^/]+\/show$/);
      await page.context().close();
    }, 60_000);

    it('creates a role with permissions and modules picked from the catalog', async () => {
      const page = await newPage();
      await signIn(page, admin.email);
      await page.getByTestId('total-users').waitFor();
      await page.goto(`${base}/admin/roles/create`);
      await page.getByLabel(/^Code/).fill('auditor');
      await page.getByLabel(/^Name/).fill('Auditor');
      await page.getByLabel('Level').fill('20');
      await page.getByLabel('Permissions').fill('activities.v');
      await page.getByRole('option', { name: /\(activities\.view\)$/ }).click();
      await page.getByLabel('Permissions').fill('users.vi');
      await page.getByRole('option', { name: /\(users\.view\)$/ }).click();
      await page.getByLabel('Modules').fill('gate');
      await page.getByRole('option', { name: /\(GATEHOUSE\)$/ }).click();
      await page.getByRole('button', { name: 'Save' }).click();
      await expect.poll(() => page.url(), { timeout: STEP_TIMEOUT }).toMatch(/\/admin\/roles\/[0-9a-f-]{36}\/show$/);
      const roleId = /roles\/([0-9a-f-]{36})\/show/.exec(page.url())![1];
      const role = (await (await page.request.get(`${base}/api/v1/roles/${roleId}/`)).json()) as {
        permissions: string[];
        modules: string[];
      };
      expect(role.permissions.sort()).toEqual(['activities.view', 'users.view']);
      expect(role.modules).toEqual(['GATEHOUSE']);
      await page.context().close();
    }, 60_000);

    it('registers an integration with a write-only token, lists it, checks it now and deactivates it', async () => {
      // The integration's service, on loopback: healthy for the registered bearer token only.
      const token = `tok_${randomBytes(24).toString('hex')}`;
      const seen: IncomingHttpHeaders[] = [];
      const service = createServer((req, res) => {
        seen.push(req.headers);
        const ok = req.url === '/health' && req.headers.authorization === `Bearer ${token}`;
        res.writeHead(ok ? 200 : 401, { 'content-type': 'application/json' }).end('{}');
      });
      await new Promise<void>((resolve) => service.listen(0, '127.0.0.1', resolve));
      const serviceUrl = `http://127.0.0.1:${(service.address() as AddressInfo).port}`;

      try {
        const page = await newPage();
        await signIn(page, admin.email);
        await page.getByTestId('total-users').waitFor();
        await page.getByRole('menuitem', { name: 'Integrations' }).click();
        await expect.poll(() => page.url(), { timeout: STEP_TIMEOUT }).toMatch(/\/admin\/integrations$/);

        await page.goto(`${base}/admin/integrations/create`);
        await page.getByLabel('Name').fill('Billing gateway');
        await page.getByRole('combobox', { name: 'Service type' }).click();
        await page.getByRole('option', { name: 'payment_gateway' }).click();
        await page.getByLabel('Provider').fill('Acme Pay');
        await page.getByLabel('Base URL').fill(serviceUrl);
        await page.getByLabel('Health-check path').fill('/health');
        await page.getByRole('combobox', { name: 'Authentication' }).click();
        await page.getByRole('option', { name: 'bearer' }).click();
        await page.getByLabel('Token', { exact: true }).fill(token);
        await page.getByRole('button', { name: 'Save' }).click();
        await expect
          .poll(() => page.url(), { timeout: STEP_TIMEOUT })
          .toMatch(/\/admin\/integrations\/[0-9a-f-]{36}\/show$/);

        // Stored sealed, shown only as a hint of its last characters.
        const [row] = await t.database.db.select().from(integrations).where(eq(integrations.name, 'Billing gateway'));
        expect(row).toMatchObject({
          organizationId: orgId,
          serviceType: 'payment_gateway',
          providerName: 'Acme Pay',
          authType: 'bearer',
          baseUrl: `${serviceUrl}/`,
          healthCheckPath: '/health',
          isActive: true,
        });
        expect(JSON.stringify(row)).not.toContain(token);
        await page
          .getByTestId('credential-hints')
          .getByText(`Token …${token.slice(-4)}`)
          .waitFor();
        expect(await page.content()).not.toContain(token);

        // Check now: the service is called with the token, and the result joins the history.
        await page.getByRole('button', { name: 'Check now' }).click();
        await page.getByText(/Health check: success .*now HEALTHY/).waitFor();
        expect(seen.at(-1)?.authorization).toBe(`Bearer ${token}`);
        await page.getByRole('tab', { name: 'Health checks' }).click();
        await page.getByRole('cell', { name: 'success', exact: true }).waitFor();
        await page.getByRole('cell', { name: '200', exact: true }).waitFor();

        // The list shows it with its health.
        await page.goto(`${base}/admin/integrations`);
        const listed = page.getByRole('row', { name: /Billing gateway/ });
        await listed.getByText('payment_gateway').waitFor();
        await listed.getByText('HEALTHY').waitFor();

        // Deactivation through its own route; the secret was never sent back to the browser.
        await listed.click();
        await page.getByRole('button', { name: 'Deactivate' }).click();
        // exact: by default a name matches as a substring, and "Deactivate" contains "activate".
        await page.getByRole('button', { name: 'Activate', exact: true }).waitFor();
        const [after] = await t.database.db.select().from(integrations).where(eq(integrations.id, row!.id));
        expect(after?.isActive).toBe(false);
        await page.context().close();
      } finally {
        await new Promise((resolve) => service.close(resolve));
      }
    }, 120_000);

    it('shows a refused field at its input, or the reason in a notification when no input has it, and saves once corrected', async () => {
      const page = await newPage();
      await signIn(page, admin.email);
      await page.getByTestId('total-users').waitFor();
      const save = () => page.getByRole('button', { name: 'Save' }).click();
      const username = page.getByRole('textbox', { name: 'Username', exact: true });
      const password = page.getByRole('textbox', { name: 'Password', exact: true });

      // The server names `credentials.username`: the form shows it at the Username input.
      await page.goto(`${base}/admin/integrations/create`);
      await page.getByLabel('Name').fill('Ledger archive');
      await page.getByRole('combobox', { name: 'Service type' }).click();
      await page.getByRole('option', { name: 'storage' }).click();
      await page.getByLabel('Base URL').fill('http://127.0.0.1:9');
      await page.getByRole('combobox', { name: 'Authentication' }).click();
      await page.getByRole('option', { name: 'basic' }).click();
      await username.fill('user:colon');
      await password.fill('Secret-PW-1');
      await save();
      await page.getByText('Sent in Basic authentication: no control characters, no colon.').waitFor();
      expect(await username.getAttribute('aria-invalid')).toBe('true');
      // Corrected, the same form saves.
      await username.fill('ledger');
      await save();
      await expect
        .poll(() => page.url(), { timeout: STEP_TIMEOUT })
        .toMatch(/\/admin\/integrations\/[0-9a-f-]{36}\/show$/);
      const id = /integrations\/([0-9a-f-]{36})\/show/.exec(page.url())![1]!;

      // A new host without the credentials: the server names `credentials`, which no input holds, so
      // its reason is the notification, and the form saves once they are given again.
      await page.goto(`${base}/admin/integrations/${id}`);
      await page.getByLabel('Base URL').fill('http://127.0.0.2:9');
      await save();
      await page.getByText(/stored credentials are not sent to a new host/).waitFor();
      expect(page.url()).toMatch(new RegExp(`/integrations/${id}$`));
      await username.fill('ledger');
      await password.fill('Secret-PW-2');
      await save();
      await expect.poll(() => page.url(), { timeout: STEP_TIMEOUT }).toContain(`/integrations/${id}/show`);
      const [row] = await t.database.db.select().from(integrations).where(eq(integrations.id, id));
      expect(row?.baseUrl).toBe('http://127.0.0.2:9/');
      await page.context().close();
    }, 90_000);

    it("sends date-times as instants of the browser's zone: an API key's expiry, the mail list's Since filter", async () => {
      // Kolkata is UTC+05:30 all year: a local time sent without its zone would be off by 5½ hours.
      const page = await newPage({ timezoneId: 'Asia/Kolkata' });
      await signIn(page, admin.email);
      await page.getByTestId('total-users').waitFor();
      await page.goto(`${base}/admin/api-keys/create`);
      await page.getByLabel('Name').fill('nightly export');
      await page.getByLabel('scim').check();
      await page.getByLabel('Expires').fill('2027-01-01T10:00');
      await page.getByRole('button', { name: 'Save' }).click();
      await page.getByTestId('new-api-key').waitFor();
      const [stored] = await t.database.db.select().from(apiKeys).where(eq(apiKeys.name, 'nightly export'));
      expect(stored?.expiresAt?.toISOString()).toBe('2027-01-01T04:30:00.000Z');

      await queueMail(t.database.db, { to: 'since.filter@example.com', subject: 'Welcome', text: 'Hello' });
      await page.goto(`${base}/admin/mail-outbox`);
      await page.getByRole('button', { name: 'Add filter' }).click();
      await page.getByRole('menuitemcheckbox', { name: 'Since', exact: true }).click();
      const answered = page.waitForResponse(
        (r) => r.url().includes('/api/v1/mail-outbox/?') && r.url().includes('since='),
      );
      await page.getByLabel('Since').fill('2026-11-23T00:00');
      const response = await answered;
      expect(new URL(response.url()).searchParams.get('since')).toBe('2026-11-22T18:30:00.000Z');
      expect(response.status()).toBe(200);
      await page.context().close();
    }, 60_000);

    it("sends an emptied name or description as '', the string the API takes, not null", async () => {
      const user = await seedUser(t, orgId, { email: 'dorothy.vaughan@example.com', firstName: 'Dorothy' });
      const org = await seedOrganization(t);
      await t.database.db
        .update(organizations)
        .set({ description: 'Field office' })
        .where(eq(organizations.id, org.id));
      const page = await newPage();
      await signIn(page, admin.email);
      await page.getByTestId('total-users').waitFor();

      await page.goto(`${base}/admin/users/${user.id}`);
      await page.getByLabel('First name').fill('');
      await page.getByRole('button', { name: 'Save' }).click();
      await expect.poll(() => page.url(), { timeout: STEP_TIMEOUT }).toMatch(/\/show$/);
      const [saved] = await t.database.db.select().from(users).where(eq(users.id, user.id));
      expect(saved?.firstName).toBe('');

      await page.goto(`${base}/admin/organizations/${org.id}`);
      await page.getByLabel('Description').fill('');
      await page.getByRole('button', { name: 'Save' }).click();
      await expect.poll(() => page.url(), { timeout: STEP_TIMEOUT }).toMatch(/\/show$/);
      const [after] = await t.database.db.select().from(organizations).where(eq(organizations.id, org.id));
      expect(after?.description).toBe('');
      await page.context().close();
    }, 60_000);

    it('reports a save only once the server accepted it, and keeps the form when the session has ended', async () => {
      const user = await seedUser(t, orgId, { email: 'mae.jemison@example.com', lastName: 'Jemison' });
      const page = await newPage();
      await signIn(page, admin.email);
      await page.getByTestId('total-users').waitFor();
      await page.goto(`${base}/admin/users/${user.id}`);
      const lastName = page.getByLabel('Last name');
      await lastName.fill('Jemison-Smith');
      // Every notification the page shows, kept as it appears (react-admin reported the refused save as done).
      await page.evaluate(`(() => {
        window.notices = [];
        new MutationObserver(() => {
          for (const node of document.querySelectorAll('.MuiSnackbarContent-message')) window.notices.push(node.textContent);
        }).observe(document.body, { childList: true, subtree: true, characterData: true });
      })()`);
      // The session ends before the save: the server refuses it, and the form keeps what was typed.
      await page.context().clearCookies();
      await page.getByRole('button', { name: 'Save' }).click();
      await page.getByText(/Your session has ended/).waitFor();
      expect(await lastName.inputValue()).toBe('Jemison-Smith');
      const notices = (await page.evaluate('window.notices')) as string[];
      expect(notices.filter((notice) => /updated/i.test(notice))).toEqual([]);
      const lastNameOf = async () =>
        (await t.database.db.select().from(users).where(eq(users.id, user.id)))[0]?.lastName;
      expect(await lastNameOf()).toBe('Jemison');

      // Signed in again in another tab, the same form saves.
      const other = await page.context().newPage();
      await other.goto(`${base}/admin/`);
      await other.getByLabel('Email or username').fill(admin.email);
      await other.getByLabel('Password').fill(TEST_PASSWORD);
      await other.getByRole('button', { name: 'Sign in' }).click();
      await other.getByTestId('total-users').waitFor();
      await page.getByRole('button', { name: 'Save' }).click();
      await expect.poll(() => page.url(), { timeout: STEP_TIMEOUT }).toMatch(/\/show$/);
      expect(await lastNameOf()).toBe('Jemison-Smith');
      await page.context().close();
    }, 60_000);

    it('lists the mail outbox and shows a message body as text, its HTML never rendered', async () => {
      const { id } = await queueMail(t.database.db, {
        to: 'reset.reader@example.com',
        subject: 'Reset your password',
        text: 'Open: http://gatehouse.test/api/v1/users/password-reset/confirm/?token=tok-123',
        html: '<p id="mail-injected">Open <a href="http://gatehouse.test/?token=tok-123">the link</a></p>',
      });
      const page = await newPage();
      await signIn(page, admin.email);
      await page.getByTestId('total-users').waitFor();
      await page.getByRole('menuitem', { name: 'Mail' }).click();
      await expect.poll(() => page.url(), { timeout: STEP_TIMEOUT }).toMatch(/\/admin\/mail-outbox$/);
      const row = page.getByRole('row', { name: /reset\.reader@example\.com/ });
      await row.getByText('Reset your password').waitFor();
      await row.click();
      await expect.poll(() => page.url(), { timeout: STEP_TIMEOUT }).toContain(`/admin/mail-outbox/${id}/show`);
      await page
        .getByTestId('mail-text-body')
        .getByText(/password-reset\/confirm\/\?token=tok-123/)
        .waitFor();
      // The HTML body is shown as its source: none of its elements reach the console's document.
      await page.getByTestId('mail-html-body').getByText('<p id="mail-injected">', { exact: false }).waitFor();
      expect(await page.locator('#mail-injected').count()).toBe(0);
      // The read is on record, naming who read it.
      const [event] = await t.database.db
        .select()
        .from(activities)
        .where(and(eq(activities.activityType, 'mail.viewed'), eq(activities.objectId, id)));
      expect(event?.actorId).toBe(admin.id);
      await page.context().close();
    }, 60_000);

    it('signs in with the second factor when the account has TOTP on', async () => {
      const user = await seedUser(t, orgId, { isSuperuser: true, isStaff: true, email: 'two.factor@example.com' });
      const client = await loginAs(t, user);
      const { secret } = (await client.post('/api/v1/users/mfa/totp/', { password: TEST_PASSWORD })).json() as {
        secret: string;
      };
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
      // The user's page says two-factor authentication is on.
      await page.goto(`${base}/admin/users/${user.id}/show`);
      await page.getByText('Two-factor authentication').waitFor();
      await page.locator('.ra-field-mfa_enabled [data-testid="true"]').waitFor();
      await page.context().close();
    }, 60_000);

    it('sets up the authenticator an organization requires while signing in, and shows the recovery codes once', async () => {
      const strict = await seedOrganization(t);
      await t.database.db
        .update(organizations)
        .set({ settings: { require_mfa: true } })
        .where(eq(organizations.id, strict.id));
      const user = await seedUser(t, strict.id, { isSuperuser: true, isStaff: true, email: 'must.enrol@example.com' });
      const page = await newPage();
      await signIn(page, user.email);
      const secret = (await page.getByTestId('totp-secret').textContent())?.trim() ?? '';
      expect(secret).toMatch(/^[A-Z2-7]{32}$/);
      const totp = new OTPAuth.TOTP({ secret: OTPAuth.Secret.fromBase32(secret), digits: 6, period: 30 });
      await page.getByLabel('Authentication code').fill('000000');
      await page.getByRole('button', { name: 'Turn on and sign in' }).click();
      await page.getByText('The code is not valid.').waitFor();
      await page.getByLabel('Authentication code').fill(totp.generate());
      await page.getByRole('button', { name: 'Turn on and sign in' }).click();
      const codes = page.getByRole('list', { name: 'Recovery codes' }).getByRole('listitem');
      await expect.poll(() => codes.count(), { timeout: STEP_TIMEOUT }).toBe(10);
      await page.getByRole('button', { name: 'Continue' }).click();
      await page.getByTestId('total-users').waitFor();
      await page.context().close();
    }, 60_000);

    it('offers a viewer only what the viewer role may read', async () => {
      const viewer = await seedUser(t, orgId, { email: 'read.only@example.com' });
      await grantRole(t, viewer, 'viewer');
      const page = await newPage();
      const exportStats: string[] = [];
      page.on('request', (request) => {
        if (request.url().includes('/api/admin/export-stats/')) exportStats.push(request.url());
      });
      await signIn(page, viewer.email);
      await expect
        .poll(() => page.getByTestId('activities-today').textContent(), { timeout: STEP_TIMEOUT })
        .toMatch(/^\d+$/);
      // The dashboard's user counts are for staff users: a viewer's console does not ask for them.
      expect(exportStats).toEqual([]);

      // User types and sessions need permissions a viewer lacks: neither menu entry nor tab is offered.
      await page.getByRole('menuitem', { name: 'Users', exact: true }).waitFor();
      await page.getByRole('menuitem', { name: 'Activities', exact: true }).waitFor();
      expect(await page.getByRole('menuitem', { name: 'User types', exact: true }).count()).toBe(0);
      expect(await page.getByRole('menuitem', { name: 'Sessions', exact: true }).count()).toBe(0);
      await page.goto(`${base}/admin/users/${admin.id}/show`);
      await page.getByRole('tab', { name: 'Roles', exact: true }).waitFor();
      expect(await page.getByRole('tab', { name: 'Sessions', exact: true }).count()).toBe(0);
      // Nor a Remove column for roles, nor row selection in the users list (no bulk action to use it).
      await page.goto(`${base}/admin/users/${viewer.id}/show/roles`);
      await page.getByRole('cell', { name: 'viewer', exact: true }).waitFor();
      expect(await page.getByRole('button', { name: 'Remove' }).count()).toBe(0);
      await page.goto(`${base}/admin/users`);
      await page.getByRole('link', { name: admin.email }).waitFor();
      expect(await page.getByRole('checkbox').count()).toBe(0);
      // The catalog is read in its list: a row leads nowhere a viewer would be refused.
      await page.goto(`${base}/admin/permissions`);
      await page.getByRole('columnheader', { name: 'Description' }).waitFor();
      const row = page.getByRole('row').nth(1);
      // Runs in the page, where getComputedStyle exists (the test's own types have no DOM).
      const cursor = await row.evaluate(
        (el) =>
          (globalThis as unknown as { getComputedStyle(e: unknown): { cursor: string } }).getComputedStyle(el).cursor,
      );
      expect(cursor).not.toBe('pointer');
      await row.getByRole('cell').first().click();
      expect(page.url()).toMatch(/\/admin\/permissions$/);
      await page.context().close();
    }, 60_000);

    it('offers the Superuser flag and roles above their own to superusers alone (the server refuses them from anyone else)', async () => {
      const orgAdmin = await seedUser(t, orgId, { email: 'org.admin@example.com' });
      await grantRole(t, orgAdmin, 'org_admin');
      const member = await seedUser(t, orgId, { email: 'role.picker@example.com' });
      for (const [who, offered] of [
        [orgAdmin, false],
        [admin, true],
      ] as const) {
        const page = await newPage();
        await signIn(page, who.email);
        await page.getByRole('menuitem', { name: 'Users', exact: true }).waitFor();
        await page.goto(`${base}/admin/users/create`);
        await page.getByLabel('Staff', { exact: true }).waitFor();
        expect(await page.getByLabel('Superuser', { exact: true }).count(), who.email).toBe(offered ? 1 : 0);
        // The role picker: super_admin is above an organization admin's own role.
        await page.goto(`${base}/admin/users/${member.id}/show`);
        await page.getByRole('tab', { name: 'Roles' }).click();
        await page.getByLabel(/^Role/).fill('admin');
        await page.getByRole('option', { name: /\(org_admin\) — global$/ }).waitFor();
        expect(await page.getByRole('option', { name: /\(super_admin\) — global$/ }).count(), who.email).toBe(
          offered ? 1 : 0,
        );
        // A new role without an organization is global for a superuser, the admin's own otherwise.
        await page.goto(`${base}/admin/roles/create`);
        await page.getByText(offered ? 'Empty: a global role' : 'Empty: your organization').waitFor();
        await page.context().close();
      }
    }, 60_000);

    it("offers an organization's role and a global role of one code apart, assigns the global one by id and lists it as global", async () => {
      const su = await superuserClient(t);
      const org = await seedOrganization(t);
      const orgAdmin = await seedUser(t, org.id, { email: `${org.code}.admin@example.com` });
      await grantRole(t, orgAdmin, 'org_admin');
      const member = await seedUser(t, org.id, { email: `${org.code}.member@example.com` });
      // Same code and same name: only the owner tells them apart.
      const code = unique('auditor_').replace(/-/g, '_');
      const createRole = async (organization: string | null) => {
        const res = await su.post('/api/v1/roles/', {
          code,
          name: 'Auditor',
          level: 50,
          organization,
          permissions: ['users.view'],
          modules: ['GATEHOUSE'],
        });
        expect(res.statusCode, res.body).toBe(201);
        return res.json().id as string;
      };
      await createRole(org.code);
      const globalRoleId = await createRole(null);

      const page = await newPage();
      await signIn(page, orgAdmin.email);
      await page.getByRole('menuitem', { name: 'Users', exact: true }).waitFor();
      await page.goto(`${base}/admin/users/${member.id}/show`);
      await page.getByRole('tab', { name: 'Roles' }).click();
      await page.getByLabel(/^Role/).fill(code);
      await page.getByRole('option', { name: `Auditor (${code}) — organization`, exact: true }).waitFor();
      await page.getByRole('option', { name: `Auditor (${code}) — global`, exact: true }).click();
      await page.getByRole('button', { name: 'Assign role' }).click();
      await page
        .getByRole('row', { name: new RegExp(code) })
        .getByRole('cell', { name: '(global)', exact: true })
        .waitFor();

      const held = await (await loginAs(t, orgAdmin)).get(`/api/v1/users/${member.id}/roles/`);
      expect(
        (held.json() as { results: { role_id: string; organization: string | null }[] }).results.map((row) => ({
          role_id: row.role_id,
          organization: row.organization,
        })),
      ).toEqual([{ role_id: globalRoleId, organization: null }]);
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

    it('shows the sign-in page only once the server ended the session, and says so when it refused', async () => {
      const user = await seedUser(t, orgId, { isSuperuser: true, isStaff: true, email: 'sign.out@example.com' });
      const page = await newPage();
      await signIn(page, user.email);
      await page.getByTestId('total-users').waitFor();
      const profileStatus = async () => (await page.request.get(`${base}/api/v1/users/profile/`)).status();
      const signOut = async () => {
        await page.getByRole('button', { name: 'Profile' }).click();
        await page.getByRole('menuitem', { name: 'Logout' }).click();
      };
      await page.goto(`${base}/admin/users`);
      await page.getByRole('link', { name: user.email }).waitFor();

      // A server that refuses the sign-out leaves the session open: the console says so and stays
      // where it was (the browser answers for a server that refuses, e.g. a proxy's 403).
      await page.route('**/api/logout/', (route) =>
        route.fulfill({
          status: 403,
          contentType: 'application/problem+json',
          body: JSON.stringify({ status: 403, code: 'csrf_failed', detail: 'Refused.' }),
        }),
      );
      await signOut();
      await page.getByText(/Sign-out failed, you are still signed in/).waitFor();
      expect(page.url()).toBe(`${base}/admin/users`);
      await page.getByRole('link', { name: user.email }).waitFor();
      expect(await page.getByRole('button', { name: 'Sign in' }).count()).toBe(0);
      expect(await profileStatus()).toBe(200);
      await page.unroute('**/api/logout/');

      // A lost CSRF cookie comes back with the console's next read: the sign-out is accepted, the
      // sign-in page shows, and the session is over.
      await page.context().clearCookies({ name: 'gatehouse_csrf' });
      await signOut();
      await page.getByRole('button', { name: 'Sign in' }).waitFor();
      expect(await profileStatus()).toBe(401);
      await page.context().close();
    }, 60_000);

    it("signs out everywhere from the user menu: every session of the user ends, another user's stays", async () => {
      const user = await seedUser(t, orgId, { isSuperuser: true, isStaff: true, email: 'lost.laptop@example.com' });
      const bystander = await seedUser(t, orgId, { email: 'bystander@example.com' });
      const elsewhere = await loginAs(t, user);
      const theirs = await loginAs(t, bystander);
      const page = await newPage();
      await signIn(page, user.email);
      await page.getByTestId('total-users').waitFor();

      await page.getByRole('button', { name: 'Profile' }).click();
      // Beside Logout, which ends this browser's session alone.
      await page.getByRole('menuitem', { name: 'Logout' }).waitFor();
      await page.getByRole('menuitem', { name: 'Sign out everywhere' }).click();
      await page.getByRole('button', { name: 'Sign in' }).waitFor();
      expect((await page.request.get(`${base}/api/v1/users/profile/`)).status()).toBe(401);
      expect((await elsewhere.get('/api/v1/users/profile/')).statusCode).toBe(401);
      expect((await theirs.get('/api/v1/users/profile/')).statusCode).toBe(200);
      const events = await t.database.db
        .select({ details: activities.details })
        .from(activities)
        .where(and(eq(activities.userId, user.id), eq(activities.activityType, 'auth.logout')));
      expect(events.map((e) => e.details)).toEqual([{ method: 'cookie', all: true, sessions_ended: 2 }]);
      await page.context().close();
    }, 60_000);

    it('says on the sign-in page that the session ended when the server ended it, not after signing out', async () => {
      const user = await seedUser(t, orgId, { isSuperuser: true, isStaff: true, email: 'session.ended@example.com' });
      const ended = 'Your session has ended. Sign in again.';
      const page = await newPage();
      await signIn(page, user.email);
      await page.getByTestId('total-users').waitFor();
      // The user's own page: a list's first page depends on how many users other tests left before them.
      await page.goto(`${base}/admin/users/${user.id}/show`);
      await page.getByRole('tab', { name: 'Roles' }).waitFor();

      // Another administrator revokes the session; the console learns it at the next page it opens.
      const other = await superuserClient(t);
      const open = (await other.get(`/api/v1/user-sessions/?user=${user.id}&active=true`)).json() as {
        results: { id: string }[];
      };
      expect(open.results.length).toBeGreaterThan(0);
      for (const session of open.results) {
        expect((await other.delete(`/api/v1/user-sessions/${session.id}/`)).statusCode).toBe(204);
      }
      await page.getByRole('menuitem', { name: 'Activities', exact: true }).click();
      await page.getByRole('button', { name: 'Sign in' }).waitFor();
      await page.getByText(ended).waitFor();

      // Signed in again on that page, then signed out by the user: the sign-in page says nothing of the kind.
      await page.getByLabel('Email or username').fill(user.email);
      await page.getByLabel('Password').fill(TEST_PASSWORD);
      await page.getByRole('button', { name: 'Sign in' }).click();
      await page.getByRole('button', { name: 'Profile' }).waitFor();
      expect(await page.getByText(ended).count()).toBe(0);
      await page.getByRole('button', { name: 'Profile' }).click();
      await page.getByRole('menuitem', { name: 'Logout' }).click();
      await page.getByRole('button', { name: 'Sign in' }).waitFor();
      expect(await page.getByText(ended).count()).toBe(0);
      await page.context().close();
    }, 60_000);

    it('follows a sign-in as someone else in another tab at its next request, or when it is looked at again', async () => {
      const other = await seedOrganization(t);
      const otherAdmin = await seedUser(t, other.id, {
        email: 'olga.other@example.com',
        firstName: 'Olga',
        lastName: 'Other',
      });
      await grantRole(t, otherAdmin, 'org_admin');
      const page = await newPage();
      await signIn(page, admin.email);
      await page.getByTestId('total-users').waitFor();
      const profileButton = page.getByRole('button', { name: 'Profile' });
      await expect.poll(() => profileButton.textContent(), { timeout: STEP_TIMEOUT }).toContain('Ada Admin');
      await page.getByRole('menuitem', { name: 'Organizations', exact: true }).waitFor();

      // Another tab of the same browser signs in as an organization admin of another organization.
      const tab = await page.context().newPage();
      const login = await tab.request.post(`${base}/api/login/`, {
        data: { username: otherAdmin.email, password: TEST_PASSWORD },
      });
      expect(login.status()).toBe(200);
      await tab.goto(`${base}/admin/`);
      await expect
        .poll(() => tab.getByRole('button', { name: 'Profile' }).textContent(), { timeout: STEP_TIMEOUT })
        .toContain('Olga Other');

      // The first tab's next request notices, and the page follows the new identity: name and menus.
      await page.getByRole('menuitem', { name: 'Users', exact: true }).click();
      await expect.poll(() => profileButton.textContent(), { timeout: STEP_TIMEOUT }).toContain('Olga Other');
      await page.getByRole('menuitem', { name: 'Users', exact: true }).waitFor();
      expect(await page.getByRole('menuitem', { name: 'Organizations', exact: true }).count()).toBe(0);

      // Signed in as Ada again from the other tab: the first one follows as soon as it is looked at.
      const back = await tab.request.post(`${base}/api/login/`, {
        data: { username: admin.email, password: TEST_PASSWORD },
      });
      expect(back.status()).toBe(200);
      await page.evaluate('window.dispatchEvent(new Event("focus"))');
      await expect.poll(() => profileButton.textContent(), { timeout: STEP_TIMEOUT }).toContain('Ada Admin');
      await page.getByRole('menuitem', { name: 'Organizations', exact: true }).waitFor();
      await page.context().close();
    }, 60_000);

    /**
     * The console page a mailed link opens, on this test server: the mail names PUBLIC_URL, which
     * here is not the address the server listens on.
     */
    async function mailedLink(address: string, page: string): Promise<string> {
      const { mail } = await lastMailTo(t, address);
      const prefix = `${t.config.publicUrl}/admin/${page}#token=`;
      const url = new RegExp(`${prefix.replace(/[.]/g, '\\.')}[A-Za-z0-9_-]+`).exec(mail?.textBody ?? '')?.[0];
      if (!url) throw new Error(`no ${prefix} link in the mail to ${address}`);
      return `${base}${url.slice(t.config.publicUrl.length)}`;
    }

    /** Every request a page sends, to check that none carries the token anywhere but to this server. */
    function requestsOf(page: Page): { url: string; referer: string | undefined }[] {
      const sent: { url: string; referer: string | undefined }[] = [];
      page.on('request', (request) => sent.push({ url: request.url(), referer: request.headers().referer }));
      return sent;
    }

    it('sets a new password from the mailed reset link, signs in with it, and refuses the used link', async () => {
      const person = await seedUser(t, orgId, { email: 'christine.darden@example.com' });
      const requested = await t.request({
        method: 'POST',
        url: '/api/v1/users/password-reset/',
        payload: { email: person.email },
      });
      expect(requested.statusCode).toBe(202);
      const link = await mailedLink(person.email, 'set-password');
      const token = new URL(link).hash.slice('#token='.length);

      const page = await newPage();
      const sent = requestsOf(page);
      // Not signed in: the page opens all the same, checks the link and asks for the password twice.
      await page.goto(link);
      await page.getByRole('heading', { name: 'Reset your password' }).waitFor();
      await page.getByText(/This link works until/).waitFor();
      const password = page.getByLabel(/^New password\W*$/);
      const repeat = page.getByLabel(/^New password again\W*$/);
      const submit = page.getByRole('button', { name: 'Set password' });

      // Two different entries are caught before anything is sent.
      await password.fill('violet kettle maps 42');
      await repeat.fill('violet kettle maps 43');
      await submit.click();
      await page.getByText('The two passwords differ.').waitFor();

      // The server's password policy answers under the field, and the link keeps working.
      await password.fill('short');
      await repeat.fill('short');
      await submit.click();
      await page.getByText(/at least \d+ characters/i).waitFor();

      await password.fill('violet kettle maps 42');
      await repeat.fill('violet kettle maps 42');
      await submit.click();
      await page.getByText('Your password has been set.').waitFor();
      await page.getByRole('link', { name: 'Sign in' }).click();
      await page.getByLabel('Email or username').fill(person.email);
      await page.getByLabel('Password').fill('violet kettle maps 42');
      await page.getByRole('button', { name: 'Sign in' }).click();
      // Signed in (without administration rights, so the console says it has nothing to show).
      await page.getByText('No access').waitFor();
      const profile = await page.request.get(`${base}/api/v1/users/profile/`);
      expect(profile.status()).toBe(200);
      expect((await profile.json()).email).toBe(person.email);

      // The token went only to this server, in API calls, and never in a Referer.
      expect(sent.length).toBeGreaterThan(0);
      for (const request of sent) {
        expect(request.url.startsWith(`${base}/`), request.url).toBe(true);
        expect(request.referer ?? '', request.url).not.toContain(token);
        if (request.url.includes(token)) expect(request.url).toContain('/api/v1/users/password-reset/confirm');
      }

      // The used link now says so, and offers no form.
      const again = await newPage();
      await again.goto(link);
      await again.getByText(/This link can no longer be used/).waitFor();
      expect(await again.getByLabel(/^New password\W*$/).count()).toBe(0);
      await again.getByRole('link', { name: 'Sign in' }).waitFor();
      // A link without a token, or a made-up one, says the same. (about:blank in between: a URL that
      // differs only in its fragment would not load the page again.)
      await again.goto('about:blank');
      await again.goto(`${base}/admin/set-password#token=made-up`);
      await again.getByText(/This link can no longer be used/).waitFor();
      await again.goto(`${base}/admin/set-password`);
      await again.getByText(/This link can no longer be used/).waitFor();
      await page.context().close();
      await again.context().close();
    }, 90_000);

    it('asks for a reset link from the sign-in page, saying the same whether or not the address has an account', async () => {
      const person = await seedUser(t, orgId, { email: 'katherine.coleman@example.com' });
      const unknown = 'nobody.at.all@example.com';
      const [org] = await t.database.db.select().from(organizations).where(eq(organizations.id, orgId));
      const page = await newPage();
      await page.goto(`${base}/admin/`);
      await page.getByRole('link', { name: 'Forgot your password?' }).click();
      await page.getByRole('heading', { name: 'Forgot your password?' }).waitFor();
      const email = page.getByLabel(/^Email\W*$/);
      const organization = page.getByLabel(/^Organization code/);
      const submit = page.getByRole('button', { name: 'Send the link' });
      const sent = 'If an account uses this address, a link is on its way.';

      // The server's refusal of a malformed address lands under the field, and nothing is said to be sent.
      await email.fill('not an address');
      await submit.click();
      await page.locator('#forgot-email-helper-text').getByText(/email/).waitFor();
      expect(await page.getByText(sent).count()).toBe(0);

      // The server answers alike for an address with an account and one without; so does the page.
      const asked = async (address: string, code?: string) => {
        const answer = page.waitForResponse((r) => r.url().includes('/api/v1/users/password-reset/'));
        await email.fill(address);
        await organization.fill(code ?? '');
        await submit.click();
        expect((await answer).status()).toBe(202);
        await page.getByText(sent).waitFor();
      };
      await asked(unknown);
      expect((await lastMailTo(t, unknown)).mail).toBeUndefined();
      await page.getByRole('button', { name: 'Ask again' }).click();
      await asked(person.email, org?.code);
      const link = await mailedLink(person.email, 'set-password');

      await page.goto(link);
      await page.getByRole('heading', { name: 'Reset your password' }).waitFor();
      await page.getByLabel(/^New password\W*$/).fill('quartz meadow lamp 9');
      await page.getByLabel(/^New password again\W*$/).fill('quartz meadow lamp 9');
      await page.getByRole('button', { name: 'Set password' }).click();
      await page.getByText('Your password has been set.').waitFor();
      await page.getByRole('link', { name: 'Sign in' }).click();
      await page.getByLabel('Email or username').fill(person.email);
      await page.getByLabel('Password').fill('quartz meadow lamp 9');
      await page.getByRole('button', { name: 'Sign in' }).click();
      await page.getByText('No access').waitFor();

      // A spent link leads back to the request page.
      const again = await newPage();
      await again.goto(link);
      await again.getByText(/This link can no longer be used/).waitFor();
      await again.getByRole('link', { name: 'Ask for a new link' }).click();
      await again.getByRole('heading', { name: 'Forgot your password?' }).waitFor();

      // Past the request limit the page says to wait (the test server runs without limits: the
      // browser answers for it, as a limited server would).
      await again.route('**/api/v1/users/password-reset/', (route) =>
        route.fulfill({
          status: 429,
          contentType: 'application/problem+json',
          headers: { 'retry-after': '60' },
          body: JSON.stringify({ status: 429, code: 'rate_limited', detail: 'Too many requests; retry in 60 s.' }),
        }),
      );
      await again.getByLabel(/^Email\W*$/).fill(person.email);
      await again.getByRole('button', { name: 'Send the link' }).click();
      await again.getByText(/Too many requests\. Try again later/).waitFor();
      expect(await again.getByText(sent).count()).toBe(0);
      await page.context().close();
      await again.context().close();
    }, 90_000);

    it('sets a first password from a mailed invitation', async () => {
      const invited = await seedUser(t, orgId, { email: 'annie.easley@example.com', passwordHash: null });
      const admin2 = await loginAs(t, admin);
      expect((await admin2.post(`/api/v1/users/${invited.id}/invite/`)).statusCode).toBe(202);
      const link = await mailedLink(invited.email, 'set-password');
      const token = new URL(link).hash.slice('#token='.length);
      expect(token.length).toBeGreaterThan(20);
      const page = await newPage();
      const urls: string[] = [];
      page.on('request', (request) => urls.push(request.url()));
      await page.goto(link);
      await page.getByText(/This link works until/).waitFor();
      await page.getByRole('heading', { name: 'Set your password' }).waitFor();
      // Someone slow to choose a password keeps the page: no session is no reason to leave it (the
      // console's permission look-up, retried for seconds, used to sign out and go to the sign-in page).
      await page.waitForTimeout(9_000);
      expect(new URL(page.url()).pathname).toBe('/admin/set-password');
      expect(urls.filter((url) => url.endsWith('/api/logout/'))).toEqual([]);
      await page.getByLabel(/^New password\W*$/).fill('granite lantern drift 7');
      await page.getByLabel(/^New password again\W*$/).fill('granite lantern drift 7');
      await page.getByRole('button', { name: 'Set password' }).click();
      await page.getByText('Your password has been set.').waitFor();
      // The token went only in request bodies (and the fragment, which no request carries).
      expect(urls.some((url) => url.includes('/api/v1/users/password-reset/check/'))).toBe(true);
      expect(urls.filter((url) => url.includes(token))).toEqual([]);
      const login = await page.request.post(`${base}/api/login/`, {
        data: { username: invited.email, password: 'granite lantern drift 7' },
      });
      expect(login.status()).toBe(200);
      await page.context().close();
    }, 60_000);

    it('verifies an address from the mailed link and says so; the used link says it is used', async () => {
      const email = 'valerie.thomas@example.com';
      const registered = await t.request({
        method: 'POST',
        url: '/api/v1/users/register/',
        payload: { email, password: 'violet kettle maps 42' },
      });
      expect(registered.statusCode).toBe(201);
      const link = await mailedLink(email, 'verify-email');
      const page = await newPage();
      await page.goto(link);
      await page.getByText('Your email address is verified.').waitFor();
      await page.getByRole('link', { name: 'Sign in' }).waitFor();
      const [row] = await t.database.db.select().from(users).where(eq(users.id, registered.json().id));
      expect(row?.emailVerified).toBe(true);
      await page.goto('about:blank');
      await page.goto(link);
      await page.getByText(/This link can no longer be used/).waitFor();
      await page.context().close();
    }, 60_000);

    it('offers a new verification mail from a spent link, and the new link verifies', async () => {
      const email = 'gladys.west@example.com';
      const registered = await t.request({
        method: 'POST',
        url: '/api/v1/users/register/',
        payload: { email, password: 'amber pylon creek 17' },
      });
      expect(registered.statusCode).toBe(201);
      const first = await mailedLink(email, 'verify-email');
      // A newer link (asked through the API) replaces the first one.
      const resent = await t.request({ method: 'POST', url: '/api/v1/users/verify-email/resend/', payload: { email } });
      expect(resent.statusCode).toBe(202);
      const second = await mailedLink(email, 'verify-email');
      expect(second).not.toBe(first);

      const page = await newPage();
      await page.goto(first);
      await page.getByText(/This link can no longer be used/).waitFor();
      await page.getByLabel(/^Email\W*$/).fill(email);
      await page.getByRole('button', { name: 'Send a new link' }).click();
      await page.getByText('If an unverified account uses this address, a new link is on its way.').waitFor();
      const third = await mailedLink(email, 'verify-email');
      expect(third).not.toBe(second);
      await page.goto('about:blank');
      await page.goto(third);
      await page.getByText('Your email address is verified.').waitFor();
      const [row] = await t.database.db.select().from(users).where(eq(users.id, registered.json().id));
      expect(row?.emailVerified).toBe(true);
      await page.context().close();
    }, 60_000);

    it('keeps the users list and the page of a user within the window when a username is one long word', async () => {
      const username = `u${'x'.repeat(149)}`;
      const long = await seedUser(t, orgId, { email: 'long.name@example.com', username, firstName: 'F'.repeat(150) });
      const page = await newPage();
      await signIn(page, admin.email);
      await page.getByTestId('total-users').waitFor();
      await page.goto(`${base}/admin/users`);
      await page.getByText(username).waitFor();
      // Runs in the page (the test's own types have no DOM).
      const widths = (await page.evaluate(`(() => ({
        table: document.querySelector('table').getBoundingClientRect().right,
        page: document.documentElement.scrollWidth,
        viewport: window.innerWidth,
      }))()`)) as { table: number; page: number; viewport: number };
      expect(widths.table).toBeLessThanOrEqual(widths.viewport);
      expect(widths.page).toBeLessThanOrEqual(widths.viewport);

      await page.goto(`${base}/admin/users/${long.id}/show`);
      await page.getByText(username).first().waitFor();
      // The page is named for the user's email, not their id.
      await expect
        .poll(() => page.locator('#react-admin-title').textContent(), { timeout: STEP_TIMEOUT })
        .toContain('long.name@example.com');
      const pageWidth = (await page.evaluate('document.documentElement.scrollWidth')) as number;
      expect(pageWidth).toBeLessThanOrEqual(widths.viewport);
      await page.context().close();
    }, 60_000);

    // A school's student type: the form's inputs come from this schema (titles, descriptions, enum, formats).
    const studentSchema = {
      type: 'object',
      required: ['student_number'],
      properties: {
        student_number: { type: 'string', title: 'Student number', description: 'As on the student card' },
        grade: { type: 'integer', title: 'Grade', minimum: 1, maximum: 12 },
        track: { type: 'string', title: 'Track', enum: ['science', 'arts'] },
        enrolled_on: { type: 'string', format: 'date', title: 'Enrolled on' },
        boarder: { type: 'boolean', title: 'Boarder' },
        guardian: { type: 'object', title: 'Guardian' },
      },
    };

    /** A fresh organization with the student type and one student, created through the API. */
    async function school() {
      const org = await seedOrganization(t);
      const api = await loginAs(t, admin);
      const type = await api.post('/api/v1/user-types/', {
        code: 'student',
        plural: 'students',
        label: 'Student',
        organization: org.code,
        schema: studentSchema,
      });
      expect(type.statusCode).toBe(201);
      const created = await api.post('/api/v1/users/students/', {
        email: `${org.code}.pupil@example.com`,
        organization: org.code,
        profile: { student_number: 'S0001', grade: 9, guardian: { name: 'Pat' } },
      });
      expect(created.statusCode).toBe(201);
      return { org, api, student: created.json() as { id: string } };
    }

    it("shows a typed user's profile and edits it with inputs from the type's schema, saved through the typed API", async () => {
      const { api, student } = await school();
      const page = await newPage();
      const writes: string[] = [];
      page.on('request', (request) => {
        if (request.method() === 'PATCH') writes.push(new URL(request.url()).pathname);
      });
      await signIn(page, admin.email);
      await page.getByTestId('total-users').waitFor();

      await page.goto(`${base}/admin/users/${student.id}/show`);
      await page.getByText('Student number').first().waitFor();
      await page.getByText('S0001').waitFor();

      await page.goto(`${base}/admin/users/${student.id}`);
      const number = page.getByLabel('Student number');
      await number.waitFor();
      expect(await number.inputValue()).toBe('S0001');
      // Required by the schema: marked so on its label.
      expect(await page.locator('label', { hasText: 'Student number' }).textContent()).toContain('*');
      await page.getByText('As on the student card').waitFor();
      expect(await page.getByLabel('Grade').inputValue()).toBe('9');
      await page.getByLabel('Grade').fill('10');
      await page.getByRole('combobox', { name: 'Track' }).click();
      await page.getByRole('option', { name: 'science' }).click();
      await page.getByLabel('Enrolled on').fill('2024-09-02');
      await page.getByLabel('Boarder').check();
      await page.getByRole('button', { name: 'Save' }).click();
      await expect.poll(() => page.url(), { timeout: STEP_TIMEOUT }).toMatch(/\/show$/);

      expect(writes).toEqual([`/api/v1/users/students/${student.id}/`]);
      const read = await api.get(`/api/v1/users/students/${student.id}/`);
      expect(read.json().profile).toEqual({
        student_number: 'S0001',
        grade: 10,
        track: 'science',
        enrolled_on: '2024-09-02',
        boarder: true,
        guardian: { name: 'Pat' },
      });
      await page.getByText('science').waitFor();
      await page.context().close();
    }, 60_000);

    it("shows the server's refusal of a profile value at its input, and saves once corrected", async () => {
      const { api, student } = await school();
      const page = await newPage();
      await signIn(page, admin.email);
      await page.getByTestId('total-users').waitFor();
      await page.goto(`${base}/admin/users/${student.id}`);
      const grade = page.getByLabel('Grade');
      await grade.waitFor();
      // The schema's maximum is the server's to apply: the console sends the value and shows the answer.
      await grade.fill('13');
      await page.getByRole('button', { name: 'Save' }).click();
      await page.getByText('must be <= 12').waitFor();
      expect(await grade.getAttribute('aria-invalid')).toBe('true');
      expect(page.url()).toMatch(new RegExp(`/users/${student.id}$`));
      expect((await api.get(`/api/v1/users/students/${student.id}/`)).json().profile.grade).toBe(9);

      // The JSON fallback of an object field refuses what is not JSON before anything is sent.
      const guardian = page.getByLabel('Guardian');
      await guardian.fill('{"name": ');
      await page.getByRole('button', { name: 'Save' }).click();
      await page.getByText('Not valid JSON').waitFor();
      await guardian.fill('{"name": "Sam"}');
      await grade.fill('12');
      await page.getByRole('button', { name: 'Save' }).click();
      await expect.poll(() => page.url(), { timeout: STEP_TIMEOUT }).toMatch(/\/show$/);
      const profile = (await api.get(`/api/v1/users/students/${student.id}/`)).json().profile;
      expect(profile).toMatchObject({ grade: 12, guardian: { name: 'Sam' }, student_number: 'S0001' });
      await page.context().close();
    }, 60_000);

    it('creates a typed user from the console: the type picked, its profile filled', async () => {
      const { org, api } = await school();
      const page = await newPage();
      await signIn(page, admin.email);
      await page.getByTestId('total-users').waitFor();
      await page.goto(`${base}/admin/users/create`);
      await page.getByLabel('Email').fill(`${org.code}.new@example.com`);
      await page.getByLabel('Organization code').fill(org.code);
      await page.getByRole('combobox', { name: 'User type' }).click();
      await page.getByRole('option', { name: 'Student (student)' }).click();
      await page.getByLabel('Student number').fill('S0042');
      await page.getByLabel('Grade').fill('7');
      await page.getByRole('button', { name: 'Save' }).click();
      await expect.poll(() => page.url(), { timeout: STEP_TIMEOUT }).toMatch(/\/admin\/users\/[0-9a-f-]{36}\/show$/);
      const id = /users\/([0-9a-f-]{36})\/show/.exec(page.url())![1]!;
      const read = await api.get(`/api/v1/users/students/${id}/`);
      expect(read.statusCode).toBe(200);
      expect(read.json()).toMatchObject({ user_type: 'student', profile: { student_number: 'S0042', grade: 7 } });
      await page.context().close();
    }, 60_000);

    it('creates a user type from the console that the API then serves, edits it, and deletes it once unused', async () => {
      const org = await seedOrganization(t);
      const api = await loginAs(t, admin);
      const page = await newPage();
      await signIn(page, admin.email);
      await page.getByTestId('total-users').waitFor();
      await page.getByRole('menuitem', { name: 'User types', exact: true }).click();
      await page.getByRole('link', { name: 'Create' }).click();
      await page.getByLabel(/^Code/).fill('teacher');
      await page.getByLabel(/^Name/).fill('Teacher');
      await page.getByLabel(/^Plural/).fill('teachers');
      await page.getByLabel('Organization code', { exact: true }).fill(org.code);
      const schema = page.getByLabel('Schema');
      // Not JSON, then JSON the server refuses as a schema: each said at the Schema input.
      await schema.fill('{"type": "object",');
      await page.getByRole('button', { name: 'Save' }).click();
      await page.getByText('Not valid JSON').waitFor();
      await schema.fill('{"type": "object", "properties": {"subject": {"type": "strin"}}}');
      await page.getByRole('button', { name: 'Save' }).click();
      await expect.poll(() => schema.getAttribute('aria-invalid'), { timeout: STEP_TIMEOUT }).toBe('true');
      await schema.fill(
        JSON.stringify({ type: 'object', required: ['subject'], properties: { subject: { type: 'string' } } }),
      );
      await page.getByRole('button', { name: 'Save' }).click();
      await expect.poll(() => page.url(), { timeout: STEP_TIMEOUT }).toMatch(/\/admin\/user-types$/);
      await page.getByRole('cell', { name: 'teachers', exact: true }).waitFor();

      // The API serves the new type's users at once, and applies its schema.
      const refused = await api.post('/api/v1/users/teachers/', {
        email: `${org.code}.t0@example.com`,
        organization: org.code,
        profile: {},
      });
      expect(refused.json()).toMatchObject({ status: 400, errors: [{ field: 'profile.subject' }] });
      const teacher = await api.post('/api/v1/users/teachers/', {
        email: `${org.code}.t1@example.com`,
        organization: org.code,
        profile: { subject: 'maths' },
      });
      expect(teacher.statusCode).toBe(201);

      // Edited: the new name is stored.
      await page.getByRole('cell', { name: 'teachers', exact: true }).click();
      await page.getByLabel(/^Name/).fill('Teaching staff');
      await page.getByRole('button', { name: 'Save' }).click();
      await expect.poll(() => page.url(), { timeout: STEP_TIMEOUT }).toMatch(/\/admin\/user-types$/);
      const types = (await api.get(`/api/v1/user-types/?organization=${org.code}`)).json().results as {
        id: string;
        code: string;
        label: string;
      }[];
      const stored = types.find((type) => type.code === 'teacher');
      expect(stored?.label).toBe('Teaching staff');

      // Deleting a type its users hold is refused, and the console says why; unused, it goes.
      await page.goto(`${base}/admin/user-types/${stored!.id}`);
      await page.getByRole('button', { name: 'Delete' }).click();
      await page.getByRole('dialog').getByRole('button', { name: 'Confirm' }).click();
      await page
        .getByText(/still has users/)
        .first()
        .waitFor();
      expect((await api.get(`/api/v1/user-types/${stored!.id}/`)).statusCode).toBe(200);
      expect((await api.delete(`/api/v1/users/teachers/${teacher.json().id}/`)).statusCode).toBe(204);
      await page.getByRole('button', { name: 'Delete' }).click();
      await page.getByRole('dialog').getByRole('button', { name: 'Confirm' }).click();
      await expect.poll(() => page.url(), { timeout: STEP_TIMEOUT }).toMatch(/\/admin\/user-types$/);
      expect((await api.get(`/api/v1/user-types/${stored!.id}/`)).statusCode).toBe(404);
      await page.context().close();
    }, 90_000);

    it("creates an organization admin's user type in their organization when the Organization code is left empty", async () => {
      const org = await seedOrganization(t);
      const orgAdmin = await seedUser(t, org.id, { email: `${org.code}.types@example.com` });
      await grantRole(t, orgAdmin, 'org_admin');
      const sent: unknown[] = [];
      const page = await newPage();
      page.on('request', (request) => {
        if (request.method() === 'POST' && new URL(request.url()).pathname === '/api/v1/user-types/') {
          sent.push(request.postDataJSON());
        }
      });
      await signIn(page, orgAdmin.email);
      await page.getByRole('menuitem', { name: 'User types', exact: true }).waitFor();
      await page.goto(`${base}/admin/user-types/create`);
      await page.getByText('Empty: your organization').waitFor();
      await page.getByLabel(/^Code/).fill('mentor');
      await page.getByLabel(/^Name/).fill('Mentor');
      await page.getByLabel(/^Plural/).fill('mentors');
      // Typed and emptied again: the input is then '' or null, and neither may reach the API.
      const organization = page.getByLabel('Organization code', { exact: true });
      await organization.fill('x');
      await organization.fill('');
      await page.getByRole('button', { name: 'Save' }).click();
      await expect.poll(() => page.url(), { timeout: STEP_TIMEOUT }).toMatch(/\/admin\/user-types$/);
      expect(sent).toHaveLength(1);
      expect(sent[0]).not.toHaveProperty('organization');
      const api = await loginAs(t, orgAdmin);
      const types = (await api.get('/api/v1/user-types/')).json().results as { code: string; organization: unknown }[];
      expect(types.find((type) => type.code === 'mentor')?.organization).toBe(org.code);
      await page.context().close();
    }, 60_000);
  },
);
