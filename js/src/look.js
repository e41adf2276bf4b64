// runtime/look.py's look term: above look_size, the picture shrunk to look_size by an exact box
// filter (a linear map; its transpose is the backward) also scored as a picture of that size.

/** Rows of the [nOut, nIn] box filter: output i averages [i, i + 1) * nIn / nOut, each input
 * weighted by its overlap; {start, weights} per output (the nonzero run). */
export function boxRows(nOut, nIn) {
  const step = nIn / nOut;
  const rows = [];
  for (let i = 0; i < nOut; i++) {
    const lo = i * step, hi = lo + step;
    const start = Math.floor(lo), end = Math.min(nIn, Math.ceil(hi));
    const weights = new Float64Array(end - start);
    for (let j = start; j < end; j++) weights[j - start] = Math.max(0, Math.min(hi, j + 1) - Math.max(lo, j)) / step;
    rows.push({ start, weights });
  }
  return rows;
}

/** x [H, W, C] -> [h, W, C] (axis 0, `rows` of H) or its transpose (`back`: [h, W, C] -> [H, W, C]). */
function alongRows(x, rows, n, inner, back) {
  const out = new Float32Array((back ? n : rows.length) * inner);
  rows.forEach(({ start, weights }, i) => {
    for (let k = 0; k < weights.length; k++) {
      const wgt = weights[k], a = (start + k) * inner, b = i * inner;
      if (back) for (let t = 0; t < inner; t++) out[a + t] += wgt * x[b + t];
      else for (let t = 0; t < inner; t++) out[b + t] += wgt * x[a + t];
    }
  });
  return out;
}

/** x [H, W, C] -> [H, w, C] along axis 1 (`back`: the transpose). */
function alongCols(x, cols, h, n, c, back) {
  const wOut = back ? n : cols.length, wIn = back ? cols.length : n;
  const out = new Float32Array(h * wOut * c);
  for (let r = 0; r < h; r++) {
    cols.forEach(({ start, weights }, j) => {
      for (let k = 0; k < weights.length; k++) {
        const wgt = weights[k];
        const a = (r * wIn + (back ? j : start + k)) * c, b = (r * wOut + (back ? start + k : j)) * c;
        for (let t = 0; t < c; t++) out[b + t] += wgt * x[a + t];
      }
    });
  }
  return out;
}

export class LookObjective {
  /** `base` (the picture at its size) plus `coarse` (the same objective at the look size, TV
   * weight 0) on the picture shrunk to the look size: the look term is coarse's weighted total,
   * added times `weight`. */
  constructor(base, coarse, weight = 1) {
    this.base = base;
    this.coarse = coarse;
    this.weight = weight;
    this.shape = base.shape;
    const [h, w] = base.shape, [hh, ww] = coarse.shape;
    this.rows = boxRows(hh, h);
    this.cols = boxRows(ww, w);
  }

  /** x (H*W*3) at the look size. */
  seen(x) {
    const [h, w] = this.base.shape;
    return alongCols(alongRows(x, this.rows, h, w * 3, false), this.cols, this.rows.length, w, 3, false);
  }

  async evaluate(x) {
    const [h, w] = this.base.shape;
    const { terms, grad } = await this.base.evaluate(x);
    const c = await this.coarse.evaluate(this.seen(x));
    const back = alongRows(alongCols(c.grad, this.cols, this.rows.length, w, 3, true), this.rows, h, w * 3, true);
    const g = Float32Array.from(grad, (v, i) => v + this.weight * back[i]);
    return { terms: { ...terms, look: c.terms.total, total: terms.total + this.weight * c.terms.total }, grad: g };
  }
}
