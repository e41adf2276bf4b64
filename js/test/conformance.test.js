// Conformance: the same inputs (the bundled pair at two odd sizes) through Python onnxruntime,
// onnxruntime-node and onnxruntime-web in headless Chromium. Terms within 1e-5 relative of
// Python's, the gradient within 1e-4 (max abs diff / max abs), the targets each runtime computes
// within 1e-5 of Python's, and a 10-iteration run within 0.5% of Python's lbfgs-device loss.
// Chromium must start: a missing or broken browser fails the suite (CI installs it).
// ONNXSTYLE_BENCH_SIZE=256 also times one evaluation per runtime; ONNXSTYLE_RESULTS=FILE writes
// every figure there as JSON.

import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { loadNodeModels } from '../src/node.js';
import { launch, REPO, runPython, serve, JS } from './browser.js';
import { checkCase, timeEvaluation } from './compare.js';

// Tolerances (issue 26): float32 graphs whose runtimes differ in kernels and threading; the
// terms sum ~10^5 rounded products (float32 eps 6e-8 x sqrt(10^5) ~ 2e-5 worst, ~1e-6 typical).
const TERMS = 1e-5, GRAD = 1e-4, TARGETS = 1e-5, LOSS = 0.005;
const BENCH = Number(process.env.ONNXSTYLE_BENCH_SIZE || 0);
const work = mkdtempSync(join(tmpdir(), 'onnxstyle-conformance-'));
const refDir = join(work, 'ref');
let index;
const results = { runtimes: {} };

before(() => {
  runPython(['js/test/reference.py', refDir, ...(BENCH ? ['--bench', String(BENCH)] : [])]);
  index = JSON.parse(readFileSync(join(refDir, 'index.json'), 'utf8'));
  results.python = { onnxruntime: index.onnxruntime, cases: index.cases.map((c) => ({ hw: c.hw, terms: c.terms, lbfgs_device: c.lbfgs_device })), bench: index.bench };
});

after(() => {
  if (process.env.ONNXSTYLE_RESULTS) writeFileSync(process.env.ONNXSTYLE_RESULTS, `${JSON.stringify(results, null, 1)}\n`);
  rmSync(work, { recursive: true, force: true });
});

function judge(summary, runtime) {
  for (const c of summary) {
    const where = `${runtime} at ${c.hw.join('x')}`;
    for (const [k, e] of Object.entries(c.termErrors)) assert.ok(e <= TERMS, `${where}: ${k} off by ${e} relative`);
    assert.ok(c.gradError <= GRAD, `${where}: gradient off by ${c.gradError} (max abs diff / max abs)`);
    for (const [k, e] of Object.entries(c.targets)) assert.ok(e <= TARGETS, `${where}: target ${k} off by ${e}`);
    assert.ok(Math.abs(c.lbfgs.relative) <= LOSS,
      `${where}: 10 iterations end at ${c.lbfgs.final}, Python lbfgs-device at ${c.lbfgs.python} (${(100 * c.lbfgs.relative).toFixed(3)}%)`);
  }
}

const bytesOf = (file) => {
  const b = readFileSync(join(refDir, file));
  return b.buffer.slice(b.byteOffset, b.byteOffset + b.length);
};

test('onnxruntime-node gives Python onnxruntime\'s terms, gradient, targets and L-BFGS run', async () => {
  const models = await loadNodeModels();
  const cases = [];
  for (const ref of index.cases) cases.push(await checkCase(models, ref, async (f) => bytesOf(f)));
  let benchSeconds = null;
  if (BENCH) {
    const img = (name) => {
      const a = index.bench_inputs[name];
      return { height: a.shape[0], width: a.shape[1], data: Float32Array.from(new Uint8Array(bytesOf(a.file))) };
    };
    benchSeconds = await timeEvaluation(models, img('content'), img('style'));
  }
  const { version } = JSON.parse(readFileSync(join(JS, 'node_modules', 'onnxruntime-node', 'package.json'), 'utf8'));
  results.runtimes.node = { runtime: `onnxruntime-node ${version}`, backend: 'cpu', cases, benchSeconds };
  judge(cases, 'onnxruntime-node');
});

test('onnxruntime-web (wasm) in headless Chromium gives the same', async () => {
  const site = join(work, 'site');
  runPython(['-m', 'onnxstyle.serve.web', site]); // the page's static build: the files the browser loads
  const server = await serve({ '/test/': join(JS, 'test'), '/ref/': refDir, '/': site });
  const browser = await launch(); // throws if Chromium cannot start: the suite fails
  try {
    const page = await browser.open(`${server.url}/test/web/conformance.html`);
    await page.waitFor('window.ready');
    const out = await page.evaluate(`window.conformance('/ref', { bench: ${BENCH} })`);
    const { version } = JSON.parse(readFileSync(join(JS, 'node_modules', 'onnxruntime-web', 'package.json'), 'utf8'));
    results.runtimes.web = { runtime: `onnxruntime-web ${version}`, browser: browser.version, ...out };
    assert.ok(out.isolated, 'the page is not cross-origin isolated (no wasm threads)');
    judge(out.cases, `onnxruntime-web (${out.backend}, ${browser.version})`);
    // The page itself: it loads, says its backend, and refuses a size the browser cannot hold.
    const app = await browser.open(`${server.url}/`);
    await app.waitFor("document.getElementById('iterations').value");
    assert.match(await app.evaluate("document.getElementById('backend').textContent"), /Running on WebAssembly with \d+ thread/);
    const refusal = await app.evaluate("window.onnxstyle.run({ size: 2000, iterations: 1 }).then(() => 'ran', (e) => e.message)");
    assert.match(refusal, /^2000x2000 px is more than the browser can hold/);
  } finally {
    await browser.close();
    await server.close();
  }
});
