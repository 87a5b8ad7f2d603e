import { createServer } from 'node:net';
import type { Browser, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { hasChromium, launchChromium } from '../../../test/chromium.js';
import { startTestApp, type TestApp } from '../../../test/test-app.js';

const STEP_TIMEOUT = 15_000;

/** A loopback port free now, so the documented server address (PUBLIC_URL) is the one listened on. */
function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const probe = createServer();
    probe.once('error', reject);
    probe.listen(0, '127.0.0.1', () => {
      const { port } = probe.address() as { port: number };
      probe.close(() => resolve(port));
    });
  });
}

interface Operation {
  operationId: string;
  tags?: string[];
}

describe.skipIf(!hasChromium())(
  'interactive API documentation in headless Chromium (skipped where /usr/bin/chromium is missing)',
  () => {
    let t: TestApp;
    let browser: Browser;
    let base: string;

    beforeAll(async () => {
      const port = await freePort();
      base = `http://127.0.0.1:${port}`;
      t = await startTestApp({ PUBLIC_URL: base });
      await t.app.listen({ host: '127.0.0.1', port });
      browser = await launchChromium();
    }, 120_000);

    afterAll(async () => {
      await browser?.close();
      await t?.close();
    });

    async function openDocs(): Promise<Page> {
      const page = await browser.newPage();
      page.setDefaultTimeout(STEP_TIMEOUT);
      await page.goto(`${base}/api/docs`);
      await page.locator('.opblock').first().waitFor();
      return page;
    }

    it('shows every documented operation as the reader scrolls', async () => {
      const doc = (await (await fetch(`${base}/api/openapi.json`)).json()) as {
        paths: Record<string, Record<string, Operation>>;
      };
      // The UI names each operation block after its first tag and operationId.
      const expected = Object.values(doc.paths)
        .flatMap((methods) => Object.values(methods))
        .map((op) => `operations-${op.tags?.[0] ?? 'default'}-${op.operationId}`)
        .sort();
      expect(expected.length).toBeGreaterThan(100);

      // Long documents are rendered a screenful at a time: read each screen down to the end.
      const page = await openDocs();
      const seen = new Set<string>();
      for (let screen = 0; screen < 500; screen++) {
        for (const id of await page.locator('.opblock').evaluateAll((blocks) => blocks.map((b) => b.id))) seen.add(id);
        const atEnd = await page.evaluate(
          '(() => { const before = window.scrollY; window.scrollBy(0, window.innerHeight / 2); return window.scrollY === before; })()',
        );
        if (atEnd) break;
        await page.waitForTimeout(30);
      }
      for (const id of await page.locator('.opblock').evaluateAll((blocks) => blocks.map((b) => b.id))) seen.add(id);
      expect([...seen].sort()).toEqual(expected);
      await page.close();
    });

    it('opens an operation from a deep link and runs it against this server', async () => {
      const page = await browser.newPage();
      page.setDefaultTimeout(STEP_TIMEOUT);
      // The last group in the document: reachable only once the list scrolls to it.
      await page.goto(`${base}/api/docs#/mail-outbox/listOutboxMail`);
      const block = page.locator('#operations-mail-outbox-listOutboxMail');
      await block.locator('.opblock-body').waitFor();
      await page.close();

      const tryIt = await browser.newPage();
      tryIt.setDefaultTimeout(STEP_TIMEOUT);
      await tryIt.goto(`${base}/api/docs#/health/health`);
      const health = tryIt.locator('#operations-health-health');
      await health.locator('.opblock-body').waitFor();
      await health.getByRole('button', { name: 'Try it out' }).click();
      await health.getByRole('button', { name: 'Execute' }).click();
      const status = health.locator('.live-responses-table .response .response-col_status');
      await expect
        .poll(async () => (await status.first().textContent())?.trim(), { timeout: STEP_TIMEOUT })
        .toBe('200');
      await expect
        .poll(async () =>
          JSON.parse((await health.locator('.live-responses-table .microlight').first().textContent()) ?? 'null'),
        )
        .toMatchObject({ status: 'ok', database: 'ok' });
      await tryIt.close();
    });
  },
);
