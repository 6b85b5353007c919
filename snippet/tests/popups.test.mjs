// Pop-ups: triggers, the accessible <dialog>, frequency capping, one at a time, the JS API.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { setup, unique, sleep } from './harness.mjs';

const isOpen = (page, id = 'newsletter') =>
  page.evaluate((id) => !!document.querySelector(`dialog[data-inlet-popup="${id}"][open]`), id);
const ready = (page) => page.waitForFunction(() => window.inlet);
/** The dialog's `close` event (and so `inlet:dismissed`) is dispatched as a task after Escape. */
const dismissed = (page) => page.waitForFunction(() => window.__events.at(-1)?.type === 'dismissed');
const events = (page) => page.evaluate(() => window.__events.map((e) => e.type + (e.detail.popup ? ':' + e.detail.popup : '')));

test('opens after the configured delay, not before', async (t) => {
  const { site, page } = await setup(t);
  await page.goto(site.url + '/landing.html?trigger=delay:2');
  await ready(page);
  await sleep(800);
  assert.equal(await isOpen(page), false, 'not yet');
  await page.waitForSelector('dialog[data-inlet-popup=newsletter][open]', { timeout: 4000 });
  assert.deepEqual(await events(page), ['ready', 'shown:newsletter']);
  // Labelled by its heading, modal, focus inside on the first field.
  const a11y = await page.evaluate(() => {
    const d = document.querySelector('dialog[open]');
    return { label: document.getElementById(d.getAttribute('aria-labelledby'))?.textContent, modal: d.matches(':modal'), focus: document.activeElement.id };
  });
  assert.deepEqual(a11y, { label: 'Join the newsletter', modal: true, focus: 'n-email' });
});

test('opens at the configured scroll depth', async (t) => {
  const { site, page } = await setup(t, { context: { viewport: { width: 1000, height: 500 } } });
  await page.goto(site.url + '/landing.html?trigger=scroll:60');
  await ready(page);
  await page.mouse.move(500, 250);
  await page.mouse.wheel(0, 300);
  await sleep(400);
  assert.equal(await isOpen(page), false, 'not at a shallow depth');
  for (let i = 0; i < 20 && !(await isOpen(page)); i++) {
    await page.mouse.wheel(0, 400);
    await sleep(100);
  }
  assert.equal(await isOpen(page), true);
  assert.ok(await page.evaluate(() => scrollY / (document.documentElement.scrollHeight - innerHeight)) >= 0.6);
});

test('opens on exit intent: the pointer leaves through the top edge', async (t) => {
  const { site, page } = await setup(t);
  await page.goto(site.url + '/landing.html?trigger=exit');
  await ready(page);
  await page.mouse.move(400, 300);
  await page.mouse.move(900, 300, { steps: 4 }); // leaving sideways inside the page: nothing
  await sleep(200);
  assert.equal(await isOpen(page), false);
  await page.mouse.move(400, 4, { steps: 4 });
  await page.mouse.move(400, -30, { steps: 2 });
  await page.waitForSelector('dialog[data-inlet-popup=newsletter][open]', { timeout: 2000 });
});

test('focus is trapped, Escape closes, focus returns, and it stays closed on reload', async (t) => {
  const { site, page } = await setup(t);
  await page.goto(site.url + '/landing.html?trigger=delay:1');
  await ready(page);
  // Opened by the person from a button: focus must come back to it.
  await page.click('#opener');
  await page.waitForSelector('dialog[data-inlet-popup=newsletter][open]');
  for (const key of ['Tab', 'Tab', 'Tab', 'Tab', 'Tab', 'Tab', 'Shift+Tab', 'Shift+Tab', 'Shift+Tab', 'Shift+Tab', 'Shift+Tab']) {
    await page.keyboard.press(key);
    const inside = await page.evaluate(() => !!document.activeElement.closest('dialog[open]'));
    assert.ok(inside, `focus left the dialog after ${key}`);
  }
  assert.equal(await page.locator('dialog[open] button.inlet-close').getAttribute('aria-label'), 'Close');
  await page.keyboard.press('Escape');
  await dismissed(page);
  assert.equal(await isOpen(page), false);
  assert.equal(await page.evaluate(() => document.activeElement.id), 'opener');
  assert.deepEqual(await events(page), ['ready', 'shown:newsletter', 'dismissed:newsletter']);
  // The delay trigger would open it again on this page view; the cap says no, also after reloads.
  await sleep(1500);
  assert.equal(await isOpen(page), false, 'capped on this page');
  await page.reload();
  await ready(page);
  await sleep(1800);
  assert.equal(await isOpen(page), false, 'capped after reload');
  // Control: a visitor without the cap (fresh storage) does see it.
  await page.evaluate(() => localStorage.clear());
  await page.reload();
  await page.waitForSelector('dialog[data-inlet-popup=newsletter][open]', { timeout: 4000 });
  // The visible close button dismisses too.
  await page.click('dialog[open] button.inlet-close');
  assert.equal(await isOpen(page), false);
});

test('subscribing in the pop-up stores the lead and caps it', async (t) => {
  const { inlet, site, page } = await setup(t);
  await page.goto(site.url + '/landing.html?trigger=delay:0');
  await page.waitForSelector('dialog[data-inlet-popup=newsletter][open]');
  const email = unique('popup');
  await page.fill('dialog[open] #n-email', email);
  await page.click('dialog[open] button[type=submit]');
  await page.waitForSelector('dialog[open] form[data-inlet-state=success]');
  assert.deepEqual((await inlet.leads('&form=newsletter')).map((l) => l.email), [email]);
  await page.keyboard.press('Escape');
  await dismissed(page);
  const last = await page.evaluate(() => window.__events.at(-1));
  assert.deepEqual(last, { type: 'dismissed', detail: { popup: 'newsletter', submitted: true } });
  await page.reload();
  await ready(page);
  await sleep(600);
  assert.equal(await isOpen(page), false, 'not shown again after a submission');
});

test('never more than one pop-up at a time; the JS API opens and closes them', async (t) => {
  const { site, page } = await setup(t);
  await page.goto(site.url + '/landing.html?trigger=delay:0&trigger2=delay:0');
  await page.waitForSelector('dialog[open]');
  await sleep(500);
  assert.equal(await page.locator('dialog[open]').count(), 1);
  assert.equal(await page.evaluate(() => window.inlet.open('promo')), false, 'refused while one is open');
  await page.evaluate(() => window.inlet.close());
  assert.equal(await page.locator('dialog[open]').count(), 0);
  assert.equal(await page.evaluate(() => window.inlet.open('promo')), true);
  assert.equal(await isOpen(page, 'promo'), true);
  assert.equal(await page.evaluate(() => window.inlet.open('nope')), false, 'unknown id');
});

test('respects prefers-reduced-motion and fits a 320 px screen', async (t) => {
  const { site, page } = await setup(t, { context: { viewport: { width: 320, height: 640 }, reducedMotion: 'reduce' } });
  await page.goto(site.url + '/landing.html');
  await ready(page);
  await page.click('#opener');
  await page.waitForSelector('dialog[open]');
  const m = await page.evaluate(() => {
    const d = document.querySelector('dialog[open]');
    const r = d.getBoundingClientRect();
    return { anim: getComputedStyle(d).animationName, left: r.left, right: r.right, scroll: document.documentElement.scrollWidth };
  });
  assert.equal(m.anim, 'none');
  assert.ok(m.left >= 0 && m.right <= 320, `dialog within the screen: ${m.left}..${m.right}`);
  assert.ok(m.scroll <= 320, 'no horizontal scrolling');
  const input = await page.locator('dialog[open] #n-email').boundingBox();
  assert.ok(input.x >= 0 && input.x + input.width <= 320);
  // Control: with motion allowed the dialog animates in.
  await page.emulateMedia({ reducedMotion: 'no-preference' });
  assert.equal(await page.evaluate(() => getComputedStyle(document.querySelector('dialog[open]')).animationName), 'inlet-in');
});
