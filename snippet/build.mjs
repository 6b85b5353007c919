// Minifies inlet.js into dist/inlet.min.js, the file Inlet embeds and serves at /inlet.js, and
// pow.js (the proof-of-work solver, loaded only for forms that need it) into
// dist/inlet-pow.min.js. `node build.mjs --check` fails when dist/ is stale (the browser test
// suite runs it), so the served scripts are always the reviewed source.
import { readFile, writeFile, mkdir } from 'node:fs/promises';
import { minify } from 'terser';

const here = new URL('.', import.meta.url);
let stale = false;
for (const [source, built] of [['inlet.js', 'inlet.min.js'], ['pow.js', 'inlet-pow.min.js']]) {
  const src = await readFile(new URL(source, here), 'utf8');
  const out = await minify(src, {
    ecma: 2018,
    compress: { passes: 2 },
    mangle: true,
    format: { comments: /^!/ },
  });
  const code = out.code + '\n';
  const target = new URL('dist/' + built, here);
  if (process.argv.includes('--check')) {
    const have = await readFile(target, 'utf8').catch(() => '');
    if (have !== code) {
      console.error(`snippet/dist/${built} is stale: run \`npm run build\` in snippet/ and commit it`);
      stale = true;
    } else {
      console.log(`snippet/dist/${built} is up to date`);
    }
  } else {
    await mkdir(new URL('dist/', here), { recursive: true });
    await writeFile(target, code);
    console.log(`wrote dist/${built}: ${code.length} bytes`);
  }
}
if (stale) process.exit(1);
