"""Maximal covering (MCLP) and set covering (LSCP) as exact MILPs on HiGHS, with a greedy fallback and its
gap to the LP bound."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy.optimize import LinearConstraint, milp
from scipy.sparse import csr_array, diags_array, hstack, vstack

from .problem import SitingProblem
from .settings import load_settings


@dataclass(frozen=True, eq=False)
class Solution:
    """The result of :func:`solve`.

    Attributes
    ----------
    selected : bool per candidate of the problem.
    covered : bool per demand row: newly covered by the selected candidates.
    covered_weight : Σ weight of newly covered demand (households × multiplier).
    objective : the model objective — MCLP: ``covered_weight``; LSCP: number of facilities.
    bound : best proven bound on the objective (upper for MCLP, lower for LSCP; HiGHS dual bound, or the LP
        relaxation for the greedy heuristic).
    gap : relative gap ``|bound − objective| / |bound|`` (0 = proven optimal).
    status : ``optimal``, ``time_limit`` (best found, with gap), ``greedy`` (heuristic, with gap) or
        ``empty`` (nothing to site).
    method : ``mclp`` or ``lscp``; solver : ``highs`` or ``greedy``.
    cost_cny : build cost of the selection plus land cost of the parcels used (CNY).
    seconds : wall time of the solve.
    stats : model size before and after the reductions (rows merged, single-candidate demand folded in).
    message : the solver's message.
    """

    selected: np.ndarray
    covered: np.ndarray
    covered_weight: float
    objective: float
    bound: float
    gap: float
    status: str
    method: str
    solver: str
    cost_cny: float
    seconds: float
    stats: dict[str, int] = field(default_factory=dict)
    message: str = ""

    @property
    def n_selected(self) -> int:
        """Number of facilities sited."""
        return int(self.selected.sum())


def _limits(problem: SitingProblem, p: int | Mapping[str, int] | None) -> dict[str, int] | None:
    if p is None:
        return None
    types = list(dict.fromkeys(problem.candidates["facility_type"]))
    if isinstance(p, Mapping):  # types not named are not limited
        return {t: int(p[t]) for t in types if t in p}
    return {t: int(p) for t in types}


def _covered(problem: SitingProblem, x: np.ndarray) -> np.ndarray:
    return (problem.coverage.astype(np.int64) @ x.astype(np.int64)) > 0


def _cost(problem: SitingProblem, x: np.ndarray) -> float:
    cand = problem.candidates
    used = np.unique(cand["parcel"].to_numpy()[x])
    return float(problem.costs[x].sum() + problem.parcels["land_cost_cny"].to_numpy(float)[used].sum())


def _reduce(a: csr_array, w: np.ndarray, max_cells: float = 5e7):
    """Drop uncoverable / weightless rows, merge rows with the same candidate set (weights summed), and fold
    rows served by a single candidate into that candidate's objective coefficient.

    Returns (rows matrix, row weights, per-candidate folded weight, stats).
    """
    a = csr_array(a)
    a.sort_indices()
    nnz = np.diff(a.indptr)
    keep = (nnz > 0) & (w > 0)
    a, w, nnz = a[keep], w[keep], nnz[keep]
    folded = np.zeros(a.shape[1])
    single = nnz == 1
    np.add.at(folded, a.indices[a.indptr[:-1][single]], w[single])
    a, w, nnz = a[~single], w[~single], nnz[~single]
    n_rows_before = len(w) + int(single.sum())
    width = int(nnz.max()) if len(nnz) else 0
    if len(w) and len(w) * width <= max_cells:
        rows = np.repeat(np.arange(len(w)), nnz)
        pos = np.arange(len(a.indices)) - np.repeat(a.indptr[:-1], nnz)
        padded = np.full((len(w), width), -1, dtype=np.int64)
        padded[rows, pos] = a.indices
        uniq, first, inv = np.unique(padded, axis=0, return_index=True, return_inverse=True)
        w = np.bincount(inv.ravel(), weights=w, minlength=len(uniq))
        a = a[first]
    stats = {"demand_rows": n_rows_before, "single_candidate_rows": int(single.sum()), "model_rows": len(w)}
    return a, w, folded, stats


def _highs(c, integrality, lb, ub, blocks, time_limit, gap):
    mats = [b[0] for b in blocks if b[0].shape[0]]
    lo = np.concatenate([b[1] for b in blocks if b[0].shape[0]]) if mats else np.array([])
    hi = np.concatenate([b[2] for b in blocks if b[0].shape[0]]) if mats else np.array([])
    cons = [LinearConstraint(vstack(mats, format="csr"), lo, hi)] if mats else []
    return milp(c=c, integrality=integrality, bounds=(lb, ub), constraints=cons,
                options={"time_limit": float(time_limit), "mip_rel_gap": float(gap), "presolve": True})


def _side_constraints(problem: SitingProblem, ncol: int, limits, budget, land_cost_cols):
    """Count, budget and footprint rows over the first columns (x) of a model with ``ncol`` columns."""
    cand = problem.candidates
    n_x = len(cand)
    blocks = []
    parcel = cand["parcel"].to_numpy()
    if limits:
        tl = list(limits)
        tpos = pd.Series(np.arange(len(tl)), index=tl)
        sel = np.flatnonzero(cand["facility_type"].isin(tl).to_numpy())
        m = csr_array((np.ones(len(sel)), (tpos.loc[cand["facility_type"].to_numpy()[sel]].to_numpy(), sel)),
                      shape=(len(tl), ncol))
        blocks.append((m, np.full(len(tl), -np.inf), np.array([limits[t] for t in tl], float)))
    for col, cap_col in (("footprint_land_m2", "land_capacity_m2"), ("use_floor_m2", "floor_capacity_m2")):
        fp = cand[col].to_numpy(float)
        cap = problem.parcels[cap_col].to_numpy(float)
        load = np.bincount(parcel, weights=fp, minlength=len(cap))
        tight = np.flatnonzero(load > cap + 1e-9)  # parcels where not every candidate fits at once
        sel = np.flatnonzero(np.isin(parcel, tight) & (fp > 0))
        if len(tight):
            rpos = pd.Series(np.arange(len(tight)), index=tight)
            m = csr_array((fp[sel], (rpos.loc[parcel[sel]].to_numpy(), sel)), shape=(len(tight), ncol))
            blocks.append((m, np.full(len(tight), -np.inf), cap[tight]))
    if budget is not None:
        row = np.zeros(ncol)
        row[:n_x] = problem.costs
        lc = problem.parcels["land_cost_cny"].to_numpy(float)
        if land_cost_cols is not None:
            p_idx, cols = land_cost_cols
            row[cols] = lc[p_idx]
            # x_k ≤ z_parcel for candidates on parcels with a land cost
            zcol = pd.Series(cols, index=p_idx)
            sel = np.flatnonzero(np.isin(parcel, p_idx))
            m = csr_array((np.r_[np.ones(len(sel)), -np.ones(len(sel))],
                           (np.r_[np.arange(len(sel)), np.arange(len(sel))],
                            np.r_[sel, zcol.loc[parcel[sel]].to_numpy()])), shape=(len(sel), ncol))
            blocks.append((m, np.full(len(sel), -np.inf), np.zeros(len(sel))))
        blocks.append((csr_array(row[None, :]), np.array([-np.inf]), np.array([float(budget)])))
    return blocks


def _mclp_model(problem, limits, budget, integral=True):
    a, w, folded, stats = _reduce(problem.coverage, problem.weights)
    n_x, n_y = problem.coverage.shape[1], a.shape[0]
    lc = problem.parcels["land_cost_cny"].to_numpy(float)
    used = np.unique(problem.candidates["parcel"].to_numpy())
    zp = used[lc[used] > 0] if budget is not None else np.array([], dtype=np.int64)
    n_z = len(zp)
    ncol = n_x + n_z + n_y
    c = np.concatenate([-folded, np.zeros(n_z), -w])
    integ = np.concatenate([np.full(n_x, 1 if integral else 0), np.zeros(n_z + n_y)])
    # y_g − Σ_{k ∈ S_g} x_k ≤ 0
    cover = hstack([-a.astype(float), csr_array((n_y, n_z)), diags_array(np.ones(n_y)).tocsr()], format="csr") \
        if n_y else csr_array((0, ncol))
    blocks = [(cover, np.full(n_y, -np.inf), np.zeros(n_y))]
    blocks += _side_constraints(problem, ncol, limits, budget, (zp, n_x + np.arange(n_z)) if n_z else None)
    stats.update({"candidates": n_x, "model_columns": ncol})
    return c, integ, np.zeros(ncol), np.ones(ncol), blocks, stats


def _rows_of(at: csr_array, k: int) -> np.ndarray:
    """Demand rows served by candidate ``k`` (``at`` = the coverage matrix transposed, CSR)."""
    return at.indices[at.indptr[k]:at.indptr[k + 1]]


def _prune(problem: SitingProblem, x: np.ndarray) -> np.ndarray:
    """Drop selected candidates whose removal uncovers nothing (the objective is unchanged)."""
    x = x.copy()
    at = problem.coverage.T.tocsr()
    count = problem.coverage.astype(np.int64) @ x.astype(np.int64)
    for k in np.flatnonzero(x)[::-1]:  # one pass over the (few) selected candidates
        rows = _rows_of(at, k)
        if not np.any(count[rows] == 1):
            x[k] = False
            count[rows] -= 1
    return x


class _Capacity:
    """Remaining counts per type, budget and parcel land / floor for the greedy heuristics."""

    def __init__(self, problem: SitingProblem, limits: Mapping[str, int] | None, budget: float | None):
        cand = problem.candidates
        self.parcel = cand["parcel"].to_numpy()
        self.land = problem.parcels["land_capacity_m2"].to_numpy(float).copy()
        self.floor = problem.parcels["floor_capacity_m2"].to_numpy(float).copy()
        self.fl = cand["footprint_land_m2"].to_numpy(float)
        self.ff = cand["use_floor_m2"].to_numpy(float)
        self.tcode, tnames = pd.factorize(cand["facility_type"])
        self.left = np.array([float(limits.get(t, np.inf)) if limits is not None else np.inf for t in tnames])
        self.money = float(budget) if budget is not None else np.inf
        self.lc = problem.parcels["land_cost_cny"].to_numpy(float)
        self.opened = np.zeros(len(self.land), bool)
        self.cost = problem.costs

    def step_cost(self) -> np.ndarray:
        return self.cost + np.where(self.opened[self.parcel], 0.0, self.lc[self.parcel])

    def fits(self, step_cost: np.ndarray) -> np.ndarray:
        p = self.parcel
        return ((self.fl <= self.land[p] + 1e-9) & (self.ff <= self.floor[p] + 1e-9)
                & (step_cost <= self.money + 1e-9) & (self.left[self.tcode] >= 1))

    def take(self, k: int, step_cost: np.ndarray) -> None:
        self.money -= step_cost[k]
        self.land[self.parcel[k]] -= self.fl[k]
        self.floor[self.parcel[k]] -= self.ff[k]
        self.opened[self.parcel[k]] = True
        self.left[self.tcode[k]] -= 1


def _greedy(problem: SitingProblem, w: np.ndarray, limits=None, budget=None, ratio: bool = False) -> np.ndarray:
    """Largest marginal ``w`` first (per unit cost with ``ratio``) while counts, budget and footprints allow.

    One sparse product per pick (not per demand row); stops when no feasible candidate adds anything.
    """
    at = problem.coverage.T.tocsr().astype(float)
    w = np.asarray(w, float).copy()
    x = np.zeros(at.shape[0], bool)
    cap = _Capacity(problem, limits, budget)
    while True:
        gain = at @ w
        step = cap.step_cost()
        ok = ~x & (gain > 0) & cap.fits(step)
        if not ok.any():
            return x
        score = gain / np.maximum(step, 1e-9) if ratio else gain
        k = int(np.flatnonzero(ok)[np.argmax(score[ok])])
        x[k] = True
        cap.take(k, step)
        w[_rows_of(at, k)] = 0.0


def _greedy_mclp(problem: SitingProblem, limits, budget) -> np.ndarray:
    """Greedy MCLP: largest weight gain first (gain per CNY under a budget)."""
    return _greedy(problem, problem.weights, limits, budget, ratio=budget is not None)


def _greedy_lscp(problem: SitingProblem, need: np.ndarray) -> np.ndarray:
    """Greedy set cover: most still-uncovered demand rows first, until every row in ``need`` is covered."""
    return _greedy(problem, need.astype(float))


def _result(problem, x, method, status, solver, bound, t0, stats, message) -> Solution:
    covered = _covered(problem, x)
    weight = float(problem.weights[covered].sum())
    obj = weight if method == "mclp" else float(x.sum())
    if np.isfinite(bound) and bound != 0:
        gap = abs(bound - obj) / abs(bound)
    else:
        gap = 0.0 if bound == obj else np.nan
    if gap < 1e-9:
        gap = 0.0
    return Solution(selected=x, covered=covered, covered_weight=weight, objective=obj, bound=float(bound),
                    gap=float(gap), status=status, method=method, solver=solver, cost_cny=_cost(problem, x),
                    seconds=time.perf_counter() - t0, stats=stats, message=message)


def solve(
    problem: SitingProblem,
    p: int | Mapping[str, int] | None = None,
    budget: float | None = None,
    method: str = "mclp",
    *,
    time_limit: float | None = None,
    mip_rel_gap: float | None = None,
    solver: str = "auto",
    rules: Mapping[str, Any] | None = None,
) -> Solution:
    """Choose candidates: maximal covering (MCLP) or set covering (LSCP), exact with HiGHS or greedy.

    MCLP: maximise Σ wᵢ yᵢ subject to yᵢ ≤ Σₖ aᵢₖ xₖ (a demand row counts once one selected candidate of
    its type reaches it), Σ_{k of type t} xₖ ≤ p_t, Σ costₖ xₖ + Σ land_cost_q z_q ≤ budget (xₖ ≤ z_q for
    candidates on parcel q with a land cost), and per parcel Σ footprintₖ xₖ ≤ capacity (open land and
    existing floor separately). x binary, y ∈ [0, 1] (integral at the optimum because x is). Before solving,
    rows no candidate reaches are dropped, rows with the same candidate set are merged (weights summed) and
    rows with a single candidate are folded into that candidate's objective coefficient.

    LSCP: the fewest facilities covering every demand row that can be covered (with the footprint limits:
    if not every coverable row can be covered at once, first the MCLP optimum without count limits, then
    the fewest facilities achieving it).

    Parameters
    ----------
    problem : from :func:`coverage_matrix` or :meth:`SitingProblem.from_matrix`.
    p : facilities per type (an int for every type, or type → count); MCLP only.
    budget : total cost limit in CNY; MCLP only. MCLP needs ``p`` or ``budget``.
    method : ``"mclp"`` or ``"lscp"``.
    time_limit : HiGHS time limit in seconds (default ``[solve] time_limit_s``); on reaching it the better of
        the incumbent and the greedy solution is returned with the gap to the dual bound.
    mip_rel_gap : relative gap at which HiGHS stops (default ``[solve] mip_rel_gap`` = 0).
    solver : ``"auto"`` (HiGHS unless the model has more than ``[solve] max_exact_columns`` columns),
        ``"highs"`` or ``"greedy"`` (gap against the LP-relaxation bound).
    rules : overrides of ``data/siting.toml``.

    Returns
    -------
    Solution

    Examples
    --------
    Greedy takes the big candidate first and ends at 5.5; the optimum pairs the two others (7.0):

    >>> a = [[1, 1, 0], [1, 1, 0], [1, 0, 1], [1, 0, 1], [0, 1, 0], [0, 0, 1]]
    >>> prob = SitingProblem.from_matrix(a, [1, 1, 1, 1, 1.5, 1.5])
    >>> solve(prob, p=2, solver="greedy").objective, solve(prob, p=2).objective
    (5.5, 7.0)
    """
    t0 = time.perf_counter()
    cfg = load_settings(rules)["solve"]
    time_limit = float(cfg["time_limit_s"] if time_limit is None else time_limit)
    gap = float(cfg["mip_rel_gap"] if mip_rel_gap is None else mip_rel_gap)
    if method not in ("mclp", "lscp"):
        raise ValueError(f"method must be 'mclp' or 'lscp', got {method!r}")
    if solver not in ("auto", "highs", "greedy"):
        raise ValueError(f"solver must be 'auto', 'highs' or 'greedy', got {solver!r}")
    n_x = problem.coverage.shape[1]
    if method == "mclp" and p is None and budget is None:
        raise ValueError("MCLP needs p (facilities per type) or budget (CNY); use method='lscp' to cover all")
    if method == "lscp" and (p is not None or budget is not None):
        raise ValueError("LSCP minimises the number of facilities: give neither p nor budget")
    coverable = problem.demand["coverable"].to_numpy(bool) & (problem.weights > 0)
    if n_x == 0 or not coverable.any():
        return _result(problem, np.zeros(n_x, bool), method, "empty", "none", 0.0, t0, {}, "nothing to site")
    limits = _limits(problem, p)
    if method == "lscp":
        return _solve_lscp(problem, coverable, time_limit, gap, solver, int(cfg["max_exact_columns"]),
                           float(cfg["lp_bound_time_limit_s"]), t0)
    c, integ, lb, ub, blocks, stats = _mclp_model(problem, limits, budget)
    use_greedy = solver == "greedy" or (solver == "auto" and len(c) > int(cfg["max_exact_columns"]))
    if use_greedy:
        x = _prune(problem, _greedy_mclp(problem, limits, budget))
        lp = _highs(c, np.zeros(len(c)), lb, ub, blocks, float(cfg["lp_bound_time_limit_s"]), 0.0)
        bound = -lp.fun if lp.status == 0 else float(problem.weights[coverable].sum())
        return _result(problem, x, "mclp", "greedy", "greedy", bound, t0, stats,
                       "greedy; bound from the LP relaxation" if lp.status == 0 else "greedy; trivial bound")
    res = _highs(c, integ, lb, ub, blocks, time_limit, gap)
    if res.x is None:
        x = _prune(problem, _greedy_mclp(problem, limits, budget))
        bound = -res.mip_dual_bound if getattr(res, "mip_dual_bound", None) is not None else np.inf
        return _result(problem, x, "mclp", "greedy", "greedy", bound, t0, stats,
                       f"HiGHS found no solution ({res.message}); greedy used")
    x = _prune(problem, res.x[:n_x] > 0.5)
    bound = -float(res.mip_dual_bound) if res.mip_dual_bound is not None else -float(res.fun)
    if res.status == 0:
        return _result(problem, x, "mclp", "optimal", "highs", bound, t0, stats, res.message)
    xg = _prune(problem, _greedy_mclp(problem, limits, budget))
    if problem.weights[_covered(problem, xg)].sum() > problem.weights[_covered(problem, x)].sum():
        x = xg
    return _result(problem, x, "mclp", "time_limit", "highs", bound, t0, stats, res.message)


def _solve_lscp(problem, coverable, time_limit, gap, solver, max_cols, lp_limit, t0) -> Solution:
    cand = problem.candidates
    n_x = len(cand)
    parcel = cand["parcel"].to_numpy()
    fits_all = all(
        (np.bincount(parcel, weights=cand[col].to_numpy(float), minlength=len(problem.parcels))
         <= problem.parcels[cap].to_numpy(float) + 1e-9).all()
        for col, cap in (("footprint_land_m2", "land_capacity_m2"), ("use_floor_m2", "floor_capacity_m2")))
    need = coverable.copy()
    target = None
    if not fits_all:  # not every coverable row can be covered at once: first the best coverage
        best = solve(problem, p=None, budget=np.inf, method="mclp", time_limit=time_limit, solver=solver)
        target = best.covered_weight
        need = best.covered
    use_greedy = solver == "greedy" or (solver == "auto" and n_x + int(need.sum()) > max_cols)
    a = csr_array(problem.coverage[need]).astype(float)
    w = problem.weights[need]
    if target is None:
        a_red, _, _, stats = _reduce(a, np.ones(a.shape[0]))
        # rows reduced to their distinct candidate sets; single-candidate rows force that candidate
        single = np.diff(a.indptr) == 1
        forced = np.zeros(n_x, bool)
        forced[a.indices[a.indptr[:-1][single]]] = True
        ncol = n_x
        c = np.ones(ncol)
        lb = forced.astype(float)
        blocks = [(a_red, np.ones(a_red.shape[0]), np.full(a_red.shape[0], np.inf))]
    else:
        stats = {"demand_rows": int(need.sum())}
        ncol = n_x + a.shape[0]
        c = np.r_[np.ones(n_x), np.zeros(a.shape[0])]
        lb = np.zeros(ncol)
        cover = hstack([-a, diags_array(np.ones(a.shape[0])).tocsr()], format="csr")
        wrow = csr_array(np.r_[np.zeros(n_x), w][None, :])
        blocks = [(cover, np.full(a.shape[0], -np.inf), np.zeros(a.shape[0])),
                  (wrow, np.array([target - 1e-6 * max(target, 1.0)]), np.array([np.inf]))]
    blocks += _side_constraints(problem, ncol, None, None, None)
    integ = np.r_[np.ones(n_x), np.zeros(ncol - n_x)]
    ub = np.ones(ncol)
    stats.update({"candidates": n_x, "model_columns": ncol})
    if use_greedy:
        x = _prune(problem, _greedy_lscp(problem, need))
        lp = _highs(c, np.zeros(ncol), lb, ub, blocks, lp_limit, 0.0)
        bound = float(np.ceil(lp.fun - 1e-9)) if lp.status == 0 else 1.0
        return _result(problem, x, "lscp", "greedy", "greedy", bound, t0, stats,
                       "greedy; bound from the LP relaxation")
    res = _highs(c, integ, lb, ub, blocks, time_limit, gap)
    if res.x is None:
        x = _prune(problem, _greedy_lscp(problem, need))
        return _result(problem, x, "lscp", "greedy", "greedy", 1.0, t0, stats,
                       f"HiGHS found no solution ({res.message}); greedy used")
    x = _prune(problem, res.x[:n_x] > 0.5)
    bound = float(np.ceil(res.mip_dual_bound - 1e-9)) if res.mip_dual_bound is not None else float(res.fun)
    status = "optimal" if res.status == 0 else "time_limit"
    return _result(problem, x, "lscp", status, "highs", bound, t0, stats, res.message)


def enforce_minimum(problem: SitingProblem, solution: Solution, minimum: np.ndarray) -> tuple[Solution, int]:
    """Drop selected facilities whose own new coverage falls below ``minimum`` households.

    A facility's own new coverage is the households of the demand rows no other selected facility covers.
    The weakest such facility is dropped first, then the others are re-checked (dropping one can only raise
    the others' own coverage).

    Returns
    -------
    (the checked solution — unchanged when every facility passes — and the number of facilities dropped).
    """
    x = solution.selected.copy()
    hh = problem.demand["households"].to_numpy(float)
    a = problem.coverage.astype(np.int64)
    at = problem.coverage.T.tocsr()
    dropped = 0
    while x.any():
        count = a @ x.astype(np.int64)
        sel = np.flatnonzero(x)
        own = np.array([hh[rows][count[rows] == 1].sum() for rows in (_rows_of(at, k) for k in sel)])
        short = own < minimum[sel] - 1e-9
        if not short.any():
            break
        k = sel[np.flatnonzero(short)[np.argmin((own - minimum[sel])[short])]]
        x[k] = False
        dropped += 1
    if not dropped:
        return solution, 0
    t0 = time.perf_counter() - solution.seconds
    msg = f"{solution.message}; {dropped} facilities below the minimum benefit dropped after solving"
    return _result(problem, x, solution.method, solution.status, solution.solver, solution.bound, t0,
                   solution.stats, msg), dropped
