// A real browser on Tessera's login page, for tests/browser.rs.
//
//   node tests/browser/login.mjs <authorize-url> <username> <password>
//
// Headless Chromium (Debian's, at $CHROMIUM or /usr/bin/chromium), driven by playwright-core,
// opens the authorization URL, fills the login form by its labels and clicks "Sign in". Then:
//   - on the consent page it clicks "Allow" and waits for the client's redirect URI, and prints
//     {"outcome":"redirected","url":"<the callback URL with code, state and iss>"};
//   - if the login page comes back with an alert, it prints {"outcome":"refused","message":"<alert>"}.
// Anything else (an unexpected page, a step taking over 20 s) exits 1 with a message on stderr.
// Nothing listens on the redirect URI (demo-client's http://127.0.0.1:3001/callback): the browser's
// request there is answered here, so the final URL is all that is read.

import { launchChromium, STEP_MS } from './chromium.mjs';

const CALLBACK = 'http://127.0.0.1:3001/';

const [url, username, password] = process.argv.slice(2);
if (!url || username === undefined || password === undefined) {
  console.error('usage: node tests/browser/login.mjs <authorize-url> <username> <password>');
  process.exit(2);
}

const browser = await launchChromium();
let page;
try {
  page = await browser.newPage();
  page.setDefaultTimeout(STEP_MS);
  await page.route(`${CALLBACK}**`, (route) =>
    route.fulfill({ status: 200, contentType: 'text/plain', body: 'callback reached' }),
  );
  const atCallback = () => page.url().startsWith(CALLBACK);

  const response = await page.goto(url);
  if (response?.status() !== 200) throw new Error(`the login page answered ${response?.status()}`);
  await page.getByLabel('Username').fill(username);
  await page.getByLabel('Password').fill(password);
  await page.getByRole('button', { name: 'Sign in' }).click();

  // Whichever comes first: the consent page, the login page with an alert, or (consent already
  // given) the callback itself.
  const allow = page.getByRole('button', { name: 'Allow', exact: true });
  const alert = page.getByRole('alert');
  await allow.or(alert).or(page.getByText('callback reached')).waitFor();

  let result;
  if (atCallback()) {
    result = { outcome: 'redirected', url: page.url() };
  } else if (await alert.isVisible()) {
    result = { outcome: 'refused', message: (await alert.textContent()).trim() };
  } else {
    await allow.click();
    await page.waitForURL((u) => u.href.startsWith(CALLBACK));
    result = { outcome: 'redirected', url: page.url() };
  }
  console.log(JSON.stringify(result));
} catch (err) {
  console.error(`login.mjs: ${err.message}`);
  if (page) console.error(`at ${page.url()}:\n${(await page.content().catch(() => '')).slice(0, 2000)}`);
  process.exitCode = 1;
} finally {
  await browser.close();
}
