"""The bad-input corpus: every defect gets its clear message and exit code, and no input file changes."""

from __future__ import annotations

import hashlib
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import shapely

from gis_planner.cli import main
from gis_planner.io import read_layer, read_layers, validate_file, write_layers
from gis_planner.schema import heavy_overlap_partners, validate_layer

BAD = Path(__file__).parent / "data" / "bad"

# case folder → (exit code, a fragment the report must contain)
CASES = {
    "clean": (0, "0 error(s), 0 warning(s)"),
    "build_year_not_a_year": (2, "layer 'compounds' row 2 (id=C002): build_year 'abc' is not a year"),
    "build_year_too_old": (2, "row 1 (id=C001): build_year '1700' is below 1900"),
    "build_year_future": (2, "row 3 (id=C003): build_year '2090' is above"),
    "households_negative": (2, "row 2 (id=C002): households '-5' is negative"),
    "households_fraction": (2, "row 1 (id=C001): households '12.5' is not a whole number"),
    "consent_as_percent": (2, "consent_rate '85' is above 1 — looks like a percentage"),
    "missing_column": (2, "required column 'households' is missing"),
    "duplicate_id": (2, "row 3 (id=C002): compound_id 'C002' duplicates row 2"),
    "null_id": (2, "row 2: compound_id is empty but required"),
    "null_geometry": (2, "row 2 (id=C002): geometry is empty or null"),
    "empty_geometry": (2, "row 1 (id=C001): geometry is empty or null"),
    "wrong_geometry_type": (2, "row 1 (id=C001): geometry is a Point, expected polygon"),
    "invalid_geometry": (1, "row 2 (id=C002): invalid geometry (Self-intersection"),
    "different_crs": (1, "CRS EPSG:4326 differs from the compounds layer (EPSG:4547); reprojected"),
    "no_overlap": (2, "layer 'facilities' does not overlap the compounds layer at all"),
    "missing_crs": (2, "compounds.shp layer 'compounds': the layer has no coordinate reference system"),
    "unknown_facility_type": (2, "row 2 (id=F2): facility_type 'spaceport' is not a known value"),
    "unknown_road_class": (2, "row 1 (id=R1): road_class 'highway' is not a known value"),
    "missing_compounds_layer": (2, "layer 'compounds' is missing"),
    "empty_compounds_layer": (2, "layer 'compounds': the layer has no features"),
    "missing_roads_layer": (1, "layer 'roads' is missing — coverage falls back to straight-line"),
    "gbk_shapefile": (0, "小区.shp: text encoding GBK"),
    # issue 13: non-finite and absurd numbers, broken geometries and files, encodings, hostile text
    "households_inf": (2, "row 2 (id=C002): households 'inf' is not a finite number (a whole number is required)"),
    "households_1e30": (2, "row 2 (id=C002): households 1e+30 is above 50000"),
    "households_empty": (1, "row 2 (id=C002): households is empty — the compound counts as 0 households: it is "
                            "left out of household-weighted figures"),
    "n_buildings_inf": (2, "row 2 (id=C002): n_buildings inf is not a finite number"),
    "parking_1e30": (2, "row 3 (id=C003): parking_existing 1e+30 is above 100000"),
    "capacity_inf": (2, "layer 'facilities' row 1 (id=F1): capacity inf is not a finite number"),
    "build_year_float_text": (0, "0 error(s), 0 warning(s)"),
    "nan_vertex": (2, "row 2 (id=C002): geometry has a vertex with a NaN or infinite coordinate (x=500170, y=nan)"),
    "nul_in_id": (2, "row 2 (id='C\\x00002'): compound_id 'C\\x00002' contains a NUL character"),
    "gpkg_truncated": (2, "compounds.gpkg: the file is truncated (4,096 of"),
    "gpkg_empty": (2, "compounds.gpkg: the file is empty (0 bytes)"),
    "shapefile_without_dbf": (2, "compounds.shp: its attribute table (ids, names, households …) compounds.dbf is "
                                 "missing"),
    "csv_utf16": (1, "facilities.csv layer 'facilities': CRS EPSG:4326 differs"),
    "csv_gbk": (1, "facilities.csv layer 'facilities': CRS EPSG:4326 differs"),
    "heavy_overlap": (1, "layer 'compounds': 41 of 43 features overlap another feature of the layer by more than "
                         "50% of the smaller one's area (e.g. C001 ↔ D001, C001 ↔ D002"),
}


def _hashes(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def test_corpus_has_fifteen_distinct_defects():
    defects = {case for case, (code, _) in CASES.items() if code > 0}
    assert len(defects) >= 15
    assert {p.name for p in BAD.iterdir() if p.is_dir()} == set(CASES)


@pytest.mark.parametrize("case", sorted(CASES))
def test_defect_message_and_exit_code(case, capsys):
    expected_code, fragment = CASES[case]
    folder = BAD / case
    before = _hashes(folder)
    code = main(["validate", str(folder)])
    captured = capsys.readouterr()
    out = captured.out + captured.err  # a file that cannot be read at all: "error 错误: …" on stderr
    assert code == expected_code, out
    assert fragment in out, out
    assert "Traceback" not in out and "internal error" not in out, out
    assert _hashes(folder) == before, "validation modified an input file"


@pytest.mark.parametrize("case", sorted(c for c, (code, _) in CASES.items() if code == 2))
def test_run_stops_on_the_defect_with_exit_2(case, capsys, tmp_path):
    """`run` ends an input error with exit 2 and the same message, never an internal error (exit 3)."""
    _, fragment = CASES[case]
    folder = BAD / case
    before = _hashes(folder)
    code = main(["run", "--layers", str(folder), "-o", str(tmp_path / "out")])
    captured = capsys.readouterr()
    assert code == 2, captured.err
    assert fragment in captured.err, captured.err
    assert "internal error" not in captured.err
    assert _hashes(folder) == before, "run modified an input file"


def test_errors_are_all_reported_at_once(tmp_path):
    import shutil

    import geopandas as gpd

    folder = tmp_path / "many"
    shutil.copytree(BAD / "clean", folder)
    c = gpd.read_file(folder / "compounds.geojson")
    c["build_year"] = c["build_year"].astype(object)
    c.loc[0, "build_year"] = "abc"
    c.loc[1, "households"] = -1
    c.loc[2, "compound_id"] = "C001"
    c.to_file(folder / "compounds.geojson", driver="GeoJSON")
    layers, report = validate_file(folder)
    assert layers is None
    codes = sorted(p.code for p in report.errors)
    assert codes == ["bad_type", "duplicate_id", "out_of_range"]
    assert {p.feature_id for p in report.errors} == {"C001", "C002"}
    assert report.exit_code == 2


def test_gbk_shapefile_chinese_columns_are_read_correctly():
    layers = read_layers(BAD / "gbk_shapefile")
    c = layers.compounds.sort_values("compound_id")
    assert c["name"].tolist() == ["纺织厂家属院", "粮食局宿舍", "建设路12号院"]
    assert c["households"].tolist() == [320, 180, 96]
    assert c["subdistrict"].tolist() == ["城关街道", "城关街道", "东城街道"]
    # the Chinese alias in the facilities layer ('幼儿园') is mapped to the standards key
    assert sorted(layers.facilities["facility_type"]) == ["kindergarten", "kindergarten", "market"]


def test_repaired_geometry_is_valid_polygon():
    layers = read_layers(BAD / "invalid_geometry")
    g = layers.compounds.set_index("compound_id").geometry["C002"]
    assert g.is_valid and g.geom_type in ("Polygon", "MultiPolygon")
    # the bow-tie 120 × 100 m splits into two triangles of 120 × 50 / 2 each
    assert g.area == pytest.approx(6000.0)


def test_counts_are_typed_and_floats_years_read():
    layers = read_layers(BAD / "build_year_float_text")
    c = layers.compounds.set_index("compound_id")
    assert c.loc["C002", "build_year"] == 1995
    assert str(layers.compounds["build_year"].dtype) == "Int64"


def test_empty_households_are_kept_as_missing_not_invented():
    layers = read_layers(BAD / "households_empty")
    hh = layers.compounds.set_index("compound_id")["households"]
    assert pd.isna(hh["C002"]) and hh["C001"] == 320
    assert [p.code for p in layers.report.warnings] == ["empty_value"]


@pytest.mark.parametrize("case", ["csv_utf16", "csv_gbk"])
def test_csv_encodings_in_a_folder_read_like_a_single_file(case):
    """A UTF-16 (BOM) or GBK CSV inside a folder of layers reads exactly as the same file read alone."""
    layers = read_layers(BAD / case)
    alone = read_layer(BAD / case / "facilities.csv")
    assert alone["名称"].tolist() == ["城关幼儿园", "东门菜市场", "建设幼儿园"]
    assert sorted(layers.facilities["name"]) == sorted(alone["名称"])
    assert sorted(layers.facilities["facility_type"]) == ["kindergarten", "kindergarten", "market"]
    assert alone.attrs["source"]["encoding"] == {"csv_utf16": "utf-16", "csv_gbk": "gbk"}[case]


def test_a_folder_reads_the_same_as_a_geopackage(tmp_path):
    """The clean folder and a GeoPackage of the same layers give the same validated layers and report."""
    import sys

    sys.path.insert(0, str(BAD))
    try:
        import make_corpus
    finally:
        sys.path.remove(str(BAD))
    gpkg = write_layers(make_corpus.base(), tmp_path / "layers.gpkg")
    from_folder, from_gpkg = read_layers(BAD / "clean"), read_layers(gpkg)
    assert [str(p) for p in from_folder.report.problems] == [str(p) for p in from_gpkg.report.problems] == []
    for name in ("compounds", "vacant", "facilities", "roads", "projects"):
        a, b = getattr(from_folder, name), getattr(from_gpkg, name)
        cols = [c for c in a.columns if c != "geometry"]
        assert set(cols) == {c for c in b.columns if c != "geometry"}, name
        pd.testing.assert_frame_equal(pd.DataFrame(a[cols]).reset_index(drop=True),
                                      pd.DataFrame(b[cols]).reset_index(drop=True), check_dtype=False)
        assert a.geometry.geom_equals_exact(b.geometry, tolerance=1e-6).all(), name
        assert a.crs == b.crs


@pytest.mark.parametrize(("cut", "fragment"), [
    ("half", "layers.gpkg: the file is truncated ("),
    ("4k", "layers.gpkg: the file is truncated (4,096 of"),
    ("empty", "layers.gpkg: the file is empty (0 bytes)"),
    ("text", "layers.gpkg: not a GeoPackage (no SQLite header"),
])
def test_broken_geopackage_source(tmp_path, capsys, cut, fragment):
    import sys

    sys.path.insert(0, str(BAD))
    try:
        import make_corpus
    finally:
        sys.path.remove(str(BAD))
    data = write_layers(make_corpus.base(), tmp_path / "good.gpkg").read_bytes()
    broken = tmp_path / "layers.gpkg"
    broken.write_bytes({"half": data[: len(data) // 2], "4k": data[:4096], "empty": b"",
                        "text": b"compound_id,name\n" * 20}[cut])
    before = broken.read_bytes()
    for argv in (["validate", str(broken)], ["run", "--layers", str(broken), "-o", str(tmp_path / "out")]):
        code = main(argv)
        err = capsys.readouterr().err
        assert code == 2, err
        assert fragment in err, err
    assert broken.read_bytes() == before


def test_nul_in_a_geopackage_text_is_reported_not_cut(tmp_path):
    """GDAL reads 'C\\x00002' as 'C'; the reader puts the full text back so validation names row and field."""
    import sqlite3
    import sys

    sys.path.insert(0, str(BAD))
    try:
        import make_corpus
    finally:
        sys.path.remove(str(BAD))
    path = write_layers(make_corpus.base(), tmp_path / "layers.gpkg")
    con = sqlite3.connect(path)
    for fn in ("ST_IsEmpty", "ST_MinX", "ST_MaxX", "ST_MinY", "ST_MaxY"):  # the GeoPackage's R-tree triggers
        con.create_function(fn, 1, lambda g: 0)
    con.execute("UPDATE compounds SET compound_id = 'C' || char(0) || '002' WHERE compound_id = 'C002'")
    con.commit()
    con.close()
    assert read_layer(path, "compounds")["compound_id"].tolist() == ["C001", "C\x00002", "C003"]
    _, report = validate_file(path)
    assert report.exit_code == 2
    [err] = report.errors
    assert (err.row, err.field, err.code) == (2, "compound_id", "nul_character")
    assert "layers.gpkg:compounds layer 'compounds' row 2 (id='C\\x00002')" in err.message


def _stacked(n: int, *, identical: bool) -> gpd.GeoDataFrame:
    off = np.zeros(n) if identical else np.arange(n) * 0.01
    return gpd.GeoDataFrame(
        {"compound_id": [f"S{i:05d}" for i in range(n)], "name": ["x"] * n, "build_year": [1990] * n,
         "households": [100] * n, "floor_area_m2": [9000.0] * n},
        geometry=shapely.box(500_000 + off, 3_386_000, 500_100 + off, 3_386_100), crs="EPSG:4547")


@pytest.mark.parametrize(("n", "identical"), [(2000, True), (3000, False)])
def test_heavy_overlaps_are_one_warning_with_count_and_examples(n, identical):
    _, problems = validate_layer(_stacked(n, identical=identical), "compounds", source="c.gpkg",
                                 current_year=2026)
    [warning] = problems
    assert warning.severity == "warning" and warning.code == "heavy_overlap"
    assert f"c.gpkg layer 'compounds': {n:,} of {n:,} features overlap another feature" in warning.message
    assert warning.message.count("↔") == 5  # a few pairs named, not all
    assert ("(e.g. S00000 ↔ S00001, S00000 ↔ S00002" if identical else "(e.g. S00000 ↔ S0") in warning.message


def test_heavy_overlap_check_is_bounded_in_memory():
    """5,000 stacked, all-different compounds: the check pages through the tree instead of holding the
    12.5 million overlapping pairs (0.2 GB of index pairs alone, and a geometry per pair to intersect)."""
    import subprocess
    import sys

    script = (
        "import resource, numpy as np, shapely\n"
        "from gis_planner.schema import heavy_overlap_partners\n"
        "off = np.arange(5000) * 0.01\n"
        "g = shapely.box(off, 0, off + 100, 100)\n"
        "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "p = heavy_overlap_partners(g, min_share=0.5, chunk=64, max_candidates=8)\n"
        "grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before\n"
        "print(int((p >= 0).sum()), grown)\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout
    flagged, grown_kb = map(int, out.split())
    assert flagged == 5000
    assert grown_kb < 120_000, f"peak memory grew by {grown_kb / 1e3:.0f} MB"


def test_overlaps_below_the_share_and_neighbours_are_not_flagged():
    boxes = [shapely.box(0, 0, 100, 100), shapely.box(60, 0, 160, 100),  # 40 % of each: below 50 %
             shapely.box(200, 0, 300, 100), shapely.box(300, 0, 400, 100),  # touching
             shapely.box(500, 0, 600, 100), shapely.box(510, 10, 590, 90)]  # one inside the other: 100 %
    partner = heavy_overlap_partners(np.array(boxes, dtype=object), min_share=0.5)
    assert partner.tolist() == [-1, -1, -1, -1, 5, 4]


def test_a_row_far_outside_its_crs_area_is_an_error_naming_it(tmp_path):
    """A vertex 10⁹ m away, or one row typed in degrees inside a layer in metres: an error on that row."""
    from gis_planner.io import validate_file, write_layers

    x0, y0 = 500_000.0, 3_386_000.0
    compounds = gpd.GeoDataFrame(
        {"compound_id": ["C1", "C2", "C3"], "name": ["甲", "乙", "丙"], "build_year": [1990] * 3,
         "households": [100] * 3, "floor_area_m2": [9000.0] * 3},
        geometry=[shapely.box(x0, y0, x0 + 100, y0 + 100), shapely.box(114.30, 30.60, 114.302, 30.602),
                  shapely.box(x0 + 300, y0, x0 + 400, y0 + 100)], crs="EPSG:4547")
    roads = gpd.GeoDataFrame({"road_id": ["R1", "R2"], "road_class": ["local", "local"]},
                             geometry=[shapely.LineString([(x0, y0 - 10), (x0 + 400, y0 - 10)]),
                                       shapely.LineString([(x0, y0 - 20), (x0 + 1e9, y0 - 20)])], crs="EPSG:4547")
    path = write_layers({"compounds": compounds, "roads": roads}, tmp_path / "l.gpkg")
    _, report = validate_file(path)
    found = {(p.layer, p.row, p.feature_id) for p in report.errors if p.code == "outside_crs_area"}
    assert found == {("compounds", 2, "C2"), ("roads", 2, "R2")}
    assert all("China - onshore between 112°30'E and 115°30'E" in p.message for p in report.errors
               if p.code == "outside_crs_area")


def test_zero_area_parcel_is_an_error_and_trimmed_ids_are_said(tmp_path, capsys):
    from gis_planner.io import validate_file, write_layers

    x0, y0 = 500_000.0, 3_386_000.0
    compounds = gpd.GeoDataFrame(
        {"compound_id": ["C1", "\t=1+1 "], "name": ["甲", "乙"], "build_year": [1990] * 2,
         "households": [100] * 2, "floor_area_m2": [9000.0] * 2},
        geometry=[shapely.box(x0, y0, x0 + 100, y0 + 100), shapely.box(x0 + 200, y0, x0 + 300, y0 + 100)],
        crs="EPSG:4547")
    vacant = gpd.GeoDataFrame({"parcel_id": ["V1"], "kind": ["vacant_land"]},
                              geometry=[shapely.Polygon([(x0, y0 + 200), (x0 + 50, y0 + 250), (x0 + 100, y0 + 300)])],
                              crs="EPSG:4547")
    path = write_layers({"compounds": compounds, "vacant": vacant}, tmp_path / "l.gpkg")
    _, report = validate_file(path)
    [flat] = [p for p in report.errors if p.code == "zero_area_polygon"]
    assert (flat.layer, flat.row, flat.feature_id) == ("vacant", 1, "V1") and "no area" in flat.message
    [trim] = [p for p in report.warnings if p.code == "id_trimmed"]
    assert trim.row == 2 and "'\\t=1+1 '" in trim.message and "removed: '=1+1'" in trim.message
    assert main(["run", "--layers", str(path), "-o", str(tmp_path / "out"), "-q"]) == 2
    assert "polygon has no area" in capsys.readouterr().err


def test_a_read_option_of_the_wrong_type_names_the_layer(tmp_path, capsys):
    plan = tmp_path / "plan.toml"
    sample = Path(__file__).resolve().parents[1] / "layers" / "sample_district.gpkg"
    plan.write_text(f'[layers]\ncompounds = "{sample.as_posix()}"\nfacilities = {{ path = "f.csv", encoding = 8 }}\n',
                    encoding="utf-8")
    assert main(["validate", "--plan", str(plan)]) == 2
    err = capsys.readouterr()
    assert "layer 'facilities': read option(s) encoding must be text" in err.out + err.err
