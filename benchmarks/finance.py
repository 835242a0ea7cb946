"""Cross-area pairing benchmark: our HiGHS LP (``finance.solve_pairing``) vs networkx ``max_flow_min_cost``.

Run ``python benchmarks/finance.py`` (2,000 deficit bundles × 400 surplus projects, as in a city of ~20,000
compounds) or ``python benchmarks/finance.py --quick`` (500 × 100). Bundles and projects are points placed
uniformly at random in a 27 km square; deficits are 0.1–20 million CNY per bundle and surpluses 1–50 million CNY
per project, whole yuan (together the projects can fund about half of the deficits). Two cases on the same
points:

- ``all arcs``: every bundle may pair with every project (``max_distance_m = 0``);
- ``≤ 3,000 m``: only pairs at most 3,000 m apart (``max_distance_m = 3000``).

Both solvers get the same arcs table and maximise the amount paired, then minimise Σ distance (whole metres) ×
amount (CNY), in whole yuan (``unit_cny = 1``). "ours" is the wall time of ``solve_pairing`` from the arcs table
to the result (the best of ``--repeat`` runs, after a warm-up call); "networkx" is building the ``DiGraph`` the
previous implementation built plus ``max_flow_min_cost``, in a forked child stopped after ``--timeout`` seconds.
When networkx does not finish, both also run on a smaller instance (``--fallback``, same generator) and both
sizes are printed. Each row checks that both reach the same optimum (same amount in CNY and same Σ distance ×
amount in m·CNY). The rows marked ``whole_first`` time ours with ``whole_first=True`` (the pipeline's default:
most bundles funded in full first), which networkx has no counterpart for.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time

import networkx as nx
import numpy as np
import pandas as pd
import scipy

from gis_planner import finance

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _isolated import isolated  # noqa: E402

SIDE_M = 27_000.0


def instance(n_bundles: int, n_projects: int, max_distance_m: float = 0.0, seed: int = 7):
    """(deficit by bundle, CNY; surplus by project, CNY; arcs table ``bundle_id, project_id, distance_m``)."""
    rng = np.random.default_rng(seed)
    bxy = rng.uniform(0, SIDE_M, (n_bundles, 2))
    pxy = rng.uniform(0, SIDE_M, (n_projects, 2))
    dist = np.hypot(bxy[:, None, 0] - pxy[None, :, 0], bxy[:, None, 1] - pxy[None, :, 1])
    deficit = np.round(rng.uniform(1e5, 2e7, n_bundles))
    surplus = np.round(rng.uniform(1e6, 5e7, n_projects))
    bids = np.array([f"B{i:05d}" for i in range(n_bundles)], dtype=object)
    pids = np.array([f"P{j:04d}" for j in range(n_projects)], dtype=object)
    bi, pj = np.nonzero(dist <= max_distance_m) if max_distance_m else np.divmod(
        np.arange(n_bundles * n_projects), n_projects)
    arcs = pd.DataFrame({"bundle_id": bids[bi], "project_id": pids[pj], "distance_m": dist[bi, pj]})
    return dict(zip(bids, deficit, strict=True)), dict(zip(pids, surplus, strict=True)), arcs


def run_ours(deficit, surplus, arcs, repeat: int, whole_first: bool = False) -> dict:
    small = arcs.head(1)
    finance.solve_pairing({small["bundle_id"].iat[0]: 1.0}, {small["project_id"].iat[0]: 1.0}, small)  # warm-up
    best, out = np.inf, None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = finance.solve_pairing(deficit, surplus, arcs, whole_first=whole_first)
        best = min(best, time.perf_counter() - t0)
    amount = out["amount_cny"].to_numpy()
    got = out.groupby("bundle_id")["amount_cny"].sum()
    return {"s": best, "amount": int(round(amount.sum())),
            "cost": int(round((amount * np.round(out["distance_m"].to_numpy())).sum())),
            "whole": int(sum(got.get(b, 0.0) >= v for b, v in deficit.items()))}


def run_networkx(deficit, surplus, arcs) -> dict:
    """The previous implementation: source → project (surplus) → bundle (distance, whole m) → sink (deficit)."""
    t0 = time.perf_counter()
    g = nx.DiGraph()
    for p, v in surplus.items():
        g.add_edge("source", ("p", p), capacity=int(v), weight=0)
    for b, v in deficit.items():
        g.add_edge(("b", b), "sink", capacity=int(v), weight=0)
    for b, p, d in arcs[["bundle_id", "project_id", "distance_m"]].itertuples(index=False):
        g.add_edge(("p", p), ("b", b), weight=int(round(d)))
    t1 = time.perf_counter()
    flow = nx.max_flow_min_cost(g, "source", "sink")
    t2 = time.perf_counter()
    return {"s": t2 - t0, "build_s": t1 - t0, "amount": int(sum(flow["source"].values())),
            "cost": int(nx.cost_of_flow(g, flow))}


def _row(case: str, size: str, ours: dict, theirs: dict | None, timeout: float) -> str:
    head = f"{case:<22} {size:<30} {ours['s']:>8.3f}"
    if theirs is None:
        return (f"{head} {'>' + format(timeout, '.0f'):>10} {'>' + format(timeout / ours['s'], ',.0f') + '×':>9}"
                f"  {'—':<5} stopped after {timeout:.0f} s; amount {ours['amount']:,} CNY")
    if "error" in theirs:
        return f"{head} {'—':>10} {'—':>9}  {'—':<5} networkx failed: {theirs['error']}"
    same = theirs["amount"] == ours["amount"] and theirs["cost"] == ours["cost"]
    return (f"{head} {theirs['s']:>10.2f} {theirs['s'] / ours['s']:>8,.0f}×  {'yes' if same else 'NO':<5} "
            f"amount {ours['amount']:,} CNY, Σ m×CNY {ours['cost']:,}"
            + ("" if same else f" (networkx {theirs['amount']:,} / {theirs['cost']:,})"))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="500 bundles × 100 projects (fallback 200 × 40)")
    ap.add_argument("--timeout", type=float, default=60.0, help="seconds before a networkx run is stopped")
    ap.add_argument("--repeat", type=int, default=3, help="runs of ours (the best is shown)")
    ap.add_argument("--fallback", default=None, help="smaller size for networkx, e.g. 500x100")
    args = ap.parse_args(argv)
    nb, npj = (500, 100) if args.quick else (2_000, 400)
    fb = args.fallback or ("200x40" if args.quick else "500x100")
    fb_nb, fb_np = (int(v) for v in fb.lower().split("x"))
    print(f"python {platform.python_version()}, scipy {scipy.__version__} (HiGHS), networkx {nx.__version__}, "
          f"{os.cpu_count()} CPUs; points in a {SIDE_M / 1000:g} km square, whole yuan")
    head = (f"{'case':<22} {'bundles × projects, arcs':<30} {'ours s':>8} {'networkx s':>10} {'ratio':>9}  "
            f"{'same':<5} optimum")
    print(head)
    print("-" * (len(head) + 40))
    ok = True
    for case, max_d in (("all arcs", 0.0), ("≤ 3,000 m", 3000.0)):
        deficit, surplus, arcs = instance(nb, npj, max_d)
        size = f"{nb:,} × {npj:,}, {len(arcs):,} arcs"
        ours = run_ours(deficit, surplus, arcs, args.repeat)
        theirs = isolated(run_networkx, (deficit, surplus, arcs), args.timeout)
        print(_row(case, size, ours, theirs, args.timeout), flush=True)
        if theirs is None:
            small = instance(fb_nb, fb_np, max_d)
            s_ours = run_ours(*small, args.repeat)
            s_theirs = isolated(run_networkx, small, args.timeout)
            print(_row(f"{case} (smaller)", f"{fb_nb:,} × {fb_np:,}, {len(small[2]):,} arcs", s_ours, s_theirs,
                       args.timeout), flush=True)
            theirs = s_theirs
            ours = s_ours
        ok &= theirs is not None and "error" not in theirs and (theirs["amount"], theirs["cost"]) == (
            ours["amount"], ours["cost"])
        whole = run_ours(deficit, surplus, arcs, args.repeat, whole_first=True)
        print(f"{case + ', whole_first':<22} {size:<30} {whole['s']:>8.3f} {'—':>10} {'—':>9}  {'—':<5} "
              f"{whole['whole']:,} bundles in full (vs {ours_whole(deficit, surplus, arcs):,} without), "
              f"amount {whole['amount']:,} CNY", flush=True)
    print("same optimum everywhere networkx finished:", "yes" if ok else "NO")
    return 0 if ok else 1


def ours_whole(deficit, surplus, arcs) -> int:
    """Bundles funded in full by the plain (not ``whole_first``) pairing."""
    out = finance.solve_pairing(deficit, surplus, arcs)
    got = out.groupby("bundle_id")["amount_cny"].sum()
    return int(sum(got.get(b, 0.0) >= v for b, v in deficit.items()))


if __name__ == "__main__":
    raise SystemExit(main())
