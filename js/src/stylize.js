// stylize: resize, targets, the noise canvas, L-BFGS through the step graphs; Python's
// `onnxstyle stylize --optimizer lbfgs-device --scales none` (runtime/stylize.py), one scale.

import { drive, StepVectors } from './lbfgs.js';
import { fitSize, resizeRgb8, roundHalfEven, toUint8 } from './images.js';
import { LookObjective } from './look.js';
import { Objective } from './objective.js';
import { Generator } from './random.js';

const toFloat = (img) => ({ ...img, data: Float32Array.from(img.data) });

/** runtime/stylize.py's initial_canvas for "noise", "content" and "random" (numpy's generator). */
export function initialCanvas(content, init, seed, noiseRatio) {
  const c = content.data;
  if (init === 'content') return Float32Array.from(c);
  const rng = new Generator(seed);
  if (init === 'random') return Float32Array.from(rng.uniform(0, 255, c.length));
  if (init !== 'noise') throw new Error(`unknown init ${init}: expected noise, content or random`);
  let sum = 0;
  for (const v of c) sum += v;
  const mean = Math.fround(sum / c.length); // numpy: float32 mean and std of a float32 image
  let sq = 0;
  for (const v of c) sq += (v - mean) ** 2;
  const std = Math.fround(Math.sqrt(sq / c.length));
  const noise = rng.uniform(mean - std, mean + std, c.length);
  const keep = Math.fround(1 - noiseRatio); // float32 content times a Python float stays float32
  return Float32Array.from(c, (v, i) => noise[i] * noiseRatio + Math.fround(v * keep));
}

/** The images at the run's size: content's longer side `size`, each style's style_scale x size. */
export function prepare(content, styles, size, styleScale) {
  const hw = size ? fitSize([content.height, content.width], size) : [content.height, content.width];
  const sizeStyle = size ? Math.max(16, roundHalfEven(size * styleScale)) : null;
  return {
    content: toFloat(resizeRgb8(content, hw)),
    styles: styles.map((s) => toFloat(resizeRgb8(s, fitSize([s.height, s.width],
      sizeStyle ?? roundHalfEven(Math.max(s.height, s.width) * styleScale))))),
  };
}

/** The loss as every front end reads it (runtime/stylize.py's Progress.loss): the weighted parts
 * and the total they add up to, from the terms (unweighted) and the run's options. */
export function weighted(terms, opts) {
  return { content: opts.contentWeight * terms.content, style: opts.styleWeight * terms.style,
    tv: opts.tvWeight * terms.tv, ...('look' in terms ? { look: opts.lookWeight * terms.look } : {}), total: terms.total };
}

/**
 * Stylize `content` with `styles` (images {width, height, data: RGB Uint8Array}) using `models`
 * (loadModels()). Options by the Python names in camelCase; missing ones from the defaults file.
 * onProgress({iteration, iterations, terms, loss, evaluations, elapsed, image()}) after each iteration
 * (terms unweighted; loss: weighted(terms), the weighted parts and their total)
 * (image() builds the picture so far: read it only when shown); `signal` (AbortSignal) stops the
 * run, which then returns what it has with stopped: true.
 * Returns {image: {width, height, data}, iterate (Float32Array), initial, final, iterations,
 * evaluations, seconds, stop, message, stopped, options}.
 */
export async function stylize(models, content, styles, options = {}, { onProgress, signal } = {}) {
  const d = models.defaults;
  const opts = {
    size: d.size, iterations: d.iterations, contentWeight: d.content_weight, styleWeight: d.style_weight,
    tvWeight: d.tv_weight, contentLayers: d.content_layers, styleLayers: d.style_layers, styleScale: d.style_scale,
    init: d.init, noiseRatio: d.noise_ratio, seed: d.seed, styleBlend: null, lookSize: d.look_size ?? null,
    lookWeight: d.look_weight ?? 1, ...options, // a defaults file from before look_weight: weight 1, as then
  };
  styles = Array.isArray(styles) ? styles : [styles];
  if (!(Number.isInteger(opts.iterations) && opts.iterations >= 1)) throw new Error(`iterations ${opts.iterations}: expected an integer >= 1`);
  if (opts.size != null && !(Number.isInteger(opts.size) && opts.size >= 16)) throw new Error(`size ${opts.size}: expected an integer >= 16`);
  for (const k of ['contentWeight', 'styleWeight', 'tvWeight', 'lookWeight']) { // options.py's check_number
    if (!(Number.isFinite(opts[k]) && opts[k] >= 0)) throw new Error(`${k} ${opts[k]}: expected a finite number >= 0`);
  }
  if (!(opts.styleScale >= 0.05 && opts.styleScale <= 8)) throw new Error(`styleScale ${opts.styleScale}: expected a number within 0.05..8`); // options.py's
  if (options.maxPixels && opts.size) {
    const [h, w] = fitSize([content.height, content.width], opts.size);
    if (h * w > options.maxPixels) throw new Error(`${w}x${h} px is more than this runtime can hold (${options.maxPixels.toLocaleString('en')} px): pick a smaller size`);
  }
  const t0 = performance.now();
  const { content: cz, styles: sts } = prepare(content, styles, opts.size, opts.styleScale);
  const terms = { contentWeight: opts.contentWeight, styleWeight: opts.styleWeight, contentLayers: opts.contentLayers,
    styleLayers: opts.styleLayers, styleBlend: opts.styleBlend };
  let objective = await Objective.create(models, { content: cz, styles: sts, tvWeight: opts.tvWeight, ...terms });
  if (opts.lookSize != null && Math.max(cz.height, cz.width) > opts.lookSize) { // runtime/prepare.py's look term
    const small = prepare(content, styles, opts.lookSize, opts.styleScale);
    const coarse = await Objective.create(models, { content: small.content, styles: small.styles, tvWeight: 0, ...terms });
    objective = new LookObjective(objective, coarse, opts.lookWeight);
  }
  const x0 = initialCanvas(cz, opts.init, opts.seed, opts.noiseRatio);
  const initial = (await objective.evaluate(x0)).terms;
  let evaluations = 0;
  const fun = async (x) => {
    evaluations += 1;
    const { terms, grad } = await objective.evaluate(x);
    return { value: terms.total, info: terms, grad };
  };
  const start = performance.now();
  const history = [];
  const vec = new StepVectors(fun, x0, 0, 255, models.steps, models.engine.ort);
  const res = await drive(vec, opts.iterations, {
    cold: opts.init === 'noise' || opts.init === 'random',
    shouldStop: () => signal?.aborted,
    callback: async (it) => {
      history.push(it.info);
      if (onProgress) {
        const x = it.x;
        await onProgress({
          iteration: it.nit, iterations: opts.iterations, terms: it.info, loss: weighted(it.info, opts), evaluations,
          elapsed: (performance.now() - start) / 1000,
          image: () => ({ width: cz.width, height: cz.height, data: toUint8(x) }),
        });
      }
      return !signal?.aborted;
    },
  });
  const stop = res.stopped ? 'stopped' : res.nit >= opts.iterations ? 'iterations' : 'optimizer';
  return {
    image: { width: cz.width, height: cz.height, data: toUint8(res.x) },
    iterate: res.x,
    initial,
    final: res.info,
    history,
    iterations: res.nit,
    evaluations,
    seconds: (performance.now() - t0) / 1000,
    stop,
    stopped: res.stopped,
    message: stop === 'iterations' ? `ran all ${opts.iterations} iterations` : res.message,
    options: opts,
  };
}
