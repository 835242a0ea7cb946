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


# ---- issue 13: reading never raises a raw exception, and never silently changes a value

_CSV = "设施编号,设施类型,名称,lng,lat\nF1,幼儿园,城关幼儿园,114.3,30.6\n"


@pytest.mark.parametrize(("encoding", "detected"), [("utf-16", "utf-16"), ("utf-16-be", None),
                                                    ("utf-32", "utf-32"), ("utf-8-sig", "utf-8-sig"),
                                                    ("gb18030", "gbk")])
def test_csv_byte_order_marks_are_read(tmp_path, encoding, detected):
    p = tmp_path / "poi.csv"
    raw = _CSV.encode(encoding)
    if encoding == "utf-16-be":
        raw = b"\xfe\xff" + raw  # a big-endian BOM
        detected = "utf-16"
    p.write_bytes(raw)
    gdf = read_layer(p)
    assert gdf["名称"].tolist() == ["城关幼儿园"] and gdf.geometry.x.tolist() == [114.3]
    assert gdf.attrs["source"]["encoding"] == detected


@pytest.mark.parametrize(("content", "fragment"), [
    (_CSV.encode("utf-16-le"), "poi.csv: looks like UTF-16 text without a byte-order mark"),
    (b"id,lng,lat\n1,114.3,30.6\n2,\xff\xfe\xff,30.6\n", "poi.csv line 3: the text is neither UTF-8 nor GBK/GB18030"),
    (b"", "poi.csv: the file is empty (no header row)"),
    (b'id,lng,lat\n1,114.3,30.6,9,9\n"2,114.3\n', "poi.csv: not a well-formed CSV file"),
    (b"id,lng,lat\n1,inf,30.6\n", "poi.csv row 1: lng/lat 'inf'/'30.6' is not a coordinate pair"),
    (b"id,lng,lat\n1,nan,30.6\n", "poi.csv row 1: lng/lat 'nan'/'30.6' is not a coordinate pair"),
    (b"id,geometry,lng,lat\n1,x,114.3,30.6\n", "poi.csv: a column is called 'geometry'"),
])
def test_broken_csv_files_are_layer_errors(tmp_path, content, fragment):
    p = tmp_path / "poi.csv"
    p.write_bytes(content)
    with pytest.raises(LayerError) as info:
        read_layer(p)
    assert fragment in str(info.value)
    assert p.read_bytes() == content


def test_csv_declared_encoding_that_does_not_fit(tmp_path):
    p = tmp_path / "poi.csv"
    p.write_bytes(_CSV.encode("gbk"))
    with pytest.raises(LayerError, match=r"poi.csv line 1: the text is not valid utf-8"):
        read_layer(p, encoding="utf-8")
    with pytest.raises(LayerError, match=r"poi.csv: unknown text encoding 'klingon'"):
        read_layer(p, encoding="klingon")


def test_csv_nul_in_text_reaches_validation(tmp_path):
    p = tmp_path / "poi.csv"
    p.write_text("id,类型,lng,lat\nF\x002,幼儿园,114.3,30.6\n", encoding="utf-8")
    assert read_layer(p)["id"].tolist() == ["F\x002"]  # kept whole: validation reports it


def test_shapefile_without_dbf_or_shx(tmp_path):
    _points().to_file(tmp_path / "f.shp", engine="pyogrio")
    (tmp_path / "f.dbf").unlink()
    with pytest.raises(LayerError, match=r"f.shp: its attribute table .* f.dbf is missing"):
        read_layer(tmp_path / "f.shp")
    (tmp_path / "f.cpg").unlink(missing_ok=True)  # without a .cpg the encoding is read from the .dbf bytes
    with pytest.raises(LayerError, match=r"f.shp: its attribute table f.dbf is missing"):
        detect_dbf_encoding(tmp_path / "f.shp")
    _points().to_file(tmp_path / "g.shp", engine="pyogrio")
    (tmp_path / "g.shx").unlink()
    with pytest.raises(LayerError, match=r"g.shp: its index g.shx is missing"):
        read_layer(tmp_path / "g.shp")


def test_odd_paths_are_layer_errors(tmp_path):
    with pytest.raises(LayerError, match="file not found"):
        read_layer(tmp_path / "a\x00b.gpkg")
    with pytest.raises(LayerError, match="file not found"):
        read_layers(str(tmp_path / ("x" * 5000 + ".gpkg")))
    (tmp_path / "dir.geojson").mkdir()
    with pytest.raises(LayerError, match="is a folder, not a layer file"):
        read_layer(tmp_path / "dir.geojson")
    folder = tmp_path / "layers"
    folder.mkdir()
    (folder / "compounds.geojson").mkdir()
    with pytest.raises(LayerError, match=r"layers/compounds.geojson: is a folder, not a layer file"):
        read_layers(folder)
    with pytest.raises(LayerError, match=r"layer 'compounds': give the path of its file \(got 5\)"):
        read_layers({"compounds": 5})
    with pytest.raises(LayerError, match=r"layer 'compounds': unknown read option\(s\) colour"):
        read_layers({"compounds": {"path": "c.gpkg", "colour": "red"}})


def test_bad_declared_crs_is_a_layer_error(tmp_path):
    p = tmp_path / "poi.csv"
    p.write_text("id,lng,lat\n1,114.3,30.6\n", encoding="utf-8")
    with pytest.raises(LayerError, match=r"poi.csv: crs 'EPSG:99999999' is not a coordinate reference system"):
        read_layer(p, crs="EPSG:99999999")


def test_geopackage_in_a_folder_picks_its_layer_by_name(tmp_path):
    folder = tmp_path / "layers"
    folder.mkdir()
    compounds = gpd.GeoDataFrame(
        {"compound_id": ["C1"], "name": ["幸福小区"], "build_year": [1990], "households": [100],
         "floor_area_m2": [9000.0]},
        geometry=[shapely.box(114.300, 30.600, 114.302, 30.602)], crs="EPSG:4326")
    write_layers({"other": _points(), "compounds": compounds}, folder / "compounds.gpkg")
    layers = read_layers(folder)
    assert layers.compounds["compound_id"].tolist() == ["C1"]
    assert layers.sources["compounds"] == "compounds.gpkg:compounds"
    write_layers({"a": compounds, "b": compounds}, folder / "compounds.gpkg")
    with pytest.raises(LayerError, match=r"compounds.gpkg: 2 layers \(a, b\) and none is called 'compounds'"):
        read_layers(folder)


def test_points_the_metric_crs_cannot_hold_are_errors(tmp_path):
    """A facility at latitude 95° projects to infinity: an error naming the row, not a silent inf downstream."""
    compounds = gpd.GeoDataFrame(
        {"compound_id": ["C1"], "name": ["幸福小区"], "build_year": [1990], "households": [100],
         "floor_area_m2": [9000.0]},
        geometry=[shapely.box(114.300, 30.600, 114.302, 30.602)], crs="EPSG:4326")
    poi = gpd.GeoDataFrame({"facility_id": ["F1", "F2"], "facility_type": ["market", "market"]},
                           geometry=[shapely.Point(114.30, 30.60), shapely.Point(114.30, 95.0)], crs="EPSG:4326")
    path = write_layers({"compounds": compounds, "facilities": poi}, tmp_path / "l.gpkg")
    from gis_planner.io import validate_file

    layers, report = validate_file(path)
    assert layers is None and report.exit_code == 2
    [err] = report.errors
    # caught when the layer is read, before any reprojection: latitude 95° is off the globe
    assert (err.layer, err.row, err.feature_id, err.code) == ("facilities", 2, "F2", "outside_crs_area")
    assert "l.gpkg:facilities layer 'facilities' row 2 (id=F2): geometry lies outside the area of its CRS" \
        in err.message


# ------------------------------------------------------------------------------ formula-safe CSV, long text
def test_csv_text_that_would_run_as_a_formula_is_neutralised_numbers_stay(tmp_path):
    import csv

    from gis_planner.io import load_run, neutralise_text, restore_text, write_csv

    hostile = ["=HYPERLINK(\"http://x\",\"y\")", "+cmd|' /C calc'!A0", "@SUM(1+1)", "-2+3", "\tx", "\rx", "普通名称"]
    df = pd.DataFrame({"compound_id": hostile, "amount_cny": [-5.0, 1.0, 2.0, -3.5, 4.0, 5.0, 6.0],
                       "n": [-1, 2, 3, 4, 5, 6, 7]})
    path = write_csv(df, tmp_path / "t.csv")
    with open(path, encoding="utf-8-sig", newline="") as fh:
        rows = list(csv.reader(fh))
    ids = [r[0] for r in rows[1:]]
    assert ids == ["'" + v for v in hostile[:6]] + ["普通名称"]
    assert [r[1] for r in rows[1:]][:1] == ["-5.0"] and rows[1][2] == "-1"  # numbers are not prefixed
    back = pd.read_csv(path, encoding="utf-8-sig", dtype={"compound_id": str}, keep_default_na=False)
    assert restore_text(back["compound_id"]).tolist()[:4] == hostile[:4]
    assert neutralise_text(pd.Series([1.5, -2.0])).tolist() == [1.5, -2.0]
    assert load_run is not None


def test_xlsx_cuts_text_longer_than_a_cell_with_a_warning(tmp_path):
    import openpyxl

    from gis_planner.io import XLSX_MAX_CELL_CHARS, write_xlsx

    df = pd.DataFrame({"compound_id": ["C1", "C2"], "name": ["短", "长" * 200_000]})
    with pytest.warns(UserWarning, match=r"t.xlsx sheet '小区' column 'name': 1 text cell\(s\) longer .* \(row 3: 200,000\)"):
        write_xlsx({"小区": df}, tmp_path / "t.xlsx")
    ws = openpyxl.load_workbook(tmp_path / "t.xlsx")["小区"]
    assert len(ws["B3"].value) == XLSX_MAX_CELL_CHARS == 32_767 and ws["B2"].value == "短"


# ----------------------------------------------------------------------- table layers: the 问题清单 (deficits)
def _sample_copy(tmp_path):
    import shutil
    from pathlib import Path

    src = Path(__file__).resolve().parents[1] / "layers" / "sample_district.gpkg"
    dst = tmp_path / "d.gpkg"
    shutil.copy(src, dst)
    return dst


def test_deficits_table_read_from_a_csv_without_coordinates(tmp_path):
    import pyogrio

    gpkg = _sample_copy(tmp_path)
    (tmp_path / "survey.csv").write_text("小区编号,改造项目,数量\nC001,屋面防水,480\nC001,加装电梯,2\n",
                                         encoding="utf-8")
    layers = read_layers({"compounds": {"path": str(gpkg), "layer": "compounds"},
                          "deficits": str(tmp_path / "survey.csv")})
    d = layers.deficits
    assert not isinstance(d, gpd.GeoDataFrame)
    assert d[["compound_id", "item", "quantity"]].values.tolist() == [["C001", "屋面防水", 480.0],
                                                                     ["C001", "加装电梯", 2.0]]
    # the GeoPackage's own attribute table is read the same way, and not reprojected
    assert len(read_layers(gpkg).deficits) == len(pyogrio.read_dataframe(gpkg, layer="deficits"))


def test_deficit_rows_of_unknown_compounds_or_bad_quantities_are_errors(tmp_path):
    gpkg = _sample_copy(tmp_path)
    (tmp_path / "survey.csv").write_text("compound_id,item,quantity\nC999,屋面防水,480\nC001,加装电梯,两部\n",
                                         encoding="utf-8")
    with pytest.raises(LayerError) as err:
        read_layers({"compounds": {"path": str(gpkg), "layer": "compounds"},
                     "deficits": str(tmp_path / "survey.csv")})
    text = str(err.value)
    assert "layer 'deficits' row 1" in text and "C999" in text and "not in the compounds layer" in text
    assert "row 2" in text and "quantity" in text


def test_buildings_of_unknown_compounds_are_errors(tmp_path):
    gpkg = _sample_copy(tmp_path)
    b = gpd.read_file(gpkg, layer="buildings").head(2)
    b.loc[1, "compound_id"] = "C999"
    b.to_file(tmp_path / "buildings.gpkg", layer="buildings")
    with pytest.raises(LayerError, match=r"layer 'buildings' row 2 \(id=C\d+-\d+\): compound_id 'C999'"):
        read_layers({"compounds": {"path": str(gpkg), "layer": "compounds"},
                     "buildings": str(tmp_path / "buildings.gpkg")})
