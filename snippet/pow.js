/*! Inlet proof-of-work solver (the ALTCHA protocol). MIT OR Apache-2.0. The embed script
 * loads it only for forms that require a challenge. It finds the number n (0..maxnumber) for
 * which SHA-256(salt + n) is the challenge: in a Web Worker when the page allows one
 * (worker-src blob:), else on the page in small slices that never block it for long. */
(() => {
  'use strict';
  const solver = async (c, slice) => {
    const enc = new TextEncoder();
    for (let n = 0; n <= c.maxnumber; n++) {
      const h = new Uint8Array(await crypto.subtle.digest('SHA-256', enc.encode(c.salt + n)));
      let hex = '';
      for (let i = 0; i < h.length; i++) hex += (h[i] < 16 ? '0' : '') + h[i].toString(16);
      if (hex === c.challenge) return n;
      if (slice && n % 500 === 499) await new Promise((r) => setTimeout(r, 0));
    }
    throw new Error('no solution');
  };
  const inWorker = (c) => new Promise((resolve, reject) => {
    const src = 'const solver=' + solver + ';onmessage=async(e)=>{try{postMessage(await solver(e.data))}' +
      'catch(x){postMessage(-1)}}';
    const url = URL.createObjectURL(new Blob([src], { type: 'text/javascript' }));
    const worker = new Worker(url); // throws where the page's CSP forbids blob: workers
    const done = (f, v) => { worker.terminate(); URL.revokeObjectURL(url); f(v); };
    worker.onmessage = (e) => (e.data < 0 ? done(reject, new Error('no solution')) : done(resolve, e.data));
    worker.onerror = (e) => { e.preventDefault(); done(reject, new Error('worker failed')); };
    worker.postMessage(c);
  });
  window.__inletPow = async (c) => {
    try {
      return await inWorker(c);
    } catch (e) {
      return solver(c, true);
    }
  };
})();
