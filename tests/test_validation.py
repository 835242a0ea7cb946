"""The bad-input corpus: every defect gets its clear message and exit code, and no input file changes."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from gis_planner.cli import main
from gis_planner.io import read_layers, validate_file

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
    out = capsys.readouterr().out
    assert code == expected_code, out
    assert fragment in out, out
    assert _hashes(folder) == before, "validation modified an input file"


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
