#!/usr/bin/env node
// node js/bin/onnxstyle.js stylize CONTENT STYLE [STYLE...] -o OUT [--size N] [--iterations K] [--report R.json]
// The names are the Python CLI's; the run is Python's `--optimizer lbfgs-device --until iterations
// --scales none` (one scale, a fixed iteration count, L-BFGS through the step graphs).

import { writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { stylize, weighted } from '../src/stylize.js';
import { loadNodeModels, modelsDir, readImage, writeImage } from '../src/node.js';

const USAGE = `usage: onnxstyle.js stylize CONTENT STYLE [STYLE...] -o OUT [options]
  -o, --output OUT        the picture (.png or .jpg)
  --size N                longer side in px (default: the defaults file's)
  --iterations K          L-BFGS iterations (default: the defaults file's)
  --content-weight W, --style-weight W, --tv-weight W, --style-scale S, --seed N
  --init noise|content|random
  --look-size N|none      above N px also score the picture shrunk to N as a picture of that size (default: the defaults file's)
  --look-weight W         that score's weight (default: the defaults file's)
  --report R.json         write a JSON report (initial and final as the Python report's: the weighted parts and their total)
  --models DIR            the exported graphs (default: ${modelsDir()})
  --threads N             onnxruntime intra-op threads for the loss graph (default: all cores)
  --quiet                 no progress lines`;

const NUMBERS = ['size', 'iterations', 'content-weight', 'style-weight', 'tv-weight', 'style-scale', 'look-weight', 'seed',
  'threads'];

function fail(message) {
  process.stderr.write(`onnxstyle.js: error: ${message}\n`);
  process.exit(2);
}

async function main(argv) {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      allowPositionals: true,
      options: {
        output: { type: 'string', short: 'o' },
        report: { type: 'string' },
        models: { type: 'string' },
        init: { type: 'string' },
        'look-size': { type: 'string' },
        quiet: { type: 'boolean' },
        help: { type: 'boolean', short: 'h' },
        ...Object.fromEntries(NUMBERS.map((n) => [n, { type: 'string' }])),
      },
    });
  } catch (e) {
    fail(e.message);
  }
  const { values, positionals } = parsed;
  if (values.help) return void process.stdout.write(`${USAGE}\n`);
  const [command, content, ...styles] = positionals;
  if (command !== 'stylize') fail(`unknown command ${command ?? '(none)'}\n${USAGE}`);
  if (!content || !styles.length) fail('stylize needs a content image and at least one style image');
  if (!values.output) fail('--output (-o) is required');
  const num = {};
  for (const n of NUMBERS) {
    if (values[n] === undefined) continue;
    const v = Number(values[n]);
    if (!Number.isFinite(v)) fail(`--${n} ${values[n]}: expected a number`);
    num[n.replace(/-(\w)/g, (_, c) => c.toUpperCase())] = v;
  }
  const { threads, ...options } = num;
  if (values.init) options.init = values.init;
  const look = values['look-size'];
  if (look !== undefined) {
    if (look !== 'none' && !(Number.isInteger(Number(look)) && Number(look) >= 16)) fail(`--look-size ${look}: expected a size in px (>= 16) or none`);
    options.lookSize = look === 'none' ? null : Number(look);
  }

  const models = await loadNodeModels({ dir: values.models, threads });
  const images = await Promise.all([content, ...styles].map(readImage));
  const controller = new AbortController();
  process.once('SIGINT', () => controller.abort()); // Ctrl-C: stop and write the picture so far
  const result = await stylize(models, images[0], images.slice(1), options, {
    signal: controller.signal,
    onProgress: values.quiet ? undefined : (p) => {
      const t = p.loss;
      const parts = ['content', 'style', 'look', 'tv'].filter((k) => t[k]).map((k) => `${k} ${t[k].toPrecision(4)}`);
      process.stderr.write(`iteration ${p.iteration}/${p.iterations}  loss ${t.total.toPrecision(6)} = `
        + `${parts.join(' + ') || '0'}  ${p.elapsed.toFixed(1)} s\n`);
    },
  });
  await writeImage(values.output, result.image);
  const { image, iterate, history, ...rest } = result;
  if (values.report) {
    writeFileSync(values.report, `${JSON.stringify({
      size: [image.height, image.width], ...rest, initial: weighted(rest.initial, rest.options),
      final: weighted(rest.final, rest.options), runtime: models.engine.name, backend: models.engine.backend,
      optimizer: 'lbfgs-device', graph: models.meta,
    }, null, 1)}\n`);
  }
  process.stdout.write(`wrote ${values.output} (${image.width}x${image.height}, ${result.iterations} iterations, `
    + `${result.seconds.toFixed(1)} s on ${models.engine.name}); ${result.message}\n`);
}

main(process.argv.slice(2)).catch((e) => fail(e?.message ?? String(e)));
