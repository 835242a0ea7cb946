"""Constraint checks (约束条件核查, DOMAIN.md §10.2.9): what a plan must put to a 一事一议.

Four kinds of finding, each a rule of ``data/constraints.toml`` with its id, the seed's words and its source:

- ``K-HERITAGE`` — a bundle's compounds, or a proposed facility's parcel, overlap a 历史文化街区, a 文物保护范围 /
  建设控制地带 or a 历史建筑 (the ``heritage`` layer) by more than a tolerance [000:21];
- ``K-GREEN-LOSS`` — a proposed facility stands on green space (the ``green_space`` layer, or a vacant parcel of a
  green kind): the green area it takes is lost [000:29];
- ``K-GREEN-PARKING`` — parking on a green strip or green land (「绿化带硬化…改为停车位」 [000:607]): a proposed car
  park, or a bundle's parcel that the funding balance turns into a surface car park;
- ``K-FIRE-LANE`` — every vehicular road within reach of a proposed building facility is narrower than the fire-lane
  clear width (4.0 m, GB 50016-2014 7.1.8, unverified) where the roads carry ``width_m``;
- ``K-TENURE`` — a parcel's owner type (and land nature) and its proposed use imply a change of tenure: the project
  needs land procedures (「不涉及土地权属变化的项目，无需再办理用地手续」 [000:757]).

A finding is a flag, never a veto. :func:`check` returns every finding with its measure (m² of overlap, m of road
width), the threshold, a Chinese detail and action, and the geometry concerned; :func:`summary` counts them per
bundle for reports and the ledger.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely

from ._errors import ConfigError
from .datafiles import load_toml
from .schema import load_schema

__all__ = ["FINDING_COLUMNS", "OVERRIDE_KEYS", "ConstraintRule", "ConstraintSettings", "check", "load_settings",
           "rule_labels", "summary"]

#: columns of :func:`check`, in order (plus ``geometry``)
FINDING_COLUMNS = ("rule_id", "rule_zh", "object_kind", "object_id", "bundle_id", "feature_id", "measure", "unit",
                   "threshold", "detail_zh", "action_zh")
_THRESHOLDS = ("heritage_tolerance_m2", "green_tolerance_m2", "fire_lane_min_width_m", "fire_lane_search_m")
#: list settings and the vocabulary their values come from
_LISTS = {"green_strip_kinds": "green_kinds", "green_vacant_kinds": "vacant_kinds",
          "green_facility_types": "facility_types", "parking_facility_types": "facility_types",
          "operating_facility_types": "facility_types", "fire_lane_exempt_types": "facility_types",
          "fire_lane_excluded_classes": "road_classes"}
#: keys of a plan's ``[constraints]`` table
OVERRIDE_KEYS = (*_THRESHOLDS, *_LISTS, "disabled_rules", "tenure")
_STATUSES = ("none", "verify", "required")  # in rising severity
_USE_CLASSES = ("public", "operating")


@dataclass(frozen=True)
class ConstraintRule:
    """One rule of ``data/constraints.toml``: id, Chinese name, the seed's words, the action, source, verified."""

    id: str
    name_zh: str
    text_zh: str
    text_en: str
    action_zh: str
    source: str
    verified: bool


@dataclass(frozen=True)
class ConstraintSettings:
    """Checked settings of :func:`check` (see ``data/constraints.toml``).

    Attributes
    ----------
    rules : every rule, in the order of the data file (findings are sorted by it).
    disabled_rules : rule ids not checked.
    thresholds : ``heritage_tolerance_m2``, ``green_tolerance_m2`` (m²), ``fire_lane_min_width_m``,
        ``fire_lane_search_m`` (m).
    lists : the vocabularies of ``[lists]`` (green strip kinds, parking / operating / exempt facility types …).
    tenure : owner type → ``{"public": status, "operating": status}`` (status ``none`` / ``verify`` /
        ``required``); ``tenure_how_zh`` : owner type → how the land is obtained, in Chinese.
    land_natures : land nature → ``(status, how_zh)``; ``status_zh`` : status → its Chinese words.
    object_kinds_zh : object kind → Chinese label.
    """

    rules: tuple[ConstraintRule, ...]
    disabled_rules: tuple[str, ...]
    thresholds: Mapping[str, float]
    lists: Mapping[str, tuple[str, ...]]
    tenure: Mapping[str, Mapping[str, str]]
    tenure_how_zh: Mapping[str, str]
    land_natures: Mapping[str, tuple[str, str]]
    status_zh: Mapping[str, str]
    object_kinds_zh: Mapping[str, str]

    def enabled(self, rule_id: str) -> bool:
        return rule_id not in self.disabled_rules

    def rule(self, rule_id: str) -> ConstraintRule:
        return next(r for r in self.rules if r.id == rule_id)


# ---------------------------------------------------------------------------------------------- settings
def _vocabulary(name: str) -> tuple[str, ...]:
    if name == "facility_types":
        return tuple(load_toml("standards.toml")["facility_types"])
    return tuple(load_schema()["values"][name])


def _number(key: str, value: Any, spec: Mapping[str, Any]) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f"constraints.{key}: expected a number ({spec['unit']}), got {value!r}")
    v = float(value)
    if not math.isfinite(v) or not spec["min"] <= v <= spec["max"]:
        raise ConfigError(f"constraints.{key}: {value!r} is outside {spec['min']:g}–{spec['max']:g} {spec['unit']}")
    return v


def _names(key: str, value: Any, known: Sequence[str]) -> tuple[str, ...]:
    if isinstance(value, str) or not isinstance(value, Sequence) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"constraints.{key}: expected a list of names, got {value!r}")
    unknown = [v for v in value if v not in known]
    if unknown:
        raise ConfigError(f"constraints.{key}: unknown value(s) {', '.join(map(repr, unknown))}; "
                          f"known: {', '.join(known)}")
    return tuple(dict.fromkeys(value))


def _tenure(base: Mapping[str, Any], given: Any) -> dict[str, dict[str, str]]:
    out = {owner: {c: str(spec[c]) for c in _USE_CLASSES} for owner, spec in base.items()}
    if not isinstance(given, Mapping):
        raise ConfigError(f"constraints.tenure: expected a table {{owner_type = {{public = …, operating = …}}}}, "
                          f"got {given!r}")
    for owner, spec in given.items():
        if owner not in out:
            raise ConfigError(f"constraints.tenure: unknown owner type {owner!r}; known: {', '.join(out)}")
        if not isinstance(spec, Mapping):
            raise ConfigError(f"constraints.tenure.{owner}: expected a table {{public = …, operating = …}}, "
                              f"got {spec!r}")
        for use, status in spec.items():
            if use not in _USE_CLASSES:
                raise ConfigError(f"constraints.tenure.{owner}: unknown key {use!r}; known: "
                                  f"{', '.join(_USE_CLASSES)}")
            if status not in _STATUSES:
                raise ConfigError(f"constraints.tenure.{owner}.{use}: {status!r} is not one of "
                                  f"{', '.join(_STATUSES)}")
            out[owner][use] = status
    return out


def load_settings(overrides: Mapping[str, Any] | None = None) -> ConstraintSettings:
    """The constraint settings: ``data/constraints.toml`` with a plan's ``[constraints]`` overrides.

    Parameters
    ----------
    overrides : keys :data:`OVERRIDE_KEYS`: the thresholds (``heritage_tolerance_m2``, ``green_tolerance_m2`` in
        m², ``fire_lane_min_width_m``, ``fire_lane_search_m`` in m), the lists of ``[lists]`` (vocabulary values),
        ``disabled_rules`` (rule ids) and ``tenure`` (``{owner_type: {public|operating: none|verify|required}}``).

    Returns
    -------
    :class:`ConstraintSettings` (frozen).

    Raises
    ------
    ConfigError naming ``constraints`` and the key: unknown keys, rule ids, owner types or vocabulary values,
    wrong types, numbers outside their range (NaN and infinity included).

    Examples
    --------
    >>> load_settings({"fire_lane_min_width_m": 5.0}).thresholds["fire_lane_min_width_m"]
    5.0
    >>> load_settings({"fire_lane_width": 5.0})
    Traceback (most recent call last):
    ...
    gis_planner._errors.ConfigError: constraints: unknown key 'fire_lane_width'; known keys are \
heritage_tolerance_m2, green_tolerance_m2, fire_lane_min_width_m, fire_lane_search_m, green_strip_kinds, \
green_vacant_kinds, green_facility_types, parking_facility_types, operating_facility_types, fire_lane_exempt_types, \
fire_lane_excluded_classes, disabled_rules, tenure
    """
    data = load_toml("constraints.toml")
    if overrides is not None and not isinstance(overrides, Mapping):
        raise ConfigError(f"constraints: expected a table of settings, got {overrides!r}")
    given = dict(overrides or {})
    for key in given:
        if key not in OVERRIDE_KEYS:
            raise ConfigError(f"constraints: unknown key {key!r}; known keys are {', '.join(OVERRIDE_KEYS)}")
    rules = tuple(ConstraintRule(r["id"], r["name_zh"], r["text_zh"], r["text_en"], r["action_zh"], r["source"],
                                 bool(r["verified"])) for r in data["rules"])
    specs = data["thresholds"]
    thresholds = {k: _number(k, given.get(k, specs[k]["value"]), specs[k]) for k in _THRESHOLDS}
    lists = {k: _names(k, given.get(k, data["lists"][k]), _vocabulary(vocab)) for k, vocab in _LISTS.items()}
    disabled = _names("disabled_rules", given.get("disabled_rules", []), [r.id for r in rules])
    tenure = data["tenure"]
    return ConstraintSettings(
        rules=rules, disabled_rules=disabled, thresholds=thresholds, lists=lists,
        tenure=_tenure(tenure["owner_types"], given.get("tenure", {})),
        tenure_how_zh={k: v["how_zh"] for k, v in tenure["owner_types"].items()},
        land_natures={k: (v["status"], v["how_zh"]) for k, v in tenure["land_natures"].items()},
        status_zh=dict(tenure["status_zh"]), object_kinds_zh=dict(data["object_kinds"]))


def rule_labels(settings: ConstraintSettings | None = None) -> dict[str, str]:
    """Rule id → its Chinese name (the header of a count column, a legend entry).

    Examples
    --------
    >>> rule_labels()["K-HERITAGE"]
    '涉及历史文化保护'
    """
    return {r.id: r.name_zh for r in (settings or load_settings()).rules}


# ---------------------------------------------------------------------------------------------- helpers
def _split(value: Any) -> list[str]:
    """The ids of a ``;``-joined id list (None / NaN / "" → [])."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return []
    return [v for v in str(value).split(";") if v]


def _labels(vocabulary: str) -> dict[str, str]:
    """Vocabulary key → its first Chinese alias (schema.toml)."""
    return {k: str(v[0]) if v else k for k, v in load_schema()["values"][vocabulary].items()}


def _in_crs(gdf: gpd.GeoDataFrame | None, crs: Any) -> gpd.GeoDataFrame | None:
    """``gdf`` in ``crs`` (reprojected when both are set and differ); None or empty → None."""
    if gdf is None or not len(gdf):
        return None
    if crs is not None and gdf.crs is not None and gdf.crs != crs:
        return gdf.to_crs(crs)
    return gdf


def _text(df: pd.DataFrame, col: str, n: int | None = None) -> np.ndarray:
    """A column as an object array of str (missing → None); all None when the column is absent."""
    if col not in df.columns:
        return np.full(len(df) if n is None else n, None, dtype=object)
    return np.array([None if pd.isna(v) else str(v) for v in df[col]], dtype=object)


def _pairs(a: np.ndarray, b: np.ndarray, tolerance: float) -> tuple[np.ndarray, np.ndarray, np.ndarray,
                                                                       np.ndarray]:
    """Pairs (i, j) of polygons ``a[i]``, ``b[j]`` overlapping by more than ``tolerance`` m²: (i, j, area, piece)."""
    if len(a) == 0 or len(b) == 0:
        empty = np.array([], dtype=np.int64)
        return empty, empty, np.array([], dtype=float), np.array([], dtype=object)
    i, j = shapely.STRtree(b).query(a, predicate="intersects")
    pieces = shapely.intersection(a[i], b[j])
    area = shapely.area(pieces)
    keep = area > tolerance
    return i[keep], j[keep], area[keep], pieces[keep]


def _m2(value: float) -> str:
    return f"{value:,.0f}平方米"


@dataclass
class _Sites:
    """The objects checked: proposed facilities and parking parcels with their site polygon and bundle."""

    kind: np.ndarray          # object kind: proposed_facility / parking
    object_id: np.ndarray
    parcel_id: np.ndarray
    facility_type: np.ndarray  # None for a parking parcel of the funding balance
    bundle_id: np.ndarray
    geom: np.ndarray
    name_zh: np.ndarray        # how the detail names the object


def _parcel_bundles(bundles: pd.DataFrame) -> dict[str, str]:
    """parcel_id → the bundle it is attached to (bundles sorted by id: the first wins a shared parcel)."""
    owners: dict[str, str] = {}
    if "parcel_ids" not in bundles.columns:
        return owners
    b = bundles.sort_values("bundle_id", kind="stable")
    for bundle_id, ids in zip(b["bundle_id"].astype(str), b["parcel_ids"], strict=True):
        for pid in _split(ids):
            owners.setdefault(pid, bundle_id)
    return owners


def _sites(proposed: gpd.GeoDataFrame | None, parcel_uses: pd.DataFrame | None, vacant: gpd.GeoDataFrame | None,
           bundles: pd.DataFrame, settings: ConstraintSettings, crs: Any) -> _Sites:
    parcels = pd.Series(dtype=object) if vacant is None else pd.Series(
        np.asarray(vacant.geometry.array), index=_text(vacant, "parcel_id"), dtype=object)
    owners = pd.Series(_parcel_bundles(bundles), dtype=object)
    known = set(bundles["bundle_id"].astype(str)) if "bundle_id" in bundles.columns else set()
    names = _facility_names()
    parts = []
    if proposed is not None and len(proposed):
        p = _in_crs(proposed, crs)
        fid, pid, ftype = _text(p, "facility_id"), _text(p, "parcel_id"), _text(p, "facility_type")
        served = pd.Series(_text(p, "served_bundle_id"), dtype=object)
        site = pd.Series(pid, dtype=object).map(parcels)
        label = pd.Series(_text(p, "name_zh"), dtype=object).fillna(pd.Series(ftype, dtype=object).map(names))
        parts.append(pd.DataFrame({
            "kind": np.where(pd.Series(ftype).isin(settings.lists["parking_facility_types"]), "parking",
                             "proposed_facility"),
            "object_id": fid, "parcel_id": pid, "facility_type": ftype,
            # its parcel's bundle, else the bundle it serves most (when that bundle exists)
            "bundle_id": _first(pd.Series(pid, dtype=object).map(owners), served.where(served.isin(known))),
            # its parcel's polygon wins over the proposal's own geometry (a point, say)
            "geom": site.where(site.notna(), pd.Series(np.asarray(p.geometry.array), dtype=object)),
            "name_zh": "新增" + label.fillna(pd.Series(ftype, dtype=object)).astype(str) + "（" + fid.astype(str)
            + "，地块" + pid.astype(str) + "）"}))
    if parcel_uses is not None and len(parcel_uses) and "use" in parcel_uses.columns:
        park = parcel_uses[(parcel_uses["use"].astype(str) == "parking").to_numpy()
                           & pd.Series(_text(parcel_uses, "parcel_id")).isin(parcels.index).to_numpy()]
        pid = _text(park, "parcel_id")
        parts.append(pd.DataFrame({
            "kind": "parking", "object_id": pid, "parcel_id": pid, "facility_type": None,
            "bundle_id": _first(pd.Series(_text(park, "bundle_id"), dtype=object),
                                pd.Series(pid, dtype=object).map(owners)),
            "geom": pd.Series(pid, dtype=object).map(parcels), "name_zh": "地块" + pid.astype(str) + "地面停车场"}))
    cols = ("kind", "object_id", "parcel_id", "facility_type", "bundle_id", "geom", "name_zh")
    df = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame({c: [] for c in cols})
    df = df.astype(object).where(df.notna(), None)
    return _Sites(**{c: df[c].to_numpy(dtype=object) for c in cols})


def _first(a: pd.Series, b: pd.Series) -> np.ndarray:
    """Element-wise the first present of ``a`` and ``b`` (object array, None where neither is)."""
    a, b = a.to_numpy(dtype=object), b.to_numpy(dtype=object)
    return np.where(pd.notna(a), a, np.where(pd.notna(b), b, None))


def _facility_names() -> dict[str, str]:
    """Facility type key → its Chinese name (standards.toml)."""
    return {k: v.get("name_zh", k) for k, v in load_toml("standards.toml")["facility_types"].items()}


def _frame(rows: dict[str, list[Any]], geoms: list[Any], crs: Any) -> gpd.GeoDataFrame:
    df = pd.DataFrame({c: pd.Series(rows.get(c, []), dtype=object) for c in FINDING_COLUMNS})
    for c in ("bundle_id", "feature_id"):  # missing = None (not NaN), whatever pandas' text dtype
        df[c] = pd.Series([v if isinstance(v, str) else None for v in df[c]], dtype=object)
    df["measure"] = pd.to_numeric(df["measure"], errors="coerce").astype(float)
    df["threshold"] = pd.to_numeric(df["threshold"], errors="coerce").astype(float)
    return gpd.GeoDataFrame(df, geometry=gpd.GeoSeries(np.array(geoms, dtype=object), crs=crs), crs=crs)


class _Findings:
    """Accumulates findings column by column."""

    def __init__(self, settings: ConstraintSettings):
        self.settings = settings
        self.rows: dict[str, list[Any]] = {c: [] for c in FINDING_COLUMNS}
        self.geoms: list[Any] = []

    def add(self, rule_id: str, object_kind: str, object_id: Any, bundle_id: Any, feature_id: Any, measure: float,
            unit: str, threshold: float, detail_zh: str, geometry: Any, action_zh: str | None = None) -> None:
        rule = self.settings.rule(rule_id)
        values = (rule_id, rule.name_zh, object_kind, object_id, bundle_id, feature_id, measure, unit, threshold,
                  detail_zh, action_zh or rule.action_zh)
        for c, v in zip(FINDING_COLUMNS, values, strict=True):
            self.rows[c].append(v)
        self.geoms.append(geometry)


# ---------------------------------------------------------------------------------------------- the rules
def _heritage(out: _Findings, members: gpd.GeoDataFrame, sites: _Sites, heritage: gpd.GeoDataFrame | None) -> None:
    if heritage is None or not out.settings.enabled("K-HERITAGE"):
        return
    tol = out.settings.thresholds["heritage_tolerance_m2"]
    kinds = _labels("heritage_kinds")
    hid, hname, hkind = _text(heritage, "heritage_id"), _text(heritage, "name"), _text(heritage, "kind")
    hgeom = np.asarray(heritage.geometry.array)

    def what(j: int) -> str:
        return f"{hname[j] or hid[j]}（{kinds.get(hkind[j], hkind[j])}）"

    # bundles: their member compounds, one finding per bundle and heritage feature
    i, j, area, piece = _pairs(np.asarray(members.geometry.array), hgeom, 0.0)
    if len(i):
        cid, bid = _text(members, "compound_id")[i], _text(members, "bundle_id")[i]
        pairs = pd.DataFrame({"bundle_id": bid, "j": j, "compound_id": cid, "area": area, "k": np.arange(len(i))})
        pairs = pairs.sort_values(["bundle_id", "j", "compound_id"], kind="stable")
        for (bundle, jj), g in pairs.groupby(["bundle_id", "j"], sort=True):
            total = float(g["area"].sum())
            if total <= tol:
                continue
            parts = "、".join(f"{c}（{_m2(a)}）" for c, a in zip(g["compound_id"], g["area"], strict=True)
                             if a > 0)
            out.add("K-HERITAGE", "bundle", bundle, bundle, hid[jj], total, "m²", tol,
                    f"片区{bundle}的小区{parts}位于{what(int(jj))}内，合计重叠{_m2(total)}",
                    shapely.union_all(piece[g["k"].to_numpy()]))
    # proposals (and parking parcels): their site
    i, j, area, piece = _pairs(sites.geom, hgeom, tol)
    for a, b, m, g in zip(i, j, area, piece, strict=True):
        out.add("K-HERITAGE", sites.kind[a], sites.object_id[a], sites.bundle_id[a], hid[b], float(m), "m²", tol,
                f"{sites.name_zh[a]}与{what(int(b))}重叠{_m2(float(m))}", g)


def _green(out: _Findings, sites: _Sites, vacant: gpd.GeoDataFrame | None,
           green: gpd.GeoDataFrame | None) -> None:
    s = out.settings
    loss, parking_rule = s.enabled("K-GREEN-LOSS"), s.enabled("K-GREEN-PARKING")
    if not (loss or parking_rule) or not len(sites.object_id):
        return
    tol = s.thresholds["green_tolerance_m2"]
    green_types = set(s.lists["green_facility_types"])
    checked = np.array([t not in green_types for t in sites.facility_type], dtype=bool)
    is_parking = sites.kind == "parking"
    # a parcel of a green kind: the whole parcel is green
    kinds = {} if vacant is None else dict(zip(_text(vacant, "parcel_id"), _text(vacant, "kind"), strict=True))
    vkind_zh = _labels("vacant_kinds")
    on_green_land = np.array([kinds.get(p) in s.lists["green_vacant_kinds"] for p in sites.parcel_id], dtype=bool)
    on_green_land &= checked
    for a in np.flatnonzero(on_green_land):
        rule = "K-GREEN-PARKING" if is_parking[a] else "K-GREEN-LOSS"
        if not s.enabled(rule):
            continue
        m = float(shapely.area(sites.geom[a]))
        out.add(rule, sites.kind[a], sites.object_id[a], sites.bundle_id[a], sites.parcel_id[a], m, "m²", tol,
                f"{sites.name_zh[a]}建在{vkind_zh.get(kinds[sites.parcel_id[a]], '绿地')}上，占用绿地{_m2(m)}",
                sites.geom[a])
    if green is None:
        return
    gid, gname, gkind = _text(green, "green_id"), _text(green, "name"), _text(green, "kind")
    protected = (green["protected"].astype("boolean").fillna(False).to_numpy(dtype=bool)
                 if "protected" in green.columns else np.zeros(len(green), dtype=bool))
    gkind_zh = _labels("green_kinds")
    strips = set(s.lists["green_strip_kinds"])
    todo = np.flatnonzero(checked & ~on_green_land)
    i, j, area, piece = _pairs(sites.geom[todo], np.asarray(green.geometry.array), tol)
    for a, b, m, g in zip(todo[i], j, area, piece, strict=True):
        rule = "K-GREEN-PARKING" if is_parking[a] and gkind[b] in strips else "K-GREEN-LOSS"
        if not s.enabled(rule):
            continue
        verb = "停车占用" if is_parking[a] else "占用"
        note = "；属保护绿地" if protected[b] else ""
        out.add(rule, sites.kind[a], sites.object_id[a], sites.bundle_id[a], gid[b], float(m), "m²", tol,
                f"{sites.name_zh[a]}{verb}{gname[b] or gid[b]}（{gkind_zh.get(gkind[b], gkind[b])}）"
                f"{_m2(float(m))}{note}", g)


def _fire_lane(out: _Findings, sites: _Sites, roads: gpd.GeoDataFrame | None) -> None:
    s = out.settings
    if roads is None or not s.enabled("K-FIRE-LANE") or "width_m" not in roads.columns:
        return
    width_min, search = s.thresholds["fire_lane_min_width_m"], s.thresholds["fire_lane_search_m"]
    usable = ~pd.Series(_text(roads, "road_class")).isin(s.lists["fire_lane_excluded_classes"]).to_numpy()
    r = roads[usable]
    exempt = set(s.lists["fire_lane_exempt_types"])
    todo = np.flatnonzero(np.array([t is not None and t not in exempt for t in sites.facility_type], dtype=bool))
    if not len(r) or not len(todo):
        return
    rgeom = np.asarray(r.geometry.array)
    width = pd.to_numeric(r["width_m"], errors="coerce").to_numpy(dtype=float)
    rid, rname = _text(r, "road_id"), _text(r, "name")
    i, j = shapely.STRtree(rgeom).query(sites.geom[todo], predicate="dwithin", distance=search)
    if not len(i):
        return
    pairs = pd.DataFrame({"i": i, "j": j, "w": width[j]})
    # judged only when every road in reach has a width; the widest one decides (a fire engine takes the best way)
    agg = pairs.groupby("i").agg(unknown=("w", lambda w: bool(np.isnan(w).any())), widest=("w", "max"))
    narrow = agg[~agg["unknown"] & (agg["widest"] < width_min)]
    if not len(narrow):
        return
    best = pairs[pairs["i"].isin(narrow.index)].sort_values(["i", "w", "j"], ascending=[True, False, True])
    best = best.drop_duplicates("i")
    for k, jj, w in zip(best["i"], best["j"], best["w"], strict=True):
        a = todo[k]
        piece = shapely.intersection(rgeom[jj], shapely.buffer(sites.geom[a], search))
        n_roads = int((pairs["i"] == k).sum())
        others = f"（{search:g}米内{n_roads}条道路中最宽）" if n_roads > 1 else f"（{search:g}米内唯一道路）"
        out.add("K-FIRE-LANE", sites.kind[a], sites.object_id[a], sites.bundle_id[a], rid[jj], float(w), "m",
                width_min, f"{sites.name_zh[a]}的进出道路{rname[jj] or rid[jj]}路面宽{w:g}米{others}，"
                f"小于消防车道净宽{width_min:g}米", piece)


def _tenure_findings(out: _Findings, sites: _Sites, vacant: gpd.GeoDataFrame | None,
                     proposed: gpd.GeoDataFrame | None) -> None:
    s = out.settings
    if not s.enabled("K-TENURE") or not len(sites.object_id):
        return
    operating = set(s.lists["operating_facility_types"])
    use_class = np.where([t is None or t in operating for t in sites.facility_type], "operating", "public")
    uses = pd.DataFrame({"parcel_id": sites.parcel_id, "cls": use_class, "type": sites.facility_type,
                         "bundle_id": sites.bundle_id, "geom": sites.geom, "kind": sites.kind}, dtype=object)
    # parcel facts: the vacant layer, else the proposals' own copy (owner_type)
    facts = pd.DataFrame({"parcel_id": pd.Series(dtype=object)})
    if vacant is not None:
        facts = pd.DataFrame({c: _text(vacant, c) for c in ("parcel_id", "name", "owner_type", "landuse_nature",
                                                               "current_use")}, dtype=object)
        facts["surveyed"] = (vacant["needs_tenure_change"].to_numpy(dtype=object)
                             if "needs_tenure_change" in vacant.columns else None)
    elif proposed is not None:
        facts = pd.DataFrame({"parcel_id": _text(proposed, "parcel_id"), "name": _text(proposed, "parcel_name"),
                              "owner_type": _text(proposed, "owner_type")}, dtype=object).drop_duplicates("parcel_id")
    facts = facts.set_index("parcel_id")
    owner_zh, nature_zh, names = _labels("owner_types"), _labels("landuse_natures"), _facility_names()
    rank = {st: k for k, st in enumerate(_STATUSES)}
    for pid, g in uses.groupby("parcel_id", sort=True):
        cls = "public" if (g["cls"] == "public").any() else "operating"
        row = facts.loc[pid] if pid in facts.index else pd.Series(dtype=object)
        owner = row.get("owner_type") or "unknown"
        owner = owner if owner in s.tenure else "unknown"
        status, how = s.tenure[owner][cls], [s.tenure_how_zh.get(owner, "")]
        nature = row.get("landuse_nature")
        if nature in s.land_natures and rank[s.land_natures[nature][0]] > rank[status]:
            status, how = s.land_natures[nature][0], [*how, s.land_natures[nature][1]]
        surveyed = row.get("surveyed")
        if surveyed is not None and not pd.isna(surveyed):
            status, how = ("required", ["调查确认涉及土地权属变化"]) if bool(surveyed) else ("none", [])
        if status == "none":
            continue
        types = "、".join(sorted({names.get(t, t) if isinstance(t, str) else "地面停车场" for t in g["type"]}))
        facts_zh = "，".join(x for x in (owner_zh.get(owner, owner), nature_zh.get(nature) if nature else None,
                                         f"现状{row.get('current_use')}" if row.get("current_use") else None) if x)
        bundles = [b for b in g["bundle_id"] if isinstance(b, str)]
        action = f"一事一议：{s.status_zh[status]}" + ("（置换、划转、移交使用权、收购或征收）" if status == "required" else "")
        name = row.get("name")
        out.add("K-TENURE", "parcel", pid, bundles[0] if bundles else None, pid, np.nan, "", np.nan,
                f"地块{pid}{name or ''}（{facts_zh}）拟用于{types}（{'公共服务' if cls == 'public' else '经营性'}用途）："
                f"{'；'.join(h for h in how if h)}；{s.status_zh[status]}", g["geom"].iloc[0], action)


# ---------------------------------------------------------------------------------------------- public
def check(
    *,
    compounds: gpd.GeoDataFrame,
    bundles: pd.DataFrame,
    proposed: gpd.GeoDataFrame | None = None,
    vacant: gpd.GeoDataFrame | None = None,
    roads: gpd.GeoDataFrame | None = None,
    heritage: gpd.GeoDataFrame | None = None,
    green_space: gpd.GeoDataFrame | None = None,
    parcel_uses: pd.DataFrame | None = None,
    settings: ConstraintSettings | None = None,
) -> gpd.GeoDataFrame:
    """Every constraint finding of a plan, each flagged for 一事一议 with its rule id.

    Parameters
    ----------
    compounds : the run's compounds (``compound_id``, polygons; ``bundle_id`` — else membership comes from the
        bundles' ``member_ids``).
    bundles : the bundles (``bundle_id``; ``member_ids`` and ``parcel_ids``, ``;``-joined).
    proposed : proposed facilities (``facility_id``, ``parcel_id``, ``facility_type``; ``served_bundle_id``,
        ``name_zh``, ``owner_type``); each is checked on its parcel's polygon from ``vacant`` (else its own
        geometry). A proposal's bundle is its parcel's bundle, else ``served_bundle_id``.
    vacant : the vacant parcels (``parcel_id``, ``kind``; ``owner_type``, ``landuse_nature``, ``current_use``,
        ``needs_tenure_change``).
    roads : roads with ``road_class`` and ``width_m`` (metres; K-FIRE-LANE needs it).
    heritage, green_space : the optional constraint layers (schema.toml).
    parcel_uses : the funding balance's parcel uses (``parcel_id``, ``bundle_id``, ``use``; the rows of use
        ``parking`` are surface car parks checked by K-GREEN-PARKING and K-TENURE), e.g. ``FinanceResult.parcels``.
    settings : :func:`load_settings` (default: the data file).

    Returns
    -------
    GeoDataFrame with :data:`FINDING_COLUMNS` and ``geometry`` (the overlap, the road piece within reach or the
    parcel) in the compounds' CRS: ``rule_id``, ``rule_zh``, ``object_kind`` (``bundle`` / ``proposed_facility``
    / ``parking`` / ``parcel``), ``object_id`` (bundle, facility or parcel id), ``bundle_id`` (None: no bundle,
    区级统筹), ``feature_id`` (the heritage / green / road feature or parcel concerned), ``measure`` (m² of
    overlap, m of road width; NaN for tenure), ``unit``, ``threshold`` (the tolerance or minimum width),
    ``detail_zh``, ``action_zh``. Sorted by rule (data-file order), bundle (none last), object kind, object and
    feature.

    Examples
    --------
    >>> from shapely.geometry import box
    >>> c = gpd.GeoDataFrame({"compound_id": ["C1"], "bundle_id": ["B1"]}, geometry=[box(0, 0, 100, 100)],
    ...                      crs="EPSG:4547")
    >>> h = gpd.GeoDataFrame({"heritage_id": ["H1"], "name": ["鼓楼街区"], "kind": ["historic_district"]},
    ...                      geometry=[box(80, 0, 200, 50)], crs="EPSG:4547")
    >>> f = check(compounds=c, bundles=pd.DataFrame({"bundle_id": ["B1"]}), heritage=h)
    >>> f[["rule_id", "object_id", "feature_id", "measure"]].values.tolist()
    [['K-HERITAGE', 'B1', 'H1', 1000.0]]
    """
    settings = settings or load_settings()
    crs = compounds.crs
    bundles = pd.DataFrame(bundles) if bundles is not None else pd.DataFrame({"bundle_id": []})
    if "bundle_id" in compounds.columns:
        members = compounds[compounds["bundle_id"].notna()]
    else:
        owner = {m: str(b) for b, ids in zip(bundles["bundle_id"], bundles.get("member_ids", []), strict=False)
                 for m in _split(ids)}
        members = compounds.assign(bundle_id=compounds["compound_id"].astype(str).map(owner))
        members = members[members["bundle_id"].notna()]
    vacant, roads = _in_crs(vacant, crs), _in_crs(roads, crs)
    heritage, green_space = _in_crs(heritage, crs), _in_crs(green_space, crs)
    sites = _sites(proposed, parcel_uses, vacant, bundles, settings, crs)
    out = _Findings(settings)
    _heritage(out, members, sites, heritage)
    _green(out, sites, vacant, green_space)
    _fire_lane(out, sites, roads)
    _tenure_findings(out, sites, vacant, proposed)
    found = _frame(out.rows, out.geoms, crs)
    order = {r.id: k for k, r in enumerate(settings.rules)}
    kinds = {k: n for n, k in enumerate(settings.object_kinds_zh)}
    keys = pd.DataFrame({"r": found["rule_id"].map(order), "nb": found["bundle_id"].isna(),
                         "b": found["bundle_id"].fillna(""), "k": found["object_kind"].map(kinds),
                         "o": found["object_id"].astype(str), "f": found["feature_id"].fillna("").astype(str)})
    idx = keys.sort_values(["r", "nb", "b", "k", "o", "f"], kind="stable").index
    return found.loc[idx].reset_index(drop=True)


def summary(findings: pd.DataFrame, settings: ConstraintSettings | None = None) -> pd.DataFrame:
    """Findings counted per bundle, for the reports and the ledger.

    Parameters
    ----------
    findings : :func:`check`'s output.
    settings : for the rule order and Chinese names (default: the data file).

    Returns
    -------
    DataFrame, one row per bundle with a finding (findings of no bundle in a last row with ``bundle_id`` None):
    ``bundle_id``, one count column per rule id (every rule, in data-file order), ``n_findings`` and
    ``summary_zh`` (e.g. "涉及历史文化保护1项；占用绿地2项"). :func:`rule_labels` gives the Chinese header of each
    rule column.

    Examples
    --------
    >>> f = pd.DataFrame({"rule_id": ["K-HERITAGE", "K-GREEN-LOSS", "K-GREEN-LOSS"],
    ...                   "bundle_id": ["B1", "B1", None]})
    >>> summary(f)[["bundle_id", "K-HERITAGE", "K-GREEN-LOSS", "summary_zh"]].values.tolist()
    [['B1', 1, 1, '涉及历史文化保护1项；占用绿地1项'], [None, 0, 1, '占用绿地1项']]
    """
    settings = settings or load_settings()
    ids = [r.id for r in settings.rules]
    labels = rule_labels(settings)
    cols = ["bundle_id", *ids, "n_findings", "summary_zh"]
    if findings is None or not len(findings):
        return pd.DataFrame({c: pd.Series(dtype=object if c in ("bundle_id", "summary_zh") else "int64")
                             for c in cols})
    key = findings["bundle_id"].astype(object).where(findings["bundle_id"].notna(), "\uffff")
    counts = pd.crosstab(key, findings["rule_id"]).reindex(columns=ids, fill_value=0).sort_index()
    out = counts.reset_index(names="bundle_id")
    out["bundle_id"] = pd.Series([None if b == "\uffff" else b for b in out["bundle_id"]], dtype=object)
    out["n_findings"] = counts.sum(axis=1).to_numpy()
    out["summary_zh"] = ["；".join(f"{labels[r]}{int(n)}项" for r, n in row.items() if n)
                         for _, row in counts.iterrows()]
    out.columns.name = None
    return out[cols].astype({r: "int64" for r in ids})
