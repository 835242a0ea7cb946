"""Siting benchmark: our MCLP (HiGHS via scipy.optimize.milp) vs spopt's MCLP (pulp + CBC) on the same matrix.

Run ``python benchmarks/siting.py`` (instances from 200 demand × 20 candidates to 20,000 × 1,000) or
``--quick`` (the three smallest). Both solvers get the same coverage matrix: demand points and candidate
sites uniform in a square, a candidate covers a demand point within a radius set so that each demand point has
about ``--reach`` candidates in reach; weights are households 50–1,500; p = 5 % of the candidates. Times
("total") include building the model from the cost matrix (spopt: ``MCLP.from_cost_matrix``; ours:
``SitingProblem.from_matrix(cost <= radius)``) and solving to proven optimality (relative gap 0); "solve" is the solver call alone. Each side first solves a
2 × 2 instance (imports and solver start-up not timed). spopt runs
in a forked child process and is stopped at ``--timeout`` seconds.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time

import numpy as np
import scipy
from scipy.spatial.distance import cdist

from gis_planner.siting import SitingProblem, solve

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _isolated import isolated  # noqa: E402

SIZES = [(200, 20), (1_000, 50), (2_000, 100), (5_000, 250), (10_000, 500), (20_000, 1_000)]


def instance(n_demand: int, n_cand: int, reach: float, seed: int = 7):
    """(cost matrix n_demand × n_cand in metres, weights, radius in metres, p)."""
    rng = np.random.default_rng(seed + n_demand)
    side = 10_000.0
    d = rng.uniform(0, side, (n_demand, 2))
    c = rng.uniform(0, side, (n_cand, 2))
    radius = side * np.sqrt(reach / (np.pi * n_cand))
    cost = cdist(d, c)
    weights = rng.integers(50, 1_500, n_demand).astype(float)
    p = max(2, n_cand // 20)
    return cost, weights, radius, p


def _warm_ours() -> None:
    solve(SitingProblem.from_matrix([[1, 0], [0, 1]], [1.0, 2.0]), p=1)


def _warm_spopt() -> None:
    import pulp
    from spopt.locate import MCLP

    MCLP.from_cost_matrix(np.array([[1.0, 5.0], [5.0, 1.0]]), np.array([1.0, 2.0]), service_radius=2.0,
                          p_facilities=1).solve(pulp.PULP_CBC_CMD(msg=False))


def run_ours(cost, weights, radius, p):
    _warm_ours()  # first-call imports inside scipy / pandas, not part of the comparison
    t0 = time.perf_counter()
    problem = SitingProblem.from_matrix(cost <= radius, weights)
    t1 = time.perf_counter()
    sol = solve(problem, p=p, time_limit=3600.0, mip_rel_gap=0.0, solver="highs")
    t2 = time.perf_counter()
    return {"objective": sol.objective, "status": sol.status, "build_s": t1 - t0, "solve_s": t2 - t1,
            "total_s": t2 - t0, "n_selected": sol.n_selected, "rows": sol.stats.get("model_rows", 0),
            "single": sol.stats.get("single_candidate_rows", 0)}


def run_spopt(cost, weights, radius, p):
    import pulp
    from spopt.locate import MCLP

    _warm_spopt()
    t0 = time.perf_counter()
    model = MCLP.from_cost_matrix(cost, weights, service_radius=radius, p_facilities=p)
    t1 = time.perf_counter()
    model = model.solve(pulp.PULP_CBC_CMD(msg=False, gapRel=0.0))
    t2 = time.perf_counter()
    chosen = np.array([v.value() > 0.5 for v in model.fac_vars])
    covered = (cost[:, chosen] <= radius).any(axis=1)
    return {"objective": float(weights[covered].sum()), "pulp_objective": float(pulp.value(model.problem.objective)),
            "status": pulp.LpStatus[model.problem.status], "build_s": t1 - t0, "solve_s": t2 - t1,
            "total_s": t2 - t0, "n_selected": int(chosen.sum())}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="only the three smallest instances")
    ap.add_argument("--reach", type=float, default=4.0, help="mean candidates within reach of a demand point")
    ap.add_argument("--timeout", type=float, default=600.0, help="seconds before a spopt run is stopped")
    args = ap.parse_args()
    sizes = SIZES[:3] if args.quick else SIZES
    import pulp
    import spopt

    print(f"python {platform.python_version()}, scipy {scipy.__version__} (HiGHS), spopt {spopt.__version__}, "
          f"pulp {pulp.__version__} (CBC), {os.cpu_count()} CPUs; p = 5 % of candidates, "
          f"≈{args.reach:g} candidates per demand point")
    head = (f"{'demand × cand':>15} {'p':>4} {'ours obj':>12} {'spopt obj':>12} {'same':>5} "
            f"{'ours s':>8} {'spopt s':>8} {'ratio':>7} {'solve ratio':>11}   ours build/solve   spopt build/solve")
    print(head)
    print("-" * len(head))
    for n_d, n_c in sizes:
        cost, weights, radius, p = instance(n_d, n_c, args.reach)
        ours = isolated(run_ours, (cost, weights, radius, p), 3600.0)
        theirs = isolated(run_spopt, (cost, weights, radius, p), args.timeout)
        label = f"{n_d:,} × {n_c:,}"
        if ours is None or "error" in ours:
            print(f"{label:>15} ours failed: {ours}")
            continue
        if theirs is None or "error" in theirs:
            why = "timed out" if theirs is None else theirs["error"]
            print(f"{label:>15} {p:>4} {ours['objective']:>12,.0f} {'—':>12} {'—':>5} {ours['total_s']:>8.2f} "
                  f"{'>' + format(args.timeout, '.0f'):>8} {'>' + format(args.timeout / ours['total_s'], '.1f'):>7}"
                  f" {'—':>11}   {ours['build_s']:.2f}/{ours['solve_s']:.2f}   spopt {why}")
            continue
        same = abs(ours["objective"] - theirs["objective"]) < 1e-6 * max(1.0, theirs["objective"])
        ratio = theirs["total_s"] / ours["total_s"]
        sratio = theirs["solve_s"] / ours["solve_s"]
        print(f"{label:>15} {p:>4} {ours['objective']:>12,.0f} {theirs['objective']:>12,.0f} "
              f"{'yes' if same else 'NO':>5} {ours['total_s']:>8.3f} {theirs['total_s']:>8.3f} {ratio:>6.1f}×"
              f" {sratio:>10.1f}×   {ours['build_s']:.3f}/{ours['solve_s']:.3f}     {theirs['build_s']:.3f}/{theirs['solve_s']:.3f}"
              f"   ({ours['status']}; spopt {theirs['status']})")


if __name__ == "__main__":
    main()
