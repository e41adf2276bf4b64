// The browser's engine: onnxruntime-web with WebGPU where the browser offers an adapter, else
// WebAssembly (threads when the page is cross-origin isolated); the step graphs always on
// WebAssembly (small element-wise work). Files come from the page's folder layout
// (onnxstyle/serve/web.py): models/, steps/, ort/.

import { loadModels, STEP_GRAPHS } from './models.js';

export async function pickBackend(prefer) {
  if (prefer) return prefer;
  if (globalThis.navigator?.gpu) {
    // Where the GPU is off (e.g. --disable-gpu) requestAdapter may never settle: 3 s, then wasm.
    const late = new Promise((ok) => setTimeout(() => ok(null), 3000));
    try {
      if (await Promise.race([navigator.gpu.requestAdapter(), late])) return 'webgpu';
    } catch { /* no adapter */ }
  }
  return 'wasm';
}

async function fetchBytes(url) {
  const r = await fetch(url, { cache: 'no-cache' }); // revalidated by ETag: a 304 reads the cached copy
  if (!r.ok) throw new Error(`${url}: HTTP ${r.status}`);
  return new Uint8Array(await r.arrayBuffer());
}

/** loadModels() in the browser from `base` (the page's folder URL); `backend`: 'wasm' or 'webgpu' (default: chosen). */
export async function loadWebModels(base, { backend, threads } = {}) {
  backend = await pickBackend(backend);
  const ort = await import(new URL(backend === 'webgpu' ? 'ort/ort.webgpu.min.mjs' : 'ort/ort.wasm.min.mjs', base).href);
  ort.env.wasm.wasmPaths = new URL('ort/', base).href;
  ort.env.wasm.numThreads = threads ?? (globalThis.crossOriginIsolated ? Math.min(navigator.hardwareConcurrency || 1, 8) : 1);
  const url = (p) => new URL(p, base).href;
  const defaults = await (await fetch(url('models/onnxstyle.defaults.json'), { cache: 'no-cache' })).json();
  const weights = await fetchBytes(url('models/vgg19_gatys.weights'));
  const engine = {
    name: 'onnxruntime-web',
    backend,
    threads: ort.env.wasm.numThreads,
    ort,
    session: (bytes, { steps }) => ort.InferenceSession.create(bytes, {
      executionProviders: steps ? ['wasm'] : [backend],
      graphOptimizationLevel: 'all',
      logSeverityLevel: 3,
      ...(steps ? {} : { externalData: [{ path: 'vgg19_gatys.weights', data: weights }] }),
    }),
  };
  const steps = {};
  for (const g of STEP_GRAPHS) steps[g] = { bytes: await fetchBytes(url(`steps/lbfgs_${g}.onnx`)), path: `lbfgs_${g}.onnx` };
  return loadModels(engine, {
    loss: { bytes: await fetchBytes(url('models/vgg19_gatys.onnx')), path: 'vgg19_gatys.onnx' },
    features: { bytes: await fetchBytes(url('models/vgg19_gatys.features.onnx')), path: 'vgg19_gatys.features.onnx' },
    steps,
    defaults,
  });
}
