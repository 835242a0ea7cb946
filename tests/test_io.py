"""I/O: formats, encodings, coordinate declarations and atomic writes."""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import shapely

from gis_planner._errors import LayerError
from gis_planner.crs import wgs84_to_gcj02
from gis_planner.io import (
    detect_dbf_encoding,
    file_sha256,
    read_layer,
    read_layers,
    write_csv,
    write_layers,
)


def _points(crs="EPSG:4326"):
    return gpd.GeoDataFrame({"facility_id": ["F1", "F2"], "facility_type": ["幼儿园", "market"]},
                            geometry=[shapely.Point(114.30, 30.60), shapely.Point(114.31, 30.61)], crs=crs)


def test_csv_with_chinese_lon_lat_columns(tmp_path):
    p = tmp_path / "poi.csv"
    p.write_text("设施编号,设施类型,经度,纬度\nF1,幼儿园,114.30,30.60\nF2,菜市场,114.31,30.61\n", encoding="utf-8")
    gdf = read_layer(p)
    assert gdf.crs.to_epsg() == 4326
    assert gdf.geometry.x.tolist() == [114.30, 114.31]
    assert gdf.attrs["source"]["encoding"] == "utf-8-sig"


def test_csv_in_gbk_is_detected(tmp_path):
    p = tmp_path / "poi.csv"
    p.write_bytes("id,名称,lng,lat\n1,东门菜市场,114.3,30.6\n".encode("gbk"))
    gdf = read_layer(p)
    assert gdf["名称"].tolist() == ["东门菜市场"]
    assert gdf.attrs["source"]["encoding"] == "gbk"


def test_csv_declared_gcj02_is_converted_to_wgs84(tmp_path):
    lon, lat = np.array([114.30, 116.35]), np.array([30.60, 40.00])
    glon, glat = wgs84_to_gcj02(lon, lat)
    p = tmp_path / "amap.csv"
    pd.DataFrame({"id": ["a", "b"], "lng": glon, "lat": glat}).to_csv(p, index=False)
    gdf = read_layer(p, coord_system="gcj02")
    assert gdf.attrs["source"]["coord_system"] == "gcj02"
    np.testing.assert_allclose(gdf.geometry.x, lon, atol=1e-8)
    np.testing.assert_allclose(gdf.geometry.y, lat, atol=1e-8)


def test_csv_bad_coordinate_names_row(tmp_path):
    p = tmp_path / "poi.csv"
    p.write_text("id,lon,lat\n1,114.3,30.6\n2,abc,30.6\n", encoding="utf-8")
    with pytest.raises(LayerError, match=r"poi.csv row 2: lon/lat 'abc'/'30.6' is not a coordinate pair"):
        read_layer(p)


def test_csv_without_coordinate_columns(tmp_path):
    p = tmp_path / "poi.csv"
    p.write_text("id,name\n1,x\n", encoding="utf-8")
    with pytest.raises(LayerError, match="no longitude column found"):
        read_layer(p)


@pytest.mark.parametrize(("cpg", "expected"), [("936", "GBK"), ("UTF-8", "UTF-8"), ("GB2312", "GBK")])
def test_dbf_encoding_from_cpg(tmp_path, cpg, expected):
    _points().to_file(tmp_path / "f.shp", engine="pyogrio", encoding="GBK")
    (tmp_path / "f.cpg").write_text(cpg)
    enc, how = detect_dbf_encoding(tmp_path / "f.shp")
    assert enc == expected and "declared in f.cpg" in how


def test_dbf_encoding_guessed_utf8_then_gbk(tmp_path):
    _points().to_file(tmp_path / "u.shp", engine="pyogrio", encoding="UTF-8")
    (tmp_path / "u.cpg").unlink(missing_ok=True)
    assert detect_dbf_encoding(tmp_path / "u.shp")[0] == "UTF-8"
    _points().to_file(tmp_path / "g.shp", engine="pyogrio", encoding="GBK")
    (tmp_path / "g.cpg").unlink(missing_ok=True)
    assert detect_dbf_encoding(tmp_path / "g.shp")[0] == "GBK"
    gdf = read_layer(tmp_path / "g.shp")
    assert gdf["facility_t"].tolist() == ["幼儿园", "market"]


def test_unsupported_format_and_missing_file(tmp_path):
    (tmp_path / "x.kml").write_text("<kml/>")
    with pytest.raises(LayerError, match="unsupported format '.kml'"):
        read_layer(tmp_path / "x.kml")
    with pytest.raises(LayerError, match="file not found"):
        read_layer(tmp_path / "nope.gpkg")


def test_geopackage_round_trip_and_metric_projection(tmp_path):
    compounds = gpd.GeoDataFrame(
        {"compound_id": ["C1"], "name": ["幸福小区"], "build_year": [1990], "households": [100],
         "floor_area_m2": [9000.0]},
        geometry=[shapely.box(114.300, 30.600, 114.302, 30.602)], crs="EPSG:4326")
    path = write_layers({"compounds": compounds, "facilities": _points()}, tmp_path / "l.gpkg")
    layers = read_layers(path)
    assert layers.crs.to_epsg() == 4547  # CGCS2000 3-degree GK CM 114E
    assert layers.facilities["facility_type"].tolist() == ["kindergarten", "market"]
    # 0.002° × 0.002° at 30.6°N ≈ 191.6 m × 221.7 m
    assert layers.compounds.area.iloc[0] == pytest.approx(191.7 * 221.7, rel=0.01)


def test_write_layers_is_atomic(tmp_path, monkeypatch):
    import pyogrio

    target = tmp_path / "plan.gpkg"
    write_layers({"facilities": _points()}, target)
    before = file_sha256(target)
    real_write = pyogrio.write_dataframe
    calls = []

    def crash_on_second_layer(*args, **kwargs):
        calls.append(kwargs.get("layer"))
        if len(calls) == 2:
            raise OSError("disk full (simulated)")
        return real_write(*args, **kwargs)

    monkeypatch.setattr(pyogrio, "write_dataframe", crash_on_second_layer)
    with pytest.raises(OSError, match="simulated"):
        write_layers({"facilities": _points(), "more": _points()}, target)
    assert calls == ["facilities", "more"]
    assert file_sha256(target) == before
    assert [p.name for p in tmp_path.iterdir()] == ["plan.gpkg"], "a temporary file was left behind"


def test_write_csv_has_bom_and_is_deterministic(tmp_path):
    df = pd.DataFrame({"小区": ["甲", "乙"], "v": [1.5, 2.0]})
    a, b = write_csv(df, tmp_path / "a.csv"), write_csv(df, tmp_path / "b.csv")
    assert a.read_bytes() == b.read_bytes()
    assert a.read_bytes().startswith(b"\xef\xbb\xbf")
    assert pd.read_csv(a, encoding="utf-8-sig")["小区"].tolist() == ["甲", "乙"]


def test_layers_from_a_plan_mapping_with_read_options(tmp_path):
    compounds = gpd.GeoDataFrame(
        {"小区编号": ["C1"], "小区名称": ["幸福小区"], "建成年代": ["1990年"], "户数": [100], "建筑面积": [9000]},
        geometry=[shapely.box(528700, 3386600, 528800, 3386700)], crs="EPSG:4547")
    compounds.to_file(tmp_path / "小区.geojson", driver="GeoJSON")
    lon, lat = wgs84_to_gcj02(np.array([114.30]), np.array([30.60]))
    (tmp_path / "poi.csv").write_text(f"id,类型,lng,lat\nF1,幼儿园,{lon[0]},{lat[0]}\n", encoding="utf-8")
    layers = read_layers({"compounds": str(tmp_path / "小区.geojson"),
                          "facilities": {"path": str(tmp_path / "poi.csv"), "coord_system": "gcj02"}})
    assert layers.compounds["build_year"].tolist() == [1990]
    assert layers.facilities["facility_id"].tolist() == ["F1"]
    assert any("converted from gcj02" in n for n in layers.report.notes)
