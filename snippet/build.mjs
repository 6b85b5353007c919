// Minifies inlet.js into dist/inlet.min.js, the file Inlet embeds and serves at /inlet.js.
// `node build.mjs --check` fails when dist/ is stale (the browser test suite runs it), so the
// served script is always the reviewed source.
import { readFile, writeFile, mkdir } from 'node:fs/promises';
import { minify } from 'terser';

const here = new URL('.', import.meta.url);
const src = await readFile(new URL('inlet.js', here), 'utf8');
const out = await minify(src, {
  ecma: 2018,
  compress: { passes: 2 },
  mangle: true,
  format: { comments: /^!/ },
});
const code = out.code + '\n';
const target = new URL('dist/inlet.min.js', here);
if (process.argv.includes('--check')) {
  const have = await readFile(target, 'utf8').catch(() => '');
  if (have !== code) {
    console.error('snippet/dist/inlet.min.js is stale: run `npm run build` in snippet/ and commit it');
    process.exit(1);
  }
  console.log('snippet/dist/inlet.min.js is up to date');
} else {
  await mkdir(new URL('dist/', here), { recursive: true });
  await writeFile(target, code);
  console.log(`wrote dist/inlet.min.js: ${code.length} bytes`);
}
