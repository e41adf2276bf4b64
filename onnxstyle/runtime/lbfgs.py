"""L-BFGS with box constraints by projection, written once for two places the vectors can live.

One iteration:
  1. the held set: variables at a bound whose gradient pushes them out of the box (x = lo with
     g > 0, or x = hi with g < 0); the others are free;
  2. the direction d = -P H P g, where H is the L-BFGS inverse-Hessian approximation (two-loop
     recursion over the last m pairs, H0 = gamma I with gamma = s'y / y'y) and P zeroes the held
     variables. H is positive definite, so g'd = -(Pg)' H (Pg) < 0: a descent direction;
  3. the segment, as in L-BFGS-B (Byrd, Lu, Nocedal & Zhu 1995, with the projection of
     Morales & Nocedal 2011). On the host (rule "gcp", the default) once there are pairs, its
     end point z is L-BFGS-B's own: the generalized Cauchy point of the compact L-BFGS model
     along the projected steepest-descent path, then the model's minimiser over the variables
     still free there, projected into the box (HostVectors._cauchy), and d <- z - x; with it,
     lbfgs ends at 0.91x to 1.007x of scipy's loss at equal iterations, where the rule below
     ends at 0.71x to 1.055x (benchmarks/results/lbfgs_vs_scipy.md). Otherwise (rule
     "segment", the device's, and before the first pair): the end point z = clip(x + p d,
     lo, hi) and d <- z - x, with p = 1, or without curvature yet (the first iteration, or
     after a restart) a probe p = min(1, 1/||d||) as scipy's L-BFGS-B takes on unbounded
     problems; from a cold start
     (`cold`: a noise canvas, nothing to keep) the first iteration takes p = 1 and t <= 1, as
     L-BFGS-B does when every variable is bounded (a warm start, e.g. a video frame's warped
     predecessor, would be thrown away by it); where the clip loses descent (g'(z - x) >= 0),
     d <- a d instead, a = min(p, the largest step that stays in the box);
  4. a line search on the segment x(t) = x + t d, 0 < t <= t_max, the largest step that keeps
     every variable in the box (L-BFGS-B's lnsrlb): no variable is
     clipped during the search, so f is smooth along it (a projected path x(t) = clip(x + t d),
     which clips any number of variables at once, ended 5-18 % above scipy at 128 px:
     benchmarks/results/lbfgs_vs_scipy.md). With s = x(t) - x: sufficient decrease
     f(x(t)) <= f + c1 g's and the strong Wolfe condition |g(x(t))'s| <= c2 |g's|, which
     makes every stored pair's s'y > 0. The trial step is 1 (the end point z); the first
     iteration only probes the curvature and accepts any sufficient decrease. It backtracks
     by safeguarded quadratic interpolation, extrapolates (up to t_max) or interpolates by a
     secant on the slope, and bisects once bracketed. Still steeply downhill at t_max, it
     extrapolates on along the projected path x(t) = clip(x + t d) for at most MAX_PAST trials
     (the plateau of a noise canvas, which the segment alone crawls over);
  5. s = x(t) - x and y = g(x(t)) - g go into ring buffers of m rows.

`drive` runs these iterations on scalars only (the line search, the ring's bookkeeping, the
stops, the callback); the vectors sit behind `Vectors`: host_lbfgs.HostVectors (NumPy float32,
no scipy; host_lbfgs.minimize is the host optimiser) or device_lbfgs.DeviceVectors on an
onnxruntime device.

The host optimiser's whole state (x, f, g, the ring of pairs, gamma, the counters) can be
exported after any iteration (Iterate.state(), which copies) and handed back (`state=`): N
iterations, then M more from the state, make the same iterates, bit for bit, as N + M in one call.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any, Protocol

import numpy as np

Fun = Callable[[np.ndarray], tuple[float, np.ndarray]]

C1 = 1e-4  # Armijo constant: Nocedal & Wright, Numerical Optimization (2006), section 3.1
C2 = 0.9  # Wolfe curvature constant for quasi-Newton methods: Nocedal & Wright, section 3.1
MAX_LS = 20  # trial steps per line search: scipy L-BFGS-B's maxls default
MAX_PAST = 10  # trial steps past the segment's end, along the projected path clip(x + t d)
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
                  "rho": (self.rho.shape, (m,))}
        for name, (got, want) in shapes.items():
            if got != want:
                raise ValueError(f"L-BFGS state: {name} has shape {got}, this run needs {want}")
        if not (0 <= self.start < m and 0 <= self.count <= m and self.nit >= 0 and self.nfev >= 0):
            raise ValueError(f"L-BFGS state: ring start {self.start}, count {self.count}, "
                             f"nit {self.nit}, nfev {self.nfev} out of range for m = {m}")
        if not (math.isfinite(self.f) and math.isfinite(self.gamma) and self.gamma > 0):
            raise ValueError(f"L-BFGS state: f = {self.f}, gamma = {self.gamma}")


@dataclass(frozen=True)
class Iterate:
    """What the callback gets after an iteration; `x` and state() only work during the callback.
    x: on the host the optimiser's own buffer (copy it to keep it), on the device a copy of the
    image fetched on the first read. state(): a copy of the host optimiser's whole state (None
    on the device). info: what the device's fun returned beside the loss at this point."""

    _x: list  # [x, or a function fetching it], emptied when the callback returns
    fun: float
    nit: int
    nfev: int
    info: Any = None
    state: Callable[[], LbfgsState] | None = None

    @property
    def x(self) -> np.ndarray:
        if not self._x:
            raise RuntimeError("Iterate.x is only readable during the callback")
        if callable(self._x[0]):
            self._x[0] = self._x[0]()
        return self._x[0]


@dataclass
class LbfgsResult:
    x: np.ndarray  # float32, flat
    fun: float
    nit: int
    nfev: int
    success: bool
    message: str
    state: LbfgsState | None = None  # host: the state at x, to continue from (the run's buffers)
    info: Any = None  # device: fun's info at x


class _Stop(Exception):
    pass


class LineSearch:
    """The line search's step lengths, on scalars only (drive runs one per iteration): trial
    steps start at `t` and stay <= `t_max`; `judge` takes each trial's outcome and accepts it or
    sets the next t. `probe`: the first iteration, without curvature yet, accepts any
    sufficient decrease."""

    def __init__(self, t: float, probe: bool, t_max: float = math.inf) -> None:
        self.t, self.probe, self.t_max = t, probe, t_max
        self.t_lo, self.t_hi = 0.0, math.inf  # the bracket
        self.f_best = math.inf  # the best sufficient decrease that failed the curvature test
        self.past = 0  # trial steps past t_max so far

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
                if t >= self.t_max:  # at the segment's end: on along the projected path, or take it
                    if self.past == MAX_PAST:
                        return True, False
                    self.past += 1
                ratio = gs / (gs - gts) if gts > gs else 10.0  # secant on the slope
                self.t = t * min(max(ratio, 2.0), 10.0)
                if not self.past:
                    self.t = min(self.t, self.t_max)
            else:
                self.t = 0.5 * (self.t_lo + self.t_hi)
        else:  # overshot: the slope turned steeply uphill; its secant root is before t
            self.t_hi = t
            if self.t_lo == 0.0:
                self.t = t * min(max(gs / (gs - gts), 0.1), 0.9)
            else:
                self.t = 0.5 * (self.t_lo + self.t_hi)
        return False, keep


@dataclass
class Ring:
    """The pairs' bookkeeping: slots start, start+1, ... (mod m) hold `count` pairs, oldest first,
    with rho = 1 / s'y (other slots' rho are stale); gamma = s'y / y'y of the newest pair."""

    rho: np.ndarray  # (m,) float64
    start: int = 0
    count: int = 0
    gamma: float = 1.0

    @property
    def slot(self) -> int:
        """Where the next pair goes: the oldest pair's slot when the ring is full."""
        return (self.start + self.count) % len(self.rho)

    def slots(self) -> list[int]:
        return [(self.start + j) % len(self.rho) for j in range(self.count)]

    def store(self, sy: float, yy: float) -> None:
        """Book the pair just written into self.slot: kept only with positive curvature (s'y > 0)."""
        if sy > EPS_CURV * yy and yy > 0:
            self.rho[self.slot] = 1.0 / sy
            self.gamma = sy / yy
            if self.count < len(self.rho):
                self.count += 1
            else:
                self.start = (self.start + 1) % len(self.rho)
        elif self.count == len(self.rho):  # the slot held the oldest pair, now overwritten
            self.drop_oldest()

    def drop_oldest(self) -> None:
        self.start, self.count = (self.start + 1) % len(self.rho), self.count - 1

    def forget(self) -> None:
        self.start, self.count, self.gamma = 0, 0, 1.0


class Vectors(Protocol):
    """The vectors of one run and the work on them: the iterate x and its gradient g, the
    direction d, the trial point xt and its gradient gt, the best trial kept (xb, gb) and the
    ring's rows S, Y. Only view, vectors and result hand drive an array."""

    m: int  # the ring's slots
    info: Any  # what fun returned beside the loss at x (None where it returns nothing)

    def start(self) -> float: ...  # f(x), with g <- g(x); inf where not finite
    def direction(self, ring: Ring) -> tuple[float, float, float]: ...  # d <- -P H P g; (g'd, ||d||, max |P g|)
    def segment(self, p: float) -> tuple[float, float]: ...  # d <- clip(x + p d) - x (or a d); (g'd, t_max >= 1)
    def trial(self, t: float) -> float: ...  # xt <- clip(x + t d, lo, hi); g's with s = xt - x
    def evaluate(self) -> tuple[float, float]: ...  # gt <- g(xt); (f(xt), gt's), both inf where not finite
    def keep(self) -> None: ...  # the trial is the best decrease so far: keep it while the search goes on
    def settle(self) -> None: ...  # xt, gt <- the kept trial
    def pair(self) -> tuple[float, float]: ...  # s, y into the slot ring.slot had at direction(); (s'y, y'y)
    def accept(self) -> None: ...  # x, g <- xt, gt
    def view(self) -> np.ndarray | Callable[[], np.ndarray]: ...  # x for the callback, or a function fetching it
    def vectors(self) -> tuple[np.ndarray, ...] | None: ...  # the own (x, g, S, Y); None: no state to export
    def result(self) -> np.ndarray: ...  # a copy of x on the host


def limits(bounds: tuple[float, float], maxiter: int, every: int = 1) -> tuple[float, float]:
    """(lo, hi); ValueError for an empty box or a count below 1."""
    lo, hi = float(bounds[0]), float(bounds[1])
    if not lo < hi:
        raise ValueError(f"bounds ({lo}, {hi}): the lower bound must be below the upper")
    if maxiter < 1:
        raise ValueError("maxiter must be >= 1")
    if every < 1:
        raise ValueError("callback_every must be >= 1")
    return lo, hi


def export(vec: Vectors, ring: Ring, f: float, nit: int, nfev: int, copy: bool) -> LbfgsState | None:
    """The run's state: copies, or (copy=False) the run's own buffers; None where vec has none."""
    own = vec.vectors()
    if own is None:
        return None
    x, g, S, Y, rho = (a.copy() if copy else a for a in (*own, ring.rho))
    return LbfgsState(x, f, g, S, Y, rho, ring.gamma, ring.start, ring.count, nit, nfev)


def drive(
    vec: Vectors,
    maxiter: int,
    callback: Callable[[Iterate], None] | None = None,
    maxfun: int | None = None,
    max_ls: int = MAX_LS,
    gtol: float = 0.0,
    every: int = 1,
    state: LbfgsState | None = None,
    cold: bool = False,
) -> LbfgsResult:
    """The iterations of the module docstring on `vec`, from its x (evaluated first) or from
    `state`'s scalars and ring (vec then holds the state's vectors). Stops and counts as
    minimize says; the callback runs after every `every`-th iteration. `cold`: x is a start
    with nothing to keep (a noise canvas), whose first step is L-BFGS-B's full one."""
    maxfun = maxfun if maxfun is not None else 4 * maxiter + 20
    if state is None:
        ring, f, nit, nfev = Ring(np.zeros(vec.m)), math.inf, 0, 0
    else:
        ring = Ring(np.array(state.rho, np.float64), int(state.start), int(state.count), float(state.gamma))
        f, nit, nfev = float(state.f), int(state.nit), int(state.nfev)
    stop_at, nfev_max = nit + maxiter, nfev + maxfun

    def spend() -> None:  # one more evaluation of fun
        nonlocal nfev
        if nfev >= nfev_max:
            raise _Stop("maximum number of function evaluations reached")
        nfev += 1

    if state is None:
        spend()
        f = vec.start()
        if not math.isfinite(f):
            raise ValueError("the loss or its gradient is not finite at the starting point")
    message, success = "maximum number of iterations reached", True
    try:
        while nit < stop_at:
            # 1-2. the projected direction; the gtol stop; lost descent to rounding: restart.
            gd, dnorm, pgmax = vec.direction(ring)
            if pgmax <= gtol:
                message = "projected gradient below gtol"
                break
            if ring.count and gd >= 0:
                ring.forget()
                gd, dnorm, pgmax = vec.direction(ring)

            # 3. the segment; 4. the line search on it. A cold start's first: L-BFGS-B's, t <= 1.
            full = cold and nit == 0
            gd, t_max = vec.segment(1.0 if ring.count or full else min(1.0, 1.0 / max(dnorm, 1e-30)))
            ls = LineSearch(1.0, probe=nit == 0, t_max=1.0 if full else t_max)
            accepted = False
            for _ in range(max_ls):
                gs = vec.trial(ls.t)  # the first-order change along the projected step
                if gs >= 0:  # the step rounds to nothing
                    break
                spend()
                ft, gts = vec.evaluate()
                accepted, keep = ls.judge(f, gs, ft, gts)
                if accepted:
                    break
                if keep:  # a decrease, kept in case nothing better turns up
                    vec.keep()
            if not accepted:
                if ls.f_best == math.inf:
                    if ring.count:  # the memory misled us: forget it and try steepest descent
                        ring.forget()
                        continue
                    message, success = "line search cannot decrease the loss", False
                    break
                vec.settle()  # settle for the best sufficient decrease seen
                ft = ls.f_best

            # 5. the pair (s, y) into the ring; kept only with positive curvature.
            ring.store(*vec.pair())
            vec.accept()
            f, nit = ft, nit + 1
            if callback is not None and nit % every == 0:
                box = [vec.view()]
                snap = partial(export, vec, ring, f, nit, nfev, True) if vec.vectors() is not None else None
                try:
                    callback(Iterate(box, f, nit, nfev, vec.info, snap))
                except StopIteration:
                    message = "stopped by the callback"
                    break
                finally:
                    box.clear()
    except _Stop as e:
        message = str(e)
        if ring.count == vec.m:  # HostVectors' trial steps went into the oldest pair's slot
            ring.drop_oldest()
    return LbfgsResult(x=vec.result(), fun=f, nit=nit, nfev=nfev, success=success, message=message,
                       state=export(vec, ring, f, nit, nfev, copy=False), info=vec.info)
