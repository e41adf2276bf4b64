// The command line: a short run writes the picture and a report with Python's term names; bad
// input is one line on stderr and a non-zero exit.

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { JS, REPO } from './browser.js';

const cli = (...args) => spawnSync(process.execPath, [join(JS, 'bin', 'onnxstyle.js'), ...args], { cwd: REPO, encoding: 'utf8', timeout: 300_000 });

test('stylize writes the picture and a report whose terms add up', () => {
  const dir = mkdtempSync(join(tmpdir(), 'onnxstyle-cli-'));
  try {
    const out = join(dir, 'out.png'), report = join(dir, 'r.json');
    const r = cli('stylize', 'onnxstyle/data/chelsea.jpg', 'onnxstyle/data/the_scream.jpg', '-o', out, '--size', '48',
      '--iterations', '3', '--report', report);
    assert.equal(r.status, 0, r.stderr);
    assert.ok(existsSync(out));
    const rep = JSON.parse(readFileSync(report, 'utf8'));
    assert.deepEqual(rep.size, [32, 48]); // chelsea is 2:3
    assert.equal(rep.iterations, 3);
    assert.deepEqual(Object.keys(rep.final).sort(), ['content', 'style', 'total', 'tv']);
    // the loss as the Python report reads it: the weighted parts and the total they add up to
    for (const { content, style, tv, total } of [rep.initial, rep.final]) {
      const sum = content + style + tv;
      assert.ok(Math.abs(sum - total) <= 1e-5 * total, `${sum} vs ${total}`); // float32 terms
    }
    assert.ok(rep.final.total < rep.initial.total);
    // the progress lines read the same: the last one shows the report's final loss, part for part
    const last = r.stderr.trim().split('\n').at(-1);
    const [, total, content, style] = last.match(/^iteration 3\/3  loss (\S+) = content (\S+) \+ style (\S+)  /);
    for (const [shown, value] of [[total, rep.final.total], [content, rep.final.content], [style, rep.final.style]]) {
      assert.ok(Math.abs(Number(shown) - value) <= 5e-4 * value, `${last} vs ${JSON.stringify(rep.final)}`);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('bad input: one line, non-zero exit', () => {
  for (const args of [['stylize', 'nope.jpg', 'onnxstyle/data/the_scream.jpg', '-o', '/tmp/x.png'],
    ['stylize', 'onnxstyle/data/chelsea.jpg', 'onnxstyle/data/the_scream.jpg', '-o', '/tmp/x.png', '--size', 'big'],
    ['stylize', 'onnxstyle/data/chelsea.jpg'], ['paint'],
    // options the library refuses as Python's options.py does, before anything is written
    ...['--style-weight=-1', '--content-weight=-0.5', '--tv-weight=-1', '--look-weight=-4', '--style-scale=0']
      .map((o) => ['stylize', 'onnxstyle/data/chelsea.jpg', 'onnxstyle/data/the_scream.jpg', '-o', '/tmp/onnxstyle-refused.png', '--size', '32', o])]) {
    rmSync('/tmp/onnxstyle-refused.png', { force: true });
    const r = cli(...args);
    assert.notEqual(r.status, 0, args.join(' '));
    assert.match(r.stderr, /^onnxstyle\.js: error: /);
    assert.doesNotMatch(r.stderr, /\n\s+at /, 'no stack trace');
    assert.ok(!existsSync('/tmp/onnxstyle-refused.png'), args.join(' '));
  }
});
