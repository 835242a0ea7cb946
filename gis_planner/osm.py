"""OpenStreetMap extract (.osm, .osm.pbf, .osm.bz2) → the five gis_planner layers, by a tag mapping kept as data.

The tag mapping is ``data/osm_tags.toml``; what OSM does not record (which buildings are homes, density bounds, the
size of a district mapped as one polygon, candidate projects' revenue) is estimated from ``data/osm_estimates.toml``
and every estimate is flagged in the layers and counted by tag in the :class:`OsmReport`.

Length: one pass over the file feeds five layers whose estimates share the scan, the metric CRS and the report;
split up, each part would re-derive them.
"""

from __future__ import annotations

import os
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import osmium
import osmium.filter
import osmium.geom
import pandas as pd
import shapely

from gis_planner._errors import ConfigError, LayerError
from gis_planner.datafiles import load_toml
from gis_planner.schema import layer_spec

__all__ = ["OsmReport", "read_osm", "import_osm", "load_osm_tags", "SUPPORTED_SUFFIXES", "LAYER_NAMES",
           "EXTRA_COLUMNS", "SPLIT_FLAG"]

#: File name endings read (pyosmium picks the format and compression from them).
SUPPORTED_SUFFIXES = (".osm", ".osm.pbf", ".pbf", ".osm.bz2", ".osm.gz")
LAYER_NAMES = ("compounds", "vacant", "facilities", "roads", "projects")
ATTRIBUTION = "© OpenStreetMap contributors (ODbL 1.0)"
ESTIMATED_FIELDS = "households,floor_area_m2"
#: Flag (in ``estimated_fields`` and ``osm_flags``) of a compound too large to be one compound.
SPLIT_FLAG = "split_or_verify"
#: Columns the importer adds beyond the schema: ``osm_flags`` says what to check in a compound (拆分或核实 ...);
#: ``estimated_fields`` / ``estimate_source`` mark a candidate project's estimated revenue and its rate's source.
EXTRA_COLUMNS = {"compounds": {"osm_flags": "str"},
                 "projects": {"estimated_fields": "str", "estimate_source": "str"}}
FLAG_TEXT = {
    SPLIT_FLAG: "拆分或核实 split or verify: {ha:.1f} ha ≥ {limit:g} ha, a district mapped as one polygon",
    "density_capped": "按密度上限截断 density capped at {cap:.0f} 户/ha (plot ratio {far:g})",
    "buildings_unmapped": "楼栋未测绘 buildings not mapped: households from {how}",
}

# Output columns per layer (names and types are those of gis_planner/data/schema.toml).
_COLUMNS: dict[str, dict[str, str]] = {
    "compounds": {
        "compound_id": "str", "name": "str", "build_year": "Int64", "households": "Int64",
        "floor_area_m2": "float64", "n_buildings": "Int64", "district": "str", "subdistrict": "str",
        "community": "str", "estimated_fields": "str", "osm_flags": "str",
    },
    "vacant": {"parcel_id": "str", "kind": "str", "name": "str", "owner_type": "str", "allowed_uses": "str"},
    "facilities": {"facility_id": "str", "facility_type": "str", "name": "str", "capacity": "float64"},
    "roads": {"road_id": "str", "road_class": "str", "name": "str", "walkable": "boolean"},
    "projects": {
        "project_id": "str", "kind": "str", "name": "str", "net_revenue_cny": "float64",
        "capex_cny": "float64", "estimated_fields": "str", "estimate_source": "str",
    },
}
_YEAR_RE = re.compile(r"^~?\s*(\d{4})(?:-\d{2}(?:-\d{2})?)?$")
_NUMBER_RE = re.compile(r"\d+(?:\.\d+)?")



# ---------------------------------------------------------------------------------------------- report
@dataclass
class OsmReport:
    """What an OSM import produced, estimated, skipped and clipped.

    Attributes
    ----------
    source : the file read.
    clip_box : (W, S, E, N) in degrees, or None when nothing was clipped.
    clip_source : ``"bbox argument"``, ``"file bounds"`` or ``"none"``.
    counts : features per output layer.
    facility_types : facilities per ``facility_type``.
    facility_tags : facilities per OSM tag that mapped them (``amenity=school`` ...).
    unmapped_tags : objects with a service tag no rule maps (dropped), per ``key=value``.
    excluded_tags : objects dropped on purpose by a rule (rail platforms, senior high schools).
    skipped : objects that could not be used, per reason.
    estimated : estimated field → how it was estimated.
    estimate_methods : compound_id → ``"buildings"``, ``"city_density"`` or ``"far"``.
    estimated_tags : objects whose values were estimated, per tag and use (``building=apartments (homes)``,
        ``landuse=industrial → project old_factory``).
    dropped_tags : objects left out on purpose, per tag and reason (``building=school (not a home)``,
        ``landuse=greenfield (narrower than 10 m)``, ``leisure=garden (excluded: …)``).
    compound_flags : compound_id → what to check (``split_or_verify``, ``density_capped`` …, ``;``-joined).
    projects : candidate project kind → (count, Σ net_revenue_cny).
    params : the estimation parameters used.
    metric_crs : CRS used for areas (e.g. ``EPSG:32650``).
    unknown_fields : fields left empty because OSM does not record them.
    warnings : human-readable warnings.
    """

    source: str
    clip_box: tuple[float, float, float, float] | None = None
    clip_source: str = "none"
    counts: dict[str, int] = field(default_factory=dict)
    facility_types: dict[str, int] = field(default_factory=dict)
    facility_tags: dict[str, int] = field(default_factory=dict)
    unmapped_tags: dict[str, int] = field(default_factory=dict)
    excluded_tags: dict[str, int] = field(default_factory=dict)
    skipped: dict[str, int] = field(default_factory=dict)
    estimated: dict[str, str] = field(default_factory=dict)
    estimate_methods: dict[str, str] = field(default_factory=dict)
    estimated_tags: dict[str, int] = field(default_factory=dict)
    dropped_tags: dict[str, int] = field(default_factory=dict)
    compound_flags: dict[str, str] = field(default_factory=dict)
    projects: dict[str, tuple[int, float]] = field(default_factory=dict)
    params: dict[str, float] = field(default_factory=dict)
    metric_crs: str = ""
    unknown_fields: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        lines = [f"OpenStreetMap import 导入: {self.source}", f"Data 数据: {ATTRIBUTION}"]
        if self.clip_box is None:
            lines.append("Clipping 裁剪: none — the file has no bounds and no bbox was given (未裁剪)")
        else:
            w, s, e, n = self.clip_box
            lines.append(f"Clipping 裁剪 ({self.clip_source}): W {w:.6f} S {s:.6f} E {e:.6f} N {n:.6f}")
        titles = {"compounds": "小区", "vacant": "存量用地", "facilities": "服务设施", "roads": "道路",
                  "projects": "收益项目"}
        lines.append("Layers 图层:")
        for name in LAYER_NAMES:
            lines.append(f"  {name} {titles[name]}: {self.counts.get(name, 0)}")
        if self.facility_types:
            lines.append("Facilities by type 设施类型: " + ", ".join(
                f"{k} {v}" for k, v in sorted(self.facility_types.items())))
        methods = Counter(self.estimate_methods.values())
        lines.append(
            "ESTIMATED 估算值: households (户数) and floor_area_m2 (建筑面积) are NOT from OSM; they are "
            f"estimates ({methods['buildings']} compounds from mapped homes, {methods['city_density']} from "
            f"the city's median density, {methods['far']} from land area × plot ratio) and are "
            "flagged in the column estimated_fields (估算字段). Replace them with surveyed figures.")
        for fld, how in self.estimated.items():
            lines.append(f"  {fld}: {how}")
        if self.estimated_tags:
            lines.append("Estimated, by tag 按标签估算: " + ", ".join(
                f"{k} {v}" for k, v in sorted(self.estimated_tags.items())))
        if self.dropped_tags:
            lines.append(f"Dropped, by tag 按标签舍弃 ({sum(self.dropped_tags.values())} objects): " + ", ".join(
                f"{k} {v}" for k, v in sorted(self.dropped_tags.items())))
        flagged = Counter(f for v in self.compound_flags.values() for f in v.split(";") if f)
        if flagged:
            lines.append("Compounds to check 待核实小区 (column osm_flags): " + ", ".join(
                f"{k} {v}" for k, v in sorted(flagged.items())))
            split = sorted(k for k, v in self.compound_flags.items() if SPLIT_FLAG in v.split(";"))
            if split:
                lines.append(f"  拆分或核实 split or verify ({len(split)}): " + ", ".join(split[:12])
                             + (" …" if len(split) > 12 else ""))
        if self.projects:
            lines.append(
                "CANDIDATE PROJECTS 候选收益项目 (estimated, unverified 估算、未核实 — net_revenue_cny = area × rate of "
                "osm_estimates.toml; columns estimated_fields, estimate_source): " + ", ".join(
                    f"{k} {n} ({total / 1e4:,.0f}万元)" for k, (n, total) in sorted(self.projects.items())))
        lines.append(
            "UNKNOWN 未知: build_year (建成年代) is left empty unless OSM tags it (start_date / "
            "building:start_date / building:year / construction_date) on the compound, or on homes holding most "
            "of its floor area (then the median year, marked build_year in estimated_fields); it is never "
            "invented — fill it in before eligibility screening.")
        if self.unknown_fields:
            lines.append("  empty fields 空字段: " + ", ".join(self.unknown_fields))
        if self.metric_crs:
            lines.append(f"Areas computed in 面积计算坐标系: {self.metric_crs}")
        if self.unmapped_tags:
            top = sorted(self.unmapped_tags.items(), key=lambda kv: (-kv[1], kv[0]))[:12]
            lines.append(f"Unmapped tags, dropped 未映射标签 ({sum(self.unmapped_tags.values())} objects): "
                         + ", ".join(f"{k} {v}" for k, v in top))
        if self.excluded_tags:
            lines.append("Excluded on purpose 按规则排除: " + ", ".join(
                f"{k} {v}" for k, v in sorted(self.excluded_tags.items())))
        if self.skipped:
            lines.append("Skipped 跳过: " + ", ".join(f"{k} {v}" for k, v in sorted(self.skipped.items())))
        for w in self.warnings:
            lines.append(f"WARNING 警告: {w}")
        return "\n".join(lines)


# ---------------------------------------------------------------------------------------------- config
def load_osm_tags(params: dict[str, Any] | None = None) -> dict[str, Any]:
    """Load ``data/osm_tags.toml`` and ``data/osm_estimates.toml`` and apply estimation overrides.

    Parameters
    ----------
    params : overrides of the estimation numbers, e.g. ``{"m2_per_household": 90.0, "default_far": 1.8,
        "max_residential_far": 2.5, "split_or_verify_min_ha": 10}`` (m² per household, plot ratio, storeys,
        shares 0–1, hectares, metres): the ``[estimate]`` values of osm_tags.toml and the numbers of
        ``[density]``, ``[size]``, ``[build_year]`` and ``[vacant]`` in osm_estimates.toml.

    Returns
    -------
    The mapping as a dict; ``cfg["estimate"]`` holds the numeric parameters in effect (with their ``*_source``),
    ``cfg["osm_estimates"]`` the home types, planned uses and project rates.
    """
    cfg = load_toml("osm_tags.toml")
    extra = load_toml("osm_estimates.toml")
    cfg["osm_estimates"] = extra
    est = cfg["estimate"]
    for section in ("density", "size", "build_year", "vacant"):
        for key, value in extra[section].items():
            if key.endswith("_source") or (isinstance(value, int | float) and not isinstance(value, bool)
                                           and not key.endswith("_verified")):
                est[key] = value
    allowed = sorted(k for k, v in est.items() if not k.endswith("_source") and not isinstance(v, str))
    for key, value in (params or {}).items():
        if key not in allowed:
            raise ConfigError(f"osm params: unknown key {key!r}; allowed: {', '.join(allowed)}")
        if isinstance(value, bool) or not isinstance(value, int | float) or not np.isfinite(value) \
                or value < 0:
            raise ConfigError(f"osm params: {key} must be a non-negative number, got {value!r}")
        if key in ("m2_per_household", "max_residential_far", "split_or_verify_min_ha") and value == 0:
            raise ConfigError(f"osm params: {key} must be > 0")
        est[key] = float(value)
    return cfg


# ---------------------------------------------------------------------------------------------- helpers
def _first(tags: dict[str, str], keys: list[str]) -> str | None:
    for k in keys:
        v = tags.get(k)
        if v:
            return v
    return None


def _parse_year(tags: dict[str, str], keys: list[str]) -> int | None:
    for k in keys:
        v = tags.get(k)
        if v:
            m = _YEAR_RE.match(v.strip())
            if m:
                return int(m.group(1))
    return None


def _parse_number(value: str | None) -> float | None:
    if not value:
        return None
    m = _NUMBER_RE.search(value)
    return float(m.group(0)) if m else None


def _rule_matches(rule: dict[str, Any], tags: dict[str, str], name: str | None) -> bool:
    for key, wanted in rule["tags"].items():
        value = tags.get(key)
        if value is None:
            return False
        if "*" in wanted:
            continue
        if not any(part.strip() in wanted for part in value.split(";")):
            return False
    contains = rule.get("name_contains")
    if contains:
        return bool(name) and any(s in name for s in contains)
    if rule.get("requires_name"):
        return bool(name)
    return True


def _tag_label(rule: dict[str, Any], tags: dict[str, str]) -> str:
    key = next(iter(rule["tags"]))
    return f"{key}={tags[key]}"


def _check_path(path: str | os.PathLike) -> Path:
    p = Path(path)
    if not p.exists():
        raise LayerError(f"{p}: OSM file not found")
    if not p.is_file():
        raise LayerError(f"{p}: not a file")
    if not p.name.lower().endswith(SUPPORTED_SUFFIXES):
        raise LayerError(f"{p}: unknown OSM file extension; expected one of "
                         f"{', '.join(SUPPORTED_SUFFIXES)}")
    return p


def _check_bbox(bbox: Any) -> tuple[float, float, float, float]:
    try:
        w, s, e, n = (float(v) for v in bbox)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"bbox must be four numbers W S E N in degrees, got {bbox!r}") from exc
    if not (-180 <= w < e <= 180 and -90 <= s < n <= 90):
        raise ConfigError(f"bbox {bbox!r} is not W < E, S < N in degrees (lon −180…180, lat −90…90)")
    return w, s, e, n


def _empty_layer(name: str) -> gpd.GeoDataFrame:
    cols = {c: pd.Series([], dtype=object if t == "str" else t) for c, t in _COLUMNS[name].items()}
    return gpd.GeoDataFrame(cols, geometry=gpd.GeoSeries([], crs="EPSG:4326"), crs="EPSG:4326")


def _frame(name: str, data: dict[str, Any], geometry: np.ndarray, id_col: str) -> gpd.GeoDataFrame:
    cols = {}
    for c, t in _COLUMNS[name].items():
        values = data.get(c, [None] * len(geometry))
        cols[c] = pd.Series(values, dtype=object if t == "str" else t)
    gdf = gpd.GeoDataFrame(cols, geometry=gpd.GeoSeries(geometry, crs="EPSG:4326"), crs="EPSG:4326")
    return gdf.sort_values(id_col, kind="stable").reset_index(drop=True)


def _polygonal(geoms: np.ndarray) -> np.ndarray:
    """Keep only the polygon parts of each geometry (None when nothing polygonal is left)."""
    geoms = np.asarray(geoms, dtype=object)
    out = geoms.copy()
    type_ids = shapely.get_type_id(geoms)
    odd = np.flatnonzero(~np.isin(type_ids, [3, 6]))  # not Polygon / MultiPolygon
    if len(odd):
        parts, idx = shapely.get_parts(geoms[odd], return_index=True)
        keep = shapely.get_type_id(parts) == 3
        out[odd] = None
        for i in np.unique(idx[keep]):
            out[odd[i]] = shapely.multipolygons(parts[keep & (idx == i)])
    out[shapely.is_missing(out) | shapely.is_empty(out)] = None
    single = (shapely.get_type_id(out) == 6) & (shapely.get_num_geometries(out) == 1)
    out[single] = shapely.get_geometry(out[single], 0)  # one-part MultiPolygon → Polygon
    return out


# ---------------------------------------------------------------------------------------------- scan
@dataclass
class _Scan:
    """Raw objects collected from one pass over the file."""

    areas: dict[str, list] = field(default_factory=lambda: {
        "compound": [], "place": [], "vacant": [], "building": [], "facility": [], "project": []})
    facility_nodes: list = field(default_factory=list)
    facility_lines: list = field(default_factory=list)
    roads: list = field(default_factory=list)
    area_candidates: set = field(default_factory=set)
    area_built: set = field(default_factory=set)
    skipped: Counter = field(default_factory=Counter)
    place_nodes: int = 0
    header_box: tuple[float, float, float, float] | None = None


def _runs(nodes) -> tuple[list[list[tuple[float, float]]], bool]:
    """Split a way's node list into runs of consecutive located nodes; flag whether any was missing."""
    runs, cur, missing = [], [], False
    for nd in nodes:
        loc = nd.location
        if loc.valid():
            cur.append((loc.lon, loc.lat))
        else:
            missing = True
            if len(cur) >= 2:
                runs.append(cur)
            cur = []
    if len(cur) >= 2:
        runs.append(cur)
    return runs, missing


def _scan(path: Path, cfg: dict[str, Any]) -> _Scan:
    comp, vac, fac = cfg["compounds"], cfg["vacant"], cfg["facilities"]
    homes, kinds = cfg["osm_estimates"]["homes"], cfg["osm_estimates"]["projects"]["kinds"]
    project_match = [(name, k["match"]) for name, k in kinds.items()]
    project_keys = {key for _, m in project_match for key in m} | {
        key for k in kinds.values() for key in k.get("exclude", {})}
    fac_keys = list(fac["keys"])
    wanted_keys = sorted({"landuse", "building", "place", "highway", *fac_keys})
    rule_keys = {k for r in fac["rules"] for k in r["tags"]}
    keep_keys = sorted(rule_keys | set(fac_keys) | set(fac["name_tags"]) | set(comp["name_tags"])
                       | set(comp["year_tags"]) | set(comp["district_tags"]) | set(comp["subdistrict_tags"])
                       | set(comp["community_tags"]) | set(cfg["roads"]["name_tags"])
                       | set(homes["non_residential_keys"]) | set(cfg["osm_estimates"]["build_year"]["building_tags"])
                       | project_keys
                       | {"capacity", "landuse", "building", "building:levels", "building:flats", "place", "highway",
                          "area", "foot", "access", "construction", "proposed"})
    comp_landuse, comp_place = set(comp["landuse"]), set(comp["place"])
    vacant_landuse = set(vac["landuse"])
    factory = osmium.geom.WKBFactory()
    scan = _Scan()

    proc = osmium.FileProcessor(str(path))
    try:
        box = proc.header.box()
        if box.valid():
            scan.header_box = (box.bottom_left.lon, box.bottom_left.lat,
                               box.top_right.lon, box.top_right.lat)
    except RuntimeError as exc:
        raise LayerError(f"{path}: cannot be read as OSM data ({exc})") from exc
    key_filter = osmium.filter.KeyFilter(*wanted_keys)
    proc = proc.with_areas(osmium.filter.KeyFilter(*wanted_keys)).with_filter(key_filter)

    def project_kind(tags: dict[str, str]) -> str | None:
        for name, match in project_match:
            if all(tags.get(k) in v for k, v in match.items()):
                return name
        return None

    def relevant_area(tags: dict[str, str]) -> bool:
        return (tags.get("landuse") in comp_landuse or tags.get("landuse") in vacant_landuse
                or project_kind(tags) is not None
                or tags.get("place") in comp_place or tags.get("building", "no") != "no"
                or any(k in tags for k in fac_keys if k != "highway"))

    try:
        for obj in proc:
            t = obj.tags
            tags = {k: t[k] for k in keep_keys if k in t}
            if obj.is_node():
                if tags.get("place") in comp_place:
                    scan.place_nodes += 1
                if any(k in tags for k in fac_keys):
                    loc = obj.location
                    if loc.valid():
                        scan.facility_nodes.append((f"osm_n{obj.id}", loc.lon, loc.lat, tags))
            elif obj.is_way():
                closed = obj.is_closed()
                if "highway" in tags:
                    runs, missing = _runs(obj.nodes)
                    scan.roads.append((obj.id, runs, missing, closed, tags))
                if closed and relevant_area(tags):
                    scan.area_candidates.add(f"osm_w{obj.id}")
                elif not closed and any(k in tags for k in fac_keys if k != "highway"):
                    runs, _ = _runs(obj.nodes)
                    if runs:
                        scan.facility_lines.append((f"osm_w{obj.id}", runs, tags))
                    else:
                        scan.skipped["facility_way_missing_nodes"] += 1
            elif obj.is_relation():
                if tags and t.get("type") in ("multipolygon", "boundary") and relevant_area(tags):
                    scan.area_candidates.add(f"osm_r{obj.id}")
            elif obj.is_area():
                if not relevant_area(tags):
                    continue
                oid = f"osm_{'w' if obj.from_way() else 'r'}{obj.orig_id()}"
                try:
                    wkb = factory.create_multipolygon(obj)
                except RuntimeError:
                    scan.skipped["area_bad_geometry"] += 1
                    continue
                scan.area_built.add(oid)
                landuse = tags.get("landuse")
                if landuse in comp_landuse:
                    scan.areas["compound"].append((oid, wkb, tags))
                elif landuse in vacant_landuse:
                    scan.areas["vacant"].append((oid, wkb, tags))
                if tags.get("place") in comp_place:
                    scan.areas["place"].append((oid, wkb, tags))
                if tags.get("building", "no") != "no":
                    scan.areas["building"].append((oid, wkb, tags))
                if any(k in tags for k in fac_keys):
                    scan.areas["facility"].append((oid, wkb, tags))
                kind = project_kind(tags)
                if kind is not None:
                    scan.areas["project"].append((oid, wkb, tags, kind))
    except RuntimeError as exc:
        hint = (" — the objects must be sorted by type and id (e.g. `osmium sort`)"
                if "out of order" in str(exc) else "")
        raise LayerError(f"{path}: cannot be read as OSM data ({exc}){hint}") from exc
    return scan


def _wkb_geoms(records: list) -> np.ndarray:
    if not records:
        return np.array([], dtype=object)
    return shapely.from_wkb([r[1] for r in records])


# ---------------------------------------------------------------------------------------------- layers
def _clip_polygons(geoms: np.ndarray, box: tuple | None) -> np.ndarray:
    geoms = shapely.make_valid(geoms)
    if box is not None:
        geoms = shapely.intersection(geoms, shapely.box(*box))
    return _polygonal(geoms)


def _compound_records(scan: _Scan, cfg: dict, box: tuple | None, report: OsmReport
                      ) -> tuple[list, np.ndarray]:
    comp = cfg["compounds"]
    recs = scan.areas["compound"]
    geoms = _clip_polygons(_wkb_geoms(recs), box)
    keep = [i for i in range(len(recs)) if geoms[i] is not None]
    if len(recs) > len(keep):
        report.skipped["compounds_outside_box"] = len(recs) - len(keep)
    out_recs = [recs[i] for i in keep]
    out_geoms = list(geoms[keep])
    # place=neighbourhood polygons, unless they duplicate landuse=residential ones
    places = scan.areas["place"]
    if places:
        pgeoms = _clip_polygons(_wkb_geoms(places), box)
        have = {r[0] for r in out_recs}
        union = shapely.union_all(out_geoms) if out_geoms else None
        for rec, g in zip(places, pgeoms, strict=True):
            if g is None or rec[0] in have:
                continue
            if union is not None:
                share = shapely.area(shapely.intersection(g, union)) / shapely.area(g)
                if share > comp["place_overlap_max"]:
                    report.skipped["place_polygon_duplicates_compound"] = \
                        report.skipped.get("place_polygon_duplicates_compound", 0) + 1
                    continue
            out_recs.append(rec)
            out_geoms.append(g)
    return out_recs, np.asarray(out_geoms, dtype=object)


def _home_mask(brecs: list, cfg: dict) -> tuple[np.ndarray, list[str]]:
    """Which buildings are homes (osm_estimates.toml [homes]) and, per building, the tag label for the report."""
    homes = cfg["osm_estimates"]["homes"]
    res_types, untyped = set(homes["residential_types"]), set(homes["untyped_values"])
    keys, parts = homes["non_residential_keys"], homes["non_residential_name_parts"]
    name_tags = cfg["compounds"]["name_tags"]
    is_home = np.zeros(len(brecs), dtype=bool)
    labels = []
    for i, rec in enumerate(brecs):
        tags = rec[2]
        b = tags.get("building", "yes")
        if b in res_types:
            is_home[i] = True
            labels.append(f"building={b} (home 住宅)")
        elif b in untyped:
            key = next((k for k in keys if k in tags), None)
            name = _first(tags, name_tags) or ""
            part = next((p for p in parts if p in name), None)
            if key is not None:
                labels.append(f"building={b} + {key}={tags[key]} (not a home 非住宅)")
            elif part is not None:
                labels.append(f"building={b} named …{part}… (not a home 非住宅)")
            else:
                is_home[i] = True
                labels.append(f"building={b} (untyped, counted as a home 未分类按住宅)")
        else:
            labels.append(f"building={b} (not a home 非住宅)")
    return is_home, labels


def _weighted_median_year(ci: np.ndarray, year: np.ndarray, w: np.ndarray, n: int) -> np.ndarray:
    """Weighted median of ``year`` per group ``ci`` (0..n-1); NaN for groups without rows."""
    out = np.full(n, np.nan)
    if not len(ci):
        return out
    order = np.lexsort((year, ci))
    c, y, wt = ci[order], year[order], w[order]
    total = np.bincount(c, weights=wt, minlength=n)
    cum = np.cumsum(wt)
    first = np.r_[0, np.flatnonzero(np.diff(c)) + 1]
    base = np.repeat(cum[first] - wt[first], np.diff(np.r_[first, len(c)]))
    hit = np.flatnonzero(cum - base >= total[c] / 2 - 1e-9)
    groups, at = np.unique(c[hit], return_index=True)
    out[groups] = y[hit[at]]
    return out


def _estimate(comp_geoms: np.ndarray, scan: _Scan, cfg: dict, metric: Any,
              report: OsmReport) -> dict[str, np.ndarray]:
    """Floor area, households, building counts, flags and build years per compound.

    See ``[estimate]`` in osm_tags.toml and ``[homes]``, ``[density]``, ``[size]``, ``[build_year]`` in
    osm_estimates.toml. Only homes count; under-covered compounds take the city's median density (or the default
    plot ratio); everything is cut to ``max_residential_far``; buildings are counted by tag in ``report``.
    """
    est, btypes = cfg["estimate"], cfg["building_types"]
    m2 = est["m2_per_household"]
    n = len(comp_geoms)
    comp_m = gpd.GeoSeries(comp_geoms, crs="EPSG:4326").to_crs(metric).values
    land = shapely.area(comp_m)
    brecs = scan.areas["building"]
    fp_in, home_fp, floor, res_floor, hh = np.zeros(n), np.zeros(n), np.zeros(n), np.zeros(n), np.zeros(n)
    dated_floor = np.zeros(n)
    n_bld = np.zeros(n, dtype=np.int64)
    year_bld = np.full(n, np.nan)
    if brecs and n:
        bgeoms = shapely.make_valid(_wkb_geoms(brecs))
        bm = gpd.GeoSeries(bgeoms, crs="EPSG:4326").to_crs(metric).values
        btype = [r[2].get("building", "yes") for r in brecs]
        home, labels = _home_mask(brecs, cfg)
        lv_tag = np.array([_parse_number(r[2].get("building:levels")) or np.nan for r in brecs])
        lv_tag[lv_tag > est["max_levels"]] = np.nan
        lv_def = np.array([btypes.get(b, {}).get("levels", est["default_levels"]) for b in btype], float)
        levels = np.where(np.isnan(lv_tag), lv_def, lv_tag)
        share = np.array([btypes.get(b, {}).get("residential_share", est["default_residential_share"])
                          for b in btype], float) * home
        flats = np.array([_parse_number(r[2].get("building:flats")) or np.nan for r in brecs])
        single = np.isin(btype, cfg["osm_estimates"]["homes"]["single_family_types"])
        year_tags = cfg["osm_estimates"]["build_year"]["building_tags"]
        byear = np.array([_parse_year(r[2], year_tags) or np.nan for r in brecs], float)
        ci, bi = shapely.STRtree(bm).query(comp_m, predicate="intersects")
        inter = shapely.area(shapely.intersection(comp_m[ci], bm[bi]))
        barea = shapely.area(bm[bi])
        frac = np.divide(inter, barea, out=np.zeros_like(inter), where=barea > 0)
        home_floor = inter * levels[bi] * home[bi]
        per_home = np.where(~np.isnan(flats[bi]), flats[bi] * frac,
                            np.where(single[bi], frac, inter * levels[bi] * share[bi] / m2)) * home[bi]
        fp_in = np.bincount(ci, weights=inter, minlength=n)
        home_fp = np.bincount(ci, weights=inter * home[bi], minlength=n)
        floor = np.bincount(ci, weights=home_floor, minlength=n)
        res_floor = np.bincount(ci, weights=home_floor * share[bi], minlength=n)
        hh = np.bincount(ci, weights=per_home, minlength=n)
        inside = frac >= est["building_inside_share"]
        n_bld = np.bincount(ci[inside & home[bi]], minlength=n).astype(np.int64)
        dated = ~np.isnan(byear[bi]) & home[bi]
        dated_floor = np.bincount(ci[dated], weights=home_floor[dated], minlength=n)
        year_bld = _weighted_median_year(ci[dated], byear[bi][dated], home_floor[dated], n)
        counted = np.unique(bi)
        for label, c in Counter(labels[i] for i in counted).items():
            target = report.estimated_tags if ("home 住宅" in label or "按住宅" in label) else report.dropped_tags
            target[label] = target.get(label, 0) + c
    coverage = np.divide(fp_in, land, out=np.zeros(n), where=land > 0)
    # homes must be mapped too: a polygon where only its school or boiler house is drawn is under-covered
    use_bld = (coverage >= est["min_building_coverage"]) & (home_fp > 0)
    ha = land / 1e4
    density = np.divide(hh, ha, out=np.zeros(n), where=ha > 0)
    good = use_bld & (hh > 0)
    method = np.where(use_bld, "buildings", "far").astype(object)
    if good.sum() >= est["city_density_min_compounds"]:
        city = float(np.median(density[good]))
        hh = np.where(use_bld, hh, city * ha)
        floor = np.where(use_bld, floor, city * ha * m2)
        method[~use_bld] = "city_density"
        unmapped_how = f"the median density {city:.0f} 户/ha of {int(good.sum())} well-mapped compounds"
    else:
        hh = np.where(use_bld, hh, land * est["default_far"] * est["far_residential_share"] / m2)
        floor = np.where(use_bld, floor, land * est["default_far"])
        unmapped_how = f"land × plot ratio {est['default_far']}"
    cap_floor = land * est["max_residential_far"]
    cap_hh = cap_floor / m2
    capped = (hh > cap_hh + 0.5) | (floor > cap_floor * (1 + 1e-9))
    hh, floor = np.minimum(hh, cap_hh), np.minimum(floor, cap_floor)
    households = np.rint(hh).astype(np.int64)
    split = ha >= est["split_or_verify_min_ha"]
    flags = np.full(n, "", dtype=object)
    texts = np.full(n, "", dtype=object)
    for name, mask, text in (
            (SPLIT_FLAG, split, [FLAG_TEXT[SPLIT_FLAG].format(ha=h, limit=est["split_or_verify_min_ha"])
                                 for h in ha]),
            ("buildings_unmapped", ~use_bld, [FLAG_TEXT["buildings_unmapped"].format(how=unmapped_how)] * n),
            ("density_capped", capped, [FLAG_TEXT["density_capped"].format(
                cap=est["max_residential_far"] * 1e4 / m2, far=est["max_residential_far"])] * n)):
        idx = np.flatnonzero(mask)
        for i in idx:
            flags[i] = f"{flags[i]};{name}" if flags[i] else name
            texts[i] = f"{texts[i]}; {text[i]}" if texts[i] else text[i]
    dated_share = np.divide(dated_floor, floor, out=np.zeros(n), where=floor > 0)
    year_bld[~(use_bld & (dated_share >= est["min_dated_share"]))] = np.nan
    return {"floor_area_m2": np.round(floor, 1), "households": households, "n_buildings": n_bld,
            "method": method, "land_m2": land, "coverage": coverage, "flags": flags, "flag_texts": texts,
            "year_from_buildings": year_bld, "res_floor": res_floor}


def _metric_crs(geoms: gpd.GeoSeries) -> Any:
    """The project's metric CRS for these geometries (UTM from geopandas if gis_planner.crs is absent)."""
    try:
        from gis_planner.crs import metric_crs
    except ImportError:
        return geoms.estimate_utm_crs()
    return metric_crs(geoms)


def _compounds(scan: _Scan, cfg: dict, box: tuple | None, report: OsmReport) -> gpd.GeoDataFrame:
    comp = cfg["compounds"]
    recs, geoms = _compound_records(scan, cfg, box, report)
    if not recs:
        return _empty_layer("compounds")
    metric = _metric_crs(gpd.GeoSeries(geoms, crs="EPSG:4326"))
    report.metric_crs = metric.to_string() if hasattr(metric, "to_string") else str(metric)
    est = _estimate(geoms, scan, cfg, metric, report)
    fields = layer_spec("compounds")["fields"]  # the schema's ranges bound the estimates
    year_min = int(fields["build_year"]["min"])
    years = []
    for oid, _, tags in recs:
        y = _parse_year(tags, comp["year_tags"])
        if y is not None and y < year_min:
            report.warnings.append(f"{oid}: build year {y} is before {year_min} (schema minimum); left empty")
            y = None
        years.append(y)
    from_bld = np.array([y is None for y in years]) & ~np.isnan(est["year_from_buildings"])
    years = [int(est["year_from_buildings"][i]) if from_bld[i] else y for i, y in enumerate(years)]
    ids = [r[0] for r in recs]
    estimated = np.full(len(recs), ESTIMATED_FIELDS, dtype=object)
    estimated[from_bld] = estimated[from_bld] + ",build_year"
    split = np.array([SPLIT_FLAG in f.split(";") for f in est["flags"]], dtype=bool)
    estimated[split] = estimated[split] + "," + SPLIT_FLAG
    data = {
        "compound_id": ids,
        "name": [_first(r[2], comp["name_tags"]) for r in recs],
        "build_year": years,
        "households": est["households"],
        "floor_area_m2": est["floor_area_m2"],
        "n_buildings": est["n_buildings"],
        "district": [_first(r[2], comp["district_tags"]) for r in recs],
        "subdistrict": [_first(r[2], comp["subdistrict_tags"]) for r in recs],
        "community": [_first(r[2], comp["community_tags"]) for r in recs],
        "estimated_fields": estimated.tolist(),
        "osm_flags": [t or None for t in est["flag_texts"]],
    }
    report.compound_flags = {i: f for i, f in zip(ids, est["flags"].tolist(), strict=True) if f}
    if from_bld.any():
        report.estimated_tags["build_year from homes' start_date 由楼栋建成年份"] = int(from_bld.sum())
    report.estimate_methods = dict(sorted(zip(ids, est["method"].tolist(), strict=True)))
    e = cfg["estimate"]
    report.params = {k: v for k, v in e.items() if not k.endswith("_source")}
    report.estimated = {
        "floor_area_m2": (
            "Σ(home footprint inside the compound × building:levels, else default storeys by building "
            f"type) in {report.metric_crs}; homes only (building=apartments/residential/house …, untyped "
            "buildings without a non-residential tag or name); where mapped footprints cover < "
            f"{e['min_building_coverage']:.0%} of the land: the median density of the well-mapped compounds "
            f"(≥ {e['city_density_min_compounds']}), else land area × plot ratio {e['default_far']}"),
        "households": (
            f"building:flats where tagged, 1 per single-family house, else residential floor area / "
            f"{e['m2_per_household']} m² per household ({e['m2_per_household_source']}); at most land × plot "
            f"ratio {e['max_residential_far']} / {e['m2_per_household']} m² = "
            f"{e['max_residential_far'] * 1e4 / e['m2_per_household']:.0f} 户/ha "
            f"({e['max_residential_far_source']})"),
        SPLIT_FLAG: (
            f"compounds of ≥ {e['split_or_verify_min_ha']:g} ha are flagged 拆分或核实 "
            f"({e['split_or_verify_min_ha_source']})"),
    }
    if box is not None:
        raw = shapely.make_valid(_wkb_geoms(recs))
        cut = int(np.sum(shapely.area(geoms) < shapely.area(raw) * (1 - 1e-9)))
        if cut:
            report.warnings.append(
                f"{cut} compound(s) cross the clipping box: their estimates cover only the part inside")
    if (est["households"] > fields["households"]["max"]).any() \
            or (est["floor_area_m2"] > fields["floor_area_m2"]["max"]).any():
        report.warnings.append("some estimated households / floor areas exceed the schema maximum; "
                               "check the landuse=residential polygons (a whole district mapped as one?)")
    n_far = int((est["method"] != "buildings").sum())
    if n_far:
        report.warnings.append(
            f"{n_far} compound(s) have (almost) no mapped buildings: households from "
            + ("the city's median density" if (est["method"] == "city_density").any()
               else f"land × plot ratio {e['default_far']}") + " (osm_flags buildings_unmapped)")
    if split.any():
        report.warnings.append(
            f"{int(split.sum())} compound(s) cover ≥ {e['split_or_verify_min_ha']:g} ha — a district mapped as "
            "one landuse=residential polygon, not one compound: split them into 小区 or verify (拆分或核实; "
            "estimated_fields and osm_flags say split_or_verify)")
    n_untagged = sum(y is None for y in years)
    report.unknown_fields = [f"build_year: {n_untagged} of {len(years)} compounds untagged (建成年代未知)"]
    return _frame("compounds", data, geoms, "compound_id")


def _width_m(geoms: np.ndarray) -> np.ndarray:
    """Widest point of each polygon in metres: twice the radius of its maximum inscribed circle (metric CRS)."""
    if not len(geoms):
        return np.zeros(0)
    metric = _metric_crs(gpd.GeoSeries(geoms, crs="EPSG:4326"))
    gm = gpd.GeoSeries(geoms, crs="EPSG:4326").to_crs(metric).values
    return 2 * shapely.length(shapely.maximum_inscribed_circle(gm, tolerance=0.1))


def _vacant(scan: _Scan, cfg: dict, box: tuple | None, report: OsmReport) -> gpd.GeoDataFrame:
    recs = scan.areas["vacant"]
    geoms = _clip_polygons(_wkb_geoms(recs), box)
    keep = np.array([g is not None for g in geoms], dtype=bool)
    if len(recs) > int(keep.sum()):
        report.skipped["vacant_outside_box"] = len(recs) - int(keep.sum())
    min_w = cfg["estimate"]["min_width_m"]
    width = np.full(len(recs), np.inf)
    width[keep] = _width_m(geoms[keep])
    narrow = keep & (width < min_w)
    for i in np.flatnonzero(narrow):
        label = f"landuse={recs[i][2]['landuse']} (narrower than {min_w:g} m 过窄地块)"
        report.dropped_tags[label] = report.dropped_tags.get(label, 0) + 1
    keep = np.flatnonzero(keep & ~narrow)
    if not len(keep):
        return _empty_layer("vacant")
    kinds = cfg["vacant"]["landuse"]
    names = [_first(recs[i][2], cfg["compounds"]["name_tags"]) for i in keep]
    planned = cfg["osm_estimates"]["vacant"]["planned_uses"]
    uses = [next((ftype for ftype, parts in planned.items() if not ftype.endswith("_source")
                  and name and any(p in name for p in parts)), None) for name in names]
    for u, i in zip(uses, keep, strict=True):
        if u is not None:
            label = f"landuse={recs[i][2]['landuse']} named 规划… (planned {u} site 规划设施用地)"
            report.estimated_tags[label] = report.estimated_tags.get(label, 0) + 1
    data = {
        "parcel_id": [recs[i][0] for i in keep],
        "kind": [kinds[recs[i][2]["landuse"]] for i in keep],
        "name": names,
        "owner_type": ["unknown"] * len(keep),
        "allowed_uses": uses,
    }
    return _frame("vacant", data, geoms[keep], "parcel_id")


def _bump(counter: dict[str, int], label: str, by: int = 1) -> None:
    counter[label] = counter.get(label, 0) + by


def _projects(scan: _Scan, cfg: dict, box: tuple | None, compounds: gpd.GeoDataFrame,
              report: OsmReport) -> gpd.GeoDataFrame:
    """Candidate revenue projects (osm_estimates.toml [projects]): net_revenue_cny = area (or spaces) × rate."""
    kinds = cfg["osm_estimates"]["projects"]["kinds"]
    recs = scan.areas["project"]
    geoms = _clip_polygons(_wkb_geoms(recs), box) if recs else np.array([], dtype=object)
    ids, kind_of, tag_list, shapes, spaces = [], [], [], [], []
    for rec, g in zip(recs, geoms, strict=True):
        if g is not None:
            ids.append(rec[0])
            kind_of.append(rec[3])
            tag_list.append(rec[2])
            shapes.append(g)
            spaces.append(np.nan)
    # parking drawn as a node: a project only when its capacity (spaces) is tagged
    park = kinds.get("parking")
    if park is not None:
        for oid, lon, lat, tags in scan.facility_nodes:
            if not all(tags.get(k) in v for k, v in park["match"].items()):
                continue
            inside = box is None or (box[0] <= lon <= box[2] and box[1] <= lat <= box[3])
            cap = tags.get("capacity", "").strip()
            if not inside:
                continue
            if not _NUMBER_RE.fullmatch(cap):
                _bump(report.dropped_tags, "amenity=parking point without capacity (无车位数的停车点)")
                continue
            ids.append(oid)
            kind_of.append("parking")
            tag_list.append(tags)
            shapes.append(shapely.Point(lon, lat))
            spaces.append(float(cap))
    if not ids:
        return _empty_layer("projects")
    shapes_arr = np.asarray(shapes, dtype=object)
    metric = _metric_crs(gpd.GeoSeries(shapes_arr, crs="EPSG:4326"))
    area = shapely.area(gpd.GeoSeries(shapes_arr, crs="EPSG:4326").to_crs(metric).values)
    kind_arr = np.asarray(kind_of, dtype=object)
    spaces_arr = np.asarray(spaces, float)
    m2_space = np.array([kinds[k].get("m2_per_space", np.nan) for k in kind_of])
    spaces_arr = np.where(np.isnan(spaces_arr), np.floor(area / m2_space), spaces_arr)
    size = np.where(np.isnan(m2_space), area, spaces_arr * m2_space)  # land area, or spaces × m² per space
    min_area = np.array([kinds[k]["min_area_m2"] for k in kind_of])
    tag_label = [f"{next(iter(kinds[k]['match']))}={t[next(iter(kinds[k]['match']))]}"
                 for k, t in zip(kind_of, tag_list, strict=True)]
    excluded = np.array([any(t.get(key) in v for key, v in kinds[k].get("exclude", {}).items())
                         for k, t in zip(kind_of, tag_list, strict=True)], dtype=bool)
    in_compound = np.zeros(len(ids), dtype=bool)
    if len(compounds):
        is_park = kind_arr == "parking"
        rep_pts = shapely.point_on_surface(shapes_arr[is_park])
        hit = shapely.STRtree(np.asarray(compounds.geometry.values)).query(rep_pts, predicate="within")[0]
        in_compound[np.flatnonzero(is_park)[np.unique(hit)]] = True
    small = size < min_area
    reasons = ((excluded, "access private 非公共"), (in_compound & ~excluded, "inside a compound 小区自有"),
               (small & ~excluded & ~in_compound, "below the minimum area 面积过小"))
    for mask, why in reasons:
        for label, c in Counter(np.asarray(tag_label, dtype=object)[mask].tolist()).items():
            _bump(report.dropped_tags, f"{label} ({why}, not a project)", c)
    keep = np.flatnonzero(~excluded & ~in_compound & ~small)
    if not len(keep):
        return _empty_layer("projects")
    rate = np.array([kinds[k].get("rate_cny_per_space", kinds[k].get("rate_cny_per_m2")) for k in kind_of])
    unit = np.where(np.isnan(m2_space), area, spaces_arr)
    revenue = np.round(rate * unit, 0)
    name_tags = cfg["compounds"]["name_tags"]
    sources = []
    for i in keep:
        k = kinds[kind_of[i]]
        how = (f"{spaces_arr[i]:.0f} spaces 车位 × {rate[i]:,.0f} 元" if "m2_per_space" in k
               else f"{area[i]:,.0f} m² × {rate[i]:,.0f} 元/m²")
        sources.append(f"估算、未核实 estimated, unverified — {k['name_zh']}: {how} (osm_estimates.toml; "
                       f"{k['source']})")
    data = {
        "project_id": [ids[i] for i in keep],
        "kind": [kinds[kind_of[i]]["kind"] for i in keep],
        "name": [_first(tag_list[i], name_tags) or kinds[kind_of[i]]["name_zh"] for i in keep],
        "net_revenue_cny": revenue[keep],
        "capex_cny": [np.nan] * len(keep),
        "estimated_fields": ["net_revenue_cny"] * len(keep),
        "estimate_source": sources,
    }
    for i in keep:
        _bump(report.estimated_tags, f"{tag_label[i]} → project {kinds[kind_of[i]]['kind']} (候选收益项目)")
    totals: dict[str, tuple[int, float]] = {}
    for i in keep:
        k = kinds[kind_of[i]]["kind"]
        n, t = totals.get(k, (0, 0.0))
        totals[k] = (n + 1, t + float(revenue[i]))
    report.projects = dict(sorted(totals.items()))
    return _frame("projects", data, shapes_arr[keep], "project_id")


def _classify(tags: dict[str, str], rules: list, name: str | None) -> dict | None:
    for rule in rules:
        if _rule_matches(rule, tags, name):
            return rule
    return None


def _facilities(scan: _Scan, cfg: dict, box: tuple | None, report: OsmReport) -> gpd.GeoDataFrame:
    fac = cfg["facilities"]
    rules, name_tags, count_keys = fac["rules"], fac["name_tags"], fac["count_unmapped_keys"]
    ids, tag_list, points = [], [], []
    # nodes
    if scan.facility_nodes:
        xy = np.array([(r[1], r[2]) for r in scan.facility_nodes])
        pts = shapely.points(xy)
        for rec, p in zip(scan.facility_nodes, pts, strict=True):
            ids.append(rec[0])
            tag_list.append(rec[3])
            points.append(p)
    # areas → representative point of the part inside the box
    areas = scan.areas["facility"]
    if areas:
        geoms = _clip_polygons(_wkb_geoms(areas), box)
        reps = shapely.point_on_surface(geoms)
        for rec, p in zip(areas, reps, strict=True):
            ids.append(rec[0])
            tag_list.append(rec[2])
            points.append(p)
    # open ways (platforms drawn as lines) → a point on the line
    if scan.facility_lines:
        lines = [shapely.multilinestrings([shapely.linestrings(r) for r in rec[1]])
                 for rec in scan.facility_lines]
        lines = np.asarray(lines, dtype=object)
        if box is not None:
            lines = shapely.clip_by_rect(lines, *box)
        reps = shapely.point_on_surface(lines)
        for rec, p in zip(scan.facility_lines, reps, strict=True):
            ids.append(rec[0])
            tag_list.append(rec[2])
            points.append(p)
    pts = np.asarray(points, dtype=object)
    if len(pts):
        valid = ~shapely.is_missing(pts) & ~shapely.is_empty(pts)
        if box is not None:
            x, y = np.full(len(pts), np.nan), np.full(len(pts), np.nan)
            x[valid], y[valid] = shapely.get_x(pts[valid]), shapely.get_y(pts[valid])
            inside = (x >= box[0]) & (x <= box[2]) & (y >= box[1]) & (y <= box[3])
        else:
            inside = valid
    else:
        inside = np.zeros(0, dtype=bool)
    out = {"facility_id": [], "facility_type": [], "name": [], "capacity": []}
    out_geoms = []
    type_counts, tag_counts, unmapped, excluded = Counter(), Counter(), Counter(), Counter()
    if len(pts) > int(inside.sum()):
        report.skipped["facility_candidates_outside_box"] = len(pts) - int(inside.sum())
    for i in np.flatnonzero(inside):
        tags = tag_list[i]
        name = _first(tags, name_tags)
        rule = _classify(tags, rules, name)
        if rule is None:
            key = next((k for k in count_keys if k in tags), None)
            if key is not None:
                unmapped[f"{key}={tags[key]}"] += 1
            continue
        if not rule["facility_type"]:
            excluded[_tag_label(rule, tags)] += 1
            continue
        out["facility_id"].append(ids[i])
        out["facility_type"].append(rule["facility_type"])
        out["name"].append(name)
        cap = tags.get("capacity", "").strip()
        out["capacity"].append(float(cap) if _NUMBER_RE.fullmatch(cap) else None)
        out_geoms.append(pts[i])
        type_counts[rule["facility_type"]] += 1
        tag_counts[_tag_label(rule, tags)] += 1
    report.facility_types = dict(sorted(type_counts.items()))
    report.facility_tags = dict(sorted(tag_counts.items()))
    report.unmapped_tags = dict(sorted(unmapped.items()))
    report.excluded_tags = dict(sorted(excluded.items()))
    if not out_geoms:
        return _empty_layer("facilities")
    out["capacity"] = [np.nan if c is None else c for c in out["capacity"]]
    return _frame("facilities", out, np.asarray(out_geoms, dtype=object), "facility_id")


def _walkable(tags: dict[str, str], cfg_w: dict) -> bool:
    if tags["highway"] in cfg_w["not_walkable_highway"]:
        return False
    if any(tags.get(k) in v for k, v in cfg_w["walkable_override"].items()):
        return True
    return not any(tags.get(k) in v for k, v in cfg_w["not_walkable_tags"].items())


def _road_class(tags: dict[str, str], cfg_r: dict) -> str | None:
    hw = tags["highway"]
    life = cfg_r["lifecycle"]
    classes = cfg_r["class"]
    if hw in (life["construction"], life["proposed"]):
        return classes.get(tags.get(hw, ""), life["lifecycle_default"])
    return classes.get(hw)


def _roads(scan: _Scan, cfg: dict, box: tuple | None, report: OsmReport) -> gpd.GeoDataFrame:
    cfg_r = cfg["roads"]
    skipped = report.skipped
    coords, part_idx, meta = [], [], []  # one entry per located run
    unmapped = Counter()
    for way_id, runs, missing, closed, tags in scan.roads:
        if closed and tags.get("area") in cfg_r["walkable"]["skip_area_values"]:
            skipped["highway_area"] = skipped.get("highway_area", 0) + 1
            continue
        cls = _road_class(tags, cfg_r)
        if cls is None:
            unmapped[tags["highway"]] += 1
            continue
        if missing:
            key = "highway_way_partial_missing_nodes" if runs else "highway_way_no_located_nodes"
            skipped[key] = skipped.get(key, 0) + 1
        for run in runs:
            coords.extend(run)
            part_idx.extend([len(meta)] * len(run))
            meta.append((way_id, cls, _first(tags, cfg_r["name_tags"]),
                         _walkable(tags, cfg_r["walkable"])))
    for hw, c in sorted(unmapped.items()):
        skipped[f"highway={hw} (no road class)"] = c
    if not meta:
        return _empty_layer("roads")
    lines = shapely.linestrings(np.asarray(coords), indices=np.asarray(part_idx))
    if box is not None:
        lines = shapely.clip_by_rect(lines, *box)
    parts, idx = shapely.get_parts(lines, return_index=True)
    ok = (shapely.get_type_id(parts) == 1) & (shapely.length(parts) > 0)
    parts, idx = parts[ok], idx[ok]
    n_out = len({m[0] for m in meta}) - len({meta[i][0] for i in idx})
    if n_out:
        skipped["highway_ways_outside_box"] = n_out
    way_of_part = np.array([meta[i][0] for i in idx], dtype=np.int64)
    n_parts = Counter(way_of_part.tolist())
    seen: Counter = Counter()
    ids = []
    for w in way_of_part.tolist():
        seen[w] += 1
        ids.append(f"osm_w{w}" if n_parts[w] == 1 else f"osm_w{w}_{seen[w]}")
    data = {
        "road_id": ids,
        "road_class": [meta[i][1] for i in idx],
        "name": [meta[i][2] for i in idx],
        "walkable": [meta[i][3] for i in idx],
    }
    return _frame("roads", data, parts, "road_id")


# ---------------------------------------------------------------------------------------------- public API
def read_osm(
    path: str | os.PathLike,
    bbox: tuple[float, float, float, float] | None = None,
    *,
    params: dict[str, Any] | None = None,
) -> tuple[dict[str, gpd.GeoDataFrame], OsmReport]:
    """Read an OpenStreetMap extract into the five gis_planner layers.

    ``landuse=residential`` (and ``place=neighbourhood`` polygons) → ``compounds``;
    ``landuse=brownfield|greenfield|construction|vacant`` → ``vacant``; amenity / shop / leisure / healthcare /
    social_facility / transport tags → ``facilities`` (points) by the rules in ``data/osm_tags.toml``;
    ``highway=*`` ways → ``roads``; ``landuse=commercial|retail|industrial|brownfield`` and public
    ``amenity=parking`` → candidate ``projects`` with an estimated ``net_revenue_cny`` (``data/osm_estimates.toml``).
    Multipolygons are assembled by pyosmium.

    Parameters
    ----------
    path : ``.osm``, ``.osm.pbf`` / ``.pbf``, ``.osm.bz2`` or ``.osm.gz`` file. Never modified.
    bbox : (W, S, E, N) in degrees (WGS84). Default: the file's bounds (XML ``<bounds>`` or PBF header);
        if the file has none, nothing is clipped. Lines are cut with ``clip_by_rect``, polygons are
        intersected with the box, points outside are dropped.
    params : overrides of the ``[estimate]`` parameters (``m2_per_household`` m², ``default_far``,
        ``default_levels`` storeys, ``far_residential_share`` 0–1, ...).

    Returns
    -------
    layers : ``{"compounds", "vacant", "facilities", "roads", "projects"}`` → GeoDataFrame in EPSG:4326 with
        the canonical columns of ``schema.toml``, each sorted by its id (``osm_w<id>``, ``osm_r<id>``,
        ``osm_n<id>``; clipped road parts get ``_1``, ``_2`` ...).
    report : an :class:`OsmReport`; ``str(report)`` is a bilingual summary.

    Notes
    -----
    ``households`` and ``floor_area_m2`` are estimates from homes only, bounded by a plot ratio (column
    ``estimated_fields``; ``osm_flags`` says what to check, e.g. 拆分或核实 for a district-scale polygon);
    ``build_year`` is only filled where OSM tags a 4-digit year on the compound or on most of its homes. Vacant
    parcels narrower than ``min_width_m`` are dropped; ``规划幼儿园`` sites get ``allowed_uses``. Everything estimated
    or dropped is counted by tag in the report. Data © OpenStreetMap contributors, ODbL 1.0.

    Examples
    --------
    >>> layers, report = read_osm("map.osm")  # doctest: +SKIP
    >>> layers["compounds"][["compound_id", "households", "estimated_fields"]].head()  # doctest: +SKIP
    """
    p = _check_path(path)
    cfg = load_osm_tags(params)
    box = _check_bbox(bbox) if bbox is not None else None
    scan = _scan(p, cfg)
    report = OsmReport(source=str(path))
    if box is not None:
        report.clip_box, report.clip_source = box, "bbox argument"
        hb = scan.header_box
        if hb is not None and not (hb[0] <= box[0] and box[2] <= hb[2] and hb[1] <= box[1] and box[3] <= hb[3]):
            report.warnings.append("the bbox reaches beyond the file's bounds; data there may be missing")
    elif scan.header_box is not None:
        box = scan.header_box
        report.clip_box, report.clip_source = box, "file bounds"
    else:
        report.warnings.append("the file has no bounds (no <bounds> element / PBF header box): not clipped")
    # objects whose area could not be assembled (missing nodes in an extract, broken multipolygons)
    not_built = scan.area_candidates - scan.area_built
    n_way = sum(1 for i in not_built if i.startswith("osm_w"))
    n_rel = len(not_built) - n_way
    if n_way:
        report.skipped["closed_way_not_assembled"] = n_way
    if n_rel:
        report.skipped["multipolygon_relation_not_assembled"] = n_rel
    for k, v in scan.skipped.items():
        report.skipped[k] = report.skipped.get(k, 0) + v
    if n_way or scan.skipped.get("facility_way_missing_nodes") or any(
            "missing" in k for k in report.skipped):
        report.warnings.append(
            "some ways reference nodes missing from the file (an extract cut without complete ways): "
            "areas among them were skipped, roads kept where located; re-extract with "
            "`osmium extract --strategy complete_ways` for complete geometry")
    if scan.place_nodes:
        report.skipped["place_node_not_polygon"] = scan.place_nodes

    compounds = _compounds(scan, cfg, box, report)
    layers = {
        "compounds": compounds,
        "vacant": _vacant(scan, cfg, box, report),
        "facilities": _facilities(scan, cfg, box, report),
        "roads": _roads(scan, cfg, box, report),
        "projects": _projects(scan, cfg, box, compounds, report),
    }
    report.counts = {name: len(gdf) for name, gdf in layers.items()}
    report.skipped = dict(sorted(report.skipped.items()))
    if not any(report.counts[n] for n in ("compounds", "vacant", "facilities", "roads")):
        where = f"inside bbox {box}" if box is not None else "in the file"
        raise LayerError(f"{p}: no compounds, vacant land, facilities or roads {where}")
    return layers, report


def import_osm(
    path: str | os.PathLike,
    out_path: str | os.PathLike,
    bbox: tuple[float, float, float, float] | None = None,
    params: dict[str, Any] | None = None,
) -> OsmReport:
    """Read an OSM extract (see :func:`read_osm`) and write the five layers to a GeoPackage, atomically.

    Parameters
    ----------
    path : the OSM file (never modified).
    out_path : the ``.gpkg`` to write (replaced as a whole).
    bbox : (W, S, E, N) in degrees, or None for the file's bounds.
    params : estimation overrides, as for :func:`read_osm`.

    Returns
    -------
    The :class:`OsmReport` of the import.
    """
    from gis_planner.io import write_layers

    if Path(out_path).resolve() == Path(path).resolve():
        raise LayerError(f"{out_path}: output would overwrite the input OSM file")
    layers, report = read_osm(path, bbox, params=params)
    write_layers(layers, out_path)
    return report
