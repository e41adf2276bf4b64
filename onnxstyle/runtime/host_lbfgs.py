"""The host backend of the L-BFGS driver (lbfgs.py): the vectors in NumPy float32, L-BFGS-B's
generalized Cauchy point and subspace step, and `minimize`, with scipy.optimize.minimize(jac=True)'s
calling convention: fun(x) -> (loss, grad). Its hot loop allocates no vector of size n: every
buffer is made once and updated in place."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from onnxstyle import defaults
from onnxstyle.runtime.lbfgs import MAX_LS, Fun, Iterate, LbfgsResult, LbfgsState, Ring, drive, limits

RULES = ("gcp", "segment")  # the host's step end point: L-BFGS-B's, or clip(x + p d) (the device's)
CHUNK = 4096  # breakpoints scanned per block while looking for the generalized Cauchy point
BANDS = 6  # bands of breakpoints sorted in turn (the last one unbounded)
BLOCK = 16384  # columns per block of the free variables' Gram products


class HostVectors:
    """Vectors in NumPy float32 on the host, each buffer made once and updated in place; the
    trial steps s go straight into S's next slot."""

    info = None

    def __init__(self, fun: Fun, x0: np.ndarray, lo: float, hi: float, m: int,
                 state: LbfgsState | None = None, rule: str = "gcp") -> None:
        n, f32 = int(np.size(x0)), np.float32
        self.fun, self.lo, self.hi, self.m, self.rule = fun, lo, hi, m, rule
        self.ring: Ring | None = None  # the pairs, for the Cauchy point
        self.x = np.empty(n, f32)
        np.clip(np.asarray(x0 if state is None else state.x).reshape(-1), lo, hi, out=self.x)
        # xb, gb: the best Armijo point that failed the curvature test; free: 1 where free, 0
        # where held (a multiply beats a masked copy); d is also the two-loop's work vector.
        self.g, self.xt, self.gt, self.d, self.tmp, self.xb, self.gb, self.free = (
            np.empty(n, f32) for _ in range(8))
        self.held, self.b1, self.b2 = (np.empty(n, bool) for _ in range(3))
        self.S, self.Y = np.zeros((m, n), f32), np.zeros((m, n), f32)
        self.alpha = np.zeros(m, np.float64)
        if state is not None:
            for own, saved in ((self.g, state.g), (self.S, state.S), (self.Y, state.Y)):
                np.copyto(own, saved, casting="same_kind")
        self.s, self.y = self.S[0], self.Y[0]  # the next slot's rows

    def _eval(self, point: np.ndarray, grad_out: np.ndarray) -> float:
        value, grad = self.fun(point)
        np.copyto(grad_out, np.asarray(grad).reshape(-1), casting="same_kind")
        value = float(value)
        return value if math.isfinite(value) and np.isfinite(grad_out).all() else math.inf

    def _axpy(self, a: float, v: np.ndarray, out: np.ndarray) -> None:  # out += a v, in place
        np.multiply(v, np.float32(a), out=self.tmp)
        np.add(out, self.tmp, out=out)

    def start(self) -> float:
        return self._eval(self.x, self.g)

    def direction(self, ring: Ring) -> tuple[float, float, float]:
        x, g, d, free, held, b1, b2 = self.x, self.g, self.d, self.free, self.held, self.b1, self.b2
        np.less_equal(x, self.lo, out=b1)
        np.greater(g, 0, out=b2)
        np.logical_and(b1, b2, out=held)
        np.greater_equal(x, self.hi, out=b1)
        np.less(g, 0, out=b2)
        np.logical_and(b1, b2, out=b1)
        np.logical_or(held, b1, out=held)
        np.logical_not(held, out=b1)
        np.copyto(free, b1)
        np.multiply(g, free, out=d)  # P g
        pgmax = max(float(d.max()), -float(d.min()))
        S, Y, rho, alpha = self.S, self.Y, ring.rho, self.alpha
        self.ring = ring
        for i in reversed(ring.slots()):
            alpha[i] = rho[i] * float(np.dot(S[i], d))
            self._axpy(-alpha[i], Y[i], d)
        d *= np.float32(ring.gamma)
        for i in ring.slots():
            beta = rho[i] * float(np.dot(Y[i], d))
            self._axpy(alpha[i] - beta, S[i], d)
        np.multiply(d, free, out=d)
        np.negative(d, out=d)
        self.s, self.y = S[ring.slot], Y[ring.slot]
        return float(np.dot(g, d)), float(np.linalg.norm(d)), pgmax

    def _reach(self, d: np.ndarray, base: np.ndarray | None = None) -> float:
        """The largest t with lo <= base + t d <= hi (base: x; inf where d = 0); tmp and b1 are
        scratch."""
        w, b = self.tmp, self.b1
        np.greater(d, 0, out=b)
        w.fill(self.lo)
        np.copyto(w, np.float32(self.hi), where=b)
        np.subtract(w, self.x if base is None else base, out=w)  # the distance to the bound d points at
        np.not_equal(d, 0, out=b)
        with np.errstate(over="ignore"):
            np.divide(w, d, out=w, where=b)
        np.logical_not(b, out=b)
        np.copyto(w, np.float32(np.inf), where=b)
        return float(w.min())

    def segment(self, p: float) -> tuple[float, float]:
        if self.rule == "gcp" and self.ring is not None and self.ring.count:
            try:
                gd = self._cauchy(self.ring)
            except np.linalg.LinAlgError:  # pairs too close to dependent for the compact form
                gd = math.nan
            if gd < 0:  # else (rounding lost descent, or no model): the two-loop's segment below
                np.subtract(self.xt, self.x, out=self.d)
                return gd, max(self._reach(self.d), 1.0)
        x, d, z = self.x, self.d, self.xt  # xt is free until the line search
        np.multiply(d, np.float32(p), out=z)
        np.add(z, x, out=z)
        np.clip(z, self.lo, self.hi, out=z)
        np.subtract(z, x, out=z)
        gd = float(np.dot(self.g, z))
        if gd < 0:
            np.copyto(d, z)
        else:  # the clip lost descent: shorten d to the box instead
            d *= np.float32(min(p, self._reach(d)))
            gd = float(np.dot(self.g, d))
        return gd, max(self._reach(d), 1.0)

    def _gram(self, mask: np.ndarray | None = None) -> np.ndarray:
        """[Y; S] [Y; S]' over all the variables, or those where mask is 1: (2m, 2m) float64,
        a block of BLOCK columns at a time (no buffer of size n)."""
        m, n = self.m, self.x.size
        width = min(BLOCK, n)
        rows, masked = np.empty((2 * m, width), np.float32), np.empty((2 * m, width), np.float32)
        out = np.zeros((2 * m, 2 * m))
        for a in range(0, n, width):
            w = min(width, n - a)
            r = rows[:, :w]
            r[:m], r[m:] = self.Y[:, a:a + w], self.S[:, a:a + w]
            left = r if mask is None else np.multiply(r, mask[a:a + w], out=masked[:, :w])
            out += left @ r.T
        return out

    def _cauchy(self, ring: Ring) -> float:
        """xt <- L-BFGS-B's end point (Byrd, Lu, Nocedal & Zhu 1995, sections 4-5; with the
        projection of Morales & Nocedal 2011) for the compact model B = theta I - W M W',
        W = [Y, theta S] (the ring's pairs, oldest first), theta = 1 / gamma: the generalized
        Cauchy point xc, the first minimiser of the model along the projected steepest-descent
        path clip(x - t g), then the model's minimiser over the variables still free at xc,
        projected into the box (where that loses descent: its longest step inside the box).
        Returns g'(xt - x). Scratch: xb (breakpoints), gb, gt, tmp, free, b1; d is kept."""
        x, g, lo, hi = self.x, self.g, self.lo, self.hi
        tb, rg, w, tmp, free, b = self.xb, self.gb, self.gt, self.tmp, self.free, self.b1
        S, Y = self.S, self.Y
        slots = np.array(ring.slots())
        k, theta = len(slots), 1.0 / ring.gamma
        rows = np.concatenate([slots, self.m + slots])  # the ring's rows of [Y; S]
        gram = self._gram()[np.ix_(rows, rows)]
        sy, ss = gram[k:, :k], gram[k:, k:]
        low = np.tril(sy, -1)
        M = np.linalg.inv(np.block([[-np.diag(np.diag(sy)), low.T], [low, theta * ss]]))
        scale = np.concatenate([np.ones(k), np.full(k, theta)])  # W's rows: [Y; theta S]

        def wt(v: np.ndarray) -> np.ndarray:  # W' v, (2k,) in float64
            return scale * np.concatenate([(Y @ v)[slots], (S @ v)[slots]]).astype(np.float64)

        def wv(u: np.ndarray, out: np.ndarray) -> np.ndarray:  # out <- W u (n,); tmp is scratch
            cy, cs = np.zeros(self.m, np.float32), np.zeros(self.m, np.float32)
            cy[slots], cs[slots] = u[:k], theta * u[k:]
            np.dot(cy, Y, out=out)
            np.add(out, np.dot(cs, S, out=tmp), out=out)
            return out

        # Breakpoints: the t at which x_i - t g_i meets its bound (0: held from the start).
        tb.fill(np.inf)
        with np.errstate(divide="ignore", invalid="ignore"):
            np.less(g, 0, out=b)
            np.subtract(x, np.float32(hi), out=tmp)
            np.divide(tmp, g, out=tb, where=b)
            np.greater(g, 0, out=b)
            np.subtract(x, np.float32(lo), out=tmp)
            np.divide(tmp, g, out=tb, where=b)
        np.maximum(tb, 0, out=tb)
        np.greater(tb, 0, out=b)
        np.multiply(g, b, out=tmp)  # minus the path's first direction
        F = float(np.dot(tmp, tmp))  # the sum of g_i^2 over the variables still moving
        P = -wt(tmp)  # W' (the moving variables' direction)
        Q = np.zeros(2 * k)  # W' (the stopped variables' moves)
        # Walk the path's segments in the order of their breakpoints, sorting a band (lower, top]
        # of them at a time: top starts at the first segment's minimum and grows fourfold.
        def slope(F: float, P: np.ndarray, Q: np.ndarray, t: float) -> tuple[float, float]:
            MP = M @ P  # the model's slope and curvature at t, on the segment from t on
            return -F + theta * t * F - float((Q + t * P) @ MP), theta * F - float(P @ MP)

        t0, tc, lower = 0.0, None, 0.0
        f1, f2 = slope(F, P, Q, 0.0)
        top = -f1 / f2 if f2 > 0 else math.inf
        for band_no in range(BANDS):
            if f1 >= 0:  # the model rises from t0 on
                tc = t0
                break
            np.greater(tb, np.float32(lower), out=b)
            if math.isfinite(top):
                np.less_equal(tb, np.float32(top), out=self.b2)
                np.logical_and(b, self.b2, out=b)
            band = np.flatnonzero(b)
            band = band[np.argsort(tb[band])]
            for a in range(0, band.size, CHUNK):  # a block of breakpoints at a time
                idx = band[a:a + CHUNK]
                ts, gi = tb[idx].astype(np.float64), g[idx].astype(np.float64)
                cols = np.concatenate([Y[np.ix_(slots, idx)], S[np.ix_(slots, idx)]]).astype(np.float64)
                gw = scale[:, None] * cols * gi  # g_i w_i
                starts = np.concatenate([[t0], ts[:-1]])
                Fj = F - np.concatenate([[0.0], np.cumsum(gi * gi)[:-1]])
                Pj = P[:, None] + np.concatenate([np.zeros((2 * k, 1)), np.cumsum(gw, 1)[:, :-1]], 1)
                Qj = Q[:, None] - np.concatenate([np.zeros((2 * k, 1)), np.cumsum(gw * ts, 1)[:, :-1]], 1)
                MP = M @ Pj
                f1j = -Fj + theta * starts * Fj - np.einsum("ij,ij->j", Qj + starts * Pj, MP)
                f2j = theta * Fj - np.einsum("ij,ij->j", Pj, MP)
                with np.errstate(divide="ignore", invalid="ignore"):
                    dt = np.where(f2j > 0, -f1j / f2j, np.inf)
                stop = (f1j >= 0) | (starts + dt <= ts)
                if stop.any():  # the first segment holding the model's minimum
                    j = int(np.argmax(stop))
                    tc = starts[j] + (max(dt[j], 0.0) if f1j[j] < 0 else 0.0)
                    P, Q = Pj[:, j], Qj[:, j]
                    break
                F, P, Q, t0 = Fj[-1] - gi[-1] ** 2, Pj[:, -1] + gw[:, -1], Qj[:, -1] - gw[:, -1] * ts[-1], ts[-1]
            if tc is not None:
                break
            # Every breakpoint up to top is passed: the segment from t0 runs on beyond top.
            f1, f2 = slope(F, P, Q, t0)
            if f1 < 0 and f2 > 0 and t0 - f1 / f2 <= top:
                tc = t0 - f1 / f2
                break
            if not math.isfinite(top):  # no breakpoint left and no minimum: stay at t0
                tc = t0
                break
            lower, top = top, (4 * top if band_no < BANDS - 2 else math.inf)
        c = Q + tc * P  # W'(xc - x)
        xc = self.xt
        np.minimum(tb, np.float32(tc), out=tmp)
        np.multiply(tmp, g, out=tmp)
        np.subtract(x, tmp, out=xc)
        np.clip(xc, lo, hi, out=xc)
        np.greater(tb, np.float32(tc), out=b)
        np.copyto(free, b)  # free at xc
        # The reduced gradient at xc on the free variables: g + B (xc - x).
        np.subtract(xc, x, out=rg)
        np.multiply(rg, np.float32(theta), out=rg)
        np.add(rg, g, out=rg)
        np.subtract(rg, wv(M @ c, w), out=rg)
        np.multiply(rg, free, out=rg)
        # The subspace minimiser (the direct primal method, section 5.1), with V = W's free rows:
        # du = -rg / theta - V (I - M V'V / theta)^-1 M V' rg / theta^2.
        gram = self._gram(free)[np.ix_(rows, rows)] * np.outer(scale, scale)
        u = np.linalg.solve(np.eye(2 * k) - (M @ gram) / theta, M @ wt(rg))
        du = wv(u / theta**2, w)
        np.multiply(du, free, out=du)
        np.multiply(rg, np.float32(1.0 / theta), out=tmp)
        np.add(du, tmp, out=du)
        np.negative(du, out=du)  # du, 0 off the free variables
        np.add(xc, du, out=rg)
        np.clip(rg, lo, hi, out=rg)  # the minimiser, projected
        np.subtract(rg, x, out=tmp)
        if float(np.dot(g, tmp)) < 0:
            np.copyto(xc, rg)
        else:  # the longest step along du that stays in the box
            du *= np.float32(min(1.0, self._reach(du, xc)))
            np.add(xc, du, out=xc)
            np.clip(xc, lo, hi, out=xc)
        np.subtract(xc, x, out=tmp)
        return float(np.dot(g, tmp))

    def trial(self, t: float) -> float:
        np.multiply(self.d, np.float32(t), out=self.xt)
        np.add(self.xt, self.x, out=self.xt)
        np.clip(self.xt, self.lo, self.hi, out=self.xt)
        np.subtract(self.xt, self.x, out=self.s)
        return float(np.dot(self.g, self.s))

    def evaluate(self) -> tuple[float, float]:
        ft = self._eval(self.xt, self.gt)
        return ft, (float(np.dot(self.gt, self.s)) if ft < math.inf else math.inf)

    def keep(self) -> None:
        np.copyto(self.xb, self.xt)
        np.copyto(self.gb, self.gt)

    def settle(self) -> None:
        np.copyto(self.xt, self.xb)
        np.copyto(self.gt, self.gb)
        np.subtract(self.xt, self.x, out=self.s)

    def pair(self) -> tuple[float, float]:  # s is already in place
        np.subtract(self.gt, self.g, out=self.y)
        return float(np.dot(self.s, self.y)), float(np.dot(self.y, self.y))

    def accept(self) -> None:
        self.x, self.xt, self.g, self.gt = self.xt, self.x, self.gt, self.g

    def view(self) -> np.ndarray:
        return self.x

    def vectors(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        return self.x, self.g, self.S, self.Y

    def result(self) -> np.ndarray:
        return self.x.copy()


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
    cold: bool = False,
    rule: str = "gcp",
) -> LbfgsResult:
    """Minimise fun over the box `bounds` from x0 for at most `maxiter` iterations, on the host.

    Stops early when the projected gradient's largest entry is <= gtol, after `maxfun`
    evaluations, when no step decreases the loss, or when the callback raises StopIteration
    (as scipy does). x0 is projected onto the box first.
    `state` (e.g. Iterate.state() or a result's state): continue from it instead of x0 (which
    must have the same size), without evaluating fun again; maxiter and maxfun then count this
    call's iterations and evaluations, while nit and nfev go on from the state's.
    `cold`: x0 is a noise canvas with nothing to keep: the first step is L-BFGS-B's full one
    (from an image worth keeping, e.g. a warped previous frame, leave it False).
    `rule`: the step's end point once there are pairs: "gcp", L-BFGS-B's (generalized Cauchy
    point and subspace minimisation), or "segment", clip(x + d) (what lbfgs-device does).
    """
    lo, hi = limits(bounds, maxiter)
    if m < 1:
        raise ValueError("m must be >= 1")
    if rule not in RULES:
        raise ValueError(f"rule {rule!r}: expected one of {', '.join(RULES)}")
    if state is not None:
        state.check(int(np.size(x0)), m)
    return drive(HostVectors(fun, x0, lo, hi, m, state, rule), maxiter, callback, maxfun, max_ls, gtol, state=state,
                 cold=cold and state is None)
