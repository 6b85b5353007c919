import assert from 'node:assert/strict';
// Shared set-up for the browser tests: a real Inlet (the debug binary, on a fresh SQLite
// database, started per test), a second origin serving the landing-page fixtures (the way a
// marketer's site embeds Inlet), and Debian's Chromium driven by playwright-core.
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import http from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createRequire } from 'node:module';
import { chromium } from 'playwright-core';

const AXE = createRequire(import.meta.url).resolve('axe-core/axe.min.js');

/** Serious or critical axe violations inside `selector` (the page's context must bypass CSP). */
export async function axe(page, selector) {
  // Contrast is judged on the final frame, not mid fade-in.
  await page.waitForFunction(() => document.getAnimations().every((a) => a.playState !== 'running'));
  if (!(await page.evaluate(() => !!window.axe))) await page.addScriptTag({ path: AXE });
  const result = await page.evaluate((sel) => window.axe.run(sel, { resultTypes: ['violations'] }), selector);
  return result.violations
    .filter((v) => v.impact === 'serious' || v.impact === 'critical')
    .map((v) => `${v.id}: ${v.help} (${v.nodes.map((n) => n.target.join(' ')).join(', ')})`);
}

export const ROOT = new URL('../../', import.meta.url).pathname;
export const BIN = process.env.INLET_BIN || join(ROOT, 'target/debug/inlet');
export const TOKEN = 'browser-test-admin-token';
export const SHOTS = join(ROOT, 'target/browser-screenshots');

/** Starts Inlet on a free port with a fresh database; resolves once it listens. */
export async function startInlet(env = {}) {
  const dir = mkdtempSync(join(tmpdir(), 'inlet-browser-'));
  const child = spawn(BIN, ['serve'], {
    env: {
      PATH: process.env.PATH,
      HOME: process.env.HOME || dir,
      INLET_BIND: '127.0.0.1:0',
      DATABASE_URL: `sqlite://${dir}/inlet.db`,
      INLET_MAIL_DIR: join(dir, 'mail'),
      INLET_ADMIN_TOKEN: TOKEN,
      INLET_RATE_LIMIT_ENABLED: 'false',
      INLET_SPAM_MIN_SUBMIT_MS: '0',
      INLET_LOG_LEVEL: 'warn',
      ...env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let log = '';
  let out = '';
  child.stderr.on('data', (d) => { log += d; });
  const url = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('Inlet did not start:\n' + out + log)), 20000);
    child.stdout.on('data', (d) => {
      out += d;
      const m = out.match(/listening on (http:\/\/[\d.]+:\d+)/);
      if (m) { clearTimeout(timer); resolve(m[1]); }
    });
    child.on('exit', (code) => { clearTimeout(timer); reject(new Error(`Inlet exited (${code}):\n${out}${log}`)); });
  });
  const admin = async (path) => {
    const r = await fetch(url + path, { headers: { Authorization: `Bearer ${TOKEN}` } });
    if (!r.ok) throw new Error(`${path}: ${r.status} ${await r.text()}`);
    return r.json();
  };
  return {
    url,
    dir,
    admin,
    /** What Inlet printed on stdout so far (its startup banner). */
    stdout: () => out,
    /** Every submission stored (spam included), newest first. */
    submissions: async (query = '') => (await admin('/v1/admin/submissions?limit=500' + query)).submissions,
    leads: async (query = '') => (await admin('/v1/admin/leads?limit=500' + query)).leads,
    stop: async () => {
      if (child.exitCode === null) {
        child.kill('SIGTERM');
        await new Promise((r) => child.once('exit', r));
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/**
 * The marketer's site: a second origin serving tests/fixtures/*.html with {{INLET}} set to
 * Inlet's origin and {{TRIGGER}}/{{TRIGGER2}}/{{SCRIPT_ATTRS}} from the query, under a strict CSP that allows
 * scripts, styles, connections and form posts to Inlet's origin only (`?worker=blob` also allows
 * blob: workers, as a page that lets the proof-of-work solver run in a worker does).
 */
export async function startSite(inletUrl) {
  const server = http.createServer((req, res) => {
    const u = new URL(req.url, 'http://x');
    const name = u.pathname.replace(/^\//, '') || 'landing.html';
    if (!/^[a-z0-9-]+\.html$/.test(name)) { res.writeHead(404).end(); return; }
    let html;
    try { html = readFileSync(new URL(`fixtures/${name}`, import.meta.url), 'utf8'); } catch { res.writeHead(404).end(); return; }
    const safe = (v) => (v || '').replace(/[^a-z0-9: #._-]/gi, '');
    html = html.replaceAll('{{INLET}}', inletUrl)
      .replaceAll('{{TRIGGER}}', safe(u.searchParams.get('trigger') ?? 'delay:600'))
      .replaceAll('{{TRIGGER2}}', safe(u.searchParams.get('trigger2') ?? ''))
      .replaceAll('{{SCRIPT_ATTRS}}', (u.searchParams.get('first_touch') === 'off' ? ' data-first-touch="off"' : '') +
        (u.searchParams.get('views') === 'off' ? ' data-views="off"' : ''));
    res.writeHead(200, {
      'Content-Type': 'text/html; charset=utf-8',
      'Content-Security-Policy': [
        "default-src 'none'", `script-src ${inletUrl}`, `style-src ${inletUrl}`,
        `connect-src ${inletUrl}`, `form-action ${inletUrl}`, "img-src 'self'", "base-uri 'none'",
        ...(u.searchParams.get('worker') === 'blob' ? ['worker-src blob:'] : []),
      ].join('; '),
    });
    res.end(html);
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  // "localhost" keeps the site a different origin (and host) from Inlet's 127.0.0.1.
  const url = `http://localhost:${server.address().port}`;
  return { url, stop: () => new Promise((r) => server.close(r)) };
}

export async function launch() {
  return chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    args: ['--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking',
      '--disable-component-update', '--disable-sync', '--disable-quic'],
  });
}

/** Records inlet:* events and CSP violations from the first script on every page. */
export async function watch(context) {
  await context.addInitScript(() => {
    window.__events = [];
    window.__csp = [];
    for (const t of ['ready', 'submitted', 'error', 'shown', 'dismissed']) {
      window.addEventListener('inlet:' + t, (e) => window.__events.push({ type: t, detail: e.detail }));
    }
    document.addEventListener('securitypolicyviolation', (e) => {
      window.__csp.push({ directive: e.violatedDirective, uri: e.blockedURI });
    });
  });
}

/** Everything a test needs, torn down in one call. */
export async function setup(t, { inletEnv, context: ctxOpts } = {}) {
  const inlet = await startInlet(inletEnv);
  const site = await startSite(inlet.url);
  const browser = await launch();
  const context = await browser.newContext(ctxOpts);
  await watch(context);
  const page = await context.newPage();
  t.after(async () => {
    await browser.close();
    await site.stop();
    await inlet.stop();
  });
  return { inlet, site, browser, context, page };
}

export const unique = (tag) => `${tag}-${Date.now()}-${Math.floor(Math.random() * 1e6)}@example.com`;
export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Polls `fn` until it returns a truthy value (or throws after `ms`). */
export async function eventually(fn, ms = 5000, what = 'condition') {
  const end = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(50);
  }
}

/** Posts a form as JSON with the time trap satisfied; asserts 201 and answers the body. */
export async function post(inlet, form, body) {
  const r = await fetch(`${inlet.url}/v1/forms/${form}/submissions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ ...body, _elapsed_ms: 4000 }),
  });
  const text = await r.text();
  assert.equal(r.status, 201, text);
  return JSON.parse(text);
}

/**
 * Signs up the console's first admin (marketer@example.com) through the set-up link in
 * Inlet's banner; answers the signed-in page (its context bypasses CSP so axe can be injected).
 */
export async function firstAdmin(inlet, browser, password) {
  const setupLink = await eventually(() => inlet.stdout().match(/set up:\s+(\S+)/)?.[1], 5000, 'the set-up link');
  const ctx = await browser.newContext({ bypassCSP: true });
  const page = await ctx.newPage();
  await page.goto(setupLink);
  await page.fill('#email', 'marketer@example.com');
  await page.fill('#password', password);
  await page.fill('#repeat', password);
  await Promise.all([page.waitForURL(/\/console\/leads$/), page.click('button[type=submit]')]);
  return page;
}
