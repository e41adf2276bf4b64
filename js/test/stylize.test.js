// The API: progress after each iteration, with the picture on demand; an AbortSignal stops the
// run, which returns its picture so far.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { loadNodeModels, readImage } from '../src/node.js';
import { stylize } from '../src/stylize.js';

test('progress each iteration; abort returns the picture so far', async () => {
  const models = await loadNodeModels();
  const [photo, painting] = await Promise.all(['chelsea.jpg', 'the_scream.jpg'].map((f) => readImage(`../onnxstyle/data/${f}`)));
  const stop = new AbortController();
  const seen = [];
  const result = await stylize(models, photo, [painting], { size: 40, iterations: 50 }, {
    signal: stop.signal,
    onProgress: (p) => {
      seen.push(p.iteration);
      const img = p.image();
      assert.equal(img.data.length, img.width * img.height * 3);
      if (p.iteration === 3) stop.abort();
    },
  });
  assert.deepEqual(seen, [1, 2, 3]);
  assert.equal(result.stopped, true);
  assert.equal(result.stop, 'stopped');
  assert.equal(result.iterations, 3);
  assert.ok(result.final.total < result.initial.total);
  assert.equal(result.image.data.length, result.image.width * result.image.height * 3);
});
