/*! Inlet embed script. MIT OR Apache-2.0. One tag turns form[data-inlet] and
 * template[data-inlet-popup] into progressively enhanced lead capture. No cookies, no
 * third-party requests, no eval, no inline handlers: it runs under a strict CSP. */
(() => {
  'use strict';
  const w = window, doc = document;
  if (w.inlet && w.inlet.version) return; // the tag was pasted twice
  const VERSION = '0.1.0';
  const me = doc.currentScript;
  const opts = (me && me.dataset) || {};
  const base = me && me.src ? new URL(me.src).origin : location.origin;
  const P = 'inlet:';
  const PARAMS = ['utm_source', 'utm_medium', 'utm_campaign', 'utm_term', 'utm_content',
    'gclid', 'fbclid', 'msclkid'];
  const RETRIES = 4;
  const FOCUSABLE = 'a[href],button:not([disabled]),input:not([disabled]):not([type=hidden]),' +
    'select:not([disabled]),textarea:not([disabled]),[tabindex]:not([tabindex="-1"])';

  const load = (k) => { try { return JSON.parse(localStorage.getItem(P + k)); } catch (e) { return null; } };
  const save = (k, v) => { try { localStorage.setItem(P + k, JSON.stringify(v)); } catch (e) { /* private mode */ } };
  const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
  const emit = (el, type, detail) =>
    el.dispatchEvent(new CustomEvent(P + type, { bubbles: true, detail }));
  // Idempotency key: 12 hex digits of the time (ms) and 20 random ones (80 bits), so keys
  // arrive in order and the server's index takes them at its end instead of one random page
  // each (the UUIDv7 idea).
  const key = () => {
    const b = crypto.getRandomValues(new Uint8Array(10));
    return Date.now().toString(16).padStart(12, '0') +
      Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('');
  };

  // ---- Attribution: first touch kept across pages (localStorage, data-first-touch="off"
  // turns it off), last touch = the newest visit that came from a campaign or another site.
  const touches = (() => {
    const q = new URLSearchParams(location.search), t = {};
    PARAMS.forEach((k) => { const v = q.get(k); if (v) t[k] = v.slice(0, 300); });
    const campaign = Object.keys(t).length > 0;
    let external = false;
    try { external = !!doc.referrer && new URL(doc.referrer).host !== location.host; } catch (e) { /* opaque */ }
    if (external) t.referrer = doc.referrer.slice(0, 2048);
    t.landing_page = (location.origin + location.pathname + location.search).slice(0, 2048);
    t.at = new Date().toISOString();
    if (opts.firstTouch === 'off') return { first: t, last: t };
    const first = load('first') || t;
    let last = load('last') || first;
    if (campaign || external) last = t;
    save('first', first);
    save('last', last);
    return { first, last };
  })();

  function attribution() {
    const { first, last } = touches, a = {};
    Object.keys(last).forEach((k) => { if (k !== 'at') a[k] = last[k]; });
    a.page_title = doc.title.slice(0, 300);
    a.first_touch = JSON.stringify(first);
    a.last_touch = JSON.stringify(last);
    return a;
  }

  // ---- Forms
  const seen = new WeakMap(); // form -> when it became visible (time trap)
  const fid = (form) => form.dataset.inlet;

  // ---- Views: each form reports once per page, when it first becomes visible (a beacon: no
  // preflight, no cookie, nothing kept on the device). data-views="off" turns it off.
  const viewed = {};
  const views = opts.views !== 'off' && w.IntersectionObserver && navigator.sendBeacon &&
    new IntersectionObserver((entries) => entries.forEach((e) => {
      if (!e.isIntersecting) return;
      views.unobserve(e.target);
      const id = fid(e.target);
      if (viewed[id]) return;
      viewed[id] = 1;
      const a = attribution(), b = new URLSearchParams();
      ['utm_source', 'utm_campaign', 'referrer'].forEach((k) => { if (a[k]) b.set(k, a[k]); });
      try { navigator.sendBeacon(base + '/v1/forms/' + encodeURIComponent(id) + '/views', b); } catch (err) { /* refused */ }
    }));

  function endpoint(form) {
    return form.getAttribute('action')
      ? form.action
      : base + '/v1/forms/' + encodeURIComponent(fid(form)) + '/submissions';
  }

  function setState(form, state) {
    form.dataset.inletState = state;
    form.setAttribute('aria-busy', state === 'submitting' ? 'true' : 'false');
  }

  function buttons(form, disabled) {
    form.querySelectorAll('button:not([type=button]),input[type=submit]').forEach((b) => {
      b.disabled = disabled;
    });
  }

  function messageBox(form) {
    let m = form.querySelector('[data-inlet-message]');
    if (!m) {
      m = doc.createElement('p');
      m.dataset.inletMessage = '';
      m.className = 'inlet-message';
      m.setAttribute('role', 'status');
      form.appendChild(m);
    }
    return m;
  }

  function say(form, text, link) {
    const m = messageBox(form);
    m.textContent = text || '';
    if (link) {
      const a = doc.createElement('a');
      a.href = link;
      a.textContent = form.dataset.inletDownloadText || 'Download your copy';
      m.append(' ', a);
    }
  }

  function labelOf(form, el) {
    const l = (el.id && form.querySelector('label[for="' + CSS.escape(el.id) + '"]')) || el.closest('label');
    const text = el.dataset.inletLabel || (l ? l.textContent.trim() : '');
    return text && text.length <= 40 ? text : 'This field';
  }

  function clear(form) {
    form.querySelectorAll('[data-inlet-error]').forEach((p) => p.remove());
    Array.from(form.elements).forEach((el) => {
      if (!el.hasAttribute('aria-invalid')) return;
      el.removeAttribute('aria-invalid');
      const ids = (el.getAttribute('aria-describedby') || '').split(' ')
        .filter((i) => i && !i.startsWith('inlet-err-'));
      if (ids.length) el.setAttribute('aria-describedby', ids.join(' '));
      else el.removeAttribute('aria-describedby');
    });
    say(form, '');
  }

  let uid = 0;
  function mark(form, el, messages) {
    const p = doc.createElement('p');
    p.id = 'inlet-err-' + ++uid;
    p.className = 'inlet-error';
    p.dataset.inletError = el.name;
    const text = messages.map((m) => /^[A-Z]/.test(m) ? m : labelOf(form, el) + ' ' + m);
    p.textContent = text.join(' ').replace(/([^.!?])$/, '$1.');
    (el.type === 'checkbox' || el.type === 'radio' ? el.closest('label') || el : el).after(p);
    el.setAttribute('aria-invalid', 'true');
    const ids = (el.getAttribute('aria-describedby') || '').split(' ').filter(Boolean);
    el.setAttribute('aria-describedby', ids.concat(p.id).join(' '));
  }

  function showErrors(form, fields, general) {
    let first = null;
    const rest = [];
    Object.keys(fields).forEach((name) => {
      let el = form.elements.namedItem(name);
      if (el && !el.name && el.length) el = el[0]; // a radio group
      if (el && el.type !== 'hidden') mark(form, el, fields[name]);
      else rest.push(name + ': ' + fields[name].join(' '));
    });
    Array.from(form.elements).some((el) => el.getAttribute('aria-invalid') === 'true' && (first = el));
    say(form, [general].concat(rest).join(' '));
    if (first) first.focus();
  }

  function ensureHoneypot(form) {
    const name = form.dataset.inletHoneypot || '_gotcha';
    if (form.elements.namedItem(name)) return;
    const box = doc.createElement('div');
    box.setAttribute('aria-hidden', 'true');
    Object.assign(box.style, { position: 'absolute', left: '-10000px', width: '1px', height: '1px', overflow: 'hidden' });
    const i = doc.createElement('input');
    Object.assign(i, { type: 'text', name, tabIndex: -1, autocomplete: 'off' });
    box.appendChild(i);
    form.appendChild(box);
  }

  function download(url) {
    const a = doc.createElement('a');
    a.href = url;
    a.download = '';
    a.hidden = true;
    doc.body.appendChild(a);
    a.click();
    a.remove();
  }

  // One POST with retries: network failures and 502/503/504 are retried with the same
  // idempotency key, after Retry-After or a jittered backoff.
  async function post(form, body) {
    let res = null, data = null;
    for (let attempt = 0; ; attempt++) {
      try {
        res = await fetch(endpoint(form), {
          method: 'POST', body, credentials: 'omit', headers: { Accept: 'application/json' },
        });
      } catch (e) {
        res = null; // network failure: the same key makes the retry safe
      }
      if ((res && ![502, 503, 504].includes(res.status)) || attempt >= RETRIES) break;
      const after = res ? +res.headers.get('Retry-After') : 0;
      await sleep(after > 0 ? Math.min(after, 10) * 1000 : 300 * 2 ** attempt * (0.5 + Math.random()));
    }
    try { data = res ? await res.json() : null; } catch (e) { data = null; }
    return { res, data };
  }

  // ---- Proof of work: the solver is a separate file, loaded the first time a form needs it.
  const powForms = new Set();
  let solver = null;
  async function solve(form) {
    const url = base + '/v1/forms/' + encodeURIComponent(fid(form)) + '/challenge';
    const c = await (await fetch(url, { credentials: 'omit' })).json();
    solver = solver || new Promise((ok, ko) => {
      const s = doc.createElement('script');
      s.src = base + '/inlet/' + VERSION + '/inlet-pow.js';
      s.onload = () => ok(w.__inletPow);
      s.onerror = ko;
      doc.head.appendChild(s);
    });
    const number = await (await solver)(c);
    return btoa(JSON.stringify({ algorithm: c.algorithm, challenge: c.challenge, number,
      salt: c.salt, signature: c.signature }));
  }

  async function send(form) {
    const state = form.dataset.inletState;
    if (state === 'submitting' || state === 'success') return;
    clear(form);
    const bad = Array.from(form.elements).filter((el) => el.willValidate && !el.validity.valid);
    if (bad.length) {
      bad.forEach((el) => mark(form, el, [el.validationMessage]));
      setState(form, 'error');
      bad[0].focus();
      emit(form, 'error', { form: fid(form), status: 0, error: 'invalid' });
      return;
    }
    const body = new URLSearchParams();
    new FormData(form).forEach((v, k) => { if (typeof v === 'string') body.append(k, v); });
    const meta = attribution();
    Object.keys(meta).forEach((k) => { if (!body.has(k)) body.set(k, meta[k]); });
    body.set('_elapsed_ms', String(Math.round(performance.now() - (seen.get(form) || 0))));
    body.set('_idem', key()); // one key per attempt, reused by its retries

    setState(form, 'submitting');
    buttons(form, true);
    if (form.dataset.inletChallenge === 'pow') powForms.add(fid(form));
    if (powForms.has(fid(form))) {
      try { body.set('_altcha', await solve(form)); } catch (e) { /* the server will say */ }
    }
    let { res, data } = await post(form, body);
    // A form that needs a proof of work: solve one (a worker, off the page's thread) and send
    // again; once more if it expired meanwhile. Known ahead with data-inlet-challenge="pow".
    for (let n = 0; n < 2 && res && res.status === 422 && data && /^challenge_/.test(data.error) &&
      (powForms.has(fid(form)) || (data.challenge && data.challenge.kind === 'pow')); n++) {
      powForms.add(fid(form));
      try { body.set('_altcha', await solve(form)); } catch (e) { break; }
      ({ res, data } = await post(form, body));
    }

    if (res && res.ok) {
      setState(form, 'success');
      const url = data && data.download_url;
      say(form, form.dataset.inletSuccess || (data && data.message) || 'Thank you!', url);
      emit(form, 'submitted', {
        form: fid(form), submission_id: data && data.submission_id,
        download_url: url || null,
      });
      if (url && form.dataset.inletAutoDownload !== 'off') download(url);
      const next = form.dataset.inletRedirect;
      if (next) location.assign(next);
      return; // a sent form stays sent: the button stays disabled
    }
    buttons(form, false);
    setState(form, 'error');
    const status = res ? res.status : 0;
    const fallback = res ? 'Sorry, this form could not be sent.' : 'Could not reach the server. Check your connection and try again.';
    const general = (data && data.message) || fallback;
    if (status === 422 && data && data.fields) showErrors(form, data.fields, 'Please correct the marked fields.');
    else say(form, general);
    emit(form, 'error', { form: fid(form), status, error: (data && data.error) || 'network' });
  }

  function enhance(form) {
    if (seen.has(form)) return;
    seen.set(form, performance.now());
    if (views) views.observe(form);
    form.noValidate = true; // errors are shown inline, the same way as the server's
    ensureHoneypot(form);
    form.addEventListener('submit', (e) => {
      e.preventDefault();
      send(form);
    });
  }

  // ---- Pop-ups: one <dialog> each, at most one open, frequency-capped per pop-up.
  const popups = {};
  let current = null;
  const capped = (p) => (load('cap:' + p.id) || 0) > Date.now();
  const cap = (p) => save('cap:' + p.id, Date.now() + p.days * 864e5);

  function trap(e) {
    if (e.key !== 'Tab') return;
    const items = Array.from(e.currentTarget.querySelectorAll(FOCUSABLE))
      .filter((el) => el.tabIndex >= 0 && el.getClientRects().length);
    if (!items.length) return;
    const first = items[0], last = items[items.length - 1];
    if (e.shiftKey ? doc.activeElement === first : doc.activeElement === last) {
      e.preventDefault();
      (e.shiftKey ? last : first).focus();
    }
  }

  function build(p) {
    const d = doc.createElement('dialog');
    d.className = 'inlet-popup';
    d.dataset.inletPopup = p.id;
    d.appendChild(p.tpl.content.cloneNode(true));
    const h = d.querySelector('h1,h2,h3,h4,[data-inlet-title]');
    if (h) {
      h.id = h.id || 'inlet-popup-' + p.id + '-title';
      d.setAttribute('aria-labelledby', h.id);
    } else {
      d.setAttribute('aria-label', p.tpl.dataset.label || 'Sign up');
    }
    const x = doc.createElement('button');
    x.type = 'button';
    x.className = 'inlet-close';
    x.setAttribute('aria-label', 'Close');
    x.textContent = '\u00d7';
    x.addEventListener('click', () => d.close());
    d.appendChild(x);
    d.addEventListener('keydown', trap);
    d.addEventListener('click', (e) => {
      const r = d.getBoundingClientRect();
      if (e.target === d && (e.clientX < r.left || e.clientX > r.right || e.clientY < r.top || e.clientY > r.bottom)) d.close();
    });
    d.addEventListener('close', () => {
      current = null;
      const sent = !!d.querySelector('form[data-inlet-state=success]');
      cap(p);
      emit(d, 'dismissed', { popup: p.id, submitted: sent });
      if (p.back && p.back.isConnected && p.back.focus) p.back.focus();
    });
    d.addEventListener(P + 'submitted', () => cap(p));
    doc.body.appendChild(d);
    d.querySelectorAll('form[data-inlet]').forEach(enhance);
    return (p.dialog = d);
  }

  function open(id, opener) {
    const p = popups[id];
    if (!p || current) return false;
    const d = p.dialog || build(p);
    p.back = opener || doc.activeElement;
    d.showModal();
    current = d;
    d.querySelectorAll('form[data-inlet]').forEach((f) => seen.set(f, performance.now()));
    const field = d.querySelector('input:not([type=hidden]):not([tabindex="-1"]),select,textarea');
    if (field) field.focus();
    emit(d, 'shown', { popup: id });
    return true;
  }

  function auto(p) {
    if (p.fired || capped(p)) return;
    if (open(p.id)) p.fired = true;
  }

  function when(test, fire) {
    const check = () => { if (test()) { w.removeEventListener('scroll', check); fire(); } };
    w.addEventListener('scroll', check, { passive: true });
    check();
  }

  const depth = () => {
    const h = doc.documentElement.scrollHeight - innerHeight;
    return h <= 0 ? 100 : (scrollY / h) * 100;
  };

  function onExit(fire) {
    // Pointer devices: the pointer leaves through the top edge of the viewport.
    doc.addEventListener('mouseout', (e) => { if (!e.relatedTarget && e.clientY <= 0) fire(); });
    // Touch devices have no pointer to leave: a quick scroll back up by a third of the
    // screen, after reading down at least one screen, counts as the exit signal.
    if (matchMedia('(hover: none)').matches) {
      let deepest = 0;
      when(() => {
        deepest = Math.max(deepest, scrollY);
        return deepest > innerHeight && scrollY < deepest - innerHeight / 3;
      }, fire);
    }
  }

  function setupPopup(tpl) {
    const id = tpl.dataset.inletPopup;
    if (popups[id]) return;
    const p = (popups[id] = { id, tpl, days: +(tpl.dataset.capDays || 7) });
    (tpl.dataset.trigger || '').split(/\s+/).forEach((t) => {
      const [kind, arg] = t.split(':'), n = +arg;
      if (kind === 'delay') setTimeout(() => auto(p), (n || 0) * 1000);
      else if (kind === 'scroll') when(() => depth() >= (n || 50), () => auto(p));
      else if (kind === 'exit') onExit(() => auto(p));
      else if (kind === 'click') {
        doc.addEventListener('click', (e) => {
          const el = e.target.closest && e.target.closest(t.slice(6));
          if (el && open(id, el)) e.preventDefault();
        });
      }
    });
  }

  function scan(root) {
    (root || doc).querySelectorAll('template[data-inlet-popup]').forEach(setupPopup);
    (root || doc).querySelectorAll('form[data-inlet]').forEach(enhance);
  }

  // Any element with data-inlet-open="popup-id" opens that pop-up on click (no cap applies:
  // the person asked for it).
  doc.addEventListener('click', (e) => {
    const t = e.target.closest && e.target.closest('[data-inlet-open]');
    if (t && open(t.dataset.inletOpen, t)) e.preventDefault();
  });

  w.inlet = {
    version: VERSION,
    open: (id) => open(id),
    close: () => { if (current) current.close(); },
    on: (type, fn) => w.addEventListener(P + type, fn),
    scan,
  };

  const start = () => {
    scan();
    new MutationObserver((list) => list.forEach((m) => m.addedNodes.forEach((n) => {
      if (n.nodeType === 1 && !n.closest('dialog.inlet-popup')) scan(n.parentNode);
    }))).observe(doc.body, { childList: true, subtree: true });
    emit(doc, 'ready', { version: VERSION });
  };
  if (doc.readyState === 'loading') doc.addEventListener('DOMContentLoaded', start);
  else start();
})();
