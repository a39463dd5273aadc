// Drives the wsgate dashboard in headless Chromium for admin's
// TestDashboardInBrowser, which runs it as
//
//	node dashboard.mjs '{"url": ..., "token": ..., "chromium": ..., "screenshots": DIR, "expect": [...]}'
//
// At each step it prints "step NAME [JSON]" and waits for one line of JSON
// on stdin: the Go test acts (closes a tunnel, checks the API) and answers
// with what the page must show next. Any failed check throws: the script
// exits 1 with the reason on stderr, after closing the browser.
import { chromium } from 'playwright-core';
import { createInterface } from 'node:readline';
import { join } from 'node:path';

const cfg = JSON.parse(process.argv[2]);
const answers = createInterface({ input: process.stdin })[Symbol.asyncIterator]();
const WAIT = 10_000;

async function step(name, arg) {
  console.log('step ' + name + (arg === undefined ? '' : ' ' + JSON.stringify(arg)));
  const { value, done } = await answers.next();
  if (done) throw new Error('the Go test went away at step ' + name);
  return JSON.parse(value);
}

function check(cond, msg) {
  if (!cond) throw new Error(msg);
}

// rowsText is what the page shows for each backend, for error messages.
function rowsText(page) {
  return page.evaluate(() => [...document.querySelectorAll('tr[data-address]')].map((tr) =>
    [tr.dataset.pool, tr.dataset.address, tr.querySelector('.state').textContent,
      'active ' + tr.querySelector('.active').textContent, 'total ' + tr.querySelector('.total').textContent].join(' ')));
}

// waitRows waits until the page shows exactly the backends in expect, with
// their state and counts.
async function waitRows(page, expect, what) {
  try {
    await page.waitForFunction((exp) => {
      const rows = [...document.querySelectorAll('tr[data-address]')];
      return rows.length === exp.length && exp.every((e) => {
        const tr = rows.find((r) => r.dataset.pool === e.pool && r.dataset.address === e.address);
        return tr && tr.querySelector('.state').textContent === e.state &&
          tr.querySelector('.active').textContent === String(e.active) &&
          tr.querySelector('.total').textContent === String(e.total);
      });
    }, expect, { timeout: WAIT });
  } catch (e) {
    throw new Error(what + ': the page shows ' + JSON.stringify(await rowsText(page)) +
      ', want ' + JSON.stringify(expect));
  }
}

async function main(page, requests) {
  await page.goto(cfg.url);

  // The admin listener has a token: the page asks for it, and shows no
  // backend until it has it.
  const login = page.locator('#login');
  await login.waitFor({ state: 'visible', timeout: WAIT });
  check(await page.locator('tr[data-address]').count() === 0, 'backends shown before the token was given');
  await page.getByLabel('Token').fill('not-the-token');
  await page.getByRole('button', { name: 'Use token' }).click();
  await page.getByText('The token was not accepted').waitFor({ timeout: WAIT });
  await page.getByLabel('Token').fill(cfg.token);
  await page.getByRole('button', { name: 'Use token' }).click();
  await login.waitFor({ state: 'hidden', timeout: WAIT });
  check(await page.evaluate(() => sessionStorage.getItem('wsgate-admin-token')) === cfg.token,
    'the token is not kept in sessionStorage');

  // The tunnels held: every pool, every backend, the right counts.
  await waitRows(page, cfg.expect, 'the tunnels held');
  for (const pool of ['app', 'chat']) {
    await page.getByRole('heading', { name: 'Pool ' + pool }).waitFor({ timeout: WAIT });
  }
  const health = await page.locator('tr[data-address] .health').allTextContents();
  check(health.every((h) => h === 'probe passed'), 'last health results ' + JSON.stringify(health) + ', want "probe passed"');

  // A tunnel closes: the page follows without a reload (the marker set in
  // this document survives).
  await page.evaluate(() => { window.dashboardTestMarker = 'same document'; });
  const afterClose = await step('counted');
  await waitRows(page, afterClose, 'after a tunnel closed');
  check(await page.evaluate(() => window.dashboardTestMarker) === 'same document', 'the page was reloaded');

  // The charts: a line per backend, the upgrade and close rates by label.
  await page.waitForFunction(() => document.querySelectorAll('#chart-active path[data-series]').length === 3,
    null, { timeout: WAIT });
  await page.locator('#chart-upgrades .legend li', { hasText: 'ok' }).waitFor({ timeout: WAIT });
  await page.locator('#chart-closes .legend li', { hasText: '1000 normal' }).waitFor({ timeout: WAIT });
  const label = await page.locator('#chart-active svg').getAttribute('aria-label');
  check(/^Active connections per backend over the last .*: now /.test(label), 'active chart label ' + label);

  // Drain the second app backend with its button.
  const target = afterClose.filter((b) => b.pool === 'app')[1];
  await page.getByRole('button', { name: 'Drain ' + target.address + ' in pool app', exact: true }).click();
  const row = page.locator(`tr[data-pool="app"][data-address="${target.address}"]`);
  await row.locator('.state', { hasText: 'draining' }).waitFor({ timeout: WAIT });
  await row.getByRole('button', { name: 'Undrain ' + target.address + ' in pool app', exact: true }).waitFor({ timeout: WAIT });
  const afterDrain = await step('drained', { pool: 'app', address: target.address });
  await waitRows(page, afterDrain, 'after the drain and two new tunnels');
  await page.screenshot({ path: join(cfg.screenshots, 'dashboard.png'), fullPage: true });

  // And back.
  await row.getByRole('button', { name: 'Undrain ' + target.address + ' in pool app', exact: true }).click();
  await row.locator('.state', { hasText: 'healthy' }).waitFor({ timeout: WAIT });
  const afterUndrain = await step('undrained');
  await waitRows(page, afterUndrain, 'after the undrain');
  check(await page.evaluate(() => window.dashboardTestMarker) === 'same document', 'the page was reloaded');

  // A phone's width: the same page, laid out as cards.
  await page.setViewportSize({ width: 390, height: 844 });
  await page.waitForFunction(() => document.querySelector('#chart-active svg').getAttribute('viewBox').split(' ')[2] < 400,
    null, { timeout: WAIT });
  await page.screenshot({ path: join(cfg.screenshots, 'dashboard-phone.png'), fullPage: true });

  // Live, not polled: one document, no request for /api/backends, and the
  // event stream fetched three times (no token, the wrong one, the right
  // one) and never again.
  check(requests.documents === 1, requests.documents + ' document loads, want 1');
  check(requests.backends === 0, requests.backends + ' requests for /api/backends, want 0 (polling?)');
  check(requests.events === 3, requests.events + ' requests for /api/events, want 3');
  check(requests.external.length === 0, 'requests outside the admin listener: ' + requests.external.join(', '));
  await step('done');
}

const browser = await chromium.launch({
  executablePath: cfg.chromium,
  headless: true,
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
    '--disable-component-update', '--disable-sync'],
});
let failed = false;
try {
  const page = await browser.newPage({ viewport: { width: 1280, height: 720 } });
  page.setDefaultTimeout(WAIT);
  const errors = [];
  page.on('pageerror', (e) => errors.push(e.message));
  const origin = new URL(cfg.url).origin;
  const requests = { documents: 0, backends: 0, events: 0, external: [] };
  page.on('request', (r) => {
    const u = new URL(r.url());
    if (u.protocol === 'data:') return;
    if (u.origin !== origin) requests.external.push(r.url());
    if (r.resourceType() === 'document') requests.documents++;
    if (u.pathname === '/api/backends') requests.backends++;
    if (u.pathname === '/api/events') requests.events++;
  });
  await main(page, requests);
  check(errors.length === 0, 'errors in the page: ' + errors.join('; '));
} catch (e) {
  failed = true;
  console.error(e.stack || String(e));
} finally {
  await browser.close();
}
process.exit(failed ? 1 : 0);
