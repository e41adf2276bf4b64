// runtime/look.py's look term in JS: the box filter against an exact oracle, the term against the
// coarse objective on the picture shrunk by whole 2 x 2 boxes, the gradient against differences.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { boxRows, LookObjective } from '../src/look.js';
import { loadNodeModels, readImage } from '../src/node.js';
import { Objective } from '../src/objective.js';
import { prepare } from '../src/stylize.js';
import { Generator } from '../src/random.js';

test('boxRows average the area each output covers', () => {
  for (const [nIn, nOut] of [[64, 32], [57, 23]]) {
    const x = new Generator(1).uniform(0, 255, nIn);
    const rows = boxRows(nOut, nIn);
    rows.forEach(({ start, weights }, i) => {
      // oracle: each input repeated nOut times; output i is the mean of its nIn repeated samples
      let want = 0;
      for (let k = i * nIn; k < (i + 1) * nIn; k++) want += x[Math.floor(k / nOut)];
      want /= nIn;
      const got = weights.reduce((s, w, k) => s + w * x[start + k], 0);
      assert.ok(Math.abs(got - want) < 1e-9, `${nIn}->${nOut} row ${i}: ${got} vs ${want}`);
    });
  }
});

test('the look term: the coarse loss of the shrunk picture; gradient by differences', async () => {
  const models = await loadNodeModels();
  const [photo, painting] = await Promise.all(['astronaut.png', 'the_scream.jpg'].map((f) => readImage(`../onnxstyle/data/${f}`)));
  const big = prepare(photo, [painting], 48, 1), small = prepare(photo, [painting], 24, 1);
  const opts = { styleWeight: 1e3, tvWeight: 0 };
  const base = await Objective.create(models, { content: big.content, styles: big.styles, ...opts });
  const coarse = await Objective.create(models, { content: small.content, styles: small.styles, ...opts });
  const look = new LookObjective(base, coarse, 2); // weighted: --look-weight 2
  const x = Float32Array.from(new Generator(3).uniform(0, 255, 48 * 48 * 3));
  const seen = new Float32Array(24 * 24 * 3);
  for (let i = 0; i < 24; i++) for (let j = 0; j < 24; j++) for (let c = 0; c < 3; c++) {
    let s = 0;
    for (const [a, b] of [[0, 0], [0, 1], [1, 0], [1, 1]]) s += x[((2 * i + a) * 48 + 2 * j + b) * 3 + c];
    seen[(i * 24 + j) * 3 + c] = s / 4;
  }
  const { terms, grad } = await look.evaluate(x);
  const want = (await coarse.evaluate(seen)).terms.total;
  assert.ok(Math.abs(terms.look - want) / want < 1e-5, `${terms.look} vs ${want}`); // float32 shrink: sums of 4
  const b = (await base.evaluate(x)).terms.total;
  assert.ok(Math.abs(terms.total - (b + 2 * terms.look)) / terms.total < 1e-5);
  // central difference along the gradient's direction (RMS 1 per pixel), eps 0.1: test_graph's bound
  let norm = 0;
  for (const g of grad) norm += g * g;
  const v = Float32Array.from(grad, (g) => g * Math.sqrt(grad.length / norm));
  const at = async (s) => (await look.evaluate(Float32Array.from(x, (xi, i) => xi + s * v[i]))).terms.total;
  const fd = ((await at(0.1)) - (await at(-0.1))) / 0.2;
  const dot = grad.reduce((s, g, i) => s + g * v[i], 0);
  assert.ok(Math.abs(fd - dot) / Math.abs(dot) < 5e-3, `${fd} vs ${dot}`);
});
