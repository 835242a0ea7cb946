"""Which vacant parcel or idle building can host which facility type (candidates with reasons)."""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely

from .._errors import LayerError
from ..standards import Standards, load_standards
from .settings import load_settings

#: Columns of the candidate table (one row per parcel × facility type), in order.
CANDIDATE_COLUMNS = [
    "parcel_id", "facility_type", "name_zh", "kind", "owner_type", "area_m2", "open_land_m2", "width_m",
    "floor_existing_m2", "host", "footprint_land_m2", "footprint_floor_m2", "uses_existing_floor",
    "build_cost_cny", "land_cost_cny", "feasible", "reason", "reason_zh",
]

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
    rules : overrides of ``data/siting.toml`` (see :func:`load_settings`).
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
    rules = load_settings(rules)
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
