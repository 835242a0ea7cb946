"""Layer schemas and validation: canonical columns, Chinese aliases, types, ranges, geometry checks.

The schemas themselves are data (``data/schema.toml``); this module applies them. Validation reports every
problem at once, each naming the source, layer, row, id and field, and returns cleaned copies of the layers
(aliases renamed, values typed, invalid geometries repaired). Input frames are never modified.
"""

from __future__ import annotations

import datetime as _dt
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely

from ._errors import Problem
from .datafiles import load_toml

__all__ = [
    "LAYER_NAMES",
    "REQUIRED_LAYERS",
    "TABLE_LAYERS",
    "COMPOUND_PARTS",
    "Layers",
    "ValidationReport",
    "layer_spec",
    "load_schema",
    "normalise_columns",
    "validate_layer",
    "validate_layers",
    "empty_layer",
    "finite_geometries",
    "geometry_name",
    "heavy_overlap_partners",
    "reproject",
]

LAYER_NAMES = ("compounds", "vacant", "facilities", "roads", "projects", "boundaries", "entrances", "buildings",
               "deficits", "heritage", "green_space")
#: Layers whose absence is normal and not reported.
OPTIONAL_LAYERS = ("boundaries", "entrances", "buildings", "deficits", "heritage", "green_space")
#: Layers that are tables without geometry (``geometry = "none"`` in schema.toml).
TABLE_LAYERS = ("deficits",)
#: Layers whose rows belong to a compound through ``compound_id`` (an unknown id is an error).
COMPOUND_PARTS = ("entrances", "buildings", "deficits")
REQUIRED_LAYERS = ("compounds",)

_GEOMETRY_KINDS = {
    "polygon": {"Polygon", "MultiPolygon"},
    "line": {"LineString", "MultiLineString"},
    "point": {"Point", "MultiPoint"},
    "point_or_polygon": {"Point", "MultiPoint", "Polygon", "MultiPolygon"},
    "any": {"Point", "MultiPoint", "Polygon", "MultiPolygon", "LineString", "MultiLineString"},
}
_YEAR_RE = re.compile(r"^\s*(\d{4})(?:\s*年)?(?:[-/.年]\s*\d{1,2}.*)?\s*$")
_PERCENT_RE = re.compile(r"^\s*([0-9]+(?:\.[0-9]*)?)\s*[%％]\s*$")
#: The largest whole number a float64 holds exactly (2**53): the cap of a whole-number field without a ``max``.
_MAX_EXACT_INT = 2**53


@cache
def load_schema() -> dict[str, Any]:
    """Return the parsed ``data/schema.toml`` (layers, fields, vocabularies, extent check).

    One parse shared by every caller: read it, do not change it.
    """
    return load_toml("schema.toml")


def layer_spec(layer: str) -> dict[str, Any]:
    """The schema of one layer: ``{"title_zh", "geometry", "id", "fields": {name: spec}}``."""
    layers = load_schema()["layers"]
    if layer not in layers:
        raise KeyError(f"unknown layer {layer!r}; layers are {', '.join(layers)}")
    return layers[layer]


def _facility_vocabulary() -> dict[str, str]:
    """Facility-type vocabulary of the bundled standards (keys, Chinese names, aliases → key)."""
    from .standards import load_standards

    return load_standards().vocabulary()


def _vocabulary(name: str, facility_types: Mapping[str, str] | None) -> dict[str, str]:
    if name == "facility_types":
        return dict(facility_types) if facility_types is not None else _facility_vocabulary()
    values = load_schema()["values"][name]
    vocab: dict[str, str] = {}
    for key, aliases in values.items():
        for alias in [key, *aliases]:
            vocab.setdefault(str(alias).strip().lower(), key)
    return vocab


def geometry_name(df: pd.DataFrame) -> str | None:
    """The name of the active geometry column of a GeoDataFrame; None for a table without one."""
    if isinstance(df, gpd.GeoDataFrame) and df._geometry_column_name in df.columns:
        return df.geometry.name
    return None


def empty_layer(layer: str, crs: Any = None) -> gpd.GeoDataFrame:
    """An empty GeoDataFrame with the required columns of ``layer``."""
    spec = layer_spec(layer)
    cols = [name for name, f in spec["fields"].items() if f.get("required")]
    return gpd.GeoDataFrame({c: pd.Series(dtype=object) for c in cols}, geometry=gpd.GeoSeries([], crs=crs),
                            crs=crs)


def normalise_columns(
    gdf: gpd.GeoDataFrame, layer: str
) -> tuple[gpd.GeoDataFrame, dict[str, str], list[tuple[str, str]]]:
    """Rename Chinese / alternative column names to the canonical names of ``layer``.

    Matching ignores case and surrounding blanks. A canonical column already present wins over an alias.

    Returns
    -------
    (renamed copy, mapping old → new, conflicts as (alias, canonical) pairs where both were present)
    """
    fields = layer_spec(layer)["fields"]
    lookup: dict[str, str] = {}
    for name in fields:
        lookup.setdefault(name.lower(), name)
    for name, f in fields.items():
        for alias in f.get("aliases", []):
            lookup.setdefault(str(alias).strip().lower(), name)
    geom_name = geometry_name(gdf)
    present = {c for c in gdf.columns if c != geom_name}
    renames: dict[str, str] = {}
    conflicts: list[tuple[str, str]] = []
    taken = {c for c in present if c in fields}
    for col in gdf.columns:
        if col == geom_name or col in fields:
            continue
        key = str(col).strip().lower()
        target = lookup.get(key)
        if target is None and len(key) == 10:
            # Shapefile .dbf field names are cut to 10 characters: compound_i → compound_id
            prefixed = [name for name in fields if name.lower().startswith(key)]
            target = prefixed[0] if len(prefixed) == 1 else None
        if target is None:
            continue
        if target in taken:
            conflicts.append((str(col), target))
            continue
        renames[col] = target
        taken.add(target)
    return gdf.rename(columns=renames), renames, conflicts


@dataclass
class ValidationReport:
    """All problems found in a set of layers, and what was done about them.

    ``exit_code`` follows the CLI contract: 0 clean, 1 warnings only, 2 errors.
    """

    problems: list[Problem] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "error"]

    @property
    def warnings(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "warning"]

    @property
    def exit_code(self) -> int:
        return 2 if self.errors else (1 if self.warnings else 0)

    def __str__(self) -> str:
        lines = [str(p) for p in self.errors] + [str(p) for p in self.warnings]
        lines += [f"NOTE: {n}" for n in self.notes]
        lines.append(
            f"{len(self.errors)} error(s), {len(self.warnings)} warning(s) — "
            f"错误 {len(self.errors)} 项，警告 {len(self.warnings)} 项"
        )
        return "\n".join(lines)


class _Collector:
    """Builds Problems with a consistent 'source:layer row N (id=X): field …' prefix."""

    def __init__(self, source: str, layer: str, ids: pd.Series | None):
        self.source, self.layer, self.ids = source, layer, ids
        self.problems: list[Problem] = []

    def where(self, pos: int | None) -> str:
        if pos is None:
            return f"{self.source} layer '{self.layer}'"
        fid = None if self.ids is None else self.ids.iloc[pos]
        fid_txt = "" if fid is None or (isinstance(fid, float) and np.isnan(fid)) else f" (id={_printable(fid)})"
        return f"{self.source} layer '{self.layer}' row {int(pos) + 1}{fid_txt}"

    def add(self, severity: str, code: str, text: str, pos: int | None = None, fld: str | None = None) -> None:
        fid = None
        if pos is not None and self.ids is not None:
            v = self.ids.iloc[pos]
            fid = None if pd.isna(v) else str(v)
        self.problems.append(Problem(severity=severity, layer=self.layer, message=f"{self.where(pos)}: {text}",
                                     row=None if pos is None else int(pos) + 1, feature_id=fid, field=fld, code=code))


def _printable(value: Any) -> str:
    """``value`` as text for a message: as is when printable, else its repr (a NUL or an escape code shown, not run)."""
    text = str(value)
    return text if text.isprintable() else repr(text)


def _show(value: Any) -> str:
    """A cell value for a message: text quoted (``'abc'``), numbers plain (``inf``, ``1e+30``, not ``np.float64(…)``)."""
    if isinstance(value, np.generic):
        value = value.item()
    return repr(value)


def _as_id_strings(series: pd.Series) -> pd.Series:
    """Ids as strings; whole floats (17.0) become '17'."""
    def conv(v: Any) -> Any:
        if v is None or (isinstance(v, float) and np.isnan(v)) or v is pd.NA:
            return None
        if isinstance(v, (float, np.floating)) and float(v).is_integer():
            return str(int(v))
        s = str(v).strip()
        return s or None
    return series.map(conv).astype(object)


def _coerce_numeric(values: pd.Series) -> pd.Series:
    if pd.api.types.is_bool_dtype(values):
        return values.astype(float)
    if pd.api.types.is_numeric_dtype(values):
        return values.astype(float)
    cleaned = values.map(lambda v: v.strip().replace(",", "") if isinstance(v, str) else v)
    return pd.to_numeric(cleaned, errors="coerce").astype(float)


def _coerce_year(values: pd.Series) -> pd.Series:
    if pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values):
        return values.astype(float)

    def conv(v: Any) -> float:
        if v is None or v is pd.NA or (isinstance(v, float) and np.isnan(v)):
            return np.nan
        if isinstance(v, (int, np.integer, float, np.floating)):
            return float(v)
        if isinstance(v, (_dt.date, pd.Timestamp)):
            return float(v.year)
        m = _YEAR_RE.match(str(v))
        return float(m.group(1)) if m else np.nan

    return values.map(conv).astype(float)


def _coerce_fraction(values: pd.Series) -> pd.Series:
    def conv(v: Any) -> float:
        if isinstance(v, str):
            m = _PERCENT_RE.match(v)
            if m:
                return float(m.group(1)) / 100.0
        return v
    if pd.api.types.is_numeric_dtype(values):
        return _coerce_numeric(values)
    return _coerce_numeric(values.map(conv).astype(object))


def _coerce_bool(values: pd.Series) -> pd.Series:
    if pd.api.types.is_bool_dtype(values):
        return values.astype(object)
    vocab = _vocabulary("bool", None)

    def conv(v: Any) -> Any:
        if v is None or v is pd.NA or (isinstance(v, float) and np.isnan(v)):
            return None
        if isinstance(v, (bool, np.bool_)):
            return bool(v)
        if isinstance(v, (int, np.integer, float, np.floating)) and float(v) in (0.0, 1.0):
            return bool(v)
        key = vocab.get(str(v).strip().lower())
        return {"true": True, "false": False}.get(key, "__bad__")
    return values.map(conv).astype(object)


def _check_field(
    gdf: gpd.GeoDataFrame, name: str, spec: dict[str, Any], col: _Collector,
    facility_types: Mapping[str, str] | None, current_year: int,
) -> pd.Series:
    """Type and range checks of one column; returns the typed column."""
    raw = gdf[name]
    kind = spec["type"]
    present = raw.notna() & ~raw.map(lambda v: isinstance(v, str) and not v.strip()).astype(bool)

    if kind == "str":
        if name.endswith("_id"):
            padded = np.flatnonzero(raw.map(lambda v: isinstance(v, str) and v.strip() != v and bool(v.strip()))
                                    .to_numpy(dtype=bool))
            if len(padded):
                first = raw.iloc[padded[0]]
                col.add("warning", "id_trimmed", f"{name} {first!r} has spaces, tabs or line breaks around it, "
                        f"removed: {first.strip()!r}" + (f" (and {len(padded) - 1} more row(s))" if len(padded) > 1
                                                         else ""), int(padded[0]), name)
        out = _as_id_strings(raw) if name.endswith("_id") else raw.map(
            lambda v: None if (v is None or v is pd.NA or (isinstance(v, float) and np.isnan(v)))
            else (str(v).strip() or None)).astype(object)
        vocab_name = spec.get("values")
        if vocab_name:
            vocab = _vocabulary(vocab_name, facility_types)
            # an empty cell is None, or NaN once pandas stores the text column as its string dtype
            mapped = out.map(lambda v: None if v is None or (isinstance(v, float) and np.isnan(v))
                             else vocab.get(str(v).strip().lower(), "__bad__"))
            bad = np.flatnonzero((mapped == "__bad__").to_numpy())
            allowed = sorted(set(vocab.values()))
            for pos in bad:
                col.add("error", "bad_value", f"{name} {_show(out.iloc[pos])} is not a known value "
                        f"(allowed: {', '.join(allowed)}, or their Chinese names)", pos, name)
            out = mapped.where(mapped != "__bad__", None)
        return out

    if kind == "bool":
        out = _coerce_bool(raw)
        for pos in np.flatnonzero((out == "__bad__").to_numpy()):
            col.add("error", "bad_type", f"{name} {_show(raw.iloc[pos])} is not yes/no (是/否, true/false, 1/0)",
                    pos, name)
        return out.where(out != "__bad__", None)

    if kind in ("int", "float"):
        num = _coerce_numeric(raw)
        word = "a whole number" if kind == "int" else "a number"
    elif kind == "year":
        num = _coerce_year(raw)
        word = "a year"
    elif kind == "fraction":
        num = _coerce_fraction(raw)
        word = "a fraction between 0 and 1"
    else:  # pragma: no cover - schema data error
        raise ValueError(f"schema.toml: unknown type {kind!r} for field {name}")

    bad_type = present.to_numpy() & num.isna().to_numpy()
    for pos in np.flatnonzero(bad_type):
        col.add("error", "bad_type", f"{name} {_show(raw.iloc[pos])} is not {word}", pos, name)
    values = num.to_numpy(dtype=float)
    # ±inf (a GeoPackage REAL, 'inf' text, 1e999): never a count, an area or a year; NaN is "empty", handled above
    infinite = np.isinf(values)
    for pos in np.flatnonzero(infinite):
        col.add("error", "not_finite", f"{name} {_show(raw.iloc[pos])} is not a finite number ({word} is required)",
                pos, name)
    values = np.where(infinite, np.nan, values)
    finite = ~np.isnan(values)
    if kind in ("int", "year"):
        frac = finite & (np.abs(values - np.round(np.where(finite, values, 0.0))) > 1e-9)
        for pos in np.flatnonzero(frac):
            col.add("error", "bad_type", f"{name} {_show(raw.iloc[pos])} is not {word}", pos, name)
        finite &= ~frac
        values = np.where(frac, np.nan, values)
    lo, hi = spec.get("min"), spec.get("max")
    ahead = int(spec.get("max_ahead", 0))  # a year field of plans (plan_year) may lie this many years ahead
    if kind == "year":
        hi = current_year + ahead if hi is None else min(hi, current_year + ahead)
    elif kind == "int" and hi is None:  # a whole number must stay exact as a float64 and fit an Int64
        hi = _MAX_EXACT_INT
    if lo is not None:
        for pos in np.flatnonzero(finite & (values < lo)):
            what = "negative" if lo == 0 else f"below {lo}"
            col.add("error", "out_of_range", f"{name} {_show(raw.iloc[pos])} is {what} "
                    f"(allowed {lo}–{hi if hi is not None else '∞'})", pos, name)
    if hi is not None:
        for pos in np.flatnonzero(finite & (values > hi)):
            extra = ""
            if kind == "fraction" and values[pos] <= 100:
                extra = " — looks like a percentage; give 0–1 or write it as '85%'"
            elif kind == "year":
                extra = (f" — in the future (now {current_year})" if not ahead
                         else f" — more than {ahead} years ahead (now {current_year})")
            col.add("error", "out_of_range", f"{name} {_show(raw.iloc[pos])} is above {hi}{extra}", pos, name)
    if kind in ("int", "year"):
        # a value already reported as beyond any whole number (1e30) cannot become an Int64: left empty
        exact = np.where(np.abs(np.nan_to_num(values)) <= _MAX_EXACT_INT, values, np.nan)
        return pd.Series(exact, index=num.index).round().astype("Int64")
    return pd.Series(values, index=num.index)


def _check_geometry(gdf: gpd.GeoDataFrame, kind: str, col: _Collector) -> gpd.GeoSeries:
    geom = gdf.geometry
    arr = geom.array
    missing = np.asarray(geom.isna()) | np.asarray(shapely.is_empty(np.asarray(arr)))
    for pos in np.flatnonzero(missing):
        col.add("error", "empty_geometry", "geometry is empty or null", pos, "geometry")
    types = np.asarray(geom.geom_type.fillna(""))
    allowed = _GEOMETRY_KINDS[kind]
    wrong = ~missing & ~np.isin(types, list(allowed))
    for pos in np.flatnonzero(wrong):
        col.add("error", "wrong_geometry", f"geometry is a {types[pos]}, expected {kind.replace('_', ' or ')}",
                pos, "geometry")
    geoms = np.asarray(arr)
    ok = ~missing & ~wrong
    # a NaN or infinite vertex makes every GEOS operation fail (or silently return nonsense): an error, not a repair
    nonfinite = ok & ~finite_geometries(geoms)
    for pos in np.flatnonzero(nonfinite):
        col.add("error", "non_finite_vertex", "geometry has a vertex with a NaN or infinite coordinate "
                f"({_first_bad_vertex(geoms[pos])}); fix or delete that vertex", pos, "geometry")
    ok &= ~nonfinite
    invalid = ok & ~shapely.is_valid(np.where(ok, geoms, None))
    if invalid.any():
        reasons = shapely.is_valid_reason(geoms[invalid])
        repaired = shapely.make_valid(geoms[invalid])
        if kind in ("polygon", "point_or_polygon"):
            repaired = np.array([_keep_polygons(g) for g in repaired], dtype=object)
            # a polygon without area (all its vertices on a line) repairs to a line or a point: no red line left
            flat = ~np.isin(shapely.get_type_id(repaired), [3, 6])
            if kind == "point_or_polygon":  # a facility is still a place: its point
                repaired[flat] = shapely.point_on_surface(repaired[flat])
        else:
            flat = np.zeros(len(repaired), dtype=bool)
        for pos, why, no_area in zip(np.flatnonzero(invalid), reasons, flat, strict=True):
            if no_area and kind == "polygon":
                col.add("error", "zero_area_polygon", f"polygon has no area ({why}): its vertices lie on a line; "
                        "redraw or delete it", pos, "geometry")
            else:
                col.add("warning", "invalid_geometry", f"invalid geometry ({why}) repaired with make_valid"
                        + (" — it has no area and is kept as a point" if no_area else ""), pos, "geometry")
        geoms = geoms.copy()
        geoms[invalid] = repaired
    return gpd.GeoSeries(geoms, index=gdf.index, crs=gdf.crs)


def outside_crs_area(gdf: gpd.GeoDataFrame, margin_deg: float) -> np.ndarray:
    """Which features cannot be placed on the globe, or lie outside their CRS's area of use while most of the
    layer lies inside it (the area widened by ``margin_deg`` degrees).

    Each feature's bounding-box corners are taken to longitude / latitude; a corner that cannot be placed there
    (infinite, beyond ±180° / ±90°) or an outlier outside the area of use of the declared CRS means a typo in a
    coordinate (a vertex 10⁹ m away) or a row given in degrees inside a layer in metres. Features without
    geometry, or a layer without a CRS, are not judged (False).
    """
    out = np.zeros(len(gdf), dtype=bool)
    crs = gdf.crs
    if crs is None or not len(gdf):
        return out
    import pyproj

    geoms = np.asarray(gdf.geometry.array)
    present = ~(shapely.is_missing(geoms) | shapely.is_empty(geoms)) & finite_geometries(geoms)
    if not present.any():
        return out
    b = shapely.bounds(geoms[present])
    area = crs.area_of_use
    west, south, east, north = (area.west, area.south, area.east, area.north) if area else (-180, -90, 180, 90)
    if west > east:  # an area across the antimeridian: judge latitude only
        west, east = -180.0, 180.0
    to_lonlat = pyproj.Transformer.from_crs(crs, 4326, always_xy=True)
    unplaced = np.zeros(len(b), dtype=bool)
    outside = np.zeros(len(b), dtype=bool)
    for x, y in ((b[:, 0], b[:, 1]), (b[:, 2], b[:, 3]), (b[:, 0], b[:, 3]), (b[:, 2], b[:, 1])):
        with np.errstate(invalid="ignore"):
            lon, lat = to_lonlat.transform(x, y, errcheck=False)
        lon, lat = np.asarray(lon, dtype=float), np.asarray(lat, dtype=float)
        placed = np.isfinite(lon) & np.isfinite(lat) & (np.abs(lon) <= 180) & (np.abs(lat) <= 90)
        inside = (lon >= west - margin_deg) & (lon <= east + margin_deg) & (lat >= south - margin_deg) \
            & (lat <= north + margin_deg)
        unplaced |= ~placed
        outside |= placed & ~inside
    # outside the area is judged against the layer itself: a row off while most rows are in (a layer drawn wholly
    # elsewhere — a local grid declared as a real CRS — is the overlap check's concern, not a row's)
    if (~outside & ~unplaced).sum() * 2 < len(b):
        outside[:] = False
    out[np.flatnonzero(present)[unplaced | outside]] = True
    return out


def _check_crs_area(gdf: gpd.GeoDataFrame, col: _Collector) -> None:
    margin = float(load_schema()["extent"]["crs_area_margin_deg"])
    for pos in np.flatnonzero(outside_crs_area(gdf, margin)):
        x0, y0, x1, y1 = shapely.bounds(np.asarray(gdf.geometry.array)[pos])
        area = gdf.crs.area_of_use
        where = f"{area.name} ({area.west:g}–{area.east:g}°E, {area.south:g}–{area.north:g}°N)" if area else "the globe"
        col.add("error", "outside_crs_area", f"geometry lies outside the area of its CRS {gdf.crs.to_string()}, "
                f"{where} (bounds {x0:.6g}, {y0:.6g}, {x1:.6g}, {y1:.6g}): a mistyped coordinate, a row in "
                f"degrees in a layer in metres, or a wrong declared CRS?", int(pos), "geometry")


def finite_geometries(geoms: np.ndarray) -> np.ndarray:
    """Which geometries have only finite x/y coordinates (missing and empty ones count as finite).

    Vectorised over all vertices at once (``shapely.get_coordinates``).
    """
    geoms = np.asarray(geoms, dtype=object)
    ok = np.ones(len(geoms), dtype=bool)
    if len(geoms) == 0:
        return ok
    coords, index = shapely.get_coordinates(geoms, return_index=True)
    bad = ~np.isfinite(coords).all(axis=1)
    ok[np.unique(index[bad])] = False
    return ok


def _first_bad_vertex(g: shapely.Geometry) -> str:
    coords = shapely.get_coordinates(g)
    bad = coords[~np.isfinite(coords).all(axis=1)]
    return f"x={bad[0, 0]:g}, y={bad[0, 1]:g}" if len(bad) else "?"


def _keep_polygons(g: shapely.Geometry) -> shapely.Geometry:
    if g.geom_type in ("Polygon", "MultiPolygon"):
        return g
    parts = [p for p in shapely.get_parts(g) if p.geom_type in ("Polygon", "MultiPolygon")]
    if not parts:
        return g
    return shapely.union_all(parts)


def validate_layer(
    gdf: gpd.GeoDataFrame,
    layer: str,
    *,
    source: str = "",
    facility_types: Mapping[str, str] | None = None,
    current_year: int | None = None,
) -> tuple[gpd.GeoDataFrame, list[Problem]]:
    """Validate one layer against its schema.

    Parameters
    ----------
    gdf : the layer as read (any column names; Chinese aliases are recognised).
    layer : schema layer name, one of :data:`LAYER_NAMES` (``compounds``, ``vacant``, ``facilities``, ``roads``,
        ``projects``, ``boundaries``, ``heritage``, ``green_space`` …).
    source : file name used in messages (e.g. ``layers.gpkg``).
    facility_types : optional vocabulary name → facility type key (defaults to the standards data).
    current_year : year used to reject future build years (defaults to today).

    Returns
    -------
    (typed copy with canonical columns, problems). The copy keeps unknown columns untouched.
    """
    current_year = current_year or _dt.date.today().year
    spec = layer_spec(layer)
    fields = spec["fields"]
    source = source or "input"
    out, renames, conflicts = normalise_columns(gdf, layer)
    out = out.copy()
    id_field = spec.get("id")
    ids = _as_id_strings(out[id_field]) if id_field in out.columns else None
    col = _Collector(source, layer, ids)
    for alias, canonical in conflicts:
        col.add("warning", "alias_conflict", f"column '{alias}' ignored: '{canonical}' is already present",
                None, alias)

    if len(out) == 0:
        severity = "error" if layer in REQUIRED_LAYERS else "warning"
        col.add(severity, "empty_layer", "the layer has no features")
    _check_nul_text(out, col)

    for name, fspec in fields.items():
        if name not in out.columns:
            if fspec.get("required"):
                aliases = ", ".join(fspec.get("aliases", [])[:4])
                col.add("error", "missing_column",
                        f"required column '{name}' is missing (also accepted: {aliases})", None, name)
            continue
        blank = out[name].isna().to_numpy() | out[name].map(
            lambda v: isinstance(v, str) and not v.strip()).to_numpy(dtype=bool)
        out[name] = _check_field(out, name, fspec, col, facility_types, current_year)
        if fspec.get("nullable") is False:
            nulls = np.flatnonzero(blank)
            for pos in nulls:
                col.add("error", "null_value", f"{name} is empty but required", pos, name)
        elif fspec.get("if_empty"):
            for pos in np.flatnonzero(blank):
                col.add("warning", "empty_value", f"{name} is empty — {fspec['if_empty']}", pos, name)

    if id_field in out.columns:
        idv = out[id_field]
        dup = idv.duplicated(keep="first") & idv.notna()
        first = {v: i for i, v in reversed(list(enumerate(idv))) if v is not None}
        for pos in np.flatnonzero(dup.to_numpy()):
            col.add("error", "duplicate_id",
                    f"{id_field} {idv.iloc[pos]!r} duplicates row {first[idv.iloc[pos]] + 1}", pos, id_field)

    if spec["geometry"] == "none":
        geom_name = geometry_name(out)
        return pd.DataFrame(out.drop(columns=[geom_name]) if geom_name else out), col.problems
    if out.crs is None and len(out):
        col.add("error", "missing_crs", "the layer has no coordinate reference system (CRS); "
                "set it in the source file or declare it in plan.toml ([layers.<name>] crs = 'EPSG:4326')")
    if len(out):
        out = out.set_geometry(_check_geometry(out, spec["geometry"], col))
        _check_crs_area(out, col)
        if layer in load_schema()["overlap"]["layers"]:
            _warn_heavy_overlaps(out, col)
    return out, col.problems


def _check_nul_text(gdf: gpd.GeoDataFrame, col: _Collector) -> None:
    """Text holding a NUL character (``\\x00``) is an error: GIS formats and SQL cut text at it (``C\\x00002`` would
    become ``C``), so the value would silently change on the way out."""
    for name in gdf.columns:
        values = gdf[name]
        if name == geometry_name(gdf) or not (pd.api.types.is_object_dtype(values)
                                             or pd.api.types.is_string_dtype(values)):
            continue
        try:
            has_nul = values.str.contains("\x00", regex=False, na=False).to_numpy(dtype=bool)
        except AttributeError:  # an object column holding no text at all
            continue
        for pos in np.flatnonzero(has_nul):
            col.add("error", "nul_character", f"{name} {values.iloc[pos]!r} contains a NUL character (\\x00), "
                    "which files and databases cut the text at; remove it", int(pos), str(name))


def _warn_heavy_overlaps(gdf: gpd.GeoDataFrame, col: _Collector) -> None:
    """One warning naming a few pairs and the count of polygons overlapping another by more than a share of the
    smaller one (``[overlap]`` of schema.toml)."""
    settings = load_schema()["overlap"]
    partner = heavy_overlap_partners(np.asarray(gdf.geometry.array), min_share=settings["min_share"],
                                     chunk=settings["chunk"], max_candidates=settings["max_candidates"])
    flagged = np.flatnonzero(partner >= 0)
    if len(flagged) == 0:
        return
    ids = col.ids if col.ids is not None else pd.Series([None] * len(gdf))

    def name(pos: int) -> str:
        v = ids.iloc[pos]
        return f"row {pos + 1}" if v is None else _printable(v)

    # each pair once (C001 ↔ D001, not also D001 ↔ C001), in row order
    a, b = np.minimum(flagged, partner[flagged]), np.maximum(flagged, partner[flagged])
    _, first = np.unique(a * len(gdf) + b, return_index=True)
    shown = np.sort(first)[: settings["examples"]]
    examples = ", ".join(f"{name(int(a[k]))} ↔ {name(int(b[k]))}" for k in shown)
    col.add("warning", "heavy_overlap",
            f"{len(flagged):,} of {len(gdf):,} features overlap another feature of the layer by more than "
            f"{settings['min_share']:.0%} of the smaller one's area (e.g. {examples}): duplicated or stacked "
            "copies count their households twice and slow bundling down — 图斑重叠，请检查是否重复",
            None, "geometry")


def heavy_overlap_partners(
    geoms: np.ndarray, *, min_share: float, chunk: int = 256, max_candidates: int = 8
) -> np.ndarray:
    """For each polygon, one other polygon it overlaps by more than ``min_share`` of the smaller area, or -1.

    Near-linear in memory: identical shapes are grouped by their normalised WKB first (a pile of 10,000 copies is
    one shape), the distinct shapes go into an STRtree queried ``chunk`` at a time, and each shape's candidates are
    tested ``max_candidates`` at a time, stopping at its first partner. Missing, empty, invalid, zero-area and
    non-finite shapes are never partners.

    Parameters
    ----------
    geoms : array of shapely geometries.
    min_share : overlap share of the smaller polygon's area above which two polygons overlap "heavily".
    chunk, max_candidates : batch sizes bounding the memory of one step.

    Returns
    -------
    int array, the partner's position for each input position (-1: none).
    """
    geoms = np.asarray(geoms, dtype=object)
    partner = np.full(len(geoms), -1, dtype=np.int64)
    usable = ~shapely.is_missing(geoms) & ~shapely.is_empty(geoms) & finite_geometries(geoms)
    usable[usable] = shapely.is_valid(geoms[usable]) & (shapely.area(geoms[usable]) > 0)
    pos = np.flatnonzero(usable)
    if len(pos) < 2:
        return partner
    g = geoms[pos]
    wkb = shapely.to_wkb(shapely.normalize(g))
    _, first, inverse, counts = np.unique(wkb, return_index=True, return_inverse=True, return_counts=True)
    inverse = inverse.ravel()
    # identical copies: each member's partner is the group's first member (the first one's, the second member)
    order = np.argsort(inverse, kind="stable")
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    firsts, seconds = order[starts], order[np.minimum(starts + 1, len(order) - 1)]
    same = np.where(firsts[inverse] == np.arange(len(g)), seconds[inverse], firsts[inverse])
    local = np.where(counts[inverse] > 1, same, -1)

    unique = g[first]
    found = np.full(len(unique), -1, dtype=np.int64)
    if len(unique) > 1:
        tree = shapely.STRtree(unique)
        areas = shapely.area(unique)
        for start in range(0, len(unique), chunk):
            q = np.arange(start, min(start + chunk, len(unique)))
            q = q[found[q] < 0]
            if len(q) == 0:
                continue
            qi, cj = tree.query(unique[q])
            qi = q[qi]
            keep = qi != cj
            qi, cj = qi[keep], cj[keep]
            sort = np.argsort(qi, kind="stable")
            qi, cj = qi[sort], cj[sort]
            rank = np.arange(len(qi)) - np.searchsorted(qi, qi, side="left")
            for r in range(0, int(rank.max(initial=-1)) + 1, max_candidates):
                sel = np.flatnonzero((rank >= r) & (rank < r + max_candidates) & (found[qi] < 0))
                if len(sel) == 0:
                    break
                a, b = qi[sel], cj[sel]
                inter = shapely.area(shapely.intersection(unique[a], unique[b]))
                hit = inter > min_share * np.minimum(areas[a], areas[b])
                a, b = a[hit], b[hit]
                found[a] = b
                free = found[b] < 0
                found[b[free]] = a[free]
    far = found[inverse]
    local = np.where((local < 0) & (far >= 0), first[np.maximum(far, 0)], local)
    partner[pos] = np.where(local >= 0, pos[np.maximum(local, 0)], -1)
    return partner


def validate_layers(
    layers: Mapping[str, gpd.GeoDataFrame | None],
    *,
    source: str | Mapping[str, str] = "",
    facility_types: Mapping[str, str] | None = None,
    current_year: int | None = None,
) -> tuple[dict[str, gpd.GeoDataFrame], ValidationReport]:
    """Validate a set of layers, bring them to one CRS and check they overlap.

    Layers in a CRS different from the compounds layer are reprojected to it (reported as warnings).
    A layer whose extent does not overlap the compounds at all is an error (usually a wrong CRS or swapped
    lon/lat). Missing optional layers are reported as warnings; a missing ``compounds`` layer is an error.

    Returns
    -------
    (cleaned layers by name, ValidationReport)
    """
    report = ValidationReport()
    sources = source if isinstance(source, Mapping) else {name: source for name in LAYER_NAMES}
    cleaned: dict[str, gpd.GeoDataFrame] = {}
    for name in LAYER_NAMES:
        gdf = layers.get(name)
        src = sources.get(name) or "input"
        if gdf is None:
            if name in REQUIRED_LAYERS:
                report.problems.append(Problem("error", name, f"{src}: layer '{name}' is missing", code="missing_layer"))
            elif name not in OPTIONAL_LAYERS:
                consequence = {
                    "roads": "coverage falls back to straight-line distance × detour factor",
                    "facilities": "every compound will show every facility type as missing",
                    "vacant": "no sites can be proposed for missing facilities",
                    "projects": "no revenue projects for funding balance",
                }[name]
                report.problems.append(Problem("warning", name, f"{src}: layer '{name}' is missing — {consequence}",
                                               code="missing_layer"))
            continue
        clean, problems = validate_layer(gdf, name, source=src, facility_types=facility_types,
                                         current_year=current_year)
        report.problems.extend(problems)
        cleaned[name] = clean

    ref = cleaned.get("compounds")
    for part_name in COMPOUND_PARTS:
        part = cleaned.get(part_name)
        if ref is None or part is None or "compound_id" not in part.columns or "compound_id" not in ref.columns:
            continue
        known = set(ref["compound_id"].dropna())
        src = sources.get(part_name) or "input"
        id_field = layer_spec(part_name).get("id")
        col = _Collector(src, part_name, _as_id_strings(part[id_field]) if id_field in part.columns else None)
        unknown = part["compound_id"].notna().to_numpy() & ~part["compound_id"].isin(known).to_numpy()
        for pos in np.flatnonzero(unknown):
            col.add("error", "unknown_reference", f"compound_id {part['compound_id'].iloc[pos]!r} is not in "
                    "the compounds layer", int(pos), "compound_id")
        report.problems.extend(col.problems)
    target = ref.crs if ref is not None else None
    if target is not None:
        for name, gdf in list(cleaned.items()):
            if name in TABLE_LAYERS or gdf.crs is None or gdf.crs == target or len(gdf) == 0:
                continue
            src = sources.get(name) or "input"
            report.problems.append(Problem(
                "warning", name, f"{src} layer '{name}': CRS {gdf.crs.to_string()} differs from the compounds layer "
                f"({target.to_string()}); reprojected", code="crs_mismatch"))
            cleaned[name] = reproject(gdf, target, layer=name, source=src, problems=report.problems)
        ref_bounds = _bounds(ref)
        extent = load_schema()["extent"]
        if ref_bounds is not None:
            for name, gdf in cleaned.items():
                if name == "compounds" or name in TABLE_LAYERS or gdf.crs is None or len(gdf) == 0:
                    continue
                b = _bounds(gdf)
                # Partner projects may lie outside the compounds' extent, so allow a margin of one extent
                # (at least [extent] of schema.toml); a wrong CRS or swapped lon/lat puts layers far beyond it.
                x0, y0, x1, y1 = ref_bounds
                margin = max(x1 - x0, y1 - y0, extent["min_overlap_margin_deg"] if target.is_geographic
                             else extent["min_overlap_margin_m"])
                study = shapely.box(x0 - margin, y0 - margin, x1 + margin, y1 + margin)
                if b is not None and not shapely.box(*b).intersects(study):
                    src = sources.get(name) or "input"
                    report.problems.append(Problem(
                        "error", name, f"{src} layer '{name}' does not overlap the compounds layer at all "
                        f"(bounds {_fmt_bounds(b)} vs {_fmt_bounds(ref_bounds)}): wrong CRS or swapped lon/lat?",
                        code="no_overlap"))
    return cleaned, report


def reproject(gdf: gpd.GeoDataFrame, target: Any, *, layer: str, source: str,
              problems: list[Problem]) -> gpd.GeoDataFrame:
    """``gdf.to_crs(target)``, reporting rows the transformation cannot place as errors in ``problems``.

    PROJ returns infinite coordinates for points outside a CRS's domain (a latitude of 95°, a wrong zone) and
    raises for CRS pairs it cannot relate; both become an error naming the layer (and rows), never a crash or a
    silent NaN downstream.
    """
    try:
        out = gdf.to_crs(target)
    except Exception as exc:  # noqa: BLE001 - pyproj raises several unrelated types (CRSError, ProjError …)
        problems.append(Problem("error", layer, f"{source} layer '{layer}': cannot reproject from "
                                f"{gdf.crs.to_string() if gdf.crs else '?'} to {_crs_text(target)}: {exc}",
                                code="reprojection_failed"))
        return gdf
    geoms = np.asarray(out.geometry.array)
    was_finite = finite_geometries(np.asarray(gdf.geometry.array))
    bad = np.flatnonzero(was_finite & ~finite_geometries(geoms))
    if len(bad):
        ids = _as_id_strings(out[layer_spec(layer)["id"]]) if layer_spec(layer)["id"] in out.columns else None
        col = _Collector(source, layer, ids)
        for pos in bad:
            col.add("error", "reprojection_failed", f"geometry cannot be reprojected from "
                    f"{gdf.crs.to_string()} to {_crs_text(target)} (coordinates outside that CRS's area: "
                    "a wrong declared CRS or swapped lon/lat?)", int(pos), "geometry")
        problems.extend(col.problems)
    return out


def _crs_text(crs: Any) -> str:
    return crs.to_string() if hasattr(crs, "to_string") else str(crs)


def _bounds(gdf: gpd.GeoDataFrame) -> tuple[float, float, float, float] | None:
    arr = np.asarray(gdf.geometry.array)
    arr = arr[~shapely.is_missing(arr) & ~shapely.is_empty(arr)]
    if len(arr) == 0:
        return None
    b = shapely.total_bounds(arr)
    return tuple(float(v) for v in b) if np.all(np.isfinite(b)) else None


def _fmt_bounds(b: tuple[float, float, float, float]) -> str:
    return "(" + ", ".join(f"{v:.6g}" for v in b) + ")"


@dataclass
class Layers:
    """The validated input layers of a plan, all in one metric CRS.

    Attributes
    ----------
    compounds, vacant, facilities, roads, projects, boundaries, entrances : GeoDataFrames (None when absent);
        ``entrances`` are points with ``compound_id`` through which a compound is reached on foot;
        ``buildings`` (楼栋 footprints with ``compound_id``) and ``deficits`` (问题清单: a table of
        ``compound_id, item, quantity`` without geometry) refine the renovation items and their cost;
        ``heritage`` (历史文化街区 / 文物保护范围 / 历史建筑 polygons) and ``green_space`` (绿地 polygons) are the
        constraint layers of :func:`gis_planner.constraints.check`.
    report : the ValidationReport of reading and validating them.
    sources : layer name → where it was read from (file and layer), for messages and run.json.
    """

    compounds: gpd.GeoDataFrame
    vacant: gpd.GeoDataFrame | None = None
    facilities: gpd.GeoDataFrame | None = None
    roads: gpd.GeoDataFrame | None = None
    projects: gpd.GeoDataFrame | None = None
    boundaries: gpd.GeoDataFrame | None = None
    entrances: gpd.GeoDataFrame | None = None
    buildings: gpd.GeoDataFrame | None = None
    deficits: pd.DataFrame | None = None
    heritage: gpd.GeoDataFrame | None = None
    green_space: gpd.GeoDataFrame | None = None
    report: ValidationReport = field(default_factory=ValidationReport)
    sources: dict[str, str] = field(default_factory=dict)

    @property
    def crs(self) -> Any:
        return self.compounds.crs

    def as_dict(self) -> dict[str, gpd.GeoDataFrame]:
        """The present layers by name, in the canonical order."""
        return {n: g for n in LAYER_NAMES if (g := getattr(self, n)) is not None}

    def _repr_html_(self) -> str:
        rows = "".join(
            f"<tr><td>{n}</td><td>{layer_spec(n)['title_zh']}</td><td>{len(g)}</td></tr>"
            for n, g in self.as_dict().items()
        )
        return (f"<table><thead><tr><th>layer</th><th>图层</th><th>features</th></tr></thead>"
                f"<tbody>{rows}</tbody></table><p>CRS: {self.crs}</p>")
