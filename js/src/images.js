// Image geometry as onnxstyle's Python side does it (runtime/images.py): the output size, and
// Pillow's LANCZOS resize of 8-bit RGB (libImaging/Resample.c), integer for integer.

/** Python's round(): halves to even. */
export function roundHalfEven(v) {
  const r = Math.round(v);
  return Math.abs(v % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/** [height, width] with the longer side `size`, aspect kept, each side >= 16 (images.fit_size). */
export function fitSize([h, w], size) {
  const scale = size / Math.max(h, w);
  return [Math.max(16, roundHalfEven(h * scale)), Math.max(16, roundHalfEven(w * scale))];
}

const PRECISION_BITS = 32 - 8 - 2;

function sinc(x) {
  if (x === 0) return 1;
  x *= Math.PI;
  return Math.sin(x) / x;
}

const lanczos = (x) => (x >= -3 && x < 3 ? sinc(x) * sinc(x / 3) : 0);

// Resample.c precompute_coeffs + normalize_coeffs_8bpc: per output pixel, the first input pixel,
// the count, and integer weights (ksize of them).
function coefficients(inSize, outSize) {
  const scale = inSize / outSize;
  const filterscale = Math.max(scale, 1);
  const support = 3 * filterscale;
  const ksize = Math.ceil(support) * 2 + 1;
  const kk = new Int32Array(outSize * ksize);
  const bounds = new Int32Array(outSize * 2);
  const w = new Float64Array(ksize);
  for (let xx = 0; xx < outSize; xx++) {
    const center = (xx + 0.5) * scale;
    const ss = 1 / filterscale;
    const xmin = Math.max(Math.trunc(center - support + 0.5), 0);
    const xmax = Math.min(Math.trunc(center + support + 0.5), inSize) - xmin;
    let ww = 0;
    for (let x = 0; x < xmax; x++) {
      w[x] = lanczos((x + xmin - center + 0.5) * ss);
      ww += w[x];
    }
    for (let x = 0; x < xmax; x++) {
      const k = ww !== 0 ? w[x] / ww : w[x];
      kk[xx * ksize + x] = Math.trunc(k < 0 ? -0.5 + k * (1 << PRECISION_BITS) : 0.5 + k * (1 << PRECISION_BITS));
    }
    bounds[2 * xx] = xmin;
    bounds[2 * xx + 1] = xmax;
  }
  return { ksize, kk, bounds };
}

const clip8 = (v) => (v <= 0 ? 0 : v >= (256 << PRECISION_BITS) ? 255 : v >> PRECISION_BITS);

/** Pillow's Image.resize((w, h), LANCZOS) of an 8-bit RGB image {data: Uint8Array h*w*3, width, height}. */
export function resizeRgb8(img, [outH, outW]) {
  const { width: inW, height: inH, data } = img;
  if (inW === outW && inH === outH) return { width: inW, height: inH, data: Uint8Array.from(data) };
  const horiz = coefficients(inW, outW);
  const vert = coefficients(inH, outH);
  const half = 1 << (PRECISION_BITS - 1);
  let src = data, rows = inH, first = 0;
  if (inW !== outW) {
    // Only the rows the vertical pass reads.
    first = vert.bounds[0];
    const last = vert.bounds[outH * 2 - 2] + vert.bounds[outH * 2 - 1];
    rows = last - first;
    const tmp = new Uint8Array(rows * outW * 3);
    for (let y = 0; y < rows; y++) {
      const row = (y + first) * inW * 3;
      for (let xx = 0; xx < outW; xx++) {
        const xmin = horiz.bounds[2 * xx], xmax = horiz.bounds[2 * xx + 1], k = xx * horiz.ksize;
        let s0 = half, s1 = half, s2 = half;
        for (let x = 0; x < xmax; x++) {
          const p = row + (x + xmin) * 3, c = horiz.kk[k + x];
          s0 += src[p] * c; s1 += src[p + 1] * c; s2 += src[p + 2] * c;
        }
        const o = (y * outW + xx) * 3;
        tmp[o] = clip8(s0); tmp[o + 1] = clip8(s1); tmp[o + 2] = clip8(s2);
      }
    }
    src = tmp;
  } else {
    first = 0;
  }
  if (inH === outH && first === 0) return { width: outW, height: outH, data: src };
  const out = new Uint8Array(outH * outW * 3);
  for (let yy = 0; yy < outH; yy++) {
    const ymin = vert.bounds[2 * yy] - first, ymax = vert.bounds[2 * yy + 1], k = yy * vert.ksize;
    for (let xx = 0; xx < outW; xx++) {
      let s0 = half, s1 = half, s2 = half;
      for (let y = 0; y < ymax; y++) {
        const p = ((y + ymin) * outW + xx) * 3, c = vert.kk[k + y];
        s0 += src[p] * c; s1 += src[p + 1] * c; s2 += src[p + 2] * c;
      }
      const o = (yy * outW + xx) * 3;
      out[o] = clip8(s0); out[o + 1] = clip8(s1); out[o + 2] = clip8(s2);
    }
  }
  return { width: outW, height: outH, data: out };
}

/** float32 0..255 image (Float32Array h*w*3) -> uint8, as images.to_uint8: clip(x + 0.5) truncated. */
export function toUint8(x) {
  const out = new Uint8Array(x.length);
  for (let i = 0; i < x.length; i++) out[i] = Math.min(255, Math.max(0, x[i] + 0.5));
  return out;
}
