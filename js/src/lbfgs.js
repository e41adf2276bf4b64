// Projected L-BFGS through the step graphs (docs/graphs.md): `drive`, `LineSearch` and `Ring` are
// onnxstyle/runtime/lbfgs.py's, line for line, on scalars only; the vector work runs in the
// same five step graphs as Python's lbfgs-device (runtime/device_lbfgs.py's DeviceVectors,
// here with the vectors in Float32Arrays). Keep the two in step: the conformance suite compares
// a JS run's loss with Python's lbfgs-device run's.

export const C1 = 1e-4; // Armijo constant: Nocedal & Wright, section 3.1
export const C2 = 0.9; // Wolfe curvature constant for quasi-Newton methods
export const MAX_LS = 20; // trial steps per line search: scipy L-BFGS-B's maxls
export const MAX_PAST = 10; // trial steps past the segment's end
export const F_NOISE = 1e-6; // relative rounding of a float32 loss summed over many terms
export const EPS_CURV = 1e-10; // skip a pair unless s'y > EPS_CURV * y'y

class Stop extends Error {}

/** The line search's step lengths (lbfgs.LineSearch). */
export class LineSearch {
  constructor(t, probe, tMax = Infinity) {
    Object.assign(this, { t, probe, tMax, tLo: 0, tHi: Infinity, fBest: Infinity, past: 0 });
  }

  /** [accept, keep] for the trial at this.t (see lbfgs.py). */
  judge(f, gs, ft, gts) {
    const t = this.t;
    const decrease = ft <= f + C1 * gs || (ft <= f + F_NOISE * Math.abs(f) && gts <= (2 * C1 - 1) * gs);
    if (!decrease) {
      this.tHi = t;
      if (this.tLo === 0) {
        const curv = ft - f - gs;
        const u = Number.isFinite(curv) && curv > 0 ? -gs / (2 * curv) : 0.5;
        this.t = t * Math.min(Math.max(u, 0.1), 0.5);
      } else {
        this.t = 0.5 * (this.tLo + this.tHi);
      }
      return [false, false];
    }
    const steep = gts < C2 * gs && !this.probe;
    if (!steep && gts <= -C2 * gs) return [true, false];
    const keep = ft < this.fBest;
    if (keep) this.fBest = ft;
    if (steep) {
      this.tLo = t;
      if (this.tHi === Infinity) {
        if (t >= this.tMax) {
          if (this.past === MAX_PAST) return [true, false];
          this.past += 1;
        }
        const ratio = gts > gs ? gs / (gs - gts) : 10.0;
        this.t = t * Math.min(Math.max(ratio, 2.0), 10.0);
        if (!this.past) this.t = Math.min(this.t, this.tMax);
      } else {
        this.t = 0.5 * (this.tLo + this.tHi);
      }
    } else {
      this.tHi = t;
      this.t = this.tLo === 0 ? t * Math.min(Math.max(gs / (gs - gts), 0.1), 0.9) : 0.5 * (this.tLo + this.tHi);
    }
    return [false, keep];
  }
}

/** The pairs' bookkeeping (lbfgs.Ring). */
export class Ring {
  constructor(m) {
    this.rho = new Float64Array(m);
    this.start = 0;
    this.count = 0;
    this.gamma = 1.0;
  }

  get slot() { return (this.start + this.count) % this.rho.length; }

  slots() { return Array.from({ length: this.count }, (_, j) => (this.start + j) % this.rho.length); }

  store(sy, yy) {
    const m = this.rho.length;
    if (sy > EPS_CURV * yy && yy > 0) {
      this.rho[this.slot] = 1.0 / sy;
      this.gamma = sy / yy;
      if (this.count < m) this.count += 1;
      else this.start = (this.start + 1) % m;
    } else if (this.count === m) {
      this.dropOldest();
    }
  }

  dropOldest() { this.start = (this.start + 1) % this.rho.length; this.count -= 1; }

  forget() { this.start = 0; this.count = 0; this.gamma = 1.0; }
}

const scalar = (ort, v, type = 'float32') =>
  new ort.Tensor(type, type === 'int64' ? BigInt64Array.from([BigInt(v)]) : Float32Array.from([v]), []);

/** device_lbfgs.DeviceVectors with Float32Array vectors: the vector work in the step graphs.
 * fun(x) -> {value, info, grad} (grad a Float32Array of x's size). */
export class StepVectors {
  constructor(fun, x0, lo, hi, steps, ort) {
    this.fun = fun;
    this.steps = steps;
    this.ort = ort;
    this.m = steps.direction.inputMetadata?.find?.((i) => i.name === 'S')?.shape?.[0] ?? 10;
    this.n = x0.length;
    this.x = Float32Array.from(x0, (v) => Math.min(hi, Math.max(lo, v)));
    this.S = new Float32Array(this.m * this.n); // empty slots hold finite numbers (0 * NaN is NaN)
    this.Y = new Float32Array(this.m * this.n);
    this.lo = scalar(ort, lo);
    this.hi = scalar(ort, hi);
    this.info = this.infoT = this.infoB = null;
    this.slot = 0;
  }

  vec(v, dims = [v.length]) { return new this.ort.Tensor('float32', v, dims); }

  async run(graph, feeds) {
    return this.steps[graph].run(feeds);
  }

  async evalAt(x) {
    const { value, info, grad } = await this.fun(x);
    return [Number.isFinite(value) ? value : Infinity, info, grad];
  }

  async start() {
    let f;
    [f, this.info, this.g] = await this.evalAt(this.x);
    return f;
  }

  async direction(ring) {
    const rho = new Float32Array(this.m);
    for (const i of ring.slots()) rho[i] = ring.rho[i];
    const newest = (((ring.start + ring.count - 1) % this.m) + this.m) % this.m;
    this.slot = ring.slot;
    const out = await this.run('direction', {
      x: this.vec(this.x), g: this.vec(this.g), S: this.vec(this.S, [this.m, this.n]), Y: this.vec(this.Y, [this.m, this.n]),
      rho: this.vec(rho), gamma: scalar(this.ort, ring.gamma), newest: scalar(this.ort, newest, 'int64'), lo: this.lo, hi: this.hi,
    });
    this.d = out.d.data;
    const gd = out.gd.data[0];
    if (!Number.isFinite(gd)) throw new Error('the loss or its gradient is not finite at the starting point');
    return [gd, out.dnorm.data[0], out.pgmax.data[0]];
  }

  async segment(p) {
    const out = await this.run('segment', { x: this.vec(this.x), d: this.vec(this.d), g: this.vec(this.g), p: scalar(this.ort, p), lo: this.lo, hi: this.hi });
    this.d = out.ds.data;
    return [out.gd.data[0], out.tmax.data[0]];
  }

  async trial(t) {
    const out = await this.run('trial', { x: this.vec(this.x), d: this.vec(this.d), g: this.vec(this.g), t: scalar(this.ort, t), lo: this.lo, hi: this.hi });
    this.xt = out.xt.data;
    return out.gs.data[0];
  }

  async evaluate() {
    let ft;
    [ft, this.infoT, this.gt] = await this.evalAt(this.xt);
    if (ft === Infinity) return [ft, Infinity];
    const out = await this.run('slope', { x: this.vec(this.x), xt: this.vec(this.xt), gt: this.vec(this.gt) });
    const gts = out.gts.data[0];
    return Number.isFinite(gts) ? [ft, gts] : [Infinity, Infinity];
  }

  keep() { [this.xb, this.gb, this.infoB] = [this.xt, this.gt, this.infoT]; }

  settle() { [this.xt, this.gt, this.infoT] = [this.xb, this.gb, this.infoB]; }

  async pair() {
    const out = await this.run('pair', { x: this.vec(this.x), xt: this.vec(this.xt), g: this.vec(this.g), gt: this.vec(this.gt) });
    this.S.set(out.s.data, this.slot * this.n);
    this.Y.set(out.y.data, this.slot * this.n);
    return [out.sy.data[0], out.yy.data[0]];
  }

  accept() { [this.x, this.g, this.info] = [this.xt, this.gt, this.infoT]; }
}

/** lbfgs.drive on `vec`: at most `maxiter` iterations; `callback({x, fun, nit, nfev, info})`
 * after each (return false to stop); `shouldStop()` before each evaluation (cancellation). */
export async function drive(vec, maxiter, { callback, maxfun, maxLs = MAX_LS, gtol = 0, cold = false, shouldStop } = {}) {
  maxfun ??= 4 * maxiter + 20;
  const ring = new Ring(vec.m);
  let f = Infinity, nit = 0, nfev = 0;
  const spend = () => {
    if (shouldStop?.()) throw new Stop('stopped');
    if (nfev >= maxfun) throw new Stop('maximum number of function evaluations reached');
    nfev += 1;
  };
  spend();
  f = await vec.start();
  if (!Number.isFinite(f)) throw new Error('the loss or its gradient is not finite at the starting point');
  let message = 'maximum number of iterations reached', success = true, stopped = false;
  try {
    while (nit < maxiter) {
      let [gd, dnorm, pgmax] = await vec.direction(ring);
      if (pgmax <= gtol) { message = 'projected gradient below gtol'; break; }
      if (ring.count && gd >= 0) {
        ring.forget();
        [gd, dnorm, pgmax] = await vec.direction(ring);
      }
      const full = cold && nit === 0;
      let tMax;
      [gd, tMax] = await vec.segment(ring.count || full ? 1.0 : Math.min(1.0, 1.0 / Math.max(dnorm, 1e-30)));
      const ls = new LineSearch(1.0, nit === 0, full ? 1.0 : tMax);
      let accepted = false, ft = Infinity;
      for (let i = 0; i < maxLs; i++) {
        const gs = await vec.trial(ls.t);
        if (gs >= 0) break;
        spend();
        let gts;
        [ft, gts] = await vec.evaluate();
        let keep;
        [accepted, keep] = ls.judge(f, gs, ft, gts);
        if (accepted) break;
        if (keep) vec.keep();
      }
      if (!accepted) {
        if (ls.fBest === Infinity) {
          if (ring.count) { ring.forget(); continue; }
          message = 'line search cannot decrease the loss';
          success = false;
          break;
        }
        vec.settle();
        ft = ls.fBest;
      }
      ring.store(...(await vec.pair()));
      vec.accept();
      f = ft;
      nit += 1;
      if (callback && (await callback({ x: vec.x, fun: f, nit, nfev, info: vec.info })) === false) {
        message = 'stopped by the callback';
        stopped = true;
        break;
      }
    }
  } catch (e) {
    if (!(e instanceof Stop)) throw e;
    message = e.message;
    stopped = message === 'stopped';
  }
  return { x: vec.x, fun: f, nit, nfev, success, message, info: vec.info, stopped };
}
