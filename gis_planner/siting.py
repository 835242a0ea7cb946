"""Siting missing facilities on vacant parcels and idle buildings (补短板): candidates, MCLP / LSCP, greedy."""

from __future__ import annotations

import copy
import time
import tomllib
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
from scipy.optimize import LinearConstraint, milp
from scipy.sparse import csr_array, diags_array, hstack, vstack

from ._errors import ConfigError, LayerError
from .coverage import assess, locate, pair_distances, summarise
from .network import WalkGraph
from .standards import Standards, load_standards

__all__ = [
    "CANDIDATE_COLUMNS",
    "PROPOSED_COLUMNS",
    "load_rules",
    "candidates",
    "SitingProblem",
    "covering_pairs",
    "coverage_matrix",
    "Solution",
    "solve",
    "before_after",
    "SitingResult",
    "propose",
]

#: Columns of the candidate table (one row per parcel × facility type), in order.
CANDIDATE_COLUMNS = [
    "parcel_id", "facility_type", "name_zh", "kind", "owner_type", "area_m2", "open_land_m2", "width_m",
    "floor_existing_m2", "host", "footprint_land_m2", "footprint_floor_m2", "uses_existing_floor",
    "build_cost_cny", "land_cost_cny", "feasible", "reason", "reason_zh",
]

#: Columns of the proposed-facilities layer (before ``geometry``), in order.
PROPOSED_COLUMNS = [
    "facility_id", "parcel_id", "parcel_name", "kind", "owner_type", "facility_type", "name_zh", "tier",
    "radius_m", "host", "footprint_land_m2", "footprint_floor_m2", "households_newly_covered",
    "compounds_newly_covered", "weight_newly_covered", "build_cost_cny", "land_cost_cny", "cost_cny",
    "subdistrict", "reason_zh", "reason_en",
]

_HOST_EN = {"land": "on open land", "new_building": "in a new building on open land",
            "existing_floor": "by converting existing floor space"}
_REASON_ZH = {
    "kind_unavailable": "该类存量资源默认不可用于新建设施",
    "owner_unavailable": "权属类型默认不可用",
    "not_allowed_use": "不在该地块允许用途内",
    "kind_excludes_type": "该类用地不宜设置此类设施",
    "no_land_use": "该地块没有可用空地",
    "too_small_land": "用地面积不足",
    "too_narrow": "地块宽度不足",
    "no_floor": "没有可用建筑面积",
    "too_small_floor": "建筑面积不足",
}


# ------------------------------------------------------------------------------------------------ rules
@cache
def _raw_rules() -> dict[str, Any]:
    with resources.files("gis_planner").joinpath("data/siting.toml").open("rb") as fh:
        return tomllib.load(fh)


def _merge_flat(base: dict[str, Any], given: Mapping[str, Any], where: str) -> dict[str, Any]:
    """Merge one table of scalar settings, checking keys and that each value has its default's kind."""
    out = dict(base)
    for key, value in given.items():
        if key not in base:
            raise ConfigError(f"{where}: unknown key {key!r}; known keys are {', '.join(base)}")
        default = base[key]
        if isinstance(default, bool) or isinstance(value, bool):
            ok = isinstance(default, bool) and isinstance(value, bool)
        elif isinstance(default, int | float):
            ok = isinstance(value, int | float) and np.isfinite(value) and value >= 0
        else:
            ok = isinstance(value, type(default))
        if not ok:
            raise ConfigError(f"{where}.{key}: expected a value like {default!r} (≥ 0 for numbers), got {value!r}")
        out[key] = value
    return out


def load_rules(rules: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The siting parameters of ``data/siting.toml`` with ``rules`` overrides merged in.

    Parameters
    ----------
    rules : overrides mirroring the TOML tables, e.g. ``{"solve": {"p_per_type": 3},
        "owners": {"private": {"available": True}}, "weights": {"priority": {"market": 1.2}}}``. New kinds and
        owner types may be added; unknown keys elsewhere raise.

    Returns
    -------
    dict with ``solve``, ``weights``, ``land``, ``types``, ``kinds``, ``owners``.

    Examples
    --------
    >>> load_rules({"solve": {"p_per_type": 3}})["solve"]["p_per_type"]
    3
    >>> load_rules()["weights"]["priority"]["elderly_daycare"]
    2.0
    """
    base = copy.deepcopy(_raw_rules())
    if not rules:
        return base
    if not isinstance(rules, Mapping):
        raise ConfigError(f"siting: expected a table of settings, got {rules!r}")
    merged = base
    for key, value in rules.items():
        if key not in base:
            raise ConfigError(f"siting: unknown key {key!r}; known keys are {', '.join(base)}")
        if not isinstance(value, Mapping):
            raise ConfigError(f"siting.{key}: expected a table, got {value!r}")
        if key in ("kinds", "owners"):
            table = dict(base[key])
            for name, spec in value.items():
                if not isinstance(spec, Mapping):
                    raise ConfigError(f"siting.{key}.{name}: expected a table, got {spec!r}")
                table[name] = {**table.get(name, {}), **spec}
            merged[key] = table
        elif key == "weights":
            w = dict(base["weights"])
            for k, v in value.items():
                if k == "priority":
                    w["priority"] = {**w["priority"], **{str(t): float(m) for t, m in v.items()}}
                elif k in w:
                    w[k] = v
                else:
                    raise ConfigError(f"siting.weights: unknown key {k!r}")
            merged["weights"] = w
        else:
            merged[key] = _merge_flat(base[key], value, f"siting.{key}")
    return merged


def _priority(rules: Mapping[str, Any], types: Sequence[str]) -> np.ndarray:
    prio = rules["weights"]["priority"]
    return np.array([float(prio.get(t, 1.0)) for t in types], dtype=float)


# ------------------------------------------------------------------------------------------------ candidates
def _parse_uses(values: pd.Series, standards: Standards) -> list[set[str] | None]:
    """``allowed_uses`` text → set of type keys (None = any use). Unknown names warn and are ignored."""
    out: list[set[str] | None] = []
    unknown: set[str] = set()
    for text in values.to_numpy(dtype=object):
        if text is None or (isinstance(text, float) and np.isnan(text)) or not str(text).strip():
            out.append(None)
            continue
        parts = [p.strip() for p in str(text).replace("，", ",").replace("、", ",").replace(";", ",").split(",")]
        keys = {standards.type_key(p) for p in parts if p}
        unknown |= {p for p in parts if p and standards.type_key(p) is None}
        out.append({k for k in keys if k})
    if unknown:
        warnings.warn(f"vacant allowed_uses: unknown facility type(s) ignored: {', '.join(sorted(unknown))}",
                      UserWarning, stacklevel=3)
    return out


def _siteable_types(standards: Standards, rules: Mapping[str, Any], types: Sequence[str] | None) -> list[str]:
    ft = standards.facility_types
    keys = list(ft.index) if types is None else standards.profile_types(types)
    excluded = set(rules["types"]["exclude"])
    land = ft["min_land_m2"].fillna(0.0)
    floor = ft["min_floor_m2"].fillna(0.0)
    return [t for t in keys if t not in excluded and (land[t] > 0 or floor[t] > 0)]


def candidates(
    vacant: gpd.GeoDataFrame,
    standards: Standards | None = None,
    rules: Mapping[str, Any] | None = None,
    *,
    types: str | Sequence[str] | None = None,
) -> pd.DataFrame:
    """Which vacant parcel or idle building can host which facility type, and why not.

    A land-based type (``min_land_m2`` > 0) needs a kind that hosts land uses, open land ≥ ``min_land_m2``
    (open land = parcel area × the kind's ``open_land_share``) and a width ≥ ``min_width_m`` (width = the
    diameter of the parcel's largest inscribed circle). A floor-only type (``min_land_m2`` = 0) goes into
    existing floor space (``floor_area_m2`` ≥ ``min_floor_m2``, kinds with ``floor = "existing"``) or into a
    new building on the open land, taking ``min_floor_m2 / new_building_plot_ratio`` of land (kinds with
    ``floor = "new"``; the parcel must then be at least ``new_building_min_width_m`` wide). ``allowed_uses`` (empty = any), the kind's and the owner type's availability, and the
    kind's ``exclude_types`` restrict it further. Several types may share a parcel while their footprints
    fit (checked by :func:`solve`).

    Parameters
    ----------
    vacant : vacant layer (metric CRS) with ``parcel_id``, ``kind`` and optional ``owner_type``,
        ``floor_area_m2`` (m²), ``allowed_uses``, ``land_value_cny``.
    standards : facility standards (``min_land_m2``, ``min_floor_m2``, ``min_width_m``, ``build_cost_cny``).
    rules : overrides of ``data/siting.toml`` (see :func:`load_rules`).
    types : facility types considered (a profile name or keys); default every type with a land or floor
        minimum that is not excluded in ``[types]``.

    Returns
    -------
    DataFrame with :data:`CANDIDATE_COLUMNS`, one row per parcel × type (parcel order, then type order):
    areas in m², width in metres, ``host`` (``land`` / ``new_building`` / ``existing_floor``), footprints
    (m² of land taken, m² of floor of the facility), ``build_cost_cny`` (CNY, conversion factor applied),
    ``land_cost_cny`` (the parcel's acquisition cost, charged once per parcel), ``feasible`` and the first
    failing check as ``reason`` code and ``reason_zh`` text.

    Examples
    --------
    >>> from shapely import box
    >>> v = gpd.GeoDataFrame({"parcel_id": ["strip", "plot"], "kind": ["scattered_plot", "vacant_land"]},
    ...                      geometry=[box(0, 0, 8, 250), box(20, 0, 60, 50)], crs=32650)
    >>> c = candidates(v, types=["kindergarten"])
    >>> c[["parcel_id", "width_m", "feasible", "reason"]].to_dict("records")
    [{'parcel_id': 'strip', 'width_m': 8.0, 'feasible': False, 'reason': 'too_narrow'}, \
{'parcel_id': 'plot', 'width_m': 40.0, 'feasible': True, 'reason': ''}]
    """
    standards = standards or load_standards()
    rules = load_rules(rules)
    if not isinstance(vacant, gpd.GeoDataFrame):
        raise LayerError(f"layer 'vacant': expected a GeoDataFrame, got {type(vacant).__name__}")
    for col in ("parcel_id", "kind"):
        if col not in vacant:
            raise LayerError(f"layer 'vacant': missing column {col!r}")
    tkeys = _siteable_types(standards, rules, types)
    ft = standards.facility_types.loc[tkeys]
    n_p, n_t = len(vacant), len(tkeys)
    geoms = vacant.geometry.array.to_numpy()
    area = shapely.area(geoms)
    tol = float(rules["land"]["width_tolerance_m"])
    width = np.zeros(n_p)
    poly = shapely.get_type_id(geoms) >= 3
    if poly.any():
        width[poly] = np.round(2.0 * shapely.length(shapely.maximum_inscribed_circle(geoms[poly], tolerance=tol)), 2)
    kind = vacant["kind"].astype(str).to_numpy(dtype=object)
    owner = (vacant["owner_type"].fillna("unknown").astype(str).to_numpy(dtype=object)
             if "owner_type" in vacant else np.full(n_p, "unknown", dtype=object))
    kinds, owners = rules["kinds"], rules["owners"]
    unknown_kinds = sorted(set(kind) - set(kinds))
    if unknown_kinds:
        warnings.warn(f"siting: vacant kind(s) {', '.join(unknown_kinds)} not in siting.toml [kinds]; treated "
                      f"like vacant_land", UserWarning, stacklevel=2)
    kspec = [kinds.get(k, kinds["vacant_land"]) for k in kind]
    ospec = [owners.get(o, owners["unknown"]) for o in owner]
    k_avail = np.array([bool(s.get("available", True)) for s in kspec])
    k_land = np.array([bool(s.get("host_land", True)) for s in kspec])
    k_floor = np.array([str(s.get("floor", "new")) for s in kspec], dtype=object)
    share = np.array([float(s.get("open_land_share", 1.0)) for s in kspec])
    o_avail = np.array([bool(s.get("available", True)) for s in ospec])
    o_cost = np.array([bool(s.get("land_cost", False)) for s in ospec])
    floor_exist = (pd.to_numeric(vacant["floor_area_m2"], errors="coerce").fillna(0.0).to_numpy(float)
                   if "floor_area_m2" in vacant else np.zeros(n_p))
    floor_exist = np.where(k_floor == "existing", floor_exist, 0.0)
    land_value = (pd.to_numeric(vacant["land_value_cny"], errors="coerce").fillna(0.0).to_numpy(float)
                  if "land_value_cny" in vacant else np.zeros(n_p))
    land_cost = np.where(o_cost, land_value, 0.0)
    open_land = np.where(k_land | (k_floor == "new"), area * share, 0.0)
    allowed = _parse_uses(vacant["allowed_uses"], standards) if "allowed_uses" in vacant else [None] * n_p
    # parcel × type matrices
    allow = np.array([[u is None or t in u for t in tkeys] for u in allowed], dtype=bool).reshape(n_p, n_t)
    excl = np.array([[t in set(s.get("exclude_types", [])) for t in tkeys] for s in kspec],
                    dtype=bool).reshape(n_p, n_t)
    t_land = ft["min_land_m2"].fillna(0.0).to_numpy(float)[None, :]
    t_floor = ft["min_floor_m2"].fillna(0.0).to_numpy(float)[None, :]
    t_width = ft["min_width_m"].fillna(0.0).to_numpy(float)[None, :]
    t_cost = ft["build_cost_cny"].fillna(0.0).to_numpy(float)[None, :]
    is_land = np.broadcast_to(t_land > 0, (n_p, n_t))
    ratio = float(rules["land"]["new_building_plot_ratio"])
    mode_exist = (k_floor == "existing")[:, None]
    mode_new = (k_floor == "new")[:, None]
    land_need_new = t_floor / ratio
    host = np.where(is_land, "land", np.where(mode_exist, "existing_floor",
                                              np.where(mode_new, "new_building", "")))
    fp_land = np.where(is_land, t_land, np.where(mode_new & ~mode_exist, land_need_new, 0.0))
    fp_floor = np.broadcast_to(t_floor, (n_p, n_t)).copy()
    uses_exist = ~is_land & mode_exist
    reason = np.full((n_p, n_t), "", dtype=object)

    def fail(mask: np.ndarray, code: str) -> None:
        reason[(reason == "") & mask] = code

    fail(~k_avail[:, None] & np.ones((1, n_t), bool), "kind_unavailable")
    fail(~o_avail[:, None] & np.ones((1, n_t), bool), "owner_unavailable")
    fail(~allow, "not_allowed_use")
    fail(excl, "kind_excludes_type")
    fail(is_land & ~k_land[:, None], "no_land_use")
    fail(is_land & (open_land[:, None] < t_land), "too_small_land")
    fail(is_land & (width[:, None] < t_width - tol), "too_narrow")
    fail(~is_land & ~mode_exist & ~mode_new, "no_floor")
    fail(~is_land & mode_exist & (floor_exist[:, None] <= 0), "no_floor")
    fail(~is_land & mode_exist & (floor_exist[:, None] < t_floor), "too_small_floor")
    fail(~is_land & mode_new & ~mode_exist & (open_land[:, None] < land_need_new), "too_small_land")
    min_bw = float(rules["land"]["new_building_min_width_m"])
    fail(~is_land & mode_new & ~mode_exist & (width[:, None] < min_bw - tol), "too_narrow")
    factor = float(rules["land"]["existing_floor_cost_factor"])
    cost = np.where(uses_exist, t_cost * factor, np.broadcast_to(t_cost, (n_p, n_t)))
    rep = np.repeat
    out = pd.DataFrame({
        "parcel_id": rep(vacant["parcel_id"].astype(str).to_numpy(dtype=object), n_t),
        "facility_type": np.tile(np.array(tkeys, dtype=object), n_p),
        "name_zh": np.tile(ft["name_zh"].to_numpy(dtype=object), n_p),
        "kind": rep(kind, n_t), "owner_type": rep(owner, n_t),
        "area_m2": rep(area, n_t), "open_land_m2": rep(open_land, n_t), "width_m": rep(width, n_t),
        "floor_existing_m2": rep(floor_exist, n_t), "host": host.ravel(),
        "footprint_land_m2": fp_land.ravel(), "footprint_floor_m2": fp_floor.ravel(),
        "uses_existing_floor": uses_exist.ravel(), "build_cost_cny": cost.ravel(),
        "land_cost_cny": rep(land_cost, n_t), "feasible": (reason == "").ravel(), "reason": reason.ravel(),
    })
    out["reason_zh"] = _reason_text(out, ft, min_bw)
    return out[CANDIDATE_COLUMNS]


def _reason_text(c: pd.DataFrame, ft: pd.DataFrame, min_building_width: float) -> np.ndarray:
    """Chinese text for each candidate's failing check (empty when feasible)."""
    land = c["facility_type"].map(ft["min_land_m2"]).fillna(0.0)
    floor = c["facility_type"].map(ft["min_floor_m2"]).fillna(0.0)
    width = c["facility_type"].map(ft["min_width_m"]).fillna(0.0)
    base = c["reason"].map(_REASON_ZH).fillna("")
    detail = pd.Series("", index=c.index, dtype=object)
    r = c["reason"]
    m = r == "too_narrow"
    need = np.where(c.loc[m, "host"] == "new_building", min_building_width, width[m])
    detail[m] = ("（宽度" + c.loc[m, "width_m"].round(1).astype(str) + "米，" + c.loc[m, "name_zh"]
                 + "至少需" + pd.Series(need, index=c.index[m]).round(0).astype(int).astype(str) + "米）")
    m = r == "too_small_land"
    detail[m] = ("（可用空地" + c.loc[m, "open_land_m2"].round(0).astype(int).astype(str) + "平方米，需"
                 + np.maximum(land[m], c.loc[m, "footprint_land_m2"]).round(0).astype(int).astype(str) + "平方米）")
    m = r == "too_small_floor"
    detail[m] = ("（建筑面积" + c.loc[m, "floor_existing_m2"].round(0).astype(int).astype(str) + "平方米，需"
                 + floor[m].round(0).astype(int).astype(str) + "平方米）")
    return (base + detail).to_numpy(dtype=object)


# ------------------------------------------------------------------------------------------------ problem
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
    mult = _priority(rules, types)[d_type]
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
    max_snap_m: float = 500.0,
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
    rules = load_rules(rules)
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
    detour = float(standards.network.get("detour_factor", 1.3))
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
    max_snap_m: float = 500.0,
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
    rules = load_rules(rules)
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


# ------------------------------------------------------------------------------------------------ solve
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
    cfg = load_rules(rules)["solve"] if rules else _raw_rules()["solve"]
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


# ------------------------------------------------------------------------------------------------ results
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
    mult = _priority(rules, list(c["facility_type"]))
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
    max_snap_m: float = 500.0,
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
    rules = load_rules(rules)
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
    sol = solve(problem, p=p, budget=budget, method=method, time_limit=time_limit, rules=rules)
    proposed = _proposals(problem, sol, vacant, compounds, boundaries, standards, rules)
    ba = before_after(coverage_table, compounds, problem, sol, standards)
    msgs = list(problem.notes)
    msgs.append(f"siting: {sol.method.upper()} {sol.status} ({sol.solver}), {sol.n_selected} facilities on "
                f"{proposed['parcel_id'].nunique()} parcels, {int(proposed['households_newly_covered'].sum()):,} "
                f"households newly covered (summed over types), gap {sol.gap:.2%}, {sol.seconds:.2f} s")
    return SitingResult(proposed=proposed, before_after=ba, candidates=cands, problem=problem, solution=sol,
                        messages=msgs)
