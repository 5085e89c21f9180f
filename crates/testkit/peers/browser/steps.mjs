// Drives a scripted visit of pages (the admin console, say) in headless Debian Chromium with
// playwright-core, for Latchkey's tests. Run by crates/testkit/src/peers/browser.rs (`run_steps`).
//
//   node steps.mjs '<json>'
//
// Input (JSON):
//   base_url        the origin the pages belong to; any request elsewhere is reported (required)
//   steps           the steps, in order (required), each an object with one action:
//     {"goto": "/path"}                    open base_url + path
//     {"fill": "<selector>", "value": "…"} type into a field
//     {"select": "<selector>", "value": "…"} choose an option of a select
//     {"click": "<selector>"}              click; a navigation must follow
//     {"focus": "<selector>"}              focus an element
//     {"press": "Enter"}                   press a key on the focused element; a navigation must follow
//     {"expect_text": "…"}                 the page's text must contain it
//     {"expect_path": "/path"}             the page's path (and query) must be exactly this
//     {"viewport": [390, 844]}             resize the window (a phone's, say)
//     {"fits": true}                       the page must not scroll sideways (wide tables
//                                          scroll inside their own box)
//     {"tab_walk": true}                   press Tab from the top of the page until focus has
//                                          gone round: every visible link, button, input,
//                                          select and textarea must have had focus
//   screenshot_dir  where each page visited is saved as NN-<page>.png (required)
//   timeout_ms      for the whole visit, browser start included (default 60000)
//   executable      the browser (default /usr/bin/chromium)
//
// Every page the browser lands on (after a goto, click or press) is screenshotted (full page),
// and its HTML kept for the report.
//
// Output: one JSON line on stdout:
//   {"pages": [{"url", "screenshot", "html"}], "requests": [every request URL],
//    "foreign": [requests to another origin], "walks": [{"url", "controls", "missed": [...]}],
//    "error": "…" (only when a step failed), "step": <index of the failing step>}
// Exit 0 when every step passed, 1 otherwise.
//
// With LATCHKEY_FLOW_LIFELINE=1 the script exits when its standard input closes (the test
// process went away).

import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
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

const emit = (o) => process.stdout.write(`${JSON.stringify(o)}\n`);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

let input;
try {
  input = JSON.parse(process.argv[2]);
  if (typeof input.base_url !== 'string' || !Array.isArray(input.steps) || typeof input.screenshot_dir !== 'string') {
    throw new Error('input needs "base_url", "steps" and "screenshot_dir"');
  }
} catch (e) {
  emit({ error: `bad input: ${e.message}` });
  process.exit(2);
}

const timeoutMs = Number.isFinite(input.timeout_ms) ? input.timeout_ms : 60000;
const deadline = Date.now() + timeoutMs;
const remaining = () => Math.max(1, deadline - Date.now());
const origin = new URL(input.base_url).origin;
const report = { pages: [], requests: [], foreign: [], walks: [] };
const userDataDir = mkdtempSync(join(tmpdir(), 'latchkey-chromium-'));
mkdirSync(input.screenshot_dir, { recursive: true });
let browser = null;
let page = null;
let navigations = 0;

async function finish(code) {
  if (browser) await Promise.race([browser.close().catch(() => {}), sleep(5000)]);
  rmSync(userDataDir, { recursive: true, force: true });
  // A report over 64 KiB (a page of the whole provider catalog) is cut off by an exit before
  // the pipe has taken it: exit once it is written.
  await new Promise((resolve) => process.stdout.write(`${JSON.stringify(report)}\n`, resolve));
  process.exit(code);
}

setTimeout(() => {
  report.error = `timed out after ${timeoutMs} ms`;
  finish(1);
}, timeoutMs).unref();

if (process.env.LATCHKEY_FLOW_LIFELINE === '1') {
  process.stdin.on('end', () => finish(1));
  process.stdin.resume();
}

function slug(url) {
  const u = new URL(url);
  const path = u.pathname.replace(/^\/console\/?/, '') || 'sign-in';
  return path.replace(/[^A-Za-z0-9]+/g, '-').replace(/^-|-$/g, '');
}

async function landed() {
  await page.waitForLoadState('load', { timeout: remaining() });
  const n = String(report.pages.length + 1).padStart(2, '0');
  const file = join(input.screenshot_dir, `${n}-${slug(page.url())}.png`);
  await page.screenshot({ path: file, fullPage: true, timeout: remaining() });
  report.pages.push({ url: page.url(), screenshot: file, html: await page.content() });
}

async function navigating(action) {
  const before = navigations;
  await action();
  while (navigations === before) {
    if (Date.now() >= deadline) throw new Error('no page followed');
    await sleep(25);
  }
  await landed();
}

// Every control a keyboard user must reach, marked with data-walk=<n>; then Tab until focus
// comes back to one seen already (or far past the number of controls).
async function tabWalk() {
  const controls = await page.evaluate(() => {
    const all = document.querySelectorAll('a[href], button, input:not([type="hidden"]), select, textarea');
    const out = [];
    all.forEach((el) => {
      const r = el.getBoundingClientRect();
      const style = getComputedStyle(el);
      if (el.disabled || style.visibility === 'hidden' || style.display === 'none') return;
      if (r.width === 0 && r.height === 0 && !el.classList.contains('skip')) return;
      el.setAttribute('data-walk', String(out.length));
      out.push(`${el.tagName.toLowerCase()} ${(el.getAttribute('aria-label') || el.textContent || el.getAttribute('name') || '').trim().slice(0, 60)}`);
    });
    document.activeElement?.blur();
    return out;
  });
  await page.evaluate(() => window.scrollTo(0, 0));
  const seen = new Set();
  for (let i = 0; i < controls.length * 2 + 10; i += 1) {
    await page.keyboard.press('Tab');
    const at = await page.evaluate(() => document.activeElement?.getAttribute('data-walk'));
    if (at !== null && at !== undefined) seen.add(Number(at));
    if (seen.size === controls.length) break;
  }
  const missed = controls.filter((_, i) => !seen.has(i));
  report.walks.push({ url: page.url(), controls: controls.length, missed });
}

async function run() {
  browser = await chromium.launchPersistentContext(userDataDir, {
    executablePath: input.executable || '/usr/bin/chromium',
    headless: true,
    args: CHROMIUM_ARGS,
    timeout: remaining(),
    viewport: { width: 1100, height: 800 },
  });
  page = browser.pages()[0] ?? (await browser.newPage());
  page.setDefaultTimeout(remaining());
  browser.on('request', (request) => {
    const url = request.url();
    report.requests.push(url);
    if (!url.startsWith('data:') && !url.startsWith('about:') && new URL(url).origin !== origin) report.foreign.push(url);
  });
  page.on('framenavigated', (frame) => {
    if (frame === page.mainFrame()) navigations += 1;
  });
  for (const [i, step] of input.steps.entries()) {
    report.step = i;
    if (step.goto !== undefined) {
      await navigating(() => page.goto(origin + step.goto, { waitUntil: 'load', timeout: remaining() }));
    } else if (step.fill !== undefined) {
      await page.fill(step.fill, String(step.value ?? ''), { timeout: remaining() });
    } else if (step.select !== undefined) {
      await page.selectOption(step.select, String(step.value ?? ''), { timeout: remaining() });
    } else if (step.click !== undefined) {
      await navigating(() => page.click(step.click, { timeout: remaining() }));
    } else if (step.focus !== undefined) {
      await page.focus(step.focus, { timeout: remaining() });
    } else if (step.press !== undefined) {
      await navigating(() => page.keyboard.press(step.press));
    } else if (step.expect_text !== undefined) {
      const text = await page.innerText('body');
      if (!text.includes(step.expect_text)) throw new Error(`the page at ${page.url()} does not say "${step.expect_text}"`);
    } else if (step.expect_path !== undefined) {
      const u = new URL(page.url());
      if (u.pathname + u.search !== step.expect_path) throw new Error(`at ${page.url()}, expected ${step.expect_path}`);
    } else if (step.viewport !== undefined) {
      await page.setViewportSize({ width: step.viewport[0], height: step.viewport[1] });
    } else if (step.fits) {
      const [scroll, width] = await page.evaluate(() => [document.documentElement.scrollWidth, window.innerWidth]);
      if (scroll > width) throw new Error(`the page at ${page.url()} is ${scroll} px wide in a ${width} px window`);
    } else if (step.tab_walk) {
      await tabWalk();
    } else {
      throw new Error(`unknown step ${JSON.stringify(step)}`);
    }
  }
  delete report.step;
  await finish(0);
}

run().catch(async (e) => {
  report.error = e && e.message ? e.message.split('\n')[0] : String(e);
  try {
    if (page) report.pages.push({ url: page.url(), screenshot: null, html: (await page.content()).slice(0, 4000) });
  } catch {
    // the page is gone
  }
  await finish(1);
});
