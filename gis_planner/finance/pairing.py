"""Cross-area pairing (跨片区组合): the bundle × project arcs and the exact pairing solvers (HiGHS LPs).

Build the problem with :func:`pairing_arcs`, inspect it, then solve it with :func:`solve_pairing`: a
transportation LP by column generation (split pairing) or a lexicographic bipartite matching (one partner each).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
from scipy import sparse
from scipy.optimize import Bounds, LinearConstraint, linprog, milp

from gis_planner import bundling
from gis_planner.finance.inputs import split_ids
from gis_planner.finance.settings import default_options

__all__ = ["PAIRING_COLUMNS", "TOLERANCE_CNY", "pairing_arcs", "pairing_lines", "solve_pairing"]

#: leading columns of ``pairings.csv`` (DESIGN.md contract); more follow.
PAIRING_COLUMNS = ["bundle_id", "project_id", "amount_cny", "distance_m"]
#: amounts up to this many CNY count as zero (rounding residues of the flow; a deficit that small is funded).
TOLERANCE_CNY = 0.5
#: column generation of the split pairing (see :func:`_lp_colgen`): arcs to start from per bundle, per project
#: and per bundle to fund in full (nearest first); arcs that may enter per round, × (bundles + projects); rounds
#: in which unused arcs may leave. Tuning of the solver, not of the result (the optimum is exact).
COLGEN_NEAR_BUNDLE, COLGEN_NEAR_PROJECT, COLGEN_NEAR_WHOLE = 1, 16, 32
COLGEN_ENTER, COLGEN_SIFT_ROUNDS = 2, 200
#: reduced costs (normalised objectives) within this of 0 count as 0 in the lexicographic matching.
MATCHING_TOLERANCE = 1e-9


def _codes(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(sorted distinct values, each value's position among them) — codes follow the sort order of the ids."""
    codes, uniq = pd.factorize(np.asarray(values, dtype=object), sort=True)
    return np.asarray(uniq, dtype=object), codes.astype(np.int64)


def _sorted_codes(codes: np.ndarray, uniq: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Recode ``codes`` (positions in ``uniq``) to positions among the ids they use, in sorted id order."""
    used = np.unique(codes)
    names = np.asarray(uniq, dtype=object)[used]
    order = np.argsort(names, kind="stable")
    rank = np.zeros(len(uniq), dtype=np.int64)
    rank[used[order]] = np.arange(len(used))
    return names[order], rank[codes]


def _positive(amounts: Mapping[str, float] | pd.Series) -> dict[str, float]:
    """id → amount (CNY) for the amounts above the tolerance (NaN and ≤ 0.5 CNY dropped)."""
    items = zip(amounts.index, amounts.to_numpy(), strict=True) if isinstance(amounts, pd.Series) \
        else dict(amounts).items()
    return {str(k): float(v) for k, v in items if v > TOLERANCE_CNY}


def pairing_arcs(
    bundles: gpd.GeoDataFrame,
    projects: gpd.GeoDataFrame,
    *,
    max_distance_m: float | None = None,
    same_unit: str | None = None,
    bundle_units: pd.Series | None = None,
    project_units: pd.Series | None = None,
    gap_m: float | None = None,
) -> pd.DataFrame:
    """Every bundle × project pair with its straight-line distance and whether cross-area pairing may use it.

    Build the problem here, inspect it, then solve it with :func:`solve_pairing`. Distances are straight lines
    between the geometries (edge to edge, metres); the walking network is not needed for money flows.

    Parameters
    ----------
    bundles : ``bundle_id``, ``project_ids`` (``;``-joined projects attached within the bundling gap) and
        geometry, in a metric CRS.
    projects : ``project_id`` and geometry, same CRS.
    max_distance_m : largest distance for a cross-area partner, metres; 0 = no limit; None = ``max_distance_m``
        of ``[options]`` in ``data/finance.toml``.
    same_unit : ``"none"`` or the unit (``district``/``subdistrict``/``community``) both must share; None =
        ``same_unit`` of ``[options]`` in ``data/finance.toml``.
    bundle_units, project_units : the unit value per ``bundle_id`` / ``project_id`` when ``same_unit`` is set.
    gap_m : the adjacency gap the bundles were made with, metres: a project within it of a bundle (distance
        ≤ ``gap_m``) is an adjacent partner (大片区统筹, even when bundling attached it to a nearer bundle) and
        never a cross-area partner; None = ``gap_m`` of ``bundling.load_settings()``.

    Returns
    -------
    DataFrame ``bundle_id, project_id, distance_m, attached, same_unit, allowed, excluded_reason`` (one row per
    pair, sorted). ``attached`` pairs and pairs within ``gap_m`` are 大片区统筹 partners and never cross-area
    partners (``excluded_reason`` says which, in Chinese and English).
    """
    cols = ["bundle_id", "project_id", "distance_m", "attached", "same_unit", "allowed", "excluded_reason"]
    if max_distance_m is None:
        max_distance_m = default_options().max_distance_m
    if same_unit is None:
        same_unit = default_options().same_unit
    if gap_m is None:
        gap_m = float(bundling.load_settings()["gap_m"])
    if projects is None or not len(projects) or not len(bundles):
        return pd.DataFrame({"bundle_id": pd.Series(dtype=object), "project_id": pd.Series(dtype=object),
                             "distance_m": pd.Series(dtype=float), "attached": pd.Series(dtype=bool),
                             "same_unit": pd.Series(dtype=bool), "allowed": pd.Series(dtype=bool),
                             "excluded_reason": pd.Series(dtype=object)}, columns=cols)
    bg = np.asarray(bundles.geometry.values)
    pg = np.asarray(projects.geometry.values)
    dist = shapely.distance(bg[:, None], pg[None, :])
    bids = bundles["bundle_id"].astype(str).to_numpy()
    pids = projects["project_id"].astype(str).to_numpy()
    nb, npj = len(bids), len(pids)
    # the rows in (bundle_id, project_id) order; a stable sort keeps repeated ids in input order
    _, b_code = _codes(bids)
    p_uniq, p_code = _codes(pids)
    order = np.lexsort((np.tile(p_code, nb), np.repeat(b_code, npj)))
    b_idx, p_idx = np.divmod(order, npj)
    # attached pairs: each bundle's project_ids exploded, looked up by project id (every project of that id)
    ids = bundles["project_ids"].to_numpy(object) if "project_ids" in bundles.columns else [None] * nb
    lists = [split_ids(v) for v in ids]
    att_b = np.repeat(np.arange(nb), [len(v) for v in lists])
    att_p = np.array([q for v in lists for q in v], dtype=object)
    pos = np.minimum(np.searchsorted(p_uniq, att_p), len(p_uniq) - 1) if len(att_p) else np.zeros(0, int)
    known = p_uniq[pos] == att_p if len(att_p) else np.zeros(0, bool)
    table = np.zeros((nb, len(p_uniq)), dtype=bool)
    table[att_b[known], pos[known]] = True
    out = pd.DataFrame({"bundle_id": bids[b_idx], "project_id": pids[p_idx], "distance_m": dist[b_idx, p_idx]})
    out["attached"] = table[b_idx, p_code[p_idx]]
    if same_unit != "none" and bundle_units is not None and project_units is not None:
        bu = pd.Series(pd.Series(bids).map(bundle_units).to_numpy(object)[b_idx])
        pu = pd.Series(pd.Series(pids).map(project_units).to_numpy(object)[p_idx])
        out["same_unit"] = ((bu == pu) & bu.notna()).to_numpy(bool)
    else:
        out["same_unit"] = True
    too_far = (out["distance_m"] > max_distance_m) if max_distance_m else np.zeros(len(out), dtype=bool)
    adjacent = out["distance_m"].to_numpy() <= gap_m
    reason = np.select([out["attached"], adjacent, ~out["same_unit"], too_far],
                       ["attached (大片区统筹)",
                        f"相邻项目：距片区{gap_m:g}m以内，属大片区统筹，不作跨片区组合 (within the {gap_m:g} m "
                        "adjacency gap: an adjacent partner, not cross-area)",
                        f"different {same_unit}", f"farther than {max_distance_m:g} m"],
                       default="")
    out["allowed"] = reason == ""
    out["excluded_reason"] = reason
    return out[cols]


def solve_pairing(
    deficit: Mapping[str, float] | pd.Series,
    surplus: Mapping[str, float] | pd.Series,
    arcs: pd.DataFrame,
    *,
    one_to_one: bool = False,
    unit_cny: int | None = None,
    whole_first: bool = False,
) -> pd.DataFrame:
    """Match deficit bundles with surplus projects over the allowed arcs.

    Lexicographic objective: first maximise the amount funded (= minimise the total unfunded deficit), then
    — only with ``whole_first`` — maximise the number of bundles funded in full (a half-funded bundle still
    cannot start), then minimise the amount-weighted distance Σ distance_m × amount_cny (distances in whole
    metres).

    - ``one_to_one=False``: a transportation linear programme (project → bundle, amount ≤ the project's surplus
      and ≤ the bundle's deficit; cost = distance in whole metres) in whole ``unit_cny`` units — surpluses
      rounded down, deficits up, then each bundle's excess trimmed from its farthest pairs, so an amount never
      exceeds a surplus or a deficit. A project's surplus may be split over several bundles. Solved exactly by
      HiGHS dual simplex (scipy ``linprog``, sparse matrices) with column generation: the nearest arcs first,
      then every arc of negative reduced cost until none is left; the solution is a vertex, hence whole units.
      The lexicographic order is one objective: each unit earns a reward ``M`` larger than any distance an
      augmenting path could save (and, with ``whole_first``, another ``M`` in the bundles chosen for full
      funding), so no saving in distance can buy a smaller amount.
    - ``one_to_one=True``: each project funds at most one bundle and each bundle has at most one partner, with
      amount min(surplus, deficit); a weighted bipartite matching, solved as LPs (HiGHS dual simplex, sparse; the
      matching polytope has integral vertices) one objective after the other — maximise the amount, then (with
      ``whole_first``) the pairs that fund a bundle in full, then minimise Σ distance × amount — each on the
      exact optimal face of the previous one (:func:`_lex_matching`).

    Parameters
    ----------
    deficit : bundle_id → deficit to fund, CNY (values ≤ 0 ignored).
    surplus : project_id → surplus available, CNY (values ≤ 0 ignored).
    arcs : ``bundle_id, project_id, distance_m`` (metres) of the allowed pairs (an ``allowed`` column, if
        present, is honoured).
    one_to_one : see above.
    unit_cny : flow unit, CNY (1 = exact to the yuan); None = ``flow_unit_cny`` of ``[options]`` in
        ``data/finance.toml``.
    whole_first : prefer fully funded bundles among the maximum-amount solutions. Split pairing: a MILP picks the
        most bundles that can be funded in full together (its LP relaxation alone when that already proves the
        optimum), then the flow fills them first and minimises the distance; when several sets of bundles are
        equally many, the MILP's choice stands (the distance is minimised for that set, not over all of them).

    Returns
    -------
    DataFrame ``bundle_id, project_id, amount_cny, distance_m`` (positive amounts in CNY, distances in metres,
    sorted by bundle and project). The same input gives the same output.

    Examples
    --------
    >>> arcs = pd.DataFrame({"bundle_id": ["A", "A", "B"], "project_id": ["P", "Q", "Q"],
    ...                      "distance_m": [100.0, 500.0, 300.0]})
    >>> solve_pairing({"A": 80, "B": 50}, {"P": 60, "Q": 70}, arcs).values.tolist()
    [['A', 'P', 60.0, 100.0], ['A', 'Q', 20.0, 500.0], ['B', 'Q', 50.0, 300.0]]
    """
    cols = PAIRING_COLUMNS
    empty = pd.DataFrame({c: pd.Series(dtype=object if c.endswith("id") else float) for c in cols})
    d, s = _positive(deficit), _positive(surplus)
    if not d or not s or not len(arcs):
        return empty
    # ids → codes once (hashing), then only the distinct ids are looked up and sorted
    b_code, b_uniq = pd.factorize(arcs["bundle_id"].astype(str).to_numpy(object))
    p_code, p_uniq = pd.factorize(arcs["project_id"].astype(str).to_numpy(object))
    keep = (np.fromiter((u in d for u in b_uniq), bool, len(b_uniq))[b_code]
            & np.fromiter((u in s for u in p_uniq), bool, len(p_uniq))[p_code])
    if "allowed" in arcs.columns:
        keep &= arcs["allowed"].astype(bool).to_numpy()
    if not keep.any():
        return empty
    bundles, bi = _sorted_codes(b_code[keep], b_uniq)
    projects, pj = _sorted_codes(p_code[keep], p_uniq)
    dist = arcs["distance_m"].to_numpy(dtype=float)[keep]
    # sorted by bundle, project (stable), one arc per pair: the first one
    order = np.lexsort((pj, bi))
    bi, pj, dist = bi[order], pj[order], dist[order]
    first = np.r_[True, (bi[1:] != bi[:-1]) | (pj[1:] != pj[:-1])]
    bi, pj, dist = bi[first], pj[first], dist[first]
    if one_to_one:
        out = _solve_one_to_one(d, s, bundles, bi, projects, pj, dist, whole_first)
    else:
        unit = default_options().flow_unit_cny if unit_cny is None else unit_cny
        out = _solve_flow(d, s, bundles, bi, projects, pj, dist, int(unit), whole_first)
    out = out[out["amount_cny"] > 0].sort_values(["bundle_id", "project_id"], kind="stable")
    return out.reset_index(drop=True)[cols]


def _k_smallest(group: np.ndarray, key: np.ndarray, k: int) -> np.ndarray:
    """True for the ``k`` elements of smallest finite ``key`` in each group (ties broken deterministically)."""
    n = len(group)
    chosen = np.zeros(n, dtype=bool)
    if not n:
        return chosen
    # group codes as uint16 when they fit: numpy then sorts by radix, in linear time
    o = np.argsort(group.astype(np.uint16) if group.max() < 2**16 else group, kind="stable")
    vals = key[o].astype(float)
    gs = group[o]
    starts = np.flatnonzero(np.r_[True, gs[1:] != gs[:-1]])
    ends = np.r_[starts[1:], n]
    if len(starts) * 8 * k < n:                               # few large groups: partition each
        for a, e in zip(starts, ends, strict=True):
            seg = vals[a:e]
            top = np.argpartition(seg, k - 1)[:k] if e - a > k else np.arange(e - a)
            chosen[o[a + top[np.isfinite(seg[top])]]] = True
        return chosen
    sizes = ends - starts
    pos = np.arange(n)
    for _ in range(k):                                        # many small groups: the minimum of each, k times
        low = np.minimum.reduceat(vals, starts)
        first = np.minimum.reduceat(np.where(vals == np.repeat(low, sizes), pos, n), starts)
        first = first[(first < n) & np.isfinite(low)]
        if not len(first):
            break
        chosen[o[first]] = True
        vals[first] = np.inf
    return chosen


def _cumsum_in_group(group: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Running sum of ``values`` within each run of equal ``group`` (the groups contiguous)."""
    total = np.cumsum(values)
    start = np.flatnonzero(np.r_[True, group[1:] != group[:-1]])
    return total - np.repeat(total[start] - values[start], np.diff(np.r_[start, len(group)]))


def _trim(group: np.ndarray, amount: np.ndarray, cap: np.ndarray, order: np.ndarray) -> np.ndarray:
    """Cut each group's amounts down to its ``cap``, from the elements that come first in ``order``.

    ``order`` is a permutation that sorts the elements by group, then by trimming priority.
    """
    out = amount.copy()
    excess = np.bincount(group, weights=amount, minlength=len(cap)) - cap
    if not (excess > 0).any():
        return out
    g, a = group[order], amount[order]
    before = np.cumsum(a) - a                                   # exclusive running sum …
    start = np.maximum.accumulate(np.where(np.r_[True, g[1:] != g[:-1]], np.arange(len(g)), 0))
    before = before - before[start]                             # … within the group
    cut = np.clip(excess[g] - before, 0, a)
    out[order] = a - cut
    return out


def _lp_colgen(cost: np.ndarray, bi: np.ndarray, pj: np.ndarray, cap_b: np.ndarray, cap_p: np.ndarray,
               near: np.ndarray, start: np.ndarray | None = None) -> np.ndarray:
    """Minimise cost·x, x ≥ 0, Σ_{a∈b} x_a ≤ cap_b[b], Σ_{a∈p} x_a ≤ cap_p[p], over the arcs (bi, pj).

    Whole-number costs and caps: the constraint matrix is totally unimodular, so every vertex is integral and so
    are its duals y and the reduced cost cost_a − y_b − y_p of every arc. HiGHS dual simplex (a vertex) on a small
    set of arcs (column generation): first each bundle's and each project's nearest arcs (``near``) and the arcs
    in ``start``; then each round every arc of reduced cost ≤ −1 enters (at most
    ``COLGEN_ENTER × (bundles + projects)``, the most negative first), while the arcs with a reduced cost > 0
    and no flow leave (the last vertex stays feasible) as long as the exact objective drops, else arcs only
    enter — so it cannot cycle. When no arc has a negative reduced cost the vertex is optimal over all arcs.

    Returns
    -------
    x over all arcs (whole numbers up to floating-point noise).
    """
    nb, npj = len(cap_b), len(cap_p)
    inside = _k_smallest(bi, near, COLGEN_NEAR_BUNDLE) | _k_smallest(pj, near, COLGEN_NEAR_PROJECT)
    if start is not None:
        inside |= start
    limit = max(1000, COLGEN_ENTER * (nb + npj))
    rhs = np.concatenate([cap_b, cap_p]).astype(float)
    whole_cost = np.rint(cost).astype(np.int64)
    best, rounds = None, 0
    while True:
        rounds += 1
        cols = np.flatnonzero(inside)
        m = len(cols)
        j = np.arange(m)
        A = sparse.csc_array((np.ones(2 * m), (np.concatenate([bi[cols], nb + pj[cols]]), np.concatenate([j, j]))),
                             shape=(nb + npj, m))
        # (HiGHS presolve takes longer than the solve on these small, already reduced LPs)
        res = linprog(cost[cols], A_ub=A, b_ub=rhs, bounds=(0, None), method="highs-ds",
                      options={"presolve": False})
        if res.status != 0:  # pragma: no cover - bounded and feasible (x = 0) by construction
            raise RuntimeError(f"pairing LP failed: {res.message}")
        y = res.ineqlin.marginals
        reduced = cost - y[bi] - y[nb + pj]
        enter = np.flatnonzero((reduced < -0.5) & ~inside)
        if not len(enter):
            break
        if len(enter) > limit:
            enter = enter[np.argpartition(reduced[enter], limit)[:limit]]
        used = res.x > 0.5
        # exact objective of the (integral) vertex, in Python integers: it exceeds 2**53 at city scale
        value = sum(int(c) * int(v) for c, v in zip(whole_cost[cols[used]], np.rint(res.x[used]), strict=True))
        if rounds <= COLGEN_SIFT_ROUNDS and (best is None or value < best):
            inside[cols[~used & (reduced[cols] > 0.5)]] = False
        best = value if best is None else min(best, value)
        inside[enter] = True
    x = np.zeros(len(cost))
    x[cols] = res.x
    return x


def _whole_bundles(bi: np.ndarray, pj: np.ndarray, cap_b: np.ndarray,
                   cap_p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Bundles to fund in full: the most bundles that can all be funded in full at once.

    Any such set can be extended to a maximum-amount flow without emptying it (an augmenting path never takes
    money out of a bundle), so it is also the most among the maximum-amount solutions. Bundles that reach the
    same projects form a class; within a class the smallest deficits are funded first (any split of the class's
    money between its bundles is possible). MILP over classes c, projects p and the class's bundles i (sorted by
    deficit D): maximise Σ z_i subject to Σ_p y_cp ≥ Σ_i D_i z_i, Σ_c y_cp ≤ surplus_p, z_i ≥ z_i+1, z binary
    (y scaled per class, rows per project). Its LP relaxation gives an upper bound and the bundles it funds in
    full; when they reach the bound (the usual case) they are optimal, else the MILP (scipy ``milp``/HiGHS,
    sparse matrices) decides.

    Parameters
    ----------
    bi, pj : bundle and project of each arc (sorted by bundle, then project).
    cap_b, cap_p : deficit per bundle and surplus per project, whole units.

    Returns
    -------
    (bool per bundle: fund in full, bool per arc: a flow that funds them uses the arc).
    """
    nb, npj = len(cap_b), len(cap_p)
    none = np.zeros(nb, dtype=bool), np.zeros(len(bi), dtype=bool)
    reach = np.bincount(bi, weights=cap_p[pj], minlength=nb)
    sel = (reach >= cap_b)[bi]                 # else the bundle can never be funded in full
    if not sel.any():
        return none
    b_sel, p_sel = bi[sel], pj[sel]
    starts = np.flatnonzero(np.r_[True, b_sel[1:] != b_sel[:-1]])
    ends = np.r_[starts[1:], len(b_sel)]
    members = b_sel[starts]
    classes: dict[bytes, int] = {}
    cls = np.array([classes.setdefault(p_sel[a:e].tobytes(), len(classes))
                    for a, e in zip(starts, ends, strict=True)])
    first = np.flatnonzero(np.r_[True, np.diff(np.maximum.accumulate(cls)) > 0])   # first bundle of each class
    nc = len(first)
    # class arcs (y) and the bundles by class, then deficit (z)
    y_c = np.repeat(np.arange(nc), ends[first] - starts[first])
    y_p = np.concatenate([p_sel[starts[f]:ends[f]] for f in first])
    order = np.lexsort((members, cap_b[members], cls))
    z_b, z_c = members[order], cls[order]
    dmax = np.zeros(nc)
    np.maximum.at(dmax, z_c, cap_b[z_b])
    ny, nz = len(y_c), len(z_b)
    jy, jz = np.arange(ny), ny + np.arange(nz)
    # money in ≥ deficits chosen (per class, in units of its largest deficit); money out ≤ surplus (per project)
    link = sparse.csr_array((np.r_[-np.ones(ny), cap_b[z_b] / dmax[z_c]], (np.r_[y_c, z_c], np.r_[jy, jz])),
                            shape=(nc, ny + nz))
    proj = sparse.csr_array((dmax[y_c] / cap_p[y_p], (y_p, jy)), shape=(npj, ny + nz))
    cost = np.r_[np.zeros(ny), -np.ones(nz)]
    A = sparse.vstack([link, proj]).tocsr()
    rhs = np.r_[np.zeros(nc), np.ones(npj)]
    upper = np.r_[np.full(ny, np.inf), np.ones(nz)]
    # (HiGHS presolve takes longer than the solve on these small, already reduced LPs)
    relax = linprog(cost, A_ub=A, b_ub=rhs, bounds=np.c_[np.zeros(ny + nz), upper], method="highs-ds",
                    options={"presolve": False})
    if relax.status != 0:  # pragma: no cover - bounded and feasible (0) by construction
        raise RuntimeError(f"pairing LP failed: {relax.message}")
    x = relax.x
    z = x[ny:] >= 1.0 - 1e-7
    # in whole units, each class's money must cover the deficits it funds in full (z = 1 − 1e-8 of a deficit
    # of 1e8 units is a unit short)
    money = np.bincount(y_c, weights=x[:ny] * dmax[y_c], minlength=nc)
    z &= _cumsum_in_group(z_c, np.where(z, cap_b[z_b], 0.0)) <= money[z_c] + 0.5
    if z.sum() < math.floor(-relax.fun + 1e-6):
        same = np.flatnonzero(z_c[1:] == z_c[:-1])             # z_i ≥ z_i+1 within a class
        k = np.arange(len(same))
        chain = sparse.csr_array((np.r_[np.ones(len(same)), -np.ones(len(same))],
                                  (np.r_[k, k], np.r_[jz[same], jz[same + 1]])), shape=(len(same), ny + nz))
        res = milp(cost, constraints=[LinearConstraint(A, -np.inf, rhs), LinearConstraint(chain, 0.0, np.inf)],
                   integrality=np.r_[np.zeros(ny), np.ones(nz)], bounds=Bounds(0.0, upper))
        if res.success and -res.fun > z.sum() + 0.5:
            x = res.x
            z = x[ny:] > 0.5
    whole = np.zeros(nb, dtype=bool)
    whole[z_b[z]] = True
    if not z.any():
        return none
    # a flow that funds them: per class, fill its chosen bundles from its projects in turn (north-west corner);
    # the classes laid end to end on one axis, each bundle and each project an interval of money on it
    wz, wc = z_b[z], z_c[z]                                   # by class, then deficit
    money = x[:ny] * dmax[y_c]
    has = money > 1e-9
    hc, hp, hv = y_c[has], y_p[has], money[has]              # by class
    span = np.bincount(wc, weights=cap_b[wz], minlength=nc) + np.bincount(hc, weights=hv, minlength=nc) + 1.0
    base = np.r_[0.0, np.cumsum(span)[:-1]]
    need_end = base[wc] + _cumsum_in_group(wc, cap_b[wz])
    have_end = base[hc] + _cumsum_in_group(hc, hv)
    cuts = np.unique(np.r_[need_end, have_end])
    cut_c = np.searchsorted(base, cuts, side="right") - 1
    low = np.maximum(np.r_[0.0, cuts[:-1]], base[cut_c])
    mid = (low + cuts) / 2
    i = np.minimum(np.searchsorted(need_end, mid, side="right"), len(wz) - 1)
    j = np.minimum(np.searchsorted(have_end, mid, side="right"), len(hv) - 1)
    ok = (need_end[i] > mid) & (have_end[j] > mid) & (wc[i] == cut_c) & (hc[j] == cut_c)
    use = np.zeros(len(bi), dtype=bool)
    use[np.searchsorted(bi * npj + pj, wz[i[ok]] * npj + hp[j[ok]])] = True
    return whole, use


def _solve_flow(d: dict[str, float], s: dict[str, float], bundles: np.ndarray, bi: np.ndarray,
                projects: np.ndarray, pj: np.ndarray, dist: np.ndarray, unit: int,
                whole_first: bool = False) -> pd.DataFrame:
    """Split pairing: max amount, then (``whole_first``) most bundles in full, then min Σ distance × amount."""
    deficit = np.array([d[b] for b in bundles])
    cap_b = np.ceil(deficit / unit - 1e-9)                  # whole units, CNY / unit_cny
    cap_p = np.floor(np.array([s[p] for p in projects]) / unit + 1e-9)
    use = cap_p[pj] > 0
    bi, pj, dist = bi[use], pj[use], dist[use]
    if not len(bi):
        return pd.DataFrame({c: pd.Series(dtype=object if c.endswith("id") else float) for c in PAIRING_COLUMNS})
    cost = np.rint(dist)                                      # whole metres (ties as before)
    # a simple augmenting path has at most min(bundles, projects) forward arcs: M above what it can save
    big = (cost.max() + 1.0) * min(len(np.unique(bi)), len(np.unique(pj))) + 1.0
    c = cost - big
    start = None
    if whole_first:
        whole, start = _whole_bundles(bi, pj, cap_b, cap_p)
        c = c - big * whole[bi]
        mine = np.flatnonzero(whole[bi])
        start[mine[_k_smallest(bi[mine], dist[mine], COLGEN_NEAR_WHOLE)]] = True
    x = _lp_colgen(c, bi, pj, cap_b, cap_p, dist, start)
    # a vertex is integral: rounding moves nothing, but make sure no cap is exceeded (farthest arcs first);
    # whole numbers below 2**53 are exact in float64
    pos = np.flatnonzero(x > 0.5)
    bi, pj, dist = bi[pos], pj[pos], dist[pos]
    units = np.rint(x[pos])
    units = _trim(pj, units, cap_p, np.lexsort((-dist, pj)))
    units = _trim(bi, units, cap_b, np.lexsort((pj, -dist, bi)))
    amount = units * unit
    # rounding deficits up may over-fund a bundle by < 1 unit: trim its farthest pairs
    amount = _trim(bi, amount, deficit, np.lexsort((pj, -dist, bi)))
    return pd.DataFrame({"bundle_id": bundles[bi], "project_id": projects[pj], "amount_cny": amount,
                         "distance_m": dist}, columns=PAIRING_COLUMNS)


def _solve_one_to_one(d: dict[str, float], s: dict[str, float], bundles: np.ndarray, bi: np.ndarray,
                      projects: np.ndarray, pj: np.ndarray, dist: np.ndarray,
                      whole_first: bool = False) -> pd.DataFrame:
    """One partner each: max Σ amount, then (``whole_first``) most bundles in full, then min Σ distance × amount."""
    dv = np.array([d[b] for b in bundles])[bi]
    sv = np.array([s[p] for p in projects])[pj]
    w = np.minimum(dv, sv)
    n = len(w)
    wn = w / w.max()
    _, rows_b = np.unique(bi, return_inverse=True)
    _, rows_p = np.unique(pj, return_inverse=True)
    j = np.arange(n)
    nb = int(rows_b.max()) + 1
    A = sparse.csr_array((np.ones(2 * n), (np.concatenate([rows_b, nb + rows_p]), np.concatenate([j, j]))),
                         shape=(nb + int(rows_p.max()) + 1, n))
    objectives = [-wn]
    if whole_first:
        objectives.append(-(sv >= dv - TOLERANCE_CNY).astype(float))
    objectives.append(dist / max(dist.max(), 1.0) * wn)
    chosen = _lex_matching(A, objectives) > 0.5
    return pd.DataFrame({"bundle_id": bundles[bi[chosen]], "project_id": projects[pj[chosen]],
                         "amount_cny": w[chosen], "distance_m": dist[chosen]}, columns=PAIRING_COLUMNS)


def _lex_matching(A: sparse.csr_array, objectives: list[np.ndarray]) -> np.ndarray:
    """Minimise ``objectives`` in turn over the matchings {x ∈ [0, 1], A x ≤ 1} (A: bundle and project rows).

    A bipartite incidence matrix is totally unimodular, so each LP has an integral optimal vertex (HiGHS dual
    simplex). After each objective the feasible set shrinks to its optimal face, exactly, by complementary
    slackness with the LP's duals: arcs of reduced cost > 0 are fixed at 0 (< 0: at 1), rows with a nonzero dual
    become equalities. A face of the matching polytope is again a TU system, so the next optimum is a vertex of
    the polytope too — the lexicographic optimum, with no MILP and no tolerance on the earlier objectives.
    """
    n = A.shape[1]
    lower, upper = np.zeros(n), np.ones(n)
    tight = np.zeros(A.shape[0], dtype=bool)
    x = np.zeros(n)
    for c in objectives:
        loose = ~tight
        rows = {"A_ub": A[loose], "b_ub": np.ones(int(loose.sum()))} if loose.any() else {}
        if tight.any():
            rows.update(A_eq=A[tight], b_eq=np.ones(int(tight.sum())))
        res = linprog(c, **rows, bounds=np.c_[lower, upper], method="highs-ds")
        if res.status != 0:  # pragma: no cover - x of the previous objective is feasible
            raise RuntimeError(f"pairing LP failed: {res.message}")
        x = res.x
        y = np.zeros(A.shape[0])
        if loose.any():
            y[loose] = res.ineqlin.marginals
        if tight.any():
            y[tight] = res.eqlin.marginals
        reduced = c - A.T @ y
        # fix only what the solution found agrees with: HiGHS accepts reduced costs within its own dual
        # tolerance (1e-7) as optimal, so a tiny wrong-signed reduced cost must not cut x off the next LP
        at_lower, at_upper = x <= lower + MATCHING_TOLERANCE, x >= upper - MATCHING_TOLERANCE
        fix_low = (reduced > MATCHING_TOLERANCE) & at_lower
        fix_up = (reduced < -MATCHING_TOLERANCE) & at_upper
        upper[fix_low] = lower[fix_low]
        lower[fix_up] = upper[fix_up]
        tight |= (y < -MATCHING_TOLERANCE) & (A @ x >= 1 - MATCHING_TOLERANCE)
    return np.rint(x)


def pairing_lines(pairings: pd.DataFrame, bundles: gpd.GeoDataFrame,
                  projects: gpd.GeoDataFrame | None) -> gpd.GeoDataFrame:
    """The pairings as LineStrings from each bundle's representative point to its project's (CRS of ``bundles``)."""
    crs = bundles.crs
    if not len(pairings) or projects is None:
        return gpd.GeoDataFrame(pairings.copy(), geometry=gpd.GeoSeries([], crs=crs), crs=crs)
    bundle_points = pd.Series(bundles.geometry.representative_point().values,
                              index=bundles["bundle_id"].astype(str))
    project_points = pd.Series(projects.geometry.representative_point().values,
                               index=projects["project_id"].astype(str))
    start = np.asarray(pairings["bundle_id"].map(bundle_points).values)
    end = np.asarray(pairings["project_id"].map(project_points).values)
    coords = np.stack([shapely.get_coordinates(start), shapely.get_coordinates(end)], axis=1)
    return gpd.GeoDataFrame(pairings.copy(), geometry=shapely.linestrings(coords), crs=crs)
