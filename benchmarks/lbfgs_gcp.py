"""Prototype: L-BFGS-B's search direction (generalized Cauchy point + subspace minimisation,
Byrd, Lu, Nocedal & Zhu 1995; the projection of Morales & Nocedal 2011) in lbfgs.drive, on the
host only, in float64 (benchmarks/results/lbfgs_vs_scipy.md: it tracks scipy's L-BFGS-B, the
first ~10 iterations to 1e-3, and ends at 0.99-1.00x of scipy's loss where the segment rule of
runtime/lbfgs.py swings from 0.68x to 1.09x). Not in onnxstyle: DeviceVectors has no such step
yet (it needs the breakpoints sorted, prefix sums over n x 2m and two 2m x 2m solves per
iteration).

GcpVectors is HostVectors whose segment() ignores the two-loop direction and writes
d = xbar - x, xbar the projected subspace minimiser from the generalized Cauchy point of the
compact L-BFGS model B = theta I - W M W' (W = [Y, theta S], theta = 1 / gamma).

    python benchmarks/lbfgs_gcp.py --size 64 --out DIR     # six pairs, 500 iterations
    python benchmarks/lbfgs_vs_scipy.py DIR                 # with DIR/convergence_scipy_64.json

It writes DIR/convergence_lbfgs_{size}.json (convergence.py's format): run onnxstyle.stylize
with optimizer="lbfgs" and this direction.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout
sys.path.insert(0, str(Path(__file__).resolve().parent))

from onnxstyle.runtime import lbfgs  # noqa: E402


class GcpVectors(lbfgs.HostVectors):
    def direction(self, ring: lbfgs.Ring) -> tuple[float, float, float]:
        self.ring = ring  # segment() needs the pairs
        return super().direction(ring)

    def segment(self, p: float) -> tuple[float, float]:
        gd, t_max = self.gcp(self.ring)
        if not gd < 0:  # lost descent to rounding: forget the pairs, as drive does
            self.ring.forget()
            gd, t_max = self.gcp(self.ring)
        return gd, (t_max if self.ring.count else 1.0)  # the first step only probes

    def gcp(self, ring: lbfgs.Ring) -> tuple[float, float]:
        """L-BFGS-B's direction: generalized Cauchy point, subspace minimisation, projection
        (Byrd, Lu, Nocedal, Zhu 1995; Morales & Nocedal 2011); in float64. d <- xbar - x;
        returns (g'd, the largest feasible step along d)."""
        f8 = np.float64
        x, g = self.x.astype(f8), self.g.astype(f8)
        lo, hi = self.lo, self.hi
        slots = ring.slots()
        k = len(slots)
        theta = 1.0 / ring.gamma if k else 1.0
        with np.errstate(divide="ignore", invalid="ignore"):
            tb = np.where(g < 0, (x - hi) / g, np.where(g > 0, (x - lo) / g, np.inf))
        tb = np.maximum(tb, 0.0)
        if k:
            S = self.S[slots].astype(f8)
            Y = self.Y[slots].astype(f8)
            W = np.concatenate([Y, theta * S], 0)  # (2k, n)
            SY = S @ Y.T
            D = np.diag(np.diag(SY))
            L = np.tril(SY, -1)
            Minv = np.block([[-D, L.T], [L, theta * (S @ S.T)]])
            M = np.linalg.inv(Minv)
        else:
            W = np.zeros((0, x.size))
            M = np.zeros((0, 0))
        # Breakpoints in order; variables with tb == 0 are fixed from the start.
        order = np.argsort(tb, kind="stable")
        ts = tb[order]
        gs_ = g[order]
        Ws = W[:, order]  # (2k, n)
        # After the first j sorted variables are fixed: F_j = sum_{i>=j} g_i^2,
        # P_j = -sum_{i>=j} g_i w_i, Q_j = -sum_{i<j} t_i g_i w_i.
        g2 = gs_ * gs_
        F = np.concatenate([np.cumsum(g2[::-1])[::-1], [0.0]])
        gw = Ws * gs_
        P = -np.concatenate([np.cumsum(gw[:, ::-1], 1)[:, ::-1], np.zeros((W.shape[0], 1))], 1)
        tgw = gw * np.where(np.isfinite(ts), ts, 0.0)
        Q = -np.concatenate([np.zeros((W.shape[0], 1)), np.cumsum(tgw, 1)], 1)
        n = x.size
        # segment j: from t_{j-1} (t_{-1} = 0) to t_j, with the first j variables fixed
        tstart = np.concatenate([[0.0], ts])  # start time of segment j (j = 0..n)
        tend = np.concatenate([ts, [np.inf]])
        C = Q + tstart * P  # W'z at the segment's start
        MP = M @ P if k else P
        f1 = -F + theta * tstart * F - (np.einsum("ij,ij->j", MP, C) if k else 0.0)
        f2 = theta * F - (np.einsum("ij,ij->j", MP, P) if k else 0.0)
        with np.errstate(divide="ignore", invalid="ignore"):
            dtm = np.where(f2 > 0, -f1 / f2, np.inf)
        dtm = np.maximum(dtm, 0.0)
        stop = (tstart + dtm <= tend) | (f1 >= 0)
        stop &= tstart < np.inf
        j = int(np.argmax(stop)) if stop.any() else n
        tc = tstart[j] + (dtm[j] if f1[j] < 0 else 0.0)
        if not np.isfinite(tc):
            tc = tstart[j]
        xc = np.clip(x - np.minimum(tb, tc) * g, lo, hi)
        free = tb > tc  # free at the GCP
        c = W @ (xc - x) if k else None
        # reduced gradient at xc: Z'(g + B(xc - x)), B = theta I - W'M W
        rg = g + theta * (xc - x)
        if k:
            rg = rg - W.T @ (M @ c)
        rg = rg[free]
        if k and free.any():
            V = W[:, free]  # (2k, nF)
            N = np.eye(2 * k) - (M @ (V @ V.T)) / theta
            u = np.linalg.solve(N, M @ (V @ rg))
            du = -rg / theta - (V.T @ u) / theta**2
        else:
            du = -rg / theta
        xbar = xc.copy()
        xbar[free] = xc[free] + du
        proj = np.clip(xbar, lo, hi)
        if g @ (proj - x) < 0:
            xbar = proj
        else:  # backtrack into the box along du
            with np.errstate(divide="ignore", invalid="ignore"):
                xf = xc[free]
                r = np.where(du > 0, (hi - xf) / du, np.where(du < 0, (lo - xf) / du, np.inf))
            a = min(1.0, float(r.min(initial=np.inf)))
            xbar = xc.copy()
            xbar[free] = xf + a * du
        d = xbar - x
        self.d[...] = d
        with np.errstate(divide="ignore", invalid="ignore"):
            up = np.where(d > 0, (hi - x) / d, np.inf)
            dn = np.where(d < 0, (lo - x) / d, np.inf)
        tmax = max(float(min(up.min(), dn.min(), 1e10)), 1.0)
        return float(g @ d), tmax


def minimize(fun, x0, maxiter, bounds=(0.0, 255.0), m=lbfgs.defaults.LBFGS_MEMORY, callback=None,
             maxfun=None, max_ls=lbfgs.MAX_LS, gtol=0.0, state=None, cold=False) -> lbfgs.LbfgsResult:
    """lbfgs.minimize with GcpVectors (no state: always from x0)."""
    lo, hi = lbfgs.limits(bounds, maxiter)
    return lbfgs.drive(GcpVectors(fun, x0, lo, hi, m), maxiter, callback, maxfun, max_ls, gtol, cold=cold)


def main() -> None:
    import convergence

    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--iterations", type=int, default=500)
    ap.add_argument("--pairs", default=convergence.PAIRS)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    lbfgs.minimize = minimize  # what stylize's optimizer="lbfgs" calls
    args.out.mkdir(parents=True, exist_ok=True)
    sys.argv = [sys.argv[0], "--size", str(args.size), "--iterations", str(args.iterations),
                "--optimizer", "lbfgs", "--threads", "1", "--pairs", args.pairs, "--out", str(args.out)]
    convergence.main()


if __name__ == "__main__":
    main()
