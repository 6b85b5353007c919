// Inline forms on a marketer's page (another origin, strict CSP) enhanced by /inlet.js.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { setup, unique, eventually, sleep } from './harness.mjs';

const ready = (page) => page.waitForFunction(() => window.inlet && document.querySelector('form[data-inlet]')?.noValidate);

/** Sends the contact form's first request through `first`, later ones to Inlet; returns the
 * idempotency key of every request, in order. */
async function failFirst(page, first) {
  const keys = [];
  await page.route('**/v1/forms/contact/submissions', async (route) => {
    keys.push(new URLSearchParams(route.request().postData()).get('_idem'));
    if (keys.length === 1) await first(route);
    else await route.continue();
  });
  return keys;
}

/** A fresh Inlet, the marketer's site and a browser on its landing page, script ready. */
async function landing(t, query = '', opts = undefined) {
  const env = await setup(t, opts);
  await env.page.goto(env.site.url + '/landing.html' + query);
  await ready(env.page);
  return env;
}

async function fillContact(page, email, name = 'Ann Lee') {
  await page.fill('#c-name', name);
  await page.fill('#c-email', email);
}

test('inline submit stores the lead and shows the success message', async (t) => {
  const { inlet, page } = await landing(t);
  const email = unique('inline');
  await fillContact(page, email);
  await page.fill('#c-message', 'Tell me more');
  await page.click('#contact button[type=submit]');
  await page.waitForSelector('#contact[data-inlet-state=success]');
  assert.match(await page.textContent('#contact [data-inlet-message]'), /get back to you/);
  assert.equal(await page.getAttribute('#contact button[type=submit]', 'disabled'), '');
  const leads = await inlet.leads('&form=contact');
  assert.equal(leads.length, 1);
  assert.equal(leads[0].email, email);
  assert.equal(leads[0].latest_submission.fields.message, 'Tell me more');
  assert.equal(leads[0].latest_submission.spam, false);
  const events = await page.evaluate(() => window.__events.map((e) => e.type));
  assert.deepEqual(events, ['ready', 'submitted']);
  const detail = await page.evaluate(() => window.__events[1].detail);
  assert.equal(detail.submission_id, leads[0].latest_submission.id);
  assert.ok(!('lead_id' in detail), 'the page learns no lead id');
});

test('a 422 marks each bad field with its message and focuses the first', async (t) => {
  const { inlet, page } = await landing(t);
  const requests = [];
  page.on('request', (r) => { if (r.url().includes('/submissions')) requests.push(r); });

  // Empty required fields are caught before any request, shown the same way.
  await page.click('#contact button[type=submit]');
  await page.waitForSelector('#contact[data-inlet-state=error]');
  assert.equal(await page.getAttribute('#c-name', 'aria-invalid'), 'true');
  assert.equal(await page.evaluate(() => document.activeElement.id), 'c-name');
  assert.equal(requests.length, 0, 'invalid in the browser: nothing sent');

  // Values the browser accepts but Inlet refuses: the server's 422 decides.
  await page.fill('#c-name', 'Ann');
  await page.fill('#c-email', 'ann@localhost');
  await page.fill('#c-phone', 'call me maybe');
  await page.click('#contact button[type=submit]');
  await eventually(() => page.evaluate(() => document.querySelectorAll('#contact .inlet-error').length === 2), 5000, '2 field errors');
  assert.equal(requests.length, 1);
  assert.equal(await page.getAttribute('#c-name', 'aria-invalid'), null, 'a good field is not marked');
  for (const [id, text] of [['c-email', /domain with a dot/], ['c-phone', /phone number/]]) {
    assert.equal(await page.getAttribute('#' + id, 'aria-invalid'), 'true', id);
    const described = await page.getAttribute('#' + id, 'aria-describedby');
    assert.match(await page.textContent('#' + described), text, id);
  }
  assert.equal(await page.evaluate(() => document.activeElement.id), 'c-email', 'focus on the first bad field');
  assert.equal(await page.getAttribute('#contact button[type=submit]', 'disabled'), null, 'button usable again');
  assert.deepEqual(await inlet.submissions(), [], 'nothing stored');
  const err = await page.evaluate(() => window.__events.find((e) => e.type === 'error' && e.detail.status === 422));
  assert.ok(err, 'inlet:error fired with the status');

  // Corrected: the marks go away and the lead is stored.
  await page.fill('#c-email', unique('fixed'));
  await page.fill('#c-phone', '+44 20 7946 0958');
  await page.click('#contact button[type=submit]');
  await page.waitForSelector('#contact[data-inlet-state=success]');
  assert.equal(await page.locator('#contact .inlet-error').count(), 0);
  assert.equal(await page.getAttribute('#c-email', 'aria-invalid'), null);
  assert.equal((await inlet.submissions()).length, 1);
});

test('with JavaScript off the same form posts and lands on the thank-you page', async (t) => {
  const { inlet, site, page } = await setup(t, { context: { javaScriptEnabled: false } });
  await page.goto(site.url + '/landing.html');
  const email = unique('nojs');
  await fillContact(page, email);
  await Promise.all([page.waitForURL(/\/thanks\?form=contact&back=/), page.click('#contact button[type=submit]')]);
  assert.ok(page.url().startsWith(inlet.url), 'the redirect is Inlet\'s page');
  assert.match(await page.textContent('body'), /get back to you/);
  // The browser sent only the site's origin as Referer (its default across sites): the way
  // back leads there.
  assert.equal(await page.getAttribute('text=Back to the page', 'href'), site.url + '/');
  const leads = await inlet.leads();
  assert.deepEqual(leads.map((l) => l.email), [email]);
});

test('UTM parameters from the landing URL travel to a submission on a later page', async (t) => {
  const { inlet, site, page } = await setup(t);
  await page.goto(site.url + '/landing.html?utm_source=newsletter&utm_medium=email&utm_campaign=spring-launch&gclid=g-123');
  await ready(page);
  await Promise.all([page.waitForURL(/later\.html$/), page.click('#later')]);
  await ready(page);
  const email = unique('utm');
  await fillContact(page, email);
  await page.click('#contact button[type=submit]');
  await page.waitForSelector('#contact[data-inlet-state=success]');
  const [s] = await inlet.submissions();
  assert.equal(s.email, email);
  assert.equal(s.attribution.utm_source, 'newsletter');
  assert.equal(s.attribution.utm_medium, 'email');
  assert.equal(s.attribution.utm_campaign, 'spring-launch');
  assert.equal(s.attribution.more.gclid, 'g-123');
  assert.match(s.attribution.landing_page, /\/landing\.html\?utm_source=newsletter/);
  assert.equal(s.attribution.more.page_title, 'Acme: pricing');
  const first = JSON.parse(s.attribution.more.first_touch);
  assert.equal(first.utm_campaign, 'spring-launch');
  assert.ok(JSON.parse(s.attribution.more.last_touch).landing_page.includes('landing.html'));
  assert.deepEqual(s.extra, {}, 'attribution is not mistaken for form fields');
});

test('with data-first-touch="off" nothing is kept in localStorage', async (t) => {
  const { site, page } = await setup(t);
  await page.goto(site.url + '/landing.html?utm_source=ads&first_touch=off');
  await ready(page);
  assert.equal(await page.evaluate(() => Object.keys(localStorage).filter((k) => k.startsWith('inlet:')).length), 0);
  await page.goto(site.url + '/landing.html?utm_source=ads');
  await ready(page);
  assert.ok(await page.evaluate(() => localStorage.getItem('inlet:first')), 'control: kept when on');
});

test('a network failure is retried with the same key: exactly one lead', async (t) => {
  const { inlet, page } = await landing(t);
  const keys = await failFirst(page, async (route) => {
    // The request reaches Inlet and is committed, but the answer is lost on the way back.
    await route.fetch();
    await route.abort('connectionreset');
  });
  const email = unique('retry');
  await fillContact(page, email);
  await page.click('#contact button[type=submit]');
  await page.waitForSelector('#contact[data-inlet-state=success]', { timeout: 15000 });
  assert.equal(keys.length, 2, 'one retry');
  assert.match(keys[0], /^[0-9a-f]{32}$/, 'an idempotency key is sent: 32 hex digits');
  // Time first: keys sort by when they were made (the server's index appends them).
  const made = parseInt(keys[0].slice(0, 12), 16);
  assert.ok(Math.abs(made - Date.now()) < 60_000, `the key starts with the time: ${keys[0]}`);
  assert.equal(keys[0], keys[1], 'the retry reuses the key');
  const subs = await inlet.submissions();
  assert.equal(subs.length, 1, 'exactly one submission');
  assert.equal(subs[0].email, email);
});

test('503 with Retry-After is retried; a new attempt gets a new key', async (t) => {
  const { inlet, page } = await landing(t);
  // Inlet's own overload answer, replayed: the writer queue was full.
  const keys = await failFirst(page, (route) => route.fulfill({
    status: 503, contentType: 'application/json', body: '{"error":"overloaded","message":"busy"}',
    headers: { 'Retry-After': '1', 'Access-Control-Allow-Origin': '*', 'Access-Control-Expose-Headers': 'Retry-After' },
  }));
  await fillContact(page, unique('busy'));
  await page.click('#contact button[type=submit]');
  await page.waitForSelector('#contact[data-inlet-state=success]', { timeout: 15000 });
  assert.equal(keys.length, 2);
  assert.equal(keys[0], keys[1]);
  assert.equal((await inlet.submissions()).length, 1);
  // A second form on the page is a separate attempt with its own key.
  await page.fill('#w-email', unique('other'));
  await page.fill('#w-name', 'Bo');
  await page.check('#whitepaper input[name=consent]');
  const req = page.waitForRequest('**/v1/forms/whitepaper/submissions');
  await page.click('#whitepaper button[type=submit]');
  const other = new URLSearchParams((await req).postData()).get('_idem');
  assert.notEqual(other, keys[0]);
});

test('the inline submit and the view beacons send no CORS preflight (seen in the browser\'s network events)', async (t) => {
  const { site, page, context } = await setup(t);
  const cdp = await context.newCDPSession(page);
  await cdp.send('Network.enable');
  const seen = [];
  cdp.on('Network.requestWillBeSent', (e) => {
    if (e.request.url.includes('/v1/forms/')) seen.push({ method: e.request.method, type: e.type, url: e.request.url });
  });
  await page.goto(site.url + '/landing.html');
  await ready(page);
  await fillContact(page, unique('preflight'));
  await page.click('#contact button[type=submit]');
  await page.waitForSelector('#contact[data-inlet-state=success]');
  const posts = seen.filter((r) => r.method === 'POST' && r.url.endsWith('/submissions'));
  assert.equal(posts.length, 1);
  // The forms on the page reported their views by beacon, once each, also without a preflight.
  const beacons = seen.filter((r) => r.method === 'POST' && r.url.endsWith('/views'));
  assert.ok(beacons.some((r) => r.url.endsWith('/v1/forms/contact/views')), JSON.stringify(seen));
  assert.equal(beacons.length, new Set(beacons.map((r) => r.url)).size, 'one view per form');
  assert.deepEqual(seen.filter((r) => r.method === 'OPTIONS' || r.type === 'Preflight'), [], 'no preflight');

  // Control: a JSON request from the same page does need a preflight, and it is seen.
  await page.evaluate((url) => fetch(url, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: '{}' }).catch(() => {}),
    posts[0].url);
  await eventually(() => seen.some((r) => r.method === 'OPTIONS' || r.type === 'Preflight'), 5000, 'the control preflight');
});

test('with data-views="off" the page reports no view', async (t) => {
  const { site, page, context } = await setup(t);
  const cdp = await context.newCDPSession(page);
  await cdp.send('Network.enable');
  const urls = [];
  cdp.on('Network.requestWillBeSent', (e) => urls.push(e.request.url));
  await page.goto(site.url + '/landing.html?views=off');
  await ready(page);
  await fillContact(page, unique('noviews'));
  await page.click('#contact button[type=submit]');
  await page.waitForSelector('#contact[data-inlet-state=success]');
  assert.ok(urls.some((u) => u.endsWith('/submissions')), 'the control: requests are seen');
  assert.deepEqual(urls.filter((u) => u.endsWith('/views')), []);
});

test('twenty rapid clicks on submit store one submission', async (t) => {
  const { inlet, page } = await landing(t);
  const email = unique('clicks');
  await fillContact(page, email);
  const box = await page.locator('#contact button[type=submit]').boundingBox();
  for (let i = 0; i < 20; i++) {
    await page.mouse.click(box.x + box.width / 2, box.y + box.height / 2);
  }
  await page.waitForSelector('#contact[data-inlet-state=success]');
  await sleep(500);
  const subs = await inlet.submissions();
  assert.equal(subs.length, 1, 'one submission');
  assert.equal(subs[0].email, email);
});

test('the time trap: the script reports how long the form was on screen; fast alone is a signal, not spam', async (t) => {
  const { inlet, page } = await landing(t, '', { inletEnv: { INLET_SPAM_MIN_SUBMIT_MS: '3000' } });
  // A fast submit (autofill and Enter, or a bot) is accepted and kept as a lead, with the
  // time signal recorded: one weak signal never hides a lead...
  await fillContact(page, unique('fast'));
  await page.click('#contact button[type=submit]');
  await page.waitForSelector('#contact[data-inlet-state=success]');
  // ...and a person who took their time shows none.
  await sleep(3100);
  await page.fill('#w-email', unique('slow'));
  await page.fill('#w-name', 'Slow');
  await page.check('#whitepaper input[name=consent]');
  await page.click('#whitepaper button[type=submit]');
  await page.waitForSelector('#whitepaper[data-inlet-state=success]');
  assert.deepEqual(await inlet.submissions('&spam=true'), [], 'nothing quarantined');
  const subs = await inlet.submissions('&spam=false');
  const signals = Object.fromEntries(subs.map((s) => [s.form_id, s.spam_signals]));
  assert.match(signals.contact, /^(very_fast|too_fast)$/, JSON.stringify(signals));
  assert.equal(signals.whitepaper, null);
  // The honeypot the script added is hidden from people and screen readers.
  const hp = await page.evaluate(() => {
    const i = document.querySelector('#contact input[name=_gotcha]');
    return i && { tab: i.tabIndex, hidden: i.closest('[aria-hidden=true]') !== null, w: i.getBoundingClientRect().right };
  });
  assert.deepEqual({ tab: hp.tab, hidden: hp.hidden, off: hp.w <= 0 }, { tab: -1, hidden: true, off: true });
});

test('gated download: the browser receives the exact file bytes', async (t) => {
  const { inlet, site, page } = await setup(t);
  const { readFileSync } = await import('node:fs');
  const expected = readFileSync(new URL('../demo/whitepaper.pdf', import.meta.url));
  await page.goto(site.url + '/landing.html');
  await ready(page);
  const email = unique('download');
  await page.fill('#w-email', email);
  await page.fill('#w-name', 'Dee');
  await page.check('#whitepaper input[name=consent]');
  const [download] = await Promise.all([page.waitForEvent('download'), page.click('#whitepaper button[type=submit]')]);
  assert.equal(download.suggestedFilename(), 'whitepaper.pdf');
  const got = readFileSync(await download.path());
  assert.ok(got.equals(expected), `downloaded ${got.length} bytes, expected ${expected.length}`);
  const link = await page.getAttribute('#whitepaper [data-inlet-message] a', 'href');
  assert.ok(link.startsWith(inlet.url + '/v1/downloads/d.'), `the signed link is shown too: ${link}`);
  const detail = await page.evaluate(() => window.__events.find((e) => e.type === 'submitted').detail);
  assert.equal(detail.download_url, link);
  assert.deepEqual((await inlet.leads('&form=whitepaper')).map((l) => l.email), [email]);
});

async function powLanding(t, query) {
  const { writeFileSync, mkdtempSync } = await import('node:fs');
  const { join } = await import('node:path');
  const { tmpdir } = await import('node:os');
  const config = join(mkdtempSync(join(tmpdir(), 'inlet-pow-')), 'inlet.toml');
  writeFileSync(config, `
[[forms]]
id = "contact"
kind = "inline"
allowed_origins = ["*"]
fields = [
  { name = "name", type = "text", required = true },
  { name = "email", type = "email", required = true },
  { name = "phone", type = "tel" },
  { name = "message", type = "textarea" },
]
[forms.challenge]
kind = "pow"
difficulty = 20000
`);
  return landing(t, query, { inletEnv: { INLET_CONFIG: config } });
}

for (const [how, query] of [['in a worker', '?worker=blob'], ['in slices on the page (CSP allows no worker)', '']]) {
  test(`a proof-of-work form is solved ${how}; the solver loads only then; the lead is stored`, async (t) => {
    const { inlet, page } = await powLanding(t, query);
    const scripts = []; // fetched scripts (not the worker's own blob: URL)
    page.on('request', (r) => {
      if (r.resourceType() === 'script' && !r.url().startsWith('blob:')) scripts.push(new URL(r.url()).pathname);
    });
    const email = unique('pow');
    await fillContact(page, email);
    await page.click('#contact button[type=submit]');
    await page.waitForSelector('#contact[data-inlet-state=success]', { timeout: 30000 });
    assert.deepEqual(scripts, ['/inlet/0.1.0/inlet-pow.js'], 'the solver is loaded when a form needs it');
    const leads = await inlet.leads('&form=contact');
    assert.equal(leads.length, 1);
    assert.equal(leads[0].email, email);
    assert.ok(!('_altcha' in (leads[0].latest_submission.extra || {})), 'the solution is not stored');
    const csp = await page.evaluate(() => window.__csp.map((v) => v.directive));
    if (query) assert.deepEqual(csp, [], 'the worker ran within the page\'s policy');
    else assert.ok(csp.length > 0 && csp.every((d) => /^(worker|script)-src/.test(d)), JSON.stringify(csp));
  });
}
