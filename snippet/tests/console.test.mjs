// The marketer's console in a real browser: the set-up link from the startup banner, the lead
// list with its filters, a lead's timeline, the CSV export, erasure with its confirmation, and
// signing out and in again; every screen passes axe and is screenshotted for review. The pages
// carry no script: a second run with JavaScript off signs in and filters the same way.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { axe, eventually, setup, SHOTS } from './harness.mjs';

const PASSWORD = 'correct horse battery staple';

async function seed(inlet, site, page) {
  // One lead the way a visitor makes one: the landing page's form on the marketer's site.
  await page.goto(site.url + '/landing.html?trigger=exit');
  await page.waitForFunction(() => window.inlet);
  await page.fill('#c-name', 'Jane Visitor');
  await page.fill('#c-email', 'jane@visitor.test');
  await page.click('#contact button[type=submit]');
  await page.waitForSelector('#contact[data-inlet-state=success]');
  // A few more straight to the API, from campaigns.
  for (const [form, email, source, name] of [
    ['contact', 'ann@acme.test', 'linkedin', 'Ann Acme'],
    ['contact', 'bob@acme.test', 'google', 'Bob Acme'],
    ['newsletter', 'cat@letters.test', 'newsletter', ''],
  ]) {
    const r = await fetch(`${inlet.url}/v1/forms/${form}/submissions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ email, name: name || undefined, company: form === 'contact' ? 'Acme' : undefined, utm_source: source, utm_medium: 'cpc', _elapsed_ms: 4000 }),
    });
    assert.equal(r.status, 201, await r.text());
  }
}

test('the console: set up, find a lead, read its timeline, export, erase, sign out and in; axe and screenshots', async (t) => {
  const { inlet, site, browser } = await setup(t, { inletEnv: { INLET_VIEWS__FLUSH_SECS: '1' } });
  mkdirSync(SHOTS, { recursive: true });
  const visitor = await browser.newContext();
  await seed(inlet, site, await visitor.newPage());
  // The landing page on the marketer's origin reported the contact form's view by beacon.
  const views = await eventually(async () => {
    const r = await inlet.admin('/v1/admin/stats');
    return r.groups.find((g) => g.group === 'contact' && g.views >= 1);
  }, 10000, 'the view beacon to be counted');
  assert.equal(views.unique_views, 1);

  const setupLink = await eventually(() => inlet.stdout().match(/set up:\s+(\S+)/)?.[1], 5000, 'the set-up link in the banner');
  const ctx = await browser.newContext({ bypassCSP: true, acceptDownloads: true }); // bypass: to inject axe
  const page = await ctx.newPage();
  const csp = [];
  page.on('console', (m) => { if (/Content Security Policy/i.test(m.text())) csp.push(m.text()); });

  // Set up: the first admin.
  await page.goto(setupLink);
  assert.deepEqual(await axe(page, 'body'), [], 'the set-up page');
  await page.screenshot({ path: join(SHOTS, 'console-setup.png'), fullPage: true });
  await page.fill('#email', 'marketer@example.com');
  await page.fill('#password', PASSWORD);
  await page.fill('#repeat', PASSWORD);
  await Promise.all([page.waitForURL(/\/console\/leads$/), page.click('button[type=submit]')]);

  // The list: newest first, every lead with its form, source and status.
  const rows = await page.$$eval('table.leads tbody tr', (trs) => trs.map((tr) => tr.innerText));
  assert.equal(rows.length, 4, rows.join('\n'));
  assert.match(rows[0], /cat@letters\.test/);
  assert.match(rows.join('\n'), /ann@acme\.test\s+Ann Acme\s+Acme\s+contact\s+linkedin \/ cpc\s+active/);
  assert.deepEqual(await axe(page, 'body'), [], 'the lead list');
  await page.screenshot({ path: join(SHOTS, 'console-leads.png'), fullPage: true });

  // The overview: the period at a glance, the beacon's view in the form's funnel.
  await page.click('nav[aria-label=Console] >> text=Overview');
  await page.waitForURL(/\/console\/overview$/);
  assert.equal(await page.$$eval('svg.chart', (s) => s.length), 4);
  const formRow = await page.$$eval('table.leads tbody tr', (trs) => trs.map((tr) => tr.innerText).find((t) => t.startsWith('contact')));
  assert.match(formRow, /^contact\s+1\s+1\s+3\s+300\.0 %/, formRow);
  assert.deepEqual(await axe(page, 'body'), [], 'the overview');
  await page.screenshot({ path: join(SHOTS, 'console-overview.png'), fullPage: true });
  // Forms: settings, results and the code to paste; Deliveries: the outbox.
  await page.click('nav[aria-label=Console] >> text=Forms');
  await page.waitForURL(/\/console\/forms$/);
  assert.match(await page.textContent('main'), /integrity="sha384-/);
  assert.match(await page.textContent('#form-contact + dl'), /Double opt-in\s*no/);
  assert.deepEqual(await axe(page, 'body'), [], 'the forms page');
  await page.screenshot({ path: join(SHOTS, 'console-forms.png'), fullPage: true });
  await page.click('nav[aria-label=Console] >> text=Deliveries');
  await page.waitForURL(/\/console\/deliveries$/);
  assert.match(await page.textContent('main'), /Follow-up email/);
  assert.deepEqual(await axe(page, 'body'), [], 'the deliveries page');
  await page.screenshot({ path: join(SHOTS, 'console-deliveries.png'), fullPage: true });
  // People (admins): add a viewer; the page shows the one-time link to send.
  await page.click('nav[aria-label=Console] >> text=People');
  await page.waitForURL(/\/console\/people$/);
  await page.fill('#email', 'viewer@example.com');
  await page.selectOption('#role', 'viewer');
  await page.click('text=Add and make a sign-in link');
  assert.match(await page.textContent('.flash'), /\/console\/link\//);
  assert.deepEqual(await axe(page, 'body'), [], 'the people page');
  await page.screenshot({ path: join(SHOTS, 'console-people.png'), fullPage: true });
  await page.click('nav[aria-label=Console] >> text=Leads');
  await page.waitForURL(/\/console\/leads$/);

  // Filter: addresses that start with "a" or "b" at acme, on the contact form.
  await page.fill('#q', 'b');
  await page.selectOption('#form', 'contact');
  await Promise.all([page.waitForURL(/q=b/), page.click('text=Apply filters')]);
  const filtered = await page.$$eval('table.leads tbody tr', (trs) => trs.map((tr) => tr.innerText));
  assert.deepEqual(filtered.map((r) => r.split(/\s/)[0]), ['bob@acme.test']);
  assert.equal(await page.inputValue('#q'), 'b', 'the filter stays filled in');
  await page.screenshot({ path: join(SHOTS, 'console-leads-filtered.png'), fullPage: true });

  // Export what the filter shows.
  const [download] = await Promise.all([page.waitForEvent('download'), page.click('text=Export these leads (CSV)')]);
  const csv = readFileSync(await download.path(), 'utf8').trim().split('\n');
  assert.equal(csv.length, 2, csv.join('\n'));
  assert.match(csv[0], /^lead_id,email,status/);
  assert.match(csv[1], /bob@acme\.test/);

  // A lead's page: what happened, in words.
  await page.goto(inlet.url + '/console/leads?q=jane');
  await Promise.all([page.waitForURL(/\/console\/leads\/[0-9a-f-]+$/), page.click('text=jane@visitor.test')]);
  const timeline = await page.textContent('ol.timeline');
  assert.match(timeline, /Submitted the “contact” form/);
  assert.match(timeline, /Jane Visitor/);
  assert.match(timeline, /Landing page\s*http:\/\/localhost:\d+\/landing\.html/);
  assert.match(timeline, /Follow-up email: (sent|waiting to be sent)/);
  assert.deepEqual(await axe(page, 'body'), [], 'the lead page');
  await page.screenshot({ path: join(SHOTS, 'console-lead.png'), fullPage: true });

  // Erase, after a confirmation page.
  await Promise.all([page.waitForURL(/\/erase$/), page.click('text=Erase…')]);
  assert.match(await page.textContent('h1'), /Erase jane@visitor\.test\?/);
  assert.deepEqual(await axe(page, 'body'), [], 'the erase confirmation');
  await page.screenshot({ path: join(SHOTS, 'console-erase.png'), fullPage: true });
  await Promise.all([page.waitForURL(/erased=1/), page.click('text=Erase permanently')]);
  assert.match(await page.textContent('.flash'), /The lead was erased/);
  assert.doesNotMatch(await page.textContent('main'), /jane@visitor\.test/);
  assert.equal((await inlet.leads()).length, 3);

  // API keys (admins): make one with two scopes; it is shown once and opens the admin API.
  await page.click('nav[aria-label=Console] >> text=API keys');
  await page.waitForURL(/\/console\/keys$/);
  await page.fill('#name', 'CRM sync');
  await page.check('text=leads:read');
  await page.check('text=stats:read');
  await page.click('text=Make the key');
  const key = (await page.textContent('.flash code')).trim();
  assert.match(key, /^inlet_/);
  const keyed = await fetch(`${inlet.url}/v1/admin/stats`, { headers: { authorization: `Bearer ${key}` } });
  assert.equal(keyed.status, 200);
  assert.deepEqual(await axe(page, 'body'), [], 'the API keys page');
  await page.screenshot({ path: join(SHOTS, 'console-keys.png'), fullPage: true });

  // Import a Mailchimp export: the result says what happened to each row.
  await page.goto(inlet.url + '/console/leads');
  await Promise.all([page.waitForURL(/\/console\/import$/), page.click('text=Import leads')]);
  assert.deepEqual(await axe(page, 'body'), [], 'the import page');
  await page.setInputFiles('#file', {
    name: 'subscribed_members.csv',
    mimeType: 'text/csv',
    buffer: Buffer.from('Email Address,First Name,Last Name,OPTIN_TIME\nmia@list.test,Mia,Moss,2024-01-02\nleo@list.test,Leo,Lane,2024-02-03\nnot an address,X,Y,\n'),
  });
  await page.selectOption('#form', 'newsletter');
  await page.selectOption('#preset', 'mailchimp');
  await Promise.all([page.waitForURL(/\/console\/import$/), page.click('main button[type=submit]')]);
  assert.match(await page.textContent('.flash'), /Imported\.\s+3 rows: 2 new leads/);
  assert.match(await page.textContent('table.leads'), /not a valid email address/);
  assert.deepEqual(await axe(page, 'body'), [], 'the import result');
  await page.screenshot({ path: join(SHOTS, 'console-import.png'), fullPage: true });
  assert.equal((await inlet.leads()).length, 5);
  assert.deepEqual((await inlet.leads()).filter((l) => l.email.endsWith('@list.test')).map((l) => l.status), ['active', 'active']);

  // Sign out, then in with the password.
  await Promise.all([page.waitForURL(/\/console\/login$/), page.click('text=Sign out')]);
  assert.deepEqual(await axe(page, 'body'), [], 'the sign-in page');
  await page.screenshot({ path: join(SHOTS, 'console-login.png'), fullPage: true });
  await page.goto(inlet.url + '/console/leads');
  assert.match(page.url(), /\/console\/login$/, 'signed out: the list asks to sign in');
  await page.fill('#email', 'marketer@example.com');
  await page.fill('#password', 'wrong password here');
  await page.click('button[type=submit]');
  assert.match(await page.textContent('.error'), /do not match an account/);
  assert.deepEqual(await axe(page, 'body'), [], 'the sign-in error');
  await page.fill('#password', PASSWORD);
  await Promise.all([page.waitForURL(/\/console\/leads$/), page.click('button[type=submit]')]);
  assert.deepEqual(csp, [], 'no CSP violation on console pages');
  console.log(`# screenshots: ${SHOTS}/console-{setup,overview,forms,deliveries,people,keys,import,leads,leads-filtered,lead,erase,login}.png`);

  // Without JavaScript: the same console works (no script on any page).
  const nojs = await browser.newContext({ javaScriptEnabled: false });
  const p = await nojs.newPage();
  await p.goto(inlet.url + '/console/login');
  await p.fill('#email', 'marketer@example.com');
  await p.fill('#password', PASSWORD);
  await Promise.all([p.waitForURL(/\/console\/leads$/), p.click('button[type=submit]')]);
  await p.selectOption('#form', 'newsletter');
  await p.fill('#source', 'newsletter');
  await Promise.all([p.waitForURL(/form=newsletter/), p.click('text=Apply filters')]);
  assert.deepEqual(await p.$$eval('table.leads tbody tr td:first-child', (tds) => tds.map((td) => td.textContent)), ['cat@letters.test']);
  assert.equal(await p.$$eval('script', (s) => s.length), 0);
});
