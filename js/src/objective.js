// The style-transfer objective of runtime/objective.py (one whole picture: no tiles, no masks):
// targets from the features graph, then loss, terms and gradient from the loss graph.

const F32 = Math.fround;
// The style losses other than gram (layout.STYLE_LOSSES): their gates are fed false here.
const OTHER_LOSSES = ['covariance', 'scaled', 'w2', 'histogram', 'sliced'];

/** The layers of a {layer: weight} map, checked against the graph's layers. */
function layerWeights(kind, map, layers) {
  for (const [name, w] of Object.entries(map)) {
    if (!(name in layers)) throw new Error(`unknown ${kind} layer ${name}: expected one of ${Object.keys(layers).join(', ')}`);
    if (!Number.isFinite(w)) throw new Error(`${kind} layer ${name}: weight ${w}`);
  }
  return map;
}

/** sum over positions of F F^T / M for F [N, M] (float64 sums), as float32 [N, N]. */
export function gram(f, n, m) {
  const out = new Float32Array(n * n);
  for (let i = 0; i < n; i++) {
    const a = f.subarray(i * m, (i + 1) * m);
    for (let j = i; j < n; j++) {
      const b = f.subarray(j * m, (j + 1) * m);
      let s = 0;
      for (let k = 0; k < m; k++) s += a[k] * b[k];
      out[i * n + j] = out[j * n + i] = s / m;
    }
  }
  return out;
}

export class Objective {
  /** `models`: loadModels()'s; content [H*W*3] and styles (each {data, height, width}) float32
   * RGB 0..255; weights and layers as onnxstyle's options (defaults from the defaults file). */
  static async create(models, { content, styles, contentWeight, styleWeight, tvWeight, contentLayers,
    styleLayers, styleBlend, styleLoss, styleLayerWeightExp } = {}) {
    const d = models.defaults;
    const o = new Objective();
    o.models = models;
    o.ort = models.engine.ort;
    o.layers = models.layers;
    o.shape = [content.height, content.width, 3];
    o.weights = Float32Array.from([contentWeight ?? d.content_weight, styleWeight ?? d.style_weight, tvWeight ?? d.tv_weight]);
    if (![...o.weights].every(Number.isFinite)) throw new Error('content, style and tv weights must be finite');
    o.contentLayers = layerWeights('content', contentLayers ?? d.content_layers, o.layers);
    const loss = styleLoss ?? d.style_loss ?? 'gram';
    if (loss !== 'gram') throw new Error(`style loss ${loss}: the JS runtime computes the gram loss only`);
    // options.py's style_layer_weights (the i-th style layer, shallow to deep, times exp ** i, back
    // to the same sum), then objective.py's defaults.STYLE_LOSS_SCALE of the loss.
    const exp = styleLayerWeightExp ?? d.style_layer_weight_exp ?? 1;
    const scale = d.style_loss_scale?.[loss] ?? 1;
    const chosen = layerWeights('style', styleLayers ?? d.style_layers, o.layers);
    const order = Object.keys(o.layers).filter((n) => n in chosen);
    const raised = order.map((n, i) => chosen[n] * exp ** i);
    const sum = Object.values(chosen).reduce((a, b) => a + b, 0), now = raised.reduce((a, b) => a + b, 0);
    o.styleLayers = Object.fromEntries(order.map((n, i) => [n, (now > 0 ? (raised[i] * sum) / now : raised[i]) * scale]));
    if (!styles.length) throw new Error('at least one style image is needed');
    const blend = styleBlend ?? styles.map(() => 1 / styles.length);
    const total = blend.reduce((a, b) => a + b, 0);
    if (blend.length !== styles.length || !(total > 0) || blend.some((b) => !(b >= 0))) {
      throw new Error(`style blend ${blend}: one weight >= 0 per style, not all zero`);
    }
    for (const img of [content, ...styles]) {
      if (Math.min(img.height, img.width) < 16) throw new Error(`image of ${img.width}x${img.height} px: each side must be >= 16`);
    }
    const feed = o.baseFeed();
    const cfeat = await o.features(content, Object.keys(o.contentLayers));
    for (const [name, f] of Object.entries(cfeat)) feed[`content_${name}`] = f;
    const grams = {};
    for (const [k, img] of styles.entries()) {
      const feats = await o.features(img, Object.keys(o.styleLayers));
      for (const [name, f] of Object.entries(feats)) {
        const [, n, h, w] = f.dims;
        const g = gram(f.data, n, h * w);
        const acc = (grams[name] ??= new Float64Array(n * n));
        for (let i = 0; i < g.length; i++) acc[i] += (blend[k] / total) * g[i];
      }
    }
    for (const [name, g] of Object.entries(grams)) {
      const n = o.layers[name];
      feed[`gram_${name}`] = new o.ort.Tensor('float32', Float32Array.from(g), [1, n, n]);
    }
    const names = Object.keys(o.layers);
    const lw = (map) => Float32Array.from(names.map((n) => map[n] ?? 0));
    const cl = lw(o.contentLayers), sl = lw(o.styleLayers);
    feed.weights = new o.ort.Tensor('float32', o.weights, [3]);
    feed.content_layer_weights = new o.ort.Tensor('float32', cl, [names.length]);
    feed.style_layer_weights = new o.ort.Tensor('float32', sl, [names.length]);
    names.forEach((n, i) => { // the gates: the float32 coefficient is not 0 (docs/graphs.md)
      feed[`use_content_${n}`] = o.flag(F32(o.weights[0] * cl[i]) !== 0);
      feed[`use_style_${n}`] = o.flag(F32(o.weights[1] * sl[i]) !== 0);
    });
    o.feed = feed;
    return o;
  }

  flag(value) {
    return new this.ort.Tensor('bool', [value], []);
  }

  baseFeed() {
    const T = this.ort.Tensor, names = Object.keys(this.layers);
    const feed = {
      style_masked: this.flag(false),
      style_masks: new T('float32', new Float32Array([1]), [1, 1, 1]),
      style_blend: new T('float32', new Float32Array([1]), [1]),
      tiled: this.flag(false),
      layer_m: new T('float32', new Float32Array(names.length).fill(1), [names.length]),
    };
    for (const [name, n] of Object.entries(this.layers)) {
      feed[`content_${name}`] = new T('float32', new Float32Array(n), [1, n, 1, 1]);
      feed[`gram_${name}`] = new T('float32', new Float32Array(n * n), [1, n, n]);
      feed[`mean_${name}`] = new T('float32', new Float32Array(n), [1, n, 1]);
      feed[`sorted_${name}`] = new T('float32', new Float32Array(1), [1, 1, 1, 1]);
      feed[`proj_${name}`] = new T('float32', new Float32Array(n), [n, 1]);
      for (const kind of OTHER_LOSSES) feed[`use_${kind}_${name}`] = this.flag(false);
    }
    return feed;
  }

  /** {layer: Tensor [1, N, h, w]} of an image {data: Float32Array, height, width}. */
  async features(img, layers) {
    if (!layers.length) return {};
    const image = new this.ort.Tensor('float32', img.data, [img.height, img.width, 3]);
    const out = await this.models.features.run({ image }, layers.map((n) => `feat_${n}`));
    return Object.fromEntries(layers.map((n) => [n, out[`feat_${n}`]]));
  }

  /** {terms: {content, style, tv (unweighted), total}, grad: Float32Array} at x (H*W*3, float32). */
  async evaluate(x) {
    if (x.length !== this.shape[0] * this.shape[1] * 3) throw new Error(`image of ${x.length} values, the objective is ${this.shape.join('x')}`);
    const image = new this.ort.Tensor('float32', x, this.shape);
    const out = await this.models.loss.run({ ...this.feed, image });
    const terms = { content: out.content.data[0], style: out.style.data[0], tv: out.tv.data[0], total: out.loss.data[0] };
    const grad = out.grad.data;
    if (!Object.values(terms).every(Number.isFinite)) throw new Error('the loss is NaN or Inf');
    return { terms, grad };
  }
}
