"""The siting stage in one call (:func:`propose`): proposals with reasons and coverage before / after."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd

from ..coverage import assess, summarise
from ..network import WalkGraph
from ..standards import Standards, load_standards
from .candidates import candidates
from .problem import SitingProblem, benefit_minimum, coverage_matrix, drop_below_minimum
from .settings import load_settings, priority_multipliers
from .solver import Solution, enforce_minimum, solve

#: Columns of the proposed-facilities layer (before ``geometry``), in order.
PROPOSED_COLUMNS = [
    "facility_id", "parcel_id", "parcel_name", "kind", "owner_type", "facility_type", "name_zh", "tier",
    "radius_m", "host", "footprint_land_m2", "footprint_floor_m2", "households_newly_covered",
    "compounds_newly_covered", "weight_newly_covered", "build_cost_cny", "land_cost_cny", "cost_cny",
    "subdistrict", "served_bundle_id", "reason_zh", "reason_en",
]

_HOST_EN = {"land": "on open land", "new_building": "in a new building on open land",
            "existing_floor": "by converting existing floor space"}


def _after_table(coverage_table: pd.DataFrame, problem: SitingProblem, solution: Solution) -> pd.DataFrame:
    new = problem.demand.loc[solution.covered, ["compound_id", "facility_type"]]
    key = coverage_table["compound_id"].astype(str) + "\x00" + coverage_table["facility_type"].astype(str)
    hit = key.isin(set(new["compound_id"].astype(str) + "\x00" + new["facility_type"].astype(str)))
    return coverage_table.assign(covered=coverage_table["covered"].astype(bool) | hit.to_numpy())


def before_after(
    coverage_table: pd.DataFrame,
    compounds: pd.DataFrame,
    problem: SitingProblem,
    solution: Solution,
    standards: Standards | None = None,
    *,
    by: str = "subdistrict",
) -> pd.DataFrame:
    """Coverage before and after the proposals, per facility type and per tier, district-wide and per 街道.

    Parameters
    ----------
    coverage_table : the coverage stage's table (before).
    compounds : ``compound_id``, ``households`` and the ``by`` column.
    problem, solution : from :func:`coverage_matrix` and :func:`solve`.
    by : compounds column for the per-area rows (default ``subdistrict`` 街道; skipped if absent).

    Returns
    -------
    DataFrame: ``scope`` (``district`` / ``by``), ``area`` (全区 or the area name), ``level`` (``type`` /
    ``tier``), ``facility_type``, ``name_zh``, ``tier``, ``tier_name_zh``, ``n_compounds``,
    ``n_covered_before``, ``n_covered_after``, ``households``, ``households_covered_before``,
    ``households_covered_after``, ``households_gain``, ``rate_households_before``, ``rate_households_after``
    (0–1). A tier counts a compound as covered only when every checked type of the tier is.
    """
    standards = standards or load_standards()
    after = _after_table(coverage_table, problem, solution)
    parts = []
    scopes = [None] + ([by] if by and by in compounds.columns else [])
    for scope in scopes:
        for level in ("type", "tier"):
            b = summarise(coverage_table, compounds, by=scope, standards=standards, level=level)
            a = summarise(after, compounds, by=scope, standards=standards, level=level)
            keys = ([scope] if scope else []) + (["facility_type"] if level == "type" else ["tier"])
            m = b.merge(a[[*keys, "n_covered", "households_covered", "rate_households"]], on=keys,
                        suffixes=("_before", "_after"), validate="one_to_one")
            m["scope"] = scope or "district"
            m["area"] = m[scope].astype(str) if scope else "全区"
            m["level"] = level
            if level == "tier":
                m["facility_type"] = None
                m["name_zh"] = None
            parts.append(m)
    out = pd.concat(parts, ignore_index=True)
    out["households_gain"] = out["households_covered_after"] - out["households_covered_before"]
    cols = ["scope", "area", "level", "facility_type", "name_zh", "tier", "tier_name_zh", "n_compounds",
            "n_covered_before", "n_covered_after", "households", "households_covered_before",
            "households_covered_after", "households_gain", "rate_households_before", "rate_households_after"]
    return out[cols].reset_index(drop=True)


@dataclass(frozen=True, eq=False)
class SitingResult:
    """Everything :func:`propose` produced.

    Attributes
    ----------
    proposed : GeoDataFrame of proposed facilities (:data:`PROPOSED_COLUMNS`, geometry = the parcel polygon,
        so it can be appended to the facilities layer as is).
    before_after : coverage before / after (:func:`before_after`).
    candidates : the full parcel × type candidate table with reasons (:func:`candidates`).
    problem : the :class:`SitingProblem` solved; solution : its :class:`Solution`.
    messages : notes for the run log.
    """

    proposed: gpd.GeoDataFrame
    before_after: pd.DataFrame
    candidates: pd.DataFrame
    problem: SitingProblem
    solution: Solution
    messages: list[str] = field(default_factory=list)


def _subdistricts(geoms: gpd.GeoSeries, compounds: gpd.GeoDataFrame,
                  boundaries: gpd.GeoDataFrame | None) -> np.ndarray:
    """街道 of each parcel: the subdistrict boundary containing its representative point, else the nearest
    compound's ``subdistrict``."""
    out = np.full(len(geoms), None, dtype=object)
    pts = gpd.GeoDataFrame(geometry=geoms.representative_point().to_numpy(), crs=geoms.crs)
    if boundaries is not None and len(boundaries) and "level" in boundaries:
        sub = boundaries[boundaries["level"] == "subdistrict"]
        if len(sub):
            j = gpd.sjoin(pts, sub[["name", sub.geometry.name]], how="left", predicate="within")
            j = j[~j.index.duplicated()]
            out = j["name"].reindex(pts.index).to_numpy(dtype=object)
    missing = pd.isna(out)
    if missing.any() and "subdistrict" in compounds and len(compounds):
        j = gpd.sjoin_nearest(pts[missing], compounds[["subdistrict", compounds.geometry.name]], how="left")
        j = j[~j.index.duplicated()]
        out[missing] = j["subdistrict"].to_numpy(dtype=object)
    return out


def _served_bundles(pairs: pd.DataFrame, demand: pd.DataFrame, compounds: pd.DataFrame,
                    sel: np.ndarray) -> np.ndarray:
    """The bundle (片区) whose compounds each selected candidate newly covers most households of (None when the
    compounds carry no ``bundle_id`` or the households it covers are in no bundle); ties: lowest bundle id."""
    out = np.full(len(sel), None, dtype=object)
    if "bundle_id" not in compounds.columns or not len(pairs):
        return out
    bundle_of = pd.Series(compounds["bundle_id"].to_numpy(dtype=object),
                          index=compounds["compound_id"].astype(str).to_numpy())
    d = pairs["demand"].to_numpy()
    hh = pd.DataFrame({"candidate": pairs["candidate"].to_numpy(),
                       "bundle_id": bundle_of.reindex(demand["compound_id"].astype(str).to_numpy()[d]).to_numpy(),
                       "households": demand["households"].to_numpy(float)[d]}).dropna(subset=["bundle_id"])
    if not len(hh):
        return out
    hh["bundle_id"] = hh["bundle_id"].astype(str)
    per = hh.groupby(["candidate", "bundle_id"], sort=True)["households"].sum().reset_index()
    per = per.sort_values(["candidate", "households", "bundle_id"], ascending=[True, False, True], kind="stable")
    best = per.drop_duplicates("candidate").set_index("candidate")["bundle_id"]
    got = best.reindex(sel)
    return got.astype(object).where(got.notna(), None).to_numpy(dtype=object)


def _proposals(problem, solution, vacant, compounds, boundaries, standards, rules) -> gpd.GeoDataFrame:
    cand = problem.candidates
    sel = np.flatnonzero(solution.selected)
    # attribute each newly covered demand row to its nearest selected candidate
    pairs = problem.pairs
    pairs = pairs[solution.selected[pairs["candidate"].to_numpy()] & solution.covered[pairs["demand"].to_numpy()]]
    pairs = pairs.sort_values(["demand", "distance_m", "candidate"], kind="stable").drop_duplicates("demand")
    dem = problem.demand
    hh = np.bincount(pairs["candidate"], weights=dem["households"].to_numpy(float)[pairs["demand"]],
                     minlength=len(cand))
    wt = np.bincount(pairs["candidate"], weights=dem["weight"].to_numpy(float)[pairs["demand"]],
                     minlength=len(cand))
    nc = np.bincount(pairs["candidate"], minlength=len(cand))
    c = cand.iloc[sel].reset_index(drop=True)
    vac = vacant.assign(parcel_id=vacant["parcel_id"].astype(str)).set_index("parcel_id")
    land_cost = problem.parcels["land_cost_cny"].to_numpy(float)[c["parcel"].to_numpy()]
    share = c.groupby("parcel")["parcel"].transform("size").to_numpy()
    geom = gpd.GeoSeries(vac.geometry.loc[c["parcel_id"]].to_numpy(), crs=vacant.crs)
    ft = standards.facility_types
    mult = priority_multipliers(rules, list(c["facility_type"]))
    owners = rules["owners"]
    out = pd.DataFrame({
        "facility_id": "N-" + c["parcel_id"].astype(str) + "-" + c["facility_type"].astype(str),
        "parcel_id": c["parcel_id"].to_numpy(dtype=object),
        "parcel_name": vac["name"].loc[c["parcel_id"]].to_numpy(dtype=object) if "name" in vac else None,
        "kind": c["kind"].to_numpy(dtype=object), "owner_type": c["owner_type"].to_numpy(dtype=object),
        "facility_type": c["facility_type"].to_numpy(dtype=object), "name_zh": c["name_zh"].to_numpy(dtype=object),
        "tier": c["tier"].to_numpy(dtype=object), "radius_m": c["radius_m"].to_numpy(float),
        "host": c["host"].to_numpy(dtype=object),
        "footprint_land_m2": c["footprint_land_m2"].to_numpy(float),
        "footprint_floor_m2": c["footprint_floor_m2"].to_numpy(float),
        "households_newly_covered": hh[sel].round().astype(np.int64),
        "compounds_newly_covered": nc[sel].astype(np.int64),
        "weight_newly_covered": wt[sel],
        "build_cost_cny": c["build_cost_cny"].to_numpy(float),
        "land_cost_cny": land_cost / share,
    })
    out["cost_cny"] = out["build_cost_cny"] + out["land_cost_cny"]
    out["subdistrict"] = _subdistricts(geom, compounds, boundaries)
    out["served_bundle_id"] = _served_bundles(pairs, dem, compounds, sel)
    name_en = out["facility_type"].map(ft["name_en"]).str.lower()
    use_zh = np.where(out["host"] == "existing_floor",
                      "利用闲置用房" + out["footprint_floor_m2"].round(0).astype(int).astype(str) + "平方米",
                      np.where(out["host"] == "new_building",
                               "新建用房" + out["footprint_floor_m2"].round(0).astype(int).astype(str)
                               + "平方米，占地" + out["footprint_land_m2"].round(0).astype(int).astype(str) + "平方米",
                               "占地" + out["footprint_land_m2"].round(0).astype(int).astype(str) + "平方米"))
    prio_zh = np.where(mult > 1, "；属养老、托育、社区服务等优先补齐设施（存量用地优先用于社区和养老服务设施 [004:142]）", "")
    note = out["owner_type"].map({k: v.get("note_zh", "") for k, v in owners.items()}).fillna("")
    note_zh = np.where(note != "", "；" + note, "")
    out["reason_zh"] = ("该地块可覆盖" + out["households_newly_covered"].astype(str) + "户缺少" + out["name_zh"]
                        + "的家庭（" + out["compounds_newly_covered"].astype(str) + "个小区，步行"
                        + out["radius_m"].round(0).astype(int).astype(str) + "米内）；" + use_zh + prio_zh
                        + note_zh)
    out["reason_en"] = ("Brings a " + name_en + " within a " + out["radius_m"].round(0).astype(int).astype(str)
                        + " m walk of " + out["households_newly_covered"].astype(str) + " households ("
                        + out["compounds_newly_covered"].astype(str) + " compounds) that lack one; "
                        + out["host"].map(_HOST_EN) + np.where(mult > 1, "; a priority type (DOMAIN.md §7 [004:142])",
                                                               ""))
    gdf = gpd.GeoDataFrame(out[PROPOSED_COLUMNS], geometry=geom.to_numpy(), crs=vacant.crs)
    return gdf.sort_values("facility_id", kind="stable").reset_index(drop=True)


def propose(
    compounds: gpd.GeoDataFrame,
    vacant: gpd.GeoDataFrame,
    facilities: gpd.GeoDataFrame | None,
    graph: WalkGraph | gpd.GeoDataFrame | None,
    coverage_table: pd.DataFrame | None = None,
    standards: Standards | None = None,
    rules: Mapping[str, Any] | None = None,
    *,
    boundaries: gpd.GeoDataFrame | None = None,
    types: str | Sequence[str] | None = None,
    method: str | None = None,
    p: int | Mapping[str, int] | None = None,
    budget: float | None = None,
    time_limit: float | None = None,
    entrances: gpd.GeoDataFrame | None = None,
    max_snap_m: float | None = None,
    pairs: pd.DataFrame | None = None,
) -> SitingResult:
    """The siting stage in one call: candidates → coverage matrix → solve → proposals and before / after.

    Parameters
    ----------
    compounds, vacant, facilities : the plan's layers (metric CRS).
    graph : the walking graph the coverage stage used (or the roads layer, or None = straight lines).
    coverage_table : the coverage stage's :func:`~gis_planner.coverage.assess` table; computed from
        ``facilities`` when None.
    standards : living-circle standards; rules : overrides of ``data/siting.toml``.
    boundaries : optional boundaries layer (街道 of each proposal; else the nearest compound's).
    types : facility types to site (default: the types of the coverage table that can be sited).
    method, p, budget, time_limit : default ``[solve]`` of siting.toml (``p_per_type`` 0 and ``budget_cny``
        0 mean "none").
    entrances, max_snap_m : as given to the coverage stage.
    pairs : covering pairs computed beforehand by :func:`covering_pairs` (a batch run merges them from its
        partitions); ``graph`` is then not searched.

    Returns
    -------
    SitingResult — ``.proposed`` (the ``proposed_facilities`` layer), ``.before_after``, ``.candidates``,
    ``.problem``, ``.solution``, ``.messages``.
    """
    standards = standards or load_standards()
    rules = load_settings(rules)
    cfg = rules["solve"]
    if coverage_table is None:
        coverage_table = assess(compounds, facilities, graph, standards, entrances=entrances, max_snap_m=max_snap_m)
    method = method or cfg["method"]
    if method == "mclp":
        if p is None and budget is None:
            p = int(cfg["p_per_type"]) or None
            budget = float(cfg["budget_cny"]) or None
    present = set(coverage_table["facility_type"])
    table_types = [t for t in standards.facility_types.index if t in present]  # standards order, not row order
    cands = candidates(vacant, standards, rules, types=types if types is not None else table_types)
    problem = coverage_matrix(compounds, vacant, cands, graph, coverage_table, standards, rules,
                              entrances=entrances, max_snap_m=max_snap_m, pairs=pairs)
    n_all = problem.shape[1]
    # minimum benefit ([benefit] of siting.toml): drop candidates that cannot reach it, solve, check the solution
    minimum = benefit_minimum(problem, rules)
    reduced, removed, keep = drop_below_minimum(problem, minimum)
    sol = solve(reduced, p=p, budget=budget, method=method, time_limit=time_limit, rules=rules)
    sol, dropped = enforce_minimum(reduced, sol, minimum[keep])
    selected = np.zeros(n_all, dtype=bool)
    selected[np.flatnonzero(keep)[sol.selected]] = True
    sol = replace(sol, selected=selected)  # the same demand rows: covered, weights and cost are unchanged
    proposed = _proposals(problem, sol, vacant, compounds, boundaries, standards, rules)
    ba = before_after(coverage_table, compounds, problem, sol, standards)
    msgs = list(problem.notes)
    ben = rules["benefit"]
    rule_zh = (f"每处新增设施至少新覆盖 {ben['min_households_per_facility']:g} 户"
               + (f"、每万元至少 {ben['min_households_per_wan_cny']:g} 户" if ben["min_households_per_wan_cny"] else ""))
    msgs.append(f"siting: minimum benefit ({rule_zh} / at least {ben['min_households_per_facility']:g} households "
                f"newly covered per facility): {len(removed)} of {n_all} candidates removed before solving"
                + (f", {dropped} selected facilities dropped after solving" if dropped else ""))
    msgs.append(f"siting: {sol.method.upper()} {sol.status} ({sol.solver}), {sol.n_selected} facilities on "
                f"{proposed['parcel_id'].nunique()} parcels, {int(proposed['households_newly_covered'].sum()):,} "
                f"households newly covered (summed over types), gap {sol.gap:.2%}, {sol.seconds:.2f} s")
    return SitingResult(proposed=proposed, before_after=ba, candidates=cands, problem=problem, solution=sol,
                        messages=msgs)
