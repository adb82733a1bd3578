// Shared by the browser scripts: Debian's Chromium ($CHROMIUM or /usr/bin/chromium), headless,
// driven by playwright-core, which downloads no browser of its own.
import { chromium } from 'playwright-core';

// The longest any one step may take.
export const STEP_MS = 20_000;

export function launchChromium() {
  return chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    args: ['--no-sandbox'],
    headless: true,
    timeout: STEP_MS,
  });
}
