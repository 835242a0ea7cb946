"""Coordinate handling: metric CRS choice (CGCS2000 Gauss-Krüger / UTM) and GCJ-02 / BD-09 ↔ WGS-84."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import geopandas as gpd
import numpy as np
import pyproj
import shapely
from numpy.typing import ArrayLike, NDArray
from shapely.geometry.base import BaseGeometry

from gis_planner._errors import ConfigError, LayerError

__all__ = [
    "COORD_SYSTEMS",
    "CHINA_BBOX",
    "normalize_coord_system",
    "metric_crs",
    "in_china",
    "wgs84_to_gcj02",
    "gcj02_to_wgs84",
    "gcj02_to_bd09",
    "bd09_to_gcj02",
    "wgs84_to_bd09",
    "bd09_to_wgs84",
    "convert_coords",
    "to_wgs84",
    "from_wgs84",
    "to_metric",
]

# --- Constants ------------------------------------------------------------------------------------

#: Canonical coordinate systems a layer or CSV may declare with ``coord_system = "..."``.
COORD_SYSTEMS: tuple[str, ...] = ("wgs84", "gcj02", "bd09")

# Accepted spellings (after lower-casing and removing "-", "_", " ") → canonical name.
# CGCS2000 (EPSG:4490) and WGS-84 differ by well under a metre, so both map to "wgs84"
# (STANDARDS.md §5.1).
_ALIASES: dict[str, str] = {
    "wgs84": "wgs84",
    "wgs": "wgs84",
    "gps": "wgs84",
    "epsg:4326": "wgs84",
    "4326": "wgs84",
    "cgcs2000": "wgs84",
    "epsg:4490": "wgs84",
    "4490": "wgs84",
    "gcj02": "gcj02",
    "gcj": "gcj02",
    "bd09": "bd09",
    "bd09ll": "bd09",
    "bd": "bd09",
}

#: Crude lon/lat box (min lon, min lat, max lon, max lat), degrees, inside which the GCJ-02 offset
#: is applied; the box used by the common GCJ-02 implementations (STANDARDS.md §5.2).
CHINA_BBOX: tuple[float, float, float, float] = (72.004, 0.8293, 137.8347, 55.8271)

# GCJ-02 reference ellipsoid: Krasovsky 1940 (STANDARDS.md §5.2).
_KRASOVSKY_A = 6378245.0  # semi-major axis, metres
_KRASOVSKY_EE = 0.00669342162296594323  # first eccentricity squared

# BD-09: polar perturbation amplitudes and constant shifts, degrees (STANDARDS.md §5.2).
_BD_X_PI = math.pi * 3000.0 / 180.0
_BD_DZ = 0.00002  # radius perturbation amplitude, degrees
_BD_DTHETA = 0.000003  # angle perturbation amplitude, radians
_BD_DLON = 0.0065
_BD_DLAT = 0.0060

# Iterative inverses: stop when the forward image of the estimate is within _INV_TOL degrees of the
# input (1e-10° ≈ 0.01 mm, well under the 1e-7° ≈ 1 cm required); the offsets vary slowly
# (|d offset / d coord| < 0.01), so the fixed-point iteration gains > 2 digits per step and
# normally stops after 3–5 steps. _INV_MAX_ITER bounds the work on pathological input.
_INV_TOL = 1e-10
_INV_MAX_ITER = 30
# The inverses are attempted for inputs up to this far (degrees) outside CHINA_BBOX, because the
# forward maps can push a point just inside the box across its edge (GCJ-02 + BD-09 offsets are
# below 0.03°); a solution is kept only if it lies inside the box, so that every point inside the
# box round-trips exactly.
_INV_MARGIN = 0.1

# CGCS2000 3-degree Gauss-Krüger zones with truncated false easting ("CM 75E" … "CM 135E"):
# EPSG = 4534 + (n − 25) with n = round(lon / 3), n in 25…45 (STANDARDS.md §5.1).
_GK3_FIRST_EPSG = 4534
_GK3_FIRST_ZONE = 25
_GK3_LAST_ZONE = 45


# --- Helpers --------------------------------------------------------------------------------------


def normalize_coord_system(name: str) -> str:
    """Return the canonical name (``"wgs84"``, ``"gcj02"`` or ``"bd09"``) of a declared system.

    Case, ``-``, ``_`` and spaces are ignored, so ``"GCJ-02"``, ``"gcj_02"`` and ``"BD-09"`` work.
    ``"cgcs2000"`` / ``"epsg:4490"`` map to ``"wgs84"`` (they agree to well under a metre).

    Raises
    ------
    ConfigError
        For an unknown name; the message lists the valid ones.
    """
    if not isinstance(name, str):
        raise ConfigError(
            f"coord_system must be a string, got {type(name).__name__} {name!r}; "
            f"valid: {', '.join(COORD_SYSTEMS)} (or cgcs2000 / epsg:4490 as WGS-84)"
        )
    key = name.strip().lower().replace("-", "").replace("_", "").replace(" ", "")
    try:
        return _ALIASES[key]
    except KeyError:
        raise ConfigError(
            f"unknown coord_system {name!r}; valid: {', '.join(COORD_SYSTEMS)} "
            "(also accepted: cgcs2000 / epsg:4490 / epsg:4326 as WGS-84, bd09ll as BD-09)"
        ) from None


def _as_arrays(lon: ArrayLike, lat: ArrayLike) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    lon_a, lat_a = np.broadcast_arrays(np.asarray(lon, dtype=float), np.asarray(lat, dtype=float))
    return lon_a.astype(float, copy=True), lat_a.astype(float, copy=True)


def in_china(lon: ArrayLike, lat: ArrayLike) -> NDArray[np.bool_]:
    """Whether each lon/lat point (degrees) lies in the box where GCJ-02 offsets apply.

    The box is :data:`CHINA_BBOX` (72.004–137.8347°E, 0.8293–55.8271°N), the test used by the
    common GCJ-02 implementations. It is crude: it also covers parts of neighbouring countries,
    which does not matter for data that are known to come from Chinese map providers.

    Examples
    --------
    >>> in_china([114.3, 24.94, 2.35], [30.6, 60.17, 48.86]).tolist()
    [True, False, False]
    """
    lon_a, lat_a = np.broadcast_arrays(np.asarray(lon, dtype=float), np.asarray(lat, dtype=float))
    x0, y0, x1, y1 = CHINA_BBOX
    return (lon_a >= x0) & (lon_a <= x1) & (lat_a >= y0) & (lat_a <= y1)


# --- GCJ-02 ---------------------------------------------------------------------------------------


def _gcj02_offset(
    lon: NDArray[np.float64], lat: NDArray[np.float64]
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """GCJ-02 minus WGS-84 (dlon, dlat) in degrees at WGS-84 points (no in-China test)."""
    x = lon - 105.0
    y = lat - 35.0
    pi = math.pi
    # Shared periodic term in x, then the published polynomial + sine series (in metres).
    common = (20.0 * np.sin(6.0 * pi * x) + 20.0 * np.sin(2.0 * pi * x)) * (2.0 / 3.0)
    north = (
        -100.0
        + 2.0 * x
        + 3.0 * y
        + 0.2 * y * y
        + 0.1 * x * y
        + 0.2 * np.sqrt(np.abs(x))
        + common
        + (20.0 * np.sin(pi * y) + 40.0 * np.sin(pi * y / 3.0)) * (2.0 / 3.0)
        + (160.0 * np.sin(pi * y / 12.0) + 320.0 * np.sin(pi * y / 30.0)) * (2.0 / 3.0)
    )
    east = (
        300.0
        + x
        + 2.0 * y
        + 0.1 * x * x
        + 0.1 * x * y
        + 0.1 * np.sqrt(np.abs(x))
        + common
        + (20.0 * np.sin(pi * x) + 40.0 * np.sin(pi * x / 3.0)) * (2.0 / 3.0)
        + (150.0 * np.sin(pi * x / 12.0) + 300.0 * np.sin(pi * x / 30.0)) * (2.0 / 3.0)
    )
    # Metres → degrees on the Krasovsky ellipsoid: meridian radius M and prime-vertical radius N.
    phi = np.radians(lat)
    w2 = 1.0 - _KRASOVSKY_EE * np.sin(phi) ** 2
    m_radius = _KRASOVSKY_A * (1.0 - _KRASOVSKY_EE) / (w2 * np.sqrt(w2))
    n_radius = _KRASOVSKY_A / np.sqrt(w2)
    dlat = np.degrees(north / m_radius)
    dlon = np.degrees(east / (n_radius * np.cos(phi)))
    return dlon, dlat


def _gcj02_forward(
    lon: NDArray[np.float64], lat: NDArray[np.float64]
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    dlon, dlat = _gcj02_offset(lon, lat)
    return lon + dlon, lat + dlat


def _bd09_forward(
    lon: NDArray[np.float64], lat: NDArray[np.float64]
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """GCJ-02 → BD-09 (no in-China test)."""
    z = np.hypot(lon, lat) + _BD_DZ * np.sin(lat * _BD_X_PI)
    theta = np.arctan2(lat, lon) + _BD_DTHETA * np.cos(lon * _BD_X_PI)
    return z * np.cos(theta) + _BD_DLON, z * np.sin(theta) + _BD_DLAT


def _bd09_backward_approx(
    lon: NDArray[np.float64], lat: NDArray[np.float64]
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """One-pass BD-09 → GCJ-02 (the usual approximate inverse, decimetre level): the starting guess."""
    x = lon - _BD_DLON
    y = lat - _BD_DLAT
    z = np.hypot(x, y) - _BD_DZ * np.sin(y * _BD_X_PI)
    theta = np.arctan2(y, x) - _BD_DTHETA * np.cos(x * _BD_X_PI)
    return z * np.cos(theta), z * np.sin(theta)


_PairFunc = Callable[
    [NDArray[np.float64], NDArray[np.float64]], tuple[NDArray[np.float64], NDArray[np.float64]]
]


def _invert(
    forward: _PairFunc,
    lon: NDArray[np.float64],
    lat: NDArray[np.float64],
    guess: tuple[NDArray[np.float64], NDArray[np.float64]],
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Solve forward(x) = (lon, lat) by the fixed-point step x ← x − (forward(x) − target).

    Converges because each forward map is the identity plus a slowly varying offset. Only points
    that have not yet converged are evaluated again; at most ``_INV_MAX_ITER`` steps.
    """
    x, y = guess[0].copy(), guess[1].copy()
    active = np.isfinite(lon) & np.isfinite(lat)
    for _ in range(_INV_MAX_ITER):
        if not active.any():
            break
        idx = np.flatnonzero(active)
        fx, fy = forward(x[idx], y[idx])
        ex = fx - lon[idx]
        ey = fy - lat[idx]
        x[idx] -= ex
        y[idx] -= ey
        done = (np.abs(ex) < _INV_TOL) & (np.abs(ey) < _INV_TOL)
        active[idx[done]] = False
    return x, y


def _forward_inside(
    forward: Callable[[NDArray[np.float64], NDArray[np.float64]], tuple[NDArray[np.float64], NDArray[np.float64]]],
    lon: ArrayLike, lat: ArrayLike,
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Apply ``forward`` to the points inside China; points outside pass through unchanged."""
    lon_a, lat_a = _as_arrays(lon, lat)
    inside = in_china(lon_a, lat_a)
    if inside.any():
        lon_a[inside], lat_a[inside] = forward(lon_a[inside], lat_a[inside])
    return lon_a, lat_a


def _invert_inside(
    forward: _PairFunc, guess: _PairFunc, lon: NDArray[np.float64], lat: NDArray[np.float64]
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Invert ``forward`` where the solution lies inside CHINA_BBOX; pass other points through."""
    x0, y0, x1, y1 = CHINA_BBOX
    m = _INV_MARGIN
    flon, flat = lon.reshape(-1), lat.reshape(-1)  # views: writes go through to lon, lat
    near = (flon >= x0 - m) & (flon <= x1 + m) & (flat >= y0 - m) & (flat <= y1 + m)
    if near.any():
        sx, sy = _invert(forward, flon[near], flat[near], guess(flon[near], flat[near]))
        keep = in_china(sx, sy)
        idx = np.flatnonzero(near)[keep]
        flon[idx], flat[idx] = sx[keep], sy[keep]
    return lon, lat


def wgs84_to_gcj02(
    lon: ArrayLike, lat: ArrayLike
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Convert WGS-84 lon/lat (degrees) to GCJ-02 (Amap 高德, Tencent 腾讯) lon/lat (degrees).

    Implements the published GCJ-02 formula (Krasovsky ellipsoid, a = 6378245 m,
    e² = 0.00669342162296594323). Points outside :func:`in_china` are returned unchanged.

    Examples
    --------
    >>> lon, lat = wgs84_to_gcj02(120.0, 40.0)
    >>> round(float(lon), 8), round(float(lat), 8)
    (120.00567568, 40.00130479)
    """
    return _forward_inside(_gcj02_forward, lon, lat)


def gcj02_to_wgs84(
    lon: ArrayLike, lat: ArrayLike
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Convert GCJ-02 lon/lat (degrees) to WGS-84 lon/lat (degrees) by an iterative inverse.

    Starts from ``gcj − offset(gcj)`` and refines until the forward image of the estimate is within
    1e-10° (≈ 0.01 mm) of the input, at most 30 steps; the result is exact to the precision of the
    formula, far below the 0.5 m required. Points outside :func:`in_china` are returned unchanged.
    """
    lon_a, lat_a = _as_arrays(lon, lat)

    def guess(
        glon: NDArray[np.float64], glat: NDArray[np.float64]
    ) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        dlon, dlat = _gcj02_offset(glon, glat)
        return glon - dlon, glat - dlat

    return _invert_inside(_gcj02_forward, guess, lon_a, lat_a)


# --- BD-09 ----------------------------------------------------------------------------------------


def gcj02_to_bd09(
    lon: ArrayLike, lat: ArrayLike
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Convert GCJ-02 lon/lat (degrees) to BD-09 (Baidu 百度, ``bd09ll``) lon/lat (degrees).

    Baidu's published perturbation: radius + 0.00002·sin(lat·3000π/180), angle +
    0.000003·cos(lon·3000π/180), then shifts of +0.0065° lon and +0.0060° lat. Points outside
    :func:`in_china` are returned unchanged (Baidu uses WGS-84 abroad).
    """
    return _forward_inside(_bd09_forward, lon, lat)


def bd09_to_gcj02(
    lon: ArrayLike, lat: ArrayLike
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Convert BD-09 lon/lat (degrees) to GCJ-02 lon/lat (degrees) by an iterative inverse.

    Starts from the usual one-pass approximate inverse (decimetre level) and refines until the
    forward image is within 1e-10° of the input. Points outside :func:`in_china` are unchanged.
    """
    lon_a, lat_a = _as_arrays(lon, lat)
    return _invert_inside(_bd09_forward, _bd09_backward_approx, lon_a, lat_a)


def _wgs84_bd09_forward(
    lon: NDArray[np.float64], lat: NDArray[np.float64]
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    return _bd09_forward(*_gcj02_forward(lon, lat))


def _wgs84_bd09_guess(
    lon: NDArray[np.float64], lat: NDArray[np.float64]
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    glon, glat = _bd09_backward_approx(lon, lat)
    dlon, dlat = _gcj02_offset(glon, glat)
    return glon - dlon, glat - dlat


def wgs84_to_bd09(
    lon: ArrayLike, lat: ArrayLike
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Convert WGS-84 lon/lat (degrees) to BD-09 lon/lat (degrees): GCJ-02, then BD-09.

    Both steps apply to points inside :func:`in_china` (tested on the WGS-84 input); others are
    returned unchanged.
    """
    return _forward_inside(_wgs84_bd09_forward, lon, lat)


def bd09_to_wgs84(
    lon: ArrayLike, lat: ArrayLike
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Convert BD-09 lon/lat (degrees) to WGS-84 lon/lat (degrees) by an iterative inverse.

    Inverts the composite WGS-84 → GCJ-02 → BD-09 map directly (same tolerance as
    :func:`gcj02_to_wgs84`), so it is the exact inverse of :func:`wgs84_to_bd09`, also at the
    edge of the box. Points outside :func:`in_china` are returned unchanged.
    """
    lon_a, lat_a = _as_arrays(lon, lat)
    return _invert_inside(_wgs84_bd09_forward, _wgs84_bd09_guess, lon_a, lat_a)


_ConvFunc = Callable[[ArrayLike, ArrayLike], tuple[NDArray[np.float64], NDArray[np.float64]]]

_CONVERTERS: dict[tuple[str, str], _ConvFunc] = {
    ("wgs84", "gcj02"): wgs84_to_gcj02,
    ("gcj02", "wgs84"): gcj02_to_wgs84,
    ("gcj02", "bd09"): gcj02_to_bd09,
    ("bd09", "gcj02"): bd09_to_gcj02,
    ("wgs84", "bd09"): wgs84_to_bd09,
    ("bd09", "wgs84"): bd09_to_wgs84,
}


def convert_coords(
    lon: ArrayLike, lat: ArrayLike, src: str, dst: str
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Convert lon/lat arrays (degrees) between ``"wgs84"``, ``"gcj02"`` and ``"bd09"``.

    ``"cgcs2000"`` / ``"epsg:4490"`` are accepted as WGS-84: the two frames agree to well under a
    metre, which is below the precision of any data these conversions are used for. Spellings such
    as ``"GCJ-02"`` or ``"BD09LL"`` are accepted (see :func:`normalize_coord_system`).

    Parameters
    ----------
    lon, lat : longitudes and latitudes in degrees (scalars or arrays of one shape).
    src, dst : source and target coordinate systems.

    Returns
    -------
    (lon, lat) : new float arrays in degrees; points outside China are unchanged.

    Raises
    ------
    ConfigError
        For an unknown system; the message lists the valid ones.

    Examples
    --------
    >>> lon, lat = convert_coords([116.404], [39.915], "gcj02", "bd09")
    >>> round(float(lon[0]), 6), round(float(lat[0]), 6)
    (116.410369, 39.921337)
    """
    s, d = normalize_coord_system(src), normalize_coord_system(dst)
    if s == d:
        return _as_arrays(lon, lat)
    return _CONVERTERS[(s, d)](lon, lat)


# --- GeoDataFrames --------------------------------------------------------------------------------


def _transform_geoms(
    gdf: gpd.GeoDataFrame | gpd.GeoSeries, src: str, dst: str
) -> NDArray[np.object_]:
    def func(coords: NDArray[np.float64]) -> NDArray[np.float64]:
        out = np.array(coords, dtype=float, copy=True)
        out[:, 0], out[:, 1] = convert_coords(coords[:, 0], coords[:, 1], src, dst)
        return out

    return shapely.transform(np.asarray(gdf.geometry.values, dtype=object), func, include_z=None)


def _require_geographic(gdf: gpd.GeoDataFrame | gpd.GeoSeries, coord_system: str) -> None:
    if gdf.crs is None:
        raise LayerError(
            f"layer declared coord_system={coord_system!r} has no CRS; its coordinates must be "
            "longitude/latitude in degrees — set it with gdf.set_crs('EPSG:4326')"
        )
    if not gdf.crs.is_geographic:
        raise LayerError(
            f"layer declared coord_system={coord_system!r} has a projected CRS ({gdf.crs.name}); "
            "GCJ-02 / BD-09 coordinates must be longitude/latitude in degrees"
        )


def to_wgs84(
    gdf: gpd.GeoDataFrame | gpd.GeoSeries, coord_system: str
) -> gpd.GeoDataFrame | gpd.GeoSeries:
    """Return a copy of ``gdf`` converted from its declared ``coord_system`` to WGS-84 (EPSG:4326).

    Use for layers or CSVs that declare ``coord_system = "gcj02"`` (Amap 高德, Tencent) or
    ``"bd09"`` (Baidu 百度). Every vertex of every geometry type is converted. For
    ``"wgs84"`` / ``"cgcs2000"`` the data are simply reprojected to EPSG:4326.

    Parameters
    ----------
    gdf : GeoDataFrame or GeoSeries whose CRS is geographic (lon/lat degrees), e.g. EPSG:4326
        as written by the reader of a lon/lat CSV.
    coord_system : ``"wgs84"``, ``"gcj02"`` or ``"bd09"`` (see :func:`normalize_coord_system`).

    Returns
    -------
    A new object in EPSG:4326; the input is not modified.

    Raises
    ------
    LayerError
        If the CRS is missing or projected while the system is GCJ-02 / BD-09.
    ConfigError
        For an unknown ``coord_system``.
    """
    system = normalize_coord_system(coord_system)
    if system == "wgs84":
        if gdf.crs is None:
            raise LayerError(
                f"layer declared coord_system={coord_system!r} has no CRS; set it with "
                "gdf.set_crs(...) before converting"
            )
        return gdf.to_crs("EPSG:4326")
    _require_geographic(gdf, coord_system)
    out = gdf.copy()
    geoms = _transform_geoms(gdf, system, "wgs84")
    if isinstance(out, gpd.GeoDataFrame):
        out[out.geometry.name] = gpd.GeoSeries(geoms, index=out.index, crs="EPSG:4326")
        return out.set_crs("EPSG:4326", allow_override=True)
    return gpd.GeoSeries(geoms, index=out.index, name=out.name, crs="EPSG:4326")


def from_wgs84(
    gdf: gpd.GeoDataFrame | gpd.GeoSeries, coord_system: str
) -> gpd.GeoDataFrame | gpd.GeoSeries:
    """Return a copy of ``gdf`` converted from WGS-84 to ``coord_system`` (for GCJ-02 / BD-09 basemaps).

    Data in any CRS are first reprojected to EPSG:4326. The result carries the EPSG:4326 CRS label
    (there is no EPSG code for GCJ-02 / BD-09), but its coordinates are in ``coord_system``:
    only draw it on a basemap in that system.

    Parameters
    ----------
    gdf : GeoDataFrame or GeoSeries with a CRS.
    coord_system : ``"wgs84"``, ``"gcj02"`` or ``"bd09"``.

    Raises
    ------
    LayerError
        If ``gdf`` has no CRS.
    ConfigError
        For an unknown ``coord_system``.
    """
    system = normalize_coord_system(coord_system)
    if gdf.crs is None:
        raise LayerError("layer has no CRS; set it with gdf.set_crs(...) before converting")
    wgs = gdf.to_crs("EPSG:4326")
    if system == "wgs84":
        return wgs
    out = wgs.copy()
    geoms = _transform_geoms(wgs, "wgs84", system)
    if isinstance(out, gpd.GeoDataFrame):
        out[out.geometry.name] = gpd.GeoSeries(geoms, index=out.index, crs="EPSG:4326")
        return out
    return gpd.GeoSeries(geoms, index=out.index, name=out.name, crs="EPSG:4326")


# --- Metric CRS -----------------------------------------------------------------------------------


def _lonlat_bounds(
    data: gpd.GeoDataFrame | gpd.GeoSeries | BaseGeometry | Sequence[float],
    crs: pyproj.CRS | str | int | None,
) -> NDArray[np.float64]:
    """(minx, miny, maxx, maxy) of ``data`` in EPSG:4326 degrees."""
    if isinstance(data, gpd.GeoDataFrame | gpd.GeoSeries):
        if data.crs is None:
            raise LayerError(
                "cannot choose a metric CRS: the layer has no CRS; set it with gdf.set_crs(...)"
            )
        geo = data.geometry
        if geo.is_empty.all() or geo.isna().all():
            raise LayerError("cannot choose a metric CRS: the layer has no non-empty geometry")
        if not data.crs.equals(pyproj.CRS.from_epsg(4326)):
            geo = geo.to_crs("EPSG:4326")
        return np.asarray(geo.total_bounds, dtype=float)
    src = pyproj.CRS.from_user_input(crs if crs is not None else "EPSG:4326")
    if isinstance(data, BaseGeometry):
        if data.is_empty:
            raise LayerError("cannot choose a metric CRS for an empty geometry")
        bounds = np.asarray(data.bounds, dtype=float)
    else:
        bounds = np.asarray(data, dtype=float).ravel()
        if bounds.size == 2:
            bounds = np.concatenate([bounds, bounds])
        if bounds.size != 4:
            raise LayerError(
                "metric_crs expects a GeoDataFrame, GeoSeries, shapely geometry, a (lon, lat) "
                f"point or (minx, miny, maxx, maxy) bounds; got {bounds.size} numbers"
            )
    if not src.equals(pyproj.CRS.from_epsg(4326)):
        tr = pyproj.Transformer.from_crs(src, "EPSG:4326", always_xy=True)
        bounds = np.asarray(tr.transform_bounds(*bounds), dtype=float)
    return bounds


def metric_crs(
    data: gpd.GeoDataFrame | gpd.GeoSeries | BaseGeometry | Sequence[float],
    crs: pyproj.CRS | str | int | None = None,
) -> pyproj.CRS:
    """Choose a metric (metre) CRS for the study area from the lon/lat centre of its bounds.

    Inside China (:func:`in_china`) this is the CGCS2000 3-degree Gauss-Krüger zone with truncated
    false easting, ``EPSG = 4534 + (n − 25)`` with ``n = round(lon / 3)`` and central meridian
    ``3n`` °E (4547 = CM 114E, 4543 = CM 102E; STANDARDS.md §5.1), clamped to the defined zones
    CM 75E–135E. Elsewhere it is the WGS-84 UTM zone ``floor((lon + 180) / 6) + 1``, north
    (EPSG 326xx) or south (EPSG 327xx) of the equator. Transform raw coordinates into it with
    ``pyproj.Transformer.from_crs(..., always_xy=True)``: the Gauss-Krüger CRSs have
    northing-first axes.

    Parameters
    ----------
    data : GeoDataFrame / GeoSeries (any CRS; reprojected to EPSG:4326 to find the centre), a
        shapely geometry, a ``(lon, lat)`` point or ``(minx, miny, maxx, maxy)`` bounds.
    crs : CRS of a bare geometry, point or bounds; default EPSG:4326 (lon/lat degrees).
        Ignored for GeoDataFrame / GeoSeries, which carry their own.

    Returns
    -------
    pyproj.CRS

    Raises
    ------
    LayerError
        If a layer has no CRS or no geometry, or the centre is not a valid lon/lat.

    Examples
    --------
    >>> metric_crs((114.3, 30.6)).to_epsg()
    4547
    >>> metric_crs((24.94, 60.17)).to_epsg()
    32635
    """
    bounds = _lonlat_bounds(data, crs)
    if not np.all(np.isfinite(bounds)):
        raise LayerError(f"cannot choose a metric CRS: bounds {bounds.tolist()} are not finite")
    lon = 0.5 * (bounds[0] + bounds[2])
    lat = 0.5 * (bounds[1] + bounds[3])
    if not (-180.0 <= lon <= 180.0 and -90.0 <= lat <= 90.0):
        raise LayerError(
            f"cannot choose a metric CRS: centre ({lon:.6g}, {lat:.6g}) is not a longitude/latitude "
            "in degrees — are projected coordinates labelled as EPSG:4326?"
        )
    if bool(in_china(lon, lat)):
        # floor(x + 0.5) instead of round(): Python/numpy round halves to even.
        n = math.floor(lon / 3.0 + 0.5)
        n = min(max(n, _GK3_FIRST_ZONE), _GK3_LAST_ZONE)
        return pyproj.CRS.from_epsg(_GK3_FIRST_EPSG + n - _GK3_FIRST_ZONE)
    zone = min(int(math.floor((lon + 180.0) / 6.0)) + 1, 60)
    return pyproj.CRS.from_epsg((32600 if lat >= 0.0 else 32700) + zone)


def to_metric(
    gdf: gpd.GeoDataFrame | gpd.GeoSeries, crs: pyproj.CRS | str | int | None = None
) -> gpd.GeoDataFrame | gpd.GeoSeries:
    """Reproject ``gdf`` to ``crs`` or, by default, to :func:`metric_crs` of its own extent.

    Parameters
    ----------
    gdf : GeoDataFrame or GeoSeries with a CRS (WGS-84 lon/lat; convert GCJ-02 / BD-09 data with
        :func:`to_wgs84` first).
    crs : target CRS; must be projected with metre units.

    Returns
    -------
    A new object in the metric CRS (units: metres).

    Raises
    ------
    LayerError
        If ``gdf`` has no CRS or the given ``crs`` is not projected in metres.
    """
    if gdf.crs is None:
        raise LayerError("cannot reproject: the layer has no CRS; set it with gdf.set_crs(...)")
    target = metric_crs(gdf) if crs is None else pyproj.CRS.from_user_input(crs)
    if not target.is_projected or target.axis_info[0].unit_name not in ("metre", "meter"):
        raise LayerError(f"to_metric needs a projected CRS in metres, got {target.name}")
    return gdf.to_crs(target)
