"""Map data encoding: popup rows formatted by unit and escaped, tooltips, display geometries (simplified,
WGS-84 or GCJ-02) and the compact delta-coded datasets the map runtime decodes."""

from __future__ import annotations

import html
import json
import math
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely

from ..crs import from_wgs84
from .page import Dataset, js_json
from .style import labels, load_style

__all__ = ["dataset", "display_frame", "encode_geometries", "encode_points", "popup_rows", "tolerance_m",
           "tooltips"]


def _fmt(col: str, value: Any, lang: str) -> str | None:
    """One popup value, formatted by its unit and HTML-escaped (None = leave the row out)."""
    if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA:
        return None
    if isinstance(value, (bool, np.bool_)):
        return html.escape(labels(lang)["yes" if value else "no"])
    if isinstance(value, (int, float, np.integer, np.floating)):
        v = float(value)
        if col.endswith("_cny"):
            return html.escape(f"{v / 1e4:,.1f}")
        if col.endswith(("_m2", "_m")) or col in ("households", "capacity"):
            return html.escape(f"{v:,.0f}")
        if col.endswith("year") and v == int(v):
            return html.escape(str(int(v)))
        return html.escape(f"{v:,.0f}" if v == int(v) else f"{v:,.2f}")
    text = str(value)
    return html.escape(text) if text.strip() else None


def _fmt_column(col: str, values: list[Any], lang: str) -> list[str | None]:
    """:func:`_fmt` of a column's values, each distinct value (and type) formatted once."""
    memo: dict[tuple[type, Any], str | None] = {}
    out: list[str | None] = []
    for v in values:
        key = (type(v), v)
        try:
            out.append(memo[key])
        except KeyError:
            out.append(memo.setdefault(key, _fmt(col, v, lang)))
        except TypeError:  # unhashable
            out.append(_fmt(col, v, lang))
    return out


def popup_rows(gdf: pd.DataFrame, section: str, lang: str) -> tuple[list[str], list[list[str | None]]]:
    """The popup of each feature: (escaped field labels, per feature its escaped values) of the columns listed
    under ``[fields.<section>]`` of ``data/map_style.toml``, one language per popup."""
    spec = load_style()["fields"][section]
    # one language per popup: the Chinese column when lang="zh" and it exists, else the code / English one
    skip = set()
    for c in spec:
        for suffix in ("_zh", "_en"):
            if c.endswith(suffix):
                base = c[: -len(suffix)]
                if lang == "zh" and f"{base}_zh" in gdf.columns:
                    skip |= {base, f"{base}_en"}
                else:
                    skip.add(f"{base}_zh")
                    if f"{base}_en" in gdf.columns:
                        skip.add(base)
    cols = [c for c in spec if c in gdf.columns and c not in skip]
    field_labels = [html.escape(spec[c][0 if lang == "zh" else 1]) for c in cols]
    columns = [_fmt_column(c, gdf[c].tolist(), lang) for c in cols]
    values = [list(row) for row in zip(*columns, strict=True)] if columns else [[] for _ in range(len(gdf))]
    return field_labels, values


def tooltips(gdf: pd.DataFrame, id_col: str, name_col: str = "name", extra: Any = None) -> list[str]:
    """Escaped tooltips ``name（id）`` (or the id alone), with `` · extra`` when given."""
    ids = gdf[id_col].astype(str).tolist() if id_col in gdf.columns else [""] * len(gdf)
    names = gdf[name_col].tolist() if name_col in gdf.columns else [None] * len(gdf)
    extras = list(extra) if extra is not None else [None] * len(gdf)
    out = []
    for i, n, e in zip(ids, names, extras, strict=True):
        text = f"{n}（{i}）" if isinstance(n, str) and n.strip() and n != i else str(i)
        if isinstance(e, str) and e:
            text += f" · {e}"
        out.append(html.escape(text))
    return out


def tolerance_m(lat: float, zoom: int) -> float:
    """Half a screen pixel at ``zoom`` (Web Mercator ground resolution at latitude ``lat``), metres."""
    return 0.5 * 156543.03392 * math.cos(math.radians(lat)) / (2 ** zoom)


def display_frame(gdf: gpd.GeoDataFrame, tol_m: float, coord_system: str) -> gpd.GeoDataFrame:
    """Simplify (topology-preserving) in the metric CRS, then to WGS-84 (or GCJ-02 for an Amap basemap)."""
    g = gdf[gdf.geometry.notna() & ~gdf.geometry.is_empty].copy()
    if tol_m > 0 and g.crs is not None and g.crs.is_projected:
        kinds = shapely.get_type_id(g.geometry.values)
        poly_or_line = np.isin(kinds, (1, 2, 3, 5, 6))
        if poly_or_line.any():
            geoms = np.asarray(g.geometry.values, dtype=object)
            geoms[poly_or_line] = shapely.simplify(geoms[poly_or_line], tol_m, preserve_topology=True)
            g = g.set_geometry(gpd.GeoSeries(geoms, index=g.index, crs=g.crs))
    g = g.to_crs(4326)
    if coord_system == "gcj02":
        g = from_wgs84(g, "gcj02")
    return g


def encode_geometries(geoms: Any, precision: int) -> str:
    """Geometries as a compact JS object: coordinates quantised to ``precision`` decimals and delta-coded.

    Polygons go as MultiPolygons, lines as MultiLineStrings (``shapely.to_ragged_array``); the map runtime
    (``GP.decode``) rebuilds GeoJSON geometries. About 2.5× smaller than GeoJSON text with 6 decimals.
    """
    arr = np.asarray(geoms, dtype=object)
    if not len(arr):
        return "[]"
    kinds = shapely.get_type_id(arr)
    if np.isin(kinds, (3, 6)).all():
        arr, single = arr.copy(), kinds == 3
        arr[single] = shapely.multipolygons(arr[single], indices=np.arange(int(single.sum())))
        kind = "mp"
    elif np.isin(kinds, (1, 5)).all():
        arr, single = arr.copy(), kinds == 1
        arr[single] = shapely.multilinestrings(arr[single], indices=np.arange(int(single.sum())))
        kind = "ml"
    else:  # a mixed collection: plain GeoJSON
        arr = shapely.transform(arr, lambda c: np.round(c, precision))
        return "[" + ",".join(shapely.to_geojson(arr).tolist()) + "]"
    _, coords, offsets = shapely.to_ragged_array(arr)
    q = np.rint(coords * 10 ** precision).astype(np.int64).ravel()
    delta = np.empty_like(q)
    delta[1::2] = np.diff(q[1::2], prepend=0)
    delta[0::2] = np.diff(q[0::2], prepend=0)
    offs = ",".join(json.dumps(o.tolist(), separators=(",", ":")) for o in offsets)
    return (f'{{"enc":"{kind}","s":{10 ** precision},"c":' + json.dumps(delta.tolist(), separators=(",", ":")) +
            f',"o":[{offs}]}}')


def encode_points(geoms: Any, precision: int) -> str:
    """A point on each geometry's surface as ``[[x, y], ...]`` with ``precision`` decimals."""
    pts = shapely.get_coordinates(shapely.point_on_surface(np.asarray(geoms, dtype=object)))
    pts = np.round(pts, precision)
    return "[" + ",".join(f"[{x:.{precision}f},{y:.{precision}f}]".replace(".000000", "") for x, y in pts) + "]"


def dataset(geo: str, tips: list[str], fields: list[str] | None = None,
            rows: list[list[str | None]] | None = None) -> Dataset:
    """A :class:`Dataset` of encoded geometries, tooltips and (optionally) popup rows; columns with repeated
    values are dictionary-encoded."""
    body = f'{{"g":{geo},"t":{js_json(tips)}'
    if fields is not None and rows is not None:
        # dictionary-encode columns with repeated values (街道, 社区, 改造类别 …): rows hold indices
        luts: list[list[str] | None] = []
        if rows:
            cols = list(zip(*rows, strict=True))
            enc_cols = []
            for col in cols:
                values = [v for v in col if v is not None]
                uniq = list(dict.fromkeys(values))
                if len(values) > 20 and len(uniq) <= len(values) // 3:
                    index = {v: i for i, v in enumerate(uniq)}
                    enc_cols.append([None if v is None else index[v] for v in col])
                    luts.append(uniq)
                else:
                    enc_cols.append(list(col))
                    luts.append(None)
            rows = [list(r) for r in zip(*enc_cols, strict=True)]
        body += f',"f":{js_json(fields)},"p":{js_json(rows)}'
        if any(lut is not None for lut in luts):
            body += f',"d":{js_json(luts)}'
    return Dataset(body + "}")
