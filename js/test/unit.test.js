// The JS runtime's own pieces against fixed oracles: numpy's generator, Python's round, the
// protobuf metadata reader, and lbfgs.py's line search and ring.

import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { fitSize, roundHalfEven } from '../src/images.js';
import { LineSearch, Ring } from '../src/lbfgs.js';
import { metadata } from '../src/models.js';
import { Generator } from '../src/random.js';
import { gram } from '../src/objective.js';
import { REPO } from './browser.js';

test('Generator(0).uniform is numpy.random.default_rng(0).uniform, bit for bit', () => {
  // numpy 2: [repr(v) for v in np.random.default_rng(0).uniform(10, 20, 3)], default_rng(12345678901).uniform(0, 1, 2)
  assert.deepEqual(Array.from(new Generator(0).uniform(10, 20, 3)), [16.369616873214543, 12.697867137638703, 10.409735239361947]);
  assert.deepEqual(Array.from(new Generator(12345678901).uniform(0, 1, 2)), [0.8361377783790088, 0.3167040550006629]);
});

test('fitSize rounds halves to even, as Python', () => {
  assert.equal(roundHalfEven(84.5), 84);
  assert.equal(roundHalfEven(85.5), 86);
  assert.equal(roundHalfEven(-0.4), -0);
  assert.deepEqual(fitSize([169, 256], 128), [84, 128]); // 84.5 -> 84
  assert.deepEqual(fitSize([10, 400], 100), [16, 100]); // each side >= 16
});

test('metadata reads the graphs\' versions', () => {
  const m = metadata(readFileSync(join(REPO, 'onnxstyle', 'data', 'lbfgs_trial.onnx')));
  assert.equal(m['onnxstyle.lbfgs'], 'trial 2');
});

test('gram is F F^T / M', () => {
  const f = Float32Array.from([1, 2, 3, 4, 5, 6]); // N = 2, M = 3
  assert.deepEqual(Array.from(gram(f, 2, 3)), [14 / 3, 32 / 3, 32 / 3, 77 / 3].map(Math.fround));
});

test('line search: backtracks by the quadratic model, accepts strong Wolfe, extrapolates', () => {
  // f(t) = (t - 2)^2 along the step: f = 4, slope -4 at 0.
  let ls = new LineSearch(1, false);
  assert.deepEqual(ls.judge(4, -4, 1, -2), [true, false]); // |slope| 2 <= 0.9 x 4: strong Wolfe
  ls = new LineSearch(1, false);
  assert.deepEqual(ls.judge(4, -4, 1, -3.8), [false, true]); // a decrease, still steep: kept, go further
  assert.equal(ls.t, 10); // secant on the slope: 4 / 0.2 = 20, capped at 10x
  assert.deepEqual(ls.judge(4, -4, 0, 0), [true, false]);
  ls = new LineSearch(1, false);
  assert.deepEqual(ls.judge(4, -4, 10, 5), [false, false]); // no decrease: backtrack
  assert.equal(ls.t, 0.2); // the quadratic's minimum: curv = 10 - 4 + 4, u = 4 / 20
});

test('ring keeps m pairs, drops non-positive curvature', () => {
  const r = new Ring(2);
  r.store(1, 2);
  r.store(-1, 2); // skipped
  assert.equal(r.count, 1);
  r.store(2, 4);
  r.store(3, 3);
  assert.deepEqual([r.start, r.count, r.gamma], [1, 2, 1]);
  assert.deepEqual(r.slots(), [1, 0]);
});
