"""The siting problem: uncovered demand, feasible candidates and who can serve whom on the walking network."""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
from scipy.sparse import csr_array

from .._errors import ConfigError
from ..coverage import locate, pair_distances
from ..network import WalkGraph
from ..standards import Standards, load_standards
from .settings import load_settings, priority_multipliers


@dataclass(frozen=True, eq=False)
class SitingProblem:
    """A siting instance: who lacks what, which candidate can serve whom, and what each candidate uses.

    Attributes
    ----------
    candidates : one row per feasible candidate (parcel × type): ``parcel_id, facility_type, parcel,``
        (position in ``parcels``) ``footprint_land_m2, use_floor_m2`` (existing floor it takes, m²),
        ``build_cost_cny`` and, from :func:`coverage_matrix`, ``name_zh, tier, radius_m, host,
        footprint_floor_m2``.
    parcels : one row per parcel: ``parcel_id, land_capacity_m2, floor_capacity_m2, land_cost_cny``
        (acquisition, charged once per parcel used).
    demand : one row per compound × type not yet covered: ``compound_id, facility_type, households,
        multiplier, weight`` (households × multiplier) and ``coverable`` (some candidate reaches it).
    coverage : boolean ``csr_array`` (demand × candidates): candidate serves the demand (same type, network
        distance ≤ the type's radius).
    pairs : the covering pairs ``demand, candidate, distance_m`` (network metres).
    notes : messages gathered while building (snaps refused …).
    """

    candidates: pd.DataFrame
    parcels: pd.DataFrame
    demand: pd.DataFrame
    coverage: csr_array
    pairs: pd.DataFrame
    notes: list[str] = field(default_factory=list)

    @property
    def weights(self) -> np.ndarray:
        """Demand weights (households × priority multiplier)."""
        return self.demand["weight"].to_numpy(float)

    @property
    def costs(self) -> np.ndarray:
        """Build cost per candidate (CNY)."""
        return self.candidates["build_cost_cny"].to_numpy(float)

    @property
    def shape(self) -> tuple[int, int]:
        """(demand rows, candidates)."""
        return self.coverage.shape

    @classmethod
    def from_matrix(
        cls,
        coverage: Any,
        weights: Sequence[float] | np.ndarray,
        *,
        candidate_types: Sequence[str] | None = None,
        demand_types: Sequence[str] | None = None,
        costs: Sequence[float] | None = None,
        parcels: Sequence[str] | None = None,
        footprint_land_m2: Sequence[float] | None = None,
        use_floor_m2: Sequence[float] | None = None,
        land_capacity_m2: Mapping[str, float] | None = None,
        floor_capacity_m2: Mapping[str, float] | None = None,
        land_cost_cny: Mapping[str, float] | None = None,
    ) -> SitingProblem:
        """A problem from a ready coverage matrix (like spopt's ``from_cost_matrix``).

        Parameters
        ----------
        coverage : demand × candidate matrix (dense or sparse); nonzero = the candidate covers the demand.
            Entries between a demand and a candidate of different types are ignored.
        weights : demand weights (e.g. households).
        candidate_types, demand_types : facility type per candidate / demand (default one type ``"t"``).
        costs : build cost per candidate (CNY; default 1 each).
        parcels : parcel label per candidate (default: each candidate on its own parcel).
        footprint_land_m2, use_floor_m2 : land and existing floor each candidate takes (m²; default 0).
        land_capacity_m2, floor_capacity_m2 : per parcel label (m²; default unlimited).
        land_cost_cny : acquisition cost per parcel label, charged once if the parcel is used (default 0).

        Examples
        --------
        >>> p = SitingProblem.from_matrix([[1, 0], [1, 1], [0, 1]], [10, 20, 30])
        >>> p.shape, float(p.weights.sum())
        ((3, 2), 60.0)
        """
        a = csr_array(coverage).astype(bool)
        n_d, n_c = a.shape
        w = np.asarray(weights, dtype=float)
        if len(w) != n_d:
            raise ValueError(f"weights: {len(w)} values for {n_d} demand rows")
        ctype = np.asarray(candidate_types if candidate_types is not None else ["t"] * n_c, dtype=object)
        dtype_ = np.asarray(demand_types if demand_types is not None else ["t"] * n_d, dtype=object)
        plabel = np.asarray(parcels if parcels is not None else [f"p{i}" for i in range(n_c)], dtype=object)
        uniq, ppos = np.unique(plabel.astype(str), return_inverse=True)
        coo = a.tocoo()
        same = dtype_[coo.row] == ctype[coo.col]
        a = csr_array((np.ones(int(same.sum()), bool), (coo.row[same], coo.col[same])), shape=(n_d, n_c))
        pairs = pd.DataFrame({"demand": coo.row[same], "candidate": coo.col[same], "distance_m": np.nan})

        def per_parcel(m: Mapping[str, float] | None, default: float) -> np.ndarray:
            return np.array([float((m or {}).get(p, default)) for p in uniq])

        cand = pd.DataFrame({
            "parcel_id": uniq[ppos], "facility_type": ctype, "parcel": ppos,
            "footprint_land_m2": np.zeros(n_c) if footprint_land_m2 is None else np.asarray(footprint_land_m2, float),
            "use_floor_m2": np.zeros(n_c) if use_floor_m2 is None else np.asarray(use_floor_m2, float),
            "build_cost_cny": np.ones(n_c) if costs is None else np.asarray(costs, float),
        })
        parc = pd.DataFrame({"parcel_id": uniq, "land_capacity_m2": per_parcel(land_capacity_m2, np.inf),
                             "floor_capacity_m2": per_parcel(floor_capacity_m2, np.inf),
                             "land_cost_cny": per_parcel(land_cost_cny, 0.0)})
        dem = pd.DataFrame({"compound_id": [f"d{i}" for i in range(n_d)], "facility_type": dtype_,
                            "households": w, "multiplier": 1.0, "weight": w,
                            "coverable": np.diff(a.indptr) > 0})
        return cls(candidates=cand, parcels=parc, demand=dem, coverage=a, pairs=pairs)


def _feasible(cands: pd.DataFrame, vacant: gpd.GeoDataFrame, coverage_table: pd.DataFrame,
              standards: Standards) -> tuple[pd.DataFrame, gpd.GeoDataFrame, pd.DataFrame]:
    """Feasible candidates of the table's types, the parcels they use and each parcel's first candidate."""
    ft = standards.facility_types
    feas = cands[cands["feasible"].astype(bool)].reset_index(drop=True)
    types_in_table = set(coverage_table["facility_type"].unique())
    feas = feas[feas["facility_type"].isin(types_in_table)].reset_index(drop=True)
    vac = vacant.assign(parcel_id=vacant["parcel_id"].astype(str))
    used = vac[vac["parcel_id"].isin(set(feas["parcel_id"]))].reset_index(drop=True)
    ppos = pd.Series(np.arange(len(used)), index=used["parcel_id"])
    feas["parcel"] = ppos.loc[feas["parcel_id"]].to_numpy()
    feas["use_floor_m2"] = np.where(feas["uses_existing_floor"], feas["footprint_floor_m2"], 0.0)
    feas["tier"] = feas["facility_type"].map(ft["tier"])
    feas["radius_m"] = feas["facility_type"].map(ft["radius_m"]).astype(float)
    first = feas.groupby("parcel", sort=True).first().reindex(np.arange(len(used)))
    return feas, used, first


def _demand(compounds: pd.DataFrame, coverage_table: pd.DataFrame, types: list[str],
            rules: Mapping[str, Any]) -> pd.DataFrame:
    """Compound × type pairs not covered yet, sorted by compound id then type (an order a batch merge keeps)."""
    hh = (pd.to_numeric(compounds["households"], errors="coerce").fillna(0.0).to_numpy(float)
          if "households" in compounds else np.zeros(len(compounds)))
    cid = compounds["compound_id"].astype(str).to_numpy(dtype=object)
    cpos = pd.Series(np.arange(len(cid)), index=cid)
    gaps = coverage_table.loc[~coverage_table["covered"].astype(bool)
                              & coverage_table["facility_type"].isin(types), ["compound_id", "facility_type"]]
    gaps = gaps.assign(compound_id=gaps["compound_id"].astype(str))
    gaps = gaps[gaps["compound_id"].isin(cpos.index)]
    tcode = pd.Series(np.arange(len(types)), index=types)
    d_type = tcode.loc[gaps["facility_type"]].to_numpy()
    order = np.lexsort((d_type, gaps["compound_id"].to_numpy(dtype=str)))
    gaps, d_type = gaps.iloc[order].reset_index(drop=True), d_type[order]
    d_comp = cpos.loc[gaps["compound_id"]].to_numpy()
    mult = priority_multipliers(rules, types)[d_type]
    return pd.DataFrame({"compound_id": gaps["compound_id"].to_numpy(dtype=object),
                         "facility_type": gaps["facility_type"].to_numpy(dtype=object),
                         "households": hh[d_comp], "multiplier": mult, "weight": hh[d_comp] * mult,
                         "compound": d_comp, "type_code": d_type})


def covering_pairs(
    compounds: gpd.GeoDataFrame,
    vacant: gpd.GeoDataFrame,
    cands: pd.DataFrame,
    graph: WalkGraph | gpd.GeoDataFrame | None,
    coverage_table: pd.DataFrame,
    standards: Standards | None = None,
    rules: Mapping[str, Any] | None = None,
    *,
    entrances: gpd.GeoDataFrame | None = None,
    max_snap_m: float | None = None,
) -> tuple[pd.DataFrame, list[str]]:
    """Which feasible candidate can serve which uncovered compound × type: the network part of siting.

    The parcels are placed on the walking network exactly as the coverage stage places facilities
    (:func:`gis_planner.coverage.locate`: a parcel is reached from the point of its outline nearest a
    walkable street, with its access leg) and distances are taken by the same bounded Dijkstra searches.
    Every pair lies within one service radius of its compound, so a batch partition with a walking-radius
    halo computes its own compounds' pairs exactly; :func:`coverage_matrix` takes them back with ``pairs=``.

    Parameters
    ----------
    As :func:`coverage_matrix`.

    Returns
    -------
    (pairs, notes): ``compound_id, facility_type, parcel_id, distance_m`` (network metres, ≤ the type's
    radius; sorted by compound, type and parcel) and the messages gathered (snaps refused …).
    """
    standards = standards or load_standards()
    rules = load_settings(rules)
    feas, used, first = _feasible(cands, vacant, coverage_table, standards)
    types = [t for t in standards.facility_types.index if t in set(feas["facility_type"])]
    demand = _demand(compounds, coverage_table, types, rules)
    notes: list[str] = []
    fac = gpd.GeoDataFrame({"facility_id": used["parcel_id"].to_numpy(dtype=object),
                            "facility_type": first["facility_type"].to_numpy()},
                           geometry=used.geometry.to_numpy(), crs=used.crs)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        located = locate(compounds, fac, graph, standards=standards, entrances=entrances, max_snap_m=max_snap_m)
    notes += [f"siting: {w.message}".replace("facilities could not", "parcels could not") for w in caught]
    ok = np.flatnonzero(located.facility_node >= 0) if located.method == "network" else np.arange(len(used))
    d_max = float(feas["radius_m"].max()) if len(feas) else 0.0
    detour = float(standards.network["detour_factor"])
    if len(ok) and len(demand):
        pf, pc, pd_ = pair_distances(located, ok, d_max, detour)
    else:
        pf = pc = np.array([], dtype=np.int64)
        pd_ = np.array([], float)
    # expand parcel pairs to the parcel's candidates, keep those within the type's radius
    order = np.argsort(feas["parcel"].to_numpy(), kind="stable")
    cand_parcel = feas["parcel"].to_numpy()[order]
    start = np.searchsorted(cand_parcel, np.arange(len(used)))
    count = np.bincount(cand_parcel, minlength=len(used))
    reps = count[pf]
    pair_row = np.repeat(np.arange(len(pf)), reps)
    offset = np.arange(len(pair_row)) - np.repeat(np.cumsum(reps) - reps, reps)
    cand = order[start[pf[pair_row]] + offset]
    comp, dist = pc[pair_row], pd_[pair_row]
    keep = dist <= feas["radius_m"].to_numpy()[cand]
    cand, comp, dist = cand[keep], comp[keep], dist[keep]
    tcode = pd.Series(np.arange(len(types)), index=types)
    key_d = demand["compound"].to_numpy(np.int64) * len(types) + demand["type_code"].to_numpy(np.int64)
    sorter = np.argsort(key_d, kind="stable")
    key_p = comp.astype(np.int64) * len(types) + tcode.loc[feas["facility_type"].to_numpy()[cand]].to_numpy()
    at = np.minimum(np.searchsorted(key_d, key_p, sorter=sorter), max(len(key_d) - 1, 0))
    hit = (key_d[sorter[at]] == key_p) if len(key_d) else np.zeros(len(key_p), bool)
    dem_idx, cand, dist = sorter[at][hit], cand[hit], dist[hit]
    out = pd.DataFrame({"compound_id": demand["compound_id"].to_numpy(dtype=object)[dem_idx],
                        "facility_type": demand["facility_type"].to_numpy(dtype=object)[dem_idx],
                        "parcel_id": feas["parcel_id"].to_numpy(dtype=object)[cand], "distance_m": dist})
    out = out.sort_values(["compound_id", "facility_type", "parcel_id"], kind="stable").reset_index(drop=True)
    return out, notes


def coverage_matrix(
    compounds: gpd.GeoDataFrame,
    vacant: gpd.GeoDataFrame,
    cands: pd.DataFrame,
    graph: WalkGraph | gpd.GeoDataFrame | None,
    coverage_table: pd.DataFrame,
    standards: Standards | None = None,
    rules: Mapping[str, Any] | None = None,
    *,
    entrances: gpd.GeoDataFrame | None = None,
    max_snap_m: float | None = None,
    pairs: pd.DataFrame | None = None,
) -> SitingProblem:
    """Build the siting problem: uncovered demand, feasible candidates and who can serve whom.

    Distances come from :func:`covering_pairs` (the coverage stage's placement and searches), so appending
    a proposal (with the parcel polygon as geometry) to the facilities layer and re-running
    :func:`gis_planner.coverage.assess` reproduces the coverage computed here.

    Parameters
    ----------
    compounds : compounds layer with ``compound_id``, ``households``.
    vacant : vacant layer (parcel geometries).
    cands : output of :func:`candidates` (only ``feasible`` rows are used).
    graph : the walking graph (or roads layer, or None for the straight-line fallback) the coverage stage used.
    coverage_table : output of :func:`gis_planner.coverage.assess`; only compound × type pairs with
        ``covered`` False are demand (existing facilities count as already covering).
    standards : radii and tiers; rules: overrides of ``data/siting.toml`` (priority multipliers).
    entrances, max_snap_m : as given to the coverage stage.
    pairs : covering pairs already computed by :func:`covering_pairs` (e.g. merged from batch partitions);
        ``graph`` is not used then.

    Returns
    -------
    SitingProblem — demand rows sorted by compound id and type (standards order), candidates in parcel
    order, so the same inputs give the same problem however the layers were cut.
    """
    standards = standards or load_standards()
    rules = load_settings(rules)
    feas, used, first = _feasible(cands, vacant, coverage_table, standards)
    parcels = pd.DataFrame({
        "parcel_id": used["parcel_id"].to_numpy(dtype=object),
        "land_capacity_m2": first["open_land_m2"].to_numpy(float),
        "floor_capacity_m2": first["floor_existing_m2"].to_numpy(float),
        "land_cost_cny": first["land_cost_cny"].to_numpy(float),
    })
    types = [t for t in standards.facility_types.index if t in set(feas["facility_type"])]
    demand = _demand(compounds, coverage_table, types, rules)
    notes: list[str] = []
    if pairs is None:
        pairs, notes = covering_pairs(compounds, vacant, cands, graph, coverage_table, standards, rules,
                                      entrances=entrances, max_snap_m=max_snap_m)
    d_pos = pd.Series(np.arange(len(demand)),
                      index=pd.MultiIndex.from_arrays([demand["compound_id"], demand["facility_type"]]))
    c_pos = pd.Series(np.arange(len(feas)),
                      index=pd.MultiIndex.from_arrays([feas["parcel_id"].astype(str), feas["facility_type"]]))
    keys_d = pd.MultiIndex.from_arrays([pairs["compound_id"].astype(str), pairs["facility_type"].astype(str)])
    keys_c = pd.MultiIndex.from_arrays([pairs["parcel_id"].astype(str), pairs["facility_type"].astype(str)])
    dem_idx = d_pos.reindex(keys_d).to_numpy()
    cand = c_pos.reindex(keys_c).to_numpy()
    hit = ~(np.isnan(dem_idx) | np.isnan(cand)) if len(pairs) else np.zeros(0, bool)
    dem_idx, cand = dem_idx[hit].astype(np.int64), cand[hit].astype(np.int64)
    dist = pairs["distance_m"].to_numpy(float)[hit]
    a = csr_array((np.ones(len(dem_idx), bool), (dem_idx, cand)), shape=(len(demand), len(feas)))
    demand = demand.drop(columns=["compound", "type_code"])
    demand["coverable"] = np.diff(a.indptr) > 0
    table = pd.DataFrame({"demand": dem_idx, "candidate": cand, "distance_m": dist})
    table = table.sort_values(["demand", "distance_m", "candidate"], kind="stable").reset_index(drop=True)
    cols = ["parcel_id", "facility_type", "name_zh", "parcel", "tier", "radius_m", "host", "footprint_land_m2",
            "footprint_floor_m2", "use_floor_m2", "build_cost_cny", "kind", "owner_type"]
    return SitingProblem(candidates=feas[cols], parcels=parcels, demand=demand, coverage=a, pairs=table,
                         notes=notes)


def benefit_minimum(problem: SitingProblem, rules: Mapping[str, Any] | None = None) -> np.ndarray:
    """The fewest households each candidate must newly cover to be proposed (``[benefit]`` of siting.toml).

    ``max(min_households_per_facility, min_households_per_wan_cny × cost / 10,000)`` with cost = build cost +
    the parcel's land cost (CNY).

    Raises
    ------
    ConfigError for a negative or non-finite minimum.
    """
    cfg = load_settings(rules)["benefit"]
    per_facility = float(cfg["min_households_per_facility"])
    per_wan = float(cfg["min_households_per_wan_cny"])
    for key, value in (("min_households_per_facility", per_facility), ("min_households_per_wan_cny", per_wan)):
        if not np.isfinite(value) or value < 0:
            raise ConfigError(f"siting.benefit.{key}: must be a finite number ≥ 0, got {value!r}")
    land = problem.parcels["land_cost_cny"].to_numpy(float)[problem.candidates["parcel"].to_numpy()]
    return np.maximum(per_facility, per_wan * (problem.costs + land) / 1e4)


def coverable_households(problem: SitingProblem) -> np.ndarray:
    """Households (of demand rows, each counted once) each candidate could newly cover on its own."""
    hh = problem.demand["households"].to_numpy(float)
    return problem.coverage.T.astype(float) @ hh if problem.coverage.shape[1] else np.zeros(0)


def drop_below_minimum(problem: SitingProblem,
                       minimum: np.ndarray) -> tuple[SitingProblem, pd.DataFrame, np.ndarray]:
    """The problem without the candidates that cannot newly cover ``minimum`` households even alone.

    Returns
    -------
    (reduced problem, removed candidates: ``parcel_id, facility_type, households_coverable,
    households_minimum``, and the bool mask of the candidates kept).
    """
    reach = coverable_households(problem)
    keep = reach >= minimum - 1e-9
    cand = problem.candidates
    removed = pd.DataFrame({"parcel_id": cand["parcel_id"].to_numpy(dtype=object)[~keep],
                            "facility_type": cand["facility_type"].to_numpy(dtype=object)[~keep],
                            "households_coverable": reach[~keep], "households_minimum": minimum[~keep]})
    if keep.all():
        return problem, removed, keep
    new_pos = np.full(len(keep), -1, dtype=np.int64)
    new_pos[keep] = np.arange(int(keep.sum()))
    a = csr_array(problem.coverage[:, np.flatnonzero(keep)])
    pairs = problem.pairs[keep[problem.pairs["candidate"].to_numpy()]]
    pairs = pairs.assign(candidate=new_pos[pairs["candidate"].to_numpy()]).reset_index(drop=True)
    demand = problem.demand.assign(coverable=np.diff(a.indptr) > 0)
    return SitingProblem(candidates=cand[keep].reset_index(drop=True), parcels=problem.parcels, demand=demand,
                         coverage=a, pairs=pairs, notes=list(problem.notes)), removed, keep
