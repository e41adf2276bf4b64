"""L-BFGS with box constraints by projection, in NumPy float32 (no scipy).

One iteration:
  1. the held set: variables at a bound whose gradient pushes them out of the box (x = lo with
     g > 0, or x = hi with g < 0); the others are free;
  2. the direction d = -P H P g, where H is the L-BFGS inverse-Hessian approximation (two-loop
     recursion over the last m pairs, H0 = gamma I with gamma = s'y / y'y) and P zeroes the held
     variables. H is positive definite, so g'd = -(Pg)' H (Pg) < 0: a descent direction;
  3. a line search along the projected path x(t) = clip(x + t d, lo, hi) (Bertsekas 1982),
     with s = x(t) - x: sufficient decrease f(x(t)) <= f + c1 g's and the strong Wolfe
     condition |g(x(t))'s| <= c2 |g's|, which makes every stored pair's s'y > 0. The trial
     step is 1; the first iteration, which has no curvature yet, takes a probe step of
     1/||d|| like scipy's L-BFGS-B and accepts any sufficient decrease. It backtracks by
     safeguarded quadratic interpolation, extrapolates or interpolates by a secant on the
     slope, and bisects once bracketed;
  4. s = x(t) - x and y = g(x(t)) - g go into ring buffers of m rows.

Same calling convention as scipy.optimize.minimize(jac=True): fun(x) -> (loss, grad). The hot
loop allocates no vector of size n: every buffer is made once and updated in place.

The whole state (x, f, g, the ring of pairs, gamma, the counters) can be exported after any
iteration (Iterate.state(), which copies) and handed back (`state=`): N iterations, then M
more from the state, make the same iterates, bit for bit, as N + M in one call.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from onnxstyle import defaults

Fun = Callable[[np.ndarray], tuple[float, np.ndarray]]

C1 = 1e-4  # Armijo constant: Nocedal & Wright, Numerical Optimization (2006), section 3.1
C2 = 0.9  # Wolfe curvature constant for quasi-Newton methods: Nocedal & Wright, section 3.1
MAX_LS = 20  # trial steps per line search: scipy L-BFGS-B's maxls default
F_NOISE = 1e-6  # relative rounding of a float32 loss summed over many terms (~16 ulps)
EPS_CURV = 1e-10  # skip a pair unless s'y > EPS_CURV * y'y (float32 rounding, cf. scipy's eps)


@dataclass
class LbfgsState:
    """Everything the next iteration depends on: the iterate x (float32, flat), its loss f and
    gradient g, the ring of the last pairs (rows start, start+1, ... mod m of S and Y, `count`
    of them, rho = 1 / s'y; other rows are unused), gamma = s'y / y'y of the newest pair, and the
    iterations and evaluations so far (nit = 0 makes the next step a probe)."""

    x: np.ndarray  # (n,) float32
    f: float
    g: np.ndarray  # (n,) float32
    S: np.ndarray  # (m, n) float32
    Y: np.ndarray  # (m, n) float32
    rho: np.ndarray  # (m,) float64
    gamma: float
    start: int
    count: int
    nit: int
    nfev: int

    def check(self, n: int, m: int) -> None:
        """ValueError unless this is a consistent state for n variables and m pairs."""
        shapes = {"x": (self.x.shape, (n,)), "g": (self.g.shape, (n,)),
                  "S": (self.S.shape, (m, n)), "Y": (self.Y.shape, (m, n)),
                  "rho": (self.rho.shape, (m,))}  # fmt: skip
        for name, (got, want) in shapes.items():
            if got != want:
                raise ValueError(f"L-BFGS state: {name} has shape {got}, this run needs {want}")
        if not (0 <= self.start < m and 0 <= self.count <= m and self.nit >= 0 and self.nfev >= 0):
            raise ValueError(f"L-BFGS state: ring start {self.start}, count {self.count}, "
                             f"nit {self.nit}, nfev {self.nfev} out of range for m = {m}")  # fmt: skip
        if not (math.isfinite(self.f) and math.isfinite(self.gamma) and self.gamma > 0):
            raise ValueError(f"L-BFGS state: f = {self.f}, gamma = {self.gamma}")


@dataclass(frozen=True)
class Iterate:
    """What the callback gets after each iteration (x is the optimiser's buffer: copy it).
    state() returns a copy of the optimiser's whole state; call it during the callback."""

    x: np.ndarray
    fun: float
    nit: int
    nfev: int
    state: Callable[[], LbfgsState] | None = None


@dataclass
class LbfgsResult:
    x: np.ndarray  # float32, flat
    fun: float
    nit: int
    nfev: int
    success: bool
    message: str
    state: LbfgsState | None = None  # the state at x, to continue from (the run's own buffers)


class _Stop(Exception):
    pass


class LineSearch:
    """The line search's step lengths, on scalars only (shared with device_lbfgs.py): trial
    steps start at `t`; `judge` takes each trial's outcome and accepts it or sets the next t.
    `probe`: the first iteration, without curvature yet, accepts any sufficient decrease."""

    def __init__(self, t: float, probe: bool) -> None:
        self.t, self.probe = t, probe
        self.t_lo, self.t_hi = 0.0, math.inf  # the bracket
        self.f_best = math.inf  # the best sufficient decrease that failed the curvature test

    def judge(self, f: float, gs: float, ft: float, gts: float) -> tuple[bool, bool]:
        """(accept, keep) for the trial at self.t: f, gs = g's before, ft, gts = g(t)'s after
        (inf when not finite). Unless accepted, self.t is the next trial; `keep`: this trial is
        the new best decrease, which the caller keeps as the fallback (f_best is updated)."""
        t = self.t
        # Sufficient decrease; where f's change drowns in its float32 rounding, the approximate
        # Wolfe test of Hager & Zhang (2005) judges the decrease by the slopes instead (the
        # trapezoid rule: f(t) - f ~ (gs + gts) / 2 <= C1 gs).
        decrease = ft <= f + C1 * gs or (ft <= f + F_NOISE * abs(f) and gts <= (2 * C1 - 1) * gs)
        if not decrease:  # too long: backtrack
            self.t_hi = t
            if self.t_lo == 0.0:
                curv = ft - f - gs  # quadratic model along t: f + gs u + curv u^2
                u = -gs / (2 * curv) if math.isfinite(curv) and curv > 0 else 0.5
                self.t = t * min(max(u, 0.1), 0.5)
            else:
                self.t = 0.5 * (self.t_lo + self.t_hi)
            return False, False
        steep = gts < C2 * gs and not self.probe  # the first step only probes the curvature
        if not steep and gts <= -C2 * gs:  # strong Wolfe: |slope| shrank enough
            return True, False
        keep = ft < self.f_best
        if keep:
            self.f_best = ft
        if steep:  # still steeply downhill: go further
            self.t_lo = t
            if self.t_hi == math.inf:
                ratio = gs / (gs - gts) if gts > gs else 10.0  # secant on the slope
                self.t = t * min(max(ratio, 2.0), 10.0)
            else:
                self.t = 0.5 * (self.t_lo + self.t_hi)
        else:  # overshot: the slope turned steeply uphill; its secant root is before t
            self.t_hi = t
            if self.t_lo == 0.0:
                self.t = t * min(max(gs / (gs - gts), 0.1), 0.9)
            else:
                self.t = 0.5 * (self.t_lo + self.t_hi)
        return False, keep



def store_pair(rho: np.ndarray, slot: int, sy: float, yy: float, start: int, count: int,
               gamma: float) -> tuple[int, int, float]:  # fmt: skip
    """Book the pair just written into ring slot `slot`: kept only with positive curvature
    (s'y > 0), else dropped. Returns the ring's new (start, count) and the H0 scale gamma."""
    m = len(rho)
    if sy > EPS_CURV * yy and yy > 0:
        rho[slot] = 1.0 / sy
        return (start if count < m else (start + 1) % m), min(count + 1, m), sy / yy
    if count == m:  # the slot held the oldest pair, now overwritten: drop it
        return (start + 1) % m, count - 1, gamma
    return start, count, gamma

def minimize(
    fun: Fun,
    x0: np.ndarray,
    maxiter: int,
    bounds: tuple[float, float] = (0.0, 255.0),
    m: int = defaults.LBFGS_MEMORY,
    callback: Callable[[Iterate], None] | None = None,
    maxfun: int | None = None,
    max_ls: int = MAX_LS,
    gtol: float = 0.0,
    state: LbfgsState | None = None,
) -> LbfgsResult:
    """Minimise fun over the box `bounds` from x0 for at most `maxiter` iterations.

    Stops early when the projected gradient's largest entry is <= gtol, after `maxfun`
    evaluations, when no step decreases the loss, or when the callback raises StopIteration
    (as scipy does). x0 is projected onto the box first.
    `state` (e.g. Iterate.state() or a result's state): continue from it instead of x0 (which
    must have the same size), without evaluating fun again; maxiter and maxfun then count this
    call's iterations and evaluations, while nit and nfev go on from the state's.
    """
    lo, hi = float(bounds[0]), float(bounds[1])
    if not lo < hi:
        raise ValueError(f"bounds ({lo}, {hi}): the lower bound must be below the upper")
    if maxiter < 1 or m < 1:
        raise ValueError("maxiter and m must be >= 1")
    maxfun = maxfun if maxfun is not None else 4 * maxiter + 20
    n = int(np.size(x0))
    f32 = np.float32
    if state is not None:
        state.check(n, m)

    # All n-sized buffers, allocated once.
    x = np.empty(n, f32)
    np.clip(np.asarray(x0 if state is None else state.x).reshape(-1), lo, hi, out=x)
    g = np.empty(n, f32)
    xt = np.empty(n, f32)  # trial point
    gt = np.empty(n, f32)  # its gradient
    d = np.empty(n, f32)  # search direction, also the two-loop's work vector
    tmp = np.empty(n, f32)
    xb = np.empty(n, f32)  # best Armijo point that failed the curvature test
    gb = np.empty(n, f32)
    free = np.empty(n, f32)  # 1 where free, 0 where held (a multiply beats a masked copy)
    held = np.empty(n, bool)
    b1 = np.empty(n, bool)
    b2 = np.empty(n, bool)
    S = np.zeros((m, n), f32)
    Y = np.zeros((m, n), f32)
    rho = np.zeros(m, np.float64)
    alpha = np.zeros(m, np.float64)
    start, count = 0, 0  # the ring: pairs start, start+1, ... (mod m), `count` of them
    gamma = 1.0
    nfev = nfev0 = 0

    def evaluate(point: np.ndarray, grad_out: np.ndarray) -> float:
        nonlocal nfev
        if nfev - nfev0 >= maxfun:
            raise _Stop("maximum number of function evaluations reached")
        nfev += 1
        value, grad = fun(point)
        np.copyto(grad_out, np.asarray(grad).reshape(-1), casting="same_kind")
        value = float(value)
        return value if math.isfinite(value) and np.isfinite(grad_out).all() else math.inf

    def axpy(a: float, v: np.ndarray, out: np.ndarray) -> None:  # out += a v, in place
        np.multiply(v, f32(a), out=tmp)
        np.add(out, tmp, out=out)

    def snapshot() -> LbfgsState:  # copies: the buffers change in the next iteration
        return LbfgsState(x.copy(), f, g.copy(), S.copy(), Y.copy(), rho.copy(), gamma, start,
                          count, nit, nfev)  # fmt: skip

    if state is None:
        f = evaluate(x, g)
        if not math.isfinite(f):
            raise ValueError("the loss or its gradient is not finite at the starting point")
        nit = 0
    else:
        f, nit, nfev = float(state.f), int(state.nit), int(state.nfev)
        np.copyto(g, state.g, casting="same_kind")
        np.copyto(S, state.S, casting="same_kind")
        np.copyto(Y, state.Y, casting="same_kind")
        np.copyto(rho, state.rho)
        gamma, start, count = float(state.gamma), int(state.start), int(state.count)
        nfev0 = nfev
    stop_at = nit + maxiter
    message, success = "maximum number of iterations reached", True
    try:
        while nit < stop_at:
            # 1. held variables; d <- P g (the projected gradient).
            np.less_equal(x, lo, out=b1)
            np.greater(g, 0, out=b2)
            np.logical_and(b1, b2, out=held)
            np.greater_equal(x, hi, out=b1)
            np.less(g, 0, out=b2)
            np.logical_and(b1, b2, out=b1)
            np.logical_or(held, b1, out=held)
            np.logical_not(held, out=b1)
            np.copyto(free, b1)
            np.multiply(g, free, out=d)
            if max(float(d.max()), -float(d.min())) <= gtol:
                message = "projected gradient below gtol"
                break

            # 2. two-loop recursion on d = P g, then d <- -P H P g.
            for j in range(count - 1, -1, -1):
                i = (start + j) % m
                alpha[i] = rho[i] * float(np.dot(S[i], d))
                axpy(-alpha[i], Y[i], d)
            d *= f32(gamma)
            for j in range(count):
                i = (start + j) % m
                beta = rho[i] * float(np.dot(Y[i], d))
                axpy(alpha[i] - beta, S[i], d)
            np.multiply(d, free, out=d)
            np.negative(d, out=d)
            if count and float(np.dot(g, d)) >= 0:  # lost descent to rounding: restart
                start, count, gamma = 0, 0, 1.0
                np.multiply(g, free, out=d)
                np.negative(d, out=d)

            # 3. line search along the projected path; the step s goes straight into the ring.
            slot = (start + count) % m
            s, y = S[slot], Y[slot]
            ls = LineSearch(1.0 if count else min(1.0, 1.0 / max(float(np.linalg.norm(d)), 1e-30)),
                            probe=nit == 0)  # fmt: skip
            accepted = False
            for _ in range(max_ls):
                np.multiply(d, f32(ls.t), out=xt)
                np.add(xt, x, out=xt)
                np.clip(xt, lo, hi, out=xt)
                np.subtract(xt, x, out=s)
                gs = float(np.dot(g, s))  # the first-order change along the projected step
                if gs >= 0:  # the step rounds to nothing
                    break
                ft = evaluate(xt, gt)
                gts = float(np.dot(gt, s)) if ft < math.inf else math.inf
                accepted, keep = ls.judge(f, gs, ft, gts)
                if accepted:
                    break
                if keep:  # a decrease, kept in case nothing better turns up
                    np.copyto(xb, xt)
                    np.copyto(gb, gt)
            if not accepted:
                if ls.f_best == math.inf:
                    if count:  # the memory misled us: forget it and try steepest descent
                        start, count, gamma = 0, 0, 1.0
                        continue
                    message, success = "line search cannot decrease the loss", False
                    break
                np.copyto(xt, xb)  # settle for the best sufficient decrease seen
                np.copyto(gt, gb)
                np.subtract(xt, x, out=s)
                ft = ls.f_best

            # 4. the pair (s, y); keep it only with positive curvature.
            np.subtract(gt, g, out=y)
            sy, yy = float(np.dot(s, y)), float(np.dot(y, y))
            start, count, gamma = store_pair(rho, slot, sy, yy, start, count, gamma)
            x, xt = xt, x
            g, gt = gt, g
            f = ft
            nit += 1
            if callback is not None:
                try:
                    callback(Iterate(x, f, nit, nfev, snapshot))
                except StopIteration:
                    message = "stopped by the callback"
                    break
    except _Stop as e:
        message = str(e)
        if count == m:  # the line search wrote its trial steps over the oldest pair's s
            start, count = (start + 1) % m, count - 1
    # The final state takes over the buffers (this call is done with them): no copies.
    final = LbfgsState(x, f, g, S, Y, rho, gamma, start, count, nit, nfev)
    return LbfgsResult(x=x.copy(), fun=f, nit=nit, nfev=nfev, success=success, message=message,
                       state=final)  # fmt: skip
