// Drives one browser flow (an OAuth2 authorization-code round trip, say) in headless Debian
// Chromium with playwright-core, for Latchkey's tests. Run by crates/testkit/src/peers/browser.rs.
//
//   node flow.mjs '<json>'        or        echo '<json>' | node flow.mjs
//
// Input (JSON):
//   start_url      the page to open first (required)
//   expect_prefix  the flow is done once the page's URL starts with this (required)
//   click          optional selector (e.g. "text=Connect") clicked once after start_url loads
//   login          login name typed into a login form (default "alice")
//   password       password typed into a login form (default "any-password")
//   timeout_ms     for the whole flow, browser start included (default 20000)
//   screenshot     optional path: a PNG of the last page, saved on success and on failure
//   executable     the browser (default /usr/bin/chromium)
//
// Pages on the way are handled in a loop until the URL starts with expect_prefix:
//   - a page with input[name=login]: fill login and password, submit the form;
//   - a consent page (oidc-provider's devInteractions: a form with a hidden prompt=consent, or a
//     submit button labelled Continue/Allow/Authorize/Accept/Approve/Consent/Yes): submit it;
//   - anything else: wait for the next navigation (redirects, scripts).
//
// Output: one JSON line on stdout.
//   success (exit 0): {"final_url": "...", "steps": [every main-frame navigation request, redirect
//                     hops included], "cookies": <number of cookies in the browser>}
//   failure (exit 1): {"error": "...", "final_url": "...", "steps": [...], "html": "<first 2000
//                     characters of the page>"}
//   bad input (exit 2): {"error": "..."}
//
// With LATCHKEY_FLOW_LIFELINE=1 in the environment the script exits (closing the browser) when its
// standard input reaches end-of-file: the Rust side keeps that pipe open, so a test process that
// dies takes the browser with it.

import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

const CONSENT_BUTTON = /^\s*(continue|allow|authori[sz]e|accept|approve|consent|yes)\b/i;

function emit(object) {
  process.stdout.write(`${JSON.stringify(object)}\n`);
}

function readInput() {
  const text = process.argv[2] ?? (process.env.LATCHKEY_FLOW_LIFELINE === '1' ? '' : readFileSync(0, 'utf8'));
  let input;
  try {
    input = JSON.parse(text);
  } catch (e) {
    throw new Error(`input is not JSON (${e.message}): ${text.slice(0, 200)}`);
  }
  if (typeof input !== 'object' || input === null) throw new Error('input must be a JSON object');
  for (const key of ['start_url', 'expect_prefix']) {
    if (typeof input[key] !== 'string' || input[key] === '') throw new Error(`input needs a string "${key}"`);
  }
  return {
    startUrl: input.start_url,
    expectPrefix: input.expect_prefix,
    click: typeof input.click === 'string' && input.click !== '' ? input.click : null,
    login: String(input.login ?? 'alice'),
    password: String(input.password ?? 'any-password'),
    timeoutMs: Number.isFinite(input.timeout_ms) && input.timeout_ms > 0 ? input.timeout_ms : 20000,
    screenshot: typeof input.screenshot === 'string' && input.screenshot !== '' ? input.screenshot : null,
    executable: typeof input.executable === 'string' && input.executable !== '' ? input.executable : '/usr/bin/chromium',
  };
}

let input;
try {
  input = readInput();
} catch (e) {
  emit({ error: e.message });
  process.exit(2);
}

const started = Date.now();
const deadline = started + input.timeoutMs;
const remaining = () => Math.max(1, deadline - Date.now());
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

const steps = [];
let browser = null;
let page = null;
let finished = false;
let navigations = 0; // main-frame documents committed so far
const userDataDir = mkdtempSync(join(tmpdir(), 'latchkey-chromium-'));

async function pageState() {
  let html = '';
  let finalUrl = '';
  // A navigation still under way when the deadline struck (a slow, loaded machine) is let
  // settle first, so that the report shows the page the browser was going to, not an error
  // about a page in transit; the caller bounds the whole of this at 3 s.
  for (let attempt = 0; attempt < 5; attempt++) {
    try {
      if (page) await page.waitForLoadState('load', { timeout: 500 }).catch(() => {});
      finalUrl = page ? page.url() : '';
      html = page ? await page.content() : '';
      break;
    } catch (e) {
      finalUrl = page ? page.url() : '';
      html = `(page content unavailable: ${e.message})`;
      await sleep(100);
    }
  }
  return { finalUrl, html: html.slice(0, 2000) };
}

async function screenshot() {
  if (!input.screenshot || !page) return;
  try {
    await page.screenshot({ path: input.screenshot, fullPage: true, timeout: 5000 });
  } catch (e) {
    process.stderr.write(`screenshot to ${input.screenshot} failed: ${e.message}\n`);
  }
}

async function closeBrowser() {
  if (browser) {
    const b = browser;
    browser = null;
    await Promise.race([b.close().catch(() => {}), sleep(5000)]);
  }
  rmSync(userDataDir, { recursive: true, force: true });
}

async function fail(message) {
  if (finished) return;
  finished = true;
  const { finalUrl, html } = await Promise.race([
    pageState(),
    sleep(3000).then(() => ({ finalUrl: page ? page.url() : '', html: '(page content timed out)' })),
  ]);
  await screenshot();
  emit({ error: message, final_url: finalUrl, steps, html, elapsed_ms: Date.now() - started });
  await closeBrowser();
  process.exit(1);
}

// A hard stop, whatever the browser is doing.
const watchdog = setTimeout(() => {
  fail(`timed out after ${input.timeoutMs} ms without reaching ${input.expectPrefix}`);
  // If even the failure report hangs, go anyway.
  setTimeout(() => process.exit(1), 10000).unref();
}, input.timeoutMs);

if (process.env.LATCHKEY_FLOW_LIFELINE === '1') {
  process.stdin.on('end', () => fail('standard input closed (the test process went away)'));
  process.stdin.on('error', () => fail('standard input failed (the test process went away)'));
  process.stdin.resume();
}

// What the current page asks for: {kind: 'login' | 'consent', submit: <locator of the button to
// press>}, or null for a page to wait on.
async function classify() {
  const loginForm = page.locator('form:has(input[name="login"])');
  if ((await loginForm.count()) > 0) return { kind: 'login', submit: loginForm.first().locator('[type="submit"]').first() };
  const consentForm = page.locator('form:has(input[name="prompt"][value="consent"])');
  if ((await consentForm.count()) > 0) return { kind: 'consent', submit: consentForm.first().locator('[type="submit"]').first() };
  const buttons = page.locator('form button[type="submit"], form input[type="submit"]');
  const n = await buttons.count();
  for (let i = 0; i < n; i += 1) {
    const button = buttons.nth(i);
    const label = (await button.textContent()) || (await button.getAttribute('value')) || '';
    if (CONSENT_BUTTON.test(label)) return { kind: 'consent', submit: button };
  }
  return null;
}

// Runs `action` and waits until the main frame has committed a new document.
async function andWaitForNavigation(action) {
  const before = navigations;
  await action();
  while (navigations === before) {
    if (Date.now() >= deadline) throw new Error('no navigation followed the submit');
    await sleep(25);
  }
}

async function run() {
  browser = await chromium.launchPersistentContext(userDataDir, {
    executablePath: input.executable,
    headless: true,
    args: CHROMIUM_ARGS,
    timeout: remaining(),
  });
  page = browser.pages()[0] ?? (await browser.newPage());
  page.setDefaultTimeout(remaining());
  page.on('request', (request) => {
    if (request.isNavigationRequest() && request.frame() === page.mainFrame()) steps.push(request.url());
  });
  page.on('framenavigated', (frame) => {
    if (frame === page.mainFrame()) navigations += 1;
  });

  await page.goto(input.startUrl, { waitUntil: 'domcontentloaded', timeout: remaining() });
  if (input.click && !page.url().startsWith(input.expectPrefix)) {
    await andWaitForNavigation(() => page.click(input.click, { timeout: remaining() }));
  }

  const handled = new Map();
  while (!page.url().startsWith(input.expectPrefix)) {
    // The same words as the watchdog's: whichever notices the deadline first reports it.
    if (Date.now() >= deadline) throw new Error(`timed out after ${input.timeoutMs} ms without reaching ${input.expectPrefix}`);
    try {
      await page.waitForLoadState('domcontentloaded', { timeout: remaining() });
      if (page.url().startsWith(input.expectPrefix)) break;
      const found = await classify();
      if (found === null) {
        await sleep(50);
        continue;
      }
      // Never loop forever on a form that comes back (wrong password, an error, ...).
      const key = `${found.kind} ${page.url()}`;
      const count = (handled.get(key) ?? 0) + 1;
      handled.set(key, count);
      if (count > 3) throw new Error(`the ${found.kind} form at ${page.url()} keeps coming back`);
      if (found.kind === 'login') {
        await page.locator('input[name="login"]').first().fill(input.login);
        const password = page.locator('input[name="password"]');
        if ((await password.count()) > 0) await password.first().fill(input.password);
      }
      await andWaitForNavigation(() => found.submit.click({ timeout: remaining() }));
    } catch (e) {
      // A navigation while we looked at the page destroys its context: look again.
      if (/context was destroyed|navigat|Target closed|detached/i.test(e.message) && Date.now() < deadline) {
        await sleep(50);
        continue;
      }
      throw e;
    }
  }

  await page.waitForLoadState('domcontentloaded', { timeout: remaining() }).catch(() => {});
  const cookies = (await browser.cookies()).length;
  await screenshot();
  if (finished) return;
  finished = true;
  clearTimeout(watchdog);
  emit({ final_url: page.url(), steps, cookies, elapsed_ms: Date.now() - started });
  await closeBrowser();
  process.exit(0);
}

run().catch((e) => fail(e && e.message ? e.message.split('\n')[0] : String(e)));
