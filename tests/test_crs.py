"""Tests for gis_planner.crs: reference pairs from public sources, round trips, CRS choice."""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import pyproj
import pytest
import shapely
from shapely.geometry import LineString, Point, Polygon

from gis_planner._errors import ConfigError, LayerError
from gis_planner.crs import (
    CHINA_BBOX,
    bd09_to_gcj02,
    bd09_to_wgs84,
    convert_coords,
    from_wgs84,
    gcj02_to_bd09,
    gcj02_to_wgs84,
    in_china,
    metric_crs,
    normalize_coord_system,
    to_metric,
    to_wgs84,
    wgs84_to_bd09,
    wgs84_to_gcj02,
)

GEOD = pyproj.Geod(ellps="WGS84")
TOL_M = 0.5  # required agreement with published pairs, metres


def dist_m(lon1, lat1, lon2, lat2) -> np.ndarray:
    """Geodesic distance on WGS-84, metres."""
    return np.asarray(GEOD.inv(lon1, lat1, lon2, lat2)[2])


# --- Published reference pairs (lon, lat order here; some sources list lat first) ---------------
# (label, wgs84 lon, wgs84 lat, gcj02 lon, gcj02 lat)
WGS_GCJ_PAIRS = [
    # coord-convert (sshuair) documented example wgs2gcj(120, 40), libraries.io/pypi/coord-convert
    ("coord-convert README", 120.0, 40.0, 120.00567568355486, 40.0013047896019),
    # googollee/eviltransform python/test.py, javascript/test.js, go/transform_test.go (TESTS)
    ("eviltransform Shanghai", 121.5272106, 31.1774276, 121.531541859215, 31.17530398364597),
    ("eviltransform Shenzhen", 113.912316, 22.543847, 113.9171764808363, 22.540796131694766),
    ("eviltransform Beijing", 116.377817, 39.911954, 116.38404722455657, 39.91334545536069),
    # wandergis/coordtransform README.md: wgs84togcj02(116.404, 39.915)
    ("coordtransform README", 116.404, 39.915, 116.41024449916938, 39.91640428150164),
    # Amap (高德) Web service API 坐标转换 documented example
    # (lbs.amap.com/api/webservice/guide/api/convert): locations=116.481499,39.990475|
    # 116.481499,39.990375 coordsys=gps → "116.487585177952,39.991754014757;
    # 116.487585177952,39.991653917101" — Amap's server output, not our formula.
    ("Amap API doc #1", 116.481499, 39.990475, 116.487585177952, 39.991754014757),
    ("Amap API doc #2", 116.481499, 39.990375, 116.487585177952, 39.991653917101),
    # Amap coordinate/convert output for locations=114.07,22.62&coordsys=gps, quoted as "answer"
    # in a public PyWGS84ToGCJ02-derived script (comment "输出与高德api的比较").
    ("Amap API Shenzhen", 114.07, 22.62, 114.07513075, 22.61731092),
]
# Not used: the Aliyun 地址标准化 TransferCoord doc example gives WGS84 120.021519,30.281543 for
# GCJ-02 120.026268,30.279164; that is the one-pass approximate inverse (1.7 m from the exact one).

# (label, gcj02 lon, gcj02 lat, bd09 lon, bd09 lat)
GCJ_BD_PAIRS = [
    # wandergis/coordtransform README.md: gcj02tobd09(116.404, 39.915)
    ("coordtransform README gcj02tobd09", 116.404, 39.915, 116.41036949371029, 39.92133699351021),
    # wandergis/coordtransform README.md: bd09togcj02(116.404, 39.915) (Baidu's one-pass inverse)
    ("coordtransform README bd09togcj02", 116.39762729119315, 39.90865673957631, 116.404, 39.915),
    # Amap coordinate/convert with coordsys=baidu for 116.481499,39.990475 → 116.4748955248,
    # 39.984717169345, quoted in several public test files (e.g. CoordinateUtil Bd09_To_Gcj02 tests).
    ("Amap API baidu", 116.4748955248, 39.984717169345, 116.481499, 39.990475),
    # Aliyun 地址标准化 TransferCoord doc example (help.aliyun.com, coordinate-system-conversion):
    # GCJ02 120.026268,30.279164 → BD09 120.032768,30.285238 (6 decimals, ±0.06 m rounding).
    ("Aliyun TransferCoord doc", 120.026268, 30.279164, 120.032768, 30.285238),
]
# Not used: eviltransform's TESTS_bd pairs are 10–41 m off every correct implementation; PRCoords
# README documents eviltransform's BD-09 parameter errors (googollee/eviltransform #43, #44, #53).


def _cols(pairs):
    arr = np.array([p[1:] for p in pairs], dtype=float)
    return arr[:, 0], arr[:, 1], arr[:, 2], arr[:, 3]


def test_library_pairs_match_to_the_centimetre():
    # The library pairs (first five) are outputs of the same published formula: they must agree
    # with ours to floating-point precision, both ways.
    wlon, wlat, glon, glat = _cols(WGS_GCJ_PAIRS[:5])
    lon, lat = wgs84_to_gcj02(wlon, wlat)
    np.testing.assert_allclose(lon, glon, rtol=0, atol=1e-9)
    np.testing.assert_allclose(lat, glat, rtol=0, atol=1e-9)
    lon, lat = gcj02_to_wgs84(glon, glat)
    assert dist_m(lon, lat, wlon, wlat).max() < 0.01


def test_coord_convert_example_digits():
    lon, lat = wgs84_to_gcj02(120.0, 40.0)
    assert float(lon) == pytest.approx(120.00567568355486, abs=1e-12)
    assert float(lat) == pytest.approx(40.0013047896019, abs=1e-12)


@pytest.mark.parametrize(
    ("forward", "inverse", "pair"),
    [pytest.param(wgs84_to_gcj02, gcj02_to_wgs84, p, id=f"wgs84-gcj02:{p[0]}") for p in WGS_GCJ_PAIRS]
    + [pytest.param(gcj02_to_bd09, bd09_to_gcj02, p, id=f"gcj02-bd09:{p[0]}") for p in GCJ_BD_PAIRS])
def test_published_pairs_both_ways(forward, inverse, pair):
    """Each published pair (a → b) is reproduced forward, and the inverse takes b back to a."""
    _, alon, alat, blon, blat = pair
    lon, lat = forward(alon, alat)
    assert dist_m(lon, lat, blon, blat) < TOL_M
    lon, lat = inverse(blon, blat)
    assert dist_m(lon, lat, alon, alat) < TOL_M


def test_bd09_chain_through_amap_pairs():
    # Amap says BD-09 (116.481499, 39.990475) is GCJ-02 (116.4748955248, 39.984717169345);
    # so BD-09 → WGS-84 must equal GCJ-02 → WGS-84 of Amap's GCJ-02 point.
    lon, lat = bd09_to_wgs84(116.481499, 39.990475)
    elon, elat = gcj02_to_wgs84(116.4748955248, 39.984717169345)
    assert dist_m(lon, lat, elon, elat) < TOL_M
    blon, blat = wgs84_to_bd09(elon, elat)
    assert dist_m(blon, blat, 116.481499, 39.990475) < TOL_M


def test_convert_coords_dispatches_and_accepts_aliases():
    wlon, wlat, glon, glat = _cols(WGS_GCJ_PAIRS[:5])
    lon, lat = convert_coords(wlon, wlat, "WGS-84", "GCJ-02")
    np.testing.assert_allclose(lon, glon, atol=1e-9)
    np.testing.assert_allclose(lat, glat, atol=1e-9)
    lon, lat = convert_coords(glon, glat, "gcj02", "cgcs2000")
    assert dist_m(lon, lat, wlon, wlat).max() < 0.01
    # BD-09 ↔ WGS-84 equals the two-step chain.
    b1 = convert_coords(wlon, wlat, "wgs84", "bd09")
    b2 = gcj02_to_bd09(*wgs84_to_gcj02(wlon, wlat))
    np.testing.assert_allclose(b1, b2, atol=1e-12)
    w = convert_coords(*b1, "BD09LL", "epsg:4490")
    assert dist_m(w[0], w[1], wlon, wlat).max() < 0.01
    # Same system: an unchanged copy.
    same = convert_coords(wlon, wlat, "wgs84", "cgcs2000")
    np.testing.assert_array_equal(same[0], wlon)


def test_unknown_coord_system_lists_valid_ones():
    with pytest.raises(ConfigError, match="wgs84, gcj02, bd09"):
        convert_coords([116.4], [39.9], "mars", "wgs84")
    with pytest.raises(ConfigError, match="valid"):
        normalize_coord_system("utm")
    assert normalize_coord_system(" GCJ_02 ") == "gcj02"
    assert normalize_coord_system("EPSG:4490") == "wgs84"


# --- Round trips over China and pass-through outside ------------------------------------------


def _china_grid():
    lon, lat = np.meshgrid(np.linspace(73.0, 135.0, 63), np.linspace(18.0, 53.0, 36))
    return lon.ravel(), lat.ravel()


@pytest.mark.parametrize(
    ("fwd", "inv"),
    [
        (wgs84_to_gcj02, gcj02_to_wgs84),
        (gcj02_to_bd09, bd09_to_gcj02),
        (wgs84_to_bd09, bd09_to_wgs84),
    ],
    ids=["gcj02", "bd09", "wgs84-bd09"],
)
def test_round_trip_over_china_grid(fwd, inv):
    lon, lat = _china_grid()
    olon, olat = fwd(lon, lat)
    # The offsets are real (tens to hundreds of metres) ...
    shift = dist_m(lon, lat, olon, olat)
    assert shift.min() > 10.0 and shift.max() < 2500.0
    # ... and the iterative inverse removes them to well under a centimetre.
    blon, blat = inv(olon, olat)
    assert dist_m(lon, lat, blon, blat).max() < 0.01
    # Inverse then forward too.
    rlon, rlat = fwd(*inv(lon, lat))
    assert dist_m(lon, lat, rlon, rlat).max() < 0.01


def test_round_trip_at_box_edges():
    # Points just inside the box whose GCJ-02/BD-09 image falls just outside it still round-trip.
    x0, y0, x1, y1 = CHINA_BBOX
    lon = np.array([x1 - 1e-4, x1 - 1e-4, x0 + 1e-4, 120.0, 100.0])
    lat = np.array([30.0, y1 - 1e-4, 40.0, y0 + 1e-4, y1 - 1e-4])
    for fwd, inv in [(wgs84_to_gcj02, gcj02_to_wgs84), (wgs84_to_bd09, bd09_to_wgs84)]:
        blon, blat = inv(*fwd(lon, lat))
        assert dist_m(lon, lat, blon, blat).max() < 0.01


def test_outside_china_unchanged():
    # Helsinki, Paris, Oakland, Sydney, Tokyo is inside the crude box (documented), 140E is not.
    lon = np.array([24.94, 2.35, -122.27, 151.21, 140.0])
    lat = np.array([60.17, 48.86, 37.80, -33.87, 36.0])
    assert not in_china(lon, lat).any()
    for func in (
        wgs84_to_gcj02,
        gcj02_to_wgs84,
        gcj02_to_bd09,
        bd09_to_gcj02,
        wgs84_to_bd09,
        bd09_to_wgs84,
    ):
        olon, olat = func(lon, lat)
        np.testing.assert_array_equal(olon, lon)
        np.testing.assert_array_equal(olat, lat)


def test_mixed_inside_outside_and_shapes():
    lon = np.array([[120.0, 24.94], [116.404, 2.35]])
    lat = np.array([[40.0, 60.17], [39.915, 48.86]])
    olon, olat = wgs84_to_gcj02(lon, lat)
    assert olon.shape == (2, 2)
    assert olon[0, 0] == pytest.approx(120.00567568355486, abs=1e-12)
    assert olon[1, 0] == pytest.approx(116.41024449916938, abs=1e-12)
    assert (olon[:, 1] == lon[:, 1]).all() and (olat[:, 1] == lat[:, 1]).all()
    # Inputs are not modified.
    assert lon[0, 0] == 120.0
    # NaN stays NaN and does not disturb the others.
    nlon, nlat = gcj02_to_wgs84([np.nan, 120.00567568355486], [np.nan, 40.0013047896019])
    assert np.isnan(nlon[0]) and np.isnan(nlat[0])
    assert dist_m(nlon[1], nlat[1], 120.0, 40.0) < 0.01


def test_in_china_box():
    assert in_china(114.3, 30.6)
    assert in_china([72.004, 137.8347], [0.8293, 55.8271]).all()
    assert not in_china([72.0, 137.84, 100.0, 100.0], [30.0, 30.0, 0.8, 55.83]).any()


# --- Metric CRS ----------------------------------------------------------------------------------


def test_metric_crs_wuhan_gk_cm114():
    crs = metric_crs((114.3, 30.6))
    assert crs.to_epsg() == 4547
    assert "CM 114E" in crs.name


def test_metric_crs_beijing_gk_cm117():
    crs = metric_crs(Point(116.35, 40.0))
    assert crs.to_epsg() == 4548  # round(116.35 / 3) = 39 → CM 117E
    assert "CM 117E" in crs.name


def test_metric_crs_epsg_formula_against_table():
    # STANDARDS.md §5.1: 4543 = CM 102E, 4545 = CM 108E, 4551 = CM 126E; edges clamp to 75E/135E.
    for lon, epsg, cm in [
        (102.7, 4543, 102),
        (108.9, 4545, 108),
        (126.6, 4551, 126),
        (73.5, 4534, 75),
        (134.9, 4554, 135),
    ]:
        crs = metric_crs((lon, 35.0))
        assert crs.to_epsg() == epsg
        assert f"CM {cm}E" in crs.name
    # 115.5 is exactly half-way: rounds up (not half-to-even) to CM 117E.
    assert metric_crs((115.5, 30.0)).to_epsg() == 4548


def test_metric_crs_utm_outside_china():
    assert metric_crs((24.94, 60.17)).to_epsg() == 32635  # Helsinki, UTM 35N
    assert metric_crs((-122.2711, 37.8044)).to_epsg() == 32610  # Oakland, UTM 10N
    assert metric_crs((151.21, -33.87)).to_epsg() == 32756  # Sydney, UTM 56S
    # Agrees with pyproj's database query for the same point.
    info = pyproj.database.query_utm_crs_info(
        datum_name="WGS 84",
        area_of_interest=pyproj.aoi.AreaOfInterest(24.94, 60.17, 24.94, 60.17),
    )
    assert "32635" in {i.code for i in info}


def test_metric_crs_from_projected_gdf_and_bounds():
    # A GeoDataFrame already in EPSG:4547 (GK CM 114E): reprojected to lon/lat to find its centre.
    tr = pyproj.Transformer.from_crs("EPSG:4326", "EPSG:4547", always_xy=True)
    x, y = tr.transform([114.2, 114.4], [30.5, 30.7])
    assert 400_000 < x[0] < 600_000  # easting first thanks to always_xy
    gdf = gpd.GeoDataFrame(geometry=[Point(x[0], y[0]), Point(x[1], y[1])], crs="EPSG:4547")
    assert metric_crs(gdf).to_epsg() == 4547
    assert metric_crs(gdf.geometry).to_epsg() == 4547
    # Bounds tuple, and bounds in another CRS.
    assert metric_crs((114.2, 30.5, 114.4, 30.7)).to_epsg() == 4547
    assert metric_crs((min(x), min(y), max(x), max(y)), crs="EPSG:4547").to_epsg() == 4547


def test_metric_crs_errors():
    with pytest.raises(LayerError, match="no CRS"):
        metric_crs(gpd.GeoDataFrame(geometry=[Point(114.3, 30.6)]))
    # Projected coordinates mislabelled as lon/lat.
    bad = gpd.GeoDataFrame(geometry=[Point(500_000.0, 3_380_000.0)], crs="EPSG:4326")
    with pytest.raises(LayerError, match="longitude/latitude"):
        metric_crs(bad)
    with pytest.raises(LayerError, match="longitude/latitude"):
        metric_crs((200.0, 30.0))
    with pytest.raises(LayerError, match="non-empty"):
        metric_crs(gpd.GeoDataFrame(geometry=[Point()], crs="EPSG:4326"))
    with pytest.raises(LayerError, match="3 numbers"):
        metric_crs((1.0, 2.0, 3.0))


def test_to_metric():
    gdf = gpd.GeoDataFrame(
        {"name": ["a", "b"]},
        geometry=[Point(114.30, 30.60), Point(114.31, 30.60)],
        crs="EPSG:4326",
    )
    out = to_metric(gdf)
    assert out.crs.to_epsg() == 4547
    # 0.01° of longitude at 30.6°N is ~958 m; GK CM 114E distances agree with the geodesic.
    d_geod = dist_m(114.30, 30.60, 114.31, 30.60)
    assert out.geometry.iloc[0].distance(out.geometry.iloc[1]) == pytest.approx(d_geod, rel=1e-4)
    assert gdf.crs.to_epsg() == 4326  # input untouched
    assert to_metric(gdf, crs=32650).crs.to_epsg() == 32650
    with pytest.raises(LayerError, match="projected CRS in metres"):
        to_metric(gdf, crs=4490)
    with pytest.raises(LayerError, match="no CRS"):
        to_metric(gpd.GeoDataFrame(geometry=[Point(114.3, 30.6)]))


# --- GeoDataFrame conversion ----------------------------------------------------------------------


def _sample_gdf():
    poly = Polygon(
        [(116.40, 39.90), (116.41, 39.90), (116.41, 39.91), (116.40, 39.91)],
        holes=[[(116.402, 39.902), (116.404, 39.902), (116.404, 39.904)]],
    )
    return gpd.GeoDataFrame(
        {"name": ["点", "面", "线"], "value": [1, 2, 3]},
        geometry=[
            Point(116.404, 39.915),
            poly,
            LineString([(116.39, 39.9, 5.0), (116.5, 40.0, 7.0)]),
        ],
        crs="EPSG:4326",
    )


@pytest.mark.parametrize("system", ["gcj02", "bd09"])
def test_to_wgs84_vertex_by_vertex(system):
    gdf = _sample_gdf()
    out = to_wgs84(gdf, system)
    assert out.crs.to_epsg() == 4326
    assert list(out.columns) == list(gdf.columns)
    assert out["name"].tolist() == ["点", "面", "线"]
    assert out.geom_type.tolist() == gdf.geom_type.tolist()
    src = shapely.get_coordinates(gdf.geometry.values)
    got = shapely.get_coordinates(out.geometry.values)
    exp_lon, exp_lat = convert_coords(src[:, 0], src[:, 1], system, "wgs84")
    np.testing.assert_array_equal(got[:, 0], exp_lon)
    np.testing.assert_array_equal(got[:, 1], exp_lat)
    # Z values and interior rings survive.
    assert out.geometry.iloc[2].has_z
    assert shapely.get_coordinates(out.geometry.iloc[2], include_z=True)[:, 2].tolist() == [
        5.0,
        7.0,
    ]
    assert len(out.geometry.iloc[1].interiors) == 1
    # The input is not modified.
    np.testing.assert_array_equal(shapely.get_coordinates(gdf.geometry.values), src)


def test_to_wgs84_published_point():
    # A GCJ-02 point from an Amap layer lands on the published WGS-84 point.
    gdf = gpd.GeoDataFrame(geometry=[Point(120.00567568355486, 40.0013047896019)], crs=4326)
    p = to_wgs84(gdf, "GCJ-02").geometry.iloc[0]
    assert dist_m(p.x, p.y, 120.0, 40.0) < 0.01


def test_from_wgs84_round_trip_and_reprojection():
    gdf = _sample_gdf()
    for system in ("gcj02", "bd09"):
        back = to_wgs84(from_wgs84(gdf, system), system)
        a = shapely.get_coordinates(gdf.geometry.values)
        b = shapely.get_coordinates(back.geometry.values)
        assert dist_m(a[:, 0], a[:, 1], b[:, 0], b[:, 1]).max() < 0.01
    # Metric input is reprojected to lon/lat first.
    metric = to_metric(gdf)
    g = from_wgs84(metric, "gcj02")
    assert g.crs.to_epsg() == 4326
    p = g.geometry.iloc[0]
    assert dist_m(p.x, p.y, 116.41024449916938, 39.91640428150164) < 0.01
    # wgs84 → wgs84 is a plain reprojection.
    assert from_wgs84(metric, "wgs84").geometry.iloc[0].equals_exact(Point(116.404, 39.915), 1e-9)


def test_to_wgs84_geoseries_and_custom_geometry_name():
    gdf = _sample_gdf().rename_geometry("geom")
    out = to_wgs84(gdf, "gcj02")
    assert out.geometry.name == "geom" and "geometry" not in out.columns
    s = to_wgs84(gdf.geometry, "bd09")
    assert isinstance(s, gpd.GeoSeries) and s.crs.to_epsg() == 4326


def test_to_wgs84_errors():
    gdf = _sample_gdf()
    with pytest.raises(LayerError, match="no CRS"):
        to_wgs84(gdf.set_crs(None, allow_override=True), "gcj02")
    with pytest.raises(LayerError, match="projected CRS"):
        to_wgs84(to_metric(gdf), "gcj02")
    with pytest.raises(ConfigError, match="valid"):
        to_wgs84(gdf, "baidu-mercator")
    # wgs84 / cgcs2000 declared: plain reprojection, also from a projected CRS.
    out = to_wgs84(to_metric(gdf), "cgcs2000")
    assert out.crs.to_epsg() == 4326
    assert out.geometry.iloc[0].equals_exact(Point(116.404, 39.915), 1e-9)
