// A real browser through the demo client, for tests/demo_browser.rs.
//
//   node tests/browser/demo.mjs <demo-client-url> <username> <password> <wait-after-revoke-ms>
//
// Headless Chromium (Debian's, at $CHROMIUM or /usr/bin/chromium), driven by playwright-core:
// opens the demo client, clicks "Sign in with Tessera", signs in and allows on Tessera's pages,
// and back on the demo client calls GET /api/user/profile, refreshes, calls it again, revokes,
// waits (the API may serve its cached answer for up to its cache TTL), and calls
// GET /api/protected. Prints one JSON line with what each step showed, plus what the browser
// holds (cookies, local and session storage) and any long token-like string found in the pages.
// Anything unexpected, or a step taking over 20 s, exits 1 with a message on stderr.

import { launchChromium, STEP_MS } from './chromium.mjs';

const [url, username, password, waitMs] = process.argv.slice(2);
if (!url || username === undefined || password === undefined || waitMs === undefined) {
  console.error('usage: node tests/browser/demo.mjs <demo-client-url> <username> <password> <wait-after-revoke-ms>');
  process.exit(2);
}

const browser = await launchChromium();
let page;
const leaks = new Set();
// Tessera's tokens are a prefix and 43 base64url characters; the demo client shows 8 characters.
const TOKEN_LIKE = /ts[arc]_[A-Za-z0-9_-]{16,}/g;
async function scan() {
  for (const m of (await page.content()).matchAll(TOKEN_LIKE)) leaks.add(m[0].slice(0, 12));
  for (const m of page.url().matchAll(TOKEN_LIKE)) leaks.add(m[0].slice(0, 12));
}
const text = async (id) => ((await page.locator(`#${id}`).textContent()) ?? '').trim();
async function click(id) {
  await Promise.all([page.waitForLoadState('load'), page.locator(`#${id}`).click()]);
  await page.locator('h1').waitFor();
  await scan();
}
async function lastCall() {
  return { status: await text('api-status'), path: await text('api-path'), body: await text('api-body') };
}

try {
  page = await browser.newPage();
  page.setDefaultTimeout(STEP_MS);
  const response = await page.goto(url);
  if (response?.status() !== 200) throw new Error(`the demo client answered ${response?.status()}`);
  await page.locator('#sign-in').click();

  await page.getByLabel('Username').fill(username);
  await page.getByLabel('Password').fill(password);
  await page.getByRole('button', { name: 'Sign in' }).click();
  const allow = page.getByRole('button', { name: 'Allow', exact: true });
  await allow.or(page.locator('#access-token')).waitFor();
  if (await allow.isVisible()) await allow.click();
  await page.locator('#access-token').waitFor();
  await scan();
  const signedIn = { url: page.url(), access_token: await text('access-token'), refresh_token: await text('refresh-token'), scope: await text('scope') };

  await click('call-profile');
  const profile = await lastCall();

  await click('refresh');
  const refreshed = { access_token: await text('access-token'), refresh_token: await text('refresh-token') };
  await click('call-profile');
  const profileAfterRefresh = await lastCall();

  await click('revoke');
  const revoked = { status: await text('token-status') };
  await page.waitForTimeout(Number(waitMs));
  await click('call-protected');
  const afterRevoke = await lastCall();

  const context = page.context();
  const storage = await page.evaluate(() => ({ local: localStorage.length, session: sessionStorage.length }));
  const cookies = (await context.cookies()).map((c) => ({
    name: c.name,
    httpOnly: c.httpOnly,
    token_like: new RegExp(TOKEN_LIKE.source).test(decodeURIComponent(c.value)),
  }));
  console.log(JSON.stringify({ signedIn, profile, refreshed, profileAfterRefresh, revoked, afterRevoke, storage, cookies, leaks: [...leaks] }));
} catch (err) {
  console.error(`demo.mjs: ${err.message}`);
  if (page) console.error(`at ${page.url()}:\n${(await page.content().catch(() => '')).slice(0, 3000)}`);
  process.exitCode = 1;
} finally {
  await browser.close();
}
