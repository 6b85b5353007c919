// Qualification in a real browser, on the demo configuration (nothing configured): a newcomer
// downloads the whitepaper and writes through the contact form from a company address; the
// console shows a scored lead with the factors of its score, the hand-off queue shows it routed
// to the demo's owner, the owner accepts from the page their email links to, and a `sales`
// account sees only its own queue. Every screen passes axe and is screenshotted for review.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { axe, eventually, firstAdmin, post, setup, SHOTS } from './harness.mjs';

const PASSWORD = 'correct horse battery staple';

/** Quoted-printable, as mail bodies may be written. */
const unqp = (s) => s.replace(/=\r?\n/g, '').replace(/=([0-9A-F]{2})/g, (_, h) => String.fromCharCode(parseInt(h, 16)));

test('qualification in the console: a scored lead with its why, the hand-off queue, the owner accepts, a sales account; axe and screenshots', async (t) => {
  const { inlet, browser } = await setup(t);
  mkdirSync(SHOTS, { recursive: true });
  const ada = { email: 'ada@analytical.test', name: 'Ada Lovelace', company: 'Analytical Engines' };
  const paper = await post(inlet, 'whitepaper', { ...ada, job_title: 'Head of Research', consent: true });
  assert.equal((await fetch(paper.download_url)).status, 200, 'the whitepaper downloads');
  await post(inlet, 'contact', { ...ada, message: 'Could we talk about a pilot?' });
  const lead = (await inlet.leads()).find((l) => l.email === ada.email);
  const score = await eventually(async () => {
    const s = await inlet.admin(`/v1/admin/leads/${lead.id}/score`);
    return s.stage === 'mql' && s;
  }, 15000, 'the lead to become an MQL');
  assert.equal(score.factors.reduce((a, f) => a + f.points, 0), score.score, 'the factors add up to the score');

  // The marketer's view.
  const page = await firstAdmin(inlet, browser, PASSWORD);
  await page.goto(`${inlet.url}/console/leads/${lead.id}`);
  const why = await page.textContent('table.factors');
  assert.match(why, new RegExp(`Why ${score.score}`));
  assert.match(why, /\+15\s*a company address \(@analytical\.test\)/);
  assert.match(why, /\+20\s*downloaded from form 'whitepaper' 1 time/);
  assert.match(await page.textContent('section[aria-labelledby=qualification]'), /Marketing-qualified \(MQL\)/);
  assert.match(await page.textContent('.handoff h3'), /Hand-off to Sam Seller: waiting to be accepted/);
  assert.deepEqual(await axe(page, 'body'), [], 'the lead page with its score');
  await page.screenshot({ path: join(SHOTS, 'console-lead-score.png'), fullPage: true });
  await page.click('nav[aria-label=Console] >> text=Hand-offs');
  await page.waitForURL(/\/console\/handoffs$/);
  assert.match(await page.textContent('table.leads'), /ada@analytical\.test\s+70\s+Sam Seller\s+waiting to be accepted/);
  assert.deepEqual(await axe(page, 'body'), [], 'the hand-off queue');
  await page.screenshot({ path: join(SHOTS, 'console-handoffs.png'), fullPage: true });

  // The owner's mail, and the page it links to.
  const mailDir = join(inlet.dir, 'mail');
  const mail = await eventually(() => readdirSync(mailDir).map((f) => unqp(readFileSync(join(mailDir, f), 'utf8'))).find((m) => /^To: sales@example\.com/m.test(m)), 10000, 'the owner\'s mail');
  assert.match(mail, /Subject: New sales-ready lead: Ada Lovelace \(Analytical Engines\) \(score 70\)/);
  const accept = mail.match(/Accept:\s+(\S+)/)[1];
  const owner = await (await browser.newContext({ bypassCSP: true })).newPage();
  await owner.goto(accept);
  assert.match(await owner.textContent('h1'), /A lead for you/);
  assert.match(await owner.textContent('table'), /downloaded from form 'whitepaper'/);
  assert.deepEqual(await axe(owner, 'body'), [], 'the hand-off page from the email');
  await owner.screenshot({ path: join(SHOTS, 'handoff-page.png'), fullPage: true });
  await owner.click('text=Accept this lead');
  assert.match(await owner.textContent('[role=status]'), /Accepted\. The lead is yours/);
  assert.match(await owner.textContent('h1'), /You accepted this lead/);
  assert.deepEqual(await axe(owner, 'body'), [], 'the hand-off page after accepting');
  await owner.screenshot({ path: join(SHOTS, 'handoff-accepted.png'), fullPage: true });

  // A sales account for the owner: its own queue, nothing else.
  await page.click('nav[aria-label=Console] >> text=People');
  await page.fill('#email', 'sales@example.com');
  await page.selectOption('#role', 'sales');
  await page.click('text=Add and make a sign-in link');
  const link = (await page.textContent('.flash code')).trim();
  const sales = await (await browser.newContext({ bypassCSP: true })).newPage();
  await sales.goto(link);
  await Promise.all([sales.waitForURL(/\/console\/password$/), sales.click('button[type=submit]')]);
  await sales.fill('#password', PASSWORD);
  await sales.fill('#repeat', PASSWORD);
  await Promise.all([sales.waitForURL(/\/console\/handoffs$/), sales.click('main button[type=submit]')]);
  assert.match(await sales.textContent('h1'), /Your hand-offs/);
  assert.match(await sales.textContent('table.leads'), /ada@analytical\.test\s+70\s+Sam Seller\s+accepted: reaching out/);
  assert.deepEqual(await sales.$$eval('nav[aria-label=Console] a', (as) => as.map((a) => a.textContent)), ['Hand-offs']);
  assert.deepEqual(await axe(sales, 'body'), [], 'the sales queue');
  await sales.screenshot({ path: join(SHOTS, 'console-handoffs-sales.png'), fullPage: true });
  await sales.click('text=ada@analytical.test');
  await Promise.all([sales.waitForURL(/\/console\/leads\/[0-9a-f-]+$/), sales.click('text=We are in touch')]);
  assert.match(await sales.textContent('.handoff h3'), /in conversation/);
  assert.deepEqual(await axe(sales, 'body'), [], 'the lead page for sales');
  await sales.screenshot({ path: join(SHOTS, 'console-lead-sales.png'), fullPage: true });
  console.log(`# screenshots: ${SHOTS}/{console-lead-score,console-handoffs,handoff-page,handoff-accepted,console-handoffs-sales,console-lead-sales}.png`);
});
