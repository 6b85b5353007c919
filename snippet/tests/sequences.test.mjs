// Nurture sequences in a real browser, on the demo configuration (nothing configured): two
// newcomers download the whitepaper and so enter the demo's three-step sequence; one of them
// then writes through the contact form, which ends it. The console's sequence page shows who
// is in it, what each step did and why leads left; the lead page's timeline shows the
// enrolment and each step's delivery. Every screen passes axe and is screenshotted.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { axe, eventually, firstAdmin, post, setup, SHOTS } from './harness.mjs';

const PASSWORD = 'correct horse battery staple';

test('sequences in the console: enrolled, sent per step, exits by reason, the lead timeline; axe and screenshots', async (t) => {
  const { inlet, browser } = await setup(t);
  mkdirSync(SHOTS, { recursive: true });
  const people = [
    { email: 'grace@compilers.test', name: 'Grace Hopper', company: 'Compilers' },
    { email: 'alan@machines.test', name: 'Alan Turing', company: 'Machines' },
  ];
  for (const p of people) {
    const paper = await post(inlet, 'whitepaper', { ...p, consent: true });
    assert.equal((await fetch(paper.download_url)).status, 200, 'the whitepaper downloads');
  }
  const enrolled = await eventually(async () => {
    const s = (await inlet.admin('/v1/admin/sequences')).sequences[0];
    return s.enrolments.active === 2 && s;
  }, 15000, 'both to be enrolled');
  assert.equal(enrolled.id, 'whitepaper-nurture');
  assert.deepEqual(enrolled.steps.map((s) => s.id), ['three-ideas', 'case-study', 'walkthrough']);
  // Alan asks to talk: the contact form ends his sequence in the same transaction.
  await post(inlet, 'contact', { ...people[1], message: 'Could we talk?' });
  const seq = await eventually(async () => {
    const s = (await inlet.admin('/v1/admin/sequences')).sequences[0];
    return s.exits.form === 1 && s;
  }, 15000, 'Alan to leave the sequence');
  assert.equal(seq.enrolments.active, 1);
  const first = seq.steps[0].messages;
  // Step one goes at once inside the demo's window (weekdays 08:00-18:00 UTC), else waits for it.
  assert.equal((first.sent || 0) + (first.pending || 0) + (first.skipped || 0), 2, JSON.stringify(first));

  const page = await firstAdmin(inlet, browser, PASSWORD);
  await page.click('nav[aria-label=Console] >> text=Sequences');
  await page.waitForURL(/\/console\/sequences$/);
  assert.match(await page.textContent('h2'), /After the whitepaper \(whitepaper-nurture\)/);
  const facts = await page.textContent('dl.facts');
  assert.match(facts, /Enrols on\s*the first download from the 'whitepaper' form/);
  assert.match(facts, /Sends\s*Mon, Tue, Wed, Thu, Fri, 08:00–18:00 UTC/);
  assert.match(facts, /Enrolled\s*2\s*In it now\s*1\s*Finished\s*0\s*Left early\s*1/);
  const steps = await page.$$eval('table.leads >> nth=0 >> tbody tr', (rows) => rows.map((r) => r.textContent.replace(/\s+/g, ' ').trim()));
  assert.equal(steps.length, 3);
  assert.match(steps[0], /^1\. three-ideas at once/);
  assert.match(steps[1], /^2\. case-study 3 days after the one before/);
  assert.match(steps[2], /^3\. walkthrough 4 days after the one before/);
  assert.match(await page.textContent('section'), /Why leads left early[\s\S]*sent a form that ends it\s*1/);
  assert.deepEqual(await axe(page, 'body'), [], 'the sequences page');
  await page.screenshot({ path: join(SHOTS, 'console-sequences.png'), fullPage: true });

  // Grace's timeline: enrolled, and step one sent or waiting with its time.
  const grace = (await inlet.leads()).find((l) => l.email === people[0].email);
  await page.goto(`${inlet.url}/console/leads/${grace.id}`);
  const timeline = await page.textContent('ol.timeline');
  assert.match(timeline, /Enrolled in the “After the whitepaper” sequence/);
  assert.match(timeline, /Nurture email “three-ideas” \(After the whitepaper\): (sent|goes out)/);
  assert.deepEqual(await axe(page, 'body'), [], 'the lead page with a sequence');
  await page.screenshot({ path: join(SHOTS, 'console-lead-sequence.png'), fullPage: true });

  // Alan's: why he left.
  const alan = (await inlet.leads()).find((l) => l.email === people[1].email);
  await page.goto(`${inlet.url}/console/leads/${alan.id}`);
  const his = await page.textContent('ol.timeline');
  assert.match(his, /Left the “After the whitepaper” sequence: sent a form that ends it/);
  assert.match(his, /Why\s*submitted the 'contact' form/);
  assert.deepEqual(await axe(page, 'body'), [], 'the lead page after leaving a sequence');
  await page.screenshot({ path: join(SHOTS, 'console-lead-sequence-left.png'), fullPage: true });
  console.log(`# screenshots: ${SHOTS}/{console-sequences,console-lead-sequence,console-lead-sequence-left}.png`);
});
