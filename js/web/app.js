// The page: onnxruntime-web, WebGPU where the browser offers it (else WebAssembly with threads),
// the graphs and weights fetched once (HTTP cache, revalidated by ETag; src/web.js) and the
// sessions kept for every run; the picture drawn as it improves. window.onnxstyle.run() drives it from tests.

import { fitSize } from './src/images.js';
import { stylize } from './src/stylize.js';
import { loadWebModels } from './src/web.js';

// WebAssembly memory is at most 4 GiB. The loss graph's working memory is about 1,972 bytes a
// pixel (runtime/images.py's model of the CPU provider, graph_memory); with the weights in each
// session and the allocator's slack, about 1 GiB of it is safe: larger pictures are refused with
// a message instead of crashing the tab.
const MAX_PIXELS = 512 * 1024;
const SAMPLES = { content: ['astronaut.png', 'chelsea.jpg'], style: ['starry_night.jpg', 'the_scream.jpg', 'woman_with_hat.jpg'] };
const $ = (id) => document.getElementById(id);

let modelsPromise = null;

/** The engine and the sessions, made once per page. */
function models() {
  modelsPromise ??= loadWebModels(new URL('./', location.href));
  return modelsPromise;
}

/** A URL or a File as {width, height, data: RGB Uint8Array}. */
async function decode(source) {
  const blob = source instanceof Blob ? source : await (await fetch(source)).blob();
  const bitmap = await createImageBitmap(blob, { imageOrientation: 'from-image', colorSpaceConversion: 'none' });
  const canvas = new OffscreenCanvas(bitmap.width, bitmap.height);
  const ctx = canvas.getContext('2d');
  ctx.drawImage(bitmap, 0, 0);
  const rgba = ctx.getImageData(0, 0, bitmap.width, bitmap.height).data;
  const data = new Uint8Array(bitmap.width * bitmap.height * 3);
  for (let i = 0, j = 0; i < data.length; i += 3, j += 4) {
    data[i] = rgba[j]; data[i + 1] = rgba[j + 1]; data[i + 2] = rgba[j + 2];
  }
  return { width: bitmap.width, height: bitmap.height, data };
}

function draw({ width, height, data }) {
  const canvas = $('picture');
  canvas.width = width;
  canvas.height = height;
  const ctx = canvas.getContext('2d');
  const img = ctx.createImageData(width, height);
  for (let i = 0, j = 0; i < data.length; i += 3, j += 4) {
    img.data[j] = data[i]; img.data[j + 1] = data[i + 1]; img.data[j + 2] = data[i + 2]; img.data[j + 3] = 255;
  }
  ctx.putImageData(img, 0, 0);
}

let controller = null;

/** Stylize with the page's choices (or `opts`: {content, style: URL or File, size, iterations}). */
async function run(opts = {}) {
  $('error').textContent = '';
  const status = $('status');
  controller = new AbortController();
  $('go').disabled = true;
  $('stop').disabled = false;
  try {
    const t0 = performance.now();
    status.textContent = 'Loading the graphs and weights (once per visit)…';
    const m = await models();
    const loaded = (performance.now() - t0) / 1000;
    const size = Number(opts.size ?? $('size').value);
    const iterations = Number(opts.iterations ?? $('iterations').value);
    const content = await decode(opts.content ?? contentSource());
    const style = await decode(opts.style ?? styleSource());
    const [h, w] = fitSize([content.height, content.width], size);
    if (h * w > MAX_PIXELS) {
      throw new Error(`${w}x${h} px is more than the browser can hold (at most ${MAX_PIXELS.toLocaleString('en')} pixels, `
        + `${Math.floor(Math.sqrt(MAX_PIXELS))} px square): pick a smaller size, or use the command line for large pictures`);
    }
    const result = await stylize(m, content, [style], { size, iterations }, {
      signal: controller.signal,
      onProgress: (p) => {
        draw(p.image());
        status.textContent = `iteration ${p.iteration}/${p.iterations}  loss ${p.terms.total.toPrecision(5)}  `
          + `${p.elapsed.toFixed(1)} s  (${(p.elapsed / p.evaluations).toFixed(2)} s per evaluation)`;
      },
    });
    draw(result.image);
    const { image, iterate, history, ...rest } = result;
    const summary = { ...rest, size: [image.height, image.width], backend: m.engine.backend, threads: m.engine.threads, loadSeconds: loaded };
    status.textContent = `${result.message}: ${image.width}x${image.height} px, ${result.iterations} iterations, `
      + `${result.evaluations} evaluations in ${result.seconds.toFixed(1)} s on ${m.engine.backend}`
      + `${m.engine.backend === 'wasm' ? ` (${m.engine.threads} threads)` : ''}; loss ${result.final.total.toPrecision(5)}`;
    return { ...summary, png: $('picture').toDataURL('image/png') };
  } catch (e) {
    $('error').textContent = e.message ?? String(e);
    throw e;
  } finally {
    $('go').disabled = false;
    $('stop').disabled = true;
  }
}

const contentSource = () => $('content-file').files[0] ?? `samples/${$('content-sample').value}`;
const styleSource = () => $('style-file').files[0] ?? `samples/${$('style-sample').value}`;

function setup() {
  for (const [kind, names] of Object.entries(SAMPLES)) {
    const select = $(`${kind}-sample`);
    for (const n of names) select.add(new Option(n, n));
    const thumb = () => { $(`${kind}-thumb`).src = URL.createObjectURL($(`${kind}-file`).files[0] ?? new Blob()); };
    select.onchange = () => { $(`${kind}-file`).value = ''; $(`${kind}-thumb`).src = `samples/${select.value}`; };
    $(`${kind}-file`).onchange = thumb;
    $(`${kind}-thumb`).src = `samples/${names[0]}`;
  }
  $('go').onclick = () => run().catch(() => {});
  $('stop').onclick = () => controller?.abort();
  models().then((m) => {
    const d = m.defaults;
    $('size').value = Math.min(d.size, 256); // the defaults' size, or less: wasm is slower than the CLI
    $('iterations').value = d.iterations;
    $('backend').textContent = m.engine.backend === 'webgpu' ? 'Running on WebGPU (the graphs) and WebAssembly (the optimiser steps).'
      : `Running on WebAssembly with ${m.engine.threads} thread${m.engine.threads > 1 ? 's' : ''}`
        + `${self.crossOriginIsolated ? '' : ' (this page is not cross-origin isolated, so no threads)'}; no WebGPU here.`;
  }, (e) => { $('error').textContent = `cannot load the graphs: ${e.message}`; });
}

window.onnxstyle = { run, models };
setup();
