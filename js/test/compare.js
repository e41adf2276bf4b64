// One conformance case, run the same way by Node (onnxruntime-node) and the browser
// (onnxruntime-web): given Python's reference (reference.py), the runtime's targets, terms and
// gradient at the same inputs, and a short L-BFGS run. Returns the errors; the tests judge them.

import { Objective } from '../src/objective.js';
import { stylize } from '../src/stylize.js';

const ARRAYS = { uint8: Uint8Array, float32: Float32Array };

/** max |a - b| / max |b|: the gradient's (and a target's) error relative to its scale. */
export function relMaxError(a, b) {
  let diff = 0, scale = 0;
  for (let i = 0; i < b.length; i++) {
    diff = Math.max(diff, Math.abs(a[i] - b[i]));
    scale = Math.max(scale, Math.abs(b[i]));
  }
  return diff / scale;
}

/** `read(file)` -> ArrayBuffer of a reference file. */
export async function checkCase(models, ref, read, { iterations = 10 } = {}) {
  const arr = async (name) => {
    const a = ref.arrays[name];
    return new ARRAYS[a.dtype](await read(a.file));
  };
  const [h, w] = ref.hw, [sh, sw] = ref.style_hw;
  const content = { height: h, width: w, data: await arr('content') };
  const style = { height: sh, width: sw, data: await arr('style') };
  const asFloat = (img) => ({ ...img, data: Float32Array.from(img.data) });
  const objective = await Objective.create(models, { content: asFloat(content), styles: [asFloat(style)] });
  const targets = {};
  const T = models.engine.ort.Tensor;
  const pythonFeed = { ...objective.feed };
  for (const name of Object.keys(ref.arrays).filter((n) => /^(content|gram)_conv/.test(n))) {
    const py = await arr(name);
    targets[name] = relMaxError(objective.feed[name].data, py);
    pythonFeed[name] = new T('float32', py, ref.arrays[name].shape);
  }
  // The graph on both runtimes with the very same feed: Python's targets, Python's canvas.
  const x = await arr('x');
  objective.feed = pythonFeed;
  const t0 = performance.now();
  const { terms, grad } = await objective.evaluate(x);
  const seconds = (performance.now() - t0) / 1000;
  const termErrors = Object.fromEntries(Object.keys(ref.terms).map((k) => [k, Math.abs(terms[k] - ref.terms[k]) / Math.abs(ref.terms[k])]));
  const gradError = relMaxError(grad, await arr('grad'));
  // A short run from the images alone (targets, canvas and optimiser all this runtime's).
  const run = await stylize(models, content, [style], { size: null, iterations });
  return {
    hw: ref.hw, terms, termErrors, gradError, targets, seconds,
    lbfgs: { final: run.final.total, python: ref.lbfgs_device.final.total, iterations: run.iterations,
      evaluations: run.evaluations, pythonEvaluations: ref.lbfgs_device.evaluations,
      relative: run.final.total / ref.lbfgs_device.final.total - 1 },
  };
}

/** Seconds per loss+gradient evaluation (median of `repeats` after a warm-up) at a size x size
 * picture of the reference pair, targets computed by this runtime. */
export async function timeEvaluation(models, content, style, repeats = 5) {
  const objective = await Objective.create(models, { content, styles: [style] });
  const x = Float32Array.from(content.data);
  await objective.evaluate(x);
  const times = [];
  for (let i = 0; i < repeats; i++) {
    const t = performance.now();
    await objective.evaluate(x);
    times.push((performance.now() - t) / 1000);
  }
  times.sort((a, b) => a - b);
  return times[Math.floor(times.length / 2)];
}
