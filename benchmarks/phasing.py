"""Phasing benchmark: the programme-phasing MILP (HiGHS via scipy.optimize.milp) vs the greedy heuristic.

Run ``python benchmarks/phasing.py`` (synthetic cities of 2,000, 5,000 and 20,000 compounds, 10 years) or
``--sizes 2000 --years 5``. Each city is ``city.synthetic_city`` (the street grid shrunk with the number of
compounds so the density stays that of the 20,000-compound city) taken through the real stages: validation,
``eligibility.screen``, ``needs.item_list`` / ``apply_costs``, ``bundling.bundle``, ``finance.balance`` and its
by-payer table, then ``phasing.bundle_features`` (items, payers, pairings), ``phasing.links_from`` (cross-area
pairings as order-links) and ``phasing.phase`` — once with the MILP, once with the greedy.

Capacity: ``capacity_share`` 0.08 of each level's programme total per year (central 中央和省级 and local 市区财政),
so 10 years hold at most 80 % of the programme and the capacity binds every year. The MILP path solves the LP
relaxation (the bound), rounds it (integral part kept, the rest filled greedily), then runs HiGHS's branch and
bound up to the default ``mip_rel_gap`` (1e-4) or the time limit (``--time-limit``, default the settings' 30 s)
unless the model has more than ``max_exact_columns`` (45,000) columns; the best plan is kept and the gap it
is proven within is printed. Columns: bundles, links, model columns / rows, preparation seconds; the ``phase``
call's seconds (model, LP, greedy, branch and bound, tables), HiGHS branch-and-bound seconds, status, objective,
bound, gap, LP-relaxation bound, objective of the rounded LP, bundles placed; the greedy run's seconds,
objective, gap to the LP bound and bundles placed, and the MILP path's gain over the greedy. The largest size
is then run again with branch and bound forced (``max_exact_columns`` ignored) to time HiGHS on it
(``--no-forced`` skips that: it takes ~1.5 min and, at 20,000 compounds, HiGHS finds no solution of its own).
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import sys
import time
import warnings

import scipy

from gis_planner import bundling, eligibility, finance, needs, phasing

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from city import city_layers, synthetic_city  # noqa: E402

SHARE = 0.08


def prepare(n_compounds: int, seed: int = 42):
    """(features, links, seconds to prepare) for a synthetic city of ``n_compounds`` compounds."""
    t0 = time.perf_counter()
    grid = max(60, round(450 * math.sqrt(n_compounds / 20_000)))
    layers = city_layers(synthetic_city(n=grid, n_compounds=n_compounds, seed=seed))
    screened = eligibility.screen(layers.compounds, year=2026)
    items = needs.item_list(screened)
    costed = needs.apply_costs(screened, items)
    compounds, bundles, _ = bundling.bundle(costed, layers.roads, layers.vacant, layers.projects,
                                            layers.boundaries)
    result = finance.balance(finance.BalanceInputs(compounds=compounds, bundles=bundles, projects=layers.projects,
                                                   vacant=layers.vacant, items=items))
    payers = finance.payer_table(result)
    features = phasing.bundle_features(bundles, compounds, items=items, payers=payers, pairings=result.pairings)
    links = phasing.links_from(result.pairings)
    return features, links, time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[2_000, 5_000, 20_000], help="compounds per city")
    ap.add_argument("--years", type=int, default=10, help="horizon in years")
    ap.add_argument("--time-limit", type=float, default=None, help="HiGHS time limit, seconds")
    ap.add_argument("--no-forced", action="store_true",
                    help="skip re-running the largest size with branch and bound forced (max_exact_columns ignored)")
    args = ap.parse_args(argv)
    warnings.filterwarnings("ignore")
    base = {"horizon_years": args.years, "capacity_share": SHARE}
    if args.time_limit is not None:
        base["time_limit_s"] = args.time_limit
    s = phasing.load_settings(base)
    print(f"python {platform.python_version()}, scipy {scipy.__version__} (HiGHS), {os.cpu_count()} CPUs; "
          f"{args.years} years, capacity {SHARE:.0%} of each level's total per year, time limit {s.time_limit_s:g} s, "
          f"mip_rel_gap {s.mip_rel_gap:g}")
    head = (f"{'compounds':>9} {'bundles':>7} {'links':>5} {'cols':>7} {'rows':>6} {'prep s':>6} | {'MILP s':>6} "
            f"{'B&B s':>6} {'status':<10} {'objective':>10} {'bound':>10} {'gap':>7} {'LP bound':>10} {'LP round':>10} "
            f"{'placed':>6} | "
            f"{'greedy s':>8} {'greedy obj':>10} {'gap(LP)':>7} {'placed':>6} {'MILP gain':>9}")
    print(head)
    print("-" * len(head))
    runs = [(n, False) for n in args.sizes] + ([] if args.no_forced else [(max(args.sizes), True)])
    cache = {}
    for n, forced in runs:
        if n not in cache:
            cache[n] = prepare(n)
        features, links, prep = cache[n]
        settings = phasing.load_settings({**base, "max_exact_columns": 10_000_000}) if forced else s
        exact = phasing.phase(features, links=links, settings=settings)
        greedy = phasing.phase(features, links=links, settings={**base, "solver": "greedy",
                                                                "time_limit_s": s.time_limit_s})
        st = exact.stats
        gain = (exact.objective - greedy.objective) / greedy.objective if greedy.objective else math.nan
        print(f"{n:>9,} {len(features):>7,} {len(links):>5,} {int(st.get('columns', 0)):>7,} "
              f"{int(st.get('rows', 0)):>6,} {prep:>6.1f} | {exact.seconds:>6.2f} {st.get('mip_s', 0.0):>6.2f} "
              f"{exact.status:<10} {exact.objective:>10.3f} {exact.bound:>10.3f} {exact.gap:>7.3%} "
              f"{exact.lp_bound:>10.3f} {st.get('rounding_objective', math.nan):>10.3f} {exact.n_placed:>6,} | "
              f"{greedy.seconds:>8.2f} {greedy.objective:>10.3f} {greedy.gap:>7.3%} {greedy.n_placed:>6,} "
              f"{gain:>+9.3%}", flush=True)
        binding = exact.annual.groupby("year")["binding"].any()
        print(f"{'':>9} {'B&B forced: ' if forced else ''}{exact.status_zh}; capacity binds in "
              f"{int(binding.sum())} of {len(binding)} years", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
