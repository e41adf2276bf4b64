// A picture made in headless Chromium by the page at /web/ of `onnxstyle serve` from the bundled
// pair: the picture and a screenshot of the page into docs/, its time and backend into
// benchmarks/results/browser_picture.json.
//   node js/scripts/browser_picture.js [--size 256] [--iterations 50]

import { spawn } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { launch, python, REPO } from '../test/browser.js';

const { values } = parseArgs({ options: { size: { type: 'string', default: '256' }, iterations: { type: 'string', default: '50' } } });
const size = Number(values.size), iterations = Number(values.iterations);

const work = mkdtempSync(join(tmpdir(), 'onnxstyle-picture-'));
const env = { ...process.env, PYTHONPATH: REPO };
const server = spawn(python(), ['-m', 'onnxstyle', 'serve', '--port', '0', '--workdir', join(work, 'serve')], { cwd: work, env });
const url = await new Promise((ok, fail) => {
  let out = '';
  const look = (d) => {
    out += d;
    const m = out.match(/running on (http:\/\/127\.0\.0\.1:\d+)/);
    if (m) ok(m[1]);
  };
  server.stdout.on('data', look);
  server.stderr.on('data', look);
  server.on('exit', (c) => fail(new Error(`onnxstyle serve exited (${c}): ${out.slice(-400)}`)));
});
const browser = await launch();
try {
  const page = await browser.open(`${url}/web/`);
  await page.waitFor("window.onnxstyle && document.getElementById('iterations').value");
  const t0 = Date.now();
  const result = await page.evaluate(`window.onnxstyle.run({ content: 'samples/astronaut.png', style: 'samples/starry_night.jpg', size: ${size}, iterations: ${iterations} })`,
    { timeout: 3_600_000 });
  const wall = (Date.now() - t0) / 1000;
  const shot = await page.screenshot(1000, 1100);
  const { png, ...summary } = result;
  writeFileSync(join(REPO, 'docs', 'browser_picture.png'), Buffer.from(png.split(',')[1], 'base64'));
  writeFileSync(join(REPO, 'docs', 'browser_page.png'), shot);
  const backend = await page.evaluate("document.getElementById('backend').textContent");
  const record = { ...summary, wallSeconds: wall, page: backend, browser: browser.version, pair: ['astronaut.png', 'starry_night.jpg'] };
  writeFileSync(join(REPO, 'benchmarks', 'results', 'browser_picture.json'), `${JSON.stringify(record, null, 1)}\n`);
  console.log(`${summary.size.join('x')} px, ${summary.iterations} iterations, ${summary.evaluations} evaluations in ${summary.seconds.toFixed(1)} s on ${summary.backend} (${summary.threads} threads); loss ${summary.final.total}`);
} finally {
  await browser.close();
  server.kill('SIGTERM');
}
