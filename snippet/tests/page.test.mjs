// The page as a whole: the strict CSP, accessibility (axe-core), the demo landing page Inlet
// serves at /, screenshots for review, and the script's build and size budget.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { axe, setup, unique, SHOTS } from './harness.mjs';

test('a strict Content-Security-Policy page reports zero violations', async (t) => {
  const { site, page } = await setup(t);
  await page.goto(site.url + '/landing.html?trigger=delay:0');
  await page.waitForSelector('dialog[open]');
  await page.fill('dialog[open] #n-email', unique('csp'));
  await page.click('dialog[open] button[type=submit]');
  await page.waitForSelector('dialog[open] form[data-inlet-state=success]');
  await page.keyboard.press('Escape');
  await page.fill('#c-name', 'Csp');
  await page.fill('#c-email', 'bad@localhost'); // an error state too
  await page.click('#contact button[type=submit]');
  await page.waitForSelector('#contact .inlet-error');
  assert.deepEqual(await page.evaluate(() => window.__csp), [], 'no CSP violation');
  // Control: the listener does see a violation when there is one (an inline script).
  await page.addScriptTag({ content: 'window.__inline = 1;' }).catch(() => {});
  await page.waitForFunction(() => window.__csp.length > 0);
  assert.equal(await page.evaluate(() => window.__csp[0].directive), 'script-src-elem');
});

test('axe-core finds no serious or critical violation: form, error state, open pop-up', async (t) => {
  const { site, page } = await setup(t, { context: { bypassCSP: true } }); // to inject axe
  await page.goto(site.url + '/landing.html');
  await page.waitForFunction(() => window.inlet);
  assert.deepEqual(await axe(page, '#contact'), [], 'the form');
  await page.fill('#c-name', 'Axe');
  await page.fill('#c-email', 'axe@localhost');
  await page.fill('#c-phone', 'not a phone');
  await page.click('#contact button[type=submit]');
  await page.waitForSelector('#contact .inlet-error');
  assert.deepEqual(await axe(page, '#contact'), [], 'the error state');
  await page.click('#opener');
  await page.waitForSelector('dialog[open]');
  assert.deepEqual(await axe(page, 'dialog[open]'), [], 'the open pop-up');
});

test('the demo page at / works with the served script, passes axe, and is screenshotted', async (t) => {
  const { inlet, page, context } = await setup(t, { context: { bypassCSP: true } });
  mkdirSync(SHOTS, { recursive: true });
  const resp = await page.goto(inlet.url + '/');
  assert.match(resp.headers()['content-security-policy'], /script-src 'self'/);
  await page.waitForFunction(() => window.inlet);
  for (const id of ['contact', 'whitepaper']) {
    assert.equal(await page.locator(`form[data-inlet=${id}]`).count(), 1, id);
  }
  assert.equal(await page.locator('template[data-inlet-popup=newsletter]').getAttribute('data-trigger'), 'delay:15 exit');
  assert.deepEqual(await axe(page, 'body'), [], 'the demo page');
  await page.screenshot({ path: join(SHOTS, 'demo-page.png'), fullPage: true });

  // The contact form on the demo page stores a lead.
  const email = unique('demo');
  await page.fill('#contact-name', 'Demo Visitor');
  await page.fill('#contact-email', email);
  await page.click('form[data-inlet=contact] button[type=submit]');
  await page.waitForSelector('form[data-inlet=contact][data-inlet-state=success]');
  assert.deepEqual((await inlet.leads('&form=contact')).map((l) => l.email), [email]);

  // The newsletter pop-up, opened from the header link.
  await page.click('a[data-inlet-open=newsletter]');
  await page.waitForSelector('dialog[data-inlet-popup=newsletter][open]');
  assert.deepEqual(await axe(page, 'dialog[open]'), [], 'the demo pop-up');
  await page.screenshot({ path: join(SHOTS, 'demo-popup.png') });
  console.log(`# screenshots: ${SHOTS}/demo-page.png, ${SHOTS}/demo-popup.png`);

  // Without the bypass, Inlet's own page runs under its CSP with no violation.
  const strict = await context.browser().newContext();
  const p2 = await strict.newPage();
  const violations = [];
  p2.on('console', (m) => { if (/Content Security Policy/i.test(m.text())) violations.push(m.text()); });
  await p2.goto(inlet.url + '/');
  await p2.waitForFunction(() => window.inlet);
  await p2.click('a[data-inlet-open=newsletter]');
  await p2.waitForSelector('dialog[open]');
  assert.deepEqual(violations, []);
  await strict.close();
});

test('the served script is the built one and stays within 6 KB gzipped', async () => {
  execFileSync(process.execPath, [new URL('../build.mjs', import.meta.url).pathname, '--check'], { stdio: 'inherit' });
  const { readFileSync } = await import('node:fs');
  const min = readFileSync(new URL('../dist/inlet.min.js', import.meta.url));
  const size = gzipSync(min, { level: 9 }).length;
  console.log(`# inlet.min.js: ${min.length} bytes, ${size} bytes gzipped (budget 6144)`);
  assert.ok(size <= 6144, `${size} bytes gzipped is over the 6 KB budget`);
  // No eval-like constructs or cookies: the CSP and privacy promises, checked in the source.
  const src = readFileSync(new URL('../inlet.js', import.meta.url), 'utf8');
  for (const bad of [/\beval\(/, /new Function\(/, /document\.cookie/, /innerHTML/, /setAttribute\('on/]) {
    assert.doesNotMatch(src, bad);
  }
});

test('without JavaScript: errors name fields by their labels, the thank-you page links back; both pass axe', async (t) => {
  const { inlet, site, browser } = await setup(t);
  mkdirSync(SHOTS, { recursive: true });
  const nojs = await browser.newContext({ javaScriptEnabled: false });
  const page = await nojs.newPage();
  const landing = site.url + '/nojs.html';

  // A mistyped address and no consent: a page that names what the visitor saw.
  await page.goto(landing);
  await page.fill('#w-email', 'nope');
  await page.fill('#w-name', 'No Script');
  await Promise.all([page.waitForNavigation(), page.click('button[type=submit]')]);
  const error = await page.textContent('body');
  assert.match(error, /Please check the form/);
  assert.match(error, /Work email: is not a valid email address/);
  assert.match(error, /I agree to receive the whitepaper and related emails: must be checked/);
  assert.doesNotMatch(error, /consent must be checked/);
  await page.screenshot({ path: join(SHOTS, 'nojs-error.png'), fullPage: true });
  const errorHtml = await page.content();
  await page.click('text=Go back and try again');
  await page.waitForURL(landing);

  // Fixed: the thank-you page, with the download and a way back to the page.
  await page.fill('#w-email', unique('nojs'));
  await page.fill('#w-name', 'No Script');
  await page.check('input[name=consent]');
  await Promise.all([page.waitForNavigation(), page.click('button[type=submit]')]);
  assert.match(page.url(), /\/thanks\?form=whitepaper&download=/);
  assert.match(await page.textContent('body'), /Your whitepaper is on its way/);
  assert.equal(await page.getAttribute('text=Back to the page', 'href'), landing);
  await page.screenshot({ path: join(SHOTS, 'nojs-thanks.png'), fullPage: true });
  const thanksUrl = page.url();
  await page.click('text=Back to the page');
  await page.waitForURL(landing);

  // axe needs script: the same pages in a context that runs it.
  const checker = await browser.newContext({ bypassCSP: true });
  const p = await checker.newPage();
  await p.goto(thanksUrl);
  assert.deepEqual(await axe(p, 'body'), [], 'the thank-you page');
  await p.goto(inlet.url + '/healthz');
  await p.setContent(errorHtml);
  assert.deepEqual(await axe(p, 'body'), [], 'the error page');
  console.log(`# screenshots: ${SHOTS}/nojs-error.png, ${SHOTS}/nojs-thanks.png`);
});
