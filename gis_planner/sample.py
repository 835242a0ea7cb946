"""The deterministic synthetic sample district (江安市, a fictional county-level city) used by the demo and tests."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
from shapely.geometry import LineString, Point, Polygon, box
from shapely.ops import nearest_points, polygonize

from gis_planner.datafiles import load_toml
from gis_planner.io import write_layers

__all__ = ["make_sample_district", "write_sample_district", "LAYER_NAMES"]

#: in the order of the GeoPackage (spatial layers first, then the 问题清单 table)
LAYER_NAMES = ("compounds", "vacant", "facilities", "roads", "projects", "boundaries", "buildings", "heritage",
               "green_space", "deficits")

_COMPOUND_COLUMNS = [
    "compound_id", "name", "build_year", "households", "floor_area_m2", "n_buildings", "district",
    "subdistrict", "community", "consent_rate", "consent_rate_renovation", "consent_rate_illegal_removal",
    "consent_rate_property_mgmt", "has_owners_committee", "has_maintenance_fund", "property_rights",
    "is_self_built", "is_urban_village", "in_expropriation_plan", "planned_demolish_rebuild", "in_shantytown_plan",
    "last_renovation_year", "structural_safety_ok", "danger_grade", "danger_floor_area_m2", "floors", "n_units",
    "utility_assets_owner", "parking_existing", "estimated_fields", "osm_flags",
]
#: Pipeline fields ([pipeline] of the TOML) and the historic-district flag, appended after the columns above
_PIPELINE_COLUMNS = ["pipeline_status", "review_no", "plan_year", "implementing_entity", "in_historic_district"]
#: Tenure fields of the vacant parcels ([vacant_tenure] of the TOML), appended after the generated ones
_VACANT_TENURE_COLUMNS = ["current_use", "landuse_nature", "needs_tenure_change"]
#: Survey fields the sample leaves empty (not surveyed): the analyses then use their documented defaults
#: (the demolished area of a C-grade compound without a buildings survey is the grade's default share).
_NOT_SURVEYED = ("danger_floor_area_m2",)
_FLAGS = ["is_self_built", "is_urban_village", "in_expropriation_plan", "planned_demolish_rebuild",
          "in_shantytown_plan"]
_PARAMS = load_toml("sample_district.toml")
_GAP_M = tuple(_PARAMS["lots"]["gap_m"])          # gap between neighbouring lots inside a block, metres
_MIN_SIDE_M = float(_PARAMS["lots"]["min_side_m"])  # no lot narrower than this, metres
_OLD_CUTOFF = int(_PARAMS["eras"]["walkup_before"])  # "walk-up era": built before this year


@dataclass
class _Lot:
    """A piece of land inside a block, in local metres."""

    geom: Polygon
    zone: dict
    use: str | None = None          # None = free; "compound", "open", "taken"
    attrs: dict = field(default_factory=dict)


# ----------------------------------------------------------------------------- geometry helpers
def _zone_of(pt: Point, zones: list[dict]) -> dict:
    for z in zones:
        x0, y0, x1, y1 = z["rect"]
        if x0 <= pt.x <= x1 and y0 <= pt.y <= y1:
            return z
    return zones[-1]


def _split(rect: Polygon, max_area: float, rng: np.random.Generator) -> list[Polygon]:
    """Guillotine-split a rectangle into lots no larger than ``max_area`` m², with 5–25 m gaps."""
    x0, y0, x1, y1 = rect.bounds
    w, h = x1 - x0, y1 - y0
    if w * h <= max_area:
        return [rect]
    gap = float(rng.uniform(*_GAP_M))
    long_side = w if w >= h else h
    if long_side - gap < 2 * _MIN_SIDE_M:
        return [rect]
    frac = float(rng.uniform(0.38, 0.62))
    cut = max(_MIN_SIDE_M, min(long_side - gap - _MIN_SIDE_M, frac * (long_side - gap)))
    if w >= h:
        a, b = box(x0, y0, x0 + cut, y1), box(x0 + cut + gap, y0, x1, y1)
    else:
        a, b = box(x0, y0, x1, y0 + cut), box(x0, y0 + cut + gap, x1, y1)
    return _split(a, max_area, rng) + _split(b, max_area, rng)


def _trim(rect: Polygon, area: float, toward: Point, gap: float) -> tuple[Polygon, Polygon | None]:
    """Cut a full-width strip of ``area`` m² from the end of ``rect`` nearest ``toward``.

    Returns the strip and the remainder (None when the remainder would be narrower than a lot).
    """
    x0, y0, x1, y1 = rect.bounds
    w, h = x1 - x0, y1 - y0
    if w >= h:
        d = area / h
        if toward.x - x0 <= x1 - toward.x:
            piece, rest = box(x0, y0, x0 + d, y1), box(x0 + d + gap, y0, x1, y1)
        else:
            piece, rest = box(x1 - d, y0, x1, y1), box(x0, y0, x1 - d - gap, y1)
        rest_side = w - d - gap
    else:
        d = area / w
        if toward.y - y0 <= y1 - toward.y:
            piece, rest = box(x0, y0, x1, y0 + d), box(x0, y0 + d + gap, x1, y1)
        else:
            piece, rest = box(x0, y1 - d, x1, y1), box(x0, y0, x1, y1 - d - gap)
        rest_side = h - d - gap
    return piece, (rest if rest_side >= _MIN_SIDE_M else None)


def _corner_piece(lot: Polygon, area: float, toward: Point, aspect: float) -> Polygon | None:
    """A ``area`` m² rectangle in the corner of ``lot`` nearest ``toward`` (None if it does not fit)."""
    x0, y0, x1, y1 = lot.bounds
    w = min(np.sqrt(area * aspect), (x1 - x0) * 0.7)
    h = area / w
    corners = sorted(
        [(x0, y0, 1, 1), (x1, y0, -1, 1), (x0, y1, 1, -1), (x1, y1, -1, -1)],
        key=lambda c: (c[0] - toward.x) ** 2 + (c[1] - toward.y) ** 2,
    )
    for cx, cy, sx, sy in corners:
        piece = box(min(cx, cx + sx * w), min(cy, cy + sy * h), max(cx, cx + sx * w), max(cy, cy + sy * h))
        if lot.buffer(1e-6).contains(piece):
            return piece
    return None


# ----------------------------------------------------------------------------- roads and lots
def _make_roads(cfg: dict, rng: np.random.Generator) -> gpd.GeoDataFrame:
    order = {"arterial": 0, "secondary": 1, "local": 2, "path": 3}
    lines = sorted(cfg["roads"]["lines"], key=lambda r: order[r[0]])  # stable within a class
    setback = cfg["roads"]["setback_m"]
    rows = []
    for i, (cls, name, a, b) in enumerate(lines, start=1):
        rows.append({
            "road_id": f"R{i:03d}",
            "road_class": cls,
            "name": name,
            "walkable": name not in cfg["roads"]["not_walkable"],
            "setback_m": float(rng.uniform(*setback[cls])),
            "geometry": LineString([a, b]),
        })
    return gpd.GeoDataFrame(rows, geometry="geometry")


def _make_lots(cfg: dict, roads: gpd.GeoDataFrame, rng: np.random.Generator) -> list[_Lot]:
    """Blocks between the roads, shrunk by each road's setback, split into lots by zone."""
    blocks = sorted(polygonize(shapely.unary_union(roads.geometry.values).geoms),
                    key=lambda p: (round(p.centroid.y), round(p.centroid.x)))
    road_buf = shapely.unary_union(shapely.buffer(roads.geometry.values, roads["setback_m"].values))
    large = {tuple(o["near"]): o for o in cfg["compound_overrides"] if "large_ha" in o}
    lots: list[_Lot] = []
    for block in blocks:
        inner = block.difference(road_buf)
        if inner.is_empty:
            continue
        rect = box(*inner.bounds)
        if abs(rect.area - inner.area) > 1.0:  # every block of the sample grid is a rectangle
            raise RuntimeError(f"non-rectangular block at {block.centroid.wkt}")
        zone = _zone_of(block.centroid, cfg["zones"])
        big = [o for near, o in large.items() if block.contains(Point(near))]
        if big:
            piece, rest = _trim(rect, big[0]["large_ha"] * 1e4, Point(big[0]["near"]), 15.0)
            lots.append(_Lot(piece, zone, "compound", {"override": big[0]}))
            parts = [rest] if rest is not None else []
        else:
            parts = _split(rect, float(rng.uniform(*zone["lot_ha"])) * 1e4, rng)
        lots.extend(_Lot(p, zone) for p in parts)
    return lots


def _nearest_free(lots: list[_Lot], near: Point, min_area: float = 0.0, min_side: float = 0.0) -> _Lot:
    best, best_d = None, np.inf
    for lot in lots:
        if lot.use is not None or lot.geom.area < min_area:
            continue
        x0, y0, x1, y1 = lot.geom.bounds
        if min(x1 - x0, y1 - y0) < min_side:
            continue
        d = lot.geom.distance(near)
        if d < best_d:
            best, best_d = lot, d
    if best is None:
        raise RuntimeError(f"no free lot near {near.wkt} with area ≥ {min_area} m²")
    return best


def _take(lots: list[_Lot], near: Point, area: float, min_side: float = 0.0,
          aspect: float = 1.5) -> Polygon:
    """Reserve land near ``near``: a whole lot (``area`` = 0), a full-width strip or a corner piece."""
    if area <= 0:
        lot = _nearest_free(lots, near, min_side=min_side)
        lot.use = "taken"
        return lot.geom
    lot = _nearest_free(lots, near, min_area=area * 1.05, min_side=min_side)
    geom = lot.geom
    if geom.area <= area * 1.1:
        lot.use = "taken"
        return geom
    x0, y0, x1, y1 = geom.bounds
    is_rect = abs(geom.area - (x1 - x0) * (y1 - y0)) < 1.0
    if is_rect and area / max(x1 - x0, y1 - y0) >= 40.0:  # a full-width strip at least 40 m deep
        piece, rest = _trim(geom, area, near, 12.0)
        lot.use = "taken"
        if rest is not None:
            lots.append(_Lot(rest, lot.zone))
        return piece
    piece = _corner_piece(geom, area, near, aspect)
    if piece is None:
        lot.use = "taken"
        return geom
    rest = geom.difference(piece.buffer(6.0, join_style="mitre"))
    rest = max(getattr(rest, "geoms", [rest]), key=lambda g: g.area)
    lot.geom = rest                      # the rest of the lot stays free (an L-shape)
    return piece


# ----------------------------------------------------------------------------- layers
def _projects(cfg: dict, lots: list[_Lot]) -> gpd.GeoDataFrame:
    rows = []
    for pid, kind, name, near, area, net, capex in cfg["projects"]["list"]:
        geom = _take(lots, Point(near), float(area))
        rows.append({"project_id": pid, "kind": kind, "name": name, "net_revenue_cny": float(net),
                     "capex_cny": float(capex), "estimated_fields": None, "estimate_source": None,
                     "geometry": geom})
    return gpd.GeoDataFrame(rows, geometry="geometry")


def _vacant(cfg: dict, lots: list[_Lot]) -> gpd.GeoDataFrame:
    rows = []
    for pid, kind, name, owner, near, area, floor, value, uses in cfg["vacant"]["list"]:
        near = Point(near)
        if uses == "strip":  # an 8 m strip in the setback of the road south of the nearest lot
            north = [lt for lt in lots if lt.geom.bounds[1] > near.y]
            y0 = min(north, key=lambda lt: lt.geom.distance(near)).geom.bounds[1]
            length = float(area) / 8.0
            geom = box(near.x - length / 2, y0 - 10.0, near.x + length / 2, y0 - 2.0)
            uses = ""
        else:
            geom = _take(lots, near, float(area), aspect=1.0 if area < 3000 else 1.6)
        rows.append({
            "parcel_id": pid, "kind": kind, "name": name, "owner_type": owner,
            "land_value_cny": float(value) if value else np.nan,
            "floor_area_m2": float(floor) if floor else np.nan,
            "allowed_uses": uses or None,
            "estimated_fields": "land_value_cny" if value and kind == "vacant_land" else None,
            "geometry": geom,
        })
    return gpd.GeoDataFrame(rows, geometry="geometry")


def _facility_sites(cfg: dict, lots: list[_Lot], standards: dict) -> tuple[list[dict], dict[str, Polygon]]:
    """Facility points at the centroids of the lots they take, and each site's lot by facility name."""
    rows, site_lots = [], {}
    for ftype, name, near, cap, floor in cfg["facilities"]["sites"]:
        std = standards["facility_types"][ftype]
        min_land = float(std["min_land_m2"])
        target = max(min_land * 1.6, 3000.0)
        geom = _take(lots, Point(near), target if ftype not in ("park", "metro_station") else 0.0,
                     min_side=float(std["min_width_m"]))
        rows.append(_facility_row(ftype, name, geom.centroid, cap, floor))
        site_lots[name] = geom
    return rows, site_lots


def _facility_row(ftype: str, name: str, pt: Point, cap: float, floor: float) -> dict:
    return {"facility_type": ftype, "name": name, "capacity": float(cap) if cap else np.nan,
            "floor_area_m2": float(floor) if floor else np.nan, "geometry": pt}


def _point_in(poly: Polygon, near: Point, inset: float = 4.0) -> Point:
    inner = poly.buffer(-inset, join_style="mitre")
    if inner.is_empty:
        return poly.representative_point()
    return nearest_points(inner, near)[0]


def _compound_geoms(cfg: dict, lots: list[_Lot], rng: np.random.Generator) -> list[_Lot]:
    """Plant single buildings and the isolated compound, then turn free lots into compounds."""
    for near, name in cfg["single_buildings"]["list"]:
        area = float(rng.uniform(1200, 2800))
        lot = _nearest_free(lots, Point(near), min_area=area * 2.5)
        piece = _corner_piece(lot.geom, area, Point(near), float(rng.uniform(1.2, 2.0)))
        if piece is None:
            raise RuntimeError(f"single building {name} does not fit")
        rest = lot.geom.difference(piece.buffer(float(rng.uniform(6, 12)), join_style="mitre"))
        lot.geom = max(getattr(rest, "geoms", [rest]), key=lambda g: g.area)
        lots.append(_Lot(piece, lot.zone, "compound", {"single": True, "name": name}))
    for o in cfg["compound_overrides"]:
        if o.get("isolated"):
            lot = _nearest_free(lots, Point(o["near"]), min_area=8000)
            lot.use, lot.attrs = "compound", {"override": o}
            for other in lots:
                if other.use is None and other.geom.distance(lot.geom) < 30.0:
                    other.use = "open"
    for lot in lots:
        if lot.use is None:
            lot.use = "open" if rng.random() < lot.zone["open_share"] else "compound"
    return [lt for lt in lots if lt.use == "compound"]


def _pick(rng: np.random.Generator, weighted: list) -> str:
    values, w = zip(*weighted, strict=True)
    w = np.asarray(w, dtype=float)
    return str(values[rng.choice(len(values), p=w / w.sum())])


def _year(rng: np.random.Generator, bands: list) -> int:
    lo, hi, _ = bands[int(rng.choice(len(bands), p=np.array([b[2] for b in bands]) / sum(b[2] for b in bands)))]
    return int(rng.integers(lo, hi + 1))


class _Namer:
    """Unique Chinese compound names by era: work-unit 家属院, address 号院, 小区, modern estates."""

    def __init__(self, cfg: dict, rng: np.random.Generator):
        self.n, self.rng, self.used = cfg["names"], rng, set()

    def _unique(self, make, fallback=None) -> str:
        for _ in range(60):
            name = make()
            if name not in self.used:
                self.used.add(name)
                return name
        if fallback is None:
            raise RuntimeError("ran out of compound names")
        return self._unique(fallback)

    def reserve(self, name: str) -> str:
        self.used.add(name)
        return name

    def __call__(self, year: int, road: str) -> str:
        n, r = self.n, self.rng

        def address() -> str:
            return f"{road}{int(r.integers(1, 160))}号院"

        if year >= 2003:
            return self._unique(lambda: str(r.choice(n["modern_words"])) + str(r.choice(n["modern_suffixes"])),
                                address)
        kind = r.choice(["unit", "address", "estate"], p=[0.5, 0.2, 0.3] if year < 1995 else [0.25, 0.2, 0.55])
        if kind == "unit":
            return self._unique(lambda: str(r.choice(n["units"])) + str(r.choice(n["unit_suffixes"])), address)
        if kind == "address":
            return self._unique(address)
        return self._unique(lambda: str(r.choice(n["estate_words"])) + str(r.choice(n["estate_suffixes"])),
                            address)


def _compounds(cfg: dict, lots: list[_Lot], roads: gpd.GeoDataFrame, boundaries: gpd.GeoDataFrame,
               projects: gpd.GeoDataFrame, rng: np.random.Generator) -> gpd.GeoDataFrame:
    lots = sorted(lots, key=lambda lt: (-round(lt.geom.centroid.y / 50), lt.geom.centroid.x))
    overrides = {id(lt): lt.attrs.get("override") for lt in lots}
    geoms = [lt.geom for lt in lots]
    cents = [g.centroid for g in geoms]
    for o in cfg["compound_overrides"]:  # attach point overrides to the nearest compound not yet used
        if "large_ha" in o or o.get("isolated"):
            continue
        free = [i for i, lt in enumerate(lots) if overrides[id(lt)] is None and not lt.attrs.get("single")]
        i = min(free, key=lambda k: geoms[k].distance(Point(o["near"])))
        overrides[id(lots[i])] = o

    far = projects.loc[projects["project_id"].isin(cfg["new_town"]["projects"])].geometry.union_all()
    named_roads = roads.loc[roads["road_class"].isin(["local", "secondary"])]
    namer = _Namer(cfg, rng)
    for lt in lots:
        o = overrides[id(lt)] or {}
        if "name" in o:
            namer.reserve(o["name"])
        if lt.attrs.get("single"):
            namer.reserve(lt.attrs["name"])

    rows = []
    for lt, geom, c in zip(lots, geoms, cents, strict=True):
        o = overrides[id(lt)] or {}
        single = bool(lt.attrs.get("single"))
        year = int(o.get("year", _year(rng, lt.zone["years"])))
        if geom.distance(far) < cfg["new_town"]["radius_m"]:
            year = int(rng.integers(cfg["new_town"]["years"][0], cfg["new_town"]["years"][1] + 1))
        era = cfg["eras"]["walkup" if year < _OLD_CUTOFF else "modern"]
        area = geom.area
        if single:
            ratio = float(rng.uniform(1.5, 2.5))
        elif "large_ha" in o:
            ratio = float(rng.uniform(1.0, 1.4))
        else:
            ratio = float(rng.uniform(*era["plot_ratio"]))
        floor = round(area * ratio, 1)
        households = max(1, int(round(floor / rng.uniform(*era["m2_per_household"]))))
        n_buildings = 1 if single else max(2, int(round(floor / rng.uniform(*era["m2_per_building"]))))
        old = year < _OLD_CUTOFF
        grade = _pick(rng, [("A", 0.5), ("B", 0.38), ("C", 0.12)]) if old else "A"
        grade = o.get("danger_grade", grade)
        if not old and rng.random() < 0.5:
            consent = np.nan                      # newer compounds are often not surveyed
        elif rng.random() < 0.06:
            consent = np.nan
        else:
            consent = float(np.clip(rng.normal(0.82, 0.1), 0.5, 0.98))
        consent = float(o.get("consent_rate", consent))
        renovated = pd.NA
        if old and year < 1995 and rng.random() < 0.07:
            renovated = int(rng.integers(2019, 2023))
        road = named_roads.iloc[int(np.argmin(named_roads.distance(c)))]["name"]
        if single:
            name = lt.attrs["name"]
        elif "name" in o:
            name = o["name"]
        else:
            name = namer(year, road)
        rows.append({
            "name": name,
            "build_year": year,
            "households": households,
            "floor_area_m2": floor,
            "n_buildings": n_buildings,
            "district": cfg["district"],
            "consent_rate": round(consent, 3) if not np.isnan(consent) else np.nan,
            "property_rights": o.get("property_rights", _pick(rng, era["property_rights"])),
            **{f: bool(o.get(f, False)) for f in _FLAGS},
            "last_renovation_year": renovated,
            "structural_safety_ok": grade in ("A", "B"),
            "danger_grade": grade,
            "parking_existing": int(households * rng.uniform(*era["parking_per_household"])),
            "estimated_fields": "households" if old and rng.random() < 0.1 else None,
            "osm_flags": None,  # an OSM import's 核实事项; a surveyed layer has none
            "geometry": geom,
        })
    gdf = gpd.GeoDataFrame(rows, geometry="geometry")
    gdf.insert(0, "compound_id", [f"C{i:03d}" for i in range(1, len(gdf) + 1)])
    # 街道 and 社区 from the boundary polygon that contains the centroid
    comm = boundaries.loc[boundaries["level"] == "community"]
    pts = gpd.GeoDataFrame(geometry=gdf.geometry.centroid)
    hit = gpd.sjoin(pts, comm[["name", "parent", "geometry"]], predicate="within", how="left")
    hit = hit[~hit.index.duplicated()]
    gdf["subdistrict"] = hit["parent"].to_numpy()
    gdf["community"] = hit["name"].to_numpy()
    gdf["last_renovation_year"] = gdf["last_renovation_year"].astype("Int64")
    for name in _NOT_SURVEYED:
        gdf[name] = None
    gdf = _survey_fields(gdf, cfg)
    return gdf[[*_COMPOUND_COLUMNS, "geometry"]]


def _survey_fields(gdf: gpd.GeoDataFrame, cfg: dict) -> gpd.GeoDataFrame:
    """The 意愿调查 rates, readiness, storeys, stairwells and utility-asset owners ([survey] of the TOML).

    Drawn from a random stream of their own (seeded by ``[survey] seed``), so adding them left every earlier
    attribute of the sample unchanged. Compounds with a renovation consent rate were surveyed: they get the
    other two rates (Dezhou 三项意愿 [004:58]) and the readiness fields; ``[survey.overrides]`` plants the cases the
    demo shows (a compound failing the 90 % illegal-removal test, one failing the property-management test).
    """
    sv = cfg["survey"]
    rng = np.random.default_rng(sv["seed"])
    n = len(gdf)
    old = (gdf["build_year"] < _OLD_CUTOFF).to_numpy()
    surveyed = gdf["consent_rate"].notna().to_numpy()
    out = gdf.copy()
    out["consent_rate_renovation"] = out["consent_rate"]
    for col, (mean, sd, lo, hi) in sv["rates"].items():
        draw = np.clip(rng.normal(mean, sd, n), lo, hi).round(3)
        out[col] = np.where(surveyed, draw, np.nan)
    for col, (p_old, p_new) in sv["readiness"].items():
        draw = rng.random(n) < np.where(old, p_old, p_new)
        out[col] = pd.array(np.where(surveyed, draw, False), dtype="boolean")
        out.loc[~surveyed, col] = pd.NA
    lo_old, hi_old = sv["floors_walkup"]
    lo_new, hi_new = sv["floors_modern"]
    floors = np.where(old, rng.integers(lo_old, hi_old + 1, n), rng.integers(lo_new, hi_new + 1, n))
    out["floors"] = floors.astype(int)
    units = rng.integers(sv["units_per_building"][0], sv["units_per_building"][1] + 1, n)
    out["n_units"] = (out["n_buildings"].to_numpy(int) * units).astype(int)
    owners = list(sv["utility_owners_walkup"])
    draw = rng.random(n)
    cum = np.cumsum([w for _, w in owners])
    pick = np.array([owners[min(int(np.searchsorted(cum, d, side="right")), len(owners) - 1)][0] for d in draw])
    work_unit = out["property_rights"].isin(sv["work_unit_rights"]).to_numpy()
    out["utility_assets_owner"] = np.where(~old, sv["utility_owner_modern"],
                                           np.where(work_unit, "产权单位", pick))
    by_id = out.set_index("compound_id", drop=False)
    for cid, fields in sv.get("overrides", {}).items():
        if cid not in by_id.index:
            raise ValueError(f"sample_district.toml [survey.overrides]: no compound {cid!r}")
        for col, value in fields.items():
            out.loc[out["compound_id"] == cid, col] = value
    return out


def _split_int(total: int, weights: np.ndarray) -> np.ndarray:
    """``total`` split in proportion to ``weights`` as whole numbers that add up to it (largest remainder)."""
    raw = total * weights / weights.sum()
    out = np.floor(raw).astype(int)
    out[np.argsort(-(raw - out), kind="stable")[: total - out.sum()]] += 1
    return out


def _buildings(cfg: dict, compounds: gpd.GeoDataFrame) -> gpd.GeoDataFrame:
    """楼栋 footprints of the compounds of ``[buildings] communities`` (a surveyed 社区).

    Each compound's ``n_buildings`` slabs (depth ``depth_m``) are laid in rows inside its red line, the floor area,
    households and stairwells shared between them so that they add up to the compound's. A C-grade compound has
    one C-grade building (the one demolished under 拆改结合); walk-ups have no elevator and a share of them cannot
    take one (``infeasible_share``: no room for the shaft or the neighbours' light).
    """
    bc = cfg["buildings"]
    rng = np.random.default_rng(bc["seed"])
    rows = []
    chosen = compounds[compounds["community"].isin(bc["communities"])].sort_values("compound_id")
    for c in chosen.itertuples():
        n = int(c.n_buildings)
        floors = np.clip(int(c.floors) + rng.integers(-1, 2, n), 1, None)
        weights = floors * rng.uniform(0.8, 1.2, n)
        area = float(c.floor_area_m2) * weights / weights.sum()
        inner = c.geometry.buffer(-bc["setback_m"])
        x0, y0, x1, y1 = inner.bounds
        placed: list[Polygon] = []
        y = y0
        while y + bc["depth_m"] <= y1 and len(placed) < n:
            x = x0
            while len(placed) < n:
                length = max(area[len(placed)] / floors[len(placed)] / bc["depth_m"], bc["min_length_m"])
                if x + length > x1:
                    break
                slab = box(x, y, x + length, y + bc["depth_m"])
                if inner.intersection(slab).area >= bc["min_inside_share"] * slab.area:
                    placed.append(slab.intersection(c.geometry))
                    x += length + bc["gap_m"]
                else:
                    x += bc["step_m"]
            y += bc["depth_m"] + bc["row_gap_m"]
        if len(placed) < n:  # no room for every slab at this size: leave the compound unsurveyed
            continue
        grade = np.array(["B" if c.danger_grade != "A" else "A"] * n, dtype=object)
        if c.danger_grade in ("C", "D"):
            grade[int(np.argmin(weights))] = c.danger_grade
        hh = _split_int(int(c.households), weights)
        units = _split_int(int(c.n_units), weights)
        walkup = floors <= bc["walkup_max_floors"]
        for k in range(n):
            rows.append({"building_id": f"{c.compound_id}-{k + 1:02d}", "compound_id": c.compound_id,
                         "floors": int(floors[k]), "units": int(max(units[k], 1)), "households": int(hh[k]),
                         "floor_area_m2": round(float(area[k]), 1), "build_year": int(c.build_year),
                         "danger_grade": grade[k], "has_elevator": bool(not walkup[k]),
                         "elevator_feasible": bool(rng.random() >= bc["infeasible_share"]),
                         "geometry": placed[k]})
    return gpd.GeoDataFrame(rows, geometry="geometry")


def _boundaries(cfg: dict) -> gpd.GeoDataFrame:
    rows = [{"boundary_id": bid, "name": name, "level": "subdistrict", "parent": cfg["district"],
             "geometry": box(*rect)} for bid, name, rect in cfg["communities"]["subdistricts"]]
    rows += [{"boundary_id": bid, "name": name, "level": "community", "parent": parent,
              "geometry": box(*rect)} for bid, name, parent, rect in cfg["communities"]["list"]]
    return gpd.GeoDataFrame(rows, geometry="geometry")


def _point_facilities(cfg: dict, compounds: gpd.GeoDataFrame, roads: gpd.GeoDataFrame,
                      rng: np.random.Generator) -> list[dict]:
    rows = []
    geoms = compounds.geometry.values
    for ftype, name, near, cap, floor in cfg["facilities_in_compounds"]["points"]:
        near = Point(near)
        host = geoms[int(np.argmin(shapely.distance(geoms, near)))]
        rows.append(_facility_row(ftype, name, _point_in(host, near), cap, floor))
    named = roads.loc[roads["road_class"] != "path"]
    for ftype, (count, prefixes) in cfg["scattered_facilities"].items():
        hosts = rng.choice(len(compounds), size=count, replace=False)
        for k, i in enumerate(sorted(hosts)):
            poly = geoms[i]
            x0, y0, x1, y1 = poly.bounds
            pt = _point_in(poly, Point(rng.uniform(x0, x1), rng.uniform(y0, y1)), inset=3.0)
            road = named.iloc[int(np.argmin(named.distance(pt)))]["name"]
            rows.append(_facility_row(ftype, f"{prefixes[k % len(prefixes)]}({road}店)", pt, 0, 0))
    return rows


def _bus_stops(cfg: dict, roads: gpd.GeoDataFrame) -> list[dict]:
    p = cfg["bus_stops"]
    rows = []
    lines = roads.loc[roads["road_class"].isin(["arterial", "secondary"]) & roads["walkable"]]
    others = roads.geometry.values
    for road in lines.itertuples():
        line = road.geometry
        (ax, ay), (bx, by) = line.coords[0], line.coords[-1]
        nx, ny = -(by - ay) / line.length, (bx - ax) / line.length  # left-hand normal
        for k, s in enumerate(np.arange(p["first_m"], line.length - 100.0, p["spacing_m"])):
            side = 1 if k % 2 == 0 else -1
            for shift in (0.0, 40.0, -40.0, 80.0):
                base = line.interpolate(s + shift)
                pt = Point(base.x + side * nx * p["offset_m"], base.y + side * ny * p["offset_m"])
                if shapely.distance(others, pt).min() >= 8.0:
                    break
            rows.append(_facility_row("bus_stop", f"{road.name}站", pt, 0, 0))
    names = pd.Series([r["name"] for r in rows])
    rank = names.groupby(names).cumcount() + 1
    for r, k in zip(rows, rank, strict=True):
        r["name"] = r["name"].replace("站", f"{k}号站") if (names == r["name"]).sum() > 1 else r["name"]
    return rows


# ----------------------------------------------------------------------------- issue 16: constraints and pipeline
def _heritage(cfg: dict) -> gpd.GeoDataFrame:
    """历史文化保护 polygons of ``[heritage]``: polygons and circles (``[[x, y], radius]``) in local metres."""
    hc = cfg["heritage"]
    rows = [{"heritage_id": hid, "name": name, "kind": kind, "protection_level": level,
             "geometry": Polygon(coords)} for hid, kind, name, level, coords in hc["polygons"]]
    rows += [{"heritage_id": hid, "name": name, "kind": kind, "protection_level": level,
              "geometry": Point(centre).buffer(float(radius), quad_segs=16)}
             for hid, kind, name, level, centre, radius in hc["circles"]]
    return gpd.GeoDataFrame(rows, geometry="geometry").sort_values("heritage_id", ignore_index=True)


def _green_space(cfg: dict, site_lots: dict[str, Polygon]) -> gpd.GeoDataFrame:
    """绿地 of ``[green_space]``: the park sites' lots and hand-drawn strips, in local metres."""
    gc = cfg["green_space"]
    rows = [{"green_id": gid, "name": name, "kind": kind, "protected": bool(protected),
             "geometry": site_lots[name]} for name, gid, kind, protected in gc["parks"]]
    rows += [{"green_id": gid, "name": name, "kind": kind, "protected": bool(protected), "geometry": box(*rect)}
             for gid, kind, name, protected, rect in gc["strips"]]
    return gpd.GeoDataFrame(rows, geometry="geometry").sort_values("green_id", ignore_index=True)


def _pipeline_fields(gdf: gpd.GeoDataFrame, cfg: dict, heritage: gpd.GeoDataFrame) -> gpd.GeoDataFrame:
    """项目状态, 审核编号, 计划年度, 实施主体 ([pipeline] of the TOML) and 位于历史文化街区 (from ``heritage``).

    Drawn from a random stream of their own (``[pipeline] seed``) for every compound, then kept for the compounds in
    the pipeline (built before ``[eras] walkup_before``, no exclusion flag), so the values above stay unchanged.
    """
    pc = cfg["pipeline"]
    rng = np.random.default_rng(pc["seed"])
    n = len(gdf)
    keys = [k for k, _ in pc["statuses"]]
    weights = np.array([w for _, w in pc["statuses"]], dtype=float)
    status = np.array(keys, dtype=object)[rng.choice(len(keys), size=n, p=weights / weights.sum())]
    year_draw = rng.random(n)
    in_pipeline = (gdf["build_year"] < _OLD_CUTOFF).to_numpy() & ~gdf[_FLAGS].to_numpy(dtype=bool).any(axis=1)
    status = np.where(in_pipeline, status, None)
    years = np.full(n, np.nan)
    for key, (first, last) in pc["plan_years"].items():
        pick = status == key
        years[pick] = first + np.floor(year_draw[pick] * (last - first + 1))
    out = gdf.copy()
    out["pipeline_status"] = status
    out["plan_year"] = pd.array(years, dtype="Float64").astype("Int64")
    numbered = np.isin(status, pc["review_statuses"])
    filed = pd.Series(years[numbered])
    seq = filed.groupby(filed).cumcount() + 1  # rows are in compound_id order: numbered by id within the year
    review = np.full(n, None, dtype=object)
    review[numbered] = [f"{pc['review_prefix']}-{int(y)}-{k:03d}" for y, k in zip(filed, seq, strict=True)]
    out["review_no"] = review
    out["implementing_entity"] = np.where(in_pipeline, out["community"].map(pc["entities"]).to_numpy(), None)
    districts = heritage[heritage["kind"].isin(cfg["heritage"]["district_kinds"])].geometry.to_numpy()
    overlap = shapely.area(shapely.intersection(out.geometry.to_numpy()[:, None], districts[None, :]))
    out["in_historic_district"] = (overlap > cfg["heritage"]["tolerance_m2"]).any(axis=1)
    return out[[*_COMPOUND_COLUMNS, *_PIPELINE_COLUMNS, "geometry"]]


def _vacant_tenure(vacant: gpd.GeoDataFrame, cfg: dict) -> gpd.GeoDataFrame:
    """现状用途, 土地性质 (by owner type, then by parcel) and an unsurveyed 涉及权属变化 ([vacant_tenure])."""
    vt = cfg["vacant_tenure"]
    out = vacant.copy()
    out["current_use"] = out["parcel_id"].map(vt["current_use"])
    nature = out["owner_type"].map(vt["nature_by_owner"])
    out["landuse_nature"] = out["parcel_id"].map(vt["nature_by_parcel"]).fillna(nature)
    out["needs_tenure_change"] = None
    return out[[c for c in out.columns if c != "geometry"] + ["geometry"]]


def _road_widths(roads: gpd.GeoDataFrame, cfg: dict) -> gpd.GeoDataFrame:
    """路面宽度 (m) by class, then by road name ([road_widths]); the generator's setbacks dropped."""
    rw = cfg["road_widths"]
    out = roads.drop(columns="setback_m")
    out["width_m"] = out["name"].map(rw["by_name"]).fillna(out["road_class"].map(rw["by_class"])).astype(float)
    return out[["road_id", "road_class", "name", "walkable", "width_m", "geometry"]]


def _translate(gdf: gpd.GeoDataFrame, origin: list[float], crs: str) -> gpd.GeoDataFrame:
    out = gdf.copy()
    out["geometry"] = shapely.transform(out.geometry.values, lambda xy: xy + np.asarray(origin))
    return out.set_crs(crs)


def make_sample_district(seed: int | None = None) -> dict[str, gpd.GeoDataFrame]:
    """Build the synthetic sample district: nine layers in EPSG:4547 (metres) and the 问题清单 table.

    A ≈3 × 2.5 km county-town grid of arterials (≈750 m), secondary and branch roads (≈200 m) with
    ≈150 old residential compounds built 1978–2015, ≈30 vacant / idle parcels, ≈210 service facilities
    with planted coverage gaps, 8 revenue projects, the boundaries of two 街道 and seven 社区, and the constraint
    layers: a 历史文化街区, a 文物保护范围 and a 历史建筑 (``heritage``) and parks and strips (``green_space``).
    Parameters, names and the planted features are in ``gis_planner/data/sample_district.toml``;
    ``layers/README.md`` documents the result.

    Parameters
    ----------
    seed : seed of ``numpy.random.default_rng``; the same seed gives identical layers. None: ``seed`` of
        ``data/sample_district.toml``.

    Returns
    -------
    dict of layer name → GeoDataFrame, in :data:`LAYER_NAMES` order: ``compounds``, ``vacant``, ``facilities``,
    ``roads``, ``projects``, ``boundaries``, ``buildings`` (楼栋 of one 社区), ``deficits`` (a DataFrame: the
    问题清单 of three compounds), ``heritage`` and ``green_space``, with the columns of
    ``gis_planner/data/schema.toml``.

    Examples
    --------
    >>> layers = make_sample_district()
    >>> sorted(layers)
    ['boundaries', 'buildings', 'compounds', 'deficits', 'facilities', 'green_space', 'heritage', 'projects', \
'roads', 'vacant']
    >>> layers["compounds"].crs.to_epsg()
    4547
    """
    cfg = load_toml("sample_district.toml")
    standards = load_toml("standards.toml")
    rng = np.random.default_rng(cfg["seed"] if seed is None else seed)

    roads = _make_roads(cfg, rng)
    lots = _make_lots(cfg, roads, rng)
    projects = _projects(cfg, lots)
    vacant = _vacant(cfg, lots)
    sites, site_lots = _facility_sites(cfg, lots, standards)
    boundaries = _boundaries(cfg)
    compound_lots = _compound_geoms(cfg, lots, rng)
    compounds = _compounds(cfg, compound_lots, roads, boundaries, projects, rng)
    fac_rows = sites + _point_facilities(cfg, compounds, roads, rng) + _bus_stops(cfg, roads)
    facilities = gpd.GeoDataFrame(fac_rows, geometry="geometry")
    facilities.insert(0, "facility_id", [f"F{i:03d}" for i in range(1, len(facilities) + 1)])

    buildings = _buildings(cfg, compounds)
    # issue 16 layers and fields: computed from the layers above and streams of their own (nothing above changes)
    heritage = _heritage(cfg)
    green_space = _green_space(cfg, site_lots)
    compounds = _pipeline_fields(compounds, cfg, heritage)
    vacant = _vacant_tenure(vacant, cfg)
    roads = _road_widths(roads, cfg)
    survey = cfg["deficit_survey"]
    deficits = pd.DataFrame([{"compound_id": cid, "item": item, "quantity": float(q), "note": survey["note"]}
                             for cid, rows in survey["rows"].items() for item, q in rows])
    layers = {
        "compounds": compounds,
        "vacant": vacant,
        "facilities": facilities,
        "roads": roads,
        "projects": projects,
        "boundaries": boundaries,
        "buildings": buildings,
        "heritage": heritage,
        "green_space": green_space,
    }
    out = {name: _translate(gdf, cfg["origin"], cfg["crs"]).reset_index(drop=True)
           for name, gdf in layers.items()}
    out["deficits"] = deficits  # a table without geometry
    return {name: out[name] for name in LAYER_NAMES}


def write_sample_district(path: str | os.PathLike, seed: int | None = None) -> Path:
    """Generate the sample district and write it as one GeoPackage (atomically).

    Parameters
    ----------
    path : target ``.gpkg`` file, e.g. ``layers/sample_district.gpkg``.
    seed : random seed (see :func:`make_sample_district`).

    Returns
    -------
    The path written.
    """
    return write_layers(make_sample_district(seed), path)
